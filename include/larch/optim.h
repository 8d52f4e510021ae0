/* larch/optim.h - optimizers, parameter groups, gradient clipping and
 * learning-rate schedules.
 *
 * An optimizer updates the model's flat parameter buffer from its flat
 * gradient buffer. Its state tensors (momentum, second moments, ...) hold one
 * float per trainable parameter value: frozen tensors (lr_mult 0) have no
 * state. Updates are per tensor so that per-layer rules (LARS and LAMB trust
 * ratios) fit. The update rules, their defaults and the choices made where
 * published implementations disagree are in docs/optimizers.md.
 */
#ifndef LARCH_OPTIM_H
#define LARCH_OPTIM_H

#include "larch/cfg.h"
#include "larch/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LARCH_OPTIM_MAX_STATE 4

typedef enum {
    LARCH_OPT_SGD, LARCH_OPT_ADAM, LARCH_OPT_ADAMW, LARCH_OPT_NADAM,
    LARCH_OPT_RADAM, LARCH_OPT_ADAMOD, LARCH_OPT_LARS, LARCH_OPT_LAMB
} larch_optim_kind;

typedef struct larch_optim {
    larch_optim_kind kind;
    const char *name;
    larch_model *model;
    /* hyperparameters (docs/optimizers.md) */
    float momentum, dampening, weight_decay;
    int nesterov;
    float beta1, beta2, beta3, eps;
    int amsgrad, decoupled, bias_correction;
    float momentum_decay;              /* NAdam psi                               */
    float rho_threshold;               /* RAdam: rectify while rho_t > this       */
    float trust_coef;                  /* LARS eta                                */
    int lars_clip;                     /* LARS: rate min(local, lr) (apex LARC's clip) */
    float trust_min, trust_max;        /* clamp of the trust ratio (max 0 = none) */
    float clip_norm, clip_value;       /* gradient clipping (0 = off)             */
    /* state */
    int n_state;
    const char *state_names[LARCH_OPTIM_MAX_STATE];
    float *state[LARCH_OPTIM_MAX_STATE];   /* each n_state_floats floats          */
    size_t *state_offset;              /* per parameter; (size_t)-1 when frozen   */
    size_t n_state_floats;
    size_t lo, hi;                     /* the part of the flat buffer it steps    */
    double *norms;                     /* LARS/LAMB: per tensor, two squared norms */
    const larch_comm_hooks *sum_hooks; /* sharded: sums the clipping norm over ranks */
    /* Per parameter, replicated on every rank (sharded or not): the updates
     * the tensor has received, the t of its bias corrections (a tensor
     * thawed by unfreeze_after_epochs starts at 0 like a fresh optimizer;
     * one frozen for the whole run stays 0), and NAdam's product of its
     * momentum schedule mu_1 ... mu_t (1 before its first update). */
    long *tensor_t;
    double *tensor_mu_product;
    long t;                            /* optimizer steps taken                   */
    double last_grad_norm;             /* global gradient norm before clipping    */
} larch_optim;

/* Does the optimizer keep state for p: it is trained now, or frozen only
 * until a scheduled epoch (optim.groups[].unfreeze_after_epochs)? */
static inline int larch_param_has_state(const larch_param *p) { return p->lr_mult != 0.0f || p->thaw_epoch > 0; }

/* Applies the freezing schedule at the start of `epoch`: tensors whose
 * unfreeze epoch has come get their lr_mult back. Returns how many changed;
 * the caller re-plans the model (larch_model_plan) so that their gradients
 * are computed. */
LARCH_API int larch_optim_thaw(larch_model *m, long epoch);

/* The `optim` config section's schema, and that of one of its `groups`. */
LARCH_API extern const larch_key larch_optim_keys[];
LARCH_API extern const larch_key larch_optim_group_keys[];
/* Fills the defaults of the optimizer named in the `optim` map that differ
 * between optimizers (lr, momentum, eps, weight_decay: the papers' values);
 * call before larch_cfg_check. `optim` may be NULL or not a map (no-op). */
LARCH_API larch_status larch_optim_defaults(larch_node *optim);
/* Adds a warning (to `w`) for each key of the validated `optim` map that is
 * set to a non-default value but not read by the chosen optimizer. */
LARCH_API larch_status larch_optim_ignored(const larch_node *optim, larch_warnings *w);
/* `cfg` is the validated `optim` map. Sets every parameter's lr_mult,
 * wd_mult and adapt from the roles and `optim.groups`, then allocates state. */
LARCH_API larch_status larch_optim_create(larch_optim **out, larch_model *m, const larch_node *cfg);
/* The same for the values [lo, hi) of the flat buffer only (optimizer-state
 * sharding, ZeRO stage 1): state is allocated and updates run there; a
 * tensor may be split between ranks. With sum_hooks set, the per-tensor
 * norms of LARS/LAMB and the clipping norm are summed over the ranks. */
LARCH_API larch_status larch_optim_create_shard(larch_optim **out, larch_model *m, const larch_node *cfg,
                                                size_t lo, size_t hi);
LARCH_API void larch_optim_free(larch_optim *o);
/* Sets the momentum (SGD, LARS) or beta1 (the Adam family) of later steps:
 * one-cycle schedules cycle it. */
LARCH_API void larch_optim_set_momentum(larch_optim *o, float momentum);
/* One update of every trainable parameter at learning rate lr, after the
 * configured gradient clipping; then the step counter advances. */
LARCH_API void larch_optim_step(larch_optim *o, float lr);

/* ---- schedules ---- */
typedef struct larch_sched {
    int kind;                /* constant, step, multistep, exponential, cosine, sgdr, poly, onecycle */
    int warmup_kind;         /* linear or exponential                      */
    double base_lr, min_lr, gamma, power, warmup_start;
    long warmup_steps, total_steps, steps_per_epoch;
    double step_epochs, restart_epochs, restart_mult;
    double milestones[16];
    int n_milestones;
    double pct_start, div, div_final;   /* one-cycle                       */
    double moms[3];                     /* one-cycle momentum (0 = none)    */
} larch_sched;

LARCH_API extern const larch_key larch_sched_keys[];
/* Checks of a validated `sched` map that need no step counts (milestones
 * ascending, at most 16; no warmup with onecycle; exponential warmup from a
 * factor > 0), so that `larch config` rejects what training would. */
LARCH_API larch_status larch_sched_check(const larch_node *cfg);
/* Adds a warning for each key of the validated `sched` map that is set to a
 * non-default value but not read by the chosen schedule. */
LARCH_API larch_status larch_sched_ignored(const larch_node *cfg, larch_warnings *w);
/* `cfg` is the validated `sched` map (larch_sched_check passes). */
LARCH_API larch_status larch_sched_init(larch_sched *s, const larch_node *cfg, double base_lr,
                                        long total_steps, long steps_per_epoch);
/* Learning rate of optimizer step `step` (0-based). */
LARCH_API double larch_sched_lr(const larch_sched *s, long step);
/* Momentum of step `step` when the schedule cycles it, else a negative value. */
LARCH_API double larch_sched_momentum(const larch_sched *s, long step);
/* For the training log: what a one-cycle schedule does to o's momentum (or
 * beta1): the sched.moms it applies in place of the optimizer's, or that
 * it leaves it alone. Returns 0 (buf "") for other schedules. */
LARCH_API int larch_sched_momentum_note(const larch_sched *s, const larch_optim *o, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
