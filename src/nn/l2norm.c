/* l2norm.c - L2 normalization of each sample, and the cosine layer (a dense
 * layer without bias whose input and weight rows are L2-normalized).
 *
 * l2norm: y = x / r with r = sqrt(||x||^2 + eps) over all features of a
 * sample; dx = (dy - y (y . dy)) / r. The eps keeps the gradient finite at
 * x = 0 (as Hermans et al. 2017 do for distances).
 * cosine: y_ij = <x_i / r_i, w_j / rw_j>, rw_j = sqrt(||w_j||^2 + eps): the
 * cosine logits cos(theta_j) of ArcFace (Deng et al. 2019). With g = dy W^
 * (W^ the normalized rows), dx_i = (g_i - x^_i (x^_i . g_i)) / r_i; with
 * G = dy^T X^, dw_j = (G_j - w^_j (w^_j . G_j)) / rw_j: the same projection
 * as l2norm's on both sides of the product. The normalized weights are
 * recomputed in backward from the parameters (scratch is transient).
 */
#include "nn/layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Normalizes n rows of d floats: out = in / r, inv_r[i] = 1 / r_i. */
static void normalize_rows(const float *in, float *out, float *inv_r, int n, int d, float eps)
{
    for (int i = 0; i < n; i++) {
        const float *a = in + (size_t)i * d;
        float *o = out + (size_t)i * d;
        double ss = eps;
        for (int j = 0; j < d; j++) ss += (double)a[j] * a[j];
        float ir = (float)(1.0 / sqrt(ss));
        inv_r[i] = ir;
        for (int j = 0; j < d; j++) o[j] = a[j] * ir;
    }
}

/* out_i (+)= (g_i - u_i (u_i . g_i)) * inv_r_i over n rows of d: the gradient
 * through a normalization u = v / r. */
static void project_back(const float *g, const float *u, const float *inv_r, float *out, int n, int d, int acc)
{
    for (int i = 0; i < n; i++) {
        const float *gi = g + (size_t)i * d, *ui = u + (size_t)i * d;
        float *oi = out + (size_t)i * d;
        double dot = 0.0;
        for (int j = 0; j < d; j++) dot += (double)ui[j] * gi[j];
        for (int j = 0; j < d; j++) larch_store(&oi[j], (gi[j] - ui[j] * (float)dot) * inv_r[i], acc);
    }
}

/* ---- l2norm ---- */

typedef struct { int d; float eps; } l2norm_t;

static larch_status l2norm_setup(larch_layer *L, const void *opts)
{
    const larch_l2norm_opts o = opts ? *(const larch_l2norm_opts *)opts : (larch_l2norm_opts)LARCH_L2NORM_DEFAULTS;
    larch_status s = larch_check_float(L, "eps", o.eps, 1e-30f, 1);
    if (s) return s;
    l2norm_t *t = calloc(1, sizeof *t);
    if (!t) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    L->priv = t;
    t->d = (int)larch_shape_size(L->in_shape[0]);
    t->eps = o.eps;
    L->out_shape = L->in_shape[0];
    return LARCH_OK;
}

static size_t l2norm_saved(const larch_layer *L, int n) { (void)L; return (size_t)n; }   /* 1 / r per sample */

static void l2norm_forward(larch_layer *L, const larch_pass *p)
{
    const l2norm_t *t = L->priv;
    normalize_rows(L->x[0], L->y, L->saved, p->n, t->d, t->eps);
}

static void l2norm_backward(larch_layer *L, const larch_pass *p)
{
    const l2norm_t *t = L->priv;
    if (L->need_dx[0]) project_back(L->dy, L->y, L->saved, L->dx[0], p->n, t->d, L->dx_acc[0]);
}

static void l2norm_destroy(larch_layer *L) { free(L->priv); }

const larch_layer_ops larch_l2norm_ops = {
    .type = "l2norm", .min_inputs = 1, .max_inputs = 1,
    .setup = l2norm_setup, .saved_size = l2norm_saved, .forward = l2norm_forward,
    .backward = l2norm_backward, .destroy = l2norm_destroy,
};

/* ---- cosine ---- */

typedef struct { int units, in; float eps; } cosine_t;

static larch_status cosine_setup(larch_layer *L, const void *opts)
{
    const larch_cosine_opts o = opts ? *(const larch_cosine_opts *)opts : (larch_cosine_opts)LARCH_COSINE_DEFAULTS;
    larch_status s;
    if ((s = larch_check_int(L, "units", o.units, 1, 1 << 24)) || (s = larch_check_float(L, "eps", o.eps, 1e-30f, 1)))
        return s;
    cosine_t *c = calloc(1, sizeof *c);
    if (!c) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    L->priv = c;
    c->units = o.units;
    c->in = (int)larch_shape_size(L->in_shape[0]);
    c->eps = o.eps;
    L->out_shape = (larch_shape){1, 1, c->units};
    int ws[2] = {c->units, c->in};
    larch_layer_add_param(L, "weight", LARCH_ROLE_WEIGHT, 2, ws, c->in, c->units);
    return LARCH_OK;
}

static void cosine_init(larch_layer *L, uint64_t seed)
{
    const cosine_t *c = L->priv;   /* only directions matter: any scale will do */
    larch_init_fill(larch_layer_param(L, 0), (size_t)c->units * c->in, LARCH_INIT_XAVIER, c->in, c->units, seed,
                    L->name, 0);
}

/* saved: the normalized input (n, in) and 1 / r per sample */
static size_t cosine_saved(const larch_layer *L, int n)
{
    const cosine_t *c = L->priv;
    return (size_t)n * ((size_t)c->in + 1);
}

/* scratch: the normalized weights (units, in), 1 / rw (units), and one
 * product (n, in) or (units, in) */
static size_t cosine_scratch(const larch_layer *L, int n)
{
    const cosine_t *c = L->priv;
    size_t wn = (size_t)c->units * c->in, g = (size_t)n * c->in;
    return wn + c->units + (g > wn ? g : wn);
}

static void cosine_forward(larch_layer *L, const larch_pass *p)
{
    const cosine_t *c = L->priv;
    float *xn = L->saved, *inv_r = xn + (size_t)p->n * c->in;
    float *wn = L->scratch, *inv_rw = wn + (size_t)c->units * c->in;
    normalize_rows(larch_layer_param(L, 0), wn, inv_rw, c->units, c->in, c->eps);
    if (p->n == 0) return;
    normalize_rows(L->x[0], xn, inv_r, p->n, c->in, c->eps);
    larch_layer_gemm(L, 0, 1, p->n, c->units, c->in, 1.0f, xn, c->in, wn, c->in, 0.0f, L->y, c->units);
}

static void cosine_backward(larch_layer *L, const larch_pass *p)
{
    const cosine_t *c = L->priv;
    int n = p->n;
    const float *xn = L->saved, *inv_r = xn + (size_t)n * c->in;
    float *wn = L->scratch, *inv_rw = wn + (size_t)c->units * c->in, *tmp = inv_rw + c->units;
    normalize_rows(larch_layer_param(L, 0), wn, inv_rw, c->units, c->in, c->eps);
    if (L->need_dw) {
        float *dw = larch_layer_grad(L, 0);
        if (n > 0) {                               // G (units, in) = dy^T (units, n) X^ (n, in)
            larch_layer_gemm(L, 1, 0, c->units, c->in, n, 1.0f, L->dy, c->units, xn, c->in, 0.0f, tmp, c->in);
            project_back(tmp, wn, inv_rw, dw, c->units, c->in, p->acc_grad);
        } else if (!p->acc_grad) {
            memset(dw, 0, (size_t)c->units * c->in * sizeof *dw);
        }
    }
    if (L->need_dx[0] && n > 0) {                  // g (n, in) = dy (n, units) W^ (units, in)
        larch_layer_gemm(L, 0, 0, n, c->in, c->units, 1.0f, L->dy, c->units, wn, c->in, 0.0f, tmp, c->in);
        project_back(tmp, xn, inv_r, L->dx[0], n, c->in, L->dx_acc[0]);
    }
}

static int cosine_gemms(const larch_layer *L, int n, int train, larch_gemm_shape *out, int cap)
{
    const cosine_t *c = L->priv;
    larch_gemm_shape g[3];
    int k = 0;
    g[k++] = (larch_gemm_shape){n, c->units, c->in, 0, 1, 1};
    if (train && L->need_dw) g[k++] = (larch_gemm_shape){c->units, c->in, n, 1, 0, 1};
    if (train && L->need_dx[0]) g[k++] = (larch_gemm_shape){n, c->in, c->units, 0, 0, 1};
    for (int i = 0; i < k && i < cap; i++) out[i] = g[i];
    return k < cap ? k : cap;
}

static void cosine_destroy(larch_layer *L) { free(L->priv); }

const larch_layer_ops larch_cosine_ops = {
    .type = "cosine", .min_inputs = 1, .max_inputs = 1,
    .setup = cosine_setup, .saved_size = cosine_saved, .scratch_size = cosine_scratch, .init = cosine_init,
    .forward = cosine_forward, .backward = cosine_backward, .gemms = cosine_gemms, .destroy = cosine_destroy,
};
