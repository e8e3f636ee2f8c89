/* kern_c.c - the portable C inference kernels: the fallback when AVX2/FMA is missing or SIMD is
 * off (-DRVG_SIMD=OFF), and the reference twins of the intrinsic micro-kernels in kern_avx2.c.
 *
 * The transforms and helpers come from kern_body.h; only the two micro-kernels (Winograd GEMM,
 * direct conv) are spelled out here in plain C. Speed is secondary: the compiler may vectorize the
 * 16-lane loops with SSE2, but nothing here depends on it.
 */
#include "infer_impl.h"

#define KN(name) name##_c
#include "kern_body.h"

static void gemm16_c(float *M, int64_t mbs, const float *V, int64_t vbs, int64_t coff,
                     const float *U, int64_t nc, int64_t nt) {
    for (int64_t t = 0; t < nt; t += 4) {
        int64_t nr = nt - t < 4 ? nt - t : 4;
        float acc[4][16] = {{0}};
        for (int64_t c = 0; c < nc; c++) {
            const float *u = U + c * 16;
            const float *v = V + ((coff + c) / 8) * vbs + (coff + c) % 8 + t * 8;
            for (int64_t j = 0; j < nr; j++)
                for (int l = 0; l < 16; l++)
                    acc[j][l] += v[j * 8] * u[l];
        }
        for (int64_t j = 0; j < nr; j++)
            for (int l = 0; l < 8; l++) {
                M[(t + j) * 8 + l] = acc[j][l];
                M[mbs + (t + j) * 8 + l] = acc[j][l + 8];
            }
    }
}

static void direct16_c(float *y0, float *y1, const int64_t *ob, const float *x, const int64_t *ib,
                       int64_t nq, int64_t coff, int64_t xcs, int64_t Wp, const float *w,
                       int64_t wn, const float *bias, int64_t c_lo, int64_t c_hi, int first,
                       int relu, const rvg__prefetch_hint *pf) {
    float acc[6][16];
    for (int t = 0; t < 9; t++) /* up front: this twin's speed is secondary */
        rvg__prefetch_tap(pf, t);
    for (int64_t c = c_lo; c < c_hi; c += 8)
        for (int r = 0; r < 3; r++)
            rvg__prefetch_pixels(pf, x, ((coff + c) / 8) * xcs + r * Wp * 8);
    for (int64_t j = 0; j < nq; j++)
        for (int l = 0; l < 16; l++)
            acc[j][l] = first ? bias[l] : l < 8 ? y0[ob[j] + l] : y1 ? y1[ob[j] + l - 8] : 0.f;
    for (int64_t c = c_lo; c < c_hi; c++) {
        int64_t cc = coff + c;
        const float *xc = x + (cc / 8) * xcs + cc % 8;
        for (int r = 0; r < 3; r++)
            for (int s = 0; s < 3; s++) {
                const float *u = w + ((r * 3 + s) * wn + c) * 16;
                for (int64_t j = 0; j < nq; j++) {
                    float v = xc[ib[j] + ((int64_t)r * Wp + s) * 8];
                    for (int l = 0; l < 16; l++)
                        acc[j][l] += v * u[l];
                }
            }
    }
    for (int64_t j = 0; j < nq; j++)
        for (int l = 0; l < 16; l++) {
            float v = acc[j][l];
            if (relu && v < 0.f)
                v = 0.f;
            if (l < 8)
                y0[ob[j] + l] = v;
            else if (y1)
                y1[ob[j] + l - 8] = v;
        }
}

const rvg__infer_kernels rvg__infer_kernels_c = {
    .pack_input = pack_input_c,
    .wino_in = {wino4_in_c, wino5_in_c, wino6_in_c},
    .wino_out = {wino4_out_c, wino5_out_c, wino6_out_c},
    .gemm16 = gemm16_c,
    .direct16 = direct16_c,
    .direct_px = 6,
    .wino_wrow = wino_wrow_c,
    .fc = fc_c,
};
