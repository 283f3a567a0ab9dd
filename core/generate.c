#include "generate.h"
#include "clock.h"

#include <stdlib.h>
#include <string.h>

const char *t2_finish_name(enum t2_finish f)
{
    switch (f) {
    case T2_FINISH_STOP: return "stop";
    case T2_FINISH_LENGTH: return "length";
    case T2_FINISH_CANCELLED: return "cancelled";
    case T2_FINISH_TIMEOUT: return "timeout";
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

struct t2_gen_seq {
    const t2_model *m;
    t2_gen_params p;
    t2_gen_cb cb;
    void *user;
    t2_sampler smp;
    t2_tok_stream ts;
    int32_t *hist; /* prompt + generated */
    size_t n_hist, n_prompt;
    char *piece;
    size_t piece_cap, stop_len;
    float *logits; /* scratch copy: sampling modifies it */
    text_buf text;
    bool cancelled, finished, stopped_by_string;
    enum t2_finish finish;
    int n_tokens;
};

static void emit(t2_gen_seq *g, size_t upto, int32_t token)
{
    if (upto < g->text.emitted)
        upto = g->text.emitted;
    if (g->cb && !g->cancelled &&
        !g->cb(g->user, g->text.s + g->text.emitted, upto - g->text.emitted, token))
        g->cancelled = true;
    g->text.emitted = upto;
}

/* Adds a token's text; returns true when a stop string ended generation. */
static bool add_piece(t2_gen_seq *g, const char *piece, size_t n, int32_t token)
{
    size_t search_from = g->text.len > g->stop_len ? g->text.len - g->stop_len : 0;
    if (text_append(&g->text, piece, n) != 0)
        return false;
    if (g->p.n_stop) {
        long at = find_stop(&g->text, &g->p, search_from);
        if (at >= 0) {
            g->text.len = (size_t)at;
            g->text.s[at] = '\0';
            emit(g, (size_t)at, token);
            return true;
        }
    }
    emit(g, g->text.len - stop_prefix_tail(&g->text, &g->p), token);
    return false;
}

void t2_gen_seq_free(t2_gen_seq *g)
{
    if (!g)
        return;
    t2_sampler_free(&g->smp);
    free(g->hist);
    free(g->piece);
    free(g->logits);
    free(g->text.s);
    free(g);
}

int t2_gen_seq_create(t2_gen_seq **out, const t2_model *m, const int32_t *prompt, size_t n_prompt,
                      const t2_gen_params *p, t2_gen_cb cb, void *user, t2_err *err)
{
    *out = NULL;
    if (n_prompt == 0)
        return t2_err_set(err, "empty prompt");
    if (p->max_tokens <= 0)
        return t2_err_set(err, "max_tokens must be positive");
    t2_gen_seq *g = calloc(1, sizeof *g);
    if (!g)
        return t2_err_set(err, "out of memory");
    g->m = m;
    g->p = *p;
    g->cb = cb;
    g->user = user;
    g->n_prompt = n_prompt;
    g->piece_cap = t2_tok_stream_cap(m->tok);
    g->stop_len = max_stop_len(p);
    g->finish = T2_FINISH_LENGTH;
    if (t2_sampler_init(&g->smp, &p->sampling, m->cfg.vocab, err) != 0) {
        free(g);
        return -1;
    }
    g->hist = malloc((n_prompt + (size_t)p->max_tokens) * sizeof *g->hist);
    g->logits = malloc((size_t)m->cfg.vocab * sizeof *g->logits);
    g->piece = malloc(g->piece_cap);
    if (!g->hist || !g->logits || !g->piece) {
        t2_gen_seq_free(g);
        return t2_err_set(err, "out of memory");
    }
    memcpy(g->hist, prompt, n_prompt * sizeof *g->hist);
    g->n_hist = n_prompt;
    t2_tok_stream_init(&g->ts, m->tok, p->skip_special);
    *out = g;
    return 0;
}

bool t2_gen_seq_step(t2_gen_seq *g, const float *logits, bool context_full, int32_t *next)
{
    if (g->finished)
        return true;
    memcpy(g->logits, logits, (size_t)g->m->cfg.vocab * sizeof *g->logits);
    int32_t tok = t2_sampler_next(&g->smp, g->logits, g->hist, g->n_hist);
    g->hist[g->n_hist++] = tok;
    g->n_tokens++;
    *next = tok;
    if (!g->p.ignore_eos && t2_model_is_eos(g->m, tok)) {
        t2_gen_seq_end(g, T2_FINISH_STOP);
        return true;
    }
    size_t n = t2_tok_stream_push(&g->ts, tok, g->piece, g->piece_cap);
    if (add_piece(g, g->piece, n, tok)) {
        g->stopped_by_string = true;
        t2_gen_seq_end(g, T2_FINISH_STOP);
        return true;
    }
    if (g->cancelled) {
        t2_gen_seq_end(g, T2_FINISH_CANCELLED);
        return true;
    }
    if (g->n_tokens >= g->p.max_tokens || context_full) {
        t2_gen_seq_end(g, T2_FINISH_LENGTH);
        return true;
    }
    return false;
}

void t2_gen_seq_end(t2_gen_seq *g, enum t2_finish finish)
{
    if (g->finished)
        return;
    g->finished = true;
    g->finish = finish;
    if (g->stopped_by_string || finish == T2_FINISH_CANCELLED)
        return;
    /* the end: release bytes held back for an incomplete character or a
     * possible stop-string prefix */
    size_t n = t2_tok_stream_flush(&g->ts, g->piece, g->piece_cap);
    text_append(&g->text, g->piece, n);
    if (g->text.emitted < g->text.len)
        emit(g, g->text.len, -1);
}

bool t2_gen_seq_finished(const t2_gen_seq *g, enum t2_finish *finish)
{
    if (finish)
        *finish = g->finish;
    return g->finished;
}

int t2_gen_seq_n_tokens(const t2_gen_seq *g)
{
    return g->n_tokens;
}

int t2_gen_seq_take_result(t2_gen_seq *g, t2_gen_result *res, t2_err *err)
{
    memset(res, 0, sizeof *res);
    res->n_prompt = (int)g->n_prompt;
    res->n_tokens = g->n_tokens;
    res->finish = g->finish;
    res->tokens = malloc(((size_t)g->n_tokens + 1) * sizeof *res->tokens);
    if (res->tokens)
        memcpy(res->tokens, g->hist + g->n_prompt, (size_t)g->n_tokens * sizeof *res->tokens);
    res->text = g->text.s ? g->text.s : strdup("");
    res->len = g->text.len;
    g->text.s = NULL;
    g->text.len = g->text.cap = g->text.emitted = 0;
    if (!res->tokens || !res->text) {
        t2_gen_result_free(res);
        return t2_err_set(err, "out of memory");
    }
    return 0;
}

int t2_generate(t2_ctx *ctx, const t2_model *m, const int32_t *prompt, size_t n_prompt,
                const t2_gen_params *p, t2_gen_cb cb, void *user, t2_gen_result *res, t2_err *err)
{
    memset(res, 0, sizeof *res);
    if ((long)n_prompt + t2_ctx_n_past(ctx) >= t2_ctx_n_ctx(ctx))
        return t2_err_set(err, "prompt of %zu tokens does not fit the context of %d", n_prompt,
                          t2_ctx_n_ctx(ctx));
    t2_gen_seq *g;
    if (t2_gen_seq_create(&g, m, prompt, n_prompt, p, cb, user, err) != 0)
        return -1;
    double t0 = t2_now_ms();
    const float *out;
    int rc = t2_forward(ctx, prompt, (int)n_prompt, false, &out, err);
    double t1 = t2_now_ms();
    int32_t tok;
    while (rc == 0 && !t2_gen_seq_step(g, out, t2_ctx_n_past(ctx) >= t2_ctx_n_ctx(ctx), &tok))
        rc = t2_forward(ctx, &tok, 1, false, &out, err);
    double t2 = t2_now_ms();
    if (rc == 0)
        rc = t2_gen_seq_take_result(g, res, err);
    t2_gen_seq_free(g);
    res->prefill_ms = t1 - t0;
    res->decode_ms = t2 - t1;
    return rc;
}
