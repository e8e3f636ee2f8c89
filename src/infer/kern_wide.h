/* kern_wide.h - the two hot inference micro-kernels with one 16-float vector per accumulator,
 * written once with GCC vector extensions and compiled twice.
 *
 * kern_avx512.c builds it with -mavx512f: a 16-float vector is one zmm register, so the 16
 * output channels of one tile or pixel are one accumulator, and the 32 registers hold blocks of
 * up to KW_NT = 12 tiles (GEMM) or pixels (direct conv), twice what the 16 ymm registers of
 * kern_avx2.c allow. Per reduction step: one weight load and KW_NT broadcast FMAs.
 *
 * kern_avx512_twin.c builds the same source, same KW_NT, with -mavx2 -mfma (each vector becomes
 * two ymm halves; it spills, and is never chosen for speed). That twin runs on any AVX2 machine,
 * so the tests check this file's index arithmetic, block splitting and epilogues against the
 * reference on machines without AVX-512; only the instruction selection differs between the two.
 * Both files add -ffp-contract=fast, so `a += x * u` is one fused multiply-add (ISO C mode
 * otherwise keeps the multiply and the add apart), and the twin's results equal the AVX-512
 * build's bit for bit.
 *
 * The includer defines KW(name) (distinct function names). The contracts are gemm16's and
 * direct16's in infer_impl.h, except that direct16 here takes up to KW_NT pixels
 * (rvg__infer_kernels.direct_px tells engine.c).
 */
#include <string.h>

#include "infer_impl.h"

typedef float kw_v16 __attribute__((vector_size(64)));
typedef float kw_v8 __attribute__((vector_size(32)));
typedef int32_t kw_i16 __attribute__((vector_size(64)));

#define KW_INLINE static RVG__ALWAYS_INLINE

/* Tiles (GEMM) or pixels (direct) per register block: 12 accumulators, a weight vector and
 * broadcasts fit the 32 zmm registers; the switches below have one case per count. */
#define KW_NT 12

/* Unaligned loads and stores: memcpy is the portable spelling (one vmovups). */
KW_INLINE kw_v16 kw_load(const float *p) {
    kw_v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}
KW_INLINE kw_v8 kw_load8(const float *p) {
    kw_v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
/* The 16 output channels of a block live in two pack8 halves at different addresses. */
KW_INLINE void kw_store_halves(float *lo, float *hi, kw_v16 a) {
    kw_v8 l = __builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7);
    kw_v8 h = __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15);
    memcpy(lo, &l, sizeof l);
    if (hi)
        memcpy(hi, &h, sizeof h);
}
KW_INLINE kw_v16 kw_join(kw_v8 lo, kw_v8 hi) {
    return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
/* max(a, 0) as _mm*_max_ps(a, 0) has it: a NaN becomes 0 */
KW_INLINE kw_v16 kw_relu(kw_v16 a) {
    kw_i16 keep = a > (kw_v16){0};
    return (kw_v16)((kw_i16)a & keep);
}

/* nt (1..KW_NT) tiles of one Winograd point's GEMM for 16 output channels (gemm16's contract). */
KW_INLINE void KW(gemm_rows)(float *M, int64_t mbs, const float *V, int64_t vbs, int64_t coff,
                             const float *U, int64_t nc, const int nt) {
    kw_v16 a[KW_NT];
#pragma GCC unroll 12
    for (int j = 0; j < nt; j++)
        a[j] = (kw_v16){0};
    const float *vb = V;
    int64_t c = 0, l0 = coff;
    while (c < nc) { /* one channel block at a time: lanes l0..7 of block vb */
        int64_t n8 = 8 - l0 < nc - c ? 8 - l0 : nc - c;
        const float *v = vb + l0, *u = U + c * 16;
#pragma GCC unroll 2
        for (int64_t i = 0; i < n8; i++, v++, u += 16) {
            kw_v16 w = kw_load(u);
#pragma GCC unroll 12
            for (int j = 0; j < nt; j++)
                a[j] += v[j * 8] * w;
        }
        c += n8, l0 = 0, vb += vbs;
    }
#pragma GCC unroll 12
    for (int j = 0; j < nt; j++)
        kw_store_halves(M + j * 8, M + mbs + j * 8, a[j]);
}

static void KW(gemm16)(float *M, int64_t mbs, const float *V, int64_t vbs, int64_t coff,
                       const float *U, int64_t nc, int64_t nt) {
    /* balanced groups of at most KW_NT tiles, as in kern_avx2.c */
    int64_t ng = (nt + KW_NT - 1) / KW_NT;
    for (int64_t g = 0; g < ng; g++) {
        int64_t t = g * nt / ng, n = (g + 1) * nt / ng - t;
        float *m = M + t * 8;
        const float *v = V + t * 8;
        switch (n) {
#define KW_CASE(k)                                                                               \
    case k: KW(gemm_rows)(m, mbs, v, vbs, coff, U, nc, k); break;
            KW_CASE(12) KW_CASE(11) KW_CASE(10) KW_CASE(9) KW_CASE(8) KW_CASE(7)
            KW_CASE(6) KW_CASE(5) KW_CASE(4) KW_CASE(3) KW_CASE(2) KW_CASE(1)
#undef KW_CASE
        default: break;
        }
    }
}

/* nq (1..KW_NT) output pixels of the direct conv, 16 output channels (direct16's contract);
 * the loop structure and prefetch hints are kern_avx2.c's direct16_px. */
KW_INLINE void KW(direct_px)(float *y0, float *y1, const int64_t *ob, const float *x,
                             const int64_t *ib, int64_t coff, int64_t xcs, int64_t Wp,
                             const float *w, int64_t wn, const float *bias, int64_t c_lo,
                             int64_t c_hi, int first, int relu, const rvg__prefetch_hint *pf,
                             const int nq) {
    kw_v16 a[KW_NT];
    const float *xj[KW_NT];
    if (first) {
        kw_v16 b = kw_load(bias);
#pragma GCC unroll 12
        for (int j = 0; j < nq; j++)
            a[j] = b;
    } else {
#pragma GCC unroll 12
        for (int j = 0; j < nq; j++)
            a[j] = kw_join(kw_load8(y0 + ob[j]), y1 ? kw_load8(y1 + ob[j]) : (kw_v8){0});
    }
#pragma GCC unroll 12
    for (int j = 0; j < nq; j++)
        xj[j] = x + ib[j];
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
#pragma GCC unroll 2
            for (int64_t i = 0; i < n8; i++, wt += 16) {
                kw_v16 u = kw_load(wt);
#pragma GCC unroll 12
                for (int j = 0; j < nq; j++)
                    a[j] += xj[j][o + i] * u;
            }
            c += n8, o += xcs - l0, l0 = 0;
        }
    }
#pragma GCC unroll 12
    for (int j = 0; j < nq; j++)
        kw_store_halves(y0 + ob[j], y1 ? y1 + ob[j] : NULL, relu ? kw_relu(a[j]) : a[j]);
}

static void KW(direct16)(float *y0, float *y1, const int64_t *ob, const float *x,
                         const int64_t *ib, int64_t nq, int64_t coff, int64_t xcs, int64_t Wp,
                         const float *w, int64_t wn, const float *bias, int64_t c_lo,
                         int64_t c_hi, int first, int relu, const rvg__prefetch_hint *pf) {
    switch (nq) {
#define KW_CASE(k)                                                                               \
    case k:                                                                                      \
        KW(direct_px)(y0, y1, ob, x, ib, coff, xcs, Wp, w, wn, bias, c_lo, c_hi, first, relu, \
                      pf, k);                                                                    \
        break;
        KW_CASE(12) KW_CASE(11) KW_CASE(10) KW_CASE(9) KW_CASE(8) KW_CASE(7)
        KW_CASE(6) KW_CASE(5) KW_CASE(4) KW_CASE(3) KW_CASE(2) KW_CASE(1)
#undef KW_CASE
    default: break;
    }
}
