/* block_fused.c - the BatchNorm, branch-sum and ReLU passes of a block, fused and threaded.
 *
 * A train-form block computes s = BN3(z3) + BN1(z1) [+ BN0(x)] and out = ReLU(s). Done op by op
 * (the reference path in forward.c / backward.c) that is three BN passes, two additions and a
 * ReLU, each reading and writing whole activations. Here:
 *   forward:  one statistics pass per branch input, then ONE pass that reads z3, z1, x and writes
 *             out (and s when SE needs it);
 *   backward: ONE reduction pass per channel over ds, z3, z1, x for all the branch sums, then ONE
 *             pass writing dz3, dz1 and the identity branch's dx.
 * Threads split the channels (rvg__par_run, src/core/parallel.c), so every reduction has a fixed
 * order: results do not depend on the thread count. Statistics are accumulated in double, as in the reference kernels. The
 * reference composition stays the oracle: tests/test_block_fused.c compares the two paths.
 * The *_sync twins do the same with the per-channel sums added up over the processes of a
 * data-parallel job (SyncBatchNorm, rvg_model_set_bn_sync); the plain functions are unchanged.
 */
#include <math.h>
#include <string.h>

#include "block_fused_impl.h"
#include "core/parallel_impl.h"

/* Below this many floats a pass runs on one thread: waking helpers costs more than it saves. */
#define PAR_MIN_ELEMS 32768

static int threads_for(int64_t elems) { return elems < PAR_MIN_ELEMS ? 1 : rvg__par_threads(); }

/* ---- batch statistics ----------------------------------------------------------------------
 * Two passes, both in double: per-channel sums, then squared deviations around the mean. With a
 * sync hook the sums (and the count) are summed over processes between the passes, and the squared
 * deviations after the second, so every process gets the global batch's statistics. */
typedef struct {
    const float *x;
    int64_t N, C, HW;
    double *sum, *ss; /* (C) each, in the caller's scratch */
    double n;         /* values per channel over all processes (pass 2) */
} stats_job;

static void sum_pass(void *ctx, int64_t c, int tid) {
    const stats_job *j = ctx;
    double s = 0;
    for (int64_t i = 0; i < j->N; i++) {
        const float *p = j->x + (i * j->C + c) * j->HW;
        double ps = 0;
        for (int64_t q = 0; q < j->HW; q++)
            ps += p[q];
        s += ps;
    }
    j->sum[c] = s;
}

static void dev_pass(void *ctx, int64_t c, int tid) {
    const stats_job *j = ctx;
    double m = j->sum[c] / j->n, ss = 0;
    for (int64_t i = 0; i < j->N; i++) {
        const float *p = j->x + (i * j->C + c) * j->HW;
        double pss = 0;
        for (int64_t q = 0; q < j->HW; q++) {
            double d = p[q] - m;
            pss += d * d;
        }
        ss += pss;
    }
    j->ss[c] = ss;
}

void rvg__bn_stats(float *mean, float *istd, float *running_mean, float *running_var,
                   const float *x, int64_t N, int64_t C, int64_t HW, float momentum, float eps,
                   double *buf, const rvg__bn_sync *sync) {
    stats_job j = {x, N, C, HW, buf, buf + C + 1, (double)(N * HW)};
    int nt = threads_for(N * C * HW);
    rvg__par_run(C, nt, sum_pass, &j);
    if (sync) {
        buf[C] = j.n;
        sync->allreduce(buf, C + 1, sync->ctx);
        j.n = buf[C];
    }
    rvg__par_run(C, nt, dev_pass, &j);
    if (sync)
        sync->allreduce(j.ss, C, sync->ctx);
    const double n = j.n;
    for (int64_t c = 0; c < C; c++) {
        double m = j.sum[c] / n, var = j.ss[c] / n; /* biased: what normalisation uses */
        mean[c] = (float)m;
        istd[c] = (float)(1.0 / sqrt(var + eps));
        if (running_mean) {
            /* unbiased for the running estimate, as PyTorch (SyncBatchNorm: over the global
             * batch) */
            double unbiased = n > 1 ? j.ss[c] / (n - 1) : var;
            running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
            running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
        }
    }
}

void rvg__bn_eval_stats(float *mean, float *istd, const float *running_mean,
                        const float *running_var, int64_t C, float eps) {
    for (int64_t c = 0; c < C; c++) {
        mean[c] = running_mean[c];
        istd[c] = 1.0f / sqrtf(running_var[c] + eps);
    }
}

typedef struct {
    float *s, *out;
    const rvg__bn_term *t;
    int nt;
    int64_t K, HW;
} sum_job;

/* item = one (image, channel) plane */
static void sum_item(void *ctx, int64_t plane, int tid) {
    const sum_job *j = ctx;
    int64_t k = plane % j->K;
    float a[3], b = 0;
    const float *in[3];
    for (int q = 0; q < j->nt; q++) {
        a[q] = j->t[q].gamma[k] * j->t[q].istd[k];
        b += j->t[q].beta[k] - j->t[q].mean[k] * a[q];
        in[q] = j->t[q].x + plane * j->HW;
    }
    float *so = j->s ? j->s + plane * j->HW : NULL, *o = j->out ? j->out + plane * j->HW : NULL;
    for (int64_t p = 0; p < j->HW; p++) {
        float v = b + a[0] * in[0][p];
        for (int q = 1; q < j->nt; q++)
            v += a[q] * in[q][p];
        if (so)
            so[p] = v;
        if (o)
            o[p] = v > 0 ? v : 0;
    }
}

void rvg__bn_sum_relu_forward(float *s, float *out, const rvg__bn_term *t, int nt, int64_t N,
                              int64_t K, int64_t HW) {
    sum_job j = {s, out, t, nt, K, HW};
    rvg__par_run(N * K, threads_for(N * K * HW), sum_item, &j);
}

/* ---- backward ------------------------------------------------------------------------------
 * Pass 1 per channel: sum(ds) and sum(ds * (x - mean_j)) for every branch j into buf (stride
 * nt + 1 per channel), and the local dgamma/dbeta. With a sync hook buf (and the count) is summed
 * over processes; pass 2 then writes every branch's input gradient from the (global) sums. */
typedef struct {
    float *const *dz, *const *dgamma, *const *dbeta;
    const float *ds;
    const rvg__bn_term *t;
    int nt;
    int64_t N, K, HW;
    double *buf;
    double n;
} bwd_job;

static void bwd_sums(void *ctx, int64_t k, int tid) {
    const bwd_job *J = ctx;
    const int nt = J->nt;
    const int64_t N = J->N, K = J->K, HW = J->HW;
    double sum_ds = 0, sum_dsx[3] = {0, 0, 0};
    for (int64_t i = 0; i < N; i++) {
        const float *g = J->ds + (i * K + k) * HW;
        double a = 0, c[3] = {0, 0, 0};
        for (int64_t p = 0; p < HW; p++)
            a += g[p];
        for (int j = 0; j < nt; j++) {
            const float *x = J->t[j].x + (i * K + k) * HW;
            float m = J->t[j].mean[k];
            for (int64_t p = 0; p < HW; p++)
                c[j] += (double)g[p] * (x[p] - m);
        }
        sum_ds += a;
        for (int j = 0; j < nt; j++)
            sum_dsx[j] += c[j];
    }
    double *b = J->buf + k * (nt + 1);
    b[0] = sum_ds;
    for (int j = 0; j < nt; j++) {
        b[1 + j] = sum_dsx[j];
        /* dgamma = sum(ds * xhat) = istd * sum(ds * (x - mean)); dbeta = sum(ds) */
        if (J->dgamma[j])
            J->dgamma[j][k] += (float)(J->t[j].istd[k] * sum_dsx[j]);
        if (J->dbeta[j])
            J->dbeta[j][k] += (float)sum_ds;
    }
}

static void bwd_grads(void *ctx, int64_t k, int tid) {
    const bwd_job *J = ctx;
    const int64_t N = J->N, K = J->K, HW = J->HW;
    const double *b = J->buf + k * (J->nt + 1);
    float mean_ds = (float)(b[0] / J->n);
    for (int j = 0; j < J->nt; j++) {
        if (!J->dz[j])
            continue;
        double is = J->t[j].istd[k];
        /* dz = gamma*istd * (ds - mean(ds) - xhat * mean(ds * xhat)), with
         * xhat * mean(ds * xhat) = (x - mean) * istd^2 * sum(ds * (x - mean)) / n */
        float coef = (float)(J->t[j].gamma[k] * is), proj = (float)(is * is * b[1 + j] / J->n);
        float m = J->t[j].mean[k];
        for (int64_t i = 0; i < N; i++) {
            const float *g = J->ds + (i * K + k) * HW, *x = J->t[j].x + (i * K + k) * HW;
            float *d = J->dz[j] + (i * K + k) * HW;
            for (int64_t p = 0; p < HW; p++)
                d[p] = coef * (g[p] - mean_ds - (x[p] - m) * proj);
        }
    }
}

void rvg__bn_sum_backward(float *const dz[3], float *const dgamma[3], float *const dbeta[3],
                          const float *ds, const rvg__bn_term *t, int nt, int64_t N, int64_t K,
                          int64_t HW, double *buf, const rvg__bn_sync *sync) {
    bwd_job j = {dz, dgamma, dbeta, ds, t, nt, N, K, HW, buf, (double)(N * HW)};
    int threads = threads_for(N * K * HW);
    rvg__par_run(K, threads, bwd_sums, &j);
    if (sync) {
        buf[K * (nt + 1)] = j.n;
        sync->allreduce(buf, K * (nt + 1) + 1, sync->ctx);
        j.n = buf[K * (nt + 1)];
    }
    rvg__par_run(K, threads, bwd_grads, &j);
}

typedef struct {
    float *ds;
    const float *dout, *out;
    int64_t n;
} mask_job;

#define MASK_CHUNK 16384

static void mask_item(void *ctx, int64_t c, int tid) {
    const mask_job *j = ctx;
    int64_t end = (c + 1) * MASK_CHUNK < j->n ? (c + 1) * MASK_CHUNK : j->n;
    for (int64_t i = c * MASK_CHUNK; i < end; i++)
        j->ds[i] = j->out[i] > 0 ? j->dout[i] : 0.0f;
}

void rvg__relu_mask(float *ds, const float *dout, const float *out, int64_t n) {
    mask_job j = {ds, dout, out, n};
    rvg__par_run((n + MASK_CHUNK - 1) / MASK_CHUNK, threads_for(n), mask_item, &j);
}
