/* sgd.c - stochastic gradient descent with momentum, dampening and Nesterov,
 * as PyTorch's torch.optim.SGD defines it (the learning rate outside the
 * momentum buffer):
 *   g = grad + wd * w
 *   b = g                                    (first step)
 *   b = momentum * b + (1 - dampening) * g   (later steps)
 *   d = g + momentum * b  (Nesterov)   or   d = b
 *   w = w - lr * d
 */
#include "optim/optim_internal.h"
#include "core/dispatch.h"

LARCH_HOT void larch_sgd_update(const optim_step_ctx *c, const optim_tensor *v)
{
    const larch_optim *o = c->o;
    float *restrict w = v->w, *restrict b = v->s[0];
    const float *restrict g = v->g;
    const float lr = v->lr, wd = v->wd, mom = o->momentum, damp = o->dampening;
    if (!b) {                                             // plain SGD
        for (size_t i = 0; i < v->n; i++) w[i] -= lr * (g[i] + wd * w[i]);
        return;
    }
    const int first = v->t == 1, nesterov = o->nesterov;
    for (size_t i = 0; i < v->n; i++) {
        float gi = g[i] + wd * w[i];                      // L2 decay into the gradient
        float bi = first ? gi : mom * b[i] + (1.0f - damp) * gi;
        b[i] = bi;
        w[i] -= lr * (nesterov ? gi + mom * bi : bi);     // Nesterov look-ahead or heavy ball
    }
}
