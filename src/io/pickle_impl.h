/* pickle_impl.h - the restricted unpickler behind the PyTorch .pth loader (library-internal).
 *
 * rvg__pickle_load turns the bytes of a torch.save `data.pkl` into a tree of plain values: None,
 * bool, int, float, str, tuple, list, dict, the few allowed globals, storage references and tensor
 * descriptions. It never executes anything and never imports anything: a GLOBAL outside the
 * allow-list is an error, and REDUCE only "calls" the allowed constructors, which here just build
 * a value. Tensor data is not touched; a tensor value names its storage (a zip entry key) and its
 * shape, strides and offset, and pth.c materialises it.
 *
 * Every value lives in the unpickler's object list and is freed with rvg__pickle_free; values may
 * be shared (the pickle memo) and dicts/lists may even contain themselves, so walkers must bound
 * depth.
 */
#ifndef RVG_IO_PICKLE_IMPL_H
#define RVG_IO_PICKLE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "rvg/status.h"
#include "rvg/tensor.h"

typedef enum {
    RVG__PK_NONE,
    RVG__PK_BOOL,
    RVG__PK_INT,
    RVG__PK_FLOAT,
    RVG__PK_STR,
    RVG__PK_TUPLE,
    RVG__PK_LIST,
    RVG__PK_DICT,    /* dict and collections.OrderedDict alike */
    RVG__PK_GLOBAL,  /* one of the allowed callables/classes, see rvg__pk_global */
    RVG__PK_STORAGE, /* a persistent id ('storage', type, key, location, numel) */
    RVG__PK_TENSOR,  /* result of torch._utils._rebuild_tensor_v2 / _rebuild_parameter */
} rvg__pk_kind;

typedef enum {
    RVG__PK_G_ORDERED_DICT,
    RVG__PK_G_REBUILD_TENSOR_V2,
    RVG__PK_G_REBUILD_PARAMETER,
    RVG__PK_G_STORAGE_TYPE, /* torch.FloatStorage etc.; the dtype is in rvg__pk_value.dtype */
} rvg__pk_global;

typedef struct rvg__pk_value rvg__pk_value;

struct rvg__pk_value {
    rvg__pk_kind kind;
    rvg__pk_value *next_alloc; /* the unpickler's list of every value, for freeing */
    int64_t i;                 /* BOOL, INT */
    double f;                  /* FLOAT */
    char *s;                   /* STR: NUL-terminated copy; may contain NULs before len */
    size_t len;                /* STR: length in bytes */
    rvg__pk_value **items;     /* TUPLE, LIST: len items; DICT: 2*len entries (key, value, ...) */
    size_t cap;
    rvg__pk_global global; /* GLOBAL */
    rvg_dtype dtype;       /* GLOBAL storage type, STORAGE, TENSOR */
    /* STORAGE: key is the entry name under <prefix>/data/, numel the element count it declares. */
    char *key;
    int64_t numel;
    /* TENSOR: storage (a STORAGE value), offset in elements, shape and strides in elements. */
    rvg__pk_value *storage;
    int64_t offset;
    int ndim;
    int64_t shape[RVG_MAX_DIMS];
    int64_t stride[RVG_MAX_DIMS];
};

typedef struct rvg__pk rvg__pk;

/* Unpickles buf[0..len) (protocol 2 as torch.save writes it, plus the protocol 4 framing opcodes).
 * On success *pk owns every value and *root is the top-level object. On failure returns
 * RVG_STATUS_BAD_FORMAT (or NO_MEMORY) with a message naming the opcode and byte offset; *pk and
 * *root are NULL. */
rvg_status rvg__pickle_load(rvg__pk **pk, rvg__pk_value **root, const uint8_t *buf, size_t len);

/* Frees the unpickler and every value it made. NULL is fine. */
void rvg__pickle_free(rvg__pk *pk);

/* For a DICT value: the value stored under the string key `key`, or NULL. When a key appears more
 * than once (a pickle may SETITEM the same key twice) the last one wins, as in Python. */
const rvg__pk_value *rvg__pk_dict_get(const rvg__pk_value *dict, const char *key);

#endif
