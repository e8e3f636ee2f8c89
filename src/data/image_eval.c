/* image_eval.c - one image file through the evaluation transform (rvg_image_load, data.h).
 *
 * The image is wrapped in a one-sample folder data set and sent through the loader's own
 * per-sample code (rvg__augment_one), so `repvgg predict photo.jpg` sees exactly the pixels that
 * evaluating a folder containing photo.jpg would: the same decoder, the same torch-compatible
 * bilinear resize and centre-crop rounding, the same normalisation. Random steps are refused
 * rather than silently drawn from a fixed seed. A one-channel model (Fashion-MNIST's) gets the
 * luma of the resized RGB pixels: the resize is linear, so this equals converting first up to
 * float rounding, and a grey image (R = G = B) comes out exactly as it was.
 */
#include <math.h>
#include <string.h>

#include "data/data_impl.h"
#include "rvg/tensor.h"

/* out (n) = (luma of rgb (3, n) - mean) / std; rgb holds v/255. */
static void luma(float *out, const float *rgb, int64_t n, float mean, float std) {
    const float *r = rgb, *g = rgb + n, *b = rgb + 2 * n;
    for (int64_t i = 0; i < n; i++) {
        float v =
            r[i] == g[i] && g[i] == b[i] ? r[i] : 0.299f * r[i] + 0.587f * g[i] + 0.114f * b[i];
        out[i] = (v - mean) / std;
    }
}

rvg_status rvg_image_load(float *out, const char *path, int64_t channels, const rvg_augment *a) {
    if (channels != 1 && channels != 3)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "image: %s: images decode to 3 channels (RGB) or 1 (grey), not %lld", path,
                         (long long)channels);
    if (a->random_resized_crop || a->hflip || a->autoaugment || a->random_crop_pad > 0 ||
        a->erase_prob > 0.f)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "image: %s: the single-image transform must be deterministic (no random "
                         "crop, flip, AutoAugment or erasing)",
                         path);
    char *paths[1] = {(char *)path}; /* borrowed: the data set below is never freed */
    int32_t label = 0;
    rvg_dataset d;
    memset(&d, 0, sizeof d);
    d.count = 1;
    d.classes = 1;
    d.c = 3; /* the decoder always produces RGB */
    d.labels = &label;
    d.paths = paths;
    rvg_augment rgb = *a; /* grey: v/255 first, normalised after the luma */
    if (channels == 1) {
        if (!(a->std[0] > 0) || !isfinite(a->mean[0]))
            return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                             "image: grey std %g must be > 0 and mean %g finite", (double)a->std[0],
                             (double)a->mean[0]);
        for (int c = 0; c < 3; c++)
            rgb.mean[c] = 0.0f, rgb.std[c] = 1.0f;
    }
    RVG_TRY(rvg__augment_check(&d, &rgb));
    float *tmp = NULL;
    const int64_t n = a->out_h * a->out_w;
    if (channels == 1 && !(tmp = rvg_alloc((size_t)(3 * n) * sizeof(float))))
        return rvg_error(RVG_STATUS_NO_MEMORY, "image: out of memory");
    rvg__aug_scratch s;
    memset(&s, 0, sizeof s);
    rvg_status st = rvg__augment_one(tmp ? tmp : out, &d, &rgb, 0, 0, 0, &s);
    rvg__aug_scratch_free(&s);
    if (st == RVG_OK && tmp)
        luma(out, tmp, n, a->mean[0], a->std[0]);
    rvg_free(tmp);
    return st;
}
