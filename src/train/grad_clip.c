/* grad_clip.c - the global gradient norm and clipping by it, as torch.nn.utils.clip_grad_norm_.
 *
 * Why: a conv weight followed by BatchNorm gets a gradient inversely proportional to its size, and
 * a strong weight decay keeps shrinking it, so late in a run single steps can come with a gradient
 * tens of times the usual (docs/fashion_mnist.md, "The loss spike of the seed-1 hour": norm 72
 * against a median of 1.9 in its epoch, in stage 3's conv weights, and the plain C reference
 * kernels give the same, so no kernel fault). Clipping bounds such a step.
 *
 * The norm is summed in double over fixed blocks of the gradient arena, each block's partial kept
 * in its own slot and the slots added in order, so the result does not depend on the thread
 * count (a resumed one-thread run must repeat an uninterrupted one bit for bit). The arena's
 * padding is zero and stays zero under the scaling.
 *
 * Does not: add the weight decay (the optimiser does, after clipping, as torch.optim.SGD does
 * after clip_grad_norm_) or average over ranks (the loop clips the averaged gradients).
 */
#include <math.h>

#include "core/parallel_impl.h"
#include "model/model_impl.h"
#include "rvg/train.h"

#define CLIP_MAX_BLOCKS 256
#define CLIP_MIN_BLOCK 65536

typedef struct {
    const float *g;
    int64_t n, block;
    double *part;
} norm_job;

static void norm_block(void *ctx, int64_t item, int tid) {
    (void)tid;
    const norm_job *j = ctx;
    const int64_t lo = item * j->block, hi = lo + j->block < j->n ? lo + j->block : j->n;
    const float *restrict g = j->g;
    double acc[8] = {0}; /* eight lanes, so the loop vectorizes without reassociation */
    int64_t k = lo;
    for (; k + 8 <= hi; k += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += (double)g[k + l] * (double)g[k + l];
    for (; k < hi; k++)
        acc[0] += (double)g[k] * (double)g[k];
    j->part[item] =
        ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

typedef struct {
    float *g;
    float coef;
} scale_job;

static void scale_range(void *ctx, int64_t lo, int64_t hi) {
    const scale_job *j = ctx;
    float *restrict g = j->g;
    for (int64_t k = lo; k < hi; k++)
        g[k] *= j->coef;
}

double rvg_grad_norm(const rvg_model *m) {
    if (!m || !m->grads)
        return 0.0;
    const int64_t n = m->n_params_arena;
    int64_t block = (n + CLIP_MAX_BLOCKS - 1) / CLIP_MAX_BLOCKS;
    if (block < CLIP_MIN_BLOCK)
        block = CLIP_MIN_BLOCK;
    double part[CLIP_MAX_BLOCKS];
    const int64_t items = (n + block - 1) / block;
    norm_job j = {m->grads, n, block, part};
    rvg__par_run(items, rvg__par_threads(), norm_block, &j);
    double s = 0.0;
    for (int64_t i = 0; i < items; i++)
        s += part[i];
    return sqrt(s);
}

rvg_status rvg_clip_grad_norm(rvg_model *m, float max_norm, double *total_norm) {
    if (!m || !m->grads)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "clip_grad_norm: the model has no gradients (deploy form)");
    if (!(max_norm > 0.0f) || !isfinite(max_norm))
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "clip_grad_norm: max_norm must be a positive finite number, not %g",
                         (double)max_norm);
    const double norm = rvg_grad_norm(m);
    if (total_norm)
        *total_norm = norm;
    /* PyTorch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1 (a multiplication by 1
     * changes nothing, so it is skipped). A non-finite norm is left for the caller to report. */
    const float coef = (float)((double)max_norm / (norm + 1e-6));
    if (isfinite(norm) && coef < 1.0f) {
        scale_job s = {m->grads, coef};
        rvg__par_chunks(m->n_params_arena, 16384, scale_range, &s);
    }
    return RVG_OK;
}
