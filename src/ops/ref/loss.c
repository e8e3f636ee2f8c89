/* loss.c - reference softmax cross-entropy with soft targets, and the targets built from labels.
 *
 * Does: loss = mean over n of -sum_k target[n, k] * log_softmax(logits[n])_k, with the
 * log-sum-exp (max-shifted) in double, and its gradient
 * dlogits = (softmax * sum_k target - target) / N, which is (softmax - target) / N for the
 * probability rows PyTorch's CrossEntropyLoss handles: one-hot, label-smoothed
 * (rvg_targets_from_labels) or mixup-blended.
 *
 * Does not: support class weights, ignore_index or reductions other than the batch mean, and does
 * not check that target rows sum to 1 or that labels are in range beyond an internal assert.
 */
#include <math.h>

#include "rvg/ops.h"
#include "rvg/status.h"

float rvg_softmax_xent_ref(float *dlogits, const float *logits, const float *target, int64_t N,
                           int64_t K) {
    double loss = 0.0;
    for (int64_t n = 0; n < N; n++) {
        const float *z = logits + n * K;   /* (K) */
        const float *t = target + n * K;   /* (K) */
        double zmax = z[0];
        for (int64_t k = 1; k < K; k++)
            zmax = z[k] > zmax ? z[k] : zmax;
        double se = 0.0, tsum = 0.0, tz = 0.0;
        for (int64_t k = 0; k < K; k++) {
            se += exp((double)z[k] - zmax);
            tsum += t[k];
            tz += (double)t[k] * ((double)z[k] - zmax);
        }
        const double lse = log(se);   /* log sum exp (z - zmax) */
        /* -sum_k t_k (z_k - zmax - lse) */
        loss += tsum * lse - tz;
        if (dlogits) {
            float *d = dlogits + n * K;
            for (int64_t k = 0; k < K; k++) {
                const double p = exp((double)z[k] - zmax - lse);
                d[k] = (float)((p * tsum - (double)t[k]) / (double)N);
            }
        }
    }
    return (float)(loss / (double)N);
}

void rvg_targets_from_labels(float *target, const int32_t *labels, int64_t N, int64_t K,
                             float smoothing) {
    /* PyTorch CrossEntropyLoss(label_smoothing=eps): (1 - eps) * onehot + eps / K. */
    const float off = smoothing / (float)K;
    const float on = 1.0f - smoothing + off;
    for (int64_t n = 0; n < N; n++) {
        RVG_ASSERT(labels[n] >= 0 && labels[n] < K);
        float *t = target + n * K;   /* (K) */
        for (int64_t k = 0; k < K; k++)
            t[k] = off;
        t[labels[n]] = on;
    }
}
