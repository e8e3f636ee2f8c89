/* kern_amx.c - the AMX kernels of the inference engine (built with -mamx-tile -mamx-bf16
 * -mavx512f; chosen at run time when CPUID reports AMX-TILE and AMX-BF16 and Linux grants the
 * tile state, src/core/cpu_amx.c). bf16x3 convolution GEMM blocks on the tiles, and the epilogues
 * (bias, ReLU, the hi/lo split) on AVX-512. kern_amx_ref.c is the plain-C twin; amx_impl.h
 * describes the operands.
 *
 * Tiles (ops/x86/amx_tiles_impl.h): 0-1 the sums of two 16-channel output tiles, 2-3 A hi/lo,
 * 4-5 and 6-7 B hi/lo of each output tile. A product costs the same whatever the rows used
 * (measured: ~4.4 ns per 16x16x32 product on the 2026-12 Xeon with 16, 14, 8 or 7 rows), so
 * the engine keeps all 16 rows busy where it can.
 */
#include <immintrin.h>

#include "amx_impl.h"
#include "ops/x86/amx_tiles_impl.h"

/* Steps per chunk: a chunk's B tiles (4 KiB per step for two output tiles) stay in L1 while
 * the call's nm blocks run through it; the sums go to c and come back between chunks. 6 against
 * 3 and 12: A0 at batch 1 on 1 thread 5.11-5.17 against 5.32-5.35 and 5.40-5.60 ms. */
enum { KC = 6 };

static void gemm_amx(const rvg__amx_gemm *g, float *c) {
    const int64_t ab = g->astride * 2, ks = g->ks;
    const uint16_t *bh = g->bh, *bl = g->bl;
    for (int64_t s0 = 0; s0 < ks; s0 += KC) {
        const int64_t s1 = s0 + KC < ks ? s0 + KC : ks;
        for (int m = 0; m < g->nm; m++) {
            const uint16_t *ah = g->ah[m], *al = g->al[m];
            float *cm = c + m * g->nt * 256;
            if (g->nt == 2) {
                if (s0 == 0) {
                    _tile_zero(0);
                    _tile_zero(1);
                } else {
                    _tile_loadd(0, cm, 64);
                    _tile_loadd(1, cm + 256, 64);
                }
                for (int64_t s = s0; s < s1; s++)
                    rvg__tiles_step2(ah + g->aoff[s], al + g->aoff[s], ab, bh + s * 512,
                                     bl + s * 512, bh + (ks + s) * 512, bl + (ks + s) * 512);
                _tile_stored(0, cm, 64);
                _tile_stored(1, cm + 256, 64);
            } else {
                if (s0 == 0)
                    _tile_zero(0);
                else
                    _tile_loadd(0, cm, 64);
                for (int64_t s = s0; s < s1; s++)
                    rvg__tiles_step1(ah + g->aoff[s], al + g->aoff[s], ab, bh + s * 512,
                                     bl + s * 512);
                _tile_stored(0, cm, 64);
            }
        }
    }
}

/* hi = bf16(v) rounded to nearest even (as rvg__bf16), lo = bf16(v - hi); both as 16 x 16 bits. */
static inline void split16(__m512 v, __m256i *hi, __m256i *lo) {
    __m512i h, l;
    rvg__split16(v, &h, &l);
    *hi = _mm512_cvtepi32_epi16(h);
    *lo = _mm512_cvtepi32_epi16(l);
}

static void store_amx(const float *c, int nt, const rvg__amx_out *o) {
    const __m512 zero = _mm512_setzero_ps();
    for (int i = 0; i < 16; i++) {
        if (o->off[i] < 0)
            continue;
        for (int j = 0; j < nt; j++) {
            __m512 v = _mm512_add_ps(_mm512_load_ps(c + j * 256 + i * 16),
                                     _mm512_loadu_ps(o->bias + j * 16));
            if (o->relu)
                v = _mm512_max_ps(v, zero);
            int64_t at = o->off[i] + j * 16;
            if (o->of) {
                _mm512_storeu_ps(o->of + at, v);
            } else {
                __m256i h, l;
                split16(v, &h, &l);
                _mm256_storeu_si256((__m256i *)(o->oh + at), h);
                _mm256_storeu_si256((__m256i *)(o->ol + at), l);
            }
        }
    }
}

static void split_amx(const float *x, uint16_t *hi, uint16_t *lo, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        __m256i h, l;
        split16(_mm512_loadu_ps(x + i), &h, &l);
        _mm256_storeu_si256((__m256i *)(hi + i), h);
        _mm256_storeu_si256((__m256i *)(lo + i), l);
    }
}

const rvg__amx_kernels rvg__amx_kernels_amx = {rvg__tiles_configure, gemm_amx, store_amx,
                                               split_amx};
