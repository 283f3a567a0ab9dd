#include "generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *t2_finish_name(enum t2_finish f)
{
    switch (f) {
    case T2_FINISH_STOP:
        return "stop";
    case T2_FINISH_LENGTH:
        return "length";
    case T2_FINISH_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

void t2_gen_params_defaults(t2_gen_params *p)
{
    memset(p, 0, sizeof *p);
    t2_sampling_defaults(&p->sampling);
    p->max_tokens = 256;
    p->skip_special = true;
}

void t2_gen_result_free(t2_gen_result *r)
{
    free(r->text);
    free(r->tokens);
    memset(r, 0, sizeof *r);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Growing text buffer with the part already handed to the callback. */
typedef struct text_buf {
    char *s;
    size_t len, cap, emitted;
} text_buf;

static int text_append(text_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p)
            return -1;
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

/* Earliest stop string occurrence at or after `from`, or -1. */
static long find_stop(const text_buf *b, const t2_gen_params *p, size_t from)
{
    long best = -1;
    for (size_t i = 0; i < p->n_stop; i++) {
        if (!p->stop[i][0])
            continue;
        const char *hit = memmem(b->s + from, b->len - from, p->stop[i], strlen(p->stop[i]));
        if (hit && (best < 0 || hit - b->s < best))
            best = hit - b->s;
    }
    return best;
}

/* Length of the longest tail of the text that begins some stop string:
 * that much must wait for the next token. */
static size_t stop_prefix_tail(const text_buf *b, const t2_gen_params *p)
{
    size_t keep = 0;
    for (size_t i = 0; i < p->n_stop; i++) {
        size_t sl = strlen(p->stop[i]);
        for (size_t k = sl > 0 ? sl - 1 : 0; k > keep; k--)
            if (k <= b->len && memcmp(b->s + b->len - k, p->stop[i], k) == 0) {
                keep = k;
                break;
            }
    }
    return keep;
}

static size_t max_stop_len(const t2_gen_params *p)
{
    size_t mx = 0;
    for (size_t i = 0; i < p->n_stop; i++)
        if (strlen(p->stop[i]) > mx)
            mx = strlen(p->stop[i]);
    return mx;
}

typedef struct gen_state {
    const t2_gen_params *p;
    t2_gen_cb cb;
    void *user;
    text_buf text;
    bool cancelled;
} gen_state;

static void emit(gen_state *g, size_t upto, int32_t token)
{
    if (upto < g->text.emitted)
        upto = g->text.emitted;
    if (g->cb && !g->cancelled &&
        !g->cb(g->user, g->text.s + g->text.emitted, upto - g->text.emitted, token))
        g->cancelled = true;
    g->text.emitted = upto;
}

/* Adds a token's text; returns true when a stop string ended generation. */
static bool add_piece(gen_state *g, const char *piece, size_t n, int32_t token, size_t stop_len)
{
    size_t search_from = g->text.len > stop_len ? g->text.len - stop_len : 0;
    if (text_append(&g->text, piece, n) != 0)
        return false;
    if (g->p->n_stop) {
        long at = find_stop(&g->text, g->p, search_from);
        if (at >= 0) {
            g->text.len = (size_t)at;
            g->text.s[at] = '\0';
            emit(g, (size_t)at, token);
            return true;
        }
    }
    emit(g, g->text.len - stop_prefix_tail(&g->text, g->p), token);
    return false;
}

static int check_args(const t2_ctx *ctx, size_t n_prompt, const t2_gen_params *p, t2_err *err)
{
    if (n_prompt == 0)
        return t2_err_set(err, "empty prompt");
    if (p->max_tokens <= 0)
        return t2_err_set(err, "max_tokens must be positive");
    if ((long)n_prompt + t2_ctx_n_past(ctx) >= t2_ctx_n_ctx(ctx))
        return t2_err_set(err, "prompt of %zu tokens does not fit the context of %d", n_prompt,
                          t2_ctx_n_ctx(ctx));
    return t2_sampling_validate(&p->sampling, err);
}

int t2_generate(t2_ctx *ctx, const t2_model *m, const int32_t *prompt, size_t n_prompt,
                const t2_gen_params *p, t2_gen_cb cb, void *user, t2_gen_result *res, t2_err *err)
{
    memset(res, 0, sizeof *res);
    if (check_args(ctx, n_prompt, p, err) != 0)
        return -1;
    t2_sampler smp;
    if (t2_sampler_init(&smp, &p->sampling, m->cfg.vocab, err) != 0)
        return -1;
    size_t hist_cap = n_prompt + (size_t)p->max_tokens;
    size_t piece_cap = t2_tok_stream_cap(m->tok);
    int32_t *hist = malloc(hist_cap * sizeof *hist);
    float *logits = malloc((size_t)m->cfg.vocab * sizeof *logits);
    char *piece = malloc(piece_cap);
    if (!hist || !logits || !piece) {
        free(hist);
        free(logits);
        free(piece);
        t2_sampler_free(&smp);
        return t2_err_set(err, "out of memory");
    }
    memcpy(hist, prompt, n_prompt * sizeof *hist);
    size_t n_hist = n_prompt;
    gen_state g = {.p = p, .cb = cb, .user = user};
    t2_tok_stream ts;
    t2_tok_stream_init(&ts, m->tok, p->skip_special);
    size_t stop_len = max_stop_len(p);
    bool stopped_by_string = false;
    res->n_prompt = (int)n_prompt;
    res->finish = T2_FINISH_LENGTH;

    double t0 = now_ms();
    const float *out;
    int rc = t2_forward(ctx, prompt, (int)n_prompt, false, &out, err);
    double t1 = now_ms();
    res->prefill_ms = t1 - t0;
    while (rc == 0) {
        memcpy(logits, out, (size_t)m->cfg.vocab * sizeof *logits);
        int32_t tok = t2_sampler_next(&smp, logits, hist, n_hist);
        hist[n_hist++] = tok;
        res->n_tokens++;
        if (!p->ignore_eos && t2_model_is_eos(m, tok)) {
            res->finish = T2_FINISH_STOP;
            break;
        }
        size_t n = t2_tok_stream_push(&ts, tok, piece, piece_cap);
        if (add_piece(&g, piece, n, tok, stop_len)) {
            res->finish = T2_FINISH_STOP;
            stopped_by_string = true;
            break;
        }
        if (g.cancelled) {
            res->finish = T2_FINISH_CANCELLED;
            break;
        }
        if (res->n_tokens >= p->max_tokens || t2_ctx_n_past(ctx) >= t2_ctx_n_ctx(ctx))
            break;
        rc = t2_forward(ctx, &tok, 1, false, &out, err);
    }
    if (rc == 0 && !stopped_by_string && res->finish != T2_FINISH_CANCELLED) {
        /* the end: release bytes held back for an incomplete character or
         * a possible stop-string prefix */
        size_t n = t2_tok_stream_flush(&ts, piece, piece_cap);
        text_append(&g.text, piece, n);
        if (g.text.emitted < g.text.len)
            emit(&g, g.text.len, -1);
    }
    res->decode_ms = now_ms() - t1;
    free(logits);
    free(piece);
    t2_sampler_free(&smp);
    if (rc != 0) {
        free(hist);
        free(g.text.s);
        return -1;
    }
    res->tokens = malloc(((size_t)res->n_tokens + 1) * sizeof *res->tokens);
    if (res->tokens)
        memcpy(res->tokens, hist + n_prompt, (size_t)res->n_tokens * sizeof *res->tokens);
    free(hist);
    res->text = g.text.s ? g.text.s : strdup("");
    res->len = g.text.len;
    if (!res->tokens || !res->text) {
        t2_gen_result_free(res);
        return t2_err_set(err, "out of memory");
    }
    return 0;
}
