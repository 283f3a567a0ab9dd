/* A software model of the AMX tile instructions that kernels_amx.c and
 * kernels_amx_q8.c use, so that their logic (X packed or unpacked,
 * weights transposed into tiles, scales, chunks, short groups, the rows
 * left to avx512bf16) is tested on CPUs without AMX, such as CI's:
 * test_amx_emulated compiles both files a second time with this header
 * forced in first (-include), which replaces the tile intrinsics by the
 * functions below. The real instructions are tested on a CPU that has
 * them (test_kernels' test_amx). Test-only: the tile registers are a
 * thread-local here, as they are per thread in hardware. */
#ifndef T2_AMX_EMULATE_H
#define T2_AMX_EMULATE_H

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct amx_emulated_tiles {
    int rows[8], colsb[8];
    uint8_t data[8][16][64];
} amx_emulated_tiles;

static __thread amx_emulated_tiles amx_emu;

/* LDTILECFG: palette 1's bytes per row at 16 + 2 t, rows at 48 + t. */
static inline void amx_emu_config(const void *cfg)
{
    const uint8_t *p = cfg;
    if (p[0] != 1)
        abort();
    for (int t = 0; t < 8; t++) {
        amx_emu.colsb[t] = p[16 + 2 * t] | p[17 + 2 * t] << 8;
        amx_emu.rows[t] = p[48 + t];
        if (amx_emu.colsb[t] > 64 || amx_emu.rows[t] > 16)
            abort();
    }
}

static inline void amx_emu_load(int t, const void *base, long stride)
{
    memset(amx_emu.data[t], 0, sizeof amx_emu.data[t]);
    for (int r = 0; r < amx_emu.rows[t]; r++)
        memcpy(amx_emu.data[t][r], (const char *)base + r * stride, (size_t)amx_emu.colsb[t]);
}

static inline void amx_emu_store(int t, void *base, long stride)
{
    for (int r = 0; r < amx_emu.rows[t]; r++)
        memcpy((char *)base + r * stride, amx_emu.data[t][r], (size_t)amx_emu.colsb[t]);
}

static inline void amx_emu_zero(int t)
{
    memset(amx_emu.data[t], 0, sizeof amx_emu.data[t]);
}

/* A tile product's shapes as the CPU demands them: a's bytes per row are
 * 4 per row of b, a and c have as many rows, b and c as many bytes. */
static inline void amx_emu_check_shapes(int c, int a, int b)
{
    if (amx_emu.colsb[a] != 4 * amx_emu.rows[b] || amx_emu.rows[a] != amx_emu.rows[c] ||
        amx_emu.colsb[b] != amx_emu.colsb[c])
        abort();
}

/* TDPBSSD c, a, b: c[m][n] += sum over k, i of a[m][4k + i] * b[k][4n + i],
 * signed bytes, int32 sums. */
static inline void amx_emu_dpbssd(int c, int a, int b)
{
    amx_emu_check_shapes(c, a, b);
    for (int m = 0; m < amx_emu.rows[c]; m++)
        for (int n = 0; n < amx_emu.colsb[c] / 4; n++) {
            int32_t sum;
            memcpy(&sum, &amx_emu.data[c][m][4 * n], 4);
            for (int k = 0; k < amx_emu.colsb[a] / 4; k++)
                for (int i = 0; i < 4; i++)
                    sum += (int8_t)amx_emu.data[a][m][4 * k + i] *
                           (int8_t)amx_emu.data[b][k][4 * n + i];
            memcpy(&amx_emu.data[c][m][4 * n], &sum, 4);
        }
}

/* TDPBF16PS c, a, b: c[m][n] += sum over k of the pairs a[m][2k + i] *
 * b[k][2n + i] (bf16, i = 0, 1), float sums (each product exact). */
static inline float amx_emu_bf16(const uint8_t *p)
{
    uint32_t u = (uint32_t)(p[0] | p[1] << 8) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline void amx_emu_dpbf16ps(int c, int a, int b)
{
    amx_emu_check_shapes(c, a, b);
    for (int m = 0; m < amx_emu.rows[c]; m++)
        for (int n = 0; n < amx_emu.colsb[c] / 4; n++) {
            float sum;
            memcpy(&sum, &amx_emu.data[c][m][4 * n], 4);
            for (int k = 0; k < amx_emu.colsb[a] / 4; k++)
                for (int i = 0; i < 2; i++)
                    sum += amx_emu_bf16(&amx_emu.data[a][m][4 * k + 2 * i]) *
                           amx_emu_bf16(&amx_emu.data[b][k][4 * n + 2 * i]);
            memcpy(&amx_emu.data[c][m][4 * n], &sum, 4);
        }
}

#undef _tile_loadconfig
#undef _tile_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbssd
#undef _tile_release
#undef _tile_dpbf16ps
#define _tile_loadconfig(cfg) amx_emu_config(cfg)
#define _tile_loadd(t, base, stride) amx_emu_load(t, base, (long)(stride))
#define _tile_stored(t, base, stride) amx_emu_store(t, base, (long)(stride))
#define _tile_zero(t) amx_emu_zero(t)
#define _tile_dpbssd(c, a, b) amx_emu_dpbssd(c, a, b)
#define _tile_release() ((void)0)
#define _tile_dpbf16ps(c, a, b) amx_emu_dpbf16ps(c, a, b)

#endif
