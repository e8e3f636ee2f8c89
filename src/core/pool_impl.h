/* pool_impl.h - the library's thread pool (src/core/pool.c): rvg__pool_for runs fn(ctx, begin,
 * end) over [0, n) in chunks of grain units on the pool's threads and the caller, and returns when
 * all are done. Units are claimed dynamically, so a descheduled thread never holds up a phase it
 * has not started. A call made while the pool runs another phase runs inline on the caller.
 */
#ifndef RVG_POOL_IMPL_H
#define RVG_POOL_IMPL_H

#include <stdint.h>

typedef struct rvg__pool rvg__pool;
typedef void (*rvg__task_fn)(void *ctx, int64_t begin, int64_t end);

rvg__pool *rvg__pool_new(int nthreads); /* NULL on out of memory */
void rvg__pool_free(rvg__pool *p);
int rvg__pool_threads(const rvg__pool *p);
/* Index of the calling thread in the pool whose worker it is: 0 for any other thread, 1.. for
 * workers. */
int rvg__pool_tid(void);
/* The same, but 0 unless the thread is a worker of p (a worker of another pool calling into p). */
int rvg__pool_tid_in(const rvg__pool *p);
void rvg__pool_for(rvg__pool *p, int64_t n, int64_t grain, rvg__task_fn fn, void *ctx);
/* The same on at most nt of the pool's threads (the caller included). */
void rvg__pool_for_nt(rvg__pool *p, int64_t n, int64_t grain, int nt, rvg__task_fn fn,
                      void *ctx);
/* Phases run so far on more than one thread, and the total time their caller waited at their
 * ends for units claimed by other threads (the cost of imbalance and of preempted workers). Read
 * it from the thread that runs the phases, between them. */
void rvg__pool_stats(const rvg__pool *p, int64_t *phases, double *wait_ms);

#endif
