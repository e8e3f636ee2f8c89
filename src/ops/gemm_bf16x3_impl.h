/* gemm_bf16x3_impl.h - the training GEMM in "bf16x3" on Intel AMX tiles, and its plain-C twin.
 *
 * Each fp32 operand x is split into two bf16 numbers, hi = bf16(x) and lo = bf16(x - hi), and each
 * product takes three bf16 products summed in fp32, a_hi b_hi + a_hi b_lo + a_lo b_hi (a_lo b_lo,
 * ~2^-16 of the product, is left out): a GEMM about as exact as fp32's with 16-bit operands
 * (relative error ~1e-5, tests/test_conv_fast.c), at several times AVX-512's fp32 rate where AMX
 * tiles run the bf16 products (the inference engine's AMX kernel set does the same, amx_impl.h).
 *
 * Why not plain bf16 (a_hi b_hi alone, as PyTorch's bf16 autocast): measured on 2026-12-04, its
 * convolutions through Winograd F(4x4, 3x3) were off by 20-40% of max|y| (the transforms' scaling
 * and cancellation on 8-bit operands), and without Winograd an A0 step at 32x32 was only 5%
 * faster than bf16x3's with it (88 against 93 ms): the rest of the step is not GEMM.
 *
 * Layouts (uint16_t bf16 bits, hi and lo in separate buffers with the same layout), k in steps
 * of 32 values, zero past the matrix:
 *   A block of 16 rows, step s:   512 values at a + s*512, row r at + r*32 (32 k-values);
 *   B tile of 16 columns, step s: 512 values at b + s*512, row p at + p*32 holding k = 2p, 2p+1
 *                                 of each column j at + 2j, + 2j+1 (AMX's "VNNI" pairs);
 *   successive 16-row blocks / 16-column tiles of one packed block lie ks*512 values apart.
 * The driver (gemm_bf16x3.c) blocks and packs as the fp32 GEMM does (gemm.c: jc, pc, ic, then
 * 16 x 32 blocks of C) in the same per-thread packing buffer; the kernels below do the rest.
 * Every C element is summed over k blocks in increasing order and within a block in 32-value
 * steps in increasing order, so, as with the fp32 GEMM, the result does not depend on blocking
 * or thread count.
 */
#ifndef RVG_OPS_GEMM_BF16X3_IMPL_H
#define RVG_OPS_GEMM_BF16X3_IMPL_H

#include <stdint.h>

#include "core/bf16_impl.h"

/* Blocking of the bf16x3 GEMM: an A block of MC x KC and a B block of KC x NC, hi and lo each,
 * fill exactly the fp32 GEMM's packing buffer (RVG__GEMM_PACK_FLOATS floats per thread). */
enum { RVG__BF_MC = 144, RVG__BF_KC = 256, RVG__BF_NC = 512 };

typedef struct {
    /* Packs op(A)[i0 : i0+mc, p0 : p0+kc] (op(A)(i, k) = ta ? A[k*lda + i] : A[i*lda + k]) as
     * ceil(mc/16) blocks of ceil(kc/32) steps. */
    void (*pack_a)(uint16_t *ah, uint16_t *al, int ta, const float *A, int64_t lda, int64_t i0,
                   int64_t mc, int64_t p0, int64_t kc);
    /* Packs op(B)[p0 : p0+kc, j0 : j0+nc] (op(B)(k, j) = tb ? B[j*ldb + k] : B[k*ldb + j]) as
     * ceil(nc/16) tiles of ceil(kc/32) steps. */
    void (*pack_b)(uint16_t *bh, uint16_t *bl, int tb, const float *B, int64_t ldb, int64_t p0,
                   int64_t kc, int64_t j0, int64_t nc);
    /* C (16 rows x 16*nt columns, row stride ldc; nt 1 or 2) = (beta_one ? C : 0) + the sum over
     * ks steps of A block (ah, al) times the nt B tiles (tile t at bh/bl + t*tstride). */
    void (*kernel)(int64_t ks, const uint16_t *ah, const uint16_t *al, const uint16_t *bh,
                   const uint16_t *bl, int64_t tstride, float *c, int64_t ldc, int nt,
                   int beta_one);
    /* Packs, straight from the weights, the unrolled matrix of a tiny-plane convolution with 2x2
     * input and output planes (conv2d_unrolled.c: U (Kg*4, Cg*4), U[(k, pq), (c, hw)] =
     * w[k, c, taps[pq*4 + hw]], zero where that tap is -1), as the whole B of a prepacked GEMM
     * (rvg__bf16x3_prepacked): op(B) = U^T when dx is 0 (the forward: tiles of 4 output channels,
     * steps of 8 input channels), op(B) = U when dx is 1 (the input gradient: tiles of 4 input
     * channels, steps of 8 output channels). Writes the entries of output channels [k0, k1)
     * (k0 a multiple of 8; k1 = Kg writes the zero padding past Kg too; padding past Cg is
     * always written). The same bits as building U in fp32 and packing it with pack_b. */
    void (*pack_u4)(uint16_t *bh, uint16_t *bl, int dx, const float *w, int64_t Kg, int64_t Cg,
                    int64_t RS, const int8_t taps[16], int64_t k0, int64_t k1);
} rvg__bf16x3_kernels;

/* A B operand packed once, whole: op(B) (K x N) as ceil(N/16) tiles of ks = ceil(K/32) steps,
 * tile t at h/l + t*ks*512 (each tile holds all of K, so the driver's blocks of it are views). */
typedef struct {
    const uint16_t *h, *l;
    int64_t ks;
} rvg__bf16x3_prepacked;

/* The end of pack_u4's range [k0, k1) of output channels: with k1 = Kg, the padding up to whole
 * tiles (4 output channels, forward) or steps (8, input gradient) as well. */
static inline int64_t rvg__bf16x3_u4_kend(int dx, int64_t Kg, int64_t k1) {
    return k1 < Kg ? k1 : (dx ? (Kg + 7) / 8 * 8 : (Kg + 3) / 4 * 4);
}

/* uint16_t values in a prepacked B of K x N, hi and lo each. */
static inline int64_t rvg__bf16x3_prepacked_size(int64_t K, int64_t N) {
    return (N + 15) / 16 * ((K + 31) / 32) * 512;
}

extern const rvg__bf16x3_kernels rvg__bf16x3_kernels_c; /* gemm_bf16x3.c: plain C */
#ifdef RVG_HAVE_AMX
extern const rvg__bf16x3_kernels rvg__bf16x3_kernels_amx; /* x86/conv2d_gemm_amx.c */
#endif

/* The plain-C packers (the AMX file's AVX-512 packers hand them the cases they do not vectorize;
 * both write the same bits). */
void rvg__bf16x3_pack_a_c(uint16_t *ah, uint16_t *al, int ta, const float *A, int64_t lda,
                          int64_t i0, int64_t mc, int64_t p0, int64_t kc);
void rvg__bf16x3_pack_b_c(uint16_t *bh, uint16_t *bl, int tb, const float *B, int64_t ldb,
                          int64_t p0, int64_t kc, int64_t j0, int64_t nc);
void rvg__bf16x3_pack_u4_c(uint16_t *bh, uint16_t *bl, int dx, const float *w, int64_t Kg,
                           int64_t Cg, int64_t RS, const int8_t taps[16], int64_t k0, int64_t k1);

/* One thread's bf16x3 GEMM on C[i0 : i0+M, j0 : j0+N] = (beta_one ? C : 0) + op(A) op(B) (the
 * rows and columns of op(A), op(B) that C's block needs), with `pack` the thread's packing buffer
 * (RVG__GEMM_PACK_FLOATS floats, 64-byte aligned). With bp, B and tb are not read: op(B) comes
 * prepacked (j0 then a multiple of 16), and the result has the same bits. */
void rvg__gemm_bf16x3_serial(const rvg__bf16x3_kernels *k, int ta, int tb, int64_t i0, int64_t M,
                             int64_t j0, int64_t N, int64_t K, const float *A, int64_t lda,
                             const float *B, int64_t ldb, const rvg__bf16x3_prepacked *bp,
                             int beta_one, float *C, int64_t ldc, float *pack);

/* gemm.c: the bf16x3 kernel set of the current backend, or NULL under an fp32 one; and the
 * threaded GEMM (as rvg__conv_sgemm) with a prepacked B, for a bf16x3 backend only. */
const rvg__bf16x3_kernels *rvg__conv_gemm_bf16x3(void);
void rvg__conv_sgemm_bf16x3_prepacked(int ta, int64_t M, int64_t N, int64_t K, const float *A,
                                      int64_t lda, const rvg__bf16x3_prepacked *bp, int beta_one,
                                      float *C, int64_t ldc, float *pack);

#endif
