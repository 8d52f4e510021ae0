/* prune.h - unstructured magnitude pruning (private to liblarch): the
 * Zhu & Gupta schedule, per-tensor and global magnitude thresholds, and the
 * masks kept in model->prune_mask and applied after every optimizer step
 * (docs/compression/pruning.md). Everything is allocated at create; the
 * per-step calls allocate nothing. */
#ifndef LARCH_OPTIM_PRUNE_H
#define LARCH_OPTIM_PRUNE_H

#include <stdint.h>
#include "larch/optim.h"

/* s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3 with n = floor((end -
 * t0) / every): 0 before t0 (no pruning yet), s_f from t0 + n every on (and
 * at t0 when end == t0). */
double larch_prune_schedule(double s_i, double s_f, long t0, long end, long every, long t);

typedef struct larch_pruner {
    larch_model *m;
    larch_prune_opts o;            /* end_step resolved (-1 -> 3/4 of the run) */
    int n_tensors;
    int *tensor;                   /* indices into m->params of the pruned tensors */
    size_t n_values, max_size;     /* their values; the largest one             */
    unsigned char *mask;           /* m->n_floats bytes, 0 = pruned (= m->prune_mask) */
    uint64_t *keys;                /* scratch: (|w| bits << 32 | position) per value */
    double target;                 /* the sparsity of the last update            */
} larch_pruner;

/* Selects the tensors (weights of dense and conv2d layers whose names match
 * o->layers, all of them when none), validates o (errors name the key:
 * "prune.sparsity", "prune.layers: 'x' ...") and allocates the mask, all
 * ones, which it installs as m->prune_mask. total_steps resolves end_step
 * -1. */
larch_status larch_pruner_create(larch_pruner **out, larch_model *m, const larch_prune_opts *o, long total_steps);
void larch_pruner_free(larch_pruner *p);           /* also clears m->prune_mask */

/* Is `step` (optimizer steps done) a pruning step? */
int larch_pruner_due(const larch_pruner *p, long step);
/* The schedule's sparsity at `step`. */
double larch_pruner_target(const larch_pruner *p, long step);

/* Recomputes the masks from |w| so that round(s * size) values of each
 * tensor (global: of all selected values together) are pruned, the
 * smallest magnitudes first, ties to the lower flat position; zeroes the
 * pruned weights and, when o != NULL, their optimizer state (this rank's
 * slice). Deterministic: equal parameters give equal masks on every rank. */
void larch_pruner_update(larch_pruner *p, double s, larch_optim *o);
/* w = 0 where the mask is 0 (after every optimizer step). */
void larch_pruner_apply(larch_pruner *p);
/* grad = 0 where the mask is 0 (before the optimizer step: pruned weights
 * then keep zero state and contribute nothing to norms). */
void larch_pruner_mask_grad(larch_pruner *p);
/* The fraction of the selected values that the mask prunes. */
double larch_pruner_sparsity(const larch_pruner *p);

#endif
