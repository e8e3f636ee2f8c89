/* bench_bn.c - times the fused BatchNorm passes of a train-form block (src/model/block_fused.c).
 *
 * Does: for the block shapes of RepVGG-A0 whose BN passes cost the most (224x224 batch 8: the stem's
 * 48 x 112x112 output, the 14x14 stage-3 blocks with their identity branch; 28x28 batch 64: the
 * stage-1 and stage-2 blocks; and every block shape of A0 at 32x32 batch 128, the Fashion-MNIST
 * recipe, summed over the network's 22 blocks at the end), times the batch statistics of one
 * branch (rvg__bn_stats), the forward sum + ReLU pass and the backward (ReLU backward, the
 * per-channel sums and every branch's input gradient, rvg__bn_sum_relu_backward); prints min and
 * median milliseconds over repeated runs (after one warm-up) on the library's thread pool. Inputs
 * are fixed pseudo-random values.
 *
 * Does not: check results (tests/test_bn_fused.c compares these passes with the reference kernels,
 * tests/test_block_fused.c whole networks) or run under ctest.
 *
 * usage: bench_bn [--reps N]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/block_fused_impl.h"

typedef struct {
    const char *name;
    int64_t N, K, HW;
    int identity; /* three branches (3x3, 1x1, identity) or two */
    int blocks;   /* 32x32 set: how many blocks of A0 have this shape (0: not in the set) */
} bn_shape;

/* The last nine are every block shape of A0 trained on 32x32 inputs at batch 128 (the Fashion-
 * MNIST recipe of docs/fashion_mnist.md); their medians, times the blocks of each, make the BN
 * passes' share of a training step. */
static const bn_shape SHAPES[] = {
    {"224 b8  stem      48 x 112x112", 8, 48, 112 * 112, 0, 0},
    {"224 b8  stage3   192 x 14x14  ", 8, 192, 14 * 14, 1, 0},
    {"28 b64  stage1    48 x 7x7    ", 64, 48, 7 * 7, 1, 0},
    {"28 b64  stage2    96 x 4x4    ", 64, 96, 4 * 4, 1, 0},
    {"32 b128 stem      48 x 16x16  ", 128, 48, 16 * 16, 0, 1},
    {"32 b128 stage1.0  48 x 8x8    ", 128, 48, 8 * 8, 0, 1},
    {"32 b128 stage1    48 x 8x8    ", 128, 48, 8 * 8, 1, 1},
    {"32 b128 stage2.0  96 x 4x4    ", 128, 96, 4 * 4, 0, 1},
    {"32 b128 stage2    96 x 4x4    ", 128, 96, 4 * 4, 1, 3},
    {"32 b128 stage3.0 192 x 2x2    ", 128, 192, 2 * 2, 0, 1},
    {"32 b128 stage3   192 x 2x2    ", 128, 192, 2 * 2, 1, 13},
    {"32 b128 stage4  1280 x 1x1    ", 128, 1280, 1, 0, 1},
};

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *filled(int64_t n, float scale, uint32_t seed) {
    float *p = malloc(sizeof(float) * (size_t)n);
    if (!p) {
        fprintf(stderr, "bench_bn: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = scale * ((float)(seed >> 8) / 8388608.0f - 1.0f);
    }
    return p;
}

/* Runs stmt reps+1 times (the first a warm-up), prints min and median, stores the median in med. */
#define TIME(label, reps, med, stmt)                                                               \
    do {                                                                                           \
        double *t_ = malloc(sizeof(double) * (size_t)(reps));                                      \
        for (int r_ = -1; r_ < (reps); r_++) {                                                     \
            double t0_ = now_ms();                                                                 \
            stmt;                                                                                  \
            if (r_ >= 0)                                                                           \
                t_[r_] = now_ms() - t0_;                                                           \
        }                                                                                          \
        qsort(t_, (size_t)(reps), sizeof(double), cmp_double);                                     \
        printf("   %-10s %8.3f / %8.3f ms\n", label, t_[0], t_[(reps) / 2]);                       \
        (med) = t_[(reps) / 2];                                                                    \
        free(t_);                                                                                  \
    } while (0)

int main(int argc, char **argv) {
    int reps = 20;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
            if (reps < 1 || reps > 100000) {
                fprintf(stderr, "bench_bn: --reps must be 1..100000\n");
                return 2;
            }
        } else {
            fprintf(stderr, "usage: bench_bn [--reps N]\n");
            return 2;
        }
    }
    printf("bench_bn: fused BN passes, min / median ms over %d runs\n", reps);
    double step_fwd = 0, step_bwd = 0; /* the 32x32 b128 set's blocks, medians */
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
        const bn_shape *s = &SHAPES[si];
        const int64_t n = s->N * s->K * s->HW, K = s->K;
        const int nt = s->identity ? 3 : 2;
        float *x[3], *dz[3], *dg[3], *db[3], *mean[3], *istd[3];
        rvg__bn_term t[3];
        float *gamma = filled(K, 1.0f, 7), *beta = filled(K, 0.5f, 8);
        float *run_mean = filled(K, 0.0f, 9), *run_var = filled(K, 0.0f, 10);
        for (int j = 0; j < 3; j++) {
            x[j] = filled(n, 1.0f + j, 11 + j);
            dz[j] = filled(n, 0.0f, 0);
            dg[j] = filled(K, 0.0f, 0);
            db[j] = filled(K, 0.0f, 0);
            mean[j] = filled(K, 0.1f, 21 + j);
            istd[j] = filled(K, 0.0f, 0);
            for (int64_t k = 0; k < K; k++)
                istd[j][k] = 1.0f + 0.5f * mean[j][k];
            t[j] = (rvg__bn_term){x[j], gamma, beta, mean[j], istd[j]};
        }
        float *out = filled(n, 1.0f, 31), *dout = filled(n, 1.0f, 32), *ds = filled(n, 0.0f, 0);
        double *buf = malloc(sizeof(double) * (size_t)(4 * K + 1));
        if (!buf)
            return 1;
        printf("%s (%d branches)\n", s->name, nt);
        double t_stats, t_sum, t_bwd;
        TIME("stats", reps, t_stats,
             rvg__bn_stats(mean[0], istd[0], run_mean, run_var, x[0], s->N, K, s->HW, 0.1f, 1e-5f,
                           buf, NULL));
        for (int64_t k = 0; k < K; k++) /* keep the backward's istd finite and fixed */
            istd[0][k] = 1.0f + 0.5f * mean[1][k];
        TIME("sum+relu", reps, t_sum, rvg__bn_sum_relu_forward(NULL, out, t, nt, s->N, K, s->HW));
        TIME(
            "backward", reps, t_bwd,
            rvg__bn_sum_relu_backward(dz, dg, db, ds, dout, out, t, nt, s->N, K, s->HW, buf, NULL));
        /* a training step takes the statistics of every branch input */
        step_fwd += s->blocks * (nt * t_stats + t_sum);
        step_bwd += s->blocks * t_bwd;
        for (int j = 0; j < 3; j++) {
            free(x[j]), free(dz[j]), free(dg[j]), free(db[j]), free(mean[j]), free(istd[j]);
        }
        free(gamma), free(beta), free(run_mean), free(run_var), free(out), free(dout), free(ds);
        free(buf);
    }
    printf("A0 32x32 b128 step, sum of medians over its %d blocks: forward %.2f ms (statistics "
           "and sum+relu), backward %.2f ms\n",
           22, step_fwd, step_bwd);
    return 0;
}
