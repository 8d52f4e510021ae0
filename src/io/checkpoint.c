/* checkpoint.c - save and load of logical HDF5 checkpoints (see
 * include/larch/checkpoint.h and docs/checkpoints.md).
 *
 * A save is written by one process, rank 0, through HDF5's POSIX driver:
 * every tensor as whole chunks that already carry their Fletcher32 checksum
 * (checkpoint_chunks.c). Replicated tensors (parameters, buffers, unsharded
 * optimizer state) are whole on rank 0 already; sharded optimizer state is
 * gathered there tensor by tensor. Parallel HDF5 can write checksummed
 * (filtered) datasets only collectively, and Open MPI 4.1's collective writes
 * of them reached 0.03-0.09 of the disk's bandwidth where this reaches most
 * of it (docs/checkpoints.md, "Speed"). After every tensor the ranks agree
 * on success (larch_comm_check), so a failure on rank 0 (a full disk) stops
 * the save on all of them. Reads are independent: each rank reads what it
 * needs, and the ranks agree once at the end.
 */
#include "io/ckpt_internal.h"
#include "io/ckpt_quant.h"
#include "nn/model_internal.h"   /* the model's layout (library-internal) */
#include "core/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    hid_t file, lcpl;            /* rank 0 only */
    const char *path;            /* the temporary file, for messages */
} writer;

/* Each tensor's own step count, and NAdam's momentum product, as attribute
 * <tensor> of the groups /optim/t/<layer> and /optim/mu_product/<layer>
 * (tensors with state only; the counters are replicated). Rank 0. */
static int put_tensor_steps(hid_t optim_group, const larch_model *m, const larch_optim *o)
{
    int rc = 0;
    for (int k = 0; !rc && k < (o->kind == LARCH_OPT_NADAM ? 2 : 1); k++) {
        hid_t top = H5Gcreate2(optim_group, k ? "mu_product" : "t", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (top < 0) return -1;
        for (int i = 0; !rc && i < m->n_params; i++) {
            const larch_param *p = &m->params[i];
            if (!larch_param_has_state(p)) continue;
            const char *layer = m->layers[p->layer]->name;
            hid_t g = H5Lexists(top, layer, H5P_DEFAULT) > 0 ? H5Gopen2(top, layer, H5P_DEFAULT)
                                                             : H5Gcreate2(top, layer, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0) { rc = -1; break; }
            rc |= k ? larch_ckpt_attr_put_double(g, p->tensor, o->tensor_mu_product[i])
                    : larch_ckpt_attr_put_long(g, p->tensor, o->tensor_t[i]);
            H5Gclose(g);
        }
        H5Gclose(top);
    }
    return rc;
}

/* Every attribute of meta (complete: optimizer fields and checksum filled
 * in by the save), and each tensor's step count. Rank 0. */
static int put_meta(hid_t file, hid_t optim_group, const larch_model *m, const larch_optim *o, const larch_ckpt_meta *meta)
{
    int rc = 0;
    rc |= larch_ckpt_attr_put_long(file, "format_version", meta->format_version);
    rc |= larch_ckpt_attr_put_str(file, "larch_version", meta->larch_version);
    rc |= larch_ckpt_attr_put_long(file, "step", meta->step);
    rc |= larch_ckpt_attr_put_long(file, "epoch", meta->epoch);
    rc |= larch_ckpt_attr_put_long(file, "sampler_epoch", meta->sampler_epoch);
    rc |= larch_ckpt_attr_put_long(file, "sampler_step", meta->sampler_step);
    rc |= larch_ckpt_attr_put_long(file, "samples_seen", meta->samples_seen);
    rc |= larch_ckpt_attr_put_long(file, "rng_seed", (long)meta->rng_seed);
    rc |= larch_ckpt_attr_put_long(file, "world_size", meta->world_size);
    rc |= larch_ckpt_attr_put_long(file, "global_batch", meta->global_batch);
    rc |= larch_ckpt_attr_put_long(file, "sched_step", meta->sched_step);
    rc |= larch_ckpt_attr_put_long(file, "sched_total_steps", meta->sched_total_steps);
    rc |= larch_ckpt_attr_put_str(file, "config", meta->config ? meta->config : "");
    rc |= larch_ckpt_attr_put_long(file, "steps_per_epoch", meta->steps_per_epoch);
    rc |= larch_ckpt_attr_put_str(file, "run_id", meta->run_id);
    rc |= larch_ckpt_attr_put_str(file, "lineage", meta->lineage ? meta->lineage : "");
    char sum[64];
    larch_ckpt_meta_checksum(meta, sum, sizeof sum);
    rc |= larch_ckpt_attr_put_str(file, "meta_checksum", sum);
    if (optim_group >= 0 && o) {
        rc |= larch_ckpt_attr_put_str(optim_group, "optimizer", meta->optimizer);
        rc |= larch_ckpt_attr_put_long(optim_group, "t", meta->optim_t);
        rc |= larch_ckpt_attr_put_str(optim_group, "state_layout", meta->state_layout);
        rc |= put_tensor_steps(optim_group, m, o);
    }
    return rc;
}

/* Collective: is the optimizer state sharded? Each rank's range [lo, hi)
 * says: every rank holding the whole buffer is replicated state; otherwise
 * the ranges must partition the buffer (ZeRO-1 slices, some possibly empty:
 * a model smaller than the ranks' 16-float alignment leaves whole slices to
 * one rank). Nothing is guessed from one rank's range alone. */
static larch_status agree_layout(const larch_comm *c, const larch_model *m, const larch_optim *o, int *sharded)
{
    double v[2] = {o->lo == 0 && o->hi >= m->n_floats ? 1.0 : 0.0, (double)(o->hi > o->lo ? o->hi - o->lo : 0)};
    larch_status s = larch_comm_allreduce_f64(c, v, 2);
    if (s) return s;
    *sharded = v[0] < (double)c->size;
    if (*sharded && v[1] != (double)m->n_floats)
        return larch_fail(LARCH_ERR_INVALID, "checkpoint: the optimizer state ranges of the %d ranks cover %.0f of the "
                          "model's %zu values: neither replicated nor a partition", c->size, v[1], m->n_floats);
    return LARCH_OK;
}

/* Collective: rank 0 receives into full (n floats) the parts [a, z) of one
 * tensor each rank holds at src (sharded optimizer state: the ranks' parts
 * partition the tensor). */
static larch_status gather_tensor(const larch_comm *c, size_t n, size_t a, size_t z, const float *src, float *full)
{
    if (n > (size_t)INT_MAX)
        return larch_fail(LARCH_ERR_INVALID, "checkpoint: a sharded tensor of %zu values is too large to gather "
                          "(at most %d)", n, INT_MAX);
    MPI_Comm comm = *(const MPI_Comm *)larch_comm_mpi(c);
    int mine[2] = {(int)a, (int)(z - a)}, *all = NULL, *counts = NULL, *displs = NULL;
    if (c->rank == 0) {
        all = malloc(2 * (size_t)c->size * sizeof *all);
        counts = malloc((size_t)c->size * sizeof *counts);
        displs = malloc((size_t)c->size * sizeof *displs);
    }
    int ok = c->rank != 0 || (all && counts && displs);
    larch_status s = larch_comm_check(c, ok ? LARCH_OK : larch_fail(LARCH_ERR_NOMEM, "checkpoint: out of memory"));
    int rc = s ? MPI_SUCCESS : MPI_Gather(mine, 2, MPI_INT, all, 2, MPI_INT, 0, comm);
    if (!s && rc == MPI_SUCCESS && c->rank == 0)
        for (int r = 0; r < c->size; r++) { displs[r] = all[2 * r]; counts[r] = all[2 * r + 1]; }
    if (!s && rc == MPI_SUCCESS) rc = MPI_Gatherv(src, mine[1], MPI_FLOAT, full, counts, displs, MPI_FLOAT, 0, comm);
    if (!s && rc != MPI_SUCCESS) s = larch_fail(LARCH_ERR_MPI, "checkpoint: gathering sharded optimizer state failed (MPI error %d)", rc);
    free(all);
    free(counts);
    free(displs);
    return s;
}

/* The tensors of one save, in a fixed order every rank follows; rank 0
 * writes them. */
static larch_status write_all(const writer *w, const larch_comm *c, const larch_model *m, const larch_optim *o,
                              int sharded)
{
    int root = c->rank == 0;
    char dpath[512];
    hsize_t dims[CKPT_MAX_DIMS];
    larch_status s = LARCH_OK;
    for (int i = 0; !s && i < m->n_params; i++) {
        const larch_param *p = &m->params[i];
        if (larch_ckpt_quant_replaces(m, p)) continue;   /* under /quant (checkpoint_quant.c) */
        larch_ckpt_param_path(dpath, sizeof dpath, m, p);
        int nd = larch_ckpt_param_dims(p, dims);
        larch_status mine = root ? larch_ckpt_write_tensor(w->file, w->lcpl, w->path, dpath, nd, dims, m->param + p->offset)
                                 : LARCH_OK;
        if (!mine && root) mine = larch_ckpt_write_mask(w->file, w->lcpl, w->path, m, i);   /* pruning (checkpoint_masks.c) */
        s = larch_comm_check(c, mine);
    }
    for (int i = 0; !s && i < m->n_buffers; i++) {
        const larch_buffer *b = &m->buffers[i];
        larch_ckpt_buffer_path(dpath, sizeof dpath, m, b);
        dims[0] = b->size;
        larch_status mine = root ? larch_ckpt_write_chunked(w->file, w->lcpl, w->path, dpath, 1, dims, m->buffer + b->offset)
                                 : LARCH_OK;
        s = larch_comm_check(c, mine);
    }
    if (!s) s = larch_comm_check(c, root ? larch_ckpt_quant_write(w->file, w->lcpl, w->path, m) : LARCH_OK);
    if (s || !o) return s;
    float *full = NULL;                 /* rank 0, sharded: one whole tensor of state */
    if (sharded) {
        size_t big = 1;
        for (int i = 0; i < m->n_params; i++)
            if (larch_param_has_state(&m->params[i]) && m->params[i].size > big) big = m->params[i].size;
        if (root) full = malloc(big * sizeof *full);
        s = larch_comm_check(c, root && !full ? larch_fail(LARCH_ERR_NOMEM, "checkpoint: out of memory gathering "
                                                           "%zu values of sharded optimizer state", big) : LARCH_OK);
    }
    for (int k = 0; !s && k < o->n_state; k++) {
        for (int i = 0; !s && i < m->n_params; i++) {
            const larch_param *p = &m->params[i];
            if (!larch_param_has_state(p)) continue;  /* frozen: no state */
            const float *src = NULL;
            if (!sharded) src = o->state[k] + o->state_offset[i];   /* replicated: every rank holds it all */
            else {
                size_t a = p->offset > o->lo ? p->offset : o->lo, z = p->offset + p->size < o->hi ? p->offset + p->size : o->hi;
                if (z < a) z = a;
                const float *part = z > a ? o->state[k] + o->state_offset[i] : o->state[k];
                s = gather_tensor(c, p->size, a - p->offset, z - p->offset, part, full);
                src = full;
            }
            larch_ckpt_state_path(dpath, sizeof dpath, o->state_names[k], m, p);
            int nd = larch_ckpt_param_dims(p, dims);
            if (s) break;
            larch_status mine = root ? larch_ckpt_write_tensor(w->file, w->lcpl, w->path, dpath, nd, dims, src) : LARCH_OK;
                s = larch_comm_check(c, mine);
        }
    }
    free(full);
    return s;
}

/* HDF5's own bytes per object in the files larch writes (HDF5 1.10,
 * default format, chunked datasets with Fletcher32), measured with
 * H5Fget_eoa (docs/checkpoints.md): a dataset's object header and chunk
 * index, a group's symbol table and heap, the superblock and root. */
#define H5_PER_DATASET 2450.0
#define H5_PER_CHUNK   40.0
#define H5_PER_GROUP   1300.0
#define H5_FIXED       3072.0
#define H5_PER_ATTR_BYTE 1.0

/* A dataset's bytes: whole chunks (edge chunks are stored whole), and the
 * object header and chunk index. */
static double tensor_bytes(int ndim, const hsize_t *dims)
{
    hsize_t chunk[CKPT_MAX_DIMS];
    larch_ckpt_chunk_dims(ndim, dims, chunk);
    double chunks = 1.0, per = 1.0;
    for (int k = 0; k < ndim; k++) {
        chunks *= (double)((dims[k] + chunk[k] - 1) / chunk[k]);
        per *= (double)chunk[k];
    }
    return chunks * (4.0 * per + H5_PER_CHUNK) + H5_PER_DATASET;
}

double larch_ckpt_estimate_bytes(const larch_model *m, const larch_optim *o, size_t attr_bytes)
{
    double bytes = H5_FIXED + H5_PER_ATTR_BYTE * (double)attr_bytes, layers = 0.0;
    hsize_t dims[CKPT_MAX_DIMS];
    for (int i = 0; i < m->n_params; i++) {
        const larch_param *p = &m->params[i];
        double t = tensor_bytes(larch_ckpt_param_dims(p, dims), dims);
        bytes += t;
        if (o && larch_param_has_state(p)) bytes += (double)o->n_state * t;
        if (i == 0 || p->layer != m->params[i - 1].layer) layers += 1.0;
    }
    for (int i = 0; i < m->n_buffers; i++) {
        dims[0] = m->buffers[i].size;
        bytes += tensor_bytes(1, dims);
    }
    /* groups: /params, /buffers, /optim, /optim/<state> and one per layer in each */
    double groups = 2.0 + layers + (double)m->n_buffers + (o ? 1.0 + (double)o->n_state * (1.0 + layers) : 0.0);
    return (bytes + H5_PER_GROUP * groups) * 1.01 + 4096.0;      /* a margin: the measured constants vary a little */
}

/* Rank 0 reserves the disk space of the whole checkpoint before any data
 * is written: a full disk (or a file-size limit) then fails here, cleanly,
 * instead of inside HDF5's writes or its close. The file is cut
 * to HDF5's end of allocation after the close (finish_file). */
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

/* Rank 0: creates dir/.ckpt-<step>.<random>.h5.tmp, a name no other save
 * (of this or another process) uses. */
static larch_status create_tmp(const char *dir, long step, char *tmp, size_t len)
{
    for (int tries = 0; tries < 100; tries++) {
        char id[24];
        larch_ckpt_new_run_id(id, sizeof id);
        if (snprintf(tmp, len, "%s/.ckpt-%08ld.%.8s.h5.tmp", dir, step, id) >= (int)len)
            return larch_fail(LARCH_ERR_IO, "checkpoint directory name too long: %s", dir);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd >= 0) { close(fd); return LARCH_OK; }
        if (errno != EEXIST)
            return larch_fail(LARCH_ERR_IO, "cannot create checkpoint %s: %s", tmp, strerror(errno));
    }
    return larch_fail(LARCH_ERR_IO, "cannot create a temporary checkpoint file in %s: every name tried exists", dir);
}

/* Rank 0, after the close: cuts the file to HDF5's end of allocation `eoa`
 * taken just before the close (the reservation may have been larger), then
 * fsyncs it. The close writes only inside that allocation (it may give back
 * aggregation blocks at its end), so the cut never removes a written byte;
 * the checks of every later read (HDF5's own "truncated file" test) would
 * say so if it did. */
static larch_status finish_file(const char *tmp, haddr_t eoa)
{
    struct stat st;
    if (stat(tmp, &st) != 0) return larch_fail(LARCH_ERR_IO, "cannot stat %s: %s", tmp, strerror(errno));
    if (eoa != HADDR_UNDEF && eoa > 0 && (double)st.st_size > (double)eoa && truncate(tmp, (off_t)eoa) != 0)
        return larch_fail(LARCH_ERR_IO, "cannot truncate %s to %llu bytes: %s", tmp, (unsigned long long)eoa, strerror(errno));
    return larch_fsync_path(tmp);
}

/* Removes all but the newest `keep` checkpoints of dir (rank 0, after a
 * successful save): the file just written (`newest`) is always kept and
 * counts as one of them, and checkpoints of later steps (another lineage's,
 * which the trainer moves aside before its first save) are not its to
 * remove. */
static void prune(const char *dir, int keep, const char *newest, long step)
{
    if (keep <= 0) return;
    char **paths = NULL;
    int n = larch_ckpt_list(dir, &paths), kept = 1;
    for (int i = 0; i < n; i++) {
        const char *base = strrchr(paths[i], '/') ? strrchr(paths[i], '/') + 1 : paths[i];
        long s = strtol(base + 5, NULL, 10);                  /* ckpt-<step>.h5 */
        if (strcmp(paths[i], newest) != 0 && s < step && kept++ >= keep) unlink(paths[i]);
        free(paths[i]);
    }
    free(paths);
}

larch_status larch_ckpt_save(const char *dir, int keep, const larch_comm *c, const larch_model *m,
                             const larch_optim *o, const larch_ckpt_meta *meta, char *path_out, size_t path_len)
{
    larch_ckpt_h5_quiet();
    char tmp[4200] = "", final[4200], why[256];
    snprintf(final, sizeof final, "%s/ckpt-%08ld.h5", dir, meta->step);
    /* the complete metadata, checked as a load will check it */
    larch_ckpt_meta full = *meta;
    full.format_version = LARCH_CKPT_FORMAT;
    snprintf(full.larch_version, sizeof full.larch_version, "%s", LARCH_VERSION_STRING);
    memset(full.optimizer, 0, sizeof full.optimizer);
    memset(full.state_layout, 0, sizeof full.state_layout);
    int sharded = 0;
    larch_status s = LARCH_OK;
    if (o) {
        s = agree_layout(c, m, o, &sharded);
        snprintf(full.optimizer, sizeof full.optimizer, "%s", o->name);
        full.optim_t = o->t;
        full.optim_mu_product = 0.0;   /* format 2: per tensor (/optim/mu_product) */
        snprintf(full.state_layout, sizeof full.state_layout, "%s", sharded ? "sharded" : "replicated");
    }
    if (!s) s = larch_ckpt_check_meta(final, &full, LARCH_ERR_INVALID);
    if (!s && c->rank == 0) s = larch_mkdir_p(dir);
    if (!s && c->rank == 0) s = create_tmp(dir, meta->step, tmp, sizeof tmp);
    s = larch_comm_check(c, s);
    if (!s) s = larch_comm_bcast(c, tmp, sizeof tmp, 0);
    if (s) {
        if (c->rank == 0 && tmp[0]) unlink(tmp);
        return s;
    }
    /* rank 0 alone writes the file (POSIX driver): see the top of this file */
    hid_t file = -1;
    larch_status local = LARCH_OK;
    if (c->rank == 0) {
        errno = 0;
        file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        int err = errno;
        if (file < 0) {
            larch_ckpt_h5_why(why, sizeof why);
            local = larch_fail(LARCH_ERR_IO, "cannot create checkpoint %s: %s%s%s", tmp, err ? strerror(err) : "",
                               err && why[0] ? "; HDF5: " : "", why);
        }
    }
    s = larch_comm_check(c, local);
    if (s) {
        if (c->rank == 0) unlink(tmp);
        return s;
    }
    size_t attr_bytes = (meta->config ? strlen(meta->config) : 0) + (meta->lineage ? strlen(meta->lineage) : 0);
    s = larch_comm_check(c, c->rank == 0 ? reserve_space(tmp, larch_ckpt_estimate_bytes(m, o, attr_bytes)) : LARCH_OK);
    if (s) {
        if (file >= 0) H5Fclose(file);
        if (c->rank == 0) unlink(tmp);
        return s;
    }
    writer w = {file, -1, tmp};
    if (c->rank == 0) {
        w.lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(w.lcpl, 1);
        hid_t og = o ? H5Gcreate2(file, "/optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
        if ((o && og < 0) || put_meta(file, og, m, o, &full))
            local = larch_fail(LARCH_ERR_IO, "writing the metadata of %s: %s", tmp, larch_ckpt_h5_why(why, sizeof why));
        if (og >= 0) H5Gclose(og);
    }
    if (!local) local = larch_comm_fault(c, "save");      /* testing aid (LARCH_FAULT) */
    s = larch_comm_check(c, local);
    if (!s) s = write_all(&w, c, m, o, sharded);
    if (w.lcpl >= 0) H5Pclose(w.lcpl);
    haddr_t eoa = HADDR_UNDEF;
    if (!s && file >= 0 && H5Fget_eoa(file, &eoa) < 0) {
        eoa = HADDR_UNDEF;
        H5Eclear2(H5E_DEFAULT);
    }
    local = file >= 0 && H5Fclose(file) < 0 ? larch_fail(LARCH_ERR_IO, "closing checkpoint %s: %s", tmp, larch_ckpt_h5_why(why, sizeof why))
                               : LARCH_OK;
    /* A close that failed (a full disk) leaves the file open in HDF5, which
     * would close it again, and crash, at MPI_Finalize: release it now. */
    for (int tries = 0; local && file >= 0 && tries < 4 && H5Iis_valid(file) > 0; tries++) {
        H5Fclose(file);
        H5Eclear2(H5E_DEFAULT);
    }
    larch_status closed = larch_comm_check(c, local);
    if (!s) s = closed;
    if (c->rank == 0) {
        if (!s) s = finish_file(tmp, eoa);
        if (!s && rename(tmp, final) != 0)
            s = larch_fail(LARCH_ERR_IO, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
        if (!s) s = larch_fsync_path(dir);
        if (s) unlink(tmp);                       /* the previous checkpoints stay as they were */
        else prune(dir, keep, final, meta->step);
    }
    s = larch_comm_check(c, c->rank == 0 ? s : LARCH_OK);
    if (!s && path_out) snprintf(path_out, path_len, "%s", final);
    return s;
}

/* ---- load ---- */

/* Each tensor's step count and NAdam product (put_tensor_steps). Format 1
 * kept one count and one product for the whole optimizer, which every
 * tensor with state then takes (what its update rules used). */
static larch_status read_tensor_steps(hid_t file, const char *path, const larch_model *m, larch_optim *o,
                                      const larch_ckpt_meta *meta)
{
    for (int i = 0; i < m->n_params; i++) {
        const larch_param *p = &m->params[i];
        o->tensor_t[i] = 0;
        o->tensor_mu_product[i] = 1.0;
        if (!larch_param_has_state(p)) continue;
        if (meta->format_version < 2) {
            o->tensor_t[i] = meta->optim_t;
            o->tensor_mu_product[i] = meta->optim_mu_product;
            continue;
        }
        for (int k = 0; k < (o->kind == LARCH_OPT_NADAM ? 2 : 1); k++) {
            char gpath[512];
            snprintf(gpath, sizeof gpath, "/optim/%s/%s", k ? "mu_product" : "t", m->layers[p->layer]->name);
            if (H5Lexists(file, gpath, H5P_DEFAULT) <= 0 || H5Aexists_by_name(file, gpath, p->tensor, H5P_DEFAULT) <= 0)
                return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: the %s of tensor %s (attribute '%s' of %s) is missing",
                                  path, k ? "momentum product" : "step count", p->name, p->tensor, gpath);
            hid_t g = H5Gopen2(file, gpath, H5P_DEFAULT);
            if (g < 0) return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: cannot open %s", path, gpath);
            long t = 0;
            double mu = 1.0;
            larch_status s = k ? larch_ckpt_attr_get_double(g, path, p->tensor, &mu) : larch_ckpt_attr_get_long(g, path, p->tensor, &t);
            H5Gclose(g);
            if (s) return s;
            if (k == 0 && (t < 0 || t > meta->optim_t))
                return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: tensor %s has taken %ld steps, outside [0, %ld] "
                                  "(the optimizer's)", path, p->name, t, meta->optim_t);
            if (k) o->tensor_mu_product[i] = mu;
            else o->tensor_t[i] = t;
        }
    }
    return LARCH_OK;
}

static larch_status read_all(hid_t file, const char *path, larch_model *m, larch_optim *o, const larch_ckpt_meta *meta)
{
    char dpath[512];
    hsize_t dims[CKPT_MAX_DIMS];
    larch_status s = LARCH_OK;
    for (int i = 0; !s && i < m->n_params; i++) {
        const larch_param *p = &m->params[i];
        if (larch_ckpt_quant_in_file(file, m, p)) continue;   /* quantized: /quant (checkpoint_quant.c) */
        larch_ckpt_param_path(dpath, sizeof dpath, m, p);
        int nd = larch_ckpt_param_dims(p, dims);
        s = larch_ckpt_read_tensor(file, path, dpath, nd, dims, 0, p->size, m->param + p->offset);
    }
    if (!s) s = larch_ckpt_read_masks(file, path, m);        /* pruning (checkpoint_masks.c) */
    for (int i = 0; !s && i < m->n_buffers; i++) {
        const larch_buffer *b = &m->buffers[i];
        larch_ckpt_buffer_path(dpath, sizeof dpath, m, b);
        dims[0] = b->size;
        s = larch_ckpt_read_tensor(file, path, dpath, 1, dims, 0, b->size, m->buffer + b->offset);
    }
    if (!s) s = larch_ckpt_quant_read(file, path, m);
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
            larch_ckpt_state_path(dpath, sizeof dpath, o->state_names[k], m, p);
            int nd = larch_ckpt_param_dims(p, dims);
            s = larch_ckpt_read_tensor(file, path, dpath, nd, dims, a - p->offset, z - p->offset, o->state[k] + o->state_offset[i]);
        }
    }
    if (!s) s = read_tensor_steps(file, path, m, o, meta);
    if (!s) o->t = meta->optim_t;
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
    larch_ckpt_h5_quiet();
    larch_ckpt_meta meta;
    hid_t file = -1;
    /* every rank reads on its own (POSIX driver): no collective to leave hanging */
    larch_status s = larch_ckpt_open_meta(path, &file, &meta);
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
