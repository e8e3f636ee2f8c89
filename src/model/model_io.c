/* model_io.c - models to and from tensor dictionaries (and so safetensors files).
 *
 * Names are the official PyTorch state_dict keys (SPEC §4). The architecture travels in the
 * safetensors __metadata__ (repvgg.arch, repvgg.form, repvgg.in_ch, repvgg.classes); a file
 * without it (as PyTorch code writes) is understood from tensor names and shapes alone: the form
 * from rbr_reparam vs rbr_dense, blocks per stage from the stageK.i prefixes, widths from the
 * channel counts, groups from the kernels' second dimension, SE from se.* tensors. A shape that
 * matches a preset is reported under the preset's name. Name mapping of `module.` prefixes and
 * timm checkpoints happens before this (src/io/names.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_impl.h"
#include "rvg/io.h"

rvg_status rvg_model_to_dict(const rvg_model *m, rvg_dict **out) {
    *out = NULL;
    rvg_dict *d = rvg_dict_new();
    if (!d)
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
    rvg_status st = RVG_OK;
    for (int64_t i = 0; i < m->n_views && st == RVG_OK; i++) {
        const rvg_param *p = &m->views[i];
        st = rvg_dict_add_f32(d, p->name, p->ndim, p->shape, p->data);
        if (st == RVG_OK && p->kind == RVG_BUFFER_RUNNING_VAR) {
            /* num_batches_tracked follows running_var, as in a PyTorch state_dict */
            size_t plen = strlen(p->name) - strlen(".running_var");
            for (int64_t b = 0; b < m->n_bn; b++) {
                if (strlen(m->bn_names[b]) == plen && strncmp(m->bn_names[b], p->name, plen) == 0) {
                    char key[96];
                    snprintf(key, sizeof key, "%s.num_batches_tracked", m->bn_names[b]);
                    st = rvg_dict_add(d, key, RVG_DTYPE_I64, 0, NULL, &m->bn_counters[b]);
                    break;
                }
            }
        }
    }
    char buf[512];
    rvg_arch_format(&m->arch, buf, sizeof buf);
    if (st == RVG_OK)
        st = rvg_dict_set_meta(d, "format", "pt");
    if (st == RVG_OK)
        st = rvg_dict_set_meta(d, "repvgg.arch", buf);
    if (st == RVG_OK)
        st = rvg_dict_set_meta(d, "repvgg.form", m->form == RVG_FORM_TRAIN ? "train" : "deploy");
    snprintf(buf, sizeof buf, "%lld", (long long)m->arch.in_ch);
    if (st == RVG_OK)
        st = rvg_dict_set_meta(d, "repvgg.in_ch", buf);
    snprintf(buf, sizeof buf, "%lld", (long long)m->arch.classes);
    if (st == RVG_OK)
        st = rvg_dict_set_meta(d, "repvgg.classes", buf);
    if (st != RVG_OK) {
        rvg_dict_free(d);
        return st;
    }
    *out = d;
    return RVG_OK;
}

static const rvg_tensor *get4(const rvg_dict *d, const char *prefix, const char *suffix) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", prefix, suffix);
    const rvg_tensor *t = rvg_dict_get(d, key);
    return t && t->ndim == 4 ? t : NULL;
}

static rvg_status parse_int_meta(const rvg_dict *d, const char *key, int64_t *v) {
    const char *s = rvg_dict_meta(d, key);
    if (!s)
        return RVG_OK;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end || x < 1)
        return rvg_error(RVG_STATUS_BAD_FORMAT, "metadata %s = '%s' is not a positive integer",
                         key, s);
    *v = x;
    return RVG_OK;
}

rvg_status rvg_arch_infer(rvg_arch *a, rvg_form *form, const rvg_dict *d) {
    memset(a, 0, sizeof *a);
    const char *fm = rvg_dict_meta(d, "repvgg.form");
    const rvg_tensor *s0r = get4(d, "stage0", "rbr_reparam.weight");
    const rvg_tensor *s0d = get4(d, "stage0", "rbr_dense.conv.weight");
    if (!s0r && !s0d)
        return rvg_error(RVG_STATUS_BAD_NAME,
                         "no stage0.rbr_dense.conv.weight or stage0.rbr_reparam.weight: "
                         "not a RepVGG state dict (after mapping module./timm names)");
    *form = s0r ? RVG_FORM_DEPLOY : RVG_FORM_TRAIN;
    if (fm && strcmp(fm, *form == RVG_FORM_TRAIN ? "train" : "deploy") != 0)
        return rvg_error(RVG_STATUS_BAD_FORMAT, "metadata says form '%s' but the tensors disagree",
                         fm);
    const char *wname = *form == RVG_FORM_TRAIN ? "rbr_dense.conv.weight" : "rbr_reparam.weight";
    const rvg_tensor *lin = rvg_dict_get(d, "linear.weight");
    if (!lin || lin->ndim != 2)
        return rvg_error(RVG_STATUS_BAD_NAME, "linear.weight is missing or not 2-D");
    const char *meta_arch = rvg_dict_meta(d, "repvgg.arch");
    if (meta_arch) {
        RVG_TRY(rvg_arch_parse(a, meta_arch));
        a->in_ch = (s0r ? s0r : s0d)->shape[1];
        a->classes = lin->shape[0];
        RVG_TRY(parse_int_meta(d, "repvgg.in_ch", &a->in_ch));
        RVG_TRY(parse_int_meta(d, "repvgg.classes", &a->classes));
        return RVG_OK;
    }
    /* No metadata: read the architecture off the tensors. */
    const rvg_tensor *s0 = s0r ? s0r : s0d;
    a->in_ch = s0->shape[1];
    a->classes = lin->shape[0];
    static const int64_t base[4] = {64, 128, 256, 512};
    int64_t layer = 1, in_planes = s0->shape[0];
    int64_t planes_of[4] = {0};
    for (int s = 0; s < 4; s++) {
        int64_t j = 0;
        for (;; j++) {
            char pre[32];
            snprintf(pre, sizeof pre, "stage%d.%lld", s + 1, (long long)j);
            const rvg_tensor *w = get4(d, pre, wname);
            if (!w)
                break;
            if (layer > RVG_MAX_LAYERS)
                return rvg_error(RVG_STATUS_UNSUPPORTED, "more than %d blocks", RVG_MAX_LAYERS);
            if (w->shape[1] < 1 || in_planes % w->shape[1])
                return rvg_error(RVG_STATUS_BAD_SHAPE, "%s.%s: %lld input channels per group do "
                                 "not divide the %lld channels before it",
                                 pre, wname, (long long)w->shape[1], (long long)in_planes);
            int64_t g = in_planes / w->shape[1];
            a->layer_groups[layer - 1] = g > 1 ? g : 0;
            if (j == 0)
                planes_of[s] = w->shape[0];
            in_planes = w->shape[0];
            layer++;
        }
        if (j == 0)
            return rvg_error(RVG_STATUS_BAD_NAME, "stage%d.0.%s is missing", s + 1, wname);
        a->blocks[s] = j;
        a->width[s] = (double)planes_of[s] / (double)base[s];
    }
    char se_key[64];
    snprintf(se_key, sizeof se_key, "stage0.se.down.weight");
    a->se = rvg_dict_get(d, se_key) != NULL;
    snprintf(a->name, sizeof a->name, "custom");
    /* Report a preset's name when the shapes are the preset's. */
    for (const char *const *p = rvg_arch_presets(); *p; p++) {
        rvg_arch pa;
        rvg_arch_parse(&pa, *p);
        int same = memcmp(pa.blocks, a->blocks, sizeof pa.blocks) == 0 && pa.se == a->se;
        for (int s = 0; same && s < 4; s++)
            same = (int64_t)(base[s] * pa.width[s]) == planes_of[s];
        int64_t s0k = (int64_t)(64 * pa.width[0]);
        same = same && (s0k > 64 ? 64 : s0k) == s0->shape[0];
        for (int l = 0; same && l < RVG_MAX_LAYERS; l++)
            same = (pa.layer_groups[l] > 1 ? pa.layer_groups[l] : 1) ==
                   (a->layer_groups[l] > 1 ? a->layer_groups[l] : 1);
        if (same) {
            int64_t in_ch = a->in_ch, classes = a->classes;
            *a = pa;
            a->in_ch = in_ch;
            a->classes = classes;
            return RVG_OK;
        }
    }
    int64_t s0k = (int64_t)(64 * a->width[0]);
    if ((s0k > 64 ? 64 : s0k) != s0->shape[0])
        return rvg_error(RVG_STATUS_BAD_SHAPE,
                         "stage0 has %lld channels but stage1 (%lld channels) implies %lld",
                         (long long)s0->shape[0], (long long)planes_of[0],
                         (long long)(s0k > 64 ? 64 : s0k));
    return RVG_OK;
}

rvg_status rvg_model_from_dict(rvg_model **out, const rvg_dict *d) {
    *out = NULL;
    rvg_arch a;
    rvg_form form;
    RVG_TRY(rvg_arch_infer(&a, &form, d));
    rvg_model *m;
    RVG_TRY(rvg_model_new(&m, &a, form));
    rvg_status st = RVG_OK;
    int64_t used = 0;
    for (int64_t i = 0; i < m->n_views; i++) {
        rvg_param *p = &m->views[i];
        float *tmp;
        if ((st = rvg_dict_get_f32(d, p->name, p->ndim, p->shape, &tmp)) != RVG_OK)
            goto fail;
        memcpy(p->data, tmp, (size_t)p->numel * sizeof(float));
        rvg_free(tmp);
        used++;
    }
    for (int64_t b = 0; b < m->n_bn; b++) {
        char key[96];
        snprintf(key, sizeof key, "%s.num_batches_tracked", m->bn_names[b]);
        const rvg_tensor *t = rvg_dict_get(d, key);
        if (!t)
            continue; /* timm's published weights have none */
        if (t->dtype != RVG_DTYPE_I64 || t->nbytes != 8) {
            st = rvg_error(RVG_STATUS_BAD_FORMAT, "%s must be one int64", key);
            goto fail;
        }
        memcpy(&m->bn_counters[b], t->data, 8);
        used++;
    }
    if (used != rvg_dict_count(d)) {
        for (int64_t i = 0; i < rvg_dict_count(d); i++) {
            const char *name = rvg_dict_at(d, i)->name;
            const char *dot = strrchr(name, '.');
            int known = rvg_model_find(m, name) != NULL ||
                        (dot && strcmp(dot, ".num_batches_tracked") == 0);
            if (!known) {
                char arch[256];
                rvg_arch_format(&a, arch, sizeof arch);
                st = rvg_error(RVG_STATUS_BAD_NAME,
                               "unexpected tensor '%s' for a %s-form %s model", name,
                               form == RVG_FORM_TRAIN ? "train" : "deploy", arch);
                goto fail;
            }
        }
    }
    *out = m;
    return RVG_OK;
fail:
    rvg_model_free(m);
    return st;
}

rvg_status rvg_model_save(const rvg_model *m, const char *path) {
    rvg_dict *d;
    RVG_TRY(rvg_model_to_dict(m, &d));
    rvg_status st = rvg_safetensors_save(d, path);
    rvg_dict_free(d);
    return st;
}

rvg_status rvg_model_load(rvg_model **out, const char *path) {
    *out = NULL;
    rvg_dict *d;
    RVG_TRY(rvg_weights_load_dict(&d, path));
    rvg_status st = rvg_model_from_dict(out, d);
    rvg_dict_free(d);
    if (st != RVG_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", rvg_last_error());
        return rvg_error(st, "%s: %s", path, msg);
    }
    return RVG_OK;
}
