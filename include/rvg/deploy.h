/* deploy.h - from a model to the fast inference engine (infer.h).
 *
 * The engine only knows plain layers; this bridge walks a model's blocks and hands the engine
 * their fused kernels, so callers never build rvg_infer_layer lists by hand.
 */
#ifndef RVG_DEPLOY_H
#define RVG_DEPLOY_H

#include "infer.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* New engine running model m for inputs up to max_batch x C x H x W (threads <= 0: all cores).
 * A train-form m is re-parameterised first (m itself is unchanged). opts may be NULL. */
rvg_status rvg_deploy_engine_new(rvg_engine **out, const rvg_model *m, int64_t H, int64_t W,
                                 int64_t max_batch, int threads, const rvg_engine_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
