/* dist.h - the few collective operations data-parallel training needs, over MPI or over a world of
 * one process.
 *
 * Worked example (what `repvgg train` does under mpirun):
 *
 *     RVG_TRY(rvg_dist_init());                    // MPI_Init_thread, or nothing without MPI
 *     int r = rvg_dist_rank(), w = rvg_dist_world();
 *     rvg_dist_broadcast(params, n * sizeof(float), 0);   // rank 0's initial weights everywhere
 *     ... forward / backward on this rank's shard of the batch ...
 *     rvg_dist_allreduce_sum_f32(grads, n);        // then scale by 1/w: the mean over the batch
 *     rvg_dist_finalize();
 *
 * Two implementations share this header: src/train/dist_mpi.c (built when RVG_MPI=ON, which
 * defines RVG_HAVE_MPI) and src/train/dist_single.c (otherwise: rank 0 of a world of 1, every
 * collective a no-op). Only tools call these; the library's training code never does, except
 * through the BN-synchronisation hook the tool installs (rvg_model_set_bn_sync in model.h).
 * All calls come from one thread (the training thread), as MPI_THREAD_FUNNELED requires.
 *
 * Errors: the MPI version installs MPI_ERRORS_RETURN on its communicator, so a failed collective
 * returns RVG_STATUS_MPI with MPI's message rather than killing the process silently; a rank that
 * dies is handled by the launcher (mpirun terminates the job), see docs/distributed.md.
 * Not here: process launch, hostfiles, anything about which machine a rank runs on.
 */
#ifndef RVG_DIST_H
#define RVG_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the library was built with MPI (RVG_MPI=ON), else 0. */
int rvg_dist_available(void);

/* Joins the job (MPI_Init_thread with MPI_THREAD_FUNNELED); idempotent. Without MPI: nothing.
 * Errors: RVG_STATUS_MPI when MPI cannot start or lacks the thread level. */
rvg_status rvg_dist_init(void);
/* Leaves the job (MPI_Finalize) if rvg_dist_init joined it; idempotent. */
void rvg_dist_finalize(void);

/* This process's rank in [0, world) and the number of processes (0 and 1 before init). */
int rvg_dist_rank(void);
int rvg_dist_world(void);

/* In-place element-wise sum over all ranks of buf (n floats / doubles); every rank gets the same
 * result. The float version cuts buf into buckets of at most RVG_DIST_BUCKET_BYTES and starts a
 * non-blocking reduction per bucket before waiting for all of them, so MPI can pipeline them
 * (the model's gradient arena is one contiguous buffer). */
#define RVG_DIST_BUCKET_BYTES ((size_t)8 << 20)
rvg_status rvg_dist_allreduce_sum_f32(float *buf, int64_t n);
rvg_status rvg_dist_allreduce_sum_f64(double *buf, int64_t n);
/* Minimum and maximum of v over all ranks (for comparing checksums). */
rvg_status rvg_dist_minmax_u64(uint64_t v, uint64_t *min, uint64_t *max);
/* Copies root's bytes of buf to every other rank (in chunks below 2 GiB, MPI's int count). */
rvg_status rvg_dist_broadcast(void *buf, size_t bytes, int root);
rvg_status rvg_dist_barrier(void);
/* Ends the whole job with this exit code (MPI_Abort on the world); without MPI, exit(code).
 * For tools only: the way out when one rank fails and the others would wait forever in a
 * collective. Does not return. */
void rvg_dist_abort(int code);

/* 64-bit FNV-1a hash of n bytes (the per-epoch parameter checksum). */
uint64_t rvg_dist_hash(const void *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
