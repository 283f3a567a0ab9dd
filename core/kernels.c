/* Kernel dispatch (chosen once per process) and the helpers around the
 * kernels: weight formats, activation quantisation, row ranges. */
#include "kernels.h"

#include <cpuid.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dtype.h"

const char *t2_wtype_name(t2_wtype t)
{
    switch (t) {
    case T2_W_F32: return "f32";
    case T2_W_BF16: return "bf16";
    case T2_W_Q8_0: return "q8_0";
    }
    return "?";
}

int t2_wtype_parse(const char *s, t2_wtype *t, t2_err *err)
{
    static const t2_wtype all[] = {T2_W_F32, T2_W_BF16, T2_W_Q8_0};
    for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(s, t2_wtype_name(all[i])) == 0) {
            *t = all[i];
            return 0;
        }
    }
    return t2_err_set(err, "invalid weight format '%.100s' (expected f32, bf16 or q8_0)",
                      s ? s : "");
}

size_t t2_wtype_row_bytes(t2_wtype t, int cols)
{
    switch (t) {
    case T2_W_BF16: return (size_t)cols * 2;
    case T2_W_Q8_0: return (size_t)cols / T2_Q8_0_BLOCK * T2_Q8_0_BYTES;
    default: return (size_t)cols * 4;
    }
}

/* ---- variant selection ---- */

/* F16C from cpuid directly: clang 14's __builtin_cpu_supports has no "f16c" */
static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

static int cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
}

static int cpu_has_avx512(void)
{
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
}

/* AVX512-BF16 from cpuid leaf 7, subleaf 1 (EAX bit 5) */
static int cpu_has_avx512bf16(void)
{
    unsigned a, b, c, d;
    return cpu_has_avx512() && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
}

/* AMX-TILE, AMX-BF16 and AMX-INT8 (cpuid leaf 7, EDX bits 24, 22, 25), the tile
 * state enabled by the OS (XCR0 bits 17, 18), and Linux's permission for
 * this process to use it (arch_prctl ARCH_REQ_XCOMP_PERM, Linux 5.16+;
 * asking again is harmless). */
static int cpu_has_amx(void)
{
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    unsigned a, b, c, d;
    if (!cpu_has_avx512bf16() || !__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) ||
        !(d & (1u << 24)) || !(d & (1u << 25)))
        return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
        return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    if ((xcr0_lo & (3u << 17)) != (3u << 17))
        return 0;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

static int cpu_any(void)
{
    return 1;
}

/* Every variant, from the portable reference up, and what it needs. */
static const struct {
    const t2_kernels *kernels;
    int (*supported)(void);
} variants[] = {
    {&t2_kernels_scalar, cpu_any},        {&t2_kernels_avx2, cpu_has_avx2},
    {&t2_kernels_avx512, cpu_has_avx512}, {&t2_kernels_avx512bf16, cpu_has_avx512bf16},
    {&t2_kernels_amx, cpu_has_amx},
};

const char *t2_kernels_variant_name(int i)
{
    return i >= 0 && i < (int)(sizeof variants / sizeof variants[0]) ? variants[i].kernels->name
                                                                     : NULL;
}

const t2_kernels *t2_kernels_variant(const char *name)
{
    for (size_t i = 0; name && i < sizeof variants / sizeof variants[0]; i++)
        if (strcmp(name, variants[i].kernels->name) == 0)
            return variants[i].supported() ? variants[i].kernels : NULL;
    return NULL;
}

/* The one piece of global mutable state: written once under pthread_once. */
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;
static const t2_kernels *chosen;

static void choose(void)
{
    /* AMX tiles: bf16 x bf16 with 16 rows of X at 180-280 GMAC/s a core
     * in cache, 92-194 from memory, against 28-41 for vdpbf16ps on the
     * Sapphire Rapids Xeon we measure (a q8_0 model's never-seen-mixture
     * prefill 1.6-1.75 -> 0.83-0.90 of the base's time). vdpbf16ps:
     * twice the widening kernels' rate on AMD Zen 4 (bf16 x bf16, one core
     * in cache: 100-105 vs 54 GMAC/s); on that Xeon it is no faster, and
     * no slower, than widening X for the bf16 kernel */
    const t2_kernels *best = cpu_has_amx()          ? &t2_kernels_amx
                             : cpu_has_avx512bf16() ? &t2_kernels_avx512bf16
                             : cpu_has_avx512()     ? &t2_kernels_avx512
                             : cpu_has_avx2()       ? &t2_kernels_avx2
                                                    : &t2_kernels_scalar;
    const char *want = getenv("T2_KERNELS");
    chosen = best;
    if (want && *want) {
        const t2_kernels *k = t2_kernels_variant(want);
        if (k)
            chosen = k;
        else
            fprintf(stderr, "t2: T2_KERNELS=%s not available here, using %s\n", want, best->name);
    }
}

const t2_kernels *t2_kernels_get(void)
{
    pthread_once(&chosen_once, choose);
    return chosen;
}

/* ---- helpers ---- */

size_t t2_q8_act_row_bytes(int cols)
{
    return (size_t)t2_q8_0_groups(cols / T2_Q8_0_BLOCK) * T2_Q8_0_GROUP_X;
}

int t2_q8_act_alloc(t2_q8_act *a, int n, int cols)
{
    size_t nb = (size_t)n * (size_t)(cols / T2_Q8_0_BLOCK) + 1;
    size_t qb = (size_t)n * t2_q8_act_row_bytes(cols);
    a->q = aligned_alloc(64, qb + 64); /* qb is whole 512-byte groups; + 64: never 0 */
    a->d = malloc(nb * sizeof *a->d);
    a->sum = malloc(nb * sizeof *a->sum);
    if (!a->q || !a->d || !a->sum) {
        t2_q8_act_free(a);
        return -1;
    }
    return 0;
}

void t2_q8_act_free(t2_q8_act *a)
{
    free(a->q);
    free(a->d);
    free(a->sum);
    a->q = NULL, a->d = NULL, a->sum = NULL;
}

void t2_q8_act_quantize(const float *x, int n, int cols, t2_q8_act *out)
{
    int nb = cols / T2_Q8_0_BLOCK;
    size_t ldq = t2_q8_act_row_bytes(cols);
    for (int i = 0; i < n; i++) {
        const float *xr = x + (size_t)i * (size_t)cols;
        int8_t *q = out->q + (size_t)i * ldq;
        float *d = out->d + (size_t)i * (size_t)nb;
        int32_t *sum = out->sum + (size_t)i * (size_t)nb;
        if (nb % T2_Q8_0_GROUP) /* the short last group's missing lanes */
            memset(q + ldq - T2_Q8_0_GROUP_X, 0, T2_Q8_0_GROUP_X);
        for (int b = 0; b < nb; b++) {
            const float *v = xr + b * T2_Q8_0_BLOCK;
            float amax = 0.0f;
            for (int k = 0; k < T2_Q8_0_BLOCK; k++)
                amax = fmaxf(amax, fabsf(v[k]));
            float db = amax / 127.0f;
            float id = db != 0.0f ? 1.0f / db : 0.0f;
            d[b] = t2_f16_to_f32(t2_f32_to_f16(db)); /* the block stores d as f16 */
            sum[b] = 0;
            for (int k = 0; k < T2_Q8_0_BLOCK; k++) {
                int8_t qk = (int8_t)roundf(v[k] * id);
                q[t2_q8_0_x_offset(b, k)] = qk;
                sum[b] += qk;
            }
        }
    }
}

void t2_wmat_mul(const t2_kernels *k, const t2_wmat *w, int r0, int r1, const float *x,
                 const t2_q8_act *xq, int n, float *y, size_t ldy)
{
    if (r0 >= r1)
        return;
    const char *base = (const char *)w->data + (size_t)r0 * w->stride;
    switch (w->type) {
    case T2_W_F32:
        k->f32((const float *)(const void *)base, w->stride, r1 - r0, w->cols, x, n, y + r0, ldy);
        break;
    case T2_W_BF16:
        k->bf16((const uint16_t *)(const void *)base, w->stride, r1 - r0, w->cols, x, n, y + r0,
                ldy);
        break;
    case T2_W_Q8_0:
        k->q8_0((const uint8_t *)base, w->stride, r1 - r0, w->cols, xq, n, y + r0, ldy);
        break;
    }
}

void t2_wmat_row_f32(const t2_wmat *w, int r, float *dst)
{
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->stride;
    switch (w->type) {
    case T2_W_F32: memcpy(dst, row, (size_t)w->cols * sizeof(float)); break;
    case T2_W_BF16:
        for (int c = 0; c < w->cols; c++)
            dst[c] = t2_bf16_to_f32(t2_load_u16(row + 2 * c));
        break;
    case T2_W_Q8_0: {
        int nb = w->cols / T2_Q8_0_BLOCK;
        int8_t q[T2_Q8_0_BLOCK];
        for (int b = 0; b < nb; b++) {
            t2_q8_0_row_get(row, nb, b, q);
            float d = t2_f16_to_f32(t2_load_u16(t2_q8_0_row_scale(row, nb, b)));
            for (int i = 0; i < T2_Q8_0_BLOCK; i++)
                dst[b * T2_Q8_0_BLOCK + i] = d * (float)q[i];
        }
        break;
    }
    }
}

/* Where quants 4u..4u+3 of block b are in a row of nb blocks. */
static size_t q8_0_quad_offset(int nb, int b, int u)
{
    int g = b / T2_Q8_0_GROUP;
    return t2_q8_0_group_offset(g) + (size_t)(4 * t2_q8_0_group_blocks(nb, g) * u) +
           (size_t)(4 * (b % T2_Q8_0_GROUP));
}

void t2_q8_0_row_get(const uint8_t *row, int nb, int b, int8_t *q)
{
    const uint8_t *p = row + q8_0_quad_offset(nb, b, 0);
    size_t step = 4 * (size_t)t2_q8_0_group_blocks(nb, b / T2_Q8_0_GROUP);
    for (int u = 0; u < T2_Q8_0_BLOCK / 4; u++, p += step)
        for (int k = 0; k < 4; k++)
            q[4 * u + k] = (int8_t)(p[k] ^ 0x80u);
}

void t2_q8_0_row_put(uint8_t *row, int nb, int b, const uint8_t *blk)
{
    for (int u = 0; u < T2_Q8_0_BLOCK / 4; u++) {
        uint8_t *p = row + q8_0_quad_offset(nb, b, u);
        for (int k = 0; k < 4; k++)
            p[k] = (uint8_t)(blk[2 + 4 * u + k] ^ 0x80u);
    }
    memcpy(row + (t2_q8_0_row_scale(row, nb, b) - row), blk, 2);
}

void t2_q8_0_row_from_blocks(const uint8_t *blocks, int nb, uint8_t *row)
{
    for (int b = 0; b < nb; b++)
        t2_q8_0_row_put(row, nb, b, blocks + (size_t)b * T2_Q8_0_BYTES);
}
