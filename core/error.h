/* Error reporting shared by every module: functions that can fail return
 * 0 on success or -1 on failure and fill a caller-owned t2_err. */
#ifndef T2_ERROR_H
#define T2_ERROR_H

#include <stddef.h>

typedef struct t2_err {
    char msg[512];
} t2_err;

/* Formats msg into err (if non-NULL); always returns -1 so callers can
 * write `return t2_err_set(err, "...")`. */
int t2_err_set(t2_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to an existing message (e.g. the file name). */
int t2_err_prefix(t2_err *err, const char *prefix);

#endif
