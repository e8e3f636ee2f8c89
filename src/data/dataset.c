/* dataset.c - opening a data set from its spec string, the accessors, and per-channel statistics.
 *
 * The format readers live in dataset_idx.c, dataset_cifar.c and dataset_folder.c; this file only
 * dispatches on the spec prefix and serves samples. It does not augment (augment.c) or batch
 * (loader.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_impl.h"
#include "rvg/tensor.h"

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* Returns the text after "prefix:" when spec starts with it, else NULL. */
static const char *after_prefix(const char *spec, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(spec, prefix, n) == 0 && spec[n] == ':')
        return spec + n + 1;
    return NULL;
}

rvg_status rvg_dataset_open(rvg_dataset **out, const char *spec, rvg_split split, int64_t limit) {
    *out = NULL;
    if (!spec)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "dataset: spec is NULL");
    if (split != RVG_SPLIT_TRAIN && split != RVG_SPLIT_VAL)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "dataset: split %d is neither train nor val",
                         (int)split);
    if (limit < 0)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "dataset: limit %lld < 0", (long long)limit);
    rvg_dataset *d = calloc(1, sizeof *d);
    if (!d)
        return rvg_error(RVG_STATUS_NO_MEMORY, "dataset: out of memory");
    rvg_status s;
    const char *dir;
    if (strcmp(spec, "fashion-mnist") == 0) {
        s = rvg__open_idx(d, FASHION_DIR, split, limit, 1);
    } else if ((dir = after_prefix(spec, "fashion-mnist"))) {
        s = rvg__open_idx(d, dir, split, limit, 1);
    } else if ((dir = after_prefix(spec, "idx"))) {
        s = rvg__open_idx(d, dir, split, limit, 0);
    } else if ((dir = after_prefix(spec, "cifar10"))) {
        s = rvg__open_cifar(d, dir, split, limit, 0);
    } else if ((dir = after_prefix(spec, "cifar100"))) {
        s = rvg__open_cifar(d, dir, split, limit, 1);
    } else if ((dir = after_prefix(spec, "folder"))) {
        s = rvg__open_folder(d, dir, split, limit);
    } else {
        s = rvg_error(RVG_STATUS_BAD_ARGUMENT,
                      "dataset: unknown spec '%s' (expected fashion-mnist[:DIR], idx:DIR, "
                      "cifar10:DIR, cifar100:DIR or folder:DIR)",
                      spec);
    }
    if (s != RVG_OK) {
        rvg_dataset_free(d);
        return s;
    }
    RVG_ASSERT(d->count > 0 && d->classes > 0 && d->names && d->labels);
    *out = d;
    return RVG_OK;
}

void rvg_dataset_free(rvg_dataset *d) {
    if (!d)
        return;
    if (d->names)
        for (int64_t k = 0; k < d->classes; k++)
            free(d->names[k]);
    free(d->names);
    if (d->paths)
        for (int64_t i = 0; i < d->count; i++)
            free(d->paths[i]);
    free(d->paths);
    free(d->pixels);
    free(d->labels);
    free(d);
}

rvg_status rvg__dataset_number_names(rvg_dataset *d) {
    if (!d->names) {
        d->names = calloc((size_t)d->classes, sizeof *d->names);
        if (!d->names)
            return rvg_error(RVG_STATUS_NO_MEMORY, "dataset: out of memory");
    }
    for (int64_t k = 0; k < d->classes; k++) {
        if (d->names[k])
            continue;
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)k);
        d->names[k] = strdup(buf);
        if (!d->names[k])
            return rvg_error(RVG_STATUS_NO_MEMORY, "dataset: out of memory");
    }
    return RVG_OK;
}

int64_t rvg_dataset_count(const rvg_dataset *d) {
    return d->count;
}
int64_t rvg_dataset_classes(const rvg_dataset *d) {
    return d->classes;
}
int64_t rvg_dataset_channels(const rvg_dataset *d) {
    return d->c;
}
int64_t rvg_dataset_height(const rvg_dataset *d) {
    return d->h;
}
int64_t rvg_dataset_width(const rvg_dataset *d) {
    return d->w;
}

const char *rvg_dataset_class_name(const rvg_dataset *d, int64_t k) {
    return (k >= 0 && k < d->classes) ? d->names[k] : NULL;
}

int32_t rvg_dataset_label(const rvg_dataset *d, int64_t i) {
    RVG_ASSERT(i >= 0 && i < d->count);
    return d->labels[i];
}

rvg_status rvg__dataset_pixels(const rvg_dataset *d, int64_t i, rvg__image *scratch,
                               const uint8_t **px, int64_t *h, int64_t *w) {
    RVG_ASSERT(i >= 0 && i < d->count);
    if (d->pixels) {
        *px = d->pixels + (size_t)i * (size_t)(d->h * d->w * d->c);
        *h = d->h;
        *w = d->w;
        return RVG_OK;
    }
    RVG_TRY(rvg__decode_file(scratch, d->paths[i]));
    RVG_ASSERT(scratch->c == d->c);
    *px = scratch->data;
    *h = scratch->h;
    *w = scratch->w;
    return RVG_OK;
}

rvg_status rvg_dataset_image(const rvg_dataset *d, int64_t i, uint8_t **pixels, int64_t *h,
                             int64_t *w, int64_t *c) {
    *pixels = NULL;
    if (i < 0 || i >= d->count)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "dataset: sample %lld out of range [0, %lld)",
                         (long long)i, (long long)d->count);
    rvg__image scratch = {0};
    const uint8_t *px;
    rvg_status s = rvg__dataset_pixels(d, i, &scratch, &px, h, w);
    if (s == RVG_OK) {
        size_t n = (size_t)(*h * *w * d->c);
        *pixels = rvg_alloc(n);
        if (!*pixels)
            s = rvg_error(RVG_STATUS_NO_MEMORY, "dataset: out of memory");
        else
            memcpy(*pixels, px, n);
        *c = d->c;
    }
    rvg__image_free(&scratch);
    return s;
}

rvg_status rvg_dataset_stats(const rvg_dataset *d, int64_t max_samples, float *mean, float *std) {
    int64_t n = (max_samples <= 0 || max_samples >= d->count) ? d->count : max_samples;
    int64_t c = d->c;
    double sum[4] = {0}, sq[4] = {0}, cnt = 0;
    rvg__image scratch = {0};
    rvg_status s = RVG_OK;
    for (int64_t k = 0; k < n; k++) {
        /* Evenly spread, so a folder set's class-major order still contributes every class. */
        int64_t i = (int64_t)((double)k * (double)d->count / (double)n);
        const uint8_t *px;
        int64_t h, w;
        s = rvg__dataset_pixels(d, i, &scratch, &px, &h, &w);
        if (s != RVG_OK)
            break;
        /* Integer sums per image are exact; doubles then carry the total. */
        uint64_t is[4] = {0}, iq[4] = {0};
        for (int64_t p = 0; p < h * w; p++)
            for (int64_t ch = 0; ch < c; ch++) {
                uint64_t v = px[p * c + ch];
                is[ch] += v;
                iq[ch] += v * v;
            }
        for (int64_t ch = 0; ch < c; ch++) {
            sum[ch] += (double)is[ch];
            sq[ch] += (double)iq[ch];
        }
        cnt += (double)(h * w);
    }
    rvg__image_free(&scratch);
    if (s != RVG_OK)
        return s;
    for (int64_t ch = 0; ch < c; ch++) {
        double m = sum[ch] / cnt / 255.0;
        double var = sq[ch] / cnt / (255.0 * 255.0) - m * m;
        mean[ch] = (float)m;
        std[ch] = (float)sqrt(var > 0 ? var : 0);
    }
    return RVG_OK;
}
