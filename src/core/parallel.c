/* parallel.c - rvg__par_run: the training kernels' parallel loop over items (and rvg__par_chunks,
 * an elementwise loop cut into chunks, on top of it), on one process-wide thread pool
 * (src/core/pool.c, which says why not OpenMP teams).
 *
 * The pool is created at first use with as many threads as OpenMP would use then
 * (OMP_NUM_THREADS, omp_set_num_threads); later calls may use fewer (the count is read at every
 * call) but never more, which is what the conv workspaces are sized for. A build without OpenMP
 * runs on the caller alone. Items are claimed one at a time, and which thread runs an item never
 * changes what it computes, so results stay bit-identical whatever the timing and thread count.
 */
#include <pthread.h>
#ifdef RVG_HAVE_OPENMP
#include <omp.h>
#endif

#include "core/parallel_impl.h"
#include "core/pool_impl.h"

#define MAX_WORKERS 256

int rvg__par_threads(void) {
#ifdef RVG_HAVE_OPENMP
    if (omp_in_parallel())
        return 1;
    int t = omp_get_max_threads();
    return t < 1 ? 1 : t > MAX_WORKERS ? MAX_WORKERS : t;
#else
    return 1;
#endif
}

static rvg__pool *g_pool; /* NULL when it could not be created: everything runs on the caller */
static pthread_once_t g_pool_once = PTHREAD_ONCE_INIT;

static void pool_start(void) { g_pool = rvg__pool_new(rvg__par_threads()); }

typedef struct {
    rvg__par_fn fn;
    void *ctx;
} item_job;

static void run_items(void *ctx, int64_t begin, int64_t end) {
    const item_job *j = ctx;
    const int tid = rvg__pool_tid_in(g_pool);
    for (int64_t i = begin; i < end; i++)
        j->fn(j->ctx, i, tid);
}

void rvg__par_run(int64_t n, int nt, rvg__par_fn fn, void *ctx) {
    if (nt > n)
        nt = (int)n;
    if (nt > 1)
        pthread_once(&g_pool_once, pool_start);
    if (nt <= 1 || !g_pool) {
        for (int64_t i = 0; i < n; i++)
            fn(ctx, i, 0);
        return;
    }
    item_job j = {fn, ctx};
    rvg__pool_for_nt(g_pool, n, 1, nt, run_items, &j);
}

typedef struct {
    rvg__range_fn fn;
    void *ctx;
    int64_t n, chunk;
} chunk_job;

static void run_chunk(void *ctx, int64_t item, int tid) {
    (void)tid;
    const chunk_job *j = ctx;
    const int64_t lo = item * j->chunk, hi = lo + j->chunk < j->n ? lo + j->chunk : j->n;
    j->fn(j->ctx, lo, hi);
}

void rvg__par_chunks(int64_t n, int64_t chunk, rvg__range_fn fn, void *ctx) {
    const int nt = rvg__par_threads();
    if (n <= 2 * chunk || nt <= 1) {
        if (n > 0)
            fn(ctx, 0, n);
        return;
    }
    chunk_job j = {fn, ctx, n, chunk};
    rvg__par_run((n + chunk - 1) / chunk, nt, run_chunk, &j);
}

void rvg__par_stats(int64_t *phases, double *wait_ms) { rvg__pool_stats(g_pool, phases, wait_ms); }
