/* pool.c - reference global average pooling and per-channel scaling (squeeze-excitation).
 *
 * Does: y (N, C) = mean over HW of x (N, C, HW), as torch.nn.AdaptiveAvgPool2d(1) followed by
 * flatten; and y (N, C, HW) = x * s (N, C) broadcast over HW, the multiply of an SE block. Forward
 * and backward; sums over HW are taken in double; backward accumulates (+=).
 *
 * Does not: pool with windows (max/avg pooling with a kernel size), nor apply the SE sigmoid (that
 * is rvg_sigmoid_*_ref in relu.c).
 */
#include "rvg/ops.h"

void rvg_gap_forward_ref(float *y, const float *x, int64_t N, int64_t C, int64_t HW) {
    for (int64_t i = 0; i < N * C; i++) {
        const float *xc = x + i * HW;   /* (HW) */
        double acc = 0.0;
        for (int64_t j = 0; j < HW; j++)
            acc += xc[j];
        y[i] = (float)(acc / (double)HW);
    }
}

void rvg_gap_backward_ref(float *dx, const float *dy, int64_t N, int64_t C, int64_t HW) {
    const float inv = 1.0f / (float)HW;
    for (int64_t i = 0; i < N * C; i++) {
        float *dxc = dx + i * HW;   /* (HW) */
        const float g = dy[i] * inv;
        for (int64_t j = 0; j < HW; j++)
            dxc[j] += g;
    }
}

void rvg_channel_scale_forward_ref(float *y, const float *x, const float *s, int64_t N, int64_t C,
                                   int64_t HW) {
    for (int64_t i = 0; i < N * C; i++) {
        const float *xc = x + i * HW;   /* (HW), may alias yc */
        float *yc = y + i * HW;
        const float si = s[i];
        for (int64_t j = 0; j < HW; j++)
            yc[j] = xc[j] * si;
    }
}

void rvg_channel_scale_backward_ref(float *dx, float *ds, const float *dy, const float *x,
                                    const float *s, int64_t N, int64_t C, int64_t HW) {
    for (int64_t i = 0; i < N * C; i++) {
        const float *restrict dyc = dy + i * HW;   /* (HW) */
        if (ds) {
            const float *restrict xc = x + i * HW;
            double acc = 0.0;
            for (int64_t j = 0; j < HW; j++)
                acc += (double)dyc[j] * xc[j];
            ds[i] += (float)acc;
        }
        if (dx) {
            float *restrict dxc = dx + i * HW;
            const float si = s[i];
            for (int64_t j = 0; j < HW; j++)
                dxc[j] += dyc[j] * si;
        }
    }
}
