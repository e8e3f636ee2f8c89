/* conv2d_winograd_fwd.c - the forward pass of stride-1 3x3 pad-1 training convolutions, by Winograd
 * F(2x2, 3x3).
 *
 * F(2x2, 3x3) computes a 2x2 block of outputs from a 4x4 block of input (stride 2, one pixel of
 * padding) with 16 products per (k, c) where the direct form needs 36:
 *     y = A^T [ (G g G^T) (.) (B^T d B) ] A,
 * i.e. for all tiles t of a chunk of images and each of the 16 points p one GEMM
 *     M[p] (K, T) = U[p] (K, C) . V[p] (C, T),   U = G g G^T,  V = B^T x B,
 * then y = A^T M A (+ bias) per tile. Groups are 16*G GEMMs on the groups' row blocks.
 *
 * Why F(2x2) here when the backward (conv2d_winograd.c) uses F(4x4): the forward output decides
 * the ReLU masks, and F(4x4) rounds 5-7x worse than a direct sum (its transforms scale by up to 8),
 * which in the PyTorch parity test (tests/test_torch_model.c, A0 at batch 8) flipped the mask of a
 * pre-activation of 1.5e-5 and moved gradients upstream by 5-10%. F(2x2)'s transforms are sums of
 * +-1 and 1/2 multiples, and each output sums only C products per point instead of 9 C, so its error
 * is that of a direct sum (numpy, 96 channels, against float64: max 3.0e-7 vs 5.1e-7 of max|y|;
 * F(4x4) 3.8e-6).
 *
 * Transforms, one plane at a time: the plane is copied into a zero-bordered scratch in "phase"
 * layout, two arrays per row, E_m[t] = row[2t + m], so the four columns 2 tx + k of a tile are
 * E_0[tx], E_1[tx], E_0[tx+1], E_1[tx+1], and every pass is a loop over contiguous floats (built
 * with -O3, which vectorizes them). Workspace: V (16, C, T), M (16, K, T), U (16, K, Cg), then one
 * scratch per thread. Sum orders are fixed, so results do not depend on the thread count.
 * (The backward's layout, 16 interleaved channels per unit and tile-major V, measured no faster
 * here: F(2x2)'s transforms are only additions, and at 14x14 a tile row is already 7 tiles long.
 * bench_conv --set 224 --only s1 --pair --clock cpu, 5 alternating rounds, forward of the pair,
 * min ms: 56x56 19.0 phase layout vs 20.9 interleaved, 28x28 16.9 vs 16.8, 14x14 16.0 vs 17.0.)
 */
#include <stddef.h>
#include <string.h>

#include "core/parallel_impl.h"
#include "ops/conv2d_gemm_impl.h"

#define NP 16 /* points of the 4x4 transformed tile */
/* V and M of a chunk are kept near this many floats each (4 MiB). */
#define TARGET_FLOATS (1 << 20)

static int64_t r16(int64_t n) { return (n + 15) & ~(int64_t)15; }

typedef struct {
    int64_t N, C, K, G, Cg, Kg, H, W;
    int64_t th, tw, tiles; /* tile rows, tile columns, tiles per image (2x2 outputs each) */
    int64_t L;             /* phase length tw + 1: a phase row is 2 L floats */
    int64_t nb;            /* images per chunk */
} f2_plan;

static void plan_make(f2_plan *p, const rvg_conv_shape *s) {
    p->N = s->N, p->C = s->C, p->K = s->K, p->G = s->G;
    p->Cg = s->C / s->G, p->Kg = s->K / s->G, p->H = s->H, p->W = s->W;
    p->th = (s->H + 1) / 2, p->tw = (s->W + 1) / 2, p->tiles = p->th * p->tw;
    p->L = p->tw + 1;
    const int64_t ch = s->C > s->K ? s->C : s->K, per_image = NP * ch * p->tiles;
    int64_t nb = TARGET_FLOATS / (per_image > 0 ? per_image : 1);
    p->nb = nb < 1 ? 1 : nb > s->N ? (s->N > 0 ? s->N : 1) : nb;
}

/* Per-thread scratch: a phase-layout plane of 2 th + 2 rows and 8 L floats of row-pass results; or
 * one output channel's kernels and their half-transformed form (21, Cg). */
static int64_t plane_floats(const f2_plan *p) { return r16((2 * p->th + 2) * 2 * p->L); }

static int64_t scratch_floats(const f2_plan *p) {
    const int64_t planes = plane_floats(p) + r16(8 * p->L);
    return planes > r16(21 * p->Cg) ? planes : r16(21 * p->Cg);
}

int64_t rvg__conv_winograd_fwd_floats(const rvg_conv_shape *s, int threads) {
    f2_plan p;
    plan_make(&p, s);
    const int64_t T = p.nb * p.tiles;
    return r16(NP * p.C * T) + r16(NP * p.K * T) + r16(NP * p.K * p.Cg) +
           (int64_t)threads * scratch_floats(&p);
}

/* ---- the F(2x2, 3x3) matrices, as 1-D maps over contiguous arrays -----------------------------
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1]
 * Outputs are separate restrict pointers (with one base and a run-time stride the compiler must
 * assume they overlap and does not vectorize). */

/* o_i = sum_k B^T[i][k] d_k */
static void bt_map(float *restrict o0, float *restrict o1, float *restrict o2, float *restrict o3,
                   const float *restrict d0, const float *restrict d1, const float *restrict d2,
                   const float *restrict d3, int64_t n) {
    for (int64_t t = 0; t < n; t++) {
        const float a0 = d0[t], a1 = d1[t], a2 = d2[t], a3 = d3[t];
        o0[t] = a0 - a2;
        o1[t] = a1 + a2;
        o2[t] = a2 - a1;
        o3[t] = a1 - a3;
    }
}

/* o_a = sum_i A^T[a][i] d_i */
static void at_map(float *restrict o0, float *restrict o1, const float *restrict d0,
                   const float *restrict d1, const float *restrict d2, const float *restrict d3,
                   int64_t n) {
    for (int64_t t = 0; t < n; t++) {
        const float a1 = d1[t], a2 = d2[t];
        o0[t] = d0[t] + a1 + a2;
        o1[t] = a1 - a2 - d3[t];
    }
}

/* o_i = sum_a G[i][a] d_a */
static void g_map(float *restrict o0, float *restrict o1, float *restrict o2, float *restrict o3,
                  const float *restrict d0, const float *restrict d1, const float *restrict d2,
                  int64_t n) {
    for (int64_t t = 0; t < n; t++) {
        const float a0 = d0[t], a1 = d1[t], a2 = d2[t];
        o0[t] = a0;
        o1[t] = 0.5f * (a0 + a1 + a2);
        o2[t] = 0.5f * (a0 - a1 + a2);
        o3[t] = a2;
    }
}

#define OUT4(o, os) (o), (o) + (os), (o) + 2 * (os), (o) + 3 * (os)

/* ---- the three phases ------------------------------------------------------------------------ */

typedef struct {
    const f2_plan *p;
    const float *in; /* x (input phase) or M (output phase) */
    float *out;      /* V or y */
    const float *w, *bias;
    float *u, *scratch, *pack;
    int64_t n0, tc; /* first image of the chunk, its tile count */
} f2_job;

static float *thread_scratch(const f2_job *j, int tid) {
    return j->scratch + (int64_t)tid * scratch_floats(j->p);
}

/* U[.][k][.] = G w_k G^T for output channel k = item (w_k tap-major first, then t = G g). */
static void weight_row(void *ctx, int64_t item, int tid) {
    const f2_job *j = ctx;
    const int64_t Cg = j->p->Cg, k = item, ps = j->p->K * Cg;
    float *g = thread_scratch(j, tid), *t = g + 9 * Cg; /* (9, Cg), (12, Cg) */
    const float *wk = j->w + k * Cg * 9;
    for (int64_t c = 0; c < Cg; c++)
        for (int64_t q = 0; q < 9; q++)
            g[q * Cg + c] = wk[c * 9 + q];
    for (int64_t b = 0; b < 3; b++) /* t[i][b] = sum_a G[i][a] g[a][b] */
        g_map(OUT4(t + b * Cg, 3 * Cg), g + b * Cg, g + (3 + b) * Cg, g + (6 + b) * Cg, Cg);
    float *u = j->u + k * Cg;
    for (int64_t i = 0; i < 4; i++) /* U[4 i + jj] = sum_b G[jj][b] t[i][b] */
        g_map(OUT4(u + 4 * i * ps, ps), t + 3 * i * Cg, t + (3 * i + 1) * Cg,
              t + (3 * i + 2) * Cg, Cg);
}

/* V[p][c][t] for the tiles of x plane (n, c); item = (n - n0) * C + c. */
static void input_plane(void *ctx, int64_t item, int tid) {
    const f2_job *j = ctx;
    const f2_plan *p = j->p;
    const int64_t nl = item / p->C, c = item % p->C, L = p->L, tw = p->tw, R = 2 * L;
    float *pl = thread_scratch(j, tid), *st = pl + plane_floats(p);
    /* zero-bordered phase-layout copy: padded (h + 1, w + 1) at row h + 1, phase (w+1) & 1 */
    memset(pl, 0, sizeof(float) * (size_t)((2 * p->th + 2) * R));
    const float *xp = j->in + ((j->n0 + nl) * p->C + c) * p->H * p->W;
    for (int64_t h = 0; h < p->H; h++) {
        float *row = pl + (h + 1) * R;
        const float *restrict src = xp + h * p->W;
        /* phase m holds columns w = 2 t + m - 1: one strided read per phase (vectorizes) */
        float *restrict e0 = row, *restrict e1 = row + L;
        for (int64_t t = 1; t < (p->W + 2) / 2; t++)
            e0[t] = src[2 * t - 1];
        for (int64_t t = 0; t < (p->W + 1) / 2; t++)
            e1[t] = src[2 * t];
    }
    const int64_t ps = p->C * j->tc;
    float *vbase = j->out + c * j->tc + nl * p->tiles;
    for (int64_t ty = 0; ty < p->th; ty++) {
        const float *r = pl + 2 * ty * R; /* rows 2 ty .. 2 ty + 3 */
        bt_map(OUT4(st, R), r, r + R, r + 2 * R, r + 3 * R, R);
        for (int64_t i = 0; i < 4; i++) {
            const float *e = st + i * R;
            bt_map(OUT4(vbase + 4 * i * ps + ty * tw, ps), e, e + L, e + 1, e + L + 1, tw);
        }
    }
}

/* item = point * G + group: M[p] (Kg, tc) = U[p] (Kg, Cg) . V[p] (Cg, tc) */
static void gemm_item(void *ctx, int64_t item, int tid) {
    const f2_job *j = ctx;
    const f2_plan *p = j->p;
    const int64_t pt = item / p->G, g = item % p->G, Kg = p->Kg, Cg = p->Cg, tc = j->tc;
    float *pack = j->pack + (int64_t)tid * (int64_t)rvg__conv_sgemm_serial_pack_floats();
    rvg__conv_sgemm_serial(0, 0, Kg, tc, Cg, j->u + pt * p->K * Cg + g * Kg * Cg, Cg,
                           j->in + (pt * p->C + g * Cg) * tc, tc, 0,
                           j->out + (pt * p->K + g * Kg) * tc, tc, pack);
}

/* y plane (n, k) = A^T M A + bias over its tiles; item = (n - n0) * K + k. */
static void output_plane(void *ctx, int64_t item, int tid) {
    const f2_job *j = ctx;
    const f2_plan *p = j->p;
    const int64_t nl = item / p->K, k = item % p->K, tw = p->tw;
    float *pl = thread_scratch(j, tid), *st = pl + plane_floats(p); /* pl: 2 th rows of 2 tw */
    const int64_t ps = p->K * j->tc, R = 2 * tw;
    const float *mbase = j->in + k * j->tc + nl * p->tiles;
    for (int64_t ty = 0; ty < p->th; ty++) {
        const float *m = mbase + ty * tw;
        /* points i -> rows a: st[a][jj] = sum_i A^T[a][i] M[4 i + jj] */
        for (int64_t jj = 0; jj < 4; jj++)
            at_map(st + jj * tw, st + (4 + jj) * tw, m + jj * ps, m + (4 + jj) * ps,
                   m + (8 + jj) * ps, m + (12 + jj) * ps, tw);
        /* points jj -> columns b, into the two phases of output rows 2 ty + a */
        for (int64_t a = 0; a < 2; a++) {
            const float *q = st + 4 * a * tw;
            float *row = pl + (2 * ty + a) * R;
            at_map(row, row + tw, q, q + tw, q + 2 * tw, q + 3 * tw, tw);
        }
    }
    const float b = j->bias ? j->bias[k] : 0.0f;
    float *yp = j->out + ((j->n0 + nl) * p->K + k) * p->H * p->W;
    for (int64_t h = 0; h < p->H; h++) {
        const float *row = pl + h * R;
        float *y = yp + h * p->W;
        for (int64_t w = 0; w < p->W; w++)
            y[w] = row[(w & 1) * tw + (w >> 1)] + b;
    }
}

/* Threads for a loop of `items` of `floats_per_item`: one when too small to share. */
static int loop_nt(int nt, int64_t items, int64_t floats_per_item) {
    return items * floats_per_item < 32768 ? 1 : nt;
}

void rvg__conv2d_forward_winograd(float *y, const float *x, const float *w, const float *bias,
                                  const rvg_conv_shape *s, float *work, float *pack, int nt) {
    f2_plan p;
    plan_make(&p, s);
    const int64_t T = p.nb * p.tiles;
    float *v = work, *m = v + r16(NP * p.C * T), *u = m + r16(NP * p.K * T);
    float *scratch = u + r16(NP * p.K * p.Cg);
    f2_job wj = {.p = &p, .w = w, .u = u, .scratch = scratch};
    rvg__par_run(p.K, loop_nt(nt, p.K, NP * p.Cg), weight_row, &wj);
    for (int64_t n0 = 0; n0 < p.N; n0 += p.nb) {
        const int64_t nn = p.N - n0 < p.nb ? p.N - n0 : p.nb, tc = nn * p.tiles;
        const int64_t per_plane = NP * p.tiles;
        f2_job in = {.p = &p, .in = x, .out = v, .scratch = scratch, .n0 = n0, .tc = tc};
        rvg__par_run(nn * p.C, loop_nt(nt, nn * p.C, per_plane), input_plane, &in);
        f2_job gj = {.p = &p, .in = v, .out = m, .u = u, .pack = pack, .tc = tc};
        rvg__par_run(NP * p.G, nt, gemm_item, &gj);
        f2_job out = {.p = &p, .in = m, .out = y, .bias = bias, .scratch = scratch, .n0 = n0,
                      .tc = tc};
        rvg__par_run(nn * p.K, loop_nt(nt, nn * p.K, per_plane), output_plane, &out);
    }
}
