/* normalization.c - batch, layer, group and instance normalization over
 * channels-last (n, h, w, c) activations, each with an optional per-channel
 * affine map y = scale * xhat + shift (parameters "scale" and "shift",
 * role LARCH_ROLE_NORM, initialized to 1 and 0).
 *
 * batchnorm: statistics per channel over (n, h, w). Training mode uses the
 * batch's mean and biased variance and updates the buffers running_mean and
 * running_var (unbiased) as running = (1 - momentum) running + momentum
 * batch (PyTorch's convention); eval mode uses the running statistics. With
 * `sync: true` the per-channel sums (count, sum, sum of squares in double)
 * are added across ranks through the pass's comm hook, and so are the two
 * per-channel sums backward needs, so a batch split over ranks normalizes
 * exactly like the whole global batch on one rank (SyncBatchNorm).
 * groupnorm: statistics per (sample, group of c/groups channels) over
 * (h, w, c/groups); layernorm is groupnorm with one group (per sample over
 * h, w, c); instancenorm is groupnorm with c groups (per sample and channel
 * over h, w). Their training and evaluation modes are the same.
 */
#include "nn/layers.h"
#include "core/dispatch.h"
#include "core/threads.h"
#include "nn/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int batch;                /* 1: batchnorm, 0: group statistics          */
    int groups, affine, sync;
    float eps, momentum;
    double *acc;              /* batchnorm: 2 c + 1 doubles of sums         */
    double *part;             /* batchnorm: LARCH_REDUCE_BLOCKS x 2 c partial sums */
    int relu;                 /* batchnorm: a relu fused into the output    */
    float *ones;              /* batchnorm: c ones (the scale without affine) */
} norm_t;

/* The settings of every normalization: batch (batchnorm) or group
 * statistics with `groups` groups; momentum and sync for batchnorm only. */
static larch_status norm_common(larch_layer *L, int batch, int groups, float eps, int affine, float momentum, int sync)
{
    int C = L->in_shape[0].c;
    larch_status s;
    if ((s = larch_check_float(L, "eps", eps, 0, 1)) || (s = larch_check_float(L, "momentum", momentum, 0, 1)))
        return s;
    norm_t *q = calloc(1, sizeof *q);
    if (!q) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    L->priv = q;
    q->batch = batch;
    q->groups = groups;
    q->eps = eps;
    q->affine = affine != 0;
    if (batch) {
        q->momentum = momentum;
        q->sync = sync != 0;
        if (!(q->acc = calloc((size_t)2 * C + 1, sizeof *q->acc)) ||
            !(q->part = calloc((size_t)LARCH_REDUCE_BLOCKS * 2 * C, sizeof *q->part)) ||
            !(q->ones = malloc((size_t)C * sizeof *q->ones)))
            return larch_fail(LARCH_ERR_NOMEM, "out of memory");
        for (int c = 0; c < C; c++) q->ones[c] = 1.0f;
    } else if (C % groups != 0) {
        return LARCH_LAYER_FAIL(L, LARCH_ERR_SHAPE, "%d groups do not divide the %d channels", groups, C);
    }
    L->out_shape = L->in_shape[0];
    if (q->affine) {
        larch_layer_add_param(L, "scale", LARCH_ROLE_NORM, 1, &C, C, C);
        larch_layer_add_param(L, "shift", LARCH_ROLE_NORM, 1, &C, C, C);
    }
    if (batch) {
        larch_layer_add_buffer(L, "running_mean", (size_t)C);
        larch_layer_add_buffer(L, "running_var", (size_t)C);
    }
    return LARCH_OK;
}

static larch_status bn_setup(larch_layer *L, const void *opts)
{
    const larch_batchnorm_opts o = opts ? *(const larch_batchnorm_opts *)opts : (larch_batchnorm_opts)LARCH_BATCHNORM_DEFAULTS;
    return norm_common(L, 1, 1, o.eps, o.affine, o.momentum, o.sync);
}
static larch_status ln_setup(larch_layer *L, const void *opts)
{
    const larch_norm_opts o = opts ? *(const larch_norm_opts *)opts : (larch_norm_opts)LARCH_NORM_DEFAULTS;
    return norm_common(L, 0, 1, o.eps, o.affine, 0.0f, 0);
}
static larch_status in_setup(larch_layer *L, const void *opts)
{
    const larch_norm_opts o = opts ? *(const larch_norm_opts *)opts : (larch_norm_opts)LARCH_NORM_DEFAULTS;
    return norm_common(L, 0, L->in_shape[0].c, o.eps, o.affine, 0.0f, 0);
}
static larch_status gn_setup(larch_layer *L, const void *opts)
{
    const larch_groupnorm_opts o = opts ? *(const larch_groupnorm_opts *)opts : (larch_groupnorm_opts)LARCH_GROUPNORM_DEFAULTS;
    larch_status s = larch_check_int(L, "groups", o.groups, 1, 1 << 20);
    return s ? s : norm_common(L, 0, o.groups, o.eps, o.affine, 0.0f, 0);
}

static void norm_init(larch_layer *L, uint64_t seed)
{
    norm_t *q = L->priv;
    int C = L->in_shape[0].c;
    if (q->affine) {
        float *scale = larch_layer_param(L, 0), *shift = larch_layer_param(L, 1);
        for (int c = 0; c < C; c++) { scale[c] = 1.0f; shift[c] = 0.0f; }
    }
    if (q->batch) {
        float *rm = larch_layer_buffer(L, 0), *rv = larch_layer_buffer(L, 1);
        for (int c = 0; c < C; c++) { rm[c] = 0.0f; rv[c] = 1.0f; }
    }
}

static void norm_destroy(larch_layer *L)
{
    norm_t *q = L->priv;
    if (q) { free(q->acc); free(q->part); free(q->ones); }
    free(q);
}

/* saved: xhat (n, h, w, c), then the inverse standard deviations: batchnorm
 * (c), group statistics (n, groups). */
static size_t norm_saved(const larch_layer *L, int n)
{
    const norm_t *q = L->priv;
    size_t stats = q->batch ? (size_t)L->in_shape[0].c : (size_t)n * q->groups;
    return (size_t)n * larch_shape_size(L->in_shape[0]) + stats;
}

/* y = scale * xhat + shift (or y = xhat), per channel. */
static LARCH_HOT void affine_out(const larch_layer *L, const float *xhat, float *y, size_t rows, int C)
{
    const norm_t *q = L->priv;
    if (!q->affine) { memcpy(y, xhat, rows * C * sizeof(float)); return; }
    const float *scale = larch_layer_param((larch_layer *)L, 0), *shift = larch_layer_param((larch_layer *)L, 1);
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < C; c++) y[r * C + c] = scale[c] * xhat[r * C + c] + shift[c];
}

/* dscale += sum dy * xhat, dshift += sum dy over rows (or = when not acc),
 * summed in double (rows = n*h*w). */
static void affine_grads(larch_layer *L, const larch_pass *p, const float *xhat, size_t rows, int C)
{
    const norm_t *q = L->priv;
    if (!q->affine || !L->need_dw) return;
    larch_channel_sums(L->dy, xhat, rows, C, larch_layer_grad(L, 1), larch_layer_grad(L, 0), p->acc_grad);
}

/* ---- batchnorm ----
 * Two passes forward (statistics; then xhat, y and the fused ReLU) and two
 * backward (the per-channel sums of g and g xhat, which are also the shift
 * and scale gradients; then dx), each split over threads
 * (core/threads.h): the sums over larch_reduce_blocks(rows) fixed row
 * blocks, combined in block order, so the thread count never changes a bit.
 * With q->relu (set by the model when a relu is the only reader of this
 * layer's output, larch_batchnorm_fuse_relu) y = max(scale xhat + shift, 0)
 * exactly as the relu layer computes it, and backward first applies the
 * relu's gradient g = dy (y > 0) exactly as the relu layer does. */

typedef struct {
    const norm_t *q;
    int C, nb, relu, acc, train;
    size_t rows;
    const float *x, *y, *dy, *xhat, *invstd, *scale, *shift, *rm;
    float *xhat_out, *y_out, *dx;
    const double *mean, *mg, *mgx;
    double *part;                     /* nb blocks of 2 C partial sums */
} bn_job;

/* The statistics of row blocks [k0, k1): sum x and sum x^2 per channel. */
static LARCH_HOT void bn_stats(void *ctx, size_t k0, size_t k1)
{
    const bn_job *j = ctx;
    const int C = j->C;
    const float *restrict xp = j->x;
    for (size_t k = k0; k < k1; k++) {
        double *restrict sum = j->part + k * 2 * C, *restrict sq = sum + C;
        for (int c = 0; c < C; c++) sum[c] = sq[c] = 0.0;
        size_t r1 = larch_block_lo(j->rows, j->nb, (int)k + 1);
        for (size_t r = larch_block_lo(j->rows, j->nb, (int)k); r < r1; r++) {
            const float *restrict xr = xp + r * C;
            for (int c = 0; c < C; c++) {
                double v = xr[c];
                sum[c] += v;                                         // sum x
                sq[c] += v * v;                                      // sum x^2
            }
        }
    }
}

/* Rows [r0, r1): xhat = (x - mean) invstd (training) or with the running
 * statistics (eval), y = scale xhat + shift, then max(y, 0) when fused. */
static LARCH_HOT void bn_forward(void *ctx, size_t r0, size_t r1)
{
    const bn_job *j = ctx;
    const int C = j->C, train = j->train, relu = j->relu;
    const float *restrict xp = j->x, *restrict invstd = j->invstd, *restrict rm = j->rm;
    const float *restrict scale = j->scale, *restrict shift = j->shift;
    const double *restrict mean = j->mean;
    float *restrict xhp = j->xhat_out, *restrict yp = j->y_out;
    for (size_t r = r0; r < r1; r++) {
        const float *restrict x = xp + r * C;
        float *restrict xh = xhp + r * C, *restrict y = yp + r * C;
        if (train)
            for (int c = 0; c < C; c++) xh[c] = (float)((x[c] - mean[c]) * invstd[c]);
        else
            for (int c = 0; c < C; c++) xh[c] = (x[c] - rm[c]) * invstd[c];   // running statistics
        if (scale)
            for (int c = 0; c < C; c++) y[c] = scale[c] * xh[c] + shift[c];
        else
            for (int c = 0; c < C; c++) y[c] = xh[c];
        if (relu)
            for (int c = 0; c < C; c++) y[c] = y[c] <= 0.0f ? 0.0f : y[c];   // as relu_forward: NaN stays
    }
}

/* g = dy, or dy (y > 0) behind a fused relu (as relu_backward computes it). */
#define BN_G(relu, dy, y, c) ((relu) ? (dy)[c] * ((y)[c] > 0.0f ? 1.0f : 0.0f) : (dy)[c])

/* Backward sums of row blocks [k0, k1): sum g and sum g xhat per channel. */
static LARCH_HOT void bn_grad_sums(void *ctx, size_t k0, size_t k1)
{
    const bn_job *j = ctx;
    const int C = j->C, relu = j->relu;
    const float *restrict dyp = j->dy, *restrict yp = relu ? j->y : j->dy, *restrict xhp = j->xhat;
    for (size_t k = k0; k < k1; k++) {
        double *restrict sg = j->part + k * 2 * C, *restrict sgx = sg + C;
        for (int c = 0; c < C; c++) sg[c] = sgx[c] = 0.0;
        size_t r1 = larch_block_lo(j->rows, j->nb, (int)k + 1);
        for (size_t r = larch_block_lo(j->rows, j->nb, (int)k); r < r1; r++) {
            const float *restrict dy = dyp + r * C, *restrict y = yp + r * C, *restrict xh = xhp + r * C;
            for (int c = 0; c < C; c++) {
                float g = BN_G(relu, dy, y, c);
                sg[c] += g;                                          // sum dy
                sgx[c] += (double)g * xh[c];                         // sum dy xhat
            }
        }
    }
}

/* Rows [r0, r1) of dx: training dx = scale invstd (g - mean(g) - xhat
 * mean(g xhat)); eval (y affine in x) dx = g scale invstd (scale: ones
 * without affine, as 1.0f * a == a). */
static LARCH_HOT void bn_backward(void *ctx, size_t r0, size_t r1)
{
    const bn_job *j = ctx;
    const int C = j->C, relu = j->relu, acc = j->acc;
    const float *restrict dyp = j->dy, *restrict yp = relu ? j->y : j->dy, *restrict xhp = j->xhat;
    const float *restrict scale = j->scale ? j->scale : j->q->ones, *restrict invstd = j->invstd;
    const double *restrict mg = j->mg, *restrict mgx = j->mgx;
    float *restrict dxp = j->dx;
    for (size_t r = r0; r < r1; r++) {
        const float *restrict dy = dyp + r * C, *restrict y = yp + r * C, *restrict xh = xhp + r * C;
        float *restrict dx = dxp + r * C;
        if (j->train)
            for (int c = 0; c < C; c++) {
                float g = BN_G(relu, dy, y, c);
                float v = scale[c] * invstd[c] * (float)(g - mg[c] - xh[c] * mgx[c]);
                dx[c] = acc ? dx[c] + v : v;
            }
        else
            for (int c = 0; c < C; c++) {
                float v = BN_G(relu, dy, y, c) * scale[c] * invstd[c];
                dx[c] = acc ? dx[c] + v : v;
            }
    }
}

/* Rows per parallel range of the elementwise passes. */
#define BN_GRAIN_FLOATS 32768

static size_t bn_grain(int C) { return BN_GRAIN_FLOATS / (size_t)C + 1; }

/* Combines the nb blocks' partial sums in block order into out (2 C). */
static void bn_combine(const double *part, int nb, int C, double *out)
{
    for (int c = 0; c < 2 * C; c++) out[c] = 0.0;
    for (int k = 0; k < nb; k++)
        for (int c = 0; c < 2 * C; c++) out[c] += part[(size_t)k * 2 * C + c];
}

static void bn_fwd_op(larch_layer *L, const larch_pass *p)
{
    if (L->q && larch_q_folded(L, p)) return;     /* eval: the int8 conv before it wrote y (nn/quant.c) */
    norm_t *q = L->priv;
    const int C = L->in_shape[0].c;
    const size_t rows = (size_t)p->n * L->in_shape[0].h * L->in_shape[0].w;   // (n h w) rows of c
    float *xhat = L->saved, *invstd = L->saved + rows * C;
    float *rm = larch_layer_buffer(L, 0), *rv = larch_layer_buffer(L, 1);
    bn_job j = {.q = q, .C = C, .rows = rows, .relu = q->relu, .train = p->train, .x = L->x[0], .invstd = invstd,
                .rm = rm, .xhat_out = xhat, .y_out = L->y, .part = q->part, .nb = larch_reduce_blocks(rows)};
    if (q->affine) { j.scale = larch_layer_param(L, 0); j.shift = larch_layer_param(L, 1); }
    if (!p->train) {
        for (int c = 0; c < C; c++) invstd[c] = 1.0f / sqrtf(rv[c] + q->eps);
        larch_parallel_for(rows, bn_grain(C), bn_forward, &j);
        return;
    }
    larch_parallel_for((size_t)j.nb, 1, bn_stats, &j);
    double *sum = q->acc, *sq = q->acc + C, *count = q->acc + 2 * C;
    bn_combine(q->part, j.nb, C, q->acc);
    *count = (double)rows;
    if (q->sync && p->comm && p->comm->allreduce_sum) p->comm->allreduce_sum(p->comm->ctx, q->acc, 2 * C + 1);
    double M = *count > 0 ? *count : 1.0;
    for (int c = 0; c < C; c++) {
        double mean = sum[c] / M;
        double var = sq[c] / M - mean * mean;                        // biased batch variance
        if (var < 0) var = 0;
        invstd[c] = (float)(1.0 / sqrt(var + q->eps));
        sum[c] = mean;                                               // keep mean for the pass below
        rm[c] = (1.0f - q->momentum) * rm[c] + q->momentum * (float)mean;
        double unbiased = M > 1 ? var * M / (M - 1) : var;
        rv[c] = (1.0f - q->momentum) * rv[c] + q->momentum * (float)unbiased;
    }
    j.mean = sum;
    larch_parallel_for(rows, bn_grain(C), bn_forward, &j);
}

static void bn_bwd_op(larch_layer *L, const larch_pass *p)
{
    norm_t *q = L->priv;
    const int C = L->in_shape[0].c;
    const size_t rows = (size_t)p->n * L->in_shape[0].h * L->in_shape[0].w;
    const int want_dw = q->affine && L->need_dw, want_dx = L->need_dx[0];
    bn_job j = {.q = q, .C = C, .rows = rows, .relu = q->relu, .train = p->train, .y = L->y, .dy = L->dy,
                .xhat = L->saved, .invstd = L->saved + rows * C, .part = q->part, .nb = larch_reduce_blocks(rows),
                .dx = L->dx[0], .acc = L->dx_acc[0]};
    if (q->affine) j.scale = larch_layer_param(L, 0);
    if (!want_dw && !(want_dx && p->train)) {
        if (want_dx) larch_parallel_for(rows, bn_grain(C), bn_backward, &j);
        return;
    }
    larch_parallel_for((size_t)j.nb, 1, bn_grad_sums, &j);
    double *sdy = q->acc, *sdyx = q->acc + C, *count = q->acc + 2 * C;
    bn_combine(q->part, j.nb, C, q->acc);
    if (want_dw) {                                                   // dshift = sum g, dscale = sum g xhat (local rows)
        float *dscale = larch_layer_grad(L, 0), *dshift = larch_layer_grad(L, 1);
        for (int c = 0; c < C; c++) {
            dshift[c] = (float)(p->acc_grad ? dshift[c] + sdy[c] : sdy[c]);
            dscale[c] = (float)(p->acc_grad ? dscale[c] + sdyx[c] : sdyx[c]);
        }
    }
    if (!want_dx) return;
    if (p->train) {
        *count = (double)rows;
        if (q->sync && p->comm && p->comm->allreduce_sum) p->comm->allreduce_sum(p->comm->ctx, q->acc, 2 * C + 1);
        double M = *count > 0 ? *count : 1.0;
        for (int c = 0; c < C; c++) { sdy[c] /= M; sdyx[c] /= M; }   // means over the (global) batch
        j.mg = sdy;
        j.mgx = sdyx;
    }
    larch_parallel_for(rows, bn_grain(C), bn_backward, &j);
}

void larch_batchnorm_fuse_relu(larch_layer *L, int on) { ((norm_t *)L->priv)->relu = on != 0; }

void larch_batchnorm_eval_affine(larch_layer *L, float *a, float *b)
{
    norm_t *q = L->priv;
    const int C = L->in_shape[0].c;
    const float *rm = larch_layer_buffer(L, 0), *rv = larch_layer_buffer(L, 1);
    for (int c = 0; c < C; c++) {
        float invstd = 1.0f / sqrtf(rv[c] + q->eps), s = q->affine ? larch_layer_param(L, 0)[c] : 1.0f;
        a[c] = s * invstd;
        b[c] = (q->affine ? larch_layer_param(L, 1)[c] : 0.0f) - rm[c] * a[c];
    }
}

/* ---- group statistics (layernorm, groupnorm, instancenorm) ---- */

static LARCH_HOT void gn_forward(larch_layer *L, const larch_pass *p)
{
    const norm_t *q = L->priv;
    const int C = L->in_shape[0].c, G = q->groups, cg = C / G;
    const size_t HW = (size_t)L->in_shape[0].h * L->in_shape[0].w, per = HW * C;
    float *xhat = L->saved, *invstd = L->saved + (size_t)p->n * per;
    const double M = (double)HW * cg;                                // elements per group
    for (int b = 0; b < p->n; b++) {
        const float *x = L->x[0] + b * per;
        float *xh = xhat + b * per;
        for (int g = 0; g < G; g++) {
            double s = 0, s2 = 0;
            for (size_t i = 0; i < HW; i++)
                for (int c = g * cg; c < (g + 1) * cg; c++) { double v = x[i * C + c]; s += v; s2 += v * v; }
            double mean = s / M, var = s2 / M - mean * mean;         // biased group variance
            if (var < 0) var = 0;
            float is = (float)(1.0 / sqrt(var + q->eps));
            invstd[(size_t)b * G + g] = is;
            for (size_t i = 0; i < HW; i++)
                for (int c = g * cg; c < (g + 1) * cg; c++) xh[i * C + c] = (float)((x[i * C + c] - mean) * is);
        }
    }
    affine_out(L, xhat, L->y, (size_t)p->n * HW, C);
}

static LARCH_HOT void gn_backward(larch_layer *L, const larch_pass *p)
{
    const norm_t *q = L->priv;
    const int C = L->in_shape[0].c, G = q->groups, cg = C / G;
    const size_t HW = (size_t)L->in_shape[0].h * L->in_shape[0].w, per = HW * C;
    const float *xhat = L->saved, *invstd = L->saved + (size_t)p->n * per;
    const float *scale = q->affine ? larch_layer_param(L, 0) : NULL;
    affine_grads(L, p, xhat, (size_t)p->n * HW, C);
    if (!L->need_dx[0]) return;
    const double M = (double)HW * cg;
    int acc = L->dx_acc[0];
    for (int b = 0; b < p->n; b++) {
        const float *dy = L->dy + b * per, *xh = xhat + b * per;
        float *dx = L->dx[0] + b * per;
        for (int g = 0; g < G; g++) {
            double sg = 0, sgx = 0;                                  // sums of gx = dy scale and gx xhat
            for (size_t i = 0; i < HW; i++)
                for (int c = g * cg; c < (g + 1) * cg; c++) {
                    double gx = dy[i * C + c] * (scale ? scale[c] : 1.0f);
                    sg += gx;
                    sgx += gx * xh[i * C + c];
                }
            double mg = sg / M, mgx = sgx / M;
            float is = invstd[(size_t)b * G + g];
            for (size_t i = 0; i < HW; i++)
                for (int c = g * cg; c < (g + 1) * cg; c++) {
                    // dx = invstd (gx - mean(gx) - xhat mean(gx xhat))
                    float v = is * (float)(dy[i * C + c] * (scale ? scale[c] : 1.0f) - mg - xh[i * C + c] * mgx);
                    dx[i * C + c] = acc ? dx[i * C + c] + v : v;
                }
        }
    }
}

const larch_layer_ops larch_batchnorm_ops = {
    .type = "batchnorm", .min_inputs = 1, .max_inputs = 1, .setup = bn_setup,
    .saved_size = norm_saved, .init = norm_init, .forward = bn_fwd_op, .backward = bn_bwd_op,
    .destroy = norm_destroy};
const larch_layer_ops larch_layernorm_ops = {
    .type = "layernorm", .min_inputs = 1, .max_inputs = 1, .setup = ln_setup,
    .saved_size = norm_saved, .init = norm_init, .forward = gn_forward, .backward = gn_backward,
    .destroy = norm_destroy};
const larch_layer_ops larch_groupnorm_ops = {
    .type = "groupnorm", .min_inputs = 1, .max_inputs = 1, .setup = gn_setup,
    .saved_size = norm_saved, .init = norm_init, .forward = gn_forward, .backward = gn_backward,
    .destroy = norm_destroy};
const larch_layer_ops larch_instancenorm_ops = {
    .type = "instancenorm", .min_inputs = 1, .max_inputs = 1, .setup = in_setup,
    .saved_size = norm_saved, .init = norm_init, .forward = gn_forward, .backward = gn_backward,
    .destroy = norm_destroy};
