/* loss.c - losses (softmax cross-entropy with label smoothing, MSE), their
 * fixed or learned (homoscedastic uncertainty) task weights, regularization
 * penalties (L1, L2, Lq), their configuration, and building a whole model
 * from config nodes.
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
 * Penalty: coef * sum |w|^q over weights (or all parameters).
 */
#include "nn/layers.h"
#include "nn/loss.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

const larch_key larch_loss_keys[] = {
    {"type", LARCH_T_ENUM, "softmax_ce", 0, 0, "softmax_ce|mse", NULL, "loss function"},
    {"name", LARCH_T_STRING, "main", 0, 0, NULL, NULL, "task name in metrics"},
    {"input", LARCH_T_STRING, "", 0, 0, NULL, NULL, "scored layer (default: the last)"},
    {"target", LARCH_T_INT, "0", 0, LARCH_MAX_TARGETS - 1, NULL, NULL, "label set of the batch"},
    {"on", LARCH_T_ENUM, "labels", 0, 0, "labels|targets", NULL,
     "labels: the class labels of set `target` (mse: one-hot); targets: the data's float regression targets "
     "(mse only; data.synthetic.regression)"},
    {"weight", LARCH_T_FLOAT, "1", 0, 1e6, NULL, NULL, "weight in the total loss"},
    {"label_smoothing", LARCH_T_FLOAT, "0", 0, 0.999, NULL, NULL, "softmax_ce: smoothing eps"},
    {"weighting", LARCH_T_ENUM, "fixed", 0, 0, "fixed|uncertainty", NULL,
     "fixed: weight * L; uncertainty: weight * (c exp(-s) L + s/2) with s learned (Kendall et al. 2018)"},
    {"log_var_init", LARCH_T_FLOAT, "0", -20, 20, NULL, NULL, "uncertainty: initial s = log sigma^2"},
    {0}};

const larch_key larch_penalty_keys[] = {
    {"type", LARCH_T_ENUM, NULL, 0, 0, "l1|l2|lq", NULL, "penalty kind"},
    {"coef", LARCH_T_FLOAT, NULL, 0, 1e3, NULL, NULL, "coefficient: coef * sum |w|^q"},
    {"q", LARCH_T_FLOAT, "2", 1, 10, NULL, NULL, "exponent for type lq"},
    {"apply_to", LARCH_T_ENUM, "weights", 0, 0, "weights|all", NULL, "which parameters"},
    {0}};

larch_status larch_model_add_loss(larch_model *m, larch_node *opts)
{
    char path[32], where[256];
    snprintf(path, sizeof path, m->n_losses ? "loss.%d" : "loss", m->n_losses);
    if (m->n_losses >= (int)(sizeof m->losses / sizeof m->losses[0]))
        return larch_fail(LARCH_ERR_CONFIG, "%s: too many losses", path);
    larch_status s = larch_cfg_check(opts, path, larch_loss_keys, NULL);
    if (s) return s;
    larch_loss *l = &m->losses[m->n_losses];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", larch_cfg_str(opts, "name"));
    l->type = strcmp(larch_cfg_str(opts, "type"), "mse") == 0 ? LARCH_LOSS_MSE : LARCH_LOSS_SOFTMAX_CE;
    const char *in = larch_cfg_str(opts, "input");
    l->node = in[0] ? larch_model_node(m, in) : m->n_layers;
    char ex[LARCH_EXCERPT_MAX + 4];
    if (l->node <= 0)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s.input: '%s' is not a layer of the model",
                          larch_node_where(larch_map_get(opts, "input"), where, sizeof where), path, larch_excerpt(in, ex, sizeof ex));
    for (int i = 0; i < m->n_losses; i++)
        if (strcmp(m->losses[i].name, l->name) == 0)
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s.name: task name '%s' is used twice",
                              larch_node_where(opts, where, sizeof where), path, l->name);
    l->target = (int)larch_cfg_int(opts, "target");
    l->on_targets = strcmp(larch_cfg_str(opts, "on"), "targets") == 0;
    if (l->on_targets && l->type != LARCH_LOSS_MSE)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s.on: float targets are scored by type: mse only (softmax_ce needs labels)",
                          larch_node_where(larch_map_get(opts, "on"), where, sizeof where), path);
    l->weight = (float)larch_cfg_float(opts, "weight");
    l->label_smoothing = (float)larch_cfg_float(opts, "label_smoothing");
    l->uncertainty = strcmp(larch_cfg_str(opts, "weighting"), "uncertainty") == 0;
    l->log_var_init = (float)larch_cfg_float(opts, "log_var_init");
    m->n_losses++;
    return LARCH_OK;
}

larch_status larch_model_add_penalty(larch_model *m, larch_node *opts)
{
    char path[32];
    snprintf(path, sizeof path, "regularization.%d", m->n_penalties);
    if (m->n_penalties >= (int)(sizeof m->penalties / sizeof m->penalties[0]))
        return larch_fail(LARCH_ERR_CONFIG, "%s: at most 4 penalties", path);
    larch_status s = larch_cfg_check(opts, path, larch_penalty_keys, NULL);
    if (s) return s;
    larch_penalty *p = &m->penalties[m->n_penalties++];
    const char *type = larch_cfg_str(opts, "type");
    p->q = strcmp(type, "l1") == 0 ? 1.0f : strcmp(type, "l2") == 0 ? 2.0f : (float)larch_cfg_float(opts, "q");
    p->coef = (float)larch_cfg_float(opts, "coef");
    p->all_roles = strcmp(larch_cfg_str(opts, "apply_to"), "all") == 0;
    return LARCH_OK;
}

/* Applies `add` to a node that is one mapping or a list of mappings. */
static larch_status add_each(larch_model *m, larch_node *n, const char *what,
                             larch_status (*add)(larch_model *, larch_node *))
{
    char where[256];
    if (!n) return LARCH_OK;
    if (n->kind == LARCH_NODE_MAP) return add(m, n);
    if (n->kind != LARCH_NODE_SEQ)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s: expected a mapping or a list of mappings",
                          larch_node_where(n, where, sizeof where), what);
    for (int i = 0; i < n->n; i++) {
        larch_status s = add(m, n->items[i]);
        if (s) return s;
    }
    return LARCH_OK;
}

larch_status larch_model_build(larch_model **out, larch_shape input, larch_node *layers,
                               larch_node *losses, larch_node *penalties, uint64_t seed)
{
    char where[256];
    larch_model *m = NULL;
    *out = NULL;
    if (!layers || layers->kind != LARCH_NODE_SEQ || layers->n == 0)
        return larch_fail(LARCH_ERR_CONFIG, "%s: model: expected a non-empty list of layers",
                          larch_node_where(layers, where, sizeof where));
    larch_status s = larch_model_create(&m, input);
    for (int i = 0; !s && i < layers->n; i++) s = larch_model_add(m, layers->items[i]);
    if (!s) s = add_each(m, losses, "loss", larch_model_add_loss);
    if (!s) s = add_each(m, penalties, "regularization", larch_model_add_penalty);
    if (!s) s = larch_model_finalize(m);
    if (s) { larch_model_free(m); return s; }
    larch_model_init(m, seed);
    *out = m;
    return LARCH_OK;
}

/* ---- scoring ---- */

/* Softmax cross-entropy over (n, C) logits z; writes dz when g != NULL. */
static void softmax_ce(const float *z, const int32_t *y, int n, int C, float eps, float scale,
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
static void mse(const float *z, const float *t, const int32_t *y, int n, int D, float scale,
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
        if (l->type == LARCH_LOSS_SOFTMAX_CE) {
            assert(b->label[l->target]);
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
