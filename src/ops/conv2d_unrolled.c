/* conv2d_unrolled.c - the training convolution on tiny input planes, as one dense matrix.
 *
 * At a 28x28 input the last stages of a RepVGG see 2x2 planes (A0: 13 of its 22 layers). There a
 * 3x3 pad-1 convolution through im2col multiplies 9 taps per output position of which only 4 fall
 * inside the plane, and the im2col / col2im copies cost as much again. Instead, for each group g
 * the convolution is written out as one matrix over whole planes (a block Toeplitz matrix):
 *     U_g (Kg*PQ, Cg*HW),  U_g[(k, p, q), (c, h, w)] = w[g*Kg + k, c, h - p*st + pad, w - q*st + pad]
 * (zero where the tap is outside the kernel). With x and y as row-major (N, C*HW) and (N, K*PQ)
 * matrices, and the group's columns picked by an offset and the row stride:
 *     y_g  = x_g . U_g^T                     forward      (N x Kg*PQ, inner Cg*HW)
 *     dx_g += dy_g . U_g                     input grad   (N x Cg*HW, inner Kg*PQ)
 *     dU_g = dy_g^T . x_g,  dw += fold(dU_g)  weight grad  (Kg*PQ x Cg*HW, inner N)
 * No im2col, no col2im, no scatter: x, y, dx and dy are read and written in place. The GEMM does
 * PQ*HW multiply-adds per (k, c) where im2col does PQ*R*S, so this path is taken when
 * H*W <= R*S (and PQ*HW <= UNROLLED_MAX_PQHW, which bounds U at 64x the weight): for a 2x2 plane
 * 16 against 36, and for the 2x2 -> 1x1 stride-2 layer 4 against 9.
 *
 * Sum orders: each y/dx element is one GEMM dot product (fixed order, thread-count independent with
 * the built-in GEMM); each dw element adds its dU entries in (p, q) order. Results are those of the
 * reference up to rounding; tests/test_conv_fast.c checks them on awkward shapes.
 */
#include <stddef.h>

#include "core/parallel_impl.h"
#include "ops/conv2d_gemm_impl.h"
#include "ops/gemm_bf16x3_impl.h"

#define UNROLLED_MAX_PQHW 64

int rvg__conv_unrolled_ok(const rvg_conv_shape *s) {
    const int64_t HW = s->H * s->W, PQ = s->P * s->Q;
    return HW >= 1 && PQ >= 1 && HW <= s->R * s->S && PQ * HW <= UNROLLED_MAX_PQHW;
}

/* Floats of one group's U in fp32. */
static int64_t u_floats(const rvg_conv_shape *s) {
    const int64_t Kg = s->K / s->G, Cg = s->C / s->G;
    return Kg * s->P * s->Q * Cg * s->H * s->W;
}

/* Floats that hold both halves (hi and lo, uint16_t each) of one group's U packed for the
 * bf16x3 GEMM, in either orientation (pack_u4 pads the channels to whole tiles and steps). */
static int64_t packed_u4_floats(const rvg_conv_shape *s) {
    const int64_t Kg4 = s->K / s->G * 4, Cg4 = s->C / s->G * 4;
    const int64_t fwd = rvg__bf16x3_prepacked_size(Cg4, Kg4);
    const int64_t dx = rvg__bf16x3_prepacked_size(Kg4, Cg4);
    return fwd > dx ? fwd : dx;
}

int64_t rvg__conv_unrolled_floats(const rvg_conv_shape *s) {
    const int64_t u = u_floats(s), p = packed_u4_floats(s);
    return u > p ? u : p;
}

/* Kernel tap (r, s) that joins output (p, q) to input (h, w), or -1 when none does. */
static int64_t tap_of(const rvg_conv_shape *s, int64_t p, int64_t q, int64_t h, int64_t w) {
    const int64_t r = h - p * s->stride + s->pad, t = w - q * s->stride + s->pad;
    return r >= 0 && r < s->R && t >= 0 && t < s->S ? r * s->S + t : -1;
}

/* ---- U packed straight from the weights (2x2 planes, bf16x3 GEMM) ----------------------------
 * With 2x2 input and output planes (the 13 stride-1 layers of A0's stage 3 at a 28x28 or 32x32
 * input) under a bf16x3 backend, the GEMMs' B operand U^T or U is packed into the tile layout
 * straight from the weights (the kernel set's pack_u4) instead of being built in fp32 and then
 * packed by each GEMM: U (2.4 MB at 192 channels) is not written in fp32 and read back, in the
 * forward and again in the input gradient. A0 at 32x32 batch 128, `--kernels amx`: a training
 * step 1.055x faster (docs/training_kernels.md). The same bits either way:
 * rvg__conv_unrolled_pack_set(0) turns it off (tests compare both). */
static int g_pack_u4 = 1;

int rvg__conv_unrolled_pack_set(int on) {
    const int was = g_pack_u4;
    g_pack_u4 = on != 0;
    return was;
}

/* The bf16x3 kernel set when this shape's U is packed from the weights, else NULL. */
static const rvg__bf16x3_kernels *u4_kernels(const rvg_conv_shape *s) {
    if (!g_pack_u4 || s->H * s->W != 4 || s->P * s->Q != 4)
        return NULL;
    return rvg__conv_gemm_bf16x3();
}

int rvg__conv_unrolled_keeps_u(const rvg_conv_shape *s) {
    return u4_kernels(s) == NULL;
}

typedef struct {
    const rvg__bf16x3_kernels *bk;
    uint16_t *h, *l;
    int dx;
    const float *w;
    int64_t Kg, Cg, RS;
    int64_t units, pieces; /* groups of 8 output channels (pack_u4's unit), items they make */
    int8_t taps[16];
} u4_job;

/* Item `item`: output channels of its share of the Kg rounded up to eights (pack_u4's unit),
 * the last item also the padding. */
static void u4_item(void *ctx, int64_t item, int tid) {
    (void)tid;
    const u4_job *j = ctx;
    const int64_t k0 = 8 * (j->units * item / j->pieces);
    const int64_t k1 = 8 * (j->units * (item + 1) / j->pieces);
    j->bk->pack_u4(j->h, j->l, j->dx, j->w, j->Kg, j->Cg, j->RS, j->taps, k0,
                   item == j->pieces - 1 ? j->Kg : k1);
}

/* Packs group g's U (dx 0: as op(B) = U^T of the forward; 1: as op(B) = U of the input gradient)
 * into `u` and describes it in *bp. */
static void pack_u4(const rvg__bf16x3_kernels *bk, rvg__bf16x3_prepacked *bp, int dx, float *u,
                    const float *wg, const rvg_conv_shape *s) {
    const int64_t Kg = s->K / s->G, Cg = s->C / s->G;
    const int64_t K = dx ? Kg * 4 : Cg * 4, N = dx ? Cg * 4 : Kg * 4;
    u4_job j = {.bk = bk,
                .h = (uint16_t *)u,
                .l = (uint16_t *)u + rvg__bf16x3_prepacked_size(K, N),
                .dx = dx,
                .w = wg,
                .Kg = Kg,
                .Cg = Cg,
                .RS = s->R * s->S,
                .units = (Kg + 7) / 8};
    for (int64_t pq = 0; pq < 4; pq++)
        for (int64_t i = 0; i < 4; i++)
            j.taps[pq * 4 + i] = (int8_t)tap_of(s, pq / s->Q, pq % s->Q, i / s->W, i % s->W);
    int nt = u_floats(s) < 32768 ? 1 : rvg__par_threads();
    j.pieces = (int64_t)nt * 4 < j.units ? (int64_t)nt * 4 : j.units;
    rvg__par_run(j.pieces, nt, u4_item, &j);
    bp->h = j.h;
    bp->l = j.l;
    bp->ks = (K + 31) / 32;
}

typedef struct unroll_job unroll_job;
/* Builds (or folds) the rows of output channels [k0, k1). */
typedef void (*unroll_rows_fn)(const unroll_job *j, int64_t k0, int64_t k1);
struct unroll_job {
    const rvg_conv_shape *s;
    float *u;            /* U_g (build: written) or dU_g (fold: read) */
    const float *w;      /* build: the weights of group g */
    float *dw;           /* fold: their gradient, accumulated */
    int64_t pieces;      /* items the Kg rows of U are cut into */
    unroll_rows_fn rows; /* what an item does with its rows */
};

/* Rows (k, ., .) of U_g for k in [k0, k1). Output channel by output channel, so that its
 * weights (Cg*RS floats) stay in L1 while all PQ of its rows are written in order. */
static void build_rows_any(const unroll_job *j, int64_t k0, int64_t k1) {
    const rvg_conv_shape *s = j->s;
    const int64_t Cg = s->C / s->G, RS = s->R * s->S, HW = s->H * s->W, PQ = s->P * s->Q;
    int64_t taps[UNROLLED_MAX_PQHW]; /* (PQ, HW): the tap joining (p, q) to (h, w), or -1 */
    for (int64_t p = 0; p < s->P; p++)
        for (int64_t q = 0; q < s->Q; q++)
            for (int64_t h = 0; h < s->H; h++)
                for (int64_t x = 0; x < s->W; x++)
                    taps[(p * s->Q + q) * HW + h * s->W + x] = tap_of(s, p, q, h, x);
    for (int64_t k = k0; k < k1; k++) {
        const float *wk = j->w + k * Cg * RS;
        float *row = j->u + k * PQ * Cg * HW;
        for (int64_t pq = 0; pq < PQ; pq++, row += Cg * HW) {
            const int64_t *tp = taps + pq * HW;
            for (int64_t c = 0; c < Cg; c++)
                for (int64_t i = 0; i < HW; i++)
                    row[c * HW + i] = tp[i] >= 0 ? wk[c * RS + tp[i]] : 0.0f;
        }
    }
}

/* The same for 2x2 input planes (HW = 4: the 2x2 layers of a 28x28 or 32x32 network and the
 * stride-2 layer after them), where the loop above, a load and a branch per float, was 14% of such
 * a layer's training step. Per output channel and chunk of UNROLLED_CCH input channels, the
 * weights are first transposed into one row per tap (plus a zero row for pairs without a tap), so
 * that each row of U interleaves four contiguous rows: a loop that vectorizes. */
enum { UNROLLED_CCH = 128 };

static void build_rows_hw4(const unroll_job *j, int64_t k0, int64_t k1) {
    const rvg_conv_shape *s = j->s;
    const int64_t Cg = s->C / s->G, RS = s->R * s->S, PQ = s->P * s->Q, HW = 4;
    float wt[(9 + 1) * UNROLLED_CCH]; /* (tap, c) for RS <= 9, then the zero row */
    const float *src[UNROLLED_MAX_PQHW];
    for (int64_t pq = 0; pq < PQ; pq++)
        for (int64_t i = 0; i < HW; i++) {
            const int64_t t = tap_of(s, pq / s->Q, pq % s->Q, i / s->W, i % s->W);
            src[pq * HW + i] = wt + (t >= 0 ? t : RS) * UNROLLED_CCH;
        }
    for (int64_t c = 0; c < UNROLLED_CCH; c++)
        wt[RS * UNROLLED_CCH + c] = 0.0f;
    for (int64_t k = k0; k < k1; k++) {
        const float *wk = j->w + k * Cg * RS;
        for (int64_t c0 = 0; c0 < Cg; c0 += UNROLLED_CCH) {
            const int64_t nc = Cg - c0 < UNROLLED_CCH ? Cg - c0 : UNROLLED_CCH;
            for (int64_t c = 0; c < nc; c++)
                for (int64_t t = 0; t < RS; t++)
                    wt[t * UNROLLED_CCH + c] = wk[(c0 + c) * RS + t];
            float *row = j->u + k * PQ * Cg * HW + c0 * HW;
            for (int64_t pq = 0; pq < PQ; pq++, row += Cg * HW) {
                const float *s0 = src[pq * HW], *s1 = src[pq * HW + 1];
                const float *s2 = src[pq * HW + 2], *s3 = src[pq * HW + 3];
                for (int64_t c = 0; c < nc; c++) {
                    row[c * 4 + 0] = s0[c];
                    row[c * 4 + 1] = s1[c];
                    row[c * 4 + 2] = s2[c];
                    row[c * 4 + 3] = s3[c];
                }
            }
        }
    }
}

/* Whether the HW = 4 loops apply: 2x2 planes and at most 9 taps. */
static int hw4(const rvg_conv_shape *s) {
    return s->H * s->W == 4 && s->R * s->S <= 9;
}

static unroll_rows_fn build_rows(const rvg_conv_shape *s) {
    return hw4(s) ? build_rows_hw4 : build_rows_any;
}

/* The entries of dU that feed each kernel tap: for every tap with at least one, the offsets of
 * its (p, q, h, w) pairs within one output channel's rows of dU, in (p, q) order. Each (p, q, h, w)
 * pair belongs to one tap at most, so there are at most PQ*HW <= UNROLLED_MAX_PQHW entries. */
typedef struct {
    int64_t off[UNROLLED_MAX_PQHW];            /* (p*Q + q) * Cg*HW + h*W + w */
    int64_t tap[UNROLLED_MAX_PQHW];            /* the tap of run i */
    int first[UNROLLED_MAX_PQHW + 1];          /* run i is off[first[i] .. first[i+1]) */
    int runs;
} tap_runs;

static void tap_runs_make(tap_runs *t, const rvg_conv_shape *s) {
    const int64_t CgHW = s->C / s->G * s->H * s->W;
    int n = 0;
    t->runs = 0;
    for (int64_t tap = 0; tap < s->R * s->S; tap++) {
        const int64_t r = tap / s->S, u = tap % s->S;
        const int start = n;
        for (int64_t p = 0; p < s->P; p++)
            for (int64_t q = 0; q < s->Q; q++) {
                const int64_t h = p * s->stride - s->pad + r, x = q * s->stride - s->pad + u;
                if (h >= 0 && h < s->H && x >= 0 && x < s->W)
                    t->off[n++] = (p * s->Q + q) * CgHW + h * s->W + x;
            }
        if (n > start) {
            t->tap[t->runs] = tap;
            t->first[t->runs++] = start;
        }
    }
    t->first[t->runs] = n;
}

/* dw[k, c, tap] += sum over (p, q), in that order, of dU[(k, p, q), (c, h, w)] for k in range.
 * (Written first as a loop over every (c, tap, p, q) with bounds checks, it was 12% of a 28x28
 * A0 training step; the runs make it a few loads per weight.) */
static void fold_rows_any(const unroll_job *j, int64_t k0, int64_t k1) {
    const rvg_conv_shape *s = j->s;
    const int64_t Cg = s->C / s->G, RS = s->R * s->S, HW = s->H * s->W, PQ = s->P * s->Q;
    tap_runs t;
    tap_runs_make(&t, s);
    for (int64_t k = k0; k < k1; k++) {
        const float *uk = j->u + k * PQ * Cg * HW;
        float *wk = j->dw + k * Cg * RS;
        for (int64_t c = 0; c < Cg; c++) {
            const float *uc = uk + c * HW;
            for (int i = 0; i < t.runs; i++) {
                float acc = 0.0f;
                for (int e = t.first[i]; e < t.first[i + 1]; e++)
                    acc += uc[t.off[e]];
                wk[c * RS + t.tap[i]] += acc;
            }
        }
    }
}

/* The same for 2x2 input planes, where the gathers above were 10% of such a layer's training
 * step. Per output channel and chunk of input channels, each row of dU is split into its four
 * interleaved columns, each added to its tap's row of sums (one junk row per column for pairs
 * without a tap: separate, so the four rows never alias), and the sums are then added to dw.
 * Each sum still adds its entries in (p, q) order starting from zero, as fold_rows_any does: the
 * same bits. */
static void fold_rows_hw4(const unroll_job *j, int64_t k0, int64_t k1) {
    const rvg_conv_shape *s = j->s;
    const int64_t Cg = s->C / s->G, RS = s->R * s->S, PQ = s->P * s->Q, HW = 4;
    float acc[(9 + 4) * UNROLLED_CCH]; /* (tap, c) for RS <= 9, then a junk row per column */
    float *dst[UNROLLED_MAX_PQHW];
    int used[9] = {0}; /* taps with at least one pair: only those are added to dw */
    for (int64_t pq = 0; pq < PQ; pq++)
        for (int64_t i = 0; i < HW; i++) {
            const int64_t t = tap_of(s, pq / s->Q, pq % s->Q, i / s->W, i % s->W);
            dst[pq * HW + i] = acc + (t >= 0 ? t : RS + i) * UNROLLED_CCH;
            if (t >= 0)
                used[t] = 1;
        }
    for (int64_t k = k0; k < k1; k++) {
        float *wk = j->dw + k * Cg * RS;
        for (int64_t c0 = 0; c0 < Cg; c0 += UNROLLED_CCH) {
            const int64_t nc = Cg - c0 < UNROLLED_CCH ? Cg - c0 : UNROLLED_CCH;
            for (int64_t i = 0; i < (RS + HW) * UNROLLED_CCH; i++)
                acc[i] = 0.0f;
            const float *row = j->u + k * PQ * Cg * HW + c0 * HW;
            for (int64_t pq = 0; pq < PQ; pq++, row += Cg * HW) {
                float *d0 = dst[pq * HW], *d1 = dst[pq * HW + 1];
                float *d2 = dst[pq * HW + 2], *d3 = dst[pq * HW + 3];
                for (int64_t c = 0; c < nc; c++) {
                    d0[c] += row[c * 4 + 0];
                    d1[c] += row[c * 4 + 1];
                    d2[c] += row[c * 4 + 2];
                    d3[c] += row[c * 4 + 3];
                }
            }
            for (int64_t c = 0; c < nc; c++)
                for (int64_t t = 0; t < RS; t++)
                    if (used[t])
                        wk[(c0 + c) * RS + t] += acc[t * UNROLLED_CCH + c];
        }
    }
}

static unroll_rows_fn fold_rows(const rvg_conv_shape *s) {
    return hw4(s) ? fold_rows_hw4 : fold_rows_any;
}

/* Item `item` of the job: its share of the Kg output channels. */
static void rows_item(void *ctx, int64_t item, int tid) {
    (void)tid;
    const unroll_job *j = ctx;
    const int64_t Kg = j->s->K / j->s->G;
    j->rows(j, Kg * item / j->pieces, Kg * (item + 1) / j->pieces);
}

void rvg__conv_unrolled_build(float *u, const float *w, const rvg_conv_shape *s) {
    unroll_job j = {s, u, w, NULL, 1, build_rows(s)};
    rows_item(&j, 0, 0);
}

static void run_rows(const rvg_conv_shape *s, float *u, const float *w, float *dw,
                     unroll_rows_fn rows) {
    const int64_t Kg = s->K / s->G;
    /* Small loops stay on one thread (waking a helper costs microseconds). */
    int nt = u_floats(s) < 32768 ? 1 : rvg__par_threads();
    int64_t pieces = (int64_t)nt * 4 < Kg ? (int64_t)nt * 4 : Kg;
    unroll_job j = {s, u, w, dw, pieces, rows};
    rvg__par_run(pieces, nt, rows_item, &j);
}

int rvg__conv2d_forward_unrolled(float *y, const float *x, const float *w, const float *bias,
                                 const rvg_conv_shape *s, float *u, float *pack, float *keep) {
    const int64_t N = s->N, G = s->G, Kg = s->K / G, Cg = s->C / G, RS = s->R * s->S;
    const int64_t HW = s->H * s->W, PQ = s->P * s->Q;
    const rvg__bf16x3_kernels *bk = u4_kernels(s);
    for (int64_t g = 0; g < G; g++) {
        /* y_g (N, Kg*PQ), row stride K*PQ  =  x_g (N, Cg*HW), row stride C*HW  .  U_g^T */
        if (bk) { /* U^T packed from the weights; nothing kept (the backward packs U itself) */
            rvg__bf16x3_prepacked bp;
            pack_u4(bk, &bp, 0, u, w + g * Kg * Cg * RS, s);
            rvg__conv_sgemm_bf16x3_prepacked(0, N, Kg * PQ, Cg * HW, x + g * Cg * HW, s->C * HW,
                                             &bp, 0, y + g * Kg * PQ, s->K * PQ, pack);
            continue;
        }
        if (keep) /* each group's U where the backward will find it */
            u = keep + g * rvg__conv_unrolled_floats(s);
        run_rows(s, u, w + g * Kg * Cg * RS, NULL, build_rows(s));
        rvg__conv_sgemm(0, 1, N, Kg * PQ, Cg * HW, x + g * Cg * HW, s->C * HW, u, Cg * HW, 0,
                        y + g * Kg * PQ, s->K * PQ, pack);
    }
    if (bias)
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < s->K; k++) {
                float *yk = y + (n * s->K + k) * PQ;
                for (int64_t i = 0; i < PQ; i++)
                    yk[i] += bias[k];
            }
    return keep && !bk;
}

void rvg__conv2d_backward_unrolled(float *dx, float *dw, const float *dy, const float *x,
                                   const float *w, const rvg_conv_shape *s, float *u,
                                   float *pack, const float *kept) {
    const int64_t N = s->N, G = s->G, Kg = s->K / G, Cg = s->C / G, RS = s->R * s->S;
    const int64_t HW = s->H * s->W, PQ = s->P * s->Q;
    const rvg__bf16x3_kernels *bk = u4_kernels(s);
    for (int64_t g = 0; g < G; g++) {
        const float *dyg = dy + g * Kg * PQ, *xg = x + g * Cg * HW;
        if (dw) {
            /* dU_g (Kg*PQ, Cg*HW) = dy_g^T . x_g, then folded onto the taps */
            rvg__conv_sgemm(1, 0, Kg * PQ, Cg * HW, N, dyg, s->K * PQ, xg, s->C * HW, 0, u,
                            Cg * HW, pack);
            run_rows(s, u, NULL, dw + g * Kg * Cg * RS, fold_rows(s));
        }
        if (dx && bk) { /* U packed from the weights */
            rvg__bf16x3_prepacked bp;
            pack_u4(bk, &bp, 1, u, w + g * Kg * Cg * RS, s);
            rvg__conv_sgemm_bf16x3_prepacked(0, N, Cg * HW, Kg * PQ, dyg, s->K * PQ, &bp, 1,
                                             dx + g * Cg * HW, s->C * HW, pack);
        } else if (dx) {
            /* dx_g (N, Cg*HW) += dy_g (N, Kg*PQ) . U_g, with the forward's U_g when kept */
            const float *ug = u;
            if (kept)
                ug = kept + g * rvg__conv_unrolled_floats(s);
            else
                run_rows(s, u, w + g * Kg * Cg * RS, NULL, build_rows(s));
            rvg__conv_sgemm(0, 0, N, Cg * HW, Kg * PQ, dyg, s->K * PQ, ug, Cg * HW, 1,
                            dx + g * Cg * HW, s->C * HW, pack);
        }
    }
}
