/* larch/data.h - datasets and the batch loader.
 *
 * Datasets are held in memory. Image datasets keep their raw uint8 pixels
 * and are normalized while a batch is assembled; synthetic datasets are
 * float. The loader follows docs/design.md, decision 4: the global sample order of
 * an epoch is one permutation drawn from (seed, LARCH_RNG_SHUFFLE, epoch);
 * rank r of `world` takes the contiguous part [r*b, (r+1)*b) of every global
 * batch (b = global_batch / world). Augmentation draws from
 * (seed, LARCH_RNG_AUGMENT, epoch, sample id), so every rank count produces
 * identical batches. A prefetch thread assembles the next batch while the
 * caller computes. The loader takes rank and world as plain ints, so tests
 * simulate several ranks in one process.
 */
#ifndef LARCH_DATA_H
#define LARCH_DATA_H

#include <stdint.h>
#include "larch/error.h"
#include "larch/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- IDX files (LeCun's MNIST format), optionally gzip-compressed ---- */
typedef struct larch_idx {
    int type;            /* 0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int, 0x0D float, 0x0E double */
    int ndim;
    int dims[4];
    size_t count;        /* product of dims                                 */
    void *data;          /* count elements of `type`, host byte order       */
} larch_idx;

/* Reads an IDX file (plain or .gz, detected by content). Errors name the
 * file and what is wrong: bad magic, unsupported type, truncated data,
 * trailing bytes. */
LARCH_API larch_status larch_idx_read(const char *path, larch_idx *out);
LARCH_API void larch_idx_free(larch_idx *idx);
/* Writes an IDX file (gzip when gz != 0); used by tests and dataset tools. */
LARCH_API larch_status larch_idx_write(const char *path, const larch_idx *idx, int gz);

/* ---- datasets ---- */
#define LARCH_NORM_MAX 64    /* channels with their own mean and std */
typedef struct larch_dataset {
    char name[32];
    char source[4200];       /* the file the samples came from ("" if generated) */
    int n;                   /* number of samples                           */
    larch_shape shape;       /* per-sample shape (h, w, c)                  */
    int n_classes;
    uint8_t *u8;             /* (n, shape) raw pixels, or NULL              */
    float *f32;              /* (n, shape) features, or NULL                */
    int32_t *labels;         /* (n): label set 0                            */
    int n_derived;           /* further label sets 1..n_derived             */
    int32_t *derived[LARCH_MAX_TARGETS - 1];   /* (n) each                  */
    int derived_classes[LARCH_MAX_TARGETS - 1];
    char derived_name[LARCH_MAX_TARGETS - 1][LARCH_NAME_MAX];  /* HDF5 labels_<name>: name ("" otherwise) */
    int n_targets;           /* float regression targets per sample (0: none) */
    float *targets;          /* (n, n_targets), or NULL                     */
    /* Normalization per channel c: x' = (x/255 - mean[c]) / std[c] for u8,
     * (x - mean[c]) / std[c] for f32. n_norm is 1 (one pair for every
     * channel) or shape.c (at most LARCH_NORM_MAX). */
    int n_norm;
    float mean[LARCH_NORM_MAX], std[LARCH_NORM_MAX];
    /* Out of core (ooc != 0): u8 and f32 are NULL; the samples stay in the
     * file and the loader reads each batch's with pread(2) from ooc_fd at
     * ooc_offset + row * sample bytes (ooc_u8: uint8 pixels, else float32),
     * where row is rows[i] (a subset) or i. Labels and targets are in memory. */
    int ooc, ooc_fd, ooc_u8;
    int64_t ooc_offset;
    int32_t *rows;
} larch_dataset;

/* Sets the normalization: n == 1 (every channel) or n == ds->shape.c
 * values, each std > 0 and finite. Errors name the dataset and the value. */
LARCH_API larch_status larch_dataset_set_norm(larch_dataset *ds, const float *mean, const float *std, int n);

/* Fashion-MNIST from `dir` (train-images-idx3-ubyte.gz etc.; Debian's
 * dataset-fashion-mnist installs /usr/share/datasets/fashion-mnist). Checks
 * that image and label counts agree and labels are in 0..9; the images keep
 * the files' height and width (source: the image file), which
 * larch_run_datasets compares with the model's input shape. */
LARCH_API larch_status larch_dataset_fmnist(const char *dir, int train, larch_dataset *out);
/* The number of samples of a split (reads only the labels file). */
LARCH_API larch_status larch_dataset_fmnist_count(const char *dir, int train, int *n);

/* A synthetic classification set: `classes` Gaussian clusters in a space of
 * shape `shape`; sample i is a pure function of (seed, split, i). `noise` is
 * the within-class standard deviation relative to the between-class one.
 * With regression = K > 0 every sample also gets K float targets
 * t = A x / sqrt(D) + regression_noise * N(0, 1): A is a fixed (K, D) matrix
 * of N(0, 1) entries drawn from the seed alone (the same for both splits),
 * x the sample's D features, the noise drawn from the sample's own stream
 * (seed, split, i) after its features. */
typedef struct larch_synth_opts {
    int n;
    larch_shape shape;
    int classes;
    float noise;
    uint64_t seed;
    int split;               /* 0 train, 1 test: different samples, same clusters */
    int regression;          /* K float targets per sample (0: none)         */
    float regression_noise;
    int toy2d;               /* LARCH_TOY2D_*: a generated 2-D density (shape 1x1x2) instead of the clusters */
    /* The training split's draw: 0 is the usual one; d > 0 an independent
     * sample of the same distribution (same clusters, same map A), sample i
     * a function of (seed, d, i): fresh training sets for bias-variance
     * studies (docs/biasvar.md). Ignored for the test split. */
    int draw;
} larch_synth_opts;
/* 2-D toy densities of larch_synth_opts.toy2d (label: the moon or the mode):
 *   MOONS: two interleaved half circles (scikit-learn's make_moons, centred):
 *          t ~ U[0, pi], label 0: (cos t - 0.5, sin t - 0.25), label 1:
 *          (0.5 - cos t, 0.25 - sin t); then + noise * N(0, I);
 *   RING:  `classes` Gaussians (standard deviation noise) with centres evenly on
 *          the circle of radius 2, mode c at angle 2 pi c / classes. */
enum { LARCH_TOY2D_NONE = 0, LARCH_TOY2D_MOONS = 1, LARCH_TOY2D_RING = 2 };
LARCH_API larch_status larch_dataset_synthetic(const larch_synth_opts *o, larch_dataset *out);

/* Keeps only samples whose label is in [lo, hi] (relabelled to 0..) and at
 * most per_class of each class (0 = all), in index order (with their
 * derived labels and float targets); for transfer learning experiments. */
LARCH_API larch_status larch_dataset_subset(larch_dataset *ds, int lo, int hi, int per_class);
/* Adds label set 1 + ds->n_derived: sample i gets map[labels[i]] (a coarse
 * label derived from the fine one, for multi-task heads). map has one entry
 * per class (n_map == ds->n_classes), each >= 0; the new set has
 * max(map) + 1 classes. Errors say what is wrong with the map. */
LARCH_API larch_status larch_dataset_derive_labels(larch_dataset *ds, const int *map, int n_map);
/* Classes of label set t (0: ds->n_classes). */
LARCH_API int larch_dataset_classes(const larch_dataset *ds, int t);
LARCH_API void larch_dataset_free(larch_dataset *ds);

/* ---- HDF5 datasets (the layout: docs/datasets.md) ---- */
/* Reads a split into memory. `spec` is "file.h5" (the split is the group
 * /<split>) or "file.h5:/group" (that group; `split` only names the set).
 * The split holds `images` (uint8, (N, H, W[, C])) or `features` (float,
 * (N, D), (N, H, W) or (N, H, W, C)), integer `labels` (N), optional
 * `labels_<name>` sets (loaded as derived label sets 1.. in name order)
 * and float `targets` (N[, K]); attributes `classes` (names; their number
 * is the class count, else max(label) + 1) and `mean`/`std` (1 or C
 * values). Errors name the file, the group and the dataset: a missing
 * split, a wrong type or rank, a count mismatch, a label out of range, an
 * unreadable or truncated file. */
LARCH_API larch_status larch_dataset_h5_read(const char *spec, const char *split, larch_dataset *out);
/* The same, out of core when in_memory is 0: the labels, targets and
 * attributes are read, the samples stay in the file (ds->ooc). Needs the
 * samples stored contiguous (not chunked or compressed) as little-endian
 * uint8 or float32, which `larch data convert` writes; otherwise the error
 * says how to rewrite the file (h5repack -l images:CONTI). */
LARCH_API larch_status larch_dataset_h5_open(const char *spec, const char *split, int in_memory, larch_dataset *out);
/* A split's per-sample shape, sample count and classes (the `classes`
 * attribute's length, else max(label) + 1) without reading the samples. */
LARCH_API larch_status larch_dataset_h5_probe(const char *spec, const char *split, larch_shape *shape, int *n,
                                              int *classes);
/* Writes ds as group /<group> of `path` (created when missing; the group
 * must not exist yet). class_names: ds->n_classes strings, or NULL. The
 * derived label sets are written as labels_<derived_name>. */
LARCH_API larch_status larch_dataset_h5_write(const char *path, const char *group, const larch_dataset *ds,
                                              const char *const *class_names);
/* The `classes` attribute of a split: *n strings (0 and NULL when absent),
 * freed with larch_dataset_h5_free_names. */
LARCH_API larch_status larch_dataset_h5_class_names(const char *spec, const char *split, char ***names, int *n);
LARCH_API void larch_dataset_h5_free_names(char **names, int n);
/* Writing a split larger than memory: begin creates group /<group> of
 * `path` with n samples of `shape` (uint8 images when u8, else float
 * features) stored contiguous, append writes the next `count` samples and
 * their labels, end adds the normalization (n_norm values, may be 0) and
 * class names (may be NULL), checks that all n were written and closes
 * (it also frees w after an error). */
typedef struct larch_h5_writer larch_h5_writer;
LARCH_API larch_status larch_dataset_h5_begin(larch_h5_writer **w, const char *path, const char *group, int n,
                                              larch_shape shape, int u8);
LARCH_API larch_status larch_dataset_h5_append(larch_h5_writer *w, const void *samples, const int32_t *labels, int count);
LARCH_API larch_status larch_dataset_h5_end(larch_h5_writer *w, const float *mean, const float *std, int n_norm,
                                            const char *const *classes, int n_classes);
/* The splits of a file: "/" when its root holds one, else the names of its
 * top-level groups (at most cap). */
LARCH_API larch_status larch_dataset_h5_splits(const char *path, char (*names)[LARCH_NAME_MAX], int cap, int *n);

/* ---- the loader ---- */
typedef struct larch_loader_opts {
    int global_batch;        /* samples per global batch                    */
    int rank, world;         /* this process's part                          */
    int shuffle;             /* permute each epoch                           */
    int drop_last;           /* training: drop the last incomplete batch     */
    uint64_t seed;
    int flip;                /* random horizontal flip (p = 0.5)             */
    int crop_pad;            /* random crop after zero padding by this many pixels */
    int prefetch;            /* assemble the next batch on a background thread */
    /* Random resized crop (Inception style, as torchvision's
     * RandomResizedCrop): a crop of area fraction in [scale_lo, scale_hi]
     * of the image and aspect ratio (w/h) log-uniform in [ratio_lo,
     * ratio_hi] (10 tries, then the centre crop of the clamped ratio),
     * resized bilinearly back to (h, w); before the flip, instead of crop_pad. */
    int resized_crop;
    float scale_lo, scale_hi, ratio_lo, ratio_hi;
    /* The class-balanced sampler (sampler = LARCH_SAMPLER_BALANCED, for
     * metric learning): every global batch holds classes_per_batch (P)
     * distinct classes of label set 0 with samples_per_class (K) samples
     * each, class after class (global_batch must be P * K). The classes of
     * a batch come from a shuffled deck of the classes (each class once per
     * pass through the deck); each class's samples from its own shuffled
     * list, reshuffled when fewer than K remain. An epoch is
     * floor(n / global_batch) batches, as many samples as the ordinary
     * sampler's; everything is drawn from (seed, LARCH_RNG_SHUFFLE, epoch),
     * so every rank count sees the same batches. A class with no samples is
     * skipped; one with 1..K-1 samples, or fewer than P classes with
     * samples, is an error at create. `shuffle` and `drop_last` are ignored
     * (always shuffled, always full batches). */
    int sampler;             /* LARCH_SAMPLER_SHUFFLE (0) or LARCH_SAMPLER_BALANCED */
    int classes_per_batch, samples_per_class;
} larch_loader_opts;

enum { LARCH_SAMPLER_SHUFFLE = 0, LARCH_SAMPLER_BALANCED = 1 };

typedef struct larch_loader larch_loader;

/* global_batch must be a multiple of world (the error says so otherwise). */
LARCH_API larch_status larch_loader_create(larch_loader **out, const larch_dataset *ds,
                                           const larch_loader_opts *o);
LARCH_API void larch_loader_free(larch_loader *l);
/* Global batches per epoch. */
LARCH_API int larch_loader_steps(const larch_loader *l);
/* Positions the loader at batch `step` of `epoch` (both 0-based). */
LARCH_API void larch_loader_seek(larch_loader *l, int epoch, int step);
/* Returns this rank's part of the next global batch; the batch stays valid
 * until the next call. At the end of an epoch it moves to the next epoch.
 * *epoch_out and *step_out (may be NULL) tell which batch it was. With an
 * incomplete last batch (drop_last = 0) the local part is split as evenly
 * as possible and may have n = 0 on some ranks. The batch carries label
 * set 0 and the derived sets in label[], and, when the dataset has float
 * targets, target[0] (target_dim[0] = ds->n_targets floats per sample), all
 * in the order of x. */
LARCH_API const larch_batch *larch_loader_next(larch_loader *l, int *epoch_out, int *step_out);
/* Out of core: LARCH_ERR_IO with a message naming the file and the sample
 * when a read failed (a batch it concerns holds zeros there); the error
 * stays. Call after larch_loader_next; a data-parallel caller feeds it into
 * the step's agreement so that every rank stops together. */
LARCH_API larch_status larch_loader_status(const larch_loader *l);

#ifdef __cplusplus
}
#endif
#endif
