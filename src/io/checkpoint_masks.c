/* checkpoint_masks.c - pruning masks and sparse tensors in checkpoints
 * (docs/compression/pruning.md, "On disk").
 *
 * A tensor at least half of whose values are exactly zero (a pruned weight,
 * the optimizer state of one) is stored with HDF5's shuffle and deflate
 * filters before the Fletcher32 checksum, in the same chunks, as the same
 * float32 dataset: every reader (larch_ckpt_load, model.init_from, `larch
 * ckpt info`, h5py) reads it unchanged through HDF5's filters, and the file
 * shrinks with the zeros. The masks of a pruning run are datasets
 * /masks/<layer>/<tensor>, float32 0/1 of the weight's shape, stored the
 * same way (about 0.1 byte per value at 90% sparsity), written only for
 * tensors with at least one pruned value; a tensor without one loads as
 * unpruned. */
#include "io/ckpt_internal.h"
#include "io/ckpt_sparse.h"
#include "nn/model_internal.h"   /* model->prune_mask */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFLATE_LEVEL 4

static int sparse_on = 1;

int larch_ckpt_sparse_storage(int on)
{
    int was = sparse_on;
    sparse_on = on != 0;
    return was;
}

static int sparse_enough(const float *src, size_t n)
{
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++) zeros += src[i] == 0.0f;
    return n > 0 && 2 * zeros >= n;
}

/* shuffle + deflate + Fletcher32 in larch's chunks, through H5Dwrite. */
static larch_status write_deflated(hid_t file, hid_t lcpl, const char *path, const char *dpath, int ndim,
                                   const hsize_t *dims, const float *src)
{
    char why[256] = "";
    hsize_t chunk[CKPT_MAX_DIMS];
    larch_ckpt_chunk_dims(ndim, dims, chunk);
    hid_t space = H5Screate_simple(ndim, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int rc = space < 0 || dcpl < 0 || H5Pset_chunk(dcpl, ndim, chunk) < 0 || H5Pset_shuffle(dcpl) < 0 ||
             H5Pset_deflate(dcpl, DEFLATE_LEVEL) < 0 || H5Pset_fletcher32(dcpl) < 0 ||
             H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0;
    hid_t d = rc ? -1 : H5Dcreate2(file, dpath, H5T_IEEE_F32LE, space, lcpl, dcpl, H5P_DEFAULT);
    if (d < 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, src) < 0) {
        larch_ckpt_h5_why(why, sizeof why);
        rc = 1;
    }
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    if (rc) return larch_fail(LARCH_ERR_IO, "writing %s of %s: %s", dpath, path, why);
    return LARCH_OK;
}

larch_status larch_ckpt_write_tensor(hid_t file, hid_t lcpl, const char *path, const char *dpath, int ndim,
                                     const hsize_t *dims, const float *src)
{
    size_t n = 1;
    for (int k = 0; k < ndim; k++) n *= (size_t)dims[k];
    if (sparse_on && sparse_enough(src, n) && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0 && H5Zfilter_avail(H5Z_FILTER_SHUFFLE) > 0)
        return write_deflated(file, lcpl, path, dpath, ndim, dims, src);
    return larch_ckpt_write_chunked(file, lcpl, path, dpath, ndim, dims, src);
}

static void mask_path(char *out, size_t len, const larch_model *m, const larch_param *p)
{
    snprintf(out, len, "/masks/%s/%s", m->layers[p->layer]->name, p->tensor);
}

static int has_pruned(const larch_model *m, const larch_param *p)
{
    for (size_t j = 0; j < p->size; j++)
        if (!m->prune_mask[p->offset + j]) return 1;
    return 0;
}

int larch_ckpt_mask_count(const larch_model *m)
{
    int n = 0;
    for (int i = 0; m->prune_mask && i < m->n_params; i++) n += has_pruned(m, &m->params[i]);
    return n;
}

larch_status larch_ckpt_write_mask(hid_t file, hid_t lcpl, const char *path, const larch_model *m, int i)
{
    const larch_param *p = &m->params[i];
    if (!m->prune_mask || !has_pruned(m, p)) return LARCH_OK;
    float *v = malloc((p->size ? p->size : 1) * sizeof *v);
    if (!v) return larch_fail(LARCH_ERR_NOMEM, "checkpoint %s: out of memory for the mask of %s", path, p->name);
    for (size_t j = 0; j < p->size; j++) v[j] = m->prune_mask[p->offset + j] ? 1.0f : 0.0f;
    char dpath[512];
    hsize_t dims[CKPT_MAX_DIMS];
    mask_path(dpath, sizeof dpath, m, p);
    int nd = larch_ckpt_param_dims(p, dims);
    larch_status s = sparse_on && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0 ? write_deflated(file, lcpl, path, dpath, nd, dims, v)
                                                             : larch_ckpt_write_chunked(file, lcpl, path, dpath, nd, dims, v);
    free(v);
    return s;
}

larch_status larch_ckpt_read_masks(hid_t file, const char *path, larch_model *m)
{
    if (!m->prune_mask) return LARCH_OK;
    char dpath[512], ppath[512];
    hsize_t dims[CKPT_MAX_DIMS];
    float *v = NULL;
    size_t cap = 0;
    larch_status s = LARCH_OK;
    for (int i = 0; !s && i < m->n_params; i++) {
        const larch_param *p = &m->params[i];
        unsigned char *mk = m->prune_mask + p->offset;
        mask_path(dpath, sizeof dpath, m, p);
        int nd = 0;
        hsize_t have[CKPT_MAX_DIMS];
        if ((s = larch_ckpt_tensor_shape(file, path, dpath, &nd, have))) break;
        if (nd == 0) {                                   /* not pruned when saved */
            memset(mk, 1, p->size);
            continue;
        }
        if (p->size > cap) {
            free(v);
            cap = p->size;
            v = malloc(cap * sizeof *v);
            if (!v) { s = larch_fail(LARCH_ERR_NOMEM, "checkpoint %s: out of memory reading %s", path, dpath); break; }
        }
        nd = larch_ckpt_param_dims(p, dims);
        if ((s = larch_ckpt_read_tensor(file, path, dpath, nd, dims, 0, p->size, v))) break;
        larch_ckpt_param_path(ppath, sizeof ppath, m, p);
        for (size_t j = 0; !s && j < p->size; j++) {
            if (v[j] != 0.0f && v[j] != 1.0f)
                s = larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: mask %s holds %g at value %zu (a mask holds 0 or 1)",
                               path, dpath, (double)v[j], j);
            else if (v[j] == 0.0f && m->param[p->offset + j] != 0.0f)
                s = larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: tensor %s is %g at value %zu, which its mask %s prunes "
                               "(a damaged or edited file?)", path, ppath, (double)m->param[p->offset + j], j, dpath);
            else mk[j] = v[j] != 0.0f;
        }
    }
    free(v);
    return s;
}
