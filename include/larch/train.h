/* larch/train.h - the training driver and experiment configs.
 *
 * larch_fit trains a model a C program built (larch/model.h) on datasets
 * (larch/data.h) with typed optimizer and schedule options (larch/optim.h),
 * data-parallel over a larch_comm of any size: rank 0's parameters are
 * broadcast, each rank processes its contiguous part of every global batch,
 * gradients are summed across ranks, and every rank applies the same update.
 * Only rank 0 prints progress and writes DIR/metrics.jsonl and
 * DIR/config.yaml. larch_train is the config front end (the `larch train`
 * program): a validated config tree (larch_run_load) becomes a model,
 * datasets and a larch_fit_spec, and runs through the same larch_fit.
 */
#ifndef LARCH_TRAIN_H
#define LARCH_TRAIN_H

#include <stdint.h>
#include <stdio.h>
#include "larch/cfg.h"
#include "larch/checkpoint.h"
#include "larch/comm.h"
#include "larch/model.h"
#include "larch/model_cfg.h"
#include "larch/data.h"
#include "larch/optim.h"

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
 * and overlap settings under dist.shard_optimizer, prune keys while
 * prune.sparsity is 0, distill keys without distill.teacher. Keys at their default are
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

/* ---- training from C ---- */

/* The training loop (the config's `train` section). */
typedef struct larch_fit_train {
    int batch_size;          /* [1, 2^24] global batch: divisible by ranks x accumulate     */
    int epochs;              /* [1, 1e6]                                                    */
    long max_steps;          /* [0, 2^40] stop after this many steps (0 = no limit)         */
    uint64_t seed;           /* [0, 2^32-1] sampler, augmentation and dropout               */
    long log_every;          /* [1, 2^40] steps between metrics.jsonl training records      */
    long eval_every;         /* [0, 2^40] steps between evaluations (0 = each epoch)        */
    int eval_batch;          /* [1, 2^24] global evaluation batch                           */
    int threads;             /* [0, 1024] OpenBLAS threads per rank (0 = OPENBLAS_NUM_THREADS,
                                else the node's cores / ranks on the node)                  */
    int accumulate;          /* [1, 4096] micro-batches per optimizer step                  */
    int stop_on_nan;         /* fail when the loss is not finite                            */
    double progress_seconds; /* [0, 3600] at most one progress line per this many seconds   */
    larch_precision precision; /* products of dense/conv2d: FP32 or BF16 (larch_model_set_precision) */
    long eval_samples;       /* [0, 2^31-1] score the first this many test samples (0 = all) */
} larch_fit_train;

/* The training loader (the config's data.augment and data.prefetch). */
typedef struct larch_fit_data {
    int flip;                /* random horizontal flip                                       */
    int crop_pad;            /* [0, 64] random crop after zero padding by this many pixels   */
    int prefetch;            /* assemble the next batch on a background thread               */
    int resized_crop;        /* random resized crop (docs/datasets.md); not with crop_pad    */
    float scale[2];          /* its area fraction [lo, hi] within (0, 1] ({0.08, 1})         */
    float ratio[2];          /* its aspect ratio w/h [lo, hi] ({0.75, 4/3})                  */
    int sampler;             /* LARCH_SAMPLER_SHUFFLE or LARCH_SAMPLER_BALANCED (larch/data.h) */
    int classes_per_batch;   /* balanced: P classes per global batch                         */
    int samples_per_class;   /* balanced: K samples per class; P x K = train.batch_size      */
} larch_fit_data;

/* Saving and resuming (the config's `checkpoint` section, docs/checkpoints.md). */
typedef struct larch_fit_checkpoint {
    const char *dir;         /* NULL or "": <out_dir>/checkpoints                           */
    long every_steps;        /* [0, 2^40] save every this many steps (0 = at the end and on a stop signal) */
    int keep;                /* [0, 1e6] newest checkpoints kept (0 = all)                   */
    int at_end;              /* save when training ends                                      */
    const char *resume;      /* NULL or "": start fresh; "auto": the newest in dir; or a file */
    const char *const *allow_changes;  /* keys a resume may change ("optim.lr", "train.epochs") */
    int n_allow_changes;
} larch_fit_checkpoint;

typedef enum { LARCH_COMPRESS_NONE, LARCH_COMPRESS_FP16, LARCH_COMPRESS_BF16 } larch_compress;

/* Gradient communication (the config's `dist` section, docs/distributed.md). */
typedef struct larch_fit_dist {
    double bucket_mb;        /* [0.001, 65536] gradient bucket size, MiB                     */
    double first_bucket_mb;  /* [0.001, 65536] the first bucket (the last layers), MiB       */
    int overlap;             /* start each bucket's allreduce during backward                */
    int comm_thread;         /* overlap through a thread of blocking allreduces (else Iallreduce) */
    larch_compress compress; /* 16-bit gradients on the wire                                 */
    int shard_optimizer;     /* ZeRO stage 1: optimizer state of this rank's slice only      */
    double timeout_s;        /* [0, 1e7] watchdog on collectives (0 = off)                   */
} larch_fit_dist;

/* Adversarial training (docs/adversarial.md): each step trains on attacked
 * inputs crafted against the current model in training mode. eps, step_size
 * in raw input units (pixels 0..1). The random starts are drawn from
 * (seed, LARCH_RNG_ATTACK, global sample index, step): every rank count
 * trains on the same adversarial batch. */
typedef enum {
    LARCH_ADV_NONE = 0,
    LARCH_ADV_PGD = 1,       /* Madry et al. 2018: `steps` PGD steps from a random start */
    LARCH_ADV_FGSM_RS = 2,   /* Wong et al. 2020: one FGSM step of step_size from a random start */
    LARCH_ADV_TRADES = 3     /* Zhang et al. 2019: CE + trades_beta KL(f(x) || f(x')), x' maximizing the KL */
} larch_adv_method;
typedef struct larch_fit_adversarial {
    larch_adv_method method;
    double eps;              /* [0, 1e6] radius                                               */
    int steps;               /* [1, 1000] PGD steps                                            */
    double step_size;        /* [0, 1e6] 0: pgd 2.5 eps / steps, fgsm_rs 1.25 eps             */
    int l2;                  /* 1: L2 ball (default: L-infinity)                               */
    double trades_beta;      /* [0, 1e6] TRADES: weight of the KL term (6)                     */
} larch_fit_adversarial;
/* Knowledge distillation (Hinton et al. 2015; docs/compression/distillation.md):
 * the teacher runs forward in evaluation mode on every micro-batch, and the
 * student's first softmax_ce loss becomes alpha T^2 KL(softmax(t / T) ||
 * softmax(s / T)) + (1 - alpha) CE. */
typedef struct larch_fit_distill {
    larch_model *teacher;    /* NULL = off; finalized, its parameters loaded, the same on every rank
                                (larch_fit plans it; the caller frees it after larch_fit)          */
    double alpha;            /* [0, 1] weight of the distillation term                           */
    double temperature;      /* [0.01, 100] T                                                    */
} larch_fit_distill;

typedef struct larch_fit_spec {
    /* Built by the caller, finalized, the same layers on every rank (rank 0's
     * parameters and buffers are broadcast at the start). larch_fit plans it,
     * sets its parameters' lr_mult/wd_mult from the optimizer's groups and
     * trains it in place; the caller frees it after larch_fit returns. */
    larch_model *model;
    /* Read only during larch_fit; every rank holds the whole sets. Each
     * loss must score a label set (or the float targets) the data has. */
    const larch_dataset *train_set, *test_set;
    larch_optim_opts optim;          /* its lr is the schedule's base rate */
    larch_sched_opts sched;
    larch_fit_train train;
    larch_fit_data data;
    larch_fit_checkpoint checkpoint;
    larch_fit_dist dist;
    larch_fit_adversarial adversarial;   /* method LARCH_ADV_NONE by default */
    larch_prune_opts prune;          /* gradual magnitude pruning (sparsity 0 = off)  */
    larch_fit_distill distill;       /* knowledge distillation (teacher NULL = off)   */
    /* The validated config the spec came from (larch_train), or NULL. It is
     * what DIR/config.yaml and each checkpoint record, what the ranks compare
     * (a hash) and what a resume compares (larch_ckpt_check_resume). With
     * NULL, larch_fit records a config generated from the spec: the
     * sections train, optim, sched, dist and checkpoint with every value
     * (not the model or the data, which the program builds itself); a resume
     * then compares those sections, the global batch and seed, and the
     * checkpoint's tensors (names and shapes) and optimizer state. */
    const larch_node *config;
} larch_fit_spec;

/* Every setting at the config's default (the values `larch config --help`
 * lists: batch 256, 1 epoch, seed 42, sgd, constant schedule, checkpoints
 * at the end, ...); model and datasets NULL. */
LARCH_API larch_fit_spec larch_fit_defaults(void);

/* Checks every setting's range and the optimizer and schedule options;
 * LARCH_ERR_INVALID names the field ("train.batch_size = 0 is out of range
 * [1, 16777216]"). larch_fit calls it first. */
LARCH_API larch_status larch_fit_validate(const larch_fit_spec *spec);

/* Collective over comm: every rank calls it with the same spec. Trains,
 * evaluates (at eval_every and at the end), writes checkpoints, and
 * resumes; stop signals as for larch_train (opts->handle_signals). A
 * failure on any rank ends every rank with that rank's message. opts->
 * eval_only evaluates the model (from opts->checkpoint when set) and stops. */
LARCH_API larch_status larch_fit(const larch_fit_spec *spec, const larch_comm *comm,
                                 const larch_train_opts *opts, larch_train_result *res);

/* The config front end: a validated config's settings, optimizer and
 * schedule as a spec (model and datasets left NULL, spec->config = cfg;
 * checkpoint.allow_changes is read from cfg by the resume check and left
 * empty in the spec).
 * spec->optim.groups is allocated and points into cfg: release with
 * larch_fit_spec_release. */
LARCH_API larch_status larch_fit_spec_from_cfg(const larch_node *cfg, larch_fit_spec *spec);
LARCH_API void larch_fit_spec_release(larch_fit_spec *spec);

/* Builds the config's datasets and model (and rank 0 loads model.init_from),
 * then runs larch_fit with larch_fit_spec_from_cfg's spec. */
LARCH_API larch_status larch_train(larch_node *cfg, const larch_comm *comm,
                                   const larch_train_opts *opts, larch_train_result *res);

#ifdef __cplusplus
}
#endif
#endif
