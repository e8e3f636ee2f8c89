/* reparam.c - structural re-parameterisation: train form -> deploy form (SPEC §2).
 *
 * Per output channel k of a branch with BN (gamma, beta, mu, var):
 *   t_k = gamma_k / sqrt(var_k + eps),  K'_k = K_k * t_k,  b'_k = beta_k - mu_k * t_k.
 * The 1x1 kernel sits at the centre tap of a zero 3x3; the identity branch is the kernel with 1 at
 * [k, k mod (C/G), 1, 1]. The deploy kernel and bias are the sums of the three. The arithmetic is
 * done in float in the same order as the official get_equivalent_kernel_bias (t first, then the
 * products), so results match PyTorch's conversion to the last bit in most entries.
 * The train-form model is left untouched; SE and linear weights are copied.
 */
#include <math.h>
#include <string.h>

#include "model_impl.h"

#define BN_EPS 1e-5f

static const float *V(const rvg_model *m, int64_t i) { return m->views[i].data; }

static void bn_scale(float *t, const rvg_model *m, const bn_ref *bn, int64_t K) {
    const float *g = V(m, bn->gamma), *var = V(m, bn->var);
    for (int64_t k = 0; k < K; k++)
        t[k] = g[k] / sqrtf(var[k] + BN_EPS);
}

rvg_status rvg_model_reparam(const rvg_model *m, rvg_model **deploy) {
    *deploy = NULL;
    if (m->form != RVG_FORM_TRAIN)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "reparam: the model is already in deploy form");
    rvg_model *d;
    RVG_TRY(rvg_model_new(&d, &m->arch, RVG_FORM_DEPLOY));
    int64_t kmax = 0;
    for (int64_t i = 0; i < m->n_blocks; i++)
        kmax = m->blocks[i].b.K > kmax ? m->blocks[i].b.K : kmax;
    float *t = rvg_alloc((size_t)kmax * sizeof(float));
    if (!t) {
        rvg_model_free(d);
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
    }
    for (int64_t i = 0; i < m->n_blocks; i++) {
        const block_impl *src = &m->blocks[i];
        const block_impl *dst = &d->blocks[i];
        const rvg_block *b = &src->b;
        int64_t K = b->K, cg = b->C / b->G;
        float *w = d->views[dst->wr].data, *bias = d->views[dst->br].data;
        const float *w3 = V(m, src->w3), *w1 = V(m, src->w1);
        /* 3x3 branch */
        bn_scale(t, m, &src->bn3, K);
        const float *beta = V(m, src->bn3.beta), *mu = V(m, src->bn3.mean);
        for (int64_t k = 0; k < K; k++) {
            for (int64_t j = 0; j < cg * 9; j++)
                w[k * cg * 9 + j] = w3[k * cg * 9 + j] * t[k];
            bias[k] = beta[k] - mu[k] * t[k];
        }
        /* 1x1 branch, at the centre tap (index 4 of the 3x3) */
        bn_scale(t, m, &src->bn1, K);
        beta = V(m, src->bn1.beta);
        mu = V(m, src->bn1.mean);
        for (int64_t k = 0; k < K; k++) {
            for (int64_t c = 0; c < cg; c++)
                w[(k * cg + c) * 9 + 4] += w1[k * cg + c] * t[k];
            bias[k] += beta[k] - mu[k] * t[k];
        }
        /* identity branch */
        if (b->identity) {
            bn_scale(t, m, &src->bn0, K);
            beta = V(m, src->bn0.beta);
            mu = V(m, src->bn0.mean);
            for (int64_t k = 0; k < K; k++) {
                w[(k * cg + k % cg) * 9 + 4] += t[k];
                bias[k] += beta[k] - mu[k] * t[k];
            }
        }
        if (b->se_hidden) {
            int64_t pairs[4][2] = {{src->se_dw, dst->se_dw},
                                   {src->se_db, dst->se_db},
                                   {src->se_uw, dst->se_uw},
                                   {src->se_ub, dst->se_ub}};
            for (int j = 0; j < 4; j++)
                memcpy(d->views[pairs[j][1]].data, V(m, pairs[j][0]),
                       (size_t)m->views[pairs[j][0]].numel * sizeof(float));
        }
    }
    memcpy(d->views[d->fc_w].data, V(m, m->fc_w), (size_t)m->views[m->fc_w].numel * sizeof(float));
    memcpy(d->views[d->fc_b].data, V(m, m->fc_b), (size_t)m->views[m->fc_b].numel * sizeof(float));
    rvg_free(t);
    *deploy = d;
    return RVG_OK;
}
