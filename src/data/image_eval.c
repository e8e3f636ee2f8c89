/* image_eval.c - one image file through the evaluation transform (rvg_image_load, data.h).
 *
 * The image is wrapped in a one-sample folder data set and sent through the loader's own
 * per-sample code (rvg__augment_one), so `repvgg predict photo.jpg` sees exactly the pixels that
 * evaluating a folder containing photo.jpg would: the same decoder, the same torch-compatible
 * bilinear resize and centre-crop rounding, the same normalisation. Random steps are refused
 * rather than silently drawn from a fixed seed.
 */
#include <string.h>

#include "data/data_impl.h"

rvg_status rvg_image_load(float *out, const char *path, const rvg_augment *a) {
    if (a->random_resized_crop || a->hflip || a->autoaugment || a->random_crop_pad > 0)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "image: %s: the single-image transform must be deterministic (no random "
                         "crop, flip or AutoAugment)",
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
    RVG_TRY(rvg__augment_check(&d, a));
    rvg__aug_scratch s;
    memset(&s, 0, sizeof s);
    rvg_status st = rvg__augment_one(out, &d, a, 0, 0, 0, &s);
    rvg__aug_scratch_free(&s);
    return st;
}
