/* cmd_bench.c - `repvgg bench`: latency and throughput of inference (either form) and of whole
 * training steps, on random or given weights.
 *
 * Inference of the deploy form runs the fast engine (src/infer/); the train form runs the model's
 * own forward pass with its three branches computed as written, so the speed-up of conversion is
 * measured on the same machine in the same run. --train times forward + loss + backward + SGD.
 * Timing: warm-up runs, then --runs timed runs; median and minimum are reported (the machine is
 * shared and noisy: medians, not means). Peak memory is the process's maximum resident set.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#ifdef RVG_HAVE_OPENMP
#include <omp.h>
#endif

#include "cli.h"
#include "core/parallel_impl.h"
#include "rvg/deploy.h"
#include "rvg/infer.h"
#include "rvg/model.h"
#include "rvg/ops.h"
#include "rvg/train.h"
#include "train_cli.h"

static void help(void) {
    printf("usage: repvgg bench (--weights W | --arch NAME [--classes K] [--in-ch C])\n"
           "                    [--form train|deploy] [--train] [--size S] [--batch B]\n"
           "                    [--threads T] [--runs R] [--warmup N] [--kernels K] [--profile]\n"
           "                    [--json]\n\n"
           "Times inference (default: the deploy form on the fast engine; --form train runs the\n"
           "three-branch train form as written) or, with --train, whole training steps\n"
           "(forward, loss, backward, SGD) of the train form. --arch uses random weights.\n\n"
           "  --size S      input height and width (default: the size repvgg train recorded in\n"
           "                W, else 224)\n"
           "  --batch B     images per run (default 1; 64 with --train)\n"
           "  --threads T   compute threads (default: all cores)\n"
           "  --runs R      timed runs (default 30; 20 with --train)\n"
           "  --warmup N    untimed runs first (default 15 for the deploy form, whose first 12\n"
           "                runs try two ways of running its Winograd layers; 3 for the train\n"
           "                form)\n"
           "  --kernels K   the deploy form's kernel set: auto (default: the fastest fp32 set),\n"
           "                avx512, avx2, portable, or amx (Intel AMX tiles in bf16x3, ~1e-5 of\n"
           "                max|logit| from fp32; docs/inference.md; avx512-twin and amx-twin:\n"
           "                their plain-C twins, for testing); for the train form (and\n"
           "                --train) its convolutions' GEMMs: auto (fp32), amx (bf16x3 on AMX\n"
           "                tiles) or amx-twin (the same in plain C)\n"
           "  --profile     then R more runs with per-layer timers: each layer's mean time and,\n"
           "                for Winograd layers, its input transform / GEMMs / output transform\n"
           "                (deploy form only)\n"
           "  --json        one JSON object: median_ms, min_ms, images_per_s, gflops, peak_rss_mb\n"
           "                (with --profile: profile_run_ms, the mean time of the profiled\n"
           "                runs, and layers, an array of {name, algo, ms, input_ms, gemm_ms,\n"
           "                output_ms})\n");
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v[0..n) in place and returns its median (v[0] is then the minimum). */
static double median_of(double *v, int64_t n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

/* Layer i's block name ("stage3.11") when the engine has one layer per block, else "layer i". */
static const char *layer_name(const rvg_model *m, int64_t nl, int64_t i) {
    static char buf[32];
    if (rvg_model_block_count(m) == nl)
        return rvg_model_block(m, i)->prefix;
    snprintf(buf, sizeof buf, "layer%lld", (long long)i);
    return buf;
}

int cmd_bench(int argc, char **argv) {
    static const struct option opts[] = {
        {"weights", required_argument, 0, 'w'}, {"arch", required_argument, 0, 'a'},
        {"classes", required_argument, 0, 'k'}, {"in-ch", required_argument, 0, 'c'},
        {"form", required_argument, 0, 'f'},    {"train", no_argument, 0, 't'},
        {"size", required_argument, 0, 's'},    {"batch", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 'n'}, {"runs", required_argument, 0, 'r'},
        {"warmup", required_argument, 0, 'u'},  {"json", no_argument, 0, 'j'},
        {"profile", no_argument, 0, 'p'},       {"help", no_argument, 0, 'h'},
        {"kernels", required_argument, 0, 'K'}, {0, 0, 0, 0}};
    const char *wpath = NULL, *arch_name = NULL, *form_name = NULL;
    int size_given = 0;
    int64_t classes = 1000, in_ch = 3, size = 224, batch = 0, threads = 0, runs = 0, warmup = -1;
    int train = 0, json = 0, profile = 0, c, have_classes = 0, have_in_ch = 0;
    rvg_infer_isa isa = RVG_INFER_ISA_AUTO;
    rvg_train_kernels tk = RVG_TRAIN_KERNELS_AUTO;
    const char *kernels = NULL;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'w': wpath = optarg; break;
        case 'a': arch_name = optarg; break;
        case 'k':
            if (!cli_parse_int(optarg, 1, 1000000, &classes))
                return cli_usage_error("bench", "--classes must be an integer in 1..1000000");
            have_classes = 1;
            break;
        case 'c':
            if (!cli_parse_int(optarg, 1, 4096, &in_ch))
                return cli_usage_error("bench", "--in-ch must be an integer in 1..4096");
            have_in_ch = 1;
            break;
        case 'f':
            if (strcmp(optarg, "train") != 0 && strcmp(optarg, "deploy") != 0)
                return cli_usage_error("bench", "--form must be train or deploy");
            form_name = optarg;
            break;
        case 't': train = 1; break;
        case 's':
            if (!cli_parse_int(optarg, 1, 8192, &size))
                return cli_usage_error("bench", "--size must be an integer in 1..8192");
            size_given = 1;
            break;
        case 'b':
            if (!cli_parse_int(optarg, 1, 4096, &batch))
                return cli_usage_error("bench", "--batch must be an integer in 1..4096");
            break;
        case 'n':
            if (!cli_parse_int(optarg, 1, 1024, &threads))
                return cli_usage_error("bench", "--threads must be an integer in 1..1024");
            break;
        case 'r':
            if (!cli_parse_int(optarg, 1, 100000, &runs))
                return cli_usage_error("bench", "--runs must be an integer in 1..100000");
            break;
        case 'u':
            if (!cli_parse_int(optarg, 0, 100000, &warmup))
                return cli_usage_error("bench", "--warmup must be an integer in 0..100000");
            break;
        case 'j': json = 1; break;
        case 'p': profile = 1; break;
        case 'K':
            kernels = optarg; /* which set depends on --train */
            break;
        case 'h': help(); return 0;
        default: return cli_usage_error("bench", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (!wpath == !arch_name)
        return cli_usage_error("bench", "give exactly one of --weights and --arch");
    if (wpath && (have_classes || have_in_ch))
        return cli_usage_error("bench", "--classes and --in-ch go with --arch, not --weights");
    if (train && form_name && strcmp(form_name, "train") != 0)
        return cli_usage_error("bench", "--train measures the train form; drop --form deploy");
    int deploy = !train && (!form_name || strcmp(form_name, "deploy") == 0);
    if (kernels && deploy && !cli_parse_kernels(kernels, &isa))
        return cli_usage_error("bench", "--kernels must be auto, portable, avx2, avx512, amx, "
                                        "avx512-twin or amx-twin");
    if (kernels && !deploy && !cli_parse_train_kernels(kernels, &tk))
        return cli_usage_error("bench", "--kernels must be auto, amx or amx-twin for the train "
                                        "form");
    if (kernels && !deploy && !rvg_ops_set_train_kernels(tk)) {
        fprintf(stderr, "repvgg bench: --kernels %s: not available on this CPU or build\n",
                kernels);
        return 1;
    }
    if (profile && !deploy)
        return cli_usage_error("bench", "--profile times the deploy engine's layers; it does not "
                                        "go with --train or --form train");
    if (!batch)
        batch = train ? 64 : 1;
    if (!runs)
        runs = train ? 20 : 30;
    if (warmup < 0) /* the deploy engine's tuning runs (src/infer/engine_wino.c, wino_tune) */
        warmup = deploy ? 15 : 3;
#ifdef RVG_HAVE_OPENMP
    if (threads)
        omp_set_num_threads((int)threads);
    int nthreads = omp_get_max_threads();
#else
    int nthreads = 1;
#endif

    rvg_model *m = NULL;
    rvg_status st;
    if (wpath) {
        rvg_dict *d = NULL;
        if ((st = train_load_weights(&m, &d, wpath)) != RVG_OK)
            return cli_fail("bench", st, wpath);
        /* the input size training recorded, as eval and predict use it */
        int bad = !size_given && train_recorded_size(d, 8192, &size, "bench", wpath) < 0;
        rvg_dict_free(d);
        if (bad) {
            rvg_model_free(m);
            return 1;
        }
    } else {
        rvg_arch a;
        if ((st = rvg_arch_parse(&a, arch_name)) != RVG_OK)
            return cli_fail("bench", st, "--arch");
        a.classes = classes;
        a.in_ch = in_ch;
        if ((st = rvg_model_new(&m, &a, RVG_FORM_TRAIN)) != RVG_OK)
            return cli_fail("bench", st, "building the model");
        rvg_model_init(m, 1);
    }
    if ((train || !deploy) && rvg_model_form(m) != RVG_FORM_TRAIN) {
        rvg_model_free(m);
        fprintf(stderr, "repvgg bench: %s is in deploy form; the train form cannot be measured\n",
                wpath);
        return 1;
    }
    const rvg_arch *arch = rvg_model_arch(m);
    int64_t C = arch->in_ch, K = arch->classes;
    float *x = rvg_alloc((size_t)(batch * C * size * size) * sizeof(float));
    float *logits = rvg_alloc((size_t)(batch * K) * sizeof(float));
    float *target = rvg_alloc((size_t)(batch * K) * sizeof(float));
    float *dlogits = rvg_alloc((size_t)(batch * K) * sizeof(float));
    double *times = calloc((size_t)runs, sizeof(double));
    /* the training pool's end-of-phase waits per step (not the deploy engine's own pool) */
    double *waits = calloc((size_t)runs, sizeof(double)), *phases = calloc((size_t)runs, sizeof(double));
    int32_t *labels = calloc((size_t)batch, sizeof(int32_t));
    double *prof_ms = NULL; /* --profile: 4 per layer (see rvg_engine_profile_read) */
    double prof_run_ms = 0; /* --profile: mean wall time of the profiled runs */
    rvg_engine *e = NULL;
    rvg_plan *p = NULL;
    int rc = 1;
    if (!x || !logits || !target || !dlogits || !times || !waits || !phases || !labels) {
        fprintf(stderr, "repvgg bench: out of memory\n");
        goto done;
    }
    uint64_t s = 12345;
    for (int64_t i = 0; i < batch * C * size * size; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 40) / (double)(1ull << 24) - 0.5);
    }
    for (int64_t i = 0; i < batch; i++)
        labels[i] = (int32_t)(i % K);
    rvg_targets_from_labels(target, labels, batch, K, 0.0f);
    rvg_engine_opts eo = {.isa = isa};
    if (deploy)
        st = rvg_deploy_engine_new(&e, m, size, size, batch, (int)threads, &eo);
    else
        st = rvg_plan_new(&p, m, batch, size, size);
    if (st != RVG_OK) {
        rc = cli_fail("bench", st, "preparing");
        goto done;
    }
    rvg_sgd_config cfg = rvg_sgd_defaults();
    for (int64_t r = -warmup; r < runs; r++) {
        int64_t ph0, ph1;
        double w0, w1;
        rvg__par_stats(&ph0, &w0);
        double t0 = now_ms();
        if (deploy) {
            st = rvg_engine_run(e, logits, x, batch);
        } else if (!train) {
            const float *out;
            st = rvg_model_forward(m, p, x, batch, 0, &out);
        } else {
            /* a step as `repvgg train` runs it: the optimiser zeroes the gradients it read */
            const float *out;
            st = rvg_model_forward(m, p, x, batch, 1, &out);
            if (st == RVG_OK) {
                rvg_softmax_xent_ref(dlogits, out, target, batch, K);
                st = rvg_model_backward(m, p, dlogits, NULL);
            }
            if (st == RVG_OK)
                st = rvg_sgd_step_fused(m, &cfg, 1e-4f, NULL, 0.0f);
        }
        if (st != RVG_OK) {
            rc = cli_fail("bench", st, "running");
            goto done;
        }
        if (r >= 0) {
            times[r] = now_ms() - t0;
            rvg__par_stats(&ph1, &w1);
            waits[r] = w1 - w0;
            phases[r] = (double)(ph1 - ph0);
        }
    }
    /* per-layer profile: `runs` more runs with the engine's timers on */
    int64_t nl = profile ? rvg_engine_layers(e) : 0;
    if (profile) {
        if (!(prof_ms = calloc((size_t)(4 * nl), sizeof(double)))) {
            fprintf(stderr, "repvgg bench: out of memory\n");
            goto done;
        }
        if ((st = rvg_engine_profile(e, 1)) != RVG_OK) {
            rc = cli_fail("bench", st, "--profile");
            goto done;
        }
        double t0 = now_ms();
        for (int64_t r = 0; r < runs && st == RVG_OK; r++)
            st = rvg_engine_run(e, logits, x, batch);
        prof_run_ms = (now_ms() - t0) / (double)runs;
        if (st != RVG_OK) {
            rc = cli_fail("bench", st, "running");
            goto done;
        }
        rvg_engine_profile_read(e, prof_ms);
        rvg_engine_profile(e, 0);
    }
    double median = median_of(times, runs), wait_ms = median_of(waits, runs);
    double phases_per_run = median_of(phases, runs);
    double minimum = times[0];
    double ips = batch * 1000.0 / median;
    /* a training step costs about 3 forward passes (forward, input gradient, weight gradient) */
    double flops = 2.0 * (double)rvg_model_macs(m, size, size) * batch * (train ? 3.0 : 1.0);
    if (deploy) {
        rvg_model *dm = NULL;
        if (rvg_model_form(m) == RVG_FORM_TRAIN && rvg_model_reparam(m, &dm) == RVG_OK) {
            flops = 2.0 * (double)rvg_model_macs(dm, size, size) * batch;
            rvg_model_free(dm);
        }
    }
    double gflops = flops / (median * 1e6);
    const char *what = train ? "train-step" : deploy ? "deploy" : "train-form";
    char archs[512];
    rvg_arch_format(arch, archs, sizeof archs);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "arch", archs);
        cJSON_AddStringToObject(o, "mode", what);
        cJSON_AddNumberToObject(o, "size", (double)size);
        cJSON_AddNumberToObject(o, "batch", (double)batch);
        cJSON_AddNumberToObject(o, "threads", nthreads);
        cJSON_AddNumberToObject(o, "runs", (double)runs);
        cJSON_AddNumberToObject(o, "median_ms", median);
        cJSON_AddNumberToObject(o, "min_ms", minimum);
        cJSON_AddNumberToObject(o, "images_per_s", ips);
        cJSON_AddNumberToObject(o, "gflops", gflops);
        cJSON_AddNumberToObject(o, "peak_rss_mb", peak_rss_mb());
        if (!deploy) {
            cJSON_AddNumberToObject(o, "phases", phases_per_run);
            cJSON_AddNumberToObject(o, "phase_wait_ms", wait_ms);
        }
        if (e)
            cJSON_AddStringToObject(o, "isa", rvg_engine_isa(e));
        if (profile) {
            cJSON_AddNumberToObject(o, "profile_run_ms", prof_run_ms);
            cJSON *ls = cJSON_AddArrayToObject(o, "layers");
            for (int64_t i = 0; i < nl; i++) {
                cJSON *l = cJSON_CreateObject();
                cJSON_AddStringToObject(l, "name", layer_name(m, nl, i));
                cJSON_AddStringToObject(l, "algo",
                                        rvg_infer_algo_name(rvg_engine_layer_algo(e, i)));
                cJSON_AddNumberToObject(l, "ms", prof_ms[4 * i]);
                cJSON_AddNumberToObject(l, "input_ms", prof_ms[4 * i + 1]);
                cJSON_AddNumberToObject(l, "gemm_ms", prof_ms[4 * i + 2]);
                cJSON_AddNumberToObject(l, "output_ms", prof_ms[4 * i + 3]);
                cJSON_AddItemToArray(ls, l);
            }
        }
        char *js = cJSON_PrintUnformatted(o);
        printf("%s\n", js);
        free(js);
        cJSON_Delete(o);
    } else {
        printf("%s %s, %lldx%lldx%lld, batch %lld, %d threads%s%s\n", archs, what, (long long)C,
               (long long)size, (long long)size, (long long)batch, nthreads,
               e ? ", kernels " : "", e ? rvg_engine_isa(e) : "");
        printf("  median %.3f ms  min %.3f ms  (%lld runs)\n", median, minimum, (long long)runs);
        printf("  %.1f images/s  %.1f GFLOP/s  peak RSS %.1f MB\n", ips, gflops, peak_rss_mb());
        if (!deploy && phases_per_run > 0)
            printf("  %.0f parallel phases per run, %.2f ms waiting at their ends (medians)\n",
                   phases_per_run, wait_ms);
        if (profile) {
            double sum = 0;
            printf("  per layer, mean of %lld more runs (ms):\n", (long long)runs);
            for (int64_t i = 0; i < nl; i++) {
                const rvg_block *b = (int64_t)rvg_model_block_count(m) == nl ? rvg_model_block(m, i)
                                                                              : NULL;
                printf("    %-10s", layer_name(m, nl, i));
                if (b)
                    printf(" %5lld->%-5lld s%lld", (long long)b->C, (long long)b->K,
                           (long long)b->stride);
                printf("  %-6s %8.3f", rvg_infer_algo_name(rvg_engine_layer_algo(e, i)),
                       prof_ms[4 * i]);
                if (prof_ms[4 * i + 2] > 0)
                    printf("  (input %.3f, GEMMs %.3f, output %.3f)", prof_ms[4 * i + 1],
                           prof_ms[4 * i + 2], prof_ms[4 * i + 3]);
                printf("\n");
                sum += prof_ms[4 * i];
            }
            printf("    all layers %.3f of %.3f per profiled run\n", sum, prof_run_ms);
        }
    }
    rc = 0;
done:
    rvg_engine_free(e);
    rvg_plan_free(p);
    rvg_model_free(m);
    rvg_free(x);
    rvg_free(logits);
    rvg_free(target);
    rvg_free(dlogits);
    free(times);
    free(waits);
    free(phases);
    free(labels);
    free(prof_ms);
    return rc;
}
