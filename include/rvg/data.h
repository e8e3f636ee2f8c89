/* data.h - data sets, augmentation and the background batch loader for training and evaluation.
 *
 * Worked example (Fashion-MNIST, random crop with 2 pixels of padding and flips, 2 worker threads):
 *
 *     rvg_dataset *ds;
 *     RVG_TRY(rvg_dataset_open(&ds, "fashion-mnist", RVG_SPLIT_TRAIN, 0));
 *     rvg_augment aug;
 *     rvg_augment_defaults(&aug, ds, 1);          // train: native size, crop pad, flip
 *     rvg_dataset_stats(ds, 10000, aug.mean, aug.std);   // or the fixed ImageNet numbers
 *     rvg_loader *ld;
 *     RVG_TRY(rvg_loader_new(&ld, ds, &aug, 128, 1, 1, seed, 2, 0, 1));
 *     for (int64_t epoch = 0; epoch < epochs; epoch++) {
 *         rvg_loader_start_epoch(ld, epoch);
 *         int64_t n;
 *         while (rvg_loader_next(ld, x, y, &n, &wait) == RVG_OK && n > 0)
 *             train_step(x, y, n);                // x: (n, C, out_h, out_w), y: (n)
 *     }
 *     rvg_loader_free(ld);
 *     rvg_dataset_free(ds);
 *
 * Data sets in memory (IDX, CIFAR) keep every image as uint8, so a 28x28 epoch costs a few ms of
 * copying; image folders decode JPEG/PNG lazily in the worker threads.
 *
 * Determinism: every random choice (the epoch permutation and each sample's augmentation) comes
 * from a counter-based generator keyed by (seed, epoch, sample index), never from a shared stream.
 * A batch is therefore bit-identical whatever the worker count or thread timing, and a run resumed
 * at an epoch boundary replays exactly.
 *
 * Not here: mixup and label smoothing (the trainer applies them to the batch), distributed file
 * systems, caching decoded folder images.
 */
#ifndef RVG_DATA_H
#define RVG_DATA_H

#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    RVG_SPLIT_TRAIN = 0,
    RVG_SPLIT_VAL = 1, /* IDX: t10k-*, CIFAR: test_batch.bin / test.bin, folder: DIR/val */
} rvg_split;

typedef struct rvg_dataset rvg_dataset;

/* Opens a data set. spec is one of
 *   "fashion-mnist[:DIR]"  IDX files (default DIR /usr/share/datasets/fashion-mnist) with the ten
 *                          Fashion-MNIST class names
 *   "idx:DIR"      MNIST-style IDX files, gzip or raw: {train,t10k}-{images-idx3,labels-idx1}-ubyte
 *                  with or without ".gz"; the "-images.idx3-ubyte" spelling is accepted too
 *   "cifar10:DIR"  CIFAR-10 binary: data_batch_1..5.bin, test_batch.bin (DIR or
 *                  DIR/cifar-10-batches-bin); names from batches.meta.txt when present
 *   "cifar100:DIR" CIFAR-100 binary: train.bin, test.bin (DIR or DIR/cifar-100-binary), fine
 *                  labels; names from fine_label_names.txt when present
 *   "folder:DIR"   DIR/train/CLASS/IMAGE and DIR/val/CLASS/IMAGE, IMAGE = .jpg, .jpeg or .png (any
 *                  case); classes are the sorted subdirectory names of DIR/train (for both
 *                  splits); files sorted by name
 * limit > 0 keeps only N samples: the first N for IDX and CIFAR (their files are already mixed),
 * an evenly strided subset i*total/N for folders (whose order is class-major, so "the first N"
 * would be one class). limit = 0 keeps all.
 * *out is new (rvg_dataset_free). Errors: RVG_STATUS_IO (missing directory or file),
 * RVG_STATUS_BAD_FORMAT (truncated file, wrong magic, counts that disagree, label out of range),
 * RVG_STATUS_BAD_ARGUMENT (unknown spec), RVG_STATUS_NO_MEMORY. */
rvg_status rvg_dataset_open(rvg_dataset **out, const char *spec, rvg_split split, int64_t limit);
void rvg_dataset_free(rvg_dataset *d);

int64_t rvg_dataset_count(const rvg_dataset *d);
int64_t rvg_dataset_classes(const rvg_dataset *d);
/* Channels of the decoded images: 1 (IDX) or 3 (CIFAR, folders: grey/CMYK/alpha become RGB). */
int64_t rvg_dataset_channels(const rvg_dataset *d);
/* Native image size; 0 for folders, whose images vary. */
int64_t rvg_dataset_height(const rvg_dataset *d);
int64_t rvg_dataset_width(const rvg_dataset *d);
/* Borrowed name of class k ("T-shirt/top", "airplane", a folder name, or "7"); NULL if k is out of
 * range. */
const char *rvg_dataset_class_name(const rvg_dataset *d, int64_t k);
/* Label of sample i (0 <= i < count). */
int32_t rvg_dataset_label(const rvg_dataset *d, int64_t i);

/* Decodes sample i into a new uint8 (H, W, C) image (*pixels, rvg_free) with its size. For tests,
 * tools and previews; the loader uses its own buffers. */
rvg_status rvg_dataset_image(const rvg_dataset *d, int64_t i, uint8_t **pixels, int64_t *h,
                             int64_t *w, int64_t *c);

/* Per-channel mean and standard deviation (population) of the pixels scaled to [0,1], over
 * max_samples samples spread evenly over the set (0 or >= count: all). mean and std hold
 * rvg_dataset_channels() floats. Folder sets decode every sample they visit. */
rvg_status rvg_dataset_stats(const rvg_dataset *d, int64_t max_samples, float *mean, float *std);

/* The augmentation pipeline, applied per sample in this order (torchvision's order):
 *   1. geometry, to (out_h, out_w):
 *      random_resized_crop  crop of area scale [0.08, 1] and aspect [3/4, 4/3] (torchvision's
 *                           get_params: 10 tries, then a centre crop), bilinear resize
 *      else center_crop_eval  resize the shorter side to floor(max(out_h, out_w) / 0.875) (the
 *                           longer side keeps the aspect, truncated), bilinear, then a centre crop
 *                           (torchvision's rounding)
 *      else random_crop_pad > 0  zero-pad by that many pixels, crop (crop_h, crop_w) (0: the
 *                           output size) at a uniform random offset (torchvision
 *                           RandomCrop(padding=p)), then, when the crop is not of the output
 *                           size, bilinear resize to (out_h, out_w) (torchvision Resize after
 *                           the crop: small images trained at a larger input size)
 *      else                 bilinear resize to (out_h, out_w), a plain copy when sizes agree
 *   2. hflip: mirror with probability 1/2
 *   3. autoaugment: torchvision's AutoAugment(IMAGENET) on uint8 pixels, nearest, fill 0
 *   4. x = (v/255 - mean[c]) / std[c], stored (C, out_h, out_w)
 *   5. erase_prob > 0: with that probability, torchvision's RandomErasing(scale (0.02, 1/3),
 *      ratio (0.3, 3.3)) sets one box (all channels) to 0, or to N(0, 1) noise with erase_noise
 *      (Zhong et al., "Random Erasing Data Augmentation", AAAI 2020)
 * Bilinear is torch's interpolate(mode='bilinear', align_corners=False, antialias=False). */
typedef struct {
    int64_t out_h, out_w;   /* output size (small sets: native size; folder: 224) */
    int random_crop_pad;    /* zero padding for the random crop; 0 turns the crop off */
    int64_t crop_h, crop_w; /* the random crop's window, resized to out_h x out_w; 0 = out size */
    int hflip;              /* random horizontal flip */
    int random_resized_crop;
    int center_crop_eval;
    int autoaugment;
    float mean[4], std[4]; /* per channel, on [0,1] pixels */
    float erase_prob;      /* random erasing probability, 0 = off */
    int erase_noise;       /* fill the erased box with N(0, 1) noise instead of zeros */
} rvg_augment;

/* Fills *a with the usual recipe for d: train = 1 gives, for sets of known size, native size with
 * random crop (padding 4 for 32x32 and larger, 2 otherwise) and flips, and for folders
 * RandomResizedCrop 224 with flips; train = 0 gives native size (folders: centre crop 224). Flips
 * are only turned on where a mirror image keeps its class: Fashion-MNIST, CIFAR and folders, not
 * sets opened with "idx:" (digits). mean 0, std 1 (identity normalisation): set them from
 * rvg_dataset_stats or rvg_augment_imagenet_norm. AutoAugment and erasing stay off. */
void rvg_augment_defaults(rvg_augment *a, const rvg_dataset *d, int train);

/* Sets mean/std to the ImageNet constants torchvision's recipes use (RGB: mean 0.485 0.456 0.406,
 * std 0.229 0.224 0.225). */
void rvg_augment_imagenet_norm(rvg_augment *a);

/* Augments one sample exactly as the loader would for (seed, epoch, sample index i), into out
 * (C, out_h, out_w). For tests and for showing what the network sees. */
rvg_status rvg_augment_sample(float *out, const rvg_dataset *d, const rvg_augment *a, int64_t i,
                              uint64_t seed, int64_t epoch);

/* Decodes one JPEG or PNG file (grey, palette, 16-bit and CMYK become RGB; alpha is dropped) and
 * applies the deterministic part of *a, as the loader would to a folder sample: center_crop_eval
 * (the ImageNet evaluation transform: shorter side to floor(224 / 0.875) = 256, centre crop 224,
 * with out_h = out_w = 224) or else a plain bilinear resize, then (v/255 - mean) / std. Writes out
 * (channels, out_h, out_w): channels 3 gives RGB; channels 1 gives the luma of the resized RGB
 * pixels, 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601, the weights of PIL's convert("L") and
 * torchvision's Grayscale), exactly the image itself where R = G = B, normalised with mean[0] and
 * std[0]. For single images (`repvgg predict IMG`); a data set goes through the loader.
 * Errors: RVG_STATUS_IO / RVG_STATUS_BAD_FORMAT naming the file (missing, not JPEG/PNG, corrupt),
 * RVG_STATUS_BAD_ARGUMENT when *a asks for a random step (crop, flip, AutoAugment, erasing) or is
 * invalid or channels is not 1 or 3, RVG_STATUS_NO_MEMORY. */
rvg_status rvg_image_load(float *out, const char *path, int64_t channels, const rvg_augment *a);

typedef struct rvg_loader rvg_loader;

/* Background loader: `workers` threads decode and augment samples into a ring of prefetched batches
 * (float32 (N, C, out_h, out_w) + int32 labels). workers = 0 produces each batch inside
 * rvg_loader_next on the calling thread.
 *
 * Epoch order: a permutation of [0, count) drawn from (seed, epoch) when shuffle, else 0, 1, 2, ...
 * Sharding (data-parallel training): the permutation is cut into global batch slots of `batch`
 * consecutive positions, slot s = positions [s*batch, (s+1)*batch). Rank r of world w gets slots
 * r, r+w, r+2w, ... of the SAME permutation (every rank builds the same one from the same seed).
 *   drop_last = 1: only the first floor(count / (batch*w)) * w slots are used, all full, so
 *     every rank gets exactly floor(count / (batch*w)) batches of `batch` samples and ranks step
 *     in lockstep (the training setting). Up to batch*w - 1 samples are skipped per epoch.
 *   drop_last = 0: all ceil(count / batch) slots are used, the last may be partial, so the union
 *     over ranks is the permutation exactly once; rank r gets ceil((slots - r) / w) batches, which
 *     can differ by one between ranks (the evaluation setting: sum the results).
 * world = 1, rank = 0 is the single-process case.
 * The loader borrows d and copies *aug; d must outlive it. *out is new (rvg_loader_free).
 * Errors: RVG_STATUS_BAD_ARGUMENT (batch < 1, rank/world out of range, workers < 0, output larger
 * than padded image for a random crop, std 0, more than 4 channels), RVG_STATUS_NO_MEMORY. */
rvg_status rvg_loader_new(rvg_loader **out, const rvg_dataset *d, const rvg_augment *aug,
                          int64_t batch, int shuffle, int drop_last, uint64_t seed, int workers,
                          int rank, int world);

/* Starts producing epoch's batches in the background. Abandons whatever remains of the previous
 * epoch. Must be called before the first rvg_loader_next. */
rvg_status rvg_loader_start_epoch(rvg_loader *l, int64_t epoch);

/* Replaces the augmentation (a copy of *aug) from the next rvg_loader_start_epoch on, e.g. to
 * end a run without random erasing. Abandons what remains of the current epoch, as starting one
 * does. The output size must stay the same. Errors: RVG_STATUS_BAD_ARGUMENT (invalid *aug, or
 * another output size). */
rvg_status rvg_loader_set_augment(rvg_loader *l, const rvg_augment *aug);

/* Batches this rank gets per epoch (see the sharding rules above). */
int64_t rvg_loader_batches_per_epoch(const rvg_loader *l);

/* Copies the next batch into x (batch, C, out_h, out_w) and y (batch); *n = samples in it (0 at the
 * end of the epoch; only the first *n rows are written). *wait_s (may be NULL) grows by the seconds
 * this call blocked waiting for data. A worker's failure (e.g. a corrupt JPEG) is returned here
 * with its message. */
rvg_status rvg_loader_next(rvg_loader *l, float *x, int32_t *y, int64_t *n, double *wait_s);

/* Dataset index of the sample at position j of this rank's batch b in the current epoch (for tests
 * and for logging misclassified samples); -1 when out of range. */
int64_t rvg_loader_sample_index(const rvg_loader *l, int64_t b, int64_t j);

/* Stops the workers and frees everything; NULL is fine. */
void rvg_loader_free(rvg_loader *l);

#ifdef __cplusplus
}
#endif
#endif
