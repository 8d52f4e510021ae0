/* fit_spec.c - larch_fit's spec: its defaults (those of the config schema
 * in run_config.c and optim_cfg.c), its validation (the schema's ranges,
 * naming the field), and the config tree recorded for a spec that came
 * without one (a C program's run: config.yaml, the checkpoints' config and
 * the resume comparison; with the prune and distill settings). */
#include "train/fit_internal.h"
#include "larch/optim_cfg.h"
#include "nn/model_internal.h"   /* the model's input shape */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

larch_fit_spec larch_fit_defaults(void)
{
    larch_fit_spec s;
    memset(&s, 0, sizeof s);
    s.optim = larch_optim_defaults_for(LARCH_OPT_SGD);
    s.sched = (larch_sched_opts)LARCH_SCHED_DEFAULTS;
    s.train = (larch_fit_train){.batch_size = 256, .epochs = 1, .max_steps = 0, .seed = 42, .log_every = 50,
                                .eval_every = 0, .eval_batch = 1000, .threads = 0, .accumulate = 1, .stop_on_nan = 1,
                                .progress_seconds = 1.0};
    s.data = (larch_fit_data){.flip = 0, .crop_pad = 0, .prefetch = 1, .scale = {0.08f, 1.0f}, .ratio = {0.75f, 4.0f / 3.0f}};
    s.checkpoint = (larch_fit_checkpoint){.dir = NULL, .every_steps = 0, .keep = 3, .at_end = 1, .resume = NULL,
                                          .allow_changes = NULL, .n_allow_changes = 0};
    s.dist = (larch_fit_dist){.bucket_mb = 25.0, .first_bucket_mb = 1.0, .overlap = 1, .comm_thread = 0, .compress = LARCH_COMPRESS_NONE,
                              .shard_optimizer = 0, .timeout_s = 600.0};
    s.adversarial = (larch_fit_adversarial){.method = LARCH_ADV_NONE, .eps = 0.1, .steps = 7, .step_size = 0.0, .l2 = 0,
                                            .trades_beta = 6.0};
    s.prune = (larch_prune_opts)LARCH_PRUNE_DEFAULTS;
    s.distill = (larch_fit_distill){.teacher = NULL, .alpha = 0.9, .temperature = 4.0};
    return s;
}

larch_status larch_fit_validate(const larch_fit_spec *spec)
{
    if (!spec->model) return larch_fail(LARCH_ERR_INVALID, "larch_fit: spec.model is NULL (build and finalize a model)");
    if (!spec->model->finalized)
        return larch_fail(LARCH_ERR_INVALID, "larch_fit: spec.model is not finalized (larch_model_finalize)");
    if (spec->model->n_losses == 0)
        return larch_fail(LARCH_ERR_INVALID, "larch_fit: spec.model has no loss (larch_model_add_loss)");
    if (!spec->train_set || !spec->test_set)
        return larch_fail(LARCH_ERR_INVALID, "larch_fit: spec.%s is NULL", spec->train_set ? "test_set" : "train_set");
    const larch_fit_train *t = &spec->train;
    const larch_fit_checkpoint *c = &spec->checkpoint;
    const larch_fit_dist *d = &spec->dist;
    const struct { const char *name; double v, lo, hi; } ranges[] = {
        {"train.batch_size", t->batch_size, 1, 1 << 24}, {"train.epochs", t->epochs, 1, 1000000},
        {"train.max_steps", (double)t->max_steps, 0, (double)(1L << 40)}, {"train.seed", (double)t->seed, 0, 4294967295.0},
        {"train.log_every", (double)t->log_every, 1, (double)(1L << 40)},
        {"train.eval_every", (double)t->eval_every, 0, (double)(1L << 40)}, {"train.eval_batch", t->eval_batch, 1, 1 << 24},
        {"train.eval_samples", (double)t->eval_samples, 0, 2147483647.0},
        {"train.threads", t->threads, 0, 1024}, {"train.accumulate", t->accumulate, 1, 4096},
        {"train.progress_seconds", t->progress_seconds, 0, 3600}, {"data.augment.crop_pad", spec->data.crop_pad, 0, 64},
        {"checkpoint.every_steps", (double)c->every_steps, 0, (double)(1L << 40)}, {"checkpoint.keep", c->keep, 0, 1000000},
        {"dist.bucket_mb", d->bucket_mb, 0.001, 65536}, {"dist.first_bucket_mb", d->first_bucket_mb, 0.001, 65536},
        {"dist.timeout_s", d->timeout_s, 0, 1e7}, {"adversarial.eps", spec->adversarial.eps, 0, 1e6},
        {"adversarial.steps", spec->adversarial.steps, 1, 1000}, {"adversarial.step_size", spec->adversarial.step_size, 0, 1e6},
        {"adversarial.trades_beta", spec->adversarial.trades_beta, 0, 1e6}};
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++)
        if (!(ranges[i].v >= ranges[i].lo && ranges[i].v <= ranges[i].hi))
            return larch_fail(LARCH_ERR_INVALID, "%s = %g is out of range [%g, %g]", ranges[i].name, ranges[i].v,
                              ranges[i].lo, ranges[i].hi);
    if (spec->adversarial.method != LARCH_ADV_NONE && spec->adversarial.method != LARCH_ADV_PGD &&
        spec->adversarial.method != LARCH_ADV_FGSM_RS && spec->adversarial.method != LARCH_ADV_TRADES)
        return larch_fail(LARCH_ERR_INVALID, "adversarial.method: %d is not a larch_adv_method", (int)spec->adversarial.method);
    if (t->precision != LARCH_PRECISION_FP32 && t->precision != LARCH_PRECISION_BF16)
        return larch_fail(LARCH_ERR_INVALID, "train.precision: %d is not a larch_precision", (int)t->precision);
    if (d->compress != LARCH_COMPRESS_NONE && d->compress != LARCH_COMPRESS_FP16 && d->compress != LARCH_COMPRESS_BF16)
        return larch_fail(LARCH_ERR_INVALID, "dist.compress: %d is not a larch_compress", (int)d->compress);
    if (c->n_allow_changes < 0 || (c->n_allow_changes > 0 && !c->allow_changes))
        return larch_fail(LARCH_ERR_INVALID, "checkpoint.allow_changes: %d key(s) but no array", c->n_allow_changes);
    const larch_fit_data *dd = &spec->data;
    if (dd->resized_crop && (dd->crop_pad || !(dd->scale[0] > 0) || dd->scale[0] > dd->scale[1] || dd->scale[1] > 1 ||
                             !(dd->ratio[0] > 0) || dd->ratio[0] > dd->ratio[1]))
        return larch_fail(LARCH_ERR_INVALID, "data.augment: resized_crop needs scale [lo, hi] within (0, 1] and ratio "
                          "[lo, hi] positive, both ascending, and crop_pad 0 (scale [%g, %g], ratio [%g, %g], crop_pad %d)",
                          dd->scale[0], dd->scale[1], dd->ratio[0], dd->ratio[1], dd->crop_pad);
    if (dd->sampler != LARCH_SAMPLER_SHUFFLE && dd->sampler != LARCH_SAMPLER_BALANCED)
        return larch_fail(LARCH_ERR_INVALID, "data.sampler: %d is not LARCH_SAMPLER_SHUFFLE or LARCH_SAMPLER_BALANCED",
                          dd->sampler);
    if (dd->sampler == LARCH_SAMPLER_BALANCED &&
        (dd->classes_per_batch < 1 || dd->samples_per_class < 1 ||
         (long)dd->classes_per_batch * dd->samples_per_class != t->batch_size))
        return larch_fail(LARCH_ERR_INVALID, "data.sampler is class-balanced: classes_per_batch (%d) x samples_per_class (%d) "
                          "must equal train.batch_size (%d)", dd->classes_per_batch, dd->samples_per_class, t->batch_size);
    if (t->batch_size % t->accumulate != 0)
        return larch_fail(LARCH_ERR_INVALID, "train.accumulate: the batch of %d is not divisible into %d micro-batches",
                          t->batch_size, t->accumulate);
    const larch_fit_distill *ds = &spec->distill;
    if (ds->teacher && (!(ds->alpha >= 0 && ds->alpha <= 1) || !(ds->temperature >= 0.01 && ds->temperature <= 100)))
        return larch_fail(LARCH_ERR_INVALID, "distill: alpha = %g must be in [0, 1] and temperature = %g in [0.01, 100]",
                          ds->alpha, ds->temperature);
    if (ds->teacher && !ds->teacher->finalized)
        return larch_fail(LARCH_ERR_INVALID, "distill: the teacher model is not finalized (larch_model_finalize)");
    larch_status s = larch_optim_validate(&spec->optim, NULL);
    if (!s) s = larch_sched_validate(&spec->sched, NULL);
    if (s) return s;
    const larch_shape in = spec->model->input_shape;
    const larch_dataset *sets[2] = {spec->train_set, spec->test_set};
    for (int k = 0; k < 2; k++)
        if (sets[k]->shape.h != in.h || sets[k]->shape.w != in.w || sets[k]->shape.c != in.c)
            return larch_fail(LARCH_ERR_SHAPE, "larch_fit: the %s set's samples are (%d, %d, %d), the model's input is "
                              "(%d, %d, %d)", k ? "test" : "training", sets[k]->shape.h, sets[k]->shape.w,
                              sets[k]->shape.c, in.h, in.w, in.c);
    return LARCH_OK;
}

/* ---- the record of a spec ---- */

/* The shortest decimal text that reads back as exactly v. */
static void num(FILE *f, double v)
{
    char buf[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    fputs(buf, f);
}

/* A YAML double-quoted string. */
static void str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\x%02x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static const char *yesno(int b) { return b ? "true" : "false"; }

static void key_num(FILE *f, const char *key, double v)
{
    fprintf(f, "  %s: ", key);
    num(f, v);
    fputc('\n', f);
}

static void write_optim(FILE *f, const larch_optim_opts *o)
{
    fprintf(f, "optim:\n  name: %s\n", larch_optim_kind_name(o->kind));
    key_num(f, "lr", o->lr);
    key_num(f, "momentum", o->momentum);
    key_num(f, "dampening", o->dampening);
    fprintf(f, "  nesterov: %s\n", yesno(o->nesterov));
    key_num(f, "weight_decay", o->weight_decay);
    fprintf(f, "  decoupled: %s\n", yesno(o->decoupled));
    key_num(f, "beta1", o->beta1);
    key_num(f, "beta2", o->beta2);
    key_num(f, "beta3", o->beta3);
    key_num(f, "eps", o->eps);
    fprintf(f, "  amsgrad: %s\n  bias_correction: %s\n", yesno(o->amsgrad), yesno(o->bias_correction));
    key_num(f, "momentum_decay", o->momentum_decay);
    key_num(f, "rho_threshold", o->rho_threshold);
    key_num(f, "trust_coef", o->trust_coef);
    fprintf(f, "  lars_mode: %s\n", o->lars_clip ? "clip" : "scale");
    key_num(f, "trust_min", o->trust_min);
    key_num(f, "trust_max", o->trust_max);
    fprintf(f, "  decay_bias_norm: %s\n  adapt_bias_norm: %s\n", yesno(o->decay_bias_norm), yesno(o->adapt_bias_norm));
    key_num(f, "clip_norm", o->clip_norm);
    key_num(f, "clip_value", o->clip_value);
    fprintf(f, "  groups: [");
    static const char *const roles[] = {"weight", "bias", "norm"}, *const adapt[] = {"role", "true", "false"};
    for (int i = 0; i < o->n_groups; i++) {
        const larch_param_group *g = &o->groups[i];
        fprintf(f, "%s{match: ", i ? ", " : "");
        str(f, g->match ? g->match : "*");
        fprintf(f, ", roles: [");
        for (int r = 0, n = 0; r < 3; r++)
            if (g->roles & LARCH_ROLE_BIT(r)) fprintf(f, "%s%s", n++ ? ", " : "", roles[r]);
        fprintf(f, "], lr_mult: ");
        num(f, g->lr_mult);
        fprintf(f, ", wd_mult: ");
        num(f, g->wd_mult);
        fprintf(f, ", adapt: %s, freeze: %s, unfreeze_after_epochs: %d}", adapt[g->adapt], yesno(g->freeze),
                g->unfreeze_after_epochs);
    }
    fprintf(f, "]\n");
}

static void write_sched(FILE *f, const larch_sched_opts *o)
{
    fprintf(f, "sched:\n  name: %s\n  warmup: %s\n", larch_sched_kind_name(o->kind),
            o->warmup == LARCH_WARMUP_EXPONENTIAL ? "exponential" : "linear");
    key_num(f, "warmup_epochs", o->warmup_epochs);
    fprintf(f, "  warmup_steps: %ld\n", o->warmup_steps);
    key_num(f, "warmup_start", o->warmup_start);
    key_num(f, "step_epochs", o->step_epochs);
    fprintf(f, "  milestones: [");
    for (int i = 0; i < o->n_milestones; i++) {
        if (i) fputs(", ", f);
        num(f, o->milestones[i]);
    }
    fprintf(f, "]\n");
    key_num(f, "gamma", o->gamma);
    key_num(f, "min_lr", o->min_lr);
    key_num(f, "power", o->power);
    key_num(f, "restart_epochs", o->restart_epochs);
    key_num(f, "restart_mult", o->restart_mult);
    key_num(f, "pct_start", o->pct_start);
    key_num(f, "div", o->div);
    key_num(f, "div_final", o->div_final);
    if (o->n_moms == 0) fprintf(f, "  moms: off\n");
    else {
        fprintf(f, "  moms: [");
        for (int i = 0; i < 3; i++) {
            if (i) fputs(", ", f);
            num(f, o->moms[i]);
        }
        fprintf(f, "]\n");
    }
}

larch_status larch_fit_spec_to_cfg(const larch_fit_spec *spec, larch_node **out)
{
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    FILE *f = open_memstream(&text, &len);
    if (!f) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    const larch_fit_train *t = &spec->train;
    fprintf(f, "# written by larch_fit from a C program's spec: the model and the data are the program's own\n");
    fprintf(f, "train:\n  batch_size: %d\n  epochs: %d\n  max_steps: %ld\n  seed: %llu\n  log_every: %ld\n"
            "  eval_every: %ld\n  eval_batch: %d\n  eval_samples: %ld\n  threads: %d\n  accumulate: %d\n  stop_on_nan: %s\n",
            t->batch_size, t->epochs, t->max_steps, (unsigned long long)t->seed, t->log_every, t->eval_every,
            t->eval_batch, t->eval_samples, t->threads, t->accumulate, yesno(t->stop_on_nan));
    key_num(f, "progress_seconds", t->progress_seconds);
    fprintf(f, "  precision: %s\n", t->precision == LARCH_PRECISION_BF16 ? "bf16" : "fp32");
    write_optim(f, &spec->optim);
    write_sched(f, &spec->sched);
    fprintf(f, "data:\n  prefetch: %s\n  augment: {flip: %s, crop_pad: %d, resized_crop: %s, scale: [%.9g, %.9g], "
            "ratio: [%.9g, %.9g]}\n", yesno(spec->data.prefetch), yesno(spec->data.flip), spec->data.crop_pad,
            yesno(spec->data.resized_crop), spec->data.scale[0], spec->data.scale[1], spec->data.ratio[0],
            spec->data.ratio[1]);
    fprintf(f, "  sampler: %s\n  classes_per_batch: %d\n  samples_per_class: %d\n",
            spec->data.sampler == LARCH_SAMPLER_BALANCED ? "class_balanced" : "shuffle", spec->data.classes_per_batch,
            spec->data.samples_per_class);
    const larch_fit_dist *d = &spec->dist;
    static const char *const compress[] = {"none", "fp16", "bf16"};
    fprintf(f, "dist:\n");
    key_num(f, "bucket_mb", d->bucket_mb);
    key_num(f, "first_bucket_mb", d->first_bucket_mb);
    fprintf(f, "  overlap: %s\n  comm_thread: %s\n  compress: %s\n  shard_optimizer: %s\n", yesno(d->overlap),
            yesno(d->comm_thread), compress[d->compress], yesno(d->shard_optimizer));
    key_num(f, "timeout_s", d->timeout_s);
    const larch_fit_checkpoint *c = &spec->checkpoint;
    fprintf(f, "checkpoint:\n  dir: ");
    str(f, c->dir);
    fprintf(f, "\n  every_steps: %ld\n  keep: %d\n  at_end: %s\n  resume: ", c->every_steps, c->keep, yesno(c->at_end));
    str(f, c->resume);
    fprintf(f, "\n  allow_changes: [");
    for (int i = 0; i < c->n_allow_changes; i++) {
        if (i) fputs(", ", f);
        str(f, c->allow_changes[i]);
    }
    fprintf(f, "]\n");
    const larch_fit_adversarial *a = &spec->adversarial;
    static const char *const adv_method[] = {"none", "pgd", "fgsm_rs", "trades"};
    fprintf(f, "adversarial:\n  method: %s\n", adv_method[a->method]);
    key_num(f, "eps", a->eps);
    fprintf(f, "  steps: %d\n", a->steps);
    key_num(f, "step_size", a->step_size);
    fprintf(f, "  norm: %s\n", a->l2 ? "l2" : "linf");
    key_num(f, "trades_beta", a->trades_beta);
    const larch_prune_opts *pr = &spec->prune;       /* what a resume compares (resume_check.c) */
    fprintf(f, "prune:\n");
    key_num(f, "sparsity", pr->sparsity);
    key_num(f, "initial_sparsity", pr->initial_sparsity);
    fprintf(f, "  start_step: %ld\n  end_step: %ld\n  every: %ld\n  scope: %s\n  layers: [", pr->start_step,
            pr->end_step, pr->every, pr->global ? "global" : "layer");
    for (int i = 0; i < pr->n_layers; i++) {
        if (i) fputs(", ", f);
        str(f, pr->layers[i]);
    }
    fprintf(f, "]\n");
    if (spec->distill.teacher) {
        fprintf(f, "distill:\n  teacher: \"(the program's model)\"\n");
        key_num(f, "alpha", spec->distill.alpha);
        key_num(f, "temperature", spec->distill.temperature);
    }
    if (fclose(f) != 0 || !text) { free(text); return larch_fail(LARCH_ERR_NOMEM, "out of memory"); }
    larch_node *root = NULL;
    larch_status s = larch_cfg_parse(text, "<larch_fit spec>", &root);
    free(text);
    /* the optim and sched sections read back through the front end: the record is what the spec runs */
    if (!s) s = larch_cfg_check(larch_map_get(root, "optim"), "optim", larch_optim_keys, NULL);
    if (!s) s = larch_cfg_check(larch_map_get(root, "sched"), "sched", larch_sched_keys, NULL);
    if (s) { larch_node_free(root); return larch_fail_context(s, "recording the spec"); }
    *out = root;
    return LARCH_OK;
}
