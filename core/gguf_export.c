/* Model weights and configuration -> GGUF, with llama.cpp's names,
 * metadata keys and Q/K row permutation so llama.cpp can load the file
 * too. The tokenizer part is in gguf_export_tok.c. */
#include "gguf_export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gguf_names.h"

int t2_gguf_parse_type_name(const char *s, enum t2_ggml_type *out)
{
    static const struct {
        const char *name;
        enum t2_ggml_type type;
    } k[] = {
        {"f32", T2_GGML_F32}, {"f16", T2_GGML_F16}, {"bf16", T2_GGML_BF16}, {"q8_0", T2_GGML_Q8_0}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strcasecmp(s, k[i].name) == 0) {
            *out = k[i].type;
            return 0;
        }
    return -1;
}

/* llama.cpp's general.file_type (LLAMA_FTYPE_*) for the chosen type. */
static uint32_t file_type(enum t2_ggml_type t)
{
    switch (t) {
    case T2_GGML_F16: return 1;
    case T2_GGML_Q8_0: return 7;
    case T2_GGML_BF16: return 32;
    default: return 0;
    }
}

static const char *arch_name(enum t2_arch a)
{
    return a == T2_ARCH_QWEN2 ? "qwen2" : "llama";
}

/* "{arch}.suffix" */
static const char *akey(char *buf, size_t cap, const t2_config *c, const char *suffix)
{
    snprintf(buf, cap, "%s.%s", arch_name(c->arch), suffix);
    return buf;
}

static void write_config(t2_gguf_writer *w, const t2_model *m, enum t2_ggml_type type)
{
    const t2_config *c = &m->cfg;
    char k[128];
    t2_gguf_w_str(w, "general.architecture", arch_name(c->arch));
    t2_gguf_w_str(w, "general.name", m->name ? m->name : "model");
    t2_gguf_w_u32(w, "general.file_type", file_type(type));
    t2_gguf_w_u32(w, "general.quantization_version", 2);
    t2_gguf_w_u32(w, akey(k, sizeof k, c, "context_length"), (uint32_t)c->max_pos);
    t2_gguf_w_u32(w, akey(k, sizeof k, c, "embedding_length"), (uint32_t)c->hidden);
    t2_gguf_w_u32(w, akey(k, sizeof k, c, "block_count"), (uint32_t)c->n_layers);
    t2_gguf_w_u32(w, akey(k, sizeof k, c, "feed_forward_length"), (uint32_t)c->intermediate);
    t2_gguf_w_u32(w, akey(k, sizeof k, c, "attention.head_count"), (uint32_t)c->n_heads);
    t2_gguf_w_u32(w, akey(k, sizeof k, c, "attention.head_count_kv"), (uint32_t)c->n_kv_heads);
    t2_gguf_w_u32(w, akey(k, sizeof k, c, "attention.key_length"), (uint32_t)c->head_dim);
    t2_gguf_w_u32(w, akey(k, sizeof k, c, "attention.value_length"), (uint32_t)c->head_dim);
    t2_gguf_w_u32(w, akey(k, sizeof k, c, "rope.dimension_count"), (uint32_t)c->head_dim);
    t2_gguf_w_f32(w, akey(k, sizeof k, c, "rope.freq_base"), c->rope_theta);
    t2_gguf_w_f32(w, akey(k, sizeof k, c, "attention.layer_norm_rms_epsilon"), c->rms_eps);
    t2_gguf_w_u32(w, akey(k, sizeof k, c, "vocab_size"), (uint32_t)c->vocab);
    if (c->rope_factor > 0) {
        /* llama.cpp has no keys for llama3 scaling (it reads the
         * rope_freqs.weight tensor, written below); t2 keeps the exact
         * parameters under its own namespace, which llama.cpp ignores. */
        t2_gguf_w_f32(w, "t2.rope.llama3.factor", c->rope_factor);
        t2_gguf_w_f32(w, "t2.rope.llama3.low_freq_factor", c->rope_low_freq_factor);
        t2_gguf_w_f32(w, "t2.rope.llama3.high_freq_factor", c->rope_high_freq_factor);
        t2_gguf_w_u32(w, "t2.rope.llama3.original_context_length", (uint32_t)c->rope_orig_max_pos);
    }
    if (c->rope_freq_dtype != T2_ROPE_FREQ_F32) /* to reproduce HF's rounded inv_freq */
        t2_gguf_w_str(w, "t2.rope.freq_dtype",
                      c->rope_freq_dtype == T2_ROPE_FREQ_BF16 ? "bf16" : "f16");
    if (c->n_eos > 1) { /* GGUF has one eos id; keep the full list for t2 */
        int32_t ids[T2_MAX_EOS];
        for (int i = 0; i < c->n_eos; i++)
            ids[i] = c->eos_ids[i];
        t2_gguf_w_arr_i32(w, "t2.eos_token_ids", ids, (size_t)c->n_eos);
    }
}

/* The per-dimension frequency divisors llama.cpp's converter stores for
 * llama3 rope scaling (convert_hf_to_gguf.py, LlamaModel). */
static int write_rope_freqs(t2_gguf_writer *w, const t2_config *c, t2_err *err)
{
    size_t n = (size_t)c->head_dim / 2;
    float *f = malloc(n * sizeof *f);
    if (!f)
        return t2_err_set(err, "out of memory");
    double orig = c->rope_orig_max_pos, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    double lo_wavelen = orig / lo, hi_wavelen = orig / hi;
    for (size_t i = 0; i < n; i++) {
        double freq = 1.0 / pow(c->rope_theta, (double)(2 * i) / c->head_dim);
        double wavelen = 2 * M_PI / freq;
        if (wavelen < hi_wavelen)
            f[i] = 1.0f;
        else if (wavelen > lo_wavelen)
            f[i] = c->rope_factor;
        else {
            double smooth = (orig / wavelen - lo) / (hi - lo);
            f[i] = (float)(1.0 / ((1 - smooth) / c->rope_factor + smooth));
        }
    }
    t2_gguf_w_tensor_owned(w, "rope_freqs.weight", T2_GGML_F32, 1, (uint64_t[]){n}, f);
    return 0;
}

static enum t2_ggml_type pick_type(enum t2_ggml_type want, size_t cols)
{
    if (cols == 1) /* 1-D: norms and biases stay exact */
        return T2_GGML_F32;
    if (want == T2_GGML_Q8_0 && cols % 32 != 0)
        return T2_GGML_F16; /* as llama.cpp does for rows that do not hold whole blocks */
    return want;
}

/* One model slot as a GGUF tensor (permuted copy for Llama's Q/K). */
static int write_slot(t2_gguf_writer *w, const t2_model *m, size_t i, enum t2_ggml_type want,
                      t2_err *err)
{
    const char *hf = m->slot_names[i];
    size_t rows = m->slot_rows[i], cols = m->slot_cols[i];
    char name[128];
    if (t2_gguf_name_from_hf(hf, name, sizeof name) != 0)
        return t2_err_set(err, "tensor '%s' has no GGUF name", hf);
    enum t2_ggml_type type = pick_type(want, cols);
    uint64_t dims[2] = {cols, rows};
    uint32_t n_dims = cols == 1 ? 1 : 2;
    if (cols == 1)
        dims[0] = rows;
    bool is_k;
    if (m->cfg.arch == T2_ARCH_LLAMA && t2_gguf_is_permuted_qk(hf, &is_k)) {
        float *p = malloc(rows * cols * sizeof *p);
        if (!p)
            return t2_err_set(err, "out of memory");
        t2_gguf_permute_qk(m->slots[i], p, rows, cols, is_k ? m->cfg.n_kv_heads : m->cfg.n_heads,
                           false);
        t2_gguf_w_tensor_owned(w, name, type, n_dims, dims, p);
        return 0;
    }
    t2_gguf_w_tensor(w, name, type, n_dims, dims, m->slots[i]);
    return 0;
}

int t2_gguf_export_model(const t2_model *m, const char *hf_dir, const char *out_path,
                         const t2_gguf_export_opts *opts, t2_err *err)
{
    enum t2_ggml_type want = opts ? opts->type : T2_GGML_F32;
    const char *pre = opts && opts->pre ? opts->pre : "default";
    t2_gguf_writer *w = t2_gguf_writer_new();
    if (!w)
        return t2_err_set(err, "out of memory");
    write_config(w, m, want);
    int rc = t2_gguf_export_tokenizer(w, hf_dir, &m->cfg, pre, err);
    if (rc == 0 && m->cfg.rope_factor > 0)
        rc = write_rope_freqs(w, &m->cfg, err);
    for (size_t i = 0; i < m->n_slots && rc == 0; i++)
        rc = write_slot(w, m, i, want, err);
    /* the writer remembers any failed add and reports it here */
    if (rc == 0)
        rc = t2_gguf_writer_write_file(w, out_path, err);
    t2_gguf_writer_free(w);
    return rc;
}

int t2_gguf_export(const char *hf_dir, const char *out_path, const t2_gguf_export_opts *opts,
                   t2_err *err)
{
    t2_model *m;
    if (t2_model_load(&m, hf_dir, err) != 0)
        return -1;
    int rc = t2_gguf_export_model(m, hf_dir, out_path, opts, err);
    t2_model_free(m);
    return rc;
}
