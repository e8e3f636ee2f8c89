/* conv2d_winograd.c - the backward pass of stride-1 3x3 pad-1 training convolutions, by Winograd
 * F(4x4, 3x3).
 *
 * Most multiply-adds of a RepVGG are in its stride-1 3x3 convolutions (A0 at 224x224: 81%). F(4x4,
 * 3x3) (Lavin & Gray 2015) relates a 4x4 block of outputs to a 6x6 block of input with 36 products
 * per (k, c) where the direct form needs 144. With B, G, A the matrices below, d a 6x6 input tile
 * (stride 4, one pixel of padding) and g a 3x3 kernel, the forward map is
 *     y = A^T [ (G g G^T) (.) (B^T d B) ] A.
 * Backward is its exact transpose (the gradient of that map, which in exact arithmetic is the
 * gradient of the convolution). For all tiles t of a chunk of images and each of the 36 points p:
 *     V = B^T x B,  dM = A dy A^T           (per 6x6 x tile and 4x4 dy tile, zero past the plane)
 *     dU[p] (K, C) += dM[p] (K, T) . V[p]^T,   dw += G^T dU G                  weight gradient
 *     dV[p] (C, T)  = U[p]^T . dM[p],  U = G w G^T,   dx += B dV B^T           input gradient
 * (6x6 dx tiles overlap by two rows and columns and are added up). Groups are 36*G GEMMs on the
 * groups' row blocks.
 *
 * Why F(4x4) for backward only: the forward output decides the ReLU masks, and F(4x4) rounds some
 * 3-4x worse than a direct sum (its transforms scale values by up to 8 before summing). In the
 * PyTorch parity test (tests/test_torch_model.c, A0 at batch 8) an F(4x4) forward flipped the mask
 * of one pre-activation of 1.5e-5 in stage3.11, which moved gradients upstream by 5-10%. Gradient
 * errors are continuous; the forward uses F(2x2, 3x3) (conv2d_winograd_fwd.c), which rounds like
 * a direct sum. (Built a second time with AVX2, the transforms measured no faster: they are
 * bound by memory, not by the vector width.)
 *
 * Layout of the workspace (floats, each part 16-aligned): V (36, C, T), dM (36, K, T), U (36, K, Cg),
 * dU (36, K, Cg), then one scratch per thread. T is the tile count of a chunk of images, sized so
 * that V and dM stay near WINO_TARGET_FLOATS; dU sums the chunks in order.
 *
 * Transforms are separable: one pass combines whole rows (contiguous), the other combines the six
 * (or four) columns of each tile, which are 4 apart. For the second pass to be contiguous too, a
 * plane is copied into a zero-bordered scratch in "phase" layout: each row becomes four arrays
 * E_m[t] = row[4t + m] (m = 0..3), so column 4 tx + k of every tile of a row is E_k[tx] (k < 4) or
 * E_{k-4}[tx + 1]. Every pass is then a loop over contiguous floats with restrict operands, which
 * the compiler vectorizes (this file is built with -O3 for that).
 *
 * Sum orders are fixed (GEMMs in the built-in packed kernels, dU over chunks in order, dx tiles in
 * row order), so results are bit-identical for any thread count.
 */
#include <stddef.h>
#include <string.h>

#include "core/parallel_impl.h"
#include "ops/conv2d_gemm_impl.h"

#define WP 36 /* points of the 6x6 transformed tile */
/* V and dM of a chunk are kept near this many floats each (4 MiB). */
#define WINO_TARGET_FLOATS (1 << 20)

static int64_t r16(int64_t n) { return (n + 15) & ~(int64_t)15; }

typedef struct {
    int64_t N, C, K, G, Cg, Kg, H, W;
    int64_t th, tw, tiles; /* tile rows, tile columns, tiles per image */
    int64_t L;             /* phase length tw + 1: a phase row is 4 L floats */
    int64_t nb;            /* images per chunk */
} wino_plan;

static void plan_make(wino_plan *p, const rvg_conv_shape *s) {
    p->N = s->N, p->C = s->C, p->K = s->K, p->G = s->G;
    p->Cg = s->C / s->G, p->Kg = s->K / s->G, p->H = s->H, p->W = s->W;
    p->th = (s->H + 3) / 4, p->tw = (s->W + 3) / 4, p->tiles = p->th * p->tw;
    p->L = p->tw + 1;
    const int64_t ch = s->C > s->K ? s->C : s->K, per_image = WP * ch * p->tiles;
    int64_t nb = WINO_TARGET_FLOATS / (per_image > 0 ? per_image : 1);
    p->nb = nb < 1 ? 1 : nb > s->N ? (s->N > 0 ? s->N : 1) : nb;
}

/* Per-thread scratch: a phase-layout plane of 4 th + 2 rows, 36 L floats of row-pass results and
 * 6 L of tile-pass results; or, for the weight transforms, one output channel's kernels and their
 * half-transformed form (27, Cg). */
static int64_t plane_floats(const wino_plan *p) { return r16((4 * p->th + 2) * 4 * p->L); }

static int64_t scratch_floats(const wino_plan *p) {
    const int64_t planes = plane_floats(p) + r16(WP * p->L) + r16(6 * p->L);
    return planes > r16(27 * p->Cg) ? planes : r16(27 * p->Cg);
}

/* Planes of at least 8x8 (forward and backward alike). Measured against im2col + GEMM, 2 threads:
 * on the 7x7 and 4x4 layers of a 28x28 input (bench_conv --set 28, batch 64) Winograd was slower
 * both ways (7x7 backward 4.7 vs 4.1 ms, 4x4 4.8 vs 3.8 ms: per-plane copies and mostly empty
 * tiles cost more than the GEMMs save); a whole step at 32x32 (one 8x8 layer) was 3-13% faster
 * with it; the 56, 28 and 14 layers of a 224x224 input are 1.5-3.4x faster each way. */
#define WINO_MIN_SIDE 8

int rvg__conv_winograd_ok(const rvg_conv_shape *s) {
    return s->R == 3 && s->S == 3 && s->stride == 1 && s->pad == 1 && s->G >= 1 &&
           s->C / s->G >= 8 && s->K / s->G >= 8 && s->H >= WINO_MIN_SIDE &&
           s->W >= WINO_MIN_SIDE && !rvg__conv_unrolled_ok(s);
}

int64_t rvg__conv_winograd_floats(const rvg_conv_shape *s, int threads) {
    wino_plan p;
    plan_make(&p, s);
    const int64_t T = p.nb * p.tiles;
    return r16(WP * p.C * T) + r16(WP * p.K * T) + 2 * r16(WP * p.K * p.Cg) +
           (int64_t)threads * scratch_floats(&p);
}

/* ---- the F(4x4, 3x3) matrices, as 1-D maps over contiguous arrays -----------------------------
 * Interpolation points 0, 1, -1, 2, -2 and infinity:
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * Each map writes output i to o_i[t] for t < n. */

/* The maps take their six (or four) outputs as separate restrict pointers: with one base and a
 * run-time stride the compiler must assume the output rows overlap and does not vectorize. */
#define OUT6(o, os) (o), (o) + (os), (o) + 2 * (os), (o) + 3 * (os), (o) + 4 * (os), (o) + 5 * (os)
#define RESTRICT_OUT6                                                                              \
    float *restrict o0, float *restrict o1, float *restrict o2, float *restrict o3,                \
        float *restrict o4, float *restrict o5
#define RESTRICT_IN4                                                                               \
    const float *restrict d0, const float *restrict d1, const float *restrict d2,                  \
        const float *restrict d3
#define RESTRICT_IN6 RESTRICT_IN4, const float *restrict d4, const float *restrict d5

/* o_i = sum_k B^T[i][k] d_k */
static void bt_map(RESTRICT_OUT6, RESTRICT_IN6, int64_t n) {
    for (int64_t t = 0; t < n; t++) {
        const float a0 = d0[t], a1 = d1[t], a2 = d2[t], a3 = d3[t], a4 = d4[t], a5 = d5[t];
        o0[t] = 4.0f * a0 - 5.0f * a2 + a4;
        o1[t] = -4.0f * (a1 + a2) + a3 + a4;
        o2[t] = 4.0f * (a1 - a2) - a3 + a4;
        o3[t] = 2.0f * (a3 - a1) - a2 + a4;
        o4[t] = 2.0f * (a1 - a3) - a2 + a4;
        o5[t] = 4.0f * a1 - 5.0f * a3 + a5;
    }
}

/* o_r = sum_i B^T[i][r] d_i (the transpose, for dx) */
static void b_map(RESTRICT_OUT6, RESTRICT_IN6, int64_t n) {
    for (int64_t t = 0; t < n; t++) {
        const float a0 = d0[t], a1 = d1[t], a2 = d2[t], a3 = d3[t], a4 = d4[t], a5 = d5[t];
        o0[t] = 4.0f * a0;
        o1[t] = 4.0f * (a2 - a1) + 2.0f * (a4 - a3) + 4.0f * a5;
        o2[t] = -5.0f * a0 - 4.0f * (a1 + a2) - a3 - a4;
        o3[t] = a1 - a2 + 2.0f * (a3 - a4) - 5.0f * a5;
        o4[t] = a0 + a1 + a2 + a3 + a4;
        o5[t] = a5;
    }
}

/* o_i = sum_a A^T[a][i] d_a (the transpose of the output map, for dM) */
static void a_map(RESTRICT_OUT6, RESTRICT_IN4, int64_t n) {
    for (int64_t t = 0; t < n; t++) {
        const float a0 = d0[t], a1 = d1[t], a2 = d2[t], a3 = d3[t];
        o0[t] = a0;
        o1[t] = a0 + a1 + a2 + a3;
        o2[t] = a0 - a1 + a2 - a3;
        o3[t] = a0 + 2.0f * a1 + 4.0f * a2 + 8.0f * a3;
        o4[t] = a0 - 2.0f * a1 + 4.0f * a2 - 8.0f * a3;
        o5[t] = a3;
    }
}

/* ---- transforms of one plane ----------------------------------------------------------------- */

typedef struct {
    const wino_plan *p;
    const float *in; /* x, dy, or dV */
    float *out;      /* V, dM, or dx */
    float *scratch;  /* per-thread, scratch_floats() each */
    int64_t n0, tc;  /* first image of the chunk, its tile count */
} plane_job;

static float *thread_scratch(float *scratch, const wino_plan *p, int tid) {
    return scratch + (int64_t)tid * scratch_floats(p);
}

/* Copies plane src (H, W) into the zero-filled phase-layout plane pl, shifted by `off` rows and
 * columns (1: the convolution's padding; 0: none). */
static void to_phases(float *restrict pl, const float *restrict src, const wino_plan *p,
                      int64_t off) {
    const int64_t L = p->L, rows = 4 * p->th + 2;
    memset(pl, 0, sizeof(float) * (size_t)(rows * 4 * L));
    for (int64_t h = 0; h < p->H; h++) {
        float *row = pl + (h + off) * 4 * L;
        const float *restrict s = src + h * p->W;
        /* phase m holds columns w = 4 t + m - off: one strided read per phase (vectorizes) */
        for (int64_t m = 0; m < 4; m++) {
            const int64_t d = m - off, t0 = d < 0 ? 1 : 0, t1 = (p->W - d + 3) / 4;
            float *restrict e = row + m * L;
            for (int64_t t = t0; t < t1; t++)
                e[t] = s[4 * t + d];
        }
    }
}

/* V[p][c][t] for the tiles of x plane (n, c); item = (n - n0) * C + c. */
static void input_plane(void *ctx, int64_t item, int tid) {
    const plane_job *j = ctx;
    const wino_plan *p = j->p;
    const int64_t nl = item / p->C, c = item % p->C, L = p->L, tw = p->tw, R = 4 * L;
    float *pl = thread_scratch(j->scratch, p, tid), *st = pl + plane_floats(p);
    to_phases(pl, j->in + ((j->n0 + nl) * p->C + c) * p->H * p->W, p, 1);
    const int64_t ps = p->C * j->tc; /* stride between points in V */
    float *vbase = j->out + c * j->tc + nl * p->tiles;
    for (int64_t ty = 0; ty < p->th; ty++) {
        /* rows: st[i] = sum_k B^T[i][k] pl[4 ty + k], whole phase rows */
        const float *r = pl + 4 * ty * R;
        bt_map(OUT6(st, R), r, r + R, r + 2 * R, r + 3 * R, r + 4 * R, r + 5 * R, R);
        /* columns: V[6 i + jj][tx] = sum_k B^T[jj][k] st[i][4 tx + k] */
        for (int64_t i = 0; i < 6; i++) {
            const float *e = st + i * R;
            bt_map(OUT6(vbase + 6 * i * ps + ty * tw, ps), e, e + L, e + 2 * L, e + 3 * L, e + 1,
                   e + L + 1, tw);
        }
    }
}

/* dM[p][k][t] = A dy A^T for the tiles of dy plane (n, k); item = (n - n0) * K + k. */
static void dy_plane(void *ctx, int64_t item, int tid) {
    const plane_job *j = ctx;
    const wino_plan *p = j->p;
    const int64_t nl = item / p->K, k = item % p->K, L = p->L, tw = p->tw, R = 4 * L;
    float *pl = thread_scratch(j->scratch, p, tid), *st = pl + plane_floats(p);
    to_phases(pl, j->in + ((j->n0 + nl) * p->K + k) * p->H * p->W, p, 0);
    const int64_t ps = p->K * j->tc;
    float *mbase = j->out + k * j->tc + nl * p->tiles;
    for (int64_t ty = 0; ty < p->th; ty++) {
        /* columns of each of the 4 rows: st[a][jj][tx] = sum_b A^T[b][jj] dy[a][4 tx + b] */
        for (int64_t a = 0; a < 4; a++) {
            const float *e = pl + (4 * ty + a) * R;
            a_map(OUT6(st + a * 6 * tw, tw), e, e + L, e + 2 * L, e + 3 * L, tw);
        }
        /* rows: dM[6 i + jj][tx] = sum_a A^T[a][i] st[a][jj][tx] */
        for (int64_t jj = 0; jj < 6; jj++)
            a_map(OUT6(mbase + jj * ps + ty * tw, 6 * ps), st + jj * tw, st + (6 + jj) * tw,
                  st + (12 + jj) * tw, st + (18 + jj) * tw, tw);
    }
}

/* dx plane (n, c) += B dV B^T over its tiles; item = (n - n0) * C + c. The tiles are added into a
 * zero-bordered phase-layout plane in row order, then its interior into dx. */
static void dx_plane(void *ctx, int64_t item, int tid) {
    const plane_job *j = ctx;
    const wino_plan *p = j->p;
    const int64_t nl = item / p->C, c = item % p->C, L = p->L, tw = p->tw, R = 4 * L;
    float *pl = thread_scratch(j->scratch, p, tid), *st = pl + plane_floats(p);
    float *o = st + r16(WP * L); /* (6, tw) */
    memset(pl, 0, sizeof(float) * (size_t)((4 * p->th + 2) * R));
    const int64_t ps = p->C * j->tc;
    const float *vbase = j->in + c * j->tc + nl * p->tiles;
    for (int64_t ty = 0; ty < p->th; ty++) {
        const float *v = vbase + ty * tw;
        /* points i -> rows r: st[r][jj][tx] = sum_i B^T[i][r] dV[6 i + jj][tx] */
        for (int64_t jj = 0; jj < 6; jj++)
            b_map(OUT6(st + jj * tw, 6 * tw), v + jj * ps, v + (6 + jj) * ps, v + (12 + jj) * ps,
                  v + (18 + jj) * ps, v + (24 + jj) * ps, v + (30 + jj) * ps, tw);
        /* points jj -> columns s, added into row 4 ty + r: column 4 tx + s is phase s at tx
         * for s < 4, phase s - 4 at tx + 1 for s = 4, 5 */
        for (int64_t r = 0; r < 6; r++) {
            const float *q = st + r * 6 * tw;
            b_map(OUT6(o, tw), q, q + tw, q + 2 * tw, q + 3 * tw, q + 4 * tw, q + 5 * tw, tw);
            float *row = pl + (4 * ty + r) * R;
            for (int64_t m = 0; m < 4; m++) {
                float *restrict e = row + m * L;
                const float *restrict om = o + m * tw;
                for (int64_t t = 0; t < tw; t++)
                    e[t] += om[t];
            }
            for (int64_t m = 0; m < 2; m++) {
                float *restrict e = row + m * L + 1;
                const float *restrict om = o + (4 + m) * tw;
                for (int64_t t = 0; t < tw; t++)
                    e[t] += om[t];
            }
        }
    }
    float *dxp = j->out + ((j->n0 + nl) * p->C + c) * p->H * p->W;
    for (int64_t h = 0; h < p->H; h++) {
        const float *row = pl + (h + 1) * R;
        float *d = dxp + h * p->W;
        for (int64_t w = 0; w < p->W; w++) {
            const int64_t u = w + 1;
            d[w] += row[(u & 3) * L + (u >> 2)];
        }
    }
}

/* ---- weights --------------------------------------------------------------------------------- */

typedef struct {
    const wino_plan *p;
    const float *w; /* (K, Cg, 3, 3) */
    float *u;       /* U or dU, (36, K, Cg) */
    float *dw;
    float *scratch;
} weight_job;

static const float K6 = 1.0f / 6.0f, K12 = 1.0f / 12.0f, K24 = 1.0f / 24.0f;

/* o_i = sum_a G[i][a] d_a */
static void g_map(RESTRICT_OUT6, const float *restrict d0, const float *restrict d1,
                  const float *restrict d2, int64_t n) {
    for (int64_t t = 0; t < n; t++) {
        const float a0 = d0[t], a1 = d1[t], a2 = d2[t];
        o0[t] = 0.25f * a0;
        o1[t] = -K6 * (a0 + a1 + a2);
        o2[t] = -K6 * (a0 - a1 + a2);
        o3[t] = K24 * a0 + K12 * a1 + K6 * a2;
        o4[t] = K24 * a0 - K12 * a1 + K6 * a2;
        o5[t] = a2;
    }
}

/* o_a = sum_i G[i][a] d_i (the transpose, for dw) */
static void gt_map(float *restrict o0, float *restrict o1, float *restrict o2, RESTRICT_IN6,
                   int64_t n) {
    for (int64_t t = 0; t < n; t++) {
        const float a0 = d0[t], a1 = d1[t], a2 = d2[t], a3 = d3[t], a4 = d4[t], a5 = d5[t];
        o0[t] = 0.25f * a0 - K6 * (a1 + a2) + K24 * (a3 + a4);
        o1[t] = K6 * (a2 - a1) + K12 * (a3 - a4);
        o2[t] = K6 * (a3 + a4 - a1 - a2) + a5;
    }
}

/* U[.][k][.] = G w_k G^T for output channel k = item, as maps over the Cg input channels: w_k
 * transposed to tap-major g (9, Cg) first, then t = G g (rows 3 i + b), then U = t G^T. */
static void weight_row(void *ctx, int64_t item, int tid) {
    const weight_job *j = ctx;
    const int64_t Cg = j->p->Cg, k = item, ps = j->p->K * Cg;
    float *g = thread_scratch(j->scratch, j->p, tid), *t = g + 9 * Cg; /* (9, Cg), (18, Cg) */
    const float *wk = j->w + k * Cg * 9;
    for (int64_t c = 0; c < Cg; c++)
        for (int64_t q = 0; q < 9; q++)
            g[q * Cg + c] = wk[c * 9 + q];
    for (int64_t b = 0; b < 3; b++) /* t[i][b] = sum_a G[i][a] g[a][b] */
        g_map(OUT6(t + b * Cg, 3 * Cg), g + b * Cg, g + (3 + b) * Cg, g + (6 + b) * Cg, Cg);
    float *u = j->u + k * Cg;
    for (int64_t i = 0; i < 6; i++) /* U[6 i + jj] = sum_b G[jj][b] t[i][b] */
        g_map(OUT6(u + 6 * i * ps, ps), t + 3 * i * Cg, t + (3 * i + 1) * Cg,
              t + (3 * i + 2) * Cg, Cg);
}

/* dw_k += G^T dU[.][k][.] G for output channel k = item: t = dU G (rows 3 i + b), then
 * o = G^T t (rows 3 a + b), added into dw_k transposed back. */
static void weight_grad_row(void *ctx, int64_t item, int tid) {
    const weight_job *j = ctx;
    const int64_t Cg = j->p->Cg, k = item, ps = j->p->K * Cg;
    float *o = thread_scratch(j->scratch, j->p, tid), *t = o + 9 * Cg; /* (9, Cg), (18, Cg) */
    const float *du = j->u + k * Cg;
    for (int64_t i = 0; i < 6; i++) { /* t[i][b] = sum_jj dU[6 i + jj] G[jj][b] */
        const float *d = du + 6 * i * ps;
        gt_map(t + 3 * i * Cg, t + (3 * i + 1) * Cg, t + (3 * i + 2) * Cg, d, d + ps,
               d + 2 * ps, d + 3 * ps, d + 4 * ps, d + 5 * ps, Cg);
    }
    for (int64_t b = 0; b < 3; b++) /* o[a][b] = sum_i G[i][a] t[i][b] */
        gt_map(o + b * Cg, o + (3 + b) * Cg, o + (6 + b) * Cg, t + b * Cg, t + (3 + b) * Cg,
               t + (6 + b) * Cg, t + (9 + b) * Cg, t + (12 + b) * Cg, t + (15 + b) * Cg, Cg);
    float *dwk = j->dw + k * Cg * 9;
    for (int64_t c = 0; c < Cg; c++)
        for (int64_t q = 0; q < 9; q++)
            dwk[c * 9 + q] += o[q * Cg + c];
}

/* ---- the point GEMMs ------------------------------------------------------------------------- */

typedef struct {
    const wino_plan *p;
    int64_t tc;
    const float *u; /* U (36, K, Cg) */
    float *v;       /* V (36, C, tc); dV overwrites it */
    const float *m; /* dM (36, K, tc) */
    float *du;      /* dU (36, K, Cg), or NULL: no weight gradient */
    int du_beta;    /* add into dU (chunks after the first) */
    int want_dx;
    float *pack; /* one GEMM packing set per thread */
} gemm_job;

/* item = point * G + group */
static void gemm_item(void *ctx, int64_t item, int tid) {
    const gemm_job *j = ctx;
    const wino_plan *p = j->p;
    const int64_t pt = item / p->G, g = item % p->G, Kg = p->Kg, Cg = p->Cg, tc = j->tc;
    float *pack = j->pack + (int64_t)tid * (int64_t)rvg__conv_sgemm_serial_pack_floats();
    const float *u = j->u + pt * p->K * Cg + g * Kg * Cg; /* (Kg, Cg) */
    float *v = j->v + (pt * p->C + g * Cg) * tc;          /* (Cg, tc) */
    const float *m = j->m + (pt * p->K + g * Kg) * tc;    /* (Kg, tc) */
    if (j->du) /* dU (Kg, Cg) += dM (Kg, tc) . V^T */
        rvg__conv_sgemm_serial(0, 1, Kg, Cg, tc, m, tc, v, tc, j->du_beta,
                               j->du + pt * p->K * Cg + g * Kg * Cg, Cg, pack);
    if (j->want_dx) /* dV (Cg, tc) = U^T . dM, over V (no longer needed) */
        rvg__conv_sgemm_serial(1, 0, Cg, tc, Kg, u, Cg, m, tc, 0, v, tc, pack);
}

/* ---- entry point ----------------------------------------------------------------------------- */

/* Threads for a loop of `items` of `floats_per_item`: one when too small to share. */
static int loop_nt(int nt, int64_t items, int64_t floats_per_item) {
    return items * floats_per_item < 32768 ? 1 : nt;
}

void rvg__conv2d_backward_winograd(float *dx, float *dw, const float *dy, const float *x,
                                   const float *w, const rvg_conv_shape *s, float *work,
                                   float *pack, int nt) {
    if (!dx && !dw)
        return;
    wino_plan p;
    plan_make(&p, s);
    const int64_t T = p.nb * p.tiles;
    float *v = work, *m = v + r16(WP * p.C * T), *u = m + r16(WP * p.K * T);
    float *du = u + r16(WP * p.K * p.Cg), *scratch = du + r16(WP * p.K * p.Cg);
    if (dx) {
        weight_job wj = {&p, w, u, NULL, scratch};
        rvg__par_run(p.K, loop_nt(nt, p.K, WP * p.Cg), weight_row, &wj);
    }
    for (int64_t n0 = 0; n0 < p.N; n0 += p.nb) {
        const int64_t nn = p.N - n0 < p.nb ? p.N - n0 : p.nb, tc = nn * p.tiles;
        const int64_t per_plane = WP * p.tiles;
        if (dw) {
            plane_job in = {&p, x, v, scratch, n0, tc};
            rvg__par_run(nn * p.C, loop_nt(nt, nn * p.C, per_plane), input_plane, &in);
        }
        plane_job dm = {&p, dy, m, scratch, n0, tc};
        rvg__par_run(nn * p.K, loop_nt(nt, nn * p.K, per_plane), dy_plane, &dm);
        gemm_job gj = {&p, tc, u, v, m, dw ? du : NULL, n0 > 0, dx != NULL, pack};
        rvg__par_run(WP * p.G, nt, gemm_item, &gj);
        if (dx) {
            plane_job dxj = {&p, v, dx, scratch, n0, tc};
            rvg__par_run(nn * p.C, loop_nt(nt, nn * p.C, per_plane), dx_plane, &dxj);
        }
    }
    if (dw) {
        weight_job wj = {&p, NULL, du, dw, scratch};
        rvg__par_run(p.K, loop_nt(nt, p.K, WP * p.Cg), weight_grad_row, &wj);
    }
}
