/* uv_queue_work around a request. */
#include "serve_work.h"

#include <stdlib.h>
#include <string.h>

typedef struct offload {
    uv_work_t w;
    t2_server *s;
    t2_req *r;
    void (*run)(void *);
    void (*after)(t2_server *, t2_req *, void *);
    void *arg;
} offload;

static void work_cb(uv_work_t *w)
{
    offload *o = w->data;
    o->run(o->arg);
}

static void after_cb(uv_work_t *w, int status)
{
    (void)status; /* never cancelled: after() always runs and frees arg */
    offload *o = w->data;
    o->after(o->s, o->r, o->arg);
    t2_req_release(o->r);
    free(o);
}

int t2_serve_offload(t2_server *s, t2_req *r, void (*run)(void *arg),
                     void (*after)(t2_server *s, t2_req *r, void *arg), void *arg)
{
    offload *o = calloc(1, sizeof *o);
    if (!o)
        return -1;
    *o = (offload){.s = s, .r = r, .run = run, .after = after, .arg = arg};
    o->w.data = o;
    if (uv_queue_work(&s->loop, &o->w, work_cb, after_cb) != 0) {
        free(o);
        return -1;
    }
    t2_req_hold(r);
    t2_req_wait(r);
    return 0;
}

typedef struct json_work {
    t2_server *s;
    t2_json_fn fn;
    char *param;
    int status;
    json_t *body;
    t2_api_err e;
} json_work;

static void json_run(void *arg)
{
    json_work *w = arg;
    w->status = 200;
    w->body = w->fn(w->s, w->param, &w->status, &w->e);
}

static void json_after(t2_server *s, t2_req *r, void *arg)
{
    (void)s;
    json_work *w = arg;
    if (w->body)
        t2_req_respond_json(r, w->status, w->body); /* a no-op when the client left */
    else
        t2_req_respond_error(r, &w->e);
    free(w->param);
    free(w);
}

int t2_serve_offload_json(t2_server *s, t2_req *r, t2_json_fn fn, const char *param)
{
    json_work *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    w->s = s;
    w->fn = fn;
    w->param = param ? strdup(param) : NULL;
    if ((param && !w->param) || t2_serve_offload(s, r, json_run, json_after, w) != 0) {
        free(w->param);
        free(w);
        return -1;
    }
    return 0;
}
