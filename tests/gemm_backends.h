/* gemm_backends.h - runs a conv test's cases once per GEMM backend of the training convolution
 * (plain C micro-kernel, AVX2 micro-kernel, AVX-512 wide kernels, OpenBLAS), skipping those this
 * build or CPU lacks, then restores the default choice. Shared by test_conv_fast.c and
 * test_conv_fused.c.
 */
#ifndef RVG_TEST_GEMM_BACKENDS_H
#define RVG_TEST_GEMM_BACKENDS_H

#include <stdio.h>

#include "harness.h"
#include "ops/conv2d_gemm_impl.h"

static void for_each_gemm_backend(void (*run_all)(void)) {
    /* own-avx2 runs twice: with one 16-column panel per kernel call (AVX2 kernels only), and with
     * the AVX-512 6x32 kernels taking two panels at a time where the CPU has AVX-512F */
    const rvg__gemm_backend backends[] = {RVG__GEMM_OWN_C, RVG__GEMM_OWN_AVX2, RVG__GEMM_OWN_AVX2,
                                          RVG__GEMM_BLAS};
    const int wide[] = {0, 0, 1, 0};
    const char *names[] = {"own-c", "own-avx2", "own-avx2+avx512", "blas"};
    for (size_t bi = 0; bi < sizeof backends / sizeof backends[0]; bi++) {
        if (!rvg__conv_gemm_set_backend(backends[bi]) ||
            rvg__conv_gemm_set_wide(wide[bi]) != wide[bi]) {
            printf("-- backend %s: not in this build / CPU, skipped\n", names[bi]);
            continue;
        }
        printf("-- backend %s\n", rvg__conv_gemm_backend_name());
        run_all();
    }
    rvg__conv_gemm_set_wide(1);
    CHECK(rvg__conv_gemm_set_backend(RVG__GEMM_AUTO));
    printf("-- default backend: %s\n", rvg__conv_gemm_backend_name());
}

#endif
