/* bf16_impl.h - bf16 numbers (the upper 16 bits of an fp32) and the "bf16x3" split of an fp32
 * value into two of them, shared by the AMX kernel sets of the inference engine (amx_impl.h) and
 * of the training GEMM (gemm_bf16x3_impl.h), and by their plain-C twins.
 */
#ifndef RVG_CORE_BF16_IMPL_H
#define RVG_CORE_BF16_IMPL_H

#include <stdint.h>
#include <string.h>

/* bf16 of x rounded to nearest even (finite x), and back. */
static inline uint16_t rvg__bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float rvg__bf16_f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}
/* hi = bf16(x), lo = bf16(x - hi): together 16 of x's 24 mantissa bits. */
static inline void rvg__bf16_split(float x, uint16_t *hi, uint16_t *lo) {
    *hi = rvg__bf16(x);
    *lo = rvg__bf16(x - rvg__bf16_f(*hi));
}

#endif
