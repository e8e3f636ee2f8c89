/* kern_avx2.c - AVX2+FMA inference kernels (built with -mavx2 -mfma, chosen at run time).
 *
 * The Winograd transforms and helpers are kern_body.h compiled for AVX2 (each 8-lane loop becomes
 * one ymm operation). The two micro-kernels that carry nearly all the FLOPs are kern_micro.h with
 * a 6x16 register block (12 ymm accumulators): per reduction step 2 vector loads of packed
 * weights and 6 broadcasts, so the two FMA ports stay busy and loads stay under 2/cycle. The
 * on-the-fly weight transform has an intrinsic version here. Portable twins: kern_c.c.
 */
#include <immintrin.h>

#include "infer_impl.h"

#define KN(name) name##_avx2
#define KERN_OWN_WROW
#define KCOPY8(dst, src) _mm256_storeu_ps((dst), _mm256_loadu_ps(src))
#include "kern_body.h"

#define ALWAYS_INLINE static RVG__ALWAYS_INLINE

#define KM(name) name##_avx2
#define KM_VEC 8
#define KM_NT 6
#include "kern_micro.h"

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
