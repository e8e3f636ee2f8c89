/* arch.c - the architecture table of the paper (SPEC §3) and custom architecture strings.
 *
 * Presets follow the official code: width_multiplier = [a, a, a, b], stage0 width min(64, 64a),
 * groupwise variants put `groups` on layers 2, 4, ..., 26 counted from 1 at stage1's first block.
 * This file only describes shapes; src/model/model.c turns an arch into blocks and parameters.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rvg/model.h"

typedef struct {
    const char *name;
    int64_t blocks[4];
    double width[4];
    int64_t groups; /* on the even layers 2..26, 1 = none */
    int se;
} preset;

static const preset presets[] = {
    {"A0", {2, 4, 14, 1}, {0.75, 0.75, 0.75, 2.5}, 1, 0},
    {"A1", {2, 4, 14, 1}, {1, 1, 1, 2.5}, 1, 0},
    {"A2", {2, 4, 14, 1}, {1.5, 1.5, 1.5, 2.75}, 1, 0},
    {"B0", {4, 6, 16, 1}, {1, 1, 1, 2.5}, 1, 0},
    {"B1", {4, 6, 16, 1}, {2, 2, 2, 4}, 1, 0},
    {"B1g2", {4, 6, 16, 1}, {2, 2, 2, 4}, 2, 0},
    {"B1g4", {4, 6, 16, 1}, {2, 2, 2, 4}, 4, 0},
    {"B2", {4, 6, 16, 1}, {2.5, 2.5, 2.5, 5}, 1, 0},
    {"B2g4", {4, 6, 16, 1}, {2.5, 2.5, 2.5, 5}, 4, 0},
    {"B3", {4, 6, 16, 1}, {3, 3, 3, 5}, 1, 0},
    {"B3g4", {4, 6, 16, 1}, {3, 3, 3, 5}, 4, 0},
    {"D2se", {8, 14, 24, 1}, {2.5, 2.5, 2.5, 5}, 1, 1},
};
#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

const char *const *rvg_arch_presets(void) {
    static const char *names[N_PRESETS + 1];
    for (int i = 0; i < N_PRESETS; i++)
        names[i] = presets[i].name;
    names[N_PRESETS] = NULL;
    return names;
}

static void from_preset(rvg_arch *a, const preset *p) {
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", p->name);
    memcpy(a->blocks, p->blocks, sizeof a->blocks);
    memcpy(a->width, p->width, sizeof a->width);
    for (int l = 2; l <= 26 && p->groups > 1; l += 2)
        a->layer_groups[l - 1] = p->groups;
    a->se = p->se;
    a->in_ch = 3;
    a->classes = 1000;
}

/* Parses "v1,v2,..." into at most max integers; returns the count or -1. */
static int parse_ints(const char *s, int64_t *out, int max) {
    int n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno || n == max)
            return -1;
        out[n++] = v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return n;
}

static rvg_status parse_custom(rvg_arch *a, const char *spec) {
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "custom");
    a->in_ch = 3;
    a->classes = 1000;
    int have_blocks = 0, have_width = 0;
    char buf[1024];
    if (strlen(spec) >= sizeof buf)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "architecture spec too long");
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return rvg_error(RVG_STATUS_BAD_ARGUMENT, "custom arch: '%s' is not key=value", tok);
        *eq = '\0';
        const char *key = tok, *val = eq + 1;
        if (strcmp(key, "blocks") == 0) {
            if (parse_ints(val, a->blocks, 4) != 4)
                return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                                 "custom arch: blocks needs 4 integers, got '%s'", val);
            have_blocks = 1;
        } else if (strcmp(key, "width") == 0) {
            const char *s = val;
            for (int i = 0; i < 4; i++) {
                char *end;
                a->width[i] = strtod(s, &end);
                if (end == s || (i < 3 && *end != ',') || (i == 3 && *end))
                    return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                                     "custom arch: width needs 4 numbers, got '%s'", val);
                s = end + 1;
            }
            have_width = 1;
        } else if (strcmp(key, "groups") == 0) {
            /* G@L1,L2,... : groups G on the listed layers */
            char *at = strchr(val, '@');
            int64_t g, layers[RVG_MAX_LAYERS];
            if (!at)
                return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                                 "custom arch: groups must be G@L1,L2,... got '%s'", val);
            *at = '\0';
            if (parse_ints(val, &g, 1) != 1 || g < 1)
                return rvg_error(RVG_STATUS_BAD_ARGUMENT, "custom arch: bad group count '%s'",
                                 val);
            int n = parse_ints(at + 1, layers, RVG_MAX_LAYERS);
            if (n < 0)
                return rvg_error(RVG_STATUS_BAD_ARGUMENT, "custom arch: bad layer list '%s'",
                                 at + 1);
            for (int i = 0; i < n; i++) {
                if (layers[i] < 1 || layers[i] > RVG_MAX_LAYERS)
                    return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                                     "custom arch: layer %lld out of range 1..%d",
                                     (long long)layers[i], RVG_MAX_LAYERS);
                a->layer_groups[layers[i] - 1] = g;
            }
        } else if (strcmp(key, "se") == 0) {
            if (strcmp(val, "0") != 0 && strcmp(val, "1") != 0)
                return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                                 "custom arch: se must be 0 or 1, not '%s'", val);
            a->se = val[0] == '1';
        } else {
            return rvg_error(RVG_STATUS_BAD_ARGUMENT, "custom arch: unknown key '%s'", key);
        }
    }
    if (!have_blocks || !have_width)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "custom arch needs blocks= and width=");
    int64_t total = 0;
    for (int i = 0; i < 4; i++) {
        if (a->blocks[i] < 1 || !(a->width[i] > 0 && a->width[i] <= 64)) /* NaN fails too */
            return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                             "custom arch: stage %d needs >= 1 block and a width in (0, 64]", i + 1);
        total += a->blocks[i];
    }
    if (total > RVG_MAX_LAYERS)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "custom arch: %lld blocks, at most %d",
                         (long long)total, RVG_MAX_LAYERS);
    /* groups named for a layer the network does not have would change nothing, silently */
    for (int64_t l = total; l < RVG_MAX_LAYERS; l++)
        if (a->layer_groups[l] > 1)
            return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                             "custom arch: groups on layer %lld, but the network has %lld layers "
                             "(1 = stage1's first block)",
                             (long long)l + 1, (long long)total);
    return RVG_OK;
}

rvg_status rvg_arch_parse(rvg_arch *a, const char *spec) {
    if (!spec || !*spec)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "empty architecture name");
    if (strncmp(spec, "custom:", 7) == 0)
        return parse_custom(a, spec + 7);
    const char *s = spec;
    if (strncasecmp(s, "RepVGG-", 7) == 0 || strncasecmp(s, "RepVGG_", 7) == 0)
        s += 7;
    for (int i = 0; i < N_PRESETS; i++) {
        if (strcasecmp(s, presets[i].name) == 0) {
            from_preset(a, &presets[i]);
            return RVG_OK;
        }
    }
    char list[256] = "";
    for (int i = 0; i < N_PRESETS; i++) {
        strncat(list, presets[i].name, sizeof list - strlen(list) - 1);
        if (i + 1 < N_PRESETS)
            strncat(list, " ", sizeof list - strlen(list) - 1);
    }
    return rvg_error(RVG_STATUS_BAD_ARGUMENT,
                     "unknown architecture '%s' (known: %s, or custom:blocks=..:width=..)", spec,
                     list);
}

void rvg_arch_format(const rvg_arch *a, char *buf, size_t n) {
    /* A preset name is written only when every field still matches the preset. */
    for (int i = 0; i < N_PRESETS; i++) {
        rvg_arch p;
        from_preset(&p, &presets[i]);
        if (strcmp(a->name, p.name) == 0 && memcmp(a->blocks, p.blocks, sizeof p.blocks) == 0 &&
            memcmp(a->width, p.width, sizeof p.width) == 0 && a->se == p.se) {
            int same = 1;
            for (int l = 0; l < RVG_MAX_LAYERS; l++)
                same &= (a->layer_groups[l] > 1 ? a->layer_groups[l] : 1) ==
                        (p.layer_groups[l] > 1 ? p.layer_groups[l] : 1);
            if (same) {
                snprintf(buf, n, "%s", p.name);
                return;
            }
        }
    }
    int off = snprintf(buf, n, "custom:blocks=%lld,%lld,%lld,%lld:width=%.17g,%.17g,%.17g,%.17g",
                       (long long)a->blocks[0], (long long)a->blocks[1], (long long)a->blocks[2],
                       (long long)a->blocks[3], a->width[0], a->width[1], a->width[2],
                       a->width[3]);
    /* groups: one G@list clause per distinct group count, in order of first appearance */
    int done[RVG_MAX_LAYERS] = {0};
    for (int l = 0; l < RVG_MAX_LAYERS && off < (int)n; l++) {
        int64_t g = a->layer_groups[l];
        if (g <= 1 || done[l])
            continue;
        off += snprintf(buf + off, n - (size_t)off, ":groups=%lld@%d", (long long)g, l + 1);
        for (int j = l + 1; j < RVG_MAX_LAYERS && off < (int)n; j++) {
            if (a->layer_groups[j] == g) {
                off += snprintf(buf + off, n - (size_t)off, ",%d", j + 1);
                done[j] = 1;
            }
        }
    }
    if (a->se && off < (int)n)
        snprintf(buf + off, n - (size_t)off, ":se=1");
}
