/* train_cli.h - what `repvgg train`, `repvgg eval` and `repvgg plot` share inside the tool: the
 * training configuration, its JSON form, checkpoints, evaluation, the per-epoch log and progress.
 *
 * Not a library header: these pieces decide about files, terminals and exit codes, which the
 * library never does. The library pieces they drive are in rvg/model.h, rvg/train.h, rvg/data.h.
 */
#ifndef RVG_TRAIN_CLI_H
#define RVG_TRAIN_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "forward_runner.h"
#include "rvg/data.h"
#include "rvg/model.h"
#include "rvg/status.h"
#include "rvg/tensor.h"

/* Everything a run needs to be repeated or resumed; stored as JSON in the checkpoint. The
 * per-invocation knobs (threads, workers, quiet) live here too but a resume may override them. */
typedef struct {
    char arch[512];  /* canonical arch string (rvg_arch_format) */
    char data[1024]; /* data set spec, as rvg_dataset_open takes */
    char recipe[16]; /* "paper120" or "paper200" */
    char init[1024]; /* weights the run started from (--init), "" = a fresh initialisation */
    int64_t in_ch, classes, size;
    int64_t epochs, batch;
    double lr; /* base learning rate (batch 256 -> 0.1) */
    uint64_t seed;
    int64_t limit_train, limit_val;
    /* optimiser */
    double momentum, wd;
    int nesterov, custom_l2;
    int64_t warmup_epochs;
    /* loss and augmentation */
    double label_smoothing, mixup;
    int autoaugment, flip;
    int64_t crop_pad;
    double erase;   /* random erasing probability, 0 = off */
    int erase_zero; /* erased boxes hold zeros (the mean) instead of N(0, 1) noise */
    /* the last clean_epochs epochs run without erasing, mixup and AutoAugment (0 = none) */
    int64_t clean_epochs;
    char norm[16]; /* "computed", "imagenet" or "none" */
    float mean[4], std[4];
    /* data-parallel training (docs/distributed.md): batch above is the GLOBAL batch, split evenly
     * over the ranks; sync_bn computes BN statistics over the global batch */
    int sync_bn;
    /* decay of the weights' moving average (rvg_ema_update), 0 = none; with one, the average is
     * what is validated and written as the plain weights */
    double ema;
    /* clip the gradients' global L2 norm to this (rvg_clip_grad_norm), 0 = off; a resume may
     * set or change it (--clip-grad), the remedy for a run whose loss spiked */
    double clip_grad;
    /* the training GEMM's arithmetic (rvg_train_kernels_name: "auto" = fp32, "amx", "amx-twin");
     * a resume may switch it (--kernels), at the cost of bit-identity with the original run */
    char kernels[16];
    /* per invocation */
    int threads, workers, quiet;
    int64_t die_at_step; /* hidden test hook: rank 1 (or 0 alone) exits at this step, 0 = never */
} train_config;

/* JSON <-> config. train_config_from_json fills every field it finds and fails on a malformed
 * document or a missing essential field (arch, data, epochs, batch, ...). */
char *train_config_to_json(const train_config *c); /* new string, free() */
rvg_status train_config_from_json(train_config *c, const char *json);

/* ---- checkpoints (train_ckpt.c) ----------------------------------------------------------------
 */

/* What a checkpoint carries besides the model. */
typedef struct {
    int64_t epoch;      /* epochs completed */
    int64_t iter;       /* optimiser steps completed */
    double best_top1;   /* best validation top-1 so far (-1 before any) */
    int64_t best_epoch; /* 1-based epoch of best_top1 (0 before any) */
    uint64_t rng;       /* mixup generator state */
} train_state;

/* Writes DIR/<stem>.ckpt.safetensors (weights, BN statistics, momentum.<name> buffers, the moving
 * average as ema.<name> when ema is not NULL, state and config in the metadata) and
 * DIR/<stem>.safetensors (plain weights with the preprocessing and class names of
 * train_set_norm_meta: ema's when there is one, else m's), both atomically. names: the data set
 * whose class names are recorded (NULL: none). */
rvg_status train_ckpt_save(const rvg_model *m, const rvg_model *ema, const train_config *c,
                           const rvg_dataset *names, const train_state *s, const char *dir,
                           const char *stem);
/* Reads DIR/last.ckpt.safetensors: builds a new model (*m, caller frees) with its momentum
 * buffers restored, and its moving average (*ema, NULL when the run keeps none), and fills *c and
 * *s. */
rvg_status train_ckpt_load(rvg_model **m, rvg_model **ema, train_config *c, train_state *s,
                           const char *dir);
/* Moves every tensor whose name starts with prefix out of d; when keep is not NULL they go there,
 * with the prefix removed. */
rvg_status train_strip_prefix(rvg_dict *d, const char *prefix, rvg_dict *keep);
/* Drops a checkpoint's optimiser and average tensors (momentum.*, ema.*), so that
 * rvg_model_from_dict accepts a checkpoint as the raw weights it holds. */
rvg_status train_strip_state(rvg_dict *d);
/* Loads weights as every command reads them: safetensors or .pth (official or timm names), and a
 * training checkpoint (*.ckpt.safetensors) as the raw weights it holds. When dict is not NULL the
 * file's tensors and metadata (what `repvgg train` recorded: train_get_norm_meta) are returned in
 * *dict, which the caller frees. */
rvg_status train_load_weights(rvg_model **m, rvg_dict **dict, const char *path);
/* Adds c's input preprocessing to d's metadata: repvgg.mean, repvgg.std (comma-separated, in_ch
 * values), repvgg.size and repvgg.eval, how evaluation shapes an image ("center-crop" for
 * folder data, the ImageNet transform; "resize" for the small-image sets), which `repvgg predict`
 * repeats on image files; and, when names is not NULL, repvgg.labels, the JSON array of its
 * class names, which predict prints. */
rvg_status train_set_norm_meta(rvg_dict *d, const train_config *c, const rvg_dataset *names);
/* Copies the preprocessing and class names that train_set_norm_meta recorded in src (repvgg.mean,
 * .std, .size, .eval, .labels; those present) into dst's metadata: what travels with the weights
 * through `repvgg convert` and into an exported ONNX file. */
rvg_status train_copy_recorded_meta(rvg_dict *dst, const rvg_dict *src);
/* The two values of repvgg.eval, written here and read by `repvgg predict`. */
#define TRAIN_EVAL_RESIZE "resize"
#define TRAIN_EVAL_CENTER_CROP "center-crop"
/* Reads them back; returns 1 when all three were present and parsed, 0 when absent, -1 malformed.
 */
int train_get_norm_meta(const rvg_dict *d, int64_t C, float *mean, float *std, int64_t *size);
/* Whether name is just the decimal number k: the name a data set without names (IDX) gives class
 * k, which stands for no name. */
int train_is_number_name(const char *name, int64_t k);
/* Whether the class names recorded in d (repvgg.labels) agree with the data set ds's, class by
 * class, wherever both have a name that is more than the class's number (an IDX set has none):
 * 0 when they do, 1 after a message naming the first difference (cmd, the weights' path and the
 * data's spec in it). A folder set numbers its classes in sorted order, so a class folder added
 * or renamed since training would otherwise shift every label silently. */
int train_check_labels(const rvg_dict *d, const rvg_dataset *ds, const char *cmd, const char *wpath,
                       const char *data);

/* The input size recorded in d (repvgg.size) into *size: 1 when present and in 1..max, 0 when
 * absent (*size untouched), -1 when malformed or out of range, after a message naming cmd and
 * path. bench, export and info take it as their default --size. */
int train_recorded_size(const rvg_dict *d, int64_t max, int64_t *size, const char *cmd,
                        const char *path);

/* ---- evaluation (train_eval.c) ----------------------------------------------------------------
 */

typedef struct {
    int64_t n, K;
    double loss;        /* mean cross-entropy */
    double top1, top5;  /* fractions in [0, 1] */
    int64_t *confusion; /* (K, K): row = true class, column = predicted; caller frees (free) */
} eval_result;

/* Test-time augmentation of train_evaluate: the shape (C, H, W) of one input; each batch also
 * runs mirrored left to right and the two logits are averaged (timm's --tta 2 with a flip). */
typedef struct {
    int64_t C, H, W;
} eval_flip;

/* Runs the whole loader epoch (epoch 0) through fr (the engine, or the model with training = 0).
 * x (batch, C, H, W) and y (batch) are caller-provided buffers, batch <= fr's max_batch. *r is
 * filled (confusion new); pred, when not NULL, receives the predicted class of every sample.
 * flip, when not NULL, adds the mirrored pass (x is overwritten with the mirror). */
rvg_status train_evaluate(fwd_runner *fr, rvg_loader *ld, float *x, int32_t *y, eval_result *r,
                          int32_t *pred, const eval_flip *flip);

/* ---- log and progress (train_log.c) ------------------------------------------------------------
 */

typedef struct {
    int64_t epoch; /* 1-based */
    double lr, train_loss, train_top1, val_loss, val_top1, val_top5, seconds, data_wait_s;
} log_row;

#define LOG_CSV_HEADER                                                                             \
    "epoch,lr,train_loss,train_top1,val_loss,val_top1,val_top5,seconds,data_wait_s"

/* Reads DIR/log.csv (rows in file order) into a new array (*rows, free) of *n rows. A missing file
 * gives zero rows and RVG_OK when missing_ok. */
rvg_status log_read(const char *path, log_row **rows, int64_t *n, int missing_ok);
/* Rewrites path atomically with the header and rows. */
rvg_status log_write(const char *path, const log_row *rows, int64_t n);

/* Live progress within an epoch: on a terminal one line redrawn with \r, otherwise a plain line
 * at most every 5 seconds; nothing when quiet. */
typedef struct {
    int tty, quiet;
    double t_start, t_last_print;
    int64_t epoch, epochs, steps;
} progress;
void progress_begin(progress *pr, int quiet, int64_t epoch, int64_t epochs, int64_t steps);
void progress_step(progress *pr, int64_t step, double loss, double lr, int64_t images);
/* Clears the live line (terminal) before a summary is printed. */
void progress_end(progress *pr);
double now_seconds(void);

/* ---- the run (train_loop.c) ------------------------------------------------------------------ */

/* Trains per *c into dir (which exists). resumed = NULL starts a fresh run (fields of *c left 0 or
 * -1 are inferred from the data, and *s is initialised); otherwise the run continues from the
 * model, moving average (resumed_ema, NULL when c->ema is 0) and state of a checkpoint, and
 * train_run takes both models over (frees them).
 * stop_after_steps > 0 leaves with status 3 after that many steps, writing nothing for the partial
 * epoch (a deterministic stand-in for a kill, for the resume test). Returns the exit status:
 * 0 done, 1 failure, 2 bad option (message printed), 3 stopped. */
int train_run(train_config *c, const char *dir, rvg_model *resumed, rvg_model *resumed_ema,
              train_state *s, int64_t stop_after_steps);

#endif
