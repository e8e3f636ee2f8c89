/* conv2d_gemm_avx2.c - the AVX2+FMA 6x16 sgemm micro-kernels of the training convolution.
 *
 * Does: one register tile C (6 x 16) (+)= A panel (6 x kc) * packed B panel (kc x 16), twelve ymm
 * accumulators fed by two B loads and six A broadcasts per k step (the body, shared with the
 * AVX-512 kernels, is conv2d_gemm_body.h) (the BLIS Haswell/Zen shape: Zen
 * 3 retires two 8-wide FMAs per cycle at 4 cycles latency, so 12 independent chains keep both pipes
 * busy; measured ~80 GFLOP/s of thread CPU time on one core with the panels in L1). Three entry
 * points share one body: A packed (k-major, 6 floats per k), A read in place from a row-major
 * matrix (6 rows of stride lda, contiguous in k), or from its transpose (6 consecutive floats per
 * k, k steps lda apart), which saves packing A.
 * Edge tiles are computed in full on the zero-padded B panel and only the valid corner is written,
 * so every C element sees the same FMA sequence wherever its tile falls. Also packs a full
 * 16-column panel of a transposed B with 8x8 register transposes (the weight-gradient GEMM's
 * col^T).
 *
 * Does not: pack anything else, block for caches or thread (src/ops/conv2d_gemm.c does), handle
 * fewer than 6 rows of A (the caller packs such an edge panel with zero rows), or check the CPU:
 * the caller only picks these kernels when __builtin_cpu_supports says avx2 and fma. Compiled with
 * -mavx2 -mfma -mf16c (CMakeLists.txt does that for every *_avx2.c file).
 */
#include <immintrin.h>

#include "ops/conv2d_gemm_impl.h"

/* One 16-column panel per call: two 8-float halves of each panel row (conv2d_gemm_body.h). */
#define GB_V __m256
#define GB_W 8
#define GB_ZERO() _mm256_setzero_ps()
#define GB_LOADU(p) _mm256_loadu_ps(p)
#define GB_SET1(x) _mm256_set1_ps(x)
#define GB_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define GB_ADD(a, b) _mm256_add_ps(a, b)
#define GB_STOREU(p, v) _mm256_storeu_ps(p, v)
#define GB_B1_OFFSET(kc) 8
#include "ops/x86/conv2d_gemm_body.h"

void rvg__conv_gemm_kernel_avx2(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                                int64_t mr, int64_t nr, int beta_one) {
    gemm_body(kc, a, 1, RVG__GEMM_MR, b, c, ldc, mr, nr, beta_one);
}

void rvg__conv_gemm_kernel_rows_avx2(int64_t kc, const float *a, int64_t lda, const float *b,
                                     float *c, int64_t ldc, int64_t nr, int beta_one) {
    gemm_body(kc, a, lda, 1, b, c, ldc, RVG__GEMM_MR, nr, beta_one);
}

void rvg__conv_gemm_kernel_cols_avx2(int64_t kc, const float *a, int64_t lda, const float *b,
                                     float *c, int64_t ldc, int64_t nr, int beta_one) {
    gemm_body(kc, a, 1, lda, b, c, ldc, RVG__GEMM_MR, nr, beta_one);
}

/* 8x8 transpose of r0..r7 in place (unpack, shuffle, then swap 128-bit halves). */
#define RVG__TRANSPOSE8(r0, r1, r2, r3, r4, r5, r6, r7)                                            \
    do {                                                                                           \
        const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);             \
        const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);             \
        const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);             \
        const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);             \
        const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);   \
        const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);   \
        const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);   \
        const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);   \
        r0 = _mm256_permute2f128_ps(u0, u4, 0x20);                                                 \
        r1 = _mm256_permute2f128_ps(u1, u5, 0x20);                                                 \
        r2 = _mm256_permute2f128_ps(u2, u6, 0x20);                                                 \
        r3 = _mm256_permute2f128_ps(u3, u7, 0x20);                                                 \
        r4 = _mm256_permute2f128_ps(u0, u4, 0x31);                                                 \
        r5 = _mm256_permute2f128_ps(u1, u5, 0x31);                                                 \
        r6 = _mm256_permute2f128_ps(u2, u6, 0x31);                                                 \
        r7 = _mm256_permute2f128_ps(u3, u7, 0x31);                                                 \
    } while (0)

void rvg__conv_gemm_pack_bt_avx2(float *dst, const float *src, int64_t ldb, int64_t kc) {
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        for (int h = 0; h < 2; h++) { /* columns 8h .. 8h+7 of the panel */
            const float *s0 = src + (int64_t)(8 * h) * ldb + k;
            __m256 r0 = _mm256_loadu_ps(s0), r1 = _mm256_loadu_ps(s0 + ldb);
            __m256 r2 = _mm256_loadu_ps(s0 + 2 * ldb), r3 = _mm256_loadu_ps(s0 + 3 * ldb);
            __m256 r4 = _mm256_loadu_ps(s0 + 4 * ldb), r5 = _mm256_loadu_ps(s0 + 5 * ldb);
            __m256 r6 = _mm256_loadu_ps(s0 + 6 * ldb), r7 = _mm256_loadu_ps(s0 + 7 * ldb);
            RVG__TRANSPOSE8(r0, r1, r2, r3, r4, r5, r6, r7);
            float *d = dst + k * RVG__GEMM_NR + 8 * h;
            _mm256_store_ps(d + 0 * RVG__GEMM_NR, r0);
            _mm256_store_ps(d + 1 * RVG__GEMM_NR, r1);
            _mm256_store_ps(d + 2 * RVG__GEMM_NR, r2);
            _mm256_store_ps(d + 3 * RVG__GEMM_NR, r3);
            _mm256_store_ps(d + 4 * RVG__GEMM_NR, r4);
            _mm256_store_ps(d + 5 * RVG__GEMM_NR, r5);
            _mm256_store_ps(d + 6 * RVG__GEMM_NR, r6);
            _mm256_store_ps(d + 7 * RVG__GEMM_NR, r7);
        }
    }
    for (; k < kc; k++)
        for (int j = 0; j < RVG__GEMM_NR; j++)
            dst[k * RVG__GEMM_NR + j] = src[j * ldb + k];
}

/* A full NR-column panel of a plain B: dst[k*NR + j] = src[k*ldb + j]. Two 32-byte moves per k
 * where the portable copy makes four 16-byte ones (the file outside this one has no AVX). */
void rvg__conv_gemm_pack_b_avx2(float *dst, const float *src, int64_t ldb, int64_t kc) {
    for (int64_t k = 0; k < kc; k++) {
        const float *s = src + k * ldb;
        _mm256_store_ps(dst + k * RVG__GEMM_NR, _mm256_loadu_ps(s));
        _mm256_store_ps(dst + k * RVG__GEMM_NR + 8, _mm256_loadu_ps(s + 8));
    }
}
