/* optimizer.c - the `optim` config section, parameter groups, gradient
 * clipping, optimizer state and the dispatch to the update rules
 * (sgd.c, adam.c, lars.c, lamb.c). docs/optimizers.md is the user's view.
 */
#include "optim/optim_internal.h"
#include "nn/model_internal.h"   /* the model's layout (library-internal) */
#include "core/dispatch.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALL 0xff
#define BIT(k) (1u << (k))
#define ADAMS (BIT(LARCH_OPT_ADAM) | BIT(LARCH_OPT_ADAMW) | BIT(LARCH_OPT_NADAM) | BIT(LARCH_OPT_RADAM) | \
               BIT(LARCH_OPT_ADAMOD) | BIT(LARCH_OPT_LAMB))

static const char *const kind_names[] = {"sgd", "adam", "adamw", "nadam", "radam", "adamod", "lars", "lamb"};

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

/* The papers' (or the reference implementations') defaults that differ. */
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

static int kind_of(const char *name)
{
    for (int k = 0; k < (int)(sizeof kind_names / sizeof *kind_names); k++)
        if (strcmp(kind_names[k], name) == 0) return k;
    return -1;
}

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
    int kind = nm && nm->kind == LARCH_NODE_SCALAR ? kind_of(nm->scalar) : nm ? -1 : LARCH_OPT_SGD;
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
    int kind = kind_of(larch_cfg_str(optim, "name"));
    char where[300];
    for (int i = 0; kind >= 0 && i < optim->n; i++)
        for (int u = 0; key_use[u].key; u++)
            if (strcmp(key_use[u].key, optim->keys[i]) == 0 && !(key_use[u].mask & BIT(kind)) &&
                !larch_cfg_is_default(larch_optim_keys, optim->keys[i], optim->items[i])) {
                char users[128] = "";
                for (int k = 0; k < (int)(sizeof kind_names / sizeof *kind_names); k++)
                    if (key_use[u].mask & BIT(k)) {
                        if (users[0]) strcat(users, ", ");
                        strcat(users, kind_names[k]);
                    }
                larch_status s = larch_warn(w, "%s: optim.%s is ignored: it applies to %s only, and optim.name is '%s'",
                                            larch_key_where(optim, i, where, sizeof where), optim->keys[i], users, kind_names[kind]);
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

/* lr_mult, wd_mult and adapt of every parameter: roles first, then each
 * group in order (later groups override earlier ones). */
static larch_status assign_groups(larch_model *m, const larch_node *cfg)
{
    int decay_all = larch_cfg_bool(cfg, "decay_bias_norm"), adapt_all = larch_cfg_bool(cfg, "adapt_bias_norm");
    for (int i = 0; i < m->n_params; i++) {
        larch_param *p = &m->params[i];
        p->lr_mult = 1.0f;
        p->thaw_epoch = 0;
        p->thaw_lr_mult = 0.0f;
        p->wd_mult = p->role == LARCH_ROLE_WEIGHT || decay_all ? 1.0f : 0.0f;
        p->adapt = p->role == LARCH_ROLE_WEIGHT || adapt_all;
    }
    const larch_node *groups = larch_map_get(cfg, "groups");
    for (int g = 0; groups && groups->kind == LARCH_NODE_SEQ && g < groups->n; g++) {
        const larch_node *gr = groups->items[g];
        const char *pat = larch_cfg_str(gr, "match"), *adapt = larch_cfg_str(gr, "adapt");
        const larch_node *roles = larch_map_get(gr, "roles");
        double lr_mult = larch_cfg_float(gr, "lr_mult"), wd_mult = larch_cfg_float(gr, "wd_mult");
        int freeze = larch_cfg_bool(gr, "freeze"), hits = 0, thaw = (int)larch_cfg_int(gr, "unfreeze_after_epochs");
        for (int i = 0; i < m->n_params; i++) {
            larch_param *p = &m->params[i];
            if (fnmatch(pat, p->name, 0) != 0 || !role_listed(roles, p->role)) continue;
            hits++;
            p->lr_mult = freeze ? 0.0f : (float)lr_mult;
            p->thaw_epoch = freeze ? thaw : 0;
            p->thaw_lr_mult = freeze && thaw > 0 ? (float)lr_mult : 0.0f;
            if (wd_mult >= 0.0) p->wd_mult = (float)wd_mult;
            else p->wd_mult = p->role == LARCH_ROLE_WEIGHT || decay_all ? 1.0f : 0.0f;
            if (strcmp(adapt, "role") != 0) p->adapt = strcmp(adapt, "true") == 0;
        }
        if (!hits) {
            char where[300], ex[LARCH_EXCERPT_MAX + 4];
            return larch_fail(LARCH_ERR_CONFIG, "%s: optim.groups[%d].match: '%s' matches no parameter (names are like '%s')",
                              larch_node_where(gr, where, sizeof where), g, larch_excerpt(pat, ex, sizeof ex),
                              m->n_params ? m->params[0].name : "fc1.weight");
        }
    }
    return LARCH_OK;
}

static int n_state_of(const larch_optim *o)
{
    switch (o->kind) {
    case LARCH_OPT_SGD: return o->momentum > 0.0f ? 1 : 0;
    case LARCH_OPT_LARS: return 1;
    case LARCH_OPT_ADAM: case LARCH_OPT_ADAMW: return o->amsgrad ? 3 : 2;
    case LARCH_OPT_ADAMOD: return 3;
    default: return 2;
    }
}

larch_status larch_optim_create(larch_optim **out, larch_model *m, const larch_node *cfg)
{
    return larch_optim_create_shard(out, m, cfg, 0, m ? m->n_floats : 0);
}

/* The part [a, z) of parameter i inside the optimizer's range (a == z: none). */
static void own_part(const larch_optim *o, const larch_param *p, size_t *a, size_t *z)
{
    *a = p->offset > o->lo ? p->offset : o->lo;
    *z = p->offset + p->size < o->hi ? p->offset + p->size : o->hi;
    if (*z < *a || !larch_param_has_state(p)) *z = *a;
}

int larch_optim_thaw(larch_model *m, long epoch)
{
    int n = 0;
    for (int i = 0; i < m->n_params; i++) {
        larch_param *p = &m->params[i];
        if (p->thaw_epoch > 0 && epoch >= p->thaw_epoch && p->lr_mult == 0.0f) {
            p->lr_mult = p->thaw_lr_mult;
            n++;
        }
    }
    return n;
}

larch_status larch_optim_create_shard(larch_optim **out, larch_model *m, const larch_node *cfg, size_t lo, size_t hi)
{
    *out = NULL;
    int kind = kind_of(larch_cfg_str(cfg, "name"));
    if (kind < 0) return larch_fail(LARCH_ERR_CONFIG, "optim.name: unknown optimizer '%s'", larch_cfg_str(cfg, "name"));
    larch_optim *o = larch_calloc(1, sizeof *o, "optimizer");
    if (!o) return LARCH_ERR_NOMEM;
    o->kind = (larch_optim_kind)kind;
    o->name = kind_names[kind];
    o->model = m;
    o->momentum = (float)larch_cfg_float(cfg, "momentum");
    o->dampening = (float)larch_cfg_float(cfg, "dampening");
    o->nesterov = larch_cfg_bool(cfg, "nesterov");
    o->weight_decay = (float)larch_cfg_float(cfg, "weight_decay");
    o->decoupled = o->kind == LARCH_OPT_LAMB || larch_cfg_bool(cfg, "decoupled");
    o->beta1 = (float)larch_cfg_float(cfg, "beta1");
    o->beta2 = (float)larch_cfg_float(cfg, "beta2");
    o->beta3 = (float)larch_cfg_float(cfg, "beta3");
    o->eps = (float)larch_cfg_float(cfg, "eps");
    o->amsgrad = larch_cfg_bool(cfg, "amsgrad");
    o->bias_correction = larch_cfg_bool(cfg, "bias_correction");
    o->momentum_decay = (float)larch_cfg_float(cfg, "momentum_decay");
    o->rho_threshold = (float)larch_cfg_float(cfg, "rho_threshold");
    o->trust_coef = (float)larch_cfg_float(cfg, "trust_coef");
    o->lars_clip = strcmp(larch_cfg_str(cfg, "lars_mode"), "clip") == 0;
    o->trust_min = (float)larch_cfg_float(cfg, "trust_min");
    o->trust_max = (float)larch_cfg_float(cfg, "trust_max");
    o->clip_norm = (float)larch_cfg_float(cfg, "clip_norm");
    o->clip_value = (float)larch_cfg_float(cfg, "clip_value");
    o->lo = lo;
    o->hi = hi;
    larch_status s = LARCH_OK;
    if (o->kind == LARCH_OPT_SGD && o->nesterov && (o->momentum <= 0.0f || o->dampening != 0.0f))
        s = larch_fail(LARCH_ERR_CONFIG, "optim.nesterov: Nesterov momentum needs momentum > 0 and dampening = 0");
    else if (o->trust_max > 0.0f && o->trust_max < o->trust_min)
        s = larch_fail(LARCH_ERR_CONFIG, "optim.trust_max: %g is below optim.trust_min %g", o->trust_max, o->trust_min);
    if (!s && m) s = assign_groups(m, cfg);
    if (s) { free(o); return s; }
    /* state: one float per trainable value, frozen tensors get none */
    o->state_offset = larch_calloc(m->n_params ? (size_t)m->n_params : 1, sizeof *o->state_offset, "optimizer");
    if (!o->state_offset) { free(o); return LARCH_ERR_NOMEM; }
    o->norms = larch_calloc(2 * (size_t)(m->n_params ? m->n_params : 1), sizeof *o->norms, "optimizer");
    o->tensor_t = larch_calloc(m->n_params ? (size_t)m->n_params : 1, sizeof *o->tensor_t, "optimizer");
    o->tensor_mu_product = larch_calloc(m->n_params ? (size_t)m->n_params : 1, sizeof *o->tensor_mu_product, "optimizer");
    if (!o->norms || !o->tensor_t || !o->tensor_mu_product) { larch_optim_free(o); return LARCH_ERR_NOMEM; }
    for (int i = 0; i < m->n_params; i++) o->tensor_mu_product[i] = 1.0;
    for (int i = 0; i < m->n_params; i++) {
        size_t a, z;
        own_part(o, &m->params[i], &a, &z);
        if (a == z) { o->state_offset[i] = (size_t)-1; continue; }
        o->state_offset[i] = o->n_state_floats;          /* state of value a */
        o->n_state_floats += z - a;
    }
    static const char *const names_sgd[] = {"momentum"};
    static const char *const names_adam[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
    static const char *const names_adamod[] = {"exp_avg", "exp_avg_sq", "exp_avg_lr"};
    o->n_state = n_state_of(o);
    for (int k = 0; k < o->n_state; k++) {
        o->state_names[k] = o->kind == LARCH_OPT_SGD || o->kind == LARCH_OPT_LARS ? names_sgd[k]
                          : o->kind == LARCH_OPT_ADAMOD ? names_adamod[k] : names_adam[k];
        o->state[k] = larch_aligned_alloc((o->n_state_floats ? o->n_state_floats : 1) * sizeof(float), "optimizer state");
        if (!o->state[k]) { larch_optim_free(o); return LARCH_ERR_NOMEM; }
        memset(o->state[k], 0, (o->n_state_floats ? o->n_state_floats : 1) * sizeof(float));
    }
    *out = o;
    return LARCH_OK;
}

void larch_optim_free(larch_optim *o)
{
    if (!o) return;
    for (int k = 0; k < o->n_state; k++) free(o->state[k]);
    free(o->state_offset);
    free(o->norms);
    free(o->tensor_t);
    free(o->tensor_mu_product);
    free(o);
}

void larch_optim_set_momentum(larch_optim *o, float momentum)
{
    if (o->kind == LARCH_OPT_SGD || o->kind == LARCH_OPT_LARS) o->momentum = momentum;
    else o->beta1 = momentum;
}

/* Clipping by value, then by global norm (over trainable tensors). */
static void clip_gradients(larch_optim *o)
{
    larch_model *m = o->model;
    double sq = 0.0;
    for (int i = 0; i < m->n_params; i++) {
        size_t a, z;
        own_part(o, &m->params[i], &a, &z);
        if (m->params[i].lr_mult == 0.0f) z = a;       /* frozen until a later epoch */
        float *g = m->grad + a;
        if (o->clip_value > 0.0f) {
            float c = o->clip_value;
            for (size_t j = 0; j < z - a; j++) g[j] = g[j] > c ? c : g[j] < -c ? -c : g[j];
        }
        sq += larch_sumsq(g, z - a);
    }
    if (o->sum_hooks && o->sum_hooks->allreduce_sum)   /* sharded: the other ranks hold the other slices */
        o->sum_hooks->allreduce_sum(o->sum_hooks->ctx, &sq, 1);
    o->last_grad_norm = sqrt(sq);
    if (o->clip_norm > 0.0f && o->last_grad_norm > o->clip_norm) {
        float scale = (float)(o->clip_norm / (o->last_grad_norm + 1e-6));   /* as torch's clip_grad_norm_ */
        for (int i = 0; i < m->n_params; i++) {
            size_t a, z;
            own_part(o, &m->params[i], &a, &z);
            if (m->params[i].lr_mult == 0.0f) z = a;
            float *g = m->grad + a;
            for (size_t j = 0; j < z - a; j++) g[j] *= scale;
        }
    }
}

LARCH_HOT double larch_sumsq(const float *x, size_t n)
{
    double acc[8] = {0}, s = 0.0;                      /* independent lanes vectorize without reassociation */
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += (double)x[i + k] * x[i + k];
    for (; i < n; i++) s += (double)x[i] * x[i];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

/* NAdam's momentum schedule mu_t (PyTorch's). */
static double nadam_mu(const larch_optim *o, long t)
{
    return o->beta1 * (1.0 - 0.5 * pow(0.96, (double)t * o->momentum_decay));
}

void larch_optim_step(larch_optim *o, float lr)
{
    larch_model *m = o->model;
    if (o->clip_value > 0.0f || o->clip_norm > 0.0f) clip_gradients(o);
    /* every tensor trained now takes its next step, on every rank whether
     * or not its state is here (the counters are replicated); frozen ones,
     * until a thaw or for good, do not count */
    for (int i = 0; i < m->n_params; i++) {
        if (m->params[i].lr_mult == 0.0f) continue;
        long t = ++o->tensor_t[i];
        if (o->kind == LARCH_OPT_NADAM) o->tensor_mu_product[i] *= nadam_mu(o, t);
    }
    optim_step_ctx c = {o, lr};
    const int layerwise = o->kind == LARCH_OPT_LARS || o->kind == LARCH_OPT_LAMB;
    for (int pass = layerwise ? 0 : 1; pass < 2; pass++) {
        /* LARS/LAMB: pass 0 gathers each tensor's squared norms over this
         * range (summed over the ranks when sharded), pass 1 updates */
        if (pass == 1 && layerwise && o->sum_hooks && o->sum_hooks->allreduce_sum)
            o->sum_hooks->allreduce_sum(o->sum_hooks->ctx, o->norms, 2 * m->n_params);
        for (int i = 0; i < m->n_params; i++) {
            const larch_param *p = &m->params[i];
            size_t a, z;
            own_part(o, p, &a, &z);
            if (pass == 0) { o->norms[2 * i] = o->norms[2 * i + 1] = 0.0; }
            if (a == z || p->lr_mult == 0.0f) continue; /* frozen, or another rank's */
            optim_tensor v = {m->param + a, m->grad + a, {NULL, NULL, NULL, NULL}, z - a,
                              lr * p->lr_mult, o->weight_decay * p->wd_mult, p->adapt, o->norms + 2 * i,
                              o->tensor_t[i], 1.0, 1.0, o->tensor_mu_product[i]};
            if (o->kind == LARCH_OPT_NADAM) { v.mu_t = nadam_mu(o, v.t); v.mu_next = nadam_mu(o, v.t + 1); }
            for (int k = 0; k < o->n_state; k++) v.s[k] = o->state[k] + o->state_offset[i];
            switch (o->kind) {
            case LARCH_OPT_SGD: larch_sgd_update(&c, &v); break;
            case LARCH_OPT_LARS: if (pass == 0) larch_lars_norms(&c, &v); else larch_lars_update(&c, &v); break;
            case LARCH_OPT_LAMB: if (pass == 0) larch_lamb_norms(&c, &v); else larch_lamb_update(&c, &v); break;
            default: larch_adam_update(&c, &v); break;
            }
        }
    }
    o->t++;
}
