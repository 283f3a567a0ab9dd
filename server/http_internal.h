/* Internals shared by http.c (the daemon and its loop integration) and
 * http_req.c (the request object). Loop thread only. */
#ifndef T2_HTTP_INTERNAL_H
#define T2_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <stdint.h>

#include "http.h"

#define T2_REQ_MAX_HEADERS 12

struct t2_http {
    uv_loop_t *loop;
    struct MHD_Daemon *d;
    uv_poll_t poll;   /* MHD's epoll fd */
    uv_timer_t timer; /* MHD_get_timeout */
    int port;
    size_t max_body;
    t2_log *log;
    t2_http_hooks hooks;
    t2_req *reqs;      /* live requests */
    size_t active;     /* of which not yet over */
    bool running;      /* inside MHD_run */
    bool stop_pending; /* t2_http_stop was called inside MHD_run: stop after it */
    int handles_open;
    bool stopping; /* t2_http_stop called: freed once handles and requests are gone */
    void (*closed)(void *);
    void *closed_arg;
};

struct t2_req {
    t2_http *http;
    struct MHD_Connection *con;
    char *method, *path;
    char *body;
    size_t len, cap, discarded;
    bool too_large;
    bool dispatched, in_handler, waiting, suspended, over, aborting;
    struct MHD_Response *resp; /* made, not yet queued */
    int resp_status, status;
    struct {
        char *name, *value;
    } hdr[T2_REQ_MAX_HEADERS];
    size_t n_hdr;
    t2_pull_fn pull;
    void *pull_cls;
    void *data;
    void (*on_close)(t2_req *, void *, bool);
    void (*free_data)(void *);
    const char *label;
    int tokens;
    uint64_t t0_ns;
    int refs;
    uv_poll_t *watch; /* the client's socket while we wait (client-gone detection) */
    t2_req *prev, *next;
};

t2_req *t2_req_new(t2_http *h, struct MHD_Connection *con, const char *method, const char *url);
/* Appends upload bytes within max_body (false: give up on the connection). */
bool t2_req_append(t2_req *r, const char *data, size_t n);
/* Queues the pending response (inside the access handler). */
enum MHD_Result t2_req_queue(t2_req *r);
/* Suspends the connection while a result is awaited, watching its socket
 * so that a client that hangs up is noticed (MHD does not poll suspended
 * connections); t2_req_resume undoes both. */
void t2_req_suspend(t2_req *r);
void t2_req_resume(t2_req *r);
/* Makes MHD look at the connections again soon (after a resume). */
void t2_http_kick(t2_http *h);
/* After t2_http_stop: frees h once its handles are closed and no request
 * refers to it (asynchronous work may hold one a little longer). */
void t2_http_maybe_free(t2_http *h);

#endif
