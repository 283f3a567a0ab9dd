/* Singular Value Fine-tuning factors: every adaptable matrix W (m x n)
 * decomposed once as W = U diag(S) Vt (float32 LAPACKE sgesdd, r = min(m,n)),
 * cached on disk, and the two ways of applying an expert vector z:
 *   materialised  W' = U diag(S*z) Vt * (sum S / sum(S*z))
 *   factored      y  = U ((S*z*c) . (Vt x)),  c = sum S / sum(S*z)
 * See docs/TRANSFORMER2.md for when each is used. */
#ifndef T2_SVF_H
#define T2_SVF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "model.h"

/* Which matrices are adaptable (bit set). */
enum {
    T2_SVF_MLP = 1u << 0,  /* mlp.gate_proj, mlp.up_proj, mlp.down_proj of every layer */
    T2_SVF_ATTN = 1u << 1, /* self_attn.q_proj, k_proj, v_proj, o_proj of every layer */
};

enum t2_svf_kind { T2_SVF_Q, T2_SVF_K, T2_SVF_V, T2_SVF_O, T2_SVF_GATE, T2_SVF_UP, T2_SVF_DOWN };

/* Parses "mlp", "attn", "mlp,attn" / "all" into a set; -1 on error. */
int t2_svf_parse_set(const char *text, unsigned *set, t2_err *err);
/* "mlp", "attn" or "mlp,attn" */
const char *t2_svf_set_name(unsigned set);

typedef struct t2_svf_matrix {
    char *name; /* Hugging Face parameter name, e.g. model.layers.0.mlp.up_proj.weight */
    int layer;
    int m, n, r;    /* W is m x n (rows = outputs), r = min(m, n) */
    const float *w; /* the model's dense weights (borrowed), NULL unless f32 */
    t2_wmat wm;     /* the same in the model's weight format (borrowed) */
    int kind;       /* enum t2_svf_kind: which field of t2_layer */
    float *u;       /* [m][r] row-major */
    float *s;       /* [r], descending */
    float *vt;      /* [r][n] row-major */
    double s_sum;   /* sum of s */
    /* for a bf16 or q8_0 model: U and Vt rounded to bf16, which factored
     * products read (half the bytes); the f32 ones build materialised sets.
     * NULL where both factors have Q8_0 copies (u_head set below) */
    uint16_t *u_bf16, *vt_bf16;
    /* for a q8_0 model on kernels that rotate in Q8_0 (t2_kernels.rotate_q8)
     * and a square factor of whole Q8_0 blocks: that factor (Vt where
     * r = n, else U) and its transpose as Q8_0 matrices of r x r, which a
     * decode step's rotation multiplies by (forward_layers.c); and the other
     * factor (U [m][r] where r = n, else Vt [r][n]) in Q8_0, which with
     * rot_q8 gives a prompt's factored products U (s . (Vt x)) on the int8
     * kernels (fac_q8's data NULL where its columns are not whole blocks),
     * with u_head, U's first T2_Q8_0_BLOCK columns in f32, transposed ([32][m]): the
     * largest singular values, which would set the first block's scale
     * far above its other values (forward_layers.c). Data NULL otherwise;
     * rot_q8_bytes owns all four */
    t2_wmat rot_q8, rot_q8_t, fac_q8;
    float *u_head;
    uint8_t *rot_q8_bytes;
} t2_svf_matrix;

typedef struct t2_svf {
    unsigned set;
    size_t n;
    t2_svf_matrix
        *mats;    /* in model order: layer 0 (q,k,v,o,gate,up,down as in the set), layer 1, ... */
    uint64_t key; /* hash of the weights of the set + the set: the cache key */
} t2_svf;

/* Progress while decomposing: done / total matrices, seconds elapsed. */
typedef void (*t2_svf_progress_fn)(void *user, size_t done, size_t total, double elapsed_s);

typedef struct t2_svf_stats {
    size_t decomposed;        /* matrices computed now */
    size_t from_cache;        /* matrices loaded from the cache */
    bool cache_rebuilt;       /* a cache file existed but was stale or corrupt */
    char cache_error[512];    /* why the cache could not be written ("" = fine) */
    double lock_wait_seconds; /* waited for another process decomposing the same set */
    double seconds;
} t2_svf_stats;

/* Builds the factors for `set`. With cache_dir (NULL = no cache), loads
 * `<cache_dir>/<model name>-<set>-<key>.t2svf` when valid, else decomposes
 * and writes it atomically (temp file + fsync + rename). The model must
 * outlive the result. */
int t2_svf_build(t2_svf **out, const t2_model *m, unsigned set, const char *cache_dir,
                 t2_svf_progress_fn progress, void *user, t2_svf_stats *stats, t2_err *err);
void t2_svf_free(t2_svf *s);

/* Index of a matrix by parameter name, or -1. */
int t2_svf_find(const t2_svf *s, const char *name);

/* The scale c for z: sum S / sum(S*z). */
double t2_svf_scale(const t2_svf_matrix *mat, const float *z);

/* dst (m x n) = U diag(S*z*c) Vt. z == NULL means z = 1 (reconstruction).
 * tmp holds m*r floats. Single-threaded (callers parallelise over matrices). */
void t2_svf_materialise(const t2_svf_matrix *mat, const float *z, float *dst, float *tmp);

/* Effective singular values for the factored path: out[i] = S[i]*z[i]*c. */
void t2_svf_scaled_s(const t2_svf_matrix *mat, const float *z, float *out);

#endif
