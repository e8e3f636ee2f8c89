/* bn.c - reference BatchNorm2d over flat (N, C, HW) floats: train forward, eval forward, backward.
 *
 * Does: exactly the math of torch.nn.BatchNorm2d(eps, momentum) with affine parameters.
 *   - Training: batch mean and BIASED batch variance normalise (eps inside the sqrt); the running
 *     variance is updated with the UNBIASED variance (times n/(n-1)), momentum weighting the new
 *     value.
 *   - Eval: running statistics, folded into one scale and shift per channel as PyTorch's CPU
 *     kernel does.
 *   - Backward of the training forward, accumulating (+=) into dx, dgamma, dbeta.
 * Per-channel statistics and reductions are summed in double (reduction length N*HW), so this is a
 * slightly better oracle than PyTorch's float kernel, not a bit-exact copy of it.
 *
 * Does not: support affine=False (gamma and beta are required), track num_batches_tracked (the
 * caller counts steps), or handle momentum=None (cumulative averaging).
 */
#include <math.h>

#include "rvg/ops.h"

void rvg_bn_forward_train_ref(float *y, float *saved_mean, float *saved_invstd, float *running_mean,
                              float *running_var, const float *x, const float *gamma,
                              const float *beta, int64_t N, int64_t C, int64_t HW, float momentum,
                              float eps) {
    const int64_t n = N * HW;
    for (int64_t c = 0; c < C; c++) {
        /* Two passes in double: mean, then the sum of squared deviations (no cancellation). */
        double sum = 0.0;
        for (int64_t i = 0; i < N; i++) {
            const float *xc = x + (i * C + c) * HW;   /* (HW) */
            for (int64_t j = 0; j < HW; j++)
                sum += xc[j];
        }
        const double mean = sum / (double)n;
        double ssd = 0.0;
        for (int64_t i = 0; i < N; i++) {
            const float *xc = x + (i * C + c) * HW;
            for (int64_t j = 0; j < HW; j++) {
                const double d = xc[j] - mean;
                ssd += d * d;
            }
        }
        const double var = ssd / (double)n;   /* biased: used to normalise */
        const double invstd = 1.0 / sqrt(var + (double)eps);
        saved_mean[c] = (float)mean;
        saved_invstd[c] = (float)invstd;

        /* y = xhat * gamma + beta = x * a + b with a = gamma*invstd, b = beta - mean*a. */
        const float a = (float)((double)gamma[c] * invstd);
        const float b = (float)((double)beta[c] - mean * (double)gamma[c] * invstd);
        for (int64_t i = 0; i < N; i++) {
            const float *restrict xc = x + (i * C + c) * HW;
            float *restrict yc = y + (i * C + c) * HW;
            for (int64_t j = 0; j < HW; j++)
                yc[j] = xc[j] * a + b;
        }

        /* PyTorch: running = (1 - momentum) * running + momentum * batch_stat, with the unbiased
         * variance. With a single value per channel (n == 1) PyTorch refuses to train; we fall back
         * to the biased value (0) rather than divide by zero. */
        if (running_mean)
            running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * (float)mean;
        if (running_var) {
            const double unbiased = n > 1 ? ssd / (double)(n - 1) : var;
            running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (float)unbiased;
        }
    }
}

void rvg_bn_forward_eval_ref(float *y, const float *x, const float *gamma, const float *beta,
                             const float *running_mean, const float *running_var, int64_t N,
                             int64_t C, int64_t HW, float eps) {
    for (int64_t c = 0; c < C; c++) {
        /* As PyTorch's CPU eval kernel: alpha = gamma / sqrt(var + eps),
         * y = x * alpha + (beta - mean * alpha). */
        const double alpha = (double)gamma[c] / sqrt((double)running_var[c] + (double)eps);
        const float a = (float)alpha;
        const float b = (float)((double)beta[c] - (double)running_mean[c] * alpha);
        for (int64_t i = 0; i < N; i++) {
            const float *xc = x + (i * C + c) * HW;   /* may alias yc */
            float *yc = y + (i * C + c) * HW;
            for (int64_t j = 0; j < HW; j++)
                yc[j] = xc[j] * a + b;
        }
    }
}

void rvg_bn_backward_ref(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                         const float *saved_mean, const float *saved_invstd, const float *gamma,
                         int64_t N, int64_t C, int64_t HW) {
    const int64_t n = N * HW;
    for (int64_t c = 0; c < C; c++) {
        const double mean = saved_mean[c], invstd = saved_invstd[c];
        /* sum(dy) and sum(dy * xhat), xhat = (x - mean) * invstd. */
        double sdy = 0.0, sdyx = 0.0;
        for (int64_t i = 0; i < N; i++) {
            const float *xc = x + (i * C + c) * HW;
            const float *dyc = dy + (i * C + c) * HW;
            for (int64_t j = 0; j < HW; j++) {
                sdy += dyc[j];
                sdyx += dyc[j] * ((xc[j] - mean) * invstd);
            }
        }
        if (dgamma)
            dgamma[c] += (float)sdyx;
        if (dbeta)
            dbeta[c] += (float)sdy;
        if (!dx)
            continue;
        /* dx = gamma*invstd/n * (n*dy - sum(dy) - xhat*sum(dy*xhat))
         *    = k * dy - k/n * sum(dy) - k/n * xhat * sum(dy*xhat), k = gamma*invstd. */
        const double k = (double)gamma[c] * invstd;
        const double mdy = sdy / (double)n, mdyx = sdyx / (double)n;
        for (int64_t i = 0; i < N; i++) {
            const float *restrict xc = x + (i * C + c) * HW;
            const float *restrict dyc = dy + (i * C + c) * HW;
            float *restrict dxc = dx + (i * C + c) * HW;
            for (int64_t j = 0; j < HW; j++) {
                const double xhat = (xc[j] - mean) * invstd;
                dxc[j] += (float)(k * (dyc[j] - mdy - xhat * mdyx));
            }
        }
    }
}
