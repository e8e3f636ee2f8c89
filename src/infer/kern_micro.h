/* kern_micro.h - the two micro-kernels that carry nearly all of the engine's FLOPs (one Winograd
 * point's GEMM, the direct 3x3 convolution), written once over a small vector layer and compiled
 * for each x86 kernel set. Their portable twins, with the same contracts (gemm16 and direct16 in
 * infer_impl.h), are in kern_c.c.
 *
 * Both produce 16 output channels for a block of tiles or pixels. Per reduction step (one input
 * channel, one tap) they load the 16 weights once and do one broadcast FMA per tile or pixel, so
 * the register block decides the speed:
 *   KM_VEC  8: AVX2, a tile's 16 channels are two ymm accumulators; KM_NT = 6 tiles or pixels
 *              (12 accumulators of 16 registers; per step 2 weight loads, 6 broadcasts, 12 FMAs);
 *   KM_VEC 16: AVX-512F, one zmm accumulator per tile; KM_NT = 12 (of 32 registers; per step 1
 *              weight load and 12 FMAs with the broadcast folded into them, `(mem){1to16}`).
 * kern_avx2.c includes this with (8, 6), kern_avx512.c with (16, 12), and kern_avx512_twin.c
 * with (8, 12): the AVX-512 kernels' blocking on AVX2, slow (its 24 accumulators spill) but
 * computing every lane with the same FMAs in the same order, so bit for bit the AVX-512 results.
 * The tests run that twin against the reference on every shape, which checks the 12-wide block
 * logic on machines without AVX-512; only the few helpers below differ between the ISAs.
 *
 * The includer defines KM(name) (distinct names), KM_VEC and KM_NT, and compiles with the ISA's
 * flags. Loops marked `unroll` run over compile-time counts after inlining, so the accumulator
 * arrays live in registers.
 */
#include <immintrin.h>

#include "infer_impl.h"

#if !(KM_VEC == 8 || KM_VEC == 16) || !(KM_NT == 6 || KM_NT == 12)
#error "kern_micro.h: KM_VEC must be 8 or 16 and KM_NT 6 or 12"
#endif
#define KM_H (16 / KM_VEC) /* vectors per 16-channel tile */

#define KM_INLINE static RVG__ALWAYS_INLINE

/* One switch case per block width 1..KM_NT (each an inlined copy with a constant count); the
 * switches define KM_CASE(k). */
#undef KM_CASES
#if KM_NT == 12
#define KM_CASES                                                                                 \
    KM_CASE(12) KM_CASE(11) KM_CASE(10) KM_CASE(9) KM_CASE(8) KM_CASE(7) KM_CASE(6) KM_CASE(5)   \
    KM_CASE(4) KM_CASE(3) KM_CASE(2) KM_CASE(1)
#else
#define KM_CASES KM_CASE(6) KM_CASE(5) KM_CASE(4) KM_CASE(3) KM_CASE(2) KM_CASE(1)
#endif

#ifndef KM_HELPERS_DEFINED /* once per translation unit: they depend on KM_VEC only */
#define KM_HELPERS_DEFINED
#if KM_VEC == 16
typedef __m512 km_v;
KM_INLINE km_v km_zero(void) { return _mm512_setzero_ps(); }
KM_INLINE km_v km_load(const float *p) { return _mm512_loadu_ps(p); }
KM_INLINE km_v km_bcast(const float *p) { return _mm512_set1_ps(*p); }
KM_INLINE km_v km_fma(km_v a, km_v b, km_v c) { return _mm512_fmadd_ps(a, b, c); }
KM_INLINE km_v km_relu(km_v a) { return _mm512_max_ps(a, _mm512_setzero_ps()); }
/* A tile's 16 channels from two pack8 halves (hi NULL: zeros), and back (hi NULL: not
 * stored). The 256-bit halves move through the 64-bit-lane insert/extract of AVX-512F. */
KM_INLINE void km_get(km_v *a, const float *lo, const float *hi) {
    __m256d l = _mm256_castps_pd(_mm256_loadu_ps(lo));
    __m256d h = _mm256_castps_pd(hi ? _mm256_loadu_ps(hi) : _mm256_setzero_ps());
    a[0] = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(l), h, 1));
}
KM_INLINE void km_put(float *lo, float *hi, const km_v *a) {
    _mm256_storeu_ps(lo, _mm512_castps512_ps256(a[0]));
    if (hi)
        _mm256_storeu_ps(hi, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a[0]), 1)));
}
#else
typedef __m256 km_v;
KM_INLINE km_v km_zero(void) { return _mm256_setzero_ps(); }
KM_INLINE km_v km_load(const float *p) { return _mm256_loadu_ps(p); }
KM_INLINE km_v km_bcast(const float *p) { return _mm256_broadcast_ss(p); }
KM_INLINE km_v km_fma(km_v a, km_v b, km_v c) { return _mm256_fmadd_ps(a, b, c); }
/* max(a, 0) returns its second operand for a NaN a: 0, as in the AVX-512 version */
KM_INLINE km_v km_relu(km_v a) { return _mm256_max_ps(a, _mm256_setzero_ps()); }
KM_INLINE void km_get(km_v *a, const float *lo, const float *hi) {
    a[0] = _mm256_loadu_ps(lo);
    a[1] = hi ? _mm256_loadu_ps(hi) : _mm256_setzero_ps();
}
KM_INLINE void km_put(float *lo, float *hi, const km_v *a) {
    _mm256_storeu_ps(lo, a[0]);
    if (hi)
        _mm256_storeu_ps(hi, a[1]);
}
#endif
#endif /* KM_HELPERS_DEFINED */

/* nt (1..KM_NT) tiles of one Winograd point's GEMM for 16 output channels (gemm16's contract).
 * The tiles of a channel are 8 floats apart (immediate offsets). */
KM_INLINE void KM(gemm_rows)(float *M, int64_t mbs, const float *V, int64_t vbs, int64_t coff,
                             const float *U, int64_t nc, const int nt) {
    km_v a[KM_NT][KM_H];
#pragma GCC unroll 12
    for (int j = 0; j < nt; j++)
#pragma GCC unroll 2
        for (int h = 0; h < KM_H; h++)
            a[j][h] = km_zero();
    const float *vb = V;
    int64_t c = 0, l0 = coff;
    while (c < nc) { /* one channel block at a time: lanes l0..7 of block vb */
        int64_t n8 = 8 - l0 < nc - c ? 8 - l0 : nc - c;
        const float *v = vb + l0, *u = U + c * 16;
#pragma GCC unroll 4
        for (int64_t i = 0; i < n8; i++, v++, u += 16) {
            km_v w[KM_H];
#pragma GCC unroll 2
            for (int h = 0; h < KM_H; h++)
                w[h] = km_load(u + h * KM_VEC);
#pragma GCC unroll 12
            for (int j = 0; j < nt; j++) {
                km_v x = km_bcast(v + j * 8);
#pragma GCC unroll 2
                for (int h = 0; h < KM_H; h++)
                    a[j][h] = km_fma(x, w[h], a[j][h]);
            }
        }
        c += n8, l0 = 0, vb += vbs;
    }
#pragma GCC unroll 12
    for (int j = 0; j < nt; j++)
        km_put(M + j * 8, M + mbs + j * 8, a[j]);
}

static void KM(gemm16)(float *M, int64_t mbs, const float *V, int64_t vbs, int64_t coff,
                       const float *U, int64_t nc, int64_t nt) {
    /* groups of at most KM_NT tiles, balanced (16 tiles at KM_NT 6: 6+5+5, not 6+6+4): a
     * narrow group does fewer FMAs per weight load */
    int64_t ng = (nt + KM_NT - 1) / KM_NT;
    for (int64_t g = 0; g < ng; g++) {
        int64_t t = g * nt / ng, n = (g + 1) * nt / ng - t;
        float *m = M + t * 8;
        const float *v = V + t * 8;
        switch (n) {
#define KM_CASE(k)                                                                               \
    case k: KM(gemm_rows)(m, mbs, v, vbs, coff, U, nc, k); break;
            KM_CASES
#undef KM_CASE
        default: break;
        }
    }
}

/* nq (1..KM_NT) output pixels of the direct conv, 16 output channels (direct16's contract).
 * Each pixel has its own input base pointer (chunks may cross output rows, so there are no
 * ragged row tails); a broadcast is base register + per-tap offset register. The tap loop stays
 * rolled: unrolled, GCC hoists all weight loads of a channel and spills accumulators. */
KM_INLINE void KM(direct_px)(float *y0, float *y1, const int64_t *ob, const float *x,
                             const int64_t *ib, int64_t coff, int64_t xcs, int64_t Wp,
                             const float *w, int64_t wn, const float *bias, int64_t c_lo,
                             int64_t c_hi, int first, int relu, const rvg__prefetch_hint *pf,
                             const int nq) {
    km_v a[KM_NT][KM_H];
    const float *xj[KM_NT];
    if (first) {
        km_v b[KM_H];
        km_get(b, bias, bias + 8);
#pragma GCC unroll 12
        for (int j = 0; j < nq; j++)
#pragma GCC unroll 2
            for (int h = 0; h < KM_H; h++)
                a[j][h] = b[h];
    } else {
#pragma GCC unroll 12
        for (int j = 0; j < nq; j++)
            km_get(a[j], y0 + ob[j], y1 ? y1 + ob[j] : NULL);
    }
#pragma GCC unroll 12
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
                km_v u[KM_H];
#pragma GCC unroll 2
                for (int h = 0; h < KM_H; h++)
                    u[h] = km_load(wt + h * KM_VEC);
#pragma GCC unroll 12
                for (int j = 0; j < nq; j++) {
                    km_v v = km_bcast(xj[j] + o + i);
#pragma GCC unroll 2
                    for (int h = 0; h < KM_H; h++)
                        a[j][h] = km_fma(v, u[h], a[j][h]);
                }
            }
            c += n8, o += xcs - l0, l0 = 0;
        }
    }
#pragma GCC unroll 12
    for (int j = 0; j < nq; j++) {
        if (relu)
#pragma GCC unroll 2
            for (int h = 0; h < KM_H; h++)
                a[j][h] = km_relu(a[j][h]);
        km_put(y0 + ob[j], y1 ? y1 + ob[j] : NULL, a[j]);
    }
}

static void KM(direct16)(float *y0, float *y1, const int64_t *ob, const float *x,
                         const int64_t *ib, int64_t nq, int64_t coff, int64_t xcs, int64_t Wp,
                         const float *w, int64_t wn, const float *bias, int64_t c_lo,
                         int64_t c_hi, int first, int relu, const rvg__prefetch_hint *pf) {
    switch (nq) {
#define KM_CASE(k)                                                                               \
    case k:                                                                                      \
        KM(direct_px)(y0, y1, ob, x, ib, coff, xcs, Wp, w, wn, bias, c_lo, c_hi, first, relu, \
                      pf, k);                                                                    \
        break;
        KM_CASES
#undef KM_CASE
    default: break;
    }
}
