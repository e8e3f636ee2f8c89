/* bench_infer.c - times the deploy-form inference engine on RepVGG-A0 / B0 shaped networks.
 *
 * Builds the network with seeded random weights (the timings do not depend on the values), then
 * reports median and min milliseconds over --runs runs (after warm-up) for (threads, batch) =
 * (2, 1), (2, 8), (1, 1), with effective GFLOP/s (2 x the direct-convolution multiply-adds).
 * --dump FILE writes the weights (official deploy names, stageK.i.rbr_reparam.*, linear.*), a
 * seeded input batch of 8 and our logits as safetensors, so bench/peers.sh can time ONNX Runtime
 * and PyTorch on the same weights and check that they agree with us. --json prints one JSON
 * object per configuration, with the engine's bytes (mb) and the process's peak resident set so
 * far (rss_mb; run one configuration per process to compare it with a peer's). --layers times
 * each layer alone (a one-layer engine on its input shape); --profile times each layer inside
 * whole-network runs (wall clock, per layer and per Winograd phase), which is where its weights
 * and input really come from. Not part of ctest.
 *
 *   bench_infer [--model a0|b0] [--runs 30] [--threads T --batch N] [--size 224] [--in-ch 3]
 *               [--classes 1000] [--dump F] [--ref] [--json] [--layers] [--profile] [--cpu]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "rvg/infer.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float frand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xFFFFFF) / 8388608.f - 1.f;
}

/* --cpu: process CPU time instead of wall time, robust to a shared machine at 1 thread. */
static int use_cpu_clock = 0;
static double now_ms(void) {
    struct timespec t;
    clock_gettime(use_cpu_clock ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    rvg_infer_layer L[64];
    char names[64][32];
    int64_t n, in_ch, H, W, classes, k_last;
    float *fc_w, *fc_b;
    double macs; /* multiply-adds of the direct convolutions + classifier, batch 1 */
} net;

static void net_free(net *m) {
    for (int64_t i = 0; i < m->n; i++)
        free((void *)m->L[i].weight), free((void *)m->L[i].bias);
    free(m->fc_w), free(m->fc_b), free(m);
}

/* RepVGG deploy shape: stage0 in_ch -> w0 s2, stages of `blocks` with widths, first block s2;
 * size x size input, `classes` outputs. */
static void build(net *m, const int *blocks, const int *widths, int w0, int in_ch, int size,
                  int classes) {
    memset(m, 0, sizeof *m);
    m->in_ch = in_ch, m->H = m->W = size, m->classes = classes;
    int64_t C = in_ch, h = size, w = size;
    for (int s = 0; s < 5; s++) {
        int nb = s == 0 ? 1 : blocks[s - 1], K = s == 0 ? w0 : widths[s - 1];
        for (int b = 0; b < nb; b++) {
            rvg_infer_layer *L = &m->L[m->n];
            if (s == 0)
                snprintf(m->names[m->n], sizeof m->names[0], "stage0");
            else
                snprintf(m->names[m->n], sizeof m->names[0], "stage%d.%d", s, b);
            L->C = C, L->K = K, L->stride = b == 0 ? 2 : 1, L->G = 1;
            float *wt = malloc(sizeof(float) * (size_t)(K * C * 9));
            float *bs = malloc(sizeof(float) * (size_t)K);
            float sc = sqrtf(6.f / (float)(9 * C));
            for (int64_t i = 0; i < K * C * 9; i++)
                wt[i] = frand() * sc;
            for (int64_t i = 0; i < K; i++)
                bs[i] = frand() * 0.1f;
            L->weight = wt, L->bias = bs;
            h = (h - 1) / L->stride + 1, w = (w - 1) / L->stride + 1;
            m->macs += (double)(K * C * 9 * h * w);
            C = K, m->n++;
        }
    }
    m->k_last = C;
    m->fc_w = malloc(sizeof(float) * (size_t)(m->classes * C));
    m->fc_b = malloc(sizeof(float) * (size_t)m->classes);
    for (int64_t i = 0; i < m->classes * C; i++)
        m->fc_w[i] = frand() * sqrtf(3.f / (float)C);
    for (int64_t i = 0; i < m->classes; i++)
        m->fc_b[i] = frand() * 0.1f;
    m->macs += (double)(m->classes * C);
}

/* Minimal safetensors writer: JSON header (dtype, shape, byte range per tensor), then the data. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    const float *data;
} st_entry;

static int write_safetensors(const char *path, const st_entry *t, int n, const char *meta) {
    size_t cap = 256 + (size_t)n * 160, len = 0, off = 0;
    char *h = malloc(cap);
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{%s}", meta);
    for (int i = 0; i < n; i++) {
        size_t cnt = 1;
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[",
                                t[i].name);
        for (int d = 0; d < t[i].ndim; d++) {
            len += (size_t)snprintf(h + len, cap - len, d ? ",%lld" : "%lld",
                                    (long long)t[i].shape[d]);
            cnt *= (size_t)t[i].shape[d];
        }
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off,
                                off + cnt * 4);
        off += cnt * 4;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8)
        h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(h);
        return 0;
    }
    uint64_t hl = len;
    int ok = fwrite(&hl, 8, 1, f) == 1 && fwrite(h, 1, len, f) == len;
    for (int i = 0; i < n && ok; i++) {
        size_t cnt = 1;
        for (int d = 0; d < t[i].ndim; d++)
            cnt *= (size_t)t[i].shape[d];
        ok = fwrite(t[i].data, 4, cnt, f) == cnt;
    }
    ok = (fclose(f) == 0) && ok;
    free(h);
    return ok;
}

static int dump(const net *m, const char *model, const char *path) {
    enum { NB = 8 };
    size_t nx = (size_t)(NB * m->in_ch * m->H * m->W);
    float *x = malloc(sizeof(float) * nx), *logits = malloc(sizeof(float) * NB * 1000);
    for (size_t i = 0; i < nx; i++)
        x[i] = frand();
    rvg_engine *e;
    if (rvg_engine_new(&e, m->L, m->n, m->fc_w, m->fc_b, m->classes, m->in_ch, m->H, m->W, NB, 0) ||
        rvg_engine_run(e, logits, x, NB)) {
        fprintf(stderr, "bench_infer: %s\n", rvg_last_error());
        return 0;
    }
    rvg_engine_free(e);
    st_entry t[2 * 64 + 4];
    char names[2 * 64][48];
    int n = 0;
    for (int64_t i = 0; i < m->n; i++) {
        const rvg_infer_layer *L = &m->L[i];
        snprintf(names[2 * i], 48, "%s.rbr_reparam.weight", m->names[i]);
        snprintf(names[2 * i + 1], 48, "%s.rbr_reparam.bias", m->names[i]);
        t[n++] = (st_entry){names[2 * i], 4, {L->K, L->C, 3, 3}, L->weight};
        t[n++] = (st_entry){names[2 * i + 1], 1, {L->K}, L->bias};
    }
    t[n++] = (st_entry){"linear.weight", 2, {m->classes, m->k_last}, m->fc_w};
    t[n++] = (st_entry){"linear.bias", 1, {m->classes}, m->fc_b};
    t[n++] = (st_entry){"input", 4, {NB, m->in_ch, m->H, m->W}, x};
    t[n++] = (st_entry){"logits", 2, {NB, m->classes}, logits};
    char meta[128];
    snprintf(meta, sizeof meta, "\"model\":\"%s\",\"format\":\"repvgg-deploy\"", model);
    int ok = write_safetensors(path, t, n, meta);
    free(x), free(logits);
    return ok;
}

enum { WARMUP = 15 }; /* untimed runs before timing */

static void time_config(const net *m, const char *model, int threads, int batch, int runs,
                        int json) {
    size_t nx = (size_t)(batch * m->in_ch * m->H * m->W);
    float *x = malloc(sizeof(float) * nx), *logits = malloc(sizeof(float) * (size_t)batch * 1000);
    for (size_t i = 0; i < nx; i++)
        x[i] = frand();
    rvg_engine *e;
    if (rvg_engine_new(&e, m->L, m->n, m->fc_w, m->fc_b, m->classes, m->in_ch, m->H, m->W, batch,
                       threads)) {
        fprintf(stderr, "bench_infer: %s\n", rvg_last_error());
        exit(1);
    }
    double *t = malloc(sizeof(double) * (size_t)runs);
    /* warm-up: page in buffers, spin up the thread team, and the engine's first 12 runs, which
     * try two ways of running its Winograd layers (src/infer/engine_wino.c, wino_tune) */
    for (int i = 0; i < WARMUP; i++)
        rvg_engine_run(e, logits, x, batch);
    for (int i = 0; i < runs; i++) {
        double t0 = now_ms();
        rvg_engine_run(e, logits, x, batch);
        t[i] = now_ms() - t0;
    }
    qsort(t, (size_t)runs, sizeof(double), cmp_double);
    double med = runs % 2 ? t[runs / 2] : 0.5 * (t[runs / 2 - 1] + t[runs / 2]);
    double gflops = 2.0 * m->macs * batch / (med * 1e6);
    /* the process's peak resident set so far (Linux: KiB): with one configuration per process
     * (--threads T --batch B), that configuration's, model weights and all */
    struct rusage ru;
    double rss_mb = getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0.0;
    if (json)
        printf("{\"model\":\"%s\",\"threads\":%d,\"batch\":%d,\"median_ms\":%.3f,\"min_ms\":%.3f,"
               "\"gflops\":%.1f,\"isa\":\"%s\",\"mb\":%.1f,\"rss_mb\":%.1f}\n",
               model, threads, batch, med, t[0], gflops, rvg_engine_isa(e),
               (double)rvg_engine_peak_bytes(e) / 1048576.0, rss_mb);
    else
        printf("%-4s threads %d batch %d: median %8.3f ms  min %8.3f ms  %7.1f GFLOP/s (eff.)  "
               "[%s, %.0f MB]\n",
               model, threads, batch, med, t[0], gflops, rvg_engine_isa(e),
               (double)rvg_engine_peak_bytes(e) / 1048576.0);
    fflush(stdout);
    rvg_engine_free(e);
    free(t), free(x), free(logits);
}

/* --profile: mean wall time of each layer (and Winograd phase) inside `runs` whole-network runs,
 * after a warm-up; with 2 threads a phase's time includes waiting for the slower thread. */
static void profile_layers(const net *m, int threads, int batch, int runs) {
    size_t nx = (size_t)(batch * m->in_ch * m->H * m->W);
    float *x = malloc(sizeof(float) * nx), *logits = malloc(sizeof(float) * (size_t)batch * 1000);
    double *ms = malloc(sizeof(double) * (size_t)(4 * m->n));
    for (size_t i = 0; i < nx; i++)
        x[i] = frand();
    rvg_engine *e;
    if (rvg_engine_new(&e, m->L, m->n, m->fc_w, m->fc_b, m->classes, m->in_ch, m->H, m->W, batch,
                       threads) ||
        rvg_engine_profile(e, 1)) {
        fprintf(stderr, "bench_infer: %s\n", rvg_last_error());
        exit(1);
    }
    for (int i = 0; i < WARMUP; i++)
        rvg_engine_run(e, logits, x, batch);
    rvg_engine_profile(e, 1); /* restart the timers after the warm-up */
    double t0 = now_ms();
    for (int i = 0; i < runs; i++)
        rvg_engine_run(e, logits, x, batch);
    double whole = (now_ms() - t0) / runs, sum = 0;
    rvg_engine_profile_read(e, ms);
    printf("in-network time per run, %d thread(s), batch %d, mean of %d runs:\n", threads, batch,
           runs);
    int64_t h = m->H;
    for (int64_t i = 0; i < m->n; i++) {
        const rvg_infer_layer *L = &m->L[i];
        printf("  %-10s %4lld->%-4lld s%lld %3lldx%-3lld %-6s %8.3f ms", m->names[i],
               (long long)L->C, (long long)L->K, (long long)L->stride, (long long)h,
               (long long)h, rvg_infer_algo_name(rvg_engine_layer_algo(e, i)), ms[4 * i]);
        if (ms[4 * i + 2] > 0)
            printf("  (input %.3f, GEMMs %.3f, output %.3f)", ms[4 * i + 1], ms[4 * i + 2],
                   ms[4 * i + 3]);
        printf("\n");
        sum += ms[4 * i];
        h = (h - 1) / L->stride + 1;
    }
    printf("  layers %.3f ms of %.3f ms per run\n", sum, whole);
    rvg_engine_free(e);
    free(x), free(logits), free(ms);
}

/* --layers: each layer alone (one-layer engine on that layer's input shape), to see where the
 * time goes. Includes a global pool + 1-class classifier per layer, which is negligible. */
static void time_layers(const net *m, int threads, int batch, int runs) {
    int64_t h = m->H, w = m->W;
    double total = 0;
    for (int64_t i = 0; i < m->n; i++) {
        const rvg_infer_layer *L = &m->L[i];
        size_t nx = (size_t)(batch * L->C * h * w);
        float *x = malloc(sizeof(float) * nx), fcw[1280], fcb = 0, out[64];
        for (size_t j = 0; j < nx; j++)
            x[j] = frand();
        for (int j = 0; j < 1280; j++)
            fcw[j] = 1.f;
        rvg_engine *e;
        if (rvg_engine_new(&e, L, 1, fcw, &fcb, 1, L->C, h, w, batch, threads)) {
            fprintf(stderr, "bench_infer: %s\n", rvg_last_error());
            exit(1);
        }
        double *t = malloc(sizeof(double) * (size_t)runs);
        for (int r = 0; r < 2; r++)
            rvg_engine_run(e, out, x, batch);
        for (int r = 0; r < runs; r++) {
            double t0 = now_ms();
            rvg_engine_run(e, out, x, batch);
            t[r] = now_ms() - t0;
        }
        qsort(t, (size_t)runs, sizeof(double), cmp_double);
        int64_t P = (h - 1) / L->stride + 1, Q = (w - 1) / L->stride + 1;
        double macs = (double)(L->K * L->C * 9 * P * Q * batch);
        printf("  %-10s %4lld->%-4lld s%lld %3lldx%-3lld %-6s median %7.3f ms  min %7.3f ms  "
               "%6.1f GFLOP/s\n", m->names[i], (long long)L->C, (long long)L->K,
               (long long)L->stride, (long long)h, (long long)w,
               rvg_infer_algo_name(rvg_engine_layer_algo(e, 0)),
               t[runs / 2], t[0], 2 * macs / (t[runs / 2] * 1e6));
        total += t[runs / 2];
        rvg_engine_free(e);
        free(t), free(x);
        h = P, w = Q;
    }
    printf("  sum of medians %.3f ms\n", total);
}

int main(int argc, char **argv) {
    const char *model = "a0", *dump_path = NULL;
    int runs = 30, threads = 0, batch = 0, ref = 0, json = 0, layers = 0, profile = 0;
    int size = 224, in_ch = 3, classes = 1000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--in-ch") && i + 1 < argc)
            in_ch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--classes") && i + 1 < argc)
            classes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dump") && i + 1 < argc)
            dump_path = argv[++i];
        else if (!strcmp(argv[i], "--ref"))
            ref = 1;
        else if (!strcmp(argv[i], "--cpu"))
            use_cpu_clock = 1;
        else if (!strcmp(argv[i], "--layers"))
            layers = 1;
        else if (!strcmp(argv[i], "--profile"))
            profile = 1;
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else {
            fprintf(stderr, "usage: %s [--model a0|b0] [--runs N] [--threads T --batch N] "
                            "[--size S] [--in-ch C] [--classes K] [--dump F.safetensors] [--ref] "
                            "[--json] [--layers] [--profile] [--cpu]\n",
                    argv[0]);
            return 2;
        }
    }
    if (runs < 1)
        runs = 1;
    if (size < 8 || size > 4096 || in_ch < 1 || in_ch > 64 || classes < 1 || classes > 1000 ||
        (dump_path && (size != 224 || in_ch != 3 || classes != 1000))) {
        fprintf(stderr, "bench_infer: need 8 <= --size <= 4096, 1 <= --in-ch <= 64, 1 <= --classes "
                        "<= 1000 (and the defaults with --dump)\n");
        return 2;
    }
    net *m = malloc(sizeof *m);
    static const int a0b[4] = {2, 4, 14, 1}, a0w[4] = {48, 96, 192, 1280};
    static const int b0b[4] = {4, 6, 16, 1}, b0w[4] = {64, 128, 256, 1280};
    if (!strcmp(model, "a0"))
        build(m, a0b, a0w, 48, in_ch, size, classes);
    else if (!strcmp(model, "b0"))
        build(m, b0b, b0w, 64, in_ch, size, classes);
    else {
        fprintf(stderr, "bench_infer: unknown model %s (a0, b0)\n", model);
        free(m);
        return 2;
    }
    if (dump_path) {
        int ok = dump(m, model, dump_path);
        if (ok)
            fprintf(stderr, "wrote %s\n", dump_path);
        else
            fprintf(stderr, "bench_infer: cannot write %s\n", dump_path);
        net_free(m);
        return ok ? 0 : 1;
    }
    if (!json)
        printf("RepVGG-%s deploy, %dx%dx%d, %d classes, %.3f GMAC per image, %lld layers\n",
               model, in_ch, size, size, classes, m->macs * 1e-9, (long long)m->n);
    if (ref) {
        size_t nx = (size_t)(m->in_ch * m->H * m->W);
        float *x = malloc(sizeof(float) * nx), logits[1000];
        for (size_t i = 0; i < nx; i++)
            x[i] = frand();
        double t0 = now_ms();
        rvg_engine_run_ref(m->L, m->n, m->fc_w, m->fc_b, m->classes, logits, x, 1, m->in_ch,
                           m->H, m->W);
        double tr = now_ms() - t0;
        printf("%-4s reference (plain C, 1 thread) batch 1: %.1f ms  %.2f GFLOP/s\n", model, tr,
               2.0 * m->macs / (tr * 1e6));
        free(x);
    }
    if (layers) {
        time_layers(m, threads > 0 ? threads : 1, batch > 0 ? batch : 1, runs);
        net_free(m);
        return 0;
    }
    if (profile) {
        profile_layers(m, threads > 0 ? threads : 1, batch > 0 ? batch : 1, runs);
        net_free(m);
        return 0;
    }
    if (threads > 0 || batch > 0) {
        time_config(m, model, threads > 0 ? threads : 2, batch > 0 ? batch : 1, runs, json);
    } else {
        time_config(m, model, 2, 1, runs, json);
        time_config(m, model, 2, 8, runs, json);
        time_config(m, model, 1, 1, runs, json);
    }
    net_free(m);
    return 0;
}
