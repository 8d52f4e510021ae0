/* reshape.c - layers that move data without arithmetic on it:
 *   flatten: (n, h, w, c) -> (n, 1, 1, h*w*c), the same bytes;
 *   add:     y = x0 + x1 (+ x2 + x3), inputs of identical shape (residual
 *            connections); every input's gradient is dy.
 */
#include "nn/layers.h"
#include "core/dispatch.h"
#include "core/threads.h"

#include <string.h>

static larch_status flatten_setup(larch_layer *L, const void *opts)
{
    L->out_shape = (larch_shape){1, 1, (int)larch_shape_size(L->in_shape[0])};
    return LARCH_OK;
}

static void flatten_forward(larch_layer *L, const larch_pass *p)
{
    memcpy(L->y, L->x[0], (size_t)p->n * larch_shape_size(L->out_shape) * sizeof(float));
}

/* dx (+)= g over [lo, hi). */
static LARCH_HOT void pass_grad(float *restrict dx, const float *restrict g, size_t lo, size_t hi, int acc)
{
    if (acc) for (size_t i = lo; i < hi; i++) dx[i] += g[i];
    else memcpy(dx + lo, g + lo, (hi - lo) * sizeof(float));
}

/* The passes split their elements over threads (core/threads.h); each
 * element is written once, so the split changes nothing. */
#define RESHAPE_GRAIN 32768   /* elements per parallel range, at least */
typedef struct { float *dx; const float *g; int acc; larch_layer *L; } grad_job;
static void grad_range(void *ctx, size_t lo, size_t hi)
{
    const grad_job *j = ctx;
    pass_grad(j->dx, j->g, lo, hi, j->acc);
}
static void pass_grad_par(float *dx, const float *g, size_t len, int acc)
{
    grad_job j = {dx, g, acc, NULL};
    larch_parallel_for(len, RESHAPE_GRAIN, grad_range, &j);
}

static void flatten_backward(larch_layer *L, const larch_pass *p)
{
    if (L->need_dx[0]) pass_grad_par(L->dx[0], L->dy, (size_t)p->n * larch_shape_size(L->out_shape), L->dx_acc[0]);
}

static larch_status add_setup(larch_layer *L, const void *opts)
{
    larch_shape s = L->in_shape[0];
    for (int i = 1; i < L->n_in; i++) {
        larch_shape t = L->in_shape[i];
        if (t.h != s.h || t.w != s.w || t.c != s.c)
            return LARCH_LAYER_FAIL(L, LARCH_ERR_SHAPE, "input %d has shape (%d, %d, %d) but input 0 has (%d, %d, %d)",
                                    i, t.h, t.w, t.c, s.h, s.w, s.c);
    }
    L->out_shape = s;
    return LARCH_OK;
}

/* y = sum_k x_k over [lo, hi), in input order. */
static LARCH_HOT void add_forward(void *ctx, size_t lo, size_t hi)
{
    const larch_layer *L = ((const grad_job *)ctx)->L;
    float *restrict y = L->y;
    const float *restrict x0 = L->x[0], *restrict x1 = L->x[1];
    for (size_t i = lo; i < hi; i++) y[i] = x0[i] + x1[i];
    for (int k = 2; k < L->n_in; k++) {
        const float *restrict x = L->x[k];
        for (size_t i = lo; i < hi; i++) y[i] += x[i];
    }
}

static void add_fwd(larch_layer *L, const larch_pass *p)
{
    grad_job j = {.L = L};
    larch_parallel_for((size_t)p->n * larch_shape_size(L->out_shape), RESHAPE_GRAIN, add_forward, &j);
}

static void add_backward(larch_layer *L, const larch_pass *p)
{
    size_t len = (size_t)p->n * larch_shape_size(L->out_shape);
    for (int k = 0; k < L->n_in; k++)
        if (L->need_dx[k]) pass_grad_par(L->dx[k], L->dy, len, L->dx_acc[k]);  // dL/dx_k = dy
}

const larch_layer_ops larch_flatten_ops = {
    .type = "flatten", .min_inputs = 1, .max_inputs = 1,
    .setup = flatten_setup, .forward = flatten_forward, .backward = flatten_backward};
const larch_layer_ops larch_add_ops = {
    .type = "add", .min_inputs = 2, .max_inputs = LARCH_MAX_IN,
    .setup = add_setup, .forward = add_fwd, .backward = add_backward};
