/* dataset_cifar.c - CIFAR-10 and CIFAR-100 in their binary distributions.
 *
 * CIFAR-10: data_batch_1.bin .. data_batch_5.bin (train) and test_batch.bin, each a run of
 * 3073-byte records: one label byte, then 1024 red, 1024 green, 1024 blue bytes of a 32x32 image.
 * CIFAR-100: train.bin and test.bin with 3074-byte records: coarse label, fine label, pixels; the
 * fine label (100 classes) is used. The files may sit in DIR or in the subdirectory the archive
 * unpacks to (cifar-10-batches-bin, cifar-100-binary). Pixels are kept in memory as (H, W, C)
 * uint8.
 * Not handled: the Python-pickle distribution.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data_impl.h"

static const char *const CIFAR10_NAMES[10] = {
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
};

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Reads class names, one a line, from path into d->names (missing file: leaves them unset). */
static rvg_status read_names(rvg_dataset *d, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return RVG_OK;
    char *line = NULL; /* getline: a name of any length stays one name */
    size_t cap = 0;
    int64_t k = 0;
    while (k < d->classes && getline(&line, &cap, f) >= 0) {
        size_t n = strcspn(line, "\r\n");
        line[n] = 0;
        if (n == 0)
            continue;
        if (!(d->names[k++] = strdup(line))) {
            free(line);
            fclose(f);
            return rvg_error(RVG_STATUS_NO_MEMORY, "cifar: out of memory");
        }
    }
    free(line);
    fclose(f);
    return RVG_OK;
}

rvg_status rvg__open_cifar(rvg_dataset *d, const char *dir, rvg_split split, int64_t limit,
                           int hundred) {
    const char *what = hundred ? "cifar100" : "cifar10";
    const char *sub = hundred ? "cifar-100-binary" : "cifar-10-batches-bin";
    const char *train10[5] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                              "data_batch_4.bin", "data_batch_5.bin"};
    const char *test10[1] = {"test_batch.bin"};
    const char *train100[1] = {"train.bin"};
    const char *test100[1] = {"test.bin"};
    const char *const *files;
    int nfiles;
    if (hundred) {
        files = split == RVG_SPLIT_TRAIN ? train100 : test100;
        nfiles = 1;
    } else {
        files = split == RVG_SPLIT_TRAIN ? train10 : test10;
        nfiles = split == RVG_SPLIT_TRAIN ? 5 : 1;
    }
    /* DIR itself, or the directory the archive unpacks to. */
    char base[4096], path[4200];
    snprintf(base, sizeof base, "%s", dir);
    snprintf(path, sizeof path, "%s/%s", base, files[0]);
    if (!is_file(path)) {
        snprintf(base, sizeof base, "%s/%s", dir, sub);
        snprintf(path, sizeof path, "%s/%s", base, files[0]);
        if (!is_file(path))
            return rvg_error(RVG_STATUS_IO, "%s: no %s in %s or %s/%s", what, files[0], dir, dir,
                             sub);
    }
    const int64_t px = 32 * 32 * 3;
    const int64_t rec = px + (hundred ? 2 : 1);
    /* Sizes first, so a truncated file is reported before anything is read. */
    int64_t total = 0, per[5];
    for (int f = 0; f < nfiles; f++) {
        snprintf(path, sizeof path, "%s/%s", base, files[f]);
        struct stat st;
        if (stat(path, &st) != 0)
            return rvg_error(RVG_STATUS_IO, "%s: cannot open %s", what, path);
        if (st.st_size == 0 || st.st_size % rec != 0)
            return rvg_error(RVG_STATUS_BAD_FORMAT,
                             "%s: %s has %lld bytes, not a whole number of %lld-byte records "
                             "(truncated?)",
                             what, path, (long long)st.st_size, (long long)rec);
        per[f] = st.st_size / rec;
        total += per[f];
    }
    d->count = (limit > 0 && limit < total) ? limit : total;
    d->h = d->w = 32;
    d->c = 3;
    d->classes = hundred ? 100 : 10;
    d->mirror_ok = 1;
    d->pixels = malloc((size_t)(d->count * px));
    d->labels = malloc((size_t)d->count * sizeof *d->labels);
    d->names = calloc((size_t)d->classes, sizeof *d->names);
    uint8_t *buf = malloc((size_t)rec);
    rvg_status s = RVG_OK;
    if (!d->pixels || !d->labels || !d->names || !buf) {
        s = rvg_error(RVG_STATUS_NO_MEMORY, "%s: out of memory", what);
        goto fail;
    }
    int64_t i = 0;
    for (int f = 0; f < nfiles && i < d->count; f++) {
        snprintf(path, sizeof path, "%s/%s", base, files[f]);
        FILE *fp = fopen(path, "rb");
        if (!fp) {
            s = rvg_error(RVG_STATUS_IO, "%s: cannot open %s", what, path);
            goto fail;
        }
        for (int64_t r = 0; r < per[f] && i < d->count; r++, i++) {
            if (fread(buf, 1, (size_t)rec, fp) != (size_t)rec) {
                fclose(fp);
                s = rvg_error(RVG_STATUS_BAD_FORMAT, "%s: %s: short read at record %lld", what,
                              path, (long long)r);
                goto fail;
            }
            int lab = hundred ? buf[1] : buf[0];
            /* the coarse label is not used, but one outside its 20 classes means a damaged or
             * other file read as CIFAR-100 */
            if (lab >= d->classes || (hundred && buf[0] >= 20)) {
                fclose(fp);
                s = rvg_error(RVG_STATUS_BAD_FORMAT,
                              "%s: %s: record %lld has label %d (of %lld classes)%s", what, path,
                              (long long)r, lab, (long long)d->classes,
                              hundred && buf[0] >= 20 ? " and coarse label >= 20" : "");
                goto fail;
            }
            d->labels[i] = lab;
            /* The file stores planes (C, H, W); the library keeps images (H, W, C). */
            const uint8_t *src = buf + (rec - px);
            uint8_t *dst = d->pixels + i * px;
            for (int p = 0; p < 1024; p++)
                for (int c = 0; c < 3; c++)
                    dst[p * 3 + c] = src[c * 1024 + p];
        }
        fclose(fp);
    }
    snprintf(path, sizeof path, "%s/%s", base,
             hundred ? "fine_label_names.txt" : "batches.meta.txt");
    s = read_names(d, path);
    if (s != RVG_OK)
        goto fail;
    if (!hundred)
        for (int k = 0; k < 10; k++)
            if (!d->names[k] && !(d->names[k] = strdup(CIFAR10_NAMES[k]))) {
                s = rvg_error(RVG_STATUS_NO_MEMORY, "%s: out of memory", what);
                goto fail;
            }
    s = rvg__dataset_number_names(d);
fail:
    free(buf);
    return s;
}
