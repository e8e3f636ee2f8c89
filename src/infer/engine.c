/* engine.c - the deploy-form inference engine at load time: the kernel set, an algorithm per
 * layer, packed weights and buffers.
 *
 * At rvg_engine_new every layer gets an algorithm (Winograd F(4x4,3x3), F(5x5,3x3) or F(6x6,3x3)
 * for stride 1, packed direct convolution otherwise), its weights are copied into that
 * algorithm's packed form (Winograd: U = G g G^T computed in double), and two ping-pong
 * activation buffers plus the Winograd V/M scratch are sized for max_batch. rvg_engine_run
 * (engine_run.c) then only moves data:
 *   input NCHW -> padded pack8 (see infer_impl.h) -> layers -> global average pool -> classifier.
 * Each phase of a layer is a parallel-for over independent units (tiles, 16-channel output
 * blocks x pixel ranges, Winograd points) on the engine's thread pool (pool.c), so all threads
 * stay busy at batch 1 and a thread the OS has descheduled holds nothing up.
 *
 * Output channels are handled in blocks of 16. A block only reads the input channels of the
 * groups its outputs belong to ([c0, c0 + nc)), with zero weights where a group does not apply,
 * so grouped convolution uses the same kernels as dense convolution.
 *
 * Not here: running the network (engine_run.c, engine_direct.c, engine_wino.c), the kernels
 * (kern_body.h, kern_c.c, kern_avx2.c, kern_avx512.c) and the reference forward pass
 * (engine_ref.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "engine_impl.h"
#include "rvg/tensor.h"

/* A layer whose one-image input is at least this big runs image by image at batch > 1, while the
 * image is hot in cache (engine_run.c, run_net): A0's stem, stage1.0 and 1.1, B0's stem, stage 1
 * and stage2.0 ... A layer with less input gains more from the whole batch (its weights read
 * once): 640 KiB against the earlier 256 KiB, which also took in A0's stages 2.x and B0's
 * stages 2.1-2.5, made batch 8 on 2 threads 4-5% faster (A0 33.5-33.7 -> 31.9-32.1 ms, B0
 * 64.6-65.2 -> 62.5-63.0; a sweep of 0.26-2 MB, two rounds, 2026-12-03), batch 16 3-9%, batch 2
 * and 4 and 1 thread at batch 8 0-3% (`bench_infer --model M --runs 8 --threads T --batch N
 * --json`, alternating) ... */
#define SEG_MIN_BYTES (640u << 10)
/* ... unless its weights outweigh that input by more than this: then each image would transform
 * (or stream) the layer's weights once more, and with so few tiles per image the Winograd GEMMs
 * run part-empty. B0's 256-channel stage 3 (2.4 MB of weights per layer against 296 KB of input
 * per image) ran image by image until 2026-12-03 (with the 256 KiB threshold): batch 8 on 2
 * threads 86.6 -> 65.8 ms without, 1.10x / 1.16x / 1.34x faster at batch 2 / 4 / 16, 1.13-1.22x
 * at batch 8 on 1 thread; A0, whose segment this left as it was but for stage3.0 (663 KB of
 * weights, 345 KB of input), within 1% (`bench_infer --model M --runs 10 --threads T --batch N
 * --json`, alternating). */
#define SEG_MAX_WEIGHT_RATIO 1.5

static rvg_status new_amx(rvg_engine **out, rvg_engine *e, const rvg_infer_layer *layers,
                          const float *fc_w, const float *fc_b, int twin);

static void *ealloc(rvg_engine *e, size_t nbytes) {
    e->bytes += nbytes;
    return rvg_alloc(nbytes ? nbytes : 64);
}

/* opts.band_bytes' default: half the L2 cache, where V and M of a band's part then stay with room
 * for the weights streaming past (sysconf knows the size on glibc; 1 MiB elsewhere). */
static int64_t default_band_bytes(void) {
#ifdef _SC_LEVEL2_CACHE_SIZE
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l2 >= (64L << 10))
        return (int64_t)l2 / 2;
#endif
    return 1 << 20;
}

static int env_is(const char *name, const char *value) {
    const char *v = getenv(name);
    return v && strcmp(v, value) == 0;
}

static const char *const isa_names[] = {"auto",        "portable", "avx2",    "avx512",
                                        "avx512-twin", "amx",      "amx-twin"};
#define ISA_LAST RVG_INFER_ISA_AMX_TWIN

const char *rvg_infer_isa_name(rvg_infer_isa isa) {
    return (int)isa >= RVG_INFER_ISA_AUTO && (int)isa <= ISA_LAST ? isa_names[isa] : "?";
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
    case RVG_INFER_ISA_PORTABLE:
    case RVG_INFER_ISA_AMX_TWIN: return 1;
    case RVG_INFER_ISA_AMX: return rvg__amx_usable();
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
 * and replaces its two micro-kernels (the transforms work on 8-lane pack8 vectors either way).
 * AMX runs the network in engine_amx.c and uses the AVX-512 table for its classifier; its twin
 * the portable one. */
static rvg_status pick_kernels(rvg_engine *e, rvg_infer_isa *isa_io) {
    rvg_infer_isa isa = *isa_io;
    if (isa == RVG_INFER_ISA_AUTO)
        isa = rvg_infer_isa_best();
    if (!rvg_infer_isa_available(isa))
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "rvg_engine_new: kernel set %s needs %s, which this %s", isa_names[isa],
                         isa == RVG_INFER_ISA_AVX512 ? "AVX-512F"
                         : isa == RVG_INFER_ISA_AMX
                             ? "AMX-TILE, AMX-BF16 and AVX-512F (and Linux's permission)"
                             : "AVX2 and FMA",
#ifdef RVG_HAVE_SIMD
                         "CPU lacks"
#else
                         "build (-DRVG_SIMD=OFF) leaves out"
#endif
        );
    e->isa = isa_names[isa];
    e->kt = rvg__infer_kernels_c;
#ifdef RVG_HAVE_SIMD
    if (isa != RVG_INFER_ISA_PORTABLE && isa != RVG_INFER_ISA_AMX_TWIN)
        e->kt = rvg__infer_kernels_avx2;
    if (isa == RVG_INFER_ISA_AVX512 || isa == RVG_INFER_ISA_AMX)
        rvg__infer_wide_avx512(&e->kt);
    if (isa == RVG_INFER_ISA_AVX512_TWIN)
        rvg__infer_wide_avx512_twin(&e->kt);
#endif
    e->kern = &e->kt;
    *isa_io = isa;
    return RVG_OK;
}

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
    if (!wino || !rvg__wino_otf(e, p, e->max_batch)) {
        p->w = ealloc(e, sizeof(float) * (size_t)(tot * nn));
        if (!p->w)
            return 0;
    }
    if (wino && rvg__wino_otf(e, p, 1)) {
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
        int i = ISA_LAST;
        while (i >= 0 && strcmp(isa_env, isa_names[i]) != 0)
            i--;
        if (i < 0)
            return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                             "RVG_INFER_ISA=%s: expected auto, portable, avx2, avx512, "
                             "avx512-twin, amx or amx-twin",
                             isa_env);
        o.isa = (rvg_infer_isa)i;
    }
    if (env_is("RVG_FORCE_REF", "1"))
        o.isa = RVG_INFER_ISA_PORTABLE;
    if ((int)o.algo < RVG_INFER_ALGO_AUTO || (int)o.algo > RVG_INFER_ALGO_WINO5)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg_engine_new: unknown algorithm %d",
                         (int)o.algo);
    if ((int)o.isa < RVG_INFER_ISA_AUTO || (int)o.isa > ISA_LAST)
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
    e->band_bytes = o.band_bytes > 0 ? o.band_bytes : default_band_bytes();
    if (e->fuse < -1 || e->fuse > 1) {
        int f = e->fuse;
        rvg_engine_free(e);
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "rvg_engine_new: fuse %d not in -1..1", f);
    }
    e->classes = classes, e->k_last = k_last;
    e->L = calloc((size_t)n_layers, sizeof(layer_plan));
    if (!e->L)
        goto oom;
    if (o.isa == RVG_INFER_ISA_AMX || o.isa == RVG_INFER_ISA_AMX_TWIN)
        return new_amx(out, e, layers, fc_w, fc_b, o.isa == RVG_INFER_ISA_AMX_TWIN);

    /* Shapes and algorithms first: a layer's input geometry depends on its own algorithm. */
    int64_t h = H, w = W;
    size_t act = 0, vfl = 0, mfl = 0, vtf = 0, mtf = 0, kmax = 0, hmax = 0, uxf = 0, uyf = 0;
    size_t bmax = 0; /* 8-channel blocks of any layer's input or output (rvg_engine.owner) */
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
                wino_mode mode = rvg__wino_mode_at(e, p, N);
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
                if (mode == WINO_BANDS && !rvg__wino_otf(e, p, N) &&
                    vt > (size_t)rvg__wino_part_tiles(e, p)) /* in parts */
                    vt = mt = (size_t)rvg__wino_part_tiles(e, p);
                vt = nn * (vt * (size_t)p->CB * 8 + WINO_PLANE_PAD);
                if (mode == WINO_BANDS && !rvg__wino_otf(e, p, N)) /* all blocks at once */
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
        size_t blocks = (size_t)(p->CB > p->KB8 ? p->CB : p->KB8);
        bmax = blocks > bmax ? blocks : bmax;
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
    /* A thread's on-the-fly scratch: a gemm32 pair's transformed row (2 blocks x n points) or
     * one block's G g of all n rows (3 x n rows, engine_wino.c's otf_rows), n = m + 2. */
    for (int64_t i = 0; i < n_layers; i++) {
        const layer_plan *p = &e->L[i];
        if (p->algo != RVG_INFER_ALGO_DIRECT)
            for (int64_t kb = 0; kb < p->KB16; kb++)
                if (3 * (p->m + 2) * WROW_STRIDE(p->nc[kb]) > e->wtmp_floats)
                    e->wtmp_floats = 3 * (p->m + 2) * WROW_STRIDE(p->nc[kb]);
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
    /* The leading layers whose one-image input is large and whose weights are not much larger
     * (early, wide-map, small-weight layers) form the image-by-image segment; see run_net. */
    size_t img = 0;
    while (e->seg < n_layers - 1) {
        const layer_plan *p = &e->L[e->seg];
        size_t a_in = (size_t)(p->CB * p->Hp * p->Wp * 8);
        size_t a_out = (size_t)(p->KB8 * p->Hpo * p->Wpo * 8);
        double weights = (double)(p->C / p->G * p->K * 9);
        if (a_in * sizeof(float) < (o.seg_bytes > 0 ? (size_t)o.seg_bytes : SEG_MIN_BYTES) ||
            weights > SEG_MAX_WEIGHT_RATIO * (double)a_in)
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
    for (int i = 0; i < 2; i++) {
        e->owner[i] = ealloc(e, sizeof(int64_t) * bmax);
        if (e->owner[i]) /* -1: no layer run wrote the block */
            memset(e->owner[i], 0xff, sizeof(int64_t) * bmax);
    }
    e->fc_w = ealloc(e, sizeof(float) * (size_t)(classes * k_last));
    e->fc_b = ealloc(e, sizeof(float) * (size_t)classes);
    if (!e->act[0] || !e->act[1] || (vfl && !e->V) || (mfl && !e->M) || !e->se_m || !e->se_h ||
        !e->pooled || !e->owner[0] || !e->owner[1] || !e->fc_w || !e->fc_b)
        goto oom;
    memcpy(e->fc_w, fc_w, sizeof(float) * (size_t)(classes * k_last));
    memcpy(e->fc_b, fc_b, sizeof(float) * (size_t)classes);
    *out = e;
    return RVG_OK;
oom:
    rvg_engine_free(e);
    return rvg_error(RVG_STATUS_NO_MEMORY, "rvg_engine_new: out of memory");
}

/* The AMX engine: shapes in e->L (for rvg_engine_layer_algo and the profile), the network in
 * engine_amx.c, the classifier here. */
static rvg_status new_amx(rvg_engine **out, rvg_engine *e, const rvg_infer_layer *layers,
                          const float *fc_w, const float *fc_b, int twin) {
    int64_t h = e->H, w = e->W;
    for (int64_t i = 0; i < e->nl; i++) {
        layer_plan *p = &e->L[i];
        p->algo = RVG_INFER_ALGO_AMX;
        p->C = layers[i].C, p->K = layers[i].K, p->G = layers[i].G, p->stride = layers[i].stride;
        p->H = h, p->W = w, p->P = (h - 1) / p->stride + 1, p->Q = (w - 1) / p->stride + 1;
        h = p->P, w = p->Q;
    }
    rvg_status st = rvg__amx_build(e, layers, twin);
    e->fc_w = ealloc(e, sizeof(float) * (size_t)(e->classes * e->k_last));
    e->fc_b = ealloc(e, sizeof(float) * (size_t)e->classes);
    if (st == RVG_OK && (!e->fc_w || !e->fc_b))
        st = rvg_error(RVG_STATUS_NO_MEMORY, "rvg_engine_new: out of memory");
    if (st != RVG_OK) {
        rvg_engine_free(e);
        return st;
    }
    memcpy(e->fc_w, fc_w, sizeof(float) * (size_t)(e->classes * e->k_last));
    memcpy(e->fc_b, fc_b, sizeof(float) * (size_t)e->classes);
    *out = e;
    return RVG_OK;
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
    rvg_free(e->owner[0]), rvg_free(e->owner[1]);
    free(e->prof);
    rvg_free(e->fc_w), rvg_free(e->fc_b);
    rvg_free(e->ux), rvg_free(e->uy), rvg_free(e->upack);
    rvg__amx_free(e->amx);
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
    case RVG_INFER_ALGO_AMX: return "amx";
    }
    return "?";
}

int64_t rvg_engine_image_layers(const rvg_engine *e) { return e ? e->seg : 0; }

int64_t rvg_engine_layers(const rvg_engine *e) { return e ? e->nl : 0; }
