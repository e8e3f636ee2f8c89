/* png_chart.c - training curves as a PNG: a tiny RGB rasteriser (pixels, thick lines, boxes, a
 * 5x7 bitmap font) and a libpng writer.
 *
 * Two panels side by side: loss (train and val) and accuracy in percent (train top-1, val top-1,
 * val top-5), epoch on the x axis, with ticks, tick labels and a legend. The font has digits,
 * lower-case letters and the punctuation a run's title needs; upper case is drawn in lower case.
 * Not here: anti-aliasing, log scales, or any other chart type.
 */
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "png_chart.h"
#include "rvg/io.h"

#define IMG_W 1000
#define IMG_H 420

typedef struct {
    uint8_t *px; /* (IMG_H, IMG_W, 3) */
} canvas;

typedef struct {
    uint8_t r, g, b;
} rgb;

static const rgb BLACK = {0, 0, 0}, GREY = {225, 225, 225}, BLUE = {31, 119, 180},
                 ORANGE = {255, 127, 14}, GREEN = {44, 160, 44};

static void put(canvas *c, int x, int y, rgb col) {
    if (x < 0 || y < 0 || x >= IMG_W || y >= IMG_H)
        return;
    uint8_t *p = c->px + ((size_t)y * IMG_W + (size_t)x) * 3;
    p[0] = col.r;
    p[1] = col.g;
    p[2] = col.b;
}

static void fill_rect(canvas *c, int x0, int y0, int x1, int y1, rgb col) {
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++)
            put(c, x, y, col);
}

/* Bresenham, drawn 2 pixels thick so the curves read at a glance. */
static void line(canvas *c, int x0, int y0, int x1, int y1, rgb col, int thick) {
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        put(c, x0, y0, col);
        if (thick) {
            put(c, x0 + 1, y0, col);
            put(c, x0, y0 + 1, col);
        }
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

/* ---- 5x7 font: 7 rows of 5 bits, most significant bit leftmost ------------------------------ */

typedef struct {
    char ch;
    uint8_t rows[7];
} glyph;

static const glyph FONT[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'.', {0, 0, 0, 0, 0, 0x0C, 0x0C}},
    {',', {0, 0, 0, 0, 0x0C, 0x04, 0x08}},
    {'-', {0, 0, 0, 0x1F, 0, 0, 0}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {':', {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0}},
    {'=', {0, 0, 0x1F, 0, 0x1F, 0, 0}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'/', {0, 0x01, 0x02, 0x04, 0x08, 0x10, 0}},
    {'+', {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0}},
    {'_', {0, 0, 0, 0, 0, 0, 0x1F}},
    {'@', {0x0E, 0x11, 0x17, 0x15, 0x17, 0x10, 0x0E}},
    {'a', {0, 0, 0x0E, 0x01, 0x0F, 0x11, 0x0F}},
    {'b', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}},
    {'c', {0, 0, 0x0E, 0x10, 0x10, 0x11, 0x0E}},
    {'d', {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}},
    {'e', {0, 0, 0x0E, 0x11, 0x1F, 0x10, 0x0E}},
    {'f', {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}},
    {'g', {0, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E}},
    {'h', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'i', {0x04, 0, 0x0C, 0x04, 0x04, 0x04, 0x0E}},
    {'j', {0x02, 0, 0x06, 0x02, 0x02, 0x12, 0x0C}},
    {'k', {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}},
    {'l', {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'m', {0, 0, 0x1A, 0x15, 0x15, 0x11, 0x11}},
    {'n', {0, 0, 0x16, 0x19, 0x11, 0x11, 0x11}},
    {'o', {0, 0, 0x0E, 0x11, 0x11, 0x11, 0x0E}},
    {'p', {0, 0, 0x1E, 0x11, 0x1E, 0x10, 0x10}},
    {'q', {0, 0, 0x0D, 0x13, 0x0F, 0x01, 0x01}},
    {'r', {0, 0, 0x16, 0x19, 0x10, 0x10, 0x10}},
    {'s', {0, 0, 0x0E, 0x10, 0x0E, 0x01, 0x1E}},
    {'t', {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}},
    {'u', {0, 0, 0x11, 0x11, 0x11, 0x13, 0x0D}},
    {'v', {0, 0, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'w', {0, 0, 0x11, 0x11, 0x15, 0x15, 0x0A}},
    {'x', {0, 0, 0x11, 0x0A, 0x04, 0x0A, 0x11}},
    {'y', {0, 0, 0x11, 0x11, 0x0F, 0x01, 0x0E}},
    {'z', {0, 0, 0x1F, 0x02, 0x04, 0x08, 0x1F}},
};

static const uint8_t *glyph_rows(char ch) {
    if (ch >= 'A' && ch <= 'Z')
        ch = (char)(ch - 'A' + 'a');
    for (size_t i = 0; i < sizeof FONT / sizeof FONT[0]; i++)
        if (FONT[i].ch == ch)
            return FONT[i].rows;
    return NULL;
}

/* Draws s with its top-left corner at (x, y), each font pixel scale x scale; returns the width. */
static int text(canvas *c, int x, int y, const char *s, rgb col, int scale) {
    int x0 = x;
    for (; *s; s++, x += 6 * scale) {
        const uint8_t *g = glyph_rows(*s);
        if (!g)
            continue; /* space and anything the font lacks: a blank cell */
        for (int r = 0; r < 7; r++)
            for (int b = 0; b < 5; b++)
                if (g[r] & (0x10 >> b))
                    fill_rect(c, x + b * scale, y + r * scale, x + b * scale + scale - 1,
                              y + r * scale + scale - 1, col);
    }
    return x - x0;
}

static int text_width(const char *s, int scale) {
    return (int)strlen(s) * 6 * scale;
}

/* ---- panels ---------------------------------------------------------------------------------- */

typedef struct {
    int x0, y0, x1, y1; /* plot area in pixels (y0 top) */
    double xmin, xmax, ymin, ymax;
} panel;

static int px_x(const panel *p, double x) {
    return p->x0 + (int)lround((x - p->xmin) / (p->xmax - p->xmin) * (p->x1 - p->x0));
}
static int px_y(const panel *p, double y) {
    return p->y1 - (int)lround((y - p->ymin) / (p->ymax - p->ymin) * (p->y1 - p->y0));
}

/* A "nice" tick step (1, 2 or 5 times a power of ten) giving about `want` ticks over span. */
static double nice_step(double span, int want) {
    double raw = span / want, p = pow(10.0, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void draw_axes(canvas *c, const panel *p, const char *title) {
    double ys = nice_step(p->ymax - p->ymin, 5);
    for (double y = ceil(p->ymin / ys) * ys; y <= p->ymax + 1e-9 * ys; y += ys) {
        int py = px_y(p, y);
        line(c, p->x0, py, p->x1, py, GREY, 0);
        char lab[32];
        snprintf(lab, sizeof lab, "%g", fabs(y) < 1e-12 ? 0.0 : y);
        text(c, p->x0 - 6 - text_width(lab, 1), py - 3, lab, BLACK, 1);
    }
    double xs = nice_step(p->xmax - p->xmin, 8);
    if (xs < 1)
        xs = 1;
    for (double x = ceil(p->xmin / xs) * xs; x <= p->xmax + 1e-9; x += xs) {
        int px = px_x(p, x);
        line(c, px, p->y1, px, p->y1 + 4, BLACK, 0);
        char lab[32];
        snprintf(lab, sizeof lab, "%g", x);
        text(c, px - text_width(lab, 1) / 2, p->y1 + 8, lab, BLACK, 1);
    }
    line(c, p->x0, p->y0, p->x0, p->y1, BLACK, 0);
    line(c, p->x0, p->y1, p->x1, p->y1, BLACK, 0);
    text(c, (p->x0 + p->x1 - text_width("epoch", 1)) / 2, p->y1 + 20, "epoch", BLACK, 1);
    text(c, (p->x0 + p->x1 - text_width(title, 2)) / 2, p->y0 - 22, title, BLACK, 2);
}

/* One series: field at byte offset off of each row, scaled by mul. */
static void draw_series(canvas *c, const panel *p, const log_row *rows, int64_t n, size_t off,
                        double mul, rgb col) {
    int lx = 0, ly = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = *(const double *)((const char *)&rows[i] + off) * mul;
        int x = px_x(p, (double)rows[i].epoch), y = px_y(p, v);
        fill_rect(c, x - 2, y - 2, x + 2, y + 2, col);
        if (i > 0)
            line(c, lx, ly, x, y, col, 1);
        lx = x;
        ly = y;
    }
}

/* Legend entry `slot` in the top-right corner (loss falls, so its curves stay clear of it) or,
 * for the accuracy panel (rising curves), the bottom-right one. */
static void legend(canvas *c, const panel *p, int slot, int bottom, const char *name, rgb col) {
    int x = p->x1 - 110, y = bottom ? p->y1 - 50 + slot * 14 : p->y0 + 8 + slot * 14;
    fill_rect(c, x, y + 1, x + 14, y + 5, col);
    text(c, x + 20, y, name, BLACK, 1);
}

rvg_status chart_write_png(const char *path, const log_row *rows, int64_t n, const char *title) {
    canvas cv;
    cv.px = malloc((size_t)IMG_W * IMG_H * 3);
    if (!cv.px)
        return rvg_error(RVG_STATUS_NO_MEMORY, "chart: out of memory");
    memset(cv.px, 255, (size_t)IMG_W * IMG_H * 3);

    double emax = 1, lmax = 0;
    for (int64_t i = 0; i < n; i++) {
        if ((double)rows[i].epoch > emax)
            emax = (double)rows[i].epoch;
        if (isfinite(rows[i].train_loss) && rows[i].train_loss > lmax)
            lmax = rows[i].train_loss;
        if (isfinite(rows[i].val_loss) && rows[i].val_loss > lmax)
            lmax = rows[i].val_loss;
    }
    if (lmax <= 0)
        lmax = 1;
    /* One epoch alone still gets a visible x range. */
    double xmin = n > 1 ? 1.0 : 0.0, xmax = emax > xmin ? emax : xmin + 1;
    panel pl = {70, 60, IMG_W / 2 - 30, IMG_H - 50, xmin, xmax, 0.0, lmax * 1.05};
    panel pa = {IMG_W / 2 + 60, 60, IMG_W - 30, IMG_H - 50, xmin, xmax, 0.0, 100.0};
    draw_axes(&cv, &pl, "loss");
    draw_axes(&cv, &pa, "accuracy (%)");
    draw_series(&cv, &pl, rows, n, offsetof(log_row, train_loss), 1.0, BLUE);
    draw_series(&cv, &pl, rows, n, offsetof(log_row, val_loss), 1.0, ORANGE);
    draw_series(&cv, &pa, rows, n, offsetof(log_row, train_top1), 100.0, BLUE);
    draw_series(&cv, &pa, rows, n, offsetof(log_row, val_top1), 100.0, ORANGE);
    draw_series(&cv, &pa, rows, n, offsetof(log_row, val_top5), 100.0, GREEN);
    legend(&cv, &pl, 0, 0, "train", BLUE);
    legend(&cv, &pl, 1, 0, "val", ORANGE);
    legend(&cv, &pa, 0, 1, "train top1", BLUE);
    legend(&cv, &pa, 1, 1, "val top1", ORANGE);
    legend(&cv, &pa, 2, 1, "val top5", GREEN);
    if (title && *title) {
        char t[150];
        snprintf(t, sizeof t, "%s", title); /* long custom specs are cut, not wrapped */
        text(&cv, 10, 8, t, BLACK, 1);
    }

    FILE *f;
    char *tmp;
    rvg_status st = rvg_atomic_open(path, &f, &tmp);
    if (st != RVG_OK) {
        free(cv.px);
        return st;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        rvg_atomic_abort(f, tmp);
        free(cv.px);
        return rvg_error(RVG_STATUS_IO, "chart: libpng failed writing %s", path);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, IMG_W, IMG_H, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < IMG_H; y++)
        png_write_row(png, cv.px + (size_t)y * IMG_W * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(cv.px);
    return rvg_atomic_commit(f, tmp, path);
}
