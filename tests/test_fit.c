/* test_fit.c - the typed trainer entry larch_fit against the config front
 * end larch_train: the same run written as a config and as a typed spec
 * gives the bit-identical loss; larch_fit_defaults are the config's
 * defaults; a spec without a config tree records one (config.yaml, the
 * checkpoint) that a resume compares, refusing a changed learning rate;
 * invalid specs fail naming the field. One process.
 */
#include "check.h"
#include "larch/larch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *CONFIG =
    "train: {batch_size: 64, epochs: 2, seed: 5, log_every: 8, threads: 1}\n"
    "optim: {name: adamw, lr: 0.01, clip_norm: 1.0, groups: [{match: 'out.*', lr_mult: 0.5}]}\n"
    "sched: {name: cosine, warmup_steps: 5, min_lr: 0.001}\n"
    "data:\n"
    "  name: synthetic\n"
    "  prefetch: true\n"
    "  synthetic: {n_train: 1024, n_test: 256, classes: 4, shape: [1, 1, 16], noise: 0.5}\n"
    "model:\n"
    "  - {type: dense, name: h, units: 32}\n"
    "  - {type: relu}\n"
    "  - {type: dense, name: out, units: 4}\n";

static larch_node *load(const char *dir)
{
    char path[300];
    snprintf(path, sizeof path, "%s/fit.yaml", dir);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs(CONFIG, f);
    fclose(f);
    larch_node *cfg = NULL;
    larch_status s = larch_run_load(path, NULL, 0, &cfg);
    CHECK(s == LARCH_OK, "load: %s", larch_errmsg());
    return cfg;
}

/* The spec a C program writes for CONFIG, without the config tree. */
static larch_fit_spec typed_spec(larch_model *m, const larch_dataset *train, const larch_dataset *test)
{
    static const larch_param_group groups[] = {{"out.*", LARCH_ROLES_ALL, 0.5, -1.0, LARCH_ADAPT_ROLE, 0, 0}};
    larch_fit_spec spec = larch_fit_defaults();
    spec.model = m;
    spec.train_set = train;
    spec.test_set = test;
    spec.optim = larch_optim_defaults_for(LARCH_OPT_ADAMW);
    spec.optim.lr = 0.01;
    spec.optim.clip_norm = 1.0;
    spec.optim.groups = groups;
    spec.optim.n_groups = 1;
    spec.sched.kind = LARCH_SCHED_COSINE;
    spec.sched.warmup_steps = 5;
    spec.sched.min_lr = 0.001;
    spec.train.batch_size = 64;
    spec.train.epochs = 2;
    spec.train.seed = 5;
    spec.train.log_every = 8;
    spec.train.threads = 1;
    spec.checkpoint.at_end = 0;
    return spec;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = '\0';
    fclose(f);
    return s;
}

int main(int argc, char **argv)
{
    larch_comm comm;
    CHECK_OK(larch_comm_init(&comm, &argc, &argv));
    char dir[] = "/tmp/larch_fit_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char out[300], path[400];
    larch_node *cfg = load(dir);
    if (!cfg) return check_result("test_fit");

    /* 1. the defaults are the config's */
    larch_fit_spec fromcfg, def = larch_fit_defaults();
    larch_node *minimal = NULL;
    CHECK_OK(larch_cfg_parse("{model: [{type: dense, units: 2}]}", "<minimal>", &minimal));
    CHECK_OK(larch_optim_defaults(larch_map_get(minimal, "optim")));
    CHECK_OK(larch_cfg_check(minimal, "", larch_run_keys, NULL));
    CHECK_OK(larch_fit_spec_from_cfg(minimal, &fromcfg));
    CHECK(!memcmp(&fromcfg.train, &def.train, sizeof def.train), "train settings differ from the config's defaults");
    CHECK(!memcmp(&fromcfg.data, &def.data, sizeof def.data), "data settings differ");
    CHECK(!memcmp(&fromcfg.dist, &def.dist, sizeof def.dist), "dist settings differ");
    CHECK(fromcfg.checkpoint.every_steps == def.checkpoint.every_steps && fromcfg.checkpoint.keep == def.checkpoint.keep &&
          fromcfg.checkpoint.at_end == def.checkpoint.at_end && !fromcfg.checkpoint.resume[0] && !fromcfg.checkpoint.dir[0],
          "checkpoint settings differ");
    CHECK(fromcfg.optim.kind == def.optim.kind && fromcfg.optim.lr == def.optim.lr && fromcfg.sched.kind == def.sched.kind,
          "optimizer or schedule differ");
    larch_fit_spec_release(&fromcfg);
    larch_node_free(minimal);

    /* 2. the config through larch_train, the typed spec through larch_fit */
    larch_train_result a, b;
    snprintf(out, sizeof out, "%s/cfg", dir);
    larch_train_opts o = {.out_dir = out};
    CHECK_OK(larch_train(cfg, &comm, &o, &a));
    larch_dataset train, test;
    larch_model *m = NULL;
    CHECK_OK(larch_run_datasets(cfg, &train, &test));
    CHECK_OK(larch_model_build(&m, train.shape, larch_run_layers(cfg), NULL, NULL, 5));
    larch_fit_spec spec = typed_spec(m, &train, &test);
    snprintf(out, sizeof out, "%s/typed", dir);
    o.out_dir = out;
    CHECK_OK(larch_fit(&spec, &comm, &o, &b));
    printf("config: loss %.9g acc %.4f; typed: loss %.9g acc %.4f\n", a.final_loss, a.test_accuracy, b.final_loss,
           b.test_accuracy);
    CHECK(a.steps == 32 && b.steps == 32, "steps %ld, %ld", a.steps, b.steps);
    CHECK(a.final_loss == b.final_loss, "final loss %.9g (config) != %.9g (typed)", a.final_loss, b.final_loss);
    CHECK(a.test_loss == b.test_loss && a.test_accuracy == b.test_accuracy, "evaluation differs");
    CHECK(b.final_loss < 0.5, "the typed run trained: loss %.4f", b.final_loss);

    /* 3. the record of a spec without a tree, and a resume that compares it */
    snprintf(path, sizeof path, "%s/config.yaml", out);
    char *rec = slurp(path);
    CHECK(rec && strstr(rec, "name: adamw") && strstr(rec, "lr: 0.01") && strstr(rec, "match: 'out.*'") &&
          strstr(rec, "name: cosine") && strstr(rec, "batch_size: 64"), "config.yaml records the spec:\n%s", rec ? rec : "");
    free(rec);
    larch_model_free(m);
    m = NULL;
    CHECK_OK(larch_model_build(&m, train.shape, larch_run_layers(cfg), NULL, NULL, 5));
    spec = typed_spec(m, &train, &test);
    spec.train.epochs = 1;
    spec.sched.kind = LARCH_SCHED_CONSTANT;
    spec.checkpoint.at_end = 1;
    snprintf(out, sizeof out, "%s/resume", dir);
    CHECK_OK(larch_fit(&spec, &comm, &o, &a));
    CHECK(a.checkpoint[0] != '\0', "a checkpoint at the end");
    spec.train.epochs = 2;                               /* a constant schedule: the length may change */
    spec.checkpoint.resume = "auto";
    spec.optim.lr = 0.02;
    CHECK_FAIL(larch_fit(&spec, &comm, &o, &b), LARCH_ERR_CONFIG, "optim.lr: 0.01 in the checkpoint, 0.02 now");
    const char *allow[] = {"optim.lr"};
    spec.checkpoint.allow_changes = allow;
    spec.checkpoint.n_allow_changes = 1;
    CHECK_OK(larch_fit(&spec, &comm, &o, &b));
    CHECK(b.resumed_from == 16 && b.steps == 32, "resumed from %ld, %ld steps", b.resumed_from, b.steps);

    /* 4. invalid specs name the field */
    spec = typed_spec(m, &train, &test);
    spec.train.batch_size = 0;
    CHECK_FAIL(larch_fit(&spec, &comm, &o, &b), LARCH_ERR_INVALID, "train.batch_size = 0 is out of range");
    spec = typed_spec(m, &train, &test);
    spec.optim.beta2 = 1.0;
    CHECK_FAIL(larch_fit(&spec, &comm, &o, &b), LARCH_ERR_INVALID, "optim.beta2 = 1 is out of range");
    spec = typed_spec(m, &train, &test);
    spec.dist.bucket_mb = 0;
    CHECK_FAIL(larch_fit_validate(&spec), LARCH_ERR_INVALID, "dist.bucket_mb = 0 is out of range");
    spec = typed_spec(NULL, &train, &test);
    CHECK_FAIL(larch_fit_validate(&spec), LARCH_ERR_INVALID, "spec.model is NULL");
    larch_model *wrong = NULL;
    larch_node *l8 = NULL;
    CHECK_OK(larch_cfg_parse("[{type: dense, units: 4}]", "<l8>", &l8));
    CHECK_OK(larch_model_build(&wrong, (larch_shape){1, 1, 8}, l8, NULL, NULL, 1));
    spec = typed_spec(wrong, &train, &test);
    CHECK_FAIL(larch_fit_validate(&spec), LARCH_ERR_SHAPE, "the training set's samples are (1, 1, 16), the model's input is (1, 1, 8)");
    larch_model_free(wrong);
    larch_node_free(l8);
    spec = typed_spec(m, &train, &test);
    spec.data.sampler = LARCH_SAMPLER_BALANCED, spec.data.classes_per_batch = 3, spec.data.samples_per_class = 5;
    CHECK_FAIL(larch_fit_validate(&spec), LARCH_ERR_INVALID,
               "classes_per_batch (3) x samples_per_class (5) must equal train.batch_size (64)");
    spec.data.sampler = 7;
    CHECK_FAIL(larch_fit_validate(&spec), LARCH_ERR_INVALID, "data.sampler: 7 is not");
    /* a typed run with the class-balanced sampler: its record (config.yaml) validates against the schema */
    spec = typed_spec(m, &train, &test);
    spec.data.sampler = LARCH_SAMPLER_BALANCED, spec.data.classes_per_batch = 4, spec.data.samples_per_class = 16;
    spec.train.epochs = 1;
    spec.checkpoint.at_end = 0;
    snprintf(out, sizeof out, "%s/balanced", dir);
    o.out_dir = out;
    CHECK_OK(larch_fit(&spec, &comm, &o, &b));
    CHECK(b.steps == train.n / 64 && isfinite(b.final_loss), "balanced: %ld steps (want %d), loss %g", b.steps, train.n / 64,
          b.final_loss);

    larch_model_free(m);
    larch_dataset_free(&train);
    larch_dataset_free(&test);
    larch_node_free(cfg);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    larch_comm_finalize(&comm);
    return check_result("test_fit");
}
