/* test_torch_pth.c - the PyTorch .pth loader and name normalisation against torch.save itself.
 *
 * tests/ref/gen_pth.py writes checkpoints with torch.save (official, `module.`, wrapped, timm,
 * float16, strided views) and a safetensors twin of each under official names. Every checkpoint is
 * loaded with rvg_pth_load, normalised with rvg_names_normalize and compared bit for bit with its
 * twin. Then the hostile inputs: disallowed globals, missing/short storages, tensors past their
 * storage, truncations and single-byte corruptions of the archive and of data.pkl (with and without
 * a valid CRC), and hand-written pickles that break the stack machine. Each must come back as a
 * clean status (BAD_FORMAT, or UNSUPPORTED where the input is valid but out of scope), never a
 * crash, and never as silently wrong tensors.
 *
 * Usage: test_torch_pth REF_DIR (the directory gen_pth.py wrote; ctest passes BUILD/refs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "io/pickle_impl.h"
#include "rvg/io.h"
#include "rvg/names.h"
#include "rvg/pth.h"

static const char *ref_dir;

static const char *ref_path(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/pth/%s", ref_dir, name);
    return buf;
}

/* 1 when a and b hold the same names, dtypes, shapes and bytes (order may differ). Prints the first
 * difference. */
static int dicts_equal(const char *what, const rvg_dict *got, const rvg_dict *want) {
    if (rvg_dict_count(got) != rvg_dict_count(want)) {
        fprintf(stderr, "  %s: %lld tensors, expected %lld\n", what, (long long)rvg_dict_count(got),
                (long long)rvg_dict_count(want));
        return 0;
    }
    for (int64_t i = 0; i < rvg_dict_count(want); i++) {
        const rvg_tensor *w = rvg_dict_at(want, i);
        const rvg_tensor *g = rvg_dict_get(got, w->name);
        if (!g) {
            fprintf(stderr, "  %s: tensor '%s' missing\n", what, w->name);
            return 0;
        }
        int same = g->dtype == w->dtype && g->ndim == w->ndim && g->nbytes == w->nbytes;
        for (int d = 0; same && d < w->ndim; d++)
            same = g->shape[d] == w->shape[d];
        if (!same) {
            fprintf(stderr,
                    "  %s: tensor '%s' has dtype %s, %d dims, %zu bytes; want %s, %d, %zu\n", what,
                    w->name, rvg_dtype_name(g->dtype), g->ndim, g->nbytes, rvg_dtype_name(w->dtype),
                    w->ndim, w->nbytes);
            return 0;
        }
        if (w->nbytes && memcmp(g->data, w->data, w->nbytes) != 0) {
            fprintf(stderr, "  %s: tensor '%s' differs in its data\n", what, w->name);
            return 0;
        }
    }
    return 1;
}

/* STEM.pth through rvg_pth_load (and rvg_pth_parse), normalised, against STEM.safetensors. */
static void check_pair(const char *stem, int expect_timm) {
    char pth[256], st[256];
    snprintf(pth, sizeof pth, "%s.pth", stem);
    snprintf(st, sizeof st, "%s.safetensors", stem);
    rvg_dict *got = NULL, *want = NULL, *parsed = NULL;
    CHECK_OK(rvg_pth_load(&got, ref_path(pth)));
    CHECK_OK(rvg_safetensors_load(&want, ref_path(st)));
    if (!got || !want)
        goto done;
    int timm = -1;
    CHECK_OK(rvg_names_normalize(got, &timm));
    CHECK(timm == expect_timm);
    int ok = dicts_equal(stem, got, want);
    CHECK(ok);
    if (ok)
        printf("  ok   %-20s %3lld tensors bit-exact (timm names: %s)\n", stem,
               (long long)rvg_dict_count(got), timm ? "yes" : "no");

    /* The in-memory entry point sees the same archive the same way. */
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(rvg_read_file(ref_path(pth), &buf, &len));
    if (buf) {
        CHECK_OK(rvg_pth_parse(&parsed, buf, len));
        if (parsed) {
            CHECK_OK(rvg_names_normalize(parsed, NULL));
            CHECK(dicts_equal(stem, parsed, want));
        }
        rvg_free(buf);
    }
done:
    rvg_dict_free(got);
    rvg_dict_free(want);
    rvg_dict_free(parsed);
}

/* timm names in a safetensors file normalise the same way. */
static void check_safetensors_timm(const char *form) {
    char a[128], b[128];
    snprintf(a, sizeof a, "timm_%s_timmnames.safetensors", form);
    snprintf(b, sizeof b, "timm_%s.safetensors", form);
    rvg_dict *got = NULL, *want = NULL;
    CHECK_OK(rvg_safetensors_load(&got, ref_path(a)));
    CHECK_OK(rvg_safetensors_load(&want, ref_path(b)));
    if (got && want) {
        int timm = 0;
        CHECK_OK(rvg_names_normalize(got, &timm));
        CHECK(timm == 1);
        CHECK(dicts_equal(a, got, want));
    }
    rvg_dict_free(got);
    rvg_dict_free(want);
}

static void check_refused(const char *file, rvg_status want, const char *needle) {
    rvg_dict *sentinel = rvg_dict_new(), *d = sentinel; /* the loader must reset *out to NULL */
    printf("  %s:\n", file);
    CHECK_STATUS(rvg_pth_load(&d, ref_path(file)), want);
    CHECK(d == NULL);
    if (needle && !strstr(rvg_last_error(), needle)) {
        fprintf(stderr, "FAILED %s: message '%s' does not mention '%s'\n", file, rvg_last_error(),
                needle);
        rvg_test_failed_++;
    }
    if (d != sentinel)
        rvg_dict_free(d);
    rvg_dict_free(sentinel);
}

/* Every truncation and every single-byte flip of a valid archive: BAD_FORMAT or, when the flip hit
 * a byte nothing checks (a timestamp, an unused field), exactly the original tensors. */
static void check_archive_damage(void) {
    uint8_t *buf = NULL;
    size_t len = 0;
    rvg_dict *orig = NULL;
    CHECK_OK(rvg_read_file(ref_path("small.pth"), &buf, &len));
    if (!buf)
        return;
    CHECK_OK(rvg_pth_parse(&orig, buf, len));
    if (!orig) {
        rvg_free(buf);
        return;
    }
    int bad_trunc = 0, n_trunc = 0, wrong = 0, n_flip = 0, n_refused = 0, n_ok = 0;
    for (size_t n = 0; n < len; n++) {
        rvg_dict *d = NULL;
        rvg_status s = rvg_pth_parse(&d, buf, n);
        n_trunc++;
        if (s != RVG_STATUS_BAD_FORMAT || d) {
            if (!bad_trunc)
                fprintf(stderr, "  truncated to %zu bytes: %s (%s)\n", n, rvg_status_str(s),
                        rvg_last_error());
            bad_trunc++;
        }
        rvg_dict_free(d);
    }
    CHECK(bad_trunc == 0);
    uint8_t *copy = malloc(len);
    for (size_t i = 0; copy && i < len; i++) {
        for (int m = 0; m < 2; m++) {
            memcpy(copy, buf, len);
            copy[i] ^= m ? 0x80 : 0x01;
            rvg_dict *d = NULL;
            rvg_status s = rvg_pth_parse(&d, copy, len);
            n_flip++;
            if (s == RVG_OK) {
                n_ok++;
                if (!dicts_equal("flipped archive", d, orig)) {
                    fprintf(stderr, "  byte %zu ^ 0x%02x: loaded, with different tensors\n", i,
                            copy[i] ^ buf[i]);
                    wrong++;
                }
            } else if (s == RVG_STATUS_BAD_FORMAT && !d) {
                n_refused++;
            } else {
                fprintf(stderr, "  byte %zu: %s (%s)\n", i, rvg_status_str(s), rvg_last_error());
                wrong++;
            }
            rvg_dict_free(d);
        }
    }
    CHECK(copy != NULL);
    CHECK(wrong == 0);
    printf("  archive damage: %d truncations refused; %d flips: %d refused, %d harmless\n", n_trunc,
           n_flip, n_refused, n_ok);
    free(copy);
    rvg_dict_free(orig);
    rvg_free(buf);
}

/* flips.bin: data.pkl with each byte flipped, in archives with valid CRCs, so the damage reaches
 * the unpickler. Anything but OK or BAD_FORMAT is a failure; OK happens when a flip lands in a
 * value. */
static void check_pickle_flips(void) {
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(rvg_read_file(ref_path("flips.bin"), &buf, &len));
    if (!buf)
        return;
    int n = 0, refused = 0, loaded = 0, wrong = 0;
    for (size_t at = 0; at + 4 <= len;) {
        uint32_t rec = (uint32_t)buf[at] | (uint32_t)buf[at + 1] << 8 |
                       (uint32_t)buf[at + 2] << 16 | (uint32_t)buf[at + 3] << 24;
        at += 4;
        if (rec > len - at) {
            wrong++;
            break;
        }
        rvg_dict *d = NULL;
        rvg_status s = rvg_pth_parse(&d, buf + at, rec);
        n++;
        if (s == RVG_OK && d)
            loaded++;
        else if (s == RVG_STATUS_BAD_FORMAT && !d)
            refused++;
        else {
            fprintf(stderr, "  flip record %d: %s (%s)\n", n, rvg_status_str(s), rvg_last_error());
            wrong++;
        }
        rvg_dict_free(d);
        at += rec;
    }
    CHECK(n > 100);
    CHECK(wrong == 0);
    printf("  data.pkl flips: %d archives, %d refused, %d still valid pickles\n", n, refused,
           loaded);
    rvg_free(buf);
}

static rvg_status unpickle(const void *bytes, size_t n) {
    rvg__pk *pk = NULL;
    rvg__pk_value *root = NULL;
    rvg_status s = rvg__pickle_load(&pk, &root, bytes, n);
    if ((s == RVG_OK) != (pk != NULL && root != NULL))
        s = RVG_STATUS_IO; /* an inconsistent result fails the caller's CHECK_STATUS */
    rvg__pickle_free(pk);
    return s;
}

#define PK(lit) unpickle(lit, sizeof(lit) - 1)

static void check_unpickler(void) {
    /* Well-formed: nested containers, every scalar opcode, memo round trips, protocol 4 framing. */
    CHECK_STATUS(PK("\x80\x02}q\x00(X\x01\x00\x00\x00"
                    "aK\x01X\x01\x00\x00\x00"
                    "b]q\x01(J\xff\xff\xff"
                    "\xffM\x00\x01\x8a\x02\x00\x80G?\xf0\x00\x00\x00\x00\x00\x00\x88\x89Ne"
                    "X\x01\x00\x00\x00"
                    "ch\x01u."),
                 RVG_OK);
    CHECK_STATUS(PK("\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01k\x94h\x01s."),
                 RVG_OK);
    CHECK_STATUS(PK("\x80\x02}(u](e\x86."), RVG_OK); /* empty SETITEMS / APPENDS */
    CHECK_STATUS(PK("\x80\x02(K\x01K\x02K\x03K\x04t\x85)\x86\x87."), RVG_STATUS_BAD_FORMAT);
    CHECK_STATUS(PK("\x80\x02(K\x01K\x02K\x03K\x04t)K\x05\x87."), RVG_OK);

    /* Broken machines. */
    CHECK_STATUS(PK(""), RVG_STATUS_BAD_FORMAT);
    CHECK_STATUS(PK("\x80\x02}q\x00"), RVG_STATUS_BAD_FORMAT);              /* no STOP */
    CHECK_STATUS(PK("\x80\x02h\x05."), RVG_STATUS_BAD_FORMAT);              /* memo never set */
    CHECK_STATUS(PK("\x80\x02}r\xff\xff\xff\x7f."), RVG_STATUS_BAD_FORMAT); /* huge memo id */
    CHECK_STATUS(PK("\x80\x02s."), RVG_STATUS_BAD_FORMAT);                  /* SETITEM, empty */
    CHECK_STATUS(PK("\x80\x02}(K\x01s."), RVG_STATUS_BAD_FORMAT);           /* pops through MARK */
    CHECK_STATUS(PK("\x80\x02(u."), RVG_STATUS_BAD_FORMAT);                 /* SETITEMS, no dict */
    CHECK_STATUS(PK("\x80\x02}(K\x01u."), RVG_STATUS_BAD_FORMAT);           /* odd SETITEMS */
    CHECK_STATUS(PK("\x80\x02]K\x01s."), RVG_STATUS_BAD_FORMAT);            /* SETITEM on a list */
    CHECK_STATUS(PK("\x80\x02t."), RVG_STATUS_BAD_FORMAT);                  /* TUPLE without MARK */
    CHECK_STATUS(PK("\x80\x02K\x01\x86."), RVG_STATUS_BAD_FORMAT);          /* TUPLE2 of one */
    CHECK_STATUS(PK("\x80\x02\xff."), RVG_STATUS_BAD_FORMAT);               /* unknown opcode */
    CHECK_STATUS(PK("\x80\x02I1\n."), RVG_STATUS_BAD_FORMAT);               /* protocol 0 INT */
    CHECK_STATUS(PK("\x80\x09}."), RVG_STATUS_BAD_FORMAT);                  /* protocol 9 */
    CHECK_STATUS(PK("\x80\x02X\xff\xff\xff\x7f"
                    "ab."),
                 RVG_STATUS_BAD_FORMAT); /* long string */
    CHECK_STATUS(PK("\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09."),
                 RVG_STATUS_BAD_FORMAT); /* 9-byte int */
    CHECK_STATUS(PK("\x80\x02"
                    "cos\nsystem\nX\x02\x00\x00\x00ls\x85R."),
                 RVG_STATUS_BAD_FORMAT);
    CHECK(strstr(rvg_last_error(), "os.system") != NULL);
    CHECK_STATUS(PK("\x80\x02\x8c\x08"
                    "builtins\x8c\x04"
                    "eval\x93."),
                 RVG_STATUS_BAD_FORMAT);
    CHECK_STATUS(PK("\x80\x02"
                    "ctorch\nFloatStorage\n)R."),
                 RVG_STATUS_BAD_FORMAT);
    CHECK_STATUS(PK("\x80\x02"
                    "ccollections\nOrderedDict\n(K\x01tR."),
                 RVG_STATUS_BAD_FORMAT);
    CHECK_STATUS(PK("\x80\x02K\x01)R."), RVG_STATUS_BAD_FORMAT); /* calling an int */
    CHECK_STATUS(PK("\x80\x02K\x01Q."), RVG_STATUS_BAD_FORMAT);  /* persistent id, not a tuple */
    CHECK_STATUS(PK("\x80\x02]K\x01"
                    "b."),
                 RVG_STATUS_BAD_FORMAT); /* BUILD on a list */
    CHECK_STATUS(PK("\x80\x02"
                    "cos"),
                 RVG_STATUS_BAD_FORMAT); /* GLOBAL cut short */

    /* A real torch.save pickle: every prefix is refused, every flip is handled. */
    uint8_t *pkl = NULL;
    size_t len = 0;
    CHECK_OK(rvg_read_file(ref_path("small.pkl"), &pkl, &len));
    if (!pkl)
        return;
    {
        rvg__pk *pk = NULL;
        rvg__pk_value *root = NULL;
        CHECK_OK(rvg__pickle_load(&pk, &root, pkl, len));
        CHECK(root && root->kind == RVG__PK_DICT && root->len == 2);
        const rvg__pk_value *w = rvg__pk_dict_get(root, "w");
        CHECK(w && w->kind == RVG__PK_TENSOR && w->ndim == 2 && w->shape[0] == 2 &&
              w->shape[1] == 3 && w->dtype == RVG_DTYPE_F32);
        rvg__pickle_free(pk);
    }
    int bad = 0;
    for (size_t n = 0; n < len; n++)
        bad += unpickle(pkl, n) != RVG_STATUS_BAD_FORMAT;
    CHECK(bad == 0);
    uint8_t *copy = malloc(len);
    for (size_t i = 0; copy && i < len; i++)
        for (int b = 0; b < 8; b++) {
            memcpy(copy, pkl, len);
            copy[i] ^= (uint8_t)(1u << b);
            rvg_status s = unpickle(copy, len);
            bad += s != RVG_OK && s != RVG_STATUS_BAD_FORMAT;
        }
    CHECK(bad == 0);
    free(copy);
    rvg_free(pkl);
}

static void check_names(void) {
    static const char *const cases[][2] = {
        {"module.stage1.0.rbr_dense.conv.weight", "stage1.0.rbr_dense.conv.weight"},
        {"module.module.stage2.0.rbr_1x1.conv.weight", "stage2.0.rbr_1x1.conv.weight"},
        {"stem.conv_kxk.conv.weight", "stage0.rbr_dense.conv.weight"},
        {"stem.conv_1x1.bn.running_mean", "stage0.rbr_1x1.bn.running_mean"},
        {"stages.0.1.identity.running_var", "stage1.1.rbr_identity.running_var"},
        {"stages.3.0.conv_kxk.bn.num_batches_tracked", "stage4.0.rbr_dense.bn.num_batches_tracked"},
        {"stages.2.13.attn.fc1.weight", "stage3.13.se.down.weight"},
        {"module.stages.2.13.attn.fc2.bias", "stage3.13.se.up.bias"},
        {"stages.1.0.reparam_conv.weight", "stage2.0.rbr_reparam.weight"},
        {"stem.reparam_conv.bias", "stage0.rbr_reparam.bias"},
        {"head.fc.weight", "linear.weight"},
        {"module.head.fc.bias", "linear.bias"},
        {"stages.x.0.identity.weight", "stages.x.0.identity.weight"}, /* not a timm stage path */
        {"features.identity.weight", "features.identity.weight"},     /* not under a timm block */
        {"stem.my_identity.weight", "stage0.my_identity.weight"},     /* whole components only */
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    rvg_dict *d = rvg_dict_new();
    const int64_t one = 1;
    for (int i = 0; i < n; i++)
        CHECK_OK(rvg_dict_add(d, cases[i][0], RVG_DTYPE_F32, 1, &one, NULL));
    int timm = 0;
    CHECK_OK(rvg_names_normalize(d, &timm));
    CHECK(timm == 1);
    for (int i = 0; i < n; i++) {
        const rvg_tensor *t = rvg_dict_at(d, i);
        if (!t || strcmp(t->name, cases[i][1]) != 0) {
            fprintf(stderr, "FAILED names: '%s' -> '%s', expected '%s'\n", cases[i][0],
                    t ? t->name : "(none)", cases[i][1]);
            rvg_test_failed_++;
        } else {
            rvg_test_passed_++;
        }
    }
    /* Normalising again changes nothing, and official names are not timm names. */
    CHECK_OK(rvg_names_normalize(d, &timm));
    CHECK(timm == 0);
    rvg_dict_free(d);

    /* Two tensors that would share a name. */
    d = rvg_dict_new();
    CHECK_OK(rvg_dict_add(d, "linear.weight", RVG_DTYPE_F32, 1, &one, NULL));
    CHECK_OK(rvg_dict_add(d, "module.linear.weight", RVG_DTYPE_F32, 1, &one, NULL));
    CHECK_STATUS(rvg_names_normalize(d, NULL), RVG_STATUS_BAD_NAME);
    rvg_dict_free(d);
}

int main(int argc, char **argv) {
    (void)rvg_test_close; /* harness helpers for float tolerances; every check here is bit-exact */
    (void)rvg_test_max_abs;
    if (argc < 2)
        rvg_test_skip("usage: test_torch_pth REF_DIR (written by tests/ref/gen_pth.py)");
    ref_dir = argv[1];
    FILE *probe = fopen(ref_path("official_train.pth"), "rb");
    if (!probe)
        rvg_test_skip("no reference checkpoints; run tests/ref/gen_pth.py with /usr/bin/python3");
    fclose(probe);

    printf("names:\n");
    check_names();
    printf("checkpoints vs their safetensors twins:\n");
    check_pair("official_train", 0);
    check_pair("official_deploy", 0);
    check_pair("module_train", 0);
    check_pair("wrapped_state_dict", 0);
    check_pair("wrapped_model", 0);
    check_pair("timm_train", 1);
    check_pair("timm_deploy", 1);
    check_pair("half", 0);
    check_pair("views", 0);
    check_safetensors_timm("train");
    check_safetensors_timm("deploy");

    printf("refused inputs:\n");
    check_refused("no_such_file.pth", RVG_STATUS_IO, NULL);
    check_refused("bad_os_system.pth", RVG_STATUS_BAD_FORMAT, "os.system");
    check_refused("bad_reduce_system.pth", RVG_STATUS_BAD_FORMAT, "system");
    check_refused("bad_load_from_bytes.pth", RVG_STATUS_BAD_FORMAT, "_load_from_bytes");
    check_refused("bad_missing_storage.pth", RVG_STATUS_BAD_FORMAT, "missing");
    check_refused("bad_short_storage.pth", RVG_STATUS_BAD_FORMAT, "bytes");
    check_refused("bad_past_storage.pth", RVG_STATUS_BAD_FORMAT, "past");
    check_refused("bad_offset_past_storage.pth", RVG_STATUS_BAD_FORMAT, "past");
    check_refused("bad_expanded.pth", RVG_STATUS_UNSUPPORTED, "expand");
    check_refused("bad_no_tensors.pth", RVG_STATUS_BAD_FORMAT, "no tensors");
    check_refused("bad_legacy.pth", RVG_STATUS_UNSUPPORTED, "legacy");
    check_refused("small.pkl", RVG_STATUS_UNSUPPORTED, "legacy"); /* a bare pickle */
    check_refused("official_train.safetensors", RVG_STATUS_BAD_FORMAT, "zip");

    printf("damage:\n");
    check_archive_damage();
    check_pickle_flips();
    printf("unpickler:\n");
    check_unpickler();
    return rvg_test_finish();
}
