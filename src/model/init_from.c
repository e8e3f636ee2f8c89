/* init_from.c - start a train-form model from another run's or a published checkpoint's weights
 * (fine-tuning, transfer learning): `repvgg train --init W`.
 *
 * The source must describe the same network: every tensor the model has, under the same name and
 * with the same shape, and nothing else. Two differences are what fine-tuning is for and are
 * bridged instead of refused:
 * - another class count (ImageNet's 1000 -> a data set's 10): the classifier keeps the model's
 *   own fresh initialisation;
 * - another input channel count (RGB weights -> grey images): the stem's kernels are adapted the
 *   way timm adapts a pretrained first convolution, so that a grey image gives the stem the
 *   response an RGB image of equal channels would have: for 1 channel the sum over the source's
 *   channels; for C channels, channel c takes source channel c mod S, scaled by S / C.
 * Everything is checked before anything is written, so a refused source leaves the model as it
 * was (only running out of memory half-way could leave it partly written).
 */
#include <stdio.h>
#include <string.h>

#include "model_impl.h"
#include "rvg/io.h"

static const char *const stem_names[] = {"stage0.rbr_dense.conv.weight",
                                         "stage0.rbr_1x1.conv.weight"};

static int is_stem_kernel(const char *name) {
    return strcmp(name, stem_names[0]) == 0 || strcmp(name, stem_names[1]) == 0;
}

static int is_head(const char *name) {
    return strcmp(name, "linear.weight") == 0 || strcmp(name, "linear.bias") == 0;
}

static int is_float(rvg_dtype t) {
    return t == RVG_DTYPE_F32 || t == RVG_DTYPE_F16 || t == RVG_DTYPE_BF16 || t == RVG_DTYPE_F64;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? "x%lld" : "%lld", (long long)shape[i]);
    if (ndim == 0)
        snprintf(buf, n, "scalar");
}

/* The stem kernel (K, S, r, r) of the source adapted to (K, C, r, r) (see the banner). */
static void adapt_stem(float *dst, const float *src, int64_t K, int64_t S, int64_t C, int64_t rr) {
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t t = 0; t < rr; t++) {
                float v;
                if (C == 1) {
                    v = 0.0f;
                    for (int64_t s = 0; s < S; s++)
                        v += src[(k * S + s) * rr + t];
                } else {
                    v = src[(k * S + c % S) * rr + t] * ((float)S / (float)C);
                }
                dst[(k * C + c) * rr + t] = v;
            }
}

rvg_status rvg_model_init_from(rvg_model *m, const rvg_dict *d, rvg_init_report *rep) {
    rvg_init_report r;
    memset(&r, 0, sizeof r);
    if (m->form != RVG_FORM_TRAIN)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "only a train-form model can be initialised "
                                                  "from weights for training");
    rvg_arch a;
    rvg_form form;
    char arch[256];
    RVG_TRY(rvg_arch_infer(&a, &form, d));
    rvg_arch_format(&a, arch, sizeof arch);
    if (form != RVG_FORM_TRAIN)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                         "the weights are a deploy-form %s: training starts from the train form "
                         "(the branches cannot be recovered from the fused kernels)",
                         arch);
    r.src_classes = a.classes;
    r.src_in_ch = a.in_ch;

    /* Pass 1: check every view against the source. */
    for (int64_t i = 0; i < m->n_views; i++) {
        const rvg_param *p = &m->views[i];
        const rvg_tensor *t = rvg_dict_get(d, p->name);
        if (!t)
            return rvg_error(RVG_STATUS_BAD_NAME, "the weights (a %s) have no '%s'", arch, p->name);
        if (!is_float(t->dtype))
            return rvg_error(RVG_STATUS_BAD_FORMAT, "'%s' in the weights is %s, not a float type",
                             p->name, rvg_dtype_name(t->dtype));
        int same = t->ndim == p->ndim;
        for (int k = 0; same && k < p->ndim; k++)
            same = t->shape[k] == p->shape[k];
        if (same)
            continue;
        /* the bridged differences: the classifier's rows, the stem's input channels */
        int rows_only = t->ndim == p->ndim && p->ndim >= 1;
        for (int k = 1; rows_only && k < p->ndim; k++)
            rows_only = t->shape[k] == p->shape[k];
        int chans_only = t->ndim == 4 && p->ndim == 4 && t->shape[0] == p->shape[0] &&
                         t->shape[2] == p->shape[2] && t->shape[3] == p->shape[3];
        if (is_head(p->name) && rows_only) {
            r.head_reset = 1;
            continue;
        }
        if (is_stem_kernel(p->name) && chans_only) {
            r.stem_adapted = 1;
            continue;
        }
        char want[64], have[64];
        shape_str(want, sizeof want, p->ndim, p->shape);
        shape_str(have, sizeof have, t->ndim, t->shape);
        char mine[256];
        rvg_arch_format(&m->arch, mine, sizeof mine);
        return rvg_error(RVG_STATUS_BAD_SHAPE,
                         "'%s' is %s in the weights (a %s) but %s in the model (%s): not the "
                         "same network",
                         p->name, have, arch, want, mine);
    }
    for (int64_t i = 0; i < rvg_dict_count(d); i++) {
        const rvg_tensor *t = rvg_dict_at(d, i);
        const char *dot = strrchr(t->name, '.');
        if (dot && strcmp(dot, ".num_batches_tracked") == 0)
            continue;
        if (!rvg_model_find(m, t->name)) {
            char mine[256];
            rvg_arch_format(&m->arch, mine, sizeof mine);
            return rvg_error(RVG_STATUS_BAD_NAME,
                             "the weights (a %s) have '%s', which the model (%s) does not: not "
                             "the same network",
                             arch, t->name, mine);
        }
    }

    /* Pass 2: copy. rvg_dict_get_f32 converts F16/BF16/F64 sources. */
    for (int64_t i = 0; i < m->n_views; i++) {
        rvg_param *p = &m->views[i];
        const rvg_tensor *t = rvg_dict_get(d, p->name);
        int stem = r.stem_adapted && is_stem_kernel(p->name);
        if (r.head_reset && is_head(p->name))
            continue;
        float *tmp;
        RVG_TRY(rvg_dict_get_f32(d, p->name, t->ndim, t->shape, &tmp));
        if (stem)
            adapt_stem(p->data, tmp, p->shape[0], t->shape[1], p->shape[1],
                       p->shape[2] * p->shape[3]);
        else
            memcpy(p->data, tmp, (size_t)p->numel * sizeof(float));
        rvg_free(tmp);
        r.copied++;
    }
    for (int64_t b = 0; b < m->n_bn; b++) {
        char key[96];
        snprintf(key, sizeof key, "%s.num_batches_tracked", m->bn_names[b]);
        const rvg_tensor *t = rvg_dict_get(d, key);
        if (t && t->dtype == RVG_DTYPE_I64 && t->nbytes == 8)
            memcpy(&m->bn_counters[b], t->data, 8);
    }
    if (rep)
        *rep = r;
    return RVG_OK;
}
