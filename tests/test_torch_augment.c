/* test_torch_augment.c - the data pipeline's bilinear resize/crop against torch's interpolate.
 *
 * Reads argv[1]/augment.safetensors from tests/ref/gen_augment.py: random uint8 images, a crop
 * region, a resize target and an output window, and torch's interpolate(mode='bilinear',
 * align_corners=False, antialias=False) result. Checks rvg__resize_bilinear (the kernel behind
 * RandomResizedCrop, Resize+CenterCrop and plain resizing) on each case. AutoAugment and the random
 * draws are not compared: torchvision is not a dependency and the generators differ by design.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_impl.h"
#include "harness.h"
#include "rvg/io.h"

/* Pixel values are in [0, 255]; torch sums the same four float products, possibly in another
 * order, so agreement is to a few float32 ulps of 255. */
#define ATOL 2e-4f

int main(int argc, char **argv) {
    (void)rvg_test_max_abs;
    if (argc < 2)
        rvg_test_skip("usage: test_torch_augment REF_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/augment.safetensors", argv[1]);
    rvg_dict *ref = NULL;
    rvg_status st = rvg_safetensors_load(&ref, path);
    if (st != RVG_OK) {
        printf("cannot load %s: %s\n", path, rvg_last_error());
        rvg_test_skip("no reference bundle (run tests/ref/gen_augment.py)");
    }
    int cases = 0;
    for (int64_t k = 0; k < rvg_dict_count(ref); k++) {
        const rvg_tensor *t = rvg_dict_at(ref, k);
        size_t n = strlen(t->name);
        if (n < 5 || strcmp(t->name + n - 4, ".src") != 0)
            continue;
        char base[256], key[300];
        snprintf(base, sizeof base, "%.*s", (int)(n - 4), t->name);
        snprintf(key, sizeof key, "%s.params", base);
        const rvg_tensor *tp = rvg_dict_get(ref, key);
        snprintf(key, sizeof key, "%s.out", base);
        const rvg_tensor *to = rvg_dict_get(ref, key);
        CHECK(tp && to && t->dtype == RVG_DTYPE_U8 && t->ndim == 3);
        if (!tp || !to || t->dtype != RVG_DTYPE_U8 || tp->dtype != RVG_DTYPE_I64 ||
            to->dtype != RVG_DTYPE_F32)
            continue;
        const int64_t *p = tp->data;
        int64_t w = t->shape[1], c = t->shape[2];
        int64_t oh = p[8], ow = p[9];
        float *out = calloc((size_t)(oh * ow * c), sizeof *out);
        int64_t *xi = calloc(2 * (size_t)ow, sizeof *xi);
        float *xl = calloc(2 * (size_t)ow, sizeof *xl);
        rvg__resize_bilinear(out, oh, ow, t->data, w, c, p[0], p[1], p[2], p[3], p[4], p[5], p[6],
                             p[7], xi, xl);
        int64_t dims[3] = {oh, ow, c};
        char what[300];
        snprintf(what, sizeof what, "bilinear %s (HWC)", base);
        rvg_test_close(what, out, to->data, oh * ow * c, ATOL, 1e-6f, dims, 3);
        free(out);
        free(xi);
        free(xl);
        cases++;
    }
    CHECK(cases >= 8);
    rvg_dict_free(ref);
    return rvg_test_finish();
}
