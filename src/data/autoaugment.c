/* autoaugment.c - torchvision's AutoAugment with the ImageNet policy, on uint8 (H, W, C) pixels.
 *
 * Matches torchvision.transforms.AutoAugment(AutoAugmentPolicy.IMAGENET) with its defaults
 * (nearest interpolation, fill 0): pick one of 25 sub-policies uniformly, then for each of its two
 * operations draw u < p to apply it and a sign for signed magnitudes; magnitudes come from 10 bins
 * (Rotate 0..30 degrees, ShearX 0..0.3, Color/Contrast/Sharpness 0..0.9 around 1, Posterize 8..4
 * bits, Solarize threshold 255..0). The pixel arithmetic follows torchvision's tensor functional
 * ops (blend in float then truncate, grey = 0.2989 R + 0.587 G + 0.114 B truncated, PIL's
 * equalize). Only the operations the ImageNet policy uses are implemented (no Translate, ShearY,
 * Brightness); the random numbers are our counter stream's, not torch's.
 */
#include <math.h>
#include <string.h>

#include "data/data_impl.h"

enum {
    OP_POSTERIZE,
    OP_ROTATE,
    OP_SOLARIZE,
    OP_AUTOCONTRAST,
    OP_EQUALIZE,
    OP_COLOR,
    OP_CONTRAST,
    OP_SHARPNESS,
    OP_SHEARX,
    OP_INVERT,
    OP_COUNT
};

static const char *const OP_NAMES[OP_COUNT] = {
    "Posterize", "Rotate",   "Solarize",  "AutoContrast", "Equalize",
    "Color",     "Contrast", "Sharpness", "ShearX",       "Invert",
};

const char *rvg__autoaugment_op_name(int op) {
    return (op >= 0 && op < OP_COUNT) ? OP_NAMES[op] : "?";
}

int rvg__autoaugment_op_count(void) {
    return OP_COUNT;
}

typedef struct {
    int op;
    float p;
    int mag; /* magnitude bin, -1 for none */
} aa_op;

/* torchvision's AutoAugmentPolicy.IMAGENET (_get_policies), in its order. */
static const aa_op POLICY[25][2] = {
    {{OP_POSTERIZE, 0.4f, 8}, {OP_ROTATE, 0.6f, 9}},
    {{OP_SOLARIZE, 0.6f, 5}, {OP_AUTOCONTRAST, 0.6f, -1}},
    {{OP_EQUALIZE, 0.8f, -1}, {OP_EQUALIZE, 0.6f, -1}},
    {{OP_POSTERIZE, 0.6f, 7}, {OP_POSTERIZE, 0.6f, 6}},
    {{OP_EQUALIZE, 0.4f, -1}, {OP_SOLARIZE, 0.2f, 4}},
    {{OP_EQUALIZE, 0.4f, -1}, {OP_ROTATE, 0.8f, 8}},
    {{OP_SOLARIZE, 0.6f, 3}, {OP_EQUALIZE, 0.6f, -1}},
    {{OP_POSTERIZE, 0.8f, 5}, {OP_EQUALIZE, 1.0f, -1}},
    {{OP_ROTATE, 0.2f, 3}, {OP_SOLARIZE, 0.6f, 8}},
    {{OP_EQUALIZE, 0.6f, -1}, {OP_POSTERIZE, 0.4f, 6}},
    {{OP_ROTATE, 0.8f, 8}, {OP_COLOR, 0.4f, 0}},
    {{OP_ROTATE, 0.4f, 9}, {OP_EQUALIZE, 0.6f, -1}},
    {{OP_EQUALIZE, 0.0f, -1}, {OP_EQUALIZE, 0.8f, -1}},
    {{OP_INVERT, 0.6f, -1}, {OP_EQUALIZE, 1.0f, -1}},
    {{OP_COLOR, 0.6f, 4}, {OP_CONTRAST, 1.0f, 8}},
    {{OP_ROTATE, 0.8f, 8}, {OP_COLOR, 1.0f, 2}},
    {{OP_COLOR, 0.8f, 8}, {OP_SOLARIZE, 0.8f, 7}},
    {{OP_SHARPNESS, 0.4f, 7}, {OP_INVERT, 0.6f, -1}},
    {{OP_SHEARX, 0.6f, 5}, {OP_EQUALIZE, 1.0f, -1}},
    {{OP_COLOR, 0.4f, 0}, {OP_EQUALIZE, 0.6f, -1}},
    {{OP_EQUALIZE, 0.4f, -1}, {OP_SOLARIZE, 0.2f, 4}},
    {{OP_SOLARIZE, 0.6f, 5}, {OP_AUTOCONTRAST, 0.6f, -1}},
    {{OP_INVERT, 0.6f, -1}, {OP_EQUALIZE, 1.0f, -1}},
    {{OP_COLOR, 0.6f, 4}, {OP_CONTRAST, 1.0f, 8}},
    {{OP_EQUALIZE, 0.8f, -1}, {OP_EQUALIZE, 0.6f, -1}},
};

/* torchvision's _augmentation_space(num_bins=10): bin k's magnitude and whether it is signed. */
static float magnitude(int op, int k, int *is_signed) {
    *is_signed = 0;
    switch (op) {
    case OP_ROTATE: *is_signed = 1; return 30.f * (float)k / 9.f;
    case OP_SHEARX: *is_signed = 1; return 0.3f * (float)k / 9.f;
    case OP_COLOR:
    case OP_CONTRAST:
    case OP_SHARPNESS: *is_signed = 1; return 0.9f * (float)k / 9.f;
    case OP_POSTERIZE:
        /* 8 - round(k / ((10 - 1) / 4)): 8 8 7 7 6 6 5 5 4 4 */
        return (float)(8 - (int)rint((double)k / 2.25));
    case OP_SOLARIZE: return 255.f - 255.f * (float)k / 9.f;
    default: return 0.f;
    }
}

static uint8_t sat_trunc(float v) {
    /* torchvision: .clamp(0, 255).to(uint8), i.e. clamp then truncate. */
    return (uint8_t)(v < 0.f ? 0.f : v > 255.f ? 255.f : v);
}

/* grey (h*w) from RGB, truncated like rgb_to_grayscale(...).to(uint8). */
static void grey(uint8_t *g, const uint8_t *img, int64_t n, int64_t c) {
    for (int64_t p = 0; p < n; p++)
        g[p] = c == 3 ? (uint8_t)(0.2989f * img[3 * p] + 0.587f * img[3 * p + 1] +
                                  0.114f * img[3 * p + 2])
                      : img[p];
}

/* Affine resampling, nearest, fill 0: output pixel centre (x+0.5, y+0.5) reads the input at
 * (a x' + b y' + e, c x' + d y' + f), floored (PIL's transform with NEAREST). */
static void affine_nearest(uint8_t *img, uint8_t *tmp, int64_t h, int64_t w, int64_t c, float a,
                           float b, float e, float cc, float d, float f) {
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            float xp = (float)x + 0.5f, yp = (float)y + 0.5f;
            float sx = a * xp + b * yp + e, sy = cc * xp + d * yp + f;
            int64_t ix = (int64_t)floorf(sx), iy = (int64_t)floorf(sy);
            int inside = ix >= 0 && ix < w && iy >= 0 && iy < h;
            for (int64_t ch = 0; ch < c; ch++)
                tmp[(y * w + x) * c + ch] = inside ? img[(iy * w + ix) * c + ch] : 0;
        }
    memcpy(img, tmp, (size_t)(h * w * c));
}

/* blend(img, other, ratio) = clamp(ratio*img + (1-ratio)*other), other per pixel (c == 1 grey
 * broadcast) or a constant when other == NULL. */
static void blend(uint8_t *img, const uint8_t *other, int other_c, float konst, int64_t n,
                  int64_t c, float ratio) {
    for (int64_t p = 0; p < n; p++)
        for (int64_t ch = 0; ch < c; ch++) {
            float o = other ? (float)other[other_c == 1 ? p : p * c + ch] : konst;
            img[p * c + ch] = sat_trunc(ratio * (float)img[p * c + ch] + (1.f - ratio) * o);
        }
}

static void equalize_channel(uint8_t *img, int64_t n, int64_t c, int64_t ch) {
    int64_t hist[256] = {0};
    for (int64_t p = 0; p < n; p++)
        hist[img[p * c + ch]]++;
    /* PIL/torchvision: step = (sum of non-zero bins except the last one) // 255. */
    int64_t last = 255;
    while (last > 0 && hist[last] == 0)
        last--;
    int64_t step = (n - hist[last]) / 255;
    if (step == 0)
        return;
    uint8_t lut[256];
    int64_t cum = 0;
    for (int v = 0; v < 256; v++) {
        int64_t l = (cum + step / 2) / step;
        lut[v] = (uint8_t)(l > 255 ? 255 : l);
        cum += hist[v];
    }
    for (int64_t p = 0; p < n; p++)
        img[p * c + ch] = lut[img[p * c + ch]];
}

void rvg__autoaugment_apply(uint8_t *img, uint8_t *tmp, int64_t h, int64_t w, int64_t c, int op,
                            float m) {
    const int64_t n = h * w;
    switch (op) {
    case OP_POSTERIZE: {
        uint8_t mask = (uint8_t)(0xFFu << (8 - (int)m));
        for (int64_t k = 0; k < n * c; k++)
            img[k] &= mask;
        break;
    }
    case OP_SOLARIZE:
        for (int64_t k = 0; k < n * c; k++)
            if ((float)img[k] >= m)
                img[k] = (uint8_t)(255 - img[k]);
        break;
    case OP_INVERT:
        for (int64_t k = 0; k < n * c; k++)
            img[k] = (uint8_t)(255 - img[k]);
        break;
    case OP_AUTOCONTRAST:
        for (int64_t ch = 0; ch < c; ch++) {
            int lo = 255, hi = 0;
            for (int64_t p = 0; p < n; p++) {
                int v = img[p * c + ch];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
            if (hi == lo)
                continue;
            float scale = 255.f / (float)(hi - lo);
            for (int64_t p = 0; p < n; p++)
                img[p * c + ch] = sat_trunc((float)(img[p * c + ch] - lo) * scale);
        }
        break;
    case OP_EQUALIZE:
        for (int64_t ch = 0; ch < c; ch++)
            equalize_channel(img, n, c, ch);
        break;
    case OP_COLOR:
        /* adjust_saturation: blend with the grey image; a grey image is its own grey. */
        if (c == 3) {
            grey(tmp, img, n, c);
            blend(img, tmp, 1, 0.f, n, c, 1.f + m);
        }
        break;
    case OP_CONTRAST: {
        /* adjust_contrast: blend with the mean of the (truncated) grey image. */
        grey(tmp, img, n, c);
        double sum = 0;
        for (int64_t p = 0; p < n; p++)
            sum += tmp[p];
        blend(img, NULL, 1, (float)(sum / (double)n), n, c, 1.f + m);
        break;
    }
    case OP_SHARPNESS: {
        /* adjust_sharpness: blend with the image smoothed by [[1,1,1],[1,5,1],[1,1,1]]/13 (rounded)
         * on the interior; the border keeps the original pixels. */
        if (h <= 2 || w <= 2)
            break;
        memcpy(tmp, img, (size_t)(n * c));
        for (int64_t y = 1; y < h - 1; y++)
            for (int64_t x = 1; x < w - 1; x++)
                for (int64_t ch = 0; ch < c; ch++) {
                    float s = 0.f;
                    for (int dy = -1; dy <= 1; dy++)
                        for (int dx = -1; dx <= 1; dx++)
                            s += (float)img[((y + dy) * w + x + dx) * c + ch] *
                                 (dx == 0 && dy == 0 ? 5.f : 1.f);
                    tmp[(y * w + x) * c + ch] = (uint8_t)rintf(s / 13.f);
                }
        for (int64_t k = 0; k < n * c; k++) {
            float v = (1.f + m) * (float)img[k] - m * (float)tmp[k];
            img[k] = sat_trunc(v);
        }
        break;
    }
    case OP_ROTATE: {
        /* Rotation by m degrees about the image centre (inverse map: output -> input). */
        double th = (double)m * M_PI / 180.0;
        float cs = (float)cos(th), sn = (float)sin(th);
        float cx = (float)w * 0.5f, cy = (float)h * 0.5f;
        affine_nearest(img, tmp, h, w, c, cs, sn, cx - cs * cx - sn * cy, -sn, cs,
                       cy + sn * cx - cs * cy);
        break;
    }
    case OP_SHEARX:
        /* (1, m, 0, 0, 1, 0) about the top-left corner, the original AutoAugment's shear. */
        affine_nearest(img, tmp, h, w, c, 1.f, m, 0.f, 0.f, 1.f, 0.f);
        break;
    default: RVG_ASSERT(0 && "unknown AutoAugment op");
    }
}

void rvg__autoaugment(uint8_t *img, uint8_t *tmp, int64_t h, int64_t w, int64_t c, rvg__crng *r) {
    /* AutoAugment.get_params: policy id, two probabilities, two signs, in that order. */
    int id = (int)rvg__crng_below(r, 25);
    double u[2], sign[2];
    u[0] = rvg__crng_uniform(r);
    u[1] = rvg__crng_uniform(r);
    sign[0] = (double)rvg__crng_below(r, 2);
    sign[1] = (double)rvg__crng_below(r, 2);
    for (int k = 0; k < 2; k++) {
        const aa_op *o = &POLICY[id][k];
        if (!(u[k] <= (double)o->p))
            continue;
        int is_signed;
        float m = o->mag >= 0 ? magnitude(o->op, o->mag, &is_signed) : 0.f;
        if (o->mag < 0)
            is_signed = 0;
        if (is_signed && sign[k] == 0.0)
            m = -m;
        rvg__autoaugment_apply(img, tmp, h, w, c, o->op, m);
    }
}
