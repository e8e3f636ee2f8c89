/* cmd_convert.c - `repvgg convert IN OUT`: structural re-parameterisation of a train-form model
 * into the deploy form (SPEC §2), written as safetensors with official names. The input may be any
 * weights file rvg reads (safetensors or PyTorch .pth, official or timm names). A deploy-form input
 * is re-written as it is (a format conversion), or refused with --strict.
 */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"
#include "rvg/io.h"
#include "rvg/model.h"
#include "train_cli.h"

static void help(void) {
    printf("usage: repvgg convert [--train] [--strict] IN OUT\n\n"
           "Converts IN (safetensors or PyTorch .pth, official or timm names, train form; a\n"
           "training checkpoint gives its raw weights) into the deploy form and writes OUT as\n"
           "safetensors (atomically), with the preprocessing repvgg train recorded in IN.\n\n"
           "  --train    write the train form instead (a format conversion, no reparam)\n"
           "  --strict   fail if IN is already in deploy form\n");
}

int cmd_convert(int argc, char **argv) {
    static const struct option opts[] = {{"train", no_argument, 0, 't'},
                                         {"strict", no_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int keep_train = 0, strict = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 't': keep_train = 1; break;
        case 's': strict = 1; break;
        case 'h': help(); return 0;
        default: return cli_usage_error("convert", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return cli_usage_error("convert", "expected IN and OUT paths");
    const char *in = argv[optind], *out = argv[optind + 1];
    rvg_model *m = NULL, *d = NULL;
    rvg_dict *src = NULL, *dst = NULL;
    rvg_status st = train_load_weights(&m, &src, in); /* a checkpoint: its raw weights */
    if (st != RVG_OK)
        return cli_fail("convert", st, in);
    rvg_form in_form = rvg_model_form(m);
    int64_t in_params = rvg_model_num_params(m);
    if (in_form == RVG_FORM_DEPLOY && (strict || keep_train)) {
        fprintf(stderr, "repvgg convert: %s is already in deploy form\n", in);
        rvg_model_free(m);
        rvg_dict_free(src);
        return 1;
    }
    if (in_form == RVG_FORM_DEPLOY || keep_train) { /* written as it is: a format conversion */
        d = m;
        m = NULL;
    } else if ((st = rvg_model_reparam(m, &d)) != RVG_OK) {
        rvg_model_free(m);
        rvg_dict_free(src);
        return cli_fail("convert", st, "re-parameterising");
    }
    /* The input preprocessing a trainer recorded travels with the weights (eval reads it). */
    st = rvg_model_to_dict(d, &dst);
    if (st == RVG_OK)
        st = train_copy_recorded_meta(dst, src);
    if (st == RVG_OK)
        st = rvg_safetensors_save(dst, out);
    if (st == RVG_OK)
        printf("%s: %s form, %lld parameters -> %s: %s form, %lld parameters\n", in,
               in_form == RVG_FORM_TRAIN ? "train" : "deploy", (long long)in_params, out,
               rvg_model_form(d) == RVG_FORM_TRAIN ? "train" : "deploy",
               (long long)rvg_model_num_params(d));
    rvg_dict_free(src);
    rvg_dict_free(dst);
    rvg_model_free(m);
    rvg_model_free(d);
    return st == RVG_OK ? 0 : cli_fail("convert", st, "writing");
}
