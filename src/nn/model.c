/* model.c - the model graph: adding layers (larch_model_add_layer, under
 * every typed builder and the YAML front end), the flat parameter and
 * gradient buffers, the accessors, arena planning, forward and backward
 * passes.
 * See include/larch/model.h for the contract. */
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/quant.h"
#include "nn/flow_internal.h"

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
    m->flow_temp = 1.0f;
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

/* ---- accessors (larch/model.h) ---- */

larch_shape larch_model_input_shape(const larch_model *m) { return m->input_shape; }
int larch_model_n_layers(const larch_model *m) { return m->n_layers; }
larch_layer *larch_model_layer(const larch_model *m, int i)
{
    assert(i >= 0 && i < m->n_layers);
    return m->layers[i];
}
const float *larch_model_node_output(const larch_model *m, int node)
{
    assert(node >= 0 && node <= m->n_layers);
    return m->node_y ? m->node_y[node] : NULL;
}
float *larch_model_node_grad(const larch_model *m, int node)
{
    assert(node >= 0 && node <= m->n_layers);
    return m->node_dy ? m->node_dy[node] : NULL;
}
int larch_model_n_params(const larch_model *m) { return m->n_params; }
const larch_param *larch_model_param(const larch_model *m, int i)
{
    assert(i >= 0 && i < m->n_params);
    return &m->params[i];
}
float *larch_model_param_data(const larch_model *m, int i)
{
    assert(i >= 0 && i < m->n_params);
    return m->param ? m->param + m->params[i].offset : NULL;
}
float *larch_model_grad_data(const larch_model *m, int i)
{
    assert(i >= 0 && i < m->n_params);
    return m->grad ? m->grad + m->params[i].offset : NULL;
}
float *larch_model_flat_params(const larch_model *m, size_t *n_floats)
{
    if (n_floats) *n_floats = m->n_floats;
    return m->param;
}
float *larch_model_flat_grads(const larch_model *m, size_t *n_floats)
{
    if (n_floats) *n_floats = m->n_floats;
    return m->grad;
}
int larch_model_n_buffers(const larch_model *m) { return m->n_buffers; }
const larch_buffer *larch_model_buffer(const larch_model *m, int i)
{
    assert(i >= 0 && i < m->n_buffers);
    return &m->buffers[i];
}
float *larch_model_buffer_data(const larch_model *m, int i)
{
    assert(i >= 0 && i < m->n_buffers);
    return m->buffer ? m->buffer + m->buffers[i].offset : NULL;
}
float *larch_model_flat_buffers(const larch_model *m, size_t *n_floats)
{
    if (n_floats) *n_floats = m->n_buffer_floats;
    return m->buffer;
}
int larch_model_n_losses(const larch_model *m) { return m->n_losses; }
int larch_model_n_penalties(const larch_model *m) { return m->n_penalties; }
const char *larch_model_loss_name(const larch_model *m, int k)
{
    assert(k >= 0 && k < m->n_losses);
    return m->losses[k].name;
}
void larch_model_set_input_grad(larch_model *m, int want) { m->want_input_grad = want != 0; }
larch_status larch_model_set_loss_comm(larch_model *m, const larch_comm_hooks *hooks)
{
    m->loss_comm = hooks;
    if (!m->arena) return LARCH_OK;              /* larch_model_plan sizes the workspace */
    size_t need = larch_metric_ws_bytes(m, m->max_batch);
    if (need <= m->loss_ws_bytes) return LARCH_OK;
    void *ws = larch_aligned_alloc(need, "loss workspace");   /* more ranks than planned for: the gather grows */
    if (!ws) { m->loss_comm = NULL; return LARCH_ERR_NOMEM; }
    free(m->loss_ws);
    m->loss_ws = ws;
    m->loss_ws_bytes = need;
    return LARCH_OK;
}

larch_layer_ctx larch_layer_context(const larch_layer *L)
{
    larch_layer_ctx c;
    memset(&c, 0, sizeof c);
    c.name = L->name;
    c.index = L->index;
    c.n_in = L->n_in;
    c.out_shape = L->out_shape;
    c.priv = L->priv;
    for (int i = 0; i < L->n_in; i++) {
        c.in_shape[i] = L->in_shape[i];
        c.x[i] = L->x[i];
        c.dx[i] = L->dx[i];
        c.need_dx[i] = L->need_dx[i];
        c.dx_acc[i] = L->dx_acc[i];
    }
    c.y = L->y;
    c.dy = L->dy;
    c.saved = L->saved;
    c.scratch = L->scratch;
    c.w = L->w;
    c.dw = L->dw;
    c.buf = L->buf;
    c.n_param = L->n_param;
    c.n_buffer = L->n_buffer;
    c.need_dw = L->need_dw;
    c.need_backward = L->need_backward;
    return c;
}

const char *larch_layer_name(const larch_layer *L) { return L->name; }
const char *larch_layer_type(const larch_layer *L) { return L->ops->type; }
const larch_layer_ops *larch_layer_get_ops(const larch_layer *L) { return L->ops; }
int larch_layer_n_inputs(const larch_layer *L) { return L->n_in; }
larch_shape larch_layer_in_shape(const larch_layer *L, int i)
{
    assert(i >= 0 && i < L->n_in);
    return L->in_shape[i];
}
larch_shape larch_layer_out_shape(const larch_layer *L) { return L->out_shape; }
void *larch_layer_priv(const larch_layer *L) { return L->priv; }
void larch_layer_set_out_shape(larch_layer *L, larch_shape s)
{
    assert(!L->model->finalized);
    L->out_shape = s;
}
void larch_layer_set_priv(larch_layer *L, void *priv) { L->priv = priv; }

/* ---- declaring tensors (from layer setup) ---- */

/* A tensor name: 1 to LARCH_NAME_MAX-1 characters, no '.' or '/' (it is a
 * checkpoint path component). Records the failure on the layer. */
static int tensor_name_ok(larch_layer *L, const char *tensor)
{
    if (tensor && tensor[0] && strlen(tensor) < LARCH_NAME_MAX && !strchr(tensor, '.') && !strchr(tensor, '/')) return 1;
    if (!L->decl_status)
        L->decl_status = LARCH_LAYER_FAIL(L, LARCH_ERR_INVALID, "tensor name '%s' is not valid (1-%d characters, no '.' or '/')",
                                          tensor ? tensor : "(null)", LARCH_NAME_MAX - 1);
    return 0;
}

int larch_layer_add_param(larch_layer *L, const char *tensor, larch_role role, int ndim,
                          const int *shape, int fan_in, int fan_out)
{
    larch_model *m = L->model;
    assert(!m->finalized);
    if (!tensor_name_ok(L, tensor)) return -1;
    int bad = ndim < 1 || ndim > 4 || !shape;
    for (int i = 0; !bad && i < ndim; i++) bad = shape[i] < 1;
    if (bad) {
        if (!L->decl_status)
            L->decl_status = LARCH_LAYER_FAIL(L, LARCH_ERR_INVALID, "parameter '%s': %d dimensions, each at least 1, 1 to 4 of them",
                                              tensor, ndim);
        return -1;
    }
    if (grow((void **)&m->params, &m->cap_params, m->n_params + 1, sizeof *m->params)) abort();
    for (int i = 0; i < m->n_params; i++) m->params[i].tensor = strchr(m->params[i].name, '.') + 1;   /* moved */
    larch_param *p = &m->params[m->n_params];
    snprintf(p->name, sizeof p->name, "%s.%s", L->name, tensor);
    p->tensor = p->name + strlen(L->name) + 1;
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
    if (!tensor_name_ok(L, tensor)) return -1;
    if (grow((void **)&m->buffers, &m->cap_buffers, m->n_buffers + 1, sizeof *m->buffers)) abort();
    for (int i = 0; i < m->n_buffers; i++) m->buffers[i].tensor = strchr(m->buffers[i].name, '.') + 1;
    larch_buffer *b = &m->buffers[m->n_buffers];
    snprintf(b->name, sizeof b->name, "%s.%s", L->name, tensor);
    b->tensor = b->name + strlen(L->name) + 1;
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

int larch_layer_name_valid(const char *name)
{
    return name && name[0] && strlen(name) < LARCH_NAME_MAX && !strchr(name, '/') && !strchr(name, '.') &&
           strcmp(name, "input") != 0;
}

larch_status larch_layer_ops_check(const larch_layer_ops *ops)
{
    if (!ops) return larch_fail(LARCH_ERR_INVALID, "no layer ops given");
    if (!ops->type || !ops->type[0] || strlen(ops->type) >= LARCH_NAME_MAX - 12 || strchr(ops->type, '.') ||
        strchr(ops->type, '/'))
        return larch_fail(LARCH_ERR_INVALID, "layer ops: the type name '%s' must have 1-%d characters, no '.' or '/'",
                          ops->type ? ops->type : "(null)", LARCH_NAME_MAX - 13);
    if (!ops->setup || !ops->forward || !ops->backward)
        return larch_fail(LARCH_ERR_INVALID, "layer type '%s': setup, forward and backward are required", ops->type);
    if (ops->min_inputs < 1 || ops->min_inputs > ops->max_inputs || ops->max_inputs > LARCH_MAX_IN)
        return larch_fail(LARCH_ERR_INVALID, "layer type '%s': inputs %d to %d must lie in 1..%d", ops->type,
                          ops->min_inputs, ops->max_inputs, LARCH_MAX_IN);
    return LARCH_OK;
}

static void layer_free(larch_layer *L)
{
    if (!L) return;
    if (L->ops && L->ops->destroy) L->ops->destroy(L);
    larch_q_free(L);
    free(L);
}

larch_status larch_model_add_layer(larch_model *m, const larch_layer_ops *ops, const char *name,
                                   const char *const *inputs, int n_inputs, const void *opts)
{
    if (m->finalized)
        return larch_fail(LARCH_ERR_INVALID, "layer '%s': the model is finalized, no layers can be added", name ? name : "");
    larch_status s = larch_layer_ops_check(ops);
    if (s) return s;
    char lname[LARCH_NAME_MAX];
    if (name && name[0]) {
        if (!larch_layer_name_valid(name))
            return larch_fail(LARCH_ERR_INVALID, "layer name '%s' is not valid (1-%d characters, no '.' or '/', not 'input')",
                              name, LARCH_NAME_MAX - 1);
        snprintf(lname, sizeof lname, "%s", name);
    } else {
        snprintf(lname, sizeof lname, "%s%d", ops->type, m->n_layers);
    }
    if (larch_model_node(m, lname) >= 0)
        return larch_fail(LARCH_ERR_INVALID, "layer name '%s' is used twice", lname);
    /* inputs: names of earlier layers (or "input"); none = the previous layer */
    int n_in = n_inputs > 0 ? n_inputs : 1, in_node[LARCH_MAX_IN];
    if (n_inputs < 0 || n_inputs > LARCH_MAX_IN || (n_inputs > 0 && !inputs))
        return larch_fail(LARCH_ERR_INVALID, "layer '%s': %d inputs given (0 to %d names)", lname, n_inputs, LARCH_MAX_IN);
    if (n_inputs == 0) in_node[0] = m->n_layers;
    for (int i = 0; i < n_inputs; i++) {
        in_node[i] = inputs[i] ? larch_model_node(m, inputs[i]) : -1;
        if (in_node[i] < 0)
            return larch_fail(LARCH_ERR_INVALID, "layer '%s': input '%s' is not an earlier layer (or 'input')", lname,
                              inputs[i] ? inputs[i] : "(null)");
    }
    if (n_in < ops->min_inputs || n_in > ops->max_inputs)
        return larch_fail(LARCH_ERR_INVALID, "layer type '%s' takes %d to %d inputs, got %d", ops->type,
                          ops->min_inputs, ops->max_inputs, n_in);
    if ((s = grow((void **)&m->layers, &m->cap_layers, m->n_layers + 1, sizeof *m->layers))) return s;
    larch_layer *L = larch_calloc(1, sizeof *L, "layer");
    if (!L) return LARCH_ERR_NOMEM;
    L->ops = ops;
    L->model = m;
    L->index = m->n_layers;
    memcpy(L->name, lname, sizeof L->name);
    L->n_in = n_in;
    for (int i = 0; i < n_in; i++) {
        L->in_node[i] = in_node[i];
        L->in_shape[i] = larch_model_node_shape(m, in_node[i]);
    }
    int p0 = m->n_params, b0 = m->n_buffers;
    size_t f0 = m->n_floats, bf0 = m->n_buffer_floats;
    if (!(s = ops->setup(L, opts)) && L->decl_status) s = L->decl_status;   /* a bad tensor declaration */
    if (!s && (L->out_shape.h < 1 || L->out_shape.w < 1 || L->out_shape.c < 1))
        s = larch_fail(LARCH_ERR_SHAPE, "layer '%s' has an empty output", L->name);
    if (s) {
        m->n_params = p0; m->n_buffers = b0; m->n_floats = f0; m->n_buffer_floats = bf0;
        layer_free(L);
        return s;
    }
    if (larch_shape_size(L->out_shape) > INT_MAX) {   /* sizes per sample are int (GEMM and loss dimensions) */
        larch_shape o = L->out_shape;
        m->n_params = p0; m->n_buffers = b0; m->n_floats = f0; m->n_buffer_floats = bf0;
        s = larch_fail(LARCH_ERR_SHAPE, "layer '%s' (%s): output (%d, %d, %d) has %zu elements per sample, more than %d",
                       L->name, ops->type, o.h, o.w, o.c, larch_shape_size(o), INT_MAX);
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

/* Appends the layer "loss_centers" that holds the centers of every center
 * loss as buffers (metric_loss.c), when there is one. */
larch_status larch_model_add_loss_centers(larch_model *m)
{
    int n = 0;
    for (int k = 0; k < m->n_losses; k++) n += m->losses[k].type == LARCH_LOSS_CENTER;
    if (n == 0) return LARCH_OK;
    if (larch_model_node(m, "loss_centers") >= 0)
        return larch_fail(LARCH_ERR_CONFIG, "model: the layer name 'loss_centers' is reserved for the centers of the "
                          "center losses; rename that layer");
    larch_status s = grow((void **)&m->layers, &m->cap_layers, m->n_layers + 1, sizeof *m->layers);
    if (s) return s;
    larch_layer *L = larch_calloc(1, sizeof *L, "layer");
    if (!L) return LARCH_ERR_NOMEM;
    L->ops = &larch_loss_centers_ops;
    L->model = m;
    L->index = m->n_layers;
    snprintf(L->name, sizeof L->name, "loss_centers");
    L->n_in = 1;
    L->in_node[0] = 0;
    L->in_shape[0] = m->input_shape;
    if ((s = L->ops->setup(L, NULL)) || (s = L->decl_status)) { layer_free(L); return s; }
    m->layers[m->n_layers++] = L;
    m->loss_centers = L;
    return LARCH_OK;
}

larch_status larch_model_finalize(larch_model *m)
{
    if (m->finalized) return larch_fail(LARCH_ERR_INVALID, "model: finalized twice");
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
    if (!s) s = larch_model_add_loss_centers(m);
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
    free(m->loss_ws);
    free(m->flow_ld);
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

/* Fusion: the node (a batchnorm layer's) whose relu layer `i` is fused
 * into it, or 0. A relu is fused when it is the only reader of a batchnorm's
 * output and no loss scores that output: the batchnorm then applies the
 * relu itself (larch_batchnorm_fuse_relu) and the relu layer shares its
 * output and gradient buffers, so its forward and backward do nothing and
 * the relu costs no pass over memory. Names, parameters and results are
 * those of the unfused layers, bit for bit. */
static int fused_relu_source(const larch_model *m, int i)
{
    const larch_layer *R = m->layers[i];
    if (m->no_fuse || R->ops != &larch_relu_ops || R->n_in != 1 || R->in_node[0] == 0) return 0;
    int node = R->in_node[0];
    if (m->layers[node - 1]->ops != &larch_batchnorm_ops) return 0;
    int readers = 0;
    for (int k = 0; k < m->n_layers; k++)
        for (int j = 0; j < m->layers[k]->n_in; j++) readers += m->layers[k]->in_node[j] == node;
    for (int k = 0; k < m->n_losses; k++)
        if (m->losses[k].node == node) readers++;
    return readers == 1 ? node : 0;
}

larch_status larch_model_plan(larch_model *m, int max_batch)
{
    if (!m->finalized) return larch_fail(LARCH_ERR_INVALID, "plan: finalize the model first");
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
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i]->ops == &larch_batchnorm_ops) larch_batchnorm_fuse_relu(m->layers[i], 0);
    for (int i = 0; i < m->n_layers; i++) {
        larch_layer *L = m->layers[i];
        size_t out = n * larch_shape_size(L->out_shape);
        int src = fused_relu_source(m, i);
        if (src) {                                   /* the batchnorm's buffers (need_backward: the same) */
            larch_batchnorm_fuse_relu(m->layers[src - 1], 1);
            y_off[i + 1] = y_off[src];
            dy_off[i + 1] = dy_off[src];
            saved_off[i] = total;
            continue;
        }
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
    if (larch_flow_plan(m, max_batch)) return larch_fail_context(LARCH_ERR_NOMEM, "planning batch %d", max_batch);
    /* the metric losses' workspace (gathered global batch, pair matrices) */
    free(m->loss_ws);
    m->loss_ws = NULL;
    m->loss_ws_bytes = larch_metric_ws_bytes(m, max_batch);
    if (m->loss_ws_bytes && !(m->loss_ws = larch_aligned_alloc(m->loss_ws_bytes, "loss workspace")))
        return larch_fail_context(LARCH_ERR_NOMEM, "planning batch %d", max_batch);
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
        if (pen->tie) {                        /* coef ||theta_A - theta_B||^2: 2 coef (A - B) to A, the opposite to B */
            for (int q = 0; q < pen->n_pairs; q++) {
                const larch_layer *A = m->layers[pen->pairs[q][0]], *B = m->layers[pen->pairs[q][1]];
                for (int t = 0; t < A->n_param; t++) {
                    const larch_param *pa = &m->params[A->first_param + t], *pb = &m->params[B->first_param + t];
                    const float *wa = m->param + pa->offset, *wb = m->param + pb->offset;
                    float *ga = m->grad + pa->offset, *gb = m->grad + pb->offset;
                    for (size_t j = 0; j < pa->size; j++) {
                        float d = wa[j] - wb[j];
                        sum += (double)d * d;
                        if (!add_grad) continue;
                        if (pa->lr_mult != 0.0f) ga[j] += 2.0f * pen->coef * d;
                        if (pb->lr_mult != 0.0f) gb[j] -= 2.0f * pen->coef * d;
                    }
                }
            }
            total += pen->coef * sum;
            continue;
        }
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

