/* model.h - the RepVGG network: architectures, parameters, forward/backward, re-parameterisation.
 *
 * Worked example (train a step, convert, run the deploy form):
 *
 *     rvg_arch arch;
 *     rvg_arch_parse(&arch, "A0");           // or "B1g4", "D2se", "custom:blocks=1,1,1,1:width=..."
 *     arch.in_ch = 1; arch.classes = 10;
 *     rvg_model *m;  rvg_model_new(&m, &arch, RVG_FORM_TRAIN);  rvg_model_init(m, 42);
 *     rvg_plan *p;   rvg_plan_new(&p, m, 64, 28, 28);           // activations for batch 64, 28x28
 *     const float *logits;
 *     rvg_model_forward(m, p, x, 64, 1, &logits);               // training mode: batch BN stats
 *     float loss = rvg_softmax_xent_ref(dlogits, logits, targets, 64, 10);
 *     rvg_model_zero_grad(m);  rvg_model_backward(m, p, dlogits);
 *     ...  (rvg_sgd_step in train.h)
 *     rvg_model *d;  rvg_model_reparam(m, &d);                  // new deploy-form model
 *     rvg_model_save(d, "deploy.safetensors");
 *
 * Layout: every trainable tensor lives in one 64-byte aligned arena (params), with gradients and
 * momentum in two more arenas of identical layout; BN running statistics live in a buffer arena.
 * A table of named views (PyTorch state_dict names) indexes all of them, so SGD is one loop and a
 * checkpoint is a walk over the table.
 */
#ifndef RVG_MODEL_H
#define RVG_MODEL_H

#include <stdint.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RVG_MAX_LAYERS 128 /* blocks after stage0; the largest preset (D2se) has 47 */

/* An architecture: the paper's table (SPEC §3) or a custom one. */
typedef struct {
    char name[32];                        /* "A0", ..., "D2se", or "custom" */
    int64_t blocks[4];                    /* blocks in stage1..stage4 */
    double width[4];                      /* width multipliers of stage1..4 (a, a, a, b) */
    int64_t layer_groups[RVG_MAX_LAYERS]; /* groups of layer i+1 (1-based from stage1's first
                                             block, as the official code counts); 0 or 1 = dense */
    int se;                               /* squeeze-excitation in every block (D2se) */
    int64_t in_ch;                        /* input channels (3 for ImageNet) */
    int64_t classes;                      /* classifier outputs (1000 for ImageNet) */
} rvg_arch;

/* Fills *a from a name: A0 A1 A2 B0 B1 B1g2 B1g4 B2 B2g4 B3 B3g4 D2se (case-insensitive, an
 * optional "RepVGG-" prefix allowed), or a custom spec
 *   custom:blocks=2,4,14,1:width=0.75,0.75,0.75,2.5[:groups=G@L1,L2,...][:se=1]
 * in_ch = 3 and classes = 1000 unless the caller changes them. */
rvg_status rvg_arch_parse(rvg_arch *a, const char *spec);
/* Canonical string of an architecture ("A0", or the full custom spec), which rvg_arch_parse reads
 * back. Writes at most n bytes. */
void rvg_arch_format(const rvg_arch *a, char *buf, size_t n);
/* Names of the presets, NULL-terminated. */
const char *const *rvg_arch_presets(void);

typedef enum { RVG_FORM_TRAIN = 0, RVG_FORM_DEPLOY = 1 } rvg_form;

/* One block of the network, as built from an arch. */
typedef struct {
    char prefix[32];   /* "stage0", "stage3.11" */
    int64_t C, K;      /* in / out channels */
    int64_t stride, G; /* 1 or 2; groups */
    int identity;      /* train form has the identity BN branch (C == K and stride 1) */
    int64_t se_hidden; /* 0 = no SE, else K / 16 */
} rvg_block;

/* What kind of tensor a named view is; decides weight decay and what a checkpoint holds. */
typedef enum {
    RVG_PARAM_CONV_WEIGHT,   /* conv kernels (3x3, 1x1, reparam) */
    RVG_PARAM_BN_WEIGHT,     /* gamma of the 3x3 / 1x1 branch BNs */
    RVG_PARAM_ID_BN_WEIGHT,  /* gamma of the identity BN (official: decayed) */
    RVG_PARAM_BIAS,          /* every bias and BN beta */
    RVG_PARAM_FC_WEIGHT,     /* linear and SE weights */
    RVG_BUFFER_RUNNING_MEAN, /* BN running mean (buffer arena) */
    RVG_BUFFER_RUNNING_VAR,  /* BN running var (buffer arena) */
} rvg_param_kind;

/* A named view into the model's arenas. */
typedef struct {
    char name[64];     /* the PyTorch state_dict key */
    rvg_param_kind kind;
    int ndim;
    int64_t shape[4];
    int64_t numel;
    float *data;       /* into the param or buffer arena */
    float *grad;       /* into the grad arena; NULL for buffers and in the deploy form */
    float *momentum;   /* into the momentum arena; NULL for buffers and in the deploy form */
} rvg_param;

typedef struct rvg_model rvg_model;

/* New model of the given form with zero parameters and BN statistics 0/1. Caller frees. */
rvg_status rvg_model_new(rvg_model **out, const rvg_arch *arch, rvg_form form);
void rvg_model_free(rvg_model *m);
/* PyTorch's default initialisation (kaiming-uniform with a = sqrt(5) for conv and linear weights,
 * uniform(+-1/sqrt(fan_in)) for biases, BN gamma 1 and beta 0), from a deterministic generator. */
void rvg_model_init(rvg_model *m, uint64_t seed);

const rvg_arch *rvg_model_arch(const rvg_model *m);
rvg_form rvg_model_form(const rvg_model *m);
int64_t rvg_model_block_count(const rvg_model *m);
const rvg_block *rvg_model_block(const rvg_model *m, int64_t i);
/* Named views, in state_dict order (buffers included). */
int64_t rvg_model_param_count(const rvg_model *m);
rvg_param *rvg_model_param(rvg_model *m, int64_t i);
const rvg_param *rvg_model_param_c(const rvg_model *m, int64_t i);
/* The view called name, or NULL. */
rvg_param *rvg_model_find(rvg_model *m, const char *name);
/* Number of trainable scalars (what sum(p.numel() for p in model.parameters()) gives). */
int64_t rvg_model_num_params(const rvg_model *m);
/* The raw arenas (n floats each): params, grads and momentum share one layout. A deploy-form
 * model has no grads or momentum (NULL): only the train form trains. */
float *rvg_model_params(rvg_model *m, int64_t *n);
float *rvg_model_grads(rvg_model *m, int64_t *n);
float *rvg_model_momentum(rvg_model *m, int64_t *n);
float *rvg_model_buffers(rvg_model *m, int64_t *n);
/* num_batches_tracked of every BN, in view order (train form). */
int64_t *rvg_model_bn_counters(rvg_model *m, int64_t *n);
void rvg_model_zero_grad(rvg_model *m);

/* Multiply-accumulates of one forward pass of one image at H x W (convs, SE and linear). */
int64_t rvg_model_macs(const rvg_model *m, int64_t H, int64_t W);
/* Output spatial size after the five stride-2 stages; BAD_SHAPE if the input is too small. */
rvg_status rvg_model_check_input(const rvg_model *m, int64_t C, int64_t H, int64_t W);

/* ---- weights I/O ------------------------------------------------------------------------------ */

/* Copies the model into a new dictionary keyed by the official names, with the architecture in
 * the metadata (repvgg.arch, repvgg.form, repvgg.in_ch, repvgg.classes). */
rvg_status rvg_model_to_dict(const rvg_model *m, rvg_dict **out);
/* Builds a model from a dictionary. Uses the metadata when present; otherwise infers form, blocks,
 * widths, groups, SE, input channels and classes from the tensor names and shapes. Every expected
 * tensor must be present with the expected shape; unexpected tensors are an error. */
rvg_status rvg_model_from_dict(rvg_model **out, const rvg_dict *d);
/* Infers only the architecture and form. */
rvg_status rvg_arch_infer(rvg_arch *a, rvg_form *form, const rvg_dict *d);
/* Save writes safetensors (atomically); load reads safetensors or PyTorch .pth, official or timm
 * names (rvg_weights_load_dict in io.h). */
rvg_status rvg_model_save(const rvg_model *m, const char *path);
rvg_status rvg_model_load(rvg_model **out, const char *path);

/* What rvg_model_init_from did. */
typedef struct {
    int64_t copied;      /* tensors taken from the source (the adapted stem kernels included) */
    int head_reset;      /* the classifier kept the model's values: the source has src_classes */
    int stem_adapted;    /* the stem's kernels were adapted from src_in_ch input channels */
    int64_t src_classes; /* the source's class count and input channels */
    int64_t src_in_ch;
} rvg_init_report;

/* Fine-tuning: overwrites train-form model m with the train-form weights in d (official names,
 * as rvg_weights_load_dict gives them) of the same network, BN statistics included. Two
 * differences are bridged: a classifier with another class count keeps m's values (call
 * rvg_model_init first), and stem kernels with other input channels are adapted as timm adapts
 * pretrained weights (1 channel: the sum over the source's S channels; C channels: channel c
 * takes source channel c mod S, times S/C). Any other difference (a missing, extra or
 * differently shaped tensor, deploy-form weights) is an error, and m is left unchanged. rep
 * (may be NULL) says what was done. */
rvg_status rvg_model_init_from(rvg_model *m, const rvg_dict *d, rvg_init_report *rep);

/* ---- forward / backward ------------------------------------------------------------------------ */

/* Activation and scratch memory for batches of up to N images of C x H x W, planned once.
 * A plan is tied to the model it was made for. */
typedef struct rvg_plan rvg_plan;
rvg_status rvg_plan_new(rvg_plan **out, const rvg_model *m, int64_t N, int64_t H, int64_t W);
void rvg_plan_free(rvg_plan *p);
/* Bytes of activation and scratch memory the plan holds. */
size_t rvg_plan_bytes(const rvg_plan *p);

/* Forward pass of n <= N images x (n, C, H, W). training = 1 (train form only): BN uses batch
 * statistics and updates running statistics, and activations are kept for backward; training = 0:
 * inference (BN from running statistics). *logits points into the plan: (n, classes). */
rvg_status rvg_model_forward(rvg_model *m, rvg_plan *p, const float *x, int64_t n, int training,
                             const float **logits);
/* Where a block hook is called: after the ReLU of a block's squeeze-excitation (its hidden vector,
 * (n, K/16)), and after the block's own ReLU (its output, (n, K, P, Q)). */
typedef enum { RVG_HOOK_SE_HIDDEN = 0, RVG_HOOK_OUTPUT = 1 } rvg_hook_point;

/* Called during forward with a ReLU's output (numel floats), in place; NULL turns it off. For
 * inspecting features, and for the PyTorch parity test, which makes a ReLU whose pre-activation
 * lies within rounding of zero go the reference's way. An edit must keep values >= 0 and be small:
 * in training mode backward reads the ReLU's mask as value > 0, and what follows reads the values.
 * ctx is borrowed. */
typedef void (*rvg_block_hook_fn)(void *ctx, int64_t block, rvg_hook_point at, float *data,
                                  int64_t numel, int training);
void rvg_plan_set_block_hook(rvg_plan *p, rvg_block_hook_fn fn, void *ctx);

/* Backward of the last training forward, from dlogits (n, classes): accumulates into the
 * gradient arena (call rvg_model_zero_grad first). The x given to that forward must still be valid:
 * stage0's weight gradient reads it, and the weights must be those it ran with: the plan keeps
 * their transformed forms (Winograd's, the tiny planes' matrices) from it for the input
 * gradients. dx (n, C, H, W) receives the input gradient when not NULL (overwritten). */
rvg_status rvg_model_backward(rvg_model *m, rvg_plan *p, const float *dlogits, float *dx);

/* ---- synchronised BatchNorm (data-parallel training) ------------------------------------- */

/* Sums n doubles element-wise over every process of a data-parallel job, in place, with the same
 * result on every process (an MPI_Allreduce with MPI_SUM). */
typedef void (*rvg_bn_allreduce_fn)(double *buf, int64_t n, void *ctx);

/* Makes training-mode BN use statistics over the whole distributed batch (SyncBatchNorm): forward
 * sums the per-channel count, sum and squared deviation over processes through allreduce, and
 * backward sums sum(ds) and sum(ds * (x - mean)), so every process normalises with the global mean
 * and biased variance and the running variance gets the global unbiased one. dgamma/dbeta stay
 * local sums (the caller's gradient allreduce adds them up, as with every other gradient).
 * allreduce = NULL turns it off: results are then bit-identical to a model that never had a hook.
 * ctx is borrowed. Only the fast path implements it: with RVG_FORCE_REF set, a training forward
 * fails with RVG_STATUS_UNSUPPORTED while a hook is installed. Every process must call forward and
 * backward with the same architecture and in lockstep, or allreduce will wait forever. */
void rvg_model_set_bn_sync(rvg_model *m, rvg_bn_allreduce_fn allreduce, void *ctx);

/* ---- re-parameterisation ------------------------------------------------------------------------ */

/* New deploy-form model equivalent to the train-form model m with BN in inference mode
 * (SPEC §2). m is unchanged. Fails with BAD_ARGUMENT if m is already in deploy form. */
rvg_status rvg_model_reparam(const rvg_model *m, rvg_model **deploy);

#ifdef __cplusplus
}
#endif
#endif
