/* linear.c - reference fully connected layer, forward and backward, as torch.nn.Linear.
 *
 * Does: y (N, K) = x (N, C) w^T + b with w (K, C) in PyTorch's layout and b optional; backward
 * accumulates (+=) dx = dy w, dw = dy^T x, db = sum_n dy. Forward dot products and db are summed in
 * double; dx and dw add float row updates. Every inner loop walks a contiguous row.
 *
 * Does not: block or vectorise (the classifier head is tiny next to the convolutions), or fuse an
 * activation.
 */
#include "rvg/ops.h"

void rvg_linear_forward_ref(float *y, const float *x, const float *w, const float *b, int64_t N,
                            int64_t C, int64_t K) {
    for (int64_t n = 0; n < N; n++) {
        const float *restrict xn = x + n * C;   /* (C) */
        for (int64_t k = 0; k < K; k++) {
            const float *restrict wk = w + k * C;   /* (C) */
            double acc = b ? b[k] : 0.0;
            for (int64_t c = 0; c < C; c++)
                acc += (double)xn[c] * wk[c];
            y[n * K + k] = (float)acc;
        }
    }
}

void rvg_linear_backward_ref(float *dx, float *dw, float *db, const float *dy, const float *x,
                             const float *w, int64_t N, int64_t C, int64_t K) {
    /* dx[n, c] += sum_k dy[n, k] w[k, c] */
    if (dx) {
        for (int64_t n = 0; n < N; n++) {
            float *restrict dxn = dx + n * C;   /* (C) */
            for (int64_t k = 0; k < K; k++) {
                const float g = dy[n * K + k];
                const float *restrict wk = w + k * C;
                for (int64_t c = 0; c < C; c++)
                    dxn[c] += g * wk[c];
            }
        }
    }
    /* dw[k, c] += sum_n dy[n, k] x[n, c] */
    if (dw) {
        for (int64_t k = 0; k < K; k++) {
            float *restrict dwk = dw + k * C;   /* (C) */
            for (int64_t n = 0; n < N; n++) {
                const float g = dy[n * K + k];
                const float *restrict xn = x + n * C;
                for (int64_t c = 0; c < C; c++)
                    dwk[c] += g * xn[c];
            }
        }
    }
    /* db[k] += sum_n dy[n, k] */
    if (db) {
        for (int64_t k = 0; k < K; k++) {
            double acc = 0.0;
            for (int64_t n = 0; n < N; n++)
                acc += dy[n * K + k];
            db[k] += (float)acc;
        }
    }
}
