/* gemm_bf16x3.c - the blocked driver of the bf16x3 training GEMM, and its plain-C kernels (the
 * twin of the AMX kernels in x86/conv2d_gemm_amx.c; gemm_bf16x3_impl.h has the arithmetic and
 * the layouts).
 *
 * Why a twin: it computes what the AMX tiles compute in the order Intel's pseudo-code gives for
 * TDPBF16PS (per element, per k in increasing order, one fp32 add per product), so every
 * machine tests the driver, the packing and the arithmetic, and an AMX machine tests its tiles
 * against it.
 *
 * Not here: threading (gemm.c cuts C into slabs and calls rvg__gemm_bf16x3_serial per slab), the
 * choice of backend (gemm.c).
 */
#include "ops/conv2d_gemm_impl.h"
#include "ops/gemm_bf16x3_impl.h"

/* hi and lo at 2 bytes each take as many bytes as one fp32 copy */
_Static_assert((RVG__BF_MC * RVG__BF_KC) + (RVG__BF_KC * RVG__BF_NC) == RVG__GEMM_PACK_FLOATS,
               "the bf16x3 blocks fill the fp32 GEMM's packing buffer");
_Static_assert(RVG__BF_MC % 16 == 0 && RVG__BF_KC % 32 == 0 && RVG__BF_NC % 32 == 0,
               "bf16x3 blocks are whole tiles");

static int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

/* ---- plain-C packers and kernel ------------------------------------------------------------- */

void rvg__bf16x3_pack_a_c(uint16_t *ah, uint16_t *al, int ta, const float *A, int64_t lda,
                          int64_t i0, int64_t mc, int64_t p0, int64_t kc) {
    const int64_t ks = ceil_div(kc, 32), mb = ceil_div(mc, 16);
    for (int64_t m = 0; m < mb; m++)
        for (int64_t s = 0; s < ks; s++) {
            uint16_t *h = ah + (m * ks + s) * 512, *l = al + (m * ks + s) * 512;
            for (int64_t r = 0; r < 16; r++) {
                const int64_t i = 16 * m + r;
                for (int64_t kk = 0; kk < 32; kk++) {
                    const int64_t k = 32 * s + kk;
                    float x = 0.0f;
                    if (i < mc && k < kc)
                        x = ta ? A[(p0 + k) * lda + i0 + i] : A[(i0 + i) * lda + p0 + k];
                    rvg__bf16_split(x, &h[r * 32 + kk], &l[r * 32 + kk]);
                }
            }
        }
}

/* Walks the entries of ceil(nc/16) B tiles of ks steps each (the layout of
 * gemm_bf16x3_impl.h) and stores value(ctx, k, j) split into hi/lo at entry (k, j) of op(B);
 * an entry for which value returns 0 is left as it was. */
typedef int (*b_value_fn)(const void *ctx, int64_t k, int64_t j, float *x);

static void pack_b_tiles(uint16_t *bh, uint16_t *bl, int64_t ks, int64_t nt, b_value_fn value,
                         const void *ctx) {
    for (int64_t t = 0; t < nt; t++)
        for (int64_t s = 0; s < ks; s++) {
            uint16_t *h = bh + (t * ks + s) * 512, *l = bl + (t * ks + s) * 512;
            for (int64_t p = 0; p < 16; p++)
                for (int64_t jj = 0; jj < 16; jj++)
                    for (int e = 0; e < 2; e++) {
                        float x;
                        if (value(ctx, 32 * s + 2 * p + e, 16 * t + jj, &x))
                            rvg__bf16_split(x, &h[p * 32 + 2 * jj + e], &l[p * 32 + 2 * jj + e]);
                    }
        }
}

typedef struct {
    int tb;
    const float *B;
    int64_t ldb, p0, kc, j0, nc;
} b_block;

static int b_block_value(const void *ctx, int64_t k, int64_t j, float *x) {
    const b_block *b = ctx;
    *x = 0.0f;
    if (k < b->kc && j < b->nc)
        *x =
            b->tb ? b->B[(b->j0 + j) * b->ldb + b->p0 + k] : b->B[(b->p0 + k) * b->ldb + b->j0 + j];
    return 1;
}

void rvg__bf16x3_pack_b_c(uint16_t *bh, uint16_t *bl, int tb, const float *B, int64_t ldb,
                          int64_t p0, int64_t kc, int64_t j0, int64_t nc) {
    const b_block b = {tb, B, ldb, p0, kc, j0, nc};
    pack_b_tiles(bh, bl, ceil_div(kc, 32), ceil_div(nc, 16), b_block_value, &b);
}

/* acc += the 32 products of one step of row i of a and column j of b (TDPBF16PS's order). */
static float dot_step(float acc, const uint16_t *a, const uint16_t *b, int64_t j) {
    for (int64_t p = 0; p < 16; p++)
        for (int e = 0; e < 2; e++)
            acc += rvg__bf16_f(a[2 * p + e]) * rvg__bf16_f(b[p * 32 + 2 * j + e]);
    return acc;
}

static void kernel_c(int64_t ks, const uint16_t *ah, const uint16_t *al, const uint16_t *bh,
                     const uint16_t *bl, int64_t tstride, float *c, int64_t ldc, int nt,
                     int beta_one) {
    for (int t = 0; t < nt; t++)
        for (int64_t i = 0; i < 16; i++)
            for (int64_t j = 0; j < 16; j++) {
                float *cij = c + i * ldc + 16 * t + j;
                float acc = beta_one ? *cij : 0.0f;
                for (int64_t s = 0; s < ks; s++) {
                    const uint16_t *a_h = ah + s * 512 + i * 32, *a_l = al + s * 512 + i * 32;
                    const uint16_t *b_h = bh + t * tstride + s * 512;
                    const uint16_t *b_l = bl + t * tstride + s * 512;
                    acc = dot_step(acc, a_h, b_h, j);
                    acc = dot_step(acc, a_h, b_l, j);
                    acc = dot_step(acc, a_l, b_h, j);
                }
                *cij = acc;
            }
}

typedef struct {
    int dx;
    const float *w;
    int64_t Kg, Cg, RS, k0, kend;
    const int8_t *taps;
} u4_block;

/* op(B)(kk, j) of U packed from the weights: forward kk = (c, hw), j = (k, pq); input gradient
 * kk = (k, pq), j = (c, hw). Entries of output channels outside [k0, kend) are not this call's. */
static int u4_value(const void *ctx, int64_t kk, int64_t j, float *x) {
    const u4_block *u = ctx;
    const int64_t kr = u->dx ? kk : j, cl = u->dx ? j : kk; /* (k, pq), (c, hw) */
    const int64_t k = kr / 4, c = cl / 4;
    if (k < u->k0 || k >= u->kend)
        return 0;
    const int t = u->taps[kr % 4 * 4 + cl % 4];
    *x = k < u->Kg && c < u->Cg && t >= 0 ? u->w[(k * u->Cg + c) * u->RS + t] : 0.0f;
    return 1;
}

void rvg__bf16x3_pack_u4_c(uint16_t *bh, uint16_t *bl, int dx, const float *w, int64_t Kg,
                           int64_t Cg, int64_t RS, const int8_t taps[16], int64_t k0, int64_t k1) {
    const u4_block u = {dx, w, Kg, Cg, RS, k0, rvg__bf16x3_u4_kend(dx, Kg, k1), taps};
    const int64_t krows = dx ? Kg * 4 : Cg * 4, ncols = dx ? Cg * 4 : Kg * 4;
    pack_b_tiles(bh, bl, ceil_div(krows, 32), ceil_div(ncols, 16), u4_value, &u);
}

const rvg__bf16x3_kernels rvg__bf16x3_kernels_c = {rvg__bf16x3_pack_a_c, rvg__bf16x3_pack_b_c,
                                                   kernel_c, rvg__bf16x3_pack_u4_c};

/* ---- driver ---------------------------------------------------------------------------------- */

void rvg__gemm_bf16x3_serial(const rvg__bf16x3_kernels *k, int ta, int tb, int64_t i0, int64_t M,
                             int64_t j0, int64_t N, int64_t K, const float *A, int64_t lda,
                             const float *B, int64_t ldb, const rvg__bf16x3_prepacked *bp,
                             int beta_one, float *C, int64_t ldc, float *pack) {
    uint16_t *ah = (uint16_t *)pack, *al = ah + RVG__BF_MC * RVG__BF_KC;
    uint16_t *bh = al + RVG__BF_MC * RVG__BF_KC, *bl = bh + RVG__BF_KC * RVG__BF_NC;
    _Alignas(64) float edge[16 * 32]; /* a block of C that sticks out of the matrix */
    for (int64_t jc = 0; jc < N; jc += RVG__BF_NC) {
        const int64_t nc = N - jc < RVG__BF_NC ? N - jc : RVG__BF_NC, nt_all = ceil_div(nc, 16);
        for (int64_t pc = 0; pc < K; pc += RVG__BF_KC) {
            const int64_t kc = K - pc < RVG__BF_KC ? K - pc : RVG__BF_KC, ks = ceil_div(kc, 32);
            const int b1 = beta_one || pc > 0;
            /* a prepacked B's block: its tiles from column j0 + jc on, from step pc / 32 on */
            int64_t tstride = ks * 512;
            const uint16_t *bph = bh, *bpl = bl;
            if (bp) {
                tstride = bp->ks * 512;
                const int64_t off = (j0 + jc) / 16 * tstride + pc / 32 * 512;
                bph = bp->h + off;
                bpl = bp->l + off;
            } else {
                k->pack_b(bh, bl, tb, B, ldb, pc, kc, j0 + jc, nc);
            }
            for (int64_t ic = 0; ic < M; ic += RVG__BF_MC) {
                const int64_t mc = M - ic < RVG__BF_MC ? M - ic : RVG__BF_MC;
                k->pack_a(ah, al, ta, A, lda, i0 + ic, mc, pc, kc);
                /* a pair of B tiles (up to 32 KiB) stays in L1 while the A blocks pass */
                for (int64_t t = 0; t < nt_all; t += 2) {
                    const int nt = nt_all - t < 2 ? (int)(nt_all - t) : 2;
                    const int64_t cols = nc - 16 * t < 16 * nt ? nc - 16 * t : 16 * nt;
                    const uint16_t *b_h = bph + t * tstride, *b_l = bpl + t * tstride;
                    for (int64_t m = 0; 16 * m < mc; m++) {
                        const int64_t rows = mc - 16 * m < 16 ? mc - 16 * m : 16;
                        const uint16_t *a_h = ah + m * ks * 512, *a_l = al + m * ks * 512;
                        float *cp = C + (i0 + ic + 16 * m) * ldc + j0 + jc + 16 * t;
                        if (rows == 16 && cols == 16 * nt) {
                            k->kernel(ks, a_h, a_l, b_h, b_l, tstride, cp, ldc, nt, b1);
                            continue;
                        }
                        memset(edge, 0, sizeof edge);
                        if (b1)
                            for (int64_t i = 0; i < rows; i++)
                                memcpy(edge + i * 32, cp + i * ldc, sizeof(float) * cols);
                        k->kernel(ks, a_h, a_l, b_h, b_l, tstride, edge, 32, nt, b1);
                        for (int64_t i = 0; i < rows; i++)
                            memcpy(cp + i * ldc, edge + i * 32, sizeof(float) * cols);
                    }
                }
            }
        }
    }
}
