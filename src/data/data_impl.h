/* data_impl.h - what the files of src/data share and nothing outside them uses: the data set
 * representation, the counter-based generator, image decoding and the per-sample augmentation.
 */
#ifndef RVG_DATA_IMPL_H
#define RVG_DATA_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "rvg/data.h"

/* ---- counter-based generator (counter_rng.c) ---------------------------------------------------
 * A splitmix64 stream whose starting state is a hash of (seed, epoch, stream, index). Every sample
 * draws from its own stream, so no two threads ever share generator state and the numbers a sample
 * sees do not depend on which thread handles it or when. */
typedef struct {
    uint64_t s;
} rvg__crng;

enum {
    RVG__STREAM_PERM = 1,    /* the epoch permutation (index 0) */
    RVG__STREAM_AUGMENT = 2, /* one sample's augmentation (index = data set index) */
};

void rvg__crng_seed(rvg__crng *r, uint64_t seed, uint64_t epoch, uint64_t stream, uint64_t index);
uint64_t rvg__crng_u64(rvg__crng *r);
/* Uniform double in [0, 1), 53 bits. */
double rvg__crng_uniform(rvg__crng *r);
/* Uniform integer in [0, n), unbiased (rejection); n >= 1. */
int64_t rvg__crng_below(rvg__crng *r, int64_t n);
/* A standard normal draw (Box-Muller on two uniforms; the fill of erase_noise). */
float rvg__crng_normal(rvg__crng *r);

/* ---- images (image_decode.c) ----------------------------------------------------------------- */

/* A growable uint8 (h, w, c) buffer; reused across samples so a worker allocates only when an image
 * is larger than any before it. */
typedef struct {
    uint8_t *data;
    size_t cap;
    int64_t h, w, c;
} rvg__image;

rvg_status rvg__image_reserve(rvg__image *im, int64_t h, int64_t w, int64_t c);
void rvg__image_free(rvg__image *im);

/* Decodes a JPEG or PNG file (recognised by its first bytes) into im as 8-bit RGB. Grey, palette,
 * 16-bit and CMYK inputs are converted; alpha is dropped (as PIL's convert("RGB") does). Errors
 * name the file. */
rvg_status rvg__decode_file(rvg__image *im, const char *path);
rvg_status rvg__decode_memory(rvg__image *im, const uint8_t *buf, size_t len, const char *what);

/* ---- data sets (dataset*.c) ------------------------------------------------------------------ */

struct rvg_dataset {
    int64_t count, classes, c, h, w; /* h = w = 0 for folders */
    uint8_t *pixels;                 /* in-memory sets: (count, h, w, c); NULL for folders */
    int32_t *labels;                 /* (count) */
    char **names;                    /* (classes) owned strings */
    char **paths;                    /* folders: (count) owned file paths; NULL otherwise */
    int mirror_ok;                   /* flips keep the class (not true of digits) */
};

rvg_status rvg__open_idx(rvg_dataset *d, const char *dir, rvg_split split, int64_t limit,
                         int fashion);
rvg_status rvg__open_cifar(rvg_dataset *d, const char *dir, rvg_split split, int64_t limit,
                           int hundred);
rvg_status rvg__open_folder(rvg_dataset *d, const char *dir, rvg_split split, int64_t limit);

/* Sets names[k] = "0", "1", ... for classes without names. */
rvg_status rvg__dataset_number_names(rvg_dataset *d);

/* Sample i as a uint8 (h, w, c) image: a borrowed pointer into the data set for in-memory sets, or
 * decoded into *scratch for folders. */
rvg_status rvg__dataset_pixels(const rvg_dataset *d, int64_t i, rvg__image *scratch,
                               const uint8_t **px, int64_t *h, int64_t *w);

/* ---- augmentation (augment.c, autoaugment.c) ------------------------------------------------- */

/* Buffers one thread reuses from sample to sample. */
typedef struct {
    rvg__image dec; /* decoded folder image */
    float *geo;     /* (out_h, out_w, c) pixel values in [0, 255] after the geometry */
    size_t geo_cap;
    rvg__image u8;  /* (out_h, out_w, c) for AutoAugment */
    rvg__image tmp; /* AutoAugment's second buffer */
    int64_t *xi;    /* bilinear column indices and weights, 2 * out_w each */
    float *xl;
    size_t x_cap;
} rvg__aug_scratch;

void rvg__aug_scratch_free(rvg__aug_scratch *s);

/* Checks *a against d (sizes, std, channels). */
rvg_status rvg__augment_check(const rvg_dataset *d, const rvg_augment *a);

/* Writes sample i of d, augmented for (seed, epoch), to out (c, out_h, out_w). */
rvg_status rvg__augment_one(float *out, const rvg_dataset *d, const rvg_augment *a, int64_t i,
                            uint64_t seed, int64_t epoch, rvg__aug_scratch *s);

/* Bilinear resampling as torch's interpolate(mode='bilinear', align_corners=False,
 * antialias=False): the region (ry, rx, rh, rw) of src (.., sw, c) is resized to (th, tw) and the
 * window of that resized image starting at (oy, ox) of size (oh, ow) goes to out (oh, ow, c).
 * xi/xl are scratch of 2*ow entries each. */
void rvg__resize_bilinear(float *out, int64_t oh, int64_t ow, const uint8_t *src, int64_t sw,
                          int64_t c, int64_t ry, int64_t rx, int64_t rh, int64_t rw, int64_t th,
                          int64_t tw, int64_t oy, int64_t ox, int64_t *xi, float *xl);

/* torchvision's RandomResizedCrop.get_params(scale [0.08, 1], ratio [3/4, 4/3]) for an (h, w)
 * image: the crop (*i, *j, *ch, *cw). */
void rvg__rrc_params(rvg__crng *r, int64_t h, int64_t w, int64_t *i, int64_t *j, int64_t *ch,
                     int64_t *cw);

/* torchvision RandomErasing.get_params for an h x w image with scale (0.02, 1/3) and ratio
 * (0.3, 3.3): up to 10 tries of area and log-uniform aspect, the box's height
 * round(sqrt(area * aspect)); returns 0 (erase nothing) when no try fits strictly inside. */
int rvg__erase_params(rvg__crng *r, int64_t h, int64_t w, int64_t *i, int64_t *j, int64_t *eh,
                      int64_t *ew);

/* torchvision's AutoAugment(AutoAugmentPolicy.IMAGENET) on img (h, w, c) in place; tmp has room
 * for the same size. c is 1 or 3. */
void rvg__autoaugment(uint8_t *img, uint8_t *tmp, int64_t h, int64_t w, int64_t c, rvg__crng *r);

/* One AutoAugment operation, exposed so tests can check them one by one. op is the index in the
 * table of autoaugment.c (see rvg__autoaugment_op_name). */
void rvg__autoaugment_apply(uint8_t *img, uint8_t *tmp, int64_t h, int64_t w, int64_t c, int op,
                            float magnitude);
const char *rvg__autoaugment_op_name(int op);
int rvg__autoaugment_op_count(void);

#endif
