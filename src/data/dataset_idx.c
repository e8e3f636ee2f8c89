/* dataset_idx.c - MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST), gzip-compressed or raw.
 *
 * An IDX file is a big-endian header (two zero bytes, a type byte 0x08 = unsigned byte, the number
 * of dimensions) followed by one uint32 per dimension and the data. Images are (N, 28, 28) in
 * train-images-idx3-ubyte, labels (N) in train-labels-idx1-ubyte; the test split is t10k-*. zlib's
 * gzread reads raw files as they are, so the ".gz" suffix is all that differs. Every image stays in
 * memory as uint8 (47 MB for 60000 28x28 images): decoding then costs nothing at training time.
 * Not handled: IDX types other than unsigned byte (MNIST never uses them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/data_impl.h"

static const char *const FASHION_NAMES[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

/* Finds the first existing file of the spellings of `kind` ("images-idx3", "labels-idx1") for the
 * split; writes it to path. */
static rvg_status find_file(char *path, size_t cap, const char *dir, const char *split,
                            const char *kind) {
    /* "train-images-idx3-ubyte" is the canonical name, "train-images.idx3-ubyte" how some archives
     * unpack; each with or without .gz. */
    char alt[64];
    snprintf(alt, sizeof alt, "%s", kind);
    char *dash = strchr(alt, '-');
    if (dash)
        *dash = '.';
    const char *forms[2] = {kind, alt};
    const char *suffix[2] = {".gz", ""};
    for (int f = 0; f < 2; f++)
        for (int z = 0; z < 2; z++) {
            snprintf(path, cap, "%s/%s-%s-ubyte%s", dir, split, forms[f], suffix[z]);
            FILE *fp = fopen(path, "rb");
            if (fp) {
                fclose(fp);
                return RVG_OK;
            }
        }
    return rvg_error(RVG_STATUS_IO,
                     "idx: no %s %s file in %s (looked for %s-%s-ubyte[.gz] and %s-%s-ubyte[.gz])",
                     split, kind, dir, split, kind, split, alt);
}

/* Reads exactly n bytes or fails naming the file. */
static rvg_status read_exact(gzFile g, void *buf, size_t n, const char *path, const char *what) {
    size_t got = 0;
    while (got < n) {
        unsigned chunk = (n - got) > (1u << 30) ? (1u << 30) : (unsigned)(n - got);
        int r = gzread(g, (uint8_t *)buf + got, chunk);
        if (r < 0) {
            int errnum;
            const char *msg = gzerror(g, &errnum);
            return rvg_error(RVG_STATUS_BAD_FORMAT, "idx: %s: reading %s: %s", path, what, msg);
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (got != n)
        return rvg_error(RVG_STATUS_BAD_FORMAT,
                         "idx: %s is truncated: expected %zu bytes of %s, found %zu", path, n, what,
                         got);
    return RVG_OK;
}

/* Opens path and parses its header: type must be unsigned byte with `ndim` dimensions. */
static rvg_status open_idx(gzFile *out, const char *path, int ndim, uint32_t *dims) {
    gzFile g = gzopen(path, "rb");
    if (!g)
        return rvg_error(RVG_STATUS_IO, "idx: cannot open %s", path);
    uint8_t hdr[4 + 4 * 3];
    rvg_status s = read_exact(g, hdr, 4 + 4 * (size_t)ndim, path, "the header");
    if (s != RVG_OK) {
        gzclose(g);
        return s;
    }
    uint32_t magic =
        (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    uint32_t want = 0x800u | (uint32_t)ndim;
    if (magic != want) {
        gzclose(g);
        return rvg_error(RVG_STATUS_BAD_FORMAT,
                         "idx: %s has magic 0x%08x, expected 0x%08x (unsigned bytes, %d dims)",
                         path, magic, want, ndim);
    }
    for (int k = 0; k < ndim; k++) {
        const uint8_t *p = hdr + 4 + 4 * k;
        dims[k] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    }
    *out = g;
    return RVG_OK;
}

rvg_status rvg__open_idx(rvg_dataset *d, const char *dir, rvg_split split, int64_t limit,
                         int fashion) {
    const char *sp = split == RVG_SPLIT_TRAIN ? "train" : "t10k";
    char ipath[4096], lpath[4096];
    RVG_TRY(find_file(ipath, sizeof ipath, dir, sp, "images-idx3"));
    RVG_TRY(find_file(lpath, sizeof lpath, dir, sp, "labels-idx1"));

    gzFile gi = NULL, gl = NULL;
    uint8_t *lab = NULL;
    uint32_t idims[3] = {0}, ldims[1] = {0};
    rvg_status s = open_idx(&gi, ipath, 3, idims);
    if (s != RVG_OK)
        goto fail;
    s = open_idx(&gl, lpath, 1, ldims);
    if (s != RVG_OK)
        goto fail;
    if (idims[0] != ldims[0]) {
        s = rvg_error(RVG_STATUS_BAD_FORMAT, "idx: %s holds %u images but %s holds %u labels",
                      ipath, idims[0], lpath, ldims[0]);
        goto fail;
    }
    if (idims[0] == 0 || idims[1] == 0 || idims[2] == 0 || idims[1] > 4096 || idims[2] > 4096) {
        s = rvg_error(RVG_STATUS_BAD_FORMAT, "idx: %s has implausible shape (%u, %u, %u)", ipath,
                      idims[0], idims[1], idims[2]);
        goto fail;
    }
    /* An uncompressed file's size bounds what its header may claim (a count of 4294967295 would
     * otherwise read as "out of memory"); a gzip stream is checked as it is read. */
    struct stat sb;
    const int64_t need = 16 + (int64_t)idims[0] * idims[1] * idims[2];
    if (gzdirect(gi) && stat(ipath, &sb) == 0 && (int64_t)sb.st_size < need) {
        s = rvg_error(RVG_STATUS_BAD_FORMAT,
                      "idx: %s claims %u images of %ux%u (%lld bytes) but holds %lld bytes", ipath,
                      idims[0], idims[1], idims[2], (long long)need, (long long)sb.st_size);
        goto fail;
    }
    int64_t total = idims[0];
    d->count = (limit > 0 && limit < total) ? limit : total;
    d->h = idims[1];
    d->w = idims[2];
    d->c = 1;
    lab = malloc((size_t)total);
    d->labels = malloc((size_t)d->count * sizeof *d->labels);
    d->pixels = malloc((size_t)(d->count * d->h * d->w));
    if (!lab || !d->labels || !d->pixels) {
        s = rvg_error(RVG_STATUS_NO_MEMORY, "idx: out of memory for %lld images",
                      (long long)d->count);
        goto fail;
    }
    /* All labels are read even under a limit, so the class count does not depend on the limit. */
    s = read_exact(gl, lab, (size_t)total, lpath, "the labels");
    if (s != RVG_OK)
        goto fail;
    s = read_exact(gi, d->pixels, (size_t)(d->count * d->h * d->w), ipath, "the images");
    if (s != RVG_OK)
        goto fail;
    int maxl = 0;
    for (int64_t i = 0; i < total; i++)
        maxl = lab[i] > maxl ? lab[i] : maxl;
    for (int64_t i = 0; i < d->count; i++)
        d->labels[i] = lab[i];
    d->classes = fashion ? 10 : maxl + 1;
    if (fashion && maxl >= 10) {
        s = rvg_error(RVG_STATUS_BAD_FORMAT, "idx: %s has label %d; Fashion-MNIST has 10 classes",
                      lpath, maxl);
        goto fail;
    }
    d->names = calloc((size_t)d->classes, sizeof *d->names);
    if (!d->names) {
        s = rvg_error(RVG_STATUS_NO_MEMORY, "idx: out of memory");
        goto fail;
    }
    if (fashion)
        for (int k = 0; k < 10; k++)
            if (!(d->names[k] = strdup(FASHION_NAMES[k]))) {
                s = rvg_error(RVG_STATUS_NO_MEMORY, "idx: out of memory");
                goto fail;
            }
    s = rvg__dataset_number_names(d);
    if (s != RVG_OK)
        goto fail;
    /* A mirrored shirt is a shirt; a mirrored digit is not a digit. */
    d->mirror_ok = fashion;
fail:
    if (gi)
        gzclose(gi);
    if (gl)
        gzclose(gl);
    free(lab);
    return s;
}
