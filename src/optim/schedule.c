/* schedule.c - learning-rate schedules with linear warmup.
 * The rate of step t (0-based) is the schedule's rate times the warmup factor
 * (t + 1) / warmup_steps while t < warmup_steps. Decays are measured in
 * epochs (fractional: t / steps_per_epoch).
 *   constant:  base
 *   step:      base * gamma^floor(epoch / step_epochs)
 *   multistep: base * gamma^(number of milestones <= epoch)
 *   cosine:    min + (base - min) (1 + cos(pi t / total)) / 2
 */
#include "larch/optim.h"

#include <math.h>
#include <string.h>

enum { SCHED_CONSTANT, SCHED_STEP, SCHED_MULTISTEP, SCHED_COSINE };

const larch_key larch_sched_keys[] = {
    {"name", LARCH_T_ENUM, "constant", 0, 0, "constant|step|multistep|cosine", NULL, "schedule"},
    {"warmup_epochs", LARCH_T_FLOAT, "0", 0, 1e4, NULL, NULL, "linear warmup length in epochs"},
    {"step_epochs", LARCH_T_FLOAT, "30", 1e-6, 1e6, NULL, NULL, "step: decay every this many epochs"},
    {"milestones", LARCH_T_FLOATS, "[]", 0, 1e6, NULL, NULL, "multistep: epochs at which to decay"},
    {"gamma", LARCH_T_FLOAT, "0.1", 0, 1, NULL, NULL, "decay factor"},
    {"min_lr", LARCH_T_FLOAT, "0", 0, 1e4, NULL, NULL, "cosine: final learning rate"},
    {0}};

larch_status larch_sched_init(larch_sched *s, const larch_node *cfg, double base_lr,
                              long total_steps, long steps_per_epoch)
{
    memset(s, 0, sizeof *s);
    const char *name = larch_cfg_str(cfg, "name");
    s->kind = strcmp(name, "step") == 0 ? SCHED_STEP : strcmp(name, "multistep") == 0 ? SCHED_MULTISTEP
            : strcmp(name, "cosine") == 0 ? SCHED_COSINE : SCHED_CONSTANT;
    s->base_lr = base_lr;
    s->min_lr = larch_cfg_float(cfg, "min_lr");
    s->gamma = larch_cfg_float(cfg, "gamma");
    s->step_epochs = larch_cfg_float(cfg, "step_epochs");
    s->total_steps = total_steps > 0 ? total_steps : 1;
    s->steps_per_epoch = steps_per_epoch > 0 ? steps_per_epoch : 1;
    s->warmup_steps = lround(larch_cfg_float(cfg, "warmup_epochs") * (double)s->steps_per_epoch);
    s->n_milestones = larch_cfg_floats(cfg, "milestones", s->milestones, 16);
    if (s->n_milestones < 0) return larch_fail(LARCH_ERR_CONFIG, "sched.milestones: at most 16 milestones");
    return LARCH_OK;
}

double larch_sched_lr(const larch_sched *s, long step)
{
    double epoch = (double)step / (double)s->steps_per_epoch, lr = s->base_lr;
    switch (s->kind) {
    case SCHED_STEP: lr *= pow(s->gamma, floor(epoch / s->step_epochs + 1e-9)); break;
    case SCHED_MULTISTEP:
        for (int i = 0; i < s->n_milestones; i++) if (epoch + 1e-9 >= s->milestones[i]) lr *= s->gamma;
        break;
    case SCHED_COSINE: {
        double f = (double)step / (double)s->total_steps;
        if (f > 1.0) f = 1.0;
        lr = s->min_lr + (s->base_lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * f));
        break;
    }
    default: break;
    }
    if (step < s->warmup_steps) lr *= (double)(step + 1) / (double)s->warmup_steps;
    return lr;
}
