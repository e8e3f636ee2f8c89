/* conv2d_winograd.c - stride-1 3x3 pad-1 training convolutions by Winograd F(4x4, 3x3): the
 * forward, the input gradient and the weight gradient.
 *
 * Most multiply-adds of a RepVGG are in its stride-1 3x3 convolutions (A0 at 224x224: 81%). F(4x4,
 * 3x3) (Lavin & Gray 2015) relates a 4x4 block of outputs to a 6x6 block of input with 36 products
 * per (k, c) where the direct form needs 144. With B, G, A the matrices below, d a 6x6 input tile
 * (stride 4, one pixel of padding) and g a 3x3 kernel, for all tiles t of a chunk of images and
 * each of the 36 points p:
 *     V = B^T x B,  U = G w G^T,  M[p] (T, K) = V[p] (T, C) . U[p]^T (C, K),  y = A^T M A  forward
 * Backward is its exact transpose (the gradient of that map, which in exact arithmetic is the
 * gradient of the convolution):
 *     dM = A dy A^T                         (per 4x4 dy tile, zero past the plane)
 *     dU[p] (K, C) += dM[p]^T (K, T) . V[p] (T, C),   dw += G^T dU G           weight gradient
 *     dV[p] (T, C)  = dM[p] (T, K) . U[p] (K, C),     dx += B dV B^T           input gradient
 * (6x6 dx tiles overlap by two rows and columns and are added up). Groups are 36*G GEMMs on the
 * groups' column blocks.
 *
 * Rounding: F(4x4)'s transforms scale values by up to 8 before they are summed, so it rounds some
 * 5-7x worse than a direct sum (numpy against float64, 96 channels: 3.8e-6 vs 5.1e-7 of max|y|),
 * far inside the tolerances of training. It can send a ReLU whose pre-activation lies within
 * rounding of zero the other way than PyTorch does; the parity test (tests/test_torch_model.c)
 * makes such ReLUs follow PyTorch. The forward used F(2x2, 3x3) until the transforms below made
 * F(4x4) the faster one (bench_conv --set 224 --only s1 --pair --clock cpu, 5 alternating rounds,
 * median forward CPU ms of the 3x3+1x1 pair: 28x28 17.8 -> 12.3, 14x14 17.0 -> 13.9, 56x56 20.7
 * vs 21.7, within the noise).
 *
 * Layout of the workspace (floats, each part 16-aligned): V (36, T, Cp), dM or M (36, T, Kp), U
 * (36, K, Cg), dU (36, K, Cg; backward only), then one scratch per thread. Cp and Kp are C and K
 * rounded up to 16, T is the tile count of a chunk of images, sized so that V and dM stay near
 * WINO_TARGET_FLOATS; dU sums the chunks in order. The 36 points of each are one cache line
 * further apart than their size (pstride), and V and dM are written with streaming stores.
 *
 * Transforms work on 16 channels at once: a unit (image, block of 16 channels) first interleaves
 * its 16 planes into a zero-bordered scratch (H+pad, W+pad, 16), so that every tile value is one
 * 16-float vector at a constant offset, then transforms tile after tile, computing each 6x6 tile
 * into a local array and storing its 36 vectors, each one whole 64-byte line of V or dM. (Before,
 * each plane was transformed alone in a "phase" layout whose loops ran over the tiles of one tile
 * row: at 14x14 four floats per loop, and the transforms took as long as the point GEMMs. With
 * eight channels per vector, two units wrote the halves of each V line at different times, and
 * those stores took 3/4 of the input transform's perf samples; sixteen took the input transform
 * from 5.8% to 3.9% of the 14x14 layer's samples.) This file is built with -O3, which turns the
 * 16-lane loops into vector code.
 *
 * Sum orders are fixed (GEMMs in the built-in packed kernels, dU over chunks in order, dx tiles in
 * tile order), so results are bit-identical for any thread count.
 */
#include <stddef.h>
#include <string.h>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include "core/compiler_impl.h"
#include "core/parallel_impl.h"
#include "ops/conv2d_gemm_impl.h"

#define WP 36 /* points of the 6x6 transformed tile */
#define LN 16 /* channels per interleaved vector: 64 bytes, whole cache lines of V and dM */
/* V and dM of a chunk are kept near this many floats each (4 MiB). */
#define WINO_TARGET_FLOATS (1 << 20)

static int64_t r16(int64_t n) { return (n + 15) & ~(int64_t)15; }

/* Floats from one point of V, M, dM, U or dU to the next, for n floats per point: one cache line
 * more than n rounded up. On common shapes n alone is a multiple of 4 KiB (A0's 14x14 layers at
 * batch 8: V 128 tiles x 192 channels = 24 pages), so the 36 vectors a tile transform stores, one
 * per point, all fell in one L1 set and one or two L2 sets; the extra line spreads them over 36. */
static int64_t pstride(int64_t n) { return r16(n) + LN; }

typedef struct {
    int64_t N, C, K, G, Cg, Kg, H, W;
    int64_t Cp, Kp;        /* C and K rounded up to whole vectors of LN channels */
    int64_t th, tw, tiles; /* tile rows, tile columns, tiles per image */
    int64_t Hp, Wp;        /* interleaved plane: 4 th + 2 rows of 4 tw + 2 pixels */
    int64_t nb;            /* images per chunk */
} wino_plan;

static void plan_make(wino_plan *p, const rvg_conv_shape *s) {
    p->N = s->N, p->C = s->C, p->K = s->K, p->G = s->G;
    p->Cg = s->C / s->G, p->Kg = s->K / s->G, p->H = s->H, p->W = s->W;
    p->Cp = r16(s->C), p->Kp = r16(s->K);
    p->th = (s->H + 3) / 4, p->tw = (s->W + 3) / 4, p->tiles = p->th * p->tw;
    p->Hp = 4 * p->th + 2, p->Wp = 4 * p->tw + 2;
    const int64_t ch = p->Cp > p->Kp ? p->Cp : p->Kp, per_image = WP * ch * p->tiles;
    int64_t nb = WINO_TARGET_FLOATS / (per_image > 0 ? per_image : 1);
    p->nb = nb < 1 ? 1 : nb > s->N ? (s->N > 0 ? s->N : 1) : nb;
}

/* Per-thread scratch: one interleaved plane (Hp, Wp, LN); or, for the weight transforms, one
 * output channel's kernels and their half-transformed form (27, Cg). */
static int64_t plane_floats(const wino_plan *p) { return r16(p->Hp * p->Wp * LN); }

static int64_t scratch_floats(const wino_plan *p) {
    const int64_t planes = plane_floats(p);
    return planes > r16(27 * p->Cg) ? planes : r16(27 * p->Cg);
}

/* Planes of at least 7x7 (forward and backward alike), and planes of 4x4 to 6x6 when the batch
 * puts at least WINO_SMALL_VALUES values per channel into them. With the phase-layout transforms
 * Winograd lost to im2col + GEMM on the 7x7 and 4x4 layers of a 28x28 input; with the interleaved
 * ones (below) it wins there too: `bench_conv --set 28 --only "48->48    7 s1" --clock cpu`, 3
 * alternating rounds, median of the per-round minimum CPU ms, 7x7 layer forward 7.0 -> 2.4,
 * backward 11.6 -> 6.6 (4x4: 3.5 -> 0.85 and 10.3 -> 3.9). On smaller planes its fp32 rounding
 * (several times a direct sum's, see above) shows where BatchNorm's backward is ill-conditioned:
 * over a few dozen values per channel two fp32 summation orders already differ by ~1%
 * (tests/ref/gen_model.py), and with Winograd on D2se's 6x6 planes at batch 2 (72 values) one
 * weight-gradient element of 846 tensors went past the PyTorch parity tolerance
 * (tests/test_torch_model.c). A0's 4x4 layers at batch 8 (128 values, that test's a0 case) pass,
 * and a real batch has far more: A0 at 32x32, batch 128, has 2048 values per channel in its three
 * 4x4 layers, where Winograd made the whole training step 8% faster (`repvgg bench --arch A0
 * --in-ch 1 --classes 10 --train --size 32 --batch 128 --runs 8 --threads 2`, 3 alternating
 * rounds on the 2-core Xeon: median 176-180 -> 160-164 ms). */
#define WINO_MIN_SIDE 7
#define WINO_SMALL_SIDE 4
#define WINO_SMALL_VALUES 128

int rvg__conv_winograd_ok(const rvg_conv_shape *s) {
    const int64_t side = s->H < s->W ? s->H : s->W;
    const int big = side >= WINO_MIN_SIDE;
    const int small = side >= WINO_SMALL_SIDE && s->N * s->H * s->W >= WINO_SMALL_VALUES;
    return s->R == 3 && s->S == 3 && s->stride == 1 && s->pad == 1 && s->G >= 1 &&
           s->C / s->G >= 8 && s->K / s->G >= 8 && (big || small) && !rvg__conv_unrolled_ok(s);
}

int64_t rvg__conv_winograd_floats(const rvg_conv_shape *s, int threads) {
    wino_plan p;
    plan_make(&p, s);
    const int64_t T = p.nb * p.tiles;
    return WP * pstride(p.Cp * T) + WP * pstride(p.Kp * T) + 2 * WP * pstride(p.K * p.Cg) +
           (int64_t)threads * scratch_floats(&p);
}

/* ---- the F(4x4, 3x3) maps on 16-channel vectors -----------------------------------------------
 * B^T and A^T (the input and output maps bt6, at6) are shared with the inference engine in
 * ops/winograd_f43.h, which lists the matrices; G is
 *   G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1].
 * Each map reads six (four) vectors of LN floats `is` floats apart and writes six vectors `os`
 * apart; inlined with constant strides, the lane loops become whole-vector operations. */

#define RVG__WF43_LANES LN
#define RVG__WF43_NAME(x) x##6
#include "ops/winograd_f43.h"

/* o_r = sum_i B^T[i][r] d_i (the transpose, for dx) */
static RVG__ALWAYS_INLINE void b6(float *restrict o, int64_t os, const float *restrict d,
                                  int64_t is) {
    for (int l = 0; l < LN; l++) {
        const float a0 = d[l], a1 = d[is + l], a2 = d[2 * is + l], a3 = d[3 * is + l],
                    a4 = d[4 * is + l], a5 = d[5 * is + l];
        o[l] = 4.0f * a0;
        o[os + l] = 4.0f * (a2 - a1) + 2.0f * (a4 - a3) + 4.0f * a5;
        o[2 * os + l] = -5.0f * a0 - 4.0f * (a1 + a2) - a3 - a4;
        o[3 * os + l] = a1 - a2 + 2.0f * (a3 - a4) - 5.0f * a5;
        o[4 * os + l] = a0 + a1 + a2 + a3 + a4;
        o[5 * os + l] = a5;
    }
}

/* o_i = sum_a A^T[a][i] d_a (the transpose of the output map, for dM) */
static RVG__ALWAYS_INLINE void a6(float *restrict o, int64_t os, const float *restrict d,
                                  int64_t is) {
    for (int l = 0; l < LN; l++) {
        const float a0 = d[l], a1 = d[is + l], a2 = d[2 * is + l], a3 = d[3 * is + l];
        o[l] = a0;
        o[os + l] = a0 + a1 + a2 + a3;
        o[2 * os + l] = a0 - a1 + a2 - a3;
        o[3 * os + l] = a0 + 2.0f * a1 + 4.0f * a2 + 8.0f * a3;
        o[4 * os + l] = a0 - 2.0f * a1 + 4.0f * a2 - 8.0f * a3;
        o[5 * os + l] = a3;
    }
}

/* ---- interleaved planes ---------------------------------------------------------------------- */

typedef struct {
    const wino_plan *p;
    const float *in; /* x, dy, or dV */
    float *out;      /* V, dM, or dx */
    float *scratch;  /* per-thread, scratch_floats() each */
    int64_t n0, tc;  /* first image of the chunk, its tile count */
    const float *bias; /* output_planes: the bias, or NULL */
} plane_job;

static float *thread_scratch(float *scratch, const wino_plan *p, int tid) {
    return scratch + (int64_t)tid * scratch_floats(p);
}

/* Transposes an ni x nj block: dst[j * dr + i] = src[i * sr + j] (op 0), += it (op 1), or = it +
 * bias[j] (op 2). Interleaving planes and de-interleaving them are such transposes, which
 * compilers do not vectorize: with SSE (every x86-64) they go through 4x4 register transposes,
 * else element by element. */
static void transpose_block(float *dst, int64_t dr, const float *src, int64_t sr, int64_t ni,
                            int64_t nj, int op, const float *bias) {
    int64_t j = 0;
#if defined(__SSE2__)
    for (; j + 4 <= nj; j += 4) {
        int64_t i = 0;
        for (; i + 4 <= ni; i += 4) {
            __m128 r[4];
            for (int k = 0; k < 4; k++)
                r[k] = _mm_loadu_ps(src + (i + k) * sr + j);
            _MM_TRANSPOSE4_PS(r[0], r[1], r[2], r[3]); /* r[k]: column j + k, rows i.. */
            for (int k = 0; k < 4; k++) {
                float *d = dst + (j + k) * dr + i;
                _mm_storeu_ps(d, op == 0   ? r[k]
                                 : op == 1 ? _mm_add_ps(_mm_loadu_ps(d), r[k])
                                           : _mm_add_ps(r[k], _mm_set1_ps(bias[j + k])));
            }
        }
        for (; i < ni; i++)
            for (int64_t k = j; k < j + 4; k++) {
                const float v = src[i * sr + k];
                float *d = dst + k * dr + i;
                *d = op == 0 ? v : op == 1 ? *d + v : v + bias[k];
            }
    }
#endif
    for (; j < nj; j++)
        for (int64_t i = 0; i < ni; i++) {
            const float v = src[i * sr + j];
            float *d = dst + j * dr + i;
            *d = op == 0 ? v : op == 1 ? *d + v : v + bias[j];
        }
}

/* Channels [c0, c0 + nc) of image src (C planes of H x W) into the zero-filled interleaved plane
 * q (Hp, Wp, LN) at row and column offset `off`; lanes nc..LN-1 stay zero. */
static void to_interleaved(float *q, const float *src, const wino_plan *p, int64_t nc,
                           int64_t off) {
    memset(q, 0, sizeof(float) * (size_t)(p->Hp * p->Wp * LN));
    for (int64_t h = 0; h < p->H; h++) /* row h: (nc channels x W pixels) -> (W x LN) */
        transpose_block(q + ((h + off) * p->Wp + off) * LN, LN, src + h * p->W, p->H * p->W, nc,
                        p->W, 0, NULL);
}

/* Writes the 36 vectors of a transformed tile, o[pt] to dst + pt * ps (dst and ps keep every
 * vector on a 64-byte line of its own: V, dM and the channel blocks are multiples of LN floats
 * from a 64-byte aligned workspace). The transforms compute into local tiles first: with stores
 * at a run-time stride the compiler must assume they overlap and leaves the lane loops scalar
 * (measured: 3x slower than the old phase-layout code).
 * With SSE the stores are non-temporal: each fills a whole line that no cache holds (V and dM are
 * written once, read by the point GEMMs later), and as plain stores every one of them first
 * fetched its line, which held up the input transform on the stores (over half its samples).
 * Streamed, A0 224x224 batch 8 steps took 600.5 -> 580.2 ms (median of 12 alternating rounds;
 * docs/training_kernels.md has the rest). The caller fences them (stream_fence) before the unit
 * ends. */
static RVG__ALWAYS_INLINE void store_points(float *restrict dst, int64_t ps,
                                            const float *restrict o) {
    for (int pt = 0; pt < WP; pt++) {
#if defined(__SSE2__)
        for (int i = 0; i < LN; i += 4)
            _mm_stream_ps(dst + pt * ps + i, _mm_loadu_ps(o + pt * LN + i));
#else
        memcpy(dst + pt * ps, o + pt * LN, sizeof(float) * LN);
#endif
    }
}

/* Orders the streamed stores before what follows (the pool's hand-off to the GEMM phase). */
static RVG__ALWAYS_INLINE void stream_fence(void) {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

/* The forward-direction transforms of one unit (image n, LN channels from LN b), item = (n - n0)
 * * blocks + b: of x, V = B^T d B over 6x6 tiles of the padded plane (grad = 0), or of dy,
 * dM = A dy A^T over 4x4 tiles (grad = 1), into (36, tc, channels rounded to LN), so that every
 * tile writes whole vectors. Inlined with grad constant, the lane loops become vector code. */
static RVG__ALWAYS_INLINE void transform_planes(const plane_job *j, int64_t item, int tid,
                                                int grad) {
    const wino_plan *p = j->p;
    const int64_t ch = grad ? p->K : p->C, chp = grad ? p->Kp : p->Cp, nblk = chp / LN;
    const int64_t nl = item / nblk, c0 = item % nblk * LN, nc = ch - c0 < LN ? ch - c0 : LN;
    const int64_t rs = p->Wp * LN, ps = pstride(j->tc * chp);
    float *q = thread_scratch(j->scratch, p, tid);
    to_interleaved(q, j->in + ((j->n0 + nl) * ch + c0) * p->H * p->W, p, nc, grad ? 0 : 1);
    float *base = j->out + nl * p->tiles * chp + c0;
    for (int64_t ty = 0; ty < p->th; ty++)
        for (int64_t tx = 0; tx < p->tw; tx++) {
            float t[6 * 6 * LN], o[WP * LN];
            const float *d = q + (4 * ty * p->Wp + 4 * tx) * LN;
            if (grad) {
                for (int b = 0; b < 4; b++) /* rows: t[i][b] = sum_a A^T[a][i] dy[a][b] */
                    a6(t + b * LN, 4 * LN, d + b * LN, rs);
                for (int i = 0; i < 6; i++) /* columns: dM[6 i + jj] = sum_b A^T[b][jj] t[i][b] */
                    a6(o + 6 * i * LN, LN, t + 4 * i * LN, LN);
            } else {
                for (int jj = 0; jj < 6; jj++) /* rows: t[i][jj] = sum_k B^T[i][k] d[k][jj] */
                    bt6(t + jj * LN, 6 * LN, d + jj * LN, rs);
                for (int i = 0; i < 6; i++) /* columns: V[6 i + jj] = sum_k B^T[jj][k] t[i][k] */
                    bt6(o + 6 * i * LN, LN, t + 6 * i * LN, LN);
            }
            store_points(base + (ty * p->tw + tx) * chp, ps, o);
        }
    stream_fence();
}

static void input_planes(void *ctx, int64_t item, int tid) { transform_planes(ctx, item, tid, 0); }

static void dy_planes(void *ctx, int64_t item, int tid) { transform_planes(ctx, item, tid, 1); }

/* Planes c < nc (H x W each) of dst from the interleaved plane q (rows `qw` pixels of LN floats
 * apart), with transpose_block's op: 0 dst = q, 1 dst += q (dx), 2 dst = q + bias[c] (y). */
static void from_interleaved(float *dst, const float *q, int64_t qw, const wino_plan *p,
                             int64_t nc, int op, const float *bias) {
    for (int64_t h = 0; h < p->H; h++) /* row h: (W pixels x LN) -> (nc channels x W) */
        transpose_block(dst + h * p->W, p->H * p->W, q + h * qw * LN, LN, p->W, nc, op, bias);
}

/* dx (channels [LN cb, LN cb + LN) of image n) += B dV B^T over its tiles; item = (n - n0) * CB
 * + cb. The 6x6 blocks, which overlap by two rows and columns, are added into a zero-filled
 * interleaved plane in tile order, then its interior into dx. */
static void dx_planes(void *ctx, int64_t item, int tid) {
    const plane_job *j = ctx;
    const wino_plan *p = j->p;
    const int64_t CB = p->Cp / LN, nl = item / CB, cb = item % CB, c0 = cb * LN;
    const int64_t nc = p->C - c0 < LN ? p->C - c0 : LN, rs = p->Wp * LN;
    const int64_t ps = pstride(j->tc * p->Cp);
    float *q = thread_scratch(j->scratch, p, tid);
    memset(q, 0, sizeof(float) * (size_t)(p->Hp * p->Wp * LN));
    const float *vb = j->in + nl * p->tiles * p->Cp + c0;
    for (int64_t ty = 0; ty < p->th; ty++)
        for (int64_t tx = 0; tx < p->tw; tx++) {
            float t[6 * 6 * LN], o[6 * 6 * LN];
            const float *v = vb + (ty * p->tw + tx) * p->Cp;
            for (int jj = 0; jj < 6; jj++) /* points i -> rows r: t[r][jj] */
                b6(t + jj * LN, 6 * LN, v + jj * ps, 6 * ps);
            for (int r = 0; r < 6; r++) /* points jj -> columns s: o[r][s] */
                b6(o + 6 * r * LN, LN, t + 6 * r * LN, LN);
            float *d = q + (4 * ty * p->Wp + 4 * tx) * LN;
            for (int r = 0; r < 6; r++)
                for (int k = 0; k < 6 * LN; k++)
                    d[r * rs + k] += o[6 * r * LN + k];
        }
    from_interleaved(j->out + ((j->n0 + nl) * p->C + c0) * p->H * p->W, q + (p->Wp + 1) * LN,
                     p->Wp, p, nc, 1, NULL);
}

/* y (channels [LN kb, LN kb + LN) of image n) = A^T M A + bias over its tiles; item = (n - n0) *
 * KB + kb. The 4x4 blocks go into an interleaved scratch (4 th, 4 tw, LN), then into y. */
static void output_planes(void *ctx, int64_t item, int tid) {
    const plane_job *j = ctx;
    const wino_plan *p = j->p;
    const int64_t KB = p->Kp / LN, nl = item / KB, kb = item % KB, k0 = kb * LN;
    const int64_t nk = p->K - k0 < LN ? p->K - k0 : LN, ps = pstride(j->tc * p->Kp);
    const int64_t Wq = 4 * p->tw, rs = Wq * LN;
    float *q = thread_scratch(j->scratch, p, tid);
    const float *mb = j->in + nl * p->tiles * p->Kp + k0;
    for (int64_t ty = 0; ty < p->th; ty++)
        for (int64_t tx = 0; tx < p->tw; tx++) {
            float t[4 * 6 * LN], mt[WP * LN];
            const float *m = mb + (ty * p->tw + tx) * p->Kp;
            for (int pt = 0; pt < WP; pt++)
                memcpy(mt + pt * LN, m + pt * ps, sizeof(float) * LN);
            for (int jj = 0; jj < 6; jj++) /* points i -> rows a: t[a][jj] */
                at6(t + jj * LN, 6 * LN, mt + jj * LN, 6 * LN);
            float *d = q + (4 * ty * Wq + 4 * tx) * LN;
            for (int a = 0; a < 4; a++) /* points jj -> columns b, into output row 4 ty + a */
                at6(d + a * rs, LN, t + 6 * a * LN, LN);
        }
    from_interleaved(j->out + ((j->n0 + nl) * p->K + k0) * p->H * p->W, q, Wq, p, nk,
                     j->bias ? 2 : 0, j->bias ? j->bias + k0 : NULL);
}

/* ---- weights --------------------------------------------------------------------------------- */

/* The weight maps take their six (or three) outputs as separate restrict pointers: with one base
 * and a run-time stride the compiler must assume the output rows overlap and does not vectorize. */
#define OUT6(o, os) (o), (o) + (os), (o) + 2 * (os), (o) + 3 * (os), (o) + 4 * (os), (o) + 5 * (os)
#define RESTRICT_OUT6                                                                              \
    float *restrict o0, float *restrict o1, float *restrict o2, float *restrict o3,                \
        float *restrict o4, float *restrict o5
#define RESTRICT_IN6                                                                               \
    const float *restrict d0, const float *restrict d1, const float *restrict d2,                  \
        const float *restrict d3, const float *restrict d4, const float *restrict d5

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
    const int64_t Cg = j->p->Cg, k = item, ps = pstride(j->p->K * Cg);
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
    const int64_t Cg = j->p->Cg, k = item, ps = pstride(j->p->K * Cg);
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
    float *v;       /* Vt (36, tc, Cp); dVt overwrites it */
    const float *m; /* dMt (36, tc, Kp) */
    float *du;      /* dU (36, K, Cg), or NULL: no weight gradient */
    float *mo;      /* forward: M (36, tc, Kp) */
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
    const float *u = j->u + pt * pstride(p->K * Cg) + g * Kg * Cg; /* (Kg, Cg) */
    float *v = j->v + pt * pstride(tc * p->Cp) + g * Cg;  /* (tc, Cg), rows Cp apart */
    const float *m = j->m + pt * pstride(tc * p->Kp) + g * Kg; /* (tc, Kg), rows Kp apart */
    if (j->du) /* dU (Kg, Cg) += dMt^T (Kg, tc) . Vt (tc, Cg) */
        rvg__conv_sgemm_serial(1, 0, Kg, Cg, tc, m, p->Kp, v, p->Cp, j->du_beta,
                               j->du + pt * pstride(p->K * Cg) + g * Kg * Cg, Cg, pack);
    if (j->want_dx) /* dVt (tc, Cg) = dMt (tc, Kg) . U (Kg, Cg), over Vt (no longer needed) */
        rvg__conv_sgemm_serial(0, 0, tc, Cg, Kg, m, p->Kp, u, Cg, 0, v, p->Cp, pack);
}

/* ---- entry point ----------------------------------------------------------------------------- */

/* Threads for a loop of `items` of `floats_per_item`: one when too small to share. */
static int loop_nt(int nt, int64_t items, int64_t floats_per_item) {
    return items * floats_per_item < 32768 ? 1 : nt;
}

/* Up to three independent loops (weight transform, input transform, gradient transform) run as
 * one parallel phase: every phase ends in a wait for its last unit, and on a shared machine a
 * preempted thread makes each such wait long, so fewer phases hold up less. */
typedef struct {
    rvg__par_fn fn[3];
    void *ctx[3];
    int64_t n[3];
    int k;
} multi_job;

static void multi_add(multi_job *m, rvg__par_fn fn, void *ctx, int64_t n) {
    m->fn[m->k] = fn, m->ctx[m->k] = ctx, m->n[m->k] = n;
    m->k++;
}

static void multi_item(void *ctx, int64_t item, int tid) {
    const multi_job *m = ctx;
    for (int i = 0; i < m->k; i++) {
        if (item < m->n[i]) {
            m->fn[i](m->ctx[i], item, tid);
            return;
        }
        item -= m->n[i];
    }
}

static void multi_run(const multi_job *m, int nt, int64_t floats_per_item) {
    int64_t n = 0;
    for (int i = 0; i < m->k; i++)
        n += m->n[i];
    if (n > 0)
        rvg__par_run(n, loop_nt(nt, n, floats_per_item), multi_item, (void *)m);
}

int64_t rvg__conv_winograd_u_floats(const rvg_conv_shape *s) {
    return WP * pstride(s->K * (s->C / s->G));
}

void rvg__conv2d_backward_winograd(float *dx, float *dw, const float *dy, const float *x,
                                   const float *w, const rvg_conv_shape *s, float *work,
                                   float *pack, int nt, const float *kept) {
    if (!dx && !dw)
        return;
    wino_plan p;
    plan_make(&p, s);
    const int64_t T = p.nb * p.tiles, CB = p.Cp / LN, KB = p.Kp / LN;
    float *v = work, *m = v + WP * pstride(p.Cp * T), *u = m + WP * pstride(p.Kp * T);
    float *du = u + WP * pstride(p.K * p.Cg), *scratch = du + WP * pstride(p.K * p.Cg);
    weight_job wj = {&p, w, u, NULL, scratch};
    const float *uu = kept ? kept : u; /* U for dx: the forward's, or made here */
    for (int64_t n0 = 0; n0 < p.N; n0 += p.nb) {
        const int64_t nn = p.N - n0 < p.nb ? p.N - n0 : p.nb, tc = nn * p.tiles;
        const int64_t per_block = WP * LN * p.tiles;
        /* U (first chunk, for dx), V (for dw) and dM in one phase */
        plane_job in = {&p, x, v, scratch, n0, tc, NULL};
        plane_job dm = {&p, dy, m, scratch, n0, tc, NULL};
        multi_job mj = {{0}, {0}, {0}, 0};
        if (dx && n0 == 0 && !kept)
            multi_add(&mj, weight_row, &wj, p.K);
        if (dw)
            multi_add(&mj, input_planes, &in, nn * CB);
        multi_add(&mj, dy_planes, &dm, nn * KB);
        multi_run(&mj, nt, per_block);
        gemm_job gj = {&p, tc, uu, v, m, dw ? du : NULL, NULL, n0 > 0, dx != NULL, pack};
        rvg__par_run(WP * p.G, nt, gemm_item, &gj);
        if (dx) {
            plane_job dxj = {&p, v, dx, scratch, n0, tc, NULL};
            rvg__par_run(nn * CB, loop_nt(nt, nn * CB, per_block), dx_planes, &dxj);
        }
    }
    if (dw) {
        weight_job wg = {&p, NULL, du, dw, scratch};
        rvg__par_run(p.K, loop_nt(nt, p.K, WP * p.Cg), weight_grad_row, &wg);
    }
}

/* ---- forward --------------------------------------------------------------------------------- */

/* item = point * G + group: Mt[p] (tc, Kg) = Vt[p] (tc, Cg) . U[p]^T (Cg, Kg) */
static void fwd_gemm_item(void *ctx, int64_t item, int tid) {
    const gemm_job *j = ctx;
    const wino_plan *p = j->p;
    const int64_t pt = item / p->G, g = item % p->G, Kg = p->Kg, Cg = p->Cg, tc = j->tc;
    float *pack = j->pack + (int64_t)tid * (int64_t)rvg__conv_sgemm_serial_pack_floats();
    rvg__conv_sgemm_serial(0, 1, tc, Kg, Cg, j->v + pt * pstride(tc * p->Cp) + g * Cg, p->Cp,
                           j->u + pt * pstride(p->K * Cg) + g * Kg * Cg, Cg, 0,
                           j->mo + pt * pstride(tc * p->Kp) + g * Kg, p->Kp, pack);
}

void rvg__conv2d_forward_winograd(float *y, const float *x, const float *w, const float *bias,
                                  const rvg_conv_shape *s, float *work, float *pack, int nt,
                                  float *keep) {
    wino_plan p;
    plan_make(&p, s);
    const int64_t T = p.nb * p.tiles, CB = p.Cp / LN, KB = p.Kp / LN;
    float *v = work, *m = v + WP * pstride(p.Cp * T), *u = m + WP * pstride(p.Kp * T);
    float *scratch = u + 2 * WP * pstride(p.K * p.Cg); /* the backward's layout; dU unused */
    if (keep)
        u = keep; /* U made where the backward will find it */
    weight_job wj = {&p, w, u, NULL, scratch};
    for (int64_t n0 = 0; n0 < p.N; n0 += p.nb) {
        const int64_t nn = p.N - n0 < p.nb ? p.N - n0 : p.nb, tc = nn * p.tiles;
        const int64_t per_block = WP * LN * p.tiles;
        /* U (first chunk) and V in one phase */
        plane_job in = {&p, x, v, scratch, n0, tc, NULL};
        multi_job mj = {{0}, {0}, {0}, 0};
        if (n0 == 0)
            multi_add(&mj, weight_row, &wj, p.K);
        multi_add(&mj, input_planes, &in, nn * CB);
        multi_run(&mj, nt, per_block);
        gemm_job gj = {&p, tc, u, v, NULL, NULL, m, 0, 0, pack};
        rvg__par_run(WP * p.G, nt, fwd_gemm_item, &gj);
        plane_job out = {&p, m, y, scratch, n0, tc, bias};
        rvg__par_run(nn * KB, loop_nt(nt, nn * KB, per_block), output_planes, &out);
    }
}
