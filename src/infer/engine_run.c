/* engine_run.c - the deploy-form inference engine's forward pass: the input packed into padded
 * pack8, the layers one after the other (image by image for the leading segment at batch > 1),
 * squeeze-excitation, the global average pool and the classifier, and the per-layer profile.
 * Each phase is a task function over a range of units, run by rvg__pool_for.
 *
 * Not here: the layers' own work (engine_direct.c, engine_wino.c), the engine's construction
 * (engine.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine_impl.h"

/* Zeroes everything of output block u (of N*KB8) outside the (P, Q) interior at (1, 1). */
void rvg__zero_border(float *y, int64_t u, int64_t P, int64_t Q, int64_t Hp, int64_t Wp) {
    float *b = y + u * Hp * Wp * 8;
    memset(b, 0, sizeof(float) * (size_t)(Wp * 8));
    for (int64_t r = 1; r <= P; r++) {
        memset(b + r * Wp * 8, 0, sizeof(float) * 8);
        memset(b + (r * Wp + Q + 1) * 8, 0, sizeof(float) * (size_t)((Wp - Q - 1) * 8));
    }
    memset(b + (P + 1) * Wp * 8, 0, sizeof(float) * (size_t)((Hp - P - 1) * Wp * 8));
}

/* Units [0, nz) of a layer's first phase zero the output border (disjoint from what the phase
 * computes); returns the first unit index that is real work. */
int64_t rvg__zero_units(const task *t, int64_t b, int64_t e) {
    const layer_plan *p = t->p;
    for (; b < e && b < t->nz; b++)
        rvg__zero_border(t->y, b, p->P, p->Q, p->Hpo, p->Wpo);
    return b;
}

enum { PACK_ROWS = 16 }; /* padded rows per input-packing unit */

static void task_pack_input(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const rvg_engine *en = t->e;
    const layer_plan *f = &en->L[0];
    int64_t nu = (f->Hp + PACK_ROWS - 1) / PACK_ROWS; /* units per image */
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / nu, r0 = (u % nu) * PACK_ROWS;
        int64_t r1 = r0 + PACK_ROWS < f->Hp ? r0 + PACK_ROWS : f->Hp;
        en->kern->pack_input(t->y + n * f->CB * f->Hp * f->Wp * 8,
                             t->x + n * en->in_ch * en->H * en->W, en->in_ch, en->H, en->W, f->Hp,
                             f->Wp, r0, r1);
    }
}

static int64_t pack_units(const rvg_engine *e, int64_t N) {
    return N * ((e->L[0].Hp + PACK_ROWS - 1) / PACK_ROWS);
}

/* Mean over the (P, Q) interior of 8-channel blocks u of (N*KB8): out[n*Kp + kb*8 + l]. */
static void block_means(float *out, int64_t Kp, const float *y, int64_t u0, int64_t u1,
                        int64_t KB8, int64_t P, int64_t Q, int64_t Hp, int64_t Wp) {
    for (int64_t u = u0; u < u1; u++) {
        const float *b = y + u * Hp * Wp * 8;
        float acc[8] = {0};
        for (int64_t r = 1; r <= P; r++)
            for (int64_t q = 1; q <= Q; q++)
                for (int l = 0; l < 8; l++)
                    acc[l] += b[(r * Wp + q) * 8 + l];
        int64_t n = u / KB8, kb = u % KB8;
        for (int l = 0; l < 8; l++)
            out[n * Kp + kb * 8 + l] = acc[l] / (float)(P * Q);
    }
}

static void task_se_mean(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    block_means(t->e->se_m, p->KB8 * 8, t->y, b, e, p->KB8, p->P, p->Q, p->Hpo, p->Wpo);
}

/* The SE gates of one image (infer.h): m (K) holds the channel means and gets the gates; h (Hd)
 * is scratch. The AMX engine (engine_amx.c) uses it too. */
void rvg__se_gates(float *m, float *h, const float *dw, const float *db, const float *uw,
                   const float *ub, int64_t K, int64_t Hd) {
    for (int64_t j = 0; j < Hd; j++) {
        float a = db[j];
        for (int64_t c = 0; c < K; c++)
            a += dw[j * K + c] * m[c];
        h[j] = a > 0.f ? a : 0.f;
    }
    for (int64_t c = 0; c < K; c++) {
        float a = ub[c];
        for (int64_t j = 0; j < Hd; j++)
            a += uw[c * Hd + j] * h[j];
        m[c] = 1.f / (1.f + expf(-a));
    }
}

/* SE gate of image n; overwrites the means with the gates. */
static void task_se_gate(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    int64_t Kp = p->KB8 * 8;
    for (int64_t n = b; n < e; n++)
        rvg__se_gates(t->e->se_m + n * Kp, t->e->se_h + n * p->se_hidden, p->se_dw, p->se_db,
                      p->se_uw, p->se_ub, p->K, p->se_hidden);
}

static void task_se_scale(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    int64_t Kp = p->KB8 * 8;
    for (int64_t u = b; u < e; u++) {
        float *blk = t->y + u * p->Hpo * p->Wpo * 8;
        const float *g = t->e->se_m + (u / p->KB8) * Kp + (u % p->KB8) * 8;
        for (int64_t r = 1; r <= p->P; r++)
            for (int64_t q = 1; q <= p->Q; q++)
                for (int l = 0; l < 8; l++) {
                    float v = blk[(r * p->Wpo + q) * 8 + l] * g[l];
                    blk[(r * p->Wpo + q) * 8 + l] = v > 0.f ? v : 0.f;
                }
    }
}

static void task_pool(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    block_means(t->e->pooled, p->KB8 * 8, t->x, b, e, p->KB8, p->P, p->Q, p->Hpo, p->Wpo);
}

enum { FC_CH = 32 }; /* classes per classifier unit */

static void task_fc(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const rvg_engine *en = t->e;
    int64_t nch = (en->classes + FC_CH - 1) / FC_CH, Kp = t->p->KB8 * 8;
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / nch, j0 = (u % nch) * FC_CH;
        int64_t nj = en->classes - j0 < FC_CH ? en->classes - j0 : FC_CH;
        en->kern->fc(t->aux + n * en->classes + j0, en->pooled + n * Kp,
                     en->fc_w + j0 * en->k_last, en->fc_b + j0, nj, en->k_last);
    }
}

static void task_feat(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / p->K, k = u % p->K;
        const float *blk = t->x + ((n * p->KB8 + k / 8) * p->Hpo * p->Wpo) * 8 + k % 8;
        for (int64_t r = 0; r < p->P; r++)
            for (int64_t q = 0; q < p->Q; q++)
                t->aux[(u * p->P + r) * p->Q + q] = blk[((r + 1) * p->Wpo + q + 1) * 8];
    }
}
static void run_layer(task *t) {
    const rvg_engine *e = t->e;
    double t0 = e->prof ? now_ms() : 0;
    if (t->p->unrolled && t->N >= UNROLL_MIN_BATCH)
        rvg__run_unrolled(t);
    else if (t->p->algo == RVG_INFER_ALGO_DIRECT)
        rvg__run_direct(t);
    else
        rvg__run_wino(t);
    if (t->p->se_hidden > 0) {
        rvg__pool_for(e->pool, t->N * t->p->KB8, 1, task_se_mean, t);
        rvg__pool_for(e->pool, t->N, 1, task_se_gate, t);
        rvg__pool_for(e->pool, t->N * t->p->KB8, 1, task_se_scale, t);
    }
    if (e->prof)
        e->prof[4 * (t->p - e->L)] += now_ms() - t0;
}

/* The whole forward pass. Exactly one of logits (N, classes) and feat (N, K_last, P, Q) is set. */
static rvg_status run_net(rvg_engine *e, float *logits, float *feat, const float *x, int64_t N) {
    if (!e || !(logits || feat) || !x)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg_engine_run: NULL argument");
    if (N < 1 || N > e->max_batch)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "rvg_engine_run: batch N=%lld outside 1..max_batch=%lld", (long long)N,
                         (long long)e->max_batch);
    if (e->amx) /* the kernel sets AMX and AMX_TWIN run the whole network (engine_amx_run.c) */
        return rvg__amx_run(e, logits, feat, x, N);
    /* Early layers have big activations and small weights, late layers the reverse. Running the
     * whole batch layer by layer pushes the early activations (and Winograd scratch) through
     * DRAM, which on the 2-core machine costs as much as the arithmetic; so at N > 1 the first
     * `seg` layers run one image at a time through small ping-pong buffers that stay in cache,
     * each image's result landing in its slot of the batch buffer, and the remaining layers
     * (weight-heavy, where batching amortises the weight traffic) run on the whole batch. */
    int64_t seg = N > 1 ? e->seg : 0;
    task t = {.e = e, .x = x, .y = e->act[0], .N = N};
    for (int64_t n = 0; n < (seg ? N : 0); n++) {
        const layer_plan *l = &e->L[seg - 1];
        t.N = 1, t.x = x + n * e->in_ch * e->H * e->W, t.y = e->img[0];
        rvg__pool_for(e->pool, pack_units(e, 1), 1, task_pack_input, &t);
        for (int64_t i = 0; i < seg; i++) {
            t.p = &e->L[i], t.x = e->img[i & 1];
            t.y = i + 1 < seg ? e->img[(i + 1) & 1]
                              : e->act[seg & 1] + n * l->KB8 * l->Hpo * l->Wpo * 8;
            t.seq = ++e->layer_runs;
            run_layer(&t);
        }
    }
    t.N = N;
    if (!seg) {
        t.x = x, t.y = e->act[0];
        rvg__pool_for(e->pool, pack_units(e, N), 1, task_pack_input, &t);
    }
    for (int64_t i = seg; i < e->nl; i++) {
        t.p = &e->L[i], t.x = e->act[i & 1], t.y = e->act[(i + 1) & 1];
        t.seq = ++e->layer_runs;
        run_layer(&t);
    }
    e->prof_runs += e->prof != NULL;
    t.x = e->act[e->nl & 1]; /* t.p is the last layer */
    if (feat) {
        t.aux = feat;
        rvg__pool_for(e->pool, N * t.p->K, 8, task_feat, &t);
    } else {
        t.aux = logits;
        rvg__pool_for(e->pool, N * t.p->KB8, 4, task_pool, &t);
        rvg__pool_for(e->pool, N * ((e->classes + FC_CH - 1) / FC_CH), 1, task_fc, &t);
    }
    return RVG_OK;
}

rvg_status rvg_engine_run(rvg_engine *e, float *logits, const float *x, int64_t N) {
    if (!logits)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg_engine_run: logits is NULL");
    return run_net(e, logits, NULL, x, N);
}

rvg_status rvg_engine_profile(rvg_engine *e, int on) {
    if (!e)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg_engine_profile: NULL engine");
    free(e->prof);
    e->prof = NULL, e->prof_runs = 0;
    if (on && !(e->prof = calloc((size_t)(4 * e->nl), sizeof(double))))
        return rvg_error(RVG_STATUS_NO_MEMORY, "rvg_engine_profile: out of memory");
    return RVG_OK;
}

int64_t rvg_engine_profile_read(const rvg_engine *e, double *ms) {
    if (!e || !ms)
        return 0;
    for (int64_t i = 0; i < 4 * e->nl; i++)
        ms[i] = e->prof && e->prof_runs ? e->prof[i] / (double)e->prof_runs : 0;
    return e->prof ? e->prof_runs : 0;
}

rvg_status rvg__engine_features(rvg_engine *e, float *y, const float *x, int64_t N) {
    if (!y)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg__engine_features: y is NULL");
    return run_net(e, NULL, y, x, N);
}
