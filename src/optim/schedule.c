/* schedule.c - learning-rate schedules with linear or exponential warmup.
 * t is the 0-based optimizer step, T the steps of the run, W the warmup
 * steps, e = t / steps_per_epoch the fractional epoch.
 *   warmup (t < W):   linear       f = s + (1 - s) (t + 1) / W
 *                     exponential  f = s^(1 - (t + 1) / W)      (s = warmup_start)
 *   constant:   base
 *   step:       base gamma^floor(e / step_epochs)
 *   multistep:  base gamma^(number of milestones <= e)
 *   exponential base gamma^e
 *   cosine:     min + (base - min) (1 + cos(pi p)) / 2,   p = (t - W) / (T - W)
 *   sgdr:       cosine within restart periods of restart_epochs, each
 *               restart_mult times longer than the previous one (after warmup)
 *   poly:       min + (base - min) (1 - p)^power
 *   onecycle:   fastai's fit_one_cycle: cosine from base/div up to base over
 *               the first pct_start of the run, then cosine down to
 *               base/div_final; momentum cosine moms[0] -> moms[1] -> moms[2]
 *               (moms: off leaves the optimizer's momentum or beta1 alone)
 * The warmup factor multiplies the schedule's rate; step, multistep and
 * exponential count epochs from the start of training, the others measure
 * their progress after the warmup (one-cycle has its own warm phase and
 * takes no warmup). A run shorter than its warmup (a short test with
 * train.max_steps) ends inside the warmup.
 */
#include "larch/optim.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { SCHED_CONSTANT, SCHED_STEP, SCHED_MULTISTEP, SCHED_EXPONENTIAL, SCHED_COSINE, SCHED_SGDR,
       SCHED_POLY, SCHED_ONECYCLE };
static const char *const sched_names[] = {"constant", "step", "multistep", "exponential", "cosine", "sgdr",
                                          "poly", "onecycle"};

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
    {"step_epochs", S(SCHED_STEP)},
    {"milestones", S(SCHED_MULTISTEP)},
    {"gamma", S(SCHED_STEP) | S(SCHED_MULTISTEP) | S(SCHED_EXPONENTIAL)},
    {"min_lr", S(SCHED_COSINE) | S(SCHED_SGDR) | S(SCHED_POLY)},
    {"power", S(SCHED_POLY)},
    {"restart_epochs", S(SCHED_SGDR)}, {"restart_mult", S(SCHED_SGDR)},
    {"pct_start", S(SCHED_ONECYCLE)}, {"div", S(SCHED_ONECYCLE)}, {"div_final", S(SCHED_ONECYCLE)},
    {"moms", S(SCHED_ONECYCLE)},
    {NULL, 0}};

static int sched_kind(const larch_node *cfg)
{
    const char *name = larch_cfg_str(cfg, "name");
    for (int k = 0; k < (int)(sizeof sched_names / sizeof *sched_names); k++)
        if (strcmp(name, sched_names[k]) == 0) return k;
    return SCHED_CONSTANT;
}

static const char *place(const larch_node *cfg, const char *key, char *buf, size_t len)
{
    for (int i = 0; i < cfg->n; i++)
        if (strcmp(cfg->keys[i], key) == 0) return larch_key_where(cfg, i, buf, len);
    return larch_node_where(cfg, buf, len);
}

larch_status larch_sched_check(const larch_node *cfg)
{
    char where[300];
    double ms[17];
    int n = larch_cfg_floats(cfg, "milestones", ms, 16);
    if (n < 0) return larch_fail(LARCH_ERR_CONFIG, "%s: sched.milestones: at most 16 milestones",
                                 place(cfg, "milestones", where, sizeof where));
    for (int i = 1; i < n; i++)
        if (ms[i] < ms[i - 1])
            return larch_fail(LARCH_ERR_CONFIG, "%s: sched.milestones: must be ascending (%g comes after %g)",
                              place(cfg, "milestones", where, sizeof where), ms[i], ms[i - 1]);
    int warm = larch_cfg_float(cfg, "warmup_epochs") > 0.0 || larch_cfg_int(cfg, "warmup_steps") > 0;
    const char *wkey = larch_cfg_int(cfg, "warmup_steps") > 0 ? "warmup_steps" : "warmup_epochs";
    if (warm && sched_kind(cfg) == SCHED_ONECYCLE)
        return larch_fail(LARCH_ERR_CONFIG, "%s: sched.%s: onecycle has its own warm phase (sched.pct_start); "
                          "set the warmup to 0", place(cfg, wkey, where, sizeof where), wkey);
    if (warm && strcmp(larch_cfg_str(cfg, "warmup"), "exponential") == 0 && larch_cfg_float(cfg, "warmup_start") <= 0.0)
        return larch_fail(LARCH_ERR_CONFIG, "%s: sched.warmup_start: exponential warmup needs a start factor > 0 (e.g. 0.01)",
                          place(cfg, "warmup_start", where, sizeof where));
    return LARCH_OK;
}

larch_status larch_sched_ignored(const larch_node *cfg, larch_warnings *w)
{
    char where[300];
    int kind = sched_kind(cfg);
    long warm_steps = larch_cfg_int(cfg, "warmup_steps");
    int warm = larch_cfg_float(cfg, "warmup_epochs") > 0.0 || warm_steps > 0;
    for (int i = 0; i < cfg->n; i++) {
        const char *key = cfg->keys[i], *why = NULL;
        char buf[160];
        if (larch_cfg_is_default(larch_sched_keys, key, cfg->items[i])) continue;
        for (int u = 0; sched_use[u].key; u++)
            if (strcmp(sched_use[u].key, key) == 0 && !(sched_use[u].mask & S(kind))) {
                char users[96] = "";
                for (int k = 0; k < (int)(sizeof sched_names / sizeof *sched_names); k++)
                    if (sched_use[u].mask & S(k)) {
                        if (users[0]) strcat(users, ", ");
                        strcat(users, sched_names[k]);
                    }
                snprintf(buf, sizeof buf, "it applies to %s only, and sched.name is '%s'", users, sched_names[kind]);
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

larch_status larch_sched_init(larch_sched *s, const larch_node *cfg, double base_lr,
                              long total_steps, long steps_per_epoch)
{
    memset(s, 0, sizeof *s);
    larch_status st = larch_sched_check(cfg);
    if (st) return st;
    const char *name = larch_cfg_str(cfg, "name");
    for (int k = 0; k < (int)(sizeof sched_names / sizeof *sched_names); k++)
        if (strcmp(name, sched_names[k]) == 0) s->kind = k;
    s->warmup_kind = strcmp(larch_cfg_str(cfg, "warmup"), "exponential") == 0;
    s->base_lr = base_lr;
    s->min_lr = larch_cfg_float(cfg, "min_lr");
    s->gamma = larch_cfg_float(cfg, "gamma");
    s->power = larch_cfg_float(cfg, "power");
    s->step_epochs = larch_cfg_float(cfg, "step_epochs");
    s->restart_epochs = larch_cfg_float(cfg, "restart_epochs");
    s->restart_mult = larch_cfg_float(cfg, "restart_mult");
    s->pct_start = larch_cfg_float(cfg, "pct_start");
    s->div = larch_cfg_float(cfg, "div");
    s->div_final = larch_cfg_float(cfg, "div_final");
    s->warmup_start = larch_cfg_float(cfg, "warmup_start");
    s->total_steps = total_steps > 0 ? total_steps : 1;
    s->steps_per_epoch = steps_per_epoch > 0 ? steps_per_epoch : 1;
    long ws = larch_cfg_int(cfg, "warmup_steps");
    s->warmup_steps = ws > 0 ? ws : lround(larch_cfg_float(cfg, "warmup_epochs") * (double)s->steps_per_epoch);
    s->n_milestones = larch_cfg_floats(cfg, "milestones", s->milestones, 16);
    if (s->n_milestones < 0) return larch_fail(LARCH_ERR_CONFIG, "sched.milestones: at most 16 milestones");
    if (s->kind == SCHED_ONECYCLE) {
        double moms[4];
        const larch_node *mn = larch_map_get(cfg, "moms");
        int nm = mn && mn->kind == LARCH_NODE_SCALAR ? 0 : larch_cfg_floats(cfg, "moms", moms, 4);   /* off: 0 */
        if (nm != 0 && nm != 3) {
            char where[300];
            return larch_fail(LARCH_ERR_CONFIG, "%s: sched.moms: expected 3 values [start, peak, end], or off",
                              larch_node_where(mn, where, sizeof where));
        }
        if (nm == 3) memcpy(s->moms, moms, sizeof s->moms);
        else s->moms[0] = -1.0;
        if (s->warmup_steps > 0)
            return larch_fail(LARCH_ERR_CONFIG, "sched.warmup_epochs: onecycle has its own warm phase (sched.pct_start); "
                              "set the warmup to 0");
    } else {
        s->moms[0] = -1.0;
    }
    if (s->warmup_kind == 1 && s->warmup_steps > 0 && s->warmup_start <= 0.0)
        return larch_fail(LARCH_ERR_CONFIG, "sched.warmup_start: exponential warmup needs a start factor > 0 (e.g. 0.01)");
    return LARCH_OK;
}

/* fastai's cosine from a to b over pos in [0, 1] */
static double cos_anneal(double a, double b, double pos)
{
    return b + (a - b) / 2.0 * (1.0 + cos(M_PI * pos));
}

double larch_sched_lr(const larch_sched *s, long step)
{
    const double epoch = (double)step / (double)s->steps_per_epoch, base = s->base_lr;
    const long w = s->warmup_steps;
    double p = s->total_steps > w ? (double)(step - w) / (double)(s->total_steps - w) : 0.0;   /* a run shorter than its warmup never decays */
    if (p < 0.0) p = 0.0;
    if (p > 1.0) p = 1.0;
    double lr = base;
    switch (s->kind) {
    case SCHED_STEP: lr *= pow(s->gamma, floor(epoch / s->step_epochs + 1e-9)); break;
    case SCHED_MULTISTEP:
        for (int i = 0; i < s->n_milestones; i++) if (epoch + 1e-9 >= s->milestones[i]) lr *= s->gamma;
        break;
    case SCHED_EXPONENTIAL: lr *= pow(s->gamma, epoch); break;
    case SCHED_COSINE: lr = cos_anneal(base, s->min_lr, p); break;
    case SCHED_POLY: lr = s->min_lr + (base - s->min_lr) * pow(1.0 - p, s->power); break;
    case SCHED_SGDR: {
        double e = step > w ? (double)(step - w) / (double)s->steps_per_epoch : 0.0, period = s->restart_epochs;
        while (e >= period - 1e-9) { e -= period; period *= s->restart_mult; }
        if (e < 0.0) e = 0.0;
        lr = cos_anneal(base, s->min_lr, e / period);
        break;
    }
    case SCHED_ONECYCLE: {
        double pos = (double)step / (double)s->total_steps, pct = s->pct_start;
        lr = pos < pct ? cos_anneal(base / s->div, base, pos / pct)
                       : cos_anneal(base, base / s->div_final, pct < 1.0 ? (pos - pct) / (1.0 - pct) : 1.0);
        break;
    }
    default: break;
    }
    if (step < w) {
        double f = (double)(step + 1) / (double)w;
        lr *= s->warmup_kind == 1 ? pow(s->warmup_start, 1.0 - f) : s->warmup_start + (1.0 - s->warmup_start) * f;
    }
    return lr;
}

int larch_sched_momentum_note(const larch_sched *s, const larch_optim *o, char *buf, size_t len)
{
    buf[0] = '\0';
    if (s->kind != SCHED_ONECYCLE) return 0;
    const int sgd_like = o->kind == LARCH_OPT_SGD || o->kind == LARCH_OPT_LARS;
    const char *what = sgd_like ? "momentum" : "beta1";
    const double own = sgd_like ? o->momentum : o->beta1;
    if (s->moms[0] < 0.0)
        return snprintf(buf, len, "one-cycle: %s not cycled (sched.moms: off), it stays optim.%s = %g", what, what, own);
    if (o->kind == LARCH_OPT_SGD && o->n_state == 0)
        return snprintf(buf, len, "one-cycle: sched.moms has no effect: sgd with optim.momentum 0 keeps no momentum "
                        "(set optim.momentum > 0 to cycle it, or sched.moms: off)");
    return snprintf(buf, len, "one-cycle: %s follows sched.moms %g -> %g -> %g, in place of optim.%s = %g "
                    "(sched.moms: off keeps it)", what, s->moms[0], s->moms[1], s->moms[2], what, own);
}

double larch_sched_momentum(const larch_sched *s, long step)
{
    if (s->kind != SCHED_ONECYCLE || s->moms[0] < 0.0) return -1.0;
    double pos = (double)step / (double)s->total_steps, pct = s->pct_start;
    return pos < pct ? cos_anneal(s->moms[0], s->moms[1], pos / pct)
                     : cos_anneal(s->moms[1], s->moms[2], pct < 1.0 ? (pos - pct) / (1.0 - pct) : 1.0);
}
