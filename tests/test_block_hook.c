/* test_block_hook.c - rvg_plan_set_block_hook: called once per block after its ReLU, in order,
 * with the right sizes and (for SE blocks) once more after the SE's ReLU, on both the fast and the
 * reference path; an edit of a block's output reaches the logits (the next block reads it) and the
 * gradients (backward reads the ReLU mask from it); NULL turns the hook off.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rvg/model.h"
#include "rvg/ops.h"

enum { N = 2, SIZE = 32, MAX_CALLS = 64 };

typedef struct {
    int calls;
    int64_t block[MAX_CALLS];
    rvg_hook_point at[MAX_CALLS];
    int64_t numel[MAX_CALLS];
    int training[MAX_CALLS];
    int64_t zero_block; /* >= 0: set that block's output to 0 */
} record;

static void on_block(void *ctx, int64_t block, rvg_hook_point at, float *data, int64_t numel,
                     int training) {
    record *r = ctx;
    if (r->calls < MAX_CALLS) {
        r->block[r->calls] = block;
        r->at[r->calls] = at;
        r->numel[r->calls] = numel;
        r->training[r->calls] = training;
    }
    r->calls++;
    if (block == r->zero_block && at == RVG_HOOK_OUTPUT)
        memset(data, 0, sizeof(float) * (size_t)numel);
}

static void run(const char *arch_name, int se) {
    rvg_arch a;
    CHECK_OK(rvg_arch_parse(&a, arch_name));
    a.in_ch = 3;
    a.classes = 5;
    rvg_model *m = NULL;
    rvg_plan *p = NULL;
    CHECK_OK(rvg_model_new(&m, &a, RVG_FORM_TRAIN));
    if (!m)
        return;
    rvg_model_init(m, 7);
    CHECK_OK(rvg_plan_new(&p, m, N, SIZE, SIZE));
    if (!p) {
        rvg_model_free(m);
        return;
    }
    float *x = malloc(sizeof(float) * N * 3 * SIZE * SIZE);
    for (int i = 0; i < N * 3 * SIZE * SIZE; i++)
        x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    const int64_t nb = rvg_model_block_count(m), classes = a.classes;
    const float *logits;
    float base[N * 5], dl[N * 5];

    /* calls: one per block (two for SE blocks), in order, sizes (n, K, P, Q) and (n, K/16) */
    record r = {0};
    r.zero_block = -1;
    rvg_plan_set_block_hook(p, on_block, &r);
    CHECK_OK(rvg_model_forward(m, p, x, N, 1, &logits));
    CHECK(r.calls == (se ? 2 : 1) * nb);
    int order_ok = 1;
    int64_t side = SIZE, j = 0;
    for (int64_t i = 0; i < nb && j < MAX_CALLS; i++) {
        const rvg_block *b = rvg_model_block(m, i);
        side = (side + 2 - 3) / b->stride + 1;
        if (se) {
            order_ok &= r.block[j] == i && r.at[j] == RVG_HOOK_SE_HIDDEN &&
                        r.numel[j] == N * b->se_hidden && r.training[j] == 1;
            j++;
        }
        order_ok &= r.block[j] == i && r.at[j] == RVG_HOOK_OUTPUT &&
                    r.numel[j] == N * b->K * side * side && r.training[j] == 1;
        j++;
    }
    CHECK(order_ok);

    /* without a hook: the baseline (eval mode: the running statistics do not move) */
    rvg_plan_set_block_hook(p, NULL, NULL);
    CHECK_OK(rvg_model_forward(m, p, x, N, 0, &logits));
    memcpy(base, logits, sizeof base);

    /* a hook that only reads changes nothing (same logits bit for bit) */
    rvg_plan_set_block_hook(p, on_block, &r);
    r.calls = 0;
    CHECK_OK(rvg_model_forward(m, p, x, N, 0, &logits));
    CHECK(memcmp(base, logits, sizeof base) == 0);
    CHECK(r.calls > 0 && r.training[0] == 0);

    /* zeroing the last block's output: the pooled features are 0, so the logits are the bias */
    r.zero_block = nb - 1;
    CHECK_OK(rvg_model_forward(m, p, x, N, 0, &logits));
    const rvg_param *fc_b = rvg_model_find(m, "linear.bias");
    CHECK(fc_b != NULL);
    if (fc_b)
        for (int n = 0; n < N; n++)
            CHECK(memcmp(logits + n * classes, fc_b->data, sizeof(float) * classes) == 0);

    /* NULL turns it off: back to the baseline, no more calls */
    rvg_plan_set_block_hook(p, NULL, &r);
    r.calls = 0;
    CHECK_OK(rvg_model_forward(m, p, x, N, 0, &logits));
    CHECK(r.calls == 0);
    CHECK(memcmp(base, logits, sizeof base) == 0);

    /* ... and in training, backward sees an all-zero ReLU mask there: no gradient reaches the
     * blocks before it, nor that block's own weights */
    rvg_plan_set_block_hook(p, on_block, &r);
    CHECK_OK(rvg_model_forward(m, p, x, N, 1, &logits));
    for (int i = 0; i < N * 5; i++)
        dl[i] = (float)(i % 3) - 1.0f;
    rvg_model_zero_grad(m);
    CHECK_OK(rvg_model_backward(m, p, dl, NULL));
    const rvg_param *w0 = rvg_model_find(m, "stage0.rbr_dense.conv.weight");
    const rvg_param *fc_w = rvg_model_find(m, "linear.weight");
    double g0 = 0, gfc = 0;
    for (int64_t k = 0; w0 && k < w0->numel; k++)
        g0 += (double)w0->grad[k] * w0->grad[k];
    for (int64_t k = 0; fc_w && k < fc_w->numel; k++)
        gfc += (double)fc_w->grad[k] * fc_w->grad[k];
    CHECK(w0 && g0 == 0.0);
    CHECK(fc_w && gfc == 0.0); /* the features it multiplies are 0 */

    printf("  ok   %s (%s path): %lld blocks, hook calls and edits as documented\n", arch_name,
           rvg_ops_using_ref() ? "reference" : "fast", (long long)nb);
    free(x);
    rvg_plan_free(p);
    rvg_model_free(m);
}

int main(void) {
    const char *tiny = "custom:blocks=1,1,2,1:width=0.25,0.25,0.25,0.25";
    const char *tiny_se = "custom:blocks=1,1,2,1:width=0.5,0.5,0.5,0.5:se=1";
    for (int ref = 0; ref < 2; ref++) {
        rvg_ops_force_ref(ref);
        run(tiny, 0);
        run(tiny_se, 1);
    }
    rvg_ops_force_ref(0);
    return rvg_test_finish();
}
