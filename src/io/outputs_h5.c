/* outputs_h5.c - the HDF5 file of `larch predict` (src/io/outputs_h5.h). */
#include "io/outputs_h5.h"
#include "io/ckpt_internal.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>

static larch_status write_set(hid_t f, const char *path, const char *name, hid_t file_type, hid_t mem_type, int ndim,
                              const hsize_t *dims, const void *data)
{
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t d = sp < 0 ? -1 : H5Dcreate2(f, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = d < 0 ? -1 : H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (d >= 0) H5Dclose(d);
    if (sp >= 0) H5Sclose(sp);
    if (rc < 0) {
        char why[256];
        return larch_fail(LARCH_ERR_IO, "%s: cannot write dataset /%s: %s", path, name, larch_ckpt_h5_why(why, sizeof why));
    }
    return LARCH_OK;
}

larch_status larch_outputs_h5_write(const char *path, const float *y, int n, larch_shape shape, const int32_t *labels,
                                    const char *layer, const char *checkpoint, const char *data)
{
    larch_ckpt_h5_quiet();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        char why[256];
        return larch_fail(LARCH_ERR_IO, "--out %s: cannot create the file: %s", path, larch_ckpt_h5_why(why, sizeof why));
    }
    hsize_t dims[4] = {(hsize_t)n, (hsize_t)shape.h, (hsize_t)shape.w, (hsize_t)shape.c};
    larch_status s;
    if (shape.h == 1 && shape.w == 1) {
        hsize_t d2[2] = {(hsize_t)n, (hsize_t)shape.c};
        s = write_set(f, path, "outputs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, y);
    } else {
        s = write_set(f, path, "outputs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dims, y);
    }
    if (!s && labels) s = write_set(f, path, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dims, labels);
    if (!s && (larch_ckpt_attr_put_str(f, "layer", layer) < 0 || larch_ckpt_attr_put_str(f, "checkpoint", checkpoint) < 0 ||
               larch_ckpt_attr_put_str(f, "data", data) < 0))
        s = larch_fail(LARCH_ERR_IO, "%s: cannot write the attributes", path);
    if (H5Fclose(f) < 0 && !s) s = larch_fail(LARCH_ERR_IO, "%s: cannot close the file (disk full?)", path);
    if (s) remove(path);
    return s;
}
