/* forward_runner.c - the engine or the model's forward behind one call (see forward_runner.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "forward_runner.h"
#include "rvg/tensor.h"

int fwd_runner_parse(const char *s, runner_kind *kind) {
    if (strcmp(s, "fast") == 0)
        *kind = RUNNER_ENGINE;
    else if (strcmp(s, "model") == 0)
        *kind = RUNNER_MODEL;
    else
        return 0;
    return 1;
}

int fwd_runner_is_engine(runner_kind kind, const rvg_model *m) {
    return kind == RUNNER_ENGINE || (kind == RUNNER_AUTO && rvg_model_form(m) == RVG_FORM_DEPLOY);
}

int fwd_runner_kernels_unused(const char *cmd, runner_kind kind, const rvg_model *m) {
    if (fwd_runner_is_engine(kind, m))
        return 0;
    fprintf(stderr,
            "repvgg %s: --kernels chooses the fast engine's kernels, but %s runs on the model's "
            "forward; add --engine fast (the train form is then converted in memory)\n",
            cmd, kind == RUNNER_MODEL ? "--engine model" : "a train-form model");
    return 1;
}

rvg_status fwd_runner_init(fwd_runner *r, rvg_model *m, runner_kind kind, int64_t max_batch,
                           int64_t H, int64_t W, int threads, rvg_infer_isa isa) {
    memset(r, 0, sizeof *r);
    r->m = m;
    r->K = rvg_model_arch(m)->classes;
    kind = fwd_runner_is_engine(kind, m) ? RUNNER_ENGINE : RUNNER_MODEL;
    if (kind == RUNNER_MODEL) {
        r->owns_plan = 1;
        return rvg_plan_new(&r->plan, m, max_batch, H, W);
    }
    rvg_engine_opts eo = {.isa = isa};
    RVG_TRY(rvg_deploy_engine_new(&r->e, m, H, W, max_batch, threads, &eo));
    if (!(r->logits = rvg_alloc((size_t)(max_batch * r->K) * sizeof(float)))) {
        fwd_runner_free(r);
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
    }
    return RVG_OK;
}

void fwd_runner_borrow(fwd_runner *r, rvg_model *m, rvg_plan *p) {
    memset(r, 0, sizeof *r);
    r->m = m;
    r->plan = p;
    r->K = rvg_model_arch(m)->classes;
}

/* A NaN or infinite logit would give a NaN loss, a top-1 that counts nothing and an argmax
 * that is always class 0 (every comparison with NaN is false): a report that looks like a result.
 * So eval, predict and validation stop with a message instead. */
static rvg_status check_finite(const float *logits, int64_t n, int64_t K) {
    for (int64_t i = 0; i < n * K; i++)
        if (!isfinite(logits[i]))
            return rvg_error(RVG_STATUS_BAD_FORMAT,
                             "the network's output for image %lld of the batch is not finite "
                             "(%g): the weights or the input hold NaN or infinite values, or "
                             "overflow",
                             (long long)(i / K), (double)logits[i]);
    return RVG_OK;
}

rvg_status fwd_runner_forward(fwd_runner *r, const float *x, int64_t n, const float **logits) {
    if (r->e) {
        RVG_TRY(rvg_engine_run(r->e, r->logits, x, n));
        *logits = r->logits;
    } else {
        RVG_TRY(rvg_model_forward(r->m, r->plan, x, n, 0, logits));
    }
    return check_finite(*logits, n, r->K);
}

const char *fwd_runner_name(const fwd_runner *r) {
    return r->e ? "fast" : "model";
}

void fwd_runner_free(fwd_runner *r) {
    if (r->owns_plan)
        rvg_plan_free(r->plan);
    rvg_engine_free(r->e);
    rvg_free(r->logits);
    memset(r, 0, sizeof *r);
}
