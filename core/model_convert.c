/* Weight formats of a model: the typed views of its matrices and the
 * conversion of an f32 model to bf16 or q8_0 at load. */
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "model.h"

static t2_wmat f32_wmat(const float *w, int rows, int cols)
{
    return (t2_wmat){T2_W_F32, w, rows, cols, (size_t)cols * sizeof(float)};
}

t2_wmat t2_layer_wmat(const t2_layer *L, const t2_config *c, int kind)
{
    int H = c->hidden, I = c->intermediate, Q = c->n_heads * c->head_dim,
        KV = c->n_kv_heads * c->head_dim;
    /* a float pointer, when set, is the matrix (code that swaps in other
     * f32 weights sets only it) */
    switch (kind) {
    case T2_WQ: return L->wq ? f32_wmat(L->wq, Q, H) : L->mat[kind];
    case T2_WK: return L->wk ? f32_wmat(L->wk, KV, H) : L->mat[kind];
    case T2_WV: return L->wv ? f32_wmat(L->wv, KV, H) : L->mat[kind];
    case T2_WO: return L->wo ? f32_wmat(L->wo, H, Q) : L->mat[kind];
    case T2_WGATE: return L->w_gate ? f32_wmat(L->w_gate, I, H) : L->mat[kind];
    case T2_WUP: return L->w_up ? f32_wmat(L->w_up, I, H) : L->mat[kind];
    default: return L->w_down ? f32_wmat(L->w_down, H, I) : L->mat[kind];
    }
}

static float **layer_f32(t2_layer *L, int kind)
{
    switch (kind) {
    case T2_WQ: return &L->wq;
    case T2_WK: return &L->wk;
    case T2_WV: return &L->wv;
    case T2_WO: return &L->wo;
    case T2_WGATE: return &L->w_gate;
    case T2_WUP: return &L->w_up;
    default: return &L->w_down;
    }
}

void t2_model_set_f32_wmats(t2_model *m)
{
    m->wtype = T2_W_F32;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        t2_layer *L = &m->layers[l];
        for (int k = 0; k < T2_N_FACTOR_KINDS; k++)
            L->mat[k] = t2_layer_wmat(L, &m->cfg, k);
    }
    m->embed_w = f32_wmat(m->embed, m->cfg.vocab, m->cfg.hidden);
    m->head = f32_wmat(m->lm_head, m->cfg.vocab, m->cfg.hidden);
}

size_t t2_wmat_alloc_bytes(t2_wtype wtype, int rows, int cols)
{
    size_t bytes = (size_t)rows * t2_wtype_row_bytes(wtype, cols);
    return (bytes + 63) / 64 * 64;
}

t2_wmat t2_wmat_from_f32(t2_wtype wtype, void *dst, const float *src, int rows, int cols)
{
    size_t rb = t2_wtype_row_bytes(wtype, cols), n = (size_t)rows * (size_t)cols;
    uint8_t *d = dst;
    switch (wtype) {
    case T2_W_F32: memcpy(d, src, n * sizeof(float)); break;
    case T2_W_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = t2_f32_to_bf16(src[i]);
            memcpy(d + 2 * i, &h, 2);
        }
        break;
    case T2_W_Q8_0: { /* GGUF blocks, one at a time, into the kernels' row layout */
        int nb = cols / T2_Q8_0_BLOCK;
        for (int r = 0; r < rows; r++)
            for (int b = 0; b < nb; b++) {
                uint8_t blk[T2_Q8_0_BYTES];
                t2_q8_0_quantize(src + (size_t)r * (size_t)cols + (size_t)b * T2_Q8_0_BLOCK, blk,
                                 T2_Q8_0_BLOCK);
                t2_q8_0_row_put(d + (size_t)r * rb, nb, b, blk);
            }
        break;
    }
    }
    return (t2_wmat){wtype, dst, rows, cols, rb};
}

/* The slot holding p (so its memory is freed with the model). */
static size_t slot_of(const t2_model *m, const float *p)
{
    for (size_t i = 0; i < m->n_slots; i++)
        if (m->slots[i] == p)
            return i;
    return m->n_slots;
}

/* Replaces the f32 matrix *f (a slot) by a copy in wtype; *f = NULL. */
static int convert_one(t2_model *m, float **f, t2_wmat *out, t2_wtype wtype, int rows, int cols,
                       t2_err *err)
{
    size_t slot = slot_of(m, *f);
    if (slot == m->n_slots)
        return t2_err_set(err, "internal: matrix without a slot");
    if (wtype == T2_W_Q8_0 && cols % T2_Q8_0_BLOCK != 0)
        return t2_err_set(err, "%s: %d columns, not a multiple of 32: cannot be stored as q8_0",
                          m->slot_names[slot], cols);
    size_t bytes = t2_wmat_alloc_bytes(wtype, rows, cols);
    void *p = aligned_alloc(64, bytes);
    if (!p)
        return t2_err_set(err, "out of memory converting %s (%zu bytes)", m->slot_names[slot],
                          bytes);
    memset(p, 0, bytes);
    *out = t2_wmat_from_f32(wtype, p, *f, rows, cols);
    free(m->slots[slot]);
    m->slots[slot] = p; /* freed with the model; no longer f32 */
    *f = NULL;
    return 0;
}

int t2_model_convert(t2_model *m, t2_wtype wtype, t2_err *err)
{
    if (wtype == m->wtype)
        return 0;
    if (m->wtype != T2_W_F32)
        return t2_err_set(err, "weights are %s already: cannot convert to %s",
                          t2_wtype_name(m->wtype), t2_wtype_name(wtype));
    for (int l = 0; l < m->cfg.n_layers; l++) {
        t2_layer *L = &m->layers[l];
        for (int k = 0; k < T2_N_FACTOR_KINDS; k++)
            if (convert_one(m, layer_f32(L, k), &L->mat[k], wtype, L->mat[k].rows, L->mat[k].cols,
                            err) != 0)
                return -1;
    }
    int V = m->cfg.vocab, H = m->cfg.hidden;
    bool tied = m->lm_head == m->embed;
    if (convert_one(m, &m->embed, &m->embed_w, wtype, V, H, err) != 0)
        return -1;
    if (tied) {
        m->lm_head = NULL;
        m->head = m->embed_w;
    } else if (convert_one(m, &m->lm_head, &m->head, wtype, V, H, err) != 0) {
        return -1;
    }
    m->wtype = wtype;
    return 0;
}
