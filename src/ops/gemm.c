/* gemm.c - the built-in packed GEMM of the training convolutions (and of the inference engine's
 * unrolled layers), and the choice of its backend.
 *
 * Does: C = (beta ? C : 0) + op(A) op(B) in row-major float, in the BLIS loop order (jc, pc, ic,
 * jr, ir) with a 6x16 register tile: the AVX2+FMA micro-kernel of src/ops/x86/conv2d_gemm_avx2.c
 * when the CPU has it (with AVX-512F, two 16-column panels per call to the 6x32 kernels of
 * conv2d_gemm_avx512.c), else the plain C kernel here; or cblas_sgemm (OpenBLAS) where that is the
 * better choice (default_backend says when). A threaded GEMM cuts C into disjoint slabs of whole
 * register tiles on the claim-based worker pool (src/core/parallel.c); every element is summed
 * over k in increasing order, so the result depends neither on timing nor on the thread count.
 * Also: the thread count the callers' workspaces are sized for, latched at first use, and how many
 * threads a memory-bound loop may use.
 *
 * Not here: the convolutions built on it (conv2d_gemm.c, conv2d_winograd.c, conv2d_unrolled.c).
 * Does not allocate: packing buffers come from the caller's workspace (RVG__GEMM_PACK_FLOATS per
 * thread).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/compiler_impl.h"
#include "core/cpu_impl.h"
#include "core/parallel_impl.h"
#include "ops/conv2d_gemm_impl.h"
#include "ops/gemm_bf16x3_impl.h"
#include "rvg/status.h"

#ifdef RVG_HAVE_OPENMP
#include <omp.h>
#endif
#ifdef RVG_HAVE_BLAS
#include <cblas.h>
#endif

/* Loops over fewer elements than this run on one thread: waking a worker costs some microseconds,
 * which is what copying ~32k floats costs. */
#define RVG__PAR_MIN_ELEMS 32768
/* GEMMs under this many multiply-adds run on one thread, for the same reason. */
#define RVG__PAR_MIN_MACS 262144
/* Column slabs per thread of a GEMM whose A is read in place (no operand is packed twice). Finer
 * slabs shorten the caller's wait at the end of the phase for a late thread's last slab: A0 step,
 * 2 threads, `repvgg bench --train ... --json` "phase_wait_ms", median of 5 (28x28 b64) and 4
 * (224x224 b8) alternating rounds: 9.0 -> 6.0 ms and 26.4 -> 24.0 ms from 4 to 8 slabs per thread
 * (whole steps: within the machine's noise). */
#define RVG__GEMM_FREE_SLABS 8
#define RVG__MAX_THREADS 256

#define PACK_A_FLOATS ((int64_t)RVG__GEMM_MC * RVG__GEMM_KC)

/* ---- one-time set-up: thread count, CPU features, GEMM backend ------------------------------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_threads = 1; /* threads the workspace is sized for, latched at first use */
static int g_have_avx2 = 0;
#ifdef RVG_HAVE_SIMD
static int g_have_avx512 = 0;
#endif
static int g_want_wide = 1; /* 32-column AVX-512 kernels where available (RVG_CONV_AVX512=0: off) */
static rvg__gemm_backend g_backend = RVG__GEMM_OWN_C;
/* The fp32 kernels below are those of g_fp32: g_backend itself, or under a bf16x3 backend the
 * fp32 default, which the prepacked GEMM (the inference engine's) keeps using. */
static rvg__gemm_backend g_fp32 = RVG__GEMM_OWN_C;
/* The bf16x3 kernel set when g_backend is one (gemm_bf16x3_impl.h), else NULL. */
static const rvg__bf16x3_kernels *g_bf16x3;
static rvg__gemm_kernel_fn g_kernel;
static rvg__gemm_kernel_rows_fn g_kernel_rows, g_kernel_cols;
/* Two 16-column panels per call (the AVX-512 6x32 kernels), or NULL: then one panel per call. */
static rvg__gemm_kernel_fn g_kernel2;
static rvg__gemm_kernel_rows_fn g_kernel2_rows, g_kernel2_cols;

static void kernel_c(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int64_t mr,
                     int64_t nr, int beta_one);
static void kernel_rows_c(int64_t kc, const float *a, int64_t lda, const float *b, float *c,
                          int64_t ldc, int64_t nr, int beta_one);
static void kernel_cols_c(int64_t kc, const float *a, int64_t lda, const float *b, float *c,
                          int64_t ldc, int64_t nr, int beta_one);

/* The AUTO choice, by measurement (bench/bench_conv.c and a GEMM micro-benchmark, thread CPU
 * time, on the 2-core AMD EPYC Zen 3 this project runs on, A0 28x28 batch 64):
 *   - One thread: the built-in AVX2 GEMM and OpenBLAS 0.3.21 sgemm are level over the whole network
 *     (within +-10% per layer either way, noise included). OpenBLAS wins big square GEMMs (66 vs
 *     51 GFLOP/s at 1024^3); the built-in one wins the skinny late layers, where it reads A in
 *     place instead of packing it (1280x64x1728: 53 vs 40 GFLOP/s).
 *   - Two threads: OpenBLAS (pthreads) must thread its own GEMMs while im2col / col2im run on
 *     ours; its spinning workers and ours fought for the two cores (2-10x slower than the built-in
 *     GEMM), so under BLAS the copies stay on the caller (loop_threads) and only sgemm threads.
 *     The built-in GEMM shares one pool and one thread-count-independent result with the rest.
 *   - Without AVX2 (or with RVG_SIMD=OFF) OpenBLAS's own SIMD kernels beat the portable C kernel
 *     (about 15 GFLOP/s), so BLAS comes next, then the C kernel. */
static rvg__gemm_backend default_backend(void) {
    if (g_have_avx2)
        return RVG__GEMM_OWN_AVX2;
#ifdef RVG_HAVE_BLAS
    return RVG__GEMM_BLAS;
#else
    return RVG__GEMM_OWN_C;
#endif
}

static void apply_backend(rvg__gemm_backend b) {
    g_backend = b;
    g_bf16x3 = NULL;
    if (b == RVG__GEMM_BF16X3_C || b == RVG__GEMM_AMX) {
        g_bf16x3 = &rvg__bf16x3_kernels_c;
#ifdef RVG_HAVE_AMX
        if (b == RVG__GEMM_AMX)
            g_bf16x3 = &rvg__bf16x3_kernels_amx;
#endif
        b = default_backend();
    }
    g_fp32 = b;
    g_kernel2 = NULL;
    g_kernel2_rows = g_kernel2_cols = NULL;
#ifdef RVG_HAVE_SIMD
    if (b == RVG__GEMM_OWN_AVX2) {
        g_kernel = rvg__conv_gemm_kernel_avx2;
        g_kernel_rows = rvg__conv_gemm_kernel_rows_avx2;
        g_kernel_cols = rvg__conv_gemm_kernel_cols_avx2;
        /* A0 step at 28x28 and 56x56, batch 128, 2 threads: see the AVX-512 file's banner and
         * docs/training_kernels.md for what the wide kernels gave. */
        if (g_have_avx512 && g_want_wide) {
            g_kernel2 = rvg__conv_gemm_kernel2_avx512;
            g_kernel2_rows = rvg__conv_gemm_kernel2_rows_avx512;
            g_kernel2_cols = rvg__conv_gemm_kernel2_cols_avx512;
        }
        return;
    }
#endif
    g_kernel = kernel_c;
    g_kernel_rows = kernel_rows_c;
    g_kernel_cols = kernel_cols_c;
}

static void init_once(void) {
#ifdef RVG_HAVE_OPENMP
    int t = omp_get_max_threads();
    g_threads = t < 1 ? 1 : t > RVG__MAX_THREADS ? RVG__MAX_THREADS : t;
#endif
#if defined(RVG_HAVE_SIMD) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    g_have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    g_have_avx512 = g_have_avx2 && __builtin_cpu_supports("avx512f");
#endif
    const char *av = getenv("RVG_CONV_AVX512");
    g_want_wide = !(av && strcmp(av, "0") == 0);
    apply_backend(default_backend());
    /* RVG_TRAIN_KERNELS=amx or amx-twin starts in bf16x3 (as rvg_ops_set_train_kernels), so
     * that any program or test can be run on it; other values, and an AMX the CPU lacks, are
     * ignored */
    const char *tk = getenv("RVG_TRAIN_KERNELS");
    if (tk && strcmp(tk, "amx-twin") == 0)
        apply_backend(RVG__GEMM_BF16X3_C);
    else if (tk && strcmp(tk, "amx") == 0 && rvg__amx_usable())
        apply_backend(RVG__GEMM_AMX);
}

static void ensure_init(void) {
    pthread_once(&g_once, init_once);
}

int rvg__conv_gemm_set_backend(rvg__gemm_backend b) {
    ensure_init();
    switch (b) {
    case RVG__GEMM_AUTO: apply_backend(default_backend()); return 1;
    case RVG__GEMM_OWN_C: apply_backend(b); return 1;
    case RVG__GEMM_OWN_AVX2:
        if (!g_have_avx2)
            return 0;
        apply_backend(b);
        return 1;
    case RVG__GEMM_BLAS:
#ifdef RVG_HAVE_BLAS
        apply_backend(b);
        return 1;
#else
        return 0;
#endif
    case RVG__GEMM_BF16X3_C: apply_backend(b); return 1;
    case RVG__GEMM_AMX:
        if (!rvg__amx_usable())
            return 0;
        apply_backend(b);
        return 1;
    }
    return 0;
}

int rvg__conv_gemm_set_wide(int on) {
    ensure_init();
    g_want_wide = on != 0;
    apply_backend(g_backend);
    return g_kernel2 != NULL;
}

rvg__gemm_backend rvg__conv_gemm_backend(void) {
    ensure_init();
    return g_backend;
}

const char *rvg__conv_gemm_backend_name(void) {
    switch (rvg__conv_gemm_backend()) {
    case RVG__GEMM_OWN_C: return "own-c";
    case RVG__GEMM_OWN_AVX2: return g_kernel2 ? "own-avx2+avx512" : "own-avx2";
    case RVG__GEMM_BLAS: return "blas";
    case RVG__GEMM_BF16X3_C: return "bf16x3-c";
    case RVG__GEMM_AMX: return "amx-bf16x3";
    case RVG__GEMM_AUTO: break;
    }
    return "?";
}

int rvg__conv_threads_max(void) {
    ensure_init();
    return g_threads;
}

int rvg__conv_threads_now(void) {
    ensure_init();
#ifdef RVG_HAVE_OPENMP
    if (omp_in_parallel())
        return 1;
    int t = omp_get_max_threads();
    return t < g_threads ? t : g_threads;
#else
    return 1;
#endif
}

/* Under the BLAS backend a memory-bound loop runs on the caller: OpenBLAS's own (pthread) workers
 * would otherwise spin against ours for the same two cores (measured with OpenMP loops: 5-10x
 * slower than either alone). */
int rvg__conv_loop_threads(int64_t elems) {
    if (elems < RVG__PAR_MIN_ELEMS || g_backend == RVG__GEMM_BLAS)
        return 1;
    return rvg__conv_threads_now();
}

/* ---- built-in GEMM --------------------------------------------------------------------------- */

/* Portable micro-kernels with the same contract and the same per-element sum order as the AVX2
 * ones (but separate multiply and add: ISO C mode does not contract to FMA). a(i, k) =
 * a[i*rs + k*cs]. One row at a time, so its 16 sums fit in SSE registers. */
/* Inlined into both entry points so the strides are constants there and the j loop vectorizes. */
static RVG__ALWAYS_INLINE void kernel_c_body(int64_t kc, const float *restrict a, int64_t rs,
                                             int64_t cs, const float *restrict b, float *restrict c,
                                             int64_t ldc, int64_t mr, int64_t nr, int beta_one) {
    for (int64_t i = 0; i < mr; i++) {
        /* sixteen named sums: an array here stays in memory at -O2 (one load and store per
         * multiply-add); scalars stay in registers and GCC pairs them into SSE vectors */
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        float s8 = 0, s9 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0, s14 = 0, s15 = 0;
        const float *ai = a + i * rs;
        for (int64_t k = 0; k < kc; k++) {
            const float av = ai[k * cs];
            const float *bk = b + k * RVG__GEMM_NR; /* (NR) */
            s0 += av * bk[0], s1 += av * bk[1], s2 += av * bk[2], s3 += av * bk[3];
            s4 += av * bk[4], s5 += av * bk[5], s6 += av * bk[6], s7 += av * bk[7];
            s8 += av * bk[8], s9 += av * bk[9], s10 += av * bk[10], s11 += av * bk[11];
            s12 += av * bk[12], s13 += av * bk[13], s14 += av * bk[14], s15 += av * bk[15];
        }
        const float acc[RVG__GEMM_NR] = {s0, s1, s2,  s3,  s4,  s5,  s6,  s7,
                                         s8, s9, s10, s11, s12, s13, s14, s15};
        float *ci = c + i * ldc;
        if (beta_one)
            for (int64_t j = 0; j < nr; j++)
                ci[j] += acc[j];
        else
            for (int64_t j = 0; j < nr; j++)
                ci[j] = acc[j];
    }
}

static void kernel_c(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int64_t mr,
                     int64_t nr, int beta_one) {
    kernel_c_body(kc, a, 1, RVG__GEMM_MR, b, c, ldc, mr, nr, beta_one);
}

static void kernel_rows_c(int64_t kc, const float *a, int64_t lda, const float *b, float *c,
                          int64_t ldc, int64_t nr, int beta_one) {
    kernel_c_body(kc, a, lda, 1, b, c, ldc, RVG__GEMM_MR, nr, beta_one);
}

static void kernel_cols_c(int64_t kc, const float *a, int64_t lda, const float *b, float *c,
                          int64_t ldc, int64_t nr, int beta_one) {
    kernel_c_body(kc, a, 1, lda, b, c, ldc, RVG__GEMM_MR, nr, beta_one);
}

/* Packs op(A)[i0 : i0+mc, p0 : p0+kc] into MR-row panels, each kc steps of MR floats, rows past the
 * matrix zero. op(A)(i, k) = ta ? A[k*lda + i] : A[i*lda + k]. Only the ragged last panel of a
 * GEMM (fewer than MR rows) comes here; whole panels are read in place. */
static void pack_a(float *restrict dst, int ta, const float *restrict A, int64_t lda, int64_t i0,
                   int64_t mc, int64_t p0, int64_t kc) {
    for (int64_t ir = 0; ir < mc; ir += RVG__GEMM_MR) {
        const int64_t mr = mc - ir < RVG__GEMM_MR ? mc - ir : RVG__GEMM_MR;
        float *d = dst + ir * kc; /* (kc, MR) */
        if (ta) {
            for (int64_t k = 0; k < kc; k++) {
                const float *src = A + (p0 + k) * lda + i0 + ir;
                int64_t i = 0;
                for (; i < mr; i++)
                    d[k * RVG__GEMM_MR + i] = src[i];
                for (; i < RVG__GEMM_MR; i++)
                    d[k * RVG__GEMM_MR + i] = 0.0f;
            }
        } else {
            int64_t i = 0;
            for (; i < mr; i++) {
                const float *src = A + (i0 + ir + i) * lda + p0;
                for (int64_t k = 0; k < kc; k++)
                    d[k * RVG__GEMM_MR + i] = src[k];
            }
            for (; i < RVG__GEMM_MR; i++)
                for (int64_t k = 0; k < kc; k++)
                    d[k * RVG__GEMM_MR + i] = 0.0f;
        }
    }
}

/* Packs op(B)[p0 : p0+kc, j0 : j0+nc] into NR-column panels, each kc steps of NR floats, columns
 * past the matrix zero. op(B)(k, j) = tb ? B[j*ldb + k] : B[k*ldb + j]. */
static void pack_b(float *restrict dst, int tb, const float *restrict B, int64_t ldb, int64_t p0,
                   int64_t kc, int64_t j0, int64_t nc) {
    for (int64_t jr = 0; jr < nc; jr += RVG__GEMM_NR) {
        const int64_t nr = nc - jr < RVG__GEMM_NR ? nc - jr : RVG__GEMM_NR;
        float *d = dst + jr * kc; /* (kc, NR) */
#ifdef RVG_HAVE_SIMD
        if (tb && nr == RVG__GEMM_NR && g_fp32 == RVG__GEMM_OWN_AVX2) {
            rvg__conv_gemm_pack_bt_avx2(d, B + (j0 + jr) * ldb + p0, ldb, kc);
            continue;
        }
        if (!tb && nr == RVG__GEMM_NR && g_fp32 == RVG__GEMM_OWN_AVX2) {
            rvg__conv_gemm_pack_b_avx2(d, B + p0 * ldb + j0 + jr, ldb, kc);
            continue;
        }
#endif
        if (tb) {
            int64_t j = 0;
            for (; j < nr; j++) {
                const float *src = B + (j0 + jr + j) * ldb + p0;
                for (int64_t k = 0; k < kc; k++)
                    d[k * RVG__GEMM_NR + j] = src[k];
            }
            for (; j < RVG__GEMM_NR; j++)
                for (int64_t k = 0; k < kc; k++)
                    d[k * RVG__GEMM_NR + j] = 0.0f;
        } else if (nr == RVG__GEMM_NR) {
            for (int64_t k = 0; k < kc; k++)
                memcpy(d + k * RVG__GEMM_NR, B + (p0 + k) * ldb + j0 + jr,
                       sizeof(float) * RVG__GEMM_NR);
        } else {
            for (int64_t k = 0; k < kc; k++) {
                const float *src = B + (p0 + k) * ldb + j0 + jr;
                int64_t j = 0;
                for (; j < nr; j++)
                    d[k * RVG__GEMM_NR + j] = src[j];
                for (; j < RVG__GEMM_NR; j++)
                    d[k * RVG__GEMM_NR + j] = 0.0f;
            }
        }
    }
}

/* One thread's GEMM on C[i0 : i0+M, j0 : j0+N] (BLIS loop order: jc, pc, ic, jr, ir). The k blocks
 * are summed in increasing order into C, so each element's value is fixed by K alone.
 * A is read in place, by the rows kernel when it is not transposed and by the cols kernel when it
 * is (only a last panel of fewer than MR rows is packed, with zero rows): packing costs one pass
 * over A per column block, for the skinny GEMMs of small late layers (N = 64 columns) that pass
 * cost as much as the arithmetic, and in a threaded GEMM every column slab packed its own copy.
 * With bpre, B is not read: its panels come prepacked (rvg__conv_gemm_prepack_b, bpre_n floats per
 * row of op(B), column bpre_j0 of it matching column j0 of C). */
static void gemm_serial(int ta, int tb, int64_t i0, int64_t M, int64_t j0, int64_t N, int64_t K,
                        const float *A, int64_t lda, const float *B, int64_t ldb, int beta_one,
                        float *C, int64_t ldc, float *apack, float *bpack, const float *bpre,
                        int64_t bpre_n, int64_t bpre_j0) {
    const rvg__gemm_kernel_fn kern = g_kernel;
    const rvg__gemm_kernel_rows_fn kern_in_place = ta ? g_kernel_cols : g_kernel_rows;
    const rvg__gemm_kernel_fn kern2 = g_kernel2;
    const rvg__gemm_kernel_rows_fn kern2_in_place = ta ? g_kernel2_cols : g_kernel2_rows;
    for (int64_t jc = 0; jc < N; jc += RVG__GEMM_NC) {
        const int64_t nc = N - jc < RVG__GEMM_NC ? N - jc : RVG__GEMM_NC;
        for (int64_t pc = 0; pc < K; pc += RVG__GEMM_KC) {
            const int64_t kc = K - pc < RVG__GEMM_KC ? K - pc : RVG__GEMM_KC;
            const int b1 = beta_one || pc > 0;
            const float *bblk = bpack; /* op(B)[pc:pc+kc, j0+jc:+nc] as NR-column panels */
            if (bpre) /* prepacked (rvg__conv_gemm_prepack_b): the same panels, packed once */
                bblk = bpre + pc * bpre_n + (bpre_j0 + jc) * kc;
            else
                pack_b(bpack, tb, B, ldb, pc, kc, j0 + jc, nc);
            for (int64_t ic = 0; ic < M; ic += RVG__GEMM_MC) {
                const int64_t mc = M - ic < RVG__GEMM_MC ? M - ic : RVG__GEMM_MC;
                const int64_t m_full = mc / RVG__GEMM_MR * RVG__GEMM_MR;
                if (m_full < mc) /* the ragged last panel */
                    pack_a(apack + m_full * kc, ta, A, lda, i0 + ic + m_full, mc - m_full, pc, kc);
                /* Two panels at a time where the wide kernels are in use and a second panel
                 * (perhaps ragged) exists; the panels lie kc*NR floats apart either way. */
                for (int64_t jr = 0, step; jr < nc; jr += step) {
                    const int wide = kern2 && nc - jr > RVG__GEMM_NR;
                    step = wide ? 2 * RVG__GEMM_NR : RVG__GEMM_NR;
                    const int64_t nr = nc - jr < step ? nc - jr : step;
                    const float *bp = bblk + jr * kc;
                    float *cp = C + (i0 + ic) * ldc + j0 + jc + jr;
                    int64_t ir = 0;
                    for (; ir < m_full; ir += RVG__GEMM_MR) {
                        const int64_t row = i0 + ic + ir; /* first row of op(A) in the panel */
                        const float *ap = ta ? A + pc * lda + row : A + row * lda + pc;
                        if (wide)
                            kern2_in_place(kc, ap, lda, bp, cp + ir * ldc, ldc, nr, b1);
                        else
                            kern_in_place(kc, ap, lda, bp, cp + ir * ldc, ldc, nr, b1);
                    }
                    for (; ir < mc; ir += RVG__GEMM_MR) {
                        const int64_t mr = mc - ir < RVG__GEMM_MR ? mc - ir : RVG__GEMM_MR;
                        if (wide)
                            kern2(kc, apack + ir * kc, bp, cp + ir * ldc, ldc, mr, nr, b1);
                        else
                            kern(kc, apack + ir * kc, bp, cp + ir * ldc, ldc, mr, nr, b1);
                    }
                }
            }
        }
    }
}

/* One thread's GEMM on C[i0 : i0+M, j0 : j0+N] with the backend's kernels: bf16x3 (its own
 * blocking, gemm_bf16x3.c) or fp32 (gemm_serial), in the thread's packing buffer. */
static void gemm_block(int ta, int tb, int64_t i0, int64_t M, int64_t j0, int64_t N, int64_t K,
                       const float *A, int64_t lda, const float *B, int64_t ldb,
                       const rvg__bf16x3_prepacked *bp, int beta_one, float *C, int64_t ldc,
                       float *pack) {
    if (g_bf16x3)
        rvg__gemm_bf16x3_serial(g_bf16x3, ta, tb, i0, M, j0, N, K, A, lda, B, ldb, bp, beta_one, C,
                                ldc, pack);
    else
        gemm_serial(ta, tb, i0, M, j0, N, K, A, lda, B, ldb, beta_one, C, ldc, pack,
                    pack + PACK_A_FLOATS, NULL, 0, 0);
}

typedef struct {
    int ta, tb;
    int64_t M, N, K;
    const float *A;
    int64_t lda;
    const float *B;
    int64_t ldb;
    const rvg__bf16x3_prepacked *bp; /* bf16x3 only: B prepacked, or NULL */
    int beta_one;
    float *C;
    int64_t ldc;
    float *pack;
    int split_n;
    int64_t unit, tiles, slabs;
} gemm_job;

/* One slab of C (whole register tiles) with the packing buffers of thread tid. */
static void gemm_item(void *ctx, int64_t item, int tid) {
    const gemm_job *j = ctx;
    const int64_t len_all = j->split_n ? j->N : j->M;
    const int64_t lo = j->tiles * item / j->slabs * j->unit;
    int64_t hi = j->tiles * (item + 1) / j->slabs * j->unit;
    hi = hi < len_all ? hi : len_all;
    if (hi <= lo)
        return;
    float *ap = j->pack + (int64_t)tid * RVG__GEMM_PACK_FLOATS;
    if (j->split_n)
        gemm_block(j->ta, j->tb, 0, j->M, lo, hi - lo, j->K, j->A, j->lda, j->B, j->ldb, j->bp,
                   j->beta_one, j->C, j->ldc, ap);
    else
        gemm_block(j->ta, j->tb, lo, hi - lo, 0, j->N, j->K, j->A, j->lda, j->B, j->ldb, j->bp,
                   j->beta_one, j->C, j->ldc, ap);
}

static void gemm_own(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                     const float *B, int64_t ldb, const rvg__bf16x3_prepacked *bp, int beta_one,
                     float *C, int64_t ldc, float *pack) {
    int T = rvg__conv_threads_now();
    if (M * N * K < RVG__PAR_MIN_MACS)
        T = 1;
    /* Split the larger of M and N into T contiguous slabs of whole register tiles; each slab
     * packs what it needs itself (a transposed A or any B is then packed once per slab, which
     * costs less than a shared pack that every thread would have to wait for). */
    const int split_n = N >= M;
    /* column slabs of whole panel pairs where the wide kernels take two panels per call */
    int64_t unit = split_n ? (g_kernel2 ? 2 * RVG__GEMM_NR : RVG__GEMM_NR) : RVG__GEMM_MR;
    if (g_bf16x3) /* whole 16 x 32 blocks of C */
        unit = split_n ? 32 : 16;
    const int64_t tiles = ((split_n ? N : M) + unit - 1) / unit;
    if (T > tiles)
        T = (int)tiles;
    if (T <= 1) {
        gemm_block(ta, tb, 0, M, 0, N, K, A, lda, B, ldb, bp, beta_one, C, ldc, pack);
        return;
    }
    /* More slabs than threads let a thread that starts late do less, but each slab re-packs the
     * operand it shares; allow that while it stays under ~1/128 of the slab's arithmetic (slabs /
     * split dimension). Column slabs share nothing (each packs only its own B columns, and the
     * in-place A is read once per column panel however the panels are grouped), so they are cut
     * finer: RVG__GEMM_FREE_SLABS per thread. */
    int64_t slabs = T;
    const int64_t split_len = split_n ? N : M;
    const int64_t want = (int64_t)T * RVG__PIECES_PER_THREAD;
    if (g_bf16x3) /* each slab packs (splits) all of the shared operand: one slab per thread */
        slabs = T;
    else if (split_n)
        slabs = (int64_t)T * RVG__GEMM_FREE_SLABS;
    else if (split_len / want >= 128)
        slabs = want;
    if (slabs > tiles)
        slabs = tiles;
    gemm_job job = {.ta = ta,
                    .tb = tb,
                    .M = M,
                    .N = N,
                    .K = K,
                    .A = A,
                    .lda = lda,
                    .B = B,
                    .ldb = ldb,
                    .bp = bp,
                    .beta_one = beta_one,
                    .C = C,
                    .ldc = ldc,
                    .pack = pack,
                    .split_n = split_n,
                    .unit = unit,
                    .tiles = tiles,
                    .slabs = slabs};
    rvg__par_run(slabs, T, gemm_item, &job);
}

/* An empty C, or an empty sum (C = beta C): handled here, returns 1. */
static int gemm_degenerate(int64_t M, int64_t N, int64_t K, int beta_one, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0)
        return 1;
    if (K > 0)
        return 0;
    if (!beta_one)
        for (int64_t i = 0; i < M; i++)
            memset(C + i * ldc, 0, sizeof(float) * (size_t)N);
    return 1;
}

void rvg__conv_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                     const float *B, int64_t ldb, int beta_one, float *C, int64_t ldc,
                     float *pack) {
    ensure_init();
    if (gemm_degenerate(M, N, K, beta_one, C, ldc))
        return;
#ifdef RVG_HAVE_BLAS
    if (g_backend == RVG__GEMM_BLAS) {
        RVG_ASSERT(M < INT32_MAX && N < INT32_MAX && K < INT32_MAX);
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)M, (int)N, (int)K, 1.0f, A, (int)lda, B, (int)ldb, beta_one ? 1.0f : 0.0f,
                    C, (int)ldc);
        return;
    }
#endif
    gemm_own(ta, tb, M, N, K, A, lda, B, ldb, NULL, beta_one, C, ldc, pack);
}

const rvg__bf16x3_kernels *rvg__conv_gemm_bf16x3(void) {
    ensure_init();
    return g_bf16x3;
}

void rvg__conv_sgemm_bf16x3_prepacked(int ta, int64_t M, int64_t N, int64_t K, const float *A,
                                      int64_t lda, const rvg__bf16x3_prepacked *bp, int beta_one,
                                      float *C, int64_t ldc, float *pack) {
    ensure_init();
    RVG_ASSERT(g_bf16x3 && bp);
    if (gemm_degenerate(M, N, K, beta_one, C, ldc))
        return;
    gemm_own(ta, 0, M, N, K, A, lda, NULL, 0, bp, beta_one, C, ldc, pack);
}

size_t rvg__conv_sgemm_serial_pack_floats(void) {
    return (size_t)RVG__GEMM_PACK_FLOATS;
}

void rvg__conv_sgemm_serial(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                            int64_t lda, const float *B, int64_t ldb, int beta_one, float *C,
                            int64_t ldc, float *pack) {
    ensure_init();
    if (gemm_degenerate(M, N, K, beta_one, C, ldc))
        return;
    gemm_block(ta, tb, 0, M, 0, N, K, A, lda, B, ldb, NULL, beta_one, C, ldc, pack);
}

/* Columns of op(B) rounded up to whole NR-column panels: a prepacked B's floats per row. */
static int64_t panel_cols(int64_t N) {
    return (N + RVG__GEMM_NR - 1) / RVG__GEMM_NR * RVG__GEMM_NR;
}

size_t rvg__conv_gemm_prepack_b_floats(int64_t K, int64_t N) {
    return (size_t)(K * panel_cols(N));
}

/* Block pc (KC rows of op(B), the last one shorter) starts at dst + pc * n16 and holds the n16/NR
 * column panels of kc x NR floats each, exactly as gemm_serial's pack_b lays out a block. */
void rvg__conv_gemm_prepack_b(float *dst, int tb, const float *B, int64_t ldb, int64_t K,
                              int64_t N) {
    ensure_init();
    const int64_t n16 = panel_cols(N);
    for (int64_t pc = 0; pc < K; pc += RVG__GEMM_KC) {
        const int64_t kc = K - pc < RVG__GEMM_KC ? K - pc : RVG__GEMM_KC;
        pack_b(dst + pc * n16, tb, B, ldb, pc, kc, 0, N);
    }
}

void rvg__conv_sgemm_serial_prepacked(int ta, int64_t M, int64_t N, int64_t K, const float *A,
                                      int64_t lda, const float *Bp, int64_t Ntot, int64_t j0,
                                      int beta_one, float *C, int64_t ldc, float *pack) {
    ensure_init();
    if (gemm_degenerate(M, N, K, beta_one, C, ldc))
        return;
    gemm_serial(ta, 0, 0, M, 0, N, K, A, lda, NULL, 0, beta_one, C, ldc, pack, pack + PACK_A_FLOATS,
                Bp, panel_cols(Ntot), j0);
}
