/* dist_mpi.c - rvg/dist.h over MPI (compiled only when RVG_MPI=ON).
 *
 * A private duplicate of MPI_COMM_WORLD carries every collective, with MPI_ERRORS_RETURN so that a
 * failure comes back as RVG_STATUS_MPI with MPI's own message (the caller then aborts the job
 * with rvg_dist_abort, which is MPI_Abort and does kill every rank). Counts are chunked below
 * INT_MAX because MPI counts are int.
 * Not here: launching processes or any policy about what to reduce; see tools/train_loop.c.
 */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "rvg/dist.h"

static int joined;     /* this file called MPI_Init_thread (and so must finalize) */
static int have_comm; /* comm is valid */
static MPI_Comm comm;  /* duplicate of MPI_COMM_WORLD */
static int my_rank, my_world = 1;

#define MAX_BUCKETS 64 /* requests in flight at once; more buckets are done in rounds */

static rvg_status mpi_fail(int err, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "MPI error %d", err);
    return rvg_error(RVG_STATUS_MPI, "%s on rank %d of %d: %s", what, my_rank, my_world, msg);
}

int rvg_dist_available(void) { return 1; }

rvg_status rvg_dist_init(void) {
    int inited = 0, err;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided = 0;
        if ((err = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided)) != MPI_SUCCESS)
            return rvg_error(RVG_STATUS_MPI, "MPI_Init_thread failed (error %d)", err);
        joined = 1;
        if (provided < MPI_THREAD_FUNNELED)
            return rvg_error(RVG_STATUS_MPI,
                             "MPI gives thread level %d, the data loader threads need "
                             "MPI_THREAD_FUNNELED",
                             provided);
    }
    if (!have_comm) {
        if ((err = MPI_Comm_dup(MPI_COMM_WORLD, &comm)) != MPI_SUCCESS)
            return mpi_fail(err, "MPI_Comm_dup");
        have_comm = 1;
        MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
        MPI_Comm_rank(comm, &my_rank);
        MPI_Comm_size(comm, &my_world);
    }
    return RVG_OK;
}

void rvg_dist_finalize(void) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin)
        return;
    if (have_comm)
        MPI_Comm_free(&comm);
    have_comm = 0;
    if (joined)
        MPI_Finalize();
    joined = 0;
}

int rvg_dist_rank(void) { return my_rank; }
int rvg_dist_world(void) { return my_world; }

static rvg_status allreduce_sum(void *buf, int64_t n, MPI_Datatype type, size_t elem) {
    if (my_world == 1 || n <= 0)
        return RVG_OK;
    const int64_t bucket = (int64_t)(RVG_DIST_BUCKET_BYTES / elem);
    char *p = buf;
    MPI_Request req[MAX_BUCKETS];
    while (n > 0) {
        int nr = 0;
        for (; nr < MAX_BUCKETS && n > 0; nr++) {
            int cnt = (int)(n < bucket ? n : bucket);
            int err = MPI_Iallreduce(MPI_IN_PLACE, p, cnt, type, MPI_SUM, comm, &req[nr]);
            if (err != MPI_SUCCESS) {
                MPI_Waitall(nr, req, MPI_STATUSES_IGNORE);
                return mpi_fail(err, "MPI_Iallreduce");
            }
            p += (size_t)cnt * elem;
            n -= cnt;
        }
        int err = MPI_Waitall(nr, req, MPI_STATUSES_IGNORE);
        if (err != MPI_SUCCESS)
            return mpi_fail(err, "MPI_Waitall (allreduce)");
    }
    return RVG_OK;
}

rvg_status rvg_dist_allreduce_sum_f32(float *buf, int64_t n) {
    return allreduce_sum(buf, n, MPI_FLOAT, sizeof(float));
}

rvg_status rvg_dist_allreduce_sum_f64(double *buf, int64_t n) {
    return allreduce_sum(buf, n, MPI_DOUBLE, sizeof(double));
}

rvg_status rvg_dist_minmax_u64(uint64_t v, uint64_t *min, uint64_t *max) {
    *min = *max = v;
    if (my_world == 1)
        return RVG_OK;
    int err = MPI_Allreduce(&v, min, 1, MPI_UINT64_T, MPI_MIN, comm);
    if (err == MPI_SUCCESS)
        err = MPI_Allreduce(&v, max, 1, MPI_UINT64_T, MPI_MAX, comm);
    return err == MPI_SUCCESS ? RVG_OK : mpi_fail(err, "MPI_Allreduce (min/max)");
}

rvg_status rvg_dist_broadcast(void *buf, size_t bytes, int root) {
    if (my_world == 1)
        return RVG_OK;
    char *p = buf;
    while (bytes > 0) {
        int cnt = bytes > (size_t)(INT_MAX / 2) ? INT_MAX / 2 : (int)bytes;
        int err = MPI_Bcast(p, cnt, MPI_BYTE, root, comm);
        if (err != MPI_SUCCESS)
            return mpi_fail(err, "MPI_Bcast");
        p += cnt;
        bytes -= (size_t)cnt;
    }
    return RVG_OK;
}

rvg_status rvg_dist_barrier(void) {
    if (my_world == 1)
        return RVG_OK;
    int err = MPI_Barrier(comm);
    return err == MPI_SUCCESS ? RVG_OK : mpi_fail(err, "MPI_Barrier");
}

void rvg_dist_abort(int code) {
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (inited && !fin)
        MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}
