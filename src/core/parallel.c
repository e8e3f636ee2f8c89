/* parallel.c - a small work-sharing pool: rvg__par_run hands items of a loop to worker threads
 * and the caller, claimed one at a time from an atomic counter.
 *
 * Why not OpenMP teams: on this 2-core machine, shared with other jobs, an OpenMP team made the conv
 * benchmark up to 15x SLOWER than one thread (every region's join waits for a thread the kernel
 * has not scheduled yet, while libgomp's spinning threads burn the time slices that thread
 * needed; OMP_WAIT_POLICY=passive still lost 1.5x). Here the caller never waits for a helper that
 * has not started: items are claimed one at a time from an atomic counter, the caller claims too,
 * and it waits only for items already claimed. A late helper finds nothing left. Which thread runs
 * an item never changes what the item computes, so results stay bit-identical.
 *
 * The thread count follows OpenMP's (OMP_NUM_THREADS, omp_set_num_threads), read at every call and
 * capped by the count latched at first use; a build without OpenMP runs on the caller alone.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#ifdef RVG_HAVE_OPENMP
#include <omp.h>
#endif

#include "core/parallel_impl.h"
#include "rvg/status.h"

#define MAX_WORKERS 256

static int g_workers = 1; /* threads of the pool, the caller included, fixed at first use */

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


static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint gen; /* job number; changes (under mu) when a job is posted */
    rvg__par_fn fn;       /* the posted job, under mu */
    void *ctx;
    int64_t n;          /* items */
    int nt;             /* threads allowed on it, the caller (tid 0) included */
    atomic_ullong next; /* (gen << 32) | next unclaimed item */
    atomic_llong done;  /* items of the job finished */
    atomic_flag busy;   /* a job is in flight; a second caller runs its job alone */
} g_pool = {
    .mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER, .busy = ATOMIC_FLAG_INIT};

static pthread_once_t g_pool_once = PTHREAD_ONCE_INIT;

/* Claims and runs items of job `gen` until none is left (or another job has replaced it). */
static void pool_claim(unsigned gen, rvg__par_fn fn, void *ctx, int64_t n, int tid) {
    unsigned long long cur = atomic_load(&g_pool.next);
    for (;;) {
        if ((unsigned)(cur >> 32) != gen || (int64_t)(cur & 0xFFFFFFFFull) >= n)
            return;
        if (atomic_compare_exchange_weak(&g_pool.next, &cur, cur + 1)) {
            fn(ctx, (int64_t)(cur & 0xFFFFFFFFull), tid);
            atomic_fetch_add(&g_pool.done, 1);
            cur = atomic_load(&g_pool.next);
        }
    }
}

static void *pool_worker(void *arg) {
    const int tid = (int)(intptr_t)arg;
    unsigned seen = 0;
    for (;;) {
        /* Spin a little before sleeping: conv jobs come back to back within a layer. */
        for (int i = 0; i < 200 && atomic_load(&g_pool.gen) == seen; i++)
            sched_yield();
        pthread_mutex_lock(&g_pool.mu);
        while (atomic_load(&g_pool.gen) == seen)
            pthread_cond_wait(&g_pool.wake, &g_pool.mu);
        seen = atomic_load(&g_pool.gen);
        const rvg__par_fn fn = g_pool.fn;
        void *ctx = g_pool.ctx;
        const int64_t n = g_pool.n;
        const int nt = g_pool.nt;
        pthread_mutex_unlock(&g_pool.mu);
        if (tid < nt)
            pool_claim(seen, fn, ctx, n, tid);
    }
    return NULL;
}

static void pool_start(void) {
    g_workers = rvg__par_threads();
    for (int t = 1; t < g_workers; t++) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int ok = pthread_create(&th, &attr, pool_worker, (void *)(intptr_t)t) == 0;
        pthread_attr_destroy(&attr);
        if (!ok)
            break; /* fewer helpers: the caller claims whatever they would have done */
    }
}

/* Runs fn(ctx, item, tid) for every item in [0, n) on up to nt threads and returns when all are
 * done. tid < nt names the thread (0 is the caller), for per-thread scratch. */
void rvg__par_run(int64_t n, int nt, rvg__par_fn fn, void *ctx) {
    if (nt > n)
        nt = (int)n;
    if (nt <= 1 || atomic_flag_test_and_set(&g_pool.busy)) {
        for (int64_t i = 0; i < n; i++)
            fn(ctx, i, 0);
        return;
    }
    RVG_ASSERT(n < 0xFFFFFFFFll);
    pthread_once(&g_pool_once, pool_start);
    if (nt > g_workers)
        nt = g_workers;
    pthread_mutex_lock(&g_pool.mu);
    const unsigned gen = atomic_load(&g_pool.gen) + 1;
    g_pool.fn = fn;
    g_pool.ctx = ctx;
    g_pool.n = n;
    g_pool.nt = nt;
    atomic_store(&g_pool.done, 0);
    atomic_store(&g_pool.next, (unsigned long long)gen << 32);
    atomic_store(&g_pool.gen, gen);
    pthread_cond_broadcast(&g_pool.wake);
    pthread_mutex_unlock(&g_pool.mu);
    pool_claim(gen, fn, ctx, n, 0);
    while (atomic_load(&g_pool.done) < n) /* only items already claimed are outstanding */
        sched_yield();
    atomic_flag_clear(&g_pool.busy);
}

