/* model.c - the model graph: building from config nodes, the flat parameter
 * and gradient buffers, arena planning, forward and backward passes.
 * See include/larch/model.h for the contract. */
#include "nn/layers.h"
#include "nn/loss.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t align_up(size_t n) { return (n + LARCH_ALIGN_FLOATS - 1) / LARCH_ALIGN_FLOATS * LARCH_ALIGN_FLOATS; }

/* Grows a dynamic array to hold `need` elements. */
static larch_status grow(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap) return LARCH_OK;
    int ncap = *cap ? *cap * 2 : 16;
    while (ncap < need) ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p) return larch_fail(LARCH_ERR_NOMEM, "out of memory growing the model");
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(ncap - *cap) * elem);
    *arr = p;
    *cap = ncap;
    return LARCH_OK;
}

larch_status larch_model_create(larch_model **out, larch_shape input)
{
    *out = NULL;
    if (input.h < 1 || input.w < 1 || input.c < 1)
        return larch_fail(LARCH_ERR_SHAPE, "model input shape (%d, %d, %d) must be positive", input.h, input.w, input.c);
    if (larch_shape_size(input) > INT_MAX)
        return larch_fail(LARCH_ERR_SHAPE, "model input shape (%d, %d, %d) has %zu elements per sample, more than %d",
                          input.h, input.w, input.c, larch_shape_size(input), INT_MAX);
    larch_model *m = larch_calloc(1, sizeof *m, "model");
    if (!m) return LARCH_ERR_NOMEM;
    m->input_shape = input;
    *out = m;
    return LARCH_OK;
}

int larch_model_node(const larch_model *m, const char *name)
{
    if (strcmp(name, "input") == 0) return 0;
    for (int i = 0; i < m->n_layers; i++)
        if (strcmp(m->layers[i]->name, name) == 0) return i + 1;
    return -1;
}

larch_shape larch_model_node_shape(const larch_model *m, int node)
{
    return node == 0 ? m->input_shape : m->layers[node - 1]->out_shape;
}

int larch_model_param_index(const larch_model *m, const char *name)
{
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return i;
    return -1;
}

/* ---- declaring tensors (from layer setup) ---- */

int larch_layer_add_param(larch_layer *L, const char *tensor, larch_role role, int ndim,
                          const int *shape, int fan_in, int fan_out)
{
    larch_model *m = L->model;
    assert(!m->finalized && ndim >= 1 && ndim <= 4);
    if (grow((void **)&m->params, &m->cap_params, m->n_params + 1, sizeof *m->params)) abort();
    larch_param *p = &m->params[m->n_params];
    snprintf(p->name, sizeof p->name, "%s.%s", L->name, tensor);
    p->tensor = tensor;
    p->layer = L->index;
    p->role = role;
    p->ndim = ndim;
    p->size = 1;
    for (int i = 0; i < ndim; i++) { p->shape[i] = shape[i]; p->size *= (size_t)shape[i]; }
    p->fan_in = fan_in;
    p->fan_out = fan_out;
    p->offset = m->n_floats;
    p->lr_mult = 1.0f;
    p->wd_mult = role == LARCH_ROLE_WEIGHT ? 1.0f : 0.0f;
    p->adapt = role == LARCH_ROLE_WEIGHT;
    m->n_floats += align_up(p->size);
    if (L->n_param == 0) { L->first_param = m->n_params; L->param_offset = p->offset; }
    L->n_param++;
    L->param_count = m->n_floats - L->param_offset;
    return m->n_params++ - L->first_param;
}

int larch_layer_add_buffer(larch_layer *L, const char *tensor, size_t size)
{
    larch_model *m = L->model;
    assert(!m->finalized);
    if (grow((void **)&m->buffers, &m->cap_buffers, m->n_buffers + 1, sizeof *m->buffers)) abort();
    larch_buffer *b = &m->buffers[m->n_buffers];
    snprintf(b->name, sizeof b->name, "%s.%s", L->name, tensor);
    b->tensor = tensor;
    b->layer = L->index;
    b->offset = m->n_buffer_floats;
    b->size = size;
    m->n_buffer_floats += align_up(size);
    if (L->n_buffer == 0) L->first_buffer = m->n_buffers;
    L->n_buffer++;
    return m->n_buffers++ - L->first_buffer;
}

float *larch_layer_param(larch_layer *L, int i) { return L->model->param + L->model->params[L->first_param + i].offset; }
float *larch_layer_grad(larch_layer *L, int i) { return L->model->grad + L->model->params[L->first_param + i].offset; }
float *larch_layer_buffer(larch_layer *L, int i) { return L->model->buffer + L->model->buffers[L->first_buffer + i].offset; }

/* ---- adding layers ---- */

static const char *const g_common_keys[] = {"type", "name", "input", "inputs", NULL};

/* Resolves the `input`/`inputs` keys of layer `idx` into node indices. */
static larch_status resolve_inputs(larch_model *m, larch_layer *L, const larch_node *opts, const char *path)
{
    char where[256];
    const larch_node *one = larch_map_get(opts, "input"), *many = larch_map_get(opts, "inputs");
    if (one && many)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s: give either 'input' or 'inputs', not both",
                          larch_node_where(opts, where, sizeof where), path);
    const char *names[LARCH_MAX_IN];
    const larch_node *nodes[LARCH_MAX_IN];
    int n = 0;
    if (one) {
        if (one->kind != LARCH_NODE_SCALAR)
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s.input: expected a layer name",
                              larch_node_where(one, where, sizeof where), path);
        nodes[0] = one; names[0] = one->scalar; n = 1;
    } else if (many) {
        if (many->kind != LARCH_NODE_SEQ || many->n < 1 || many->n > LARCH_MAX_IN)
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s.inputs: expected a list of 1 to %d layer names",
                              larch_node_where(many, where, sizeof where), path, LARCH_MAX_IN);
        for (int i = 0; i < many->n; i++) {
            if (many->items[i]->kind != LARCH_NODE_SCALAR)
                return larch_fail(LARCH_ERR_CONFIG, "%s: %s.inputs.%d: expected a layer name",
                                  larch_node_where(many->items[i], where, sizeof where), path, i);
            nodes[i] = many->items[i]; names[i] = many->items[i]->scalar;
        }
        n = many->n;
    }
    if (n == 0) { L->n_in = 1; L->in_node[0] = m->n_layers; }   /* the previous layer (or the input) */
    else {
        L->n_in = n;
        for (int i = 0; i < n; i++) {
            int node = larch_model_node(m, names[i]);
            char ex[LARCH_EXCERPT_MAX + 4];
            if (node < 0)
                return larch_fail(LARCH_ERR_CONFIG, "%s: %s: input '%s' is not an earlier layer (or 'input')",
                                  larch_node_where(nodes[i], where, sizeof where), path, larch_excerpt(names[i], ex, sizeof ex));
            L->in_node[i] = node;
        }
    }
    if (L->n_in < L->ops->min_inputs || L->n_in > L->ops->max_inputs)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s: layer type '%s' takes %d to %d inputs, got %d",
                          larch_node_where(opts, where, sizeof where), path, L->ops->type,
                          L->ops->min_inputs, L->ops->max_inputs, L->n_in);
    for (int i = 0; i < L->n_in; i++) L->in_shape[i] = larch_model_node_shape(m, L->in_node[i]);
    return LARCH_OK;
}

static void layer_free(larch_layer *L)
{
    if (!L) return;
    if (L->ops && L->ops->destroy) L->ops->destroy(L);
    free(L);
}

/* Lists the registered layer types into buf ("dense, conv2d, ..."). */
static const char *type_list(char *buf, size_t len)
{
    const larch_layer_ops *const *types;
    int n = larch_layer_types(&types);
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        strncat(buf, types[i]->type, len - strlen(buf) - 1);
        if (i + 1 < n) strncat(buf, ", ", len - strlen(buf) - 1);
    }
    return buf;
}

larch_status larch_model_add(larch_model *m, larch_node *opts)
{
    char path[64], where[256], types[512];
    snprintf(path, sizeof path, "model.%d", m->n_layers);
    assert(!m->finalized);
    if (!opts || opts->kind != LARCH_NODE_MAP)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s: a layer is a mapping with at least 'type'",
                          larch_node_where(opts, where, sizeof where), path);
    const larch_node *tn = larch_map_get(opts, "type");
    if (!tn || tn->kind != LARCH_NODE_SCALAR)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s: missing required key 'type' (one of: %s)",
                          larch_node_where(opts, where, sizeof where), path, type_list(types, sizeof types));
    const larch_layer_ops *ops = larch_layer_find(tn->scalar);
    char ex[LARCH_EXCERPT_MAX + 4];
    if (!ops)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s.type: unknown layer type '%s' (valid: %s)",
                          larch_node_where(tn, where, sizeof where), path, larch_excerpt(tn->scalar, ex, sizeof ex),
                          type_list(types, sizeof types));
    larch_status s = larch_cfg_check(opts, path, ops->keys, g_common_keys);
    if (s) return s;
    if ((s = grow((void **)&m->layers, &m->cap_layers, m->n_layers + 1, sizeof *m->layers))) return s;
    larch_layer *L = larch_calloc(1, sizeof *L, "layer");
    if (!L) return LARCH_ERR_NOMEM;
    L->ops = ops;
    L->model = m;
    L->index = m->n_layers;
    const larch_node *nn = larch_map_get(opts, "name");
    if (nn && nn->kind == LARCH_NODE_SCALAR) {
        if (strlen(nn->scalar) >= LARCH_NAME_MAX || strchr(nn->scalar, '/') || strchr(nn->scalar, '.') || !nn->scalar[0]
            || strcmp(nn->scalar, "input") == 0) {
            layer_free(L);
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s.name: '%s' is not a valid layer name (1-%d characters, no '.' or '/', not 'input')",
                              larch_node_where(nn, where, sizeof where), path, larch_excerpt(nn->scalar, ex, sizeof ex),
                              LARCH_NAME_MAX - 1);
        }
        snprintf(L->name, sizeof L->name, "%s", nn->scalar);
    } else {
        snprintf(L->name, sizeof L->name, "%s%d", ops->type, m->n_layers);
    }
    int first = larch_model_node(m, L->name);
    if (first >= 0) {
        s = larch_fail(LARCH_ERR_CONFIG, "%s: %s.name: layer name '%s' is used twice: by model.%d and by model.%d%s",
                       larch_node_where(nn ? nn : opts, where, sizeof where), path, L->name, first - 1, m->n_layers,
                       nn ? "" : " (its default name <type><index>)");
        layer_free(L);                            /* after the message: it names L->name */
        return s;
    }
    int p0 = m->n_params, b0 = m->n_buffers;
    size_t f0 = m->n_floats, bf0 = m->n_buffer_floats;
    if ((s = resolve_inputs(m, L, opts, path)) || (s = ops->setup(L, opts))) {
        m->n_params = p0; m->n_buffers = b0; m->n_floats = f0; m->n_buffer_floats = bf0;
        if (s == LARCH_ERR_SHAPE || s == LARCH_ERR_CONFIG)
            larch_fail_context(s, "%s: %s", larch_node_where(opts, where, sizeof where), path);
        layer_free(L);
        return s;
    }
    if (larch_shape_size(L->out_shape) > INT_MAX) {   /* sizes per sample are int (GEMM and loss dimensions) */
        larch_shape o = L->out_shape;
        m->n_params = p0; m->n_buffers = b0; m->n_floats = f0; m->n_buffer_floats = bf0;
        s = larch_fail(LARCH_ERR_SHAPE, "%s: %s: layer '%s' (%s): output (%d, %d, %d) has %zu elements per sample, more than %d",
                       larch_node_where(opts, where, sizeof where), path, L->name, ops->type, o.h, o.w, o.c,
                       larch_shape_size(o), INT_MAX);
        layer_free(L);
        return s;
    }
    if (larch_shape_size(L->out_shape) == 0) {
        m->n_params = p0; m->n_buffers = b0; m->n_floats = f0; m->n_buffer_floats = bf0;
        s = larch_fail(LARCH_ERR_SHAPE, "%s: %s: layer '%s' has an empty output",
                       larch_node_where(opts, where, sizeof where), path, L->name);
        layer_free(L);
        return s;
    }
    m->layers[m->n_layers++] = L;
    return LARCH_OK;
}

/* ---- finalize, init, free ---- */

/* Appends the layer "loss_weights" that holds the s of every
 * uncertainty-weighted loss (loss_weights.c), when there is one. */
static larch_status add_loss_weights(larch_model *m)
{
    int n = 0;
    for (int k = 0; k < m->n_losses; k++)
        if (m->losses[k].uncertainty) m->losses[k].log_var = n++;
    if (n == 0) return LARCH_OK;
    if (larch_model_node(m, "loss_weights") >= 0)
        return larch_fail(LARCH_ERR_CONFIG, "model: the layer name 'loss_weights' is reserved for the learned loss weights "
                          "of `weighting: uncertainty`; rename that layer");
    larch_status s = grow((void **)&m->layers, &m->cap_layers, m->n_layers + 1, sizeof *m->layers);
    if (s) return s;
    larch_layer *L = larch_calloc(1, sizeof *L, "layer");
    if (!L) return LARCH_ERR_NOMEM;
    L->ops = &larch_loss_weights_ops;
    L->model = m;
    L->index = m->n_layers;
    snprintf(L->name, sizeof L->name, "loss_weights");
    L->n_in = 1;
    L->in_node[0] = 0;
    L->in_shape[0] = m->input_shape;
    if ((s = L->ops->setup(L, NULL))) { layer_free(L); return s; }
    m->layers[m->n_layers++] = L;
    m->loss_weights = L;
    return LARCH_OK;
}

larch_status larch_model_finalize(larch_model *m)
{
    assert(!m->finalized);
    if (m->n_layers == 0) return larch_fail(LARCH_ERR_CONFIG, "model: the model has no layers");
    if (m->n_losses == 0) {   /* default: softmax cross-entropy on the last layer */
        larch_loss *l = &m->losses[m->n_losses++];
        memset(l, 0, sizeof *l);
        snprintf(l->name, sizeof l->name, "main");
        l->type = LARCH_LOSS_SOFTMAX_CE;
        l->node = m->n_layers;
        l->weight = 1.0f;
    }
    larch_status s = add_loss_weights(m);
    if (s) return s;
    m->param = larch_aligned_alloc((m->n_floats ? m->n_floats : 1) * sizeof(float), "parameters");
    m->grad = larch_aligned_alloc((m->n_floats ? m->n_floats : 1) * sizeof(float), "gradients");
    m->buffer = larch_aligned_alloc((m->n_buffer_floats ? m->n_buffer_floats : 1) * sizeof(float), "buffers");
    if (!m->param || !m->grad || !m->buffer) return LARCH_ERR_NOMEM;
    for (int i = 0; i < m->n_layers; i++) {
        larch_layer *L = m->layers[i];
        L->w = m->param + L->param_offset;
        L->dw = m->grad + L->param_offset;
        L->buf = L->n_buffer ? m->buffer + m->buffers[L->first_buffer].offset : m->buffer;
    }
    m->finalized = 1;
    return LARCH_OK;
}

void larch_model_init(larch_model *m, uint64_t seed)
{
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i]->ops->init) m->layers[i]->ops->init(m->layers[i], seed);
}

void larch_model_free(larch_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_layers; i++) layer_free(m->layers[i]);
    free(m->layers);
    free(m->params);
    free(m->buffers);
    free(m->param);
    free(m->grad);
    free(m->buffer);
    free(m->arena);
    free(m->node_y);
    free(m->node_dy);
    free(m->node_dy_written);
    free(m);
}

/* ---- planning ---- */

/* Which layers need backward, which inputs need gradients, and whether a
 * gradient write accumulates (a node consumed several times). */
static larch_status plan_flags(larch_model *m)
{
    int nodes = m->n_layers + 1;
    int *needed = m->node_dy_written;            /* reused: node needs dy */
    /* trains[node]: some trainable parameter (or the requested input
     * gradient) lies upstream, so backward through it is not wasted. */
    int *trains = calloc((size_t)nodes, sizeof *trains);
    if (!trains) return larch_fail(LARCH_ERR_NOMEM, "out of memory planning the model");
    trains[0] = m->want_input_grad;
    for (int i = 0; i < m->n_layers; i++) {
        larch_layer *L = m->layers[i];
        for (int k = 0; k < L->n_param; k++)
            if (m->params[L->first_param + k].lr_mult != 0.0f) trains[i + 1] = 1;
        for (int k = 0; k < L->n_in; k++)
            if (trains[L->in_node[k]]) trains[i + 1] = 1;
    }
    memset(needed, 0, (size_t)nodes * sizeof *needed);
    for (int i = 0; i < m->n_losses; i++) needed[m->losses[i].node] = 1;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        larch_layer *L = m->layers[i];
        L->need_backward = needed[i + 1] && trains[i + 1];    /* frozen prefixes stop backward */
        L->need_dw = 0;
        for (int k = 0; k < L->n_param; k++)
            if (m->params[L->first_param + k].lr_mult != 0.0f) L->need_dw = L->need_backward;
        for (int k = 0; k < L->n_in; k++)
            if (L->need_backward) needed[L->in_node[k]] = 1;
    }
    free(trains);
    /* Input gradients: needed where the producer needs backward (node 0: on request). */
    for (int i = 0; i < m->n_layers; i++) {
        larch_layer *L = m->layers[i];
        for (int k = 0; k < L->n_in; k++) {
            int node = L->in_node[k];
            L->need_dx[k] = L->need_backward && (node == 0 ? m->want_input_grad : m->layers[node - 1]->need_backward);
        }
    }
    /* Write order in backward: losses first, then layers in reverse. */
    memset(needed, 0, (size_t)nodes * sizeof *needed);
    for (int i = 0; i < m->n_losses; i++) needed[m->losses[i].node] = 1;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        larch_layer *L = m->layers[i];
        for (int k = 0; k < L->n_in; k++) {
            if (!L->need_dx[k]) continue;
            L->dx_acc[k] = needed[L->in_node[k]];
            needed[L->in_node[k]] = 1;
        }
    }
    return LARCH_OK;
}

larch_status larch_model_plan(larch_model *m, int max_batch)
{
    assert(m->finalized);
    if (max_batch < 1) return larch_fail(LARCH_ERR_INVALID, "plan: batch size %d must be positive", max_batch);
    int nodes = m->n_layers + 1;
    free(m->arena); free(m->node_y); free(m->node_dy); free(m->node_dy_written);
    m->arena = NULL;
    m->node_y = larch_calloc((size_t)nodes, sizeof *m->node_y, "plan");
    m->node_dy = larch_calloc((size_t)nodes, sizeof *m->node_dy, "plan");
    m->node_dy_written = larch_calloc((size_t)nodes, sizeof *m->node_dy_written, "plan");
    if (!m->node_y || !m->node_dy || !m->node_dy_written) return LARCH_ERR_NOMEM;
    larch_status fs = plan_flags(m);
    if (fs) return fs;
    /* Sizes: outputs, output gradients, saved state; one shared scratch. */
    size_t total = 0, scratch = 0, n = (size_t)max_batch;
    size_t *y_off = larch_calloc((size_t)nodes * 2 + (size_t)m->n_layers, sizeof *y_off, "plan");
    if (!y_off) return LARCH_ERR_NOMEM;
    size_t *dy_off = y_off + nodes, *saved_off = dy_off + nodes;
    for (int i = 0; i < m->n_layers; i++) {
        larch_layer *L = m->layers[i];
        size_t out = n * larch_shape_size(L->out_shape);
        y_off[i + 1] = total; total += align_up(out);
        dy_off[i + 1] = (size_t)-1;
        if (L->need_backward) { dy_off[i + 1] = total; total += align_up(out); }
        saved_off[i] = total;
        if (L->ops->saved_size) total += align_up(L->ops->saved_size(L, max_batch));
        if (L->ops->scratch_size) {
            size_t s = L->ops->scratch_size(L, max_batch);
            if (s > scratch) scratch = s;
        }
    }
    dy_off[0] = (size_t)-1;
    if (m->want_input_grad) { dy_off[0] = total; total += align_up(n * larch_shape_size(m->input_shape)); }
    size_t scratch_off = total;
    total += align_up(scratch);
    m->arena = larch_aligned_alloc((total ? total : 1) * sizeof(float), "activation arena");
    if (!m->arena) { free(y_off); return larch_fail_context(LARCH_ERR_NOMEM, "planning batch %d (%.1f MiB)", max_batch, total * 4.0 / 1048576); }
    m->arena_floats = total;
    for (int i = 0; i < nodes; i++) {
        m->node_y[i] = i == 0 ? NULL : m->arena + y_off[i];
        m->node_dy[i] = dy_off[i] == (size_t)-1 ? NULL : m->arena + dy_off[i];
    }
    for (int i = 0; i < m->n_layers; i++) {
        larch_layer *L = m->layers[i];
        L->y = m->node_y[i + 1];
        L->dy = m->node_dy[i + 1];
        L->saved = m->arena + saved_off[i];
        L->scratch = m->arena + scratch_off;
        for (int k = 0; k < L->n_in; k++) {
            L->x[k] = m->node_y[L->in_node[k]];
            L->dx[k] = L->need_dx[k] ? m->node_dy[L->in_node[k]] : NULL;
        }
    }
    free(y_off);
    m->max_batch = max_batch;
    return LARCH_OK;
}

/* ---- passes ---- */

void larch_model_forward(larch_model *m, const larch_batch *b, const larch_pass *p)
{
    assert(m->arena && b->n <= m->max_batch && p->n == b->n);
    m->node_y[0] = b->x;
    for (int i = 0; i < m->n_layers; i++) {
        larch_layer *L = m->layers[i];
        for (int k = 0; k < L->n_in; k++)
            if (L->in_node[k] == 0) L->x[k] = b->x;
        L->ops->forward(L, p);
    }
}

void larch_model_backward(larch_model *m, const larch_pass *p)
{
    larch_layer *W = m->loss_weights;
    if (W && m->params[W->first_param].lr_mult != 0.0f) {   /* d/ds from larch_model_loss */
        for (int k = 0; k < m->n_losses; k++)
            if (m->losses[k].uncertainty)
                W->dw[m->losses[k].log_var] = (float)m->log_var_grad[m->losses[k].log_var] +
                                              (p->acc_grad ? W->dw[m->losses[k].log_var] : 0.0f);
        if (m->grads_ready) m->grads_ready(m->grads_ready_ctx, W->param_offset, W->param_count);
    }
    for (int i = m->n_layers - 1; i >= 0; i--) {
        larch_layer *L = m->layers[i];
        if (!L->need_backward) continue;
        L->ops->backward(L, p);
        if (m->grads_ready && L->n_param) m->grads_ready(m->grads_ready_ctx, L->param_offset, L->param_count);
    }
}

/* ---- penalties ---- */

double larch_model_penalty(larch_model *m, int add_grad)
{
    double total = 0.0;
    for (int k = 0; k < m->n_penalties; k++) {
        const larch_penalty *pen = &m->penalties[k];
        double sum = 0.0;
        for (int i = 0; i < m->n_params; i++) {
            const larch_param *pr = &m->params[i];
            if ((!pen->all_roles && pr->role != LARCH_ROLE_WEIGHT) || pr->lr_mult == 0.0f) continue;
            const float *w = m->param + pr->offset;
            float *g = m->grad + pr->offset;
            for (size_t j = 0; j < pr->size; j++) {
                float a = fabsf(w[j]);
                float s = w[j] > 0.0f ? 1.0f : (w[j] < 0.0f ? -1.0f : 0.0f);
                if (pen->q == 2.0f) { sum += (double)a * a; if (add_grad) g[j] += 2.0f * pen->coef * w[j]; }      // d/dw w^2 = 2w
                else if (pen->q == 1.0f) { sum += a; if (add_grad) g[j] += pen->coef * s; }                      // d/dw |w| = sign(w)
                else { sum += pow(a, pen->q); if (add_grad && a > 0.0f) g[j] += pen->coef * pen->q * powf(a, pen->q - 1.0f) * s; }
            }
        }
        total += pen->coef * sum;
    }
    return total;
}

/* ---- GEMM inventory ---- */

int larch_model_gemms(const larch_model *m, int batch, int train, larch_gemm_shape *out, int cap)
{
    int k = 0;
    for (int i = 0; i < m->n_layers && k < cap; i++) {
        const larch_layer *L = m->layers[i];
        if (!L->ops->gemms) continue;
        k += L->ops->gemms(L, batch, train && L->need_backward, out + k, cap - k);
    }
    return k;
}

