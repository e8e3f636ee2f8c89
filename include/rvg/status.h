/* status.h - error codes and the thread-local error message of the rvg library.
 *
 * Every public function that can fail returns an rvg_status (RVG_OK == 0) and, on failure, leaves a
 * human-readable reason in rvg_last_error() ("conv2d: input has 3 channels, weight expects 16").
 * The library never prints and never exits; tools/ decides what to do with an error.
 */
#ifndef RVG_STATUS_H
#define RVG_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    RVG_OK = 0,
    RVG_STATUS_NO_MEMORY,     /* an allocation failed */
    RVG_STATUS_IO,            /* open/read/write/rename failed */
    RVG_STATUS_BAD_FORMAT,    /* a file is truncated, has the wrong magic, or does not parse */
    RVG_STATUS_BAD_SHAPE,     /* tensor shapes do not agree */
    RVG_STATUS_BAD_NAME,      /* a tensor name is missing or unexpected */
    RVG_STATUS_BAD_ARGUMENT,  /* an option or argument is out of range */
    RVG_STATUS_UNSUPPORTED,   /* valid input this build cannot handle */
    RVG_STATUS_MPI,           /* a collective operation failed */
} rvg_status;

/* Fixed, static string naming a status ("bad shape"). Never NULL. */
const char *rvg_status_str(rvg_status s);

/* Details of the last error set on this thread. Never NULL; "" when none. */
const char *rvg_last_error(void);

/* Sets this thread's error message (printf format) and returns `s`, so callers can write
 * `return rvg_error(RVG_STATUS_BAD_SHAPE, "conv2d: ...", ...);`. */
rvg_status rvg_error(rvg_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Clears this thread's error message. */
void rvg_clear_error(void);

/* Internal invariant check. Stays on in release builds; reports file:line and aborts. Only for
 * broken invariants inside the library, never for bad user input. */
void rvg__assert_fail(const char *expr, const char *file, int line);
#define RVG_ASSERT(e) ((e) ? (void)0 : rvg__assert_fail(#e, __FILE__, __LINE__))

/* Propagates a failing status: `RVG_TRY(f(x));` */
#define RVG_TRY(call)                   \
    do {                                \
        rvg_status rvg__s_ = (call);    \
        if (rvg__s_ != RVG_OK)          \
            return rvg__s_;             \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
