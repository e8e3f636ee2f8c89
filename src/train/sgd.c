/* sgd.c - SGD with momentum as torch.optim.SGD, RepVGG's weight-decay rules, custom L2, and the
 * warm-up + cosine learning-rate schedule.
 *
 * The update is written in the same operation order as PyTorch's single-tensor SGD so that the
 * parity test compares like with like (C11 mode compiles without FMA contraction).
 */
#include <math.h>
#include <string.h>

#include "model/model_impl.h"
#include "rvg/train.h"

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

void rvg_sgd_step(rvg_model *m, const rvg_sgd_config *c, float lr) {
    const float mom = c->momentum, wd = c->weight_decay;
    for (int64_t i = 0; i < m->n_views; i++) {
        rvg_param *p = &m->views[i];
        if (!p->grad)
            continue;
        int decay = wd != 0.0f && rvg_sgd_decays(p, c);
        float *w = p->data, *g = p->grad, *buf = p->momentum;
        for (int64_t k = 0; k < p->numel; k++) {
            float d = decay ? g[k] + wd * w[k] : g[k];
            if (mom != 0.0f) {
                buf[k] = buf[k] * mom + d;
                d = c->nesterov ? d + mom * buf[k] : buf[k];
            }
            w[k] = w[k] + (-lr) * d;
        }
    }
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
