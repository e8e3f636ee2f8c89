/* safetensors.c - read and write the safetensors format (huggingface/safetensors, format spec).
 *
 * Layout: u64 little-endian header size N, then N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * then the byte buffer the offsets index into. The JSON is parsed with cJSON (Debian libcjson-dev);
 * every number in it is validated before use, since the file may be hostile (the reader is fuzzed).
 * Tensor bytes are little-endian on disk and copied as they are: rvg supports little-endian hosts.
 * This file does not map names or infer architectures; see src/model/ for that.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rvg/io.h"

/* The format caps the header at 100 MB; anything bigger is corrupt. */
#define MAX_HEADER (100u * 1024u * 1024u)

static int get_u64(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item))
        return 0;
    double v = item->valuedouble;
    if (!(v >= 0) || v > 9007199254740992.0 || floor(v) != v) /* exact in a double */
        return 0;
    *out = (uint64_t)v;
    return 1;
}

typedef struct {
    uint64_t begin, end;
} range;

static int cmp_range(const void *a, const void *b) {
    const range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

rvg_status rvg_safetensors_parse(rvg_dict **out, const uint8_t *buf, size_t len) {
    *out = NULL;
    if (len < 8)
        return rvg_error(RVG_STATUS_BAD_FORMAT, "safetensors: file is %zu bytes, too short", len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    if (hlen > MAX_HEADER || hlen > len - 8)
        return rvg_error(RVG_STATUS_BAD_FORMAT,
                         "safetensors: header length %llu does not fit the %zu-byte file "
                         "(truncated or not a safetensors file)",
                         (unsigned long long)hlen, len);
    const uint8_t *data = buf + 8 + hlen;
    uint64_t data_len = len - 8 - hlen;

    cJSON *root = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return rvg_error(RVG_STATUS_BAD_FORMAT, "safetensors: header is not a JSON object");
    }
    rvg_status st = RVG_OK;
    range *ranges = NULL;
    int64_t n_ranges = 0;
    rvg_dict *d = rvg_dict_new();
    int n_items = cJSON_GetArraySize(root);
    ranges = calloc((size_t)n_items + 1, sizeof *ranges);
    if (!d || !ranges) {
        st = rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
        goto fail;
    }
    for (const cJSON *it = root->child; it; it = it->next) {
        const char *name = it->string;
        if (!name) {
            st = rvg_error(RVG_STATUS_BAD_FORMAT, "safetensors: unnamed header entry");
            goto fail;
        }
        if (strcmp(name, "__metadata__") == 0) {
            if (!cJSON_IsObject(it)) {
                st = rvg_error(RVG_STATUS_BAD_FORMAT, "safetensors: __metadata__ is not an object");
                goto fail;
            }
            for (const cJSON *m = it->child; m; m = m->next) {
                if (!cJSON_IsString(m) || !m->string) {
                    st = rvg_error(RVG_STATUS_BAD_FORMAT,
                                   "safetensors: __metadata__ values must be strings");
                    goto fail;
                }
                if ((st = rvg_dict_set_meta(d, m->string, m->valuestring)) != RVG_OK)
                    goto fail;
            }
            continue;
        }
        const cJSON *jt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *jo = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsString(jt) || !cJSON_IsArray(js) || !cJSON_IsArray(jo) ||
            cJSON_GetArraySize(jo) != 2) {
            st = rvg_error(RVG_STATUS_BAD_FORMAT,
                           "safetensors: entry '%s' needs dtype, shape and data_offsets", name);
            goto fail;
        }
        int dt = rvg_dtype_from_name(jt->valuestring);
        if (dt < 0) {
            st = rvg_error(RVG_STATUS_UNSUPPORTED, "safetensors: tensor '%s' has dtype %s", name,
                           jt->valuestring);
            goto fail;
        }
        int ndim = cJSON_GetArraySize(js);
        if (ndim > RVG_MAX_DIMS) {
            st = rvg_error(RVG_STATUS_UNSUPPORTED, "safetensors: tensor '%s' has %d dimensions",
                           name, ndim);
            goto fail;
        }
        int64_t shape[RVG_MAX_DIMS];
        uint64_t numel = 1;
        for (int i = 0; i < ndim; i++) {
            uint64_t v;
            if (!get_u64(cJSON_GetArrayItem(js, i), &v) || v > (1ull << 40)) {
                st = rvg_error(RVG_STATUS_BAD_FORMAT, "safetensors: tensor '%s' has a bad shape",
                               name);
                goto fail;
            }
            shape[i] = (int64_t)v;
            numel = v && numel > (1ull << 40) / v ? (1ull << 41) : numel * v;
        }
        uint64_t b, e;
        if (!get_u64(cJSON_GetArrayItem(jo, 0), &b) || !get_u64(cJSON_GetArrayItem(jo, 1), &e) ||
            b > e || e > data_len) {
            st = rvg_error(RVG_STATUS_BAD_FORMAT,
                           "safetensors: tensor '%s' lies outside the file's %llu data bytes "
                           "(truncated file?)",
                           name, (unsigned long long)data_len);
            goto fail;
        }
        if (numel > (1ull << 40) || e - b != numel * rvg_dtype_size((rvg_dtype)dt)) {
            st = rvg_error(RVG_STATUS_BAD_FORMAT,
                           "safetensors: tensor '%s' has %llu bytes, its shape needs %llu", name,
                           (unsigned long long)(e - b),
                           (unsigned long long)(numel * rvg_dtype_size((rvg_dtype)dt)));
            goto fail;
        }
        ranges[n_ranges].begin = b;
        ranges[n_ranges].end = e;
        n_ranges++;
        if ((st = rvg_dict_add(d, name, (rvg_dtype)dt, ndim, shape, data + b)) != RVG_OK)
            goto fail;
    }
    /* Overlapping ranges would let one tensor alias another: reject them, as the reference
     * implementation does. */
    qsort(ranges, (size_t)n_ranges, sizeof *ranges, cmp_range);
    uint64_t max_end = 0;
    for (int64_t i = 0; i < n_ranges; i++) {
        if (ranges[i].end == ranges[i].begin) /* empty tensors alias nothing */
            continue;
        if (ranges[i].begin < max_end) {
            st = rvg_error(RVG_STATUS_BAD_FORMAT, "safetensors: tensor data ranges overlap");
            goto fail;
        }
        max_end = ranges[i].end;
    }
    free(ranges);
    cJSON_Delete(root);
    *out = d;
    return RVG_OK;
fail:
    free(ranges);
    cJSON_Delete(root);
    rvg_dict_free(d);
    return st;
}

rvg_status rvg_safetensors_load(rvg_dict **out, const char *path) {
    *out = NULL;
    uint8_t *buf;
    size_t len;
    RVG_TRY(rvg_read_file(path, &buf, &len));
    rvg_status st = rvg_safetensors_parse(out, buf, len);
    rvg_free(buf);
    if (st != RVG_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", rvg_last_error());
        return rvg_error(st, "%s: %s", path, msg);
    }
    return RVG_OK;
}

rvg_status rvg_safetensors_save(const rvg_dict *d, const char *path) {
    rvg_status st = RVG_OK;
    FILE *f = NULL;
    char *tmp = NULL, *hjson = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
    if (rvg_dict_meta_count(d) > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int64_t i = 0; meta && i < rvg_dict_meta_count(d); i++) {
            const char *k, *v;
            rvg_dict_meta_at(d, i, &k, &v);
            cJSON_AddStringToObject(meta, k, v);
        }
    }
    uint64_t off = 0;
    for (int64_t i = 0; i < rvg_dict_count(d); i++) {
        const rvg_tensor *t = rvg_dict_at(d, i);
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        if (!e) {
            st = rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
            goto done;
        }
        cJSON_AddStringToObject(e, "dtype", rvg_dtype_name(t->dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int k = 0; k < t->ndim; k++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[k]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + t->nbytes)));
        off += t->nbytes;
    }
    hjson = cJSON_PrintUnformatted(root);
    if (!hjson) {
        st = rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
        goto done;
    }
    size_t hlen = strlen(hjson);
    size_t pad = (8 - hlen % 8) % 8; /* keep the data 8-byte aligned, as the reference writer */
    uint64_t total = hlen + pad;
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(total >> (8 * i));
    if ((st = rvg_atomic_open(path, &f, &tmp)) != RVG_OK)
        goto done;
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(hjson, 1, hlen, f) == hlen &&
             fwrite("        ", 1, pad, f) == pad;
    for (int64_t i = 0; ok && i < rvg_dict_count(d); i++) {
        const rvg_tensor *t = rvg_dict_at(d, i);
        ok = t->nbytes == 0 || fwrite(t->data, 1, t->nbytes, f) == t->nbytes;
    }
    if (!ok) {
        rvg_atomic_abort(f, tmp);
        st = rvg_error(RVG_STATUS_IO, "writing '%s' failed", path);
        goto done;
    }
    st = rvg_atomic_commit(f, tmp, path);
done:
    free(hjson);
    cJSON_Delete(root);
    return st;
}
