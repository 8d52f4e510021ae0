/* outputs_h5.h - the HDF5 file `larch predict` writes (one process). */
#ifndef LARCH_IO_OUTPUTS_H5_H
#define LARCH_IO_OUTPUTS_H5_H

#include <stdint.h>
#include "larch/model.h"

/* Writes `path` (replacing it) with dataset /outputs, float32 of shape
 * (n, c) when the per-sample shape is 1x1xc, else (n, h, w, c), the
 * /labels (int32, n) when labels is not NULL, and string attributes
 * `layer`, `checkpoint` and `data` of the root. Errors name the file. */
larch_status larch_outputs_h5_write(const char *path, const float *y, int n, larch_shape shape, const int32_t *labels,
                                    const char *layer, const char *checkpoint, const char *data);

#endif
