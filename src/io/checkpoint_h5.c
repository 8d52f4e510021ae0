/* checkpoint_h5.c - HDF5 helpers of the checkpoint files (ckpt_internal.h). */
#include "io/ckpt_internal.h"
#include "nn/model_internal.h"   /* the model's layout (library-internal) */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void larch_ckpt_h5_quiet(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

typedef struct { char *buf; size_t len; } why_ctx;

static herr_t why_walk(unsigned n, const H5E_error2_t *e, void *data)
{
    why_ctx *w = data;
    char minor[128] = "";
    H5Eget_msg(e->min_num, NULL, minor, sizeof minor);
    if (n == 0)   /* walking upward, entry 0 is the innermost: the cause */ snprintf(w->buf, w->len, "%s%s%s", e->desc ? e->desc : "", minor[0] ? ": " : "", minor);
    return 0;
}

const char *larch_ckpt_h5_why(char *buf, size_t len)
{
    buf[0] = '\0';
    why_ctx w = {buf, len};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, why_walk, &w);
    H5Eclear2(H5E_DEFAULT);
    return buf;
}

void larch_ckpt_param_path(char *out, size_t len, const larch_model *m, const larch_param *p)
{
    snprintf(out, len, "/params/%s/%s", m->layers[p->layer]->name, p->tensor);
}

void larch_ckpt_buffer_path(char *out, size_t len, const larch_model *m, const larch_buffer *b)
{
    snprintf(out, len, "/buffers/%s/%s", m->layers[b->layer]->name, b->tensor);
}

void larch_ckpt_state_path(char *out, size_t len, const char *state, const larch_model *m, const larch_param *p)
{
    snprintf(out, len, "/optim/%s/%s/%s", state, m->layers[p->layer]->name, p->tensor);
}

int larch_ckpt_param_dims(const larch_param *p, hsize_t *dims)
{
    for (int k = 0; k < p->ndim; k++) dims[k] = (hsize_t)p->shape[k];
    return p->ndim;
}

/* ---- row-major element ranges as hyperslab unions ---- */

typedef struct { hid_t space; int ndim; const hsize_t *dims; int n_blocks; } range_sel;

static int add_block(range_sel *s, const hsize_t *start, const hsize_t *count)
{
    herr_t rc = H5Sselect_hyperslab(s->space, s->n_blocks ? H5S_SELECT_OR : H5S_SELECT_SET, start, NULL, count, NULL);
    s->n_blocks++;
    return rc < 0 ? -1 : 0;
}

/* Elements [a, b) of the sub-array at depth k whose leading coordinates
 * start[0..k) are fixed. */
static int add_range(range_sel *s, int k, hsize_t *start, hsize_t a, hsize_t b)
{
    if (k >= s->ndim || k >= CKPT_MAX_DIMS) return -1;
    hsize_t inner = 1, count[CKPT_MAX_DIMS];
    for (int j = k + 1; j < s->ndim; j++) inner *= s->dims[j];
    for (int j = 0; j < k; j++) count[j] = 1;
    if (a / inner == (b - 1) / inner && (a % inner != 0 || b % inner != 0)) {
        hsize_t row = a / inner;                  /* inside one row, not all of it */
        start[k] = row;
        return add_range(s, k + 1, start, a - row * inner, b - row * inner);
    }
    hsize_t full0 = (a + inner - 1) / inner, full1 = b / inner;
    if (a % inner != 0) {                         /* partial first row */
        start[k] = a / inner;
        if (add_range(s, k + 1, start, a % inner, inner)) return -1;
    }
    if (full1 > full0) {                          /* whole rows */
        start[k] = full0;
        count[k] = full1 - full0;
        for (int j = k + 1; j < s->ndim && j < CKPT_MAX_DIMS; j++) { start[j] = 0; count[j] = s->dims[j]; }
        if (add_block(s, start, count)) return -1;
    }
    if (b % inner != 0) {                         /* partial last row */
        start[k] = b / inner;
        if (add_range(s, k + 1, start, 0, b % inner)) return -1;
    }
    return 0;
}

int larch_ckpt_select_range(hid_t space, int ndim, const hsize_t *dims, hsize_t a, hsize_t b)
{
    if (a >= b) return H5Sselect_none(space) < 0 ? -1 : 0;
    range_sel s = {space, ndim, dims, 0};
    hsize_t start[CKPT_MAX_DIMS] = {0};
    return add_range(&s, 0, start, a, b);
}

/* ---- attributes ---- */

static int put_attr(hid_t obj, const char *name, hid_t type, const void *v)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, type, v) < 0 ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return rc;
}

int larch_ckpt_attr_put_long(hid_t obj, const char *name, long v)
{
    int64_t x = v;
    return put_attr(obj, name, H5T_NATIVE_INT64, &x);
}

int larch_ckpt_attr_put_double(hid_t obj, const char *name, double v)
{
    return put_attr(obj, name, H5T_NATIVE_DOUBLE, &v);
}

int larch_ckpt_attr_put_str(hid_t obj, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = put_attr(obj, name, t, v);
    H5Tclose(t);
    return rc;
}

static larch_status open_attr(hid_t obj, const char *file, const char *name, hid_t *a)
{
    if (H5Aexists(obj, name) <= 0)
        return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: attribute '%s' is missing", file, name);
    *a = H5Aopen(obj, name, H5P_DEFAULT);
    if (*a < 0) {
        char why[256];
        return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: cannot read attribute '%s': %s", file, name,
                          larch_ckpt_h5_why(why, sizeof why));
    }
    return LARCH_OK;
}

static larch_status get_number(hid_t obj, const char *file, const char *name, hid_t mem, void *v)
{
    hid_t a = -1;
    larch_status s = open_attr(obj, file, name, &a);
    if (s) return s;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int ok = H5Tget_class(t) == H5T_INTEGER || H5Tget_class(t) == H5T_FLOAT;
    ok = ok && H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, mem, v) >= 0;
    H5Tclose(t);
    H5Sclose(sp);
    H5Aclose(a);
    if (!ok) return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: attribute '%s' is not a number", file, name);
    return LARCH_OK;
}

larch_status larch_ckpt_attr_get_long(hid_t obj, const char *file, const char *name, long *v)
{
    int64_t x = 0;
    larch_status s = get_number(obj, file, name, H5T_NATIVE_INT64, &x);
    *v = (long)x;
    return s;
}

larch_status larch_ckpt_attr_get_double(hid_t obj, const char *file, const char *name, double *v)
{
    return get_number(obj, file, name, H5T_NATIVE_DOUBLE, v);
}

larch_status larch_ckpt_attr_get_str(hid_t obj, const char *file, const char *name, char **v)
{
    *v = NULL;
    hid_t a = -1;
    larch_status s = open_attr(obj, file, name, &a);
    if (s) return s;
    hid_t t = H5Aget_type(a);
    int ok = H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t);
    size_t n = ok ? H5Tget_size(t) : 0;
    char *buf = ok ? calloc(n + 1, 1) : NULL;
    if (buf) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, n);
        H5Tset_cset(mt, H5Tget_cset(t));
        ok = H5Aread(a, mt, buf) >= 0;
        H5Tclose(mt);
    }
    H5Tclose(t);
    H5Aclose(a);
    if (!ok || !buf) {
        free(buf);
        return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: attribute '%s' is not a fixed-length string", file, name);
    }
    *v = buf;
    return LARCH_OK;
}

/* ---- metadata: checksum, checks, reading ---- */

typedef struct { uint64_t h; } fnv;

static void fnv_bytes(fnv *f, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) f->h = (f->h ^ b[i]) * 1099511628211ULL;
}

/* "name[<length>]=value\n": the lengths keep the text unambiguous */
static void fnv_field(fnv *f, const char *name, const char *value)
{
    char head[96];
    size_t n = strlen(value);
    int k = snprintf(head, sizeof head, "%s[%zu]=", name, n);
    fnv_bytes(f, head, (size_t)k);
    fnv_bytes(f, value, n);
    fnv_bytes(f, "\n", 1);
}

static void fnv_long(fnv *f, const char *name, long v)
{
    char num[32];
    snprintf(num, sizeof num, "%ld", v);
    fnv_field(f, name, num);
}

void larch_ckpt_meta_checksum(const larch_ckpt_meta *m, char *out, size_t len)
{
    fnv f = {14695981039346656037ULL};
    char num[40];
    fnv_long(&f, "format_version", m->format_version);
    fnv_field(&f, "larch_version", m->larch_version);
    fnv_long(&f, "step", m->step);
    fnv_long(&f, "epoch", m->epoch);
    fnv_long(&f, "sampler_epoch", m->sampler_epoch);
    fnv_long(&f, "sampler_step", m->sampler_step);
    fnv_long(&f, "samples_seen", m->samples_seen);
    fnv_long(&f, "rng_seed", (long)m->rng_seed);
    fnv_long(&f, "world_size", m->world_size);
    fnv_long(&f, "global_batch", m->global_batch);
    fnv_long(&f, "sched_step", m->sched_step);
    fnv_long(&f, "sched_total_steps", m->sched_total_steps);
    fnv_long(&f, "steps_per_epoch", m->steps_per_epoch);
    fnv_field(&f, "run_id", m->run_id);
    fnv_field(&f, "lineage", m->lineage ? m->lineage : "");
    fnv_field(&f, "config", m->config ? m->config : "");
    if (m->optimizer[0]) {
        fnv_field(&f, "optim.optimizer", m->optimizer);
        fnv_long(&f, "optim.t", m->optim_t);
        snprintf(num, sizeof num, "%.17g", m->optim_mu_product);
        fnv_field(&f, "optim.mu_product", num);
        fnv_field(&f, "optim.state_layout", m->state_layout);
    }
    snprintf(out, len, "fnv1a64:%016llx", (unsigned long long)f.h);
}

#define MAX_STEP (1L << 40)      /* train.max_steps' bound */

static larch_status range(const char *path, const char *name, long v, long lo, long hi, larch_status st)
{
    if (v >= lo && v <= hi) return LARCH_OK;
    return larch_fail(st, "checkpoint %s: attribute '%s' is %ld, out of its range [%ld, %ld]", path, name, v, lo, hi);
}

larch_status larch_ckpt_check_meta(const char *path, const larch_ckpt_meta *m, larch_status st)
{
    larch_status s;
    if ((s = range(path, "step", m->step, 0, MAX_STEP, st)) || (s = range(path, "epoch", m->epoch, 0, m->step, st)) ||
        (s = range(path, "sampler_epoch", m->sampler_epoch, 0, m->step, st)) ||
        (s = range(path, "sampler_step", m->sampler_step, 0, m->step, st)) ||
        (s = range(path, "world_size", m->world_size, 1, 1L << 24, st)) ||
        (s = range(path, "global_batch", m->global_batch, 1, 1L << 24, st)) ||
        (s = range(path, "samples_seen", m->samples_seen, 0, MAX_STEP << 20, st)) ||
        (s = range(path, "sched_total_steps", m->sched_total_steps, 0, MAX_STEP, st)))
        return s;
    if (m->samples_seen % m->global_batch != 0 || m->samples_seen / m->global_batch != m->step)   /* no overflow */
        return larch_fail(st, "checkpoint %s: attribute 'samples_seen' is %ld, not step %ld x global_batch %ld",
                          path, m->samples_seen, m->step, m->global_batch);
    if (m->sched_step != m->step || m->sched_step > m->sched_total_steps)
        return larch_fail(st, "checkpoint %s: attribute 'sched_step' is %ld, but step is %ld and sched_total_steps %ld", path,
                          m->sched_step, m->step, m->sched_total_steps);
    if (m->epoch != m->sampler_epoch)
        return larch_fail(st, "checkpoint %s: attribute 'epoch' is %ld, but sampler_epoch is %ld (both count the epochs "
                          "completed)", path, m->epoch, m->sampler_epoch);
    if (m->format_version >= 2) {
        if ((s = range(path, "steps_per_epoch", m->steps_per_epoch, 1, MAX_STEP, st))) return s;
        long full = m->step - m->sampler_step;             /* >= 0: sampler_step <= step */
        if (m->sampler_step >= m->steps_per_epoch || full % m->steps_per_epoch != 0 || full / m->steps_per_epoch != m->sampler_epoch)
            return larch_fail(st, "checkpoint %s: the sampler position (attributes 'sampler_epoch' %ld, 'sampler_step' %ld) "
                              "is not step %ld with steps_per_epoch %ld", path, m->sampler_epoch, m->sampler_step, m->step,
                              m->steps_per_epoch);
    } else if (m->sampler_epoch > 0 && ((m->step - m->sampler_step) % m->sampler_epoch != 0 ||
                                        (m->step - m->sampler_step) / m->sampler_epoch <= m->sampler_step)) {
        return larch_fail(st, "checkpoint %s: the sampler position (attributes 'sampler_epoch' %ld, 'sampler_step' %ld) "
                          "is not step %ld for any number of steps per epoch", path, m->sampler_epoch, m->sampler_step, m->step);
    }
    if (m->optimizer[0]) {
        if (m->optim_t != m->step)
            return larch_fail(st, "checkpoint %s: /optim attribute 't' is %ld, but step is %ld (the optimizer takes one step "
                              "per training step)", path, m->optim_t, m->step);
        if (!(m->optim_mu_product >= 0.0 && m->optim_mu_product <= 1.0))
            return larch_fail(st, "checkpoint %s: /optim attribute 'mu_product' is %g, out of its range [0, 1]", path,
                              m->optim_mu_product);
    }
    return LARCH_OK;
}

/* A string attribute into a fixed buffer; too long is a format error. */
static larch_status get_fixed_str(hid_t obj, const char *path, const char *name, char *out, size_t len)
{
    char *str = NULL;
    larch_status s = larch_ckpt_attr_get_str(obj, path, name, &str);
    if (s) return s;
    if (strlen(str) >= len) s = larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: attribute '%s' is longer than %zu bytes", path,
                                           name, len - 1);
    else snprintf(out, len, "%s", str);
    free(str);
    return s;
}

larch_status larch_ckpt_read_meta_h5(hid_t file, const char *path, larch_ckpt_meta *meta)
{
    memset(meta, 0, sizeof *meta);
    long v;
    larch_status s = larch_ckpt_attr_get_long(file, path, "format_version", &v);
    if (s) return s;
    if (v > LARCH_CKPT_FORMAT || v < 1)
        return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: format_version %ld is not one this larch reads (1 to %d%s)", path,
                          v, LARCH_CKPT_FORMAT, v > LARCH_CKPT_FORMAT ? "; it was written by a newer larch: upgrade" : "");
    meta->format_version = (int)v;
    if ((s = get_fixed_str(file, path, "larch_version", meta->larch_version, sizeof meta->larch_version))) return s;
    struct { const char *name; long *dst; } longs[] = {
        {"step", &meta->step}, {"epoch", &meta->epoch}, {"sampler_epoch", &meta->sampler_epoch},
        {"sampler_step", &meta->sampler_step}, {"samples_seen", &meta->samples_seen},
        {"global_batch", &meta->global_batch}, {"sched_step", &meta->sched_step},
        {"sched_total_steps", &meta->sched_total_steps}};
    for (size_t i = 0; i < sizeof longs / sizeof longs[0]; i++)
        if ((s = larch_ckpt_attr_get_long(file, path, longs[i].name, longs[i].dst))) return s;
    if ((s = larch_ckpt_attr_get_long(file, path, "world_size", &v))) return s;
    meta->world_size = v < -(1L << 30) ? -(1 << 30) : v > (1L << 30) ? (1 << 30) : (int)v;   /* range-checked below */
    if ((s = larch_ckpt_attr_get_long(file, path, "rng_seed", &v))) return s;
    meta->rng_seed = (uint64_t)v;
    if ((s = larch_ckpt_attr_get_str(file, path, "config", &meta->config))) return s;
    char stored[64] = "";
    if (meta->format_version >= 2) {
        if ((s = larch_ckpt_attr_get_long(file, path, "steps_per_epoch", &meta->steps_per_epoch))) return s;
        if ((s = get_fixed_str(file, path, "run_id", meta->run_id, sizeof meta->run_id))) return s;
        if ((s = larch_ckpt_attr_get_str(file, path, "lineage", &meta->lineage))) return s;
        if ((s = get_fixed_str(file, path, "meta_checksum", stored, sizeof stored))) return s;
    }
    if (H5Lexists(file, "/optim", H5P_DEFAULT) > 0) {
        hid_t g = H5Gopen2(file, "/optim", H5P_DEFAULT);
        if (g < 0) return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: cannot open /optim", path);
        s = get_fixed_str(g, path, "optimizer", meta->optimizer, sizeof meta->optimizer);
        if (!s && !meta->optimizer[0]) s = larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: /optim attribute 'optimizer' is empty", path);
        if (!s) s = larch_ckpt_attr_get_long(g, path, "t", &meta->optim_t);
        if (!s && meta->format_version < 2)   /* since 2 per tensor (checkpoint.c) */
            s = larch_ckpt_attr_get_double(g, path, "mu_product", &meta->optim_mu_product);
        if (!s && meta->format_version >= 2) s = get_fixed_str(g, path, "state_layout", meta->state_layout, sizeof meta->state_layout);
        H5Gclose(g);
        if (s) return s;
    }
    if ((s = larch_ckpt_check_meta(path, meta, LARCH_ERR_FORMAT))) return s;
    if (meta->format_version >= 2) {
        char sum[64];
        larch_ckpt_meta_checksum(meta, sum, sizeof sum);
        if (strcmp(sum, stored) != 0)
            return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: the metadata checksum does not match the attributes (stored "
                              "%s, computed %s): an attribute or the config text was changed or corrupted", path, stored, sum);
    }
    return LARCH_OK;
}

/* Does the file start with HDF5's signature (at 0 or a power-of-two user
 * block offset)? */
static int has_hdf5_signature(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int found = 0;
    unsigned char buf[8];
    for (long off = 0; !found && off <= (1L << 30); off = off ? 2 * off : 512)
        if (fseek(f, off, SEEK_SET) != 0 || fread(buf, 1, 8, f) != 8) break;
        else found = memcmp(buf, sig, 8) == 0;
    fclose(f);
    return found;
}

larch_status larch_ckpt_open_meta(const char *path, hid_t *file, larch_ckpt_meta *meta)
{
    larch_ckpt_h5_quiet();
    memset(meta, 0, sizeof *meta);
    *file = -1;
    struct stat st;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0)
        return larch_fail(LARCH_ERR_IO, "cannot read checkpoint %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        char **paths = NULL;
        int n = larch_ckpt_list(path, &paths);
        larch_status s = larch_fail(LARCH_ERR_IO, "%s is a directory, not a checkpoint file%s%s%s", path,
                                    n ? " (its newest checkpoint: " : " (it holds no ckpt-<step>.h5 file)", n ? paths[0] : "",
                                    n ? ")" : "");
        for (int i = 0; i < n; i++) free(paths[i]);
        free(paths);
        return s;
    }
    if (!has_hdf5_signature(path))
        return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s is not an HDF5 file (no HDF5 signature; empty, truncated or "
                          "another kind of file)", path);
    char why[256];
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s is not a readable HDF5 file (truncated or corrupted?): %s",
                          path, larch_ckpt_h5_why(why, sizeof why));
    larch_status s = larch_ckpt_read_meta_h5(f, path, meta);
    if (!s && H5Lexists(f, "/params", H5P_DEFAULT) <= 0)
        s = larch_fail(LARCH_ERR_FORMAT, "checkpoint %s has no /params group", path);
    if (s) {
        H5Fclose(f);
        larch_ckpt_meta_free(meta);
        return s;
    }
    *file = f;
    return LARCH_OK;
}

void larch_ckpt_meta_free(larch_ckpt_meta *meta)
{
    free(meta->config);
    meta->config = NULL;
    free(meta->lineage);
    meta->lineage = NULL;
}

/* ---- tensors ---- */

void larch_ckpt_fmt_shape(char *out, size_t len, int ndim, const hsize_t *dims)
{
    size_t o = (size_t)snprintf(out, len, "(");
    for (int k = 0; k < ndim && o < len; k++)
        o += (size_t)snprintf(out + o, len - o, "%s%llu", k ? ", " : "", (unsigned long long)dims[k]);
    if (o < len) snprintf(out + o, len - o, ")");
}

larch_status larch_ckpt_tensor_shape(hid_t file, const char *path, const char *dpath, int *ndim, hsize_t *dims)
{
    *ndim = 0;
    if (H5Lexists(file, dpath, H5P_DEFAULT) <= 0) return LARCH_OK;
    hid_t d = H5Dopen2(file, dpath, H5P_DEFAULT);
    if (d < 0) {
        char why[256];
        return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: cannot open tensor %s: %s", path, dpath, larch_ckpt_h5_why(why, sizeof why));
    }
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(sp);
    larch_status s = LARCH_OK;
    /* quantized tensors (checkpoint_quant.c) read as float through HDF5's conversion */
    int quant = !strncmp(dpath, "/quant/", 7) && ((H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 1) ||
                                                   (H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 2));
    if (!quant && (H5Tget_class(t) != H5T_FLOAT || H5Tget_size(t) != 4))
        s = larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: tensor %s is not float32", path, dpath);
    else if (nd < 1 || nd > CKPT_MAX_DIMS)
        s = larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: tensor %s has %d dimensions", path, dpath, nd);
    else {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        *ndim = nd;
    }
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);
    return s;
}

larch_status larch_ckpt_read_tensor(hid_t file, const char *path, const char *dpath, int ndim, const hsize_t *dims,
                              hsize_t a, hsize_t b, float *dst)
{
    int fnd;
    hsize_t fdims[CKPT_MAX_DIMS];
    larch_status s = larch_ckpt_tensor_shape(file, path, dpath, &fnd, fdims);
    if (s) return s;
    if (fnd == 0) return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: tensor %s is missing", path, dpath);
    int same = fnd == ndim;
    for (int k = 0; same && k < ndim; k++) same = fdims[k] == dims[k];
    if (!same) {
        char want[128], have[128];
        larch_ckpt_fmt_shape(want, sizeof want, ndim, dims);
        larch_ckpt_fmt_shape(have, sizeof have, fnd, fdims);
        return larch_fail(LARCH_ERR_SHAPE, "checkpoint %s: tensor %s has shape %s, the model needs %s", path, dpath, have, want);
    }
    hid_t d = H5Dopen2(file, dpath, H5P_DEFAULT);
    hsize_t total = 1;
    for (int k = 0; k < ndim; k++) total *= dims[k];
    /* a whole tensor: its raw chunks, checked by larch (4-5x faster than HDF5's own loop) */
    if (d >= 0 && a == 0 && b == total && larch_ckpt_read_chunked(d, ndim, dims, dst) == 0) {
        H5Dclose(d);
        return LARCH_OK;
    }
    hid_t fs = H5Dget_space(d);
    /* same-shape selections (HDF5's fast path); element a lands in dst[0] */
    hid_t ms = H5Screate_simple(ndim, dims, NULL);
    float *base = (float *)((uintptr_t)dst - (uintptr_t)a * sizeof(float));
    int rc = larch_ckpt_select_range(fs, ndim, dims, a, b);
    if (rc == 0) rc = larch_ckpt_select_range(ms, ndim, dims, a, b);
    if (rc == 0) rc = H5Dread(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, base) < 0 ? -1 : 0;
    char why[256] = "";
    if (rc) larch_ckpt_h5_why(why, sizeof why);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    if (rc)
        return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: tensor %s cannot be read (corrupted or truncated: %s)",
                          path, dpath, why);
    return LARCH_OK;
}
