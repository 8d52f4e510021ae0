/* reshape.c - layers that move data without arithmetic on it:
 *   flatten: (n, h, w, c) -> (n, 1, 1, h*w*c), the same bytes;
 *   add:     y = x0 + x1 (+ x2 + x3), inputs of identical shape (residual
 *            connections); every input's gradient is dy.
 */
#include "nn/layers.h"
#include "core/dispatch.h"

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

/* dx (+)= g over len floats. */
static LARCH_HOT void pass_grad(float *restrict dx, const float *restrict g, size_t len, int acc)
{
    if (acc) for (size_t i = 0; i < len; i++) dx[i] += g[i];
    else memcpy(dx, g, len * sizeof(float));
}

static void flatten_backward(larch_layer *L, const larch_pass *p)
{
    if (L->need_dx[0]) pass_grad(L->dx[0], L->dy, (size_t)p->n * larch_shape_size(L->out_shape), L->dx_acc[0]);
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

static LARCH_HOT void add_forward(larch_layer *L, const larch_pass *p)
{
    size_t len = (size_t)p->n * larch_shape_size(L->out_shape);
    float *restrict y = L->y;
    memcpy(y, L->x[0], len * sizeof(float));
    for (int k = 1; k < L->n_in; k++) {
        const float *restrict x = L->x[k];
        for (size_t i = 0; i < len; i++) y[i] += x[i];                     // y = sum_k x_k
    }
}

static void add_backward(larch_layer *L, const larch_pass *p)
{
    size_t len = (size_t)p->n * larch_shape_size(L->out_shape);
    for (int k = 0; k < L->n_in; k++)
        if (L->need_dx[k]) pass_grad(L->dx[k], L->dy, len, L->dx_acc[k]);  // dL/dx_k = dy
}

const larch_layer_ops larch_flatten_ops = {
    .type = "flatten", .min_inputs = 1, .max_inputs = 1,
    .setup = flatten_setup, .forward = flatten_forward, .backward = flatten_backward};
const larch_layer_ops larch_add_ops = {
    .type = "add", .min_inputs = 2, .max_inputs = LARCH_MAX_IN,
    .setup = add_setup, .forward = add_forward, .backward = add_backward};
