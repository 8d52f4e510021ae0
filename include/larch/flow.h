/* larch/flow.h - normalizing flows (docs/flows.md): invertible layers, the
 * exact negative log-likelihood in bits per dimension and the inverse pass.
 *
 * A flow model is a chain of invertible layers (each takes the previous
 * layer's output): dequantize, actnorm, invconv, coupling, squeeze, split.
 * Each flow layer's vtable has `inverse` (x = f^-1(y)) and `logdet` (per
 * sample log|det df/dx| of the last forward; for split, the log-density of
 * the factored-out half under its learned prior). The loss `flow_nll`
 * (LARCH_LOSS_FLOW_NLL) scores the last node z under N(0, I) and adds every
 * flow layer's logdet:
 *     bits/dim = (-log N(z; 0, I) - sum_l logdet_l) / (D ln 2)
 * with D the model input's size per sample. Its gradient reaches the layers'
 * log-determinants through the model (each flow layer's backward adds
 * d(loss)/d(logdet) times d(logdet)/d(theta, x)).
 */
#ifndef LARCH_FLOW_H
#define LARCH_FLOW_H

#include "larch/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* coupling: affine coupling (RealNVP / Glow). The first C/2 channels xa
 * pass unchanged and drive a small conv net NN = conv3x3(hidden) - relu -
 * conv3x3(2 (C - C/2), zero init); with (t, r) = NN(xa) the other channels
 * become yb = (xb + t) * sigmoid(r + 2) (Glow's stabilized scale). */
typedef struct larch_coupling_opts {
    int hidden;               /* channels of the hidden conv, 1..4096 (64)   */
} larch_coupling_opts;
#define LARCH_COUPLING_DEFAULTS {.hidden = 64}

/* dequantize: x in [0, 1] holding k / (levels - 1), k integer; v = (k + u)
 * / levels with u ~ U[0, 1) drawn per (run seed, step, global sample,
 * element), so every rank count draws the same noise; y = v - 0.5, or with
 * logit = alpha > 0 the logit transform of RealNVP (Dinh et al. 2017),
 * y = logit(alpha + (1 - 2 alpha) v), which widens the bins near 0 and 1
 * (Fashion-MNIST's background) in y. logdet = -D ln(levels) (the discrete
 * model's bits per dimension as the papers count them) plus, with the logit,
 * sum ln((1 - 2 alpha) / (q (1 - q))), q = alpha + (1 - 2 alpha) v. */
typedef struct larch_dequantize_opts {
    int levels;               /* intensity levels, 2..65536 (256)            */
    float logit;              /* alpha of the logit transform, 0..0.1; 0: off (0) */
} larch_dequantize_opts;
#define LARCH_DEQUANTIZE_DEFAULTS {.levels = 256, .logit = 0.0f}

/* Whether every layer of m is invertible (has `inverse`) and the layers form
 * a chain (each reads the previous layer's output). */
LARCH_API int larch_model_is_flow(const larch_model *m);

/* The inverse pass: x (p->n, input shape) = f^-1(z) for z (p->n, shape of the
 * last node). The model must be planned for at least p->n samples. Split
 * layers draw their factored-out half from their prior at the temperature
 * (larch_model_set_flow_temperature), from the stream of (p->seed, p->step,
 * p->sample0 + i). Fails (LARCH_ERR_INVALID) naming the first layer that is
 * not invertible. */
LARCH_API larch_status larch_model_inverse(larch_model *m, const float *z, float *x, const larch_pass *p);

/* Standard deviation multiplier of the split priors in the inverse pass (1);
 * 0 takes their means; t < 0 reuses the standardized halves the last forward
 * of the same samples factored out (exact reconstruction: f^-1(f(x)) = x). */
LARCH_API void larch_model_set_flow_temperature(larch_model *m, float t);

/* The summed log|det J| (logdet of every flow layer) per sample of the last
 * forward into out (n); returns out. */
LARCH_API float *larch_model_flow_logdet(larch_model *m, int n, float *out);

#ifdef __cplusplus
}
#endif
#endif
