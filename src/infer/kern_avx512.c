/* kern_avx512.c - the AVX-512 inference micro-kernels (built with -mavx512f, chosen at run time
 * when CPUID reports AVX-512F and the OS saves its registers).
 *
 * The Winograd GEMM, the direct convolution (16 and 32 output channels per call) and the
 * on-the-fly weight transform are AVX-512 (kern_micro.h with 16-lane vectors: one zmm
 * accumulator per tile or pixel and weight block, blocks of 12). The Winograd data transforms,
 * packing and classifier work on 8-channel pack8 vectors and come from the AVX2 set; engine.c
 * combines the two tables. kern_avx512_twin.c builds the same 12-wide blocking for AVX2 so that
 * the tests check it on any machine.
 */
#include "infer_impl.h"

#define KM(name) name##_avx512
#define KM_VEC 16
#define KM_NT 12
#include "kern_micro.h"

void rvg__infer_wide_avx512(rvg__infer_kernels *k) {
    k->gemm16 = gemm16_avx512;
    k->gemm32 = gemm32_avx512;
    k->direct16 = direct16_avx512;
    k->direct32 = direct32_avx512;
    k->wino_wrow = wino_wrow_avx512;
    k->wino_trows = wino_trows_avx512;
    k->gemm_otf = gemm_otf_avx512;
    k->otf_nt = KM_OTF_NT;
    k->wino_in2[1] = wino5_in2_avx512;
    k->direct_px = KM_NT;
}
