/* test_flow.c - normalizing flows (src/nn/flow.c, docs/flows.md):
 *   - f^-1(f(x)) = x to 1e-4 for every flow layer and a whole multi-scale
 *     model (dequantize included, on grid inputs);
 *   - log|det J| of each layer and of a model against the determinant of a
 *     central-difference Jacobian (LU in double), on tiny inputs;
 *   - the flow_nll loss: its value against a direct computation, and its
 *     gradients (through z and the log-determinants) with respect to the
 *     input and every parameter against finite differences of the loss;
 *   - per-layer gradient checks of y (tests/gradcheck.h);
 *   - dequantize (plain and with the logit transform) is a normalized
 *     discrete model: over the noise u, the mean of 2^(-bits) of level k
 *     (D = 1, z scored by N(0, 1)) is P(k), the normal mass of the bin's
 *     image (a wrong log-determinant or constant misses it);
 *   - actnorm's data-dependent init over the global batch through a
 *     simulated two-rank comm hook equals the one-process init;
 *   - errors: odd squeeze, one-channel coupling/split, bad options, the
 *     inverse of a model that is not a flow. */
#include "gradcheck.h"
#include "nn/model_internal.h"

#include <stdlib.h>

static larch_shape S(int h, int w, int c) { return (larch_shape){h, w, c}; }

static larch_model *build(const char *yaml, larch_shape in, const char *loss_yaml, int plan_n)
{
    larch_node *layers = NULL, *loss = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse(yaml, "test", &layers));
    if (loss_yaml) CHECK_OK(larch_cfg_parse(loss_yaml, "test", &loss));
    larch_status s = larch_model_build(&m, in, layers, loss, NULL, 5);
    CHECK(s == LARCH_OK, "build %s: %s", yaml, larch_errmsg());
    larch_node_free(layers);
    larch_node_free(loss);
    if (s) return NULL;
    larch_model_set_input_grad(m, 1);
    if (plan_n) CHECK_OK(larch_model_plan(m, plan_n));
    return m;
}

/* Adds amp * N(0, 1) to every parameter (zero-initialized nets become non-trivial). */
static void perturb(larch_model *m, float amp, uint64_t seed)
{
    larch_rng r;
    larch_rng_init(&r, seed, LARCH_RNG_USER, 99, 0);
    for (int i = 0; i < larch_model_n_params(m); i++) {
        float *w = larch_model_param_data(m, i);
        for (size_t j = 0; j < larch_model_param(m, i)->size; j++) w[j] += amp * larch_rng_normal(&r);
    }
}

static void fill(float *x, size_t n, uint64_t seed, int grid)
{
    larch_rng r;
    larch_rng_init(&r, seed, LARCH_RNG_USER, 1, 1);
    for (size_t i = 0; i < n; i++) x[i] = grid ? (float)larch_rng_below(&r, 256) / 255.0f : larch_rng_normal(&r);
}

/* log|det| of a (D, D) matrix by LU with partial pivoting, in double. */
static double logabsdet(double *a, int D)
{
    double s = 0;
    for (int k = 0; k < D; k++) {
        int b = k;
        for (int i = k + 1; i < D; i++) if (fabs(a[i * D + k]) > fabs(a[b * D + k])) b = i;
        for (int j = 0; j < D; j++) { double t = a[k * D + j]; a[k * D + j] = a[b * D + j]; a[b * D + j] = t; }
        s += log(fabs(a[k * D + k]));
        for (int i = k + 1; i < D; i++) {
            double f = a[i * D + k] / a[k * D + k];
            for (int j = k; j < D; j++) a[i * D + j] -= f * a[k * D + j];
        }
    }
    return s;
}

/* Runs one training forward (actnorm init) then checks, in eval mode:
 * round trip, and (when jac) logdet against the brute-force Jacobian. */
static void layer_case(const char *label, const char *yaml, larch_shape in, int jac, int grid)
{
    const int n = 3;
    larch_model *m = build(yaml, in, "{type: flow_nll}", n);
    if (!m) return;
    perturb(m, 0.05f, 3);
    CHECK(larch_model_is_flow(m), "%s: is a flow", label);
    int last = larch_model_n_layers(m);
    size_t D = larch_shape_size(in), Dz = larch_shape_size(larch_model_node_shape(m, last));
    float *x = malloc(n * D * sizeof *x), *xr = malloc(n * D * sizeof *xr), *z = malloc(n * Dz * sizeof *z);
    fill(x, n * D, 7, grid);
    larch_batch b = {.n = n, .x = x};
    larch_pass tr = {.n = n, .train = 1, .seed = 9, .step = 1}, ev = tr;
    ev.train = 0;
    larch_model_forward(m, &b, &tr);
    larch_model_forward(m, &b, &ev);
    memcpy(z, larch_model_node_output(m, last), n * Dz * sizeof *z);
    larch_model_set_flow_temperature(m, -1.0f);
    CHECK_OK(larch_model_inverse(m, z, xr, &ev));
    double err = 0;
    for (size_t i = 0; i < n * D; i++) err = fmax(err, fabs(xr[i] - x[i]));
    CHECK(err <= 1e-4, "%s: |f^-1(f(x)) - x| = %g", label, err);
    printf("%-28s round trip max err %.2e", label, err);
    if (jac) {   /* sample 0: J (Dz = D) by central differences */
        const double eps = 1e-3;
        double *J = malloc(D * D * sizeof *J);
        float ld[3];
        larch_batch b1 = {.n = 1, .x = x};
        larch_pass p1 = ev;
        p1.n = 1;
        larch_model_forward(m, &b1, &p1);
        larch_model_flow_logdet(m, 1, ld);
        float *yp = malloc(D * sizeof *yp);
        for (size_t j = 0; j < D; j++) {
            float keep = x[j];
            x[j] = keep + (float)eps;
            larch_model_forward(m, &b1, &p1);
            memcpy(yp, larch_model_node_output(m, last), D * sizeof *yp);
            x[j] = keep - (float)eps;
            larch_model_forward(m, &b1, &p1);
            const float *ym = larch_model_node_output(m, last);
            for (size_t i = 0; i < D; i++) J[i * D + j] = ((double)yp[i] - ym[i]) / (2 * eps);
            x[j] = keep;
        }
        double ref = logabsdet(J, (int)D);
        CHECK(fabs(ref - ld[0]) <= 2e-3 * (1 + fabs(ref)), "%s: logdet %g, brute-force Jacobian %g", label, ld[0], ref);
        printf(", logdet %.5f vs Jacobian %.5f", ld[0], ref);
        free(J);
        free(yp);
    }
    printf("\n");
    free(x); free(xr); free(z);
    larch_model_free(m);
}

/* The loss and its gradient (input and every parameter) against finite
 * differences of the loss itself: covers d logdet / d(theta, x). */
static void nll_grad(const char *label, const char *yaml, larch_shape in)
{
    const int n = 2;
    larch_model *m = build(yaml, in, "{type: flow_nll}", n);
    if (!m) return;
    perturb(m, 0.1f, 4);
    size_t D = larch_shape_size(in), Dz;
    int last = larch_model_n_layers(m);
    Dz = larch_shape_size(larch_model_node_shape(m, last));
    float *x = malloc(n * D * sizeof *x), *dx = malloc(n * D * sizeof *dx);
    fill(x, n * D, 8, 0);
    larch_batch b = {.n = n, .x = x};
    larch_pass tr = {.n = n, .train = 1, .seed = 9}, ev = tr;
    ev.train = 0;
    larch_model_forward(m, &b, &tr);   /* actnorm init */
    perturb(m, 0.1f, 5);
    /* value: direct */
    larch_model_forward(m, &b, &ev);
    float ld[2];
    larch_model_flow_logdet(m, n, ld);
    double direct = 0;
    const float *z = larch_model_node_output(m, last);
    for (int i = 0; i < n; i++) {
        double q = 0;
        for (size_t j = 0; j < Dz; j++) q += (double)z[i * Dz + j] * z[i * Dz + j];
        direct += (0.5 * q + 0.5 * Dz * log(2 * M_PI) - ld[i]) / (D * log(2.0));
    }
    larch_loss_stats st;
    double v = larch_model_loss(m, &b, 1.0f / n, &st);
    CHECK(fabs(v - direct) <= 1e-5 * (1 + fabs(direct)), "%s: loss %g, direct %g", label, v, direct);
    CHECK(st.count == n, "%s: counted %ld", label, st.count);
    larch_model_backward(m, &ev);
    memcpy(dx, larch_model_node_grad(m, 0), n * D * sizeof *dx);
    size_t nf;
    float *g = larch_model_flat_grads(m, &nf), *gw = malloc(nf * sizeof *gw);
    memcpy(gw, g, nf * sizeof *gw);
    const double h = 2e-3;
    int bad = 0, probes = 0;
    larch_rng r;
    larch_rng_init(&r, 3, LARCH_RNG_USER, 5, 5);
    for (int t = -1; t < larch_model_n_params(m); t++) {
        float *w = t < 0 ? x : larch_model_param_data(m, t);
        const float *ga = t < 0 ? dx : gw + larch_model_param(m, t)->offset;
        size_t len = t < 0 ? n * D : larch_model_param(m, t)->size;
        for (int k = 0; k < 12; k++) {
            size_t j = larch_rng_below(&r, (uint32_t)len);
            float keep = w[j];
            w[j] = keep + (float)h;
            larch_model_forward(m, &b, &ev);
            double fp = larch_model_loss(m, &b, 0.0f, NULL) / n;
            w[j] = keep - (float)h;
            larch_model_forward(m, &b, &ev);
            double fm = larch_model_loss(m, &b, 0.0f, NULL) / n;
            w[j] = keep;
            larch_model_forward(m, &b, &ev);
            double f0 = larch_model_loss(m, &b, 0.0f, NULL) / n;
            double num = (fp - fm) / (2 * h), ana = ga[j];
            probes++;
            /* a relu kink of the coupling net within h: one of the one-sided differences holds (as in gradcheck.h) */
            if (!gradcheck_close(num, ana, 3e-2) && !gradcheck_close((fp - f0) / h, ana, 3e-2) &&
                !gradcheck_close((f0 - fm) / h, ana, 3e-2)) {
                bad++;
                fprintf(stderr, "%s: %s[%zu]: analytic %g numeric %g\n", label,
                        t < 0 ? "input" : larch_model_param(m, t)->name, j, ana, num);
            }
        }
    }
    CHECK(bad == 0, "%s: %d of %d loss-gradient probes differ", label, bad, probes);
    printf("%-28s flow_nll %.4f bits/dim, gradient probes %d, bad %d\n", label, v / n, probes, bad);
    free(x); free(dx); free(gw);
    larch_model_free(m);
}

/* Per-layer gradient of sum r y (tests/gradcheck.h), with perturbed parameters. */
static void ygrad(const char *label, const char *yaml, larch_shape in)
{
    larch_model *m = build(yaml, in, NULL, 0);
    if (!m) return;
    perturb(m, 0.1f, 6);
    gradcheck_opts o = {.n = 2, .train = 0};
    int bad = gradcheck_model(label, m, &o);
    printf("%-28s gradcheck of y: %d bad\n", label, bad);
    larch_model_free(m);
}

static double Phi(double y) { return 0.5 * erfc(-y / sqrt(2.0)); }

/* [{dequantize, levels L, logit a}] on one pixel, then N(0, 1): the discrete
 * model P(k) = Phi(y(k + 1)) - Phi(y(k)), y(v) the map of v = (k + u) / L.
 * exp(-loss nats) = p(v) / L, so its mean over u in [0, 1) is P(k). */
static void dequantize_mass(const char *label, int L, double a)
{
    const int n = 4096;
    char yaml[128];
    snprintf(yaml, sizeof yaml, "[{type: dequantize, levels: %d, logit: %g}]", L, a);
    larch_model *m = build(yaml, S(1, 1, 1), "{type: flow_nll}", n);
    if (!m) return;
    float *x = malloc(n * sizeof *x), *ld = malloc(n * sizeof *ld);
    double worst = 0, total = 0;
    for (int k = 0; k < L; k++) {
        for (int i = 0; i < n; i++) x[i] = (float)k / (float)(L - 1);
        larch_batch b = {.n = n, .x = x};
        larch_pass p = {.n = n, .train = 1, .seed = 11, .step = (uint32_t)k};
        larch_model_forward(m, &b, &p);
        larch_model_flow_logdet(m, n, ld);
        const float *z = larch_model_node_output(m, 1);
        double mean = 0;
        for (int i = 0; i < n; i++) mean += exp(-0.5 * (double)z[i] * z[i] - 0.5 * log(2 * M_PI) + ld[i]) / n;
        double lo = a > 0 ? a + (1 - 2 * a) * k / L : (double)k / L, hi = a > 0 ? a + (1 - 2 * a) * (k + 1) / L : (k + 1.0) / L;
        double ref = a > 0 ? Phi(log(hi / (1 - hi))) - Phi(log(lo / (1 - lo))) : Phi(hi - 0.5) - Phi(lo - 0.5);
        worst = fmax(worst, fabs(mean - ref) / ref);
        total += mean;
    }
    CHECK(worst < 0.03, "%s: mean 2^-bits per level off P(k) by up to %.1f%%", label, 100 * worst);
    printf("%-28s P(k) from 2^-bits within %.2f%% (sum over levels %.4f)\n", label, 100 * worst, total);
    free(x); free(ld);
    larch_model_free(m);
}

typedef struct { double mine[64], *other; } fake_rank;
static void fake_allreduce(void *ctx, double *buf, int n)
{
    fake_rank *f = ctx;
    memcpy(f->mine, buf, (size_t)n * sizeof *buf);
    if (f->other) for (int i = 0; i < n; i++) buf[i] += f->other[i];
}

static void actnorm_ranks(void)
{
    const int n = 6, h = 3, C = 3, D = 2 * 2 * C;
    larch_model *full = build("[{type: actnorm, name: an}]", S(2, 2, C), NULL, n);
    larch_model *r0 = build("[{type: actnorm, name: an}]", S(2, 2, C), NULL, h);
    larch_model *r1 = build("[{type: actnorm, name: an}]", S(2, 2, C), NULL, h);
    if (!full || !r0 || !r1) return;
    float x[6 * 12];
    for (int i = 0; i < n * D; i++) x[i] = sinf(0.7f * i) * 2.0f + 0.3f * (i % C);
    larch_batch b = {.n = n, .x = x}, b0 = {.n = h, .x = x}, b1 = {.n = h, .x = x + h * D};
    larch_pass p = {.n = n, .train = 1};
    larch_model_forward(full, &b, &p);
    /* one process: outputs standardized per channel */
    double worst = 0;
    for (int c = 0; c < C; c++) {
        double s = 0, s2 = 0;
        for (int r = 0; r < n * 4; r++) { double v = full->node_y[1][r * C + c]; s += v; s2 += v * v; }
        worst = fmax(worst, fmax(fabs(s / (n * 4)), fabs(s2 / (n * 4) - 1)));
    }
    CHECK(worst < 1e-4, "actnorm init: |mean|, |var - 1| up to %g", worst);
    fake_rank f0 = {{0}, NULL}, f1 = {{0}, NULL};
    larch_comm_hooks h0 = {fake_allreduce, &f0, NULL, 2}, h1 = {fake_allreduce, &f1, NULL, 2};
    larch_pass p0 = {.n = h, .train = 1, .comm = &h0}, p1 = {.n = h, .train = 1, .comm = &h1};
    larch_model_forward(r1, &b1, &p1);                  /* records rank 1's local sums */
    f0.other = f1.mine;
    larch_model_forward(r0, &b0, &p0);                  /* rank 0: global statistics */
    f1.other = f0.mine;
    r1->buffer[r1->buffers[0].offset] = 0.0f;          /* rank 1 again, knowing rank 0's sums */
    larch_model_forward(r1, &b1, &p1);
    double wd = 0;
    for (size_t k = 0; k < full->n_floats; k++) {
        wd = fmax(wd, fabs(r0->param[k] - full->param[k]));
        wd = fmax(wd, fabs(r1->param[k] - full->param[k]));
    }
    CHECK(wd < 1e-6, "actnorm init over 2 simulated ranks differs from 1 rank by %g", wd);
    /* initialized once: a second training forward keeps the parameters */
    float keep = full->param[0];
    x[0] += 5.0f;
    larch_model_forward(full, &b, &p);
    CHECK(full->param[0] == keep, "actnorm re-initialized on the second batch");
    printf("actnorm init: standardized to %.1e, 2 simulated ranks vs 1: %.1e\n", worst, wd);
    larch_model_free(full); larch_model_free(r0); larch_model_free(r1);
}

static void fail_build(const char *yaml, larch_shape in, const char *loss, const char *needle)
{
    larch_node *layers = NULL, *ln = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse(yaml, "test", &layers));
    if (loss) CHECK_OK(larch_cfg_parse(loss, "test", &ln));
    larch_status s = larch_model_build(&m, in, layers, ln, NULL, 1);
    CHECK(s != LARCH_OK && strstr(larch_errmsg(), needle), "%s: wanted an error with '%s', got %d '%s'", yaml, needle,
          (int)s, larch_errmsg());
    larch_model_free(m);
    larch_node_free(layers);
    larch_node_free(ln);
}

static void errors(void)
{
    fail_build("[{type: squeeze, name: sq}]", S(3, 4, 1), NULL, "layer 'sq' (squeeze): input (3, 4, 1): height and width must be even");
    fail_build("[{type: coupling, name: cp}]", S(4, 4, 1), NULL, "layer 'cp' (coupling): input (4, 4, 1) has 1 channel");
    fail_build("[{type: split, name: sp}]", S(4, 4, 1), NULL, "layer 'sp' (split)");
    fail_build("[{type: coupling, hidden: 0}]", S(4, 4, 2), NULL, "hidden");
    fail_build("[{type: dequantize, levels: 1}]", S(4, 4, 2), NULL, "levels");
    fail_build("[{type: dequantize, logit: 0.2}]", S(4, 4, 2), NULL, "logit");
    fail_build("[{type: dequantize, logit: -0.01}]", S(4, 4, 2), NULL, "logit");
    fail_build("[{type: actnorm}]", S(4, 4, 2), "{type: flow_nll, weighting: uncertainty}", "flow_nll");
    larch_model *m = build("[{type: actnorm}, {type: dense, name: fc, units: 3}]", S(2, 2, 2), NULL, 2);
    if (!m) return;
    CHECK(!larch_model_is_flow(m), "dense model is not a flow");
    float z[6], x[16];
    larch_pass p = {.n = 2};
    CHECK_FAIL(larch_model_inverse(m, z, x, &p), LARCH_ERR_INVALID, "layer 'fc' (dense) is not invertible");
    p.n = 5;
    CHECK_FAIL(larch_model_inverse(m, z, x, &p), LARCH_ERR_INVALID, "plan the model for 5 samples");
    larch_model_free(m);
}

int main(void)
{
    const char *glow = "[{type: dequantize}, {type: squeeze}, {type: actnorm}, {type: invconv}, {type: coupling, hidden: 8},"
                       " {type: split}, {type: squeeze}, {type: actnorm}, {type: invconv}, {type: coupling, hidden: 8}]";
    const char *glow_logit = "[{type: dequantize, logit: 1e-6}, {type: squeeze}, {type: actnorm}, {type: invconv},"
                             " {type: coupling, hidden: 8}, {type: split}, {type: squeeze}, {type: actnorm}, {type: invconv},"
                             " {type: coupling, hidden: 8}]";
    const char *nosplit = "[{type: squeeze}, {type: actnorm}, {type: invconv}, {type: coupling, hidden: 6},"
                          " {type: actnorm}, {type: invconv}, {type: coupling, hidden: 6}]";
    layer_case("dequantize", "[{type: dequantize}]", S(2, 2, 2), 0, 1);
    layer_case("dequantize logit", "[{type: dequantize, logit: 1e-6}]", S(2, 2, 2), 0, 1);
    dequantize_mass("dequantize mass", 4, 0);
    dequantize_mass("dequantize logit mass", 4, 0.05);
    dequantize_mass("dequantize logit 1e-6 mass", 8, 1e-6);
    layer_case("actnorm", "[{type: actnorm}]", S(2, 2, 3), 1, 0);
    layer_case("invconv", "[{type: invconv}]", S(2, 2, 5), 1, 0);
    layer_case("coupling", "[{type: coupling, hidden: 6}]", S(3, 2, 4), 1, 0);
    layer_case("coupling odd channels", "[{type: coupling, hidden: 5}]", S(2, 2, 3), 1, 0);
    layer_case("squeeze", "[{type: squeeze}]", S(4, 2, 2), 1, 0);
    layer_case("split", "[{type: split}]", S(2, 2, 5), 0, 0);
    layer_case("model without split", nosplit, S(4, 4, 1), 1, 0);
    layer_case("glow model (dequant, split)", glow, S(8, 8, 1), 0, 1);
    layer_case("glow model, logit", glow_logit, S(8, 8, 1), 0, 1);

    nll_grad("nll actnorm", "[{type: actnorm}]", S(2, 2, 3));
    nll_grad("nll invconv", "[{type: invconv}]", S(2, 2, 4));
    nll_grad("nll coupling", "[{type: coupling, hidden: 5}]", S(3, 3, 4));
    /* 46 x 46 pixels: one sample per GEMM chunk, so the chunked path runs 2-3 chunks */
    layer_case("coupling, chunked", "[{type: coupling, hidden: 2}]", S(46, 46, 2), 0, 0);
    nll_grad("nll coupling, chunked", "[{type: coupling, hidden: 2}]", S(46, 46, 2));
    nll_grad("nll split", "[{type: split}]", S(2, 3, 5));
    nll_grad("nll whole model", "[{type: squeeze}, {type: actnorm}, {type: invconv}, {type: coupling, hidden: 4},"
                                " {type: split}, {type: actnorm}, {type: invconv}, {type: coupling, hidden: 4}]", S(4, 4, 2));

    ygrad("y actnorm", "[{type: actnorm}]", S(2, 3, 3));
    ygrad("y invconv", "[{type: invconv}]", S(2, 3, 4));
    ygrad("y coupling", "[{type: coupling, hidden: 5}]", S(3, 3, 4));
    ygrad("y squeeze", "[{type: squeeze}]", S(2, 4, 3));
    ygrad("y split", "[{type: split}]", S(3, 2, 4));
    gradcheck_opts tr = {.n = 3, .train = 1};   /* training mode: actnorm initializes on the first forward */
    gradcheck("y glow block (train)", "[{type: squeeze}, {type: actnorm}, {type: invconv}, {type: coupling, hidden: 4}]",
              S(4, 2, 2), &tr);

    actnorm_ranks();
    errors();
    return check_result("test_flow");
}
