/* quantize.c - the post-training quantization methods of larch compress:
 * fp16 and bf16 (16-bit weights in the checkpoint) and int8 (per-output-
 * channel int8 weights, input ranges calibrated on training samples; larch
 * eval then runs oneDNN's int8 kernels). docs/compression/quantization.md.
 *
 * Each method builds the model of the source config, loads its checkpoint,
 * marks the selected layers' storage (nn/quant.h), writes the config with a
 * `quantize` section and the checkpoint (io/checkpoint_quant.c), and loads
 * the written config back to check that it validates. One process: no MPI
 * collective (a one-rank communicator that never calls MPI).
 */
#include "compress/methods.h"
#include "larch/checkpoint.h"
#include "larch/train.h"
#include "nn/quant.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_Q_LAYERS 256
#define PCT_MAX_VALUES ((size_t)1 << 22)   /* percentile calibration: values kept per layer (16 MiB) */

const larch_key larch_quant_half_keys[] = {
    {"layers", LARCH_T_STRINGS, "[]", 0, 0, NULL, NULL, "dense and conv2d layers to store in 16 bits ([] = all)"},
    {0}};

const larch_key larch_quant_int8_keys[] = {
    {"layers", LARCH_T_STRINGS, "[]", 0, 0, NULL, NULL, "dense and conv2d layers to quantize ([] = all)"},
    {"samples", LARCH_T_INT, "512", 1, 1 << 20, NULL, NULL, "training samples the input ranges are calibrated on"},
    {"calibration", LARCH_T_ENUM, "auto", 0, 0, "auto|minmax|percentile|qat", NULL,
     "input ranges: min and max, percentiles, or the ranges QAT learned (auto: qat when the checkpoint has them, else minmax)"},
    {"percentile", LARCH_T_FLOAT, "99.99", 50, 100, NULL, NULL, "calibration=percentile: hi = this percentile of x, lo = 100 - it"},
    {"batch", LARCH_T_INT, "256", 1, 65536, NULL, NULL, "calibration batch size"},
    {0}};

static const larch_comm one_process = {0, 1, 0, 1, NULL};

typedef struct {
    larch_node *cfg;                  /* the clone being rewritten */
    larch_model *m;
    larch_ckpt_meta meta;
    int have_meta;
    int n_sel;
    larch_layer *sel[MAX_Q_LAYERS];
} job_t;

static void job_free(job_t *j)
{
    larch_model_free(j->m);
    if (j->have_meta) larch_ckpt_meta_free(&j->meta);
    larch_node_free(j->cfg);
}

/* The model of src, its checkpoint loaded, and the selected layers. */
static larch_status job_open(const larch_compress_src *src, const larch_node *opts, const char *method, job_t *j)
{
    memset(j, 0, sizeof *j);
    larch_shape shape;
    int classes;
    if (!(j->cfg = larch_node_clone(src->cfg))) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    larch_status s = larch_run_input(src->cfg, &shape, &classes);
    if (!s) s = larch_model_build(&j->m, shape, larch_run_layers(src->cfg), larch_map_get(src->cfg, "loss"),
                                  larch_map_get(src->cfg, "regularization"), 0);
    if (!s) s = larch_ckpt_load(src->checkpoint, &one_process, j->m, NULL, &j->meta);
    if (s) return s;
    j->have_meta = 1;
    larch_model *m = j->m;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i]->q && m->layers[i]->q->store != LARCH_QSTORE_FLOAT)
            return larch_fail(LARCH_ERR_INVALID, "%s: checkpoint %s is already quantized (layer '%s'); quantize the float "
                              "model's checkpoint", method, src->checkpoint, m->layers[i]->name);
    const larch_node *list = opts ? larch_map_get(opts, "layers") : NULL;
    int n = list && list->kind == LARCH_NODE_SEQ ? list->n : 0;
    if (n > MAX_Q_LAYERS) return larch_fail(LARCH_ERR_INVALID, "%s: layers: at most %d", method, MAX_Q_LAYERS);
    for (int k = 0; k < n; k++) {
        const char *name = list->items[k]->scalar;
        int node = larch_model_node(m, name);
        if (node < 1) return larch_fail(LARCH_ERR_INVALID, "%s: layers: the model has no layer '%s'", method, name);
        larch_layer *L = m->layers[node - 1];
        if (!larch_q_layer_ok(L, NULL, NULL))
            return larch_fail(LARCH_ERR_INVALID, "%s: layers: '%s' is a %s layer; only dense and conv2d layers are quantized",
                              method, name, L->ops->type);
        for (int i = 0; i < j->n_sel; i++)
            if (j->sel[i] == L) return larch_fail(LARCH_ERR_INVALID, "%s: layers: '%s' is listed twice", method, name);
        j->sel[j->n_sel++] = L;
    }
    for (int i = 0; n == 0 && i < m->n_layers && j->n_sel < MAX_Q_LAYERS; i++)
        if (larch_q_layer_ok(m->layers[i], NULL, NULL)) j->sel[j->n_sel++] = m->layers[i];
    if (j->n_sel == 0) return larch_fail(LARCH_ERR_INVALID, "%s: the model has no dense or conv2d layer to quantize", method);
    return LARCH_OK;
}

static larch_status set_key(larch_node *cfg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static larch_status set_key(larch_node *cfg, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (len < 0 || len >= (int)sizeof buf) return larch_fail(LARCH_ERR_INVALID, "quantize: a config value is too long");
    return larch_cfg_set(cfg, buf);
}

/* Writes out_base.yaml (the job's config, with quantize.format and
 * quantize.layers) and out_base.h5 (the model, step and lineage of the
 * source), then loads the config back (it must validate). */
static larch_status job_write(job_t *j, const char *format, const char *out_base, larch_compress_out *out)
{
    char list[4096] = "[";
    size_t len = 1;
    for (int i = 0; i < j->n_sel && len < sizeof list - 80; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", j->sel[i]->name);
    snprintf(list + len, sizeof list - len, "]");
    larch_status s = set_key(j->cfg, "quantize.format=%s", format);
    if (!s) s = set_key(j->cfg, "quantize.layers=%s", list);
    if (!s) s = set_key(j->cfg, "quantize.qat=false");
    if (!s) s = larch_cfg_check(j->cfg, "", larch_run_keys, NULL);
    if (s) return s;
    snprintf(out->config_path, sizeof out->config_path, "%s.yaml", out_base);
    snprintf(out->checkpoint, sizeof out->checkpoint, "%s.h5", out_base);
    if ((s = larch_cfg_save(j->cfg, out->config_path))) return s;
    s = larch_ckpt_save_model(out->checkpoint, &one_process, j->m, j->cfg, &j->meta);
    larch_node *back = NULL;
    if (!s) s = larch_run_load(out->config_path, NULL, 0, &back);
    larch_node_free(back);
    if (s) return larch_fail_context(s, "the written config %s", out->config_path);
    out->cfg = j->cfg;
    j->cfg = NULL;
    return LARCH_OK;
}

static larch_status half(const larch_compress_src *src, larch_node *opts, const char *out_base, larch_compress_out *out, int bf16)
{
    const char *name = bf16 ? "bf16" : "fp16";
    memset(out, 0, sizeof *out);
    job_t j;
    larch_status s = job_open(src, opts, name, &j);
    long values = 0;
    for (int i = 0; !s && i < j.n_sel; i++) {
        struct larch_qlayer *q = larch_q_get(j.sel[i]);
        if (!q) s = larch_fail(LARCH_ERR_NOMEM, "out of memory");
        else q->store = bf16 ? LARCH_QSTORE_BF16 : LARCH_QSTORE_FP16;
        values += (long)j.m->params[j.sel[i]->first_param].size;
    }
    if (!s) s = job_write(&j, name, out_base, out);
    if (!s)
        snprintf(out->summary, sizeof out->summary, "%s: the weights of %d layer(s) (%ld values) stored in 16 bits; biases and "
                 "normalization stay float32", name, j.n_sel, values);
    job_free(&j);
    return s;
}

larch_status larch_compress_fp16(const larch_compress_src *src, larch_node *opts, const char *out_base, larch_compress_out *out)
{
    return half(src, opts, out_base, out, 0);
}

larch_status larch_compress_bf16(const larch_compress_src *src, larch_node *opts, const char *out_base, larch_compress_out *out)
{
    return half(src, opts, out_base, out, 1);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The value at percentile p (0..100) of v[0..n), sorted in place. */
static float percentile_of(float *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_float);
    double at = p / 100.0 * (double)(n - 1);
    size_t i = (size_t)at;
    double f = at - (double)i;
    return i + 1 < n ? (float)((1.0 - f) * v[i] + f * v[i + 1]) : v[n - 1];
}

/* Input ranges of the selected layers over `samples` training samples
 * (eval-mode forward passes, float model): min-max or percentiles. */
static larch_status calibrate(job_t *j, const larch_dataset *train, int samples, int batch, int pct, double p, uint64_t seed,
                              float (*range)[2])
{
    larch_model *m = j->m;
    if (samples > train->n) samples = train->n;
    if (batch > samples) batch = samples;
    larch_status s = larch_model_plan(m, batch);
    if (s) return s;
    float *store[MAX_Q_LAYERS] = {0};
    size_t used[MAX_Q_LAYERS] = {0}, stride[MAX_Q_LAYERS] = {0}, seen[MAX_Q_LAYERS] = {0};
    for (int i = 0; i < j->n_sel; i++) {
        range[i][0] = INFINITY;
        range[i][1] = -INFINITY;
        size_t total = (size_t)samples * larch_shape_size(j->sel[i]->in_shape[0]);
        stride[i] = (total + PCT_MAX_VALUES - 1) / PCT_MAX_VALUES;   /* every stride-th value: at most PCT_MAX_VALUES */
        if (pct && !(store[i] = malloc((total / stride[i] + 1) * sizeof(float))))
            s = larch_fail(LARCH_ERR_NOMEM, "int8 calibration: out of memory keeping layer '%s''s inputs", j->sel[i]->name);
    }
    larch_loader *ld = NULL;
    larch_loader_opts lo = {.global_batch = batch, .rank = 0, .world = 1, .shuffle = 1, .drop_last = 0, .seed = seed};
    if (!s) s = larch_loader_create(&ld, train, &lo);
    for (int done = 0; !s && done < samples;) {
        const larch_batch *b = larch_loader_next(ld, NULL, NULL);
        if ((s = larch_loader_status(ld))) break;
        larch_batch bt = *b;
        if (bt.n > samples - done) bt.n = samples - done;
        if (bt.n <= 0) break;
        larch_pass ps = {.n = bt.n, .train = 0, .seed = seed};
        larch_model_forward(m, &bt, &ps);
        for (int i = 0; i < j->n_sel; i++) {
            const larch_layer *L = j->sel[i];
            size_t cnt = (size_t)bt.n * larch_shape_size(L->in_shape[0]);
            float lo_, hi_;
            larch_minmax(L->x[0], cnt, &lo_, &hi_);
            range[i][0] = fminf(range[i][0], lo_);
            range[i][1] = fmaxf(range[i][1], hi_);
            for (size_t k = 0; store[i] && k < cnt; k++)
                if ((seen[i] + k) % stride[i] == 0) store[i][used[i]++] = L->x[0][k];
            seen[i] += cnt;
        }
        done += bt.n;
    }
    for (int i = 0; !s && pct && i < j->n_sel; i++) {
        range[i][0] = percentile_of(store[i], used[i], 100.0 - p);
        range[i][1] = store[i][used[i] - 1] >= 0 ? percentile_of(store[i], used[i], p) : store[i][used[i] - 1];
        if (range[i][0] > range[i][1]) range[i][0] = range[i][1];
    }
    for (int i = 0; i < j->n_sel; i++) free(store[i]);
    larch_loader_free(ld);
    return s;
}

larch_status larch_compress_int8(const larch_compress_src *src, larch_node *opts, const char *out_base, larch_compress_out *out)
{
    memset(out, 0, sizeof *out);
    job_t j;
    larch_status s = job_open(src, opts, "int8", &j);
    int samples = opts && larch_map_get(opts, "samples") ? (int)larch_cfg_int(opts, "samples") : 512;
    int batch = opts && larch_map_get(opts, "batch") ? (int)larch_cfg_int(opts, "batch") : 256;
    double p = opts && larch_map_get(opts, "percentile") ? larch_cfg_float(opts, "percentile") : 99.99;
    const char *cal = opts && larch_map_get(opts, "calibration") ? larch_cfg_str(opts, "calibration") : "auto";
    float (*range)[2] = NULL;
    int have_qat = 0;
    for (int i = 0; !s && i < j.n_sel; i++) have_qat += j.sel[i]->q && j.sel[i]->q->has_range;
    if (!s && !strcmp(cal, "auto")) cal = have_qat == j.n_sel ? "qat" : "minmax";
    if (!s && !(range = calloc((size_t)j.n_sel, sizeof *range))) s = larch_fail(LARCH_ERR_NOMEM, "out of memory");
    if (!s && !strcmp(cal, "qat")) {
        for (int i = 0; !s && i < j.n_sel; i++) {
            const struct larch_qlayer *q = j.sel[i]->q;
            if (!q || !q->has_range)
                s = larch_fail(LARCH_ERR_INVALID, "int8: calibration=qat: checkpoint %s has no learned input range for layer "
                               "'%s' (/quant/%s/input_range; train with quantize.qat: true, or use calibration=minmax)",
                               src->checkpoint, j.sel[i]->name, j.sel[i]->name);
            else range[i][0] = q->range[0], range[i][1] = q->range[1];
        }
    } else if (!s) {
        if (!src->train_set || src->train_set->n < 1)
            s = larch_fail(LARCH_ERR_INVALID, "int8: calibration=%s needs the config's training set", cal);
        else
            s = calibrate(&j, src->train_set, samples, batch, !strcmp(cal, "percentile"), p,
                          (uint64_t)larch_cfg_int(larch_map_get(src->cfg, "train"), "seed"), range);
    }
    for (int i = 0; !s && i < j.n_sel; i++) {
        larch_layer *L = j.sel[i];
        const larch_param *w = &j.m->params[L->first_param];
        int rows = w->shape[0], cols = (int)(w->size / (size_t)rows);
        int8_t *wq = malloc(w->size);
        float *sc = malloc((size_t)rows * sizeof *sc);
        if (!wq || !sc) s = larch_fail(LARCH_ERR_NOMEM, "out of memory");
        else {
            larch_q8_weights(j.m->param + w->offset, rows, cols, wq, sc);
            s = larch_q8_set(L, wq, sc, range[i]);
        }
        free(wq);
        free(sc);
    }
    if (!s) s = set_key(j.cfg, "quantize.calibration=%s", cal);
    if (!s) s = set_key(j.cfg, "quantize.samples=%d", strcmp(cal, "qat") ? (src->train_set && samples > src->train_set->n ? src->train_set->n : samples) : 512);
    if (!s) s = set_key(j.cfg, "quantize.percentile=%g", p);
    if (!s) s = job_write(&j, "int8", out_base, out);
    if (!s) {
        size_t len = (size_t)snprintf(out->summary, sizeof out->summary, "int8: %d layer(s), per-channel weights; inputs %s",
                                      j.n_sel, !strcmp(cal, "qat") ? "from QAT's ranges:" : "calibrated:");
        for (int i = 0; i < j.n_sel && len < sizeof out->summary - 48; i++) {
            int u8;
            larch_q8_act_scale(range[i][0], range[i][1], &u8);
            len += (size_t)snprintf(out->summary + len, sizeof out->summary - len, " %s %s[%.3g, %.3g]", j.sel[i]->name,
                                    u8 ? "u8" : "s8", range[i][0], range[i][1]);
        }
    }
    free(range);
    job_free(&j);
    return s;
}
