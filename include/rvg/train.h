/* train.h - the optimiser and learning-rate schedule of the paper's recipe (SPEC §5), and an
 * exponential moving average of the weights.
 *
 * SGD matches torch.optim.SGD (dampening 0, optional Nesterov) step for step:
 *   g = grad + wd * p (when p decays);  buf = momentum * buf + g;
 *   g = nesterov ? g + momentum * buf : buf;  p = p - lr * g.
 * Weight decay follows the official exclusions: none on biases and BN betas, none on the gammas
 * of the 3x3 and 1x1 branch BNs (configurable); the identity BN gamma, conv, SE and linear weights
 * decay. With custom L2 (RepVGG's "custwd") the 3x3/1x1 branch tensors get no plain decay; the
 * gradient of 0.5 * wd * L_custom (SPEC §5) is added instead by rvg_custom_l2_grad.
 */
#ifndef RVG_TRAIN_H
#define RVG_TRAIN_H

#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float momentum;        /* 0.9 */
    float weight_decay;    /* 1e-4 */
    int nesterov;          /* 0 */
    int decay_branch_bn;   /* 0: official, no decay on rbr_dense/rbr_1x1 BN gammas */
    int custom_l2;         /* 0: plain decay; 1: RepVGG custom L2 on the 3x3/1x1 branches */
} rvg_sgd_config;

/* The paper's defaults: momentum 0.9, weight decay 1e-4, no Nesterov, official exclusions. */
rvg_sgd_config rvg_sgd_defaults(void);

/* Whether a parameter of this name and kind gets plain weight decay under c. */
int rvg_sgd_decays(const rvg_param *p, const rvg_sgd_config *c);

/* Adds the gradient of 0.5 * weight_decay * L_custom for every train-form block, with
 * t3 = gamma3/sqrt(var3+eps) and t1 likewise taken from the current running statistics and
 * treated as constants (as the official code detaches them). */
void rvg_custom_l2_grad(rvg_model *m, float weight_decay);
/* The value of L_custom summed over blocks (for logging and tests). */
double rvg_custom_l2_value(const rvg_model *m);

/* One SGD step over every trainable parameter with learning rate lr. */
void rvg_sgd_step(rvg_model *m, const rvg_sgd_config *c, float lr);

/* The step of a training loop in one pass over the weights: rvg_sgd_step(m, c, lr), then the
 * gradients zeroed for the next step's backward (rvg_model_zero_grad, which the loop then calls
 * only before its first step), then, when ema is not NULL, rvg_ema_update(ema, m, ema_decay).
 * The same bits as those calls one after the other, in about half the memory traffic. Errors:
 * RVG_STATUS_BAD_ARGUMENT for a model without gradients (deploy form) and, with ema, those of
 * rvg_ema_update, before anything is changed. */
rvg_status rvg_sgd_step_fused(rvg_model *m, const rvg_sgd_config *c, float lr, rvg_model *ema,
                              float ema_decay);

/* The L2 norm of all of m's gradients taken together (0 for a model without gradients). The
 * same value whatever the thread count. */
double rvg_grad_norm(const rvg_model *m);

/* torch.nn.utils.clip_grad_norm_(m.parameters(), max_norm): computes the global norm N of the
 * gradients (into *total_norm, when not NULL) and, when max_norm / (N + 1e-6) < 1, multiplies
 * every gradient by that factor. Call it after the backward pass and before the optimiser step,
 * whose weight decay is then added to the clipped gradient. A non-finite N is returned and the
 * gradients are left as they are. Errors: RVG_STATUS_BAD_ARGUMENT for a model without gradients
 * or a max_norm that is not positive and finite. */
rvg_status rvg_clip_grad_norm(rvg_model *m, float max_norm, double *total_norm);

/* Learning rate at iteration it (0-based) of total: linear warm-up over warmup iterations from
 * base/warmup to base, then cosine annealing to 0 at total:
 *   it < warmup:  base * (it + 1) / warmup
 *   else:         0.5 * base * (1 + cos(pi * (it - warmup) / (total - warmup))) */
float rvg_lr_at(float base, int64_t it, int64_t warmup, int64_t total);

/* Exponential moving average of the weights (timm's model EMA). Update t (0-based) uses the decay
 *   d = min(decay, (1 + t) / (10 + t))
 * (TensorFlow's ExponentialMovingAverage with num_updates), so an average started from freshly
 * initialised weights forgets them within the first updates. */
float rvg_ema_decay_at(float decay, int64_t t);

/* ema = d * ema + (1 - d) * m over every parameter and BN running statistic, in float32 as
 * PyTorch computes it; BN batch counters are copied. d = 0 makes ema a copy of m. ema and m must
 * be two models of the same architecture and form (RVG_STATUS_BAD_SHAPE otherwise); d in [0, 1)
 * (RVG_STATUS_BAD_ARGUMENT). Runs on the library's threads. */
rvg_status rvg_ema_update(rvg_model *ema, const rvg_model *m, float d);

/* Exchanges the parameters, BN statistics and counters of ema and m (same network and form), so
 * that the average can be evaluated through m's plan, without a second one; a second call puts
 * both back. m's gradients and momentum stay where they are. */
rvg_status rvg_ema_swap(rvg_model *ema, rvg_model *m);

#ifdef __cplusplus
}
#endif
#endif
