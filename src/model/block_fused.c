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

typedef struct {
    float *mean, *istd, *running_mean, *running_var;
    const float *x;
    int64_t N, C, HW;
    float momentum, eps;
} stats_job;

static void stats_item(void *ctx, int64_t c, int tid) {
    const stats_job *j = ctx;
    const double n = (double)(j->N * j->HW);
    double s = 0, ss = 0;
    for (int64_t i = 0; i < j->N; i++) {
        const float *p = j->x + (i * j->C + c) * j->HW;
        double ps = 0;
        for (int64_t q = 0; q < j->HW; q++)
            ps += p[q];
        s += ps;
    }
    double m = s / n;
    for (int64_t i = 0; i < j->N; i++) {
        const float *p = j->x + (i * j->C + c) * j->HW;
        double pss = 0;
        for (int64_t q = 0; q < j->HW; q++) {
            double d = p[q] - m;
            pss += d * d;
        }
        ss += pss;
    }
    double var = ss / n; /* biased: what normalisation uses */
    j->mean[c] = (float)m;
    j->istd[c] = (float)(1.0 / sqrt(var + j->eps));
    if (j->running_mean) {
        /* unbiased for the running estimate, as PyTorch */
        double unbiased = n > 1 ? ss / (n - 1) : var;
        j->running_mean[c] = (float)((1.0 - j->momentum) * j->running_mean[c] + j->momentum * m);
        j->running_var[c] =
            (float)((1.0 - j->momentum) * j->running_var[c] + j->momentum * unbiased);
    }
}

void rvg__bn_stats(float *mean, float *istd, float *running_mean, float *running_var,
                   const float *x, int64_t N, int64_t C, int64_t HW, float momentum, float eps) {
    stats_job j = {mean, istd, running_mean, running_var, x, N, C, HW, momentum, eps};
    rvg__par_run(C, threads_for(N * C * HW), stats_item, &j);
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

typedef struct {
    float *const *dz, *const *dgamma, *const *dbeta;
    const float *ds;
    const rvg__bn_term *t;
    int nt;
    int64_t N, K, HW;
} bwd_job;

/* item = one channel */
static void bwd_item(void *ctx, int64_t k, int tid) {
    const bwd_job *J = ctx;
    float *const *dz = J->dz, *const *dgamma = J->dgamma, *const *dbeta = J->dbeta;
    const float *ds = J->ds;
    const rvg__bn_term *t = J->t;
    const int nt = J->nt;
    const int64_t N = J->N, K = J->K, HW = J->HW;
    const double n = (double)(N * HW);
    {
        /* pass 1: sum(ds) and sum(ds * (x - mean)) for every branch */
        double sum_ds = 0, sum_dsx[3] = {0, 0, 0};
        for (int64_t i = 0; i < N; i++) {
            const float *g = ds + (i * K + k) * HW;
            double a = 0, c[3] = {0, 0, 0};
            for (int64_t p = 0; p < HW; p++)
                a += g[p];
            for (int j = 0; j < nt; j++) {
                const float *x = t[j].x + (i * K + k) * HW;
                float m = t[j].mean[k];
                for (int64_t p = 0; p < HW; p++)
                    c[j] += (double)g[p] * (x[p] - m);
            }
            sum_ds += a;
            for (int j = 0; j < nt; j++)
                sum_dsx[j] += c[j];
        }
        /* dgamma = sum(ds * xhat) = istd * sum(ds * (x - mean)); dbeta = sum(ds) */
        float coef[3], proj[3], mean_ds = (float)(sum_ds / n);
        for (int j = 0; j < nt; j++) {
            double is = t[j].istd[k];
            if (dgamma[j])
                dgamma[j][k] += (float)(is * sum_dsx[j]);
            if (dbeta[j])
                dbeta[j][k] += (float)sum_ds;
            coef[j] = (float)(t[j].gamma[k] * is);
            /* xhat * mean(ds * xhat) = (x - mean) * istd^2 * sum_dsx / n */
            proj[j] = (float)(is * is * sum_dsx[j] / n);
        }
        /* pass 2: dz = gamma*istd * (ds - mean(ds) - (x-mean) * proj), overwriting */
        for (int j = 0; j < nt; j++) {
            if (!dz[j])
                continue;
            float m = t[j].mean[k];
            for (int64_t i = 0; i < N; i++) {
                const float *g = ds + (i * K + k) * HW, *x = t[j].x + (i * K + k) * HW;
                float *d = dz[j] + (i * K + k) * HW;
                for (int64_t p = 0; p < HW; p++)
                    d[p] = coef[j] * (g[p] - mean_ds - (x[p] - m) * proj[j]);
            }
        }
    }
}

/* Sync-BN statistics. Two rounds because the squared deviations are taken around the GLOBAL mean
 * (the same two-pass, double-accumulated formula as rvg__bn_stats, which stays untouched so the
 * single-process path keeps its exact results). buf: [0, C) sums then means, [C] count,
 * [C + 1, 2C + 1) squared deviations. */
void rvg__bn_stats_sync(float *mean, float *istd, float *running_mean, float *running_var,
                        const float *x, int64_t N, int64_t C, int64_t HW, float momentum, float eps,
                        double *buf, void (*allreduce)(double *, int64_t, void *), void *ctx) {
    double *sum = buf, *ss = buf + C + 1;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; c++) {
        double s = 0;
        for (int64_t i = 0; i < N; i++) {
            const float *p = x + (i * C + c) * HW;
            double ps = 0;
            for (int64_t j = 0; j < HW; j++)
                ps += p[j];
            s += ps;
        }
        sum[c] = s;
    }
    buf[C] = (double)(N * HW);
    allreduce(buf, C + 1, ctx);
    const double n = buf[C];
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; c++) {
        double m = sum[c] / n, acc = 0;
        sum[c] = m;
        for (int64_t i = 0; i < N; i++) {
            const float *p = x + (i * C + c) * HW;
            double pss = 0;
            for (int64_t j = 0; j < HW; j++) {
                double d = p[j] - m;
                pss += d * d;
            }
            acc += pss;
        }
        ss[c] = acc;
    }
    allreduce(ss, C, ctx);
    for (int64_t c = 0; c < C; c++) {
        double m = sum[c], var = ss[c] / n; /* biased, over the global batch */
        mean[c] = (float)m;
        istd[c] = (float)(1.0 / sqrt(var + eps));
        if (running_mean) {
            /* the global unbiased variance, as torch.nn.SyncBatchNorm */
            double unbiased = n > 1 ? ss[c] / (n - 1) : var;
            running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
            running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
        }
    }
}

/* Sync-BN backward: pass 1 as rvg__bn_sum_backward, its sums kept in buf (per channel k:
 * [k*(nt+1)] sum(ds), [k*(nt+1) + 1 + j] sum(ds * (x - mean_j)); [K*(nt+1)] the count). dgamma and
 * dbeta take the local sums before the allreduce; pass 2 uses the global ones. */
void rvg__bn_sum_backward_sync(float *const dz[3], float *const dgamma[3],
                               float *const dbeta[3], const float *ds, const rvg__bn_term *t,
                               int nt, int64_t N, int64_t K, int64_t HW, double *buf,
                               void (*allreduce)(double *, int64_t, void *), void *ctx) {
    const int64_t stride = nt + 1;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < K; k++) {
        double sum_ds = 0, sum_dsx[3] = {0, 0, 0};
        for (int64_t i = 0; i < N; i++) {
            const float *g = ds + (i * K + k) * HW;
            double a = 0, c[3] = {0, 0, 0};
            for (int64_t p = 0; p < HW; p++)
                a += g[p];
            for (int j = 0; j < nt; j++) {
                const float *x = t[j].x + (i * K + k) * HW;
                float m = t[j].mean[k];
                for (int64_t p = 0; p < HW; p++)
                    c[j] += (double)g[p] * (x[p] - m);
            }
            sum_ds += a;
            for (int j = 0; j < nt; j++)
                sum_dsx[j] += c[j];
        }
        buf[k * stride] = sum_ds;
        for (int j = 0; j < nt; j++) {
            buf[k * stride + 1 + j] = sum_dsx[j];
            if (dgamma[j])
                dgamma[j][k] += (float)(t[j].istd[k] * sum_dsx[j]);
            if (dbeta[j])
                dbeta[j][k] += (float)sum_ds;
        }
    }
    buf[K * stride] = (double)(N * HW);
    allreduce(buf, K * stride + 1, ctx);
    const double n = buf[K * stride];
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < K; k++) {
        const double *b = buf + k * stride;
        float mean_ds = (float)(b[0] / n);
        for (int j = 0; j < nt; j++) {
            if (!dz[j])
                continue;
            double is = t[j].istd[k];
            float coef = (float)(t[j].gamma[k] * is), proj = (float)(is * is * b[1 + j] / n);
            float m = t[j].mean[k];
            for (int64_t i = 0; i < N; i++) {
                const float *g = ds + (i * K + k) * HW, *x = t[j].x + (i * K + k) * HW;
                float *d = dz[j] + (i * K + k) * HW;
                for (int64_t p = 0; p < HW; p++)
                    d[p] = coef * (g[p] - mean_ds - (x[p] - m) * proj);
            }
        }
    }
}

void rvg__bn_sum_backward(float *const dz[3], float *const dgamma[3], float *const dbeta[3],
                          const float *ds, const rvg__bn_term *t, int nt, int64_t N, int64_t K,
                          int64_t HW) {
    bwd_job j = {dz, dgamma, dbeta, ds, t, nt, N, K, HW};
    rvg__par_run(K, threads_for(N * K * HW), bwd_item, &j);
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
