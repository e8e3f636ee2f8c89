/* model.c - building a RepVGG model from an architecture: blocks, the named parameter table,
 * arenas, initialisation and size accounting.
 *
 * Construction follows the official RepVGG code: stage0 is one block 3 -> min(64, 64a) with stride
 * 2; stages 1..4 have blocks[i] blocks of int(64a), int(128a), int(256a), int(512b) channels, the
 * first of each with stride 2. The view table is in PyTorch state_dict order, so a dump of it reads
 * like `model.state_dict().keys()`. Forward/backward live in forward.c and backward.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/parallel_impl.h"
#include "model_impl.h"
#include "rvg/ops.h"

/* Arena offsets are rounded up to 16 floats so every tensor starts on a 64-byte boundary. */
static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

typedef struct {
    rvg_model *m;
    int64_t cap;
    int64_t param_off, buffer_off;
    int64_t bn_cap;
} builder;

static int64_t add_view(builder *bd, const char *prefix, const char *suffix, rvg_param_kind kind,
                        int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    rvg_model *m = bd->m;
    if (m->n_views == bd->cap) {
        bd->cap = bd->cap ? bd->cap * 2 : 256;
        rvg_param *v = realloc(m->views, (size_t)bd->cap * sizeof *v);
        if (!v)
            return -1;
        m->views = v;
    }
    rvg_param *p = &m->views[m->n_views];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s%s%s", prefix, *prefix ? "." : "", suffix);
    p->kind = kind;
    p->ndim = ndim;
    int64_t dims[4] = {d0, d1, d2, d3};
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = dims[i];
        p->numel *= dims[i];
    }
    /* Offsets are stored in the pointer fields until the arenas exist (see finish()). */
    if (kind == RVG_BUFFER_RUNNING_MEAN || kind == RVG_BUFFER_RUNNING_VAR) {
        p->data = (float *)(intptr_t)(bd->buffer_off + 1);
        bd->buffer_off += round16(p->numel);
    } else {
        p->data = (float *)(intptr_t)(bd->param_off + 1);
        bd->param_off += round16(p->numel);
        m->n_trainable += p->numel;
    }
    return m->n_views++;
}

static int add_bn(builder *bd, bn_ref *bn, const char *prefix, int64_t K) {
    rvg_model *m = bd->m;
    if (m->n_bn == bd->bn_cap) {
        bd->bn_cap = bd->bn_cap ? bd->bn_cap * 2 : 64;
        char(*names)[64] = realloc(m->bn_names, (size_t)bd->bn_cap * sizeof *names);
        if (!names)
            return 0;
        m->bn_names = names;
    }
    snprintf(m->bn_names[m->n_bn], 64, "%s", prefix);
    bn->counter = m->n_bn++;
    bn->gamma = add_view(bd, prefix, "weight",
                         strstr(prefix, "rbr_identity") ? RVG_PARAM_ID_BN_WEIGHT
                                                        : RVG_PARAM_BN_WEIGHT,
                         1, K, 0, 0, 0);
    bn->beta = add_view(bd, prefix, "bias", RVG_PARAM_BIAS, 1, K, 0, 0, 0);
    bn->mean = add_view(bd, prefix, "running_mean", RVG_BUFFER_RUNNING_MEAN, 1, K, 0, 0, 0);
    bn->var = add_view(bd, prefix, "running_var", RVG_BUFFER_RUNNING_VAR, 1, K, 0, 0, 0);
    return bn->gamma >= 0 && bn->beta >= 0 && bn->mean >= 0 && bn->var >= 0;
}

static int add_block_views(builder *bd, block_impl *bi, rvg_form form) {
    const rvg_block *b = &bi->b;
    int64_t cg = b->C / b->G;
    char pre[64];
    int ok = 1;
    bi->w3 = bi->w1 = bi->wr = bi->br = -1;
    bi->se_dw = bi->se_db = bi->se_uw = bi->se_ub = -1;
    memset(&bi->bn0, 0xff, sizeof bi->bn0);
    if (b->se_hidden) {
        bi->se_dw = add_view(bd, b->prefix, "se.down.weight", RVG_PARAM_FC_WEIGHT, 4, b->se_hidden,
                             b->K, 1, 1);
        bi->se_db = add_view(bd, b->prefix, "se.down.bias", RVG_PARAM_BIAS, 1, b->se_hidden, 0, 0, 0);
        bi->se_uw = add_view(bd, b->prefix, "se.up.weight", RVG_PARAM_FC_WEIGHT, 4, b->K,
                             b->se_hidden, 1, 1);
        bi->se_ub = add_view(bd, b->prefix, "se.up.bias", RVG_PARAM_BIAS, 1, b->K, 0, 0, 0);
        ok &= bi->se_dw >= 0 && bi->se_db >= 0 && bi->se_uw >= 0 && bi->se_ub >= 0;
    }
    if (form == RVG_FORM_DEPLOY) {
        bi->wr = add_view(bd, b->prefix, "rbr_reparam.weight", RVG_PARAM_CONV_WEIGHT, 4, b->K, cg,
                          3, 3);
        bi->br = add_view(bd, b->prefix, "rbr_reparam.bias", RVG_PARAM_BIAS, 1, b->K, 0, 0, 0);
        return ok && bi->wr >= 0 && bi->br >= 0;
    }
    if (b->identity) {
        snprintf(pre, sizeof pre, "%s.rbr_identity", b->prefix);
        ok &= add_bn(bd, &bi->bn0, pre, b->K);
    }
    bi->w3 = add_view(bd, b->prefix, "rbr_dense.conv.weight", RVG_PARAM_CONV_WEIGHT, 4, b->K, cg,
                      3, 3);
    snprintf(pre, sizeof pre, "%s.rbr_dense.bn", b->prefix);
    ok &= add_bn(bd, &bi->bn3, pre, b->K);
    bi->w1 = add_view(bd, b->prefix, "rbr_1x1.conv.weight", RVG_PARAM_CONV_WEIGHT, 4, b->K, cg,
                      1, 1);
    snprintf(pre, sizeof pre, "%s.rbr_1x1.bn", b->prefix);
    ok &= add_bn(bd, &bi->bn1, pre, b->K);
    return ok && bi->w3 >= 0 && bi->w1 >= 0;
}

static rvg_status validate_arch(const rvg_arch *a) {
    if (a->in_ch < 1 || a->in_ch > 4096)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "input channels %lld out of range 1..4096",
                         (long long)a->in_ch);
    if (a->classes < 1 || a->classes > 1000000)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "classes %lld out of range 1..1000000",
                         (long long)a->classes);
    int64_t total = 0;
    for (int i = 0; i < 4; i++) {
        if (a->blocks[i] < 1 || !(a->width[i] > 0))
            return rvg_error(RVG_STATUS_BAD_ARGUMENT, "stage %d: %lld blocks, width %g", i + 1,
                             (long long)a->blocks[i], a->width[i]);
        total += a->blocks[i];
    }
    if (total > RVG_MAX_LAYERS)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "%lld blocks, at most %d", (long long)total,
                         RVG_MAX_LAYERS);
    return RVG_OK;
}

rvg_status rvg_model_new(rvg_model **out, const rvg_arch *arch, rvg_form form) {
    *out = NULL;
    RVG_TRY(validate_arch(arch));
    rvg_model *m = calloc(1, sizeof *m);
    if (!m)
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
    m->arch = *arch;
    m->form = form;
    int64_t n = 1 + arch->blocks[0] + arch->blocks[1] + arch->blocks[2] + arch->blocks[3];
    m->blocks = calloc((size_t)n, sizeof *m->blocks);
    if (!m->blocks)
        goto oom;
    /* Channel plan, exactly as the official constructor computes it (int() truncates). */
    int64_t in_planes = (int64_t)(64 * arch->width[0]);
    if (in_planes > 64)
        in_planes = 64;
    if (in_planes < 1)
        in_planes = 1;
    static const int64_t base[4] = {64, 128, 256, 512};
    block_impl *b = &m->blocks[0];
    snprintf(b->b.prefix, sizeof b->b.prefix, "stage0");
    b->b.C = arch->in_ch;
    b->b.K = in_planes;
    b->b.stride = 2;
    b->b.G = 1;
    int64_t layer = 1, bi = 1;
    for (int s = 0; s < 4; s++) {
        int64_t planes = (int64_t)(base[s] * arch->width[s]);
        if (planes < 1)
            planes = 1;
        for (int64_t j = 0; j < arch->blocks[s]; j++, layer++, bi++) {
            b = &m->blocks[bi];
            snprintf(b->b.prefix, sizeof b->b.prefix, "stage%d.%d", s + 1, (int)j);
            b->b.C = in_planes;
            b->b.K = planes;
            b->b.stride = j == 0 ? 2 : 1;
            int64_t g = arch->layer_groups[layer - 1];
            b->b.G = g > 1 ? g : 1;
            in_planes = planes;
        }
    }
    m->n_blocks = n;
    for (int64_t i = 0; i < n; i++) {
        rvg_block *blk = &m->blocks[i].b;
        if (blk->C % blk->G || blk->K % blk->G) {
            rvg_status st = rvg_error(RVG_STATUS_BAD_ARGUMENT,
                                      "%s: %lld -> %lld channels do not divide into %lld groups",
                                      blk->prefix, (long long)blk->C, (long long)blk->K,
                                      (long long)blk->G);
            rvg_model_free(m);
            return st;
        }
        blk->identity = blk->C == blk->K && blk->stride == 1;
        blk->se_hidden = arch->se ? blk->K / 16 : 0;
        if (arch->se && blk->se_hidden < 1) {
            rvg_status st = rvg_error(RVG_STATUS_BAD_ARGUMENT,
                                      "%s: squeeze-excitation needs at least 16 channels, has %lld",
                                      blk->prefix, (long long)blk->K);
            rvg_model_free(m);
            return st;
        }
    }
    builder bd = {m, 0, 0, 0, 0};
    for (int64_t i = 0; i < n; i++)
        if (!add_block_views(&bd, &m->blocks[i], form))
            goto oom;
    int64_t klast = m->blocks[n - 1].b.K;
    m->fc_w = add_view(&bd, "linear", "weight", RVG_PARAM_FC_WEIGHT, 2, arch->classes, klast, 0, 0);
    m->fc_b = add_view(&bd, "linear", "bias", RVG_PARAM_BIAS, 1, arch->classes, 0, 0, 0);
    if (m->fc_w < 0 || m->fc_b < 0)
        goto oom;
    m->n_params_arena = bd.param_off;
    m->n_buffers_arena = bd.buffer_off;
    m->params = rvg_alloc((size_t)bd.param_off * sizeof(float));
    /* Only the train form trains: a deploy-form model has no gradient or momentum arenas. */
    int trains = form == RVG_FORM_TRAIN;
    m->grads = trains ? rvg_alloc((size_t)bd.param_off * sizeof(float)) : NULL;
    m->momentum = trains ? rvg_alloc((size_t)bd.param_off * sizeof(float)) : NULL;
    m->buffers = rvg_alloc((size_t)bd.buffer_off * sizeof(float));
    m->bn_counters = calloc((size_t)(m->n_bn ? m->n_bn : 1), sizeof(int64_t));
    if (!m->params || (trains && (!m->grads || !m->momentum)) || !m->buffers || !m->bn_counters)
        goto oom;
    for (int64_t i = 0; i < m->n_views; i++) {
        rvg_param *p = &m->views[i];
        int64_t off = (int64_t)(intptr_t)p->data - 1;
        if (p->kind == RVG_BUFFER_RUNNING_MEAN || p->kind == RVG_BUFFER_RUNNING_VAR) {
            p->data = m->buffers + off;
            if (p->kind == RVG_BUFFER_RUNNING_VAR)
                for (int64_t k = 0; k < p->numel; k++)
                    p->data[k] = 1.0f;
        } else {
            p->data = m->params + off;
            p->grad = trains ? m->grads + off : NULL;
            p->momentum = trains ? m->momentum + off : NULL;
        }
    }
    *out = m;
    return RVG_OK;
oom:
    rvg_model_free(m);
    return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory building the model");
}

void rvg_model_free(rvg_model *m) {
    if (!m)
        return;
    free(m->blocks);
    free(m->views);
    rvg_free(m->params);
    rvg_free(m->grads);
    rvg_free(m->momentum);
    rvg_free(m->buffers);
    free(m->bn_counters);
    free(m->bn_names);
    free(m);
}

/* splitmix64: small, fast, good enough for initial weights (not cryptographic). */
static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float uniform(uint64_t *s, float bound) {
    double u = (double)(splitmix(s) >> 11) * (1.0 / 9007199254740992.0);
    return (float)((2.0 * u - 1.0) * bound);
}

void rvg_model_init(rvg_model *m, uint64_t seed) {
    uint64_t s = seed;
    for (int64_t i = 0; i < m->n_views; i++) {
        rvg_param *p = &m->views[i];
        switch (p->kind) {
        case RVG_PARAM_CONV_WEIGHT:
        case RVG_PARAM_FC_WEIGHT: {
            /* kaiming_uniform(a=sqrt(5)): bound = sqrt(6 / ((1 + a^2) fan_in)) = 1/sqrt(fan_in) */
            int64_t fan_in = p->numel / p->shape[0];
            float bound = 1.0f / sqrtf((float)fan_in);
            for (int64_t k = 0; k < p->numel; k++)
                p->data[k] = uniform(&s, bound);
            break;
        }
        case RVG_PARAM_BN_WEIGHT:
        case RVG_PARAM_ID_BN_WEIGHT:
            for (int64_t k = 0; k < p->numel; k++)
                p->data[k] = 1.0f;
            break;
        case RVG_PARAM_BIAS:
            memset(p->data, 0, (size_t)p->numel * sizeof(float));
            break;
        case RVG_BUFFER_RUNNING_MEAN:
            memset(p->data, 0, (size_t)p->numel * sizeof(float));
            break;
        case RVG_BUFFER_RUNNING_VAR:
            for (int64_t k = 0; k < p->numel; k++)
                p->data[k] = 1.0f;
            break;
        }
    }
    /* Biases of conv/linear layers get uniform(+-1/sqrt(fan_in)) as PyTorch does; BN betas stay 0. */
    for (int64_t bi = 0; bi < m->n_blocks; bi++) {
        block_impl *b = &m->blocks[bi];
        if (b->br >= 0) {
            float bound = 1.0f / sqrtf((float)(b->b.C / b->b.G * 9));
            for (int64_t k = 0; k < m->views[b->br].numel; k++)
                m->views[b->br].data[k] = uniform(&s, bound);
        }
        if (b->se_db >= 0) {
            float bd = 1.0f / sqrtf((float)b->b.K), bu = 1.0f / sqrtf((float)b->b.se_hidden);
            for (int64_t k = 0; k < m->views[b->se_db].numel; k++)
                m->views[b->se_db].data[k] = uniform(&s, bd);
            for (int64_t k = 0; k < m->views[b->se_ub].numel; k++)
                m->views[b->se_ub].data[k] = uniform(&s, bu);
        }
    }
    float fb = 1.0f / sqrtf((float)m->views[m->fc_w].shape[1]);
    for (int64_t k = 0; k < m->views[m->fc_b].numel; k++)
        m->views[m->fc_b].data[k] = uniform(&s, fb);
    if (m->momentum)
        memset(m->momentum, 0, (size_t)m->n_params_arena * sizeof(float));
    memset(m->bn_counters, 0, (size_t)(m->n_bn ? m->n_bn : 1) * sizeof(int64_t));
}

const rvg_arch *rvg_model_arch(const rvg_model *m) { return &m->arch; }
rvg_form rvg_model_form(const rvg_model *m) { return m->form; }
int64_t rvg_model_block_count(const rvg_model *m) { return m->n_blocks; }
const rvg_block *rvg_model_block(const rvg_model *m, int64_t i) { return &m->blocks[i].b; }
int64_t rvg_model_param_count(const rvg_model *m) { return m->n_views; }
rvg_param *rvg_model_param(rvg_model *m, int64_t i) { return &m->views[i]; }
const rvg_param *rvg_model_param_c(const rvg_model *m, int64_t i) { return &m->views[i]; }
int64_t rvg_model_num_params(const rvg_model *m) { return m->n_trainable; }

rvg_param *rvg_model_find(rvg_model *m, const char *name) {
    for (int64_t i = 0; i < m->n_views; i++)
        if (strcmp(m->views[i].name, name) == 0)
            return &m->views[i];
    return NULL;
}

float *rvg_model_params(rvg_model *m, int64_t *n) {
    *n = m->n_params_arena;
    return m->params;
}
float *rvg_model_grads(rvg_model *m, int64_t *n) {
    *n = m->n_params_arena;
    return m->grads;
}
float *rvg_model_momentum(rvg_model *m, int64_t *n) {
    *n = m->n_params_arena;
    return m->momentum;
}
float *rvg_model_buffers(rvg_model *m, int64_t *n) {
    *n = m->n_buffers_arena;
    return m->buffers;
}
int64_t *rvg_model_bn_counters(rvg_model *m, int64_t *n) {
    *n = m->n_bn;
    return m->bn_counters;
}

/* Zeroing is one write pass over every gradient (A0: 36 MB, a step's fixed cost whatever the
 * input size); the pool's threads share it in chunks. */
#define ZERO_CHUNK 65536

static void zero_range(void *ctx, int64_t lo, int64_t hi) {
    const rvg_model *m = ctx;
    memset(m->grads + lo, 0, (size_t)(hi - lo) * sizeof(float));
}

void rvg_model_zero_grad(rvg_model *m) {
    if (!m->grads)
        return;
    rvg__par_chunks(m->n_params_arena, ZERO_CHUNK, zero_range, m);
}

rvg_status rvg_model_check_input(const rvg_model *m, int64_t C, int64_t H, int64_t W) {
    if (C != m->arch.in_ch)
        return rvg_error(RVG_STATUS_BAD_SHAPE, "input has %lld channels, the model expects %lld",
                         (long long)C, (long long)m->arch.in_ch);
    if (H < 1 || W < 1 || H > 65536 || W > 65536)
        return rvg_error(RVG_STATUS_BAD_SHAPE, "input size %lldx%lld out of range",
                         (long long)H, (long long)W);
    return RVG_OK;
}

int64_t rvg_model_macs(const rvg_model *m, int64_t H, int64_t W) {
    int64_t macs = 0;
    for (int64_t i = 0; i < m->n_blocks; i++) {
        const rvg_block *b = &m->blocks[i].b;
        int64_t P = (H + 2 - 3) / b->stride + 1, Q = (W + 2 - 3) / b->stride + 1;
        int64_t cg = b->C / b->G;
        macs += b->K * cg * 9 * P * Q; /* the 3x3 (or fused) conv */
        if (m->form == RVG_FORM_TRAIN)
            macs += b->K * cg * P * Q; /* the 1x1 branch */
        if (b->se_hidden)
            macs += 2 * b->K * b->se_hidden;
        H = P;
        W = Q;
    }
    macs += m->views[m->fc_w].numel;
    return macs;
}
