/* test_protobuf.c - the protobuf wire-format writer used by the ONNX export, byte for byte.
 *
 * Expected bytes come from the protobuf encoding guide (varint 150 = 96 01, field 1 varint 150 =
 * 08 96 01, field 2 string "testing" = 12 07 74 65 73 74 69 6e 67) and from the rules it states:
 * negative int64 takes ten bytes, fixed32 is little-endian, a nested message is a length-delimited
 * field. The whole ONNX file is checked by tests/cli_onnx.sh (ONNX Runtime parses it).
 */
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "io/protobuf_writer_impl.h"

static int same(const rvg__pb_buf *b, const uint8_t *want, size_t n) {
    if (b->len != n || memcmp(b->data, want, n) != 0) {
        fprintf(stderr, "  got %zu bytes:", b->len);
        for (size_t i = 0; i < b->len; i++)
            fprintf(stderr, " %02x", b->data[i]);
        fprintf(stderr, "\n");
        return 0;
    }
    return 1;
}

#define CHECK_BYTES(buf, ...)                                                              \
    do {                                                                                   \
        static const uint8_t want_[] = {__VA_ARGS__};                                      \
        CHECK(same(buf, want_, sizeof want_));                                             \
    } while (0)

int main(void) {
    rvg__pb_buf b;
    rvg__pb_init(&b);

    rvg__pb_varint(&b, 0);
    CHECK_BYTES(&b, 0x00);
    rvg__pb_free(&b);
    rvg__pb_varint(&b, 127);
    rvg__pb_varint(&b, 128);
    rvg__pb_varint(&b, 300);
    CHECK_BYTES(&b, 0x7f, 0x80, 0x01, 0xac, 0x02);
    rvg__pb_free(&b);
    rvg__pb_varint(&b, UINT64_MAX);
    CHECK_BYTES(&b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
    rvg__pb_free(&b);

    /* the guide's examples */
    rvg__pb_int64(&b, 1, 150);
    CHECK_BYTES(&b, 0x08, 0x96, 0x01);
    rvg__pb_free(&b);
    rvg__pb_string(&b, 2, "testing");
    CHECK_BYTES(&b, 0x12, 0x07, 't', 'e', 's', 't', 'i', 'n', 'g');
    rvg__pb_free(&b);

    /* int64 -1: two's complement, ten bytes; field 20 (AttributeProto.type) needs a 2-byte key */
    rvg__pb_int64(&b, 3, -1);
    rvg__pb_int64(&b, 20, 7);
    CHECK_BYTES(&b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0xa0, 0x01,
                0x07);
    rvg__pb_free(&b);

    /* float 1e-5 (0x3727c5ac) as fixed32, little-endian */
    rvg__pb_float(&b, 2, 1e-5f);
    CHECK_BYTES(&b, 0x15, 0xac, 0xc5, 0x27, 0x37);
    rvg__pb_free(&b);

    /* nested message: OperatorSetIdProto {domain "", version 13} as ModelProto field 8 */
    rvg__pb_buf sub;
    rvg__pb_init(&sub);
    rvg__pb_string(&sub, 1, "");
    rvg__pb_int64(&sub, 2, 13);
    rvg__pb_message(&b, 8, &sub);
    CHECK_BYTES(&b, 0x42, 0x04, 0x0a, 0x00, 0x10, 0x0d);
    rvg__pb_free(&b);

    /* a header whose payload is streamed later, and the sizes the graph length is summed from */
    rvg__pb_len_header(&b, 9, 200);
    CHECK_BYTES(&b, 0x4a, 0xc8, 0x01);
    CHECK(rvg__pb_len_field_size(9, 200) == 3 + 200);
    CHECK(rvg__pb_len_field_size(5, 127) == 2 + 127);
    CHECK(rvg__pb_varint_size(0) == 1 && rvg__pb_varint_size(127) == 1);
    CHECK(rvg__pb_varint_size(128) == 2 && rvg__pb_varint_size(UINT64_MAX) == 10);
    rvg__pb_free(&b);

    /* growth past the first allocation keeps every byte */
    for (int i = 0; i < 5000; i++)
        rvg__pb_varint(&b, (uint64_t)(i % 128));
    int all = b.len == 5000;
    for (int i = 0; all && i < 5000; i++)
        all = b.data[i] == (uint8_t)(i % 128);
    CHECK(all);
    CHECK_OK(rvg__pb_status(&b));

    /* a failed sub-message poisons its parent: the error is reported once, at the end */
    sub.failed = 1;
    rvg__pb_message(&b, 1, &sub);
    CHECK_STATUS(rvg__pb_status(&b), RVG_STATUS_NO_MEMORY);
    rvg__pb_free(&b);
    rvg__pb_free(&sub);
    return rvg_test_finish();
}
