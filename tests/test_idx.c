/* test_idx.c - the IDX reader on files this test writes itself: valid files
 * of several element types, plain and gzip; and each way a file can be
 * wrong (missing, truncated, bad magic, unsupported type, bad dimension
 * count, trailing bytes, corrupt gzip), each with a message naming the file
 * and the problem. */
#include "check.h"
#include "larch/larch.h"

#include <stdlib.h>
#include <unistd.h>

static char dir[] = "/tmp/larch_idx_XXXXXX";

static void path_of(char *out, size_t len, const char *name) { snprintf(out, len, "%s/%s", dir, name); }

static void write_raw(const char *name, const void *bytes, size_t n)
{
    char p[256];
    path_of(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    fwrite(bytes, 1, n, f);
    fclose(f);
}

static void round_trip(int type, int esize, int gz)
{
    char p[256], name[64];
    snprintf(name, sizeof name, "t%02x%s", type, gz ? ".gz" : "");
    path_of(p, sizeof p, name);
    larch_idx w = {.type = type, .ndim = 3, .dims = {3, 4, 5}, .count = 60};
    unsigned char *data = malloc(60 * (size_t)esize);
    for (int i = 0; i < 60 * esize; i++) data[i] = (unsigned char)(i * 13 + type);
    if (type == 0x0D) for (int i = 0; i < 60; i++) ((float *)data)[i] = 0.5f * (float)i - 3.0f;
    w.data = data;
    CHECK_OK(larch_idx_write(p, &w, gz));
    larch_idx r;
    CHECK_OK(larch_idx_read(p, &r));
    CHECK(r.type == type && r.ndim == 3 && r.dims[0] == 3 && r.dims[2] == 5 && r.count == 60, "%s: header", name);
    CHECK(r.data && memcmp(r.data, data, 60 * (size_t)esize) == 0, "%s: data", name);
    larch_idx_free(&r);
    free(data);
}

int main(void)
{
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    round_trip(0x08, 1, 0);
    round_trip(0x08, 1, 1);
    round_trip(0x0C, 4, 1);
    round_trip(0x0D, 4, 0);
    round_trip(0x0B, 2, 1);

    /* big-endian on disk: a u32 dimension of 2 and int32 values 1, 256 */
    const unsigned char ints[] = {0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 0};
    write_raw("ints", ints, sizeof ints);
    char p[256];
    larch_idx r;
    path_of(p, sizeof p, "ints");
    CHECK_OK(larch_idx_read(p, &r));
    CHECK(r.count == 2 && ((int32_t *)r.data)[0] == 1 && ((int32_t *)r.data)[1] == 256, "big-endian decoding");
    larch_idx_free(&r);

    const unsigned char trunc[] = {0, 0, 0x08, 2, 0, 0, 0, 4, 0, 0, 0, 4, 1, 2, 3};
    write_raw("trunc", trunc, sizeof trunc);
    path_of(p, sizeof p, "trunc");
    CHECK_FAIL(larch_idx_read(p, &r), LARCH_ERR_FORMAT, "trunc: truncated: expected 16 data bytes, got 3");
    const unsigned char magic[] = {0x1f, 0x00, 0x08, 1, 0, 0, 0, 1, 7};
    write_raw("magic", magic, sizeof magic);
    path_of(p, sizeof p, "magic");
    CHECK_FAIL(larch_idx_read(p, &r), LARCH_ERR_FORMAT, "magic: not an IDX file: bad magic");
    const unsigned char type[] = {0, 0, 0x07, 1, 0, 0, 0, 1, 7};
    write_raw("type", type, sizeof type);
    path_of(p, sizeof p, "type");
    CHECK_FAIL(larch_idx_read(p, &r), LARCH_ERR_FORMAT, "type: unsupported IDX element type 0x07");
    const unsigned char ndim[] = {0, 0, 0x08, 9, 0, 0, 0, 1, 7};
    write_raw("ndim", ndim, sizeof ndim);
    path_of(p, sizeof p, "ndim");
    CHECK_FAIL(larch_idx_read(p, &r), LARCH_ERR_FORMAT, "dimension count 9");
    const unsigned char trail[] = {0, 0, 0x08, 1, 0, 0, 0, 2, 7, 8, 9};
    write_raw("trail", trail, sizeof trail);
    path_of(p, sizeof p, "trail");
    CHECK_FAIL(larch_idx_read(p, &r), LARCH_ERR_FORMAT, "trail: trailing bytes");
    const unsigned char zero[] = {0, 0, 0x08, 1, 0, 0, 0, 0};
    write_raw("zero", zero, sizeof zero);
    path_of(p, sizeof p, "zero");
    CHECK_FAIL(larch_idx_read(p, &r), LARCH_ERR_FORMAT, "implausible dimension 0");
    write_raw("short", zero, 3);
    path_of(p, sizeof p, "short");
    CHECK_FAIL(larch_idx_read(p, &r), LARCH_ERR_FORMAT, "too short for an IDX header");
    path_of(p, sizeof p, "missing");
    CHECK_FAIL(larch_idx_read(p, &r), LARCH_ERR_IO, "missing: No such file");

    /* a gzip file cut in half, and one with flipped bytes in the stream */
    char gz[256];
    path_of(gz, sizeof gz, "t08.gz");
    FILE *f = fopen(gz, "rb");
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    write_raw("cut.gz", buf, n / 2);
    path_of(p, sizeof p, "cut.gz");
    CHECK_FAIL(larch_idx_read(p, &r), LARCH_ERR_FORMAT, "cut.gz");
    for (size_t i = 12; i < n - 8; i++) buf[i] ^= 0x5a;
    write_raw("bad.gz", buf, n);
    path_of(p, sizeof p, "bad.gz");
    CHECK_FAIL(larch_idx_read(p, &r), LARCH_ERR_FORMAT, "bad.gz");

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup");
    return check_result("test_idx");
}
