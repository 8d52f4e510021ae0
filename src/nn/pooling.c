/* pooling.c - max pooling, average pooling and global average pooling over
 * channels-last (n, h, w, c) inputs.
 *
 * maxpool / avgpool: a size x size window moved by `stride` (default: size)
 * over the input zero-padded by `padding`; output (n, oh, ow, c) with
 * oh = (h + 2 padding - size) / stride + 1. maxpool ignores padded cells and
 * saves, per output element, the position of its maximum in the sample (as
 * an exactly representable float) for backward. Like PyTorch's max pooling,
 * a NaN in a window wins (the output is NaN, so a diverged activation still
 * reaches the loss; the gradient goes to the last NaN), and a window of -inf
 * outputs -inf with its gradient on the window's first cell, in the same
 * channel. Every window holds at least one real cell (padding is at most half
 * the window). avgpool divides by the full
 * window, padding included (PyTorch's default count_include_pad=True).
 * global_avgpool: (n, h, w, c) -> (n, 1, 1, c), the mean over h and w.
 */
#include "nn/layers.h"
#include "core/dispatch.h"
#include "core/threads.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int size, stride, pad, oh, ow; } pool_t;

static larch_status pool_setup(larch_layer *L, const void *opts)
{
    const larch_pool_opts o = opts ? *(const larch_pool_opts *)opts : (larch_pool_opts)LARCH_POOL_DEFAULTS;
    larch_status s;
    if ((s = larch_check_int(L, "size", o.size, 1, 1024)) || (s = larch_check_int(L, "stride", o.stride, 0, 1024)) ||
        (s = larch_check_int(L, "padding", o.padding, 0, 1024)))
        return s;
    pool_t *q = calloc(1, sizeof *q);
    if (!q) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    L->priv = q;
    q->size = o.size;
    q->stride = o.stride;
    if (q->stride == 0) q->stride = q->size;
    q->pad = o.padding;
    larch_shape in = L->in_shape[0];
    if (2 * q->pad > q->size)
        return LARCH_LAYER_FAIL(L, LARCH_ERR_SHAPE, "padding %d must be at most half the window size %d", q->pad, q->size);
    if (in.h + 2 * q->pad < q->size || in.w + 2 * q->pad < q->size)
        return LARCH_LAYER_FAIL(L, LARCH_ERR_SHAPE, "window %d is larger than the padded input %dx%d",
                                q->size, in.h + 2 * q->pad, in.w + 2 * q->pad);
    if (larch_shape_size(in) >= (1u << 24))
        return LARCH_LAYER_FAIL(L, LARCH_ERR_SHAPE, "input of %zu elements per sample is too large (max 2^24)", larch_shape_size(in));
    q->oh = (in.h + 2 * q->pad - q->size) / q->stride + 1;
    q->ow = (in.w + 2 * q->pad - q->size) / q->stride + 1;
    L->out_shape = (larch_shape){q->oh, q->ow, in.c};
    return LARCH_OK;
}

static size_t maxpool_saved(const larch_layer *L, int n) { return (size_t)n * larch_shape_size(L->out_shape); }

static LARCH_HOT void maxpool_forward(larch_layer *L, size_t b0, size_t b1)
{
    const pool_t *q = L->priv;
    larch_shape in = L->in_shape[0];
    const int C = in.c;
    size_t in_per = larch_shape_size(in), out_per = larch_shape_size(L->out_shape);
    for (size_t b = b0; b < b1; b++) {
        const float *x = L->x[0] + (size_t)b * in_per;               // (h, w, c)
        float *y = L->y + (size_t)b * out_per, *arg = L->saved + (size_t)b * out_per;
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++) {
                float *restrict yo = y + ((size_t)oy * q->ow + ox) * C, *restrict ao = arg + ((size_t)oy * q->ow + ox) * C;
                int iy0 = oy * q->stride - q->pad, ix0 = ox * q->stride - q->pad;
                const float first = (float)(((size_t)(iy0 > 0 ? iy0 : 0) * in.w + (ix0 > 0 ? ix0 : 0)) * C);
                for (int c = 0; c < C; c++) { yo[c] = -INFINITY; ao[c] = first + (float)c; }   // the window's first cell
                for (int ky = 0; ky < q->size; ky++) {
                    int iy = oy * q->stride - q->pad + ky;
                    if (iy < 0 || iy >= in.h) continue;
                    for (int kx = 0; kx < q->size; kx++) {
                        int ix = ox * q->stride - q->pad + kx;
                        if (ix < 0 || ix >= in.w) continue;
                        size_t base = ((size_t)iy * in.w + ix) * C;
                        const float *restrict xi = x + base;
                        const float fb = (float)base;
                        for (int c = 0; c < C; c++) {                        // running max and where (branch-free)
                            float v = xi[c], cur = yo[c], a = ao[c], here = fb + (float)c;
                            int gt = (v > cur) | (v != v);                   // a NaN always wins
                            yo[c] = gt ? v : cur;
                            ao[c] = gt ? here : a;
                        }
                    }
                }
            }
    }
}

static LARCH_HOT void maxpool_backward(larch_layer *L, size_t b0, size_t b1)
{
    size_t in_per = larch_shape_size(L->in_shape[0]), out_per = larch_shape_size(L->out_shape);
    if (!L->dx_acc[0]) memset(L->dx[0] + b0 * in_per, 0, (b1 - b0) * in_per * sizeof(float));
    for (size_t b = b0; b < b1; b++) {
        float *dx = L->dx[0] + (size_t)b * in_per;
        const float *dy = L->dy + (size_t)b * out_per, *arg = L->saved + (size_t)b * out_per;
        for (size_t i = 0; i < out_per; i++) dx[(size_t)arg[i]] += dy[i];   // gradient to the max only
    }
}

static LARCH_HOT void avgpool_forward(larch_layer *L, size_t b0, size_t b1)
{
    const pool_t *q = L->priv;
    larch_shape in = L->in_shape[0];
    const int C = in.c;
    const float inv = 1.0f / (float)(q->size * q->size);
    size_t in_per = larch_shape_size(in), out_per = larch_shape_size(L->out_shape);
    for (size_t b = b0; b < b1; b++) {
        const float *x = L->x[0] + (size_t)b * in_per;
        float *y = L->y + (size_t)b * out_per;
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++) {
                float *yo = y + ((size_t)oy * q->ow + ox) * C;
                memset(yo, 0, (size_t)C * sizeof(float));
                for (int ky = 0; ky < q->size; ky++) {
                    int iy = oy * q->stride - q->pad + ky;
                    if (iy < 0 || iy >= in.h) continue;
                    for (int kx = 0; kx < q->size; kx++) {
                        int ix = ox * q->stride - q->pad + kx;
                        if (ix < 0 || ix >= in.w) continue;
                        const float *xi = x + ((size_t)iy * in.w + ix) * C;
                        for (int c = 0; c < C; c++) yo[c] += xi[c];
                    }
                }
                for (int c = 0; c < C; c++) yo[c] *= inv;                    // mean over size^2 cells
            }
    }
}

static LARCH_HOT void avgpool_backward(larch_layer *L, size_t b0, size_t b1)
{
    const pool_t *q = L->priv;
    larch_shape in = L->in_shape[0];
    const int C = in.c;
    const float inv = 1.0f / (float)(q->size * q->size);
    size_t in_per = larch_shape_size(in), out_per = larch_shape_size(L->out_shape);
    if (!L->dx_acc[0]) memset(L->dx[0] + b0 * in_per, 0, (b1 - b0) * in_per * sizeof(float));
    for (size_t b = b0; b < b1; b++) {
        float *dx = L->dx[0] + (size_t)b * in_per;
        const float *dy = L->dy + (size_t)b * out_per;
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++) {
                const float *g = dy + ((size_t)oy * q->ow + ox) * C;
                for (int ky = 0; ky < q->size; ky++) {
                    int iy = oy * q->stride - q->pad + ky;
                    if (iy < 0 || iy >= in.h) continue;
                    for (int kx = 0; kx < q->size; kx++) {
                        int ix = ox * q->stride - q->pad + kx;
                        if (ix < 0 || ix >= in.w) continue;
                        float *d = dx + ((size_t)iy * in.w + ix) * C;
                        for (int c = 0; c < C; c++) d[c] += g[c] * inv;      // each cell gets dy / size^2
                    }
                }
            }
    }
}

static larch_status gap_setup(larch_layer *L, const void *opts)
{
    L->out_shape = (larch_shape){1, 1, L->in_shape[0].c};
    return LARCH_OK;
}

static LARCH_HOT void gap_forward(larch_layer *L, size_t b0, size_t b1)
{
    larch_shape in = L->in_shape[0];
    const int C = in.c;
    const size_t HW = (size_t)in.h * in.w;
    const float inv = 1.0f / (float)HW;
    for (size_t b = b0; b < b1; b++) {
        const float *x = L->x[0] + (size_t)b * HW * C;                   // (h*w, c)
        float *y = L->y + (size_t)b * C;
        memset(y, 0, (size_t)C * sizeof(float));
        for (size_t i = 0; i < HW; i++)
            for (int c = 0; c < C; c++) y[c] += x[(size_t)i * C + c];
        for (int c = 0; c < C; c++) y[c] *= inv;                           // mean over h, w
    }
}

static LARCH_HOT void gap_backward(larch_layer *L, size_t b0, size_t b1)
{
    larch_shape in = L->in_shape[0];
    const int C = in.c;
    const size_t HW = (size_t)in.h * in.w;
    const float inv = 1.0f / (float)HW;
    for (size_t b = b0; b < b1; b++) {
        float *dx = L->dx[0] + (size_t)b * HW * C;
        const float *dy = L->dy + (size_t)b * C;
        for (size_t i = 0; i < HW; i++)
            for (int c = 0; c < C; c++) {
                float g = dy[c] * inv;                                     // dy / (h w) to every cell
                dx[(size_t)i * C + c] = L->dx_acc[0] ? dx[(size_t)i * C + c] + g : g;
            }
    }
}

/* Every pass works on samples [b0, b1); pool_run splits the batch over
 * threads (core/threads.h). Samples are independent, so the split changes
 * nothing. */
typedef void (*pool_kernel)(larch_layer *L, size_t b0, size_t b1);
typedef struct { larch_layer *L; pool_kernel k; } pool_job;
static void pool_range(void *ctx, size_t lo, size_t hi) { const pool_job *j = ctx; j->k(j->L, lo, hi); }
static void pool_run(larch_layer *L, const larch_pass *p, pool_kernel k, int backward)
{
    if (backward && !L->need_dx[0]) return;
    size_t per = larch_shape_size(L->in_shape[0]);
    pool_job j = {L, k};
    larch_parallel_for((size_t)p->n, 16384 / per + 1, pool_range, &j);   /* >= 16K input floats a range */
}
#define POOL_OPS(name)                                                                               \
    static void name##_fwd(larch_layer *L, const larch_pass *p) { pool_run(L, p, name##_forward, 0); } \
    static void name##_bwd(larch_layer *L, const larch_pass *p) { pool_run(L, p, name##_backward, 1); }
POOL_OPS(maxpool)
POOL_OPS(avgpool)
POOL_OPS(gap)

static void pool_destroy(larch_layer *L) { free(L->priv); }

const larch_layer_ops larch_maxpool_ops = {
    .type = "maxpool", .min_inputs = 1, .max_inputs = 1, .setup = pool_setup,
    .saved_size = maxpool_saved, .forward = maxpool_fwd, .backward = maxpool_bwd, .destroy = pool_destroy};
const larch_layer_ops larch_avgpool_ops = {
    .type = "avgpool", .min_inputs = 1, .max_inputs = 1, .setup = pool_setup,
    .forward = avgpool_fwd, .backward = avgpool_bwd, .destroy = pool_destroy};
const larch_layer_ops larch_global_avgpool_ops = {
    .type = "global_avgpool", .min_inputs = 1, .max_inputs = 1, .setup = gap_setup,
    .forward = gap_fwd, .backward = gap_bwd};
