/* activations.c - elementwise activations: relu, leaky_relu, gelu, tanh,
 * sigmoid. Output shape = input shape. Backward needs only the layer's own
 * output (relu, tanh, sigmoid) or input (leaky_relu, gelu), both of which
 * stay valid in the arena until backward, so nothing is saved.
 * gelu is the exact form x * Phi(x) with Phi the standard normal CDF
 * (PyTorch's default approximate='none'), not the tanh approximation.
 * A NaN input gives a NaN output in every one of them (as in PyTorch), so a
 * diverged activation reaches the loss and train.stop_on_nan.
 */
#include "nn/layers.h"
#include "core/dispatch.h"

#include <math.h>
#include <stdlib.h>

typedef struct { float slope; } leaky_t;

static larch_status act_setup(larch_layer *L, const void *opts)
{
    L->out_shape = L->in_shape[0];
    return LARCH_OK;
}

static larch_status leaky_setup(larch_layer *L, const void *opts)
{
    const larch_leaky_relu_opts o = opts ? *(const larch_leaky_relu_opts *)opts : (larch_leaky_relu_opts)LARCH_LEAKY_RELU_DEFAULTS;
    larch_status s = larch_check_float(L, "slope", o.slope, 0, 1);
    if (s) return s;
    leaky_t *p = calloc(1, sizeof *p);
    if (!p) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    p->slope = o.slope;
    L->priv = p;
    L->out_shape = L->in_shape[0];
    return LARCH_OK;
}

static void free_priv(larch_layer *L) { free(L->priv); }

static size_t count(const larch_layer *L, int n) { return (size_t)n * larch_shape_size(L->out_shape); }

/* dx = dy * d (acc: dx += ...); shared tail of every backward. */
#define STORE_DX(expr)                                                     \
    do {                                                                   \
        if (!L->need_dx[0]) return;                                        \
        float *restrict dx = L->dx[0];                                     \
        const float *restrict dy = L->dy;                                  \
        if (L->dx_acc[0]) for (size_t i = 0; i < len; i++) dx[i] += dy[i] * (expr); \
        else for (size_t i = 0; i < len; i++) dx[i] = dy[i] * (expr);      \
    } while (0)

static LARCH_HOT void relu_forward(larch_layer *L, const larch_pass *p)
{
    size_t len = count(L, p->n);
    const float *restrict x = L->x[0];
    float *restrict y = L->y;
    for (size_t i = 0; i < len; i++) y[i] = x[i] <= 0.0f ? 0.0f : x[i];     // max(x, 0); NaN stays NaN
}
static LARCH_HOT void relu_backward(larch_layer *L, const larch_pass *p)
{
    size_t len = count(L, p->n);
    const float *restrict y = L->y;
    STORE_DX(y[i] > 0.0f ? 1.0f : 0.0f);                                     // 1 where x > 0
}

static LARCH_HOT void leaky_forward(larch_layer *L, const larch_pass *p)
{
    size_t len = count(L, p->n);
    float a = ((leaky_t *)L->priv)->slope;
    const float *restrict x = L->x[0];
    float *restrict y = L->y;
    for (size_t i = 0; i < len; i++) y[i] = x[i] > 0.0f ? x[i] : a * x[i];  // x or a x
}
static LARCH_HOT void leaky_backward(larch_layer *L, const larch_pass *p)
{
    size_t len = count(L, p->n);
    float a = ((leaky_t *)L->priv)->slope;
    const float *restrict x = L->x[0];
    STORE_DX(x[i] > 0.0f ? 1.0f : a);
}

static LARCH_HOT void gelu_forward(larch_layer *L, const larch_pass *p)
{
    size_t len = count(L, p->n);
    const float *restrict x = L->x[0];
    float *restrict y = L->y;
    for (size_t i = 0; i < len; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));  // x Phi(x)
}
static LARCH_HOT void gelu_backward(larch_layer *L, const larch_pass *p)
{
    size_t len = count(L, p->n);
    const float *restrict x = L->x[0];
    const float c = (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);                  // 1 / sqrt(2 pi)
    // d/dx x Phi(x) = Phi(x) + x phi(x)
    STORE_DX(0.5f * (1.0f + erff(x[i] * (float)M_SQRT1_2)) + x[i] * c * expf(-0.5f * x[i] * x[i]));
}

static LARCH_HOT void tanh_forward(larch_layer *L, const larch_pass *p)
{
    size_t len = count(L, p->n);
    const float *restrict x = L->x[0];
    float *restrict y = L->y;
    for (size_t i = 0; i < len; i++) y[i] = tanhf(x[i]);
}
static LARCH_HOT void tanh_backward(larch_layer *L, const larch_pass *p)
{
    size_t len = count(L, p->n);
    const float *restrict y = L->y;
    STORE_DX(1.0f - y[i] * y[i]);                                            // 1 - tanh^2
}

static LARCH_HOT void sigmoid_forward(larch_layer *L, const larch_pass *p)
{
    size_t len = count(L, p->n);
    const float *restrict x = L->x[0];
    float *restrict y = L->y;
    for (size_t i = 0; i < len; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));    // 1 / (1 + e^-x)
}
static LARCH_HOT void sigmoid_backward(larch_layer *L, const larch_pass *p)
{
    size_t len = count(L, p->n);
    const float *restrict y = L->y;
    STORE_DX(y[i] * (1.0f - y[i]));                                          // s (1 - s)
}

#define ACT(name, setup_fn, destroy_fn)                                                      \
    const larch_layer_ops larch_##name##_ops = {                                             \
        .type = #name, .min_inputs = 1, .max_inputs = 1, .setup = setup_fn,                  \
        .forward = name##_forward, .backward = name##_backward, .destroy = destroy_fn}

ACT(relu, act_setup, NULL);
ACT(gelu, act_setup, NULL);
ACT(tanh, act_setup, NULL);
ACT(sigmoid, act_setup, NULL);
const larch_layer_ops larch_leaky_relu_ops = {
    .type = "leaky_relu", .min_inputs = 1, .max_inputs = 1, .setup = leaky_setup,
    .forward = leaky_forward, .backward = leaky_backward, .destroy = free_priv};
