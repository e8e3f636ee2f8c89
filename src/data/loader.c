/* loader.c - the background batch loader: worker threads fill a ring of prefetched batches.
 *
 * Work is handed out a batch at a time: a worker claims this rank's next batch number b (only when
 * its ring slot b % depth has been consumed), augments its samples into that slot, and marks it
 * ready; the consumer takes batches strictly in order. Batch contents depend only on (seed, epoch,
 * sample index) - the permutation and every augmentation draw come from the counter-based stream -
 * so they do not depend on how many workers there are or which one was fastest.
 * Starting an epoch bumps a generation number, waits for workers busy on the old epoch to finish
 * (their output is discarded), and only then replaces the permutation they read.
 * Not here: cross-process sharding transport (each rank builds the same permutation locally),
 * pinned memory, or caching augmented samples.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/data_impl.h"
#include "rvg/tensor.h"

struct rvg_loader {
    const rvg_dataset *d;
    rvg_augment aug;
    int64_t batch, sample_floats; /* floats per sample: C * out_h * out_w */
    int shuffle, drop_last, rank, world, nworkers;
    uint64_t seed;
    int64_t slots;    /* global batch slots used per epoch (all ranks) */
    int64_t nbatches; /* this rank's batches per epoch */
    int64_t *perm;    /* (count) the current epoch's order */
    int64_t epoch;

    /* ring: slot k holds batch ring_batch[k] when ring_ready[k] */
    int depth;
    float **ring_x;   /* depth x (batch, C, out_h, out_w) */
    int32_t **ring_y; /* depth x (batch) */
    int64_t *ring_batch, *ring_n;
    int *ring_ready;

    pthread_mutex_t mu;
    pthread_cond_t cv_work;  /* workers wait for a claimable batch */
    pthread_cond_t cv_ready; /* the consumer waits for its next batch */
    pthread_cond_t cv_idle;  /* start_epoch waits for busy workers */
    int started, quit, active;
    uint64_t generation;
    int64_t next_claim, next_consume;
    rvg_status err;
    char errmsg[512];

    pthread_t *threads;
    int nthreads;
    rvg__aug_scratch *scratch; /* one per worker, plus one for workers == 0 */
};

typedef struct {
    rvg_loader *l;
    int id;
} worker_arg;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Global slot of this rank's batch b, and its samples [*lo, *hi) in the permutation. */
static void batch_range(const rvg_loader *l, int64_t b, int64_t *lo, int64_t *hi) {
    int64_t slot = (int64_t)l->rank + b * l->world;
    *lo = slot * l->batch;
    *hi = *lo + l->batch;
    if (*hi > l->d->count)
        *hi = l->d->count;
}

/* Augments this rank's batch b into x/y. Reads l->perm, which start_epoch replaces only when no
 * worker is active. */
static rvg_status fill_batch(rvg_loader *l, rvg__aug_scratch *s, int64_t b, float *x, int32_t *y,
                             int64_t *n) {
    int64_t lo, hi;
    batch_range(l, b, &lo, &hi);
    for (int64_t p = lo; p < hi; p++) {
        int64_t idx = l->perm[p];
        RVG_TRY(rvg__augment_one(x + (p - lo) * l->sample_floats, l->d, &l->aug, idx, l->seed,
                                 l->epoch, s));
        y[p - lo] = l->d->labels[idx];
    }
    *n = hi - lo;
    return RVG_OK;
}

static void *worker_main(void *arg) {
    rvg_loader *l = ((worker_arg *)arg)->l;
    rvg__aug_scratch *s = &l->scratch[((worker_arg *)arg)->id];
    free(arg);
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && !(l->started && l->err == RVG_OK && l->next_claim < l->nbatches &&
                             l->next_claim < l->next_consume + l->depth))
            pthread_cond_wait(&l->cv_work, &l->mu);
        if (l->quit)
            break;
        int64_t b = l->next_claim++;
        int slot = (int)(b % l->depth);
        uint64_t gen = l->generation;
        l->active++;
        pthread_mutex_unlock(&l->mu);

        int64_t n = 0;
        rvg_status st = fill_batch(l, s, b, l->ring_x[slot], l->ring_y[slot], &n);
        char msg[512];
        if (st != RVG_OK)
            snprintf(msg, sizeof msg, "%s", rvg_last_error());

        pthread_mutex_lock(&l->mu);
        l->active--;
        if (gen == l->generation) {
            if (st != RVG_OK) {
                if (l->err == RVG_OK) {
                    l->err = st;
                    memcpy(l->errmsg, msg, sizeof msg);
                }
            } else {
                l->ring_batch[slot] = b;
                l->ring_n[slot] = n;
                l->ring_ready[slot] = 1;
            }
            pthread_cond_broadcast(&l->cv_ready);
        }
        if (l->active == 0)
            pthread_cond_broadcast(&l->cv_idle);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

rvg_status rvg_loader_new(rvg_loader **out, const rvg_dataset *d, const rvg_augment *aug,
                          int64_t batch, int shuffle, int drop_last, uint64_t seed, int workers,
                          int rank, int world) {
    *out = NULL;
    if (batch < 1)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "loader: batch %lld < 1", (long long)batch);
    if (world < 1 || rank < 0 || rank >= world)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "loader: rank %d of world %d", rank, world);
    if (workers < 0 || workers > 256)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "loader: %d workers (0..256)", workers);
    RVG_TRY(rvg__augment_check(d, aug));

    rvg_loader *l = calloc(1, sizeof *l);
    if (!l)
        return rvg_error(RVG_STATUS_NO_MEMORY, "loader: out of memory");
    l->d = d;
    l->aug = *aug;
    l->batch = batch;
    l->shuffle = shuffle;
    l->drop_last = drop_last;
    l->seed = seed;
    l->rank = rank;
    l->world = world;
    l->nworkers = workers;
    l->sample_floats = d->c * aug->out_h * aug->out_w;
    if (drop_last) {
        l->nbatches = d->count / (batch * world);
        l->slots = l->nbatches * world;
    } else {
        l->slots = (d->count + batch - 1) / batch;
        l->nbatches = l->slots > rank ? (l->slots - rank + world - 1) / world : 0;
    }
    /* One slot per worker plus one being consumed keeps every worker busy. */
    l->depth = workers + 1 < 2 ? 2 : workers + 1;
    l->err = RVG_OK;
    rvg_status s = RVG_OK;
    int mu_ok = 0, cv_ok = 0;
    l->perm = malloc((size_t)d->count * sizeof *l->perm);
    l->ring_x = calloc((size_t)l->depth, sizeof *l->ring_x);
    l->ring_y = calloc((size_t)l->depth, sizeof *l->ring_y);
    l->ring_batch = calloc((size_t)l->depth, sizeof *l->ring_batch);
    l->ring_n = calloc((size_t)l->depth, sizeof *l->ring_n);
    l->ring_ready = calloc((size_t)l->depth, sizeof *l->ring_ready);
    l->scratch = calloc((size_t)workers + 1, sizeof *l->scratch);
    if (!l->perm || !l->ring_x || !l->ring_y || !l->ring_batch || !l->ring_n || !l->ring_ready ||
        !l->scratch) {
        s = rvg_error(RVG_STATUS_NO_MEMORY, "loader: out of memory");
        goto fail;
    }
    /* workers == 0 fills the caller's buffers directly and needs no ring. */
    for (int k = 0; k < l->depth && workers > 0; k++) {
        l->ring_x[k] = rvg_alloc((size_t)(batch * l->sample_floats) * sizeof(float));
        l->ring_y[k] = rvg_alloc((size_t)batch * sizeof(int32_t));
        if (!l->ring_x[k] || !l->ring_y[k]) {
            s = rvg_error(RVG_STATUS_NO_MEMORY,
                          "loader: out of memory for %d batches of %lld x %lld floats", l->depth,
                          (long long)batch, (long long)l->sample_floats);
            goto fail;
        }
    }
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
        s = rvg_error(RVG_STATUS_NO_MEMORY, "loader: cannot create a mutex");
        goto fail;
    }
    mu_ok = 1;
    if (pthread_cond_init(&l->cv_work, NULL) != 0 || pthread_cond_init(&l->cv_ready, NULL) != 0 ||
        pthread_cond_init(&l->cv_idle, NULL) != 0) {
        s = rvg_error(RVG_STATUS_NO_MEMORY, "loader: cannot create condition variables");
        goto fail;
    }
    cv_ok = 1;
    l->threads = calloc((size_t)workers + 1, sizeof *l->threads);
    if (!l->threads) {
        s = rvg_error(RVG_STATUS_NO_MEMORY, "loader: out of memory");
        goto fail;
    }
    for (int k = 0; k < workers; k++) {
        worker_arg *a = malloc(sizeof *a);
        if (!a) {
            s = rvg_error(RVG_STATUS_NO_MEMORY, "loader: out of memory");
            goto fail;
        }
        a->l = l;
        a->id = k + 1;
        if (pthread_create(&l->threads[k], NULL, worker_main, a) != 0) {
            free(a);
            s = rvg_error(RVG_STATUS_NO_MEMORY, "loader: cannot start worker thread %d", k);
            goto fail;
        }
        l->nthreads++;
    }
    *out = l;
    return RVG_OK;
fail:
    if (!mu_ok || !cv_ok) {
        /* No thread can have started: free by hand without touching uninitialised primitives. */
        if (cv_ok || mu_ok)
            pthread_mutex_destroy(&l->mu);
        for (int k = 0; l->ring_x && k < l->depth; k++) {
            rvg_free(l->ring_x[k]);
            rvg_free(l->ring_y[k]);
        }
        free(l->ring_x);
        free(l->ring_y);
        free(l->ring_batch);
        free(l->ring_n);
        free(l->ring_ready);
        free(l->scratch);
        free(l->perm);
        free(l);
        return s;
    }
    rvg_loader_free(l);
    return s;
}

rvg_status rvg_loader_start_epoch(rvg_loader *l, int64_t epoch) {
    if (epoch < 0)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "loader: epoch %lld < 0", (long long)epoch);
    pthread_mutex_lock(&l->mu);
    l->generation++;
    l->started = 0;
    while (l->active > 0)
        pthread_cond_wait(&l->cv_idle, &l->mu);
    /* No worker is running now and none can claim until started is set again. */
    const int64_t n = l->d->count;
    for (int64_t i = 0; i < n; i++)
        l->perm[i] = i;
    if (l->shuffle) {
        /* Fisher-Yates from the end, as torch.randperm's CPU loop; the stream is (seed, epoch). */
        rvg__crng r;
        rvg__crng_seed(&r, l->seed, (uint64_t)epoch, RVG__STREAM_PERM, 0);
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = rvg__crng_below(&r, i + 1);
            int64_t t = l->perm[i];
            l->perm[i] = l->perm[j];
            l->perm[j] = t;
        }
    }
    l->epoch = epoch;
    for (int k = 0; k < l->depth; k++) {
        l->ring_ready[k] = 0;
        l->ring_batch[k] = -1;
    }
    l->next_claim = l->next_consume = 0;
    l->err = RVG_OK;
    l->errmsg[0] = 0;
    l->started = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return RVG_OK;
}

rvg_status rvg_loader_set_augment(rvg_loader *l, const rvg_augment *aug) {
    RVG_TRY(rvg__augment_check(l->d, aug));
    if (l->d->c * aug->out_h * aug->out_w != l->sample_floats)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "loader: a new augmentation must keep the output size (%lldx%lld)",
                         (long long)l->aug.out_h, (long long)l->aug.out_w);
    pthread_mutex_lock(&l->mu);
    /* as in start_epoch: stop handing out work, then wait until no worker reads l->aug */
    l->generation++;
    l->started = 0;
    while (l->active > 0)
        pthread_cond_wait(&l->cv_idle, &l->mu);
    l->aug = *aug;
    pthread_mutex_unlock(&l->mu);
    return RVG_OK;
}

int64_t rvg_loader_batches_per_epoch(const rvg_loader *l) {
    return l->nbatches;
}

int64_t rvg_loader_sample_index(const rvg_loader *l, int64_t b, int64_t j) {
    if (!l->started || b < 0 || b >= l->nbatches || j < 0)
        return -1;
    int64_t lo, hi;
    batch_range(l, b, &lo, &hi);
    return lo + j < hi ? l->perm[lo + j] : -1;
}

rvg_status rvg_loader_next(rvg_loader *l, float *x, int32_t *y, int64_t *n, double *wait_s) {
    *n = 0;
    if (!l->started)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "loader: rvg_loader_start_epoch was not called");
    if (l->next_consume >= l->nbatches)
        return RVG_OK;
    if (l->nworkers == 0) {
        double t0 = now_s();
        RVG_TRY(fill_batch(l, &l->scratch[0], l->next_consume, x, y, n));
        l->next_consume++;
        if (wait_s)
            *wait_s += now_s() - t0;
        return RVG_OK;
    }
    pthread_mutex_lock(&l->mu);
    int64_t b = l->next_consume;
    int slot = (int)(b % l->depth);
    double t0 = 0;
    int waited = 0;
    while (l->err == RVG_OK && !(l->ring_ready[slot] && l->ring_batch[slot] == b)) {
        if (!waited) {
            t0 = now_s();
            waited = 1;
        }
        pthread_cond_wait(&l->cv_ready, &l->mu);
    }
    if (waited && wait_s)
        *wait_s += now_s() - t0;
    if (l->err != RVG_OK) {
        rvg_status st = l->err;
        char msg[512];
        memcpy(msg, l->errmsg, sizeof msg);
        pthread_mutex_unlock(&l->mu);
        return rvg_error(st, "%s", msg);
    }
    pthread_mutex_unlock(&l->mu);
    /* The slot cannot be reclaimed until next_consume moves past b, so copy without the lock. */
    int64_t cnt = l->ring_n[slot];
    memcpy(x, l->ring_x[slot], (size_t)(cnt * l->sample_floats) * sizeof(float));
    memcpy(y, l->ring_y[slot], (size_t)cnt * sizeof(int32_t));
    *n = cnt;
    pthread_mutex_lock(&l->mu);
    l->ring_ready[slot] = 0;
    l->ring_batch[slot] = -1;
    l->next_consume++;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return RVG_OK;
}

void rvg_loader_free(rvg_loader *l) {
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->quit = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    for (int k = 0; k < l->nthreads; k++)
        pthread_join(l->threads[k], NULL);
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_ready);
    pthread_cond_destroy(&l->cv_idle);
    pthread_mutex_destroy(&l->mu);
    for (int k = 0; k < l->depth; k++) {
        rvg_free(l->ring_x[k]);
        rvg_free(l->ring_y[k]);
    }
    for (int k = 0; k <= l->nworkers; k++)
        rvg__aug_scratch_free(&l->scratch[k]);
    free(l->ring_x);
    free(l->ring_y);
    free(l->ring_batch);
    free(l->ring_n);
    free(l->ring_ready);
    free(l->scratch);
    free(l->threads);
    free(l->perm);
    free(l);
}
