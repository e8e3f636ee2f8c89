/* kern_avx512_twin.c - kern_avx512.c's micro-kernels with AVX2 vectors (built with -mavx2
 * -mfma): the same source (kern_micro.h), the same 12-tile/pixel blocks and the same FMA per lane
 * in the same order, so the same results bit for bit, on machines without AVX-512. Never chosen
 * for speed (24 accumulators do not fit 16 ymm registers); the tests run it against the reference
 * (rvg_engine_opts.isa = RVG_INFER_ISA_AVX512_TWIN) so that the AVX-512 kernels' block logic is
 * checked everywhere.
 */
#include "infer_impl.h"

#define KM(name) name##_avx512_twin
#define KM_VEC 8
#define KM_NT 12
#include "kern_micro.h"

void rvg__infer_wide_avx512_twin(rvg__infer_kernels *k) {
    k->gemm16 = gemm16_avx512_twin;
    k->gemm32 = gemm32_avx512_twin;
    k->direct16 = direct16_avx512_twin;
    k->direct32 = direct32_avx512_twin;
    k->wino_wrow = wino_wrow_avx512_twin;
    k->wino_trows = wino_trows_avx512_twin;
    k->gemm_otf = gemm_otf_avx512_twin;
    k->otf_nt = KM_OTF_NT;
    k->wino_in2[1] = wino5_in2_avx512_twin;
    k->direct_px = KM_NT;
}
