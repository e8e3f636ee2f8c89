/* tensor.h - named tensors and ordered tensor dictionaries, the interchange type of rvg's I/O.
 *
 * A rvg_dict is what a weights file holds: an ordered list of named tensors (each owning a copy of
 * its data) plus string metadata. safetensors, PyTorch .pth and the test bundles all load into one;
 * models are built from one and saved through one. It is not used on any hot path.
 */
#ifndef RVG_TENSOR_H
#define RVG_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RVG_MAX_DIMS 8

typedef enum {
    RVG_DTYPE_F32 = 0,
    RVG_DTYPE_F64,
    RVG_DTYPE_F16,
    RVG_DTYPE_BF16,
    RVG_DTYPE_I64,
    RVG_DTYPE_I32,
    RVG_DTYPE_U8,
} rvg_dtype;

/* Bytes per element; safetensors name ("F32", ...); parse a safetensors name (-1 when unknown). */
size_t rvg_dtype_size(rvg_dtype t);
const char *rvg_dtype_name(rvg_dtype t);
int rvg_dtype_from_name(const char *name);

typedef struct {
    char *name;
    rvg_dtype dtype;
    int ndim;
    int64_t shape[RVG_MAX_DIMS];
    void *data;     /* owned, 64-byte aligned, nbytes long */
    size_t nbytes;
} rvg_tensor;

/* Element count (product of the shape; 1 for a scalar). */
int64_t rvg_tensor_numel(const rvg_tensor *t);

typedef struct rvg_dict rvg_dict;

/* New empty dictionary; NULL on out of memory. Free with rvg_dict_free (NULL is fine). */
rvg_dict *rvg_dict_new(void);
void rvg_dict_free(rvg_dict *d);

/* Adds a tensor, copying `data` (nbytes = numel * dtype size; data may be NULL for zeros).
 * Fails with RVG_STATUS_BAD_NAME if the name already exists. */
rvg_status rvg_dict_add(rvg_dict *d, const char *name, rvg_dtype dtype, int ndim,
                        const int64_t *shape, const void *data);
/* Same, for a float32 tensor. */
rvg_status rvg_dict_add_f32(rvg_dict *d, const char *name, int ndim, const int64_t *shape,
                            const float *data);

/* Borrowed pointer to the tensor called `name`, or NULL. */
const rvg_tensor *rvg_dict_get(const rvg_dict *d, const char *name);
/* Number of tensors and the i-th one, in insertion order. */
int64_t rvg_dict_count(const rvg_dict *d);
const rvg_tensor *rvg_dict_at(const rvg_dict *d, int64_t i);
/* Renames tensor i (used when mapping timm or `module.` names). */
rvg_status rvg_dict_rename(rvg_dict *d, int64_t i, const char *new_name);
/* Removes the tensor called name; returns 1 if it was there. */
int rvg_dict_remove(rvg_dict *d, const char *name);

/* Looks up a float tensor of exactly this shape and returns a newly allocated float32 copy in
 * *out (caller frees with rvg_free). Converts F16/BF16/F64 to F32. Errors name the tensor. */
rvg_status rvg_dict_get_f32(const rvg_dict *d, const char *name, int ndim, const int64_t *shape,
                            float **out);

/* String metadata (safetensors __metadata__). set copies both strings; get returns NULL if absent. */
rvg_status rvg_dict_set_meta(rvg_dict *d, const char *key, const char *value);
const char *rvg_dict_meta(const rvg_dict *d, const char *key);
int64_t rvg_dict_meta_count(const rvg_dict *d);
void rvg_dict_meta_at(const rvg_dict *d, int64_t i, const char **key, const char **value);

/* 64-byte aligned allocation (zeroed); rvg_free(NULL) is a no-op. NULL on failure. */
void *rvg_alloc(size_t nbytes);
void rvg_free(void *p);

/* Converts between float32 and IEEE half / bfloat16 (round to nearest even). */
float rvg_f16_to_f32(uint16_t h);
uint16_t rvg_f32_to_f16(float f);
float rvg_bf16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif
#endif
