/* Log lines: text "t2: [level: ]message" or {"time", "level", "msg", ...}. */
#include "log.h"

#include "api_json.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *level_names[] = {"debug", "info", "warn", "error"};

void t2_log_init(t2_log *l, const char *format, const char *level, FILE *out)
{
    l->json = format && strcmp(format, "json") == 0;
    l->level = T2_LOG_INFO;
    for (int i = 0; level && i < 4; i++)
        if (strcmp(level, level_names[i]) == 0)
            l->level = (enum t2_log_level)i;
    l->out = out;
}

static void iso_time(char *buf, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Writes a JSON object as one line (takes the reference). */
static void emit_json(t2_log *l, json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s) {
        fprintf(l->out, "%s\n", s);
        fflush(l->out);
    }
    free(s);
    json_decref(o);
}

static json_t *line_obj(enum t2_log_level level, const char *msg)
{
    char t[40], clean[2048];
    iso_time(t, sizeof t);
    /* messages quote paths and names from requests: keep the line valid JSON */
    snprintf(clean, sizeof clean, "%s", msg);
    t2_api_utf8_sanitize(clean);
    return json_pack("{s:s, s:s, s:s}", "time", t, "level", level_names[level], "msg", clean);
}

void t2_log_msg(t2_log *l, enum t2_log_level level, const char *fmt, ...)
{
    if (level < l->level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (l->json) {
        emit_json(l, line_obj(level, msg));
        return;
    }
    static const char *prefix[] = {"debug: ", "", "warning: ", "error: "};
    fprintf(l->out, "t2: %s%s\n", prefix[level], msg);
    fflush(l->out);
}

void t2_log_access(t2_log *l, const char *method, const char *path, int status, double ms,
                   int tokens, bool aborted)
{
    if (T2_LOG_INFO < l->level)
        return;
    if (l->json) {
        json_t *o = line_obj(T2_LOG_INFO, "access");
        char p[1024];
        snprintf(p, sizeof p, "%s", path);
        t2_api_utf8_sanitize(p);
        if (o)
            json_object_update_new(o, json_pack("{s:s, s:s, s:i, s:f, s:i, s:b}", "method", method,
                                                "path", p, "status", status, "ms", ms, "tokens",
                                                tokens, "aborted", aborted));
        emit_json(l, o);
        return;
    }
    fprintf(l->out, "t2: access: %s %s %d %.1fms tokens=%d%s\n", method, path, status, ms, tokens,
            aborted ? " aborted" : "");
    fflush(l->out);
}
