/* parallel_impl.h - the library's work-sharing pool (src/core/parallel.c), used by the training
 * convolutions and the fused BN passes instead of OpenMP teams (parallel.c says why).
 */
#ifndef RVG_PARALLEL_IMPL_H
#define RVG_PARALLEL_IMPL_H

#include <stdint.h>

typedef void (*rvg__par_fn)(void *ctx, int64_t item, int tid);

/* Runs fn(ctx, item, tid) for every item in [0, n) on up to nt threads (the caller is tid 0) and
 * returns when all are done. Which thread runs an item never changes what it computes. A nested
 * or concurrent call runs its items on the caller alone. */
void rvg__par_run(int64_t n, int nt, rvg__par_fn fn, void *ctx);

/* An elementwise loop: runs fn(ctx, lo, hi) over [0, n) in pieces of `chunk` elements (the last
 * shorter) on up to rvg__par_threads() threads, or once over all of it on the caller when n <=
 * 2 * chunk or one thread is to be used. For loops whose results do not depend on the split. */
typedef void (*rvg__range_fn)(void *ctx, int64_t lo, int64_t hi);
void rvg__par_chunks(int64_t n, int64_t chunk, rvg__range_fn fn, void *ctx);

/* Threads a loop may use now: OpenMP's count (OMP_NUM_THREADS, omp_set_num_threads), 1 without
 * OpenMP or inside an OpenMP region. */
int rvg__par_threads(void);
/* rvg__pool_stats of the pool behind rvg__par_run (zeros before its first parallel phase). */
void rvg__par_stats(int64_t *phases, double *wait_ms);

#endif
