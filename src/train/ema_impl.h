/* ema_impl.h - the pieces of the moving average (ema.c) that the fused optimiser step (sgd.c)
 * runs inside its own pass over the weights.
 */
#ifndef RVG_EMA_IMPL_H
#define RVG_EMA_IMPL_H

#include <stdint.h>

#include "rvg/model.h"

/* Whether ema and m are two distinct models of the same network and form and d is in [0, 1);
 * sets the error message otherwise. */
rvg_status rvg__ema_check(const rvg_model *ema, const rvg_model *m, float d);

/* e[k] = e[k] * a + b * w[k] for k in [lo, hi), with a = d and b = 1 - d rounded from double. */
void rvg__ema_range(float *e, const float *w, int64_t lo, int64_t hi, float a, float b);

/* The average's update of everything but the parameters: the BN running statistics (averaged)
 * and batch counters (copied). */
void rvg__ema_rest(rvg_model *ema, const rvg_model *m, float d);

#endif
