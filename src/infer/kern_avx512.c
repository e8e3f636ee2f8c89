/* kern_avx512.c - the AVX-512 inference micro-kernels (built with -mavx512f, chosen at run time
 * when CPUID reports AVX-512F and the OS saves its registers).
 *
 * Only the Winograd GEMM and the direct convolution, which carry nearly all the FLOPs, are
 * AVX-512 (kern_wide.h: 16 output channels per zmm accumulator, blocks of 12 tiles or pixels).
 * The Winograd transforms, packing and classifier work on 8-channel pack8 vectors and come from
 * the AVX2 set; engine.c combines the two tables. kern_avx512_twin.c compiles the same source for
 * AVX2 so that the tests run it on any machine.
 */
#include "infer_impl.h"

#define KW(name) name##_avx512
#include "kern_wide.h"

void rvg__infer_wide_avx512(rvg__infer_kernels *k) {
    k->gemm16 = gemm16_avx512;
    k->direct16 = direct16_avx512;
    k->direct_px = KW_NT;
}
