/* train_cfg.c - the config front end of the trainer: larch_train (what
 * `larch train` runs) turns a validated config into the datasets, the model
 * (with model.init_from) and a larch_fit_spec, and runs larch_fit, the
 * trainer a C program calls (trainer.c). */
#include "train/fit_internal.h"
#include "train/quant_cfg.h"
#include "nn/quant.h"
#include "larch/checkpoint.h"
#include "larch/model_cfg.h"
#include "larch/optim_cfg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

larch_status larch_fit_spec_from_cfg(const larch_node *cfg, larch_fit_spec *spec)
{
    *spec = larch_fit_defaults();
    const larch_node *t = larch_map_get(cfg, "train");
    spec->train.batch_size = (int)larch_cfg_int(t, "batch_size");
    spec->train.epochs = (int)larch_cfg_int(t, "epochs");
    spec->train.max_steps = larch_cfg_int(t, "max_steps");
    spec->train.seed = (uint64_t)larch_cfg_int(t, "seed");
    spec->train.log_every = larch_cfg_int(t, "log_every");
    spec->train.eval_every = larch_cfg_int(t, "eval_every");
    spec->train.eval_batch = (int)larch_cfg_int(t, "eval_batch");
    spec->train.eval_samples = larch_cfg_int(t, "eval_samples");
    spec->train.threads = (int)larch_cfg_int(t, "threads");
    spec->train.accumulate = (int)larch_cfg_int(t, "accumulate");
    spec->train.stop_on_nan = larch_cfg_bool(t, "stop_on_nan");
    spec->train.progress_seconds = larch_cfg_float(t, "progress_seconds");
    spec->train.precision = strcmp(larch_cfg_str(t, "precision"), "bf16") == 0 ? LARCH_PRECISION_BF16 : LARCH_PRECISION_FP32;
    const larch_node *d = larch_map_get(cfg, "data"), *aug = larch_map_get(d, "augment");
    spec->data.flip = larch_cfg_bool(aug, "flip");
    spec->data.crop_pad = (int)larch_cfg_int(aug, "crop_pad");
    spec->data.resized_crop = larch_cfg_bool(aug, "resized_crop");
    double sc[2], ra[2];
    if (larch_cfg_floats(aug, "scale", sc, 2) != 2 || larch_cfg_floats(aug, "ratio", ra, 2) != 2)
        return larch_fail(LARCH_ERR_CONFIG, "data.augment.scale and data.augment.ratio: expected [lo, hi]");
    spec->data.scale[0] = (float)sc[0], spec->data.scale[1] = (float)sc[1];
    spec->data.ratio[0] = (float)ra[0], spec->data.ratio[1] = (float)ra[1];
    spec->data.prefetch = larch_cfg_bool(d, "prefetch");
    spec->data.sampler = strcmp(larch_cfg_str(d, "sampler"), "class_balanced") == 0 ? LARCH_SAMPLER_BALANCED
                                                                                    : LARCH_SAMPLER_SHUFFLE;
    spec->data.classes_per_batch = (int)larch_cfg_int(d, "classes_per_batch");
    spec->data.samples_per_class = (int)larch_cfg_int(d, "samples_per_class");
    const larch_node *ck = larch_map_get(cfg, "checkpoint");
    spec->checkpoint.dir = larch_cfg_str(ck, "dir");
    spec->checkpoint.every_steps = larch_cfg_int(ck, "every_steps");
    spec->checkpoint.keep = (int)larch_cfg_int(ck, "keep");
    spec->checkpoint.at_end = larch_cfg_bool(ck, "at_end");
    spec->checkpoint.resume = larch_cfg_str(ck, "resume");
    /* allow_changes stays in the config tree, where the resume check reads it */
    const larch_node *dist = larch_map_get(cfg, "dist");
    const char *compress = larch_cfg_str(dist, "compress");
    spec->dist.bucket_mb = larch_cfg_float(dist, "bucket_mb");
    spec->dist.first_bucket_mb = larch_cfg_float(dist, "first_bucket_mb");
    spec->dist.overlap = larch_cfg_bool(dist, "overlap");
    spec->dist.comm_thread = larch_cfg_bool(dist, "comm_thread");
    spec->dist.compress = !strcmp(compress, "fp16") ? LARCH_COMPRESS_FP16
                        : !strcmp(compress, "bf16") ? LARCH_COMPRESS_BF16 : LARCH_COMPRESS_NONE;
    spec->dist.shard_optimizer = larch_cfg_bool(dist, "shard_optimizer");
    spec->dist.timeout_s = larch_cfg_float(dist, "timeout_s");
    const larch_node *adv = larch_map_get(cfg, "adversarial");
    const char *am = larch_cfg_str(adv, "method");
    spec->adversarial.method = !strcmp(am, "pgd") ? LARCH_ADV_PGD : !strcmp(am, "fgsm_rs") ? LARCH_ADV_FGSM_RS
                              : !strcmp(am, "trades") ? LARCH_ADV_TRADES : LARCH_ADV_NONE;
    spec->adversarial.eps = larch_cfg_float(adv, "eps");
    spec->adversarial.steps = (int)larch_cfg_int(adv, "steps");
    spec->adversarial.step_size = larch_cfg_float(adv, "step_size");
    spec->adversarial.l2 = !strcmp(larch_cfg_str(adv, "norm"), "l2");
    spec->adversarial.trades_beta = larch_cfg_float(adv, "trades_beta");
    const larch_node *pr = larch_map_get(cfg, "prune");
    if (pr) {                       /* the layer globs point into cfg */
        spec->prune.sparsity = larch_cfg_float(pr, "sparsity");
        spec->prune.initial_sparsity = larch_cfg_float(pr, "initial_sparsity");
        spec->prune.start_step = larch_cfg_int(pr, "start_step");
        spec->prune.end_step = larch_cfg_int(pr, "end_step");
        spec->prune.every = larch_cfg_int(pr, "every");
        spec->prune.global = strcmp(larch_cfg_str(pr, "scope"), "global") == 0;
        const larch_node *ls = larch_map_get(pr, "layers");
        int n = ls && ls->kind == LARCH_NODE_SEQ ? ls->n : 0;
        if (n > 0) {
            const char **names = calloc((size_t)n, sizeof *names);
            if (!names) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
            for (int i = 0; i < n; i++) names[i] = ls->items[i]->scalar;
            spec->prune.layers = names;
            spec->prune.n_layers = n;
        }
    }
    const larch_node *ds = larch_map_get(cfg, "distill");
    if (ds) {                       /* the teacher model itself: larch_train builds it */
        spec->distill.alpha = larch_cfg_float(ds, "alpha");
        spec->distill.temperature = larch_cfg_float(ds, "temperature");
    }
    spec->config = cfg;
    larch_status s = larch_sched_opts_from_cfg(larch_map_get(cfg, "sched"), &spec->sched);
    if (!s) s = larch_optim_opts_from_cfg(larch_map_get(cfg, "optim"), &spec->optim);
    return s;
}

void larch_fit_spec_release(larch_fit_spec *spec)
{
    if (!spec) return;
    larch_optim_opts_release(&spec->optim);
    free((void *)spec->prune.layers);
    spec->prune.layers = NULL;
    spec->prune.n_layers = 0;
}

/* distill.teacher: the teacher model from its config and checkpoint, built
 * on every rank (the same file on each: no broadcast needed); every tensor
 * of the teacher must come from the checkpoint. */
static larch_status build_teacher(const larch_node *cfg, const larch_dataset *train, larch_model **out)
{
    *out = NULL;
    const larch_node *ds = larch_map_get(cfg, "distill");
    const char *tpath = ds ? larch_cfg_str(ds, "teacher") : "";
    if (!tpath[0]) return LARCH_OK;
    const char *ckpt = larch_cfg_str(ds, "checkpoint");
    if (!ckpt[0])
        return larch_fail(LARCH_ERR_CONFIG, "distill.checkpoint: the teacher %s needs its parameters (a checkpoint file)", tpath);
    if (access(ckpt, R_OK) != 0)
        return larch_fail(LARCH_ERR_IO, "distill.checkpoint: cannot read the teacher's checkpoint %s: %s", ckpt, strerror(errno));
    larch_node *tcfg = NULL;
    larch_status s = larch_run_load(tpath, NULL, 0, &tcfg);
    if (s) return larch_fail_context(s, "distill.teacher");
    larch_model *t = NULL;
    s = larch_model_build(&t, train->shape, larch_run_layers(tcfg), larch_map_get(tcfg, "loss"),
                          larch_map_get(tcfg, "regularization"), (uint64_t)larch_cfg_int(larch_map_get(tcfg, "train"), "seed"));
    if (s) s = larch_fail_context(s, "distill.teacher %s", tpath);
    larch_init_map map;
    memset(&map, 0, sizeof map);
    map.buffers = 1;
    larch_init_report rep;
    memset(&rep, 0, sizeof rep);
    if (!s) s = larch_ckpt_init_from(ckpt, t, &map, &rep);
    if (s) s = larch_fail_context(s, "distill.checkpoint");
    else if (rep.fresh > 0 || rep.skipped > 0)
        s = larch_fail(LARCH_ERR_SHAPE, "distill.checkpoint %s: %d tensor(s) of the teacher %s are missing from it or shaped "
                       "differently (a checkpoint of another model?)", ckpt, rep.fresh + rep.skipped, tpath);
    larch_init_report_free(&rep);
    larch_node_free(tcfg);
    if (s) { larch_model_free(t); return s; }
    *out = t;
    return LARCH_OK;
}

/* model.init_from: rank 0 loads the selected tensors (larch_fit broadcasts
 * rank 0's parameters) and reports what it did. */
static larch_status init_from(const larch_node *cfg, const larch_comm *comm, larch_model *m, FILE *log,
                              larch_init_report *rep)
{
    const larch_node *init = larch_run_init_from(cfg);
    if (!init || comm->rank != 0) return LARCH_OK;
    larch_init_map map;
    larch_status s = larch_init_map_from_cfg(init, &map);
    const char *file = larch_cfg_str(init, "file");
    if (!s) s = larch_ckpt_init_from(file, m, &map, rep);
    if (s || !log) return s;
    fprintf(log, "init_from %s: loaded %d tensor(s) (%zu values), skipped %d on a shape mismatch, %d freshly initialized; "
            "%d checkpoint parameter(s) unused\n", file, rep->loaded, rep->loaded_values, rep->skipped, rep->fresh, rep->unused);
    int shown = 0;
    for (const char *line = rep->text; line && *line;) {     /* everything but the loaded tensors */
        const char *end = strchr(line, '\n');
        int n = end ? (int)(end - line) : (int)strlen(line);
        if (strncmp(line, "loaded", 6) != 0 && shown++ < 40) fprintf(log, "  %.*s\n", n, line);
        line += n + (end != NULL);
    }
    fflush(log);
    return LARCH_OK;
}

larch_status larch_train(larch_node *cfg, const larch_comm *comm, const larch_train_opts *opts,
                         larch_train_result *res)
{
    memset(res, 0, sizeof *res);
    larch_fit_spec spec;
    larch_dataset train, test;
    larch_init_report rep;
    larch_model *m = NULL;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    memset(&rep, 0, sizeof rep);
    larch_comm_set_step(comm, 0);
    larch_status s = larch_fit_spec_from_cfg(cfg, &spec);
    /* the watchdog (dist.timeout_s) covers the agreement on loading too */
    if (!s) s = larch_comm_watchdog(comm, spec.dist.timeout_s);
    if (!s) s = larch_run_datasets(cfg, &train, &test);
    if (!s) s = larch_model_build(&m, train.shape, larch_run_layers(cfg), larch_map_get(cfg, "loss"),
                                  larch_map_get(cfg, "regularization"), spec.train.seed);
    if (!s) s = init_from(cfg, comm, m, comm->rank == 0 ? opts->log : NULL, &rep);
    if (!s) s = larch_quant_apply_cfg(cfg, m, opts->eval_only);   /* quantize: QAT, int8 for inference only */
    larch_model *teacher = NULL;
    if (!s) s = build_teacher(cfg, &train, &teacher);
    s = larch_comm_check(comm, s);
    if (!s) {
        spec.distill.teacher = teacher;
        spec.model = m;
        spec.train_set = &train;
        spec.test_set = &test;
        s = larch_fit_run(&spec, comm, opts, res, rep.text);
        char k8[160];
        int n8 = larch_q8_count(m, k8, sizeof k8);       /* an int8 model (quantize.format: int8): what ran */
        if (!s && n8 && opts->log && comm->rank == 0)
            fprintf(opts->log, "int8: %d of %d quantized layer(s) ran %s in the last evaluation pass\n", larch_q8_ran(m), n8, k8);
    } else {
        larch_comm_watchdog(comm, 0.0);
    }
    larch_fit_spec_release(&spec);
    larch_model_free(teacher);
    larch_model_free(m);
    larch_dataset_free(&train);
    larch_dataset_free(&test);
    larch_init_report_free(&rep);
    return s;
}
