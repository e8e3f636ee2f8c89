/* cmd_eval.c - `repvgg eval`: top-1, top-5, per-class accuracy and the confusion matrix of a
 * weights file on a data set's validation split.
 *
 * Either form runs: deploy-form weights on the fast inference engine by default, the train form
 * through the model's forward with BN in inference mode (--engine picks either way, so that the
 * two can be compared on real data); training checkpoints
 * (*.ckpt.safetensors) work too, their momentum.* tensors being dropped. Images are normalised
 * with the mean/std and size that training stored in the weights' metadata (repvgg.mean,
 * repvgg.std, repvgg.size); without them, with the training split's own statistics at the data's
 * native size, which is what `repvgg train --norm computed` uses.
 * Not here: test-time augmentation, or evaluating on the training split.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef RVG_HAVE_OPENMP
#include <omp.h>
#endif

#include "cli.h"
#include "rvg/io.h"
#include "train_cli.h"

static void help(void) {
    printf("usage: repvgg eval --weights W [--data SPEC] [--limit-val N] [--batch B] [--json]\n"
           "                   [--engine fast|model] [--kernels K] [--predictions F]\n"
           "                   [--tta flip]\n\n"
           "Evaluates W (either form; safetensors or .pth; a training checkpoint too) on the\n"
           "validation split of SPEC and prints top-1, top-5, per-class accuracy and the\n"
           "confusion matrix (rows: true class, columns: predicted).\n\n"
           "  --data SPEC     data set as 'repvgg train' takes it (default fashion-mnist)\n"
           "  --limit-val N   only the first N validation samples (0 = all)\n"
           "  --batch B       images per forward pass (default 128)\n"
           "  --engine E      fast: the inference engine of the deploy form (a train-form W is\n"
           "                  converted in memory first); model: the model's layer-by-layer\n"
           "                  forward, the engine's reference (default: fast for deploy-form\n"
           "                  weights, model for the train form, its branches as written)\n"
           "  --kernels K     the fast engine's kernel set: auto (default: the fastest fp32 set),\n"
           "                  avx512, avx2, portable, or amx (Intel AMX tiles in bf16x3, ~1e-5 of\n"
           "                  max|logit| from fp32; docs/inference.md); avx512-twin and amx-twin\n"
           "                  are their plain-C twins, for testing. Needs the fast engine\n"
           "  --threads T     compute threads (default: all cores)\n"
           "  --workers W     data loading threads (default 2)\n"
           "  --json          print one JSON object: top1, top5, n, loss, per_class, class_names,\n"
           "                  class_n, confusion, form, engine, kernels (the fast engine's)\n"
           "  --predictions F write the predicted class of every sample to F, one per line\n"
           "  --tta flip      test-time augmentation: each image also mirrored left to right,\n"
           "                  the two logits averaged (not for data sets whose mirror images\n"
           "                  change class, such as digits; default: none)\n");
}

/* Class k's name: the data set's, unless it is only the number k (an IDX set carries no names),
 * then the one `repvgg train` recorded in the weights (a JSON list, wl), else the data set's. */
static const char *class_name(const rvg_dataset *d, const cJSON *wl, int64_t k) {
    const char *nm = rvg_dataset_class_name(d, k);
    const cJSON *s = cJSON_GetArrayItem(wl, (int)k);
    if ((!nm || train_is_number_name(nm, k)) && cJSON_IsString(s))
        return s->valuestring;
    return nm;
}

static void print_json(const char *wpath, const char *data, const rvg_dataset *d, const cJSON *wl,
                       const eval_result *r, const int64_t *class_n, const fwd_runner *fr,
                       int tta) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "weights", wpath);
    cJSON_AddStringToObject(o, "data", data);
    cJSON_AddStringToObject(o, "tta", tta ? "flip" : "none");
    cJSON_AddStringToObject(o, "form",
                            rvg_model_form(fr->m) == RVG_FORM_DEPLOY ? "deploy" : "train");
    cJSON_AddStringToObject(o, "engine", fwd_runner_name(fr));
    if (fr->e)
        cJSON_AddStringToObject(o, "kernels", rvg_engine_isa(fr->e));
    cJSON_AddNumberToObject(o, "n", (double)r->n);
    cJSON_AddNumberToObject(o, "loss", r->loss);
    cJSON_AddNumberToObject(o, "top1", r->top1);
    cJSON_AddNumberToObject(o, "top5", r->top5);
    cJSON *pc = cJSON_AddArrayToObject(o, "per_class");
    cJSON *names = cJSON_AddArrayToObject(o, "class_names");
    cJSON *cn = cJSON_AddArrayToObject(o, "class_n");
    cJSON *conf = cJSON_AddArrayToObject(o, "confusion");
    for (int64_t k = 0; k < r->K; k++) {
        double acc = class_n[k] ? (double)r->confusion[k * r->K + k] / (double)class_n[k] : 0.0;
        cJSON_AddItemToArray(pc, cJSON_CreateNumber(acc));
        const char *nm = class_name(d, wl, k);
        char buf[32];
        if (!nm) {
            snprintf(buf, sizeof buf, "%lld", (long long)k);
            nm = buf;
        }
        cJSON_AddItemToArray(names, cJSON_CreateString(nm));
        cJSON_AddItemToArray(cn, cJSON_CreateNumber((double)class_n[k]));
        cJSON *row = cJSON_CreateArray();
        for (int64_t j = 0; j < r->K; j++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber((double)r->confusion[k * r->K + j]));
        cJSON_AddItemToArray(conf, row);
    }
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

static void print_text(const char *wpath, const rvg_dataset *d, const cJSON *wl,
                       const eval_result *r, const int64_t *class_n, const fwd_runner *fr,
                       int tta) {
    printf("%s (%s form, %s engine%s): %lld images, loss %.4f, top-1 %.2f%%, top-5 %.2f%%\n\n",
           wpath, rvg_model_form(fr->m) == RVG_FORM_DEPLOY ? "deploy" : "train",
           fwd_runner_name(fr), tta ? ", flip TTA" : "", (long long)r->n, r->loss, 100.0 * r->top1,
           100.0 * r->top5);
    printf("%5s  %-24s %8s %9s\n", "class", "name", "images", "accuracy");
    for (int64_t k = 0; k < r->K; k++) {
        const char *nm = class_name(d, wl, k);
        if (!class_n[k]) { /* no images of the class: no accuracy, rather than 0% */
            printf("%5lld  %-24.24s %8lld %9s\n", (long long)k, nm ? nm : "", 0LL, "-");
            continue;
        }
        printf("%5lld  %-24.24s %8lld %8.2f%%\n", (long long)k, nm ? nm : "", (long long)class_n[k],
               100.0 * (double)r->confusion[k * r->K + k] / (double)class_n[k]);
    }
    if (r->K > 30) {
        printf("\n(confusion matrix of %lld classes not printed; use --json)\n", (long long)r->K);
        return;
    }
    printf("\nconfusion matrix (rows: true class, columns: predicted)\n%5s", "");
    for (int64_t j = 0; j < r->K; j++)
        printf(" %5lld", (long long)j);
    printf("\n");
    for (int64_t k = 0; k < r->K; k++) {
        printf("%5lld", (long long)k);
        for (int64_t j = 0; j < r->K; j++)
            printf(" %5lld", (long long)r->confusion[k * r->K + j]);
        printf("\n");
    }
}

int cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {{"weights", required_argument, 0, 'w'},
                                         {"data", required_argument, 0, 'd'},
                                         {"limit-val", required_argument, 0, 'l'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"threads", required_argument, 0, 't'},
                                         {"workers", required_argument, 0, 'k'},
                                         {"json", no_argument, 0, 'j'},
                                         {"predictions", required_argument, 0, 'p'},
                                         {"engine", required_argument, 0, 'e'},
                                         {"kernels", required_argument, 0, 'K'},
                                         {"tta", required_argument, 0, 'T'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *wpath = NULL, *data = "fashion-mnist", *pred_path = NULL;
    int64_t limit = 0, batch = 128, threads = 0, workers = 2;
    int json = 0, tta = 0, c;
    runner_kind kind = RUNNER_AUTO;
    int kernels_given = 0;
    rvg_infer_isa isa = RVG_INFER_ISA_AUTO;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'w': wpath = optarg; break;
        case 'd': data = optarg; break;
        case 'l':
            if (!cli_parse_int(optarg, 0, INT64_MAX, &limit))
                return cli_usage_error("eval", "--limit-val must be a non-negative integer");
            break;
        case 'b':
            if (!cli_parse_int(optarg, 1, 65536, &batch))
                return cli_usage_error("eval", "--batch must be an integer in 1..65536");
            break;
        case 't':
            if (!cli_parse_int(optarg, 1, 1024, &threads))
                return cli_usage_error("eval", "--threads must be an integer in 1..1024");
            break;
        case 'k':
            if (!cli_parse_int(optarg, 0, 64, &workers))
                return cli_usage_error("eval", "--workers must be an integer in 0..64");
            break;
        case 'j': json = 1; break;
        case 'p': pred_path = optarg; break;
        case 'e':
            if (!fwd_runner_parse(optarg, &kind))
                return cli_usage_error("eval", "--engine must be fast or model");
            break;
        case 'K':
            if (!cli_parse_kernels(optarg, &isa))
                return cli_usage_error("eval", "--kernels must be auto, portable, avx2, avx512, "
                                               "amx, avx512-twin or amx-twin");
            kernels_given = 1;
            break;
        case 'T':
            if (strcmp(optarg, "flip") != 0 && strcmp(optarg, "none") != 0)
                return cli_usage_error("eval", "--tta must be flip or none");
            tta = strcmp(optarg, "flip") == 0;
            break;
        case 'h': help(); return 0;
        default:
            return cli_usage_error("eval", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    if (!wpath)
        return cli_usage_error("eval", "--weights is required");
#ifdef RVG_HAVE_OPENMP
    if (threads)
        omp_set_num_threads((int)threads);
#endif
    rvg_dict *d = NULL;
    cJSON *wl = NULL;
    rvg_model *m = NULL;
    rvg_dataset *dva = NULL, *dtr = NULL;
    rvg_loader *ld = NULL;
    fwd_runner fr = {0};
    float *x = NULL;
    int32_t *y = NULL, *pred = NULL;
    int64_t *class_n = NULL;
    eval_result r = {0};
    int rc = 1;
    rvg_status st;
    if ((st = train_load_weights(&m, &d, wpath)) != RVG_OK) {
        rc = cli_fail("eval", st, wpath);
        goto done;
    }
    if ((st = rvg_dataset_open(&dva, data, RVG_SPLIT_VAL, limit)) != RVG_OK) {
        rc = cli_fail("eval", st, "opening the validation data");
        goto done;
    }
    const rvg_arch *arch = rvg_model_arch(m);
    int64_t C = rvg_dataset_channels(dva), K = arch->classes;
    if (C != arch->in_ch) {
        fprintf(stderr, "repvgg eval: the model takes %lld channels, the data set has %lld\n",
                (long long)arch->in_ch, (long long)C);
        goto done;
    }
    if (rvg_dataset_classes(dva) > K) {
        fprintf(stderr, "repvgg eval: the data set has %lld classes, the model only %lld\n",
                (long long)rvg_dataset_classes(dva), (long long)K);
        goto done;
    }
    if (train_check_labels(d, dva, "eval", wpath, data))
        goto done;
    rvg_augment aug;
    if (tta) { /* the training defaults flip exactly the data sets whose mirrors keep the class */
        rvg_augment_defaults(&aug, dva, 1);
        if (!aug.hflip) {
            fprintf(stderr,
                    "repvgg eval: --tta flip: in %s a mirrored image is not of the same "
                    "class (digits); evaluate without it\n",
                    data);
            goto done;
        }
    }
    rvg_augment_defaults(&aug, dva, 0);
    int64_t size = aug.out_h;
    int have = train_get_norm_meta(d, C, aug.mean, aug.std, &size);
    if (have < 0) {
        fprintf(stderr, "repvgg eval: %s: malformed repvgg.mean/std/size metadata\n", wpath);
        goto done;
    }
    if (have == 0) {
        /* No record of training's normalisation: use what `train --norm computed` would. */
        if ((st = rvg_dataset_open(&dtr, data, RVG_SPLIT_TRAIN, 0)) != RVG_OK ||
            (st = rvg_dataset_stats(dtr, 10000, aug.mean, aug.std)) != RVG_OK) {
            rc = cli_fail("eval", st, "computing the normalisation from the training split");
            goto done;
        }
        for (int64_t i = 0; i < C; i++)
            if (!(aug.std[i] > 0))
                aug.std[i] = 1.0f;
        if (!json)
            fprintf(stderr,
                    "repvgg eval: %s has no normalisation metadata; using the training "
                    "split's mean/std\n",
                    wpath);
    }
    aug.out_h = aug.out_w = size;
    if (kernels_given && fwd_runner_kernels_unused("eval", kind, m)) {
        rc = 2;
        goto done;
    }
    if ((st = rvg_model_check_input(m, C, size, size)) != RVG_OK) {
        rc = cli_fail("eval", st, "input size");
        goto done;
    }
    if ((st = rvg_loader_new(&ld, dva, &aug, batch, 0, 0, 0, (int)workers, 0, 1)) != RVG_OK ||
        (st = fwd_runner_init(&fr, m, kind, batch, size, size, (int)threads, isa)) != RVG_OK) {
        rc = cli_fail("eval", st, "setting up");
        goto done;
    }
    x = rvg_alloc((size_t)(batch * C * size * size) * sizeof(float));
    y = rvg_alloc((size_t)batch * sizeof(int32_t));
    class_n = calloc((size_t)K, sizeof *class_n);
    if (!x || !y || !class_n) {
        fprintf(stderr, "repvgg eval: out of memory\n");
        goto done;
    }
    if (pred_path && !(pred = calloc((size_t)rvg_dataset_count(dva), sizeof *pred))) {
        fprintf(stderr, "repvgg eval: out of memory\n");
        goto done;
    }
    const eval_flip flip = {C, size, size};
    if ((st = train_evaluate(&fr, ld, x, y, &r, pred, tta ? &flip : NULL)) != RVG_OK) {
        rc = cli_fail("eval", st, "evaluating");
        goto done;
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < K; j++)
            class_n[k] += r.confusion[k * K + j];
    if (pred_path) {
        /* one predicted class per line, in data-set order: `cmp` two of these to compare forms */
        FILE *f;
        char *tmp;
        if ((st = rvg_atomic_open(pred_path, &f, &tmp)) != RVG_OK) {
            rc = cli_fail("eval", st, "--predictions");
            goto done;
        }
        for (int64_t i = 0; i < r.n; i++)
            fprintf(f, "%d\n", (int)pred[i]);
        if ((st = rvg_atomic_commit(f, tmp, pred_path)) != RVG_OK) {
            rc = cli_fail("eval", st, "--predictions");
            goto done;
        }
    }
    /* names recorded in the weights, used only as a list of K strings */
    const char *recorded = rvg_dict_meta(d, "repvgg.labels");
    wl = recorded ? cJSON_Parse(recorded) : NULL;
    if (!cJSON_IsArray(wl) || cJSON_GetArraySize(wl) != K) {
        cJSON_Delete(wl);
        wl = NULL;
    }
    if (json)
        print_json(wpath, data, dva, wl, &r, class_n, &fr, tta);
    else
        print_text(wpath, dva, wl, &r, class_n, &fr, tta);
    rc = 0;
done:
    cJSON_Delete(wl);
    free(r.confusion);
    free(class_n);
    free(pred);
    rvg_free(x);
    rvg_free(y);
    fwd_runner_free(&fr);
    rvg_loader_free(ld);
    rvg_dataset_free(dva);
    rvg_dataset_free(dtr);
    rvg_model_free(m);
    rvg_dict_free(d);
    return rc;
}
