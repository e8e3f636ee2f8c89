/* file.c - whole-file reads and atomic file replacement.
 *
 * Every file rvg writes (weights, checkpoints, logs that must not be half-written) goes through
 * rvg_atomic_open/commit: the data lands in PATH.tmp.<pid>, is flushed and fsync'd, and only then
 * renamed over PATH, which POSIX makes atomic on one file system. A crash leaves either the old
 * file or the new one, never a torn one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rvg/io.h"

rvg_status rvg_read_file(const char *path, uint8_t **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return rvg_error(RVG_STATUS_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return rvg_error(RVG_STATUS_IO, "'%s' is not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *b = rvg_alloc(n + 1);
    if (!b) {
        fclose(f);
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory reading '%s' (%zu bytes)", path, n);
    }
    if (n && fread(b, 1, n, f) != n) {
        fclose(f);
        rvg_free(b);
        return rvg_error(RVG_STATUS_IO, "short read on '%s'", path);
    }
    fclose(f);
    *buf = b;
    *len = n;
    return RVG_OK;
}

rvg_status rvg_atomic_open(const char *path, FILE **f, char **tmp_path) {
    *f = NULL;
    *tmp_path = NULL;
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp)
        return rvg_error(RVG_STATUS_NO_MEMORY, "out of memory");
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        rvg_status s = rvg_error(RVG_STATUS_IO, "cannot create '%s': %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    *f = fp;
    *tmp_path = tmp;
    return RVG_OK;
}

rvg_status rvg_atomic_commit(FILE *f, char *tmp_path, const char *path) {
    int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    int err = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (bad) {
        unlink(tmp_path);
        free(tmp_path);
        return rvg_error(RVG_STATUS_IO, "writing '%s' failed: %s", path, strerror(err));
    }
    if (rename(tmp_path, path) != 0) {
        rvg_status s = rvg_error(RVG_STATUS_IO, "cannot rename '%s' to '%s': %s", tmp_path, path,
                                 strerror(errno));
        unlink(tmp_path);
        free(tmp_path);
        return s;
    }
    free(tmp_path);
    return RVG_OK;
}

void rvg_atomic_abort(FILE *f, char *tmp_path) {
    if (f)
        fclose(f);
    if (tmp_path) {
        unlink(tmp_path);
        free(tmp_path);
    }
}
