/* ntk.h - neural tangent kernels, the pure math (docs/ntk.md): the rows of
 * the Jacobian of a model's outputs with respect to its parameters by
 * backward passes, the per-parameter weights of the NTK parameterization,
 * the analytic infinite-width NTK and NNGP of a ReLU MLP (arc-cosine
 * recursions), eigenvalues (LAPACK dsyevd) and kernel regression (dposv).
 * Nothing here knows about ranks; src/train/ntk.c spreads the rows. */
#ifndef LARCH_NN_NTK_H
#define LARCH_NN_NTK_H

#include <stddef.h>
#include "larch/model.h"

/* Rows of J = d(outputs of `node`)/d(parameters) for n samples x (n, input
 * shape): row i*K + k (K = the node's outputs per sample) is the gradient
 * of output k of sample i over the flat parameter buffer (n_floats columns;
 * padding and frozen parameters give zero columns), multiplied column by
 * column by col_scale (NULL: by 1). Each sample runs one eval-mode forward
 * of batch 1 and K backward passes seeded with the one-hot output gradient
 * e_k. The model must be planned (max batch >= 1), some loss must score
 * `node` and no layer read it (a model output; else LARCH_ERR_INVALID
 * naming the layer). Overwrites the model's
 * gradient buffer and activations. ldj >= n_floats. */
larch_status larch_ntk_jacobian(larch_model *m, int node, const float *x, int n, const float *col_scale, float *J,
                                size_t ldj);

/* The NTK parameterization's column weights (n_floats values): a weight
 * tensor of a dense layer drawn with variance v (he: 2/fan_in, lecun:
 * 1/fan_in, xavier: 2/(fan_in + fan_out)) is theta = sqrt(v) omega with
 * omega ~ N(0, 1); d/d omega = sqrt(v) d/d theta, so its columns get
 * sqrt(v). Biases (initialized to zero: variance 0) and padding get 0. Fails
 * (LARCH_ERR_INVALID, naming the layer) for a parameter of any other layer
 * type. */
larch_status larch_ntk_init_scale(const larch_model *m, float *scale);

/* A ReLU MLP as the analytic kernels see it: dense layers in a chain
 * (optionally after flatten), each read from the input, from a relu of the
 * previous dense layer, or from the previous dense layer directly. */
#define LARCH_NTK_MAX_DENSE 64
typedef struct larch_ntk_mlp {
    int n_dense;
    double s[LARCH_NTK_MAX_DENSE];     /* sigma_w^2 = weight variance * fan_in */
    int relu[LARCH_NTK_MAX_DENSE];     /* dense h reads relu(previous dense)   */
    int in_dim, outputs;
} larch_ntk_mlp;
/* Reads the chain ending at `node` (a dense layer's output); fails with
 * LARCH_ERR_INVALID naming the first layer that is not part of a ReLU MLP. */
larch_status larch_ntk_mlp_describe(const larch_model *m, int node, larch_ntk_mlp *d);

/* The infinite-width kernels of one output unit between x1 (n1 samples) and
 * x2 (n2), both (n, in_dim), row-major (n1, n2) in ntk and nngp (either may
 * be NULL):
 *   Sigma_1(x, x') = s_1 x.x' / in_dim,       Theta_1 = Sigma_1,
 *   Sigma_{h+1} = s_{h+1} E[phi(u) phi(v)],   dSigma_{h+1} = s_{h+1} E[phi'(u) phi'(v)],
 *   Theta_{h+1} = Theta_h dSigma_{h+1} + Sigma_{h+1},
 * (u, v) ~ N(0, Sigma_h on {x, x'}), phi = relu (arc-cosine kernels of
 * degree 1 and 0, Cho & Saul 2009) or the identity. nngp = Sigma and ntk =
 * Theta of the last dense layer. Returns LARCH_ERR_NOMEM or LARCH_OK. */
larch_status larch_ntk_analytic(const larch_ntk_mlp *d, const float *x1, int n1, const float *x2, int n2, double *ntk,
                                double *nngp);

/* Eigenvalues of the symmetric n x n matrix a (not changed), in descending
 * order, by LAPACK dsyevd. */
larch_status larch_ntk_eigvals(const double *a, int n, double *w);

/* Kernel regression: pred (m, k) = Kx (m, n) (Ktr + ridge * mean(diag Ktr) I)^-1 Y (n, k),
 * solved by Cholesky (dposv); LARCH_ERR_NUMERIC when the matrix is not
 * positive definite (raise the ridge). */
larch_status larch_ntk_regress(const double *Ktr, int n, const double *Y, int k, const double *Kx, int m, double ridge,
                               double *pred);

/* The linearized network after `steps` full-batch gradient-descent steps
 * on the squared error from f = 0 (Lee et al. 2019): on the training set
 * f_T - Y = -(I - c Ktr)^T Y, elsewhere pred (m, k) = Kx Ktr^-1 (I - (I - c
 * Ktr)^T) Y, by the eigenvectors of Ktr (dsyevd). c is the step on the
 * kernel: for larch's mse loss (mean over k outputs and n samples) and
 * learning rate eta of the NTK parameterization, c = 2 eta / (k n).
 * train_loss (may be NULL): the mean over n k of (f_T - Y)^2 on the training
 * set. LARCH_ERR_NUMERIC when c times the largest eigenvalue reaches 2 (the
 * descent diverges). */
larch_status larch_ntk_gd_predict(const double *Ktr, int n, const double *Y, int k, const double *Kx, int m, double c,
                                  long steps, double *pred, double *train_loss);

#endif
