/* cmd_predict.c - `repvgg predict`: logits for a batch of images given as a NumPy array.
 *
 * Either form runs (the train form with BN in inference mode). Images go through the model in
 * chunks of --batch so memory stays bounded for large arrays.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "rvg/io.h"
#include "rvg/model.h"

static void help(void) {
    printf("usage: repvgg predict --weights W --input X.npy --output Y.npy [--batch B]\n\n"
           "Runs the model in W (either form; safetensors or .pth) on X, a float32 array of\n"
           "shape (N, C, H, W), and writes the float32 logits (N, classes) to Y.\n\n"
           "  --batch B   images per forward pass (default 32)\n");
}

int cmd_predict(int argc, char **argv) {
    static const struct option opts[] = {{"weights", required_argument, 0, 'w'},
                                         {"input", required_argument, 0, 'i'},
                                         {"output", required_argument, 0, 'o'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *wpath = NULL, *in = NULL, *out = NULL;
    int64_t batch = 32;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'w': wpath = optarg; break;
        case 'i': in = optarg; break;
        case 'o': out = optarg; break;
        case 'b':
            if (!cli_parse_int(optarg, 1, 4096, &batch))
                return cli_usage_error("predict", "--batch must be an integer in 1..4096");
            break;
        case 'h': help(); return 0;
        default: return cli_usage_error("predict", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("predict", "unexpected argument '%s'", argv[optind]);
    if (!wpath || !in || !out)
        return cli_usage_error("predict", "--weights, --input and --output are required");
    rvg_model *m = NULL;
    rvg_plan *p = NULL;
    float *x = NULL, *y = NULL;
    int ndim, rc = 1;
    int64_t shape[RVG_MAX_DIMS];
    rvg_status st = rvg_model_load(&m, wpath);
    if (st != RVG_OK)
        return cli_fail("predict", st, "loading weights");
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
    if ((st = rvg_plan_new(&p, m, b, H, W)) != RVG_OK) {
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
        if ((st = rvg_model_forward(m, p, x + i * C * H * W, n, 0, &logits)) != RVG_OK) {
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
    rvg_plan_free(p);
    rvg_model_free(m);
    rvg_free(x);
    rvg_free(y);
    return rc;
}
