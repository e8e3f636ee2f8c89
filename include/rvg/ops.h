/* ops.h - the layer kernels of the train-form network, forward and backward, over flat NCHW floats.
 *
 * Every kernel here has a portable reference version (suffix _ref, plain C11, src/ops/ref/) that is
 * the test oracle. Fast twins share the exact signature and are chosen by src/ops/dispatch.c; the
 * un-suffixed names (rvg_conv2d_forward, ...) go through that dispatch.
 *
 * Conventions (see shared/STYLE.md):
 *   - Dimension letters: N batch, C input channels, K output channels, H/W input size, P/Q output
 *     size, R/S kernel size, G groups.
 *   - Kernels cannot fail: callers validate shapes and own every buffer, scratch included.
 *   - Forward kernels OVERWRITE their outputs.
 *   - Backward kernels ACCUMULATE (+=) into every gradient they produce (dx, dw, dgamma, ...), so a
 *     tensor used by several branches (a block's input feeds three) gets the sum. A NULL gradient
 *     pointer means "not needed" and is skipped. The caller zeroes gradients before a step.
 *   - Outputs first, then saved state, then inputs, then weights, then the shape.
 */
#ifndef RVG_OPS_H
#define RVG_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- 2-D convolution ------------------------------------------------------------------------ */

/* Shape of a grouped 2-D convolution. P = (H + 2*pad - R) / stride + 1, likewise Q with W, S.
 * Weight layout (K, C/G, R, S) as PyTorch. */
typedef struct {
    int64_t N, C, H, W;   /* input  (N, C, H, W) */
    int64_t K, R, S;      /* weight (K, C/G, R, S) */
    int64_t P, Q;         /* output (N, K, P, Q) */
    int64_t stride, pad, G;
} rvg_conv_shape;

/* Fills P and Q from the other fields. */
void rvg_conv_shape_finish(rvg_conv_shape *s);

/* Bytes of scratch workspace the dispatched conv kernels need for this shape (0 for _ref). */
size_t rvg_conv2d_workspace_size(const rvg_conv_shape *s);

/* y (N,K,P,Q) = conv(x (N,C,H,W), w (K,C/G,R,S)) + bias (K, may be NULL). */
void rvg_conv2d_forward_ref(float *y, const float *x, const float *w, const float *bias,
                            const rvg_conv_shape *s, void *work);
/* dx (N,C,H,W) += conv^T(dy), dw (K,C/G,R,S) += corr(x, dy), dbias (K) += sum(dy).
 * Any of dx, dw, dbias may be NULL. */
void rvg_conv2d_backward_ref(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                             const float *w, const rvg_conv_shape *s, void *work);

/* ---- fused 3x3 + 1x1 pair (the two conv branches of a train-form block) ---------------------- */

/* s3 describes the 3x3 branch (R = S = 3, pad 1). The 1x1 branch has the same N, C, H, W, K,
 * stride and G with R = S = 1, pad 0, and so the same P, Q: its input at output (p, q) is exactly
 * the 3x3's centre tap, which is why the pair can share one pass over x.
 * z3 (N,K,P,Q) = conv3x3(x; w3 (K,C/G,3,3)), z1 (N,K,P,Q) = conv1x1(x; w1 (K,C/G,1,1)); no bias.
 * Overwrites z3 and z1. The dispatched version needs rvg_conv2d_3x3_1x1_workspace_size(s3) bytes
 * of work (more than rvg_conv2d_workspace_size(s3)); the _ref versions ignore work. */
size_t rvg_conv2d_3x3_1x1_workspace_size(const rvg_conv_shape *s3);
void rvg_conv2d_forward_3x3_1x1_ref(float *z3, float *z1, const float *x, const float *w3,
                                    const float *w1, const rvg_conv_shape *s3, void *work);
/* dx (N,C,H,W) += conv3x3^T(dz3) + conv1x1^T(dz1); dw3 += corr(x, dz3); dw1 += corr(x, dz1).
 * Accumulates; any of dx, dw3, dw1 may be NULL. */
void rvg_conv2d_backward_3x3_1x1_ref(float *dx, float *dw3, float *dw1, const float *dz3,
                                     const float *dz1, const float *x, const float *w3,
                                     const float *w1, const rvg_conv_shape *s3, void *work);

/* ---- BatchNorm2d ----------------------------------------------------------------------------- */

/* Training mode, as torch.nn.BatchNorm2d(momentum=0.1, eps=1e-5):
 *   y = (x - mean) * invstd * gamma + beta with the batch mean and biased batch variance;
 *   saved_mean (C) and saved_invstd (C) = 1/sqrt(var_biased + eps) are kept for backward;
 *   running_mean = (1-m) running_mean + m mean; running_var = (1-m) running_var + m var_unbiased
 *   (unbiased: times n/(n-1), n = N*H*W). running_* may be NULL to skip the update.
 * x, y: (N, C, HW); y must not alias x, which backward reads. */
void rvg_bn_forward_train_ref(float *y, float *saved_mean, float *saved_invstd, float *running_mean,
                              float *running_var, const float *x, const float *gamma,
                              const float *beta, int64_t N, int64_t C, int64_t HW, float momentum,
                              float eps);
/* Eval mode: y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta. y may alias x. */
void rvg_bn_forward_eval_ref(float *y, const float *x, const float *gamma, const float *beta,
                             const float *running_mean, const float *running_var, int64_t N,
                             int64_t C, int64_t HW, float eps);
/* Backward of the training-mode forward (batch statistics):
 *   dgamma (C) += sum(dy * xhat), dbeta (C) += sum(dy),
 *   dx (N,C,HW) += gamma*invstd/n * (n*dy - sum(dy) - xhat*sum(dy*xhat)).
 * Any gradient may be NULL. */
void rvg_bn_backward_ref(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                         const float *saved_mean, const float *saved_invstd, const float *gamma,
                         int64_t N, int64_t C, int64_t HW);

/* ---- ReLU ------------------------------------------------------------------------------------ */

/* y = max(x, 0); y may alias x. */
void rvg_relu_forward_ref(float *y, const float *x, int64_t n);
/* dx += dy * (y > 0), with y the forward OUTPUT (so the input need not be kept). */
void rvg_relu_backward_ref(float *dx, const float *dy, const float *y, int64_t n);

/* ---- global average pooling ----------------------------------------------------------------- */

/* y (N, C) = mean over HW of x (N, C, HW). */
void rvg_gap_forward_ref(float *y, const float *x, int64_t N, int64_t C, int64_t HW);
/* dx (N, C, HW) += dy (N, C) / HW broadcast. */
void rvg_gap_backward_ref(float *dx, const float *dy, int64_t N, int64_t C, int64_t HW);

/* ---- fully connected ------------------------------------------------------------------------- */

/* y (N, K) = x (N, C) w^T + b, w (K, C), b (K) may be NULL. */
void rvg_linear_forward_ref(float *y, const float *x, const float *w, const float *b, int64_t N,
                            int64_t C, int64_t K);
/* dx (N,C) += dy w, dw (K,C) += dy^T x, db (K) += sum_n dy. Any may be NULL. */
void rvg_linear_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x,
                             const float *w, int64_t N, int64_t C, int64_t K);

/* ---- sigmoid / channel scaling (squeeze-excitation) ----------------------------------------- */

/* y = 1 / (1 + exp(-x)); y may alias x. */
void rvg_sigmoid_forward_ref(float *y, const float *x, int64_t n);
/* dx += dy * y * (1 - y), y the forward output. */
void rvg_sigmoid_backward_ref(float *dx, const float *dy, const float *y, int64_t n);
/* y (N,C,HW) = x (N,C,HW) * s (N,C) broadcast over HW. y may alias x. */
void rvg_channel_scale_forward_ref(float *y, const float *x, const float *s, int64_t N, int64_t C,
                                   int64_t HW);
/* dx += dy * s; ds (N,C) += sum_HW dy * x. Either may be NULL. */
void rvg_channel_scale_backward_ref(float *dx, float *ds, const float *dy, const float *x,
                                    const float *s, int64_t N, int64_t C, int64_t HW);

/* ---- softmax cross-entropy ------------------------------------------------------------------ */

/* Mean over the batch of -sum_k target[n,k] * log_softmax(logits)[n,k]; target (N, K) is a
 * probability distribution per row (one-hot, label-smoothed, or mixup-blended).
 * Writes dlogits (N, K) = (softmax - target) / N when dlogits != NULL (overwrites: it is the
 * start of backward). Returns the loss. Computed in double for the log-sum-exp. */
float rvg_softmax_xent_ref(float *dlogits, const float *logits, const float *target, int64_t N,
                           int64_t K);

/* Builds soft targets (N, K) from integer labels with label smoothing eps, as PyTorch's
 * CrossEntropyLoss(label_smoothing=eps): target = (1-eps) onehot + eps/K. */
void rvg_targets_from_labels(float *target, const int32_t *labels, int64_t N, int64_t K,
                             float smoothing);

/* ---- dispatched names (fast twin when available, else _ref) --------------------------------- */

void rvg_conv2d_forward(float *y, const float *x, const float *w, const float *bias,
                        const rvg_conv_shape *s, void *work);
void rvg_conv2d_backward(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                         const float *w, const rvg_conv_shape *s, void *work);

void rvg_conv2d_forward_3x3_1x1(float *z3, float *z1, const float *x, const float *w3,
                                const float *w1, const rvg_conv_shape *s3, void *work);
void rvg_conv2d_backward_3x3_1x1(float *dx, float *dw3, float *dw1, const float *dz3,
                                 const float *dz1, const float *x, const float *w3, const float *w1,
                                 const rvg_conv_shape *s3, void *work);

/* Set RVG_FORCE_REF=1 in the environment (read once) or call this to route every dispatched call to
 * the _ref kernels, for bisecting. */
void rvg_ops_force_ref(int on);
int rvg_ops_using_ref(void);

/* The arithmetic of the training convolutions' GEMMs (forward and backward of every train-form
 * convolution, whatever calls them). */
typedef enum {
    RVG_TRAIN_KERNELS_AUTO = 0, /* fp32: the built-in AVX-512 / AVX2 / C GEMM, or OpenBLAS */
    RVG_TRAIN_KERNELS_AMX,      /* Intel AMX tiles in "bf16x3": each fp32 operand split into two
                                   bf16 numbers, three products summed in fp32 (~16 of fp32's 24
                                   mantissa bits; ~1e-5 of max|C|). Faster steps where the CPU has
                                   AMX (docs/training_kernels.md); never chosen by AUTO */
    RVG_TRAIN_KERNELS_AMX_TWIN, /* the same arithmetic in plain C, on any CPU: for testing */
} rvg_train_kernels;

/* Selects the training GEMM for later calls. Returns 0 (nothing changes) where this build or CPU
 * lacks it, 1 otherwise. Not thread-safe: call before training starts. A run is reproducible
 * bit for bit only under the same choice (and, for AMX, on the same CPU model). */
int rvg_ops_set_train_kernels(rvg_train_kernels k);
rvg_train_kernels rvg_ops_train_kernels(void);
/* Whether rvg_ops_set_train_kernels(k) would succeed here (changes nothing). */
int rvg_ops_train_kernels_available(rvg_train_kernels k);
/* "auto", "amx", "amx-twin"; "?" past the last. */
const char *rvg_train_kernels_name(rvg_train_kernels k);

#ifdef __cplusplus
}
#endif
#endif
