#include "forward.h"

#include "dtype.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tokens per prefill chunk: bounds scratch memory, large enough for sgemm
 * to run at full speed. */
#define CHUNK 128

struct t2_ctx {
    const t2_model *m;
    const t2_layer *layers;
    t2_pool *pool;
    int n_ctx;
    int n_past;
    float *k_cache; /* [n_layers][n_ctx][kv_dim] */
    float *v_cache;
    /* scratch for one chunk */
    float *x, *xn, *q, *k, *v, *att, *gate, *up;
    float *rope_cos, *rope_sin; /* [CHUNK][head_dim/2] */
    float *inv_freq;            /* [head_dim/2] */
    float *scores;              /* [n_threads][n_ctx] */
    float *logits;              /* [CHUNK][vocab] */
    float *fact_tmp;            /* [CHUNK][max r] for factored products */
    float *logits_all;          /* grows for all_logits requests */
    size_t logits_all_cap;
};

static float *alloc_floats(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p)
        memset(p, 0, bytes);
    return p;
}

/* HF's inverse frequencies, with the llama3 long-context rescaling. */
static void compute_inv_freq(const t2_config *c, float *inv_freq)
{
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow((double)c->rope_theta, (double)(2 * i) / (double)c->head_dim);
        if (c->rope_factor > 0) {
            double low_wavelen = c->rope_orig_max_pos / c->rope_low_freq_factor;
            double high_wavelen = c->rope_orig_max_pos / c->rope_high_freq_factor;
            double wavelen = 2.0 * M_PI / f;
            if (wavelen > low_wavelen) {
                f /= c->rope_factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = (c->rope_orig_max_pos / wavelen - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f = (1.0 - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        inv_freq[i] = (float)f;
        if (c->rope_freq_dtype == T2_ROPE_FREQ_BF16)
            inv_freq[i] = t2_bf16_to_f32(t2_f32_to_bf16(inv_freq[i]));
        else if (c->rope_freq_dtype == T2_ROPE_FREQ_F16)
            inv_freq[i] = t2_f16_to_f32(t2_f32_to_f16(inv_freq[i]));
    }
}

int t2_ctx_create(t2_ctx **out, const t2_model *m, t2_pool *pool, int n_ctx, t2_err *err)
{
    *out = NULL;
    const t2_config *cfg = &m->cfg;
    if (n_ctx <= 0 || n_ctx > cfg->max_pos)
        n_ctx = cfg->max_pos;
    t2_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return t2_err_set(err, "out of memory");
    c->m = m;
    c->layers = m->layers;
    c->pool = pool;
    c->n_ctx = n_ctx;
    size_t H = (size_t)cfg->hidden, FF = (size_t)cfg->intermediate, V = (size_t)cfg->vocab;
    size_t Q = (size_t)cfg->n_heads * (size_t)cfg->head_dim;
    size_t KV = (size_t)cfg->n_kv_heads * (size_t)cfg->head_dim;
    size_t half = (size_t)cfg->head_dim / 2;
    c->k_cache = alloc_floats((size_t)cfg->n_layers * (size_t)n_ctx * KV);
    c->v_cache = alloc_floats((size_t)cfg->n_layers * (size_t)n_ctx * KV);
    c->x = alloc_floats(CHUNK * H);
    c->xn = alloc_floats(CHUNK * H);
    c->q = alloc_floats(CHUNK * Q);
    c->k = alloc_floats(CHUNK * KV);
    c->v = alloc_floats(CHUNK * KV);
    c->att = alloc_floats(CHUNK * Q);
    c->gate = alloc_floats(CHUNK * FF);
    c->up = alloc_floats(CHUNK * FF);
    c->rope_cos = alloc_floats(CHUNK * half);
    c->rope_sin = alloc_floats(CHUNK * half);
    c->inv_freq = alloc_floats(half);
    c->scores = alloc_floats((size_t)t2_pool_size(pool) * (size_t)n_ctx);
    c->logits = alloc_floats(CHUNK * V);
    size_t max_r = H > FF ? H : FF; /* r = min(m, n) <= max dimension */
    if (Q > max_r)
        max_r = Q;
    c->fact_tmp = alloc_floats(CHUNK * max_r);
    if (!c->k_cache || !c->v_cache || !c->x || !c->xn || !c->q || !c->k || !c->v || !c->att ||
        !c->gate || !c->up || !c->rope_cos || !c->rope_sin || !c->inv_freq || !c->scores ||
        !c->logits || !c->fact_tmp) {
        t2_ctx_free(c);
        return t2_err_set(err, "out of memory for a context of %d tokens", n_ctx);
    }
    compute_inv_freq(cfg, c->inv_freq);
    /* Our pool owns the parallelism: OpenBLAS runs single-threaded inside
     * each worker's share, so the cores are never oversubscribed. */
    openblas_set_num_threads(1);
    *out = c;
    return 0;
}

void t2_ctx_free(t2_ctx *c)
{
    if (!c)
        return;
    free(c->k_cache);
    free(c->v_cache);
    free(c->x);
    free(c->xn);
    free(c->q);
    free(c->k);
    free(c->v);
    free(c->att);
    free(c->gate);
    free(c->up);
    free(c->rope_cos);
    free(c->rope_sin);
    free(c->inv_freq);
    free(c->scores);
    free(c->logits);
    free(c->fact_tmp);
    free(c->logits_all);
    free(c);
}

int t2_ctx_n_ctx(const t2_ctx *c) { return c->n_ctx; }
int t2_ctx_n_past(const t2_ctx *c) { return c->n_past; }

void t2_ctx_truncate(t2_ctx *c, int n_past)
{
    if (n_past >= 0 && n_past < c->n_past)
        c->n_past = n_past;
}

void t2_ctx_set_layers(t2_ctx *c, const t2_layer *layers)
{
    c->layers = layers ? layers : c->m->layers;
}

/* ---- matrix products: Y[n][rows] = X[n][cols] · W[rows][cols]ᵀ (+ b) ---- */

typedef struct matmul_job {
    float *y;
    const float *x, *w, *bias;
    int n, rows, cols;
} matmul_job;

static void matmul_worker(void *arg, int w, int nw)
{
    const matmul_job *j = arg;
    int r0, r1;
    t2_pool_share(j->rows, w, nw, 16, &r0, &r1);
    if (r0 >= r1)
        return;
    const float *wr = j->w + (size_t)r0 * (size_t)j->cols;
    if (j->n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, r1 - r0, j->cols, 1.0f, wr, j->cols, j->x, 1, 0.0f,
                    j->y + r0, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, r1 - r0, j->cols, 1.0f, j->x,
                    j->cols, wr, j->cols, 0.0f, j->y + r0, j->rows);
    if (j->bias)
        for (int i = 0; i < j->n; i++)
            for (int r = r0; r < r1; r++)
                j->y[(size_t)i * (size_t)j->rows + (size_t)r] += j->bias[r];
}

static void matmul(t2_ctx *c, float *y, const float *x, const float *w, const float *bias, int n,
                   int rows, int cols)
{
    matmul_job j = {y, x, w, bias, n, rows, cols};
    t2_pool_run(c->pool, matmul_worker, &j);
}

/* y = U (s . (Vt x)) (+ bias): two thin products instead of the dense one */
static void matmul_factored(t2_ctx *c, float *y, const float *x, const t2_factor *f,
                            const float *bias, int n)
{
    matmul(c, c->fact_tmp, x, f->vt, NULL, n, f->r, f->n);
    for (int t = 0; t < n; t++) {
        float *row = c->fact_tmp + (size_t)t * (size_t)f->r;
        for (int i = 0; i < f->r; i++)
            row[i] *= f->s[i];
    }
    matmul(c, y, c->fact_tmp, f->u, bias, n, f->m, f->r);
}

/* A layer matrix: factored when the layer carries factors for it. */
static void layer_matmul(t2_ctx *c, const t2_layer *L, int kind, float *y, const float *x,
                         const float *w, const float *bias, int n, int rows, int cols)
{
    if (L->factors && L->factors[kind].s)
        matmul_factored(c, y, x, &L->factors[kind], bias, n);
    else
        matmul(c, y, x, w, bias, n, rows, cols);
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

static void rope_tables(t2_ctx *c, int pos0, int n)
{
    int half = c->m->cfg.head_dim / 2;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < half; i++) {
            float angle = (float)(pos0 + t) * c->inv_freq[i];
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

/* ---- attention over the cache ---- */

typedef struct attn_job {
    t2_ctx *c;
    int layer, pos0, n;
} attn_job;

static void attn_worker(void *arg, int w, int nw)
{
    const attn_job *j = arg;
    t2_ctx *c = j->c;
    const t2_config *cfg = &c->m->cfg;
    int d = cfg->head_dim, nh = cfg->n_heads, group = nh / cfg->n_kv_heads;
    size_t kv_dim = (size_t)cfg->n_kv_heads * (size_t)d, q_dim = (size_t)nh * (size_t)d;
    const float *kc = c->k_cache + (size_t)j->layer * (size_t)c->n_ctx * kv_dim;
    const float *vc = c->v_cache + (size_t)j->layer * (size_t)c->n_ctx * kv_dim;
    float *scores = c->scores + (size_t)w * (size_t)c->n_ctx;
    float scale = 1.0f / sqrtf((float)d);
    int total = j->n * nh, b, e;
    t2_pool_share(total, w, nw, 1, &b, &e);
    for (int task = b; task < e; task++) {
        int t = task / nh, h = task % nh, kvh = h / group;
        int last = j->pos0 + t; /* causal: keys 0..last */
        const float *q = c->q + (size_t)t * q_dim + (size_t)h * (size_t)d;
        float mx = -INFINITY;
        for (int p = 0; p <= last; p++) {
            const float *k = kc + (size_t)p * kv_dim + (size_t)kvh * (size_t)d;
            float s = 0.0f;
            for (int i = 0; i < d; i++)
                s += q[i] * k[i];
            s *= scale;
            scores[p] = s;
            mx = s > mx ? s : mx;
        }
        float sum = 0.0f;
        for (int p = 0; p <= last; p++) {
            scores[p] = expf(scores[p] - mx);
            sum += scores[p];
        }
        float inv = 1.0f / sum;
        float *out = c->att + (size_t)t * q_dim + (size_t)h * (size_t)d;
        memset(out, 0, (size_t)d * sizeof *out);
        for (int p = 0; p <= last; p++) {
            const float *v = vc + (size_t)p * kv_dim + (size_t)kvh * (size_t)d;
            float a = scores[p] * inv;
            for (int i = 0; i < d; i++)
                out[i] += a * v[i];
        }
    }
}

/* ---- one chunk through every layer ---- */

static void attention_block(t2_ctx *c, const t2_layer *L, int layer, int pos0, int n)
{
    const t2_config *cfg = &c->m->cfg;
    int H = cfg->hidden, Q = cfg->n_heads * cfg->head_dim, KV = cfg->n_kv_heads * cfg->head_dim;
    for (int t = 0; t < n; t++)
        rmsnorm(c->xn + (size_t)t * H, c->x + (size_t)t * H, L->attn_norm, H, cfg->rms_eps);
    layer_matmul(c, L, 0, c->q, c->xn, L->wq, L->bq, n, Q, H);
    layer_matmul(c, L, 1, c->k, c->xn, L->wk, L->bk, n, KV, H);
    layer_matmul(c, L, 2, c->v, c->xn, L->wv, L->bv, n, KV, H);
    rope_apply(c, c->q, n, cfg->n_heads);
    rope_apply(c, c->k, n, cfg->n_kv_heads);
    size_t off = ((size_t)layer * (size_t)c->n_ctx + (size_t)pos0) * (size_t)KV;
    memcpy(c->k_cache + off, c->k, (size_t)n * (size_t)KV * sizeof(float));
    memcpy(c->v_cache + off, c->v, (size_t)n * (size_t)KV * sizeof(float));
    attn_job j = {c, layer, pos0, n};
    t2_pool_run(c->pool, attn_worker, &j);
    layer_matmul(c, L, 3, c->xn, c->att, L->wo, L->bo, n, H, Q);
    for (size_t i = 0; i < (size_t)n * (size_t)H; i++)
        c->x[i] += c->xn[i];
}

static void mlp_block(t2_ctx *c, const t2_layer *L, int n)
{
    const t2_config *cfg = &c->m->cfg;
    int H = cfg->hidden, FF = cfg->intermediate;
    for (int t = 0; t < n; t++)
        rmsnorm(c->xn + (size_t)t * H, c->x + (size_t)t * H, L->ffn_norm, H, cfg->rms_eps);
    layer_matmul(c, L, 4, c->gate, c->xn, L->w_gate, NULL, n, FF, H);
    layer_matmul(c, L, 5, c->up, c->xn, L->w_up, NULL, n, FF, H);
    for (size_t i = 0; i < (size_t)n * (size_t)FF; i++) {
        float g = c->gate[i];
        c->gate[i] = g / (1.0f + expf(-g)) * c->up[i];
    }
    layer_matmul(c, L, 6, c->xn, c->gate, L->w_down, NULL, n, H, FF);
    for (size_t i = 0; i < (size_t)n * (size_t)H; i++)
        c->x[i] += c->xn[i];
}

/* logits for positions [from, n) of the chunk into out[(t - from)][vocab] */
static void output_head(t2_ctx *c, int from, int n, float *out)
{
    const t2_config *cfg = &c->m->cfg;
    int H = cfg->hidden;
    for (int t = from; t < n; t++)
        rmsnorm(c->xn + (size_t)(t - from) * H, c->x + (size_t)t * H, c->m->final_norm, H,
                cfg->rms_eps);
    matmul(c, out, c->xn, c->m->lm_head, NULL, n - from, cfg->vocab, H);
}

static void run_chunk(t2_ctx *c, const int32_t *tokens, int n, float *logits_out, bool all)
{
    const t2_config *cfg = &c->m->cfg;
    int H = cfg->hidden, pos0 = c->n_past;
    for (int t = 0; t < n; t++)
        memcpy(c->x + (size_t)t * H, c->m->embed + (size_t)tokens[t] * H, (size_t)H * sizeof(float));
    rope_tables(c, pos0, n);
    for (int l = 0; l < cfg->n_layers; l++) {
        attention_block(c, &c->layers[l], l, pos0, n);
        mlp_block(c, &c->layers[l], n);
    }
    c->n_past += n;
    if (logits_out)
        output_head(c, all ? 0 : n - 1, n, logits_out);
}

static int ensure_logits_all(t2_ctx *c, size_t n_floats, t2_err *err)
{
    if (n_floats <= c->logits_all_cap)
        return 0;
    float *p = alloc_floats(n_floats);
    if (!p)
        return t2_err_set(err, "out of memory for %zu logits", n_floats);
    free(c->logits_all);
    c->logits_all = p;
    c->logits_all_cap = n_floats;
    return 0;
}

int t2_forward(t2_ctx *c, const int32_t *tokens, int n, bool all_logits, const float **logits,
               t2_err *err)
{
    const t2_config *cfg = &c->m->cfg;
    if (n <= 0)
        return t2_err_set(err, "no tokens to evaluate");
    if (n > c->n_ctx - c->n_past)
        return t2_err_set(err, "context full: %d cached + %d new tokens > %d", c->n_past, n, c->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= cfg->vocab)
            return t2_err_set(err, "token id %d out of range (vocab %d)", tokens[i], cfg->vocab);
    size_t V = (size_t)cfg->vocab;
    if (all_logits && ensure_logits_all(c, (size_t)n * V, err) != 0)
        return -1;
    for (int done = 0; done < n; done += CHUNK) {
        int m = n - done < CHUNK ? n - done : CHUNK;
        bool last_chunk = done + m == n;
        float *out = all_logits ? c->logits_all + (size_t)done * V : (last_chunk ? c->logits : NULL);
        run_chunk(c, tokens + done, m, out, all_logits);
    }
    *logits = all_logits ? c->logits_all : c->logits;
    return 0;
}
