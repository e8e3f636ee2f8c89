/* cmd_info.c - `repvgg info`: an architecture's layers with output shapes, and the parameter
 * counts and multiply-adds of both forms. Builds both forms (zero weights) and reads the numbers
 * off the models themselves, so the figures are those of the code that trains and runs.
 * With --weights W the architecture is W's, and what `repvgg train` recorded in W is shown too:
 * the input preprocessing (which eval, predict, bench and export follow), the class names, and,
 * for a training checkpoint, where the run stands.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "rvg/model.h"
#include "rvg/tensor.h"
#include "train_cli.h"

static void help(void) {
    printf(
        "usage: repvgg info --arch NAME [--classes K] [--in-ch C] [--size S] [--json]\n"
        "       repvgg info --weights W [--size S] [--json]\n\n"
        "Shows each block with its output shape, and the parameter counts and\n"
        "multiply-adds (one image) of the train and deploy forms.\n\n"
        "  --weights W    the architecture of weights W (either form; safetensors or .pth;\n"
        "                 a training checkpoint), and what repvgg train recorded in W: the\n"
        "                 input preprocessing, the class names, a checkpoint's epoch\n"
        "  --arch NAME    A0 A1 A2 B0 B1 B1g2 B1g4 B2 B2g4 B3 B3g4 D2se, or\n"
        "                 custom:blocks=2,4,14,1:width=0.75,0.75,0.75,2.5[:groups=G@L,..][:se=1]\n"
        "  --classes K    classifier outputs (default 1000)\n"
        "  --in-ch C      input channels (default 3)\n"
        "  --size S       input height and width (default: W's recorded size, else 224)\n"
        "  --json         print one JSON object instead of a table\n");
}

/* Total epochs of the run a checkpoint belongs to (its configuration's "epochs"), or 0. */
static long long ckpt_epochs(const rvg_dict *meta) {
    const char *cfg = rvg_dict_meta(meta, "repvgg.ckpt.config");
    cJSON *o = cfg ? cJSON_Parse(cfg) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "epochs");
    long long n = cJSON_IsNumber(e) ? (long long)e->valuedouble : 0;
    cJSON_Delete(o);
    return n;
}

/* What `repvgg train` recorded in the weights, added to o. Keys the file lacks (weights from
 * elsewhere) are left out. */
static void recorded_json(cJSON *o, const char *path, rvg_form form, const rvg_dict *meta) {
    cJSON *w = cJSON_AddObjectToObject(o, "weights");
    cJSON_AddStringToObject(w, "path", path);
    cJSON_AddStringToObject(w, "form", form == RVG_FORM_TRAIN ? "train" : "deploy");
    static const char *const keys[][2] = {{"repvgg.mean", "mean"},
                                          {"repvgg.std", "std"},
                                          {"repvgg.eval", "eval"},
                                          {"repvgg.ckpt.data", "data"}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = rvg_dict_meta(meta, keys[i][0]);
        if (v)
            cJSON_AddStringToObject(w, keys[i][1], v);
    }
    const char *labels = rvg_dict_meta(meta, "repvgg.labels");
    cJSON *l = labels ? cJSON_Parse(labels) : NULL;
    if (cJSON_IsArray(l))
        cJSON_AddItemToObject(w, "labels", l);
    else
        cJSON_Delete(l);
    const char *ep = rvg_dict_meta(meta, "repvgg.ckpt.epoch");
    if (ep) {
        cJSON *c = cJSON_AddObjectToObject(w, "checkpoint");
        cJSON_AddNumberToObject(c, "epoch", atof(ep));
        cJSON_AddNumberToObject(c, "epochs", (double)ckpt_epochs(meta));
        const char *be = rvg_dict_meta(meta, "repvgg.ckpt.best_epoch");
        const char *bt = rvg_dict_meta(meta, "repvgg.ckpt.best_top1");
        if (be && bt) {
            cJSON_AddNumberToObject(c, "best_epoch", atof(be));
            cJSON_AddNumberToObject(c, "best_top1", atof(bt));
        }
    }
}

/* The same, printed above the layer table. */
static void recorded_text(const char *path, rvg_form form, const rvg_dict *meta) {
    printf("weights %s: %s form", path, form == RVG_FORM_TRAIN ? "train" : "deploy");
    const char *ep = rvg_dict_meta(meta, "repvgg.ckpt.epoch");
    if (ep) {
        const long long total = ckpt_epochs(meta);
        printf(", a training checkpoint after epoch %s", ep);
        if (total > 0)
            printf(" of %lld", total);
        const char *be = rvg_dict_meta(meta, "repvgg.ckpt.best_epoch");
        const char *bt = rvg_dict_meta(meta, "repvgg.ckpt.best_top1");
        if (be && bt)
            printf(" (best val top-1 %.2f%% at epoch %s)", 100.0 * atof(bt), be);
    }
    printf("\n");
    const char *mean = rvg_dict_meta(meta, "repvgg.mean"), *std = rvg_dict_meta(meta, "repvgg.std");
    const char *size = rvg_dict_meta(meta, "repvgg.size"), *ev = rvg_dict_meta(meta, "repvgg.eval");
    if (mean && std && size)
        printf("recorded input: mean %s, std %s, images %s to %sx%s\n", mean, std,
               ev && strcmp(ev, TRAIN_EVAL_RESIZE) == 0 ? "resized" : "resized and centre-cropped",
               size, size);
    else
        printf("recorded input: none (weights not written by repvgg train)\n");
    const char *data = rvg_dict_meta(meta, "repvgg.ckpt.data");
    if (data)
        printf("trained on: %s\n", data);
    const char *labels = rvg_dict_meta(meta, "repvgg.labels");
    cJSON *l = labels ? cJSON_Parse(labels) : NULL;
    if (cJSON_IsArray(l)) {
        printf("classes:");
        int i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, l) {
            printf("%s %d %s", i ? "," : "", i, cJSON_IsString(it) ? it->valuestring : "?");
            i++;
        }
        printf("\n");
    }
    cJSON_Delete(l);
    printf("\n");
}

int cmd_info(int argc, char **argv) {
    static const struct option opts[] = {
        {"arch", required_argument, 0, 'a'},    {"weights", required_argument, 0, 'w'},
        {"classes", required_argument, 0, 'k'}, {"in-ch", required_argument, 0, 'c'},
        {"size", required_argument, 0, 's'},    {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    const char *arch_name = NULL, *wpath = NULL;
    int64_t classes = 1000, in_ch = 3, size = 224;
    int json = 0, size_given = 0, shape_given = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'a': arch_name = optarg; break;
        case 'w': wpath = optarg; break;
        case 'k':
            if (!cli_parse_int(optarg, 1, 1000000, &classes))
                return cli_usage_error("info", "--classes must be an integer in 1..1000000");
            shape_given = 1;
            break;
        case 'c':
            if (!cli_parse_int(optarg, 1, 4096, &in_ch))
                return cli_usage_error("info", "--in-ch must be an integer in 1..4096");
            shape_given = 1;
            break;
        case 's':
            if (!cli_parse_int(optarg, 1, 8192, &size))
                return cli_usage_error("info", "--size must be an integer in 1..8192");
            size_given = 1;
            break;
        case 'j': json = 1; break;
        case 'h': help(); return 0;
        default: return cli_usage_error("info", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("info", "unexpected argument '%s'", argv[optind]);
    if (!arch_name == !wpath)
        return cli_usage_error("info", "give --arch or --weights (one of them)");
    if (wpath && shape_given)
        return cli_usage_error("info", "--classes and --in-ch come from the weights");
    rvg_arch arch;
    rvg_status st;
    rvg_dict *meta = NULL; /* W's tensors and metadata, with --weights */
    rvg_form wform = RVG_FORM_TRAIN;
    if (wpath) {
        rvg_model *w = NULL;
        if ((st = train_load_weights(&w, &meta, wpath)) != RVG_OK)
            return cli_fail("info", st, wpath);
        arch = *rvg_model_arch(w);
        wform = rvg_model_form(w);
        rvg_model_free(w);
        if (!size_given && train_recorded_size(meta, 8192, &size, "info", wpath) < 0) {
            rvg_dict_free(meta);
            return 1;
        }
        classes = arch.classes;
        in_ch = arch.in_ch;
    } else {
        if ((st = rvg_arch_parse(&arch, arch_name)) != RVG_OK)
            return cli_fail("info", st, "--arch");
        arch.classes = classes;
        arch.in_ch = in_ch;
    }
    rvg_model *tm = NULL, *dm = NULL;
    if ((st = rvg_model_new(&tm, &arch, RVG_FORM_TRAIN)) != RVG_OK ||
        (st = rvg_model_new(&dm, &arch, RVG_FORM_DEPLOY)) != RVG_OK) {
        rvg_model_free(tm);
        rvg_dict_free(meta);
        return cli_fail("info", st, "building the model");
    }
    char canon[512];
    rvg_arch_format(&arch, canon, sizeof canon);
    int64_t tp = rvg_model_num_params(tm), dp = rvg_model_num_params(dm);
    int64_t tmacs = rvg_model_macs(tm, size, size), dmacs = rvg_model_macs(dm, size, size);
    int64_t nb = rvg_model_block_count(tm);
    if (json) {
        cJSON *o = cJSON_CreateObject(), *layers = cJSON_AddArrayToObject(o, "layers");
        cJSON_AddStringToObject(o, "arch", canon);
        cJSON_AddNumberToObject(o, "in_ch", (double)in_ch);
        cJSON_AddNumberToObject(o, "classes", (double)classes);
        cJSON_AddNumberToObject(o, "size", (double)size);
        if (meta)
            recorded_json(o, wpath, wform, meta);
        int64_t h = size;
        for (int64_t i = 0; i < nb; i++) {
            const rvg_block *b = rvg_model_block(tm, i);
            h = (h - 1) / b->stride + 1;
            cJSON *l = cJSON_CreateObject();
            cJSON_AddStringToObject(l, "name", b->prefix);
            cJSON_AddNumberToObject(l, "in_ch", (double)b->C);
            cJSON_AddNumberToObject(l, "out_ch", (double)b->K);
            cJSON_AddNumberToObject(l, "stride", (double)b->stride);
            cJSON_AddNumberToObject(l, "groups", (double)b->G);
            cJSON_AddBoolToObject(l, "identity", b->identity);
            cJSON_AddNumberToObject(l, "out_h", (double)h);
            cJSON_AddNumberToObject(l, "out_w", (double)h);
            cJSON_AddItemToArray(layers, l);
        }
        cJSON_AddNumberToObject(o, "train_params", (double)tp);
        cJSON_AddNumberToObject(o, "deploy_params", (double)dp);
        cJSON_AddNumberToObject(o, "train_macs", (double)tmacs);
        cJSON_AddNumberToObject(o, "deploy_macs", (double)dmacs);
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        if (meta)
            recorded_text(wpath, wform, meta);
        printf("RepVGG %s, %lld input channel%s, %lld classes, input %lldx%lld\n\n", canon,
               (long long)in_ch, in_ch == 1 ? "" : "s", (long long)classes, (long long)size,
               (long long)size);
        printf("%-12s %6s %6s %6s %6s %8s  %s\n", "block", "in", "out", "stride", "groups",
               "identity", "output (C, H, W)");
        int64_t h = size;
        for (int64_t i = 0; i < nb; i++) {
            const rvg_block *b = rvg_model_block(tm, i);
            h = (h - 1) / b->stride + 1;
            printf("%-12s %6lld %6lld %6lld %6lld %8s  (%lld, %lld, %lld)\n", b->prefix,
                   (long long)b->C, (long long)b->K, (long long)b->stride, (long long)b->G,
                   b->identity ? "yes" : "no", (long long)b->K, (long long)h, (long long)h);
        }
        printf("%-12s %6lld %6lld %29s  (%lld)\n", "linear",
               (long long)rvg_model_block(tm, nb - 1)->K, (long long)classes, "",
               (long long)classes);
        printf("\n%-8s %16s %22s\n", "form", "parameters", "multiply-adds/image");
        printf("%-8s %16lld %22lld\n", "train", (long long)tp, (long long)tmacs);
        printf("%-8s %16lld %22lld\n", "deploy", (long long)dp, (long long)dmacs);
    }
    rvg_model_free(tm);
    rvg_model_free(dm);
    rvg_dict_free(meta);
    return 0;
}
