/* Loads a llama.cpp-style GGUF (architecture llama or qwen2; tensors F32,
 * F16, BF16 or Q8_0) into float32 weights in Hugging Face layout. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "gguf.h"
#include "gguf_names.h"
#include "model.h"

static const char *arch_name(enum t2_arch a)
{
    return a == T2_ARCH_QWEN2 ? "qwen2" : "llama";
}

/* "{arch}.suffix" as an int; missing -> def (or an error if def < 0). */
static int get_int(const t2_gguf *g, const t2_config *c, const char *suffix, int def, int *out,
                   t2_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch_name(c->arch), suffix);
    uint32_t v;
    if (t2_gguf_get_u32(g, key, &v)) {
        if (v > INT_MAX)
            return t2_err_set(err, "%s = %u is out of range", key, v);
        *out = (int)v;
        return 0;
    }
    if (t2_gguf_find(g, key))
        return t2_err_set(err, "%s is not a non-negative integer", key);
    if (def < 0)
        return t2_err_set(err, "missing metadata key %s", key);
    *out = def;
    return 0;
}

static int get_float(const t2_gguf *g, const t2_config *c, const char *suffix, float def,
                     bool required, float *out, t2_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch_name(c->arch), suffix);
    if (t2_gguf_get_f32(g, key, out))
        return 0;
    if (t2_gguf_find(g, key))
        return t2_err_set(err, "%s is not a number", key);
    if (required)
        return t2_err_set(err, "missing metadata key %s", key);
    *out = def;
    return 0;
}

static int read_arch(const t2_gguf *g, t2_config *c, t2_err *err)
{
    char *a = t2_gguf_get_str(g, "general.architecture");
    int rc = 0;
    if (!a)
        rc = t2_err_set(err, "missing metadata key general.architecture");
    else if (strcmp(a, "llama") == 0)
        c->arch = T2_ARCH_LLAMA;
    else if (strcmp(a, "qwen2") == 0)
        c->arch = T2_ARCH_QWEN2;
    else
        rc = t2_err_set(err, "architecture '%.64s' is not supported (llama, qwen2)", a);
    free(a);
    return rc;
}

static int read_sizes(const t2_gguf *g, t2_config *c, t2_err *err)
{
    if (get_int(g, c, "context_length", -1, &c->max_pos, err) ||
        get_int(g, c, "embedding_length", -1, &c->hidden, err) ||
        get_int(g, c, "block_count", -1, &c->n_layers, err) ||
        get_int(g, c, "feed_forward_length", -1, &c->intermediate, err) ||
        get_int(g, c, "attention.head_count", -1, &c->n_heads, err) ||
        get_int(g, c, "attention.head_count_kv", c->n_heads, &c->n_kv_heads, err))
        return -1;
    if (c->n_heads <= 0)
        return t2_err_set(err, "attention.head_count must be positive");
    int vdim;
    if (get_int(g, c, "attention.key_length", c->hidden / c->n_heads, &c->head_dim, err) ||
        get_int(g, c, "attention.value_length", c->head_dim, &vdim, err))
        return -1;
    if (vdim != c->head_dim)
        return t2_err_set(err, "attention.value_length %d differs from key_length %d", vdim,
                          c->head_dim);
    return 0;
}

/* Vocabulary size from token_embd.weight [hidden, vocab]. */
static int read_vocab_size(const t2_gguf *g, t2_config *c, t2_err *err)
{
    const t2_gguf_tensor *t = t2_gguf_find_tensor(g, "token_embd.weight");
    if (!t)
        return t2_err_set(err, "missing tensor token_embd.weight");
    if (t->n_dims != 2 || t->dims[1] > INT_MAX)
        return t2_err_set(err, "token_embd.weight has an unexpected shape");
    c->vocab = (int)t->dims[1];
    int declared;
    if (get_int(g, c, "vocab_size", c->vocab, &declared, err))
        return -1;
    if (declared != c->vocab)
        return t2_err_set(err, "vocab_size %d differs from token_embd.weight's %d rows", declared,
                          c->vocab);
    return 0;
}

static void add_eos(t2_config *c, uint64_t id)
{
    if (id > INT32_MAX)
        return;
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == (int)id)
            return;
    if (c->n_eos < T2_MAX_EOS)
        c->eos_ids[c->n_eos++] = (int)id;
}

/* bos/eos: tokenizer.ggml.*; t2.eos_token_ids keeps the full HF list, and
 * llama.cpp's eot/eom ids also end a turn. */
static void read_special_ids(const t2_gguf *g, t2_config *c)
{
    uint32_t v;
    c->bos_id =
        t2_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &v) && v <= INT32_MAX ? (int)v : -1;
    c->n_eos = 0;
    const t2_gguf_kv *list = t2_gguf_find(g, "t2.eos_token_ids");
    if (list && list->type == T2_GGUF_ARRAY && list->arr_type != T2_GGUF_STRING)
        for (uint64_t i = 0; i < list->arr_count; i++) {
            int64_t id = t2_gguf_arr_int(list, i);
            if (id >= 0)
                add_eos(c, (uint64_t)id);
        }
    static const char *const keys[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                       "tokenizer.ggml.eom_token_id"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (t2_gguf_get_u32(g, keys[i], &v))
            add_eos(c, v);
}

/* Converts a tensor's data to float32 (n = its element count). */
static void to_f32(const t2_gguf_tensor *t, float *dst)
{
    size_t n = (size_t)t->n_elements;
    switch (t->type) {
    case T2_GGML_F32:
        memcpy(dst, t->data, n * sizeof *dst); /* little-endian host */
        break;
    case T2_GGML_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = t2_f16_to_f32(t2_load_u16(t->data + 2 * i));
        break;
    case T2_GGML_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = t2_bf16_to_f32(t2_load_u16(t->data + 2 * i));
        break;
    case T2_GGML_Q8_0: t2_q8_0_dequantize(t->data, dst, n); break;
    }
}

/* The divisors llama.cpp's converter derives for llama3 rope scaling. */
static float llama3_divisor(const t2_config *c, size_t i)
{
    double orig = c->rope_orig_max_pos, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    double freq = 1.0 / pow(c->rope_theta, (double)(2 * i) / c->head_dim);
    double wavelen = 2 * M_PI / freq;
    if (wavelen < orig / hi)
        return 1.0f;
    if (wavelen > orig / lo)
        return c->rope_factor;
    double smooth = (orig / wavelen - lo) / (hi - lo);
    return (float)(1.0 / ((1 - smooth) / c->rope_factor + smooth));
}

/* A llama.cpp file stores llama3 scaling only as rope_freqs.weight: take
 * the factor from its largest entry with Llama 3.1's other parameters,
 * and accept it only if that reproduces every entry. */
static int infer_llama3(const t2_gguf *g, t2_config *c, t2_err *err)
{
    const t2_gguf_tensor *t = t2_gguf_find_tensor(g, "rope_freqs.weight");
    if (!t)
        return 0;
    size_t n = (size_t)c->head_dim / 2;
    if (t->n_dims != 1 || t->dims[0] != n)
        return t2_err_set(err, "rope_freqs.weight has %llu entries, expected %zu",
                          (unsigned long long)t->dims[0], n);
    float *f = malloc(n * sizeof *f);
    if (!f)
        return t2_err_set(err, "out of memory");
    to_f32(t, f);
    float mx = 1.0f;
    for (size_t i = 0; i < n; i++)
        mx = fmaxf(mx, f[i]);
    int rc = 0;
    if (mx > 1.0f) {
        c->rope_factor = mx;
        c->rope_low_freq_factor = 1.0f;
        c->rope_high_freq_factor = 4.0f;
        c->rope_orig_max_pos = 8192;
        for (size_t i = 0; i < n && rc == 0; i++)
            if (!(fabsf(f[i] - llama3_divisor(c, i)) <= 1e-4f * mx))
                rc = t2_err_set(err,
                                "rope_freqs.weight is not llama3 rope scaling t2 can reproduce");
    }
    free(f);
    return rc;
}

/* t2.rope.freq_dtype: the precision HF's inverse frequencies had in the
 * source checkpoint (see t2_config); files from elsewhere use float32, as
 * llama.cpp does. */
static int read_rope_freq_dtype(const t2_gguf *g, t2_config *c, t2_err *err)
{
    if (!t2_gguf_find(g, "t2.rope.freq_dtype"))
        return 0;
    char *d = t2_gguf_get_str(g, "t2.rope.freq_dtype");
    int rc = 0;
    if (d && strcmp(d, "bf16") == 0)
        c->rope_freq_dtype = T2_ROPE_FREQ_BF16;
    else if (d && strcmp(d, "f16") == 0)
        c->rope_freq_dtype = T2_ROPE_FREQ_F16;
    else if (!d || strcmp(d, "f32") != 0)
        rc = t2_err_set(err, "t2.rope.freq_dtype must be \"f32\", \"bf16\" or \"f16\"");
    free(d);
    return rc;
}

static int read_rope(const t2_gguf *g, t2_config *c, t2_err *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch_name(c->arch));
    char *type = t2_gguf_get_str(g, key);
    int rc = 0;
    if (type && strcmp(type, "none") != 0)
        rc = t2_err_set(err, "rope scaling type '%.32s' is not supported", type);
    free(type);
    if (rc || get_float(g, c, "rope.freq_base", 10000.0f, false, &c->rope_theta, err) ||
        read_rope_freq_dtype(g, c, err))
        return -1;
    uint32_t orig;
    if (t2_gguf_get_f32(g, "t2.rope.llama3.factor", &c->rope_factor)) {
        if (!t2_gguf_get_f32(g, "t2.rope.llama3.low_freq_factor", &c->rope_low_freq_factor) ||
            !t2_gguf_get_f32(g, "t2.rope.llama3.high_freq_factor", &c->rope_high_freq_factor) ||
            !t2_gguf_get_u32(g, "t2.rope.llama3.original_context_length", &orig) ||
            orig > INT_MAX || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
            !(c->rope_low_freq_factor > 0))
            return t2_err_set(err, "t2.rope.llama3.* keys are incomplete or invalid");
        c->rope_orig_max_pos = (int)orig;
        return 0;
    }
    return infer_llama3(g, c, err);
}

static int read_config(const t2_gguf *g, t2_config *c, t2_err *err)
{
    memset(c, 0, sizeof *c);
    if (read_arch(g, c, err) || read_sizes(g, c, err) || read_vocab_size(g, c, err) ||
        get_float(g, c, "attention.layer_norm_rms_epsilon", 0, true, &c->rms_eps, err) ||
        read_rope(g, c, err))
        return -1;
    c->tie_embeddings = t2_gguf_find_tensor(g, "output.weight") == NULL;
    c->qkv_bias = c->arch == T2_ARCH_QWEN2 || t2_gguf_find_tensor(g, "blk.0.attn_q.bias");
    c->o_bias = t2_gguf_find_tensor(g, "blk.0.attn_output.bias") != NULL;
    read_special_ids(g, c);
    return 0;
}

/* Every weight comes from the file at >= 1 byte each (Q8_0: 34/32), so a
 * config needing more weights than the file has bytes is corrupt; this
 * check keeps a small hostile file from making us allocate terabytes. */
static int check_plausible_size(const t2_gguf *g, const t2_config *c, t2_err *err)
{
    double H = c->hidden, I = c->intermediate, V = c->vocab;
    double Q = (double)c->n_heads * c->head_dim, KV = (double)c->n_kv_heads * c->head_dim;
    double layer = 2 * H + 2 * Q * H + 2 * KV * H + 3 * I * H;
    double total = (double)c->n_layers * layer + V * H * (c->tie_embeddings ? 1 : 2) + H;
    if (total > (double)g->size)
        return t2_err_set(err, "metadata describes %.0f weights but the file has only %zu bytes",
                          total, g->size);
    return 0;
}

static int shape_ok(const t2_gguf_tensor *t, size_t rows, size_t cols)
{
    if (cols == 1)
        return t->n_dims == 1 && t->dims[0] == rows;
    return t->n_dims == 2 && t->dims[0] == cols && t->dims[1] == rows;
}

/* One tensor into its slot: shape check, float32, un-permute Llama Q/K. */
static int load_tensor(t2_model *m, const t2_gguf_tensor *t, t2_err *err)
{
    char name[128], hf[160];
    int nl = t->name.len < sizeof name ? (int)t->name.len : (int)sizeof name - 1;
    memcpy(name, t->name.ptr, (size_t)nl);
    name[nl] = '\0';
    if (t->name.len < sizeof name && strcmp(name, "rope_freqs.weight") == 0)
        return 0; /* read into the config by infer_llama3 */
    if (t->name.len >= sizeof name || memchr(name, '\0', (size_t)nl) ||
        t2_gguf_name_to_hf(name, hf, sizeof hf) != 0)
        return t2_err_set(err, "unexpected tensor '%.*s'", nl, t->name.ptr);
    size_t rows, cols, slot;
    float *dst = t2_model_slot(m, hf, &rows, &cols, &slot);
    if (!dst)
        return t2_err_set(err, "unexpected tensor '%s' (%s)", name, hf);
    if (!shape_ok(t, rows, cols))
        return t2_err_set(err, "tensor '%s' has shape [%llu, %llu], expected [%zu, %zu]", name,
                          (unsigned long long)t->dims[0],
                          (unsigned long long)(t->n_dims > 1 ? t->dims[1] : 1),
                          cols == 1 ? rows : cols, cols == 1 ? (size_t)1 : rows);
    bool is_k;
    if (m->cfg.arch == T2_ARCH_LLAMA && t2_gguf_is_permuted_qk(hf, &is_k)) {
        float *tmp = malloc(rows * cols * sizeof *tmp);
        if (!tmp)
            return t2_err_set(err, "out of memory");
        to_f32(t, tmp);
        t2_gguf_permute_qk(tmp, dst, rows, cols, is_k ? m->cfg.n_kv_heads : m->cfg.n_heads, true);
        free(tmp);
    } else {
        to_f32(t, dst);
    }
    return t2_model_mark_loaded(m, slot, err);
}

static int load(t2_model *m, const t2_gguf *g, t2_err *err)
{
    if (read_config(g, &m->cfg, err) || check_plausible_size(g, &m->cfg, err) ||
        t2_model_init_weights(m, err))
        return -1;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (load_tensor(m, &g->tensors[i], err))
            return -1;
    if (t2_model_check_complete(m, err) || t2_tok_load_gguf(&m->tok, g, err))
        return -1;
    if (t2_tok_vocab_size(m->tok) > m->cfg.vocab)
        return t2_err_set(err, "tokenizer has %d tokens but the model's vocab is %d",
                          t2_tok_vocab_size(m->tok), m->cfg.vocab);
    return 0;
}

int t2_model_load_gguf(t2_model *m, const char *path, t2_err *err)
{
    t2_gguf g;
    if (t2_gguf_open(&g, path, err))
        return -1;
    int rc = load(m, &g, err);
    if (rc)
        t2_err_prefix(err, path);
    t2_gguf_close(&g);
    return rc;
}
