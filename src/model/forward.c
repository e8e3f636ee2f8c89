/* forward.c - activation plans and the forward pass of both forms of the network.
 *
 * Train form, per block (SPEC §1):
 *   z3 = conv3x3(x), z1 = conv1x1(x), s = BN3(z3) + BN1(z1) [+ BN0(x)], [s = s * SE(s)], out = ReLU(s)
 * Deploy form: s = conv3x3(x) + b, [SE], out = ReLU(s). Then global average pooling and linear.
 * Everything a backward pass needs (z3, z1, s, out, the BN batch statistics, the SE
 * intermediates) stays in the plan. The plan is allocated once; forward never allocates.
 */
#include <stdlib.h>
#include <string.h>

#include "block_fused_impl.h"
#include "model_impl.h"
#include "ops/conv2d_gemm_impl.h"
#include "rvg/ops.h"

#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f

static int64_t out_size(int64_t h, int64_t stride) { return (h + 2 - 3) / stride + 1; }

static rvg_conv_shape conv_shape(const rvg_block *b, int64_t N, int64_t H, int64_t W, int64_t R) {
    rvg_conv_shape s = {0};
    s.N = N;
    s.C = b->C;
    s.H = H;
    s.W = W;
    s.K = b->K;
    s.R = s.S = R;
    s.stride = b->stride;
    s.pad = R / 2;
    s.G = b->G;
    rvg_conv_shape_finish(&s);
    return s;
}

rvg_status rvg_plan_new(rvg_plan **out, const rvg_model *m, int64_t N, int64_t H, int64_t W) {
    *out = NULL;
    if (N < 1 || N > (1 << 20))
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "batch size %lld out of range", (long long)N);
    RVG_TRY(rvg_model_check_input(m, m->arch.in_ch, H, W));
    rvg_plan *p = calloc(1, sizeof *p);
    if (!p)
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
    p->model = m;
    p->N = N;
    p->C = m->arch.in_ch;
    p->H = H;
    p->W = W;
    p->acts = calloc((size_t)m->n_blocks, sizeof *p->acts);
    if (!p->acts) {
        free(p);
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
    }
    /* First pass: sizes (in floats, each rounded to 16) and the conv workspace. */
    int64_t total = 0, max_act = N * p->C * H * W, max_k = 0;
    size_t work = 0;
    int64_t h = H, w = W;
    for (int64_t i = 0; i < m->n_blocks; i++) {
        const rvg_block *b = &m->blocks[i].b;
        block_act *a = &p->acts[i];
        a->H = h;
        a->W = w;
        a->P = out_size(h, b->stride);
        a->Q = out_size(w, b->stride);
        int64_t act = N * b->K * a->P * a->Q;
        if (act > max_act)
            max_act = act;
        if (b->K > max_k)
            max_k = b->K;
        total += 4 * ((act + 15) & ~15) + 6 * ((b->K + 15) & ~15);
        if (b->se_hidden)
            total += 3 * ((N * b->K + 15) & ~15);
        rvg_conv_shape s3 = conv_shape(b, N, h, w, 3), s1 = conv_shape(b, N, h, w, 1);
        if (m->form == RVG_FORM_TRAIN)
            total += (int64_t)rvg__conv2d_3x3_1x1_keep_floats(&s3);
        size_t w3 = rvg_conv2d_workspace_size(&s3), w1 = rvg_conv2d_workspace_size(&s1);
        size_t w31 = rvg_conv2d_3x3_1x1_workspace_size(&s3); /* the fast path's fused pair */
        work = w3 > work ? w3 : work;
        work = w1 > work ? w1 : work;
        work = w31 > work ? w31 : work;
        h = a->P;
        w = a->Q;
    }
    max_act = (max_act + 15) & ~15;
    int64_t klast = m->blocks[m->n_blocks - 1].b.K, classes = m->arch.classes;
    total += ((N * klast + 15) & ~15) + ((N * classes + 15) & ~15) + 5 * max_act +
             3 * ((N * max_k + 15) & ~15) + 2 * (4 * max_k + 16); /* last: sync-BN doubles */
    p->arena_bytes = (size_t)total * sizeof(float);
    p->arena = rvg_alloc(p->arena_bytes);
    p->work_bytes = work;
    p->work = work ? rvg_alloc(work) : NULL;
    if (!p->arena || (work && !p->work)) {
        size_t want = p->arena_bytes + work;
        rvg_plan_free(p);
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory planning activations (%zu bytes)",
                         want);
    }
    /* Second pass: carve the arena. */
    float *cur = p->arena;
#define TAKE(n) (cur += (((n) + 15) & ~(int64_t)15), cur - (((n) + 15) & ~(int64_t)15))
    for (int64_t i = 0; i < m->n_blocks; i++) {
        const rvg_block *b = &m->blocks[i].b;
        block_act *a = &p->acts[i];
        int64_t act = N * b->K * a->P * a->Q;
        a->z3 = TAKE(act);
        a->z1 = TAKE(act);
        a->s = TAKE(act);
        a->out = TAKE(act);
        a->mean3 = TAKE(b->K);
        a->istd3 = TAKE(b->K);
        a->mean1 = TAKE(b->K);
        a->istd1 = TAKE(b->K);
        a->mean0 = TAKE(b->K);
        a->istd0 = TAKE(b->K);
        if (b->se_hidden) {
            a->se_m = TAKE(N * b->K);
            a->se_h = TAKE(N * b->K);
            a->se_g = TAKE(N * b->K);
        }
        rvg_conv_shape s3 = conv_shape(b, N, a->H, a->W, 3);
        const int64_t keep = m->form == RVG_FORM_TRAIN
                                 ? (int64_t)rvg__conv2d_3x3_1x1_keep_floats(&s3) : 0;
        a->keep = keep ? TAKE(keep) : NULL;
    }
    p->pooled = TAKE(N * klast);
    p->logits = TAKE(N * classes);
    p->dbuf[0] = TAKE(max_act);
    p->dbuf[1] = TAKE(max_act);
    p->dz = TAKE(max_act);
    p->dz1 = TAKE(max_act);
    p->ds = TAKE(max_act);
    p->dse = TAKE(3 * N * max_k);
    p->bn_buf = (double *)(void *)TAKE(2 * (4 * max_k + 16)); /* 64-byte aligned */
#undef TAKE
    RVG_ASSERT(cur <= p->arena + total);
    *out = p;
    return RVG_OK;
}

void rvg_plan_free(rvg_plan *p) {
    if (!p)
        return;
    free(p->acts);
    rvg_free(p->arena);
    rvg_free(p->work);
    free(p);
}

size_t rvg_plan_bytes(const rvg_plan *p) { return p->arena_bytes + p->work_bytes; }

void rvg_plan_set_block_hook(rvg_plan *p, rvg_block_hook_fn fn, void *ctx) {
    p->hook = fn;
    p->hook_ctx = fn ? ctx : NULL;
}

static float *V(rvg_model *m, int64_t i) { return m->views[i].data; }

void rvg_model_set_bn_sync(rvg_model *m, rvg_bn_allreduce_fn allreduce, void *ctx) {
    m->bn_sync = allreduce;
    m->bn_sync_ctx = allreduce ? ctx : NULL;
}

/* Squeeze-excitation forward on s (n, K, HW): fills se_m, se_h, se_g; out = ReLU(s * g). */
static void se_forward(rvg_model *m, rvg_plan *p, int64_t i, block_act *a, int64_t n, int64_t HW,
                       int training) {
    const block_impl *bi = &m->blocks[i];
    const rvg_block *b = &bi->b;
    int64_t K = b->K, hid = b->se_hidden;
    rvg_gap_forward_ref(a->se_m, a->s, n, K, HW);
    rvg_linear_forward_ref(a->se_h, a->se_m, V(m, bi->se_dw), V(m, bi->se_db), n, K, hid);
    rvg_relu_forward_ref(a->se_h, a->se_h, n * hid);
    if (p->hook)
        p->hook(p->hook_ctx, i, RVG_HOOK_SE_HIDDEN, a->se_h, n * hid, training);
    rvg_linear_forward_ref(a->se_g, a->se_h, V(m, bi->se_uw), V(m, bi->se_ub), n, hid, K);
    rvg_sigmoid_forward_ref(a->se_g, a->se_g, n * K);
    rvg_channel_scale_forward_ref(a->out, a->s, a->se_g, n, K, HW);
    rvg_relu_forward_ref(a->out, a->out, n * K * HW);
}

static void block_forward(rvg_model *m, rvg_plan *p, int64_t i, const float *x, int64_t n,
                          int training) {
    block_impl *bi = &m->blocks[i];
    const rvg_block *b = &bi->b;
    block_act *a = &p->acts[i];
    int64_t K = b->K, HW = a->P * a->Q, act = n * K * HW;
    rvg_conv_shape s3 = conv_shape(b, n, a->H, a->W, 3);
    if (m->form == RVG_FORM_DEPLOY) {
        rvg_conv2d_forward(a->s, x, V(m, bi->wr), V(m, bi->br), &s3, p->work);
    } else if (!rvg_ops_using_ref()) {
        /* fast path: both convolutions from one im2col of x, then fused statistics + one pass
         * for BN3 + BN1 + BN0 + ReLU */
        rvg__conv2d_forward_3x3_1x1_gemm(a->z3, a->z1, x, V(m, bi->w3), V(m, bi->w1), &s3,
                                         p->work, training ? a->keep : NULL);
        const bn_ref *bns[3] = {&bi->bn3, &bi->bn1, &bi->bn0};
        const float *ins[3] = {a->z3, a->z1, x};
        float *means[3] = {a->mean3, a->mean1, a->mean0}, *istds[3] = {a->istd3, a->istd1, a->istd0};
        rvg__bn_term t[3];
        int nt = b->identity ? 3 : 2;
        rvg__bn_sync hook = {m->bn_sync, m->bn_sync_ctx};
        const rvg__bn_sync *sync = m->bn_sync ? &hook : NULL;
        /* without a sync hook, statistics and the sum + ReLU run in one phase (below) */
        const int one_phase = training && !sync;
        float *rmeans[3] = {NULL, NULL, NULL}, *rvars[3] = {NULL, NULL, NULL};
        for (int j = 0; j < nt; j++) {
            if (one_phase) {
                rmeans[j] = V(m, bns[j]->mean);
                rvars[j] = V(m, bns[j]->var);
                m->bn_counters[bns[j]->counter]++;
            } else if (training) {
                rvg__bn_stats(means[j], istds[j], V(m, bns[j]->mean), V(m, bns[j]->var), ins[j], n,
                              K, HW, BN_MOMENTUM, BN_EPS, p->bn_buf, sync);
                m->bn_counters[bns[j]->counter]++;
            } else {
                rvg__bn_eval_stats(means[j], istds[j], V(m, bns[j]->mean), V(m, bns[j]->var), K,
                                   BN_EPS);
            }
            t[j].x = ins[j];
            t[j].gamma = V(m, bns[j]->gamma);
            t[j].beta = V(m, bns[j]->beta);
            t[j].mean = means[j];
            t[j].istd = istds[j];
        }
        float *sum_out = b->se_hidden ? a->s : NULL, *relu_out = b->se_hidden ? NULL : a->out;
        if (one_phase)
            rvg__bn_train_sum_relu_forward(sum_out, relu_out, t, means, istds, rmeans, rvars, nt, n,
                                           K, HW, BN_MOMENTUM, BN_EPS);
        else
            rvg__bn_sum_relu_forward(sum_out, relu_out, t, nt, n, K, HW);
        if (b->se_hidden)
            se_forward(m, p, i, a, n, HW, training);
        return;
    } else {
        rvg_conv_shape s1 = conv_shape(b, n, a->H, a->W, 1);
        rvg_conv2d_forward(a->z3, x, V(m, bi->w3), NULL, &s3, p->work);
        rvg_conv2d_forward(a->z1, x, V(m, bi->w1), NULL, &s1, p->work);
        float *tmp = p->dz; /* scratch: free during forward */
        if (training) {
            int64_t *cnt = m->bn_counters;
            rvg_bn_forward_train_ref(a->s, a->mean3, a->istd3, V(m, bi->bn3.mean),
                                     V(m, bi->bn3.var), a->z3, V(m, bi->bn3.gamma),
                                     V(m, bi->bn3.beta), n, K, HW, BN_MOMENTUM, BN_EPS);
            rvg_bn_forward_train_ref(tmp, a->mean1, a->istd1, V(m, bi->bn1.mean),
                                     V(m, bi->bn1.var), a->z1, V(m, bi->bn1.gamma),
                                     V(m, bi->bn1.beta), n, K, HW, BN_MOMENTUM, BN_EPS);
            cnt[bi->bn3.counter]++;
            cnt[bi->bn1.counter]++;
        } else {
            rvg_bn_forward_eval_ref(a->s, a->z3, V(m, bi->bn3.gamma), V(m, bi->bn3.beta),
                                    V(m, bi->bn3.mean), V(m, bi->bn3.var), n, K, HW, BN_EPS);
            rvg_bn_forward_eval_ref(tmp, a->z1, V(m, bi->bn1.gamma), V(m, bi->bn1.beta),
                                    V(m, bi->bn1.mean), V(m, bi->bn1.var), n, K, HW, BN_EPS);
        }
        for (int64_t j = 0; j < act; j++)
            a->s[j] += tmp[j];
        if (b->identity) {
            if (training) {
                rvg_bn_forward_train_ref(tmp, a->mean0, a->istd0, V(m, bi->bn0.mean),
                                         V(m, bi->bn0.var), x, V(m, bi->bn0.gamma),
                                         V(m, bi->bn0.beta), n, K, HW, BN_MOMENTUM, BN_EPS);
                m->bn_counters[bi->bn0.counter]++;
            } else {
                rvg_bn_forward_eval_ref(tmp, x, V(m, bi->bn0.gamma), V(m, bi->bn0.beta),
                                        V(m, bi->bn0.mean), V(m, bi->bn0.var), n, K, HW, BN_EPS);
            }
            for (int64_t j = 0; j < act; j++)
                a->s[j] += tmp[j];
        }
    }
    if (b->se_hidden)
        se_forward(m, p, i, a, n, HW, training);
    else
        rvg_relu_forward_ref(a->out, a->s, act);
}

rvg_status rvg_model_forward(rvg_model *m, rvg_plan *p, const float *x, int64_t n, int training,
                             const float **logits) {
    *logits = NULL;
    if (p->model != m)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "forward: plan was made for another model");
    if (n < 1 || n > p->N)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "forward: %lld images, the plan holds 1..%lld",
                         (long long)n, (long long)p->N);
    if (training && m->form != RVG_FORM_TRAIN)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "forward: a deploy-form model cannot train");
    if (training && n == 1) {
        /* PyTorch refuses too: the unbiased variance of one value per channel is undefined. */
        const block_act *a = &p->acts[m->n_blocks - 1];
        if (a->P * a->Q == 1)
            return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                             "forward: training BN needs more than one value per channel "
                             "(batch 1 at 1x1 output)");
    }
    if (training && m->bn_sync && rvg_ops_using_ref())
        return rvg_error(RVG_STATUS_UNSUPPORTED,
                         "forward: synchronised BatchNorm is implemented on the fast path only "
                         "(unset RVG_FORCE_REF)");
    const float *cur = x;
    for (int64_t i = 0; i < m->n_blocks; i++) {
        block_forward(m, p, i, cur, n, training);
        cur = p->acts[i].out;
        if (p->hook) {
            const block_act *a = &p->acts[i];
            p->hook(p->hook_ctx, i, RVG_HOOK_OUTPUT, p->acts[i].out,
                    n * m->blocks[i].b.K * a->P * a->Q, training);
        }
    }
    const block_act *last = &p->acts[m->n_blocks - 1];
    int64_t klast = m->blocks[m->n_blocks - 1].b.K;
    rvg_gap_forward_ref(p->pooled, cur, n, klast, last->P * last->Q);
    rvg_linear_forward_ref(p->logits, p->pooled, V(m, m->fc_w), V(m, m->fc_b), n, klast,
                           m->arch.classes);
    p->last_n = training ? n : 0;
    p->input = training ? x : NULL;
    *logits = p->logits;
    return RVG_OK;
}
