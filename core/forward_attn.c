/* Attention over each row's own K/V cache, for the rows of one pass
 * (forward_layers.c): the new keys and values stored, then every query
 * head's softmax-weighted sum of its kv head's values into ws->att. */
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "forward_internal.h"

/* A sequence's cache of one layer's kv head: n_ctx rows of head_dim
 * values (floats, or f16 with kv_f16), contiguous (heads apart, not
 * interleaved per position), so a head's keys stream in one run. */
static void *kv_head(const t2_ctx *s, void *cache, int layer, int kvh)
{
    const t2_config *cfg = &s->m->cfg;
    size_t head = (size_t)layer * (size_t)cfg->n_kv_heads + (size_t)kvh;
    size_t elem = s->kv_f16 ? sizeof(uint16_t) : sizeof(float);
    return (char *)cache + head * (size_t)s->n_ctx * (size_t)cfg->head_dim * elem;
}

static void store_kv(t2_ctx *ws, const t2_row *rows, int layer, int n)
{
    int d = ws->m->cfg.head_dim, n_kv = ws->m->cfg.n_kv_heads;
    size_t kv_dim = (size_t)n_kv * (size_t)d;
    for (int t = 0; t < n; t++) {
        t2_ctx *s = rows[t].seq;
        size_t slot = (size_t)(rows[t].pos + rows[t].kv_shift) * (size_t)d;
        for (int h = 0; h < n_kv; h++) {
            const float *k = ws->k + (size_t)t * kv_dim + (size_t)h * (size_t)d;
            const float *v = ws->v + (size_t)t * kv_dim + (size_t)h * (size_t)d;
            void *kc = kv_head(s, s->k_cache, layer, h), *vc = kv_head(s, s->v_cache, layer, h);
            if (s->kv_f16) {
                ws->kern->f16_store(k, (size_t)d, (uint16_t *)kc + slot);
                ws->kern->f16_store(v, (size_t)d, (uint16_t *)vc + slot);
            } else {
                memcpy((float *)kc + slot, k, (size_t)d * sizeof(float));
                memcpy((float *)vc + slot, v, (size_t)d * sizeof(float));
            }
        }
    }
}

/* Keys a row attends to: 0..its own slot (causal). */
static int row_keys(const t2_row *r)
{
    return r->pos + r->kv_shift + 1;
}

/* ---- query by query: a decode step's rows ---- */

/* A partial softmax over some of a query's keys: part[0] the largest
 * score m (-inf: no key), part[1] l = sum of exp(s - m), part[2..] the
 * values weighted by exp(s - m), not yet divided by l. */
enum { PART_M, PART_L, PART_O };

/* Folds the partial softmax `part` into `acc` (both over disjoint keys of
 * one query): rescaled to the larger of the two maxima. */
static void merge_part(float *acc, const float *part, int d)
{
    if (part[PART_M] == -INFINITY)
        return;
    if (acc[PART_M] == -INFINITY) {
        memcpy(acc, part, (size_t)(d + PART_O) * sizeof(float));
        return;
    }
    float m = fmaxf(acc[PART_M], part[PART_M]);
    float a = expf(acc[PART_M] - m), b = expf(part[PART_M] - m);
    acc[PART_M] = m;
    for (int i = PART_L; i < d + PART_O; i++)
        acc[i] = a * acc[i] + b * part[i];
}

/* How many tasks a row's keys are split into: one per attn_split_keys
 * keys, at most T2_ATTN_SPLITS. Fixed by the row's key count alone, so a
 * row's result does not depend on the batch or the thread count. */
static int row_splits(const t2_ctx *ws, const t2_row *r)
{
    int s = (row_keys(r) + ws->attn_split_keys - 1) / ws->attn_split_keys;
    return s < 1 ? 1 : s > T2_ATTN_SPLITS ? T2_ATTN_SPLITS : s;
}

/* Where the partial of (row t, head h, split s) lives. */
static float *part_at(const t2_ctx *ws, int t, int h, int s)
{
    size_t d = (size_t)ws->m->cfg.head_dim, nh = (size_t)ws->m->cfg.n_heads;
    return ws->attn_part + (((size_t)t * nh + (size_t)h) * T2_ATTN_SPLITS + (size_t)s) * (d + 2);
}

/* out = o / l of a finished partial */
static void finish_part(const float *acc, int d, float *out)
{
    float inv = 1.0f / acc[PART_L];
    for (int i = 0; i < d; i++)
        out[i] = acc[PART_O + i] * inv;
}

/* Query heads h0..h0+gh-1 of row t (all of kv head kvh, gh <= 16) over
 * the keys [p0, p1): a chunk of keys at a time, whose K and V rows stay
 * in L2 while every head of the group reads them (each read from memory
 * once per group, not once per head), folded into each head's partial of
 * split s. With all the row's keys (`whole`), the heads' outputs go to
 * ws->att, straight from the kernels when one chunk holds them all. */
static void attend_split(t2_ctx *ws, const t2_row *row, int t, int layer, int kvh, int h0, int gh,
                         int s, int p0, int p1, bool whole, float *scratch)
{
    const t2_config *cfg = &ws->m->cfg;
    int d = cfg->head_dim;
    const t2_kernels *kern = ws->kern;
    const t2_ctx *seq = row->seq;
    bool half = seq->kv_f16;
    size_t elem = half ? sizeof(uint16_t) : sizeof(float);
    const char *kc = kv_head(seq, seq->k_cache, layer, kvh),
               *vc = kv_head(seq, seq->v_cache, layer, kvh);
    float scale = 1.0f / sqrtf((float)d);
    int chunk = ws->attn_chunk_keys < ws->n_ctx ? ws->attn_chunk_keys : ws->n_ctx;
    const float *q = ws->q + (size_t)t * (size_t)cfg->n_heads * (size_t)d;
    float *att = ws->att + (size_t)t * (size_t)cfg->n_heads * (size_t)d;
    bool direct = whole && p1 - p0 <= chunk; /* the softmax of one chunk is final */
    float *tmp = scratch + (size_t)T2_ATTN_LANES * (size_t)ws->n_ctx; /* d + 2 floats */
    for (int g = 0; g < gh && !direct; g++) {
        float *acc = part_at(ws, t, h0 + g, s);
        acc[PART_M] = -INFINITY;
        acc[PART_L] = 0.0f;
        memset(acc + PART_O, 0, (size_t)d * sizeof(float));
    }
    for (int p = p0, len; p < p1; p += len) {
        len = p1 - p < chunk ? p1 - p : chunk;
        const void *k = kc + (size_t)p * (size_t)d * elem, *v = vc + (size_t)p * (size_t)d * elem;
        int gap0 = row->gap_from > p ? row->gap_from : p;
        int gap1 = row->gap_to < p + len ? row->gap_to : p + len;
        for (int g = 0; g < gh; g++) {
            float *sc = scratch + (size_t)g * (size_t)len;
            const float *qh = q + (size_t)(h0 + g) * (size_t)d;
            if (half)
                kern->attn_scores_f16(k, (size_t)d, len, d, qh, scale, sc);
            else
                kern->attn_scores(k, (size_t)d, len, d, qh, scale, sc);
            for (int i = gap0; i < gap1; i++)
                sc[i - p] = -INFINITY; /* another branch's tokens */
        }
        for (int g = 0; g < gh; g++) {
            float *sc = scratch + (size_t)g * (size_t)len;
            float mx = -INFINITY;
            for (int i = 0; i < len; i++)
                mx = sc[i] > mx ? sc[i] : mx;
            if (mx == -INFINITY)
                continue; /* every key of the chunk in the gap */
            tmp[PART_M] = mx;
            tmp[PART_L] = kern->exp_shift(sc, len, mx);
            /* direct: the final output, times one over the sum */
            float *out = direct ? att + (size_t)(h0 + g) * (size_t)d : tmp + PART_O;
            float mix_scale = direct ? 1.0f / tmp[PART_L] : 1.0f;
            if (half)
                kern->attn_mix_f16(v, (size_t)d, len, d, sc, mix_scale, out);
            else
                kern->attn_mix(v, (size_t)d, len, d, sc, mix_scale, out);
            if (!direct)
                merge_part(part_at(ws, t, h0 + g, s), tmp, d);
        }
    }
    if (whole && !direct)
        for (int g = 0; g < gh; g++)
            finish_part(part_at(ws, t, h0 + g, s), d, att + (size_t)(h0 + g) * (size_t)d);
}

/* ---- lanes: a prompt's rows ---- */

/* How many rows from t0 one attn16 call can take: rows of one sequence
 * at consecutive positions with the same gap, at most max_rows. */
static int lane_rows(const t2_row *rows, int t0, int n, int max_rows)
{
    int r = 1;
    while (r < max_rows && t0 + r < n) {
        const t2_row *a = &rows[t0 + r - 1], *b = &rows[t0 + r];
        if (b->seq != a->seq || b->pos + b->kv_shift != a->pos + a->kv_shift + 1 ||
            b->gap_from != a->gap_from || b->gap_to != a->gap_to)
            break;
        r++;
    }
    return r;
}

/* The query heads of kv head kvh for rows t0..t0+nr-1 as the lanes of one
 * attn16 call (lane r * group + g: row t0 + r, head kvh * group + g). */
static void attend_lanes(t2_ctx *ws, const t2_row *rows, int layer, int t0, int nr, int kvh,
                         float *scores)
{
    const t2_config *cfg = &ws->m->cfg;
    int d = cfg->head_dim, group = cfg->n_heads / cfg->n_kv_heads, nq = nr * group;
    size_t q_dim = (size_t)cfg->n_heads * (size_t)d;
    float qt[T2_ATTN_MAX_D * T2_ATTN_LANES] __attribute__((aligned(64)));
    float *out[T2_ATTN_LANES];
    int n[T2_ATTN_LANES];
    float scale = 1.0f / sqrtf((float)d);
    memset(qt, 0, (size_t)d * T2_ATTN_LANES * sizeof *qt);
    for (int r = 0; r < nr; r++)
        for (int g = 0; g < group; g++) {
            int j = r * group + g;
            size_t off = (size_t)(t0 + r) * q_dim + (size_t)(kvh * group + g) * (size_t)d;
            const float *q = ws->q + off;
            for (int c = 0; c < d; c++)
                qt[T2_ATTN_LANES * c + j] = q[c] * scale;
            out[j] = ws->att + off;
            n[j] = row_keys(&rows[t0 + r]);
        }
    const t2_ctx *s = rows[t0].seq;
    const void *kc = kv_head(s, s->k_cache, layer, kvh), *vc = kv_head(s, s->v_cache, layer, kvh);
    if (s->kv_f16)
        ws->kern->attn16_f16(kc, vc, (size_t)d, d, qt, nq, n, rows[t0].gap_from, rows[t0].gap_to,
                             scores, out);
    else
        ws->kern->attn16(kc, vc, (size_t)d, d, qt, nq, n, rows[t0].gap_from, rows[t0].gap_to,
                         scores, out);
}

void t2_attn_lane_plan(const t2_kernels *k, int group, int d, int *min_rows, int *max_rows)
{
    if (!k->attn16 || group > T2_ATTN_LANES || d > T2_ATTN_MAX_D) {
        *min_rows = INT_MAX;
        *max_rows = 1;
        return;
    }
    *max_rows = T2_ATTN_LANES / group;
    *min_rows = (T2_ATTN_LANES / 2 + group - 1) / group;
}

/* ---- dealing the work out ---- */

typedef struct attn_job {
    t2_ctx *ws;
    const t2_row *rows;
    int layer, n;
    int min_rows, max_rows; /* t2_attn_lane_plan */
} attn_job;

/* The tasks of a row that goes query by query: one per (kv head, split),
 * and per 16 query heads of a kv head with more. */
static int head_batches(int group)
{
    return (group + T2_ATTN_LANES - 1) / T2_ATTN_LANES;
}

/* A run of rows of one sequence that t2_attn_lane_plan lets through
 * attn16 goes there, one task per kv head, dealt out round-robin (a
 * prompt's later rows see more keys): each key and value read once for
 * all those queries. Other rows (a decode step's, one per sequence) go
 * query by query, one task per (row, kv head, split of the keys), each
 * worker a contiguous share of them. */
static void attn_worker(void *arg, int w, int nw)
{
    const attn_job *j = arg;
    t2_ctx *ws = j->ws;
    const t2_config *cfg = &ws->m->cfg;
    int n_kv = cfg->n_kv_heads, group = cfg->n_heads / n_kv;
    int batches = head_batches(group);
    float *scratch = ws->scores + (size_t)w * ws->scores_stride;
    int single = 0; /* tasks of the rows that go query by query */
    for (int t0 = 0, nr; t0 < j->n; t0 += nr) {
        nr = lane_rows(j->rows, t0, j->n, j->max_rows);
        if (nr < j->min_rows)
            for (int t = t0; t < t0 + nr; t++)
                single += n_kv * batches * row_splits(ws, &j->rows[t]);
    }
    int b, e, lane_task = 0, task = 0;
    t2_pool_share(single, w, nw, 1, &b, &e);
    for (int t0 = 0, nr; t0 < j->n; t0 += nr) {
        nr = lane_rows(j->rows, t0, j->n, j->max_rows);
        if (nr >= j->min_rows) {
            for (int kvh = 0; kvh < n_kv; kvh++, lane_task++)
                if (lane_task % nw == w)
                    attend_lanes(ws, j->rows, j->layer, t0, nr, kvh, scratch);
            continue;
        }
        for (int t = t0; t < t0 + nr; t++) {
            const t2_row *row = &j->rows[t];
            int n = row_keys(row), splits = row_splits(ws, row);
            for (int kvh = 0; kvh < n_kv; kvh++)
                for (int hb = 0; hb < batches; hb++)
                    for (int s = 0; s < splits; s++, task++) {
                        if (task < b || task >= e)
                            continue;
                        int h0 = kvh * group + hb * T2_ATTN_LANES;
                        int gh = group - hb * T2_ATTN_LANES;
                        gh = gh < T2_ATTN_LANES ? gh : T2_ATTN_LANES;
                        int p0 = n * s / splits, p1 = n * (s + 1) / splits;
                        attend_split(ws, row, t, j->layer, kvh, h0, gh, s, p0, p1, splits == 1,
                                     scratch);
                    }
        }
    }
}

/* The query-by-query rows whose keys were split: each head's partials
 * folded together (in split order, so the sum does not depend on which
 * worker ran which split) and divided out. */
static void merge_splits(t2_ctx *ws, const attn_job *j)
{
    const t2_config *cfg = &ws->m->cfg;
    int d = cfg->head_dim, nh = cfg->n_heads;
    for (int t0 = 0, nr; t0 < j->n; t0 += nr) {
        nr = lane_rows(j->rows, t0, j->n, j->max_rows);
        if (nr >= j->min_rows)
            continue;
        for (int t = t0; t < t0 + nr; t++) {
            int splits = row_splits(ws, &j->rows[t]);
            if (splits == 1)
                continue;
            for (int h = 0; h < nh; h++) {
                float *acc = part_at(ws, t, h, 0);
                for (int s = 1; s < splits; s++)
                    merge_part(acc, part_at(ws, t, h, s), d);
                finish_part(acc, d, ws->att + ((size_t)t * (size_t)nh + (size_t)h) * (size_t)d);
            }
        }
    }
}

void t2_attend(t2_ctx *ws, const t2_row *rows, int layer, int n)
{
    const t2_config *cfg = &ws->m->cfg;
    store_kv(ws, rows, layer, n);
    attn_job j = {ws, rows, layer, n, 0, 0};
    t2_attn_lane_plan(ws->kern, cfg->n_heads / cfg->n_kv_heads, cfg->head_dim, &j.min_rows,
                      &j.max_rows);
    t2_pool_run(ws->pool, attn_worker, &j);
    merge_splits(ws, &j);
}
