/* Matrix-vector (and small matrix-matrix) kernels for weights stored as
 * F32, BF16 or Q8_0: Y[i][r] = sum_k X[i][k] * W[r][k] for a few rows of X
 * (one per decoded sequence). A portable scalar reference and AVX2/FMA and
 * AVX-512 variants; the best one the CPU supports is chosen once at run
 * time (T2_KERNELS=scalar|avx2|avx512|avx512bf16|amx forces one). */
#ifndef T2_KERNELS_H
#define T2_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "error.h"

/* Storage format of a weight matrix. */
typedef enum t2_wtype {
    T2_W_F32 = 0,
    T2_W_BF16 = 1,
    T2_W_Q8_0 = 2, /* GGUF blocks: f16 scale d + 32 int8, value = d * q */
} t2_wtype;

/* A row-major weight matrix [rows][cols]; row r starts at
 * (const char *)data + r * stride. Q8_0 needs cols % 32 == 0.
 *
 * Q8_0 rows hold the values of GGUF's Q8_0 blocks (32 int8 q and an f16
 * scale d per block, value = d * q) in their own order, the same 34 bytes
 * per block: in groups of up to 16 blocks (T2_Q8_0_GROUP; group g starts
 * at byte g * 544 and has m = min(16, nb - 16 g) blocks), first the
 * group's quants (32 * m bytes), then its m scales. The quants are
 * interleaved across the group's blocks: the 4 bytes at 4 m u + 4 j
 * (u = 0..7, j = 0..m-1) are quants 4u..4u+3 of block j, each stored as
 * q + 128 (unsigned). So one 64-byte load holds 4 quants of each of 16
 * blocks, lane j of a 32-bit-lane vector always meets block j, and a
 * kernel sums a whole group in one integer vector (VNNI takes unsigned
 * times signed bytes) and scales it with one multiply per 16 blocks. A
 * row is still read front to back (scales at the end of the whole row
 * made rows of 4096+ columns stream slower). Read and write through the
 * accessors below. */
typedef struct t2_wmat {
    t2_wtype type;
    const void *data;
    int rows, cols;
    size_t stride; /* bytes per row */
} t2_wmat;

const char *t2_wtype_name(t2_wtype t);
/* "f32", "bf16", "q8_0" -> *t; fails on anything else. */
int t2_wtype_parse(const char *s, t2_wtype *t, t2_err *err);
/* Bytes of one row of cols values (cols % 32 == 0 for Q8_0). */
size_t t2_wtype_row_bytes(t2_wtype t, int cols);

/* Activations quantised for Q8_0 products, per row of X: its cols / 32
 * blocks' int8 values in the weights' group order (t2_q8_0_x_offset; a
 * row takes t2_q8_act_row_bytes(cols), a short last group's other lanes
 * zero), the blocks' scales (f16-rounded, as llama.cpp's q8_0 blocks
 * carry them) and each block's sum of values (for the kernels that
 * multiply the weights as q + 128). Quantised once per product, read by
 * every worker. */
typedef struct t2_q8_act {
    int8_t *q;    /* [n][t2_q8_act_row_bytes(cols)] */
    float *d;     /* [n][cols / 32] */
    int32_t *sum; /* [n][cols / 32] */
} t2_q8_act;

/* Room for n rows of cols (all three arrays, q 64-byte aligned), freed
 * by t2_q8_act_free. -1 on out of memory. */
int t2_q8_act_alloc(t2_q8_act *a, int n, int cols);
void t2_q8_act_free(t2_q8_act *a);

/* The kernels of one variant. x / xq hold n rows of `cols`; y[i] starts at
 * y + i * ldy; w rows are ldw bytes apart. */
typedef struct t2_kernels {
    const char *name;
    void (*f32)(const float *w, size_t ldw, int rows, int cols, const float *x, int n, float *y,
                size_t ldy);
    void (*bf16)(const uint16_t *w, size_t ldw, int rows, int cols, const float *x, int n, float *y,
                 size_t ldy);
    void (*q8_0)(const uint8_t *w, size_t ldw, int rows, int cols, const t2_q8_act *x, int n,
                 float *y, size_t ldy);
    /* quantises X for q8_0: the same result as t2_q8_act_quantize */
    void (*q8_act)(const float *x, int n, int cols, t2_q8_act *out);
    /* bf16 weights times X rounded to bf16 (t2_bf16_round, dtype.h): each product
     * of two bf16 values is exact in float, so this is bf16() on the
     * widened X up to the order of the sums (and vdpbf16ps treats
     * subnormal inputs as zero, as do AMX tiles). In the scalar reference,
     * with AVX512-BF16's dot product (avx512bf16) and with AMX tiles (amx);
     * NULL in the others, where the caller widens X into scratch and calls
     * bf16 (faster than widening X inside the loop). */
    void (*bf16_x16)(const uint16_t *w, size_t ldw, int rows, int cols, const uint16_t *x, int n,
                     float *y, size_t ldy);
    /* The transposed bf16 product: y[i][c] = sum_k x[i][k] * w[k][c] for
     * the columns c0 <= c < c1 of the bf16 rows w[0..rows), x in bf16 as
     * for bf16_x16 (rows of `rows` values, ldx apart). A matrix stored for
     * Y = X · Wᵀ serves Y = X · W too (V from the rows of Vᵀ, Uᵀ from
     * those of U) without a transposed copy. Sums in a different order
     * than the scalar reference (pairs of rows per vdpbf16ps with
     * AVX512-BF16), within float rounding of it. */
    void (*bf16_t)(const uint16_t *w, size_t ldw, int rows, int c0, int c1, const uint16_t *x,
                   size_t ldx, int n, float *y, size_t ldy);
    /* SwiGLU's elementwise step: g[i] = g[i] / (1 + exp(-g[i])) * u[i].
     * The vector variants compute exp with a polynomial (Cephes' expf,
     * about 1 ulp) instead of libm's expf: within 1e-6 relative of the
     * scalar reference (test_kernels), and 2560 exps per token and layer
     * were a few percent of a decode step. */
    void (*silu_mul)(float *g, const float *u, size_t n);
    /* Attention of one query head over n cached positions (rows of d
     * floats, ld floats apart: one head's slice of the KV cache):
     * attn_scores: s[p] = scale * (k[p] . q); attn_mix: out = scale *
     * sum_p w[p] v[p]. Any d (vector variants mask the last columns). */
    void (*attn_scores)(const float *k, size_t ld, int n, int d, const float *q, float scale,
                        float *s);
    void (*attn_mix)(const float *v, size_t ld, int n, int d, const float *w, float scale,
                     float *out);
    /* The softmax's exponentials: s[p] = exp(s[p] - mx) (mx >= every
     * finite s[p]; -inf gives exactly 0), returns their sum. Exp as in
     * silu_mul. */
    float (*exp_shift)(float *s, int n, float mx);
    /* An f16 K/V cache (t2_model.kv_f16): f16_store rounds x to f16 as
     * t2_f32_to_f16 does (nearest even) but saturates at +-65504 instead
     * of overflowing to infinity (NaN stays NaN), F16C in the vector
     * variants, bit-identical to the scalar one; attn_scores_f16 and
     * attn_mix_f16 are attn_scores and attn_mix on f16 rows, widened as
     * they are loaded. */
    void (*f16_store)(const float *x, size_t n, uint16_t *out);
    void (*attn_scores_f16)(const uint16_t *k, size_t ld, int n, int d, const float *q, float scale,
                            float *s);
    void (*attn_mix_f16)(const uint16_t *v, size_t ld, int n, int d, const float *w, float scale,
                         float *out);
    /* Attention of up to T2_ATTN_LANES queries that read the same keys
     * and values (a few rows of a prompt times the query heads of one kv
     * head), each query one lane of a 16-float vector: qt[c * 16 + j] is
     * column c of query j times the score scale (lanes nq.. zero, qt
     * 64-byte aligned). Query j attends to the keys p < n[j] except
     * [gap_from, gap_to), and its d outputs go to out[j]: what
     * attn_scores, exp_shift (from the largest score) and attn_mix (times
     * one over the sum) give per query, with each key and value read
     * once for all of them and no horizontal sums. s: scratch of 16
     * floats per key up to the largest n[j], 64-byte aligned; d <=
     * T2_ATTN_MAX_D. */
    void (*attn16)(const float *k, const float *v, size_t ld, int d, const float *qt, int nq,
                   const int *n, int gap_from, int gap_to, float *s, float *const *out);
    void (*attn16_f16)(const uint16_t *k, const uint16_t *v, size_t ld, int d, const float *qt,
                       int nq, const int *n, int gap_from, int gap_to, float *s, float *const *out);
    /* Not a kernel: the most rows of X for which a q8_0 model's adapted
     * matrices go through the rotated form (W and the square factor,
     * forward_layers.c) instead of U diag(s) Vt. The rotated form reads
     * fewer bytes but multiplies more: W in int8 plus 2 r^2 bf16
     * products per row. Where bf16 products run on AMX tiles and int8
     * ones on VNNI, U diag(s) Vt is faster from 8 rows on (device Xeon,
     * mixed batch of 8: 202-212 tok/s against 137-148 rotated). 16: every
     * decode-sized product (forward_internal.h, T2_KERNEL_ROWS). */
    int rotate_rows;
    /* Not a kernel: rows of X per call in a prompt's q8_0 and bf16 x
     * bf16 products (forward_layers.c: matmul_q8_blocks, matmul_x16_rows):
     * 16; 64 for amx, whose tiles read (bf16) or transpose (int8) the
     * weights once per call for all the rows of X they are given. */
    int prompt_rows;
    /* Not a kernel: 1 where a q8_0 model's rotation multiplies by Q8_0
     * copies of the square factor and of its transpose
     * (t2_svf_matrix.rot_q8, built with the factors) instead of reading
     * the bf16 one down its rows and then down its columns. Where int8
     * products are much faster than bf16 ones (VNNI without AVX512-BF16)
     * the bf16 rotation ran at ~25 GMAC/s a core and took 28 of a 70 ms
     * mixed step (Ice Lake, docs/PERFORMANCE.md); with vdpbf16ps the bf16
     * rotation was as fast (dev EPYC, stop 23). The Q8_0 copies cost
     * 2.1 r^2 bytes per matrix (188 MB for smollm2-360m's MLP) and round
     * X and dz . (Vt X) to Q8_0: logits after a decoded token 5.6e-3 of
     * the f32 reference (5.9e-3 with the bf16 rotation) against 7.0e-3
     * for a materialised Q8_0 set (seedling). With the copies, prompts
     * rotate too (forward_layers.c, rotates()). */
    int rotate_q8;
    /* A bf16 model's prompt: bf16() for many rows of x and a block of
     * weight rows that stays in L2 (forward_layers.c passes 64), every
     * weight row read once per 8 rows of x (avx512: x de-interleaved so
     * that 32 weights widen in 2 operations, kernels_avx512.c); sums in
     * another order than bf16(), within float rounding. NULL where a
     * bf16 prompt widens its weights for sgemm instead (in passes of 512
     * rows, forward.c): on Sapphire Rapids (amx) the bf16 tile kernel
     * gave no gain at 8 threads and a loss at 2 (docs/PERFORMANCE.md,
     * stop 25). */
    void (*bf16_prompt)(const uint16_t *w, size_t ldw, int rows, int cols, const float *x, int n,
                        float *y, size_t ldy);
    /* Not a kernel: an f32 prompt, or a bf16 one where bf16_prompt is
     * NULL, of up to this many rows runs on f32() / bf16(), T2_KERNEL_ROWS
     * rows of X at a time over L2-sized blocks of W, rather than on sgemm,
     * which packs all of W per call (for a few rows of X as costly as the
     * products). 64 for the AVX-512 variants: smollm2-360m prefill of 24 /
     * 64 tokens, device Xeon, 8 threads, f32 396-427 / 536-649 -> 472-631
     * / 571-777 tok/s, bf16 (amx) 389-459 / 519-578 -> 617-710 / 620-825;
     * Ice Lake, 2 threads, f32 111 / 163-192 -> 143-154 / 180-223; at 192
     * tokens sgemm was ahead. 0 for avx2, whose 2 x 4 tiles lost to sgemm
     * (device Xeon, 2 threads, f32 64 tokens: 248-259 -> 109-112; bf16
     * 193-223 -> 143-145) and for scalar. */
    int short_prompt_rows;
    /* Y += A · B with A of few columns (a rank-k update): y[i][c] +=
     * sum_p a[i][p] b[p][c] for i < n, c < cols; A [n][k] packed, B's and
     * Y's rows ldb and ldy floats apart. A never-seen mixture's q8_0 prompt
     * adds its float32 first block of singular values with it
     * (forward_layers.c). */
    void (*rank_add)(const float *a, int n, int k, const float *b, size_t ldb, int cols, float *y,
                     size_t ldy);
} t2_kernels;

#define T2_ATTN_LANES 16
#define T2_ATTN_MAX_D 256

/* The F16C f16_store (kernels_avx2.c), shared by every vector variant. */
void t2_f16_store_f16c(const float *x, size_t n, uint16_t *out);
/* The scalar rank_add (kernels_scalar.c), also avx2's: no path of that
 * variant adds a rank-k update (its rotate_q8 is 0). */
void t2_rank_add_scalar(const float *a, int n, int k, const float *b, size_t ldb, int cols,
                        float *y, size_t ldy);

/* The variant in use: the best the CPU supports, or T2_KERNELS's choice
 * (an unknown or unsupported name falls back to the best, with a warning
 * on stderr). Chosen once, thread-safe. */
const t2_kernels *t2_kernels_get(void);
/* A named variant ("scalar", "avx2", "avx512", "avx512bf16", "amx") if this CPU
 * supports it, else NULL (for tests and benchmarks). */
const t2_kernels *t2_kernels_variant(const char *name);
/* The name of variant i (0: scalar, then the others in that order) whether
 * or not this CPU supports it; NULL past the last. */
const char *t2_kernels_variant_name(int i);

/* The Q8_0 row layout's groups (see t2_wmat): a row of nb blocks has
 * t2_q8_0_groups(nb) groups; group g starts at t2_q8_0_group_offset(g)
 * and has t2_q8_0_group_blocks blocks; block b's scale is at
 * t2_q8_0_row_scale. */
#define T2_Q8_0_GROUP 16
static inline int t2_q8_0_groups(int nb)
{
    return (nb + T2_Q8_0_GROUP - 1) / T2_Q8_0_GROUP;
}
static inline size_t t2_q8_0_group_offset(int g)
{
    return (size_t)g * T2_Q8_0_GROUP * T2_Q8_0_BYTES;
}
static inline int t2_q8_0_group_blocks(int nb, int g)
{
    int left = nb - g * T2_Q8_0_GROUP;
    return left < T2_Q8_0_GROUP ? left : T2_Q8_0_GROUP;
}
/* Bit j set for each block j that group g of a row of nb blocks has (a
 * lane mask for the vector kernels). */
static inline unsigned t2_q8_0_group_lanes(int nb, int g)
{
    return (1u << t2_q8_0_group_blocks(nb, g)) - 1u;
}
static inline const uint8_t *t2_q8_0_row_scale(const uint8_t *row, int nb, int b)
{
    int g = b / T2_Q8_0_GROUP;
    return row + t2_q8_0_group_offset(g) + (size_t)t2_q8_0_group_blocks(nb, g) * T2_Q8_0_BLOCK +
           (size_t)(b % T2_Q8_0_GROUP) * 2;
}
/* The 32 quants of block b of a row of nb blocks, into q. */
void t2_q8_0_row_get(const uint8_t *row, int nb, int b, int8_t *q);
/* GGUF Q8_0 block blk (34 bytes) as block b of a row of nb blocks. */
void t2_q8_0_row_put(uint8_t *row, int nb, int b, const uint8_t *blk);
/* One row of GGUF Q8_0 blocks (nb of them) into the row layout above. */
void t2_q8_0_row_from_blocks(const uint8_t *blocks, int nb, uint8_t *row);
/* Quantised x in the weights' group order (not offset by 128): each
 * group of 16 blocks takes 512 bytes (T2_Q8_0_GROUP_X), and value k of
 * block b is at t2_q8_0_x_offset(b, k): the 4 bytes at 512 g + 64 u + 4 j
 * are values 4u..4u+3 of block 16 g + j, as the weights' quants. */
#define T2_Q8_0_GROUP_X (T2_Q8_0_GROUP * T2_Q8_0_BLOCK)
static inline size_t t2_q8_0_x_offset(int b, int k)
{
    return (size_t)(b / T2_Q8_0_GROUP) * T2_Q8_0_GROUP_X + (size_t)(64 * (k / 4)) +
           (size_t)(4 * (b % T2_Q8_0_GROUP) + k % 4);
}
size_t t2_q8_act_row_bytes(int cols);
/* Rows i0.. of a quantised X of cols columns, as a t2_q8_act of its own. */
static inline t2_q8_act t2_q8_act_rows(const t2_q8_act *a, int cols, int i0)
{
    size_t nb = (size_t)(cols / T2_Q8_0_BLOCK);
    return (t2_q8_act){a->q + (size_t)i0 * t2_q8_act_row_bytes(cols), a->d + (size_t)i0 * nb,
                       a->sum + (size_t)i0 * nb};
}

/* Quantises n rows of x (cols % 32 == 0) as ggml's quantize_row_q8_0
 * (the values and scales), in the layout of t2_q8_act. */
void t2_q8_act_quantize(const float *x, int n, int cols, t2_q8_act *out);

/* Rows [r0, r1) of Y = X·Wᵀ into y + r0 (row i of Y at y + i * ldy).
 * xq: X quantised, needed for Q8_0 weights only. */
void t2_wmat_mul(const t2_kernels *k, const t2_wmat *w, int r0, int r1, const float *x,
                 const t2_q8_act *xq, int n, float *y, size_t ldy);
/* Row r of W as float32. */
void t2_wmat_row_f32(const t2_wmat *w, int r, float *dst);

/* The variants (kernels_scalar.c, kernels_avx2.c, kernels_avx512.c,
 * kernels_amx.c). */
extern const t2_kernels t2_kernels_scalar;
extern const t2_kernels t2_kernels_avx2;
extern const t2_kernels t2_kernels_avx512;
extern const t2_kernels t2_kernels_avx512bf16; /* avx512 with AVX512-BF16's dot product */
extern const t2_kernels t2_kernels_amx; /* avx512bf16 with AMX tiles for bf16_x16 (kernels_amx.c) */

#endif
