/* protobuf_writer_impl.h - a minimal Protocol Buffers encoder (wire format only), for the ONNX
 * exporter.
 *
 * A message is built into a growable byte buffer field by field; a nested message is built in a
 * buffer of its own and appended to its parent as a length-delimited field. Large payloads (ONNX
 * initializers) need not be copied into a buffer at all: rvg__pb_len_header writes only the tag
 * and length, and rvg__pb_len_field_size tells the enclosing message how long the field will be,
 * so the caller can stream the bytes to a file afterwards.
 *
 * Appends never fail loudly: the first failed allocation sets a sticky flag, later appends do
 * nothing, and rvg__pb_status reports NO_MEMORY once at the end. That keeps the graph builder free
 * of an error check after every field.
 *
 * Not here: decoding, packed repeated fields (proto2's default for `repeated int64` is unpacked,
 * which is what onnx.proto declares), zigzag (sint*) and groups.
 */
#ifndef RVG_PROTOBUF_WRITER_IMPL_H
#define RVG_PROTOBUF_WRITER_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "rvg/status.h"

/* Wire types (protobuf encoding guide). */
enum {
    RVG__PB_VARINT = 0,
    RVG__PB_I64 = 1,
    RVG__PB_LEN = 2,
    RVG__PB_I32 = 5,
};

typedef struct {
    uint8_t *data;
    size_t len, cap;
    int failed; /* sticky: an allocation failed; later appends are dropped */
} rvg__pb_buf;

/* An empty buffer (no allocation until the first append). */
void rvg__pb_init(rvg__pb_buf *b);
/* Releases the bytes; the buffer is empty again and may be reused. */
void rvg__pb_free(rvg__pb_buf *b);
/* RVG_OK, or RVG_STATUS_NO_MEMORY if any append into b failed. */
rvg_status rvg__pb_status(const rvg__pb_buf *b);

/* Raw bytes, no tag. */
void rvg__pb_raw(rvg__pb_buf *b, const void *p, size_t n);
/* A base-128 varint, no tag. Negative int64 values are passed as their two's complement uint64
 * (10 bytes), as protobuf does for int32/int64 fields. */
void rvg__pb_varint(rvg__pb_buf *b, uint64_t v);
/* Field key: (field << 3) | wire_type. */
void rvg__pb_tag(rvg__pb_buf *b, uint32_t field, int wire_type);

/* Scalar fields. */
void rvg__pb_int64(rvg__pb_buf *b, uint32_t field, int64_t v); /* int32/int64/enum: varint */
void rvg__pb_float(rvg__pb_buf *b, uint32_t field, float v);   /* fixed32, little-endian */
/* Length-delimited fields: bytes, a NUL-terminated string, a finished nested message. */
void rvg__pb_bytes(rvg__pb_buf *b, uint32_t field, const void *p, size_t n);
void rvg__pb_string(rvg__pb_buf *b, uint32_t field, const char *s);
void rvg__pb_message(rvg__pb_buf *b, uint32_t field, const rvg__pb_buf *sub);
/* Tag and length of a length-delimited field whose n payload bytes the caller adds later (into b
 * or straight into the output file). */
void rvg__pb_len_header(rvg__pb_buf *b, uint32_t field, size_t n);

/* Encoded size of a varint, and of a whole length-delimited field with n payload bytes. */
size_t rvg__pb_varint_size(uint64_t v);
size_t rvg__pb_len_field_size(uint32_t field, size_t n);

#endif
