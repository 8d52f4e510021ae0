/* test_train_e2e.c - end to end in one process: a small MLP trained by
 * larch_train on synthetic data (4 Gaussian clusters in 16 dimensions) must
 * bring the training loss from ln 4 = 1.386 to below 0.15 and reach a test
 * accuracy above 0.95 within 3 epochs; it must write config.yaml and
 * metrics.jsonl with the canonical fields; a run with the same seed must
 * give the identical final loss; stop_on_nan must stop a diverging run with
 * a message naming the step. */
#include "check.h"
#include "larch/larch.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *CONFIG =
    "train: {batch_size: 64, epochs: 3, seed: 5, log_every: 8, threads: 1}\n"
    "optim: {name: sgd, lr: 0.05, momentum: 0.9}\n"
    "data:\n"
    "  name: synthetic\n"
    "  prefetch: true\n"
    "  synthetic: {n_train: 2048, n_test: 512, classes: 4, shape: [1, 1, 16], noise: 0.5}\n"
    "model:\n"
    "  - {type: dense, units: 32}\n"
    "  - {type: relu}\n"
    "  - {type: dense, units: 4}\n";

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) s[0] = '\0';
    fclose(f);
    return s;
}

static larch_status run(const char *cfg_path, const char *const *sets, int n_sets, const char *out,
                        const larch_comm *comm, larch_train_result *res)
{
    larch_node *cfg = NULL;
    larch_status s = larch_run_load(cfg_path, sets, n_sets, &cfg);
    if (s) return s;
    larch_train_opts o = {.out_dir = out, .log = NULL};
    s = larch_train(cfg, comm, &o, res);
    larch_node_free(cfg);
    return s;
}

int main(int argc, char **argv)
{
    larch_comm comm;
    CHECK_OK(larch_comm_init(&comm, &argc, &argv));
    char dir[] = "/tmp/larch_e2e_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char cfg_path[256], out[256], path[300];
    snprintf(cfg_path, sizeof cfg_path, "%s/mlp.yaml", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    FILE *f = fopen(cfg_path, "w");
    fputs(CONFIG, f);
    fclose(f);

    larch_train_result r1, r2;
    CHECK_OK(run(cfg_path, NULL, 0, out, &comm, &r1));
    printf("final loss %.4f, test accuracy %.4f, %ld steps\n", r1.final_loss, r1.test_accuracy, r1.steps);
    CHECK(r1.steps == 3 * (2048 / 64), "steps %ld", r1.steps);
    CHECK(r1.final_loss < 0.15, "final training loss %.4f is not below 0.15", r1.final_loss);
    CHECK(r1.test_accuracy > 0.95, "test accuracy %.4f is not above 0.95", r1.test_accuracy);
    /* samples_per_s is the step window's: the three evaluations are outside it */
    double wall_rate = (double)r1.steps * 64.0 / r1.wall_seconds;
    CHECK(r1.samples_per_s > wall_rate, "step-window %.1f samples/s is not above the loop's wall %.1f samples/s",
          r1.samples_per_s, wall_rate);

    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    char *metrics = slurp(path);
    CHECK(metrics != NULL, "metrics.jsonl written");
    if (metrics) {
        CHECK(strstr(metrics, "\"step\": 8, \"epoch\": 0.25") != NULL, "first training record:\n%s", metrics);
        CHECK(strstr(metrics, "\"samples_per_s\"") && strstr(metrics, "\"lr\"") && strstr(metrics, "\"loss\""), "training fields");
        CHECK(strstr(metrics, "\"split\": \"test\"") && strstr(metrics, "\"accuracy\""), "evaluation fields");
        CHECK(strstr(metrics, "\"wall_samples_per_s\"") && strstr(metrics, "\"loader_wait_ms\"") &&
              strstr(metrics, "\"eval_s\"") && strstr(metrics, "\"eval_samples_per_s\""), "throughput fields:\n%s", metrics);
        int evals = 0;
        for (const char *p = metrics; (p = strstr(p, "\"split\"")); p++) evals++;
        CHECK(evals == 3, "one evaluation per epoch: %d", evals);
        free(metrics);
    }
    snprintf(path, sizeof path, "%s/config.yaml", out);
    larch_node *resolved = NULL;
    CHECK_OK(larch_cfg_load(path, &resolved));
    if (resolved) {
        CHECK(larch_cfg_find(resolved, "train.eval_every") != NULL, "defaults are written out");
        larch_node_free(resolved);
    }

    /* same seed, same result */
    CHECK_OK(run(cfg_path, NULL, 0, out, &comm, &r2));
    CHECK(r1.final_loss == r2.final_loss, "rerun: %.9g vs %.9g", r1.final_loss, r2.final_loss);

    /* a diverging run stops with a message naming the step */
    const char *sets[] = {"optim.lr=1e3", "optim.momentum=0.99"};
    larch_clear_error();
    larch_status s = run(cfg_path, sets, 2, out, &comm, &r2);
    CHECK(s == LARCH_ERR_NUMERIC, "diverging run: %s", larch_status_name(s));
    CHECK(strstr(larch_errmsg(), "at step") != NULL, "message: %s", larch_errmsg());

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup");
    larch_comm_finalize(&comm);
    return check_result("test_train_e2e");
}
