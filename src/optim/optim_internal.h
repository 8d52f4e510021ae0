/* optim_internal.h - what optimizer.c hands to the update rules. */
#ifndef LARCH_OPTIM_INTERNAL_H
#define LARCH_OPTIM_INTERNAL_H

#include "larch/optim.h"

/* Per step: the optimizer and the base rate. */
typedef struct {
    const larch_optim *o;
    float lr;
} optim_step_ctx;

/* One trainable tensor: parameter, gradient and state views of n floats,
 * with its own rate (lr * lr_mult), weight decay (wd * wd_mult), whether
 * LARS/LAMB adapt it, and its own 1-based step number t (the updates it has
 * received, this one included: bias corrections count from its first
 * update, not from the optimizer's). */
typedef struct {
    float *w;
    const float *g;
    float *s[LARCH_OPTIM_MAX_STATE];
    size_t n;
    float lr, wd;
    int adapt;
    double *norms;   /* LARS: ||w||^2, ||g||^2; LAMB: ||w||^2, ||u||^2 (of the whole tensor in pass 1) */
    long t;
    double mu_t, mu_next, mu_product;   /* NAdam: mu_t, mu_{t+1} and mu_1 ... mu_t of this tensor */
} optim_tensor;

double larch_sumsq(const float *x, size_t n);
void larch_sgd_update(const optim_step_ctx *c, const optim_tensor *v);
void larch_adam_update(const optim_step_ctx *c, const optim_tensor *v);   /* adam, adamw, nadam, radam, adamod */
/* LARS and LAMB run in two passes over all tensors: *_norms adds this
 * part's squared norms to v->norms (LAMB also updates its moments), then,
 * after the norms are summed over ranks when the state is sharded,
 * *_update applies the step. */
void larch_lars_norms(const optim_step_ctx *c, const optim_tensor *v);
void larch_lars_update(const optim_step_ctx *c, const optim_tensor *v);
void larch_lamb_norms(const optim_step_ctx *c, const optim_tensor *v);
void larch_lamb_update(const optim_step_ctx *c, const optim_tensor *v);
/* The trust ratio num / den with the zero-norm rule (1 when either is 0)
 * and the optimizer's clamp. */
double larch_trust_ratio(const larch_optim *o, double num, double den);

#endif
