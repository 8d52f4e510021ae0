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
 * down-weighted groups, clipping; a tensor thawed late taking a fresh
 * optimizer's steps (every optimizer), per-tensor step counts under
 * optimizer-state sharding; and config errors.
 */
#include "check.h"
#include "larch/larch.h"
#include "nn/model_internal.h"   /* the model's layout */

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
    int nesterov, decoupled, amsgrad, bias_corr, adapt_all, decay_all, lars_clip;
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
               larch_cfg_bool(c, "decay_bias_norm"), !strcmp(larch_cfg_str(c, "lars_mode"), "clip")};
    return h;
}

static int is(const hyper *h, const char *n) { return strcmp(h->name, n) == 0; }

static double clampr(const hyper *h, double r)
{
    if (r < h->tmin) r = h->tmin;
    if (h->tmax > 0 && r > h->tmax) r = h->tmax;
    return r;
}

/* LARC clip-mode steps of the reference where the local rate was below lr
 * and where lr clipped it (a test of the mode needs both). */
static int larc_free, larc_clipped;

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
        double rate = lr;                      /* not adapted: momentum SGD */
        if (adapt && h->lars_clip) {           /* LARC clip: min(local rate, lr); zero norms unscaled */
            if (wn > 0 && gn > 0) {
                double local = clampr(h, h->eta * wn / (gn + wd * wn));
                rate = fmin(local, lr);
                if (lr > 0) { if (local < lr) larc_free++; else larc_clipped++; }
            }
        } else if (adapt) {
            rate = lr * clampr(h, wn > 0 && gn > 0 ? h->eta * wn / (gn + wd * wn) : 1.0);
        }
        for (size_t i = 0; i < n; i++) {
            m[i] = h->mom * m[i] + rate * (g[i] + wd * w[i]);
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
    CHECK_OK(larch_optim_create_cfg(&o, m, ocfg));
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

/* A key of another optimizer is accepted and reported as ignored (one warning). */
static void ignored_key(const char *yaml, const char *needle)
{
    larch_node *c = parse(yaml);
    larch_warnings w = {0};
    CHECK_OK(larch_optim_defaults(c));
    CHECK_OK(larch_optim_ignored(c, &w));
    CHECK(w.n == 1 && strstr(w.msg[0], needle) != NULL, "%s: %d warning(s), the first '%s' (want '%s')", yaml, w.n,
          w.n ? w.msg[0] : "", needle);
    larch_warnings_free(&w);
    larch_node_free(c);
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
        s = larch_optim_create_cfg(&o, m, c);
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
    if (*m) CHECK_OK(larch_optim_create_cfg(o, *m, oc));
    if (*m) CHECK_OK(larch_model_plan(*m, 4));
    larch_node_free(layers);
    larch_node_free(oc);
}

/* Deterministic gradient values of step `t` for the values [a, z). */
static void fill_grad(larch_model *m, size_t a, size_t z, long t)
{
    for (size_t i = a; i < z; i++) m->grad[i] = 0.05f * (float)((i * 7 + (size_t)t * 3) % 13) - 0.3f;
}

/* LARS in clip mode at a constant lr against apex's LARC(clip=True) around
 * torch.optim.SGD, re-derived literally in double precision: per tensor
 * adaptive_lr = min(eta ||w|| / (||g|| + wd ||w|| + 1e-8) / lr, 1) (when
 * both norms are non-zero), g = (g + wd w) adaptive_lr, then SGD with
 * lr outside the momentum buffer: b = momentum b + g, w -= lr b (weights in
 * a group with weight decay, biases in one without, both adapted). */
static void larc_apex(double lr, double eta)
{
    enum { STEPS_APEX = 30 };
    char yaml[256];
    snprintf(yaml, sizeof yaml, "{name: lars, lars_mode: clip, lr: %g, trust_coef: %g, weight_decay: 0.001, "
             "adapt_bias_norm: true}", lr, eta);
    larch_node *layers = parse("[{type: dense, name: fc, units: 3}]"), *oc = parse(yaml);
    larch_model *m = NULL;
    larch_optim *o = NULL;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 4}, layers, NULL, NULL, 5));
    CHECK_OK(larch_optim_defaults(oc));
    CHECK_OK(larch_cfg_check(oc, "optim", larch_optim_keys, NULL));
    if (m) CHECK_OK(larch_optim_create_cfg(&o, m, oc));
    if (o) {
        const double mom = 0.9;
        double w[64], w0[64], b[64] = {0}, g[64];
        for (size_t i = 0; i < m->n_floats; i++) w0[i] = w[i] = m->param[i];
        int clipped = 0, free_ = 0;
        for (long t = 0; t < STEPS_APEX; t++) {
            fill_grad(m, 0, m->n_floats, t);
            for (int pi = 0; pi < m->n_params; pi++) {
                const larch_param *p = &m->params[pi];
                const double wd = p->role == LARCH_ROLE_WEIGHT ? 0.001 : 0.0;
                double pn = 0, gn = 0;
                for (size_t j = p->offset; j < p->offset + p->size; j++) {
                    g[j] = m->grad[j];
                    pn += w[j] * w[j];
                    gn += g[j] * g[j];
                }
                pn = sqrt(pn); gn = sqrt(gn);
                if (pn != 0 && gn != 0) {
                    double adaptive = eta * pn / (gn + pn * wd + 1e-8);
                    if (adaptive / lr < 1) free_++; else clipped++;
                    adaptive = fmin(adaptive / lr, 1);
                    for (size_t j = p->offset; j < p->offset + p->size; j++) g[j] = (g[j] + wd * w[j]) * adaptive;
                }
                for (size_t j = p->offset; j < p->offset + p->size; j++) {
                    b[j] = t == 0 ? g[j] : mom * b[j] + g[j];
                    w[j] -= lr * b[j];
                }
            }
            larch_optim_step(o, (float)lr);
        }
        double worst = 0, moved = 0;
        for (size_t i = 0; i < m->n_floats; i++) {
            worst = fmax(worst, fabs(w[i] - m->param[i]));
            moved = fmax(moved, fabs(w[i] - w0[i]));
        }
        if (getenv("LARCH_TEST_VERBOSE"))
            printf("LARC clip vs apex at lr %g: error/movement %.2e (moved %.3g; %d clipped, %d below lr)\n", lr,
                   worst / moved, moved, clipped, free_);
        CHECK(moved > 0 && worst <= 2e-4 * moved, "LARC clip at lr %g: max |larch - apex| %g of the movement %g", lr,
              worst, moved);
        CHECK(clipped > 0 && free_ > 0, "LARC at lr %g: %d clipped, %d below lr", lr, clipped, free_);
    }
    larch_optim_free(o);
    larch_model_free(m);
    larch_node_free(layers);
    larch_node_free(oc);
}

/* A tensor thawed late takes the steps a fresh optimizer would: model A
 * trains fc2 for T0 steps with fc1 frozen (unfreeze_after_epochs), then
 * thaws fc1; model B has fc1 as its only trainable tensor from the start
 * (fc2 frozen for the whole run). From the same fc1 values and gradients,
 * the first K updates of fc1 must be the same, bit for bit: bias
 * corrections, NAdam's momentum product, RAdam's rectification, AdaMod's
 * averages and SGD's first-step buffer count from the tensor's first update. */
static void thaw_matches_fresh(const char *optim, float lr)
{
    enum { T0 = 1000, K = 8 };
    char ya[512], yb[512];
    snprintf(ya, sizeof ya, "{%s, groups: [{match: 'fc1.*', freeze: true, unfreeze_after_epochs: 1, lr_mult: 0.5}]}", optim);
    snprintf(yb, sizeof yb, "{%s, groups: [{match: 'fc2.*', freeze: true}, {match: 'fc1.*', lr_mult: 0.5}]}", optim);
    larch_model *ma = NULL, *mb = NULL;
    larch_optim *oa = NULL, *ob = NULL;
    two_layers(ya, &ma, &oa);
    two_layers(yb, &mb, &ob);
    if (oa && ob) {
        const size_t fc1 = ma->params[0].offset, fc1_end = ma->params[1].offset + ma->params[1].size;
        for (long t = 0; t < T0; t++) {                     /* fc2 trains, fc1 waits */
            fill_grad(ma, 0, ma->n_floats, t);
            larch_optim_step(oa, lr);
        }
        CHECK(larch_optim_thaw(ma, 1) == 2, "%s: fc1 thaws", optim);
        memcpy(mb->param + fc1, ma->param + fc1, (fc1_end - fc1) * sizeof(float));
        double first_a = 0.0, first_b = 0.0;
        for (long t = 0; t < K; t++) {
            fill_grad(ma, 0, ma->n_floats, T0 + t);
            fill_grad(mb, 0, mb->n_floats, T0 + t);
            float before = ma->param[fc1];
            larch_optim_step(oa, lr);
            larch_optim_step(ob, lr);
            if (t == 0) { first_a = ma->param[fc1] - before; first_b = mb->param[fc1] - before; }
            int same = memcmp(ma->param + fc1, mb->param + fc1, (fc1_end - fc1) * sizeof(float)) == 0;
            CHECK(same, "%s: update %ld of fc1 after a thaw at step %d differs from a fresh optimizer's "
                  "(first update %.4g, fresh %.4g)", optim, t + 1, T0, first_a, first_b);
            if (!same) break;
        }
        CHECK(first_b != 0.0, "%s: fc1 moved", optim);
        CHECK(oa->tensor_t[0] == K && oa->tensor_t[1] == K && oa->tensor_t[2] == T0 + K && oa->t == T0 + K,
              "%s: step counts fc1 %ld, fc2 %ld, optimizer %ld", optim, oa->tensor_t[0], oa->tensor_t[2], oa->t);
        CHECK(ob->tensor_t[2] == 0 && ob->tensor_t[3] == 0, "%s: fc2, frozen for the whole run, counted %ld steps",
              optim, ob->tensor_t[2]);
    }
    larch_optim_free(oa);
    larch_optim_free(ob);
    larch_model_free(ma);
    larch_model_free(mb);
}

/* Optimizer-state sharding (ZeRO-1): three slices of one model, one of
 * them holding none of fc1, keep the same per-tensor step counts as the
 * whole optimizer (they are replicated), through a thaw, and together
 * update the model as it does. */
static void sharded_counts(void)
{
    const char *yaml = "{name: nadam, lr: 0.01, groups: [{match: 'fc1.*', freeze: true, unfreeze_after_epochs: 1}]}";
    larch_model *m = NULL, *ms = NULL;
    larch_optim *full = NULL, *sh[3] = {NULL, NULL, NULL};
    two_layers(yaml, &m, &full);
    two_layers(yaml, &ms, &sh[0]);
    larch_node *oc = parse(yaml);
    CHECK_OK(larch_optim_defaults(oc));
    CHECK_OK(larch_cfg_check(oc, "optim", larch_optim_keys, NULL));
    if (m && ms && full && sh[0]) {
        larch_optim_free(sh[0]);
        const size_t cut[4] = {0, 7, ms->params[2].offset, ms->n_floats};   /* 7: inside fc1.weight */
        larch_optim_opts oo;
        CHECK_OK(larch_optim_opts_from_cfg(oc, &oo));
        for (int k = 0; k < 3; k++) CHECK_OK(larch_optim_create_shard(&sh[k], ms, &oo, cut[k], cut[k + 1]));
        larch_optim_opts_release(&oo);
        for (long t = 0; t < 25; t++) {
            if (t == 20) {
                CHECK(larch_optim_thaw(m, 1) == 2 && larch_optim_thaw(ms, 1) == 2, "fc1 thaws in both");
            }
            fill_grad(m, 0, m->n_floats, t);
            fill_grad(ms, 0, ms->n_floats, t);
            larch_optim_step(full, 0.01f);
            for (int k = 0; k < 3; k++) if (sh[k]) larch_optim_step(sh[k], 0.01f);
        }
        CHECK(memcmp(m->param, ms->param, m->n_floats * sizeof(float)) == 0, "three slices update as the whole");
        for (int k = 0; k < 3; k++)
            for (int i = 0; sh[k] && i < m->n_params; i++)
                CHECK(sh[k]->tensor_t[i] == full->tensor_t[i] && sh[k]->tensor_mu_product[i] == full->tensor_mu_product[i],
                      "slice %d: %s counted %ld steps, the whole optimizer %ld", k, m->params[i].name,
                      sh[k]->tensor_t[i], full->tensor_t[i]);
        CHECK(full->tensor_t[0] == 5 && full->tensor_t[2] == 25, "fc1 5 steps, fc2 25: %ld %ld",
              full->tensor_t[0], full->tensor_t[2]);
    }
    for (int k = 0; k < 3; k++) larch_optim_free(sh[k]);
    larch_optim_free(full);
    larch_model_free(m);
    larch_model_free(ms);
    larch_node_free(oc);
}

/* `larch config --help` names, before the first ": " of a key's help, the
 * optimizers that read the key (no list: all of them); that list must be
 * exactly the optimizers for which a non-default value of the key is not
 * reported as ignored. */
static void help_names_readers(void)
{
    static const char *const names[] = {"sgd", "adam", "adamw", "nadam", "radam", "adamod", "lars", "lamb"};
    for (const larch_key *k = larch_optim_keys; k->name; k++) {
        if (!strcmp(k->name, "name") || !strcmp(k->name, "groups")) continue;
        char value[64];
        if (k->type == LARCH_T_BOOL) snprintf(value, sizeof value, "%s", strcmp(k->def, "true") ? "true" : "false");
        else if (k->type == LARCH_T_ENUM) {             /* the first choice that is not the default */
            const char *c = k->choices;
            size_t n = strcspn(c, "|");
            if (n == strlen(k->def) && !strncmp(c, k->def, n) && c[n]) { c += n + 1; n = strcspn(c, "|"); }
            snprintf(value, sizeof value, "%.*s", (int)n, c);
        }
        else snprintf(value, sizeof value, "%.9g", atof(k->def) == k->max ? k->min : atof(k->def) + (k->max - atof(k->def)) / 3);
        const char *colon = strstr(k->help, ": ");
        char listed[256] = "";
        if (colon && (size_t)(colon - k->help) < sizeof listed) memcpy(listed, k->help, (size_t)(colon - k->help));
        int named[8] = {0}, n_named = 0, all_names = listed[0] != 0;
        for (char *tok = strtok(listed, ","); tok && all_names; tok = strtok(NULL, ",")) {
            while (*tok == ' ') tok++;
            int hit = 0;
            for (int o = 0; o < 8; o++) if (!strcmp(tok, names[o])) { named[o] = hit = 1; n_named++; }
            all_names = hit;
        }
        for (int o = 0; o < 8; o++) {
            char yaml[256];
            snprintf(yaml, sizeof yaml, "{name: %s, %s: %s}", names[o], k->name, value);
            larch_node *c = parse(yaml);
            larch_warnings w = {0};                     /* another optimizer's key is reported as ignored */
            int reads = larch_optim_defaults(c) == LARCH_OK && larch_optim_ignored(c, &w) == LARCH_OK && w.n == 0;
            larch_warnings_free(&w);
            larch_node_free(c);
            int says = all_names && n_named ? named[o] : 1;
            CHECK(reads == says, "optim.%s (help \"%s\"): %s %s it, the help says it %s", k->name, k->help, names[o],
                  reads ? "reads" : "rejects", says ? "does" : "does not");
        }
    }
    larch_clear_error();
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
    /* LARS in LARC's clip mode, at lr 0.1 and 1 (with the step multipliers
     * of run_case): the local rate must fall on both sides of lr */
    const char *const larc[] = {"{name: lars, lars_mode: clip, lr: 0.1, trust_coef: 0.07, weight_decay: 0.0005}",
                                "{name: lars, lars_mode: clip, lr: 1, trust_coef: 0.4, weight_decay: 0.0005, adapt_bias_norm: true}",
                                "{name: lars, lars_mode: clip, lr: 0.1, trust_coef: 0.07, adapt_bias_norm: true, "
                                "momentum: 0.5, trust_max: 2}"};
    for (int k = 0; k < 3; k++) {
        larc_free = larc_clipped = 0;
        run_case(larc[k], 1, 2e-4);
        CHECK(larc_free > 0 && larc_clipped > 0, "%s: local rate below lr %d times, clipped %d times", larc[k],
              larc_free, larc_clipped);
    }
    larc_apex(0.1, 0.07);
    larc_apex(1.0, 0.7);
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

    /* a thaw late in the run: the thawed tensor's first updates are those of a fresh optimizer */
    thaw_matches_fresh("name: sgd, lr: 0.1, momentum: 0.9, dampening: 0.5", 0.1f);
    thaw_matches_fresh("name: sgd, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.01", 0.1f);
    thaw_matches_fresh("name: adam, lr: 0.01", 0.01f);
    thaw_matches_fresh("name: adamw, lr: 0.01", 0.01f);
    thaw_matches_fresh("name: adam, lr: 0.01, amsgrad: true", 0.01f);
    thaw_matches_fresh("name: nadam, lr: 0.01", 0.01f);
    thaw_matches_fresh("name: radam, lr: 0.01", 0.01f);
    thaw_matches_fresh("name: adamod, lr: 0.01", 0.01f);
    thaw_matches_fresh("name: lars, lr: 1, weight_decay: 0.0005", 1.0f);
    thaw_matches_fresh("name: lamb, lr: 0.01", 0.01f);
    thaw_matches_fresh("name: lamb, lr: 0.01, bias_correction: false", 0.01f);
    sharded_counts();

    /* errors */
    help_names_readers();
    config_error("{name: lars, lars_mode: larc}", "is not one of: scale|clip");
    ignored_key("{name: sgd, lars_mode: clip}", "optim.lars_mode is ignored: it applies to lars only, and optim.name is 'sgd'");
    ignored_key("{name: lamb, decoupled: true}", "optim.decoupled is ignored: it applies to adam, adamw, nadam, radam, adamod only");
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
