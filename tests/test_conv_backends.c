/* test_conv_backends.c - the two conv2d backends agree: oneDNN's primitives
 * (when this larch is built with oneDNN) against im2col + OpenBLAS on the
 * output, the input gradient, the weight and bias gradients, for kernels
 * 1/3/7, strides 1/2, padding 0/1, 1/3/16 input channels, with and without
 * bias; in a model where two convolutions read the same input (so one of
 * them accumulates into dx) and over two passes (the second accumulating
 * parameter gradients, which must double them); over batch sizes 5, 1, 3, 5
 * on one model planned for 7 (primitives made per batch size and reused);
 * with and without an input gradient. Also the backend setting itself:
 * names, parse errors, and 'onednn' in a build without oneDNN. */
#include "check.h"
#include "larch/larch.h"
#include "nn/layers.h"
#include "nn/model_internal.h"

#include <stdlib.h>

static uint32_t hash(uint32_t i) { i ^= i >> 16; i *= 0x7feb352dU; i ^= i >> 15; i *= 0x846ca68bU; i ^= i >> 16; return i; }
static float sym(uint32_t i) { return (float)(hash(i) >> 8) / 8388608.0f - 1.0f; }          /* [-1, 1) */

#define MAX_BATCH 7

typedef struct {
    float *y[4], *dx[4], *g1[4], *g2[4];   /* per batch of the sequence */
    int onednn_layers;                     /* conv layers that ran oneDNN in the last pass */
} result;

static const int batches[4] = {5, 1, 3, 5};

static void result_free(result *r)
{
    for (int i = 0; i < 4; i++) { free(r->y[i]); free(r->dx[i]); free(r->g1[i]); free(r->g2[i]); }
}

static float *copy(const float *src, size_t n)
{
    float *d = malloc((n ? n : 1) * sizeof *d);
    if (d && n) memcpy(d, src, n * sizeof *d);
    return d;
}

/* Builds the model under backend b, runs the batch sequence, keeps what
 * each pass computed. Returns 0 on failure (recorded as a check). */
static int run(const char *yaml, larch_shape in, int input_grad, larch_conv_backend b, result *r, larch_model **keep)
{
    memset(r, 0, sizeof *r);
    CHECK_OK(larch_set_conv_backend(b));
    larch_node *layers = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse(yaml, "<test>", &layers));
    if (layers) CHECK_OK(larch_model_build(&m, in, layers, NULL, NULL, 11));
    larch_node_free(layers);
    if (!m) return 0;
    m->want_input_grad = input_grad;
    larch_status s = larch_model_plan(m, MAX_BATCH);
    CHECK(s == LARCH_OK, "plan: %s", larch_errmsg());
    if (s) { larch_model_free(m); return 0; }
    for (size_t i = 0; i < m->n_floats; i++) m->param[i] = 0.5f * sym((uint32_t)i + 1000u);   /* biases too */
    const size_t xper = larch_shape_size(in), yper = larch_shape_size(m->layers[m->n_layers - 1]->out_shape);
    float *x = malloc((size_t)MAX_BATCH * xper * sizeof *x);
    for (size_t i = 0; i < (size_t)MAX_BATCH * xper; i++) x[i] = sym((uint32_t)i);
    for (int k = 0; k < 4; k++) {
        int n = batches[k];
        larch_batch bt = {.n = n, .x = x};
        for (int pass = 0; pass < 2; pass++) {
            larch_pass p = {.n = n, .train = 1, .acc_grad = pass};
            larch_model_forward(m, &bt, &p);
            for (size_t i = 0; i < (size_t)n * yper; i++) m->node_dy[m->n_layers][i] = sym((uint32_t)i * 3u + 77u);
            larch_model_backward(m, &p);
            if (pass == 0) {
                r->y[k] = copy(m->node_y[m->n_layers], (size_t)n * yper);
                r->dx[k] = input_grad ? copy(m->node_dy[0], (size_t)n * xper) : NULL;
                r->g1[k] = copy(m->grad, m->n_floats);
            } else {
                r->g2[k] = copy(m->grad, m->n_floats);
            }
        }
    }
    r->onednn_layers = larch_conv_onednn_count(m, NULL);
    free(x);
    *keep = m;
    return 1;
}

/* max |a - b| <= tol * (1 + max |b|) */
static int close(const float *a, const float *b, size_t n, double tol, double *worst)
{
    double d = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mag = fmax(mag, fabs((double)b[i]));
    }
    *worst = d / (1 + mag);
    return d <= tol * (1 + mag);
}

static void agree(int cin, int k, int stride, int pad, int bias, int input_grad)
{
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "[{type: conv2d, name: a, filters: 5, kernel: %d, stride: %d, padding: %d, bias: %s},"
             " {type: conv2d, name: b, input: input, filters: 5, kernel: %d, stride: %d, padding: %d, bias: %s},"
             " {type: add, inputs: [a, b]}]",
             k, stride, pad, bias ? "true" : "false", k, stride, pad, bias ? "true" : "false");
    larch_shape in = {9, 8, cin};
    result ref, got;
    larch_model *m1 = NULL, *m2 = NULL;
    if (!run(yaml, in, input_grad, LARCH_CONV_OPENBLAS, &ref, &m1)) return;
    CHECK(ref.onednn_layers == 0, "%s: openblas ran oneDNN in %d layers", yaml, ref.onednn_layers);
    const size_t yper = larch_shape_size(m1->layers[m1->n_layers - 1]->out_shape), xper = larch_shape_size(in);
    const double tol = 2e-6 * k * k * cin + 1e-6;   /* float rounding of sums of k*k*cin (and n*oh*ow) products */
    double w;
    for (int i = 0; i < 4; i++) {                   /* accumulation: the second pass doubles the parameter gradients */
        int ok = 1;
        for (size_t j = 0; j < m1->n_floats && ok; j++) ok = fabs(ref.g2[i][j] - 2.0 * ref.g1[i][j]) <= 1e-5 * (1 + fabs(ref.g1[i][j]));
        CHECK(ok, "%s: openblas: accumulated gradients are not twice the first (batch %d)", yaml, batches[i]);
    }
    if (larch_conv_onednn_built() && run(yaml, in, input_grad, LARCH_CONV_ONEDNN, &got, &m2)) {
        CHECK(got.onednn_layers == 2, "%s: oneDNN ran in %d of 2 layers", yaml, got.onednn_layers);
        for (int i = 0; i < 4; i++) {
            int n = batches[i];
            CHECK(close(got.y[i], ref.y[i], (size_t)n * yper, tol, &w), "%s batch %d: outputs differ (%.3g)", yaml, n, w);
            if (input_grad)
                CHECK(close(got.dx[i], ref.dx[i], (size_t)n * xper, tol, &w), "%s batch %d: dx differ (%.3g)", yaml, n, w);
            CHECK(close(got.g1[i], ref.g1[i], m1->n_floats, tol, &w), "%s batch %d: dW/db differ (%.3g)", yaml, n, w);
            CHECK(close(got.g2[i], ref.g2[i], m1->n_floats, tol, &w), "%s batch %d: accumulated dW/db differ (%.3g)", yaml, n, w);
        }
        result_free(&got);
        larch_model_free(m2);
    }
    result_free(&ref);
    larch_model_free(m1);
}

static void setting(void)
{
    larch_conv_backend b;
    CHECK_OK(larch_conv_backend_parse("openblas", &b));
    CHECK(b == LARCH_CONV_OPENBLAS, "parse openblas -> %d", (int)b);
    CHECK_OK(larch_conv_backend_parse("auto", &b));
    CHECK(b == LARCH_CONV_AUTO, "parse auto -> %d", (int)b);
    CHECK_FAIL(larch_conv_backend_parse("mkl", &b), LARCH_ERR_INVALID, "'mkl' is not one of auto, onednn, openblas");
    CHECK_FAIL(larch_set_conv_backend((larch_conv_backend)7), LARCH_ERR_INVALID, "7 is not one of");
    CHECK(!strcmp(larch_conv_backend_name(LARCH_CONV_ONEDNN), "onednn"), "name of ONEDNN");
    if (larch_conv_onednn_built()) {
        CHECK_OK(larch_set_conv_backend(LARCH_CONV_ONEDNN));
        CHECK(larch_get_conv_backend() == LARCH_CONV_ONEDNN, "get after set");
    } else {
        CHECK_FAIL(larch_set_conv_backend(LARCH_CONV_ONEDNN), LARCH_ERR_INVALID, "built without oneDNN");
    }
    CHECK_OK(larch_set_conv_backend(LARCH_CONV_AUTO));
}

int main(void)
{
    if (getenv("LARCH_CONV_BACKEND")) unsetenv("LARCH_CONV_BACKEND");   /* the test sets the backend itself */
    setting();
    static const int cins[] = {1, 3, 16}, ks[] = {1, 3, 7};
    int idx = 0;
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 3; k++)
            for (int stride = 1; stride <= 2; stride++)
                for (int pad = 0; pad <= 1; pad++, idx++)
                    agree(cins[c], ks[k], stride, pad, idx % 2, idx % 5 != 4);
    CHECK_OK(larch_set_conv_backend(LARCH_CONV_AUTO));
    return check_result("test_conv_backends");
}
