/* infer_impl.h - internals of the inference engine shared by its files (engine*.c, engine_impl.h)
 * and the kernel files.
 *
 * Activation layout ("padded pack8"): (N, CB, Hp, Wp, 8) floats, CB = ceil(C/8), the image
 * interior (H, W) at offset (1, 1) and zeros everywhere else (the conv's pad-1 border, Winograd
 * tile overhang, and channels C..8*CB-1). Eight channels of one pixel are one AVX2 vector, so the
 * Winograd transforms and the conv epilogues work on whole vectors, and the zero border removes
 * every bounds check from the inner loops.
 *
 * Kernels here cannot fail and never allocate; the engine validates shapes, owns all memory and
 * splits work between threads. Each kernel set (portable C, AVX2+FMA) fills one table; the
 * AVX-512 micro-kernels replace two entries of the AVX2 table (rvg__infer_wide_*).
 */
#ifndef RVG_INFER_IMPL_H
#define RVG_INFER_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "core/compiler_impl.h"
#include "core/pool_impl.h"

/* Output channels per packed weight block: the GEMM/direct micro-kernels produce 16 (2 vectors). */
#define RVG_INFER_KBLK 16

/* G of F(4x4,3x3), F(5x5,3x3) and F(6x6,3x3) in float, for the weight transforms done on the
 * fly (kern_body.h, kern_micro.h); engine.c transforms at load time from double copies. */
static const float rvg__wino_g4[6][3] = {{1.f / 4, 0, 0},
                                         {-1.f / 6, -1.f / 6, -1.f / 6},
                                         {-1.f / 6, 1.f / 6, -1.f / 6},
                                         {1.f / 24, 1.f / 12, 1.f / 6},
                                         {1.f / 24, -1.f / 12, 1.f / 6},
                                         {0, 0, 1}};
static const float rvg__wino_g5[7][3] = {{-1.f / 2, 0, 0},
                                         {-1.f / 3, -1.f / 3, -1.f / 3},
                                         {1.f / 9, -1.f / 9, 1.f / 9},
                                         {1.f / 36, 1.f / 18, 1.f / 9},
                                         {-1.f / 60, 1.f / 30, -1.f / 15},
                                         {32.f / 45, 16.f / 45, 8.f / 45},
                                         {0, 0, 1}};
static const float rvg__wino_g6[8][3] = {{1, 0, 0},
                                         {-2.f / 9, -2.f / 9, -2.f / 9},
                                         {-2.f / 9, 2.f / 9, -2.f / 9},
                                         {1.f / 90, 1.f / 45, 2.f / 45},
                                         {1.f / 90, -1.f / 45, 2.f / 45},
                                         {32.f / 45, 16.f / 45, 8.f / 45},
                                         {32.f / 45, -16.f / 45, 8.f / 45},
                                         {0, 0, 1}};

/* Floats between the points of an on-the-fly weight row: one cache line more than a point's
 * nc*16 floats, which is a multiple of 4 KiB at 64 or 192 channels, so that the n stores per
 * channel do not all land in one L1 set (and alias the loads 4 KiB apart). */
#define WROW_STRIDE(nc) ((nc) * 16 + 16)

/* What a direct-conv kernel call prefetches while it runs (a hint; results do not depend on it):
 * - weights: for each tap t < 9 the `lines` 64-byte lines from p + t * tap_stride (engine_direct.c
 *   points it at a slice of the next weight block);
 * - input: the next chunk's nq pixels, given like the call's own ib (offsets from x), fetched in
 *   each channel block at the first tap of each kernel row.
 * The kernel spreads them over its tap loop. The weight lines, issued as one burst before the
 * call, held the miss buffers that the chunk's own loads needed (A0 stage4.0, 8.8 MB of weights
 * per image, ran ~30% slower that way). The input lines matter where the input does not fit in
 * L2 (A0 stage1.0: 2.5 MB), where each 6-pixel chunk starts on ~54 lines the hardware prefetcher
 * has not fetched. */
typedef struct {
    const float *p, *p2; /* p2: a second weight block (direct32's), the same lines; or NULL */
    int64_t tap_stride, lines;
    const int64_t *ib;
    int64_t nq;
} rvg__prefetch_hint;

static inline void rvg__prefetch_tap(const rvg__prefetch_hint *h, int t) {
#if defined(__GNUC__)
    for (int64_t i = 0; i < h->lines; i++)
        __builtin_prefetch(h->p + t * h->tap_stride + i * 16, 0, 1);
    if (h->p2)
        for (int64_t i = 0; i < h->lines; i++)
            __builtin_prefetch(h->p2 + t * h->tap_stride + i * 16, 0, 1);
#else
    (void)h, (void)t;
#endif
}

/* The next chunk's input at offset o (a tap row and channel block) from x. */
static inline void rvg__prefetch_pixels(const rvg__prefetch_hint *h, const float *x, int64_t o) {
#if defined(__GNUC__)
    for (int64_t k = 0; k < h->nq; k++)
        __builtin_prefetch(x + h->ib[k] + o, 0, 3);
#else
    (void)h, (void)x, (void)o;
#endif
}

typedef struct {
    /* One image x (C,H,W) NCHW -> padded pack8 y (CB, Hp, Wp, 8), interior at (1, 1): padded
     * rows [r0, r1) only (so threads can share an image), zeroing all padding in them. */
    void (*pack_input)(float *y, const float *x, int64_t C, int64_t H, int64_t W, int64_t Hp,
                       int64_t Wp, int64_t r0, int64_t r1);
    /* Winograd input transform ([m - 4]: F(mxm,3x3), m = 4, 5, 6; n = m + 2) of one tile
     * for ncb channel blocks. x points at the tile origin (padded coordinates) of block 0; blocks
     * are xcs floats apart, rows Wp*8. Writes the n*n transformed 8-vectors to V + xi*vs + b*vbs
     * (xi = row-major point index, b = block). The V layout (n*n, CB, T, 8) keeps the tiles of a
     * block contiguous, so the GEMM reads 6 tiles' values of one channel from one 192-byte run. */
    void (*wino_in[3])(float *V, int64_t vs, int64_t vbs, const float *x, int64_t Wp, int64_t xcs,
                       int64_t ncb);
    /* wino_in for two tiles at once, x0's written at V and x1's at V + 8 (the next tile's slot
     * in V); bit for bit two wino_in calls of the AVX2 set (the same operations per lane, in the
     * same order, no FMA). NULL where a set has none (then wino_in per tile); [0] (F(4x4)) is
     * always NULL. */
    void (*wino_in2[3])(float *V, int64_t vs, int64_t vbs, const float *x0, const float *x1,
                        int64_t Wp, int64_t xcs, int64_t ncb);
    /* Winograd output transform of one tile for nkb blocks of 8 output channels: reads
     * M + xi*ms + b*mbs, writes mh x mw pixels (<= m x m, clipped at the image edge) at y (block b
     * at +b*ycs, rows Wp*8) after adding bias (8*b..) and, when relu, clamping at 0. */
    void (*wino_out[3])(float *y, int64_t Wp, int64_t ycs, const float *M, int64_t ms,
                        int64_t mbs, const float *bias, int64_t nkb, int mh, int mw, int relu);
    /* One Winograd point's GEMM for 16 output channels and nt tiles (rows j < nt):
     * M[j*8 + l] (l < 8) and M[mbs + j*8 + l - 8] (l >= 8) = sum_{c < nc} v(j, c) * U[c*16 + l],
     * v(j, c) = V[((coff + c) / 8) * vbs + j*8 + (coff + c) % 8]  (V, M: (block, tile, 8)). */
    void (*gemm16)(float *M, int64_t mbs, const float *V, int64_t vbs, int64_t coff,
                   const float *U, int64_t nc, int64_t nt);
    /* gemm16 for two blocks of 16 output channels over the same input channels: the second
     * block's weights at U + us, its rows at M + 2*mbs (and M + 3*mbs). The same FMAs per output
     * in the same order, so gemm16's results bit for bit (reference: gemm16 of kern_c.c per
     * block). NULL in sets whose registers do not hold two blocks (then gemm16 per block). */
    void (*gemm32)(float *M, int64_t mbs, const float *V, int64_t vbs, int64_t coff,
                   const float *U, int64_t us, int64_t nc, int64_t nt);
    /* Direct 3x3 conv of nq (1..direct_px) output pixels for 16 output channels (pack8
     * blocks y0, y1; y1 NULL when the second block is padding). Pixel j reads the input at
     * x + ib[j] (padded coordinates of its top-left tap, channel block of c0) and writes
     * y0/y1 + ob[j]. Accumulates input channels c0 + [c_lo, c_hi) (coff = c0 % 8; input blocks
     * xcs floats apart, rows Wp*8) with weights w[((r*3 + s)*wn + c)*16 + l] (tap-major, wn
     * channels): when `first` the sums start from bias, else from the partial sums already in
     * y; when `relu` the result is clamped at 0 (last channel block of a layer without SE).
     * Splitting channels keeps each block's weights in L1. Prefetches pf's lines meanwhile. */
    void (*direct16)(float *y0, float *y1, const int64_t *ob, const float *x, const int64_t *ib,
                     int64_t nq, int64_t coff, int64_t xcs, int64_t Wp, const float *w,
                     int64_t wn, const float *bias, int64_t c_lo, int64_t c_hi, int first,
                     int relu, const rvg__prefetch_hint *pf);
    /* direct16 for the two 16-channel blocks kb, kb + 1 of a layer at once, where they read the
     * same input channels and all four pack8 output blocks are real: block kb's outputs are y0
     * and y0 + ycs, block kb + 1's y0 + 2*ycs and y0 + 3*ycs; its weights are 9*wn*16 floats
     * after w, its bias 16 after bias. Each output gets the same FMAs in the same order as from
     * direct16, so the results are direct16's bit for bit (its reference: direct16 of kern_c.c
     * per block). NULL in sets whose registers do not hold two blocks (then direct16 per block). */
    void (*direct32)(float *y0, int64_t ycs, const int64_t *ob, const float *x,
                     const int64_t *ib, int64_t nq, int64_t coff, int64_t xcs, int64_t Wp,
                     const float *w, int64_t wn, const float *bias, int64_t c_lo, int64_t c_hi,
                     int first, int relu, const rvg__prefetch_hint *pf);
    int direct_px; /* the most pixels one direct16 or direct32 call takes: its register block */
    /* One row i of points of the Winograd weight transform U = G g G^T for 16 output channels,
     * computed on the fly (small batches, see engine_wino.c): U[j*WROW_STRIDE(nc) + c*16 + l] =
     * (G g G^T)[i][j] for j < n (n = m + 2 of F(mxm)), from g[(c*9 + r*3 + s)*16 + l]. */
    void (*wino_wrow)(float *U, const float *g, int64_t nc, int n, int i);
    /* The on-the-fly transform in two halves, the second inside the GEMM (NULL in sets without
     * it; then wino_wrow and gemm16/gemm32). wino_trows writes rows [i0, i1) of G g for 16
     * output channels, row i at T + 3*(i - i0)*WROW_STRIDE(nc): T[s*WROW_STRIDE(nc) + c*16 + l]
     * = t_s = G[i][0] g0s + G[i][1] g1s + G[i][2] g2s (as mul, fma, fma). gemm_otf runs np (1 or
     * 2) points' GEMMs (gemm16's layout: point p's V at Vp, its M at Mp) with weights computed
     * per channel from one row of T: U_p(c, l) = fma(t0, a[3p], fma(t1, a[3p + 1], t2 * a[3p +
     * 2])), a = point p's column of G^T. Each M element is one sum over c in increasing order,
     * whatever nt, so the results do not depend on how tiles are grouped. */
    void (*wino_trows)(float *T, const float *g, int64_t nc, int n, int i0, int i1);
    void (*gemm_otf)(float *M0, float *M1, int64_t mbs, const float *V0, const float *V1,
                     int64_t vbs, int64_t coff, const float *T, const float *a, int64_t nc,
                     int64_t nt, int np);
    int otf_nt; /* the most tiles gemm_otf keeps in registers; more are run in groups, each
                   computing the weights again (engine_wino.c then uses gemm16/gemm32) */
    /* out[j] = b[j] + sum_k w[j*K + k] * in[k], j < J: the classifier, one image. */
    void (*fc)(float *out, const float *in, const float *w, const float *b, int64_t J, int64_t K);
} rvg__infer_kernels;

extern const rvg__infer_kernels rvg__infer_kernels_c;
#ifdef RVG_HAVE_SIMD
extern const rvg__infer_kernels rvg__infer_kernels_avx2;
/* Put the 12-wide micro-kernels of kern_micro.h into k (gemm16, gemm32, direct16, direct32,
 * direct_px, wino_wrow): built for
 * AVX-512F, and the same blocking on AVX2 vectors (the tests' twin, see kern_avx512_twin.c). */
void rvg__infer_wide_avx512(rvg__infer_kernels *k);
void rvg__infer_wide_avx512_twin(rvg__infer_kernels *k);
#endif

/* For tests: the last layer's activations (N, K, P, Q) NCHW instead of logits, from the engine
 * and from the reference path (the classifier is not run; fc arguments are not needed). */
#include "rvg/infer.h"
rvg_status rvg__engine_features(rvg_engine *e, float *y, const float *x, int64_t N);
/* For tests: how Winograd layer i runs at batch N after tuning (opts.fuse 0): 1 one phase,
 * 0 three phases, -1 still measuring; -2 where nothing is tuned (not Winograd, no one-phase
 * mode applies, or fuse forced). */
int rvg__engine_tuned(const rvg_engine *e, int64_t i, int64_t N);
rvg_status rvg__infer_ref_features(const rvg_infer_layer *layers, int64_t n_layers, float *y,
                                   const float *x, int64_t N, int64_t in_ch, int64_t H, int64_t W);
#endif
