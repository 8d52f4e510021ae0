/* ntk_h5.c - the HDF5 file of `larch ntk` (src/io/ntk_h5.h). */
#include "io/ntk_h5.h"
#include "io/ckpt_internal.h"

#include <hdf5.h>
#include <stdio.h>

larch_status larch_ntk_h5_write(const char *path, const larch_h5_array *arrays, int n_arrays, const larch_h5_attr *attrs,
                                int n_attrs)
{
    larch_ckpt_h5_quiet();
    char why[256];
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return larch_fail(LARCH_ERR_IO, "--out %s: cannot create the file: %s", path, larch_ckpt_h5_why(why, sizeof why));
    larch_status s = LARCH_OK;
    for (int i = 0; !s && i < n_arrays; i++) {
        const larch_h5_array *a = &arrays[i];
        hsize_t dims[2] = {(hsize_t)a->d0, (hsize_t)a->d1};
        hid_t sp = H5Screate_simple(a->d1 ? 2 : 1, dims, NULL);
        hid_t ft = a->f64 ? H5T_IEEE_F64LE : H5T_STD_I32LE, mt = a->f64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT32;
        hid_t d = sp < 0 ? -1 : H5Dcreate2(f, a->name, ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        herr_t rc = d < 0 ? -1 : H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->f64 ? (const void *)a->f64 : (const void *)a->i32);
        if (d >= 0) H5Dclose(d);
        if (sp >= 0) H5Sclose(sp);
        if (rc < 0) s = larch_fail(LARCH_ERR_IO, "%s: cannot write dataset /%s: %s", path, a->name, larch_ckpt_h5_why(why, sizeof why));
    }
    for (int i = 0; !s && i < n_attrs; i++) {
        int rc = attrs[i].str ? larch_ckpt_attr_put_str(f, attrs[i].name, attrs[i].str)
                              : larch_ckpt_attr_put_double(f, attrs[i].name, attrs[i].num);
        if (rc < 0) s = larch_fail(LARCH_ERR_IO, "%s: cannot write attribute %s", path, attrs[i].name);
    }
    if (H5Fclose(f) < 0 && !s) s = larch_fail(LARCH_ERR_IO, "%s: cannot close the file (disk full?)", path);
    if (s) remove(path);
    return s;
}
