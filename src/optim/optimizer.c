/* optimizer.c - the typed optimizer options (defaults, validation),
 * parameter groups, gradient clipping, optimizer state and the dispatch to
 * the update rules (sgd.c, adam.c, lars.c, lamb.c). The `optim` config
 * section is parsed into the same options by src/train/optim_cfg.c.
 * docs/optimizers.md is the user's view.
 */
#include "optim/optim_internal.h"
#include "nn/model_internal.h"   /* the model's layout (library-internal) */
#include "core/dispatch.h"

#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"sgd", "adam", "adamw", "nadam", "radam", "adamod", "lars", "lamb"};
#define N_KINDS ((int)(sizeof kind_names / sizeof *kind_names))

const char *larch_optim_kind_name(larch_optim_kind kind)
{
    return (int)kind >= 0 && (int)kind < N_KINDS ? kind_names[kind] : NULL;
}

int larch_optim_kind_of(const char *name)
{
    for (int k = 0; name && k < N_KINDS; k++)
        if (strcmp(kind_names[k], name) == 0) return k;
    return -1;
}

larch_optim_opts larch_optim_defaults_for(larch_optim_kind kind)
{
    larch_optim_opts o = {
        .kind = kind, .lr = 1e-3, .momentum = 0.9, .dampening = 0.0, .nesterov = 0, .weight_decay = 0.0,
        .decoupled = 0, .beta1 = 0.9, .beta2 = 0.999, .beta3 = 0.999, .eps = 1e-8, .amsgrad = 0,
        .bias_correction = 1, .momentum_decay = 0.004, .rho_threshold = 5.0, .trust_coef = 0.001, .lars_clip = 0,
        .trust_min = 0.0, .trust_max = 0.0, .decay_bias_norm = 0, .adapt_bias_norm = 0, .clip_norm = 0.0,
        .clip_value = 0.0, .groups = NULL, .n_groups = 0};
    switch (kind) {                          /* the papers' (or reference implementations') values */
    case LARCH_OPT_SGD: o.lr = 0.1; break;
    case LARCH_OPT_NADAM: o.lr = 2e-3; break;
    case LARCH_OPT_ADAMW: o.weight_decay = 0.01; o.decoupled = 1; break;
    case LARCH_OPT_ADAMOD: o.decoupled = 1; break;
    case LARCH_OPT_LARS: o.lr = 1.0; break;
    case LARCH_OPT_LAMB: o.weight_decay = 0.01; o.eps = 1e-6; break;
    default: break;
    }
    return o;
}

static larch_status out_of_range(const char **field, const char *name, double v, double lo, double hi)
{
    if (field) *field = name;
    return larch_fail(LARCH_ERR_INVALID, "optim.%s = %g is out of range [%g, %g]", name, v, lo, hi);
}

larch_status larch_optim_validate(const larch_optim_opts *o, const char **field)
{
    if (field) *field = NULL;
    if (!larch_optim_kind_name(o->kind)) {
        if (field) *field = "name";
        return larch_fail(LARCH_ERR_INVALID, "optim.name: unknown optimizer kind %d (valid: 0 sgd .. %d lamb)",
                          (int)o->kind, N_KINDS - 1);
    }
    const struct { const char *name; double v, lo, hi; } ranges[] = {
        {"lr", o->lr, 0, 1e4}, {"momentum", o->momentum, 0, 0.999999}, {"dampening", o->dampening, 0, 1},
        {"weight_decay", o->weight_decay, 0, 10}, {"beta1", o->beta1, 0, 0.999999},
        {"beta2", o->beta2, 0, 0.999999999}, {"beta3", o->beta3, 0, 0.999999999}, {"eps", o->eps, 0, 1},
        {"momentum_decay", o->momentum_decay, 0, 1}, {"rho_threshold", o->rho_threshold, 0, 1e6},
        {"trust_coef", o->trust_coef, 0, 1e4}, {"trust_min", o->trust_min, 0, 1e30},
        {"trust_max", o->trust_max, 0, 1e30}, {"clip_norm", o->clip_norm, 0, 1e30},
        {"clip_value", o->clip_value, 0, 1e30}};
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++)
        if (!(ranges[i].v >= ranges[i].lo && ranges[i].v <= ranges[i].hi))      /* NaN fails too */
            return out_of_range(field, ranges[i].name, ranges[i].v, ranges[i].lo, ranges[i].hi);
    if (o->kind == LARCH_OPT_SGD && o->nesterov && (o->momentum <= 0.0 || o->dampening != 0.0)) {
        if (field) *field = "nesterov";
        return larch_fail(LARCH_ERR_INVALID, "optim.nesterov: Nesterov momentum needs momentum > 0 and dampening = 0");
    }
    if (o->trust_max > 0.0 && o->trust_max < o->trust_min) {
        if (field) *field = "trust_max";
        return larch_fail(LARCH_ERR_INVALID, "optim.trust_max: %g is below optim.trust_min %g", o->trust_max, o->trust_min);
    }
    if (o->n_groups < 0 || (o->n_groups > 0 && !o->groups)) {
        if (field) *field = "groups";
        return larch_fail(LARCH_ERR_INVALID, "optim.groups: %d group(s) but no array", o->n_groups);
    }
    for (int i = 0; i < o->n_groups; i++) {
        const larch_param_group *g = &o->groups[i];
        const char *bad = NULL;
        double v = 0, lo = 0, hi = 0;
        if (!(g->lr_mult >= 0.0 && g->lr_mult <= 1e6)) bad = "lr_mult", v = g->lr_mult, lo = 0, hi = 1e6;
        else if (!(g->wd_mult >= -1.0 && g->wd_mult <= 1e6)) bad = "wd_mult", v = g->wd_mult, lo = -1, hi = 1e6;
        else if (g->unfreeze_after_epochs < 0 || g->unfreeze_after_epochs > 1000000)
            bad = "unfreeze_after_epochs", v = g->unfreeze_after_epochs, lo = 0, hi = 1e6;
        if (field) *field = "groups";
        if (bad)
            return larch_fail(LARCH_ERR_INVALID, "optim.groups[%d].%s = %g is out of range [%g, %g]", i, bad, v, lo, hi);
        if (g->roles & ~LARCH_ROLES_ALL)
            return larch_fail(LARCH_ERR_INVALID, "optim.groups[%d].roles: 0x%x has bits beyond LARCH_ROLES_ALL", i, g->roles);
        if ((int)g->adapt < LARCH_ADAPT_ROLE || (int)g->adapt > LARCH_ADAPT_NO)
            return larch_fail(LARCH_ERR_INVALID, "optim.groups[%d].adapt: %d is not a larch_adapt", i, (int)g->adapt);
        if (g->unfreeze_after_epochs > 0 && !g->freeze)
            return larch_fail(LARCH_ERR_INVALID, "optim.groups[%d].unfreeze_after_epochs: needs freeze: true in the same group", i);
        if (g->unfreeze_after_epochs > 0 && g->lr_mult == 0.0)
            return larch_fail(LARCH_ERR_INVALID, "optim.groups[%d].lr_mult: 0 would keep the group frozen after "
                              "unfreeze_after_epochs", i);
        if (field) *field = NULL;
    }
    return LARCH_OK;
}

/* lr_mult, wd_mult and adapt of every parameter: roles first, then each
 * group in order (later groups override earlier ones). */
static larch_status assign_groups(larch_model *m, const larch_optim_opts *opts)
{
    int decay_all = opts->decay_bias_norm, adapt_all = opts->adapt_bias_norm;
    for (int i = 0; i < m->n_params; i++) {
        larch_param *p = &m->params[i];
        p->lr_mult = 1.0f;
        p->thaw_epoch = 0;
        p->thaw_lr_mult = 0.0f;
        p->wd_mult = p->role == LARCH_ROLE_WEIGHT || decay_all ? 1.0f : 0.0f;
        p->adapt = p->role == LARCH_ROLE_WEIGHT || adapt_all;
    }
    for (int g = 0; g < opts->n_groups; g++) {
        const larch_param_group *gr = &opts->groups[g];
        const char *pat = gr->match ? gr->match : "*";
        int hits = 0, thaw = gr->unfreeze_after_epochs;
        for (int i = 0; i < m->n_params; i++) {
            larch_param *p = &m->params[i];
            if (fnmatch(pat, p->name, 0) != 0 || !(gr->roles & LARCH_ROLE_BIT(p->role))) continue;
            hits++;
            p->lr_mult = gr->freeze ? 0.0f : (float)gr->lr_mult;
            p->thaw_epoch = gr->freeze ? thaw : 0;
            p->thaw_lr_mult = gr->freeze && thaw > 0 ? (float)gr->lr_mult : 0.0f;
            if (gr->wd_mult >= 0.0) p->wd_mult = (float)gr->wd_mult;
            else p->wd_mult = p->role == LARCH_ROLE_WEIGHT || decay_all ? 1.0f : 0.0f;
            if (gr->adapt != LARCH_ADAPT_ROLE) p->adapt = gr->adapt == LARCH_ADAPT_YES;
        }
        if (!hits) {
            char ex[LARCH_EXCERPT_MAX + 4];
            return larch_fail(LARCH_ERR_INVALID, "optim.groups[%d].match: '%s' matches no parameter (names are like '%s')",
                              g, larch_excerpt(pat, ex, sizeof ex), m->n_params ? m->params[0].name : "fc1.weight");
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

larch_status larch_optim_create(larch_optim **out, larch_model *m, const larch_optim_opts *opts)
{
    return larch_optim_create_shard(out, m, opts, 0, m ? m->n_floats : 0);
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

larch_status larch_optim_create_shard(larch_optim **out, larch_model *m, const larch_optim_opts *opts, size_t lo, size_t hi)
{
    *out = NULL;
    if (!m) return larch_fail(LARCH_ERR_INVALID, "optimizer: no model");
    larch_status s = larch_optim_validate(opts, NULL);
    if (s) return s;
    if (lo > hi || hi > m->n_floats)
        return larch_fail(LARCH_ERR_INVALID, "optimizer: range [%zu, %zu) is not within the model's %zu values", lo, hi,
                          m->n_floats);
    larch_optim *o = larch_calloc(1, sizeof *o, "optimizer");
    if (!o) return LARCH_ERR_NOMEM;
    o->kind = opts->kind;
    o->name = kind_names[opts->kind];
    o->model = m;
    o->momentum = (float)opts->momentum;
    o->dampening = (float)opts->dampening;
    o->nesterov = opts->nesterov != 0;
    o->weight_decay = (float)opts->weight_decay;
    o->decoupled = o->kind == LARCH_OPT_LAMB || opts->decoupled;
    o->beta1 = (float)opts->beta1;
    o->beta2 = (float)opts->beta2;
    o->beta3 = (float)opts->beta3;
    o->eps = (float)opts->eps;
    o->amsgrad = opts->amsgrad != 0;
    o->bias_correction = opts->bias_correction != 0;
    o->momentum_decay = (float)opts->momentum_decay;
    o->rho_threshold = (float)opts->rho_threshold;
    o->trust_coef = (float)opts->trust_coef;
    o->lars_clip = opts->lars_clip != 0;
    o->trust_min = (float)opts->trust_min;
    o->trust_max = (float)opts->trust_max;
    o->clip_norm = (float)opts->clip_norm;
    o->clip_value = (float)opts->clip_value;
    o->lo = lo;
    o->hi = hi;
    if ((s = assign_groups(m, opts))) { free(o); return s; }
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
