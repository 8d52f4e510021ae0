/* lars.c - layer-wise adaptive rate scaling (You, Gitman, Ginsburg 2017),
 * per tensor, with the learning rate inside the momentum buffer as in the
 * paper's Algorithm 1:
 *   local = eta ||w|| / (||g|| + wd ||w||)   (1 when ||w|| or ||g|| is 0;
 *                                             clamped to [trust_min, trust_max])
 *   v = momentum v + lr local (g + wd w);   w -= v
 * Tensors the trust ratio does not apply to (biases and normalization
 * parameters by default) take local = 1: momentum SGD at rate lr.
 */
#include "optim/optim_internal.h"

#include <math.h>

double larch_trust_ratio(const larch_optim *o, double num, double den)
{
    double r = num > 0.0 && den > 0.0 ? num / den : 1.0;
    if (r < o->trust_min) r = o->trust_min;
    if (o->trust_max > 0.0f && r > o->trust_max) r = o->trust_max;
    return r;
}

void larch_lars_norms(const optim_step_ctx *c, const optim_tensor *v)
{
    (void)c;
    if (!v->adapt) return;
    v->norms[0] += larch_sumsq(v->w, v->n);
    v->norms[1] += larch_sumsq(v->g, v->n);
}

void larch_lars_update(const optim_step_ctx *c, const optim_tensor *v)
{
    const larch_optim *o = c->o;
    float *restrict w = v->w, *restrict b = v->s[0];
    const float *restrict g = v->g;
    const float wd = v->wd, mom = o->momentum;
    double local = 1.0;
    if (v->adapt) {
        double wn = sqrt(v->norms[0]), gn = sqrt(v->norms[1]);
        local = wn > 0.0 && gn > 0.0 ? larch_trust_ratio(o, o->trust_coef * wn, gn + wd * wn)
                                     : larch_trust_ratio(o, 0.0, 0.0);
    }
    const float rate = (float)(v->lr * local);
    for (size_t i = 0; i < v->n; i++) {
        b[i] = mom * b[i] + rate * (g[i] + wd * w[i]);
        w[i] -= b[i];
    }
}
