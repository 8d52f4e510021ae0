/* convolution.c - 2-D convolution over channels-last (n, h, w, cin) inputs by
 * im2col and one OpenBLAS sgemm per chunk of samples.
 *
 * Weight W is (cout, kh, kw, cin) row-major, i.e. (cout, K) with
 * K = kh*kw*cin in exactly the column order of the NHWC im2col matrix, so
 *     cols (rows, K) x W^T (K, cout) = y (rows, cout),  rows = samples*oh*ow,
 * is already the NHWC output. Backward per chunk rebuilds cols (cheaper than
 * keeping them: they are kh*kw times the input) and computes
 *     dW (cout, K) += dy^T (cout, rows) x cols (rows, K)
 *     dcols (rows, K) = dy (rows, cout) x W (cout, K), then col2im into dx.
 * A chunk holds as many samples as fit CHUNK_FLOATS of cols (at least one),
 * which keeps the GEMMs thousands of rows tall while the im2col buffer stays
 * in cache. A 1x1, stride-1, unpadded convolution skips im2col: the input is
 * the cols matrix, and a chunk is as many samples as keep the GEMM's rows
 * within int (the whole batch in practice). Output size:
 * oh = (h + 2 padding - kernel) / stride + 1. Sizes are size_t; a layer
 * whose K (a GEMM dimension of the int BLAS interface) or fan-out does not
 * fit an int is rejected. The bias gradient sums the n*oh*ow rows in double.
 */
#include "nn/layers.h"
#include "core/blas.h"
#include "core/dispatch.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_FLOATS ((size_t)1 << 21)   /* 8 MiB of im2col per GEMM */

typedef struct {
    int cout, k, stride, pad, bias, oh, ow, K, chunk, direct;
    larch_init_kind init;
} conv_t;

static larch_status conv_setup(larch_layer *L, const void *opts)
{
    const larch_conv2d_opts o = opts ? *(const larch_conv2d_opts *)opts : (larch_conv2d_opts)LARCH_CONV2D_DEFAULTS;
    larch_status s;
    if ((s = larch_check_int(L, "filters", o.filters, 1, 1 << 20)) || (s = larch_check_int(L, "kernel", o.kernel, 1, 1024)) ||
        (s = larch_check_int(L, "stride", o.stride, 1, 1024)) || (s = larch_check_int(L, "padding", o.padding, 0, 1024)) ||
        (s = larch_check_init(L, o.init)))
        return s;
    conv_t *d = calloc(1, sizeof *d);
    if (!d) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    L->priv = d;
    larch_shape in = L->in_shape[0];
    d->cout = o.filters;
    d->k = o.kernel;
    d->stride = o.stride;
    d->pad = o.padding;
    d->bias = o.bias != 0;
    d->init = o.init;
    if (in.h + 2 * d->pad < d->k || in.w + 2 * d->pad < d->k)
        return LARCH_LAYER_FAIL(L, LARCH_ERR_SHAPE, "kernel %d is larger than the padded input %dx%d (input %dx%dx%d, padding %d)",
                                d->k, in.h + 2 * d->pad, in.w + 2 * d->pad, in.h, in.w, in.c, d->pad);
    d->oh = (in.h + 2 * d->pad - d->k) / d->stride + 1;
    d->ow = (in.w + 2 * d->pad - d->k) / d->stride + 1;
    const size_t taps = (size_t)d->k * d->k, K = taps * in.c, fan_out = taps * d->cout;
    if (K > INT_MAX || fan_out > INT_MAX)
        return LARCH_LAYER_FAIL(L, LARCH_ERR_SHAPE, "kernel %dx%d over %d input channels into %d filters: %s %zu does not fit "
                                "an int (at most %d)", d->k, d->k, in.c, d->cout, K > INT_MAX ? "the GEMM dimension K =" : "the fan-out",
                                K > INT_MAX ? K : fan_out, INT_MAX);
    d->K = (int)K;
    d->direct = d->k == 1 && d->stride == 1 && d->pad == 0;
    const size_t ohw = (size_t)d->oh * d->ow, per = ohw * K;  // cols floats per sample
    if (d->direct) d->chunk = ohw >= INT_MAX ? 1 : (int)(INT_MAX / ohw);   // GEMM rows fit an int
    else d->chunk = per >= CHUNK_FLOATS ? 1 : (int)(CHUNK_FLOATS / per);
    L->out_shape = (larch_shape){d->oh, d->ow, d->cout};
    int ws[4] = {d->cout, d->k, d->k, in.c};
    larch_layer_add_param(L, "weight", LARCH_ROLE_WEIGHT, 4, ws, d->K, (int)fan_out);
    if (d->bias) larch_layer_add_param(L, "bias", LARCH_ROLE_BIAS, 1, &d->cout, d->K, d->cout);
    return LARCH_OK;
}

/* Test hook (tests/test_layers_grad.c, test_layers_numeric.c): at most this many samples per chunk
 * (0 = no limit), so small shapes run several chunks. */
static int g_test_chunk;
void larch_conv_test_chunk(int samples) { g_test_chunk = samples > 0 ? samples : 0; }

static int chunk_of(const conv_t *d) { return g_test_chunk > 0 && g_test_chunk < d->chunk ? g_test_chunk : d->chunk; }

static size_t conv_scratch(const larch_layer *L, int n)
{
    const conv_t *d = L->priv;
    if (d->direct) return 0;
    int c = n < chunk_of(d) ? n : chunk_of(d);
    return (size_t)c * d->oh * d->ow * d->K;
}

static void conv_init(larch_layer *L, uint64_t seed)
{
    conv_t *d = L->priv;
    larch_init_fill(larch_layer_param(L, 0), (size_t)d->cout * d->K, d->init, d->K, d->k * d->k * d->cout,
                    seed, L->name, 0);
    if (d->bias) memset(larch_layer_param(L, 1), 0, (size_t)d->cout * sizeof(float));
}

/* cols (nb*oh*ow, K) from x (nb, h, w, cin): one contiguous cin run per tap. */
static LARCH_HOT void im2col(const conv_t *d, larch_shape in, const float *restrict x, int nb, float *restrict cols)
{
    const size_t cin = (size_t)in.c, run = cin * sizeof(float);
    for (int b = 0; b < nb; b++) {
        const float *xb = x + (size_t)b * in.h * in.w * cin;
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++) {
                float *row = cols + (((size_t)b * d->oh + oy) * d->ow + ox) * d->K;
                for (int ky = 0; ky < d->k; ky++) {
                    int iy = oy * d->stride - d->pad + ky;
                    float *dst = row + (size_t)ky * d->k * cin;
                    if (iy < 0 || iy >= in.h) { memset(dst, 0, d->k * run); continue; }
                    int ix0 = ox * d->stride - d->pad;
                    if (ix0 >= 0 && ix0 + d->k <= in.w) {            // whole kernel row inside: one copy
                        memcpy(dst, xb + ((size_t)iy * in.w + ix0) * cin, d->k * run);
                        continue;
                    }
                    for (int kx = 0; kx < d->k; kx++) {
                        int ix = ix0 + kx;
                        if (ix < 0 || ix >= in.w) memset(dst + kx * cin, 0, run);
                        else memcpy(dst + kx * cin, xb + ((size_t)iy * in.w + ix) * cin, run);
                    }
                }
            }
    }
}

/* dx (nb, h, w, cin) += col2im(dcols); dx must be initialized. */
static LARCH_HOT void col2im(const conv_t *d, larch_shape in, const float *restrict dcols, int nb, float *restrict dx)
{
    const size_t cin = (size_t)in.c;
    for (int b = 0; b < nb; b++) {
        float *db = dx + (size_t)b * in.h * in.w * cin;
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++) {
                const float *row = dcols + (((size_t)b * d->oh + oy) * d->ow + ox) * d->K;
                for (int ky = 0; ky < d->k; ky++) {
                    int iy = oy * d->stride - d->pad + ky;
                    if (iy < 0 || iy >= in.h) continue;
                    for (int kx = 0; kx < d->k; kx++) {
                        int ix = ox * d->stride - d->pad + kx;
                        if (ix < 0 || ix >= in.w) continue;
                        const float *src = row + ((size_t)ky * d->k + kx) * cin;
                        float *dst = db + ((size_t)iy * in.w + ix) * cin;
                        for (size_t c = 0; c < cin; c++) dst[c] += src[c];   // overlapping windows add up
                    }
                }
            }
    }
}

static void conv_forward(larch_layer *L, const larch_pass *p)
{
    conv_t *d = L->priv;
    larch_shape in = L->in_shape[0];
    const float *W = larch_layer_param(L, 0);                          // (cout, K)
    const size_t in_per = larch_shape_size(in), ohw = (size_t)d->oh * d->ow, cout = (size_t)d->cout;
    if (d->bias) {                                                      // y = broadcast bias
        const float *bias = larch_layer_param(L, 1);
        for (size_t r = 0; r < (size_t)p->n * ohw; r++) memcpy(L->y + r * cout, bias, cout * sizeof(float));
    }
    float beta = d->bias ? 1.0f : 0.0f;
    const int chunk = chunk_of(d);
    for (int b0 = 0; b0 < p->n; b0 += chunk) {
        int nb = p->n - b0 < chunk ? p->n - b0 : chunk;
        const size_t rows = (size_t)nb * ohw;                           // <= INT_MAX: see chunk in setup
        const float *cols = L->x[0] + (size_t)b0 * in_per;              // direct: x (rows, cin) is cols
        if (!d->direct) {
            im2col(d, in, cols, nb, L->scratch);
            cols = L->scratch;
        }
        // y (rows, cout) += cols (rows, K) x W^T (K, cout)
        larch_layer_gemm(L, 0, 1, (int)rows, d->cout, d->K, 1.0f, cols, d->K, W, d->K, beta, L->y + (size_t)b0 * ohw * cout, d->cout);
    }
}

static void conv_backward(larch_layer *L, const larch_pass *p)
{
    conv_t *d = L->priv;
    larch_shape in = L->in_shape[0];
    const float *W = larch_layer_param(L, 0);
    float *dW = larch_layer_grad(L, 0);
    const size_t in_per = larch_shape_size(in), ohw = (size_t)d->oh * d->ow, cout = (size_t)d->cout;
    if (L->need_dw && d->bias)                                          // db = sum over the n*oh*ow rows of dy
        larch_channel_sums(L->dy, NULL, (size_t)p->n * ohw, d->cout, larch_layer_grad(L, 1), NULL, p->acc_grad);
    if (L->need_dw && !p->acc_grad && p->n == 0) memset(dW, 0, cout * d->K * sizeof(float));
    const int chunk = chunk_of(d);
    for (int b0 = 0; b0 < p->n; b0 += chunk) {
        int nb = p->n - b0 < chunk ? p->n - b0 : chunk;
        const int rows = (int)((size_t)nb * ohw);                       // fits: see chunk in setup
        const float *dy = L->dy + (size_t)b0 * ohw * cout;              // (rows, cout)
        const float *x = L->x[0] + (size_t)b0 * in_per;
        if (L->need_dw) {
            const float *cols = x;                                      // direct: x is cols
            if (!d->direct) {
                im2col(d, in, x, nb, L->scratch);
                cols = L->scratch;
            }
            // dW (cout, K) (+)= dy^T (cout, rows) x cols (rows, K)
            larch_layer_gemm(L, 1, 0, d->cout, d->K, rows, 1.0f, dy, d->cout, cols, d->K,
                        (b0 > 0 || p->acc_grad) ? 1.0f : 0.0f, dW, d->K);
        }
        if (L->need_dx[0]) {
            float *dx = L->dx[0] + (size_t)b0 * in_per;
            if (d->direct) {                                            // dx (rows, cin) (+)= dy (rows, cout) x W (cout, cin)
                larch_layer_gemm(L, 0, 0, rows, d->K, d->cout, 1.0f, dy, d->cout, W, d->K, L->dx_acc[0] ? 1.0f : 0.0f, dx, d->K);
                continue;
            }
            // dcols (rows, K) = dy (rows, cout) x W (cout, K)
            larch_layer_gemm(L, 0, 0, rows, d->K, d->cout, 1.0f, dy, d->cout, W, d->K, 0.0f, L->scratch, d->K);
            if (!L->dx_acc[0]) memset(dx, 0, (size_t)nb * in_per * sizeof(float));
            col2im(d, in, L->scratch, nb, dx);
        }
    }
}

static int conv_gemms(const larch_layer *L, int n, int train, larch_gemm_shape *out, int cap)
{
    const conv_t *d = L->priv;
    const int ohw = d->oh * d->ow, chunk = chunk_of(d);             // chunk * ohw fits an int (setup)
    int full = chunk > 0 ? n / chunk : 0, rest = chunk > 0 ? n % chunk : 0;
    larch_gemm_shape g[6];
    int k = 0;
    for (int part = 0; part < 2; part++) {                               // full chunks, then the remainder
        int nb = part == 0 ? chunk : rest;
        double cnt = part == 0 ? full : (rest ? 1 : 0);
        if (cnt == 0 || nb == 0) continue;
        g[k++] = (larch_gemm_shape){nb * ohw, d->cout, d->K, 0, 1, cnt};
        if (train && L->need_dw) g[k++] = (larch_gemm_shape){d->cout, d->K, nb * ohw, 1, 0, cnt};
        if (train && L->need_dx[0]) g[k++] = (larch_gemm_shape){nb * ohw, d->K, d->cout, 0, 0, cnt};
    }
    for (int i = 0; i < k && i < cap; i++) out[i] = g[i];
    return k < cap ? k : cap;
}

static void conv_destroy(larch_layer *L) { free(L->priv); }

const larch_layer_ops larch_conv2d_ops = {
    .type = "conv2d", .min_inputs = 1, .max_inputs = 1,
    .setup = conv_setup, .scratch_size = conv_scratch, .init = conv_init, .forward = conv_forward,
    .backward = conv_backward, .gemms = conv_gemms, .destroy = conv_destroy};
