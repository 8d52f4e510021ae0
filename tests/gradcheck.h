/* gradcheck.h - finite-difference gradient checks for layers (tests only).
 *
 * gradcheck() builds a model from a YAML list of layers (gradcheck_model()
 * takes one built through the typed API instead), draws an input x and
 * a random output weighting r, and compares the analytic gradients of
 *     f(x, theta) = sum_i r_i * y_i        (y = output of the last layer)
 * with respect to the input and to every parameter tensor against central
 * differences (f(t + eps) - f(t - eps)) / (2 eps), at up to `probes` random
 * coordinates of each tensor. The model is run in train or eval mode with a
 * fixed pass seed, so dropout masks are identical across the evaluations.
 * A coordinate passes when |analytic - numeric| <= tol * max(|analytic| +
 * |numeric|, floor) with floor = 1e-2 (absolute slack for tiny gradients).
 * Kinks (relu, max pooling, hinge losses): when a kink of some unit lies
 * within eps of the probed point, the central difference straddles it and
 * means nothing; the coordinate then passes when the analytic gradient
 * matches one of the one-sided differences (f(t + eps) - f(t)) / eps or
 * (f(t) - f(t - eps)) / eps, the one that stays on the point's side.
 */
#ifndef LARCH_TESTS_GRADCHECK_H
#define LARCH_TESTS_GRADCHECK_H
#include "check.h"
#include "larch/larch.h"

#include <stdlib.h>

typedef struct gradcheck_opts {
    int n;          /* batch size                       */
    int train;      /* pass mode                        */
    double eps;     /* finite-difference step (1e-2)    */
    double tol;     /* relative tolerance (2e-2)        */
    int probes;     /* coordinates per tensor (24)      */
    uint64_t seed;  /* data and init seed               */
    int eval_after_train; /* run one train forward first (batch-norm running stats) */
} gradcheck_opts;

static double gradcheck_f(larch_model *m, const larch_batch *b, const larch_pass *p, const float *r)
{
    larch_model_forward(m, b, p);
    int last = larch_model_n_layers(m);
    size_t len = (size_t)b->n * larch_shape_size(larch_model_node_shape(m, last));
    const float *y = larch_model_node_output(m, last);
    double f = 0.0;
    for (size_t i = 0; i < len; i++) f += (double)r[i] * y[i];
    return f;
}

static int gradcheck_close(double num, double ana, double tol)
{
    double scale = fabs(num) + fabs(ana);
    if (scale < 1e-2) scale = 1e-2;
    return fabs(num - ana) <= tol * scale;
}

/* Compares one tensor's analytic gradient g against differences over v. */
static int gradcheck_tensor(const char *label, const char *tensor, larch_model *m, const larch_batch *b,
                            const larch_pass *p, const float *r, float *v, const float *g, size_t len,
                            const gradcheck_opts *o)
{
    larch_rng rng;
    larch_rng_init(&rng, o->seed, LARCH_RNG_USER, larch_hash32(tensor), 7);
    int bad = 0;
    int probes = (size_t)o->probes < len ? o->probes : (int)len;
    for (int k = 0; k < probes; k++) {
        size_t j = (size_t)probes == len ? (size_t)k : larch_rng_below(&rng, (uint32_t)len);
        float keep = v[j];
        v[j] = keep + (float)o->eps;
        double fp = gradcheck_f(m, b, p, r);
        v[j] = keep - (float)o->eps;
        double fm = gradcheck_f(m, b, p, r);
        v[j] = keep;
        double num = (fp - fm) / (2.0 * o->eps), ana = g[j];
        int ok = gradcheck_close(num, ana, o->tol);
        if (!ok) {                                   /* a kink within eps: one-sided differences */
            double f0 = gradcheck_f(m, b, p, r);
            ok = gradcheck_close((fp - f0) / o->eps, ana, o->tol) || gradcheck_close((f0 - fm) / o->eps, ana, o->tol);
        }
        if (!ok) {
            if (bad < 3)
                fprintf(stderr, "%s: %s[%zu]: analytic %.6g, numeric %.6g\n", label, tensor, j, ana, num);
            bad++;
        }
    }
    CHECK(bad == 0, "%s: %s: %d of %d coordinates disagree", label, tensor, bad, probes);
    return bad;
}

static gradcheck_opts gradcheck_defaults(const gradcheck_opts *opt)
{
    gradcheck_opts o = *opt;
    if (o.n <= 0) o.n = 3;
    if (o.eps <= 0) o.eps = 1e-2;
    if (o.tol <= 0) o.tol = 2e-2;
    if (o.probes <= 0) o.probes = 24;
    if (!o.seed) o.seed = 11;
    return o;
}

/* Runs the check on a finalized, initialized model (not yet planned; it is
 * planned here for opt->n samples with the input gradient) through the
 * public API only; returns the number of failing coordinates (and records
 * CHECK failures). The model stays the caller's. */
static int gradcheck_model(const char *label, larch_model *m, const gradcheck_opts *opt)
{
    gradcheck_opts o = gradcheck_defaults(opt);
    larch_model_set_input_grad(m, 1);
    larch_status s = larch_model_plan(m, o.n);
    CHECK(s == LARCH_OK, "%s: plan: %s", label, larch_errmsg());
    if (s) return 1;
    int last = larch_model_n_layers(m);
    size_t n_floats;
    const float *grad = larch_model_flat_grads(m, &n_floats);
    size_t xlen = (size_t)o.n * larch_shape_size(larch_model_input_shape(m));
    size_t ylen = (size_t)o.n * larch_shape_size(larch_model_node_shape(m, last));
    float *x = malloc(xlen * sizeof *x), *r = malloc(ylen * sizeof *r);
    float *dx = malloc(xlen * sizeof *dx), *gw = malloc((n_floats ? n_floats : 1) * sizeof *gw);
    larch_rng rng;
    larch_rng_init(&rng, o.seed, LARCH_RNG_USER, 1, 2);
    for (size_t i = 0; i < xlen; i++) x[i] = larch_rng_normal(&rng);
    for (size_t i = 0; i < ylen; i++) r[i] = larch_rng_normal(&rng);
    larch_batch b = {.n = o.n, .x = x};
    larch_pass p = {.n = o.n, .train = o.train, .seed = o.seed, .step = 3};
    if (o.eval_after_train) {                       /* give running statistics non-trivial values */
        larch_pass t = p;
        t.train = 1;
        for (int i = 0; i < 3; i++) larch_model_forward(m, &b, &t);
    }
    /* analytic: forward, seed the output gradient with r, backward */
    gradcheck_f(m, &b, &p, r);
    memcpy(larch_model_node_grad(m, last), r, ylen * sizeof *r);
    larch_model_backward(m, &p);
    memcpy(dx, larch_model_node_grad(m, 0), xlen * sizeof *dx);
    memcpy(gw, grad, n_floats * sizeof *gw);
    int bad = gradcheck_tensor(label, "input", m, &b, &p, r, x, dx, xlen, &o);
    for (int i = 0; i < larch_model_n_params(m); i++) {
        const larch_param *pr = larch_model_param(m, i);
        bad += gradcheck_tensor(label, pr->name, m, &b, &p, r, larch_model_param_data(m, i), gw + pr->offset,
                                pr->size, &o);
    }
    free(x); free(r); free(dx); free(gw);
    return bad;
}

/* Builds the model from a YAML list of layers and runs gradcheck_model. */
static int gradcheck(const char *label, const char *yaml_layers, larch_shape in, const gradcheck_opts *opt)
{
    gradcheck_opts o = gradcheck_defaults(opt);
    larch_node *layers = NULL;
    larch_model *m = NULL;
    larch_status s = larch_cfg_parse(yaml_layers, label, &layers);
    CHECK(s == LARCH_OK, "%s: parse: %s", label, larch_errmsg());
    if (s) return 1;
    s = larch_model_build(&m, in, layers, NULL, NULL, o.seed);
    CHECK(s == LARCH_OK, "%s: build: %s", label, larch_errmsg());
    int bad = s ? 1 : gradcheck_model(label, m, &o);
    larch_model_free(m);
    larch_node_free(layers);
    return bad;
}
#endif
