/* convert.h - dataset converters behind `larch data convert FORMAT SOURCE
 * OUT.h5` (docs/datasets.md). Each reads one source format into two
 * in-memory larch_datasets (train and test) and, when the source names
 * them, the class names; src/cli/data_cmd.c computes the per-channel
 * statistics and writes the HDF5 file. Errors name the file and what is
 * wrong with it. */
#ifndef LARCH_DATASETS_CONVERT_H
#define LARCH_DATASETS_CONVERT_H

#include "larch/data.h"

typedef struct larch_convert_opts {
    int size;                /* folder: output height and width (resize + centre crop) */
} larch_convert_opts;

typedef struct larch_converted {
    larch_dataset split[2];  /* train, test                                  */
    char **classes;          /* class names (n_classes of them) or NULL      */
    int n_classes;
} larch_converted;

/* SOURCE: a directory with the MNIST file names
 * ({train,t10k}-{images-idx3,labels-idx1}-ubyte, optionally .gz). */
larch_status larch_convert_idx(const char *source, const larch_convert_opts *o, larch_converted *out);
/* SOURCE: CIFAR-10 (data_batch_1..5.bin, test_batch.bin, batches.meta.txt)
 * or CIFAR-100 (train.bin, test.bin, fine/coarse_label_names.txt) binary
 * version; CIFAR-100's coarse labels become the label set `coarse`. */
larch_status larch_convert_cifar(const char *source, const larch_convert_opts *o, larch_converted *out);
/* SOURCE: a directory with x_train.npy, y_train.npy, x_test.npy, y_test.npy
 * (uint8 images (N, H, W[, C]) or float features; integer labels (N)). */
larch_status larch_convert_npy(const char *source, const larch_convert_opts *o, larch_converted *out);
/* SOURCE: a directory with train/ and test/, each holding one sub-folder
 * per class (sorted names are classes 0..) of PNG and JPEG images, resized
 * (shorter side to o->size) and centre-cropped to o->size x o->size RGB. */
larch_status larch_convert_folder(const char *source, const larch_convert_opts *o, larch_converted *out);

void larch_converted_free(larch_converted *c);

/* Per-channel mean and standard deviation, accumulated over samples
 * (x/255 units for pixels; one pair for all channels when there are more
 * than LARCH_NORM_MAX) and rounded to 4 decimals, as published statistics
 * are (torchvision's (0.2860, 0.3530) for Fashion-MNIST): a file then
 * states the same constants as the recipes that use the dataset. */
typedef struct larch_stats {
    double s[LARCH_NORM_MAX], q[LARCH_NORM_MAX], count;
    int channels, nc;
} larch_stats;
void larch_stats_init(larch_stats *st, int channels);
/* n_values values of whole samples (a multiple of the channel count). */
void larch_stats_add(larch_stats *st, const uint8_t *u8, const float *f32, size_t n_values);
void larch_stats_finish(const larch_stats *st, float *mean, float *std, int *n);

/* `larch data synth`: a learnable synthetic image set written in chunks
 * (larger than memory if asked): each class has a random uint8 prototype,
 * sample i is its class's prototype plus uniform noise of +-noise, label
 * and noise drawn from (seed, split, i). */
typedef struct larch_synth_h5_opts {
    int n_train, n_test, classes, noise;
    larch_shape shape;
    uint64_t seed;
} larch_synth_h5_opts;
larch_status larch_synth_h5(const char *path, const larch_synth_h5_opts *o, float *mean, float *std, int *n_norm);
/* Reads one class name per line of `path` (at most n_max); 0 names when the
 * file does not exist. */
larch_status larch_convert_read_names(const char *path, int n_max, char ***names, int *n);

#endif
