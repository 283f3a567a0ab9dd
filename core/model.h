/* A loaded Llama-family model: configuration, weights, tokenizer.
 * Weights are row-major [out][in] as Hugging Face stores them, whatever
 * the source file (safetensors F32/F16/BF16, GGUF F32/F16/BF16/Q8_0). They
 * are read as float32; the projection matrices, the embedding table and
 * the output head are then kept in the weight format asked at load time
 * (f32 by default; bf16 or q8_0 halve or quarter the bytes decode reads). */
#ifndef T2_MODEL_H
#define T2_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "kernels.h"
#include "tokenizer.h"

enum t2_arch {
    T2_ARCH_LLAMA = 0, /* LlamaForCausalLM, MistralForCausalLM */
    T2_ARCH_QWEN2 = 1, /* Qwen2ForCausalLM: q/k/v biases */
};

#define T2_MAX_EOS 8

typedef struct t2_config {
    enum t2_arch arch;
    int hidden;       /* hidden_size */
    int intermediate; /* intermediate_size */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int vocab;
    int max_pos; /* max_position_embeddings */
    float rms_eps;
    float rope_theta;
    /* rope_scaling type "llama3" (factor 0 = none) */
    float rope_factor;
    float rope_low_freq_factor;
    float rope_high_freq_factor;
    int rope_orig_max_pos;
    /* Precision of RoPE's inverse frequencies. Hugging Face computes them
     * in float32, but loading a checkpoint in its stored dtype (bf16/f16)
     * casts that buffer too, and references made that way carry the
     * rounding: we follow the checkpoint's dtype to reproduce them. */
    enum { T2_ROPE_FREQ_F32 = 0, T2_ROPE_FREQ_BF16 = 1, T2_ROPE_FREQ_F16 = 2 } rope_freq_dtype;
    bool tie_embeddings;
    bool qkv_bias; /* q/k/v projections have biases (Qwen2, Llama attention_bias) */
    bool o_bias;   /* o_proj has a bias (Llama attention_bias) */
    int bos_id;    /* -1 if none */
    int n_eos;
    int eos_ids[T2_MAX_EOS];
} t2_config;

/* A matrix applied in SVF-factored form: y = U (s . (Vt x)), where s are
 * the expert-scaled singular values. s == NULL: use the dense matrix. */
typedef struct t2_factor {
    const float *u;  /* [m][r] */
    const float *vt; /* [r][n] */
    const float *s;  /* [r] */
    int m, n, r;
    const uint16_t *u_bf16, *vt_bf16; /* U and Vt in bf16 (NULL: use the f32 ones) */
    /* The matrix the SVD decomposed, W = U diag(sigma) Vt, in the model's
     * format, and sigma: a q8_0 model's decode-sized products apply
     * U diag(s) Vt as W and a rotation by the square factor
     * (forward_layers.c). NULL where not known. */
    const t2_wmat *base;
    const float *sigma;
    /* Q8_0 copies of the square factor and its transpose for the rotation
     * (t2_svf_matrix.rot_q8), NULL where not built */
    const t2_wmat *rot_q8, *rot_q8_t;
    /* U and Vt in Q8_0 (one of them rot_q8) for a prompt's factored
     * products on the int8 kernels, and U's first 32 columns in f32
     * transposed, [32][m] (t2_svf_matrix.u_head); NULL where not built */
    const t2_wmat *u_q8, *vt_q8;
    const float *u_head;
} t2_factor;

/* Slots of t2_layer.factors, also enum t2_svf_kind's values. */
#define T2_N_FACTOR_KINDS 7

/* t2_layer.mat / t2_layer_wmat kinds, also enum t2_svf_kind's values */
enum { T2_WQ = 0, T2_WK, T2_WV, T2_WO, T2_WGATE, T2_WUP, T2_WDOWN };

/* The float pointers wq..w_down are the f32 weights, NULL when the model
 * keeps another format; mat[] are the matrices in the model's format.
 * A float pointer that is set wins (code that swaps in other f32 weights
 * sets only it): read them through t2_layer_wmat(). */
typedef struct t2_layer {
    float *attn_norm;    /* [hidden] */
    float *wq;           /* [n_heads*head_dim][hidden] */
    float *wk;           /* [n_kv_heads*head_dim][hidden] */
    float *wv;           /* [n_kv_heads*head_dim][hidden] */
    float *wo;           /* [hidden][n_heads*head_dim] */
    float *bq, *bk, *bv; /* biases when qkv_bias, else NULL */
    float *bo;           /* bias when o_bias, else NULL */
    float *ffn_norm;     /* [hidden] */
    float *w_gate;       /* [intermediate][hidden] */
    float *w_up;         /* [intermediate][hidden] */
    float *w_down;       /* [hidden][intermediate] */
    /* [T2_N_FACTOR_KINDS] (q, k, v, o, gate, up, down) or NULL: matrices to
     * apply factored instead of dense (adapted weights without a rebuild) */
    const t2_factor *factors;
    /* [T2_N_FACTOR_KINDS] or NULL: the same dense matrices as factors
     * (mat = U diag(s) Vt, up to rounding), so a batch whose rows use
     * different weight sets can share one U and Vt product (see
     * forward_layers.c); never used for a row alone */
    const t2_factor *mix;
    t2_wmat mat[T2_N_FACTOR_KINDS]; /* q, k, v, o, gate, up, down */
} t2_layer;

typedef struct t2_model {
    t2_config cfg;
    char *path;        /* directory or file it was loaded from */
    char *name;        /* short name (directory/file base name) */
    float *embed;      /* [vocab][hidden] */
    float *final_norm; /* [hidden] */
    float *lm_head;    /* [vocab][hidden]; == embed when tied */
    /* embed and lm_head in the weight format (embed/lm_head are NULL when
     * that is not f32; head.data == embed_w.data when tied) */
    t2_wmat embed_w, head;
    t2_wtype wtype; /* the weight format of the projection matrices */
    /* contexts created from now on keep their K/V cache in f16 (half the
     * memory and the attention's bytes) instead of f32 */
    bool kv_f16;
    t2_layer *layers; /* [n_layers] */
    t2_tokenizer *tok;
    bool *loaded; /* per tensor slot, for "missing tensor" checks */
    size_t n_slots;
    float **slots; /* every weight array, in a fixed order, for freeing */
    size_t *slot_rows, *slot_cols;
    char **slot_names; /* Hugging Face parameter names */
} t2_model;

/* Loads a Hugging Face directory (config.json + model.safetensors or
 * model.safetensors.index.json + tokenizer.json) or a .gguf file, f32. */
int t2_model_load(t2_model **out, const char *path, t2_err *err);
/* The same, keeping the weights in `wtype`: converted once at load (a
 * GGUF's BF16 or Q8_0 tensors asked in their own format come out as
 * stored: the round trip through float32 is exact for them). */
int t2_model_load_as(t2_model **out, const char *path, t2_wtype wtype, t2_err *err);

/* A K/V cache format (t2_model.kv_f16) by name: "f32" or "f16". */
const char *t2_kv_cache_name(bool f16);
/* "f32" / "f16" -> *f16; fails on anything else. */
int t2_kv_cache_parse(const char *s, bool *f16, t2_err *err);

/* Matrix `kind` (T2_WQ..T2_WDOWN) of a layer in its stored format. */
t2_wmat t2_layer_wmat(const t2_layer *L, const t2_config *c, int kind);
/* Converts every projection matrix, the embedding and the head of an f32
 * model to `wtype` (freeing the f32 copies). For loaders and benchmarks. */
int t2_model_convert(t2_model *m, t2_wtype wtype, t2_err *err);
/* Bytes to allocate for a matrix [rows][cols] in `wtype` (rows packed). */
size_t t2_wmat_alloc_bytes(t2_wtype wtype, int rows, int cols);
/* Fills an allocated matrix of `wtype` from float32 [rows][cols] and
 * returns its descriptor. */
t2_wmat t2_wmat_from_f32(t2_wtype wtype, void *dst, const float *src, int rows, int cols);
void t2_model_free(t2_model *m);

/* --- for loaders --- */

/* Validates cfg (positive sizes, heads dividing, limits) and allocates
 * every weight array (zeroed, not yet loaded). */
int t2_model_init_weights(t2_model *m, t2_err *err);
/* The destination of a Hugging Face parameter name (e.g.
 * "model.layers.3.mlp.up_proj.weight") with its expected shape; NULL if
 * the model has no such tensor. 1-D tensors have rows = n, cols = 1. */
float *t2_model_slot(t2_model *m, const char *hf_name, size_t *rows, size_t *cols, size_t *slot);
/* Points every layer's mat[], embed_w and head at the f32 weights. */
void t2_model_set_f32_wmats(t2_model *m);
/* Marks a slot loaded; fails if it was loaded before (duplicate). */
int t2_model_mark_loaded(t2_model *m, size_t slot, t2_err *err);
/* Fails naming the first tensor no file provided. */
int t2_model_check_complete(const t2_model *m, t2_err *err);

/* config.json text -> cfg (for tests too) */
int t2_config_parse_json(t2_config *cfg, const char *json, size_t len, t2_err *err);

int t2_model_load_hf_dir(t2_model *m, const char *dir, t2_err *err);
int t2_model_load_gguf(t2_model *m, const char *path, t2_err *err);

bool t2_model_is_eos(const t2_model *m, int32_t id);

#endif
