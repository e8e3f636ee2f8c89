/* model_impl.h - the inside of rvg_model and rvg_plan, shared by the files in src/model only.
 *
 * A block records the indices of its tensors in the model's view table (-1 when absent), so
 * forward, backward, reparam and I/O all address parameters the same way.
 */
#ifndef RVG_MODEL_IMPL_H
#define RVG_MODEL_IMPL_H

#include "rvg/model.h"

/* One BatchNorm: views of gamma, beta, running mean, running var, and its counter. */
typedef struct {
    int64_t gamma, beta, mean, var; /* view indices */
    int64_t counter;                /* index into bn_counters */
} bn_ref;

typedef struct {
    rvg_block b;
    /* train form */
    int64_t w3, w1; /* conv weights (K, C/G, 3, 3) and (K, C/G, 1, 1) */
    bn_ref bn3, bn1, bn0;  /* bn0 valid only when b.identity */
    /* deploy form */
    int64_t wr, br; /* rbr_reparam weight and bias */
    /* squeeze-excitation (both forms), -1 when absent */
    int64_t se_dw, se_db, se_uw, se_ub;
} block_impl;

struct rvg_model {
    rvg_arch arch;
    rvg_form form;
    int64_t n_blocks;
    block_impl *blocks;
    int64_t fc_w, fc_b; /* linear.weight (classes, K_last), linear.bias */
    rvg_param *views;
    int64_t n_views;
    float *params, *grads, *momentum, *buffers;
    int64_t n_params_arena, n_buffers_arena; /* floats, padded */
    int64_t n_trainable;                     /* scalars, unpadded */
    int64_t *bn_counters;
    int64_t n_bn;
    char (*bn_names)[64]; /* prefix of each BN, for num_batches_tracked keys */
    rvg_bn_allreduce_fn bn_sync; /* SyncBatchNorm hook (rvg_model_set_bn_sync); NULL = local BN */
    void *bn_sync_ctx;
};

/* Per-block activation buffers of a plan (float offsets into the plan's arena). */
typedef struct {
    int64_t H, W, P, Q;
    float *z3, *z1;       /* conv outputs before BN (N, K, P, Q) */
    float *s;             /* branch sum before SE / ReLU (N, K, P, Q) */
    float *out;           /* block output after ReLU (N, K, P, Q) */
    float *mean3, *istd3, *mean1, *istd1, *mean0, *istd0; /* saved BN statistics (K) */
    float *se_m, *se_h, *se_g; /* SE pooled (N,K), hidden (N,hid), gate (N,K) */
    float *keep; /* train form, fast path: the 3x3's transformed weights from the forward for the
                  * backward (rvg__conv2d_3x3_1x1_keep_floats), NULL when its path has none */
} block_act;

struct rvg_plan {
    const rvg_model *model;
    int64_t N, C, H, W;
    block_act *acts;
    float *pooled;  /* (N, K_last) */
    float *logits;  /* (N, classes) */
    float *dbuf[2]; /* backward ping-pong of the largest activation */
    float *dz;      /* BN-backward scratch, largest activation */
    float *dz1;     /* second BN-backward scratch (fused path: 1x1 branch) */
    float *ds;      /* branch-sum gradient, largest activation */
    float *dse;     /* SE scratch (N, max K) x 3 */
    double *bn_buf; /* per-channel BN sums (fused path): 4 * max K + 16 doubles */
    void *work;     /* conv workspace */
    size_t work_bytes;
    float *arena;
    size_t arena_bytes;
    int64_t last_n; /* images in the last training forward; 0 when none */
    const float *input; /* the x of the last training forward (borrowed) */
    rvg_block_hook_fn hook; /* rvg_plan_set_block_hook */
    void *hook_ctx;
};

#endif
