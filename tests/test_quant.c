/* test_quant.c - quantization (docs/compression/quantization.md):
 *   - per-channel int8 weights: round trip within half a step per row; the
 *     input scale rule (u8 after ReLU, else s8) and saturation;
 *   - oneDNN's int8 dense and conv2d (stride 1 and 2, padding, bias or
 *     not, u8 and s8 inputs, several batch sizes on one plan) against the
 *     exact product of the quantized operands, and against the float layer
 *     within the quantization error bound; the int8 path really ran;
 *   - checkpoints: int8 tensors + scales + input ranges, fp16 and bf16
 *     weights round trip (and run int8 after the load); a missing,
 *     negative or mistyped tensor, an unknown layer and corrupted bytes are
 *     errors naming the tensor;
 *   - QAT: the straight-through estimator against finite differences of its
 *     surrogate (clip(x) on the int8 grid's range, fake-quantized weights):
 *     inside the range the gradient passes, outside it is zero; conv2d QAT
 *     equals the float conv on the fake-quantized operands; the moving
 *     average of the range and start_step;
 *   - the compress methods end to end on synthetic data (int8, fp16, bf16,
 *     option errors), the quantize config section (int8 is not trainable).
 */
#include "check.h"
#include "larch/larch.h"
#include "larch/compress.h"
#include "compress/methods.h"
#include "nn/layers.h"
#include "nn/quant.h"
#include "train/quant_cfg.h"

#include <hdf5.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static const larch_comm one = {0, 1, 0, 1, NULL};

static uint32_t hash(uint32_t i) { i ^= i >> 16; i *= 0x7feb352dU; i ^= i >> 15; i *= 0x846ca68bU; i ^= i >> 16; return i; }
static float sym(uint32_t i) { return (float)(hash(i) >> 8) / 8388608.0f - 1.0f; }   /* [-1, 1) */

static larch_model *build(const char *yaml, larch_shape in, int batch)
{
    larch_node *layers = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse(yaml, "<test>", &layers));
    if (layers) CHECK_OK(larch_model_build(&m, in, layers, NULL, NULL, 5));
    larch_node_free(layers);
    if (m && batch) CHECK_OK(larch_model_plan(m, batch));
    return m;
}

/* ---- math ---- */

static void test_math(void)
{
    enum { R = 5, C = 33 };
    float W[R * C], D[R * C], sc[R];
    int8_t q[R * C];
    for (int i = 0; i < R * C; i++) W[i] = (1.0f + (float)(i / C)) * sym((uint32_t)i);
    for (int c = 0; c < C; c++) W[2 * C + c] = 0.0f;                       /* a zero row */
    larch_q8_weights(W, R, C, q, sc);
    larch_q8_dequant(q, R, C, sc, D);
    for (int r = 0; r < R; r++) {
        float amax = 0;
        for (int c = 0; c < C; c++) amax = fmaxf(amax, fabsf(W[r * C + c]));
        if (r == 2) CHECK(sc[r] == 1.0f, "a zero row's scale is 1, not %g", sc[r]);
        else CHECK_NEAR(sc[r], amax / 127.0f, 1e-9);
        int worst = 0;
        for (int c = 0; c < C; c++) {
            CHECK(fabsf(W[r * C + c] - D[r * C + c]) <= 0.5f * sc[r] * (1 + 1e-6f), "row %d col %d: %g vs %g", r, c, W[r * C + c], D[r * C + c]);
            CHECK(q[r * C + c] >= -127 && q[r * C + c] <= 127, "q %d", q[r * C + c]);
            if (abs(q[r * C + c]) > worst) worst = abs(q[r * C + c]);
        }
        if (r != 2) CHECK(worst == 127, "row %d: the largest |w| maps to 127 (got %d)", r, worst);
    }
    int u8;
    CHECK_NEAR(larch_q8_act_scale(0.0f, 5.1f, &u8), 0.02, 1e-7);
    CHECK(u8 == 1, "a range from 0: u8");
    CHECK_NEAR(larch_q8_act_scale(-2.54f, 1.0f, &u8), 0.02, 1e-7);
    CHECK(u8 == 0, "a negative range: s8");
    CHECK(larch_q8_act_scale(0.0f, 0.0f, &u8) == 1.0f, "an empty range: scale 1");
    float x[6] = {-1.0f, 0.0f, 0.013f, 2.0f, 9.0f, -0.019f};
    uint8_t xu[6];
    int8_t xs[6];
    larch_q8_act(x, 6, 0.02f, 1, xu);
    CHECK(xu[0] == 0 && xu[1] == 0 && xu[2] == 1 && xu[3] == 100 && xu[4] == 255 && xu[5] == 0, "u8 %d %d %d %d %d %d", xu[0], xu[1], xu[2], xu[3], xu[4], xu[5]);
    larch_q8_act(x, 6, 0.02f, 0, xs);
    CHECK(xs[0] == -50 && xs[3] == 100 && xs[4] == 127 && xs[5] == -1, "s8 %d %d %d %d", xs[0], xs[3], xs[4], xs[5]);
}

/* ---- int8 kernels ---- */

/* Quantizes layer L of m (weights per channel, input range [lo, hi]) and
 * attaches the int8 kernel; returns the input scale. */
static float quantize_layer(larch_layer *L, float lo, float hi)
{
    const larch_param *w = &L->model->params[L->first_param];
    int rows = w->shape[0], cols = (int)(w->size / (size_t)rows);
    int8_t *q = malloc(w->size);
    float *sc = malloc((size_t)rows * sizeof *sc), range[2] = {lo, hi};
    larch_q8_weights(L->model->param + w->offset, rows, cols, q, sc);
    CHECK_OK(larch_q8_attach(L, q, sc, range));
    free(q);
    free(sc);
    return larch_q8_act_scale(lo, hi, NULL);
}

/* One single-layer model, batches 6, 1, 3 on a plan for 6: int8 against
 * (a) the float layer on the fake-quantized input with the dequantized
 * weights (the same arithmetic up to float rounding), (b) the float layer
 * on the original operands within the quantization error bound. */
static void check_layer_int8(const char *yaml, larch_shape in, int nonneg, const char *what)
{
    larch_model *m = build(yaml, in, 6), *f = build(yaml, in, 6);
    if (!m || !f) return;
    for (size_t i = 0; i < m->n_floats; i++) m->param[i] = f->param[i] = 0.3f * sym((uint32_t)i + 99u);
    const size_t per = larch_shape_size(in), outper = larch_shape_size(m->layers[0]->out_shape);
    float *x = malloc(6 * per * sizeof *x), *xq = malloc(6 * per * sizeof *x), *yref = malloc(6 * outper * sizeof *x);
    for (size_t i = 0; i < 6 * per; i++) x[i] = nonneg ? fmaxf(0.0f, 2.0f * sym((uint32_t)i * 7u)) : 2.0f * sym((uint32_t)i * 7u);
    float lo, hi;
    larch_minmax(x, 6 * per, &lo, &hi);
    larch_layer *L = m->layers[0];
    float sx = quantize_layer(L, lo, hi);
    int u8;
    larch_q8_act_scale(lo, hi, &u8);
    CHECK(u8 == nonneg, "%s: input type u8 %d", what, u8);
    const float *Wd = larch_layer_param(L, 0);                          /* dequantized by the attach */
    const larch_param *wp = &m->params[0];
    int rows = wp->shape[0], cols = (int)(wp->size / (size_t)rows);
    larch_fq_act(x, 6 * per, lo, hi, xq);
    static const int ns[3] = {6, 1, 3};
    for (int t = 0; t < 3; t++) {
        int n = ns[t];
        larch_batch b = {.n = n, .x = x};
        larch_pass p = {.n = n, .train = 0};
        larch_model_forward(m, &b, &p);
        CHECK(larch_q8_ran(m) == 1, "%s n=%d: the int8 kernel ran", what, n);
        /* (a) the float model with dequantized weights on the fake-quantized input */
        memcpy(f->param, m->param, m->n_floats * sizeof(float));
        larch_batch bq = {.n = n, .x = xq};
        larch_model_forward(f, &bq, &p);
        memcpy(yref, f->node_y[1], (size_t)n * outper * sizeof(float));
        double worst = 0, scale = 0;
        for (size_t i = 0; i < (size_t)n * outper; i++) {
            worst = fmax(worst, fabs(m->node_y[1][i] - yref[i]));
            scale = fmax(scale, fabs(yref[i]));
        }
        CHECK(worst <= 1e-5 * scale + 1e-6, "%s n=%d: int8 vs exact quantized product: max |diff| %g (scale %g)", what, n, worst, scale);
        /* (b) the float layer with the original weights, within the bound
         * sum_k |x_k| s_w[c] / 2 + |w^_ck| s_x / 2 per output (b: a bound per
         * output channel over the whole output, the conv's windows included) */
        for (size_t i = 0; i < m->n_floats; i++) f->param[i] = 0.3f * sym((uint32_t)i + 99u);
        larch_model_forward(f, &b, &p);
        double xsum = 0;
        for (size_t i = 0; i < (size_t)n * per; i++) xsum = fmax(xsum, fabs(x[i]));
        for (size_t i = 0; i < (size_t)n * outper; i++) {
            int c = (int)(i % (size_t)rows);
            double wsum = 0, sw = 0;
            for (int k = 0; k < cols; k++) { wsum += fabs(Wd[(size_t)c * cols + k]); sw = fmax(sw, fabs(Wd[(size_t)c * cols + k])); }
            double bound = cols * xsum * (sw / 127.0) / 2 + wsum * sx / 2 + 1e-5;
            if (fabs(m->node_y[1][i] - f->node_y[1][i]) > bound) {
                CHECK(0, "%s n=%d: output %zu: int8 %g, float %g, bound %g", what, n, i, m->node_y[1][i], f->node_y[1][i], bound);
                break;
            }
        }
    }
    /* a training pass computes in float (from the dequantized weights): the int8 kernel does not run */
    larch_batch b = {.n = 6, .x = x};
    larch_pass pt = {.n = 6, .train = 1};
    larch_model_forward(m, &b, &pt);
    CHECK(larch_q8_ran(m) == 0, "%s: a training pass runs float", what);
    free(x); free(xq); free(yref);
    larch_model_free(m);
    larch_model_free(f);
}

static void test_kernels(void)
{
    if (larch_conv_onednn_built()) {
    check_layer_int8("[{type: dense, units: 13}]", (larch_shape){1, 1, 37}, 0, "dense s8, bias");
    check_layer_int8("[{type: dense, units: 16, bias: false}]", (larch_shape){2, 3, 8}, 1, "dense u8, no bias");
    check_layer_int8("[{type: conv2d, filters: 8, kernel: 3, padding: 1}]", (larch_shape){9, 9, 5}, 1, "conv 3x3 u8");
    check_layer_int8("[{type: conv2d, filters: 6, kernel: 3, stride: 2, bias: false}]", (larch_shape){10, 9, 4}, 0, "conv stride 2 s8");
    check_layer_int8("[{type: conv2d, filters: 16, kernel: 1}]", (larch_shape){5, 5, 16}, 0, "conv 1x1 s8");
    /* a batchnorm folded into the int8 conv (negative scales too), with the relu after it as a post-op */
    for (int with_relu = 0; with_relu < 2; with_relu++) {
        const char *y = with_relu ? "[{type: conv2d, filters: 6, kernel: 3, padding: 1}, {type: batchnorm}, {type: relu}]"
                                  : "[{type: conv2d, filters: 6, kernel: 3, padding: 1, bias: false}, {type: batchnorm}]";
        larch_shape in = {6, 7, 3};
        larch_model *q = build(y, in, 4), *f = build(y, in, 4);
        if (!q || !f) continue;
        for (size_t i = 0; i < q->n_floats; i++) q->param[i] = 0.5f * sym((uint32_t)i + 31u);
        for (size_t i = 0; i < q->n_buffer_floats; i++) q->buffer[i] = 0.3f * sym((uint32_t)i + 7u) + (i >= 6 ? 0.6f : 0.0f);
        memcpy(f->buffer, q->buffer, q->n_buffer_floats * sizeof(float));
        size_t per = larch_shape_size(in), on = 4 * larch_shape_size(q->layers[1]->out_shape);
        float *x = malloc(4 * per * sizeof *x), *xf = malloc(4 * per * sizeof *x);
        for (size_t i = 0; i < 4 * per; i++) x[i] = sym((uint32_t)i + 1234u);
        quantize_layer(q->layers[0], -1.0f, 1.0f);
        memcpy(f->param, q->param, q->n_floats * sizeof(float));
        larch_fq_act(x, 4 * per, -1.0f, 1.0f, xf);
        larch_batch bq = {.n = 4, .x = x}, bf = {.n = 4, .x = xf};
        larch_pass p = {.n = 4};
        larch_model_forward(q, &bq, &p);
        larch_model_forward(f, &bf, &p);
        CHECK(larch_q8_ran(q) == 1 && q->layers[0]->q->fold == q->layers[1], "the conv ran int8 with the batchnorm folded");
        double worst = 0;
        const float *yq = q->node_y[q->n_layers], *yf = f->node_y[f->n_layers];
        for (size_t i = 0; i < on; i++) worst = fmax(worst, fabs(yq[i] - yf[i]));
        CHECK(worst < 1e-4, "folded batchnorm%s: max |int8 - float| %g", with_relu ? " + relu" : "", worst);
        /* a training pass: float conv, batchnorm on its own */
        larch_pass pt = {.n = 4, .train = 1};
        larch_model_forward(q, &bq, &pt);
        CHECK(larch_q8_ran(q) == 0, "a training pass runs float");
        free(x); free(xf);
        larch_model_free(q);
        larch_model_free(f);
    }
    /* oneDNN 2.x adds the bias before the output scale: a model with a large bias shows the difference */
    larch_model *m = build("[{type: dense, units: 2}]", (larch_shape){1, 1, 3}, 1);
    if (m) {
        for (int i = 0; i < 6; i++) m->param[m->params[0].offset + (size_t)i] = 0.5f;
        float *bias = m->param + m->params[1].offset, x[3] = {1, 1, 1};
        bias[0] = 10.0f, bias[1] = -3.0f;
        quantize_layer(m->layers[0], 0.0f, 1.0f);
        larch_batch b = {.n = 1, .x = x};
        larch_pass p = {.n = 1};
        larch_model_forward(m, &b, &p);
        CHECK_NEAR(m->node_y[1][0], 11.5, 1e-4);
        CHECK_NEAR(m->node_y[1][1], -1.5, 1e-4);
        char k[128];
        CHECK(larch_q8_count(m, k, sizeof k) == 1 && strstr(k, "onednn int8") != NULL, "kernels: %s", k);
        larch_model_free(m);
    }
    } else {
    larch_model *m = build("[{type: dense, units: 2}]", (larch_shape){1, 1, 3}, 1);
    int8_t q[6] = {0};
    float sc[2] = {1, 1}, r[2] = {0, 1};
    CHECK_FAIL(larch_q8_attach(m->layers[0], q, sc, r), LARCH_ERR_INVALID, "built without it");
    larch_model_free(m);
    }
}

/* ---- checkpoints ---- */

#define NET "[{type: conv2d, name: conv, filters: 4, kernel: 3, padding: 1}, {type: relu}, {type: dense, name: fc, units: 3}]"

static larch_model *net(void)
{
    larch_model *m = build(NET, (larch_shape){5, 5, 2}, 4);
    for (size_t i = 0; m && i < m->n_floats; i++) m->param[i] = 0.4f * sym((uint32_t)i + 3u);
    return m;
}

static larch_status save(const larch_model *m, const char *dir, char *path, size_t len)
{
    larch_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.world_size = 1;
    meta.global_batch = 4;
    meta.steps_per_epoch = 1;
    snprintf(meta.run_id, sizeof meta.run_id, "00000000000000ab");
    meta.lineage = "00000000000000ab:0";
    meta.config = "train: {}\n";
    return larch_ckpt_save(dir, 0, &one, m, NULL, &meta, path, len);
}

static void h5_edit(const char *path, const char *dset, int mode)   /* 0 delete, 1 negative scale, 2 float weight, 3 extra layer */
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (mode == 0) H5Ldelete(f, dset, H5P_DEFAULT);
    if (mode == 1) {
        hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
        float v[4] = {-1, -1, -1};
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        H5Dclose(d);
    }
    if (mode == 2) {
        H5Ldelete(f, dset, H5P_DEFAULT);
        hsize_t dims[2] = {3, 100};
        hid_t sp = H5Screate_simple(2, dims, NULL), d = H5Dcreate2(f, dset, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        float v[300] = {0};
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        H5Dclose(d);
        H5Sclose(sp);
    }
    if (mode == 3) H5Gclose(H5Gcreate2(f, dset, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(f);
}

static void test_checkpoints(const char *dir)
{
    char ckdir[600], path[700], bad[720];
    snprintf(ckdir, sizeof ckdir, "%s/q", dir);
    larch_model *a = net(), *b = net(), *h = net();
    if (!a || !b || !h) return;
    /* int8 on both layers */
    int8_t *wq[2];
    float *sc[2], range[2][2] = {{-1.5f, 2.0f}, {0.0f, 3.0f}};
    for (int k = 0; k < 2; k++) {
        larch_layer *L = a->layers[k == 0 ? 0 : 2];
        const larch_param *w = &a->params[L->first_param];
        int rows = w->shape[0];
        wq[k] = malloc(w->size);
        sc[k] = malloc((size_t)rows * sizeof(float));
        larch_q8_weights(a->param + w->offset, rows, (int)(w->size / (size_t)rows), wq[k], sc[k]);
        CHECK_OK(larch_q8_set(L, wq[k], sc[k], range[k]));
    }
    CHECK_OK(save(a, ckdir, path, sizeof path));
    for (size_t i = 0; i < b->n_floats; i++) b->param[i] = 0.0f;
    CHECK_OK(larch_ckpt_load(path, &one, b, NULL, NULL));
    for (int k = 0; k < 2; k++) {
        const larch_layer *L = b->layers[k == 0 ? 0 : 2];
        const larch_param *w = &b->params[L->first_param];
        CHECK(L->q && L->q->store == LARCH_QSTORE_INT8, "layer %s is int8 after the load", L->name);
        if (!L->q) continue;
        CHECK(memcmp(L->q->wq, wq[k], w->size) == 0, "%s: int8 weights round trip", L->name);
        CHECK(memcmp(L->q->wscale, sc[k], (size_t)w->shape[0] * sizeof(float)) == 0, "%s: scales round trip", L->name);
        CHECK(L->q->range[0] == range[k][0] && L->q->range[1] == range[k][1], "%s: input range round trip", L->name);
        CHECK(memcmp(b->param + w->offset, a->param + w->offset, w->size * sizeof(float)) == 0, "%s: dequantized weights", L->name);
        CHECK(L->q->int8_active == larch_q8_available(), "%s: int8 kernel attached by the load (when built with oneDNN)", L->name);
    }
    const larch_param *fb = &b->params[b->layers[2]->first_param + 1];
    CHECK(memcmp(b->param + fb->offset, a->param + fb->offset, fb->size * sizeof(float)) == 0, "fc bias (float) round trip");
    if (larch_conv_onednn_built()) {
    float x[4 * 50];
    for (int i = 0; i < 200; i++) x[i] = sym((uint32_t)i);
    larch_batch bt = {.n = 4, .x = x};
    larch_pass p = {.n = 4};
    larch_model_forward(b, &bt, &p);
    CHECK(larch_q8_ran(b) == 2, "both layers ran int8 after the load (%d)", larch_q8_ran(b));
    } else {                                 /* without oneDNN: the float model with the dequantized weights */
        float x[4 * 50];
        for (int i = 0; i < 200; i++) x[i] = sym((uint32_t)i);
        larch_batch bt = {.n = 4, .x = x};
        larch_pass p = {.n = 4};
        larch_model_forward(b, &bt, &p);
        larch_model_forward(a, &bt, &p);
        CHECK(larch_q8_ran(b) == 0 && memcmp(a->node_y[3], b->node_y[3], 12 * sizeof(float)) == 0, "float fallback");
    }
    CHECK_OK(larch_ckpt_verify(path, NULL));
    {
        larch_model *t = net();
        larch_init_map map;
        larch_init_report rep;
        memset(&map, 0, sizeof map);
        memset(&rep, 0, sizeof rep);
        CHECK_FAIL(larch_ckpt_init_from(path, t, &map, &rep), LARCH_ERR_FORMAT, "/quant/conv/weight is int8");
        larch_init_report_free(&rep);
        larch_model_free(t);
    }
    FILE *devnull = fopen("/dev/null", "w");
    CHECK_OK(larch_ckpt_info(path, devnull));
    /* errors naming the tensor */
    static const struct { const char *dset; int mode; larch_status st; const char *needle; } bads[] = {
        {"/quant/fc/weight_scale", 0, LARCH_ERR_FORMAT, "/quant/fc/weight_scale is missing"},
        {"/quant/fc/weight_scale", 1, LARCH_ERR_FORMAT, "/quant/fc/weight_scale holds -1"},
        {"/quant/conv/input_range", 0, LARCH_ERR_FORMAT, "/quant/conv/input_range is missing"},
        {"/quant/fc/weight", 2, LARCH_ERR_FORMAT, "/quant/fc/weight is not int8"},
        {"/quant/nosuch", 3, LARCH_ERR_SHAPE, "/quant/nosuch"},
    };
    for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
        snprintf(bad, sizeof bad, "%s/bad%zu.h5", dir, i);
        char cmd[1600];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, bad);
        CHECK(system(cmd) == 0, "cp");
        h5_edit(bad, bads[i].dset, bads[i].mode);
        larch_model *c = net();
        CHECK_FAIL(larch_ckpt_load(bad, &one, c, NULL, NULL), bads[i].st, bads[i].needle);
        larch_model_free(c);
        unlink(bad);
    }
    /* corrupted bytes in the int8 weights: HDF5's Fletcher32 check */
    {
        snprintf(bad, sizeof bad, "%s/flip.h5", dir);
        char cmd[1600];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", path, bad);
        CHECK(system(cmd) == 0, "cp");
        hid_t f = H5Fopen(bad, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "/quant/fc/weight", H5P_DEFAULT);
        haddr_t off = 0;
        hsize_t at[2] = {0, 0}, size = 0;
        unsigned mask;
        hid_t sp = H5Dget_space(d);
        H5Dget_chunk_info_by_coord(d, at, &mask, &off, &size);
        H5Sclose(sp); H5Dclose(d); H5Fclose(f);
        FILE *fp = fopen(bad, "r+b");
        CHECK(fp && size > 10, "chunk at %llu size %llu", (unsigned long long)off, (unsigned long long)size);
        if (fp) { fseek(fp, (long)off + 5, SEEK_SET); int ch = fgetc(fp); fseek(fp, (long)off + 5, SEEK_SET); fputc(ch ^ 0x5a, fp); fclose(fp); }
        larch_model *c = net();
        CHECK_FAIL(larch_ckpt_load(bad, &one, c, NULL, NULL), LARCH_ERR_FORMAT, "/quant/fc/weight cannot be read");
        CHECK(larch_ckpt_verify(bad, NULL) != LARCH_OK, "verify finds the corruption");
        larch_model_free(c);
        unlink(bad);
    }
    unlink(path);
    /* fp16 and bf16 */
    for (int bf = 0; bf < 2; bf++) {
        for (int k = 0; k < 2; k++) larch_q_get(h->layers[k == 0 ? 0 : 2])->store = bf ? LARCH_QSTORE_BF16 : LARCH_QSTORE_FP16;
        CHECK_OK(save(h, ckdir, path, sizeof path));
        larch_model *c = net();
        for (size_t i = 0; i < c->n_floats; i++) c->param[i] = 0.0f;
        CHECK_OK(larch_ckpt_load(path, &one, c, NULL, NULL));
        for (int i = 0; i < c->n_params; i++) {
            const larch_param *pp = &c->params[i];
            double worst = 0;
            for (size_t j = 0; j < pp->size; j++) {
                float o = h->param[pp->offset + j], g = c->param[pp->offset + j];
                worst = fmax(worst, fabs(o - g) / fmax(fabs(o), 1e-3));
            }
            int weight = pp->role == LARCH_ROLE_WEIGHT;
            CHECK(weight ? worst > 0 && worst <= (bf ? 1.0 / 256 : 1.0 / 2048) : worst == 0, "%s %s: relative error %g",
                  bf ? "bf16" : "fp16", pp->name, worst);
        }
        CHECK(c->layers[0]->q && c->layers[0]->q->store == (bf ? LARCH_QSTORE_BF16 : LARCH_QSTORE_FP16), "the format is kept");
        /* model.init_from reads the 16-bit weights as float */
        larch_model *t = net();
        larch_init_map map;
        larch_init_report rep;
        memset(&map, 0, sizeof map);
        memset(&rep, 0, sizeof rep);
        for (size_t i = 0; i < t->n_floats; i++) t->param[i] = 0.0f;
        CHECK_OK(larch_ckpt_init_from(path, t, &map, &rep));
        CHECK(rep.loaded == t->n_params && rep.fresh == 0, "init_from: %d loaded, %d fresh", rep.loaded, rep.fresh);
        CHECK(memcmp(t->param, c->param, c->n_floats * sizeof(float)) == 0, "init_from = load for 16-bit weights");
        larch_init_report_free(&rep);
        larch_model_free(t);
        CHECK_OK(larch_ckpt_verify(path, NULL));
        larch_model_free(c);
        unlink(path);
    }
    fclose(devnull);
    for (int k = 0; k < 2; k++) { free(wq[k]); free(sc[k]); }
    larch_model_free(a);
    larch_model_free(b);
    larch_model_free(h);
    rmdir(ckdir);
}

/* ---- QAT ---- */

static void test_qat(void)
{
    enum { IN = 12, UNITS = 3, N = 4 };
    larch_model *m = build("[{type: dense, units: 3}]", (larch_shape){1, 1, IN}, N);
    if (!m) return;
    m->want_input_grad = 1;
    CHECK_OK(larch_qat_enable(m, NULL, 0, 0, 1.0f));   /* momentum 1: the range stays as set */
    CHECK_OK(larch_model_plan(m, N));
    for (size_t i = 0; i < m->n_floats; i++) m->param[i] = 0.7f * sym((uint32_t)i + 5u);
    larch_layer *L = m->layers[0];
    L->q->range[0] = -0.5f, L->q->range[1] = 0.6f, L->q->has_range = 1;
    float x[N * IN], c[N * UNITS];
    for (int i = 0; i < N * IN; i++) x[i] = sym((uint32_t)i * 13u);     /* [-1, 1): some outside [-0.5, 0.6] */
    for (int i = 0; i < N * UNITS; i++) c[i] = sym((uint32_t)i + 500u);
    larch_batch b = {.n = N, .x = x};
    larch_pass p = {.n = N, .train = 1, .step = 3};
    larch_model_forward(m, &b, &p);
    memcpy(m->node_dy[1], c, sizeof c);
    larch_model_backward(m, &p);
    const float *W = larch_layer_param(L, 0);
    float Wf[UNITS * IN];
    larch_fq_weights(W, UNITS, IN, Wf);
    int u8;
    float s = larch_q8_act_scale(-0.5f, 0.6f, &u8), clo = -128 * s, chi = 127 * s;
    /* the surrogate loss: sum c * (clip(x) Wf^T + b) */
    int inside = 0, outside = 0;
    for (int i = 0; i < N * IN; i++) {
        int r = i / IN, k = i % IN;
        const double h = 1e-3;
        double fd = 0;
        for (int u = 0; u < UNITS; u++) {
            double xp = fmin(fmax(x[i] + h, clo), chi), xm = fmin(fmax(x[i] - h, clo), chi);
            fd += c[r * UNITS + u] * Wf[u * IN + k] * (xp - xm) / (2 * h);
        }
        int in = x[i] > clo + h && x[i] < chi - h;
        if (x[i] > clo - h && x[i] < clo + h) continue;                   /* at the clip edge: no derivative */
        if (x[i] > chi - h && x[i] < chi + h) continue;
        inside += in, outside += !in;
        CHECK_NEAR(m->node_dy[0][i], fd, 1e-4);
        if (!in) CHECK(m->node_dy[0][i] == 0.0f, "outside the range the gradient is zero (x %g)", x[i]);
    }
    CHECK(inside > 5 && outside > 5, "both cases covered: %d inside, %d outside", inside, outside);
    /* the weight gradient passes straight through: dW = c^T fq(x) */
    float xf[N * IN];
    larch_fq_act(x, N * IN, -0.5f, 0.6f, xf);
    const float *dW = larch_layer_grad(L, 0);
    for (int u = 0; u < UNITS; u++)
        for (int k = 0; k < IN; k++) {
            double ref = 0;
            for (int r = 0; r < N; r++) ref += c[r * UNITS + u] * xf[r * IN + k];
            CHECK_NEAR(dW[u * IN + k], ref, 1e-5);
        }
    /* forward: y = fq(x) fq(W)^T + b */
    for (int r = 0; r < N; r++)
        for (int u = 0; u < UNITS; u++) {
            double ref = larch_layer_param(L, 1)[u];
            for (int k = 0; k < IN; k++) ref += xf[r * IN + k] * Wf[u * IN + k];
            CHECK_NEAR(m->node_y[1][r * UNITS + u], ref, 1e-5);
        }
    /* the moving average, and nothing before start_step */
    L->q->momentum = 0.5f;
    float lo, hi;
    larch_minmax(x, N * IN, &lo, &hi);
    larch_model_forward(m, &b, &p);
    CHECK_NEAR(L->q->range[0], 0.5 * -0.5 + 0.5 * lo, 1e-6);
    CHECK_NEAR(L->q->range[1], 0.5 * 0.6 + 0.5 * hi, 1e-6);
    L->q->start_step = 10;
    float r0 = L->q->range[0];
    larch_model_forward(m, &b, &p);                                       /* step 3 < 10 */
    CHECK(L->q->range[0] == r0, "no update before start_step");
    for (int r = 0; r < N; r++) {
        double ref = larch_layer_param(L, 1)[0];
        for (int k = 0; k < IN; k++) ref += x[r * IN + k] * W[k];
        CHECK_NEAR(m->node_y[1][r * UNITS], ref, 1e-5);
    }
    larch_model_free(m);

    /* conv2d QAT = the float conv on fake-quantized operands, dx masked */
    const char *cv = "[{type: conv2d, filters: 5, kernel: 3, padding: 1, stride: 2}]";
    larch_shape in = {7, 6, 3};
    larch_model *q = build(cv, in, 3), *f = build(cv, in, 3);
    if (!q || !f) return;
    q->want_input_grad = f->want_input_grad = 1;
    CHECK_OK(larch_qat_enable(q, (const char *const[]){q->layers[0]->name}, 1, 0, 1.0f));
    CHECK_FAIL(larch_qat_enable(q, (const char *const[]){"nosuch"}, 1, 0, 1.0f), LARCH_ERR_CONFIG, "no layer 'nosuch'");
    CHECK_OK(larch_model_plan(q, 3));
    CHECK_OK(larch_model_plan(f, 3));
    for (size_t i = 0; i < q->n_floats; i++) q->param[i] = 0.5f * sym((uint32_t)i + 50u);
    q->layers[0]->q->range[0] = -0.4f, q->layers[0]->q->range[1] = 0.5f, q->layers[0]->q->has_range = 1;
    size_t per = larch_shape_size(in), outn = 3 * larch_shape_size(q->layers[0]->out_shape);
    float *cx = malloc(3 * per * sizeof *cx), *cxf = malloc(3 * per * sizeof *cx), *dy = malloc(outn * sizeof *dy);
    for (size_t i = 0; i < 3 * per; i++) cx[i] = sym((uint32_t)i + 900u);
    for (size_t i = 0; i < outn; i++) dy[i] = sym((uint32_t)i + 77u);
    larch_fq_act(cx, 3 * per, -0.4f, 0.5f, cxf);
    larch_fq_weights(q->param, 5, 27, f->param);
    memcpy(f->param + f->params[1].offset, q->param + q->params[1].offset, 5 * sizeof(float));
    larch_batch bq = {.n = 3, .x = cx}, bf_ = {.n = 3, .x = cxf};
    larch_pass pc = {.n = 3, .train = 1};
    larch_model_forward(q, &bq, &pc);
    larch_model_forward(f, &bf_, &pc);
    memcpy(q->node_dy[1], dy, outn * sizeof *dy);
    memcpy(f->node_dy[1], dy, outn * sizeof *dy);
    larch_model_backward(q, &pc);
    larch_model_backward(f, &pc);
    double wy = 0, ww = 0, wx = 0;
    int masked = 0;
    for (size_t i = 0; i < outn; i++) wy = fmax(wy, fabs(q->node_y[1][i] - f->node_y[1][i]));
    for (size_t i = 0; i < 135 + 5; i++) ww = fmax(ww, fabs(q->grad[i] - f->grad[i]));
    float s2 = larch_q8_act_scale(-0.4f, 0.5f, NULL);
    for (size_t i = 0; i < 3 * per; i++) {
        float v = nearbyintf(cx[i] / s2);
        int clipped = v < -128 || v > 127;
        masked += clipped;
        wx = fmax(wx, fabs(q->node_dy[0][i] - (clipped ? 0.0f : f->node_dy[0][i])));
    }
    CHECK(wy < 1e-5 && ww < 1e-4 && wx < 1e-5, "conv QAT vs float on fake-quantized operands: y %g, dW %g, dx %g", wy, ww, wx);
    CHECK(masked > 10, "some inputs clipped (%d)", masked);
    free(cx); free(cxf); free(dy);
    larch_model_free(q);
    larch_model_free(f);
}

/* ---- the methods end to end, and the config section ---- */

static void test_methods(const char *dir)
{
    char cfgpath[600], ck[600], ckpt[700], base[600];
    snprintf(cfgpath, sizeof cfgpath, "%s/run.yaml", dir);
    snprintf(ck, sizeof ck, "%s/src", dir);
    FILE *f = fopen(cfgpath, "w");
    fprintf(f, "train: {batch_size: 32, seed: 3}\n"
               "data: {name: synthetic, synthetic: {n_train: 300, n_test: 64, classes: 3, shape: [6, 6, 2]}}\n"
               "model:\n  - {type: conv2d, name: c1, filters: 4, kernel: 3, padding: 1}\n  - {type: relu, name: r1}\n"
               "  - {type: dense, name: d1, units: 3}\n");
    fclose(f);
    larch_node *cfg = NULL;
    CHECK_OK(larch_run_load(cfgpath, NULL, 0, &cfg));
    if (!cfg) return;
    larch_dataset tr, te;
    CHECK_OK(larch_run_datasets(cfg, &tr, &te));
    larch_shape shape;
    int classes;
    larch_model *m = NULL;
    CHECK_OK(larch_run_input(cfg, &shape, &classes));
    CHECK_OK(larch_model_build(&m, shape, larch_run_layers(cfg), NULL, NULL, 3));
    CHECK_OK(save(m, ck, ckpt, sizeof ckpt));
    larch_compress_src src = {cfg, ckpt, &tr};
    const larch_compress_method *meth;
    larch_node *opts;
    larch_compress_out out;
    CHECK_OK(larch_compress_parse("int8:samples=100,calibration=percentile,percentile=99", &meth, &opts));
    snprintf(base, sizeof base, "%s/i8", dir);
    CHECK_OK(meth->run(&src, opts, base, &out));
    CHECK(strstr(out.summary, "c1 s8[") && strstr(out.summary, "d1 u8[0,"), "summary: %s", out.summary);
    CHECK(!strcmp(larch_cfg_str(larch_map_get(out.cfg, "quantize"), "format"), "int8"), "quantize.format: int8");
    CHECK(!strcmp(larch_cfg_str(larch_map_get(out.cfg, "quantize"), "calibration"), "percentile"), "calibration recorded");
    /* the written model loads and runs int8; training it is refused */
    larch_node *back = NULL;
    larch_model *q = NULL;
    CHECK_OK(larch_run_load(out.config_path, NULL, 0, &back));
    CHECK_OK(larch_model_build(&q, shape, larch_run_layers(back), NULL, NULL, 0));
    CHECK_OK(larch_model_plan(q, 8));
    CHECK_OK(larch_ckpt_load(out.checkpoint, &one, q, NULL, NULL));
    CHECK_FAIL(larch_quant_apply_cfg(back, q, 0), LARCH_ERR_CONFIG, "int8 model runs inference only");
    CHECK_OK(larch_quant_apply_cfg(back, q, 1));
    if (larch_conv_onednn_built()) {
        CHECK(larch_q8_count(q, NULL, 0) == 2, "both layers int8 after the load");
        /* a program that trains the loaded int8 model: refused by larch_fit */
        larch_fit_spec spec;
        CHECK_OK(larch_fit_spec_from_cfg(back, &spec));
        spec.model = q;
        spec.train_set = &tr;
        spec.test_set = &te;
        larch_train_opts to = {0};
        larch_train_result res;
        CHECK_FAIL(larch_fit(&spec, &one, &to, &res), LARCH_ERR_INVALID, "can be evaluated, not trained");
        larch_fit_spec_release(&spec);
    }
    larch_model_free(q);
    larch_node_free(back);
    larch_node_free(out.cfg);
    larch_node_free(opts);
    /* quantizing a quantized checkpoint, option errors */
    char i8ckpt[4096];
    snprintf(i8ckpt, sizeof i8ckpt, "%s", out.checkpoint);
    larch_compress_src src2 = {cfg, i8ckpt, &tr};
    CHECK_OK(larch_compress_parse("int8", &meth, &opts));
    CHECK_FAIL(meth->run(&src2, opts, base, &out), LARCH_ERR_INVALID, "already quantized");
    larch_node_free(opts);
    CHECK_OK(larch_compress_parse("int8:calibration=qat", &meth, &opts));
    CHECK_FAIL(meth->run(&src, opts, base, &out), LARCH_ERR_INVALID, "no learned input range for layer 'c1'");
    larch_node_free(opts);
    CHECK_OK(larch_compress_parse("int8:layers=[nosuch]", &meth, &opts));
    CHECK_FAIL(meth->run(&src, opts, base, &out), LARCH_ERR_INVALID, "no layer 'nosuch'");
    larch_node_free(opts);
    CHECK_OK(larch_compress_parse("fp16:layers=[r1]", &meth, &opts));
    CHECK_FAIL(meth->run(&src, opts, base, &out), LARCH_ERR_INVALID, "only dense and conv2d");
    larch_node_free(opts);
    CHECK_FAIL(larch_compress_parse("int8:calibration=median", &meth, &opts), LARCH_ERR_CONFIG, "calibration");
    CHECK_FAIL(larch_compress_parse("int8:bogus=1", &meth, &opts), LARCH_ERR_CONFIG, "bogus");
    /* bf16 of one layer */
    CHECK_OK(larch_compress_parse("bf16:layers=[d1]", &meth, &opts));
    snprintf(base, sizeof base, "%s/b16", dir);
    CHECK_OK(meth->run(&src, opts, base, &out));
    larch_model *h = NULL;
    CHECK_OK(larch_model_build(&h, shape, larch_run_layers(cfg), NULL, NULL, 0));
    CHECK_OK(larch_ckpt_load(out.checkpoint, &one, h, NULL, NULL));
    CHECK(h->layers[0]->q == NULL && h->layers[2]->q && h->layers[2]->q->store == LARCH_QSTORE_BF16, "only d1 in bf16");
    larch_model_free(h);
    larch_node_free(out.cfg);
    larch_node_free(opts);
    /* the config: qat and int8 exclude each other */
    CHECK_OK(larch_cfg_set(cfg, "quantize.qat=true"));
    CHECK_OK(larch_cfg_set(cfg, "quantize.format=fp16"));
    CHECK_FAIL(larch_quant_apply_cfg(cfg, m, 0), LARCH_ERR_CONFIG, "quantize.format must be none");
    larch_model_free(m);
    larch_node_free(cfg);
    larch_dataset_free(&tr);
    larch_dataset_free(&te);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'/src '%s'/i8.* '%s'/b16.* '%s'/run.yaml", dir, dir, dir, dir);
    CHECK(system(cmd) == 0, "cleanup");
}

int main(void)
{
    char dir[] = "/tmp/larch_quant_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    test_math();
    test_kernels();
    test_checkpoints(dir);
    test_qat();
    test_methods(dir);
    rmdir(dir);
    return check_result("test_quant");
}
