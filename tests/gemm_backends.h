/* gemm_backends.h - runs a conv test's cases once per GEMM backend of the training convolution
 * (plain C micro-kernel, AVX2 micro-kernel, OpenBLAS), skipping those this build or CPU lacks, then
 * restores the default choice. Shared by test_conv_fast.c and test_conv_fused.c.
 */
#ifndef RVG_TEST_GEMM_BACKENDS_H
#define RVG_TEST_GEMM_BACKENDS_H

#include <stdio.h>

#include "harness.h"
#include "ops/conv2d_gemm_impl.h"

static void for_each_gemm_backend(void (*run_all)(void)) {
    const rvg__gemm_backend backends[] = {RVG__GEMM_OWN_C, RVG__GEMM_OWN_AVX2, RVG__GEMM_BLAS};
    const char *names[] = {"own-c", "own-avx2", "blas"};
    for (size_t bi = 0; bi < sizeof backends / sizeof backends[0]; bi++) {
        if (!rvg__conv_gemm_set_backend(backends[bi])) {
            printf("-- backend %s: not in this build / CPU, skipped\n", names[bi]);
            continue;
        }
        printf("-- backend %s\n", rvg__conv_gemm_backend_name());
        run_all();
    }
    CHECK(rvg__conv_gemm_set_backend(RVG__GEMM_AUTO));
    printf("-- default backend: %s\n", rvg__conv_gemm_backend_name());
}

#endif
