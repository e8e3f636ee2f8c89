/* status.c - status strings and the thread-local last-error message.
 *
 * The message buffer is per thread so that data-loader threads and the main thread never overwrite
 * each other's reasons. It does not allocate.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "rvg/status.h"

static _Thread_local char last_error[512];

const char *rvg_status_str(rvg_status s) {
    switch (s) {
    case RVG_OK: return "ok";
    case RVG_STATUS_NO_MEMORY: return "out of memory";
    case RVG_STATUS_IO: return "I/O error";
    case RVG_STATUS_BAD_FORMAT: return "bad file format";
    case RVG_STATUS_BAD_SHAPE: return "bad shape";
    case RVG_STATUS_BAD_NAME: return "bad tensor name";
    case RVG_STATUS_BAD_ARGUMENT: return "bad argument";
    case RVG_STATUS_UNSUPPORTED: return "unsupported";
    case RVG_STATUS_MPI: return "MPI error";
    }
    return "unknown status";
}

const char *rvg_last_error(void) { return last_error; }

void rvg_clear_error(void) { last_error[0] = '\0'; }

rvg_status rvg_error(rvg_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

void rvg__assert_fail(const char *expr, const char *file, int line) {
    /* The one place the library writes to stderr: an internal invariant is broken, so the process
     * state cannot be trusted and returning a status would hide a bug. */
    fprintf(stderr, "rvg: internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
    abort();
}
