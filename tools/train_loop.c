/* train_loop.c - the training run behind `repvgg train`: data, model, the SGD loop with the paper's
 * recipe (warm-up + per-iteration cosine, label smoothing, mixup, custom L2), validation after
 * every epoch, checkpoints, the CSV log and the chart.
 *
 * With --ema, rank 0 also keeps a moving average of the weights (rvg_ema_update after every
 * step); it is what is validated, picked as best and written as the plain weights, and the
 * checkpoint carries it for the resume.
 *
 * Reproducibility: the loader's randomness depends only on (seed, epoch, sample index) and mixup
 * draws from a generator whose state is checkpointed at each epoch boundary, so a run resumed from
 * last.ckpt replays the interrupted epoch from its start and, with the same thread count, ends with
 * weights bit-identical to an uninterrupted run.
 *
 * Data parallel (under mpirun, rvg/dist.h; docs/distributed.md): every rank holds the whole model
 * and trains on its shard (c->batch / world samples) of each GLOBAL batch of the shared epoch
 * permutation. After backward the gradient arena is summed over ranks in buckets and divided by
 * the world size, so, the loss being a mean, the update is that of one process on the global
 * batch. The reduction starts after the whole backward pass rather than overlapping it: backward
 * is one library call over the model, and on the 2-core machines this targets both cores are busy
 * computing anyway, so overlap would buy nothing measurable (docs/distributed.md has numbers).
 * Rank 0 broadcasts the initial (or resumed) state, alone evaluates, logs and writes files; the
 * ranks compare a hash of their parameters after every epoch. A rank that fails returns 1 and
 * cmd_train ends the whole job (MPI_Abort), so no rank waits forever in a collective.
 * Not here: option parsing (cmd_train.c), checkpoint file layout (train_ckpt.c), the log and
 * progress line (train_log.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
#ifdef RVG_HAVE_OPENMP
#include <omp.h>
#endif

#include "cli.h"
#include "png_chart.h"
#include "rvg/dist.h"
#include "rvg/io.h"
#include "rvg/ops.h"
#include "rvg/train.h"
#include "train_cli.h"

/* ---- mixup generator: splitmix64, one 64-bit word of state (easy to checkpoint) -------------- */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in (0, 1): 53 random bits, never exactly 0 (log and pow below need that) */
static double rng_uniform(uint64_t *s) {
    return ((double)(rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double rng_normal(uint64_t *s) {
    double u1 = rng_uniform(s), u2 = rng_uniform(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Gamma(a, 1) by Marsaglia & Tsang (2000); a < 1 through Gamma(a+1) * U^(1/a). */
static double rng_gamma(uint64_t *s, double a) {
    if (a < 1.0)
        return rng_gamma(s, a + 1.0) * pow(rng_uniform(s), 1.0 / a);
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = rng_normal(s), v = 1.0 + c * x;
        if (v <= 0)
            continue;
        v = v * v * v;
        double u = rng_uniform(s);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
            return d * v;
    }
}

/* Beta(a, a) = X / (X + Y) with X, Y ~ Gamma(a). */
static double rng_beta(uint64_t *s, double a) {
    double x = rng_gamma(s, a), y = rng_gamma(s, a);
    return x / (x + y);
}

/* Mixup on a batch (timm's "batch" mode): sample i is blended with sample n-1-i,
 * x = lam x + (1-lam) x_flipped, likewise the soft targets. x (n, F), t (n, K). */
static void mixup_batch(float *x, float *t, int64_t n, int64_t F, int64_t K, float lam) {
    float mu = 1.0f - lam;
    for (int64_t i = 0, j = n - 1; i < j; i++, j--) {
        float *a = x + i * F, *b = x + j * F;
        for (int64_t f = 0; f < F; f++) {
            float va = a[f], vb = b[f];
            a[f] = lam * va + mu * vb;
            b[f] = lam * vb + mu * va;
        }
        float *ta = t + i * K, *tb = t + j * K;
        for (int64_t k = 0; k < K; k++) {
            float va = ta[k], vb = tb[k];
            ta[k] = lam * va + mu * vb;
            tb[k] = lam * vb + mu * va;
        }
    }
}

/* ---- the run -----------------------------------------------------------------------------------
 */

typedef struct {
    rvg_dataset *dtr, *dva;
    rvg_loader *ltr, *lva;
    rvg_model *m;
    rvg_model *ema; /* the weights' moving average (--ema), rank 0 only; NULL without */
    rvg_plan *plan;
    float *x, *target, *dlogits; /* (B, C, H, W), (B, K), (B, K) */
    int32_t *y;                  /* (B) */
    log_row *rows;
    int64_t nrows;
    int lock_fd; /* DIR/.lock, held while the run writes DIR (rank 0); -1 = none */
} run_ctx;

static void ctx_free(run_ctx *r) {
    rvg_loader_free(r->ltr);
    rvg_loader_free(r->lva);
    rvg_dataset_free(r->dtr);
    rvg_dataset_free(r->dva);
    rvg_plan_free(r->plan);
    rvg_model_free(r->m);
    rvg_model_free(r->ema);
    rvg_free(r->x);
    rvg_free(r->target);
    rvg_free(r->dlogits);
    rvg_free(r->y);
    free(r->rows);
    if (r->lock_fd >= 0)
        close(r->lock_fd); /* releases the lock */
}

/* Two runs writing one directory would overwrite each other's checkpoints and log, each
 * reporting success: the first to lock DIR/.lock (flock, released when the process ends, however
 * it ends) has it, a second is refused. Returns the descriptor, or -1 after a message. */
static int lock_run_dir(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "repvgg train: cannot create %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr,
                "repvgg train: another repvgg train is writing %s (it holds %s); wait for it "
                "or choose another --out\n",
                dir, path);
        close(fd);
        return -1;
    }
    return fd;
}

static int fail(rvg_status st, const char *what) {
    fprintf(stderr, "repvgg train: %s: %s: %s\n", what, rvg_status_str(st), rvg_last_error());
    return 1;
}

/* --init: the fresh model's weights from c->init (a checkpoint's momentum is not taken). */
static int init_from_file(rvg_model *m, const train_config *c) {
    rvg_dict *d = NULL;
    rvg_init_report rep;
    rvg_status st = rvg_weights_load_dict(&d, c->init);
    if (st == RVG_OK)
        st = train_strip_state(d);
    if (st == RVG_OK)
        st = rvg_model_init_from(m, d, &rep);
    rvg_dict_free(d);
    if (st != RVG_OK) {
        fprintf(stderr, "repvgg train: --init %s: %s: %s\n", c->init, rvg_status_str(st),
                rvg_last_error());
        return 1;
    }
    if (!c->quiet) {
        printf("init: %lld tensors from %s", (long long)rep.copied, c->init);
        if (rep.head_reset)
            printf("; classifier initialised afresh (%lld -> %lld classes)",
                   (long long)rep.src_classes, (long long)c->classes);
        if (rep.stem_adapted)
            printf("; stem adapted from %lld to %lld input channels", (long long)rep.src_in_ch,
                   (long long)c->in_ch);
        printf("\n");
    }
    return 0;
}

/* Fills the fields a fresh run infers from the data (0 / -1 mean "not given") and checks the
 * given ones against it. */
static int resolve_config(train_config *c, const rvg_dataset *dtr, const rvg_dataset *dva) {
    int64_t C = rvg_dataset_channels(dtr), K = rvg_dataset_classes(dtr);
    if (c->in_ch && c->in_ch != C) {
        fprintf(stderr, "repvgg train: --in-ch %lld but the data set has %lld channels%s\n",
                (long long)c->in_ch, (long long)C,
                rvg_dataset_height(dtr) == 0 /* a folder set */
                    ? " (folder images decode to RGB, grey ones too: train a 3-channel model, "
                      "omit --in-ch; `repvgg predict` gives it grey images as RGB)"
                    : "");
        return 2;
    }
    if (c->classes && c->classes != K) {
        fprintf(stderr, "repvgg train: --classes %lld but the data set has %lld classes\n",
                (long long)c->classes, (long long)K);
        return 2;
    }
    /* fewer is fine (an IDX val split's count is its largest label + 1, which a small split
     * may not reach), as eval allows; more would be classes the network cannot output */
    if (rvg_dataset_classes(dva) > K) {
        fprintf(stderr, "repvgg train: the train split has %lld classes, the val split %lld\n",
                (long long)K, (long long)rvg_dataset_classes(dva));
        return 1;
    }
    c->in_ch = C;
    c->classes = K;
    rvg_augment def;
    rvg_augment_defaults(&def, dtr, 1);
    if (!c->size)
        c->size = def.out_h;
    if (c->crop_pad < 0)
        c->crop_pad = def.random_crop_pad;
    if (c->flip < 0)
        c->flip = def.hflip;
    if (c->lr <= 0)
        c->lr = 0.1 * (double)c->batch / 256.0;
    if (strcmp(c->norm, "imagenet") == 0) {
        if (C != 3) {
            fprintf(stderr,
                    "repvgg train: --norm imagenet needs 3-channel images, the data set "
                    "has %lld\n",
                    (long long)C);
            return 2;
        }
        rvg_augment_imagenet_norm(&def);
        memcpy(c->mean, def.mean, sizeof c->mean);
        memcpy(c->std, def.std, sizeof c->std);
    } else if (strcmp(c->norm, "computed") == 0) {
        rvg_status st = rvg_dataset_stats(dtr, 10000, c->mean, c->std);
        if (st != RVG_OK)
            return fail(st, "computing the normalisation");
        for (int64_t i = 0; i < C; i++)
            if (!(c->std[i] > 0))
                c->std[i] = 1.0f; /* a constant channel: leave it unscaled */
    } else {
        for (int i = 0; i < 4; i++) {
            c->mean[i] = 0.0f;
            c->std[i] = 1.0f;
        }
    }
    return 0;
}

static void make_augment(rvg_augment *a, const train_config *c, const rvg_dataset *d, int train) {
    rvg_augment_defaults(a, d, train);
    a->out_h = a->out_w = c->size;
    if (train) {
        a->random_crop_pad = a->random_resized_crop ? 0 : (int)c->crop_pad;
        /* A fixed-size set trained at another --size: crop at the native size, then resize. */
        const int64_t h = rvg_dataset_height(d), w = rvg_dataset_width(d);
        if (a->random_crop_pad > 0 && h > 0 && (h != c->size || w != c->size)) {
            a->crop_h = h;
            a->crop_w = w;
        }
        a->hflip = c->flip;
        a->autoaugment = c->autoaugment;
        a->erase_prob = (float)c->erase;
        a->erase_noise = !c->erase_zero;
    }
    memcpy(a->mean, c->mean, sizeof a->mean);
    memcpy(a->std, c->std, sizeof a->std);
}

/* The epoch's line. With --clip-grad it gives the epoch's largest gradient norm and how many
 * steps were clipped. eta_s >= 0 (epochs remain) adds the time the rest of the run should take:
 * the epochs of this process so far, checkpoints included, extrapolated. */
static void print_summary(const train_config *c, const log_row *r, double ips, int best,
                          double eta_s, double norm_max, int64_t clipped) {
    char eta[48] = "", clip[80] = "";
    if (c->clip_grad > 0)
        snprintf(clip, sizeof clip, "  grad norm max %.3g, %lld step%s clipped", norm_max,
                 (long long)clipped, clipped == 1 ? "" : "s");
    if (eta_s >= 0) {
        const long long t = (long long)(eta_s + 0.5);
        snprintf(eta, sizeof eta, "  run ETA %lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
    }
    printf("epoch %lld/%lld  train loss %.4f top1 %.2f%%  %sval loss %.4f top1 %.2f%% top5 "
           "%.2f%%  %.1f s (%.1f img/s, data wait %.2f s)%s%s%s\n",
           (long long)r->epoch, (long long)c->epochs, r->train_loss, 100.0 * r->train_top1,
           c->ema > 0 ? "ema " : "", r->val_loss, 100.0 * r->val_top1, 100.0 * r->val_top5,
           r->seconds, ips, r->data_wait_s, clip, best ? "  *best*" : "", eta);
    fflush(stdout);
}

/* A diverged run's last words (epoch and step 0-based). */
static void not_finite(progress *pr, const char *what, int64_t epoch, int64_t step, double lr) {
    progress_end(pr);
    fprintf(stderr,
            "repvgg train: the %s is not finite at epoch %lld step %lld (learning rate %.4g too "
            "high?)\n",
            what, (long long)epoch + 1, (long long)step + 1, lr);
}

/* Data-parallel ranks must read the same data and resume from the same point: each is a copy,
 * and a copy that differs (a shorter file, other labels, a checkpoint of another epoch) showed
 * only as an MPI truncation error, a silently different run, or an epoch later as differing
 * parameters. One collective on a digest of the splits' sizes and labels and the checkpoint's
 * position, before anything is trained; 0 when all ranks agree, else 1 after a message. */
static int ranks_agree(const rvg_dataset *dtr, const rvg_dataset *dva, const train_state *s) {
    uint64_t h[2] = {0, 0};
    const rvg_dataset *sets[2] = {dtr, dva};
    for (int j = 0; j < 2; j++) {
        int64_t head[3] = {rvg_dataset_count(sets[j]), rvg_dataset_classes(sets[j]),
                           rvg_dataset_channels(sets[j])};
        h[j] = rvg_dist_hash(head, sizeof head);
        for (int64_t i = 0; i < head[0]; i++) {
            int32_t lab = rvg_dataset_label(sets[j], i);
            h[j] = h[j] * 0x100000001B3ull ^ rvg_dist_hash(&lab, sizeof lab);
        }
    }
    const int64_t pos[2] = {s->epoch, s->iter};
    const uint64_t all[3] = {h[0], h[1], rvg_dist_hash(pos, sizeof pos)};
    static const char *const what[3] = {"training data", "validation data",
                                        "checkpoint's epoch and step"};
    for (int j = 0; j < 3; j++) {
        uint64_t lo, hi;
        rvg_status st = rvg_dist_minmax_u64(all[j], &lo, &hi);
        if (st != RVG_OK)
            return fail(st, "comparing the ranks' data");
        if (lo != hi) {
            fprintf(stderr,
                    "repvgg train: rank %d: the ranks' %s differ (sizes, labels or position): "
                    "every rank needs an identical copy\n",
                    rvg_dist_rank(), what[j]);
            return 1;
        }
    }
    return 0;
}

/* The sync-BN hook (rvg_model_set_bn_sync). A failed collective mid-forward cannot be unwound
 * through the library, and the other ranks would wait for this one forever: end the job. */
static void bn_allreduce(double *buf, int64_t n, void *ctx) {
    (void)ctx;
    rvg_status st = rvg_dist_allreduce_sum_f64(buf, n);
    if (st != RVG_OK) {
        fprintf(stderr, "repvgg train: synchronised BatchNorm: %s: %s\n", rvg_status_str(st),
                rvg_last_error());
        rvg_dist_abort(1);
    }
}

/* Makes every rank's model state rank 0's: parameters, BN statistics and counters, momentum. */
static rvg_status broadcast_model(rvg_model *m) {
    int64_t np, nb, nc;
    float *p = rvg_model_params(m, &np), *b = rvg_model_buffers(m, &nb);
    float *mo = rvg_model_momentum(m, &np);
    int64_t *cnt = rvg_model_bn_counters(m, &nc);
    RVG_TRY(rvg_dist_broadcast(p, (size_t)np * sizeof(float), 0));
    RVG_TRY(rvg_dist_broadcast(mo, (size_t)np * sizeof(float), 0));
    RVG_TRY(rvg_dist_broadcast(b, (size_t)nb * sizeof(float), 0));
    return rvg_dist_broadcast(cnt, (size_t)nc * sizeof(int64_t), 0);
}

/* Sum of the gradients over ranks, divided by the world size: the mean over the global batch. */
static rvg_status average_grads(rvg_model *m, int world) {
    int64_t n;
    float *g = rvg_model_grads(m, &n);
    RVG_TRY(rvg_dist_allreduce_sum_f32(g, n));
    const float inv = 1.0f / (float)world;
    for (int64_t i = 0; i < n; i++)
        g[i] *= inv;
    return RVG_OK;
}

int train_run(train_config *c, const char *dir, rvg_model *resumed, rvg_model *resumed_ema,
              train_state *s, int64_t stop_after_steps) {
    run_ctx r;
    memset(&r, 0, sizeof r);
    r.lock_fd = -1;
    r.m = resumed;
    r.ema = resumed_ema;
    int fresh = resumed == NULL, rc = 1;
    const int rank = rvg_dist_rank(), world = rvg_dist_world();
    rvg_status st;
    if (rank != 0)
        c->quiet = 1; /* one voice per job: rank 0's (errors still come from every rank) */
    if (rank == 0 && (r.lock_fd = lock_run_dir(dir)) < 0)
        goto done;
    char path[4200];
#ifdef RVG_HAVE_OPENMP
    omp_set_num_threads(c->threads);
#endif
    rvg_train_kernels tk = RVG_TRAIN_KERNELS_AUTO;
    if (!cli_parse_train_kernels(c->kernels, &tk)) { /* only a damaged checkpoint gets here */
        fprintf(stderr,
                "repvgg train: the checkpoint names unknown kernels '%s' (a resume may "
                "choose others with --kernels)\n",
                c->kernels);
        goto done;
    }
    if (!rvg_ops_set_train_kernels(tk)) {
        fprintf(stderr, "repvgg train: --kernels %s: not available on this CPU or build%s\n",
                c->kernels, fresh ? "" : " (a resume may choose others with --kernels)");
        goto done;
    }
    if ((st = rvg_dataset_open(&r.dtr, c->data, RVG_SPLIT_TRAIN, c->limit_train)) != RVG_OK) {
        rc = fail(st, "opening the training data");
        goto done;
    }
    if ((st = rvg_dataset_open(&r.dva, c->data, RVG_SPLIT_VAL, c->limit_val)) != RVG_OK) {
        rc = fail(st, "opening the validation data");
        goto done;
    }
    if (!fresh) { /* the checkpoint's class names against the data's, before any step */
        char ck[4200];
        rvg_dict *cd = NULL;
        snprintf(ck, sizeof ck, "%s/last.ckpt.safetensors", dir);
        if ((st = rvg_safetensors_load(&cd, ck)) != RVG_OK) {
            rc = fail(st, "reading the checkpoint's class names");
            goto done;
        }
        int differ = train_check_labels(cd, r.dtr, "train --resume", ck, c->data);
        rvg_dict_free(cd);
        if (differ)
            goto done;
    }
    if (fresh) {
        if ((rc = resolve_config(c, r.dtr, r.dva)) != 0)
            goto done;
        rc = 1;
        rvg_arch arch;
        if ((st = rvg_arch_parse(&arch, c->arch)) != RVG_OK) {
            rc = fail(st, "--arch");
            goto done;
        }
        arch.in_ch = c->in_ch;
        arch.classes = c->classes;
        rvg_arch_format(&arch, c->arch, sizeof c->arch);
        if ((st = rvg_model_new(&r.m, &arch, RVG_FORM_TRAIN)) != RVG_OK) {
            rc = fail(st, "building the model");
            goto done;
        }
        rvg_model_init(r.m, c->seed);
        /* rank 0's model is the one broadcast below, so only rank 0 reads --init */
        if (c->init[0] && rank == 0 && (rc = init_from_file(r.m, c)) != 0)
            goto done;
        rc = 1;
        s->epoch = s->iter = s->best_epoch = 0;
        s->best_top1 = -1.0;
        s->rng = c->seed ^ 0x6D69787570ull; /* "mixup": its own stream, apart from the init's */
    } else if (rvg_dataset_channels(r.dtr) != c->in_ch ||
               rvg_dataset_classes(r.dtr) != c->classes) {
        fprintf(stderr,
                "repvgg train: the data set no longer matches the checkpoint (%lld "
                "channels, %lld classes expected)\n",
                (long long)c->in_ch, (long long)c->classes);
        goto done;
    }
    if (c->batch % world != 0) {
        fprintf(stderr,
                "repvgg train: --batch %lld (the global batch) must be a multiple of the %d "
                "ranks\n",
                (long long)c->batch, world);
        rc = 2;
        goto done;
    }
    if (world > 1 && (rc = ranks_agree(r.dtr, r.dva, s)) != 0)
        goto done;
    if (world > 1 && (st = broadcast_model(r.m)) != RVG_OK) {
        rc = fail(st, "broadcasting rank 0's model");
        goto done;
    }
    if (c->sync_bn && world > 1)
        rvg_model_set_bn_sync(r.m, bn_allreduce, NULL);
    if (rank != 0) { /* only rank 0 validates and writes, so only it keeps the average */
        rvg_model_free(r.ema);
        r.ema = NULL;
    } else if (c->ema > 0 && !r.ema) { /* a fresh run's average starts as its initial model */
        if ((st = rvg_model_new(&r.ema, rvg_model_arch(r.m), RVG_FORM_TRAIN)) != RVG_OK ||
            (st = rvg_ema_update(r.ema, r.m, 0.0f)) != RVG_OK) {
            rc = fail(st, "setting up the moving average");
            goto done;
        }
    }
    /* B: this rank's share of the global batch; every per-step buffer is sized by it */
    const int64_t B = c->batch / world, C = c->in_ch, H = c->size, W = c->size, K = c->classes;
    if ((st = rvg_model_check_input(r.m, C, H, W)) != RVG_OK) {
        rc = fail(st, "--size");
        goto done;
    }
    rvg_augment atr, ava;
    make_augment(&atr, c, r.dtr, 1);
    make_augment(&ava, c, r.dva, 0);
    if ((st = rvg_loader_new(&r.ltr, r.dtr, &atr, B, 1, 1, c->seed, c->workers, rank, world)) !=
            RVG_OK ||
        (st = rvg_loader_new(&r.lva, r.dva, &ava, B, 0, 0, c->seed, c->workers, 0, 1)) != RVG_OK) {
        rc = fail(st, "setting up the data loader");
        goto done;
    }
    const int64_t steps = rvg_loader_batches_per_epoch(r.ltr);
    if (steps < 1) {
        fprintf(stderr,
                "repvgg train: the training set has %lld samples, fewer than one batch of "
                "%lld\n",
                (long long)rvg_dataset_count(r.dtr), (long long)c->batch);
        goto done;
    }
    if (rvg_dataset_count(r.dva) < 1) {
        fprintf(stderr, "repvgg train: the validation set is empty\n");
        goto done;
    }
    if ((st = rvg_plan_new(&r.plan, r.m, B, H, W)) != RVG_OK) {
        rc = fail(st, "planning activations");
        goto done;
    }
    r.x = rvg_alloc((size_t)(B * C * H * W) * sizeof(float));
    r.y = rvg_alloc((size_t)B * sizeof(int32_t));
    r.target = rvg_alloc((size_t)(B * K) * sizeof(float));
    r.dlogits = rvg_alloc((size_t)(B * K) * sizeof(float));
    if (!r.x || !r.y || !r.target || !r.dlogits) {
        fprintf(stderr, "repvgg train: out of memory\n");
        goto done;
    }
    /* The log keeps the rows of the epochs the checkpoint covers; replayed epochs are redone. */
    snprintf(path, sizeof path, "%s/log.csv", dir);
    if (!fresh) {
        if ((st = log_read(path, &r.rows, &r.nrows, 1)) != RVG_OK) {
            rc = fail(st, "reading the log");
            goto done;
        }
        while (r.nrows > 0 && r.rows[r.nrows - 1].epoch > s->epoch)
            r.nrows--;
        if (r.nrows < s->epoch && rank == 0) /* deleted or cut by hand: say so, train on */
            fprintf(stderr,
                    "repvgg train: warning: %s has rows for %lld of the %lld finished epochs; "
                    "the log and its chart will lack the others\n",
                    path, (long long)r.nrows, (long long)s->epoch);
    }
    {
        log_row *nr = realloc(r.rows, (size_t)(r.nrows + c->epochs + 1) * sizeof *r.rows);
        if (!nr) {
            fprintf(stderr, "repvgg train: out of memory\n");
            goto done;
        }
        r.rows = nr;
    }

    rvg_sgd_config sgd = rvg_sgd_defaults();
    sgd.momentum = (float)c->momentum;
    sgd.weight_decay = (float)c->wd;
    sgd.nesterov = c->nesterov;
    sgd.custom_l2 = c->custom_l2;
    const int64_t total = c->epochs * steps, warmup = c->warmup_epochs * steps;
    const int64_t F = C * H * W;
    int64_t steps_here = 0;
    if (!c->quiet) {
        fprintf(stderr,
                "repvgg train: %s on %s, %lld train / %lld val images %lldx%lldx%lld, "
                "%lld classes, batch %lld, %lld steps/epoch, lr %.4g, %d thread%s, "
                "%d worker%s%s\n",
                c->arch, c->data, (long long)rvg_dataset_count(r.dtr),
                (long long)rvg_dataset_count(r.dva), (long long)C, (long long)H, (long long)W,
                (long long)K, (long long)c->batch, (long long)steps, c->lr, c->threads,
                c->threads == 1 ? "" : "s", c->workers, c->workers == 1 ? "" : "s",
                fresh ? "" : " (resumed)");
        if (world > 1)
            fprintf(stderr,
                    "repvgg train: data parallel over %d ranks, %lld images per rank and step, "
                    "%s BatchNorm\n",
                    world, (long long)B, c->sync_bn ? "synchronised" : "per-rank");
        if (r.ema)
            fprintf(stderr,
                    "repvgg train: moving average of the weights, decay %g: it is validated and "
                    "written as the weights\n",
                    c->ema);
        if (!fresh)
            fprintf(stderr, "repvgg train: resuming after epoch %lld of %lld\n",
                    (long long)s->epoch, (long long)c->epochs);
    }

    /* from here on each step's rvg_sgd_step_fused leaves the gradients zero for the next */
    rvg_model_zero_grad(r.m);
    int clean_on = 0; /* the loader runs without the strong augmentations (--clean-epochs) */
    const int64_t first_epoch = s->epoch;
    const double t_run = now_seconds();
    for (int64_t epoch = s->epoch; epoch < c->epochs; epoch++) {
        double t0 = now_seconds(), wait = 0.0, loss_sum = 0.0, lr_first = 0.0;
        int64_t seen = 0, correct = 0, step = 0, clipped = 0;
        double norm_max = 0.0;
        const int clean = epoch >= c->epochs - c->clean_epochs;
        if (clean && !clean_on) {
            /* the run ends on images like the test set's: crop and flip only (He et al. 2019,
             * "Data Augmentation Revisited", refine without the strong augmentations) */
            rvg_augment plain;
            make_augment(&plain, c, r.dtr, 1);
            plain.erase_prob = 0.0f;
            plain.autoaugment = 0;
            if ((st = rvg_loader_set_augment(r.ltr, &plain)) != RVG_OK) {
                rc = fail(st, "switching to the clean epochs");
                goto done;
            }
            clean_on = 1;
            if (!c->quiet)
                fprintf(stderr,
                        "repvgg train: epochs %lld-%lld run without random erasing, mixup and "
                        "AutoAugment (--clean-epochs)\n",
                        (long long)(c->epochs - c->clean_epochs + 1), (long long)c->epochs);
        }
        progress pr;
        progress_begin(&pr, c->quiet, epoch + 1, c->epochs, steps);
        if ((st = rvg_loader_start_epoch(r.ltr, epoch)) != RVG_OK) {
            rc = fail(st, "starting the epoch");
            goto done;
        }
        for (;;) {
            int64_t n;
            if ((st = rvg_loader_next(r.ltr, r.x, r.y, &n, &wait)) != RVG_OK) {
                rc = fail(st, "loading a batch");
                goto done;
            }
            if (n == 0)
                break;
            rvg_targets_from_labels(r.target, r.y, n, K, (float)c->label_smoothing);
            if (c->mixup > 0 && !clean)
                mixup_batch(r.x, r.target, n, F, K, (float)rng_beta(&s->rng, c->mixup));
            const float *logits;
            if ((st = rvg_model_forward(r.m, r.plan, r.x, n, 1, &logits)) != RVG_OK) {
                rc = fail(st, "forward");
                goto done;
            }
            float loss = rvg_softmax_xent_ref(r.dlogits, logits, r.target, n, K);
            if (!isfinite(loss)) {
                not_finite(&pr, "loss", epoch, step, c->lr);
                goto done;
            }
            for (int64_t i = 0; i < n; i++) {
                const float *l = logits + i * K;
                int64_t arg = 0;
                for (int64_t k = 1; k < K; k++)
                    if (l[k] > l[arg])
                        arg = k;
                correct += arg == r.y[i];
            }
            if (c->custom_l2 && c->wd > 0)
                rvg_custom_l2_grad(r.m, (float)c->wd);
            if ((st = rvg_model_backward(r.m, r.plan, r.dlogits, NULL)) != RVG_OK) {
                rc = fail(st, "backward");
                goto done;
            }
            if (c->die_at_step > 0 && s->iter + 1 == c->die_at_step && rank == (world > 1)) {
                /* the death test's stand-in for a crashed node: no cleanup, no MPI_Finalize */
                fprintf(stderr, "repvgg train: rank %d dying at step %lld (--die-at-step)\n",
                        rank, (long long)c->die_at_step);
                fflush(stderr);
                _exit(1);
            }
            if (world > 1 && (st = average_grads(r.m, world)) != RVG_OK) {
                rc = fail(st, "summing the gradients over ranks");
                goto done;
            }
            if (c->clip_grad > 0) { /* on the averaged gradients: the same on every rank */
                double norm;
                if ((st = rvg_clip_grad_norm(r.m, (float)c->clip_grad, &norm)) != RVG_OK) {
                    rc = fail(st, "clipping the gradients");
                    goto done;
                }
                if (!isfinite(norm)) {
                    not_finite(&pr, "gradient norm", epoch, step, c->lr);
                    goto done;
                }
                clipped += norm > c->clip_grad;
                norm_max = norm > norm_max ? norm : norm_max;
            }
            float lr = rvg_lr_at((float)c->lr, s->iter, warmup, total);
            if (step == 0)
                lr_first = lr;
            /* the update, the average's update and the gradients zeroed for the next step */
            const float ema_decay = r.ema ? rvg_ema_decay_at((float)c->ema, s->iter) : 0.0f;
            if ((st = rvg_sgd_step_fused(r.m, &sgd, lr, r.ema, ema_decay)) != RVG_OK) {
                rc = fail(st, "updating the weights");
                goto done;
            }
            s->iter++;
            step++;
            steps_here++;
            loss_sum += (double)loss * (double)n;
            seen += n;
            progress_step(&pr, step, loss_sum / (double)seen, lr, seen * world);
            if (stop_after_steps > 0 && steps_here == stop_after_steps) {
                /* the test's stand-in for a kill: leave without touching the checkpoint */
                progress_end(&pr);
                fprintf(stderr, "repvgg train: stopping after %lld steps (--stop-after-steps)\n",
                        (long long)steps_here);
                rc = 3;
                goto done;
            }
        }
        progress_end(&pr);
        double t_train = now_seconds() - t0;
        if (world > 1) {
            /* the epoch's statistics over all ranks, and the check that they still agree */
            double tot[3] = {loss_sum, (double)seen, (double)correct};
            int64_t np;
            const float *params = rvg_model_params(r.m, &np);
            uint64_t lo, hi;
            if ((st = rvg_dist_allreduce_sum_f64(tot, 3)) != RVG_OK ||
                (st = rvg_dist_minmax_u64(rvg_dist_hash(params, (size_t)np * sizeof(float)), &lo,
                                          &hi)) != RVG_OK) {
                rc = fail(st, "comparing the ranks");
                goto done;
            }
            if (lo != hi) {
                fprintf(stderr,
                        "repvgg train: the ranks' parameters differ after epoch %lld (checksums "
                        "%016llx .. %016llx): the ranks no longer train the same model\n",
                        (long long)epoch + 1, (unsigned long long)lo, (unsigned long long)hi);
                goto done;
            }
            loss_sum = tot[0];
            seen = (int64_t)tot[1];
            correct = (int64_t)tot[2];
            if (rank != 0) {
                /* rank 0 alone validates and writes; the others go on to the next epoch and wait
                 * for it in the first gradient reduction */
                s->epoch = epoch + 1;
                continue;
            }
        }
        eval_result ev;
        fwd_runner fr;
        fwd_runner_borrow(&fr, r.m, r.plan);
        /* with --ema the average is validated, swapped into the model for it (rvg_ema_swap) */
        if ((r.ema && (st = rvg_ema_swap(r.ema, r.m)) != RVG_OK) ||
            (st = train_evaluate(&fr, r.lva, r.x, r.y, &ev, NULL, NULL)) != RVG_OK ||
            (r.ema && (st = rvg_ema_swap(r.ema, r.m)) != RVG_OK)) {
            rc = fail(st, "validation");
            goto done;
        }
        free(ev.confusion);
        log_row *row = &r.rows[r.nrows++];
        row->epoch = epoch + 1;
        row->lr = lr_first;
        row->train_loss = seen ? loss_sum / (double)seen : 0.0;
        row->train_top1 = seen ? (double)correct / (double)seen : 0.0;
        row->val_loss = ev.loss;
        row->val_top1 = ev.top1;
        row->val_top5 = ev.top5;
        row->seconds = now_seconds() - t0;
        row->data_wait_s = wait;
        int best = ev.top1 > s->best_top1;
        if (best) {
            s->best_top1 = ev.top1;
            s->best_epoch = epoch + 1;
        }
        s->epoch = epoch + 1;
        if ((st = train_ckpt_save(r.m, r.ema, c, r.dtr, s, dir, "last")) != RVG_OK ||
            (best && (st = train_ckpt_save(r.m, r.ema, c, r.dtr, s, dir, "best")) != RVG_OK)) {
            rc = fail(st, "writing a checkpoint");
            goto done;
        }
        if ((st = log_write(path, r.rows, r.nrows)) != RVG_OK) {
            rc = fail(st, "writing the log");
            goto done;
        }
        const int64_t left = c->epochs - (epoch + 1);
        const double per_epoch = (now_seconds() - t_run) / (double)(epoch + 1 - first_epoch);
        print_summary(c, row, t_train > 0 ? (double)seen / t_train : 0.0, best,
                      left > 0 ? per_epoch * (double)left : -1.0, norm_max, clipped);
    }
    if (rank != 0) {
        rc = 0;
        goto done;
    }
    char png[4200];
    snprintf(png, sizeof png, "%s/curves.png", dir);
    if ((st = chart_write_png(png, r.rows, r.nrows, c->arch)) != RVG_OK) {
        rc = fail(st, "drawing the chart");
        goto done;
    }
    if (!c->quiet)
        fprintf(stderr,
                "repvgg train: done; best val top-1 %.2f%% at epoch %lld; wrote %s/"
                "{last,best}.safetensors, log.csv, curves.png\n",
                100.0 * s->best_top1, (long long)s->best_epoch, dir);
    rc = 0;
done:
    ctx_free(&r);
    return rc;
}
