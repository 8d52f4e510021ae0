/* dense.c - fully connected layer: y = x W^T + b.
 *
 * The input (n, h, w, c) is read as (n, in) with in = h*w*c; the output is
 * (n, 1, 1, units). W is (units, in) row-major, b is (units).
 */
#include "nn/layers.h"
#include "core/blas.h"
#include "nn/quant.h"

#include <stdlib.h>
#include <string.h>

typedef struct { int units, in, bias; larch_init_kind init; } dense_t;

static larch_status dense_setup(larch_layer *L, const void *opts)
{
    const larch_dense_opts o = opts ? *(const larch_dense_opts *)opts : (larch_dense_opts)LARCH_DENSE_DEFAULTS;
    larch_status s;
    if ((s = larch_check_int(L, "units", o.units, 1, 1 << 24)) || (s = larch_check_init(L, o.init))) return s;
    dense_t *d = calloc(1, sizeof *d);
    if (!d) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    L->priv = d;
    d->units = o.units;
    d->bias = o.bias != 0;
    d->init = o.init;
    d->in = (int)larch_shape_size(L->in_shape[0]);
    L->out_shape = (larch_shape){1, 1, d->units};
    int ws[2] = {d->units, d->in};
    larch_layer_add_param(L, "weight", LARCH_ROLE_WEIGHT, 2, ws, d->in, d->units);
    if (d->bias) larch_layer_add_param(L, "bias", LARCH_ROLE_BIAS, 1, &d->units, d->in, d->units);
    return LARCH_OK;
}

static void dense_init(larch_layer *L, uint64_t seed)
{
    dense_t *d = L->priv;
    larch_init_fill(larch_layer_param(L, 0), (size_t)d->units * d->in, d->init, d->in, d->units,
                    seed, L->name, 0);
    if (d->bias) memset(larch_layer_param(L, 1), 0, (size_t)d->units * sizeof(float));
}

static void dense_forward(larch_layer *L, const larch_pass *p)
{
    dense_t *d = L->priv;
    if (L->q && larch_q_forward_int8(L, p)) return;   // int8 inference (quant.c)
    const float *W = larch_layer_param(L, 0), *x = L->x[0];  // (units, in), (n, in)
    if (L->q) larch_q_operands(L, p, 1, &x, &W);       // QAT: fake-quantized operands
    float beta = 0.0f;
    if (d->bias) {                              // y = broadcast b, then y += x W^T
        const float *b = larch_layer_param(L, 1);
        for (int i = 0; i < p->n; i++) memcpy(L->y + (size_t)i * d->units, b, (size_t)d->units * sizeof(float));
        beta = 1.0f;
    }
    if (p->n == 0) return;
    larch_layer_gemm(L, 0, 1, p->n, d->units, d->in, 1.0f, x, d->in, W, d->in, beta, L->y, d->units);
}

static void dense_backward(larch_layer *L, const larch_pass *p)
{
    dense_t *d = L->priv;
    int n = p->n;
    const float *x = L->x[0], *W = larch_layer_param(L, 0);
    if (L->q) larch_q_operands(L, p, 0, &x, &W);       // QAT: the forward's operands (straight-through)
    if (L->need_dw) {
        float beta = p->acc_grad ? 1.0f : 0.0f;
        // dW (units, in) = dy^T (units, n) x (n, in)
        if (n > 0)
            larch_layer_gemm(L, 1, 0, d->units, d->in, n, 1.0f, L->dy, d->units, x, d->in, beta,
                        larch_layer_grad(L, 0), d->in);
        else if (!p->acc_grad)
            memset(larch_layer_grad(L, 0), 0, (size_t)d->units * d->in * sizeof(float));
        if (d->bias)                            // db = sum over samples of dy (in double)
            larch_channel_sums(L->dy, NULL, (size_t)n, d->units, larch_layer_grad(L, 1), NULL, p->acc_grad);
    }
    if (L->need_dx[0] && n > 0) {               // dx (n, in) = dy (n, units) W (units, in)
        larch_layer_gemm(L, 0, 0, n, d->in, d->units, 1.0f, L->dy, d->units, W,
                    d->in, L->dx_acc[0] ? 1.0f : 0.0f, L->dx[0], d->in);
        if (L->q) larch_q_ste_mask(L, n, L->dx[0], L->dx_acc[0]);
    }
}

static size_t dense_saved(const larch_layer *L, int n) { return larch_q_saved(L, n); }
static size_t dense_scratch(const larch_layer *L, int n) { return larch_q_scratch(L, n); }

static int dense_gemms(const larch_layer *L, int n, int train, larch_gemm_shape *out, int cap)
{
    const dense_t *d = L->priv;
    larch_gemm_shape g[3];
    int k = 0;
    g[k++] = (larch_gemm_shape){n, d->units, d->in, 0, 1, 1};
    if (train && L->need_dw) g[k++] = (larch_gemm_shape){d->units, d->in, n, 1, 0, 1};
    if (train && L->need_dx[0]) g[k++] = (larch_gemm_shape){n, d->in, d->units, 0, 0, 1};
    for (int i = 0; i < k && i < cap; i++) out[i] = g[i];
    return k < cap ? k : cap;
}

static void dense_destroy(larch_layer *L) { free(L->priv); }

int larch_dense_info(const larch_layer *L, int *units, int *in, int *bias, larch_init_kind *init)
{
    if (L->ops != &larch_dense_ops) return 0;
    const dense_t *d = L->priv;
    if (units) *units = d->units;
    if (in) *in = d->in;
    if (bias) *bias = d->bias;
    if (init) *init = d->init;
    return 1;
}

const larch_layer_ops larch_dense_ops = {
    .type = "dense", .min_inputs = 1, .max_inputs = 1,
    .setup = dense_setup, .saved_size = dense_saved, .scratch_size = dense_scratch, .init = dense_init, .forward = dense_forward,
    .backward = dense_backward, .gemms = dense_gemms, .destroy = dense_destroy,
};
