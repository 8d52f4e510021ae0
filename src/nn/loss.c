/* loss.c - losses (softmax cross-entropy with label smoothing, MSE), their
 * fixed or learned (homoscedastic uncertainty) task weights, regularization
 * penalties (L1, L2, Lq) and their typed builders.
 *
 * softmax_ce: per-sample loss -sum_j q_j log softmax(z)_j with the smoothed
 * target q = (1 - eps) onehot(y) + eps / C; gradient softmax(z) - q.
 * mse: per-sample loss mean_j (z_j - t_j)^2, gradient 2 (z - t) / D; with
 * `on: targets` t is the batch's float regression targets (no accuracy),
 * with `on: labels` (the default) t = onehot(label).
 * Uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018, eq. 7 and
 * 10): a task contributes c exp(-s) L + s / 2 with s = log sigma^2 learned,
 * c = 1 for a classification likelihood and 1/2 for a Gaussian one, so
 * d/ds = -c exp(-s) L + 1/2; the s of every such task live in the extra
 * layer "loss_weights" (one tensor log_var), so they are synchronized,
 * stepped and checkpointed like any parameter.
 * Penalty: coef * sum |w|^q over weights (or all parameters). The YAML
 * front end (src/train/model_cfg.c) fills the same larch_loss_opts and
 * larch_penalty_opts and calls the same builders.
 */
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/flow_internal.h"
#include "core/dispatch.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

larch_status larch_model_add_loss(larch_model *m, const larch_loss_opts *opts)
{
    const larch_loss_opts o = opts ? *opts : (larch_loss_opts)LARCH_LOSS_DEFAULTS;
    const char *name = o.name ? o.name : "main";
    if (m->finalized) return larch_fail(LARCH_ERR_INVALID, "loss '%s': the model is finalized", name);
    if (m->n_losses >= LARCH_MAX_LOSSES)
        return larch_fail(LARCH_ERR_INVALID, "loss '%s': too many losses (at most %d)", name, LARCH_MAX_LOSSES);
    if (!name[0] || strlen(name) >= LARCH_NAME_MAX)
        return larch_fail(LARCH_ERR_INVALID, "loss '%s': a task name has 1-%d characters", name, LARCH_NAME_MAX - 1);
    for (int i = 0; i < m->n_losses; i++)
        if (strcmp(m->losses[i].name, name) == 0)
            return larch_fail(LARCH_ERR_INVALID, "loss '%s': task name '%s' is used twice", name, name);
    if ((int)o.type < (int)LARCH_LOSS_SOFTMAX_CE || (int)o.type > (int)LARCH_LOSS_FLOW_NLL)
        return larch_fail(LARCH_ERR_INVALID, "loss '%s': type = %d is not a larch_loss_type", name, (int)o.type);
    if (o.mining != LARCH_MINING_BATCH_HARD && o.mining != LARCH_MINING_BATCH_ALL)
        return larch_fail(LARCH_ERR_INVALID, "loss '%s': mining = %d is not a larch_mining", name, (int)o.mining);
    if (o.weighting != LARCH_WEIGHTING_FIXED && o.weighting != LARCH_WEIGHTING_UNCERTAINTY)
        return larch_fail(LARCH_ERR_INVALID, "loss '%s': weighting = %d is not a larch_loss_weighting", name, (int)o.weighting);
    int node = o.input && o.input[0] ? larch_model_node(m, o.input) : m->n_layers;
    if (node <= 0)
        return larch_fail(LARCH_ERR_INVALID, "loss '%s': input '%s' is not a layer of the model", name,
                          o.input ? o.input : "");
    struct { const char *key; double v, lo, hi; } checks[] = {
        {"target", o.target, 0, LARCH_MAX_TARGETS - 1}, {"weight", o.weight, 0, 1e6},
        {"label_smoothing", o.label_smoothing, 0, 0.999}, {"log_var_init", o.log_var_init, -20, 20},
        {"margin", o.margin, 0, 10}, {"temperature", o.temperature, 1e-3, 100}, {"scale", o.scale, 1, 1024},
        {"alpha", o.alpha, 0, 1}};
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
        if (!(checks[i].v >= checks[i].lo && checks[i].v <= checks[i].hi))
            return larch_fail(LARCH_ERR_INVALID, "loss '%s': %s = %g is out of range [%g, %g]", name, checks[i].key,
                              checks[i].v, checks[i].lo, checks[i].hi);
    if (o.on_targets && o.type != LARCH_LOSS_MSE)
        return larch_fail(LARCH_ERR_INVALID, "loss '%s': on_targets: float targets are scored by mse only (softmax_ce needs "
                          "labels)", name);
    if (o.type == LARCH_LOSS_CENTER && !(o.classes >= 1 && o.classes <= (1 << 20)))
        return larch_fail(LARCH_ERR_INVALID, "loss '%s' (center): classes = %d is out of range [1, %d] (the number of "
                          "centers: the label set's classes)", name, o.classes, 1 << 20);
    if (o.type == LARCH_LOSS_ARCFACE && o.margin > 3.14159f)
        return larch_fail(LARCH_ERR_INVALID, "loss '%s' (arcface): margin = %g is an angle in radians, at most pi", name,
                          o.margin);
    if (o.type == LARCH_LOSS_CENTER && o.weighting == LARCH_WEIGHTING_UNCERTAINTY)
        return larch_fail(LARCH_ERR_INVALID, "loss '%s' (center): weighting: uncertainty has no likelihood for a center "
                          "loss; give it a fixed weight (lambda)", name);
    if (o.type == LARCH_LOSS_FLOW_NLL && o.weighting == LARCH_WEIGHTING_UNCERTAINTY)
        return larch_fail(LARCH_ERR_INVALID, "loss '%s' (flow_nll): weighting: uncertainty does not apply; give it a fixed "
                          "weight", name);
    if (larch_loss_pairwise(o.type) && o.weighting == LARCH_WEIGHTING_UNCERTAINTY)
        return larch_fail(LARCH_ERR_INVALID, "loss '%s': weighting: uncertainty is for softmax_ce, mse and arcface; a "
                          "pairwise loss takes a fixed weight", name);
    larch_loss *l = &m->losses[m->n_losses];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->type = o.type;
    l->node = node;
    l->target = o.target;
    l->on_targets = o.on_targets;
    l->weight = o.weight;
    l->label_smoothing = o.label_smoothing;
    l->uncertainty = o.weighting == LARCH_WEIGHTING_UNCERTAINTY;
    l->log_var_init = o.log_var_init;
    l->margin = o.margin;
    l->soft_margin = o.soft_margin != 0;
    l->mining = o.mining;
    l->temperature = o.temperature;
    l->scale = o.scale;
    l->alpha = o.alpha;
    l->classes = o.classes;
    l->global = o.global != 0;
    m->n_losses++;
    return LARCH_OK;
}

/* Soft sharing: resolves the layer pairs of a tie penalty; the two layers
 * of a pair must have the same parameter tensors (count and shapes). */
static larch_status tie_pairs(const larch_model *m, const larch_penalty_opts *o, larch_penalty *p)
{
    if (o->n_pairs < 1 || o->n_pairs > LARCH_TIE_MAX || !o->layers)
        return larch_fail(LARCH_ERR_INVALID, "penalty tie: %d layer pairs: give 1 to %d pairs (layers [[A, B], ...])",
                          o->n_pairs, LARCH_TIE_MAX);
    p->tie = 1;
    p->n_pairs = o->n_pairs;
    for (int k = 0; k < o->n_pairs; k++) {
        const char *na = o->layers[2 * k], *nb = o->layers[2 * k + 1];
        int a = na ? larch_model_node(m, na) - 1 : -1, b = nb ? larch_model_node(m, nb) - 1 : -1;
        if (a < 0 || b < 0)
            return larch_fail(LARCH_ERR_INVALID, "penalty tie: pair %d: '%s' is not a layer of the model", k,
                              a < 0 ? (na ? na : "(null)") : (nb ? nb : "(null)"));
        if (a == b) return larch_fail(LARCH_ERR_INVALID, "penalty tie: pair %d ties layer '%s' to itself", k, na);
        const larch_layer *A = m->layers[a], *B = m->layers[b];
        if (A->n_param == 0 || A->n_param != B->n_param)
            return larch_fail(LARCH_ERR_INVALID, "penalty tie: layers '%s' (%s, %d parameter tensors) and '%s' (%s, %d) "
                              "cannot be tied: they need the same parameter tensors", na, A->ops->type, A->n_param, nb,
                              B->ops->type, B->n_param);
        for (int t = 0; t < A->n_param; t++) {
            const larch_param *pa = &m->params[A->first_param + t], *pb = &m->params[B->first_param + t];
            int same = pa->ndim == pb->ndim && strcmp(pa->tensor, pb->tensor) == 0;
            for (int i = 0; same && i < pa->ndim; i++) same = pa->shape[i] == pb->shape[i];
            if (!same) {
                char sa[64], sb[64];
                int la = 0, lb = 0;
                for (int i = 0; i < pa->ndim; i++) la += snprintf(sa + la, sizeof sa - (size_t)la, i ? ", %d" : "%d", pa->shape[i]);
                for (int i = 0; i < pb->ndim; i++) lb += snprintf(sb + lb, sizeof sb - (size_t)lb, i ? ", %d" : "%d", pb->shape[i]);
                return larch_fail(LARCH_ERR_INVALID, "penalty tie: layers '%s' and '%s' differ: %s is (%s) but %s is (%s)",
                                  na, nb, pa->name, sa, pb->name, sb);
            }
        }
        p->pairs[k][0] = a;
        p->pairs[k][1] = b;
    }
    return LARCH_OK;
}

larch_status larch_model_add_penalty(larch_model *m, const larch_penalty_opts *opts)
{
    const larch_penalty_opts o = opts ? *opts : (larch_penalty_opts)LARCH_PENALTY_DEFAULTS;
    if (m->finalized) return larch_fail(LARCH_ERR_INVALID, "penalty: the model is finalized");
    if (m->n_penalties >= LARCH_MAX_PENALTIES)
        return larch_fail(LARCH_ERR_INVALID, "penalty: at most %d penalties", LARCH_MAX_PENALTIES);
    if (o.type != LARCH_PENALTY_L1 && o.type != LARCH_PENALTY_L2 && o.type != LARCH_PENALTY_LQ &&
        o.type != LARCH_PENALTY_TIE)
        return larch_fail(LARCH_ERR_INVALID, "penalty: type = %d: set LARCH_PENALTY_L1, _L2, _LQ or _TIE", (int)o.type);
    if (!(o.coef >= 0 && o.coef <= 1e3))
        return larch_fail(LARCH_ERR_INVALID, "penalty: coef = %g is out of range [0, 1000]", o.coef);
    if (o.type == LARCH_PENALTY_LQ && !(o.q >= 1 && o.q <= 10))
        return larch_fail(LARCH_ERR_INVALID, "penalty: q = %g is out of range [1, 10]", o.q);
    larch_penalty tie = {0};
    if (o.type == LARCH_PENALTY_TIE) {
        larch_status s = tie_pairs(m, &o, &tie);
        if (s) return s;
    }
    larch_penalty *p = &m->penalties[m->n_penalties++];
    *p = tie;
    p->q = o.type == LARCH_PENALTY_L1 ? 1.0f : o.type == LARCH_PENALTY_L2 ? 2.0f : o.q;
    p->coef = o.coef;
    p->all_roles = o.all_params != 0;
    return LARCH_OK;
}

/* ---- scoring ---- */

/* Softmax cross-entropy over (n, C) logits z; writes dz when g != NULL. */
static LARCH_HOT void softmax_ce(const float *z, const int32_t *y, int n, int C, float eps, float scale,
                       float *dz, int acc, larch_loss_stats *st)
{
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * C;        // (C) logits of sample i
        int yi = y[i], arg = 0;
        float zmax = zi[0];
        for (int j = 1; j < C; j++) if (zi[j] > zmax) { zmax = zi[j]; arg = j; }
        double sum = 0.0;
        for (int j = 0; j < C; j++) sum += exp((double)(zi[j] - zmax));
        double lse = zmax + log(sum);               // log sum_j exp z_j
        double zq = 0.0;                            // sum_j q_j z_j
        for (int j = 0; j < C; j++) zq += ((j == yi ? 1.0 - eps : 0.0) + eps / C) * zi[j];
        st->loss_sum += lse - zq;                   // -sum_j q_j log p_j
        st->correct += arg == yi;
        st->count++;
        if (!dz) continue;
        float *di = dz + (size_t)i * C;
        for (int j = 0; j < C; j++) {
            double q = (j == yi ? 1.0 - eps : 0.0) + eps / C;
            larch_store(&di[j], (float)((exp(zi[j] - lse) - q) * scale), acc);  // (p_j - q_j) * scale
        }
    }
}

/* Mean squared error over (n, D) outputs against targets t, or one-hot labels. */
static LARCH_HOT void mse(const float *z, const float *t, const int32_t *y, int n, int D, float scale,
                float *dz, int acc, larch_loss_stats *st)
{
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * D;
        double l = 0.0;
        int arg = 0;
        for (int j = 0; j < D; j++) {
            float tj = t ? t[(size_t)i * D + j] : (float)(y && y[i] == j);
            float d = zi[j] - tj;                   // residual
            l += (double)d * d;
            if (zi[j] > zi[arg]) arg = j;
            if (dz) larch_store(&dz[(size_t)i * D + j], 2.0f * d / D * scale, acc);  // d/dz mean (z-t)^2
        }
        st->loss_sum += l / D;
        st->correct += y && arg == y[i];
        st->count++;
    }
}

/* s of an uncertainty-weighted loss. */
static double log_var(const larch_model *m, const larch_loss *l)
{
    return m->param[m->params[m->loss_weights->first_param].offset + (size_t)l->log_var];
}

double larch_model_task_weight(const larch_model *m, int k)
{
    const larch_loss *l = &m->losses[k];
    if (!l->uncertainty) return l->weight;
    return l->weight * (l->type == LARCH_LOSS_MSE ? 0.5 : 1.0) * exp(-log_var(m, l));
}

double larch_model_loss(larch_model *m, const larch_batch *b, float grad_scale, larch_loss_stats *stats)
{
    double total = 0.0;
    for (int k = 0; k < m->n_losses; k++) {
        const larch_loss *l = &m->losses[k];
        larch_loss_stats st = {0, 0, 0};
        int dim = (int)larch_shape_size(larch_model_node_shape(m, l->node));
        float *dz = grad_scale != 0.0f ? m->node_dy[l->node] : NULL;
        int acc = 0;
        for (int j = 0; j < k; j++) if (m->losses[j].node == l->node) acc = 1;
        double w = larch_model_task_weight(m, k);
        float scale = grad_scale * (float)w;
        if (l->type == LARCH_LOSS_FLOW_NLL) {
            larch_flow_nll(m, l, b, scale, dz, acc, &st);
        } else if (l->type != LARCH_LOSS_SOFTMAX_CE && l->type != LARCH_LOSS_MSE) {
            assert(b->label[l->target] || b->n == 0);
            larch_metric_loss(m, l, b, grad_scale, scale, dz, acc, &st);
        } else if (l->type == LARCH_LOSS_SOFTMAX_CE) {
            assert(b->label[l->target]);
            if (m->distill_logits && k == larch_distill_loss_index(m))   /* distill.c */
                larch_distill_ce(m->node_y[l->node], m->distill_logits, b->label[l->target], b->n, dim, l->label_smoothing,
                                 m->distill_alpha, m->distill_temperature, scale, dz, acc, &st);
            else
                softmax_ce(m->node_y[l->node], b->label[l->target], b->n, dim, l->label_smoothing, scale, dz, acc, &st);
        } else if (l->on_targets) {
            assert(b->target[l->target] && b->target_dim[l->target] == dim);
            mse(m->node_y[l->node], b->target[l->target], NULL, b->n, dim, scale, dz, acc, &st);
        } else {
            assert(b->label[l->target]);
            mse(m->node_y[l->node], NULL, b->label[l->target], b->n, dim, scale, dz, acc, &st);
        }
        total += w * st.loss_sum;
        if (l->uncertainty) {                         /* + weight * s / 2 per sample; d/ds */
            total += l->weight * 0.5 * log_var(m, l) * (double)st.count;
            if (grad_scale != 0.0f)
                m->log_var_grad[l->log_var] = grad_scale * (-w * st.loss_sum + l->weight * 0.5 * (double)st.count);
        }
        if (stats) stats[k] = st;
    }
    return total;
}
