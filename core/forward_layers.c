/* The layer computations over a set of rows. A row is one token of some
 * sequence, with that sequence's KV cache, position and weights, so the
 * same code runs a prefill chunk (one sequence, consecutive positions)
 * and a batched decode step (one token of each of several sequences). */
#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "forward_internal.h"

/* ---- matrix products: Y[n][rows] = X[n][cols] · W[rows][cols]ᵀ (+ b) ---- */

typedef struct matmul_job {
    t2_ctx *c;
    float *y;
    const float *x, *bias;
    const t2_wmat *w;
    int n;
    const uint16_t *xb; /* X rounded to bf16, for bf16 w: the bf16 x bf16 kernel */
} matmul_job;

/* Rows [r0, r1) of a bf16/q8_0 product with many rows of X: blocks of W
 * dequantised into this worker's scratch, then sgemm (prefill). */
static void matmul_dequant(const matmul_job *j, int worker, int r0, int r1)
{
    const t2_wmat *w = j->w;
    float *buf = j->c->deq + (size_t)worker * j->c->deq_floats;
    int block = (int)(j->c->deq_floats / (size_t)w->cols);
    for (int b0 = r0; b0 < r1; b0 += block) {
        int b1 = b0 + block < r1 ? b0 + block : r1;
        for (int r = b0; r < b1; r++)
            t2_wmat_row_f32(w, r, buf + (size_t)(r - b0) * (size_t)w->cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, b1 - b0, w->cols, 1.0f, j->x,
                    w->cols, buf, w->cols, 0.0f, j->y + b0, w->rows);
    }
}

/* Rows [r0, r1) of a bf16 product with many rows of X (prefill) on the
 * variant's bf16_prompt kernel: blocks of BF16_BLOCK_ROWS weight rows
 * (123 KB at 960 columns, kept in L2) against all rows of X. Blocks of
 * 32 / 128 / 256 rows measured 0.67-0.71 of sgemm against 0.71-0.72 on
 * the 4 x 4 tiles (stop 25). Exact to float rounding, as sgemm on the
 * widened rows. */
#define BF16_BLOCK_ROWS 64
static void matmul_bf16_blocks(const matmul_job *j, int r0, int r1)
{
    const t2_wmat *w = j->w;
    for (int b0 = r0; b0 < r1; b0 += BF16_BLOCK_ROWS) {
        int b1 = b0 + BF16_BLOCK_ROWS < r1 ? b0 + BF16_BLOCK_ROWS : r1;
        const uint16_t *wb =
            (const uint16_t *)(const void *)((const char *)w->data + (size_t)b0 * w->stride);
        j->c->kern->bf16_prompt(wb, w->stride, b1 - b0, w->cols, j->x, j->n, j->y + b0,
                                (size_t)w->rows);
    }
}

/* Rows [r0, r1) of a q8_0 product with many rows of X (prefill): the
 * int8 kernels, the variant's prompt_rows rows of X at a time (16; 64 for
 * AMX tiles), each time over all of this worker's weight rows. With 16
 * rows of X the kernel is bound by its arithmetic even with the weights
 * out of cache, and it multiplies int8 at 1.7x one core's sgemm rate (t2
 * bench --kernels), which beats widening the weights for sgemm. The
 * activations are quantised to Q8_0 as in decode (and as llama.cpp does
 * for q8_0 weights). */
static void matmul_q8_blocks(const matmul_job *j, int r0, int r1)
{
    const t2_wmat *w = j->w;
    int step = j->c->kern->prompt_rows;
    for (int i0 = 0; i0 < j->n; i0 += step) {
        int cnt = j->n - i0 < step ? j->n - i0 : step;
        t2_q8_act xq = t2_q8_act_rows(&j->c->xq, w->cols, i0);
        t2_wmat_mul(j->c->kern, w, r0, r1, j->x + (size_t)i0 * (size_t)w->cols, &xq, cnt,
                    j->y + (size_t)i0 * (size_t)w->rows, (size_t)w->rows);
    }
}

/* Rows [r0, r1) of a bf16 product with X rounded to bf16: the variant's
 * prompt_rows rows of X at a time over this worker's weight rows (as
 * matmul_q8_blocks) on the bf16 x bf16 kernel where the variant has one,
 * else T2_KERNEL_ROWS at a time on the bf16 kernel with those rows
 * widened back into this worker's scratch (exact: the same values). */
static void matmul_x16_rows(const matmul_job *j, int worker, int r0, int r1)
{
    const t2_wmat *w = j->w;
    const t2_kernels *k = j->c->kern;
    const uint16_t *w0 =
        (const uint16_t *)(const void *)((const char *)w->data + (size_t)r0 * w->stride);
    float *xf = j->c->deq + (size_t)worker * j->c->deq_floats;
    int step = k->bf16_x16 ? k->prompt_rows : T2_KERNEL_ROWS; /* xf holds 16 rows */
    for (int i0 = 0; i0 < j->n; i0 += step) {
        int cnt = j->n - i0 < step ? j->n - i0 : step;
        const uint16_t *xb = j->xb + (size_t)i0 * (size_t)w->cols;
        float *y = j->y + (size_t)i0 * (size_t)w->rows + r0;
        if (k->bf16_x16) {
            k->bf16_x16(w0, w->stride, r1 - r0, w->cols, xb, cnt, y, (size_t)w->rows);
            continue;
        }
        for (size_t i = 0; i < (size_t)cnt * (size_t)w->cols; i++)
            xf[i] = t2_bf16_to_f32(xb[i]);
        k->bf16(w0, w->stride, r1 - r0, w->cols, xf, cnt, y, (size_t)w->rows);
    }
}

/* Rows [r0, r1) of an f32 or bf16 product with a short prompt's rows of
 * X (t2_kernels.short_prompt_rows): the decode kernels, T2_KERNEL_ROWS
 * rows of X at a time against blocks of SHORT_BLOCK_ROWS weight rows
 * (kept in L2). */
#define SHORT_BLOCK_ROWS 64
static void matmul_short_blocks(const matmul_job *j, int r0, int r1)
{
    const t2_wmat *w = j->w;
    for (int b0 = r0; b0 < r1; b0 += SHORT_BLOCK_ROWS) {
        int b1 = b0 + SHORT_BLOCK_ROWS < r1 ? b0 + SHORT_BLOCK_ROWS : r1;
        for (int i0 = 0; i0 < j->n; i0 += T2_KERNEL_ROWS) {
            int cnt = j->n - i0 < T2_KERNEL_ROWS ? j->n - i0 : T2_KERNEL_ROWS;
            t2_wmat_mul(j->c->kern, w, b0, b1, j->x + (size_t)i0 * (size_t)w->cols, NULL, cnt,
                        j->y + (size_t)i0 * (size_t)w->rows, (size_t)w->rows);
        }
    }
}

/* Rows [r0, r1) of one product on this worker (matmul_range times it). */
static void matmul_rows(const matmul_job *j, int worker, int r0, int r1)
{
    const t2_wmat *w = j->w;
    if (r0 >= r1)
        return;
    if (j->xb)
        matmul_x16_rows(j, worker, r0, r1);
    else if (j->n <= T2_KERNEL_ROWS)
        t2_wmat_mul(j->c->kern, w, r0, r1, j->x, &j->c->xq, j->n, j->y, (size_t)w->rows);
    else if (w->type == T2_W_Q8_0 && j->n <= j->c->xq_rows)
        matmul_q8_blocks(j, r0, r1);
    else if (w->type == T2_W_BF16 && j->c->kern->bf16_prompt)
        matmul_bf16_blocks(j, r0, r1);
    else if (w->type != T2_W_Q8_0 && j->n <= j->c->kern->short_prompt_rows)
        matmul_short_blocks(j, r0, r1);
    else if (w->type == T2_W_F32)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, r1 - r0, w->cols, 1.0f, j->x,
                    w->cols, (const float *)w->data + (size_t)r0 * (size_t)w->cols, w->cols, 0.0f,
                    j->y + r0, w->rows);
    else
        matmul_dequant(j, worker, r0, r1);
    if (j->bias)
        for (int i = 0; i < j->n; i++)
            for (int r = r0; r < r1; r++)
                j->y[(size_t)i * (size_t)w->rows + (size_t)r] += j->bias[r];
}

/* The time since t0 (t2_prof_now) to this worker's kernel seconds. */
static void prof_worker(const t2_ctx *c, int worker, double t0)
{
    if (c->prof && worker < T2_PROF_WORKERS)
        c->prof->worker_sec[worker] += t2_prof_now(c) - t0;
}

/* Rows [r0, r1) of one product on this worker. */
static void matmul_range(const matmul_job *j, int worker, int r0, int r1)
{
    double t0 = t2_prof_now(j->c);
    matmul_rows(j, worker, r0, r1);
    prof_worker(j->c, worker, t0);
}

/* A product's rows handed out in chunks (t2_chunks), so a worker on a
 * slower core takes fewer (device Xeon, 8 threads: the workers' kernel
 * time in one step ranged 9.5-19.9 ms for equal fixed shares).
 * Multiples of 16 rows, so every row is computed the same way whichever
 * worker takes it. */
static void rows_in_chunks(t2_chunks *q, const t2_ctx *c, int rows)
{
    t2_chunks_init(q, rows, t2_pool_size(c->pool), 16);
}

typedef struct product_job {
    matmul_job m;
    t2_chunks q;
} product_job;

static void matmul_worker(void *arg, int worker, int nw)
{
    product_job *j = arg;
    int r0, r1;
    (void)nw;
    while (t2_chunks_take(&j->q, &r0, &r1))
        matmul_range(&j->m, worker, r0, r1);
}

/* matmul_worker with fixed shares (t2_pool_share), for a product whose
 * workers should read the rows they read in the run before */
static void matmul_share_worker(void *arg, int worker, int nw)
{
    const matmul_job *j = arg;
    int r0, r1;
    t2_pool_share(j->w->rows, worker, nw, 16, &r0, &r1);
    matmul_range(j, worker, r0, r1);
}

/* X made ready for the kernels once per product, not per worker:
 * quantised to Q8_0 into c->xq, or (xb set) rounded to bf16 into xb. */
typedef struct convert_job {
    t2_ctx *c;
    const float *x;
    uint16_t *xb;
    int n, cols;
} convert_job;

static void convert_rows(const convert_job *j, int i0, int i1)
{
    if (i0 >= i1)
        return;
    size_t cols = (size_t)j->cols, first = (size_t)i0 * cols;
    if (j->xb) {
        t2_bf16_round(j->x + first, (size_t)(i1 - i0) * cols, j->xb + first);
        return;
    }
    t2_q8_act rows = t2_q8_act_rows(&j->c->xq, j->cols, i0);
    j->c->kern->q8_act(j->x + first, i1 - i0, j->cols, &rows);
}

static void convert_worker(void *arg, int worker, int nw)
{
    const convert_job *j = arg;
    int i0, i1;
    t2_pool_share(j->n, worker, nw, 1, &i0, &i1);
    convert_rows(j, i0, i1);
}

/* n rows of X (cols values) converted as convert_job says; a prefill's
 * many rows split over the pool. */
static void convert_x(t2_ctx *c, const float *x, int n, int cols, uint16_t *xb)
{
    convert_job j = {c, x, xb, n, cols};
    if (n <= T2_KERNEL_ROWS)
        convert_rows(&j, 0, n);
    else
        t2_pool_run(c->pool, convert_worker, &j);
}

/* Y = X · Wᵀ (+ bias); xb: X already rounded to bf16 for bf16 w (the
 * bf16 x bf16 kernel), else NULL. */
static void matmul(t2_ctx *c, float *y, const float *x, const uint16_t *xb, const t2_wmat *w,
                   const float *bias, int n)
{
    if (w->type == T2_W_Q8_0 && n <= c->xq_rows)
        convert_x(c, x, n, w->cols, NULL);
    product_job j = {.m = {c, y, x, bias, w, n, xb}};
    rows_in_chunks(&j.q, c, w->rows);
    t2_pool_run(c->pool, matmul_worker, &j);
}

/* Several products of the same X in one dispatch (q, k, v; gate, up):
 * the workers split the concatenated output rows, so there is one
 * hand-off and one quantisation of X instead of one per matrix. With
 * swiglu (gate and up of equal shape) each worker takes the same rows
 * of both and applies y0 = silu(y0) * y1 on them. */
typedef struct fused_job {
    matmul_job part[3];
    int n_parts, total;
    bool swiglu;
    t2_chunks q; /* of total rows, or of gate's with swiglu */
} fused_job;

/* The rows of a part (first row at `base` of the concatenated outputs)
 * within the share [r0, r1): [*b, *e), false when there are none. */
static bool part_span(int base, int rows, int r0, int r1, int *b, int *e)
{
    *b = r0 > base ? r0 - base : 0;
    *e = r1 - base < rows ? r1 - base : rows;
    return *b < *e;
}

static void fused_worker(void *arg, int worker, int nw)
{
    fused_job *f = arg;
    int r0, r1;
    (void)nw;
    while (t2_chunks_take(&f->q, &r0, &r1)) {
        if (f->swiglu) {
            const matmul_job *g = &f->part[0], *u = &f->part[1];
            size_t rows = (size_t)g->w->rows;
            matmul_range(g, worker, r0, r1);
            matmul_range(u, worker, r0, r1);
            for (int i = 0; i < g->n; i++)
                g->c->kern->silu_mul(g->y + (size_t)i * rows + (size_t)r0,
                                     u->y + (size_t)i * rows + (size_t)r0, (size_t)(r1 - r0));
            continue;
        }
        int b, e;
        for (int p = 0, base = 0; p < f->n_parts; base += f->part[p].w->rows, p++)
            if (part_span(base, f->part[p].w->rows, r0, r1, &b, &e))
                matmul_range(&f->part[p], worker, b, e);
    }
}

/* f's rows handed out in chunks: gate's with swiglu, else all parts' */
static void fused_chunks(fused_job *f)
{
    const matmul_job *m = &f->part[0];
    rows_in_chunks(&f->q, m->c, f->swiglu ? m->w->rows : f->total);
}

/* The first stage of factored products, T = X · Vtᵀ, with every row t of
 * T then scaled by that row's singular values s[t] (rows of a mixed batch
 * may scale the same Vt differently); the workers split the output
 * columns of all parts and scale their own, and round them to bf16 into
 * tb[part] where that is set (for the second stage's bf16 kernel). */
typedef struct scaled_job {
    matmul_job part[2];
    const float *const *s[2]; /* [part][row of X] */
    uint16_t *tb[2];
    int n_parts;
    t2_chunks q; /* of all parts' rows (scaled_run) */
} scaled_job;

static void scaled_range(const scaled_job *j, int worker, int r0, int r1)
{
    for (int p = 0, base = 0; p < j->n_parts; base += j->part[p].w->rows, p++) {
        const matmul_job *m = &j->part[p];
        int b, e;
        if (!part_span(base, m->w->rows, r0, r1, &b, &e))
            continue;
        matmul_range(m, worker, b, e);
        for (int t = 0; t < m->n; t++) {
            float *y = m->y + (size_t)t * (size_t)m->w->rows;
            const float *s = j->s[p][t];
            for (int i = b; i < e; i++)
                y[i] *= s[i];
            if (j->tb[p])
                t2_bf16_round(y + b, (size_t)(e - b),
                              j->tb[p] + (size_t)t * (size_t)m->w->rows + b);
        }
    }
}

static void scaled_worker(void *arg, int worker, int nw)
{
    scaled_job *j = arg;
    int r0, r1;
    (void)nw;
    while (t2_chunks_take(&j->q, &r0, &r1))
        scaled_range(j, worker, r0, r1);
}

/* Runs j on the pool, its rows handed out in chunks. */
static void scaled_run(t2_ctx *c, scaled_job *j)
{
    int total = 0;
    for (int p = 0; p < j->n_parts; p++)
        total += j->part[p].w->rows;
    rows_in_chunks(&j->q, c, total);
    t2_pool_run(c->pool, scaled_worker, j);
}

/* ---- one layer matrix for rows that may use different weights ---- */

static const float *bias_of(const t2_layer *L, int kind)
{
    switch (kind) {
    case T2_WQ: return L->bq;
    case T2_WK: return L->bk;
    case T2_WV: return L->bv;
    case T2_WO: return L->bo;
    default: return NULL;
    }
}

static const t2_factor *factor_of(const t2_layer *L, int kind)
{
    return L->factors && L->factors[kind].s ? &L->factors[kind] : NULL;
}

/* What rows sharing a product must have in common: the dense matrix, or
 * for factored rows the shared U (each row then scales by its own s). */
static const void *group_key(const t2_ctx *c, const t2_layer *L, int kind)
{
    const t2_factor *f = factor_of(L, kind);
    return f ? (const void *)f->u : t2_layer_wmat(L, &c->m->cfg, kind).data;
}

static t2_wmat f32_mat(const float *w, int rows, int cols)
{
    return (t2_wmat){T2_W_F32, w, rows, cols, (size_t)cols * sizeof(float)};
}

/* A factor as a product with n rows of X reads it: its bf16 copy, if
 * any, for decode-sized products (half the bytes, and decode is bound by
 * them) and for every product of a q8_0 model on a kernel variant with a
 * bf16 x bf16 kernel (X rounded to bf16 too: AVX512-BF16's dot product
 * or AMX tiles, faster than sgemm); other prefills read float32, which
 * sgemm takes directly (widening the bf16 copy block by block for sgemm
 * made a q8_0 smollm2-360m's prefill of a never-seen mixture, 64
 * tokens, 1.93x the base's instead of 1.11x; without a bf16 x bf16
 * kernel the bf16 kernel on X widened back ran at 0.6x sgemm's rate). */
static bool reads_bf16_factor(const t2_ctx *c, const uint16_t *w16, int n)
{
    return w16 && (n <= T2_KERNEL_ROWS || (c->xb && c->kern->bf16_x16));
}

/* A factor (f32 w, bf16 copy w16 or NULL) as that product reads it. */
static t2_wmat factor_mat(const t2_ctx *c, const float *w, const uint16_t *w16, int rows, int cols,
                          int n)
{
    return reads_bf16_factor(c, w16, n)
               ? (t2_wmat){T2_W_BF16, w16, rows, cols, (size_t)cols * sizeof(uint16_t)}
               : f32_mat(w, rows, cols);
}

/* The factored form of a row's matrix: forced (factored weights) or its
 * view (a dense matrix that equals U diag(s) Vt), else NULL. */
static const t2_factor *view_of(const t2_layer *L, int kind)
{
    const t2_factor *f = factor_of(L, kind);
    return f ? f : L->mix && L->mix[kind].s ? &L->mix[kind] : NULL;
}

/* The rotation on the Q8_0 copies of the square factor (where built,
 * and the kernels want them) rather than on the bf16 one. */
static bool rotates_q8(const t2_ctx *c, const t2_factor *f)
{
    return f->rot_q8 && f->rot_q8_t && c->kern->rotate_q8;
}

/* A prompt's factored products on the Q8_0 copies of U and Vt (where
 * built: t2_factor.u_q8): r (m + n) int8 products per row, against the
 * rotation's m n + 2 r^2 (smollm2-360m's MLP matrices 1.375 against
 * 1.75 times W's); both are bound by arithmetic there. Only for more
 * than T2_KERNEL_ROWS rows of one sequence (a prompt): a decode batch
 * keeps the rotation, whose W its rows on the base share and which
 * gives a row the same result in a batch as alone (to rounding). */
static bool factored_q8(const t2_ctx *c, const t2_factor *f, int n)
{
    return f->u_q8 && f->vt_q8 && f->u_head && c->kern->rotate_q8 && c->one_seq &&
           n > T2_KERNEL_ROWS && n <= c->xq_rows;
}

/* U and Vt as a product with n rows of X reads them. */
static void factor_mats(const t2_ctx *c, const t2_factor *f, int n, t2_wmat *vt, t2_wmat *u)
{
    if (factored_q8(c, f, n)) {
        *vt = *f->vt_q8;
        *u = *f->u_q8;
        return;
    }
    *vt = factor_mat(c, f->vt, f->vt_bf16, f->r, f->n, n);
    *u = factor_mat(c, f->u, f->u_bf16, f->m, f->r, n);
}

/* T's first block in float32 for factored_u_q8: s . (X · Vtᵀ) for Vt's
 * first T2_Q8_0_BLOCK rows, over T's columns [n][r], for one or two
 * factored matrices of the same X (gate and up); each worker on its
 * share of X's rows, T2_KERNEL_ROWS at a time on the f32 kernel (sgemm
 * packed all of X for each 16 rows of Vt it was given). */
typedef struct head_job {
    t2_ctx *c;
    const float *x;
    int n, parts;
    const t2_factor *f[2];
    const float *const *s[2];
    float *t[2];
} head_job;

static void head_worker(void *arg, int worker, int nw)
{
    enum { B = T2_Q8_0_BLOCK };
    const head_job *j = arg;
    int i0, i1;
    t2_pool_share(j->n, worker, nw, T2_KERNEL_ROWS, &i0, &i1);
    double t0 = t2_prof_now(j->c);
    for (int p = 0; p < j->parts; p++) {
        const t2_factor *f = j->f[p];
        t2_wmat vh = f32_mat(f->vt, B, f->n);
        float head[T2_KERNEL_ROWS * B];
        for (int i = i0; i < i1; i += T2_KERNEL_ROWS) {
            int cnt = i1 - i < T2_KERNEL_ROWS ? i1 - i : T2_KERNEL_ROWS;
            t2_wmat_mul(j->c->kern, &vh, 0, B, j->x + (size_t)i * (size_t)f->n, NULL, cnt, head, B);
            for (int k = 0; k < cnt; k++)
                for (int q = 0; q < B; q++)
                    j->t[p][(size_t)(i + k) * (size_t)f->r + (size_t)q] =
                        head[k * B + q] * j->s[p][i + k][q];
        }
    }
    prof_worker(j->c, worker, t0);
}

/* The second stage of factored_q8, over chunks of Y's columns: Y = T ·
 * Uᵀ (+ bias) with T's first block zeroed (quantised in c->xq) against
 * U's Q8_0 copy, plus that block in float32 against U's first columns,
 * head · U_headᵀ (t2_kernels.rank_add). */
typedef struct u_q8_job {
    matmul_job m;
    const float *head;     /* [n][T2_Q8_0_BLOCK] */
    const float *u_head_t; /* [T2_Q8_0_BLOCK][m] */
    t2_chunks q;
} u_q8_job;

static void u_q8_worker(void *arg, int worker, int nw)
{
    u_q8_job *j = arg;
    size_t m = (size_t)j->m.w->rows;
    int r0, r1;
    (void)nw;
    while (t2_chunks_take(&j->q, &r0, &r1)) {
        matmul_range(&j->m, worker, r0, r1);
        double t0 = t2_prof_now(j->m.c);
        j->m.c->kern->rank_add(j->head, j->m.n, T2_Q8_0_BLOCK, j->u_head_t + r0, m, r1 - r0,
                               j->m.y + r0, m);
        prof_worker(j->m.c, worker, t0);
    }
}

/* Y = T · Uᵀ (+ bias) for factored_q8, T = s . (X · Vtᵀ) with its first
 * block in float32 (head_job): that block, the largest singular values,
 * would set its Q8_0 scale far above its other values, so it stays in
 * float32 here too (u_q8_job). Seedling q8_0, math expert, logits after
 * each reference prompt: 1.18e-2 from the float32 reference with that
 * block quantised on both sides, 6.2e-3 with it in float32 (7.0e-3 for
 * the materialised Q8_0 set, 6.4e-3 for the rotation). T [n][r] loses
 * its first block. */
static void factored_u_q8(t2_ctx *c, const t2_factor *f, float *y, float *t, const float *bias,
                          int n)
{
    enum { B = T2_Q8_0_BLOCK };
    float head[T2_CHUNK * B];
    size_t r = (size_t)f->r;
    for (size_t i = 0; i < (size_t)n; i++) {
        memcpy(head + i * B, t + i * r, B * sizeof *head);
        memset(t + i * r, 0, B * sizeof *t);
    }
    convert_x(c, t, n, f->r, NULL);
    u_q8_job j = {.m = {c, y, t, bias, f->u_q8, n, NULL}, .head = head, .u_head_t = f->u_head};
    rows_in_chunks(&j.q, c, f->m);
    t2_pool_run(c->pool, u_q8_worker, &j);
}

/* ---- a q8_0 model's adapted matrix, decode-sized: rotated ----
 *
 * With W = U diag(sigma) Vt the model's own matrix (what the SVD
 * decomposed) and dz = s / sigma - 1 a row's change of its singular values:
 * for r = n (V square) W' = U diag(s) Vt = W V diag(s / sigma) Vt, so
 * W' x = W (x + V (dz . (Vt x))); for r = m (U square) W' x = y0 +
 * U (dz . (Ut y0)) with y0 = W x. A decode step then reads W in Q8_0
 * (1.06 bytes a weight) and the square factor in bf16 (2 r^2 bytes, read
 * down its rows for one product and down its columns for the other, the
 * second time from cache) instead of U and Vt in bf16 (2 (m + n) r bytes):
 * a 2560 x 960 matrix 4.4 instead of 6.8 MB. Only the change passes
 * through bf16 (a row with s = sigma gets W x exactly), so it is also
 * closer to W' than the bf16 U diag(s) Vt. Prefill keeps U diag(s) Vt
 * (bound by arithmetic there, and the rotation adds 2 r^2 products per
 * row to the m n of W) except with the Q8_0 copies (rotates_q8): then
 * decode batches of up to c->xq_rows rows rotate too (int8 products
 * where int8 is the fastest unit, docs/PERFORMANCE.md, stop 25), and a
 * prompt takes U diag(s) Vt on Q8_0 copies of both (factored_q8, stop
 * 28) where those were built. */
static bool rotates(const t2_ctx *c, const t2_factor *f, int n)
{
    return f->base && f->sigma && f->base->type == T2_W_Q8_0 && c->rot_dz &&
           (rotates_q8(c, f) || (f->u_bf16 && f->vt_bf16)) && (f->r == f->n || f->r == f->m) &&
           ((n <= T2_KERNEL_ROWS && n <= c->kern->rotate_rows) ||
            (rotates_q8(c, f) && n <= c->xq_rows && !factored_q8(c, f, n)));
}

/* The rotation's products, each worker on the rows of the square bf16
 * factor R [k][cols] that t2_pool_share gives it, in both of its
 * products (so its second pass reads them from its own L2; split by
 * columns, a worker read rows the other workers had loaded, and the
 * column walk ran at half the speed of the row walk): the row walk
 * t = R x for its rows (right: scaled by dz and rounded to bf16), and
 * the column walk's partial sum over its rows sum_k t_k R[k] into its
 * own part of c->rot_part, added up after the pool run. */
typedef struct rot_job {
    t2_ctx *c;
    const uint16_t *r; /* [k_rows][cols] */
    int k_rows, cols, n;
    const uint16_t *xb; /* right: X [n][cols] in bf16; left: X [n][k_rows] in bf16 */
    float *t;           /* right: R X scaled by dz, [n][k_rows] */
    uint16_t *tb;       /* the same in bf16 */
    const float *const *dz;
} rot_job;

static float *rot_part(const t2_ctx *c, int worker)
{
    return c->rot_part + (size_t)worker * T2_KERNEL_ROWS * c->max_r;
}

/* right (dz set): t = dz . (R x) for this worker's rows k, then the
 * partial sum_k t_k R[k]; left: the partial sum_k x_k R[k]. */
static void rot_worker(void *arg, int worker, int nw)
{
    const rot_job *j = arg;
    int k0, k1;
    t2_pool_share(j->k_rows, worker, nw, 16, &k0, &k1);
    float *part = rot_part(j->c, worker);
    size_t cols = (size_t)j->cols, kr = (size_t)j->k_rows;
    if (k0 >= k1) {
        memset(part, 0, (size_t)j->n * cols * sizeof *part);
        return;
    }
    const uint16_t *x = j->xb + k0;
    if (j->dz) {
        t2_wmat rm = {T2_W_BF16, j->r, j->k_rows, j->cols, cols * sizeof(uint16_t)};
        matmul_job mj = {j->c, j->t, NULL, NULL, &rm, j->n, j->xb};
        matmul_range(&mj, worker, k0, k1);
        for (int t = 0; t < j->n; t++) {
            float *y = j->t + (size_t)t * kr;
            for (int i = k0; i < k1; i++)
                y[i] *= j->dz[t][i];
            t2_bf16_round(y + k0, (size_t)(k1 - k0), j->tb + (size_t)t * kr + (size_t)k0);
        }
        x = j->tb + k0;
    }
    double t0 = t2_prof_now(j->c);
    j->c->kern->bf16_t(j->r + (size_t)k0 * cols, cols * sizeof(uint16_t), k1 - k0, 0, j->cols, x,
                       kr, j->n, part, cols);
    prof_worker(j->c, worker, t0);
}

/* rows[j] += the workers' partials of row j, then (dz set) times dz[j]. */
static void rot_sum(const t2_ctx *c, int n, int cols, float *const *rows, const float *const *dz)
{
    int nw = t2_pool_size(c->pool);
    for (int j = 0; j < n; j++) {
        float *o = rows[j];
        for (int w = 0; w < nw; w++) {
            const float *p = rot_part(c, w) + (size_t)j * (size_t)cols;
            for (int i = 0; i < cols; i++)
                o[i] += p[i];
        }
        if (dz)
            for (int i = 0; i < cols; i++)
                o[i] *= dz[j][i];
    }
}

/* dz[i] = s[i] / sigma[i] - 1, and 0 where sigma[i] is 0 (W' has s = 0
 * there too; singular values are never negative). The choice is made
 * on sigma's bits, every value divided (by 1 where sigma is 0): a float
 * comparison kept GCC from vectorising the loop (it may trap), and the
 * scalar divisions took ~1 us per row and matrix of a mixed step. */
static void singular_change(const float *restrict s, const float *restrict sigma, int r,
                            float *restrict dz)
{
    const uint32_t one = 0x3f800000u; /* 1.0f */
    for (int i = 0; i < r; i++) {
        uint32_t sb, qb;
        memcpy(&sb, &sigma[i], sizeof sb);
        uint32_t keep = 0u - (uint32_t)((sb & 0x7fffffffu) != 0u); /* all ones where sigma != 0 */
        uint32_t den_b = (sb & keep) | (one & ~keep);
        float den, q;
        memcpy(&den, &den_b, sizeof den);
        q = s[i] / den - 1.0f;
        memcpy(&qb, &q, sizeof qb);
        qb &= keep;
        memcpy(&dz[i], &qb, sizeof qb);
    }
}

/* The left case's end: y[idx[j]] += d[j] (rows of m), then the bias on
 * every row of y. */
static void add_change(float *y, const float *d, const int *idx, int act, const float *bias, int n,
                       size_t m)
{
    for (int j = 0; j < act; j++)
        for (size_t i = 0; i < m; i++)
            y[(size_t)idx[j] * m + i] += d[(size_t)j * m + i];
    for (int k = 0; bias && k < n; k++)
        for (size_t i = 0; i < m; i++)
            y[(size_t)k * m + i] += bias[i];
}

/* The change r2 (dz . (r1 v)) of the act rows idx of v [n][cols] (all:
 * v's own rows, idx[j] = j) into a [act][cols], through b [act][r]. */
static void rotation_change(t2_ctx *c, const t2_wmat *r1, const t2_wmat *r2, const float *const *dz,
                            const int *idx, int act, bool all, const float *v, size_t cols,
                            float *a, float *b)
{
    size_t r = (size_t)r1->rows;
    for (int j = 0; !all && j < act; j++)
        memcpy(a + (size_t)j * cols, v + (size_t)idx[j] * cols, cols * sizeof *a);
    matmul(c, b, all ? v : a, NULL, r1, NULL, act);
    for (int j = 0; j < act; j++)
        for (size_t i = 0; i < r; i++)
            b[(size_t)j * r + i] *= dz[j][i];
    matmul(c, a, b, NULL, r2, NULL, act);
}

/* rotated_matmul with the Q8_0 copies of the square factor R and its
 * transpose (t2_kernels.rotate_q8): each side of the rotation a plain
 * q8_0 product of the act rotated rows (idx) over the pool, X and
 * dz . (R X) quantised as any X of a q8_0 product. Up to T2_CHUNK rows
 * (a prompt's): c->fact_tmp's halves a and b hold the gathered rows, R X
 * and the change in turn. */
static void rotated_matmul_q8(t2_ctx *c, const t2_factor *f, const float *const *dz, const int *idx,
                              int act, float *y, const float *x, const float *bias, int n,
                              double t0)
{
    float *a = c->fact_tmp, *b = c->fact_tmp + c->fact_half;
    bool all = act == n;
    if (f->r == f->n) { /* x' = x + V (dz . (Vt x)), then W x' */
        size_t in = (size_t)f->n;
        rotation_change(c, f->rot_q8, f->rot_q8_t, dz, idx, act, all, x, in, a, b);
        float *xs = a; /* x' in place of the change, or (some rows not rotated) in b */
        if (all)
            for (size_t i = 0; i < (size_t)n * in; i++)
                a[i] += x[i];
        else {
            xs = b;
            memcpy(b, x, (size_t)n * in * sizeof *b);
            for (int j = 0; j < act; j++)
                for (size_t i = 0; i < in; i++)
                    b[(size_t)idx[j] * in + i] += a[(size_t)j * in + i];
        }
        t2_prof_add(c, T2_STAGE_ROTATION, t0);
        matmul(c, y, xs, NULL, f->base, bias, n);
        return;
    }
    /* y0 = W x, then y0 + U (dz . (Ut y0)) */
    size_t m = (size_t)f->m;
    double t_w = t2_prof_now(c);
    matmul(c, y, x, NULL, f->base, NULL, n);
    t0 += t2_prof_now(c) - t_w; /* W's product is not the rotation's */
    rotation_change(c, f->rot_q8_t, f->rot_q8, dz, idx, act, all, y, m, a, b);
    add_change(y, a, idx, act, bias, n, m);
    t2_prof_add(c, T2_STAGE_ROTATION, t0);
}

/* Y = X · W'ᵀ (+ bias) for rows whose W' = U diag(s[t]) Vt (rotates()).
 * Rows on the base's own view (s is sigma: no change) skip the rotation;
 * the others are its rows 0..act-1 (row idx[j] of X and Y). */
static void rotated_matmul(t2_ctx *c, const t2_factor *f, const float *const *s, float *y,
                           const float *x, const float *bias, int n)
{
    const float *dz[T2_CHUNK];
    int idx[T2_CHUNK], act = 0, changes = 0;
    double t0 = t2_prof_now(c);
    for (int t = 0; t < n; t++) {
        if (s[t] == f->sigma)
            continue;
        dz[act] = NULL;
        for (int j = act - 1; j >= 0 && !dz[act]; j--) /* rows on one expert share it */
            if (s[idx[j]] == s[t])
                dz[act] = dz[j];
        if (!dz[act]) {
            if (changes == T2_KERNEL_ROWS) { /* room for that many: a prompt's rows in slices */
                for (int i0 = 0; i0 < n; i0 += T2_KERNEL_ROWS) {
                    int cnt = n - i0 < T2_KERNEL_ROWS ? n - i0 : T2_KERNEL_ROWS;
                    rotated_matmul(c, f, s + i0, y + (size_t)i0 * (size_t)f->m,
                                   x + (size_t)i0 * (size_t)f->n, bias, cnt);
                }
                return;
            }
            float *d = c->rot_dz + (size_t)changes++ * c->max_r;
            singular_change(s[t], f->sigma, f->r, d);
            dz[act] = d;
        }
        idx[act++] = t;
    }
    if (act == 0) {
        matmul(c, y, x, NULL, f->base, bias, n);
        return;
    }
    if (rotates_q8(c, f)) {
        rotated_matmul_q8(c, f, dz, idx, act, y, x, bias, n, t0);
        return;
    }
    float *tmp = c->fact_tmp, *tmp2 = c->fact_tmp + c->fact_half;
    float *rows[T2_KERNEL_ROWS];
    size_t m = (size_t)f->m, in = (size_t)f->n, r = (size_t)f->r;
    /* the rotation's inputs rounded to bf16, as for U diag(s) Vt */
    uint16_t *xb = c->xb, *tb = c->xb + c->fact_half;
    if (f->r == f->n) { /* x' = x + V (dz . (Vt x)), then W x' */
        for (int j = 0; j < act; j++) {
            t2_bf16_round(x + (size_t)idx[j] * in, in, xb + (size_t)j * in);
            rows[j] = tmp2 + (size_t)idx[j] * in;
        }
        rot_job rj = {c, f->vt_bf16, f->r, f->n, act, xb, tmp, tb, dz};
        t2_pool_run(c->pool, rot_worker, &rj);
        memcpy(tmp2, x, (size_t)n * in * sizeof *tmp2);
        rot_sum(c, act, f->n, rows, NULL);
        t2_prof_add(c, T2_STAGE_ROTATION, t0);
        matmul(c, y, tmp2, NULL, f->base, bias, n);
        return;
    }
    /* y0 = W x, then y0 + U (dz . (Ut y0)) */
    t2_wmat u = {T2_W_BF16, f->u_bf16, f->m, f->r, r * sizeof(uint16_t)};
    double t_w = t2_prof_now(c);
    matmul(c, y, x, NULL, f->base, NULL, n);
    t0 += t2_prof_now(c) - t_w; /* W's product is not the rotation's */
    for (int j = 0; j < act; j++) {
        t2_bf16_round(y + (size_t)idx[j] * m, m, xb + (size_t)j * m);
        rows[j] = tmp + (size_t)j * r;
    }
    rot_job rj = {c, f->u_bf16, f->m, f->r, act, xb, NULL, NULL, NULL};
    t2_pool_run(c->pool, rot_worker, &rj);
    memset(tmp, 0, (size_t)act * r * sizeof *tmp);
    rot_sum(c, act, f->r, rows, dz);
    t2_bf16_round(tmp, (size_t)act * r, tb);
    /* each worker its rows of U again (the shares of rot_worker) */
    matmul_job uj = {c, tmp2, tmp, NULL, &u, act, tb};
    t2_pool_run(c->pool, matmul_share_worker, &uj);
    add_change(y, tmp2, idx, act, bias, n, m);
    t2_prof_add(c, T2_STAGE_ROTATION, t0);
}

/* Bytes of U and Vt as a product with n rows of X reads them (factor_mat),
 * or of W and the square factor in the rotated form. */
static size_t factor_bytes(const t2_ctx *c, const t2_factor *f, int n)
{
    if (rotates(c, f, n))
        return (size_t)f->base->rows * f->base->stride +
               (rotates_q8(c, f) ? (size_t)f->rot_q8->rows * f->rot_q8->stride * 2
                                 : 2 * (size_t)f->r * (size_t)f->r);
    if (factored_q8(c, f, n))
        return (size_t)f->u_q8->rows * f->u_q8->stride + (size_t)f->vt_q8->rows * f->vt_q8->stride;
    size_t each = reads_bf16_factor(c, f->u_bf16, n) ? 2 : sizeof(float);
    return ((size_t)f->m + (size_t)f->n) * (size_t)f->r * each;
}

/* Bytes one product (n rows of X) reads for the weights behind a group key. */
static size_t key_bytes(const t2_ctx *c, const t2_layer *L, int kind, int n)
{
    const t2_factor *f = factor_of(L, kind);
    if (f)
        return factor_bytes(c, f, n);
    t2_wmat w = t2_layer_wmat(L, &c->m->cfg, kind);
    return (size_t)w.rows * w.stride;
}

/* Rows with different weights: true when all of them have a view on the
 * same U and Vt and reading those once costs fewer bytes than reading
 * every distinct matrix once (e.g. 2+ f32 sets of 768x256 matrices:
 * U + Vt are 1.33x one matrix). Decode is bound by those bytes. */
static bool share_factors(const t2_ctx *c, const t2_row *rows, int layer, int kind, int n)
{
    const t2_factor *f0 = view_of(&rows[0].layers[layer], kind);
    if (!f0)
        return false;
    size_t dense = 0;
    for (int t = 0; t < n; t++) {
        const t2_layer *L = &rows[t].layers[layer];
        const t2_factor *f = view_of(L, kind);
        if (!f || f->u != f0->u)
            return false;
        const void *key = group_key(c, L, kind);
        bool seen = false;
        for (int p = 0; p < t && !seen; p++)
            seen = group_key(c, &rows[p].layers[layer], kind) == key;
        if (!seen)
            dense += key_bytes(c, L, kind, n);
    }
    return dense > factor_bytes(c, f0, n);
}

/* y[t] for the rows `idx` (all with the same key, or with views on the
 * same factors when via_views), x and y dense [n][..] */
static void group_matmul(t2_ctx *c, const t2_layer *const *L, int layer, int kind, float *y,
                         const float *x, int n, bool via_views)
{
    const t2_layer *first = &L[0][layer];
    const t2_factor *f = via_views ? view_of(first, kind) : factor_of(first, kind);
    if (!f) {
        t2_wmat w = t2_layer_wmat(first, &c->m->cfg, kind);
        matmul(c, y, x, NULL, &w, bias_of(first, kind), n);
        return;
    }
    const float *s[T2_MAX_ROWS];
    for (int t = 0; t < n; t++)
        s[t] = view_of(&L[t][layer], kind)->s;
    if (rotates(c, f, n)) {
        rotated_matmul(c, f, s, y, x, bias_of(first, kind), n);
        return;
    }
    /* bf16 factors for a bf16 or q8_0 model, float32 for f32, Q8_0 for a
     * q8_0 model's prompt where built (factored_q8) */
    t2_wmat vt, u;
    factor_mats(c, f, n, &vt, &u);
    /* a q8_0 model: X and T rounded to bf16 (c->xb), or X quantised */
    bool x16 = c->xb && vt.type == T2_W_BF16;
    uint16_t *xb = x16 ? c->xb : NULL, *tb = x16 ? c->xb + c->fact_half : NULL;
    if (x16 || vt.type == T2_W_Q8_0)
        convert_x(c, x, n, f->n, xb);
    scaled_job sj = {
        .part = {{c, c->fact_tmp, x, NULL, &vt, n, xb}}, .s = {s}, .tb = {tb}, .n_parts = 1};
    scaled_run(c, &sj);
    if (u.type == T2_W_Q8_0) {
        head_job hj = {c, x, n, 1, {f}, {s}, {c->fact_tmp}};
        t2_pool_run(c->pool, head_worker, &hj);
        factored_u_q8(c, f, y, c->fact_tmp, bias_of(first, kind), n);
    } else
        matmul(c, y, c->fact_tmp, tb, &u, bias_of(first, kind), n);
}

/* Y = X · Wᵀ where row t uses rows[t].layers: rows are grouped by the
 * weights they share so each distinct matrix is read once. */
static void layer_matmul(t2_ctx *c, const t2_row *rows, int layer, int kind, float *y,
                         const float *x, int n, int out_dim, int in_dim)
{
    const t2_layer *L[T2_MAX_ROWS];
    bool same = true;
    const void *key0 = group_key(c, &rows[0].layers[layer], kind);
    for (int t = 0; t < n; t++) {
        L[t] = rows[t].layers;
        same = same && group_key(c, &rows[t].layers[layer], kind) == key0;
    }
    if (same || share_factors(c, rows, layer, kind, n)) {
        group_matmul(c, L, layer, kind, y, x, n, !same);
        return;
    }
    /* rows on different weights come only from a decode batch (at most
     * T2_CHUNK, as gather_x holds): a prompt's rows share theirs */
    bool done[T2_CHUNK] = {false};
    for (int t0 = 0; t0 < n; t0++) {
        if (done[t0])
            continue;
        const void *key = group_key(c, &rows[t0].layers[layer], kind);
        const t2_layer *GL[T2_CHUNK];
        int idx[T2_CHUNK], g = 0;
        for (int t = t0; t < n; t++) {
            if (!done[t] && group_key(c, &rows[t].layers[layer], kind) == key) {
                done[t] = true;
                idx[g] = t;
                GL[g] = rows[t].layers;
                memcpy(c->gather_x + (size_t)g * (size_t)in_dim, x + (size_t)t * (size_t)in_dim,
                       (size_t)in_dim * sizeof(float));
                g++;
            }
        }
        group_matmul(c, GL, layer, kind, c->gather_y, c->gather_x, g, false);
        for (int i = 0; i < g; i++)
            memcpy(y + (size_t)idx[i] * (size_t)out_dim, c->gather_y + (size_t)i * (size_t)out_dim,
                   (size_t)out_dim * sizeof(float));
    }
}

/* The products `kinds` of one layer on the same X into ys, fused into one
 * dispatch when every row uses the same dense matrices (a single stream,
 * or a batch on one weight set); false (nothing done) otherwise. */
static bool fused_matmul(t2_ctx *c, const t2_row *rows, int layer, const int *kinds,
                         float *const *ys, int n_parts, const float *x, int n, bool swiglu)
{
    const t2_layer *L = &rows[0].layers[layer];
    t2_wmat w[3];
    fused_job f = {.n_parts = n_parts, .swiglu = swiglu};
    bool q8 = false;
    for (int p = 0; p < n_parts; p++) {
        if (factor_of(L, kinds[p]))
            return false;
        const void *key = group_key(c, L, kinds[p]);
        for (int t = 1; t < n; t++)
            if (group_key(c, &rows[t].layers[layer], kinds[p]) != key)
                return false;
        w[p] = t2_layer_wmat(L, &c->m->cfg, kinds[p]);
        q8 = q8 || w[p].type == T2_W_Q8_0;
        f.part[p] = (matmul_job){c, ys[p], x, bias_of(L, kinds[p]), &w[p], n, NULL};
        f.total += w[p].rows;
    }
    if (swiglu && (n_parts != 2 || w[0].rows != w[1].rows))
        return false;
    if (q8 && n <= c->xq_rows)
        convert_x(c, x, n, w[0].cols, NULL);
    fused_chunks(&f);
    t2_pool_run(c->pool, fused_worker, &f);
    return true;
}

/* gate and up in their factored form in two dispatches instead of four:
 * both Vt products with their scaling, then both U products with
 * silu(gate) * up. For rows on one factored weight set (a single stream,
 * or a batch on one set), or a mixed batch whose rows share U and Vt of
 * both (share_factors; each row scales by its own s). False (nothing
 * done) otherwise. */
static bool fused_factored_swiglu(t2_ctx *c, const t2_row *rows, int layer, int n)
{
    const t2_layer *L = &rows[0].layers[layer];
    bool same = true;
    for (int t = 1; t < n; t++)
        same = same && rows[t].layers == rows[0].layers;
    const t2_factor *g, *u;
    if (same)
        g = factor_of(L, T2_WGATE), u = factor_of(L, T2_WUP);
    else if (share_factors(c, rows, layer, T2_WGATE, n) && share_factors(c, rows, layer, T2_WUP, n))
        g = view_of(L, T2_WGATE), u = view_of(L, T2_WUP);
    else
        return false;
    if (!g || !u || g->m != u->m || g->r != u->r || rotates(c, g, n) || rotates(c, u, n))
        return false;
    float *tg = c->fact_tmp, *tu = c->fact_tmp + c->fact_half;
    t2_wmat gvt, gu, uvt, uu;
    factor_mats(c, g, n, &gvt, &gu);
    factor_mats(c, u, n, &uvt, &uu);
    if (gvt.type != uvt.type || gu.type != uu.type)
        return false;
    bool q8 = gvt.type == T2_W_Q8_0;
    const float *sg[T2_MAX_ROWS], *su[T2_MAX_ROWS];
    for (int t = 0; t < n; t++) { /* view_of: the factors themselves for factored rows */
        sg[t] = view_of(&rows[t].layers[layer], T2_WGATE)->s;
        su[t] = view_of(&rows[t].layers[layer], T2_WUP)->s;
    }
    /* a q8_0 model: X and both T rounded to bf16 (c->xb) */
    bool x16 = c->xb && gvt.type == T2_W_BF16 && uvt.type == T2_W_BF16;
    uint16_t *xb = NULL, *tgb = NULL, *tub = NULL;
    if (x16) {
        xb = c->xb, tgb = c->xb + c->fact_half, tub = c->xb + 2 * c->fact_half;
        convert_x(c, c->xn, n, g->n, xb);
    } else if (q8)
        convert_x(c, c->xn, n, g->n, NULL);
    scaled_job sj = {.part = {{c, tg, c->xn, NULL, &gvt, n, xb}, {c, tu, c->xn, NULL, &uvt, n, xb}},
                     .s = {sg, su},
                     .tb = {tgb, tub},
                     .n_parts = 2};
    scaled_run(c, &sj);
    if (q8) { /* one quantised X at a time (c->xq): the U products apart */
        head_job hj = {c, c->xn, n, 2, {g, u}, {sg, su}, {tg, tu}};
        t2_pool_run(c->pool, head_worker, &hj);
        factored_u_q8(c, g, c->gate, tg, NULL, n);
        factored_u_q8(c, u, c->up, tu, NULL, n);
        c->kern->silu_mul(c->gate, c->up, (size_t)n * (size_t)g->m);
        return true;
    }
    fused_job f = {.n_parts = 2, .total = 2 * g->m, .swiglu = true};
    f.part[0] = (matmul_job){c, c->gate, tg, NULL, &gu, n, tgb};
    f.part[1] = (matmul_job){c, c->up, tu, NULL, &uu, n, tub};
    fused_chunks(&f);
    t2_pool_run(c->pool, fused_worker, &f);
    return true;
}

/* ---- elementwise pieces ---- */

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
    float ss = 0.0f;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++)
        out[i] = w[i] * (x[i] * scale);
}

static void rope_tables(t2_ctx *c, const t2_row *rows, int n)
{
    int half = c->m->cfg.head_dim / 2;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < half; i++) {
            float angle = (float)rows[t].pos * c->inv_freq[i];
            c->rope_cos[t * half + i] = cosf(angle);
            c->rope_sin[t * half + i] = sinf(angle);
        }
}

/* rotate-half: pairs (i, i + d/2) of every head, as Hugging Face does */
static void rope_apply(const t2_ctx *c, float *v, int n, int n_heads)
{
    int d = c->m->cfg.head_dim, half = d / 2;
    for (int t = 0; t < n; t++) {
        const float *cs = c->rope_cos + t * half, *sn = c->rope_sin + t * half;
        for (int h = 0; h < n_heads; h++) {
            float *x = v + ((size_t)t * (size_t)n_heads + (size_t)h) * (size_t)d;
            for (int i = 0; i < half; i++) {
                float a = x[i], b = x[i + half];
                x[i] = a * cs[i] - b * sn[i];
                x[i + half] = b * cs[i] + a * sn[i];
            }
        }
    }
}

/* ---- one pass through every layer ---- */

static void attention_block(t2_ctx *c, const t2_row *rows, int layer, int n)
{
    const t2_config *cfg = &c->m->cfg;
    int H = cfg->hidden, Q = cfg->n_heads * cfg->head_dim, KV = cfg->n_kv_heads * cfg->head_dim;
    const float *norm = rows[0].layers[layer].attn_norm;
    for (int t = 0; t < n; t++)
        rmsnorm(c->xn + (size_t)t * H, c->x + (size_t)t * H, norm, H, cfg->rms_eps);
    static const int qkv[3] = {0, 1, 2};
    float *const ys[3] = {c->q, c->k, c->v};
    double t0 = t2_prof_now(c);
    if (!fused_matmul(c, rows, layer, qkv, ys, 3, c->xn, n, false)) {
        layer_matmul(c, rows, layer, 0, c->q, c->xn, n, Q, H);
        layer_matmul(c, rows, layer, 1, c->k, c->xn, n, KV, H);
        layer_matmul(c, rows, layer, 2, c->v, c->xn, n, KV, H);
    }
    t2_prof_add(c, T2_STAGE_QKV, t0);
    t0 = t2_prof_now(c);
    rope_apply(c, c->q, n, cfg->n_heads);
    rope_apply(c, c->k, n, cfg->n_kv_heads);
    t2_attend(c, rows, layer, n);
    t2_prof_add(c, T2_STAGE_ATTENTION, t0);
    t0 = t2_prof_now(c);
    layer_matmul(c, rows, layer, 3, c->xn, c->att, n, H, Q);
    t2_prof_add(c, T2_STAGE_O, t0);
    for (size_t i = 0; i < (size_t)n * (size_t)H; i++)
        c->x[i] += c->xn[i];
}

static void mlp_block(t2_ctx *c, const t2_row *rows, int layer, int n)
{
    const t2_config *cfg = &c->m->cfg;
    int H = cfg->hidden, FF = cfg->intermediate;
    const float *norm = rows[0].layers[layer].ffn_norm;
    for (int t = 0; t < n; t++)
        rmsnorm(c->xn + (size_t)t * H, c->x + (size_t)t * H, norm, H, cfg->rms_eps);
    static const int gate_up[2] = {4, 5};
    float *const ys[2] = {c->gate, c->up};
    double t0 = t2_prof_now(c);
    if (!fused_matmul(c, rows, layer, gate_up, ys, 2, c->xn, n, true) &&
        !fused_factored_swiglu(c, rows, layer, n)) {
        layer_matmul(c, rows, layer, 4, c->gate, c->xn, n, FF, H);
        layer_matmul(c, rows, layer, 5, c->up, c->xn, n, FF, H);
        c->kern->silu_mul(c->gate, c->up, (size_t)n * (size_t)FF);
    }
    t2_prof_add(c, T2_STAGE_GATE_UP, t0);
    t0 = t2_prof_now(c);
    layer_matmul(c, rows, layer, 6, c->xn, c->gate, n, H, FF);
    t2_prof_add(c, T2_STAGE_DOWN, t0);
    for (size_t i = 0; i < (size_t)n * (size_t)H; i++)
        c->x[i] += c->xn[i];
}

/* logits for rows [from, n) into out[(t - from)][vocab] */
static void output_head(t2_ctx *c, int from, int n, float *out)
{
    const t2_config *cfg = &c->m->cfg;
    int H = cfg->hidden;
    double t0 = t2_prof_now(c);
    for (int t = from; t < n; t++)
        rmsnorm(c->xn + (size_t)(t - from) * H, c->x + (size_t)t * H, c->m->final_norm, H,
                cfg->rms_eps);
    matmul(c, out, c->xn, NULL, &c->m->head, NULL, n - from);
    t2_prof_add(c, T2_STAGE_HEAD, t0);
}

void t2_run_rows(t2_ctx *ws, const t2_row *rows, const int32_t *tokens, int n, float *logits_out,
                 int logits_from)
{
    const t2_config *cfg = &ws->m->cfg;
    int H = cfg->hidden;
    double t0 = t2_prof_now(ws);
    unsigned long runs0 = t2_pool_runs(ws->pool);
    ws->one_seq = true;
    for (int t = 0; t < n; t++) {
        t2_wmat_row_f32(&ws->m->embed_w, tokens[t], ws->x + (size_t)t * H);
        ws->one_seq = ws->one_seq && rows[t].seq == rows[0].seq;
    }
    rope_tables(ws, rows, n);
    for (int l = 0; l < cfg->n_layers; l++) {
        attention_block(ws, rows, l, n);
        mlp_block(ws, rows, l, n);
    }
    if (logits_out)
        output_head(ws, logits_from, n, logits_out);
    if (ws->prof) {
        ws->prof->total_sec += t2_prof_now(ws) - t0;
        ws->prof->passes++;
        ws->prof->pool_runs += t2_pool_runs(ws->pool) - runs0;
    }
}
