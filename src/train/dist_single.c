/* dist_single.c - the world of one process: what rvg/dist.h does in builds without MPI, and the
 * checksum hash every build shares.
 *
 * Every collective is the identity on a single rank, so the training loop runs the same code with
 * or without MPI. When RVG_MPI=ON, dist_mpi.c provides the collectives and this file contributes
 * only the hash (the #ifndef keeps the two from defining the same symbols).
 */
#include <stdlib.h>

#include "rvg/dist.h"

uint64_t rvg_dist_hash(const void *buf, size_t n) {
    const unsigned char *p = buf;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64-bit offset basis and prime */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#ifndef RVG_HAVE_MPI

int rvg_dist_available(void) { return 0; }
rvg_status rvg_dist_init(void) { return RVG_OK; }
void rvg_dist_finalize(void) {}
int rvg_dist_rank(void) { return 0; }
int rvg_dist_world(void) { return 1; }

rvg_status rvg_dist_allreduce_sum_f32(float *buf, int64_t n) {
    (void)buf;
    (void)n;
    return RVG_OK;
}

rvg_status rvg_dist_allreduce_sum_f64(double *buf, int64_t n) {
    (void)buf;
    (void)n;
    return RVG_OK;
}

rvg_status rvg_dist_minmax_u64(uint64_t v, uint64_t *min, uint64_t *max) {
    *min = *max = v;
    return RVG_OK;
}

rvg_status rvg_dist_broadcast(void *buf, size_t bytes, int root) {
    (void)buf;
    (void)bytes;
    (void)root;
    return RVG_OK;
}

rvg_status rvg_dist_barrier(void) { return RVG_OK; }

void rvg_dist_abort(int code) { exit(code); }

#endif
