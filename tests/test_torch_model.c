/* test_torch_model.c - whole networks against PyTorch (tests/ref/gen_model.py): eval logits, the
 * deploy conversion, training-mode logits, loss, every parameter gradient, BN running statistics
 * after a step, and every parameter after several SGD steps (momentum, weight decay with the
 * official exclusions, warm-up + cosine schedule; Nesterov, mixup targets and custom L2 in the
 * custom case), the weights' moving average over those steps (rvg_ema_update; small case) and
 * the global gradient norm and its clipping (rvg_clip_grad_norm; clip case). The
 * architecture is inferred from the tensor shapes (the bundles carry no metadata), which tests that
 * path too.
 *
 * The reference runs in float64, so every difference below is float32 rounding on our side.
 * Tolerances (one table, each with its reason):
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rvg/io.h"
#include "rvg/model.h"
#include "rvg/ops.h"
#include "rvg/train.h"

static const struct {
    const char *what;
    float rel; /* tolerance as a fraction of the largest |reference| value of the tensor */
    const char *why;
} TOL[] = {
    {"logits", 2e-4f, "fp32 through 20-50 layers: ~1e-6 per layer, amplified by BN with batch stats"},
    {"loss", 1e-5f, "log-sum-exp is done in double; the logits carry the error"},
    {"grad", 2e-3f, "training BN backward subtracts means of products: cancellation in fp32"},
    {"running", 1e-4f, "running statistics are batch means/variances of fp32 activations"},
    {"param", 1e-4f, "steps of lr*grad: the grad error is scaled down by the learning rate "
                     "(+ lr x the grad tolerance after a single step)"},
    {"deploy", 2e-6f, "conversion is a few multiply-adds per weight in fp32"},
    {"flip", 1e-4f, "a ReLU pre-activation this close to 0 may go either way in fp32 (see below)"},
};
enum { T_LOGITS, T_LOSS, T_GRAD, T_RUNNING, T_PARAM, T_DEPLOY, T_FLIP };

static int64_t meta_int(const rvg_dict *d, const char *k) {
    const char *v = rvg_dict_meta(d, k);
    return v ? atoll(v) : 0;
}

static float meta_float(const rvg_dict *d, const char *k) {
    const char *v = rvg_dict_meta(d, k);
    return v ? (float)atof(v) : 0.f;
}

/* The sub-dictionary of tensors whose names start with prefix, with the prefix removed. */
static rvg_dict *sub_dict(const rvg_dict *d, const char *prefix) {
    rvg_dict *s = rvg_dict_new();
    size_t n = strlen(prefix);
    for (int64_t i = 0; i < rvg_dict_count(d); i++) {
        const rvg_tensor *t = rvg_dict_at(d, i);
        if (strncmp(t->name, prefix, n) == 0)
            rvg_dict_add(s, t->name + n, t->dtype, t->ndim, t->shape, t->data);
    }
    return s;
}

static void compare(const char *label, const float *got, const rvg_tensor *want, int tol) {
    if (!want) {
        CHECK(!"reference tensor missing");
        return;
    }
    int64_t n = rvg_tensor_numel(want);
    float scale = rvg_test_max_abs((const float *)want->data, n);
    float atol = TOL[tol].rel * (scale > 1e-6f ? scale : 1e-6f);
    rvg_test_close(label, got, (const float *)want->data, n, atol, 0.f, want->shape, want->ndim);
}

/* The scale of the reference tensor under key (numel values): its largest |value|, or for a
 * sampled one the largest sample but at least 4 x its RMS (97 samples may miss the largest
 * entries); 0 when absent. */
static float ref_scale(const rvg_dict *b, const char *key, int64_t numel) {
    char k2[200];
    const rvg_tensor *w = rvg_dict_get(b, key);
    if (w)
        return rvg_test_max_abs(w->data, rvg_tensor_numel(w));
    snprintf(k2, sizeof k2, "sample.%s", key);
    const rvg_tensor *smp = rvg_dict_get(b, k2);
    snprintf(k2, sizeof k2, "norm.%s", key);
    const rvg_tensor *nrm = rvg_dict_get(b, k2);
    if (!smp || !nrm || numel < 1)
        return 0;
    double rms = ((const float *)nrm->data)[0] / sqrt((double)numel);
    return fmaxf(rvg_test_max_abs(smp->data, 97), (float)(4.0 * rms));
}

/* Compares got (numel values) with the reference stored under key, either whole or, for the big
 * networks, as 97 evenly spaced samples plus the L2 norm (see gen_model.py summarize()), within
 * TOL[tol] x the reference's scale plus slack (absolute). Returns 1 when within tolerance; prints
 * details only on failure. */
static int check_tensor(const rvg_dict *b, const char *key, const float *got, int64_t numel,
                        int tol, float slack) {
    char k2[200];
    const rvg_tensor *w = rvg_dict_get(b, key);
    if (w) {
        if (rvg_tensor_numel(w) != numel) {
            fprintf(stderr, "FAILED %s: %lld values, reference has %lld\n", key,
                    (long long)numel, (long long)rvg_tensor_numel(w));
            return 0;
        }
        float scale = fmaxf(rvg_test_max_abs(w->data, numel), 1e-6f), err = 0;
        for (int64_t k = 0; k < numel; k++)
            err = fmaxf(err, fabsf(got[k] - ((const float *)w->data)[k]));
        if (err <= TOL[tol].rel * scale + slack)
            return 1;
        rvg_test_close(key, got, w->data, numel, TOL[tol].rel * scale + slack, 0.f, w->shape,
                       w->ndim);
        return 0;
    }
    snprintf(k2, sizeof k2, "sample.%s", key);
    const rvg_tensor *smp = rvg_dict_get(b, k2);
    snprintf(k2, sizeof k2, "norm.%s", key);
    const rvg_tensor *nrm = rvg_dict_get(b, k2);
    if (!smp || !nrm) {
        fprintf(stderr, "FAILED reference for %s is missing\n", key);
        return 0;
    }
    const float *sv = smp->data;
    double norm = 0;
    for (int64_t k = 0; k < numel; k++)
        norm += (double)got[k] * got[k];
    norm = sqrt(norm);
    float want_norm = ((const float *)nrm->data)[0];
    int ok = fabs(norm - want_norm) <= TOL[tol].rel * fmax(want_norm, 1e-6) +
                                           slack * sqrt((double)numel);
    const float scale = fmaxf(ref_scale(b, key, numel), 1e-6f);
    for (int i = 0; i < 97; i++) {
        int64_t idx = (int64_t)nearbyint((double)i * (double)(numel - 1) / 96.0);
        if (!(fabsf(got[idx] - sv[i]) <= TOL[tol].rel * scale + slack)) {
            fprintf(stderr, "FAILED %s[%lld] = %.8g, reference %.8g\n", key, (long long)idx,
                    (double)got[idx], (double)sv[i]);
            ok = 0;
            break;
        }
    }
    if (!ok)
        fprintf(stderr, "FAILED %s: norm %.8g, reference %.8g\n", key, norm, (double)want_norm);
    return ok;
}

/* A ReLU whose pre-activation lies within rounding of zero can go either way, and one that goes
 * the other way than in PyTorch moves every gradient upstream of it by percents: the comparison
 * would then test the rounding, not the code. gen_model.py stores each block's pre-activation z of
 * every training forward ("pre.<step>.<block>", and "<block>.se" for the ReLU inside a
 * squeeze-excitation); after each ReLU this hook finds the outputs whose sign differs from z's
 * and, where |z| <= T_FLIP x max|z|, gives them the reference's value max(z, 0), so the masks
 * agree (backward reads them from the output). A sign that differs where z is far from zero is a
 * real error: counted in bad. */
typedef struct {
    const rvg_dict *b;
    const rvg_model *m;
    int64_t step;
    int64_t adopted, bad, missing;
} flip_ctx;

static void adopt_reference_masks(void *ctx, int64_t block, rvg_hook_point at, float *out,
                                  int64_t numel, int training) {
    flip_ctx *f = ctx;
    if (!training)
        return;
    char key[96];
    snprintf(key, sizeof key, "pre.%lld.%s%s", (long long)f->step,
             rvg_model_block(f->m, block)->prefix, at == RVG_HOOK_SE_HIDDEN ? ".se" : "");
    const rvg_tensor *t = rvg_dict_get(f->b, key);
    if (!t || rvg_tensor_numel(t) != numel) {
        f->missing++;
        return;
    }
    const float *z = t->data;
    float window = TOL[T_FLIP].rel * rvg_test_max_abs(z, numel);
    for (int64_t k = 0; k < numel; k++) {
        if ((out[k] > 0) == (z[k] > 0))
            continue;
        if (fabsf(z[k]) <= window) {
            out[k] = z[k] > 0 ? z[k] : 0.f;
            f->adopted++;
        } else {
            if (f->bad++ == 0)
                fprintf(stderr, "FAILED %s[%lld]: output %.8g, reference pre-activation %.8g\n",
                        key, (long long)k, (double)out[k], (double)z[k]);
        }
    }
}

static void run_case(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/model_%s.safetensors", dir, name);
    printf("case %s\n", name);
    rvg_dict *b = NULL;
    CHECK_OK(rvg_safetensors_load(&b, path));
    if (!b)
        return;
    int64_t steps = meta_int(b, "steps"), n = meta_int(b, "n"), size = meta_int(b, "size");
    int64_t in_ch = meta_int(b, "in_ch"), classes = meta_int(b, "classes");
    int64_t warmup = meta_int(b, "warmup"), total = meta_int(b, "total");
    float base_lr = meta_float(b, "base_lr");
    rvg_sgd_config cfg = rvg_sgd_defaults();
    cfg.weight_decay = meta_float(b, "weight_decay");
    cfg.nesterov = (int)meta_int(b, "nesterov");
    cfg.custom_l2 = (int)meta_int(b, "custom_l2");

    const float ema_decay = meta_float(b, "ema");
    const float clip = meta_float(b, "clip"); /* --clip-grad, 0 = off */
    int clipped = 0;
    rvg_dict *init = sub_dict(b, "init.");
    rvg_model *m = NULL, *d = NULL, *ema = NULL;
    rvg_plan *p = NULL, *pd = NULL;
    CHECK_OK(rvg_model_from_dict(&m, init));
    if (ema_decay > 0) /* the average starts as a copy of the initial model */
        CHECK_OK(rvg_model_from_dict(&ema, init));
    rvg_dict_free(init);
    if (!m || (ema_decay > 0 && !ema))
        goto done;
    CHECK(rvg_model_arch(m)->in_ch == in_ch && rvg_model_arch(m)->classes == classes);
    const float *x = rvg_dict_get(b, "x")->data, *target = rvg_dict_get(b, "target")->data;
    CHECK_OK(rvg_plan_new(&p, m, n, size, size));
    if (!p)
        goto done;
    const float *logits;
    char label[160];

    /* eval mode and conversion */
    CHECK_OK(rvg_model_forward(m, p, x, n, 0, &logits));
    compare("eval logits (train form)", logits, rvg_dict_get(b, "eval_logits"), T_LOGITS);
    CHECK_OK(rvg_model_reparam(m, &d));
    if (d) {
        int n_deploy = 0, bad_deploy = 0;
        for (int64_t i = 0; i < rvg_model_param_count(d); i++) {
            const rvg_param *q = rvg_model_param_c(d, i);
            if (!strstr(q->name, "rbr_reparam"))
                continue;
            snprintf(label, sizeof label, "deploy.%s", q->name);
            n_deploy++;
            bad_deploy += !check_tensor(b, label, q->data, q->numel, T_DEPLOY, 0.f);
        }
        printf("  %s %d deploy tensors compared with PyTorch's conversion, %d off\n",
               bad_deploy ? "BAD " : "ok  ", n_deploy, bad_deploy);
        CHECK(bad_deploy == 0);
        CHECK_OK(rvg_plan_new(&pd, d, n, size, size));
        if (pd) {
            CHECK_OK(rvg_model_forward(d, pd, x, n, 0, &logits));
            compare("eval logits (deploy form)", logits, rvg_dict_get(b, "eval_logits"),
                    T_LOGITS);
        }
    }

    /* training steps */
    float *dlogits = rvg_alloc((size_t)(n * classes) * sizeof(float));
    flip_ctx flips = {b, m, 0, 0, 0, 0};
    rvg_plan_set_block_hook(p, adopt_reference_masks, &flips);
    /* trained as `repvgg train` trains: the fused step zeroes the gradients after reading them */
    rvg_model_zero_grad(m);
    for (int64_t it = 0; it < steps; it++) {
        float lr = rvg_lr_at(base_lr, it, warmup, total);
        flips.step = it;
        CHECK_OK(rvg_model_forward(m, p, x, n, 1, &logits));
        float loss = rvg_softmax_xent_ref(dlogits, logits, target, n, classes);
        if (cfg.custom_l2) {
            rvg_custom_l2_grad(m, cfg.weight_decay);
            loss += (float)(0.5 * cfg.weight_decay * rvg_custom_l2_value(m));
        }
        if (it == 0) {
            compare("train logits", logits, rvg_dict_get(b, "logits"), T_LOGITS);
            compare("loss", &loss, rvg_dict_get(b, "loss"), T_LOSS);
        }
        CHECK_OK(rvg_model_backward(m, p, dlogits, NULL));
        if (it == 0) {
            int bad = 0, total_grads = 0;
            for (int64_t i = 0; i < rvg_model_param_count(m); i++) {
                const rvg_param *q = rvg_model_param_c(m, i);
                snprintf(label, sizeof label, q->grad ? "grad.%s" : "step1.%s", q->name);
                total_grads++;
                bad += !check_tensor(b, label, q->grad ? q->grad : q->data, q->numel,
                                     q->grad ? T_GRAD : T_RUNNING, 0.f);
            }
            printf("  %s %d gradient and running-statistic tensors compared, %d off\n",
                   bad ? "BAD " : "ok  ", total_grads, bad);
            CHECK(bad == 0);
        }
        if (clip > 0) {
            /* the global norm before clipping, as torch.nn.utils.clip_grad_norm_ returns it */
            const rvg_tensor *ref = rvg_dict_get(b, "grad_norms");
            double norm = -1.0;
            CHECK_OK(rvg_clip_grad_norm(m, clip, &norm));
            CHECK(ref && ref->dtype == RVG_DTYPE_F32 && ref->shape[0] == steps);
            if (ref && ref->shape[0] == steps) {
                const float want = ((const float *)ref->data)[it];
                const int ok = fabs(norm - want) <= TOL[T_GRAD].rel * want;
                printf("  %s step %lld: gradient norm %.6g, PyTorch %.6g (clip at %g)\n",
                       ok ? "ok  " : "BAD ", (long long)it + 1, norm, (double)want, (double)clip);
                CHECK(ok);
                clipped += want > clip;
            }
        }
        CHECK_OK(rvg_sgd_step_fused(m, &cfg, lr, ema, ema ? rvg_ema_decay_at(ema_decay, it) : 0));
    }
    /* the case must clip some steps and not others, or it tests only one side */
    CHECK(clip == 0 || (clipped > 0 && clipped < steps));
    rvg_free(dlogits);
    printf("  %s %lld training forwards: %lld ReLU outputs within rounding of 0 set to PyTorch's "
           "side, %lld far from 0 on the wrong side, %lld blocks without reference\n",
           flips.bad || flips.missing ? "BAD " : "ok  ", (long long)steps,
           (long long)flips.adopted, (long long)flips.bad, (long long)flips.missing);
    CHECK(flips.bad == 0 && flips.missing == 0);
    {
        int bad = 0, count = 0;
        for (int64_t i = 0; i < rvg_model_param_count(m); i++) {
            const rvg_param *q = rvg_model_param_c(m, i);
            /* After one step a parameter is p - lr (g + wd p), so it carries lr times the
             * gradient's error, which the gradient check allowed up to T_GRAD x max|g|; in the
             * deep networks (D2se: 48 blocks) that exceeds T_PARAM x max|p|. Later steps are
             * checked only on the small, well-conditioned cases, without that allowance. */
            float slack = 0.f;
            if (steps == 1 && q->grad) {
                snprintf(label, sizeof label, "grad.%s", q->name);
                slack = rvg_lr_at(base_lr, 0, warmup, total) * TOL[T_GRAD].rel *
                        ref_scale(b, label, q->numel);
            }
            snprintf(label, sizeof label, "final.%s", q->name);
            count++;
            bad += !check_tensor(b, label, q->data, q->numel, q->grad ? T_PARAM : T_RUNNING,
                                 slack);
        }
        printf("  %s %d parameters and buffers after %lld SGD steps compared, %d off\n",
               bad ? "BAD " : "ok  ", count, (long long)steps, bad);
        CHECK(bad == 0);
        /* num_batches_tracked: 3 initially, +steps */
        rvg_dict *fd = NULL;
        CHECK_OK(rvg_model_to_dict(m, &fd));
        const rvg_tensor *t = fd ? rvg_dict_get(fd, "stage0.rbr_dense.bn.num_batches_tracked") : NULL;
        const rvg_tensor *w = rvg_dict_get(b, "final.stage0.rbr_dense.bn.num_batches_tracked");
        CHECK(t && w && *(const int64_t *)t->data == *(const int64_t *)w->data);
        rvg_dict_free(fd);
    }
    if (ema) {
        int bad = 0, count = 0;
        for (int64_t i = 0; i < rvg_model_param_count(ema); i++) {
            const rvg_param *q = rvg_model_param_c(ema, i);
            snprintf(label, sizeof label, "ema.%s", q->name);
            count++;
            bad += !check_tensor(b, label, q->data, q->numel, q->grad ? T_PARAM : T_RUNNING, 0.f);
        }
        printf("  %s %d moving averages of parameters and buffers (decay %g) compared, %d off\n",
               bad ? "BAD " : "ok  ", count, (double)ema_decay, bad);
        CHECK(bad == 0);
        rvg_dict *fd = NULL;
        CHECK_OK(rvg_model_to_dict(ema, &fd));
        const rvg_tensor *t =
            fd ? rvg_dict_get(fd, "stage0.rbr_dense.bn.num_batches_tracked") : NULL;
        const rvg_tensor *w = rvg_dict_get(b, "ema.stage0.rbr_dense.bn.num_batches_tracked");
        CHECK(t && w && *(const int64_t *)t->data == *(const int64_t *)w->data);
        rvg_dict_free(fd);
        /* a swap exchanges the two models' state, a second one puts it back */
        const rvg_param *qm = rvg_model_param_c(m, 0), *qe = rvg_model_param_c(ema, 0);
        const float m0 = qm->data[0], e0 = qe->data[0];
        CHECK(m0 != e0);
        CHECK_OK(rvg_ema_swap(ema, m));
        CHECK(qm->data[0] == e0 && qe->data[0] == m0);
        CHECK_OK(rvg_ema_swap(ema, m));
        CHECK(qm->data[0] == m0 && qe->data[0] == e0);
        if (d)
            CHECK(rvg_ema_swap(ema, d) == RVG_STATUS_BAD_SHAPE);
        /* the models must be two of the same network, the decay in [0, 1) */
        CHECK(rvg_ema_update(ema, m, 1.0f) == RVG_STATUS_BAD_ARGUMENT);
        CHECK(rvg_ema_update(ema, ema, 0.5f) == RVG_STATUS_BAD_ARGUMENT);
        if (d)
            CHECK(rvg_ema_update(ema, d, 0.5f) == RVG_STATUS_BAD_SHAPE);
    }
done:
    rvg_model_free(ema);
    rvg_plan_free(p);
    rvg_plan_free(pd);
    rvg_model_free(m);
    rvg_model_free(d);
    rvg_dict_free(b);
}

int main(int argc, char **argv) {
    if (argc < 2)
        rvg_test_skip("usage: test_torch_model REF_DIR");
    for (size_t i = 0; i < sizeof TOL / sizeof TOL[0]; i++)
        printf("tolerance %-8s %.0e x max|ref|: %s\n", TOL[i].what, (double)TOL[i].rel, TOL[i].why);
    const char *cases[] = {"a0", "b1g4", "d2se", "small", "custom", "clip"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(argv[1], cases[i]);
    return rvg_test_finish();
}
