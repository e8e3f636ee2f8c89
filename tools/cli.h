/* cli.h - what the subcommands of the `repvgg` tool share: their entry points and small helpers
 * for option parsing and error reporting.
 *
 * Each subcommand lives in tools/cmd_<name>.c, parses its own options with getopt_long, prints
 * its own --help, and returns the process exit status: 0 success, 1 failure (with a message on
 * stderr), 2 usage error.
 */
#ifndef RVG_CLI_H
#define RVG_CLI_H

#include <stdint.h>

#include "rvg/infer.h"
#include "rvg/ops.h"
#include "rvg/status.h"

int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_export(int argc, char **argv);

/* Prints "repvgg <cmd>: <what>: <status>: <details>" to stderr and returns 1. */
int cli_fail(const char *cmd, rvg_status st, const char *what);
/* Prints "repvgg <cmd>: <message>" plus "try 'repvgg <cmd> --help'" to stderr and returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Strict integer / float parsing of an option value within [lo, hi]; 0 on failure. */
int cli_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out);
int cli_parse_float(const char *s, double lo, double hi, double *out);
/* --kernels: a kernel set of the inference engine by name ("auto", "portable", "avx2", "avx512",
 * "amx", or a test twin); 0 for an unknown name. Whether the CPU runs it is the engine's check. */
int cli_parse_kernels(const char *s, rvg_infer_isa *isa);
/* --kernels for training: "auto", "amx" or "amx-twin" (rvg_train_kernels_name) into *k; 0 for
 * an unknown name. */
int cli_parse_train_kernels(const char *s, rvg_train_kernels *k);

#endif
