/* conv2d.c - reference (portable, plain C11) grouped 2-D convolution, forward and backward.
 *
 * Does: direct convolution over flat NCHW floats with any kernel size R x S, stride, symmetric zero
 * padding and groups G, matching torch.nn.functional.conv2d (cross-correlation, weight
 * (K, C/G, R, S), optional bias). Backward gives dx (transposed convolution of dy), dw and dbias,
 * accumulating (+=). Loops are ordered so the innermost one walks a contiguous output row (q), and
 * the valid p/q range of each tap is computed once, so the inner loop has no bounds test. dw and
 * dbias are summed in double per weight (reduction length N*P*Q). The 3x3 + 1x1 pair of a
 * train-form block (rvg_conv2d_*_3x3_1x1_ref) is two plain calls, the oracle of the fused kernel.
 *
 * Does not: validate shapes (callers do), use the workspace (it may be NULL), dilate, pad
 * asymmetrically, or try to be fast beyond loop order; the tuned kernels live in src/ops/x86/.
 */
#include "rvg/ops.h"

void rvg_conv_shape_finish(rvg_conv_shape *s) {
    s->P = (s->H + 2 * s->pad - s->R) / s->stride + 1;
    s->Q = (s->W + 2 * s->pad - s->S) / s->stride + 1;
}

/* Range [*lo, *hi) of output indices o in [0, n_out) whose input index o*stride - pad + tap lies in
 * [0, n_in). Empty when *lo >= *hi. */
static void valid_range(int64_t *lo, int64_t *hi, int64_t tap, int64_t stride, int64_t pad,
                        int64_t n_in, int64_t n_out) {
    /* o*stride >= pad - tap  and  o*stride <= n_in - 1 + pad - tap */
    int64_t a = pad - tap;
    int64_t b = n_in - 1 + pad - tap;
    int64_t l = a <= 0 ? 0 : (a + stride - 1) / stride;
    int64_t h = b < 0 ? 0 : b / stride + 1;
    if (h > n_out)
        h = n_out;
    *lo = l;
    *hi = h;
}

void rvg_conv2d_forward_ref(float *y, const float *x, const float *w, const float *bias,
                            const rvg_conv_shape *s, void *work) {
    (void)work;
    const int64_t N = s->N, C = s->C, H = s->H, W = s->W, K = s->K, R = s->R, S = s->S;
    const int64_t P = s->P, Q = s->Q, st = s->stride, pad = s->pad, G = s->G;
    const int64_t Cg = C / G, Kg = K / G;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++) {
            const int64_t g = k / Kg;
            float *restrict yk = y + (n * K + k) * P * Q;   /* (P, Q) */
            const float b = bias ? bias[k] : 0.0f;
            for (int64_t i = 0; i < P * Q; i++)
                yk[i] = b;
            for (int64_t c = 0; c < Cg; c++) {
                const float *restrict xc = x + (n * C + g * Cg + c) * H * W;   /* (H, W) */
                const float *restrict wkc = w + (k * Cg + c) * R * S;          /* (R, S) */
                for (int64_t r = 0; r < R; r++) {
                    int64_t p0, p1;
                    valid_range(&p0, &p1, r, st, pad, H, P);
                    for (int64_t sx = 0; sx < S; sx++) {
                        const float wv = wkc[r * S + sx];
                        int64_t q0, q1;
                        valid_range(&q0, &q1, sx, st, pad, W, Q);
                        const int64_t off = sx - pad;   /* input column = q*st + off */
                        for (int64_t p = p0; p < p1; p++) {
                            const float *restrict xrow = xc + (p * st - pad + r) * W;
                            float *restrict yrow = yk + p * Q;
                            for (int64_t q = q0; q < q1; q++)
                                yrow[q] += wv * xrow[q * st + off];
                        }
                    }
                }
            }
        }
    }
}

void rvg_conv2d_backward_ref(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                             const float *w, const rvg_conv_shape *s, void *work) {
    (void)work;
    const int64_t N = s->N, C = s->C, H = s->H, W = s->W, K = s->K, R = s->R, S = s->S;
    const int64_t P = s->P, Q = s->Q, st = s->stride, pad = s->pad, G = s->G;
    const int64_t Cg = C / G, Kg = K / G;

    /* dbias[k] += sum over n, p, q of dy; summed in double (reduction length N*P*Q). */
    if (dbias) {
        for (int64_t k = 0; k < K; k++) {
            double acc = 0.0;
            for (int64_t n = 0; n < N; n++) {
                const float *dyk = dy + (n * K + k) * P * Q;
                for (int64_t i = 0; i < P * Q; i++)
                    acc += dyk[i];
            }
            dbias[k] += (float)acc;
        }
    }

    /* dw[k, c, r, s] += sum over n, p, q of dy[n, k, p, q] * x[n, g*Cg+c, p*st-pad+r, q*st-pad+s],
     * accumulated in double per weight (reduction length N*P*Q). */
    if (dw) {
        for (int64_t k = 0; k < K; k++) {
            const int64_t g = k / Kg;
            for (int64_t c = 0; c < Cg; c++) {
                for (int64_t r = 0; r < R; r++) {
                    int64_t p0, p1;
                    valid_range(&p0, &p1, r, st, pad, H, P);
                    for (int64_t sx = 0; sx < S; sx++) {
                        int64_t q0, q1;
                        valid_range(&q0, &q1, sx, st, pad, W, Q);
                        const int64_t off = sx - pad;   /* input column = q*st + off */
                        double acc = 0.0;
                        for (int64_t n = 0; n < N; n++) {
                            const float *xc = x + (n * C + g * Cg + c) * H * W;   /* (H, W) */
                            const float *dyk = dy + (n * K + k) * P * Q;          /* (P, Q) */
                            for (int64_t p = p0; p < p1; p++) {
                                const float *xrow = xc + (p * st - pad + r) * W;
                                const float *dyrow = dyk + p * Q;
                                float part = 0.0f;
                                for (int64_t q = q0; q < q1; q++)
                                    part += dyrow[q] * xrow[q * st + off];
                                acc += part;
                            }
                        }
                        dw[((k * Cg + c) * R + r) * S + sx] += (float)acc;
                    }
                }
            }
        }
    }

    /* dx[n, g*Cg + c, h, w] += sum over k in group g, r, s of w[k, c, r, s] * dy[n, k, p, q] where
     * h = p*st - pad + r and w = q*st - pad + s: the forward loop with x and y swapped. */
    if (dx) {
        for (int64_t n = 0; n < N; n++) {
            for (int64_t k = 0; k < K; k++) {
                const int64_t g = k / Kg;
                const float *restrict dyk = dy + (n * K + k) * P * Q;   /* (P, Q) */
                for (int64_t c = 0; c < Cg; c++) {
                    float *restrict dxc = dx + (n * C + g * Cg + c) * H * W;   /* (H, W) */
                    const float *restrict wkc = w + (k * Cg + c) * R * S;      /* (R, S) */
                    for (int64_t r = 0; r < R; r++) {
                        int64_t p0, p1;
                        valid_range(&p0, &p1, r, st, pad, H, P);
                        for (int64_t sx = 0; sx < S; sx++) {
                            const float wv = wkc[r * S + sx];
                            int64_t q0, q1;
                            valid_range(&q0, &q1, sx, st, pad, W, Q);
                            const int64_t off = sx - pad;   /* input column = q*st + off */
                            for (int64_t p = p0; p < p1; p++) {
                                float *restrict dxrow = dxc + (p * st - pad + r) * W;
                                const float *restrict dyrow = dyk + p * Q;
                                for (int64_t q = q0; q < q1; q++)
                                    dxrow[q * st + off] += wv * dyrow[q];
                            }
                        }
                    }
                }
            }
        }
    }
}

/* ---- the 3x3 + 1x1 pair: two plain calls (the oracle of the fused fast kernel) --------------- */

static rvg_conv_shape shape_1x1(const rvg_conv_shape *s3) {
    rvg_conv_shape s1 = *s3;
    s1.R = s1.S = 1;
    s1.pad = 0;
    rvg_conv_shape_finish(&s1);
    return s1;
}

void rvg_conv2d_forward_3x3_1x1_ref(float *z3, float *z1, const float *x, const float *w3,
                                    const float *w1, const rvg_conv_shape *s3, void *work) {
    const rvg_conv_shape s1 = shape_1x1(s3);
    rvg_conv2d_forward_ref(z3, x, w3, NULL, s3, work);
    rvg_conv2d_forward_ref(z1, x, w1, NULL, &s1, work);
}

void rvg_conv2d_backward_3x3_1x1_ref(float *dx, float *dw3, float *dw1, const float *dz3,
                                     const float *dz1, const float *x, const float *w3,
                                     const float *w1, const rvg_conv_shape *s3, void *work) {
    const rvg_conv_shape s1 = shape_1x1(s3);
    rvg_conv2d_backward_ref(dx, dw3, NULL, dz3, x, w3, s3, work);
    rvg_conv2d_backward_ref(dx, dw1, NULL, dz1, x, w1, &s1, work);
}
