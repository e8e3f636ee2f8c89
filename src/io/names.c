/* names.c - rewrites checkpoint tensor names into the official RepVGG scheme (SPEC section 4).
 *
 * Three steps per name: strip leading `module.` (DataParallel/DDP), map timm's module paths
 * (stem / stages.J / head.fc) onto the official ones (stage0 / stage(J+1) / linear), and inside a
 * timm block rename the branch modules component by component. The mapping follows timm's
 * byobnet.py: RepVggBlock holds `conv_kxk` and `conv_1x1` (ConvNormAct: `.conv`, `.bn`),
 * `identity` (a BatchNorm), optionally `attn` (SEModule: `fc1`, `fc2`) and, once re-parameterised,
 * `reparam_conv`; the stem is a RepVggBlock itself and the classifier is `head.fc`.
 *
 * Components are matched whole (split on '.'), so a name that merely contains "identity" as a
 * substring is never touched, and the branch renames apply only below a timm stem/stage prefix.
 * The map is idempotent: official names come out unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rvg/names.h"

static const struct {
    const char *timm, *official;
} block_renames[] = {
    {"conv_kxk", "rbr_dense"},       {"conv_1x1", "rbr_1x1"}, {"identity", "rbr_identity"},
    {"reparam_conv", "rbr_reparam"}, {"attn.fc1", "se.down"}, {"attn.fc2", "se.up"},
};

static int starts_with(const char *s, const char *p) {
    return strncmp(s, p, strlen(p)) == 0;
}

/* Appends the block part of a timm name (after "stem." or "stages.J.i."), renaming components. */
static void map_block(char *out, const char *rest) {
    const char *p = rest;
    while (*p) {
        int matched = 0;
        for (size_t k = 0; k < sizeof block_renames / sizeof block_renames[0]; k++) {
            size_t n = strlen(block_renames[k].timm);
            if (strncmp(p, block_renames[k].timm, n) == 0 && (p[n] == '.' || p[n] == '\0')) {
                strcat(out, block_renames[k].official);
                p += n;
                matched = 1;
                break;
            }
        }
        if (!matched) {
            size_t n = strcspn(p, ".");
            strncat(out, p, n);
            p += n;
        }
        if (*p == '.') {
            strcat(out, ".");
            p++;
        }
    }
}

/* Writes the official form of `name` into out (at least 3 * strlen(name) + 32 bytes). Returns 1
 * when the name was a timm name. */
static int map_name(const char *name, char *out) {
    const char *p = name;
    while (starts_with(p, "module."))
        p += 7;
    out[0] = '\0';
    if (starts_with(p, "stem.")) {
        strcpy(out, "stage0.");
        map_block(out, p + 5);
        return 1;
    }
    if (starts_with(p, "stages.")) {
        /* stages.J.i.X -> stage(J+1).i.X; J is a small decimal (timm has four stages). */
        const char *q = p + 7;
        int j = 0, digits = 0;
        while (*q >= '0' && *q <= '9' && digits < 4) {
            j = j * 10 + (*q++ - '0');
            digits++;
        }
        if (digits > 0 && digits < 4 && *q == '.') {
            char stage[32];
            snprintf(stage, sizeof stage, "stage%d.", j + 1);
            strcpy(out, stage);
            map_block(out, q + 1);
            return 1;
        }
    }
    if (starts_with(p, "head.fc.")) {
        strcpy(out, "linear.");
        strcat(out, p + 8);
        return 1;
    }
    strcpy(out, p);
    return 0;
}

rvg_status rvg_names_normalize(rvg_dict *d, int *was_timm) {
    int timm = 0;
    if (was_timm)
        *was_timm = 0;
    if (!d)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "names: no dictionary");
    for (int64_t i = 0; i < rvg_dict_count(d); i++) {
        const char *name = rvg_dict_at(d, i)->name;
        size_t len = strlen(name);
        char *out = malloc(3 * len + 32);
        if (!out)
            return rvg_error(RVG_STATUS_NO_MEMORY, "names: out of memory");
        timm |= map_name(name, out);
        rvg_status st = strcmp(out, name) == 0 ? RVG_OK : rvg_dict_rename(d, i, out);
        free(out);
        if (st != RVG_OK)
            return st;
    }
    if (was_timm)
        *was_timm = timm;
    return RVG_OK;
}
