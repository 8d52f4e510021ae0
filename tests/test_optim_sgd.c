/* test_optim_sgd.c - SGD (momentum, dampening, Nesterov, weight decay,
 * frozen tensors) against an independent double-precision re-derivation of
 * PyTorch's documented SGD update:
 *     g <- g + wd * w                     (weight decay on weights only)
 *     b <- g (first step) | mu * b + (1 - dampening) * g
 *     d <- g + mu * b (Nesterov) | b
 *     w <- w - lr * d
 * and the constant / step / multistep / cosine schedules with linear warmup
 * at their boundaries. */
#include "check.h"
#include "larch/larch.h"

#include <stdlib.h>

static larch_node *parse(const char *yaml)
{
    larch_node *n = NULL;
    larch_status s = larch_cfg_parse(yaml, "<test>", &n);
    CHECK(s == LARCH_OK, "parse %s: %s", yaml, larch_errmsg());
    return n;
}

/* Runs `steps` updates with fixed gradients through larch and through the
 * reference; compares every parameter. */
static void sgd_case(const char *optim_yaml, double mu, double damp, int nesterov, double wd, int freeze_bias)
{
    larch_node *layers = parse("[{type: dense, name: fc, units: 3}]");
    larch_node *ocfg = parse(optim_yaml);
    larch_model *m = NULL;
    larch_optim *o = NULL;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 4}, layers, NULL, NULL, 5));
    CHECK_OK(larch_cfg_check(ocfg, "optim", larch_optim_keys, NULL));
    if (freeze_bias) m->params[1].lr_mult = 0.0f;
    CHECK_OK(larch_optim_create(&o, m, ocfg));
    size_t n = m->n_floats;
    double *w = calloc(n, sizeof *w), *b = calloc(n, sizeof *b);
    for (size_t i = 0; i < n; i++) w[i] = m->param[i];
    const double lrs[4] = {0.1, 0.05, 0.2, 0.0};
    for (int t = 0; t < 4; t++) {
        for (int pi = 0; pi < m->n_params; pi++) {
            const larch_param *p = &m->params[pi];
            for (size_t j = 0; j < p->size; j++) {
                size_t i = p->offset + j;
                double g = (t == 2 && pi == 0) ? 0.0 : 0.1 * (double)((i * 7 + (size_t)t * 3) % 11) - 0.5;
                m->grad[i] = (float)g;                                   // the gradient larch sees
                if (freeze_bias && pi == 1) continue;                    // frozen: untouched
                double wdi = p->role == LARCH_ROLE_WEIGHT ? wd : 0.0;    // decay skips biases
                g += wdi * w[i];
                if (mu > 0) {
                    b[i] = t == 0 ? g : mu * b[i] + (1.0 - damp) * g;
                    g = nesterov ? g + mu * b[i] : b[i];
                }
                w[i] -= lrs[t] * g;
            }
        }
        larch_optim_step(o, (float)lrs[t], 0, n);
    }
    double worst = 0;
    for (int pi = 0; pi < m->n_params; pi++) {
        const larch_param *p = &m->params[pi];
        for (size_t j = 0; j < p->size; j++) {
            double d = fabs(w[p->offset + j] - m->param[p->offset + j]);
            if (d > worst) worst = d;
        }
    }
    CHECK(worst < 1e-5, "%s: max |larch - reference| = %g", optim_yaml, worst);
    free(w); free(b);
    larch_optim_free(o);
    larch_model_free(m);
    larch_node_free(layers);
    larch_node_free(ocfg);
}

static double lr_at(const char *yaml, double base, long total, long per_epoch, long step)
{
    larch_node *c = parse(yaml);
    larch_sched s;
    CHECK_OK(larch_cfg_check(c, "sched", larch_sched_keys, NULL));
    CHECK_OK(larch_sched_init(&s, c, base, total, per_epoch));
    larch_node_free(c);
    return larch_sched_lr(&s, step);
}

int main(void)
{
    sgd_case("{momentum: 0}", 0, 0, 0, 0, 0);
    sgd_case("{momentum: 0, weight_decay: 0.01}", 0, 0, 0, 0.01, 0);
    sgd_case("{momentum: 0.9}", 0.9, 0, 0, 0, 0);
    sgd_case("{momentum: 0.9, dampening: 0.5}", 0.9, 0.5, 0, 0, 0);
    sgd_case("{momentum: 0.9, nesterov: true, weight_decay: 0.001}", 0.9, 0, 1, 0.001, 0);
    sgd_case("{momentum: 0.8, nesterov: true}", 0.8, 0, 1, 0, 1);

    larch_node *bad = parse("{momentum: 0, nesterov: true}");
    larch_optim *o = NULL;
    CHECK_OK(larch_cfg_check(bad, "optim", larch_optim_keys, NULL));
    CHECK_FAIL(larch_optim_create(&o, NULL, bad), LARCH_ERR_CONFIG, "nesterov");
    larch_node_free(bad);

    /* schedules: 10 steps per epoch, 100 steps */
    CHECK_NEAR(lr_at("{name: constant}", 0.1, 100, 10, 0), 0.1, 1e-12);
    CHECK_NEAR(lr_at("{name: constant}", 0.1, 100, 10, 99), 0.1, 1e-12);
    CHECK_NEAR(lr_at("{name: step, step_epochs: 3, gamma: 0.5}", 0.1, 100, 10, 29), 0.1, 1e-12);
    CHECK_NEAR(lr_at("{name: step, step_epochs: 3, gamma: 0.5}", 0.1, 100, 10, 30), 0.05, 1e-12);
    CHECK_NEAR(lr_at("{name: step, step_epochs: 3, gamma: 0.5}", 0.1, 100, 10, 60), 0.025, 1e-12);
    CHECK_NEAR(lr_at("{name: multistep, milestones: [2, 5], gamma: 0.1}", 1.0, 100, 10, 19), 1.0, 1e-12);
    CHECK_NEAR(lr_at("{name: multistep, milestones: [2, 5], gamma: 0.1}", 1.0, 100, 10, 20), 0.1, 1e-12);
    CHECK_NEAR(lr_at("{name: multistep, milestones: [2, 5], gamma: 0.1}", 1.0, 100, 10, 50), 0.01, 1e-12);
    CHECK_NEAR(lr_at("{name: cosine}", 1.0, 100, 10, 0), 1.0, 1e-12);
    CHECK_NEAR(lr_at("{name: cosine}", 1.0, 100, 10, 50), 0.5, 1e-12);
    CHECK_NEAR(lr_at("{name: cosine, min_lr: 0.1}", 1.0, 100, 10, 100), 0.1, 1e-12);
    /* linear warmup over 2 epochs = 20 steps: step k gets (k+1)/20 of the rate */
    CHECK_NEAR(lr_at("{name: constant, warmup_epochs: 2}", 0.4, 100, 10, 0), 0.02, 1e-12);
    CHECK_NEAR(lr_at("{name: constant, warmup_epochs: 2}", 0.4, 100, 10, 19), 0.4, 1e-12);
    CHECK_NEAR(lr_at("{name: constant, warmup_epochs: 2}", 0.4, 100, 10, 20), 0.4, 1e-12);
    return check_result("test_optim_sgd");
}
