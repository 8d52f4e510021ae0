/* larch/train.h - experiment configs and the training driver.
 *
 * A run is described by one validated config tree (larch_run_load). The
 * driver (larch_train) runs data-parallel over a larch_comm of any size:
 * every rank builds the same model, rank 0's parameters are broadcast, each
 * rank processes its contiguous part of every global batch, gradients are
 * summed across ranks, and every rank applies the same update. Only rank 0
 * prints progress and writes DIR/metrics.jsonl and DIR/config.yaml.
 */
#ifndef LARCH_TRAIN_H
#define LARCH_TRAIN_H

#include <stdio.h>
#include "larch/cfg.h"
#include "larch/checkpoint.h"
#include "larch/comm.h"
#include "larch/model.h"
#include "larch/model_cfg.h"
#include "larch/data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The schema of a whole experiment config, and of `model` written as a
 * mapping ({layers, init_from}). */
LARCH_API extern const larch_key larch_run_keys[];
LARCH_API extern const larch_key larch_model_map_keys[];

/* Loads `path`, applies overrides ("a.b=v", n_sets of them) and validates
 * the result (defaults filled in), including the checks across keys that
 * need no data and no world size (sched.milestones ascending, data.classes
 * [lo, hi] within the data's classes, train.accumulate dividing the batch). */
LARCH_API larch_status larch_run_load(const char *path, const char *const *sets, int n_sets,
                                      larch_node **out);

/* Adds to `w` a warning for each key of a validated config that is set to a
 * value other than its default but has no effect in this run, naming the
 * key, its place and why: a key of another optimizer or schedule, a warmup
 * shape without warmup, label_smoothing of an mse loss, log_var_init without
 * `weighting: uncertainty`, regularization q of an l1/l2 penalty, the bucket
 * and overlap settings under dist.shard_optimizer. Keys at their default are
 * not reported, so a resolved config.yaml (every key written) adds none. */
LARCH_API larch_status larch_run_warnings(const larch_node *cfg, larch_warnings *w);

/* Optimizer steps per epoch and in the whole run, as `larch train` counts
 * them (incomplete last batches are dropped; train.max_steps caps). */
LARCH_API larch_status larch_run_steps(const larch_node *cfg, long *steps_per_epoch, long *total_steps);
/* The model input shape and class count a validated config's data section
 * implies, without reading the data (Fashion-MNIST: 28x28x1, 10 classes, or
 * hi - lo + 1 with data.classes). */
LARCH_API larch_status larch_run_input(const larch_node *cfg, larch_shape *shape, int *classes);
/* The training and test sets of a validated config, with data.classes,
 * data.train_per_class and data.derived_labels applied. */
LARCH_API larch_status larch_run_datasets(const larch_node *cfg, larch_dataset *train, larch_dataset *test);
/* The layer list: `model` itself, or `model.layers` when `model` is a map. */
LARCH_API larch_node *larch_run_layers(const larch_node *cfg);
/* `model.init_from` when it names a file, else NULL. */
LARCH_API const larch_node *larch_run_init_from(const larch_node *cfg);

/* Resume: compares what the checkpoint was written with (meta->config, the
 * resolved config, and meta->sched_total_steps) with the run's validated
 * config `cfg`: the global batch, seed, optimizer and its hyperparameters,
 * schedule, model, losses, regularization and the training data, and the
 * length of the schedule when the learning rate of the remaining steps
 * depends on it (total_steps and steps_per_epoch are the run's). Each
 * difference not listed in cfg's checkpoint.allow_changes makes it fail
 * with LARCH_ERR_CONFIG naming every differing key and both values; allowed
 * ones are printed to log (may be NULL). train.batch_size cannot be
 * allowed (the sampler position depends on it). */
LARCH_API larch_status larch_ckpt_check_resume(const char *path, const larch_ckpt_meta *meta, const larch_node *cfg,
                                               long total_steps, long steps_per_epoch, FILE *log);

typedef struct larch_train_opts {
    const char *out_dir;     /* metrics.jsonl and config.yaml go here (created) */
    FILE *log;               /* progress (rank 0); NULL = silent              */
    int eval_only;           /* evaluate the initial parameters and stop      */
    const char *checkpoint;  /* eval_only: load parameters from this file     */
    int handle_signals;      /* SIGTERM/SIGINT/SIGUSR1: checkpoint, then stop
                                with LARCH_ERR_INTERRUPTED (preemption)       */
} larch_train_opts;

/* From this call on SIGTERM, SIGINT and SIGUSR1 only set the flag that
 * larch_train with handle_signals honours (a second SIGINT ends the process
 * at once). A program calls it first, before MPI starts and data loads, so
 * that a signal during start-up is not lost: larch_train then stops before
 * its first step with LARCH_ERR_INTERRUPTED. Without it, larch_train with
 * handle_signals installs the handlers for the training loop only. */
LARCH_API void larch_catch_stop_signals(void);

typedef struct larch_train_result {
    long steps;              /* optimizer steps taken                          */
    int epochs;              /* epochs completed                               */
    double final_loss;       /* mean training loss of the last step            */
    double test_loss, test_accuracy; /* last evaluation (first task)           */
    double wall_seconds;     /* training loop time, evaluation included        */
    double samples_per_s;    /* global training throughput                     */
    long resumed_from;       /* step of the checkpoint resumed (0 = fresh)     */
    char checkpoint[4200];   /* the last checkpoint written ("" = none)        */
} larch_train_result;

LARCH_API larch_status larch_train(larch_node *cfg, const larch_comm *comm,
                                   const larch_train_opts *opts, larch_train_result *res);

#ifdef __cplusplus
}
#endif
#endif
