/* amx_tiles_impl.h - what every AMX kernel file shares: the tile configuration (all eight tiles
 * 16 rows x 64 bytes), loading it once per thread, and the bf16 hi/lo split of 16 floats on
 * AVX-512 (the vector form of rvg__bf16_split, same bits). Only for files built with -mamx-tile
 * -mamx-bf16 -mavx512f: src/infer/kern_amx.c and src/ops/x86/conv2d_gemm_amx.c.
 */
#ifndef RVG_OPS_X86_AMX_TILES_IMPL_H
#define RVG_OPS_X86_AMX_TILES_IMPL_H

#include <immintrin.h>
#include <stdint.h>

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} rvg__tile_config;

/* A static object: GCC 12 drops the stores into a local configuration before _tile_loadconfig
 * (it does not see the instruction read them). */
static const _Alignas(64) rvg__tile_config rvg__tile_config_16x64 = {
    .palette = 1,
    .colsb = {64, 64, 64, 64, 64, 64, 64, 64},
    .rows = {16, 16, 16, 16, 16, 16, 16, 16},
};

/* The tile configuration is per thread (part of its saved state): load it once per thread. Each
 * file that includes this keeps its own flag; all load the same configuration. */
static _Thread_local int rvg__tiles_configured;

static inline void rvg__tiles_configure(void) {
    if (rvg__tiles_configured)
        return;
    _tile_loadconfig(&rvg__tile_config_16x64);
    rvg__tiles_configured = 1;
}

/* hi = bf16(v) rounded to nearest even, lo = bf16(v - hi), each in the low 16 bits of a 32-bit
 * lane (upper bits zero). */
static inline void rvg__split16(__m512 v, __m512i *hi, __m512i *lo) {
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    __m512i u = _mm512_castps_si512(v);
    u = _mm512_add_epi32(u,
                         _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
    const __m512i h = _mm512_srli_epi32(u, 16);
    const __m512 r = _mm512_sub_ps(v, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
    __m512i w = _mm512_castps_si512(r);
    w = _mm512_add_epi32(w,
                         _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(w, 16), one)));
    *hi = h;
    *lo = _mm512_srli_epi32(w, 16);
}

/* One 32-value step of bf16x3 on the tiles: tile 0 (and tile 1 with two column tiles) += A times
 * the B tile(s), in three products hi hi, hi lo, lo hi. A: 16 rows of 32 bf16 at ah/al, `as`
 * bytes apart (tiles 2, 3); B: 16 rows of 64 bytes at bh0/bl0 (tiles 4, 5) and bh1/bl1 (tiles 6,
 * 7). The kernels keep the sums in tiles 0-1 across steps. */
static inline void rvg__tiles_step2(const uint16_t *ah, const uint16_t *al, int64_t as,
                                    const uint16_t *bh0, const uint16_t *bl0, const uint16_t *bh1,
                                    const uint16_t *bl1) {
    _tile_loadd(2, ah, as);
    _tile_loadd(4, bh0, 64);
    _tile_loadd(5, bl0, 64);
    _tile_loadd(6, bh1, 64);
    _tile_loadd(7, bl1, 64);
    _tile_loadd(3, al, as);
    _tile_dpbf16ps(0, 2, 4);
    _tile_dpbf16ps(1, 2, 6);
    _tile_dpbf16ps(0, 2, 5);
    _tile_dpbf16ps(1, 2, 7);
    _tile_dpbf16ps(0, 3, 4);
    _tile_dpbf16ps(1, 3, 6);
}
static inline void rvg__tiles_step1(const uint16_t *ah, const uint16_t *al, int64_t as,
                                    const uint16_t *bh0, const uint16_t *bl0) {
    _tile_loadd(2, ah, as);
    _tile_loadd(4, bh0, 64);
    _tile_loadd(5, bl0, 64);
    _tile_loadd(3, al, as);
    _tile_dpbf16ps(0, 2, 4);
    _tile_dpbf16ps(0, 2, 5);
    _tile_dpbf16ps(0, 3, 4);
}

#endif
