/* engine_amx.c - the AMX engine at load time (engine_amx_impl.h has its design): whether the CPU
 * and the OS run AMX tiles, each layer's algorithm (FLAT, ROW, COL) and geometry, the weights
 * split into bf16 hi/lo and packed into B tiles, and the buffers.
 *
 * Not here: the forward pass (engine_amx_run.c), the kernels (kern_amx.c, kern_amx_ref.c).
 */
#include <stdlib.h>
#include <string.h>

#include "engine_amx_impl.h"
#include "rvg/tensor.h"

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

/* rvg_alloc (zeroed, 64-byte aligned) that adds the size to *bytes (rvg_engine_peak_bytes). */
static void *amx_alloc(size_t *bytes, size_t nbytes) {
    *bytes += nbytes;
    return rvg_alloc(nbytes ? nbytes : 64);
}

static int pack_weights(amx_layer *l, const rvg_infer_layer *L, size_t *bytes) {
    size_t n = (size_t)(l->Kt * l->ks * 512);
    l->bh = amx_alloc(bytes, n * 2), l->bl = amx_alloc(bytes, n * 2);
    l->bias = amx_alloc(bytes, sizeof(float) * (size_t)(l->Kt * 16));
    l->aoff = amx_alloc(bytes, sizeof(int64_t) * (size_t)l->ks);
    if (!l->bh || !l->bl || !l->bias || !l->aoff)
        return 0;
    for (int64_t j = 0; j < l->Kt; j++)
        for (int64_t s = 0; s < l->ks; s++)
            for (int64_t r = 0; r < 16; r++)
                for (int64_t col = 0; col < 16; col++)
                    for (int64_t e = 0; e < 2; e++) {
                        float v = weight_at(l, L, j * 16 + col, s, 2 * r + e);
                        size_t at = (size_t)((j * l->ks + s) * 512 + r * 32 + col * 2 + e);
                        rvg__bf16_split(v, &l->bh[at], &l->bl[at]);
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
        if (!(*dst[i] = amx_alloc(bytes, sizeof(float) * (size_t)len[i])))
            return 0;
        memcpy(*dst[i], src[i], sizeof(float) * (size_t)len[i]);
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
        n->ah[i] = amx_alloc(&bytes, 2 * act), n->al[i] = amx_alloc(&bytes, 2 * act);
        if (!n->ah[i] || !n->al[i])
            goto oom;
    }
    n->ch = amx_alloc(&bytes, 2 * col), n->cl = amx_alloc(&bytes, 2 * col);
    n->feat = amx_alloc(&bytes, sizeof(float) * (size_t)(B * last->imgo));
    n->pooled = amx_alloc(&bytes, sizeof(float) * (size_t)(B * last->K));
    n->colf = amx_alloc(&bytes, sizeof(float) * (size_t)(n->colf_floats * e->threads));
    n->sef = amx_alloc(&bytes, sizeof(float) * sef);
    n->gate = amx_alloc(&bytes, sizeof(float) * (size_t)(B * n->kmax));
    if (!n->ch || !n->cl || !n->feat || !n->pooled || !n->colf || !n->sef || !n->gate)
        goto oom;
    e->bytes += bytes;
    return RVG_OK;
oom:
    return rvg_error(RVG_STATUS_NO_MEMORY, "rvg_engine_new: out of memory");
}
