/* train_eval.c - one pass over a validation loader: mean cross-entropy, top-1, top-5 and the
 * confusion matrix. Shared by the per-epoch validation of `repvgg train` and by `repvgg eval`.
 *
 * Through the fast engine, or the model with training = 0 (BN from running statistics), so either
 * form works (forward_runner.h). The loss is plain cross-entropy against one-hot labels whatever
 * the training recipe smoothed or mixed.
 * With an eval_flip each batch runs twice, as given and mirrored, and the logits are averaged
 * before the loss and the ranks (flip test-time augmentation, `repvgg eval --tta flip`).
 * Not here: per-class summaries or printing (the commands format *r themselves).
 */
#include <stdlib.h>
#include <string.h>

#include "rvg/ops.h"
#include "train_cli.h"

/* Mirrors every row of x (n images of C x H x W) in place. */
static void mirror_rows(float *x, int64_t n, const eval_flip *f) {
    const int64_t rows = n * f->C * f->H, W = f->W;
    for (int64_t r = 0; r < rows; r++) {
        float *p = x + r * W;
        for (int64_t a = 0, b = W - 1; a < b; a++, b--) {
            const float t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
    }
}

rvg_status train_evaluate(fwd_runner *fr, rvg_loader *ld, float *x, int32_t *y, eval_result *r,
                          int32_t *pred, const eval_flip *flip) {
    const int64_t K = fr->K;
    memset(r, 0, sizeof *r);
    r->K = K;
    r->confusion = calloc((size_t)(K * K), sizeof(int64_t)); /* (K, K) */
    float *target = NULL, *avg = NULL; /* avg: the averaged logits with flip */
    double loss_sum = 0.0;
    int64_t c1 = 0, c5 = 0;
    rvg_status st = rvg_loader_start_epoch(ld, 0);
    if (!r->confusion) {
        st = rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
        goto fail;
    }
    for (;;) {
        int64_t n;
        const float *logits;
        if (st != RVG_OK || (st = rvg_loader_next(ld, x, y, &n, NULL)) != RVG_OK)
            goto fail;
        if (n == 0)
            break;
        if ((st = fwd_runner_forward(fr, x, n, &logits)) != RVG_OK)
            goto fail;
        if (!target && (!(target = malloc((size_t)(n * K) * sizeof(float))) ||
                        (flip && !(avg = malloc((size_t)(n * K) * sizeof(float)))))) {
            st = rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
            goto fail;
        }
        if (flip) { /* the first pass's logits are kept before the engine's buffer is reused */
            memcpy(avg, logits, (size_t)(n * K) * sizeof(float));
            mirror_rows(x, n, flip);
            if ((st = fwd_runner_forward(fr, x, n, &logits)) != RVG_OK)
                goto fail;
            for (int64_t i = 0; i < n * K; i++)
                avg[i] = 0.5f * (avg[i] + logits[i]);
            logits = avg;
        }
        /* The first batch is the largest one (only the last may be partial). */
        rvg_targets_from_labels(target, y, n, K, 0.0f);
        loss_sum += (double)rvg_softmax_xent_ref(NULL, logits, target, n, K) * (double)n;
        for (int64_t i = 0; i < n; i++) {
            const float *l = logits + i * K;
            int32_t lab = y[i];
            /* rank of the true class = number of classes with a strictly larger logit (ties go
             * to the lower index, as torch.topk does in practice for distinct values) */
            int64_t above = 0, arg = 0;
            /* a NaN logit never counts as a hit (every comparison with it is false); callers
             * check labels against K, this only keeps a bad one from reading out of bounds */
            if (lab < 0 || lab >= K || !(l[lab] == l[lab]))
                above = K;
            for (int64_t k = 0; k < K; k++) {
                if (above < K && (l[k] > l[lab] || (l[k] == l[lab] && k < lab)))
                    above++;
                if (l[k] > l[arg])
                    arg = k;
            }
            if (pred)
                pred[r->n + i] = (int32_t)arg;
            c1 += above == 0;
            c5 += above < 5;
            if (lab >= 0 && lab < K)
                r->confusion[(int64_t)lab * K + arg]++;
        }
        r->n += n;
    }
    free(target);
    free(avg);
    r->loss = r->n ? loss_sum / (double)r->n : 0.0;
    r->top1 = r->n ? (double)c1 / (double)r->n : 0.0;
    r->top5 = r->n ? (double)c5 / (double)r->n : 0.0;
    return RVG_OK;
fail:
    free(target);
    free(avg);
    free(r->confusion);
    r->confusion = NULL;
    return st;
}
