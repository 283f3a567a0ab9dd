/* Model object: weight slots shared by the safetensors and GGUF loaders. */
#include "model.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Sanity limits: anything larger is a corrupt or hostile config. */
#define MAX_DIM (1 << 20)
#define MAX_LAYERS 1024

static int validate_config(const t2_config *c, t2_err *err)
{
    if (c->hidden <= 0 || c->hidden > MAX_DIM || c->intermediate <= 0 ||
        c->intermediate > MAX_DIM || c->vocab <= 0 || c->vocab > 16 * MAX_DIM)
        return t2_err_set(err, "config: hidden/intermediate/vocab sizes out of range");
    if (c->n_layers <= 0 || c->n_layers > MAX_LAYERS)
        return t2_err_set(err, "config: num_hidden_layers %d out of range", c->n_layers);
    if (c->n_heads <= 0 || c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads != 0)
        return t2_err_set(
            err, "config: num_attention_heads %d must be a multiple of num_key_value_heads %d",
            c->n_heads, c->n_kv_heads);
    if (c->head_dim <= 0 || c->head_dim % 2 != 0 || c->head_dim > 1024 ||
        (long)c->n_heads * c->head_dim > MAX_DIM)
        return t2_err_set(err, "config: head_dim %d invalid (must be even)", c->head_dim);
    if (c->max_pos <= 0)
        return t2_err_set(err, "config: max_position_embeddings must be positive");
    if (!(c->rms_eps > 0) || !(c->rope_theta > 0))
        return t2_err_set(err, "config: rms_norm_eps and rope_theta must be positive");
    return 0;
}

typedef struct slot_spec {
    float **dst;
    const char *fmt; /* HF name, %d = layer */
    int layer;
    size_t rows, cols;
} slot_spec;

static size_t collect_slots(t2_model *m, slot_spec *s)
{
    const t2_config *c = &m->cfg;
    size_t n = 0, H = (size_t)c->hidden, I = (size_t)c->intermediate, V = (size_t)c->vocab;
    size_t Q = (size_t)c->n_heads * (size_t)c->head_dim,
           KV = (size_t)c->n_kv_heads * (size_t)c->head_dim;
    s[n++] = (slot_spec){&m->embed, "model.embed_tokens.weight", -1, V, H};
    for (int l = 0; l < c->n_layers; l++) {
        t2_layer *L = &m->layers[l];
        s[n++] = (slot_spec){&L->attn_norm, "model.layers.%d.input_layernorm.weight", l, H, 1};
        s[n++] = (slot_spec){&L->wq, "model.layers.%d.self_attn.q_proj.weight", l, Q, H};
        s[n++] = (slot_spec){&L->wk, "model.layers.%d.self_attn.k_proj.weight", l, KV, H};
        s[n++] = (slot_spec){&L->wv, "model.layers.%d.self_attn.v_proj.weight", l, KV, H};
        s[n++] = (slot_spec){&L->wo, "model.layers.%d.self_attn.o_proj.weight", l, H, Q};
        if (c->qkv_bias) {
            s[n++] = (slot_spec){&L->bq, "model.layers.%d.self_attn.q_proj.bias", l, Q, 1};
            s[n++] = (slot_spec){&L->bk, "model.layers.%d.self_attn.k_proj.bias", l, KV, 1};
            s[n++] = (slot_spec){&L->bv, "model.layers.%d.self_attn.v_proj.bias", l, KV, 1};
        }
        if (c->o_bias)
            s[n++] = (slot_spec){&L->bo, "model.layers.%d.self_attn.o_proj.bias", l, H, 1};
        s[n++] =
            (slot_spec){&L->ffn_norm, "model.layers.%d.post_attention_layernorm.weight", l, H, 1};
        s[n++] = (slot_spec){&L->w_gate, "model.layers.%d.mlp.gate_proj.weight", l, I, H};
        s[n++] = (slot_spec){&L->w_up, "model.layers.%d.mlp.up_proj.weight", l, I, H};
        s[n++] = (slot_spec){&L->w_down, "model.layers.%d.mlp.down_proj.weight", l, H, I};
    }
    s[n++] = (slot_spec){&m->final_norm, "model.norm.weight", -1, H, 1};
    if (!c->tie_embeddings)
        s[n++] = (slot_spec){&m->lm_head, "lm_head.weight", -1, V, H};
    return n;
}

int t2_model_init_weights(t2_model *m, t2_err *err)
{
    if (validate_config(&m->cfg, err) != 0)
        return -1;
    size_t max_slots = 3 + (size_t)m->cfg.n_layers * 13;
    slot_spec *spec = calloc(max_slots, sizeof *spec);
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    m->slots = calloc(max_slots, sizeof *m->slots);
    m->slot_rows = calloc(max_slots, sizeof *m->slot_rows);
    m->slot_cols = calloc(max_slots, sizeof *m->slot_cols);
    m->slot_names = calloc(max_slots, sizeof *m->slot_names);
    m->loaded = calloc(max_slots, sizeof *m->loaded);
    if (!spec || !m->layers || !m->slots || !m->slot_rows || !m->slot_cols || !m->slot_names ||
        !m->loaded) {
        free(spec);
        return t2_err_set(err, "out of memory");
    }
    size_t n = collect_slots(m, spec);
    for (size_t i = 0; i < n; i++) {
        char name[128];
        snprintf(name, sizeof name, spec[i].fmt, spec[i].layer);
        size_t bytes = spec[i].rows * spec[i].cols * sizeof(float);
        /* 64-byte alignment for the vector kernels */
        float *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
        m->slot_names[i] = strdup(name);
        m->slots[i] = p;
        m->n_slots = i + 1;
        if (!p || !m->slot_names[i]) {
            free(spec);
            return t2_err_set(err, "out of memory allocating %s (%zu bytes)", name, bytes);
        }
        memset(p, 0, bytes);
        *spec[i].dst = p;
        m->slot_rows[i] = spec[i].rows;
        m->slot_cols[i] = spec[i].cols;
    }
    if (m->cfg.tie_embeddings)
        m->lm_head = m->embed;
    free(spec);
    t2_model_set_f32_wmats(m);
    return 0;
}

float *t2_model_slot(t2_model *m, const char *hf_name, size_t *rows, size_t *cols, size_t *slot)
{
    for (size_t i = 0; i < m->n_slots; i++) {
        if (strcmp(m->slot_names[i], hf_name) == 0) {
            *rows = m->slot_rows[i];
            *cols = m->slot_cols[i];
            *slot = i;
            return m->slots[i];
        }
    }
    return NULL;
}

int t2_model_mark_loaded(t2_model *m, size_t slot, t2_err *err)
{
    if (slot >= m->n_slots)
        return t2_err_set(err, "internal: slot %zu out of range", slot);
    if (m->loaded[slot])
        return t2_err_set(err, "tensor '%s' given twice", m->slot_names[slot]);
    m->loaded[slot] = true;
    return 0;
}

int t2_model_check_complete(const t2_model *m, t2_err *err)
{
    for (size_t i = 0; i < m->n_slots; i++)
        if (!m->loaded[i])
            return t2_err_set(err, "tensor '%s' missing", m->slot_names[i]);
    return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static char *base_name(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return NULL;
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';
    char *b = strdup(basename(copy));
    free(copy);
    if (b && ends_with(b, ".gguf"))
        b[strlen(b) - 5] = '\0';
    return b;
}

int t2_model_load(t2_model **out, const char *path, t2_err *err)
{
    return t2_model_load_as(out, path, T2_W_F32, err);
}

int t2_model_load_as(t2_model **out, const char *path, t2_wtype wtype, t2_err *err)
{
    *out = NULL;
    t2_model *m = calloc(1, sizeof *m);
    if (!m)
        return t2_err_set(err, "out of memory");
    m->path = strdup(path);
    m->name = base_name(path);
    if (!m->path || !m->name) {
        t2_model_free(m);
        return t2_err_set(err, "out of memory");
    }
    struct stat st;
    int rc;
    if (stat(path, &st) != 0)
        rc = t2_err_set(err, "%s: no such file or directory", path);
    else if (S_ISDIR(st.st_mode))
        rc = t2_model_load_hf_dir(m, path, err);
    else
        rc = t2_model_load_gguf(m, path, err);
    if (rc == 0)
        rc = t2_model_convert(m, wtype, err);
    if (rc != 0) {
        t2_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void t2_model_free(t2_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_slots; i++) {
        free(m->slots[i]);
        free(m->slot_names[i]);
    }
    free(m->slots);
    free(m->slot_names);
    free(m->slot_rows);
    free(m->slot_cols);
    free(m->loaded);
    free(m->layers);
    if (m->tok)
        t2_tok_free(m->tok);
    free(m->path);
    free(m->name);
    free(m);
}

bool t2_model_is_eos(const t2_model *m, int32_t id)
{
    for (int i = 0; i < m->cfg.n_eos; i++)
        if (m->cfg.eos_ids[i] == id)
            return true;
    return false;
}

const char *t2_kv_cache_name(bool f16)
{
    return f16 ? "f16" : "f32";
}

int t2_kv_cache_parse(const char *s, bool *f16, t2_err *err)
{
    for (int i = 0; i < 2; i++)
        if (strcmp(s, t2_kv_cache_name(i)) == 0) {
            *f16 = i;
            return 0;
        }
    return t2_err_set(err, "unknown K/V cache format '%s' (expected f32 or f16)", s);
}
