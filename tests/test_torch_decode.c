/* test_torch_decode.c - the PNG decoder against PIL, byte for byte.
 *
 * Reads argv[1]/decode.safetensors from tests/ref/gen_decode.py: for each case the bytes of a PNG
 * file ("<name>.png") and the RGB pixels torchvision's loader gets from it through PIL,
 * Image.open(p).convert("RGB") ("<name>.rgb"; for 16-bit grey, which PIL clips, the high byte of
 * each sample, as PIL keeps it for colour: see gen_decode.py). Decodes each with
 * rvg__decode_memory and requires exact equality. The cases cover what a trained model must not see differently from training: 16-bit
 * grey/RGB/RGBA/grey+alpha, gAMA/cHRM/sRGB (no gamma correction), palettes with tRNS, grey+alpha,
 * colour-key tRNS, 1/2/4-bit grey and Adam7 interlacing. Every file cut short, and one
 * overwritten with garbage, must fail with RVG_STATUS_BAD_FORMAT.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_impl.h"
#include "harness.h"
#include "rvg/io.h"

/* Decodes one case and compares it with PIL's pixels; prints the first difference. */
static void check_case(const char *name, const rvg_tensor *png, const rvg_tensor *want) {
    rvg__image im = {0};
    rvg_status s = rvg__decode_memory(&im, png->data, (size_t)png->shape[0], name);
    if (s != RVG_OK) {
        CHECK_OK(s);
        fprintf(stderr, "  in case %s\n", name);
        rvg__image_free(&im);
        return;
    }
    int64_t h = want->shape[0], w = want->shape[1];
    int same_shape = im.h == h && im.w == w && im.c == 3;
    CHECK(same_shape);
    if (!same_shape) {
        fprintf(stderr, "  %s: decoded %lldx%lldx%lld, PIL %lldx%lldx3\n", name, (long long)im.h,
                (long long)im.w, (long long)im.c, (long long)h, (long long)w);
        rvg__image_free(&im);
        return;
    }
    const uint8_t *ref = want->data;
    int64_t n = h * w * 3, bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++)
        if (im.data[i] != ref[i]) {
            bad++;
            if (first < 0)
                first = i;
        }
    CHECK(bad == 0);
    if (bad)
        fprintf(stderr,
                "  %s: %lld of %lld bytes differ; first at y=%lld x=%lld c=%lld: %d, PIL %d\n",
                name, (long long)bad, (long long)n, (long long)(first / 3 / w),
                (long long)(first / 3 % w), (long long)(first % 3), im.data[first], ref[first]);
    else
        printf("  %-18s %3lldx%-3lld ok\n", name, (long long)h, (long long)w);
    /* Cut inside IHDR and halfway (inside or before the pixel data): an error, never a crash or a
     * leak, on every path (RGB rows in place, RGBA through a buffer, interlaced or not). */
    size_t len = (size_t)png->shape[0], cuts[2] = {20, len / 2};
    for (int k = 0; k < 2; k++) {
        s = rvg__decode_memory(&im, png->data, cuts[k], name);
        CHECK(s == RVG_STATUS_BAD_FORMAT);
        if (s != RVG_STATUS_BAD_FORMAT)
            fprintf(stderr, "  %s cut to %zu bytes: %s\n", name, cuts[k], rvg_status_str(s));
    }
    rvg__image_free(&im);
}

int main(int argc, char **argv) {
    (void)rvg_test_max_abs;
    (void)rvg_test_close;
    if (argc < 2)
        rvg_test_skip("usage: test_torch_decode REF_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/decode.safetensors", argv[1]);
    rvg_dict *ref = NULL;
    rvg_status st = rvg_safetensors_load(&ref, path);
    if (st != RVG_OK) {
        printf("cannot load %s: %s\n", path, rvg_last_error());
        rvg_test_skip("no reference bundle (run tests/ref/gen_decode.py)");
    }
    int cases = 0;
    const rvg_tensor *sample = NULL;
    for (int64_t k = 0; k < rvg_dict_count(ref); k++) {
        const rvg_tensor *t = rvg_dict_at(ref, k);
        size_t n = strlen(t->name);
        if (n < 5 || strcmp(t->name + n - 4, ".png") != 0)
            continue;
        char base[256], key[300];
        snprintf(base, sizeof base, "%.*s", (int)(n - 4), t->name);
        snprintf(key, sizeof key, "%s.rgb", base);
        const rvg_tensor *want = rvg_dict_get(ref, key);
        int ok = want && t->dtype == RVG_DTYPE_U8 && t->ndim == 1 && want->dtype == RVG_DTYPE_U8 &&
                 want->ndim == 3 && want->shape[2] == 3;
        CHECK(ok);
        if (!ok)
            continue;
        check_case(base, t, want);
        if (!sample || t->shape[0] > sample->shape[0])
            sample = t;
        cases++;
    }
    printf("%d PNG cases\n", cases);
    CHECK(cases >= 20);
    /* files PIL refuses (gen_decode.py: a truncated JPEG, a header claiming 30000x30000) */
    int refused = 0;
    for (int64_t k = 0; k < rvg_dict_count(ref); k++) {
        const rvg_tensor *t = rvg_dict_at(ref, k);
        size_t n = strlen(t->name);
        if (n < 5 || strcmp(t->name + n - 4, ".bad") != 0)
            continue;
        rvg__image im = {0};
        rvg_status s = rvg__decode_memory(&im, t->data, (size_t)t->shape[0], t->name);
        CHECK(s == RVG_STATUS_BAD_FORMAT);
        printf("  %-18s %s: %s\n", t->name, s == RVG_STATUS_BAD_FORMAT ? "refused" : "DECODED",
               s == RVG_STATUS_BAD_FORMAT ? rvg_last_error() : "");
        rvg__image_free(&im);
        refused++;
    }
    CHECK(refused == 2);

    /* Garbage after the IHDR, and a bare signature: errors with a message. */
    if (sample) {
        size_t len = (size_t)sample->shape[0];
        uint8_t *buf = malloc(len);
        memcpy(buf, sample->data, len);
        for (size_t i = 60; i < len - 20; i++)
            buf[i] = (uint8_t)(i * 37);
        rvg__image im = {0};
        CHECK_STATUS(rvg__decode_memory(&im, buf, len, "corrupt.png"), RVG_STATUS_BAD_FORMAT);
        CHECK_STATUS(rvg__decode_memory(&im, buf, 8, "signature-only.png"), RVG_STATUS_BAD_FORMAT);
        CHECK_STATUS(rvg__decode_memory(&im, buf, len / 2, "truncated.png"), RVG_STATUS_BAD_FORMAT);
        rvg__image_free(&im);
        free(buf);
    }
    rvg_dict_free(ref);
    return rvg_test_finish();
}
