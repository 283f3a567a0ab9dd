/* t2 serve: the server object and what its handler files share. One
 * instance, owned by t2_cli_serve; everything in it belongs to the loop
 * thread except the engine and scheduler (thread-safe by their contracts)
 * and the jobs' shared halves (serve_job.h). */
#ifndef T2_SERVE_H
#define T2_SERVE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "api_gen.h"
#include "conf.h"
#include "engine.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "scheduler.h"

typedef struct t2_job t2_job;

typedef struct t2_server {
    t2_conf *conf;
    t2_log log;
    t2_metrics metrics;
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    uv_async_t wake;         /* scheduler and worker threads -> loop (serve_job.c) */
    uv_timer_t grace_timer;  /* shutdown: cancel what is left after conf->grace */
    uv_timer_t hard_timer;   /* shutdown: stop even if requests still hang */
    uv_work_t load_work;     /* the engine loads on a libuv worker (serve_load.c) */
    uv_timer_t rescan_timer; /* follows the shared experts dir (serve_load.c) */
    uv_work_t rescan_work;
    bool rescan_busy;
    size_t rescan_changes;
    int rescan_rc;
    t2_err rescan_err;
    t2_http *http;
    t2_engine *engine; /* NULL until loaded */
    t2_sched *sched;
    t2_engine_opts engine_opts;
    char *experts_dir, *profiles_dir, *svd_cache_dir; /* resolved from conf */
    int load_rc;
    t2_err load_err;
    bool loading, ready, draining, stopping;
    t2_api_limits limits;
    char *default_strategy;
    long long started; /* unix seconds: "created" of the model ids */
    uint64_t next_id;  /* OpenAI response ids */
    t2_job *jobs;      /* jobs the loop still follows */
    int exit_code;
    int handles_open;
} t2_server;

/* ---- routing and handlers (serve_routes.c and the serve_*.c files) ---- */

void t2_serve_admit(void *srv, t2_req *r);
void t2_serve_dispatch(void *srv, t2_req *r);
void t2_serve_completed(void *srv, t2_req *r, bool ok);

typedef void (*t2_handler)(t2_server *s, t2_req *r, const char *param);

void t2_h_health(t2_server *s, t2_req *r, const char *param);
void t2_h_ready(t2_server *s, t2_req *r, const char *param);
void t2_h_metrics(t2_server *s, t2_req *r, const char *param);
void t2_h_generate(t2_server *s, t2_req *r, const char *param);
void t2_h_chat(t2_server *s, t2_req *r, const char *param);
void t2_h_completions(t2_server *s, t2_req *r, const char *param);
void t2_h_classify(t2_server *s, t2_req *r, const char *param);
void t2_h_adapt(t2_server *s, t2_req *r, const char *param);
void t2_h_experts(t2_server *s, t2_req *r, const char *param);
void t2_h_expert(t2_server *s, t2_req *r, const char *param);
void t2_h_profiles(t2_server *s, t2_req *r, const char *param);
void t2_h_profile(t2_server *s, t2_req *r, const char *param);
void t2_h_models(t2_server *s, t2_req *r, const char *param);
void t2_h_model(t2_server *s, t2_req *r, const char *param);

/* ---- lifecycle (serve_load.c, serve_stop.c) ---- */

int t2_serve_start_loading(t2_server *s);
void t2_serve_shutdown(t2_server *s, const char *why);
/* Called when a request ends: finishes a shutdown once nothing is left. */
void t2_serve_check_drained(t2_server *s);

/* ---- helpers ---- */

/* Responds with status and a message (code from the status). */
void t2_serve_fail(t2_req *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The model's short name ("seedling"), the base model id. */
const char *t2_serve_model_id(const t2_server *s);

#endif
