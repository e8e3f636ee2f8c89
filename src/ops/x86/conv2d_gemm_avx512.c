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
 * transpose.
 * Edge tiles (fewer rows, or fewer than 32 valid columns: the second panel is zero-padded past the
 * matrix) are computed in full and only the valid corner is written.
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

/* a(i, k) = a[i*rs + k*cs]; b: two packed (kc, 16) panels, the second at b + kc*16. Inlined into
 * each entry point so rs and cs are compile-time constants where they can be. */
static inline __attribute__((always_inline)) void
kernel_body(int64_t kc, const float *a, int64_t rs, int64_t cs, const float *b, float *c,
            int64_t ldc, int64_t mr, int64_t nr, int beta_one) {
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
    __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
    __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
    __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
    __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
    __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
    const float *a0 = a, *a1 = a + rs, *a2 = a + 2 * rs, *a3 = a + 3 * rs, *a4 = a + 4 * rs;
    const float *a5 = a + 5 * rs;
    const float *b1p = b + kc * RVG__GEMM_NR; /* the second panel */
    /* C is touched once per k block, after the loop: start fetching it now (see the AVX2 file). */
    for (int64_t i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + nr - 1), _MM_HINT_T0);
    }

/* One k step: two B vectors, six A broadcasts, twelve FMAs. */
#define RVG__STEP(o)                                                                               \
    do {                                                                                           \
        const __m512 b0 = _mm512_loadu_ps(b + (o)*RVG__GEMM_NR);                                   \
        const __m512 b1 = _mm512_loadu_ps(b1p + (o)*RVG__GEMM_NR);                                 \
        __m512 av = _mm512_set1_ps(a0[(o)*cs]);                                                    \
        c00 = _mm512_fmadd_ps(av, b0, c00);                                                        \
        c01 = _mm512_fmadd_ps(av, b1, c01);                                                        \
        av = _mm512_set1_ps(a1[(o)*cs]);                                                           \
        c10 = _mm512_fmadd_ps(av, b0, c10);                                                        \
        c11 = _mm512_fmadd_ps(av, b1, c11);                                                        \
        av = _mm512_set1_ps(a2[(o)*cs]);                                                           \
        c20 = _mm512_fmadd_ps(av, b0, c20);                                                        \
        c21 = _mm512_fmadd_ps(av, b1, c21);                                                        \
        av = _mm512_set1_ps(a3[(o)*cs]);                                                           \
        c30 = _mm512_fmadd_ps(av, b0, c30);                                                        \
        c31 = _mm512_fmadd_ps(av, b1, c31);                                                        \
        av = _mm512_set1_ps(a4[(o)*cs]);                                                           \
        c40 = _mm512_fmadd_ps(av, b0, c40);                                                        \
        c41 = _mm512_fmadd_ps(av, b1, c41);                                                        \
        av = _mm512_set1_ps(a5[(o)*cs]);                                                           \
        c50 = _mm512_fmadd_ps(av, b0, c50);                                                        \
        c51 = _mm512_fmadd_ps(av, b1, c51);                                                        \
    } while (0)

    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        RVG__STEP(0);
        RVG__STEP(1);
        RVG__STEP(2);
        RVG__STEP(3);
        a0 += 4 * cs, a1 += 4 * cs, a2 += 4 * cs, a3 += 4 * cs, a4 += 4 * cs, a5 += 4 * cs;
        b += 4 * RVG__GEMM_NR, b1p += 4 * RVG__GEMM_NR;
    }
    for (; k < kc; k++) {
        RVG__STEP(0);
        a0 += cs, a1 += cs, a2 += cs, a3 += cs, a4 += cs, a5 += cs;
        b += RVG__GEMM_NR, b1p += RVG__GEMM_NR;
    }
#undef RVG__STEP

    if (mr == RVG__GEMM_MR && nr == 2 * RVG__GEMM_NR) {
#define RVG__STORE(i, v0, v1)                                                                      \
    do {                                                                                           \
        float *ci = c + (i)*ldc;                                                                   \
        if (beta_one) {                                                                            \
            _mm512_storeu_ps(ci, _mm512_add_ps(_mm512_loadu_ps(ci), v0));                          \
            _mm512_storeu_ps(ci + 16, _mm512_add_ps(_mm512_loadu_ps(ci + 16), v1));                \
        } else {                                                                                   \
            _mm512_storeu_ps(ci, v0);                                                              \
            _mm512_storeu_ps(ci + 16, v1);                                                         \
        }                                                                                          \
    } while (0)
        RVG__STORE(0, c00, c01);
        RVG__STORE(1, c10, c11);
        RVG__STORE(2, c20, c21);
        RVG__STORE(3, c30, c31);
        RVG__STORE(4, c40, c41);
        RVG__STORE(5, c50, c51);
#undef RVG__STORE
        return;
    }
    /* Edge tile: spill and copy the valid corner (the same sums as the full-tile path). */
    float t[RVG__GEMM_MR][2 * RVG__GEMM_NR];
    _mm512_storeu_ps(&t[0][0], c00), _mm512_storeu_ps(&t[0][16], c01);
    _mm512_storeu_ps(&t[1][0], c10), _mm512_storeu_ps(&t[1][16], c11);
    _mm512_storeu_ps(&t[2][0], c20), _mm512_storeu_ps(&t[2][16], c21);
    _mm512_storeu_ps(&t[3][0], c30), _mm512_storeu_ps(&t[3][16], c31);
    _mm512_storeu_ps(&t[4][0], c40), _mm512_storeu_ps(&t[4][16], c41);
    _mm512_storeu_ps(&t[5][0], c50), _mm512_storeu_ps(&t[5][16], c51);
    for (int64_t i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        if (beta_one)
            for (int64_t j = 0; j < nr; j++)
                ci[j] += t[i][j];
        else
            for (int64_t j = 0; j < nr; j++)
                ci[j] = t[i][j];
    }
}

void rvg__conv_gemm_kernel2_avx512(int64_t kc, const float *a, const float *b, float *c,
                                   int64_t ldc, int64_t mr, int64_t nr, int beta_one) {
    kernel_body(kc, a, 1, RVG__GEMM_MR, b, c, ldc, mr, nr, beta_one);
}

void rvg__conv_gemm_kernel2_rows_avx512(int64_t kc, const float *a, int64_t lda, const float *b,
                                        float *c, int64_t ldc, int64_t nr, int beta_one) {
    kernel_body(kc, a, lda, 1, b, c, ldc, RVG__GEMM_MR, nr, beta_one);
}

void rvg__conv_gemm_kernel2_cols_avx512(int64_t kc, const float *a, int64_t lda, const float *b,
                                        float *c, int64_t ldc, int64_t nr, int beta_one) {
    kernel_body(kc, a, 1, lda, b, c, ldc, RVG__GEMM_MR, nr, beta_one);
}
