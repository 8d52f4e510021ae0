/* checkpoint_quant.c - quantized tensors in HDF5 checkpoints
 * (docs/compression/quantization.md, docs/checkpoints.md).
 *
 * A layer whose weight is stored quantized (larch_qlayer.store) has no
 * /params/<layer>/weight; instead the group /quant/<layer> (attribute
 * `format`: "int8", "fp16", "bf16", or "float" for QAT's ranges alone) holds
 *   weight        int8 (int8), IEEE half (fp16) or bfloat16 (bf16: a 16-bit
 *                 HDF5 float of 8 exponent and 7 mantissa bits), the
 *                 parameter's logical shape
 *   weight_scale  float32 (cout): per-output-channel scales (int8)
 *   input_range   float32 (2): [lo, hi] of the layer's input, calibrated or
 *                 learned by QAT (int8 and QAT); the input is u8 with scale
 *                 hi / 255 when lo >= 0, else s8 with max(|lo|, |hi|) / 127
 * Every dataset is chunked with the Fletcher32 filter like the rest of the
 * file (HDF5 checks it on read). Reading dequantizes the weight into the
 * float parameter; an int8 layer also gets its int8 kernel (nn/quant.c).
 */
#include "io/ckpt_internal.h"
#include "io/ckpt_quant.h"
#include "nn/quant.h"
#include "core/half.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *format_name(larch_qstore s)
{
    return s == LARCH_QSTORE_INT8 ? "int8" : s == LARCH_QSTORE_FP16 ? "fp16" : s == LARCH_QSTORE_BF16 ? "bf16" : "float";
}

/* The 16-bit float file types (closed by the caller). */
static hid_t half_type(int bf16)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return -1;
    int bad = bf16 ? H5Tset_fields(t, 15, 7, 8, 0, 7) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 127) < 0
                   : H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0;
    if (bad) { H5Tclose(t); return -1; }
    return t;
}

static const larch_param *weight_of(const larch_model *m, const larch_layer *L) { return &m->params[L->first_param]; }

int larch_ckpt_quant_replaces(const larch_model *m, const larch_param *p)
{
    const larch_layer *L = m->layers[p->layer];
    return L->q && L->q->store != LARCH_QSTORE_FLOAT && p == weight_of(m, L);
}

/* One dataset of any type through HDF5's own filter pipeline. */
static larch_status write_raw(hid_t file, hid_t lcpl, const char *path, const char *dpath, hid_t type, int ndim,
                              const hsize_t *dims, const void *src)
{
    char why[256];
    hid_t sp = H5Screate_simple(ndim, dims, NULL), dcpl = larch_ckpt_dataset_dcpl(ndim, dims);
    hid_t d = sp < 0 || dcpl < 0 ? -1 : H5Dcreate2(file, dpath, type, sp, lcpl, dcpl, H5P_DEFAULT);
    int rc = d < 0 || H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, src) < 0;
    if (rc) larch_ckpt_h5_why(why, sizeof why);
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    return rc ? larch_fail(LARCH_ERR_IO, "writing %s of %s: %s", dpath, path, why) : LARCH_OK;
}

larch_status larch_ckpt_quant_write(hid_t file, hid_t lcpl, const char *path, const larch_model *m)
{
    char dpath[600];
    hsize_t dims[CKPT_MAX_DIMS];
    larch_status s = LARCH_OK;
    for (int i = 0; !s && i < m->n_layers; i++) {
        const larch_layer *L = m->layers[i];
        const struct larch_qlayer *q = L->q;
        if (!q || (q->store == LARCH_QSTORE_FLOAT && !(q->qat && q->has_range))) continue;
        const larch_param *p = weight_of(m, L);
        int nd = larch_ckpt_param_dims(p, dims);
        const float *w = m->param + p->offset;
        snprintf(dpath, sizeof dpath, "/quant/%s/weight", L->name);
        if (q->store == LARCH_QSTORE_INT8) {
            s = write_raw(file, lcpl, path, dpath, H5T_STD_I8LE, nd, dims, q->wq);
            hsize_t rows = (hsize_t)q->rows;
            snprintf(dpath, sizeof dpath, "/quant/%s/weight_scale", L->name);
            if (!s) s = larch_ckpt_write_chunked(file, lcpl, path, dpath, 1, &rows, q->wscale);
        } else if (q->store == LARCH_QSTORE_FP16 || q->store == LARCH_QSTORE_BF16) {
            int bf = q->store == LARCH_QSTORE_BF16;
            uint16_t *h = malloc(p->size * sizeof *h);
            hid_t t = half_type(bf);
            if (!h || t < 0) s = larch_fail(LARCH_ERR_NOMEM, "writing %s of %s: out of memory", dpath, path);
            else {
                if (bf) larch_f32_to_bf16(w, h, p->size);
                else larch_f32_to_f16(w, h, p->size);
                s = write_raw(file, lcpl, path, dpath, t, nd, dims, h);
            }
            if (t >= 0) H5Tclose(t);
            free(h);
        }
        if (!s && q->has_range && (q->store == LARCH_QSTORE_INT8 || q->qat)) {
            hsize_t two = 2;
            snprintf(dpath, sizeof dpath, "/quant/%s/input_range", L->name);
            s = larch_ckpt_write_chunked(file, lcpl, path, dpath, 1, &two, q->range);
        }
        if (!s) {
            snprintf(dpath, sizeof dpath, "/quant/%s", L->name);
            hid_t g = H5Gopen2(file, dpath, H5P_DEFAULT);
            if (g < 0 || larch_ckpt_attr_put_str(g, "format", format_name(q->store)))
                s = larch_fail(LARCH_ERR_IO, "writing the attributes of %s in %s", dpath, path);
            if (g >= 0) H5Gclose(g);
        }
    }
    return s;
}

static int has_group(hid_t file, const char *gpath) { return H5Lexists(file, "/quant", H5P_DEFAULT) > 0 && H5Lexists(file, gpath, H5P_DEFAULT) > 0; }

int larch_ckpt_quant_in_file(hid_t file, const larch_model *m, const larch_param *p)
{
    const larch_layer *L = m->layers[p->layer];
    if (p != weight_of(m, L) || !larch_q_layer_ok(L, NULL, NULL)) return 0;
    char dpath[600];
    snprintf(dpath, sizeof dpath, "/quant/%s", L->name);
    if (!has_group(file, dpath)) return 0;
    snprintf(dpath, sizeof dpath, "/quant/%s/weight", L->name);
    return H5Lexists(file, dpath, H5P_DEFAULT) > 0;
}

/* Reads the non-float32 dataset dpath of type class `cls` and byte size
 * `size` with exactly the logical shape of p into dst (raw elements). */
static larch_status read_raw(hid_t file, const char *path, const char *dpath, const larch_param *p, H5T_class_t cls, size_t size,
                             hid_t memtype, void *dst)
{
    char why[256] = "", want[128], have[128];
    if (H5Lexists(file, dpath, H5P_DEFAULT) <= 0)
        return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: tensor %s is missing", path, dpath);
    hid_t d = H5Dopen2(file, dpath, H5P_DEFAULT);
    if (d < 0) return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: cannot open tensor %s", path, dpath);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    hsize_t dims[CKPT_MAX_DIMS], fd[CKPT_MAX_DIMS];
    int nd = larch_ckpt_param_dims(p, dims), fnd = H5Sget_simple_extent_ndims(sp);
    larch_status s = LARCH_OK;
    if (H5Tget_class(t) != cls || H5Tget_size(t) != size)
        s = larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: tensor %s is not %s", path, dpath,
                       cls == H5T_INTEGER ? "int8" : "a 16-bit float");
    else if (fnd != nd || fnd < 1 || fnd > CKPT_MAX_DIMS || H5Sget_simple_extent_dims(sp, fd, NULL) < 0 ||
             memcmp(fd, dims, (size_t)nd * sizeof *dims) != 0) {
        larch_ckpt_fmt_shape(want, sizeof want, nd, dims);
        larch_ckpt_fmt_shape(have, sizeof have, fnd > 0 && fnd <= CKPT_MAX_DIMS ? fnd : 0, fd);
        s = larch_fail(LARCH_ERR_SHAPE, "checkpoint %s: tensor %s has shape %s, the model needs %s", path, dpath, have, want);
    } else if (H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
        s = larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: tensor %s cannot be read (corrupted or truncated: %s)", path, dpath,
                       larch_ckpt_h5_why(why, sizeof why));
    }
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(d);
    return s;
}

/* A float32 vector dpath of n values, every one finite (and > 0 when positive). */
static larch_status read_vec(hid_t file, const char *path, const char *dpath, hsize_t n, float *dst, int positive)
{
    larch_status s = larch_ckpt_read_tensor(file, path, dpath, 1, &n, 0, n, dst);
    for (hsize_t i = 0; !s && i < n; i++)
        if (!isfinite(dst[i]) || (positive && !(dst[i] > 0.0f)))
            s = larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: tensor %s holds %g at [%llu]; scales must be finite and positive",
                           path, dpath, dst[i], (unsigned long long)i);
    return s;
}

static larch_status read_layer(hid_t file, const char *path, larch_layer *L)
{
    larch_model *m = L->model;
    char gpath[600], dpath[640], *fmt = NULL;
    snprintf(gpath, sizeof gpath, "/quant/%s", L->name);
    hid_t g = H5Gopen2(file, gpath, H5P_DEFAULT);
    if (g < 0) return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: cannot open %s", path, gpath);
    larch_status s = larch_ckpt_attr_get_str(g, path, "format", &fmt);
    H5Gclose(g);
    if (s) return s;
    larch_qstore st = !strcmp(fmt, "int8") ? LARCH_QSTORE_INT8 : !strcmp(fmt, "fp16") ? LARCH_QSTORE_FP16
                    : !strcmp(fmt, "bf16") ? LARCH_QSTORE_BF16 : LARCH_QSTORE_FLOAT;
    if (st == LARCH_QSTORE_FLOAT && strcmp(fmt, "float") != 0)
        s = larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: %s has format '%s' (expected int8, fp16, bf16 or float)", path, gpath, fmt);
    free(fmt);
    if (s) return s;
    if (!larch_q_layer_ok(L, NULL, NULL))
        return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: %s quantizes layer '%s', a %s layer (only dense and conv2d are)",
                          path, gpath, L->name, L->ops->type);
    struct larch_qlayer *q = larch_q_get(L);
    if (!q) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    const larch_param *p = weight_of(m, L);
    float *w = m->param + p->offset, range[2];
    snprintf(dpath, sizeof dpath, "%s/input_range", gpath);
    if (st == LARCH_QSTORE_INT8 || st == LARCH_QSTORE_FLOAT) {
        if ((s = read_vec(file, path, dpath, 2, range, 0))) return s;
        if (!(range[0] <= range[1]))
            return larch_fail(LARCH_ERR_FORMAT, "checkpoint %s: tensor %s is [%g, %g], not a range", path, dpath, range[0], range[1]);
    }
    snprintf(dpath, sizeof dpath, "%s/weight", gpath);
    if (st == LARCH_QSTORE_FP16 || st == LARCH_QSTORE_BF16) {
        int bf = st == LARCH_QSTORE_BF16;
        uint16_t *h = malloc(p->size * sizeof *h);
        hid_t t = half_type(bf);
        s = !h || t < 0 ? larch_fail(LARCH_ERR_NOMEM, "out of memory") : read_raw(file, path, dpath, p, H5T_FLOAT, 2, t, h);
        if (!s) {
            if (bf) larch_bf16_to_f32(h, w, p->size);
            else larch_f16_to_f32(h, w, p->size);
            q->store = st;
        }
        if (t >= 0) H5Tclose(t);
        free(h);
    } else if (st == LARCH_QSTORE_INT8) {
        int8_t *wq = malloc(p->size);
        float *sc = malloc((size_t)q->rows * sizeof *sc);
        char spath[640];
        snprintf(spath, sizeof spath, "%s/weight_scale", gpath);
        s = !wq || !sc ? larch_fail(LARCH_ERR_NOMEM, "out of memory") : read_raw(file, path, dpath, p, H5T_INTEGER, 1, H5T_NATIVE_INT8, wq);
        if (!s) s = read_vec(file, path, spath, (hsize_t)q->rows, sc, 1);
        if (!s && larch_q8_available()) s = larch_q8_attach(L, wq, sc, range);
        else if (!s) {                    /* no oneDNN: the float model with the dequantized weights */
            s = larch_q8_set(L, wq, sc, range);
            static int warned;
            if (!s && !warned++)
                fprintf(stderr, "larch: warning: %s holds int8 layers and this larch was built without oneDNN: they compute "
                        "in float from the dequantized weights\n", path);
        }
        if (s) s = larch_fail_context(s, "checkpoint %s: layer '%s'", path, L->name);
        free(wq);
        free(sc);
    } else {
        q->range[0] = range[0];
        q->range[1] = range[1];
        q->has_range = 1;
    }
    return s;
}

typedef struct { const larch_model *m; char extra[300]; } extra_ctx;

static herr_t find_extra(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)g; (void)info;
    extra_ctx *x = data;
    if (larch_model_node(x->m, name) < 1) {
        snprintf(x->extra, sizeof x->extra, "/quant/%s", name);
        return 1;
    }
    return 0;
}

larch_status larch_ckpt_quant_read(hid_t file, const char *path, larch_model *m)
{
    if (H5Lexists(file, "/quant", H5P_DEFAULT) <= 0) return LARCH_OK;
    extra_ctx x = {m, ""};
    hid_t g = H5Gopen2(file, "/quant", H5P_DEFAULT);
    if (g >= 0) { H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, find_extra, &x); H5Gclose(g); }
    if (x.extra[0])
        return larch_fail(LARCH_ERR_SHAPE, "checkpoint %s has %s, a layer the model does not have (a checkpoint of a "
                          "different model?)", path, x.extra);
    larch_status s = LARCH_OK;
    char gpath[600];
    for (int i = 0; !s && i < m->n_layers; i++) {
        snprintf(gpath, sizeof gpath, "/quant/%s", m->layers[i]->name);
        if (H5Lexists(file, gpath, H5P_DEFAULT) > 0) s = read_layer(file, path, m->layers[i]);
    }
    return s;
}

larch_status larch_ckpt_quant_init_path(hid_t file, const char *path, const char *src, char *dpath, size_t len)
{
    char q[640];
    snprintf(q, sizeof q, "/quant/%s", src);
    const char *slash = strchr(src, '/');
    char group[600];
    snprintf(group, sizeof group, "/quant/%.*s", slash ? (int)(slash - src) : 0, src);
    if (!slash || !has_group(file, group) || H5Lexists(file, q, H5P_DEFAULT) <= 0) return LARCH_OK;
    hid_t d = H5Dopen2(file, q, H5P_DEFAULT), t = d >= 0 ? H5Dget_type(d) : -1;
    int int8 = t >= 0 && H5Tget_class(t) == H5T_INTEGER;
    if (t >= 0) H5Tclose(t);
    if (d >= 0) H5Dclose(d);
    if (int8)
        return larch_fail(LARCH_ERR_FORMAT, "model.init_from %s: tensor %s is int8 (an int8 model is for inference): "
                          "initialize from the float checkpoint it was quantized from", path, q);
    snprintf(dpath, len, "%s", q);
    return LARCH_OK;
}
