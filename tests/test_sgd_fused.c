/* test_sgd_fused.c - rvg_sgd_step_fused (the training loop's step) against the calls it fuses:
 * rvg_sgd_step, rvg_ema_update and the next step's rvg_model_zero_grad, one after the other.
 * Two copies of a model take the same three training steps, one each way, under every SGD
 * variant, with and without an average, on 1 and 2 threads: weights, momentum, BN statistics,
 * the average and its counters must agree bit for bit, and the fused copy's gradients must be
 * zero after each step. Bad calls must fail before changing anything. (PyTorch checks the fused
 * step's arithmetic in test_torch_model, which trains through it.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef RVG_HAVE_OPENMP
#include <omp.h>
#endif

#include "harness.h"
#include "rvg/model.h"
#include "rvg/ops.h"
#include "rvg/train.h"

enum { N = 2, SIZE = 12, STEPS = 3 };

/* A network whose larger tensors (stage 4: 512 x 256 x 9) are split between threads. */
static const char *ARCH = "custom:blocks=1,1,2,1:width=1,1,1,1";

typedef struct {
    rvg_model *m, *ema;
    rvg_plan *p;
} replica;

static int replica_new(replica *r, int with_ema) {
    rvg_arch a;
    memset(r, 0, sizeof *r);
    if (rvg_arch_parse(&a, ARCH) != RVG_OK)
        return 0;
    a.in_ch = 3;
    a.classes = 7;
    if (rvg_model_new(&r->m, &a, RVG_FORM_TRAIN) != RVG_OK)
        return 0;
    rvg_model_init(r->m, 11);
    if (rvg_plan_new(&r->p, r->m, N, SIZE, SIZE) != RVG_OK)
        return 0;
    if (with_ema && (rvg_model_new(&r->ema, &a, RVG_FORM_TRAIN) != RVG_OK ||
                     rvg_ema_update(r->ema, r->m, 0.0f) != RVG_OK))
        return 0;
    return 1;
}

static void replica_free(replica *r) {
    rvg_plan_free(r->p);
    rvg_model_free(r->m);
    rvg_model_free(r->ema);
}

/* forward and backward of a fixed batch; the logits' gradient depends on the step */
static int forward_backward(replica *r, const float *x, int64_t step) {
    const float *logits;
    float dl[N * 7];
    if (rvg_model_forward(r->m, r->p, x, N, 1, &logits) != RVG_OK)
        return 0;
    for (int i = 0; i < N * 7; i++)
        dl[i] = logits[i] * 0.25f + (float)((i + step) % 5) * 0.1f - 0.2f;
    return rvg_model_backward(r->m, r->p, dl, NULL) == RVG_OK;
}

static int same_arena(float *(*get)(rvg_model *, int64_t *), rvg_model *a, rvg_model *b) {
    int64_t na, nb;
    const float *pa = get(a, &na), *pb = get(b, &nb);
    return na == nb && memcmp(pa, pb, (size_t)na * sizeof(float)) == 0;
}

static int all_zero(const float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (v[i] != 0.0f)
            return 0;
    return 1;
}

static void compare(const char *label, const rvg_sgd_config *c, int with_ema, int threads) {
#ifdef RVG_HAVE_OPENMP
    omp_set_num_threads(threads);
#endif
    replica a, b;
    int ok = replica_new(&a, with_ema) && replica_new(&b, with_ema);
    CHECK(ok);
    float *x = malloc(sizeof(float) * N * 3 * SIZE * SIZE);
    CHECK(x != NULL);
    if (!ok || !x)
        goto done;
    for (int i = 0; i < N * 3 * SIZE * SIZE; i++)
        x[i] = (float)((i * 29) % 97) / 48.0f - 1.0f;
    int64_t n;
    const float *init = rvg_model_params(a.m, &n);
    float *start = malloc((size_t)n * sizeof(float));
    CHECK(start != NULL);
    if (!start)
        goto done;
    memcpy(start, init, (size_t)n * sizeof(float));
    int zero_after = 1, steps_ok = 1;
    for (int64_t it = 0; it < STEPS; it++) {
        const float lr = 0.05f / (float)(it + 1), d = rvg_ema_decay_at(0.9f, it);
        /* the calls apart */
        rvg_model_zero_grad(a.m);
        steps_ok &= forward_backward(&a, x, it);
        rvg_sgd_step(a.m, c, lr);
        if (with_ema)
            steps_ok &= rvg_ema_update(a.ema, a.m, d) == RVG_OK;
        /* fused: the gradients start zero (a new model's) and the step zeroes them again */
        steps_ok &= forward_backward(&b, x, it);
        steps_ok &= rvg_sgd_step_fused(b.m, c, lr, b.ema, d) == RVG_OK;
        zero_after &= all_zero(rvg_model_grads(b.m, &n), n);
    }
    CHECK(steps_ok);
    CHECK(zero_after);
    int same = same_arena(rvg_model_params, a.m, b.m) && same_arena(rvg_model_momentum, a.m, b.m) &&
               same_arena(rvg_model_buffers, a.m, b.m);
    CHECK(same);
    /* not vacuous: the weights moved */
    CHECK(memcmp(start, rvg_model_params(b.m, &n), (size_t)n * sizeof(float)) != 0);
    int same_ema = 1;
    if (with_ema) {
        int64_t ca, cb;
        const int64_t *ka = rvg_model_bn_counters(a.ema, &ca);
        const int64_t *kb = rvg_model_bn_counters(b.ema, &cb);
        same_ema = same_arena(rvg_model_params, a.ema, b.ema) &&
                   same_arena(rvg_model_buffers, a.ema, b.ema) && ca == cb &&
                   memcmp(ka, kb, (size_t)ca * sizeof(int64_t)) == 0 && kb[0] == STEPS;
        CHECK(same_ema);
    }
    printf("  %s %-28s %s, %d thread%s: %d steps, the same bits%s\n",
           same && same_ema && zero_after ? "ok  " : "BAD ", label,
           with_ema ? "with an average" : "no average", threads, threads > 1 ? "s" : "", STEPS,
           zero_after ? ", gradients zero after each" : "");
    free(start);
done:
    free(x);
    replica_free(&a);
    replica_free(&b);
}

/* Bad calls fail with the documented status and leave the model as it was. */
static void errors(void) {
    replica r;
    CHECK(replica_new(&r, 1));
    if (!r.m || !r.ema) {
        replica_free(&r);
        return;
    }
    rvg_sgd_config c = rvg_sgd_defaults();
    rvg_arch a;
    CHECK_OK(rvg_arch_parse(&a, ARCH));
    a.in_ch = 3;
    a.classes = 7;
    rvg_model *deploy = NULL, *other = NULL;
    CHECK_OK(rvg_model_new(&deploy, &a, RVG_FORM_DEPLOY));
    a.classes = 8;
    CHECK_OK(rvg_model_new(&other, &a, RVG_FORM_TRAIN));
    float x[N * 3 * SIZE * SIZE];
    for (int i = 0; i < N * 3 * SIZE * SIZE; i++)
        x[i] = (float)(i % 13) / 6.0f - 1.0f;
    CHECK(forward_backward(&r, x, 0));
    int64_t n, ng;
    const float *w = rvg_model_params(r.m, &n), *g = rvg_model_grads(r.m, &ng);
    float *w0 = malloc((size_t)n * sizeof(float)), *g0 = malloc((size_t)n * sizeof(float));
    CHECK(w0 && g0);
    if (w0 && g0) {
        memcpy(w0, w, (size_t)n * sizeof(float));
        memcpy(g0, g, (size_t)n * sizeof(float));
        CHECK(!all_zero(g0, n));
        if (deploy)
            CHECK_STATUS(rvg_sgd_step_fused(deploy, &c, 0.1f, NULL, 0.0f), RVG_STATUS_BAD_ARGUMENT);
        CHECK_STATUS(rvg_sgd_step_fused(r.m, &c, 0.1f, r.ema, 1.0f), RVG_STATUS_BAD_ARGUMENT);
        CHECK_STATUS(rvg_sgd_step_fused(r.m, &c, 0.1f, r.m, 0.5f), RVG_STATUS_BAD_ARGUMENT);
        if (other)
            CHECK_STATUS(rvg_sgd_step_fused(r.m, &c, 0.1f, other, 0.5f), RVG_STATUS_BAD_SHAPE);
        CHECK(memcmp(w0, w, (size_t)n * sizeof(float)) == 0);
        CHECK(memcmp(g0, g, (size_t)n * sizeof(float)) == 0);
    }
    free(w0);
    free(g0);
    rvg_model_free(deploy);
    rvg_model_free(other);
    replica_free(&r);
}

int main(void) {
    rvg_sgd_config plain = rvg_sgd_defaults();
    rvg_sgd_config nesterov = plain;
    nesterov.nesterov = 1;
    nesterov.weight_decay = 1e-3f;
    rvg_sgd_config bare = plain;
    bare.momentum = 0.0f;
    bare.weight_decay = 0.0f;
    rvg_sgd_config branch = plain;
    branch.decay_branch_bn = 1;
    branch.custom_l2 = 1;
    const struct {
        const char *label;
        const rvg_sgd_config *c;
    } cases[] = {{"momentum 0.9, wd 1e-4", &plain},
                 {"Nesterov, wd 1e-3", &nesterov},
                 {"no momentum, no decay", &bare},
                 {"custom L2, branch BN decay", &branch}};
    for (int threads = 1; threads <= 2; threads++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            for (int with_ema = 0; with_ema < 2; with_ema++)
                compare(cases[i].label, cases[i].c, with_ema, threads);
    errors();
    return rvg_test_finish();
}
