/* Generation endpoints: POST /v1/generate, /v1/chat/completions and
 * /v1/completions. The path of a request:
 *   1-2. parse and validate (api/) and tokenise, on a libuv worker (bodies
 *        and prompts can be megabytes);
 *   3. t2_sched_submit; the connection waits suspended;
 *   4. scheduler callbacks fill the job and wake the loop (serve_job.c);
 *   5. non-streaming: on_done -> the whole response; streaming: once the
 *      decision (or an early error) is known the SSE response starts, its
 *      reader pulls rendered events and suspends when nothing is ready;
 *   6. client gone -> t2_sched_cancel (on_close). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_json.h"
#include "api_render.h"
#include "serve_job.h"
#include "serve_work.h"

typedef struct gen_ctx {
    t2_server *s;
    t2_req *r;
    enum t2_api_kind kind;
    /* parsing (worker) */
    int parse_rc;
    t2_api_err perr;
    t2_api_gen_req q;
    t2_oai_ids ids;
    /* tokenising (worker) */
    int32_t *tok;
    size_t n_tok;
    int tok_rc;
    t2_err tok_err;
    /* the job, followed while the request lives */
    t2_job *job;
    bool accounted;
    /* streaming: events rendered and not yet sent */
    bool stream_started, decision_sent, first_chunk_sent, end_rendered;
    char *out;
    size_t out_len, out_off, out_cap;
} gen_ctx;

static void gen_free(void *data)
{
    gen_ctx *g = data;
    if (!g)
        return;
    t2_api_gen_req_free(&g->q);
    free(g->tok);
    free(g->out);
    free(g);
}

static void gen_close(t2_req *r, void *data, bool ok)
{
    (void)r;
    (void)ok;
    gen_ctx *g = data;
    if (g->job) {
        t2_job_drop(g->job); /* cancels the generation if it still runs */
        g->job = NULL;
    }
}

/* ---- responses ---- */

static void respond_job_error(gen_ctx *g, const t2_job_result *res)
{
    t2_api_err e;
    int status = res->error_code >= 400 && res->error_code < 600 ? res->error_code : 500;
    t2_api_fail(&e, status, NULL, NULL, "%s", res->error[0] ? res->error : "generation failed");
    if (status == 429 || status == 503)
        t2_req_add_header(g->r, "Retry-After", "1");
    t2_req_respond_error(g->r, &e);
}

static void account(gen_ctx *g, const t2_job_result *res)
{
    if (g->accounted)
        return;
    g->accounted = true;
    t2_req_set_tokens(g->r, res->completion_tokens);
    if (res->error_code == 0)
        t2_metrics_job(&g->s->metrics, res->completion_tokens, res->pass1_ms / 1e3,
                       res->pass2_ms / 1e3);
}

/* The whole response of a non-streaming request (job done, under lock). */
/* The usage object of a finished job's response. */
static t2_api_usage usage_of(const t2_job_result *res)
{
    return (t2_api_usage){res->prompt_tokens, res->completion_tokens, res->cached_tokens};
}

static void respond_full(gen_ctx *g, t2_job *j)
{
    const t2_job_result *res = &j->res;
    if (res->error_code) {
        respond_job_error(g, res);
        return;
    }
    const char *text = j->text ? j->text : "";
    t2_api_usage u = usage_of(res);
    json_t *body;
    if (g->q.kind == T2_API_GENERATE)
        body = t2_api_generate_json(text, j->len, res->finish, &u,
                                    j->has_decision ? t2_api_decision_json(&j->dec, res->pass2_ms)
                                                    : NULL);
    else
        body = t2_oai_response(&g->ids, text, j->len, res->finish, &u);
    t2_req_respond_json(g->r, 200, body);
}

/* ---- streaming ---- */

static void out_put(gen_ctx *g, char *bytes, size_t n)
{
    if (!bytes)
        return;
    if (g->out_len + n > g->out_cap) {
        size_t cap = (g->out_len + n) * 2;
        char *grown = realloc(g->out, cap);
        if (!grown) {
            free(bytes);
            return;
        }
        g->out = grown;
        g->out_cap = cap;
    }
    memcpy(g->out + g->out_len, bytes, n);
    g->out_len += n;
    free(bytes);
}

static void out_event(gen_ctx *g, const char *name, json_t *data)
{
    size_t n = 0;
    char *ev = data ? t2_sse_event(name, data, &n) : NULL;
    json_decref(data);
    out_put(g, ev, n);
}

static void out_text(gen_ctx *g, const char *text, size_t len)
{
    if (g->q.kind == T2_API_GENERATE) {
        json_t *t = t2_api_text(text, len);
        out_event(g, NULL, t ? json_pack("{s:o}", "text", t) : NULL);
    } else {
        bool first = !g->first_chunk_sent;
        g->first_chunk_sent = true;
        out_event(g, NULL, t2_oai_chunk(&g->ids, first, text, len, NULL, g->q.include_usage));
    }
}

static void out_end(gen_ctx *g, const t2_job_result *res)
{
    t2_api_usage u = usage_of(res);
    g->end_rendered = true;
    if (res->error_code) {
        t2_api_err e;
        t2_api_fail(&e, res->error_code, NULL, NULL, "%s",
                    res->error[0] ? res->error : "generation failed");
        out_event(g, g->q.kind == T2_API_GENERATE ? "error" : NULL, t2_api_error_json(&e));
    } else if (g->q.kind == T2_API_GENERATE) {
        json_t *d =
            json_pack("{s:s, s:o, s:f, s:f}", "finish_reason", res->finish, "usage",
                      t2_api_usage_json(&u), "pass1_ms", res->pass1_ms, "pass2_ms", res->pass2_ms);
        out_event(g, "done", d);
    } else {
        if (!g->first_chunk_sent)
            out_text(g, "", 0);
        out_event(g, NULL, t2_oai_chunk(&g->ids, false, NULL, 0, res->finish, g->q.include_usage));
        if (g->q.include_usage)
            out_event(g, NULL, t2_oai_usage_chunk(&g->ids, &u));
    }
    if (g->q.kind != T2_API_GENERATE) {
        char *done = strdup(T2_OAI_DONE);
        out_put(g, done, done ? strlen(done) : 0);
    }
}

/* Renders what the job has produced since the last call. */
static void refill(gen_ctx *g)
{
    t2_job *j = g->job;
    if (!j || g->end_rendered)
        return;
    pthread_mutex_lock(&j->mu);
    char *text = j->text;
    size_t len = j->len;
    j->text = NULL;
    j->len = j->cap = 0;
    bool decided = j->has_decision, done = j->done;
    t2_job_result res = j->res;
    if (decided && !g->decision_sent && g->q.kind == T2_API_GENERATE)
        out_event(g, "adaptation", t2_api_decision_json(&j->dec, -1));
    pthread_mutex_unlock(&j->mu);
    g->decision_sent = g->decision_sent || decided;
    if (g->q.kind != T2_API_GENERATE && !g->first_chunk_sent && (decided || len))
        out_text(g, "", 0); /* OpenAI's first chunk carries the role */
    if (len)
        out_text(g, text, len);
    free(text);
    if (done) {
        account(g, &res);
        out_end(g, &res);
    }
}

static long gen_pull(void *cls, char *buf, size_t max)
{
    gen_ctx *g = cls;
    if (g->out_off == g->out_len) {
        g->out_off = g->out_len = 0;
        refill(g);
    }
    if (g->out_off < g->out_len) {
        size_t n = g->out_len - g->out_off < max ? g->out_len - g->out_off : max;
        memcpy(buf, g->out + g->out_off, n);
        g->out_off += n;
        return (long)n;
    }
    return g->end_rendered ? T2_PULL_END : 0;
}

/* ---- job events on the loop ---- */

static void gen_wake(t2_job *j)
{
    gen_ctx *g = j->arg;
    if (!g || !j->req)
        return;
    pthread_mutex_lock(&j->mu);
    bool done = j->done, decided = j->has_decision, text = j->len > 0;
    int error = j->res.error_code;
    pthread_mutex_unlock(&j->mu);
    if (!g->q.stream) {
        if (done) {
            pthread_mutex_lock(&j->mu);
            account(g, &j->res);
            respond_full(g, j);
            pthread_mutex_unlock(&j->mu);
            t2_job_drop(j);
            g->job = NULL;
        }
        return;
    }
    if (!g->stream_started) {
        if (done && error && !decided) {
            /* failed before anything was sent: a plain error status */
            pthread_mutex_lock(&j->mu);
            t2_job_result res = j->res;
            pthread_mutex_unlock(&j->mu);
            account(g, &res);
            respond_job_error(g, &res);
            t2_job_drop(j);
            g->job = NULL;
            return;
        }
        if (decided || done || text) {
            g->stream_started = true;
            t2_req_respond_stream(g->r, 200, "text/event-stream; charset=utf-8", gen_pull, g);
        }
        return;
    }
    /* the wake handle is shared by all jobs: resume only when this one has news */
    if (text || done || (decided && !g->decision_sent))
        t2_req_wake(g->r);
}

/* ---- tokenising and submission ---- */

/* On a libuv worker: parse, validate, tokenise. Reads only the request
 * body (unchanged while the connection waits) and immutable server state. */
static void prepare(void *arg)
{
    gen_ctx *g = arg;
    t2_server *s = g->s;
    size_t len;
    const char *body = t2_req_body(g->r, &len);
    g->parse_rc =
        g->kind == T2_API_GENERATE ? t2_api_parse_generate(body, len, &s->limits, &g->q, &g->perr)
        : g->kind == T2_API_CHAT   ? t2_api_parse_chat(body, len, &s->limits, &g->q, &g->perr)
                                 : t2_api_parse_completion(body, len, &s->limits, &g->q, &g->perr);
    if (g->parse_rc != 0)
        return;
    t2_engine *e = s->engine;
    if (g->q.msgs)
        g->tok_rc = t2_engine_chat_ids(e, g->q.msgs, g->q.n_msgs, &g->tok, &g->n_tok, &g->tok_err);
    else
        g->tok_rc =
            t2_tok_encode(e->model->tok, g->q.prompt, g->q.prompt_len,
                          t2_tok_adds_bos(e->model->tok), true, &g->tok, &g->n_tok, &g->tok_err);
}

static void submit(t2_server *s, t2_req *r, void *arg)
{
    gen_ctx *g = arg;
    if (t2_req_over(r))
        return; /* client gone meanwhile; gen_free runs with the request */
    if (g->parse_rc != 0) {
        t2_req_respond_error(r, &g->perr);
        return;
    }
    if (g->kind != T2_API_GENERATE)
        t2_oai_ids_init(&g->ids, g->kind == T2_API_CHAT, g->q.model, (long long)time(NULL),
                        ((uint64_t)s->started << 24) ^ ++s->next_id);
    if (g->tok_rc != 0) {
        t2_serve_fail(r, 422, "cannot tokenise the prompt: %s", g->tok_err.msg);
        return;
    }
    if (g->n_tok == 0) {
        t2_serve_fail(r, 422, "the prompt is empty after tokenisation");
        return;
    }
    g->job = t2_job_new(s, r, gen_wake);
    if (!g->job) {
        t2_serve_fail(r, 500, "out of memory");
        return;
    }
    g->job->arg = g; /* loop side only; the scheduler never sees g */
    t2_job_req jr = {.prompt = g->tok,
                     .n_prompt = g->n_tok,
                     .question = g->q.question,
                     .adapt = g->q.adapt,
                     .gen = g->q.gen,
                     .timeout_s = s->conf->timeout};
    int code = 0;
    t2_err err = {{0}};
    if (t2_job_submit(g->job, &jr, &code, &err) != 0) {
        t2_api_err e;
        t2_api_fail(&e, code >= 400 && code < 600 ? code : 500, NULL, NULL, "%s",
                    err.msg[0] ? err.msg : "the scheduler refused the request");
        if (e.status == 429 || e.status == 503)
            t2_req_add_header(r, "Retry-After", "1");
        t2_req_respond_error(r, &e);
        t2_job_drop(g->job);
        g->job = NULL;
    }
    free(g->tok);
    g->tok = NULL;
}

static void start(t2_server *s, t2_req *r, enum t2_api_kind kind)
{
    gen_ctx *g = calloc(1, sizeof *g);
    if (!g) {
        t2_serve_fail(r, 500, "out of memory");
        return;
    }
    g->s = s;
    g->r = r;
    g->kind = kind;
    t2_req_set_data(r, g, gen_close, gen_free);
    if (t2_serve_offload(s, r, prepare, submit, g) != 0)
        t2_serve_fail(r, 500, "cannot queue the request");
}

void t2_h_generate(t2_server *s, t2_req *r, const char *param)
{
    (void)param;
    start(s, r, T2_API_GENERATE);
}

void t2_h_chat(t2_server *s, t2_req *r, const char *param)
{
    (void)param;
    start(s, r, T2_API_CHAT);
}

void t2_h_completions(t2_server *s, t2_req *r, const char *param)
{
    (void)param;
    start(s, r, T2_API_COMPLETION);
}
