/* larch/optim.h - optimizers and learning-rate schedules.
 *
 * An optimizer updates the model's flat parameter buffer from its flat
 * gradient buffer. Its state tensors (momentum, ...) mirror the parameter
 * layout: state k of parameter p lives at state[k] + p->offset. Updates are
 * per tensor so that per-layer rules (trust ratios) fit, and they can be
 * restricted to a range [lo, hi) of the flat buffer (optimizer-state
 * sharding steps only its slice). Parameters with lr_mult == 0 are frozen.
 */
#ifndef LARCH_OPTIM_H
#define LARCH_OPTIM_H

#include "larch/cfg.h"
#include "larch/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LARCH_OPTIM_MAX_STATE 4

typedef struct larch_optim {
    const char *name;
    larch_model *model;
    /* hyperparameters */
    float momentum, dampening, weight_decay;
    int nesterov;
    /* state */
    int n_state;
    const char *state_names[LARCH_OPTIM_MAX_STATE];
    float *state[LARCH_OPTIM_MAX_STATE];   /* each model->n_floats floats */
    long t;                                /* optimizer steps taken       */
} larch_optim;

/* The `optim` config section's schema. */
LARCH_API extern const larch_key larch_optim_keys[];
/* `cfg` is the validated `optim` map. */
LARCH_API larch_status larch_optim_create(larch_optim **out, larch_model *m, const larch_node *cfg);
LARCH_API void larch_optim_free(larch_optim *o);
/* One update of the parameters in [lo, hi) at learning rate lr (then the
 * step counter advances; call with the whole range, or each shard once). */
LARCH_API void larch_optim_step(larch_optim *o, float lr, size_t lo, size_t hi);

/* ---- schedules ---- */
typedef struct larch_sched {
    int kind;                /* constant, step, multistep, cosine          */
    double base_lr, min_lr, gamma;
    long warmup_steps, total_steps, steps_per_epoch;
    double step_epochs;
    double milestones[16];
    int n_milestones;
} larch_sched;

LARCH_API extern const larch_key larch_sched_keys[];
/* `cfg` is the validated `sched` map. */
LARCH_API larch_status larch_sched_init(larch_sched *s, const larch_node *cfg, double base_lr,
                                        long total_steps, long steps_per_epoch);
/* Learning rate of optimizer step `step` (0-based). */
LARCH_API double larch_sched_lr(const larch_sched *s, long step);

#ifdef __cplusplus
}
#endif
#endif
