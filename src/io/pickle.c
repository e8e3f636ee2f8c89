/* pickle.c - a small, safe unpickler for the subset of Python pickle that torch.save writes.
 *
 * Why hand-written: there is no C library for pickle, and a general unpickler is a code-execution
 * engine (GLOBAL + REDUCE call any importable function, e.g. os.system). This one accepts only what
 * a state dict needs: containers, scalars, strings, collections.OrderedDict, torch's tensor and
 * parameter rebuild functions and the typed storage classes. "Calling" an allowed global just
 * builds a value; nothing is imported or executed. Everything else is RVG_STATUS_BAD_FORMAT.
 *
 * Accepted opcodes: PROTO FRAME STOP MARK EMPTY_DICT EMPTY_LIST EMPTY_TUPLE TUPLE TUPLE1-3
 * BINUNICODE SHORT_BINUNICODE BINUNICODE8 BININT BININT1 BININT2 LONG1 BINFLOAT NEWTRUE NEWFALSE
 * NONE BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET SETITEM SETITEMS APPEND APPENDS GLOBAL
 * STACK_GLOBAL REDUCE BINPERSID BUILD. Protocol 2 is what torch.save writes by default; the few
 * protocol 4 opcodes (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE) cost nothing to allow.
 *
 * Not supported on purpose: the text protocol 0 opcodes, bytes objects, sets, INST/OBJ/NEWOBJ,
 * EXT*, PERSID (text), and torch's legacy (pre-1.6, non-zip) format.
 *
 * Resource bounds: every opcode reads at least one byte and allocates O(1) plus what it pops, so
 * time and memory are linear in the input; memo indices are capped by the input length.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/pickle_impl.h"

struct rvg__pk {
    rvg__pk_value *all; /* every value made, linked through next_alloc */
    rvg__pk_value **stack;
    size_t sp, stack_cap;
    size_t *marks; /* stack heights at each MARK */
    size_t n_marks, marks_cap;
    rvg__pk_value **memo; /* sparse, indexed by memo id; NULL = unset */
    size_t memo_cap, memo_count;
    const uint8_t *buf;
    size_t len, pos, op_pos;
    uint8_t op;
};

/* ---- errors --------------------------------------------------------------------------------- */

static rvg_status fail(rvg__pk *pk, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static rvg_status fail(rvg__pk *pk, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rvg_error(RVG_STATUS_BAD_FORMAT, "pickle: byte %zu (opcode 0x%02x): %s", pk->op_pos,
                     pk->op, msg);
}

static rvg_status no_memory(void) {
    return rvg_error(RVG_STATUS_NO_MEMORY, "pickle: out of memory");
}

/* Copies at most n bytes of s into out (size outn) with anything unprintable replaced by '?', so
 * messages about hostile names stay readable. */
static const char *printable(char *out, size_t outn, const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < outn; i++)
        out[k++] = (s[i] >= 32 && s[i] < 127) ? s[i] : '?';
    out[k] = '\0';
    return out;
}

/* ---- values --------------------------------------------------------------------------------- */

static rvg__pk_value *new_value(rvg__pk *pk, rvg__pk_kind kind) {
    rvg__pk_value *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->kind = kind;
    v->next_alloc = pk->all;
    pk->all = v;
    return v;
}

/* Makes room for `extra` more item slots in v->items (len counted in slots). */
static int reserve_items(rvg__pk_value *v, size_t used, size_t extra) {
    if (extra > SIZE_MAX / sizeof(void *) - used)
        return 0;
    size_t need = used + extra;
    if (need <= v->cap)
        return 1;
    size_t cap = v->cap ? v->cap : 8;
    while (cap < need)
        cap = cap > SIZE_MAX / 4 ? need : cap * 2;
    rvg__pk_value **items = realloc(v->items, cap * sizeof *items);
    if (!items)
        return 0;
    v->items = items;
    v->cap = cap;
    return 1;
}

static const char *kind_name(const rvg__pk_value *v) {
    static const char *names[] = {"None", "bool", "int",    "float",   "str",   "tuple",
                                  "list", "dict", "global", "storage", "tensor"};
    return v ? names[v->kind] : "nothing";
}

/* ---- the stack ------------------------------------------------------------------------------ */

static rvg_status push(rvg__pk *pk, rvg__pk_value *v) {
    if (!v)
        return no_memory();
    if (pk->sp == pk->stack_cap) {
        size_t cap = pk->stack_cap ? pk->stack_cap * 2 : 64;
        rvg__pk_value **s = realloc(pk->stack, cap * sizeof *s);
        if (!s)
            return no_memory();
        pk->stack = s;
        pk->stack_cap = cap;
    }
    pk->stack[pk->sp++] = v;
    return RVG_OK;
}

/* Height below which the current opcode may not pop: the innermost MARK, as in Python where MARK
 * starts a fresh stack. */
static size_t floor_of(const rvg__pk *pk) {
    return pk->n_marks ? pk->marks[pk->n_marks - 1] : 0;
}

static rvg_status pop(rvg__pk *pk, rvg__pk_value **v) {
    if (pk->sp <= floor_of(pk))
        return fail(pk, "stack underflow");
    *v = pk->stack[--pk->sp];
    return RVG_OK;
}

static rvg_status top(rvg__pk *pk, rvg__pk_value **v) {
    if (pk->sp <= floor_of(pk))
        return fail(pk, "stack underflow (empty stack)");
    *v = pk->stack[pk->sp - 1];
    return RVG_OK;
}

/* Pops the innermost MARK; the items above it are stack[*start .. sp). */
static rvg_status pop_mark(rvg__pk *pk, size_t *start) {
    if (!pk->n_marks)
        return fail(pk, "no MARK on the stack");
    *start = pk->marks[--pk->n_marks];
    return RVG_OK;
}

/* ---- reading -------------------------------------------------------------------------------- */

static rvg_status need(rvg__pk *pk, size_t n) {
    if (n > pk->len - pk->pos)
        return fail(pk, "truncated: needs %zu more bytes, %zu left", n, pk->len - pk->pos);
    return RVG_OK;
}

static uint64_t read_le(rvg__pk *pk, int n) {
    uint64_t x = 0;
    for (int i = 0; i < n; i++)
        x |= (uint64_t)pk->buf[pk->pos + (size_t)i] << (8 * i);
    pk->pos += (size_t)n;
    return x;
}

static rvg_status push_str(rvg__pk *pk, size_t n) {
    RVG_TRY(need(pk, n));
    rvg__pk_value *v = new_value(pk, RVG__PK_STR);
    if (!v || !(v->s = malloc(n + 1)))
        return no_memory();
    memcpy(v->s, pk->buf + pk->pos, n);
    v->s[n] = '\0';
    v->len = n;
    pk->pos += n;
    return push(pk, v);
}

static rvg_status push_int(rvg__pk *pk, int64_t x) {
    rvg__pk_value *v = new_value(pk, RVG__PK_INT);
    if (v)
        v->i = x;
    return push(pk, v);
}

/* ---- the memo ------------------------------------------------------------------------------- */

static rvg_status memo_put(rvg__pk *pk, uint64_t idx) {
    rvg__pk_value *v = NULL;
    RVG_TRY(top(pk, &v));
    /* A pickler numbers memo entries 0, 1, 2, ... and each BINPUT costs at least two bytes, so no
     * honest index reaches the input length; the cap keeps a hostile index from sizing the table.
     */
    if (idx >= pk->len)
        return fail(pk, "memo index %llu out of range", (unsigned long long)idx);
    if (idx >= pk->memo_cap) {
        size_t cap = pk->memo_cap ? pk->memo_cap : 64;
        while (cap <= idx)
            cap *= 2;
        rvg__pk_value **m = realloc(pk->memo, cap * sizeof *m);
        if (!m)
            return no_memory();
        memset(m + pk->memo_cap, 0, (cap - pk->memo_cap) * sizeof *m);
        pk->memo = m;
        pk->memo_cap = cap;
    }
    if (!pk->memo[idx])
        pk->memo_count++;
    pk->memo[idx] = v;
    return RVG_OK;
}

static rvg_status memo_get(rvg__pk *pk, uint64_t idx) {
    if (idx >= pk->memo_cap || !pk->memo[idx])
        return fail(pk, "memo index %llu was never stored", (unsigned long long)idx);
    return push(pk, pk->memo[idx]);
}

/* Opcodes with a little-endian argument of `width` bytes. */
static rvg_status arg(rvg__pk *pk, int width, uint64_t *x) {
    RVG_TRY(need(pk, (size_t)width));
    *x = read_le(pk, width);
    return RVG_OK;
}

static rvg_status op_put(rvg__pk *pk, int width) {
    uint64_t idx = 0;
    RVG_TRY(arg(pk, width, &idx));
    return memo_put(pk, idx);
}

static rvg_status op_get(rvg__pk *pk, int width) {
    uint64_t idx = 0;
    RVG_TRY(arg(pk, width, &idx));
    return memo_get(pk, idx);
}

/* BININT (signed 32-bit), BININT1, BININT2 (unsigned). */
static rvg_status op_int(rvg__pk *pk, int width, int is_signed) {
    uint64_t x = 0;
    RVG_TRY(arg(pk, width, &x));
    return push_int(pk, is_signed ? (int64_t)(int32_t)(uint32_t)x : (int64_t)x);
}

/* BINUNICODE, SHORT_BINUNICODE, BINUNICODE8: a length, then UTF-8 bytes (kept as bytes). */
static rvg_status op_str(rvg__pk *pk, int width) {
    uint64_t n = 0;
    RVG_TRY(arg(pk, width, &n));
    if (n > pk->len - pk->pos)
        return fail(pk, "string of %llu bytes runs past the end", (unsigned long long)n);
    return push_str(pk, (size_t)n);
}

/* ---- globals -------------------------------------------------------------------------------- */

static const struct {
    const char *module, *name;
    rvg__pk_global global;
    rvg_dtype dtype;
} allowed_globals[] = {
    {"collections", "OrderedDict", RVG__PK_G_ORDERED_DICT, RVG_DTYPE_F32},
    {"torch._utils", "_rebuild_tensor_v2", RVG__PK_G_REBUILD_TENSOR_V2, RVG_DTYPE_F32},
    {"torch._utils", "_rebuild_parameter", RVG__PK_G_REBUILD_PARAMETER, RVG_DTYPE_F32},
    {"torch", "FloatStorage", RVG__PK_G_STORAGE_TYPE, RVG_DTYPE_F32},
    {"torch", "HalfStorage", RVG__PK_G_STORAGE_TYPE, RVG_DTYPE_F16},
    {"torch", "BFloat16Storage", RVG__PK_G_STORAGE_TYPE, RVG_DTYPE_BF16},
    {"torch", "DoubleStorage", RVG__PK_G_STORAGE_TYPE, RVG_DTYPE_F64},
    {"torch", "LongStorage", RVG__PK_G_STORAGE_TYPE, RVG_DTYPE_I64},
    {"torch", "IntStorage", RVG__PK_G_STORAGE_TYPE, RVG_DTYPE_I32},
    {"torch", "ByteStorage", RVG__PK_G_STORAGE_TYPE, RVG_DTYPE_U8},
};

static int str_is(const char *s, size_t n, const char *lit) {
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static rvg_status push_global(rvg__pk *pk, const char *mod, size_t mod_n, const char *name,
                              size_t name_n) {
    for (size_t i = 0; i < sizeof allowed_globals / sizeof allowed_globals[0]; i++) {
        if (str_is(mod, mod_n, allowed_globals[i].module) &&
            str_is(name, name_n, allowed_globals[i].name)) {
            rvg__pk_value *v = new_value(pk, RVG__PK_GLOBAL);
            if (v) {
                v->global = allowed_globals[i].global;
                v->dtype = allowed_globals[i].dtype;
            }
            return push(pk, v);
        }
    }
    char m[80], n[80];
    return fail(pk,
                "global '%s.%s' is not allowed (only collections.OrderedDict, torch's tensor "
                "rebuild functions and typed storages are; nothing is ever executed)",
                printable(m, sizeof m, mod, mod_n), printable(n, sizeof n, name, name_n));
}

/* GLOBAL: "module\nname\n" in the opcode stream. */
static rvg_status op_global(rvg__pk *pk) {
    const char *parts[2];
    size_t lens[2];
    for (int k = 0; k < 2; k++) {
        const uint8_t *start = pk->buf + pk->pos;
        const uint8_t *nl = memchr(start, '\n', pk->len - pk->pos);
        if (!nl)
            return fail(pk, "truncated GLOBAL (no newline)");
        parts[k] = (const char *)start;
        lens[k] = (size_t)(nl - start);
        pk->pos += lens[k] + 1;
    }
    return push_global(pk, parts[0], lens[0], parts[1], lens[1]);
}

static rvg_status op_stack_global(rvg__pk *pk) {
    rvg__pk_value *name = NULL, *mod = NULL;
    RVG_TRY(pop(pk, &name));
    RVG_TRY(pop(pk, &mod));
    if (name->kind != RVG__PK_STR || mod->kind != RVG__PK_STR)
        return fail(pk, "STACK_GLOBAL needs two strings, got %s and %s", kind_name(mod),
                    kind_name(name));
    return push_global(pk, mod->s, mod->len, name->s, name->len);
}

/* ---- containers ----------------------------------------------------------------------------- */

static rvg_status make_tuple(rvg__pk *pk, size_t start) {
    size_t n = pk->sp - start;
    rvg__pk_value *t = new_value(pk, RVG__PK_TUPLE);
    if (!t || !reserve_items(t, 0, n ? n : 1))
        return no_memory();
    if (n)
        memcpy(t->items, pk->stack + start, n * sizeof *t->items);
    t->len = n;
    pk->sp = start;
    return push(pk, t);
}

/* TUPLE1/2/3: the items are the top n of the current (marked) stack. */
static rvg_status op_tuple_n(rvg__pk *pk, size_t n) {
    if (pk->sp - floor_of(pk) < n)
        return fail(pk, "stack underflow building a %zu-tuple", n);
    return make_tuple(pk, pk->sp - n);
}

/* SETITEMS and APPENDS: the target container sits just below the MARK. */
static rvg_status op_extend(rvg__pk *pk, rvg__pk_kind want) {
    size_t start = 0;
    RVG_TRY(pop_mark(pk, &start));
    if (start <= floor_of(pk))
        return fail(pk, "no %s below the MARK", want == RVG__PK_DICT ? "dict" : "list");
    rvg__pk_value *c = pk->stack[start - 1];
    size_t n = pk->sp - start;
    if (c->kind != want)
        return fail(pk, "%s applied to a %s", want == RVG__PK_DICT ? "SETITEMS" : "APPENDS",
                    kind_name(c));
    if (want == RVG__PK_DICT && n % 2)
        return fail(pk, "SETITEMS with an odd number (%zu) of keys and values", n);
    size_t used = want == RVG__PK_DICT ? 2 * c->len : c->len;
    if (!n)
        return RVG_OK; /* an empty MARK ... SETITEMS; c->items may still be NULL */
    if (!reserve_items(c, used, n))
        return no_memory();
    memcpy(c->items + used, pk->stack + start, n * sizeof *c->items);
    c->len += want == RVG__PK_DICT ? n / 2 : n;
    pk->sp = start;
    return RVG_OK;
}

static rvg_status op_setitem(rvg__pk *pk) {
    rvg__pk_value *key = NULL, *val = NULL, *d = NULL;
    RVG_TRY(pop(pk, &val));
    RVG_TRY(pop(pk, &key));
    RVG_TRY(top(pk, &d));
    if (d->kind != RVG__PK_DICT)
        return fail(pk, "SETITEM on a %s", kind_name(d));
    if (!reserve_items(d, 2 * d->len, 2))
        return no_memory();
    d->items[2 * d->len] = key;
    d->items[2 * d->len + 1] = val;
    d->len++;
    return RVG_OK;
}

static rvg_status op_append(rvg__pk *pk) {
    rvg__pk_value *val = NULL, *l = NULL;
    RVG_TRY(pop(pk, &val));
    RVG_TRY(top(pk, &l));
    if (l->kind != RVG__PK_LIST)
        return fail(pk, "APPEND on a %s", kind_name(l));
    if (!reserve_items(l, l->len, 1))
        return no_memory();
    l->items[l->len++] = val;
    return RVG_OK;
}

/* ---- torch objects -------------------------------------------------------------------------- */

/* BINPERSID: torch.save's persistent id for a storage, ('storage', StorageType, key, location,
 * numel). The data stays in the zip entry <prefix>/data/<key>. */
static rvg_status op_persid(rvg__pk *pk) {
    rvg__pk_value *pid = NULL;
    RVG_TRY(pop(pk, &pid));
    if (pid->kind != RVG__PK_TUPLE || pid->len != 5)
        return fail(pk, "persistent id must be a 5-tuple ('storage', type, key, location, numel)");
    rvg__pk_value **it = pid->items;
    if (it[0]->kind != RVG__PK_STR || !str_is(it[0]->s, it[0]->len, "storage"))
        return fail(pk, "persistent id is not a 'storage' record");
    if (it[1]->kind != RVG__PK_GLOBAL || it[1]->global != RVG__PK_G_STORAGE_TYPE)
        return fail(pk, "persistent id: storage type is a %s, not a torch storage class",
                    kind_name(it[1]));
    if (it[2]->kind != RVG__PK_STR || it[2]->len == 0 || it[2]->len > 255 ||
        memchr(it[2]->s, '\0', it[2]->len) || memchr(it[2]->s, '/', it[2]->len))
        return fail(pk, "persistent id: storage key must be a short non-empty name");
    if (it[3]->kind != RVG__PK_STR)
        return fail(pk, "persistent id: location must be a string");
    if (it[4]->kind != RVG__PK_INT || it[4]->i < 0)
        return fail(pk, "persistent id: numel must be a non-negative int");
    rvg__pk_value *s = new_value(pk, RVG__PK_STORAGE);
    if (!s)
        return no_memory();
    s->dtype = it[1]->dtype;
    s->key = it[2]->s;
    s->numel = it[4]->i;
    return push(pk, s);
}

static rvg_status int_tuple(rvg__pk *pk, const rvg__pk_value *t, const char *what, int64_t *out,
                            int *n) {
    if (t->kind != RVG__PK_TUPLE)
        return fail(pk, "tensor %s is a %s, not a tuple", what, kind_name(t));
    if (t->len > RVG_MAX_DIMS)
        return fail(pk, "tensor has %zu dimensions (at most %d)", t->len, RVG_MAX_DIMS);
    for (size_t i = 0; i < t->len; i++) {
        if (t->items[i]->kind != RVG__PK_INT || t->items[i]->i < 0)
            return fail(pk, "tensor %s[%zu] is not a non-negative int", what, i);
        out[i] = t->items[i]->i;
    }
    *n = (int)t->len;
    return RVG_OK;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks
 * [, metadata]): checks that every element the view addresses lies inside the storage. */
static rvg_status rebuild_tensor(rvg__pk *pk, const rvg__pk_value *args) {
    if (args->len != 6 && args->len != 7)
        return fail(pk, "_rebuild_tensor_v2 takes 6 or 7 arguments, got %zu", args->len);
    rvg__pk_value **a = args->items;
    if (a[0]->kind != RVG__PK_STORAGE)
        return fail(pk, "_rebuild_tensor_v2: first argument is a %s, not a storage",
                    kind_name(a[0]));
    if (a[1]->kind != RVG__PK_INT || a[1]->i < 0)
        return fail(pk, "_rebuild_tensor_v2: storage offset is not a non-negative int");
    rvg__pk_value *t = new_value(pk, RVG__PK_TENSOR);
    if (!t)
        return no_memory();
    int nstride = 0;
    RVG_TRY(int_tuple(pk, a[2], "size", t->shape, &t->ndim));
    RVG_TRY(int_tuple(pk, a[3], "stride", t->stride, &nstride));
    if (nstride != t->ndim)
        return fail(pk, "tensor has %d sizes but %d strides", t->ndim, nstride);
    t->storage = a[0];
    t->dtype = a[0]->dtype;
    t->offset = a[1]->i;

    /* Highest element index addressed: offset + sum((size_i - 1) * stride_i), overflow-checked. */
    int64_t numel = 1, last = t->offset;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] && numel > INT64_MAX / t->shape[i])
            return fail(pk, "tensor shape overflows");
        numel *= t->shape[i];
    }
    for (int i = 0; numel && i < t->ndim; i++) {
        int64_t span = t->shape[i] - 1;
        if (t->stride[i] && span > (INT64_MAX - last) / t->stride[i])
            return fail(pk, "tensor strides overflow");
        last += span * t->stride[i];
    }
    int64_t storage_n = a[0]->numel;
    if (numel ? last >= storage_n : t->offset > storage_n)
        return fail(pk,
                    "tensor (offset %lld, last element %lld) extends past its storage '%s' of "
                    "%lld elements",
                    (long long)t->offset, (long long)last, a[0]->key, (long long)storage_n);
    return push(pk, t);
}

static rvg_status op_reduce(rvg__pk *pk) {
    rvg__pk_value *args = NULL, *fn = NULL;
    RVG_TRY(pop(pk, &args));
    RVG_TRY(pop(pk, &fn));
    if (fn->kind != RVG__PK_GLOBAL)
        return fail(pk, "REDUCE on a %s (only allowed globals can be called)", kind_name(fn));
    if (args->kind != RVG__PK_TUPLE)
        return fail(pk, "REDUCE arguments are a %s, not a tuple", kind_name(args));
    switch (fn->global) {
    case RVG__PK_G_ORDERED_DICT:
        if (args->len != 0)
            return fail(pk, "OrderedDict() with arguments is not supported");
        return push(pk, new_value(pk, RVG__PK_DICT));
    case RVG__PK_G_REBUILD_TENSOR_V2: return rebuild_tensor(pk, args);
    case RVG__PK_G_REBUILD_PARAMETER:
        /* _rebuild_parameter(data, requires_grad, backward_hooks): a Parameter is its tensor. */
        if (args->len != 3 || args->items[0]->kind != RVG__PK_TENSOR)
            return fail(pk, "_rebuild_parameter needs (tensor, requires_grad, hooks)");
        return push(pk, args->items[0]);
    case RVG__PK_G_STORAGE_TYPE: break;
    }
    return fail(pk, "a storage class cannot be called");
}

/* BUILD sets an object's state (__setstate__ / __dict__). torch.save emits it for the _metadata
 * attribute of a state dict's OrderedDict; the state carries nothing we need, so it is dropped. */
static rvg_status op_build(rvg__pk *pk) {
    rvg__pk_value *state = NULL, *obj = NULL;
    RVG_TRY(pop(pk, &state));
    RVG_TRY(top(pk, &obj));
    if (obj->kind != RVG__PK_DICT && obj->kind != RVG__PK_TENSOR)
        return fail(pk, "BUILD on a %s", kind_name(obj));
    return RVG_OK;
}

/* ---- the machine ---------------------------------------------------------------------------- */

static rvg_status step(rvg__pk *pk, rvg__pk_value **result) {
    pk->op_pos = pk->pos;
    pk->op = pk->buf[pk->pos++];
    rvg__pk_value *v = NULL;
    switch (pk->op) {
    case 0x80: /* PROTO */
        RVG_TRY(need(pk, 1));
        if (pk->buf[pk->pos] < 2 || pk->buf[pk->pos] > 5)
            return fail(pk, "pickle protocol %d is not supported (2..5)", pk->buf[pk->pos]);
        pk->pos++;
        return RVG_OK;
    case 0x95: { /* FRAME: a length hint only */
        RVG_TRY(need(pk, 8));
        uint64_t n = read_le(pk, 8);
        if (n > pk->len - pk->pos)
            return fail(pk, "frame of %llu bytes runs past the end", (unsigned long long)n);
        return RVG_OK;
    }
    case '.': return pop(pk, result); /* STOP */
    case '(':                         /* MARK */
        if (pk->n_marks == pk->marks_cap) {
            size_t cap = pk->marks_cap ? pk->marks_cap * 2 : 16;
            size_t *m = realloc(pk->marks, cap * sizeof *m);
            if (!m)
                return no_memory();
            pk->marks = m;
            pk->marks_cap = cap;
        }
        pk->marks[pk->n_marks++] = pk->sp;
        return RVG_OK;
    case '}': return push(pk, new_value(pk, RVG__PK_DICT)); /* EMPTY_DICT */
    case ']': return push(pk, new_value(pk, RVG__PK_LIST)); /* EMPTY_LIST */
    case ')': return make_tuple(pk, pk->sp);                /* EMPTY_TUPLE */
    case 't': {                                             /* TUPLE */
        size_t start = 0;
        RVG_TRY(pop_mark(pk, &start));
        return make_tuple(pk, start);
    }
    case 0x85: return op_tuple_n(pk, 1); /* TUPLE1 */
    case 0x86: return op_tuple_n(pk, 2); /* TUPLE2 */
    case 0x87: return op_tuple_n(pk, 3); /* TUPLE3 */
    case 'X': return op_str(pk, 4);      /* BINUNICODE */
    case 0x8c: return op_str(pk, 1);     /* SHORT_BINUNICODE */
    case 0x8d: return op_str(pk, 8);     /* BINUNICODE8 */
    case 'J': return op_int(pk, 4, 1);   /* BININT: signed 32-bit */
    case 'K': return op_int(pk, 1, 0);   /* BININT1 */
    case 'M': return op_int(pk, 2, 0);   /* BININT2 */
    case 0x8a: {                         /* LONG1: n-byte little-endian two's complement */
        RVG_TRY(need(pk, 1));
        int n = (int)read_le(pk, 1);
        if (n > 8)
            return fail(pk, "integer of %d bytes does not fit in 64 bits", n);
        RVG_TRY(need(pk, (size_t)n));
        uint64_t x = read_le(pk, n);
        if (n > 0 && n < 8 && (x >> (8 * n - 1)) & 1)
            x |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        int64_t sx;
        memcpy(&sx, &x, sizeof sx);
        return push_int(pk, sx);
    }
    case 'G': { /* BINFLOAT: big-endian IEEE double */
        RVG_TRY(need(pk, 8));
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++)
            bits = bits << 8 | pk->buf[pk->pos++];
        v = new_value(pk, RVG__PK_FLOAT);
        if (v)
            memcpy(&v->f, &bits, sizeof v->f);
        return push(pk, v);
    }
    case 0x88: /* NEWTRUE */
    case 0x89: /* NEWFALSE */
        v = new_value(pk, RVG__PK_BOOL);
        if (v)
            v->i = pk->op == 0x88;
        return push(pk, v);
    case 'N': return push(pk, new_value(pk, RVG__PK_NONE)); /* NONE */
    case 'q': return op_put(pk, 1);                         /* BINPUT */
    case 'r': return op_put(pk, 4);                         /* LONG_BINPUT */
    case 0x94: return memo_put(pk, pk->memo_count);         /* MEMOIZE */
    case 'h': return op_get(pk, 1);                         /* BINGET */
    case 'j': return op_get(pk, 4);                         /* LONG_BINGET */
    case 's': return op_setitem(pk);                        /* SETITEM */
    case 'u': return op_extend(pk, RVG__PK_DICT);           /* SETITEMS */
    case 'a': return op_append(pk);                         /* APPEND */
    case 'e': return op_extend(pk, RVG__PK_LIST);           /* APPENDS */
    case 'c': return op_global(pk);                         /* GLOBAL */
    case 0x93: return op_stack_global(pk);                  /* STACK_GLOBAL */
    case 'R': return op_reduce(pk);                         /* REDUCE */
    case 'Q': return op_persid(pk);                         /* BINPERSID */
    case 'b': return op_build(pk);                          /* BUILD */
    default: break;
    }
    if (pk->op >= 32 && pk->op < 127)
        return fail(pk, "unsupported opcode '%c'", pk->op);
    return fail(pk, "unsupported opcode");
}

void rvg__pickle_free(rvg__pk *pk) {
    if (!pk)
        return;
    for (rvg__pk_value *v = pk->all, *next; v; v = next) {
        next = v->next_alloc;
        free(v->s);
        free(v->items);
        free(v);
    }
    free(pk->stack);
    free(pk->marks);
    free(pk->memo);
    free(pk);
}

rvg_status rvg__pickle_load(rvg__pk **out, rvg__pk_value **root, const uint8_t *buf, size_t len) {
    *out = NULL;
    *root = NULL;
    rvg__pk *pk = calloc(1, sizeof *pk);
    if (!pk)
        return no_memory();
    pk->buf = buf;
    pk->len = len;
    rvg__pk_value *result = NULL;
    rvg_status st = RVG_OK;
    while (!result && pk->pos < pk->len) {
        st = step(pk, &result);
        if (st != RVG_OK)
            goto fail;
    }
    if (!result) {
        st = rvg_error(RVG_STATUS_BAD_FORMAT, "pickle: truncated after %zu bytes (no STOP)", len);
        goto fail;
    }
    *out = pk;
    *root = result;
    return RVG_OK;
fail:
    rvg__pickle_free(pk);
    return st;
}

const rvg__pk_value *rvg__pk_dict_get(const rvg__pk_value *dict, const char *key) {
    if (!dict || dict->kind != RVG__PK_DICT)
        return NULL;
    for (size_t i = dict->len; i-- > 0;) {
        const rvg__pk_value *k = dict->items[2 * i];
        if (k->kind == RVG__PK_STR && str_is(k->s, k->len, key))
            return dict->items[2 * i + 1];
    }
    return NULL;
}
