/* bench_conv.c - times the training convolution: _ref against the dispatched im2col + GEMM path.
 *
 * Does: for each distinct conv of the RepVGG-A0 train form (3x3 pad 1 and 1x1 pad 0 branch of every
 * block shape), on 28x28x1 input batch 64 (default), 32x32x1 batch 128 (--set 32) or 224x224x3
 * batch 8 (--set 224), times forward and backward (dx + dw + dbias) of rvg_conv2d_*_ref and of the
 * fast path with each requested GEMM backend; prints min and median milliseconds over repeated runs
 * (after one warm-up), GFLOP/s, and a network total that weights each shape by how many blocks use
 * it. Fixed seed.
 *
 * With --pair it instead times, per block shape, the two branch convolutions as two dispatched
 * calls against the fused rvg_conv2d_*_3x3_1x1 pair (forward; backward dx + dw3 + dw1), with the
 * chosen backend, and a weighted network total.
 *
 * Does not: check results (tests/test_conv_fast.c does) or run under ctest.
 *
 * usage: bench_conv [--set 28|32|224] [--backend auto|own-c|own-avx2|blas|all] [--reps N]
 *                   [--ref-reps N] [--no-ref] [--clock wall|cpu] [--only NAME-SUBSTRING] [--pair]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/conv2d_gemm_impl.h"
#include "rvg/ops.h"

#ifdef RVG_HAVE_OPENMP
#include <omp.h>
#endif

typedef struct {
    const char *name;
    int64_t C, H, K, stride, count; /* 3x3 and 1x1 branch each; count = blocks with this shape */
} layer;

/* A0 on 28x28x1, widths 48, 48, 96, 192, 1280, strides 2 at each stage's first block. */
static const layer A0_28[] = {
    {"stage0   1->48   28 s2", 1, 28, 48, 2, 1},    {"stage1  48->48   14 s2", 48, 14, 48, 2, 1},
    {"stage1  48->48    7 s1", 48, 7, 48, 1, 1},    {"stage2  48->96    7 s2", 48, 7, 96, 2, 1},
    {"stage2  96->96    4 s1", 96, 4, 96, 1, 3},    {"stage3  96->192   4 s2", 96, 4, 192, 2, 1},
    {"stage3 192->192   2 s1", 192, 2, 192, 1, 13}, {"stage4 192->1280  2 s2", 192, 2, 1280, 2, 1},
};
/* A0 on 32x32x1 (Fashion-MNIST resized, as the hour-long runs of docs/fashion_mnist.md train it),
 * batch 128. */
static const layer A0_32[] = {
    {"stage0   1->48   32 s2", 1, 32, 48, 2, 1},    {"stage1  48->48   16 s2", 48, 16, 48, 2, 1},
    {"stage1  48->48    8 s1", 48, 8, 48, 1, 1},    {"stage2  48->96    8 s2", 48, 8, 96, 2, 1},
    {"stage2  96->96    4 s1", 96, 4, 96, 1, 3},    {"stage3  96->192   4 s2", 96, 4, 192, 2, 1},
    {"stage3 192->192   2 s1", 192, 2, 192, 1, 13}, {"stage4 192->1280  2 s2", 192, 2, 1280, 2, 1},
};
/* A0 on 224x224x3. */
static const layer A0_224[] = {
    {"stage0   3->48  224 s2", 3, 224, 48, 2, 1},
    {"stage1  48->48  112 s2", 48, 112, 48, 2, 1},
    {"stage1  48->48   56 s1", 48, 56, 48, 1, 1},
    {"stage2  48->96   56 s2", 48, 56, 96, 2, 1},
    {"stage2  96->96   28 s1", 96, 28, 96, 1, 3},
    {"stage3  96->192  28 s2", 96, 28, 192, 2, 1},
    {"stage3 192->192  14 s1", 192, 14, 192, 1, 13},
    {"stage4 192->1280 14 s2", 192, 14, 1280, 2, 1},
};

/* Wall clock by default; --clock cpu uses the process CPU time (all threads summed), which is
 * steadier on a machine shared with other jobs but hides poor thread scaling. */
static clockid_t g_clock = CLOCK_MONOTONIC;

static double now_s(void) {
    struct timespec t;
    clock_gettime(g_clock, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *new_rand(int64_t n, uint32_t *seed) {
    float *p = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = (float)(*seed >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
    }
    return p;
}

typedef struct {
    double min, med;
} timing;

enum { RUN_REF, RUN_FAST };

/* Times `reps` runs of forward (which = 0) or backward (which = 1) after one warm-up. */
static timing time_it(int path, int which, int reps, const rvg_conv_shape *s, float *y,
                      const float *x, const float *w, const float *b, float *dx, float *dw,
                      float *db, const float *dy, void *ws) {
    double t[64];
    if (reps > 64)
        reps = 64;
    for (int i = -1; i < reps; i++) {
        const double t0 = now_s();
        if (path == RUN_REF) {
            if (which == 0)
                rvg_conv2d_forward_ref(y, x, w, b, s, NULL);
            else
                rvg_conv2d_backward_ref(dx, dw, db, dy, x, w, s, NULL);
        } else {
            if (which == 0)
                rvg_conv2d_forward(y, x, w, b, s, ws);
            else
                rvg_conv2d_backward(dx, dw, db, dy, x, w, s, ws);
        }
        if (i >= 0)
            t[i] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    timing r = {t[0], reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2])};
    return r;
}

/* Times `reps` runs (after one warm-up) of the block's two convolutions, forward (which = 0) or
 * backward (which = 1), as two dispatched calls (fused = 0) or the fused pair (fused = 1). */
static timing time_pair(int fused, int which, int reps, const rvg_conv_shape *s3,
                        const rvg_conv_shape *s1, float *z3, float *z1, const float *x,
                        const float *w3, const float *w1, float *dx, float *dw3, float *dw1,
                        const float *dz3, const float *dz1, void *ws) {
    double t[64];
    if (reps > 64)
        reps = 64;
    for (int i = -1; i < reps; i++) {
        const double t0 = now_s();
        if (fused && which == 0) {
            rvg_conv2d_forward_3x3_1x1(z3, z1, x, w3, w1, s3, ws);
        } else if (fused) {
            rvg_conv2d_backward_3x3_1x1(dx, dw3, dw1, dz3, dz1, x, w3, w1, s3, ws);
        } else if (which == 0) {
            rvg_conv2d_forward(z3, x, w3, NULL, s3, ws);
            rvg_conv2d_forward(z1, x, w1, NULL, s1, ws);
        } else {
            rvg_conv2d_backward(dx, dw3, NULL, dz3, x, w3, s3, ws);
            rvg_conv2d_backward(dx, dw1, NULL, dz1, x, w1, s1, ws);
        }
        if (i >= 0)
            t[i] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    timing r = {t[0], reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2])};
    return r;
}

/* --pair: separate against fused, per block shape and weighted over the network. */
static void bench_pair(const layer *L, int nl, int64_t N, int reps, const char *only) {
    double tot[2][2] = {{0}}; /* [separate, fused][fwd, bwd], min times weighted by count */
    for (int li = 0; li < nl; li++) {
        if (only && !strstr(L[li].name, only))
            continue;
        rvg_conv_shape s3 = {.N = N,
                             .C = L[li].C,
                             .H = L[li].H,
                             .W = L[li].H,
                             .K = L[li].K,
                             .R = 3,
                             .S = 3,
                             .stride = L[li].stride,
                             .pad = 1,
                             .G = 1};
        rvg_conv_shape_finish(&s3);
        rvg_conv_shape s1 = s3;
        s1.R = s1.S = 1;
        s1.pad = 0;
        rvg_conv_shape_finish(&s1);
        uint32_t seed = 1234;
        const int64_t nx = s3.N * s3.C * s3.H * s3.W, nz = s3.N * s3.K * s3.P * s3.Q;
        const int64_t nw3 = s3.K * s3.C * 9, nw1 = s3.K * s3.C;
        float *x = new_rand(nx, &seed), *w3 = new_rand(nw3, &seed), *w1 = new_rand(nw1, &seed);
        float *dz3 = new_rand(nz, &seed), *dz1 = new_rand(nz, &seed);
        float *z3 = malloc(sizeof(float) * (size_t)nz), *z1 = malloc(sizeof(float) * (size_t)nz);
        float *dx = calloc((size_t)nx, sizeof(float));
        float *dw3 = calloc((size_t)nw3, sizeof(float)), *dw1 = calloc((size_t)nw1, sizeof(float));
        void *ws = malloc(rvg_conv2d_3x3_1x1_workspace_size(&s3));
        const double cnt = (double)L[li].count;
        printf("%s 3x3+1x1\n", L[li].name);
        for (int fused = 0; fused < 2; fused++) {
            timing f =
                time_pair(fused, 0, reps, &s3, &s1, z3, z1, x, w3, w1, dx, dw3, dw1, dz3, dz1, ws);
            timing g =
                time_pair(fused, 1, reps, &s3, &s1, z3, z1, x, w3, w1, dx, dw3, dw1, dz3, dz1, ws);
            printf("   %-9s fwd %8.3f / %8.3f ms   bwd %8.3f / %8.3f ms\n",
                   fused ? "fused" : "separate", f.min * 1e3, f.med * 1e3, g.min * 1e3,
                   g.med * 1e3);
            tot[fused][0] += f.min * cnt;
            tot[fused][1] += g.min * cnt;
        }
        free(x), free(w3), free(w1), free(dz3), free(dz1), free(z3), free(z1), free(dx);
        free(dw3), free(dw1), free(ws);
    }
    printf("network total (min times, weighted by block count):\n");
    for (int fused = 0; fused < 2; fused++)
        printf("   %-9s fwd %8.2f ms   bwd %8.2f ms   fwd+bwd %8.2f ms\n",
               fused ? "fused" : "separate", tot[fused][0] * 1e3, tot[fused][1] * 1e3,
               (tot[fused][0] + tot[fused][1]) * 1e3);
}

int main(int argc, char **argv) {
    int set = 28, reps = 9, ref_reps = 3, do_ref = 1, pair = 0;
    const char *backend = "auto", *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc)
            set = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            backend = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ref-reps") && i + 1 < argc)
            ref_reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pair"))
            pair = 1;
        else if (!strcmp(argv[i], "--no-ref"))
            do_ref = 0;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--clock") && i + 1 < argc)
            g_clock = !strcmp(argv[++i], "cpu") ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC;
        else {
            fprintf(stderr,
                    "usage: %s [--set 28|32|224] [--backend auto|own-c|own-avx2|blas|all] "
                    "[--reps N] [--ref-reps N] [--no-ref] [--clock wall|cpu] [--only STR] "
                    "[--pair]\n",
                    argv[0]);
            return 2;
        }
    }
    reps = reps < 1 ? 1 : reps;
    ref_reps = ref_reps < 1 ? 1 : ref_reps;
    if (set != 28 && set != 32 && set != 224) {
        fprintf(stderr, "%s: --set must be 28, 32 or 224\n", argv[0]);
        return 2;
    }
    const layer *L = set == 224 ? A0_224 : set == 32 ? A0_32 : A0_28;
    const int nl = 8;
    const int64_t N = set == 224 ? 8 : set == 32 ? 128 : 64;

    rvg__gemm_backend bes[4];
    int nbe = 0;
    if (!strcmp(backend, "all")) {
        bes[nbe++] = RVG__GEMM_OWN_AVX2;
        bes[nbe++] = RVG__GEMM_BLAS;
        bes[nbe++] = RVG__GEMM_OWN_C;
    } else {
        bes[nbe++] = !strcmp(backend, "own-c")      ? RVG__GEMM_OWN_C
                     : !strcmp(backend, "own-avx2") ? RVG__GEMM_OWN_AVX2
                     : !strcmp(backend, "blas")     ? RVG__GEMM_BLAS
                                                    : RVG__GEMM_AUTO;
    }
    rvg_ops_force_ref(0);
    int threads = 1;
#ifdef RVG_HAVE_OPENMP
    threads = omp_get_max_threads();
#endif
    printf("bench_conv: A0 %dx%d batch %lld, %d OpenMP threads, %s clock, min/median ms over %d "
           "runs (ref %d), GFLOP/s from the min\n",
           set, set, (long long)N, threads, g_clock == CLOCK_MONOTONIC ? "wall" : "cpu", reps,
           ref_reps);
    if (pair) {
        if (!rvg__conv_gemm_set_backend(bes[0])) {
            fprintf(stderr, "backend %s not available\n", backend);
            return 2;
        }
        printf("backend %s\n", rvg__conv_gemm_backend_name());
        bench_pair(L, nl, N, reps, only);
        return 0;
    }

    /* totals[path][fwd/bwd]: path 0 = ref, 1.. = backends; weighted by block count */
    double tot[5][2] = {{0}}, tot_flop[2] = {0};
    for (int li = 0; li < nl; li++) {
        if (only && !strstr(L[li].name, only))
            continue;
        for (int k3 = 1; k3 >= 0; k3--) {
            rvg_conv_shape s = {.N = N,
                                .C = L[li].C,
                                .H = L[li].H,
                                .W = L[li].H,
                                .K = L[li].K,
                                .R = k3 ? 3 : 1,
                                .S = k3 ? 3 : 1,
                                .stride = L[li].stride,
                                .pad = k3 ? 1 : 0,
                                .G = 1};
            rvg_conv_shape_finish(&s);
            uint32_t seed = 1234;
            const int64_t nx = s.N * s.C * s.H * s.W, ny = s.N * s.K * s.P * s.Q;
            const int64_t nw = s.K * s.C * s.R * s.S;
            float *x = new_rand(nx, &seed), *w = new_rand(nw, &seed), *dy = new_rand(ny, &seed);
            float *b = new_rand(s.K, &seed), *y = malloc(sizeof(float) * (size_t)ny);
            float *dx = calloc((size_t)nx, sizeof(float)), *dw = calloc((size_t)nw, sizeof(float));
            float *db = calloc((size_t)s.K, sizeof(float));
            void *ws = malloc(rvg_conv2d_workspace_size(&s));
            const double fl = 2.0 * (double)(s.N * s.K * s.P * s.Q * s.C * s.R * s.S);
            const double cnt = (double)L[li].count;
            tot_flop[0] += fl * cnt;
            tot_flop[1] += 2.0 * fl * cnt;
            printf("%s %s  fwd %.1f MFLOP, ws %.2f MB\n", L[li].name, k3 ? "3x3" : "1x1", fl * 1e-6,
                   (double)rvg_conv2d_workspace_size(&s) / 1048576.0);
            if (do_ref) {
                timing f = time_it(RUN_REF, 0, ref_reps, &s, y, x, w, b, dx, dw, db, dy, ws);
                timing g = time_it(RUN_REF, 1, ref_reps, &s, y, x, w, b, dx, dw, db, dy, ws);
                printf(
                    "   %-9s fwd %8.3f / %8.3f ms %6.1f GF/s   bwd %8.3f / %8.3f ms %6.1f GF/s\n",
                    "ref", f.min * 1e3, f.med * 1e3, fl / f.min * 1e-9, g.min * 1e3, g.med * 1e3,
                    2 * fl / g.min * 1e-9);
                tot[0][0] += f.min * cnt;
                tot[0][1] += g.min * cnt;
            }
            for (int bi = 0; bi < nbe; bi++) {
                if (!rvg__conv_gemm_set_backend(bes[bi]))
                    continue;
                timing f = time_it(RUN_FAST, 0, reps, &s, y, x, w, b, dx, dw, db, dy, ws);
                timing g = time_it(RUN_FAST, 1, reps, &s, y, x, w, b, dx, dw, db, dy, ws);
                printf(
                    "   %-9s fwd %8.3f / %8.3f ms %6.1f GF/s   bwd %8.3f / %8.3f ms %6.1f GF/s\n",
                    rvg__conv_gemm_backend_name(), f.min * 1e3, f.med * 1e3, fl / f.min * 1e-9,
                    g.min * 1e3, g.med * 1e3, 2 * fl / g.min * 1e-9);
                tot[1 + bi][0] += f.min * cnt;
                tot[1 + bi][1] += g.min * cnt;
            }
            free(x), free(w), free(dy), free(b), free(y), free(dx), free(dw), free(db), free(ws);
        }
    }
    printf("network total (every conv of the train form, min times, weighted by block count):\n");
    if (do_ref)
        printf("   %-9s fwd %8.2f ms %6.1f GF/s   bwd %8.2f ms %6.1f GF/s\n", "ref",
               tot[0][0] * 1e3, tot_flop[0] / tot[0][0] * 1e-9, tot[0][1] * 1e3,
               tot_flop[1] / tot[0][1] * 1e-9);
    for (int bi = 0; bi < nbe; bi++) {
        if (!rvg__conv_gemm_set_backend(bes[bi]))
            continue;
        printf("   %-9s fwd %8.2f ms %6.1f GF/s   bwd %8.2f ms %6.1f GF/s",
               rvg__conv_gemm_backend_name(), tot[1 + bi][0] * 1e3,
               tot_flop[0] / tot[1 + bi][0] * 1e-9, tot[1 + bi][1] * 1e3,
               tot_flop[1] / tot[1 + bi][1] * 1e-9);
        if (do_ref)
            printf("   speed-up fwd+bwd x%.1f",
                   (tot[0][0] + tot[0][1]) / (tot[1 + bi][0] + tot[1 + bi][1]));
        printf("\n");
    }
    return 0;
}
