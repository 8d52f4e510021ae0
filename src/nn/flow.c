/* flow.c - normalizing-flow layers (docs/flows.md, include/larch/flow.h):
 * dequantize, actnorm, invconv (LU), coupling, squeeze and split, their
 * inverse passes and log-determinants, the model's inverse pass and the
 * flow_nll loss (bits per dimension).
 *
 * Log-determinants in the loss: flow_nll sets m->flow_dld = d(loss)/d(logdet)
 * per sample (the same for every sample and layer: -scale / (D ln 2)); each
 * flow layer's backward adds flow_dld * d(logdet)/d(params, x). With any
 * other loss flow_dld is 0 and the layers are plain differentiable maps.
 */
#include "nn/layers.h"
#include "nn/flow_internal.h"
#include "core/blas.h"
#include "larch/flow.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOG_2PI 1.8378770664093453

/* ---- 3x3 "same" convolutions on one sample, channels last ----
 * col (H W, 9 cin) from x (H, W, ldx) channels [0, cin); zero padding. */
static void im2col3(const float *x, int H, int W, int ldx, int cin, float *col)
{
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            float *c = col + ((size_t)i * W + j) * 9 * cin;
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++, c += cin) {
                    int y = i + ky - 1, xx = j + kx - 1;
                    if (y < 0 || y >= H || xx < 0 || xx >= W) { memset(c, 0, (size_t)cin * sizeof *c); continue; }
                    memcpy(c, x + ((size_t)y * W + xx) * ldx, (size_t)cin * sizeof *c);
                }
        }
}
/* dx (H, W, ldx) channels [0, cin) += the columns' contributions. */
static void col2im3_add(const float *col, int H, int W, int ldx, int cin, float *dx)
{
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            const float *c = col + ((size_t)i * W + j) * 9 * cin;
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++, c += cin) {
                    int y = i + ky - 1, xx = j + kx - 1;
                    if (y < 0 || y >= H || xx < 0 || xx >= W) continue;
                    float *d = dx + ((size_t)y * W + xx) * ldx;
                    for (int k = 0; k < cin; k++) d[k] += c[k];
                }
        }
}
/* out (HW, cout) = col (HW, 9 cin) w^T + b, w (cout, 9 cin). */
static void conv3_fwd(const float *col, int HW, int cin, const float *w, const float *b, int cout, float *out)
{
    larch_sgemm(0, 1, HW, cout, 9 * cin, 1.0f, col, 9 * cin, w, 9 * cin, 0.0f, out, cout);
    for (int r = 0; r < HW; r++)
        for (int c = 0; c < cout; c++) out[(size_t)r * cout + c] += b[c];
}
/* dw += dout^T col, db += sum dout; dcol = dout w (when dcol). */
static void conv3_bwd(const float *col, int HW, int cin, const float *w, int cout, const float *dout, float *dw,
                      float *db, float *dcol)
{
    if (dw) {
        larch_sgemm(1, 0, cout, 9 * cin, HW, 1.0f, dout, cout, col, 9 * cin, 1.0f, dw, 9 * cin);
        for (int r = 0; r < HW; r++)
            for (int c = 0; c < cout; c++) db[c] += dout[(size_t)r * cout + c];
    }
    if (dcol) larch_sgemm(0, 0, HW, 9 * cin, cout, 1.0f, dout, cout, w, 9 * cin, 0.0f, dcol, 9 * cin);
}

static float dld_of(const larch_layer *L) { return L->model->flow_dld; }

/* Zeroes the layer's parameter gradients unless the pass accumulates. */
static void dw_begin(larch_layer *L, const larch_pass *p)
{
    if (!p->acc_grad && L->need_dw) memset(L->dw, 0, L->param_count * sizeof(float));
}

/* ==== dequantize ==== */

typedef struct { int levels; double alpha; } deq_priv;

static larch_status deq_setup(larch_layer *L, const void *opts)
{
    larch_dequantize_opts o = opts ? *(const larch_dequantize_opts *)opts : (larch_dequantize_opts)LARCH_DEQUANTIZE_DEFAULTS;
    larch_status s = larch_check_int(L, "levels", o.levels, 2, 65536);
    if (!s) s = larch_check_float(L, "logit", o.logit, 0.0, 0.1);
    if (s) return s;
    deq_priv *q = larch_calloc(1, sizeof *q, "dequantize");
    if (!q) return LARCH_ERR_NOMEM;
    q->levels = o.levels;
    q->alpha = o.logit;
    L->priv = q;
    L->out_shape = L->in_shape[0];
    return LARCH_OK;
}
static void deq_destroy(larch_layer *L) { free(L->priv); }
/* saved: the logit transform's log-determinant per sample (n) */
static size_t deq_saved(const larch_layer *L, int n) { return ((const deq_priv *)L->priv)->alpha > 0 ? (size_t)n : 0; }

static void deq_forward(larch_layer *L, const larch_pass *p)
{
    const deq_priv *q = L->priv;
    size_t D = larch_shape_size(L->in_shape[0]);
    float lv = (float)q->levels, inv = 1.0f / lv;
    double a = q->alpha, l12a = log1p(-2.0 * a);
    uint32_t purpose = LARCH_RNG_AUGMENT ^ (larch_hash32(L->name) & 0xfff);
    for (int i = 0; i < p->n; i++) {
        larch_rng r;
        larch_rng_init(&r, p->seed, purpose, p->step, p->sample0 + (uint32_t)i);
        const float *x = L->x[0] + (size_t)i * D;
        float *y = L->y + (size_t)i * D;
        double ld = 0;
        for (size_t j = 0; j < D; j++) {
            float k = floorf(x[j] * (lv - 1.0f) + 0.5f);
            k = k < 0.0f ? 0.0f : k > lv - 1.0f ? lv - 1.0f : k;
            float u = larch_rng_uniform(&r);
            if (a > 0) {   /* q in [alpha, 1 - alpha): y = ln q - ln(1 - q), d y / d v = (1 - 2 alpha) / (q (1 - q)) */
                double qq = a + (1.0 - 2.0 * a) * ((double)k + u) / q->levels, lq = log(qq), l1q = log1p(-qq);
                y[j] = (float)(lq - l1q);
                ld += l12a - lq - l1q;
            } else {
                y[j] = (k + u) * inv - 0.5f;
            }
        }
        if (a > 0) L->saved[i] = (float)ld;
    }
}
static void deq_backward(larch_layer *L, const larch_pass *p)
{
    /* the rounding makes d y / d x zero almost everywhere */
    size_t len = (size_t)p->n * larch_shape_size(L->in_shape[0]);
    if (L->need_dx[0] && !L->dx_acc[0]) memset(L->dx[0], 0, len * sizeof(float));
}
static void deq_inverse(larch_layer *L, const larch_pass *p)
{
    const deq_priv *q = L->priv;
    size_t len = (size_t)p->n * larch_shape_size(L->in_shape[0]);
    float lv = (float)q->levels, *x = (float *)L->x[0];
    double a = q->alpha;
    for (size_t j = 0; j < len; j++) {
        /* v = y + 0.5, or with the logit v = (sigmoid(y) - alpha) / (1 - 2 alpha) */
        float v = a > 0 ? (float)((1.0 / (1.0 + exp(-(double)L->y[j])) - a) / (1.0 - 2.0 * a)) : L->y[j] + 0.5f;
        float k = floorf(v * lv);
        k = k < 0.0f ? 0.0f : k > lv - 1.0f ? lv - 1.0f : k;
        x[j] = k / (lv - 1.0f);
    }
}
static void deq_logdet(larch_layer *L, const larch_pass *p, float *out)
{
    const deq_priv *q = L->priv;
    float v = (float)(-(double)larch_shape_size(L->in_shape[0]) * log((double)q->levels));
    for (int i = 0; i < p->n; i++) out[i] = v + (q->alpha > 0 ? L->saved[i] : 0.0f);
}

const larch_layer_ops larch_dequantize_ops = {
    .type = "dequantize", .min_inputs = 1, .max_inputs = 1, .setup = deq_setup, .saved_size = deq_saved, .forward = deq_forward,
    .backward = deq_backward, .inverse = deq_inverse, .logdet = deq_logdet, .destroy = deq_destroy};

/* ==== actnorm ==== y = x exp(logs) + bias, per channel ==== */

typedef struct {
    int C;
    double *acc;        /* (2 C + 1): init statistics */
    float *g1, *g2;     /* (C) channel sums of dy and dy x */
} an_priv;

static larch_status an_setup(larch_layer *L, const void *opts)
{
    (void)opts;
    int C = L->in_shape[0].c;
    an_priv *q = larch_calloc(1, sizeof *q, "actnorm");
    if (!q) return LARCH_ERR_NOMEM;
    L->priv = q;
    q->C = C;
    q->acc = larch_calloc((size_t)2 * C + 1, sizeof *q->acc, "actnorm");
    q->g1 = larch_calloc((size_t)2 * C, sizeof *q->g1, "actnorm");
    if (!q->acc || !q->g1) return LARCH_ERR_NOMEM;
    q->g2 = q->g1 + C;
    L->out_shape = L->in_shape[0];
    larch_layer_add_param(L, "logs", LARCH_ROLE_NORM, 1, &C, C, C);
    larch_layer_add_param(L, "bias", LARCH_ROLE_BIAS, 1, &C, C, C);
    larch_layer_add_buffer(L, "initialized", 1);
    return LARCH_OK;
}
static void an_destroy(larch_layer *L)
{
    an_priv *q = L->priv;
    if (!q) return;
    free(q->acc);
    free(q->g1);
    free(q);
}
static void an_init(larch_layer *L, uint64_t seed)
{
    (void)seed;
    an_priv *q = L->priv;
    memset(larch_layer_param(L, 0), 0, (size_t)q->C * sizeof(float));
    memset(larch_layer_param(L, 1), 0, (size_t)q->C * sizeof(float));
    larch_layer_buffer(L, 0)[0] = 0.0f;
}
static void an_forward(larch_layer *L, const larch_pass *p)
{
    an_priv *q = L->priv;
    int C = q->C;
    size_t rows = (size_t)p->n * L->in_shape[0].h * L->in_shape[0].w;
    float *logs = larch_layer_param(L, 0), *bias = larch_layer_param(L, 1), *flag = larch_layer_buffer(L, 0);
    const float *x = L->x[0];
    if (p->train && flag[0] == 0.0f) {   /* data-dependent init over the global first batch */
        memset(q->acc, 0, ((size_t)2 * C + 1) * sizeof *q->acc);
        for (size_t r = 0; r < rows; r++)
            for (int c = 0; c < C; c++) {
                double v = x[r * C + c];
                q->acc[c] += v;
                q->acc[C + c] += v * v;
            }
        q->acc[2 * C] = (double)rows;
        if (p->comm && p->comm->allreduce_sum) p->comm->allreduce_sum(p->comm->ctx, q->acc, 2 * C + 1);
        double cnt = q->acc[2 * C] > 0 ? q->acc[2 * C] : 1.0;
        for (int c = 0; c < C; c++) {
            double mean = q->acc[c] / cnt, var = q->acc[C + c] / cnt - mean * mean;
            if (var < 0) var = 0;
            double ls = -0.5 * log(var + 1e-6);
            logs[c] = (float)ls;
            bias[c] = (float)(-mean * exp(ls));
        }
        flag[0] = 1.0f;
    }
    float *e = q->g1;   /* exp(logs), transient */
    for (int c = 0; c < C; c++) e[c] = expf(logs[c]);
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) L->y[r * C + c] = x[r * C + c] * e[c] + bias[c];
}
static void an_backward(larch_layer *L, const larch_pass *p)
{
    an_priv *q = L->priv;
    int C = q->C;
    size_t hw = (size_t)L->in_shape[0].h * L->in_shape[0].w, rows = (size_t)p->n * hw;
    const float *logs = larch_layer_param(L, 0);
    if (L->need_dw) {
        larch_channel_sums(L->dy, L->x[0], rows, C, q->g1, q->g2, 0);
        float *dlogs = larch_layer_grad(L, 0), *dbias = larch_layer_grad(L, 1);
        float dld = dld_of(L);
        for (int c = 0; c < C; c++) {
            larch_store(&dlogs[c], q->g2[c] * expf(logs[c]) + dld * (float)rows, p->acc_grad);
            larch_store(&dbias[c], q->g1[c], p->acc_grad);
        }
    }
    if (L->need_dx[0])
        for (size_t r = 0; r < rows; r++)
            for (int c = 0; c < C; c++) larch_store(&L->dx[0][r * C + c], L->dy[r * C + c] * expf(logs[c]), L->dx_acc[0]);
}
static void an_inverse(larch_layer *L, const larch_pass *p)
{
    an_priv *q = L->priv;
    int C = q->C;
    size_t rows = (size_t)p->n * L->in_shape[0].h * L->in_shape[0].w;
    const float *logs = larch_layer_param(L, 0), *bias = larch_layer_param(L, 1);
    float *x = (float *)L->x[0];
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) x[r * C + c] = (L->y[r * C + c] - bias[c]) * expf(-logs[c]);
}
static void an_logdet(larch_layer *L, const larch_pass *p, float *out)
{
    an_priv *q = L->priv;
    const float *logs = larch_layer_param(L, 0);
    double s = 0;
    for (int c = 0; c < q->C; c++) s += logs[c];
    s *= (double)L->in_shape[0].h * L->in_shape[0].w;
    for (int i = 0; i < p->n; i++) out[i] = (float)s;
}

const larch_layer_ops larch_actnorm_ops = {
    .type = "actnorm", .min_inputs = 1, .max_inputs = 1, .setup = an_setup, .init = an_init, .forward = an_forward,
    .backward = an_backward, .inverse = an_inverse, .logdet = an_logdet, .destroy = an_destroy};

/* ==== invconv: 1x1 convolution W = P L (U + diag(sign exp(logs))) ====
 * Parameters lower (C, C; strictly lower part used), upper (C, C; strictly
 * upper part used), logs (C); buffers perm (C: row i of W is row perm[i] of
 * L U) and sign (C), fixed at init from the LU decomposition of a random
 * orthogonal matrix (Kingma & Dhariwal 2018, section 3.2). */

typedef struct {
    int C;
    float *W, *A, *Lm, *Um, *dW, *dA, *dL, *dU;   /* (C, C) each */
    double *work;                                 /* (2 C C) for the inverse */
} ic_priv;

static larch_status ic_setup(larch_layer *L, const void *opts)
{
    (void)opts;
    int C = L->in_shape[0].c;
    ic_priv *q = larch_calloc(1, sizeof *q, "invconv");
    if (!q) return LARCH_ERR_NOMEM;
    L->priv = q;
    q->C = C;
    size_t cc = (size_t)C * C;
    q->W = larch_calloc(8 * cc, sizeof(float), "invconv");
    q->work = larch_calloc(2 * cc, sizeof(double), "invconv");
    if (!q->W || !q->work) return LARCH_ERR_NOMEM;
    q->A = q->W + cc; q->Lm = q->A + cc; q->Um = q->Lm + cc;
    q->dW = q->Um + cc; q->dA = q->dW + cc; q->dL = q->dA + cc; q->dU = q->dL + cc;
    L->out_shape = L->in_shape[0];
    int sh[2] = {C, C};
    larch_layer_add_param(L, "lower", LARCH_ROLE_NORM, 2, sh, C, C);
    larch_layer_add_param(L, "upper", LARCH_ROLE_NORM, 2, sh, C, C);
    larch_layer_add_param(L, "logs", LARCH_ROLE_NORM, 1, &C, C, C);
    larch_layer_add_buffer(L, "perm", (size_t)C);
    larch_layer_add_buffer(L, "sign", (size_t)C);
    return LARCH_OK;
}
static void ic_destroy(larch_layer *L)
{
    ic_priv *q = L->priv;
    if (!q) return;
    free(q->W);
    free(q->work);
    free(q);
}
static void ic_init(larch_layer *L, uint64_t seed)
{
    ic_priv *q = L->priv;
    int C = q->C;
    double *M = q->work;            /* random orthogonal: Gram-Schmidt on a normal matrix (rows) */
    larch_rng r;
    larch_rng_init(&r, seed, LARCH_RNG_INIT, larch_hash32(L->name), 0);
    for (int i = 0; i < C; i++) {
        double *v = M + (size_t)i * C;
        for (;;) {
            for (int j = 0; j < C; j++) v[j] = larch_rng_normal(&r);
            for (int k = 0; k < i; k++) {
                const double *u = M + (size_t)k * C;
                double d = 0;
                for (int j = 0; j < C; j++) d += u[j] * v[j];
                for (int j = 0; j < C; j++) v[j] -= d * u[j];
            }
            double nn = 0;
            for (int j = 0; j < C; j++) nn += v[j] * v[j];
            if (nn > 1e-6) { nn = 1.0 / sqrt(nn); for (int j = 0; j < C; j++) v[j] *= nn; break; }
        }
    }
    /* LU with partial pivoting: (L U)[i] = M[piv[i]]; W[k] = (L U)[perm[k]], perm = piv^-1 */
    int *piv = (int *)(M + (size_t)C * C);
    for (int i = 0; i < C; i++) piv[i] = i;
    for (int k = 0; k < C; k++) {
        int best = k;
        for (int i = k + 1; i < C; i++)
            if (fabs(M[(size_t)i * C + k]) > fabs(M[(size_t)best * C + k])) best = i;
        if (best != k) {
            for (int j = 0; j < C; j++) {
                double t = M[(size_t)k * C + j];
                M[(size_t)k * C + j] = M[(size_t)best * C + j];
                M[(size_t)best * C + j] = t;
            }
            int t = piv[k]; piv[k] = piv[best]; piv[best] = t;
        }
        for (int i = k + 1; i < C; i++) {
            double f = M[(size_t)i * C + k] / M[(size_t)k * C + k];
            M[(size_t)i * C + k] = f;
            for (int j = k + 1; j < C; j++) M[(size_t)i * C + j] -= f * M[(size_t)k * C + j];
        }
    }
    float *lower = larch_layer_param(L, 0), *upper = larch_layer_param(L, 1), *logs = larch_layer_param(L, 2);
    float *perm = larch_layer_buffer(L, 0), *sign = larch_layer_buffer(L, 1);
    for (int i = 0; i < C; i++) {
        for (int j = 0; j < C; j++) {
            double v = M[(size_t)i * C + j];
            lower[(size_t)i * C + j] = j < i ? (float)v : 0.0f;
            upper[(size_t)i * C + j] = j > i ? (float)v : 0.0f;
        }
        double d = M[(size_t)i * C + i];
        sign[i] = d < 0 ? -1.0f : 1.0f;
        logs[i] = (float)log(fabs(d));
        perm[piv[i]] = (float)i;
    }
}
/* W from the parameters (and L, U kept for backward). */
static void ic_weight(larch_layer *L)
{
    ic_priv *q = L->priv;
    int C = q->C;
    const float *lower = larch_layer_param(L, 0), *upper = larch_layer_param(L, 1), *logs = larch_layer_param(L, 2);
    const float *perm = larch_layer_buffer(L, 0), *sign = larch_layer_buffer(L, 1);
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            size_t ij = (size_t)i * C + j;
            /* the unused triangles enter as 0 * value: a NaN stored there (a corrupt checkpoint) still shows */
            q->Lm[ij] = j < i ? lower[ij] : (i == j ? 1.0f : 0.0f) + 0.0f * lower[ij];
            q->Um[ij] = j > i ? upper[ij] : (i == j ? sign[i] * expf(logs[i]) : 0.0f) + 0.0f * upper[ij];
        }
    larch_sgemm(0, 0, C, C, C, 1.0f, q->Lm, C, q->Um, C, 0.0f, q->A, C);
    for (int i = 0; i < C; i++) memcpy(q->W + (size_t)i * C, q->A + (size_t)(int)perm[i] * C, (size_t)C * sizeof(float));
}
static void ic_forward(larch_layer *L, const larch_pass *p)
{
    ic_priv *q = L->priv;
    int C = q->C;
    int rows = p->n * L->in_shape[0].h * L->in_shape[0].w;
    ic_weight(L);
    larch_sgemm(0, 1, rows, C, C, 1.0f, L->x[0], C, q->W, C, 0.0f, L->y, C);   /* y = x W^T per pixel */
}
static void ic_backward(larch_layer *L, const larch_pass *p)
{
    ic_priv *q = L->priv;
    int C = q->C;
    int rows = p->n * L->in_shape[0].h * L->in_shape[0].w;
    ic_weight(L);
    if (L->need_dw) {
        const float *perm = larch_layer_buffer(L, 0), *sign = larch_layer_buffer(L, 1), *logs = larch_layer_param(L, 2);
        larch_sgemm(1, 0, C, C, rows, 1.0f, L->dy, C, L->x[0], C, 0.0f, q->dW, C);   /* dW = dy^T x */
        for (int i = 0; i < C; i++) memcpy(q->dA + (size_t)(int)perm[i] * C, q->dW + (size_t)i * C, (size_t)C * sizeof(float));
        larch_sgemm(0, 1, C, C, C, 1.0f, q->dA, C, q->Um, C, 0.0f, q->dL, C);   /* dL = dA U^T */
        larch_sgemm(1, 0, C, C, C, 1.0f, q->Lm, C, q->dA, C, 0.0f, q->dU, C);   /* dU = L^T dA */
        float *glo = larch_layer_grad(L, 0), *gup = larch_layer_grad(L, 1), *gls = larch_layer_grad(L, 2);
        float hwn = (float)rows, dld = dld_of(L);
        for (int i = 0; i < C; i++) {
            for (int j = 0; j < C; j++) {
                size_t ij = (size_t)i * C + j;
                larch_store(&glo[ij], j < i ? q->dL[ij] : 0.0f, p->acc_grad);
                larch_store(&gup[ij], j > i ? q->dU[ij] : 0.0f, p->acc_grad);
            }
            larch_store(&gls[i], q->dU[(size_t)i * C + i] * sign[i] * expf(logs[i]) + dld * hwn, p->acc_grad);
        }
    }
    if (L->need_dx[0])   /* dx = dy W */
        larch_sgemm(0, 0, rows, C, C, 1.0f, L->dy, C, q->W, C, L->dx_acc[0] ? 1.0f : 0.0f, L->dx[0], C);
}
static void ic_inverse(larch_layer *L, const larch_pass *p)
{
    ic_priv *q = L->priv;
    int C = q->C;
    int rows = p->n * L->in_shape[0].h * L->in_shape[0].w;
    ic_weight(L);
    double *a = q->work, *b = q->work + (size_t)C * C;   /* Gauss-Jordan: b = W^-1 */
    for (size_t k = 0; k < (size_t)C * C; k++) { a[k] = q->W[k]; b[k] = 0; }
    for (int i = 0; i < C; i++) b[(size_t)i * C + i] = 1;
    for (int k = 0; k < C; k++) {
        int best = k;
        for (int i = k + 1; i < C; i++)
            if (fabs(a[(size_t)i * C + k]) > fabs(a[(size_t)best * C + k])) best = i;
        for (int j = 0; j < C && best != k; j++) {
            double t = a[(size_t)k * C + j]; a[(size_t)k * C + j] = a[(size_t)best * C + j]; a[(size_t)best * C + j] = t;
            t = b[(size_t)k * C + j]; b[(size_t)k * C + j] = b[(size_t)best * C + j]; b[(size_t)best * C + j] = t;
        }
        double d = 1.0 / a[(size_t)k * C + k];
        for (int j = 0; j < C; j++) { a[(size_t)k * C + j] *= d; b[(size_t)k * C + j] *= d; }
        for (int i = 0; i < C; i++) {
            if (i == k) continue;
            double f = a[(size_t)i * C + k];
            if (f == 0) continue;
            for (int j = 0; j < C; j++) { a[(size_t)i * C + j] -= f * a[(size_t)k * C + j]; b[(size_t)i * C + j] -= f * b[(size_t)k * C + j]; }
        }
    }
    for (size_t k = 0; k < (size_t)C * C; k++) q->dW[k] = (float)b[k];
    larch_sgemm(0, 1, rows, C, C, 1.0f, L->y, C, q->dW, C, 0.0f, (float *)L->x[0], C);   /* x = y W^-T */
}
static void ic_logdet(larch_layer *L, const larch_pass *p, float *out)
{
    ic_priv *q = L->priv;
    const float *logs = larch_layer_param(L, 2);
    double s = 0;
    for (int c = 0; c < q->C; c++) s += logs[c];
    s *= (double)L->in_shape[0].h * L->in_shape[0].w;
    for (int i = 0; i < p->n; i++) out[i] = (float)s;
}

const larch_layer_ops larch_invconv_ops = {
    .type = "invconv", .min_inputs = 1, .max_inputs = 1, .setup = ic_setup, .init = ic_init, .forward = ic_forward,
    .backward = ic_backward, .inverse = ic_inverse, .logdet = ic_logdet, .destroy = ic_destroy};

/* ==== coupling ==== */

typedef struct { int C, ca, cb, hidden, H, W; } cp_priv;

static larch_status cp_setup(larch_layer *L, const void *opts)
{
    larch_coupling_opts o = opts ? *(const larch_coupling_opts *)opts : (larch_coupling_opts)LARCH_COUPLING_DEFAULTS;
    larch_status s = larch_check_int(L, "hidden", o.hidden, 1, 4096);
    if (s) return s;
    larch_shape in = L->in_shape[0];
    if (in.c < 2)
        return LARCH_LAYER_FAIL(L, LARCH_ERR_SHAPE, "input (%d, %d, %d) has %d channel: coupling splits the channels in "
                                "two (squeeze first)", in.h, in.w, in.c, in.c);
    cp_priv *q = larch_calloc(1, sizeof *q, "coupling");
    if (!q) return LARCH_ERR_NOMEM;
    L->priv = q;
    q->C = in.c; q->ca = in.c / 2; q->cb = in.c - q->ca; q->hidden = o.hidden; q->H = in.h; q->W = in.w;
    L->out_shape = in;
    int w1[4] = {o.hidden, 3, 3, q->ca}, w2[4] = {2 * q->cb, 3, 3, o.hidden}, b1 = o.hidden, b2 = 2 * q->cb;
    larch_layer_add_param(L, "weight1", LARCH_ROLE_WEIGHT, 4, w1, 9 * q->ca, 9 * o.hidden);
    larch_layer_add_param(L, "bias1", LARCH_ROLE_BIAS, 1, &b1, 9 * q->ca, 9 * o.hidden);
    larch_layer_add_param(L, "weight2", LARCH_ROLE_WEIGHT, 4, w2, 9 * o.hidden, 9 * b2);
    larch_layer_add_param(L, "bias2", LARCH_ROLE_BIAS, 1, &b2, 9 * o.hidden, 9 * b2);
    return LARCH_OK;
}
static void cp_destroy(larch_layer *L) { free(L->priv); }
static void cp_init(larch_layer *L, uint64_t seed)
{
    cp_priv *q = L->priv;
    larch_init_fill(larch_layer_param(L, 0), (size_t)q->hidden * 9 * q->ca, LARCH_INIT_HE, 9 * q->ca, 9 * q->hidden,
                    seed, L->name, 0);
    memset(larch_layer_param(L, 1), 0, (size_t)q->hidden * sizeof(float));
    memset(larch_layer_param(L, 2), 0, (size_t)2 * q->cb * 9 * q->hidden * sizeof(float));   /* zero init: identity */
    memset(larch_layer_param(L, 3), 0, (size_t)2 * q->cb * sizeof(float));
}
static size_t cp_hw(const cp_priv *q) { return (size_t)q->H * q->W; }
static size_t cp_saved(const larch_layer *L, int n)
{
    const cp_priv *q = L->priv;
    return (size_t)n * (cp_hw(q) * ((size_t)q->hidden + 2 * (size_t)q->cb) + 1);
}
/* Samples per GEMM chunk: about 4096 rows (pixels) per product. */
static int flow_chunk(size_t HW, int n)
{
    int ch = (int)(4096 / HW);
    if (ch < 1) ch = 1;
    return ch < n ? ch : n;
}
static void im2col_n(const float *x, int nb, int H, int W, int ldx, int cin, float *col)
{
    size_t HW = (size_t)H * W;
    for (int s = 0; s < nb; s++) im2col3(x + s * HW * ldx, H, W, ldx, cin, col + s * HW * 9 * cin);
}
static void col2im_n_add(const float *col, int nb, int H, int W, int ldx, int cin, float *dx)
{
    size_t HW = (size_t)H * W;
    for (int s = 0; s < nb; s++) col2im3_add(col + s * HW * 9 * cin, H, W, ldx, cin, dx + s * HW * ldx);
}
/* scratch: col, dcol (ch HW 9 max(ca, hidden)), dh (ch HW hidden), out2/dout2 (ch HW 2 cb) */
static size_t cp_scratch(const larch_layer *L, int n)
{
    const cp_priv *q = L->priv;
    size_t big = (size_t)9 * (q->ca > q->hidden ? q->ca : q->hidden);
    return (size_t)flow_chunk(cp_hw(q), n) * cp_hw(q) * (2 * big + q->hidden + 2 * (size_t)q->cb);
}
/* The conv net on nb samples' xa (ldx floats per pixel): h (nb HW, hidden)
 * after relu, out2 (nb HW, 2 cb) = (t, r). */
static void cp_net(larch_layer *L, const float *xa, int ldx, int nb, float *h, float *out2, float *col)
{
    cp_priv *q = L->priv;
    int rows = nb * (int)cp_hw(q);
    im2col_n(xa, nb, q->H, q->W, ldx, q->ca, col);
    conv3_fwd(col, rows, q->ca, larch_layer_param(L, 0), larch_layer_param(L, 1), q->hidden, h);
    for (size_t k = 0; k < (size_t)rows * q->hidden; k++) h[k] = h[k] < 0.0f ? 0.0f : h[k];   /* relu; NaN stays */
    im2col_n(h, nb, q->H, q->W, q->hidden, q->hidden, col);
    conv3_fwd(col, rows, q->hidden, larch_layer_param(L, 2), larch_layer_param(L, 3), 2 * q->cb, out2);
}
static void cp_forward(larch_layer *L, const larch_pass *p)
{
    cp_priv *q = L->priv;
    size_t HW = cp_hw(q);
    int C = q->C, ca = q->ca, cb = q->cb, ch = flow_chunk(HW, p->n);
    size_t big = (size_t)9 * (q->ca > q->hidden ? q->ca : q->hidden);
    float *col = L->scratch, *out2 = col + (size_t)ch * HW * big;
    float *ld = L->saved + (size_t)p->n * HW * ((size_t)q->hidden + 2 * (size_t)cb);
    for (int i0 = 0; i0 < p->n; i0 += ch) {
        int nb = p->n - i0 < ch ? p->n - i0 : ch;
        cp_net(L, L->x[0] + (size_t)i0 * HW * C, C, nb, L->saved + (size_t)i0 * HW * q->hidden, out2, col);
        for (int si = 0; si < nb; si++) {
            int i = i0 + si;
            const float *x = L->x[0] + (size_t)i * HW * C, *o2 = out2 + (size_t)si * HW * 2 * cb;
            float *y = L->y + (size_t)i * HW * C;
            float *t = L->saved + (size_t)p->n * HW * q->hidden + (size_t)i * HW * 2 * cb, *s = t + HW * cb;
            double sum = 0;
            for (size_t r = 0; r < HW; r++)
                for (int c = 0; c < cb; c++) {
                    float tv = o2[r * 2 * cb + c], rv = o2[r * 2 * cb + cb + c];
                    double a = (double)rv + 2.0;   /* log sigmoid(a), stable for any a */
                    double ls = a > 0 ? -log1p(exp(-a)) : a - log1p(exp(a));
                    float sv = (float)exp(ls);
                    t[r * cb + c] = tv;
                    s[r * cb + c] = sv;
                    sum += ls;
                    y[r * C + ca + c] = (x[r * C + ca + c] + tv) * sv;
                }
            for (size_t r = 0; r < HW; r++) memcpy(y + r * C, x + r * C, (size_t)ca * sizeof(float));
            ld[i] = (float)sum;
        }
    }
}
static void cp_backward(larch_layer *L, const larch_pass *p)
{
    cp_priv *q = L->priv;
    size_t HW = cp_hw(q);
    int C = q->C, ca = q->ca, cb = q->cb, hid = q->hidden, ch = flow_chunk(HW, p->n);
    size_t big = (size_t)9 * (ca > hid ? ca : hid), CH = (size_t)ch * HW;
    float *col = L->scratch, *dcol = col + CH * big, *dh = dcol + CH * big, *dout2 = dh + CH * hid;
    float dld = dld_of(L);
    dw_begin(L, p);
    float *dw1 = L->need_dw ? larch_layer_grad(L, 0) : NULL, *db1 = larch_layer_grad(L, 1);
    float *dw2 = L->need_dw ? larch_layer_grad(L, 2) : NULL, *db2 = larch_layer_grad(L, 3);
    for (int i0 = 0; i0 < p->n; i0 += ch) {
        int nb = p->n - i0 < ch ? p->n - i0 : ch, rows = nb * (int)HW;
        const float *x = L->x[0] + (size_t)i0 * HW * C, *dy = L->dy + (size_t)i0 * HW * C;
        const float *h = L->saved + (size_t)i0 * HW * hid;
        const float *t = L->saved + (size_t)p->n * HW * hid + (size_t)i0 * HW * 2 * cb;
        float *dx = L->need_dx[0] ? L->dx[0] + (size_t)i0 * HW * C : NULL;
        for (size_t r = 0; r < (size_t)rows; r++) {
            const float *tr = t + (r / HW) * HW * 2 * cb + (r % HW) * cb, *sr = tr + HW * cb;
            for (int c = 0; c < cb; c++) {
                float g = dy[r * C + ca + c], sv = sr[c], xt = x[r * C + ca + c] + tr[c];
                dout2[r * 2 * cb + c] = g * sv;                                               /* d t */
                dout2[r * 2 * cb + cb + c] = g * xt * sv * (1.0f - sv) + dld * (1.0f - sv);   /* d r */
                if (dx) larch_store(&dx[r * C + ca + c], g * sv, L->dx_acc[0]);
            }
        }
        im2col_n(h, nb, q->H, q->W, hid, hid, col);
        conv3_bwd(col, rows, hid, larch_layer_param(L, 2), 2 * cb, dout2, dw2, db2, dcol);
        memset(dh, 0, (size_t)rows * hid * sizeof(float));
        col2im_n_add(dcol, nb, q->H, q->W, hid, hid, dh);
        for (size_t k = 0; k < (size_t)rows * hid; k++) if (h[k] == 0.0f) dh[k] = 0.0f;
        im2col_n(x, nb, q->H, q->W, C, ca, col);
        conv3_bwd(col, rows, ca, larch_layer_param(L, 0), hid, dh, dw1, db1, dx ? dcol : NULL);
        if (dx) {
            for (size_t r = 0; r < (size_t)rows; r++)
                for (int c = 0; c < ca; c++) larch_store(&dx[r * C + c], dy[r * C + c], L->dx_acc[0]);
            col2im_n_add(dcol, nb, q->H, q->W, C, ca, dx);
        }
    }
}
static void cp_inverse(larch_layer *L, const larch_pass *p)
{
    cp_priv *q = L->priv;
    size_t HW = cp_hw(q);
    int C = q->C, ca = q->ca, cb = q->cb, ch = flow_chunk(HW, p->n);
    size_t big = (size_t)9 * (q->ca > q->hidden ? q->ca : q->hidden);
    float *col = L->scratch, *out2 = col + (size_t)ch * HW * big, *h = L->saved;
    for (int i0 = 0; i0 < p->n; i0 += ch) {
        int nb = p->n - i0 < ch ? p->n - i0 : ch;
        const float *y = L->y + (size_t)i0 * HW * C;
        float *x = (float *)L->x[0] + (size_t)i0 * HW * C;
        cp_net(L, y, C, nb, h, out2, col);
        for (size_t r = 0; r < (size_t)nb * HW; r++) {
            memcpy(x + r * C, y + r * C, (size_t)ca * sizeof(float));
            for (int c = 0; c < cb; c++) {
                float sv = 1.0f / (1.0f + expf(-(out2[r * 2 * cb + cb + c] + 2.0f)));
                x[r * C + ca + c] = y[r * C + ca + c] / sv - out2[r * 2 * cb + c];
            }
        }
    }
}
static void cp_logdet(larch_layer *L, const larch_pass *p, float *out)
{
    cp_priv *q = L->priv;
    const float *ld = L->saved + (size_t)p->n * cp_hw(q) * ((size_t)q->hidden + 2 * (size_t)q->cb);
    memcpy(out, ld, (size_t)p->n * sizeof(float));
}
static int cp_gemms(const larch_layer *L, int n, int train, larch_gemm_shape *out, int cap)
{
    const cp_priv *q = L->priv;
    int HW = (int)cp_hw(q), k = 0;
    larch_gemm_shape g[] = {{HW, q->hidden, 9 * q->ca, 0, 1, n}, {HW, 2 * q->cb, 9 * q->hidden, 0, 1, n},
                            {2 * q->cb, 9 * q->hidden, HW, 1, 0, n}, {HW, 9 * q->hidden, 2 * q->cb, 0, 0, n},
                            {q->hidden, 9 * q->ca, HW, 1, 0, n}, {HW, 9 * q->ca, q->hidden, 0, 0, n}};
    int m = train ? 6 : 2;
    for (; k < m && k < cap; k++) out[k] = g[k];
    return k;
}

const larch_layer_ops larch_coupling_ops = {
    .type = "coupling", .min_inputs = 1, .max_inputs = 1, .setup = cp_setup, .saved_size = cp_saved,
    .scratch_size = cp_scratch, .init = cp_init, .forward = cp_forward, .backward = cp_backward,
    .inverse = cp_inverse, .logdet = cp_logdet, .destroy = cp_destroy, .gemms = cp_gemms};

/* ==== squeeze: (h, w, c) -> (h/2, w/2, 4c), y[i][j][(2 di + dj) c + k] = x[2i+di][2j+dj][k] ==== */

static larch_status sq_setup(larch_layer *L, const void *opts)
{
    (void)opts;
    larch_shape in = L->in_shape[0];
    if (in.h % 2 || in.w % 2)
        return LARCH_LAYER_FAIL(L, LARCH_ERR_SHAPE, "input (%d, %d, %d): height and width must be even", in.h, in.w, in.c);
    L->out_shape = (larch_shape){in.h / 2, in.w / 2, 4 * in.c};
    return LARCH_OK;
}
/* dir 0: x -> y; 1: y -> x. acc: += into the destination. */
static void sq_move(const larch_layer *L, int n, const float *src, float *dst, int dir, int acc)
{
    larch_shape in = L->in_shape[0];
    int C = in.c, ho = in.h / 2, wo = in.w / 2;
    size_t D = larch_shape_size(in);
    for (int s = 0; s < n; s++)
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++)
                for (int d = 0; d < 4; d++) {
                    size_t xo = (size_t)s * D + (((size_t)(2 * i + d / 2)) * in.w + (size_t)(2 * j + d % 2)) * C;
                    size_t yo = (size_t)s * D + (((size_t)i * wo + j) * 4 + d) * C;
                    const float *a = src + (dir ? yo : xo);
                    float *b = dst + (dir ? xo : yo);
                    for (int k = 0; k < C; k++) larch_store(&b[k], a[k], acc);
                }
}
static void sq_forward(larch_layer *L, const larch_pass *p) { sq_move(L, p->n, L->x[0], L->y, 0, 0); }
static void sq_backward(larch_layer *L, const larch_pass *p)
{
    if (L->need_dx[0]) sq_move(L, p->n, L->dy, L->dx[0], 1, L->dx_acc[0]);
}
static void sq_inverse(larch_layer *L, const larch_pass *p) { sq_move(L, p->n, L->y, (float *)L->x[0], 1, 0); }
static void sq_logdet(larch_layer *L, const larch_pass *p, float *out)
{
    (void)L;
    memset(out, 0, (size_t)p->n * sizeof(float));
}

const larch_layer_ops larch_squeeze_ops = {
    .type = "squeeze", .min_inputs = 1, .max_inputs = 1, .setup = sq_setup, .forward = sq_forward,
    .backward = sq_backward, .inverse = sq_inverse, .logdet = sq_logdet};

/* ==== split: keeps the first C/2 channels; the rest, xb, is scored by a
 * learned prior N(mean, exp(logs)^2) with (mean, logs) = conv3x3(xa) (zero
 * init: N(0, 1) at first); logdet = log p(xb | xa) per sample. ==== */

typedef struct { int C, ca, cb, H, W; } sp_priv;

static larch_status sp_setup(larch_layer *L, const void *opts)
{
    (void)opts;
    larch_shape in = L->in_shape[0];
    if (in.c < 2)
        return LARCH_LAYER_FAIL(L, LARCH_ERR_SHAPE, "input (%d, %d, %d) has %d channel: split needs at least 2", in.h,
                                in.w, in.c, in.c);
    sp_priv *q = larch_calloc(1, sizeof *q, "split");
    if (!q) return LARCH_ERR_NOMEM;
    L->priv = q;
    q->C = in.c; q->ca = in.c / 2; q->cb = in.c - q->ca; q->H = in.h; q->W = in.w;
    L->out_shape = (larch_shape){in.h, in.w, q->ca};
    int w[4] = {2 * q->cb, 3, 3, q->ca}, b = 2 * q->cb;
    larch_layer_add_param(L, "weight", LARCH_ROLE_WEIGHT, 4, w, 9 * q->ca, 9 * b);
    larch_layer_add_param(L, "bias", LARCH_ROLE_BIAS, 1, &b, 9 * q->ca, 9 * b);
    return LARCH_OK;
}
static void sp_destroy(larch_layer *L) { free(L->priv); }
static void sp_init(larch_layer *L, uint64_t seed)
{
    (void)seed;
    sp_priv *q = L->priv;
    memset(larch_layer_param(L, 0), 0, (size_t)2 * q->cb * 9 * q->ca * sizeof(float));
    memset(larch_layer_param(L, 1), 0, (size_t)2 * q->cb * sizeof(float));
}
/* saved: log p(xb | xa) (n), then the standardized xb, (xb - mean) / sigma (n, H, W, cb) */
static size_t sp_saved(const larch_layer *L, int n)
{
    const sp_priv *q = L->priv;
    return (size_t)n * (1 + (size_t)q->H * q->W * q->cb);
}
static size_t sp_scratch(const larch_layer *L, int n)
{
    (void)n;
    const sp_priv *q = L->priv;
    return (size_t)q->H * q->W * (18 * (size_t)q->ca + 4 * (size_t)q->cb);
}
static void sp_forward(larch_layer *L, const larch_pass *p)
{
    sp_priv *q = L->priv;
    size_t HW = (size_t)q->H * q->W;
    int C = q->C, ca = q->ca, cb = q->cb;
    float *col = L->scratch, *out2 = col + HW * 9 * ca;
    for (int i = 0; i < p->n; i++) {
        const float *x = L->x[0] + (size_t)i * HW * C;
        float *y = L->y + (size_t)i * HW * ca;
        for (size_t r = 0; r < HW; r++) memcpy(y + r * ca, x + r * C, (size_t)ca * sizeof(float));
        im2col3(x, q->H, q->W, C, ca, col);
        conv3_fwd(col, (int)HW, ca, larch_layer_param(L, 0), larch_layer_param(L, 1), 2 * cb, out2);
        double lp = 0;
        float *eps = L->saved + p->n + (size_t)i * HW * cb;
        for (size_t r = 0; r < HW; r++)
            for (int c = 0; c < cb; c++) {
                double mean = out2[r * 2 * cb + c], ls = out2[r * 2 * cb + cb + c];
                double e = (x[r * C + ca + c] - mean) * exp(-ls);
                eps[r * cb + c] = (float)e;
                lp += -0.5 * LOG_2PI - ls - 0.5 * e * e;
            }
        L->saved[i] = (float)lp;
    }
}
static void sp_backward(larch_layer *L, const larch_pass *p)
{
    sp_priv *q = L->priv;
    size_t HW = (size_t)q->H * q->W;
    int C = q->C, ca = q->ca, cb = q->cb;
    float *col = L->scratch, *dcol = col + HW * 9 * ca, *out2 = dcol + HW * 9 * ca, *dout2 = out2 + HW * 2 * cb;
    float dld = dld_of(L);
    dw_begin(L, p);
    float *dw = L->need_dw ? larch_layer_grad(L, 0) : NULL, *db = larch_layer_grad(L, 1);
    for (int i = 0; i < p->n; i++) {
        const float *x = L->x[0] + (size_t)i * HW * C, *dy = L->dy + (size_t)i * HW * ca;
        float *dx = L->need_dx[0] ? L->dx[0] + (size_t)i * HW * C : NULL;
        im2col3(x, q->H, q->W, C, ca, col);
        conv3_fwd(col, (int)HW, ca, larch_layer_param(L, 0), larch_layer_param(L, 1), 2 * cb, out2);
        for (size_t r = 0; r < HW; r++)
            for (int c = 0; c < cb; c++) {
                float mean = out2[r * 2 * cb + c], ls = out2[r * 2 * cb + cb + c], is = expf(-ls);
                float e = (x[r * C + ca + c] - mean) * is;
                dout2[r * 2 * cb + c] = dld * e * is;                 /* d lp / d mean = e / sigma */
                dout2[r * 2 * cb + cb + c] = dld * (e * e - 1.0f);    /* d lp / d logs = e^2 - 1 */
                if (dx) larch_store(&dx[r * C + ca + c], -dld * e * is, L->dx_acc[0]);
            }
        conv3_bwd(col, (int)HW, ca, larch_layer_param(L, 0), 2 * cb, dout2, dw, db, dx ? dcol : NULL);
        if (dx) {
            for (size_t r = 0; r < HW; r++)
                for (int c = 0; c < ca; c++) larch_store(&dx[r * C + c], dy[r * ca + c], L->dx_acc[0]);
            col2im3_add(dcol, q->H, q->W, C, ca, dx);
        }
    }
}
static void sp_inverse(larch_layer *L, const larch_pass *p)
{
    sp_priv *q = L->priv;
    size_t HW = (size_t)q->H * q->W;
    int C = q->C, ca = q->ca, cb = q->cb;
    float *col = L->scratch, *out2 = col + HW * 9 * ca;
    float temp = L->model->flow_temp;
    uint32_t purpose = LARCH_RNG_AUGMENT ^ (larch_hash32(L->name) & 0xfff);
    for (int i = 0; i < p->n; i++) {
        const float *y = L->y + (size_t)i * HW * ca;
        float *x = (float *)L->x[0] + (size_t)i * HW * C;
        for (size_t r = 0; r < HW; r++) memcpy(x + r * C, y + r * ca, (size_t)ca * sizeof(float));
        im2col3(y, q->H, q->W, ca, ca, col);
        conv3_fwd(col, (int)HW, ca, larch_layer_param(L, 0), larch_layer_param(L, 1), 2 * cb, out2);
        larch_rng r;
        larch_rng_init(&r, p->seed, purpose, p->step, p->sample0 + (uint32_t)i);
        const float *saved_eps = L->saved + p->n + (size_t)i * HW * cb;   /* temp < 0: the last forward's */
        for (size_t k = 0; k < HW; k++)
            for (int c = 0; c < cb; c++) {
                float e = temp < 0.0f ? saved_eps[k * cb + c] : temp == 0.0f ? 0.0f : temp * larch_rng_normal(&r);
                x[k * C + ca + c] = out2[k * 2 * cb + c] + expf(out2[k * 2 * cb + cb + c]) * e;
            }
    }
}
static void sp_logdet(larch_layer *L, const larch_pass *p, float *out) { memcpy(out, L->saved, (size_t)p->n * sizeof(float)); }

const larch_layer_ops larch_split_ops = {
    .type = "split", .min_inputs = 1, .max_inputs = 1, .setup = sp_setup, .saved_size = sp_saved,
    .scratch_size = sp_scratch, .init = sp_init, .forward = sp_forward, .backward = sp_backward,
    .inverse = sp_inverse, .logdet = sp_logdet, .destroy = sp_destroy};

/* ==== the model ==== */

int larch_model_is_flow(const larch_model *m)
{
    if (m->n_layers == 0) return 0;
    for (int i = 0; i < m->n_layers; i++) {
        const larch_layer *L = m->layers[i];
        if (L == m->loss_weights || L == m->loss_centers) continue;
        if (!L->ops->inverse || !L->ops->logdet || L->n_in != 1 || L->in_node[0] != i) return 0;
    }
    return 1;
}

void larch_model_set_flow_temperature(larch_model *m, float t) { m->flow_temp = t; }

float *larch_model_flow_logdet(larch_model *m, int n, float *out)
{
    assert(m->flow_ld && n <= m->max_batch);   /* after larch_model_plan and a forward of n samples */
    larch_pass p = {.n = n};
    memset(out, 0, (size_t)n * sizeof(float));
    float *tmp = m->flow_ld + m->max_batch;
    for (int i = 0; i < m->n_layers; i++) {
        larch_layer *L = m->layers[i];
        if (!L->ops->logdet) continue;
        L->ops->logdet(L, &p, tmp);
        for (int k = 0; k < n; k++) out[k] += tmp[k];
    }
    return out;
}

larch_status larch_model_inverse(larch_model *m, const float *z, float *x, const larch_pass *p)
{
    if (!m->arena || p->n < 1 || p->n > m->max_batch)
        return larch_fail(LARCH_ERR_INVALID, "inverse pass: plan the model for %d samples first", p->n);
    for (int i = 0; i < m->n_layers; i++) {
        const larch_layer *L = m->layers[i];
        if (L == m->loss_weights || L == m->loss_centers) continue;
        if (!L->ops->inverse || L->n_in != 1 || L->in_node[0] != i)
            return larch_fail(LARCH_ERR_INVALID, "inverse pass: layer '%s' (%s) %s", L->name, L->ops->type,
                              !L->ops->inverse ? "is not invertible (flow layers: dequantize, actnorm, invconv, "
                                                 "coupling, squeeze, split)"
                                               : "does not read the previous layer's output (a flow is a chain)");
    }
    int last = m->n_layers;
    while (last > 0 && (m->layers[last - 1] == m->loss_weights || m->layers[last - 1] == m->loss_centers)) last--;
    size_t zlen = (size_t)p->n * larch_shape_size(larch_model_node_shape(m, last));
    memcpy(m->node_y[last], z, zlen * sizeof(float));
    for (int i = last - 1; i >= 0; i--) {
        larch_layer *L = m->layers[i];
        L->x[0] = i == 0 ? x : m->node_y[i];
        L->ops->inverse(L, p);
    }
    return LARCH_OK;
}

/* The flow_nll loss on the last forward (called from larch_model_loss). */
void larch_flow_nll(larch_model *m, const larch_loss *l, const larch_batch *b, float scale, float *dz, int acc,
                    larch_loss_stats *st)
{
    int n = b->n;
    double D = (double)larch_shape_size(m->input_shape), k = 1.0 / (D * log(2.0));
    size_t Dz = larch_shape_size(larch_model_node_shape(m, l->node));
    const float *z = m->node_y[l->node];
    float *ld = larch_model_flow_logdet(m, n, m->flow_ld);
    for (int i = 0; i < n; i++) {
        double q = 0;
        const float *zi = z + (size_t)i * Dz;
        for (size_t j = 0; j < Dz; j++) {
            q += (double)zi[j] * zi[j];
            if (dz) larch_store(&dz[(size_t)i * Dz + j], (float)(zi[j] * k) * scale, acc);
        }
        st->loss_sum += (0.5 * q + 0.5 * (double)Dz * LOG_2PI - ld[i]) * k;
        st->count++;
    }
    m->flow_dld = dz ? (float)(-k) * scale : 0.0f;
}

larch_status larch_flow_plan(larch_model *m, int max_batch)
{
    free(m->flow_ld);
    m->flow_ld = larch_calloc((size_t)2 * max_batch, sizeof(float), "flow log-determinants");
    return m->flow_ld ? LARCH_OK : LARCH_ERR_NOMEM;
}
