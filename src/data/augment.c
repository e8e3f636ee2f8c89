/* augment.c - one sample's augmentation: geometry, flip, AutoAugment, normalisation, erasing.
 *
 * The order and the parameter draws follow torchvision's recipes: RandomResizedCrop or RandomCrop
 * (padding) or Resize+CenterCrop, then RandomHorizontalFlip, then AutoAugment, then ToTensor and
 * Normalize, then RandomErasing. Bilinear resampling is torch's interpolate(align_corners=False,
 * antialias=False), in float, so the resized pixels are not rounded to uint8 unless AutoAugment
 * (which works on uint8, as on PIL images) runs. All randomness comes from the sample's own
 * counter-based stream. Not here: antialiased downscaling (PIL's default), colour jitter,
 * RandAugment, mixup.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_impl.h"

void rvg__aug_scratch_free(rvg__aug_scratch *s) {
    rvg__image_free(&s->dec);
    rvg__image_free(&s->u8);
    rvg__image_free(&s->tmp);
    free(s->geo);
    free(s->xi);
    free(s->xl);
    memset(s, 0, sizeof *s);
}

void rvg_augment_defaults(rvg_augment *a, const rvg_dataset *d, int train) {
    memset(a, 0, sizeof *a);
    for (int c = 0; c < 4; c++) {
        a->mean[c] = 0.f;
        a->std[c] = 1.f;
    }
    if (d->pixels) {
        a->out_h = d->h;
        a->out_w = d->w;
        if (train) {
            a->random_crop_pad = d->h >= 32 ? 4 : 2;
            a->hflip = d->mirror_ok;
        }
    } else {
        a->out_h = a->out_w = 224;
        if (train) {
            a->random_resized_crop = 1;
            a->hflip = 1;
        } else {
            a->center_crop_eval = 1;
        }
    }
}

void rvg_augment_imagenet_norm(rvg_augment *a) {
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++) {
        a->mean[c] = mean[c];
        a->std[c] = std[c];
    }
}

/* The random crop's window: crop_h x crop_w, or the output size where they are 0. */
static void crop_window(const rvg_augment *a, int64_t *kh, int64_t *kw) {
    *kh = a->crop_h ? a->crop_h : a->out_h;
    *kw = a->crop_w ? a->crop_w : a->out_w;
}

rvg_status rvg__augment_check(const rvg_dataset *d, const rvg_augment *a) {
    if (a->out_h < 1 || a->out_w < 1 || a->out_h > 8192 || a->out_w > 8192)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "augment: output size %lldx%lld out of range",
                         (long long)a->out_h, (long long)a->out_w);
    if (d->c < 1 || d->c > 4)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "augment: %lld channels (at most 4)",
                         (long long)d->c);
    if (a->random_crop_pad < 0)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "augment: random_crop_pad %d < 0",
                         a->random_crop_pad);
    if (a->crop_h < 0 || a->crop_w < 0 || a->crop_h > 8192 || a->crop_w > 8192 ||
        (a->crop_h == 0) != (a->crop_w == 0))
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "augment: crop window %lldx%lld out of range",
                         (long long)a->crop_h, (long long)a->crop_w);
    if (!(a->erase_prob >= 0.f && a->erase_prob <= 1.f))
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "augment: erase probability %g not in [0, 1]",
                         (double)a->erase_prob);
    int64_t crop_h, crop_w;
    crop_window(a, &crop_h, &crop_w);
    for (int64_t c = 0; c < d->c; c++)
        if (!(a->std[c] > 0.f) || !isfinite(a->mean[c]))
            return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                             "augment: channel %lld has std %g, mean %g (std must be > 0)",
                             (long long)c, (double)a->std[c], (double)a->mean[c]);
    /* A random crop larger than the padded image is only known to fail for fixed-size sets;
     * folders are checked per image. */
    if (!a->random_resized_crop && !a->center_crop_eval && a->random_crop_pad > 0 && d->pixels &&
        (crop_h > d->h + 2 * a->random_crop_pad || crop_w > d->w + 2 * a->random_crop_pad))
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "augment: random crop %lldx%lld is larger than the %lldx%lld image padded "
                         "by %d",
                         (long long)crop_h, (long long)crop_w, (long long)d->h, (long long)d->w,
                         a->random_crop_pad);
    return RVG_OK;
}

/* torch's area_pixel_compute_source_index for linear modes with align_corners=False, and the
 * neighbour/weight pair upsample_bilinear2d uses. The scale is a float (torch's opmath for a float
 * input) while the source coordinate is formed in double: measured against torch 1.13 this agrees
 * to 1-2 float ulps, where an all-float computation is off by ~1e-5 relative. */
static void linear_index(int64_t dst, float scale, int64_t in, int64_t *i0, int64_t *i1,
                         float *l1) {
    double src = (double)scale * ((double)dst + 0.5) - 0.5;
    if (src < 0.0)
        src = 0.0;
    int64_t i = (int64_t)src;
    if (i > in - 1)
        i = in - 1;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    *l1 = (float)(src - (double)i);
}

void rvg__resize_bilinear(float *out, int64_t oh, int64_t ow, const uint8_t *src, int64_t sw,
                          int64_t c, int64_t ry, int64_t rx, int64_t rh, int64_t rw, int64_t th,
                          int64_t tw, int64_t oy, int64_t ox, int64_t *xi, float *xl) {
    float sy = (float)rh / (float)th, sx = (float)rw / (float)tw;
    for (int64_t x = 0; x < ow; x++) {
        int64_t a, b;
        float l;
        linear_index(x + ox, sx, rw, &a, &b, &l);
        xi[2 * x] = (rx + a) * c;
        xi[2 * x + 1] = (rx + b) * c;
        xl[2 * x] = 1.f - l;
        xl[2 * x + 1] = l;
    }
    for (int64_t y = 0; y < oh; y++) {
        int64_t y0, y1;
        float ly;
        linear_index(y + oy, sy, rh, &y0, &y1, &ly);
        float hy0 = 1.f - ly;
        const uint8_t *r0 = src + (ry + y0) * sw * c;
        const uint8_t *r1 = src + (ry + y1) * sw * c;
        float *o = out + y * ow * c;
        for (int64_t x = 0; x < ow; x++) {
            int64_t a = xi[2 * x], b = xi[2 * x + 1];
            float wa = xl[2 * x], wb = xl[2 * x + 1];
            /* Corner weights first, then the four products in row order: torch's order. */
            float w00 = hy0 * wa, w01 = hy0 * wb, w10 = ly * wa, w11 = ly * wb;
            for (int64_t ch = 0; ch < c; ch++)
                o[x * c + ch] = w00 * (float)r0[a + ch] + w01 * (float)r0[b + ch] +
                                w10 * (float)r1[a + ch] + w11 * (float)r1[b + ch];
        }
    }
}

/* The box both RandomResizedCrop and RandomErasing try: an area uniform in [smin, smax] of the
 * image's, an aspect log-uniform in [rmin, rmax]; *along = round(sqrt(area * aspect)), the side
 * the aspect lengthens, *across = round(sqrt(area / aspect)). */
static void draw_box(rvg__crng *r, int64_t h, int64_t w, double smin, double smax, double rmin,
                     double rmax, int64_t *along, int64_t *across) {
    const double lr0 = log(rmin), lr1 = log(rmax);
    double target = (double)h * (double)w * (smin + (smax - smin) * rvg__crng_uniform(r));
    double aspect = exp(lr0 + (lr1 - lr0) * rvg__crng_uniform(r));
    /* Python's round() is half-to-even, as rint() in the default rounding mode. */
    *along = (int64_t)rint(sqrt(target * aspect));
    *across = (int64_t)rint(sqrt(target / aspect));
}

void rvg__rrc_params(rvg__crng *r, int64_t h, int64_t w, int64_t *i, int64_t *j, int64_t *ch,
                     int64_t *cw) {
    for (int attempt = 0; attempt < 10; attempt++) {
        int64_t cww, chh;
        draw_box(r, h, w, 0.08, 1.0, 3.0 / 4.0, 4.0 / 3.0, &cww, &chh);
        if (cww > 0 && cww <= w && chh > 0 && chh <= h) {
            *i = rvg__crng_below(r, h - chh + 1);
            *j = rvg__crng_below(r, w - cww + 1);
            *ch = chh;
            *cw = cww;
            return;
        }
    }
    /* torchvision's fallback: the largest centred crop whose aspect lies within the range. */
    double in_ratio = (double)w / (double)h;
    if (in_ratio < 3.0 / 4.0) {
        *cw = w;
        *ch = (int64_t)rint((double)w / (3.0 / 4.0));
    } else if (in_ratio > 4.0 / 3.0) {
        *ch = h;
        *cw = (int64_t)rint((double)h * (4.0 / 3.0));
    } else {
        *cw = w;
        *ch = h;
    }
    if (*ch > h)
        *ch = h;
    if (*cw > w)
        *cw = w;
    *i = (h - *ch) / 2;
    *j = (w - *cw) / 2;
}

int rvg__erase_params(rvg__crng *r, int64_t h, int64_t w, int64_t *i, int64_t *j, int64_t *eh,
                      int64_t *ew) {
    for (int attempt = 0; attempt < 10; attempt++) {
        /* As torchvision: the height takes the aspect (RandomResizedCrop's width does). */
        int64_t bh, bw;
        draw_box(r, h, w, 0.02, 1.0 / 3.0, 0.3, 1.0 / 0.3, &bh, &bw);
        if (bh < 1 || bw < 1 || bh >= h || bw >= w)
            continue;
        *i = rvg__crng_below(r, h - bh + 1);
        *j = rvg__crng_below(r, w - bw + 1);
        *eh = bh;
        *ew = bw;
        return 1;
    }
    return 0;
}

static rvg_status reserve_f(float **p, size_t *cap, size_t n) {
    if (n > *cap) {
        float *q = realloc(*p, n * sizeof *q);
        if (!q)
            return rvg_error(RVG_STATUS_NO_MEMORY, "augment: out of memory");
        *p = q;
        *cap = n;
    }
    return RVG_OK;
}

rvg_status rvg__augment_one(float *out, const rvg_dataset *d, const rvg_augment *a, int64_t i,
                            uint64_t seed, int64_t epoch, rvg__aug_scratch *s) {
    const int64_t c = d->c, oh = a->out_h, ow = a->out_w;
    rvg__crng r;
    rvg__crng_seed(&r, seed, (uint64_t)epoch, RVG__STREAM_AUGMENT, (uint64_t)i);

    const uint8_t *src;
    int64_t h, w;
    RVG_TRY(rvg__dataset_pixels(d, i, &s->dec, &src, &h, &w));
    RVG_TRY(reserve_f(&s->geo, &s->geo_cap, (size_t)(oh * ow * c)));
    if ((size_t)ow > s->x_cap) {
        int64_t *xi = realloc(s->xi, 2 * (size_t)ow * sizeof *xi);
        if (xi)
            s->xi = xi;
        float *xl = realloc(s->xl, 2 * (size_t)ow * sizeof *xl);
        if (xl)
            s->xl = xl;
        if (!xi || !xl)
            return rvg_error(RVG_STATUS_NO_MEMORY, "augment: out of memory");
        s->x_cap = (size_t)ow;
    }
    float *g = s->geo; /* (oh, ow, c), values in [0, 255] */

    /* 1. geometry */
    if (a->random_resized_crop) {
        int64_t ci, cj, chh, cww;
        rvg__rrc_params(&r, h, w, &ci, &cj, &chh, &cww);
        rvg__resize_bilinear(g, oh, ow, src, w, c, ci, cj, chh, cww, oh, ow, 0, 0, s->xi, s->xl);
    } else if (a->center_crop_eval) {
        /* Resize(int(size / 0.875)) then CenterCrop(size): only the crop window is computed. */
        int64_t side = (int64_t)((double)(oh > ow ? oh : ow) / 0.875);
        int64_t nh, nw;
        if (w <= h) {
            nw = side;
            nh = (int64_t)((double)side * (double)h / (double)w);
        } else {
            nh = side;
            nw = (int64_t)((double)side * (double)w / (double)h);
        }
        int64_t top = (int64_t)rint((double)(nh - oh) / 2.0);
        int64_t left = (int64_t)rint((double)(nw - ow) / 2.0);
        rvg__resize_bilinear(g, oh, ow, src, w, c, 0, 0, h, w, nh, nw, top, left, s->xi, s->xl);
    } else if (a->random_crop_pad > 0) {
        const int64_t p = a->random_crop_pad;
        int64_t kh, kw;
        crop_window(a, &kh, &kw);
        if (kh > h + 2 * p || kw > w + 2 * p)
            return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                             "augment: random crop %lldx%lld larger than sample %lld (%lldx%lld, "
                             "padding %lld)",
                             (long long)kh, (long long)kw, (long long)i, (long long)h, (long long)w,
                             (long long)p);
        /* RandomCrop(padding=p).get_params on the padded image: top first, then left. */
        int64_t top = rvg__crng_below(&r, h + 2 * p - kh + 1) - p;
        int64_t left = rvg__crng_below(&r, w + 2 * p - kw + 1) - p;
        /* the uint8 crop (zeros in the padding; s->u8 is free until AutoAugment), then, when it
         * is not of the output size, Resize((oh, ow)) of it */
        RVG_TRY(rvg__image_reserve(&s->u8, kh, kw, c));
        uint8_t *k8 = s->u8.data;
        for (int64_t y = 0; y < kh; y++) {
            int64_t sy = y + top;
            for (int64_t x = 0; x < kw; x++) {
                int64_t sx = x + left;
                int inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
                for (int64_t ch = 0; ch < c; ch++)
                    k8[(y * kw + x) * c + ch] = inside ? src[(sy * w + sx) * c + ch] : 0;
            }
        }
        if (kh == oh && kw == ow)
            for (int64_t k = 0; k < oh * ow * c; k++)
                g[k] = (float)k8[k];
        else
            rvg__resize_bilinear(g, oh, ow, k8, kw, c, 0, 0, kh, kw, oh, ow, 0, 0, s->xi, s->xl);
    } else if (oh == h && ow == w) {
        for (int64_t k = 0; k < oh * ow * c; k++)
            g[k] = (float)src[k];
    } else {
        rvg__resize_bilinear(g, oh, ow, src, w, c, 0, 0, h, w, oh, ow, 0, 0, s->xi, s->xl);
    }

    /* 2. flip: RandomHorizontalFlip draws torch.rand(1) < 0.5. */
    if (a->hflip && rvg__crng_uniform(&r) < 0.5) {
        for (int64_t y = 0; y < oh; y++) {
            float *row = g + y * ow * c;
            for (int64_t x = 0; x < ow / 2; x++)
                for (int64_t ch = 0; ch < c; ch++) {
                    float t = row[x * c + ch];
                    row[x * c + ch] = row[(ow - 1 - x) * c + ch];
                    row[(ow - 1 - x) * c + ch] = t;
                }
        }
    }

    /* 3. AutoAugment on uint8, as torchvision applies it to PIL images. */
    if (a->autoaugment && (c == 1 || c == 3)) {
        RVG_TRY(rvg__image_reserve(&s->u8, oh, ow, c));
        RVG_TRY(rvg__image_reserve(&s->tmp, oh, ow, c));
        for (int64_t k = 0; k < oh * ow * c; k++) {
            float v = rintf(g[k]);
            s->u8.data[k] = (uint8_t)(v < 0.f ? 0.f : v > 255.f ? 255.f : v);
        }
        rvg__autoaugment(s->u8.data, s->tmp.data, oh, ow, c, &r);
        for (int64_t k = 0; k < oh * ow * c; k++)
            g[k] = (float)s->u8.data[k];
    }

    /* 4. ToTensor (v / 255) and Normalize ((x - mean) / std), written (c, oh, ow). */
    for (int64_t ch = 0; ch < c; ch++) {
        float m = a->mean[ch], sd = a->std[ch];
        float *o = out + ch * oh * ow;
        for (int64_t p = 0; p < oh * ow; p++)
            o[p] = (g[p * c + ch] / 255.f - m) / sd;
    }

    /* 5. RandomErasing after Normalize, as torchvision places it: one box, the same in every
     * channel, filled with zeros (the mean) or with a fresh N(0, 1) value per element. */
    if (a->erase_prob > 0.f && rvg__crng_uniform(&r) < (double)a->erase_prob) {
        int64_t ei, ej, eh, ew;
        if (rvg__erase_params(&r, oh, ow, &ei, &ej, &eh, &ew))
            for (int64_t ch = 0; ch < c; ch++)
                for (int64_t y = ei; y < ei + eh; y++) {
                    float *o = out + (ch * oh + y) * ow;
                    for (int64_t x = ej; x < ej + ew; x++)
                        o[x] = a->erase_noise ? rvg__crng_normal(&r) : 0.f;
                }
    }
    return RVG_OK;
}

rvg_status rvg_augment_sample(float *out, const rvg_dataset *d, const rvg_augment *a, int64_t i,
                              uint64_t seed, int64_t epoch) {
    if (i < 0 || i >= d->count)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "augment: sample %lld out of range [0, %lld)",
                         (long long)i, (long long)d->count);
    RVG_TRY(rvg__augment_check(d, a));
    rvg__aug_scratch s;
    memset(&s, 0, sizeof s);
    rvg_status st = rvg__augment_one(out, d, a, i, seed, epoch, &s);
    rvg__aug_scratch_free(&s);
    return st;
}
