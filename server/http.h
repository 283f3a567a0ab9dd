/* The HTTP front end: libmicrohttpd driven by the libuv loop of the main
 * thread, and the request object handlers work with.
 *
 * Why this shape: MHD runs in "external polling" mode with epoll and no
 * thread of its own. Its epoll fd is watched by a uv_poll; when it is
 * readable, or when the uv_timer armed with MHD_get_timeout() fires, the
 * loop calls MHD_run(). So every MHD callback, every request object and
 * every response runs on the loop thread: the HTTP layer needs no locks.
 * Generation runs on scheduler threads; their results come back through a
 * uv_async and the waiting connection is resumed (MHD suspend/resume), so
 * no handler ever blocks the loop. docs/SERVER.md has the whole picture.
 *
 * Every function here must be called on the loop thread. */
#ifndef T2_HTTP_H
#define T2_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "api_error.h"
#include "log.h"

typedef struct t2_http t2_http;
typedef struct t2_req t2_req;

typedef struct t2_http_hooks {
    /* Headers received: route, method, auth and content checks. May
     * respond at once (errors, OPTIONS); otherwise the body is read. */
    void (*admit)(void *user, t2_req *r);
    /* Body complete: respond now, or call t2_req_wait and respond later. */
    void (*dispatch)(void *user, t2_req *r);
    /* The request is over: sent (ok) or failed / client gone. */
    void (*completed)(void *user, t2_req *r, bool ok);
    void *user;
} t2_http_hooks;

typedef struct t2_http_opts {
    uv_loop_t *loop;
    const char *host;
    int port;                /* 0: any free port, see t2_http_port */
    size_t max_body;         /* bytes; larger bodies get 413 */
    unsigned idle_timeout_s; /* idle keep-alive connections are closed after it */
    unsigned max_connections;
    t2_log *log;
    t2_http_hooks hooks;
} t2_http_opts;

int t2_http_start(t2_http **out, const t2_http_opts *o, char *err, size_t cap);
int t2_http_port(const t2_http *h);
/* Stops accepting connections (graceful shutdown); open ones go on. */
void t2_http_quiesce(t2_http *h);
/* Requests received and not yet over. */
size_t t2_http_active(const t2_http *h);
/* Aborts what is left, stops MHD and closes the loop handles; `closed`
 * runs (on the loop) once the handles are closed and h is freed. */
void t2_http_stop(t2_http *h, void (*closed)(void *arg), void *arg);

/* ---- the request ---- */

const char *t2_req_method(const t2_req *r);
const char *t2_req_path(const t2_req *r); /* percent-decoded by MHD, no query */
const char *t2_req_header(const t2_req *r, const char *name);
const char *t2_req_query(const t2_req *r, const char *name);
const char *t2_req_body(const t2_req *r, size_t *len);
double t2_req_elapsed_ms(const t2_req *r);
int t2_req_status(const t2_req *r); /* status of the queued response, 0 if none */

/* For the access log and metrics. */
void t2_req_set_label(t2_req *r, const char *label); /* static string */
const char *t2_req_label(const t2_req *r);
void t2_req_set_tokens(t2_req *r, int tokens);
int t2_req_tokens(const t2_req *r);

/* Handler state. on_close runs when the request is over (ok: the response
 * was sent; false: the client went away or the server stopped);
 * free_data when nothing refers to the request any more. */
void t2_req_set_data(t2_req *r, void *data, void (*on_close)(t2_req *r, void *data, bool ok),
                     void (*free_data)(void *data));
void *t2_req_data(const t2_req *r);
/* Extra references for asynchronous work (uv_queue_work) that outlives
 * the connection. */
void t2_req_hold(t2_req *r);
void t2_req_release(t2_req *r);
/* The request is over: responding does nothing any more. */
bool t2_req_over(const t2_req *r);

/* ---- responding ---- */

/* Adds a header to the response still to come (CORS, Allow, Location). */
void t2_req_add_header(t2_req *r, const char *name, const char *value);
/* Takes body (malloc'd, may be NULL with len 0). */
void t2_req_respond(t2_req *r, int status, const char *content_type, char *body, size_t len);
void t2_req_respond_json(t2_req *r, int status, json_t *j); /* takes the reference */
void t2_req_respond_error(t2_req *r, const t2_api_err *e);

/* Streamed body (chunked): pull copies up to max bytes and returns the
 * count; 0 when nothing is ready yet (the connection sleeps until
 * t2_req_wake); T2_PULL_END after the last byte; T2_PULL_ERROR aborts. */
#define T2_PULL_END (-1L)
#define T2_PULL_ERROR (-2L)
typedef long (*t2_pull_fn)(void *cls, char *buf, size_t max);
void t2_req_respond_stream(t2_req *r, int status, const char *content_type, t2_pull_fn pull,
                           void *cls);

/* In dispatch: the response will come later (the connection is suspended
 * until then). */
void t2_req_wait(t2_req *r);
/* A streamed response has new data. */
void t2_req_wake(t2_req *r);

#endif
