/* ntk_h5.h - the HDF5 file `larch ntk` writes (one process; docs/ntk.md). */
#ifndef LARCH_IO_NTK_H5_H
#define LARCH_IO_NTK_H5_H

#include <stdint.h>
#include "larch/error.h"

/* One dataset: float64 (f64) or int32 (i32) values of shape (d0) when d1 is
 * 0, else (d0, d1). */
typedef struct larch_h5_array {
    const char *name;
    const double *f64;
    const int32_t *i32;
    int d0, d1;
} larch_h5_array;

/* One attribute of the root: a string (str) or, when str is NULL, a number. */
typedef struct larch_h5_attr {
    const char *name;
    const char *str;
    double num;
} larch_h5_attr;

/* Writes `path` (replacing it) with the datasets and root attributes;
 * errors name the file and the dataset; a failed write removes the file. */
larch_status larch_ntk_h5_write(const char *path, const larch_h5_array *arrays, int n_arrays, const larch_h5_attr *attrs,
                                int n_attrs);

#endif
