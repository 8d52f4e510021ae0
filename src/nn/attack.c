/* attack.c - FGSM and PGD on a model and a batch (see attack.h). */
#include "nn/attack.h"
#include "nn/model_internal.h"
#include "larch/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct larch_attack_ws {
    int max_batch;
    size_t in;                 /* floats per sample            */
    int c;                     /* channels (fastest index)     */
    float *u0, *u, *xin;       /* (max_batch, in): clean raw, current raw, current normalized */
    int32_t *labels, *cur;     /* (max_batch): attacked labels (targeted: targets), predictions */
    uint8_t *done;             /* (max_batch): keep_best: a fooling iterate is kept */
    int *need_dw;              /* (n_layers): the layers' flags, restored after the attack */
    int classes;               /* loss 0's outputs                                       */
    double *p, *logq;          /* (max_batch, classes): TRADES' clean softmax, adversarial log-softmax */
};

larch_status larch_attack_check(const larch_attack_opts *o)
{
    if (o->method != LARCH_ATTACK_FGSM && o->method != LARCH_ATTACK_PGD)
        return larch_fail(LARCH_ERR_INVALID, "attack: method %d is not fgsm or pgd", (int)o->method);
    if (o->norm != LARCH_ATTACK_LINF && o->norm != LARCH_ATTACK_L2)
        return larch_fail(LARCH_ERR_INVALID, "attack: norm %d is not linf or l2", (int)o->norm);
    if (!(o->eps >= 0.0f) || !isfinite(o->eps) || o->eps > 1e6f)
        return larch_fail(LARCH_ERR_INVALID, "attack: eps %g must be finite and >= 0", (double)o->eps);
    if (!(o->step_size >= 0.0f) || !isfinite(o->step_size))
        return larch_fail(LARCH_ERR_INVALID, "attack: step size %g must be finite and >= 0 (0: the default)",
                          (double)o->step_size);
    if (o->method == LARCH_ATTACK_PGD && (o->steps < 1 || o->steps > 100000))
        return larch_fail(LARCH_ERR_INVALID, "attack: pgd steps %d must be 1..100000", o->steps);
    if (o->restarts < 1 || o->restarts > 1000)
        return larch_fail(LARCH_ERR_INVALID, "attack: restarts %d must be 1..1000", o->restarts);
    if (o->n_norm < 1 || !o->mean || !o->std)
        return larch_fail(LARCH_ERR_INVALID, "attack: no normalization given (n_norm %d)", o->n_norm);
    for (int k = 0; k < o->n_norm; k++)
        if (!(o->std[k] > 0.0f) || !isfinite(o->std[k]) || !isfinite(o->mean[k]))
            return larch_fail(LARCH_ERR_INVALID, "attack: normalization %d: mean %g, std %g (std must be > 0)", k,
                              (double)o->mean[k], (double)o->std[k]);
    if (o->clip && !(o->lo < o->hi))
        return larch_fail(LARCH_ERR_INVALID, "attack: the valid range [%g, %g] is empty", (double)o->lo, (double)o->hi);
    return LARCH_OK;
}

float larch_attack_step_size(const larch_attack_opts *o)
{
    if (o->step_size > 0.0f) return o->step_size;
    if (o->method == LARCH_ATTACK_FGSM) return o->random_start ? 1.25f * o->eps : o->eps;
    return 2.5f * o->eps / (float)o->steps;
}

void larch_attack_ws_free(larch_attack_ws *ws)
{
    if (!ws) return;
    free(ws->u0); free(ws->u); free(ws->xin);
    free(ws->labels); free(ws->cur); free(ws->done); free(ws->need_dw); free(ws->p); free(ws->logq);
    free(ws);
}

larch_status larch_attack_ws_create(larch_attack_ws **out, const larch_model *m, int max_batch)
{
    *out = NULL;
    if (max_batch < 1) return larch_fail(LARCH_ERR_INVALID, "attack: batch %d must be positive", max_batch);
    if (m->n_losses < 1) return larch_fail(LARCH_ERR_INVALID, "attack: the model has no loss");
    for (int k = 0; k < m->n_losses; k++) {
        const larch_loss *l = &m->losses[k];
        if (larch_loss_embedding(l->type) || l->on_targets)
            return larch_fail(LARCH_ERR_CONFIG, "attack: loss '%s' does not score class labels one sample at a time; "
                              "attacks need classification losses (softmax_ce, arcface, mse on labels)", l->name);
    }
    if (!larch_loss_has_accuracy(&m->losses[0]))
        return larch_fail(LARCH_ERR_CONFIG, "attack: loss '%s' has no class predictions", m->losses[0].name);
    larch_attack_ws *ws = calloc(1, sizeof *ws);
    if (!ws) return larch_fail(LARCH_ERR_NOMEM, "attack: out of memory");
    ws->max_batch = max_batch;
    ws->in = larch_shape_size(m->input_shape);
    ws->c = m->input_shape.c;
    size_t len = (size_t)max_batch * ws->in * sizeof(float);
    ws->u0 = larch_aligned_alloc(len, "attack workspace");
    ws->u = larch_aligned_alloc(len, "attack workspace");
    ws->xin = larch_aligned_alloc(len, "attack workspace");
    ws->labels = calloc((size_t)max_batch, sizeof *ws->labels);
    ws->cur = calloc((size_t)max_batch, sizeof *ws->cur);
    ws->done = calloc((size_t)max_batch, 1);
    ws->need_dw = calloc((size_t)m->n_layers + 1, sizeof *ws->need_dw);
    ws->classes = (int)larch_shape_size(m->layers[m->losses[0].node - 1]->out_shape);
    ws->p = calloc((size_t)max_batch * ws->classes, sizeof *ws->p);
    ws->logq = calloc((size_t)max_batch * ws->classes, sizeof *ws->logq);
    if (!ws->u0 || !ws->u || !ws->xin || !ws->labels || !ws->cur || !ws->done || !ws->need_dw || !ws->p || !ws->logq) {
        larch_attack_ws_free(ws);
        return larch_fail(LARCH_ERR_NOMEM, "attack: out of memory for a batch of %d", max_batch);
    }
    *out = ws;
    return LARCH_OK;
}

int larch_attack_node(const larch_model *m) { return m->n_losses > 0 ? m->losses[0].node : m->n_layers; }

int32_t larch_attack_target(uint64_t seed, uint32_t index, int32_t label, int classes)
{
    if (classes < 2) return label;
    larch_rng r;
    larch_rng_init(&r, seed, LARCH_RNG_ATTACK + 1, index, 0);
    return (int32_t)((label + 1 + (int32_t)larch_rng_below(&r, (uint32_t)(classes - 1))) % classes);
}

static inline int chan(const larch_attack_opts *o, size_t j, int c) { return o->n_norm == 1 ? 0 : (int)(j % (size_t)c); }

/* u -> x' for n samples. */
static void normalize(const larch_attack_ws *ws, const larch_attack_opts *o, const float *u, float *x, int n)
{
    size_t len = (size_t)n * ws->in;
    for (size_t j = 0; j < len; j++) {
        int k = chan(o, j, ws->c);
        x[j] = (u[j] - o->mean[k]) / o->std[k];
    }
}

/* delta = u - u0 projected onto the eps ball, then u into [lo, hi]. */
static void project(const larch_attack_ws *ws, const larch_attack_opts *o, float *u, const float *u0)
{
    if (o->norm == LARCH_ATTACK_LINF) {
        for (size_t j = 0; j < ws->in; j++) {
            float d = u[j] - u0[j];
            d = d > o->eps ? o->eps : d < -o->eps ? -o->eps : d;
            u[j] = u0[j] + d;
        }
    } else {
        double s = 0.0;
        for (size_t j = 0; j < ws->in; j++) s += (double)(u[j] - u0[j]) * (u[j] - u0[j]);
        double nrm = sqrt(s);
        if (nrm > o->eps) {
            float f = (float)(o->eps / nrm);
            for (size_t j = 0; j < ws->in; j++) u[j] = u0[j] + (u[j] - u0[j]) * f;
        }
    }
    if (o->clip)
        for (size_t j = 0; j < ws->in; j++) u[j] = u[j] < o->lo ? o->lo : u[j] > o->hi ? o->hi : u[j];
}

/* A uniform start in the eps ball (L2: a uniform direction, radius eps * U). */
static void random_start(const larch_attack_ws *ws, const larch_attack_opts *o, float *u, const float *u0,
                         uint32_t index, uint32_t restart)
{
    larch_rng r;
    larch_rng_init(&r, o->seed, LARCH_RNG_ATTACK, index, o->stream + restart);
    if (o->norm == LARCH_ATTACK_LINF) {
        for (size_t j = 0; j < ws->in; j++) u[j] = u0[j] + o->eps * (2.0f * larch_rng_uniform(&r) - 1.0f);
    } else {
        double s = 0.0;
        for (size_t j = 0; j < ws->in; j++) { u[j] = larch_rng_normal(&r); s += (double)u[j] * u[j]; }
        float f = s > 0.0 ? (float)(o->eps * larch_rng_uniform(&r) / sqrt(s)) : 0.0f;
        for (size_t j = 0; j < ws->in; j++) u[j] = u0[j] + u[j] * f;
    }
    project(ws, o, u, u0);
}

/* One step on a sample along the raw-unit gradient g/std (descending when targeted). */
static void ascend(const larch_attack_ws *ws, const larch_attack_opts *o, float alpha, float *u, const float *u0,
                   const float *g)
{
    float dir = o->targeted ? -alpha : alpha;
    if (o->norm == LARCH_ATTACK_LINF) {
        for (size_t j = 0; j < ws->in; j++)        /* std > 0: sign(g / std) = sign(g) */
            u[j] += g[j] > 0.0f ? dir : g[j] < 0.0f ? -dir : 0.0f;
    } else {
        double s = 0.0;
        for (size_t j = 0; j < ws->in; j++) {
            double gu = g[j] / o->std[chan(o, j, ws->c)];
            s += gu * gu;
        }
        if (s > 0.0) {
            float f = (float)(dir / sqrt(s));
            for (size_t j = 0; j < ws->in; j++) u[j] += f * g[j] / o->std[chan(o, j, ws->c)];
        }
    }
    project(ws, o, u, u0);
}

/* Loss 0's predicted classes on the last forward. */
static void predictions(const larch_model *m, int n, int32_t *pred)
{
    const larch_loss *l = &m->losses[0];
    int C = (int)larch_shape_size(m->layers[l->node - 1]->out_shape);
    const float *y = m->node_y[l->node];
    for (int i = 0; i < n; i++) {
        const float *row = y + (size_t)i * C;
        int best = 0;
        for (int k = 1; k < C; k++)
            if (row[k] > row[best]) best = k;
        pred[i] = best;
    }
}

static int fooled(const larch_attack_opts *o, int32_t pred, int32_t label, int32_t attacked)
{
    return o->targeted ? pred == attacked : pred != label;
}

larch_status larch_attack_run(larch_model *m, larch_attack_ws *ws, const larch_batch *b, const larch_attack_opts *o,
                              float *x_adv, int32_t *pred, int32_t *target)
{
    larch_status s = larch_attack_check(o);
    if (s) return s;
    if (!m->arena || !m->node_dy[0])
        return larch_fail(LARCH_ERR_INVALID, "attack: plan the model with larch_model_set_input_grad(m, 1)");
    if (b->n > ws->max_batch || b->n > m->max_batch)
        return larch_fail(LARCH_ERR_INVALID, "attack: batch %d is larger than the planned %d", b->n,
                          ws->max_batch < m->max_batch ? ws->max_batch : m->max_batch);
    const int n = b->n;
    const larch_loss *l0 = &m->losses[0];
    const int32_t *labels = b->label[l0->target];
    if (n > 0 && !labels) return larch_fail(LARCH_ERR_INVALID, "attack: the batch has no labels of set %d", l0->target);
    const int classes = (int)larch_shape_size(m->layers[l0->node - 1]->out_shape);
    const size_t in = ws->in;
    /* clean raw inputs */
    for (size_t j = 0; j < (size_t)n * in; j++) {
        int k = chan(o, j, ws->c);
        ws->u0[j] = b->x[j] * o->std[k] + o->mean[k];
    }
    larch_batch bb = *b;
    bb.x = ws->xin;
    if (o->targeted) {
        for (int i = 0; i < n; i++) ws->labels[i] = larch_attack_target(o->seed, b->sample0 + (uint32_t)i, labels[i], classes);
        bb.label[l0->target] = ws->labels;
        if (target) memcpy(target, ws->labels, (size_t)n * sizeof *target);
    } else if (n > 0) {
        memcpy(ws->labels, labels, (size_t)n * sizeof *labels);
    }
    memset(ws->done, 0, (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < m->n_layers; i++) { ws->need_dw[i] = m->layers[i]->need_dw; m->layers[i]->need_dw = 0; }
    const int fgsm = o->method == LARCH_ATTACK_FGSM;
    const int moves = o->eps > 0.0f;                   /* eps 0: the clean inputs, one scoring forward */
    const int steps = !moves ? 0 : fgsm ? 1 : o->steps, restarts = fgsm || !moves ? 1 : o->restarts;
    const float alpha = larch_attack_step_size(o);
    const int rand0 = o->random_start && o->eps > 0.0f;
    larch_pass p = {n, o->train, o->seed, o->step, b->sample0, 0, o->comm};
    const float *g = m->node_dy[0];
    int left = n;
    for (int r = 0; r < restarts && (left > 0 || o->train); r++) {
        for (int i = 0; i < n; i++) {
            float *u = ws->u + (size_t)i * in;
            const float *u0 = ws->u0 + (size_t)i * in;
            if (rand0) random_start(ws, o, u, u0, b->sample0 + (uint32_t)i, (uint32_t)r);
            else memcpy(u, u0, in * sizeof *u);
        }
        for (int t = 0; t <= steps; t++) {
            if (t == steps && !o->keep_best) break;      /* training: the last iterate, no scoring forward */
            normalize(ws, o, ws->u, ws->xin, n);
            larch_model_forward(m, &bb, &p);
            if (o->keep_best) {
                predictions(m, n, ws->cur);
                for (int i = 0; i < n; i++) {
                    if (ws->done[i] || !fooled(o, ws->cur[i], labels[i], ws->labels[i])) continue;
                    ws->done[i] = 1;
                    left--;
                    memcpy(x_adv + (size_t)i * in, ws->xin + (size_t)i * in, in * sizeof *x_adv);
                    if (pred) pred[i] = ws->cur[i];
                }
                /* in eval mode the samples are independent: stop when all are fooled */
                if (left == 0 && !o->train) break;
            }
            if (t == steps) break;
            larch_model_loss(m, &bb, 1.0f, NULL);
            larch_model_backward(m, &p);
            for (int i = 0; i < n; i++)
                ascend(ws, o, alpha, ws->u + (size_t)i * in, ws->u0 + (size_t)i * in, g + (size_t)i * in);
        }
        if (o->keep_best && r == restarts - 1)           /* never fooled: the last iterate */
            for (int i = 0; i < n; i++) {
                if (ws->done[i]) continue;
                memcpy(x_adv + (size_t)i * in, ws->xin + (size_t)i * in, in * sizeof *x_adv);
                if (pred) pred[i] = ws->cur[i];
            }
    }
    if (!o->keep_best) {
        normalize(ws, o, ws->u, x_adv, n);
        if (pred && n > 0) {
            bb.x = x_adv;
            larch_model_forward(m, &bb, &p);
            predictions(m, n, pred);
        }
    }
    for (int i = 0; i < m->n_layers; i++) m->layers[i]->need_dw = ws->need_dw[i];
    return LARCH_OK;
}

/* ---- TRADES ---- */

larch_status larch_trades_check(const larch_model *m)
{
    if (m->n_losses != 1 || m->losses[0].type != LARCH_LOSS_SOFTMAX_CE || m->losses[0].uncertainty)
        return larch_fail(LARCH_ERR_CONFIG, "TRADES needs exactly one softmax_ce loss (without uncertainty weighting); "
                          "the model has %d loss(es)%s%s", m->n_losses, m->n_losses ? ", the first '" : "",
                          m->n_losses ? m->losses[0].name : "");
    return LARCH_OK;
}

/* log-softmax of the n rows of the loss node's outputs */
static void log_softmax_rows(const larch_model *m, const larch_attack_ws *ws, int n, double *out)
{
    const int C = ws->classes;
    const float *z = m->node_y[m->losses[0].node];
    for (int i = 0; i < n; i++) {
        const float *r = z + (size_t)i * C;
        double mx = r[0], sum = 0.0;
        for (int k = 1; k < C; k++) mx = r[k] > mx ? r[k] : mx;
        for (int k = 0; k < C; k++) sum += exp(r[k] - mx);
        double lse = mx + log(sum);
        for (int k = 0; k < C; k++) out[(size_t)i * C + k] = r[k] - lse;
    }
}

void larch_trades_keep_clean(larch_model *m, larch_attack_ws *ws, int n)
{
    log_softmax_rows(m, ws, n, ws->p);
    for (size_t j = 0; j < (size_t)n * ws->classes; j++) ws->p[j] = exp(ws->p[j]);
}

double larch_trades_adv_grad(larch_model *m, larch_attack_ws *ws, int n, float scale)
{
    const int C = ws->classes;
    log_softmax_rows(m, ws, n, ws->logq);
    float *g = m->node_dy[m->losses[0].node];
    double kl = 0.0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < C; k++) {
            size_t j = (size_t)i * C + k;
            double p = ws->p[j], lq = ws->logq[j];
            if (p > 0.0) kl += p * (log(p) - lq);
            g[j] = (float)(scale * (exp(lq) - p));            /* d KL(p || q) / d z' = q - p */
        }
    return kl;
}

void larch_trades_clean_grad(larch_model *m, larch_attack_ws *ws, int n, float scale)
{
    const int C = ws->classes;
    float *g = m->node_dy[m->losses[0].node];
    for (int i = 0; i < n; i++) {
        const double *p = ws->p + (size_t)i * C, *lq = ws->logq + (size_t)i * C;
        double kl = 0.0;
        for (int k = 0; k < C; k++) if (p[k] > 0.0) kl += p[k] * (log(p[k]) - lq[k]);
        for (int k = 0; k < C; k++)                          /* d KL / d z_k = p_k (log p_k - log q_k - KL) */
            g[(size_t)i * C + k] += (float)(scale * (p[k] > 0.0 ? p[k] * (log(p[k]) - lq[k] - kl) : 0.0));
    }
}

larch_status larch_trades_craft(larch_model *m, larch_attack_ws *ws, const larch_batch *b, const larch_attack_opts *o,
                                float *x_adv)
{
    larch_status s = larch_attack_check(o);
    if (!s) s = larch_trades_check(m);
    if (s) return s;
    if (!m->arena || !m->node_dy[0])
        return larch_fail(LARCH_ERR_INVALID, "attack: plan the model with larch_model_set_input_grad(m, 1)");
    if (b->n > ws->max_batch || b->n > m->max_batch)
        return larch_fail(LARCH_ERR_INVALID, "attack: batch %d is larger than the planned %d", b->n, ws->max_batch);
    const int n = b->n;
    const size_t in = ws->in;
    larch_pass p = {n, o->train, o->seed, o->step, b->sample0, 0, o->comm};
    larch_model_forward(m, b, &p);
    larch_trades_keep_clean(m, ws, n);
    for (size_t j = 0; j < (size_t)n * in; j++) {
        int k = chan(o, j, ws->c);
        ws->u0[j] = b->x[j] * o->std[k] + o->mean[k];
    }
    for (int i = 0; i < n; i++) {                              /* x + 0.001 N(0, 1), as the TRADES code starts */
        larch_rng r;
        larch_rng_init(&r, o->seed, LARCH_RNG_ATTACK + 2, b->sample0 + (uint32_t)i, o->stream);
        float *u = ws->u + (size_t)i * in;
        const float *u0 = ws->u0 + (size_t)i * in;
        for (size_t j = 0; j < in; j++) u[j] = u0[j] + 0.001f * larch_rng_normal(&r);
        if (o->eps > 0.0f) project(ws, o, u, u0);
        else memcpy(u, u0, in * sizeof *u);
    }
    larch_batch bb = *b;
    bb.x = ws->xin;
    for (int i = 0; i < m->n_layers; i++) { ws->need_dw[i] = m->layers[i]->need_dw; m->layers[i]->need_dw = 0; }
    larch_attack_opts up = *o;
    up.targeted = 0;
    const float alpha = o->step_size > 0.0f ? o->step_size : 2.5f * o->eps / (float)o->steps;
    const float *g = m->node_dy[0];
    for (int t = 0; o->eps > 0.0f && t < o->steps; t++) {
        normalize(ws, o, ws->u, ws->xin, n);
        larch_model_forward(m, &bb, &p);
        larch_trades_adv_grad(m, ws, n, 1.0f);
        larch_model_backward(m, &p);
        for (int i = 0; i < n; i++)
            ascend(ws, &up, alpha, ws->u + (size_t)i * in, ws->u0 + (size_t)i * in, g + (size_t)i * in);
    }
    for (int i = 0; i < m->n_layers; i++) m->layers[i]->need_dw = ws->need_dw[i];
    normalize(ws, o, ws->u, x_adv, n);
    return LARCH_OK;
}
