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

/* Metric losses: n = 8 samples of 5 features, labels with repeats (three
 * classes), through a dense layer (and l2norm / cosine where the loss wants
 * them); d(reported loss)/d(input, params) against central differences at
 * points where the mining choices (hardest positive / negative, which
 * triplets are active) do not change within +-eps. */
static void metric_case(const char *label, const char *layers_yaml, const char *loss_yaml, double eps)
{
    larch_node *layers = parse(layers_yaml), *loss = parse(loss_yaml);
    larch_model *m = NULL;
    enum { n = 8, in = 5 };
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, in}, layers, loss, NULL, 3));
    if (!m) { larch_node_free(layers); larch_node_free(loss); return; }
    m->want_input_grad = 1;
    CHECK_OK(larch_model_plan(m, n));
    float x[n * in];
    int32_t y[n] = {0, 1, 2, 0, 1, 2, 0, 1};
    larch_rng r;
    larch_rng_init(&r, 21, LARCH_RNG_USER, 0, 0);
    for (int i = 0; i < n * in; i++) x[i] = larch_rng_normal(&r);
    larch_batch b = {.n = n, .x = x, .label = {y}};
    larch_pass p = {.n = n, .train = 1, .seed = 1};
    larch_model_forward(m, &b, &p);
    larch_loss_stats st[LARCH_MAX_TARGETS * 2];
    double l0 = larch_model_loss(m, &b, 1.0f, st);
    CHECK(isfinite(l0) && l0 > 0 && st[0].count == n, "%s: loss %g over %ld samples", label, l0, st[0].count);
    larch_model_backward(m, &p);
    float *g = malloc(m->n_floats * sizeof *g), dx[n * in];
    memcpy(g, m->grad, m->n_floats * sizeof *g);
    memcpy(dx, m->node_dy[0], sizeof dx);
    int bad = 0, nonzero = 0;
    for (int i = 0; i < n * in; i++) {
        float keep = x[i];
        x[i] = keep + (float)eps; double fp = total_loss(m, &b, &p);
        x[i] = keep - (float)eps; double fm = total_loss(m, &b, &p);
        x[i] = keep;
        double num = (fp - fm) / (2 * eps);
        nonzero += fabs(dx[i]) > 1e-6;
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
    CHECK(nonzero > n * in / 2, "%s: only %d of %d input gradients are non-zero", label, nonzero, n * in);
    free(g);
    larch_model_free(m);
    larch_node_free(layers);
    larch_node_free(loss);
}

/* Values against direct formulas on hand-made embeddings (the model is one
 * dense layer set to the identity, so the embeddings are the inputs). */
static double metric_value(const char *loss_yaml, const float *x, const int32_t *y, int n, int d)
{
    char ly[64];
    snprintf(ly, sizeof ly, "[{type: dense, units: %d, bias: false}]", d);
    larch_node *layers = parse(ly), *loss = parse(loss_yaml);
    larch_model *m = NULL;
    double v = NAN;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, d}, layers, loss, NULL, 3));
    if (m) {
        CHECK_OK(larch_model_plan(m, n));
        for (int i = 0; i < d; i++) for (int j = 0; j < d; j++) m->param[i * d + j] = i == j;
        larch_batch b = {.n = n, .x = (float *)x, .label = {(int32_t *)y}};
        larch_pass p = {.n = n};
        larch_model_forward(m, &b, &p);
        larch_loss_stats st;
        v = larch_model_loss(m, &b, 0.0f, &st) / n;
        CHECK(st.correct == 0 || strstr(loss_yaml, "arcface"), "%s: no accuracy for an embedding loss", loss_yaml);
    }
    larch_model_free(m);
    larch_node_free(layers);
    larch_node_free(loss);
    return v;
}

static void metric_values(void)
{
    /* 1-D points: a0 = 0, a1 = 1 (class 0), b0 = 3, b1 = 3.5 (class 1) */
    const float x[4] = {0, 1, 3, 3.5f};
    const int32_t y[4] = {0, 0, 1, 1};
    /* batch hard, margin 0.5: anchor 0: d_ap 1, d_an 3 -> 0; 1: 1 vs 2 -> 0; 2: 0.5 vs 2 -> 0; 3: 0.5 vs 2.5 -> 0 */
    CHECK_NEAR(metric_value("{type: triplet, margin: 0.5}", x, y, 4, 1), 0.0, 1e-6);
    /* margin 2.5: max(0, 2.5 + d_ap - d_an) = 0.5, 1.5, 1.0, 0.5 -> mean 0.875 */
    CHECK_NEAR(metric_value("{type: triplet, margin: 2.5}", x, y, 4, 1), 0.875, 1e-5);
    /* soft margin: mean softplus(d_ap - d_an) */
    double sp = (log1p(exp(1 - 3.0)) + log1p(exp(1 - 2.0)) + log1p(exp(0.5 - 2.0)) + log1p(exp(0.5 - 2.5))) / 4;
    CHECK_NEAR(metric_value("{type: triplet, soft_margin: true}", x, y, 4, 1), sp, 1e-5);
    /* batch all, margin 2.4 (no triplet exactly at the hinge): triplets (a,p,n) with 2.5 + d_ap - d_an > 0, mean over those */
    {
        double sum = 0; int cnt = 0;
        for (int a = 0; a < 4; a++) for (int p = 0; p < 4; p++) for (int q = 0; q < 4; q++) {
            if (p == a || y[p] != y[a] || y[q] == y[a]) continue;
            double v = 2.4 + fabs(x[a] - x[p]) - fabs(x[a] - x[q]);
            if (v > 0) { sum += v; cnt++; }
        }
        CHECK_NEAR(metric_value("{type: triplet, margin: 2.4, mining: batch_all}", x, y, 4, 1), sum / cnt, 1e-5);
    }
    /* contrastive, margin 2.6: pairs (0,1) 1, (2,3) 0.25 same; different: (0,2) 3, (0,3) 3.5, (1,2) 2 -> 0.36, (1,3) 2.5 -> 0.01 */
    CHECK_NEAR(metric_value("{type: contrastive, margin: 2.6}", x, y, 4, 1), (1 + 0.25 + 0.36 + 0.01) / 6, 1e-5);
    /* supcon on 2-D unit vectors, tau 0.5 */
    {
        const float u[8] = {1, 0, 0.6f, 0.8f, 0, 1, -1, 0};
        const int32_t yu[4] = {0, 0, 1, 2};   /* only samples 0 and 1 have a positive */
        double tau = 0.5, sum = 0;
        for (int i = 0; i < 2; i++) {
            double z = 0, pos = 0;
            for (int j = 0; j < 4; j++) {
                if (j == i) continue;
                double s = (u[2 * i] * u[2 * j] + u[2 * i + 1] * u[2 * j + 1]) / tau;
                z += exp(s);
                if (yu[j] == yu[i]) pos = s;
            }
            sum += log(z) - pos;
        }
        CHECK_NEAR(metric_value("{type: supcon, temperature: 0.5}", u, yu, 4, 2), sum / 2, 1e-5);
    }
    /* center at the start: centers 0, loss 1/2 ||x||^2 per sample */
    CHECK_NEAR(metric_value("{type: center, classes: 2}", x, y, 4, 1), (0 + 1 + 9 + 12.25) / 2 / 4, 1e-5);
    /* arcface on cosines: s = 2, m = 0.5; sample 0 cos_y 0.6 (> cos(pi - m)): cos(acos 0.6 + 0.5); sample 1 cos_y
     * -0.95 (< cos(pi - 0.5) = -0.8776): the fallback cos - m sin m */
    {
        const float c[4] = {0.6f, 0.2f, 0.3f, -0.95f};
        const int32_t yc[2] = {0, 1};
        double s = 2, m = 0.5;
        double phi0 = cos(acos(0.6) + m), phi1 = -0.95 - m * sin(m);
        double l0 = log(exp(s * phi0) + exp(s * 0.2)) - s * phi0;
        double l1 = log(exp(s * 0.3) + exp(s * phi1)) - s * phi1;
        CHECK_NEAR(metric_value("{type: arcface, scale: 2, margin: 0.5}", c, yc, 2, 2), (l0 + l1) / 2, 1e-5);
    }
}

/* Wen et al.'s update over the batch: c_j -= alpha sum_{y_i=j} (c_j - x_i) / (1 + n_j),
 * only when the pass writes gradients (training), and the centers are a buffer. */
static void center_update_case(void)
{
    larch_node *layers = parse("[{type: dense, units: 2, bias: false}]"), *loss = parse("{type: center, classes: 3, alpha: 0.5}");
    larch_model *m = NULL;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 2}, layers, loss, NULL, 3));
    CHECK_OK(larch_model_plan(m, 3));
    CHECK(m->loss_centers && larch_model_n_buffers(m) == 1 && strcmp(larch_model_buffer(m, 0)->name, "loss_centers.main") == 0,
          "the centers are the buffer loss_centers.main");
    m->param[0] = 1; m->param[1] = 0; m->param[2] = 0; m->param[3] = 1;
    float *C = larch_model_buffer_data(m, 0);
    const float c0[6] = {1, 1, 0, 0, 5, 5};
    memcpy(C, c0, sizeof c0);
    float x[6] = {3, 1, 1, 3, -2, 0};
    int32_t y[3] = {0, 0, 1};
    larch_batch b = {.n = 3, .x = x, .label = {y}};
    larch_pass p = {.n = 3, .train = 1};
    larch_model_forward(m, &b, &p);
    larch_model_loss(m, &b, 0.0f, NULL);
    CHECK(memcmp(C, c0, sizeof c0) == 0, "evaluation leaves the centers");
    larch_model_loss(m, &b, 1.0f / 3, NULL);
    /* class 0: n = 2, sum (c - x) = (1-3 + 1-1, 1-1 + 1-3) = (-2, -2) -> c += 0.5 * 2 / 3 */
    CHECK_NEAR(C[0], 1 + 1.0 / 3, 1e-6); CHECK_NEAR(C[1], 1 + 1.0 / 3, 1e-6);
    /* class 1: n = 1, c - x = (2, 0) -> c -= 0.5 * (2, 0) / 2 */
    CHECK_NEAR(C[2], -0.5, 1e-6); CHECK_NEAR(C[3], 0.0, 1e-6);
    CHECK(C[4] == 5 && C[5] == 5, "a class without samples keeps its center");
    larch_model_free(m);
    larch_node_free(layers);
    larch_node_free(loss);
}

static void metric_errors(void)
{
    larch_node *layers = parse("[{type: dense, name: a, units: 3}, {type: dense, name: b, units: 3}, {type: dense, name: c, units: 2}]");
    larch_model *m = NULL;
    larch_node *l = parse("{type: center}");
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 3}, layers, l, NULL, 1), LARCH_ERR_CONFIG, "center loss needs the number of classes");
    larch_node_free(l);
    l = parse("{type: arcface, margin: 4}");
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 3}, layers, l, NULL, 1), LARCH_ERR_CONFIG, "at most pi");
    larch_node_free(l);
    l = parse("{type: triplet, mining: hardest}");
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 3}, layers, l, NULL, 1), LARCH_ERR_CONFIG, "mining");
    larch_node_free(l);
    l = parse("{type: supcon, temperature: 0}");
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 3}, layers, l, NULL, 1), LARCH_ERR_CONFIG, "temperature");
    larch_node_free(l);
    l = parse("{type: triplet, weighting: uncertainty}");
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 3}, layers, l, NULL, 1), LARCH_ERR_CONFIG, "fixed weight");
    larch_node_free(l);
    /* the typed API: center without classes */
    CHECK_OK(larch_model_create(&m, (larch_shape){1, 1, 3}));
    larch_dense_opts d = LARCH_DENSE_DEFAULTS;
    d.units = 2;
    CHECK_OK(larch_model_add_dense(m, "e", NULL, &d));
    larch_loss_opts lo = LARCH_LOSS_DEFAULTS;
    lo.type = LARCH_LOSS_CENTER;
    CHECK_FAIL(larch_model_add_loss(m, &lo), LARCH_ERR_INVALID, "classes = 0 is out of range");
    lo.type = LARCH_LOSS_TRIPLET;
    lo.mining = (larch_mining)7;
    CHECK_FAIL(larch_model_add_loss(m, &lo), LARCH_ERR_INVALID, "not a larch_mining");
    larch_model_free(m);
    /* tie: shapes, names, the pair list */
    larch_node *pen = parse("[{type: tie, coef: 0.1, layers: [[a, c]]}]");
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 3}, layers, NULL, pen, 1), LARCH_ERR_CONFIG,
               "layers 'a' and 'c' differ: a.weight is (3, 3) but c.weight is (2, 3)");
    larch_node_free(pen);
    pen = parse("[{type: tie, coef: 0.1, layers: [[a, nope]]}]");
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 3}, layers, NULL, pen, 1), LARCH_ERR_CONFIG, "'nope' is not a layer");
    larch_node_free(pen);
    pen = parse("[{type: tie, coef: 0.1, layers: [[a, a]]}]");
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 3}, layers, NULL, pen, 1), LARCH_ERR_CONFIG, "to itself");
    larch_node_free(pen);
    pen = parse("[{type: tie, coef: 0.1}]");
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 3}, layers, NULL, pen, 1), LARCH_ERR_CONFIG, "needs a list of 1 to");
    larch_node_free(pen);
    pen = parse("[{type: tie, coef: 0.1, layers: [[a]]}]");
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 3}, layers, NULL, pen, 1), LARCH_ERR_CONFIG, "pair of layer names");
    larch_node_free(pen);
    pen = parse("[{type: l2, coef: 0.1, layers: [[a, b]]}]");
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 3}, layers, NULL, pen, 1), LARCH_ERR_CONFIG, "only a penalty of type tie");
    larch_node_free(pen);
    larch_node_free(layers);
    layers = parse("[{type: dense, name: loss_centers, units: 3}]");
    l = parse("{type: center, classes: 3}");
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 3}, layers, l, NULL, 1), LARCH_ERR_CONFIG, "reserved");
    larch_node_free(l);
    larch_node_free(layers);
}

/* Soft sharing: the tie penalty's value and gradient, and gradient descent
 * on it alone pulls the pair together (and leaves other layers alone). */
static void tie_case(void)
{
    larch_node *layers = parse("[{type: dense, name: ta, units: 3}, {type: dense, name: tb, input: input, units: 3},"
                               " {type: dense, name: other, input: input, units: 3}]");
    larch_node *pen = parse("[{type: tie, coef: 0.3, layers: [[ta, tb]]}]");
    larch_model *m = NULL;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 4}, layers, NULL, pen, 3));
    if (!m) return;
    int wa = larch_model_param_index(m, "ta.weight"), wb = larch_model_param_index(m, "tb.weight");
    int ba = larch_model_param_index(m, "ta.bias"), bb = larch_model_param_index(m, "tb.bias");
    int wo = larch_model_param_index(m, "other.weight");
    for (int i = 0; i < 3; i++) { m->param[m->params[ba].offset + i] = 0.1f * i; m->param[m->params[bb].offset + i] = -0.2f; }
    double want = 0;
    for (int k = 0; k < 2; k++) {
        const larch_param *a = &m->params[k ? ba : wa], *b = &m->params[k ? bb : wb];
        for (size_t j = 0; j < a->size; j++) { double d = m->param[a->offset + j] - m->param[b->offset + j]; want += d * d; }
    }
    memset(m->grad, 0, m->n_floats * sizeof(float));
    CHECK_NEAR(larch_model_penalty(m, 1), 0.3 * want, 1e-5);
    const double eps = 1e-3;
    int bad = 0;
    for (size_t i = 0; i < m->n_floats; i++) {
        float keep = m->param[i];
        m->param[i] = keep + (float)eps; double fp = larch_model_penalty(m, 0);
        m->param[i] = keep - (float)eps; double fm = larch_model_penalty(m, 0);
        m->param[i] = keep;
        double num = (fp - fm) / (2 * eps);
        if (fabs(num - m->grad[i]) > 1e-2 * fmax(fabs(num), 1e-2)) { bad++; fprintf(stderr, "tie: g[%zu] %g vs %g\n", i, m->grad[i], num); }
    }
    CHECK(bad == 0, "tie: %d penalty gradient coordinates disagree", bad);
    float other[12];
    memcpy(other, m->param + m->params[wo].offset, sizeof other);
    double before = larch_model_penalty(m, 0);
    for (int it = 0; it < 20; it++) {                /* plain gradient descent on the penalty */
        memset(m->grad, 0, m->n_floats * sizeof(float));
        larch_model_penalty(m, 1);
        for (size_t i = 0; i < m->n_floats; i++) m->param[i] -= 0.5f * m->grad[i];
    }
    double after = larch_model_penalty(m, 0);
    CHECK(after < 1e-3 * before, "tie pulls the pair together: penalty %g -> %g", before, after);
    CHECK(memcmp(other, m->param + m->params[wo].offset, sizeof other) == 0, "tie leaves other layers alone");
    larch_model_free(m);
    larch_node_free(layers);
    larch_node_free(pen);
}

/* The gather in one process: a fake allgather for 2 "ranks" whose other
 * rank holds the same samples (its record is this rank's, placed at the
 * other position of the global batch). The loss and this rank's gradient
 * rows must then be those of one process scoring the doubled batch. The
 * hooks are set after the plan, so the gather buffers grow there. */
typedef struct { int rank; uint32_t n; } fake_gather;
static void fake_allgather(void *ctx, const void *send, size_t bytes, void *recv)
{
    const fake_gather *f = ctx;
    memcpy((char *)recv + (size_t)f->rank * bytes, send, bytes);
    char *other = (char *)recv + (size_t)(1 - f->rank) * bytes;
    memcpy(other, send, bytes);
    uint32_t s0;
    memcpy(&s0, other + 4, 4);               /* the record's sample0 (metric_loss.c) */
    s0 = f->rank == 0 ? s0 + f->n : s0 - f->n;
    memcpy(other + 4, &s0, 4);
}

static void gather_case(const char *loss_yaml)
{
    enum { n = 4, in = 3, d = 4 };
    larch_node *layers = parse("[{type: dense, units: 4}, {type: l2norm}]"), *loss = parse(loss_yaml);
    larch_model *one = NULL, *mr = NULL;
    CHECK_OK(larch_model_build(&one, (larch_shape){1, 1, in}, layers, loss, NULL, 3));
    CHECK_OK(larch_model_build(&mr, (larch_shape){1, 1, in}, layers, loss, NULL, 3));
    if (!one || !mr) return;
    CHECK_OK(larch_model_plan(one, 2 * n));
    CHECK_OK(larch_model_plan(mr, n));
    float x[2 * n * in];
    int32_t y[2 * n] = {0, 1, 0, 2, 0, 1, 0, 2};
    for (int i = 0; i < n * in; i++) x[i] = x[i + n * in] = sinf(1.7f * i) + 0.3f;
    larch_batch b2 = {.n = 2 * n, .x = x, .label = {y}};
    larch_pass p2 = {.n = 2 * n};
    larch_model_forward(one, &b2, &p2);
    larch_loss_stats s2;
    larch_model_loss(one, &b2, 1.0f / (2 * n), &s2);
    const float *g2 = one->node_dy[one->n_layers];
    for (int rank = 0; rank < 2; rank++) {
        fake_gather f = {rank, n};
        larch_comm_hooks h = {.allgather = fake_allgather, .ctx = &f, .ranks = 2};
        CHECK_OK(larch_model_set_loss_comm(mr, &h));
        larch_batch b = {.n = n, .x = x, .label = {y}, .sample0 = (uint32_t)(rank * n)};
        larch_pass p = {.n = n, .sample0 = b.sample0};
        larch_model_forward(mr, &b, &p);
        larch_loss_stats s1;
        larch_model_loss(mr, &b, 1.0f / (2 * n), &s1);
        CHECK_NEAR(s1.loss_sum * 2, s2.loss_sum, 1e-5);
        CHECK(s1.count == n, "%s: rank %d reports its %d samples (%ld)", loss_yaml, rank, n, s1.count);
        const float *g1 = mr->node_dy[mr->n_layers];
        double worst = 0;
        for (int i = 0; i < n * d; i++) worst = fmax(worst, fabs(g1[i] - g2[rank * n * d + i]));
        CHECK(worst < 1e-6 && s2.loss_sum > 0, "%s: rank %d's gradient rows = one process's (worst %g)", loss_yaml, rank, worst);
        CHECK_OK(larch_model_set_loss_comm(mr, NULL));
    }
    larch_model_free(one);
    larch_model_free(mr);
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

    /* metric learning */
    const char *emb = "[{type: dense, units: 4}]", *emb_n = "[{type: dense, units: 4}, {type: l2norm}]";
    metric_case("triplet batch_hard", emb, "{type: triplet, margin: 1.0}", 1e-3);
    metric_case("triplet batch_hard l2norm", emb_n, "{type: triplet, margin: 0.5}", 1e-3);
    metric_case("triplet batch_hard soft", emb, "{type: triplet, soft_margin: true}", 1e-3);
    metric_case("triplet batch_all", emb, "{type: triplet, mining: batch_all, margin: 1.0}", 1e-3);
    metric_case("triplet batch_all soft", emb_n, "{type: triplet, mining: batch_all, soft_margin: true}", 1e-3);
    metric_case("contrastive", emb, "{type: contrastive, margin: 2.0}", 1e-2);
    metric_case("supcon", emb_n, "{type: supcon, temperature: 0.5}", 1e-3);
    metric_case("center (alpha 0: fixed centers)", emb, "{type: center, classes: 3, alpha: 0}", 1e-3);
    metric_case("center + softmax_ce", "[{type: dense, name: e, units: 4}, {type: dense, name: logits, units: 3}]",
                "[{name: ce, input: logits}, {name: center, type: center, input: e, classes: 3, alpha: 0, weight: 0.1}]", 1e-3);
    metric_case("arcface", "[{type: dense, units: 4}, {type: cosine, units: 3}]", "{type: arcface, scale: 4, margin: 0.5}", 1e-3);
    metric_case("arcface large margin (fallback)", "[{type: dense, units: 4}, {type: cosine, units: 3}]",
                "{type: arcface, scale: 3, margin: 2.5}", 1e-3);
    metric_case("two metric heads", "[{type: dense, name: e, units: 4}, {type: l2norm, name: n}]",
                "[{name: t, type: triplet, input: n, margin: 0.4}, {name: s, type: supcon, input: n, weight: 0.5}]", 1e-3);
    metric_values();
    gather_case("{type: triplet, margin: 0.5}");
    gather_case("{type: supcon}");
    gather_case("{type: contrastive, margin: 1.5}");
    center_update_case();
    metric_errors();
    tie_case();

    penalty_case("{type: l2, coef: 0.3}", 2, 0);
    penalty_case("{type: l1, coef: 0.3}", 1, 0);
    penalty_case("{type: lq, coef: 0.3, q: 1.5}", 1.5, 0);
    penalty_case("{type: lq, coef: 0.3, q: 3, apply_to: all}", 3, 1);
    return check_result("test_loss_grad");
}
