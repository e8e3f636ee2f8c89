/* forward_runner.h - logits for a batch of images, from the fast inference engine or from the
 * model's own layer-by-layer forward: what `repvgg eval`, `repvgg predict` and the per-epoch
 * validation of `repvgg train` run their images through.
 *
 * The engine (src/infer/, via rvg_deploy_engine_new) is what a user deploys, so the commands
 * that take deploy-form weights run it by default; the model's forward (the training kernels, BN
 * in inference mode, the branches as written for the train form) is the reference it is
 * checked against and what the train form runs unless asked otherwise.
 */
#ifndef RVG_FORWARD_RUNNER_H
#define RVG_FORWARD_RUNNER_H

#include <stdint.h>

#include "rvg/deploy.h"
#include "rvg/model.h"
#include "rvg/status.h"

typedef enum {
    RUNNER_AUTO =
        0,         /* the engine for deploy-form weights, the model's forward for the train form */
    RUNNER_ENGINE, /* the fast engine; a train-form model is re-parameterised in memory first */
    RUNNER_MODEL,  /* the model's forward, either form */
} runner_kind;

typedef struct {
    rvg_model *m;   /* not owned */
    rvg_plan *plan; /* the model path's plan; owned unless borrowed (fwd_runner_borrow) */
    int owns_plan;
    rvg_engine *e; /* the engine path */
    float *logits; /* the engine's output, (max_batch, K) */
    int64_t K;
} fwd_runner;

/* Whether a runner of m of this kind would be the engine (RUNNER_AUTO: for deploy-form weights). */
int fwd_runner_is_engine(runner_kind kind, const rvg_model *m);
/* For a command given --kernels: 1 after a message when the runner would be the model's forward,
 * which the engine's kernel sets do not reach (the option would be silently ignored). */
int fwd_runner_kernels_unused(const char *cmd, runner_kind kind, const rvg_model *m);

/* "fast" -> RUNNER_ENGINE, "model" -> RUNNER_MODEL; 0 for anything else. */
int fwd_runner_parse(const char *s, runner_kind *kind);

/* A runner of m for inputs up to max_batch x C x H x W; threads <= 0 means all cores (the
 * engine's own pool; the model's forward uses OpenMP's setting); isa: the engine's kernel set. */
rvg_status fwd_runner_init(fwd_runner *r, rvg_model *m, runner_kind kind, int64_t max_batch,
                           int64_t H, int64_t W, int threads, rvg_infer_isa isa);

/* A model-path runner on a plan the caller keeps (the training loop's). */
void fwd_runner_borrow(fwd_runner *r, rvg_model *m, rvg_plan *p);

/* logits (n, K) of x (n, C, H, W), 1 <= n <= max_batch; valid until the next call.
 * RVG_STATUS_BAD_FORMAT when a logit is NaN or infinite (non-finite weights or input). */
rvg_status fwd_runner_forward(fwd_runner *r, const float *x, int64_t n, const float **logits);

/* "fast" or "model": what ran, for reports. */
const char *fwd_runner_name(const fwd_runner *r);

void fwd_runner_free(fwd_runner *r);

#endif
