/* cli_util.c - error reporting and strict number parsing shared by the subcommands. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_fail(const char *cmd, rvg_status st, const char *what) {
    fprintf(stderr, "repvgg %s: %s: %s: %s\n", cmd, what, rvg_status_str(st), rvg_last_error());
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "repvgg %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\ntry 'repvgg %s --help'\n", cmd);
    va_end(ap);
    return 2;
}

int cli_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

int cli_parse_float(const char *s, double lo, double hi, double *out) {
    if (!s || !*s)
        return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v) || v < lo || v > hi)
        return 0;
    *out = v;
    return 1;
}

int cli_parse_train_kernels(const char *s, rvg_train_kernels *k) {
    for (int i = RVG_TRAIN_KERNELS_AUTO; strcmp(rvg_train_kernels_name((rvg_train_kernels)i), "?");
         i++)
        if (strcmp(s, rvg_train_kernels_name((rvg_train_kernels)i)) == 0) {
            *k = (rvg_train_kernels)i;
            return 1;
        }
    return 0;
}

int cli_parse_kernels(const char *s, rvg_infer_isa *isa) {
    for (int i = RVG_INFER_ISA_AUTO; strcmp(rvg_infer_isa_name((rvg_infer_isa)i), "?") != 0; i++)
        if (strcmp(s, rvg_infer_isa_name((rvg_infer_isa)i)) == 0) {
            *isa = (rvg_infer_isa)i;
            return 1;
        }
    return 0;
}
