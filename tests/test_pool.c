/* test_pool.c - the thread pool's contract (src/core/pool_impl.h): every unit of [0, n) runs
 * exactly once, in ranges that start on a multiple of the grain and do not cross n, on at most
 * nt threads; a call made from inside a phase runs inline on the calling thread; the same pool
 * serves many phases in a row. The claiming scheme (per-thread parts, helping out, shrinking
 * claims) is the pool's business; these checks hold for any correct one. A pool that loses a
 * unit never ends its phase: that shows as this test's timeout (CMakeLists.txt, 300 s).
 */
#include <stdatomic.h>

#include "core/pool_impl.h"
#include "harness.h"

enum { MAX_UNITS = 5000, MAX_THREADS = 8 };

typedef struct {
    int64_t n, grain;
    atomic_int runs[MAX_UNITS];
    atomic_int bad_range;       /* a range off the grain or past n */
    atomic_int tids[MAX_THREADS + 1];
    rvg__pool *pool;
    int nested;                 /* run a nested phase inside each range */
    atomic_int nested_bad;
} probe;

static void nested_fn(void *ctx, int64_t b, int64_t e) {
    probe *q = ctx;
    /* inline on the caller: the whole range at once, on this thread */
    if (b != 0 || e != 3)
        atomic_fetch_add(&q->nested_bad, 1);
}

static void fn(void *ctx, int64_t b, int64_t e) {
    probe *q = ctx;
    if (b < 0 || e > q->n || b >= e || b % q->grain != 0)
        atomic_fetch_add(&q->bad_range, 1);
    for (int64_t u = b; u < e && u < MAX_UNITS; u++)
        atomic_fetch_add(&q->runs[u], 1);
    int tid = rvg__pool_tid_in(q->pool);
    atomic_fetch_add(&q->tids[tid <= MAX_THREADS ? tid : MAX_THREADS], 1);
    if (q->nested)
        rvg__pool_for(q->pool, 3, 1, nested_fn, q);
}

static probe q; /* large: not on the stack */

/* Runs one phase and checks it; returns 1 when every check held. */
static int phase(rvg__pool *p, int64_t n, int64_t grain, int nt, int nested) {
    q.n = n, q.grain = grain, q.pool = p, q.nested = nested;
    for (int64_t u = 0; u < MAX_UNITS; u++)
        atomic_store(&q.runs[u], 0);
    for (int i = 0; i <= MAX_THREADS; i++)
        atomic_store(&q.tids[i], 0);
    atomic_store(&q.bad_range, 0);
    atomic_store(&q.nested_bad, 0);
    rvg__pool_for_nt(p, n, grain, nt, fn, &q);
    int ok = atomic_load(&q.bad_range) == 0 && atomic_load(&q.nested_bad) == 0;
    for (int64_t u = 0; u < MAX_UNITS; u++)
        ok &= atomic_load(&q.runs[u]) == (u < n ? 1 : 0);
    /* no thread beyond the first nt (tids 0..nt-1) ran a range */
    for (int i = nt > 0 ? nt : 1; i <= MAX_THREADS; i++)
        ok &= atomic_load(&q.tids[i]) == 0;
    return ok;
}

int main(void) {
    static const int threads[] = {1, 2, 3, 5, 8};
    static const int64_t ns[] = {0, 1, 2, 7, 64, 97, 1000, 4999};
    static const int64_t grains[] = {1, 3, 8, 64};
    for (size_t ti = 0; ti < sizeof threads / sizeof *threads; ti++) {
        rvg__pool *p = rvg__pool_new(threads[ti]);
        CHECK(p != NULL);
        if (!p)
            continue;
        CHECK(rvg__pool_threads(p) == threads[ti]);
        int bad = 0, cases = 0;
        for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
            for (size_t gi = 0; gi < sizeof grains / sizeof *grains; gi++)
                for (int nt = 1; nt <= threads[ti]; nt++) {
                    cases++;
                    if (!phase(p, ns[ni], grains[gi], nt, 0)) {
                        bad++;
                        fprintf(stderr, "FAILED: threads %d n %lld grain %lld nt %d\n",
                                threads[ti], (long long)ns[ni], (long long)grains[gi], nt);
                    }
                }
        CHECK(bad == 0);
        /* nested calls run inline; many phases back to back (the engine's pattern) */
        CHECK(phase(p, 200, 1, threads[ti], 1));
        int repeat_ok = 1;
        for (int r = 0; r < 300; r++)
            repeat_ok &= phase(p, 37 + r % 50, 1 + r % 4, threads[ti], 0);
        CHECK(repeat_ok);
        printf("threads %d: %d phases checked\n", threads[ti], cases + 301);
        rvg__pool_free(p);
    }
    return rvg_test_finish();
}
