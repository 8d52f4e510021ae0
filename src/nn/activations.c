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
#include "core/threads.h"

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

/* The kernels work on elements [lo, hi); act_run splits a layer's elements
 * over threads (core/threads.h). Elementwise, so the split changes nothing. */
typedef void (*act_kernel)(larch_layer *L, size_t lo, size_t hi);
typedef struct { larch_layer *L; act_kernel k; } act_job;
static void act_range(void *ctx, size_t lo, size_t hi) { const act_job *j = ctx; j->k(j->L, lo, hi); }
#define ACT_GRAIN 32768   /* elements per parallel range, at least */
static void act_run(larch_layer *L, const larch_pass *p, act_kernel k)
{
    act_job j = {L, k};
    larch_parallel_for(count(L, p->n), ACT_GRAIN, act_range, &j);
}

/* dx = dy * d (acc: dx += ...) over [lo, hi); shared tail of every backward. */
#define STORE_DX(expr)                                                     \
    do {                                                                   \
        float *restrict dx = L->dx[0];                                     \
        const float *restrict dy = L->dy;                                  \
        if (L->dx_acc[0]) for (size_t i = lo; i < hi; i++) dx[i] += dy[i] * (expr); \
        else for (size_t i = lo; i < hi; i++) dx[i] = dy[i] * (expr);      \
    } while (0)

static LARCH_HOT void relu_forward(larch_layer *L, size_t lo, size_t hi)
{
    const float *restrict x = L->x[0];
    float *restrict y = L->y;
    for (size_t i = lo; i < hi; i++) y[i] = x[i] <= 0.0f ? 0.0f : x[i];     // max(x, 0); NaN stays NaN
}
static LARCH_HOT void relu_backward(larch_layer *L, size_t lo, size_t hi)
{
    const float *restrict y = L->y;
    STORE_DX(y[i] > 0.0f ? 1.0f : 0.0f);                                     // 1 where x > 0
}

static LARCH_HOT void leaky_forward(larch_layer *L, size_t lo, size_t hi)
{
    float a = ((leaky_t *)L->priv)->slope;
    const float *restrict x = L->x[0];
    float *restrict y = L->y;
    for (size_t i = lo; i < hi; i++) y[i] = x[i] > 0.0f ? x[i] : a * x[i];  // x or a x
}
static LARCH_HOT void leaky_backward(larch_layer *L, size_t lo, size_t hi)
{
    float a = ((leaky_t *)L->priv)->slope;
    const float *restrict x = L->x[0];
    STORE_DX(x[i] > 0.0f ? 1.0f : a);
}

static LARCH_HOT void gelu_forward(larch_layer *L, size_t lo, size_t hi)
{
    const float *restrict x = L->x[0];
    float *restrict y = L->y;
    for (size_t i = lo; i < hi; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));  // x Phi(x)
}
static LARCH_HOT void gelu_backward(larch_layer *L, size_t lo, size_t hi)
{
    const float *restrict x = L->x[0];
    const float c = (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);                  // 1 / sqrt(2 pi)
    // d/dx x Phi(x) = Phi(x) + x phi(x)
    STORE_DX(0.5f * (1.0f + erff(x[i] * (float)M_SQRT1_2)) + x[i] * c * expf(-0.5f * x[i] * x[i]));
}

static LARCH_HOT void tanh_forward(larch_layer *L, size_t lo, size_t hi)
{
    const float *restrict x = L->x[0];
    float *restrict y = L->y;
    for (size_t i = lo; i < hi; i++) y[i] = tanhf(x[i]);
}
static LARCH_HOT void tanh_backward(larch_layer *L, size_t lo, size_t hi)
{
    const float *restrict y = L->y;
    STORE_DX(1.0f - y[i] * y[i]);                                            // 1 - tanh^2
}

static LARCH_HOT void sigmoid_forward(larch_layer *L, size_t lo, size_t hi)
{
    const float *restrict x = L->x[0];
    float *restrict y = L->y;
    for (size_t i = lo; i < hi; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));    // 1 / (1 + e^-x)
}
static LARCH_HOT void sigmoid_backward(larch_layer *L, size_t lo, size_t hi)
{
    const float *restrict y = L->y;
    STORE_DX(y[i] * (1.0f - y[i]));                                          // s (1 - s)
}

/* Forward and backward of each activation; a fused relu (its output buffer
 * is its input's, larch_batchnorm_fuse_relu) does nothing. */
#define ACT_OPS(name)                                                                        \
    static void name##_fwd(larch_layer *L, const larch_pass *p)                              \
    {                                                                                        \
        if (L->y != L->x[0]) act_run(L, p, name##_forward);                                  \
    }                                                                                        \
    static void name##_bwd(larch_layer *L, const larch_pass *p)                              \
    {                                                                                        \
        if (L->need_dx[0] && L->dx[0] != L->dy) act_run(L, p, name##_backward);             \
    }
ACT_OPS(relu)
ACT_OPS(leaky)
ACT_OPS(gelu)
ACT_OPS(tanh)
ACT_OPS(sigmoid)

#define ACT(name, setup_fn, destroy_fn)                                                      \
    const larch_layer_ops larch_##name##_ops = {                                             \
        .type = #name, .min_inputs = 1, .max_inputs = 1, .setup = setup_fn,                  \
        .forward = name##_fwd, .backward = name##_bwd, .destroy = destroy_fn}

ACT(relu, act_setup, NULL);
ACT(gelu, act_setup, NULL);
ACT(tanh, act_setup, NULL);
ACT(sigmoid, act_setup, NULL);
const larch_layer_ops larch_leaky_relu_ops = {
    .type = "leaky_relu", .min_inputs = 1, .max_inputs = 1, .setup = leaky_setup,
    .forward = leaky_fwd, .backward = leaky_bwd, .destroy = free_priv};
