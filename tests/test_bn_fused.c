/* test_bn_fused.c - the fused BatchNorm passes of a train-form block (src/model/block_fused.c)
 * against the op-by-op reference kernels, pass by pass, on shapes that reach both of their code
 * paths: small planes (HW <= 16, per-position sums over a channel block's run) and large ones
 * (plane by plane), 1x1 planes, channel counts above the 64-channel item limit and not multiples
 * of it, odd plane sizes, N = 1, one to three branches.
 *
 * For each shape:
 *   statistics   rvg__bn_train_sum_relu_forward's mean / istd / running statistics vs
 *                                         rvg_bn_forward_train_ref's;
 *   forward      its s and out vs sum_j BN_j(x_j) and its ReLU;
 *   backward     rvg__bn_sum_relu_backward vs ReLU backward, then rvg_bn_backward_ref per branch
 *                                         (dz_j, dgamma_j, dbeta_j);
 * every output again with one thread, and again through a sync hook of one process (the separate
 * passes rvg__bn_stats, rvg__bn_sum_relu_forward and the backward's two phases): the same bits
 * (sums are ordered by the shape alone).
 * Tolerances: the reference sums in double too, in another order; 1e-5 relative on statistics
 * and outputs, 1e-4 x max|ref| on gradients (their sums cancel).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef RVG_HAVE_OPENMP
#include <omp.h>
#endif

#include "harness.h"
#include "model/block_fused_impl.h"
#include "rvg/ops.h"

typedef struct {
    float *mean[3], *istd[3], *rmean, *rvar, *s, *out, *ds, *dz[3], *dg[3], *db[3];
} outputs;

static float *zeros(int64_t n) {
    return calloc((size_t)(n > 0 ? n : 1), sizeof(float));
}

static void outputs_new(outputs *o, int64_t n, int64_t K) {
    for (int j = 0; j < 3; j++) {
        o->mean[j] = zeros(K), o->istd[j] = zeros(K);
        o->dz[j] = zeros(n), o->dg[j] = zeros(K), o->db[j] = zeros(K);
    }
    o->rmean = zeros(K), o->rvar = zeros(K);
    o->s = zeros(n), o->out = zeros(n), o->ds = zeros(n);
}

static void outputs_free(outputs *o) {
    for (int j = 0; j < 3; j++)
        free(o->mean[j]), free(o->istd[j]), free(o->dz[j]), free(o->dg[j]), free(o->db[j]);
    free(o->rmean), free(o->rvar), free(o->s), free(o->out), free(o->ds);
}

static int same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

/* A sync hook of one process: the sums are already the global ones. */
static void allreduce_one(double *buf, int64_t n, void *ctx) {
    (void)buf, (void)n, (void)ctx;
}

/* The fused passes: statistics of every branch (running statistics of branch 0), forward, backward.
 * two_phase = 0: as a single process trains (statistics and sum + ReLU in one phase, each
 * backward item's two passes back to back); 1: through a sync hook, which takes the separate
 * statistics passes and the backward's two phases (what a data-parallel job runs). */
static void run_fused(outputs *o, float *const x[3], const float *gamma[3], const float *beta[3],
                      const float *dout, int nt, int64_t N, int64_t K, int64_t HW, int two_phase) {
    double *buf = malloc(sizeof(double) * (size_t)(4 * K + 1));
    const rvg__bn_sync one = {allreduce_one, NULL}, *sync = two_phase ? &one : NULL;
    rvg__bn_term t[3];
    for (int64_t k = 0; k < K; k++)
        o->rmean[k] = 0.25f, o->rvar[k] = 2.0f;
    for (int j = 0; j < nt; j++) {
        if (two_phase)
            rvg__bn_stats(o->mean[j], o->istd[j], j == 0 ? o->rmean : NULL, j == 0 ? o->rvar : NULL,
                          x[j], N, K, HW, 0.1f, 1e-5f, buf, sync);
        t[j] = (rvg__bn_term){x[j], gamma[j], beta[j], o->mean[j], o->istd[j]};
    }
    if (two_phase) {
        rvg__bn_sum_relu_forward(o->s, o->out, t, nt, N, K, HW);
    } else {
        float *rm[3] = {o->rmean, NULL, NULL}, *rv[3] = {o->rvar, NULL, NULL};
        rvg__bn_train_sum_relu_forward(o->s, o->out, t, o->mean, o->istd, rm, rv, nt, N, K, HW,
                                       0.1f, 1e-5f);
    }
    float *dz[3] = {o->dz[0], o->dz[1], o->dz[2]}, *dg[3] = {o->dg[0], o->dg[1], o->dg[2]};
    float *db[3] = {o->db[0], o->db[1], o->db[2]};
    rvg__bn_sum_relu_backward(dz, dg, db, o->ds, dout, o->out, t, nt, N, K, HW, buf, sync);
    free(buf);
}

/* Every output of a and b bit for bit. */
static int same_outputs(const outputs *a, const outputs *b, int nt, int64_t n, int64_t K) {
    int same = same_bits(a->s, b->s, n) && same_bits(a->out, b->out, n) &&
               same_bits(a->ds, b->ds, n) && same_bits(a->rmean, b->rmean, K) &&
               same_bits(a->rvar, b->rvar, K);
    for (int j = 0; j < nt; j++)
        same = same && same_bits(a->mean[j], b->mean[j], K) &&
               same_bits(a->istd[j], b->istd[j], K) && same_bits(a->dz[j], b->dz[j], n) &&
               same_bits(a->dg[j], b->dg[j], K) && same_bits(a->db[j], b->db[j], K);
    return same;
}

static void check_shape(int64_t N, int64_t K, int64_t HW, int nt) {
    char what[96];
    printf("case N=%lld K=%lld HW=%lld branches=%d\n", (long long)N, (long long)K, (long long)HW,
           nt);
    const int64_t n = N * K * HW;
    float *x[3], *gamma[3], *beta[3];
    for (int j = 0; j < 3; j++) {
        x[j] = rvg_test_new_rand(n);
        for (int64_t i = 0; i < n; i++) /* a channel-dependent offset, as real activations have */
            x[j][i] = 1.5f * x[j][i] + 0.1f * (float)((i / HW) % K % 7);
        gamma[j] = rvg_test_new_rand(K), beta[j] = rvg_test_new_rand(K);
    }
    float *dout = rvg_test_new_rand(n);
    const float *g[3] = {gamma[0], gamma[1], gamma[2]}, *b[3] = {beta[0], beta[1], beta[2]};

    outputs f, one, two;
    outputs_new(&f, n, K), outputs_new(&one, n, K), outputs_new(&two, n, K);
    run_fused(&f, x, g, b, dout, nt, N, K, HW, 0);

    /* reference: each branch's BN, their sum, ReLU; then ReLU backward and each BN backward */
    float *y = zeros(n), *s = zeros(n), *out = zeros(n), *ds = zeros(n);
    float *sm = zeros(K), *si = zeros(K), *rm = zeros(K), *rv = zeros(K);
    for (int j = 0; j < nt; j++) {
        for (int64_t k = 0; k < K; k++)
            rm[k] = 0.25f, rv[k] = 2.0f;
        rvg_bn_forward_train_ref(y, sm, si, j == 0 ? rm : NULL, j == 0 ? rv : NULL, x[j], gamma[j],
                                 beta[j], N, K, HW, 0.1f, 1e-5f);
        snprintf(what, sizeof what, "mean[%d]", j);
        rvg_test_close(what, f.mean[j], sm, K, 1e-6f, 1e-5f, NULL, 0);
        snprintf(what, sizeof what, "istd[%d]", j);
        rvg_test_close(what, f.istd[j], si, K, 0.0f, 1e-5f, NULL, 0);
        if (j == 0) {
            rvg_test_close("running_mean", f.rmean, rm, K, 1e-6f, 1e-5f, NULL, 0);
            rvg_test_close("running_var", f.rvar, rv, K, 0.0f, 1e-5f, NULL, 0);
        }
        for (int64_t i = 0; i < n; i++)
            s[i] += y[i];
    }
    rvg_relu_forward_ref(out, s, n);
    const int64_t dims[3] = {N, K, HW};
    rvg_test_close("s", f.s, s, n, 1e-5f, 1e-5f, dims, 3);
    rvg_test_close("out", f.out, out, n, 1e-5f, 1e-5f, dims, 3);
    rvg_relu_backward_ref(ds, dout, out, n);
    rvg_test_close("ds", f.ds, ds, n, 0.0f, 0.0f, dims, 3);
    for (int j = 0; j < nt; j++) {
        float *dz = zeros(n), *dg = zeros(K), *db = zeros(K);
        rvg_bn_backward_ref(dz, dg, db, ds, x[j], f.mean[j], f.istd[j], gamma[j], N, K, HW);
        snprintf(what, sizeof what, "dz[%d]", j);
        rvg_test_close(what, f.dz[j], dz, n, 1e-4f * rvg_test_max_abs(dz, n), 0.0f, dims, 3);
        snprintf(what, sizeof what, "dgamma[%d]", j);
        rvg_test_close(what, f.dg[j], dg, K, 1e-4f * rvg_test_max_abs(dg, K), 0.0f, NULL, 0);
        snprintf(what, sizeof what, "dbeta[%d]", j);
        rvg_test_close(what, f.db[j], db, K, 1e-4f * rvg_test_max_abs(db, K), 0.0f, NULL, 0);
        free(dz), free(dg), free(db);
    }

    /* one thread: the same bits */
#ifdef RVG_HAVE_OPENMP
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    run_fused(&one, x, g, b, dout, nt, N, K, HW, 0);
#ifdef RVG_HAVE_OPENMP
    omp_set_num_threads(threads);
#endif
    CHECK(same_outputs(&one, &f, nt, n, K));
    /* the separate passes of a sync hook: the same bits again */
    run_fused(&two, x, g, b, dout, nt, N, K, HW, 1);
    CHECK(same_outputs(&two, &f, nt, n, K));

    outputs_free(&f), outputs_free(&one), outputs_free(&two);
    for (int j = 0; j < 3; j++)
        free(x[j]), free(gamma[j]), free(beta[j]);
    free(dout), free(y), free(s), free(out), free(ds), free(sm), free(si), free(rm), free(rv);
}

int main(void) {
    check_shape(128, 1280, 1, 2); /* A0's last stage at a 32x32 input */
    check_shape(64, 192, 4, 3);   /* its 2x2 stage 3 */
    check_shape(3, 130, 4, 3);    /* more channels than one item takes, not a multiple of it */
    check_shape(1, 70, 9, 2);     /* N = 1, 3x3 planes */
    check_shape(5, 13, 16, 1);    /* the largest small plane */
    check_shape(7, 96, 17, 3);    /* the smallest large one */
    check_shape(2, 37, 49, 2);
    check_shape(64, 48, 256, 2); /* the 16x16 stem of a 32x32 input */
    check_shape(6, 5, 1, 3);     /* six values per channel */
    return rvg_test_finish();
}
