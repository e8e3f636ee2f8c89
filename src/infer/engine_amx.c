/* engine_amx.c - the inference engine on Intel AMX: every layer a bf16x3 GEMM on the tiles
 * (amx_impl.h), chosen with the kernel set RVG_INFER_ISA_AMX (or its plain-C twin AMX_TWIN).
 *
 * Why: the fp32 engine (engine.c) is at the core's FMA peak once Winograd has removed what
 * multiplications it can. AMX multiplies bf16 pairs 16 times faster; with each fp32 operand
 * split into a hi and a lo bf16 part (three products per multiply-add) the convolutions keep
 * ~16 bits of their inputs' 24 and still run about 5x the FMA rate. It is a different precision
 * from fp32, so it is never the automatic choice: the caller asks for it.
 *
 * Layout: activations are NHWC with a zero border of one pixel, channels padded to Cs = a multiple
 * of 16 (the first layer's input: exactly its channels, if at most 10), as two arrays, hi and lo:
 * (N, img) with img = ((H+2)(W+2) + SLACK) pixels x Cs. For a kernel row ky, the 3 x Cs values
 * of the three taps are contiguous in a padded row, so the GEMM's k runs over (ky, 32-value
 * steps of those 3 Cs values): 3 * ceil(3 Cs / 32) steps. A step's last values may run into the
 * next pixel; their weights are zero (and every buffer value is finite, so they add nothing).
 * An RGB stem thus takes 3 steps of 9 useful values rather than 9 of 3. Weights are packed once
 * into B tiles (amx_impl.h). A layer runs as one of (amx_kind):
 *   FLAT  stride 1: an implicit GEMM whose 16 A rows are 16 consecutive pixels of the padded
 *         image, read straight from the activations (a step is a fixed offset); the rows that
 *         fall on the border columns compute garbage that is not stored (2 of W+2 per row);
 *   ROW   stride 2 on wide maps: the same, 16 rows two pixels apart within one output row, R of
 *         them used (R <= 16 divides the row into equal tiles);
 *   COL   tiny maps (2x2, 4x4 ...) and narrow stride-2 maps: the three row segments of each
 *         output pixel copied into a dense A over the whole batch, so that the rows of several
 *         images fill a tile.
 * The last layer writes fp32 (N, P*Q, Kt*16) for the pool and the classifier (fp32, as in the
 * other kernel sets). A squeeze-excitation layer (RepVGG-D2se) writes its pre-activation there
 * too (in a scratch of that shape if it is not the last); the gate is computed in fp32 and the
 * gated, ReLU'd map goes on as hi/lo (infer.h has the SE's definition).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "amx_impl.h"
#include "engine_impl.h"
#include "rvg/tensor.h"

/* Pixels after each image's padded plane (zero at allocation, then whatever finite values an
 * earlier layer left): the A rows of the last tiles of FLAT and ROW layers read up to ~34 pixels
 * past the plane, and a step up to 31 values past its segment (rows whose outputs are
 * dropped, values whose weights are zero). */
enum { SLACK = 80 };

typedef enum { AMX_FLAT, AMX_ROW, AMX_COL } amx_kind;

/* Input channels up to which the first layer's input keeps exactly its channels (3 Cs <= 32: one
 * step per kernel row) rather than a multiple of 16. */
enum { NARROW_C = 10 };

/* The most hidden channels of an SE layer here (RepVGG-D2se has K/16 <= 160): the gate's hidden
 * vector lives on the stack. */
enum { SE_HIDDEN_MAX = 1024 };

typedef struct {
    amx_kind kind;
    int64_t C, K, G, stride, H, W, P, Q;
    int64_t Cs, Hp, Wp, img; /* input: channel stride, padded plane, elements per image */
    int64_t spk, ks, kp;     /* steps per kernel row, k steps (3 spk), kp = 32 ks */
    int64_t Kt;              /* 16-channel output tiles */
    int64_t mt;              /* FLAT: tiles per image; ROW: tiles per output row; COL: tiles over
                                the batch at max_batch (of 16 output pixels) */
    int64_t R;               /* ROW: output pixels per tile */
    int64_t *aoff;           /* per k step (FLAT, ROW: offset from the row's pixel; COL: 32 s) */
    int64_t astride;         /* elements between A rows */
    uint16_t *bh, *bl;       /* (Kt, ks, 512) */
    float *bias;             /* Kt * 16 */
    int64_t Cpo, imgo;       /* output: channel stride (Kt * 16), elements per image */
    int64_t se_hidden;       /* 0, or SE with copies of its weights (see infer.h): */
    float *se_dw, *se_db, *se_uw, *se_ub; /* (hid, K), (hid), (K, hid), (K) */
} amx_layer;

struct rvg__amx_net {
    const rvg__amx_kernels *k;
    amx_layer *L;
    int64_t nl;
    uint16_t *ah[2], *al[2]; /* ping-pong activations */
    uint16_t *ch, *cl;       /* im2col */
    float *feat;             /* last layer, fp32 (N, P*Q, Kt*16) */
    float *sef;              /* an SE layer's pre-activation, fp32 (N, P*Q, Kt*16), if not last */
    float *gate;             /* SE: per image, the channels' means, then their gates (N, kmax) */
    int64_t kmax;            /* the most output channels of a layer */
    float *pooled;           /* (N, K) */
    float *colf;             /* per thread: one padded input row in fp32 (task_pack) */
    int64_t colf_floats;
};

/* ---- availability ---------------------------------------------------------------------------- */

/* CPUID leaf 7: EDX bit 24 AMX-TILE, bit 22 AMX-BF16; then Linux must grant the process the tile
 * data state (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 18), which also says whether
 * the kernel and the hypervisor enable it. */
int rvg__amx_usable(void) {
#if defined(RVG_HAVE_AMX) && defined(__linux__) && defined(SYS_arch_prctl) &&                      \
    (defined(__x86_64__) || defined(__i386__))
    static _Atomic int cached = -1; /* racing first callers compute the same value */
    int known = atomic_load(&cached);
    if (known >= 0)
        return known;
    unsigned a, b, c, d;
    int ok = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 24 & 1) && (d >> 22 & 1) &&
             __builtin_cpu_supports("avx512f");
    if (ok)
        ok = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18) == 0;
    atomic_store(&cached, ok);
    return ok;
#else
    return 0;
#endif
}

/* ---- plan ------------------------------------------------------------------------------------ */

static int64_t round_up(int64_t x, int64_t m) {
    return (x + m - 1) / m * m;
}

/* Weight (output channel ko, step s, value kk of the step) as the packed B sees it: kernel row
 * ky = s / spk, and within the row's 3 Cs values kx = kk' / Cs, c = kk' % Cs (kk' = 32 (s % spk)
 * + kk); 0 past the three taps, the layer's channels or its group. */
static float weight_at(const amx_layer *l, const rvg_infer_layer *L, int64_t ko, int64_t s,
                       int64_t kk) {
    int64_t ky = s / l->spk, at = s % l->spk * 32 + kk, kx = at / l->Cs, c = at % l->Cs;
    if (ko >= l->K || kx >= 3 || c >= l->C)
        return 0.f;
    int64_t cg = l->C / l->G, kg = l->K / l->G;
    if (c / cg != ko / kg)
        return 0.f;
    return L->weight[(ko * cg + c % cg) * 9 + ky * 3 + kx];
}

static int pack_weights(amx_layer *l, const rvg_infer_layer *L, size_t *bytes) {
    size_t n = (size_t)(l->Kt * l->ks * 512);
    l->bh = rvg_alloc(n * 2), l->bl = rvg_alloc(n * 2);
    l->bias = rvg_alloc(sizeof(float) * (size_t)(l->Kt * 16));
    l->aoff = rvg_alloc(sizeof(int64_t) * (size_t)l->ks);
    *bytes += n * 4 + sizeof(float) * (size_t)(l->Kt * 16) + sizeof(int64_t) * (size_t)l->ks;
    if (!l->bh || !l->bl || !l->bias || !l->aoff)
        return 0;
    for (int64_t j = 0; j < l->Kt; j++)
        for (int64_t s = 0; s < l->ks; s++)
            for (int64_t r = 0; r < 16; r++)
                for (int64_t col = 0; col < 16; col++)
                    for (int64_t e = 0; e < 2; e++) {
                        float v = weight_at(l, L, j * 16 + col, s, 2 * r + e);
                        size_t at = (size_t)((j * l->ks + s) * 512 + r * 32 + col * 2 + e);
                        l->bh[at] = rvg__bf16(v);
                        l->bl[at] = rvg__bf16(v - rvg__bf16_f(l->bh[at]));
                    }
    for (int64_t k = 0; k < l->K; k++)
        l->bias[k] = L->bias[k];
    for (int64_t s = 0; s < l->ks; s++)
        l->aoff[s] = l->kind == AMX_COL ? s * 32 : s / l->spk * l->Wp * l->Cs + s % l->spk * 32;
    return 1;
}

/* The layer's algorithm: FLAT and ROW read the activations in place but compute dropped rows
 * (FLAT: the border columns; ROW: the rows past R); below 60% / 75% of useful rows the copy
 * into a dense im2col buffer costs less than the wasted tile products. */
static void plan_kind(amx_layer *l) {
    if (l->stride == 1) {
        int64_t tiles = (l->P * l->Wp + 15) / 16;
        l->kind = l->P * l->Q >= 0.6 * (double)(tiles * 16) ? AMX_FLAT : AMX_COL;
        l->mt = tiles;
    } else {
        int64_t nx = (l->Q + 15) / 16;
        l->kind = l->Q >= 0.75 * (double)(nx * 16) ? AMX_ROW : AMX_COL;
        l->mt = nx, l->R = (l->Q + nx - 1) / nx;
    }
}

void rvg__amx_free(rvg__amx_net *n) {
    if (!n)
        return;
    for (int64_t i = 0; n->L && i < n->nl; i++) {
        amx_layer *l = &n->L[i];
        rvg_free(l->bh), rvg_free(l->bl), rvg_free(l->bias), rvg_free(l->aoff);
        rvg_free(l->se_dw), rvg_free(l->se_db), rvg_free(l->se_uw), rvg_free(l->se_ub);
    }
    free(n->L);
    for (int i = 0; i < 2; i++)
        rvg_free(n->ah[i]), rvg_free(n->al[i]);
    rvg_free(n->ch), rvg_free(n->cl), rvg_free(n->feat), rvg_free(n->pooled), rvg_free(n->colf);
    rvg_free(n->sef), rvg_free(n->gate);
    free(n);
}

/* Copies of layer L's SE weights into l. 0 on out of memory. */
static int copy_se(amx_layer *l, const rvg_infer_layer *L, size_t *bytes) {
    int64_t K = l->K, hd = L->se_hidden;
    const float *src[4] = {L->se_down_w, L->se_down_b, L->se_up_w, L->se_up_b};
    float **dst[4] = {&l->se_dw, &l->se_db, &l->se_uw, &l->se_ub};
    const int64_t len[4] = {hd * K, hd, K * hd, K};
    l->se_hidden = hd;
    for (int i = 0; i < 4; i++) {
        if (!(*dst[i] = rvg_alloc(sizeof(float) * (size_t)len[i])))
            return 0;
        memcpy(*dst[i], src[i], sizeof(float) * (size_t)len[i]);
        *bytes += sizeof(float) * (size_t)len[i];
    }
    return 1;
}

rvg_status rvg__amx_build(rvg_engine *e, const rvg_infer_layer *layers, int twin) {
    for (int64_t i = 0; i < e->nl; i++)
        if (layers[i].se_hidden > SE_HIDDEN_MAX)
            return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                             "rvg_engine_new: kernel set %s runs squeeze-excitation with at most "
                             "%d hidden channels (layer %lld has %lld)",
                             twin ? "amx-twin" : "amx", SE_HIDDEN_MAX, (long long)i,
                             (long long)layers[i].se_hidden);
    rvg__amx_net *n = calloc(1, sizeof *n);
    if (!n || !(n->L = calloc((size_t)e->nl, sizeof(amx_layer)))) {
        free(n);
        return rvg_error(RVG_STATUS_NO_MEMORY, "rvg_engine_new: out of memory");
    }
    e->amx = n;
    n->nl = e->nl;
#ifdef RVG_HAVE_AMX
    n->k = twin ? &rvg__amx_kernels_ref : &rvg__amx_kernels_amx;
#else
    n->k = &rvg__amx_kernels_ref;
#endif
    size_t bytes = sizeof *n + sizeof(amx_layer) * (size_t)e->nl;
    size_t act = 0, col = 0, sef = 0;
    int64_t h = e->H, w = e->W, B = e->max_batch;
    for (int64_t i = 0; i < e->nl; i++) {
        amx_layer *l = &n->L[i];
        const rvg_infer_layer *L = &layers[i];
        l->C = L->C, l->K = L->K, l->G = L->G, l->stride = L->stride, l->H = h, l->W = w;
        l->P = (h - 1) / L->stride + 1, l->Q = (w - 1) / L->stride + 1;
        l->Hp = h + 2, l->Wp = w + 2;
        l->Kt = (l->K + 15) / 16;
        l->Cs = i == 0 && l->C <= NARROW_C ? l->C : round_up(l->C, 16);
        l->img = (l->Hp * l->Wp + SLACK) * l->Cs;
        size_t a = (size_t)(B * l->img);
        act = a > act ? a : act;
        l->spk = (3 * l->Cs + 31) / 32, l->ks = 3 * l->spk, l->kp = 32 * l->ks;
        plan_kind(l);
        l->astride = l->kind == AMX_FLAT ? l->Cs : l->kind == AMX_ROW ? 2 * l->Cs : l->kp;
        if (l->kind == AMX_COL) {
            l->mt = (B * l->P * l->Q + 15) / 16;
            size_t c = (size_t)(l->mt * 16 * l->kp);
            col = c > col ? c : col;
        }
        if (!pack_weights(l, L, &bytes) || (L->se_hidden > 0 && !copy_se(l, L, &bytes)))
            goto oom;
        if (L->se_hidden > 0 && i + 1 < e->nl && (size_t)(B * l->P * l->Q * l->Kt * 16) > sef)
            sef = (size_t)(B * l->P * l->Q * l->Kt * 16);
        n->kmax = l->K > n->kmax ? l->K : n->kmax;
        h = l->P, w = l->Q;
    }
    for (int64_t i = 0; i < e->nl; i++) {
        amx_layer *l = &n->L[i];
        if (i + 1 < e->nl)
            l->Cpo = n->L[i + 1].Cs, l->imgo = n->L[i + 1].img;
        else
            l->Cpo = l->Kt * 16, l->imgo = l->P * l->Q * l->Cpo;
    }
    const amx_layer *last = &n->L[e->nl - 1];
    n->colf_floats = round_up(n->L[0].Wp * n->L[0].Cs, 16);
    for (int i = 0; i < 2; i++) {
        n->ah[i] = rvg_alloc(2 * (act ? act : 1)), n->al[i] = rvg_alloc(2 * (act ? act : 1));
        if (!n->ah[i] || !n->al[i])
            goto oom;
    }
    n->ch = rvg_alloc(2 * col), n->cl = rvg_alloc(2 * col);
    n->feat = rvg_alloc(sizeof(float) * (size_t)(B * last->imgo));
    n->pooled = rvg_alloc(sizeof(float) * (size_t)(B * last->K));
    n->colf = rvg_alloc(sizeof(float) * (size_t)(n->colf_floats * e->threads));
    n->sef = rvg_alloc(sizeof(float) * (sef ? sef : 1));
    n->gate = rvg_alloc(sizeof(float) * (size_t)(B * n->kmax));
    bytes += 8 * act + 4 * col + sizeof(float) * (size_t)(B * last->imgo + B * last->K) +
             sizeof(float) * (size_t)(n->colf_floats * e->threads) +
             sizeof(float) * (sef + (size_t)(B * n->kmax));
    if (!n->ch || !n->cl || !n->feat || !n->pooled || !n->colf || !n->sef || !n->gate)
        goto oom;
    e->bytes += bytes;
    return RVG_OK;
oom:
    return rvg_error(RVG_STATUS_NO_MEMORY, "rvg_engine_new: out of memory");
}

/* ---- run ------------------------------------------------------------------------------------- */

typedef struct {
    const rvg_engine *e;
    const amx_layer *l;
    const float *x; /* the NCHW network input (task_pack) */
    const uint16_t *ih, *il;
    uint16_t *oh, *ol;
    float *of;
    int64_t N, mu; /* batch; M blocks of 16 output pixels */
    int64_t mb;    /* M blocks per GEMM unit */
    int mmajor;    /* units ordered by M run, then output-tile pair (else the pair first) */
    int64_t nz;    /* leading units that zero the output frames (one per image) */
} amx_task;

/* Zeroes the border ring of output image n (the next layer's padding). */
static void zero_frame(const amx_task *t, int64_t n) {
    const amx_layer *l = t->l;
    int64_t Wpo = l->Q + 2, Cpo = l->Cpo;
    uint16_t *bufs[2] = {t->oh + n * l->imgo, t->ol + n * l->imgo};
    for (int b = 0; b < 2; b++) {
        uint16_t *o = bufs[b];
        memset(o, 0, 2 * (size_t)(Wpo * Cpo));
        memset(o + (l->P + 1) * Wpo * Cpo, 0, 2 * (size_t)(Wpo * Cpo));
        for (int64_t y = 1; y <= l->P; y++) {
            memset(o + y * Wpo * Cpo, 0, 2 * (size_t)Cpo);
            memset(o + (y * Wpo + l->Q + 1) * Cpo, 0, 2 * (size_t)Cpo);
        }
    }
}

/* Output element offset of pixel (n, y, x) of layer l: in the next layer's padded input, or
 * (dense: the last layer, an SE layer's pre-activation) in fp32 (N, P*Q, Kt*16). */
static int64_t out_off(const amx_layer *l, int64_t n, int64_t y, int64_t x, int dense) {
    if (dense)
        return (n * l->P * l->Q + y * l->Q + x) * l->Kt * 16;
    return n * l->imgo + ((y + 1) * (l->Q + 2) + x + 1) * l->Cpo;
}

/* A block m of the layer's M side (16 output pixels): its A (hi, lo) and where its rows go. */
static void m_block(const amx_task *t, int64_t m, const uint16_t **ah, const uint16_t **al,
                    int64_t *off) {
    const amx_layer *l = t->l;
    const int last = t->of != NULL;
    if (l->kind == AMX_FLAT) { /* m = (n, tile): pixels v = 16 tile + i of the padded plane */
        int64_t n = m / l->mt, v0 = m % l->mt * 16;
        *ah = t->ih + n * l->img + v0 * l->Cs, *al = t->il + n * l->img + v0 * l->Cs;
        for (int i = 0; i < 16; i++) {
            int64_t y = (v0 + i) / l->Wp, x = (v0 + i) % l->Wp;
            off[i] = y < l->P && x < l->Q ? out_off(l, n, y, x, last) : -1;
        }
    } else if (l->kind == AMX_ROW) { /* m = (n, y, tile) */
        int64_t xt = m % l->mt, y = m / l->mt % l->P, n = m / l->mt / l->P;
        int64_t x0 = xt * l->R < l->Q - l->R ? xt * l->R : l->Q - l->R;
        int64_t at = n * l->img + (2 * y * l->Wp + 2 * x0) * l->Cs;
        *ah = t->ih + at, *al = t->il + at;
        for (int i = 0; i < 16; i++)
            off[i] = i < l->R ? out_off(l, n, y, x0 + i, last) : -1;
    } else { /* COL: m = tile of the batch's output pixels */
        int64_t PQ = l->P * l->Q;
        *ah = t->ih + m * 16 * l->kp, *al = t->il + m * 16 * l->kp;
        for (int i = 0; i < 16; i++) {
            int64_t v = m * 16 + i, n = v / PQ, yx = v % PQ;
            off[i] = n < t->N ? out_off(l, n, yx / l->Q, yx % l->Q, last) : -1;
        }
    }
}

/* Units: t->nz frame zeroings, then (output-tile pair jp, run of t->mb M blocks), jp slowest. */
static void task_gemm(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const amx_layer *l = t->l;
    const rvg__amx_kernels *k = t->e->amx->k;
    const int last = t->of != NULL;
    for (; b < e && b < t->nz; b++)
        zero_frame(t, b);
    if (b >= e)
        return;
    k->init();
    _Alignas(64) float c[RVG__AMX_MB * 512];
    int64_t off[RVG__AMX_MB][16];
    const int64_t runs = (t->mu + t->mb - 1) / t->mb;
    for (int64_t u = b - t->nz; u < e - t->nz; u++) {
        int64_t jps = (l->Kt + 1) / 2;
        int64_t jp = t->mmajor ? u % jps : u / runs;
        int64_t m0 = (t->mmajor ? u / jps : u % runs) * t->mb, j0 = 2 * jp;
        rvg__amx_gemm g = {.aoff = l->aoff,
                           .astride = l->astride,
                           .bh = l->bh + j0 * l->ks * 512,
                           .bl = l->bl + j0 * l->ks * 512,
                           .ks = l->ks,
                           .nt = j0 + 1 < l->Kt ? 2 : 1};
        g.nm = (int)(m0 + t->mb < t->mu ? t->mb : t->mu - m0);
        for (int m = 0; m < g.nm; m++)
            m_block(t, m0 + m, &g.ah[m], &g.al[m], off[m]);
        k->gemm(&g, c);
        for (int m = 0; m < g.nm; m++) {
            rvg__amx_out o = {.bias = l->bias + j0 * 16,
                              .off = off[m],
                              .oh = last ? NULL : t->oh + j0 * 16,
                              .ol = last ? NULL : t->ol + j0 * 16,
                              .of = last ? t->of + j0 * 16 : NULL,
                              .relu = l->se_hidden == 0};
            k->store(c + m * g.nt * 256, g.nt, &o);
        }
    }
}

enum { COL_PX = 16 }; /* output pixels per im2col unit */

/* COL: for each output pixel of the batch, its three kernel rows' 3 Cs values from the padded
 * NHWC input, each row at a multiple of 32 (the rest of a step keeps zeros or older finite
 * values, whose weights are zero). */
static void task_col(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const amx_layer *l = t->l;
    const rvg__amx_net *net = t->e->amx;
    int64_t PQ = l->P * l->Q, total = t->N * PQ, seg = 3 * l->Cs;
    for (int64_t v = b * COL_PX; v < e * COL_PX && v < total; v++) {
        int64_t n = v / PQ, y = v % PQ / l->Q, x = v % l->Q;
        for (int64_t ky = 0; ky < 3; ky++) {
            int64_t src = n * l->img + ((y * l->stride + ky) * l->Wp + x * l->stride) * l->Cs;
            int64_t dst = v * l->kp + ky * l->spk * 32;
            memcpy(net->ch + dst, t->ih + src, 2 * (size_t)seg);
            memcpy(net->cl + dst, t->il + src, 2 * (size_t)seg);
        }
    }
}

/* The network input NCHW fp32 -> padded NHWC hi/lo, the border and padding channels zero: unit =
 * one padded row of one image. */
static void task_pack(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const amx_layer *l = t->l;
    const rvg_engine *en = t->e;
    const rvg__amx_net *net = en->amx;
    float *row = net->colf + rvg__pool_tid_in(en->pool) * net->colf_floats;
    const int64_t rw = l->Wp * l->Cs, n16 = rw / 16 * 16;
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / l->Hp, yp = u % l->Hp;
        uint16_t *oh = t->oh + n * l->img + yp * rw, *ol = t->ol + n * l->img + yp * rw;
        memset(row, 0, sizeof(float) * (size_t)rw);
        if (yp > 0 && yp <= l->H)
            for (int64_t c = 0; c < l->C; c++) {
                const float *xr = t->x + ((n * l->C + c) * l->H + yp - 1) * l->W;
                for (int64_t x = 0; x < l->W; x++)
                    row[(x + 1) * l->Cs + c] = xr[x];
            }
        net->k->split(row, oh, ol, n16);
        for (int64_t i = n16; i < rw; i++) { /* the row's last values, fewer than 16 */
            oh[i] = rvg__bf16(row[i]);
            ol[i] = rvg__bf16(row[i] - rvg__bf16_f(oh[i]));
        }
    }
}

/* SE, after the GEMMs wrote the pre-activation s to t->of (dense): the channel means of s, per
 * unit (image, 16 channels), into net->gate. */
static void task_se_mean(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const amx_layer *l = t->l;
    const rvg__amx_net *net = t->e->amx;
    const int64_t PQ = l->P * l->Q, Ks = l->Kt * 16;
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / l->Kt, k0 = u % l->Kt * 16, nk = l->K - k0 < 16 ? l->K - k0 : 16;
        float a[16] = {0};
        for (int64_t p = 0; p < PQ; p++)
            for (int64_t k = 0; k < 16; k++)
                a[k] += t->of[(n * PQ + p) * Ks + k0 + k];
        for (int64_t k = 0; k < nk; k++)
            net->gate[n * net->kmax + k0 + k] = a[k] / (float)PQ;
    }
}

/* SE: per image, the means m in net->gate become the gates g = sigmoid(up relu(down m + db) +
 * ub). */
static void task_se_gate(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const amx_layer *l = t->l;
    const rvg__amx_net *net = t->e->amx;
    float h[SE_HIDDEN_MAX];
    for (int64_t n = b; n < e; n++)
        rvg__se_gates(net->gate + n * net->kmax, h, l->se_dw, l->se_db, l->se_uw, l->se_ub, l->K,
                      l->se_hidden);
}

/* SE: y = ReLU(s g), per output row (n, y): in place (the last layer) or split into the next
 * layer's padded input (whose frame the GEMM phase zeroed). */
static void task_se_scale(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const amx_layer *l = t->l;
    const rvg__amx_net *net = t->e->amx;
    const int64_t PQ = l->P * l->Q, Ks = l->Kt * 16;
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / l->P, y = u % l->P;
        const float *g = net->gate + n * net->kmax;
        for (int64_t x = 0; x < l->Q; x++) {
            float *s = t->of + (n * PQ + y * l->Q + x) * Ks;
            for (int64_t k = 0; k < l->K; k++) {
                float v = s[k] * g[k];
                s[k] = v > 0.f ? v : 0.f;
            }
            if (t->oh) /* channels K.. of s are 0 (zero weights and bias) */
                net->k->split(s, t->oh + out_off(l, n, y, x, 0), t->ol + out_off(l, n, y, x, 0),
                              Ks);
        }
    }
}

static void task_pool(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const amx_layer *l = t->l;
    const rvg__amx_net *net = t->e->amx;
    int64_t PQ = l->P * l->Q;
    for (int64_t n = b; n < e; n++)
        for (int64_t k = 0; k < l->K; k++) {
            float a = 0.f;
            for (int64_t p = 0; p < PQ; p++)
                a += net->feat[n * l->imgo + p * l->Cpo + k];
            net->pooled[n * l->K + k] = a / (float)PQ;
        }
}

enum { FC_J = 32 }; /* classes per classifier unit */

static void task_fc(void *ctx, int64_t b, int64_t e) {
    const amx_task *t = ctx;
    const rvg_engine *en = t->e;
    int64_t nch = (en->classes + FC_J - 1) / FC_J;
    for (int64_t u = b; u < e; u++) {
        int64_t n = u / nch, j0 = (u % nch) * FC_J;
        int64_t nj = en->classes - j0 < FC_J ? en->classes - j0 : FC_J;
        en->kern->fc(t->of + n * en->classes + j0, en->amx->pooled + n * en->k_last,
                     en->fc_w + j0 * en->k_last, en->fc_b + j0, nj, en->k_last);
    }
}

rvg_status rvg__amx_run(rvg_engine *e, float *logits, float *feat, const float *x, int64_t N) {
    rvg__amx_net *net = e->amx;
    amx_task t = {.e = e, .x = x, .N = N, .l = &net->L[0]};
    t.oh = net->ah[0], t.ol = net->al[0];
    rvg__pool_for(e->pool, N * net->L[0].Hp, 2, task_pack, &t);
    for (int64_t i = 0; i < net->nl; i++) {
        const amx_layer *l = &net->L[i];
        double t0 = e->prof ? now_ms() : 0;
        int last = i + 1 == net->nl;
        t.l = l;
        t.ih = net->ah[i & 1], t.il = net->al[i & 1];
        t.oh = last ? NULL : net->ah[(i + 1) & 1], t.ol = last ? NULL : net->al[(i + 1) & 1];
        t.of = last ? net->feat : NULL;
        t.nz = last ? 0 : N;
        if (l->kind == AMX_COL) {
            rvg__pool_for(e->pool, (N * l->P * l->Q + COL_PX - 1) / COL_PX, 4, task_col, &t);
            t.ih = net->ch, t.il = net->cl;
            t.mu = (N * l->P * l->Q + 15) / 16;
        } else {
            t.mu = l->kind == AMX_FLAT ? N * l->mt : N * l->P * l->mt;
        }
        /* as many M blocks per unit as leave 4 units per thread */
        int64_t jps = (l->Kt + 1) / 2, want = 4 * e->threads;
        t.mb = (t.mu * jps + want - 1) / want;
        t.mb = t.mb < 1 ? 1 : t.mb > RVG__AMX_MB ? RVG__AMX_MB : t.mb;
        /* Consecutive units share B (one pair's tiles) or A (a run of M blocks), which then stays
         * in L2; the other is read again per unit. Read again: A (jps times) or B (runs times),
         * whichever is fewer bytes. A0's stage4.0 at batch 8 (2.7 MB of im2col rows, 40 pairs,
         * 8.8 MB of weights, 2 runs): 2.67 -> 1.87 ms. */
        double a_bytes =
            l->kind == AMX_COL ? 4.0 * (double)(t.mu * 16 * l->kp) : 4.0 * (double)(N * l->img);
        double b_bytes = 4.0 * (double)(l->Kt * l->ks * 512);
        int64_t runs = (t.mu + t.mb - 1) / t.mb;
        t.mmajor = b_bytes * (double)runs + a_bytes < a_bytes * (double)jps + b_bytes;
        if (l->se_hidden > 0 && !last)
            t.of = net->sef; /* the pre-activation, gated below */
        rvg__pool_for(e->pool, t.nz + jps * ((t.mu + t.mb - 1) / t.mb), 1, task_gemm, &t);
        if (l->se_hidden > 0) {
            rvg__pool_for(e->pool, N * l->Kt, 1, task_se_mean, &t);
            rvg__pool_for(e->pool, N, 1, task_se_gate, &t);
            rvg__pool_for(e->pool, N * l->P, 1, task_se_scale, &t);
        }
        if (e->prof)
            e->prof[4 * i] += now_ms() - t0;
    }
    e->prof_runs += e->prof != NULL;
    const amx_layer *l = &net->L[net->nl - 1];
    t.l = l;
    if (feat) {
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < l->K; k++)
                for (int64_t p = 0; p < l->P * l->Q; p++)
                    feat[(n * l->K + k) * l->P * l->Q + p] =
                        net->feat[n * l->imgo + p * l->Cpo + k];
        return RVG_OK;
    }
    rvg__pool_for(e->pool, N, 1, task_pool, &t);
    t.of = logits;
    rvg__pool_for(e->pool, N * ((e->classes + FC_J - 1) / FC_J), 1, task_fc, &t);
    return RVG_OK;
}
