/* kern_avx2.c - AVX2+FMA inference kernels (built with -mavx2 -mfma, chosen at run time).
 *
 * The Winograd transforms and helpers are kern_body.h compiled for AVX2 (each 8-lane loop becomes
 * one ymm operation). The two micro-kernels that carry nearly all the FLOPs are written with
 * intrinsics: a 6x16 register block (12 ymm accumulators), per reduction step 2 vector loads of
 * packed weights and 6 broadcasts, so the two FMA ports stay busy and loads stay under 2/cycle.
 * Their portable twins, with the same contract, are in kern_c.c.
 */
#include <immintrin.h>

#include "infer_impl.h"

#define KN(name) name##_avx2
#define KERN_OWN_WROW
#define KCOPY8(dst, src) _mm256_storeu_ps((dst), _mm256_loadu_ps(src))
#include "kern_body.h"

#define ALWAYS_INLINE static RVG__ALWAYS_INLINE

/* nt (1..6) tiles of one Winograd point's GEMM for 16 output channels; see gemm16 in
 * infer_impl.h. The 6 tiles of a channel are 8 floats apart (immediate offsets). */
ALWAYS_INLINE void gemm16_rows(float *M, int64_t mbs, const float *V, int64_t vbs, int64_t coff,
                               const float *U, int64_t nc, const int nt) {
    __m256 a0[6], a1[6];
#pragma GCC unroll 6
    for (int j = 0; j < nt; j++)
        a0[j] = a1[j] = _mm256_setzero_ps();
    const float *vb = V;
    int64_t c = 0, l0 = coff;
    while (c < nc) { /* one channel block at a time: lanes l0..7 of block vb */
        int64_t n8 = 8 - l0 < nc - c ? 8 - l0 : nc - c;
        const float *v = vb + l0, *u = U + c * 16;
#pragma GCC unroll 4
        for (int64_t i = 0; i < n8; i++, v++, u += 16) {
            __m256 u0 = _mm256_loadu_ps(u), u1 = _mm256_loadu_ps(u + 8);
#pragma GCC unroll 6
            for (int j = 0; j < nt; j++) {
                __m256 x = _mm256_broadcast_ss(v + j * 8);
                a0[j] = _mm256_fmadd_ps(x, u0, a0[j]);
                a1[j] = _mm256_fmadd_ps(x, u1, a1[j]);
            }
        }
        c += n8, l0 = 0, vb += vbs;
    }
#pragma GCC unroll 6
    for (int j = 0; j < nt; j++) {
        _mm256_storeu_ps(M + j * 8, a0[j]);
        _mm256_storeu_ps(M + mbs + j * 8, a1[j]);
    }
}

static void gemm16_avx2(float *M, int64_t mbs, const float *V, int64_t vbs, int64_t coff,
                        const float *U, int64_t nc, int64_t nt) {
    /* groups of at most 6 tiles, balanced (16 tiles: 6+5+5, not 6+6+4): a narrow group does
     * fewer FMAs per weight load */
    int64_t ng = (nt + 5) / 6;
    for (int64_t g = 0; g < ng; g++) {
        int64_t t = g * nt / ng, n = (g + 1) * nt / ng - t;
        float *m = M + t * 8;
        const float *v = V + t * 8;
        switch (n) {
        case 6: gemm16_rows(m, mbs, v, vbs, coff, U, nc, 6); break;
        case 5: gemm16_rows(m, mbs, v, vbs, coff, U, nc, 5); break;
        case 4: gemm16_rows(m, mbs, v, vbs, coff, U, nc, 4); break;
        case 3: gemm16_rows(m, mbs, v, vbs, coff, U, nc, 3); break;
        case 2: gemm16_rows(m, mbs, v, vbs, coff, U, nc, 2); break;
        case 1: gemm16_rows(m, mbs, v, vbs, coff, U, nc, 1); break;
        default: break;
        }
    }
}

/* nq (1..6) output pixels of the direct conv, 16 output channels; see direct16 in infer_impl.h.
 * Each pixel has its own input base pointer (chunks may cross output rows, so there are no
 * ragged row tails); a broadcast is base register + per-tap offset register. The tap loop stays
 * rolled: unrolled, GCC hoists all weight loads of a channel and spills accumulators. */
ALWAYS_INLINE void direct16_px(float *y0, float *y1, const int64_t *ob, const float *x,
                               const int64_t *ib, int64_t coff, int64_t xcs, int64_t Wp,
                               const float *w, int64_t wn, const float *bias, int64_t c_lo,
                               int64_t c_hi, int first, int relu,
                               const rvg__prefetch_hint *pf, const int nq) {
    __m256 a0[6], a1[6];
    const float *xj[6];
    if (first) {
        __m256 b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
#pragma GCC unroll 6
        for (int j = 0; j < nq; j++)
            a0[j] = b0, a1[j] = b1;
    } else {
#pragma GCC unroll 6
        for (int j = 0; j < nq; j++) {
            a0[j] = _mm256_loadu_ps(y0 + ob[j]);
            a1[j] = y1 ? _mm256_loadu_ps(y1 + ob[j]) : _mm256_setzero_ps();
        }
    }
#pragma GCC unroll 6
    for (int j = 0; j < nq; j++)
        xj[j] = x + ib[j];
    /* Tap-major: for one tap the channels of a block are consecutive floats, so the broadcast
     * address is base register + lane index register, and the weights (tap, c, 16) stream
     * linearly; no per-step address arithmetic beyond two increments. */
    for (int t = 0; t < 9; t++) {
        rvg__prefetch_tap(pf, t);
        const float *wt = w + (t * wn + c_lo) * 16;
        int64_t c = c_lo, cc = coff + c_lo;
        int64_t o = (t / 3) * Wp * 8 + (t % 3) * 8 + (cc >> 3) * xcs + (cc & 7);
        int64_t l0 = cc & 7;
        while (c < c_hi) {
            int64_t n8 = 8 - l0 < c_hi - c ? 8 - l0 : c_hi - c;
            if (t % 3 == 0)
                rvg__prefetch_pixels(pf, x, o);
#pragma GCC unroll 4
            for (int64_t i = 0; i < n8; i++, wt += 16) {
                __m256 u0 = _mm256_loadu_ps(wt), u1 = _mm256_loadu_ps(wt + 8);
#pragma GCC unroll 6
                for (int j = 0; j < nq; j++) {
                    __m256 v = _mm256_broadcast_ss(xj[j] + o + i);
                    a0[j] = _mm256_fmadd_ps(v, u0, a0[j]);
                    a1[j] = _mm256_fmadd_ps(v, u1, a1[j]);
                }
            }
            c += n8, o += xcs - l0, l0 = 0;
        }
    }
    __m256 z = _mm256_setzero_ps();
#pragma GCC unroll 6
    for (int j = 0; j < nq; j++) {
        if (relu)
            a0[j] = _mm256_max_ps(a0[j], z), a1[j] = _mm256_max_ps(a1[j], z);
        _mm256_storeu_ps(y0 + ob[j], a0[j]);
        if (y1)
            _mm256_storeu_ps(y1 + ob[j], a1[j]);
    }
}

static void direct16_avx2(float *y0, float *y1, const int64_t *ob, const float *x,
                          const int64_t *ib, int64_t nq, int64_t coff, int64_t xcs, int64_t Wp,
                          const float *w, int64_t wn, const float *bias, int64_t c_lo,
                          int64_t c_hi, int first, int relu, const rvg__prefetch_hint *pf) {
#define PX(k)                                                                                    \
    case k:                                                                                      \
        direct16_px(y0, y1, ob, x, ib, coff, xcs, Wp, w, wn, bias, c_lo, c_hi, first, relu, pf, \
                    k);                                                                          \
        break;
    switch (nq) {
        PX(6)
        PX(5)
        PX(4)
        PX(3)
        PX(2)
        PX(1)
    default: break;
    }
#undef PX
}

/* wino_wrow with FMAs, using the structure of G: its rows after the first come in pairs
 * (x0, x1, x2) and (x0, -x1, x2), so for a pair e = x0 t0 + x2 t2 and o = x1 t1 give both points
 * as e + o and e - o, and the last row is (0, 0, 1). Per input channel and 8 lanes: 9 loads and 9
 * FMAs for row i of G g, then 11 (F(4x4)) or 15 (F(6x6)) operations for the n points, against
 * 3n for G's rows one by one. The loop is written out per n so that t and the constants stay in
 * registers (the generic version looped over j reading Gm, with t spilled to the stack).
 * Measured alone (a throwaway driver calling it, F(4x4), best of 500+ runs): 12.9 -> 6.2 ns
 * per channel and row for 32 channels (in L1), 16.2 -> 11.2 ns over a whole 192->192 layer's
 * raw weights (1.3 MB, warm in L3). The C version in kern_body.h is its twin (plain rows of G;
 * results differ in rounding only). */
ALWAYS_INLINE void wrow_points(float *u, int64_t ts, __m256 t0, __m256 t1, __m256 t2,
                               const int n) {
    /* row 0 is (x, 0, 0), x = 1/4, -1/2 or 1 */
    const float(*Gm)[3] = n == 6 ? G4_avx2 : n == 7 ? G5_avx2 : G6_avx2;
    _mm256_storeu_ps(u, n != 8 ? _mm256_mul_ps(t0, _mm256_set1_ps(Gm[0][0])) : t0);
    /* F(5x5)'s pairs are (x0, x1, x2) and k (x0, -x1, x2): its point 1/2 has no -1/2 to
     * balance the scales of 1, -1 and 2, -2 (k = -1/3 and -3/5; one more multiply each) */
    static const float k5[2] = {-1.f / 3, -3.f / 5};
#pragma GCC unroll 3
    for (int q = 0; q < (n - 2) / 2; q++) {
        const float *pr = Gm[2 * q + 1]; /* (x0, x1, x2) of the pair of rows 2q+1, 2q+2 */
        __m256 e = _mm256_fmadd_ps(t0, _mm256_set1_ps(pr[0]),
                                   _mm256_mul_ps(t2, _mm256_set1_ps(pr[2])));
        __m256 o = _mm256_mul_ps(t1, _mm256_set1_ps(pr[1]));
        __m256 dif = _mm256_sub_ps(e, o);
        _mm256_storeu_ps(u + (2 * q + 1) * ts, _mm256_add_ps(e, o));
        _mm256_storeu_ps(u + (2 * q + 2) * ts,
                         n == 7 ? _mm256_mul_ps(dif, _mm256_set1_ps(k5[q])) : dif);
    }
    if (n == 7) { /* the point 1/2: a row of its own */
        const float *r5 = Gm[5];
        __m256 v = _mm256_mul_ps(t0, _mm256_set1_ps(r5[0]));
        v = _mm256_fmadd_ps(t1, _mm256_set1_ps(r5[1]), v);
        _mm256_storeu_ps(u + 5 * ts, _mm256_fmadd_ps(t2, _mm256_set1_ps(r5[2]), v));
    }
    _mm256_storeu_ps(u + (n - 1) * ts, t2);
}

ALWAYS_INLINE void wrow_n(float *U, const float *g, int64_t nc, const int n, int i) {
    const float(*Gm)[3] = n == 6 ? G4_avx2 : n == 7 ? G5_avx2 : G6_avx2;
    const __m256 a0 = _mm256_set1_ps(Gm[i][0]), a1 = _mm256_set1_ps(Gm[i][1]);
    const __m256 a2 = _mm256_set1_ps(Gm[i][2]);
    const int64_t ts = WROW_STRIDE(nc);
    for (int64_t c = 0; c < nc; c++) {
        const float *gc = g + c * 144;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256 t[3]; /* t[s] = sum_r G[i][r] g[r][s], 8 lanes */
#pragma GCC unroll 3
            for (int s = 0; s < 3; s++) {
                __m256 v = _mm256_mul_ps(a0, _mm256_loadu_ps(gc + s * 16 + h * 8));
                v = _mm256_fmadd_ps(a1, _mm256_loadu_ps(gc + (3 + s) * 16 + h * 8), v);
                t[s] = _mm256_fmadd_ps(a2, _mm256_loadu_ps(gc + (6 + s) * 16 + h * 8), v);
            }
            wrow_points(U + c * 16 + h * 8, ts, t[0], t[1], t[2], n);
        }
    }
}

static void wino_wrow_fma(float *U, const float *g, int64_t nc, int n, int i) {
    if (n == 6)
        wrow_n(U, g, nc, 6, i);
    else if (n == 7)
        wrow_n(U, g, nc, 7, i);
    else
        wrow_n(U, g, nc, 8, i);
}

const rvg__infer_kernels rvg__infer_kernels_avx2 = {
    .pack_input = pack_input_avx2,
    .wino_in = {wino4_in_avx2, wino5_in_avx2, wino6_in_avx2},
    .wino_out = {wino4_out_avx2, wino5_out_avx2, wino6_out_avx2},
    .gemm16 = gemm16_avx2,
    .direct16 = direct16_avx2,
    .direct_px = 6,
    .wino_wrow = wino_wrow_fma,
    .fc = fc_avx2,
};
