/* dataset_folder.c - an ImageNet-style tree: DIR/train/CLASS/IMAGE and DIR/val/CLASS/IMAGE.
 *
 * Classes are the sorted subdirectory names of DIR/train (for both splits, so labels agree); files
 * are taken in name order within each class (.jpg, .jpeg, .png, any case). Only the paths are kept:
 * the loader's workers decode each image when it is needed. Not handled: a flat val directory with
 * a separate label file (the raw ILSVRC layout; sort it into class folders first), symlink loops.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data/data_impl.h"

typedef struct {
    char **v;
    int64_t n, cap;
} strlist;

static int strlist_push(strlist *l, const char *s) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v)
            return 0;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(s)))
        return 0;
    l->n++;
    return 1;
}

static void strlist_free(strlist *l) {
    for (int64_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    return strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 ||
           strcasecmp(dot, ".png") == 0;
}

/* Lists the entries of dir that are directories (want_dirs) or image files, sorted. A missing
 * directory is an error only when `required`. */
static rvg_status list_dir(strlist *out, const char *dir, int want_dirs, int required) {
    DIR *dp = opendir(dir);
    if (!dp)
        return required ? rvg_error(RVG_STATUS_IO,
                                    "folder: cannot open directory %s (a folder data set is "
                                    "DIR/train/CLASS/IMAGE and DIR/val/CLASS/IMAGE)",
                                    dir)
                        : RVG_OK;
    struct dirent *e;
    char path[4096];
    rvg_status s = RVG_OK;
    while ((e = readdir(dp))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        int ok =
            want_dirs ? S_ISDIR(st.st_mode) : (S_ISREG(st.st_mode) && is_image_name(e->d_name));
        if (ok && !strlist_push(out, e->d_name)) {
            s = rvg_error(RVG_STATUS_NO_MEMORY, "folder: out of memory");
            break;
        }
    }
    closedir(dp);
    if (s == RVG_OK && out->n > 1) /* an empty list has no array (qsort's is never NULL) */
        qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
    return s;
}

rvg_status rvg__open_folder(rvg_dataset *d, const char *dir, rvg_split split, int64_t limit) {
    const char *sp = split == RVG_SPLIT_TRAIN ? "train" : "val";
    char path[4096], cdir[4096];
    strlist classes = {0}, split_classes = {0}, files = {0}, all = {0};
    int32_t *labs = NULL;
    int64_t nlabs = 0, cap = 0;
    snprintf(path, sizeof path, "%s/train", dir);
    /* The classes are train's folders, so that both splits number them alike. A tree with only
     * val/ (evaluation elsewhere) numbers its own; `repvgg eval` then checks their names against
     * those recorded in the weights. */
    struct stat sb;
    if (split == RVG_SPLIT_VAL && stat(path, &sb) != 0)
        snprintf(path, sizeof path, "%s/val", dir);
    rvg_status s = list_dir(&classes, path, 1, 1);
    if (s != RVG_OK)
        goto fail;
    if (classes.n == 0) {
        s = rvg_error(RVG_STATUS_BAD_FORMAT, "folder: %s has no class subdirectories", path);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/%s", dir, sp);
    s = list_dir(&split_classes, path, 1, 1);
    if (s != RVG_OK)
        goto fail;
    /* A val class train does not have would get no label: refuse rather than guess. */
    for (int64_t k = 0; k < split_classes.n; k++)
        if (!bsearch(&split_classes.v[k], classes.v, (size_t)classes.n, sizeof *classes.v,
                     cmp_str)) {
            s = rvg_error(RVG_STATUS_BAD_FORMAT, "folder: class '%s' of %s is not in %s/train",
                          split_classes.v[k], path, dir);
            goto fail;
        }
    for (int64_t k = 0; k < classes.n; k++) {
        snprintf(cdir, sizeof cdir, "%s/%s/%s", dir, sp, classes.v[k]);
        strlist_free(&files);
        s = list_dir(&files, cdir, 0, 0);
        if (s != RVG_OK)
            goto fail;
        /* a training class without images would be an output never trained, which torchvision's
         * ImageFolder refuses too ("Found no valid file for the classes") */
        if (files.n == 0 && split == RVG_SPLIT_TRAIN) {
            s = rvg_error(RVG_STATUS_BAD_FORMAT,
                          "folder: class '%s' has no .jpg/.jpeg/.png files in %s", classes.v[k],
                          cdir);
            goto fail;
        }
        for (int64_t i = 0; i < files.n; i++) {
            char fp[8192];
            snprintf(fp, sizeof fp, "%s/%s", cdir, files.v[i]);
            if (nlabs == cap) {
                cap = cap ? 2 * cap : 1024;
                int32_t *p = realloc(labs, (size_t)cap * sizeof *p);
                if (!p) {
                    s = rvg_error(RVG_STATUS_NO_MEMORY, "folder: out of memory");
                    goto fail;
                }
                labs = p;
            }
            if (!strlist_push(&all, fp)) {
                s = rvg_error(RVG_STATUS_NO_MEMORY, "folder: out of memory");
                goto fail;
            }
            labs[nlabs++] = (int32_t)k;
        }
    }
    if (all.n == 0) {
        s = rvg_error(RVG_STATUS_BAD_FORMAT, "folder: no .jpg/.jpeg/.png files under %s", path);
        goto fail;
    }
    int64_t total = all.n;
    d->count = (limit > 0 && limit < total) ? limit : total;
    d->classes = classes.n;
    d->c = 3;
    d->h = d->w = 0;
    d->mirror_ok = 1;
    d->paths = calloc((size_t)d->count, sizeof *d->paths);
    d->labels = malloc((size_t)d->count * sizeof *d->labels);
    if (!d->paths || !d->labels) {
        s = rvg_error(RVG_STATUS_NO_MEMORY, "folder: out of memory");
        goto fail;
    }
    /* Files are class-major, so a limit takes an even stride i*total/count to keep every class. */
    for (int64_t i = 0; i < d->count; i++) {
        int64_t j = (int64_t)((double)i * (double)total / (double)d->count);
        d->paths[i] = all.v[j];
        all.v[j] = NULL;
        d->labels[i] = labs[j];
    }
    /* Ownership of the names moves to the data set. */
    d->names = classes.v;
    classes.v = NULL;
    classes.n = 0;
fail:
    strlist_free(&classes);
    strlist_free(&split_classes);
    strlist_free(&files);
    strlist_free(&all);
    free(labs);
    return s;
}
