/* error.c - per-thread error messages (see include/larch/error.h). */
#include "larch/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char g_msg[2048];

larch_status larch_fail(larch_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return s;
}

larch_status larch_fail_context(larch_status s, const char *fmt, ...)
{
    char ctx[512], old[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    if (snprintf(g_msg, sizeof g_msg, "%s: %s", ctx, old) >= (int)sizeof g_msg)
        memcpy(g_msg + sizeof g_msg - 4, "...", 4);          /* truncated: say so */
    return s;
}

const char *larch_errmsg(void) { return g_msg; }
void larch_clear_error(void) { g_msg[0] = '\0'; }

const char *larch_status_name(larch_status s)
{
    switch (s) {
    case LARCH_OK: return "ok";
    case LARCH_ERR_INVALID: return "invalid";
    case LARCH_ERR_CONFIG: return "config";
    case LARCH_ERR_IO: return "io";
    case LARCH_ERR_FORMAT: return "format";
    case LARCH_ERR_SHAPE: return "shape";
    case LARCH_ERR_NOMEM: return "nomem";
    case LARCH_ERR_NUMERIC: return "numeric";
    case LARCH_ERR_MPI: return "mpi";
    case LARCH_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown";
}

const char *larch_excerpt(const char *s, char *buf, size_t len)
{
    if (len == 0) return buf;
    size_t n = strlen(s);
    if (n <= LARCH_EXCERPT_MAX && n < len) { memcpy(buf, s, n + 1); return buf; }
    if (len < 4) { buf[0] = '\0'; return buf; }
    size_t keep = LARCH_EXCERPT_MAX < len - 4 ? LARCH_EXCERPT_MAX : len - 4;
    while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80) keep--;   /* do not cut a UTF-8 character */
    memcpy(buf, s, keep);
    memcpy(buf + keep, "...", 4);
    return buf;
}

void *larch_calloc(size_t n, size_t size, const char *what)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) larch_fail(LARCH_ERR_NOMEM, "out of memory allocating %zu x %zu bytes for %s", n, size, what);
    return p;
}

void *larch_aligned_alloc(size_t bytes, const char *what)
{
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p) {
        larch_fail(LARCH_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes, what);
        return NULL;
    }
    memset(p, 0, rounded);
    return p;
}
