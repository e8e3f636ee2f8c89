/* test_torch_ops.c - every reference layer kernel (include/rvg/ops.h, _ref) against PyTorch.
 *
 * Reads argv[1]/ops.safetensors, written by tests/ref/gen_ops.py (torch autograd in float64 on
 * float32 inputs, rounded to float32), and checks forward outputs and backward gradients for:
 * conv2d (stride 1/2, pad 0/1, groups 1/2/4, N=1, odd H/W, odd channel counts, 1x1/3x3/5x3), BN
 * train (output, saved stats, running stats with unbiased variance) and eval, ReLU, sigmoid, global
 * average pooling, channel scaling, linear, and softmax cross-entropy with hard labels, label
 * smoothing 0.1 and mixup targets. It also checks the contracts of ops.h: forward overwrites its
 * output (buffers start as NaN), backward accumulates (a second call doubles the gradient) and
 * skips NULL gradients, and the in-place forms (y == x) work.
 *
 * Does not: test the dispatched fast kernels (tests/test_ops_fast.c compares them with _ref) or
 * finite differences (tests/test_ops_fd.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rvg/io.h"
#include "rvg/ops.h"

/* ---- tolerances ---------------------------------------------------------------------------------
 * |got - want| <= atol * sqrt(L) + rtol * |want|, L the reduction length of the value (1 for
 * elementwise ops). The references are float64, so these bound the kernels' own float32 error. */
typedef struct {
    float atol, rtol;
} tol;

/* conv forward: float sum of L = C/G*R*S products of O(1) inputs, weights ~ 1/sqrt(L). */
static const tol TOL_CONV_Y = {2e-6f, 1e-5f};
/* conv dx: float sum of L = K/G*R*S products (dy O(1), w ~ 1/sqrt(C/G*R*S)). */
static const tol TOL_CONV_DX = {2e-6f, 1e-5f};
/* conv dw, dbias: double sum of L = N*P*Q products, rounded once; float partial rows of Q. */
static const tol TOL_CONV_DW = {2e-6f, 1e-5f};
/* BN output, saved stats: statistics in double; y = x*a + b rounds a, b and the result. */
static const tol TOL_BN = {2e-6f, 1e-5f};
/* BN running stats: (1-m)*r + m*stat in float, a few roundings. */
static const tol TOL_BN_RUNNING = {1e-6f, 1e-5f};
/* BN dgamma, dbeta: double sums of L = N*HW terms, rounded once; saved stats are float. */
static const tol TOL_BN_DPARAM = {2e-6f, 1e-5f};
/* BN dx: float saved stats (mean, invstd rounded) times O(1) sums; elementwise. */
static const tol TOL_BN_DX = {1e-5f, 1e-5f};
/* ReLU, channel scale: exact or one rounding. */
static const tol TOL_EXACT = {0.0f, 1e-7f};
/* sigmoid: expf and a division, a few ulp; dx's 1-y cancels near y=1, an absolute error of
 * ulp(1)*|dy| (|dy| up to ~3). */
static const tol TOL_SIGMOID = {3e-7f, 1e-6f};
/* GAP, ds: double sums over HW, rounded once (L = HW). */
static const tol TOL_POOL = {1e-7f, 1e-6f};
/* linear y, db: double dot products (L = C or N); dx, dw: float sums of L = K or N products. */
static const tol TOL_LINEAR = {2e-6f, 1e-5f};
/* softmax xent loss and dlogits: double log-sum-exp, one rounding (relative to |logits|max). */
static const tol TOL_XENT = {1e-7f, 1e-6f};

static int64_t g_L = 1;   /* reduction length for the next compare */

static int close_tol(const char *what, const float *got, const float *want, int64_t n, tol t,
                     const int64_t *dims, int ndim) {
    return rvg_test_close(what, got, want, n, t.atol * sqrtf((float)g_L), t.rtol, dims, ndim);
}

/* ---- bundle access -------------------------------------------------------------------------- */

static const rvg_dict *g_ref;

/* Borrowed float data of tensor `prefix``name`, checked to be F32 with numel elements (or any
 * count when numel < 0). NULL (and a failed check) when missing. */
static const float *ref_f32(const char *prefix, const char *name, int64_t numel) {
    char key[256];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    const rvg_tensor *t = rvg_dict_get(g_ref, key);
    if (!t || t->dtype != RVG_DTYPE_F32 || (numel >= 0 && rvg_tensor_numel(t) != numel)) {
        fprintf(stderr, "FAILED bundle tensor %s missing or wrong (want F32, %lld elements)\n", key,
                (long long)numel);
        CHECK(0);
        return NULL;
    }
    return (const float *)t->data;
}

/* int64 shape vector "prefix shape" copied to out (n entries). Returns 1 when present. */
static int ref_shape(const char *prefix, int64_t *out, int n) {
    char key[256];
    snprintf(key, sizeof key, "%sshape", prefix);
    const rvg_tensor *t = rvg_dict_get(g_ref, key);
    if (!t || t->dtype != RVG_DTYPE_I64 || rvg_tensor_numel(t) != n) {
        fprintf(stderr, "FAILED bundle tensor %s missing or wrong\n", key);
        CHECK(0);
        return 0;
    }
    memcpy(out, t->data, (size_t)n * sizeof(int64_t));
    return 1;
}

/* New float buffer of n elements filled with v (NaN to catch unwritten outputs). */
static float *buf(int64_t n, float v) {
    float *p = rvg_alloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++)
        p[i] = v;
    return p;
}

static float *scaled(const float *x, int64_t n, float a) {
    float *p = buf(n, 0.0f);
    for (int64_t i = 0; i < n; i++)
        p[i] = x[i] * a;
    return p;
}

/* Comma-separated case names from the bundle's metadata key; calls fn(name) for each. */
static void for_each_case(const char *meta_key, void (*fn)(const char *)) {
    const char *list = rvg_dict_meta(g_ref, meta_key);
    if (!list || !*list) {
        fprintf(stderr, "FAILED bundle metadata %s missing\n", meta_key);
        CHECK(0);
        return;
    }
    char name[128];
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len >= sizeof name)
            len = sizeof name - 1;
        memcpy(name, p, len);
        name[len] = '\0';
        fn(name);
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    }
}

/* ---- conv2d -------------------------------------------------------------------------------- */

static void test_conv(const char *name) {
    char pre[160], what[200];
    snprintf(pre, sizeof pre, "conv.%s.", name);
    int64_t v[11];
    if (!ref_shape(pre, v, 11))
        return;
    rvg_conv_shape s = {.N = v[0], .C = v[1], .H = v[2], .W = v[3], .K = v[4], .R = v[5],
                        .S = v[6], .stride = v[7], .pad = v[8], .G = v[9]};
    const int has_bias = (int)v[10];
    rvg_conv_shape_finish(&s);
    printf("conv %s: N=%lld C=%lld H=%lld W=%lld K=%lld R=%lld S=%lld stride=%lld pad=%lld "
           "G=%lld -> P=%lld Q=%lld\n",
           name, (long long)s.N, (long long)s.C, (long long)s.H, (long long)s.W, (long long)s.K,
           (long long)s.R, (long long)s.S, (long long)s.stride, (long long)s.pad, (long long)s.G,
           (long long)s.P, (long long)s.Q);

    const int64_t nx = s.N * s.C * s.H * s.W, nw = s.K * (s.C / s.G) * s.R * s.S;
    const int64_t ny = s.N * s.K * s.P * s.Q;
    const float *x = ref_f32(pre, "x", nx), *w = ref_f32(pre, "w", nw);
    const float *b = has_bias ? ref_f32(pre, "b", s.K) : NULL;
    const float *y_ref = ref_f32(pre, "y", ny), *dy = ref_f32(pre, "dy", ny);
    const float *dx_ref = ref_f32(pre, "dx", nx), *dw_ref = ref_f32(pre, "dw", nw);
    const float *db_ref = has_bias ? ref_f32(pre, "db", s.K) : NULL;
    if (!x || !w || !y_ref || !dy || !dx_ref || !dw_ref || (has_bias && (!b || !db_ref)))
        return;
    const int64_t xdims[4] = {s.N, s.C, s.H, s.W}, ydims[4] = {s.N, s.K, s.P, s.Q};
    const int64_t wdims[4] = {s.K, s.C / s.G, s.R, s.S};

    float *y = buf(ny, NAN);
    rvg_conv2d_forward_ref(y, x, w, b, &s, NULL);
    g_L = (s.C / s.G) * s.R * s.S;
    snprintf(what, sizeof what, "conv %s y", name);
    close_tol(what, y, y_ref, ny, TOL_CONV_Y, ydims, 4);

    float *dx = buf(nx, 0.0f), *dw = buf(nw, 0.0f), *db = buf(s.K, 0.0f);
    rvg_conv2d_backward_ref(dx, dw, has_bias ? db : NULL, dy, x, w, &s, NULL);
    g_L = (s.K / s.G) * s.R * s.S;
    snprintf(what, sizeof what, "conv %s dx", name);
    close_tol(what, dx, dx_ref, nx, TOL_CONV_DX, xdims, 4);
    g_L = s.N * s.P * s.Q;
    snprintf(what, sizeof what, "conv %s dw", name);
    close_tol(what, dw, dw_ref, nw, TOL_CONV_DW, wdims, 4);
    if (has_bias) {
        snprintf(what, sizeof what, "conv %s db", name);
        close_tol(what, db, db_ref, s.K, TOL_CONV_DW, NULL, 0);
    }

    /* Accumulation and NULL skipping: dx alone, then dw and db alone, must double each. */
    rvg_conv2d_backward_ref(dx, NULL, NULL, dy, x, w, &s, NULL);
    rvg_conv2d_backward_ref(NULL, dw, has_bias ? db : NULL, dy, x, w, &s, NULL);
    float *dx2 = scaled(dx_ref, nx, 2.0f), *dw2 = scaled(dw_ref, nw, 2.0f);
    g_L = 2 * (s.K / s.G) * s.R * s.S;
    snprintf(what, sizeof what, "conv %s dx accumulates (x2)", name);
    close_tol(what, dx, dx2, nx, TOL_CONV_DX, xdims, 4);
    g_L = 2 * s.N * s.P * s.Q;
    snprintf(what, sizeof what, "conv %s dw accumulates (x2)", name);
    close_tol(what, dw, dw2, nw, TOL_CONV_DW, wdims, 4);
    if (has_bias) {
        float *db2 = scaled(db_ref, s.K, 2.0f);
        snprintf(what, sizeof what, "conv %s db accumulates (x2)", name);
        close_tol(what, db, db2, s.K, TOL_CONV_DW, NULL, 0);
        rvg_free(db2);
    }
    rvg_free(y);
    rvg_free(dx);
    rvg_free(dw);
    rvg_free(db);
    rvg_free(dx2);
    rvg_free(dw2);
}

/* ---- BatchNorm2d --------------------------------------------------------------------------- */

static void test_bn(const char *name) {
    char pre[160], what[200];
    snprintf(pre, sizeof pre, "bn.%s.", name);
    int64_t v[4];
    if (!ref_shape(pre, v, 4))
        return;
    const int64_t N = v[0], C = v[1], HW = v[2] * v[3], nx = N * C * HW;
    const int64_t dims[4] = {v[0], v[1], v[2], v[3]};
    const float momentum = 0.1f, eps = 1e-5f;
    const float *x = ref_f32(pre, "x", nx), *gamma = ref_f32(pre, "gamma", C);
    const float *beta = ref_f32(pre, "beta", C);
    const float *rm_in = ref_f32(pre, "running_mean_in", C);
    const float *rv_in = ref_f32(pre, "running_var_in", C);
    const float *y_ref = ref_f32(pre, "y", nx), *sm_ref = ref_f32(pre, "saved_mean", C);
    const float *si_ref = ref_f32(pre, "saved_invstd", C);
    const float *rm_ref = ref_f32(pre, "running_mean_out", C);
    const float *rv_ref = ref_f32(pre, "running_var_out", C);
    const float *dy = ref_f32(pre, "dy", nx), *dx_ref = ref_f32(pre, "dx", nx);
    const float *dg_ref = ref_f32(pre, "dgamma", C), *dbt_ref = ref_f32(pre, "dbeta", C);
    const float *ye_ref = ref_f32(pre, "y_eval", nx);
    if (!x || !gamma || !beta || !rm_in || !rv_in || !y_ref || !sm_ref || !si_ref || !rm_ref ||
        !rv_ref || !dy || !dx_ref || !dg_ref || !dbt_ref || !ye_ref)
        return;
    printf("bn %s: N=%lld C=%lld HW=%lld\n", name, (long long)N, (long long)C, (long long)HW);

    float *y = buf(nx, NAN), *sm = buf(C, NAN), *si = buf(C, NAN);
    float *rm = buf(C, 0.0f), *rv = buf(C, 0.0f);
    memcpy(rm, rm_in, (size_t)C * sizeof(float));
    memcpy(rv, rv_in, (size_t)C * sizeof(float));
    rvg_bn_forward_train_ref(y, sm, si, rm, rv, x, gamma, beta, N, C, HW, momentum, eps);
    g_L = 1;
    snprintf(what, sizeof what, "bn %s train y", name);
    close_tol(what, y, y_ref, nx, TOL_BN, dims, 4);
    snprintf(what, sizeof what, "bn %s saved_mean", name);
    close_tol(what, sm, sm_ref, C, TOL_BN, NULL, 0);
    snprintf(what, sizeof what, "bn %s saved_invstd", name);
    close_tol(what, si, si_ref, C, TOL_BN, NULL, 0);
    snprintf(what, sizeof what, "bn %s running_mean", name);
    close_tol(what, rm, rm_ref, C, TOL_BN_RUNNING, NULL, 0);
    snprintf(what, sizeof what, "bn %s running_var (unbiased)", name);
    close_tol(what, rv, rv_ref, C, TOL_BN_RUNNING, NULL, 0);

    /* NULL running stats: skipped, same output. */
    float *y2 = buf(nx, NAN);
    rvg_bn_forward_train_ref(y2, sm, si, NULL, NULL, x, gamma, beta, N, C, HW, momentum, eps);
    snprintf(what, sizeof what, "bn %s train y (no running stats)", name);
    close_tol(what, y2, y_ref, nx, TOL_BN, dims, 4);

    float *dx = buf(nx, 0.0f), *dg = buf(C, 0.0f), *dbt = buf(C, 0.0f);
    rvg_bn_backward_ref(dx, dg, dbt, dy, x, sm, si, gamma, N, C, HW);
    g_L = 1;
    snprintf(what, sizeof what, "bn %s dx", name);
    close_tol(what, dx, dx_ref, nx, TOL_BN_DX, dims, 4);
    g_L = N * HW;
    snprintf(what, sizeof what, "bn %s dgamma", name);
    close_tol(what, dg, dg_ref, C, TOL_BN_DPARAM, NULL, 0);
    snprintf(what, sizeof what, "bn %s dbeta", name);
    close_tol(what, dbt, dbt_ref, C, TOL_BN_DPARAM, NULL, 0);

    /* Accumulation with NULL skipping: dx alone, then dgamma and dbeta alone. */
    rvg_bn_backward_ref(dx, NULL, NULL, dy, x, sm, si, gamma, N, C, HW);
    rvg_bn_backward_ref(NULL, dg, dbt, dy, x, sm, si, gamma, N, C, HW);
    float *dx2 = scaled(dx_ref, nx, 2.0f), *dg2 = scaled(dg_ref, C, 2.0f);
    float *dbt2 = scaled(dbt_ref, C, 2.0f);
    g_L = 2;
    snprintf(what, sizeof what, "bn %s dx accumulates (x2)", name);
    close_tol(what, dx, dx2, nx, TOL_BN_DX, dims, 4);
    g_L = 2 * N * HW;
    snprintf(what, sizeof what, "bn %s dgamma accumulates (x2)", name);
    close_tol(what, dg, dg2, C, TOL_BN_DPARAM, NULL, 0);
    snprintf(what, sizeof what, "bn %s dbeta accumulates (x2)", name);
    close_tol(what, dbt, dbt2, C, TOL_BN_DPARAM, NULL, 0);

    /* Eval, out of place and in place. */
    g_L = 1;
    float *ye = buf(nx, NAN);
    rvg_bn_forward_eval_ref(ye, x, gamma, beta, rm_in, rv_in, N, C, HW, eps);
    snprintf(what, sizeof what, "bn %s eval y", name);
    close_tol(what, ye, ye_ref, nx, TOL_BN, dims, 4);
    memcpy(ye, x, (size_t)nx * sizeof(float));
    rvg_bn_forward_eval_ref(ye, ye, gamma, beta, rm_in, rv_in, N, C, HW, eps);
    snprintf(what, sizeof what, "bn %s eval y (in place)", name);
    close_tol(what, ye, ye_ref, nx, TOL_BN, dims, 4);

    rvg_free(y);
    rvg_free(y2);
    rvg_free(sm);
    rvg_free(si);
    rvg_free(rm);
    rvg_free(rv);
    rvg_free(dx);
    rvg_free(dg);
    rvg_free(dbt);
    rvg_free(dx2);
    rvg_free(dg2);
    rvg_free(dbt2);
    rvg_free(ye);
}

/* ---- pointwise: ReLU, sigmoid, GAP, channel scale ------------------------------------------ */

static const rvg_tensor *ref_tensor(const char *name) {
    const rvg_tensor *t = rvg_dict_get(g_ref, name);
    if (!t || t->dtype != RVG_DTYPE_F32) {
        fprintf(stderr, "FAILED bundle tensor %s missing or wrong\n", name);
        CHECK(0);
        return NULL;
    }
    return t;
}

typedef void (*act_fwd)(float *y, const float *x, int64_t n);
typedef void (*act_bwd)(float *dx, const float *dy, const float *y, int64_t n);

static void test_activation(const char *op, act_fwd fwd, act_bwd bwd, tol t) {
    char pre[64], what[128];
    snprintf(pre, sizeof pre, "%s.", op);
    const rvg_tensor *tx = ref_tensor(strcat(strcpy(what, pre), "x"));
    if (!tx)
        return;
    const int64_t n = rvg_tensor_numel(tx);
    const float *x = tx->data, *y_ref = ref_f32(pre, "y", n), *dy = ref_f32(pre, "dy", n);
    const float *dx_ref = ref_f32(pre, "dx", n);
    if (!y_ref || !dy || !dx_ref)
        return;
    g_L = 1;
    float *y = buf(n, NAN);
    fwd(y, x, n);
    snprintf(what, sizeof what, "%s y", op);
    close_tol(what, y, y_ref, n, t, tx->shape, tx->ndim);
    memcpy(y, x, (size_t)n * sizeof(float));
    fwd(y, y, n);
    snprintf(what, sizeof what, "%s y (in place)", op);
    close_tol(what, y, y_ref, n, t, tx->shape, tx->ndim);

    float *dx = buf(n, 0.0f);
    bwd(dx, dy, y, n);
    snprintf(what, sizeof what, "%s dx", op);
    close_tol(what, dx, dx_ref, n, t, tx->shape, tx->ndim);
    bwd(dx, dy, y, n);
    float *dx2 = scaled(dx_ref, n, 2.0f);
    snprintf(what, sizeof what, "%s dx accumulates (x2)", op);
    close_tol(what, dx, dx2, n, t, tx->shape, tx->ndim);
    rvg_free(y);
    rvg_free(dx);
    rvg_free(dx2);
}

static void test_gap(void) {
    const rvg_tensor *tx = ref_tensor("gap.x");
    if (!tx || tx->ndim != 4)
        return;
    const int64_t N = tx->shape[0], C = tx->shape[1], HW = tx->shape[2] * tx->shape[3];
    const int64_t nx = N * C * HW;
    const float *x = tx->data, *y_ref = ref_f32("gap.", "y", N * C);
    const float *dy = ref_f32("gap.", "dy", N * C), *dx_ref = ref_f32("gap.", "dx", nx);
    if (!y_ref || !dy || !dx_ref)
        return;
    float *y = buf(N * C, NAN), *dx = buf(nx, 0.0f);
    g_L = HW;
    rvg_gap_forward_ref(y, x, N, C, HW);
    close_tol("gap y", y, y_ref, N * C, TOL_POOL, NULL, 0);
    g_L = 1;
    rvg_gap_backward_ref(dx, dy, N, C, HW);
    close_tol("gap dx", dx, dx_ref, nx, TOL_POOL, tx->shape, 4);
    rvg_gap_backward_ref(dx, dy, N, C, HW);
    float *dx2 = scaled(dx_ref, nx, 2.0f);
    close_tol("gap dx accumulates (x2)", dx, dx2, nx, TOL_POOL, tx->shape, 4);
    rvg_free(y);
    rvg_free(dx);
    rvg_free(dx2);
}

static void test_channel_scale(void) {
    const char *pre = "channel_scale.";
    const rvg_tensor *tx = ref_tensor("channel_scale.x");
    if (!tx || tx->ndim != 4)
        return;
    const int64_t N = tx->shape[0], C = tx->shape[1], HW = tx->shape[2] * tx->shape[3];
    const int64_t nx = N * C * HW;
    const float *x = tx->data, *sc = ref_f32(pre, "s", N * C), *y_ref = ref_f32(pre, "y", nx);
    const float *dy = ref_f32(pre, "dy", nx), *dx_ref = ref_f32(pre, "dx", nx);
    const float *ds_ref = ref_f32(pre, "ds", N * C);
    if (!sc || !y_ref || !dy || !dx_ref || !ds_ref)
        return;
    float *y = buf(nx, NAN), *dx = buf(nx, 0.0f), *ds = buf(N * C, 0.0f);
    g_L = 1;
    rvg_channel_scale_forward_ref(y, x, sc, N, C, HW);
    close_tol("channel_scale y", y, y_ref, nx, TOL_EXACT, tx->shape, 4);
    memcpy(y, x, (size_t)nx * sizeof(float));
    rvg_channel_scale_forward_ref(y, y, sc, N, C, HW);
    close_tol("channel_scale y (in place)", y, y_ref, nx, TOL_EXACT, tx->shape, 4);
    rvg_channel_scale_backward_ref(dx, ds, dy, x, sc, N, C, HW);
    close_tol("channel_scale dx", dx, dx_ref, nx, TOL_EXACT, tx->shape, 4);
    g_L = HW;
    close_tol("channel_scale ds", ds, ds_ref, N * C, TOL_POOL, NULL, 0);
    rvg_channel_scale_backward_ref(dx, NULL, dy, x, sc, N, C, HW);
    rvg_channel_scale_backward_ref(NULL, ds, dy, x, sc, N, C, HW);
    float *dx2 = scaled(dx_ref, nx, 2.0f), *ds2 = scaled(ds_ref, N * C, 2.0f);
    g_L = 1;
    close_tol("channel_scale dx accumulates (x2)", dx, dx2, nx, TOL_EXACT, tx->shape, 4);
    g_L = 2 * HW;
    close_tol("channel_scale ds accumulates (x2)", ds, ds2, N * C, TOL_POOL, NULL, 0);
    rvg_free(y);
    rvg_free(dx);
    rvg_free(ds);
    rvg_free(dx2);
    rvg_free(ds2);
}

/* ---- linear -------------------------------------------------------------------------------- */

static void test_linear(const char *name) {
    char pre[160], what[200];
    snprintf(pre, sizeof pre, "linear.%s.", name);
    int64_t v[3];
    if (!ref_shape(pre, v, 3))
        return;
    const int64_t N = v[0], C = v[1], K = v[2];
    const float *x = ref_f32(pre, "x", N * C), *w = ref_f32(pre, "w", K * C);
    const float *b = ref_f32(pre, "b", K), *y_ref = ref_f32(pre, "y", N * K);
    const float *dy = ref_f32(pre, "dy", N * K), *dx_ref = ref_f32(pre, "dx", N * C);
    const float *dw_ref = ref_f32(pre, "dw", K * C), *db_ref = ref_f32(pre, "db", K);
    if (!x || !w || !b || !y_ref || !dy || !dx_ref || !dw_ref || !db_ref)
        return;
    const int64_t ydims[2] = {N, K}, xdims[2] = {N, C}, wdims[2] = {K, C};
    float *y = buf(N * K, NAN);
    rvg_linear_forward_ref(y, x, w, b, N, C, K);
    g_L = C;
    snprintf(what, sizeof what, "linear %s y", name);
    close_tol(what, y, y_ref, N * K, TOL_LINEAR, ydims, 2);

    float *dx = buf(N * C, 0.0f), *dw = buf(K * C, 0.0f), *db = buf(K, 0.0f);
    rvg_linear_backward_ref(dx, dw, db, dy, x, w, N, C, K);
    g_L = K;
    snprintf(what, sizeof what, "linear %s dx", name);
    close_tol(what, dx, dx_ref, N * C, TOL_LINEAR, xdims, 2);
    g_L = N;
    snprintf(what, sizeof what, "linear %s dw", name);
    close_tol(what, dw, dw_ref, K * C, TOL_LINEAR, wdims, 2);
    snprintf(what, sizeof what, "linear %s db", name);
    close_tol(what, db, db_ref, K, TOL_LINEAR, NULL, 0);

    rvg_linear_backward_ref(dx, NULL, NULL, dy, x, w, N, C, K);
    rvg_linear_backward_ref(NULL, dw, db, dy, x, w, N, C, K);
    float *dx2 = scaled(dx_ref, N * C, 2.0f), *dw2 = scaled(dw_ref, K * C, 2.0f);
    float *db2 = scaled(db_ref, K, 2.0f);
    g_L = 2 * K;
    snprintf(what, sizeof what, "linear %s dx accumulates (x2)", name);
    close_tol(what, dx, dx2, N * C, TOL_LINEAR, xdims, 2);
    g_L = 2 * N;
    snprintf(what, sizeof what, "linear %s dw accumulates (x2)", name);
    close_tol(what, dw, dw2, K * C, TOL_LINEAR, wdims, 2);
    snprintf(what, sizeof what, "linear %s db accumulates (x2)", name);
    close_tol(what, db, db2, K, TOL_LINEAR, NULL, 0);

    /* No bias: y - b must match. */
    float *yb = buf(N * K, NAN), *ynb = buf(N * K, 0.0f);
    rvg_linear_forward_ref(yb, x, w, NULL, N, C, K);
    for (int64_t i = 0; i < N * K; i++)
        ynb[i] = y_ref[i] - b[i % K];
    g_L = C;
    snprintf(what, sizeof what, "linear %s y (no bias)", name);
    close_tol(what, yb, ynb, N * K, TOL_LINEAR, ydims, 2);

    rvg_free(y);
    rvg_free(dx);
    rvg_free(dw);
    rvg_free(db);
    rvg_free(dx2);
    rvg_free(dw2);
    rvg_free(db2);
    rvg_free(yb);
    rvg_free(ynb);
}

/* ---- softmax cross-entropy ----------------------------------------------------------------- */

/* One (logits, target) pair: loss and dlogits against torch; target from the bundle, or built
 * from the labels with `smoothing` when build_from_labels. */
static void xent_one(const char *pre, const char *name, const char *tag, const char *logits_key,
                     int build_from_labels, float smoothing, int64_t N, int64_t K) {
    char sub[200], what[240];
    snprintf(sub, sizeof sub, "%s%s.", pre, tag);
    const float *z = ref_f32(pre, logits_key, N * K);
    const float *t_ref = ref_f32(sub, "target", N * K), *loss_ref = ref_f32(sub, "loss", 1);
    const float *dz_ref = ref_f32(sub, "dlogits", N * K);
    if (!z || !t_ref || !loss_ref || !dz_ref)
        return;
    const int64_t dims[2] = {N, K};
    float *target = buf(N * K, NAN);
    if (build_from_labels) {
        char key[200];
        snprintf(key, sizeof key, "%slabels", pre);
        const rvg_tensor *tl = rvg_dict_get(g_ref, key);
        CHECK(tl && tl->dtype == RVG_DTYPE_I32 && rvg_tensor_numel(tl) == N);
        if (!tl || tl->dtype != RVG_DTYPE_I32 || rvg_tensor_numel(tl) != N) {
            rvg_free(target);
            return;
        }
        rvg_targets_from_labels(target, (const int32_t *)tl->data, N, K, smoothing);
        g_L = 1;
        snprintf(what, sizeof what, "targets_from_labels %s %s", name, tag);
        close_tol(what, target, t_ref, N * K, TOL_EXACT, dims, 2);
    } else {
        memcpy(target, t_ref, (size_t)(N * K) * sizeof(float));
    }
    float *dz = buf(N * K, NAN);
    const float loss = rvg_softmax_xent_ref(dz, z, target, N, K);
    /* The loss and dlogits errors scale with the logits' magnitude (one rounding of z). */
    const float zmax = rvg_test_max_abs(z, N * K);
    tol tl = {TOL_XENT.atol * (1.0f + zmax), TOL_XENT.rtol};
    g_L = 1;
    snprintf(what, sizeof what, "xent %s %s loss", name, tag);
    close_tol(what, &loss, loss_ref, 1, tl, NULL, 0);
    snprintf(what, sizeof what, "xent %s %s dlogits", name, tag);
    close_tol(what, dz, dz_ref, N * K, TOL_XENT, dims, 2);
    /* dlogits == NULL: loss only. */
    const float loss2 = rvg_softmax_xent_ref(NULL, z, target, N, K);
    CHECK(loss2 == loss);
    rvg_free(target);
    rvg_free(dz);
}

static void test_xent(const char *name) {
    char pre[160];
    snprintf(pre, sizeof pre, "xent.%s.", name);
    int64_t v[2];
    if (!ref_shape(pre, v, 2))
        return;
    const int64_t N = v[0], K = v[1];
    printf("xent %s: N=%lld K=%lld\n", name, (long long)N, (long long)K);
    xent_one(pre, name, "hard", "logits", 1, 0.0f, N, K);
    xent_one(pre, name, "hard_big", "logits_big", 1, 0.0f, N, K);
    xent_one(pre, name, "smooth", "logits", 1, 0.1f, N, K);
    xent_one(pre, name, "mixup", "logits", 0, 0.0f, N, K);
    xent_one(pre, name, "mixup_smooth", "logits", 0, 0.0f, N, K);
}

int main(int argc, char **argv) {
    if (argc < 2)
        rvg_test_skip("usage: test_torch_ops REF_DIR (tests/ref/gen_ops.py writes REF_DIR)");
    char path[4096];
    snprintf(path, sizeof path, "%s/ops.safetensors", argv[1]);
    /* ctest runs gen_ops first; when it skipped (no torch) there is no bundle and we skip too. A
     * bundle that is present but does not load is a failure. */
    FILE *probe = fopen(path, "rb");
    if (!probe)
        rvg_test_skip("no reference bundle (tests/ref/gen_ops.py needs /usr/bin/python3 + torch)");
    fclose(probe);
    rvg_dict *d = NULL;
    rvg_status st = rvg_safetensors_load(&d, path);
    if (st != RVG_OK) {
        fprintf(stderr, "FAILED cannot load %s: %s: %s\n", path, rvg_status_str(st),
                rvg_last_error());
        return 1;
    }
    g_ref = d;
    printf("reference: %s (torch %s)\n", path,
           rvg_dict_meta(d, "torch") ? rvg_dict_meta(d, "torch") : "?");

    for_each_case("conv_cases", test_conv);
    for_each_case("bn_cases", test_bn);
    test_activation("relu", rvg_relu_forward_ref, rvg_relu_backward_ref, TOL_EXACT);
    test_activation("sigmoid", rvg_sigmoid_forward_ref, rvg_sigmoid_backward_ref, TOL_SIGMOID);
    test_gap();
    test_channel_scale();
    for_each_case("linear_cases", test_linear);
    for_each_case("xent_cases", test_xent);

    /* rvg_conv_shape_finish on a shape torch documents: floor((H + 2p - R) / s) + 1. */
    rvg_conv_shape s = {.N = 1, .C = 3, .H = 224, .W = 223, .K = 48, .R = 3, .S = 3, .stride = 2,
                        .pad = 1, .G = 1};
    rvg_conv_shape_finish(&s);
    CHECK(s.P == 112 && s.Q == 112);

    rvg_dict_free(d);
    return rvg_test_finish();
}
