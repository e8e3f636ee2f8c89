/* cmd_export.c - `repvgg export`: writes a model as an ONNX file (rvg_onnx_export, onnx.h).
 *
 * The deploy form (the default) is what a runtime should get: one Conv + Relu per block. The train
 * form (three branches with BatchNormalization in inference mode) is there to check the conversion
 * outside this project, or to fine-tune elsewhere.
 * W is read as `eval` and `predict` read it: a training checkpoint gives its raw weights, and the
 * input size defaults to the one `repvgg train` recorded in the weights (repvgg.size), so a model
 * trained on 28x28 images exports for 28x28 images; weights without it get 224. The recorded
 * preprocessing and class names go into the ONNX file's metadata_props (rvg_onnx_options.meta).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "rvg/io.h"
#include "rvg/model.h"
#include "rvg/onnx.h"
#include "rvg/tensor.h"
#include "train_cli.h"

static void help(void) {
    printf("usage: repvgg export --weights W --onnx OUT.onnx [--form deploy|train] [--opset 13]\n"
           "                     [--size S | --size dynamic]\n\n"
           "Writes the model in W (either form; safetensors or .pth, official or timm names; a\n"
           "training checkpoint gives its raw weights) as an ONNX model with input \"input\"\n"
           "(N, C, S, S) and output \"logits\" (N, classes); the batch N is dynamic. The model's\n"
           "metadata_props hold repvgg.arch and repvgg.form, and the input preprocessing and\n"
           "class names repvgg train recorded in W (repvgg.mean, .std, .size, .eval, .labels).\n\n"
           "  --form F     deploy (default; a train-form W is re-parameterised first) or train\n"
           "               (three branches with BatchNormalization; needs a train-form W)\n"
           "  --opset V    ONNX opset, 13..21 (default 13, IR version 7)\n"
           "  --size S     input height and width (default: the size recorded by repvgg train,\n"
           "               else 224); 'dynamic' makes them symbolic\n");
}

int cmd_export(int argc, char **argv) {
    static const struct option opts[] = {{"weights", required_argument, 0, 'w'},
                                         {"onnx", required_argument, 0, 'o'},
                                         {"form", required_argument, 0, 'f'},
                                         {"opset", required_argument, 0, 'p'},
                                         {"size", required_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *wpath = NULL, *out = NULL;
    rvg_onnx_options opt;
    rvg_onnx_options_default(&opt);
    int size_given = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'w': wpath = optarg; break;
        case 'o': out = optarg; break;
        case 'f':
            if (strcmp(optarg, "deploy") == 0)
                opt.form = RVG_FORM_DEPLOY;
            else if (strcmp(optarg, "train") == 0)
                opt.form = RVG_FORM_TRAIN;
            else
                return cli_usage_error("export", "--form must be 'deploy' or 'train'");
            break;
        case 'p':
            if (!cli_parse_int(optarg, 13, 21, &opt.opset))
                return cli_usage_error("export", "--opset must be an integer in 13..21");
            break;
        case 's':
            size_given = 1;
            if (strcmp(optarg, "dynamic") == 0)
                opt.height = opt.width = 0;
            else if (cli_parse_int(optarg, 1, 16384, &opt.height))
                opt.width = opt.height;
            else
                return cli_usage_error("export", "--size must be an integer in 1..16384 or "
                                                 "'dynamic'");
            break;
        case 'h': help(); return 0;
        default:
            return cli_usage_error("export", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("export", "unexpected argument '%s'", argv[optind]);
    if (!wpath || !out)
        return cli_usage_error("export", "--weights and --onnx are required");
    rvg_dict *d = NULL;
    rvg_model *m = NULL;
    rvg_status st;
    if ((st = train_load_weights(&m, &d, wpath)) != RVG_OK)
        return cli_fail("export", st, wpath);
    /* the size training recorded, as eval and predict use it */
    if (!size_given && train_recorded_size(d, 16384, &opt.height, "export", wpath) < 0) {
        rvg_model_free(m);
        rvg_dict_free(d);
        return 1;
    }
    opt.width = opt.height;
    /* the recorded preprocessing and class names travel into the ONNX file, as through convert */
    rvg_dict *meta = rvg_dict_new();
    st = meta ? train_copy_recorded_meta(meta, d)
              : rvg_error(RVG_STATUS_NO_MEMORY, "export: out of memory");
    rvg_dict_free(d);
    opt.meta = meta;
    if (st == RVG_OK)
        st = rvg_onnx_export(m, out, &opt);
    rvg_dict_free(meta);
    if (st != RVG_OK) {
        rvg_model_free(m);
        return cli_fail("export", st, "exporting");
    }
    char size[64] = "dynamic";
    if (opt.height > 0)
        snprintf(size, sizeof size, "%lldx%lld", (long long)opt.height, (long long)opt.width);
    printf("%s -> %s: %s form, opset %lld, input (N, %lld, %s), %lld classes\n", wpath, out,
           opt.form == RVG_FORM_DEPLOY ? "deploy" : "train", (long long)opt.opset,
           (long long)rvg_model_arch(m)->in_ch, size, (long long)rvg_model_arch(m)->classes);
    rvg_model_free(m);
    return 0;
}
