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
#include <stdio.h>
#include <string.h>

#include "core/parallel_impl.h"
#include "model/model_impl.h"
#include "rvg/train.h"
#include "train/ema_impl.h"

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

void rvg__ema_range(float *e, const float *w, int64_t lo, int64_t hi, float a, float b) {
    float *restrict er = e;
    const float *restrict wr = w;
    for (int64_t k = lo; k < hi; k++)
        er[k] = er[k] * a + b * wr[k];
}

static void ema_chunk(void *ctx, int64_t lo, int64_t hi) {
    const ema_job *j = ctx;
    rvg__ema_range(j->e, j->m, lo, hi, j->a, j->b);
}

static void ema_arena(float *e, const float *m, int64_t n, float d) {
    ema_job j = {e, m, d, (float)(1.0 - (double)d)};
    rvg__par_chunks(n, EMA_CHUNK, ema_chunk, &j);
}

/* "A0 (train form, 1 channel in, 10 classes)": what an error message says of a model */
static void describe(const rvg_model *m, char *out, size_t size) {
    char arch[400];
    rvg_arch_format(&m->arch, arch, sizeof arch);
    snprintf(out, size, "%s (%s form, %lld channel%s in, %lld classes)", arch,
             m->form == RVG_FORM_TRAIN ? "train" : "deploy", (long long)m->arch.in_ch,
             m->arch.in_ch == 1 ? "" : "s", (long long)m->arch.classes);
}

rvg_status rvg__ema_check(const rvg_model *ema, const rvg_model *m, float d) {
    if (!ema || !m || ema == m)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "ema: two distinct models are needed");
    char a[512], b[512];
    describe(ema, a, sizeof a);
    describe(m, b, sizeof b);
    if (strcmp(a, b) != 0 || ema->n_params_arena != m->n_params_arena ||
        ema->n_buffers_arena != m->n_buffers_arena || ema->n_bn != m->n_bn)
        return rvg_error(RVG_STATUS_BAD_SHAPE, "ema: the average is of %s, the model of %s", a, b);
    if (!(d >= 0.0f && d < 1.0f))
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "ema: decay %g is not in [0, 1)", (double)d);
    return RVG_OK;
}

void rvg__ema_rest(rvg_model *ema, const rvg_model *m, float d) {
    ema_arena(ema->buffers, m->buffers, m->n_buffers_arena, d);
    if (m->n_bn)
        memcpy(ema->bn_counters, m->bn_counters, (size_t)m->n_bn * sizeof(int64_t));
}

rvg_status rvg_ema_update(rvg_model *ema, const rvg_model *m, float decay) {
    RVG_TRY(rvg__ema_check(ema, m, decay));
    ema_arena(ema->params, m->params, m->n_params_arena, decay);
    rvg__ema_rest(ema, m, decay);
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
    RVG_TRY(rvg__ema_check(ema, m, 0.0f));
    swap_floats(ema->params, m->params, m->n_params_arena);
    swap_floats(ema->buffers, m->buffers, m->n_buffers_arena);
    for (int64_t i = 0; i < m->n_bn; i++) {
        int64_t t = ema->bn_counters[i];
        ema->bn_counters[i] = m->bn_counters[i];
        m->bn_counters[i] = t;
    }
    return RVG_OK;
}
