/* test_optim_opts.c - the typed optimizer and schedule options
 * (larch_optim_opts, larch_sched_opts) against the config front end
 * (larch/optim_cfg.h): the same settings written either way give the same
 * options, bit-identical parameters and optimizer state after training
 * steps, and bit-identical learning-rate and momentum sequences; the
 * defaults agree; invalid values fail naming the field.
 */
#include "check.h"
#include "larch/larch.h"
#include "nn/model_internal.h"   /* the model's flat buffers */

#include <stdlib.h>
#include <string.h>

static larch_node *parse(const char *yaml)
{
    larch_node *n = NULL;
    larch_status s = larch_cfg_parse(yaml, "<test>", &n);
    CHECK(s == LARCH_OK, "parse %s: %s", yaml, larch_errmsg());
    return n;
}

/* The options a config's `optim` map gives (validated, defaults filled). */
static int optim_from_yaml(const char *yaml, larch_optim_opts *out, larch_node **keep)
{
    larch_node *c = parse(yaml);
    *keep = c;
    if (!c) return 0;
    larch_status s = larch_optim_defaults(c);
    if (!s) s = larch_cfg_check(c, "optim", larch_optim_keys, NULL);
    if (!s) s = larch_optim_opts_from_cfg(c, out);
    CHECK(s == LARCH_OK, "%s: %s", yaml, larch_errmsg());
    return s == LARCH_OK;
}

#define SAME(field) CHECK(a->field == b->field, "%s: " #field " differs", what)
static void same_opts(const larch_optim_opts *a, const larch_optim_opts *b, const char *what)
{
    SAME(kind); SAME(lr); SAME(momentum); SAME(dampening); SAME(nesterov); SAME(weight_decay); SAME(decoupled);
    SAME(beta1); SAME(beta2); SAME(beta3); SAME(eps); SAME(amsgrad); SAME(bias_correction); SAME(momentum_decay);
    SAME(rho_threshold); SAME(trust_coef); SAME(lars_clip); SAME(trust_min); SAME(trust_max); SAME(decay_bias_norm);
    SAME(adapt_bias_norm); SAME(clip_norm); SAME(clip_value); SAME(n_groups);
    for (int i = 0; i < a->n_groups && i < b->n_groups; i++) {
        const larch_param_group *x = &a->groups[i], *y = &b->groups[i];
        CHECK(!strcmp(x->match, y->match) && x->roles == y->roles && x->lr_mult == y->lr_mult &&
              x->wd_mult == y->wd_mult && x->adapt == y->adapt && x->freeze == y->freeze &&
              x->unfreeze_after_epochs == y->unfreeze_after_epochs, "%s: group %d differs", what, i);
    }
}

/* Two identical models, one optimizer from each options struct, the same
 * gradients for `steps` steps: parameters and state must match bit for bit. */
static void same_training(const larch_optim_opts *a, const larch_optim_opts *b, const char *what)
{
    larch_node *layers = parse("[{type: dense, name: fc1, units: 5}, {type: relu, name: r1},"
                               " {type: layernorm, name: ln}, {type: dense, name: fc2, units: 3}]");
    larch_model *ma = NULL, *mb = NULL;
    larch_optim *oa = NULL, *ob = NULL;
    CHECK_OK(larch_model_build(&ma, (larch_shape){1, 1, 4}, layers, NULL, NULL, 3));
    CHECK_OK(larch_model_build(&mb, (larch_shape){1, 1, 4}, layers, NULL, NULL, 3));
    if (ma && mb) CHECK_OK(larch_optim_create(&oa, ma, a));
    if (ma && mb) CHECK_OK(larch_optim_create(&ob, mb, b));
    if (oa && ob) {
        larch_sched_opts so = LARCH_SCHED_DEFAULTS;
        so.kind = LARCH_SCHED_COSINE;
        so.warmup_steps = 3;
        larch_sched sc;
        CHECK_OK(larch_sched_init(&sc, &so, a->lr, 12, 4));
        for (long t = 0; t < 12; t++) {
            for (size_t i = 0; i < ma->n_floats; i++)
                ma->grad[i] = mb->grad[i] = 0.07f * (float)((i * 5 + (size_t)t * 11) % 17) - 0.5f;
            float lr = (float)larch_sched_lr(&sc, t);
            larch_optim_step(oa, lr);
            larch_optim_step(ob, lr);
        }
        CHECK(!memcmp(ma->param, mb->param, ma->n_floats * sizeof(float)), "%s: parameters differ", what);
        CHECK(oa->n_state == ob->n_state && oa->n_state_floats == ob->n_state_floats, "%s: state layout differs", what);
        for (int k = 0; k < oa->n_state && k < ob->n_state; k++)
            CHECK(!memcmp(oa->state[k], ob->state[k], oa->n_state_floats * sizeof(float)), "%s: state %s differs", what,
                  oa->state_names[k]);
        CHECK(oa->n_state > 0 || a->kind == LARCH_OPT_SGD, "%s: no state", what);
        int moved = 0;
        larch_model *fresh = NULL;
        CHECK_OK(larch_model_build(&fresh, (larch_shape){1, 1, 4}, layers, NULL, NULL, 3));
        if (fresh) moved = memcmp(fresh->param, ma->param, ma->n_floats * sizeof(float)) != 0;
        CHECK(moved, "%s: the steps did not change the parameters", what);
        larch_model_free(fresh);
    }
    larch_optim_free(oa);
    larch_optim_free(ob);
    larch_model_free(ma);
    larch_model_free(mb);
    larch_node_free(layers);
}

static void optimizers(void)
{
    static const larch_param_group groups[] = {
        {"fc2.*", LARCH_ROLES_ALL, 0.5, 0.0, LARCH_ADAPT_ROLE, 0, 0},
        {"ln.*", LARCH_ROLE_BIT(LARCH_ROLE_NORM), 1.0, 2.0, LARCH_ADAPT_YES, 0, 0},
        {"fc1.bias", LARCH_ROLE_BIT(LARCH_ROLE_BIAS), 1.0, -1.0, LARCH_ADAPT_ROLE, 1, 0}};
    const char *yaml_groups = "groups: [{match: 'fc2.*', lr_mult: 0.5, wd_mult: 0},"
                              " {match: 'ln.*', roles: [norm], wd_mult: 2, adapt: true},"
                              " {match: fc1.bias, roles: [bias], freeze: true}]";
    for (int k = LARCH_OPT_SGD; k <= LARCH_OPT_LAMB; k++) {
        const char *name = larch_optim_kind_name((larch_optim_kind)k);
        char yaml[1024];
        larch_node *c = NULL;
        larch_optim_opts fromcfg, typed;
        /* 1. the defaults */
        snprintf(yaml, sizeof yaml, "{name: %s}", name);
        if (optim_from_yaml(yaml, &fromcfg, &c)) {
            typed = larch_optim_defaults_for((larch_optim_kind)k);
            same_opts(&fromcfg, &typed, yaml);
            same_training(&fromcfg, &typed, yaml);
            larch_optim_opts_release(&fromcfg);
        }
        larch_node_free(c);
        /* 2. every hyperparameter away from its default, groups and clipping */
        snprintf(yaml, sizeof yaml, "{name: %s, lr: 0.03, momentum: 0.8, dampening: 0, nesterov: %s, weight_decay: 0.02, "
                 "decoupled: true, beta1: 0.85, beta2: 0.99, beta3: 0.995, eps: 1e-7, amsgrad: %s, bias_correction: false, "
                 "momentum_decay: 0.005, rho_threshold: 4, trust_coef: 0.002, lars_mode: clip, trust_min: 0.01, "
                 "trust_max: 10, decay_bias_norm: true, adapt_bias_norm: true, clip_norm: 0.8, clip_value: 0.4, %s}",
                 name, k == LARCH_OPT_SGD ? "true" : "false", k == LARCH_OPT_ADAM ? "true" : "false", yaml_groups);
        if (optim_from_yaml(yaml, &fromcfg, &c)) {
            typed = larch_optim_defaults_for((larch_optim_kind)k);
            typed.lr = 0.03; typed.momentum = 0.8; typed.dampening = 0; typed.nesterov = k == LARCH_OPT_SGD;
            typed.weight_decay = 0.02; typed.decoupled = 1; typed.beta1 = 0.85; typed.beta2 = 0.99; typed.beta3 = 0.995;
            typed.eps = 1e-7; typed.amsgrad = k == LARCH_OPT_ADAM; typed.bias_correction = 0; typed.momentum_decay = 0.005;
            typed.rho_threshold = 4; typed.trust_coef = 0.002; typed.lars_clip = 1; typed.trust_min = 0.01;
            typed.trust_max = 10; typed.decay_bias_norm = 1; typed.adapt_bias_norm = 1; typed.clip_norm = 0.8;
            typed.clip_value = 0.4; typed.groups = groups; typed.n_groups = 3;
            same_opts(&fromcfg, &typed, name);
            same_training(&fromcfg, &typed, name);
            larch_optim_opts_release(&fromcfg);
        }
        larch_node_free(c);
    }
}

/* The lr and momentum sequences of a config's schedule and of typed options. */
static void same_schedule(const char *yaml, const larch_sched_opts *typed, double base, long total, long per_epoch)
{
    larch_node *c = parse(yaml);
    larch_sched_opts o;
    larch_sched a, b;
    if (!c) return;
    CHECK_OK(larch_cfg_check(c, "sched", larch_sched_keys, NULL));
    larch_status s = larch_sched_opts_from_cfg(c, &o);
    CHECK(s == LARCH_OK, "%s: %s", yaml, larch_errmsg());
    if (!s) CHECK_OK(larch_sched_init(&a, &o, base, total, per_epoch));
    CHECK_OK(larch_sched_init(&b, typed, base, total, per_epoch));
    int diff = 0, varied = 0;
    for (long t = 0; !s && t < total + 5; t++) {
        diff += larch_sched_lr(&a, t) != larch_sched_lr(&b, t) || larch_sched_momentum(&a, t) != larch_sched_momentum(&b, t);
        varied += larch_sched_lr(&b, t) != larch_sched_lr(&b, 0);
    }
    CHECK(diff == 0, "%s: %d steps differ from the typed options", yaml, diff);
    CHECK(varied > 0 || typed->kind == LARCH_SCHED_CONSTANT || (typed->kind == LARCH_SCHED_MULTISTEP && !typed->n_milestones),
          "%s: the rate never changes", yaml);
    larch_node_free(c);
}

static void schedules(void)
{
    larch_sched_opts o = LARCH_SCHED_DEFAULTS;
    same_schedule("{}", &o, 0.1, 50, 10);
    same_schedule("{name: constant, warmup_epochs: 1.5, warmup_start: 0.1}",
                  &(larch_sched_opts){.kind = LARCH_SCHED_CONSTANT, .warmup_epochs = 1.5, .warmup_start = 0.1,
                                      .step_epochs = 30, .gamma = 0.1, .power = 2, .restart_epochs = 10,
                                      .restart_mult = 1, .pct_start = 0.25, .div = 25, .div_final = 1e5}, 0.1, 50, 10);
    o = (larch_sched_opts)LARCH_SCHED_DEFAULTS;
    o.kind = LARCH_SCHED_STEP; o.step_epochs = 2; o.gamma = 0.5;
    same_schedule("{name: step, step_epochs: 2, gamma: 0.5}", &o, 0.1, 60, 10);
    o = (larch_sched_opts)LARCH_SCHED_DEFAULTS;
    o.kind = LARCH_SCHED_MULTISTEP; o.n_milestones = 3; o.milestones[0] = 1; o.milestones[1] = 2.5; o.milestones[2] = 4;
    o.warmup = LARCH_WARMUP_EXPONENTIAL; o.warmup_steps = 4; o.warmup_start = 0.01;
    same_schedule("{name: multistep, milestones: [1, 2.5, 4], warmup: exponential, warmup_steps: 4, warmup_start: 0.01}",
                  &o, 0.2, 60, 10);
    o = (larch_sched_opts)LARCH_SCHED_DEFAULTS;
    o.kind = LARCH_SCHED_EXPONENTIAL; o.gamma = 0.9;
    same_schedule("{name: exponential, gamma: 0.9}", &o, 0.1, 60, 10);
    o = (larch_sched_opts)LARCH_SCHED_DEFAULTS;
    o.kind = LARCH_SCHED_COSINE; o.min_lr = 0.001; o.warmup_epochs = 1;
    same_schedule("{name: cosine, min_lr: 0.001, warmup_epochs: 1}", &o, 0.1, 60, 10);
    o = (larch_sched_opts)LARCH_SCHED_DEFAULTS;
    o.kind = LARCH_SCHED_SGDR; o.restart_epochs = 1.5; o.restart_mult = 2; o.min_lr = 1e-4;
    same_schedule("{name: sgdr, restart_epochs: 1.5, restart_mult: 2, min_lr: 1e-4}", &o, 0.1, 80, 10);
    o = (larch_sched_opts)LARCH_SCHED_DEFAULTS;
    o.kind = LARCH_SCHED_POLY; o.power = 1.5; o.warmup_steps = 7;
    same_schedule("{name: poly, power: 1.5, warmup_steps: 7}", &o, 2.0, 60, 10);
    o = (larch_sched_opts)LARCH_SCHED_DEFAULTS;
    o.kind = LARCH_SCHED_ONECYCLE; o.pct_start = 0.3; o.div = 10; o.div_final = 1e4;
    o.moms[0] = 0.9; o.moms[1] = 0.8; o.moms[2] = 0.9;
    same_schedule("{name: onecycle, pct_start: 0.3, div: 10, div_final: 1e4, moms: [0.9, 0.8, 0.9]}", &o, 0.1, 60, 10);
    o.n_moms = 0;
    same_schedule("{name: onecycle, pct_start: 0.3, div: 10, div_final: 1e4, moms: off}", &o, 0.1, 60, 10);
    for (int k = LARCH_SCHED_CONSTANT; k <= LARCH_SCHED_ONECYCLE; k++) {     /* every kind at its defaults */
        char yaml[64];
        snprintf(yaml, sizeof yaml, "{name: %s}", larch_sched_kind_name((larch_sched_kind)k));
        o = (larch_sched_opts)LARCH_SCHED_DEFAULTS;
        o.kind = (larch_sched_kind)k;
        same_schedule(yaml, &o, 0.1, 400, 10);
        CHECK(larch_sched_kind_of(larch_sched_kind_name((larch_sched_kind)k)) == k, "kind %d round trip", k);
    }
}

/* Typed validation: the status, the field's name in the message and in `field`. */
static void optim_invalid(larch_optim_opts o, const char *want_field, const char *needle)
{
    const char *field = NULL;
    larch_clear_error();
    larch_status s = larch_optim_validate(&o, &field);
    CHECK(s == LARCH_ERR_INVALID, "want %s invalid, got %s", want_field, larch_status_name(s));
    CHECK(field && !strcmp(field, want_field), "field %s, want %s", field ? field : "(null)", want_field);
    CHECK(strstr(larch_errmsg(), needle) != NULL, "message '%s' lacks '%s'", larch_errmsg(), needle);
    larch_node *layers = parse("[{type: dense, name: fc, units: 3}]");
    larch_model *m = NULL;
    larch_optim *opt = NULL;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 4}, layers, NULL, NULL, 1));
    if (m) CHECK_FAIL(larch_optim_create(&opt, m, &o), LARCH_ERR_INVALID, needle);
    CHECK(opt == NULL, "no optimizer on failure");
    larch_model_free(m);
    larch_node_free(layers);
}

static void sched_invalid(larch_sched_opts o, const char *want_field, const char *needle)
{
    const char *field = NULL;
    larch_sched s;
    larch_clear_error();
    larch_status st = larch_sched_validate(&o, &field);
    CHECK(st == LARCH_ERR_INVALID, "want %s invalid, got %s", want_field, larch_status_name(st));
    CHECK(field && !strcmp(field, want_field), "field %s, want %s", field ? field : "(null)", want_field);
    CHECK(strstr(larch_errmsg(), needle) != NULL, "message '%s' lacks '%s'", larch_errmsg(), needle);
    CHECK_FAIL(larch_sched_init(&s, &o, 0.1, 100, 10), LARCH_ERR_INVALID, needle);
}

static void validation(void)
{
    larch_optim_opts o = larch_optim_defaults_for(LARCH_OPT_ADAM);
    const char *field = "x";
    CHECK_OK(larch_optim_validate(&o, &field));
    CHECK(field == NULL, "no field when valid");
    o.lr = -0.1;
    optim_invalid(o, "lr", "optim.lr = -0.1 is out of range [0, 10000]");
    o = larch_optim_defaults_for(LARCH_OPT_ADAM);
    o.beta2 = 1.0;
    optim_invalid(o, "beta2", "optim.beta2 = 1 is out of range");
    o.beta2 = NAN;
    optim_invalid(o, "beta2", "optim.beta2 = nan");
    o = larch_optim_defaults_for(LARCH_OPT_SGD);
    o.nesterov = 1;
    o.momentum = 0.0;
    optim_invalid(o, "nesterov", "optim.nesterov: Nesterov momentum needs momentum > 0");
    o = larch_optim_defaults_for(LARCH_OPT_LAMB);
    o.trust_min = 2;
    o.trust_max = 1;
    optim_invalid(o, "trust_max", "optim.trust_max: 1 is below optim.trust_min 2");
    o = larch_optim_defaults_for(LARCH_OPT_SGD);
    o.kind = (larch_optim_kind)8;
    optim_invalid(o, "name", "optim.name: unknown optimizer kind 8");
    larch_param_group g = LARCH_PARAM_GROUP_DEFAULTS;
    g.unfreeze_after_epochs = 2;
    o = larch_optim_defaults_for(LARCH_OPT_SGD);
    o.groups = &g;
    o.n_groups = 1;
    optim_invalid(o, "groups", "optim.groups[0].unfreeze_after_epochs: needs freeze: true");
    g = (larch_param_group)LARCH_PARAM_GROUP_DEFAULTS;
    g.lr_mult = -1;
    optim_invalid(o, "groups", "optim.groups[0].lr_mult = -1 is out of range");
    /* a group that matches nothing fails at create, naming the group */
    g = (larch_param_group)LARCH_PARAM_GROUP_DEFAULTS;
    g.match = "conv*";
    larch_node *layers = parse("[{type: dense, name: fc, units: 3}]");
    larch_model *m = NULL;
    larch_optim *opt = NULL;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 4}, layers, NULL, NULL, 1));
    if (m) CHECK_FAIL(larch_optim_create(&opt, m, &o), LARCH_ERR_INVALID, "optim.groups[0].match: 'conv*' matches no parameter");
    g.match = "fc.*";
    g.roles = LARCH_ROLE_BIT(LARCH_ROLE_BIAS);
    g.freeze = 1;
    if (m) CHECK_OK(larch_optim_create(&opt, m, &o));
    CHECK(opt && m->params[1].lr_mult == 0.0f && m->params[0].lr_mult == 1.0f, "the bias only is frozen");
    larch_optim_free(opt);
    larch_model_free(m);
    larch_node_free(layers);

    larch_sched_opts s = LARCH_SCHED_DEFAULTS;
    s.kind = LARCH_SCHED_MULTISTEP;
    s.n_milestones = 2;
    s.milestones[0] = 3;
    s.milestones[1] = 1;
    sched_invalid(s, "milestones", "sched.milestones: must be ascending (1 comes after 3)");
    s.n_milestones = LARCH_SCHED_MAX_MILESTONES + 1;
    sched_invalid(s, "milestones", "sched.milestones: at most 16 milestones");
    s = (larch_sched_opts)LARCH_SCHED_DEFAULTS;
    s.kind = LARCH_SCHED_ONECYCLE;
    s.warmup_steps = 5;
    sched_invalid(s, "warmup_steps", "sched.warmup_steps: onecycle has its own warm phase");
    s.warmup_steps = 0;
    s.n_moms = 2;
    sched_invalid(s, "moms", "sched.moms: expected 3 values");
    s.kind = LARCH_SCHED_COSINE;                 /* moms: only onecycle reads them */
    CHECK_OK(larch_sched_validate(&s, NULL));
    s = (larch_sched_opts)LARCH_SCHED_DEFAULTS;
    s.warmup = LARCH_WARMUP_EXPONENTIAL;
    s.warmup_epochs = 1;
    sched_invalid(s, "warmup_start", "sched.warmup_start: exponential warmup needs a start factor > 0");
    s = (larch_sched_opts)LARCH_SCHED_DEFAULTS;
    s.gamma = 1.5;
    sched_invalid(s, "gamma", "sched.gamma = 1.5 is out of range [0, 1]");
    s = (larch_sched_opts)LARCH_SCHED_DEFAULTS;
    s.restart_mult = 0.5;
    sched_invalid(s, "restart_mult", "sched.restart_mult = 0.5 is out of range [1, 100]");

    /* through the config front end the same check names the file, line and key */
    larch_node *c = parse("{name: multistep,\n milestones: [3, 1]}");
    larch_sched_opts so;
    CHECK_OK(larch_cfg_check(c, "sched", larch_sched_keys, NULL));
    CHECK_FAIL(larch_sched_opts_from_cfg(c, &so), LARCH_ERR_CONFIG, "<test>:2: sched.milestones: must be ascending");
    larch_node_free(c);
    c = parse("{name: lamb,\n trust_min: 2,\n trust_max: 1}");
    larch_optim_opts oo;
    CHECK_OK(larch_optim_defaults(c));
    CHECK_OK(larch_cfg_check(c, "optim", larch_optim_keys, NULL));
    CHECK_FAIL(larch_optim_opts_from_cfg(c, &oo), LARCH_ERR_CONFIG, "<test>:3: optim.trust_max: 1 is below");
    larch_node_free(c);
}

int main(void)
{
    optimizers();
    schedules();
    validation();
    return check_result("test_optim_opts");
}
