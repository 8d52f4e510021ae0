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

/* ---- typed options ----
 * A C program fills a larch_optim_opts (start from
 * larch_optim_defaults_for(kind): the papers' defaults) and passes it to
 * larch_optim_create; the YAML `optim` section is parsed into the same struct
 * (larch/optim_cfg.h). Every field's range is that of the config key of the
 * same name (`larch config --help`). */

/* Roles a parameter group takes (bit set; LARCH_ROLES_ALL = every role). */
#define LARCH_ROLE_BIT(role) (1u << (role))
#define LARCH_ROLES_ALL (LARCH_ROLE_BIT(LARCH_ROLE_WEIGHT) | LARCH_ROLE_BIT(LARCH_ROLE_BIAS) | LARCH_ROLE_BIT(LARCH_ROLE_NORM))

/* LARS/LAMB trust ratio of a group's tensors. */
typedef enum { LARCH_ADAPT_ROLE, LARCH_ADAPT_YES, LARCH_ADAPT_NO } larch_adapt;

/* One parameter group (optim.groups[i]): the tensors whose name
 * "<layer>.<tensor>" matches the glob `match` and whose role is in `roles`.
 * Groups apply in order; a later group overrides an earlier one. A group that
 * matches no parameter is an error at larch_optim_create. */
typedef struct larch_param_group {
    const char *match;          /* glob (fnmatch); NULL = "*". Read during create only */
    unsigned roles;             /* LARCH_ROLE_BIT(...) set; LARCH_ROLES_ALL        */
    double lr_mult;             /* [0, 1e6]: learning-rate multiplier (0 = frozen)  */
    double wd_mult;             /* [-1, 1e6]: weight-decay multiplier (-1 = by role) */
    larch_adapt adapt;          /* trust ratio: by role (weights only), yes or no  */
    int freeze;                 /* no update, no state, no gradient where avoidable */
    int unfreeze_after_epochs;  /* [0, 1e6]: with freeze, thaw at this epoch (0 = never) */
} larch_param_group;

#define LARCH_PARAM_GROUP_DEFAULTS {"*", LARCH_ROLES_ALL, 1.0, -1.0, LARCH_ADAPT_ROLE, 0, 0}

typedef struct larch_optim_opts {
    larch_optim_kind kind;
    double lr;                  /* [0, 1e4] base rate (the schedule's base_lr)    */
    double momentum;            /* [0, 0.999999] sgd, lars                         */
    double dampening;           /* [0, 1] sgd                                      */
    int nesterov;               /* sgd: needs momentum > 0 and dampening 0         */
    double weight_decay;        /* [0, 10]                                         */
    int decoupled;              /* adam family: w -= lr*wd*w (lamb: always)        */
    double beta1;               /* [0, 0.999999]                                   */
    double beta2, beta3;        /* [0, 0.999999999] (beta3: adamod)                */
    double eps;                 /* [0, 1]                                          */
    int amsgrad;                /* adam, adamw                                     */
    int bias_correction;        /* lamb                                            */
    double momentum_decay;      /* [0, 1] nadam psi                                */
    double rho_threshold;       /* [0, 1e6] radam                                  */
    double trust_coef;          /* [0, 1e4] lars eta                               */
    int lars_clip;              /* lars: 0 = scale (the paper), 1 = clip (apex LARC) */
    double trust_min, trust_max;/* [0, 1e30] lars, lamb clamp (trust_max 0 = none) */
    int decay_bias_norm;        /* weight decay on biases and normalization too    */
    int adapt_bias_norm;        /* lars, lamb: trust ratio on them too             */
    double clip_norm;           /* [0, 1e30] global gradient norm clip (0 = off)   */
    double clip_value;          /* [0, 1e30] per-value clip (0 = off)              */
    const larch_param_group *groups;   /* n_groups of them (read during create only) */
    int n_groups;
} larch_optim_opts;

/* The defaults of optimizer `kind`: the papers' values, as the config
 * front end fills them (lr: sgd 0.1, lars 1, nadam 2e-3, others 1e-3;
 * weight_decay 0.01 and decoupled for adamw; decoupled for adamod;
 * weight_decay 0.01 and eps 1e-6 for lamb; no groups). */
LARCH_API larch_optim_opts larch_optim_defaults_for(larch_optim_kind kind);
/* The optimizer's name ("sgd", "lamb", ...), or NULL for an unknown kind;
 * and the kind of a name (-1 when unknown). */
LARCH_API const char *larch_optim_kind_name(larch_optim_kind kind);
LARCH_API int larch_optim_kind_of(const char *name);
/* Checks every field's range and the rules across fields (nesterov needs
 * momentum > 0 and dampening 0; trust_max >= trust_min; a group's
 * unfreeze_after_epochs needs freeze and lr_mult > 0). Fails with
 * LARCH_ERR_INVALID and a message naming the field ("optim.beta2 = 1 is out
 * of range [0, 0.999999999]"); when `field` is not NULL it receives the
 * field's name ("beta2", "groups") or NULL when the options are valid. */
LARCH_API larch_status larch_optim_validate(const larch_optim_opts *o, const char **field);

/* Validates `opts`, sets every parameter's lr_mult, wd_mult and adapt from
 * the roles and the groups, then allocates state. The optimizer keeps no
 * pointer into `opts`. */
LARCH_API larch_status larch_optim_create(larch_optim **out, larch_model *m, const larch_optim_opts *opts);
/* The same for the values [lo, hi) of the flat buffer only (optimizer-state
 * sharding, ZeRO stage 1): state is allocated and updates run there; a
 * tensor may be split between ranks. With sum_hooks set, the per-tensor
 * norms of LARS/LAMB and the clipping norm are summed over the ranks. */
LARCH_API larch_status larch_optim_create_shard(larch_optim **out, larch_model *m, const larch_optim_opts *opts,
                                                size_t lo, size_t hi);
LARCH_API void larch_optim_free(larch_optim *o);
/* Sets the momentum (SGD, LARS) or beta1 (the Adam family) of later steps:
 * one-cycle schedules cycle it. */
LARCH_API void larch_optim_set_momentum(larch_optim *o, float momentum);
/* One update of every trainable parameter at learning rate lr, after the
 * configured gradient clipping; then the step counter advances. */
LARCH_API void larch_optim_step(larch_optim *o, float lr);

/* ---- schedules ---- */
typedef enum {
    LARCH_SCHED_CONSTANT, LARCH_SCHED_STEP, LARCH_SCHED_MULTISTEP, LARCH_SCHED_EXPONENTIAL,
    LARCH_SCHED_COSINE, LARCH_SCHED_SGDR, LARCH_SCHED_POLY, LARCH_SCHED_ONECYCLE
} larch_sched_kind;
typedef enum { LARCH_WARMUP_LINEAR, LARCH_WARMUP_EXPONENTIAL } larch_warmup_kind;

#define LARCH_SCHED_MAX_MILESTONES 16

/* The `sched` section as a struct (ranges as the config keys of the same
 * name). The formulas are in src/optim/schedule.c and docs/optimizers.md. */
typedef struct larch_sched_opts {
    larch_sched_kind kind;
    larch_warmup_kind warmup;   /* warmup shape                                   */
    double warmup_epochs;       /* [0, 1e6]                                       */
    long warmup_steps;          /* [0, 2^40]; > 0 overrides warmup_epochs         */
    double warmup_start;        /* [0, 1] factor before the first step (exponential: > 0) */
    double step_epochs;         /* [1e-6, 1e6] step: decay every this many epochs */
    double milestones[LARCH_SCHED_MAX_MILESTONES];   /* multistep: ascending epochs in [0, 1e6] */
    int n_milestones;
    double gamma;               /* [0, 1]                                         */
    double min_lr;              /* [0, 1e4] cosine, sgdr, poly                    */
    double power;               /* [0, 100] poly                                  */
    double restart_epochs;      /* [1e-6, 1e6] sgdr T_0                           */
    double restart_mult;        /* [1, 100] sgdr T_mult                           */
    double pct_start;           /* [0, 1] onecycle                                */
    double div;                 /* [1, 1e9] onecycle                              */
    double div_final;           /* [1, 1e12] onecycle                             */
    double moms[3];             /* onecycle momentum/beta1 at start, peak, end in [0, 0.999999] */
    int n_moms;                 /* 3 = cycle moms, 0 = leave the optimizer's own  */
} larch_sched_opts;

#define LARCH_SCHED_DEFAULTS {LARCH_SCHED_CONSTANT, LARCH_WARMUP_LINEAR, 0.0, 0, 0.0, 30.0, {0}, 0, 0.1, 0.0, 2.0, \
                              10.0, 1.0, 0.25, 25.0, 1e5, {0.95, 0.85, 0.95}, 3}

/* The schedule's name ("cosine", ...) or NULL; the kind of a name (-1). */
LARCH_API const char *larch_sched_kind_name(larch_sched_kind kind);
LARCH_API int larch_sched_kind_of(const char *name);
/* Checks every field's range and the rules across fields (milestones
 * ascending, at most LARCH_SCHED_MAX_MILESTONES; no warmup with onecycle;
 * exponential warmup from warmup_start > 0; onecycle: n_moms 0 or 3). Fails with
 * LARCH_ERR_INVALID naming the field ("sched.milestones: must be ascending
 * (1 comes after 3)"); `field` (may be NULL) receives its name. */
LARCH_API larch_status larch_sched_validate(const larch_sched_opts *o, const char **field);

typedef struct larch_sched {
    int kind;                /* larch_sched_kind                           */
    int warmup_kind;         /* larch_warmup_kind                          */
    double base_lr, min_lr, gamma, power, warmup_start;
    long warmup_steps, total_steps, steps_per_epoch;
    double step_epochs, restart_epochs, restart_mult;
    double milestones[LARCH_SCHED_MAX_MILESTONES];
    int n_milestones;
    double pct_start, div, div_final;   /* one-cycle                       */
    double moms[3];                     /* one-cycle momentum (moms[0] < 0 = none) */
} larch_sched;

/* Validates `opts` and sets up the schedule of a run of total_steps
 * optimizer steps, steps_per_epoch of them an epoch, from base_lr (usually
 * the optimizer's lr). Keeps no pointer into `opts`. */
LARCH_API larch_status larch_sched_init(larch_sched *s, const larch_sched_opts *opts, double base_lr,
                                        long total_steps, long steps_per_epoch);
/* Learning rate of optimizer step `step` (0-based). */
LARCH_API double larch_sched_lr(const larch_sched *s, long step);
/* Momentum of step `step` when the schedule cycles it, else a negative value. */
LARCH_API double larch_sched_momentum(const larch_sched *s, long step);
/* For the training log: what a one-cycle schedule does to o's momentum (or
 * beta1): the sched.moms it applies in place of the optimizer's, or that
 * it leaves it alone. Returns 0 (buf "") for other schedules. */
LARCH_API int larch_sched_momentum_note(const larch_sched *s, const larch_optim *o, char *buf, size_t len);

/* Gradual magnitude pruning (Zhu & Gupta 2017; docs/compression/pruning.md):
 * at steps t0, t0 + every, ..., t0 + n every <= end_step the masks of the
 * selected weight tensors are recomputed from |w| to the sparsity
 * s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n every))^3, and after every
 * optimizer step the pruned weights are zero. */
typedef struct larch_prune_opts {
    double sparsity;              /* [0, 0.999] final sparsity s_f (0 = off)                 */
    double initial_sparsity;      /* [0, sparsity] s_i at start_step                         */
    long start_step;              /* [0, 2^40] t0: optimizer steps done at the first pruning */
    long end_step;                /* [-1, 2^40] last pruning step >= start_step; -1 = three
                                     quarters of the run                                     */
    long every;                   /* [1, 2^40] steps between pruning steps (dt)              */
    int global;                   /* 1: one threshold over all selected tensors; 0: per tensor */
    const char *const *layers;    /* globs on layer names (dense and conv2d only); NULL = all */
    int n_layers;
} larch_prune_opts;

#define LARCH_PRUNE_DEFAULTS {.sparsity = 0.0, .initial_sparsity = 0.0, .start_step = 0, .end_step = -1, \
                              .every = 100, .global = 0, .layers = NULL, .n_layers = 0}

#ifdef __cplusplus
}
#endif
#endif
