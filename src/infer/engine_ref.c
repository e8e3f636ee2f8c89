/* engine_ref.c - the reference deploy-form forward pass: plain C direct convolution, the oracle.
 *
 * Straight loops over NCHW float arrays with double accumulators, one layer at a time, no threads
 * and no SIMD, so it is slow and obviously right. It also holds the shape checks that the fast
 * engine shares (rvg_infer_check). It deliberately does not try to be fast.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rvg/infer.h"
#include "infer_impl.h"
#include "rvg/tensor.h"

rvg_status rvg_infer_check(const rvg_infer_layer *layers, int64_t n_layers, int64_t in_ch,
                           int64_t H, int64_t W, int64_t *k_last) {
    if (!layers || n_layers < 1)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "infer: need at least one layer (got %lld)",
                         (long long)n_layers);
    if (in_ch < 1 || H < 1 || W < 1)
        return rvg_error(RVG_STATUS_BAD_SHAPE, "infer: bad input shape (%lld, %lld, %lld)",
                         (long long)in_ch, (long long)H, (long long)W);
    int64_t C = in_ch;
    for (int64_t i = 0; i < n_layers; i++) {
        const rvg_infer_layer *L = &layers[i];
        if (L->C != C)
            return rvg_error(RVG_STATUS_BAD_SHAPE, "infer: layer %lld has C=%lld, expected %lld",
                             (long long)i, (long long)L->C, (long long)C);
        if (L->K < 1 || L->G < 1 || L->C % L->G || L->K % L->G)
            return rvg_error(RVG_STATUS_BAD_SHAPE,
                             "infer: layer %lld: C=%lld and K=%lld must be multiples of G=%lld",
                             (long long)i, (long long)L->C, (long long)L->K, (long long)L->G);
        if (L->stride != 1 && L->stride != 2)
            return rvg_error(RVG_STATUS_BAD_ARGUMENT, "infer: layer %lld: stride %lld (1 or 2)",
                             (long long)i, (long long)L->stride);
        if (!L->weight || !L->bias)
            return rvg_error(RVG_STATUS_BAD_ARGUMENT, "infer: layer %lld: NULL weight or bias",
                             (long long)i);
        if (L->se_hidden < 0 || (L->se_hidden > 0 && (!L->se_down_w || !L->se_down_b ||
                                                      !L->se_up_w || !L->se_up_b)))
            return rvg_error(RVG_STATUS_BAD_ARGUMENT, "infer: layer %lld: incomplete SE weights",
                             (long long)i);
        H = (H - 1) / L->stride + 1; /* (H + 2*1 - 3) / s + 1 */
        W = (W - 1) / L->stride + 1;
        C = L->K;
    }
    if (k_last)
        *k_last = C;
    return RVG_OK;
}

/* y (N,K,P,Q) = conv3x3(x (N,C,H,W), w (K,C/G,3,3), pad 1, stride s, groups G) + b. */
static void conv3x3_ref(float *y, const float *x, const float *w, const float *b, int64_t N,
                        int64_t C, int64_t H, int64_t W, int64_t K, int64_t s, int64_t G,
                        int64_t P, int64_t Q) {
    int64_t Cg = C / G, Kg = K / G;
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) {
            int64_t g = k / Kg;
            for (int64_t p = 0; p < P; p++)
                for (int64_t q = 0; q < Q; q++) {
                    double acc = b[k];
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t r = 0; r < 3; r++) {
                            int64_t iy = p * s + r - 1;
                            if (iy < 0 || iy >= H)
                                continue;
                            for (int64_t t = 0; t < 3; t++) {
                                int64_t ix = q * s + t - 1;
                                if (ix < 0 || ix >= W)
                                    continue;
                                acc += (double)w[((k * Cg + c) * 3 + r) * 3 + t] *
                                       x[((n * C + g * Cg + c) * H + iy) * W + ix];
                            }
                        }
                    y[((n * K + k) * P + p) * Q + q] = (float)acc;
                }
        }
}

/* In place on s (N,K,HW): SE gate (see infer.h) then ReLU; without SE just ReLU. */
static rvg_status se_relu_ref(float *s, const rvg_infer_layer *L, int64_t N, int64_t HW) {
    int64_t K = L->K, Hd = L->se_hidden;
    if (Hd == 0) {
        for (int64_t i = 0; i < N * K * HW; i++)
            s[i] = s[i] > 0.f ? s[i] : 0.f;
        return RVG_OK;
    }
    double *m = malloc(sizeof(double) * (size_t)(K + Hd));
    if (!m)
        return rvg_error(RVG_STATUS_NO_MEMORY, "infer ref: out of memory");
    double *h = m + K;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++) {
            double a = 0;
            for (int64_t i = 0; i < HW; i++)
                a += s[(n * K + k) * HW + i];
            m[k] = a / (double)HW;
        }
        for (int64_t j = 0; j < Hd; j++) {
            double a = L->se_down_b[j];
            for (int64_t k = 0; k < K; k++)
                a += (double)L->se_down_w[j * K + k] * m[k];
            h[j] = a > 0 ? a : 0;
        }
        for (int64_t k = 0; k < K; k++) {
            double a = L->se_up_b[k];
            for (int64_t j = 0; j < Hd; j++)
                a += (double)L->se_up_w[k * Hd + j] * h[j];
            float gate = (float)(1.0 / (1.0 + exp(-a)));
            for (int64_t i = 0; i < HW; i++) {
                float v = s[(n * K + k) * HW + i] * gate;
                s[(n * K + k) * HW + i] = v > 0.f ? v : 0.f;
            }
        }
    }
    free(m);
    return RVG_OK;
}

/* Runs the layers on x; *feat gets a malloc'd (N, K_last, h, w) buffer the caller frees. */
static rvg_status ref_layers(const rvg_infer_layer *layers, int64_t n_layers, float **feat,
                             int64_t *hw, const float *x, int64_t N, int64_t in_ch, int64_t H,
                             int64_t W) {
    /* Largest activation over the network sizes both buffers. */
    size_t big = (size_t)(in_ch * H * W);
    int64_t h = H, w = W;
    for (int64_t i = 0; i < n_layers; i++) {
        h = (h - 1) / layers[i].stride + 1;
        w = (w - 1) / layers[i].stride + 1;
        if ((size_t)(layers[i].K * h * w) > big)
            big = (size_t)(layers[i].K * h * w);
    }
    float *a = malloc(sizeof(float) * big * (size_t)N);
    float *b = malloc(sizeof(float) * big * (size_t)N);
    rvg_status st = RVG_OK;
    if (!a || !b) {
        st = rvg_error(RVG_STATUS_NO_MEMORY, "infer ref: out of memory");
        goto fail;
    }
    const float *cur = x;
    int64_t C = in_ch;
    h = H, w = W;
    for (int64_t i = 0; i < n_layers; i++) {
        const rvg_infer_layer *L = &layers[i];
        int64_t P = (h - 1) / L->stride + 1, Q = (w - 1) / L->stride + 1;
        float *out = (cur == a) ? b : a;
        conv3x3_ref(out, cur, L->weight, L->bias, N, C, h, w, L->K, L->stride, L->G, P, Q);
        if ((st = se_relu_ref(out, L, N, P * Q)) != RVG_OK)
            goto fail;
        cur = out, C = L->K, h = P, w = Q;
    }
    free(cur == a ? b : a);
    *feat = (float *)cur;
    *hw = h * w;
    return RVG_OK;
fail:
    free(a);
    free(b);
    return st;
}

rvg_status rvg__infer_ref_features(const rvg_infer_layer *layers, int64_t n_layers, float *y,
                                   const float *x, int64_t N, int64_t in_ch, int64_t H, int64_t W) {
    int64_t k_last, hw;
    float *f;
    RVG_TRY(rvg_infer_check(layers, n_layers, in_ch, H, W, &k_last));
    RVG_TRY(ref_layers(layers, n_layers, &f, &hw, x, N, in_ch, H, W));
    memcpy(y, f, sizeof(float) * (size_t)(N * k_last * hw));
    free(f);
    return RVG_OK;
}

rvg_status rvg_engine_run_ref(const rvg_infer_layer *layers, int64_t n_layers, const float *fc_w,
                              const float *fc_b, int64_t classes, float *logits, const float *x,
                              int64_t N, int64_t in_ch, int64_t H, int64_t W) {
    int64_t C, hw;
    float *cur;
    RVG_TRY(rvg_infer_check(layers, n_layers, in_ch, H, W, &C));
    if (!fc_w || !fc_b || !logits || !x || classes < 1 || N < 1)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "infer ref: NULL pointer or bad N/classes");
    RVG_TRY(ref_layers(layers, n_layers, &cur, &hw, x, N, in_ch, H, W));
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < classes; j++) {
            double acc = fc_b[j];
            for (int64_t k = 0; k < C; k++) {
                double m = 0;
                for (int64_t i = 0; i < hw; i++)
                    m += cur[(n * C + k) * hw + i];
                acc += (double)fc_w[j * C + k] * (m / (double)hw);
            }
            logits[n * classes + j] = (float)acc;
        }
    free(cur);
    return RVG_OK;
}
