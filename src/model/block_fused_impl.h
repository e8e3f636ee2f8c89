/* block_fused_impl.h - fused, threaded BatchNorm/branch-sum/ReLU passes used by forward.c and
 * backward.c on the fast path (block_fused.c). Shapes: activations (N, K, HW), vectors (K).
 */
#ifndef RVG_BLOCK_FUSED_IMPL_H
#define RVG_BLOCK_FUSED_IMPL_H

#include <stdint.h>

/* One BN branch of a block: its input and the per-channel constants. */
typedef struct {
    const float *x;                   /* BN input (N, K, HW) */
    const float *gamma, *beta;        /* (K) */
    const float *mean, *istd;         /* batch (training) or running (eval) statistics (K) */
} rvg__bn_term;

/* Batch mean and 1/sqrt(biased var + eps) of x; updates running stats (unbiased variance) when
 * running_mean is not NULL. */
void rvg__bn_stats(float *mean, float *istd, float *running_mean, float *running_var,
                   const float *x, int64_t N, int64_t C, int64_t HW, float momentum, float eps);
/* mean = running_mean, istd = 1/sqrt(running_var + eps) (inference mode). */
void rvg__bn_eval_stats(float *mean, float *istd, const float *running_mean,
                        const float *running_var, int64_t C, float eps);
/* s = sum_j BN_j(x_j) (written when s != NULL), out = ReLU(s) (written when out != NULL). */
void rvg__bn_sum_relu_forward(float *s, float *out, const rvg__bn_term *t, int nt, int64_t N,
                              int64_t K, int64_t HW);
/* Backward of s = sum_j BN_j(x_j) with batch statistics, given ds: dz[j] OVERWRITTEN with the
 * input gradient of branch j (NULL: skipped), dgamma[j] and dbeta[j] ACCUMULATED. */
void rvg__bn_sum_backward(float *const dz[3], float *const dgamma[3], float *const dbeta[3],
                          const float *ds, const rvg__bn_term *t, int nt, int64_t N, int64_t K,
                          int64_t HW);
/* Sync-BN twins of rvg__bn_stats and rvg__bn_sum_backward: the per-channel sums are gathered in
 * buf (doubles: C + 1 for stats, K * (nt + 1) for backward) and summed over processes with
 * allreduce(buf, n, ctx) before the statistics / gradients are finished, so mean, variance and
 * the backward projections are those of the global batch. dgamma and dbeta get the LOCAL sums. */
void rvg__bn_stats_sync(float *mean, float *istd, float *running_mean, float *running_var,
                        const float *x, int64_t N, int64_t C, int64_t HW, float momentum, float eps,
                        double *buf, void (*allreduce)(double *, int64_t, void *), void *ctx);
void rvg__bn_sum_backward_sync(float *const dz[3], float *const dgamma[3],
                               float *const dbeta[3], const float *ds, const rvg__bn_term *t,
                               int nt, int64_t N, int64_t K, int64_t HW, double *buf,
                               void (*allreduce)(double *, int64_t, void *), void *ctx);
/* ds = dout * (out > 0), overwriting. */
void rvg__relu_mask(float *ds, const float *dout, const float *out, int64_t n);

#endif
