/* test_schedule.c - every learning-rate schedule at its boundaries (first
 * step, end of warmup, decay points, restarts, last step), warmup shapes,
 * one-cycle momentum, and schedule config errors. Expected values are
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
    CHECK_OK(larch_sched_init(&s, c, base, total, per_epoch));
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
    if (!st) st = larch_sched_init(&s, c, 0.1, total, 10);
    CHECK(st == LARCH_ERR_CONFIG && strstr(larch_errmsg(), needle), "%s: got %s '%s', want '%s'", yaml,
          larch_status_name(st), larch_errmsg(), needle);
    larch_node_free(c);
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
    s = make("{name: cosine}", 1.0, 100, 10);
    CHECK(larch_sched_momentum(&s, 0) < 0, "cosine does not cycle momentum");
    /* errors */
    sched_error("{name: onecycle, warmup_epochs: 1}", 100, "own warm phase");
    sched_error("{name: constant, warmup: exponential, warmup_epochs: 1}", 100, "warmup_start");
    larch_sched sw = make("{name: cosine, warmup_epochs: 20}", 1.0, 100, 10);   /* run ends inside its warmup */
    CHECK_NEAR(larch_sched_lr(&sw, 99), 100.0 / 200, 1e-12);
    sched_error("{name: multistep, milestones: [5, 2]}", 100, "ascending");
    sched_error("{name: linear}", 100, "sched.name");
    sched_error("{name: onecycle, moms: [0.9, 0.8]}", 100, "sched.moms");
    return check_result("test_schedule");
}
