/* engine.c - the deploy-form inference engine: load-time planning and packing, and the run loop.
 *
 * At rvg_engine_new every layer gets an algorithm (Winograd F(4x4,3x3), F(5x5,3x3) or F(6x6,3x3)
 * for stride 1, packed direct convolution otherwise), its weights are copied into that
 * algorithm's packed form (Winograd: U = G g G^T computed in double), and two ping-pong
 * activation buffers plus the Winograd V/M scratch are sized for max_batch. rvg_engine_run then
 * only moves data:
 *   input NCHW -> padded pack8 (see infer_impl.h) -> layers -> global average pool -> classifier.
 * Each phase of a layer is a parallel-for over independent units (tiles, 16-channel output
 * blocks x pixel ranges, Winograd points) on the engine's thread pool (pool.c), so all threads
 * stay busy at batch 1 and a thread the OS has descheduled holds nothing up.
 *
 * Output channels are handled in blocks of 16. A block only reads the input channels of the
 * groups its outputs belong to ([c0, c0 + nc)), with zero weights where a group does not apply,
 * so grouped convolution uses the same kernels as dense convolution.
 *
 * Not here: the kernels themselves (kern_body.h, kern_c.c, kern_avx2.c) and the reference
 * forward pass (engine_ref.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unistd.h>

#include "infer_impl.h"
#include "ops/conv2d_gemm_impl.h"
#include "rvg/infer.h"
#include "rvg/tensor.h"

typedef struct {
    rvg_infer_algo algo;
    int64_t C, K, G, stride, H, W, P, Q;
    int64_t CB, KB8, KB16;      /* ceil(C/8), ceil(K/8), ceil(K/16) */
    int64_t Hp, Wp;             /* input buffer geometry (padded pack8) */
    int64_t Hpo, Wpo;           /* output buffer geometry = next layer's input geometry */
    int m;                      /* Winograd output tile (4 or 6); input tile m + 2 */
    int64_t th, tw;             /* Winograd tiles per image, vertically and horizontally */
    int64_t *c0, *nc, *woff;    /* per 16-channel output block: first input channel, count,
                                   offset of its packed weights */
    int64_t wtot;               /* direct: total floats; Winograd: floats per point */
    float *w;                   /* direct: [woff + (tap*nc + c)*16 + l]; Winograd:
                                   [xi*wtot + woff + c*16 + l], NULL if every batch up to
                                   max_batch transforms on the fly (wino_otf) */
    float *wraw;                /* Winograd: untransformed, [9*woff + (c*9 + tap)*16 + l], for
                                   the on-the-fly transform at small batches (channel-major:
                                   one linear stream, not 9 strided ones); NULL if no batch
                                   does */
    float *bias;                /* (KB16*16), zero padded */
    int unrolled;               /* tiny planes (see unroll_ok): u is the layer as one dense
                                   matrix (K*P*Q, C*H*W), row (k, p, q), column (c, h, w),
                                   transposed and packed for the GEMM (pack_unrolled) */
    float *u;
    int64_t se_hidden;
    float *se_dw, *se_db, *se_uw, *se_ub; /* copies: (hid, K), (hid), (K, hid), (K) */
} layer_plan;

struct rvg_engine {
    const rvg__infer_kernels *kern; /* &kt */
    rvg__infer_kernels kt;
    const char *isa;
    int threads;
    rvg__pool *pool;
    int64_t nl, in_ch, H, W, max_batch, classes, k_last;
    layer_plan *L;
    float *fc_w, *fc_b;      /* (classes, k_last), (classes) */
    float *act[2];           /* ping-pong activations, act_floats each */
    int64_t seg;             /* layers [0, seg) run image by image when N > 1 (see run_net) */
    float *img[2];           /* their one-image ping-pong buffers */
    float *V, *M;            /* Winograd scratch: (n*n, CB, T, 8), (n*n, KB16*2, T, 8) */
    float *se_m, *se_h;      /* (max_batch, K8max), (max_batch, hid max) */
    float *wtmp;             /* per thread: one row of on-the-fly Winograd weights (2 blocks) */
    int64_t wtmp_floats;     /* per thread */
    int otf;                 /* -1 auto, 0 never, 1 always (RVG_INFER_OTF) */
    int fuse;                /* opts.fuse: 0 tuned (wino_tune), 1 one phase, -1 three phases */
    struct wtune *tune;      /* fuse 0: per layer, for N == 1 and N > 1 (wino_tune) */
    float *Vt, *Mt;          /* one-phase Winograd modes: per thread, its own V and M */
    int64_t vt_floats, mt_floats; /* per thread */
    int64_t *vstamp;         /* per thread (STAMP_PAD apart): layer run whose V it holds */
    int64_t layer_runs;      /* layers run so far: a fresh stamp for each */
    float *pooled;           /* (max_batch, KB8*8 of the last layer) */
    float *ux, *uy;          /* unrolled layers: (max_batch, C*H*W), (max_batch, K*P*Q) */
    float *upack;            /* unrolled layers: per thread, GEMM packing buffers */
    int64_t upack_floats;    /* per thread */
    size_t bytes;
    double *prof;            /* NULL, or per layer: ms in total and in 3 phases
                                (rvg_engine_profile) */
    int64_t prof_runs;       /* whole-network runs since the profile was switched on */
};

/* A layer whose one-image input is at least this big runs image by image at batch > 1, while the
 * image is hot in cache (see run_net). 256 KB: A0/B0 stages 0-2 and the first layer of stage 3. */
#define SEG_MIN_BYTES (256u << 10)

static void *ealloc(rvg_engine *e, size_t nbytes) {
    e->bytes += nbytes;
    return rvg_alloc(nbytes ? nbytes : 64);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int env_is(const char *name, const char *value) {
    const char *v = getenv(name);
    return v && strcmp(v, value) == 0;
}

static const char *const isa_names[] = {"auto", "portable", "avx2", "avx512", "avx512-twin"};

const char *rvg_infer_isa_name(rvg_infer_isa isa) {
    return (int)isa >= RVG_INFER_ISA_AUTO && (int)isa <= RVG_INFER_ISA_AVX512_TWIN ? isa_names[isa]
                                                                                  : "?";
}

int rvg_infer_isa_available(rvg_infer_isa isa) {
#ifdef RVG_HAVE_SIMD
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f");
#else
    int avx2 = 0, avx512 = 0;
#endif
    switch (isa) {
    case RVG_INFER_ISA_AUTO:
    case RVG_INFER_ISA_PORTABLE: return 1;
    case RVG_INFER_ISA_AVX2:
    case RVG_INFER_ISA_AVX512_TWIN: return avx2;
    case RVG_INFER_ISA_AVX512: return avx512;
    }
    return 0;
}

rvg_infer_isa rvg_infer_isa_best(void) {
    return rvg_infer_isa_available(RVG_INFER_ISA_AVX512) ? RVG_INFER_ISA_AVX512
           : rvg_infer_isa_available(RVG_INFER_ISA_AVX2) ? RVG_INFER_ISA_AVX2
                                                         : RVG_INFER_ISA_PORTABLE;
}

/* The kernel table of a set, or an error naming what the CPU lacks. AVX-512 takes the AVX2 table
 * and replaces its two micro-kernels (the transforms work on 8-lane pack8 vectors either way). */
static rvg_status pick_kernels(rvg_engine *e, rvg_infer_isa *isa_io) {
    rvg_infer_isa isa = *isa_io;
    if (isa == RVG_INFER_ISA_AUTO)
        isa = rvg_infer_isa_best();
    if (!rvg_infer_isa_available(isa))
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "rvg_engine_new: kernel set %s needs %s, which this %s", isa_names[isa],
                         isa == RVG_INFER_ISA_AVX512 ? "AVX-512F" : "AVX2 and FMA",
#ifdef RVG_HAVE_SIMD
                         "CPU lacks"
#else
                         "build (-DRVG_SIMD=OFF) leaves out"
#endif
        );
    e->isa = isa_names[isa];
    e->kt = rvg__infer_kernels_c;
#ifdef RVG_HAVE_SIMD
    if (isa != RVG_INFER_ISA_PORTABLE)
        e->kt = rvg__infer_kernels_avx2;
    if (isa == RVG_INFER_ISA_AVX512)
        rvg__infer_wide_avx512(&e->kt);
    if (isa == RVG_INFER_ISA_AVX512_TWIN)
        rvg__infer_wide_avx512_twin(&e->kt);
#endif
    e->kern = &e->kt;
    *isa_io = isa;
    return RVG_OK;
}

/* Floats between the point planes of V and M beyond a plane's size: one cache line. A plane is
 * often a multiple of 4 KiB (14x14 maps, 192 channels: 16 tiles x 192 = 3 pages per image), and
 * then the 36 points a tile transform writes or reads all fell in one L1 set. */
#define WINO_PLANE_PAD 16

/* Multiplications per output pixel-channel-pair, the cost model for picking F(4) or F(6). */
static double wino_cost(int64_t P, int64_t Q, int m) {
    int64_t th = (P + m - 1) / m, tw = (Q + m - 1) / m;
    return (double)((m + 2) * (m + 2)) * (double)(th * tw) / (double)(P * Q);
}

static rvg_infer_algo pick_algo(const rvg_infer_layer *L, int64_t P, int64_t Q,
                                rvg_infer_algo forced) {
    if (L->stride != 1)
        return RVG_INFER_ALGO_DIRECT;
    if (forced != RVG_INFER_ALGO_AUTO)
        return forced;
    /* Tiny inputs or channel counts: the transforms cost more than they save. */
    if (L->C / L->G < 8 || P * Q < 16)
        return RVG_INFER_ALGO_DIRECT;
    /* The larger tile must save 5% of the multiplications to be taken: it holds (m+2)^2/36
     * times the transformed weights of F(4) and rounds less exactly, so ties go to the smaller
     * one. 14x14 (A0/B0 stage 3): F(4) and F(6) 2.94 per output, F(5) 2.25 (9 tiles of 5x5);
     * 28x28 and 56x56: F(4) and F(5) 2.25, F(6) 2.04 (measured 10-15% faster than F(4)). */
    static const rvg_infer_algo by_m[3] = {RVG_INFER_ALGO_WINO4, RVG_INFER_ALGO_WINO5,
                                           RVG_INFER_ALGO_WINO6};
    int best = 4;
    for (int m = 5; m <= 6; m++)
        if (wino_cost(P, Q, m) < 0.95 * wino_cost(P, Q, best))
            best = m;
    return by_m[best - 4];
}

/* Output tile size of a Winograd algorithm. */
static int wino_m(rvg_infer_algo a) {
    return a == RVG_INFER_ALGO_WINO4 ? 4 : a == RVG_INFER_ALGO_WINO5 ? 5 : 6;
}

/* Below this many tiles a transformed weight is used by too few tiles to pay for reading it
 * (n^2/9 times the raw bytes) from memory; then transforming on the fly is cheaper. At batch 1
 * this covers A0/B0's 14x14 (9 tiles with F(5x5)) and 28x28 (25 tiles with F(6x6)) layers. */
enum { WINO_OTF_T = 32 };

/* Above this many bytes of pre-transformed weights a layer split into bands on several threads
 * transforms on the fly at any batch: in bands each thread reads all of a layer's weights, and
 * A0's stage 3 at batch 8 (7.2 MB per layer, 94 MB in all, streamed from memory on every run)
 * took 1.30 ms per layer that way against 1.01 ms transforming on the fly (see wino_mode_at). */
enum { WINO_OTF_BYTES = 4 << 20 };

enum { WINO_BAND_MIN = 12 }; /* one 12-tile AVX-512 register block per band at least */

/* Whether layer p at batch N has the tiles to run as bands, one per thread (WINO_BANDS, below;
 * whether it does also depends on opts.fuse and the tuning, which must not change the weights it
 * uses: all ways of running a layer give the same bits). */
static int wino_banded(const rvg_engine *e, const layer_plan *p, int64_t N) {
    int64_t T = N * p->th * p->tw;
    return e->threads > 1 && T >= WINO_BAND_MIN * e->threads && (N == 1 || T >= WINO_OTF_T);
}

/* Whether a Winograd layer transforms its weights on the fly at batch N: with few tiles, or in
 * bands with large weights. A layer keeps its pre-transformed weights only if some batch up to
 * max_batch runs without (A0's stage 3 would hold 94 MB of them). */
static int wino_otf(const rvg_engine *e, const layer_plan *p, int64_t N) {
    if (e->otf >= 0)
        return e->otf;
    int64_t nn = (int64_t)(p->m + 2) * (p->m + 2);
    int64_t bytes = nn * p->KB16 * 16 * (p->C / p->G) * (int64_t)sizeof(float);
    return N * p->th * p->tw < WINO_OTF_T || (wino_banded(e, p, N) && bytes > WINO_OTF_BYTES);
}

/* WINO_BLOCKS' per-thread stamps (rvg_engine.vstamp) lie this many int64 apart, one cache line,
 * so that threads do not share one. */
enum { STAMP_PAD = 8 };

/* How a Winograd layer runs at batch N (run_wino):
 * - WINO_PHASES: three phases, input transform, GEMMs, output transform, each a parallel-for
 *   over all threads (units: (block, tile); (point, tile chunk) or, on the fly, (block, row of
 *   points); (block, tile)). Whole batches with pre-transformed weights: the point-split GEMMs
 *   share out the streaming of the weights (A0's stage 3 at batch 8: 94 MB).
 * - WINO_BLOCKS (on the fly, more than one image or few tiles; A0's 14x14 layers at batch 1):
 *   one phase whose units are output blocks; each thread transforms the whole input itself.
 * - WINO_BANDS (several threads with at least WINO_BAND_MIN tiles each, of one image or, at
 *   N > 1, at least WINO_OTF_T tiles in all; A0's 56x56 and 28x28 layers at batch 1, also in the
 *   image-by-image layers of a batch, and its 14x14 layers at batch 8): one phase, one band of
 *   tiles per thread, which may cross images. With pre-transformed weights a band runs point
 *   by point, all output blocks of a point while its V rows stay in L1, so V is read once. (On one
 * thread a band is the whole layer, and the three phases' loop order, all output blocks per chunk
 * of tiles, reads V once: 0.37-0.40 against 0.42-0.43 ms for A0's stage1.1, `bench_infer --profile
 * --threads 1`.) The one-phase modes keep each thread's V and M lines to itself (task_wino_blocks
 * says why) and give the same results as the three phases, bit for bit: every output is the same
 * FMAs in the same order, however the tiles and blocks are split. Where a one-phase mode applies,
 * opts.fuse decides between it and WINO_PHASES (by default wino_tune measures both). */
typedef enum { WINO_PHASES, WINO_BLOCKS, WINO_BANDS } wino_mode;

static wino_mode wino_mode_at(const rvg_engine *e, const layer_plan *p, int64_t N) {
    if (e->fuse < 0)
        return WINO_PHASES;
    if (wino_banded(e, p, N))
        return WINO_BANDS;
    return wino_otf(e, p, N) ? WINO_BLOCKS : WINO_PHASES;
}

/* Point stride of a thread's M in the one-phase modes: up to 4 blocks of 8 channels (a gemm32
 * pair) of nt tiles; the plane padded as V's and M's are. */
static int64_t fused_ms(int64_t nt) {
    return 32 * nt + WINO_PLANE_PAD;
}

/* ---- tuning: one phase or three -----------------------------------------------------------
 * Which is faster depends on the layer and on the machine: on the 2-core Zen 5 machine, at
 * batch 1 on 2 threads, the one-phase modes took A0's 14x14 layers from 0.28 to 0.24 ms and its
 * 28x28 layers from 0.25 to 0.20, but made B0's (twice the channels: more duplicated work, the
 * same data to move between cores) 5-10% slower; and how much moving data between the cores
 * costs changed from hour to hour on that shared machine. So with opts.fuse = 0 the first
 * 2 * TUNE_SAMPLES runs of each layer (separately for N == 1 and N > 1) alternate the two ways
 * and time the layer; then it keeps the one with the smaller median. Results do not depend on
 * the choice. */
enum { TUNE_SAMPLES = 6 };

struct wtune {
    double ms[2][TUNE_SAMPLES]; /* [0]: three phases, [1]: one phase */
    int n[2];
    int choice; /* -1 while measuring */
};

static double median_of(double *v, int n) {
    for (int i = 1; i < n; i++) /* insertion sort: n is TUNE_SAMPLES */
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double x = v[j];
            v[j] = v[j - 1], v[j - 1] = x;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The tuning slot of layer p at batch N, or NULL where nothing is tuned. */
static struct wtune *wino_tune(const rvg_engine *e, const layer_plan *p, int64_t N) {
    if (e->fuse != 0 || !e->tune || wino_mode_at(e, p, N) == WINO_PHASES)
        return NULL;
    return &e->tune[2 * (p - e->L) + (N > 1)];
}

/* ---- tiny planes ------------------------------------------------------------------------------
 * At a 28x28 input the last layers of a RepVGG see 2x2 planes, where the direct kernel runs its
 * 16-channel x 6-pixel tiles almost empty and Winograd's 6x6 tiles hold 4 useful outputs. There
 * (H*W <= 9, P*Q*H*W <= 64, no groups) the layer is also kept as one dense matrix
 * U (K*P*Q, C*H*W): U[(k, p, q), (c, h, w)] = w[k, c, h - p*stride + 1, w - q*stride + 1] (zero
 * outside the kernel), 16 multiply-adds per (k, c) on a 2x2 plane instead of 36. At batch >=
 * UNROLL_MIN_BATCH the layer then runs as gather (padded pack8 -> rows of C*H*W), one GEMM over
 * the batch (the training convolution's packed GEMM, src/ops/conv2d_gemm.c, on this engine's
 * threads: units are column slabs of U), and scatter with bias and ReLU; below that batch the
 * GEMM's 6-row register tile would run mostly empty and the direct kernel is used. The training
 * path does the same (src/ops/conv2d_unrolled.c). */
enum { UNROLL_MIN_BATCH = 6, UNROLL_MAX_PQHW = 64, UNROLL_COLS = 3 * RVG__GEMM_NR };

static int unroll_ok(const layer_plan *p) {
    int64_t HW = p->H * p->W, PQ = p->P * p->Q;
    return p->G == 1 && HW <= 9 && PQ * HW <= UNROLL_MAX_PQHW;
}

/* U through the training path's builder (src/ops/conv2d_unrolled.c): same matrix, same layout;
 * then packed once into the GEMM's column panels of U^T (p->u), which the GEMM otherwise packed
 * on every run: 13.6% of A0's time at 28x28, batch 64, 2 threads (perf). Returns 0 on out of
 * memory. */
static int pack_unrolled(rvg_engine *e, layer_plan *p, const rvg_infer_layer *L) {
    rvg_conv_shape s = {.N = 1, .C = p->C, .H = p->H, .W = p->W, .K = p->K, .R = 3, .S = 3,
                        .P = p->P, .Q = p->Q, .stride = p->stride, .pad = 1, .G = 1};
    const int64_t CHW = p->C * p->H * p->W, KPQ = p->K * p->P * p->Q;
    float *u = rvg_alloc(sizeof(float) * (size_t)(KPQ * CHW));
    p->u = ealloc(e, sizeof(float) * rvg__conv_gemm_prepack_b_floats(CHW, KPQ));
    if (!u || !p->u) {
        rvg_free(u);
        return 0;
    }
    rvg__conv_unrolled_build(u, L->weight, &s);
    rvg__conv_gemm_prepack_b(p->u, 1, u, CHW, CHW, KPQ); /* op(B) = U^T: (CHW, KPQ) */
    rvg_free(u);
    return 1;
}

/* Packs layer weights for its algorithm; returns 0 on out of memory. */
static int pack_layer(rvg_engine *e, layer_plan *p, const rvg_infer_layer *L) {
    int64_t K = p->K, Cg = p->C / p->G, Kg = p->K / p->G;
    p->c0 = ealloc(e, sizeof(int64_t) * (size_t)p->KB16);
    p->nc = ealloc(e, sizeof(int64_t) * (size_t)p->KB16);
    p->woff = ealloc(e, sizeof(int64_t) * (size_t)p->KB16);
    p->bias = ealloc(e, sizeof(float) * (size_t)p->KB16 * 16);
    if (!p->c0 || !p->nc || !p->woff || !p->bias)
        return 0;
    int64_t tot = 0;
    for (int64_t kb = 0; kb < p->KB16; kb++) {
        int64_t klo = kb * 16, khi = (kb * 16 + 16 < K ? kb * 16 + 16 : K) - 1;
        p->c0[kb] = (klo / Kg) * Cg;
        p->nc[kb] = (khi / Kg - klo / Kg + 1) * Cg;
        p->woff[kb] = tot;
        tot += p->nc[kb] * 16 * (p->algo == RVG_INFER_ALGO_DIRECT ? 9 : 1);
    }
    p->wtot = tot;
    int wino = p->algo != RVG_INFER_ALGO_DIRECT, nn = wino ? (p->m + 2) * (p->m + 2) : 1;
    /* Winograd layers keep the transformed weights if some batch runs without the on-the-fly
     * transform, the raw ones if some batch runs with it */
    if (!wino || !wino_otf(e, p, e->max_batch)) {
        p->w = ealloc(e, sizeof(float) * (size_t)(tot * nn));
        if (!p->w)
            return 0;
    }
    if (wino && wino_otf(e, p, 1)) {
        p->wraw = ealloc(e, sizeof(float) * (size_t)(tot * 9));
        if (!p->wraw)
            return 0;
    }
    for (int64_t k = 0; k < K; k++)
        p->bias[k] = L->bias[k];
    static const double G4[6][3] = {{1. / 4, 0, 0},           {-1. / 6, -1. / 6, -1. / 6},
                                    {-1. / 6, 1. / 6, -1. / 6}, {1. / 24, 1. / 12, 1. / 6},
                                    {1. / 24, -1. / 12, 1. / 6}, {0, 0, 1}};
    static const double G5[7][3] = {{-1. / 2, 0, 0},          {-1. / 3, -1. / 3, -1. / 3},
                                    {1. / 9, -1. / 9, 1. / 9},   {1. / 36, 1. / 18, 1. / 9},
                                    {-1. / 60, 1. / 30, -1. / 15}, {32. / 45, 16. / 45, 8. / 45},
                                    {0, 0, 1}};
    static const double G6[8][3] = {{1, 0, 0},
                                    {-2. / 9, -2. / 9, -2. / 9},
                                    {-2. / 9, 2. / 9, -2. / 9},
                                    {1. / 90, 1. / 45, 2. / 45},
                                    {1. / 90, -1. / 45, 2. / 45},
                                    {32. / 45, 16. / 45, 8. / 45},
                                    {32. / 45, -16. / 45, 8. / 45},
                                    {0, 0, 1}};
    for (int64_t kb = 0; kb < p->KB16; kb++)
        for (int64_t l = 0; l < 16; l++) {
            int64_t k = kb * 16 + l;
            for (int64_t c = 0; c < p->nc[kb]; c++) {
                int64_t cin = p->c0[kb] + c; /* absolute input channel */
                double g[9] = {0};
                if (k < K && cin / Cg == k / Kg)
                    for (int i = 0; i < 9; i++)
                        g[i] = L->weight[(k * Cg + cin % Cg) * 9 + i];
                if (p->algo == RVG_INFER_ALGO_DIRECT) {
                    for (int i = 0; i < 9; i++)
                        p->w[p->woff[kb] + (i * p->nc[kb] + c) * 16 + l] = (float)g[i];
                    continue;
                }
                if (p->wraw)
                    for (int i = 0; i < 9; i++)
                        p->wraw[9 * p->woff[kb] + (c * 9 + i) * 16 + l] = (float)g[i];
                if (!p->w)
                    continue;
                int n = p->m + 2;
                const double(*Gm)[3] = p->m == 4 ? G4 : p->m == 5 ? G5 : G6;
                for (int i = 0; i < n; i++) {
                    double t[3]; /* row i of G g */
                    for (int b = 0; b < 3; b++)
                        t[b] = Gm[i][0] * g[b] + Gm[i][1] * g[3 + b] + Gm[i][2] * g[6 + b];
                    for (int j = 0; j < n; j++) /* (G g G^T)[i][j] */
                        p->w[(i * n + j) * p->wtot + p->woff[kb] + c * 16 + l] =
                            (float)(t[0] * Gm[j][0] + t[1] * Gm[j][1] + t[2] * Gm[j][2]);
                }
            }
        }
    if (p->unrolled && !pack_unrolled(e, p, L))
        return 0;
    if (L->se_hidden > 0) {
        size_t hk = (size_t)(L->se_hidden * K);
        p->se_dw = ealloc(e, sizeof(float) * hk);
        p->se_uw = ealloc(e, sizeof(float) * hk);
        p->se_db = ealloc(e, sizeof(float) * (size_t)L->se_hidden);
        p->se_ub = ealloc(e, sizeof(float) * (size_t)K);
        if (!p->se_dw || !p->se_uw || !p->se_db || !p->se_ub)
            return 0;
        memcpy(p->se_dw, L->se_down_w, sizeof(float) * hk);
        memcpy(p->se_uw, L->se_up_w, sizeof(float) * hk);
        memcpy(p->se_db, L->se_down_b, sizeof(float) * (size_t)L->se_hidden);
        memcpy(p->se_ub, L->se_up_b, sizeof(float) * (size_t)K);
    }
    return 1;
}

rvg_status rvg_engine_new_opts(rvg_engine **out, const rvg_infer_layer *layers, int64_t n_layers,
                               const float *fc_w, const float *fc_b, int64_t classes,
                               int64_t in_ch, int64_t H, int64_t W, int64_t max_batch,
                               int threads, const rvg_engine_opts *opts) {
    if (!out)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg_engine_new: out is NULL");
    *out = NULL;
    int64_t k_last;
    RVG_TRY(rvg_infer_check(layers, n_layers, in_ch, H, W, &k_last));
    if (!fc_w || !fc_b || classes < 1)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "rvg_engine_new: classifier needs fc_w, fc_b and classes >= 1 (got %lld)",
                         (long long)classes);
    if (max_batch < 1)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg_engine_new: max_batch %lld < 1",
                         (long long)max_batch);
    rvg_engine_opts o = {0};
    if (opts)
        o = *opts;
    if (env_is("RVG_INFER_ALGO", "direct"))
        o.algo = RVG_INFER_ALGO_DIRECT;
    else if (env_is("RVG_INFER_ALGO", "wino4"))
        o.algo = RVG_INFER_ALGO_WINO4;
    else if (env_is("RVG_INFER_ALGO", "wino5"))
        o.algo = RVG_INFER_ALGO_WINO5;
    else if (env_is("RVG_INFER_ALGO", "wino6"))
        o.algo = RVG_INFER_ALGO_WINO6;
    if (o.portable)
        o.isa = RVG_INFER_ISA_PORTABLE;
    const char *isa_env = getenv("RVG_INFER_ISA");
    if (isa_env && *isa_env) {
        int i = RVG_INFER_ISA_AVX512_TWIN;
        while (i > 0 && strcmp(isa_env, isa_names[i]) != 0)
            i--;
        if (i == 0)
            return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                             "RVG_INFER_ISA=%s: expected portable, avx2, avx512 or avx512-twin",
                             isa_env);
        o.isa = (rvg_infer_isa)i;
    }
    if (env_is("RVG_FORCE_REF", "1"))
        o.isa = RVG_INFER_ISA_PORTABLE;
    if ((int)o.algo < RVG_INFER_ALGO_AUTO || (int)o.algo > RVG_INFER_ALGO_WINO5)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg_engine_new: unknown algorithm %d",
                         (int)o.algo);
    if ((int)o.isa < RVG_INFER_ISA_AUTO || (int)o.isa > RVG_INFER_ISA_AVX512_TWIN)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg_engine_new: unknown kernel set %d",
                         (int)o.isa);

    rvg_engine *e = calloc(1, sizeof *e);
    if (!e)
        return rvg_error(RVG_STATUS_NO_MEMORY, "rvg_engine_new: out of memory");
    e->bytes = sizeof *e;
    rvg_status st = pick_kernels(e, &o.isa);
    if (st != RVG_OK) {
        free(e);
        return st;
    }
    if (threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        threads = nc > 0 ? (int)nc : 1;
    }
    e->pool = rvg__pool_new(threads);
    if (!e->pool)
        goto oom;
    e->threads = rvg__pool_threads(e->pool);
    e->nl = n_layers, e->in_ch = in_ch, e->H = H, e->W = W, e->max_batch = max_batch;
    e->otf = env_is("RVG_INFER_OTF", "0") ? 0 : env_is("RVG_INFER_OTF", "1") ? 1 : -1;
    e->fuse = env_is("RVG_INFER_FUSE", "0") ? -1 : env_is("RVG_INFER_FUSE", "1") ? 1 : o.fuse;
    if (e->fuse < -1 || e->fuse > 1) {
        int f = e->fuse;
        rvg_engine_free(e);
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg_engine_new: fuse %d not in -1..1", f);
    }
    e->classes = classes, e->k_last = k_last;
    e->L = calloc((size_t)n_layers, sizeof(layer_plan));
    if (!e->L)
        goto oom;

    /* Shapes and algorithms first: a layer's input geometry depends on its own algorithm. */
    int64_t h = H, w = W;
    size_t act = 0, vfl = 0, mfl = 0, vtf = 0, mtf = 0, kmax = 0, hmax = 0, uxf = 0, uyf = 0;
    for (int64_t i = 0; i < n_layers; i++) {
        layer_plan *p = &e->L[i];
        const rvg_infer_layer *L = &layers[i];
        p->C = L->C, p->K = L->K, p->G = L->G, p->stride = L->stride, p->H = h, p->W = w;
        p->P = (h - 1) / L->stride + 1, p->Q = (w - 1) / L->stride + 1;
        p->CB = (p->C + 7) / 8, p->KB8 = (p->K + 7) / 8, p->KB16 = (p->K + 15) / 16;
        p->algo = pick_algo(L, p->P, p->Q, o.algo);
        p->Hp = h + 2, p->Wp = w + 2;
        if (p->algo != RVG_INFER_ALGO_DIRECT) {
            p->m = wino_m(p->algo);
            p->th = (p->P + p->m - 1) / p->m, p->tw = (p->Q + p->m - 1) / p->m;
            p->Hp = p->th * p->m + 2, p->Wp = p->tw * p->m + 2;
            size_t nn = (size_t)((p->m + 2) * (p->m + 2));
            /* scratch for the largest batch of each mode: shared V and M for WINO_PHASES, a V
             * and an M per thread for the others (a band has at most ceil(T/threads) tiles) */
            for (int64_t N = max_batch; N >= 1; N--) {
                size_t T = (size_t)(N * p->th * p->tw), vt = T, mt = T;
                wino_mode mode = wino_mode_at(e, p, N);
                if (mode == WINO_PHASES || e->fuse == 0) { /* fuse 0: tuning tries both */
                    size_t vf = nn * (T * (size_t)p->CB * 8 + WINO_PLANE_PAD);
                    size_t mf = nn * (T * (size_t)p->KB16 * 16 + WINO_PLANE_PAD);
                    vfl = vf > vfl ? vf : vfl;
                    mfl = mf > mfl ? mf : mfl;
                }
                if (mode == WINO_PHASES)
                    continue;
                if (mode == WINO_BANDS)
                    vt = mt = (T + (size_t)e->threads - 1) / (size_t)e->threads;
                vt = nn * (vt * (size_t)p->CB * 8 + WINO_PLANE_PAD);
                if (mode == WINO_BANDS && !wino_otf(e, p, N)) /* all blocks at once */
                    mt = nn * (mt * (size_t)p->KB16 * 16 + WINO_PLANE_PAD);
                else
                    mt = nn * (size_t)fused_ms((int64_t)mt);
                vtf = vt > vtf ? vt : vtf;
                mtf = mt > mtf ? mt : mtf;
            }
        }
        p->unrolled =
            o.isa != RVG_INFER_ISA_PORTABLE && p->algo == RVG_INFER_ALGO_DIRECT && unroll_ok(p);
        if (p->unrolled) {
            if ((size_t)(p->C * p->H * p->W) > uxf)
                uxf = (size_t)(p->C * p->H * p->W);
            if ((size_t)(p->K * p->P * p->Q) > uyf)
                uyf = (size_t)(p->K * p->P * p->Q);
        }
        p->se_hidden = L->se_hidden;
        if ((size_t)p->KB8 * 8 > kmax)
            kmax = (size_t)p->KB8 * 8;
        if ((size_t)p->se_hidden > hmax)
            hmax = (size_t)p->se_hidden;
        h = p->P, w = p->Q;
    }
    for (int64_t i = 0; i < n_layers; i++) {
        layer_plan *p = &e->L[i];
        p->Hpo = i + 1 < n_layers ? e->L[i + 1].Hp : p->P + 2;
        p->Wpo = i + 1 < n_layers ? e->L[i + 1].Wp : p->Q + 2;
        size_t a_in = (size_t)(max_batch * p->CB * p->Hp * p->Wp * 8);
        size_t a_out = (size_t)(max_batch * p->KB8 * p->Hpo * p->Wpo * 8);
        act = a_in > act ? a_in : act;
        act = a_out > act ? a_out : act;
        if (!pack_layer(e, p, &layers[i]))
            goto oom;
    }
    for (int64_t i = 0; i < n_layers; i++) {
        const layer_plan *p = &e->L[i];
        if (p->algo != RVG_INFER_ALGO_DIRECT)
            for (int64_t kb = 0; kb < p->KB16; kb++)
                if (2 * (p->m + 2) * WROW_STRIDE(p->nc[kb]) > e->wtmp_floats) /* a pair */
                    e->wtmp_floats = 2 * (p->m + 2) * WROW_STRIDE(p->nc[kb]);
    }
    e->wtmp_floats = (e->wtmp_floats + 15) / 16 * 16; /* keep each thread's row 64-byte aligned */
    e->wtmp = ealloc(e, sizeof(float) * (size_t)(e->wtmp_floats * e->threads + 16));
    if (!e->wtmp)
        goto oom;
    if (e->fuse == 0) {
        e->tune = ealloc(e, sizeof(struct wtune) * (size_t)(2 * n_layers));
        if (!e->tune)
            goto oom;
        for (int64_t i = 0; i < 2 * n_layers; i++)
            e->tune[i] = (struct wtune){.choice = -1};
    }
    if (vtf) { /* each thread's part 64-byte aligned */
        e->vt_floats = (int64_t)(vtf + 15) / 16 * 16, e->mt_floats = (int64_t)(mtf + 15) / 16 * 16;
        e->Vt = ealloc(e, sizeof(float) * (size_t)(e->vt_floats * e->threads));
        e->Mt = ealloc(e, sizeof(float) * (size_t)(e->mt_floats * e->threads));
        e->vstamp = ealloc(e, sizeof(int64_t) * (size_t)(STAMP_PAD * e->threads));
        if (!e->Vt || !e->Mt || !e->vstamp)
            goto oom;
        memset(e->vstamp, 0, sizeof(int64_t) * (size_t)(STAMP_PAD * e->threads));
    }
    /* The leading layers whose one-image input is large (early, wide-map, small-weight layers)
     * form the image-by-image segment; see run_net. */
    size_t img = 0;
    while (e->seg < n_layers - 1) {
        const layer_plan *p = &e->L[e->seg];
        size_t a_in = (size_t)(p->CB * p->Hp * p->Wp * 8);
        size_t a_out = (size_t)(p->KB8 * p->Hpo * p->Wpo * 8);
        if (a_in * sizeof(float) < (o.seg_bytes > 0 ? (size_t)o.seg_bytes : SEG_MIN_BYTES))
            break;
        img = a_in > img ? a_in : img;
        img = a_out > img ? a_out : img;
        e->seg++;
    }
    if (e->seg > 0) {
        e->img[0] = ealloc(e, sizeof(float) * img);
        e->img[1] = ealloc(e, sizeof(float) * img);
        if (!e->img[0] || !e->img[1])
            goto oom;
    }
    e->act[0] = ealloc(e, sizeof(float) * act);
    e->act[1] = ealloc(e, sizeof(float) * act);
    e->V = vfl ? ealloc(e, sizeof(float) * vfl) : NULL;
    e->M = mfl ? ealloc(e, sizeof(float) * mfl) : NULL;
    if (uxf) {
        e->upack_floats = (int64_t)rvg__conv_sgemm_serial_pack_floats();
        e->ux = ealloc(e, sizeof(float) * (size_t)max_batch * uxf);
        e->uy = ealloc(e, sizeof(float) * (size_t)max_batch * uyf);
        e->upack = ealloc(e, sizeof(float) * (size_t)(e->upack_floats * e->threads));
        if (!e->ux || !e->uy || !e->upack)
            goto oom;
    }
    e->se_m = ealloc(e, sizeof(float) * (size_t)max_batch * kmax);
    e->se_h = ealloc(e, sizeof(float) * (size_t)max_batch * (hmax ? hmax : 1));
    e->pooled = ealloc(e, sizeof(float) * (size_t)max_batch * kmax);
    e->fc_w = ealloc(e, sizeof(float) * (size_t)(classes * k_last));
    e->fc_b = ealloc(e, sizeof(float) * (size_t)classes);
    if (!e->act[0] || !e->act[1] || (vfl && !e->V) || (mfl && !e->M) || !e->se_m || !e->se_h ||
        !e->pooled || !e->fc_w || !e->fc_b)
        goto oom;
    memcpy(e->fc_w, fc_w, sizeof(float) * (size_t)(classes * k_last));
    memcpy(e->fc_b, fc_b, sizeof(float) * (size_t)classes);
    *out = e;
    return RVG_OK;
oom:
    rvg_engine_free(e);
    return rvg_error(RVG_STATUS_NO_MEMORY, "rvg_engine_new: out of memory");
}

rvg_status rvg_engine_new(rvg_engine **out, const rvg_infer_layer *layers, int64_t n_layers,
                          const float *fc_w, const float *fc_b, int64_t classes, int64_t in_ch,
                          int64_t H, int64_t W, int64_t max_batch, int threads) {
    return rvg_engine_new_opts(out, layers, n_layers, fc_w, fc_b, classes, in_ch, H, W, max_batch,
                               threads, NULL);
}

void rvg_engine_free(rvg_engine *e) {
    if (!e)
        return;
    if (e->L)
        for (int64_t i = 0; i < e->nl; i++) {
            layer_plan *p = &e->L[i];
            rvg_free(p->c0), rvg_free(p->nc), rvg_free(p->woff), rvg_free(p->bias);
            rvg_free(p->w), rvg_free(p->wraw), rvg_free(p->u);
            rvg_free(p->se_dw), rvg_free(p->se_db), rvg_free(p->se_uw), rvg_free(p->se_ub);
        }
    free(e->L);
    rvg__pool_free(e->pool);
    rvg_free(e->img[0]), rvg_free(e->img[1]);
    rvg_free(e->act[0]), rvg_free(e->act[1]), rvg_free(e->V), rvg_free(e->M);
    rvg_free(e->se_m), rvg_free(e->se_h), rvg_free(e->pooled), rvg_free(e->wtmp);
    rvg_free(e->Vt), rvg_free(e->Mt), rvg_free(e->vstamp), rvg_free(e->tune);
    free(e->prof);
    rvg_free(e->fc_w), rvg_free(e->fc_b);
    rvg_free(e->ux), rvg_free(e->uy), rvg_free(e->upack);
    free(e);
}

size_t rvg_engine_peak_bytes(const rvg_engine *e) { return e ? e->bytes : 0; }

rvg_infer_algo rvg_engine_layer_algo(const rvg_engine *e, int64_t i) {
    return e && i >= 0 && i < e->nl ? e->L[i].algo : RVG_INFER_ALGO_AUTO;
}

const char *rvg_engine_isa(const rvg_engine *e) { return e ? e->isa : ""; }

const char *rvg_infer_algo_name(rvg_infer_algo a) {
    switch (a) {
    case RVG_INFER_ALGO_AUTO: return "auto";
    case RVG_INFER_ALGO_DIRECT: return "direct";
    case RVG_INFER_ALGO_WINO4: return "wino4";
    case RVG_INFER_ALGO_WINO5: return "wino5";
    case RVG_INFER_ALGO_WINO6: return "wino6";
    }
    return "?";
}

int64_t rvg_engine_image_layers(const rvg_engine *e) { return e ? e->seg : 0; }

int64_t rvg_engine_layers(const rvg_engine *e) { return e ? e->nl : 0; }

/* ---- run ------------------------------------------------------------------------------------- */
/* Each phase is a task function over a range of units, run by rvg__pool_for. */

typedef struct {
    const rvg_engine *e;
    const layer_plan *p;
    const float *x; /* layer input (padded pack8) or the NCHW network input */
    float *y;       /* layer output */
    int64_t N;
    int64_t nz;     /* leading units of a phase that zero the output border (see zero_units) */
    int64_t seq;    /* this layer run's stamp (rvg_engine.layer_runs; see task_wino_blocks) */
    float *aux;     /* feat / logits */
} task;

/* Zeroes everything of output block u (of N*KB8) outside the (P, Q) interior at (1, 1). */
static void zero_border(float *y, int64_t u, int64_t P, int64_t Q, int64_t Hp, int64_t Wp) {
    float *b = y + u * Hp * Wp * 8;
    memset(b, 0, sizeof(float) * (size_t)(Wp * 8));
    for (int64_t r = 1; r <= P; r++) {
        memset(b + r * Wp * 8, 0, sizeof(float) * 8);
        memset(b + (r * Wp + Q + 1) * 8, 0, sizeof(float) * (size_t)((Wp - Q - 1) * 8));
    }
    memset(b + (P + 1) * Wp * 8, 0, sizeof(float) * (size_t)((Hp - P - 1) * Wp * 8));
}

/* Units [0, nz) of a layer's first phase zero the output border (disjoint from what the phase
 * computes); returns the first unit index that is real work. */
static int64_t zero_units(const task *t, int64_t b, int64_t e) {
    const layer_plan *p = t->p;
    for (; b < e && b < t->nz; b++)
        zero_border(t->y, b, p->P, p->Q, p->Hpo, p->Wpo);
    return b;
}

enum { PACK_ROWS = 16 }; /* padded rows per input-packing unit */

static void task_pack_input(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const rvg_engine *en = t->e;
    const layer_plan *f = &en->L[0];
    int64_t nu = (f->Hp + PACK_ROWS - 1) / PACK_ROWS; /* units per image */
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / nu, r0 = (u % nu) * PACK_ROWS;
        int64_t r1 = r0 + PACK_ROWS < f->Hp ? r0 + PACK_ROWS : f->Hp;
        en->kern->pack_input(t->y + n * f->CB * f->Hp * f->Wp * 8,
                             t->x + n * en->in_ch * en->H * en->W, en->in_ch, en->H, en->W, f->Hp,
                             f->Wp, r0, r1);
    }
}

static int64_t pack_units(const rvg_engine *e, int64_t N) {
    return N * ((e->L[0].Hp + PACK_ROWS - 1) / PACK_ROWS);
}

/* Direct convolution. Units are (16-channel block, or a pair with direct32; range of PR output
 * pixels of the batch); the pixels of a range are processed in chunks of up to direct_px
 * (crossing output rows and images; 6 pixels fill the AVX2 kernel's registers, 12 the AVX-512
 * one's), and the input channels in blocks of CBLK whose packed weights (CBLK*9*16 floats per
 * 16 output channels) stay in L1 while every chunk of the range passes over them; the partial
 * sums wait in the output buffer between channel blocks. */
enum { DIRECT_PR = 48, DIRECT_CBLK = 24 };

/* Pixel ranges of the direct convolution. The pixels of all N images form one sequence (image,
 * row, column), cut into ranges of DIRECT_PR, so a small map at a large batch (A0 at 28x28,
 * batch 64: stage3.0 has 4 output pixels per image) fills the kernel's 6-pixel chunks across
 * images instead of running one short chunk per image; a pixel's sum does not depend on its
 * chunk. */
static int64_t direct_ranges(const layer_plan *p, int64_t N) {
    int64_t nr = N * p->P * p->Q / DIRECT_PR;
    return nr > 0 ? nr : 1;
}

/* Output blocks per direct unit: 2 (one direct32 call, or two direct16 calls where the pair
 * does not qualify) when the kernel set has direct32, else 1. */
static int64_t direct_step(const rvg_engine *e) { return e->kern->direct32 ? 2 : 1; }

/* Whether 16-channel blocks kb and kb + 1 can run as one direct32 call (infer_impl.h). */
static int direct_pair(const rvg_engine *e, const layer_plan *p, int64_t kb) {
    return e->kern->direct32 && kb + 1 < p->KB16 && 2 * kb + 3 < p->KB8 &&
           p->c0[kb] == p->c0[kb + 1] && p->nc[kb] == p->nc[kb + 1];
}

/* nkb (1 or 2, see direct_pair) 16-channel blocks from kb over output pixels [px0, px1). */
static void direct_blocks(const task *t, int64_t kb, int nkb, int64_t px0, int64_t px1) {
    const layer_plan *p = t->p;
    const rvg__infer_kernels *k = t->e->kern;
    int relu = p->se_hidden == 0;
    int64_t xcs = p->Hp * p->Wp * 8, ycs = p->Hpo * p->Wpo * 8, PQ = p->P * p->Q;
    /* image 0's input channel block and output blocks; pixel offsets carry the image */
    const float *xs = t->x + (p->c0[kb] / 8) * xcs;
    float *y0 = t->y + 2 * kb * ycs;
    float *y1 = 2 * kb + 1 < p->KB8 ? y0 + ycs : NULL;
    /* chunks within a range are balanced, so a 7x7 map runs as 4 chunks of 6 and 5 of 5
     * instead of 8 of 6 and a slow one of 1 */
    int64_t nc = p->nc[kb], nch = (px1 - px0 + k->direct_px - 1) / k->direct_px;
    /* input (top-left tap) and output offsets of the range's pixels, computed once for all
     * channel blocks by stepping (image, row, column) counters: divisions per pixel in the
     * chunk loop cost as much as a stem chunk's FMAs. A range holds fewer than 2*DIRECT_PR
     * pixels: nr = floor(TP / DIRECT_PR), so the last one takes DIRECT_PR + TP % DIRECT_PR. */
    int64_t ib[2 * DIRECT_PR], ob[2 * DIRECT_PR];
    int64_t n = px0 / PQ, pp = px0 % PQ / p->Q, qq = px0 % p->Q;
    for (int64_t j = 0; j < px1 - px0; j++) {
        ib[j] = n * p->CB * xcs + (pp * p->stride * p->Wp + qq * p->stride) * 8;
        ob[j] = n * p->KB8 * ycs + ((pp + 1) * p->Wpo + qq + 1) * 8;
        if (++qq == p->Q && (qq = 0, ++pp == p->P))
            pp = 0, n++;
    }
    /* a padding half-block (y1 NULL) has nowhere to keep partial sums: one channel block */
    int64_t cblk = y1 ? DIRECT_CBLK : nc;
    for (int64_t c = 0; c < nc; c += cblk) {
        int64_t c_hi = c + cblk < nc ? c + cblk : nc;
        /* Prefetch the next weight block while this one runs: the rest of this call's
         * channels, else the first block of the next 16 (32) output channels (usually this
         * thread's next unit). In a layer with few output pixels per weight (A0 stage4.0:
         * 192->1280 on a 7x7 output, 8.8 MB of weights, each used by 49 pixels) the first
         * chunk of every block otherwise waited on L3/DRAM for 216 lines in 9 strided runs
         * that the hardware prefetcher does not follow (192->1280 s2 14x14, 1 thread,
         * minimum CPU time of 4 x 20 runs: 5.27 ms without, 3.29 ms with). Each chunk takes
         * a share of the block's channels, for every tap. */
        int64_t nb = -1, wnn = 0, nlo = 0;
        if (c_hi < nc)
            nb = kb, wnn = nc, nlo = c_hi;
        else if (kb + nkb < p->KB16)
            nb = kb + nkb, wnn = p->nc[nb], nlo = 0;
        const float *wnx = nb >= 0 ? p->w + p->woff[nb] : NULL;
        const float *wnx2 = nb >= 0 && nkb == 2 && nb + 1 < p->KB16 && p->nc[nb + 1] == wnn
                                ? p->w + p->woff[nb + 1]
                                : NULL;
        int64_t npf = wnx ? (nlo + DIRECT_CBLK < wnn ? DIRECT_CBLK : wnn - nlo) : 0;
        for (int64_t ch = 0; ch < nch; ch++) {
            int64_t k0 = ch * npf / nch;
            int64_t j0 = ch * (px1 - px0) / nch, nq = (ch + 1) * (px1 - px0) / nch - j0;
            /* and the next chunk's input, within this channel block */
            int64_t nq_next = ch + 1 < nch ? (ch + 2) * (px1 - px0) / nch - j0 - nq : 0;
            rvg__prefetch_hint pf = {wnx ? wnx + (nlo + k0) * 16 : NULL,
                                     wnx2 ? wnx2 + (nlo + k0) * 16 : NULL, wnn * 16,
                                     (ch + 1) * npf / nch - k0, ib + j0 + nq, nq_next};
            if (nkb == 2)
                k->direct32(y0, ycs, ob + j0, xs, ib + j0, nq, p->c0[kb] % 8, xcs, p->Wp,
                            p->w + p->woff[kb], nc, p->bias + kb * 16, c, c_hi, c == 0,
                            relu && c_hi == nc, &pf);
            else
                k->direct16(y0, y1, ob + j0, xs, ib + j0, nq, p->c0[kb] % 8, xcs, p->Wp,
                            p->w + p->woff[kb], nc, p->bias + kb * 16, c, c_hi, c == 0,
                            relu && c_hi == nc, &pf);
        }
    }
}

/* Whether a direct layer's units go range-major, (pixel range, block) instead of (block, pixel
 * range). The pool gives each thread a contiguous part of the units, so range-major splits the
 * output by rows (each thread reads all the weights) and block-major by channels (each thread
 * reads the whole input); the smaller of the two is what both threads read. Range-major also
 * keeps a band of rows on one thread from layer to layer where the Winograd layers between run
 * in bands (wino_mode_at), so that only the bands' edges cross cores: single images whose input
 * is larger than the weights (A0/B0's stem and stages 1.0 and 2.0, also in the image-by-image
 * layers of a batch). A0 at batch 1 on 2 threads (`bench_infer --profile`, 2 alternating runs):
 * stem 0.33-0.34 -> 0.27 ms, stage1.0 0.50-0.53 -> 0.44-0.46, and the following 56x56 layer
 * 0.33 -> 0.30 (its input now mostly from its own core). */
static int direct_range_major(const layer_plan *p, int64_t N) {
    return N == 1 && p->CB * p->Hp * p->Wp * 8 >= 9 * p->KB16 * 16 * p->C;
}

static void task_direct(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    int64_t nr = direct_ranges(p, t->N), TP = t->N * p->P * p->Q;
    int64_t step = direct_step(t->e);
    int64_t ng = (p->KB16 + step - 1) / step;
    int rm = direct_range_major(p, t->N);
    for (int64_t u = zero_units(t, b, e) - t->nz; u < e - t->nz; u++) {
        int64_t r = rm ? u / ng : u % nr, kb = (rm ? u % ng : u / nr) * step;
        /* ranges of DIRECT_PR pixels (8 full chunks of 6 with AVX2's direct_px, 4 of 12 with
         * AVX-512's), the last one taking the remainder */
        int64_t px0 = r * DIRECT_PR, px1 = r + 1 < nr ? px0 + DIRECT_PR : TP;
        if (direct_pair(t->e, p, kb))
            direct_blocks(t, kb, 2, px0, px1);
        else
            for (int64_t k = kb; k < kb + step && k < p->KB16; k++)
                direct_blocks(t, k, 1, px0, px1);
    }
}

static void run_direct(task *t) {
    const layer_plan *p = t->p;
    int64_t step = direct_step(t->e), ng = (p->KB16 + step - 1) / step;
    t->nz = t->N * p->KB8;
    rvg__pool_for(t->e->pool, t->nz + ng * direct_ranges(p, t->N), 1, task_direct, t);
}

/* Winograd geometry of a layer for a batch of N. */
typedef struct {
    int m, f;                 /* output tile, kernel index (m - 4) */
    int64_t nn, tpi, T;       /* points, tiles per image, tiles */
    int64_t vs, ms, bs;       /* plane strides of V and M, block stride (T*8) in both */
    int64_t nch;              /* GEMM tile chunks */
} wgeom;

enum { WINO_TC = 48 }; /* tiles per GEMM unit: U's 16-channel slice stays in L1 across them */

static wgeom wino_geom(const layer_plan *p, int64_t N) {
    wgeom g;
    g.m = p->m, g.f = p->m - 4, g.nn = (int64_t)(p->m + 2) * (p->m + 2);
    g.tpi = p->th * p->tw, g.T = N * g.tpi;
    g.vs = g.T * p->CB * 8 + WINO_PLANE_PAD, g.ms = g.T * p->KB16 * 16 + WINO_PLANE_PAD;
    g.bs = g.T * 8;
    g.nch = (g.T + WINO_TC - 1) / WINO_TC;
    return g;
}

/* V (nn, CB, T, 8) and M (nn, KB16*2, T, 8): a point's plane, then channel blocks of 8. The
 * transforms run block-major over units (block, tile), so the n^2 write (read) streams of
 * consecutive units advance through consecutive 32-byte slots: tile-major order left ~900
 * half-written cache lines in flight per tile and cost a third of the layer at batch 8. */
/* Input transform of channel block cb of tile tt into V, which points at the tile's slot (point
 * and block strides vs, vbs). */
static inline void wino_in_tile(const task *t, const wgeom *g, float *V, int64_t vs, int64_t vbs,
                                int64_t cb, int64_t tt) {
    const layer_plan *p = t->p;
    int64_t xcs = p->Hp * p->Wp * 8;
    int64_t img = tt / g->tpi, ty = (tt % g->tpi) / p->tw, tx = tt % p->tw;
    t->e->kern->wino_in[g->f](V, vs, vbs,
                              t->x + (img * p->CB + cb) * xcs + (ty * g->m * p->Wp + tx * g->m) * 8,
                              p->Wp, xcs, 1);
}

/* Output transform (+ bias, ReLU) of 8-channel block b8 of tile tt from M, which points at the
 * block's and tile's slot (point and block strides ms, mbs). */
static inline void wino_out_tile(const task *t, const wgeom *g, const float *M, int64_t ms,
                                 int64_t mbs, int64_t b8, int64_t tt) {
    const layer_plan *p = t->p;
    int64_t ycs = p->Hpo * p->Wpo * 8;
    int64_t img = tt / g->tpi, ty = (tt % g->tpi) / p->tw, tx = tt % p->tw;
    int mh = (int)(p->P - ty * g->m < g->m ? p->P - ty * g->m : g->m);
    int mw = (int)(p->Q - tx * g->m < g->m ? p->Q - tx * g->m : g->m);
    t->e->kern->wino_out[g->f](
        t->y + (img * p->KB8 + b8) * ycs + ((ty * g->m + 1) * p->Wpo + tx * g->m + 1) * 8, p->Wpo,
        ycs, M, ms, mbs, p->bias + b8 * 8, 1, mh, mw, p->se_hidden == 0);
}

static void task_wino_in(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    wgeom g = wino_geom(t->p, t->N);
    for (int64_t u = zero_units(t, b, e) - t->nz; u < e - t->nz; u++) {
        int64_t cb = u / g.T, tt = u % g.T;
        wino_in_tile(t, &g, t->e->V + cb * g.bs + tt * 8, g.vs, g.bs, cb, tt);
    }
}

/* Whether 16-channel blocks kb and kb + 1 of a Winograd layer run as one gemm32 call: the set
 * has it and they read the same input channels (always, without groups). */
static int wino_pair(const rvg_engine *e, const layer_plan *p, int64_t kb) {
    return e->kern->gemm32 && kb + 1 < p->KB16 && p->c0[kb] == p->c0[kb + 1] &&
           p->nc[kb] == p->nc[kb + 1];
}

/* Units are (point, tile chunk); each runs all 16-channel blocks over its chunk, so the chunk of
 * V (48 tiles x C) is read from L3 once and stays in L1/L2 while the point's weights stream.
 * (A0 batch 8 measured the same as with (point, block, chunk) units; kept for the lower
 * traffic.) Blocks go in pairs where the kernel set has gemm32. */
static void task_wino_gemm(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    const rvg__infer_kernels *k = t->e->kern;
    wgeom g = wino_geom(p, t->N);
    for (int64_t u = b; u < e; u++) {
        int64_t ch = u % g.nch, xi = u / g.nch;
        int64_t t0 = ch * WINO_TC, nt = g.T - t0 < WINO_TC ? g.T - t0 : WINO_TC;
        for (int64_t kb = 0; kb < p->KB16;) {
            float *M = t->e->M + xi * g.ms + 2 * kb * g.bs + t0 * 8;
            const float *V = t->e->V + xi * g.vs + (p->c0[kb] / 8) * g.bs + t0 * 8;
            const float *U = p->w + xi * p->wtot + p->woff[kb];
            if (wino_pair(t->e, p, kb)) {
                k->gemm32(M, g.bs, V, g.bs, p->c0[kb] % 8, U, p->woff[kb + 1] - p->woff[kb],
                          p->nc[kb], nt);
                kb += 2;
            } else {
                k->gemm16(M, g.bs, V, g.bs, p->c0[kb] % 8, U, p->nc[kb], nt);
                kb += 1;
            }
        }
    }
}

static void task_wino_out(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    wgeom g = wino_geom(t->p, t->N);
    for (int64_t u = b; u < e; u++) {
        int64_t kb = u / g.T, tt = u % g.T;
        wino_out_tile(t, &g, t->e->M + kb * g.bs + tt * 8, g.ms, g.bs, kb, tt);
    }
}

/* Prefetches the 64-byte lines [q0, q1) of w toward L2 (see task_direct). */
static void prefetch_lines(const float *w, int64_t q0, int64_t q1) {
#if defined(__GNUC__)
    for (int64_t q = q0; q < q1; q++)
        __builtin_prefetch(w + q * 16, 0, 1);
#else
    (void)w, (void)q0, (void)q1;
#endif
}

/* Output blocks per on-the-fly unit: 2 where the kernel set has gemm32 (see wino_pair). */
static int64_t otf_step(const rvg_engine *e) { return e->kern->gemm32 ? 2 : 1; }

/* Output blocks per unit of WINO_BLOCKS: pairs, unless single blocks share out better between
 * the threads: A0's 96-channel layers as 3 pairs would run 2 + 1 on 2 threads, as 6 single
 * blocks they run 3 + 3. */
static int64_t blocks_step(const rvg_engine *e, const layer_plan *p) {
    int64_t nt = e->threads, pairs = (p->KB16 + 1) / 2;
    if (otf_step(e) == 1 || (pairs + nt - 1) / nt * 2 > (p->KB16 + nt - 1) / nt)
        return 1;
    return 2;
}

/* The GEMMs of output blocks [kb0, kb1) (one 16-channel block or a gemm32 pair) over nt tiles,
 * for the points xi of row i (row >= 0: on the fly, from the raw weights, transformed here into
 * the thread's U) or for all points (row < 0: from the pre-transformed weights). V and M point at
 * the first tile of point 0, channel block 0 (V) and 8-channel block 2*kb0 (M); vs, ms are their
 * point strides, vbs, mbs their block strides. On the fly, the row's weights are prefetched a
 * slice per GEMM: at batch 1 a layer's raw weights come from DRAM (A0's weights, 33 MB, do not
 * stay in L3 from one image to the next), and the first row of each block waited for them; so
 * each row also prefetches 1/n of the next blocks' raw weights. */
static void wino_gemms(const task *t, const wgeom *g, const float *V, int64_t vs, int64_t vbs,
                       float *M, int64_t ms, int64_t mbs, float *U, int64_t kb0, int64_t kb1,
                       int row, int64_t nt) {
    const layer_plan *p = t->p;
    const rvg_engine *en = t->e;
    const rvg__infer_kernels *k = en->kern;
    int n = g->m + 2;
    int64_t step = kb1 - kb0;
    int pair = step == 2 && wino_pair(en, p, kb0);
    int64_t us = n * WROW_STRIDE(p->nc[kb0]), nl = 0; /* nl: lines of the next blocks */
    const float *nx = p->wraw; /* the next blocks' raw weights (NULL if never on the fly) */
    if (row >= 0) {
        nx += kb1 < p->KB16 ? 9 * p->woff[kb1] : 0;
        for (int64_t kb = kb0; kb < kb1; kb++) /* block kb's row at U + (kb - kb0) * us */
            k->wino_wrow(U + (kb - kb0) * us, p->wraw + 9 * p->woff[kb], p->nc[kb], n, row);
        for (int64_t kb = kb1; kb < kb1 + step && kb < p->KB16; kb++)
            nl += 9 * p->nc[kb];
    }
    for (int64_t xi = row >= 0 ? row * n : 0; xi < (row >= 0 ? row * n + n : g->nn); xi++) {
        if (row >= 0)
            prefetch_lines(nx, xi * nl / g->nn, (xi + 1) * nl / g->nn);
        for (int64_t kb = kb0; kb < kb1; kb += pair ? 2 : 1) {
            float *Mx = M + xi * ms + 2 * (kb - kb0) * mbs;
            const float *Vx = V + xi * vs + (p->c0[kb] / 8) * vbs;
            const float *Uk = row >= 0 ? U + (kb - kb0) * us + (xi % n) * WROW_STRIDE(p->nc[kb])
                                       : p->w + xi * p->wtot + p->woff[kb];
            int64_t ustep = row >= 0 ? us : p->woff[kb + pair] - p->woff[kb];
            if (pair)
                k->gemm32(Mx, mbs, Vx, vbs, p->c0[kb] % 8, Uk, ustep, p->nc[kb], nt);
            else
                k->gemm16(Mx, mbs, Vx, vbs, p->c0[kb] % 8, Uk, p->nc[kb], nt);
        }
    }
}

/* Three-phase on-the-fly GEMMs: units are (16- or 32-channel block, row i of points); each
 * transforms its weights for the n points of row i into thread-local scratch (from the 9/n^2
 * smaller raw weights) and runs their GEMMs over all tiles. */
static void task_wino_gemm_otf(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const rvg_engine *en = t->e;
    wgeom g = wino_geom(t->p, t->N);
    int n = g.m + 2;
    int64_t step = otf_step(en);
    float *U = en->wtmp + rvg__pool_tid_in(en->pool) * en->wtmp_floats;
    for (int64_t u = b; u < e; u++) {
        int64_t kb0 = u / n * step, kb1 = kb0 + step < t->p->KB16 ? kb0 + step : t->p->KB16;
        wino_gemms(t, &g, en->V, g.vs, g.bs, en->M + 2 * kb0 * g.bs, g.ms, g.bs, U, kb0, kb1,
                   (int)(u % n), g.T);
    }
}

/* Input transform of all channel blocks of tiles [tt0, tt1) into V (tile tt0 first; point and
 * block strides vs, vbs). */
static void wino_in_tiles(const task *t, const wgeom *g, float *V, int64_t vs, int64_t vbs,
                          int64_t tt0, int64_t tt1) {
    for (int64_t cb = 0; cb < t->p->CB; cb++)
        for (int64_t tt = tt0; tt < tt1; tt++)
            wino_in_tile(t, g, V + cb * vbs + (tt - tt0) * 8, vs, vbs, cb, tt);
}

/* Output transform (+ bias, ReLU) of 8-channel blocks [b0, b1) of tiles [tt0, tt1), from M
 * (tile tt0 of block b0 first; point and block strides ms, mbs). */
static void wino_out_tiles(const task *t, const wgeom *g, const float *M, int64_t ms, int64_t mbs,
                           int64_t b0, int64_t b1, int64_t tt0, int64_t tt1) {
    for (int64_t b8 = b0; b8 < b1; b8++)
        for (int64_t tt = tt0; tt < tt1; tt++)
            wino_out_tile(t, g, M + (b8 - b0) * mbs + (tt - tt0) * 8, ms, mbs, b8, tt);
}

/* WINO_BLOCKS (see wino_mode_at). Split into three phases, each over all threads, every GEMM
 * unit read V (all channels of a point) that both cores wrote, and the output transform read M
 * that the other core wrote; on the Zen 5 machine a line the other core has just written reads
 * at ~37 GB/s against ~100 from the reader's own L2, and A0's stage 3 ran 1.4x faster on 2
 * threads than on 1. Here a thread first transforms the whole input into its own V (the input
 * transform is ~7% of such a layer: doing it once per thread costs less than sharing it), then
 * for each unit (output block or pair) it claims runs the weight transform, the GEMMs into its
 * own M and the output transform. Only the layer's input crosses cores. */
static void task_wino_blocks(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    const rvg_engine *en = t->e;
    wgeom g = wino_geom(p, t->N);
    int n = g.m + 2, tid = rvg__pool_tid_in(en->pool);
    int64_t step = blocks_step(en, p);
    double *prof = en->prof && tid == 0 ? en->prof + 4 * (p - en->L) : NULL;
    double t0 = prof ? now_ms() : 0; /* the caller's own share of the phases */
    float *V = en->Vt + tid * en->vt_floats, *M = en->Mt + tid * en->mt_floats;
    float *U = en->wtmp + tid * en->wtmp_floats;
    if (en->vstamp[tid * STAMP_PAD] != t->seq) { /* this thread's first unit of the layer run */
        wino_in_tiles(t, &g, V, g.vs, g.bs, 0, g.T);
        en->vstamp[tid * STAMP_PAD] = t->seq;
    }
    if (prof) {
        double t1 = now_ms();
        prof[1] += t1 - t0, t0 = t1;
    }
    for (int64_t u = b; u < e; u++) {
        int64_t kb0 = u * step, kb1 = kb0 + step < p->KB16 ? kb0 + step : p->KB16;
        for (int i = 0; i < n; i++)
            wino_gemms(t, &g, V, g.vs, g.bs, M, fused_ms(g.T), g.T * 8, U, kb0, kb1, i, g.T);
        double tg = prof ? now_ms() : 0;
        int64_t b8end = 2 * kb1 < p->KB8 ? 2 * kb1 : p->KB8;
        for (int64_t b8 = 2 * kb0; b8 < b8end; b8++)
            for (int64_t img = 0; img < t->N; img++)
                zero_border(t->y, img * p->KB8 + b8, p->P, p->Q, p->Hpo, p->Wpo);
        wino_out_tiles(t, &g, M, fused_ms(g.T), g.T * 8, 2 * kb0, b8end, 0, g.T);
        if (prof) {
            double to = now_ms();
            prof[2] += tg - t0, prof[3] += to - tg, t0 = to;
        }
    }
}

/* WINO_BANDS (see wino_mode_at): unit u of nu (one per thread) takes the tiles [T*u/nu,
 * T*(u+1)/nu), a band of tile rows, and runs the input transform into its own V, then per output
 * block or pair the GEMMs into its own M and the output transform, reading the weights whole
 * (on the fly, transforming them itself); with pre-transformed weights, all blocks' GEMMs point
 * by point into an M of all blocks, then the output transform. No V or M line is touched by two
 * threads, and the layer's input crosses cores only where the previous layer split its output
 * otherwise. */
static void task_wino_bands(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    const rvg_engine *en = t->e;
    wgeom g = wino_geom(p, t->N);
    int n = g.m + 2, tid = rvg__pool_tid_in(en->pool), otf = wino_otf(en, p, t->N);
    int64_t nu = en->threads, nz = t->N * p->KB8, step = otf_step(en);
    double *prof = en->prof && tid == 0 ? en->prof + 4 * (p - en->L) : NULL;
    float *V = en->Vt + tid * en->vt_floats, *M = en->Mt + tid * en->mt_floats;
    float *U = en->wtmp + tid * en->wtmp_floats;
    for (int64_t u = b; u < e; u++) {
        int64_t tt0 = g.T * u / nu, tt1 = g.T * (u + 1) / nu, nt = tt1 - tt0;
        int64_t vbs = nt * 8, vs = nt * p->CB * 8 + WINO_PLANE_PAD;
        double t0 = prof ? now_ms() : 0; /* the caller's own share of the phases */
        for (int64_t z = nz * u / nu; z < nz * (u + 1) / nu; z++)
            zero_border(t->y, z, p->P, p->Q, p->Hpo, p->Wpo);
        wino_in_tiles(t, &g, V, vs, vbs, tt0, tt1);
        double t1 = prof ? now_ms() : 0, tg = 0, to = 0;
        if (!otf) { /* pre-transformed weights: point-major, see above */
            int64_t ms = nt * p->KB16 * 16 + WINO_PLANE_PAD, mbs = nt * 8;
            for (int64_t xi = 0; xi < g.nn; xi++)
                for (int64_t kb = 0; kb < p->KB16;) {
                    float *Mx = M + xi * ms + 2 * kb * mbs;
                    const float *Vx = V + xi * vs + (p->c0[kb] / 8) * vbs;
                    const float *Uk = p->w + xi * p->wtot + p->woff[kb];
                    if (wino_pair(en, p, kb)) {
                        en->kern->gemm32(Mx, mbs, Vx, vbs, p->c0[kb] % 8, Uk,
                                         p->woff[kb + 1] - p->woff[kb], p->nc[kb], nt);
                        kb += 2;
                    } else {
                        en->kern->gemm16(Mx, mbs, Vx, vbs, p->c0[kb] % 8, Uk, p->nc[kb], nt);
                        kb += 1;
                    }
                }
            double tb = prof ? now_ms() : 0;
            wino_out_tiles(t, &g, M, ms, nt * 8, 0, p->KB8, tt0, tt1);
            if (prof)
                prof[1] += t1 - t0, prof[2] += tb - t1, prof[3] += now_ms() - tb;
            continue;
        }
        for (int64_t kb0 = 0; kb0 < p->KB16; kb0 += step) {
            int64_t kb1 = kb0 + step < p->KB16 ? kb0 + step : p->KB16;
            double ta = prof ? now_ms() : 0;
            for (int i = 0; i < (otf ? n : 1); i++)
                wino_gemms(t, &g, V, vs, vbs, M, fused_ms(nt), nt * 8, U, kb0, kb1, otf ? i : -1,
                           nt);
            double tb = prof ? now_ms() : 0;
            wino_out_tiles(t, &g, M, fused_ms(nt), nt * 8, 2 * kb0,
                           2 * kb1 < p->KB8 ? 2 * kb1 : p->KB8, tt0, tt1);
            if (prof)
                tg += tb - ta, to += now_ms() - tb;
        }
        if (prof)
            prof[1] += t1 - t0, prof[2] += tg, prof[3] += to;
    }
}

/* (block, tile) transform units per claim from the pool: one unit is ~100 instructions. */
enum { WINO_GRAIN = 8 };

static void run_phases(task *t, const wgeom *gp, double *prof);

static void run_wino(task *t) {
    const layer_plan *p = t->p;
    const rvg_engine *e = t->e;
    wgeom g = wino_geom(p, t->N);
    double *prof = e->prof ? e->prof + 4 * (p - e->L) : NULL; /* phases 1..3 */
    wino_mode mode = wino_mode_at(e, p, t->N);
    struct wtune *tu = wino_tune(e, p, t->N);
    int way = !tu ? 1 : tu->choice >= 0 ? tu->choice : (tu->n[0] + tu->n[1]) % 2;
    double ts = tu && tu->choice < 0 ? now_ms() : 0;
    if (mode == WINO_BANDS && way) { /* (profile: the caller's share, above) */
        rvg__pool_for(e->pool, e->threads, 1, task_wino_bands, t);
    } else if (mode == WINO_BLOCKS && way) {
        int64_t step = blocks_step(e, p);
        rvg__pool_for(e->pool, (p->KB16 + step - 1) / step, 1, task_wino_blocks, t);
    } else {
        run_phases(t, &g, prof);
    }
    if (tu && tu->choice < 0) {
        tu->ms[way][tu->n[way]++] = now_ms() - ts;
        if (tu->n[0] == TUNE_SAMPLES && tu->n[1] == TUNE_SAMPLES)
            tu->choice = median_of(tu->ms[1], TUNE_SAMPLES) <= median_of(tu->ms[0], TUNE_SAMPLES);
    }
}

/* WINO_PHASES. */
static void run_phases(task *t, const wgeom *gp, double *prof) {
    const layer_plan *p = t->p;
    const rvg_engine *e = t->e;
    wgeom g = *gp;
    double t0 = prof ? now_ms() : 0;
    t->nz = t->N * p->KB8;
    rvg__pool_for(e->pool, t->nz + p->CB * g.T, WINO_GRAIN, task_wino_in, t);
    double t1 = prof ? now_ms() : 0;
    if (wino_otf(e, p, t->N))
        rvg__pool_for(e->pool, (p->KB16 + otf_step(e) - 1) / otf_step(e) * (g.m + 2), 1,
                      task_wino_gemm_otf, t);
    else
        rvg__pool_for(e->pool, g.nn * g.nch, 1, task_wino_gemm, t);
    double t2 = prof ? now_ms() : 0;
    rvg__pool_for(e->pool, p->KB8 * g.T, WINO_GRAIN, task_wino_out, t);
    if (prof)
        prof[1] += t1 - t0, prof[2] += t2 - t1, prof[3] += now_ms() - t2;
}

/* Mean over the (P, Q) interior of 8-channel blocks u of (N*KB8): out[n*Kp + kb*8 + l]. */
static void block_means(float *out, int64_t Kp, const float *y, int64_t u0, int64_t u1,
                        int64_t KB8, int64_t P, int64_t Q, int64_t Hp, int64_t Wp) {
    for (int64_t u = u0; u < u1; u++) {
        const float *b = y + u * Hp * Wp * 8;
        float acc[8] = {0};
        for (int64_t r = 1; r <= P; r++)
            for (int64_t q = 1; q <= Q; q++)
                for (int l = 0; l < 8; l++)
                    acc[l] += b[(r * Wp + q) * 8 + l];
        int64_t n = u / KB8, kb = u % KB8;
        for (int l = 0; l < 8; l++)
            out[n * Kp + kb * 8 + l] = acc[l] / (float)(P * Q);
    }
}

static void task_se_mean(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    block_means(t->e->se_m, p->KB8 * 8, t->y, b, e, p->KB8, p->P, p->Q, p->Hpo, p->Wpo);
}

/* SE gate of image n (see infer.h); overwrites the means with the gates. */
static void task_se_gate(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    int64_t Kp = p->KB8 * 8, K = p->K, Hd = p->se_hidden;
    for (int64_t n = b; n < e; n++) {
        float *mn = t->e->se_m + n * Kp, *hn = t->e->se_h + n * Hd;
        for (int64_t j = 0; j < Hd; j++) {
            float a = p->se_db[j];
            for (int64_t c = 0; c < K; c++)
                a += p->se_dw[j * K + c] * mn[c];
            hn[j] = a > 0.f ? a : 0.f;
        }
        for (int64_t c = 0; c < K; c++) {
            float a = p->se_ub[c];
            for (int64_t j = 0; j < Hd; j++)
                a += p->se_uw[c * Hd + j] * hn[j];
            mn[c] = 1.f / (1.f + expf(-a));
        }
    }
}

static void task_se_scale(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    int64_t Kp = p->KB8 * 8;
    for (int64_t u = b; u < e; u++) {
        float *blk = t->y + u * p->Hpo * p->Wpo * 8;
        const float *g = t->e->se_m + (u / p->KB8) * Kp + (u % p->KB8) * 8;
        for (int64_t r = 1; r <= p->P; r++)
            for (int64_t q = 1; q <= p->Q; q++)
                for (int l = 0; l < 8; l++) {
                    float v = blk[(r * p->Wpo + q) * 8 + l] * g[l];
                    blk[(r * p->Wpo + q) * 8 + l] = v > 0.f ? v : 0.f;
                }
    }
}

static void task_pool(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    block_means(t->e->pooled, p->KB8 * 8, t->x, b, e, p->KB8, p->P, p->Q, p->Hpo, p->Wpo);
}

enum { FC_CH = 32 }; /* classes per classifier unit */

static void task_fc(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const rvg_engine *en = t->e;
    int64_t nch = (en->classes + FC_CH - 1) / FC_CH, Kp = t->p->KB8 * 8;
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / nch, j0 = (u % nch) * FC_CH;
        int64_t nj = en->classes - j0 < FC_CH ? en->classes - j0 : FC_CH;
        en->kern->fc(t->aux + n * en->classes + j0, en->pooled + n * Kp,
                     en->fc_w + j0 * en->k_last, en->fc_b + j0, nj, en->k_last);
    }
}

static void task_feat(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / p->K, k = u % p->K;
        const float *blk = t->x + ((n * p->KB8 + k / 8) * p->Hpo * p->Wpo) * 8 + k % 8;
        for (int64_t r = 0; r < p->P; r++)
            for (int64_t q = 0; q < p->Q; q++)
                t->aux[(u * p->P + r) * p->Q + q] = blk[((r + 1) * p->Wpo + q + 1) * 8];
    }
}

/* Unrolled layer (see unroll_ok): gather, GEMM, scatter. */
static void task_unr_gather(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    const int64_t HW = p->H * p->W, CHW = p->C * HW, xcs = p->Hp * p->Wp * 8;
    for (int64_t n = b; n < e; n++)
        for (int64_t c = 0; c < p->C; c++) {
            const float *xb = t->x + (n * p->CB + c / 8) * xcs + c % 8;
            float *d = t->e->ux + n * CHW + c * HW;
            for (int64_t i = 0; i < HW; i++)
                d[i] = xb[((i / p->W + 1) * p->Wp + i % p->W + 1) * 8];
        }
}

static void task_unr_gemm(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    const int64_t CHW = p->C * p->H * p->W, KPQ = p->K * p->P * p->Q;
    float *pack = t->e->upack + rvg__pool_tid_in(t->e->pool) * t->e->upack_floats;
    for (int64_t u = b; u < e; u++) {
        const int64_t o0 = u * UNROLL_COLS, o1 = o0 + UNROLL_COLS < KPQ ? o0 + UNROLL_COLS : KPQ;
        /* uy[:, o0:o1] = ux (N, CHW) . U[o0:o1, :]^T (o0: a multiple of RVG__GEMM_NR) */
        rvg__conv_sgemm_serial_prepacked(0, t->N, o1 - o0, CHW, t->e->ux, CHW, p->u, KPQ, o0, 0,
                                         t->e->uy + o0, KPQ, pack);
    }
}

static void task_unr_scatter(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    const int64_t PQ = p->P * p->Q, KPQ = p->K * PQ, ycs = p->Hpo * p->Wpo * 8;
    const int relu = p->se_hidden == 0;
    for (int64_t u = b; u < e; u++) { /* u = image * KB8 + 8-channel block */
        const int64_t n = u / p->KB8, kb = u % p->KB8;
        float *yb = t->y + u * ycs;
        zero_border(t->y, u, p->P, p->Q, p->Hpo, p->Wpo);
        const int64_t nl = p->K - kb * 8 < 8 ? p->K - kb * 8 : 8; /* real channels here */
        const float *src = t->e->uy + n * KPQ + kb * 8 * PQ, *bias = p->bias + kb * 8;
        for (int64_t o = 0; o < PQ; o++) { /* one pixel's 8 lanes: a contiguous 32-byte store */
            float *d = yb + ((o / p->Q + 1) * p->Wpo + o % p->Q + 1) * 8;
            for (int64_t l = 0; l < 8; l++) {
                float v = l < nl ? src[l * PQ + o] + bias[l] : 0.0f;
                d[l] = relu && v < 0.0f ? 0.0f : v;
            }
        }
    }
}

static void run_unrolled(task *t) {
    const layer_plan *p = t->p;
    const int64_t KPQ = p->K * p->P * p->Q;
    /* gather and scatter units are one image / one 8-channel block of a few pixels: claimed 4
     * and 16 at a time, or the pool's atomic counter costs as much as the copying (perf) */
    rvg__pool_for(t->e->pool, t->N, 4, task_unr_gather, t);
    rvg__pool_for(t->e->pool, (KPQ + UNROLL_COLS - 1) / UNROLL_COLS, 1, task_unr_gemm, t);
    rvg__pool_for(t->e->pool, t->N * p->KB8, 16, task_unr_scatter, t);
}

static void run_layer(task *t) {
    const rvg_engine *e = t->e;
    double t0 = e->prof ? now_ms() : 0;
    if (t->p->unrolled && t->N >= UNROLL_MIN_BATCH)
        run_unrolled(t);
    else if (t->p->algo == RVG_INFER_ALGO_DIRECT)
        run_direct(t);
    else
        run_wino(t);
    if (t->p->se_hidden > 0) {
        rvg__pool_for(e->pool, t->N * t->p->KB8, 1, task_se_mean, t);
        rvg__pool_for(e->pool, t->N, 1, task_se_gate, t);
        rvg__pool_for(e->pool, t->N * t->p->KB8, 1, task_se_scale, t);
    }
    if (e->prof)
        e->prof[4 * (t->p - e->L)] += now_ms() - t0;
}

/* The whole forward pass. Exactly one of logits (N, classes) and feat (N, K_last, P, Q) is set. */
static rvg_status run_net(rvg_engine *e, float *logits, float *feat, const float *x, int64_t N) {
    if (!e || !(logits || feat) || !x)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg_engine_run: NULL argument");
    if (N < 1 || N > e->max_batch)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "rvg_engine_run: batch N=%lld outside 1..max_batch=%lld", (long long)N,
                         (long long)e->max_batch);
    /* Early layers have big activations and small weights, late layers the reverse. Running the
     * whole batch layer by layer pushes the early activations (and Winograd scratch) through
     * DRAM, which on the 2-core machine costs as much as the arithmetic; so at N > 1 the first
     * `seg` layers run one image at a time through small ping-pong buffers that stay in cache,
     * each image's result landing in its slot of the batch buffer, and the remaining layers
     * (weight-heavy, where batching amortises the weight traffic) run on the whole batch. */
    int64_t seg = N > 1 ? e->seg : 0;
    task t = {.e = e, .x = x, .y = e->act[0], .N = N};
    for (int64_t n = 0; n < (seg ? N : 0); n++) {
        const layer_plan *l = &e->L[seg - 1];
        t.N = 1, t.x = x + n * e->in_ch * e->H * e->W, t.y = e->img[0];
        rvg__pool_for(e->pool, pack_units(e, 1), 1, task_pack_input, &t);
        for (int64_t i = 0; i < seg; i++) {
            t.p = &e->L[i], t.x = e->img[i & 1];
            t.y = i + 1 < seg ? e->img[(i + 1) & 1]
                              : e->act[seg & 1] + n * l->KB8 * l->Hpo * l->Wpo * 8;
            t.seq = ++e->layer_runs;
            run_layer(&t);
        }
    }
    t.N = N;
    if (!seg) {
        t.x = x, t.y = e->act[0];
        rvg__pool_for(e->pool, pack_units(e, N), 1, task_pack_input, &t);
    }
    for (int64_t i = seg; i < e->nl; i++) {
        t.p = &e->L[i], t.x = e->act[i & 1], t.y = e->act[(i + 1) & 1];
        t.seq = ++e->layer_runs;
        run_layer(&t);
    }
    e->prof_runs += e->prof != NULL;
    t.x = e->act[e->nl & 1]; /* t.p is the last layer */
    if (feat) {
        t.aux = feat;
        rvg__pool_for(e->pool, N * t.p->K, 8, task_feat, &t);
    } else {
        t.aux = logits;
        rvg__pool_for(e->pool, N * t.p->KB8, 4, task_pool, &t);
        rvg__pool_for(e->pool, N * ((e->classes + FC_CH - 1) / FC_CH), 1, task_fc, &t);
    }
    return RVG_OK;
}

rvg_status rvg_engine_run(rvg_engine *e, float *logits, const float *x, int64_t N) {
    if (!logits)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg_engine_run: logits is NULL");
    return run_net(e, logits, NULL, x, N);
}

rvg_status rvg_engine_profile(rvg_engine *e, int on) {
    if (!e)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg_engine_profile: NULL engine");
    free(e->prof);
    e->prof = NULL, e->prof_runs = 0;
    if (on && !(e->prof = calloc((size_t)(4 * e->nl), sizeof(double))))
        return rvg_error(RVG_STATUS_NO_MEMORY, "rvg_engine_profile: out of memory");
    return RVG_OK;
}

int64_t rvg_engine_profile_read(const rvg_engine *e, double *ms) {
    if (!e || !ms)
        return 0;
    for (int64_t i = 0; i < 4 * e->nl; i++)
        ms[i] = e->prof && e->prof_runs ? e->prof[i] / (double)e->prof_runs : 0;
    return e->prof ? e->prof_runs : 0;
}

int rvg__engine_tuned(const rvg_engine *e, int64_t i, int64_t N) {
    if (!e || i < 0 || i >= e->nl || e->L[i].algo == RVG_INFER_ALGO_DIRECT)
        return -2;
    /* the image-by-image layers run with N = 1 (run_net) */
    const struct wtune *tu = wino_tune(e, &e->L[i], N > 1 && i < e->seg ? 1 : N);
    return tu ? tu->choice : -2;
}

rvg_status rvg__engine_features(rvg_engine *e, float *y, const float *x, int64_t N) {
    if (!y)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg__engine_features: y is NULL");
    return run_net(e, NULL, y, x, N);
}
