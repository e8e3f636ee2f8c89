/* conv2d_gemm_impl.h - internal interface of the im2col + GEMM training convolution.
 *
 * Shared between src/ops/gemm.c (the GEMM driver, its backend and thread count, the plain-C
 * micro-kernel), src/ops/conv2d_gemm.c (the convolution driver), src/ops/x86/conv2d_gemm_avx2.c
 * and conv2d_gemm_avx512.c (the SIMD micro-kernels), src/ops/dispatch.c, and the conv test and
 * bench (which force each GEMM backend in turn). Not a public header: nothing here is stable.
 */
#ifndef RVG_OPS_CONV2D_GEMM_IMPL_H
#define RVG_OPS_CONV2D_GEMM_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rvg/ops.h"

/* Register tile of the micro-kernel: 6 rows x 16 columns = 12 ymm accumulators, leaving 4 of the 16
 * AVX2 registers for two B vectors and one A broadcast (the BLIS Haswell/Zen sgemm shape). */
#define RVG__GEMM_MR 6
#define RVG__GEMM_NR 16
/* Cache blocking: a packed B micro-panel (KC x NR = 16 KiB) stays in L1 (32 KiB on Zen 3), an
 * A block (MC x KC = 144 KiB) in L2 (512 KiB), the packed B block (KC x NC = 512 KiB) in L3. */
#define RVG__GEMM_KC 256
#define RVG__GEMM_MC 144
#define RVG__GEMM_NC 512
/* Floats of one thread's packing buffers (an A block and a B block); a workspace holds one set
 * per thread, rvg__conv_threads_max() of them. */
#define RVG__GEMM_PACK_FLOATS                                                                      \
    ((int64_t)RVG__GEMM_MC * RVG__GEMM_KC + (int64_t)RVG__GEMM_KC * RVG__GEMM_NC)
/* A memory-bound loop (or the row slabs of a GEMM) is cut into this many pieces per thread, so a
 * thread that starts late (the machine is shared) finds less left to do rather than holding the
 * others up. */
#define RVG__PIECES_PER_THREAD 4

/* C (mr x nr, row stride ldc) = (beta_one ? C : 0) + A_panel * B_panel, where a is a packed A panel
 * (kc steps of MR floats, rows past mr zero) and b a packed B panel (kc steps of NR floats, columns
 * past nr zero), both 32-byte aligned. Only the mr x nr corner of C is touched. Each C element is a
 * sum over k in increasing order, so its value does not depend on where the tile sits. */
typedef void (*rvg__gemm_kernel_fn)(int64_t kc, const float *a, const float *b, float *c,
                                    int64_t ldc, int64_t mr, int64_t nr, int beta_one);

/* The same with all MR rows of A read in place from a row-major matrix: a(i, k) = a[i*lda + k]
 * (the "rows" kernels, op(A) = A), or from the transpose of one: a(i, k) = a[k*lda + i] (the
 * "cols" kernels, op(A) = A^T, MR consecutive floats per k). A GEMM then need not pack A at all,
 * and the column slabs of a threaded GEMM share it without each packing a copy. */
typedef void (*rvg__gemm_kernel_rows_fn)(int64_t kc, const float *a, int64_t lda, const float *b,
                                         float *c, int64_t ldc, int64_t nr, int beta_one);

#ifdef RVG_HAVE_SIMD
void rvg__conv_gemm_kernel_avx2(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                                int64_t mr, int64_t nr, int beta_one);
void rvg__conv_gemm_kernel_rows_avx2(int64_t kc, const float *a, int64_t lda, const float *b,
                                     float *c, int64_t ldc, int64_t nr, int beta_one);
void rvg__conv_gemm_kernel_cols_avx2(int64_t kc, const float *a, int64_t lda, const float *b,
                                     float *c, int64_t ldc, int64_t nr, int beta_one);
/* Packs a full NR-column panel of a transposed B: dst[k*NR + j] = src[j*ldb + k], k < kc;
 * dst 32-byte aligned. */
void rvg__conv_gemm_pack_bt_avx2(float *dst, const float *src, int64_t ldb, int64_t kc);
/* Packs a full NR-column panel of a plain B: dst[k*NR + j] = src[k*ldb + j], k < kc; dst 32-byte
 * aligned. */
void rvg__conv_gemm_pack_b_avx2(float *dst, const float *src, int64_t ldb, int64_t kc);
/* The AVX-512 6x32 kernels (conv2d_gemm_avx512.c): the same contracts as the three kernels above
 * with b two adjacent packed panels (the second kc*16 floats after the first) and nr <= 32;
 * bit-identical to two calls of the AVX2 kernels. */
void rvg__conv_gemm_kernel2_avx512(int64_t kc, const float *a, const float *b, float *c,
                                   int64_t ldc, int64_t mr, int64_t nr, int beta_one);
void rvg__conv_gemm_kernel2_rows_avx512(int64_t kc, const float *a, int64_t lda, const float *b,
                                        float *c, int64_t ldc, int64_t nr, int beta_one);
void rvg__conv_gemm_kernel2_cols_avx512(int64_t kc, const float *a, int64_t lda, const float *b,
                                        float *c, int64_t ldc, int64_t nr, int beta_one);
#endif

/* Copies n floats; memcpy's call overhead dominates the 1..8-float rows of the late layers. */
static inline void rvg__copy_f(float *restrict d, const float *restrict src, int64_t n) {
    if (n >= 16)
        memcpy(d, src, sizeof(float) * (size_t)n);
    else
        for (int64_t j = 0; j < n; j++)
            d[j] = src[j];
}

/* 1x1, stride 1, pad 0: one image's column matrix is x itself. */
static inline int rvg__conv_direct(const rvg_conv_shape *s) {
    return s->R == 1 && s->S == 1 && s->stride == 1 && s->pad == 0;
}

/* A band of an im2col convolution (src/ops/conv2d_im2col.c): images n0 .. n0+nn-1, output rows
 * pa .. pb-1, channels of group g. Its column matrix col has C/G*R*S rows (c, r, s) and
 * nn*(pb-pa)*Q columns (image, p, q). */
typedef struct {
    const rvg_conv_shape *s;
    int64_t n0, nn, g, pa, pb;
} rvg__col_band;
/* Rows [lo, hi) of col = im2col of x (zero where a tap falls in the padding). */
void rvg__im2col_rows(float *col, const float *x, const rvg__col_band *b, int64_t lo, int64_t hi);
/* dx channels [lo, hi) of the band's group += col2im(col): each dx element adds its terms in
 * (r, s) order, so a caller that adds bands in a fixed order gets a fixed sum. */
void rvg__col2im_channels(float *dx, const float *col, const rvg__col_band *b, int64_t lo,
                          int64_t hi);

/* GEMM backends of the training conv. AUTO is what dispatch uses (see conv2d_gemm.c for the
 * measurement behind the choice). */
typedef enum {
    RVG__GEMM_AUTO = 0,
    RVG__GEMM_OWN_C,    /* built-in packed GEMM, plain C micro-kernel */
    RVG__GEMM_OWN_AVX2, /* built-in packed GEMM, AVX2+FMA micro-kernel */
    RVG__GEMM_BLAS,     /* cblas_sgemm (OpenBLAS) */
    /* bf16x3 (gemm_bf16x3_impl.h): about fp32's accuracy at AMX's rate; never chosen by AUTO.
     * The prepacked GEMM (the inference engine's) keeps AUTO's fp32 kernels under these. */
    RVG__GEMM_BF16X3_C, /* its plain-C twin, on any CPU */
    RVG__GEMM_AMX,      /* on AMX tiles (CPU, build and OS permitting) */
} rvg__gemm_backend;

/* Selects the backend for later calls (not thread-safe: call before kernels run, as tests and
 * benches do). Returns 0 when the backend is not available in this build or on this CPU (nothing
 * changes then), 1 otherwise. */
int rvg__conv_gemm_set_backend(rvg__gemm_backend b);
/* Lets the AVX2 backend hand pairs of 16-column panels to the AVX-512 6x32 kernels (on = 1, the
 * default where the CPU has AVX-512F unless RVG_CONV_AVX512=0) or not (on = 0). Not thread-safe,
 * like set_backend. Returns whether they are in use now (0 without AVX-512F or under another
 * backend). Results are bit-identical either way. */
int rvg__conv_gemm_set_wide(int on);
/* The backend now in use (never AUTO) and its name ("own-avx2", "own-avx2+avx512", ...). */
rvg__gemm_backend rvg__conv_gemm_backend(void);
const char *rvg__conv_gemm_backend_name(void);

/* Threads the workspaces are sized for (OpenMP's max threads, latched at first use); threads a
 * parallel region may use now (never more; 1 inside an OpenMP parallel region); threads for a
 * memory-bound loop over `elems` floats (1 when it is small or under the BLAS backend). */
int rvg__conv_threads_max(void);
int rvg__conv_threads_now(void);
int rvg__conv_loop_threads(int64_t elems);

/* Row-major C (M x N, ldc) = (beta_one ? C : 0) + op(A) op(B), op(A) (M x K), op(B) (K x N);
 * ta/tb non-zero means A/B is stored transposed (A is then K x M with row stride lda). `pack` is
 * the packing part of a conv workspace (one PACK set per thread, 64-byte aligned); unused by BLAS.
 * Threads split C into disjoint blocks and every element's sum order is fixed, so the result does
 * not depend on the thread count. */
void rvg__conv_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                     const float *B, int64_t ldb, int beta_one, float *C, int64_t ldc, float *pack);

/* The same GEMM (built-in kernels) on the calling thread only, for callers that thread it
 * themselves (the inference engine's unrolled layers). `pack` holds
 * rvg__conv_sgemm_serial_pack_floats() floats, 64-byte aligned. */
size_t rvg__conv_sgemm_serial_pack_floats(void);
void rvg__conv_sgemm_serial(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                            int64_t lda, const float *B, int64_t ldb, int beta_one, float *C,
                            int64_t ldc, float *pack);

/* B packed once for many GEMMs (constant weights: the inference engine's unrolled layers), in the
 * panels the GEMM would otherwise pack on every call. prepack_b writes op(B) (K x N; tb as above)
 * to dst, which holds rvg__conv_gemm_prepack_b_floats(K, N) floats, 32-byte aligned. The
 * _prepacked GEMM then computes C (M x N) = (beta_one ? C : 0) + op(A) op(B)[:, j0 : j0+N] from
 * such a B of Ntot columns, j0 a multiple of RVG__GEMM_NR, bit-identical to
 * rvg__conv_sgemm_serial on the same operands. */
size_t rvg__conv_gemm_prepack_b_floats(int64_t K, int64_t N);
void rvg__conv_gemm_prepack_b(float *dst, int tb, const float *B, int64_t ldb, int64_t K,
                              int64_t N);
void rvg__conv_sgemm_serial_prepacked(int ta, int64_t M, int64_t N, int64_t K, const float *A,
                                      int64_t lda, const float *Bp, int64_t Ntot, int64_t j0,
                                      int beta_one, float *C, int64_t ldc, float *pack);

/* The fast twins of rvg_conv2d_forward_ref / rvg_conv2d_backward_ref (same contract); `work` must
 * hold rvg__conv2d_gemm_workspace_size(s) bytes (any alignment). */
size_t rvg__conv2d_gemm_workspace_size(const rvg_conv_shape *s);
void rvg__conv2d_forward_gemm(float *y, const float *x, const float *w, const float *bias,
                              const rvg_conv_shape *s, void *work);
void rvg__conv2d_backward_gemm(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                               const float *w, const rvg_conv_shape *s, void *work);

/* The fast twins of rvg_conv2d_forward_3x3_1x1_ref / rvg_conv2d_backward_3x3_1x1_ref: one im2col
 * of the 3x3 serves both branches. `work` must hold rvg__conv2d_3x3_1x1_gemm_workspace_size(s3)
 * bytes (any alignment). */
size_t rvg__conv2d_3x3_1x1_gemm_workspace_size(const rvg_conv_shape *s3);
/* `keep`: NULL, or rvg__conv2d_3x3_1x1_keep_floats(s3) floats (64-byte aligned) in which the
 * forward leaves the 3x3's transformed weights (the unrolled matrices or Winograd's U) and the
 * backward of the same step, with the same w3, takes them instead of transforming w3 again. A
 * keep written by a forward that took another path (or by none) is recognised and not used.
 * The size depends on the GEMM backend when it is asked: 0 for a 2x2-plane layer whose U the
 * bf16x3 GEMMs pack from the weights (nothing to keep; a backend changed later then runs
 * without a keep, the same bits). */
size_t rvg__conv2d_3x3_1x1_keep_floats(const rvg_conv_shape *s3);
void rvg__conv2d_forward_3x3_1x1_gemm(float *z3, float *z1, const float *x, const float *w3,
                                      const float *w1, const rvg_conv_shape *s3, void *work,
                                      float *keep);
void rvg__conv2d_backward_3x3_1x1_gemm(float *dx, float *dw3, float *dw1, const float *dz3,
                                       const float *dz1, const float *x, const float *w3,
                                       const float *w1, const rvg_conv_shape *s3, void *work,
                                       const float *keep);

/* Tiny input planes (src/ops/conv2d_unrolled.c): the convolution as one dense matrix per group,
 * used by the kernels above when rvg__conv_unrolled_ok(s). `u` holds
 * rvg__conv_unrolled_floats(s) floats, `pack` is the GEMM packing part of a workspace. Same
 * contracts as the _gemm kernels (backward accumulates into dx and dw; dbias is the caller's). */
int rvg__conv_unrolled_ok(const rvg_conv_shape *s);
int64_t rvg__conv_unrolled_floats(const rvg_conv_shape *s);
/* U of group 0 (Kg*PQ, Cg*HW) from that group's weights (Kg, Cg, R, S), on the calling thread;
 * the inference engine packs its tiny-plane layers with it. */
void rvg__conv_unrolled_build(float *u, const float *w, const rvg_conv_shape *s);
/* keep (forward) / kept (backward): NULL, or G * rvg__conv_unrolled_floats(s) floats holding every
 * group's U: the forward builds them there (and returns 1; 0 when it did not fill keep: U packed
 * from the weights), the backward's input gradient uses them unbuilt. */
int rvg__conv2d_forward_unrolled(float *y, const float *x, const float *w, const float *bias,
                                 const rvg_conv_shape *s, float *u, float *pack, float *keep);
void rvg__conv2d_backward_unrolled(float *dx, float *dw, const float *dy, const float *x,
                                   const float *w, const rvg_conv_shape *s, float *u,
                                   float *pack, const float *kept);
/* Whether the bf16x3 GEMMs of 2x2-plane layers take U packed straight from the weights (on by
 * default; the same bits either way; not thread-safe, for tests and benches). Returns the old
 * setting. */
int rvg__conv_unrolled_pack_set(int on);
/* Whether the forward of this layer under the current backend and setting builds U in fp32 (and
 * so can keep it for the backward); 0 when U is packed from the weights. */
int rvg__conv_unrolled_keeps_u(const rvg_conv_shape *s);

/* Stride-1 3x3 pad-1 layers by Winograd F(4x4, 3x3) (src/ops/conv2d_winograd.c), used by the
 * kernels above when rvg__conv_winograd_ok(s) and it is enabled. `work` holds
 * rvg__conv_winograd_floats(s, threads) floats (64-byte aligned) for up to `threads` threads,
 * `pack` one GEMM packing set per thread; nt <= threads. The backward has the _gemm backward's
 * contract (accumulates into dx and dw, either may be NULL; dbias is the caller's); the forward
 * overwrites y (bias may be NULL). */
int rvg__conv_winograd_ok(const rvg_conv_shape *s);
int64_t rvg__conv_winograd_floats(const rvg_conv_shape *s, int threads);
/* keep (forward) / kept (backward): NULL, or rvg__conv_winograd_u_floats(s) floats for U = G w G^T:
 * the forward writes it there, the backward's input gradient uses it instead of recomputing it. */
int64_t rvg__conv_winograd_u_floats(const rvg_conv_shape *s);
void rvg__conv2d_backward_winograd(float *dx, float *dw, const float *dy, const float *x,
                                   const float *w, const rvg_conv_shape *s, float *work,
                                   float *pack, int nt, const float *kept);
void rvg__conv2d_forward_winograd(float *y, const float *x, const float *w, const float *bias,
                                  const rvg_conv_shape *s, float *work, float *pack, int nt,
                                  float *keep);
/* Turns the Winograd forward and backward on or off for later calls (on by default unless
 * RVG_CONV_WINOGRAD=0; not thread-safe, like rvg__conv_gemm_set_backend: for tests and benches).
 * Returns the old setting. */
int rvg__conv_winograd_set(int on);
/* Whether the dispatched kernels take the Winograd path for this shape now (enabled, a built-in
 * GEMM backend, rvg__conv_winograd_ok). */
int rvg__conv_winograd_used(const rvg_conv_shape *s);

#endif
