/* train_ckpt.c - training checkpoints: the config as JSON, the normalisation metadata, and the
 * last/best checkpoint files that `repvgg train --resume` continues from.
 *
 * A checkpoint is one safetensors file: the model's tensors under their official names (BN running
 * statistics and num_batches_tracked included, via rvg_model_to_dict), the SGD momentum buffers as
 * `momentum.<param name>`, with --ema the moving average's tensors as `ema.<name>`, and in
 * __metadata__ the epochs and steps done, the best top-1, the mixup generator state and the full
 * config. Beside it the plain weights file (what convert, predict and eval take) carries
 * repvgg.mean/std/size/eval so that evaluation and prediction preprocess as training did; with
 * --ema it holds the average, the weights that were validated.
 * Not here: the training loop, or any partial-epoch state (a resume replays the epoch it was in).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rvg/io.h"
#include "train_cli.h"

/* ---- config JSON ----------------------------------------------------------------------------- */

char *train_config_to_json(const train_config *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, c->seed);
    cJSON_AddStringToObject(o, "arch", c->arch);
    cJSON_AddStringToObject(o, "data", c->data);
    cJSON_AddStringToObject(o, "recipe", c->recipe);
    cJSON_AddStringToObject(o, "init", c->init);
    cJSON_AddNumberToObject(o, "in_ch", (double)c->in_ch);
    cJSON_AddNumberToObject(o, "classes", (double)c->classes);
    cJSON_AddNumberToObject(o, "size", (double)c->size);
    cJSON_AddNumberToObject(o, "epochs", (double)c->epochs);
    cJSON_AddNumberToObject(o, "batch", (double)c->batch);
    cJSON_AddNumberToObject(o, "lr", c->lr);
    /* a string: a 64-bit seed does not survive a trip through a JSON double */
    cJSON_AddStringToObject(o, "seed", seed);
    cJSON_AddNumberToObject(o, "limit_train", (double)c->limit_train);
    cJSON_AddNumberToObject(o, "limit_val", (double)c->limit_val);
    cJSON_AddNumberToObject(o, "momentum", c->momentum);
    cJSON_AddNumberToObject(o, "wd", c->wd);
    cJSON_AddBoolToObject(o, "nesterov", c->nesterov);
    cJSON_AddBoolToObject(o, "custom_l2", c->custom_l2);
    cJSON_AddNumberToObject(o, "warmup_epochs", (double)c->warmup_epochs);
    cJSON_AddNumberToObject(o, "label_smoothing", c->label_smoothing);
    cJSON_AddNumberToObject(o, "mixup", c->mixup);
    cJSON_AddBoolToObject(o, "autoaugment", c->autoaugment);
    cJSON_AddBoolToObject(o, "flip", c->flip);
    cJSON_AddNumberToObject(o, "crop_pad", (double)c->crop_pad);
    cJSON_AddNumberToObject(o, "erase", c->erase);
    cJSON_AddBoolToObject(o, "erase_zero", c->erase_zero);
    cJSON_AddNumberToObject(o, "clean_epochs", (double)c->clean_epochs);
    cJSON_AddStringToObject(o, "norm", c->norm);
    cJSON_AddBoolToObject(o, "sync_bn", c->sync_bn);
    cJSON_AddNumberToObject(o, "ema", c->ema);
    cJSON_AddNumberToObject(o, "clip_grad", c->clip_grad);
    cJSON_AddStringToObject(o, "kernels", c->kernels);
    cJSON *mean = cJSON_AddArrayToObject(o, "mean"), *std = cJSON_AddArrayToObject(o, "std");
    for (int64_t i = 0; i < c->in_ch && i < 4; i++) {
        /* cJSON prints 17 significant digits when needed, so a float round-trips exactly */
        cJSON_AddItemToArray(mean, cJSON_CreateNumber((double)c->mean[i]));
        cJSON_AddItemToArray(std, cJSON_CreateNumber((double)c->std[i]));
    }
    cJSON_AddNumberToObject(o, "threads", c->threads);
    cJSON_AddNumberToObject(o, "workers", c->workers);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int get_num(const cJSON *o, const char *k, double *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(it))
        return 0;
    *v = it->valuedouble;
    return 1;
}

static int get_int(const cJSON *o, const char *k, int64_t *v) {
    double d;
    if (!get_num(o, k, &d))
        return 0;
    *v = (int64_t)d;
    return 1;
}

static int get_bool(const cJSON *o, const char *k, int *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsBool(it))
        return 0;
    *v = cJSON_IsTrue(it);
    return 1;
}

static int get_str(const cJSON *o, const char *k, char *buf, size_t n) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(it) || strlen(it->valuestring) >= n)
        return 0;
    strcpy(buf, it->valuestring);
    return 1;
}

rvg_status train_config_from_json(train_config *c, const char *json) {
    cJSON *o = cJSON_Parse(json);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return rvg_error(RVG_STATUS_BAD_FORMAT, "checkpoint config is not a JSON object");
    }
    char seed[32];
    int64_t v;
    int ok = get_str(o, "arch", c->arch, sizeof c->arch) &&
             get_str(o, "data", c->data, sizeof c->data) &&
             get_str(o, "recipe", c->recipe, sizeof c->recipe) && get_int(o, "in_ch", &c->in_ch) &&
             get_int(o, "classes", &c->classes) && get_int(o, "size", &c->size) &&
             get_int(o, "epochs", &c->epochs) && get_int(o, "batch", &c->batch) &&
             get_num(o, "lr", &c->lr) && get_str(o, "seed", seed, sizeof seed) &&
             get_int(o, "limit_train", &c->limit_train) && get_int(o, "limit_val", &c->limit_val) &&
             get_num(o, "momentum", &c->momentum) && get_num(o, "wd", &c->wd) &&
             get_bool(o, "nesterov", &c->nesterov) && get_bool(o, "custom_l2", &c->custom_l2) &&
             get_int(o, "warmup_epochs", &c->warmup_epochs) &&
             get_num(o, "label_smoothing", &c->label_smoothing) && get_num(o, "mixup", &c->mixup) &&
             get_bool(o, "autoaugment", &c->autoaugment) && get_bool(o, "flip", &c->flip) &&
             get_int(o, "crop_pad", &c->crop_pad) && get_str(o, "norm", c->norm, sizeof c->norm);
    /* runs written before the AMX training GEMM existed ran in fp32 */
    if (ok && !get_str(o, "kernels", c->kernels, sizeof c->kernels))
        strcpy(c->kernels, "auto");
    if (ok) {
        char *end;
        c->seed = strtoull(seed, &end, 10);
        ok = *seed && !*end;
    }
    const cJSON *mean = cJSON_GetObjectItemCaseSensitive(o, "mean");
    const cJSON *std = cJSON_GetObjectItemCaseSensitive(o, "std");
    ok = ok && c->in_ch >= 1 && c->in_ch <= 4 && cJSON_IsArray(mean) && cJSON_IsArray(std) &&
         cJSON_GetArraySize(mean) == c->in_ch && cJSON_GetArraySize(std) == c->in_ch;
    for (int i = 0; ok && i < c->in_ch; i++) {
        const cJSON *a = cJSON_GetArrayItem(mean, i), *b = cJSON_GetArrayItem(std, i);
        ok = cJSON_IsNumber(a) && cJSON_IsNumber(b);
        if (ok) {
            c->mean[i] = (float)a->valuedouble;
            c->std[i] = (float)b->valuedouble;
        }
    }
    if (ok && get_int(o, "threads", &v))
        c->threads = (int)v;
    if (ok && get_int(o, "workers", &v))
        c->workers = (int)v;
    if (ok && !get_bool(o, "sync_bn", &c->sync_bn))
        c->sync_bn = 0; /* checkpoints from before data-parallel training */
    if (ok && !get_num(o, "ema", &c->ema))
        c->ema = 0.0; /* checkpoints from before --ema */
    ok = ok && c->ema >= 0.0 && c->ema < 1.0;
    if (ok && !get_num(o, "clip_grad", &c->clip_grad))
        c->clip_grad = 0.0; /* checkpoints from before --clip-grad */
    ok = ok && c->clip_grad >= 0.0 && isfinite(c->clip_grad);
    if (ok && !get_num(o, "erase", &c->erase))
        c->erase = 0.0; /* checkpoints from before --erase */
    if (ok && !get_bool(o, "erase_zero", &c->erase_zero))
        c->erase_zero = 0;
    ok = ok && c->erase >= 0.0 && c->erase <= 1.0;
    if (ok && !get_int(o, "clean_epochs", &c->clean_epochs))
        c->clean_epochs = 0; /* checkpoints from before --clean-epochs */
    ok = ok && c->clean_epochs >= 0 && c->clean_epochs <= c->epochs;
    if (ok && !get_str(o, "init", c->init, sizeof c->init))
        c->init[0] = 0; /* checkpoints from before --init (provenance only: a resume does not
                           read it) */
    cJSON_Delete(o);
    ok = ok && c->epochs >= 1 && c->batch >= 1 && c->size >= 1 && c->classes >= 1;
    return ok ? RVG_OK
              : rvg_error(RVG_STATUS_BAD_FORMAT, "checkpoint config is missing or has a bad field");
}

/* ---- normalisation metadata ---------------------------------------------------------------- */

static void join_floats(char *buf, size_t n, const float *v, int64_t C) {
    size_t used = 0;
    buf[0] = 0;
    for (int64_t i = 0; i < C && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%.9g", i ? "," : "", (double)v[i]);
}

/* repvgg.labels: the class names of d as a JSON array (cJSON escapes them). */
static rvg_status set_labels_meta(rvg_dict *dict, const rvg_dataset *d, int64_t K) {
    cJSON *a = cJSON_CreateArray();
    for (int64_t k = 0; a && k < K; k++) {
        const char *nm = rvg_dataset_class_name(d, k);
        cJSON *s = cJSON_CreateString(nm ? nm : "");
        if (!s || !cJSON_AddItemToArray(a, s)) {
            cJSON_Delete(s);
            cJSON_Delete(a);
            a = NULL;
        }
    }
    char *json = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    if (!json)
        return rvg_error(RVG_STATUS_NO_MEMORY, "checkpoint: out of memory");
    rvg_status st = rvg_dict_set_meta(dict, "repvgg.labels", json);
    cJSON_free(json);
    return st;
}

rvg_status train_set_norm_meta(rvg_dict *d, const train_config *c, const rvg_dataset *names) {
    char buf[128];
    join_floats(buf, sizeof buf, c->mean, c->in_ch);
    RVG_TRY(rvg_dict_set_meta(d, "repvgg.mean", buf));
    join_floats(buf, sizeof buf, c->std, c->in_ch);
    RVG_TRY(rvg_dict_set_meta(d, "repvgg.std", buf));
    snprintf(buf, sizeof buf, "%lld", (long long)c->size);
    RVG_TRY(rvg_dict_set_meta(d, "repvgg.size", buf));
    /* rvg_augment_defaults: folders evaluate with the centre crop, the other sets resized */
    const int folder = strncmp(c->data, "folder:", 7) == 0;
    RVG_TRY(
        rvg_dict_set_meta(d, "repvgg.eval", folder ? TRAIN_EVAL_CENTER_CROP : TRAIN_EVAL_RESIZE));
    return names ? set_labels_meta(d, names, c->classes) : RVG_OK;
}

int train_is_number_name(const char *name, int64_t k) {
    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)k);
    return strcmp(name, num) == 0;
}

int train_check_labels(const rvg_dict *d, const rvg_dataset *ds, const char *cmd, const char *wpath,
                       const char *data) {
    const char *json = rvg_dict_meta(d, "repvgg.labels");
    cJSON *a = json ? cJSON_Parse(json) : NULL;
    int bad = 0;
    const int64_t n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
    for (int64_t k = 0; !bad && k < n && k < rvg_dataset_classes(ds); k++) {
        const cJSON *s = cJSON_GetArrayItem(a, (int)k);
        const char *nm = rvg_dataset_class_name(ds, k);
        if (!cJSON_IsString(s) || !nm || train_is_number_name(nm, k) ||
            train_is_number_name(s->valuestring, k))
            continue;
        if (strcmp(nm, s->valuestring) != 0) {
            fprintf(stderr,
                    "repvgg %s: the classes of %s are not those %s was trained on: class %lld is "
                    "'%s' there, '%s' in the weights (folder classes are numbered in sorted "
                    "order: was a class folder added or renamed?)\n",
                    cmd, data, wpath, (long long)k, nm, s->valuestring);
            bad = 1;
        }
    }
    cJSON_Delete(a);
    return bad;
}

static int parse_floats(const char *s, float *v, int64_t C) {
    for (int64_t i = 0; i < C; i++) {
        char *end;
        v[i] = strtof(s, &end);
        if (end == s)
            return 0;
        s = end;
        if (i + 1 < C) {
            if (*s != ',')
                return 0;
            s++;
        }
    }
    return *s == 0;
}

int train_get_norm_meta(const rvg_dict *d, int64_t C, float *mean, float *std, int64_t *size) {
    const char *m = rvg_dict_meta(d, "repvgg.mean"), *s = rvg_dict_meta(d, "repvgg.std");
    const char *z = rvg_dict_meta(d, "repvgg.size");
    if (!m || !s || !z)
        return 0;
    char *end;
    long long sz = strtoll(z, &end, 10);
    if (C < 1 || C > 4 || !parse_floats(m, mean, C) || !parse_floats(s, std, C) || end == z ||
        *end || sz < 1 || sz > 8192) /* 8192: what --size takes */
        return -1;
    *size = sz;
    return 1;
}

rvg_status train_copy_recorded_meta(rvg_dict *dst, const rvg_dict *src) {
    static const char *const keys[] = {"repvgg.mean", "repvgg.std", "repvgg.size", "repvgg.eval",
                                       "repvgg.labels"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = rvg_dict_meta(src, keys[i]);
        if (v)
            RVG_TRY(rvg_dict_set_meta(dst, keys[i], v));
    }
    return RVG_OK;
}

int train_recorded_size(const rvg_dict *d, int64_t max, int64_t *size, const char *cmd,
                        const char *path) {
    const char *z = rvg_dict_meta(d, "repvgg.size");
    if (!z)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(z, &end, 10);
    if (end == z || *end || errno || v < 1 || v > max) {
        fprintf(stderr,
                "repvgg %s: %s: recorded input size '%s' (repvgg.size) is not in 1..%lld; "
                "give --size\n",
                cmd, path, z, (long long)max);
        return -1;
    }
    *size = v;
    return 1;
}

/* ---- checkpoint files ------------------------------------------------------------------------ */

rvg_status train_strip_prefix(rvg_dict *d, const char *prefix, rvg_dict *keep) {
    const size_t np = strlen(prefix);
    for (int64_t i = 0; i < rvg_dict_count(d);) {
        const rvg_tensor *t = rvg_dict_at(d, i);
        if (strncmp(t->name, prefix, np) != 0) {
            i++;
            continue;
        }
        if (keep)
            RVG_TRY(rvg_dict_add(keep, t->name + np, t->dtype, t->ndim, t->shape, t->data));
        char name[160];
        snprintf(name, sizeof name, "%s", t->name);
        rvg_dict_remove(d, name);
    }
    return RVG_OK;
}

rvg_status train_strip_state(rvg_dict *d) {
    RVG_TRY(train_strip_prefix(d, "momentum.", NULL));
    return train_strip_prefix(d, "ema.", NULL);
}

rvg_status train_load_weights(rvg_model **m, rvg_dict **dict, const char *path) {
    *m = NULL;
    if (dict)
        *dict = NULL;
    rvg_dict *d = NULL;
    rvg_status st = rvg_weights_load_dict(&d, path);
    if (st == RVG_OK)
        st = train_strip_state(d);
    if (st == RVG_OK)
        st = rvg_model_from_dict(m, d);
    if (st != RVG_OK || !dict)
        rvg_dict_free(d);
    else
        *dict = d;
    return st;
}

static rvg_status set_meta_i64(rvg_dict *d, const char *k, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return rvg_dict_set_meta(d, k, buf);
}

/* Writes m's tensors to DIR/<stem>.safetensors as plain weights with the normalisation. */
static rvg_status save_weights(const rvg_model *m, const train_config *c, const rvg_dataset *names,
                               const char *dir, const char *stem) {
    rvg_dict *d = NULL;
    char path[4200];
    rvg_status st = rvg_model_to_dict(m, &d);
    if (st == RVG_OK)
        st = train_set_norm_meta(d, c, names);
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, stem);
    if (st == RVG_OK)
        st = rvg_safetensors_save(d, path);
    rvg_dict_free(d);
    return st;
}

/* Adds ema's tensors to d as ema.<name> (the BN counters too, int64). */
static rvg_status add_ema(rvg_dict *d, const rvg_model *ema) {
    rvg_dict *e = NULL;
    rvg_status st = rvg_model_to_dict(ema, &e);
    for (int64_t i = 0; st == RVG_OK && i < rvg_dict_count(e); i++) {
        const rvg_tensor *t = rvg_dict_at(e, i);
        char key[160];
        snprintf(key, sizeof key, "ema.%s", t->name);
        st = rvg_dict_add(d, key, t->dtype, t->ndim, t->shape, t->data);
    }
    rvg_dict_free(e);
    return st;
}

static rvg_status save_files(const rvg_model *m, const rvg_model *ema, const train_config *c,
                             const rvg_dataset *names, const train_state *s, const char *dir,
                             const char *stem) {
    rvg_dict *d = NULL;
    char *json = NULL;
    char path[4200], buf[64];
    /* Plain weights first: the average's when the run keeps one (it is what was validated). */
    rvg_status st = save_weights(ema ? ema : m, c, names, dir, stem);
    if (st != RVG_OK)
        return st;
    if ((st = rvg_model_to_dict(m, &d)) != RVG_OK)
        return st;
    /* Then the checkpoint: the raw weights plus momentum, the average and the state. */
    st = train_set_norm_meta(d, c, names);
    if (st == RVG_OK && ema)
        st = add_ema(d, ema);
    rvg_model *mm = (rvg_model *)m; /* rvg_model_param is the only accessor; read-only here */
    for (int64_t i = 0; st == RVG_OK && i < rvg_model_param_count(m); i++) {
        const rvg_param *p = rvg_model_param(mm, i);
        if (!p->momentum)
            continue;
        char key[96];
        snprintf(key, sizeof key, "momentum.%s", p->name);
        st = rvg_dict_add_f32(d, key, p->ndim, p->shape, p->momentum);
    }
    if (st == RVG_OK)
        st = set_meta_i64(d, "repvgg.ckpt.epoch", s->epoch);
    if (st == RVG_OK)
        st = set_meta_i64(d, "repvgg.ckpt.iter", s->iter);
    if (st == RVG_OK)
        st = set_meta_i64(d, "repvgg.ckpt.best_epoch", s->best_epoch);
    snprintf(buf, sizeof buf, "%.17g", s->best_top1);
    if (st == RVG_OK)
        st = rvg_dict_set_meta(d, "repvgg.ckpt.best_top1", buf);
    snprintf(buf, sizeof buf, "%016" PRIx64, s->rng);
    if (st == RVG_OK)
        st = rvg_dict_set_meta(d, "repvgg.ckpt.rng", buf);
    if (st == RVG_OK)
        st = rvg_dict_set_meta(d, "repvgg.ckpt.data", c->data);
    if (st == RVG_OK && !(json = train_config_to_json(c)))
        st = rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
    if (st == RVG_OK)
        st = rvg_dict_set_meta(d, "repvgg.ckpt.config", json);
    snprintf(path, sizeof path, "%s/%s.ckpt.safetensors", dir, stem);
    if (st == RVG_OK)
        st = rvg_safetensors_save(d, path);
    free(json);
    rvg_dict_free(d);
    return st;
}

rvg_status train_ckpt_save(const rvg_model *m, const rvg_model *ema, const train_config *c,
                           const rvg_dataset *names, const train_state *s, const char *dir,
                           const char *stem) {
    return save_files(m, ema, c, names, s, dir, stem);
}

static rvg_status meta_i64(const rvg_dict *d, const char *k, int64_t *v) {
    const char *s = rvg_dict_meta(d, k);
    char *end;
    if (!s)
        return rvg_error(RVG_STATUS_BAD_FORMAT, "checkpoint metadata %s is missing", k);
    long long x = strtoll(s, &end, 10);
    if (end == s || *end || x < 0)
        return rvg_error(RVG_STATUS_BAD_FORMAT, "checkpoint metadata %s = '%s' is malformed", k, s);
    *v = x;
    return RVG_OK;
}

/* The run's moving average from the checkpoint's ema.* tensors (avg, prefix removed): a model of
 * the same network when the config has --ema, nothing (and no such tensors) otherwise. */
static rvg_status load_ema(rvg_model **ema, const rvg_dict *avg, const rvg_model *m,
                           const train_config *c, const char *path) {
    if (c->ema == 0.0)
        return rvg_dict_count(avg) == 0
                   ? RVG_OK
                   : rvg_error(RVG_STATUS_BAD_FORMAT,
                               "%s holds a moving average (ema.*) but its config has no --ema",
                               path);
    if (rvg_dict_count(avg) == 0)
        return rvg_error(RVG_STATUS_BAD_FORMAT,
                         "%s holds no moving average (ema.*) though its config has --ema %g", path,
                         c->ema);
    rvg_status st = rvg_model_from_dict(ema, avg);
    if (st != RVG_OK) {
        char why[256];
        snprintf(why, sizeof why, "%s", rvg_last_error());
        return rvg_error(st, "%s: the moving average (ema.*) of a run with --ema %g: %s", path,
                         c->ema, why);
    }
    char a[512], b[512];
    rvg_arch_format(rvg_model_arch(*ema), a, sizeof a);
    rvg_arch_format(rvg_model_arch(m), b, sizeof b);
    if (rvg_model_form(*ema) != RVG_FORM_TRAIN || strcmp(a, b) != 0)
        return rvg_error(RVG_STATUS_BAD_FORMAT, "%s: the moving average is of %s, the model of %s",
                         path, a, b);
    return RVG_OK;
}

rvg_status train_ckpt_load(rvg_model **out, rvg_model **ema_out, train_config *c, train_state *s,
                           const char *dir) {
    *out = *ema_out = NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/last.ckpt.safetensors", dir);
    rvg_dict *d = NULL, *mom = NULL, *avg = NULL;
    rvg_model *m = NULL, *ema = NULL;
    rvg_status st = rvg_safetensors_load(&d, path);
    if (st != RVG_OK)
        return st;
    const char *json = rvg_dict_meta(d, "repvgg.ckpt.config");
    const char *rng = rvg_dict_meta(d, "repvgg.ckpt.rng");
    const char *best = rvg_dict_meta(d, "repvgg.ckpt.best_top1");
    if (!json || !rng || !best) {
        st = rvg_error(RVG_STATUS_BAD_FORMAT,
                       "%s is not a training checkpoint (no repvgg.ckpt.* metadata)", path);
        goto done;
    }
    if ((st = train_config_from_json(c, json)) != RVG_OK ||
        (st = meta_i64(d, "repvgg.ckpt.epoch", &s->epoch)) != RVG_OK ||
        (st = meta_i64(d, "repvgg.ckpt.iter", &s->iter)) != RVG_OK ||
        (st = meta_i64(d, "repvgg.ckpt.best_epoch", &s->best_epoch)) != RVG_OK)
        goto done;
    char *end;
    s->best_top1 = strtod(best, &end);
    s->rng = strtoull(rng, &end, 16);
    if (!(mom = rvg_dict_new()) || !(avg = rvg_dict_new())) {
        st = rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
        goto done;
    }
    if ((st = train_strip_prefix(d, "momentum.", mom)) != RVG_OK ||
        (st = train_strip_prefix(d, "ema.", avg)) != RVG_OK ||
        (st = rvg_model_from_dict(&m, d)) != RVG_OK)
        goto done;
    if (rvg_model_form(m) != RVG_FORM_TRAIN) {
        st = rvg_error(RVG_STATUS_BAD_FORMAT, "%s holds a deploy-form model", path);
        goto done;
    }
    if ((st = load_ema(&ema, avg, m, c, path)) != RVG_OK)
        goto done;
    for (int64_t i = 0; i < rvg_model_param_count(m); i++) {
        rvg_param *p = rvg_model_param(m, i);
        if (!p->momentum)
            continue;
        float *buf = NULL;
        if ((st = rvg_dict_get_f32(mom, p->name, p->ndim, p->shape, &buf)) != RVG_OK)
            goto done;
        memcpy(p->momentum, buf, (size_t)p->numel * sizeof(float));
        rvg_free(buf);
    }
    *out = m;
    *ema_out = ema;
    m = ema = NULL;
done:
    rvg_model_free(m);
    rvg_model_free(ema);
    rvg_dict_free(avg);
    rvg_dict_free(mom);
    rvg_dict_free(d);
    return st;
}
