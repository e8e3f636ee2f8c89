/* pth.c - PyTorch torch.save checkpoints (zip format) -> rvg_dict.
 *
 * The archive is opened with libzip (strict consistency checks on; every entry read to its end so
 * the CRC is verified), data.pkl goes through the restricted unpickler in pickle.c, and each tensor
 * of the chosen state dict is copied out of its storage entry as a contiguous tensor.
 *
 * Not done here: the legacy pre-1.6 format (a bare pickle stream), names (rvg/names.h does that),
 * and memory mapping; storages are read into memory, each at most once. Like the rest of rvg this
 * assumes a little-endian host; a checkpoint whose byteorder entry says "big" is swapped on load.
 *
 * Resource bounds for hostile files: an entry's declared size must agree with its compressed size
 * (stored entries) or stay within deflate's maximum ratio, a tensor may not address more elements
 * than its storage holds, and the tensors of one checkpoint together may not exceed 16 times the
 * storage bytes they come from (tied weights and views are fine; a stride-0 blow-up is not).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zip.h>

#include "io/pickle_impl.h"
#include "rvg/pth.h"

/* Largest uncompressed/compressed ratio deflate can produce (RFC 1951: 258-byte matches from
 * 2-bit codes), plus slack for tiny entries. */
#define DEFLATE_MAX_RATIO 1032u
#define DEFLATE_SLACK 4096u
/* The tensors of a checkpoint may add up to this many times the storage bytes they reference. */
#define MATERIALISE_FACTOR 16u
/* Nested {"model": {"state_dict": ...}} wrappers followed at most this deep. */
#define MAX_WRAPPER_DEPTH 4

typedef struct {
    const char *key; /* borrowed from the pickle */
    uint8_t *data;
    size_t nbytes;
} storage_entry;

typedef struct {
    zip_t *za;
    char prefix[256]; /* the archive's top folder, e.g. "archive" */
    int big_endian;
    storage_entry *st;
    size_t n_st, cap_st;
    size_t storage_bytes, tensor_bytes;
} pth_ctx;

static rvg_status bad(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static rvg_status bad(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rvg_error(RVG_STATUS_BAD_FORMAT, "pth: %s", msg);
}

/* Reads zip entry `idx` whole into a new buffer (free). Checks sizes before allocating and reads
 * past the end so libzip verifies the CRC. */
static rvg_status read_entry(pth_ctx *c, zip_int64_t idx, const char *what, uint8_t **out,
                             size_t *n) {
    *out = NULL;
    *n = 0;
    zip_stat_t zs;
    zip_stat_init(&zs);
    if (zip_stat_index(c->za, (zip_uint64_t)idx, 0, &zs) != 0)
        return bad("cannot stat '%s': %s", what, zip_strerror(c->za));
    zip_uint64_t need = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD;
    if ((zs.valid & need) != need)
        return bad("'%s': the archive does not record its size", what);
    if ((zs.valid & ZIP_STAT_ENCRYPTION_METHOD) && zs.encryption_method != ZIP_EM_NONE)
        return bad("'%s' is encrypted", what);
    if (zs.comp_method == ZIP_CM_STORE ? zs.size != zs.comp_size
                                       : zs.size / DEFLATE_MAX_RATIO > zs.comp_size + DEFLATE_SLACK)
        return bad("'%s': implausible size %llu for %llu stored bytes", what,
                   (unsigned long long)zs.size, (unsigned long long)zs.comp_size);
    if (zs.size >= SIZE_MAX / 2)
        return bad("'%s' is too large", what);
    size_t len = (size_t)zs.size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return rvg_error(RVG_STATUS_NO_MEMORY, "pth: out of memory for '%s' (%zu bytes)", what,
                         len);
    zip_file_t *f = zip_fopen_index(c->za, (zip_uint64_t)idx, 0);
    if (!f) {
        free(buf);
        return bad("cannot open '%s': %s", what, zip_strerror(c->za));
    }
    size_t got = 0;
    while (got < len) {
        zip_int64_t r = zip_fread(f, buf + got, len - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    uint8_t extra;
    zip_int64_t tail = got == len ? zip_fread(f, &extra, 1) : -1; /* EOF triggers the CRC check */
    char err[160];
    snprintf(err, sizeof err, "%s", zip_file_strerror(f));
    int close_err = zip_fclose(f);
    if (got != len || tail != 0 || close_err != 0) {
        free(buf);
        return bad("reading '%s' failed after %zu of %zu bytes: %s", what, got, len,
                   tail < 0 || got != len ? err : "entry longer than recorded");
    }
    *out = buf;
    *n = len;
    return RVG_OK;
}

static zip_int64_t locate(pth_ctx *c, const char *sub) {
    char name[512];
    int k = c->prefix[0] ? snprintf(name, sizeof name, "%s/%s", c->prefix, sub)
                         : snprintf(name, sizeof name, "%s", sub);
    if (k < 0 || (size_t)k >= sizeof name)
        return -1;
    return zip_name_locate(c->za, name, ZIP_FL_ENC_RAW);
}

/* Finds "<prefix>/data.pkl" (the prefix is one folder; torch uses the file's stem or "archive"). */
static rvg_status find_prefix(pth_ctx *c, zip_int64_t *pkl) {
    zip_int64_t n = zip_get_num_entries(c->za, 0);
    for (zip_int64_t i = 0; i < n; i++) {
        const char *name = zip_get_name(c->za, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
        if (!name)
            continue;
        size_t len = strlen(name);
        if (len < 8 || strcmp(name + len - 8, "data.pkl") != 0)
            continue;
        size_t plen = len == 8 ? 0 : len - 9;
        if (len > 8 && name[plen] != '/')
            continue;
        if (plen >= sizeof c->prefix || memchr(name, '/', plen))
            continue;
        memcpy(c->prefix, name, plen);
        c->prefix[plen] = '\0';
        *pkl = i;
        return RVG_OK;
    }
    return bad("no <folder>/data.pkl in the archive: not a torch.save checkpoint");
}

static void byteswap(uint8_t *p, size_t nbytes, size_t esize) {
    for (size_t i = 0; i + esize <= nbytes; i += esize)
        for (size_t a = 0, b = esize - 1; a < b; a++, b--) {
            uint8_t t = p[i + a];
            p[i + a] = p[i + b];
            p[i + b] = t;
        }
}

/* The bytes of storage `s`, read from <prefix>/data/<key> on first use. */
static rvg_status get_storage(pth_ctx *c, const rvg__pk_value *s, const uint8_t **data) {
    size_t esize = rvg_dtype_size(s->dtype);
    for (size_t i = 0; i < c->n_st; i++) {
        if (strcmp(c->st[i].key, s->key) == 0) {
            if (c->st[i].nbytes / esize != (size_t)s->numel || c->st[i].nbytes % esize)
                return bad("storage '%s' is referenced with two different sizes", s->key);
            *data = c->st[i].data;
            return RVG_OK;
        }
    }
    char sub[300];
    snprintf(sub, sizeof sub, "data/%s", s->key);
    zip_int64_t idx = locate(c, sub);
    if (idx < 0)
        return bad("storage '%s/%s' is missing from the archive", c->prefix, sub);
    if (c->n_st == c->cap_st) {
        size_t cap = c->cap_st ? c->cap_st * 2 : 64;
        storage_entry *st = realloc(c->st, cap * sizeof *st);
        if (!st)
            return rvg_error(RVG_STATUS_NO_MEMORY, "pth: out of memory");
        c->st = st;
        c->cap_st = cap;
    }
    storage_entry e = {s->key, NULL, 0};
    RVG_TRY(read_entry(c, idx, sub, &e.data, &e.nbytes));
    if ((uint64_t)s->numel > SIZE_MAX / esize || e.nbytes != (size_t)s->numel * esize) {
        free(e.data);
        return bad("storage '%s/%s' holds %zu bytes, but the pickle declares %lld elements of "
                   "%zu bytes",
                   c->prefix, sub, e.nbytes, (long long)s->numel, esize);
    }
    if (c->big_endian)
        byteswap(e.data, e.nbytes, esize);
    c->st[c->n_st++] = e;
    c->storage_bytes += e.nbytes;
    *data = e.data;
    return RVG_OK;
}

/* Copies tensor t (a strided view into its storage) into d as a contiguous tensor `name`. */
static rvg_status materialise(pth_ctx *c, rvg_dict *d, const char *name, const rvg__pk_value *t) {
    const uint8_t *src = NULL;
    RVG_TRY(get_storage(c, t->storage, &src));
    size_t esize = rvg_dtype_size(t->dtype);
    int64_t numel = 1;
    for (int i = 0; i < t->ndim; i++)
        numel *= t->shape[i]; /* overflow was ruled out by the unpickler */
    if (numel > t->storage->numel)
        return rvg_error(RVG_STATUS_UNSUPPORTED,
                         "pth: tensor '%s' has %lld elements but its storage only %lld (an "
                         "expanded, overlapping view); save t.contiguous() instead",
                         name, (long long)numel, (long long)t->storage->numel);
    size_t nbytes = (size_t)numel * esize;
    c->tensor_bytes += nbytes;
    if (c->tensor_bytes / MATERIALISE_FACTOR > c->storage_bytes)
        return bad("tensors add up to more than %u times their storage bytes", MATERIALISE_FACTOR);

    /* A repeated key: the later value wins, as in the Python dict the pickle describes. */
    rvg_dict_remove(d, name);
    RVG_TRY(rvg_dict_add(d, name, t->dtype, t->ndim, t->shape, NULL));
    uint8_t *dst = rvg_dict_get(d, name)->data;
    if (!numel)
        return RVG_OK;

    int contiguous = 1;
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expect)
            contiguous = 0;
        expect *= t->shape[i];
    }
    if (contiguous) {
        memcpy(dst, src + (size_t)t->offset * esize, nbytes);
        return RVG_OK;
    }
    /* Walk the view in C order with an odometer over the indices; the unpickler checked that the
     * largest address stays inside the storage, so every address on the way does too. */
    int64_t idx[RVG_MAX_DIMS] = {0}, stride[RVG_MAX_DIMS];
    for (int k = 0; k < t->ndim; k++)
        stride[k] = t->shape[k] == 1 ? 0 : t->stride[k]; /* a size-1 dim's stride is arbitrary */
    int64_t at = t->offset;
    for (int64_t e = 0; e < numel; e++) {
        memcpy(dst + (size_t)e * esize, src + (size_t)at * esize, esize);
        for (int k = t->ndim - 1; k >= 0; k--) {
            at += stride[k];
            if (++idx[k] < t->shape[k])
                break;
            at -= stride[k] * t->shape[k];
            idx[k] = 0;
        }
    }
    return RVG_OK;
}

/* Picks the dict of tensors: the top level, or what a {"state_dict": ...} / {"model": ...}
 * wrapper holds. */
static rvg_status pick_state_dict(const rvg__pk_value *root, const rvg__pk_value **sd) {
    const rvg__pk_value *d = root;
    if (d->kind != RVG__PK_DICT)
        return bad("the checkpoint holds a %s, not a dict of tensors",
                   d->kind == RVG__PK_LIST     ? "list"
                   : d->kind == RVG__PK_TENSOR ? "single tensor"
                                               : "non-dict");
    for (int depth = 0; depth < MAX_WRAPPER_DEPTH; depth++) {
        const rvg__pk_value *inner = rvg__pk_dict_get(d, "state_dict");
        if (!inner || inner->kind != RVG__PK_DICT)
            inner = rvg__pk_dict_get(d, "model");
        if (!inner || inner->kind != RVG__PK_DICT)
            break;
        d = inner;
    }
    *sd = d;
    return RVG_OK;
}

static rvg_status load_archive(rvg_dict **out, zip_t *za) {
    pth_ctx c = {0};
    c.za = za;
    rvg__pk *pk = NULL;
    rvg__pk_value *root = NULL;
    uint8_t *pkl = NULL;
    size_t pkl_len = 0;
    rvg_dict *d = NULL;
    rvg_status st;
    zip_int64_t pkl_idx = -1;

    if ((st = find_prefix(&c, &pkl_idx)) != RVG_OK)
        goto fail;
    zip_int64_t bo = locate(&c, "byteorder");
    if (bo >= 0) {
        uint8_t *b = NULL;
        size_t n = 0;
        if ((st = read_entry(&c, bo, "byteorder", &b, &n)) != RVG_OK)
            goto fail;
        int little = n == 6 && memcmp(b, "little", 6) == 0;
        c.big_endian = n == 3 && memcmp(b, "big", 3) == 0;
        free(b);
        if (!little && !c.big_endian) {
            st = bad("byteorder entry is neither 'little' nor 'big'");
            goto fail;
        }
    }
    if ((st = read_entry(&c, pkl_idx, "data.pkl", &pkl, &pkl_len)) != RVG_OK)
        goto fail;
    if ((st = rvg__pickle_load(&pk, &root, pkl, pkl_len)) != RVG_OK)
        goto fail;
    const rvg__pk_value *sd = NULL;
    if ((st = pick_state_dict(root, &sd)) != RVG_OK)
        goto fail;
    if (!(d = rvg_dict_new())) {
        st = rvg_error(RVG_STATUS_NO_MEMORY, "pth: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < sd->len; i++) {
        const rvg__pk_value *k = sd->items[2 * i], *v = sd->items[2 * i + 1];
        /* Skip what is not a named tensor: epoch counters, config strings, optimizer state. */
        if (k->kind != RVG__PK_STR || v->kind != RVG__PK_TENSOR)
            continue;
        if (memchr(k->s, '\0', k->len)) {
            st = bad("a tensor name contains a NUL byte");
            goto fail;
        }
        if ((st = materialise(&c, d, k->s, v)) != RVG_OK)
            goto fail;
    }
    if (rvg_dict_count(d) == 0) {
        st = bad("no tensors found (expected a state dict, possibly under 'state_dict' or "
                 "'model')");
        goto fail;
    }
    *out = d;
    d = NULL;
    st = RVG_OK;
fail:
    rvg_dict_free(d);
    rvg__pickle_free(pk);
    free(pkl);
    for (size_t i = 0; i < c.n_st; i++)
        free(c.st[i].data);
    free(c.st);
    return st;
}

/* A bare pickle stream (starts with PROTO) is the pre-1.6 format. */
static rvg_status not_a_zip(const uint8_t *head, size_t n, zip_error_t *ze) {
    if (n >= 2 && head[0] == 0x80 && head[1] <= 5)
        return rvg_error(RVG_STATUS_UNSUPPORTED,
                         "pth: legacy (pre-1.6) torch.save format; re-save it with a newer "
                         "PyTorch (torch.save(torch.load(f), g))");
    return bad("not a readable zip archive: %s", zip_error_strerror(ze));
}

rvg_status rvg_pth_parse(rvg_dict **out, const uint8_t *buf, size_t len) {
    *out = NULL;
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(len ? buf : NULL, len, 0, &ze);
    if (!src) {
        zip_error_fini(&ze);
        return rvg_error(RVG_STATUS_NO_MEMORY, "pth: out of memory");
    }
    zip_t *za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
    if (!za) {
        zip_source_free(src);
        rvg_status st = not_a_zip(buf, len, &ze);
        zip_error_fini(&ze);
        return st;
    }
    zip_error_fini(&ze);
    rvg_status st = load_archive(out, za);
    zip_discard(za); /* also frees src */
    return st;
}

rvg_status rvg_pth_load(rvg_dict **out, const char *path) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return rvg_error(RVG_STATUS_IO, "pth: cannot open '%s'", path);
    uint8_t head[2] = {0, 0};
    size_t nhead = fread(head, 1, sizeof head, f);
    fclose(f);
    int zerr = 0;
    rvg_status st;
    zip_t *za = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
    if (za) {
        st = load_archive(out, za);
        zip_discard(za);
    } else {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        st = zerr == ZIP_ER_OPEN || zerr == ZIP_ER_NOENT
                 ? rvg_error(RVG_STATUS_IO, "pth: cannot open: %s", zip_error_strerror(&ze))
                 : not_a_zip(head, nhead, &ze);
        zip_error_fini(&ze);
    }
    if (st != RVG_OK) {
        char msg[640];
        snprintf(msg, sizeof msg, "%s", rvg_last_error());
        rvg_error(st, "%s (in '%s')", msg, path);
    }
    return st;
}
