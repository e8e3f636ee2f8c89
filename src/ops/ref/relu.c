/* relu.c - reference elementwise activations: ReLU and sigmoid, forward and backward.
 *
 * Does: y = max(x, 0) and y = 1 / (1 + exp(-x)) over flat float arrays (in place allowed), and
 * their backward passes written in terms of the forward OUTPUT y, so callers need not keep the
 * input.
 * Backward accumulates (+=) into dx.
 *
 * Does not: take a negative slope (leaky ReLU), clamp, or fuse with other ops. NaN passes through
 * ReLU and sigmoid unchanged, as in PyTorch.
 */
#include <math.h>

#include "rvg/ops.h"

void rvg_relu_forward_ref(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] < 0.0f ? 0.0f : x[i];   /* NaN is not < 0: kept, as torch.relu does */
}

void rvg_relu_backward_ref(float *dx, const float *dy, const float *y, int64_t n) {
    /* d relu / dx = 1 where the output is positive, else 0 (PyTorch's threshold_backward). */
    for (int64_t i = 0; i < n; i++)
        if (y[i] > 0.0f)
            dx[i] += dy[i];
}

void rvg_sigmoid_forward_ref(float *y, const float *x, int64_t n) {
    /* expf(-x) overflows to inf for x < -88, giving exactly 0, the correctly rounded result. */
    for (int64_t i = 0; i < n; i++)
        y[i] = 1.0f / (1.0f + expf(-x[i]));
}

void rvg_sigmoid_backward_ref(float *dx, const float *dy, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        dx[i] += dy[i] * y[i] * (1.0f - y[i]);
}
