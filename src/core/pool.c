/* pool.c - the library's thread pool: a parallel-for whose units are claimed from atomic
 * counters (one part of the units per thread, which the others help with once their own are
 * done), so a thread the OS has descheduled holds up nobody. The training kernels share one
 * process-wide pool (rvg__par_run, src/core/parallel.c); each inference engine owns one sized by
 * its --threads.
 *
 * Why not OpenMP: on a shared machine (more runnable threads than cores), an `omp for` with a
 * static schedule assigns work to a thread that may not run for a whole time slice, and every
 * implicit barrier then waits for it (while the other thread spins). Measured on the 2-core
 * development machine under load: RepVGG-A0 batch 1 took ~480 ms with libgomp's default spinning
 * and ~65 ms with OMP_WAIT_POLICY=passive, against ~40 ms for one thread; the training conv
 * benchmark was up to 15x slower with a team than with one thread. Here the caller works too,
 * a thread's part goes to whichever thread asks for it once its owner has not, and the end of a
 * phase waits only for units that were actually claimed. Workers spin briefly between phases
 * (phases follow each other within microseconds), then sleep on a condition variable. Which
 * thread runs a unit never changes what the unit computes, so results do not depend on timing.
 *
 * A call made while the pool is running another phase (from a task, or from a second thread) runs
 * its units on the calling thread alone.
 *
 * The pool counts its phases and the time the caller waits at their ends (rvg__pool_stats): that
 * wait is what a preempted or late thread costs, and `repvgg bench --train` reports it.
 *
 * Not here: task graphs, thread affinity.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "core/pool_impl.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Spins (pause instructions) before a worker sleeps, yielding the core every YIELD_EVERY spins
 * in case the thread it waits for was preempted onto this core. RVG_POOL_SPIN overrides it. */
static int spin_limit = 4000;
#define YIELD_EVERY 64

/* The units of one thread's share of a phase, [next, end): claimed by its owner first, then by
 * any thread that has run out of its own. A cache line each, so that owners do not share one. */
typedef struct {
    _Alignas(64) atomic_int_fast64_t next;
    int64_t end;
} rvg__pool_part;

struct rvg__pool {
    int nthreads;                 /* including the caller */
    pthread_t *tid;
    /* The published phase. gen is even when fields below are valid, odd while the caller
     * rewrites them; busy counts workers between reading the fields and finishing. */
    atomic_uint_fast64_t gen;
    atomic_int busy;
    rvg__task_fn fn;
    void *ctx;
    int64_t grain;
    rvg__pool_part *parts;        /* nthreads, one cache line each */
    atomic_int_fast64_t done;
    int stop;
    int active;                   /* threads taking part in the phase, the caller included */
    atomic_int sleepers, next_tid;
    atomic_flag in_use;           /* a phase is in flight: other calls run inline */
    /* Written by the caller of a phase only (in_use makes it the only one): phases run on more
     * than one thread, and the time the caller spent waiting at their ends for units other
     * threads had claimed. */
    int64_t phases, wait_ns;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* Claims a run of units from part q: a quarter of what is left in it, in whole grains (at least
 * one grain), so a part is taken in O(log(units)) claims and its last grains stay small enough
 * to share. Returns 0 when the part is empty. */
static int claim(rvg__pool_part *q, int64_t grain, int64_t *b_out, int64_t *e_out) {
    int64_t b = atomic_load(&q->next);
    for (;;) {
        if (b >= q->end)
            return 0;
        int64_t take = (q->end - b) / 4 / grain * grain;
        int64_t e = b + (take > grain ? take : grain);
        if (e > q->end)
            e = q->end;
        if (atomic_compare_exchange_weak(&q->next, &b, e)) { /* else b is the current value */
            *b_out = b, *e_out = e;
            return 1;
        }
    }
}

/* Runs units of the current phase until none are left: first those of the thread's own part,
 * then what is left of the others' (a thread that was descheduled or slow is helped out).
 *
 * Why parts: the engine's phases split layers the same way from one phase to the next (the
 * units of its transforms and GEMMs are channel-major), so with a fixed part per thread a thread
 * mostly reads what it wrote itself, from its own cache. With one shared counter (first claimed
 * one grain at a time, then guided) threads took units in whatever order they came, and each
 * claim moved the counter's cache line between cores: on the 2-core Zen 5 benchmark machine A0's
 * Winograd transforms ran slower on 2 threads than on 1 (stage 3 input transform 0.032 ->
 * 0.065 ms) and a phase of 800 units of 0.2 us took 145 us on 2 threads against 168 on 1. */
static void work(rvg__pool *p, rvg__task_fn fn, void *ctx, int64_t grain, int tid, int active) {
    for (int k = 0; k < active; k++) {
        rvg__pool_part *q = &p->parts[(tid + k) % active];
        int64_t b, e;
        while (claim(q, grain, &b, &e)) {
            fn(ctx, b, e);
            atomic_fetch_add(&p->done, e - b);
        }
    }
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static _Thread_local int tl_tid = 0;
static _Thread_local const rvg__pool *tl_pool = NULL; /* the pool this thread is a worker of */

int rvg__pool_tid(void) { return tl_tid; }

int rvg__pool_tid_in(const rvg__pool *p) { return tl_pool == p ? tl_tid : 0; }

static void *worker(void *arg) {
    rvg__pool *p = arg;
    uint_fast64_t seen = 0;
    tl_tid = atomic_fetch_add(&p->next_tid, 1) + 1;
    tl_pool = p;
    for (;;) {
        uint_fast64_t g;
        int spins = 0;
        while ((g = atomic_load(&p->gen)) == seen || (g & 1)) {
            if (++spins < spin_limit) {
                if (spins % YIELD_EVERY == 0)
                    sched_yield();
                else
                    CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((g = atomic_load(&p->gen)) == seen || (g & 1))
                pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        atomic_fetch_add(&p->busy, 1);
        if (atomic_load(&p->gen) != g) { /* the caller started rewriting: look again */
            atomic_fetch_sub(&p->busy, 1);
            continue;
        }
        seen = g;
        if (p->stop) {
            atomic_fetch_sub(&p->busy, 1);
            return NULL;
        }
        if (tl_tid < p->active)
            work(p, p->fn, p->ctx, p->grain, tl_tid, p->active);
        atomic_fetch_sub(&p->busy, 1);
    }
}

/* Publishes a new phase (or `stop`) and wakes sleeping workers. Waits first for workers still
 * reading the previous phase's fields (busy), which are about to find no units left. */
static void publish(rvg__pool *p, rvg__task_fn fn, void *ctx, int64_t n, int64_t grain,
                    int active, int stop) {
    atomic_fetch_add(&p->gen, 1); /* odd: closed */
    while (atomic_load(&p->busy) != 0)
        CPU_RELAX();
    p->fn = fn, p->ctx = ctx, p->grain = grain, p->active = active, p->stop = stop;
    int64_t ng = (n + grain - 1) / grain; /* parts of whole grains, one per thread */
    for (int i = 0; i < active; i++) {
        int64_t b = i * ng / active * grain, e = (i + 1) * ng / active * grain;
        atomic_store(&p->parts[i].next, b < n ? b : n);
        p->parts[i].end = e < n ? e : n;
    }
    atomic_store(&p->done, 0);
    atomic_fetch_add(&p->gen, 1); /* even: open */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

rvg__pool *rvg__pool_new(int nthreads) {
    rvg__pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    const char *sl = getenv("RVG_POOL_SPIN");
    if (sl)
        spin_limit = atoi(sl);
    p->nthreads = nthreads < 1 ? 1 : nthreads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->next_tid, 0);
    atomic_flag_clear(&p->in_use);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (p->nthreads > 1) {
        p->tid = calloc((size_t)p->nthreads - 1, sizeof(pthread_t));
        p->parts = aligned_alloc(_Alignof(rvg__pool_part),
                                 sizeof(rvg__pool_part) * (size_t)p->nthreads);
        if (!p->tid || !p->parts) {
            p->nthreads = 1; /* runs everything on the caller */
            return p;
        }
        for (int i = 0; i < p->nthreads; i++)
            atomic_init(&p->parts[i].next, 0), p->parts[i].end = 0;
        for (int i = 0; i < p->nthreads - 1; i++)
            if (pthread_create(&p->tid[i], NULL, worker, p) != 0) {
                p->nthreads = i + 1; /* run with the threads we got */
                break;
            }
    }
    return p;
}

void rvg__pool_free(rvg__pool *p) {
    if (!p)
        return;
    if (p->nthreads > 1) {
        publish(p, NULL, NULL, 0, 1, 0, 1);
        for (int i = 0; i < p->nthreads - 1; i++)
            pthread_join(p->tid[i], NULL);
    }
    free(p->tid);
    free(p->parts);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

int rvg__pool_threads(const rvg__pool *p) { return p ? p->nthreads : 1; }

void rvg__pool_for_nt(rvg__pool *p, int64_t n, int64_t grain, int nt, rvg__task_fn fn,
                      void *ctx) {
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    if (nt > p->nthreads)
        nt = p->nthreads;
    if (nt <= 1 || n <= grain || atomic_flag_test_and_set(&p->in_use)) {
        fn(ctx, 0, n);
        return;
    }
    publish(p, fn, ctx, n, grain, nt, 0);
    work(p, fn, ctx, grain, 0, nt);
    /* Only units already claimed are outstanding; yield so that a worker preempted on this
     * core can finish its unit. */
    p->phases++;
    if (atomic_load(&p->done) < n) {
        const int64_t t0 = now_ns();
        int spins = 0;
        while (atomic_load(&p->done) < n) {
            if (++spins < YIELD_EVERY)
                CPU_RELAX();
            else
                sched_yield(), spins = 0;
        }
        p->wait_ns += now_ns() - t0;
    }
    atomic_flag_clear(&p->in_use);
}

void rvg__pool_stats(const rvg__pool *p, int64_t *phases, double *wait_ms) {
    *phases = p ? p->phases : 0;
    *wait_ms = p ? (double)p->wait_ns * 1e-6 : 0.0;
}

void rvg__pool_for(rvg__pool *p, int64_t n, int64_t grain, rvg__task_fn fn, void *ctx) {
    rvg__pool_for_nt(p, n, grain, p->nthreads, fn, ctx);
}
