/* repvgg.c - the `repvgg` command-line tool: dispatches to one subcommand per file (cmd_*.c;
 * the table below lists them), and answers --help and --version.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "rvg/infer.h"

#ifndef RVG_VERSION
#define RVG_VERSION "unknown"
#endif

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"info", cmd_info, "show an architecture: layers, output shapes, parameters, multiply-adds"},
    {"convert", cmd_convert, "re-parameterise train-form weights into the deploy form"},
    {"predict", cmd_predict, "top-k classes of JPEG/PNG images, or logits of a NumPy array"},
    {"train", cmd_train, "train the multi-branch form; checkpoints, resume, log and chart"},
    {"eval", cmd_eval, "top-1/top-5, per-class accuracy and confusion matrix on a data set"},
    {"plot", cmd_plot, "redraw a run's training curves (curves.png) from its log.csv"},
    {"bench", cmd_bench, "time inference of either form, or whole training steps"},
    {"export", cmd_export, "write a model as an ONNX file (deploy or train form)"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f, "usage: repvgg <command> [options]\n\n"
               "RepVGG in C: train the multi-branch form, convert it exactly to a plain stack of\n"
               "3x3 convolutions, and run it fast.\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'repvgg <command> --help' describes each command's options; 'repvgg --version'\n"
               "prints the version, the kernel sets this CPU runs and the build's options.\n");
}

/* The version and what this build and CPU bring: a bug report should start with this. */
static void version(void) {
    printf("repvgg %s\n", RVG_VERSION);
    printf("inference kernels: %s (available:", rvg_infer_isa_name(rvg_infer_isa_best()));
    static const rvg_infer_isa sets[] = {RVG_INFER_ISA_PORTABLE, RVG_INFER_ISA_AVX2,
                                         RVG_INFER_ISA_AVX512, RVG_INFER_ISA_AMX};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) /* (the test twins left out) */
        if (rvg_infer_isa_available(sets[i]))
            printf(" %s", rvg_infer_isa_name(sets[i]));
    printf(")\ntraining kernels: %s (available:", rvg_train_kernels_name(rvg_ops_train_kernels()));
    static const rvg_train_kernels tsets[] = {RVG_TRAIN_KERNELS_AUTO, RVG_TRAIN_KERNELS_AMX};
    for (size_t i = 0; i < sizeof tsets / sizeof tsets[0]; i++) /* (the twin left out) */
        if (rvg_ops_train_kernels_available(tsets[i]))
            printf(" %s", rvg_train_kernels_name(tsets[i]));
    printf(")\n");
#ifdef RVG_HAVE_BLAS
    const char *blas = "OpenBLAS";
#else
    const char *blas = "none (built-in GEMM)";
#endif
#ifdef RVG_HAVE_MPI
    const char *mpi = "yes";
#else
    const char *mpi = "no (configure with -DRVG_MPI=ON)";
#endif
#if defined(__clang__) || !defined(__GNUC__)
    const char *cc = "";
#else
    const char *cc = "gcc ";
#endif
    printf("BLAS: %s; MPI: %s; compiler: %s%s\n", blas, mpi, cc, __VERSION__);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (argc >= 3 && strcmp(argv[1], "help") == 0) { /* `repvgg help train` = train --help */
        for (size_t i = 0; i < N_COMMANDS; i++)
            if (strcmp(argv[2], commands[i].name) == 0) {
                char *args[] = {argv[2], "--help", NULL};
                return commands[i].run(2, args);
            }
        fprintf(stderr, "repvgg: no command '%s' to describe\n", argv[2]);
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        version();
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "repvgg: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
