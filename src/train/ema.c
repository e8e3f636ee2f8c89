/* ema.c - an exponential moving average of a model's weights (timm's --model-ema), the weights a
 * run validates and exports when `repvgg train --ema` is on.
 *
 * The average covers the parameters and the BN running statistics, as timm's ModelEmaV2 averages
 * every floating-point entry of the state dict; the BN batch counters are copied. Each update is
 * written in PyTorch's operation order, e * d + (1 - d) * m in float32 with d and 1 - d rounded
 * from double (C11 mode compiles without FMA contraction), and it is elementwise, so splitting it
 * over threads changes no bit. rvg_ema_swap lets a training run validate the average with the
 * model's own plan (its activations are most of a run's memory).
 */
#include <string.h>

#include "core/parallel_impl.h"
#include "model/model_impl.h"
#include "rvg/train.h"

float rvg_ema_decay_at(float decay, int64_t t) {
    if (t < 0)
        t = 0;
    const double warm = (1.0 + (double)t) / (10.0 + (double)t);
    return warm < (double)decay ? (float)warm : decay;
}

typedef struct {
    float *e;
    const float *m;
    float a, b; /* d and 1 - d */
} ema_job;

#define EMA_CHUNK 16384

static void ema_range(void *ctx, int64_t lo, int64_t hi) {
    const ema_job *j = ctx;
    float *restrict e = j->e;
    const float *restrict m = j->m;
    const float a = j->a, b = j->b;
    for (int64_t k = lo; k < hi; k++)
        e[k] = e[k] * a + b * m[k];
}

static void ema_arena(float *e, const float *m, int64_t n, float d) {
    ema_job j = {e, m, d, (float)(1.0 - (double)d)};
    rvg__par_chunks(n, EMA_CHUNK, ema_range, &j);
}

/* Whether ema and m are two models of the same network and form (same arena layouts). */
static rvg_status ema_check(const rvg_model *ema, const rvg_model *m) {
    if (!ema || !m || ema == m)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "ema: two distinct models are needed");
    char a[512], b[512];
    rvg_arch_format(&ema->arch, a, sizeof a);
    rvg_arch_format(&m->arch, b, sizeof b);
    if (ema->form != m->form || strcmp(a, b) != 0 || ema->n_params_arena != m->n_params_arena ||
        ema->n_buffers_arena != m->n_buffers_arena || ema->n_bn != m->n_bn)
        return rvg_error(RVG_STATUS_BAD_SHAPE, "ema: the average is of %s, the model is %s", a, b);
    return RVG_OK;
}

rvg_status rvg_ema_update(rvg_model *ema, const rvg_model *m, float decay) {
    RVG_TRY(ema_check(ema, m));
    if (!(decay >= 0.0f && decay < 1.0f))
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "ema: decay %g is not in [0, 1)", (double)decay);
    ema_arena(ema->params, m->params, m->n_params_arena, decay);
    ema_arena(ema->buffers, m->buffers, m->n_buffers_arena, decay);
    if (m->n_bn)
        memcpy(ema->bn_counters, m->bn_counters, (size_t)m->n_bn * sizeof(int64_t));
    return RVG_OK;
}

static void swap_floats(float *a, float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float t = a[i];
        a[i] = b[i];
        b[i] = t;
    }
}

rvg_status rvg_ema_swap(rvg_model *ema, rvg_model *m) {
    RVG_TRY(ema_check(ema, m));
    swap_floats(ema->params, m->params, m->n_params_arena);
    swap_floats(ema->buffers, m->buffers, m->n_buffers_arena);
    for (int64_t i = 0; i < m->n_bn; i++) {
        int64_t t = ema->bn_counters[i];
        ema->bn_counters[i] = m->bn_counters[i];
        m->bn_counters[i] = t;
    }
    return RVG_OK;
}
