/* dropout.c - inverted dropout.
 *
 * Training: each element is kept with probability 1 - rate and scaled by
 * 1 / (1 - rate), so evaluation (identity) needs no rescaling. The mask of
 * local sample i is drawn from the Philox stream
 *     (run seed, LARCH_RNG_DROPOUT + hash(layer name), step, sample0 + i)
 * i.e. keyed by the sample's global position in the global batch, never by
 * the rank (docs/design.md, decision 4): the same sample gets the same mask
 * however the batch is split across ranks. The mask (0 or the scale) is
 * saved for backward.
 */
#include "nn/layers.h"
#include "core/dispatch.h"
#include "core/threads.h"

#include <stdlib.h>
#include <string.h>

typedef struct { float rate; uint32_t purpose; } dropout_t;

static larch_status dropout_setup(larch_layer *L, const void *opts)
{
    const larch_dropout_opts o = opts ? *(const larch_dropout_opts *)opts : (larch_dropout_opts)LARCH_DROPOUT_DEFAULTS;
    larch_status s = larch_check_float(L, "rate", o.rate, 0, 0.999);
    if (s) return s;
    dropout_t *d = calloc(1, sizeof *d);
    if (!d) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    d->rate = o.rate;
    d->purpose = LARCH_RNG_DROPOUT + (larch_hash32(L->name) & 0xfff);
    L->priv = d;
    L->out_shape = L->in_shape[0];
    return LARCH_OK;
}

static size_t dropout_saved(const larch_layer *L, int n) { return (size_t)n * larch_shape_size(L->out_shape); }

/* Samples [b0, b1) (forward) or elements [b0, b1) (backward); the passes
 * split over threads (core/threads.h), each sample's mask drawn from its
 * own stream, so the split changes nothing. */
typedef struct { larch_layer *L; const larch_pass *p; } drop_job;

static LARCH_HOT void dropout_forward(void *ctx, size_t b0, size_t b1)
{
    larch_layer *L = ((drop_job *)ctx)->L;
    const larch_pass *p = ((drop_job *)ctx)->p;
    const dropout_t *d = L->priv;
    size_t per = larch_shape_size(L->out_shape);
    const float scale = 1.0f / (1.0f - d->rate);
    const uint32_t keep = (uint32_t)((1.0 - d->rate) * 4294967296.0 > 4294967295.0 ? 4294967295.0
                                                                                   : (1.0 - d->rate) * 4294967296.0);
    for (size_t i = b0; i < b1; i++) {
        larch_rng r;
        larch_rng_init(&r, p->seed, d->purpose, p->step, p->sample0 + (uint32_t)i);
        float *mask = L->saved + (size_t)i * per;
        const float *x = L->x[0] + (size_t)i * per;
        float *y = L->y + (size_t)i * per;
        for (size_t j = 0; j < per; j++) {
            mask[j] = larch_rng_u32(&r) < keep ? scale : 0.0f;   // kept with probability 1 - rate
            y[j] = x[j] * mask[j];
        }
    }
}

static LARCH_HOT void dropout_backward(void *ctx, size_t lo, size_t hi)
{
    larch_layer *L = ((drop_job *)ctx)->L;
    const larch_pass *p = ((drop_job *)ctx)->p;
    const dropout_t *d = L->priv;
    float *restrict dx = L->dx[0];
    const float *restrict dy = L->dy, *restrict mask = L->saved;
    int identity = !p->train || d->rate == 0.0f;
    for (size_t i = lo; i < hi; i++) {
        float g = identity ? dy[i] : dy[i] * mask[i];            // dL/dx = dy * mask
        dx[i] = L->dx_acc[0] ? dx[i] + g : g;
    }
}

static void dropout_fwd(larch_layer *L, const larch_pass *p)
{
    const dropout_t *d = L->priv;
    size_t per = larch_shape_size(L->out_shape);
    if (!p->train || d->rate == 0.0f) {                      // identity
        memcpy(L->y, L->x[0], (size_t)p->n * per * sizeof(float));
        return;
    }
    drop_job j = {L, p};
    larch_parallel_for((size_t)p->n, 16384 / per + 1, dropout_forward, &j);
}

static void dropout_bwd(larch_layer *L, const larch_pass *p)
{
    if (!L->need_dx[0]) return;
    drop_job j = {L, p};
    larch_parallel_for((size_t)p->n * larch_shape_size(L->out_shape), 32768, dropout_backward, &j);
}

static void dropout_destroy(larch_layer *L) { free(L->priv); }

const larch_layer_ops larch_dropout_ops = {
    .type = "dropout", .min_inputs = 1, .max_inputs = 1,
    .setup = dropout_setup, .saved_size = dropout_saved, .forward = dropout_fwd,
    .backward = dropout_bwd, .destroy = dropout_destroy};
