/* winograd_f43.h - the input and output maps of Winograd F(4x4, 3x3) on vectors of lanes, written
 * once for the training convolution (src/ops/conv2d_winograd.c: 16 channels per vector) and the
 * inference engine (src/infer/kern_body.h: the 8 channels of a pack8 pixel, built twice).
 *
 * A template header: the includer defines
 *   RVG__WF43_LANES    the lanes per vector, a constant (the lane loops then become vector code);
 *   RVG__WF43_NAME(x)  the name given to map x (so that one file can hold several builds);
 * and gets two always-inline static functions, which read six vectors `is` floats apart from d and
 * write vectors `os` floats apart to o:
 *   NAME(bt):  o_i = sum_k B^T[i][k] d_k    six in, six out (the input transform, rows then columns)
 *   NAME(at):  o_a = sum_i A^T[a][i] d_i    six in, four out (the output transform)
 * The macros are undefined at the end, so the header can be included again with other values.
 * The transposed maps that only training needs (dx, dM) stay in conv2d_winograd.c.
 *
 * Interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray 2015, arXiv 1509.09308):
 *   B^T = [ 4  0 -5  0  1  0 ]     A^T = [ 1  1  1  1  1  0 ]
 *         [ 0 -4 -4  1  1  0 ]           [ 0  1 -1  2 -2  0 ]
 *         [ 0  4 -4 -1  1  0 ]           [ 0  1  1  4  4  0 ]
 *         [ 0 -2 -1  2  1  0 ]           [ 0  1 -1  8 -8  1 ]
 *         [ 0  2 -1 -2  1  0 ]
 *         [ 0  4  0 -5  0  1 ]
 * (G, for the weights, is applied by each caller: in float per training step, in double at load
 * time for inference.) Both callers' tests were measured with exactly these expressions; changing
 * their order changes rounding in both.
 *
 * Needs RVG__ALWAYS_INLINE (core/compiler_impl.h) and <stdint.h>.
 */
#if !defined(RVG__WF43_LANES) || !defined(RVG__WF43_NAME)
#error "define RVG__WF43_LANES and RVG__WF43_NAME(x) before including ops/winograd_f43.h"
#endif

static RVG__ALWAYS_INLINE void RVG__WF43_NAME(bt)(float *restrict o, int64_t os,
                                                  const float *restrict d, int64_t is) {
    for (int l = 0; l < RVG__WF43_LANES; l++) {
        const float a0 = d[l], a1 = d[is + l], a2 = d[2 * is + l], a3 = d[3 * is + l],
                    a4 = d[4 * is + l], a5 = d[5 * is + l];
        o[l] = 4.0f * a0 - 5.0f * a2 + a4;
        o[os + l] = -4.0f * (a1 + a2) + a3 + a4;
        o[2 * os + l] = 4.0f * (a1 - a2) - a3 + a4;
        o[3 * os + l] = 2.0f * (a3 - a1) - a2 + a4;
        o[4 * os + l] = 2.0f * (a1 - a3) - a2 + a4;
        o[5 * os + l] = 4.0f * a1 - 5.0f * a3 + a5;
    }
}

static RVG__ALWAYS_INLINE void RVG__WF43_NAME(at)(float *restrict o, int64_t os,
                                                  const float *restrict d, int64_t is) {
    for (int l = 0; l < RVG__WF43_LANES; l++) {
        const float a0 = d[l], a1 = d[is + l], a2 = d[2 * is + l], a3 = d[3 * is + l],
                    a4 = d[4 * is + l], a5 = d[5 * is + l];
        const float s12 = a1 + a2, d12 = a1 - a2, s34 = a3 + a4, d34 = a3 - a4;
        o[l] = a0 + s12 + s34;
        o[os + l] = d12 + 2.0f * d34;
        o[2 * os + l] = s12 + 4.0f * s34;
        o[3 * os + l] = d12 + 8.0f * d34 + a5;
    }
}

#undef RVG__WF43_LANES
#undef RVG__WF43_NAME
