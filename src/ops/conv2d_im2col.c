/* conv2d_im2col.c - the column matrix of the im2col convolution (im2col) and its transpose, which
 * adds a column matrix back into an input gradient (col2im).
 *
 * Used by conv2d_gemm.c, which threads these row / channel ranges over its worker pool. A band is
 * images n0 .. n0+nn-1, output rows pa .. pb-1, channels of group g; its column matrix has
 * Cg*R*S rows (c, r, s) and nn*(pb-pa)*Q columns (image, p, q), zero where a tap falls in the
 * padding.
 *
 * Built with -O3 (CMakeLists.txt): the copies are loops over floats whose counts are unknown at
 * compile time, which -O2 leaves scalar. The stride-2 3x3 layers (the stem and the first layer of
 * every stage) have their own loops: im2col's stride-2 gather with a constant stride (which then
 * vectorizes as de-interleaving loads), and col2im adding the three taps of a kernel row in one
 * pass over the input row, whose even and odd columns it then writes together (a whole-vector
 * interleaved store, where tap by tap each pass writes every other float). Each dx element still
 * receives its terms in the (r, s) order of the general loop, so results are bit-identical.
 */
#include <string.h>

#include "ops/conv2d_gemm_impl.h"

/* Range [*lo, *hi) of output indices o in [0, n_out) whose input index o*stride - pad + tap lies in
 * [0, n_in) (same derivation as the reference). */
static void valid_range(int64_t *lo, int64_t *hi, int64_t tap, int64_t stride, int64_t pad,
                        int64_t n_in, int64_t n_out) {
    const int64_t a = pad - tap, b = n_in - 1 + pad - tap;
    int64_t l = a <= 0 ? 0 : (a + stride - 1) / stride;
    int64_t h = b < 0 ? 0 : b / stride + 1;
    if (h > n_out)
        h = n_out;
    if (l > h)
        l = h;
    *lo = l;
    *hi = h;
}

static inline void zero_f(float *d, int64_t n) {
    for (int64_t j = 0; j < n; j++)
        d[j] = 0.0f;
}

static int64_t band_cols(const rvg__col_band *b) {
    return b->nn * (b->pb - b->pa) * b->s->Q;
}

/* Input plane (H, W) of channel c of the band's group, image n0. */
static int64_t plane_offset(const rvg__col_band *b, int64_t c) {
    const rvg_conv_shape *s = b->s;
    return (b->n0 * s->C + b->g * (s->C / s->G) + c) * s->H * s->W;
}

/* ---- small planes: an index map per tap ------------------------------------------------------
 * At the 7x7, 4x4, 2x2 and 1x1 layers of a 28x28 network a row of col is 1 to 7 floats, and the
 * general loops below spend their time in memset/memcpy calls and range arithmetic for a handful of
 * floats. When the taps x band of one chunk fit SMALL_MAP entries, the source offset of every
 * (tap, output position) is worked out once per call (-1 in the padding) and the copies become one
 * flat loop per image. Same values and, in col2im, the same order of additions per dx element
 * ((r, s) order), so results are bit-identical to the general loops. */
#define SMALL_MAP 1024

static int small_map_ok(const rvg__col_band *b) {
    const rvg_conv_shape *s = b->s;
    return !rvg__conv_direct(s) && s->R * s->S * (b->pb - b->pa) * s->Q <= SMALL_MAP;
}

/* map[rs * band + (p - pa) * Q + q] = input offset in the (H, W) plane, or -1 */
static void small_map(int32_t *map, const rvg__col_band *b) {
    const rvg_conv_shape *s = b->s;
    const int64_t Q = s->Q, band = (b->pb - b->pa) * Q;
    for (int64_t r = 0; r < s->R; r++)
        for (int64_t sx = 0; sx < s->S; sx++) {
            int32_t *m = map + (r * s->S + sx) * band;
            for (int64_t p = b->pa; p < b->pb; p++)
                for (int64_t q = 0; q < Q; q++) {
                    const int64_t ih = p * s->stride - s->pad + r, iw = q * s->stride - s->pad + sx;
                    const int ok = ih >= 0 && ih < s->H && iw >= 0 && iw < s->W;
                    m[(p - b->pa) * Q + q] = ok ? (int32_t)(ih * s->W + iw) : -1;
                }
        }
}

/* What both small-map loops need: taps per channel, positions per image band, col row length,
 * image stride, and the map itself. */
typedef struct {
    int64_t RS, band, cols, CHW;
    int32_t map[SMALL_MAP];
} small_geom;

static void small_setup(small_geom *g, const rvg__col_band *b) {
    const rvg_conv_shape *s = b->s;
    g->RS = s->R * s->S;
    g->band = (b->pb - b->pa) * s->Q;
    g->cols = band_cols(b);
    g->CHW = s->C * s->H * s->W;
    small_map(g->map, b);
}

static void im2col_rows_small(float *col, const float *x, const rvg__col_band *b, int64_t lo,
                              int64_t hi) {
    small_geom g;
    small_setup(&g, b);
    const int64_t band = g.band;
    for (int64_t row = lo; row < hi; row++) {
        const int32_t *restrict m = g.map + row % g.RS * band;
        const float *xc = x + plane_offset(b, row / g.RS);
        float *restrict dst = col + row * g.cols;
        for (int64_t i = 0; i < b->nn; i++, xc += g.CHW, dst += band)
            for (int64_t t = 0; t < band; t++)
                dst[t] = m[t] >= 0 ? xc[m[t]] : 0.0f;
    }
}

static void col2im_channels_small(float *dx, const float *col, const rvg__col_band *b, int64_t lo,
                                  int64_t hi) {
    small_geom g;
    small_setup(&g, b);
    const int64_t band = g.band;
    for (int64_t c = lo; c < hi; c++) {
        float *dxc0 = dx + plane_offset(b, c);
        for (int64_t rs = 0; rs < g.RS; rs++) {
            const int32_t *restrict m = g.map + rs * band;
            const float *src = col + (c * g.RS + rs) * g.cols;
            float *dxc = dxc0;
            for (int64_t i = 0; i < b->nn; i++, dxc += g.CHW, src += band)
                for (int64_t t = 0; t < band; t++)
                    if (m[t] >= 0)
                        dxc[m[t]] += src[t];
        }
    }
}

/* ---- general planes -------------------------------------------------------------------------- */

/* d[q] = x[2q], q < n: the constant stride lets the compiler de-interleave whole vectors. */
static void gather_stride2(float *restrict d, const float *restrict x, int64_t n) {
    for (int64_t q = 0; q < n; q++)
        d[q] = x[2 * q];
}

static void im2col_rows_general(float *col, const float *x, const rvg__col_band *b, int64_t lo,
                                int64_t hi) {
    const rvg_conv_shape *s = b->s;
    const int64_t Q = s->Q, W = s->W, st = s->stride, pad = s->pad, RS = s->R * s->S;
    const int64_t pa = b->pa, pb = b->pb, band = (pb - pa) * Q, cols = band_cols(b);
    const int64_t CHW = s->C * s->H * W;
    for (int64_t row = lo; row < hi; row++) {
        const int64_t c = row / RS, r = row % RS / s->S, sx = row % s->S;
        int64_t p0, p1, q0, q1;
        valid_range(&p0, &p1, r, st, pad, s->H, s->P);
        valid_range(&q0, &q1, sx, st, pad, W, Q);
        p0 = p0 < pa ? pa : p0 > pb ? pb : p0; /* clip the valid rows to the band */
        p1 = p1 > pb ? pb : p1 < p0 ? p0 : p1;
        const int64_t off = sx - pad; /* input column = q*st + off */
        const float *xc = x + plane_offset(b, c); /* (H, W) */
        float *dst = col + row * cols;            /* (nn, pb-pa, Q) */
        if (rvg__conv_direct(s)) { /* 1x1 stride 1 pad 0: each image's band is one run */
            for (int64_t i = 0; i < b->nn; i++)
                rvg__copy_f(dst + i * band, xc + i * CHW + pa * Q, band);
            continue;
        }
        for (int64_t i = 0; i < b->nn; i++, xc += CHW, dst += band) {
            zero_f(dst, (p0 - pa) * Q);
            for (int64_t p = p0; p < p1; p++) {
                const float *restrict xrow = xc + (p * st - pad + r) * W + off;
                float *restrict d = dst + (p - pa) * Q;
                zero_f(d, q0);
                if (st == 1)
                    rvg__copy_f(d + q0, xrow + q0, q1 - q0);
                else if (st == 2)
                    gather_stride2(d + q0, xrow + 2 * q0, q1 - q0);
                else
                    for (int64_t q = q0; q < q1; q++)
                        d[q] = xrow[q * st];
                zero_f(d + q1, Q - q1);
            }
            zero_f(dst + (p1 - pa) * Q, (pb - p1) * Q);
        }
    }
}

/* One input row of a 3x3, stride 2, pad 1 layer: d (W floats) receives the three taps s0, s1, s2
 * (Q floats each) of one kernel row. Tap sx at output column q lands on input column 2q + sx - 1:
 * the even columns 2m take s1[m], the odd ones 2m+1 take s0[m+1] and then s2[m] (the order of
 * the general loop, which adds tap 0 everywhere before tap 2). */
static void col2im_row_3x3s2(float *restrict d, const float *restrict s0, const float *restrict s1,
                             const float *restrict s2, int64_t W, int64_t Q) {
    /* m < Q-1 with 2m+1 < W: all three taps valid, no bounds to check */
    const int64_t m1 = Q - 1 < (W - 1) / 2 ? Q - 1 : (W - 1) / 2;
    for (int64_t m = 0; m < m1; m++) {
        d[2 * m] += s1[m];
        d[2 * m + 1] = (d[2 * m + 1] + s0[m + 1]) + s2[m];
    }
    for (int64_t m = m1; m < Q; m++) {
        if (2 * m < W)
            d[2 * m] += s1[m];
        if (2 * m + 1 < W) {
            if (m + 1 < Q)
                d[2 * m + 1] += s0[m + 1];
            d[2 * m + 1] += s2[m];
        }
    }
}

static void col2im_channels_3x3s2(float *dx, const float *col, const rvg__col_band *b, int64_t lo,
                                  int64_t hi) {
    const rvg_conv_shape *s = b->s;
    const int64_t Q = s->Q, W = s->W, pa = b->pa, pb = b->pb, band = (pb - pa) * Q;
    const int64_t cols = band_cols(b), CHW = s->C * s->H * W;
    for (int64_t c = lo; c < hi; c++) {
        float *dxc0 = dx + plane_offset(b, c);
        for (int64_t r = 0; r < 3; r++) {
            int64_t p0, p1;
            valid_range(&p0, &p1, r, 2, 1, s->H, s->P);
            p0 = p0 < pa ? pa : p0;
            p1 = p1 > pb ? pb : p1;
            const float *src = col + (c * 3 + r) * 3 * cols; /* taps (r, 0..2), each (nn, band) */
            for (int64_t i = 0; i < b->nn; i++)
                for (int64_t p = p0; p < p1; p++) {
                    const int64_t o = i * band + (p - pa) * Q;
                    col2im_row_3x3s2(dxc0 + i * CHW + (2 * p - 1 + r) * W, src + o,
                                     src + cols + o, src + 2 * cols + o, W, Q);
                }
        }
    }
}

static void col2im_channels_general(float *dx, const float *col, const rvg__col_band *b,
                                    int64_t lo, int64_t hi) {
    const rvg_conv_shape *s = b->s;
    const int64_t Q = s->Q, W = s->W, st = s->stride, pad = s->pad;
    const int64_t pa = b->pa, pb = b->pb, band = (pb - pa) * Q, cols = band_cols(b);
    const int64_t CHW = s->C * s->H * W;
    for (int64_t c = lo; c < hi; c++) {
        float *dxc0 = dx + plane_offset(b, c); /* (H, W) */
        for (int64_t r = 0; r < s->R; r++) {
            int64_t p0, p1;
            valid_range(&p0, &p1, r, st, pad, s->H, s->P);
            p0 = p0 < pa ? pa : p0;
            p1 = p1 > pb ? pb : p1;
            for (int64_t sx = 0; sx < s->S; sx++) {
                int64_t q0, q1;
                valid_range(&q0, &q1, sx, st, pad, W, Q);
                const int64_t off = sx - pad;
                const float *src = col + ((c * s->R + r) * s->S + sx) * cols; /* (nn, band) */
                for (int64_t i = 0; i < b->nn; i++) {
                    float *dxc = dxc0 + i * CHW;
                    for (int64_t p = p0; p < p1; p++) {
                        float *restrict dxrow = dxc + (p * st - pad + r) * W + off;
                        const float *restrict srow = src + i * band + (p - pa) * Q;
                        if (st == 1)
                            for (int64_t q = q0; q < q1; q++)
                                dxrow[q] += srow[q];
                        else
                            for (int64_t q = q0; q < q1; q++)
                                dxrow[q * st] += srow[q];
                    }
                }
            }
        }
    }
}

/* ---- entry points ---------------------------------------------------------------------------- */

void rvg__im2col_rows(float *col, const float *x, const rvg__col_band *b, int64_t lo, int64_t hi) {
    if (small_map_ok(b))
        im2col_rows_small(col, x, b, lo, hi);
    else
        im2col_rows_general(col, x, b, lo, hi);
}

void rvg__col2im_channels(float *dx, const float *col, const rvg__col_band *b, int64_t lo,
                          int64_t hi) {
    const rvg_conv_shape *s = b->s;
    if (small_map_ok(b))
        col2im_channels_small(dx, col, b, lo, hi);
    else if (s->R == 3 && s->S == 3 && s->stride == 2 && s->pad == 1)
        col2im_channels_3x3s2(dx, col, b, lo, hi);
    else
        col2im_channels_general(dx, col, b, lo, hi);
}
