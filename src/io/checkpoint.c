/* checkpoint.c - collective save and load of logical HDF5 checkpoints (see
 * include/larch/checkpoint.h and docs/checkpoints.md).
 *
 * Every rank opens the file through MPI-IO and issues the same sequence of
 * HDF5 calls (dataset creation is collective); the data of each tensor is
 * written with one collective H5Dwrite in which each rank selects its own
 * part: its ZeRO slice for sharded optimizer state, else an equal share of
 * the flat buffer, so a replicated model is written by all ranks at once.
 * After every tensor the ranks agree on success (larch_comm_check), so a
 * failure on one rank (a full disk) stops the save on all of them instead of
 * leaving some waiting in the next collective. Reads are independent: each
 * rank reads what it needs, and the ranks agree once at the end.
 */
#include "io/ckpt_internal.h"
#include "core/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK_FLOATS (1u << 16)   /* 256 KiB chunks, each with its Fletcher32 checksum:
                                     measured 2x faster to write than 1 MiB, 5x than 16 MiB */

/* The part [lo, hi) of the flat buffer of n floats this rank writes of
 * replicated tensors: equal 64-byte aligned shares. */
static void share(size_t n, int rank, int size, size_t *lo, size_t *hi)
{
    size_t per = (n + (size_t)size - 1) / (size_t)size;
    per = (per + LARCH_ALIGN_FLOATS - 1) / LARCH_ALIGN_FLOATS * LARCH_ALIGN_FLOATS;
    *lo = per * (size_t)rank < n ? per * (size_t)rank : n;
    *hi = *lo + per < n ? *lo + per : n;
}

/* Chunk shape: whole trailing dimensions, as many leading rows as fit. */
static void chunk_dims(int ndim, const hsize_t *dims, hsize_t *chunk)
{
    for (int k = 0; k < ndim; k++) chunk[k] = dims[k];
    for (int k = 0; k < ndim; k++) {
        hsize_t rest = 1;
        for (int j = k + 1; j < ndim; j++) rest *= dims[j];
        if (rest <= CHUNK_FLOATS) {
            hsize_t rows = CHUNK_FLOATS / rest;
            chunk[k] = dims[k] < rows ? dims[k] : rows;
            break;
        }
        chunk[k] = 1;
    }
}

typedef struct {
    hid_t file, lcpl, dxpl;
    const char *path;            /* the temporary file, for messages */
} writer;

/* Collective: creates dataset dpath of shape dims and writes this rank's
 * row-major elements [a, b) from src. */
static larch_status write_tensor(const writer *w, const char *dpath, int ndim, const hsize_t *dims,
                                 hsize_t a, hsize_t b, const float *src)
{
    hsize_t chunk[CKPT_MAX_DIMS];
    chunk_dims(ndim, dims, chunk);
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, ndim, chunk);
    H5Pset_fletcher32(dcpl);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    hid_t d = H5Dcreate2(w->file, dpath, H5T_IEEE_F32LE, space, w->lcpl, dcpl, H5P_DEFAULT);
    /* The memory side is the same selection of a tensor-shaped space whose
     * element a is src[0]: same-shape selections take HDF5's fast path
     * (a 1-D memory space makes it map every element to its chunk). Only
     * the selected elements are touched. */
    hid_t ms = H5Screate_simple(ndim, dims, NULL);
    const float *base = (const float *)((uintptr_t)src - (uintptr_t)a * sizeof(float));
    int rc = d < 0 ? -1 : ckpt_select_range(space, ndim, dims, a, b);
    if (rc == 0) rc = ckpt_select_range(ms, ndim, dims, a, b);
    if (rc == 0) rc = H5Dwrite(d, H5T_NATIVE_FLOAT, ms, space, w->dxpl, base) < 0 ? -1 : 0;
    char why[256] = "";
    if (rc) ckpt_h5_why(why, sizeof why);
    H5Sclose(ms);
    if (d >= 0) H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (rc) return larch_fail(LARCH_ERR_IO, "writing %s of %s: %s", dpath, w->path, why);
    return LARCH_OK;
}

static int put_meta(hid_t file, hid_t optim_group, const larch_optim *o, const larch_ckpt_meta *meta)
{
    int rc = 0;
    rc |= ckpt_attr_put_long(file, "format_version", LARCH_CKPT_FORMAT);
    rc |= ckpt_attr_put_str(file, "larch_version", LARCH_VERSION_STRING);
    rc |= ckpt_attr_put_long(file, "step", meta->step);
    rc |= ckpt_attr_put_long(file, "epoch", meta->epoch);
    rc |= ckpt_attr_put_long(file, "sampler_epoch", meta->sampler_epoch);
    rc |= ckpt_attr_put_long(file, "sampler_step", meta->sampler_step);
    rc |= ckpt_attr_put_long(file, "samples_seen", meta->samples_seen);
    rc |= ckpt_attr_put_long(file, "rng_seed", (long)meta->rng_seed);
    rc |= ckpt_attr_put_long(file, "world_size", meta->world_size);
    rc |= ckpt_attr_put_long(file, "global_batch", meta->global_batch);
    rc |= ckpt_attr_put_long(file, "sched_step", meta->sched_step);
    rc |= ckpt_attr_put_long(file, "sched_total_steps", meta->sched_total_steps);
    rc |= ckpt_attr_put_str(file, "config", meta->config ? meta->config : "");
    if (o) {
        rc |= ckpt_attr_put_str(optim_group, "optimizer", o->name);
        rc |= ckpt_attr_put_long(optim_group, "t", o->t);
        rc |= ckpt_attr_put_double(optim_group, "mu_product", o->mu_product);
    }
    return rc;
}

/* Is the optimizer's range a slice (sharded state) rather than everything? */
static int sharded(const larch_model *m, const larch_optim *o)
{
    return !(o->lo == 0 && o->hi >= m->n_floats);
}

/* The tensors of one save, in a fixed order every rank follows. */
static larch_status write_all(const writer *w, const larch_comm *c, const larch_model *m, const larch_optim *o)
{
    size_t lo, hi;
    share(m->n_floats, c->rank, c->size, &lo, &hi);
    char dpath[512];
    hsize_t dims[CKPT_MAX_DIMS];
    larch_status s = LARCH_OK;
    for (int i = 0; !s && i < m->n_params; i++) {
        const larch_param *p = &m->params[i];
        size_t a = p->offset > lo ? p->offset : lo, z = p->offset + p->size < hi ? p->offset + p->size : hi;
        if (z < a) z = a;
        ckpt_param_path(dpath, sizeof dpath, m, p);
        int nd = ckpt_param_dims(p, dims);
        s = larch_comm_check(c, write_tensor(w, dpath, nd, dims, a - p->offset, z - p->offset, m->param + a));
    }
    for (int i = 0; !s && i < m->n_buffers; i++) {
        const larch_buffer *b = &m->buffers[i];
        ckpt_buffer_path(dpath, sizeof dpath, m, b);
        dims[0] = b->size;
        s = larch_comm_check(c, write_tensor(w, dpath, 1, dims, 0, c->rank == 0 ? b->size : 0, m->buffer + b->offset));
    }
    if (!o) return s;
    size_t slo = lo, shi = hi;
    if (sharded(m, o)) { slo = o->lo; shi = o->hi; }
    for (int k = 0; !s && k < o->n_state; k++) {
        for (int i = 0; !s && i < m->n_params; i++) {
            const larch_param *p = &m->params[i];
            if (!larch_param_has_state(p)) continue;  /* frozen: no state */
            size_t a = p->offset > slo ? p->offset : slo, z = p->offset + p->size < shi ? p->offset + p->size : shi;
            if (z < a) z = a;
            /* state of flat value e is state[k][state_offset + e - first value of the optimizer's range] */
            size_t first = p->offset > o->lo ? p->offset : o->lo;
            const float *src = z > a ? o->state[k] + o->state_offset[i] + (a - first) : o->state[k];
            ckpt_state_path(dpath, sizeof dpath, o->state_names[k], m, p);
            int nd = ckpt_param_dims(p, dims);
            s = larch_comm_check(c, write_tensor(w, dpath, nd, dims, a - p->offset, z - p->offset, src));
        }
    }
    return s;
}

/* Bytes a checkpoint of m and o takes, with room for HDF5's metadata. */
static double estimate_bytes(const larch_model *m, const larch_optim *o)
{
    double floats = 0.0, trainable = 0.0, tensors = (double)(m->n_params + m->n_buffers);
    for (int i = 0; i < m->n_params; i++) {
        floats += (double)m->params[i].size;
        if (larch_param_has_state(&m->params[i])) trainable += (double)m->params[i].size;
    }
    for (int i = 0; i < m->n_buffers; i++) floats += (double)m->buffers[i].size;
    if (o) {
        floats += trainable * o->n_state;
        tensors += (double)m->n_params * o->n_state;
    }
    return 4.0 * floats * 1.001 + 16384.0 * tensors + 1048576.0;
}

/* Rank 0 reserves the disk space of the whole checkpoint before any data
 * is written: a full disk (or a file-size limit) then fails here, cleanly,
 * instead of inside HDF5's collective writes or its close. */
static larch_status reserve_space(const char *tmp, double bytes)
{
    int fd = open(tmp, O_WRONLY);
    if (fd < 0) return larch_fail(LARCH_ERR_IO, "cannot open %s: %s", tmp, strerror(errno));
    int rc = posix_fallocate(fd, 0, (off_t)bytes);
    close(fd);
    if (rc == 0 || rc == EOPNOTSUPP || rc == EINVAL) return LARCH_OK;   /* a file system without fallocate */
    return larch_fail(LARCH_ERR_IO, "cannot reserve %.1f MiB for checkpoint %s: %s (the previous checkpoints are kept)",
                      bytes / 1048576.0, tmp, strerror(rc));
}

/* Removes all but the newest `keep` checkpoints of dir, and temporary files
 * that an interrupted save left behind (rank 0, after a successful save). */
static void prune(const char *dir, int keep)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (strncmp(de->d_name, ".ckpt-", 6) != 0 || n < 8 || strcmp(de->d_name + n - 7, ".h5.tmp") != 0) continue;
        char stale[4200];
        snprintf(stale, sizeof stale, "%s/%s", dir, de->d_name);
        unlink(stale);
    }
    if (d) closedir(d);
    char **paths = NULL;
    int n = larch_ckpt_list(dir, &paths);
    for (int i = 0; i < n; i++) {
        if (keep > 0 && i >= keep) unlink(paths[i]);
        free(paths[i]);
    }
    free(paths);
}

larch_status larch_ckpt_save(const char *dir, int keep, const larch_comm *c, const larch_model *m,
                             const larch_optim *o, const larch_ckpt_meta *meta, char *path_out, size_t path_len)
{
    ckpt_h5_quiet();
    larch_status s = larch_comm_check(c, c->rank == 0 ? larch_mkdir_p(dir) : LARCH_OK);
    if (s) return s;
    char tmp[4200], final[4200];
    snprintf(tmp, sizeof tmp, "%s/.ckpt-%08ld.h5.tmp", dir, meta->step);
    snprintf(final, sizeof final, "%s/ckpt-%08ld.h5", dir, meta->step);
    MPI_Comm comm = *(const MPI_Comm *)larch_comm_mpi(c);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (c->size > 1) {                 /* one rank writes faster through POSIX (docs/checkpoints.md) */
        H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
        H5Pset_coll_metadata_write(fapl, 1);
    }
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    char why[256];
    s = larch_comm_check(c, file < 0 ? larch_fail(LARCH_ERR_IO, "cannot create checkpoint %s: %s", tmp,
                                                  ckpt_h5_why(why, sizeof why)) : LARCH_OK);
    if (s) {
        if (file >= 0) H5Fclose(file);
        return s;
    }
    s = larch_comm_check(c, c->rank == 0 ? reserve_space(tmp, estimate_bytes(m, o)) : LARCH_OK);
    if (s) {
        H5Fclose(file);
        if (c->rank == 0) unlink(tmp);
        return s;
    }
    writer w = {file, H5Pcreate(H5P_LINK_CREATE), H5Pcreate(H5P_DATASET_XFER), tmp};
    H5Pset_create_intermediate_group(w.lcpl, 1);
    if (c->size > 1) H5Pset_dxpl_mpio(w.dxpl, H5FD_MPIO_COLLECTIVE);
    hid_t og = o ? H5Gcreate2(file, "/optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    larch_status local = (o && og < 0) || put_meta(file, og, o, meta)
        ? larch_fail(LARCH_ERR_IO, "writing the metadata of %s: %s", tmp, ckpt_h5_why(why, sizeof why)) : LARCH_OK;
    if (og >= 0) H5Gclose(og);
    if (!local) local = larch_comm_fault(c, "save");      /* testing aid (LARCH_FAULT) */
    s = larch_comm_check(c, local);
    if (!s) s = write_all(&w, c, m, o);
    H5Pclose(w.lcpl);
    H5Pclose(w.dxpl);
    local = H5Fclose(file) < 0 ? larch_fail(LARCH_ERR_IO, "closing checkpoint %s: %s", tmp, ckpt_h5_why(why, sizeof why))
                               : LARCH_OK;
    /* A close that failed (a full disk) leaves the file open in HDF5, which
     * would close it again, and crash, at MPI_Finalize: release it now. */
    for (int tries = 0; local && tries < 4 && H5Iis_valid(file) > 0; tries++) {
        H5Fclose(file);
        H5Eclear2(H5E_DEFAULT);
    }
    larch_status closed = larch_comm_check(c, local);
    if (!s) s = closed;
    if (c->rank == 0) {
        if (!s) s = larch_fsync_path(tmp);
        if (!s && rename(tmp, final) != 0)
            s = larch_fail(LARCH_ERR_IO, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
        if (!s) s = larch_fsync_path(dir);
        if (s) unlink(tmp);                       /* the previous checkpoints stay as they were */
        else prune(dir, keep);
    }
    s = larch_comm_check(c, c->rank == 0 ? s : LARCH_OK);
    if (!s && path_out) snprintf(path_out, path_len, "%s", final);
    return s;
}

/* ---- load ---- */

static larch_status read_all(hid_t file, const char *path, larch_model *m, larch_optim *o, const larch_ckpt_meta *meta)
{
    char dpath[512];
    hsize_t dims[CKPT_MAX_DIMS];
    larch_status s = LARCH_OK;
    for (int i = 0; !s && i < m->n_params; i++) {
        const larch_param *p = &m->params[i];
        ckpt_param_path(dpath, sizeof dpath, m, p);
        int nd = ckpt_param_dims(p, dims);
        s = ckpt_read_tensor(file, path, dpath, nd, dims, 0, p->size, m->param + p->offset);
    }
    for (int i = 0; !s && i < m->n_buffers; i++) {
        const larch_buffer *b = &m->buffers[i];
        ckpt_buffer_path(dpath, sizeof dpath, m, b);
        dims[0] = b->size;
        s = ckpt_read_tensor(file, path, dpath, 1, dims, 0, b->size, m->buffer + b->offset);
    }
    if (s || !o) return s;
    if (strcmp(meta->optimizer, o->name) != 0)
        return larch_fail(LARCH_ERR_CONFIG, "checkpoint %s holds the state of optimizer '%s', the config uses '%s'",
                          path, meta->optimizer[0] ? meta->optimizer : "(none)", o->name);
    for (int k = 0; !s && k < o->n_state; k++) {
        for (int i = 0; !s && i < m->n_params; i++) {
            const larch_param *p = &m->params[i];
            if (o->state_offset[i] == (size_t)-1) continue;   /* frozen, or outside this rank's slice */
            size_t a = p->offset > o->lo ? p->offset : o->lo;
            size_t z = p->offset + p->size < o->hi ? p->offset + p->size : o->hi;
            ckpt_state_path(dpath, sizeof dpath, o->state_names[k], m, p);
            int nd = ckpt_param_dims(p, dims);
            s = ckpt_read_tensor(file, path, dpath, nd, dims, a - p->offset, z - p->offset, o->state[k] + o->state_offset[i]);
        }
    }
    if (!s) {
        o->t = meta->optim_t;
        o->mu_product = meta->optim_mu_product;
    }
    return s;
}

/* Checks that every tensor of /params names a parameter of m. */
typedef struct { const larch_model *m; char extra[256]; } extra_ctx;

static herr_t find_extra(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    extra_ctx *x = data;
    const char *slash = strchr(name, '/');
    if (!slash) return 0;                          /* a layer group */
    char full[300];
    snprintf(full, sizeof full, "%.*s.%s", (int)(slash - name), name, slash + 1);
    if (larch_model_param_index(x->m, full) < 0) {
        snprintf(x->extra, sizeof x->extra, "/params/%s", name);
        return 1;
    }
    return 0;
}

larch_status larch_ckpt_load(const char *path, const larch_comm *c, larch_model *m, larch_optim *o,
                             larch_ckpt_meta *meta_out)
{
    ckpt_h5_quiet();
    larch_ckpt_meta meta;
    hid_t file = -1;
    /* every rank reads on its own (POSIX driver): no collective to leave hanging */
    larch_status s = ckpt_open_meta(path, &file, &meta);
    if (!s) s = read_all(file, path, m, o, &meta);
    if (!s) {
        extra_ctx x = {m, ""};
        hid_t g = H5Gopen2(file, "/params", H5P_DEFAULT);
        if (g >= 0) { H5Lvisit(g, H5_INDEX_NAME, H5_ITER_NATIVE, find_extra, &x); H5Gclose(g); }
        if (x.extra[0])
            s = larch_fail(LARCH_ERR_SHAPE, "checkpoint %s has tensor %s, which the model does not have "
                           "(a checkpoint of a different model?)", path, x.extra);
    }
    if (file >= 0) H5Fclose(file);
    s = larch_comm_check(c, s);
    if (!s && meta_out) *meta_out = meta;
    else larch_ckpt_meta_free(&meta);
    return s;
}
