/* The portable reference kernels: plain C, one float accumulator per
 * output, in column order. Every vector variant is tested against these. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "dtype.h"
#include "kernels.h"

static void f32_scalar(const float *w, size_t ldw, int rows, int cols, const float *x, int n,
                       float *y, size_t ldy)
{
    for (int r = 0; r < rows; r++) {
        const float *wr = (const float *)(const void *)((const char *)w + (size_t)r * ldw);
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * (size_t)cols;
            float s = 0.0f;
            for (int c = 0; c < cols; c++)
                s += wr[c] * xi[c];
            y[(size_t)i * ldy + (size_t)r] = s;
        }
    }
}

static void bf16_scalar(const uint16_t *w, size_t ldw, int rows, int cols, const float *x, int n,
                        float *y, size_t ldy)
{
    for (int r = 0; r < rows; r++) {
        const uint16_t *wr = (const uint16_t *)(const void *)((const char *)w + (size_t)r * ldw);
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * (size_t)cols;
            float s = 0.0f;
            for (int c = 0; c < cols; c++)
                s += t2_bf16_to_f32(wr[c]) * xi[c];
            y[(size_t)i * ldy + (size_t)r] = s;
        }
    }
}

static void bf16_x16_scalar(const uint16_t *w, size_t ldw, int rows, int cols, const uint16_t *x,
                            int n, float *y, size_t ldy)
{
    for (int r = 0; r < rows; r++) {
        const uint16_t *wr = (const uint16_t *)(const void *)((const char *)w + (size_t)r * ldw);
        for (int i = 0; i < n; i++) {
            const uint16_t *xi = x + (size_t)i * (size_t)cols;
            float s = 0.0f;
            for (int c = 0; c < cols; c++)
                s += t2_bf16_to_f32(wr[c]) * t2_bf16_to_f32(xi[c]);
            y[(size_t)i * ldy + (size_t)r] = s;
        }
    }
}

/* As ggml's q8_0 x q8_0 dot: an exact integer sum per block, times the
 * two blocks' scales, accumulated in float. */
static void q8_0_scalar(const uint8_t *w, size_t ldw, int rows, int cols, const t2_q8_act *x, int n,
                        float *y, size_t ldy)
{
    int nb = cols / T2_Q8_0_BLOCK;
    size_t ldq = t2_q8_act_row_bytes(cols);
    for (int r = 0; r < rows; r++) {
        const uint8_t *wr = w + (size_t)r * ldw;
        for (int i = 0; i < n; i++)
            y[(size_t)i * ldy + (size_t)r] = 0.0f;
        for (int b = 0; b < nb; b++) {
            int8_t qw[T2_Q8_0_BLOCK];
            t2_q8_0_row_get(wr, nb, b, qw);
            float dw = t2_f16_to_f32(t2_load_u16(t2_q8_0_row_scale(wr, nb, b)));
            for (int i = 0; i < n; i++) {
                const int8_t *qx = x->q + (size_t)i * ldq + t2_q8_0_x_offset(b, 0);
                int32_t isum = 0;
                for (int u = 0; u < T2_Q8_0_BLOCK / 4; u++) /* t2_q8_0_x_offset(b, 4u + k) */
                    for (int k = 0; k < 4; k++)
                        isum += (int32_t)qw[4 * u + k] * (int32_t)qx[64 * u + k];
                y[(size_t)i * ldy + (size_t)r] += (float)isum * (dw * x->d[(size_t)i * nb + b]);
            }
        }
    }
}

static void bf16_t_scalar(const uint16_t *w, size_t ldw, int rows, int c0, int c1,
                          const uint16_t *x, size_t ldx, int n, float *y, size_t ldy)
{
    for (int i = 0; i < n; i++)
        for (int c = c0; c < c1; c++) {
            float acc = 0.0f;
            for (int k = 0; k < rows; k++) {
                const uint16_t *row =
                    (const uint16_t *)(const void *)((const char *)w + (size_t)k * ldw);
                acc += t2_bf16_to_f32(x[(size_t)i * ldx + (size_t)k]) * t2_bf16_to_f32(row[c]);
            }
            y[(size_t)i * ldy + (size_t)c] = acc;
        }
}

void t2_rank_add_scalar(const float *a, int n, int k, const float *b, size_t ldb, int cols,
                        float *y, size_t ldy)
{
    for (size_t i = 0; i < (size_t)n; i++)
        for (size_t p = 0; p < (size_t)k; p++) {
            float av = a[i * (size_t)k + p];
            for (size_t c = 0; c < (size_t)cols; c++)
                y[i * ldy + c] += av * b[p * ldb + c];
        }
}

static void silu_mul_scalar(float *g, const float *u, size_t n)
{
    for (size_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* Element i of a cache row: floats, or f16 when half. */
static inline float kv_at(const void *row, size_t i, bool half)
{
    return half ? t2_f16_to_f32(((const uint16_t *)row)[i]) : ((const float *)row)[i];
}

static void attn_scores_any(const void *k, size_t ld, int n, int d, const float *q, float scale,
                            float *s, bool half)
{
    for (int p = 0; p < n; p++) {
        float acc = 0.0f;
        for (int c = 0; c < d; c++)
            acc += kv_at(k, (size_t)p * ld + (size_t)c, half) * q[c];
        s[p] = scale * acc;
    }
}

static void attn_mix_any(const void *v, size_t ld, int n, int d, const float *w, float scale,
                         float *out, bool half)
{
    for (int c = 0; c < d; c++)
        out[c] = 0.0f;
    for (int p = 0; p < n; p++)
        for (int c = 0; c < d; c++)
            out[c] += w[p] * kv_at(v, (size_t)p * ld + (size_t)c, half);
    for (int c = 0; c < d; c++)
        out[c] *= scale;
}

static void attn_scores_scalar(const float *k, size_t ld, int n, int d, const float *q, float scale,
                               float *s)
{
    attn_scores_any(k, ld, n, d, q, scale, s, false);
}

static void attn_mix_scalar(const float *v, size_t ld, int n, int d, const float *w, float scale,
                            float *out)
{
    attn_mix_any(v, ld, n, d, w, scale, out, false);
}

static void attn_scores_f16_scalar(const uint16_t *k, size_t ld, int n, int d, const float *q,
                                   float scale, float *s)
{
    attn_scores_any(k, ld, n, d, q, scale, s, true);
}

static void attn_mix_f16_scalar(const uint16_t *v, size_t ld, int n, int d, const float *w,
                                float scale, float *out)
{
    attn_mix_any(v, ld, n, d, w, scale, out, true);
}

static float exp_shift_scalar(float *s, int n, float mx)
{
    float sum = 0.0f;
    for (int p = 0; p < n; p++) {
        s[p] = expf(s[p] - mx);
        sum += s[p];
    }
    return sum;
}

/* The reference for attn16: each lane on its own, as the per-query
 * kernels above do it. */
static void attn16_any(const void *k, const void *v, size_t ld, int d, const float *qt, int nq,
                       const int *n, int gap_from, int gap_to, float *s, float *const *out,
                       bool half)
{
    for (int j = 0; j < nq; j++) {
        float mx = -INFINITY;
        for (int p = 0; p < n[j]; p++) {
            float acc = 0.0f;
            for (int c = 0; c < d; c++)
                acc += kv_at(k, (size_t)p * ld + (size_t)c, half) * qt[T2_ATTN_LANES * c + j];
            if (p >= gap_from && p < gap_to)
                acc = -INFINITY;
            s[p] = acc;
            mx = acc > mx ? acc : mx;
        }
        float inv_sum = 1.0f / exp_shift_scalar(s, n[j], mx);
        attn_mix_any(v, ld, n[j], d, s, inv_sum, out[j], half);
    }
}

static void attn16_scalar(const float *k, const float *v, size_t ld, int d, const float *qt, int nq,
                          const int *n, int gap_from, int gap_to, float *s, float *const *out)
{
    attn16_any(k, v, ld, d, qt, nq, n, gap_from, gap_to, s, out, false);
}

static void attn16_f16_scalar(const uint16_t *k, const uint16_t *v, size_t ld, int d,
                              const float *qt, int nq, const int *n, int gap_from, int gap_to,
                              float *s, float *const *out)
{
    attn16_any(k, v, ld, d, qt, nq, n, gap_from, gap_to, s, out, true);
}

static void f16_store_scalar(const float *x, size_t n, uint16_t *out)
{
    for (size_t i = 0; i < n; i++) {
        float v = x[i] > 65504.0f ? 65504.0f : x[i] < -65504.0f ? -65504.0f : x[i];
        out[i] = t2_f32_to_f16(v);
    }
}

const t2_kernels t2_kernels_scalar = {"scalar",
                                      f32_scalar,
                                      bf16_scalar,
                                      q8_0_scalar,
                                      t2_q8_act_quantize,
                                      bf16_x16_scalar,
                                      bf16_t_scalar,
                                      silu_mul_scalar,
                                      attn_scores_scalar,
                                      attn_mix_scalar,
                                      exp_shift_scalar,
                                      f16_store_scalar,
                                      attn_scores_f16_scalar,
                                      attn_mix_f16_scalar,
                                      attn16_scalar,
                                      attn16_f16_scalar,
                                      16,
                                      16,
                                      0,
                                      NULL,
                                      0,
                                      t2_rank_add_scalar};
