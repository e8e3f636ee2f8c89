/* conv2d_gemm_avx512.c - the AVX-512 6x32 sgemm micro-kernels of the training convolution.
 *
 * Does: one register tile C (6 x 32) (+)= A panel (6 x kc) * two adjacent packed B panels (kc x
 * 16 each, the second kc*16 floats after the first), twelve zmm accumulators fed by two B loads
 * and six A broadcasts per k step. It is the AVX2 6x16 kernel (conv2d_gemm_avx2.c) at twice the
 * width: the packing layouts stay those of the 16-column panels, so gemm_serial hands this kernel
 * two panels where it has them and the AVX2 kernel the odd last one. Each C element still gets one
 * FMA per k in increasing k order with the same operands, so its value is bit-identical to the
 * AVX2 kernel's (tests/test_conv_fast.c checks that on awkward shapes). Same three entry points as
 * the AVX2 file: A packed (6 floats per k), A read in place from a row-major matrix, or from its
 * transpose. The body is conv2d_gemm_body.h, shared with the AVX2 kernels. Edge tiles (fewer
 * rows, or fewer than 32 valid columns: the second panel is zero-padded past the matrix) are
 * computed in full and only the valid corner is written.
 *
 * Why: on a Zen 5 core a zmm FMA does twice the work of a ymm one at the same rate, and the GEMMs
 * were 45-57% of an A0 training step on 28x28 and 56x56 inputs (perf, 2 threads).
 *
 * Does not: pack, block for caches or thread (src/ops/conv2d_gemm.c does), or check the CPU: the
 * caller only picks these kernels when __builtin_cpu_supports says avx512f. Compiled with
 * -mavx512f -mavx2 -mfma (CMakeLists.txt does that for every *_avx512.c file).
 */
#include <immintrin.h>

#include "ops/conv2d_gemm_impl.h"

/* Two 16-column panels per call, one zmm of each per row (conv2d_gemm_body.h). */
#define GB_V __m512
#define GB_W 16
#define GB_ZERO() _mm512_setzero_ps()
#define GB_LOADU(p) _mm512_loadu_ps(p)
#define GB_SET1(x) _mm512_set1_ps(x)
#define GB_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define GB_ADD(a, b) _mm512_add_ps(a, b)
#define GB_STOREU(p, v) _mm512_storeu_ps(p, v)
#define GB_B1_OFFSET(kc) ((kc)*RVG__GEMM_NR)
#include "ops/x86/conv2d_gemm_body.h"

void rvg__conv_gemm_kernel2_avx512(int64_t kc, const float *a, const float *b, float *c,
                                   int64_t ldc, int64_t mr, int64_t nr, int beta_one) {
    gemm_body(kc, a, 1, RVG__GEMM_MR, b, c, ldc, mr, nr, beta_one);
}

void rvg__conv_gemm_kernel2_rows_avx512(int64_t kc, const float *a, int64_t lda, const float *b,
                                        float *c, int64_t ldc, int64_t nr, int beta_one) {
    gemm_body(kc, a, lda, 1, b, c, ldc, RVG__GEMM_MR, nr, beta_one);
}

void rvg__conv_gemm_kernel2_cols_avx512(int64_t kc, const float *a, int64_t lda, const float *b,
                                        float *c, int64_t ldc, int64_t nr, int beta_one) {
    gemm_body(kc, a, 1, lda, b, c, ldc, RVG__GEMM_MR, nr, beta_one);
}
