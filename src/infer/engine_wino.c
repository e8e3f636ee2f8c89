/* engine_wino.c - the Winograd layers of the inference engine: which way each runs at a batch
 * (three phases, or one phase in blocks or bands), the geometry of V and M, the tasks of each
 * way, and the tuning that picks between one phase and three.
 *
 * Not here: the transforms and GEMM micro-kernels (kern_body.h, kern_micro.h), the weights'
 * packing (engine.c).
 */
#include <string.h>

#include "engine_impl.h"

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
int rvg__wino_otf(const rvg_engine *e, const layer_plan *p, int64_t N) {
    if (e->otf >= 0)
        return e->otf;
    int64_t nn = (int64_t)(p->m + 2) * (p->m + 2);
    int64_t bytes = nn * p->KB16 * 16 * (p->C / p->G) * (int64_t)sizeof(float);
    return N * p->th * p->tw < WINO_OTF_T || (wino_banded(e, p, N) && bytes > WINO_OTF_BYTES);
}

/* How a Winograd layer runs at batch N (rvg__run_wino):
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
wino_mode rvg__wino_mode_at(const rvg_engine *e, const layer_plan *p, int64_t N) {
    if (e->fuse < 0)
        return WINO_PHASES;
    if (wino_banded(e, p, N))
        return WINO_BANDS;
    return rvg__wino_otf(e, p, N) ? WINO_BLOCKS : WINO_PHASES;
}

/* ---- tuning: one phase or three -----------------------------------------------------------
 * Which is faster depends on the layer and on the machine: on the 2-core Zen 5 machine, at
 * batch 1 on 2 threads, the one-phase modes took A0's 14x14 layers from 0.28 to 0.24 ms and its
 * 28x28 layers from 0.25 to 0.20, but made B0's (twice the channels: more duplicated work, the
 * same data to move between cores) 5-10% slower; and how much moving data between the cores
 * costs changed from hour to hour on that shared machine. So with opts.fuse = 0 the first
 * 2 * TUNE_SAMPLES runs of each layer (separately for N == 1 and N > 1) alternate the two ways
 * and time the layer; then it keeps the one with the smaller median. Results do not depend on
 * the choice (the samples live in struct wtune, engine_impl.h). */

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
    if (e->fuse != 0 || !e->tune || rvg__wino_mode_at(e, p, N) == WINO_PHASES)
        return NULL;
    return &e->tune[2 * (p - e->L) + (N > 1)];
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
static inline const float *tile_input(const task *t, const wgeom *g, int64_t cb, int64_t tt) {
    const layer_plan *p = t->p;
    int64_t img = tt / g->tpi, ty = (tt % g->tpi) / p->tw, tx = tt % p->tw;
    return t->x + (img * p->CB + cb) * p->Hp * p->Wp * 8 + (ty * g->m * p->Wp + tx * g->m) * 8;
}

static inline void wino_in_tile(const task *t, const wgeom *g, float *V, int64_t vs, int64_t vbs,
                                int64_t cb, int64_t tt) {
    const layer_plan *p = t->p;
    t->e->kern->wino_in[g->f](V, vs, vbs, tile_input(t, g, cb, tt), p->Wp, p->Hp * p->Wp * 8, 1);
}

/* Tiles [tt0, tt1) of channel block cb into V (tile tt0's slot; point and block strides vs, vbs),
 * two at a time where the kernel set has wino_in2 (AVX-512, F(5x5); the same bits): A0's stage-3
 * input transforms on 1 thread at batch 1 took 0.31-0.39 ms in all against 0.50-0.55
 * (`bench_infer --profile`, 4 alternating rounds), whole runs on 2 threads (6 rounds, `--json
 * --runs 40`) 7.28-7.65 against 7.37-9.02 ms, median 7.46 against 7.77; B0 level. */
static void wino_in_run(const task *t, const wgeom *g, float *V, int64_t vs, int64_t vbs,
                        int64_t cb, int64_t tt0, int64_t tt1) {
    const layer_plan *p = t->p;
    const rvg__infer_kernels *k = t->e->kern;
    int64_t tt = tt0;
    if (k->wino_in2[g->f])
        for (; tt + 1 < tt1; tt += 2)
            k->wino_in2[g->f](V + (tt - tt0) * 8, vs, vbs, tile_input(t, g, cb, tt),
                              tile_input(t, g, cb, tt + 1), p->Wp, p->Hp * p->Wp * 8, 1);
    for (; tt < tt1; tt++)
        wino_in_tile(t, g, V + (tt - tt0) * 8, vs, vbs, cb, tt);
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
    for (int64_t u = rvg__zero_units(t, b, e) - t->nz; u < e - t->nz;) { /* runs within a block */
        int64_t cb = u / g.T, tt = u % g.T, n = g.T - tt < e - t->nz - u ? g.T - tt : e - t->nz - u;
        wino_in_run(t, &g, t->e->V + cb * g.bs + tt * 8, g.vs, g.bs, cb, tt, tt + n);
        u += n;
    }
}

/* Whether 16-channel blocks kb and kb + 1 of a Winograd layer run as one gemm32 call: the set
 * has it and they read the same input channels (always, without groups). */
static int wino_pair(const rvg_engine *e, const layer_plan *p, int64_t kb) {
    return e->kern->gemm32 && kb + 1 < p->KB16 && p->c0[kb] == p->c0[kb + 1] &&
           p->nc[kb] == p->nc[kb + 1];
}

/* All output blocks of point xi over nt tiles from the pre-transformed weights, blocks in pairs
 * where the set has gemm32: M and V point at the first tile of the point's planes (block
 * strides mbs, vbs). */
static void point_gemms(const task *t, float *M, int64_t mbs, const float *V, int64_t vbs,
                        int64_t xi, int64_t nt) {
    const layer_plan *p = t->p;
    const rvg__infer_kernels *k = t->e->kern;
    for (int64_t kb = 0; kb < p->KB16;) {
        float *Mx = M + 2 * kb * mbs;
        const float *Vx = V + (p->c0[kb] / 8) * vbs;
        const float *U = p->w + xi * p->wtot + p->woff[kb];
        if (wino_pair(t->e, p, kb)) {
            k->gemm32(Mx, mbs, Vx, vbs, p->c0[kb] % 8, U, p->woff[kb + 1] - p->woff[kb], p->nc[kb],
                      nt);
            kb += 2;
        } else {
            k->gemm16(Mx, mbs, Vx, vbs, p->c0[kb] % 8, U, p->nc[kb], nt);
            kb += 1;
        }
    }
}

/* Units are (point, tile chunk); each runs all 16-channel blocks over its chunk, so the chunk of
 * V (48 tiles x C) is read from L3 once and stays in L1/L2 while the point's weights stream.
 * (A0 batch 8 measured the same as with (point, block, chunk) units; kept for the lower
 * traffic.) Blocks go in pairs where the kernel set has gemm32. */
static void task_wino_gemm(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    wgeom g = wino_geom(t->p, t->N);
    for (int64_t u = b; u < e; u++) {
        int64_t ch = u % g.nch, xi = u / g.nch;
        int64_t t0 = ch * WINO_TC, nt = g.T - t0 < WINO_TC ? g.T - t0 : WINO_TC;
        point_gemms(t, t->e->M + xi * g.ms + t0 * 8, g.bs, t->e->V + xi * g.vs + t0 * 8, g.bs, xi,
                    nt);
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

/* Whether a layer run whose V has g->T tiles in all takes the kernel set's gemm_otf on the fly
 * (at most otf_nt tiles: A0's and B0's 14x14 layers at batch 1). Decided by the whole run, not
 * by the tiles a thread or unit gets, so that every mode of running the layer (engine_wino.c's
 * three) computes each weight the same way and gives the same bits. */
static int otf_fused(const rvg_engine *e, const wgeom *g) {
    return e->kern->gemm_otf && g->T <= e->kern->otf_nt;
}

/* Row i of points of output block kb on the fly with the kernel set's gemm_otf, the points two
 * at a time: T holds row i of G g (wino_trows' layout), M points at the block's rows of point 0
 * (V, M, strides as wino_gemms'). */
static void otf_row(const task *t, const wgeom *g, const float *V, int64_t vs, int64_t vbs,
                    float *M, int64_t ms, int64_t mbs, const float *T, int64_t kb, int i,
                    int64_t nt) {
    const layer_plan *p = t->p;
    const int n = g->m + 2;
    const float(*Gm)[3] = n == 6 ? rvg__wino_g4 : n == 7 ? rvg__wino_g5 : rvg__wino_g6;
    const int64_t vo = (p->c0[kb] / 8) * vbs;
    for (int j = 0; j < n; j += 2) {
        const int np = j + 1 < n ? 2 : 1;
        const int64_t xi = (int64_t)i * n + j;
        float a[6] = {Gm[j][0], Gm[j][1], Gm[j][2], 0, 0, 0}; /* columns j, j + 1 of G^T */
        if (np == 2)
            a[3] = Gm[j + 1][0], a[4] = Gm[j + 1][1], a[5] = Gm[j + 1][2];
        t->e->kern->gemm_otf(M + xi * ms, M + (xi + (np == 2)) * ms, mbs, V + xi * vs + vo,
                             V + (xi + (np == 2)) * vs + vo, vbs, p->c0[kb] % 8, T, a, p->nc[kb],
                             nt, np);
    }
}

/* Rows [i0, i1) of points of output block kb on the fly with gemm_otf: G g of those rows from
 * one pass over the block's raw weights into U (wino_trows), then each row's points (otf_row); M
 * points at the block's rows of point 0. */
static void otf_rows(const task *t, const wgeom *g, const float *V, int64_t vs, int64_t vbs,
                     float *M, int64_t ms, int64_t mbs, float *U, int64_t kb, int i0, int i1,
                     int64_t nt) {
    const layer_plan *p = t->p;
    const int64_t ts = WROW_STRIDE(p->nc[kb]);
    t->e->kern->wino_trows(U, p->wraw + 9 * p->woff[kb], p->nc[kb], g->m + 2, i0, i1);
    for (int i = i0; i < i1; i++)
        otf_row(t, g, V, vs, vbs, M, ms, mbs, U + 3 * (i - i0) * ts, kb, i, nt);
}

/* The GEMMs of output blocks [kb0, kb1) (one 16-channel block or a gemm32 pair) over nt tiles,
 * for the points xi of row i, on the fly: from the raw weights, transformed here into the
 * thread's U (the pre-transformed weights take point_gemms). V and M point at
 * the first tile of point 0, channel block 0 (V) and 8-channel block 2*kb0 (M); vs, ms are their
 * point strides, vbs, mbs their block strides. On the fly, where the kernel set has gemm_otf
 * and its registers hold the nt tiles, the row's G g goes to U (wino_trows) and the points' GEMMs
 * finish the transform (otf_row); else U gets the row's whole transform (wino_wrow) for
 * gemm16/gemm32. Nothing is prefetched in software: each row used to prefetch 1/n of
 * the next blocks' raw weights (on the Zen 5 machine the first row of each block had waited for
 * them), but on the Xeon of 2026-12-03 that made the engine 2-4% slower at batch 8 (A0 46.5-50.4
 * against 45.6-49.9 ms, B0 94.7-102.1 against 93.8-97.4; `bench_infer --json`, 3 alternating
 * rounds), and level at batch 1; its L2 streamer follows the one linear pass per block. */
static void wino_gemms(const task *t, const wgeom *g, const float *V, int64_t vs, int64_t vbs,
                       float *M, int64_t ms, int64_t mbs, float *U, int64_t kb0, int64_t kb1,
                       int row, int64_t nt) {
    const layer_plan *p = t->p;
    const rvg_engine *en = t->e;
    const rvg__infer_kernels *k = en->kern;
    int n = g->m + 2;
    int64_t step = kb1 - kb0;
    int pair = step == 2 && wino_pair(en, p, kb0);
    int64_t us = n * WROW_STRIDE(p->nc[kb0]);
    if (otf_fused(en, g)) { /* the transform's second half in the GEMMs */
        for (int64_t kb = kb0; kb < kb1; kb++)
            otf_rows(t, g, V, vs, vbs, M + 2 * (kb - kb0) * mbs, ms, mbs, U, kb, row, row + 1, nt);
        return;
    }
    for (int64_t kb = kb0; kb < kb1; kb++) /* block kb's row at U + (kb - kb0) * us */
        k->wino_wrow(U + (kb - kb0) * us, p->wraw + 9 * p->woff[kb], p->nc[kb], n, row);
    for (int64_t xi = (int64_t)row * n; xi < (int64_t)row * n + n; xi++)
        for (int64_t kb = kb0; kb < kb1; kb += pair ? 2 : 1) {
            float *Mx = M + xi * ms + 2 * (kb - kb0) * mbs;
            const float *Vx = V + xi * vs + (p->c0[kb] / 8) * vbs;
            const float *Uk = U + (kb - kb0) * us + (xi % n) * WROW_STRIDE(p->nc[kb]);
            if (pair)
                k->gemm32(Mx, mbs, Vx, vbs, p->c0[kb] % 8, Uk, us, p->nc[kb], nt);
            else
                k->gemm16(Mx, mbs, Vx, vbs, p->c0[kb] % 8, Uk, p->nc[kb], nt);
        }
}

/* All n rows of points of output blocks [kb0, kb1) on the fly (wino_gemms' arguments). Where
 * otf_fused, per block G g of every row from one pass over the raw weights
 * (wino_trows), then each row's points two at a time, the second half of the transform inside the
 * GEMM (gemm_otf). Nothing is prefetched: one sequential pass over a block's raw weights is what
 * the hardware prefetcher follows, and software prefetches of the next blocks (a share per point,
 * as wino_gemms did) made A0 at batch 1 3% slower (`bench_infer --model a0 --runs 40 --batch 1
 * --json`, 4 alternating rounds: 6.72-7.12 against 6.52-6.77 ms on 2 threads, 12.94-13.36
 * against 12.09-13.19 on 1).
 * What it replaced, wino_wrow per row then gemm32, stored the row's transformed weights (86 KB
 * a block at A0's stage 3) to L2 for the GEMMs to read back, and read the raw weights from L2
 * once per row: on the Xeon (`perf record` of `bench_infer --model a0 --threads 1 --batch 1`)
 * wino_wrow took 21% of the run, more than gemm32's 17%. With gemm_otf and G g a row at a time
 * (the raw weights still read per row) the total was the same; with all rows at once stage 3 took
 * 6.86 / 7.06 against 7.65 / 7.60 ms (`--profile`, 1 thread, alternating with ce988b3), and
 * whole runs at batch 1 on 2 threads (`--json`, 4 alternating rounds) A0 7.30-7.48 against
 * 7.58-7.89 ms, B0 14.50-14.97 against 15.53-15.68. Only layers with at most otf_nt tiles
 * take it (A0's and B0's 14x14 layers at batch 1): with more, each group of tiles
 * computed the weights again, and the 28x28 layers on 1 thread (25 tiles) got slower
 * (otf_fused). */
static void wino_gemms_all(const task *t, const wgeom *g, const float *V, int64_t vs, int64_t vbs,
                           float *M, int64_t ms, int64_t mbs, float *U, int64_t kb0, int64_t kb1,
                           int64_t nt) {
    const int n = g->m + 2;
    if (otf_fused(t->e, g))
        for (int64_t kb = kb0; kb < kb1; kb++)
            otf_rows(t, g, V, vs, vbs, M + 2 * (kb - kb0) * mbs, ms, mbs, U, kb, 0, n, nt);
    else
        for (int i = 0; i < n; i++)
            wino_gemms(t, g, V, vs, vbs, M, ms, mbs, U, kb0, kb1, i, nt);
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
        wino_in_run(t, g, V + cb * vbs, vs, vbs, cb, tt0, tt1);
}

/* Output transform (+ bias, ReLU) of 8-channel blocks [b0, b1) of tiles [tt0, tt1), from M
 * (tile tt0 of block b0 first; point and block strides ms, mbs). */
static void wino_out_tiles(const task *t, const wgeom *g, const float *M, int64_t ms, int64_t mbs,
                           int64_t b0, int64_t b1, int64_t tt0, int64_t tt1) {
    for (int64_t b8 = b0; b8 < b1; b8++)
        for (int64_t tt = tt0; tt < tt1; tt++)
            wino_out_tile(t, g, M + (b8 - b0) * mbs + (tt - tt0) * 8, ms, mbs, b8, tt);
}

/* Whether input block cb of layer run t was written by another thread than tid in the run
 * before (own: that run's owner array). */
static inline int block_remote(const int64_t *own, int64_t cb, const task *t, int tid) {
    return OWNER_SEQ(own[cb]) == t->seq - 1 && OWNER_TID(own[cb]) != tid;
}

/* The whole input transform of a WINO_BLOCKS layer into this thread's V, the channel blocks that
 * this thread wrote in the previous layer first (rvg_engine.owner): the other threads' blocks
 * come from their cores' caches, which took ~40% of the transform's time on 2 threads (0.041-0.045
 * ms per A0 stage-3 layer against 0.028-0.031 for the same transform repeated), so their lines
 * are prefetched while the local blocks are transformed, a share after each. Where the previous
 * layer was not WINO_BLOCKS the owners are unknown and the order is plain; the order never
 * changes V. A0 and B0 at batch 1 on 2 threads, 6 alternating rounds of `bench_infer --json`:
 * 1.001-1.021x and 1.001-1.022x faster (median ~1.01). */
static void wino_in_local_first(const task *t, const wgeom *g, float *V, int tid) {
    const layer_plan *p = t->p;
    const int64_t *own = t->e->owner[(t->seq - 1) & 1];
    int64_t CB = p->CB, xcs = p->Hp * p->Wp * 8, lines = xcs / 16, n_remote = 0;
    for (int64_t cb = 0; cb < CB; cb++)
        n_remote += block_remote(own, cb, t, tid);
    int64_t n_local = CB - n_remote, done = 0, total = n_remote * lines * t->N, issued = 0;
    int64_t rb = 0, rl = 0; /* the remote block being prefetched, and its next line */
    for (int pass = 0; pass < 2; pass++)
        for (int64_t cb = 0; cb < CB; cb++) {
            if (block_remote(own, cb, t, tid) != pass)
                continue;
            wino_in_run(t, g, V + cb * g->bs, g->vs, g->bs, cb, 0, g->T);
            if (pass || !n_remote)
                continue;
            /* after local block `done` of n_local, the remote lines up to a proportional share */
            int64_t want = total * ++done / n_local;
            for (; issued < want; issued++) {
                while (!block_remote(own, rb, t, tid))
                    rb++;
                int64_t img = rl / lines, q = rl % lines;
#if defined(__GNUC__)
                __builtin_prefetch(t->x + (img * CB + rb) * xcs + q * 16, 0, 3);
#else
                (void)img, (void)q;
#endif
                if (++rl == lines * t->N)
                    rl = 0, rb++;
            }
        }
}

/* WINO_BLOCKS (see rvg__wino_mode_at). Split into three phases, each over all threads, every GEMM
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
    int tid = rvg__pool_tid_in(en->pool);
    int64_t step = blocks_step(en, p);
    double *prof = en->prof && tid == 0 ? en->prof + 4 * (p - en->L) : NULL;
    double t0 = prof ? now_ms() : 0; /* the caller's own share of the phases */
    float *V = en->Vt + tid * en->vt_floats, *M = en->Mt + tid * en->mt_floats;
    float *U = en->wtmp + tid * en->wtmp_floats;
    if (en->vstamp[tid * STAMP_PAD] != t->seq) { /* this thread's first unit of the layer run */
        wino_in_local_first(t, &g, V, tid);
        en->vstamp[tid * STAMP_PAD] = t->seq;
    }
    if (prof) {
        double t1 = now_ms();
        prof[1] += t1 - t0, t0 = t1;
    }
    for (int64_t u = b; u < e; u++) {
        int64_t kb0 = u * step, kb1 = kb0 + step < p->KB16 ? kb0 + step : p->KB16;
        wino_gemms_all(t, &g, V, g.vs, g.bs, M, fused_ms(g.T), g.T * 8, U, kb0, kb1, g.T);
        double tg = prof ? now_ms() : 0;
        int64_t b8end = 2 * kb1 < p->KB8 ? 2 * kb1 : p->KB8;
        for (int64_t b8 = 2 * kb0; b8 < b8end; b8++)
            for (int64_t img = 0; img < t->N; img++)
                rvg__zero_border(t->y, img * p->KB8 + b8, p->P, p->Q, p->Hpo, p->Wpo);
        wino_out_tiles(t, &g, M, fused_ms(g.T), g.T * 8, 2 * kb0, b8end, 0, g.T);
        for (int64_t b8 = 2 * kb0; b8 < b8end; b8++)
            en->owner[t->seq & 1][b8] = OWNER(t->seq, tid);
        if (prof) {
            double to = now_ms();
            prof[2] += tg - t0, prof[3] += to - tg, t0 = to;
        }
    }
}

int64_t rvg__wino_part_tiles(const rvg_engine *e, const layer_plan *p) {
    int64_t nn = (int64_t)(p->m + 2) * (p->m + 2);
    int64_t per_tile = nn * (p->CB * 8 + p->KB16 * 16) * (int64_t)sizeof(float); /* V and M */
    int64_t n = e->band_bytes / per_tile;
    return n > WINO_BAND_MIN ? n : WINO_BAND_MIN;
}

/* One part of a band with pre-transformed weights, tiles [tt0, tt1): the input transform into
 * the thread's V, all blocks' GEMMs point by point into an M of all blocks (all output blocks
 * of a point while its V rows stay in L1, so V is read once), then the output transform. */
static void band_part(const task *t, const wgeom *g, float *V, float *M, int64_t tt0, int64_t tt1,
                      double *prof) {
    const layer_plan *p = t->p;
    int64_t nt = tt1 - tt0, vbs = nt * 8, vs = nt * p->CB * 8 + WINO_PLANE_PAD;
    int64_t ms = nt * p->KB16 * 16 + WINO_PLANE_PAD, mbs = nt * 8;
    double t0 = prof ? now_ms() : 0;
    wino_in_tiles(t, g, V, vs, vbs, tt0, tt1);
    double t1 = prof ? now_ms() : 0;
    for (int64_t xi = 0; xi < g->nn; xi++)
        point_gemms(t, M + xi * ms, mbs, V + xi * vs, vbs, xi, nt);
    double t2 = prof ? now_ms() : 0;
    wino_out_tiles(t, g, M, ms, nt * 8, 0, p->KB8, tt0, tt1);
    if (prof)
        prof[1] += t1 - t0, prof[2] += t2 - t1, prof[3] += now_ms() - t2;
}

/* WINO_BANDS (see rvg__wino_mode_at): unit u of nu (one per thread) takes the tiles [T*u/nu,
 * T*(u+1)/nu), a band of tile rows, and runs the input transform into its own V, then per output
 * block or pair the GEMMs into its own M and the output transform, reading the weights whole
 * (on the fly, transforming them itself). No V or M line is touched by two threads, and the
 * layer's input crosses cores only where the previous layer split its output otherwise.
 * With pre-transformed weights a band runs in parts of at most rvg__wino_part_tiles tiles
 * (band_part), each reading the weights once more: whole, A0's 28x28 layers at batch 8 on 2
 * threads had 100 tiles per band, whose V and M (2.5 MB each) went out to L3 and back, and the
 * input transform took as long as the GEMMs. In parts (of 20 tiles: 1 MB, half the 2-core
 * Xeon's L2) the three layers take 5.0 instead of 7.1 ms (`bench_infer --model a0 --runs 20
 * --threads 2 --batch 8 --profile`, 2 alternating rounds); parts of 12-34 tiles gave 5.4-5.8 ms
 * in a first sweep, and at batch 1 (12-50 tiles per band) they and stage1.1 stayed level. */
static void task_wino_bands(void *ctx, int64_t b, int64_t e) {
    const task *t = ctx;
    const layer_plan *p = t->p;
    const rvg_engine *en = t->e;
    wgeom g = wino_geom(p, t->N);
    int tid = rvg__pool_tid_in(en->pool), otf = rvg__wino_otf(en, p, t->N);
    int64_t nu = en->threads, nz = t->N * p->KB8, step = otf_step(en);
    double *prof = en->prof && tid == 0 ? en->prof + 4 * (p - en->L) : NULL;
    float *V = en->Vt + tid * en->vt_floats, *M = en->Mt + tid * en->mt_floats;
    float *U = en->wtmp + tid * en->wtmp_floats;
    for (int64_t u = b; u < e; u++) {
        int64_t tt0 = g.T * u / nu, tt1 = g.T * (u + 1) / nu, nt = tt1 - tt0;
        double t0 = prof ? now_ms() : 0; /* the caller's own share of the phases */
        for (int64_t z = nz * u / nu; z < nz * (u + 1) / nu; z++)
            rvg__zero_border(t->y, z, p->P, p->Q, p->Hpo, p->Wpo);
        if (!otf) {
            int64_t np = (nt + rvg__wino_part_tiles(en, p) - 1) / rvg__wino_part_tiles(en, p);
            if (prof)
                prof[1] += now_ms() - t0;
            for (int64_t q = 0; q < np; q++)
                band_part(t, &g, V, M, tt0 + nt * q / np, tt0 + nt * (q + 1) / np, prof);
            continue;
        }
        int64_t vbs = nt * 8, vs = nt * p->CB * 8 + WINO_PLANE_PAD;
        wino_in_tiles(t, &g, V, vs, vbs, tt0, tt1);
        double t1 = prof ? now_ms() : 0, tg = 0, to = 0;
        for (int64_t kb0 = 0; kb0 < p->KB16; kb0 += step) {
            int64_t kb1 = kb0 + step < p->KB16 ? kb0 + step : p->KB16;
            double ta = prof ? now_ms() : 0;
            wino_gemms_all(t, &g, V, vs, vbs, M, fused_ms(nt), nt * 8, U, kb0, kb1, nt);
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

void rvg__run_wino(task *t) {
    const layer_plan *p = t->p;
    const rvg_engine *e = t->e;
    wgeom g = wino_geom(p, t->N);
    double *prof = e->prof ? e->prof + 4 * (p - e->L) : NULL; /* phases 1..3 */
    wino_mode mode = rvg__wino_mode_at(e, p, t->N);
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
    if (rvg__wino_otf(e, p, t->N))
        rvg__pool_for(e->pool, (p->KB16 + otf_step(e) - 1) / otf_step(e) * (g.m + 2), 1,
                      task_wino_gemm_otf, t);
    else
        rvg__pool_for(e->pool, g.nn * g.nch, 1, task_wino_gemm, t);
    double t2 = prof ? now_ms() : 0;
    rvg__pool_for(e->pool, p->KB8 * g.T, WINO_GRAIN, task_wino_out, t);
    if (prof)
        prof[1] += t1 - t0, prof[2] += t2 - t1, prof[3] += now_ms() - t2;
}

int rvg__engine_tuned(const rvg_engine *e, int64_t i, int64_t N) {
    if (!e || i < 0 || i >= e->nl || e->L[i].algo == RVG_INFER_ALGO_DIRECT)
        return -2;
    /* the image-by-image layers run with N = 1 (run_net) */
    const struct wtune *tu = wino_tune(e, &e->L[i], N > 1 && i < e->seg ? 1 : N);
    return tu ? tu->choice : -2;
}
