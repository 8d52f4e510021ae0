/* test_loss_grad.c - gradients of the losses (softmax cross-entropy with and
 * without label smoothing, MSE against targets and against one-hot labels,
 * two weighted heads on one trunk, two heads weighted by learned uncertainty
 * whose log-variances are parameters) and of the L1 / L2 / Lq penalties, against
 * central differences of the values larch itself reports. Also checks the
 * softmax_ce value against a direct formula. */
#include "check.h"
#include "larch/larch.h"
#include "nn/model_internal.h"   /* the model's layout */

#include <stdlib.h>

static larch_node *parse(const char *yaml)
{
    larch_node *n = NULL;
    CHECK(larch_cfg_parse(yaml, "<test>", &n) == LARCH_OK, "parse: %s", larch_errmsg());
    return n;
}

static double total_loss(larch_model *m, larch_batch *b, larch_pass *p)
{
    larch_model_forward(m, b, p);
    return larch_model_loss(m, b, 0.0f, NULL);
}

/* d(sum of weighted losses)/d(input, params) vs differences. */
static void loss_case(const char *label, const char *layers_yaml, const char *loss_yaml, int with_targets)
{
    larch_node *layers = parse(layers_yaml), *loss = parse(loss_yaml);
    larch_model *m = NULL;
    const int n = 4, in = 5;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, in}, layers, loss, NULL, 3));
    if (!m) return;
    m->want_input_grad = 1;
    CHECK_OK(larch_model_plan(m, n));
    float x[4 * 5], t[4 * 4];
    int32_t y[4] = {0, 3, 1, 2}, y2[4] = {1, 0, 1, 0};
    larch_rng r;
    larch_rng_init(&r, 9, LARCH_RNG_USER, 0, 0);
    for (int i = 0; i < n * in; i++) x[i] = larch_rng_normal(&r);
    for (int i = 0; i < n * 4; i++) t[i] = larch_rng_normal(&r);
    larch_batch b = {.n = n, .x = x, .label = {y, y2}};
    if (with_targets) { b.target[0] = t; b.target_dim[0] = 4; }
    larch_pass p = {.n = n, .train = 1, .seed = 1};
    larch_model_forward(m, &b, &p);
    larch_model_loss(m, &b, 1.0f, NULL);
    larch_model_backward(m, &p);
    float *g = malloc(m->n_floats * sizeof *g), dx[4 * 5];
    memcpy(g, m->grad, m->n_floats * sizeof *g);
    memcpy(dx, m->node_dy[0], sizeof dx);
    const double eps = 1e-2;
    int bad = 0;
    for (int i = 0; i < n * in; i++) {
        float keep = x[i];
        x[i] = keep + (float)eps; double fp = total_loss(m, &b, &p);
        x[i] = keep - (float)eps; double fm = total_loss(m, &b, &p);
        x[i] = keep;
        double num = (fp - fm) / (2 * eps);
        if (fabs(num - dx[i]) > 2e-2 * fmax(fabs(num) + fabs(dx[i]), 1e-2)) { bad++; fprintf(stderr, "%s: dx[%d] %g vs %g\n", label, i, dx[i], num); }
    }
    for (int k = 0; k < m->n_params; k++) {
        const larch_param *pr = &m->params[k];
        for (size_t j = 0; j < pr->size; j++) {
            float *w = m->param + pr->offset + j, keep = *w;
            *w = keep + (float)eps; double fp = total_loss(m, &b, &p);
            *w = keep - (float)eps; double fm = total_loss(m, &b, &p);
            *w = keep;
            double num = (fp - fm) / (2 * eps), ana = g[pr->offset + j];
            if (fabs(num - ana) > 2e-2 * fmax(fabs(num) + fabs(ana), 1e-2)) { bad++; fprintf(stderr, "%s: %s[%zu] %g vs %g\n", label, pr->name, j, ana, num); }
        }
    }
    CHECK(bad == 0, "%s: %d gradient coordinates disagree", label, bad);
    free(g);
    larch_model_free(m);
    larch_node_free(layers);
    larch_node_free(loss);
}

static void penalty_case(const char *pen_yaml, double q, int all)
{
    larch_node *layers = parse("[{type: dense, units: 3}]"), *pen = parse(pen_yaml);
    larch_model *m = NULL;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 4}, layers, NULL, pen, 3));
    if (!m) return;
    for (size_t i = 0; i < m->n_floats; i++) m->param[i] = 0.1f * (float)((int)(i % 9) - 4) + 0.05f;
    memset(m->grad, 0, m->n_floats * sizeof(float));
    double coef = 0.3, want = 0;
    for (int k = 0; k < m->n_params; k++) {
        const larch_param *pr = &m->params[k];
        if (!all && pr->role != LARCH_ROLE_WEIGHT) continue;
        for (size_t j = 0; j < pr->size; j++) want += pow(fabs(m->param[pr->offset + j]), q);
    }
    double got = larch_model_penalty(m, 1);
    CHECK_NEAR(got, coef * want, 1e-5);
    const double eps = 1e-3;
    int bad = 0;
    for (size_t i = 0; i < m->n_floats; i++) {
        float keep = m->param[i];
        m->param[i] = keep + (float)eps; double fp = larch_model_penalty(m, 0);
        m->param[i] = keep - (float)eps; double fm = larch_model_penalty(m, 0);
        m->param[i] = keep;
        double num = (fp - fm) / (2 * eps);
        if (fabs(num - m->grad[i]) > 1e-2 * fmax(fabs(num), 1e-2)) { bad++; fprintf(stderr, "%s: g[%zu] %g vs %g\n", pen_yaml, i, m->grad[i], num); }
    }
    CHECK(bad == 0, "%s: %d penalty gradient coordinates disagree", pen_yaml, bad);
    if (!all) CHECK(m->grad[m->params[1].offset] == 0.0f, "%s: the bias is not penalized by default", pen_yaml);
    larch_model_free(m);
    larch_node_free(layers);
    larch_node_free(pen);
}

int main(void)
{
    loss_case("softmax_ce", "[{type: dense, units: 4}]", "[]", 0);
    loss_case("softmax_ce smoothing", "[{type: dense, units: 4}]", "{type: softmax_ce, label_smoothing: 0.1}", 0);
    loss_case("mse targets", "[{type: dense, units: 4}]", "{type: mse, on: targets}", 1);
    loss_case("mse one-hot", "[{type: dense, units: 4}]", "{type: mse}", 0);
    loss_case("two heads", "[{type: dense, name: trunk, units: 6}, {type: tanh, name: act},"
                           " {type: dense, name: a, units: 4}, {type: dense, name: b, input: act, units: 2}]",
              "[{name: fine, input: a, weight: 0.7}, {name: coarse, input: b, target: 1, weight: 0.3, label_smoothing: 0.2}]", 0);
    /* Kendall et al. 2018: c exp(-s) L + s/2; d/ds checked like any parameter */
    loss_case("uncertainty weighting", "[{type: dense, name: trunk, units: 6}, {type: tanh, name: act},"
                                       " {type: dense, name: a, units: 4}, {type: dense, name: b, input: act, units: 4}]",
              "[{name: fine, input: a, weighting: uncertainty, log_var_init: 0.4},"
              " {name: reg, type: mse, on: targets, input: b, weighting: uncertainty, log_var_init: -0.3, weight: 2},"
              " {name: fixed, input: b, target: 1, weight: 0.5}]", 1);
    loss_case("loss on a trunk node", "[{type: dense, name: trunk, units: 4}, {type: tanh, name: act}, {type: dense, name: head, units: 4}]",
              "[{name: t1, input: act}, {name: t2, input: head}]", 0);

    /* the value: -log softmax(z)_y for z = x W^T + b with a known W */
    larch_node *layers = parse("[{type: dense, units: 3, bias: false}]");
    larch_model *m = NULL;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 2}, layers, NULL, NULL, 1));
    CHECK_OK(larch_model_plan(m, 1));
    const float W[6] = {1, 0, 0, 1, 1, 1};
    memcpy(m->param, W, sizeof W);
    float x[2] = {0.5f, -1.0f};
    int32_t y = 2;
    larch_batch b = {.n = 1, .x = x, .label = {&y}};
    larch_pass p = {.n = 1};
    larch_model_forward(m, &b, &p);
    larch_loss_stats st;
    double l = larch_model_loss(m, &b, 0.0f, &st);
    double z0 = 0.5, z1 = -1.0, z2 = -0.5, lse = log(exp(z0) + exp(z1) + exp(z2));
    CHECK_NEAR(l, lse - z2, 1e-6);
    CHECK(st.count == 1 && st.correct == 0, "stats count %ld correct %ld", st.count, st.correct);
    larch_model_free(m);
    larch_node_free(layers);

    /* the uncertainty-weighted value against the formula, from the unweighted stats */
    {
        larch_node *ly = parse("[{type: dense, name: a, units: 3}, {type: dense, name: b, input: input, units: 3}]");
        larch_node *ls = parse("[{name: c, input: a, weighting: uncertainty, log_var_init: 0.7},"
                               " {name: r, type: mse, input: b, weighting: uncertainty, log_var_init: -1.2, weight: 3}]");
        larch_model *mu = NULL;
        CHECK_OK(larch_model_build(&mu, (larch_shape){1, 1, 2}, ly, ls, NULL, 5));
        CHECK_OK(larch_model_plan(mu, 2));
        CHECK(mu->loss_weights && strcmp(mu->loss_weights->name, "loss_weights") == 0, "the loss_weights layer exists");
        int pi = larch_model_param_index(mu, "loss_weights.log_var");
        CHECK(pi >= 0 && mu->params[pi].size == 2 && mu->params[pi].role == LARCH_ROLE_NORM, "log_var: 2 values, role norm");
        float xx[4] = {0.3f, -0.2f, 1.0f, 0.5f};
        int32_t yy[2] = {1, 2};
        larch_batch bb = {.n = 2, .x = xx, .label = {yy}};
        larch_pass pp = {.n = 2};
        larch_model_forward(mu, &bb, &pp);
        larch_loss_stats su[2];
        double tot = larch_model_loss(mu, &bb, 0.0f, su);
        double want = exp(-0.7) * su[0].loss_sum + 0.5 * 0.7 * 2 + 3 * (0.5 * exp(1.2) * su[1].loss_sum + 0.5 * -1.2 * 2);
        CHECK_NEAR(tot, want, 1e-5);
        CHECK_NEAR(larch_model_task_weight(mu, 0), exp(-0.7), 1e-6);
        CHECK_NEAR(larch_model_task_weight(mu, 1), 3 * 0.5 * exp(1.2), 1e-5);
        larch_model_free(mu);
        larch_node_free(ly);
        larch_node_free(ls);
        /* the reserved name */
        ly = parse("[{type: dense, name: loss_weights, units: 3}]");
        ls = parse("[{weighting: uncertainty}]");
        CHECK_FAIL(larch_model_build(&mu, (larch_shape){1, 1, 2}, ly, ls, NULL, 5), LARCH_ERR_CONFIG, "reserved");
        larch_node_free(ly);
        larch_node_free(ls);
    }

    penalty_case("{type: l2, coef: 0.3}", 2, 0);
    penalty_case("{type: l1, coef: 0.3}", 1, 0);
    penalty_case("{type: lq, coef: 0.3, q: 1.5}", 1.5, 0);
    penalty_case("{type: lq, coef: 0.3, q: 3, apply_to: all}", 3, 1);
    return check_result("test_loss_grad");
}
