/* engine_direct.c - the direct-convolution layers of the inference engine (stride 2, the stem,
 * small maps) and the unrolled tiny-plane layers (engine.c, unroll_ok): how their work is split
 * into units for the thread pool and handed to the micro-kernels.
 *
 * Not here: the kernels (kern_body.h, kern_micro.h), the weights' packing (engine.c).
 */
#include "engine_impl.h"

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
 * in bands (rvg__wino_mode_at), so that only the bands' edges cross cores: single images whose
 * input is larger than the weights (A0/B0's stem and stages 1.0 and 2.0, also in the image-by-image
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
    for (int64_t u = rvg__zero_units(t, b, e) - t->nz; u < e - t->nz; u++) {
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

void rvg__run_direct(task *t) {
    const layer_plan *p = t->p;
    int64_t step = direct_step(t->e), ng = (p->KB16 + step - 1) / step;
    t->nz = t->N * p->KB8;
    rvg__pool_for(t->e->pool, t->nz + ng * direct_ranges(p, t->N), 1, task_direct, t);
}

/* Unrolled layer (engine.c, unroll_ok): gather, GEMM, scatter. */
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
        rvg__zero_border(t->y, u, p->P, p->Q, p->Hpo, p->Wpo);
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

void rvg__run_unrolled(task *t) {
    const layer_plan *p = t->p;
    const int64_t KPQ = p->K * p->P * p->Q;
    /* gather and scatter units are one image / one 8-channel block of a few pixels: claimed 4
     * and 16 at a time, or the pool's atomic counter costs as much as the copying (perf) */
    rvg__pool_for(t->e->pool, t->N, 4, task_unr_gather, t);
    rvg__pool_for(t->e->pool, (KPQ + UNROLL_COLS - 1) / UNROLL_COLS, 1, task_unr_gemm, t);
    rvg__pool_for(t->e->pool, t->N * p->KB8, 16, task_unr_scatter, t);
}
