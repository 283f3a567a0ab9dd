/* t2 serve: configuration, the loop and its handles, and the run. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas_core.h"
#include "cli.h"
#include "serve.h"
#include "serve_job.h"

extern char **environ;

static void on_signal(uv_signal_t *h, int signum)
{
    t2_server *s = h->data;
    t2_serve_shutdown(s, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int init_handles(t2_server *s)
{
    if (uv_loop_init(&s->loop) != 0)
        return -1;
    uv_handle_t *hs[] = {(uv_handle_t *)&s->wake,       (uv_handle_t *)&s->sigterm,
                         (uv_handle_t *)&s->sigint,     (uv_handle_t *)&s->grace_timer,
                         (uv_handle_t *)&s->hard_timer, (uv_handle_t *)&s->rescan_timer};
    if (uv_async_init(&s->loop, &s->wake, t2_jobs_wake) != 0 ||
        uv_signal_init(&s->loop, &s->sigterm) != 0 || uv_signal_init(&s->loop, &s->sigint) != 0 ||
        uv_timer_init(&s->loop, &s->grace_timer) != 0 ||
        uv_timer_init(&s->loop, &s->hard_timer) != 0 ||
        uv_timer_init(&s->loop, &s->rescan_timer) != 0)
        return -1;
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        hs[i]->data = s;
    s->handles_open = (int)(sizeof hs / sizeof hs[0]);
    if (uv_signal_start(&s->sigterm, on_signal, SIGTERM) != 0 ||
        uv_signal_start(&s->sigint, on_signal, SIGINT) != 0)
        return -1;
    return 0;
}

static int listen_http(t2_server *s)
{
    t2_http_opts ho = {
        .loop = &s->loop,
        .host = s->conf->host,
        .port = s->conf->port,
        .max_body = (size_t)(s->conf->max_body * 1024 * 1024),
        .idle_timeout_s = (unsigned)s->conf->idle_timeout,
        .max_connections = (unsigned)s->conf->max_connections,
        .log = &s->log,
        .hooks = {t2_serve_admit, t2_serve_dispatch, t2_serve_completed, s},
    };
    char err[512];
    if (t2_http_start(&s->http, &ho, err, sizeof err) != 0) {
        t2_log_msg(&s->log, T2_LOG_ERROR, "%s", err);
        return -1;
    }
    bool v6 = strchr(s->conf->host, ':') != NULL;
    /* tests and scripts read the port from this line (with --port 0) */
    t2_log_msg(&s->log, T2_LOG_INFO, "listening on http://%s%s%s:%d", v6 ? "[" : "", s->conf->host,
               v6 ? "]" : "", t2_http_port(s->http));
    return 0;
}

static void close_all(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int run(t2_server *s)
{
    if (init_handles(s) != 0) {
        t2_log_msg(&s->log, T2_LOG_ERROR, "cannot set up the event loop");
        return 1;
    }
    s->started = (long long)time(NULL);
    s->exit_code = 0;
    if (listen_http(s) != 0 || t2_serve_start_loading(s) != 0) {
        s->exit_code = 1;
        t2_serve_shutdown(s, NULL);
    }
    uv_run(&s->loop, UV_RUN_DEFAULT);
    /* everything is closed by now; this is a safety net for early failures */
    uv_walk(&s->loop, close_all, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&s->loop) != 0)
        t2_log_msg(&s->log, T2_LOG_WARN, "event loop closed with handles still open");
    return s->exit_code;
}

int t2_cli_serve(int argc, char **argv)
{
    t2_conf conf;
    char err[1024];
    int rc = t2_conf_load(&conf, argc, argv, environ, err, sizeof err);
    if (rc == 1) {
        t2_conf_usage(stdout);
        t2_conf_free(&conf);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "t2 serve: %s\n", err);
        t2_conf_free(&conf);
        return 2;
    }
    /* writes to a closed connection must fail with EPIPE, not kill us */
    signal(SIGPIPE, SIG_IGN);
    /* a file size limit (RLIMIT_FSIZE) must fail the write with EFBIG (an
     * upload then gets 507), not kill the server and leave a temp file */
    signal(SIGXFSZ, SIG_IGN);
    t2_server s;
    memset(&s, 0, sizeof s);
    s.conf = &conf;
    t2_log_init(&s.log, conf.log_format, conf.log_level, stderr);
    char blas_note[256];
    if (t2_blas_core_note(blas_note, sizeof blas_note))
        t2_log_msg(&s.log, T2_LOG_INFO, "%s", blas_note);
    t2_metrics_init(&s.metrics);
    int status = run(&s);
    t2_engine_free(s.engine);
    t2_metrics_free(&s.metrics);
    free(s.default_strategy);
    free(s.experts_dir);
    free(s.profiles_dir);
    free(s.svd_cache_dir);
    t2_conf_free(&conf);
    return status;
}
