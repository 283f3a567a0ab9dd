/* What the AMX kernels (kernels_amx.c: bf16 tiles, kernels_amx_q8.c:
 * int8 tiles) share: the target, the tile configuration's layout and a
 * 16 x 16 transpose of 32-bit values in registers. */
#ifndef T2_KERNELS_AMX_H
#define T2_KERNELS_AMX_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels.h"

#define TARGET_AMX                                                                                 \
    __attribute__((target("amx-tile,amx-bf16,amx-int8,avx512f,avx512bw,avx512vl,avx512bf16,"       \
                          "f16c")))

/* LDTILECFG's 64 bytes, palette 1: per tile its rows and bytes per row. */
typedef struct t2_tile_config {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} t2_tile_config;

/* r[k] = element k of every r[t] (a 16 x 16 transpose of 32-bit values):
 * rows interleaved by 32 bits, then by 64, then 128-bit lanes gathered in
 * two steps. */
TARGET_AMX static inline void t2_transpose16(__m512i r[16])
{
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
}

/* Q8_0 weights times quantised X on int8 tiles (kernels_amx_q8.c): the
 * q8_0 entry's contract (kernels.h) for rows % 16 == 0, any number of
 * rows of X (64 per pass over the weights). */
void t2_q8_0_amx_tiles(const uint8_t *w, size_t ldw, int rows, int cols, const t2_q8_act *x, int n,
                       float *y, size_t ldy);

#endif
