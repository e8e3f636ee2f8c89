/* harness.h - the tiny test harness every tests/test_*.c uses.
 *
 * A test binary counts checks, prints each failure with its location, and ends with
 * `return rvg_test_finish();`, which prints "N passed, N failed" and returns non-zero when anything
 * failed (77, ctest's "skipped", only through rvg_test_skip). Header-only on purpose: each test is one
 * translation unit and there is nothing to share at link time.
 */
#ifndef RVG_TEST_HARNESS_H
#define RVG_TEST_HARNESS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rvg/status.h"
#include "rvg/tensor.h"

static int rvg_test_passed_ = 0;
static int rvg_test_failed_ = 0;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (cond) {                                                                        \
            rvg_test_passed_++;                                                            \
        } else {                                                                           \
            rvg_test_failed_++;                                                            \
            fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
        }                                                                                  \
    } while (0)

#define CHECK_OK(call)                                                                     \
    do {                                                                                   \
        rvg_status s_ = (call);                                                            \
        if (s_ == RVG_OK) {                                                                \
            rvg_test_passed_++;                                                            \
        } else {                                                                           \
            rvg_test_failed_++;                                                            \
            fprintf(stderr, "FAILED %s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,     \
                    rvg_status_str(s_), rvg_last_error());                                 \
        }                                                                                  \
    } while (0)

/* Fails the test when call does not return `expected`. Prints the error message either way, so a
 * reader of the log sees that the message is clear. */
#define CHECK_STATUS(call, expected)                                                       \
    do {                                                                                   \
        rvg_status s_ = (call);                                                            \
        if (s_ == (expected)) {                                                            \
            rvg_test_passed_++;                                                            \
            printf("  expected error: %s\n", rvg_last_error());                            \
        } else {                                                                           \
            rvg_test_failed_++;                                                            \
            fprintf(stderr, "FAILED %s:%d: %s -> %s (%s), expected %s\n", __FILE__,        \
                    __LINE__, #call, rvg_status_str(s_), rvg_last_error(),                 \
                    rvg_status_str(expected));                                             \
        }                                                                                  \
    } while (0)

/* Compares got against want elementwise: |got-want| <= atol + rtol*|want|. On failure prints the
 * maximum error and the first bad index, decoded as NCHW when dims (up to 4) are given.
 * Returns 1 when close. */
static inline int rvg_test_close(const char *what, const float *got, const float *want, int64_t n,
                          float atol, float rtol, const int64_t *dims, int ndim) {
    double max_err = 0.0;
    int64_t max_i = -1, first_bad = -1;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)want[i]);
        if (!(e <= max_err) || isnan(e)) {
            if (isnan(e) || e > max_err) {
                max_err = isnan(e) ? INFINITY : e;
                max_i = i;
            }
        }
        if (first_bad < 0 && !(e <= atol + rtol * fabs((double)want[i])))
            first_bad = i;
    }
    if (first_bad < 0) {
        rvg_test_passed_++;
        printf("  ok   %-48s n=%-9lld max|err|=%.3g\n", what, (long long)n, max_err);
        return 1;
    }
    rvg_test_failed_++;
    char idx[128] = "";
    if (dims && ndim > 0) {
        int64_t rem = first_bad, c[RVG_MAX_DIMS] = {0};
        for (int d = ndim - 1; d >= 0; d--) {
            c[d] = rem % dims[d];
            rem /= dims[d];
        }
        int off = snprintf(idx, sizeof idx, " at [");
        for (int d = 0; d < ndim && off < (int)sizeof idx; d++)
            off += snprintf(idx + off, sizeof idx - (size_t)off, d ? ",%lld" : "%lld",
                            (long long)c[d]);
        if (off < (int)sizeof idx)
            snprintf(idx + off, sizeof idx - (size_t)off, "]");
    }
    fprintf(stderr,
            "FAILED %-48s n=%lld max|err|=%.3g (at %lld), first bad index %lld%s: got %.8g want "
            "%.8g (atol %.2g rtol %.2g)\n",
            what, (long long)n, max_err, (long long)max_i, (long long)first_bad, idx,
            (double)got[first_bad], (double)want[first_bad], (double)atol, (double)rtol);
    return 0;
}

/* Largest |x| over n values (for tolerances relative to the largest logit). */
static inline float rvg_test_max_abs(const float *x, int64_t n) {
    float m = 0.f;
    for (int64_t i = 0; i < n; i++)
        m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

/* Test data: uniform floats in [-1, 1) from xorshift64* with a fixed seed, so failures reproduce.
 * rvg_test_seed() picks the sequence; the arrays are malloc'ed (free them). */
static uint64_t rvg_test_rng_ = 0x9E3779B97F4A7C15ull;

static inline void rvg_test_seed(uint64_t seed) { rvg_test_rng_ = seed; }

static inline float rvg_test_frand(void) {
    rvg_test_rng_ ^= rvg_test_rng_ >> 12;
    rvg_test_rng_ ^= rvg_test_rng_ << 25;
    rvg_test_rng_ ^= rvg_test_rng_ >> 27;
    uint64_t r = rvg_test_rng_ * 2685821657736338717ull;
    return (float)((double)(r >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static inline float *rvg_test_new_rand(int64_t n) {
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; p && i < n; i++)
        p[i] = rvg_test_frand();
    return p;
}

static inline float *rvg_test_new_copy(const float *src, int64_t n) {
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (p && n > 0)
        memcpy(p, src, sizeof(float) * (size_t)n);
    return p;
}

/* Prints the summary line ctest logs and returns the process exit code. */
static inline int rvg_test_finish(void) {
    printf("%d passed, %d failed\n", rvg_test_passed_, rvg_test_failed_);
    return rvg_test_failed_ ? 1 : 0;
}

/* Exits with ctest's skip code, saying why (e.g. PyTorch reference tensors are unavailable). */
static inline void rvg_test_skip(const char *why) {
    printf("SKIPPED: %s\n", why);
    exit(77);
}

#endif
