/* Short blocking work off the loop (tokenising a prompt, writing an
 * expert file with fsync): run(arg) on a libuv worker thread, then
 * after(s, r, arg) back on the loop, which responds (a no-op when the
 * client left meanwhile) and frees arg. The request's connection waits
 * suspended in between. */
#ifndef T2_SERVE_WORK_H
#define T2_SERVE_WORK_H

#include "serve.h"

int t2_serve_offload(t2_server *s, t2_req *r, void (*run)(void *arg),
                     void (*after)(t2_server *s, t2_req *r, void *arg), void *arg);

/* The same for a response computed off the loop (reads that touch the
 * disk, such as profiles): fn runs on the worker and returns the body with
 * *status, or NULL with e filled. param is copied. */
typedef json_t *(*t2_json_fn)(t2_server *s, const char *param, int *status, t2_api_err *e);
int t2_serve_offload_json(t2_server *s, t2_req *r, t2_json_fn fn, const char *param);

#endif
