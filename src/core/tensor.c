/* tensor.c - dtypes, half-precision conversion and the ordered tensor dictionary (rvg_dict).
 *
 * The dictionary is a growable array with linear lookup: weight files hold a few hundred tensors
 * and lookups happen at load time only, so a hash table would buy nothing measurable.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rvg/tensor.h"

struct rvg_dict {
    rvg_tensor *items;
    int64_t count, cap;
    char **meta_keys, **meta_vals;
    int64_t n_meta, meta_cap;
};

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [RVG_DTYPE_F32] = {"F32", 4}, [RVG_DTYPE_F64] = {"F64", 8}, [RVG_DTYPE_F16] = {"F16", 2},
    [RVG_DTYPE_BF16] = {"BF16", 2}, [RVG_DTYPE_I64] = {"I64", 8}, [RVG_DTYPE_I32] = {"I32", 4},
    [RVG_DTYPE_U8] = {"U8", 1},
};
#define N_DTYPES ((int)(sizeof dtype_info / sizeof dtype_info[0]))

size_t rvg_dtype_size(rvg_dtype t) { return (int)t < N_DTYPES ? dtype_info[t].size : 0; }

const char *rvg_dtype_name(rvg_dtype t) { return (int)t < N_DTYPES ? dtype_info[t].name : "?"; }

int rvg_dtype_from_name(const char *name) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(dtype_info[i].name, name) == 0)
            return i;
    return -1;
}

int64_t rvg_tensor_numel(const rvg_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

/* IEEE 754 binary16 -> binary32, exact (every half is representable as a float). */
float rvg_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: value = man * 2^-24 */
            float v = (float)man * 5.9604644775390625e-8f;
            return sign ? -v : v;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* binary32 -> binary16, round to nearest even, overflow to infinity. */
uint16_t rvg_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* subnormal half or zero: scale so rounding happens in the FPU */
        float a;
        memcpy(&a, &ax, 4);
        return (uint16_t)(sign | (uint16_t)lrintf(a * 16777216.0f));
    }
    uint32_t mant = ax + 0xc8000fffu + ((ax >> 13) & 1); /* rebias exponent, round to even */
    return (uint16_t)(sign | (mant >> 13));
}

float rvg_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

rvg_dict *rvg_dict_new(void) { return calloc(1, sizeof(rvg_dict)); }

void rvg_dict_free(rvg_dict *d) {
    if (!d)
        return;
    for (int64_t i = 0; i < d->count; i++) {
        free(d->items[i].name);
        rvg_free(d->items[i].data);
    }
    for (int64_t i = 0; i < d->n_meta; i++) {
        free(d->meta_keys[i]);
        free(d->meta_vals[i]);
    }
    free(d->items);
    free(d->meta_keys);
    free(d->meta_vals);
    free(d);
}

static int64_t find(const rvg_dict *d, const char *name) {
    for (int64_t i = 0; i < d->count; i++)
        if (strcmp(d->items[i].name, name) == 0)
            return i;
    return -1;
}

rvg_status rvg_dict_add(rvg_dict *d, const char *name, rvg_dtype dtype, int ndim,
                        const int64_t *shape, const void *data) {
    if (ndim < 0 || ndim > RVG_MAX_DIMS)
        return rvg_error(RVG_STATUS_BAD_SHAPE, "tensor '%s': %d dimensions (at most %d)", name,
                         ndim, RVG_MAX_DIMS);
    if (find(d, name) >= 0)
        return rvg_error(RVG_STATUS_BAD_NAME, "tensor '%s' appears twice", name);
    if (d->count == d->cap) {
        int64_t cap = d->cap ? d->cap * 2 : 64;
        rvg_tensor *items = realloc(d->items, (size_t)cap * sizeof *items);
        if (!items)
            return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory growing a tensor dictionary");
        d->items = items;
        d->cap = cap;
    }
    rvg_tensor t = {0};
    t.dtype = dtype;
    t.ndim = ndim;
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return rvg_error(RVG_STATUS_BAD_SHAPE, "tensor '%s': negative dimension", name);
        t.shape[i] = shape[i];
        if (shape[i] && numel > INT64_MAX / shape[i])
            return rvg_error(RVG_STATUS_BAD_SHAPE, "tensor '%s': shape too large", name);
        numel *= shape[i];
    }
    t.nbytes = (size_t)numel * rvg_dtype_size(dtype);
    t.name = strdup(name);
    t.data = rvg_alloc(t.nbytes);
    if (!t.name || !t.data) {
        free(t.name);
        rvg_free(t.data);
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory for tensor '%s' (%zu bytes)", name,
                         t.nbytes);
    }
    if (data && t.nbytes)
        memcpy(t.data, data, t.nbytes);
    d->items[d->count++] = t;
    return RVG_OK;
}

rvg_status rvg_dict_add_f32(rvg_dict *d, const char *name, int ndim, const int64_t *shape,
                            const float *data) {
    return rvg_dict_add(d, name, RVG_DTYPE_F32, ndim, shape, data);
}

const rvg_tensor *rvg_dict_get(const rvg_dict *d, const char *name) {
    int64_t i = find(d, name);
    return i < 0 ? NULL : &d->items[i];
}

int64_t rvg_dict_count(const rvg_dict *d) { return d->count; }

const rvg_tensor *rvg_dict_at(const rvg_dict *d, int64_t i) {
    return i >= 0 && i < d->count ? &d->items[i] : NULL;
}

rvg_status rvg_dict_rename(rvg_dict *d, int64_t i, const char *new_name) {
    if (i < 0 || i >= d->count)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rename: index %lld out of range", (long long)i);
    int64_t j = find(d, new_name);
    if (j >= 0 && j != i)
        return rvg_error(RVG_STATUS_BAD_NAME, "rename '%s' -> '%s': name already present",
                         d->items[i].name, new_name);
    char *s = strdup(new_name);
    if (!s)
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
    free(d->items[i].name);
    d->items[i].name = s;
    return RVG_OK;
}

int rvg_dict_remove(rvg_dict *d, const char *name) {
    int64_t i = find(d, name);
    if (i < 0)
        return 0;
    free(d->items[i].name);
    rvg_free(d->items[i].data);
    memmove(&d->items[i], &d->items[i + 1], (size_t)(d->count - i - 1) * sizeof *d->items);
    d->count--;
    return 1;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    int off = snprintf(buf, n, "(");
    for (int i = 0; i < ndim && off < (int)n; i++)
        off += snprintf(buf + off, n - (size_t)off, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (off < (int)n)
        snprintf(buf + off, n - (size_t)off, ")");
}

rvg_status rvg_dict_get_f32(const rvg_dict *d, const char *name, int ndim, const int64_t *shape,
                            float **out) {
    *out = NULL;
    const rvg_tensor *t = rvg_dict_get(d, name);
    if (!t)
        return rvg_error(RVG_STATUS_BAD_NAME, "tensor '%s' is missing", name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char want[160], got[160];
        shape_str(want, sizeof want, ndim, shape);
        shape_str(got, sizeof got, t->ndim, t->shape);
        return rvg_error(RVG_STATUS_BAD_SHAPE, "tensor '%s' has shape %s, expected %s", name, got,
                         want);
    }
    int64_t n = rvg_tensor_numel(t);
    float *f = rvg_alloc((size_t)n * sizeof(float));
    if (!f)
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory for tensor '%s'", name);
    switch (t->dtype) {
    case RVG_DTYPE_F32: memcpy(f, t->data, (size_t)n * 4); break;
    case RVG_DTYPE_F64:
        for (int64_t i = 0; i < n; i++)
            f[i] = (float)((const double *)t->data)[i];
        break;
    case RVG_DTYPE_F16:
        for (int64_t i = 0; i < n; i++)
            f[i] = rvg_f16_to_f32(((const uint16_t *)t->data)[i]);
        break;
    case RVG_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            f[i] = rvg_bf16_to_f32(((const uint16_t *)t->data)[i]);
        break;
    default:
        rvg_free(f);
        return rvg_error(RVG_STATUS_BAD_FORMAT, "tensor '%s' has dtype %s, expected a float type",
                         name, rvg_dtype_name(t->dtype));
    }
    *out = f;
    return RVG_OK;
}

rvg_status rvg_dict_set_meta(rvg_dict *d, const char *key, const char *value) {
    for (int64_t i = 0; i < d->n_meta; i++) {
        if (strcmp(d->meta_keys[i], key) == 0) {
            char *v = strdup(value);
            if (!v)
                return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
            free(d->meta_vals[i]);
            d->meta_vals[i] = v;
            return RVG_OK;
        }
    }
    if (d->n_meta == d->meta_cap) {
        int64_t cap = d->meta_cap ? d->meta_cap * 2 : 16;
        char **k = realloc(d->meta_keys, (size_t)cap * sizeof *k);
        if (!k)
            return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
        d->meta_keys = k;
        char **v = realloc(d->meta_vals, (size_t)cap * sizeof *v);
        if (!v)
            return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
        d->meta_vals = v;
        d->meta_cap = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
    }
    d->meta_keys[d->n_meta] = k;
    d->meta_vals[d->n_meta] = v;
    d->n_meta++;
    return RVG_OK;
}

const char *rvg_dict_meta(const rvg_dict *d, const char *key) {
    for (int64_t i = 0; i < d->n_meta; i++)
        if (strcmp(d->meta_keys[i], key) == 0)
            return d->meta_vals[i];
    return NULL;
}

int64_t rvg_dict_meta_count(const rvg_dict *d) { return d->n_meta; }

void rvg_dict_meta_at(const rvg_dict *d, int64_t i, const char **key, const char **value) {
    *key = d->meta_keys[i];
    *value = d->meta_vals[i];
}
