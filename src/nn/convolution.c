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
 *
 * Backends (larch_set_conv_backend, LARCH_CONV_BACKEND): with oneDNN built
 * in (LARCH_HAVE_DNNL), a layer may run oneDNN's primitives instead
 * (conv_onednn.c). The choice is made per pass: the backend in effect, and
 * under auto the layer's shape (onednn_wins). oneDNN's primitives for a batch
 * size are made at plan time (scratch_size, for the planned batch) or at the
 * first pass of another batch size; a batch size whose primitives need more
 * scratch than was planned, or that oneDNN cannot run, takes the GEMM path,
 * which is always available. In bf16 (larch_model_set_precision) the
 * primitives are oneDNN's bf16 ones (float outputs and weight gradients);
 * the GEMM path then runs the bf16 GEMM (larch_layer_gemm).
 */
#include "nn/layers.h"
#include "core/blas.h"
#include "core/dispatch.h"
#include "nn/quant.h"
#ifdef LARCH_HAVE_DNNL
#include "nn/conv_onednn.h"
#endif

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_FLOATS ((size_t)1 << 21)   /* 8 MiB of im2col per GEMM */

typedef struct {
    int cout, k, stride, pad, bias, oh, ow, K, chunk, direct;
    larch_init_kind init;
    int last_onednn;             /* the last pass ran oneDNN (for reports)    */
#ifdef LARCH_HAVE_DNNL
    larch_onednn_conv *dnn;      /* NULL: oneDNN unavailable for this layer   */
    size_t scratch_cap;          /* scratch floats planned for this layer     */
    size_t save_cap;             /* L->saved floats for oneDNN's bf16 x       */
#endif
} conv_t;

/* ---- the backend setting ---- */

static larch_conv_backend g_backend = LARCH_CONV_AUTO;
static int g_env_read, g_env_valid;
static larch_conv_backend g_env_backend;

const char *larch_conv_backend_name(larch_conv_backend b)
{
    return b == LARCH_CONV_ONEDNN ? "onednn" : b == LARCH_CONV_OPENBLAS ? "openblas" : "auto";
}

larch_status larch_conv_backend_parse(const char *name, larch_conv_backend *out)
{
    static const larch_conv_backend all[] = {LARCH_CONV_AUTO, LARCH_CONV_ONEDNN, LARCH_CONV_OPENBLAS};
    for (size_t i = 0; name && i < sizeof all / sizeof *all; i++)
        if (!strcmp(name, larch_conv_backend_name(all[i]))) { *out = all[i]; return LARCH_OK; }
    return larch_fail(LARCH_ERR_INVALID, "convolution backend '%s' is not one of auto, onednn, openblas", name ? name : "(null)");
}

int larch_conv_onednn_built(void)
{
#ifdef LARCH_HAVE_DNNL
    return 1;
#else
    return 0;
#endif
}

static larch_status backend_check(larch_conv_backend b, const char *what)
{
    if (b == LARCH_CONV_ONEDNN && !larch_conv_onednn_built())
        return larch_fail(LARCH_ERR_INVALID, "%s: convolution backend 'onednn' is not available: this larch was built "
                          "without oneDNN (LARCH_ONEDNN=OFF or libdnnl not found)", what);
    return LARCH_OK;
}

/* Reads LARCH_CONV_BACKEND once; 0 when it is unset or invalid. */
static int env_backend(larch_conv_backend *out)
{
    if (!g_env_read) {
        g_env_read = 1;
        const char *v = getenv("LARCH_CONV_BACKEND");
        g_env_valid = v && *v && !larch_conv_backend_parse(v, &g_env_backend) && !backend_check(g_env_backend, "LARCH_CONV_BACKEND");
        if (v && *v && !g_env_valid) larch_clear_error();
    }
    if (g_env_valid) *out = g_env_backend;
    return g_env_valid;
}

larch_status larch_set_conv_backend(larch_conv_backend b)
{
    larch_status s;
    if (b != LARCH_CONV_AUTO && b != LARCH_CONV_ONEDNN && b != LARCH_CONV_OPENBLAS)
        return larch_fail(LARCH_ERR_INVALID, "convolution backend %d is not one of auto, onednn, openblas", (int)b);
    if ((s = backend_check(b, "larch_set_conv_backend"))) return s;
    const char *v = getenv("LARCH_CONV_BACKEND");
    larch_conv_backend e;
    if (v && *v && !env_backend(&e))
        return larch_fail(LARCH_ERR_INVALID, "environment LARCH_CONV_BACKEND='%.40s' is not one of auto, onednn, openblas%s", v,
                          larch_conv_onednn_built() ? "" : " (onednn: this larch was built without oneDNN)");
    g_backend = b;
    return LARCH_OK;
}

larch_conv_backend larch_get_conv_backend(void)
{
    larch_conv_backend e;
    return env_backend(&e) ? e : g_backend;
}

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
#ifdef LARCH_HAVE_DNNL
    larch_onednn_geom g = {in.h, in.w, in.c, d->cout, d->k, d->stride, d->pad, d->oh, d->ow, d->bias};
    d->dnn = larch_onednn_conv_create(&g);   /* NULL (no CPU engine, no memory): the GEMM path */
#endif
    return LARCH_OK;
}

/* Test hook (tests/test_layers_grad.c, test_layers_numeric.c): at most this many samples per chunk
 * (0 = no limit), so small shapes run several chunks. */
static int g_test_chunk;
void larch_conv_test_chunk(int samples) { g_test_chunk = samples > 0 ? samples : 0; }

static int chunk_of(const conv_t *d) { return g_test_chunk > 0 && g_test_chunk < d->chunk ? g_test_chunk : d->chunk; }

static size_t gemm_scratch(const conv_t *d, int n)
{
    if (d->direct) return 0;
    int c = n < chunk_of(d) ? n : chunk_of(d);
    return (size_t)c * d->oh * d->ow * d->K;
}

#ifdef LARCH_HAVE_DNNL
static int is_bf16(const larch_layer *L) { return L->model->precision == LARCH_PRECISION_BF16; }

/* Under auto: the shapes where oneDNN was measured faster than im2col +
 * OpenBLAS (docs/performance.md): every conv layer timed so far. */
static int onednn_wins(const conv_t *d, larch_shape in)
{
    (void)d; (void)in;
    return 1;
}

static int onednn_wanted(const larch_layer *L)
{
    const conv_t *d = L->priv;
    larch_conv_backend b = larch_get_conv_backend();
    return b == LARCH_CONV_ONEDNN || (b == LARCH_CONV_AUTO && onednn_wins(d, L->in_shape[0]));
}
#endif

/* Whether a pass of n runs oneDNN: wanted, the primitives exist (made here
 * at the first pass of n) and fit the planned scratch. *xsave: where the
 * forward keeps the primitive's bf16 copy of x for the backward (the
 * layer's saved area, when planned; NULL: the backward converts x again). */
static int use_onednn(larch_layer *L, int n, void **xsave)
{
    *xsave = NULL;
#ifdef LARCH_HAVE_DNNL
    conv_t *d = L->priv;
    size_t need, save;
    if (!(d->dnn && n > 0 && onednn_wanted(L) && !larch_onednn_conv_prepare(d->dnn, n, L->need_backward, is_bf16(L), &need, &save) &&
          need <= d->scratch_cap))
        return 0;
    if (save && save <= d->save_cap) *xsave = L->saved + larch_q_saved(L, L->model->max_batch);   /* after QAT's x */
    return 1;
#else
    (void)L; (void)n;
    return 0;
#endif
}

static size_t conv_scratch(const larch_layer *L, int n)
{
    conv_t *d = L->priv;
    size_t s = gemm_scratch(d, n);
#ifdef LARCH_HAVE_DNNL
    size_t need;
    if (d->dnn && onednn_wanted(L) && !larch_onednn_conv_prepare(d->dnn, n, L->need_backward, is_bf16(L), &need, NULL) && need > s)
        s = need;
    d->scratch_cap = s;
#endif
    size_t q = larch_q_scratch(L, n);
    return q > s ? q : s;
}

/* Saved between the passes: oneDNN's bf16 copy of x, when the weight
 * gradient will read it (in fp32 the primitives read x itself). */
static size_t conv_saved(const larch_layer *L, int n)
{
    size_t save = 0;
#ifdef LARCH_HAVE_DNNL
    conv_t *d = L->priv;
    size_t need;
    if (!(d->dnn && L->need_dw && onednn_wanted(L) && !larch_onednn_conv_prepare(d->dnn, n, L->need_backward, is_bf16(L), &need, &save)))
        save = 0;
    d->save_cap = save;
#endif
    return save + larch_q_saved(L, n);   /* QAT's fake-quantized x first */
}

void larch_conv_geom(const larch_layer *L, int *k, int *stride, int *pad)
{
    const conv_t *d = L->priv;
    *k = d->k;
    *stride = d->stride;
    *pad = d->pad;
}

int larch_conv_onednn_count(const larch_model *m, int *conv_layers)
{
    int k = 0, total = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const larch_layer *L = m->layers[i];
        if (L->ops != &larch_conv2d_ops) continue;
        total++;
        k += ((const conv_t *)L->priv)->last_onednn;
    }
    if (conv_layers) *conv_layers = total;
    return k;
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
    d->last_onednn = 0;
    if (L->q && larch_q_forward_int8(L, p)) return;                    // int8 inference (quant.c)
    const float *W = larch_layer_param(L, 0), *x = L->x[0];           // (cout, K), (n, h, w, cin)
    if (L->q) larch_q_operands(L, p, 1, &x, &W);                       // QAT: fake-quantized operands
    const size_t in_per = larch_shape_size(in), ohw = (size_t)d->oh * d->ow, cout = (size_t)d->cout;
    void *xsave;
    d->last_onednn = use_onednn(L, p->n, &xsave);
#ifdef LARCH_HAVE_DNNL
    if (d->last_onednn && !larch_onednn_conv_forward(d->dnn, p->n, is_bf16(L), x, W, d->bias ? larch_layer_param(L, 1) : NULL, L->y,
                                                     L->scratch, xsave))
        return;
    d->last_onednn = 0;                                                 // a failed primitive: the GEMM path
#endif
    if (d->bias) {                                                      // y = broadcast bias
        const float *bias = larch_layer_param(L, 1);
        for (size_t r = 0; r < (size_t)p->n * ohw; r++) memcpy(L->y + r * cout, bias, cout * sizeof(float));
    }
    float beta = d->bias ? 1.0f : 0.0f;
    const int chunk = chunk_of(d);
    for (int b0 = 0; b0 < p->n; b0 += chunk) {
        int nb = p->n - b0 < chunk ? p->n - b0 : chunk;
        const size_t rows = (size_t)nb * ohw;                           // <= INT_MAX: see chunk in setup
        const float *cols = x + (size_t)b0 * in_per;                    // direct: x (rows, cin) is cols
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
    const float *W = larch_layer_param(L, 0), *x0 = L->x[0];
    if (L->q) larch_q_operands(L, p, 0, &x0, &W);                      // QAT: the forward's operands (straight-through)
    float *dW = larch_layer_grad(L, 0);
    const size_t in_per = larch_shape_size(in), ohw = (size_t)d->oh * d->ow, cout = (size_t)d->cout;
    if (L->need_dw && d->bias)                                          // db = sum over the n*oh*ow rows of dy
        larch_channel_sums(L->dy, NULL, (size_t)p->n * ohw, d->cout, larch_layer_grad(L, 1), NULL, p->acc_grad);
#ifdef LARCH_HAVE_DNNL
    void *xsave;                                                        // filled by this pass's forward when it ran oneDNN
    if (p->n > 0 && use_onednn(L, p->n, &xsave) &&
        !larch_onednn_conv_backward(d->dnn, p->n, is_bf16(L), x0, L->dy, W, L->need_dx[0] ? L->dx[0] : NULL, L->dx_acc[0],
                                    L->need_dw ? dW : NULL, p->acc_grad, L->scratch, xsave, d->last_onednn)) {
        if (L->q && L->need_dx[0]) larch_q_ste_mask(L, p->n, L->dx[0], L->dx_acc[0]);
        return;
    }
#endif
    if (L->need_dw && !p->acc_grad && p->n == 0) memset(dW, 0, cout * d->K * sizeof(float));
    const int chunk = chunk_of(d);
    for (int b0 = 0; b0 < p->n; b0 += chunk) {
        int nb = p->n - b0 < chunk ? p->n - b0 : chunk;
        const int rows = (int)((size_t)nb * ohw);                       // fits: see chunk in setup
        const float *dy = L->dy + (size_t)b0 * ohw * cout;              // (rows, cout)
        const float *x = x0 + (size_t)b0 * in_per;
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
    if (L->q && L->need_dx[0]) larch_q_ste_mask(L, p->n, L->dx[0], L->dx_acc[0]);
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

static void conv_destroy(larch_layer *L)
{
#ifdef LARCH_HAVE_DNNL
    conv_t *d = L->priv;
    if (d) larch_onednn_conv_free(d->dnn);
#endif
    free(L->priv);
}

const larch_layer_ops larch_conv2d_ops = {
    .type = "conv2d", .min_inputs = 1, .max_inputs = 1,
    .setup = conv_setup, .saved_size = conv_saved, .scratch_size = conv_scratch, .init = conv_init, .forward = conv_forward,
    .backward = conv_backward, .gemms = conv_gemms, .destroy = conv_destroy};
