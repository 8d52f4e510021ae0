/* test_ntk.c - neural tangent kernels (src/nn/ntk.c, docs/ntk.md):
 * - Jacobian rows against central finite differences of each output, on a
 *   smooth MLP with biases (tanh, gelu) and on a small CNN, and the column
 *   scale multiplying them;
 * - the analytic NTK and NNGP of a ReLU MLP against Monte-Carlo estimates
 *   from wide random networks (the NNGP: the covariance of the outputs over
 *   networks and output units; the NTK: the init-scaled empirical kernel
 *   averaged over networks), and the linear model's kernel exactly;
 * - the eigenvalues against a known spectrum, kernel regression
 *   interpolating its training targets;
 * - the errors: a non-MLP model for the analytic kernels, the init scale of
 *   a conv layer, an output no loss reaches, an unplanned model. */
#include "check.h"
#include "nn/ntk.h"
#include "nn/model_internal.h"
#include "larch/larch.h"

#include <math.h>
#include <stdlib.h>

static larch_model *build(const char *layers, larch_shape in, uint64_t seed)
{
    larch_node *l = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse(layers, "<layers>", &l));
    CHECK_OK(larch_model_build(&m, in, l, NULL, NULL, seed));
    larch_node_free(l);
    return m;
}

static void fill(float *x, size_t n, uint64_t seed)
{
    larch_rng r;
    larch_rng_init(&r, seed, LARCH_RNG_USER, 3, 0);
    for (size_t i = 0; i < n; i++) x[i] = larch_rng_normal(&r);
}

/* output k of the last layer for sample x (batch 1, eval mode), in double */
static double out_k(larch_model *m, float *x, int k)
{
    larch_batch b = {0};
    b.n = 1;
    b.x = x;
    larch_pass p = {.n = 1, .train = 0};
    larch_model_forward(m, &b, &p);
    return larch_model_node_output(m, larch_model_n_layers(m))[k];
}

static void jacobian_fd(const char *label, const char *layers, larch_shape in)
{
    larch_model *m = build(layers, in, 5);
    if (!m) return;
    CHECK_OK(larch_model_plan(m, 4));
    const int n = 2, node = larch_model_n_layers(m), K = (int)larch_shape_size(larch_model_node_shape(m, node));
    const size_t dim = larch_shape_size(in);
    size_t P = 0;
    float *theta = larch_model_flat_params(m, &P);
    float *x = malloc((size_t)n * dim * sizeof *x), *J = malloc((size_t)n * K * P * sizeof *J);
    float *Js = malloc((size_t)n * K * P * sizeof *Js), *cs = malloc(P * sizeof *cs);
    fill(x, (size_t)n * dim, 9);
    for (size_t j = 0; j < P; j++) cs[j] = 0.5f + (float)(j % 7) * 0.25f;
    CHECK_OK(larch_ntk_jacobian(m, node, x, n, NULL, J, P));
    CHECK_OK(larch_ntk_jacobian(m, node, x, n, cs, Js, P));
    int bad = 0, checked = 0, bad_scale = 0;
    for (size_t r = 0; r < (size_t)n * K; r++)
        for (size_t j = 0; j < P; j++)
            if (Js[r * P + j] != J[r * P + j] * cs[j]) bad_scale++;
    larch_rng rng;
    larch_rng_init(&rng, 17, LARCH_RNG_USER, 5, 0);
    const double eps = 1e-2;
    for (int q = 0; q < 40; q++) {
        int p = (int)larch_rng_below(&rng, (uint32_t)larch_model_n_params(m));
        const larch_param *pr = larch_model_param(m, p);
        size_t j = pr->offset + larch_rng_below(&rng, (uint32_t)pr->size);
        int i = (int)larch_rng_below(&rng, n), k = (int)larch_rng_below(&rng, (uint32_t)K);
        float keep = theta[j];
        theta[j] = keep + (float)eps;
        double fp = out_k(m, x + (size_t)i * dim, k);
        theta[j] = keep - (float)eps;
        double fm = out_k(m, x + (size_t)i * dim, k);
        theta[j] = keep;
        double num = (fp - fm) / (2 * eps), ana = J[((size_t)i * K + k) * P + j];
        double sc = fabs(num) + fabs(ana) > 1e-2 ? fabs(num) + fabs(ana) : 1e-2;
        checked++;
        if (fabs(num - ana) > 2e-2 * sc) {
            bad++;
            fprintf(stderr, "%s: %s[%zu] sample %d output %d: analytic %g, numeric %g\n", label, pr->name,
                    j - pr->offset, i, k, ana, num);
        }
    }
    CHECK(bad == 0, "%s: %d of %d Jacobian entries differ from finite differences", label, bad, checked);
    CHECK(bad_scale == 0, "%s: %d scaled entries differ from J * scale", label, bad_scale);
    free(x); free(J); free(Js); free(cs);
    larch_model_free(m);
}

static double rel_frob(const double *a, const double *ref, size_t n)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) { d += (a[i] - ref[i]) * (a[i] - ref[i]); r += ref[i] * ref[i]; }
    return sqrt(d / r);
}

/* Monte-Carlo estimates over wide random networks against the analytic kernels. */
static void analytic_vs_mc(void)
{
    enum { N = 4, D = 6, W = 256, KO = 32, KN = 4, NETS = 300, NTK_NETS = 16 };
    larch_shape in = {1, 1, D};
    char layers[256], layers_k[256];
    const char *fmt = "[{type: dense, name: a, units: %d, bias: false}, {type: relu}, {type: dense, name: b, units: %d, "
                      "bias: false, init: lecun}, {type: relu}, {type: dense, name: c, units: %d, bias: false}]";
    snprintf(layers, sizeof layers, fmt, W, W, KO);
    snprintf(layers_k, sizeof layers_k, fmt, W, W, KN);
    larch_model *m = build(layers, in, 1), *mk = build(layers_k, in, 1);   /* NNGP: many outputs; NTK: few */
    if (!m || !mk) return;
    CHECK_OK(larch_model_plan(mk, 1));
    CHECK_OK(larch_model_plan(m, N));
    float x[N * D];
    fill(x, N * D, 4);
    for (int t = 0; t < D; t++) x[3 * D + t] = 2.0f * x[0 * D + t];   /* a sample parallel to sample 0 */
    larch_ntk_mlp d;
    CHECK_OK(larch_ntk_mlp_describe(m, larch_model_n_layers(m), &d));
    CHECK(d.n_dense == 3 && fabs(d.s[0] - 2) < 1e-12 && fabs(d.s[1] - 1) < 1e-12 && d.relu[1] && d.relu[2] && !d.relu[0],
          "mlp description: %d dense, s %g %g %g", d.n_dense, d.s[0], d.s[1], d.s[2]);
    double ntk[N * N], nngp[N * N], mc_nngp[N * N] = {0}, mc_ntk[N * N] = {0};
    CHECK_OK(larch_ntk_analytic(&d, x, N, x, N, ntk, nngp));
    /* NNGP: E[f_k(x) f_k(x')] over networks and output units */
    const int node = larch_model_n_layers(m);
    for (int s = 0; s < NETS; s++) {
        larch_model_init(m, 100 + (uint64_t)s);
        larch_batch b = {0};
        b.n = N;
        b.x = x;
        larch_pass p = {.n = N, .train = 0};
        larch_model_forward(m, &b, &p);
        const float *y = larch_model_node_output(m, node);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                for (int k = 0; k < KO; k++) mc_nngp[i * N + j] += (double)y[i * KO + k] * y[j * KO + k] / (NETS * KO);
    }
    double e_nngp = rel_frob(mc_nngp, nngp, N * N);
    CHECK(e_nngp < 0.03, "NNGP: Monte-Carlo over %d networks x %d outputs differs by %.4f (relative Frobenius)", NETS, KO, e_nngp);
    /* NTK: the init-scaled empirical kernel (mean over outputs), averaged over networks */
    size_t P = 0;
    larch_model_flat_params(mk, &P);
    float *J = malloc((size_t)N * KN * P * sizeof *J), *cs = malloc(P * sizeof *cs);
    CHECK_OK(larch_ntk_init_scale(mk, cs));
    for (int s = 0; s < NTK_NETS; s++) {
        larch_model_init(mk, 500 + (uint64_t)s);
        CHECK_OK(larch_ntk_jacobian(mk, node, x, N, cs, J, P));
        for (int i = 0; i < N; i++)
            for (int j = 0; j <= i; j++)
                for (int k = 0; k < KN; k++) {
                    const float *a = J + ((size_t)i * KN + k) * P, *bb = J + ((size_t)j * KN + k) * P;
                    double v = 0;
                    for (size_t t = 0; t < P; t++) v += (double)a[t] * bb[t];
                    mc_ntk[i * N + j] += v / (NTK_NETS * KN);
                    if (j < i) mc_ntk[j * N + i] += v / (NTK_NETS * KN);
                }
    }
    double e_ntk = rel_frob(mc_ntk, ntk, N * N);
    CHECK(e_ntk < 0.06, "NTK: the mean empirical kernel of %d networks of width %d differs by %.4f", NTK_NETS, W, e_ntk);
    /* Theta dominates Sigma (it sums Sigma_h times later derivatives), and the parallel sample's kernel scales:
       relu is positively homogeneous, so K(x0, 2 x0) = 2 K(x0, x0) */
    CHECK(ntk[0] > nngp[0] && fabs(ntk[3] - 2 * ntk[0]) < 1e-9 * ntk[0] && fabs(nngp[3] - 2 * nngp[0]) < 1e-9 * nngp[0],
          "analytic: theta %g sigma %g; parallel sample %g vs %g", ntk[0], nngp[0], ntk[3], 2 * ntk[0]);
    printf("analytic vs Monte-Carlo: NNGP %.4f, NTK %.4f (relative Frobenius)\n", e_nngp, e_ntk);
    free(J);
    free(cs);
    larch_model_free(m);
    larch_model_free(mk);
}

/* A linear model's NTK is exact at any width: Theta = v x.x' (per output). */
static void linear_exact(void)
{
    larch_model *m = build("[{type: dense, name: o, units: 3, bias: false, init: xavier}]", (larch_shape){1, 1, 5}, 2);
    if (!m) return;
    CHECK_OK(larch_model_plan(m, 1));
    float x[3 * 5];
    fill(x, 15, 8);
    larch_ntk_mlp d;
    CHECK_OK(larch_ntk_mlp_describe(m, 1, &d));
    double ntk[9];
    CHECK_OK(larch_ntk_analytic(&d, x, 3, x, 3, ntk, NULL));
    size_t P = 0;
    larch_model_flat_params(m, &P);
    float *J = malloc(9 * P * sizeof *J), *cs = malloc(P * sizeof *cs);
    CHECK_OK(larch_ntk_init_scale(m, cs));
    CHECK_OK(larch_ntk_jacobian(m, 1, x, 3, cs, J, P));
    double worst = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double v = 0;
            for (int k = 0; k < 3; k++)
                for (size_t t = 0; t < P; t++) v += (double)J[(i * 3 + k) * P + t] * J[(j * 3 + k) * P + t] / 3;
            double e = fabs(v - ntk[i * 3 + j]) / fabs(ntk[i * 3 + i]);
            if (e > worst) worst = e;
        }
    CHECK(worst < 1e-5, "linear model: empirical and analytic NTK differ by %g", worst);
    free(J);
    free(cs);
    larch_model_free(m);
}

static void eig_and_regress(void)
{
    /* A = Q diag(5, 2, 1) Q^T with a rotation Q */
    double c = cos(0.7), s = sin(0.7), Q[9] = {c, -s, 0, s, c, 0, 0, 0, 1}, L[3] = {2, 5, 1}, A[9], w[3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            A[i * 3 + j] = 0;
            for (int k = 0; k < 3; k++) A[i * 3 + j] += Q[i * 3 + k] * L[k] * Q[j * 3 + k];
        }
    CHECK_OK(larch_ntk_eigvals(A, 3, w));
    CHECK(fabs(w[0] - 5) < 1e-12 && fabs(w[1] - 2) < 1e-12 && fabs(w[2] - 1) < 1e-12, "eigenvalues %g %g %g", w[0], w[1], w[2]);
    double Y[6] = {1, 0, 0, 1, 1, 1}, pred[6];
    CHECK_OK(larch_ntk_regress(A, 3, Y, 2, A, 3, 0.0, pred));     /* no ridge: interpolates */
    double e = 0;
    for (int i = 0; i < 6; i++) e = fmax(e, fabs(pred[i] - Y[i]));
    CHECK(e < 1e-12, "regression does not interpolate its targets (%g)", e);
    /* gradient descent on the kernel, step by step, against the closed form (c lam up to 1.5: one mode oscillates) */
    double c3 = 0.3, f[6] = {0}, Kf[6], gd[6], tl = -1;
    for (int t = 0; t < 25; t++) {
        for (int i = 0; i < 3; i++)
            for (int q = 0; q < 2; q++) {
                Kf[i * 2 + q] = 0;
                for (int j = 0; j < 3; j++) Kf[i * 2 + q] += A[i * 3 + j] * (f[j * 2 + q] - Y[j * 2 + q]);
            }
        for (int i = 0; i < 6; i++) f[i] -= c3 * Kf[i];
    }
    CHECK_OK(larch_ntk_gd_predict(A, 3, Y, 2, A, 3, c3, 25, gd, &tl));
    double e2 = 0, loss = 0;
    for (int i = 0; i < 6; i++) { e2 = fmax(e2, fabs(gd[i] - f[i])); loss += (f[i] - Y[i]) * (f[i] - Y[i]) / 6; }
    CHECK(e2 < 1e-9 && fabs(tl - loss) < 1e-9, "gradient descent: closed form differs by %g, loss %g vs %g", e2, tl, loss);
    CHECK_FAIL(larch_ntk_gd_predict(A, 3, Y, 2, A, 3, 0.45, 25, gd, NULL), LARCH_ERR_NUMERIC, "diverges");
    double Bad[4] = {1, 2, 2, 1};                                   /* eigenvalues 3, -1 */
    CHECK_FAIL(larch_ntk_regress(Bad, 2, Y, 1, Bad, 2, 0.0, pred), LARCH_ERR_NUMERIC, "not positive definite");
}

static void errors(void)
{
    larch_model *cnn = build("[{type: conv2d, name: c1, filters: 2, kernel: 3}, {type: relu}, {type: dense, name: o, units: 2}]",
                             (larch_shape){4, 4, 1}, 1);
    larch_ntk_mlp d;
    if (cnn) {
        CHECK_FAIL(larch_ntk_mlp_describe(cnn, 3, &d), LARCH_ERR_INVALID, "layer 'c1' (conv2d): the analytic kernels cover ReLU MLPs only");
        size_t P = 0;
        larch_model_flat_params(cnn, &P);
        float *cs = malloc(P * sizeof *cs), x[16] = {0}, J[1];
        CHECK_FAIL(larch_ntk_init_scale(cnn, cs), LARCH_ERR_INVALID, "layer 'c1' (conv2d): parameter c1.weight");
        CHECK_FAIL(larch_ntk_jacobian(cnn, 3, x, 1, NULL, J, P), LARCH_ERR_INVALID, "not planned");
        free(cs);
        larch_model_free(cnn);
    }
    larch_model *t = build("[{type: dense, name: a, units: 4}, {type: tanh, name: th}, {type: dense, name: o, units: 2}]",
                           (larch_shape){1, 1, 3}, 1);
    if (t) {
        CHECK_FAIL(larch_ntk_mlp_describe(t, 3, &d), LARCH_ERR_INVALID, "layer 'th' (tanh)");
        CHECK_FAIL(larch_ntk_mlp_describe(t, 2, &d), LARCH_ERR_INVALID, "layer 'th' (tanh)");
        CHECK_OK(larch_model_plan(t, 1));
        size_t P = 0;
        larch_model_flat_params(t, &P);
        float x[3] = {1, 2, 3}, *J = malloc(4 * P * sizeof *J);
        /* the default loss scores the last layer only; layer a's output feeds the others */
        CHECK_FAIL(larch_ntk_jacobian(t, 1, x, 1, NULL, J, P), LARCH_ERR_INVALID, "the output of layer 'a' feeds later layers");
        free(J);
        larch_model_free(t);
    }
    larch_model *z = build("[{type: dense, name: a, units: 4, init: zeros}, {type: relu}, {type: dense, name: o, units: 2}]",
                           (larch_shape){1, 1, 3}, 1);
    if (z) {
        CHECK_FAIL(larch_ntk_mlp_describe(z, 3, &d), LARCH_ERR_INVALID, "random weights");
        larch_model_free(z);
    }
}

int main(void)
{
    jacobian_fd("mlp", "[{type: dense, name: a, units: 7}, {type: tanh}, {type: dense, name: b, units: 5, init: lecun}, "
                "{type: gelu}, {type: dense, name: o, units: 3}]", (larch_shape){1, 1, 4});
    jacobian_fd("cnn", "[{type: conv2d, name: c, filters: 3, kernel: 3, padding: 1}, {type: tanh}, {type: avgpool}, "
                "{type: dense, name: o, units: 2}]", (larch_shape){4, 4, 2});
    analytic_vs_mc();
    linear_exact();
    eig_and_regress();
    errors();
    printf("test_ntk: %d checks, %d failed\n", check_count, check_failures);
    return check_failures != 0;
}
