/* classify.c - the smallest program that embeds repvgg.c: load a RepVGG (either form), build the
 * fast inference engine for it, and print the five most likely classes of one JPEG or PNG image.
 *
 *     cc classify.c $(pkg-config --cflags --libs repvgg) -o classify
 *     ./classify best.safetensors shoe.png
 *
 * It uses only the installed public headers (include/rvg/). The image is preprocessed from what
 * `repvgg train` records in the weights' metadata: repvgg.size, repvgg.mean and repvgg.std, and
 * repvgg.eval ("resize" for the small-image sets, else the ImageNet centre crop); weights without
 * that record (published ImageNet checkpoints) get the ImageNet transform at 224. `repvgg predict`
 * does the same with more options; this file shows the calls, in order, and nothing else.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rvg/data.h"
#include "rvg/deploy.h"
#include "rvg/io.h"
#include "rvg/model.h"

/* Comma-separated floats of a metadata entry into v (n values); 0 when absent or short. */
static int meta_floats(const rvg_dict *d, const char *key, float *v, int64_t n) {
    const char *s = rvg_dict_meta(d, key);
    if (!s)
        return 0;
    for (int64_t i = 0; i < n; i++) {
        char *end;
        v[i] = strtof(s, &end);
        if (end == s)
            return 0;
        s = *end == ',' ? end + 1 : end;
    }
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s WEIGHTS IMAGE\n", argv[0]);
        return 2;
    }
    rvg_dict *d = NULL;
    rvg_model *m = NULL;
    rvg_engine *e = NULL;
    float *x = NULL, *logits = NULL;
    int rc = 1;
    /* 1. the weights: safetensors or a PyTorch .pth, official or timm names, either form */
    if (rvg_weights_load_dict(&d, argv[1]) != RVG_OK || rvg_model_from_dict(&m, d) != RVG_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], rvg_last_error());
        goto done;
    }
    const rvg_arch *arch = rvg_model_arch(m);
    const int64_t C = arch->in_ch, K = arch->classes;

    /* 2. the preprocessing that training recorded, else ImageNet's */
    rvg_augment aug;
    memset(&aug, 0, sizeof aug);
    const char *size = rvg_dict_meta(d, "repvgg.size"), *ev = rvg_dict_meta(d, "repvgg.eval");
    aug.out_h = aug.out_w = size ? atoll(size) : 224;
    aug.center_crop_eval = !(ev && strcmp(ev, "resize") == 0);
    if (!meta_floats(d, "repvgg.mean", aug.mean, C) || !meta_floats(d, "repvgg.std", aug.std, C))
        rvg_augment_imagenet_norm(&aug);
    const int64_t S = aug.out_h;

    /* 3. the engine: a train-form model is converted (re-parameterised) on the way; all weights
     *    are packed now, so running it never allocates. One image at most, all cores. */
    if (rvg_deploy_engine_new(&e, m, S, S, 1, 0, NULL) != RVG_OK) {
        fprintf(stderr, "engine: %s\n", rvg_last_error());
        goto done;
    }
    x = malloc((size_t)(C * S * S) * sizeof *x);
    logits = malloc((size_t)K * sizeof *logits);
    if (!x || !logits) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }

    /* 4. the image, decoded, shaped and normalised as evaluation did in training */
    if (rvg_image_load(x, argv[2], C, &aug) != RVG_OK) {
        fprintf(stderr, "%s: %s\n", argv[2], rvg_last_error());
        goto done;
    }

    /* 5. logits, then the five largest softmax probabilities */
    if (rvg_engine_run(e, logits, x, 1) != RVG_OK) {
        fprintf(stderr, "run: %s\n", rvg_last_error());
        goto done;
    }
    double mx = logits[0], sum = 0.0;
    for (int64_t k = 1; k < K; k++)
        mx = logits[k] > mx ? logits[k] : mx;
    for (int64_t k = 0; k < K; k++)
        sum += exp(logits[k] - mx);
    int used[5] = {-1, -1, -1, -1, -1};
    for (int r = 0; r < 5 && r < K; r++) {
        int best = -1;
        for (int64_t k = 0; k < K; k++) {
            int taken = 0;
            for (int j = 0; j < r; j++)
                taken |= used[j] == k;
            if (!taken && (best < 0 || logits[k] > logits[best]))
                best = (int)k;
        }
        used[r] = best;
        printf("%d %.6f\n", best, exp(logits[best] - mx) / sum);
    }
    rc = 0;
done:
    free(x);
    free(logits);
    rvg_engine_free(e);
    rvg_model_free(m);
    rvg_dict_free(d);
    return rc;
}
