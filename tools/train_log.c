/* train_log.c - the per-epoch CSV log (DIR/log.csv) and the live progress line of `repvgg train`.
 *
 * The CSV is rewritten whole, atomically, after every epoch, so a crash leaves either the old or
 * the new file and a resumed run can drop the rows of epochs it replays. Progress goes to stderr:
 * a line redrawn with \r on a terminal, a plain line every ~5 s otherwise (logs stay readable).
 * Not here: the end-of-epoch summary (the loop prints it) or the chart (png_chart.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "rvg/io.h"
#include "train_cli.h"

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- CSV ------------------------------------------------------------------------------------- */

rvg_status log_read(const char *path, log_row **rows, int64_t *n, int missing_ok) {
    *rows = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (missing_ok && errno == ENOENT)
            return RVG_OK;
        return rvg_error(RVG_STATUS_IO, "cannot open %s: %s", path, strerror(errno));
    }
    char line[1024];
    int64_t cap = 0, lineno = 0;
    rvg_status st = RVG_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (lineno == 1) {
            if (strncmp(line, "epoch,", 6) != 0) {
                st = rvg_error(RVG_STATUS_BAD_FORMAT, "%s: first line is not the CSV header", path);
                break;
            }
            continue;
        }
        if (line[0] == '\n' || line[0] == 0)
            continue;
        log_row r;
        long long ep;
        if (sscanf(line, "%lld,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &ep, &r.lr, &r.train_loss,
                   &r.train_top1, &r.val_loss, &r.val_top1, &r.val_top5, &r.seconds,
                   &r.data_wait_s) != 9) {
            st = rvg_error(RVG_STATUS_BAD_FORMAT, "%s:%lld: expected 9 numbers", path,
                           (long long)lineno);
            break;
        }
        r.epoch = ep;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            log_row *nr = realloc(*rows, (size_t)cap * sizeof **rows);
            if (!nr) {
                st = rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
                break;
            }
            *rows = nr;
        }
        (*rows)[(*n)++] = r;
    }
    fclose(f);
    if (st != RVG_OK) {
        free(*rows);
        *rows = NULL;
        *n = 0;
    }
    return st;
}

rvg_status log_write(const char *path, const log_row *rows, int64_t n) {
    FILE *f;
    char *tmp;
    RVG_TRY(rvg_atomic_open(path, &f, &tmp));
    fprintf(f, "%s\n", LOG_CSV_HEADER);
    for (int64_t i = 0; i < n; i++) {
        const log_row *r = &rows[i];
        fprintf(f, "%lld,%.6g,%.6f,%.6f,%.6f,%.6f,%.6f,%.3f,%.3f\n", (long long)r->epoch, r->lr,
                r->train_loss, r->train_top1, r->val_loss, r->val_top1, r->val_top5, r->seconds,
                r->data_wait_s);
    }
    if (ferror(f)) {
        rvg_atomic_abort(f, tmp);
        return rvg_error(RVG_STATUS_IO, "writing %s failed", path);
    }
    return rvg_atomic_commit(f, tmp, path);
}

/* ---- progress -------------------------------------------------------------------------------- */

void progress_begin(progress *pr, int quiet, int64_t epoch, int64_t epochs, int64_t steps) {
    pr->tty = isatty(fileno(stderr));
    pr->quiet = quiet;
    pr->t_start = now_seconds();
    pr->t_last_print = pr->t_start;
    pr->epoch = epoch;
    pr->epochs = epochs;
    pr->steps = steps;
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7)
        s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void progress_step(progress *pr, int64_t step, double loss, double lr, int64_t images) {
    if (pr->quiet)
        return;
    double t = now_seconds();
    /* A terminal redraws at most ~10 times a second; a log file gets a line every 5 s. */
    double every = pr->tty ? 0.1 : 5.0;
    if (t - pr->t_last_print < every && step < pr->steps)
        return;
    if (!pr->tty && step == pr->steps)
        return; /* the summary line follows at once */
    pr->t_last_print = t;
    double el = t - pr->t_start;
    double ips = el > 0 ? (double)images / el : 0.0;
    double eta = step > 0 ? el * (double)(pr->steps - step) / (double)step : 0.0;
    char e[32], line[256];
    fmt_duration(e, sizeof e, eta);
    int n = snprintf(line, sizeof line,
                     "epoch %lld/%lld  step %lld/%lld  loss %.4f  lr %.4g  %.1f img/s  ETA %s",
                     (long long)pr->epoch, (long long)pr->epochs, (long long)step,
                     (long long)pr->steps, loss, lr, ips, e);
    /* A live line longer than the terminal wraps, and "\r" then redraws only its last row,
     * leaving the others behind at every redraw: cut it to the width. */
    struct winsize ws;
    if (pr->tty && ioctl(fileno(stderr), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 &&
        n >= (int)ws.ws_col && (size_t)ws.ws_col - 1 < sizeof line)
        line[ws.ws_col - 1] = 0;
    fprintf(stderr, "%s%s%s", pr->tty ? "\r\033[K" : "", line, pr->tty ? "" : "\n");
    fflush(stderr);
}

void progress_end(progress *pr) {
    if (!pr->quiet && pr->tty) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
}
