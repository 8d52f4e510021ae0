/* idx_file.c - IDX files (the MNIST format), plain or gzip-compressed,
 * through zlib (the only file that includes zlib.h; gzread reads plain
 * files transparently).
 *
 * Layout: two zero bytes, a type byte (0x08 u8, 0x09 i8, 0x0B i16, 0x0C
 * i32, 0x0D f32, 0x0E f64), a dimension count (1-4), the dimensions as
 * big-endian u32, then the data big-endian. Every way a file can be wrong
 * (cannot open, bad magic, unsupported type, zero or absurd dimensions,
 * truncated data, trailing bytes, gzip corruption) is an error that names
 * the file and what was found.
 */
#include "larch/data.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_MAX_BYTES ((size_t)1 << 34)   /* refuse more than 16 GiB of data */

static int type_size(int t)
{
    switch (t) {
    case 0x08: case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C: case 0x0D: return 4;
    case 0x0E: return 8;
    }
    return 0;
}

/* Reads exactly len bytes; returns the count read (< len at end of data), or
 * -1 on a gzip error (message recorded). */
static long long gz_read_all(gzFile f, void *buf, size_t len, const char *path)
{
    size_t done = 0;
    while (done < len) {
        size_t want = len - done > (1u << 30) ? (1u << 30) : len - done;
        int got = gzread(f, (char *)buf + done, (unsigned)want);
        if (got < 0) {
            int err;
            const char *msg = gzerror(f, &err);
            larch_fail(LARCH_ERR_FORMAT, "%s: corrupt or unreadable data: %s", path,
                       err == Z_ERRNO ? strerror(errno) : msg);
            return -1;
        }
        if (got == 0) {
            int err;
            const char *msg = gzerror(f, &err);
            if (err != Z_OK && err != Z_STREAM_END) {
                larch_fail(LARCH_ERR_FORMAT, "%s: corrupt gzip data: %s", path, msg);
                return -1;
            }
            break;
        }
        done += (size_t)got;
    }
    return (long long)done;
}

/* Big-endian to host order, in place. */
static void from_be(void *data, size_t count, int size)
{
    uint8_t *p = data;
    if (size == 1) return;
    for (size_t i = 0; i < count; i++, p += size)
        for (int a = 0, b = size - 1; a < b; a++, b--) { uint8_t t = p[a]; p[a] = p[b]; p[b] = t; }
}

larch_status larch_idx_read(const char *path, larch_idx *out)
{
    memset(out, 0, sizeof *out);
    gzFile f = gzopen(path, "rb");
    if (!f) return larch_fail(LARCH_ERR_IO, "cannot open %s: %s", path, errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 17);
    larch_status s = LARCH_OK;
    uint8_t head[4], dims[16];
    void *data = NULL;
    long long got = gz_read_all(f, head, 4, path);
    if (got < 0) { s = LARCH_ERR_FORMAT; goto done; }
    if (got < 4) { s = larch_fail(LARCH_ERR_FORMAT, "%s: truncated: %lld bytes, too short for an IDX header", path, got); goto done; }
    if (head[0] != 0 || head[1] != 0) {
        s = larch_fail(LARCH_ERR_FORMAT, "%s: not an IDX file: bad magic 0x%02x%02x%02x%02x", path, head[0], head[1], head[2], head[3]);
        goto done;
    }
    int esize = type_size(head[2]);
    if (!esize) { s = larch_fail(LARCH_ERR_FORMAT, "%s: unsupported IDX element type 0x%02x", path, head[2]); goto done; }
    if (head[3] < 1 || head[3] > 4) { s = larch_fail(LARCH_ERR_FORMAT, "%s: IDX dimension count %d is not 1 to 4", path, head[3]); goto done; }
    got = gz_read_all(f, dims, (size_t)4 * head[3], path);
    if (got < 0) { s = LARCH_ERR_FORMAT; goto done; }
    if (got < 4 * head[3]) { s = larch_fail(LARCH_ERR_FORMAT, "%s: truncated in the header", path); goto done; }
    size_t count = 1;
    for (int i = 0; i < head[3]; i++) {
        uint32_t d = (uint32_t)dims[4 * i] << 24 | (uint32_t)dims[4 * i + 1] << 16 | (uint32_t)dims[4 * i + 2] << 8 | dims[4 * i + 3];
        if (d == 0 || d > INT32_MAX || count > IDX_MAX_BYTES / d) {
            s = larch_fail(LARCH_ERR_FORMAT, "%s: implausible dimension %u (dimension %d)", path, d, i);
            goto done;
        }
        out->dims[i] = (int)d;
        count *= d;
    }
    if (count > IDX_MAX_BYTES / (size_t)esize) { s = larch_fail(LARCH_ERR_FORMAT, "%s: too large", path); goto done; }
    size_t bytes = count * (size_t)esize;
    data = malloc(bytes ? bytes : 1);
    if (!data) { s = larch_fail(LARCH_ERR_NOMEM, "%s: out of memory for %zu bytes", path, bytes); goto done; }
    got = gz_read_all(f, data, bytes, path);
    if (got < 0) { s = LARCH_ERR_FORMAT; goto done; }
    if ((size_t)got < bytes) {
        s = larch_fail(LARCH_ERR_FORMAT, "%s: truncated: expected %zu data bytes, got %lld", path, bytes, got);
        goto done;
    }
    uint8_t extra;
    got = gz_read_all(f, &extra, 1, path);
    if (got < 0) { s = LARCH_ERR_FORMAT; goto done; }
    if (got > 0) { s = larch_fail(LARCH_ERR_FORMAT, "%s: trailing bytes after %zu data bytes", path, bytes); goto done; }
    from_be(data, count, esize);
    out->type = head[2];
    out->ndim = head[3];
    out->count = count;
    out->data = data;
    data = NULL;
done:
    free(data);
    gzclose(f);
    return s;
}

void larch_idx_free(larch_idx *idx)
{
    if (!idx) return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}

larch_status larch_idx_write(const char *path, const larch_idx *idx, int gz)
{
    int esize = type_size(idx->type);
    if (!esize || idx->ndim < 1 || idx->ndim > 4)
        return larch_fail(LARCH_ERR_INVALID, "%s: cannot write IDX type 0x%02x with %d dimensions", path, idx->type, idx->ndim);
    gzFile f = gzopen(path, gz ? "wb6" : "wbT");                 /* T: no compression, plain file */
    if (!f) return larch_fail(LARCH_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    uint8_t head[4 + 16] = {0, 0, (uint8_t)idx->type, (uint8_t)idx->ndim};
    for (int i = 0; i < idx->ndim; i++) {
        uint32_t d = (uint32_t)idx->dims[i];
        head[4 + 4 * i] = (uint8_t)(d >> 24); head[5 + 4 * i] = (uint8_t)(d >> 16);
        head[6 + 4 * i] = (uint8_t)(d >> 8); head[7 + 4 * i] = (uint8_t)d;
    }
    larch_status s = LARCH_OK;
    if (gzwrite(f, head, (unsigned)(4 + 4 * idx->ndim)) <= 0) s = larch_fail(LARCH_ERR_IO, "cannot write %s", path);
    uint8_t buf[8192];
    const uint8_t *src = idx->data;
    size_t total = idx->count * (size_t)esize;
    for (size_t off = 0; !s && off < total; off += sizeof buf) {
        size_t n = total - off < sizeof buf ? total - off : sizeof buf;
        memcpy(buf, src + off, n);
        from_be(buf, n / (size_t)esize, esize);                   /* host to big-endian: the same swap */
        if (gzwrite(f, buf, (unsigned)n) != (int)n) s = larch_fail(LARCH_ERR_IO, "cannot write %s", path);
    }
    if (gzclose(f) != Z_OK && !s) s = larch_fail(LARCH_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return s;
}
