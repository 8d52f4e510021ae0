/* adam.c - the Adam family over one tensor (t is the tensor's own 1-based step,
 * bc1 = 1 - beta1^t, bc2 = 1 - beta2^t; weight decay either L2 in the
 * gradient, g += wd w, or decoupled, w -= lr wd w before the step):
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   adam/adamw: w -= lr / bc1 * m / (sqrt(v') / sqrt(bc2) + eps),
 *               v' = v, or with AMSGrad the running maximum of v
 *   nadam:  (Dozat 2016 with PyTorch's momentum schedule
 *            mu_t = beta1 (1 - 0.5 * 0.96^(t psi)), prod_t = mu_1 ... mu_t)
 *           d = sqrt(v / bc2) + eps
 *           w -= lr (1 - mu_t) / (1 - prod_t) g / d
 *                + lr mu_{t+1} / (1 - prod_t mu_{t+1}) m / d
 *   radam:  rho_inf = 2 / (1 - beta2) - 1, rho_t = rho_inf - 2 t beta2^t / bc2;
 *           while rho_t > threshold: r = sqrt((rho_t-4)(rho_t-2) rho_inf /
 *           ((rho_inf-4)(rho_inf-2) rho_t)), w -= lr m / bc1 * r sqrt(bc2) / (sqrt(v) + eps);
 *           before that an un-adapted momentum step w -= lr m / bc1
 *   adamod: eta = lr sqrt(bc2) / bc1 / (sqrt(v) + eps);
 *           s = beta3 s + (1 - beta3) eta;  w -= min(eta, s) m
 */
#include "optim/optim_internal.h"
#include "core/dispatch.h"

#include <math.h>

LARCH_HOT void larch_adam_update(const optim_step_ctx *c, const optim_tensor *v)
{
    const larch_optim *o = c->o;
    float *restrict w = v->w, *restrict m = v->s[0], *restrict s2 = v->s[1], *restrict s3 = v->s[2];
    const float *restrict g = v->g;
    const float b1 = o->beta1, b2 = o->beta2, eps = o->eps, lr = v->lr;
    const double bc1 = 1.0 - pow(b1, (double)v->t), bc2 = 1.0 - pow(b2, (double)v->t);
    const float l2 = o->decoupled ? 0.0f : v->wd;
    if (o->decoupled && v->wd != 0.0f) {
        const float keep = 1.0f - lr * v->wd;
        for (size_t i = 0; i < v->n; i++) w[i] *= keep;
    }
    switch (o->kind) {
    case LARCH_OPT_NADAM: {
        const float a = (float)(lr * (1.0 - v->mu_t) / (1.0 - v->mu_product));
        const float b = (float)(lr * v->mu_next / (1.0 - v->mu_product * v->mu_next));
        const float rbc2 = (float)(1.0 / bc2);
        for (size_t i = 0; i < v->n; i++) {
            float gi = g[i] + l2 * w[i];
            m[i] = b1 * m[i] + (1.0f - b1) * gi;
            s2[i] = b2 * s2[i] + (1.0f - b2) * gi * gi;
            float d = sqrtf(s2[i] * rbc2) + eps;
            w[i] -= (a * gi + b * m[i]) / d;
        }
        break;
    }
    case LARCH_OPT_RADAM: {
        const double rho_inf = 2.0 / (1.0 - b2) - 1.0;
        const double rho_t = rho_inf - 2.0 * (double)v->t * pow(b2, (double)v->t) / bc2;
        const int rectify = rho_t > o->rho_threshold;
        const float step = (float)(lr / bc1);
        const float r = rectify ? (float)sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf /
                                              ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t) * bc2) : 0.0f;
        for (size_t i = 0; i < v->n; i++) {
            float gi = g[i] + l2 * w[i];
            m[i] = b1 * m[i] + (1.0f - b1) * gi;
            s2[i] = b2 * s2[i] + (1.0f - b2) * gi * gi;
            w[i] -= rectify ? step * m[i] * r / (sqrtf(s2[i]) + eps) : step * m[i];
        }
        break;
    }
    case LARCH_OPT_ADAMOD: {
        const float step = (float)(lr * sqrt(bc2) / bc1), b3 = o->beta3;
        for (size_t i = 0; i < v->n; i++) {
            float gi = g[i] + l2 * w[i];
            m[i] = b1 * m[i] + (1.0f - b1) * gi;
            s2[i] = b2 * s2[i] + (1.0f - b2) * gi * gi;
            float eta = step / (sqrtf(s2[i]) + eps);
            s3[i] = b3 * s3[i] + (1.0f - b3) * eta;
            w[i] -= (eta < s3[i] ? eta : s3[i]) * m[i];
        }
        break;
    }
    default: {                                           /* adam, adamw */
        const float step = (float)(lr / bc1), rsbc2 = (float)(1.0 / sqrt(bc2));
        for (size_t i = 0; i < v->n; i++) {
            float gi = g[i] + l2 * w[i];
            m[i] = b1 * m[i] + (1.0f - b1) * gi;
            float vi = s2[i] = b2 * s2[i] + (1.0f - b2) * gi * gi;
            if (s3) vi = s3[i] = s3[i] > vi ? s3[i] : vi;      /* AMSGrad */
            w[i] -= step * m[i] / (sqrtf(vi) * rsbc2 + eps);
        }
        break;
    }
    }
}
