/* sgd.c - stochastic gradient descent with momentum, dampening and Nesterov,
 * as PyTorch's torch.optim.SGD defines it (the learning rate outside the
 * momentum buffer):
 *   g = grad + wd * w
 *   b = g                              (first step)
 *   b = momentum * b + (1 - dampening) * g   (later steps)
 *   d = g + momentum * b  (Nesterov)   or   d = b
 *   w = w - lr * d
 * Weight decay is multiplied by each tensor's wd_mult (0 for biases and
 * normalization parameters by default) and lr by its lr_mult.
 */
#include "larch/optim.h"

#include <stdlib.h>
#include <string.h>

const larch_key larch_optim_keys[] = {
    {"name", LARCH_T_ENUM, "sgd", 0, 0, "sgd", NULL, "optimizer"},
    {"lr", LARCH_T_FLOAT, "0.1", 0, 1e4, NULL, NULL, "base learning rate"},
    {"momentum", LARCH_T_FLOAT, "0.9", 0, 0.999999, NULL, NULL, "momentum coefficient"},
    {"dampening", LARCH_T_FLOAT, "0", 0, 1, NULL, NULL, "momentum dampening"},
    {"nesterov", LARCH_T_BOOL, "false", 0, 0, NULL, NULL, "Nesterov momentum"},
    {"weight_decay", LARCH_T_FLOAT, "0", 0, 1, NULL, NULL, "L2 weight decay added to the gradient"},
    {0}};

larch_status larch_optim_create(larch_optim **out, larch_model *m, const larch_node *cfg)
{
    *out = NULL;
    larch_optim *o = larch_calloc(1, sizeof *o, "optimizer");
    if (!o) return LARCH_ERR_NOMEM;
    o->name = "sgd";
    o->model = m;
    o->momentum = (float)larch_cfg_float(cfg, "momentum");
    o->dampening = (float)larch_cfg_float(cfg, "dampening");
    o->nesterov = larch_cfg_bool(cfg, "nesterov");
    o->weight_decay = (float)larch_cfg_float(cfg, "weight_decay");
    if (o->nesterov && (o->momentum <= 0.0f || o->dampening != 0.0f)) {
        free(o);
        return larch_fail(LARCH_ERR_CONFIG, "optim.nesterov: Nesterov momentum needs momentum > 0 and dampening = 0");
    }
    if (o->momentum > 0.0f) {
        o->n_state = 1;
        o->state_names[0] = "momentum";
        o->state[0] = larch_aligned_alloc((m->n_floats ? m->n_floats : 1) * sizeof(float), "optimizer state");
        if (!o->state[0]) { free(o); return LARCH_ERR_NOMEM; }
    }
    *out = o;
    return LARCH_OK;
}

void larch_optim_free(larch_optim *o)
{
    if (!o) return;
    for (int k = 0; k < o->n_state; k++) free(o->state[k]);
    free(o);
}

/* SGD on one tensor slice: w, g, b are (n) views. */
static void sgd_slice(float *restrict w, const float *restrict g, float *restrict b, size_t n,
                      float lr, float wd, float mom, float damp, int nesterov, int first)
{
    if (!b) {                                             // plain SGD
        for (size_t i = 0; i < n; i++) w[i] -= lr * (g[i] + wd * w[i]);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * w[i];                      // L2 decay into the gradient
        float bi = first ? gi : mom * b[i] + (1.0f - damp) * gi;  // momentum buffer
        b[i] = bi;
        w[i] -= lr * (nesterov ? gi + mom * bi : bi);     // Nesterov look-ahead or heavy ball
    }
}

void larch_optim_step(larch_optim *o, float lr, size_t lo, size_t hi)
{
    larch_model *m = o->model;
    for (int i = 0; i < m->n_params; i++) {
        const larch_param *p = &m->params[i];
        if (p->lr_mult == 0.0f) continue;                 // frozen
        size_t a = p->offset > lo ? p->offset : lo, z = p->offset + p->size < hi ? p->offset + p->size : hi;
        if (a >= z) continue;
        sgd_slice(m->param + a, m->grad + a, o->n_state ? o->state[0] + a : NULL, z - a,
                  lr * p->lr_mult, o->weight_decay * p->wd_mult, o->momentum, o->dampening,
                  o->nesterov, o->t == 0);
    }
    o->t++;
}
