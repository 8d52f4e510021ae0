/* loss_weights.c - the layer that holds the learned log-variances s of
 * uncertainty-weighted losses (see loss.c). It is not a config layer type:
 * larch_model_finalize appends it, named "loss_weights", when some loss has
 * `weighting: uncertainty`. Its one tensor, log_var (one value per such
 * loss, role norm: no weight decay, no trust ratio), lives in the flat
 * buffers like every parameter; nothing flows through the layer itself
 * (its output is a constant zero per sample), and its gradient comes from
 * larch_model_loss by way of larch_model_backward.
 */
#include "nn/layers.h"

#include <string.h>

static larch_status lw_setup(larch_layer *L, const void *opts)
{
    (void)opts;
    const larch_model *m = L->model;
    int n = 0;
    for (int k = 0; k < m->n_losses; k++) n += m->losses[k].uncertainty;
    larch_layer_add_param(L, "log_var", LARCH_ROLE_NORM, 1, &n, 1, 1);
    L->out_shape = (larch_shape){1, 1, 1};
    return LARCH_OK;
}

static void lw_init(larch_layer *L, uint64_t seed)
{
    (void)seed;
    const larch_model *m = L->model;
    float *s = larch_layer_param(L, 0);
    for (int k = 0; k < m->n_losses; k++)
        if (m->losses[k].uncertainty) s[m->losses[k].log_var] = m->losses[k].log_var_init;
}

static void lw_forward(larch_layer *L, const larch_pass *p)
{
    memset(L->y, 0, (size_t)p->n * sizeof *L->y);
}

static void lw_backward(larch_layer *L, const larch_pass *p)
{
    (void)L;
    (void)p;
}

const larch_layer_ops larch_loss_weights_ops = {
    .type = "loss_weights",
    .min_inputs = 1,
    .max_inputs = 1,
    .setup = lw_setup,
    .init = lw_init,
    .forward = lw_forward,
    .backward = lw_backward,
};
