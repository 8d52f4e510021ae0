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

enum { SCHED_CONSTANT = LARCH_SCHED_CONSTANT, SCHED_STEP = LARCH_SCHED_STEP, SCHED_MULTISTEP = LARCH_SCHED_MULTISTEP,
       SCHED_EXPONENTIAL = LARCH_SCHED_EXPONENTIAL, SCHED_COSINE = LARCH_SCHED_COSINE, SCHED_SGDR = LARCH_SCHED_SGDR,
       SCHED_POLY = LARCH_SCHED_POLY, SCHED_ONECYCLE = LARCH_SCHED_ONECYCLE };
static const char *const sched_names[] = {"constant", "step", "multistep", "exponential", "cosine", "sgdr",
                                          "poly", "onecycle"};
#define N_SCHEDS ((int)(sizeof sched_names / sizeof *sched_names))

const char *larch_sched_kind_name(larch_sched_kind kind)
{
    return (int)kind >= 0 && (int)kind < N_SCHEDS ? sched_names[kind] : NULL;
}

int larch_sched_kind_of(const char *name)
{
    for (int k = 0; name && k < N_SCHEDS; k++)
        if (strcmp(name, sched_names[k]) == 0) return k;
    return -1;
}

static larch_status bad(const char **field, const char *name)
{
    if (field) *field = name;
    return LARCH_ERR_INVALID;
}

larch_status larch_sched_validate(const larch_sched_opts *o, const char **field)
{
    if (field) *field = NULL;
    if (!larch_sched_kind_name(o->kind)) {
        larch_fail(LARCH_ERR_INVALID, "sched.name: unknown schedule kind %d (valid: 0 constant .. %d onecycle)",
                   (int)o->kind, N_SCHEDS - 1);
        return bad(field, "name");
    }
    if (o->warmup != LARCH_WARMUP_LINEAR && o->warmup != LARCH_WARMUP_EXPONENTIAL) {
        larch_fail(LARCH_ERR_INVALID, "sched.warmup: %d is not a larch_warmup_kind", (int)o->warmup);
        return bad(field, "warmup");
    }
    const struct { const char *name; double v, lo, hi; } ranges[] = {
        {"warmup_epochs", o->warmup_epochs, 0, 1e6}, {"warmup_steps", (double)o->warmup_steps, 0, (double)(1L << 40)},
        {"warmup_start", o->warmup_start, 0, 1}, {"step_epochs", o->step_epochs, 1e-6, 1e6},
        {"gamma", o->gamma, 0, 1}, {"min_lr", o->min_lr, 0, 1e4}, {"power", o->power, 0, 100},
        {"restart_epochs", o->restart_epochs, 1e-6, 1e6}, {"restart_mult", o->restart_mult, 1, 100},
        {"pct_start", o->pct_start, 0, 1}, {"div", o->div, 1, 1e9}, {"div_final", o->div_final, 1, 1e12}};
    for (size_t i = 0; i < sizeof ranges / sizeof *ranges; i++)
        if (!(ranges[i].v >= ranges[i].lo && ranges[i].v <= ranges[i].hi)) {     /* NaN fails too */
            larch_fail(LARCH_ERR_INVALID, "sched.%s = %g is out of range [%g, %g]", ranges[i].name, ranges[i].v,
                       ranges[i].lo, ranges[i].hi);
            return bad(field, ranges[i].name);
        }
    if (o->n_milestones < 0 || o->n_milestones > LARCH_SCHED_MAX_MILESTONES) {
        larch_fail(LARCH_ERR_INVALID, "sched.milestones: at most %d milestones", LARCH_SCHED_MAX_MILESTONES);
        return bad(field, "milestones");
    }
    for (int i = 0; i < o->n_milestones; i++)
        if (!(o->milestones[i] >= 0.0 && o->milestones[i] <= 1e6)) {
            larch_fail(LARCH_ERR_INVALID, "sched.milestones[%d] = %g is out of range [0, 1e+06]", i, o->milestones[i]);
            return bad(field, "milestones");
        }
    for (int i = 1; i < o->n_milestones; i++)
        if (o->milestones[i] < o->milestones[i - 1]) {
            larch_fail(LARCH_ERR_INVALID, "sched.milestones: must be ascending (%g comes after %g)", o->milestones[i],
                       o->milestones[i - 1]);
            return bad(field, "milestones");
        }
    int warm = o->warmup_epochs > 0.0 || o->warmup_steps > 0;
    const char *wkey = o->warmup_steps > 0 ? "warmup_steps" : "warmup_epochs";
    if (warm && o->kind == LARCH_SCHED_ONECYCLE) {
        larch_fail(LARCH_ERR_INVALID, "sched.%s: onecycle has its own warm phase (sched.pct_start); set the warmup to 0", wkey);
        return bad(field, wkey);
    }
    if (warm && o->warmup == LARCH_WARMUP_EXPONENTIAL && o->warmup_start <= 0.0) {
        larch_fail(LARCH_ERR_INVALID, "sched.warmup_start: exponential warmup needs a start factor > 0 (e.g. 0.01)");
        return bad(field, "warmup_start");
    }
    if (o->kind != LARCH_SCHED_ONECYCLE) return LARCH_OK;        /* moms: read by onecycle only */
    if (o->n_moms != 0 && o->n_moms != 3) {
        larch_fail(LARCH_ERR_INVALID, "sched.moms: expected 3 values [start, peak, end], or off");
        return bad(field, "moms");
    }
    for (int i = 0; i < o->n_moms; i++)
        if (!(o->moms[i] >= 0.0 && o->moms[i] <= 0.999999)) {
            larch_fail(LARCH_ERR_INVALID, "sched.moms[%d] = %g is out of range [0, 0.999999]", i, o->moms[i]);
            return bad(field, "moms");
        }
    return LARCH_OK;
}

larch_status larch_sched_init(larch_sched *s, const larch_sched_opts *o, double base_lr,
                              long total_steps, long steps_per_epoch)
{
    memset(s, 0, sizeof *s);
    larch_status st = larch_sched_validate(o, NULL);
    if (st) return st;
    s->kind = o->kind;
    s->warmup_kind = o->warmup == LARCH_WARMUP_EXPONENTIAL;
    s->base_lr = base_lr;
    s->min_lr = o->min_lr;
    s->gamma = o->gamma;
    s->power = o->power;
    s->step_epochs = o->step_epochs;
    s->restart_epochs = o->restart_epochs;
    s->restart_mult = o->restart_mult;
    s->pct_start = o->pct_start;
    s->div = o->div;
    s->div_final = o->div_final;
    s->warmup_start = o->warmup_start;
    s->total_steps = total_steps > 0 ? total_steps : 1;
    s->steps_per_epoch = steps_per_epoch > 0 ? steps_per_epoch : 1;
    s->warmup_steps = o->warmup_steps > 0 ? o->warmup_steps : lround(o->warmup_epochs * (double)s->steps_per_epoch);
    s->n_milestones = o->n_milestones;
    memcpy(s->milestones, o->milestones, sizeof s->milestones);
    if (s->kind == SCHED_ONECYCLE && o->n_moms == 3) memcpy(s->moms, o->moms, sizeof s->moms);
    else s->moms[0] = -1.0;
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
