/* test_conv_fused.c - the fused 3x3 + 1x1 convolution pair against its _ref twin.
 *
 * Does: for every GEMM backend this build and CPU have (plain-C kernel, AVX2 kernel, OpenBLAS),
 * runs rvg_conv2d_forward_3x3_1x1 / rvg_conv2d_backward_3x3_1x1 on awkward shapes (N=1 and 3, odd
 * H/W, channel counts not a multiple of 8, stride 2, groups 2 and 4, several image chunks, large
 * images cut into bands of output rows, layers with enough chunks to give each thread whole
 * chunks, GEMMs larger than one cache block) and compares z3, z1, dx,
 * dw3, dw1 with the _ref twin (two plain reference convolutions); on stride-1 shapes with 8 or
 * more channels per group and 8x8 planes the 3x3 runs through Winograd both ways, and once more
 * through im2col with it off. Gradients are pre-filled with
 * random values to check that backward accumulates, z3/z1 with NaN to check that forward
 * overwrites, and each gradient is also requested alone (the others NULL). Also checks that
 * results are bit-identical run to run and across thread counts, and RVG_FORCE_REF routing.
 *
 * Does not: time anything (bench/bench_conv.c does) or test the single convolutions
 * (test_conv_fast does).
 *
 * argv[1] (the source directory) is not needed.
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

#ifdef RVG_HAVE_OPENMP
#include <omp.h>
#endif

/* Tolerances as test_conv_fast.c (which explains them): the sums here are no longer. */
#define ATOL_REL 1e-5f
#define ATOL_REL_WINO 5e-5f
#define RTOL 1e-5f

typedef struct {
    const char *name;
    int64_t N, C, H, W, K, stride, G;
} pair_case;

static const pair_case CASES[] = {
    {"N1 s1 C3 K5 7x9", 1, 3, 7, 9, 5, 1, 1},
    {"N3 s2 C13 K17 5x5", 3, 13, 5, 5, 17, 2, 1},
    {"N3 s1 G2 C10 K6 7x9", 3, 10, 7, 9, 6, 1, 2},
    {"N1 s2 G4 C12 K20 9x7", 1, 12, 9, 7, 20, 2, 4},
    {"N3 s2 G4 C12 K20 9x7", 3, 12, 9, 7, 20, 2, 4},
    {"N70 s2 C9 K11 2x2 (P*Q=1)", 70, 9, 2, 2, 11, 2, 1},
    {"N37 s1 C6 K7 7x7 (2 chunks)", 37, 6, 7, 7, 7, 1, 1},
    {"N3 s1 C40 K150 14x14 (blocks)", 3, 40, 14, 14, 150, 1, 1},
    {"N2 s1 C300 K20 3x5 (k blocks)", 2, 300, 3, 5, 20, 1, 1},
    {"N1 s1 G2 C4 K6 33x35", 1, 4, 33, 35, 6, 1, 2},
    {"N2 s2 C5 K7 50x47", 2, 5, 50, 47, 7, 2, 1},
    {"N1 s1 G2 C4 K6 90x85 (row bands)", 1, 4, 90, 85, 6, 1, 2},
    {"N2 s2 C2 K5 200x191 (row bands)", 2, 2, 200, 191, 5, 2, 1},
    {"N4 s2 C1 K48 28x28 (stage0)", 4, 1, 28, 28, 48, 2, 1},
    {"N5 s2 C16 K12 70x70 (chunks per thread, bands)", 5, 16, 70, 70, 12, 2, 1},
    {"N16 s2 G2 C16 K10 70x70 (chunks per thread, 2 images)", 16, 16, 70, 70, 10, 2, 2},
    {"N3 s2 G2 C6 K4 1x1 (input 1x1)", 3, 6, 1, 1, 4, 2, 2},
    {"N9 s1 C13 K7 2x2 (unrolled)", 9, 13, 2, 2, 7, 1, 1},
    {"N5 s1 G3 C9 K6 2x2 (unrolled)", 5, 9, 2, 2, 6, 1, 3},
    {"N40 s1 C24 K24 2x2 (unrolled)", 40, 24, 2, 2, 24, 1, 1},
    {"N3 s2 C9 K11 3x3 (unrolled)", 3, 9, 3, 3, 11, 2, 1},
    {"N4 s1 C5 K6 1x1 (unrolled)", 4, 5, 1, 1, 6, 1, 1},
    {"N3 s1 C8 K9 8x8 (winograd)", 3, 8, 8, 8, 9, 1, 1},
    {"N1 s1 C17 K12 9x10 (winograd)", 1, 17, 9, 10, 12, 1, 1},
    {"N2 s1 G2 C16 K32 11x9 (winograd)", 2, 16, 11, 9, 32, 1, 2},
};


static float *new_nan(int64_t n) {
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

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

static rvg_conv_shape shape_of(const pair_case *pc) {
    rvg_conv_shape s = {.N = pc->N,
                        .C = pc->C,
                        .H = pc->H,
                        .W = pc->W,
                        .K = pc->K,
                        .R = 3,
                        .S = 3,
                        .stride = pc->stride,
                        .pad = 1,
                        .G = pc->G};
    rvg_conv_shape_finish(&s);
    return s;
}

/* Tensors of one case: inputs, pre-fills, and the reference results. */
typedef struct {
    int64_t nx, nz, nw3, nw1;
    float *x, *w3, *w1, *dz3, *dz1, *dx0, *dw30, *dw10;
} pair_data;

static void data_make(pair_data *d, const rvg_conv_shape *s) {
    const int64_t Cg = s->C / s->G;
    d->nx = s->N * s->C * s->H * s->W;
    d->nz = s->N * s->K * s->P * s->Q;
    d->nw3 = s->K * Cg * 9;
    d->nw1 = s->K * Cg;
    d->x = rvg_test_new_rand(d->nx), d->w3 = rvg_test_new_rand(d->nw3), d->w1 = rvg_test_new_rand(d->nw1);
    d->dz3 = rvg_test_new_rand(d->nz), d->dz1 = rvg_test_new_rand(d->nz);
    d->dx0 = rvg_test_new_rand(d->nx), d->dw30 = rvg_test_new_rand(d->nw3), d->dw10 = rvg_test_new_rand(d->nw1);
}

static void data_free(pair_data *d) {
    free(d->x), free(d->w3), free(d->w1), free(d->dz3), free(d->dz1);
    free(d->dx0), free(d->dw30), free(d->dw10);
}

static void run_case(const pair_case *pc) {
    const rvg_conv_shape s = shape_of(pc);
    const int64_t Cg = s.C / s.G;
    pair_data d;
    data_make(&d, &s);
    const int64_t nx = d.nx, nz = d.nz, nw3 = d.nw3, nw1 = d.nw1;
    const int64_t x_dims[4] = {s.N, s.C, s.H, s.W}, z_dims[4] = {s.N, s.K, s.P, s.Q};
    const int64_t w3_dims[4] = {s.K, Cg, 3, 3}, w1_dims[4] = {s.K, Cg, 1, 1};
    /* the 3x3's backward (and so dx) goes through Winograd on stride-1 shapes with C/G, K/G >= 8 */
    const float tol3 = (rvg__conv_winograd_used(&s) ? ATOL_REL_WINO : ATOL_REL) * gemm_tol_scale();

    /* Exactly the advertised workspace, 4 bytes off 64-byte alignment (AddressSanitizer then
     * catches any overrun; the kernels must align it themselves). */
    const size_t ws_bytes = rvg_conv2d_3x3_1x1_workspace_size(&s);
    CHECK(ws_bytes > rvg_conv2d_workspace_size(&s));
    unsigned char *ws_raw = malloc(ws_bytes + 4);
    void *ws = ws_raw + 4;

    /* forward: outputs pre-filled with NaN so a missed element shows */
    float *z3_ref = new_nan(nz), *z1_ref = new_nan(nz), *z3 = new_nan(nz), *z1 = new_nan(nz);
    rvg_conv2d_forward_3x3_1x1_ref(z3_ref, z1_ref, d.x, d.w3, d.w1, &s, NULL);
    rvg_conv2d_forward_3x3_1x1(z3, z1, d.x, d.w3, d.w1, &s, ws);
    close_to("z3", pc->name, z3, z3_ref, nz, z_dims, 4, tol3);
    close_to("z1", pc->name, z1, z1_ref, nz, z_dims, 4, ATOL_REL * gemm_tol_scale());

    /* backward, all three gradients, accumulating onto the pre-fills */
    float *dx_ref = rvg_test_new_copy(d.dx0, nx), *dw3_ref = rvg_test_new_copy(d.dw30, nw3);
    float *dw1_ref = rvg_test_new_copy(d.dw10, nw1);
    rvg_conv2d_backward_3x3_1x1_ref(dx_ref, dw3_ref, dw1_ref, d.dz3, d.dz1, d.x, d.w3, d.w1, &s,
                                    NULL);
    float *dx = rvg_test_new_copy(d.dx0, nx), *dw3 = rvg_test_new_copy(d.dw30, nw3), *dw1 = rvg_test_new_copy(d.dw10, nw1);
    rvg_conv2d_backward_3x3_1x1(dx, dw3, dw1, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, ws);
    close_to("dx (+=)", pc->name, dx, dx_ref, nx, x_dims, 4, tol3);
    close_to("dw3 (+=)", pc->name, dw3, dw3_ref, nw3, w3_dims, 4, tol3);
    close_to("dw1 (+=)", pc->name, dw1, dw1_ref, nw1, w1_dims, 4, ATOL_REL * gemm_tol_scale());

    /* each gradient alone, the others NULL: same bits as when computed together */
    float *dxa = rvg_test_new_copy(d.dx0, nx), *dw3a = rvg_test_new_copy(d.dw30, nw3), *dw1a = rvg_test_new_copy(d.dw10, nw1);
    rvg_conv2d_backward_3x3_1x1(dxa, NULL, NULL, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, ws);
    rvg_conv2d_backward_3x3_1x1(NULL, dw3a, NULL, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, ws);
    rvg_conv2d_backward_3x3_1x1(NULL, NULL, dw1a, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, ws);
    rvg_conv2d_backward_3x3_1x1(NULL, NULL, NULL, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, ws);
    CHECK(same_bits(dxa, dx, nx));
    CHECK(same_bits(dw3a, dw3, nw3));
    CHECK(same_bits(dw1a, dw1, nw1));

    /* run to run, and with one thread instead of all: bit-identical */
    float *z3b = new_nan(nz), *z1b = new_nan(nz);
    float *dxb = rvg_test_new_copy(d.dx0, nx), *dw3b = rvg_test_new_copy(d.dw30, nw3), *dw1b = rvg_test_new_copy(d.dw10, nw1);
#ifdef RVG_HAVE_OPENMP
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    rvg_conv2d_forward_3x3_1x1(z3b, z1b, d.x, d.w3, d.w1, &s, ws);
    rvg_conv2d_backward_3x3_1x1(dxb, dw3b, dw1b, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, ws);
#ifdef RVG_HAVE_OPENMP
    omp_set_num_threads(threads);
#endif
    /* OpenBLAS picks its own blocking per thread count (see test_conv_fast.c) */
    if (rvg__conv_gemm_backend() != RVG__GEMM_BLAS) {
        CHECK(same_bits(z3b, z3, nz));
        CHECK(same_bits(z1b, z1, nz));
        CHECK(same_bits(dxb, dx, nx));
        CHECK(same_bits(dw3b, dw3, nw3));
        CHECK(same_bits(dw1b, dw1, nw1));
    }
    memcpy(dxb, d.dx0, sizeof(float) * (size_t)nx);
    memcpy(dw3b, d.dw30, sizeof(float) * (size_t)nw3);
    memcpy(dw1b, d.dw10, sizeof(float) * (size_t)nw1);
    rvg_conv2d_forward_3x3_1x1(z3b, z1b, d.x, d.w3, d.w1, &s, ws);
    rvg_conv2d_backward_3x3_1x1(dxb, dw3b, dw1b, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, ws);
    CHECK(same_bits(z3b, z3, nz));
    CHECK(same_bits(z1b, z1, nz));
    CHECK(same_bits(dxb, dx, nx));
    CHECK(same_bits(dw3b, dw3, nw3));
    CHECK(same_bits(dw1b, dw1, nw1));

    free(ws_raw);
    data_free(&d);
    free(z3_ref), free(z1_ref), free(z3), free(z1), free(z3b), free(z1b);
    free(dx_ref), free(dw3_ref), free(dw1_ref), free(dx), free(dw3), free(dw1);
    free(dxa), free(dw3a), free(dw1a), free(dxb), free(dw3b), free(dw1b);
}

/* With the route forced to _ref the dispatched pair must give the reference bits exactly, also
 * with a NULL workspace. */
static void check_force_ref(void) {
    const rvg_conv_shape s = shape_of(&CASES[4]);
    pair_data d;
    data_make(&d, &s);
    float *z3_ref = new_nan(d.nz), *z1_ref = new_nan(d.nz), *z3 = new_nan(d.nz);
    float *z1 = new_nan(d.nz);
    float *dx_ref = rvg_test_new_copy(d.dx0, d.nx), *dx = rvg_test_new_copy(d.dx0, d.nx);
    float *dw1_ref = rvg_test_new_copy(d.dw10, d.nw1), *dw1 = rvg_test_new_copy(d.dw10, d.nw1);
    void *ws = malloc(rvg_conv2d_3x3_1x1_workspace_size(&s));

    const int was = rvg_ops_using_ref();
    rvg_ops_force_ref(1);
    rvg_conv2d_forward_3x3_1x1_ref(z3_ref, z1_ref, d.x, d.w3, d.w1, &s, NULL);
    rvg_conv2d_forward_3x3_1x1(z3, z1, d.x, d.w3, d.w1, &s, ws);
    rvg_conv2d_backward_3x3_1x1_ref(dx_ref, NULL, dw1_ref, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, NULL);
    rvg_conv2d_backward_3x3_1x1(dx, NULL, dw1, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, ws);
    CHECK(same_bits(z3, z3_ref, d.nz));
    CHECK(same_bits(z1, z1_ref, d.nz));
    CHECK(same_bits(dx, dx_ref, d.nx));
    CHECK(same_bits(dw1, dw1_ref, d.nw1));
    rvg_ops_force_ref(0);
    /* a NULL workspace takes the _ref route too */
    memcpy(dx, d.dx0, sizeof(float) * (size_t)d.nx);
    rvg_conv2d_forward_3x3_1x1(z3, z1, d.x, d.w3, d.w1, &s, NULL);
    rvg_conv2d_backward_3x3_1x1(dx, NULL, NULL, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, NULL);
    CHECK(same_bits(z3, z3_ref, d.nz));
    CHECK(same_bits(z1, z1_ref, d.nz));
    CHECK(same_bits(dx, dx_ref, d.nx));
    rvg_ops_force_ref(was);

    data_free(&d);
    free(z3_ref), free(z1_ref), free(z3), free(z1), free(dx_ref), free(dx), free(dw1_ref);
    free(dw1), free(ws);
}

/* The weights a forward keeps for its backward (rvg__conv2d_3x3_1x1_keep_floats): backward with
 * them gives the same bits as without; a keep filled on another path, or never filled, is not
 * used (Winograd switched off or on between forward and backward). Every case: unrolled,
 * Winograd, and im2col (which keeps nothing). */
static void check_keep(void) {
    for (size_t ci = 0; ci < sizeof CASES / sizeof CASES[0]; ci++) {
        const pair_case *pc = &CASES[ci];
        const rvg_conv_shape s = shape_of(pc);
        pair_data d;
        data_make(&d, &s);
        const size_t kf = rvg__conv2d_3x3_1x1_keep_floats(&s);
        CHECK(kf > 0 || !(rvg__conv_unrolled_ok(&s) || rvg__conv_winograd_ok(&s)));
        float *keep = kf ? malloc(sizeof(float) * kf) : NULL;
        void *ws = malloc(rvg_conv2d_3x3_1x1_workspace_size(&s));
        float *z3 = new_nan(d.nz), *z1 = new_nan(d.nz);
        float *dx = rvg_test_new_copy(d.dx0, d.nx), *dw3 = rvg_test_new_copy(d.dw30, d.nw3);
        float *dxk = rvg_test_new_copy(d.dx0, d.nx), *dw3k = rvg_test_new_copy(d.dw30, d.nw3);
        float *dw1 = rvg_test_new_copy(d.dw10, d.nw1), *dw1k = rvg_test_new_copy(d.dw10, d.nw1);
        rvg__conv2d_forward_3x3_1x1_gemm(z3, z1, d.x, d.w3, d.w1, &s, ws, keep);
        rvg__conv2d_backward_3x3_1x1_gemm(dx, dw3, dw1, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, ws, NULL);
        rvg__conv2d_backward_3x3_1x1_gemm(dxk, dw3k, dw1k, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, ws,
                                          keep);
        CHECK(same_bits(dxk, dx, d.nx));
        CHECK(same_bits(dw3k, dw3, d.nw3));
        CHECK(same_bits(dw1k, dw1, d.nw1));
        if (keep && rvg__conv_winograd_ok(&s)) {
            /* kept by a Winograd forward, used by an im2col backward: ignored */
            float *dx_off = rvg_test_new_copy(d.dx0, d.nx), *dx_offk = rvg_test_new_copy(d.dx0, d.nx);
            const int was = rvg__conv_winograd_set(0);
            rvg__conv2d_backward_3x3_1x1_gemm(dx_off, NULL, NULL, d.dz3, d.dz1, d.x, d.w3, d.w1, &s,
                                              ws, NULL);
            rvg__conv2d_backward_3x3_1x1_gemm(dx_offk, NULL, NULL, d.dz3, d.dz1, d.x, d.w3, d.w1,
                                              &s, ws, keep);
            CHECK(same_bits(dx_offk, dx_off, d.nx));
            /* kept by an im2col forward (nothing kept), used by a Winograd backward: recomputed */
            rvg__conv2d_forward_3x3_1x1_gemm(z3, z1, d.x, d.w3, d.w1, &s, ws, keep);
            rvg__conv_winograd_set(was);
            memcpy(dxk, d.dx0, sizeof(float) * (size_t)d.nx);
            rvg__conv2d_backward_3x3_1x1_gemm(dxk, NULL, NULL, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, ws,
                                              keep);
            memcpy(dx, d.dx0, sizeof(float) * (size_t)d.nx);
            rvg__conv2d_backward_3x3_1x1_gemm(dx, NULL, NULL, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, ws,
                                              NULL);
            CHECK(same_bits(dxk, dx, d.nx));
            free(dx_off), free(dx_offk);
        }
        printf("  ok   keep: %s (%zu floats kept)\n", pc->name, kf);
        data_free(&d);
        free(keep), free(ws), free(z3), free(z1), free(dx), free(dw3), free(dxk), free(dw3k);
        free(dw1), free(dw1k);
    }
}

/* Under bf16x3 the forward of a 2x2-plane layer packs U from the weights and keeps nothing
 * (rvg__conv_unrolled_pack_set): a backward that builds U in fp32 must not take the keep for one,
 * and a keep that such a forward did fill serves a backward that packs U itself as well. */
static void check_keep_packed_u(void) {
    const rvg__gemm_backend was_backend = rvg__conv_gemm_backend();
    CHECK(rvg__conv_gemm_set_backend(RVG__GEMM_BF16X3_C));
    for (size_t ci = 0; ci < sizeof CASES / sizeof CASES[0]; ci++) {
        const rvg_conv_shape s = shape_of(&CASES[ci]);
        if (!rvg__conv_unrolled_ok(&s) || s.H * s.W != 4 || s.P * s.Q != 4)
            continue;
        pair_data d;
        data_make(&d, &s);
        /* packing from the weights, the plan keeps nothing; the keep here is sized for U */
        CHECK(rvg__conv2d_3x3_1x1_keep_floats(&s) == 0);
        const int was_pack = rvg__conv_unrolled_pack_set(0);
        const size_t kf = rvg__conv2d_3x3_1x1_keep_floats(&s);
        rvg__conv_unrolled_pack_set(was_pack);
        CHECK(kf > 0);
        if (!kf) { /* reported; a zero-sized keep must not be written */
            data_free(&d);
            continue;
        }
        float *keep = malloc(sizeof(float) * kf);
        void *ws = malloc(rvg_conv2d_3x3_1x1_workspace_size(&s));
        float *z3 = new_nan(d.nz), *z1 = new_nan(d.nz);
        float *dx = rvg_test_new_copy(d.dx0, d.nx), *dxk = rvg_test_new_copy(d.dx0, d.nx);
        for (int fwd_packs = 0; fwd_packs < 2; fwd_packs++) {
            const int was = rvg__conv_unrolled_pack_set(fwd_packs);
            rvg__conv2d_forward_3x3_1x1_gemm(z3, z1, d.x, d.w3, d.w1, &s, ws, keep);
            rvg__conv_unrolled_pack_set(!fwd_packs);
            memcpy(dx, d.dx0, sizeof(float) * (size_t)d.nx);
            memcpy(dxk, d.dx0, sizeof(float) * (size_t)d.nx);
            rvg__conv2d_backward_3x3_1x1_gemm(dx, NULL, NULL, d.dz3, d.dz1, d.x, d.w3, d.w1, &s, ws,
                                              NULL);
            rvg__conv2d_backward_3x3_1x1_gemm(dxk, NULL, NULL, d.dz3, d.dz1, d.x, d.w3, d.w1, &s,
                                              ws, keep);
            rvg__conv_unrolled_pack_set(was);
            CHECK(same_bits(dxk, dx, d.nx));
        }
        printf("  ok   keep across U packed / built: %s\n", CASES[ci].name);
        data_free(&d);
        free(keep), free(ws), free(z3), free(z1), free(dx), free(dxk);
    }
    CHECK(rvg__conv_gemm_set_backend(was_backend));
}

static void run_all_cases(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
        run_case(&CASES[i]);
}

int main(int argc, char **argv) {
    rvg_test_seed(0x2545F4914F6CDD1Dull);
    (void)argc, (void)argv;
    if (rvg_ops_using_ref())
        printf("note: RVG_FORCE_REF is set; forcing the fast path for this test\n");
    rvg_ops_force_ref(0);

    for_each_gemm_backend(run_all_cases);
    /* the stride-1 shapes once more with the 3x3 through im2col + GEMM (RVG_CONV_WINOGRAD=0) */
    printf("-- Winograd off (default backend)\n");
    const int was = rvg__conv_winograd_set(0);
    run_all_cases();
    rvg__conv_winograd_set(was);
    check_force_ref();
    check_keep();
    check_keep_packed_u();
    return rvg_test_finish();
}
