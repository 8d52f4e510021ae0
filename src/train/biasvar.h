/* biasvar.h - bias-variance decompositions of K models' test predictions
 * (docs/biasvar.md). Pure computation: no MPI, no files; `larch biasvar`
 * (src/cli/biasvar_cmd.c) trains the models and collects the predictions.
 *
 * Squared error, with the noise-free function f known (a generated
 * regression): for test point i and output j, y = f + noise, h_k the K
 * models' predictions and hbar their mean,
 *   expected error  E = mean_{i,j,k} (y - h_k)^2
 *   bias^2          B = mean_{i,j} (f - hbar)^2
 *   variance        V = mean_{i,j} mean_k (h_k - hbar)^2
 *   noise           N = mean_{i,j} (y - f)^2
 * E = B + V + N + C exactly, with C = 2 mean_{i,j} (y - f)(f - hbar): zero in
 * expectation over the noise, small but not zero on a finite test set, and
 * reported as the check.
 *
 * 0-1 loss (Domingos 2000; the labels taken as noise-free): for test point
 * i with label t, the main prediction ym is the most frequent of the K
 * predicted classes (ties: the smallest class), bias B(i) = [ym != t],
 * variance V(i) = P_k(h_k != ym), loss L(i) = P_k(h_k != t). Means over i:
 * bias, the unbiased variance Vu (V where B = 0), the biased variance Vb (V
 * where B = 1), net variance Vu - Vb. With two classes L = B + Vu - Vb
 * exactly; with more, L = B + Vu - Vb_w, where Vb_w = mean over the biased
 * points of P_k(h_k = t) (Domingos' c2 = -P(h = t | h != ym)), also reported. */
#ifndef LARCH_TRAIN_BIASVAR_H
#define LARCH_TRAIN_BIASVAR_H

#include <stdint.h>
#include "larch/error.h"

typedef struct larch_bv_squared {
    double expected_error, bias2, variance, noise;
    double cross;            /* E - (B + V + N): the finite-sample cross term */
} larch_bv_squared;

/* pred: K x n x d (model-major), clean and noisy: n x d. */
larch_status larch_bv_squared_decompose(const float *pred, int K, int n, int d, const float *clean, const float *noisy,
                                        larch_bv_squared *out);

typedef struct larch_bv_zero_one {
    double loss, bias, var_unbiased, var_biased, net_variance;
    double var_biased_weighted;  /* mean over biased points of P(h = t)  */
    double variance;             /* mean V(i) over all points            */
} larch_bv_zero_one;

/* pred: K x n predicted classes in [0, classes), labels: n. */
larch_status larch_bv_zero_one_decompose(const int32_t *pred, int K, int n, int classes, const int32_t *labels,
                                         larch_bv_zero_one *out);

#endif
