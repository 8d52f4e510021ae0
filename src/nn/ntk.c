/* ntk.c - neural tangent kernels, the pure math (nn/ntk.h, docs/ntk.md). */
#include "nn/ntk.h"
#include "nn/layers.h"
#include "core/threads.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (Fortran calling convention; trailing hidden character lengths),
 * OpenBLAS's bundled symbols as in src/compress/factorize.c. */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t jobz_len,
                    size_t uplo_len);
extern void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b,
                   const int *ldb, int *info, size_t uplo_len);

larch_status larch_ntk_jacobian(larch_model *m, int node, const float *x, int n, const float *col_scale, float *J,
                                size_t ldj)
{
    if (node < 1 || node > m->n_layers)
        return larch_fail(LARCH_ERR_INVALID, "ntk: node %d is not a layer output (1..%d)", node, m->n_layers);
    larch_layer *L = m->layers[node - 1];
    if (!m->arena || m->max_batch < 1)
        return larch_fail(LARCH_ERR_INVALID, "ntk: the model is not planned");
    int scored = 0, read = 0;
    for (int l = 0; l < m->n_losses; l++) scored |= m->losses[l].node == node;
    for (int i = node; i < m->n_layers; i++)
        for (int k = 0; k < m->layers[i]->n_in; k++) read |= m->layers[i]->in_node[k] == node && m->layers[i]->need_backward;
    if (!scored || read || !L->need_backward || !m->node_dy[node])
        return larch_fail(LARCH_ERR_INVALID, "ntk: the output of layer '%s' %s", L->name,
                          read ? "feeds later layers (the Jacobian is of a model output: a layer no other layer reads)"
                               : "is scored by no loss, so backward does not start there");
    if (ldj < m->n_floats) return larch_fail(LARCH_ERR_INVALID, "ntk: ldj %zu < %zu parameters", ldj, m->n_floats);
    const size_t in = larch_shape_size(m->input_shape), K = larch_shape_size(L->out_shape);
    float *dy = m->node_dy[node];
    memset(m->grad, 0, m->n_floats * sizeof *m->grad);    /* frozen parameters: zero columns */
    for (int i = 0; i < n; i++) {
        larch_batch b;
        memset(&b, 0, sizeof b);
        b.n = 1;
        b.x = (float *)(x + (size_t)i * in);
        b.sample0 = 0;
        larch_pass p = {.n = 1, .train = 0, .seed = 0, .acc_grad = 0};
        larch_model_forward(m, &b, &p);
        for (size_t k = 0; k < K; k++) {
            for (int l = 0; l < m->n_losses; l++)          /* only output k of this node is seeded */
                if (m->node_dy[m->losses[l].node])
                    memset(m->node_dy[m->losses[l].node], 0, larch_shape_size(larch_model_node_shape(m, m->losses[l].node)) * sizeof(float));
            memset(dy, 0, K * sizeof *dy);
            dy[k] = 1.0f;
            larch_model_backward(m, &p);
            float *row = J + ((size_t)i * K + k) * ldj;
            if (col_scale)
                for (size_t j = 0; j < m->n_floats; j++) row[j] = m->grad[j] * col_scale[j];
            else
                memcpy(row, m->grad, m->n_floats * sizeof *row);
        }
    }
    return LARCH_OK;
}

static double init_variance(larch_init_kind init, int fan_in, int fan_out)
{
    switch (init) {
    case LARCH_INIT_HE: return 2.0 / fan_in;
    case LARCH_INIT_XAVIER: return 2.0 / ((double)fan_in + fan_out);
    case LARCH_INIT_LECUN: return 1.0 / fan_in;
    default: return 0.0;                  /* zeros / ones: not random */
    }
}

larch_status larch_ntk_init_scale(const larch_model *m, float *scale)
{
    memset(scale, 0, m->n_floats * sizeof *scale);
    for (int i = 0; i < m->n_params; i++) {
        const larch_param *pr = &m->params[i];
        const larch_layer *L = m->layers[pr->layer];
        larch_init_kind init;
        if (!larch_dense_info(L, NULL, NULL, NULL, &init))
            return LARCH_LAYER_FAIL(L, LARCH_ERR_INVALID, "parameter %s: --scale init knows the initialization "
                                    "variance of dense layers only", pr->name);
        if (pr->role != LARCH_ROLE_WEIGHT) continue;   /* biases start at zero: variance 0 */
        float sd = (float)sqrt(init_variance(init, pr->fan_in, pr->fan_out));
        for (size_t j = 0; j < pr->size; j++) scale[pr->offset + j] = sd;
    }
    return LARCH_OK;
}

larch_status larch_ntk_mlp_describe(const larch_model *m, int node, larch_ntk_mlp *d)
{
    memset(d, 0, sizeof *d);
    d->in_dim = (int)larch_shape_size(m->input_shape);
    int pending_relu = 0, last_dense = 0;
    if (node < 1 || node > m->n_layers)
        return larch_fail(LARCH_ERR_INVALID, "ntk: node %d is not a layer output (1..%d)", node, m->n_layers);
    for (int i = 0; i < node; i++) {
        const larch_layer *L = m->layers[i];
        if (L->n_in != 1 || L->in_node[0] != i)
            return LARCH_LAYER_FAIL(L, LARCH_ERR_INVALID, "%s", "the analytic kernels need a chain of layers, each reading "
                                    "the previous one");
        int units, in, bias;
        larch_init_kind init;
        if (larch_dense_info(L, &units, &in, &bias, &init)) {
            if (d->n_dense == LARCH_NTK_MAX_DENSE)
                return LARCH_LAYER_FAIL(L, LARCH_ERR_INVALID, "more than %d dense layers", LARCH_NTK_MAX_DENSE);
            double v = init_variance(init, in, units);
            if (v <= 0.0)
                return LARCH_LAYER_FAIL(L, LARCH_ERR_INVALID, "%s", "the analytic kernels need random weights "
                                        "(init he, lecun or xavier)");
            d->s[d->n_dense] = v * in;
            d->relu[d->n_dense] = pending_relu;
            d->n_dense++;
            pending_relu = 0;
            last_dense = 1;
            d->outputs = units;
        } else if (!strcmp(L->ops->type, "relu") && last_dense && !pending_relu) {
            pending_relu = 1;
        } else if (!strcmp(L->ops->type, "flatten") && d->n_dense == 0) {
            continue;
        } else {
            return LARCH_LAYER_FAIL(L, LARCH_ERR_INVALID, "%s", "the analytic kernels cover ReLU MLPs only: dense layers, "
                                    "each followed by at most one relu (flatten before the first)");
        }
    }
    if (!d->n_dense || pending_relu)
        return larch_fail(LARCH_ERR_INVALID, "ntk: the analytic kernels need the output of a dense layer; layer '%s' (%s) is not one",
                          m->layers[node - 1]->name, m->layers[node - 1]->ops->type);
    return LARCH_OK;
}

typedef struct gram_ctx { const float *x1, *x2; int n2, dim; double scale; double *out; } gram_ctx;

static void gram_rows(void *vc, size_t lo, size_t hi)
{
    const gram_ctx *c = vc;
    for (size_t i = lo; i < hi; i++) {
        const float *a = c->x1 + i * (size_t)c->dim;
        for (int j = 0; j < c->n2; j++) {
            const float *b = c->x2 + (size_t)j * c->dim;
            double s = 0.0;
            for (int t = 0; t < c->dim; t++) s += (double)a[t] * b[t];
            c->out[i * (size_t)c->n2 + (size_t)j] = c->scale * s;
        }
    }
}

static void self_dots(const float *x, int n, int dim, double scale, double *q)
{
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int t = 0; t < dim; t++) s += (double)x[(size_t)i * dim + t] * x[(size_t)i * dim + t];
        q[i] = scale * s;
    }
}

/* E[relu(u) relu(v)] and E[relu'(u) relu'(v)] for Var u = a, Var v = b, Cov = c. */
static void arccos(double a, double b, double c, double *e, double *ed)
{
    if (a <= 0.0 || b <= 0.0) { *e = 0.0; *ed = 0.0; return; }
    double ab = sqrt(a * b), rho = c / ab;
    if (rho > 1.0) rho = 1.0;
    if (rho < -1.0) rho = -1.0;
    double th = acos(rho);
    *e = ab / (2.0 * M_PI) * (sin(th) + (M_PI - th) * rho);
    *ed = (M_PI - th) / (2.0 * M_PI);
}

typedef struct layer_ctx { double s; int relu, n2; const double *q1o, *q2o; double *S, *T; } layer_ctx;

static void layer_rows(void *vc, size_t lo, size_t hi)
{
    const layer_ctx *c = vc;
    for (size_t i = lo; i < hi; i++)
        for (int j = 0; j < c->n2; j++) {
            size_t ij = i * (size_t)c->n2 + (size_t)j;
            double e, ed;
            if (c->relu) arccos(c->q1o[i], c->q2o[j], c->S[ij], &e, &ed);
            else { e = c->S[ij]; ed = 1.0; }
            c->S[ij] = c->s * e;
            if (c->T) c->T[ij] = c->T[ij] * c->s * ed + c->S[ij];
        }
}

larch_status larch_ntk_analytic(const larch_ntk_mlp *d, const float *x1, int n1, const float *x2, int n2, double *ntk,
                                double *nngp)
{
    size_t nn = (size_t)n1 * (size_t)n2;
    double *S = nngp ? nngp : malloc((nn ? nn : 1) * sizeof *S);
    double *q = malloc(2 * ((size_t)n1 + n2 + 1) * sizeof *q);
    if (!S || !q) {
        if (!nngp) free(S);
        free(q);
        return larch_fail(LARCH_ERR_NOMEM, "ntk: analytic kernels of %d x %d samples", n1, n2);
    }
    double *q1 = q, *q2 = q + n1, *q1o = q2 + n2, *q2o = q1o + n1;
    gram_ctx g = {x1, x2, n2, d->in_dim, d->s[0] / d->in_dim, S};
    larch_parallel_for((size_t)n1, 8, gram_rows, &g);
    self_dots(x1, n1, d->in_dim, g.scale, q1);
    self_dots(x2, n2, d->in_dim, g.scale, q2);
    if (ntk) memcpy(ntk, S, nn * sizeof *ntk);
    for (int h = 1; h < d->n_dense; h++) {
        memcpy(q1o, q1, (size_t)n1 * sizeof *q1);
        memcpy(q2o, q2, (size_t)n2 * sizeof *q2);
        layer_ctx c = {d->s[h], d->relu[h], n2, q1o, q2o, S, ntk};
        larch_parallel_for((size_t)n1, 8, layer_rows, &c);
        /* the diagonals: E[relu(u)^2] = q / 2 */
        for (int i = 0; i < n1; i++) q1[i] = d->s[h] * (d->relu[h] ? 0.5 * q1o[i] : q1o[i]);
        for (int j = 0; j < n2; j++) q2[j] = d->s[h] * (d->relu[h] ? 0.5 * q2o[j] : q2o[j]);
    }
    if (!nngp) free(S);
    free(q);
    return LARCH_OK;
}

larch_status larch_ntk_eigvals(const double *a, int n, double *w)
{
    if (n < 1) return LARCH_OK;
    double *A = malloc((size_t)n * n * sizeof *A), qw;
    if (!A) return larch_fail(LARCH_ERR_NOMEM, "ntk: eigenvalues of a %d x %d matrix", n, n);
    memcpy(A, a, (size_t)n * n * sizeof *A);
    int lwork = -1, liwork = -1, qi = 0, info = 0;
    dsyevd_("N", "U", &n, A, &n, w, &qw, &lwork, &qi, &liwork, &info, 1, 1);
    lwork = (int)qw + 1;
    liwork = qi > 0 ? qi : 1;
    double *work = info ? NULL : malloc((size_t)lwork * sizeof *work);
    int *iwork = info ? NULL : malloc((size_t)liwork * sizeof *iwork);
    larch_status s = LARCH_OK;
    if (info) s = larch_fail(LARCH_ERR_NUMERIC, "ntk: LAPACK dsyevd workspace query failed (info %d)", info);
    else if (!work || !iwork) s = larch_fail(LARCH_ERR_NOMEM, "ntk: eigenvalue workspace");
    if (!s) {
        dsyevd_("N", "U", &n, A, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
        if (info) s = larch_fail(LARCH_ERR_NUMERIC, "ntk: LAPACK dsyevd %s (info %d)",
                                 info > 0 ? "did not converge" : "rejected an argument", info);
    }
    if (!s)                                   /* ascending -> descending */
        for (int i = 0; i < n / 2; i++) { double t = w[i]; w[i] = w[n - 1 - i]; w[n - 1 - i] = t; }
    free(work);
    free(iwork);
    free(A);
    return s;
}

larch_status larch_ntk_regress(const double *Ktr, int n, const double *Y, int k, const double *Kx, int m, double ridge,
                               double *pred)
{
    double *A = malloc((size_t)n * n * sizeof *A), *B = malloc((size_t)n * k * sizeof *B);
    if (!A || !B) {
        free(A);
        free(B);
        return larch_fail(LARCH_ERR_NOMEM, "ntk: kernel regression on %d samples", n);
    }
    double tr = 0.0;
    for (int i = 0; i < n; i++) tr += Ktr[(size_t)i * n + i];
    memcpy(A, Ktr, (size_t)n * n * sizeof *A);
    for (int i = 0; i < n; i++) A[(size_t)i * n + i] += ridge * tr / n;
    /* Column-major B (n, k) = Y; A is symmetric so its layout does not matter. */
    for (int i = 0; i < n; i++)
        for (int c = 0; c < k; c++) B[(size_t)c * n + i] = Y[(size_t)i * k + c];
    int info = 0;
    dposv_("U", &n, &k, A, &n, B, &n, &info, 1);
    larch_status s = LARCH_OK;
    if (info > 0)
        s = larch_fail(LARCH_ERR_NUMERIC, "ntk: the kernel matrix plus ridge %g is not positive definite (leading minor "
                       "%d); use a larger --ridge", ridge, info);
    else if (info < 0)
        s = larch_fail(LARCH_ERR_NUMERIC, "ntk: LAPACK dposv rejected argument %d", -info);
    for (int i = 0; !s && i < m; i++)
        for (int c = 0; c < k; c++) {
            double v = 0.0;
            for (int j = 0; j < n; j++) v += Kx[(size_t)i * n + j] * B[(size_t)c * n + j];
            pred[(size_t)i * k + c] = v;
        }
    free(A);
    free(B);
    return s;
}

larch_status larch_ntk_gd_predict(const double *Ktr, int n, const double *Y, int k, const double *Kx, int m, double c,
                                  long steps, double *pred, double *train_loss)
{
    double *A = malloc((size_t)n * n * sizeof *A), *w = malloc((size_t)n * sizeof *w);
    double *Z = malloc((size_t)n * k * sizeof *Z), *coef = malloc((size_t)n * k * sizeof *coef), qw;
    int lwork = -1, liwork = -1, qi = 0, info = 0;
    double *work = NULL;
    int *iwork = NULL;
    larch_status s = LARCH_OK;
    if (!A || !w || !Z || !coef) s = larch_fail(LARCH_ERR_NOMEM, "ntk: gradient-descent prediction on %d samples", n);
    if (!s) {
        memcpy(A, Ktr, (size_t)n * n * sizeof *A);      /* symmetric: row- and column-major alike */
        dsyevd_("V", "U", &n, A, &n, w, &qw, &lwork, &qi, &liwork, &info, 1, 1);
        lwork = (int)qw + 1;
        liwork = qi > 0 ? qi : 1;
        if (info || !(work = malloc((size_t)lwork * sizeof *work)) || !(iwork = malloc((size_t)liwork * sizeof *iwork)))
            s = larch_fail(info ? LARCH_ERR_NUMERIC : LARCH_ERR_NOMEM, "ntk: LAPACK dsyevd workspace (info %d)", info);
    }
    if (!s) {
        dsyevd_("V", "U", &n, A, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
        if (info) s = larch_fail(LARCH_ERR_NUMERIC, "ntk: LAPACK dsyevd %s (info %d)", info > 0 ? "did not converge" : "rejected an argument", info);
    }
    if (!s && c * w[n - 1] >= 2.0)
        s = larch_fail(LARCH_ERR_NUMERIC, "ntk: gradient descent diverges: the step times the largest eigenvalue is %.4g >= 2 "
                       "(lower --gd-lr)", c * w[n - 1]);
    double loss = 0.0;
    for (int j = 0; !s && j < n; j++) {                   /* Z = V^T Y, eigenvector j = column j of A */
        double lam = w[j] > 0.0 ? w[j] : 0.0;
        /* (1 - c lam)^T, and g = (1 - (1 - c lam)^T) / lam (c T as lam -> 0) */
        double base = 1.0 - c * lam, decay, g;
        if (base > 0.0) {                                 /* accurate for small c lam */
            decay = exp((double)steps * log1p(-c * lam));
            g = lam > 1e-300 ? -expm1((double)steps * log1p(-c * lam)) / lam : c * (double)steps;
        } else {                                          /* 1 < c lam < 2: an oscillating, shrinking mode */
            decay = pow(base, (double)steps);
            g = (1.0 - decay) / lam;
        }
        for (int q = 0; q < k; q++) {
            double z = 0.0;
            for (int i = 0; i < n; i++) z += A[(size_t)j * n + i] * Y[(size_t)i * k + q];
            loss += decay * decay * z * z;
            Z[(size_t)j * k + q] = g * z;
        }
    }
    for (int i = 0; !s && i < n; i++)                     /* coef = V (g Z) */
        for (int q = 0; q < k; q++) {
            double v = 0.0;
            for (int j = 0; j < n; j++) v += A[(size_t)j * n + i] * Z[(size_t)j * k + q];
            coef[(size_t)i * k + q] = v;
        }
    for (int i = 0; !s && i < m; i++)
        for (int q = 0; q < k; q++) {
            double v = 0.0;
            for (int j = 0; j < n; j++) v += Kx[(size_t)i * n + j] * coef[(size_t)j * k + q];
            pred[(size_t)i * k + q] = v;
        }
    if (!s && train_loss) *train_loss = loss / ((double)n * k);
    free(A); free(w); free(Z); free(coef); free(work); free(iwork);
    return s;
}
