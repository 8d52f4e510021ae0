/* dataset_h5.c - the HDF5 dataset format (docs/datasets.md): read a split
 * into a larch_dataset, write one, describe a file.
 *
 * A split is an HDF5 group holding
 *   images    uint8 (N, H, W, C) or (N, H, W)     raw pixels, or
 *   features  float (N, D), (N, H, W) or (N, H, W, C)
 *   labels    integer (N)                         class of each sample
 *   labels_<name>  integer (N)                    further label sets (multi-task)
 *   targets   float (N) or (N, K)                 regression targets
 * and the attributes `classes` (strings: the class names), `mean` and `std`
 * (float, 1 or C values; for images in units of x/255, as torchvision
 * states them). Files written by `larch data convert` hold the groups
 * /train and /test. Every error names the file, the group and the dataset.
 */
#include "io/ckpt_internal.h"
#include "larch/data.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#define WHERE_MAX 4400

typedef struct {
    const char *file;
    char group[512];
} h5_place;

static larch_status h5_err(const h5_place *p, const char *what, const char *fmt, const char *detail)
{
    char why[256];
    larch_ckpt_h5_why(why, sizeof why);
    return larch_fail(LARCH_ERR_FORMAT, "%s:%s%s%s: %s%s%s", p->file, p->group, what[0] ? "/" : "", what,
                      fmt, detail && detail[0] ? ": " : "", detail && detail[0] ? detail : why);
}

/* "file.h5:/group" -> file and group; "file.h5" -> file and "/<split>". */
static void split_spec(const char *spec, const char *split, char *file, size_t flen, char *group, size_t glen)
{
    const char *colon = strstr(spec, ".h5:");
    if (!colon) colon = strstr(spec, ".hdf5:");
    if (colon) {
        colon = strchr(colon, ':');
        snprintf(file, flen, "%.*s", (int)(colon - spec), spec);
        snprintf(group, glen, "%s", colon[1] ? colon + 1 : "/");
    } else {
        snprintf(file, flen, "%s", spec);
        snprintf(group, glen, "/%s", split ? split : "");
    }
}

/* The dims of dataset `name` of group g; *rank = 0 when it does not exist. */
static larch_status h5_dims(hid_t g, const char *name, int *rank, hsize_t dims[4], H5T_class_t *cls, size_t *size,
                            int *is_signed, const h5_place *p)
{
    *rank = 0;
    htri_t e = H5Lexists(g, name, H5P_DEFAULT);
    if (e <= 0) return LARCH_OK;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return h5_err(p, name, "cannot open the dataset", NULL);
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
    int r = H5Sget_simple_extent_ndims(sp);
    larch_status s = LARCH_OK;
    if (r < 1 || r > 4) {
        char buf[64];
        snprintf(buf, sizeof buf, "%d", r);
        s = h5_err(p, name, "has rank ", buf);
    } else {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        *rank = r;
        *cls = H5Tget_class(t);
        *size = H5Tget_size(t);
        *is_signed = *cls == H5T_INTEGER && H5Tget_sign(t) == H5T_SGN_2;
    }
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);
    return s;
}

static larch_status h5_read_all(hid_t g, const char *name, hid_t mem_type, void *buf, const h5_place *p)
{
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return h5_err(p, name, "cannot open the dataset", NULL);
    herr_t rc = H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(d);
    if (rc < 0) return h5_err(p, name, "cannot read the data (is the file truncated?)", NULL);
    return LARCH_OK;
}

/* Reads an integer label set of n entries, each in [0, classes) when
 * classes > 0; *max_out gets the largest label. */
static larch_status read_labels(hid_t g, const char *name, int n, int classes, int32_t **out, int *max_out,
                                const h5_place *p)
{
    int rank;
    hsize_t dims[4];
    H5T_class_t cls;
    size_t size;
    int sgn;
    larch_status s = h5_dims(g, name, &rank, dims, &cls, &size, &sgn, p);
    if (s) return s;
    if (!rank) return h5_err(p, name, "is missing", "every split needs integer labels (N)");
    char buf[128];
    if (cls != H5T_INTEGER) return h5_err(p, name, "has a non-integer type", "labels must be integers");
    if (rank != 1 || dims[0] != (hsize_t)n) {
        snprintf(buf, sizeof buf, "%d dimensions of which the first is %llu, for %d samples", rank,
                 (unsigned long long)dims[0], n);
        return h5_err(p, name, "has the wrong shape", buf);
    }
    int32_t *l = malloc((size_t)(n ? n : 1) * sizeof *l);
    if (!l) return larch_fail(LARCH_ERR_NOMEM, "out of memory for %s", name);
    if ((s = h5_read_all(g, name, H5T_NATIVE_INT32, l, p))) { free(l); return s; }
    int mx = -1;
    for (int i = 0; i < n; i++) {
        if (l[i] < 0 || (classes > 0 && l[i] >= classes)) {
            snprintf(buf, sizeof buf, "label %d of sample %d is outside 0..%d", l[i], i, classes > 0 ? classes - 1 : INT32_MAX);
            free(l);
            return h5_err(p, name, "has a label out of range", buf);
        }
        if (l[i] > mx) mx = l[i];
    }
    *out = l;
    *max_out = mx;
    return LARCH_OK;
}

/* The length of a float attribute (0 when absent); reads up to cap values. */
static larch_status read_float_attr(hid_t g, const char *name, float *vals, int cap, int *n, const h5_place *p)
{
    *n = 0;
    if (H5Aexists(g, name) <= 0) return LARCH_OK;
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    hid_t sp = H5Aget_space(a), t = H5Aget_type(a);
    hssize_t cnt = H5Sget_simple_extent_npoints(sp);
    larch_status s = LARCH_OK;
    char attr[80];
    snprintf(attr, sizeof attr, "@%s", name);
    if (H5Tget_class(t) != H5T_FLOAT && H5Tget_class(t) != H5T_INTEGER) s = h5_err(p, attr, "is not numeric", NULL);
    else if (cnt < 1 || cnt > cap) {
        char buf[64];
        snprintf(buf, sizeof buf, "%lld values (1 to %d)", (long long)cnt, cap);
        s = h5_err(p, attr, "has the wrong length", buf);
    } else if (H5Aread(a, H5T_NATIVE_FLOAT, vals) < 0) s = h5_err(p, attr, "cannot be read", NULL);
    else *n = (int)cnt;
    H5Tclose(t);
    H5Sclose(sp);
    H5Aclose(a);
    return s;
}

/* The number of strings of attribute `classes` (0 when absent). */
static int class_count(hid_t g)
{
    if (H5Aexists(g, "classes") <= 0) return 0;
    hid_t a = H5Aopen(g, "classes", H5P_DEFAULT);
    hid_t sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    H5Aclose(a);
    return n > 0 && n < INT32_MAX ? (int)n : 0;
}

typedef struct { char names[LARCH_MAX_TARGETS - 1][LARCH_NAME_MAX]; int n; int too_many; } label_sets;

static herr_t collect_label_sets(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    label_sets *ls = data;
    if (strncmp(name, "labels_", 7) != 0 || !name[7]) return 0;
    if (ls->n == LARCH_MAX_TARGETS - 1 || strlen(name) >= LARCH_NAME_MAX) { ls->too_many = 1; return 0; }
    snprintf(ls->names[ls->n++], LARCH_NAME_MAX, "%s", name);
    return 0;
}

/* Out of core: where the samples of dataset `xname` start in the file, and
 * checks that they can be read there with pread (contiguous, allocated,
 * the whole extent inside the file). */
static larch_status ooc_attach(hid_t g, const char *xname, const char *file, size_t sample_bytes, larch_dataset *out,
                               const h5_place *p)
{
    hid_t d = H5Dopen2(g, xname, H5P_DEFAULT);
    if (d < 0) return h5_err(p, xname, "cannot open the dataset", NULL);
    hid_t dcpl = H5Dget_create_plist(d), t = H5Dget_type(d);
    H5D_layout_t layout = H5Pget_layout(dcpl);
    int u8 = H5Tequal(t, H5T_STD_U8LE) > 0, f32 = H5Tequal(t, H5T_IEEE_F32LE) > 0;
    haddr_t off = H5Dget_offset(d);
    H5Tclose(t);
    H5Pclose(dcpl);
    H5Dclose(d);
    char hint[200];
    snprintf(hint, sizeof hint, "reading out of core needs it contiguous and little-endian uint8 or float32 "
             "(rewrite with: h5repack -l %s:CONTI IN OUT, or set data.in_memory: true)", xname);
    if (layout != H5D_CONTIGUOUS || (!u8 && !f32) || off == HADDR_UNDEF)
        return h5_err(p, xname, layout != H5D_CONTIGUOUS ? "is chunked or compressed" : "has another storage", hint);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return larch_fail(LARCH_ERR_IO, "dataset file %s: %s", file, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < (uint64_t)off + (uint64_t)out->n * sample_bytes) {
        close(fd);
        return larch_fail(LARCH_ERR_FORMAT, "%s:%s/%s: the file ends before the samples do (truncated?)", file, p->group, xname);
    }
    out->ooc = 1;
    out->ooc_fd = fd;
    out->ooc_u8 = u8;
    out->ooc_offset = (int64_t)off;
    return LARCH_OK;
}

larch_status larch_dataset_h5_read(const char *spec, const char *split, larch_dataset *out)
{
    return larch_dataset_h5_open(spec, split, 1, out);
}

larch_status larch_dataset_h5_open(const char *spec, const char *split, int in_memory, larch_dataset *out)
{
    memset(out, 0, sizeof *out);
    char file[3700], group[512];
    split_spec(spec, split, file, sizeof file, group, sizeof group);
    h5_place p = {file, ""};
    snprintf(p.group, sizeof p.group, "%s", group);
    larch_ckpt_h5_quiet();
    FILE *probe = fopen(file, "rb");
    if (!probe) return larch_fail(LARCH_ERR_IO, "dataset file %s: cannot open it", file);
    fclose(probe);
    if (H5Fis_hdf5(file) <= 0)
        return larch_fail(LARCH_ERR_FORMAT, "dataset file %s is not an HDF5 file (or it is truncated)", file);
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return h5_err(&p, "", "cannot open the file", NULL);
    larch_status s = LARCH_OK;
    hid_t g = -1;
    if (strcmp(group, "/") && H5Lexists(f, group, H5P_DEFAULT) <= 0) {
        s = larch_fail(LARCH_ERR_FORMAT, "dataset file %s has no group %s (the split is missing)", file, group);
        goto done;
    }
    if ((g = H5Gopen2(f, group, H5P_DEFAULT)) < 0) { s = h5_err(&p, "", "is not a group", NULL); goto done; }

    int rank;
    hsize_t dims[4];
    H5T_class_t cls;
    size_t size;
    int sgn;
    int images = 1;
    if ((s = h5_dims(g, "images", &rank, dims, &cls, &size, &sgn, &p))) goto done;
    if (!rank) {
        images = 0;
        if ((s = h5_dims(g, "features", &rank, dims, &cls, &size, &sgn, &p))) goto done;
        if (!rank) { s = h5_err(&p, "", "holds neither images nor features", NULL); goto done; }
    }
    const char *xname = images ? "images" : "features";
    if (images && (cls != H5T_INTEGER || size != 1 || sgn)) {
        s = h5_err(&p, xname, "has the wrong type", "images must be uint8 (use features for float data)");
        goto done;
    }
    if (!images && cls != H5T_FLOAT) { s = h5_err(&p, xname, "has the wrong type", "features must be float"); goto done; }
    if (images ? rank < 3 : rank < 2) {
        s = h5_err(&p, xname, "has the wrong rank", images ? "images are (N, H, W) or (N, H, W, C)"
                                                          : "features are (N, D), (N, H, W) or (N, H, W, C)");
        goto done;
    }
    larch_shape sh = rank == 2 ? (larch_shape){1, 1, (int)dims[1]}
                   : rank == 3 ? (larch_shape){(int)dims[1], (int)dims[2], 1}
                               : (larch_shape){(int)dims[1], (int)dims[2], (int)dims[3]};
    for (int k = 1; k < rank; k++)
        if (dims[k] < 1 || dims[k] > (1u << 24)) { s = h5_err(&p, xname, "has a dimension out of range", NULL); goto done; }
    if (dims[0] > INT32_MAX || (double)dims[0] * (double)larch_shape_size(sh) > 1e12) {
        s = h5_err(&p, xname, "is too large", NULL);
        goto done;
    }
    int n = (int)dims[0];
    size_t dim = larch_shape_size(sh);
    out->n = n;
    out->shape = sh;
    snprintf(out->name, sizeof out->name, "%.31s", split ? split : (strrchr(group, '/') ? strrchr(group, '/') + 1 : group));
    if (!out->name[0]) snprintf(out->name, sizeof out->name, "hdf5");
    snprintf(out->source, sizeof out->source, "%.3600s:%.500s", file, group);
    if (!in_memory) {
        if ((s = ooc_attach(g, xname, file, dim * (images ? 1 : sizeof(float)), out, &p))) goto done;
    } else if (images) {
        out->u8 = malloc(n ? (size_t)n * dim : 1);
        if (!out->u8) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory for %d images of %s", n, file); goto done; }
        if ((s = h5_read_all(g, xname, H5T_NATIVE_UINT8, out->u8, &p))) goto done;
    } else {
        out->f32 = malloc((n ? (size_t)n * dim : 1) * sizeof(float));
        if (!out->f32) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory for %d samples of %s", n, file); goto done; }
        if ((s = h5_read_all(g, xname, H5T_NATIVE_FLOAT, out->f32, &p))) goto done;
    }
    int classes = class_count(g), mx;
    if ((s = read_labels(g, "labels", n, classes, &out->labels, &mx, &p))) goto done;
    out->n_classes = classes > 0 ? classes : mx + 1;

    label_sets ls = {0};
    hsize_t idx = 0;
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_label_sets, &ls);
    if (ls.too_many) {
        s = h5_err(&p, "", "has too many or too long labels_<name> sets", "at most 3 further label sets, names under 64 characters");
        goto done;
    }
    for (int t = 0; t < ls.n; t++) {
        if ((s = read_labels(g, ls.names[t], n, 0, &out->derived[t], &mx, &p))) goto done;
        out->n_derived = t + 1;
        out->derived_classes[t] = mx + 1;
        snprintf(out->derived_name[t], sizeof out->derived_name[t], "%s", ls.names[t] + 7);
    }

    if ((s = h5_dims(g, "targets", &rank, dims, &cls, &size, &sgn, &p))) goto done;
    if (rank) {
        if (cls != H5T_FLOAT || rank > 2 || dims[0] != (hsize_t)n || (rank == 2 && (dims[1] < 1 || dims[1] > 65536))) {
            s = h5_err(&p, "targets", "has the wrong type or shape", "targets are float (N) or (N, K)");
            goto done;
        }
        out->n_targets = rank == 2 ? (int)dims[1] : 1;
        out->targets = malloc((n ? (size_t)n : 1) * out->n_targets * sizeof(float));
        if (!out->targets) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory for targets of %s", file); goto done; }
        if ((s = h5_read_all(g, "targets", H5T_NATIVE_FLOAT, out->targets, &p))) goto done;
    }

    float mean[LARCH_NORM_MAX], std[LARCH_NORM_MAX];
    int nm, ns;
    if ((s = read_float_attr(g, "mean", mean, LARCH_NORM_MAX, &nm, &p))) goto done;
    if ((s = read_float_attr(g, "std", std, LARCH_NORM_MAX, &ns, &p))) goto done;
    if (nm != ns) {
        s = larch_fail(LARCH_ERR_FORMAT, "%s:%s: attributes mean and std have %d and %d values", file, group, nm, ns);
        goto done;
    }
    if (!nm) { mean[0] = 0.0f; std[0] = 1.0f; nm = 1; }
    if ((s = larch_dataset_set_norm(out, mean, std, nm))) s = larch_fail_context(s, "%s:%s", file, group);
done:
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    if (s) larch_dataset_free(out);
    return s;
}

/* ---- writing ---- */

static larch_status write_ds(hid_t g, const char *name, hid_t file_type, hid_t mem_type, int rank, const hsize_t *dims,
                             const void *buf, const h5_place *p)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(g, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = d < 0 ? -1 : H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    if (rc < 0) return h5_err(p, name, "cannot write the dataset", NULL);
    return LARCH_OK;
}

static larch_status write_float_attr(hid_t g, const char *name, const float *v, int n, const h5_place *p)
{
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    hid_t a = H5Acreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_FLOAT, v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc < 0 ? h5_err(p, name, "cannot write the attribute", NULL) : LARCH_OK;
}

larch_status larch_dataset_h5_write(const char *path, const char *group, const larch_dataset *ds,
                                    const char *const *class_names)
{
    larch_ckpt_h5_quiet();
    h5_place p = {path, ""};
    snprintf(p.group, sizeof p.group, "/%s", group);
    FILE *probe = fopen(path, "rb");
    hid_t f;
    if (probe) { fclose(probe); f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT); }
    else f = H5Fcreate(path, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return h5_err(&p, "", "cannot create or open the file for writing", NULL);
    larch_status s = LARCH_OK;
    if (H5Lexists(f, p.group, H5P_DEFAULT) > 0) {
        H5Fclose(f);
        return larch_fail(LARCH_ERR_IO, "%s already holds a group %s (write to a new file)", path, p.group);
    }
    hid_t g = H5Gcreate2(f, p.group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) { H5Fclose(f); return h5_err(&p, "", "cannot create the group", NULL); }
    hsize_t dims[4] = {(hsize_t)ds->n, (hsize_t)ds->shape.h, (hsize_t)ds->shape.w, (hsize_t)ds->shape.c};
    if (ds->u8) s = write_ds(g, "images", H5T_STD_U8LE, H5T_NATIVE_UINT8, 4, dims, ds->u8, &p);
    else if (ds->shape.h == 1 && ds->shape.w == 1) {
        hsize_t d2[2] = {(hsize_t)ds->n, (hsize_t)ds->shape.c};
        s = write_ds(g, "features", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, ds->f32, &p);
    } else s = write_ds(g, "features", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, dims, ds->f32, &p);
    if (!s) s = write_ds(g, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dims, ds->labels, &p);
    for (int t = 0; t < ds->n_derived && !s; t++) {
        char name[LARCH_NAME_MAX + 8];
        snprintf(name, sizeof name, "labels_%s", ds->derived_name[t][0] ? ds->derived_name[t] : "derived");
        s = write_ds(g, name, H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dims, ds->derived[t], &p);
    }
    if (!s && ds->targets) {
        hsize_t d2[2] = {(hsize_t)ds->n, (hsize_t)ds->n_targets};
        s = write_ds(g, "targets", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, d2, ds->targets, &p);
    }
    if (!s && ds->n_norm > 0) s = write_float_attr(g, "mean", ds->mean, ds->n_norm, &p);
    if (!s && ds->n_norm > 0) s = write_float_attr(g, "std", ds->std, ds->n_norm, &p);
    if (!s && class_names) {
        hsize_t n = (hsize_t)ds->n_classes;
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, H5T_VARIABLE);
        H5Tset_cset(st, H5T_CSET_UTF8);
        hid_t sp = H5Screate_simple(1, &n, NULL);
        hid_t a = H5Acreate2(g, "classes", st, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0 || H5Awrite(a, st, class_names) < 0) s = h5_err(&p, "@classes", "cannot write the attribute", NULL);
        if (a >= 0) H5Aclose(a);
        H5Sclose(sp);
        H5Tclose(st);
    }
    H5Gclose(g);
    if (H5Fclose(f) < 0 && !s) s = h5_err(&p, "", "cannot close the file (disk full?)", NULL);
    return s;
}

/* The class names of a split (NULL when it has none): an array of n
 * strings, freed with larch_dataset_h5_free_names. */
larch_status larch_dataset_h5_class_names(const char *spec, const char *split, char ***names, int *n)
{
    *names = NULL;
    *n = 0;
    char file[3700], group[512];
    split_spec(spec, split, file, sizeof file, group, sizeof group);
    h5_place p = {file, ""};
    snprintf(p.group, sizeof p.group, "%s", group);
    larch_ckpt_h5_quiet();
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return h5_err(&p, "", "cannot open the file", NULL);
    larch_status s = LARCH_OK;
    hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
    int cnt = g >= 0 ? class_count(g) : 0;
    if (cnt > 0) {
        hid_t a = H5Aopen(g, "classes", H5P_DEFAULT);
        hid_t t = H5Aget_type(a);
        char **out = calloc((size_t)cnt, sizeof *out);
        if (!out) s = larch_fail(LARCH_ERR_NOMEM, "out of memory");
        else if (H5Tget_class(t) != H5T_STRING) s = h5_err(&p, "@classes", "is not a list of strings", NULL);
        else if (H5Tis_variable_str(t) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(t));
            char **tmp = calloc((size_t)cnt, sizeof *tmp);
            if (!tmp || H5Aread(a, mt, tmp) < 0) s = h5_err(&p, "@classes", "cannot be read", NULL);
            for (int i = 0; i < cnt && !s; i++) out[i] = strdup(tmp[i] ? tmp[i] : "");
            if (tmp && !s) {
                hid_t sp = H5Aget_space(a);
                H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, tmp);
                H5Sclose(sp);
            }
            free(tmp);
            H5Tclose(mt);
        } else {
            size_t len = H5Tget_size(t);
            char *buf = calloc((size_t)cnt, len + 1);
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, len);
            if (!buf || H5Aread(a, mt, buf) < 0) s = h5_err(&p, "@classes", "cannot be read", NULL);
            for (int i = 0; i < cnt && !s; i++) out[i] = strndup(buf + (size_t)i * len, len);
            free(buf);
            H5Tclose(mt);
        }
        H5Tclose(t);
        H5Aclose(a);
        if (s) {
            for (int i = 0; out && i < cnt; i++) free(out[i]);
            free(out);
        } else {
            *names = out;
            *n = cnt;
        }
    }
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    return s;
}

void larch_dataset_h5_free_names(char **names, int n)
{
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

typedef struct { char (*names)[LARCH_NAME_MAX]; int cap, n; } group_list;

static herr_t collect_groups(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    group_list *gl = data;
    H5O_info_t oi;
    if (H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_GROUP) return 0;
    if (gl->n < gl->cap && strlen(name) < LARCH_NAME_MAX) snprintf(gl->names[gl->n++], LARCH_NAME_MAX, "%s", name);
    return 0;
}

larch_status larch_dataset_h5_splits(const char *path, char (*names)[LARCH_NAME_MAX], int cap, int *n)
{
    *n = 0;
    larch_ckpt_h5_quiet();
    FILE *probe = fopen(path, "rb");
    if (!probe) return larch_fail(LARCH_ERR_IO, "dataset file %s: cannot open it", path);
    fclose(probe);
    if (H5Fis_hdf5(path) <= 0) return larch_fail(LARCH_ERR_FORMAT, "dataset file %s is not an HDF5 file (or it is truncated)", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    h5_place p = {path, "/"};
    if (f < 0) return h5_err(&p, "", "cannot open the file", NULL);
    if (H5Lexists(f, "images", H5P_DEFAULT) > 0 || H5Lexists(f, "features", H5P_DEFAULT) > 0) {
        snprintf(names[0], LARCH_NAME_MAX, "/");      /* the root holds the split */
        *n = 1;
    } else {
        group_list gl = {names, cap, 0};
        hsize_t idx = 0;
        H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_groups, &gl);
        *n = gl.n;
    }
    H5Fclose(f);
    return LARCH_OK;
}

larch_status larch_dataset_h5_probe(const char *spec, const char *split, larch_shape *shape, int *n, int *classes)
{
    char file[3700], group[512];
    split_spec(spec, split, file, sizeof file, group, sizeof group);
    h5_place p = {file, ""};
    snprintf(p.group, sizeof p.group, "%s", group);
    larch_ckpt_h5_quiet();
    FILE *probe = fopen(file, "rb");
    if (!probe) return larch_fail(LARCH_ERR_IO, "dataset file %s: cannot open it", file);
    fclose(probe);
    if (H5Fis_hdf5(file) <= 0) return larch_fail(LARCH_ERR_FORMAT, "dataset file %s is not an HDF5 file (or it is truncated)", file);
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return h5_err(&p, "", "cannot open the file", NULL);
    larch_status s = LARCH_OK;
    hid_t g = -1;
    int rank, sgn;
    hsize_t dims[4];
    H5T_class_t cls;
    size_t size;
    if (strcmp(group, "/") && H5Lexists(f, group, H5P_DEFAULT) <= 0)
        s = larch_fail(LARCH_ERR_FORMAT, "dataset file %s has no group %s (the split is missing)", file, group);
    else if ((g = H5Gopen2(f, group, H5P_DEFAULT)) < 0) s = h5_err(&p, "", "is not a group", NULL);
    else if (!(s = h5_dims(g, "images", &rank, dims, &cls, &size, &sgn, &p)) && !rank)
        s = h5_dims(g, "features", &rank, dims, &cls, &size, &sgn, &p);
    if (!s && g >= 0 && !rank) s = h5_err(&p, "", "holds neither images nor features", NULL);
    if (!s && g >= 0) {
        *shape = rank == 2 ? (larch_shape){1, 1, (int)dims[1]}
               : rank == 3 ? (larch_shape){(int)dims[1], (int)dims[2], 1}
                           : (larch_shape){(int)dims[1], (int)dims[2], (int)dims[3]};
        *n = (int)dims[0];
        int k = class_count(g), mx = -1;
        int32_t *labels = NULL;
        if (!k && !(s = read_labels(g, "labels", *n, 0, &labels, &mx, &p))) k = mx + 1;
        free(labels);
        *classes = k;
    }
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    return s;
}

/* ---- streaming writer: datasets larger than memory ---- */

struct larch_h5_writer {
    hid_t f, g, x, y;
    h5_place p;
    char path[3700], tmp[3800];
    int n, written, u8;
    size_t sample;                 /* values per sample */
};

larch_status larch_dataset_h5_begin(larch_h5_writer **out, const char *path, const char *group, int n, larch_shape shape,
                                    int u8)
{
    *out = NULL;
    larch_ckpt_h5_quiet();
    larch_h5_writer *w = calloc(1, sizeof *w);
    if (!w) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    snprintf(w->path, sizeof w->path, "%s", path);
    w->p.file = w->path;
    snprintf(w->p.group, sizeof w->p.group, "/%s", group);
    w->n = n;
    w->u8 = u8;
    w->sample = larch_shape_size(shape);
    w->g = w->x = w->y = -1;
    FILE *probe = fopen(path, "rb");
    if (probe) { fclose(probe); w->f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT); }
    else w->f = H5Fcreate(path, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
    if (w->f < 0) { free(w); return larch_fail(LARCH_ERR_IO, "%s: cannot create or open the file for writing", path); }
    larch_status s = LARCH_OK;
    if (H5Lexists(w->f, w->p.group, H5P_DEFAULT) > 0)
        s = larch_fail(LARCH_ERR_IO, "%s already holds a group %s (write to a new file)", path, w->p.group);
    else if ((w->g = H5Gcreate2(w->f, w->p.group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        s = h5_err(&w->p, "", "cannot create the group", NULL);
    if (!s) {
        hsize_t dims[4] = {(hsize_t)n, (hsize_t)shape.h, (hsize_t)shape.w, (hsize_t)shape.c};
        hid_t sp = H5Screate_simple(4, dims, NULL), sl = H5Screate_simple(1, dims, NULL);
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);      /* contiguous storage placed now: out-of-core reads */
        w->x = H5Dcreate2(w->g, u8 ? "images" : "features", u8 ? H5T_STD_U8LE : H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl,
                          H5P_DEFAULT);
        w->y = H5Dcreate2(w->g, "labels", H5T_STD_I32LE, sl, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Pclose(dcpl);
        H5Sclose(sp);
        H5Sclose(sl);
        if (w->x < 0 || w->y < 0) s = h5_err(&w->p, "", "cannot create the datasets", NULL);
    }
    if (s) {
        if (w->x >= 0) H5Dclose(w->x);
        if (w->y >= 0) H5Dclose(w->y);
        if (w->g >= 0) H5Gclose(w->g);
        H5Fclose(w->f);
        free(w);
        return s;
    }
    *out = w;
    return LARCH_OK;
}

static larch_status write_rows(hid_t d, hid_t mem_type, int rank, hsize_t start, hsize_t count, size_t per,
                               const void *buf, const h5_place *p, const char *name)
{
    hid_t fs = H5Dget_space(d);
    hsize_t off[4] = {start, 0, 0, 0}, cnt[4] = {count, 0, 0, 0};
    hsize_t dims[4];
    H5Sget_simple_extent_dims(fs, dims, NULL);
    for (int k = 1; k < rank; k++) cnt[k] = dims[k];
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL);
    hsize_t m = count * per;
    hid_t ms = H5Screate_simple(1, &m, NULL);
    herr_t rc = H5Dwrite(d, mem_type, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    return rc < 0 ? h5_err(p, name, "cannot write (disk full?)", NULL) : LARCH_OK;
}

larch_status larch_dataset_h5_append(larch_h5_writer *w, const void *samples, const int32_t *labels, int count)
{
    if (count < 0 || w->written + count > w->n)
        return larch_fail(LARCH_ERR_INVALID, "%s:%s: %d more samples after %d of %d", w->path, w->p.group, count, w->written, w->n);
    larch_status s = write_rows(w->x, w->u8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT, 4, (hsize_t)w->written, (hsize_t)count,
                                w->sample, samples, &w->p, w->u8 ? "images" : "features");
    if (!s) s = write_rows(w->y, H5T_NATIVE_INT32, 1, (hsize_t)w->written, (hsize_t)count, 1, labels, &w->p, "labels");
    if (!s) w->written += count;
    return s;
}

larch_status larch_dataset_h5_end(larch_h5_writer *w, const float *mean, const float *std, int n_norm,
                                  const char *const *classes, int n_classes)
{
    if (!w) return LARCH_OK;
    larch_status s = LARCH_OK;
    if (mean && std && n_norm > 0) {
        s = write_float_attr(w->g, "mean", mean, n_norm, &w->p);
        if (!s) s = write_float_attr(w->g, "std", std, n_norm, &w->p);
    }
    if (!s && classes && n_classes > 0) {
        hsize_t n = (hsize_t)n_classes;
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, H5T_VARIABLE);
        H5Tset_cset(st, H5T_CSET_UTF8);
        hid_t sp = H5Screate_simple(1, &n, NULL);
        hid_t a = H5Acreate2(w->g, "classes", st, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0 || H5Awrite(a, st, classes) < 0) s = h5_err(&w->p, "@classes", "cannot write the attribute", NULL);
        if (a >= 0) H5Aclose(a);
        H5Sclose(sp);
        H5Tclose(st);
    }
    if (!s && w->written != w->n)
        s = larch_fail(LARCH_ERR_INVALID, "%s:%s: %d of %d samples written", w->path, w->p.group, w->written, w->n);
    H5Dclose(w->x);
    H5Dclose(w->y);
    H5Gclose(w->g);
    if (H5Fclose(w->f) < 0 && !s) s = h5_err(&w->p, "", "cannot close the file (disk full?)", NULL);
    free(w);
    return s;
}
