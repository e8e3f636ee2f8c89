/* conv2d_gemm.c - the training fast path of the grouped 2-D convolution: im2col + GEMM.
 *
 * Does: forward, input gradient and weight gradient with the exact contract of the _ref twins in
 * src/ops/ref/conv2d.c (forward overwrites y; backward accumulates into dx, dw, dbias, any NULL).
 * Per group g and per chunk of nb images (nb*P*Q ~ RVG__CONV_TARGET_COLS columns or more, so the
 * tiny late layers of a 28x28 network still give the GEMM a wide matrix; a 224x224 image is instead
 * cut into bands of output rows, so that col stays in cache; conv2d_im2col.c builds col):
 *     col  (C/G*R*S, nb*P*Q)  = im2col(x)
 *     y_g  (K/G, nb*P*Q)      = w_g (K/G, C/G*R*S) . col                     forward
 *     dw_g (K/G, C/G*R*S)    += dy_g (K/G, nb*P*Q) . col^T                   weight gradient
 *     dcol (C/G*R*S, nb*P*Q)  = w_g^T . dy_g,  dx += col2im(dcol)             input gradient
 * A 1x1, stride 1, pad 0 convolution on one image uses x, y, dx in place (no im2col, no col2im).
 * Tiny input planes (H*W <= R*S: the 2x2 layers of a 28x28 network) go to conv2d_unrolled.c, which
 * writes the whole convolution as one dense matrix instead.
 * The GEMM is rvg__conv_sgemm (src/ops/gemm.c: the built-in packed GEMM with SIMD micro-kernels,
 * or cblas_sgemm where that backend is chosen).
 *
 * Threads: a small claim-based worker pool (src/core/parallel.c says why not an OpenMP team) cuts
 * each GEMM's C into disjoint slabs of whole register tiles (each slab with its thread's own packed
 * buffers in the workspace), and im2col / col2im / copies into disjoint rows or channels; or, for
 * a 3x3 + 1x1 pair cut into many chunks, gives each thread whole chunks (see "the pair, chunk by
 * chunk on the threads"). Every float sum has a fixed order that depends neither on timing nor on
 * the thread count (dw sums the image chunks in order, or per image group and then the groups in
 * order, by the shape alone), so results are bit-identical from run to run (needed for
 * bit-identical resume) and, with the built-in GEMM, for any thread count (OpenBLAS only promises
 * the former). No atomics on data, no per-thread partial gradients.
 *
 * Stride-1 3x3 layers on planes of 7x7 or more (4x4 or more in a batch large enough,
 * rvg__conv_winograd_ok) go to Winograd F(4x4, 3x3) instead, forward, input and weight gradients
 * (conv2d_winograd.c).
 *
 * Does not: allocate (all scratch comes from the caller's workspace), validate shapes (callers do),
 * or dilate.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel_impl.h"
#include "ops/conv2d_gemm_impl.h"
#include "rvg/status.h"

/* Columns per chunk: images are batched until the GEMM is about this wide, and a large image is cut
 * into bands of output rows of about this many columns. Measured on the A0 28x28 batch-64 layers
 * (min of 4 runs of bench_conv, one thread): 256 and 512 tie, 1024 is ~5-10% slower (its col
 * buffer falls out of L2); 512 keeps the GEMM wider for the 1x1 and late layers. */
#define RVG__CONV_TARGET_COLS 512
/* ... or wider, so that col holds about this many floats: a layer with few input channels (the stem
 * of a 224x224 input: 27 rows of col) otherwise ran as hundreds of 48x448x27 GEMMs per batch, each
 * with its own thread hand-off, at 15 GFLOP/s. */
#define RVG__CONV_TARGET_FLOATS (128 * 1024)
/* A 1x1 stride-1 layer with at least this many positions per image runs image by image in place
 * rather than copying several images side by side into col. */
#define RVG__CONV_DIRECT_MIN_COLS 128

/* ---- whether stride-1 3x3 layers go to Winograd ------------------------------------------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_winograd = 1; /* stride-1 3x3 layers by Winograd (RVG_CONV_WINOGRAD=0: off) */

static void init_once(void) {
    const char *wv = getenv("RVG_CONV_WINOGRAD");
    g_winograd = !(wv && strcmp(wv, "0") == 0);
}

static void ensure_init(void) {
    pthread_once(&g_once, init_once);
}

int rvg__conv_winograd_set(int on) {
    ensure_init();
    const int was = g_winograd;
    g_winograd = on != 0;
    return was;
}

/* The convolution goes to conv2d_winograd.c. Its point GEMMs run on
 * the built-in kernels, one GEMM per pool thread; under the OpenBLAS backend (no AVX2) the im2col
 * path keeps OpenBLAS's own SIMD GEMM instead of falling back to the plain-C micro-kernel. */
static int use_winograd(const rvg_conv_shape *s) {
    return g_winograd && rvg__conv_gemm_backend() != RVG__GEMM_BLAS && rvg__conv_winograd_ok(s);
}

int rvg__conv_winograd_used(const rvg_conv_shape *s) {
    ensure_init();
    return use_winograd(s);
}

/* Work sharing: rvg__par_run (src/core/parallel.c), not OpenMP; see the reason there. */
#define par_run rvg__par_run

/* A loop over [0, count) cut into contiguous pieces, run by par_run. */
typedef struct range_job range_job;
struct range_job {
    void (*body)(const range_job *j, int64_t lo, int64_t hi);
    int64_t count, pieces;
    /* arguments of the bodies below */
    const rvg_conv_shape *s;
    const struct conv_plan *pl;
    int64_t n0, nn, g, pa, pb; /* images n0 .. n0+nn-1, output rows pa .. pb-1, group g */
    float *out;
    const float *in, *bias;
};

static void range_item(void *ctx, int64_t item, int tid) {
    (void)tid;
    const range_job *j = ctx;
    j->body(j, j->count * item / j->pieces, j->count * (item + 1) / j->pieces);
}

/* Runs j->body over [0, count), threaded when the loop touches enough floats to pay for it
 * (rvg__conv_loop_threads). */
static void range_run(range_job *j, int64_t count, int64_t elems) {
    const int nt = rvg__conv_loop_threads(elems);
    j->count = count;
    j->pieces = nt > 1 ? (int64_t)nt * RVG__PIECES_PER_THREAD : 1;
    if (j->pieces > count)
        j->pieces = count > 0 ? count : 1;
    par_run(j->pieces, nt, range_item, j);
}

/* ---- convolution plan and workspace ---------------------------------------------------------- */

typedef struct conv_plan {
    int64_t Cg, Kg, RS, CRS, HW, PQ;
    int64_t nb;    /* images per chunk */
    int64_t prows; /* output rows per chunk (all P when nb > 1; fewer for a large image) */
    int direct;    /* 1x1, stride 1, pad 0: one image's column matrix is x itself */
} conv_plan;

/* A chunk is nb whole images or, when one image alone has more than RVG__CONV_TARGET_COLS output
 * positions, a band of prows output rows of one image (so col stays cache-sized at 224x224). */
static void plan_make(conv_plan *p, const rvg_conv_shape *s) {
    p->Cg = s->C / s->G;
    p->Kg = s->K / s->G;
    p->RS = s->R * s->S;
    p->CRS = p->Cg * p->RS;
    p->HW = s->H * s->W;
    p->PQ = s->P * s->Q;
    const int64_t PQ = p->PQ > 0 ? p->PQ : 1, Q = s->Q > 0 ? s->Q : 1;
    const int direct = rvg__conv_direct(s);
    /* a 1x1 is planned as if it were 3x3, like its sibling in a block, so that its workspace
     * fits in the pair's (pair_1x1_shape) */
    const int64_t crs = p->CRS > 9 * p->Cg ? p->CRS : 9 * p->Cg;
    int64_t target = RVG__CONV_TARGET_FLOATS / (crs > 0 ? crs : 1);
    target = target < RVG__CONV_TARGET_COLS ? RVG__CONV_TARGET_COLS : target;
    if (PQ >= target) {
        p->nb = 1;
        p->prows = target / Q;
        p->prows = p->prows < 1 ? 1 : p->prows > s->P ? s->P : p->prows;
    } else if (direct && PQ >= RVG__CONV_DIRECT_MIN_COLS) {
        /* a 1x1 on one image reads x, y, dx in place: no copies into and out of col */
        p->nb = 1;
        p->prows = s->P;
    } else {
        const int64_t nb = (target + PQ - 1) / PQ;
        p->nb = nb > s->N ? (s->N > 0 ? s->N : 1) : nb;
        p->prows = s->P;
    }
    p->direct = direct;
}

/* The chunks of a convolution in their fixed order (images n0 .. n0+nn-1, then bands of output
 * rows pa .. pb-1 within them); weight gradients sum the chunks in this order. */
typedef struct {
    int64_t n0, nn, pa, pb, cols; /* nn == 0: past the end */
} conv_chunk;

static void chunk_fill(conv_chunk *c, const conv_plan *p, const rvg_conv_shape *s) {
    if (c->n0 >= s->N || s->P <= 0) {
        c->nn = 0;
        return;
    }
    c->nn = s->N - c->n0 < p->nb ? s->N - c->n0 : p->nb;
    c->pb = s->P - c->pa < p->prows ? s->P : c->pa + p->prows;
    c->cols = c->nn * (c->pb - c->pa) * s->Q;
}

static conv_chunk chunk_first(const conv_plan *p, const rvg_conv_shape *s) {
    conv_chunk c = {0, 0, 0, 0, 0};
    chunk_fill(&c, p, s);
    return c;
}

static void chunk_next(conv_chunk *c, const conv_plan *p, const rvg_conv_shape *s) {
    c->pa += p->prows;
    if (c->pa >= s->P) {
        c->pa = 0;
        c->n0 += p->nb;
    }
    chunk_fill(c, p, s);
}

/* Columns of the largest chunk. */
static int64_t plan_cols(const conv_plan *p, const rvg_conv_shape *s) {
    return p->nb * p->prows * s->Q;
}

static int64_t round16(int64_t n) {
    return (n + 15) & ~(int64_t)15;
}

/* Workspace layout, in floats after aligning the base to 64 bytes (cols = nb * prows * Q):
 *   pack (threads, RVG__GEMM_PACK_FLOATS)  packed GEMM operands, one set per thread
 *   col  (CRS, cols)             im2col of x, reused for dcol in backward
 *   tmp  (Kg, cols)              GEMM output / gathered dy when a chunk holds several images */
typedef struct {
    float *pack, *col, *tmp;
} conv_work;

/* Floats of the col region: im2col's (CRS, cols), or the unrolled matrix when that path is taken. */
static int64_t col_floats(const conv_plan *p, const rvg_conv_shape *s) {
    int64_t n = round16(p->CRS * plan_cols(p, s));
    if (rvg__conv_unrolled_ok(s) && round16(rvg__conv_unrolled_floats(s)) > n)
        n = round16(rvg__conv_unrolled_floats(s));
    /* sized whether or not Winograd is enabled now, so that a workspace stays big enough */
    if (rvg__conv_winograd_ok(s)) {
        const int64_t wino = round16(rvg__conv_winograd_floats(s, rvg__conv_threads_max()));
        n = wino > n ? wino : n;
    }
    return n;
}

static size_t work_floats(const conv_plan *p, const rvg_conv_shape *s) {
    const int64_t cols = plan_cols(p, s);
    return (size_t)((int64_t)rvg__conv_threads_max() * RVG__GEMM_PACK_FLOATS + col_floats(p, s) +
                    round16(p->Kg * cols));
}

size_t rvg__conv2d_gemm_workspace_size(const rvg_conv_shape *s) {
    ensure_init();
    conv_plan p;
    plan_make(&p, s);
    return work_floats(&p, s) * sizeof(float) + 64;
}

static float *aligned_base(void *work) {
    return (float *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
}

static void work_carve(conv_work *ws, const conv_plan *p, const rvg_conv_shape *s, void *work) {
    float *f = aligned_base(work);
    ws->pack = f;
    ws->col = ws->pack + (int64_t)rvg__conv_threads_max() * RVG__GEMM_PACK_FLOATS;
    ws->tmp = ws->col + col_floats(p, s);
}

/* Ranges of im2col rows / col2im channels (conv2d_im2col.c) as range_run bodies. */
static rvg__col_band band_of(const range_job *j) {
    rvg__col_band b = {j->s, j->n0, j->nn, j->g, j->pa, j->pb};
    return b;
}

static void im2col_rows(const range_job *j, int64_t lo, int64_t hi) {
    const rvg__col_band b = band_of(j);
    rvg__im2col_rows(j->out, j->in, &b, lo, hi);
}

static void col2im_channels(const range_job *j, int64_t lo, int64_t hi) {
    const rvg__col_band b = band_of(j);
    rvg__col2im_channels(j->out, j->in, &b, lo, hi);
}

/* Runs body over `count` units (im2col rows or col2im channels) of the band of images n0 ..
 * n0+nn-1, output rows pa .. pb-1, group g; both move CRS * nn * (pb-pa) * Q floats. */
static void band_run(void (*body)(const range_job *j, int64_t lo, int64_t hi), int64_t count,
                     float *out, const float *in, const rvg_conv_shape *s, const conv_plan *pl,
                     int64_t n0, int64_t nn, int64_t pa, int64_t pb, int64_t g) {
    range_job j = {.body = body,
                   .s = s,
                   .pl = pl,
                   .n0 = n0,
                   .nn = nn,
                   .g = g,
                   .pa = pa,
                   .pb = pb,
                   .out = out,
                   .in = in};
    range_run(&j, count, pl->CRS * nn * (pb - pa) * s->Q);
}

static void im2col(float *col, const float *x, const rvg_conv_shape *s, const conv_plan *pl,
                   int64_t n0, int64_t nn, int64_t pa, int64_t pb, int64_t g) {
    band_run(im2col_rows, pl->CRS, col, x, s, pl, n0, nn, pa, pb, g);
}

/* dx (images n0.., channels of group g) += col2im(col (CRS, nn*(pb-pa)*Q)) for output rows
 * pa .. pb-1, channels [lo, hi). One piece owns a channel and adds its R*S rows in (r, s) order,
 * and bands are added in order, so every dx element sums in a fixed order. */
static void col2im_add(float *dx, const float *col, const rvg_conv_shape *s, const conv_plan *pl,
                       int64_t n0, int64_t nn, int64_t pa, int64_t pb, int64_t g) {
    band_run(col2im_channels, pl->Cg, dx, col, s, pl, n0, nn, pa, pb, g);
}

/* y[n0+i, g*Kg + k, :] = tmp[k, i*PQ : (i+1)*PQ] + bias[g*Kg + k], channels k in [lo, hi). */
static void scatter_rows(const range_job *j, int64_t lo, int64_t hi) {
    const rvg_conv_shape *s = j->s;
    const int64_t PQ = j->pl->PQ, Kg = j->pl->Kg, cols = j->nn * PQ, KPQ = s->K * PQ;
    for (int64_t k = lo; k < hi; k++) {
        const float *src = j->in + k * cols;                       /* (nn, PQ) */
        float *dst = j->out + (j->n0 * s->K + j->g * Kg + k) * PQ; /* image n0's (PQ) */
        const float b = j->bias ? j->bias[j->g * Kg + k] : 0.0f;
        for (int64_t i = 0; i < j->nn; i++, src += PQ, dst += KPQ) {
            if (j->bias)
                for (int64_t q = 0; q < PQ; q++)
                    dst[q] = src[q] + b;
            else
                rvg__copy_f(dst, src, PQ);
        }
    }
}

static void scatter_y(float *y, const float *tmp, const float *bias, const rvg_conv_shape *s,
                      const conv_plan *pl, int64_t n0, int64_t nn, int64_t g) {
    range_job j = {.body = scatter_rows,
                   .s = s,
                   .pl = pl,
                   .n0 = n0,
                   .nn = nn,
                   .g = g,
                   .out = y,
                   .in = tmp,
                   .bias = bias};
    range_run(&j, pl->Kg, pl->Kg * nn * pl->PQ);
}

/* tmp[k, i*PQ : (i+1)*PQ] = dy[n0+i, g*Kg + k, :], channels k in [lo, hi). */
static void gather_rows(const range_job *j, int64_t lo, int64_t hi) {
    const rvg_conv_shape *s = j->s;
    const int64_t PQ = j->pl->PQ, Kg = j->pl->Kg, cols = j->nn * PQ, KPQ = s->K * PQ;
    for (int64_t k = lo; k < hi; k++) {
        const float *src = j->in + (j->n0 * s->K + j->g * Kg + k) * PQ;
        float *dst = j->out + k * cols;
        for (int64_t i = 0; i < j->nn; i++, src += KPQ, dst += PQ)
            rvg__copy_f(dst, src, PQ);
    }
}

static void gather_dy(float *tmp, const float *dy, const rvg_conv_shape *s, const conv_plan *pl,
                      int64_t n0, int64_t nn, int64_t g) {
    range_job j = {
        .body = gather_rows, .s = s, .pl = pl, .n0 = n0, .nn = nn, .g = g, .out = tmp, .in = dy};
    range_run(&j, pl->Kg, pl->Kg * nn * pl->PQ);
}

/* dbias[k] += sum over n, p, q of dy, channels k in [lo, hi), in double (the reduction has N*P*Q
 * terms). Four interleaved partial sums hide the add latency; their pattern is fixed, so the
 * result is too. */
static void dbias_rows(const range_job *j, int64_t lo, int64_t hi) {
    const int64_t N = j->s->N, K = j->s->K, PQ = j->pl->PQ;
    for (int64_t k = lo; k < hi; k++) {
        double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
        for (int64_t n = 0; n < N; n++) {
            const float *dyk = j->in + (n * K + k) * PQ;
            int64_t q = 0;
            for (; q + 4 <= PQ; q += 4) {
                a0 += dyk[q];
                a1 += dyk[q + 1];
                a2 += dyk[q + 2];
                a3 += dyk[q + 3];
            }
            for (; q < PQ; q++)
                a0 += dyk[q];
        }
        j->out[k] += (float)((a0 + a1) + (a2 + a3));
    }
}

/* ---- the kernels ---------------------------------------------------------------------------- */

/* ---- weights kept from a forward for its backward ----------------------------------------------
 * A keep buffer starts with KEEP_HEAD floats whose first holds the path that filled it (an int,
 * copied in), then the unrolled matrices of every group or Winograd's U. The backward uses it only
 * when it takes the same path, so a path switched between the two (rvg__conv_winograd_set, a
 * backend change) costs a recomputation, never a wrong gradient. */
#define KEEP_HEAD 16
enum { KEEP_NONE = 0, KEEP_UNROLLED = 1, KEEP_WINOGRAD = 2 };

static int keep_path(const rvg_conv_shape *s) {
    if (rvg__conv_unrolled_ok(s))
        return KEEP_UNROLLED;
    return use_winograd(s) ? KEEP_WINOGRAD : KEEP_NONE;
}

static void keep_tag(float *keep, int path) {
    if (keep)
        memcpy(keep, &path, sizeof path);
}

/* The kept weights when `keep` was filled by this path, else NULL. */
static const float *keep_for(const float *keep, int path) {
    int tag = KEEP_NONE;
    if (keep)
        memcpy(&tag, keep, sizeof tag);
    return keep && tag == path && path != KEEP_NONE ? keep + KEEP_HEAD : NULL;
}

size_t rvg__conv2d_3x3_1x1_keep_floats(const rvg_conv_shape *s3) {
    ensure_init();
    int64_t n = 0;
    if (rvg__conv_unrolled_ok(s3))
        n = rvg__conv_unrolled_keeps_u(s3) ? s3->G * rvg__conv_unrolled_floats(s3) : 0;
    else if (rvg__conv_winograd_ok(s3)) /* whether or not Winograd is enabled now */
        n = rvg__conv_winograd_u_floats(s3);
    return n ? (size_t)(KEEP_HEAD + round16(n)) : 0;
}

static void forward_gemm(float *y, const float *x, const float *w, const float *bias,
                         const rvg_conv_shape *s, void *work, float *keep) {
    ensure_init();
    conv_plan pl;
    plan_make(&pl, s);
    conv_work ws;
    work_carve(&ws, &pl, s, work);
    const int path = keep_path(s);
    keep_tag(keep, KEEP_NONE); /* invalid while it is being written */
    if (path == KEEP_UNROLLED) {
        if (rvg__conv2d_forward_unrolled(y, x, w, bias, s, ws.col, ws.pack,
                                         keep ? keep + KEEP_HEAD : NULL))
            keep_tag(keep, path);
        return;
    }
    if (path == KEEP_WINOGRAD) {
        rvg__conv2d_forward_winograd(y, x, w, bias, s, ws.col, ws.pack, rvg__conv_threads_now(),
                                     keep ? keep + KEEP_HEAD : NULL);
        keep_tag(keep, path);
        return;
    }
    const int64_t C = s->C, K = s->K, G = s->G, Q = s->Q, PQ = pl.PQ;
    const int64_t Kg = pl.Kg, CRS = pl.CRS;

    for (conv_chunk ch = chunk_first(&pl, s); ch.nn > 0; chunk_next(&ch, &pl, s)) {
        const int64_t n0 = ch.n0, nn = ch.nn, pa = ch.pa, pb = ch.pb, cols = ch.cols;
        for (int64_t g = 0; g < G; g++) {
            const float *wg = w + g * Kg * CRS; /* (Kg, CRS) */
            const float *B = ws.col;            /* (CRS, cols) */
            int64_t ldb = cols;
            if (pl.direct && nn == 1) {
                B = x + (n0 * C + g * pl.Cg) * pl.HW + pa * Q;
                ldb = pl.HW;
            } else {
                im2col(ws.col, x, s, &pl, n0, nn, pa, pb, g);
            }
            if (nn == 1) {
                /* One image: the band's output rows are (Kg, cols) with row stride PQ in y;
                 * seed them with the bias and let the GEMM add onto it. */
                float *yg = y + (n0 * K + g * Kg) * PQ + pa * Q; /* (Kg, cols), ld PQ */
                if (bias)
                    for (int64_t k = 0; k < Kg; k++)
                        for (int64_t q = 0; q < cols; q++)
                            yg[k * PQ + q] = bias[g * Kg + k];
                rvg__conv_sgemm(0, 0, Kg, cols, CRS, wg, CRS, B, ldb, bias != NULL, yg, PQ,
                                ws.pack);
            } else {
                rvg__conv_sgemm(0, 0, Kg, cols, CRS, wg, CRS, B, ldb, 0, ws.tmp, cols, ws.pack);
                scatter_y(y, ws.tmp, bias, s, &pl, n0, nn, g);
            }
        }
    }
}

void rvg__conv2d_forward_gemm(float *y, const float *x, const float *w, const float *bias,
                              const rvg_conv_shape *s, void *work) {
    forward_gemm(y, x, w, bias, s, work, NULL);
}

static void backward_gemm(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                          const float *w, const rvg_conv_shape *s, void *work,
                          const float *keep) {
    ensure_init();
    conv_plan pl;
    plan_make(&pl, s);
    conv_work ws;
    work_carve(&ws, &pl, s, work);
    const int64_t N = s->N, C = s->C, K = s->K, G = s->G, Q = s->Q, PQ = pl.PQ;
    const int64_t Kg = pl.Kg, CRS = pl.CRS;

    if (dbias) {
        range_job j = {.body = dbias_rows, .s = s, .pl = &pl, .out = dbias, .in = dy};
        range_run(&j, K, N * K * PQ);
    }
    if (!dx && !dw)
        return;
    if (rvg__conv_unrolled_ok(s)) {
        rvg__conv2d_backward_unrolled(dx, dw, dy, x, w, s, ws.col, ws.pack,
                                      keep_for(keep, KEEP_UNROLLED));
        return;
    }
    if (use_winograd(s)) {
        rvg__conv2d_backward_winograd(dx, dw, dy, x, w, s, ws.col, ws.pack, rvg__conv_threads_now(),
                                      keep_for(keep, KEEP_WINOGRAD));
        return;
    }

    /* Chunks in a fixed order (images, then bands of rows): dw sums them in that order. */
    for (conv_chunk ch = chunk_first(&pl, s); ch.nn > 0; chunk_next(&ch, &pl, s)) {
        const int64_t n0 = ch.n0, nn = ch.nn, pa = ch.pa, pb = ch.pb, cols = ch.cols;
        for (int64_t g = 0; g < G; g++) {
            const float *wg = w + g * Kg * CRS; /* (Kg, CRS) */
            const float *dyg;                   /* (Kg, cols), row stride lddy */
            int64_t lddy;
            if (nn == 1) {
                dyg = dy + (n0 * K + g * Kg) * PQ + pa * Q;
                lddy = PQ;
            } else {
                gather_dy(ws.tmp, dy, s, &pl, n0, nn, g);
                dyg = ws.tmp;
                lddy = cols;
            }
            if (dw) {
                /* dw_g (Kg, CRS) += dy_g (Kg, cols) . col^T */
                const float *B = ws.col; /* (CRS, cols) */
                int64_t ldb = cols;
                if (pl.direct && nn == 1) {
                    B = x + (n0 * C + g * pl.Cg) * pl.HW + pa * Q;
                    ldb = pl.HW;
                } else {
                    im2col(ws.col, x, s, &pl, n0, nn, pa, pb, g);
                }
                rvg__conv_sgemm(0, 1, Kg, CRS, cols, dyg, lddy, B, ldb, 1, dw + g * Kg * CRS,
                                CRS, ws.pack);
            }
            if (dx) {
                /* dcol (CRS, cols) = w_g^T . dy_g; a direct 1x1 adds straight into dx. */
                if (pl.direct && nn == 1) {
                    rvg__conv_sgemm(1, 0, CRS, cols, Kg, wg, CRS, dyg, lddy, 1,
                                    dx + (n0 * C + g * pl.Cg) * pl.HW + pa * Q, pl.HW, ws.pack);
                } else {
                    rvg__conv_sgemm(1, 0, CRS, cols, Kg, wg, CRS, dyg, lddy, 0, ws.col, cols,
                                    ws.pack);
                    col2im_add(dx, ws.col, s, &pl, n0, nn, pa, pb, g);
                }
            }
        }
    }
}

void rvg__conv2d_backward_gemm(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                               const float *w, const rvg_conv_shape *s, void *work) {
    backward_gemm(dx, dw, dbias, dy, x, w, s, work, NULL);
}

/* ---- the pair, chunk by chunk on the threads ---------------------------------------------------
 * A layer cut into many chunks (A0 at 224x224 batch 8: the stem 24, stage 1's stride-2 layer 56,
 * stage 2's 16) threaded each chunk's im2col and GEMMs in turn: 3 to 5 parallel phases per chunk,
 * each ending in a wait for the slower thread, and each handing col from one core's cache to the
 * other's. Two threads ran those layers only 1.3-1.7x as fast as one (`bench_conv --set 224 --only
 * s2 --pair`, wall clock). Here instead each thread takes whole chunks (forward) or whole image
 * groups (backward: the chunks of nb images, all their bands in order) with its own col, tmp and
 * packing buffers and serial GEMMs, one phase per layer and direction.
 * z3, z1 and dx get the same sums in the same order as chunk by chunk (a serial GEMM computes each
 * element as a threaded one does; an image group owns its dx planes and adds its bands in order),
 * so they are bit-identical to the threaded chunks. dw3 and dw1 are summed per image group into
 * partials, then added to dw in group order: a fixed order, decided by the shape alone, never by
 * the thread count, so results stay the same for any number of threads. */
#define OWN_CHUNKS_MIN 8 /* forward: fewer chunks are threaded one by one */
#define OWN_GROUPS_MIN 4 /* backward: fewer image groups are threaded chunk by chunk */
#define OWN_PARTIAL_MAX ((int64_t)1 << 21) /* floats of dw partials, at most */

static int64_t plan_bands(const conv_plan *p, const rvg_conv_shape *s) {
    return s->P > 0 ? (s->P + p->prows - 1) / p->prows : 0;
}

static int64_t plan_groups(const conv_plan *p, const rvg_conv_shape *s) {
    return (s->N + p->nb - 1) / p->nb;
}

/* Chunk i of the fixed order (image group i / bands, band i % bands). */
static conv_chunk chunk_at(const conv_plan *p, const rvg_conv_shape *s, int64_t i) {
    const int64_t bands = plan_bands(p, s);
    conv_chunk c = {i / bands * p->nb, 0, i % bands * p->prows, 0, 0};
    chunk_fill(&c, p, s);
    return c;
}

/* Floats of one image group's dw partials (dw3 then dw1, all groups of channels). */
static int64_t partial_floats(const conv_plan *p, const rvg_conv_shape *s) {
    return round16(s->K * p->CRS) + round16(s->K * p->Cg);
}

/* Whether the backward sums dw per image group: by the shape (and the backend) only, see above.
 * The workspace is sized by the shape alone, so that it stays big enough across backends. */
static int own_partials_fit(const conv_plan *p, const rvg_conv_shape *s) {
    const int64_t groups = plan_groups(p, s);
    return !rvg__conv_unrolled_ok(s) && groups >= OWN_GROUPS_MIN &&
           groups * partial_floats(p, s) <= OWN_PARTIAL_MAX;
}

static int own_partials(const conv_plan *p, const rvg_conv_shape *s) {
    return rvg__conv_gemm_backend() != RVG__GEMM_BLAS && own_partials_fit(p, s);
}

static int own_forward(const conv_plan *p, const rvg_conv_shape *s, int nt) {
    return nt > 1 && rvg__conv_gemm_backend() != RVG__GEMM_BLAS && !rvg__conv_unrolled_ok(s) &&
           plan_groups(p, s) * plan_bands(p, s) >= OWN_CHUNKS_MIN;
}

/* Per thread: packing set, col, tmp3, tmp1; after all threads' sets, the backward's partials. */
static int64_t own_thread_floats(const conv_plan *p, const rvg_conv_shape *s) {
    const int64_t cols = plan_cols(p, s);
    return RVG__GEMM_PACK_FLOATS + round16(p->CRS * cols) + 2 * round16(p->Kg * cols);
}

static size_t own_floats(const conv_plan *p, const rvg_conv_shape *s) {
    int64_t n = (int64_t)rvg__conv_threads_max() * own_thread_floats(p, s);
    if (own_partials_fit(p, s))
        n += plan_groups(p, s) * partial_floats(p, s);
    return (size_t)n;
}

typedef struct {
    const rvg_conv_shape *s;
    const conv_plan *pl;
    float *base;                     /* the workspace, 64-byte aligned */
    float *z3, *z1;                  /* forward */
    float *dx, *dw3, *dw1, *partial; /* backward (dw3, dw1: whether they are wanted) */
    const float *x, *w3, *w1, *dz3, *dz1;
} pair_job;

static float *own_set(const pair_job *j, int tid) {
    return j->base + (int64_t)tid * own_thread_floats(j->pl, j->s);
}

/* out (the chunk's images, channels of group g) = tmp (Kg, nn*PQ), on the calling thread. */
static void own_scatter(float *out, const float *tmp, const rvg_conv_shape *s, const conv_plan *pl,
                        const conv_chunk *c, int64_t g) {
    const range_job j = {.s = s, .pl = pl, .n0 = c->n0, .nn = c->nn, .g = g, .out = out, .in = tmp};
    scatter_rows(&j, 0, pl->Kg);
}

/* tmp (Kg, nn*PQ) = in (the chunk's images, channels of group g), on the calling thread. */
static void own_gather(float *tmp, const float *in, const rvg_conv_shape *s, const conv_plan *pl,
                       const conv_chunk *c, int64_t g) {
    const range_job j = {.s = s, .pl = pl, .n0 = c->n0, .nn = c->nn, .g = g, .out = tmp, .in = in};
    gather_rows(&j, 0, pl->Kg);
}

/* How one chunk of the pair runs: on the calling thread alone (serial: a thread's own chunk inside
 * a parallel item), or with each step a parallel phase (the chunks one by one); and its buffers:
 * a packing set (one per thread when threaded), col, and tmp3 / tmp1 for chunks of several
 * images. The chunk bodies below are the same either way, so are the sums. */
typedef struct {
    int serial;
    float *pack, *col, *tmp3, *tmp1;
} pair_bufs;

static void pair_gemm(const pair_bufs *b, int ta, int tb, int64_t M, int64_t N, int64_t K,
                      const float *A, int64_t lda, const float *B, int64_t ldb, int beta_one,
                      float *C, int64_t ldc) {
    (b->serial ? rvg__conv_sgemm_serial : rvg__conv_sgemm)(ta, tb, M, N, K, A, lda, B, ldb,
                                                           beta_one, C, ldc, b->pack);
}

/* b->col = im2col of x for chunk c, group g */
static void pair_im2col(const pair_bufs *b, const pair_job *j, const conv_chunk *c, int64_t g) {
    const rvg__col_band band = {j->s, c->n0, c->nn, g, c->pa, c->pb};
    if (b->serial)
        rvg__im2col_rows(b->col, j->x, &band, 0, j->pl->CRS);
    else
        im2col(b->col, j->x, j->s, j->pl, c->n0, c->nn, c->pa, c->pb, g);
}

/* dx += col2im(b->col) for chunk c, group g */
static void pair_col2im(const pair_bufs *b, const pair_job *j, const conv_chunk *c, int64_t g) {
    const rvg__col_band band = {j->s, c->n0, c->nn, g, c->pa, c->pb};
    if (b->serial)
        rvg__col2im_channels(j->dx, b->col, &band, 0, j->pl->Cg);
    else
        col2im_add(j->dx, b->col, j->s, j->pl, c->n0, c->nn, c->pa, c->pb, g);
}

/* out (chunk c's images, channels of group g) = b->tmp3 (Kg, nn*PQ) */
static void pair_scatter(const pair_bufs *b, float *out, const pair_job *j, const conv_chunk *c,
                         int64_t g) {
    if (b->serial)
        own_scatter(out, b->tmp3, j->s, j->pl, c, g);
    else
        scatter_y(out, b->tmp3, NULL, j->s, j->pl, c->n0, c->nn, g);
}

/* tmp (Kg, nn*PQ) = in (chunk c's images, channels of group g) */
static void pair_gather(const pair_bufs *b, float *tmp, const float *in, const pair_job *j,
                        const conv_chunk *c, int64_t g) {
    if (b->serial)
        own_gather(tmp, in, j->s, j->pl, c, g);
    else
        gather_dy(tmp, in, j->s, j->pl, c->n0, c->nn, g);
}

/* z3 and z1 of chunk c, every group: one im2col of x, whose centre rows (c, 1, 1), i.e. rows
 * 9c + 4, are the 1x1's column matrix. */
static void pair_forward_chunk(const pair_job *j, const pair_bufs *b, const conv_chunk *c) {
    const rvg_conv_shape *s = j->s;
    const conv_plan *pl = j->pl;
    const int64_t Kg = pl->Kg, Cg = pl->Cg, CRS = pl->CRS, PQ = pl->PQ, cols = c->cols;
    const float *centre = b->col + 4 * cols; /* (Cg, cols), row stride 9*cols */
    for (int64_t g = 0; g < s->G; g++) {
        const float *w3g = j->w3 + g * Kg * CRS, *w1g = j->w1 + g * Kg * Cg;
        pair_im2col(b, j, c, g);
        if (c->nn == 1) {
            /* one image: the band's rows of z3 and z1 are (Kg, cols) with row stride PQ */
            const int64_t off = (c->n0 * s->K + g * Kg) * PQ + c->pa * s->Q;
            pair_gemm(b, 0, 0, Kg, cols, CRS, w3g, CRS, b->col, cols, 0, j->z3 + off, PQ);
            pair_gemm(b, 0, 0, Kg, cols, Cg, w1g, Cg, centre, 9 * cols, 0, j->z1 + off, PQ);
        } else {
            pair_gemm(b, 0, 0, Kg, cols, CRS, w3g, CRS, b->col, cols, 0, b->tmp3, cols);
            pair_scatter(b, j->z3, j, c, g);
            pair_gemm(b, 0, 0, Kg, cols, Cg, w1g, Cg, centre, 9 * cols, 0, b->tmp3, cols);
            pair_scatter(b, j->z1, j, c, g);
        }
    }
}

/* The backward of chunk c, every group: dw3t, dw1t (either may be NULL) (+)= its weight
 * gradients (added when beta_one, else written), dx (if wanted) += its input gradient. */
static void pair_backward_chunk(const pair_job *j, const pair_bufs *b, const conv_chunk *c,
                                float *dw3t, float *dw1t, int beta_one) {
    const rvg_conv_shape *s = j->s;
    const conv_plan *pl = j->pl;
    const int64_t Kg = pl->Kg, Cg = pl->Cg, CRS = pl->CRS, PQ = pl->PQ, cols = c->cols;
    float *centre = b->col + 4 * cols; /* (Cg, cols), row stride 9*cols */
    for (int64_t g = 0; g < s->G; g++) {
        const float *w3g = j->w3 + g * Kg * CRS, *w1g = j->w1 + g * Kg * Cg;
        const float *dz3g = b->tmp3, *dz1g = b->tmp1; /* (Kg, cols), row stride lddz */
        int64_t lddz = cols;
        if (c->nn == 1) {
            const int64_t off = (c->n0 * s->K + g * Kg) * PQ + c->pa * s->Q;
            dz3g = j->dz3 + off;
            dz1g = j->dz1 + off;
            lddz = PQ;
        } else {
            pair_gather(b, b->tmp3, j->dz3, j, c, g);
            pair_gather(b, b->tmp1, j->dz1, j, c, g);
        }
        if (dw3t || dw1t) {
            pair_im2col(b, j, c, g);
            if (dw3t) /* dw3_g (Kg, CRS) (+)= dz3_g . col^T */
                pair_gemm(b, 0, 1, Kg, CRS, cols, dz3g, lddz, b->col, cols, beta_one,
                          dw3t + g * Kg * CRS, CRS);
            if (dw1t) /* dw1_g (Kg, Cg) (+)= dz1_g . centre^T */
                pair_gemm(b, 0, 1, Kg, Cg, cols, dz1g, lddz, centre, 9 * cols, beta_one,
                          dw1t + g * Kg * Cg, Cg);
        }
        if (j->dx) {
            /* dcol (CRS, cols) = w3_g^T . dz3_g, its centre rows += w1_g^T . dz1_g */
            pair_gemm(b, 1, 0, CRS, cols, Kg, w3g, CRS, dz3g, lddz, 0, b->col, cols);
            pair_gemm(b, 1, 0, Cg, cols, Kg, w1g, Cg, dz1g, lddz, 1, centre, 9 * cols);
            pair_col2im(b, j, c, g);
        }
    }
}

/* A thread's own buffers, for the chunks it takes. */
static pair_bufs own_bufs(const pair_job *j, int tid) {
    float *pack = own_set(j, tid), *col = pack + RVG__GEMM_PACK_FLOATS;
    float *tmp3 = col + round16(j->pl->CRS * plan_cols(j->pl, j->s));
    return (pair_bufs){1, pack, col, tmp3, tmp3 + round16(j->pl->Kg * plan_cols(j->pl, j->s))};
}

/* Forward of chunk `item`. */
static void own_forward_item(void *ctx, int64_t item, int tid) {
    const pair_job *j = ctx;
    const pair_bufs b = own_bufs(j, tid);
    const conv_chunk c = chunk_at(j->pl, j->s, item);
    pair_forward_chunk(j, &b, &c);
}

/* Backward of image group `item`: its bands in order, dw into the group's partials. */
static void own_backward_item(void *ctx, int64_t item, int tid) {
    const pair_job *j = ctx;
    const pair_bufs b = own_bufs(j, tid);
    const int64_t bands = plan_bands(j->pl, j->s);
    float *p3 = j->partial + item * partial_floats(j->pl, j->s);
    float *p1 = p3 + round16(j->s->K * j->pl->CRS);
    for (int64_t band = 0; band < bands; band++) {
        const conv_chunk c = chunk_at(j->pl, j->s, item * bands + band);
        pair_backward_chunk(j, &b, &c, j->dw3 ? p3 : NULL, j->dw1 ? p1 : NULL, band > 0);
    }
}

/* dw3 and dw1 += the image groups' partials, in group order; item = a range of rows k of both. */
typedef struct {
    const pair_job *j;
    int64_t pieces;
} own_sum_job;

static void own_sum_item(void *ctx, int64_t item, int tid) {
    (void)tid;
    const own_sum_job *sj = ctx;
    const pair_job *j = sj->j;
    const conv_plan *pl = j->pl;
    const int64_t K = j->s->K, lo = K * item / sj->pieces, hi = K * (item + 1) / sj->pieces;
    const int64_t groups = plan_groups(pl, j->s), stride = partial_floats(pl, j->s);
    float *dws[2] = {j->dw3, j->dw1};
    const int64_t len[2] = {pl->CRS, pl->Cg}, off[2] = {0, round16(K * pl->CRS)};
    for (int w = 0; w < 2; w++) {
        if (!dws[w])
            continue;
        const int64_t n = len[w];
        for (int64_t k = lo; k < hi; k++) {
            float *d = dws[w] + k * n;
            const float *p = j->partial + off[w] + k * n;
            for (int64_t i = 0; i < groups; i++, p += stride)
                for (int64_t e = 0; e < n; e++)
                    d[e] += p[e];
        }
    }
}

static void own_sum(const pair_job *j) {
    const int nt = rvg__conv_loop_threads(plan_groups(j->pl, j->s) * partial_floats(j->pl, j->s));
    own_sum_job sj = {j, nt > 1 ? (int64_t)nt * RVG__PIECES_PER_THREAD : 1};
    if (sj.pieces > j->s->K)
        sj.pieces = j->s->K > 0 ? j->s->K : 1;
    par_run(sj.pieces, nt, own_sum_item, &sj);
}

/* ---- the fused 3x3 + 1x1 pair ---------------------------------------------------------------- */

/* A train-form block convolves the same x twice: 3x3 pad 1 and 1x1 pad 0, same stride. The 1x1's
 * input at output (p, q) is x[p*st, q*st], which is the 3x3's centre tap (r = s = 1, offset
 * 1 - pad = 0), so in the 3x3 im2col the rows (c, 1, 1), i.e. rows 9c + 4, ARE the 1x1's column
 * matrix: a (Cg, cols) matrix starting at col + 4*cols with row stride 9*cols. Both GEMMs read it
 * in place (the packing copies whatever row stride it is given), which saves the 1x1's own
 * im2col in forward and its im2col and col2im in backward:
 *     z3_g = w3_g . col,  z1_g = w1_g . centre                                  forward
 *     dw3_g += dz3_g . col^T,  dw1_g += dz1_g . centre^T                          weight gradients
 *     dcol = w3_g^T . dz3_g,  centre rows of dcol += w1_g^T . dz1_g,  dx += col2im(dcol)
 * The alternative of one GEMM with a stacked weight [w3_g; w1_g placed at the centre taps] (2Kg
 * rows) was not built: its 1x1 half multiplies 8 zeros for every useful product, so it does
 * 2x the 3x3's arithmetic where two GEMMs do 10/9 of it, and these GEMMs are compute-bound.
 * Sum orders are fixed as in the single kernels (dx: dcol's centre row is w3-part then w1-part,
 * then col2im adds the taps in (r, s) order), so results do not depend on the thread count; they
 * differ from two separate calls by rounding only. */

/* The 3x3's workspace plus a second (Kg, cols) buffer: backward gathers dz3 and dz1 side by
 * side when a chunk holds several images. */
size_t rvg__conv2d_3x3_1x1_gemm_workspace_size(const rvg_conv_shape *s3) {
    ensure_init();
    conv_plan p;
    plan_make(&p, s3);
    const size_t shared = work_floats(&p, s3) + (size_t)round16(p.Kg * plan_cols(&p, s3));
    const size_t own = own_floats(&p, s3);
    return (shared > own ? shared : own) * sizeof(float) + 64;
}

static void check_pair_shape(const rvg_conv_shape *s3) {
    RVG_ASSERT(s3->R == 3 && s3->S == 3 && s3->pad == 1);
}

/* On tiny planes (rvg__conv_unrolled_ok) the 3x3 runs unrolled, and at stride 1 on the planes of
 * rvg__conv_winograd_ok through Winograd, with no im2col for the 1x1 to share; the pair is then two
 * single convolutions (a 1x1 on one image reads x in place); the 1x1's workspace fits in the
 * pair's. */
static rvg_conv_shape pair_1x1_shape(const rvg_conv_shape *s3) {
    rvg_conv_shape s1 = *s3;
    s1.R = s1.S = 1;
    s1.pad = 0;
    return s1;
}

void rvg__conv2d_forward_3x3_1x1_gemm(float *z3, float *z1, const float *x, const float *w3,
                                      const float *w1, const rvg_conv_shape *s3, void *work,
                                      float *keep) {
    ensure_init();
    check_pair_shape(s3);
    if (rvg__conv_unrolled_ok(s3) || use_winograd(s3)) {
        const rvg_conv_shape s1 = pair_1x1_shape(s3);
        forward_gemm(z3, x, w3, NULL, s3, work, keep);
        forward_gemm(z1, x, w1, NULL, &s1, work, NULL);
        return;
    }
    keep_tag(keep, KEEP_NONE);
    conv_plan pl;
    plan_make(&pl, s3);
    const int nt = rvg__conv_threads_now();
    if (own_forward(&pl, s3, nt)) {
        pair_job j = {.s = s3, .pl = &pl, .base = aligned_base(work), .z3 = z3, .z1 = z1,
                      .x = x, .w3 = w3, .w1 = w1};
        par_run(plan_groups(&pl, s3) * plan_bands(&pl, s3), nt, own_forward_item, &j);
        return;
    }
    conv_work ws;
    work_carve(&ws, &pl, s3, work);
    const pair_job j = {.s = s3, .pl = &pl, .z3 = z3, .z1 = z1, .x = x, .w3 = w3, .w1 = w1};
    const pair_bufs b = {0, ws.pack, ws.col, ws.tmp, NULL};
    for (conv_chunk ch = chunk_first(&pl, s3); ch.nn > 0; chunk_next(&ch, &pl, s3))
        pair_forward_chunk(&j, &b, &ch);
}

void rvg__conv2d_backward_3x3_1x1_gemm(float *dx, float *dw3, float *dw1, const float *dz3,
                                       const float *dz1, const float *x, const float *w3,
                                       const float *w1, const rvg_conv_shape *s3, void *work,
                                       const float *keep) {
    ensure_init();
    check_pair_shape(s3);
    if (!dx && !dw3 && !dw1)
        return;
    if (rvg__conv_unrolled_ok(s3) || use_winograd(s3)) {
        const rvg_conv_shape s1 = pair_1x1_shape(s3);
        backward_gemm(dx, dw3, NULL, dz3, x, w3, s3, work, keep);
        backward_gemm(dx, dw1, NULL, dz1, x, w1, &s1, work, NULL);
        return;
    }
    conv_plan pl;
    plan_make(&pl, s3);
    if (own_partials(&pl, s3)) {
        float *base = aligned_base(work);
        pair_job j = {.s = s3,
                      .pl = &pl,
                      .base = base,
                      .dx = dx,
                      .dw3 = dw3,
                      .dw1 = dw1,
                      .partial =
                          base + (int64_t)rvg__conv_threads_max() * own_thread_floats(&pl, s3),
                      .x = x,
                      .w3 = w3,
                      .w1 = w1,
                      .dz3 = dz3,
                      .dz1 = dz1};
        par_run(plan_groups(&pl, s3), rvg__conv_threads_now(), own_backward_item, &j);
        if (dw3 || dw1)
            own_sum(&j);
        return;
    }
    conv_work ws;
    work_carve(&ws, &pl, s3, work);
    const pair_job j = {.s = s3, .pl = &pl, .dx = dx, .x = x, .w3 = w3, .w1 = w1, .dz3 = dz3,
                        .dz1 = dz1};
    const pair_bufs b = {0, ws.pack, ws.col, ws.tmp, ws.tmp + round16(pl.Kg * plan_cols(&pl, s3))};
    /* Chunks in a fixed order (images, then bands of rows): dw3 and dw1 sum them in that order. */
    for (conv_chunk ch = chunk_first(&pl, s3); ch.nn > 0; chunk_next(&ch, &pl, s3))
        pair_backward_chunk(&j, &b, &ch, dw3, dw1, 1);
}
