/* cmd_train.c - `repvgg train`: options, recipe presets and resume; the run itself is in
 * train_loop.c.
 *
 * Presets set the paper's recipes (SPEC §5) and the individual switches override them whatever
 * their order on the command line. A new run refuses a directory that already holds one; --resume
 * DIR takes every setting from DIR/last.ckpt.safetensors and only lets the per-invocation knobs
 * (--threads, --workers, --quiet) change.
 * Under mpirun (MPI builds, docs/distributed.md) every rank runs this same command; it joins the
 * job after the options parse, and when a rank's run fails it ends the whole job rather than
 * leave the other ranks waiting in a collective.
 * Not here: the training loop, checkpoint layout, the chart.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "rvg/dist.h"
#include "rvg/io.h"
#include "rvg/model.h"
#include "train_cli.h"

static void help(void) {
    printf(
        "usage: repvgg train (--arch NAME | --init W) --epochs N --out DIR [options]\n"
        "       repvgg train --resume DIR [--threads T] [--workers W] [--kernels K]\n"
        "                    [--clip-grad NORM] [--quiet]\n\n"
        "Trains the train-form (multi-branch) network with the paper's recipe, validates\n"
        "after every epoch and writes to DIR: last/best.safetensors (weights),\n"
        "last/best.ckpt.safetensors (weights + momentum + state, for --resume), log.csv\n"
        "and curves.png.\n\n"
        "  --arch NAME          A0 ... D2se or custom:blocks=..:width=.. (see 'repvgg info');\n"
        "                       with --init, the weights' architecture by default\n"
        "  --data SPEC          fashion-mnist[:DIR] (default), idx:DIR, cifar10:DIR,\n"
        "                       cifar100:DIR, folder:DIR\n"
        "  --epochs N           epochs (1..100000)\n"
        "  --batch B            batch size (default 128)\n"
        "  --out DIR            run directory (created; must not hold a run already)\n"
        "  --in-ch C, --classes K, --size S\n"
        "                       checked against the data; --size is the network's input\n"
        "                       size (default: the data's; small images are cropped at\n"
        "                       their own size, then resized to it, bilinear)\n"
        "  --lr LR              base learning rate (default 0.1 x batch/256)\n"
        "  --seed S             seed of init, shuffling, augmentation, mixup (default 0)\n"
        "  --threads T          compute threads (default: all cores)\n"
        "  --workers W          data loading threads (default 2; 0 = load on the compute thread)\n"
        "  --kernels K          the convolutions' GEMMs: auto (fp32, the default), amx (Intel\n"
        "                       AMX tiles in bf16x3, ~1e-5 of fp32's results, faster steps;\n"
        "                       docs/training_kernels.md) or amx-twin (the same in plain C)\n"
        "  --limit-train N, --limit-val N   use only the first N samples (0 = all)\n"
        "  --recipe R           paper120 (default): SGD momentum 0.9, cosine per step, wd 1e-4\n"
        "                       without bias/branch-BN decay, crop + flip;\n"
        "                       paper200: + 5 warm-up epochs, label smoothing 0.1, mixup 0.2,\n"
        "                       AutoAugment\n"
        "  --warmup-epochs E    linear warm-up epochs (< epochs)\n"
        "  --wd WD, --momentum M, --nesterov, --custom-l2 (RepVGG's L2 on the fused kernel)\n");
    printf(/* two strings: C limits one literal to 4095 characters */
           "  --label-smoothing E  in [0, 1)\n"
           "  --mixup ALPHA        mixup with lambda ~ Beta(ALPHA, ALPHA); 0 = off\n"
           "  --autoaugment, --no-autoaugment, --flip, --no-flip, --crop-pad P\n"
           "  --erase P            random erasing: with probability P one box of 2-33%% of the\n"
           "                       image (aspect 0.3-3.3) is overwritten after normalisation\n"
           "                       (default 0 = off)\n"
           "  --erase-fill F       what the box holds: noise (N(0,1), the default) or zero\n"
           "  --clean-epochs N     the last N epochs without random erasing, mixup and\n"
           "                       AutoAugment (crop and flip stay), so the run ends on images\n"
           "                       like the test set's (default 0)\n"
           "  --norm N             computed (default: mean/std of the training set), imagenet, "
           "none\n"
           "  --ema DECAY          keep a moving average of the weights (e.g. 0.9998; 0 = off,\n"
           "                       the default): validated, chosen for best and written to\n"
           "                       last/best.safetensors instead of the raw weights\n"
           "  --clip-grad NORM     scale the gradients down where their global L2 norm exceeds\n"
           "                       NORM (torch.nn.utils.clip_grad_norm_; 0 = off, the default);\n"
           "                       the epoch line then gives the largest norm and the steps\n"
           "                       clipped. May be given with --resume\n"
           "  --quiet              print only the per-epoch summaries\n"
           "  --init W             start from the train-form weights W (safetensors or .pth,\n"
           "                       official or timm names) of the same architecture, instead of\n"
           "                       a random initialisation (fine-tuning); a classifier with\n"
           "                       another class count is initialised afresh, a stem with\n"
           "                       other input channels adapted (RGB -> grey: summed). Published\n"
           "                       ImageNet weights expect --norm imagenet. Weights that repvgg\n"
           "                       train wrote also give the input size (--size overrides it)\n"
           "  --resume DIR         continue the run in DIR from last.ckpt.safetensors\n");
    if (rvg_dist_available())
        printf("\nData parallel (this build has MPI): mpirun -np N repvgg train ... trains one\n"
               "model on N processes; --batch is the global batch (a multiple of N), --lr\n"
               "follows it. A resume may use a different N. See docs/distributed.md.\n"
               "  --sync-bn            BatchNorm statistics over the global batch\n"
               "                       (SyncBatchNorm); default: per-rank, as PyTorch DDP\n");
}

enum {
    O_ARCH = 256,
    O_DATA,
    O_EPOCHS,
    O_BATCH,
    O_OUT,
    O_INCH,
    O_CLASSES,
    O_SIZE,
    O_LR,
    O_SEED,
    O_THREADS,
    O_KERNELS,
    O_WORKERS,
    O_RESUME,
    O_LTRAIN,
    O_LVAL,
    O_RECIPE,
    O_WARMUP,
    O_WD,
    O_MOMENTUM,
    O_NESTEROV,
    O_CUSTOML2,
    O_SMOOTH,
    O_MIXUP,
    O_AA,
    O_NOAA,
    O_FLIP,
    O_NOFLIP,
    O_CROPPAD,
    O_NORM,
    O_QUIET,
    O_STOP,
    O_SYNCBN,
    O_DIE,
    O_INIT,
    O_EMA,
    O_ERASE,
    O_ERASEFILL,
    O_CLEAN,
    O_CLIP,
    O_HELP,
    O_END
};

/* The checkpoint records the data spec, and `--resume DIR` may run from another directory: a
 * relative path in the spec (idx:data/x) becomes absolute while it exists. */
static void absolute_data_path(char *spec, size_t cap) {
    char *colon = strchr(spec, ':');
    if (!colon || colon[1] == '/' || colon[1] == 0)
        return;
    char *abs = realpath(colon + 1, NULL);
    if (abs && (size_t)(colon + 1 - spec) + strlen(abs) < cap)
        strcpy(colon + 1, abs);
    free(abs);
}

static int mkdir_p(const char *dir) {
    char buf[4096];
    if (strlen(dir) >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(buf, dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return -1;
    struct stat sb;
    if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int train_command(int argc, char **argv) {
    static const struct option opts[] = {
        {"arch", required_argument, 0, O_ARCH},
        {"data", required_argument, 0, O_DATA},
        {"epochs", required_argument, 0, O_EPOCHS},
        {"batch", required_argument, 0, O_BATCH},
        {"out", required_argument, 0, O_OUT},
        {"in-ch", required_argument, 0, O_INCH},
        {"classes", required_argument, 0, O_CLASSES},
        {"size", required_argument, 0, O_SIZE},
        {"lr", required_argument, 0, O_LR},
        {"seed", required_argument, 0, O_SEED},
        {"threads", required_argument, 0, O_THREADS},
        {"kernels", required_argument, 0, O_KERNELS},
        {"workers", required_argument, 0, O_WORKERS},
        {"resume", required_argument, 0, O_RESUME},
        {"limit-train", required_argument, 0, O_LTRAIN},
        {"limit-val", required_argument, 0, O_LVAL},
        {"recipe", required_argument, 0, O_RECIPE},
        {"warmup-epochs", required_argument, 0, O_WARMUP},
        {"wd", required_argument, 0, O_WD},
        {"momentum", required_argument, 0, O_MOMENTUM},
        {"nesterov", no_argument, 0, O_NESTEROV},
        {"custom-l2", no_argument, 0, O_CUSTOML2},
        {"label-smoothing", required_argument, 0, O_SMOOTH},
        {"mixup", required_argument, 0, O_MIXUP},
        {"autoaugment", no_argument, 0, O_AA},
        {"no-autoaugment", no_argument, 0, O_NOAA},
        {"flip", no_argument, 0, O_FLIP},
        {"no-flip", no_argument, 0, O_NOFLIP},
        {"crop-pad", required_argument, 0, O_CROPPAD},
        {"norm", required_argument, 0, O_NORM},
        {"quiet", no_argument, 0, O_QUIET},
        {"stop-after-steps", required_argument, 0, O_STOP}, /* hidden: for the resume test */
        {"sync-bn", no_argument, 0, O_SYNCBN},
        {"die-at-step", required_argument, 0, O_DIE}, /* hidden: for the MPI death test */
        {"init", required_argument, 0, O_INIT},
        {"ema", required_argument, 0, O_EMA},
        {"clip-grad", required_argument, 0, O_CLIP},
        {"erase", required_argument, 0, O_ERASE},
        {"erase-fill", required_argument, 0, O_ERASEFILL},
        {"clean-epochs", required_argument, 0, O_CLEAN},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0}};
    static const char *const cmd = "train";
    train_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.data, sizeof c.data, "fashion-mnist");
    snprintf(c.recipe, sizeof c.recipe, "paper120");
    snprintf(c.norm, sizeof c.norm, "computed");
    snprintf(c.kernels, sizeof c.kernels, "auto");
    c.batch = 128;
    c.threads = default_threads();
    c.workers = 2;
    c.crop_pad = -1;
    c.flip = -1;
    /* Which options were given: the switches are applied over the recipe afterwards, and a
     * resume accepts only a few. */
    int given[O_END - 256 + 1] = {0};
    double wd = 0, mom = 0, smooth = 0, mixup = 0;
    int64_t warmup = 0, iv, stop_after = 0;
    int nesterov = 0, custom_l2 = 0, aa = -1, flip = -1;
    const char *arch_name = NULL, *out = NULL, *resume = NULL;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o >= 256 && o < O_END)
            given[o - 256] = 1;
        switch (o) {
        case O_ARCH: arch_name = optarg; break;
        case O_DATA:
            if (!*optarg || strlen(optarg) >= sizeof c.data)
                return cli_usage_error(cmd, "--data must be a non-empty spec under %zu bytes",
                                       sizeof c.data);
            strcpy(c.data, optarg);
            break;
        case O_EPOCHS:
            if (!cli_parse_int(optarg, 1, 100000, &c.epochs))
                return cli_usage_error(cmd, "--epochs must be an integer in 1..100000");
            break;
        case O_BATCH:
            if (!cli_parse_int(optarg, 1, 65536, &c.batch))
                return cli_usage_error(cmd, "--batch must be an integer in 1..65536");
            break;
        case O_OUT: out = optarg; break;
        case O_INCH:
            if (!cli_parse_int(optarg, 1, 4, &c.in_ch))
                return cli_usage_error(cmd, "--in-ch must be an integer in 1..4");
            break;
        case O_CLASSES:
            if (!cli_parse_int(optarg, 1, 1000000, &c.classes))
                return cli_usage_error(cmd, "--classes must be an integer in 1..1000000");
            break;
        case O_SIZE:
            if (!cli_parse_int(optarg, 1, 8192, &c.size))
                return cli_usage_error(cmd, "--size must be an integer in 1..8192");
            break;
        case O_LR:
            if (!cli_parse_float(optarg, 1e-12, 100.0, &c.lr))
                return cli_usage_error(cmd, "--lr must be a number in (0, 100]");
            break;
        case O_SEED:
            if (!cli_parse_int(optarg, 0, INT64_MAX, &iv))
                return cli_usage_error(cmd, "--seed must be a non-negative integer");
            c.seed = (uint64_t)iv;
            break;
        case O_THREADS:
            if (!cli_parse_int(optarg, 1, 1024, &iv))
                return cli_usage_error(cmd, "--threads must be an integer in 1..1024");
            c.threads = (int)iv;
            break;
        case O_KERNELS: {
            rvg_train_kernels k;
            if (!cli_parse_train_kernels(optarg, &k))
                return cli_usage_error(cmd, "--kernels must be auto, amx or amx-twin");
            strcpy(c.kernels, rvg_train_kernels_name(k));
            break;
        }
        case O_WORKERS:
            if (!cli_parse_int(optarg, 0, 64, &iv))
                return cli_usage_error(cmd, "--workers must be an integer in 0..64");
            c.workers = (int)iv;
            break;
        case O_RESUME: resume = optarg; break;
        case O_LTRAIN:
            if (!cli_parse_int(optarg, 0, INT64_MAX, &c.limit_train))
                return cli_usage_error(cmd, "--limit-train must be a non-negative integer");
            break;
        case O_LVAL:
            if (!cli_parse_int(optarg, 0, INT64_MAX, &c.limit_val))
                return cli_usage_error(cmd, "--limit-val must be a non-negative integer");
            break;
        case O_RECIPE:
            if (strcmp(optarg, "paper120") != 0 && strcmp(optarg, "paper200") != 0)
                return cli_usage_error(cmd, "--recipe must be paper120 or paper200, not '%s'",
                                       optarg);
            snprintf(c.recipe, sizeof c.recipe, "%s", optarg);
            break;
        case O_WARMUP:
            if (!cli_parse_int(optarg, 0, 100000, &warmup))
                return cli_usage_error(cmd, "--warmup-epochs must be an integer in 0..100000");
            break;
        case O_WD:
            if (!cli_parse_float(optarg, 0.0, 1.0, &wd))
                return cli_usage_error(cmd, "--wd must be a number in [0, 1]");
            break;
        case O_MOMENTUM:
            if (!cli_parse_float(optarg, 0.0, 0.999999, &mom))
                return cli_usage_error(cmd, "--momentum must be a number in [0, 1)");
            break;
        case O_NESTEROV: nesterov = 1; break;
        case O_CUSTOML2: custom_l2 = 1; break;
        case O_SMOOTH:
            if (!cli_parse_float(optarg, 0.0, 0.999999, &smooth))
                return cli_usage_error(cmd, "--label-smoothing must be a number in [0, 1)");
            break;
        case O_MIXUP:
            if (!cli_parse_float(optarg, 0.0, 100.0, &mixup))
                return cli_usage_error(cmd, "--mixup must be a number in [0, 100] (0 = off)");
            break;
        case O_AA: aa = 1; break;
        case O_NOAA: aa = 0; break;
        case O_FLIP: flip = 1; break;
        case O_NOFLIP: flip = 0; break;
        case O_CROPPAD:
            if (!cli_parse_int(optarg, 0, 256, &c.crop_pad))
                return cli_usage_error(cmd, "--crop-pad must be an integer in 0..256");
            break;
        case O_NORM:
            if (strcmp(optarg, "computed") != 0 && strcmp(optarg, "imagenet") != 0 &&
                strcmp(optarg, "none") != 0)
                return cli_usage_error(cmd, "--norm must be computed, imagenet or none, not '%s'",
                                       optarg);
            snprintf(c.norm, sizeof c.norm, "%s", optarg);
            break;
        case O_QUIET: c.quiet = 1; break;
        case O_STOP:
            if (!cli_parse_int(optarg, 1, INT64_MAX, &stop_after))
                return cli_usage_error(cmd, "--stop-after-steps must be a positive integer");
            break;
        case O_SYNCBN: c.sync_bn = 1; break;
        case O_DIE:
            if (!cli_parse_int(optarg, 1, INT64_MAX, &c.die_at_step))
                return cli_usage_error(cmd, "--die-at-step must be a positive integer");
            break;
        case O_INIT:
            if (!*optarg || strlen(optarg) >= sizeof c.init)
                return cli_usage_error(cmd, "--init must be a non-empty path under %zu bytes",
                                       sizeof c.init);
            strcpy(c.init, optarg);
            break;
        case O_EMA:
            if (!cli_parse_float(optarg, 0.0, 0.9999999, &c.ema))
                return cli_usage_error(cmd, "--ema must be a number in [0, 0.9999999] (0 = off)");
            break;
        case O_CLIP:
            if (!cli_parse_float(optarg, 0.0, 1e6, &c.clip_grad))
                return cli_usage_error(cmd, "--clip-grad must be a number in [0, 1e6] (0 = off)");
            break;
        case O_ERASE:
            if (!cli_parse_float(optarg, 0.0, 1.0, &c.erase))
                return cli_usage_error(cmd, "--erase must be a probability in [0, 1] (0 = off)");
            break;
        case O_ERASEFILL:
            if (strcmp(optarg, "noise") != 0 && strcmp(optarg, "zero") != 0)
                return cli_usage_error(cmd, "--erase-fill must be noise or zero, not '%s'", optarg);
            c.erase_zero = strcmp(optarg, "zero") == 0;
            break;
        case O_CLEAN:
            if (!cli_parse_int(optarg, 0, 100000, &c.clean_epochs))
                return cli_usage_error(cmd, "--clean-epochs must be an integer in [0, 100000]");
            break;
        case O_HELP: help(); return 0;
        default: return cli_usage_error(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    /* Every rank parsed the same options; now join the job (a no-op without MPI). */
    rvg_status dst = rvg_dist_init();
    if (dst != RVG_OK)
        return cli_fail(cmd, dst, "joining the MPI job");

    train_state s;
    memset(&s, 0, sizeof s);
    if (resume) {
        /* Only the per-invocation knobs may accompany --resume: anything else would silently
         * make the continued run differ from the one that was started. */
        static const int allowed[] = {O_RESUME, O_THREADS, O_KERNELS, O_WORKERS,
                                      O_QUIET,  O_STOP,    O_DIE,     O_CLIP};
        for (int k = 256; k < O_END; k++) {
            int ok = 0;
            for (size_t j = 0; j < sizeof allowed / sizeof allowed[0]; j++)
                ok |= allowed[j] == k;
            if (given[k - 256] && !ok) {
                const char *name = "?";
                for (const struct option *op = opts; op->name; op++)
                    if (op->val == k)
                        name = op->name;
                return cli_usage_error(cmd,
                                       "--%s cannot be combined with --resume (the run's "
                                       "settings come from its checkpoint)",
                                       name);
            }
        }
        int threads = c.threads, workers = c.workers, quiet = c.quiet;
        char kernels[sizeof c.kernels];
        strcpy(kernels, c.kernels);
        int64_t die_at = c.die_at_step;
        double clip = c.clip_grad;
        rvg_model *m = NULL, *ema = NULL;
        rvg_status st = train_ckpt_load(&m, &ema, &c, &s, resume);
        if (st != RVG_OK)
            return cli_fail(cmd, st, "--resume");
        if (given[O_THREADS - 256] || !c.threads)
            c.threads = threads;
        if (given[O_WORKERS - 256])
            c.workers = workers;
        if (given[O_KERNELS - 256])
            strcpy(c.kernels, kernels);
        if (given[O_CLIP - 256])
            c.clip_grad = clip;
        c.quiet = quiet;
        c.die_at_step = die_at;
        if (s.epoch >= c.epochs) {
            rvg_model_free(m);
            rvg_model_free(ema);
            fprintf(stderr, "repvgg train: the run in %s already finished its %lld epochs\n",
                    resume, (long long)c.epochs);
            return 1;
        }
        return train_run(&c, resume, m, ema, &s, stop_after);
    }

    char init_arch[512];
    if (c.init[0]) { /* the network of the --init weights, and the input size they learnt */
        rvg_dict *d = NULL;
        rvg_arch ia;
        rvg_form form;
        rvg_status ist = rvg_weights_load_dict(&d, c.init);
        if (ist == RVG_OK)
            ist = train_strip_state(d);
        if (ist == RVG_OK && !arch_name)
            ist = rvg_arch_infer(&ia, &form, d);
        if (ist != RVG_OK) {
            rvg_dict_free(d);
            fprintf(stderr, "repvgg train: --init %s: %s: %s\n", c.init, rvg_status_str(ist),
                    rvg_last_error());
            return 1;
        }
        /* features learnt at one scale do not carry over to another (docs/fashion_mnist.md,
         * "Finishing at a larger input"), so fine-tuning keeps the recorded size by default */
        int got = given[O_SIZE - 256] ? 0 : train_recorded_size(d, 8192, &c.size, "train", c.init);
        rvg_dict_free(d);
        if (got < 0)
            return 1;
        if (got > 0 && !c.quiet)
            fprintf(stderr,
                    "repvgg train: %s was trained at %lldx%lld: training at that size (--size "
                    "to change it)\n",
                    c.init, (long long)c.size, (long long)c.size);
        if (!arch_name) {
            rvg_arch_format(&ia, init_arch, sizeof init_arch);
            arch_name = init_arch;
        }
    }
    if (!arch_name)
        return cli_usage_error(cmd, "--arch is required (or --init W, or --resume DIR)");
    if (!c.epochs)
        return cli_usage_error(cmd, "--epochs is required");
    if (!out)
        return cli_usage_error(cmd, "--out is required");
    rvg_arch arch;
    rvg_status st = rvg_arch_parse(&arch, arch_name);
    if (st != RVG_OK)
        return cli_usage_error(cmd, "--arch '%s': %s", arch_name, rvg_last_error());
    if (strlen(arch_name) >= sizeof c.arch)
        return cli_usage_error(cmd, "--arch is too long");
    strcpy(c.arch, arch_name);

    /* The recipe, then the switches that override it. */
    int p200 = strcmp(c.recipe, "paper200") == 0;
    c.momentum = 0.9;
    c.wd = 1e-4;
    c.warmup_epochs = p200 ? 5 : 0;
    c.label_smoothing = p200 ? 0.1 : 0.0;
    c.mixup = p200 ? 0.2 : 0.0;
    c.autoaugment = p200;
    if (given[O_WD - 256])
        c.wd = wd;
    if (given[O_MOMENTUM - 256])
        c.momentum = mom;
    if (given[O_WARMUP - 256])
        c.warmup_epochs = warmup;
    if (given[O_SMOOTH - 256])
        c.label_smoothing = smooth;
    if (given[O_MIXUP - 256])
        c.mixup = mixup;
    if (aa >= 0)
        c.autoaugment = aa;
    c.flip = flip;
    c.nesterov = nesterov;
    c.custom_l2 = custom_l2;
    if (c.warmup_epochs >= c.epochs && c.warmup_epochs > 0) {
        if (given[O_WARMUP - 256])
            return cli_usage_error(cmd, "--warmup-epochs (%lld) must be less than --epochs (%lld)",
                                   (long long)c.warmup_epochs, (long long)c.epochs);
        c.warmup_epochs = c.epochs - 1; /* a short run of the paper200 recipe: shrink it */
        if (!c.quiet)
            fprintf(stderr,
                    "repvgg train: %lld epochs are too few for the recipe's %d warm-up epochs: "
                    "warming up for %lld (--warmup-epochs E to choose)\n",
                    (long long)c.epochs, p200 ? 5 : 0, (long long)c.warmup_epochs);
    }
    if (c.nesterov && c.momentum == 0)
        return cli_usage_error(cmd, "--nesterov needs a non-zero --momentum");
    if (c.clean_epochs > c.epochs)
        return cli_usage_error(cmd, "--clean-epochs (%lld) must not exceed --epochs (%lld)",
                               (long long)c.clean_epochs, (long long)c.epochs);

    absolute_data_path(c.data, sizeof c.data);
    char path[4200];
    snprintf(path, sizeof path, "%s/last.ckpt.safetensors", out);
    if (access(path, F_OK) == 0) {
        fprintf(stderr,
                "repvgg train: %s already holds a run; continue it with --resume %s or "
                "choose another --out\n",
                out, out);
        return 1;
    }
    if (mkdir_p(out) != 0) {
        fprintf(stderr, "repvgg train: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    return train_run(&c, out, NULL, NULL, &s, stop_after);
}

int cmd_train(int argc, char **argv) {
    int rc = train_command(argc, argv);
    /* 0, 2 (a usage error every rank saw alike) and 3 (--stop-after-steps, taken by every rank at
     * the same step) leave all ranks together; any other failure may be one rank's alone while the
     * rest wait in a collective, so it ends the job. */
    if (rc != 0 && rc != 2 && rc != 3 && rvg_dist_world() > 1) {
        fprintf(stderr, "repvgg train: rank %d of %d failed; ending the job\n", rvg_dist_rank(),
                rvg_dist_world());
        rvg_dist_abort(rc);
    }
    rvg_dist_finalize();
    return rc;
}
