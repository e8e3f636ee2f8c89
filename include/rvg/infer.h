/* infer.h - fast CPU inference for the RepVGG deploy form (plain 3x3 conv + bias + ReLU stack).
 *
 * The deploy network is a list of layers, each y = ReLU(conv3x3(x; weight, bias, stride, pad 1,
 * groups)), optionally with squeeze-excitation (RepVGG D2se) before the ReLU, followed by global
 * average pooling and a linear classifier. An engine is built once for a maximum input size: it
 * copies and transforms all weights (Winograd F(4x4,3x3) / F(5x5,3x3) / F(6x6,3x3) for stride-1
 * layers, packed direct convolution for the rest; or, with the kernel set RVG_INFER_ISA_AMX, GEMMs
 * on Intel AMX tiles in bf16x3) and plans every buffer, so rvg_engine_run never allocates.
 *
 * Worked example:
 *
 *     rvg_infer_layer L[2] = {
 *         {.C = 3, .K = 16, .stride = 2, .G = 1, .weight = w0, .bias = b0},
 *         {.C = 16, .K = 16, .stride = 1, .G = 1, .weight = w1, .bias = b1},
 *     };
 *     rvg_engine *e;
 *     if (rvg_engine_new(&e, L, 2, fc_w, fc_b, 10, 3, 32, 32, 8, 0) != RVG_OK)
 *         fprintf(stderr, "%s\n", rvg_last_error());
 *     rvg_engine_run(e, logits, x, n);   // logits (n, 10), x (n, 3, 32, 32), n <= 8
 *     rvg_engine_free(e);
 *
 * Not here: training, backward, batch norm (fold it first with the reparam code), fp16/int8.
 * An engine may be used by one thread at a time; it runs its own thread pool inside.
 */
#ifndef RVG_INFER_H
#define RVG_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One deploy layer: 3x3 convolution, pad 1, with bias, then optional SE, then ReLU. */
typedef struct {
    int64_t C, K, stride, G;             /* in/out channels, stride 1 or 2, groups */
    const float *weight;                 /* (K, C/G, 3, 3), pad 1 */
    const float *bias;                   /* (K) */
    int64_t se_hidden;                   /* 0 = no SE; else SE with se_hidden hidden channels,
                                            applied to conv+bias output before the ReLU: */
    const float *se_down_w, *se_down_b;  /* (se_hidden, K), (se_hidden) */
    const float *se_up_w, *se_up_b;      /* (K, se_hidden), (K) */
} rvg_infer_layer;
/* SE semantics (official RepVGG D2se): s = conv(x) + bias; m = mean_HW(s) (N, K);
 * h = relu(down_w m + down_b); g = sigmoid(up_w h + up_b); y = relu(s * g). */

typedef struct rvg_engine rvg_engine;

/* Convolution algorithm of a layer, as chosen by rvg_engine_new (or forced, see below). */
typedef enum {
    RVG_INFER_ALGO_AUTO = 0,
    RVG_INFER_ALGO_DIRECT, /* packed direct convolution (any stride, groups) */
    RVG_INFER_ALGO_WINO4,  /* Winograd F(4x4, 3x3), stride 1 only */
    RVG_INFER_ALGO_WINO6,  /* Winograd F(6x6, 3x3), stride 1 only */
    RVG_INFER_ALGO_WINO5,  /* Winograd F(5x5, 3x3), stride 1 only */
    RVG_INFER_ALGO_AMX,    /* GEMM on AMX tiles, bf16x3 (kernel sets AMX, AMX_TWIN only) */
} rvg_infer_algo;

/* Builds an engine. Packs/transforms all weights once (copies them: the caller's arrays may be
 * freed afterwards). Plans two ping-pong activation buffers and all scratch for inputs up to
 * max_batch x in_ch x H x W. threads <= 0 uses all online cores; the engine runs its own pool of
 * threads - 1 workers (the caller is the other thread) for its lifetime.
 * fc_w (classes, K_last), fc_b (classes).
 * The environment variable RVG_INFER_ALGO=direct|wino4|wino5|wino6 forces every stride-1 layer to
 * one algorithm (for benchmarks and bisecting); RVG_INFER_ISA=auto|portable|avx2|avx512|
 * avx512-twin|amx|amx-twin selects a kernel set (see rvg_infer_isa); RVG_FORCE_REF=1 selects the portable C
 * kernels even when AVX2 is available; RVG_INFER_OTF=0|1 forces the Winograd weight transform at
 * run time off or on (default: on below 32 tiles); RVG_INFER_FUSE=1|0 sets opts.fuse to 1 | -1;
 * RVG_POOL_SPIN sets how long idle workers spin. Errors: RVG_STATUS_BAD_ARGUMENT /
 * RVG_STATUS_BAD_SHAPE (with rvg_last_error() naming the layer) for inconsistent layers,
 * RVG_STATUS_NO_MEMORY. *out is NULL on failure. */
rvg_status rvg_engine_new(rvg_engine **out, const rvg_infer_layer *layers, int64_t n_layers,
                          const float *fc_w, const float *fc_b, int64_t classes, int64_t in_ch,
                          int64_t H, int64_t W, int64_t max_batch, int threads);

/* Kernel sets of the engine. AUTO takes the fastest the CPU supports (AVX-512F, else AVX2+FMA,
 * else portable C). Asking for a set the CPU (or a -DRVG_SIMD=OFF build) lacks is an error. */
typedef enum {
    RVG_INFER_ISA_AUTO = 0,
    RVG_INFER_ISA_PORTABLE,    /* plain C: the fallback and the tests' oracle for the others */
    RVG_INFER_ISA_AVX2,        /* AVX2+FMA, 6-tile/pixel register blocks */
    RVG_INFER_ISA_AVX512,      /* AVX-512F micro-kernels, 12-tile/pixel blocks; rest as AVX2 */
    RVG_INFER_ISA_AVX512_TWIN, /* the AVX-512 micro-kernels' source built for AVX2: slow, for
                                  testing their logic on CPUs without AVX-512 */
    RVG_INFER_ISA_AMX,         /* Intel AMX tiles (Sapphire Rapids and later): every layer a
                                  GEMM in "bf16x3", each fp32 operand split into two bf16
                                  numbers and three products summed in fp32 (~16 of fp32's 24
                                  mantissa bits; logits within ~1e-5 of max|logit|): A0 and B0
                                  run 1.4-1.9x faster than on AVX512. Not picked by AUTO: a
                                  different precision is the caller's choice. SE layers with
                                  at most 1024 hidden channels. */
    RVG_INFER_ISA_AMX_TWIN,    /* the AMX engine with plain-C tile kernels: slow, the same
                                  arithmetic, for testing it on any CPU */
} rvg_infer_isa;

/* 1 if this CPU and build run kernel set isa (AUTO and PORTABLE: always), else 0. */
int rvg_infer_isa_available(rvg_infer_isa isa);

/* The set RVG_INFER_ISA_AUTO stands for here: AVX512, else AVX2, else PORTABLE. */
rvg_infer_isa rvg_infer_isa_best(void);

/* "auto", "portable", "avx2", "avx512", "avx512-twin", "amx" or "amx-twin" (the names
 * RVG_INFER_ISA takes); "?" for a value outside the enum. */
const char *rvg_infer_isa_name(rvg_infer_isa isa);

/* Options for rvg_engine_new_opts; zero-initialise for the defaults of rvg_engine_new. */
typedef struct {
    rvg_infer_algo algo;  /* AUTO picks per layer; DIRECT/WINO4/5/6 force every stride-1 layer */
    int portable;         /* 1: as isa = RVG_INFER_ISA_PORTABLE */
    int64_t seg_bytes;    /* 0: 640 KiB. At N > 1 the leading layers whose one-image input
                             (padded, channels rounded to 8) has at least this many bytes, and
                             whose weights are at most 1.5 times that input, run image by image
                             while the image is in cache; the rest run on the whole batch. Only
                             speed depends on it. */
    rvg_infer_isa isa;    /* AUTO: the fastest the CPU supports */
    int fuse;             /* How a Winograd layer on one image, or with few tiles, runs: as one
                             phase split into bands of tiles or output blocks, each thread with
                             its own scratch, or as three phases (input transform, GEMMs, output
                             transform) each split over all threads. Which is faster depends on
                             the layer and on what moving data between cores costs. 0 (auto):
                             the first runs try both ways, alternately, and each layer then keeps
                             the faster; 1: one phase; -1: three phases. The same results bit
                             for bit in every case; only speed differs. */
    int64_t band_bytes;   /* 0: half the L2 cache (1 MiB where the system does not say). A
                             thread's band of tiles in a Winograd layer with pre-transformed
                             weights runs in parts whose transformed input and output (V and M)
                             fit in this many bytes, at least 12 tiles each, so that they stay
                             in L2 between the transforms and the GEMMs. Only speed depends
                             on it. */
} rvg_engine_opts;

/* rvg_engine_new with options (opts may be NULL). The environment variables above override it. */
rvg_status rvg_engine_new_opts(rvg_engine **out, const rvg_infer_layer *layers, int64_t n_layers,
                               const float *fc_w, const float *fc_b, int64_t classes,
                               int64_t in_ch, int64_t H, int64_t W, int64_t max_batch,
                               int threads, const rvg_engine_opts *opts);

/* logits (N, classes) from x (N, in_ch, H, W) NCHW float32, for the H, W given at creation.
 * 1 <= N <= max_batch, else RVG_STATUS_BAD_ARGUMENT. Never allocates. */
rvg_status rvg_engine_run(rvg_engine *e, float *logits, const float *x, int64_t N);

/* Frees an engine; NULL is fine. */
void rvg_engine_free(rvg_engine *e);

/* Reference path: the same semantics in plain C (direct convolution, double accumulators, no
 * threads), the test oracle. Allocates its own temporaries; RVG_STATUS_NO_MEMORY on failure. */
rvg_status rvg_engine_run_ref(const rvg_infer_layer *layers, int64_t n_layers, const float *fc_w,
                              const float *fc_b, int64_t classes, float *logits, const float *x,
                              int64_t N, int64_t in_ch, int64_t H, int64_t W);

/* Bytes the engine holds (packed weights, activations, scratch). */
size_t rvg_engine_peak_bytes(const rvg_engine *e);

/* Algorithm chosen for layer i (for reports and tests); RVG_INFER_ALGO_AUTO if i is out of
 * range. */
rvg_infer_algo rvg_engine_layer_algo(const rvg_engine *e, int64_t i);

/* "auto", "direct", "wino4", "wino5", "wino6" (the names RVG_INFER_ALGO takes) or "amx"; "?" for
 * a value outside the enum. */
const char *rvg_infer_algo_name(rvg_infer_algo a);

/* Per-layer timing inside rvg_engine_run, off by default (on, it reads the clock around each
 * layer and Winograd phase). rvg_engine_profile(e, 1) clears the timers and starts them, (e, 0)
 * stops them; RVG_STATUS_NO_MEMORY if they cannot be allocated. rvg_engine_profile_read fills
 * ms[4*i + 0] with layer i's mean wall time per run in ms, and ms[4*i + 1..3] with the times of
 * its Winograd phases (input transform, GEMMs, output transform; 0 for other algorithms), for
 * i < rvg_engine_layers(e); it returns the number of runs averaged (0: none, or profiling off).
 * With several threads a phase's time includes waiting for the slowest thread. */
rvg_status rvg_engine_profile(rvg_engine *e, int on);
int64_t rvg_engine_profile_read(const rvg_engine *e, double *ms);

/* Number of convolution layers of the engine. */
int64_t rvg_engine_layers(const rvg_engine *e);

/* Number of leading layers run image by image at N > 1 (see rvg_engine_opts.seg_bytes). */
int64_t rvg_engine_image_layers(const rvg_engine *e);

/* Name of the kernel set in use: "avx512", "avx2", "portable", "avx512-twin", "amx" or "amx-twin"
 * (the names RVG_INFER_ISA takes). */
const char *rvg_engine_isa(const rvg_engine *e);

/* Validates a layer list against an input shape (the checks rvg_engine_new does); used by the
 * reference path too. Returns the output channel count of the last layer in *k_last. */
rvg_status rvg_infer_check(const rvg_infer_layer *layers, int64_t n_layers, int64_t in_ch,
                           int64_t H, int64_t W, int64_t *k_last);

#ifdef __cplusplus
}
#endif
#endif
