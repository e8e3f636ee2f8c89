/* engine_impl.h - the inside of rvg_engine, shared by the engine's files only:
 *   engine.c         load time: kernel set, algorithm per layer, packed weights, buffers;
 *   engine_run.c     the forward pass: input packing, layer by layer, SE, pooling, classifier;
 *   engine_direct.c  direct convolution and the unrolled tiny-plane layers;
 *   engine_wino.c    Winograd layers: how each runs (three phases or one), and the tuning;
 *   engine_amx*.c    the whole network on AMX tiles instead (kernel sets AMX, AMX_TWIN; their
 *                    own header engine_amx_impl.h).
 * The kernels they call are behind infer_impl.h.
 */
#ifndef RVG_ENGINE_IMPL_H
#define RVG_ENGINE_IMPL_H

#include <stdint.h>
#include <time.h>

#include "core/cpu_impl.h"
#include "infer_impl.h"
#include "ops/conv2d_gemm_impl.h"
#include "rvg/infer.h"

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
                                   max_batch transforms on the fly (rvg__wino_otf) */
    float *wraw;                /* Winograd: untransformed, [9*woff + (c*9 + tap)*16 + l], for
                                   the on-the-fly transform at small batches (channel-major:
                                   one linear stream, not 9 strided ones); NULL if no batch
                                   does */
    float *bias;                /* (KB16*16), zero padded */
    int unrolled;               /* tiny planes (engine.c, unroll_ok): u is the layer as one dense
                                   matrix (K*P*Q, C*H*W), row (k, p, q), column (c, h, w),
                                   transposed and packed for the GEMM (pack_unrolled) */
    float *u;
    int64_t se_hidden;
    float *se_dw, *se_db, *se_uw, *se_ub; /* copies: (hid, K), (hid), (K, hid), (K) */
} layer_plan;

/* Per layer and batch class (N == 1, N > 1): the one-phase / three-phase tuning (engine_wino.c). */
enum { TUNE_SAMPLES = 6 };
struct wtune {
    double ms[2][TUNE_SAMPLES]; /* [0]: three phases, [1]: one phase */
    int n[2];
    int choice; /* -1 while measuring */
};

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
    int64_t seg;             /* layers [0, seg) run image by image when N > 1 (run_net) */
    float *img[2];           /* their one-image ping-pong buffers */
    float *V, *M;            /* Winograd scratch: (n*n, CB, T, 8), (n*n, KB16*2, T, 8) */
    float *se_m, *se_h;      /* (max_batch, K8max), (max_batch, hid max) */
    float *wtmp;             /* per thread: one row of on-the-fly Winograd weights (2 blocks) */
    int64_t wtmp_floats;     /* per thread */
    int otf;                 /* -1 auto, 0 never, 1 always (RVG_INFER_OTF) */
    int fuse;                /* opts.fuse: 0 tuned (wino_tune), 1 one phase, -1 three phases */
    int64_t band_bytes;      /* opts.band_bytes, resolved (rvg__wino_part_tiles) */
    struct wtune *tune;      /* fuse 0: per layer, for N == 1 and N > 1 (wino_tune) */
    float *Vt, *Mt;          /* one-phase Winograd modes: per thread, its own V and M */
    int64_t vt_floats, mt_floats; /* per thread */
    int64_t *vstamp;         /* per thread (STAMP_PAD apart): layer run whose V it holds */
    int64_t *owner[2];       /* per 8-channel block of a layer's input or output: OWNER(run,
                                thread that wrote it in WINO_BLOCKS), -1 before any; [run & 1]
                                (engine_wino.c) */
    int64_t layer_runs;      /* layers run so far: a fresh stamp for each */
    float *pooled;           /* (max_batch, KB8*8 of the last layer) */
    float *ux, *uy;          /* unrolled layers: (max_batch, C*H*W), (max_batch, K*P*Q) */
    float *upack;            /* unrolled layers: per thread, GEMM packing buffers */
    int64_t upack_floats;    /* per thread */
    size_t bytes;
    double *prof;            /* NULL, or per layer: ms in total and in 3 phases
                                (rvg_engine_profile) */
    int64_t prof_runs;       /* whole-network runs since the profile was switched on */
    struct rvg__amx_net *amx; /* kernel set AMX or AMX_TWIN: the whole network runs there
                                 (engine_amx.c); the fields above then hold only shapes, the
                                 classifier and the profile */
};

/* Floats between the point planes of V and M beyond a plane's size: one cache line. A plane is
 * often a multiple of 4 KiB (14x14 maps, 192 channels: 16 tiles x 192 = 3 pages per image), and
 * then the 36 points a tile transform writes or reads all fell in one L1 set. */
#define WINO_PLANE_PAD 16

/* Below this many tiles a transformed weight is used by too few tiles to pay for reading it
 * (n^2/9 times the raw bytes) from memory; then transforming on the fly is cheaper. At batch 1
 * this covers A0/B0's 14x14 (9 tiles with F(5x5)) and 28x28 (25 tiles with F(6x6)) layers. */
enum { WINO_OTF_T = 32 };

/* Above this many bytes of pre-transformed weights a layer split into bands on several threads
 * transforms on the fly at any batch: in bands each thread reads all of a layer's weights, and
 * A0's stage 3 at batch 8 (7.2 MB per layer, 94 MB in all, streamed from memory on every run)
 * took 1.30 ms per layer that way against 1.01 ms transforming on the fly (rvg__wino_mode_at). */
enum { WINO_OTF_BYTES = 4 << 20 };

enum { WINO_BAND_MIN = 12 }; /* one 12-tile AVX-512 register block per band at least */

/* rvg_engine.owner entries: the layer run in the high bits, the thread in the low 16. */
#define OWNER(seq, tid) ((seq) << 16 | (int64_t)(tid))
#define OWNER_SEQ(o) ((o) >> 16)
#define OWNER_TID(o) ((int)((o)&0xffff))

/* WINO_BLOCKS' per-thread stamps (rvg_engine.vstamp) lie this many int64 apart, one cache line,
 * so that threads do not share one. */
enum { STAMP_PAD = 8 };

/* How a Winograd layer runs at batch N (rvg__wino_mode_at in engine_wino.c says which when). */
typedef enum { WINO_PHASES, WINO_BLOCKS, WINO_BANDS } wino_mode;

/* Tiny planes (engine.c, unroll_ok): the layer as one dense matrix, run by engine_direct.c. */
enum { UNROLL_MIN_BATCH = 6, UNROLL_MAX_PQHW = 64, UNROLL_COLS = 3 * RVG__GEMM_NR };

/* A layer run (or the network's head) as its tasks see it: each phase is a task function over a
 * range of units, run by rvg__pool_for. */
typedef struct {
    const rvg_engine *e;
    const layer_plan *p;
    const float *x; /* layer input (padded pack8) or the NCHW network input */
    float *y;       /* layer output */
    int64_t N;
    int64_t nz;     /* leading units of a phase that zero the output border (rvg__zero_units) */
    int64_t seq;    /* this layer run's stamp (rvg_engine.layer_runs; engine_wino.c) */
    float *aux;     /* feat / logits */
} task;

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Point stride of a thread's M in the one-phase modes: up to 4 blocks of 8 channels (a gemm32
 * pair) of nt tiles; the plane padded as V's and M's are. */
static inline int64_t fused_ms(int64_t nt) {
    return 32 * nt + WINO_PLANE_PAD;
}

/* engine_wino.c: whether layer p transforms its weights on the fly at batch N, and how it runs. */
int rvg__wino_otf(const rvg_engine *e, const layer_plan *p, int64_t N);
wino_mode rvg__wino_mode_at(const rvg_engine *e, const layer_plan *p, int64_t N);
/* The most tiles of one part of a WINO_BANDS band with pre-transformed weights (opts.band_bytes;
 * a band of more tiles runs as several parts of equal size). */
int64_t rvg__wino_part_tiles(const rvg_engine *e, const layer_plan *p);

/* engine_run.c: zeroes everything of output block u (of N*KB8) outside the (P, Q) interior at
 * (1, 1); and units [0, t->nz) of a layer's first phase do that for the whole output (disjoint
 * from what the phase computes): returns the first unit index of [b, e) that is real work. */
void rvg__zero_border(float *y, int64_t u, int64_t P, int64_t Q, int64_t Hp, int64_t Wp);
int64_t rvg__zero_units(const task *t, int64_t b, int64_t e);

/* engine_run.c: the SE gates of one image: m (K) channel means in, gates out; h (Hd) scratch. */
void rvg__se_gates(float *m, float *h, const float *dw, const float *db, const float *uw,
                   const float *ub, int64_t K, int64_t Hd);

/* One layer over the batch of t, by algorithm (engine_direct.c, engine_wino.c). */
void rvg__run_direct(task *t);
void rvg__run_unrolled(task *t);
void rvg__run_wino(task *t);

/* engine_amx.c: the AMX engine (kernel sets AMX and AMX_TWIN). */
typedef struct rvg__amx_net rvg__amx_net;
rvg_status rvg__amx_build(rvg_engine *e, const rvg_infer_layer *layers, int twin);
rvg_status rvg__amx_run(rvg_engine *e, float *logits, float *feat, const float *x, int64_t N);
void rvg__amx_free(rvg__amx_net *n);

#endif
