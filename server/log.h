/* Logging for t2 serve: leveled messages and one access line per request,
 * as text ("t2: ...") or JSON lines, on stderr. Each line is written with
 * one call and flushed, so lines from the loader thread and the loop never
 * interleave. */
#ifndef T2_LOG_H
#define T2_LOG_H

#include <stdbool.h>
#include <stdio.h>

enum t2_log_level { T2_LOG_DEBUG = 0, T2_LOG_INFO = 1, T2_LOG_WARN = 2, T2_LOG_ERROR = 3 };

typedef struct t2_log {
    enum t2_log_level level;
    bool json;
    FILE *out;
} t2_log;

/* format: text | json; level: debug | info | warn | error (validated by conf). */
void t2_log_init(t2_log *l, const char *format, const char *level, FILE *out);
void t2_log_msg(t2_log *l, enum t2_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* One line per finished request. */
void t2_log_access(t2_log *l, const char *method, const char *path, int status, double ms,
                   int tokens, bool aborted);

#endif
