/* block_fused.c - the BatchNorm, branch-sum and ReLU passes of a block, fused and threaded.
 *
 * A train-form block computes s = BN3(z3) + BN1(z1) [+ BN0(x)] and out = ReLU(s). Done op by op
 * (the reference path in forward.c / backward.c) that is three BN passes, two additions and a
 * ReLU, each reading and writing whole activations. Here:
 *   forward:  one statistics pass per branch input, then ONE pass that reads z3, z1, x and writes
 *             out (and s when SE needs it);
 *   backward: ONE reduction pass per channel over ds, z3, z1, x for all the branch sums (which
 *             also makes ds = dout * (out > 0) from the ReLU's output), then ONE pass writing
 *             dz3, dz1 and the identity branch's dx.
 * A channel's statistics and sums need that channel alone, so in a single process (no sync hook)
 * each item of channels runs all of its passes back to back, reading its inputs from cache the
 * second time: one parallel phase per block and direction (rvg__bn_train_sum_relu_forward,
 * bwd_item), with the same bits as the separate passes a sync hook needs.
 * Threads split blocks of whole channels (rvg__par_run, src/core/parallel.c), so every reduction
 * has a fixed order: results do not depend on the thread count. Statistics are accumulated in
 * double, as in the reference kernels. The reference composition stays the oracle:
 * tests/test_block_fused.c compares the two paths.
 * The *_sync twins do the same with the per-channel sums added up over the processes of a
 * data-parallel job (SyncBatchNorm, rvg_model_set_bn_sync); the plain functions are unchanged.
 */
#include <math.h>
#include <string.h>

#include "block_fused_impl.h"
#include "core/compiler_impl.h"
#include "core/parallel_impl.h"

/* Below this many floats a pass runs on one thread: waking helpers costs more than it saves. */
#define PAR_MIN_ELEMS 32768

static int threads_for(int64_t elems) { return elems < PAR_MIN_ELEMS ? 1 : rvg__par_threads(); }

/* ---- work items ------------------------------------------------------------------------------
 * Every reduction works on whole channels: an item is a block of consecutive channels, visited
 * image by image, so each step reads one contiguous run of cb*HW floats and the per-channel sums
 * of the block are independent dependency chains the CPU overlaps. (One channel per item, as
 * first written, read 16 bytes of every cache line at the 2x2 and 1x1 layers of a 28x28 network
 * and paid one atomic claim per 4 floats.) A block holds about BLOCK_ELEMS floats, and there are
 * at least MIN_ITEMS_PER_THREAD items per thread so a late thread finds little left. The order of
 * every sum is fixed by the channel alone, never by the block size or the thread count. (The
 * forward's elementwise sum + ReLU on large planes takes runs of whole planes instead.) */
#define BLOCK_ELEMS 8192
#define MIN_ITEMS_PER_THREAD 4
#define MAX_CB 64

/* Small planes (HW <= SMALL_HW, 4x4 and below: stages 2-4 of A0 at a 28x28 or 32x32 input; for
 * the statistics HW <= STATS_SMALL_HW, 16x16, all of it). Summed plane by plane a 2x2 plane is
 * four scalar additions inside per-plane overhead, and at the 1x1 planes of the last stage the
 * overhead is all there is: those passes took 2-3 ns per element. There, an item's run of cb*HW
 * floats (cb channels of one image, contiguous) is instead processed as one vector: sums are kept
 * per position (channel, q) over the images, in double, and each channel's HW position sums are
 * added at the end; per-channel constants are expanded to the run once per item. A channel's sum
 * is still fixed by the shape alone. SMALL_RUN bounds the run, so an item's per-position arrays
 * (at most 4 double and 4 float rows) stay in L1 and on the stack. Larger planes gained nothing
 * from it (bench_bn: the 16x16 and 8x8 backward and sum+ReLU), and stay plane by plane. */
#define SMALL_HW 16
#define STATS_SMALL_HW 256
#define SMALL_RUN 1024

static int64_t chan_block(int64_t K, int64_t HW, int64_t per_chan, int nt) {
    int64_t cb = (BLOCK_ELEMS + per_chan - 1) / per_chan;
    int64_t most = K / ((int64_t)nt * MIN_ITEMS_PER_THREAD);
    if (cb > most)
        cb = most;
    if (cb > MAX_CB)
        cb = MAX_CB;
    if (HW <= STATS_SMALL_HW && cb > SMALL_RUN / HW)
        cb = SMALL_RUN / HW;
    return cb < 1 ? 1 : cb;
}

/* Plane sums in double, in four lanes (element q goes to lane q mod 4) added pairwise at the end:
 * the order depends on HW alone. The lanes are four named scalars: written as an array indexed
 * in an inner loop, GCC kept them in memory and every step waited on a store-to-load round trip
 * (a third of the BN backward's samples). */
#define PLANE_LANES(step)                                                                         \
    do {                                                                                          \
        int64_t q = 0;                                                                            \
        for (; q + 4 <= HW; q += 4) {                                                             \
            step(0, q);                                                                           \
            step(1, q + 1);                                                                       \
            step(2, q + 2);                                                                       \
            step(3, q + 3);                                                                       \
        }                                                                                         \
        if (q < HW)                                                                               \
            step(0, q);                                                                           \
        if (q + 1 < HW)                                                                           \
            step(1, q + 1);                                                                       \
        if (q + 2 < HW)                                                                           \
            step(2, q + 2);                                                                       \
    } while (0)

/* plane_sum: sum over the plane of p; plane_sum_d: the same over HW per-position sums */
#define DEFINE_PLANE_SUM(name, T)                                                                  \
    static inline double name(const T *p, int64_t HW) {                                            \
        double l0 = 0, l1 = 0, l2 = 0, l3 = 0;                                                     \
        PLANE_LANES(PLANE_SUM_STEP);                                                               \
        return (l0 + l1) + (l2 + l3);                                                              \
    }
#define PLANE_SUM_STEP(r, i) l##r += p[i]
DEFINE_PLANE_SUM(plane_sum, float)
DEFINE_PLANE_SUM(plane_sum_d, double)
#undef PLANE_SUM_STEP
#undef DEFINE_PLANE_SUM

/* a[q] = v[q / HW] for q < cb * HW: per-channel constants spread over a run of small planes */
static inline void expand_f(float *restrict a, const float *restrict v, int64_t cb, int64_t HW) {
    for (int64_t k = 0; k < cb; k++)
        for (int64_t q = 0; q < HW; q++)
            a[k * HW + q] = v[k];
}

/* sums over the plane of p and of p^2, added to *sum and *sq */
static inline void plane_sum_sq(const float *p, int64_t HW, double *sum, double *sq) {
    double l0 = 0, l1 = 0, l2 = 0, l3 = 0, m0 = 0, m1 = 0, m2 = 0, m3 = 0;
#define STEP(r, i)                                                                                 \
    do {                                                                                           \
        const double v = p[i];                                                                     \
        l##r += v;                                                                                 \
        m##r += v * v;                                                                             \
    } while (0)
    PLANE_LANES(STEP);
#undef STEP
    *sum += (l0 + l1) + (l2 + l3);
    *sq += (m0 + m1) + (m2 + m3);
}

/* sum over the plane of g * (x - m) */
static inline double plane_dot_centered(const float *g, const float *x, int64_t HW, float m) {
    double l0 = 0, l1 = 0, l2 = 0, l3 = 0;
#define STEP(r, i) l##r += (double)g[i] * (x[i] - m)
    PLANE_LANES(STEP);
#undef STEP
    return (l0 + l1) + (l2 + l3);
}

/* ---- batch statistics ----------------------------------------------------------------------
 * One pass, in double: per-channel sums of x and of x^2, var = E[x^2] - mean^2. (Two passes, sums
 * then squared deviations, cost a second read of every branch input; in double the one-pass form
 * loses about 1e-16 * mean^2 / var of the variance, which matters only for channels whose mean is
 * some 1e5 standard deviations away from zero.) With a sync hook the sums and the count are summed
 * over processes, so every process gets the global batch's statistics. */
typedef struct {
    const float *x;
    int64_t N, C, HW, cb;
    double *sum, *sq; /* (C) each, in the caller's scratch */
} stats_job;

/* Sums of x and x^2 over channels [k0, k0 + cb) of x (N, C, HW) into sum[0..cb), sq[0..cb).
 * Small planes (HW <= STATS_SMALL_HW, cb * HW <= SMALL_RUN) are summed per position over the
 * images, then per channel (see SMALL_HW); either way a channel's sums depend on it alone. */
static void channel_sums(const float *x, int64_t N, int64_t C, int64_t HW, int64_t k0, int64_t cb,
                         double *sum, double *sq) {
    if (HW <= STATS_SMALL_HW) {
        const int64_t L = cb * HW;
        double s[SMALL_RUN], q[SMALL_RUN];
        for (int64_t e = 0; e < L; e++)
            s[e] = q[e] = 0.0;
        for (int64_t i = 0; i < N; i++) {
            const float *restrict p = x + (i * C + k0) * HW;
            for (int64_t e = 0; e < L; e++) {
                const double v = p[e];
                s[e] += v;
                q[e] += v * v;
            }
        }
        for (int64_t k = 0; k < cb; k++) {
            sum[k] = plane_sum_d(s + k * HW, HW);
            sq[k] = plane_sum_d(q + k * HW, HW);
        }
        return;
    }
    for (int64_t k = 0; k < cb; k++)
        sum[k] = sq[k] = 0.0;
    for (int64_t i = 0; i < N; i++) {
        const float *p = x + (i * C + k0) * HW;
        for (int64_t k = 0; k < cb; k++)
            plane_sum_sq(p + k * HW, HW, &sum[k], &sq[k]);
    }
}

static void sum_pass(void *ctx, int64_t item, int tid) {
    const stats_job *j = ctx;
    const int64_t k0 = item * j->cb, cb = k0 + j->cb <= j->C ? j->cb : j->C - k0;
    channel_sums(j->x, j->N, j->C, j->HW, k0, cb, j->sum + k0, j->sq + k0);
}

/* Channel c's mean and istd from its sums over n values, and its running statistics when
 * running_mean is not NULL. */
static void stats_finish(float *mean, float *istd, float *running_mean, float *running_var,
                         int64_t c, double sum, double sq, double n, float momentum, float eps) {
    const double m = sum / n;
    double ss = sq - sum * m; /* sum of squared deviations */
    ss = ss > 0.0 ? ss : 0.0;
    const double var = ss / n; /* biased: what normalisation uses */
    mean[c] = (float)m;
    istd[c] = (float)(1.0 / sqrt(var + eps));
    if (running_mean) {
        /* unbiased for the running estimate, as PyTorch (SyncBatchNorm: over the global batch) */
        double unbiased = n > 1 ? ss / (n - 1) : var;
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
        running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
    }
}

void rvg__bn_stats(float *mean, float *istd, float *running_mean, float *running_var,
                   const float *x, int64_t N, int64_t C, int64_t HW, float momentum, float eps,
                   double *buf, const rvg__bn_sync *sync) {
    int nt = threads_for(N * C * HW);
    int64_t cb = chan_block(C, HW, N * HW, nt);
    stats_job j = {x, N, C, HW, cb, buf, buf + C};
    int64_t items = (C + cb - 1) / cb;
    rvg__par_run(items, nt, sum_pass, &j);
    double n = (double)(N * HW);
    if (sync) {
        buf[2 * C] = n;
        sync->allreduce(buf, 2 * C + 1, sync->ctx);
        n = buf[2 * C];
    }
    for (int64_t c = 0; c < C; c++)
        stats_finish(mean, istd, running_mean, running_var, c, j.sum[c], j.sq[c], n, momentum, eps);
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
    int64_t N, K, HW;
    int64_t per; /* channels per item (small planes), else planes per item */
} sum_job;

/* d = b + sum_j a[j] * x_j over n values, with nt a constant in each loop so it vectorizes. a and
 * b are per-value arrays (astride 1) or one constant each (astride 0); inlined, so that each
 * caller's loop is compiled for its stride. */
static RVG__ALWAYS_INLINE void bn_sum_run(float *restrict d, const float *const in[3],
                                          const float *const a[3], const float *b,
                                          int64_t astride, int nt, int64_t n) {
    const float *restrict x0 = in[0], *restrict x1 = in[1], *restrict x2 = in[2];
    const float *restrict a0 = a[0], *restrict a1 = a[1], *restrict a2 = a[2];
    if (nt == 1)
        for (int64_t p = 0; p < n; p++)
            d[p] = b[p * astride] + a0[p * astride] * x0[p];
    else if (nt == 2)
        for (int64_t p = 0; p < n; p++) {
            float v = b[p * astride] + a0[p * astride] * x0[p];
            d[p] = v + a1[p * astride] * x1[p];
        }
    else
        for (int64_t p = 0; p < n; p++) {
            float v = b[p * astride] + a0[p * astride] * x0[p];
            v += a1[p * astride] * x1[p];
            d[p] = v + a2[p * astride] * x2[p];
        }
}

static void relu_run(float *o, const float *d, int64_t n) { /* o may be d */
    for (int64_t p = 0; p < n; p++)
        o[p] = d[p] > 0 ? d[p] : 0;
}

/* channel k's scale a_j = gamma_j * istd_j of every branch, and shift b = sum_j (beta_j - mean_j *
 * a_j) */
static inline float sum_coefs(const sum_job *j, int64_t k, float a[3]) {
    float b = 0;
    for (int q = 0; q < j->nt; q++) {
        a[q] = j->t[q].gamma[k] * j->t[q].istd[k];
        b += j->t[q].beta[k] - j->t[q].mean[k] * a[q];
    }
    return b;
}

/* s and/or out of one (image, channel) plane, plane = image * K + channel */
static void sum_plane(const sum_job *j, int64_t plane) {
    const int64_t HW = j->HW;
    float a[3] = {0, 0, 0};
    const float b = sum_coefs(j, plane % j->K, a);
    const float *in[3] = {NULL, NULL, NULL}, *ap[3] = {&a[0], &a[1], &a[2]};
    for (int q = 0; q < j->nt; q++)
        in[q] = j->t[q].x + plane * HW;
    float *so = j->s ? j->s + plane * HW : NULL, *o = j->out ? j->out + plane * HW : NULL;
    float *d = so ? so : o;
    bn_sum_run(d, in, ap, &b, 0, j->nt, HW);
    if (o)
        relu_run(o, d, HW);
}

/* item = a run of j->per consecutive (image, channel) planes */
static void sum_item_planes(void *ctx, int64_t item, int tid) {
    const sum_job *j = ctx;
    int64_t p0 = item * j->per, p1 = p0 + j->per;
    if (p1 > j->N * j->K)
        p1 = j->N * j->K;
    for (int64_t plane = p0; plane < p1; plane++)
        sum_plane(j, plane);
}

/* Small planes (see SMALL_HW): item = a block of j->per channels, image by image, each image's
 * cb*HW floats as one loop with the constants spread over the run. (Made plane by plane, the
 * constants cost more than the sum at the 1x1 planes of the last stage.) */
static void sum_item_small(void *ctx, int64_t item, int tid) {
    const sum_job *j = ctx;
    const int64_t HW = j->HW, K = j->K, k0 = item * j->per, cb = k0 + j->per <= K ? j->per : K - k0;
    const int64_t L = cb * HW;
    float a[3][MAX_CB], b[MAX_CB], ae[3][SMALL_RUN], be[SMALL_RUN];
    for (int64_t k = 0; k < cb; k++) {
        float ak[3] = {0, 0, 0};
        b[k] = sum_coefs(j, k0 + k, ak);
        for (int r = 0; r < j->nt; r++)
            a[r][k] = ak[r];
    }
    expand_f(be, b, cb, HW);
    for (int r = 0; r < j->nt; r++)
        expand_f(ae[r], a[r], cb, HW);
    const float *ap[3] = {ae[0], ae[1], ae[2]};
    for (int64_t i = 0; i < j->N; i++) {
        const int64_t off = (i * K + k0) * HW;
        float *so = j->s ? j->s + off : NULL, *o = j->out ? j->out + off : NULL;
        float *d = so ? so : o;
        const float *in[3] = {NULL, NULL, NULL};
        for (int q = 0; q < j->nt; q++)
            in[q] = j->t[q].x + off;
        bn_sum_run(d, in, ap, be, 1, j->nt, L);
        if (o)
            relu_run(o, d, L);
    }
}

void rvg__bn_sum_relu_forward(float *s, float *out, const rvg__bn_term *t, int nt, int64_t N,
                              int64_t K, int64_t HW) {
    int threads = threads_for(N * K * HW);
    sum_job j = {s, out, t, nt, N, K, HW, 0};
    if (HW <= SMALL_HW) {
        j.per = chan_block(K, HW, N * HW, threads);
        rvg__par_run((K + j.per - 1) / j.per, threads, sum_item_small, &j);
        return;
    }
    int64_t per = (BLOCK_ELEMS + HW - 1) / HW;
    const int64_t most = N * K / ((int64_t)threads * MIN_ITEMS_PER_THREAD);
    if (per > most)
        per = most;
    j.per = per < 1 ? 1 : per;
    rvg__par_run((N * K + j.per - 1) / j.per, threads, sum_item_planes, &j);
}

/* ---- training forward in one phase -------------------------------------------------------
 * Without a sync hook a channel's statistics need only that channel, so an item of channels
 * computes the statistics of every branch and then, while its inputs are still in cache, its
 * channels of s / out. The same per-channel sums and the same elementwise pass as rvg__bn_stats
 * followed by rvg__bn_sum_relu_forward (the same bits: tests/test_block_fused.c), in one parallel
 * phase instead of nt + 1, reading each branch input from memory once. */
typedef struct {
    sum_job sum; /* per = channels per item; t's mean/istd are mean/istd below */
    float *const *mean, *const *istd, *const *rmean, *const *rvar;
    float momentum, eps;
} fwd_job;

static void fwd_item(void *ctx, int64_t item, int tid) {
    const fwd_job *f = ctx;
    const sum_job *j = &f->sum;
    const int64_t N = j->N, K = j->K, HW = j->HW, k0 = item * j->per;
    const int64_t cb = k0 + j->per <= K ? j->per : K - k0;
    for (int q = 0; q < j->nt; q++) {
        double sum[MAX_CB], sq[MAX_CB];
        channel_sums(j->t[q].x, N, K, HW, k0, cb, sum, sq);
        for (int64_t k = 0; k < cb; k++)
            stats_finish(f->mean[q], f->istd[q], f->rmean[q], f->rvar[q], k0 + k, sum[k], sq[k],
                         (double)(N * HW), f->momentum, f->eps);
    }
    if (HW <= SMALL_HW) {
        sum_item_small((void *)j, item, tid);
        return;
    }
    for (int64_t i = 0; i < N; i++) /* the item's planes of every image */
        for (int64_t k = k0; k < k0 + cb; k++)
            sum_plane(j, i * K + k);
}

void rvg__bn_train_sum_relu_forward(float *s, float *out, const rvg__bn_term *t,
                                    float *const mean[3], float *const istd[3],
                                    float *const running_mean[3], float *const running_var[3],
                                    int nt, int64_t N, int64_t K, int64_t HW, float momentum,
                                    float eps) {
    int threads = threads_for(N * K * HW);
    fwd_job f = {{s, out, t, nt, N, K, HW, chan_block(K, HW, N * HW, threads)},
                 mean,
                 istd,
                 running_mean,
                 running_var,
                 momentum,
                 eps};
    rvg__par_run((K + f.sum.per - 1) / f.sum.per, threads, fwd_item, &f);
}

/* ---- backward ------------------------------------------------------------------------------
 * Pass 1 per channel: sum(ds) and sum(ds * (x - mean_j)) for every branch j into buf (stride
 * nt + 1 per channel), and the local dgamma/dbeta. With a sync hook buf (and the count) is summed
 * over processes; pass 2 then writes every branch's input gradient from the (global) sums. */
typedef struct {
    float *const *dz, *const *dgamma, *const *dbeta;
    const float *ds;
    float *ds_out;           /* not NULL: ds = dout * (out > 0) is first written here (== ds) */
    const float *dout, *out;
    const rvg__bn_term *t;
    int nt;
    int64_t N, K, HW, cb;
    double *buf;
    double n;
} bwd_job;

static void bwd_sums(void *ctx, int64_t item, int tid) {
    const bwd_job *J = ctx;
    const int nt = J->nt;
    const int64_t N = J->N, K = J->K, HW = J->HW, k0 = item * J->cb;
    const int64_t cb = k0 + J->cb <= K ? J->cb : K - k0;
    double sum_ds[MAX_CB] = {0}, sum_dsx[3][MAX_CB] = {{0}};
    const int small = HW <= SMALL_HW; /* sums per position (see SMALL_HW) */
    const int64_t L = cb * HW;
    double acc[4][SMALL_RUN]; /* sum of ds, then of ds * (x_j - mean_j), per position */
    float me[3][SMALL_RUN];   /* mean_j spread over the run */
    if (small)
        for (int j = 0; j <= nt; j++) {
            for (int64_t e = 0; e < L; e++)
                acc[j][e] = 0.0;
            if (j < nt)
                expand_f(me[j], J->t[j].mean + k0, cb, HW);
        }
    for (int64_t i = 0; i < N; i++) {
        const float *g = J->ds + (i * K + k0) * HW;
        if (J->ds_out) { /* the ReLU's backward, while these planes are read anyway */
            const float *restrict dout = J->dout + (i * K + k0) * HW;
            const float *restrict out = J->out + (i * K + k0) * HW;
            float *restrict d = J->ds_out + (i * K + k0) * HW;
            for (int64_t q = 0; q < cb * HW; q++) {
                const float v = dout[q]; /* loaded unconditionally, so the select vectorizes */
                d[q] = out[q] > 0 ? v : 0.0f;
            }
        }
        if (small) {
            const float *restrict gr = g;
            double *restrict a0 = acc[0];
            for (int64_t e = 0; e < L; e++)
                a0[e] += gr[e];
            for (int j = 0; j < nt; j++) {
                const float *restrict x = J->t[j].x + (i * K + k0) * HW, *restrict m = me[j];
                double *restrict aj = acc[1 + j];
                for (int64_t e = 0; e < L; e++)
                    aj[e] += (double)gr[e] * (x[e] - m[e]);
            }
            continue;
        }
        for (int64_t k = 0; k < cb; k++)
            sum_ds[k] += plane_sum(g + k * HW, HW);
        for (int j = 0; j < nt; j++) {
            const float *x = J->t[j].x + (i * K + k0) * HW, *mean = J->t[j].mean + k0;
            for (int64_t k = 0; k < cb; k++)
                sum_dsx[j][k] += plane_dot_centered(g + k * HW, x + k * HW, HW, mean[k]);
        }
    }
    if (small)
        for (int64_t k = 0; k < cb; k++) {
            sum_ds[k] = plane_sum_d(acc[0] + k * HW, HW);
            for (int j = 0; j < nt; j++)
                sum_dsx[j][k] = plane_sum_d(acc[1 + j] + k * HW, HW);
        }
    for (int64_t k = 0; k < cb; k++) {
        double *b = J->buf + (k0 + k) * (nt + 1);
        b[0] = sum_ds[k];
        for (int j = 0; j < nt; j++) {
            b[1 + j] = sum_dsx[j][k];
            /* dgamma = sum(ds * xhat) = istd * sum(ds * (x - mean)); dbeta = sum(ds) */
            if (J->dgamma[j])
                J->dgamma[j][k0 + k] += (float)(J->t[j].istd[k0 + k] * sum_dsx[j][k]);
            if (J->dbeta[j])
                J->dbeta[j][k0 + k] += (float)sum_ds[k];
        }
    }
}

static void bwd_grads(void *ctx, int64_t item, int tid) {
    const bwd_job *J = ctx;
    const int64_t N = J->N, K = J->K, HW = J->HW, k0 = item * J->cb;
    const int64_t cb = k0 + J->cb <= K ? J->cb : K - k0;
    for (int j = 0; j < J->nt; j++) {
        if (!J->dz[j])
            continue;
        /* dz = gamma*istd * (ds - mean(ds) - xhat * mean(ds * xhat)), with
         * xhat * mean(ds * xhat) = (x - mean) * istd^2 * sum(ds * (x - mean)) / n */
        float coef[MAX_CB], proj[MAX_CB], mean_ds[MAX_CB];
        for (int64_t k = 0; k < cb; k++) {
            const double *b = J->buf + (k0 + k) * (J->nt + 1);
            double is = J->t[j].istd[k0 + k];
            mean_ds[k] = (float)(b[0] / J->n);
            coef[k] = (float)(J->t[j].gamma[k0 + k] * is);
            proj[k] = (float)(is * is * b[1 + j] / J->n);
        }
        const float *mean = J->t[j].mean + k0;
        if (HW <= SMALL_HW) { /* one loop over the item's run per image (see SMALL_HW) */
            const int64_t L = cb * HW;
            float ce[SMALL_RUN], mde[SMALL_RUN], me[SMALL_RUN], pre[SMALL_RUN];
            expand_f(ce, coef, cb, HW), expand_f(mde, mean_ds, cb, HW);
            expand_f(me, mean, cb, HW), expand_f(pre, proj, cb, HW);
            for (int64_t i = 0; i < N; i++) {
                const float *restrict g = J->ds + (i * K + k0) * HW;
                const float *restrict x = J->t[j].x + (i * K + k0) * HW;
                float *restrict d = J->dz[j] + (i * K + k0) * HW;
                for (int64_t e = 0; e < L; e++)
                    d[e] = ce[e] * (g[e] - mde[e] - (x[e] - me[e]) * pre[e]);
            }
            continue;
        }
        for (int64_t i = 0; i < N; i++) {
            const float *g = J->ds + (i * K + k0) * HW, *x = J->t[j].x + (i * K + k0) * HW;
            float *d = J->dz[j] + (i * K + k0) * HW;
            for (int64_t k = 0; k < cb; k++) {
                const float c = coef[k], md = mean_ds[k], m = mean[k], pr = proj[k];
                const float *restrict gk = g + k * HW, *restrict xk = x + k * HW;
                float *restrict dk = d + k * HW;
                for (int64_t p = 0; p < HW; p++)
                    dk[p] = c * (gk[p] - md - (xk[p] - m) * pr);
            }
        }
    }
}

/* An item's sums, then its gradients. A channel's gradients need only that channel's sums, so
 * without a sync hook (whose sums are global) each item does both passes back to back and the
 * second reads ds and the branch inputs from cache instead of memory: the same bits, one parallel
 * phase instead of two. */
static void bwd_item(void *ctx, int64_t item, int tid) {
    bwd_sums(ctx, item, tid);
    bwd_grads(ctx, item, tid);
}

/* Channels per backward item. chan_block's budget of BLOCK_ELEMS floats per item gives one
 * channel per item at the 16x16 and 8x8 planes of a 32x32 network at batch 128, so every image's
 * step read a run of one plane (1 KB at 16x16) from each of five arrays 48 KB apart, and the
 * hardware prefetcher, which stops at 4 KB pages, left the pass waiting on L3: 21 GB/s where the
 * forward's passes over the same arrays reach 40-57. Items of several channels (runs of ~2048
 * floats, still MIN_ITEMS_PER_THREAD items per thread) made it 1.4x faster (`bench_bn`, 2
 * alternating rounds on the 2-core Xeon: stem backward 3.19-3.21 -> 2.19-2.38 ms, stage 1
 * 1.25-1.37 -> 0.83-0.88). Small planes (SMALL_HW) gained nothing from longer runs and keep
 * chan_block's. Sums depend on the channel alone, so the bits do not change. */
static int64_t bwd_chan_block(int64_t K, int64_t HW, int64_t per_chan, int nt) {
    int64_t cb = chan_block(K, HW, per_chan, nt);
    if (HW <= SMALL_HW)
        return cb;
    int64_t want = (2048 + HW - 1) / HW, most = K / ((int64_t)nt * MIN_ITEMS_PER_THREAD);
    if (want > most)
        want = most;
    if (want > MAX_CB)
        want = MAX_CB;
    return want > cb ? want : cb;
}

static void bn_backward(float *const dz[3], float *const dgamma[3], float *const dbeta[3],
                        const float *ds, float *ds_out, const float *dout, const float *out,
                        const rvg__bn_term *t, int nt, int64_t N, int64_t K, int64_t HW,
                        double *buf, const rvg__bn_sync *sync) {
    int threads = threads_for(N * K * HW);
    int64_t cb = bwd_chan_block(K, HW, N * HW, threads);
    int64_t items = (K + cb - 1) / cb;
    bwd_job j = {dz, dgamma, dbeta, ds, ds_out, dout, out, t, nt, N, K, HW, cb, buf,
                 (double)(N * HW)};
    if (!sync) { /* both passes per item, while its channels are still in cache */
        rvg__par_run(items, threads, bwd_item, &j);
        return;
    }
    rvg__par_run(items, threads, bwd_sums, &j);
    buf[K * (nt + 1)] = j.n;
    sync->allreduce(buf, K * (nt + 1) + 1, sync->ctx);
    j.n = buf[K * (nt + 1)];
    rvg__par_run(items, threads, bwd_grads, &j);
}

void rvg__bn_sum_backward(float *const dz[3], float *const dgamma[3], float *const dbeta[3],
                          const float *ds, const rvg__bn_term *t, int nt, int64_t N, int64_t K,
                          int64_t HW, double *buf, const rvg__bn_sync *sync) {
    bn_backward(dz, dgamma, dbeta, ds, NULL, NULL, NULL, t, nt, N, K, HW, buf, sync);
}

void rvg__bn_sum_relu_backward(float *const dz[3], float *const dgamma[3],
                               float *const dbeta[3], float *ds, const float *dout,
                               const float *out, const rvg__bn_term *t, int nt, int64_t N,
                               int64_t K, int64_t HW, double *buf, const rvg__bn_sync *sync) {
    bn_backward(dz, dgamma, dbeta, ds, ds, dout, out, t, nt, N, K, HW, buf, sync);
}
