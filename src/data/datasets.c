/* datasets.c - in-memory datasets: Fashion-MNIST from IDX files, synthetic
 * Gaussian clusters, and class subsets (see include/larch/data.h).
 *
 * Fashion-MNIST keeps its raw uint8 pixels (47 MB for the training set);
 * the loader normalizes while it assembles a batch. Its mean and standard
 * deviation (0.2860, 0.3530) are the training set's pixel statistics,
 * checked by tests/test_loader.c against the installed files. Synthetic
 * sample i of a split (and its regression targets) is a pure function of
 * (seed, split, i).
 */
#include "larch/data.h"
#include "larch/rng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FMNIST_MEAN 0.2860f
#define FMNIST_STD 0.3530f

/* dir/name.gz, or dir/name when only the uncompressed file exists. */
static void find_file(const char *dir, const char *name, char *out, size_t len)
{
    struct stat st;
    snprintf(out, len, "%s/%s.gz", dir, name);
    if (stat(out, &st) == 0) return;
    snprintf(out, len, "%s/%s", dir, name);
    if (stat(out, &st) == 0) return;
    snprintf(out, len, "%s/%s.gz", dir, name);
}

larch_status larch_dataset_fmnist_count(const char *dir, int train, int *n)
{
    char lpath[4200];
    find_file(dir, train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte", lpath, sizeof lpath);
    larch_idx lb;
    larch_status s = larch_idx_read(lpath, &lb);
    if (s) return s;
    *n = lb.dims[0];
    larch_idx_free(&lb);
    return LARCH_OK;
}

larch_status larch_dataset_fmnist(const char *dir, int train, larch_dataset *out)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return larch_fail(LARCH_ERR_IO, "Fashion-MNIST directory %s: %s (install it with: apt-get install dataset-fashion-mnist)",
                          dir, stat(dir, &st) != 0 ? strerror(errno) : "not a directory");
    char ipath[4200], lpath[4200];
    find_file(dir, train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte", ipath, sizeof ipath);
    find_file(dir, train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte", lpath, sizeof lpath);
    larch_idx im, lb;
    memset(&lb, 0, sizeof lb);
    larch_status s = larch_idx_read(ipath, &im);
    if (s) return s;
    if ((s = larch_idx_read(lpath, &lb))) goto fail;
    if (im.type != 0x08 || im.ndim != 3) {
        s = larch_fail(LARCH_ERR_FORMAT, "%s: expected unsigned bytes of shape (n, h, w), got type 0x%02x with %d dimensions",
                       ipath, im.type, im.ndim);
        goto fail;
    }
    if (lb.type != 0x08 || lb.ndim != 1) {
        s = larch_fail(LARCH_ERR_FORMAT, "%s: expected unsigned bytes of shape (n), got type 0x%02x with %d dimensions",
                       lpath, lb.type, lb.ndim);
        goto fail;
    }
    if (im.dims[0] != lb.dims[0]) {
        s = larch_fail(LARCH_ERR_FORMAT, "%s has %d images but %s has %d labels", ipath, im.dims[0], lpath, lb.dims[0]);
        goto fail;
    }
    out->labels = malloc((size_t)lb.dims[0] * sizeof *out->labels);
    if (!out->labels) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory for labels"); goto fail; }
    const uint8_t *l = lb.data;
    for (int i = 0; i < lb.dims[0]; i++) {
        if (l[i] > 9) {
            s = larch_fail(LARCH_ERR_FORMAT, "%s: label %d of sample %d is outside 0..9", lpath, l[i], i);
            goto fail;
        }
        out->labels[i] = l[i];
    }
    snprintf(out->name, sizeof out->name, "fashion-mnist-%s", train ? "train" : "test");
    snprintf(out->source, sizeof out->source, "%s", ipath);
    out->n = im.dims[0];
    out->shape = (larch_shape){im.dims[1], im.dims[2], 1};
    out->n_classes = 10;
    out->u8 = im.data;                                  /* take the pixels */
    out->n_norm = 1;
    out->mean[0] = FMNIST_MEAN;
    out->std[0] = FMNIST_STD;
    larch_idx_free(&lb);
    return LARCH_OK;
fail:
    larch_idx_free(&im);
    larch_idx_free(&lb);
    free(out->labels);
    memset(out, 0, sizeof *out);
    return s;
}

larch_status larch_dataset_synthetic(const larch_synth_opts *o, larch_dataset *out)
{
    memset(out, 0, sizeof *out);
    size_t dim = larch_shape_size(o->shape);
    if (o->n < 1 || o->classes < 2 || dim < 1)
        return larch_fail(LARCH_ERR_INVALID, "synthetic data: need n >= 1, classes >= 2 and a positive shape");
    if (o->draw < 0)
        return larch_fail(LARCH_ERR_INVALID, "synthetic data: draw %d (expected 0 or more)", o->draw);
    if (o->regression < 0)
        return larch_fail(LARCH_ERR_INVALID, "synthetic data: %d regression targets per sample", o->regression);
    if (o->toy2d < LARCH_TOY2D_NONE || o->toy2d > LARCH_TOY2D_RING)
        return larch_fail(LARCH_ERR_INVALID, "synthetic data: toy2d %d is not none (0), moons (1) or ring (2)", o->toy2d);
    if (o->toy2d && (dim != 2 || o->regression))
        return larch_fail(LARCH_ERR_INVALID, "synthetic data: toy2d %s draws points in the plane: shape must be [1, 1, 2] "
                          "(is %dx%dx%d) and regression 0", o->toy2d == LARCH_TOY2D_MOONS ? "moons" : "ring", o->shape.h,
                          o->shape.w, o->shape.c);
    size_t K = (size_t)o->regression;
    float *centres = malloc((size_t)o->classes * dim * sizeof *centres);
    float *map = K ? malloc(K * dim * sizeof *map) : NULL;
    out->f32 = malloc((size_t)o->n * dim * sizeof *out->f32);
    out->labels = malloc((size_t)o->n * sizeof *out->labels);
    out->targets = K ? malloc((size_t)o->n * K * sizeof *out->targets) : NULL;
    if (!centres || !out->f32 || !out->labels || (K && (!map || !out->targets))) {
        free(centres);
        free(map);
        larch_dataset_free(out);
        return larch_fail(LARCH_ERR_NOMEM, "out of memory for %d synthetic samples", o->n);
    }
    out->n_targets = o->regression;
    larch_rng r;
    for (int c = 0; c < o->classes; c++) {              /* cluster centres: N(0, 1) per feature */
        larch_rng_init(&r, o->seed, LARCH_RNG_SYNTH, (uint32_t)c, 0);
        for (size_t j = 0; j < dim; j++) centres[(size_t)c * dim + j] = larch_rng_normal(&r);
    }
    for (size_t k = 0; k < K; k++) {                    /* the regression map A: N(0, 1), from the seed alone */
        larch_rng_init(&r, o->seed, LARCH_RNG_SYNTH + 1, (uint32_t)k, 0);
        for (size_t j = 0; j < dim; j++) map[k * dim + j] = larch_rng_normal(&r);
    }
    const double inv_sqrt_dim = 1.0 / sqrt((double)dim);
    for (int i = 0; i < o->n; i++) {                    /* sample = centre + noise * N(0, 1) */
        if (o->draw > 0 && !o->split) larch_rng_init(&r, o->seed, LARCH_RNG_SYNTH + 2, (uint32_t)o->draw, (uint32_t)i);
        else larch_rng_init(&r, o->seed, LARCH_RNG_SYNTH, 1u + (uint32_t)o->split, (uint32_t)i);
        int label = (int)larch_rng_below(&r, (uint32_t)(o->toy2d == LARCH_TOY2D_MOONS ? 2 : o->classes));
        out->labels[i] = label;
        float *x = out->f32 + (size_t)i * dim;
        if (o->toy2d == LARCH_TOY2D_MOONS) {
            double t = M_PI * larch_rng_uniform(&r), sg = label ? -1.0 : 1.0;
            x[0] = (float)(sg * (cos(t) - 0.5)) + o->noise * larch_rng_normal(&r);
            x[1] = (float)(sg * (sin(t) - 0.25)) + o->noise * larch_rng_normal(&r);
            continue;
        }
        if (o->toy2d == LARCH_TOY2D_RING) {
            double a = 2.0 * M_PI * label / o->classes;
            x[0] = (float)(2.0 * cos(a)) + o->noise * larch_rng_normal(&r);
            x[1] = (float)(2.0 * sin(a)) + o->noise * larch_rng_normal(&r);
            continue;
        }
        for (size_t j = 0; j < dim; j++)
            x[j] = centres[(size_t)label * dim + j] + o->noise * larch_rng_normal(&r);
        for (size_t k = 0; k < K; k++) {                /* targets: A x / sqrt(D) + noise, after the features' draws */
            double t = 0.0;
            for (size_t j = 0; j < dim; j++) t += (double)map[k * dim + j] * x[j];
            out->targets[(size_t)i * K + k] = (float)(t * inv_sqrt_dim) + o->regression_noise * larch_rng_normal(&r);
        }
    }
    free(centres);
    free(map);
    snprintf(out->name, sizeof out->name, "synthetic-%s", o->split ? "test" : "train");
    out->n = o->n;
    out->shape = o->shape;
    out->n_classes = o->toy2d == LARCH_TOY2D_MOONS ? 2 : o->classes;
    out->n_norm = 1;
    out->mean[0] = 0.0f;
    out->std[0] = 1.0f;
    return LARCH_OK;
}

larch_status larch_dataset_subset(larch_dataset *ds, int lo, int hi, int per_class)
{
    if (lo < 0 || hi < lo || hi >= ds->n_classes)
        return larch_fail(LARCH_ERR_INVALID, "subset: classes %d..%d are not within 0..%d", lo, hi, ds->n_classes - 1);
    size_t dim = larch_shape_size(ds->shape);
    int *taken = calloc((size_t)(hi - lo + 1), sizeof *taken), k = 0;
    if (!taken) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    if (ds->ooc && !ds->rows) {                          /* out of core: keep the file rows of what stays */
        ds->rows = malloc((size_t)(ds->n ? ds->n : 1) * sizeof *ds->rows);
        if (!ds->rows) { free(taken); return larch_fail(LARCH_ERR_NOMEM, "out of memory"); }
        for (int i = 0; i < ds->n; i++) ds->rows[i] = i;
    }
    for (int i = 0; i < ds->n; i++) {                   /* compact in place, in index order */
        int c = ds->labels[i];
        if (c < lo || c > hi || (per_class > 0 && taken[c - lo] >= per_class)) continue;
        taken[c - lo]++;
        if (ds->rows) ds->rows[k] = ds->rows[i];
        if (ds->u8) memmove(ds->u8 + (size_t)k * dim, ds->u8 + (size_t)i * dim, dim);
        if (ds->f32) memmove(ds->f32 + (size_t)k * dim, ds->f32 + (size_t)i * dim, dim * sizeof(float));
        for (int t = 0; t < ds->n_derived; t++) ds->derived[t][k] = ds->derived[t][i];
        if (ds->targets)
            memmove(ds->targets + (size_t)k * ds->n_targets, ds->targets + (size_t)i * ds->n_targets,
                    (size_t)ds->n_targets * sizeof(float));
        ds->labels[k++] = c - lo;
    }
    free(taken);
    ds->n = k;
    ds->n_classes = hi - lo + 1;
    return LARCH_OK;
}

larch_status larch_dataset_derive_labels(larch_dataset *ds, const int *map, int n_map)
{
    if (ds->n_derived >= LARCH_MAX_TARGETS - 1)
        return larch_fail(LARCH_ERR_INVALID, "at most %d derived label sets", LARCH_MAX_TARGETS - 1);
    if (n_map != ds->n_classes)
        return larch_fail(LARCH_ERR_INVALID, "the label map has %d entries but the data has %d classes (one entry per class)",
                          n_map, ds->n_classes);
    int classes = 0;
    for (int c = 0; c < n_map; c++) {
        if (map[c] < 0 || map[c] >= 1 << 16)
            return larch_fail(LARCH_ERR_INVALID, "the label map sends class %d to %d (expected 0..65535)", c, map[c]);
        if (map[c] + 1 > classes) classes = map[c] + 1;
    }
    int32_t *d = malloc((size_t)(ds->n ? ds->n : 1) * sizeof *d);
    if (!d) return larch_fail(LARCH_ERR_NOMEM, "out of memory for a label set");
    for (int i = 0; i < ds->n; i++) d[i] = map[ds->labels[i]];
    ds->derived[ds->n_derived] = d;
    ds->derived_classes[ds->n_derived++] = classes;
    return LARCH_OK;
}

larch_status larch_dataset_set_norm(larch_dataset *ds, const float *mean, const float *std, int n)
{
    if (n != 1 && n != ds->shape.c)
        return larch_fail(LARCH_ERR_SHAPE, "%s: %d normalization values for %d channels (give 1 or %d)", ds->name, n,
                          ds->shape.c, ds->shape.c);
    if (n > LARCH_NORM_MAX)
        return larch_fail(LARCH_ERR_SHAPE, "%s: per-channel normalization of %d channels (at most %d)", ds->name, n,
                          LARCH_NORM_MAX);
    for (int c = 0; c < n; c++)
        if (!isfinite(mean[c]) || !isfinite(std[c]) || !(std[c] > 0.0f))
            return larch_fail(LARCH_ERR_INVALID, "%s: channel %d has mean %g and std %g (std must be positive and both finite)",
                              ds->name, c, mean[c], std[c]);
    for (int c = 0; c < n; c++) { ds->mean[c] = mean[c]; ds->std[c] = std[c]; }
    ds->n_norm = n;
    return LARCH_OK;
}

int larch_dataset_classes(const larch_dataset *ds, int t)
{
    return t == 0 ? ds->n_classes : t <= ds->n_derived ? ds->derived_classes[t - 1] : 0;
}

void larch_dataset_free(larch_dataset *ds)
{
    if (!ds) return;
    for (int t = 0; t < ds->n_derived; t++) free(ds->derived[t]);
    if (ds->ooc) close(ds->ooc_fd);
    free(ds->rows);
    free(ds->u8);
    free(ds->f32);
    free(ds->labels);
    free(ds->targets);
    memset(ds, 0, sizeof *ds);
}
