/* checkpoint_inspect.c - one-process views of checkpoints: listing a
 * directory, the newest valid one, `larch ckpt info` and `larch ckpt verify`. */
#include "io/ckpt_internal.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ckpt-<digits>.h5 */
static int is_ckpt_name(const char *name, long *step)
{
    size_t n = strlen(name);
    if (n < 9 || strncmp(name, "ckpt-", 5) != 0 || strcmp(name + n - 3, ".h5") != 0) return 0;
    char *end;
    *step = strtol(name + 5, &end, 10);
    return end == name + n - 3 && end > name + 5;
}

typedef struct { long step; char *path; } entry;

static int newest_first(const void *a, const void *b)
{
    long x = ((const entry *)a)->step, y = ((const entry *)b)->step;
    return (x < y) - (x > y);
}

int larch_ckpt_list(const char *dir, char ***paths)
{
    *paths = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    entry *e = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        long step;
        if (!is_ckpt_name(de->d_name, &step)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            entry *ne = realloc(e, (size_t)cap * sizeof *e);
            if (!ne) break;
            e = ne;
        }
        size_t len = strlen(dir) + strlen(de->d_name) + 2;
        e[n].path = malloc(len);
        if (!e[n].path) break;
        snprintf(e[n].path, len, "%s/%s", dir, de->d_name);
        e[n++].step = step;
    }
    closedir(d);
    if (n == 0) { free(e); return 0; }
    qsort(e, (size_t)n, sizeof *e, newest_first);
    char **out = malloc((size_t)n * sizeof *out);
    if (!out) {
        for (int i = 0; i < n; i++) free(e[i].path);
        free(e);
        return 0;
    }
    for (int i = 0; i < n; i++) out[i] = e[i].path;
    free(e);
    *paths = out;
    return n;
}

larch_status larch_ckpt_read_meta(const char *path, larch_ckpt_meta *meta)
{
    hid_t f;
    larch_status s = larch_ckpt_open_meta(path, &f, meta);
    if (!s) H5Fclose(f);
    return s;
}

larch_status larch_ckpt_latest(const char *dir, char *out, size_t len)
{
    out[0] = '\0';
    char **paths = NULL;
    int n = larch_ckpt_list(dir, &paths);
    larch_status s = LARCH_OK;
    char first_err[512] = "";
    for (int i = 0; i < n; i++) {
        larch_ckpt_meta meta;
        if (!out[0]) {
            if (larch_ckpt_read_meta(paths[i], &meta) == LARCH_OK) {
                snprintf(out, len, "%s", paths[i]);
                larch_ckpt_meta_free(&meta);
            } else if (!first_err[0]) {
                snprintf(first_err, sizeof first_err, "%s", larch_errmsg());
            }
        }
        free(paths[i]);
    }
    free(paths);
    if (!out[0] && n > 0)
        s = larch_fail(LARCH_ERR_FORMAT, "%s holds %d checkpoint(s) and none is readable; the newest: %s", dir, n, first_err);
    else if (!out[0])
        s = larch_fail(LARCH_ERR_IO, "%s holds no checkpoint (ckpt-<step>.h5)", dir);
    return s;
}

/* ---- walking every dataset ---- */

typedef struct {
    hid_t file;
    const char *path;
    FILE *out;
    int verify;
    long n_tensors, n_values;
    double bytes;
    larch_status status;
} walk_ctx;

static herr_t visit(hid_t root, const char *name, const H5L_info_t *info, void *data)
{
    walk_ctx *w = data;
    H5O_info_t oi;
    if (H5Oget_info_by_name2(root, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_DATASET) return 0;
    char dpath[600];
    snprintf(dpath, sizeof dpath, "/%s", name);
    int nd;
    hsize_t dims[CKPT_MAX_DIMS];
    larch_status s = larch_ckpt_tensor_shape(w->file, w->path, dpath, &nd, dims);
    if (s) { w->status = s; return 1; }
    size_t n = 1;
    for (int k = 0; k < nd; k++) n *= (size_t)dims[k];
    float *buf = malloc((n ? n : 1) * sizeof *buf);
    if (!buf) { w->status = larch_fail(LARCH_ERR_NOMEM, "out of memory reading %s", dpath); return 1; }
    s = larch_ckpt_read_tensor(w->file, w->path, dpath, nd, dims, 0, n, buf);
    double sq = 0.0;
    int finite = 1;
    for (size_t i = 0; !s && i < n; i++) {
        sq += (double)buf[i] * buf[i];
        if (!isfinite(buf[i])) finite = 0;
    }
    free(buf);
    if (s) { w->status = s; return 1; }
    /* the stored type: float32, or a quantized tensor's (checkpoint_quant.c) */
    const char *dtype = "float32";
    size_t esize = 4;
    hid_t d = H5Dopen2(w->file, dpath, H5P_DEFAULT), t = d >= 0 ? H5Dget_type(d) : -1;
    if (t >= 0 && H5Tget_size(t) != 4) {
        esize = H5Tget_size(t);
        int is_bf16 = H5Tget_class(t) == H5T_FLOAT && H5Tget_ebias(t) == 127;
        dtype = H5Tget_class(t) == H5T_INTEGER ? "int8" : is_bf16 ? "bf16" : "fp16";
    }
    if (t >= 0) H5Tclose(t);
    if (d >= 0) H5Dclose(d);
    if (!finite && w->verify) {
        w->status = larch_fail(LARCH_ERR_NUMERIC, "checkpoint %s: tensor %s holds NaN or Inf values", w->path, dpath);
        return 1;
    }
    w->n_tensors++;
    w->n_values += (long)n;
    w->bytes += (double)esize * (double)n;
    if (w->out && !w->verify) {
        char shape[128];
        size_t o = (size_t)snprintf(shape, sizeof shape, "(");
        for (int k = 0; k < nd && o < sizeof shape; k++)
            o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%llu", k ? ", " : "", (unsigned long long)dims[k]);
        if (o < sizeof shape) snprintf(shape + o, sizeof shape - o, ")");
        fprintf(w->out, "  %-44s %-22s %-8s %14.6g%s\n", dpath, shape, dtype, sqrt(sq), finite ? "" : "  (non-finite)");
    }
    return 0;
}

static larch_status walk(const char *path, FILE *out, int verify, larch_ckpt_meta *meta, walk_ctx *w)
{
    memset(w, 0, sizeof *w);
    hid_t f;
    larch_status s = larch_ckpt_open_meta(path, &f, meta);
    if (s) return s;
    char why[256];
    if (out && !verify) {
        fprintf(out, "checkpoint %s\n", path);
        fprintf(out, "  format_version %d, written by larch %s\n", meta->format_version, meta->larch_version);
        fprintf(out, "  step %ld, epoch %ld, next batch: epoch %ld step %ld, samples seen %ld\n", meta->step, meta->epoch,
                meta->sampler_epoch, meta->sampler_step, meta->samples_seen);
        fprintf(out, "  global batch %ld, world size at save %d, rng seed %llu\n", meta->global_batch, meta->world_size,
                (unsigned long long)meta->rng_seed);
        fprintf(out, "  schedule at step %ld of %ld; optimizer %s (t = %ld)%s%s%s\n", meta->sched_step, meta->sched_total_steps,
                meta->optimizer[0] ? meta->optimizer : "none", meta->optim_t, meta->state_layout[0] ? ", state " : "",
                meta->state_layout, meta->state_layout[0] ? " at save" : "");
        if (meta->format_version >= 2)
            fprintf(out, "  run %s; lineage (run:first step) %s; %ld steps per epoch\n", meta->run_id,
                    meta->lineage && meta->lineage[0] ? meta->lineage : "(none)", meta->steps_per_epoch);
        fprintf(out, "  config: %zu bytes (h5dump -a /config %s)\n\n", meta->config ? strlen(meta->config) : 0, path);
        fprintf(out, "  %-44s %-22s %-8s %14s\n", "tensor", "shape", "dtype", "L2 norm");
    }
    {
        w->file = f;
        w->path = path;
        w->out = out;
        w->verify = verify;
        w->status = LARCH_OK;
        if (H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, visit, w) < 0 && !w->status)
            w->status = larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: cannot list its objects: %s", path,
                                   larch_ckpt_h5_why(why, sizeof why));
        s = w->status;
    }
    H5Fclose(f);
    return s;
}

larch_status larch_ckpt_info(const char *path, FILE *f)
{
    larch_ckpt_meta meta;
    walk_ctx w;
    larch_status s = walk(path, f, 0, &meta, &w);
    if (!s) fprintf(f, "\n  %ld tensors, %ld values, %.1f MiB of data\n", w.n_tensors, w.n_values, w.bytes / 1048576.0);
    larch_ckpt_meta_free(&meta);
    return s;
}

larch_status larch_ckpt_verify(const char *path, FILE *f)
{
    larch_ckpt_meta meta;
    walk_ctx w;
    larch_status s = walk(path, f, 1, &meta, &w);
    if (!s && f)
        fprintf(f, "%s: ok (format %d, step %ld; %ld tensors, %ld values read, every tensor checksum valid; attributes "
                "in range and consistent%s)\n", path, meta.format_version, meta.step, w.n_tensors, w.n_values,
                meta.format_version >= 2 ? ", metadata checksum valid" : "; format 1 has no metadata checksum");
    larch_ckpt_meta_free(&meta);
    return s;
}
