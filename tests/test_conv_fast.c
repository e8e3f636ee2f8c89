/* test_conv_fast.c - the dispatched (im2col + GEMM) convolution against its _ref twin.
 *
 * Does: for every GEMM backend this build and CPU have (plain-C kernel, AVX2 kernel, OpenBLAS),
 * runs forward and backward on awkward shapes (N=1, odd H/W, channel counts not a multiple of 8,
 * stride 2, groups 2 and 4, 1x1 pad 0, 3x3 pad 1, a non-square kernel, several image chunks, large
 * images cut into bands of output rows, GEMMs larger than one cache block) and compares y, dx, dw,
 * dbias with rvg_conv2d_*_ref; stride-1 3x3 shapes go through Winograd F(4x4, 3x3) both ways,
 * and once more through im2col + GEMM with Winograd switched off. Gradients are pre-filled with random
 * values to check that backward accumulates, y with NaN to check that forward overwrites, and each gradient is also requested
 * alone (the others NULL). Also checks that results are bit-identical run to run and across thread
 * counts, that RVG_FORCE_REF routing works, and that the GEMM with B packed once
 * (rvg__conv_sgemm_serial_prepacked) gives the bits of the one that packs B itself.
 *
 * Does not: compare with PyTorch (test_torch_ops does, through the _ref) or time anything
 * (bench/bench_conv.c does).
 *
 * argv[1] (the source directory) is not needed. `test_conv_fast --wide-only` checks only the
 * AVX-512 GEMM kernels against the AVX2 ones, and fails where they cannot run (tests/avx512_emu
 * runs it on an emulated AVX-512 CPU).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm_backends.h"
#include "harness.h"
#include "ops/conv2d_gemm_impl.h"
#include "rvg/ops.h"
#include "rvg/tensor.h" /* rvg_alloc */

#ifdef RVG_HAVE_OPENMP
#include <omp.h>
#endif

/* Tolerances: |fast - ref| <= ATOL_REL * max|ref| + RTOL * |ref|.
 * Both sides are fp32 sums of up to ~3200 products (C/G*R*S for y and dx, N*P*Q for dw) taken in
 * different orders: the GEMM blocks k by 256, splits dw's sum into image chunks and uses FMA; the
 * reference sums rows in fp32 and rows-of-rows in double. The rounding error of such a sum is about
 * sqrt(L) * 2^-24 * sum|terms|, which for these sizes and data in [-1, 1] stays near 1e-6 of the
 * tensor's largest entry (measured: at most 2e-6, so 1e-5 leaves a 5x margin). An element that
 * cancels to near zero can have a large relative error, hence an absolute term scaled by the
 * tensor's magnitude rather than a pure relative test. Any indexing mistake gives O(1) errors. */
#define ATOL_REL 1e-5f
/* Winograd F(4x4, 3x3) (y, dx and dw of stride-1 3x3 layers with C/G, K/G >= 8 on planes of 7x7
 * or more, or of 4x4 or more at 128 values per channel) scales values by up to 8 in its transforms
 * before they are summed and transformed back, so it rounds some 3-5x worse than a direct sum:
 * measured at most 8e-6 of max|ref| for dx and dw and 5.5e-6 for y over these cases. */
#define ATOL_REL_WINO 5e-5f
#define RTOL 1e-5f

typedef struct {
    const char *name;
    int64_t N, C, H, W, K, R, S, stride, pad, G;
    int bias;
} conv_case;

static const conv_case CASES[] = {
    {"N1 3x3 s1 C3 K5 7x9", 1, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1},
    {"3x3 s2 C13 K17 5x5", 2, 13, 5, 5, 17, 3, 3, 2, 1, 1, 1},
    {"3x3 s1 G2 C10 K6 7x9", 3, 10, 7, 9, 6, 3, 3, 1, 1, 2, 0},
    {"3x3 s2 G4 C12 K20 9x7", 2, 12, 9, 7, 20, 3, 3, 2, 1, 4, 1},
    {"1x1 s1 C5 K13 7x9", 2, 5, 7, 9, 13, 1, 1, 1, 0, 1, 1},
    {"1x1 s2 C17 K5 7x9", 3, 17, 7, 9, 5, 1, 1, 2, 0, 1, 0},
    {"N1 1x1 s1 G2 C6 K10 5x5", 1, 6, 5, 5, 10, 1, 1, 1, 0, 2, 1},
    {"1x1 s2 G4 C8 K12 5x5", 2, 8, 5, 5, 12, 1, 1, 2, 0, 4, 1},
    {"3x3 s2 C9 K11 2x2 N70 (P*Q=1)", 70, 9, 2, 2, 11, 3, 3, 2, 1, 1, 1},
    {"3x3 s1 C6 K7 7x7 N37 (2 chunks)", 37, 6, 7, 7, 7, 3, 3, 1, 1, 1, 1},
    {"3x3 s1 C40 K150 14x14 N3 (blocks)", 3, 40, 14, 14, 150, 3, 3, 1, 1, 1, 1},
    {"1x1 s1 C300 K20 3x5 N2 (k blocks)", 2, 300, 3, 5, 20, 1, 1, 1, 0, 1, 1},
    {"1x1 s1 C3 K4 40x40 N2 (direct)", 2, 3, 40, 40, 4, 1, 1, 1, 0, 1, 1},
    {"1x1 s1 C6 K5 12x13 N3 (in place, image by image)", 3, 6, 12, 13, 5, 1, 1, 1, 0, 1, 1},
    {"1x1 s1 G2 C8 K6 11x12 N2 (in place, image by image)", 2, 8, 11, 12, 6, 1, 1, 1, 0, 2, 0},
    {"3x3 s1 G2 C4 K6 33x35 N1", 1, 4, 33, 35, 6, 3, 3, 1, 1, 2, 1},
    {"2x3 s2 p0 C5 K3 8x9", 2, 5, 8, 9, 3, 2, 3, 2, 0, 1, 1},
    {"3x3 s2 p1 C3 K48 28x28 N4 (stage0)", 4, 3, 28, 28, 48, 3, 3, 2, 1, 1, 0},
    {"3x3 s2 C5 K7 50x47 N2", 2, 5, 50, 47, 7, 3, 3, 2, 1, 1, 1},
    {"1x1 s2 G2 C6 K4 64x61 N1", 1, 6, 64, 61, 4, 1, 1, 2, 0, 2, 0},
    /* planes with more output positions than a chunk's target (128k floats of col): bands of
     * output rows, the last one short */
    {"3x3 s2 C2 K5 200x191 N2 (row bands)", 2, 2, 200, 191, 5, 3, 3, 2, 1, 1, 1},
    {"1x1 s2 C1 K3 300x301 N1 (row bands)", 1, 1, 300, 301, 3, 1, 1, 2, 0, 1, 0},
    {"3x3 s1 G2 C4 K6 90x85 N1 (row bands)", 1, 4, 90, 85, 6, 3, 3, 1, 1, 2, 1},
    /* tiny planes: the unrolled path (src/ops/conv2d_unrolled.c), H*W <= R*S */
    {"3x3 s1 C13 K7 2x2 N9 (unrolled)", 9, 13, 2, 2, 7, 3, 3, 1, 1, 1, 1},
    {"3x3 s1 G3 C9 K6 2x2 N5 (unrolled)", 5, 9, 2, 2, 6, 3, 3, 1, 1, 3, 1},
    {"3x3 s1 C5 K4 1x1 N3 (unrolled)", 3, 5, 1, 1, 4, 3, 3, 1, 1, 1, 0},
    {"3x3 s1 C7 K5 2x1 N4 (unrolled)", 4, 7, 2, 1, 5, 3, 3, 1, 1, 1, 1},
    {"3x3 s1 C3 K4 3x2 N2 (unrolled)", 2, 3, 3, 2, 4, 3, 3, 1, 1, 1, 1},
    {"3x3 s2 C9 K11 3x3 N3 (unrolled)", 3, 9, 3, 3, 11, 3, 3, 2, 1, 1, 1},
    {"3x3 s1 p2 C4 K3 2x2 N3 (unrolled)", 3, 4, 2, 2, 3, 3, 3, 1, 2, 1, 1},
    {"1x1 s1 G2 C6 K4 1x1 N4 (unrolled)", 4, 6, 1, 1, 4, 1, 1, 1, 0, 2, 1},
    {"3x3 s1 C200 K24 2x2 N1 (unrolled)", 1, 200, 2, 2, 24, 3, 3, 1, 1, 1, 0},
    {"3x3 s1 C52 K44 2x2 N150 (unrolled, two row blocks, U packed in pieces)", 150, 52, 2, 2, 44, 3,
     3, 1, 1, 1, 1},
    {"5x5 s1 p2 C6 K5 2x2 N4 (unrolled, 25 taps: U packed by the plain-C packer)", 4, 6, 2, 2, 5,
     5, 5, 1, 2, 1, 0},
    /* stride-1 3x3 pad-1, C/G and K/G >= 8, planes >= 8x8: backward by Winograd F(4x4, 3x3)
     * (src/ops/conv2d_winograd.c); partial last tiles, N=1, groups, several image chunks */
    {"3x3 s1 C8 K8 8x8 N3 (winograd)", 3, 8, 8, 8, 8, 3, 3, 1, 1, 1, 1},
    {"3x3 s1 C16 K12 7x7 N5 (winograd, the smallest planes)", 5, 16, 7, 7, 12, 3, 3, 1, 1, 1, 1},
    {"N1 3x3 s1 C8 K9 7x10 (winograd)", 1, 8, 7, 10, 9, 3, 3, 1, 1, 1, 0},
    {"3x3 s1 C9 K17 9x11 N2 (winograd)", 2, 9, 9, 11, 17, 3, 3, 1, 1, 1, 0},
    {"N1 3x3 s1 C16 K24 13x8 (winograd)", 1, 16, 13, 8, 24, 3, 3, 1, 1, 1, 1},
    {"3x3 s1 G2 C18 K20 10x15 N3 (winograd)", 3, 18, 10, 15, 20, 3, 3, 1, 1, 2, 1},
    {"N1 3x3 s1 C12 K10 8x17 (winograd)", 1, 12, 8, 17, 10, 3, 3, 1, 1, 1, 1},
    {"3x3 s1 C32 K32 56x56 N5 (winograd, 2 chunks)", 5, 32, 56, 56, 32, 3, 3, 1, 1, 1, 1},
    {"3x3 s1 G4 C72 K40 12x12 N2 (winograd, groups across 16-channel vectors)", 2, 72, 12, 12, 40,
     3, 3, 1, 1, 4, 1},
    /* planes of 4x4 to 6x6: Winograd once the batch puts >= 128 values per channel in them */
    {"3x3 s1 C16 K12 4x4 N8 (winograd, one tile per image)", 8, 16, 4, 4, 12, 3, 3, 1, 1, 1, 1},
    {"3x3 s1 C9 K17 5x6 N5 (winograd, partial tiles)", 5, 9, 5, 6, 17, 3, 3, 1, 1, 1, 0},
    {"3x3 s1 G2 C24 K16 6x6 N4 (winograd, groups)", 4, 24, 6, 6, 16, 3, 3, 1, 1, 2, 1},
    {"3x3 s1 C16 K12 6x4 N2 (im2col: 48 values per channel)", 2, 16, 6, 4, 12, 3, 3, 1, 1, 1, 1},
};

static int close_to(const char *what, const char *cname, const float *got, const float *want,
                    int64_t n, const int64_t *dims, int ndim, float atol_rel) {
    char label[160];
    snprintf(label, sizeof label, "%s %s", cname, what);
    const float atol = atol_rel * rvg_test_max_abs(want, n);
    return rvg_test_close(label, got, want, n, atol, RTOL, dims, ndim);
}

static int same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

static void run_case(const conv_case *cc) {
    rvg_conv_shape s = {.N = cc->N,
                        .C = cc->C,
                        .H = cc->H,
                        .W = cc->W,
                        .K = cc->K,
                        .R = cc->R,
                        .S = cc->S,
                        .stride = cc->stride,
                        .pad = cc->pad,
                        .G = cc->G};
    rvg_conv_shape_finish(&s);
    const float tol = (rvg__conv_winograd_used(&s) ? ATOL_REL_WINO : ATOL_REL) * gemm_tol_scale();
    /* a case named for its path is eligible for it (whether the switches then take it or not) */
    if (strstr(cc->name, "(winograd"))
        CHECK(rvg__conv_winograd_ok(&s));
    if (strstr(cc->name, "(im2col"))
        CHECK(!rvg__conv_winograd_ok(&s));
    const int64_t Cg = s.C / s.G;
    const int64_t nx = s.N * s.C * s.H * s.W, ny = s.N * s.K * s.P * s.Q;
    const int64_t nw = s.K * Cg * s.R * s.S;
    const int64_t dx_dims[4] = {s.N, s.C, s.H, s.W}, dy_dims[4] = {s.N, s.K, s.P, s.Q};
    const int64_t dw_dims[4] = {s.K, Cg, s.R, s.S}, db_dims[1] = {s.K};

    /* Exactly the advertised workspace, deliberately 4 bytes off 64-byte alignment (the kernels
     * must align it themselves; AddressSanitizer then catches any overrun). */
    const size_t ws_bytes = rvg_conv2d_workspace_size(&s);
    unsigned char *ws_raw = malloc(ws_bytes + 4);
    void *ws = ws_raw + 4;

    float *x = rvg_test_new_rand(nx), *w = rvg_test_new_rand(nw), *b = rvg_test_new_rand(s.K), *dy = rvg_test_new_rand(ny);
    const float *bias = cc->bias ? b : NULL;
    float *dx0 = rvg_test_new_rand(nx), *dw0 = rvg_test_new_rand(nw), *db0 = rvg_test_new_rand(s.K); /* pre-fills */

    /* forward: y is pre-filled with NaN so a missed element shows. */
    float *y_ref = malloc(sizeof(float) * (size_t)ny), *y = malloc(sizeof(float) * (size_t)ny);
    rvg_conv2d_forward_ref(y_ref, x, w, bias, &s, NULL);
    for (int64_t i = 0; i < ny; i++)
        y[i] = NAN;
    rvg_conv2d_forward(y, x, w, bias, &s, ws);
    close_to("y", cc->name, y, y_ref, ny, dy_dims, 4, tol);

    /* backward, all three gradients, accumulating onto the pre-fills */
    float *dx_ref = rvg_test_new_copy(dx0, nx), *dw_ref = rvg_test_new_copy(dw0, nw), *db_ref = rvg_test_new_copy(db0, s.K);
    rvg_conv2d_backward_ref(dx_ref, dw_ref, db_ref, dy, x, w, &s, NULL);
    float *dx = rvg_test_new_copy(dx0, nx), *dw = rvg_test_new_copy(dw0, nw), *db = rvg_test_new_copy(db0, s.K);
    rvg_conv2d_backward(dx, dw, db, dy, x, w, &s, ws);
    close_to("dx (+=)", cc->name, dx, dx_ref, nx, dx_dims, 4, tol);
    close_to("dw (+=)", cc->name, dw, dw_ref, nw, dw_dims, 4, tol);
    close_to("dbias (+=)", cc->name, db, db_ref, s.K, db_dims, 1, ATOL_REL * gemm_tol_scale());

    /* each gradient alone, the others NULL: same values as when computed together */
    float *dx1 = rvg_test_new_copy(dx0, nx), *dw1 = rvg_test_new_copy(dw0, nw), *db1 = rvg_test_new_copy(db0, s.K);
    rvg_conv2d_backward(dx1, NULL, NULL, dy, x, w, &s, ws);
    rvg_conv2d_backward(NULL, dw1, NULL, dy, x, w, &s, ws);
    rvg_conv2d_backward(NULL, NULL, db1, dy, x, w, &s, ws);
    CHECK(same_bits(dx1, dx, nx));
    CHECK(same_bits(dw1, dw, nw));
    CHECK(same_bits(db1, db, s.K));

    /* run to run, and with one thread instead of all: bit-identical */
    float *y2 = malloc(sizeof(float) * (size_t)ny);
    float *dx2 = rvg_test_new_copy(dx0, nx), *dw2 = rvg_test_new_copy(dw0, nw), *db2 = rvg_test_new_copy(db0, s.K);
#ifdef RVG_HAVE_OPENMP
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    rvg_conv2d_forward(y2, x, w, bias, &s, ws);
    rvg_conv2d_backward(dx2, dw2, db2, dy, x, w, &s, ws);
#ifdef RVG_HAVE_OPENMP
    omp_set_num_threads(threads);
#endif
    /* OpenBLAS picks its own blocking per thread count, so only the built-in GEMM promises
     * thread-count independence; run-to-run identity holds for every backend. */
    if (rvg__conv_gemm_backend() != RVG__GEMM_BLAS) {
        CHECK(same_bits(y2, y, ny));
        CHECK(same_bits(dx2, dx, nx));
        CHECK(same_bits(dw2, dw, nw));
        CHECK(same_bits(db2, db, s.K));
    }
    memcpy(dx2, dx0, sizeof(float) * (size_t)nx);
    memcpy(dw2, dw0, sizeof(float) * (size_t)nw);
    memcpy(db2, db0, sizeof(float) * (size_t)s.K);
    rvg_conv2d_forward(y2, x, w, bias, &s, ws);
    rvg_conv2d_backward(dx2, dw2, db2, dy, x, w, &s, ws);
    CHECK(same_bits(y2, y, ny));
    CHECK(same_bits(dx2, dx, nx));
    CHECK(same_bits(dw2, dw, nw));
    CHECK(same_bits(db2, db, s.K));

    /* 2x2 planes under bf16x3: U packed straight from the weights (the default) against U built
     * in fp32 and packed by each GEMM: the same bits */
    if (gemm_is_bf16x3() && rvg__conv_unrolled_ok(&s) && s.H * s.W == 4 && s.P * s.Q == 4) {
        const int was = rvg__conv_unrolled_pack_set(0);
        memcpy(dx2, dx0, sizeof(float) * (size_t)nx);
        memcpy(dw2, dw0, sizeof(float) * (size_t)nw);
        memcpy(db2, db0, sizeof(float) * (size_t)s.K);
        rvg_conv2d_forward(y2, x, w, bias, &s, ws);
        rvg_conv2d_backward(dx2, dw2, db2, dy, x, w, &s, ws);
        rvg__conv_unrolled_pack_set(was);
        CHECK(same_bits(y2, y, ny));
        CHECK(same_bits(dx2, dx, nx));
        CHECK(same_bits(dw2, dw, nw));
        printf("  ok   %s: U packed from the weights == U built and packed\n", cc->name);
    }

    free(ws_raw);
    free(x), free(w), free(b), free(dy), free(dx0), free(dw0), free(db0);
    free(y_ref), free(y), free(y2);
    free(dx_ref), free(dw_ref), free(db_ref), free(dx), free(dw), free(db);
    free(dx1), free(dw1), free(db1), free(dx2), free(dw2), free(db2);
}

/* With the route forced to _ref the dispatched names must give the reference bits exactly. */
static void check_force_ref(void) {
    const conv_case *cc = &CASES[3];
    rvg_conv_shape s = {.N = cc->N,
                        .C = cc->C,
                        .H = cc->H,
                        .W = cc->W,
                        .K = cc->K,
                        .R = cc->R,
                        .S = cc->S,
                        .stride = cc->stride,
                        .pad = cc->pad,
                        .G = cc->G};
    rvg_conv_shape_finish(&s);
    const int64_t nx = s.N * s.C * s.H * s.W, ny = s.N * s.K * s.P * s.Q;
    const int64_t nw = s.K * (s.C / s.G) * s.R * s.S;
    float *x = rvg_test_new_rand(nx), *w = rvg_test_new_rand(nw), *dy = rvg_test_new_rand(ny);
    float *y_ref = malloc(sizeof(float) * (size_t)ny), *y = malloc(sizeof(float) * (size_t)ny);
    float *dx_ref = calloc((size_t)nx, sizeof(float)), *dx = calloc((size_t)nx, sizeof(float));
    void *ws = malloc(rvg_conv2d_workspace_size(&s));

    const int was = rvg_ops_using_ref();
    rvg_ops_force_ref(1);
    CHECK(rvg_ops_using_ref() == 1);
    rvg_conv2d_forward_ref(y_ref, x, w, NULL, &s, NULL);
    rvg_conv2d_forward(y, x, w, NULL, &s, ws);
    rvg_conv2d_backward_ref(dx_ref, NULL, NULL, dy, x, w, &s, NULL);
    rvg_conv2d_backward(dx, NULL, NULL, dy, x, w, &s, ws);
    CHECK(same_bits(y, y_ref, ny));
    CHECK(same_bits(dx, dx_ref, nx));
    rvg_ops_force_ref(0);
    CHECK(rvg_ops_using_ref() == 0);
    rvg_ops_force_ref(was);

    free(x), free(w), free(dy), free(y_ref), free(y), free(dx_ref), free(dx), free(ws);
}

/* rvg__conv_sgemm_serial_prepacked (the inference engine's unrolled layers: B packed once at
 * load) against rvg__conv_sgemm_serial on the same operands: bit-identical, for column slabs at
 * offsets j0 of a wider B, ragged last panels, K over one cache block, both beta, both op(A);
 * and both against a plain triple loop. */
static void check_prepacked_gemm(void) {
    static const int64_t shapes[][4] = {/* M, Ntot, K, j0 */
                                        {1, 20, 5, 0},    {7, 80, 300, 48},  {64, 384, 768, 336},
                                        {6, 384, 256, 16}, {13, 33, 257, 32}, {64, 768, 768, 0}};
    float *pack = rvg_alloc(sizeof(float) * rvg__conv_sgemm_serial_pack_floats());
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int64_t M = shapes[i][0], Nt = shapes[i][1], K = shapes[i][2], j0 = shapes[i][3];
        const int64_t N = Nt - j0 < 48 ? Nt - j0 : 48;
        float *A = rvg_test_new_rand(M * K), *Bt = rvg_test_new_rand(Nt * K); /* B^T: Nt x K */
        float *Bp = rvg_alloc(sizeof(float) * rvg__conv_gemm_prepack_b_floats(K, Nt));
        rvg__conv_gemm_prepack_b(Bp, 1, Bt, K, K, Nt);
        for (int ta = 0; ta < 2; ta++)
            for (int beta = 0; beta < 2; beta++) {
                float *C1 = rvg_test_new_rand(M * N), *C2 = rvg_test_new_copy(C1, M * N);
                float *Cr = rvg_test_new_copy(C1, M * N);
                /* op(A) = A (M x K, lda K) or A^T of the same floats read as K x M (lda M) */
                rvg__conv_sgemm_serial(ta, 1, M, N, K, A, ta ? M : K, Bt + j0 * K, K, beta, C1, N,
                                       pack);
                rvg__conv_sgemm_serial_prepacked(ta, M, N, K, A, ta ? M : K, Bp, Nt, j0, beta, C2,
                                                 N, pack);
                /* bf16x3: the prepacked GEMM stays fp32, so only the loop below compares */
                CHECK(gemm_is_bf16x3() || same_bits(C2, C1, M * N));
                double err = 0, mag = 1e-30, err1 = 0;
                for (int64_t r = 0; r < M; r++)
                    for (int64_t c = 0; c < N; c++) {
                        double acc = beta ? Cr[r * N + c] : 0;
                        for (int64_t k = 0; k < K; k++)
                            acc += (double)(ta ? A[k * M + r] : A[r * K + k]) *
                                   Bt[(j0 + c) * K + k];
                        err = fmax(err, fabs(acc - C2[r * N + c]));
                        err1 = fmax(err1, fabs(acc - C1[r * N + c]));
                        mag = fmax(mag, fabs(acc));
                    }
                CHECK(err <= 1e-5 * mag);
                CHECK(err1 <= 1e-5 * gemm_tol_scale() * mag);
                free(C1), free(C2), free(Cr);
            }
        free(A), free(Bt), rvg_free(Bp);
    }
    rvg_free(pack);
}

/* The AVX-512 6x32 kernels (two 16-column panels per call) against the AVX2 6x16 ones: the same
 * FMAs in the same order, so bit-identical, on ragged M (edge panels of A), N around multiples of
 * 16 and 32 and past one column block (NC 512), K around the KC 256 cache block, both op(A), both
 * op(B), both beta, and the prepacked B. Skipped where the CPU has no AVX-512F. */
static void check_wide_gemm(int required) {
    if (!rvg__conv_gemm_set_backend(RVG__GEMM_OWN_AVX2) || !rvg__conv_gemm_set_wide(1)) {
        printf("-- wide (AVX-512) GEMM kernels: not in this build / CPU, skipped\n");
        CHECK(!required);
        rvg__conv_gemm_set_backend(RVG__GEMM_AUTO);
        return;
    }
    static const int64_t shapes[][3] = {/* M, N, K */
                                        {1, 1, 1},     {6, 32, 4},    {5, 17, 3},  {7, 33, 257},
                                        {13, 47, 256}, {12, 48, 255}, {64, 100, 9}, {19, 530, 300},
                                        {6, 31, 520}};
    float *pack = rvg_alloc(sizeof(float) * rvg__conv_sgemm_serial_pack_floats());
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int64_t M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
        float *A = rvg_test_new_rand(M * K), *B = rvg_test_new_rand(K * N);
        float *Bp = rvg_alloc(sizeof(float) * rvg__conv_gemm_prepack_b_floats(K, N));
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                const int64_t lda = ta ? M : K, ldb = tb ? K : N;
                rvg__conv_gemm_prepack_b(Bp, tb, B, ldb, K, N); /* the same panels either way */
                for (int beta = 0; beta < 2; beta++) {
                    float *C[2], *D[2];
                    C[0] = rvg_test_new_rand(M * N);
                    C[1] = rvg_test_new_copy(C[0], M * N);
                    D[0] = rvg_test_new_copy(C[0], M * N);
                    D[1] = rvg_test_new_copy(C[0], M * N);
                    for (int w = 0; w < 2; w++) {
                        CHECK(rvg__conv_gemm_set_wide(w) == w);
                        rvg__conv_sgemm_serial(ta, tb, M, N, K, A, lda, B, ldb, beta, C[w], N,
                                               pack);
                        rvg__conv_sgemm_serial_prepacked(ta, M, N, K, A, lda, Bp, N, 0, beta,
                                                         D[w], N, pack);
                    }
                    CHECK(same_bits(C[1], C[0], M * N));
                    CHECK(same_bits(D[1], D[0], M * N));
                    CHECK(same_bits(D[1], C[1], M * N));
                    free(C[0]), free(C[1]), free(D[0]), free(D[1]);
                }
            }
        free(A), free(B), rvg_free(Bp);
    }
    rvg_free(pack);
    rvg__conv_gemm_set_wide(1);
    CHECK(rvg__conv_gemm_set_backend(RVG__GEMM_AUTO));
    printf("-- wide (AVX-512) GEMM kernels: bitwise against AVX2 on %d shapes\n",
           (int)(sizeof shapes / sizeof shapes[0]));
}

/* The bf16x3 GEMM (threaded, rvg__conv_sgemm) on shapes that cross every block edge (M past 144
 * and 16, N past 512 and 32, K past 256 and 32), all four op(A) op(B) combinations, both beta:
 * the plain-C twin against a double-precision loop, and the AMX kernels (where they run) against
 * the twin. Both compute the same bf16 products in the same order; the tiles may round their fp32
 * sums differently inside an instruction, hence a tolerance rather than bits. */
static void check_bf16x3_gemm(void) {
    static const int64_t shapes[][3] = {/* M, N, K */
                                        {1, 1, 1},      {17, 33, 31},     {150, 70, 300},
                                        {48, 530, 257}, {192, 512, 1728}, {5, 1100, 64},
                                        {300, 9, 600}};
    /* measured: up to 1.5e-5 of max|C| against double (the data differ with the backends run
     * before), 3e-6 between AMX and the twin */
    const double tol = 6e-5, tol_twin = 1e-5;
    const rvg__gemm_backend was = rvg__conv_gemm_backend();
    float *pack = rvg_alloc(sizeof(float) * RVG__GEMM_PACK_FLOATS * rvg__conv_threads_max());
    double worst_twin = 0, worst_amx = 0, worst_amx_ref = 0;
    int amx = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int64_t M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
        float *A = rvg_test_new_rand(M * K), *B = rvg_test_new_rand(K * N);
        for (int t = 0; t < 4; t++)
            for (int beta = 0; beta < 2; beta++) {
                const int ta = t & 1, tb = t >> 1;
                const int64_t lda = ta ? M : K, ldb = tb ? K : N;
                float *C0 = rvg_test_new_rand(M * N), *C1 = rvg_test_new_copy(C0, M * N);
                float *C2 = rvg_test_new_copy(C0, M * N);
                CHECK(rvg__conv_gemm_set_backend(RVG__GEMM_BF16X3_C));
                rvg__conv_sgemm(ta, tb, M, N, K, A, lda, B, ldb, beta, C1, N, pack);
                amx = rvg__conv_gemm_set_backend(RVG__GEMM_AMX);
                if (amx)
                    rvg__conv_sgemm(ta, tb, M, N, K, A, lda, B, ldb, beta, C2, N, pack);
                double err = 0, err_amx = 0, err_amx_ref = 0, mag = 1e-30;
                for (int64_t r = 0; r < M; r++)
                    for (int64_t c = 0; c < N; c++) {
                        double acc = beta ? C0[r * N + c] : 0;
                        for (int64_t k = 0; k < K; k++)
                            acc += (double)(ta ? A[k * M + r] : A[r * K + k]) *
                                   (tb ? B[c * K + k] : B[k * N + c]);
                        err = fmax(err, fabs(acc - C1[r * N + c]));
                        if (amx) {
                            err_amx = fmax(err_amx, fabs((double)C2[r * N + c] - C1[r * N + c]));
                            err_amx_ref = fmax(err_amx_ref, fabs(acc - C2[r * N + c]));
                        }
                        mag = fmax(mag, fabs(acc));
                    }
                worst_twin = fmax(worst_twin, err / mag);
                worst_amx = fmax(worst_amx, err_amx / mag);
                worst_amx_ref = fmax(worst_amx_ref, err_amx_ref / mag);
                CHECK(err <= tol * mag);
                CHECK(err_amx_ref <= tol * mag);
                CHECK(err_amx <= tol_twin * mag);
                free(C0), free(C1), free(C2);
            }
        free(A), free(B);
    }
    rvg_free(pack);
    CHECK(rvg__conv_gemm_set_backend(was));
    printf("-- bf16x3 GEMM: twin vs double %.2g of max|C|; AMX vs double %.2g, vs twin %.2g%s\n",
           worst_twin, worst_amx_ref, worst_amx, amx ? "" : " (no AMX here)");
}

static void run_all_cases(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
        run_case(&CASES[i]);
    check_prepacked_gemm();
}

int main(int argc, char **argv) {
    rvg_test_seed(0x9E3779B97F4A7C15ull);
    /* --wide-only: just the AVX-512 GEMM kernels, which must be there (the emulated AVX-512 run
     * of tests/avx512_emu, where the whole test would take too long) */
    if (argc > 1 && strcmp(argv[1], "--wide-only") == 0) {
        check_wide_gemm(1);
        return rvg_test_finish();
    }
    if (rvg_ops_using_ref())
        printf("note: RVG_FORCE_REF is set; forcing the fast path for this test\n");
    rvg_ops_force_ref(0);

    for_each_gemm_backend(run_all_cases);
    /* the same stride-1 3x3 shapes through im2col + GEMM, as with RVG_CONV_WINOGRAD=0 */
    printf("-- Winograd off (default backend)\n");
    const int was = rvg__conv_winograd_set(0);
    run_all_cases();
    rvg__conv_winograd_set(was);
    check_force_ref();
    check_wide_gemm(0);
    check_bf16x3_gemm();
    return rvg_test_finish();
}
