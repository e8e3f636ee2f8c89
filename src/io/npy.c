/* npy.c - read and write NumPy .npy arrays (format version 1.0/2.0/3.0), float32 C order.
 *
 * Hand-written because Debian has no C library for .npy (cnpy is C++ and not packaged) and the
 * format is tiny: magic "\x93NUMPY", version, header length, then a Python dict literal
 * {'descr': '<f4', 'fortran_order': False, 'shape': (N, C, H, W), } padded with spaces. The parser
 * below accepts exactly that dict form and rejects everything else (big-endian, Fortran order,
 * object arrays). Float64 arrays are read and converted, since NumPy defaults to float64.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rvg/io.h"

static const char *find_key(const char *h, const char *key) {
    const char *p = strstr(h, key);
    if (!p)
        return NULL;
    p += strlen(key);
    while (*p == ' ' || *p == ':')
        p++;
    return p;
}

rvg_status rvg_npy_load_f32(const char *path, float **data, int *ndim,
                            int64_t shape[RVG_MAX_DIMS]) {
    *data = NULL;
    *ndim = 0;
    uint8_t *buf;
    size_t len;
    RVG_TRY(rvg_read_file(path, &buf, &len));
    rvg_status st = RVG_OK;
    char *header = NULL;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        st = rvg_error(RVG_STATUS_BAD_FORMAT, "%s: not a .npy file (bad magic)", path);
        goto done;
    }
    size_t hlen, hstart;
    if (buf[6] == 1) {
        hlen = buf[8] | (size_t)buf[9] << 8;
        hstart = 10;
    } else if ((buf[6] == 2 || buf[6] == 3) && len >= 12) {
        hlen = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hstart = 12;
    } else {
        st = rvg_error(RVG_STATUS_BAD_FORMAT, "%s: unsupported .npy version %d", path, buf[6]);
        goto done;
    }
    if (hlen > len - hstart) {
        st = rvg_error(RVG_STATUS_BAD_FORMAT, "%s: truncated .npy header", path);
        goto done;
    }
    header = malloc(hlen + 1);
    if (!header) {
        st = rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
        goto done;
    }
    memcpy(header, buf + hstart, hlen);
    header[hlen] = '\0';
    const char *descr = find_key(header, "'descr'");
    const char *fo = find_key(header, "'fortran_order'");
    const char *sh = find_key(header, "'shape'");
    if (!descr || !fo || !sh || *sh != '(') {
        st = rvg_error(RVG_STATUS_BAD_FORMAT, "%s: malformed .npy header", path);
        goto done;
    }
    int is_f64 = 0;
    if (strncmp(descr, "'<f4'", 5) == 0)
        is_f64 = 0;
    else if (strncmp(descr, "'<f8'", 5) == 0)
        is_f64 = 1;
    else {
        /* the quoted descr alone (it is followed by ", 'fortran_order'..." in the header) */
        const char *q = descr[0] == '\'' ? strchr(descr + 1, '\'') : NULL;
        const int n = q && q - descr < 16 ? (int)(q - descr) + 1 : 6;
        st = rvg_error(RVG_STATUS_UNSUPPORTED,
                       "%s: array dtype %.*s; expected little-endian float32 ('<f4') or float64",
                       path, n, descr);
        goto done;
    }
    if (strncmp(fo, "False", 5) != 0) {
        st = rvg_error(RVG_STATUS_UNSUPPORTED, "%s: Fortran-order arrays are not supported", path);
        goto done;
    }
    int nd = 0;
    int64_t numel = 1;
    const char *p = sh + 1;
    for (;;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == ')')
            break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || nd == RVG_MAX_DIMS || (v && numel > (1ll << 40) / v)) {
            st = rvg_error(RVG_STATUS_BAD_FORMAT, "%s: bad shape in .npy header", path);
            goto done;
        }
        shape[nd++] = v;
        numel *= v;
        p = end;
    }
    size_t esize = is_f64 ? 8 : 4, off = hstart + hlen;
    if ((size_t)numel * esize > len - off) {
        st = rvg_error(RVG_STATUS_BAD_FORMAT,
                       "%s: truncated .npy data (%zu bytes, shape needs %zu)", path, len - off,
                       (size_t)numel * esize);
        goto done;
    }
    float *out = rvg_alloc((size_t)numel * sizeof(float));
    if (!out) {
        st = rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
        goto done;
    }
    if (is_f64) {
        for (int64_t i = 0; i < numel; i++) {
            double v;
            memcpy(&v, buf + off + (size_t)i * 8, 8);
            out[i] = (float)v;
        }
    } else {
        memcpy(out, buf + off, (size_t)numel * 4);
    }
    *data = out;
    *ndim = nd;
done:
    free(header);
    rvg_free(buf);
    return st;
}

rvg_status rvg_npy_save_f32(const char *path, const float *data, int ndim, const int64_t *shape) {
    char header[256];
    int off = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        off += snprintf(header + off, sizeof header - (size_t)off, "%lld,%s",
                        (long long)shape[i], i + 1 < ndim ? " " : "");
        numel *= shape[i];
    }
    off += snprintf(header + off, sizeof header - (size_t)off, "), }");
    /* Pad with spaces so that magic + 4 + header (ending in '\n') is a multiple of 64. */
    int total = 10 + off + 1;
    int pad = (64 - total % 64) % 64;
    if (off + pad + 1 >= (int)sizeof header)
        return rvg_error(RVG_STATUS_BAD_ARGUMENT, "npy: too many dimensions");
    memset(header + off, ' ', (size_t)pad);
    off += pad;
    header[off++] = '\n';
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(off & 0xff),
                       (uint8_t)(off >> 8)};
    FILE *f;
    char *tmp;
    RVG_TRY(rvg_atomic_open(path, &f, &tmp));
    if (fwrite(pre, 1, 10, f) != 10 || fwrite(header, 1, (size_t)off, f) != (size_t)off ||
        fwrite(data, sizeof(float), (size_t)numel, f) != (size_t)numel) {
        rvg_atomic_abort(f, tmp);
        return rvg_error(RVG_STATUS_IO, "writing '%s' failed", path);
    }
    return rvg_atomic_commit(f, tmp, path);
}
