/* fuzz_pickle.c - libFuzzer target for the PyTorch checkpoint reader.
 *
 * Each input goes through three paths:
 *   1. rvg_pth_parse on the bytes as they are (libzip, the unpickler, materialisation, names);
 *   2. the raw unpickler alone, so a bare pickle reaches the opcode handlers directly;
 *   3. when the bytes unpickle, a zip is built around them as archive/data.pkl with every storage
 *      they reference present at its declared size, and that goes through rvg_pth_parse. A mutated
 *      zip rarely survives its CRC checks, so without this path the fuzzer would seldom reach
 * tensor materialisation (offsets, strides, dtypes, wrappers, duplicate keys). Any status is fine;
 * a crash, a sanitizer report, a leak, or a broken API contract (*out set on failure, an empty
 * dictionary on success, nbytes disagreeing with shape and dtype) is not.
 *
 * Built by fuzz/fuzz.cmake (RVG_FUZZ=ON, clang); run with fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zip.h>

#include "io/pickle_impl.h"
#include "rvg/names.h"
#include "rvg/pth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STORAGES 16
#define MAX_STORAGE_BYTES 65536 /* keeps one execution cheap; larger declarations are skipped */

static void check_result(rvg_status s, rvg_dict *d) {
    if ((s == RVG_OK) != (d != NULL))
        __builtin_trap();
    if (!d)
        return;
    if (rvg_dict_count(d) < 1)
        __builtin_trap();
    /* Read every byte so ASan sees any tensor whose nbytes overstates its buffer. */
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < rvg_dict_count(d); i++) {
        const rvg_tensor *t = rvg_dict_at(d, i);
        if (t->nbytes != (size_t)rvg_tensor_numel(t) * rvg_dtype_size(t->dtype))
            __builtin_trap();
        for (size_t b = 0; b < t->nbytes; b++)
            sink ^= ((const uint8_t *)t->data)[b];
    }
    (void)sink;
    int timm = 0;
    (void)rvg_names_normalize(d, &timm);
    rvg_dict_free(d);
}

typedef struct {
    const rvg__pk_value *st[MAX_STORAGES];
    int n;
    int budget; /* nodes left to visit: the value graph can share and even contain itself */
} storages;

static void collect(storages *acc, const rvg__pk_value *v, int depth) {
    if (!v || depth > 8 || acc->budget-- <= 0)
        return;
    if (v->kind == RVG__PK_TENSOR)
        v = v->storage;
    if (v->kind == RVG__PK_STORAGE) {
        for (int i = 0; i < acc->n; i++)
            if (strcmp(acc->st[i]->key, v->key) == 0)
                return;
        if (acc->n < MAX_STORAGES)
            acc->st[acc->n++] = v;
        return;
    }
    size_t n = v->kind == RVG__PK_DICT                                 ? 2 * v->len
               : (v->kind == RVG__PK_TUPLE || v->kind == RVG__PK_LIST) ? v->len
                                                                       : 0;
    for (size_t i = 0; i < n; i++)
        collect(acc, v->items[i], depth + 1);
}

/* Builds an in-memory zip holding pkl as archive/data.pkl plus the storages; returns a malloc'd
 * image or NULL. */
static uint8_t *build_zip(const uint8_t *pkl, size_t len, const storages *acc, size_t *out_len) {
    zip_error_t ze;
    zip_error_init(&ze);
    uint8_t *image = NULL;
    zip_source_t *mem = zip_source_buffer_create(NULL, 0, 0, &ze);
    if (!mem)
        goto done;
    zip_source_keep(mem);
    zip_t *za = zip_open_from_source(mem, ZIP_TRUNCATE, &ze);
    if (!za) {
        zip_source_free(mem);
        mem = NULL;
        goto done;
    }
    zip_source_t *s = zip_source_buffer(za, pkl, len, 0);
    if (!s || zip_file_add(za, "archive/data.pkl", s, 0) < 0) {
        zip_source_free(s);
        zip_discard(za);
        goto done;
    }
    for (int i = 0; i < acc->n; i++) {
        size_t esize = rvg_dtype_size(acc->st[i]->dtype);
        if (acc->st[i]->numel > MAX_STORAGE_BYTES / (int64_t)esize)
            continue; /* left out: the loader reports it missing */
        size_t nbytes = (size_t)acc->st[i]->numel * esize;
        /* An empty storage gets no buffer: libzip does not take ownership of one for a
         * zero-length source, and the 1-byte malloc handed over here leaked (LeakSanitizer,
         * fuzz run of 2026-12-02, a storage of 0 elements). */
        uint8_t *raw = nbytes ? malloc(nbytes) : NULL;
        if (nbytes && !raw)
            continue;
        for (size_t b = 0; b < nbytes; b++)
            raw[b] = (uint8_t)(b * 37u + (unsigned)i);
        char name[300];
        snprintf(name, sizeof name, "archive/data/%s", acc->st[i]->key);
        zip_source_t *rs = zip_source_buffer(za, raw, nbytes, raw != NULL); /* takes raw */
        if (!rs) {
            free(raw);
            continue;
        }
        zip_int64_t idx = zip_file_add(za, name, rs, ZIP_FL_ENC_RAW);
        if (idx < 0)
            zip_source_free(rs);
        else
            zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0);
    }
    if (zip_close(za) < 0) {
        zip_discard(za);
        goto done;
    }
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_source_stat(mem, &st) < 0 || !(st.valid & ZIP_STAT_SIZE) || zip_source_open(mem) < 0)
        goto done;
    image = malloc(st.size ? st.size : 1);
    if (image && zip_source_read(mem, image, st.size) != (zip_int64_t)st.size) {
        free(image);
        image = NULL;
    }
    zip_source_close(mem);
    *out_len = (size_t)st.size;
done:
    if (mem)
        zip_source_free(mem);
    zip_error_fini(&ze);
    return image;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rvg_dict *d = NULL;
    rvg_status s = rvg_pth_parse(&d, data, size);
    check_result(s, d);

    rvg__pk *pk = NULL;
    rvg__pk_value *root = NULL;
    s = rvg__pickle_load(&pk, &root, data, size);
    if ((s == RVG_OK) != (pk != NULL && root != NULL))
        __builtin_trap();
    if (!root)
        return 0;
    storages acc = {.n = 0, .budget = 10000};
    collect(&acc, root, 0);
    size_t zlen = 0;
    uint8_t *zip = build_zip(data, size, &acc, &zlen);
    rvg__pickle_free(pk); /* after build_zip: the storage keys live in the unpickler's values */
    if (zip) {
        d = NULL;
        s = rvg_pth_parse(&d, zip, zlen);
        check_result(s, d);
        free(zip);
    }
    return 0;
}
