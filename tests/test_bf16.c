/* test_bf16.c - bf16 compute (larch_model_set_precision, core/gemm_bf16.c):
 *   - the bf16 GEMM equals a double-precision product of the bf16-rounded
 *     operands (to float summation error) for every transpose, alpha, beta
 *     and padded leading dimensions, and differs from the float GEMM (the
 *     rounding really happens);
 *   - a conv + dense model in bf16 gives outputs and gradients close to
 *     float (relative 3e-2) but not equal; parameters stay float;
 *   - switching back to fp32 gives the float results bit for bit;
 *   - an invalid precision fails naming it.
 * Where this build or CPU has no fast bf16 matmul, the test says why and
 * is skipped (exit 77). */
#include "check.h"
#include "core/blas.h"
#include "core/gemm_bf16.h"
#include "core/half.h"
#include "larch/larch.h"
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
    larch_model_free(m);
    free(x), free(g32), free(g16), free(gagain);
    larch_gemm_bf16_release();
    return check_result("test_bf16");
}
