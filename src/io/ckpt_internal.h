/* ckpt_internal.h - HDF5 helpers shared by the checkpoint files of src/io:
 * checkpoint.c (collective save and load) and checkpoint_inspect.c (info,
 * verify, listing). */
#ifndef LARCH_IO_CKPT_INTERNAL_H
#define LARCH_IO_CKPT_INTERNAL_H

#include "larch/checkpoint.h"

#include <hdf5.h>
#include <stdint.h>

#define CKPT_MAX_DIMS 8

/* Silences HDF5's own error printing (larch reports errors as values). */
void larch_ckpt_h5_quiet(void);
/* The innermost message of HDF5's current error stack ("" when none). */
const char *larch_ckpt_h5_why(char *buf, size_t len);

/* "/params/<layer>/<tensor>" etc. */
void larch_ckpt_param_path(char *out, size_t len, const larch_model *m, const larch_param *p);
void larch_ckpt_buffer_path(char *out, size_t len, const larch_model *m, const larch_buffer *b);
void larch_ckpt_state_path(char *out, size_t len, const char *state, const larch_model *m, const larch_param *p);

/* Selects the row-major elements [a, b) of a dataspace of shape dims (a
 * union of at most 2 * ndim blocks); nothing when a >= b. */
int larch_ckpt_select_range(hid_t space, int ndim, const hsize_t *dims, hsize_t a, hsize_t b);

/* Attributes of an object: scalar integers, reals and strings. Readers
 * return LARCH_ERR_FORMAT naming the attribute and the file. */
int larch_ckpt_attr_put_long(hid_t obj, const char *name, long v);
int larch_ckpt_attr_put_double(hid_t obj, const char *name, double v);
int larch_ckpt_attr_put_str(hid_t obj, const char *name, const char *v);
larch_status larch_ckpt_attr_get_long(hid_t obj, const char *file, const char *name, long *v);
larch_status larch_ckpt_attr_get_double(hid_t obj, const char *file, const char *name, double *v);
/* *v is malloc'ed. */
larch_status larch_ckpt_attr_get_str(hid_t obj, const char *file, const char *name, char **v);

/* Opens a checkpoint read-only (one process, POSIX driver) and reads its
 * metadata; checks the format version and that /params exists. On failure
 * *file is -1, meta is freed, and the message names the file. */
larch_status larch_ckpt_open_meta(const char *path, hid_t *file, larch_ckpt_meta *meta);

/* Reads the root and /optim attributes into meta; checks format_version,
 * the ranges and cross-checks of larch_ckpt_check_meta and (format 2) the
 * metadata checksum. */
larch_status larch_ckpt_read_meta_h5(hid_t file, const char *path, larch_ckpt_meta *meta);

/* The ranges and cross-checks every checkpoint's metadata must pass (the
 * attributes named in messages): non-negative positions, samples_seen =
 * step * global_batch, sched_step = step <= sched_total_steps, epoch =
 * sampler_epoch, the sampler position against step (format 2: with
 * steps_per_epoch), and with optimizer state (meta->optimizer set) t = step.
 * Fails with `status` (LARCH_ERR_FORMAT on read, LARCH_ERR_INVALID on save). */
larch_status larch_ckpt_check_meta(const char *path, const larch_ckpt_meta *meta, larch_status status);

/* "fnv1a64:<16 hex digits>": the FNV-1a 64-bit hash of a canonical text of
 * every field of meta that a file of its format_version stores (the config
 * text, the lineage and the /optim attributes when meta->optimizer is set),
 * stored as attribute meta_checksum since format 2. Any single changed byte
 * changes it. */
void larch_ckpt_meta_checksum(const larch_ckpt_meta *meta, char *out, size_t len);

/* Bytes a checkpoint of m and o (may be NULL) takes, HDF5's metadata
 * included, with `attr_bytes` of attribute text (config, lineage). */
double larch_ckpt_estimate_bytes(const larch_model *m, const larch_optim *o, size_t attr_bytes);

/* Opens dataset `dpath`, checks it is float32 of shape dims[0..ndim), and
 * reads its row-major elements [a, b) into dst. Errors name the tensor. */
larch_status larch_ckpt_read_tensor(hid_t file, const char *path, const char *dpath, int ndim, const hsize_t *dims,
                              hsize_t a, hsize_t b, float *dst);
/* The stored shape of a float32 dataset (ndim 0 when absent or not float32). */
larch_status larch_ckpt_tensor_shape(hid_t file, const char *path, const char *dpath, int *ndim, hsize_t *dims);

/* "(32, 3, 3, 1)" */
void larch_ckpt_fmt_shape(char *out, size_t len, int ndim, const hsize_t *dims);

/* Chunks of LARCH_CKPT_CHUNK_FLOATS floats (256 KiB), each with its
 * Fletcher32 checksum: measured 2x faster to write than 1 MiB, 5x than
 * 16 MiB (docs/checkpoints.md). */
#define LARCH_CKPT_CHUNK_FLOATS (1u << 16)

/* Chunk shape of a tensor: whole trailing dimensions, as many leading rows
 * as fit in LARCH_CKPT_CHUNK_FLOATS. */
void larch_ckpt_chunk_dims(int ndim, const hsize_t *dims, hsize_t *chunk);
/* The dataset creation properties of every checkpoint tensor: those chunks,
 * the Fletcher32 filter, no fill (-1 on failure). */
hid_t larch_ckpt_dataset_dcpl(int ndim, const hsize_t *dims);
/* The Fletcher32 checksum HDF5's filter appends to `bytes` (even) bytes. */
uint32_t larch_ckpt_fletcher32(const void *data, size_t bytes);
/* One process (a file opened with the POSIX driver): creates float32
 * dataset dpath of shape dims and writes the whole tensor src into it chunk
 * by chunk, each with its checksum (H5Dwrite_chunk, checkpoint_chunks.c).
 * Errors name the tensor and the file `path`. */
larch_status larch_ckpt_write_chunked(hid_t file, hid_t lcpl, const char *path, const char *dpath, int ndim,
                                      const hsize_t *dims, const float *src);

/* Reads the whole float32 tensor of dataset d (shape dims) into dst chunk
 * by chunk, checking each chunk's Fletcher32 with larch_ckpt_fletcher32
 * (H5Dread_chunk): 0 on success; 1, with dst partly written, when the
 * dataset is not chunked and filtered as larch writes them or a checksum
 * does not match; the caller then reads through HDF5's filter, which says
 * what is wrong. */
int larch_ckpt_read_chunked(hid_t d, int ndim, const hsize_t *dims, float *dst);

/* checkpoint_masks.c: a tensor at least half zeros is written with the
 * shuffle and deflate filters (before Fletcher32), others as
 * larch_ckpt_write_chunked; the pruning mask of parameter i as
 * /masks/<layer>/<tensor> (float32 0/1, only when m->prune_mask prunes some
 * of it); reading the masks into m->prune_mask (when set: a tensor without
 * one is unpruned; a value other than 0/1, or a nonzero weight where the
 * mask prunes, is LARCH_ERR_FORMAT naming the tensor). */
larch_status larch_ckpt_write_tensor(hid_t file, hid_t lcpl, const char *path, const char *dpath, int ndim,
                                     const hsize_t *dims, const float *src);
larch_status larch_ckpt_write_mask(hid_t file, hid_t lcpl, const char *path, const larch_model *m, int i);
larch_status larch_ckpt_read_masks(hid_t file, const char *path, larch_model *m);
int larch_ckpt_mask_count(const larch_model *m);

/* A model parameter's logical shape as hsize_t. */
int larch_ckpt_param_dims(const larch_param *p, hsize_t *dims);

#endif
