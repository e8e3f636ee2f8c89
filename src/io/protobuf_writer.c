/* protobuf_writer.c - a minimal Protocol Buffers wire-format encoder (see protobuf_writer_impl.h).
 *
 * Hand-written rather than generated: the ONNX export must be encoded by the project itself, and
 * writing the wire format takes only varints, little-endian fixed32 and length-delimited fields,
 * about a hundred lines with no generated code and no protobuf/protobuf-c build dependency.
 * Encoding rules: protobuf's "Encoding" guide (varint = 7 bits per byte, low group first, high bit
 * set on every byte but the last; key = field number << 3 | wire type).
 */
#include <stdlib.h>
#include <string.h>

#include "io/protobuf_writer_impl.h"

void rvg__pb_init(rvg__pb_buf *b) {
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

void rvg__pb_free(rvg__pb_buf *b) {
    free(b->data);
    rvg__pb_init(b);
}

rvg_status rvg__pb_status(const rvg__pb_buf *b) {
    if (b->failed)
        return rvg_error(RVG_STATUS_NO_MEMORY, "protobuf: out of memory building a message");
    return RVG_OK;
}

/* Makes room for n more bytes; 0 (and the sticky flag) when that fails. */
static int reserve(rvg__pb_buf *b, size_t n) {
    if (b->failed)
        return 0;
    if (n <= b->cap - b->len)
        return 1;
    if (n > SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        return 0;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return 0;
    }
    b->data = p;
    b->cap = cap;
    return 1;
}

void rvg__pb_raw(rvg__pb_buf *b, const void *p, size_t n) {
    if (n == 0 || !reserve(b, n))
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void rvg__pb_varint(rvg__pb_buf *b, uint64_t v) {
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t byte = (uint8_t)(v & 0x7f);
        v >>= 7;
        tmp[n++] = (uint8_t)(byte | (v ? 0x80 : 0));
    } while (v);
    rvg__pb_raw(b, tmp, n);
}

size_t rvg__pb_varint_size(uint64_t v) {
    size_t n = 1;
    while (v >>= 7)
        n++;
    return n;
}

void rvg__pb_tag(rvg__pb_buf *b, uint32_t field, int wire_type) {
    rvg__pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire_type);
}

void rvg__pb_int64(rvg__pb_buf *b, uint32_t field, int64_t v) {
    rvg__pb_tag(b, field, RVG__PB_VARINT);
    rvg__pb_varint(b, (uint64_t)v);
}

void rvg__pb_float(rvg__pb_buf *b, uint32_t field, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    /* fixed32 is little-endian whatever the host order. */
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    rvg__pb_tag(b, field, RVG__PB_I32);
    rvg__pb_raw(b, le, 4);
}

void rvg__pb_len_header(rvg__pb_buf *b, uint32_t field, size_t n) {
    rvg__pb_tag(b, field, RVG__PB_LEN);
    rvg__pb_varint(b, (uint64_t)n);
}

size_t rvg__pb_len_field_size(uint32_t field, size_t n) {
    return rvg__pb_varint_size(((uint64_t)field << 3) | RVG__PB_LEN) +
           rvg__pb_varint_size((uint64_t)n) + n;
}

void rvg__pb_bytes(rvg__pb_buf *b, uint32_t field, const void *p, size_t n) {
    rvg__pb_len_header(b, field, n);
    rvg__pb_raw(b, p, n);
}

void rvg__pb_string(rvg__pb_buf *b, uint32_t field, const char *s) {
    rvg__pb_bytes(b, field, s, strlen(s));
}

void rvg__pb_message(rvg__pb_buf *b, uint32_t field, const rvg__pb_buf *sub) {
    if (sub->failed) {
        b->failed = 1;
        return;
    }
    rvg__pb_bytes(b, field, sub->data, sub->len);
}
