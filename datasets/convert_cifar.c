/* convert_cifar.c - the binary version of CIFAR-10 and CIFAR-100 to the
 * HDF5 dataset format.
 *
 * A CIFAR-10 record is 1 label byte and 3072 pixel bytes; CIFAR-100's has
 * 2 label bytes (coarse, fine) first. The pixels are planar: 1024 red,
 * 1024 green, 1024 blue, each 32 rows of 32; larch stores (32, 32, 3)
 * channels-last. */
#include "datasets/convert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR_PIXELS 3072

/* Appends the records of `path` to ds (labels: fine into labels, coarse
 * into derived[0] when two label bytes). */
static larch_status read_batch(const char *path, int label_bytes, larch_dataset *ds, int max_label)
{
    FILE *f = fopen(path, "rb");
    if (!f) return larch_fail(LARCH_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    fstat(fileno(f), &st);
    const long rec = label_bytes + CIFAR_PIXELS;
    if (st.st_size == 0 || st.st_size % rec != 0) {
        fclose(f);
        return larch_fail(LARCH_ERR_FORMAT, "%s: %lld bytes is not a whole number of %ld-byte CIFAR records (truncated?)",
                          path, (long long)st.st_size, rec);
    }
    int add = (int)(st.st_size / rec), n0 = ds->n;
    uint8_t *u8 = realloc(ds->u8, (size_t)(n0 + add) * CIFAR_PIXELS);
    if (u8) ds->u8 = u8;
    int32_t *lb = realloc(ds->labels, (size_t)(n0 + add) * sizeof *lb);
    if (lb) ds->labels = lb;
    int32_t *co = label_bytes == 2 ? realloc(ds->derived[0], (size_t)(n0 + add) * sizeof *co) : NULL;
    if (co) ds->derived[0] = co;
    if (!u8 || !lb || (label_bytes == 2 && !co)) { fclose(f); return larch_fail(LARCH_ERR_NOMEM, "out of memory for %s", path); }
    uint8_t r[2 + CIFAR_PIXELS];
    for (int i = 0; i < add; i++) {
        if (fread(r, 1, (size_t)rec, f) != (size_t)rec) {
            fclose(f);
            return larch_fail(LARCH_ERR_IO, "%s: read error at record %d", path, i);
        }
        int fine = r[label_bytes - 1];
        if (fine > max_label || (label_bytes == 2 && r[0] > 19)) {
            fclose(f);
            return larch_fail(LARCH_ERR_FORMAT, "%s: record %d has label %d (expected 0..%d)", path, i, fine, max_label);
        }
        ds->labels[n0 + i] = fine;
        if (label_bytes == 2) ds->derived[0][n0 + i] = r[0];
        uint8_t *dst = ds->u8 + (size_t)(n0 + i) * CIFAR_PIXELS;
        const uint8_t *src = r + label_bytes;
        for (int p = 0; p < 1024; p++)                    // planar (3, 32, 32) -> (32, 32, 3)
            for (int c = 0; c < 3; c++) dst[p * 3 + c] = src[c * 1024 + p];
        ds->n = n0 + i + 1;
    }
    fclose(f);
    return LARCH_OK;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

larch_status larch_convert_cifar(const char *source, const larch_convert_opts *o, larch_converted *out)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/data_batch_1.bin", source);
    int c10 = exists(path);
    snprintf(path, sizeof path, "%s/train.bin", source);
    int c100 = exists(path);
    if (!c10 && !c100)
        return larch_fail(LARCH_ERR_IO, "%s holds neither CIFAR-10 (data_batch_1.bin ...) nor CIFAR-100 (train.bin) binary files",
                          source);
    larch_status s = LARCH_OK;
    for (int sp = 0; sp < 2 && !s; sp++) {
        larch_dataset *ds = &out->split[sp];
        ds->shape = (larch_shape){32, 32, 3};
        if (c100) {
            ds->n_derived = 1;
            ds->derived_classes[0] = 20;
            snprintf(ds->derived_name[0], sizeof ds->derived_name[0], "coarse");
            snprintf(path, sizeof path, "%s/%s.bin", source, sp ? "test" : "train");
            s = read_batch(path, 2, ds, 99);
        } else if (sp) {
            snprintf(path, sizeof path, "%s/test_batch.bin", source);
            s = read_batch(path, 1, ds, 9);
        } else
            for (int b = 1; b <= 5 && !s; b++) {
                snprintf(path, sizeof path, "%s/data_batch_%d.bin", source, b);
                s = read_batch(path, 1, ds, 9);
            }
        ds->n_classes = c100 ? 100 : 10;
    }
    snprintf(path, sizeof path, "%s/%s", source, c100 ? "fine_label_names.txt" : "batches.meta.txt");
    if (!s) s = larch_convert_read_names(path, c100 ? 100 : 10, &out->classes, &out->n_classes);
    if (!s && out->classes && out->n_classes != (c100 ? 100 : 10))
        s = larch_fail(LARCH_ERR_FORMAT, "%s names %d classes, expected %d", path, out->n_classes, c100 ? 100 : 10);
    if (s) larch_converted_free(out);
    return s;
}
