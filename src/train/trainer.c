/* trainer.c - the data-parallel training driver, larch_fit (see
 * include/larch/train.h). It reads only the typed spec; the config tree
 * (the spec's, or one generated from the spec) is recorded and compared,
 * never read for settings.
 *
 * Setup (datasets, model, optimizer, loaders, output files) may fail on any
 * rank; every rank then agrees through larch_comm_check before the first
 * collective of training, so none is left waiting. Inside the loop the only
 * failure is a non-finite loss, which every rank sees at once because the
 * loss is reduced every step. The step itself allocates nothing and does no
 * I/O: batches come from the prefetching loader, activations from the
 * planned arena, and metrics are written only at log points.
 */
#include "larch/train.h"
#include "train/fit_internal.h"
#include "nn/quant.h"
#include "nn/model_internal.h"   /* the model's layout (library-internal) */
#include "larch/data.h"
#include "larch/flow.h"
#include "larch/rng.h"
#include "larch/optim.h"
#include "larch/checkpoint.h"
#include "core/blas.h"
#include "core/threads.h"
#include "core/fs.h"
#include "parallel/grad_sync.h"
#include "nn/attack.h"
#include "train/phase_times.h"
#include "train/run_report.h"
#include "optim/prune.h"     /* gradual magnitude pruning (docs/compression/pruning.md) */
#include "nn/loss.h"         /* the loss distillation replaces (docs/compression/distillation.md) */

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct run {
    const larch_comm *comm;
    const larch_fit_spec *spec;
    const larch_node *cfg;               /* recorded and compared: the spec's, or own_cfg */
    larch_node *own_cfg;                 /* generated from the spec (a C program's run) */
    const char *init_text;               /* what model.init_from did (rank 0), or NULL */
    const larch_train_opts *opts;
    FILE *log;                           /* rank 0's progress, or NULL */
    /* settings */
    int batch, epochs, accumulate, eval_batch, local, micro, stop_on_nan;
    long max_steps, log_every, eval_every, total_steps, steps_per_epoch;
    uint64_t seed;
    double progress_s;
    /* state */
    const larch_dataset *train, *test;
    larch_dataset test_head;             /* train.eval_samples: the test split's first N */
    larch_model *model;
    larch_optim *optim;
    larch_sched sched;
    larch_loader *loader, *eval_loader;
    grad_sync *sync;                     /* bucketed gradient allreduce */
    larch_comm_hooks hooks;              /* SyncBatchNorm's sums        */
    larch_status hook_status;
    FILE *metrics;
    /* checkpoints */
    char ckpt_dir[4200];
    long ckpt_every, start_step, last_saved;
    int ckpt_keep, ckpt_at_end, stop_requested;
    int lock_out, lock_ckpt;             /* rank 0's locks on the directories (-1: none) */
    char run_id[24];                     /* this run's id, the same on every rank */
    char *lineage;                       /* the checkpoints' lineage including this run */
    long eval_step;                      /* eval: the step of the evaluated checkpoint */
    /* where the loop's time goes (seconds since the loop started, this rank) */
    double t_steps;                      /* fetching batches + the steps (the step window) */
    double t_wait;                       /* of which: waiting for the loader */
    double t_eval, t_ckpt, t_log;        /* evaluation, checkpoints, metrics/progress output */
    long eval_samples;                   /* samples scored by evaluations (global) */
    double last_eval_s;                  /* the last evaluation's seconds */
    larch_loss_stats stats[LARCH_MAX_TARGETS * 2];
    double task_loss[LARCH_MAX_TARGETS * 2];   /* last step's mean loss per task */
    /* adversarial training (spec->adversarial; docs/adversarial.md) */
    larch_attack_ws *adv_ws;
    larch_attack_opts adv;
    float *adv_x;                        /* (local batch, input): the step's attacked inputs */
    float *adv_buffers;                  /* the running statistics before the attack passes */
    double t_attack;                     /* of t_steps: crafting the attacks */
    int trades;                          /* TRADES: the KL term in the step's loss */
    larch_phases ph;                     /* per-phase times of the log window (phase_times.h) */
    int report_warned;                   /* the HTML report could not be written (said once) */
    double report_t;                     /* when it was last written (larch_comm_wtime) */
    larch_pruner *pruner;                /* spec->prune.sparsity > 0, else NULL */
    larch_model *teacher;                /* spec->distill.teacher (planned here), or NULL */
    int teacher_node;                    /* the teacher output it reads */
} run_t;

/* ---- setup ---- */

static int choose_threads(const run_t *r)
{
    long t = r->spec->train.threads;
    if (t > 0) return (int)t;
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    if (env && atoi(env) > 0) return atoi(env);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int per = (int)(cores / (r->comm->local_size > 0 ? r->comm->local_size : 1));
    return per > 0 ? per : 1;
}

/* A number for JSON: non-finite values (a diverged loss) become null. */
static const char *json_num(double v, char *buf, size_t len)
{
    if (isfinite(v)) snprintf(buf, len, "%.6g", v);
    else snprintf(buf, len, "null");
    return buf;
}

/* ||all parameters||, recorded with each evaluation (weight growth; equal
 * parameters across runs show as equal norms). */
static double param_norm(const larch_model *m)
{
    double acc[8] = {0}, t = 0.0;
    size_t i = 0;
    for (; i + 8 <= m->n_floats; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += (double)m->param[i + k] * m->param[i + k];
    for (; i < m->n_floats; i++) t += (double)m->param[i] * m->param[i];
    for (int k = 0; k < 8; k++) t += acc[k];
    return sqrt(t);
}

/* Every loss must read a label set the data has, and score as many outputs
 * as that set has classes; a loss on float targets as many as the data has
 * targets per sample. */
static larch_status check_heads(const run_t *r)
{
    const larch_model *m = r->model;
    for (int i = 0; i < m->n_losses; i++) {
        const larch_loss *l = &m->losses[i];
        size_t outs = larch_shape_size(larch_model_node_shape(m, l->node));
        if (l->on_targets) {
            if (r->train->n_targets == 0)
                return larch_fail(LARCH_ERR_CONFIG, "loss '%s': on: targets, but the data has no float targets (set "
                                  "data.synthetic.regression: K with data.name: synthetic)", l->name);
            if (l->target != 0)
                return larch_fail(LARCH_ERR_CONFIG, "loss '%s': target %d: the data has one set of float targets (target 0)",
                                  l->name, l->target);
            if (outs != (size_t)r->train->n_targets)
                return larch_fail(LARCH_ERR_SHAPE, "loss '%s' scores layer '%s' with %zu outputs, but the data has %d float "
                                  "targets per sample", l->name, m->layers[l->node - 1]->name, outs, r->train->n_targets);
            continue;
        }
        if (l->type == LARCH_LOSS_FLOW_NLL) {   /* a density: no labels (docs/flows.md) */
            if (!larch_model_is_flow(m))
                return larch_fail(LARCH_ERR_CONFIG, "loss '%s' (flow_nll): the model is not a flow (a chain of dequantize, "
                                  "actnorm, invconv, coupling, squeeze and split layers)", l->name);
            int identity = 1;
            for (int c = 0; c < r->train->n_norm; c++) identity &= r->train->mean[c] == 0.0f && r->train->std[c] == 1.0f;
            if (strcmp(larch_layer_type(m->layers[0]), "dequantize") == 0 && (r->train->u8 || r->train->ooc_u8) && !identity)
                return larch_fail(LARCH_ERR_CONFIG, "loss '%s' (flow_nll): layer '%s' (dequantize) needs the pixels as "
                                  "k / 255 in [0, 1]: set data.mean: [0] and data.std: [1]", l->name, m->layers[0]->name);
            continue;
        }
        int classes = larch_dataset_classes(r->train, l->target);
        if (l->target > r->train->n_derived)
            return larch_fail(LARCH_ERR_CONFIG, "loss '%s': target %d: the data has label sets 0..%d (set 0 is the dataset's "
                              "labels, 1.. come from data.derived_labels)", l->name, l->target, r->train->n_derived);
        /* A global-batch loss over micro-batches would score pairs within
         * each micro-batch only (and update centers per micro-batch): not
         * the loss of the step's batch, so it is refused. */
        if (larch_loss_embedding(l->type) && l->global && r->accumulate > 1)
            return larch_fail(LARCH_ERR_CONFIG, "loss '%s': train.accumulate = %d: a global-batch loss (%s) needs the whole "
                              "batch in one pass; set train.accumulate: 1, or global: false on the loss to score each "
                              "micro-batch on its own", l->name, r->accumulate,
                              l->type == LARCH_LOSS_CENTER ? "the center update" : "pairs of the batch");
        if (l->type == LARCH_LOSS_CENTER && l->classes < classes)
            return larch_fail(LARCH_ERR_CONFIG, "loss '%s' (center): classes = %d, but label set %d has %d classes (one "
                              "center each)", l->name, l->classes, l->target, classes);
        if (larch_loss_embedding(l->type)) continue;   /* embeddings of any width */
        if (outs != (size_t)classes)
            return larch_fail(LARCH_ERR_SHAPE, "loss '%s' scores layer '%s' with %zu outputs, but label set %d has %d classes",
                              l->name, m->layers[l->node - 1]->name, outs, l->target, classes);
    }
    return LARCH_OK;
}

static larch_status read_settings(run_t *r)
{
    const larch_fit_train *t = &r->spec->train;
    r->batch = t->batch_size;
    r->epochs = t->epochs;
    r->max_steps = t->max_steps;
    r->seed = t->seed;
    r->log_every = t->log_every;
    r->eval_every = t->eval_every;
    r->eval_batch = t->eval_batch;
    r->accumulate = t->accumulate;
    r->stop_on_nan = t->stop_on_nan;
    r->progress_s = t->progress_seconds;
    const larch_fit_checkpoint *ck = &r->spec->checkpoint;
    r->ckpt_every = ck->every_steps;
    r->ckpt_keep = ck->keep;
    r->ckpt_at_end = ck->at_end;
    const char *dir = ck->dir ? ck->dir : "";
    if (dir[0]) snprintf(r->ckpt_dir, sizeof r->ckpt_dir, "%s", dir);
    else if (r->opts->out_dir) snprintf(r->ckpt_dir, sizeof r->ckpt_dir, "%s/checkpoints", r->opts->out_dir);
    r->last_saved = -1;
    int world = r->comm->size;
    if (r->batch % world != 0)
        return larch_fail(LARCH_ERR_CONFIG, "train.batch_size: the global batch %d is not divisible by %d ranks", r->batch, world);
    r->local = r->batch / world;
    if (r->local % r->accumulate != 0)
        return larch_fail(LARCH_ERR_CONFIG, "train.accumulate: the per-rank batch %d is not divisible into %d micro-batches",
                          r->local, r->accumulate);
    r->micro = r->local / r->accumulate;
    if (r->eval_batch % world != 0) r->eval_batch += world - r->eval_batch % world;
    return LARCH_OK;
}

static larch_status open_outputs(run_t *r, int append)
{
    if (r->comm->rank != 0 || !r->opts->out_dir) return LARCH_OK;
    larch_status s = larch_mkdir_p(r->opts->out_dir);
    if (s) return s;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.yaml", r->opts->out_dir);
    if ((s = larch_cfg_save(r->cfg, path))) return s;
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->opts->out_dir);
    r->metrics = fopen(path, append ? "a" : "w");
    if (!r->metrics) return larch_fail(LARCH_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (r->init_text && !append) {                  /* what model.init_from did, tensor by tensor */
        snprintf(path, sizeof path, "%s/init_from.txt", r->opts->out_dir);
        FILE *f = fopen(path, "w");
        int bad = !f || fputs(r->init_text, f) < 0;
        if (f && fclose(f) != 0) bad = 1;
        if (bad)
            return larch_fail(LARCH_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }
    return LARCH_OK;
}

/* The resolved config as YAML text (malloc'ed; NULL when out of memory). */
static char *config_text(const run_t *r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    larch_cfg_write(r->cfg, f);
    fclose(f);
    return text;
}

/* Every rank must run the same config: compare a hash of its text. */
static larch_status check_same_config(run_t *r)
{
    if (r->comm->size == 1) return LARCH_OK;
    char *text = config_text(r);
    if (!text) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    double h = (double)(larch_hash32(text ? text : "") & 0xFFFFFF), lo = -h, hi = h;
    free(text);
    larch_status s = larch_comm_max_f64(r->comm, &lo, 1);
    if (!s) s = larch_comm_max_f64(r->comm, &hi, 1);
    if (s) return s;
    if (-lo != hi)
        return larch_fail(LARCH_ERR_CONFIG, "the ranks run different configs (config hashes differ; rank %d has %06x): "
                          "start every rank with the same file and --set options", r->comm->rank, (unsigned)h);
    return LARCH_OK;
}

/* SyncBatchNorm's sum over ranks; a failure is kept for the step to return. */
static void hook_allreduce(void *ctx, double *buf, int n)
{
    run_t *r = ctx;                         /* a failure: the step goes on, its agreement reports it */
    larch_status s = larch_comm_allreduce_f64(r->comm, buf, n);
    if (!s) s = larch_comm_fault(r->comm, "hook");
    if (s && !r->hook_status) r->hook_status = s;
}

/* The global-batch losses' gather (metric_loss.c); a failure is kept like
 * the sums'. */
static void hook_allgather(void *ctx, const void *send, size_t bytes, void *recv)
{
    run_t *r = ctx;
    larch_status s = larch_comm_allgather(r->comm, send, bytes, recv);
    if (!s) s = larch_comm_fault(r->comm, "hook");
    if (s && !r->hook_status) r->hook_status = s;
}

/* Rank 0: the run's hold on its output and checkpoint directories, so that
 * a second run on either fails now, at its start; both are created and
 * checked writable here rather than at the first save. */
static larch_status lock_dirs(run_t *r)
{
    if (r->opts->eval_only) return LARCH_OK;
    if ((r->ckpt_every > 0 || r->ckpt_at_end) && !r->ckpt_dir[0])
        return larch_fail(LARCH_ERR_CONFIG, "checkpoint.dir: no directory to save into (set it, or give --out)");
    if (r->comm->rank != 0) return LARCH_OK;
    larch_status s = LARCH_OK;
    if (r->opts->out_dir) s = larch_dir_lock(r->opts->out_dir, "the output directory", &r->lock_out);
    struct stat a, b;
    int same = r->opts->out_dir && r->ckpt_dir[0] && stat(r->opts->out_dir, &a) == 0 && stat(r->ckpt_dir, &b) == 0 &&
               a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    if (!s && r->ckpt_dir[0] && !same) s = larch_dir_lock(r->ckpt_dir, "checkpoint.dir", &r->lock_ckpt);
    return s;
}

/* Adversarial training: the attack's options from the spec and the
 * training data's normalization, its workspace and buffers (plan time). */
static larch_status adversarial_setup(run_t *r)
{
    const larch_fit_adversarial *a = &r->spec->adversarial;
    if (a->method == LARCH_ADV_NONE) return LARCH_OK;
    const larch_dataset *d = r->train;
    r->trades = a->method == LARCH_ADV_TRADES;
    r->adv = (larch_attack_opts){.method = a->method == LARCH_ADV_FGSM_RS ? LARCH_ATTACK_FGSM : LARCH_ATTACK_PGD,
                                 .norm = a->l2 ? LARCH_ATTACK_L2 : LARCH_ATTACK_LINF, .eps = (float)a->eps,
                                 .step_size = (float)a->step_size, .steps = a->steps, .restarts = 1, .random_start = 1,
                                 .keep_best = 0, .train = 1, .seed = r->seed, .comm = &r->hooks,
                                 .n_norm = d->n_norm, .mean = d->mean, .std = d->std,
                                 .clip = d->u8 != NULL || (d->ooc && d->ooc_u8), .lo = 0.0f, .hi = 1.0f};
    static const char *const names[] = {"none", "pgd", "fgsm_rs", "trades"};
    larch_status s = larch_attack_check(&r->adv);
    if (!s) s = larch_attack_ws_create(&r->adv_ws, r->model, r->micro);
    if (!s && r->trades) s = larch_trades_check(r->model);
    if (s) return larch_fail_context(s, "adversarial.method %s", names[a->method]);
    size_t in = larch_shape_size(r->model->input_shape);
    r->adv_x = larch_aligned_alloc((size_t)r->local * in * sizeof(float), "adversarial batch");
    r->adv_buffers = larch_aligned_alloc((r->model->n_buffer_floats + 1) * sizeof(float), "adversarial buffers");
    if (!r->adv_x || !r->adv_buffers) return LARCH_ERR_NOMEM;
    return LARCH_OK;
}

/* Distillation: the teacher reads the student's batches and scores as many
 * classes as the student's first softmax_ce loss; planned for a micro-batch. */
static larch_status setup_teacher(run_t *r)
{
    larch_model *t = r->spec->distill.teacher, *m = r->model;
    if (!t) return LARCH_OK;
    int k = larch_distill_loss_index(m), kt = larch_distill_loss_index(t);
    if (k < 0) return larch_fail(LARCH_ERR_CONFIG, "distill: the student has no softmax_ce loss to distill into");
    if (kt < 0) return larch_fail(LARCH_ERR_CONFIG, "distill.teacher: the teacher has no softmax_ce loss (its logits)");
    larch_shape a = m->input_shape, b = t->input_shape;
    if (a.h != b.h || a.w != b.w || a.c != b.c)
        return larch_fail(LARCH_ERR_SHAPE, "distill.teacher: the teacher's input is (%d, %d, %d), the student's (%d, %d, %d)",
                          b.h, b.w, b.c, a.h, a.w, a.c);
    size_t cs = larch_shape_size(larch_model_node_shape(m, m->losses[k].node));
    size_t ct = larch_shape_size(larch_model_node_shape(t, t->losses[kt].node));
    if (cs != ct)
        return larch_fail(LARCH_ERR_SHAPE, "distill.teacher: the teacher scores %zu classes (loss '%s'), the student %zu "
                          "(loss '%s')", ct, t->losses[kt].name, cs, m->losses[k].name);
    r->teacher = t;
    r->teacher_node = t->losses[kt].node;
    return larch_model_plan(t, r->micro);
}

static larch_status setup(run_t *r)
{
    larch_status s = read_settings(r);
    if (s) return s;
    if ((s = lock_dirs(r))) return s;
    larch_threads_set(choose_threads(r));
    if ((s = check_heads(r))) return s;
    const larch_fit_dist *dist = &r->spec->dist;
    int shard = dist->shard_optimizer;
    if ((s = larch_grad_sync_create(&r->sync, r->comm, r->model, dist->bucket_mb, dist->first_bucket_mb,
                                    !dist->overlap ? LARCH_SYNC_BLOCKING : dist->comm_thread ? LARCH_SYNC_THREAD : LARCH_SYNC_IALLREDUCE,
                                    shard, (int)dist->compress)))
        return s;
    r->hooks = (larch_comm_hooks){.allreduce_sum = hook_allreduce, .ctx = r, .allgather = hook_allgather,
                                  .ranks = r->comm->size};
    if ((s = larch_model_set_loss_comm(r->model, &r->hooks))) return s;   /* before the plan: it sizes the gather buffers */
    /* parameter groups (frozen tensors) decide which gradients the plan computes */
    size_t slice_lo, slice_hi;
    larch_grad_sync_shard_range(r->sync, &slice_lo, &slice_hi);
    if ((s = larch_optim_create_shard(&r->optim, r->model, &r->spec->optim, slice_lo, slice_hi))) return s;
    larch_grad_sync_plan(r->sync);                      /* the groups are known now: buckets of trainable tensors only */
    if (shard && r->comm->size > 1) r->optim->sum_hooks = &r->hooks;
    int eval_local = r->eval_batch / r->comm->size;
    if (r->spec->adversarial.method != LARCH_ADV_NONE) larch_model_set_input_grad(r->model, 1);
    if ((s = larch_model_plan(r->model, r->micro > eval_local ? r->micro : eval_local))) return s;
    if ((s = adversarial_setup(r))) return s;
    if ((s = larch_comm_check(r->comm, larch_model_set_precision(r->model, r->spec->train.precision)))) return s;

    const larch_fit_data *d = &r->spec->data;
    int prefetch = d->prefetch;
    larch_loader_opts lo = {.global_batch = r->batch, .rank = r->comm->rank, .world = r->comm->size, .shuffle = 1,
                            .drop_last = 1, .seed = r->seed, .flip = d->flip, .crop_pad = d->crop_pad,
                            .prefetch = prefetch, .resized_crop = d->resized_crop, .scale_lo = d->scale[0],
                            .scale_hi = d->scale[1], .ratio_lo = d->ratio[0], .ratio_hi = d->ratio[1],
                            .sampler = d->sampler, .classes_per_batch = d->classes_per_batch,
                            .samples_per_class = d->samples_per_class};
    if (r->train->n < r->batch)
        return larch_fail(LARCH_ERR_CONFIG, "train.batch_size: %d is larger than the %d training samples", r->batch, r->train->n);
    if ((s = larch_loader_create(&r->loader, r->train, &lo))) return s;
    larch_loader_opts eo = {.global_batch = r->eval_batch, .rank = r->comm->rank, .world = r->comm->size,
                            .seed = r->seed, .prefetch = prefetch};
    if ((s = larch_loader_create(&r->eval_loader, r->test, &eo))) return s;
    r->steps_per_epoch = larch_loader_steps(r->loader);
    r->total_steps = (long)r->epochs * r->steps_per_epoch;
    if (r->max_steps > 0 && r->max_steps < r->total_steps) r->total_steps = r->max_steps;
    if ((s = larch_sched_init(&r->sched, &r->spec->sched, r->spec->optim.lr, r->total_steps, r->steps_per_epoch)))
        return s;
    if (r->spec->prune.sparsity > 0.0 &&
        (s = larch_pruner_create(&r->pruner, r->model, &r->spec->prune, r->total_steps)))
        return s;
    if ((s = setup_teacher(r))) return s;
    return larch_phases_init(&r->ph, r->comm->rank, r->comm->size);
}

static long count_params(const larch_model *m)
{
    long n = 0;
    for (int i = 0; i < m->n_params; i++) n += (long)m->params[i].size;
    return n;
}

static void teardown(run_t *r)
{
    larch_attack_ws_free(r->adv_ws);
    free(r->adv_x);
    free(r->adv_buffers);
    larch_pruner_free(r->pruner);
    if (r->model) r->model->distill_logits = NULL;
    larch_loader_free(r->loader);
    larch_loader_free(r->eval_loader);
    larch_grad_sync_free(r->sync);
    larch_optim_free(r->optim);
    if (r->model) larch_model_set_loss_comm(r->model, NULL);   /* the hooks live in this run */
    larch_node_free(r->own_cfg);
    if (r->metrics) fclose(r->metrics);
    free(r->lineage);
    larch_phases_free(&r->ph);
    larch_dir_unlock(&r->lock_ckpt);
    larch_dir_unlock(&r->lock_out);
}

/* ---- checkpoints and preemption ---- */

/* Set by SIGTERM, SIGINT or SIGUSR1 (Slurm's warning before a time limit);
 * read once per step and agreed on by all ranks through the step's loss
 * reduction, and once before the first step. */
static volatile sig_atomic_t stop_signal;
static const int stop_signals[3] = {SIGTERM, SIGINT, SIGUSR1};
static int stop_signals_caught;          /* larch_catch_stop_signals was called */

static void on_stop_signal(int sig)
{
    if (sig == SIGINT && stop_signal) {  /* a second Ctrl-C: end now */
        signal(SIGINT, SIG_DFL);
        raise(SIGINT);
        return;
    }
    stop_signal = sig;
}

static void install_signals(struct sigaction old[3])
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    for (int i = 0; i < 3; i++) sigaction(stop_signals[i], &sa, old ? &old[i] : NULL);
}

void larch_catch_stop_signals(void)
{
    install_signals(NULL);
    stop_signals_caught = 1;
}

static const char *signal_name(int sig)
{
    return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : sig == SIGUSR1 ? "SIGUSR1" : "a signal";
}

/* Batch-norm running statistics differ between ranks that normalize their
 * own part of the batch; evaluation and checkpoints use their mean. */
static larch_status average_buffers(run_t *r)
{
    larch_model *m = r->model;
    if (r->comm->size == 1 || m->n_buffer_floats == 0) return LARCH_OK;
    larch_status s = larch_comm_allreduce_f32(r->comm, m->buffer, m->n_buffer_floats);
    float inv = 1.0f / (float)r->comm->size;
    for (size_t i = 0; !s && i < m->n_buffer_floats; i++) m->buffer[i] *= inv;
    return s;
}

/* Collective: writes the state after `done` steps. */
static larch_status save_checkpoint(run_t *r, long done, larch_train_result *res)
{
    if (!r->ckpt_dir[0])
        return larch_fail(LARCH_ERR_CONFIG, "checkpoint.dir: no directory to save into (set it, or give --out)");
    larch_status s = larch_comm_check(r->comm, average_buffers(r));    /* before the save's collectives */
    if (s) return s;
    larch_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.step = done;
    meta.epoch = done / r->steps_per_epoch;
    meta.sampler_epoch = done / r->steps_per_epoch;
    meta.sampler_step = done % r->steps_per_epoch;
    meta.samples_seen = done * (long)r->batch;
    meta.rng_seed = r->seed;
    meta.world_size = r->comm->size;
    meta.global_batch = r->batch;
    meta.sched_step = done;
    meta.sched_total_steps = r->total_steps;
    meta.steps_per_epoch = r->steps_per_epoch;
    snprintf(meta.run_id, sizeof meta.run_id, "%s", r->run_id);
    meta.lineage = r->lineage;
    meta.config = config_text(r);
    double t0 = larch_comm_wtime();
    s = larch_ckpt_save(r->ckpt_dir, r->ckpt_keep, r->comm, r->model, r->optim, &meta, res->checkpoint,
                        sizeof res->checkpoint);
    free(meta.config);
    if (s) return larch_fail_context(s, "saving the checkpoint of step %ld", done);
    r->last_saved = done;
    r->t_ckpt += larch_comm_wtime() - t0;
    larch_phases_add(&r->ph, LARCH_PH_CKPT, larch_comm_wtime() - t0);
    if (r->log) {
        fprintf(r->log, "checkpoint step %ld -> %s (%.2f s)\n", done, res->checkpoint, larch_comm_wtime() - t0);
        fflush(r->log);
    }
    return LARCH_OK;
}

/* Collective: this run's id (rank 0's, broadcast) and lineage: the parent
 * checkpoint's lineage (none: a fresh start; format 1: an unknown run "-")
 * followed by "<run id>:<step resumed>". */
static larch_status start_lineage(run_t *r, const larch_ckpt_meta *parent)
{
    char id[24] = "";
    if (r->comm->rank == 0) larch_ckpt_new_run_id(id, sizeof id);
    larch_status s = larch_comm_bcast(r->comm, id, sizeof id, 0);
    if (s) return s;
    snprintf(r->run_id, sizeof r->run_id, "%s", id);
    const char *before = !parent ? "" : parent->lineage && parent->lineage[0] ? parent->lineage : "-:0";
    size_t len = strlen(before) + strlen(id) + 32;
    free(r->lineage);
    r->lineage = malloc(len);
    if (!r->lineage) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    snprintf(r->lineage, len, "%s%s%s:%ld", before, before[0] ? " " : "", id, parent ? parent->step : 0L);
    return LARCH_OK;
}

/* Collective: the checkpoint to resume, loaded. checkpoint.resume names a
 * file, or "auto": the newest checkpoint of the directory that reads whole,
 * passing over (and saying so) newer ones whose metadata or tensors are
 * damaged. Rank 0 first compares the checkpoint's config with the run's
 * (larch_ckpt_check_resume). *have is 0 when there is nothing to resume. */
static larch_status find_and_load(run_t *r, const char *want, char *path, size_t len, larch_ckpt_meta *meta, int *have)
{
    int is_auto = strcmp(want, "auto") == 0, rank0 = r->comm->rank == 0;
    char **cands = NULL;
    int n = is_auto && rank0 && r->ckpt_dir[0] ? larch_ckpt_list(r->ckpt_dir, &cands) : 0, passed = 0;
    char first_err[600] = "";
    larch_status s = LARCH_OK;
    *have = 0;
    for (int i = 0; !s && !*have; i++) {
        path[0] = '\0';
        if (rank0) snprintf(path, len, "%s", is_auto ? (i < n ? cands[i] : "") : (i == 0 ? want : ""));
        if ((s = larch_comm_bcast(r->comm, path, len, 0)) || !path[0]) break;
        larch_status local = LARCH_OK;
        if (rank0) {
            larch_ckpt_meta head;
            local = larch_ckpt_read_meta(path, &head);
            if (!local) {
                local = larch_ckpt_check_resume(path, &head, r->cfg, r->total_steps, r->steps_per_epoch, r->log);
                larch_ckpt_meta_free(&head);         /* refused or not */
            }
        }
        s = larch_comm_check(r->comm, local);
        if (!s) s = larch_ckpt_load(path, r->comm, r->model, r->optim, meta);
        if (!s) { *have = 1; break; }
        if (s != LARCH_ERR_FORMAT || !is_auto) break;
        /* damaged: the next newest (a failed load is overwritten whole by the next) */
        if (!first_err[0]) snprintf(first_err, sizeof first_err, "%s", larch_errmsg());
        passed++;
        if (r->log) {
            fprintf(r->log, "checkpoint.resume=auto: passing over %s: %s\n", path, larch_errmsg());
            fflush(r->log);
        }
        s = LARCH_OK;
    }
    for (int i = 0; i < n; i++) free(cands[i]);
    free(cands);
    double counts[2] = {(double)n, (double)passed};   /* rank 0's, for every rank's message */
    if (!s) s = larch_comm_bcast(r->comm, counts, sizeof counts, 0);
    if (!s && is_auto && !*have && counts[0] > 0)
        s = larch_fail(LARCH_ERR_FORMAT, "checkpoint.resume=auto: none of the %.0f checkpoint(s) in %s is readable; the "
                       "newest: %s", counts[0], r->ckpt_dir, first_err[0] ? first_err : "(see rank 0)");
    if (!s && *have && counts[1] > 0 && r->log)
        fprintf(r->log, "checkpoint.resume=auto: resuming from the newest valid checkpoint, %s (%.0f newer damaged one(s) "
                "passed over)\n", path, counts[1]);
    return s;
}

/* Collective: loads checkpoint.resume and positions the run after its step;
 * then gives the run its lineage and prepares the checkpoint directory
 * (rank 0: stale temporaries removed, other lineages moved aside). */
static larch_status resume(run_t *r, larch_train_result *res)
{
    const char *want = r->spec->checkpoint.resume ? r->spec->checkpoint.resume : "";
    char path[4200] = "";
    larch_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    int have = 0;
    larch_status s = want[0] ? find_and_load(r, want, path, sizeof path, &meta, &have) : LARCH_OK;
    if (s) return s;
    if (want[0] && !have && r->log)
        fprintf(r->log, "checkpoint.resume=auto: no checkpoint in %s yet, starting fresh\n",
                r->ckpt_dir[0] ? r->ckpt_dir : "(no directory)");
    if (have && meta.step > r->total_steps)
        s = larch_fail(LARCH_ERR_CONFIG, "checkpoint %s is at step %ld, beyond this run's %ld steps (train.epochs / "
                       "train.max_steps)", path, meta.step, r->total_steps);
    if (!s && have) {
        r->start_step = meta.step;
        r->last_saved = meta.step;
        res->resumed_from = meta.step;
        if (r->log) {
            fprintf(r->log, "resumed from %s: step %ld (epoch %ld), saved by %d rank(s), now %d\n", path, meta.step,
                    meta.epoch, meta.world_size, r->comm->size);
            fflush(r->log);
        }
    }
    if (!s) s = start_lineage(r, have ? &meta : NULL);
    larch_ckpt_meta_free(&meta);
    if (s) return s;
    return larch_comm_check(r->comm, r->comm->rank == 0 && r->ckpt_dir[0]
                                         ? larch_ckpt_prepare_dir(r->ckpt_dir, r->lineage, r->run_id, r->log, NULL)
                                         : LARCH_OK);
}

/* ---- evaluation ---- */

/* Whether evaluation gathers the global batch (pairwise losses with global). */
static int gathers_in_eval(const larch_model *m)
{
    for (int k = 0; k < m->n_losses; k++)
        if (larch_loss_pairwise(m->losses[k].type) && m->losses[k].global) return 1;
    return 0;
}

/* Scores the test set; vals[3*k..] = loss mean, accuracy, count of loss k. */
static larch_status evaluate(run_t *r, double *vals)
{
    larch_model *m = r->model;
    int nl = m->n_losses;
    double sums[3 * LARCH_MAX_TARGETS * 2] = {0};
    double t0 = larch_comm_wtime();
    larch_status bs = average_buffers(r);
    if (!bs) bs = larch_comm_fault(r->comm, "eval");
    /* A global-batch loss gathers in every batch below: a rank that failed
     * above must not skip those gathers while the others enter them, so the
     * ranks agree first whether to score at all. */
    if (gathers_in_eval(m)) bs = larch_comm_check(r->comm, bs);
    larch_loader_seek(r->eval_loader, 0, 0);
    int steps = larch_loader_steps(r->eval_loader);
    for (int s = 0; !bs && s < steps; s++) {
        const larch_batch *b = larch_loader_next(r->eval_loader, NULL, NULL);
        larch_loss_stats st[LARCH_MAX_TARGETS * 2];
        if (b->n == 0) {
            /* the last batch may leave a rank without samples: it still
             * takes part in the global-batch losses' gather, with none */
            if (gathers_in_eval(m)) larch_model_loss(m, b, 0.0f, st);
            continue;
        }
        larch_pass p = {b->n, 0, r->seed, 0, b->sample0, 0, NULL};
        larch_model_forward(m, b, &p);
        larch_model_loss(m, b, 0.0f, st);
        for (int k = 0; k < nl; k++) {
            sums[3 * k] += st[k].loss_sum;
            sums[3 * k + 1] += (double)st[k].correct;
            sums[3 * k + 2] += (double)st[k].count;
        }
    }
    if (!bs) bs = larch_loader_status(r->eval_loader);
    if (!bs) bs = r->hook_status;                           /* the gathers of the pairwise losses */
    /* the sums and, in the same collective, whether a rank failed above */
    larch_status st = larch_comm_agree_sum(r->comm, "evaluation", bs, sums, 3 * nl);
    if (st) return st;
    for (int k = 0; k < nl; k++) {
        double n = sums[3 * k + 2] > 0 ? sums[3 * k + 2] : 1;
        vals[3 * k] = sums[3 * k] / n;
        vals[3 * k + 1] = sums[3 * k + 1] / n;
        vals[3 * k + 2] = sums[3 * k + 2];
    }
    r->last_eval_s = larch_comm_wtime() - t0;
    r->t_eval += r->last_eval_s;
    larch_phases_add(&r->ph, LARCH_PH_EVAL, r->last_eval_s);
    r->eval_samples += (long)sums[2];
    return LARCH_OK;
}

/* A task on float targets has a loss but no accuracy: null in metrics.jsonl,
 * NaN in the result, left out of the log line. */
static void report_eval(run_t *r, long step, const double *vals, larch_train_result *res)
{
    const larch_model *m = r->model;
    double epoch = (double)step / (double)r->steps_per_epoch;
    char num[32], acc[32];
    res->test_loss = vals[0];
    res->test_accuracy = larch_loss_has_accuracy(&m->losses[0]) ? vals[1] : NAN;
    for (int k = 0; k < m->n_losses; k++) {
        int has_acc = larch_loss_has_accuracy(&m->losses[k]);
        if (r->metrics)
            fprintf(r->metrics, "{\"step\": %ld, \"epoch\": %.4f, \"split\": \"test\", \"task\": \"%s\", "
                    "\"loss\": %s, \"accuracy\": %s, \"samples\": %.0f, \"weight\": %.6g, \"param_norm\": %.9g, "
                    "\"eval_s\": %.4f, \"eval_samples_per_s\": %.1f}\n",
                    step, epoch, m->losses[k].name, json_num(vals[3 * k], num, sizeof num),
                    json_num(has_acc ? vals[3 * k + 1] : NAN, acc, sizeof acc), vals[3 * k + 2],
                    larch_model_task_weight(m, k), param_norm(m), r->last_eval_s,
                    r->last_eval_s > 0 ? vals[3 * k + 2] / r->last_eval_s : 0.0);
        if (r->log) {
            fprintf(r->log, "eval  step %ld  epoch %.2f  task %s  test loss %.4f  ", step, epoch, m->losses[k].name, vals[3 * k]);
            if (has_acc) fprintf(r->log, "test accuracy %.4f  ", vals[3 * k + 1]);
            fprintf(r->log, "weight %.4g\n", larch_model_task_weight(m, k));
        }
    }
    if (r->metrics) fflush(r->metrics);
    if (r->log) fflush(r->log);
}

/* ---- the run report ---- */

/* Rank 0: DIR/run.json and DIR/report.html (run_report.h) at the start
 * (info), at each evaluation and, at most every 30 s, at log records
 * (neither), and at the end (end). A failure is a warning, once: it never
 * stops training nor replaces the run's error. */
static void report_refresh(run_t *r, const larch_report_info *info, const larch_report_totals *end, int throttle)
{
    if (r->comm->rank != 0 || !r->opts->out_dir || r->opts->eval_only) return;
    double now = larch_comm_wtime();
    if (throttle && now - r->report_t < 30.0) return;
    if (!info) r->report_t = now;
    char err[1400];
    int bad = info ? larch_report_start(r->opts->out_dir, info, err, sizeof err)
            : end ? larch_report_finish(r->opts->out_dir, end, err, sizeof err) : 0;
    if (!bad && !info) bad = larch_report_write(r->opts->out_dir, NULL, err, sizeof err);
    if (bad && !r->report_warned) {
        fprintf(r->log ? r->log : stderr, "larch: warning: the run report is not written: %s\n", err);
        r->report_warned = 1;
    }
}

/* ---- the step ---- */

/* Adversarial training: every micro-batch of the step attacked against the
 * current parameters in training mode, before any training backward (the
 * attack's passes leave the parameter gradients unspecified and the
 * gradient sync is not armed yet). The running statistics are restored
 * afterwards: only the training passes update them. Every rank runs the
 * same passes, so SyncBatchNorm's sums pair up. */
static larch_status craft_adversarial(run_t *r, const larch_batch *b, long step)
{
    larch_model *m = r->model;
    size_t in = larch_shape_size(m->input_shape);
    double t0 = larch_comm_wtime();
    if (m->n_buffer_floats) memcpy(r->adv_buffers, m->buffer, m->n_buffer_floats * sizeof(float));
    larch_attack_opts o = r->adv;
    o.step = (uint32_t)step;
    o.stream = (uint32_t)step;
    larch_status s = LARCH_OK;
    for (int a = 0; a < r->accumulate && !s; a++) {
        larch_batch mb = *b;
        mb.n = r->micro;
        mb.x = b->x + (size_t)a * r->micro * in;
        for (int t = 0; t < LARCH_MAX_TARGETS; t++) {
            if (b->label[t]) mb.label[t] = b->label[t] + (size_t)a * r->micro;
            if (b->target[t]) mb.target[t] = b->target[t] + (size_t)a * r->micro * (size_t)b->target_dim[t];
        }
        mb.sample0 = b->sample0 + (uint32_t)(a * r->micro);
        float *xa = r->adv_x + (size_t)a * r->micro * in;
        s = r->trades ? larch_trades_craft(m, r->adv_ws, &mb, &o, xa) : larch_attack_run(m, r->adv_ws, &mb, &o, xa, NULL, NULL);
    }
    if (m->n_buffer_floats) memcpy(m->buffer, r->adv_buffers, m->n_buffer_floats * sizeof(float));
    r->t_attack += larch_comm_wtime() - t0;
    return s;
}

/* One optimizer step on batch b; returns the mean loss over the global batch. */
static larch_status train_step(run_t *r, const larch_batch *b, long step, double *loss_out)
{
    larch_model *m = r->model;
    size_t in = larch_shape_size(m->input_shape);
    int nl = m->n_losses;
    larch_comm_set_step(r->comm, step + 1);
    double local[3 + LARCH_MAX_TARGETS * 2] = {0.0};  /* loss sum, samples, stop requests, per-task loss sums */
    double tp0 = larch_comm_wtime();
    larch_status as = r->adv_ws ? craft_adversarial(r, b, step) : LARCH_OK;
    for (int a = 0; a < r->accumulate; a++) {     /* micro-batches share one step */
        larch_batch mb = *b;
        mb.n = r->micro;
        mb.x = (r->adv_ws ? r->adv_x : b->x) + (size_t)a * r->micro * in;
        for (int t = 0; t < LARCH_MAX_TARGETS; t++) {      /* labels and float targets follow x */
            if (b->label[t]) mb.label[t] = b->label[t] + (size_t)a * r->micro;
            if (b->target[t]) mb.target[t] = b->target[t] + (size_t)a * r->micro * (size_t)b->target_dim[t];
        }
        mb.sample0 = b->sample0 + (uint32_t)(a * r->micro);
        larch_pass p = {mb.n, 1, r->seed, (uint32_t)step, mb.sample0, a > 0, &r->hooks};
        if (r->trades) {                       /* CE(f(x)) + beta KL(f(x) || f(x')): x' first, then x */
            float beta = (float)(r->spec->adversarial.trades_beta / r->batch);
            larch_batch cb = mb;
            cb.x = b->x + (size_t)a * r->micro * in;
            if (m->n_buffer_floats) memcpy(r->adv_buffers, m->buffer, m->n_buffer_floats * sizeof(float));
            larch_model_forward(m, &cb, &p);                  /* p = softmax f(x) (statistics untouched) */
            larch_trades_keep_clean(m, r->adv_ws, cb.n);
            if (m->n_buffer_floats) memcpy(m->buffer, r->adv_buffers, m->n_buffer_floats * sizeof(float));
            larch_model_forward(m, &mb, &p);
            local[0] += r->spec->adversarial.trades_beta * larch_trades_adv_grad(m, r->adv_ws, mb.n, beta);
            larch_model_backward(m, &p);
            p.acc_grad = 1;
            mb = cb;                                          /* the CE term and its backward below, on x */
        }
        if (r->teacher) {                         /* its logits of this micro-batch, evaluation mode */
            larch_pass tp = {mb.n, 0, r->seed, (uint32_t)step, mb.sample0, 0, NULL};
            larch_model_forward(r->teacher, &mb, &tp);
            m->distill_logits = r->teacher->node_y[r->teacher_node];
            m->distill_alpha = (float)r->spec->distill.alpha;
            m->distill_temperature = (float)r->spec->distill.temperature;
        }
        larch_model_forward(m, &mb, &p);
        local[0] += larch_model_loss(m, &mb, 1.0f / (float)r->batch, r->stats);
        m->distill_logits = NULL;                 /* evaluation scores plain cross-entropy */
        if (r->trades) larch_trades_clean_grad(m, r->adv_ws, mb.n, (float)(r->spec->adversarial.trades_beta / r->batch));
        local[1] += mb.n;
        for (int k = 0; k < nl; k++) local[3 + k] += r->stats[k].loss_sum;
        if (a == r->accumulate - 1) larch_grad_sync_begin(r->sync);   /* buckets start as backward finishes them */
        larch_model_backward(m, &p);
    }
    /* A rank that failed in the step (gradient sums, a hook, the gather)
     * still enters every collective the others enter; one reduction closes
     * the step with the loss sums, the stop requests and how many ranks
     * failed, so every rank learns of a failure there, before the next
     * collective, with the failing rank's message. */
    double tp1 = larch_comm_wtime();
    larch_status s = larch_grad_sync_finish(r->sync);              /* sum of 1/B-scaled grads over ranks */
    if (!s) s = as;
    double tp2 = larch_comm_wtime();
    if (!s) s = r->hook_status;                             /* SyncBatchNorm's sums */
    if (!s) s = larch_loader_status(r->loader);             /* out of core: a failed read */
    double penalty = larch_model_penalty(m, 1);
    double mom = larch_sched_momentum(&r->sched, step);
    if (mom >= 0.0) larch_optim_set_momentum(r->optim, (float)mom);
    if (r->pruner) larch_pruner_mask_grad(r->pruner);        /* pruned weights: no gradient, no state */
    larch_optim_step(r->optim, (float)larch_sched_lr(&r->sched, step));
    larch_status gs = larch_grad_sync_gather(r->sync);            /* sharded: everyone's updated slice to all */
    if (r->pruner) larch_pruner_apply(r->pruner);            /* after every step (and after the gather) */
    if (!s) s = gs;
    if (!s) s = r->hook_status;                             /* the clipping norm's sum */
    local[2] = stop_signal ? 1.0 : 0.0;
    double tp3 = larch_comm_wtime();
    s = larch_comm_agree_sum(r->comm, "loss", s, local, 3 + nl);
    larch_phases_add(&r->ph, LARCH_PH_COMPUTE, tp1 - tp0);
    larch_phases_add(&r->ph, LARCH_PH_SYNC, (tp2 - tp1) + (larch_comm_wtime() - tp3));   /* the loss sum waits too */
    larch_phases_add(&r->ph, LARCH_PH_OPTIM, tp3 - tp2);
    if (s) return s;
    if (local[2] > 0.0) r->stop_requested = 1;              /* every rank sees the same sum */
    for (int k = 0; k < nl; k++) r->task_loss[k] = local[3 + k] / local[1];
    double loss = local[0] / local[1] + penalty;
    *loss_out = loss;
    if (r->stop_on_nan && !isfinite(loss))
        return larch_fail(LARCH_ERR_NUMERIC, "the training loss is %g at step %ld (train.stop_on_nan is set; lower optim.lr?)",
                          loss, step + 1);               /* numbered as metrics.jsonl and the progress lines do */
    return LARCH_OK;
}

/* Why a feature that needs a second thread in MPI is off. */
#define NO_MULTIPLE "and MPI runs without it (LARCH_MPI_THREAD_LEVEL, docs/distributed.md)"

/* "gradient sync: 2 bucket(s), 320 bytes per step, overlapped" (the plan
 * after setup or a thaw). */
static const char *sync_summary(const run_t *r, char *buf, size_t len)
{
    const larch_fit_dist *dist = &r->spec->dist;
    if (r->comm->size == 1) snprintf(buf, len, "no gradient sync (1 rank)");
    else if (dist->shard_optimizer)
        snprintf(buf, len, "gradient sync: one reduce-scatter of %zu bytes per step (sharded: frozen tensors included)",
                 larch_grad_sync_bytes(r->sync));
    else
        snprintf(buf, len, "gradient sync: %d bucket(s), %zu bytes per step, %s", larch_grad_sync_buckets(r->sync),
                 larch_grad_sync_bytes(r->sync), !dist->overlap ? "blocking"
                 : !dist->comm_thread ? "overlapped (MPI_Iallreduce)"
                 : larch_comm_threads(r->comm) ? "overlapped (comm thread)"
                 : "overlapped (MPI_Iallreduce: dist.comm_thread needs MPI_THREAD_MULTIPLE, " NO_MULTIPLE ")");
    return buf;
}

static void fmt_eta(double s, char *buf, size_t len)
{
    long t = s > 0 && s < 1e8 ? (long)s : 0;
    snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

/* The freezing schedule (optim.groups[].unfreeze_after_epochs) at the start
 * of `epoch`: thawed tensors need gradients, so the model is re-planned
 * (once per thaw, between steps). */
static larch_status thaw(run_t *r, long epoch)
{
    larch_model *m = r->model;
    int n = larch_optim_thaw(m, epoch);
    if (n == 0) return LARCH_OK;
    larch_grad_sync_plan(r->sync);                     /* the thawed tensors join the buckets */
    if (r->log) {
        char sync[320];
        fprintf(r->log, "epoch %ld: unfroze %d tensor(s):", epoch, n);
        for (int i = 0, shown = 0; i < m->n_params; i++)
            if (m->params[i].thaw_epoch > 0 && m->params[i].thaw_epoch <= epoch && shown++ < 12)
                fprintf(r->log, " %s", m->params[i].name);
        fprintf(r->log, "%s\n", n > 12 ? " ..." : "");
        fprintf(r->log, "epoch %ld: %s\n", epoch, sync_summary(r, sync, sizeof sync));
        fflush(r->log);
    }
    /* every rank thaws at the same step; a failed re-plan on one of them
     * must not leave the others waiting in the next step's collectives */
    return larch_comm_check(r->comm, larch_model_plan(m, m->max_batch));
}

/* Multi-task training records: each task's mean loss and weight. */
static void write_tasks(const run_t *r)
{
    const larch_model *m = r->model;
    char num[32];
    fprintf(r->metrics, ", \"tasks\": {");
    for (int k = 0; k < m->n_losses; k++)
        fprintf(r->metrics, "%s\"%s\": {\"loss\": %s, \"weight\": %.6g}", k ? ", " : "", m->losses[k].name,
                json_num(r->task_loss[k], num, sizeof num), larch_model_task_weight(m, k));
    fprintf(r->metrics, "}");
}

static larch_status loop(run_t *r, larch_train_result *res)
{
    double t_start = larch_comm_wtime(), t_print = t_start - 1e9;
    double win_steps = 0.0, win_wait = 0.0;           /* the log window's step time and loader wait */
    long log_step = r->start_step;
    double vals[3 * LARCH_MAX_TARGETS * 2];
    larch_status s = LARCH_OK;
    long first = r->start_step;
    if (first >= r->total_steps) {                   /* resumed at the end: only evaluate */
        if (r->log) fprintf(r->log, "the checkpoint is at the last step (%ld): nothing to train\n", first);
        if ((s = evaluate(r, vals))) return s;
        report_eval(r, first, vals, res);
        res->epochs = (int)(first / r->steps_per_epoch);
        return LARCH_OK;
    }
    larch_loader_seek(r->loader, (int)(first / r->steps_per_epoch), (int)(first % r->steps_per_epoch));
    if ((s = thaw(r, first / r->steps_per_epoch))) return s;
    for (long step = first; step < r->total_steps; step++) {
        int epoch, istep;
        if (step > first && step % r->steps_per_epoch == 0 && (s = thaw(r, step / r->steps_per_epoch))) return s;
        if (r->pruner && larch_pruner_due(r->pruner, step)) {   /* the parameters are the same on every rank */
            larch_pruner_update(r->pruner, larch_pruner_target(r->pruner, step), r->optim);
            if (r->log) {
                fprintf(r->log, "prune step %ld: sparsity %.4f\n", step, larch_pruner_sparsity(r->pruner));
                fflush(r->log);
            }
        }
        /* the step window: from asking the loader for the batch to the end
         * of the update (evaluation, checkpoints and output are outside) */
        double t0 = larch_comm_wtime();
        const larch_batch *b = larch_loader_next(r->loader, &epoch, &istep);
        double t1 = larch_comm_wtime();
        double loss;
        if ((s = train_step(r, b, step, &loss))) return s;
        long done = step + 1;
        res->steps = done;
        res->final_loss = loss;
        double now = larch_comm_wtime();
        win_steps += now - t0;
        win_wait += t1 - t0;
        r->t_steps += now - t0;
        r->t_wait += t1 - t0;
        larch_phases_add(&r->ph, LARCH_PH_DATA, t1 - t0);
        double lr = larch_sched_lr(&r->sched, step);
        if (done % r->log_every == 0 || done == r->total_steps) {
            double sps = win_steps > 0 ? (double)(done - log_step) * r->batch / win_steps : 0.0;
            if ((s = larch_phases_gather(&r->ph, r->comm))) return s;   /* every rank: one small collective */
            if (r->metrics) {
                char num[32];
                long n_sync = 0, early = 0;
                double wait = larch_grad_sync_take_wait(r->sync, &n_sync, &early);
                fprintf(r->metrics, "{\"step\": %ld, \"epoch\": %.4f, \"loss\": %s, \"lr\": %.6g, "
                        "\"samples_per_s\": %.1f, \"wall_samples_per_s\": %.1f, \"loader_wait_ms\": %.3f, "
                        "\"sync_wait_ms\": %.3f, \"sync_bytes\": %zu, \"sync_buckets\": %d, "
                        "\"sync_overlapped\": %.3g, \"time\": %.3f",
                        done, (double)done / r->steps_per_epoch, json_num(loss, num, sizeof num), lr, sps,
                        (double)(done - first) * r->batch / (now - t_start), 1e3 * win_wait / (double)(done - log_step),
                        n_sync ? 1e3 * wait / (double)n_sync : 0.0, larch_grad_sync_bytes(r->sync),
                        r->comm->size > 1 ? larch_grad_sync_buckets(r->sync) : 0,
                        n_sync ? (double)early / (double)n_sync : 0.0, now - t_start);
                if (r->model->n_losses > 1) write_tasks(r);
                larch_phases_write_json(&r->ph, r->metrics);
                if (r->pruner) fprintf(r->metrics, ", \"sparsity\": %.6f", larch_pruner_sparsity(r->pruner));
                fprintf(r->metrics, "}\n");
                fflush(r->metrics);
                report_refresh(r, NULL, NULL, 1);
            }
            log_step = done;
            win_steps = win_wait = 0.0;
        }
        if (r->log && (now - t_print >= r->progress_s || done == r->total_steps)) {
            char eta[32];
            double rate = (double)(done - first) / (now - t_start);
            fmt_eta((double)(r->total_steps - done) / rate, eta, sizeof eta);
            fprintf(r->log, "train step %ld/%ld  epoch %.2f  loss %.4f  lr %.4g  %.0f samples/s  eta %s\n",
                    done, r->total_steps, (double)done / r->steps_per_epoch, loss, lr,
                    rate * r->batch, eta);
            fflush(r->log);
            t_print = larch_comm_wtime();
        }
        r->t_log += larch_comm_wtime() - now;
        int epoch_end = istep == r->steps_per_epoch - 1;
        if ((r->eval_every > 0 ? done % r->eval_every == 0 : epoch_end) || done == r->total_steps) {
            if ((s = evaluate(r, vals))) return s;
            report_eval(r, done, vals, res);
            report_refresh(r, NULL, NULL, 0);
        }
        res->epochs = (int)(done / r->steps_per_epoch);
        if (r->stop_requested) {                             /* preemption: save, then stop */
            if ((s = save_checkpoint(r, done, res))) return s;
            return larch_fail(LARCH_ERR_INTERRUPTED, "stopped by a signal after step %ld; the checkpoint %s resumes it "
                              "(checkpoint.resume=auto)", done, res->checkpoint);
        }
        if ((r->ckpt_every > 0 && done % r->ckpt_every == 0) || (done == r->total_steps && r->ckpt_at_end))
            if ((s = save_checkpoint(r, done, res))) return s;
    }
    res->wall_seconds = larch_comm_wtime() - t_start;
    res->samples_per_s = r->t_steps > 0 ? (double)(res->steps - first) * (double)r->batch / r->t_steps : 0.0;
    if (r->log) {                                    /* where the loop's time went (rank 0) */
        double n = (double)(res->steps - first) * (double)r->batch;
        fprintf(r->log, "time: %.2f s in %ld steps (%.0f samples/s; loader wait %.3f ms/step), %.2f s evaluating "
                "(%ld samples, %.0f samples/s), %.2f s in checkpoints, %.3f s writing metrics and progress; "
                "%.2f s wall (%.0f samples/s)\n", r->t_steps, res->steps - first, res->samples_per_s,
                1e3 * r->t_wait / (double)(res->steps - first), r->t_eval, r->eval_samples,
                r->t_eval > 0 ? (double)r->eval_samples / r->t_eval : 0.0, r->t_ckpt, r->t_log, res->wall_seconds,
                res->wall_seconds > 0 ? n / res->wall_seconds : 0.0);
        if (r->adv_ws)
            fprintf(r->log, "adversarial: %.2f s of the steps' %.2f s crafted the attacks (%s, eps %g, %d step(s) of %g)\n",
                    r->t_attack, r->t_steps, r->trades ? "trades" : r->adv.method == LARCH_ATTACK_PGD ? "pgd" : "fgsm_rs", r->adv.eps,
                    r->adv.method == LARCH_ATTACK_PGD ? r->adv.steps : 1, larch_attack_step_size(&r->adv));
        fflush(r->log);
    }
    return LARCH_OK;
}

larch_status larch_fit(const larch_fit_spec *spec, const larch_comm *comm, const larch_train_opts *opts,
                       larch_train_result *res)
{
    return larch_fit_run(spec, comm, opts, res, NULL);
}

larch_status larch_fit_run(const larch_fit_spec *spec, const larch_comm *comm, const larch_train_opts *opts,
                           larch_train_result *res, const char *init_text)
{
    run_t r;
    memset(&r, 0, sizeof r);
    memset(res, 0, sizeof *res);
    r.comm = comm;
    r.spec = spec;
    r.opts = opts;
    r.model = spec->model;
    r.train = spec->train_set;
    r.test = spec->test_set;
    if (spec->train.eval_samples > 0 && spec->train.eval_samples < spec->test_set->n) {
        r.test_head = *spec->test_set;      /* a view: the first N samples, nothing copied */
        r.test_head.n = (int)spec->train.eval_samples;
        r.test = &r.test_head;
    }
    r.init_text = init_text;
    r.log = comm->rank == 0 ? opts->log : NULL;
    r.lock_out = r.lock_ckpt = -1;
    larch_comm_set_step(comm, 0);
    /* the watchdog (dist.timeout_s) covers setup's agreements too */
    larch_status s = larch_fit_validate(spec);
    if (!s && !opts->eval_only && larch_q8_count(spec->model, NULL, 0))   /* int8 kernels attached (nn/quant.h) */
        s = larch_fail(LARCH_ERR_INVALID, "the model runs int8 kernels (an int8 checkpoint): it can be evaluated, not trained");
    if (!s) s = larch_comm_watchdog(comm, spec->dist.timeout_s);
    if (!s && spec->config) r.cfg = spec->config;
    else if (!s && !(s = larch_fit_spec_to_cfg(spec, &r.own_cfg))) r.cfg = r.own_cfg;
    s = larch_comm_check(comm, s ? s : setup(&r));
    if (!s) s = larch_comm_check(comm, check_same_config(&r));
    if (!s) s = larch_comm_bcast(comm, r.model->param, r.model->n_floats * sizeof(float), 0);
    if (!s) s = larch_comm_bcast(comm, r.model->buffer, r.model->n_buffer_floats * sizeof(float), 0);
    if (!s && opts->eval_only && opts->checkpoint) {
        larch_ckpt_meta em;
        s = larch_ckpt_load(opts->checkpoint, comm, r.model, NULL, &em);
        if (!s) r.eval_step = em.step;             /* the record carries the checkpoint's step */
        if (!s) larch_ckpt_meta_free(&em);
    }
    if (!s && !opts->eval_only) s = resume(&r, res);
    if (!s) s = larch_comm_check(comm, open_outputs(&r, res->resumed_from > 0));
    res->steps = r.start_step;
    if (!s && r.log) {
        fprintf(r.log, "larch %s: %d rank(s) x %d OpenBLAS thread(s) [%s]; %ld parameters; %ld steps of global batch %d (%d per rank",
                LARCH_VERSION_STRING, comm->size, larch_blas_threads(), larch_blas_corename(),
                count_params(r.model), r.total_steps, r.batch, r.local);
        if (r.accumulate > 1) fprintf(r.log, ", %d micro-batches of %d", r.accumulate, r.micro);
        char sync[320];
        fprintf(r.log, "); optimizer %s, state %.3g MiB per rank%s; %s\n", r.optim->name,
                (double)r.optim->n_state * (double)r.optim->n_state_floats * sizeof(float) / 1048576.0,
                comm->size > 1 && spec->dist.shard_optimizer ? " (sharded)" : "",
                sync_summary(&r, sync, sizeof sync));
        if (comm->size > 1 && spec->dist.timeout_s > 0 && !larch_comm_threads(comm))
            fprintf(r.log, "dist.timeout_s: the watchdog asks the other ranks where they are only with MPI_THREAD_MULTIPLE, "
                    NO_MULTIPLE "; a watchdog that fires ends its own rank\n");
        char note[300];   /* what a one-cycle schedule does to the momentum, once */
        if (!opts->eval_only && larch_sched_momentum_note(&r.sched, r.optim, note, sizeof note)) fprintf(r.log, "%s\n", note);
        fflush(r.log);
    }
    if (!s && opts->eval_only) {
        double vals[3 * LARCH_MAX_TARGETS * 2];
        s = evaluate(&r, vals);
        if (!s) report_eval(&r, r.eval_step, vals, res);
    } else if (!s) {
        struct sigaction old[3];
        int own = opts->handle_signals && !stop_signals_caught;
        if (own) install_signals(old);
        /* a stop signal during start-up (MPI, data, model, resume) stops the
         * run before its first step, on every rank: nothing was trained since
         * the checkpoint resumed (or the start), so none is written */
        if (opts->handle_signals && stop_signal)
            s = res->resumed_from > 0
                ? larch_fail(LARCH_ERR_INTERRUPTED, "stopped by %s during start-up, before step %ld: nothing new to "
                             "checkpoint; checkpoint.resume=auto resumes from step %ld again", signal_name(stop_signal),
                             r.start_step + 1, res->resumed_from)
                : larch_fail(LARCH_ERR_INTERRUPTED, "stopped by %s during start-up, before the first step: nothing "
                             "to checkpoint; a rerun starts afresh", signal_name(stop_signal));
        if (opts->handle_signals) s = larch_comm_check(comm, s);
        if (!s) {
            larch_report_info info = {comm->size, larch_blas_threads(), r.batch, count_params(r.model), r.total_steps,
                                      r.steps_per_epoch, r.start_step, larch_blas_corename(), r.ckpt_dir};
            r.report_t = larch_comm_wtime();          /* the first page: at 30 s or the first evaluation */
            report_refresh(&r, &info, NULL, 0);
            s = loop(&r, res);
            char status[700];
            snprintf(status, sizeof status, "%s%s", s == LARCH_OK ? "finished" : s == LARCH_ERR_INTERRUPTED ? "stopped: " : "failed: ",
                     s == LARCH_OK ? "" : larch_errmsg());
            double wall = res->wall_seconds;
            for (int k = 0; wall <= 0 && k < LARCH_PH_N; k++) wall += r.ph.tot[k];
            larch_report_totals end = {status, res->steps, wall, res->samples_per_s, {0}};
            memcpy(end.phases, r.ph.tot, sizeof end.phases);
            report_refresh(&r, NULL, &end, 0);
        }
        if (own)
            for (int i = 0; i < 3; i++) sigaction(stop_signals[i], &old[i], NULL);
    }
    larch_comm_watchdog(comm, 0.0);
    teardown(&r);
    return s;
}
