/* convert_npy.c - NumPy .npy arrays to the HDF5 dataset format.
 *
 * SOURCE holds x_train.npy, y_train.npy, x_test.npy and y_test.npy (the
 * names Keras' datasets use). x: uint8 images (N, H, W) or (N, H, W, C),
 * or float32/float64 features (N, D), (N, H, W) or (N, H, W, C); y:
 * integer labels (N). The .npy header is a short Python dict literal
 * ({'descr': '<f4', 'fortran_order': False, 'shape': (N, ...), }): no
 * Debian library reads it, so it is parsed here, strictly. */
#include "datasets/convert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct npy {
    char kind;            /* 'u', 'i', 'f' */
    int bytes;            /* 1, 2, 4, 8    */
    int ndim;
    long long shape[5];
    long long count;
    void *data;
} npy;

static larch_status npy_read(const char *path, npy *a)
{
    memset(a, 0, sizeof *a);
    FILE *f = fopen(path, "rb");
    if (!f) return larch_fail(LARCH_ERR_IO, "%s: %s", path, strerror(errno));
    unsigned char pre[12];
    larch_status s = LARCH_OK;
    char *hdr = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        s = larch_fail(LARCH_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
        goto done;
    }
    unsigned long hlen = pre[8] | (unsigned long)pre[9] << 8;
    if (pre[6] >= 2) {                                   /* versions 2 and 3: a 4-byte header length */
        if (fread(pre + 10, 1, 2, f) != 2) { s = larch_fail(LARCH_ERR_FORMAT, "%s: truncated header", path); goto done; }
        hlen |= (unsigned long)pre[10] << 16 | (unsigned long)pre[11] << 24;
    } else if (pre[6] != 1) { s = larch_fail(LARCH_ERR_FORMAT, "%s: .npy version %d is not supported", path, pre[6]); goto done; }
    if (hlen > 65536) { s = larch_fail(LARCH_ERR_FORMAT, "%s: header of %lu bytes", path, hlen); goto done; }
    hdr = calloc(hlen + 1, 1);
    if (!hdr || fread(hdr, 1, hlen, f) != hlen) { s = larch_fail(LARCH_ERR_FORMAT, "%s: truncated header", path); goto done; }
    const char *d = strstr(hdr, "'descr':"), *fo = strstr(hdr, "'fortran_order':"), *sh = strstr(hdr, "'shape':");
    char endian = 0;
    if (!d || !fo || !sh || sscanf(d + 8, " '%c%c%d'", &endian, &a->kind, &a->bytes) != 3) {
        s = larch_fail(LARCH_ERR_FORMAT, "%s: cannot read the header dict %.80s", path, hdr);
        goto done;
    }
    if (strncmp(fo + 16, " False", 6) != 0) {
        s = larch_fail(LARCH_ERR_FORMAT, "%s: Fortran-ordered arrays are not supported (save with np.ascontiguousarray)", path);
        goto done;
    }
    if (endian == '>' || !strchr("uif", a->kind) || (a->kind == 'f' ? a->bytes != 4 && a->bytes != 8
                                                     : a->bytes != 1 && a->bytes != 2 && a->bytes != 4 && a->bytes != 8)) {
        s = larch_fail(LARCH_ERR_FORMAT, "%s: dtype %c%c%d is not supported (uint8, integers, float32, float64; little-endian)",
                       path, endian, a->kind, a->bytes);
        goto done;
    }
    const char *p = strchr(sh, '(');
    a->count = 1;
    for (p = p ? p + 1 : NULL; p && *p && *p != ')';) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p) break;
        if (a->ndim == 5 || v < 0) { s = larch_fail(LARCH_ERR_FORMAT, "%s: shape %.60s is not supported", path, sh); goto done; }
        a->shape[a->ndim++] = v;
        a->count *= v;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    if (!p || *p != ')' || a->ndim < 1) { s = larch_fail(LARCH_ERR_FORMAT, "%s: cannot read the shape %.60s", path, sh); goto done; }
    size_t bytes = (size_t)a->count * (size_t)a->bytes;
    a->data = malloc(bytes ? bytes : 1);
    if (!a->data) { s = larch_fail(LARCH_ERR_NOMEM, "%s: out of memory for %zu bytes", path, bytes); goto done; }
    size_t got = fread(a->data, 1, bytes, f);
    if (got != bytes) {
        s = larch_fail(LARCH_ERR_FORMAT, "%s: truncated: %zu of %zu data bytes", path, got, bytes);
        goto done;
    }
    if (fgetc(f) != EOF) s = larch_fail(LARCH_ERR_FORMAT, "%s: trailing bytes after the array", path);
done:
    fclose(f);
    free(hdr);
    if (s) { free(a->data); a->data = NULL; }
    return s;
}

static long long npy_int(const npy *a, long long i)
{
    const unsigned char *b = (const unsigned char *)a->data + i * a->bytes;
    long long v = 0;
    memcpy(&v, b, (size_t)a->bytes);                   /* little-endian host (x86-64, arm64) */
    if (a->kind == 'i' && a->bytes < 8 && (v >> (8 * a->bytes - 1)) & 1) v -= 1LL << (8 * a->bytes);
    return v;
}

static larch_status split_from(const char *source, int sp, larch_dataset *ds)
{
    char xp[4200], yp[4200];
    snprintf(xp, sizeof xp, "%s/x_%s.npy", source, sp ? "test" : "train");
    snprintf(yp, sizeof yp, "%s/y_%s.npy", source, sp ? "test" : "train");
    npy x, y;
    larch_status s = npy_read(xp, &x);
    if (s) return s;
    if ((s = npy_read(yp, &y))) { free(x.data); return s; }
    if (x.ndim < 2 || x.ndim > 4 || (x.kind != 'f' && (x.kind != 'u' || x.bytes != 1 || x.ndim < 3)))
        s = larch_fail(LARCH_ERR_FORMAT, "%s: expected uint8 images (N, H, W[, C]) or float features (N, ...), got %c%d with %d dimensions",
                       xp, x.kind, x.bytes, x.ndim);
    else if (y.ndim != 1 || y.kind == 'f')
        s = larch_fail(LARCH_ERR_FORMAT, "%s: expected integer labels (N), got %c%d with %d dimensions", yp, y.kind, y.bytes, y.ndim);
    else if (y.shape[0] != x.shape[0])
        s = larch_fail(LARCH_ERR_FORMAT, "%s has %lld samples but %s has %lld labels", xp, x.shape[0], yp, y.shape[0]);
    else if (x.shape[0] > 2147483647LL || x.shape[0] < 1)
        s = larch_fail(LARCH_ERR_FORMAT, "%s: %lld samples", xp, x.shape[0]);
    if (s) goto done;
    ds->n = (int)x.shape[0];
    ds->shape = x.ndim == 2 ? (larch_shape){1, 1, (int)x.shape[1]}
              : x.ndim == 3 ? (larch_shape){(int)x.shape[1], (int)x.shape[2], 1}
                            : (larch_shape){(int)x.shape[1], (int)x.shape[2], (int)x.shape[3]};
    ds->labels = malloc((size_t)ds->n * sizeof *ds->labels);
    if (!ds->labels) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); goto done; }
    int mx = 0;
    for (int i = 0; i < ds->n && !s; i++) {
        long long v = npy_int(&y, i);
        if (v < 0 || v > 65535) s = larch_fail(LARCH_ERR_FORMAT, "%s: label %lld of sample %d is outside 0..65535", yp, v, i);
        else { ds->labels[i] = (int32_t)v; if (v > mx) mx = (int)v; }
    }
    if (s) goto done;
    ds->n_classes = mx + 1;
    if (x.kind == 'u') { ds->u8 = x.data; x.data = NULL; }
    else if (x.bytes == 4) { ds->f32 = x.data; x.data = NULL; }
    else {
        ds->f32 = malloc((size_t)x.count * sizeof(float));
        if (!ds->f32) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); goto done; }
        const double *dd = x.data;
        for (long long i = 0; i < x.count; i++) ds->f32[i] = (float)dd[i];
    }
done:
    free(x.data);
    free(y.data);
    return s;
}

larch_status larch_convert_npy(const char *source, const larch_convert_opts *o, larch_converted *out)
{
    larch_status s = split_from(source, 0, &out->split[0]);
    if (!s) s = split_from(source, 1, &out->split[1]);
    if (!s && (out->split[0].u8 != NULL) != (out->split[1].u8 != NULL))
        s = larch_fail(LARCH_ERR_FORMAT, "%s: x_train.npy and x_test.npy have different dtypes", source);
    if (!s) {
        larch_shape a = out->split[0].shape, b = out->split[1].shape;
        if (a.h != b.h || a.w != b.w || a.c != b.c)
            s = larch_fail(LARCH_ERR_FORMAT, "%s: x_train.npy has samples (%d, %d, %d) but x_test.npy (%d, %d, %d)", source,
                           a.h, a.w, a.c, b.h, b.w, b.c);
    }
    int k = out->split[0].n_classes > out->split[1].n_classes ? out->split[0].n_classes : out->split[1].n_classes;
    out->split[0].n_classes = out->split[1].n_classes = k;
    char path[4200];
    snprintf(path, sizeof path, "%s/classes.txt", source);
    if (!s) s = larch_convert_read_names(path, 65536, &out->classes, &out->n_classes);
    if (!s && out->classes && out->n_classes < k)
        s = larch_fail(LARCH_ERR_FORMAT, "%s names %d classes but the labels go up to %d", path, out->n_classes, k - 1);
    if (!s && out->classes) out->split[0].n_classes = out->split[1].n_classes = out->n_classes;
    if (s) larch_converted_free(out);
    return s;
}
