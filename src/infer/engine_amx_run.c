/* engine_amx_run.c - the AMX engine's forward pass (engine_amx_impl.h has its design): the input
 * packed into padded NHWC hi/lo, each layer as im2col (COL layers) and GEMM units on the tiles,
 * squeeze-excitation, the global average pool and the fp32 classifier. Each phase is a task
 * function over a range of units, run by rvg__pool_for on the engine's threads.
 *
 * Not here: the plan and the packed weights (engine_amx.c), the kernels (kern_amx.c).
 */
#include <stdlib.h>
#include <string.h>

#include "engine_amx_impl.h"

typedef struct {
    const rvg_engine *e;
    const amx_layer *l;
    const float *x; /* the NCHW network input (task_pack) */
    const uint16_t *ih, *il;
    uint16_t *oh, *ol;
    float *of;
    int64_t N, mu; /* batch; M blocks of 16 output pixels */
    int64_t mb;    /* M blocks per GEMM unit */
    int mmajor;    /* units ordered by M run, then output-tile pair (else the pair first) */
    int64_t nz;    /* leading units that zero the output frames (one per image) */
} amx_task;

/* Zeroes the border ring of output image n (the next layer's padding). */
static void zero_frame(const amx_task *t, int64_t n) {
    const amx_layer *l = t->l;
    int64_t Wpo = l->Q + 2, Cpo = l->Cpo;
    uint16_t *bufs[2] = {t->oh + n * l->imgo, t->ol + n * l->imgo};
    for (int b = 0; b < 2; b++) {
        uint16_t *o = bufs[b];
        memset(o, 0, 2 * (size_t)(Wpo * Cpo));
        memset(o + (l->P + 1) * Wpo * Cpo, 0, 2 * (size_t)(Wpo * Cpo));
        for (int64_t y = 1; y <= l->P; y++) {
            memset(o + y * Wpo * Cpo, 0, 2 * (size_t)Cpo);
            memset(o + (y * Wpo + l->Q + 1) * Cpo, 0, 2 * (size_t)Cpo);
        }
    }
}

/* Output element offset of pixel (n, y, x) of layer l: in the next layer's padded input, or
 * (dense: the last layer, an SE layer's pre-activation) in fp32 (N, P*Q, Kt*16). */
static int64_t out_off(const amx_layer *l, int64_t n, int64_t y, int64_t x, int dense) {
    if (dense)
        return (n * l->P * l->Q + y * l->Q + x) * l->Kt * 16;
    return n * l->imgo + ((y + 1) * (l->Q + 2) + x + 1) * l->Cpo;
}

/* A block m of the layer's M side (16 output pixels): its A (hi, lo) and where its rows go. */
static void m_block(const amx_task *t, int64_t m, const uint16_t **ah, const uint16_t **al,
                    int64_t *off) {
    const amx_layer *l = t->l;
    const int dense = t->of != NULL;
    if (l->kind == AMX_FLAT) { /* m = (n, tile): pixels v = 16 tile + i of the padded plane */
        int64_t n = m / l->mt, v0 = m % l->mt * 16;
        *ah = t->ih + n * l->img + v0 * l->Cs, *al = t->il + n * l->img + v0 * l->Cs;
        for (int i = 0; i < 16; i++) {
            int64_t y = (v0 + i) / l->Wp, x = (v0 + i) % l->Wp;
            off[i] = y < l->P && x < l->Q ? out_off(l, n, y, x, dense) : -1;
        }
    } else if (l->kind == AMX_ROW) { /* m = (n, y, tile) */
        int64_t xt = m % l->mt, y = m / l->mt % l->P, n = m / l->mt / l->P;
        int64_t x0 = xt * l->R < l->Q - l->R ? xt * l->R : l->Q - l->R;
        int64_t at = n * l->img + (2 * y * l->Wp + 2 * x0) * l->Cs;
        *ah = t->ih + at, *al = t->il + at;
        for (int i = 0; i < 16; i++)
            off[i] = i < l->R ? out_off(l, n, y, x0 + i, dense) : -1;
    } else { /* COL: m = tile of the batch's output pixels */
        int64_t PQ = l->P * l->Q;
        *ah = t->ih + m * 16 * l->kp, *al = t->il + m * 16 * l->kp;
        for (int i = 0; i < 16; i++) {
            int64_t v = m * 16 + i, n = v / PQ, yx = v % PQ;
            off[i] = n < t->N ? out_off(l, n, yx / l->Q, yx % l->Q, dense) : -1;
        }
    }
}

/* Units: t->nz frame zeroings, then (output-tile pair jp, run of t->mb M blocks), in the order
 * t->mmajor says. */
static void task_gemm(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const amx_layer *l = t->l;
    const rvg__amx_kernels *k = t->e->amx->k;
    const int dense = t->of != NULL;
    for (; b < e && b < t->nz; b++)
        zero_frame(t, b);
    if (b >= e)
        return;
    k->init();
    _Alignas(64) float c[RVG__AMX_MB * 512];
    int64_t off[RVG__AMX_MB][16];
    const int64_t runs = (t->mu + t->mb - 1) / t->mb, jps = (l->Kt + 1) / 2;
    for (int64_t u = b - t->nz; u < e - t->nz; u++) {
        int64_t jp = t->mmajor ? u % jps : u / runs;
        int64_t m0 = (t->mmajor ? u / jps : u % runs) * t->mb, j0 = 2 * jp;
        rvg__amx_gemm g = {.aoff = l->aoff,
                           .astride = l->astride,
                           .bh = l->bh + j0 * l->ks * 512,
                           .bl = l->bl + j0 * l->ks * 512,
                           .ks = l->ks,
                           .nt = j0 + 1 < l->Kt ? 2 : 1};
        g.nm = (int)(m0 + t->mb < t->mu ? t->mb : t->mu - m0);
        for (int m = 0; m < g.nm; m++)
            m_block(t, m0 + m, &g.ah[m], &g.al[m], off[m]);
        k->gemm(&g, c);
        for (int m = 0; m < g.nm; m++) {
            rvg__amx_out o = {.bias = l->bias + j0 * 16,
                              .off = off[m],
                              .oh = dense ? NULL : t->oh + j0 * 16,
                              .ol = dense ? NULL : t->ol + j0 * 16,
                              .of = dense ? t->of + j0 * 16 : NULL,
                              .relu = l->se_hidden == 0};
            k->store(c + m * g.nt * 256, g.nt, &o);
        }
    }
}

enum { COL_PX = 16 }; /* output pixels per im2col unit */

/* COL: for each output pixel of the batch, its three kernel rows' 3 Cs values from the padded
 * NHWC input, each row at a multiple of 32 (the rest of a step keeps zeros or older finite
 * values, whose weights are zero). */
static void task_col(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const amx_layer *l = t->l;
    const rvg__amx_net *net = t->e->amx;
    int64_t PQ = l->P * l->Q, total = t->N * PQ, seg = 3 * l->Cs;
    for (int64_t v = b * COL_PX; v < e * COL_PX && v < total; v++) {
        int64_t n = v / PQ, y = v % PQ / l->Q, x = v % l->Q;
        for (int64_t ky = 0; ky < 3; ky++) {
            int64_t src = n * l->img + ((y * l->stride + ky) * l->Wp + x * l->stride) * l->Cs;
            int64_t dst = v * l->kp + ky * l->spk * 32;
            memcpy(net->ch + dst, t->ih + src, 2 * (size_t)seg);
            memcpy(net->cl + dst, t->il + src, 2 * (size_t)seg);
        }
    }
}

/* The network input NCHW fp32 -> padded NHWC hi/lo, the border and padding channels zero: unit =
 * one padded row of one image. */
static void task_pack(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const amx_layer *l = t->l;
    const rvg_engine *en = t->e;
    const rvg__amx_net *net = en->amx;
    float *row = net->colf + rvg__pool_tid_in(en->pool) * net->colf_floats;
    const int64_t rw = l->Wp * l->Cs, n16 = rw / 16 * 16;
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / l->Hp, yp = u % l->Hp;
        uint16_t *oh = t->oh + n * l->img + yp * rw, *ol = t->ol + n * l->img + yp * rw;
        memset(row, 0, sizeof(float) * (size_t)rw);
        if (yp > 0 && yp <= l->H)
            for (int64_t c = 0; c < l->C; c++) {
                const float *xr = t->x + ((n * l->C + c) * l->H + yp - 1) * l->W;
                for (int64_t x = 0; x < l->W; x++)
                    row[(x + 1) * l->Cs + c] = xr[x];
            }
        net->k->split(row, oh, ol, n16);
        /* the row's last values, fewer than 16: the twin's split takes any count */
        rvg__amx_kernels_ref.split(row + n16, oh + n16, ol + n16, rw - n16);
    }
}

/* Channel means of a dense fp32 map s (N, P*Q, Kt*16) of layer l, per unit (image n, 16
 * channels), into out[n * ostride + k] for k < K: the SE's means and the global average pool. */
static void channel_means(const amx_layer *l, const float *s, int64_t b, int64_t e, float *out,
                          int64_t ostride) {
    const int64_t PQ = l->P * l->Q, Ks = l->Kt * 16;
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / l->Kt, k0 = u % l->Kt * 16, nk = l->K - k0 < 16 ? l->K - k0 : 16;
        float a[16] = {0};
        for (int64_t p = 0; p < PQ; p++)
            for (int64_t k = 0; k < 16; k++)
                a[k] += s[(n * PQ + p) * Ks + k0 + k];
        for (int64_t k = 0; k < nk; k++)
            out[n * ostride + k0 + k] = a[k] / (float)PQ;
    }
}

/* SE, after the GEMMs wrote the pre-activation to t->of: its channel means into net->gate. */
static void task_se_mean(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    channel_means(t->l, t->of, b, e, t->e->amx->gate, t->e->amx->kmax);
}

/* SE: per image, the means m in net->gate become the gates g = sigmoid(up relu(down m + db) +
 * ub). */
static void task_se_gate(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const amx_layer *l = t->l;
    const rvg__amx_net *net = t->e->amx;
    float h[SE_HIDDEN_MAX];
    for (int64_t n = b; n < e; n++)
        rvg__se_gates(net->gate + n * net->kmax, h, l->se_dw, l->se_db, l->se_uw, l->se_ub, l->K,
                      l->se_hidden);
}

/* SE: y = ReLU(s g), per output row (n, y): in place (the last layer) or split into the next
 * layer's padded input (whose frame the GEMM phase zeroed). */
static void task_se_scale(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const amx_layer *l = t->l;
    const rvg__amx_net *net = t->e->amx;
    const int64_t PQ = l->P * l->Q, Ks = l->Kt * 16;
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / l->P, y = u % l->P;
        const float *g = net->gate + n * net->kmax;
        for (int64_t x = 0; x < l->Q; x++) {
            float *s = t->of + (n * PQ + y * l->Q + x) * Ks;
            for (int64_t k = 0; k < l->K; k++) {
                float v = s[k] * g[k];
                s[k] = v > 0.f ? v : 0.f;
            }
            if (t->oh) /* channels K.. of s are 0 (zero weights and bias) */
                net->k->split(s, t->oh + out_off(l, n, y, x, 0), t->ol + out_off(l, n, y, x, 0),
                              Ks);
        }
    }
}

/* The global average pool of the last layer's map (units: image, 16 channels). */
static void task_pool(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    channel_means(t->l, t->e->amx->feat, b, e, t->e->amx->pooled, t->l->K);
}

enum { FC_J = 32 }; /* classes per classifier unit */

static void task_fc(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const rvg_engine *en = t->e;
    int64_t nch = (en->classes + FC_J - 1) / FC_J;
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / nch, j0 = (u % nch) * FC_J;
        int64_t nj = en->classes - j0 < FC_J ? en->classes - j0 : FC_J;
        en->kern->fc(t->of + n * en->classes + j0, en->amx->pooled + n * en->k_last,
                     en->fc_w + j0 * en->k_last, en->fc_b + j0, nj, en->k_last);
    }
}

rvg_status rvg__amx_run(rvg_engine *e, float *logits, float *feat, const float *x, int64_t N) {
    rvg__amx_net *net = e->amx;
    amx_task t = {.e = e, .x = x, .N = N, .l = &net->L[0]};
    t.oh = net->ah[0], t.ol = net->al[0];
    rvg__pool_for(e->pool, N * net->L[0].Hp, 2, task_pack, &t);
    for (int64_t i = 0; i < net->nl; i++) {
        const amx_layer *l = &net->L[i];
        double t0 = e->prof ? now_ms() : 0;
        int last = i + 1 == net->nl;
        t.l = l;
        t.ih = net->ah[i & 1], t.il = net->al[i & 1];
        t.oh = last ? NULL : net->ah[(i + 1) & 1], t.ol = last ? NULL : net->al[(i + 1) & 1];
        t.of = last ? net->feat : NULL;
        t.nz = last ? 0 : N;
        if (l->kind == AMX_COL) {
            rvg__pool_for(e->pool, (N * l->P * l->Q + COL_PX - 1) / COL_PX, 4, task_col, &t);
            t.ih = net->ch, t.il = net->cl;
            t.mu = (N * l->P * l->Q + 15) / 16;
        } else {
            t.mu = l->kind == AMX_FLAT ? N * l->mt : N * l->P * l->mt;
        }
        /* Units: with at least two output-tile pairs per thread, all M blocks of a pair (up to
         * 16) in one unit, so that each thread reads only its pairs' weights (A0's stage 3 at
         * batch 1 on 2 threads: 0.13 -> 0.12 ms per layer); else as many blocks per unit as
         * leave 4 units per thread. */
        int64_t jps = (l->Kt + 1) / 2, want = 4 * e->threads;
        t.mb = jps >= 2 * e->threads ? t.mu : (t.mu * jps + want - 1) / want;
        t.mb = t.mb < 1 ? 1 : t.mb > RVG__AMX_MB ? RVG__AMX_MB : t.mb;
        /* Consecutive units share B (one pair's tiles) or A (a run of M blocks), which then stays
         * in L2; the other is read again per unit. Read again: A (jps times) or B (runs times),
         * whichever is fewer bytes. A0's stage4.0 at batch 8 (2.7 MB of im2col rows, 40 pairs,
         * 8.8 MB of weights, 2 runs): 2.67 -> 1.87 ms. */
        double a_bytes =
            l->kind == AMX_COL ? 4.0 * (double)(t.mu * 16 * l->kp) : 4.0 * (double)(N * l->img);
        double b_bytes = 4.0 * (double)(l->Kt * l->ks * 512);
        int64_t runs = (t.mu + t.mb - 1) / t.mb;
        t.mmajor = b_bytes * (double)runs + a_bytes < a_bytes * (double)jps + b_bytes;
        if (l->se_hidden > 0 && !last)
            t.of = net->sef; /* the pre-activation, gated below */
        rvg__pool_for(e->pool, t.nz + jps * ((t.mu + t.mb - 1) / t.mb), 1, task_gemm, &t);
        if (l->se_hidden > 0) {
            rvg__pool_for(e->pool, N * l->Kt, 1, task_se_mean, &t);
            rvg__pool_for(e->pool, N, 1, task_se_gate, &t);
            rvg__pool_for(e->pool, N * l->P, 1, task_se_scale, &t);
        }
        if (e->prof)
            e->prof[4 * i] += now_ms() - t0;
    }
    e->prof_runs += e->prof != NULL;
    const amx_layer *l = &net->L[net->nl - 1];
    t.l = l;
    if (feat) {
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < l->K; k++)
                for (int64_t p = 0; p < l->P * l->Q; p++)
                    feat[(n * l->K + k) * l->P * l->Q + p] =
                        net->feat[n * l->imgo + p * l->Cpo + k];
        return RVG_OK;
    }
    rvg__pool_for(e->pool, N * l->Kt, 1, task_pool, &t);
    t.of = logits;
    rvg__pool_for(e->pool, N * ((e->classes + FC_J - 1) / FC_J), 1, task_fc, &t);
    return RVG_OK;
}
