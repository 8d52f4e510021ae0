/* test_schedule.c - every learning-rate schedule at its boundaries (first
 * step, end of warmup, decay points, restarts, last step), warmup shapes,
 * one-cycle momentum (and moms: off, and the log's note on it), and
 * schedule config errors. Expected values are
 * computed here from the definitions (docs/optimizers.md), with 10 steps per
 * epoch and 100 steps unless stated. */
#include "check.h"
#include "larch/larch.h"

static larch_node *parse(const char *yaml)
{
    larch_node *n = NULL;
    larch_status s = larch_cfg_parse(yaml, "<test>", &n);
    CHECK(s == LARCH_OK, "parse %s: %s", yaml, larch_errmsg());
    return n;
}

static larch_sched make(const char *yaml, double base, long total, long per_epoch)
{
    larch_node *c = parse(yaml);
    larch_sched s;
    CHECK_OK(larch_cfg_check(c, "sched", larch_sched_keys, NULL));
    larch_sched_opts so;
    CHECK_OK(larch_sched_opts_from_cfg(c, &so));
    CHECK_OK(larch_sched_init(&s, &so, base, total, per_epoch));
    larch_node_free(c);
    return s;
}

static double lr_at(const char *yaml, double base, long step)
{
    larch_sched s = make(yaml, base, 100, 10);
    return larch_sched_lr(&s, step);
}

static void sched_error(const char *yaml, long total, const char *needle)
{
    larch_node *c = parse(yaml);
    larch_sched s;
    larch_clear_error();
    larch_status st = larch_cfg_check(c, "sched", larch_sched_keys, NULL);
    larch_sched_opts so;
    if (!st) st = larch_sched_opts_from_cfg(c, &so);
    if (!st) st = larch_sched_init(&s, &so, 0.1, total, 10);
    CHECK(st == LARCH_ERR_CONFIG && strstr(larch_errmsg(), needle), "%s: got %s '%s', want '%s'", yaml,
          larch_status_name(st), larch_errmsg(), needle);
    larch_node_free(c);
}

/* larch_sched_momentum_note of a one-cycle schedule for an optimizer of a
 * dense layer. */
static void note_has(const char *sched_yaml, const char *optim_yaml, const char *needle)
{
    larch_node *layers = parse("[{type: dense, name: fc, units: 3}]"), *oc = parse(optim_yaml);
    larch_model *m = NULL;
    larch_optim *o = NULL;
    char note[300] = "";
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 4}, layers, NULL, NULL, 1));
    CHECK_OK(larch_optim_defaults(oc));
    CHECK_OK(larch_cfg_check(oc, "optim", larch_optim_keys, NULL));
    if (m) CHECK_OK(larch_optim_create_cfg(&o, m, oc));
    larch_sched s = make(sched_yaml, 0.1, 100, 10);
    if (o) {
        int n = larch_sched_momentum_note(&s, o, note, sizeof note);
        CHECK(strstr(note, needle) && (n > 0) == (needle[0] != 0), "%s + %s: note '%s' lacks '%s'", sched_yaml,
              optim_yaml, note, needle);
    }
    larch_optim_free(o);
    larch_model_free(m);
    larch_node_free(layers);
    larch_node_free(oc);
}

int main(void)
{
    const double pi = 3.14159265358979323846;
    /* constant, step, multistep, exponential */
    CHECK_NEAR(lr_at("{name: constant}", 0.1, 0), 0.1, 1e-12);
    CHECK_NEAR(lr_at("{name: constant}", 0.1, 99), 0.1, 1e-12);
    CHECK_NEAR(lr_at("{name: step, step_epochs: 3, gamma: 0.5}", 0.1, 29), 0.1, 1e-12);
    CHECK_NEAR(lr_at("{name: step, step_epochs: 3, gamma: 0.5}", 0.1, 30), 0.05, 1e-12);
    CHECK_NEAR(lr_at("{name: step, step_epochs: 3, gamma: 0.5}", 0.1, 99), 0.0125, 1e-12);
    CHECK_NEAR(lr_at("{name: multistep, milestones: [2, 5], gamma: 0.1}", 1.0, 19), 1.0, 1e-12);
    CHECK_NEAR(lr_at("{name: multistep, milestones: [2, 5], gamma: 0.1}", 1.0, 20), 0.1, 1e-12);
    CHECK_NEAR(lr_at("{name: multistep, milestones: [2, 5], gamma: 0.1}", 1.0, 50), 0.01, 1e-12);
    CHECK_NEAR(lr_at("{name: exponential, gamma: 0.5}", 1.0, 0), 1.0, 1e-12);
    CHECK_NEAR(lr_at("{name: exponential, gamma: 0.5}", 1.0, 15), pow(0.5, 1.5), 1e-12);
    /* cosine: p = t / T without warmup; with 20 warmup steps p = (t - 20) / 80 */
    CHECK_NEAR(lr_at("{name: cosine}", 1.0, 0), 1.0, 1e-12);
    CHECK_NEAR(lr_at("{name: cosine}", 1.0, 50), 0.5, 1e-12);
    CHECK_NEAR(lr_at("{name: cosine, min_lr: 0.1}", 1.0, 99), 0.1 + 0.9 * 0.5 * (1 + cos(pi * 0.99)), 1e-12);
    CHECK_NEAR(lr_at("{name: cosine, warmup_epochs: 2}", 1.0, 19), 1.0, 1e-12);          /* end of warmup */
    CHECK_NEAR(lr_at("{name: cosine, warmup_epochs: 2}", 1.0, 20), 1.0, 1e-12);          /* decay starts  */
    CHECK_NEAR(lr_at("{name: cosine, warmup_epochs: 2}", 1.0, 60), 0.5, 1e-12);
    /* linear warmup over 20 steps: step k gets (k + 1) / 20, or s + (1 - s)(k + 1) / 20 */
    CHECK_NEAR(lr_at("{name: constant, warmup_epochs: 2}", 0.4, 0), 0.02, 1e-12);
    CHECK_NEAR(lr_at("{name: constant, warmup_epochs: 2}", 0.4, 9), 0.2, 1e-12);
    CHECK_NEAR(lr_at("{name: constant, warmup_epochs: 2}", 0.4, 19), 0.4, 1e-12);
    CHECK_NEAR(lr_at("{name: constant, warmup_steps: 5}", 0.4, 0), 0.08, 1e-12);        /* steps override */
    CHECK_NEAR(lr_at("{name: constant, warmup_epochs: 2, warmup_start: 0.5}", 0.4, 0), 0.4 * (0.5 + 0.5 / 20), 1e-12);
    /* exponential warmup: s^(1 - (k + 1) / W) */
    CHECK_NEAR(lr_at("{name: constant, warmup: exponential, warmup_start: 0.01, warmup_epochs: 2}", 1.0, 0),
               pow(0.01, 1 - 1.0 / 20), 1e-12);
    CHECK_NEAR(lr_at("{name: constant, warmup: exponential, warmup_start: 0.01, warmup_epochs: 2}", 1.0, 9), 0.1, 1e-12);
    CHECK_NEAR(lr_at("{name: constant, warmup: exponential, warmup_start: 0.01, warmup_epochs: 2}", 1.0, 19), 1.0, 1e-12);
    /* warmup composes with step (epochs from the start) */
    CHECK_NEAR(lr_at("{name: step, step_epochs: 1, gamma: 0.5, warmup_epochs: 2}", 1.0, 15), 0.5 * 16 / 20.0, 1e-12);
    /* poly: (1 - p)^power after warmup */
    CHECK_NEAR(lr_at("{name: poly}", 1.0, 0), 1.0, 1e-12);
    CHECK_NEAR(lr_at("{name: poly}", 1.0, 50), 0.25, 1e-12);
    CHECK_NEAR(lr_at("{name: poly, power: 1, min_lr: 0.1}", 1.0, 50), 0.55, 1e-12);
    CHECK_NEAR(lr_at("{name: poly, warmup_epochs: 2}", 1.0, 19), 1.0, 1e-12);
    CHECK_NEAR(lr_at("{name: poly, warmup_epochs: 2}", 1.0, 60), 0.25, 1e-12);
    CHECK_NEAR(lr_at("{name: poly, warmup_epochs: 2}", 1.0, 99), pow(1.0 / 80, 2), 1e-12);
    /* sgdr: periods of 2, 4, 8 epochs (20, 40, 80 steps) */
    const char *sg = "{name: sgdr, restart_epochs: 2, restart_mult: 2, min_lr: 0.1}";
    CHECK_NEAR(lr_at(sg, 1.0, 0), 1.0, 1e-12);
    CHECK_NEAR(lr_at(sg, 1.0, 10), 0.55, 1e-12);
    CHECK_NEAR(lr_at(sg, 1.0, 19), 0.1 + 0.9 * 0.5 * (1 + cos(pi * 19 / 20)), 1e-12);
    CHECK_NEAR(lr_at(sg, 1.0, 20), 1.0, 1e-12);                                            /* restart */
    CHECK_NEAR(lr_at(sg, 1.0, 40), 0.55, 1e-12);
    CHECK_NEAR(lr_at(sg, 1.0, 60), 1.0, 1e-12);                                            /* restart */
    CHECK_NEAR(lr_at("{name: sgdr, restart_epochs: 3}", 1.0, 30), 1.0, 1e-12);
    CHECK_NEAR(lr_at("{name: sgdr, restart_epochs: 3, warmup_epochs: 1}", 1.0, 40), 1.0, 1e-12);  /* after warmup */
    /* one-cycle (fastai): 25 steps up from base/25, 75 down to base/1e5 */
    const char *oc = "{name: onecycle}";
    CHECK_NEAR(lr_at(oc, 1.0, 0), 1.0 / 25, 1e-12);
    CHECK_NEAR(lr_at(oc, 1.0, 25), 1.0, 1e-12);
    CHECK_NEAR(lr_at(oc, 1.0, 12), 1.0 + (1.0 / 25 - 1.0) / 2 * (1 + cos(pi * 12 / 25)), 1e-12);
    CHECK_NEAR(lr_at(oc, 1.0, 99), 1e-5 + (1.0 - 1e-5) / 2 * (1 + cos(pi * 74 / 75)), 1e-12);
    larch_sched s = make(oc, 1.0, 100, 10);
    CHECK_NEAR(larch_sched_momentum(&s, 0), 0.95, 1e-12);
    CHECK_NEAR(larch_sched_momentum(&s, 25), 0.85, 1e-12);
    CHECK_NEAR(larch_sched_momentum(&s, 99), 0.85 + 0.1 / 2 * (1 - cos(pi * 74 / 75)), 1e-12);
    s = make("{name: onecycle, moms: []}", 1.0, 100, 10);
    CHECK(larch_sched_momentum(&s, 0) < 0, "moms [] leaves momentum alone");
    s = make("{name: onecycle, moms: off}", 1.0, 100, 10);
    CHECK(larch_sched_momentum(&s, 0) < 0 && larch_sched_momentum(&s, 99) < 0, "moms: off leaves momentum alone");
    /* the training log's note on what the schedule does to the optimizer's momentum */
    note_has(oc, "{name: adam, beta1: 0.8}", "one-cycle: beta1 follows sched.moms 0.95 -> 0.85 -> 0.95, in place of "
             "optim.beta1 = 0.8 (sched.moms: off keeps it)");
    note_has("{name: onecycle, moms: [0.9, 0.8, 0.85]}", "{name: lars}", "momentum follows sched.moms 0.9 -> 0.8 -> 0.85");
    note_has("{name: onecycle, moms: off}", "{name: sgd, momentum: 0.7}",
             "one-cycle: momentum not cycled (sched.moms: off), it stays optim.momentum = 0.7");
    note_has(oc, "{name: sgd, momentum: 0}", "sched.moms has no effect: sgd with optim.momentum 0");
    note_has("{name: cosine}", "{name: adam}", "");
    s = make("{name: cosine}", 1.0, 100, 10);
    CHECK(larch_sched_momentum(&s, 0) < 0, "cosine does not cycle momentum");
    /* errors */
    sched_error("{name: onecycle, warmup_epochs: 1}", 100, "own warm phase");
    sched_error("{name: constant, warmup: exponential, warmup_epochs: 1}", 100, "warmup_start");
    larch_sched sw = make("{name: cosine, warmup_epochs: 20}", 1.0, 100, 10);   /* run ends inside its warmup */
    CHECK_NEAR(larch_sched_lr(&sw, 99), 100.0 / 200, 1e-12);
    sched_error("{name: multistep, milestones: [5, 2]}", 100, "ascending");
    sched_error("{name: linear}", 100, "sched.name");
    sched_error("{name: onecycle, moms: [0.9, 0.8]}", 100, "<test>:1: sched.moms: expected 3 values [start, peak, end], or off");
    sched_error("{name: onecycle, moms: of}", 100, "<test>:1: sched.moms: expected a list (e.g. [1, 2]) or off, got 'of'");
    sched_error("{name: onecycle, moms: 'off'}", 100, "sched.moms: expected a list");   /* text, not the word */
    return check_result("test_schedule");
}
