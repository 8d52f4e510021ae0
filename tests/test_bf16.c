/* test_bf16.c - bf16 compute (larch_model_set_precision, core/gemm_bf16.c):
 *   - the bf16 GEMM equals a double-precision product of the bf16-rounded
 *     operands (to float summation error) for every transpose, alpha, beta
 *     and padded leading dimensions, and differs from the float GEMM (the
 *     rounding really happens);
 *   - a conv + dense model in bf16 gives outputs and gradients close to
 *     float (relative 3e-2) but not equal; parameters stay float;
 *   - switching back to fp32 gives the float results bit for bit;
 *   - conv2d on oneDNN's bf16 convolution primitives (conv_onednn.c) gives
 *     the output, input gradient and weight/bias gradients of im2col + the
 *     bf16 GEMM (both round x, W and dy to bf16 and sum in float: they agree
 *     to float summation error), close to but not equal to float, for
 *     kernels 1/3/5, strides 1/2, padding 0/1/2, 1/3/16 input channels, with
 *     and without bias; two convolutions read one input (the second adds
 *     into dx), a second pass accumulates parameter gradients (acc_grad:
 *     exactly twice the first), batches 5, 1, 3, 5 on one plan of 7; the
 *     precision is set after the plan (set_precision plans again, and the
 *     layers then run oneDNN);
 *   - an invalid precision fails naming it.
 * Where this build or CPU has no fast bf16 matmul, the test says why and
 * is skipped (exit 77). */
#include "check.h"
#include "core/blas.h"
#include "core/gemm_bf16.h"
#include "core/half.h"
#include "larch/larch.h"
#include "nn/layers.h"
#include "nn/model_internal.h"

#include <stdint.h>
#include <stdlib.h>

static float urand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f + 1e-3f;   /* (-1, 1), rarely bf16-exact */
}

static float round_bf16(float x)
{
    uint16_t h;
    float y;
    larch_f32_to_bf16(&x, &h, 1);
    larch_bf16_to_f32(&h, &y, 1);
    return y;
}

static void check_gemm(int ta, int tb, int m, int n, int k, float alpha, float beta, int pad)
{
    uint32_t seed = (uint32_t)(m * 131 + n * 17 + k + ta * 7 + tb * 3 + pad);
    int ra = ta ? k : m, ca = ta ? m : k, rb = tb ? n : k, cb = tb ? k : n;
    int lda = ca + pad, ldb = cb + pad, ldc = n + pad;
    float *a = malloc(sizeof *a * (size_t)ra * lda), *b = malloc(sizeof *b * (size_t)rb * ldb);
    float *c = malloc(sizeof *c * (size_t)m * ldc), *c0 = malloc(sizeof *c0 * (size_t)m * ldc);
    float *cf = malloc(sizeof *cf * (size_t)m * ldc);
    for (int i = 0; i < ra * lda; i++) a[i] = urand(&seed);
    for (int i = 0; i < rb * ldb; i++) b[i] = urand(&seed);
    for (int i = 0; i < m * ldc; i++) c[i] = c0[i] = cf[i] = urand(&seed);
    CHECK_OK(larch_gemm_bf16(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc));
    larch_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, cf, ldc);
    double worst = 0, fdiff = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0, mag = 0;
            for (int p = 0; p < k; p++) {
                float av = ta ? a[p * lda + i] : a[i * lda + p], bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                acc += (double)round_bf16(av) * round_bf16(bv);
                mag += fabs((double)av * bv);
            }
            double want = alpha * acc + (beta != 0.0f ? beta * (double)c0[i * ldc + j] : 0.0);
            double err = fabs(c[i * ldc + j] - want) / (fabs(alpha) * mag + fabs(beta * c0[i * ldc + j]) + 1e-30);
            if (err > worst) worst = err;
            fdiff += fabs(c[i * ldc + j] - cf[i * ldc + j]);
        }
    CHECK(worst < 2e-6, "ta %d tb %d %dx%dx%d alpha %g beta %g pad %d: relative error %.3g against the bf16 reference",
          ta, tb, m, n, k, alpha, beta, pad, worst);
    CHECK(fdiff > 0, "ta %d tb %d %dx%dx%d: bf16 result equals the float GEMM: no rounding happened", ta, tb, m, n, k);
    for (int i = 0; i < m; i++)                          /* the padding of C is left alone */
        for (int j = n; j < ldc; j++) CHECK(c[i * ldc + j] == c0[i * ldc + j], "C padding written at (%d, %d)", i, j);
    free(a), free(b), free(c), free(c0), free(cf);
}

/* A small conv + batch norm + dense model; returns it planned for n. */
static larch_model *small_model(int n)
{
    larch_model *m = NULL;
    CHECK_OK(larch_model_create(&m, (larch_shape){9, 9, 3}));
    larch_conv2d_opts c = LARCH_CONV2D_DEFAULTS;
    c.filters = 8, c.kernel = 3, c.padding = 1;
    CHECK_OK(larch_model_add_conv2d(m, "conv", NULL, &c));
    CHECK_OK(larch_model_add_relu(m, "relu", NULL));
    larch_dense_opts d = LARCH_DENSE_DEFAULTS;
    d.units = 5;
    CHECK_OK(larch_model_add_dense(m, "fc", NULL, &d));
    CHECK_OK(larch_model_finalize(m));
    larch_model_init(m, 3);
    CHECK_OK(larch_model_plan(m, n));
    return m;
}

/* Forward, loss and backward; copies the output and the gradients. */
static void run(larch_model *m, const larch_batch *b, float *out, float *grad)
{
    larch_pass p = {.n = b->n, .train = 1, .seed = 1};
    larch_model_forward(m, b, &p);
    larch_model_loss(m, b, 1.0f / (float)b->n, NULL);
    larch_model_backward(m, &p);
    int last = larch_model_n_layers(m);
    memcpy(out, larch_model_node_output(m, last), sizeof *out * (size_t)b->n * 5);
    memcpy(grad, m->grad, sizeof *grad * m->n_floats);
}

static double rel_diff(const float *a, const float *b, size_t n, int *equal)
{
    double num = 0, den = 0;
    *equal = 1;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
        if (a[i] != b[i]) *equal = 0;
    }
    return sqrt(num / (den + 1e-30));
}

/* ---- conv2d on oneDNN's bf16 primitives ---- */

static uint32_t hash(uint32_t i) { i ^= i >> 16; i *= 0x7feb352dU; i ^= i >> 15; i *= 0x846ca68bU; i ^= i >> 16; return i; }
static float sym(uint32_t i) { return (float)(hash(i) >> 8) / 8388608.0f - 1.0f + 1e-3f; }   /* [-1, 1), rarely bf16-exact */

#define MAX_BATCH 7
static const int batches[4] = {5, 1, 3, 5};

typedef struct {
    float *y[4], *dx[4], *g1[4], *g2[4];   /* per batch of the sequence */
    int onednn_layers;                     /* conv layers that ran oneDNN in the last pass */
    size_t yper, xper, n_floats;
} conv_result;

static void conv_result_free(conv_result *r)
{
    for (int i = 0; i < 4; i++) { free(r->y[i]); free(r->dx[i]); free(r->g1[i]); free(r->g2[i]); }
}

static float *copy(const float *src, size_t n)
{
    float *d = malloc((n ? n : 1) * sizeof *d);
    if (d && n) memcpy(d, src, n * sizeof *d);
    return d;
}

/* Builds the model, plans it, then sets precision p under backend b, runs
 * the batch sequence (two passes each, the second accumulating) and keeps
 * what each pass computed. Returns 0 on failure (recorded as a check). */
static int conv_run(const char *yaml, larch_shape in, larch_precision p, larch_conv_backend b, conv_result *r)
{
    memset(r, 0, sizeof *r);
    CHECK_OK(larch_set_conv_backend(b));
    larch_node *layers = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse(yaml, "<test>", &layers));
    if (layers) CHECK_OK(larch_model_build(&m, in, layers, NULL, NULL, 11));
    larch_node_free(layers);
    if (!m) return 0;
    m->want_input_grad = 1;
    larch_status s = larch_model_plan(m, MAX_BATCH);
    if (!s) s = larch_model_set_precision(m, p);
    CHECK(s == LARCH_OK, "plan / precision: %s", larch_errmsg());
    if (s) { larch_model_free(m); return 0; }
    for (size_t i = 0; i < m->n_floats; i++) m->param[i] = 0.5f * sym((uint32_t)i + 1000u);   /* biases too */
    r->xper = larch_shape_size(in);
    r->yper = larch_shape_size(m->layers[m->n_layers - 1]->out_shape);
    r->n_floats = m->n_floats;
    float *x = malloc((size_t)MAX_BATCH * r->xper * sizeof *x);
    for (size_t i = 0; i < (size_t)MAX_BATCH * r->xper; i++) x[i] = sym((uint32_t)i);
    for (int k = 0; k < 4; k++) {
        int n = batches[k];
        larch_batch bt = {.n = n, .x = x};
        for (int pass = 0; pass < 2; pass++) {
            larch_pass ps = {.n = n, .train = 1, .acc_grad = pass};
            larch_model_forward(m, &bt, &ps);
            for (size_t i = 0; i < (size_t)n * r->yper; i++) m->node_dy[m->n_layers][i] = sym((uint32_t)i * 3u + 77u);
            larch_model_backward(m, &ps);
            if (pass == 0) {
                r->y[k] = copy(m->node_y[m->n_layers], (size_t)n * r->yper);
                r->dx[k] = copy(m->node_dy[0], (size_t)n * r->xper);
                r->g1[k] = copy(m->grad, m->n_floats);
            } else {
                r->g2[k] = copy(m->grad, m->n_floats);
            }
        }
    }
    r->onednn_layers = larch_conv_onednn_count(m, NULL);
    free(x);
    larch_model_free(m);
    return 1;
}

/* max |a - b| / (1 + max |b|) */
static double worst_abs(const float *a, const float *b, size_t n)
{
    double d = 0, mag = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        mag = fmax(mag, fabs((double)b[i]));
    }
    return d / (1 + mag);
}

static void conv_bf16(int cin, int k, int stride, int pad, int bias)
{
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "[{type: conv2d, name: a, filters: 5, kernel: %d, stride: %d, padding: %d, bias: %s},"
             " {type: conv2d, name: b, input: input, filters: 5, kernel: %d, stride: %d, padding: %d, bias: %s},"
             " {type: add, inputs: [a, b]}]",
             k, stride, pad, bias ? "true" : "false", k, stride, pad, bias ? "true" : "false");
    larch_shape in = {9, 8, cin};
    conv_result gemm, dnn, f32;
    if (!conv_run(yaml, in, LARCH_PRECISION_BF16, LARCH_CONV_OPENBLAS, &gemm)) return;
    if (!conv_run(yaml, in, LARCH_PRECISION_BF16, LARCH_CONV_ONEDNN, &dnn)) { conv_result_free(&gemm); return; }
    if (!conv_run(yaml, in, LARCH_PRECISION_FP32, LARCH_CONV_ONEDNN, &f32)) { conv_result_free(&gemm); conv_result_free(&dnn); return; }
    CHECK(gemm.onednn_layers == 0, "%s: openblas ran oneDNN in %d layers", yaml, gemm.onednn_layers);
    CHECK(dnn.onednn_layers == 2, "%s: bf16 oneDNN ran in %d of 2 layers", yaml, dnn.onednn_layers);
    /* same rounded operands, float sums in another order */
    const double tol = 1e-6 * (k * k * cin + 5 * 9 * 8) + 1e-6;
    double w;
    int eq;
    for (int i = 0; i < 4; i++) {
        int n = batches[i];
        const size_t ny = (size_t)n * dnn.yper, nx = (size_t)n * dnn.xper, np = dnn.n_floats;
        CHECK((w = worst_abs(dnn.y[i], gemm.y[i], ny)) <= tol, "%s batch %d: y differs from bf16 im2col by %.3g", yaml, n, w);
        CHECK((w = worst_abs(dnn.dx[i], gemm.dx[i], nx)) <= tol, "%s batch %d: dx differs from bf16 im2col by %.3g", yaml, n, w);
        CHECK((w = worst_abs(dnn.g1[i], gemm.g1[i], np)) <= tol, "%s batch %d: dW/db differ from bf16 im2col by %.3g", yaml, n, w);
        CHECK((w = worst_abs(dnn.g2[i], gemm.g2[i], np)) <= tol, "%s batch %d: accumulated dW/db differ from bf16 im2col by %.3g",
              yaml, n, w);
        int twice = 1;
        for (size_t j = 0; j < np; j++) twice &= fabs(dnn.g2[i][j] - 2.0 * dnn.g1[i][j]) <= 1e-6 * (1 + fabs(dnn.g1[i][j]));
        CHECK(twice, "%s batch %d: accumulated bf16 gradients are not twice the first", yaml, n);
        /* bf16 against float: close, not equal (the rounding happened) */
        double dy = rel_diff(dnn.y[i], f32.y[i], ny, &eq);
        CHECK(dy < 3e-2 && !eq, "%s batch %d: bf16 y: relative difference %.3g to float (want (0, 3e-2))", yaml, n, dy);
        double ddx = rel_diff(dnn.dx[i], f32.dx[i], nx, &eq);
        CHECK(ddx < 3e-2 && !eq, "%s batch %d: bf16 dx: relative difference %.3g to float (want (0, 3e-2))", yaml, n, ddx);
        double dg = rel_diff(dnn.g1[i], f32.g1[i], np, &eq);
        CHECK(dg < 3e-2 && !eq, "%s batch %d: bf16 dW: relative difference %.3g to float (want (0, 3e-2))", yaml, n, dg);
    }
    conv_result_free(&gemm);
    conv_result_free(&dnn);
    conv_result_free(&f32);
}

int main(void)
{
    larch_status avail = larch_bf16_gemm_available();
    if (avail != LARCH_OK) {
        printf("test_bf16: skipped: %s\n", larch_errmsg());
        CHECK(strstr(larch_errmsg(), "bf16") != NULL, "the reason names bf16: %s", larch_errmsg());
        larch_model *m = small_model(2);
        CHECK_FAIL(larch_model_set_precision(m, LARCH_PRECISION_BF16), LARCH_ERR_INVALID, "bf16");
        CHECK(larch_model_precision(m) == LARCH_PRECISION_FP32, "precision changed by a failed call");
        larch_model_free(m);
        return check_failures ? 1 : 77;
    }
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_gemm(ta, tb, 37, 29, 53, 1.0f, 0.0f, 0);
            check_gemm(ta, tb, 37, 29, 53, 1.0f, 1.0f, 3);
            check_gemm(ta, tb, 64, 16, 300, 2.0f, 0.5f, 1);
        }
    check_gemm(0, 1, 37, 29, 53, 1.0f, 0.0f, 0);       /* a kept primitive, again */
    check_gemm(0, 0, 1, 7, 5, 1.0f, 1.0f, 0);

    const int n = 6;
    larch_model *m = small_model(n);
    size_t xlen = (size_t)n * 9 * 9 * 3;
    float *x = malloc(sizeof *x * xlen);
    int32_t labels[6] = {0, 1, 2, 3, 4, 0};
    uint32_t seed = 5;
    for (size_t i = 0; i < xlen; i++) x[i] = urand(&seed);
    larch_batch b = {.n = n, .x = x};
    b.label[0] = labels;
    float out32[30], out16[30], again[30];
    float *g32 = malloc(sizeof *g32 * m->n_floats), *g16 = malloc(sizeof *g16 * m->n_floats);
    float *gagain = malloc(sizeof *gagain * m->n_floats);
    run(m, &b, out32, g32);
    CHECK_OK(larch_model_set_precision(m, LARCH_PRECISION_BF16));
    CHECK(larch_model_precision(m) == LARCH_PRECISION_BF16, "precision not recorded");
    run(m, &b, out16, g16);
    int eq;
    double d = rel_diff(out16, out32, 30, &eq);
    CHECK(d < 3e-2 && !eq, "bf16 outputs: relative difference %.3g to float (want (0, 3e-2))", d);
    d = rel_diff(g16, g32, m->n_floats, &eq);
    CHECK(d < 3e-2 && !eq, "bf16 gradients: relative difference %.3g to float (want (0, 3e-2))", d);
    CHECK_OK(larch_model_set_precision(m, LARCH_PRECISION_FP32));
    run(m, &b, again, gagain);
    CHECK(memcmp(again, out32, sizeof again) == 0 && memcmp(gagain, g32, sizeof *g32 * m->n_floats) == 0,
          "fp32 again differs from the first fp32 pass");
    CHECK_FAIL(larch_model_set_precision(m, (larch_precision)7), LARCH_ERR_INVALID, "precision 7");

    if (larch_conv_onednn_built()) {
        const int v[][5] = {/* cin, kernel, stride, padding, bias */
                            {3, 3, 1, 1, 0}, {3, 3, 2, 1, 1}, {1, 3, 1, 1, 0}, {16, 1, 1, 0, 1}, {16, 1, 2, 0, 0},
                            {3, 5, 2, 2, 1}, {16, 3, 1, 0, 0}, {3, 3, 2, 0, 0}};
        for (size_t i = 0; i < sizeof v / sizeof *v; i++) conv_bf16(v[i][0], v[i][1], v[i][2], v[i][3], v[i][4]);
        CHECK_OK(larch_set_conv_backend(LARCH_CONV_AUTO));
    }
    larch_model_free(m);
    free(x), free(g32), free(g16), free(gagain);
    larch_gemm_bf16_release();
    return check_result("test_bf16");
}
