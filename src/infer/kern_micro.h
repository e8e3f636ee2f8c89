/* kern_micro.h - the micro-kernels that carry nearly all of the engine's FLOPs (one Winograd
 * point's GEMM, the direct 3x3 convolution) and the on-the-fly Winograd weight transform, written
 * once over a small vector layer and compiled for each x86 kernel set. Their portable twins, with
 * the same contracts (infer_impl.h), are in kern_c.c and kern_body.h.
 *
 * The GEMM and the direct conv produce 16 output channels for a block of tiles or pixels (gemm16,
 * direct16), or 32 (gemm32, direct32: two weight blocks, 12-wide sets only). Per reduction step
 * (one input channel, one tap) they load each block's 16 weights once and do one broadcast FMA
 * per block and tile or pixel, so the register block decides the speed (gemm_otf, below, is
 * gemm16 with the weights computed from G g as it goes):
 *   KM_VEC  8: AVX2, a tile's 16 channels are two ymm accumulators; KM_NT = 6 tiles or pixels
 *              (12 accumulators of 16 registers; per step 2 weight loads, 6 broadcasts, 12 FMAs);
 *   KM_VEC 16: AVX-512F, one zmm accumulator per tile and block; KM_NT = 12. With one block, per
 *              step 1 weight load and 12 FMAs with the broadcast folded in (`(mem){1to16}`):
 *              13 loads per 12 FMAs, 153-164 GFLOP/s in L1 on the Zen 5 benchmark machine
 *              (peak 210). With two blocks (24 of 32 registers), 2 loads and 12 broadcasts per
 *              24 FMAs: 191-211 GFLOP/s (direct conv, throwaway driver, 48-192 channels).
 * kern_avx2.c includes this with (8, 6), kern_avx512.c with (16, 12), and kern_avx512_twin.c
 * with (8, 12): the AVX-512 kernels' blocking on AVX2, slow (its accumulators spill) but
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
KM_INLINE km_v km_set1(float x) { return _mm512_set1_ps(x); }
KM_INLINE km_v km_mul(km_v a, km_v b) { return _mm512_mul_ps(a, b); }
KM_INLINE km_v km_add(km_v a, km_v b) { return _mm512_add_ps(a, b); }
KM_INLINE km_v km_sub(km_v a, km_v b) { return _mm512_sub_ps(a, b); }
KM_INLINE void km_store(float *p, km_v a) { _mm512_storeu_ps(p, a); }
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
KM_INLINE km_v km_set1(float x) { return _mm256_set1_ps(x); }
KM_INLINE km_v km_mul(km_v a, km_v b) { return _mm256_mul_ps(a, b); }
KM_INLINE km_v km_add(km_v a, km_v b) { return _mm256_add_ps(a, b); }
KM_INLINE km_v km_sub(km_v a, km_v b) { return _mm256_sub_ps(a, b); }
KM_INLINE void km_store(float *p, km_v a) { _mm256_storeu_ps(p, a); }
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

/* nt (1..KM_NT) tiles of one Winograd point's GEMM for nw (1 or 2) blocks of 16 output channels
 * (gemm16's and gemm32's contracts: block b's weights at U + b*us, its rows at M + 2*b*mbs). The
 * tiles of a channel are 8 floats apart (immediate offsets). */
KM_INLINE void KM(gemm_rows)(float *M, int64_t mbs, const float *V, int64_t vbs, int64_t coff,
                             const float *U, int64_t us, int64_t nc, const int nt,
                             const int nw) {
    km_v a[KM_NT][2 * KM_H];
#pragma GCC unroll 12
    for (int j = 0; j < nt; j++)
#pragma GCC unroll 4
        for (int k = 0; k < nw * KM_H; k++)
            a[j][k] = km_zero();
    const float *vb = V;
    int64_t c = 0, l0 = coff;
    while (c < nc) { /* one channel block at a time: lanes l0..7 of block vb */
        int64_t n8 = 8 - l0 < nc - c ? 8 - l0 : nc - c;
        const float *v = vb + l0, *u = U + c * 16;
#pragma GCC unroll 4
        for (int64_t i = 0; i < n8; i++, v++, u += 16) {
            km_v w[2 * KM_H];
#pragma GCC unroll 4
            for (int k = 0; k < nw * KM_H; k++)
                w[k] = km_load(u + (k / KM_H) * us + (k % KM_H) * KM_VEC);
#pragma GCC unroll 12
            for (int j = 0; j < nt; j++) {
                km_v x = km_bcast(v + j * 8);
#pragma GCC unroll 4
                for (int k = 0; k < nw * KM_H; k++)
                    a[j][k] = km_fma(x, w[k], a[j][k]);
            }
        }
        c += n8, l0 = 0, vb += vbs;
    }
#pragma GCC unroll 2
    for (int b = 0; b < nw; b++)
#pragma GCC unroll 12
        for (int j = 0; j < nt; j++)
            km_put(M + 2 * b * mbs + j * 8, M + (2 * b + 1) * mbs + j * 8, a[j] + b * KM_H);
}

/* groups of at most KM_NT tiles, balanced (16 tiles at KM_NT 6: 6+5+5, not 6+6+4): a narrow
 * group does fewer FMAs per weight load */
KM_INLINE void KM(gemm_groups)(float *M, int64_t mbs, const float *V, int64_t vbs, int64_t coff,
                               const float *U, int64_t us, int64_t nc, int64_t nt, const int nw) {
    int64_t ng = (nt + KM_NT - 1) / KM_NT;
    for (int64_t g = 0; g < ng; g++) {
        int64_t t = g * nt / ng, n = (g + 1) * nt / ng - t;
        float *m = M + t * 8;
        const float *v = V + t * 8;
        switch (n) {
#define KM_CASE(k)                                                                               \
    case k: KM(gemm_rows)(m, mbs, v, vbs, coff, U, us, nc, k, nw); break;
            KM_CASES
#undef KM_CASE
        default: break;
        }
    }
}

static void KM(gemm16)(float *M, int64_t mbs, const float *V, int64_t vbs, int64_t coff,
                       const float *U, int64_t nc, int64_t nt) {
    KM(gemm_groups)(M, mbs, V, vbs, coff, U, 0, nc, nt, 1);
}

#if KM_NT == 12 /* the 12-wide sets (AVX-512 and its twin): two weight blocks fit the registers */
static void KM(gemm32)(float *M, int64_t mbs, const float *V, int64_t vbs, int64_t coff,
                       const float *U, int64_t us, int64_t nc, int64_t nt) {
    KM(gemm_groups)(M, mbs, V, vbs, coff, U, us, nc, nt, 2);
}
#endif

/* n8 reduction steps (input channels) of the direct conv at one tap, for nw 16-channel weight
 * blocks ws floats apart: pixel j's accumulators a[j][b*KM_H + h] gain x[xj[j] + o + i] *
 * w[b*ws + i*16 ..] for i < n8. With nw = 2 a broadcast feeds two FMAs (per step 2 weight loads,
 * 12 broadcasts and 24 FMAs on AVX-512), which keeps the loads well under the FMAs. */
KM_INLINE void KM(direct_steps)(km_v (*a)[2 * KM_H], const float *const *xj, int64_t o,
                                const float *wt, int64_t ws, int64_t n8, const int nq,
                                const int nw) {
#pragma GCC unroll 8
    for (int64_t i = 0; i < n8; i++, wt += 16) {
        km_v u[2 * KM_H];
#pragma GCC unroll 4
        for (int k = 0; k < nw * KM_H; k++)
            u[k] = km_load(wt + (k / KM_H) * ws + (k % KM_H) * KM_VEC);
#pragma GCC unroll 12
        for (int j = 0; j < nq; j++) {
            km_v v = km_bcast(xj[j] + o + i);
#pragma GCC unroll 4
            for (int k = 0; k < nw * KM_H; k++)
                a[j][k] = km_fma(v, u[k], a[j][k]);
        }
    }
}

/* nq (1..KM_NT) output pixels of the direct conv for nw (1 or 2) blocks of 16 output channels
 * (direct16's and direct32's contracts; block b's outputs are b*yks floats after block 0's, its
 * weights b*9*wn*16, its bias b*16). Each pixel has its own input base pointer (chunks may cross
 * output rows, so there are no ragged row tails); a broadcast is base register + per-tap offset
 * register. The tap loop stays rolled: unrolled, GCC hoists all weight loads of a channel and
 * spills accumulators. */
KM_INLINE void KM(direct_px)(float *y0, float *y1, int64_t yks, const int64_t *ob,
                             const float *x, const int64_t *ib, int64_t coff, int64_t xcs,
                             int64_t Wp, const float *w, int64_t wn, const float *bias,
                             int64_t c_lo, int64_t c_hi, int first, int relu,
                             const rvg__prefetch_hint *pf, const int nq, const int nw) {
    km_v a[KM_NT][2 * KM_H];
    const float *xj[KM_NT];
    const int64_t ws = 9 * wn * 16;
    if (first) {
#pragma GCC unroll 2
        for (int b = 0; b < nw; b++) {
            km_v bv[KM_H];
            km_get(bv, bias + b * 16, bias + b * 16 + 8);
#pragma GCC unroll 12
            for (int j = 0; j < nq; j++)
#pragma GCC unroll 2
                for (int h = 0; h < KM_H; h++)
                    a[j][b * KM_H + h] = bv[h];
        }
    } else {
#pragma GCC unroll 2
        for (int b = 0; b < nw; b++)
#pragma GCC unroll 12
            for (int j = 0; j < nq; j++)
                km_get(a[j] + b * KM_H, y0 + b * yks + ob[j], y1 ? y1 + b * yks + ob[j] : NULL);
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
            if (n8 == 8) /* a whole channel block: a constant count, unrolled */
                KM(direct_steps)(a, xj, o, wt, ws, 8, nq, nw);
            else
                KM(direct_steps)(a, xj, o, wt, ws, n8, nq, nw);
            wt += n8 * 16;
            c += n8, o += xcs - l0, l0 = 0;
        }
    }
#pragma GCC unroll 2
    for (int b = 0; b < nw; b++)
#pragma GCC unroll 12
        for (int j = 0; j < nq; j++) {
            km_v *aj = a[j] + b * KM_H;
            if (relu)
#pragma GCC unroll 2
                for (int h = 0; h < KM_H; h++)
                    aj[h] = km_relu(aj[h]);
            km_put(y0 + b * yks + ob[j], y1 ? y1 + b * yks + ob[j] : NULL, aj);
        }
}

static void KM(direct16)(float *y0, float *y1, const int64_t *ob, const float *x,
                         const int64_t *ib, int64_t nq, int64_t coff, int64_t xcs, int64_t Wp,
                         const float *w, int64_t wn, const float *bias, int64_t c_lo,
                         int64_t c_hi, int first, int relu, const rvg__prefetch_hint *pf) {
    switch (nq) {
#define KM_CASE(k)                                                                               \
    case k:                                                                                      \
        KM(direct_px)(y0, y1, 0, ob, x, ib, coff, xcs, Wp, w, wn, bias, c_lo, c_hi, first,     \
                      relu, pf, k, 1);                                                           \
        break;
        KM_CASES
#undef KM_CASE
    default: break;
    }
}

#if KM_NT == 12 /* the 12-wide sets (AVX-512 and its twin): two weight blocks fit the registers */
static void KM(direct32)(float *y0, int64_t ycs, const int64_t *ob, const float *x,
                         const int64_t *ib, int64_t nq, int64_t coff, int64_t xcs, int64_t Wp,
                         const float *w, int64_t wn, const float *bias, int64_t c_lo,
                         int64_t c_hi, int first, int relu, const rvg__prefetch_hint *pf) {
    switch (nq) {
#define KM_CASE(k)                                                                               \
    case k:                                                                                      \
        KM(direct_px)(y0, y0 + ycs, 2 * ycs, ob, x, ib, coff, xcs, Wp, w, wn, bias, c_lo, c_hi, \
                      first, relu, pf, k, 2);                                                    \
        break;
        KM_CASES
#undef KM_CASE
    default: break;
    }
}
#endif

/* wino_wrow (infer_impl.h's contract) with FMAs, using the structure of G: its rows after the
 * first come in pairs (x0, x1, x2) and (x0, -x1, x2), so for a pair e = x0 t0 + x2 t2 and
 * o = x1 t1 give both points as e + o and e - o, and the last row is (0, 0, 1). Per input channel
 * and vector: 9 loads and 9 FMAs for row i of G g, then 11 (F(4x4)) or 15 (F(6x6)) operations
 * for the n points, against 3n for G's rows one by one. Written out per n so that t and the
 * constants stay in registers. Measured alone with 8 lanes (a throwaway driver, F(4x4), best of
 * 500+ runs): 12.9 -> 6.2 ns per channel and row for 32 channels (in L1), 16.2 -> 11.2 ns over a
 * whole 192->192 layer's raw weights (1.3 MB, warm in L3). Each lane does the same operations
 * whatever the vector width, so AVX2 and AVX-512 agree bit for bit; the C version in
 * kern_body.h is its twin (plain rows of G; results differ in rounding only). */
KM_INLINE void KM(wrow_points)(float *u, int64_t ts, km_v t0, km_v t1, km_v t2, const int n) {
    /* row 0 is (x, 0, 0), x = 1/4, -1/2 or 1 */
    const float(*Gm)[3] = n == 6 ? rvg__wino_g4 : n == 7 ? rvg__wino_g5 : rvg__wino_g6;
    km_store(u, n != 8 ? km_mul(t0, km_set1(Gm[0][0])) : t0);
    /* F(5x5)'s pairs are (x0, x1, x2) and k (x0, -x1, x2): its point 1/2 has no -1/2 to
     * balance the scales of 1, -1 and 2, -2 (k = -1/3 and -3/5; one more multiply each) */
    static const float k5[2] = {-1.f / 3, -3.f / 5};
#pragma GCC unroll 3
    for (int q = 0; q < (n - 2) / 2; q++) {
        const float *pr = Gm[2 * q + 1]; /* (x0, x1, x2) of the pair of rows 2q+1, 2q+2 */
        km_v e = km_fma(t0, km_set1(pr[0]), km_mul(t2, km_set1(pr[2])));
        km_v o = km_mul(t1, km_set1(pr[1]));
        km_v dif = km_sub(e, o);
        km_store(u + (2 * q + 1) * ts, km_add(e, o));
        km_store(u + (2 * q + 2) * ts, n == 7 ? km_mul(dif, km_set1(k5[q])) : dif);
    }
    if (n == 7) { /* the point 1/2: a row of its own */
        const float *r5 = Gm[5];
        km_v v = km_mul(t0, km_set1(r5[0]));
        v = km_fma(t1, km_set1(r5[1]), v);
        km_store(u + 5 * ts, km_fma(t2, km_set1(r5[2]), v));
    }
    km_store(u + (n - 1) * ts, t2);
}

KM_INLINE void KM(wrow_n)(float *U, const float *g, int64_t nc, const int n, int i) {
    const float(*Gm)[3] = n == 6 ? rvg__wino_g4 : n == 7 ? rvg__wino_g5 : rvg__wino_g6;
    const km_v a0 = km_set1(Gm[i][0]), a1 = km_set1(Gm[i][1]), a2 = km_set1(Gm[i][2]);
    const int64_t ts = WROW_STRIDE(nc);
    for (int64_t c = 0; c < nc; c++) {
        const float *gc = g + c * 144;
#pragma GCC unroll 2
        for (int h = 0; h < KM_H; h++) {
            km_v t[3]; /* t[s] = sum_r G[i][r] g[r][s], one vector of lanes */
#pragma GCC unroll 3
            for (int s = 0; s < 3; s++) {
                km_v v = km_mul(a0, km_load(gc + s * 16 + h * KM_VEC));
                v = km_fma(a1, km_load(gc + (3 + s) * 16 + h * KM_VEC), v);
                t[s] = km_fma(a2, km_load(gc + (6 + s) * 16 + h * KM_VEC), v);
            }
            KM(wrow_points)(U + c * 16 + h * KM_VEC, ts, t[0], t[1], t[2], n);
        }
    }
}

#if KM_NT == 12 /* the 12-wide sets (the AVX2 set keeps kern_body.h's transforms) */
/* ---- Winograd input transform, two tiles per vector (wino_in2) ----------------------------
 * Tile A's 8 channels in the low lanes, tile B's in the high ones (KM_VEC 16), or A and B in
 * two vectors (KM_VEC 8: the twin), so a vector operation transforms both. The formulas are
 * kern_body.h's bt5 with the same operations in the same order and no FMA (kern_avx2.c's C is
 * compiled without contraction), so the results are the AVX2 set's bit for bit. F(5x5) only:
 * over A0's stage-3 input (hot, 1 thread, a throwaway driver) 0.0294 -> 0.0183 ms, bit-identical
 * to wino5_in; the same for F(6x6) gave 0.0289 -> 0.0265 and no gain in the network. */
KM_INLINE void KM(bt5v)(km_v *o, const km_v *d) {
    const km_v h = km_set1(0.5f), c4 = km_set1(4.f), c5 = km_set1(5.f), c2 = km_set1(2.f);
    km_v e[6];
#pragma GCC unroll 6
    for (int u = 0; u < 6; u++)
        e[u] = km_sub(d[u + 1], km_mul(h, d[u]));
    o[0] = km_add(km_sub(km_mul(c4, e[0]), km_mul(c5, e[2])), e[4]);
    o[1] = km_add(km_add(km_mul(km_set1(-4.f), km_add(e[1], e[2])), e[3]), e[4]);
    o[2] = km_add(km_sub(km_mul(c4, km_sub(e[1], e[2])), e[3]), e[4]);
    o[3] = km_add(km_sub(km_mul(c2, km_sub(e[3], e[1])), e[2]), e[4]);
    o[4] = km_add(km_sub(km_mul(c2, km_sub(e[1], e[3])), e[2]), e[4]);
    o[5] = km_add(km_sub(km_mul(c4, d[1]), km_mul(c5, d[3])), d[5]);
    o[6] = km_add(km_sub(km_mul(c4, e[1]), km_mul(c5, e[3])), e[5]);
}

static void KM(wino5_in2)(float *V, int64_t vs, int64_t vbs, const float *x0, const float *x1,
                          int64_t Wp, int64_t xcs, int64_t ncb) {
    enum { n = 7 };
    km_v t[n][n][KM_H]; /* the row-transformed pair of tiles */
    for (int64_t b = 0; b < ncb; b++) {
#pragma GCC unroll 8
        for (int i = 0; i < n; i++) {
            km_v d[n][KM_H];
#pragma GCC unroll 8
            for (int j = 0; j < n; j++) {
                int64_t o = b * xcs + ((int64_t)i * Wp + j) * 8;
                km_get(d[j], x0 + o, x1 + o);
            }
#pragma GCC unroll 2
            for (int h = 0; h < KM_H; h++) {
                km_v di[n], oi[n];
#pragma GCC unroll 8
                for (int j = 0; j < n; j++)
                    di[j] = d[j][h];
                KM(bt5v)(oi, di);
#pragma GCC unroll 8
                for (int k = 0; k < n; k++)
                    t[i][k][h] = oi[k];
            }
        }
#pragma GCC unroll 8
        for (int k = 0; k < n; k++)
#pragma GCC unroll 2
            for (int h = 0; h < KM_H; h++) {
                km_v di[n], oi[n];
#pragma GCC unroll 8
                for (int i = 0; i < n; i++)
                    di[i] = t[i][k][h];
                KM(bt5v)(oi, di);
#pragma GCC unroll 8
                for (int i = 0; i < n; i++)
                    km_store(V + (i * n + k) * vs + b * vbs + h * KM_VEC, oi[i]);
            }
    }
}

#endif

#if KM_NT == 12 /* the 12-wide sets: 2 x 10 accumulators need 32 registers */
/* wino_trows (infer_impl.h): the t of wrow_n, stored, for a range of rows from one pass over g
 * (read once per row, g's loads from L2 were most of the time). */
static void KM(wino_trows)(float *T, const float *g, int64_t nc, int n, int i0, int i1) {
    const float(*Gm)[3] = n == 6 ? rvg__wino_g4 : n == 7 ? rvg__wino_g5 : rvg__wino_g6;
    const int64_t ts = WROW_STRIDE(nc);
    for (int64_t c = 0; c < nc; c++) {
        const float *gc = g + c * 144;
#pragma GCC unroll 2
        for (int h = 0; h < KM_H; h++)
#pragma GCC unroll 3
            for (int s = 0; s < 3; s++) {
                km_v g0 = km_load(gc + s * 16 + h * KM_VEC);
                km_v g1 = km_load(gc + (3 + s) * 16 + h * KM_VEC);
                km_v g2 = km_load(gc + (6 + s) * 16 + h * KM_VEC);
                for (int i = i0; i < i1; i++) {
                    km_v v = km_mul(km_set1(Gm[i][0]), g0);
                    v = km_fma(km_set1(Gm[i][1]), g1, v);
                    km_store(T + (3 * (i - i0) + s) * ts + c * 16 + h * KM_VEC,
                             km_fma(km_set1(Gm[i][2]), g2, v));
                }
            }
    }
}

/* gemm_otf (infer_impl.h) for nt (1..KM_OTF_NT) tiles. Per channel: three loads of t, the
 * weights of np points (3 operations each), then np*nt broadcast FMAs: with np = 2 and nt = 9,
 * 24 vector operations per 18 FMAs of the GEMM, and nothing written but M. (wino_wrow first
 * stored the n points' weights of all channels, 86 KB per block at A0's stage 3, to L2, and the
 * GEMM read them back: the transform alone took as long as the GEMMs it fed.) */
#define KM_OTF_NT 10 /* 2 x 10 accumulators, t, u and the coefficients fit 32 zmm */
KM_INLINE void KM(otf_rows)(float *M0, float *M1, int64_t mbs, const float *V0, const float *V1,
                            int64_t vbs, int64_t coff, const float *T, const float *cf, int64_t nc,
                            const int nt, const int np) {
    km_v acc[2][KM_OTF_NT][KM_H];
#pragma GCC unroll 2
    for (int q = 0; q < np; q++)
#pragma GCC unroll 10
        for (int j = 0; j < nt; j++)
#pragma GCC unroll 2
            for (int h = 0; h < KM_H; h++)
                acc[q][j][h] = km_zero();
    km_v co[2][3];
#pragma GCC unroll 2
    for (int q = 0; q < np; q++)
#pragma GCC unroll 3
        for (int s = 0; s < 3; s++)
            co[q][s] = km_set1(cf[3 * q + s]);
    const int64_t ts = WROW_STRIDE(nc);
    const float *vb[2] = {V0, V1};
    int64_t c = 0, l0 = coff;
    while (c < nc) { /* one channel block at a time: lanes l0..7 */
        int64_t n8 = 8 - l0 < nc - c ? 8 - l0 : nc - c;
        const float *t = T + c * 16;
#pragma GCC unroll 2
        for (int64_t i = 0; i < n8; i++, t += 16) {
#pragma GCC unroll 2
            for (int h = 0; h < KM_H; h++) {
                km_v t0 = km_load(t + h * KM_VEC), t1 = km_load(t + ts + h * KM_VEC);
                km_v t2 = km_load(t + 2 * ts + h * KM_VEC);
#pragma GCC unroll 2
                for (int q = 0; q < np; q++) {
                    km_v u = km_fma(t0, co[q][0], km_fma(t1, co[q][1], km_mul(t2, co[q][2])));
                    const float *v = vb[q] + l0 + i;
#pragma GCC unroll 10
                    for (int j = 0; j < nt; j++)
                        acc[q][j][h] = km_fma(km_bcast(v + j * 8), u, acc[q][j][h]);
                }
            }
        }
        c += n8, l0 = 0, vb[0] += vbs, vb[1] += vbs;
    }
    float *mp[2] = {M0, M1};
#pragma GCC unroll 2
    for (int q = 0; q < np; q++)
#pragma GCC unroll 10
        for (int j = 0; j < nt; j++)
            km_put(mp[q] + j * 8, mp[q] + mbs + j * 8, acc[q][j]);
}

static void KM(gemm_otf)(float *M0, float *M1, int64_t mbs, const float *V0, const float *V1,
                         int64_t vbs, int64_t coff, const float *T, const float *a, int64_t nc,
                         int64_t nt, int np) {
    int64_t ng = (nt + KM_OTF_NT - 1) / KM_OTF_NT;
    for (int64_t g = 0; g < ng; g++) { /* balanced groups, as gemm_groups */
        int64_t t0 = g * nt / ng, n = (g + 1) * nt / ng - t0;
        float *m0 = M0 + t0 * 8, *m1 = M1 + t0 * 8;
        const float *v0 = V0 + t0 * 8, *v1 = V1 + t0 * 8;
        switch (n * 2 + (np == 2)) {
#define KM_OTF_CASE(k)                                                                             \
    case 2 * k: KM(otf_rows)(m0, m1, mbs, v0, v1, vbs, coff, T, a, nc, k, 1); break;               \
    case 2 * k + 1: KM(otf_rows)(m0, m1, mbs, v0, v1, vbs, coff, T, a, nc, k, 2); break;
            /* clang-format off */
            KM_OTF_CASE(10) KM_OTF_CASE(9) KM_OTF_CASE(8) KM_OTF_CASE(7) KM_OTF_CASE(6)
            KM_OTF_CASE(5) KM_OTF_CASE(4) KM_OTF_CASE(3) KM_OTF_CASE(2) KM_OTF_CASE(1)
            /* clang-format on */
#undef KM_OTF_CASE
                    default : break;
        }
    }
}
#endif

static void KM(wino_wrow)(float *U, const float *g, int64_t nc, int n, int i) {
    if (n == 6)
        KM(wrow_n)(U, g, nc, 6, i);
    else if (n == 7)
        KM(wrow_n)(U, g, nc, 7, i);
    else
        KM(wrow_n)(U, g, nc, 8, i);
}
