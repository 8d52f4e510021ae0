/* convert_idx.c - MNIST-layout IDX files (MNIST, Fashion-MNIST, KMNIST) to
 * the HDF5 dataset format. Class names come from SOURCE/classes.txt (one
 * per line) when it exists. */
#include "datasets/convert.h"

#include <stdio.h>

larch_status larch_convert_idx(const char *source, const larch_convert_opts *o, larch_converted *out)
{
    larch_status s = larch_dataset_fmnist(source, 1, &out->split[0]);
    if (!s) s = larch_dataset_fmnist(source, 0, &out->split[1]);
    char path[4200];
    snprintf(path, sizeof path, "%s/classes.txt", source);
    if (!s) s = larch_convert_read_names(path, 10, &out->classes, &out->n_classes);
    if (!s && out->classes && out->n_classes != 10)
        s = larch_fail(LARCH_ERR_FORMAT, "%s names %d classes, the labels have 10", path, out->n_classes);
    if (s) larch_converted_free(out);
    return s;
}
