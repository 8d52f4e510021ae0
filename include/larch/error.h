/* larch/error.h - errors are values.
 *
 * A function that can fail on user input (files, configs, shapes) returns a
 * larch_status and records a message with larch_fail(). The message names
 * what is wrong (file, line, key, tensor). Only the command-line layer prints
 * and exits. Messages are per thread. Internal invariants use assert().
 */
#ifndef LARCH_ERROR_H
#define LARCH_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef LARCH_API
#define LARCH_API __attribute__((visibility("default")))
#endif

typedef enum larch_status {
    LARCH_OK = 0,
    LARCH_ERR_INVALID,   /* an argument or a value is out of its domain     */
    LARCH_ERR_CONFIG,    /* a configuration file or override is wrong        */
    LARCH_ERR_IO,        /* a file could not be opened, read or written      */
    LARCH_ERR_FORMAT,    /* a file's content is malformed or truncated       */
    LARCH_ERR_SHAPE,     /* tensor shapes do not fit together                */
    LARCH_ERR_NOMEM,     /* an allocation failed                             */
    LARCH_ERR_NUMERIC,   /* a NaN or Inf appeared where it must not          */
    LARCH_ERR_MPI,       /* a collective failed or another rank failed       */
    LARCH_ERR_INTERRUPTED /* stopped by a signal (preemption)                */
} larch_status;

/* Records a printf-style message for the calling thread and returns `s`, so
 * that `return larch_fail(LARCH_ERR_IO, "%s: %s", path, strerror(errno));`
 * is the idiom. */
LARCH_API larch_status larch_fail(larch_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepends context to the current message ("loading X: <old message>"). */
LARCH_API larch_status larch_fail_context(larch_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The calling thread's last message ("" when none). */
LARCH_API const char *larch_errmsg(void);
LARCH_API void larch_clear_error(void);
/* A short stable name for a status ("config", "io", ...). */
LARCH_API const char *larch_status_name(larch_status s);

/* A user's value quoted in a message: its first LARCH_EXCERPT_MAX bytes (not
 * cutting a UTF-8 character), followed by "..." when it is longer. `buf`
 * should hold LARCH_EXCERPT_MAX + 4 bytes; returns buf. */
#define LARCH_EXCERPT_MAX 60
LARCH_API const char *larch_excerpt(const char *s, char *buf, size_t len);

/* Allocation helpers that record LARCH_ERR_NOMEM with `what` on failure. */
LARCH_API void *larch_calloc(size_t n, size_t size, const char *what);
LARCH_API void *larch_aligned_alloc(size_t bytes, const char *what); /* 64-byte aligned, zeroed */

#ifdef __cplusplus
}
#endif
#endif
