/* distill.c - the knowledge-distillation loss (Hinton, Vinyals and Dean
 * 2015; docs/compression/distillation.md) that the first softmax_ce loss
 * of a model computes while model->distill_logits is set (the trainer sets
 * it to the teacher's logits of the micro-batch, and clears it again):
 *
 *   L = alpha T^2 KL(softmax(t / T) || softmax(z / T)) + (1 - alpha) CE(z, q)
 *
 * with q the (smoothed) one-hot target. Per sample, with p^T = softmax(z/T)
 * and r^T = softmax(t/T): KL = sum_j r_j (log r_j - log p_j), dKL/dz_j =
 * (p_j - r_j) / T, so dL/dz_j = alpha T (p_j^T - r_j^T) + (1 - alpha)
 * (p_j - q_j). The T^2 keeps the soft term's gradient magnitude independent
 * of T, as the paper says. Sums in double, like softmax_ce. */
#include "nn/layers.h"
#include "nn/loss.h"
#include "core/dispatch.h"

#include <math.h>

int larch_distill_loss_index(const larch_model *m)
{
    for (int k = 0; k < m->n_losses; k++)
        if (m->losses[k].type == LARCH_LOSS_SOFTMAX_CE) return k;
    return -1;
}

/* log sum_j exp(v_j / T) and the max, for row v of C values. */
static double lse_T(const float *v, int C, double T)
{
    double vmax = v[0];
    for (int j = 1; j < C; j++) if (v[j] > vmax) vmax = v[j];
    double sum = 0.0;
    for (int j = 0; j < C; j++) sum += exp(((double)v[j] - vmax) / T);
    return vmax / T + log(sum);
}

LARCH_HOT void larch_distill_ce(const float *z, const float *t, const int32_t *y, int n, int C, float eps, float alpha,
                                float T, float scale, float *dz, int acc, larch_loss_stats *st)
{
    const double a = alpha, tt = T;
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * C, *ti = t + (size_t)i * C;
        int yi = y[i], arg = 0;
        for (int j = 1; j < C; j++) if (zi[j] > zi[arg]) arg = j;
        double lse1 = lse_T(zi, C, 1.0), lsez = lse_T(zi, C, tt), lset = lse_T(ti, C, tt);
        double ce = lse1, kl = 0.0;
        for (int j = 0; j < C; j++) {
            double q = (j == yi ? 1.0 - eps : 0.0) + eps / C;
            ce -= q * zi[j];
            double lr = ti[j] / tt - lset, lp = zi[j] / tt - lsez;   /* log r_j, log p_j at T */
            kl += exp(lr) * (lr - lp);
        }
        st->loss_sum += a * tt * tt * kl + (1.0 - a) * ce;
        st->correct += arg == yi;
        st->count++;
        if (!dz) continue;
        float *di = dz + (size_t)i * C;
        for (int j = 0; j < C; j++) {
            double q = (j == yi ? 1.0 - eps : 0.0) + eps / C;
            double pT = exp(zi[j] / tt - lsez), rT = exp(ti[j] / tt - lset), p1 = exp(zi[j] - lse1);
            larch_store(&di[j], (float)((a * tt * (pT - rT) + (1.0 - a) * (p1 - q)) * scale), acc);
        }
    }
}
