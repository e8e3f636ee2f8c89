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

/* Synchronised BatchNorm across processes: allreduce(buf, n, ctx) sums n doubles over them. */
typedef struct {
    void (*allreduce)(double *buf, int64_t n, void *ctx);
    void *ctx;
} rvg__bn_sync;

/* Batch mean and 1/sqrt(biased var + eps) of x; updates running stats (unbiased variance) when
 * running_mean is not NULL. buf: scratch of 2C + 1 doubles. sync NULL: this process's batch;
 * else the statistics of the global batch (SyncBatchNorm). */
void rvg__bn_stats(float *mean, float *istd, float *running_mean, float *running_var,
                   const float *x, int64_t N, int64_t C, int64_t HW, float momentum, float eps,
                   double *buf, const rvg__bn_sync *sync);
/* mean = running_mean, istd = 1/sqrt(running_var + eps) (inference mode). */
void rvg__bn_eval_stats(float *mean, float *istd, const float *running_mean,
                        const float *running_var, int64_t C, float eps);
/* s = sum_j BN_j(x_j) (written when s != NULL), out = ReLU(s) (written when out != NULL). */
void rvg__bn_sum_relu_forward(float *s, float *out, const rvg__bn_term *t, int nt, int64_t N,
                              int64_t K, int64_t HW);
/* Training forward without a sync hook, in one parallel phase: mean[j], istd[j] and the running
 * statistics of each branch from the batch, as rvg__bn_stats (running_mean[j] NULL: not
 * updated), then s and/or out as rvg__bn_sum_relu_forward, with the same bits. t[j].mean and
 * t[j].istd must be mean[j] and istd[j]. */
void rvg__bn_train_sum_relu_forward(float *s, float *out, const rvg__bn_term *t,
                                    float *const mean[3], float *const istd[3],
                                    float *const running_mean[3], float *const running_var[3],
                                    int nt, int64_t N, int64_t K, int64_t HW, float momentum,
                                    float eps);
/* Backward of s = sum_j BN_j(x_j) with batch statistics, given ds: dz[j] OVERWRITTEN with the
 * input gradient of branch j (NULL: skipped), dgamma[j] and dbeta[j] ACCUMULATED (local sums: the
 * gradient allreduce adds them up). buf: scratch of K * (nt + 1) + 1 doubles. sync as in
 * rvg__bn_stats. */
void rvg__bn_sum_backward(float *const dz[3], float *const dgamma[3], float *const dbeta[3],
                          const float *ds, const rvg__bn_term *t, int nt, int64_t N, int64_t K,
                          int64_t HW, double *buf, const rvg__bn_sync *sync);
/* The same for out = ReLU(s) given dout: ds = dout * (out > 0) is written to ds (N*K*HW floats)
 * in the same pass as the sums, then used as above. */
void rvg__bn_sum_relu_backward(float *const dz[3], float *const dgamma[3],
                               float *const dbeta[3], float *ds, const float *dout,
                               const float *out, const rvg__bn_term *t, int nt, int64_t N,
                               int64_t K, int64_t HW, double *buf, const rvg__bn_sync *sync);

#endif
