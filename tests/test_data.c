/* test_data.c - data sets, augmentation and the batch loader, on small sets written on the fly.
 *
 * Writes IDX (gzip and raw), CIFAR-10/100 binaries and an image folder (PNG and JPEG) into a
 * temporary directory, then checks parsing, error reports for broken files, the geometry of every
 * augmentation, and that the loader's batches are bit-identical across worker counts and runs and
 * that shards cover the permutation exactly once. Fashion-MNIST is opened too when it is installed
 * (skipped quietly otherwise). No PyTorch here: bilinear against torch is test_torch_augment.c.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* jpeglib.h needs size_t and FILE declared first. */
#include <jpeglib.h>
#include <png.h>

#include "data/data_impl.h"
#include "harness.h"
#include "rvg/data.h"

static char g_tmp[512];

/* ---- writing test data ----------------------------------------------------------------------- */

static uint8_t idx_pixel(int64_t i, int64_t y, int64_t x) {
    return (uint8_t)((i * 7 + y * 13 + x * 3 + (x * y) % 5) % 256);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes an IDX pair into dir: n images of (h, w), labels i % 10. gz selects gzip; alt the
 * "images.idx3" spelling. trunc_bytes cuts that many bytes off the image file; magic overrides the
 * image magic; label_n overrides the label count. */
static void write_idx(const char *dir, const char *split, int64_t n, int64_t h, int64_t w, int gz,
                      int alt, int64_t trunc_bytes, uint32_t magic, int64_t label_n) {
    mkdir(dir, 0755);
    char path[1024];
    size_t isz = 16 + (size_t)(n * h * w);
    uint8_t *img = malloc(isz);
    put_be32(img, magic ? magic : 0x803);
    put_be32(img + 4, (uint32_t)n);
    put_be32(img + 8, (uint32_t)h);
    put_be32(img + 12, (uint32_t)w);
    for (int64_t i = 0; i < n; i++)
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++)
                img[16 + (i * h + y) * w + x] = idx_pixel(i, y, x);
    int64_t ln = label_n >= 0 ? label_n : n;
    uint8_t *lab = malloc(8 + (size_t)ln);
    put_be32(lab, 0x801);
    put_be32(lab + 4, (uint32_t)ln);
    for (int64_t i = 0; i < ln; i++)
        lab[8 + i] = (uint8_t)(i % 10);
    const char *kinds[2] = {alt ? "images.idx3" : "images-idx3",
                            alt ? "labels.idx1" : "labels-idx1"};
    uint8_t *bufs[2] = {img, lab};
    size_t sizes[2] = {isz - (size_t)trunc_bytes, 8 + (size_t)ln};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s-%s-ubyte%s", dir, split, kinds[k], gz ? ".gz" : "");
        if (gz) {
            gzFile g = gzopen(path, "wb");
            gzwrite(g, bufs[k], (unsigned)sizes[k]);
            gzclose(g);
        } else {
            FILE *f = fopen(path, "wb");
            fwrite(bufs[k], 1, sizes[k], f);
            fclose(f);
        }
    }
    free(img);
    free(lab);
}

static uint8_t cifar_pixel(int64_t rec, int64_t c, int64_t p) {
    return (uint8_t)((rec * 31 + c * 85 + p * 7) % 256);
}

/* CIFAR file of n records; hundred adds the coarse byte; record numbers continue from first. */
static void write_cifar(const char *path, int64_t first, int64_t n, int hundred, int64_t trunc,
                        int bad_label) {
    FILE *f = fopen(path, "wb");
    int64_t rec = 3072 + (hundred ? 2 : 1);
    uint8_t *buf = malloc((size_t)rec);
    for (int64_t r = first; r < first + n; r++) {
        int64_t o = 0;
        if (hundred) /* bad_label 2: the coarse label out of its 20 classes */
            buf[o++] = (uint8_t)(bad_label == 2 ? 20 : r % 20);
        buf[o++] = (uint8_t)(bad_label == 1 ? 200 : r % (hundred ? 100 : 10));
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 1024; p++)
                buf[o + c * 1024 + p] = cifar_pixel(r, c, p);
        fwrite(buf, 1, (size_t)(r == first + n - 1 ? rec - trunc : rec), f);
    }
    free(buf);
    fclose(f);
}

static void write_png(const char *path, const uint8_t *px, int h, int w, int c) {
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = c == 1 ? PNG_FORMAT_GRAY : c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
    if (!png_image_write_to_file(&img, path, 0, px, 0, NULL))
        fprintf(stderr, "cannot write %s: %s\n", path, img.message);
}

static void write_jpeg(const char *path, const uint8_t *rgb, int h, int w) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    FILE *f = fopen(path, "wb");
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = 3;
    ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 98, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)ci.next_scanline * (size_t)w * 3);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    fclose(f);
}

static void write_bytes(const char *path, const char *data, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

static void mkdirf(const char *fmt, const char *a, const char *b) {
    char p[2200];
    snprintf(p, sizeof p, fmt, a, b);
    mkdir(p, 0755);
}

/* A smooth RGB image: r = 4x, g = 5y, b = (x + y) * 2, so bilinear results are predictable. */
static void ramp_rgb(uint8_t *px, int h, int w) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            px[(y * w + x) * 3 + 0] = (uint8_t)(4 * x);
            px[(y * w + x) * 3 + 1] = (uint8_t)(5 * y);
            px[(y * w + x) * 3 + 2] = (uint8_t)(2 * (x + y));
        }
}

/* ---- IDX ------------------------------------------------------------------------------------- */

static void test_idx(void) {
    printf("idx\n");
    char dir[1024], spec[1100];
    snprintf(dir, sizeof dir, "%s/idx", g_tmp);
    write_idx(dir, "train", 37, 12, 10, 1, 0, 0, 0, -1);
    write_idx(dir, "t10k", 13, 12, 10, 0, 1, 0, 0, -1);
    snprintf(spec, sizeof spec, "idx:%s", dir);
    rvg_dataset *d = NULL;
    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_TRAIN, 0));
    if (!d)
        return;
    CHECK(rvg_dataset_count(d) == 37);
    CHECK(rvg_dataset_height(d) == 12 && rvg_dataset_width(d) == 10);
    CHECK(rvg_dataset_channels(d) == 1);
    CHECK(rvg_dataset_classes(d) == 10);
    CHECK(strcmp(rvg_dataset_class_name(d, 7), "7") == 0);
    CHECK(rvg_dataset_class_name(d, 10) == NULL);
    int ok = 1;
    for (int64_t i = 0; i < 37; i++) {
        uint8_t *px;
        int64_t h, w, c;
        CHECK_OK(rvg_dataset_image(d, i, &px, &h, &w, &c));
        ok &= rvg_dataset_label(d, i) == i % 10 && h == 12 && w == 10 && c == 1;
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++)
                ok &= px[y * w + x] == idx_pixel(i, y, x);
        rvg_free(px);
    }
    CHECK(ok);

    /* stats: population mean/std of the pixels / 255 */
    double s = 0, sq = 0;
    for (int64_t i = 0; i < 37; i++)
        for (int64_t y = 0; y < 12; y++)
            for (int64_t x = 0; x < 10; x++) {
                double v = idx_pixel(i, y, x) / 255.0;
                s += v;
                sq += v * v;
            }
    double n = 37 * 120, m = s / n, sd = sqrt(sq / n - m * m);
    float mean[4], std[4];
    CHECK_OK(rvg_dataset_stats(d, 0, mean, std));
    CHECK(fabs(mean[0] - m) < 1e-6 && fabs(std[0] - sd) < 1e-6);
    rvg_dataset_free(d);

    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_TRAIN, 5));
    if (d) {
        CHECK(rvg_dataset_count(d) == 5 && rvg_dataset_classes(d) == 10);
        rvg_dataset_free(d);
    }
    /* val: raw (not gzip) files with the "images.idx3" spelling */
    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_VAL, 0));
    if (d) {
        CHECK(rvg_dataset_count(d) == 13);
        uint8_t *px;
        int64_t h, w, c;
        CHECK_OK(rvg_dataset_image(d, 12, &px, &h, &w, &c));
        CHECK(px[5 * 10 + 3] == idx_pixel(12, 5, 3));
        rvg_free(px);
        rvg_dataset_free(d);
    }

    /* errors */
    rvg_dataset *bad = NULL;
    snprintf(spec, sizeof spec, "idx:%s/does-not-exist", g_tmp);
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_TRAIN, 0), RVG_STATUS_IO);
    CHECK(bad == NULL);
    CHECK_STATUS(rvg_dataset_open(&bad, "nonsense:/tmp", RVG_SPLIT_TRAIN, 0),
                 RVG_STATUS_BAD_ARGUMENT);
    snprintf(dir, sizeof dir, "%s/idx_magic", g_tmp);
    write_idx(dir, "train", 5, 4, 4, 1, 0, 0, 0x0803u | 0x0100u, -1);
    snprintf(spec, sizeof spec, "idx:%s", dir);
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_TRAIN, 0), RVG_STATUS_BAD_FORMAT);
    snprintf(dir, sizeof dir, "%s/idx_trunc_gz", g_tmp);
    write_idx(dir, "train", 5, 4, 4, 1, 0, 7, 0, -1);
    snprintf(spec, sizeof spec, "idx:%s", dir);
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_TRAIN, 0), RVG_STATUS_BAD_FORMAT);
    snprintf(dir, sizeof dir, "%s/idx_trunc_raw", g_tmp);
    write_idx(dir, "train", 5, 4, 4, 0, 0, 1, 0, -1);
    snprintf(spec, sizeof spec, "idx:%s", dir);
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_TRAIN, 0), RVG_STATUS_BAD_FORMAT);
    snprintf(dir, sizeof dir, "%s/idx_count", g_tmp);
    write_idx(dir, "train", 5, 4, 4, 1, 0, 0, 0, 6);
    snprintf(spec, sizeof spec, "idx:%s", dir);
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_TRAIN, 0), RVG_STATUS_BAD_FORMAT);
    /* a gzip stream cut in the middle (not just short data) */
    snprintf(dir, sizeof dir, "%s/idx_cutgz", g_tmp);
    write_idx(dir, "train", 40, 16, 16, 1, 0, 0, 0, -1);
    char path[1100];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", dir);
    struct stat st;
    stat(path, &st);
    CHECK(truncate(path, st.st_size / 2) == 0);
    snprintf(spec, sizeof spec, "idx:%s", dir);
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_TRAIN, 0), RVG_STATUS_BAD_FORMAT);
    CHECK(bad == NULL);
    /* a raw header claiming 4294967295 images: refused by the file's size, not "out of memory" */
    snprintf(dir, sizeof dir, "%s/idx_huge", g_tmp);
    write_idx(dir, "train", 5, 4, 4, 0, 0, 0, 0, -1);
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (f) {
        static const uint8_t count[4] = {0xFF, 0xFF, 0xFF, 0xFF};
        fseek(f, 4, SEEK_SET);
        fwrite(count, 1, 4, f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", dir);
    if ((f = fopen(path, "r+b"))) {
        static const uint8_t count[4] = {0xFF, 0xFF, 0xFF, 0xFF};
        fseek(f, 4, SEEK_SET);
        fwrite(count, 1, 4, f);
        fclose(f);
    }
    snprintf(spec, sizeof spec, "idx:%s", dir);
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_TRAIN, 0), RVG_STATUS_BAD_FORMAT);
}

/* ---- CIFAR ----------------------------------------------------------------------------------- */

static void test_cifar(void) {
    printf("cifar\n");
    char dir[1024], sub[1100], path[1200], spec[1200];
    snprintf(dir, sizeof dir, "%s/cifar10", g_tmp);
    mkdir(dir, 0755);
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
    mkdir(sub, 0755);
    for (int b = 1; b <= 5; b++) {
        snprintf(path, sizeof path, "%s/data_batch_%d.bin", sub, b);
        write_cifar(path, (b - 1) * 3, 3, 0, 0, 0);
    }
    snprintf(path, sizeof path, "%s/test_batch.bin", sub);
    write_cifar(path, 100, 4, 0, 0, 0);
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    rvg_dataset *d = NULL;
    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_TRAIN, 0));
    if (d) {
        CHECK(rvg_dataset_count(d) == 15 && rvg_dataset_channels(d) == 3);
        CHECK(rvg_dataset_height(d) == 32 && rvg_dataset_width(d) == 32);
        CHECK(rvg_dataset_classes(d) == 10 &&
              strcmp(rvg_dataset_class_name(d, 0), "airplane") == 0);
        CHECK(strcmp(rvg_dataset_class_name(d, 9), "truck") == 0);
        int ok = 1;
        for (int64_t i = 0; i < 15; i++) {
            uint8_t *px;
            int64_t h, w, c;
            CHECK_OK(rvg_dataset_image(d, i, &px, &h, &w, &c));
            ok &= rvg_dataset_label(d, i) == i % 10;
            for (int64_t p = 0; p < 1024; p++)
                for (int64_t ch = 0; ch < 3; ch++)
                    ok &= px[p * 3 + ch] == cifar_pixel(i, ch, p);
            rvg_free(px);
        }
        CHECK(ok);
        rvg_dataset_free(d);
    }
    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_VAL, 2));
    if (d) {
        CHECK(rvg_dataset_count(d) == 2 && rvg_dataset_label(d, 1) == 101 % 10);
        rvg_dataset_free(d);
    }
    /* truncated batch, bad label, missing batch */
    snprintf(path, sizeof path, "%s/data_batch_3.bin", sub);
    write_cifar(path, 6, 3, 0, 5, 0);
    rvg_dataset *bad = NULL;
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_TRAIN, 0), RVG_STATUS_BAD_FORMAT);
    write_cifar(path, 6, 3, 0, 0, 1);
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_TRAIN, 0), RVG_STATUS_BAD_FORMAT);
    remove(path);
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_TRAIN, 0), RVG_STATUS_IO);

    /* CIFAR-100 directly in DIR, with fine label names */
    snprintf(dir, sizeof dir, "%s/cifar100", g_tmp);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/train.bin", dir);
    write_cifar(path, 0, 7, 1, 0, 0);
    snprintf(path, sizeof path, "%s/test.bin", dir);
    write_cifar(path, 50, 3, 1, 0, 0);
    snprintf(path, sizeof path, "%s/fine_label_names.txt", dir);
    {
        FILE *f = fopen(path, "w");
        for (int k = 0; k < 100; k++)
            fprintf(f, "class%03d\n", k);
        fclose(f);
    }
    snprintf(spec, sizeof spec, "cifar100:%s", dir);
    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_VAL, 0));
    if (d) {
        CHECK(rvg_dataset_count(d) == 3 && rvg_dataset_classes(d) == 100);
        CHECK(rvg_dataset_label(d, 2) == 52); /* fine label, not the coarse one */
        CHECK(strcmp(rvg_dataset_class_name(d, 52), "class052") == 0);
        uint8_t *px;
        int64_t h, w, c;
        CHECK_OK(rvg_dataset_image(d, 1, &px, &h, &w, &c));
        CHECK(px[(5 * 32 + 9) * 3 + 2] == cifar_pixel(51, 2, 5 * 32 + 9));
        rvg_free(px);
        rvg_dataset_free(d);
    }
    snprintf(path, sizeof path, "%s/test.bin", dir);
    write_cifar(path, 50, 3, 1, 0, 2);
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_VAL, 0), RVG_STATUS_BAD_FORMAT);
}

/* ---- image folder ---------------------------------------------------------------------------- */

static void test_folder(void) {
    printf("folder\n");
    char root[1024], path[1400], spec[1100];
    snprintf(root, sizeof root, "%s/folder", g_tmp);
    mkdir(root, 0755);
    mkdirf("%s/%s", root, "train");
    mkdirf("%s/%s", root, "val");
    const char *cls[3] = {"dog", "ant", "cat"};
    for (int k = 0; k < 3; k++) {
        mkdirf("%s/train/%s", root, cls[k]);
        if (k < 2)
            mkdirf("%s/val/%s", root, cls[k]);
    }
    uint8_t rgb[40 * 60 * 3], grey[20 * 30], rgba[9 * 7 * 4];
    ramp_rgb(rgb, 40, 60);
    for (int p = 0; p < 20 * 30; p++)
        grey[p] = (uint8_t)(p * 3);
    for (int p = 0; p < 9 * 7 * 4; p++)
        rgba[p] = (uint8_t)(p * 5 + 1);
    /* train/ant: a.png (RGB 40x60), b.PNG (grey), c.jpg (RGB), notes.txt (ignored)
     * train/cat: x.png (RGBA)   train/dog: y.jpeg   val/ant: v.png   val/dog: w.png */
    snprintf(path, sizeof path, "%s/train/ant/a.png", root);
    write_png(path, rgb, 40, 60, 3);
    snprintf(path, sizeof path, "%s/train/ant/b.PNG", root);
    write_png(path, grey, 20, 30, 1);
    snprintf(path, sizeof path, "%s/train/ant/c.jpg", root);
    write_jpeg(path, rgb, 40, 60);
    snprintf(path, sizeof path, "%s/train/ant/notes.txt", root);
    write_bytes(path, "hello", 5);
    snprintf(path, sizeof path, "%s/train/cat/x.png", root);
    write_png(path, rgba, 9, 7, 4);
    snprintf(path, sizeof path, "%s/train/dog/y.jpeg", root);
    write_jpeg(path, rgb, 40, 60);
    snprintf(path, sizeof path, "%s/val/ant/v.png", root);
    write_png(path, rgb, 40, 60, 3);
    snprintf(path, sizeof path, "%s/val/dog/w.png", root);
    write_png(path, grey, 20, 30, 1);

    snprintf(spec, sizeof spec, "folder:%s", root);
    rvg_dataset *d = NULL;
    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_TRAIN, 0));
    if (!d)
        return;
    CHECK(rvg_dataset_count(d) == 5 && rvg_dataset_classes(d) == 3 && rvg_dataset_channels(d) == 3);
    CHECK(strcmp(rvg_dataset_class_name(d, 0), "ant") == 0);
    CHECK(strcmp(rvg_dataset_class_name(d, 1), "cat") == 0);
    CHECK(strcmp(rvg_dataset_class_name(d, 2), "dog") == 0);
    CHECK(rvg_dataset_height(d) == 0 && rvg_dataset_width(d) == 0);
    int32_t want_lab[5] = {0, 0, 0, 1, 2};
    for (int i = 0; i < 5; i++)
        CHECK(rvg_dataset_label(d, i) == want_lab[i]);
    uint8_t *px;
    int64_t h, w, c;
    CHECK_OK(rvg_dataset_image(d, 0, &px, &h, &w, &c));
    CHECK(h == 40 && w == 60 && c == 3 && memcmp(px, rgb, sizeof rgb) == 0);
    rvg_free(px);
    CHECK_OK(rvg_dataset_image(d, 1, &px, &h, &w, &c));
    int ok = h == 20 && w == 30 && c == 3;
    for (int p = 0; ok && p < 600; p++)
        ok &= px[p * 3] == grey[p] && px[p * 3 + 1] == grey[p] && px[p * 3 + 2] == grey[p];
    CHECK(ok);
    rvg_free(px);
    CHECK_OK(rvg_dataset_image(d, 2, &px, &h, &w, &c));
    double err = 0;
    for (size_t p = 0; p < sizeof rgb; p++)
        err += fabs((double)px[p] - rgb[p]);
    printf("  jpeg mean |err| = %.3f\n", err / sizeof rgb);
    CHECK(h == 40 && w == 60 && err / sizeof rgb < 3.0);
    rvg_free(px);
    CHECK_OK(rvg_dataset_image(d, 3, &px, &h, &w, &c));
    ok = h == 9 && w == 7;
    for (int p = 0; ok && p < 63; p++)
        ok &= memcmp(px + p * 3, rgba + p * 4, 3) == 0; /* alpha dropped */
    CHECK(ok);
    rvg_free(px);
    rvg_dataset_free(d);

    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_VAL, 0));
    if (d) {
        CHECK(rvg_dataset_count(d) == 2 && rvg_dataset_classes(d) == 3);
        CHECK(rvg_dataset_label(d, 0) == 0 && rvg_dataset_label(d, 1) == 2);
        rvg_dataset_free(d);
    }
    /* limit on a folder takes an even stride: 5 files, limit 3 -> files 0, 1, 3 (ant, ant, cat) */
    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_TRAIN, 3));
    if (d) {
        CHECK(rvg_dataset_count(d) == 3 && rvg_dataset_label(d, 2) == 1);
        rvg_dataset_free(d);
    }

    /* errors: a val class missing from train; no train directory */
    rvg_dataset *bad = NULL;
    mkdirf("%s/val/%s", root, "zebra");
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_VAL, 0), RVG_STATUS_BAD_FORMAT);
    snprintf(path, sizeof path, "%s/val/zebra", root);
    rmdir(path);
    /* a training class without images: refused, as torchvision's ImageFolder refuses it */
    mkdirf("%s/train/%s", root, "yak");
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_TRAIN, 0), RVG_STATUS_BAD_FORMAT);
    snprintf(path, sizeof path, "%s/train/yak", root);
    rmdir(path);
    CHECK_OK(rvg_dataset_open(&bad, spec, RVG_SPLIT_TRAIN, 0));
    rvg_dataset_free(bad);
    bad = NULL;
    snprintf(spec, sizeof spec, "folder:%s/nowhere", g_tmp);
    CHECK_STATUS(rvg_dataset_open(&bad, spec, RVG_SPLIT_TRAIN, 0), RVG_STATUS_IO);
}

static int64_t run_loader(const rvg_dataset *d, const rvg_augment *a, int64_t batch, int shuffle,
                          int drop_last, int workers, int rank, int world, int64_t epoch0,
                          int epochs, float **xs, int32_t **ys, int64_t **idx);

/* ---- augmentation ---------------------------------------------------------------------------- */

static void aug_none(rvg_augment *a, int64_t h, int64_t w) {
    memset(a, 0, sizeof *a);
    a->out_h = h;
    a->out_w = w;
    for (int c = 0; c < 4; c++)
        a->std[c] = 1.f;
}

/* test_idx's 12x10 grey training set (idx_pixel values), or NULL after a failed check. */
static rvg_dataset *open_test_idx(void) {
    char spec[1100];
    snprintf(spec, sizeof spec, "idx:%s/idx", g_tmp);
    rvg_dataset *d = NULL;
    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_TRAIN, 0));
    return d;
}

static void test_augment_small(void) {
    printf("augment (small images)\n");
    rvg_dataset *d = open_test_idx();
    if (!d)
        return;
    const int64_t H = 12, W = 10;
    float out[12 * 10], ref[12 * 10];
    rvg_augment a;

    /* identity and normalisation */
    aug_none(&a, H, W);
    CHECK_OK(rvg_augment_sample(out, d, &a, 4, 1, 0));
    for (int64_t p = 0; p < H * W; p++)
        ref[p] = (float)idx_pixel(4, p / W, p % W) / 255.f;
    rvg_test_close("identity = pixel / 255", out, ref, H * W, 0.f, 0.f, NULL, 0);
    a.mean[0] = 0.5f;
    a.std[0] = 0.25f;
    CHECK_OK(rvg_augment_sample(out, d, &a, 4, 1, 0));
    for (int64_t p = 0; p < H * W; p++)
        ref[p] = ((float)idx_pixel(4, p / W, p % W) / 255.f - 0.5f) / 0.25f;
    rvg_test_close("normalise (v/255 - 0.5) / 0.25", out, ref, H * W, 1e-6f, 0.f, NULL, 0);

    /* flip: every output is the image or its mirror, and both happen */
    aug_none(&a, H, W);
    a.hflip = 1;
    int same = 0, mirrored = 0, other = 0;
    for (int64_t s = 0; s < 64; s++) {
        int64_t i = s % 37;
        CHECK_OK(rvg_augment_sample(out, d, &a, i, 7, s));
        int is_same = 1, is_mirror = 1;
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) {
                float v = out[y * W + x] * 255.f;
                is_same &= fabsf(v - idx_pixel(i, y, x)) < 1e-3f;
                is_mirror &= fabsf(v - idx_pixel(i, y, W - 1 - x)) < 1e-3f;
            }
        same += is_same;
        mirrored += is_mirror;
        other += !is_same && !is_mirror;
    }
    printf("  flip: %d same, %d mirrored, %d other\n", same, mirrored, other);
    CHECK(other == 0 && same > 10 && mirrored > 10);

    /* random crop with padding 2: the output is the image shifted by (dy, dx) in [-2, 2] with zeros
     * outside; every shift is found exactly once and all 25 occur */
    aug_none(&a, H, W);
    a.random_crop_pad = 2;
    int seen[5][5] = {{0}}, unmatched = 0;
    for (int64_t s = 0; s < 400; s++) {
        int64_t i = s % 37;
        CHECK_OK(rvg_augment_sample(out, d, &a, i, 11, s));
        int matches = 0;
        for (int dy = -2; dy <= 2; dy++)
            for (int dx = -2; dx <= 2; dx++) {
                int m = 1;
                for (int64_t y = 0; y < H && m; y++)
                    for (int64_t x = 0; x < W && m; x++) {
                        int64_t sy = y + dy, sx = x + dx;
                        float want = (sy >= 0 && sy < H && sx >= 0 && sx < W)
                                         ? idx_pixel(i, sy, sx) / 255.f
                                         : 0.f;
                        m = fabsf(out[y * W + x] - want) < 1e-6f;
                    }
                if (m) {
                    seen[dy + 2][dx + 2]++;
                    matches++;
                }
            }
        unmatched += matches != 1;
    }
    int all = 1;
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 5; x++)
            all &= seen[y][x] > 0;
    CHECK(unmatched == 0 && all);

    /* random crop at the native size, then resized to 2x (bilinear; what `train --size` does to a
     * small set): each output is one of the 25 shifted images, resized, and all 25 occur */
    {
        const int64_t OH = 2 * H + 1, OW = 2 * W - 3; /* not an integer factor, either way */
        float big[25][(2 * 12 + 1) * (2 * 10 - 3)], got[(2 * 12 + 1) * (2 * 10 - 3)];
        uint8_t shifted[12 * 10];
        int64_t xi[2 * (2 * 10 - 3)];
        float xl[2 * (2 * 10 - 3)];
        int seen2[25] = {0}, unmatched2 = 0;
        aug_none(&a, OH, OW);
        a.random_crop_pad = 2;
        a.crop_h = H;
        a.crop_w = W;
        for (int64_t s = 0; s < 400; s++) {
            int64_t i = s % 37;
            for (int sh = 0; sh < 25; sh++) {
                const int dy = sh / 5 - 2, dx = sh % 5 - 2;
                for (int64_t y = 0; y < H; y++)
                    for (int64_t x = 0; x < W; x++) {
                        int64_t sy = y + dy, sx = x + dx;
                        shifted[y * W + x] = (sy >= 0 && sy < H && sx >= 0 && sx < W)
                                                 ? (uint8_t)idx_pixel(i, sy, sx)
                                                 : 0;
                    }
                rvg__resize_bilinear(big[sh], OH, OW, shifted, W, 1, 0, 0, H, W, OH, OW, 0, 0, xi,
                                     xl);
            }
            CHECK_OK(rvg_augment_sample(got, d, &a, i, 11, s));
            int matches = 0;
            for (int sh = 0; sh < 25; sh++) {
                int m = 1;
                for (int64_t p = 0; p < OH * OW && m; p++)
                    m = fabsf(got[p] - big[sh][p] / 255.f) < 1e-6f;
                if (m) {
                    seen2[sh]++;
                    matches++;
                }
            }
            unmatched2 += matches != 1;
        }
        int all2 = 1;
        for (int sh = 0; sh < 25; sh++)
            all2 &= seen2[sh] > 0;
        CHECK(unmatched2 == 0 && all2);
        /* a window larger than the padded image, or half a window, is refused */
        rvg_loader *l2 = NULL;
        a.crop_h = H + 5;
        CHECK_STATUS(rvg_loader_new(&l2, d, &a, 4, 1, 0, 1, 1, 0, 1), RVG_STATUS_BAD_ARGUMENT);
        a.crop_h = H;
        a.crop_w = 0;
        CHECK_STATUS(rvg_loader_new(&l2, d, &a, 4, 1, 0, 1, 1, 0, 1), RVG_STATUS_BAD_ARGUMENT);
        CHECK(l2 == NULL);
        aug_none(&a, H, W); /* back to the plain random crop for the checks below */
        a.random_crop_pad = 2;
    }

    /* the same (seed, epoch, index) gives the same sample; another epoch usually not */
    a.hflip = 1;
    CHECK_OK(rvg_augment_sample(out, d, &a, 3, 5, 2));
    CHECK_OK(rvg_augment_sample(ref, d, &a, 3, 5, 2));
    CHECK(memcmp(out, ref, sizeof out) == 0);
    int differs = 0;
    for (int64_t e = 3; e < 10; e++) {
        CHECK_OK(rvg_augment_sample(ref, d, &a, 3, 5, e));
        differs += memcmp(out, ref, sizeof out) != 0;
    }
    CHECK(differs > 0);

    /* argument checks */
    aug_none(&a, H, W);
    a.random_crop_pad = 1;
    a.out_h = H + 3;
    rvg_loader *l = NULL;
    CHECK_STATUS(rvg_loader_new(&l, d, &a, 4, 1, 0, 1, 1, 0, 1), RVG_STATUS_BAD_ARGUMENT);
    aug_none(&a, H, W);
    a.std[0] = 0.f;
    CHECK_STATUS(rvg_loader_new(&l, d, &a, 4, 1, 0, 1, 1, 0, 1), RVG_STATUS_BAD_ARGUMENT);
    aug_none(&a, H, W);
    CHECK_STATUS(rvg_loader_new(&l, d, &a, 4, 1, 0, 1, 1, 2, 2), RVG_STATUS_BAD_ARGUMENT);
    CHECK_STATUS(rvg_loader_new(&l, d, &a, 0, 1, 0, 1, 1, 0, 1), RVG_STATUS_BAD_ARGUMENT);
    CHECK(l == NULL);

    /* resizing a fixed-size set to another size goes through bilinear */
    aug_none(&a, 6, 5);
    float small[30];
    CHECK_OK(rvg_augment_sample(small, d, &a, 0, 1, 0));
    /* exact 2x downscale with align_corners=False averages each 2x2 block */
    int ok = 1;
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 5; x++) {
            float want = (idx_pixel(0, 2 * y, 2 * x) + idx_pixel(0, 2 * y, 2 * x + 1) +
                          idx_pixel(0, 2 * y + 1, 2 * x) + idx_pixel(0, 2 * y + 1, 2 * x + 1)) /
                         4.f / 255.f;
            ok &= fabsf(small[y * 5 + x] - want) < 1e-5f;
        }
    CHECK(ok);
    rvg_dataset_free(d);
}

/* Random erasing: zero fill with mean -1 (every kept value is >= 1, so the erased ones are
 * exactly the zeros), checked for shape, bounds, frequency and determinism; then the noise fill's
 * moments and a 3-channel set's box shared by all channels. */
static void erased_box(const float *out, int64_t H, int64_t W, int64_t *n0, int64_t *y0,
                       int64_t *x0, int64_t *y1, int64_t *x1) {
    *n0 = 0;
    *y0 = *x0 = INT64_MAX;
    *y1 = *x1 = -1;
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++)
            if (out[y * W + x] == 0.f) {
                (*n0)++;
                *y0 = y < *y0 ? y : *y0;
                *x0 = x < *x0 ? x : *x0;
                *y1 = y > *y1 ? y : *y1;
                *x1 = x > *x1 ? x : *x1;
            }
}

static void test_random_erasing(void) {
    printf("random erasing\n");
    rvg_dataset *d = open_test_idx();
    if (!d)
        return;
    const int64_t H = 12, W = 10;
    float out[12 * 10], again[12 * 10];
    rvg_augment a;
    aug_none(&a, H, W);
    a.mean[0] = -1.f;
    a.erase_prob = 0.5f;
    int erased = 0, bad_box = 0, bad_rest = 0, bad_size = 0, differ = 0;
    int64_t min_area = H * W, max_area = 0;
    for (int64_t s = 0; s < 400; s++) {
        int64_t i = s % 37;
        CHECK_OK(rvg_augment_sample(out, d, &a, i, 5, s));
        int64_t n0, y0, x0, y1, x1;
        erased_box(out, H, W, &n0, &y0, &x0, &y1, &x1);
        if (n0) {
            erased++;
            int64_t bh = y1 - y0 + 1, bw = x1 - x0 + 1;
            bad_box += n0 != bh * bw; /* the zeros fill their bounding box */
            bad_size += bh >= H || bw >= W;
            min_area = n0 < min_area ? n0 : min_area;
            max_area = n0 > max_area ? n0 : max_area;
        }
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) {
                float v = out[y * W + x];
                bad_rest += v != 0.f && v != (float)idx_pixel(i, y, x) / 255.f + 1.f;
            }
        CHECK_OK(rvg_augment_sample(again, d, &a, i, 5, s));
        differ += memcmp(out, again, sizeof out) != 0;
    }
    /* 120 pixels: areas 2.4 .. 40 before rounding each side, so 2 .. ~48 after */
    printf("  p = 0.5: %d of 400 erased, box areas %lld..%lld\n", erased, (long long)min_area,
           (long long)max_area);
    CHECK(erased > 160 && erased < 240 && bad_box == 0 && bad_rest == 0 && bad_size == 0);
    CHECK(min_area >= 1 && min_area <= 6 && max_area >= 25 && max_area <= 50);
    CHECK(differ == 0);
    /* p = 1 erases (nearly) always; p = 0 never */
    a.erase_prob = 1.f;
    erased = 0;
    for (int64_t s = 0; s < 100; s++) {
        CHECK_OK(rvg_augment_sample(out, d, &a, s % 37, 6, s));
        int64_t n0, y0, x0, y1, x1;
        erased_box(out, H, W, &n0, &y0, &x0, &y1, &x1);
        erased += n0 > 0;
    }
    printf("  p = 1: %d of 100 erased\n", erased);
    CHECK(erased >= 95);
    a.erase_prob = 0.f;
    erased = 0;
    for (int64_t s = 0; s < 100; s++) {
        CHECK_OK(rvg_augment_sample(out, d, &a, s % 37, 6, s));
        int64_t n0, y0, x0, y1, x1;
        erased_box(out, H, W, &n0, &y0, &x0, &y1, &x1);
        erased += n0 > 0;
    }
    CHECK(erased == 0);
    /* the box parameters on a large image: area 2-33% and aspect 0.3-3.3, up to rounding */
    rvg__crng r;
    rvg__crng_seed(&r, 3, 0, 9, 0);
    int bad = 0, fits = 0;
    for (int k = 0; k < 2000; k++) {
        int64_t i, j, bh, bw;
        if (!rvg__erase_params(&r, 200, 300, &i, &j, &bh, &bw))
            continue;
        fits++;
        double area = (double)(bh * bw) / (200.0 * 300.0), asp = (double)bh / (double)bw;
        bad += area < 0.018 || area > 0.34 || asp < 0.28 || asp > 3.6 || i < 0 || j < 0 ||
               i + bh > 200 || j + bw > 300;
    }
    CHECK(fits > 1900 && bad == 0);
    int64_t i, j, bh, bw;
    CHECK(rvg__erase_params(&r, 1, 1, &i, &j, &bh, &bw) == 0); /* nothing fits strictly */
    /* noise fill: N(0, 1) values inside the box */
    aug_none(&a, H, W);
    a.mean[0] = -1.f;
    a.erase_prob = 1.f;
    a.erase_noise = 1;
    double sum = 0, sum2 = 0;
    int64_t n = 0;
    for (int64_t s = 0; s < 300; s++) {
        int64_t ii = s % 37;
        CHECK_OK(rvg_augment_sample(out, d, &a, ii, 8, s));
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++)
                if (out[y * W + x] != (float)idx_pixel(ii, y, x) / 255.f + 1.f) {
                    sum += out[y * W + x];
                    sum2 += (double)out[y * W + x] * out[y * W + x];
                    n++;
                }
    }
    double mean = sum / (double)n, sd = sqrt(sum2 / (double)n - mean * mean);
    printf("  noise: %lld values, mean %.3f, std %.3f\n", (long long)n, mean, sd);
    CHECK(n > 2000 && fabs(mean) < 0.1 && sd > 0.9 && sd < 1.1);
    /* out-of-range probabilities are refused */
    a.erase_prob = 1.5f;
    CHECK_STATUS(rvg_augment_sample(out, d, &a, 0, 1, 0), RVG_STATUS_BAD_ARGUMENT);
    a.erase_prob = NAN;
    CHECK_STATUS(rvg_augment_sample(out, d, &a, 0, 1, 0), RVG_STATUS_BAD_ARGUMENT);
    rvg_dataset_free(d);

    /* three channels: the same box in each (a CIFAR-10 directory of its own: test_cifar
     * truncates files of its one) */
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/cifar_erase", g_tmp);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/cifar-10-batches-bin", dir);
    mkdir(path, 0755);
    for (int b = 1; b <= 6; b++) {
        if (b <= 5)
            snprintf(path, sizeof path, "%s/cifar-10-batches-bin/data_batch_%d.bin", dir, b);
        else
            snprintf(path, sizeof path, "%s/cifar-10-batches-bin/test_batch.bin", dir);
        write_cifar(path, (b - 1) * 3, 3, 0, 0, 0);
    }
    char spec[1100];
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_TRAIN, 0));
    if (!d)
        return;
    float *rgb = malloc(3 * 32 * 32 * sizeof *rgb);
    aug_none(&a, 32, 32);
    for (int c = 0; c < 3; c++)
        a.mean[c] = -1.f;
    a.erase_prob = 1.f;
    int same = 1, any = 0;
    for (int64_t s = 0; s < 20; s++) {
        CHECK_OK(rvg_augment_sample(rgb, d, &a, s % 15, 2, s));
        for (int64_t p = 0; p < 32 * 32; p++) {
            int z = rgb[p] == 0.f;
            any |= z;
            same &= (rgb[1024 + p] == 0.f) == z && (rgb[2048 + p] == 0.f) == z;
        }
    }
    CHECK(any && same);
    free(rgb);
    rvg_dataset_free(d);
}

static void test_augment_folder(void) {
    printf("augment (folder images)\n");
    char spec[1100];
    snprintf(spec, sizeof spec, "folder:%s/folder", g_tmp);
    rvg_dataset *d = NULL;
    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_TRAIN, 0));
    if (!d)
        return;
    /* centre crop of the 40x60 ramp to 16x16: shorter side -> floor(16 / 0.875) = 18, so the
     * resized image is 18x27; crop top round(1.0) = 1, left round(5.5) = 6 (half to even). The
     * ramp r = 4x resamples exactly: r(x) = 4 * ((x + 6 + 0.5) * 60/27 - 0.5). */
    rvg_augment a;
    aug_none(&a, 16, 16);
    a.center_crop_eval = 1;
    float out[3 * 16 * 16];
    CHECK_OK(rvg_augment_sample(out, d, &a, 0, 1, 0));
    float want_r[256], want_g[256];
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) {
            want_r[y * 16 + x] = 4.f * ((x + 6 + 0.5f) * 60.f / 27.f - 0.5f) / 255.f;
            want_g[y * 16 + x] = 5.f * ((y + 1 + 0.5f) * 40.f / 18.f - 0.5f) / 255.f;
        }
    rvg_test_close("centre crop geometry (red = 4x ramp)", out, want_r, 256, 1e-5f, 1e-5f, NULL, 0);
    rvg_test_close("centre crop geometry (green = 5y ramp)", out + 256, want_g, 256, 1e-5f, 1e-5f,
                   NULL, 0);

    /* RandomResizedCrop: params always inside the image; output is 24x20; the ramp stays a ramp
     * (each row increasing in red, or decreasing when flipped) */
    rvg__crng r;
    rvg__crng_seed(&r, 3, 0, 99, 0);
    int inside = 1, fallback_like = 0;
    double area = 0;
    for (int k = 0; k < 2000; k++) {
        int64_t i, j, ch, cw;
        rvg__rrc_params(&r, 40, 60, &i, &j, &ch, &cw);
        inside &= i >= 0 && j >= 0 && ch > 0 && cw > 0 && i + ch <= 40 && j + cw <= 60;
        double ratio = (double)cw / (double)ch;
        fallback_like += ratio < 0.7 || ratio > 1.4;
        area += (double)(ch * cw) / 2400.0;
    }
    printf("  rrc: mean area fraction %.3f, %d crops outside the aspect range\n", area / 2000,
           fallback_like);
    CHECK(inside && fallback_like < 100);
    CHECK(area / 2000 > 0.3 && area / 2000 < 0.7);
    aug_none(&a, 24, 20);
    a.random_resized_crop = 1;
    a.hflip = 1;
    float o2[3 * 24 * 20];
    int mono = 1;
    for (int s = 0; s < 20; s++) {
        CHECK_OK(rvg_augment_sample(o2, d, &a, 0, 9, s));
        int inc = o2[1] >= o2[0];
        for (int y = 0; y < 24; y++)
            for (int x = 1; x < 20; x++) {
                float dlt = o2[y * 20 + x] - o2[y * 20 + x - 1];
                mono &= inc ? dlt >= -1e-6f : dlt <= 1e-6f;
            }
    }
    CHECK(mono);

    /* AutoAugment: deterministic, values stay on the uint8 grid */
    aug_none(&a, 24, 24);
    a.random_resized_crop = 1;
    a.autoaugment = 1;
    float o3[3 * 24 * 24], o4[3 * 24 * 24];
    int grid = 1, same = 1;
    for (int s = 0; s < 30; s++) {
        CHECK_OK(rvg_augment_sample(o3, d, &a, s % 5, 4, s));
        CHECK_OK(rvg_augment_sample(o4, d, &a, s % 5, 4, s));
        same &= memcmp(o3, o4, sizeof o3) == 0;
        for (int p = 0; p < 3 * 24 * 24; p++) {
            float v = o3[p] * 255.f;
            grid &= fabsf(v - rintf(v)) < 1e-3f && v >= -1e-3f && v <= 255.001f;
        }
    }
    CHECK(same && grid);

    /* folder defaults: RandomResizedCrop 224 + flip for training, centre crop for evaluation; a
     * 224x224 batch through the loader is the same with 0 and 2 workers */
    rvg_augment_defaults(&a, d, 1);
    CHECK(a.out_h == 224 && a.out_w == 224 && a.random_resized_crop && a.hflip &&
          !a.center_crop_eval);
    rvg_augment_imagenet_norm(&a);
    CHECK(a.mean[0] == 0.485f && a.std[2] == 0.225f);
    rvg_augment ev;
    rvg_augment_defaults(&ev, d, 0);
    CHECK(ev.center_crop_eval && !ev.random_resized_crop && !ev.hflip && ev.std[0] == 1.f);
    a.autoaugment = 1;
    float *xa = NULL, *xb = NULL;
    int32_t *ya = NULL, *yb = NULL;
    int64_t na = run_loader(d, &a, 2, 1, 0, 0, 0, 1, 0, 1, &xa, &ya, NULL);
    int64_t nb = run_loader(d, &a, 2, 1, 0, 2, 0, 1, 0, 1, &xb, &yb, NULL);
    CHECK(na == 5 && nb == 5 && memcmp(xa, xb, (size_t)(5 * 3 * 224 * 224) * sizeof(float)) == 0 &&
          memcmp(ya, yb, 5 * sizeof(int32_t)) == 0);
    free(xa), free(xb), free(ya), free(yb);
    rvg_dataset_free(d);
}

static void test_autoaugment_ops(void) {
    printf("autoaugment ops\n");
    enum { H = 9, W = 11, C = 3 };
    uint8_t img[H * W * C], orig[H * W * C], tmp[H * W * C];
    for (int p = 0; p < H * W * C; p++)
        orig[p] = (uint8_t)((p * 37) % 251);
    int nops = rvg__autoaugment_op_count();
    int identity_ok = 1;
    for (int op = 0; op < nops; op++) {
        const char *name = rvg__autoaugment_op_name(op);
        /* magnitudes that make each op an identity: 8 bits, threshold 256, angle 0, ratio 1 */
        float m = strcmp(name, "Posterize") == 0  ? 8.f
                  : strcmp(name, "Solarize") == 0 ? 256.f
                                                  : 0.f;
        if (!strcmp(name, "AutoContrast") || !strcmp(name, "Equalize") || !strcmp(name, "Invert"))
            continue;
        memcpy(img, orig, sizeof img);
        rvg__autoaugment_apply(img, tmp, H, W, C, op, m);
        if (memcmp(img, orig, sizeof img) != 0) {
            identity_ok = 0;
            fprintf(stderr, "  op %s with neutral magnitude changed the image\n", name);
        }
    }
    CHECK(identity_ok);
    for (int op = 0; op < nops; op++) {
        const char *name = rvg__autoaugment_op_name(op);
        memcpy(img, orig, sizeof img);
        if (!strcmp(name, "Invert")) {
            rvg__autoaugment_apply(img, tmp, H, W, C, op, 0.f);
            CHECK(img[5] == 255 - orig[5]);
            rvg__autoaugment_apply(img, tmp, H, W, C, op, 0.f);
            CHECK(memcmp(img, orig, sizeof img) == 0);
        } else if (!strcmp(name, "AutoContrast")) {
            rvg__autoaugment_apply(img, tmp, H, W, C, op, 0.f);
            int lo = 255, hi = 0;
            for (int p = 0; p < H * W; p++) {
                lo = img[p * 3] < lo ? img[p * 3] : lo;
                hi = img[p * 3] > hi ? img[p * 3] : hi;
            }
            CHECK(lo == 0 && hi == 255);
        } else if (!strcmp(name, "Posterize")) {
            rvg__autoaugment_apply(img, tmp, H, W, C, op, 4.f);
            int ok = 1;
            for (int p = 0; p < H * W * C; p++)
                ok &= img[p] == (orig[p] & 0xF0);
            CHECK(ok);
        } else if (!strcmp(name, "Solarize")) {
            rvg__autoaugment_apply(img, tmp, H, W, C, op, 128.f);
            int ok = 1;
            for (int p = 0; p < H * W * C; p++)
                ok &= img[p] == (orig[p] >= 128 ? 255 - orig[p] : orig[p]);
            CHECK(ok);
        } else if (!strcmp(name, "Rotate")) {
            /* 90 degrees four times on a square image is the identity (nearest, centre pixel) */
            uint8_t sq[9 * 9 * 3], sq0[9 * 9 * 3], t2[9 * 9 * 3];
            for (int p = 0; p < 243; p++)
                sq0[p] = sq[p] = (uint8_t)(p * 7 % 256);
            for (int k = 0; k < 4; k++)
                rvg__autoaugment_apply(sq, t2, 9, 9, 3, op, 90.f);
            CHECK(memcmp(sq, sq0, sizeof sq) == 0);
        } else if (!strcmp(name, "Equalize")) {
            /* an image using all 256 levels once per channel is already equalised */
            uint8_t e[256 * 3], e0[256 * 3], t2[256 * 3];
            for (int p = 0; p < 256; p++)
                for (int ch = 0; ch < 3; ch++)
                    e0[p * 3 + ch] = e[p * 3 + ch] = (uint8_t)((p * 5 + ch) % 256);
            rvg__autoaugment_apply(e, t2, 16, 16, 3, op, 0.f);
            CHECK(memcmp(e, e0, sizeof e) == 0);
        } else if (!strcmp(name, "Color")) {
            /* saturation 0 (magnitude -1) gives the grey image in every channel */
            rvg__autoaugment_apply(img, tmp, H, W, C, op, -1.f);
            int ok = 1;
            for (int p = 0; p < H * W; p++)
                ok &= img[p * 3] == img[p * 3 + 1] && img[p * 3 + 1] == img[p * 3 + 2];
            CHECK(ok);
        }
    }
}

/* ---- loader ---------------------------------------------------------------------------------- */

/* Runs `epochs` epochs and returns all x and y concatenated (new buffers) and the sample count. */
static int64_t run_loader(const rvg_dataset *d, const rvg_augment *a, int64_t batch, int shuffle,
                          int drop_last, int workers, int rank, int world, int64_t epoch0,
                          int epochs, float **xs, int32_t **ys, int64_t **idx) {
    rvg_loader *l = NULL;
    CHECK_OK(rvg_loader_new(&l, d, a, batch, shuffle, drop_last, 1234, workers, rank, world));
    if (!l)
        return 0;
    int64_t sf = rvg_dataset_channels(d) * a->out_h * a->out_w;
    int64_t cap = (rvg_dataset_count(d) + batch) * epochs;
    *xs = malloc((size_t)(cap * sf) * sizeof(float));
    *ys = malloc((size_t)cap * sizeof(int32_t));
    if (idx)
        *idx = malloc((size_t)cap * sizeof(int64_t));
    float *x = malloc((size_t)(batch * sf) * sizeof(float));
    int32_t *y = malloc((size_t)batch * sizeof(int32_t));
    int64_t total = 0;
    double wait = 0;
    for (int e = 0; e < epochs; e++) {
        CHECK_OK(rvg_loader_start_epoch(l, epoch0 + e));
        int64_t b = 0, n;
        for (;;) {
            rvg_status s = rvg_loader_next(l, x, y, &n, &wait);
            if (s != RVG_OK) {
                CHECK_OK(s);
                break;
            }
            if (n == 0)
                break;
            memcpy(*xs + total * sf, x, (size_t)(n * sf) * sizeof(float));
            memcpy(*ys + total, y, (size_t)n * sizeof(int32_t));
            for (int64_t j = 0; idx && j < n; j++)
                (*idx)[total + j] = rvg_loader_sample_index(l, b, j);
            total += n;
            b++;
        }
        CHECK(b == rvg_loader_batches_per_epoch(l));
    }
    CHECK(wait >= 0);
    free(x);
    free(y);
    rvg_loader_free(l);
    return total;
}

static void test_loader(void) {
    printf("loader\n");
    char spec[1100];
    snprintf(spec, sizeof spec, "idx:%s/idx", g_tmp);
    rvg_dataset *d = NULL;
    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_TRAIN, 0));
    if (!d)
        return;
    rvg_augment a;
    aug_none(&a, 12, 10);
    a.random_crop_pad = 2;
    a.hflip = 1;
    a.mean[0] = 0.3f;
    a.std[0] = 0.7f;
    const int64_t sf = 120;

    /* 37 samples, batch 8: 5 batches, the last of 5 */
    float *x0, *x1, *x3, *x3b;
    int32_t *y0, *y1, *y3, *y3b;
    int64_t *i1;
    int64_t n0 = run_loader(d, &a, 8, 1, 0, 0, 0, 1, 0, 2, &x0, &y0, NULL);
    int64_t n1 = run_loader(d, &a, 8, 1, 0, 1, 0, 1, 0, 2, &x1, &y1, &i1);
    int64_t n3 = run_loader(d, &a, 8, 1, 0, 3, 0, 1, 0, 2, &x3, &y3, NULL);
    int64_t n3b = run_loader(d, &a, 8, 1, 0, 3, 0, 1, 0, 2, &x3b, &y3b, NULL);
    CHECK(n0 == 74 && n1 == 74 && n3 == 74 && n3b == 74);
    size_t xb = (size_t)(74 * sf) * sizeof(float), yb = 74 * sizeof(int32_t);
    CHECK(memcmp(x0, x1, xb) == 0 && memcmp(y0, y1, yb) == 0);
    CHECK(memcmp(x1, x3, xb) == 0 && memcmp(y1, y3, yb) == 0);
    CHECK(memcmp(x3, x3b, xb) == 0 && memcmp(y3, y3b, yb) == 0);
    /* each epoch is a permutation; the two epochs differ; every row equals rvg_augment_sample */
    int perm_ok = 1, rows_ok = 1, labels_ok = 1;
    for (int e = 0; e < 2; e++) {
        int cnt[37] = {0};
        for (int64_t k = 0; k < 37; k++) {
            int64_t i = i1[e * 37 + k];
            if (i < 0 || i >= 37) {
                perm_ok = 0;
                continue;
            }
            cnt[i]++;
            labels_ok &= y1[e * 37 + k] == rvg_dataset_label(d, i);
            float ref[120];
            CHECK_OK(rvg_augment_sample(ref, d, &a, i, 1234, e));
            rows_ok &= memcmp(ref, x1 + (e * 37 + k) * sf, sizeof ref) == 0;
        }
        for (int i = 0; i < 37; i++)
            perm_ok &= cnt[i] == 1;
    }
    CHECK(perm_ok && rows_ok && labels_ok);
    CHECK(memcmp(i1, i1 + 37, 37 * sizeof(int64_t)) != 0);
    free(x0), free(x1), free(x3), free(x3b), free(y0), free(y1), free(y3), free(y3b), free(i1);

    /* resuming at epoch 1 replays the second epoch of a run from epoch 0 */
    float *xa, *xr;
    int32_t *ya, *yr;
    run_loader(d, &a, 8, 1, 1, 2, 0, 1, 0, 2, &xa, &ya, NULL);
    int64_t nr = run_loader(d, &a, 8, 1, 1, 2, 0, 1, 1, 1, &xr, &yr, NULL);
    CHECK(nr == 32 && memcmp(xa + 32 * sf, xr, (size_t)(32 * sf) * sizeof(float)) == 0);
    free(xa), free(xr), free(ya), free(yr);

    /* no shuffle: sequential */
    int64_t *iseq;
    int64_t ns = run_loader(d, &a, 5, 0, 0, 2, 0, 1, 0, 1, &xa, &ya, &iseq);
    int seq = ns == 37;
    for (int64_t k = 0; k < ns; k++)
        seq &= iseq[k] == k && ya[k] == k % 10;
    CHECK(seq);
    free(xa), free(ya), free(iseq);

    /* sharding, drop_last = 0: 37 samples, batch 4 -> 10 slots; world 3 gets 4, 3, 3 batches
     * (13, 12, 12 samples) and the union is the permutation exactly once */
    for (int drop = 0; drop < 2; drop++) {
        int cnt[37] = {0};
        int64_t tot = 0, nb[3];
        int64_t *ir[3];
        int64_t *ifull;
        float *xf;
        int32_t *yf;
        run_loader(d, &a, 4, 1, 0, 1, 0, 1, 3, 1, &xf, &yf, &ifull);
        for (int r = 0; r < 3; r++) {
            int64_t n = run_loader(d, &a, 4, 1, drop, r == 1 ? 0 : 2, r, 3, 3, 1, &xa, &ya, &ir[r]);
            nb[r] = n;
            tot += n;
            for (int64_t k = 0; k < n; k++)
                cnt[ir[r][k]]++;
            /* rank r's batch b is global slot r + 3b of the single-process order */
            int slot_ok = 1;
            for (int64_t k = 0; k < n; k++) {
                int64_t b = k / 4, j = k % 4, pos = (r + 3 * b) * 4 + j;
                slot_ok &= ir[r][k] == ifull[pos];
                slot_ok &= memcmp(xa + k * sf, xf + pos * sf, (size_t)sf * sizeof(float)) == 0;
            }
            CHECK(slot_ok);
            free(xa), free(ya), free(ir[r]);
        }
        free(xf), free(yf), free(ifull);
        int once = 1, dup = 0;
        for (int i = 0; i < 37; i++) {
            once &= cnt[i] == 1;
            dup |= cnt[i] > 1;
        }
        if (!drop) {
            CHECK(nb[0] == 13 && nb[1] == 12 && nb[2] == 12 && tot == 37 && once);
        } else {
            /* floor(37 / 12) = 3 full batches per rank, in lockstep */
            CHECK(nb[0] == 12 && nb[1] == 12 && nb[2] == 12 && !dup);
        }
    }

    /* abandoning an epoch half-way, then starting another, gives that epoch unchanged */
    {
        rvg_loader *l = NULL;
        CHECK_OK(rvg_loader_new(&l, d, &a, 3, 1, 0, 1234, 2, 0, 1));
        float x[3 * 120], first[3 * 120];
        int32_t y[3];
        int64_t n;
        CHECK_OK(rvg_loader_start_epoch(l, 5));
        CHECK_OK(rvg_loader_next(l, x, y, &n, NULL));
        memcpy(first, x, sizeof x);
        CHECK_OK(rvg_loader_next(l, x, y, &n, NULL));
        CHECK_OK(rvg_loader_start_epoch(l, 6));
        CHECK_OK(rvg_loader_start_epoch(l, 5));
        CHECK_OK(rvg_loader_next(l, x, y, &n, NULL));
        CHECK(n == 3 && memcmp(x, first, sizeof x) == 0);
        rvg_loader_free(l);

        /* a new augmentation mid-run (erasing on, then off, as --clean-epochs does) gives from
         * the next epoch on exactly the batches of a loader made with it; another output size
         * or an invalid augmentation is refused and leaves the loader as it was */
        rvg_augment er = a, er_big = a, bad = a;
        er.erase_prob = 1.0f;
        er_big.out_h = 14;
        bad.std[0] = 0.0f;
        float xe[3 * 120], xp[3 * 120];
        int32_t ye[3], yp[3];
        int64_t ne, np;
        CHECK_OK(rvg_loader_new(&l, d, &er, 3, 1, 0, 1234, 2, 0, 1));
        CHECK_OK(rvg_loader_start_epoch(l, 5));
        CHECK_OK(rvg_loader_next(l, xe, ye, &ne, NULL));
        CHECK(ne == 3 && memcmp(xe, first, sizeof xe) != 0); /* boxes are erased */
        CHECK_STATUS(rvg_loader_set_augment(l, &er_big), RVG_STATUS_BAD_ARGUMENT);
        CHECK_STATUS(rvg_loader_set_augment(l, &bad), RVG_STATUS_BAD_ARGUMENT);
        CHECK_OK(rvg_loader_set_augment(l, &a));
        CHECK_OK(rvg_loader_start_epoch(l, 5));
        CHECK_OK(rvg_loader_next(l, xp, yp, &np, NULL));
        CHECK(np == 3 && memcmp(xp, first, sizeof xp) == 0 && memcmp(yp, y, sizeof yp) == 0);
        CHECK_OK(rvg_loader_set_augment(l, &er));
        CHECK_OK(rvg_loader_start_epoch(l, 5));
        CHECK_OK(rvg_loader_next(l, xp, yp, &np, NULL));
        CHECK(np == 3 && memcmp(xp, xe, sizeof xp) == 0);
        rvg_loader_free(l);
        /* next before start_epoch is an error */
        CHECK_OK(rvg_loader_new(&l, d, &a, 3, 1, 0, 1234, 1, 0, 1));
        CHECK_STATUS(rvg_loader_next(l, x, y, &n, NULL), RVG_STATUS_BAD_ARGUMENT);
        rvg_loader_free(l);
        rvg_loader_free(NULL);
    }
    rvg_dataset_free(d);
}

/* A corrupt JPEG in a folder set: the worker's error reaches rvg_loader_next with its message. */
static void test_loader_error(void) {
    printf("loader errors\n");
    char root[1024], path[1200], spec[1100];
    snprintf(root, sizeof root, "%s/broken", g_tmp);
    mkdir(root, 0755);
    mkdirf("%s/%s", root, "train");
    mkdirf("%s/train/%s", root, "a");
    uint8_t rgb[8 * 8 * 3];
    ramp_rgb(rgb, 8, 8);
    for (int k = 0; k < 6; k++) {
        snprintf(path, sizeof path, "%s/train/a/%d.png", root, k);
        write_png(path, rgb, 8, 8, 3);
    }
    snprintf(path, sizeof path, "%s/train/a/9.jpg", root);
    write_bytes(path, "\xFF\xD8\xFF\xE0garbage-not-a-jpeg", 22);
    snprintf(spec, sizeof spec, "folder:%s", root);
    rvg_dataset *d = NULL;
    CHECK_OK(rvg_dataset_open(&d, spec, RVG_SPLIT_TRAIN, 0));
    if (!d)
        return;
    rvg_augment a;
    aug_none(&a, 8, 8);
    for (int workers = 0; workers <= 2; workers += 2) {
        rvg_loader *l = NULL;
        CHECK_OK(rvg_loader_new(&l, d, &a, 2, 0, 0, 1, workers, 0, 1));
        if (!l)
            continue;
        float x[2 * 3 * 64];
        int32_t y[2];
        int64_t n;
        rvg_status s = RVG_OK;
        CHECK_OK(rvg_loader_start_epoch(l, 0));
        for (int b = 0; b < 10 && s == RVG_OK; b++) {
            s = rvg_loader_next(l, x, y, &n, NULL);
            if (s == RVG_OK && n == 0)
                break;
        }
        CHECK(s == RVG_STATUS_BAD_FORMAT && strstr(rvg_last_error(), "9.jpg") != NULL);
        printf("  expected error: %s\n", rvg_last_error());
        rvg_loader_free(l);
    }
    rvg_dataset_free(d);
}

/* ---- Fashion-MNIST (when installed) --------------------------------------------------------- */

static void test_fashion(void) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    struct stat st;
    if (stat(dir, &st) != 0) {
        printf("fashion-mnist: not installed, skipped\n");
        return;
    }
    printf("fashion-mnist\n");
    rvg_dataset *tr = NULL, *va = NULL;
    CHECK_OK(rvg_dataset_open(&tr, "fashion-mnist", RVG_SPLIT_TRAIN, 0));
    CHECK_OK(rvg_dataset_open(&va, "fashion-mnist", RVG_SPLIT_VAL, 0));
    if (!tr || !va) {
        rvg_dataset_free(tr);
        rvg_dataset_free(va);
        return;
    }
    CHECK(rvg_dataset_count(tr) == 60000 && rvg_dataset_count(va) == 10000);
    CHECK(rvg_dataset_height(tr) == 28 && rvg_dataset_width(tr) == 28);
    CHECK(rvg_dataset_classes(tr) == 10);
    CHECK(strcmp(rvg_dataset_class_name(tr, 0), "T-shirt/top") == 0);
    CHECK(strcmp(rvg_dataset_class_name(tr, 9), "Ankle boot") == 0);
    int range = 1, hist[10] = {0};
    for (int64_t i = 0; i < 60000; i++) {
        int32_t y = rvg_dataset_label(tr, i);
        range &= y >= 0 && y < 10;
        if (y >= 0 && y < 10)
            hist[y]++;
    }
    for (int64_t i = 0; i < 10000; i++)
        range &= rvg_dataset_label(va, i) >= 0 && rvg_dataset_label(va, i) < 10;
    CHECK(range && hist[0] == 6000 && hist[9] == 6000);
    float mean[1], std[1];
    CHECK_OK(rvg_dataset_stats(tr, 0, mean, std));
    printf("  train mean %.4f std %.4f\n", (double)mean[0], (double)std[0]);
    CHECK(fabsf(mean[0] - 0.2860f) < 2e-3f && fabsf(std[0] - 0.3530f) < 2e-3f);

    /* One epoch through the training pipeline with 2 workers: report the rate. */
    rvg_augment a;
    rvg_augment_defaults(&a, tr, 1);
    a.mean[0] = mean[0];
    a.std[0] = std[0];
    CHECK(a.random_crop_pad == 2 && a.hflip == 1 && a.out_h == 28);
    rvg_loader *l = NULL;
    CHECK_OK(rvg_loader_new(&l, tr, &a, 128, 1, 1, 42, 2, 0, 1));
    if (l) {
        float *x = malloc(128 * 784 * sizeof(float));
        int32_t y[128];
        int64_t n, total = 0;
        double wait = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CHECK_OK(rvg_loader_start_epoch(l, 0));
        while (rvg_loader_next(l, x, y, &n, &wait) == RVG_OK && n > 0)
            total += n;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        printf("  one epoch: %lld samples in %.3f s (%.0f samples/s), waited %.3f s\n",
               (long long)total, sec, (double)total / sec, wait);
        CHECK(total == 468 * 128);
        free(x);
        rvg_loader_free(l);
    }
    rvg_dataset_free(tr);
    rvg_dataset_free(va);
}

/* ---- main ------------------------------------------------------------------------------------ */

static void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        DIR *dp = opendir(path);
        struct dirent *e;
        while (dp && (e = readdir(dp))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[2048];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
        if (dp)
            closedir(dp);
        rmdir(path);
    } else {
        unlink(path);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    (void)rvg_test_max_abs; /* harness helpers this test does not need */
    (void)rvg_test_skip;
    const char *base = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/rvg_test_data_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(g_tmp)) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    test_idx();
    test_cifar();
    test_folder();
    test_augment_small();
    test_random_erasing();
    test_augment_folder();
    test_autoaugment_ops();
    test_loader();
    test_loader_error();
    test_fashion();
    remove_tree(g_tmp);
    return rvg_test_finish();
}
