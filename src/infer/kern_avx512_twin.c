/* kern_avx512_twin.c - kern_avx512.c's micro-kernels compiled for AVX2 (-mavx2 -mfma): the
 * same source (kern_wide.h), the same 12-wide register blocks and the same fused operations, so
 * the same results bit for bit, on machines without AVX-512. Never chosen for speed (its
 * accumulators do not fit 16 ymm registers); the tests run it against the reference
 * (RVG_INFER_ISA=avx512-twin) so that the AVX-512 kernels' logic is checked everywhere.
 */
#include "infer_impl.h"

#define KW(name) name##_avx512_twin
#include "kern_wide.h"

void rvg__infer_wide_avx512_twin(rvg__infer_kernels *k) {
    k->gemm16 = gemm16_avx512_twin;
    k->direct16 = direct16_avx512_twin;
    k->direct_px = KW_NT;
}
