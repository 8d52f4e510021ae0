/* optim_cfg.c - the YAML front end of the optimizer and schedule API
 * (include/larch/optim_cfg.h): the `optim` and `sched` schemas, the
 * per-optimizer defaults, warnings for keys the chosen optimizer or schedule
 * does not read, and the translation into larch_optim_opts and
 * larch_sched_opts, which larch_optim_validate / larch_sched_validate check
 * (their messages get the key's file and line here).
 */
#include "larch/optim_cfg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIT(k) (1u << (k))
#define N_KINDS 8

/* "file:line" of map[key] (the map's place when absent). */
static const char *place(const larch_node *cfg, const char *key, char *buf, size_t len)
{
    for (int i = 0; i < cfg->n; i++)
        if (strcmp(cfg->keys[i], key) == 0) return larch_key_where(cfg, i, buf, len);
    return larch_node_where(cfg, buf, len);
}

#define ADAMS (BIT(LARCH_OPT_ADAM) | BIT(LARCH_OPT_ADAMW) | BIT(LARCH_OPT_NADAM) | BIT(LARCH_OPT_RADAM) | \
               BIT(LARCH_OPT_ADAMOD) | BIT(LARCH_OPT_LAMB))


const larch_key larch_optim_keys[] = {
    {"name", LARCH_T_ENUM, "sgd", 0, 0, "sgd|adam|adamw|nadam|radam|adamod|lars|lamb", NULL, "optimizer"},
    {"lr", LARCH_T_FLOAT, "0.1", 0, 1e4, NULL, NULL,
     "base learning rate (default per optimizer: sgd 0.1, lars 1, nadam 2e-3, others 1e-3)"},
    {"momentum", LARCH_T_FLOAT, "0.9", 0, 0.999999, NULL, NULL, "sgd, lars: momentum coefficient"},
    {"dampening", LARCH_T_FLOAT, "0", 0, 1, NULL, NULL, "sgd: momentum dampening"},
    {"nesterov", LARCH_T_BOOL, "false", 0, 0, NULL, NULL, "sgd: Nesterov momentum"},
    {"weight_decay", LARCH_T_FLOAT, "0", 0, 10, NULL, NULL,
     "weight decay (default 0; adamw, lamb 0.01); L2 in the gradient or decoupled, see `decoupled`"},
    {"decoupled", LARCH_T_BOOL, "false", 0, 0, NULL, NULL,
     "adam, adamw, nadam, radam, adamod: decoupled weight decay w -= lr*wd*w (default: adamw, adamod true; "
     "others false; lamb always adds wd*w to its update)"},
    {"beta1", LARCH_T_FLOAT, "0.9", 0, 0.999999, NULL, NULL, "adam, adamw, nadam, radam, adamod, lamb: first-moment decay"},
    {"beta2", LARCH_T_FLOAT, "0.999", 0, 0.999999999, NULL, NULL, "adam, adamw, nadam, radam, adamod, lamb: second-moment decay"},
    {"beta3", LARCH_T_FLOAT, "0.999", 0, 0.999999999, NULL, NULL, "adamod: decay of the step-size average"},
    {"eps", LARCH_T_FLOAT, "1e-8", 0, 1, NULL, NULL, "adam, adamw, nadam, radam, adamod, lamb: denominator epsilon (lamb default 1e-6)"},
    {"amsgrad", LARCH_T_BOOL, "false", 0, 0, NULL, NULL, "adam, adamw: AMSGrad (maximum of second moments)"},
    {"bias_correction", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "lamb: bias-correct the moments (Algorithm 2)"},
    {"momentum_decay", LARCH_T_FLOAT, "0.004", 0, 1, NULL, NULL, "nadam: psi of the momentum schedule"},
    {"rho_threshold", LARCH_T_FLOAT, "5", 0, 1e6, NULL, NULL, "radam: rectify while rho_t > this (paper 4)"},
    {"trust_coef", LARCH_T_FLOAT, "0.001", 0, 1e4, NULL, NULL, "lars: trust coefficient eta"},
    {"lars_mode", LARCH_T_ENUM, "scale", 0, 0, "scale|clip", NULL,
     "lars: scale = rate lr * local (the paper); clip = min(local, lr) (apex LARC clip=True)"},
    {"trust_min", LARCH_T_FLOAT, "0", 0, 1e30, NULL, NULL, "lars, lamb: lower clamp of the trust ratio"},
    {"trust_max", LARCH_T_FLOAT, "0", 0, 1e30, NULL, NULL, "lars, lamb: upper clamp of the trust ratio (0 = none)"},
    {"decay_bias_norm", LARCH_T_BOOL, "false", 0, 0, NULL, NULL, "apply weight decay to biases and normalization parameters"},
    {"adapt_bias_norm", LARCH_T_BOOL, "false", 0, 0, NULL, NULL, "lars, lamb: trust ratio also for biases and normalization parameters"},
    {"clip_norm", LARCH_T_FLOAT, "0", 0, 1e30, NULL, NULL, "clip the global gradient norm to this (0 = off)"},
    {"clip_value", LARCH_T_FLOAT, "0", 0, 1e30, NULL, NULL, "clip every gradient value to [-v, v] (0 = off)"},
    {"groups", LARCH_T_ANY, "[]", 0, 0, NULL, NULL,
     "parameter groups: list of {match, roles, lr_mult, wd_mult, adapt, freeze, unfreeze_after_epochs}"},
    {0}};

/* Which optimizers read a key (a key set to a non-default value for another
 * optimizer is reported as ignored by larch_optim_ignored). */
static const struct { const char *key; unsigned mask; } key_use[] = {
    {"momentum", BIT(LARCH_OPT_SGD) | BIT(LARCH_OPT_LARS)},
    {"dampening", BIT(LARCH_OPT_SGD)},
    {"nesterov", BIT(LARCH_OPT_SGD)},
    {"decoupled", ADAMS & ~BIT(LARCH_OPT_LAMB)},
    {"beta1", ADAMS}, {"beta2", ADAMS}, {"eps", ADAMS},
    {"beta3", BIT(LARCH_OPT_ADAMOD)},
    {"amsgrad", BIT(LARCH_OPT_ADAM) | BIT(LARCH_OPT_ADAMW)},
    {"bias_correction", BIT(LARCH_OPT_LAMB)},
    {"momentum_decay", BIT(LARCH_OPT_NADAM)},
    {"rho_threshold", BIT(LARCH_OPT_RADAM)},
    {"trust_coef", BIT(LARCH_OPT_LARS)},
    {"lars_mode", BIT(LARCH_OPT_LARS)},
    {"trust_min", BIT(LARCH_OPT_LARS) | BIT(LARCH_OPT_LAMB)},
    {"trust_max", BIT(LARCH_OPT_LARS) | BIT(LARCH_OPT_LAMB)},
    {"adapt_bias_norm", BIT(LARCH_OPT_LARS) | BIT(LARCH_OPT_LAMB)},
    {NULL, 0}};

/* The defaults that differ between optimizers, as YAML text so that the
 * resolved config shows them as written here; they are the values of
 * larch_optim_defaults_for (tests/test_optim_opts.c checks that both agree). */
static const struct { larch_optim_kind kind; const char *key, *value; } kind_defaults[] = {
    {LARCH_OPT_SGD, "lr", "0.1"},
    {LARCH_OPT_ADAM, "lr", "0.001"},
    {LARCH_OPT_ADAMW, "lr", "0.001"}, {LARCH_OPT_ADAMW, "weight_decay", "0.01"}, {LARCH_OPT_ADAMW, "decoupled", "true"},
    {LARCH_OPT_NADAM, "lr", "0.002"},
    {LARCH_OPT_RADAM, "lr", "0.001"},
    {LARCH_OPT_ADAMOD, "lr", "0.001"}, {LARCH_OPT_ADAMOD, "decoupled", "true"},
    {LARCH_OPT_LARS, "lr", "1"},
    {LARCH_OPT_LAMB, "lr", "0.001"}, {LARCH_OPT_LAMB, "weight_decay", "0.01"}, {LARCH_OPT_LAMB, "eps", "1e-6"},
    {0, NULL, NULL}};

const larch_key larch_optim_group_keys[] = {
    {"match", LARCH_T_STRING, "*", 0, 0, NULL, NULL, "glob on parameter names \"<layer>.<tensor>\""},
    {"roles", LARCH_T_STRINGS, "[weight, bias, norm]", 0, 0, NULL, NULL, "roles the group takes"},
    {"lr_mult", LARCH_T_FLOAT, "1", 0, 1e6, NULL, NULL, "learning-rate multiplier (0 = frozen)"},
    {"wd_mult", LARCH_T_FLOAT, "-1", -1, 1e6, NULL, NULL, "weight-decay multiplier (-1 = by role)"},
    {"adapt", LARCH_T_ENUM, "role", 0, 0, "role|true|false", NULL, "lars, lamb: trust ratio (role = weights only)"},
    {"freeze", LARCH_T_BOOL, "false", 0, 0, NULL, NULL, "no update, no state, no gradient where avoidable"},
    {"unfreeze_after_epochs", LARCH_T_INT, "0", 0, 1000000, NULL, NULL,
     "with freeze: frozen for this many epochs, then trained at lr_mult (0 = frozen for the whole run)"},
    {0}};

static larch_status check_groups(larch_node *groups)
{
    char where[300], path[64];
    if (groups->kind != LARCH_NODE_SEQ)
        return larch_fail(LARCH_ERR_CONFIG, "%s: optim.groups: expected a list of groups ({match: \"conv*\", lr_mult: 0.1})",
                          larch_node_where(groups, where, sizeof where));
    for (int i = 0; i < groups->n; i++) {
        snprintf(path, sizeof path, "optim.groups[%d]", i);
        larch_status s = larch_cfg_check(groups->items[i], path, larch_optim_group_keys, NULL);
        if (s) return s;
        char *roles[8];
        int nr = 0;
        const larch_node *rl = larch_map_get(groups->items[i], "roles");
        for (int r = 0; r < rl->n && nr < 8; r++) roles[nr++] = rl->items[r]->scalar;
        char ex[LARCH_EXCERPT_MAX + 4];
        for (int r = 0; r < nr; r++)
            if (strcmp(roles[r], "weight") && strcmp(roles[r], "bias") && strcmp(roles[r], "norm"))
                return larch_fail(LARCH_ERR_CONFIG, "%s: %s.roles: unknown role '%s' (valid: weight, bias, norm)",
                                  larch_node_where(rl->items[r], where, sizeof where), path, larch_excerpt(roles[r], ex, sizeof ex));
        const larch_node *g = groups->items[i];
        if (larch_cfg_int(g, "unfreeze_after_epochs") > 0 && !larch_cfg_bool(g, "freeze"))
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s.unfreeze_after_epochs: needs freeze: true in the same group",
                              larch_node_where(larch_map_get(g, "unfreeze_after_epochs"), where, sizeof where), path);
        if (larch_cfg_int(g, "unfreeze_after_epochs") > 0 && larch_cfg_float(g, "lr_mult") == 0.0)
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s.lr_mult: 0 would keep the group frozen after unfreeze_after_epochs",
                              larch_node_where(larch_map_get(g, "lr_mult"), where, sizeof where), path);
    }
    return LARCH_OK;
}

larch_status larch_optim_defaults(larch_node *optim)
{
    if (!optim || optim->kind != LARCH_NODE_MAP) return LARCH_OK;       /* the schema check names it */
    const larch_node *nm = larch_map_get(optim, "name");
    int kind = nm && nm->kind == LARCH_NODE_SCALAR ? larch_optim_kind_of(nm->scalar) : nm ? -1 : LARCH_OPT_SGD;
    if (kind < 0) return LARCH_OK;                                      /* the enum check names it */
    for (int d = 0; kind_defaults[d].key; d++)
        if ((int)kind_defaults[d].kind == kind && !larch_map_get(optim, kind_defaults[d].key)) {
            larch_status s = larch_map_set_scalar(optim, kind_defaults[d].key, kind_defaults[d].value);
            if (s) return s;
        }
    larch_node *groups = larch_map_get(optim, "groups");
    return groups ? check_groups(groups) : LARCH_OK;
}

larch_status larch_optim_ignored(const larch_node *optim, larch_warnings *w)
{
    int kind = larch_optim_kind_of(larch_cfg_str(optim, "name"));
    char where[300];
    for (int i = 0; kind >= 0 && i < optim->n; i++)
        for (int u = 0; key_use[u].key; u++)
            if (strcmp(key_use[u].key, optim->keys[i]) == 0 && !(key_use[u].mask & BIT(kind)) &&
                !larch_cfg_is_default(larch_optim_keys, optim->keys[i], optim->items[i])) {
                char users[128] = "";
                for (int k = 0; k < N_KINDS; k++)
                    if (key_use[u].mask & BIT(k)) {
                        if (users[0]) strcat(users, ", ");
                        strcat(users, larch_optim_kind_name((larch_optim_kind)k));
                    }
                larch_status s = larch_warn(w, "%s: optim.%s is ignored: it applies to %s only, and optim.name is '%s'",
                                            larch_key_where(optim, i, where, sizeof where), optim->keys[i], users, larch_optim_kind_name((larch_optim_kind)kind));
                if (s) return s;
            }
    return LARCH_OK;
}


static int role_listed(const larch_node *roles, larch_role role)
{
    static const char *const names[] = {"weight", "bias", "norm"};
    for (int r = 0; r < roles->n; r++)
        if (strcmp(roles->items[r]->scalar, names[role]) == 0) return 1;
    return 0;
}

/* A typed validation failure gets the place of the key it names. */
static larch_status with_place(larch_status s, const larch_node *map, const char *field)
{
    char where[300];
    (void)s;                                   /* from a config: a config error */
    return larch_fail_context(LARCH_ERR_CONFIG, "%s", place(map, field ? field : "", where, sizeof where));
}

larch_status larch_optim_opts_from_cfg(const larch_node *cfg, larch_optim_opts *out)
{
    int kind = larch_optim_kind_of(larch_cfg_str(cfg, "name"));
    if (kind < 0) return larch_fail(LARCH_ERR_CONFIG, "optim.name: unknown optimizer '%s'", larch_cfg_str(cfg, "name"));
    larch_optim_opts o = larch_optim_defaults_for((larch_optim_kind)kind);
    o.lr = larch_cfg_float(cfg, "lr");
    o.momentum = larch_cfg_float(cfg, "momentum");
    o.dampening = larch_cfg_float(cfg, "dampening");
    o.nesterov = larch_cfg_bool(cfg, "nesterov");
    o.weight_decay = larch_cfg_float(cfg, "weight_decay");
    o.decoupled = larch_cfg_bool(cfg, "decoupled");
    o.beta1 = larch_cfg_float(cfg, "beta1");
    o.beta2 = larch_cfg_float(cfg, "beta2");
    o.beta3 = larch_cfg_float(cfg, "beta3");
    o.eps = larch_cfg_float(cfg, "eps");
    o.amsgrad = larch_cfg_bool(cfg, "amsgrad");
    o.bias_correction = larch_cfg_bool(cfg, "bias_correction");
    o.momentum_decay = larch_cfg_float(cfg, "momentum_decay");
    o.rho_threshold = larch_cfg_float(cfg, "rho_threshold");
    o.trust_coef = larch_cfg_float(cfg, "trust_coef");
    o.lars_clip = strcmp(larch_cfg_str(cfg, "lars_mode"), "clip") == 0;
    o.trust_min = larch_cfg_float(cfg, "trust_min");
    o.trust_max = larch_cfg_float(cfg, "trust_max");
    o.decay_bias_norm = larch_cfg_bool(cfg, "decay_bias_norm");
    o.adapt_bias_norm = larch_cfg_bool(cfg, "adapt_bias_norm");
    o.clip_norm = larch_cfg_float(cfg, "clip_norm");
    o.clip_value = larch_cfg_float(cfg, "clip_value");
    const larch_node *groups = larch_map_get(cfg, "groups");
    int n = groups && groups->kind == LARCH_NODE_SEQ ? groups->n : 0;
    larch_param_group *g = NULL;
    if (n > 0 && !(g = larch_calloc((size_t)n, sizeof *g, "optim.groups"))) return LARCH_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        const larch_node *gr = groups->items[i], *roles = larch_map_get(gr, "roles");
        const char *adapt = larch_cfg_str(gr, "adapt");
        g[i] = (larch_param_group)LARCH_PARAM_GROUP_DEFAULTS;
        g[i].match = larch_cfg_str(gr, "match");
        g[i].roles = 0;
        for (int r = LARCH_ROLE_WEIGHT; r <= LARCH_ROLE_NORM; r++)
            if (role_listed(roles, (larch_role)r)) g[i].roles |= LARCH_ROLE_BIT(r);
        g[i].lr_mult = larch_cfg_float(gr, "lr_mult");
        g[i].wd_mult = larch_cfg_float(gr, "wd_mult");
        g[i].adapt = !strcmp(adapt, "role") ? LARCH_ADAPT_ROLE : !strcmp(adapt, "true") ? LARCH_ADAPT_YES : LARCH_ADAPT_NO;
        g[i].freeze = larch_cfg_bool(gr, "freeze");
        g[i].unfreeze_after_epochs = (int)larch_cfg_int(gr, "unfreeze_after_epochs");
    }
    o.groups = g;
    o.n_groups = n;
    const char *field;
    larch_status s = larch_optim_validate(&o, &field);
    if (s) {
        free(g);
        return with_place(s, cfg, field);
    }
    *out = o;
    return LARCH_OK;
}

void larch_optim_opts_release(larch_optim_opts *o)
{
    if (!o) return;
    free((void *)o->groups);
    o->groups = NULL;
    o->n_groups = 0;
}

larch_status larch_optim_create_cfg(larch_optim **out, larch_model *m, const larch_node *cfg)
{
    larch_optim_opts o;
    *out = NULL;
    larch_status s = larch_optim_opts_from_cfg(cfg, &o);
    if (s) return s;
    s = larch_optim_create(out, m, &o);
    larch_optim_opts_release(&o);
    return s == LARCH_ERR_INVALID ? with_place(s, cfg, "groups") : s;
}

/* ---- schedules ---- */

#define N_SCHEDS 8
const larch_key larch_sched_keys[] = {
    {"name", LARCH_T_ENUM, "constant", 0, 0, "constant|step|multistep|exponential|cosine|sgdr|poly|onecycle", NULL,
     "schedule"},
    {"warmup", LARCH_T_ENUM, "linear", 0, 0, "linear|exponential", NULL, "warmup shape"},
    {"warmup_epochs", LARCH_T_FLOAT, "0", 0, 1e6, NULL, NULL, "warmup length in epochs"},
    {"warmup_steps", LARCH_T_INT, "0", 0, 1L << 40, NULL, NULL, "warmup length in steps (overrides warmup_epochs)"},
    {"warmup_start", LARCH_T_FLOAT, "0", 0, 1, NULL, NULL,
     "warmup factor before the first step (exponential: must be > 0, e.g. 0.01)"},
    {"step_epochs", LARCH_T_FLOAT, "30", 1e-6, 1e6, NULL, NULL, "step: decay every this many epochs"},
    {"milestones", LARCH_T_FLOATS, "[]", 0, 1e6, NULL, NULL, "multistep: epochs at which to decay (ascending)"},
    {"gamma", LARCH_T_FLOAT, "0.1", 0, 1, NULL, NULL, "step, multistep: decay factor; exponential: per epoch"},
    {"min_lr", LARCH_T_FLOAT, "0", 0, 1e4, NULL, NULL, "cosine, sgdr, poly: final learning rate"},
    {"power", LARCH_T_FLOAT, "2", 0, 100, NULL, NULL, "poly: exponent (2 as in the LARS paper; 1 = linear)"},
    {"restart_epochs", LARCH_T_FLOAT, "10", 1e-6, 1e6, NULL, NULL, "sgdr: length of the first period (T_0)"},
    {"restart_mult", LARCH_T_FLOAT, "1", 1, 100, NULL, NULL, "sgdr: growth of each period (T_mult)"},
    {"pct_start", LARCH_T_FLOAT, "0.25", 0, 1, NULL, NULL, "onecycle: fraction of the run rising to the peak"},
    {"div", LARCH_T_FLOAT, "25", 1, 1e9, NULL, NULL, "onecycle: the start rate is base / div"},
    {"div_final", LARCH_T_FLOAT, "1e5", 1, 1e12, NULL, NULL, "onecycle: the final rate is base / div_final"},
    {"moms", LARCH_T_FLOATS, "[0.95, 0.85, 0.95]", 0, 0.999999, "off", NULL,
     "onecycle: momentum (or beta1) at start, peak and end, replacing optim.momentum/beta1; "
     "off (or []) = not cycled, the optimizer's own"},
    {0}};

#define S(k) (1u << (k))
/* Which schedules read a key (set to a non-default value for another
 * schedule, it is reported as ignored by larch_sched_ignored). */
static const struct { const char *key; unsigned mask; } sched_use[] = {
    {"step_epochs", S(LARCH_SCHED_STEP)},
    {"milestones", S(LARCH_SCHED_MULTISTEP)},
    {"gamma", S(LARCH_SCHED_STEP) | S(LARCH_SCHED_MULTISTEP) | S(LARCH_SCHED_EXPONENTIAL)},
    {"min_lr", S(LARCH_SCHED_COSINE) | S(LARCH_SCHED_SGDR) | S(LARCH_SCHED_POLY)},
    {"power", S(LARCH_SCHED_POLY)},
    {"restart_epochs", S(LARCH_SCHED_SGDR)}, {"restart_mult", S(LARCH_SCHED_SGDR)},
    {"pct_start", S(LARCH_SCHED_ONECYCLE)}, {"div", S(LARCH_SCHED_ONECYCLE)}, {"div_final", S(LARCH_SCHED_ONECYCLE)},
    {"moms", S(LARCH_SCHED_ONECYCLE)},
    {NULL, 0}};

larch_status larch_sched_opts_from_cfg(const larch_node *cfg, larch_sched_opts *out)
{
    const char *name = larch_cfg_str(cfg, "name");
    int kind = larch_sched_kind_of(name);
    if (kind < 0) return larch_fail(LARCH_ERR_CONFIG, "sched.name: unknown schedule '%s'", name);
    larch_sched_opts o = LARCH_SCHED_DEFAULTS;
    o.kind = (larch_sched_kind)kind;
    o.warmup = strcmp(larch_cfg_str(cfg, "warmup"), "exponential") == 0 ? LARCH_WARMUP_EXPONENTIAL : LARCH_WARMUP_LINEAR;
    o.warmup_epochs = larch_cfg_float(cfg, "warmup_epochs");
    o.warmup_steps = larch_cfg_int(cfg, "warmup_steps");
    o.warmup_start = larch_cfg_float(cfg, "warmup_start");
    o.step_epochs = larch_cfg_float(cfg, "step_epochs");
    o.n_milestones = larch_cfg_floats(cfg, "milestones", o.milestones, LARCH_SCHED_MAX_MILESTONES);  /* -1: too many */
    o.gamma = larch_cfg_float(cfg, "gamma");
    o.min_lr = larch_cfg_float(cfg, "min_lr");
    o.power = larch_cfg_float(cfg, "power");
    o.restart_epochs = larch_cfg_float(cfg, "restart_epochs");
    o.restart_mult = larch_cfg_float(cfg, "restart_mult");
    o.pct_start = larch_cfg_float(cfg, "pct_start");
    o.div = larch_cfg_float(cfg, "div");
    o.div_final = larch_cfg_float(cfg, "div_final");
    const larch_node *mn = larch_map_get(cfg, "moms");
    double moms[4];
    int nm = !mn || mn->kind == LARCH_NODE_SCALAR ? 0 : larch_cfg_floats(cfg, "moms", moms, 4);   /* off: 0 */
    o.n_moms = nm;                                 /* anything but 0 or 3 fails validation */
    for (int i = 0; i < 3 && i < nm; i++) o.moms[i] = moms[i];
    const char *field;
    larch_status s = larch_sched_validate(&o, &field);
    if (s) return with_place(s, cfg, field);
    *out = o;
    return LARCH_OK;
}

larch_status larch_sched_check(const larch_node *cfg)
{
    larch_sched_opts o;
    return larch_sched_opts_from_cfg(cfg, &o);
}

larch_status larch_sched_ignored(const larch_node *cfg, larch_warnings *w)
{
    char where[300];
    int kind = larch_sched_kind_of(larch_cfg_str(cfg, "name"));
    long warm_steps = larch_cfg_int(cfg, "warmup_steps");
    int warm = larch_cfg_float(cfg, "warmup_epochs") > 0.0 || warm_steps > 0;
    for (int i = 0; i < cfg->n; i++) {
        const char *key = cfg->keys[i], *why = NULL;
        char buf[160];
        if (larch_cfg_is_default(larch_sched_keys, key, cfg->items[i])) continue;
        for (int u = 0; sched_use[u].key; u++)
            if (strcmp(sched_use[u].key, key) == 0 && !(sched_use[u].mask & S(kind))) {
                char users[96] = "";
                for (int k = 0; k < N_SCHEDS; k++)
                    if (sched_use[u].mask & S(k)) {
                        if (users[0]) strcat(users, ", ");
                        strcat(users, larch_sched_kind_name((larch_sched_kind)k));
                    }
                snprintf(buf, sizeof buf, "it applies to %s only, and sched.name is '%s'", users, larch_sched_kind_name((larch_sched_kind)kind));
                why = buf;
            }
        if (!why && (!strcmp(key, "warmup") || !strcmp(key, "warmup_start")) && !warm)
            why = "there is no warmup (sched.warmup_epochs and sched.warmup_steps are 0)";
        if (!why && !strcmp(key, "warmup_epochs") && warm_steps > 0) why = "sched.warmup_steps overrides it";
        if (why) {
            larch_status s = larch_warn(w, "%s: sched.%s is ignored: %s", place(cfg, key, where, sizeof where), key, why);
            if (s) return s;
        }
    }
    return LARCH_OK;
}
