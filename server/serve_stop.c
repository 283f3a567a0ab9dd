/* Graceful shutdown on SIGTERM/SIGINT (uv_signal, so no global state):
 * stop accepting (MHD_quiesce_daemon), let the scheduler drain, give
 * in-flight requests conf->grace seconds, then cancel what is left; stop
 * once no request is in progress. A second signal stops at once. */
#include "serve.h"
#include "serve_job.h"

static void close_cb(uv_handle_t *h)
{
    t2_server *s = h->data;
    s->handles_open--;
}

static void close_handle(t2_server *s, uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, close_cb);
    (void)s;
}

/* After the HTTP layer is gone: close the server's own handles; uv_run
 * returns once they are closed and pending work is done. */
static void http_closed(void *arg)
{
    t2_server *s = arg;
    s->http = NULL;
    close_handle(s, (uv_handle_t *)&s->wake);
    close_handle(s, (uv_handle_t *)&s->sigterm);
    close_handle(s, (uv_handle_t *)&s->sigint);
    close_handle(s, (uv_handle_t *)&s->grace_timer);
    close_handle(s, (uv_handle_t *)&s->hard_timer);
    close_handle(s, (uv_handle_t *)&s->rescan_timer);
}

static void finish(t2_server *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    uv_timer_stop(&s->grace_timer);
    uv_timer_stop(&s->hard_timer);
    uv_timer_stop(&s->rescan_timer);
    if (s->sched) {
        /* cancels what is left and joins the scheduler's threads; their last
         * callbacks only touch jobs and the still-open wake handle */
        t2_sched_free(s->sched);
        s->sched = NULL;
    }
    t2_jobs_drop_orphans(s);
    t2_log_msg(&s->log, T2_LOG_INFO, "stopped");
    if (s->http)
        t2_http_stop(s->http, http_closed, s);
    else
        http_closed(s);
}

void t2_serve_check_drained(t2_server *s)
{
    if (s->draining && !s->stopping && !s->loading && (!s->http || t2_http_active(s->http) == 0))
        finish(s);
}

static void on_grace(uv_timer_t *t)
{
    t2_server *s = t->data;
    t2_log_msg(&s->log, T2_LOG_WARN, "grace period over: cancelling %zu request(s) in flight",
               s->http ? t2_http_active(s->http) : 0);
    t2_jobs_cancel_all(s);
}

static void on_hard(uv_timer_t *t)
{
    t2_server *s = t->data;
    if (s->loading)
        return; /* the loader thread cannot be interrupted; stop after it */
    t2_log_msg(&s->log, T2_LOG_WARN, "requests still open after cancelling: closing them");
    finish(s);
}

void t2_serve_shutdown(t2_server *s, const char *why)
{
    if (s->draining) {
        if (why && !s->loading) {
            t2_log_msg(&s->log, T2_LOG_WARN, "%s again: stopping now", why);
            finish(s);
        }
        return;
    }
    s->draining = true;
    if (why)
        t2_log_msg(
            &s->log, T2_LOG_INFO,
            "%s: draining (%zu request(s) in flight, up to %.0f s before they are cancelled)", why,
            s->http ? t2_http_active(s->http) : 0, s->conf->grace);
    if (s->http)
        t2_http_quiesce(s->http);
    if (s->sched)
        t2_sched_drain(s->sched);
    /* a failed start (why == NULL) has nothing in flight worth waiting for */
    uint64_t grace_ms = why ? (uint64_t)(s->conf->grace * 1000) : 0;
    if (why)
        uv_timer_start(&s->grace_timer, on_grace, grace_ms, 0);
    uv_timer_start(&s->hard_timer, on_hard, grace_ms + 10000, 0);
    t2_serve_check_drained(s);
}
