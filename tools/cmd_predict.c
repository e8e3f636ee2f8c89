/* cmd_predict.c - `repvgg predict`: class predictions for JPEG/PNG images, or logits for a batch
 * of images given as a NumPy array.
 *
 * Either form runs: deploy-form weights on the fast inference engine by default, the train form
 * through the model's forward with BN in inference mode (--engine picks either way). Images go
 * through in chunks of --batch so memory stays bounded for many images or large arrays.
 *
 * Image files get the preprocessing that evaluation used in training (the loader's own code, via
 * rvg_image_load), as `repvgg train` records it in the weights' metadata (repvgg.mean, .std, .size,
 * .eval): for folder data the ImageNet evaluation transform (shorter side to S/0.875, bilinear,
 * centre crop S), for the small-image sets (Fashion-MNIST, CIFAR) a bilinear resize of the whole
 * image to S x S; then the recorded mean and std. Weights without that record (published ImageNet
 * checkpoints) get the ImageNet transform at 224 with ImageNet's mean and std, for 3 input
 * channels only. A 1-channel model sees the luma of the image (rvg_image_load).
 * Class names: --labels FILE, else the data set's names that `repvgg train` records
 * (repvgg.labels), else for a 1000-class model data/imagenet_classes.txt, looked for
 * beside the executable (../data, ./data: the build directory sits in the source tree), in the
 * current directory, and in the source tree's data/ (RVG_DATA_DIR, set by CMake); without names
 * only indices are printed.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef RVG_HAVE_OPENMP
#include <omp.h>
#endif

#include "cli.h"
#include "forward_runner.h"
#include "rvg/data.h"
#include "rvg/io.h"
#include "rvg/model.h"
#include "train_cli.h"

#define MAX_INPUTS 4096

/* Whether a and b name one existing file (the same device and inode). */
static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static void help(void) {
    printf(
        "usage: repvgg predict --weights W --input IMG [IMG...] [--topk K] [--labels FILE]\n"
        "                      [--size S] [--resize | --center-crop] [--batch B]\n"
        "                      [--output Y.npy] [--engine fast|model] [--kernels K]\n"
        "                      [--threads T] [--json]\n"
        "       repvgg predict --weights W --input X.npy --output Y.npy [--batch B]\n"
        "                      [--engine fast|model] [--kernels K] [--threads T]\n\n"
        "Runs the model in W (either form; safetensors, a training checkpoint or .pth).\n\n"
        "Images (JPEG or PNG) are preprocessed as training evaluated, from what `repvgg train`\n"
        "records in W: a bilinear resize to S x S for the small-image sets (Fashion-MNIST,\n"
        "CIFAR), or for folders the ImageNet transform (shorter side S/0.875, centre crop S);\n"
        "then the recorded mean and std, in grey (luma) for a 1-channel model. Weights without\n"
        "the record (published ImageNet ones) get the ImageNet transform at 224 with ImageNet's\n"
        "mean and std. For each image the K most likely classes are printed as\n"
        "'index  probability  label' (softmax probabilities).\n"
        "NumPy: X is a float32 array (N, C, H, W), already preprocessed; the float32 logits\n"
        "(N, classes) are written to Y.\n\n"
        "  --topk K       classes printed per image (default 5; at most the class count)\n"
        "  --labels FILE  class names, one per line in index order (default: the data set's\n"
        "                 names that `repvgg train` records in W, else for 1000 classes\n"
        "                 data/imagenet_classes.txt)\n"
        "  --size S       input size for images (default: the recorded one, else 224)\n"
        "  --resize, --center-crop\n"
        "                 shape images by a plain resize to S x S, or by the ImageNet transform,\n"
        "                 whatever W records\n"
        "  --batch B      images per forward pass (default 32)\n"
        "  --engine E     fast: the inference engine of the deploy form (a train-form W is\n"
        "                 converted in memory first); model: the model's layer-by-layer forward\n"
        "                 (default: fast for deploy-form weights, model for the train form)\n"
        "  --kernels K    the fast engine's kernel set: auto (default: the fastest fp32 set),\n"
        "                 avx512, avx2, portable, or amx (Intel AMX tiles in bf16x3, ~1e-5 of\n"
        "                 max|logit| from fp32; docs/inference.md); avx512-twin and amx-twin\n"
        "                 are their plain-C twins, for testing. Needs the fast engine\n"
        "  --threads T    compute threads (default: all cores)\n"
        "  --output Y     also write the logits (N, classes) as float32 .npy\n"
        "  --json         print one JSON object instead: predictions, an array of {input,\n"
        "                 top: [{class, probability, label}]} in input order, and size\n");
}

enum { KIND_UNREADABLE, KIND_OTHER, KIND_NPY, KIND_IMAGE, KIND_DIR };

/* What an input holds, from its name (".npy") or its first bytes (NumPy, JPEG or PNG magic). An
 * unreadable file is left for the loader to report with its reason. */
static int input_kind(const char *path) {
    size_t n = strlen(path);
    if (n >= 4 && strcasecmp(path + n - 4, ".npy") == 0)
        return KIND_NPY;
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return KIND_DIR;
    FILE *f = fopen(path, "rb");
    if (!f)
        return KIND_UNREADABLE;
    unsigned char m[8] = {0};
    size_t got = fread(m, 1, sizeof m, f);
    fclose(f);
    if (got >= 6 && memcmp(m, "\x93NUMPY", 6) == 0)
        return KIND_NPY;
    if ((got >= 3 && m[0] == 0xFF && m[1] == 0xD8 && m[2] == 0xFF) ||
        (got == 8 && memcmp(m, "\x89PNG\r\n\x1a\n", 8) == 0))
        return KIND_IMAGE;
    return KIND_OTHER;
}

/* ---- NumPy batch ----------------------------------------------------------------------------- */

/* How the model runs: which engine (forward_runner.h), on how many threads, in chunks of how many
 * images. */
typedef struct {
    runner_kind kind;
    int threads;
    int64_t batch;
    rvg_infer_isa isa;
} run_opts;

static int predict_npy(rvg_model *m, const run_opts *ro, const char *in, const char *out) {
    const int64_t batch = ro->batch;
    fwd_runner fr = {0};
    float *x = NULL, *y = NULL;
    int ndim, rc = 1;
    int64_t shape[RVG_MAX_DIMS];
    rvg_status st;
    if ((st = rvg_npy_load_f32(in, &x, &ndim, shape)) != RVG_OK) {
        rc = cli_fail("predict", st, "reading input");
        goto done;
    }
    if (ndim != 4) {
        fprintf(stderr, "repvgg predict: %s has %d dimensions, expected 4 (N, C, H, W)\n", in,
                ndim);
        goto done;
    }
    int64_t N = shape[0], C = shape[1], H = shape[2], W = shape[3];
    int64_t K = rvg_model_arch(m)->classes;
    if ((st = rvg_model_check_input(m, C, H, W)) != RVG_OK) {
        rc = cli_fail("predict", st, in);
        goto done;
    }
    int64_t b = N < batch ? (N > 0 ? N : 1) : batch;
    if ((st = fwd_runner_init(&fr, m, ro->kind, b, H, W, ro->threads, ro->isa)) != RVG_OK) {
        rc = cli_fail("predict", st, "planning");
        goto done;
    }
    y = rvg_alloc((size_t)(N * K) * sizeof(float));
    if (!y) {
        fprintf(stderr, "repvgg predict: out of memory\n");
        goto done;
    }
    for (int64_t i = 0; i < N; i += b) {
        int64_t n = N - i < b ? N - i : b;
        const float *logits;
        if ((st = fwd_runner_forward(&fr, x + i * C * H * W, n, &logits)) != RVG_OK) {
            rc = cli_fail("predict", st, "forward");
            goto done;
        }
        memcpy(y + i * K, logits, (size_t)(n * K) * sizeof(float));
    }
    int64_t oshape[2] = {N, K};
    if ((st = rvg_npy_save_f32(out, y, 2, oshape)) != RVG_OK) {
        rc = cli_fail("predict", st, "writing output");
        goto done;
    }
    rc = 0;
done:
    fwd_runner_free(&fr);
    rvg_free(x);
    rvg_free(y);
    return rc;
}

/* ---- class names ----------------------------------------------------------------------------- */

typedef struct {
    char *text;   /* the file, with each line's end replaced by NUL */
    char **names; /* (count) pointers into text */
    int64_t count;
} labels;

static void labels_free(labels *l) {
    rvg_free(l->text);
    free(l->names);
    memset(l, 0, sizeof *l);
}

/* Reads one name per line ("\n" or "\r\n"); a final line without a newline counts, a trailing
 * empty line does not. */
static rvg_status labels_read(labels *l, const char *path) {
    memset(l, 0, sizeof *l);
    uint8_t *buf;
    size_t len;
    RVG_TRY(rvg_read_file(path, &buf, &len)); /* NUL-terminated: rvg_read_file allocates len+1 */
    char *t = (char *)buf;
    int64_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += t[i] == '\n';
    if (len > 0 && t[len - 1] != '\n')
        n++;
    l->text = t;
    l->names = malloc((size_t)(n > 0 ? n : 1) * sizeof *l->names);
    if (!l->names) {
        labels_free(l);
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
    }
    char *p = t;
    for (int64_t k = 0; k < n; k++) {
        char *e = strchr(p, '\n');
        if (e)
            *e = '\0';
        size_t m = strlen(p);
        if (m > 0 && p[m - 1] == '\r')
            p[m - 1] = '\0';
        l->names[k] = p;
        p = e ? e + 1 : p + m;
    }
    l->count = n;
    return RVG_OK;
}

/* The names `repvgg train` records (repvgg.labels: a JSON array of K strings); 1 if there are K
 * of them. */
static int labels_from_json(labels *l, const char *json, int64_t K) {
    memset(l, 0, sizeof *l);
    cJSON *a = json ? cJSON_Parse(json) : NULL;
    size_t total = 0;
    int ok = cJSON_IsArray(a) && cJSON_GetArraySize(a) == K;
    for (int64_t k = 0; ok && k < K; k++) {
        const cJSON *s = cJSON_GetArrayItem(a, (int)k);
        ok = cJSON_IsString(s);
        total += ok ? strlen(s->valuestring) + 1 : 0;
    }
    if (ok) {
        l->text = rvg_alloc(total ? total : 1);
        l->names = malloc((size_t)K * sizeof *l->names);
        ok = l->text && l->names;
    }
    char *p = l->text;
    for (int64_t k = 0; ok && k < K; k++) {
        const char *s = cJSON_GetArrayItem(a, (int)k)->valuestring;
        size_t n = strlen(s) + 1;
        memcpy(p, s, n);
        l->names[k] = p;
        p += n;
    }
    cJSON_Delete(a);
    if (!ok)
        labels_free(l);
    else
        l->count = K;
    return ok;
}

/* data/imagenet_classes.txt beside the executable, in the current directory, or in the source
 * tree the tool was built from; 1 if found. */
static int find_default_labels(char *out, size_t n) {
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    const char *rel[] = {"../data/imagenet_classes.txt", "data/imagenet_classes.txt"};
    if (k > 0) {
        exe[k] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
                snprintf(out, n, "%s/%s", exe, rel[i]);
                if (access(out, R_OK) == 0)
                    return 1;
            }
        }
    }
    snprintf(out, n, "data/imagenet_classes.txt");
    if (access(out, R_OK) == 0)
        return 1;
#ifdef RVG_DATA_DIR
    /* the source tree's data/, for a build directory outside it */
    snprintf(out, n, "%s/imagenet_classes.txt", RVG_DATA_DIR);
    return access(out, R_OK) == 0;
#else
    return 0;
#endif
}

/* ---- images ---------------------------------------------------------------------------------- */

/* The k most probable classes of one image: softmax of its logits, in double, printed as text or,
 * when json is not NULL, added to that array as {"input", "top": [{"class", "probability",
 * "label"}]}. */
static void print_topk(const char *path, const float *logit, int64_t K, int64_t k,
                       const labels *names, double *prob, int64_t *order, cJSON *json) {
    double mx = -INFINITY, sum = 0.0;
    for (int64_t j = 0; j < K; j++)
        mx = logit[j] > mx ? logit[j] : mx;
    for (int64_t j = 0; j < K; j++)
        sum += prob[j] = exp((double)logit[j] - mx);
    for (int64_t j = 0; j < K; j++) {
        prob[j] /= sum;
        order[j] = j;
    }
    /* Partial selection sort: k passes; ties keep the lower index first. */
    for (int64_t r = 0; r < k; r++) {
        int64_t best = r;
        for (int64_t j = r + 1; j < K; j++)
            if (prob[order[j]] > prob[order[best]] ||
                (prob[order[j]] == prob[order[best]] && order[j] < order[best]))
                best = j;
        int64_t t = order[r];
        order[r] = order[best];
        order[best] = t;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "input", path);
        cJSON *top = cJSON_AddArrayToObject(o, "top");
        for (int64_t r = 0; r < k; r++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "class", (double)order[r]);
            cJSON_AddNumberToObject(e, "probability", prob[order[r]]);
            if (names->count)
                cJSON_AddStringToObject(e, "label", names->names[order[r]]);
            cJSON_AddItemToArray(top, e);
        }
        cJSON_AddItemToArray(json, o);
        return;
    }
    printf("%s:\n", path);
    for (int64_t r = 0; r < k; r++) {
        int64_t j = order[r];
        if (names->count)
            printf("  %5lld  %.6f  %s\n", (long long)j, prob[j], names->names[j]);
        else
            printf("  %5lld  %.6f\n", (long long)j, prob[j]);
    }
}

/* The image transform for a model of in_ch channels from the weights' metadata d (wpath names
 * them in messages), --size (0: not given) and --resize / --center-crop (shape: 0 / 1, -1: not
 * given). Returns 0, or 1 after a message. */
static int image_transform(rvg_augment *aug, const rvg_dict *d, const char *wpath, int64_t in_ch,
                           int64_t size, int shape) {
    memset(aug, 0, sizeof *aug);
    if (in_ch != 1 && in_ch != 3) {
        fprintf(stderr,
                "repvgg predict: the model takes %lld input channels; images decode to 3 (RGB) "
                "or 1 (grey); give a preprocessed .npy array instead\n",
                (long long)in_ch);
        return 1;
    }
    int64_t msize = 224;
    int have = train_get_norm_meta(d, in_ch, aug->mean, aug->std, &msize);
    const char *ev = rvg_dict_meta(d, "repvgg.eval");
    if (have < 0 ||
        (ev && strcmp(ev, TRAIN_EVAL_RESIZE) != 0 && strcmp(ev, TRAIN_EVAL_CENTER_CROP) != 0)) {
        fprintf(stderr, "repvgg predict: %s: malformed repvgg.mean/std/size/eval metadata\n",
                wpath);
        return 1;
    }
    if (have == 0) {
        if (in_ch != 3) {
            fprintf(stderr,
                    "repvgg predict: %s records no input normalisation (repvgg.mean/std, written "
                    "by repvgg train) for its 1-channel input; give a preprocessed .npy array "
                    "instead\n",
                    wpath);
            return 1;
        }
        rvg_augment_imagenet_norm(aug);
    }
    for (int64_t c = 0; c < in_ch; c++)
        if (!(aug->std[c] > 0)) {
            fprintf(stderr, "repvgg predict: %s: a recorded std is not positive\n", wpath);
            return 1;
        }
    aug->out_h = aug->out_w = size ? size : msize;
    /* recorded weights without repvgg.eval predate it: the centre crop, as before */
    aug->center_crop_eval = shape >= 0 ? shape : !(ev && strcmp(ev, TRAIN_EVAL_RESIZE) == 0);
    return 0;
}

static int predict_images(rvg_model *m, const run_opts *ro, const char *const *paths, int64_t N,
                          int64_t topk, const char *labels_path, const char *labels_json,
                          const rvg_augment *aug, const char *out, int json) {
    const int64_t batch = ro->batch;
    const rvg_arch *arch = rvg_model_arch(m);
    const int64_t K = arch->classes, C = arch->in_ch, size = aug->out_h;
    rvg_status st = rvg_model_check_input(m, C, size, size);
    if (st != RVG_OK)
        return cli_fail("predict", st, "--size");
    labels names;
    memset(&names, 0, sizeof names);
    if (labels_path) {
        if ((st = labels_read(&names, labels_path)) != RVG_OK)
            return cli_fail("predict", st, "reading --labels");
        if (names.count != K) {
            fprintf(stderr, "repvgg predict: %s has %lld names, but the model has %lld classes\n",
                    labels_path, (long long)names.count, (long long)K);
            labels_free(&names);
            return 1;
        }
    } else if (labels_from_json(&names, labels_json, K)) {
        /* the data set's class names, recorded by `repvgg train` */
    } else if (labels_json) {
        fprintf(stderr,
                "repvgg predict: warning: the class names recorded in the weights (repvgg.labels) "
                "are not a JSON list of %lld strings; printing indices (--labels FILE gives "
                "names)\n",
                (long long)K);
    } else if (K == 1000) {
        char def[4200];
        if (find_default_labels(def, sizeof def) && labels_read(&names, def) == RVG_OK &&
            names.count != K) {
            fprintf(stderr, "repvgg predict: %s has %lld names, not 1000; printing indices\n", def,
                    (long long)names.count);
            labels_free(&names);
        }
    }
    if (topk > K)
        topk = K;

    int64_t b = N < batch ? N : batch, img = C * size * size;
    fwd_runner fr = {0};
    float *x = rvg_alloc((size_t)(b * img) * sizeof(float));            /* (b, C, size, size) */
    float *y = out ? rvg_alloc((size_t)(N * K) * sizeof(float)) : NULL; /* (N, K) */
    double *prob = malloc((size_t)K * sizeof *prob);
    int64_t *order = malloc((size_t)K * sizeof *order);
    cJSON *jo = json ? cJSON_CreateObject() : NULL;
    cJSON *jarr = jo ? cJSON_AddArrayToObject(jo, "predictions") : NULL;
    int rc = 1;
    if (!x || (out && !y) || !prob || !order || (json && !jarr)) {
        fprintf(stderr, "repvgg predict: out of memory\n");
        goto done;
    }
    if ((st = fwd_runner_init(&fr, m, ro->kind, b, size, size, ro->threads, ro->isa)) != RVG_OK) {
        rc = cli_fail("predict", st, "planning");
        goto done;
    }
    for (int64_t i = 0; i < N; i += b) {
        int64_t n = N - i < b ? N - i : b;
        for (int64_t j = 0; j < n; j++)
            if ((st = rvg_image_load(x + j * img, paths[i + j], C, aug)) != RVG_OK) {
                rc = cli_fail("predict", st, paths[i + j]);
                goto done;
            }
        const float *logits;
        if ((st = fwd_runner_forward(&fr, x, n, &logits)) != RVG_OK) {
            rc = cli_fail("predict", st, "forward");
            goto done;
        }
        for (int64_t j = 0; j < n; j++)
            print_topk(paths[i + j], logits + j * K, K, topk, &names, prob, order, jarr);
        if (y)
            memcpy(y + i * K, logits, (size_t)(n * K) * sizeof(float));
    }
    if (out) {
        int64_t oshape[2] = {N, K};
        if ((st = rvg_npy_save_f32(out, y, 2, oshape)) != RVG_OK) {
            rc = cli_fail("predict", st, "writing output");
            goto done;
        }
    }
    if (jo) {
        cJSON_AddNumberToObject(jo, "size", (double)size);
        char *s = cJSON_PrintUnformatted(jo);
        if (!s) {
            fprintf(stderr, "repvgg predict: out of memory\n");
            goto done;
        }
        printf("%s\n", s);
        free(s);
    }
    rc = 0;
done:
    fwd_runner_free(&fr);
    rvg_free(x);
    rvg_free(y);
    free(prob);
    free(order);
    cJSON_Delete(jo);
    labels_free(&names);
    return rc;
}

int cmd_predict(int argc, char **argv) {
    static const struct option opts[] = {{"weights", required_argument, 0, 'w'},
                                         {"input", required_argument, 0, 'i'},
                                         {"output", required_argument, 0, 'o'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"topk", required_argument, 0, 'k'},
                                         {"labels", required_argument, 0, 'l'},
                                         {"size", required_argument, 0, 's'},
                                         {"resize", no_argument, 0, 'r'},
                                         {"center-crop", no_argument, 0, 'c'},
                                         {"engine", required_argument, 0, 'e'},
                                         {"threads", required_argument, 0, 't'},
                                         {"kernels", required_argument, 0, 'K'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *wpath = NULL, *out = NULL, *labels_path = NULL;
    static const char *inputs[MAX_INPUTS];
    int64_t n_in = 0, topk = 5, size = 0, threads = 0;
    run_opts ro = {RUNNER_AUTO, 0, 32, RVG_INFER_ISA_AUTO};
    int kernels_given = 0;
    int c, shape = -1, json = 0, topk_given = 0;
    optind = 1;
    opterr = 0;
    /* "-": operands come back in order as option 1, so `--input a.jpg b.jpg --input c.png`
     * keeps the command line's order (plain getopt would move b.jpg after c.png). */
    while ((c = getopt_long(argc, argv, "-", opts, NULL)) != -1) {
        switch (c) {
        case 'w': wpath = optarg; break;
        case 'j': json = 1; break;
        case 1:
        case 'i':
            if (n_in == MAX_INPUTS)
                return cli_usage_error("predict", "more than %d inputs", MAX_INPUTS);
            inputs[n_in++] = optarg;
            break;
        case 'o': out = optarg; break;
        case 'b':
            if (!cli_parse_int(optarg, 1, 4096, &ro.batch))
                return cli_usage_error("predict", "--batch must be an integer in 1..4096");
            break;
        case 'k':
            if (!cli_parse_int(optarg, 1, 1000000, &topk))
                return cli_usage_error("predict", "--topk must be an integer in 1..1000000");
            topk_given = 1;
            break;
        case 'l': labels_path = optarg; break;
        case 's':
            if (!cli_parse_int(optarg, 1, 8192, &size))
                return cli_usage_error("predict", "--size must be an integer in 1..8192");
            break;
        case 'r':
        case 'c':
            if (shape >= 0 && shape != (c == 'c'))
                return cli_usage_error("predict", "--resize and --center-crop exclude each other");
            shape = c == 'c';
            break;
        case 'e':
            if (!fwd_runner_parse(optarg, &ro.kind))
                return cli_usage_error("predict", "--engine must be fast or model");
            break;
        case 'K':
            if (!cli_parse_kernels(optarg, &ro.isa))
                return cli_usage_error("predict", "--kernels must be auto, portable, avx2, "
                                                  "avx512, amx, avx512-twin or amx-twin");
            kernels_given = 1;
            break;
        case 't':
            if (!cli_parse_int(optarg, 1, 1024, &threads))
                return cli_usage_error("predict", "--threads must be an integer in 1..1024");
            ro.threads = (int)threads;
            break;
        case 'h': help(); return 0;
        default:
            return cli_usage_error("predict", "unknown or incomplete option '%s'",
                                   argv[optind - 1]);
        }
    }
    if (!wpath || n_in == 0)
        return cli_usage_error("predict", "--weights and --input are required");
#ifdef RVG_HAVE_OPENMP
    if (threads)
        omp_set_num_threads((int)threads);
#endif
    int npy = 0;
    for (int64_t i = 0; i < n_in; i++) {
        int kind = input_kind(inputs[i]);
        npy += kind == KIND_NPY;
        if (kind == KIND_OTHER) {
            fprintf(stderr, "repvgg predict: %s is not a .npy array, a JPEG or a PNG file\n",
                    inputs[i]);
            return 1;
        }
        if (kind == KIND_DIR) {
            fprintf(stderr,
                    "repvgg predict: %s is a directory; give its image files (%s/*.jpg ...), or "
                    "evaluate a labelled tree with repvgg eval --data folder:DIR\n",
                    inputs[i], inputs[i]);
            return 1;
        }
    }
    if (npy && json)
        return cli_usage_error("predict", "--json prints the classes of images; a .npy input "
                                          "gives logits in --output");
    if (npy && (n_in != 1 || !out))
        return cli_usage_error("predict", "a .npy input must be the only input and needs --output");
    if (npy && (labels_path || topk_given || size || shape >= 0))
        return cli_usage_error("predict", "--labels, --topk, --size, --resize and --center-crop "
                                          "act on images; a .npy input is already preprocessed "
                                          "and gives logits");
    /* writing the logits over an input or the weights would destroy it */
    for (int i = -1; out && i < n_in; i++)
        if (same_file(out, i < 0 ? wpath : inputs[i]))
            return cli_usage_error("predict", "--output %s is the %s; write the logits elsewhere",
                                   out, i < 0 ? "weights file" : "input");
    rvg_dict *d = NULL;
    rvg_model *m = NULL;
    rvg_status st;
    int rc = 1;
    /* a checkpoint (*.ckpt.safetensors) works too, as its raw weights */
    if ((st = train_load_weights(&m, &d, wpath)) != RVG_OK) {
        rc = cli_fail("predict", st, wpath);
    } else if (kernels_given && fwd_runner_kernels_unused("predict", ro.kind, m)) {
        rc = 2;
    } else if (npy) {
        rc = predict_npy(m, &ro, inputs[0], out);
    } else {
        rvg_augment aug;
        if (image_transform(&aug, d, wpath, rvg_model_arch(m)->in_ch, size, shape) == 0)
            rc = predict_images(m, &ro, inputs, n_in, topk, labels_path,
                                rvg_dict_meta(d, "repvgg.labels"), &aug, out, json);
    }
    rvg_model_free(m);
    rvg_dict_free(d);
    return rc;
}
