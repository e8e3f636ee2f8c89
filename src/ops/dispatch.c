/* dispatch.c - routes the un-suffixed op names (rvg_conv2d_forward, ...) to a fast twin or _ref.
 *
 * Does: reads RVG_FORCE_REF once (any value but "" and "0" sends every call to the _ref kernels,
 * for bisecting), lets rvg_ops_force_ref() override it, and otherwise sends convolutions to the
 * im2col + GEMM path (src/ops/conv2d_gemm.c), which itself picks its GEMM from cpuid at first use;
 * the fused 3x3 + 1x1 pair of a train-form block likewise.
 * rvg_conv2d_workspace_size always answers for the fast path, so a workspace sized once stays big
 * enough if RVG_FORCE_REF or rvg_ops_force_ref() change the route later.
 *
 * A NULL workspace also takes the _ref route (slow but correct) rather than crashing.
 *
 * Also the public switch of the training GEMM's arithmetic (fp32 or bf16x3,
 * rvg_ops_set_train_kernels).
 *
 * Does not: choose between inference kernels (Winograd, deploy-form) or validate shapes.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu_impl.h"
#include "ops/conv2d_gemm_impl.h"
#include "rvg/ops.h"

static pthread_once_t g_env_once = PTHREAD_ONCE_INIT;
static atomic_int g_force_ref; /* 0: fast twins where they exist, 1: _ref everywhere */

static void read_env(void) {
    const char *v = getenv("RVG_FORCE_REF");
    atomic_store(&g_force_ref, v && v[0] && strcmp(v, "0") != 0);
}

void rvg_ops_force_ref(int on) {
    pthread_once(&g_env_once, read_env);
    atomic_store(&g_force_ref, on != 0);
}

int rvg_ops_using_ref(void) {
    pthread_once(&g_env_once, read_env);
    return atomic_load(&g_force_ref);
}

int rvg_ops_set_train_kernels(rvg_train_kernels k) {
    switch (k) {
    case RVG_TRAIN_KERNELS_AUTO: return rvg__conv_gemm_set_backend(RVG__GEMM_AUTO);
    case RVG_TRAIN_KERNELS_AMX: return rvg__conv_gemm_set_backend(RVG__GEMM_AMX);
    case RVG_TRAIN_KERNELS_AMX_TWIN: return rvg__conv_gemm_set_backend(RVG__GEMM_BF16X3_C);
    }
    return 0;
}

int rvg_ops_train_kernels_available(rvg_train_kernels k) {
    switch (k) {
    case RVG_TRAIN_KERNELS_AUTO:
    case RVG_TRAIN_KERNELS_AMX_TWIN: return 1;
    case RVG_TRAIN_KERNELS_AMX: return rvg__amx_usable();
    }
    return 0;
}

rvg_train_kernels rvg_ops_train_kernels(void) {
    switch (rvg__conv_gemm_backend()) {
    case RVG__GEMM_AMX: return RVG_TRAIN_KERNELS_AMX;
    case RVG__GEMM_BF16X3_C: return RVG_TRAIN_KERNELS_AMX_TWIN;
    default: return RVG_TRAIN_KERNELS_AUTO;
    }
}

const char *rvg_train_kernels_name(rvg_train_kernels k) {
    switch (k) {
    case RVG_TRAIN_KERNELS_AUTO: return "auto";
    case RVG_TRAIN_KERNELS_AMX: return "amx";
    case RVG_TRAIN_KERNELS_AMX_TWIN: return "amx-twin";
    }
    return "?";
}

size_t rvg_conv2d_workspace_size(const rvg_conv_shape *s) {
    return rvg__conv2d_gemm_workspace_size(s);
}

/* A NULL workspace (a caller that sized it for _ref) also falls back to _ref: slow but correct. */
void rvg_conv2d_forward(float *y, const float *x, const float *w, const float *bias,
                        const rvg_conv_shape *s, void *work) {
    if (rvg_ops_using_ref() || !work)
        rvg_conv2d_forward_ref(y, x, w, bias, s, work);
    else
        rvg__conv2d_forward_gemm(y, x, w, bias, s, work);
}

void rvg_conv2d_backward(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                         const float *w, const rvg_conv_shape *s, void *work) {
    if (rvg_ops_using_ref() || !work)
        rvg_conv2d_backward_ref(dx, dw, dbias, dy, x, w, s, work);
    else
        rvg__conv2d_backward_gemm(dx, dw, dbias, dy, x, w, s, work);
}

/* The pair needs the 3x3's workspace plus a second gathered-dy buffer; sized for the fast path
 * always, as above. */
size_t rvg_conv2d_3x3_1x1_workspace_size(const rvg_conv_shape *s3) {
    return rvg__conv2d_3x3_1x1_gemm_workspace_size(s3);
}

void rvg_conv2d_forward_3x3_1x1(float *z3, float *z1, const float *x, const float *w3,
                                const float *w1, const rvg_conv_shape *s3, void *work) {
    if (rvg_ops_using_ref() || !work)
        rvg_conv2d_forward_3x3_1x1_ref(z3, z1, x, w3, w1, s3, work);
    else
        rvg__conv2d_forward_3x3_1x1_gemm(z3, z1, x, w3, w1, s3, work, NULL);
}

void rvg_conv2d_backward_3x3_1x1(float *dx, float *dw3, float *dw1, const float *dz3,
                                 const float *dz1, const float *x, const float *w3, const float *w1,
                                 const rvg_conv_shape *s3, void *work) {
    if (rvg_ops_using_ref() || !work)
        rvg_conv2d_backward_3x3_1x1_ref(dx, dw3, dw1, dz3, dz1, x, w3, w1, s3, work);
    else
        rvg__conv2d_backward_3x3_1x1_gemm(dx, dw3, dw1, dz3, dz1, x, w3, w1, s3, work, NULL);
}
