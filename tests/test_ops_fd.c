/* test_ops_fd.c - finite-difference gradient check of every reference backward kernel (ops.h).
 *
 * For each op, a scalar loss L = sum(out * r) (r fixed random weights; for the cross-entropy, the
 * loss itself) is evaluated with the float forward kernel and summed in double. Each input element
 * v is nudged to the nearest floats of v +- h and the central difference
 * (L(v+) - L(v-)) / (v+ - v-) is compared with the gradient the backward kernel accumulates when
 * handed dy = r. Shapes are tiny, so every element of every input is checked. A last case chains
 * conv -> BN -> ReLU -> GAP -> linear -> xent to check that the kernels compose.
 *
 * Does not: need PyTorch (tests/test_torch_ops.c compares against it) or check values of the
 * forward passes beyond what the differences imply.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rvg/ops.h"

/* ---- tolerances ---------------------------------------------------------------------------------
 * |fd - analytic| <= FD_ATOL + FD_RTOL * |analytic|. The forward runs in float, so the difference
 * carries a rounding error of about ulp(L) / h; H is large enough to keep that near 1e-5 on these
 * tiny sums, and small enough that the O(h^2) truncation of the non-linear ops (BN, sigmoid, xent)
 * stays below 1e-4. */
static const double FD_H = 1e-2;
static const double FD_ATOL = 5e-4; /* rounding of L (~1e-7 * sum|terms|) over 2h, plus h^2 terms */
static const double FD_RTOL = 1e-2; /* curvature times h^2 relative to the slope, in BN and xent */

/* ---- tiny deterministic RNG (xorshift64*, Box-Muller) -------------------------------------- */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static double uniform(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}

static float normal(void) {
    double u = uniform(), v = uniform();
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v));
}

static float *randn(int64_t n, float scale) {
    float *p = rvg_alloc((size_t)n * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++)
        p[i] = normal() * scale;
    return p;
}

static float *zeros(int64_t n) {
    float *p = rvg_alloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* ---- the check ------------------------------------------------------------------------------ */

typedef double (*loss_fn)(void *ctx);

/* Central differences of loss(ctx) with respect to every element of v (n), compared with grad. */
static void fd_check(const char *what, loss_fn loss, void *ctx, float *v, const float *grad,
                     int64_t n) {
    float *fd = rvg_alloc((size_t)n * sizeof(float));   /* (n) */
    if (!fd) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) {
        const float v0 = v[i];
        const float vp = (float)(v0 + FD_H), vm = (float)(v0 - FD_H);
        v[i] = vp;
        const double lp = loss(ctx);
        v[i] = vm;
        const double lm = loss(ctx);
        v[i] = v0;
        fd[i] = (float)((lp - lm) / ((double)vp - (double)vm));
    }
    rvg_test_close(what, fd, grad, n, (float)FD_ATOL, (float)FD_RTOL, NULL, 0);
    rvg_free(fd);
}

/* ---- conv2d ---------------------------------------------------------------------------------- */

typedef struct {
    rvg_conv_shape s;
    float *x, *w, *b, *y, *r;
} conv_ctx;

static double conv_loss(void *p) {
    conv_ctx *c = p;
    rvg_conv2d_forward_ref(c->y, c->x, c->w, c->b, &c->s, NULL);
    return dot(c->y, c->r, c->s.N * c->s.K * c->s.P * c->s.Q);
}

static void test_conv(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R, int64_t S,
                      int64_t stride, int64_t pad, int64_t G) {
    conv_ctx c = {.s = {.N = N, .C = C, .H = H, .W = W, .K = K, .R = R, .S = S, .stride = stride,
                        .pad = pad, .G = G}};
    rvg_conv_shape_finish(&c.s);
    const int64_t nx = N * C * H * W, nw = K * (C / G) * R * S, ny = N * K * c.s.P * c.s.Q;
    c.x = randn(nx, 1.0f);
    c.w = randn(nw, 0.5f);
    c.b = randn(K, 1.0f);
    c.y = zeros(ny);
    c.r = randn(ny, 1.0f);
    float *dx = zeros(nx), *dw = zeros(nw), *db = zeros(K);
    rvg_conv2d_backward_ref(dx, dw, db, c.r, c.x, c.w, &c.s, NULL);
    char what[160];
    snprintf(what, sizeof what, "conv %lldx%lld s%lld p%lld g%lld dx", (long long)R, (long long)S,
             (long long)stride, (long long)pad, (long long)G);
    fd_check(what, conv_loss, &c, c.x, dx, nx);
    snprintf(what, sizeof what, "conv %lldx%lld s%lld p%lld g%lld dw", (long long)R, (long long)S,
             (long long)stride, (long long)pad, (long long)G);
    fd_check(what, conv_loss, &c, c.w, dw, nw);
    snprintf(what, sizeof what, "conv %lldx%lld s%lld p%lld g%lld db", (long long)R, (long long)S,
             (long long)stride, (long long)pad, (long long)G);
    fd_check(what, conv_loss, &c, c.b, db, K);
    rvg_free(c.x);
    rvg_free(c.w);
    rvg_free(c.b);
    rvg_free(c.y);
    rvg_free(c.r);
    rvg_free(dx);
    rvg_free(dw);
    rvg_free(db);
}

/* ---- BatchNorm2d (training statistics) ------------------------------------------------------- */

typedef struct {
    int64_t N, C, HW;
    float *x, *gamma, *beta, *y, *r, *mean, *invstd;
} bn_ctx;

static double bn_loss(void *p) {
    bn_ctx *c = p;
    rvg_bn_forward_train_ref(c->y, c->mean, c->invstd, NULL, NULL, c->x, c->gamma, c->beta, c->N,
                             c->C, c->HW, 0.1f, 1e-5f);
    return dot(c->y, c->r, c->N * c->C * c->HW);
}

static void test_bn(void) {
    bn_ctx c = {.N = 3, .C = 2, .HW = 5};
    const int64_t nx = c.N * c.C * c.HW;
    c.x = randn(nx, 1.0f);
    c.gamma = randn(c.C, 1.0f);
    c.beta = randn(c.C, 1.0f);
    c.y = zeros(nx);
    c.r = randn(nx, 1.0f);
    c.mean = zeros(c.C);
    c.invstd = zeros(c.C);
    bn_loss(&c);
    float *dx = zeros(nx), *dg = zeros(c.C), *dbt = zeros(c.C);
    rvg_bn_backward_ref(dx, dg, dbt, c.r, c.x, c.mean, c.invstd, c.gamma, c.N, c.C, c.HW);
    fd_check("bn train dx", bn_loss, &c, c.x, dx, nx);
    fd_check("bn train dgamma", bn_loss, &c, c.gamma, dg, c.C);
    fd_check("bn train dbeta", bn_loss, &c, c.beta, dbt, c.C);
    rvg_free(c.x);
    rvg_free(c.gamma);
    rvg_free(c.beta);
    rvg_free(c.y);
    rvg_free(c.r);
    rvg_free(c.mean);
    rvg_free(c.invstd);
    rvg_free(dx);
    rvg_free(dg);
    rvg_free(dbt);
}

/* ---- ReLU, sigmoid, GAP, channel scale ----------------------------------------------------- */

typedef struct {
    int64_t N, C, HW;
    float *x, *s, *y, *r;
    int op; /* 0 relu, 1 sigmoid, 2 gap, 3 channel scale */
} pw_ctx;

static double pw_loss(void *p) {
    pw_ctx *c = p;
    const int64_t n = c->N * c->C * c->HW;
    switch (c->op) {
    case 0:
        rvg_relu_forward_ref(c->y, c->x, n);
        return dot(c->y, c->r, n);
    case 1:
        rvg_sigmoid_forward_ref(c->y, c->x, n);
        return dot(c->y, c->r, n);
    case 2:
        rvg_gap_forward_ref(c->y, c->x, c->N, c->C, c->HW);
        return dot(c->y, c->r, c->N * c->C);
    default:
        rvg_channel_scale_forward_ref(c->y, c->x, c->s, c->N, c->C, c->HW);
        return dot(c->y, c->r, n);
    }
}

static void test_pointwise(void) {
    pw_ctx c = {.N = 2, .C = 3, .HW = 7};
    const int64_t n = c.N * c.C * c.HW;
    c.x = randn(n, 2.0f);
    c.s = randn(c.N * c.C, 1.0f);
    c.y = zeros(n);
    c.r = randn(n, 1.0f);
    /* ReLU has a kink at 0: keep every input further than h from it. */
    for (int64_t i = 0; i < n; i++)
        if (fabsf(c.x[i]) < 0.1f)
            c.x[i] = c.x[i] < 0 ? -0.1f - c.x[i] : 0.1f + c.x[i];

    float *dx = zeros(n), *ds = zeros(c.N * c.C);
    c.op = 0;
    pw_loss(&c);
    rvg_relu_backward_ref(dx, c.r, c.y, n);
    fd_check("relu dx", pw_loss, &c, c.x, dx, n);

    c.op = 1;
    memset(dx, 0, (size_t)n * sizeof(float));
    pw_loss(&c);
    rvg_sigmoid_backward_ref(dx, c.r, c.y, n);
    fd_check("sigmoid dx", pw_loss, &c, c.x, dx, n);

    c.op = 2;
    memset(dx, 0, (size_t)n * sizeof(float));
    rvg_gap_backward_ref(dx, c.r, c.N, c.C, c.HW);
    fd_check("gap dx", pw_loss, &c, c.x, dx, n);

    c.op = 3;
    memset(dx, 0, (size_t)n * sizeof(float));
    rvg_channel_scale_backward_ref(dx, ds, c.r, c.x, c.s, c.N, c.C, c.HW);
    fd_check("channel_scale dx", pw_loss, &c, c.x, dx, n);
    fd_check("channel_scale ds", pw_loss, &c, c.s, ds, c.N * c.C);

    rvg_free(c.x);
    rvg_free(c.s);
    rvg_free(c.y);
    rvg_free(c.r);
    rvg_free(dx);
    rvg_free(ds);
}

/* ---- linear ---------------------------------------------------------------------------------- */

typedef struct {
    int64_t N, C, K;
    float *x, *w, *b, *y, *r;
} lin_ctx;

static double lin_loss(void *p) {
    lin_ctx *c = p;
    rvg_linear_forward_ref(c->y, c->x, c->w, c->b, c->N, c->C, c->K);
    return dot(c->y, c->r, c->N * c->K);
}

static void test_linear(void) {
    lin_ctx c = {.N = 3, .C = 5, .K = 4};
    c.x = randn(c.N * c.C, 1.0f);
    c.w = randn(c.K * c.C, 0.5f);
    c.b = randn(c.K, 1.0f);
    c.y = zeros(c.N * c.K);
    c.r = randn(c.N * c.K, 1.0f);
    float *dx = zeros(c.N * c.C), *dw = zeros(c.K * c.C), *db = zeros(c.K);
    rvg_linear_backward_ref(dx, dw, db, c.r, c.x, c.w, c.N, c.C, c.K);
    fd_check("linear dx", lin_loss, &c, c.x, dx, c.N * c.C);
    fd_check("linear dw", lin_loss, &c, c.w, dw, c.K * c.C);
    fd_check("linear db", lin_loss, &c, c.b, db, c.K);
    rvg_free(c.x);
    rvg_free(c.w);
    rvg_free(c.b);
    rvg_free(c.y);
    rvg_free(c.r);
    rvg_free(dx);
    rvg_free(dw);
    rvg_free(db);
}

/* ---- softmax cross-entropy ------------------------------------------------------------------ */

typedef struct {
    int64_t N, K;
    float *z, *t;
} xent_ctx;

static double xent_loss(void *p) {
    xent_ctx *c = p;
    return rvg_softmax_xent_ref(NULL, c->z, c->t, c->N, c->K);
}

static void test_xent(void) {
    xent_ctx c = {.N = 4, .K = 5};
    c.z = randn(c.N * c.K, 2.0f);
    c.t = zeros(c.N * c.K);
    const int32_t labels[4] = {0, 3, 4, 1};
    float *dz = zeros(c.N * c.K);

    rvg_targets_from_labels(c.t, labels, c.N, c.K, 0.0f);
    rvg_softmax_xent_ref(dz, c.z, c.t, c.N, c.K);
    fd_check("xent hard dlogits", xent_loss, &c, c.z, dz, c.N * c.K);

    rvg_targets_from_labels(c.t, labels, c.N, c.K, 0.1f);
    rvg_softmax_xent_ref(dz, c.z, c.t, c.N, c.K);
    fd_check("xent smoothed dlogits", xent_loss, &c, c.z, dz, c.N * c.K);

    /* Soft (mixup-like) rows: random distributions. */
    for (int64_t n = 0; n < c.N; n++) {
        double sum = 0.0;
        for (int64_t k = 0; k < c.K; k++)
            sum += c.t[n * c.K + k] = (float)uniform();
        for (int64_t k = 0; k < c.K; k++)
            c.t[n * c.K + k] = (float)(c.t[n * c.K + k] / sum);
    }
    rvg_softmax_xent_ref(dz, c.z, c.t, c.N, c.K);
    fd_check("xent soft dlogits", xent_loss, &c, c.z, dz, c.N * c.K);
    rvg_free(c.z);
    rvg_free(c.t);
    rvg_free(dz);
}

/* ---- a chain: conv -> BN(train) -> ReLU -> GAP -> linear -> xent ---------------------------- */

typedef struct {
    rvg_conv_shape s;
    int64_t classes;
    float *x, *w, *gamma, *beta, *fw, *fb, *t;
    float *a, *bn, *mean, *invstd, *pool, *logits;   /* activations */
} chain_ctx;

static double chain_forward(chain_ctx *c, float *dlogits) {
    const rvg_conv_shape *s = &c->s;
    const int64_t PQ = s->P * s->Q, na = s->N * s->K * PQ;
    rvg_conv2d_forward_ref(c->a, c->x, c->w, NULL, s, NULL);
    rvg_bn_forward_train_ref(c->bn, c->mean, c->invstd, NULL, NULL, c->a, c->gamma, c->beta, s->N,
                             s->K, PQ, 0.1f, 1e-5f);
    rvg_relu_forward_ref(c->bn, c->bn, na);
    rvg_gap_forward_ref(c->pool, c->bn, s->N, s->K, PQ);
    rvg_linear_forward_ref(c->logits, c->pool, c->fw, c->fb, s->N, s->K, c->classes);
    return rvg_softmax_xent_ref(dlogits, c->logits, c->t, s->N, c->classes);
}

static double chain_loss(void *p) { return chain_forward(p, NULL); }

static void test_chain(void) {
    chain_ctx c = {.s = {.N = 2, .C = 3, .H = 5, .W = 6, .K = 4, .R = 3, .S = 3, .stride = 2,
                         .pad = 1, .G = 1},
                   .classes = 3};
    rvg_conv_shape_finish(&c.s);
    const rvg_conv_shape *s = &c.s;
    const int64_t PQ = s->P * s->Q, na = s->N * s->K * PQ, nx = s->N * s->C * s->H * s->W;
    const int64_t nw = s->K * s->C * s->R * s->S;
    c.x = randn(nx, 1.0f);
    c.w = randn(nw, 0.5f);
    c.gamma = randn(s->K, 1.0f);
    c.beta = randn(s->K, 1.0f);
    c.fw = randn(c.classes * s->K, 1.0f);
    c.fb = randn(c.classes, 1.0f);
    c.t = zeros(s->N * c.classes);
    const int32_t labels[2] = {2, 0};
    rvg_targets_from_labels(c.t, labels, s->N, c.classes, 0.1f);
    c.a = zeros(na);
    c.bn = zeros(na);
    c.mean = zeros(s->K);
    c.invstd = zeros(s->K);
    c.pool = zeros(s->N * s->K);
    c.logits = zeros(s->N * c.classes);

    /* Backward through the chain, accumulating into zeroed gradients. */
    float *dlogits = zeros(s->N * c.classes), *dpool = zeros(s->N * s->K);
    float *dfw = zeros(c.classes * s->K), *dfb = zeros(c.classes), *dbn = zeros(na);
    float *da = zeros(na), *dgamma = zeros(s->K), *dbeta = zeros(s->K), *dw = zeros(nw);
    float *dx = zeros(nx);
    chain_forward(&c, dlogits);
    rvg_linear_backward_ref(dpool, dfw, dfb, dlogits, c.pool, c.fw, s->N, s->K, c.classes);
    float *drelu = zeros(na);
    rvg_gap_backward_ref(drelu, dpool, s->N, s->K, PQ);
    rvg_relu_backward_ref(dbn, drelu, c.bn, na);
    rvg_bn_backward_ref(da, dgamma, dbeta, dbn, c.a, c.mean, c.invstd, c.gamma, s->N, s->K, PQ);
    rvg_conv2d_backward_ref(dx, dw, NULL, da, c.x, c.w, s, NULL);

    fd_check("chain dx", chain_loss, &c, c.x, dx, nx);
    fd_check("chain conv dw", chain_loss, &c, c.w, dw, nw);
    fd_check("chain bn dgamma", chain_loss, &c, c.gamma, dgamma, s->K);
    fd_check("chain bn dbeta", chain_loss, &c, c.beta, dbeta, s->K);
    fd_check("chain linear dw", chain_loss, &c, c.fw, dfw, c.classes * s->K);
    fd_check("chain linear db", chain_loss, &c, c.fb, dfb, c.classes);

    float *bufs[] = {c.x, c.w, c.gamma, c.beta, c.fw, c.fb, c.t, c.a, c.bn, c.mean, c.invstd,
                     c.pool, c.logits, dlogits, dpool, dfw, dfb, dbn, da, dgamma, dbeta, dw,
                     dx, drelu};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        rvg_free(bufs[i]);
}

int main(void) {
    /* harness.h helpers this test has no use for (they are static, so name them once). */
    (void)rvg_test_skip;
    (void)rvg_test_max_abs;
    test_conv(2, 3, 5, 4, 4, 3, 3, 1, 1, 1);
    test_conv(1, 4, 7, 5, 6, 3, 3, 2, 1, 2);
    test_conv(2, 4, 3, 5, 8, 1, 1, 2, 0, 4);
    test_conv(1, 2, 6, 7, 3, 5, 3, 2, 1, 1);
    test_bn();
    test_pointwise();
    test_linear();
    test_xent();
    test_chain();
    return rvg_test_finish();
}
