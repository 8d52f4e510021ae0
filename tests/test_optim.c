/* test_optim.c - every optimizer against an independent double-precision
 * re-derivation, in this file, of its published update rule:
 *   SGD      PyTorch torch.optim.SGD docs (momentum, dampening, Nesterov)
 *   Adam     Kingma & Ba 2015, Algorithm 1 (+ AMSGrad, Reddi et al. 2018,
 *            in PyTorch's bias-corrected form)
 *   AdamW    Loshchilov & Hutter 2019 (decay lr * wd * w, as PyTorch)
 *   NAdam    Dozat 2016 with PyTorch's mu_t = beta1 (1 - 0.5 * 0.96^(t psi))
 *   RAdam    Liu et al. 2019, Algorithm 2 (threshold on rho_t)
 *   AdaMod   Ding et al. 2019, Algorithm 1 (decoupled decay as the authors' code)
 *   LARS     You, Gitman, Ginsburg 2017, Algorithm 1
 *   LAMB     You et al. 2019, Algorithm 2 (bias-corrected moments)
 * on a dense layer (a weight and a bias tensor) for 8 steps with varying
 * learning rates, a step with a zero weight gradient, zero-initialized
 * biases (trust ratio at a zero norm), weight decay on and off, frozen and
 * down-weighted groups, clipping; and config errors.
 */
#include "check.h"
#include "larch/larch.h"

#include <stdlib.h>

#define STEPS 8

static larch_node *parse(const char *yaml)
{
    larch_node *n = NULL;
    larch_status s = larch_cfg_parse(yaml, "<test>", &n);
    CHECK(s == LARCH_OK, "parse %s: %s", yaml, larch_errmsg());
    return n;
}

typedef struct {
    const char *name;
    double lr, mom, damp, wd, b1, b2, b3, eps, psi, rho_thr, eta, tmin, tmax, clip_norm, clip_value;
    int nesterov, decoupled, amsgrad, bias_corr, adapt_all, decay_all;
} hyper;

static hyper read_hyper(const larch_node *c)
{
    hyper h = {larch_cfg_str(c, "name"), larch_cfg_float(c, "lr"), larch_cfg_float(c, "momentum"),
               larch_cfg_float(c, "dampening"), larch_cfg_float(c, "weight_decay"), larch_cfg_float(c, "beta1"),
               larch_cfg_float(c, "beta2"), larch_cfg_float(c, "beta3"), larch_cfg_float(c, "eps"),
               larch_cfg_float(c, "momentum_decay"), larch_cfg_float(c, "rho_threshold"),
               larch_cfg_float(c, "trust_coef"), larch_cfg_float(c, "trust_min"), larch_cfg_float(c, "trust_max"),
               larch_cfg_float(c, "clip_norm"), larch_cfg_float(c, "clip_value"),
               larch_cfg_bool(c, "nesterov"), larch_cfg_bool(c, "decoupled"), larch_cfg_bool(c, "amsgrad"),
               larch_cfg_bool(c, "bias_correction"), larch_cfg_bool(c, "adapt_bias_norm"),
               larch_cfg_bool(c, "decay_bias_norm")};
    return h;
}

static int is(const hyper *h, const char *n) { return strcmp(h->name, n) == 0; }

static double clampr(const hyper *h, double r)
{
    if (r < h->tmin) r = h->tmin;
    if (h->tmax > 0 && r > h->tmax) r = h->tmax;
    return r;
}

/* One reference step of tensor (w, g) of n values; m, v, x: state. */
static void ref_tensor(const hyper *h, int t, double lr, double wd, int adapt, double *w, const double *g0,
                       double *m, double *v, double *x, size_t n, double mu_t, double mu_next, double mu_prod)
{
    double g[64];
    for (size_t i = 0; i < n; i++) g[i] = g0[i];
    const double bc1 = 1 - pow(h->b1, t), bc2 = 1 - pow(h->b2, t);
    if (is(h, "sgd")) {
        for (size_t i = 0; i < n; i++) {
            double gi = g[i] + wd * w[i];
            if (h->mom > 0) {
                m[i] = t == 1 ? gi : h->mom * m[i] + (1 - h->damp) * gi;
                gi = h->nesterov ? gi + h->mom * m[i] : m[i];
            }
            w[i] -= lr * gi;
        }
    } else if (is(h, "lars")) {
        double wn = 0, gn = 0;
        for (size_t i = 0; i < n; i++) { wn += w[i] * w[i]; gn += g[i] * g[i]; }
        wn = sqrt(wn); gn = sqrt(gn);
        double local = 1.0;
        if (adapt) local = clampr(h, wn > 0 && gn > 0 ? h->eta * wn / (gn + wd * wn) : 1.0);
        for (size_t i = 0; i < n; i++) {
            m[i] = h->mom * m[i] + lr * local * (g[i] + wd * w[i]);
            w[i] -= m[i];
        }
    } else if (is(h, "lamb")) {
        double u[64], wn = 0, un = 0;
        for (size_t i = 0; i < n; i++) {
            m[i] = h->b1 * m[i] + (1 - h->b1) * g[i];
            v[i] = h->b2 * v[i] + (1 - h->b2) * g[i] * g[i];
            double mh = h->bias_corr ? m[i] / bc1 : m[i], vh = h->bias_corr ? v[i] / bc2 : v[i];
            u[i] = mh / (sqrt(vh) + h->eps) + wd * w[i];
            wn += w[i] * w[i];
            un += u[i] * u[i];
        }
        wn = sqrt(wn); un = sqrt(un);
        double r = adapt ? clampr(h, wn > 0 && un > 0 ? wn / un : 1.0) : 1.0;
        for (size_t i = 0; i < n; i++) w[i] -= lr * r * u[i];
    } else {                                   /* the Adam family */
        if (h->decoupled) for (size_t i = 0; i < n; i++) w[i] -= lr * wd * w[i];
        else for (size_t i = 0; i < n; i++) g[i] += wd * w[i];
        for (size_t i = 0; i < n; i++) {
            m[i] = h->b1 * m[i] + (1 - h->b1) * g[i];
            v[i] = h->b2 * v[i] + (1 - h->b2) * g[i] * g[i];
        }
        if (is(h, "adam") || is(h, "adamw")) {
            for (size_t i = 0; i < n; i++) {
                double vv = v[i];
                if (h->amsgrad) { x[i] = fmax(x[i], v[i]); vv = x[i]; }
                w[i] -= lr * (m[i] / bc1) / (sqrt(vv / bc2) + h->eps);
            }
        } else if (is(h, "nadam")) {
            for (size_t i = 0; i < n; i++) {
                double d = sqrt(v[i] / bc2) + h->eps;
                w[i] -= lr * (1 - mu_t) / (1 - mu_prod) * g[i] / d + lr * mu_next / (1 - mu_prod * mu_next) * m[i] / d;
            }
        } else if (is(h, "radam")) {
            double rinf = 2 / (1 - h->b2) - 1, rt = rinf - 2 * t * pow(h->b2, t) / bc2;
            for (size_t i = 0; i < n; i++) {
                double mh = m[i] / bc1;
                if (rt > h->rho_thr) {
                    double r = sqrt((rt - 4) * (rt - 2) * rinf / ((rinf - 4) * (rinf - 2) * rt));
                    double l = sqrt(bc2) / (sqrt(v[i]) + h->eps);
                    w[i] -= lr * mh * r * l;
                } else {
                    w[i] -= lr * mh;
                }
            }
        } else if (is(h, "adamod")) {
            for (size_t i = 0; i < n; i++) {
                double eta = lr * sqrt(bc2) / bc1 / (sqrt(v[i]) + h->eps);
                x[i] = h->b3 * x[i] + (1 - h->b3) * eta;
                w[i] -= fmin(eta, x[i]) * m[i];
            }
        }
    }
}

/* Runs STEPS updates through larch and through the reference with the same
 * gradients; `frozen`/`mult` are the expected group effects on the bias. */
static void run_case(const char *yaml, double bias_lr_mult, double tol)
{
    larch_node *layers = parse("[{type: dense, name: fc, units: 3}]");
    larch_node *ocfg = parse(yaml);
    larch_model *m = NULL;
    larch_optim *o = NULL;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 4}, layers, NULL, NULL, 5));
    CHECK_OK(larch_optim_defaults(ocfg));
    CHECK_OK(larch_cfg_check(ocfg, "optim", larch_optim_keys, NULL));
    CHECK_OK(larch_optim_create(&o, m, ocfg));
    if (!o) return;
    hyper h = read_hyper(ocfg);
    size_t n = m->n_floats;
    double w[64] = {0}, ms[64] = {0}, vs[64] = {0}, xs[64] = {0}, g[64];
    double w0[64];
    for (size_t i = 0; i < n; i++) w0[i] = w[i] = m->param[i];
    double mu_prod = 1.0;
    const double lrs[STEPS] = {1.0, 0.5, 2.0, 1.0, 0.25, 1.0, 1.5, 0.0};
    for (int t = 1; t <= STEPS; t++) {
        double lr = h.lr * lrs[t - 1];
        for (size_t i = 0; i < n; i++) {
            g[i] = (t == 3 && i < m->params[0].size) ? 0.0 : 0.1 * (double)((i * 7 + (size_t)t * 3) % 11) - 0.5;
            m->grad[i] = (float)g[i];
        }
        if (h.clip_value > 0)
            for (size_t i = 0; i < n; i++) g[i] = fmax(-h.clip_value, fmin(h.clip_value, g[i]));
        if (h.clip_norm > 0) {
            double sq = 0;
            for (int pi = 0; pi < m->n_params; pi++)
                if (!(pi == 1 && bias_lr_mult == 0))
                    for (size_t j = 0; j < m->params[pi].size; j++) sq += g[m->params[pi].offset + j] * g[m->params[pi].offset + j];
            if (sqrt(sq) > h.clip_norm)
                for (size_t i = 0; i < n; i++) g[i] *= h.clip_norm / (sqrt(sq) + 1e-6);
        }
        double mu_t = h.b1 * (1 - 0.5 * pow(0.96, t * h.psi)), mu_next = h.b1 * (1 - 0.5 * pow(0.96, (t + 1) * h.psi));
        mu_prod *= mu_t;
        for (int pi = 0; pi < m->n_params; pi++) {
            const larch_param *p = &m->params[pi];
            int weight = p->role == LARCH_ROLE_WEIGHT;
            double mult = weight ? 1.0 : bias_lr_mult;
            if (mult == 0) continue;                                          /* frozen */
            size_t off = p->offset;
            ref_tensor(&h, t, lr * mult, (weight || h.decay_all) ? h.wd : 0.0, weight || h.adapt_all,
                       w + off, g + off, ms + off, vs + off, xs + off, p->size, mu_t, mu_next, mu_prod);
        }
        larch_optim_step(o, (float)lr);
    }
    /* the error relative to how far the reference moved the parameters */
    double worst = 0, moved = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs(w[i] - m->param[i]));
        moved = fmax(moved, fabs(w[i] - w0[i]));
    }
    if (getenv("LARCH_TEST_VERBOSE")) printf("%-90s error/movement %.2e (moved %.3g)\n", yaml, worst / moved, moved);
    CHECK(moved > 0 && worst <= tol * moved, "%s: max |larch - reference| = %g, %g of the movement %g", yaml, worst,
          worst / moved, moved);
    if (bias_lr_mult == 0) {   /* frozen: no state, parameters untouched */
        CHECK(o->n_state_floats == m->params[0].size || o->n_state == 0, "%s: frozen bias has state", yaml);
        for (size_t j = 0; j < m->params[1].size; j++)
            CHECK(m->param[m->params[1].offset + j] == (float)w[m->params[1].offset + j], "%s: frozen bias moved", yaml);
    }
    larch_optim_free(o);
    larch_model_free(m);
    larch_node_free(layers);
    larch_node_free(ocfg);
}

static void config_error(const char *yaml, const char *needle)
{
    larch_node *c = parse(yaml);
    larch_clear_error();
    larch_status s = larch_optim_defaults(c);
    if (!s) s = larch_cfg_check(c, "optim", larch_optim_keys, NULL);
    larch_model *m = NULL;
    larch_optim *o = NULL;
    if (!s) {
        larch_node *layers = parse("[{type: dense, name: fc, units: 3}]");
        CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 4}, layers, NULL, NULL, 5));
        s = larch_optim_create(&o, m, c);
        larch_node_free(layers);
    }
    CHECK(s == LARCH_ERR_CONFIG, "%s: expected a config error, got %s", yaml, larch_status_name(s));
    CHECK(strstr(larch_errmsg(), needle) != NULL, "%s: message '%s' lacks '%s'", yaml, larch_errmsg(), needle);
    larch_optim_free(o);
    larch_model_free(m);
    larch_node_free(c);
}

/* fc1 (4 -> 5), relu, fc2 (5 -> 3) with the optimizer `optim_yaml`, planned for 4 samples. */
static void two_layers(const char *optim_yaml, larch_model **m, larch_optim **o)
{
    larch_node *layers = parse("[{type: dense, name: fc1, units: 5}, {type: relu, name: r1},"
                               " {type: dense, name: fc2, units: 3}]");
    larch_node *oc = parse(optim_yaml);
    CHECK_OK(larch_model_build(m, (larch_shape){1, 1, 4}, layers, NULL, NULL, 5));
    CHECK_OK(larch_optim_defaults(oc));
    CHECK_OK(larch_cfg_check(oc, "optim", larch_optim_keys, NULL));
    if (*m) CHECK_OK(larch_optim_create(o, *m, oc));
    if (*m) CHECK_OK(larch_model_plan(*m, 4));
    larch_node_free(layers);
    larch_node_free(oc);
}

int main(void)
{
    /* SGD */
    run_case("{name: sgd, lr: 0.1, momentum: 0}", 1, 1e-5);
    run_case("{name: sgd, lr: 0.1, momentum: 0, weight_decay: 0.01}", 1, 1e-5);
    run_case("{name: sgd, lr: 0.1, momentum: 0.9}", 1, 1e-5);
    run_case("{name: sgd, lr: 0.1, momentum: 0.9, dampening: 0.5}", 1, 1e-5);
    run_case("{name: sgd, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.001}", 1, 1e-5);
    run_case("{name: sgd, lr: 0.1, momentum: 0.8, nesterov: true, groups: [{match: fc.bias, freeze: true}]}", 0, 1e-5);
    run_case("{name: sgd, lr: 0.1, groups: [{match: 'fc.*', roles: [bias], lr_mult: 0.1}]}", 0.1, 1e-5);
    run_case("{name: sgd, lr: 0.1, weight_decay: 0.1, decay_bias_norm: true}", 1, 1e-5);
    /* Adam, AdamW, AMSGrad */
    run_case("{lr: 0.02, name: adam}", 1, 2e-4);
    run_case("{lr: 0.02, name: adam, weight_decay: 0.1}", 1, 2e-4);
    run_case("{lr: 0.02, name: adam, amsgrad: true, beta2: 0.9}", 1, 2e-4);
    run_case("{lr: 0.02, name: adamw}", 1, 2e-4);
    run_case("{name: adamw, lr: 0.01, weight_decay: 0.5, amsgrad: true}", 1, 2e-4);
    run_case("{lr: 0.02, name: adamw, groups: [{match: fc.bias, freeze: true}]}", 0, 2e-4);
    /* NAdam */
    run_case("{lr: 0.02, name: nadam}", 1, 2e-4);
    run_case("{lr: 0.02, name: nadam, weight_decay: 0.01, momentum_decay: 0.1}", 1, 2e-4);
    run_case("{lr: 0.02, name: nadam, decoupled: true, weight_decay: 0.1}", 1, 2e-4);
    /* RAdam: beta2 0.9 reaches rho_t > 4 or 5 within the 8 steps */
    run_case("{lr: 0.02, name: radam}", 1, 2e-4);
    run_case("{lr: 0.02, name: radam, beta2: 0.9}", 1, 2e-4);
    run_case("{lr: 0.02, name: radam, beta2: 0.9, rho_threshold: 4, weight_decay: 0.01}", 1, 2e-4);
    run_case("{lr: 0.02, name: radam, beta2: 0.9, decoupled: true, weight_decay: 0.1}", 1, 2e-4);
    /* AdaMod */
    run_case("{lr: 0.02, name: adamod}", 1, 2e-4);
    run_case("{lr: 0.02, name: adamod, beta3: 0.9, weight_decay: 0.1}", 1, 2e-4);
    run_case("{lr: 0.02, name: adamod, decoupled: false, weight_decay: 0.1}", 1, 2e-4);
    /* LARS: biases adapted or not (the zero bias takes ratio 1), clamps */
    run_case("{name: lars, lr: 1}", 1, 2e-4);
    run_case("{name: lars, lr: 2, weight_decay: 0.0005, trust_coef: 0.01}", 1, 2e-4);
    run_case("{name: lars, lr: 2, weight_decay: 0.0005, adapt_bias_norm: true}", 1, 2e-4);
    run_case("{name: lars, lr: 2, trust_coef: 0.1, trust_max: 1}", 1, 2e-4);
    run_case("{name: lars, lr: 2, trust_min: 0.5, momentum: 0}", 1, 2e-4);
    /* LAMB */
    run_case("{lr: 0.02, name: lamb}", 1, 2e-4);
    run_case("{lr: 0.02, name: lamb, weight_decay: 0}", 1, 2e-4);
    run_case("{name: lamb, bias_correction: false, lr: 0.01}", 1, 2e-4);
    run_case("{lr: 0.02, name: lamb, adapt_bias_norm: true, decay_bias_norm: true}", 1, 2e-4);
    run_case("{lr: 0.02, name: lamb, trust_min: 0.01, trust_max: 0.5}", 1, 2e-4);
    run_case("{lr: 0.02, name: lamb, groups: [{match: fc.bias, lr_mult: 0.5}]}", 0.5, 2e-4);
    /* clipping */
    run_case("{name: sgd, lr: 0.1, clip_value: 0.2}", 1, 1e-5);
    run_case("{lr: 0.02, name: adam, clip_norm: 0.5}", 1, 2e-4);
    run_case("{lr: 0.02, name: lamb, clip_norm: 0.5, clip_value: 0.3}", 1, 2e-4);

    /* per-optimizer defaults (the papers') */
    larch_node *c = parse("{name: lamb}");
    CHECK_OK(larch_optim_defaults(c));
    CHECK_OK(larch_cfg_check(c, "optim", larch_optim_keys, NULL));
    CHECK_NEAR(larch_cfg_float(c, "eps"), 1e-6, 0);
    CHECK_NEAR(larch_cfg_float(c, "weight_decay"), 0.01, 0);
    CHECK_NEAR(larch_cfg_float(c, "lr"), 1e-3, 0);
    larch_node_free(c);
    c = parse("{name: adamw, weight_decay: 0.2}");
    CHECK_OK(larch_optim_defaults(c));
    CHECK_OK(larch_cfg_check(c, "optim", larch_optim_keys, NULL));
    CHECK_NEAR(larch_cfg_float(c, "weight_decay"), 0.2, 0);
    CHECK(larch_cfg_bool(c, "decoupled"), "adamw decouples");
    larch_node_free(c);

    /* freezing the first layers: no state for them, and backward stops above them */
    {
        larch_model *fm = NULL;
        larch_optim *fo = NULL;
        two_layers("{name: adam, groups: [{match: 'fc1.*', freeze: true}]}", &fm, &fo);
        if (fo && fm) {
            CHECK(fo->n_state_floats == 5 * 3 + 3, "state only for fc2: %zu floats", fo->n_state_floats);
            CHECK(!fm->layers[0]->need_backward && !fm->layers[1]->need_backward, "backward runs below fc2");
            CHECK(fm->layers[2]->need_backward && fm->layers[2]->need_dw, "fc2 trains");
        }
        larch_optim_free(fo);
        larch_model_free(fm);
    }

    /* a freezing schedule: state from the start, no update while frozen, then
     * the group's lr_mult and gradients again (after a re-plan) */
    {
        larch_model *fm = NULL;
        larch_optim *fo = NULL;
        two_layers("{name: sgd, lr: 0.1, momentum: 0.9, groups: [{match: 'fc1.*', freeze: true,"
                   " unfreeze_after_epochs: 2, lr_mult: 0.25}]}", &fm, &fo);
        if (fo && fm) {
            CHECK(fo->n_state_floats == 5 * 4 + 5 + 5 * 3 + 3, "state for fc1 too: %zu floats", fo->n_state_floats);
            CHECK(!fm->layers[0]->need_dw && fm->params[0].lr_mult == 0.0f, "fc1 frozen at first");
            size_t w1 = fm->params[0].size;
            float *before = malloc(w1 * sizeof *before);
            memcpy(before, fm->param, w1 * sizeof *before);
            for (size_t i = 0; i < fm->n_floats; i++) fm->grad[i] = 0.5f;
            larch_optim_step(fo, 0.1f);
            CHECK(memcmp(before, fm->param, w1 * sizeof *before) == 0, "a frozen tensor does not move");
            CHECK(larch_optim_thaw(fm, 1) == 0, "nothing thaws before epoch 2");
            CHECK(larch_optim_thaw(fm, 2) == 2, "fc1.weight and fc1.bias thaw at epoch 2");
            CHECK(fm->params[0].lr_mult == 0.25f && fm->params[1].lr_mult == 0.25f, "thawed at the group's lr_mult");
            CHECK(larch_optim_thaw(fm, 3) == 0, "a thaw happens once");
            CHECK_OK(larch_model_plan(fm, 4));
            CHECK(fm->layers[0]->need_dw, "fc1 gets gradients after the re-plan");
            larch_optim_step(fo, 0.1f);                 /* momentum buffer was zero: w -= lr * 0.25 * g */
            CHECK_NEAR(fm->param[0], before[0] - 0.1f * 0.25f * 0.5f, 1e-7);
            free(before);
        }
        larch_optim_free(fo);
        larch_model_free(fm);
    }

    /* errors */
    config_error("{name: sgd, groups: [{match: 'fc.*', unfreeze_after_epochs: 2}]}", "needs freeze: true");
    config_error("{name: sgd, groups: [{match: 'fc.*', freeze: true, unfreeze_after_epochs: 2, lr_mult: 0}]}",
                 "would keep the group frozen");
    config_error("{name: sgd, momentum: 0, nesterov: true}", "nesterov");
    /* keys of another optimizer: accepted, and reported as ignored unless at their default */
    static const struct { const char *yaml, *warning; } ignored[] = {
        {"{name: adam, momentum: 0.9, trust_coef: 0.001}", NULL},
        {"{name: adam, momentum: 0.5}", "<test>:1: optim.momentum is ignored: it applies to sgd, lars only, and optim.name is 'adam'"},
        {"{name: sgd, beta3: 0.9}", "optim.beta3 is ignored: it applies to adamod only, and optim.name is 'sgd'"},
        {"{name: lamb, momentum: 0.9, nesterov: true}", "optim.nesterov is ignored: it applies to sgd only"}};
    for (int k = 0; k < 4; k++) {
        c = parse(ignored[k].yaml);
        larch_warnings w = {0};
        CHECK_OK(larch_optim_defaults(c));
        CHECK_OK(larch_cfg_check(c, "optim", larch_optim_keys, NULL));
        CHECK_OK(larch_optim_ignored(c, &w));
        CHECK(w.n == (ignored[k].warning ? 1 : 0), "%s: %d warnings", ignored[k].yaml, w.n);
        if (ignored[k].warning && w.n == 1)
            CHECK(strstr(w.msg[0], ignored[k].warning) != NULL, "%s: warning '%s' lacks '%s'", ignored[k].yaml, w.msg[0],
                  ignored[k].warning);
        larch_warnings_free(&w);
        larch_node_free(c);
    }
    config_error("{name: lars, trust_min: 2, trust_max: 1}", "trust_max");
    config_error("{name: sgd, groups: [{match: 'conv*', lr_mult: 0.1}]}", "'conv*' matches no parameter");
    config_error("{name: sgd, groups: [{match: 'fc.*', roles: [weights]}]}", "unknown role 'weights'");
    config_error("{name: sgd, groups: [{match: 'fc.*', lr: 0.1}]}", "unknown key 'optim.groups[0].lr'");
    config_error("{name: sgd, groups: {match: x}}", "expected a list of groups");
    config_error("{name: adamax}", "adamax");
    return check_result("test_optim");
}
