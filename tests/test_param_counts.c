/* test_param_counts.c - parameter counts of every preset (1000 classes, 3 input channels) equal
 * PyTorch's: sum(p.numel() for p in model.parameters()) of the official RepVGG code, deploy form
 * for all presets and train form for A0 (the figures of the core issue). Also checks that a model
 * with other input channels and classes changes only stage0 and the classifier, and that the
 * multiply-add count of A0's deploy form at 224x224 is the paper's 1.4 G.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "rvg/model.h"

static int64_t count(const char *name, rvg_form form, int64_t in_ch, int64_t classes,
                     int64_t *macs224) {
    rvg_arch a;
    rvg_model *m = NULL;
    if (rvg_arch_parse(&a, name) != RVG_OK)
        return -1;
    a.in_ch = in_ch;
    a.classes = classes;
    if (rvg_model_new(&m, &a, form) != RVG_OK)
        return -1;
    int64_t n = rvg_model_num_params(m);
    if (macs224)
        *macs224 = rvg_model_macs(m, 224, 224);
    rvg_model_free(m);
    return n;
}

int main(void) {
    static const struct {
        const char *name;
        int64_t deploy;
    } want[] = {
        {"A0", 8309384},    {"A1", 12789864},   {"A2", 25499944},  {"B0", 14339048},
        {"B1", 51829480},   {"B1g2", 41360104}, {"B1g4", 36125416}, {"B2", 80315112},
        {"B2g4", 55777512}, {"B3", 110960872},  {"B3g4", 75626728},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int64_t got = count(want[i].name, RVG_FORM_DEPLOY, 3, 1000, NULL);
        printf("  %-5s deploy %11lld (PyTorch %11lld)\n", want[i].name, (long long)got,
               (long long)want[i].deploy);
        CHECK(got == want[i].deploy);
    }
    int64_t macs = 0;
    CHECK(count("A0", RVG_FORM_TRAIN, 3, 1000, NULL) == 9108968);
    CHECK(count("A0", RVG_FORM_DEPLOY, 3, 1000, &macs) == 8309384);
    printf("  A0 deploy multiply-adds at 224x224: %lld\n", (long long)macs);
    CHECK(macs > 1350000000 && macs < 1450000000); /* paper: 1.4 G */
    /* 1 input channel, 10 classes: stage0 loses 2*48*9 + 2*48 weights in the deploy form, the
     * classifier (1280+1)*(1000-10) */
    int64_t small = count("A0", RVG_FORM_DEPLOY, 1, 10, NULL);
    CHECK(small == 8309384 - 2 * 48 * 9 - 1281 * 990);
    return rvg_test_finish();
}
