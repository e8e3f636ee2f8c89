/* png_chart.h - the training-curve chart (loss and accuracy per epoch) as a PNG file, drawn by a
 * tiny rasteriser of our own (lines, rectangles, a 5x7 bitmap font) and written with libpng. */
#ifndef RVG_PNG_CHART_H
#define RVG_PNG_CHART_H

#include <stdint.h>

#include "rvg/status.h"
#include "train_cli.h"

/* Draws two panels side by side: loss (train, val) and accuracy in percent (train top-1, val
 * top-1, val top-5) against the epoch, with axes, ticks, labels and a legend. Writes path
 * atomically. n may be 0 (empty axes). */
rvg_status chart_write_png(const char *path, const log_row *rows, int64_t n, const char *title);

#endif
