/* quant.c - quantization math, the layer state of int8 inference and of
 * quantization-aware training, and the hooks dense.c and convolution.c call
 * (see quant.h; docs/compression/quantization.md). */
#include "nn/quant.h"
#include "nn/layers.h"
#include "core/threads.h"
#include "core/dispatch.h"
#ifdef LARCH_HAVE_DNNL
#include "nn/int8_onednn.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QAT_MAX_RANKS 4096

/* ---- math ---- */

float larch_q8_act_scale(float lo, float hi, int *u8)
{
    int u = lo >= 0.0f;
    float amax = u ? hi : fmaxf(fabsf(lo), fabsf(hi));
    if (u8) *u8 = u;
    float s = amax / (u ? 255.0f : 127.0f);
    return s > 0.0f && isfinite(s) ? s : 1.0f;
}

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

void larch_q8_weights(const float *W, int rows, int cols, int8_t *q, float *scale)
{
    for (int r = 0; r < rows; r++) {
        const float *w = W + (size_t)r * cols;
        float amax = 0.0f;
        for (int c = 0; c < cols; c++) amax = fmaxf(amax, fabsf(w[c]));
        float s = amax > 0.0f ? amax / 127.0f : 1.0f, inv = 1.0f / s;
        scale[r] = s;
        for (int c = 0; c < cols; c++) q[(size_t)r * cols + c] = (int8_t)clampf(nearbyintf(w[c] * inv), -127.0f, 127.0f);
    }
}

void larch_q8_dequant(const int8_t *q, int rows, int cols, const float *scale, float *W)
{
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) W[(size_t)r * cols + c] = (float)q[(size_t)r * cols + c] * scale[r];
}

void larch_fq_weights(const float *W, int rows, int cols, float *out)
{
    for (int r = 0; r < rows; r++) {
        const float *w = W + (size_t)r * cols;
        float amax = 0.0f;
        for (int c = 0; c < cols; c++) amax = fmaxf(amax, fabsf(w[c]));
        float s = amax > 0.0f ? amax / 127.0f : 1.0f, inv = 1.0f / s;
        for (int c = 0; c < cols; c++) out[(size_t)r * cols + c] = clampf(nearbyintf(w[c] * inv), -127.0f, 127.0f) * s;
    }
}

typedef struct { const float *x; float inv, s, qlo, qhi; void *out; int mode; } act_job;  /* mode 0 s8, 1 u8, 2 fake */

static LARCH_HOT void act_range(void *ctx, size_t lo, size_t hi)
{
    const act_job *j = ctx;
    const float *restrict x = j->x;
    if (j->mode == 1) {
        uint8_t *restrict o = j->out;
        for (size_t i = lo; i < hi; i++) o[i] = (uint8_t)clampf(nearbyintf(x[i] * j->inv), 0.0f, 255.0f);
    } else if (j->mode == 0) {
        int8_t *restrict o = j->out;
        for (size_t i = lo; i < hi; i++) o[i] = (int8_t)clampf(nearbyintf(x[i] * j->inv), -128.0f, 127.0f);
    } else {
        float *restrict o = j->out;
        for (size_t i = lo; i < hi; i++) o[i] = clampf(nearbyintf(x[i] * j->inv), j->qlo, j->qhi) * j->s;
    }
}

void larch_q8_act(const float *x, size_t n, float scale, int u8, void *out)
{
    act_job j = {x, 1.0f / scale, scale, 0, 0, out, u8 ? 1 : 0};
    larch_parallel_for(n, 1 << 15, act_range, &j);
}

void larch_fq_act(const float *x, size_t n, float lo, float hi, float *out)
{
    int u8;
    float s = larch_q8_act_scale(lo, hi, &u8);
    act_job j = {x, 1.0f / s, s, u8 ? 0.0f : -128.0f, u8 ? 255.0f : 127.0f, out, 2};
    larch_parallel_for(n, 1 << 15, act_range, &j);
}

void larch_minmax(const float *x, size_t n, float *lo, float *hi)
{
    float a = n ? x[0] : 0.0f, b = a;
    for (size_t i = 1; i < n; i++) {
        a = fminf(a, x[i]);
        b = fmaxf(b, x[i]);
    }
    *lo = a;
    *hi = b;
}

/* ---- layer state ---- */

int larch_q_layer_ok(const larch_layer *L, int *rows, int *cols)
{
    if (L->ops != &larch_dense_ops && L->ops != &larch_conv2d_ops) return 0;
    const larch_param *w = &L->model->params[L->first_param];
    int r = w->shape[0];
    if (rows) *rows = r;
    if (cols) *cols = (int)(w->size / (size_t)r);
    return 1;
}

struct larch_qlayer *larch_q_get(larch_layer *L)
{
    if (!L->q) {
        L->q = calloc(1, sizeof *L->q);
        if (L->q) larch_q_layer_ok(L, &L->q->rows, &L->q->cols);
    }
    return L->q;
}

static void kernel_free(struct larch_qlayer *q)
{
#ifdef LARCH_HAVE_DNNL
    larch_i8_free(q->kernel);
#endif
    q->kernel = NULL;
}

void larch_q_free(larch_layer *L)
{
    if (!L->q) return;
    kernel_free(L->q);
    free(L->q->wq);
    free(L->q->wscale);
    free(L->q->wfq);
    free(L->q);
    L->q = NULL;
}

#ifdef LARCH_HAVE_DNNL
/* The one layer that reads L's output, when nothing else (no loss) does. */
static larch_layer *only_reader(const larch_layer *L)
{
    const larch_model *m = L->model;
    int node = L->index + 1, n = 0;
    larch_layer *r = NULL;
    for (int i = 0; i < m->n_layers; i++)
        for (int k = 0; k < m->layers[i]->n_in; k++)
            if (m->layers[i]->in_node[k] == node) { r = m->layers[i]; n++; }
    for (int i = 0; i < m->n_losses; i++) n += m->losses[i].node == node;
    return n == 1 ? r : NULL;
}
#endif

static larch_status replan(larch_model *m) { return m->arena ? larch_model_plan(m, m->max_batch) : LARCH_OK; }

larch_status larch_q8_set(larch_layer *L, const int8_t *wq, const float *scale, const float *range)
{
    int rows, cols;
    if (!larch_q_layer_ok(L, &rows, &cols))
        return LARCH_LAYER_FAIL(L, LARCH_ERR_INVALID, "%s", "only dense and conv2d layers are quantized to int8");
    struct larch_qlayer *q = larch_q_get(L);
    if (!q) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    free(q->wq);
    free(q->wscale);
    kernel_free(q);
    q->int8_active = 0;
    q->fold = NULL;
    q->wq = malloc((size_t)rows * cols);
    q->wscale = malloc((size_t)rows * sizeof(float));
    if (!q->wq || !q->wscale) return larch_fail(LARCH_ERR_NOMEM, "layer '%s': out of memory for int8 weights", L->name);
    memcpy(q->wq, wq, (size_t)rows * cols);
    memcpy(q->wscale, scale, (size_t)rows * sizeof(float));
    q->range[0] = range[0];
    q->range[1] = range[1];
    q->has_range = 1;
    q->store = LARCH_QSTORE_INT8;
    larch_q8_dequant(wq, rows, cols, scale, larch_layer_param(L, 0));
    return LARCH_OK;
}

int larch_q8_available(void)
{
#ifdef LARCH_HAVE_DNNL
    return 1;
#else
    return 0;
#endif
}

larch_status larch_q8_attach(larch_layer *L, const int8_t *wq, const float *scale, const float *range)
{
    larch_status s = larch_q8_set(L, wq, scale, range);
    if (s) return s;
    struct larch_qlayer *q = L->q;
    const int rows = q->rows;
#ifdef LARCH_HAVE_DNNL
    int u8;
    float xs = larch_q8_act_scale(range[0], range[1], &u8);
    float *os = malloc((size_t)rows * sizeof(float));
    if (!os) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    for (int r = 0; r < rows; r++) os[r] = xs * scale[r];
    larch_i8_geom g = {0};
    larch_shape in = L->in_shape[0];
    if (L->ops == &larch_conv2d_ops) {
        g.conv = 1;
        g.h = in.h, g.w = in.w, g.cin = in.c, g.cout = rows;
        larch_conv_geom(L, &g.k, &g.stride, &g.pad);
        g.oh = L->out_shape.h, g.ow = L->out_shape.w;
    } else {
        g.cin = q->cols, g.cout = rows;
    }
    const float *bias = L->n_param > 1 ? larch_layer_param(L, 1) : NULL;
    larch_layer *bn = g.conv ? only_reader(L) : NULL;
    float *fb = NULL, *fa = NULL;
    int relu = 0;
    if (bn && bn->ops == &larch_batchnorm_ops && bn->n_in == 1 && (fa = malloc((size_t)rows * sizeof *fa)) &&
        (fb = malloc((size_t)rows * sizeof *fb)) && larch_q_get(bn)) {
        /* y = a (scale acc + bias) + b = (a scale) acc + (a bias + b) */
        larch_batchnorm_eval_affine(bn, fa, fb);
        for (int r = 0; r < rows; r++) {
            fb[r] += fa[r] * (bias ? bias[r] : 0.0f);
            os[r] *= fa[r];
            if (os[r] == 0.0f) os[r] = 1e-30f;   /* a channel the batchnorm zeroes: bias alone */
        }
        bias = fb;
        larch_layer *r = only_reader(bn);
        relu = r && r->ops == &larch_relu_ops;   /* max(y, 0) twice is once: also when the relu runs itself */
        q->fold = bn;
    } else {
        bn = NULL;
    }
    q->kernel = larch_i8_create(&g, wq, os, bias, u8, relu);
    free(os);
    free(fa);
    free(fb);
    if (!q->kernel) return LARCH_LAYER_FAIL(L, LARCH_ERR_NOMEM, "%s", "oneDNN's int8 kernel could not be created (no CPU engine or no memory)");
    if (larch_i8_prepare(q->kernel, 1, NULL))
        return LARCH_LAYER_FAIL(L, LARCH_ERR_INVALID, "%s", "oneDNN has no int8 implementation of this layer's shape");
    q->int8_active = 1;
    return replan(L->model);
#else
    (void)rows;
    return LARCH_LAYER_FAIL(L, LARCH_ERR_INVALID, "%s", "int8 inference needs oneDNN, and this larch was built without it "
                            "(LARCH_ONEDNN=OFF or libdnnl not found); evaluate the float model instead");
#endif
}

int larch_q8_count(const larch_model *m, char *kernels, size_t len)
{
    int k = 0;
    if (kernels && len) kernels[0] = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const larch_layer *L = m->layers[i];
        if (!L->q || !L->q->int8_active) continue;
#ifdef LARCH_HAVE_DNNL
        if (!k && kernels) snprintf(kernels, len, "onednn int8 (%s)", larch_i8_impl(L->q->kernel, m->max_batch));
#endif
        k++;
    }
    return k;
}

int larch_q8_ran(const larch_model *m)
{
    int k = 0;
    for (int i = 0; i < m->n_layers; i++) k += m->layers[i]->q && m->layers[i]->q->last_int8;
    return k;
}

larch_status larch_qat_enable(larch_model *m, const char *const *layers, int n_layers, long start_step, float momentum)
{
    for (int k = 0; k < n_layers; k++) {
        int i = larch_model_node(m, layers[k]) - 1;
        if (i < 0) return larch_fail(LARCH_ERR_CONFIG, "quantize.layers: the model has no layer '%s'", layers[k]);
        if (!larch_q_layer_ok(m->layers[i], NULL, NULL))
            return larch_fail(LARCH_ERR_CONFIG, "quantize.layers: layer '%s' is a %s layer; only dense and conv2d layers are "
                              "quantized", layers[k], m->layers[i]->ops->type);
    }
    for (int i = 0; i < m->n_layers; i++) {
        larch_layer *L = m->layers[i];
        if (!larch_q_layer_ok(L, NULL, NULL)) continue;
        int on = n_layers == 0;
        for (int k = 0; k < n_layers; k++) on |= !strcmp(layers[k], L->name);
        if (!on) continue;
        struct larch_qlayer *q = larch_q_get(L);
        if (!q || (!q->wfq && !(q->wfq = malloc((size_t)q->rows * q->cols * sizeof(float)))))
            return larch_fail(LARCH_ERR_NOMEM, "out of memory enabling quantization-aware training");
        q->qat = 1;
        q->start_step = start_step;
        q->momentum = momentum;
    }
    return replan(m);
}

/* ---- hooks ---- */

static size_t in_size(const larch_layer *L) { return larch_shape_size(L->in_shape[0]); }
#ifdef LARCH_HAVE_DNNL
static size_t round64(size_t b) { return (b + 63) / 64 * 64; }
#endif

size_t larch_q_scratch(const larch_layer *L, int n)
{
    struct larch_qlayer *q = L->q;
    if (!q || !q->int8_active) return 0;
    size_t need = 0;
#ifdef LARCH_HAVE_DNNL
    size_t sp;
    if (!larch_i8_prepare(q->kernel, n, &sp)) need = (round64((size_t)n * in_size(L)) + sp) / sizeof(float);
#endif
    q->scratch_cap = need;
    return need;
}

size_t larch_q_saved(const larch_layer *L, int n)
{
    return L->q && L->q->qat ? (size_t)n * in_size(L) : 0;
}

int larch_q_forward_int8(larch_layer *L, const larch_pass *p)
{
    struct larch_qlayer *q = L->q;
    q->last_int8 = 0;
    if (!q->int8_active || p->train || p->n == 0) return 0;
#ifdef LARCH_HAVE_DNNL
    size_t sp, xb = round64((size_t)p->n * in_size(L));
    if (!larch_i8_prepare(q->kernel, p->n, &sp) && (xb + sp) / sizeof(float) <= q->scratch_cap) {
        int u8;
        float xs = larch_q8_act_scale(q->range[0], q->range[1], &u8);
        larch_q8_act(L->x[0], (size_t)p->n * in_size(L), xs, u8, L->scratch);
        if (!larch_i8_forward(q->kernel, p->n, L->scratch, q->fold ? q->fold->y : L->y, (char *)L->scratch + xb)) {
            q->last_int8 = 1;
            if (q->fold) q->fold->q->fold_wrote = 1;
            return 1;
        }
    }
#endif
    if (!q->warned) {
        q->warned = 1;
        fprintf(stderr, "larch: warning: layer '%s': the int8 product of batch %d could not run; computing it in float "
                "from the dequantized weights\n", L->name, p->n);
    }
    return 0;
}

int larch_q_folded(larch_layer *L, const larch_pass *p)
{
    int wrote = L->q->fold_wrote && !p->train;
    L->q->fold_wrote = 0;
    return wrote;
}

/* The global batch's range: min and max over every rank's (identical on all ranks). */
static void global_range(struct larch_qlayer *q, const larch_pass *p, float *lo, float *hi)
{
    (void)q;
    const larch_comm_hooks *c = p->comm;
    if (!c || !c->allgather || c->ranks < 2) return;
    static float recv[2 * QAT_MAX_RANKS];   /* one pass at a time: the passes of a process are sequential */
    float send[2] = {*lo, *hi};
    if (c->ranks > QAT_MAX_RANKS) return;
    c->allgather(c->ctx, send, sizeof send, recv);
    for (int r = 0; r < c->ranks; r++) {
        *lo = fminf(*lo, recv[2 * r]);
        *hi = fmaxf(*hi, recv[2 * r + 1]);
    }
}

void larch_q_operands(larch_layer *L, const larch_pass *p, int forward, const float **x, const float **W)
{
    struct larch_qlayer *q = L->q;
    if (!q || !q->qat) return;
    if (forward) {
        q->fq_on = 0;
        size_t n = (size_t)p->n * in_size(L);
        if (p->train && (long)p->step >= q->start_step) {
            float lo, hi;
            larch_minmax(*x, n, &lo, &hi);
            if (n == 0) lo = q->range[0], hi = q->range[1];
            global_range(q, p, &lo, &hi);
            if (!q->has_range) {
                q->range[0] = lo;
                q->range[1] = hi;
                q->has_range = 1;
            } else {
                q->range[0] = q->momentum * q->range[0] + (1.0f - q->momentum) * lo;
                q->range[1] = q->momentum * q->range[1] + (1.0f - q->momentum) * hi;
            }
        }
        if (!q->has_range || (p->train && (long)p->step < q->start_step)) return;
        q->fq_on = 1;
        q->clip[0] = q->range[0];
        q->clip[1] = q->range[1];
        larch_fq_act(*x, n, q->clip[0], q->clip[1], L->saved);
        larch_fq_weights(*W, q->rows, q->cols, q->wfq);
    }
    if (!q->fq_on) return;
    *x = L->saved;
    *W = q->wfq;
}

void larch_q_ste_mask(larch_layer *L, int n, float *dx, int dx_acc)
{
    struct larch_qlayer *q = L->q;
    if (!q || !q->qat || !q->fq_on || dx_acc) return;
    int u8;
    float s = larch_q8_act_scale(q->clip[0], q->clip[1], &u8), inv = 1.0f / s;
    const float qlo = u8 ? 0.0f : -128.0f, qhi = u8 ? 255.0f : 127.0f;
    const float *x = L->x[0];
    size_t total = (size_t)n * in_size(L);
    for (size_t i = 0; i < total; i++) {
        float v = nearbyintf(x[i] * inv);
        if (v < qlo || v > qhi) dx[i] = 0.0f;
    }
}
