/* conv2d_gemm_amx.c - the AMX kernels of the bf16x3 training GEMM (gemm_bf16x3_impl.h): 16 x 32
 * blocks of C on the tiles, and AVX-512 packers that split fp32 operands into bf16 hi/lo.
 *
 * Built with -mamx-tile -mamx-bf16 -mavx512f; gemm.c hands out this kernel set only where
 * rvg__amx_usable() says the CPU and the OS run AMX tiles. The plain-C kernels of gemm_bf16x3.c
 * are the twin; the packers here write the same bits as the C packers (the split rounds to
 * nearest even in both).
 *
 * Tiles (amx_tiles_impl.h: all 16 rows x 64 bytes): 0-1 the sums of two 16-column tiles of C,
 * 2-3 A hi/lo, 4-5 and 6-7 B hi/lo of each column tile.
 */
#include <immintrin.h>

#include "ops/gemm_bf16x3_impl.h"
#include "ops/x86/amx_tiles_impl.h"

static void kernel_amx(int64_t ks, const uint16_t *ah, const uint16_t *al, const uint16_t *bh,
                       const uint16_t *bl, int64_t tstride, float *c, int64_t ldc, int nt,
                       int beta_one) {
    rvg__tiles_configure();
    const int64_t cs = ldc * 4;
    if (nt == 2) {
        if (beta_one) {
            _tile_loadd(0, c, cs);
            _tile_loadd(1, c + 16, cs);
        } else {
            _tile_zero(0);
            _tile_zero(1);
        }
        for (int64_t s = 0; s < ks; s++)
            rvg__tiles_step2(ah + s * 512, al + s * 512, 64, bh + s * 512, bl + s * 512,
                             bh + tstride + s * 512, bl + tstride + s * 512);
        _tile_stored(0, c, cs);
        _tile_stored(1, c + 16, cs);
    } else {
        if (beta_one)
            _tile_loadd(0, c, cs);
        else
            _tile_zero(0);
        for (int64_t s = 0; s < ks; s++)
            rvg__tiles_step1(ah + s * 512, al + s * 512, 64, bh + s * 512, bl + s * 512);
        _tile_stored(0, c, cs);
    }
}

/* The 16 x 16 matrix of 32-bit words r[0..15] (row i = r[i]) transposed in place. */
static inline void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) { /* 2x2 blocks of words */
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* 4x4 blocks within each 128-bit lane */
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 4; i++) { /* 128-bit lanes: rows i, i+4, i+8, i+12 hold lane blocks */
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);     /* lanes 0, 2 of each */
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd); /* lanes 1, 3 */
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

static __mmask16 first_n(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* Row i's 32 k-values of one step (kk < valid are read, the rest zero) into hi/lo. */
static void pack_row32(uint16_t *h, uint16_t *l, const float *src, int64_t valid) {
    for (int half = 0; half < 2; half++) {
        const __mmask16 m = first_n(valid - 16 * half);
        __m512i hi, lo;
        rvg__split16(_mm512_maskz_loadu_ps(m, src + 16 * half), &hi, &lo);
        _mm256_storeu_si256((__m256i *)(h + 16 * half), _mm512_cvtepi32_epi16(hi));
        _mm256_storeu_si256((__m256i *)(l + 16 * half), _mm512_cvtepi32_epi16(lo));
    }
}

/* Two stored rows k and k+1 of 16 values (those in masks m0, m1 read, the rest zero) as 16 words
 * of bf16 pairs, hi and lo: word j = (k, j) in its low half, (k+1, j) in its high half. */
static inline void pair_rows(const float *r0, __mmask16 m0, const float *r1, __mmask16 m1,
                             __m512i *wh, __m512i *wl) {
    __m512i h0, l0, h1, l1;
    rvg__split16(_mm512_maskz_loadu_ps(m0, r0), &h0, &l0);
    rvg__split16(_mm512_maskz_loadu_ps(m1, r1), &h1, &l1);
    *wh = _mm512_or_si512(h0, _mm512_slli_epi32(h1, 16));
    *wl = _mm512_or_si512(l0, _mm512_slli_epi32(l1, 16));
}

/* Rows of 16 words w[0..15] transposed and stored as the 16 rows of a tile (hi and lo). */
static void store_transposed(uint16_t *h, uint16_t *l, __m512i wh[16], __m512i wl[16]) {
    transpose16(wh);
    transpose16(wl);
    for (int r = 0; r < 16; r++) {
        _mm512_storeu_si512(h + r * 32, wh[r]);
        _mm512_storeu_si512(l + r * 32, wl[r]);
    }
}

/* A transposed: a stored row k holds 16 rows of op(A) side by side. Rows k = 2p and 2p+1 give
 * word p (a pair of bf16) of each of the 16 tile rows; a transpose turns the 16 words per row. */
static void pack_a_trans(uint16_t *ah, uint16_t *al, const float *A, int64_t lda, int64_t i0,
                         int64_t mc, int64_t p0, int64_t kc) {
    const int64_t ks = (kc + 31) / 32, mb = (mc + 15) / 16;
    for (int64_t m = 0; m < mb; m++) {
        const __mmask16 rm = first_n(mc - 16 * m);
        for (int64_t s = 0; s < ks; s++) {
            __m512i wh[16], wl[16];
            for (int64_t p = 0; p < 16; p++) {
                const int64_t k = 32 * s + 2 * p;
                const float *row = A + (p0 + k) * lda + i0 + 16 * m;
                pair_rows(row, k < kc ? rm : 0, row + lda, k + 1 < kc ? rm : 0, &wh[p], &wl[p]);
            }
            store_transposed(ah + (m * ks + s) * 512, al + (m * ks + s) * 512, wh, wl);
        }
    }
}

static void pack_a_amx(uint16_t *ah, uint16_t *al, int ta, const float *A, int64_t lda, int64_t i0,
                       int64_t mc, int64_t p0, int64_t kc) {
    if (ta) {
        pack_a_trans(ah, al, A, lda, i0, mc, p0, kc);
        return;
    }
    const int64_t ks = (kc + 31) / 32, mb = (mc + 15) / 16;
    for (int64_t m = 0; m < mb; m++)
        for (int64_t r = 0; r < 16; r++) {
            const int64_t i = 16 * m + r;
            for (int64_t s = 0; s < ks; s++) {
                uint16_t *h = ah + (m * ks + s) * 512 + r * 32,
                         *l = al + (m * ks + s) * 512 + r * 32;
                if (i < mc) {
                    pack_row32(h, l, A + (i0 + i) * lda + p0 + 32 * s, kc - 32 * s);
                } else {
                    memset(h, 0, 64);
                    memset(l, 0, 64);
                }
            }
        }
}

/* B tiles of a plain B: rows k and k+1 (16 columns each) become one tile row of 16 pairs. */
static void pack_b_plain(uint16_t *bh, uint16_t *bl, const float *B, int64_t ldb, int64_t p0,
                         int64_t kc, int64_t j0, int64_t nc) {
    const int64_t ks = (kc + 31) / 32, nt = (nc + 15) / 16;
    for (int64_t t = 0; t < nt; t++) {
        const __mmask16 cm = first_n(nc - 16 * t);
        for (int64_t s = 0; s < ks; s++) {
            uint16_t *h = bh + (t * ks + s) * 512, *l = bl + (t * ks + s) * 512;
            for (int64_t p = 0; p < 16; p++) {
                const int64_t k = 32 * s + 2 * p;
                const float *row = B + (p0 + k) * ldb + j0 + 16 * t;
                __m512i wh, wl;
                pair_rows(row, k < kc ? cm : 0, row + ldb, k + 1 < kc ? cm : 0, &wh, &wl);
                _mm512_storeu_si512(h + p * 32, wh);
                _mm512_storeu_si512(l + p * 32, wl);
            }
        }
    }
}

/* B tiles of a transposed B: column j's 32 k-values of a step are contiguous, 16 pairs as 16
 * words; a transpose of the tile's 16 columns makes them its 16 rows. */
static void pack_b_trans(uint16_t *bh, uint16_t *bl, const float *B, int64_t ldb, int64_t p0,
                         int64_t kc, int64_t j0, int64_t nc) {
    const int64_t ks = (kc + 31) / 32, nt = (nc + 15) / 16;
    for (int64_t t = 0; t < nt; t++)
        for (int64_t s = 0; s < ks; s++) {
            __m512i wh[16], wl[16];
            for (int64_t jj = 0; jj < 16; jj++) {
                const int64_t j = 16 * t + jj;
                if (j >= nc) {
                    wh[jj] = wl[jj] = _mm512_setzero_si512();
                    continue;
                }
                const float *col = B + (j0 + j) * ldb + p0 + 32 * s;
                __m512i ha, la, hb, lb;
                rvg__split16(_mm512_maskz_loadu_ps(first_n(kc - 32 * s), col), &ha, &la);
                rvg__split16(_mm512_maskz_loadu_ps(first_n(kc - 32 * s - 16), col + 16), &hb, &lb);
                /* 32 values of 16 bits = 16 pairs of 32 bits, pair p = k 2p and 2p+1 */
                wh[jj] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(ha)),
                                            _mm512_cvtepi32_epi16(hb), 1);
                wl[jj] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(la)),
                                            _mm512_cvtepi32_epi16(lb), 1);
            }
            store_transposed(bh + (t * ks + s) * 512, bl + (t * ks + s) * 512, wh, wl);
        }
}

static void pack_b_amx(uint16_t *bh, uint16_t *bl, int tb, const float *B, int64_t ldb, int64_t p0,
                       int64_t kc, int64_t j0, int64_t nc) {
    if (tb)
        pack_b_trans(bh, bl, B, ldb, p0, kc, j0, nc);
    else
        pack_b_plain(bh, bl, B, ldb, p0, kc, j0, nc);
}

/* U of a 2x2-plane convolution packed from the weights (gemm_bf16x3_impl.h, pack_u4). Each
 * weight's taps (RS <= 16 floats, one load) give a 4 x 4 block of U: split once, permuted into
 * the order of their two tile rows (8 bf16 each: lanes 0-7 the first row, 8-15 the second). Four
 * such blocks fill a 64-byte row: forward (op(B) = U^T), rows (c, hw 0-1) and (c, hw 2-3) across
 * 4 output channels (k, pq 0-3); input gradient (op(B) = U), rows (k, pq 0-1) and (k, pq 2-3)
 * across 4 input channels (c, hw 0-3). The four are gathered in registers and each row stored
 * whole (16-byte stores into rows from memory ran at a third of the speed). */
static inline void u4_block(const float *wkc, __mmask16 mtap, __m512i perm, __mmask16 valid,
                            __m128i out[4]) {
    __m512i hi, lo;
    rvg__split16(_mm512_maskz_loadu_ps(mtap, wkc), &hi, &lo);
    const __m256i h16 = _mm512_cvtepi32_epi16(_mm512_maskz_permutexvar_epi32(valid, perm, hi));
    const __m256i l16 = _mm512_cvtepi32_epi16(_mm512_maskz_permutexvar_epi32(valid, perm, lo));
    out[0] = _mm256_castsi256_si128(h16); /* hi, first row */
    out[1] = _mm256_extracti128_si256(h16, 1);
    out[2] = _mm256_castsi256_si128(l16); /* lo, first row */
    out[3] = _mm256_extracti128_si256(l16, 1);
}

static void pack_u4_amx(uint16_t *bh, uint16_t *bl, int dx, const float *w, int64_t Kg, int64_t Cg,
                        int64_t RS, const int8_t taps[16], int64_t k0, int64_t k1) {
    if (RS > 16) {
        rvg__bf16x3_pack_u4_c(bh, bl, dx, w, Kg, Cg, RS, taps, k0, k1);
        return;
    }
    int32_t idx[16];
    __mmask16 valid = 0;
    for (int l = 0; l < 16; l++) {
        const int row = l / 8, a = (l % 8) / 2, e = l % 2;
        /* forward: a = pq, hw = 2 row + e; input gradient: a = hw, pq = 2 row + e */
        const int t = dx ? taps[(2 * row + e) * 4 + a] : taps[a * 4 + 2 * row + e];
        idx[l] = t >= 0 ? t : 0;
        valid |= (__mmask16)((t >= 0) << l);
    }
    const __m512i perm = _mm512_loadu_si512(idx);
    const __mmask16 mtap = first_n(RS);
    const int64_t ks = dx ? (Kg * 4 + 31) / 32 : (Cg * 4 + 31) / 32;
    const int64_t kend = rvg__bf16x3_u4_kend(dx, Kg, k1);
    const int64_t cend = dx ? (Cg + 3) / 4 * 4 : (Cg + 7) / 8 * 8;
    /* (a, b) runs over (output channel group of 4, input channel) forward and (output channel,
     * input channel group of 4) for the input gradient; the group fills the rows */
    const int64_t a_end = dx ? kend : kend / 4, b_end = dx ? cend / 4 : cend;
    for (int64_t a = dx ? k0 : k0 / 4; a < a_end; a++)
        for (int64_t b = 0; b < b_end; b++) {
            __m512i h0 = _mm512_setzero_si512(), h1 = h0, l0 = h0, l1 = h0;
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) {
                const int64_t k = dx ? a : 4 * a + q, c = dx ? 4 * b + q : b;
                if (k >= Kg || c >= Cg)
                    continue;
                __m128i out[4];
                u4_block(w + (k * Cg + c) * RS, mtap, perm, valid, out);
                const __mmask16 m = (__mmask16)(0xfu << (4 * q));
                h0 = _mm512_mask_broadcast_i32x4(h0, m, out[0]);
                h1 = _mm512_mask_broadcast_i32x4(h1, m, out[1]);
                l0 = _mm512_mask_broadcast_i32x4(l0, m, out[2]);
                l1 = _mm512_mask_broadcast_i32x4(l1, m, out[3]);
            }
            int64_t off;
            if (dx) /* tile b (input channels 4b..), step k / 8, row 2 (k % 8) */
                off = (b * ks + a / 8) * 512 + 2 * (a % 8) * 32;
            else /* tile a (output channels 4a..), step c / 8, row 2 (c % 8) */
                off = (a * ks + b / 8) * 512 + 2 * (b % 8) * 32;
            _mm512_storeu_si512(bh + off, h0);
            _mm512_storeu_si512(bh + off + 32, h1);
            _mm512_storeu_si512(bl + off, l0);
            _mm512_storeu_si512(bl + off + 32, l1);
        }
}

const rvg__bf16x3_kernels rvg__bf16x3_kernels_amx = {pack_a_amx, pack_b_amx, kernel_amx,
                                                     pack_u4_amx};
