/* kern_avx2.c - AVX2+FMA inference kernels (built with -mavx2 -mfma, chosen at run time).
 *
 * The Winograd transforms and helpers are kern_body.h compiled for AVX2 (each 8-lane loop becomes
 * one ymm operation). The two micro-kernels that carry nearly all the FLOPs are kern_micro.h with
 * a 6x16 register block (12 ymm accumulators): per reduction step 2 vector loads of packed
 * weights and 6 broadcasts, so the two FMA ports stay busy and loads stay under 2/cycle. The
 * on-the-fly weight transform is kern_micro.h's too. Portable twins: kern_c.c.
 */
#include <immintrin.h>

#include "infer_impl.h"

#define KN(name) name##_avx2
#define KERN_OWN_WROW
#define KCOPY8(dst, src) _mm256_storeu_ps((dst), _mm256_loadu_ps(src))
#include "kern_body.h"

#define KM(name) name##_avx2
#define KM_VEC 8
#define KM_NT 6
#include "kern_micro.h"

const rvg__infer_kernels rvg__infer_kernels_avx2 = {
    .pack_input = pack_input_avx2,
    .wino_in = {wino4_in_avx2, wino5_in_avx2, wino6_in_avx2},
    .wino_out = {wino4_out_avx2, wino5_out_avx2, wino6_out_avx2},
    .gemm16 = gemm16_avx2,
    .direct16 = direct16_avx2,
    .direct_px = 6,
    .wino_wrow = wino_wrow_avx2,
    .fc = fc_avx2,
};
