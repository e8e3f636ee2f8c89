/* kern_body.h - the inference kernels written once in portable C, compiled twice.
 *
 * Included by kern_c.c (plain C, the fallback and the RVG_FORCE_REF path) and by kern_avx2.c
 * (same source built with -mavx2 -mfma, where the compiler turns every 8-lane loop into one
 * vector instruction). Every loop over `l < 8` is a lane loop over the 8 channels of a pack8
 * pixel; keeping them explicit (instead of intrinsics) gives one source for both builds. The
 * includer defines KN(name) to give the functions distinct names. The hot GEMM and direct
 * micro-kernels have intrinsic twins in kern_avx2.c; the versions here are their reference.
 *
 * Winograd matrices (Lavin & Gray 2015, "Fast Algorithms for Convolutional Neural Networks",
 * arXiv 1509.09308; F(6x6) points as in ncnn / NNPACK): Y = A^T [(G g G^T) . (B^T d B)] A.
 * They were checked numerically against direct correlation (error ~1e-14 in double).
 *
 * F(4x4, 3x3), points 0, 1, -1, 2, -2, inf:
 *   B^T = [ 4  0 -5  0  1  0 ]   G = [  1/4     0     0  ]   A^T = [ 1  1  1  1  1  0 ]
 *         [ 0 -4 -4  1  1  0 ]       [ -1/6  -1/6  -1/6  ]         [ 0  1 -1  2 -2  0 ]
 *         [ 0  4 -4 -1  1  0 ]       [ -1/6   1/6  -1/6  ]         [ 0  1  1  4  4  0 ]
 *         [ 0 -2 -1  2  1  0 ]       [  1/24  1/12  1/6  ]         [ 0  1 -1  8 -8  1 ]
 *         [ 0  2 -1 -2  1  0 ]       [  1/24 -1/12  1/6  ]
 *         [ 0  4  0 -5  0  1 ]       [  0     0     1    ]
 *
 * F(6x6, 3x3), points 0, 1, -1, 2, -2, 1/2, -1/2, inf:
 *   B^T = [ 1   0   -21/4   0     21/4  0    -1  0 ]   G = [  1      0      0    ]
 *         [ 0   1    1    -17/4 -17/4   1     1  0 ]       [ -2/9   -2/9   -2/9  ]
 *         [ 0  -1    1     17/4 -17/4  -1     1  0 ]       [ -2/9    2/9   -2/9  ]
 *         [ 0   1/2  1/4  -5/2   -5/4   2     1  0 ]       [  1/90   1/45   2/45 ]
 *         [ 0  -1/2  1/4   5/2   -5/4  -2     1  0 ]       [  1/90  -1/45   2/45 ]
 *         [ 0   2    4    -5/2   -5     1/2   1  0 ]       [ 32/45  16/45   8/45 ]
 *         [ 0  -2    4     5/2   -5    -1/2   1  0 ]       [ 32/45 -16/45   8/45 ]
 *         [ 0  -1    0     21/4   0   -21/4   0  1 ]       [  0      0      1    ]
 *   A^T = [ 1  1  1  1   1   1     1     0 ]
 *         [ 0  1 -1  2  -2   1/2  -1/2   0 ]
 *         [ 0  1  1  4   4   1/4   1/4   0 ]
 *         [ 0  1 -1  8  -8   1/8  -1/8   0 ]
 *         [ 0  1  1 16  16   1/16  1/16  0 ]
 *         [ 0  1 -1 32 -32   1/32 -1/32  1 ]
 * F(5x5, 3x3), points 0, 1, -1, 2, -2, 1/2, inf (for 14x14 maps: 9 tiles of 7x7 points, 441
 * products per channel pair, against 576 for both F(4x4) and F(6x6), which need 16 and 9 tiles):
 *   B^T = [ -2   4   5/2  -5   -1/2  1  0 ]   G = [ -1/2    0     0   ]
 *         [  0   2  -2   -9/2   1/2  1  0 ]       [ -1/3  -1/3  -1/3  ]
 *         [  0  -2   6   -7/2  -3/2  1  0 ]       [  1/9  -1/9   1/9  ]
 *         [  0   1  -3/2 -2     3/2  1  0 ]       [  1/36  1/18  1/9  ]
 *         [  0  -1   5/2  0    -5/2  1  0 ]       [ -1/60  1/30 -1/15  ]
 *         [  0   4   0   -5     0    1  0 ]       [ 32/45 16/45  8/45  ]
 *         [  0  -2   4    5/2  -5  -1/2  1 ]       [  0     0     1    ]
 *   A^T = [ 1  1  1  1   1   1     0 ]
 *         [ 0  1 -1  2  -2   1/2   0 ]
 *         [ 0  1  1  4   4   1/4   0 ]
 *         [ 0  1 -1  8  -8   1/8   0 ]
 *         [ 0  1  1 16  16   1/16  1 ]
 * Adding the point 1/2 to F(4x4)'s multiplies each of F(4x4)'s B^T polynomials by (x - 1/2), so
 * those six rows are F(4x4)'s B^T applied to e_u = d_(u+1) - d_u / 2 (u < 6), and G's rows are
 * F(4x4)'s divided by (p - 1/2); the row for 1/2 is x (x^2 - 1) (x^2 - 4). (Derived by hand,
 * checked against a least-squares solve of the Winograd identity and against direct correlation,
 * error ~1e-14 in double; in float over 192 channels it lies between F(4x4)'s and F(6x6)'s.)
 *
 * G is applied at load time in engine.c (in double); B^T and A^T are spelled out as the sparse
 * row formulas, applied first along rows then along columns: F(5x5)'s and F(6x6)'s below,
 * F(4x4)'s in ops/winograd_f43.h, which the training convolution shares.
 */

#define LANES for (int l = 0; l < 8; l++)

/* Copies one 8-float vector. kern_avx2.c defines it as one 256-bit load and store: GCC expands
 * the plain loop as two 128-bit moves, and a 128-bit load of the upper half of a just-written
 * 256-bit value misses store forwarding (it was 45% of the input transform). */
#ifndef KCOPY8
#define KCOPY8(dst, src) \
    do {                 \
        LANES(dst)[l] = (src)[l]; \
    } while (0)
#endif

/* The 1-D transforms must be inlined into their callers, where the strides become constants:
 * with runtime strides GCC's -O2 vectorizer would need alias checks and keeps them scalar. */
#define KINLINE static RVG__ALWAYS_INLINE

/* bt4 (6 -> 6, B^T) and at4 (6 -> 4, A^T) of F(4x4), shared with the training convolution */
#define RVG__WF43_LANES 8
#define RVG__WF43_NAME(x) KN(x##4)
#include "ops/winograd_f43.h"

/* (7 -> 7) with BT5: F(4x4)'s map (bt4) on e_u = d_(u+1) - d_u / 2, plus the row of the point
 * 1/2; bt4's formulas are written out again here in one lane loop: through bt4 and two local
 * arrays it ran ~2x slower, through bt4, one array and a row move ~30% slower (sum of stage 3's
 * input transforms, A0, `bench_infer --profile`, 5 alternating rounds: 0.59-0.87 ms written
 * out, 0.76-1.05 ms through bt4) */
KINLINE void KN(bt5)(float *restrict o, int64_t os, const float *restrict d, int64_t ds) {
    LANES {
        float d0 = d[l], d1 = d[ds + l], d2 = d[2 * ds + l], d3 = d[3 * ds + l];
        float d4 = d[4 * ds + l], d5 = d[5 * ds + l], d6 = d[6 * ds + l];
        float e0 = d1 - 0.5f * d0, e1 = d2 - 0.5f * d1, e2 = d3 - 0.5f * d2;
        float e3 = d4 - 0.5f * d3, e4 = d5 - 0.5f * d4, e5 = d6 - 0.5f * d5;
        o[l] = 4.f * e0 - 5.f * e2 + e4;
        o[os + l] = -4.f * (e1 + e2) + e3 + e4;
        o[2 * os + l] = 4.f * (e1 - e2) - e3 + e4;
        o[3 * os + l] = 2.f * (e3 - e1) - e2 + e4;
        o[4 * os + l] = 2.f * (e1 - e3) - e2 + e4;
        o[5 * os + l] = 4.f * d1 - 5.f * d3 + d5;
        o[6 * os + l] = 4.f * e1 - 5.f * e3 + e5;
    }
}

/* (7 -> 5) with AT5 */
KINLINE void KN(at5)(float *restrict o, int64_t os, const float *restrict d, int64_t ds) {
    LANES {
        float d0 = d[l], d1 = d[ds + l], d2 = d[2 * ds + l], d3 = d[3 * ds + l];
        float d4 = d[4 * ds + l], d5 = d[5 * ds + l], d6 = d[6 * ds + l];
        float s12 = d1 + d2, m12 = d1 - d2, s34 = d3 + d4, m34 = d3 - d4;
        o[l] = d0 + s12 + s34 + d5;
        o[os + l] = m12 + 2.f * m34 + 0.5f * d5;
        o[2 * os + l] = s12 + 4.f * s34 + 0.25f * d5;
        o[3 * os + l] = m12 + 8.f * m34 + 0.125f * d5;
        o[4 * os + l] = s12 + 16.f * s34 + 0.0625f * d5 + d6;
    }
}

/* (8 -> 8) with BT6 */
KINLINE void KN(bt6)(float *restrict o, int64_t os, const float *restrict d, int64_t ds) {
    LANES {
        float d0 = d[l], d1 = d[ds + l], d2 = d[2 * ds + l], d3 = d[3 * ds + l];
        float d4 = d[4 * ds + l], d5 = d[5 * ds + l], d6 = d[6 * ds + l], d7 = d[7 * ds + l];
        o[l] = d0 - d6 + 5.25f * (d4 - d2);
        o[7 * os + l] = d7 - d1 + 5.25f * (d3 - d5);
        float a = d2 + d6 - 4.25f * d4, b = d1 + d5 - 4.25f * d3;
        o[os + l] = a + b;
        o[2 * os + l] = a - b;
        a = 0.25f * d2 - 1.25f * d4 + d6;
        b = 0.5f * d1 - 2.5f * d3 + 2.f * d5;
        o[3 * os + l] = a + b;
        o[4 * os + l] = a - b;
        a = 4.f * d2 - 5.f * d4 + d6;
        b = 2.f * d1 - 2.5f * d3 + 0.5f * d5;
        o[5 * os + l] = a + b;
        o[6 * os + l] = a - b;
    }
}

/* (8 -> 6) with AT6 */
KINLINE void KN(at6)(float *restrict o, int64_t os, const float *restrict d, int64_t ds) {
    LANES {
        float d0 = d[l], d1 = d[ds + l], d2 = d[2 * ds + l], d3 = d[3 * ds + l];
        float d4 = d[4 * ds + l], d5 = d[5 * ds + l], d6 = d[6 * ds + l], d7 = d[7 * ds + l];
        float s12 = d1 + d2, m12 = d1 - d2, s34 = d3 + d4, m34 = d3 - d4;
        float s56 = d5 + d6, m56 = d5 - d6;
        o[l] = d0 + s12 + s34 + s56;
        o[os + l] = m12 + 2.f * m34 + 0.5f * m56;
        o[2 * os + l] = s12 + 4.f * s34 + 0.25f * s56;
        o[3 * os + l] = m12 + 8.f * m34 + 0.125f * m56;
        o[4 * os + l] = s12 + 16.f * s34 + 0.0625f * s56;
        o[5 * os + l] = m12 + 32.f * m34 + 0.03125f * m56 + d7;
    }
}

static void KN(wino4_in)(float *V, int64_t vs, int64_t vbs, const float *x, int64_t Wp,
                         int64_t xcs, int64_t ncb) {
    /* t: row-transformed tile, t[i][k] = sum_j BT[k][j] d[i][j]; u: the finished tile, built in
     * a local array with constant strides so the lane loops vectorize (a runtime output stride
     * makes GCC's -O2 vectorizer give up), then copied to the 36 planes of V. */
    float t[6][6][8], u[6][6][8];
    for (int64_t b = 0; b < ncb; b++) {
        const float *xb = x + b * xcs;
        for (int i = 0; i < 6; i++)
            KN(bt4)(&t[i][0][0], 8, xb + (int64_t)i * Wp * 8, 8);
        for (int k = 0; k < 6; k++)
            KN(bt4)(&u[0][k][0], 6 * 8, &t[0][k][0], 6 * 8);
        for (int xi = 0; xi < 36; xi++) {
            KCOPY8(V + xi * vs + b * vbs, u[xi / 6][xi % 6]);
        }
    }
}

static void KN(wino5_in)(float *V, int64_t vs, int64_t vbs, const float *x, int64_t Wp,
                         int64_t xcs, int64_t ncb) {
    float t[7][7][8], u[7][7][8]; /* as in wino4_in */
    for (int64_t b = 0; b < ncb; b++) {
        const float *xb = x + b * xcs;
        for (int i = 0; i < 7; i++)
            KN(bt5)(&t[i][0][0], 8, xb + (int64_t)i * Wp * 8, 8);
        for (int k = 0; k < 7; k++)
            KN(bt5)(&u[0][k][0], 7 * 8, &t[0][k][0], 7 * 8);
        for (int xi = 0; xi < 49; xi++) {
            KCOPY8(V + xi * vs + b * vbs, u[xi / 7][xi % 7]);
        }
    }
}

static void KN(wino6_in)(float *V, int64_t vs, int64_t vbs, const float *x, int64_t Wp,
                         int64_t xcs, int64_t ncb) {
    float t[8][8][8], u[8][8][8]; /* as in wino4_in */
    for (int64_t b = 0; b < ncb; b++) {
        const float *xb = x + b * xcs;
        for (int i = 0; i < 8; i++)
            KN(bt6)(&t[i][0][0], 8, xb + (int64_t)i * Wp * 8, 8);
        for (int k = 0; k < 8; k++)
            KN(bt6)(&u[0][k][0], 8 * 8, &t[0][k][0], 8 * 8);
        for (int xi = 0; xi < 64; xi++) {
            KCOPY8(V + xi * vs + b * vbs, u[xi / 8][xi % 8]);
        }
    }
}

/* Adds bias, clamps, stores the first mh x mw of an m x m tile o[i][j][8] at y (rows Wp*8). */
KINLINE void KN(store_tile)(float *restrict y, int64_t Wp, const float *restrict o, int m,
                            const float *restrict bias, int mh, int mw, int relu) {
    for (int i = 0; i < mh; i++)
        for (int j = 0; j < mw; j++) {
            const float *src = o + (i * m + j) * 8;
            float *dst = y + ((int64_t)i * Wp + j) * 8;
            if (relu) {
                LANES {
                    float v = src[l] + bias[l];
                    dst[l] = v > 0.f ? v : 0.f;
                }
            } else {
                LANES dst[l] = src[l] + bias[l];
            }
        }
}

static void KN(wino4_out)(float *y, int64_t Wp, int64_t ycs, const float *M, int64_t ms,
                          int64_t mbs, const float *bias, int64_t nkb, int mh, int mw, int relu) {
    float t[6][4][8], o[4][4][8];
    for (int64_t b = 0; b < nkb; b++) {
        /* rows of the 6x6 point grid: t[i][j] = sum_k AT[j][k] M[i][k] */
        for (int i = 0; i < 6; i++)
            KN(at4)(&t[i][0][0], 8, M + (int64_t)i * 6 * ms + b * mbs, ms);
        for (int j = 0; j < 4; j++)
            KN(at4)(&o[0][j][0], 4 * 8, &t[0][j][0], 4 * 8);
        KN(store_tile)(y + b * ycs, Wp, &o[0][0][0], 4, bias + b * 8, mh, mw, relu);
    }
}

static void KN(wino5_out)(float *y, int64_t Wp, int64_t ycs, const float *M, int64_t ms,
                          int64_t mbs, const float *bias, int64_t nkb, int mh, int mw, int relu) {
    float t[7][5][8], o[5][5][8];
    for (int64_t b = 0; b < nkb; b++) {
        for (int i = 0; i < 7; i++)
            KN(at5)(&t[i][0][0], 8, M + (int64_t)i * 7 * ms + b * mbs, ms);
        for (int j = 0; j < 5; j++)
            KN(at5)(&o[0][j][0], 5 * 8, &t[0][j][0], 5 * 8);
        KN(store_tile)(y + b * ycs, Wp, &o[0][0][0], 5, bias + b * 8, mh, mw, relu);
    }
}

static void KN(wino6_out)(float *y, int64_t Wp, int64_t ycs, const float *M, int64_t ms,
                          int64_t mbs, const float *bias, int64_t nkb, int mh, int mw, int relu) {
    float t[8][6][8], o[6][6][8];
    for (int64_t b = 0; b < nkb; b++) {
        for (int i = 0; i < 8; i++)
            KN(at6)(&t[i][0][0], 8, M + (int64_t)i * 8 * ms + b * mbs, ms);
        for (int j = 0; j < 6; j++)
            KN(at6)(&o[0][j][0], 6 * 8, &t[0][j][0], 6 * 8);
        KN(store_tile)(y + b * ycs, Wp, &o[0][0][0], 6, bias + b * 8, mh, mw, relu);
    }
}

/* G of F(4x4), F(5x5) and F(6x6) in float, for the on-the-fly weight transform (engine.c
 * applies the same matrices in double at load time). */
#ifndef KERN_OWN_WROW /* the SIMD sets take kern_micro.h's */
static void KN(wino_wrow)(float *restrict U, const float *restrict g, int64_t nc, int n, int i) {
    const float(*Gm)[3] = n == 6 ? rvg__wino_g4 : n == 7 ? rvg__wino_g5 : rvg__wino_g6;
    const float a0 = Gm[i][0], a1 = Gm[i][1], a2 = Gm[i][2];
    for (int64_t c = 0; c < nc; c++) {
        float t[3][16]; /* t[s] = sum_r G[i][r] g[r][s]: row i of G g */
        const float *gc = g + c * 144;
        for (int s = 0; s < 3; s++)
            for (int l = 0; l < 16; l++)
                t[s][l] = a0 * gc[s * 16 + l] + a1 * gc[(3 + s) * 16 + l] +
                          a2 * gc[(6 + s) * 16 + l];
        for (int j = 0; j < n; j++) {
            const float b0 = Gm[j][0], b1 = Gm[j][1], b2 = Gm[j][2];
            float *u = U + j * WROW_STRIDE(nc) + c * 16;
            for (int l = 0; l < 16; l++)
                u[l] = t[0][l] * b0 + t[1][l] * b1 + t[2][l] * b2;
        }
    }
}
#endif

/* Padded rows [r0, r1) of one image: zeroes them, then copies input rows r - 1 into the interior
 * (C channels scattered into pack8 lanes; lanes >= C stay 0). */
static void KN(pack_input)(float *y, const float *x, int64_t C, int64_t H, int64_t W, int64_t Hp,
                           int64_t Wp, int64_t r0, int64_t r1) {
    int64_t CB = (C + 7) / 8;
    for (int64_t cb = 0; cb < CB; cb++) {
        float *yb = y + cb * Hp * Wp * 8;
        for (int64_t i = r0 * Wp * 8; i < r1 * Wp * 8; i++)
            yb[i] = 0.f;
        for (int64_t c = cb * 8; c < C && c < cb * 8 + 8; c++)
            for (int64_t r = r0 > 1 ? r0 : 1; r < r1 && r <= H; r++) {
                const float *xr = x + (c * H + r - 1) * W;
                float *yr = yb + (r * Wp + 1) * 8 + c % 8;
                for (int64_t w = 0; w < W; w++)
                    yr[w * 8] = xr[w];
            }
    }
}

static void KN(fc)(float *out, const float *in, const float *w, const float *b, int64_t J,
                   int64_t K) {
    for (int64_t j = 0; j < J; j++) {
        const float *wj = w + j * K;
        float acc[8] = {0};
        int64_t k = 0;
        for (; k + 8 <= K; k += 8)
            LANES acc[l] += wj[k + l] * in[k + l];
        float s = b[j];
        for (; k < K; k++)
            s += wj[k] * in[k];
        for (int l = 0; l < 8; l++)
            s += acc[l];
        out[j] = s;
    }
}
