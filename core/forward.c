#include "forward.h"
#include "forward_internal.h"

#include "clock.h"
#include "dtype.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* A context's buffers, carved from one anonymous mapping (zeroed pages
 * the kernel commits as they are first touched): the K/V cache is sized
 * for n_ctx tokens and the scratch for a pass of c->chunk rows, but a
 * short conversation touches a sliver of either, so resident memory
 * follows use. Every part starts on a cache line. */
typedef struct arena_part {
    float **at;
    size_t floats;
} arena_part;

static int map_arena(t2_ctx *c, const arena_part *parts, int n)
{
    size_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += (parts[i].floats * sizeof(float) + 63) / 64 * 64;
    void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return -1;
    c->arena = base;
    c->arena_bytes = bytes;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        *parts[i].at = parts[i].floats ? (float *)(void *)((char *)base + off) : NULL;
        off += (parts[i].floats * sizeof(float) + 63) / 64 * 64;
    }
    return 0;
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
    size_t half = (size_t)cfg->head_dim / 2, threads = (size_t)t2_pool_size(pool);
    size_t max_r = H > FF ? H : FF; /* r = min(m, n) <= max dimension */
    if (Q > max_r)
        max_r = Q;
    /* a prompt whose products are sgemm calls (float32 weights, or bf16
     * ones widened block by block where the variant has no bf16_prompt
     * kernel) in passes of T2_MAX_ROWS rows: sgemm packs W once per pass
     * (smollm2-360m: 30 instead of 9 MB of scratch touched by a 512-token
     * prompt, against 1.4 GB of f32 or 0.7 GB of bf16 weights) */
    c->kern = t2_kernels_get();
    bool sgemm_prompt = m->wtype == T2_W_F32 || (m->wtype == T2_W_BF16 && !c->kern->bf16_prompt);
    c->chunk = sgemm_prompt ? T2_MAX_ROWS : T2_CHUNK;
    size_t rows = (size_t)c->chunk;
    c->max_r = max_r;
    c->fact_half = rows * max_r;
    size_t max_dim = max_r > KV ? max_r : KV;
    /* at least 128 rows per block of dequantised weights (matmul_dequant):
     * each sgemm call packs all of X again, which with 256 KB blocks (25-68
     * rows of smollm2-360m) cost a quarter of sgemm's own time; also
     * T2_KERNEL_ROWS rows of X widened from bf16 (matmul_x16_rows) */
    c->deq_floats = max_r * 128;
    c->kv_f16 = m->kv_f16;
    c->scores_stride = T2_ATTN_LANES * (size_t)n_ctx + ((size_t)cfg->head_dim + 2 + 15) / 16 * 16;
    /* a query-by-query row's keys: a split per 256 of them (at most
     * T2_ATTN_SPLITS), read in chunks of 128 KiB of K rows (and V rows) */
    c->attn_split_keys = 256;
    size_t kv_row = (size_t)cfg->head_dim * (c->kv_f16 ? sizeof(uint16_t) : sizeof(float));
    c->attn_chunk_keys = kv_row >= 131072 / 16 ? 16 : (int)(131072 / kv_row);
    size_t cache = (size_t)cfg->n_layers * (size_t)n_ctx * KV;
    size_t cache_floats = c->kv_f16 ? (cache + 1) / 2 : cache;
    float *xb = NULL, *kc = NULL, *vc = NULL;
    const arena_part parts[] = {
        {&kc, cache_floats},
        {&vc, cache_floats},
        {&c->x, rows * H},
        {&c->xn, rows * H},
        {&c->q, rows * Q},
        {&c->k, rows * KV},
        {&c->v, rows * KV},
        {&c->att, rows * Q},
        {&c->gate, rows * FF},
        {&c->up, rows * FF},
        {&c->rope_cos, rows * half},
        {&c->rope_sin, rows * half},
        {&c->inv_freq, half},
        {&c->scores, threads * c->scores_stride},
        {&c->attn_part, rows * (Q + 2 * (size_t)cfg->n_heads) * T2_ATTN_SPLITS},
        {&c->logits, T2_CHUNK * V},
        {&c->fact_tmp, 2 * c->fact_half}, /* gate and up side by side */
        {&c->gather_x, T2_CHUNK * max_dim},
        {&c->gather_y, T2_CHUNK * max_dim},
        {&xb, m->wtype == T2_W_Q8_0 ? (3 * c->fact_half + 1) / 2 : 0},
        {&c->rot_dz, m->wtype == T2_W_Q8_0 ? T2_KERNEL_ROWS * max_r : 0},
        {&c->rot_part, m->wtype == T2_W_Q8_0 ? threads * T2_KERNEL_ROWS * max_r : 0},
        {&c->deq, m->wtype != T2_W_F32 ? threads * c->deq_floats : 0},
    };
    int mapped = map_arena(c, parts, (int)(sizeof parts / sizeof parts[0]));
    c->xb = (uint16_t *)(void *)xb;
    c->k_cache = kc;
    c->v_cache = vc;
    c->hist = malloc((size_t)n_ctx * sizeof *c->hist);
    /* a q8_0 model's prefill quantises a whole chunk (matmul_q8_blocks) */
    c->xq_rows = m->wtype == T2_W_Q8_0 ? T2_CHUNK : T2_KERNEL_ROWS;
    int xq_failed = t2_q8_act_alloc(&c->xq, c->xq_rows, (int)max_dim);
    if (mapped != 0 || xq_failed || !c->hist) {
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
    if (c->arena)
        munmap(c->arena, c->arena_bytes);
    t2_q8_act_free(&c->xq);
    free(c->logits_all);
    free(c->hist);
    free(c->hist_key);
    free(c);
}

int t2_ctx_n_ctx(const t2_ctx *c)
{
    return c->n_ctx;
}
int t2_ctx_n_past(const t2_ctx *c)
{
    return c->n_past;
}

void t2_ctx_truncate(t2_ctx *c, int n_past)
{
    if (n_past >= 0 && n_past < c->n_past)
        c->n_past = n_past;
}

void t2_ctx_set_layers(t2_ctx *c, const t2_layer *layers)
{
    c->layers = layers ? layers : c->m->layers;
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

static int check_tokens(const t2_config *cfg, const int32_t *tokens, int n, t2_err *err)
{
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= cfg->vocab)
            return t2_err_set(err, "token id %d out of range (vocab %d)", tokens[i], cfg->vocab);
    return 0;
}

/* Keeps the record of which tokens the KV cache holds up to date; KV
 * computed with other weights than the recorded ones ends the record. */
static void record_tokens(t2_ctx *c, const int32_t *tokens, int n)
{
    bool armed = c->armed;
    c->armed = false;
    if (!c->tracking)
        return;
    /* A sequence started over without t2_ctx_reuse_prefix may run weights
     * that merely sit at the recorded layers' address (a freed set's
     * successor): nothing says what it computes, so the record ends. */
    if (c->layers != c->hist_layers || (c->n_past == 0 && !armed)) {
        c->tracking = false;
        return;
    }
    memcpy(c->hist + c->n_past, tokens, (size_t)n * sizeof *tokens);
    c->n_hist = c->n_past + n;
}

/* The record holds tokens evaluated under weights_key. */
static bool record_under(const t2_ctx *c, const char *weights_key)
{
    return c->tracking && c->hist_key && strcmp(c->hist_key, weights_key) == 0;
}

int t2_ctx_reuse_prefix(t2_ctx *c, const char *weights_key, const int32_t *ids, int n)
{
    int keep = 0;
    if (record_under(c, weights_key) && c->layers == c->hist_layers) {
        keep = t2_ctx_cached_prefix(c, weights_key, ids, n);
    } else {
        char *key = strdup(weights_key);
        c->tracking = key != NULL;
        free(c->hist_key);
        c->hist_key = key;
        c->hist_layers = c->layers;
        c->n_hist = 0;
    }
    c->n_past = keep;
    c->armed = true;
    return keep;
}

int t2_ctx_cached_prefix(const t2_ctx *c, const char *weights_key, const int32_t *ids, int n)
{
    if (!record_under(c, weights_key))
        return 0;
    int keep = 0, lim = n - 1 < c->n_hist ? n - 1 : c->n_hist;
    while (keep < lim && c->hist[keep] == ids[keep])
        keep++;
    return keep;
}

int t2_forward(t2_ctx *c, const int32_t *tokens, int n, bool all_logits, const float **logits,
               t2_err *err)
{
    const t2_config *cfg = &c->m->cfg;
    if (n <= 0)
        return t2_err_set(err, "no tokens to evaluate");
    if (n > c->n_ctx - c->n_past)
        return t2_err_set(err, "context full: %d cached + %d new tokens > %d", c->n_past, n,
                          c->n_ctx);
    if (check_tokens(cfg, tokens, n, err) != 0)
        return -1;
    size_t V = (size_t)cfg->vocab;
    if (all_logits && ensure_logits_all(c, (size_t)n * V, err) != 0)
        return -1;
    record_tokens(c, tokens, n);
    t2_row rows[T2_MAX_ROWS];
    for (int done = 0; done < n; done += c->chunk) {
        int m = n - done < c->chunk ? n - done : c->chunk;
        bool last_chunk = done + m == n;
        float *out =
            all_logits ? c->logits_all + (size_t)done * V : (last_chunk ? c->logits : NULL);
        for (int t = 0; t < m; t++)
            rows[t] = (t2_row){.seq = c, .pos = c->n_past + t, .layers = c->layers};
        t2_run_rows(c, rows, tokens + done, m, out, all_logits ? 0 : m - 1);
        c->n_past += m;
    }
    *logits = all_logits ? c->logits_all : c->logits;
    return 0;
}

int t2_forward_branches(t2_ctx *c, const int32_t *tokens, const int *lens, int n_branches,
                        const float **logits, t2_err *err)
{
    int total = 0;
    for (int b = 0; b < n_branches; b++) {
        if (lens[b] < 0)
            return t2_err_set(err, "branch %d has a negative length", b);
        total += lens[b];
    }
    if (total <= 0 || total > T2_CHUNK)
        return t2_err_set(err, "branches of %d tokens in all (1..%d)", total, T2_CHUNK);
    if (total > c->n_ctx - c->n_past)
        return t2_err_set(err, "context full: %d cached + %d branch tokens > %d", c->n_past, total,
                          c->n_ctx);
    if (check_tokens(&c->m->cfg, tokens, total, err) != 0)
        return -1;
    size_t V = (size_t)c->m->cfg.vocab;
    if (ensure_logits_all(c, (size_t)total * V, err) != 0)
        return -1;
    /* branch b's tokens sit in the slots after the earlier branches' and
     * skip them when attending */
    t2_row rows[T2_CHUNK];
    int r = 0;
    for (int b = 0; b < n_branches; b++)
        for (int t = 0; t < lens[b]; t++, r++)
            rows[r] = (t2_row){.seq = c,
                               .pos = c->n_past + t,
                               .layers = c->layers,
                               .kv_shift = r - t,
                               .gap_from = c->n_past,
                               .gap_to = c->n_past + r - t};
    t2_run_rows(c, rows, tokens, total, c->logits_all, 0);
    if (c->n_hist > c->n_past) /* the slots past n_past now hold branch KV */
        c->n_hist = c->n_past;
    *logits = c->logits_all;
    return 0;
}

int t2_forward_batch(t2_ctx *const *seqs, const int32_t *tokens, int n, const float **logits,
                     t2_err *err)
{
    if (n <= 0 || n > T2_CHUNK)
        return t2_err_set(err, "batch of %d sequences (1..%d)", n, T2_CHUNK);
    /* the scratch of the longest context: attention's per-worker scores
     * hold 16 per key of the sequence it runs over */
    t2_ctx *ws = seqs[0];
    for (int i = 1; i < n; i++)
        if (seqs[i]->n_ctx > ws->n_ctx)
            ws = seqs[i];
    if (check_tokens(&ws->m->cfg, tokens, n, err) != 0)
        return -1;
    t2_row rows[T2_CHUNK];
    for (int i = 0; i < n; i++) {
        t2_ctx *c = seqs[i];
        if (c->m != ws->m || c->pool != ws->pool || c->kv_f16 != ws->kv_f16)
            return t2_err_set(err, "batched sequences must share the model, the pool and the "
                                   "K/V cache format");
        if (c->n_past >= c->n_ctx)
            return t2_err_set(err, "sequence %d: context full (%d tokens)", i, c->n_ctx);
        for (int j = 0; j < i; j++)
            if (seqs[j] == c)
                return t2_err_set(err, "sequence %d appears twice in the batch", i);
        rows[i] = (t2_row){.seq = c, .pos = c->n_past, .layers = c->layers};
    }
    t2_run_rows(ws, rows, tokens, n, ws->logits, 0);
    for (int i = 0; i < n; i++) {
        record_tokens(seqs[i], tokens + i, 1);
        seqs[i]->n_past++;
    }
    *logits = ws->logits;
    return 0;
}

const char *t2_stage_name(t2_stage s)
{
    static const char *const names[T2_N_STAGES] = {"qkv",  "attention", "o",       "gate_up",
                                                   "down", "head",      "rotation"};
    return (unsigned)s < T2_N_STAGES ? names[s] : "?";
}

void t2_ctx_set_profile(t2_ctx *c, t2_pass_profile *p)
{
    c->prof = p;
}

double t2_prof_now(const t2_ctx *c)
{
    return c->prof ? t2_now_ms() / 1e3 : 0.0;
}

void t2_prof_add(t2_ctx *c, t2_stage s, double t0)
{
    if (c->prof)
        c->prof->sec[s] += t2_now_ms() / 1e3 - t0;
}

t2_pool *t2_ctx_pool(const t2_ctx *c)
{
    return c->pool;
}

const t2_model *t2_ctx_model(const t2_ctx *c)
{
    return c->m;
}
