/* Greedy exact-match evaluation of question sets. Items are answered by
 * up to EVAL_SEQS sequences decoded together (t2_forward_batch: each with
 * its own weights, a matrix they share read once per step); a finished
 * sequence's slot takes the next item at once. */
#include "dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "generate.h"

enum { EVAL_SEQS = 16 };

typedef struct eval_slot {
    t2_ctx *ctx;
    t2_gen_seq *g; /* NULL: free */
    size_t item;
    int32_t next; /* the token to append in the next step */
} eval_slot;

typedef struct eval_run {
    t2_engine *e;
    const t2_qa *items;
    const t2_adapted *const *w; /* [n] weights per item (NULL entries: the base) */
    int32_t **ids;              /* [n] chat prompts */
    size_t *n_ids;
    size_t n, next_item, right;
    t2_gen_params gp;
    eval_slot slot[EVAL_SEQS];
    int n_slots;
} eval_run;

static bool context_full(const t2_ctx *c)
{
    return t2_ctx_n_past(c) >= t2_ctx_n_ctx(c);
}

/* Scores the slot's finished answer and frees its sequence. */
static int finish_slot(eval_run *r, eval_slot *s, t2_err *err)
{
    t2_gen_result res;
    int rc = t2_gen_seq_take_result(s->g, &res, err);
    t2_gen_seq_free(s->g);
    s->g = NULL;
    if (rc != 0)
        return -1;
    r->right += t2_answer_matches(res.text, r->items[s->item].answer);
    t2_gen_result_free(&res);
    return 0;
}

/* Gives the slot the next items until one needs a decode step (an answer
 * can end with its first token) or none are left. */
static int fill_slot(eval_run *r, eval_slot *s, t2_err *err)
{
    while (!s->g && r->next_item < r->n) {
        size_t i = r->next_item++;
        s->item = i;
        t2_ctx_truncate(s->ctx, 0);
        t2_ctx_set_layers(s->ctx, r->w[i] ? r->w[i]->layers : NULL);
        if (t2_gen_seq_create(&s->g, r->e->model, r->ids[i], r->n_ids[i], &r->gp, NULL, NULL,
                              err) != 0)
            return -1;
        const float *logits;
        if (t2_forward(s->ctx, r->ids[i], (int)r->n_ids[i], false, &logits, err) != 0)
            return -1;
        if (t2_gen_seq_step(s->g, logits, context_full(s->ctx), &s->next) &&
            finish_slot(r, s, err) != 0)
            return -1;
    }
    return 0;
}

/* One decode step of every busy slot together, then refills the slots
 * whose answers ended. *busy: whether any slot still decodes. */
static int step_all(eval_run *r, bool *busy, t2_err *err)
{
    t2_ctx *ctxs[EVAL_SEQS];
    int32_t toks[EVAL_SEQS];
    int at[EVAL_SEQS], k = 0;
    for (int i = 0; i < r->n_slots; i++)
        if (r->slot[i].g) {
            ctxs[k] = r->slot[i].ctx;
            toks[k] = r->slot[i].next;
            at[k++] = i;
        }
    *busy = k > 0;
    if (k == 0)
        return 0;
    const float *logits;
    if (t2_forward_batch(ctxs, toks, k, &logits, err) != 0)
        return -1;
    size_t vocab = (size_t)r->e->model->cfg.vocab;
    /* every row is read before any context runs again (refills do) */
    for (int j = 0; j < k; j++) {
        eval_slot *s = &r->slot[at[j]];
        if (t2_gen_seq_step(s->g, logits + (size_t)j * vocab, context_full(s->ctx), &s->next) &&
            finish_slot(r, s, err) != 0)
            return -1;
    }
    for (int i = 0; i < r->n_slots; i++)
        if (fill_slot(r, &r->slot[i], err) != 0)
            return -1;
    return 0;
}

static void run_free(eval_run *r)
{
    for (int i = 0; i < r->n_slots; i++) {
        t2_gen_seq_free(r->slot[i].g);
        t2_ctx_free(r->slot[i].ctx);
    }
    for (size_t i = 0; r->ids && i < r->n; i++)
        free(r->ids[i]);
    free(r->ids);
    free(r->n_ids);
}

/* Chat prompts of every item, and contexts that fit the longest of them
 * with its answer. */
static int run_init(eval_run *r, int max_tokens, t2_err *err)
{
    r->ids = calloc(r->n ? r->n : 1, sizeof *r->ids);
    r->n_ids = calloc(r->n ? r->n : 1, sizeof *r->n_ids);
    if (!r->ids || !r->n_ids)
        return t2_err_set(err, "out of memory");
    size_t longest = 0;
    for (size_t i = 0; i < r->n; i++) {
        const t2_qa *q = &r->items[i];
        t2_chat_msg msgs[2];
        size_t m = 0;
        if (q->system)
            msgs[m++] = (t2_chat_msg){"system", q->system};
        msgs[m++] = (t2_chat_msg){"user", q->question};
        if (t2_engine_chat_ids(r->e, msgs, m, &r->ids[i], &r->n_ids[i], err) != 0) {
            char what[32];
            snprintf(what, sizeof what, "item %zu", i);
            return t2_err_prefix(err, what);
        }
        if (r->n_ids[i] > longest)
            longest = r->n_ids[i];
    }
    int max_pos = r->e->model->cfg.max_pos;
    if (longest >= (size_t)max_pos)
        return t2_err_set(err, "a prompt of %zu tokens does not fit the context of %d", longest,
                          max_pos);
    /* as t2_generate: the answer stops where the context ends */
    long n_ctx = (long)longest + max_tokens + 1;
    if (n_ctx > max_pos)
        n_ctx = max_pos;
    t2_gen_params_defaults(&r->gp);
    r->gp.max_tokens = max_tokens;
    r->n_slots = r->n < EVAL_SEQS ? (int)r->n : EVAL_SEQS;
    for (int i = 0; i < r->n_slots; i++)
        if (t2_ctx_create(&r->slot[i].ctx, r->e->model, r->e->pool, (int)n_ctx, err) != 0)
            return -1;
    return 0;
}

/* Greedy answers to items [0, n), item i under w[i]; *right: how many
 * match their reference answers. */
static int answer_items(t2_engine *e, const t2_qa *items, size_t n, const t2_adapted *const *w,
                        int max_tokens, size_t *right, t2_err *err)
{
    eval_run r = {.e = e, .items = items, .w = w, .n = n};
    int rc = run_init(&r, max_tokens, err);
    for (int i = 0; rc == 0 && i < r.n_slots; i++)
        rc = fill_slot(&r, &r.slot[i], err);
    bool busy = true;
    while (rc == 0 && busy)
        rc = step_all(&r, &busy, err);
    *right = r.right;
    run_free(&r);
    return rc;
}

int t2_eval_accuracy(t2_engine *e, const t2_dataset *ds, size_t limit, const t2_adapted *weights,
                     int max_tokens, double *accuracy, t2_err *err)
{
    size_t n = limit && limit < ds->n ? limit : ds->n, right = 0;
    const t2_adapted **w = calloc(n ? n : 1, sizeof *w);
    if (!w)
        return t2_err_set(err, "out of memory");
    for (size_t i = 0; i < n; i++)
        w[i] = weights;
    int rc = answer_items(e, ds->items, n, w, max_tokens, &right, err);
    free(w);
    *accuracy = n ? (double)right / (double)n : 0.0;
    return rc;
}

int t2_eval_two_pass(t2_engine *e, t2_ctx *ctx, const t2_dataset *ds, size_t limit,
                     const t2_adapt_req *req, int max_tokens, double *accuracy, t2_err *err)
{
    size_t n = limit && limit < ds->n ? limit : ds->n, right = 0;
    /* windows of EVAL_SEQS items: pass 1 item by item (on ctx, which keeps
     * the classification prompt's fixed part cached), then pass 2 for the
     * window's items together; at most a window's weight sets alive */
    int rc = 0;
    for (size_t i0 = 0; rc == 0 && i0 < n; i0 += EVAL_SEQS) {
        size_t m = n - i0 < EVAL_SEQS ? n - i0 : EVAL_SEQS, got = 0;
        t2_adapted *w[EVAL_SEQS] = {0};
        for (size_t i = 0; rc == 0 && i < m; i++) {
            t2_decision d;
            int code;
            rc = t2_engine_decide(e, ctx, req, ds->items[i0 + i].question, &d, &code, err);
            if (rc == 0) {
                rc = t2_engine_weights(e, &d.mixture, max_tokens, &w[i], err);
                t2_decision_clear(&d);
            }
        }
        if (rc == 0)
            rc = answer_items(e, ds->items + i0, m, (const t2_adapted *const *)w, max_tokens, &got,
                              err);
        right += got;
        for (size_t i = 0; i < m; i++)
            t2_adapted_unref(w[i]);
    }
    *accuracy = n ? (double)right / (double)n : 0.0;
    return rc;
}
