/* Synthetic models: the shapes of real checkpoints with random weights,
 * built in memory so the benchmark needs no files. Speed depends only on
 * the shapes (the forward pass does the same work whatever the values),
 * so these time exactly what the real models would. */
#include "bench.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct shape {
    const char *name;
    enum t2_arch arch;
    int hidden, layers, heads, kv_heads, head_dim, intermediate, vocab, max_pos;
    float rms_eps, rope_theta;
    float rope_factor, rope_low, rope_high;
    int rope_orig;
    bool tied, qkv_bias;
} shape;

/* From each model's config.json. */
static const shape SHAPES[] = {
    {"smollm2-360m", T2_ARCH_LLAMA, 960, 32, 15, 5, 64, 2560, 49152, 8192, 1e-5f, 100000.0f, 0, 0,
     0, 0, true, false},
    {"llama-3.2-1b", T2_ARCH_LLAMA, 2048, 16, 32, 8, 64, 8192, 128256, 131072, 1e-5f, 500000.0f,
     32.0f, 1.0f, 4.0f, 8192, true, false},
    {"qwen2.5-0.5b", T2_ARCH_QWEN2, 896, 24, 14, 2, 64, 4864, 151936, 32768, 1e-6f, 1000000.0f, 0,
     0, 0, 0, true, true},
    {"seedling", T2_ARCH_LLAMA, 256, 8, 8, 2, 32, 768, 1024, 512, 1e-5f, 10000.0f, 0, 0, 0, 0, true,
     false},
};

#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

const char *t2_bench_shapes(void)
{
    return "smollm2-360m, llama-3.2-1b, qwen2.5-0.5b, seedling";
}

static const shape *find_shape(const char *name)
{
    for (size_t i = 0; i < N_SHAPES; i++)
        if (strcmp(SHAPES[i].name, name) == 0)
            return &SHAPES[i];
    return NULL;
}

static void shape_config(const shape *s, int min_pos, t2_config *c)
{
    memset(c, 0, sizeof *c);
    c->arch = s->arch;
    c->hidden = s->hidden;
    c->intermediate = s->intermediate;
    c->n_layers = s->layers;
    c->n_heads = s->heads;
    c->n_kv_heads = s->kv_heads;
    c->head_dim = s->head_dim;
    c->vocab = s->vocab;
    c->max_pos = s->max_pos > min_pos ? s->max_pos : min_pos;
    c->rms_eps = s->rms_eps;
    c->rope_theta = s->rope_theta;
    c->rope_factor = s->rope_factor;
    c->rope_low_freq_factor = s->rope_low;
    c->rope_high_freq_factor = s->rope_high;
    c->rope_orig_max_pos = s->rope_orig;
    c->tie_embeddings = s->tied;
    c->qkv_bias = s->qkv_bias;
    c->bos_id = -1;
}

/* ---- random fill, in parallel: a counter-based generator, so the
 * values do not depend on the number of threads ---- */

typedef struct fill_job {
    float *p;
    size_t n;
    uint64_t seed;
    float scale;
} fill_job;

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* uniform in [-scale, scale) from 24 random bits */
static float uniform(uint32_t bits, float scale)
{
    return ((float)(bits >> 8) * (2.0f / 16777216.0f) - 1.0f) * scale;
}

static void fill_worker(void *arg, int w, int nw)
{
    const fill_job *j = arg;
    size_t pairs = (j->n + 1) / 2;
    size_t b = pairs * (size_t)w / (size_t)nw, e = pairs * (size_t)(w + 1) / (size_t)nw;
    for (size_t i = b; i < e; i++) {
        uint64_t r = splitmix64(j->seed ^ (i * 0xd1342543de82ef95ull));
        j->p[2 * i] = uniform((uint32_t)r, j->scale);
        if (2 * i + 1 < j->n)
            j->p[2 * i + 1] = uniform((uint32_t)(r >> 32), j->scale);
    }
}

static void fill_slot(t2_model *m, size_t slot, t2_pool *pool)
{
    size_t n = m->slot_rows[slot] * m->slot_cols[slot];
    float *p = m->slots[slot];
    /* RMSNorm weights are 1 as at initialisation; everything else small
     * so activations stay finite through every layer */
    if (m->slot_cols[slot] == 1 && strstr(m->slot_names[slot], "norm")) {
        for (size_t i = 0; i < n; i++)
            p[i] = 1.0f;
        return;
    }
    fill_job j = {p, n, splitmix64(slot + 1), 0.05f};
    t2_pool_run(pool, fill_worker, &j);
}

static size_t count_params(const t2_model *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_slots; i++)
        n += m->slot_rows[i] * m->slot_cols[i];
    return n;
}

/* Parameter count from the config alone, for the progress line before
 * the allocation. */
static double shape_params(const t2_config *c)
{
    double H = c->hidden, Q = (double)c->n_heads * c->head_dim,
           KV = (double)c->n_kv_heads * c->head_dim;
    double layer = 2 * H * Q + 2 * H * KV + 3 * H * c->intermediate + 2 * H;
    if (c->qkv_bias)
        layer += Q + 2 * KV;
    double embed = (double)c->vocab * H;
    return c->n_layers * layer + embed * (c->tie_embeddings ? 1 : 2) + H;
}

static int fill_all(t2_model *m, t2_pool *pool, t2_err *err)
{
    for (size_t i = 0; i < m->n_slots; i++) {
        fill_slot(m, i, pool);
        if (t2_model_mark_loaded(m, i, err) != 0)
            return -1;
    }
    return t2_model_check_complete(m, err);
}

int t2_bench_synthetic(t2_model **out, const char *name, int min_pos, t2_pool *pool, t2_err *err)
{
    *out = NULL;
    const shape *s = find_shape(name);
    if (!s)
        return t2_err_set(err, "unknown synthetic shape '%s' (known: %s)", name, t2_bench_shapes());
    t2_model *m = calloc(1, sizeof *m);
    if (!m)
        return t2_err_set(err, "out of memory");
    shape_config(s, min_pos, &m->cfg);
    double params = shape_params(&m->cfg);
    fprintf(stderr, "t2 bench: building synthetic %s (%.2f B params, %.2f GB in f32)...\n", name,
            params / 1e9, params * 4 / 1e9);
    char path[64];
    snprintf(path, sizeof path, "synthetic:%s", name);
    m->path = strdup(path);
    m->name = strdup(path);
    if (!m->path || !m->name) {
        t2_model_free(m);
        return t2_err_set(err, "out of memory");
    }
    if (t2_model_init_weights(m, err) != 0 || fill_all(m, pool, err) != 0) {
        t2_model_free(m);
        return -1;
    }
    if ((double)count_params(m) != params)
        fprintf(stderr, "t2 bench: note: %zu parameters allocated, %.0f expected\n",
                count_params(m), params);
    *out = m;
    return 0;
}
