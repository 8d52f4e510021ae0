/* lamb.c - layer-wise adaptive moments (You et al. 2019, Algorithm 2), per
 * tensor:
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   m' = m / (1 - beta1^t), v' = v / (1 - beta2^t)   (bias_correction: true)
 *   u = m' / (sqrt(v') + eps) + wd w
 *   ratio = ||w|| / ||u||   (1 when either norm is 0; clamped to
 *                            [trust_min, trust_max] when trust_max > 0)
 *   w -= lr ratio u
 * Tensors the trust ratio does not apply to take ratio = 1 (AdamW-like).
 * Two passes over all tensors (optimizer.c): moments and norms, then the
 * update (u is recomputed, not stored); the norms of a tensor split over
 * ranks by optimizer-state sharding are summed over the ranks in between.
 */
#include "optim/optim_internal.h"
#include "core/dispatch.h"

#include <math.h>

/* Pass 1: moments, and ||w||^2, ||u||^2 of this part in 8 independent lanes
 * (a single double accumulator would serialize the loop on its add latency). */
LARCH_HOT void larch_lamb_norms(const optim_step_ctx *c, const optim_tensor *v)
{
    const larch_optim *o = c->o;
    float *restrict w = v->w, *restrict m = v->s[0], *restrict s2 = v->s[1];
    const float *restrict g = v->g;
    const float b1 = o->beta1, b2 = o->beta2, eps = o->eps, wd = v->wd;
    const int bc = o->bias_correction;
    const float rbc1 = bc ? (float)(1.0 / (1.0 - pow(b1, (double)v->t))) : 1.0f;
    const float rbc2 = bc ? (float)(1.0 / (1.0 - pow(b2, (double)v->t))) : 1.0f;
    double wl[8] = {0}, ul[8] = {0}, wsq = 0.0, usq = 0.0;
    size_t i = 0;
    for (; i + 8 <= v->n; i += 8)
        for (int k = 0; k < 8; k++) {
            size_t j = i + (size_t)k;
            m[j] = b1 * m[j] + (1.0f - b1) * g[j];
            s2[j] = b2 * s2[j] + (1.0f - b2) * g[j] * g[j];
            float u = m[j] * rbc1 / (sqrtf(s2[j] * rbc2) + eps) + wd * w[j];
            wl[k] += (double)w[j] * w[j];
            ul[k] += (double)u * u;
        }
    for (; i < v->n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        s2[i] = b2 * s2[i] + (1.0f - b2) * g[i] * g[i];
        float u = m[i] * rbc1 / (sqrtf(s2[i] * rbc2) + eps) + wd * w[i];
        wsq += (double)w[i] * w[i];
        usq += (double)u * u;
    }
    for (int k = 0; k < 8; k++) { wsq += wl[k]; usq += ul[k]; }
    v->norms[0] += wsq;
    v->norms[1] += usq;
}

/* Pass 2: the update, with u recomputed from the moments. */
LARCH_HOT void larch_lamb_update(const optim_step_ctx *c, const optim_tensor *v)
{
    const larch_optim *o = c->o;
    float *restrict w = v->w, *restrict m = v->s[0], *restrict s2 = v->s[1];
    const float eps = o->eps, wd = v->wd;
    const int bc = o->bias_correction;
    const float rbc1 = bc ? (float)(1.0 / (1.0 - pow(o->beta1, (double)v->t))) : 1.0f;
    const float rbc2 = bc ? (float)(1.0 / (1.0 - pow(o->beta2, (double)v->t))) : 1.0f;
    const double ratio = v->adapt ? larch_trust_ratio(o, sqrt(v->norms[0]), sqrt(v->norms[1])) : 1.0;
    const float rate = (float)(v->lr * ratio);
    for (size_t i = 0; i < v->n; i++) {
        float u = m[i] * rbc1 / (sqrtf(s2[i] * rbc2) + eps) + wd * w[i];
        w[i] -= rate * u;
    }
}
