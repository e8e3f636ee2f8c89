/* conv2d_gemm_body.h - the one body of the training GEMM's 6-row micro-kernels, any vector width.
 *
 * Included by conv2d_gemm_avx2.c (ymm: one 16-column panel, two 8-float vectors per row) and
 * conv2d_gemm_avx512.c (zmm: two 16-column panels, one 16-float vector of each per row) after they
 * define the vector type and operations below. A register tile C (6 x 2*GB_W) (+)= A (6 x kc) * B,
 * twelve accumulators fed by two B loads and six A broadcasts per k step; the second B vector of a
 * step is GB_B1_OFFSET(kc) floats after the first (8 in the same panel, or kc*16 in the next one),
 * and both advance by one panel row (16 floats) per k. a(i, k) = a[i*rs + k*cs]. Each C element is
 * one FMA per k in increasing k order, whatever the width, which is why the two widths give
 * bit-identical results. Edge tiles (mr < 6 or nr < 2*GB_W) are computed in full and only the
 * valid corner is written.
 *
 * The including file defines: GB_V (vector type), GB_W (floats per vector), GB_ZERO(),
 * GB_LOADU(p), GB_SET1(x), GB_FMA(a, b, c) (a*b + c), GB_ADD(a, b), GB_STOREU(p, v),
 * GB_B1_OFFSET(kc), and includes ops/conv2d_gemm_impl.h.
 */
#ifndef RVG_OPS_X86_CONV2D_GEMM_BODY_H
#define RVG_OPS_X86_CONV2D_GEMM_BODY_H

/* Inlined into each entry point so rs and cs are compile-time constants where they can be. */
static inline __attribute__((always_inline)) void
gemm_body(int64_t kc, const float *a, int64_t rs, int64_t cs, const float *b, float *c,
          int64_t ldc, int64_t mr, int64_t nr, int beta_one) {
    GB_V c00 = GB_ZERO(), c01 = GB_ZERO(), c10 = GB_ZERO(), c11 = GB_ZERO();
    GB_V c20 = GB_ZERO(), c21 = GB_ZERO(), c30 = GB_ZERO(), c31 = GB_ZERO();
    GB_V c40 = GB_ZERO(), c41 = GB_ZERO(), c50 = GB_ZERO(), c51 = GB_ZERO();
    const float *a0 = a, *a1 = a + rs, *a2 = a + 2 * rs, *a3 = a + 3 * rs, *a4 = a + 4 * rs;
    const float *a5 = a + 5 * rs;
    const float *b1 = b + GB_B1_OFFSET(kc);
    /* C is touched once per k block, after the loop; start fetching it now (it is often a large
     * gradient far out of cache, and with a short k block the misses would otherwise stall). */
    for (int64_t i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + nr - 1), _MM_HINT_T0);
    }

/* One k step: two B vectors, six A broadcasts, twelve FMAs. */
#define GB_STEP(o)                                                                                 \
    do {                                                                                           \
        const GB_V v0 = GB_LOADU(b + (o)*RVG__GEMM_NR), v1 = GB_LOADU(b1 + (o)*RVG__GEMM_NR);      \
        GB_V av = GB_SET1(a0[(o)*cs]);                                                             \
        c00 = GB_FMA(av, v0, c00), c01 = GB_FMA(av, v1, c01);                                      \
        av = GB_SET1(a1[(o)*cs]);                                                                  \
        c10 = GB_FMA(av, v0, c10), c11 = GB_FMA(av, v1, c11);                                      \
        av = GB_SET1(a2[(o)*cs]);                                                                  \
        c20 = GB_FMA(av, v0, c20), c21 = GB_FMA(av, v1, c21);                                      \
        av = GB_SET1(a3[(o)*cs]);                                                                  \
        c30 = GB_FMA(av, v0, c30), c31 = GB_FMA(av, v1, c31);                                      \
        av = GB_SET1(a4[(o)*cs]);                                                                  \
        c40 = GB_FMA(av, v0, c40), c41 = GB_FMA(av, v1, c41);                                      \
        av = GB_SET1(a5[(o)*cs]);                                                                  \
        c50 = GB_FMA(av, v0, c50), c51 = GB_FMA(av, v1, c51);                                      \
    } while (0)

    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        GB_STEP(0);
        GB_STEP(1);
        GB_STEP(2);
        GB_STEP(3);
        a0 += 4 * cs, a1 += 4 * cs, a2 += 4 * cs, a3 += 4 * cs, a4 += 4 * cs, a5 += 4 * cs;
        b += 4 * RVG__GEMM_NR, b1 += 4 * RVG__GEMM_NR;
    }
    for (; k < kc; k++) {
        GB_STEP(0);
        a0 += cs, a1 += cs, a2 += cs, a3 += cs, a4 += cs, a5 += cs;
        b += RVG__GEMM_NR, b1 += RVG__GEMM_NR;
    }
#undef GB_STEP

    if (mr == RVG__GEMM_MR && nr == 2 * GB_W) {
#define GB_STORE(i, v0, v1)                                                                        \
    do {                                                                                           \
        float *ci = c + (i)*ldc;                                                                   \
        if (beta_one) {                                                                            \
            GB_STOREU(ci, GB_ADD(GB_LOADU(ci), v0));                                               \
            GB_STOREU(ci + GB_W, GB_ADD(GB_LOADU(ci + GB_W), v1));                                 \
        } else {                                                                                   \
            GB_STOREU(ci, v0);                                                                     \
            GB_STOREU(ci + GB_W, v1);                                                              \
        }                                                                                          \
    } while (0)
        GB_STORE(0, c00, c01);
        GB_STORE(1, c10, c11);
        GB_STORE(2, c20, c21);
        GB_STORE(3, c30, c31);
        GB_STORE(4, c40, c41);
        GB_STORE(5, c50, c51);
#undef GB_STORE
        return;
    }
    /* Edge tile: spill and copy the valid corner (the same sums as the full-tile path). */
    float t[RVG__GEMM_MR][2 * GB_W];
    GB_STOREU(&t[0][0], c00), GB_STOREU(&t[0][GB_W], c01);
    GB_STOREU(&t[1][0], c10), GB_STOREU(&t[1][GB_W], c11);
    GB_STOREU(&t[2][0], c20), GB_STOREU(&t[2][GB_W], c21);
    GB_STOREU(&t[3][0], c30), GB_STOREU(&t[3][GB_W], c31);
    GB_STOREU(&t[4][0], c40), GB_STOREU(&t[4][GB_W], c41);
    GB_STOREU(&t[5][0], c50), GB_STOREU(&t[5][GB_W], c51);
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

#endif
