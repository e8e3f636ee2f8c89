/* sgd.c - SGD with momentum as torch.optim.SGD, RepVGG's weight-decay rules, custom L2, and the
 * warm-up + cosine learning-rate schedule.
 *
 * The update is written in the same operation order as PyTorch's single-tensor SGD so that the
 * parity test compares like with like (C11 mode compiles without FMA contraction).
 *
 * rvg_sgd_step_fused is what the training loop calls: the update, the zeroing of the gradients
 * for the next step and the moving average's update, piece by piece while each piece of the
 * weights is in cache, instead of three passes over arenas that do not fit in it (A0: 31 MB
 * each of weights, gradients, momentum and average).
 */
#include <math.h>
#include <string.h>

#include "core/compiler_impl.h"
#include "core/parallel_impl.h"
#include "model/model_impl.h"
#include "rvg/train.h"
#include "train/ema_impl.h"

#define BN_EPS 1e-5f

rvg_sgd_config rvg_sgd_defaults(void) {
    rvg_sgd_config c = {0.9f, 1e-4f, 0, 0, 0};
    return c;
}

static int in_branch(const char *name) {
    return strstr(name, "rbr_dense.") != NULL || strstr(name, "rbr_1x1.") != NULL;
}

int rvg_sgd_decays(const rvg_param *p, const rvg_sgd_config *c) {
    switch (p->kind) {
    case RVG_PARAM_BIAS:
    case RVG_BUFFER_RUNNING_MEAN:
    case RVG_BUFFER_RUNNING_VAR:
        return 0;
    case RVG_PARAM_BN_WEIGHT:
        return c->custom_l2 ? 0 : c->decay_branch_bn;
    case RVG_PARAM_CONV_WEIGHT:
        return !(c->custom_l2 && in_branch(p->name));
    case RVG_PARAM_ID_BN_WEIGHT:
    case RVG_PARAM_FC_WEIGHT:
        return 1;
    }
    return 0;
}

/* One tensor's update over elements [lo, hi); with zero_grad, g is zeroed after it; with e, the
 * moving average e = e * ea + eb * w of the updated weights follows. */
typedef struct {
    float *w, *g, *buf;
    float mom, wd, lr;
    int decay, nesterov;
    int zero_grad;
    float *e;
    float ea, eb;
} sgd_job;

#define SGD_CHUNK 16384
/* The fused step's piece: its w, g, momentum and average (4 x 16 KB) stay in L1/L2 between the
 * update and the passes after it. */
#define SGD_PIECE 4096

/* Inlined with constant flags below, so each variant's loop has no branches and vectorizes. */
static RVG__ALWAYS_INLINE void sgd_loop(const sgd_job *j, int64_t lo, int64_t hi, const int decay,
                                const int mom_on, const int nesterov) {
    float *restrict w = j->w, *restrict buf = j->buf;
    const float *restrict g = j->g;
    const float mom = j->mom, wd = j->wd, lr = j->lr;
    for (int64_t k = lo; k < hi; k++) {
        float d = decay ? g[k] + wd * w[k] : g[k];
        if (mom_on) {
            buf[k] = buf[k] * mom + d;
            d = nesterov ? d + mom * buf[k] : buf[k];
        }
        w[k] = w[k] + (-lr) * d;
    }
}

static void sgd_piece(const sgd_job *j, int64_t lo, int64_t hi) {
    const int mom_on = j->mom != 0.0f;
    if (!mom_on)
        j->decay ? sgd_loop(j, lo, hi, 1, 0, 0) : sgd_loop(j, lo, hi, 0, 0, 0);
    else if (j->nesterov)
        j->decay ? sgd_loop(j, lo, hi, 1, 1, 1) : sgd_loop(j, lo, hi, 0, 1, 1);
    else
        j->decay ? sgd_loop(j, lo, hi, 1, 1, 0) : sgd_loop(j, lo, hi, 0, 1, 0);
    if (j->zero_grad)
        memset(j->g + lo, 0, (size_t)(hi - lo) * sizeof(float));
    if (j->e)
        rvg__ema_range(j->e, j->w, lo, hi, j->ea, j->eb);
}

static void sgd_range(void *ctx, int64_t lo, int64_t hi) {
    const sgd_job *j = ctx;
    if (!j->zero_grad && !j->e) {
        sgd_piece(j, lo, hi);
        return;
    }
    for (int64_t a = lo; a < hi; a += SGD_PIECE)
        sgd_piece(j, a, hi - a < SGD_PIECE ? hi : a + SGD_PIECE);
}

static void sgd_views(rvg_model *m, const rvg_sgd_config *c, float lr, int zero_grad,
                      rvg_model *ema, float ema_decay) {
    const float ea = ema_decay, eb = (float)(1.0 - (double)ema_decay);
    for (int64_t i = 0; i < m->n_views; i++) {
        rvg_param *p = &m->views[i];
        if (!p->grad)
            continue;
        sgd_job j = {p->data,
                     p->grad,
                     p->momentum,
                     c->momentum,
                     c->weight_decay,
                     lr,
                     c->weight_decay != 0.0f && rvg_sgd_decays(p, c),
                     c->nesterov,
                     zero_grad,
                     ema ? ema->params + (p->data - m->params) : NULL,
                     ea,
                     eb};
        /* elementwise, so the split changes nothing in the result; small tensors stay serial */
        rvg__par_chunks(p->numel, SGD_CHUNK, sgd_range, &j);
    }
}

void rvg_sgd_step(rvg_model *m, const rvg_sgd_config *c, float lr) {
    sgd_views(m, c, lr, 0, NULL, 0.0f);
}

rvg_status rvg_sgd_step_fused(rvg_model *m, const rvg_sgd_config *c, float lr, rvg_model *ema,
                              float ema_decay) {
    if (!m || !m->grads)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "sgd: the model has no gradients (deploy form)");
    /* In a train-form model every parameter has a gradient (model.c), so the views below cover
     * every parameter of the average; the arenas' padding is zero in both and stays so. */
    if (ema)
        RVG_TRY(rvg__ema_check(ema, m, ema_decay));
    sgd_views(m, c, lr, 1, ema, ema_decay);
    if (ema)
        rvg__ema_rest(ema, m, ema_decay);
    return RVG_OK;
}

/* t = gamma / sqrt(running_var + eps) for one BN. */
static float bn_t(const rvg_model *m, const bn_ref *bn, int64_t k) {
    return m->views[bn->gamma].data[k] / sqrtf(m->views[bn->var].data[k] + BN_EPS);
}

void rvg_custom_l2_grad(rvg_model *m, float weight_decay) {
    if (m->form != RVG_FORM_TRAIN)
        return;
    for (int64_t bi = 0; bi < m->n_blocks; bi++) {
        const block_impl *b = &m->blocks[bi];
        int64_t K = b->b.K, cg = b->b.C / b->b.G;
        const float *k3 = m->views[b->w3].data, *k1 = m->views[b->w1].data;
        float *g3 = m->views[b->w3].grad, *g1 = m->views[b->w1].grad;
        for (int64_t k = 0; k < K; k++) {
            float t3 = bn_t(m, &b->bn3, k), t1 = bn_t(m, &b->bn1, k);
            float denom = t3 * t3 + t1 * t1;
            for (int64_t c = 0; c < cg; c++) {
                const float *w = k3 + (k * cg + c) * 9;
                float *g = g3 + (k * cg + c) * 9;
                /* d/dK of 0.5 wd (sum K3^2 - centre^2): wd * K3 off the centre */
                for (int j = 0; j < 9; j++)
                    if (j != 4)
                        g[j] += weight_decay * w[j];
                /* d/dK of 0.5 wd eq^2 / (t3^2 + t1^2), eq = K3c t3 + K1 t1 */
                float eq = w[4] * t3 + k1[k * cg + c] * t1;
                g[4] += weight_decay * eq * t3 / denom;
                g1[k * cg + c] += weight_decay * eq * t1 / denom;
            }
        }
    }
}

double rvg_custom_l2_value(const rvg_model *m) {
    double total = 0;
    if (m->form != RVG_FORM_TRAIN)
        return 0;
    for (int64_t bi = 0; bi < m->n_blocks; bi++) {
        const block_impl *b = &m->blocks[bi];
        int64_t K = b->b.K, cg = b->b.C / b->b.G;
        const float *k3 = m->views[b->w3].data, *k1 = m->views[b->w1].data;
        for (int64_t k = 0; k < K; k++) {
            double t3 = bn_t(m, &b->bn3, k), t1 = bn_t(m, &b->bn1, k);
            for (int64_t c = 0; c < cg; c++) {
                const float *w = k3 + (k * cg + c) * 9;
                for (int j = 0; j < 9; j++)
                    if (j != 4)
                        total += (double)w[j] * w[j];
                double eq = w[4] * t3 + k1[k * cg + c] * t1;
                total += eq * eq / (t3 * t3 + t1 * t1);
            }
        }
    }
    return total;
}

float rvg_lr_at(float base, int64_t it, int64_t warmup, int64_t total) {
    if (it < warmup)
        return base * (float)(it + 1) / (float)warmup;
    if (total <= warmup)
        return base;
    double frac = (double)(it - warmup) / (double)(total - warmup);
    if (frac > 1)
        frac = 1;
    return (float)(0.5 * base * (1.0 + cos(3.14159265358979323846 * frac)));
}
