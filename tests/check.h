/* check.h - minimal assertions for larch's CTest executables.
 * CHECK(cond, fmt, ...) records a failure and continues; main returns
 * check_result() so a test fails when any check failed. */
#ifndef LARCH_TESTS_CHECK_H
#define LARCH_TESTS_CHECK_H
#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_failures = 0, check_count = 0;

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        check_count++;                                                            \
        if (!(cond)) {                                                            \
            check_failures++;                                                     \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
        }                                                                         \
    } while (0)

/* The call must succeed; prints larch_errmsg() otherwise. */
#define CHECK_OK(expr)                                                            \
    do {                                                                          \
        larch_status s_ = (expr);                                                 \
        CHECK(s_ == LARCH_OK, "%s -> %s: %s", #expr, larch_status_name(s_), larch_errmsg()); \
    } while (0)

/* The call must fail with status `st` and a message containing `needle`. */
#define CHECK_FAIL(expr, st, needle)                                              \
    do {                                                                          \
        larch_clear_error();                                                      \
        larch_status s_ = (expr);                                                 \
        CHECK(s_ == (st), "%s -> %s (want %s): %s", #expr, larch_status_name(s_),  \
              larch_status_name(st), larch_errmsg());                             \
        CHECK(strstr(larch_errmsg(), (needle)) != NULL, "message '%s' lacks '%s'", \
              larch_errmsg(), (needle));                                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                     \
    do {                                                                          \
        double a_ = (a), b_ = (b);                                                \
        CHECK(fabs(a_ - b_) <= (tol), "%s = %.9g, %s = %.9g, |diff| %.3g > %.3g", #a, a_, #b, b_, \
              fabs(a_ - b_), (double)(tol));                                      \
    } while (0)

static inline int check_result(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}
#endif
