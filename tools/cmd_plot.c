/* cmd_plot.c - `repvgg plot`: redraws a run's training curves (RUN_DIR/curves.png, or --out)
 * from RUN_DIR/log.csv, e.g. while a run is still going or after editing the log.
 * Not here: drawing itself (png_chart.c).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "png_chart.h"
#include "train_cli.h"

static void help(void) {
    printf("usage: repvgg plot RUN_DIR [--out PNG]\n\n"
           "Draws loss and accuracy per epoch from RUN_DIR/log.csv (written by 'repvgg train')\n"
           "into RUN_DIR/curves.png, or into PNG with --out.\n");
}

int cmd_plot(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *out = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'h': help(); return 0;
        default:
            return cli_usage_error("plot", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return cli_usage_error("plot", "RUN_DIR is required");
    if (optind + 1 < argc)
        return cli_usage_error("plot", "unexpected argument '%s'", argv[optind + 1]);
    const char *dir = argv[optind];
    char csv[4200], png[4200];
    snprintf(csv, sizeof csv, "%s/log.csv", dir);
    snprintf(png, sizeof png, "%s/curves.png", dir);
    log_row *rows;
    int64_t n;
    rvg_status st = log_read(csv, &rows, &n, 0);
    if (st != RVG_OK)
        return cli_fail("plot", st, "reading the log");
    if (n == 0) {
        free(rows);
        fprintf(stderr, "repvgg plot: %s has no epochs yet; nothing to draw\n", csv);
        return 1;
    }
    st = chart_write_png(out ? out : png, rows, n, dir);
    free(rows);
    if (st != RVG_OK)
        return cli_fail("plot", st, "drawing");
    printf("wrote %s (%lld epochs)\n", out ? out : png, (long long)n);
    return 0;
}
