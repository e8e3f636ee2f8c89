/* test_init_from.c - rvg_model_init_from, the start of a fine-tuning run (`repvgg train --init`).
 *
 * Same network: every tensor (BN statistics and counters included) arrives bit for bit. Another
 * class count: the classifier keeps the model's own values, the rest arrives. Other input
 * channels: the stem's two kernels follow the adaptation rule (1 channel: the sum over the
 * source's; C: source channel c mod S times S/C), checked index by index on the 4-D tensors, and
 * for 1 channel also by what it means: the adapted stem sees a grey image as the source's stem
 * sees that image in all three channels. Refused (with the model left as it was): deploy-form
 * weights, another width, another depth, an extra or missing tensor, an integer tensor, a
 * deploy-form model.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "rvg/io.h"
#include "rvg/model.h"

static const char *const ARCH = "custom:blocks=1,2,1,1:width=0.25,0.25,0.25,0.25";

static rvg_model *make(const char *spec, int64_t in_ch, int64_t classes, uint64_t seed) {
    rvg_arch a;
    if (rvg_arch_parse(&a, spec) != RVG_OK)
        return NULL;
    a.in_ch = in_ch;
    a.classes = classes;
    rvg_model *m = NULL;
    if (rvg_model_new(&m, &a, RVG_FORM_TRAIN) != RVG_OK)
        return NULL;
    rvg_model_init(m, seed);
    /* BN statistics and counters that differ from a fresh model's 0 / 1 / 0 */
    int64_t nb, nc;
    float *b = rvg_model_buffers(m, &nb);
    int64_t *cnt = rvg_model_bn_counters(m, &nc);
    for (int64_t i = 0; i < nb; i++)
        b[i] = 0.5f + (float)((i * 7 + (int64_t)seed) % 13) / 8.0f;
    for (int64_t i = 0; i < nc; i++)
        cnt[i] = 100 + i + (int64_t)seed;
    return m;
}

static rvg_dict *dict_of(const rvg_model *m) {
    rvg_dict *d = NULL;
    return rvg_model_to_dict(m, &d) == RVG_OK ? d : NULL;
}

static int same_view(const rvg_param *a, const rvg_param *b) {
    return a->numel == b->numel && memcmp(a->data, b->data, (size_t)a->numel * 4) == 0;
}

static int is_stem(const char *n) {
    return strcmp(n, "stage0.rbr_dense.conv.weight") == 0 ||
           strcmp(n, "stage0.rbr_1x1.conv.weight") == 0;
}

/* Every view of m equals src's, except the classifier (equals keep's) when head, and the stem
 * kernels when stem (not compared here). */
static void check_copied(rvg_model *m, rvg_model *src, rvg_model *keep, int head, int stem) {
    int bad = 0;
    for (int64_t i = 0; i < rvg_model_param_count(m); i++) {
        const rvg_param *p = rvg_model_param(m, i);
        if (stem && is_stem(p->name))
            continue;
        int is_head = strncmp(p->name, "linear.", 7) == 0;
        const rvg_param *want = rvg_model_find(head && is_head ? keep : src, p->name);
        if (!want || !same_view(p, want)) {
            fprintf(stderr, "  %s differs\n", p->name);
            bad++;
        }
    }
    CHECK(bad == 0);
    int64_t n1, n2;
    int64_t *c1 = rvg_model_bn_counters(m, &n1), *c2 = rvg_model_bn_counters(src, &n2);
    CHECK(n1 == n2 && memcmp(c1, c2, (size_t)n1 * sizeof *c1) == 0);
}

/* A source with src_classes classes into a model with classes: the same network, or another
 * classifier, which must keep the model's own values (those of keep, made alike). */
static void test_copy(int64_t src_classes, int64_t classes) {
    rvg_model *src = make(ARCH, 3, src_classes, 1), *m = make(ARCH, 3, classes, 2);
    rvg_model *keep = make(ARCH, 3, classes, 2);
    rvg_dict *d = dict_of(src);
    CHECK(src && m && keep && d);
    if (src && m && keep && d) {
        int head = src_classes != classes;
        rvg_init_report rep;
        CHECK_OK(rvg_model_init_from(m, d, &rep));
        check_copied(m, src, keep, head, 0);
        CHECK(rep.head_reset == head && !rep.stem_adapted);
        CHECK(rep.copied == rvg_model_param_count(m) - (head ? 2 : 0));
        CHECK(rep.src_classes == src_classes && rep.src_in_ch == 3);
    }
    rvg_dict_free(d);
    rvg_model_free(src);
    rvg_model_free(m);
    rvg_model_free(keep);
}

static void test_other_channels(int64_t C) {
    rvg_model *src = make(ARCH, 3, 10, 1), *m = make(ARCH, C, 10, 2);
    rvg_dict *d = dict_of(src);
    CHECK(src && m && d);
    if (!src || !m || !d)
        return;
    rvg_init_report rep;
    CHECK_OK(rvg_model_init_from(m, d, &rep));
    check_copied(m, src, NULL, 0, 1);
    CHECK(rep.stem_adapted && rep.src_in_ch == 3 && !rep.head_reset);
    for (int j = 0; j < 2; j++) {
        const char *name = j ? "stage0.rbr_1x1.conv.weight" : "stage0.rbr_dense.conv.weight";
        const rvg_param *got = rvg_model_find(m, name), *s = rvg_model_find(src, name);
        CHECK(got && s && got->shape[1] == C && s->shape[1] == 3);
        if (!got || !s)
            continue;
        int64_t K = got->shape[0], R = got->shape[2], Q = got->shape[3];
        int bad = 0;
        for (int64_t k = 0; k < K; k++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t r = 0; r < R; r++)
                    for (int64_t q = 0; q < Q; q++) {
#define AT(t, kk, cc, nc) (t)->data[(((kk) * (nc) + (cc)) * R + r) * Q + q]
                        float want = C == 1 ? AT(s, k, 0, 3) + AT(s, k, 1, 3) + AT(s, k, 2, 3)
                                            : AT(s, k, c % 3, 3) * (3.0f / (float)C);
                        bad += AT(got, k, c, C) != want;
                        if (C == 1) { /* a grey pixel v: sum_c w_c v = (sum_c w_c) v */
                            double rgb = 0;
                            for (int64_t cc = 0; cc < 3; cc++)
                                rgb += (double)AT(s, k, cc, 3) * 0.37;
                            bad += fabs((double)AT(got, k, 0, 1) * 0.37 - rgb) > 1e-6;
                        }
#undef AT
                    }
        CHECK(bad == 0);
    }
    rvg_dict_free(d);
    rvg_model_free(src);
    rvg_model_free(m);
}

/* The model's params and buffers, to show a refused source left them alone. */
static float *snapshot(rvg_model *m, int64_t *n) {
    int64_t np, nb;
    float *p = rvg_model_params(m, &np), *b = rvg_model_buffers(m, &nb);
    float *s = malloc((size_t)(np + nb) * sizeof *s);
    if (s) {
        memcpy(s, p, (size_t)np * sizeof *s);
        memcpy(s + np, b, (size_t)nb * sizeof *s);
    }
    *n = np + nb;
    return s;
}

static void expect_refused(const char *what, rvg_model *m, const rvg_dict *d, rvg_status want) {
    int64_t n, n2;
    float *before = snapshot(m, &n);
    printf("%s:\n", what);
    CHECK_STATUS(rvg_model_init_from(m, d, NULL), want);
    float *after = snapshot(m, &n2);
    CHECK(before && after && n == n2 && memcmp(before, after, (size_t)n * sizeof *before) == 0);
    free(before);
    free(after);
}

static void test_refused(void) {
    rvg_model *m = make(ARCH, 3, 10, 2), *src = make(ARCH, 3, 10, 1);
    rvg_model *wide = make("custom:blocks=1,2,1,1:width=0.5,0.25,0.25,0.25", 3, 10, 1);
    rvg_model *deep = make("custom:blocks=1,3,1,1:width=0.25,0.25,0.25,0.25", 3, 10, 1);
    rvg_model *dep = NULL;
    CHECK(m && src && wide && deep);
    if (!m || !src || !wide || !deep)
        return;
    CHECK_OK(rvg_model_reparam(src, &dep));
    rvg_dict *d = NULL;
    if (dep) {
        d = dict_of(dep);
        expect_refused("deploy-form weights", m, d, RVG_STATUS_BAD_ARGUMENT);
        rvg_dict_free(d);
        rvg_dict *ok = dict_of(src);
        printf("a deploy-form model:\n");
        CHECK_STATUS(rvg_model_init_from(dep, ok, NULL), RVG_STATUS_BAD_ARGUMENT);
        rvg_dict_free(ok);
    }
    d = dict_of(wide);
    expect_refused("another width", m, d, RVG_STATUS_BAD_SHAPE);
    rvg_dict_free(d);
    d = dict_of(deep);
    expect_refused("another depth", m, d, RVG_STATUS_BAD_NAME);
    rvg_dict_free(d);

    d = dict_of(src);
    int64_t one = 1;
    CHECK_OK(rvg_dict_add_f32(d, "stage1.0.extra", 1, &one, NULL));
    expect_refused("an extra tensor", m, d, RVG_STATUS_BAD_NAME);
    rvg_dict_free(d);

    d = dict_of(src);
    CHECK(rvg_dict_remove(d, "stage2.1.rbr_1x1.bn.running_var") == 1);
    expect_refused("a missing tensor", m, d, RVG_STATUS_BAD_NAME);
    rvg_dict_free(d);

    d = dict_of(src);
    const rvg_param *lb = rvg_model_find(src, "linear.bias");
    CHECK(rvg_dict_remove(d, "linear.bias") == 1);
    CHECK_OK(rvg_dict_add(d, "linear.bias", RVG_DTYPE_I64, 1, lb->shape, NULL));
    expect_refused("an integer tensor", m, d, RVG_STATUS_BAD_FORMAT);
    rvg_dict_free(d);

    rvg_model_free(dep);
    rvg_model_free(m);
    rvg_model_free(src);
    rvg_model_free(wide);
    rvg_model_free(deep);
}

int main(void) {
    test_copy(10, 10);
    test_copy(1000, 7);
    test_other_channels(1);
    test_other_channels(2);
    test_other_channels(4);
    test_refused();
    return rvg_test_finish();
}
