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

/* 1 under the bf16x3 backends, whose products carry 16 of fp32's 24 mantissa bits: their sums
 * round about 8x worse than fp32's (measured: up to 5e-5 of max|ref| where fp32 gives 2e-6 to
 * 8e-6), so the tests scale their fp32 tolerances by gemm_tol_scale(). */
static int gemm_is_bf16x3(void) {
    const rvg__gemm_backend b = rvg__conv_gemm_backend();
    return b == RVG__GEMM_BF16X3_C || b == RVG__GEMM_AMX;
}
static float gemm_tol_scale(void) {
    return gemm_is_bf16x3() ? 8.0f : 1.0f;
}

static void for_each_gemm_backend(void (*run_all)(void)) {
    /* own-avx2 runs twice: with one 16-column panel per kernel call (AVX2 kernels only), and with
     * the AVX-512 6x32 kernels taking two panels at a time where the CPU has AVX-512F */
    const rvg__gemm_backend backends[] = {RVG__GEMM_OWN_C, RVG__GEMM_OWN_AVX2, RVG__GEMM_OWN_AVX2,
                                          RVG__GEMM_BLAS,  RVG__GEMM_BF16X3_C, RVG__GEMM_AMX};
    const int wide[] = {0, 0, 1, 0, -1, -1}; /* -1: whatever the fp32 default has */
    const char *names[] = {"own-c", "own-avx2", "own-avx2+avx512",
                           "blas",  "bf16x3-c", "amx-bf16x3"};
    for (size_t bi = 0; bi < sizeof backends / sizeof backends[0]; bi++) {
        if (!rvg__conv_gemm_set_backend(backends[bi]) ||
            (wide[bi] >= 0 && rvg__conv_gemm_set_wide(wide[bi]) != wide[bi])) {
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
