/* biasvar_cmd.c - `larch biasvar`: trains K models through groups
 * (src/train/groups.c) on bootstrap resamples or fresh draws of the training
 * set, collects every model's test predictions and decomposes the test
 * error (src/train/biasvar.c): squared error into bias^2 + variance + noise
 * on a generated regression whose noise-free function is known, or 0-1 loss
 * into bias and net variance (Domingos 2000). docs/biasvar.md. */
#include "cli/cli.h"
#include "larch/larch.h"
#include "larch/train.h"
#include "train/biasvar.h"
#include "train/groups.h"

#include <json-c/json.h>

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETS 256
#define MAX_MODELS 4096

static void usage(FILE *f)
{
    fprintf(f, "usage: larch biasvar CONFIG --models K [--bootstrap | --fresh] [--out DIR] [--set key=value ...]\n"
               "  trains K models (through dist.groups: run under mpirun with G groups) and decomposes their test error:\n"
               "  squared error into bias^2 + variance + noise when CONFIG is a generated regression\n"
               "  (data.name: synthetic with data.synthetic.regression and an mse loss), else 0-1 loss into bias and\n"
               "  net variance (Domingos 2000). Model k trains with train.seed = seed + k and\n"
               "  --bootstrap  (default) bootstrap resample k of the training set (data.bootstrap = k)\n"
               "  --fresh      a fresh draw of the generated training set (data.synthetic.draw = k + 1)\n"
               "  --out DIR    run directories DIR/model-<k>/, DIR/summary.jsonl and DIR/biasvar.jsonl\n"
               "               (default runs/biasvar-<config name>)\n"
               "  The test set is the config's (its first train.eval_samples samples when that is set).\n");
}

typedef struct {
    int squared;                 /* else 0-1 loss */
    larch_dataset test;          /* the scored samples (n), targets noisy */
    float *clean;                /* squared: noise-free targets (n x d) */
    int n, d, classes, K;
    float *pred;                 /* K x n x d (squared) or K x n classes (0-1), filled on the owner's group rank 0 */
    int batch;
} bv_ctx;

/* The model's last layer (not the layers appended for loss state). */
static int last_node(const larch_model *m)
{
    int node = larch_model_n_layers(m);
    while (node > 1 && (strcmp(larch_layer_type(larch_model_layer(m, node - 1)), "loss_weights") == 0 ||
                        strcmp(larch_layer_type(larch_model_layer(m, node - 1)), "loss_centers") == 0))
        node--;
    return node;
}

/* The eval-mode outputs of the first n test samples into out (n x per). */
static larch_status predict(larch_model *m, const bv_ctx *x, int node, uint64_t seed, float *out)
{
    larch_dataset view = x->test;
    view.n = x->n;
    view.n_derived = 0;
    view.n_targets = 0;
    view.targets = NULL;
    larch_loader_opts lo = {.global_batch = x->batch, .rank = 0, .world = 1, .shuffle = 0, .drop_last = 0, .seed = seed};
    larch_loader *l = NULL;
    larch_status s = larch_loader_create(&l, &view, &lo);
    if (s) return s;
    size_t per = larch_shape_size(larch_model_node_shape(m, node)), done = 0;
    int steps = larch_loader_steps(l);
    for (int k = 0; k < steps; k++) {
        const larch_batch *b = larch_loader_next(l, NULL, NULL);
        larch_pass p = {.n = b->n, .train = 0, .seed = seed};
        larch_model_forward(m, b, &p);
        memcpy(out + done * per, larch_model_node_output(m, node), (size_t)b->n * per * sizeof *out);
        done += (size_t)b->n;
    }
    larch_loader_free(l);
    if (done != (size_t)x->n) return larch_fail(LARCH_ERR_INVALID, "biasvar: %zu of %d test samples computed", done, x->n);
    return LARCH_OK;
}

/* After model k trained: its final checkpoint's test predictions (the
 * group's rank 0 computes them; the load is collective over the group). */
static larch_status after_model(void *ctx, int k, const larch_node *cfg, const larch_comm *group, const larch_train_result *res)
{
    bv_ctx *x = ctx;
    if (!res->checkpoint[0]) return larch_fail(LARCH_ERR_INVALID, "biasvar: model %d wrote no checkpoint", k);
    uint64_t seed = (uint64_t)larch_cfg_int(larch_map_get(cfg, "train"), "seed");
    larch_model *m = NULL;
    larch_status s = larch_model_build(&m, x->test.shape, larch_run_layers(cfg), larch_map_get(cfg, "loss"),
                                       larch_map_get(cfg, "regularization"), seed);
    s = larch_comm_check(group, s);
    if (!s) s = larch_ckpt_load(res->checkpoint, group, m, NULL, NULL);
    int node = s ? 0 : last_node(m);
    size_t per = s ? 0 : larch_shape_size(larch_model_node_shape(m, node));
    if (!s && x->squared && (int)per != x->d)
        s = larch_fail(LARCH_ERR_SHAPE, "biasvar: the model's output has %zu values per sample, the regression %d targets", per, x->d);
    if (!s && !x->squared && (int)per != x->classes)
        s = larch_fail(LARCH_ERR_SHAPE, "biasvar: the model's output has %zu values per sample, the data %d classes", per,
                       x->classes);
    float *out = NULL;
    if (!s && group->rank == 0) {
        out = malloc((size_t)x->n * per * sizeof *out);
        if (!out) s = larch_fail(LARCH_ERR_NOMEM, "biasvar: predictions");
        if (!s) s = larch_model_plan(m, x->batch);
        if (!s) s = predict(m, x, node, seed, out);
        if (!s && x->squared) memcpy(x->pred + (size_t)k * x->n * per, out, (size_t)x->n * per * sizeof *out);
        for (int i = 0; !s && !x->squared && i < x->n; i++) {      /* the predicted class */
            const float *row = out + (size_t)i * per;
            int best = 0;
            for (size_t j = 1; j < per; j++) if (row[j] > row[best]) best = (int)j;
            x->pred[(size_t)k * x->n + (size_t)i] = (float)best;
        }
    }
    free(out);
    larch_model_free(m);
    return s;
}

static json_object *num(double v)
{
    char t[32];
    snprintf(t, sizeof t, "%.6g", v);
    return isfinite(v) ? json_object_new_double_s(v, t) : NULL;
}

int larch_cmd_biasvar(int argc, char **argv)
{
    const char *config = NULL, *out = NULL, *sets[MAX_SETS];
    int n_sets = 0, K = 0, fresh = 0;
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        int next = larch_cli_sets(argc, argv, i, sets, &n_sets, MAX_SETS);
        if (next < 0) return 2;
        if (next > i) { i = next; continue; }
        if (!strcmp(argv[i], "--out") && i + 1 < argc) { out = argv[i + 1]; i += 2; continue; }
        if (!strcmp(argv[i], "--fresh")) { fresh = 1; i++; continue; }
        if (!strcmp(argv[i], "--bootstrap")) { fresh = 0; i++; continue; }
        if (!strcmp(argv[i], "--models") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[i + 1], &end, 10);
            if (*end || v < 2 || v > MAX_MODELS) {
                fprintf(stderr, "larch biasvar: --models %s: expected 2 to %d\n", argv[i + 1], MAX_MODELS);
                return 2;
            }
            K = (int)v;
            i += 2;
            continue;
        }
        if (argv[i][0] == '-' || config) {
            fprintf(stderr, "larch biasvar: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        config = argv[i++];
    }
    if (!config || !K) { usage(stderr); return 2; }
    char out_buf[1100];
    if (!out) {
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%s", config);
        char *base = basename(tmp), *dot = strrchr(base, '.');
        if (dot && dot != base) *dot = '\0';
        snprintf(out_buf, sizeof out_buf, "runs/biasvar-%s", base);
        out = out_buf;
    }

    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) { larch_cli_error("MPI"); return 1; }
    bv_ctx x;
    memset(&x, 0, sizeof x);
    x.K = K;
    larch_node *cfg = NULL;
    larch_variant *v = NULL;
    larch_dataset train;
    memset(&train, 0, sizeof train);
    char seed_set[64] = "";
    /* the base config: the data (and its noise-free version) every model is scored on */
    larch_status s = larch_run_load(config, sets, n_sets, &cfg);
    const larch_node *d = s ? NULL : larch_map_get(cfg, "data"), *sy = larch_map_get(d, "synthetic");
    int synthetic = d && !strcmp(larch_cfg_str(d, "name"), "synthetic");
    long base_seed = s ? 0 : larch_cfg_int(larch_map_get(cfg, "train"), "seed");
    if (!s) {
        const larch_node *loss = larch_map_get(cfg, "loss");
        const larch_node *l0 = loss && loss->kind == LARCH_NODE_SEQ && loss->n > 0 ? loss->items[0] : loss;
        const larch_node *type = l0 && l0->kind == LARCH_NODE_MAP ? larch_map_get(l0, "type") : NULL;
        int mse = type && type->kind == LARCH_NODE_SCALAR && !strcmp(type->scalar, "mse");
        x.squared = mse;
        if (mse && !(synthetic && larch_cfg_int(sy, "regression") > 0))
            s = larch_fail(LARCH_ERR_CONFIG, "%s: the squared-error decomposition needs the noise-free targets, known only for "
                           "generated data: data.name: synthetic with data.synthetic.regression > 0", config);
        if (!s && fresh && !synthetic)
            s = larch_fail(LARCH_ERR_CONFIG, "%s: --fresh draws new training sets of generated data (data.name: synthetic); "
                           "data.name is %s: use --bootstrap", config, larch_cfg_str(d, "name"));
        if (!s && synthetic && larch_cfg_int(sy, "seed") < 0)   /* the data stays while train.seed varies */
            snprintf(seed_set, sizeof seed_set, "data.synthetic.seed=%ld", base_seed);
    }
    if (!s && seed_set[0]) s = larch_cfg_set(cfg, seed_set);
    if (!s) s = larch_run_datasets(cfg, &train, &x.test);
    if (!s) {
        long ev = larch_cfg_int(larch_map_get(cfg, "train"), "eval_samples");
        x.n = ev > 0 && ev < x.test.n ? (int)ev : x.test.n;
        x.d = x.squared ? x.test.n_targets : 1;
        x.classes = x.test.n_classes;
        x.batch = (int)larch_cfg_int(larch_map_get(cfg, "train"), "eval_batch");
        if (x.squared && x.d < 1) s = larch_fail(LARCH_ERR_CONFIG, "%s: the test set has no regression targets", config);
    }
    double sigma = synthetic ? larch_cfg_float(sy, "regression_noise") : 0.0;
    if (!s && x.squared) {                          /* noise-free targets: the same features, no noise draw */
        larch_dataset tr0, te0;
        if (!(s = larch_cfg_set(cfg, "data.synthetic.regression_noise=0")) && !(s = larch_run_datasets(cfg, &tr0, &te0))) {
            x.clean = malloc((size_t)x.n * x.d * sizeof *x.clean);
            if (!x.clean) s = larch_fail(LARCH_ERR_NOMEM, "biasvar: targets");
            else memcpy(x.clean, te0.targets, (size_t)x.n * x.d * sizeof *x.clean);
            larch_dataset_free(&tr0);
            larch_dataset_free(&te0);
        }
    }
    larch_dataset_free(&train);
    if (!s && !(x.pred = calloc((size_t)K * x.n * x.d, sizeof *x.pred)))
        s = larch_fail(LARCH_ERR_NOMEM, "biasvar: predictions of %d models", K);
    if (!s && !(v = calloc((size_t)K, sizeof *v))) s = larch_fail(LARCH_ERR_NOMEM, "biasvar: variants");
    for (int k = 0; !s && k < K; k++) {
        snprintf(v[k].name, sizeof v[k].name, "model-%d", k);
        snprintf(v[k].sets[v[k].n_sets++], LARCH_VARIANT_SET_LEN, "train.seed=%ld", base_seed + k);
        if (fresh) snprintf(v[k].sets[v[k].n_sets++], LARCH_VARIANT_SET_LEN, "data.synthetic.draw=%d", k + 1);
        else snprintf(v[k].sets[v[k].n_sets++], LARCH_VARIANT_SET_LEN, "data.bootstrap=%d", k);
        if (seed_set[0]) snprintf(v[k].sets[v[k].n_sets++], LARCH_VARIANT_SET_LEN, "%s", seed_set);
    }
    s = larch_comm_check(&comm, s);
    larch_variant_result *r = NULL;
    larch_variant *vv = NULL;
    int nv = 0, failed = 0;
    if (!s) {
        larch_groups_opts go = {.config = config, .sets = sets, .n_sets = n_sets, .out_dir = out, .log = stdout,
                                .variants = v, .n_variants = K, .hook = after_model, .hook_ctx = &x,
                                .extra_sets = {"checkpoint.at_end=true"}, .n_extra_sets = 1};
        s = larch_groups_run(&go, &comm, &r, &vv, &nv, &failed);
    }
    /* every model's predictions to every rank: each was filled on one rank only */
    if (!s) s = larch_comm_check(&comm, larch_comm_allreduce_f32(&comm, x.pred, (size_t)K * x.n * x.d));
    int ok_models = 0;
    for (int k = 0; !s && k < nv; k++) ok_models += r[k].ran && r[k].status == LARCH_OK;
    if (!s && ok_models < 2)
        s = larch_fail(LARCH_ERR_INVALID, "biasvar: %d of %d models trained; a decomposition needs at least 2", ok_models, K);
    if (!s && comm.rank == 0) {
        /* the models that trained, in order */
        int w = 0;
        size_t row = (size_t)x.n * x.d;
        for (int k = 0; k < nv; k++)
            if (r[k].ran && r[k].status == LARCH_OK) memmove(x.pred + (size_t)w++ * row, x.pred + (size_t)k * row, row * sizeof *x.pred);
        json_object *o = json_object_new_object();
        json_object_object_add(o, "config", json_object_new_string(config));
        json_object_object_add(o, "models", json_object_new_int(ok_models));
        json_object_object_add(o, "resample", json_object_new_string(fresh ? "fresh" : "bootstrap"));
        json_object_object_add(o, "test_samples", json_object_new_int(x.n));
        json_object *st = json_object_new_object();
        for (int i = 0; i < n_sets; i++) {
            char kv[512];
            snprintf(kv, sizeof kv, "%s", sets[i]);
            char *eq = strchr(kv, '=');
            if (eq) { *eq = '\0'; json_object_object_add(st, kv, json_object_new_string(eq + 1)); }
        }
        json_object_object_add(o, "settings", st);
        if (x.squared) {
            larch_bv_squared b;
            s = larch_bv_squared_decompose(x.pred, ok_models, x.n, x.d, x.clean, x.test.targets, &b);
            if (!s) {
                printf("\nbias-variance of squared error: %d models (%s), %d test samples x %d targets\n", ok_models,
                       fresh ? "fresh training sets" : "bootstrap resamples", x.n, x.d);
                printf("  expected error   %10.6f   (mean over models and test points of (y - h)^2)\n", b.expected_error);
                printf("  bias^2           %10.6f\n  variance         %10.6f\n", b.bias2, b.variance);
                printf("  noise            %10.6f   (measured on the test points; sigma^2 = %g)\n", b.noise, sigma * sigma);
                printf("  bias^2 + variance + noise = %.6f; expected error - sum = %.6f (the finite-sample cross term\n"
                       "  2 mean (y - f)(f - hbar), zero in expectation: %.2f%% of the error)\n",
                       b.bias2 + b.variance + b.noise, b.cross, b.expected_error > 0 ? 100.0 * fabs(b.cross) / b.expected_error : 0.0);
                json_object_object_add(o, "loss", json_object_new_string("squared"));
                json_object_object_add(o, "expected_error", num(b.expected_error));
                json_object_object_add(o, "bias2", num(b.bias2));
                json_object_object_add(o, "variance", num(b.variance));
                json_object_object_add(o, "noise", num(b.noise));
                json_object_object_add(o, "noise_sigma2", num(sigma * sigma));
                json_object_object_add(o, "sum", num(b.bias2 + b.variance + b.noise));
                json_object_object_add(o, "cross", num(b.cross));
            }
        } else {
            int32_t *cls = malloc((size_t)ok_models * x.n * sizeof *cls);
            if (!cls) s = larch_fail(LARCH_ERR_NOMEM, "biasvar: classes");
            for (size_t i = 0; !s && i < (size_t)ok_models * x.n; i++) cls[i] = (int32_t)x.pred[i];
            larch_bv_zero_one b;
            if (!s) s = larch_bv_zero_one_decompose(cls, ok_models, x.n, x.classes, x.test.labels, &b);
            free(cls);
            if (!s) {
                printf("\nbias-variance of 0-1 loss (Domingos 2000): %d models (%s), %d test samples\n", ok_models,
                       fresh ? "fresh training sets" : "bootstrap resamples", x.n);
                printf("  expected 0-1 loss     %8.4f\n  bias                  %8.4f\n", b.loss, b.bias);
                printf("  variance (all)        %8.4f\n  unbiased variance Vu  %8.4f\n  biased variance Vb    %8.4f\n",
                       b.variance, b.var_unbiased, b.var_biased);
                printf("  net variance Vu - Vb  %8.4f\n", b.net_variance);
                printf("  check: bias + Vu - Vb_w = %.4f = loss (Vb_w = %.4f weights each biased point by P(h = label));\n"
                       "         bias + net variance = %.4f (exact for two classes only)\n",
                       b.bias + b.var_unbiased - b.var_biased_weighted, b.var_biased_weighted, b.bias + b.net_variance);
                json_object_object_add(o, "loss", json_object_new_string("zero_one"));
                json_object_object_add(o, "expected_loss", num(b.loss));
                json_object_object_add(o, "bias", num(b.bias));
                json_object_object_add(o, "variance", num(b.variance));
                json_object_object_add(o, "var_unbiased", num(b.var_unbiased));
                json_object_object_add(o, "var_biased", num(b.var_biased));
                json_object_object_add(o, "net_variance", num(b.net_variance));
                json_object_object_add(o, "var_biased_weighted", num(b.var_biased_weighted));
            }
        }
        double mean_test = 0, mean_acc = 0;
        for (int k = 0; k < nv; k++)
            if (r[k].ran && !r[k].status) mean_test += r[k].test_loss / ok_models, mean_acc += r[k].test_accuracy / ok_models;
        json_object_object_add(o, "mean_test_loss", num(mean_test));
        if (!x.squared) json_object_object_add(o, "mean_test_accuracy", num(mean_acc));
        if (!s && x.squared)
            printf("  the models' mean test loss in training's own evaluation: %.6f\n", mean_test);
        else if (!s)
            printf("  1 - the models' mean test accuracy in training's own evaluation: %.4f\n", 1.0 - mean_acc);
        if (!s) {
            char path[1200];
            snprintf(path, sizeof path, "%s/biasvar.jsonl", out);
            FILE *f = fopen(path, "w");
            if (!f || fprintf(f, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)) < 0 ||
                fclose(f) != 0)
                s = larch_fail(LARCH_ERR_IO, "%s: cannot write", path);
            else
                printf("  -> %s\n", path);
        }
        json_object_put(o);
    }
    s = larch_comm_check(&comm, s);
    if (s && comm.rank == 0) larch_cli_error("biasvar");
    else if (failed && comm.rank == 0) fprintf(stderr, "larch: error: %d of %d model(s) failed (left out of the decomposition)\n", failed, nv);
    fflush(stdout);
    free(r);
    free(vv);
    free(v);
    free(x.pred);
    free(x.clean);
    larch_dataset_free(&x.test);
    larch_node_free(cfg);
    larch_comm_finalize(&comm);
    return s || failed ? 1 : 0;
}
