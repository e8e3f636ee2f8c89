/* amx_impl.h - the AMX kernel set of the inference engine (engine_amx.c): convolution as a GEMM
 * on Intel AMX tiles in "bf16x3", and its plain-C twin.
 *
 * AMX multiplies bf16 (8-bit mantissa) pairs into fp32 sums at 17-19 times the rate of AVX-512's
 * fp32 FMAs on one core (measured, docs/inference.md). An fp32 value x is split into two bf16
 * numbers, hi = bf16(x) and lo = bf16(x - hi), which hold 16 of its 24 mantissa bits; each product
 * then takes three tile products, a_hi*b_hi + a_hi*b_lo + a_lo*b_hi (a_lo*b_lo, about 2^-16 of the
 * product, is left out). Every product of two bf16 numbers is exact in fp32 and the sums are fp32,
 * so a dot product is about as exact as fp32's with 16-bit inputs: relative error ~1e-5 at the
 * logits (measured in tests/test_infer.c and docs/inference.md), still about 6x fp32's rate on
 * paper.
 *
 * One call computes nm blocks of 16 x 16 or 16 x 32 of C = A B^T over ks steps of 32 k-values:
 *   A rows:  row i of step s of block m at ah[m]/al[m] + aoff[s] + i * astride (bf16, 32
 *            consecutive k-values);
 *   B tiles: step s of output tile j at bh/bl + (j * ks + s) * 512: 16 rows of 16 columns x 2
 *            k-values (the AMX "VNNI" pairs: row r holds k = 2r, 2r+1 of each column);
 *   c:       (nm, nt, 16, 16) floats, row i = A row i, column = output channel.
 * The AMX kernel runs the steps in chunks, all nm blocks per chunk, so that the chunk's B tiles
 * are read from L1 nm times (from L2 once); the twin sums in the same order.
 * The engine points A either at padded NHWC activations (an implicit GEMM: aoff[s] is the
 * offset of step s's kernel row and values, astride one or two pixels) or at an im2col buffer.
 */
#ifndef RVG_AMX_IMPL_H
#define RVG_AMX_IMPL_H

#include <stdint.h>

#include "core/bf16_impl.h"

enum { RVG__AMX_MB = 16 }; /* M blocks per call at most */

typedef struct {
    const uint16_t *ah[RVG__AMX_MB], *al[RVG__AMX_MB]; /* A of each block, row 0 of step 0 */
    int nm;
    const int64_t *aoff;     /* per step: offset in elements */
    int64_t astride;         /* elements between A rows */
    const uint16_t *bh, *bl; /* B tiles of the first output tile (hi, lo) */
    int64_t ks;              /* steps of 32 k-values */
    int nt;                  /* output tiles of 16 channels: 1 or 2 */
} rvg__amx_gemm;

/* Where the rows of a C block go: off[i] >= 0 is the element offset of row i's pixel in the
 * output (its channel 0 of this block), -1 drops the row (a pixel outside the output). */
typedef struct {
    const float *bias; /* nt * 16 */
    const int64_t *off;
    uint16_t *oh, *ol; /* bf16 hi/lo output, or NULL with of */
    float *of;         /* fp32 output (the last layer), or NULL */
    int relu;          /* 0: c + bias as it is (a squeeze-excitation layer's pre-activation) */
} rvg__amx_out;

typedef struct {
    /* Once per thread before any gemm (loads the tile configuration); no-op in the twin. */
    void (*init)(void);
    void (*gemm)(const rvg__amx_gemm *g, float *c);
    /* c + bias, ReLU (if o->relu), stored as bf16 hi/lo pairs or fp32 (see rvg__amx_out). */
    void (*store)(const float *c, int nt, const rvg__amx_out *o);
    /* hi/lo split of n floats (n a multiple of 16). */
    void (*split)(const float *x, uint16_t *hi, uint16_t *lo, int64_t n);
} rvg__amx_kernels;

extern const rvg__amx_kernels rvg__amx_kernels_ref; /* kern_amx_ref.c: plain C */
#ifdef RVG_HAVE_AMX
extern const rvg__amx_kernels rvg__amx_kernels_amx; /* kern_amx.c: AMX tiles + AVX-512 */
#endif

#endif
