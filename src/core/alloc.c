/* alloc.c - 64-byte aligned, zeroed allocation used for every tensor and arena.
 *
 * 64 bytes is one cache line and the widest SIMD register we use (AVX-512), so kernels may use
 * aligned loads at the start of any arena. Sizes are rounded up to a multiple of 64.
 */
#include <stdlib.h>
#include <string.h>

#include "rvg/tensor.h"

void *rvg_alloc(size_t nbytes) {
    size_t n = (nbytes + 63) & ~(size_t)63;
    if (n == 0)
        n = 64;
    if (n < nbytes) /* overflow */
        return NULL;
    void *p = aligned_alloc(64, n);
    if (p)
        memset(p, 0, n);
    return p;
}

void rvg_free(void *p) { free(p); }
