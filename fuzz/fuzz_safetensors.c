/* fuzz_safetensors.c - libFuzzer target for the safetensors reader (rvg_safetensors_parse).
 *
 * Any status is fine; a crash, a sanitizer report, a leak, or a tensor whose byte count disagrees
 * with its shape and dtype is not. Built by fuzz/fuzz.cmake (RVG_FUZZ=ON, clang); run with
 * fuzz/run.sh.
 */
#include <stddef.h>
#include <stdint.h>

#include "rvg/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rvg_dict *d = NULL;
    rvg_status s = rvg_safetensors_parse(&d, data, size);
    if ((s == RVG_OK) != (d != NULL))
        __builtin_trap();
    if (!d)
        return 0;
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < rvg_dict_count(d); i++) {
        const rvg_tensor *t = rvg_dict_at(d, i);
        if (t->nbytes != (size_t)rvg_tensor_numel(t) * rvg_dtype_size(t->dtype))
            __builtin_trap();
        for (size_t b = 0; b < t->nbytes; b++)
            sink ^= ((const uint8_t *)t->data)[b];
    }
    (void)sink;
    for (int64_t i = 0; i < rvg_dict_meta_count(d); i++) {
        const char *k = NULL, *v = NULL;
        rvg_dict_meta_at(d, i, &k, &v);
        if (!k || !v)
            __builtin_trap();
    }
    rvg_dict_free(d);
    return 0;
}
