/* backward.c - the backward pass of the train form, from dlogits to every parameter gradient.
 *
 * Walks the blocks in reverse. For block i with input x and output gradient dout:
 *   ds  = dout * [out > 0]                        (ReLU; through the SE gate when present)
 *   dz3 = BN3'(ds), dz1 = BN1'(ds)                (training-mode BN backward, batch statistics)
 *   dx  = conv3x3'(dz3) + conv1x1'(dz1) + BN0'(ds)
 * Kernels accumulate into gradients (see ops.h), so the three branch contributions to dx add up
 * without extra passes. The caller's input x must stay valid from forward to backward (stage0's
 * weight gradient reads it). Two ping-pong buffers carry dout/dx between blocks. Allocates nothing.
 */
#include <string.h>

#include "block_fused_impl.h"
#include "model_impl.h"
#include "ops/conv2d_gemm_impl.h"
#include "rvg/ops.h"

static float *V(rvg_model *m, int64_t i) { return m->views[i].data; }
static float *G(rvg_model *m, int64_t i) { return m->views[i].grad; }

static rvg_conv_shape conv_shape(const rvg_block *b, const block_act *a, int64_t n, int64_t R) {
    rvg_conv_shape s = {0};
    s.N = n;
    s.C = b->C;
    s.H = a->H;
    s.W = a->W;
    s.K = b->K;
    s.R = s.S = R;
    s.stride = b->stride;
    s.pad = R / 2;
    s.G = b->G;
    rvg_conv_shape_finish(&s);
    return s;
}

/* SE backward: from dout to ds (overwritten), accumulating SE parameter gradients. */
static void se_backward(rvg_model *m, rvg_plan *p, const block_impl *bi, const block_act *a,
                        float *ds, const float *dout, int64_t n, int64_t HW) {
    int64_t K = bi->b.K, hid = bi->b.se_hidden, act = n * K * HW;
    float *du = p->dz; /* gradient at s * g, before the ReLU */
    memset(du, 0, (size_t)act * sizeof(float));
    rvg_relu_backward_ref(du, dout, a->out, act);
    float *dg = p->dse, *dh = p->dse + n * K, *dm = p->dse + 2 * n * K;
    memset(p->dse, 0, (size_t)(3 * n * K) * sizeof(float));
    memset(ds, 0, (size_t)act * sizeof(float));
    rvg_channel_scale_backward_ref(ds, dg, du, a->s, a->se_g, n, K, HW);
    /* dg -> pre-sigmoid gradient, in place through dm as scratch */
    rvg_sigmoid_backward_ref(dm, dg, a->se_g, n * K);
    memset(dh, 0, (size_t)(n * hid) * sizeof(float));
    rvg_linear_backward_ref(dh, G(m, bi->se_uw), G(m, bi->se_ub), dm, a->se_h, V(m, bi->se_uw), n,
                            hid, K);
    /* ReLU on the hidden layer: se_h holds its output */
    memset(dg, 0, (size_t)(n * hid) * sizeof(float));
    rvg_relu_backward_ref(dg, dh, a->se_h, n * hid);
    memset(dm, 0, (size_t)(n * K) * sizeof(float));
    rvg_linear_backward_ref(dm, G(m, bi->se_dw), G(m, bi->se_db), dg, a->se_m, V(m, bi->se_dw), n,
                            K, hid);
    rvg_gap_backward_ref(ds, dm, n, K, HW);
}

static void block_backward(rvg_model *m, rvg_plan *p, int64_t i, float *dx, const float *x,
                           const float *dout, int64_t n) {
    block_impl *bi = &m->blocks[i];
    const rvg_block *b = &bi->b;
    const block_act *a = &p->acts[i];
    int64_t K = b->K, HW = a->P * a->Q, act = n * K * HW;
    float *ds = p->ds;
    int64_t in_size = n * b->C * a->H * a->W;
    if (!rvg_ops_using_ref()) {
        /* fast path: one reduction pass and one output pass for all BN branches */
        if (b->se_hidden)
            se_backward(m, p, bi, a, ds, dout, n, HW);
        rvg__bn_term t[3] = {
            {a->z3, V(m, bi->bn3.gamma), NULL, a->mean3, a->istd3},
            {a->z1, V(m, bi->bn1.gamma), NULL, a->mean1, a->istd1},
            {x, b->identity ? V(m, bi->bn0.gamma) : NULL, NULL, a->mean0, a->istd0},
        };
        int nt = b->identity ? 3 : 2;
        float *dz[3] = {p->dz, p->dz1, dx};
        float *dg[3] = {G(m, bi->bn3.gamma), G(m, bi->bn1.gamma),
                        b->identity ? G(m, bi->bn0.gamma) : NULL};
        float *db[3] = {G(m, bi->bn3.beta), G(m, bi->bn1.beta),
                        b->identity ? G(m, bi->bn0.beta) : NULL};
        if (dx && !b->identity)
            memset(dx, 0, (size_t)in_size * sizeof(float));
        rvg__bn_sync hook = {m->bn_sync, m->bn_sync_ctx};
        /* identity branch: dx overwritten here, the convolutions add to it below */
        if (b->se_hidden)
            rvg__bn_sum_backward(dz, dg, db, ds, t, nt, n, K, HW, p->bn_buf,
                                 m->bn_sync ? &hook : NULL);
        else /* the ReLU's backward is made in the same pass */
            rvg__bn_sum_relu_backward(dz, dg, db, ds, dout, a->out, t, nt, n, K, HW, p->bn_buf,
                                      m->bn_sync ? &hook : NULL);
        /* both convolutions: one im2col of x, one col2im of the summed column gradient */
        rvg_conv_shape s3 = conv_shape(b, a, n, 3);
        rvg__conv2d_backward_3x3_1x1_gemm(dx, G(m, bi->w3), G(m, bi->w1), p->dz, p->dz1, x,
                                          V(m, bi->w3), V(m, bi->w1), &s3, p->work, a->keep);
        return;
    }
    if (dx)
        memset(dx, 0, (size_t)in_size * sizeof(float));
    if (b->se_hidden) {
        se_backward(m, p, bi, a, ds, dout, n, HW);
    } else {
        memset(ds, 0, (size_t)act * sizeof(float));
        rvg_relu_backward_ref(ds, dout, a->out, act);
    }
    rvg_conv_shape s3 = conv_shape(b, a, n, 3), s1 = conv_shape(b, a, n, 1);
    float *dz = p->dz;
    memset(dz, 0, (size_t)act * sizeof(float));
    rvg_bn_backward_ref(dz, G(m, bi->bn3.gamma), G(m, bi->bn3.beta), ds, a->z3, a->mean3, a->istd3,
                        V(m, bi->bn3.gamma), n, K, HW);
    rvg_conv2d_backward(dx, G(m, bi->w3), NULL, dz, x, V(m, bi->w3), &s3, p->work);
    memset(dz, 0, (size_t)act * sizeof(float));
    rvg_bn_backward_ref(dz, G(m, bi->bn1.gamma), G(m, bi->bn1.beta), ds, a->z1, a->mean1, a->istd1,
                        V(m, bi->bn1.gamma), n, K, HW);
    rvg_conv2d_backward(dx, G(m, bi->w1), NULL, dz, x, V(m, bi->w1), &s1, p->work);
    if (b->identity)
        rvg_bn_backward_ref(dx, G(m, bi->bn0.gamma), G(m, bi->bn0.beta), ds, x, a->mean0,
                            a->istd0, V(m, bi->bn0.gamma), n, K, HW);
}

rvg_status rvg_model_backward(rvg_model *m, rvg_plan *p, const float *dlogits, float *dx_out) {
    if (p->model != m)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "backward: plan was made for another model");
    if (m->form != RVG_FORM_TRAIN)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "backward: deploy-form models do not train");
    int64_t n = p->last_n;
    if (m->bn_sync && rvg_ops_using_ref())
        return rvg_error(RVG_STATUS_UNSUPPORTED,
                         "backward: synchronised BatchNorm is implemented on the fast path only "
                         "(unset RVG_FORCE_REF)");
    if (n < 1)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "backward: no training-mode forward pass to differentiate");
    int64_t nb = m->n_blocks, klast = m->blocks[nb - 1].b.K;
    const block_act *last = &p->acts[nb - 1];
    int64_t hw_last = last->P * last->Q;
    float *dpool = p->dse; /* (n, klast) scratch, free at this point */
    memset(dpool, 0, (size_t)(n * klast) * sizeof(float));
    rvg_linear_backward_ref(dpool, G(m, m->fc_w), G(m, m->fc_b), dlogits, p->pooled, V(m, m->fc_w),
                            n, klast, m->arch.classes);
    float *dout = p->dbuf[0], *dx = p->dbuf[1];
    memset(dout, 0, (size_t)(n * klast * hw_last) * sizeof(float));
    rvg_gap_backward_ref(dout, dpool, n, klast, hw_last);
    for (int64_t i = nb - 1; i >= 0; i--) {
        /* stage0's input is the caller's x, which must stay valid from forward to backward */
        const float *x = i > 0 ? p->acts[i - 1].out : p->input;
        float *dxi = i > 0 ? dx : dx_out; /* NULL: the input gradient is not wanted */
        block_backward(m, p, i, dxi, x, dout, n);
        float *t = dout;
        dout = dx;
        dx = t;
    }
    return RVG_OK;
}
