/* biasvar.c - bias-variance decompositions (see biasvar.h). */
#include "train/biasvar.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

larch_status larch_bv_squared_decompose(const float *pred, int K, int n, int d, const float *clean, const float *noisy,
                                        larch_bv_squared *out)
{
    memset(out, 0, sizeof *out);
    if (K < 1 || n < 1 || d < 1) return larch_fail(LARCH_ERR_INVALID, "bias-variance: %d models, %d points, %d outputs", K, n, d);
    double E = 0, B = 0, V = 0, N = 0;
    size_t nd = (size_t)n * (size_t)d;
    for (size_t p = 0; p < nd; p++) {
        double hbar = 0;
        for (int k = 0; k < K; k++) hbar += pred[(size_t)k * nd + p];
        hbar /= K;
        double f = clean[p], y = noisy[p], var = 0, err = 0;
        for (int k = 0; k < K; k++) {
            double h = pred[(size_t)k * nd + p];
            var += (h - hbar) * (h - hbar);
            err += (y - h) * (y - h);
        }
        if (!isfinite(var) || !isfinite(err) || !isfinite(f) || !isfinite(y))
            return larch_fail(LARCH_ERR_NUMERIC, "bias-variance: a prediction or target of test point %zu, output %zu is "
                              "not finite", p / (size_t)d, p % (size_t)d);
        E += err / K;
        V += var / K;
        B += (f - hbar) * (f - hbar);
        N += (y - f) * (y - f);
    }
    out->expected_error = E / (double)nd;
    out->bias2 = B / (double)nd;
    out->variance = V / (double)nd;
    out->noise = N / (double)nd;
    out->cross = out->expected_error - (out->bias2 + out->variance + out->noise);
    return LARCH_OK;
}

larch_status larch_bv_zero_one_decompose(const int32_t *pred, int K, int n, int classes, const int32_t *labels,
                                         larch_bv_zero_one *out)
{
    memset(out, 0, sizeof *out);
    if (K < 1 || n < 1 || classes < 1)
        return larch_fail(LARCH_ERR_INVALID, "bias-variance: %d models, %d points, %d classes", K, n, classes);
    int *count = calloc((size_t)classes, sizeof *count);
    if (!count) return larch_fail(LARCH_ERR_NOMEM, "bias-variance: out of memory");
    double L = 0, Bs = 0, Vu = 0, Vb = 0, Vbw = 0, Vall = 0;
    for (int i = 0; i < n; i++) {
        memset(count, 0, (size_t)classes * sizeof *count);
        int t = labels[i];
        if (t < 0 || t >= classes) {
            free(count);
            return larch_fail(LARCH_ERR_INVALID, "bias-variance: label %d of test point %d is not in 0..%d", t, i, classes - 1);
        }
        for (int k = 0; k < K; k++) {
            int h = pred[(size_t)k * (size_t)n + (size_t)i];
            if (h < 0 || h >= classes) {
                free(count);
                return larch_fail(LARCH_ERR_INVALID, "bias-variance: model %d predicts class %d for test point %d (not in 0..%d)",
                                  k, h, i, classes - 1);
            }
            count[h]++;
        }
        int ym = 0;
        for (int c = 1; c < classes; c++) if (count[c] > count[ym]) ym = c;
        double v = 1.0 - (double)count[ym] / K, pt = (double)count[t] / K;
        L += 1.0 - pt;
        Vall += v;
        if (ym == t) Vu += v;
        else { Bs += 1.0; Vb += v; Vbw += pt; }
    }
    free(count);
    out->loss = L / n;
    out->bias = Bs / n;
    out->var_unbiased = Vu / n;
    out->var_biased = Vb / n;
    out->net_variance = out->var_unbiased - out->var_biased;
    out->var_biased_weighted = Vbw / n;
    out->variance = Vall / n;
    return LARCH_OK;
}
