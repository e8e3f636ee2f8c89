/* kern_amx_ref.c - the plain-C twin of the AMX kernels (kern_amx.c): the same packed operands,
 * the same three bf16 products per multiply-add in the same order, fp32 sums. It is the
 * "amx-twin" kernel set (rvg_infer_isa RVG_INFER_ISA_AMX_TWIN), so the AMX engine's packing,
 * addressing and epilogues are tested on every machine, and the tests' check of the AMX kernels
 * themselves. See amx_impl.h for the operands.
 */
#include "amx_impl.h"

static void init_ref(void) {}

/* c[j][i][n] += sum over the step's pairs r of a[2r] b[r][n][0] + a[2r+1] b[r][n][1], for the
 * three products in the order the AMX kernel issues them (hi hi, hi lo, lo hi). */
static void gemm_ref(const rvg__amx_gemm *g, float *cc) {
    for (int m = 0; m < g->nm; m++) {
        float *c = cc + m * g->nt * 256;
        memset(c, 0, sizeof(float) * 256 * (size_t)g->nt);
        for (int64_t s = 0; s < g->ks; s++)
            for (int j = 0; j < g->nt; j++) {
                const uint16_t *bt[2] = {g->bh + (j * g->ks + s) * 512,
                                         g->bl + (j * g->ks + s) * 512};
                for (int i = 0; i < 16; i++) {
                    const uint16_t *ar[2] = {g->ah[m] + g->aoff[s] + i * g->astride,
                                             g->al[m] + g->aoff[s] + i * g->astride};
                    static const int prod[3][2] = {{0, 0}, {0, 1}, {1, 0}}; /* (a, b): 0 hi, 1 lo */
                    for (int p = 0; p < 3; p++) {
                        const uint16_t *a = ar[prod[p][0]], *b = bt[prod[p][1]];
                        for (int n = 0; n < 16; n++) {
                            float acc = c[j * 256 + i * 16 + n];
                            for (int r = 0; r < 16; r++) {
                                acc += rvg__bf16_f(a[2 * r]) * rvg__bf16_f(b[r * 32 + 2 * n]);
                                acc +=
                                    rvg__bf16_f(a[2 * r + 1]) * rvg__bf16_f(b[r * 32 + 2 * n + 1]);
                            }
                            c[j * 256 + i * 16 + n] = acc;
                        }
                    }
                }
            }
    }
}

static void store_ref(const float *c, int nt, const rvg__amx_out *o) {
    for (int i = 0; i < 16; i++) {
        if (o->off[i] < 0)
            continue;
        for (int j = 0; j < nt; j++)
            for (int n = 0; n < 16; n++) {
                float v = c[j * 256 + i * 16 + n] + o->bias[j * 16 + n];
                v = v > 0.f || !o->relu ? v : 0.f;
                int64_t at = o->off[i] + j * 16 + n;
                if (o->of) {
                    o->of[at] = v;
                } else {
                    rvg__bf16_split(v, &o->oh[at], &o->ol[at]);
                }
            }
    }
}

static void split_ref(const float *x, uint16_t *hi, uint16_t *lo, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        rvg__bf16_split(x[i], &hi[i], &lo[i]);
    }
}

const rvg__amx_kernels rvg__amx_kernels_ref = {init_ref, gemm_ref, store_ref, split_ref};
