/* test_reparam.c - structural re-parameterisation is exact for every configuration.
 *
 * For every preset of SPEC §3 (and custom ones with groups, SE, odd channel counts, 1 input
 * channel), a train-form model with random weights and random non-trivial BN statistics is
 * converted; both forms run in inference mode on the same random input and their logits must
 * agree within 1e-5 x max|logit| (the bound: fp32 rounding of a different summation
 * order, ~1e-7 per layer, over up to 48 layers). Also checked: the train model is unchanged by the
 * conversion, a deploy model refuses a second conversion, and the deploy form survives a
 * safetensors round trip bit for bit.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "rvg/io.h"
#include "rvg/model.h"

static uint64_t rng = 0x1234567;

static float frand(float lo, float hi) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (hi - lo) * (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

/* Random BN state: gammas, betas, running means and variances away from 1 and 0. */
static void randomize_bn(rvg_model *m) {
    for (int64_t i = 0; i < rvg_model_param_count(m); i++) {
        rvg_param *p = rvg_model_param(m, i);
        for (int64_t k = 0; k < p->numel; k++) {
            switch (p->kind) {
            case RVG_PARAM_BN_WEIGHT:
            case RVG_PARAM_ID_BN_WEIGHT: p->data[k] = frand(0.5f, 1.5f); break;
            case RVG_BUFFER_RUNNING_MEAN: p->data[k] = frand(-0.3f, 0.3f); break;
            case RVG_BUFFER_RUNNING_VAR: p->data[k] = frand(0.5f, 2.0f); break;
            case RVG_PARAM_BIAS: p->data[k] = frand(-0.2f, 0.2f); break;
            default: break;
            }
        }
    }
}

static void check_arch(const char *spec, int64_t in_ch, int64_t classes, int64_t size, int64_t n) {
    rvg_arch a;
    CHECK_OK(rvg_arch_parse(&a, spec));
    a.in_ch = in_ch;
    a.classes = classes;
    rvg_model *m = NULL, *d = NULL, *d2 = NULL, *again = NULL;
    rvg_plan *pm = NULL, *pd = NULL;
    float *x = NULL, *lt = NULL, *before = NULL;
    CHECK_OK(rvg_model_new(&m, &a, RVG_FORM_TRAIN));
    if (!m)
        return;
    rvg_model_init(m, 7);
    randomize_bn(m);
    int64_t np;
    float *params = rvg_model_params(m, &np);
    before = malloc((size_t)np * sizeof(float));
    memcpy(before, params, (size_t)np * sizeof(float));

    CHECK_OK(rvg_model_reparam(m, &d));
    CHECK(memcmp(before, params, (size_t)np * sizeof(float)) == 0);
    CHECK_STATUS(rvg_model_reparam(d, &again), RVG_STATUS_BAD_ARGUMENT);

    x = malloc((size_t)(n * in_ch * size * size) * sizeof(float));
    for (int64_t i = 0; i < n * in_ch * size * size; i++)
        x[i] = frand(-1.f, 1.f);
    const float *logits;
    CHECK_OK(rvg_plan_new(&pm, m, n, size, size));
    CHECK_OK(rvg_plan_new(&pd, d, n, size, size));
    if (!pm || !pd)
        goto done;
    CHECK_OK(rvg_model_forward(m, pm, x, n, 0, &logits));
    lt = malloc((size_t)(n * classes) * sizeof(float));
    memcpy(lt, logits, (size_t)(n * classes) * sizeof(float));
    CHECK_OK(rvg_model_forward(d, pd, x, n, 0, &logits));
    char label[160];
    snprintf(label, sizeof label, "%s deploy vs train logits", spec);
    float scale = rvg_test_max_abs(lt, n * classes);
    int64_t dims[2] = {n, classes};
    rvg_test_close(label, logits, lt, n * classes, 1e-5f * scale, 0.f, dims, 2);

    /* deploy form through a file: same model, same logits */
    char path[256];
    snprintf(path, sizeof path, "/tmp/rvg_test_reparam_%d.safetensors", (int)getpid());
    CHECK_OK(rvg_model_save(d, path));
    CHECK_OK(rvg_model_load(&d2, path));
    remove(path);
    if (d2) {
        int64_t n1, n2;
        float *a1 = rvg_model_params(d, &n1), *a2 = rvg_model_params(d2, &n2);
        CHECK(n1 == n2 && memcmp(a1, a2, (size_t)n1 * sizeof(float)) == 0);
        CHECK(rvg_model_form(d2) == RVG_FORM_DEPLOY);
        CHECK(rvg_model_num_params(d2) == rvg_model_num_params(d));
    }
done:
    rvg_plan_free(pm);
    rvg_plan_free(pd);
    rvg_model_free(m);
    rvg_model_free(d);
    rvg_model_free(d2);
    free(x);
    free(lt);
    free(before);
}

int main(void) {
    /* Every preset at a small size (32x32 keeps the biggest, B3 and D2se, to seconds). */
    const char *const *presets = rvg_arch_presets();
    for (int i = 0; presets[i]; i++)
        check_arch(presets[i], 3, 10, 32, 2);
    /* Custom shapes: groups 2 and 4 on odd layers, SE, 1 input channel at 28x28, odd sizes. */
    check_arch("custom:blocks=1,2,3,1:width=0.25,0.5,0.5,0.5:groups=2@2,3:groups=4@5", 1, 7, 28, 3);
    check_arch("custom:blocks=2,2,2,1:width=0.5,0.5,0.5,0.5:se=1", 3, 5, 33, 2);
    check_arch("custom:blocks=1,1,1,1:width=0.1,0.2,0.3,0.4", 5, 3, 17, 1);
    return rvg_test_finish();
}
