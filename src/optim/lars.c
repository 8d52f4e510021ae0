/* lars.c - layer-wise adaptive rate scaling (You, Gitman, Ginsburg 2017),
 * per tensor, with the learning rate inside the momentum buffer as in the
 * paper's Algorithm 1:
 *   local = eta ||w|| / (||g|| + wd ||w||)   (clamped to [trust_min, trust_max])
 *   rate  = lr local                         (lars_mode: scale, the paper)
 *         = min(local, lr)                   (lars_mode: clip, apex LARC's
 *                                             clip=True: adaptive_lr =
 *                                             min(local / lr, 1) times lr)
 *   v = momentum v + rate (g + wd w);   w -= v
 * A zero ||w|| or ||g|| takes local = 1 (scale) or rate = lr (clip: LARC
 * leaves such a gradient unscaled). Tensors the trust ratio does not apply
 * to (biases and normalization parameters by default) take rate = lr:
 * momentum SGD. At a constant lr, lr inside the buffer equals LARC's torch
 * SGD with lr outside it.
 */
#include "optim/optim_internal.h"
#include "core/dispatch.h"

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

LARCH_HOT void larch_lars_update(const optim_step_ctx *c, const optim_tensor *v)
{
    const larch_optim *o = c->o;
    float *restrict w = v->w, *restrict b = v->s[0];
    const float *restrict g = v->g;
    const float wd = v->wd, mom = o->momentum;
    double rate = v->lr;
    if (v->adapt) {
        double wn = sqrt(v->norms[0]), gn = sqrt(v->norms[1]);
        if (wn > 0.0 && gn > 0.0) {
            double local = larch_trust_ratio(o, o->trust_coef * wn, gn + wd * wn);
            rate = o->lars_clip ? (local < v->lr ? local : v->lr) : v->lr * local;
        } else if (!o->lars_clip) {
            rate = v->lr * larch_trust_ratio(o, 0.0, 0.0);
        }
    }
    const float r = (float)rate;
    for (size_t i = 0; i < v->n; i++) {
        b[i] = mom * b[i] + r * (g[i] + wd * w[i]);
        w[i] -= b[i];
    }
}
