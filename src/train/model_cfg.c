/* model_cfg.c - the YAML front end of the model API (larch/model_cfg.h).
 *
 * The key schema of every built-in layer type, of a loss and of a penalty
 * lives here, with one function per type that turns a validated config
 * mapping into the type's options struct. larch_model_add_cfg checks what
 * names a place in the file (the type, the name, the inputs: errors carry
 * that node's file:line and the key path model.N.key), then calls
 * larch_model_add_layer, the builder the typed C API uses; its errors get
 * the layer's file:line and path prepended. Losses and penalties go the same
 * way through larch_model_add_loss / larch_model_add_penalty.
 */
#include "larch/model_cfg.h"
#include "larch/flow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the built-in layer types ---- */

#define INIT_CHOICES "he|xavier|lecun|zeros"

static larch_init_kind init_parse(const char *name)
{
    if (strcmp(name, "xavier") == 0) return LARCH_INIT_XAVIER;
    if (strcmp(name, "lecun") == 0) return LARCH_INIT_LECUN;
    if (strcmp(name, "zeros") == 0) return LARCH_INIT_ZEROS;
    return LARCH_INIT_HE;
}

static const larch_key no_keys[] = {{0}};

static const larch_key dense_keys[] = {
    {"units", LARCH_T_INT, NULL, 1, 1 << 24, NULL, NULL, "output features"},
    {"bias", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "learn a bias"},
    {"init", LARCH_T_ENUM, "he", 0, 0, INIT_CHOICES, NULL, "weight initialization"},
    {0}};
static larch_status dense_from(const larch_node *n, void *out)
{
    larch_dense_opts *o = out;
    o->units = (int)larch_cfg_int(n, "units");
    o->bias = larch_cfg_bool(n, "bias");
    o->init = init_parse(larch_cfg_str(n, "init"));
    return LARCH_OK;
}

static const larch_key conv_keys[] = {
    {"filters", LARCH_T_INT, NULL, 1, 1 << 20, NULL, NULL, "output channels"},
    {"kernel", LARCH_T_INT, "3", 1, 1024, NULL, NULL, "square kernel size"},
    {"stride", LARCH_T_INT, "1", 1, 1024, NULL, NULL, "step of the kernel"},
    {"padding", LARCH_T_INT, "0", 0, 1024, NULL, NULL, "zero padding on each side"},
    {"bias", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "learn a bias per output channel"},
    {"init", LARCH_T_ENUM, "he", 0, 0, INIT_CHOICES, NULL, "weight initialization"},
    {0}};
static larch_status conv_from(const larch_node *n, void *out)
{
    larch_conv2d_opts *o = out;
    o->filters = (int)larch_cfg_int(n, "filters");
    o->kernel = (int)larch_cfg_int(n, "kernel");
    o->stride = (int)larch_cfg_int(n, "stride");
    o->padding = (int)larch_cfg_int(n, "padding");
    o->bias = larch_cfg_bool(n, "bias");
    o->init = init_parse(larch_cfg_str(n, "init"));
    return LARCH_OK;
}

static const larch_key pool_keys[] = {
    {"size", LARCH_T_INT, "2", 1, 1024, NULL, NULL, "window size"},
    {"stride", LARCH_T_INT, "0", 0, 1024, NULL, NULL, "window step (0 = size)"},
    {"padding", LARCH_T_INT, "0", 0, 1024, NULL, NULL, "zero padding on each side"},
    {0}};
static larch_status pool_from(const larch_node *n, void *out)
{
    larch_pool_opts *o = out;
    o->size = (int)larch_cfg_int(n, "size");
    o->stride = (int)larch_cfg_int(n, "stride");
    o->padding = (int)larch_cfg_int(n, "padding");
    return LARCH_OK;
}

static const larch_key leaky_keys[] = {
    {"slope", LARCH_T_FLOAT, "0.01", 0, 1, NULL, NULL, "slope for negative inputs"},
    {0}};
static larch_status leaky_from(const larch_node *n, void *out)
{
    ((larch_leaky_relu_opts *)out)->slope = (float)larch_cfg_float(n, "slope");
    return LARCH_OK;
}

static const larch_key dropout_keys[] = {
    {"rate", LARCH_T_FLOAT, "0.5", 0, 0.999, NULL, NULL, "probability of dropping an element"},
    {0}};
static larch_status dropout_from(const larch_node *n, void *out)
{
    ((larch_dropout_opts *)out)->rate = (float)larch_cfg_float(n, "rate");
    return LARCH_OK;
}

static const larch_key bn_keys[] = {
    {"momentum", LARCH_T_FLOAT, "0.1", 0, 1, NULL, NULL, "running statistics: weight of the batch statistics"},
    {"eps", LARCH_T_FLOAT, "1e-5", 0, 1, NULL, NULL, "added to the variance"},
    {"affine", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "learn scale and shift"},
    {"sync", LARCH_T_BOOL, "false", 0, 0, NULL, NULL, "statistics over all ranks (SyncBatchNorm)"},
    {0}};
static larch_status bn_from(const larch_node *n, void *out)
{
    larch_batchnorm_opts *o = out;
    o->momentum = (float)larch_cfg_float(n, "momentum");
    o->eps = (float)larch_cfg_float(n, "eps");
    o->affine = larch_cfg_bool(n, "affine");
    o->sync = larch_cfg_bool(n, "sync");
    return LARCH_OK;
}

static const larch_key ln_keys[] = {
    {"eps", LARCH_T_FLOAT, "1e-5", 0, 1, NULL, NULL, "added to the variance"},
    {"affine", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "learn scale and shift"},
    {0}};
static larch_status norm_from(const larch_node *n, void *out)
{
    larch_norm_opts *o = out;
    o->eps = (float)larch_cfg_float(n, "eps");
    o->affine = larch_cfg_bool(n, "affine");
    return LARCH_OK;
}

static const larch_key gn_keys[] = {
    {"groups", LARCH_T_INT, NULL, 1, 1 << 20, NULL, NULL, "channel groups (must divide the channels)"},
    {"eps", LARCH_T_FLOAT, "1e-5", 0, 1, NULL, NULL, "added to the variance"},
    {"affine", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "learn scale and shift"},
    {0}};
static larch_status gn_from(const larch_node *n, void *out)
{
    larch_groupnorm_opts *o = out;
    o->groups = (int)larch_cfg_int(n, "groups");
    o->eps = (float)larch_cfg_float(n, "eps");
    o->affine = larch_cfg_bool(n, "affine");
    return LARCH_OK;
}

static const larch_key l2norm_keys[] = {
    {"eps", LARCH_T_FLOAT, "1e-12", 1e-30, 1, NULL, NULL, "added to the squared norm: y = x / sqrt(||x||^2 + eps)"},
    {0}};
static larch_status l2norm_from(const larch_node *n, void *out)
{
    ((larch_l2norm_opts *)out)->eps = (float)larch_cfg_float(n, "eps");
    return LARCH_OK;
}

static const larch_key cosine_keys[] = {
    {"units", LARCH_T_INT, NULL, 1, 1 << 24, NULL, NULL, "output features (classes): cosines to normalized weight rows"},
    {"eps", LARCH_T_FLOAT, "1e-12", 1e-30, 1, NULL, NULL, "added to the squared norms"},
    {0}};
static larch_status cosine_from(const larch_node *n, void *out)
{
    larch_cosine_opts *o = out;
    o->units = (int)larch_cfg_int(n, "units");
    o->eps = (float)larch_cfg_float(n, "eps");
    return LARCH_OK;
}

static const larch_key deq_keys[] = {
    {"levels", LARCH_T_INT, "256", 2, 65536, NULL, NULL, "intensity levels of the data (inputs k / (levels - 1) in [0, 1])"},
    {"logit", LARCH_T_FLOAT, "0", 0, 0.1, NULL, NULL,
     "alpha of the logit transform y = logit(alpha + (1 - 2 alpha) (k + u) / levels) (RealNVP); 0: y = (k + u) / levels - 0.5"},
    {0}};
static larch_status deq_from(const larch_node *n, void *out)
{
    ((larch_dequantize_opts *)out)->levels = (int)larch_cfg_int(n, "levels");
    ((larch_dequantize_opts *)out)->logit = (float)larch_cfg_float(n, "logit");
    return LARCH_OK;
}

static const larch_key coupling_keys[] = {
    {"hidden", LARCH_T_INT, "64", 1, 4096, NULL, NULL, "channels of the coupling's hidden 3x3 conv"},
    {0}};
static larch_status coupling_from(const larch_node *n, void *out)
{
    ((larch_coupling_opts *)out)->hidden = (int)larch_cfg_int(n, "hidden");
    return LARCH_OK;
}

#define DESC(type_, keys_, opts_t, from_) {type_, keys_, sizeof(opts_t), from_}
#define PLAIN(type_) {type_, no_keys, 0, NULL}
static const larch_cfg_layer g_builtin[] = {
    DESC("dense", dense_keys, larch_dense_opts, dense_from),
    DESC("conv2d", conv_keys, larch_conv2d_opts, conv_from),
    DESC("maxpool", pool_keys, larch_pool_opts, pool_from),
    DESC("avgpool", pool_keys, larch_pool_opts, pool_from),
    PLAIN("global_avgpool"),
    PLAIN("flatten"),
    PLAIN("add"),
    PLAIN("relu"),
    DESC("leaky_relu", leaky_keys, larch_leaky_relu_opts, leaky_from),
    PLAIN("gelu"),
    PLAIN("tanh"),
    PLAIN("sigmoid"),
    DESC("dropout", dropout_keys, larch_dropout_opts, dropout_from),
    DESC("batchnorm", bn_keys, larch_batchnorm_opts, bn_from),
    DESC("layernorm", ln_keys, larch_norm_opts, norm_from),
    DESC("groupnorm", gn_keys, larch_groupnorm_opts, gn_from),
    DESC("instancenorm", ln_keys, larch_norm_opts, norm_from),
    DESC("l2norm", l2norm_keys, larch_l2norm_opts, l2norm_from),
    DESC("cosine", cosine_keys, larch_cosine_opts, cosine_from),
    DESC("dequantize", deq_keys, larch_dequantize_opts, deq_from),
    PLAIN("actnorm"),
    PLAIN("invconv"),
    DESC("coupling", coupling_keys, larch_coupling_opts, coupling_from),
    PLAIN("squeeze"),
    PLAIN("split"),
};
#define N_BUILTIN ((int)(sizeof g_builtin / sizeof g_builtin[0]))
#define MAX_REGISTERED 32

static const larch_cfg_layer *g_descs[N_BUILTIN + MAX_REGISTERED] = {
    &g_builtin[0],  &g_builtin[1],  &g_builtin[2],  &g_builtin[3],  &g_builtin[4],  &g_builtin[5],
    &g_builtin[6],  &g_builtin[7],  &g_builtin[8],  &g_builtin[9],  &g_builtin[10], &g_builtin[11],
    &g_builtin[12], &g_builtin[13], &g_builtin[14], &g_builtin[15], &g_builtin[16], &g_builtin[17],
    &g_builtin[18], &g_builtin[19], &g_builtin[20], &g_builtin[21], &g_builtin[22], &g_builtin[23],
    &g_builtin[24],
};
static int g_n_descs = N_BUILTIN;

const larch_cfg_layer *larch_cfg_layer_find(const char *type)
{
    for (int i = 0; type && i < g_n_descs; i++)
        if (strcmp(g_descs[i]->type, type) == 0) return g_descs[i];
    return NULL;
}

int larch_cfg_layer_types(const larch_cfg_layer *const **out)
{
    *out = g_descs;
    return g_n_descs;
}

larch_status larch_cfg_layer_register(const larch_cfg_layer *d)
{
    if (!d || !d->type || !larch_layer_find(d->type))
        return larch_fail(LARCH_ERR_INVALID, "registering the YAML keys of layer type '%s': register the type first "
                          "(larch_layer_register)", d && d->type ? d->type : "(null)");
    if (larch_cfg_layer_find(d->type))
        return larch_fail(LARCH_ERR_INVALID, "registering the YAML keys of layer type '%s': they exist already", d->type);
    if (!d->keys || (d->opts_size > 0) != (d->from_node != NULL))
        return larch_fail(LARCH_ERR_INVALID, "registering the YAML keys of layer type '%s': keys are required, and "
                          "from_node exactly when opts_size > 0", d->type);
    if (g_n_descs == N_BUILTIN + MAX_REGISTERED)
        return larch_fail(LARCH_ERR_INVALID, "registering the YAML keys of layer type '%s': at most %d can be registered",
                          d->type, MAX_REGISTERED);
    g_descs[g_n_descs++] = d;
    return LARCH_OK;
}

/* ---- layers ---- */

static const char *const g_common_keys[] = {"type", "name", "input", "inputs", NULL};

/* Lists the YAML layer types into buf ("dense, conv2d, ..."). */
static const char *type_list(char *buf, size_t len)
{
    buf[0] = '\0';
    for (int i = 0; i < g_n_descs; i++) {
        strncat(buf, g_descs[i]->type, len - strlen(buf) - 1);
        if (i + 1 < g_n_descs) strncat(buf, ", ", len - strlen(buf) - 1);
    }
    return buf;
}

/* Reads `input`/`inputs` into names[0..*n) (n 0: the previous layer) and
 * checks that each names an earlier layer, naming the offending node. */
static larch_status read_inputs(const larch_model *m, const larch_node *opts, const char *path,
                                const char **names, int *n)
{
    char where[256];
    const larch_node *one = larch_map_get(opts, "input"), *many = larch_map_get(opts, "inputs");
    const larch_node *nodes[LARCH_MAX_IN];
    *n = 0;
    if (one && many)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s: give either 'input' or 'inputs', not both",
                          larch_node_where(opts, where, sizeof where), path);
    if (one) {
        if (one->kind != LARCH_NODE_SCALAR)
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s.input: expected a layer name",
                              larch_node_where(one, where, sizeof where), path);
        nodes[0] = one; names[0] = one->scalar; *n = 1;
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
        *n = many->n;
    }
    char ex[LARCH_EXCERPT_MAX + 4];
    for (int i = 0; i < *n; i++)
        if (larch_model_node(m, names[i]) < 0)
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s: input '%s' is not an earlier layer (or 'input')",
                              larch_node_where(nodes[i], where, sizeof where), path, larch_excerpt(names[i], ex, sizeof ex));
    return LARCH_OK;
}

larch_status larch_model_add_cfg(larch_model *m, larch_node *opts)
{
    char path[64], where[256], types[512], dflt[LARCH_NAME_MAX + 16];
    const int index = larch_model_n_layers(m);
    snprintf(path, sizeof path, "model.%d", index);
    if (!opts || opts->kind != LARCH_NODE_MAP)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s: a layer is a mapping with at least 'type'",
                          larch_node_where(opts, where, sizeof where), path);
    const larch_node *tn = larch_map_get(opts, "type");
    if (!tn || tn->kind != LARCH_NODE_SCALAR)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s: missing required key 'type' (one of: %s)",
                          larch_node_where(opts, where, sizeof where), path, type_list(types, sizeof types));
    const larch_cfg_layer *desc = larch_cfg_layer_find(tn->scalar);
    const larch_layer_ops *ops = larch_layer_find(tn->scalar);
    if (!ops)
    {
        char ex[LARCH_EXCERPT_MAX + 4];
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s.type: unknown layer type '%s' (valid: %s)",
                          larch_node_where(tn, where, sizeof where), path, larch_excerpt(tn->scalar, ex, sizeof ex),
                          type_list(types, sizeof types));
    }
    if (!desc)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s.type: layer type '%s' has no YAML keys (see larch_cfg_layer_register)",
                          larch_node_where(tn, where, sizeof where), path, tn->scalar);
    larch_status s = larch_cfg_check(opts, path, desc->keys, g_common_keys);
    if (s) return s;
    const larch_node *nn = larch_map_get(opts, "name");
    const char *name = NULL;
    if (nn && nn->kind == LARCH_NODE_SCALAR) {
        if (!larch_layer_name_valid(nn->scalar))
        {
            char ex[LARCH_EXCERPT_MAX + 4];
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s.name: '%s' is not a valid layer name (1-%d characters, no '.' or '/', not 'input')",
                              larch_node_where(nn, where, sizeof where), path, larch_excerpt(nn->scalar, ex, sizeof ex),
                              LARCH_NAME_MAX - 1);
        }
        name = nn->scalar;
    } else {
        snprintf(dflt, sizeof dflt, "%s%d", ops->type, index);   /* the builder's default name */
    }
    int first = larch_model_node(m, name ? name : dflt);
    if (first >= 0)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s.name: layer name '%s' is used twice: by model.%d and by model.%d%s",
                          larch_node_where(name ? nn : opts, where, sizeof where), path, name ? name : dflt, first - 1,
                          index, name ? "" : " (its default name <type><index>)");
    const char *inputs[LARCH_MAX_IN];
    int n_in;
    if ((s = read_inputs(m, opts, path, inputs, &n_in))) return s;
    int got = n_in ? n_in : 1;
    if (got < ops->min_inputs || got > ops->max_inputs)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s: layer type '%s' takes %d to %d inputs, got %d",
                          larch_node_where(opts, where, sizeof where), path, ops->type, ops->min_inputs,
                          ops->max_inputs, got);
    void *o = NULL;
    if (desc->opts_size) {
        if (!(o = larch_calloc(1, desc->opts_size, "layer options"))) return LARCH_ERR_NOMEM;
        s = desc->from_node(opts, o);
    }
    if (!s) s = larch_model_add_layer(m, ops, name, inputs, n_in, o);
    free(o);
    if (s == LARCH_ERR_INVALID) s = LARCH_ERR_CONFIG;   /* a value of the config */
    if (s == LARCH_ERR_SHAPE || s == LARCH_ERR_CONFIG)
        larch_fail_context(s, "%s: %s", larch_node_where(opts, where, sizeof where), path);
    return s;
}

/* ---- losses and penalties ---- */

const larch_key larch_loss_keys[] = {
    {"type", LARCH_T_ENUM, "softmax_ce", 0, 0, "softmax_ce|mse|triplet|contrastive|center|supcon|arcface|flow_nll", NULL,
     "loss function (metric learning: docs/metric_learning.md)"},
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
    {"margin", LARCH_T_FLOAT, "0.5", 0, 10, NULL, NULL,
     "triplet: max(0, margin + d_ap - d_an); contrastive: max(0, margin - d)^2; arcface: additive angle m (radians)"},
    {"soft_margin", LARCH_T_BOOL, "false", 0, 0, NULL, NULL, "triplet: softplus(d_ap - d_an) instead of the margin"},
    {"mining", LARCH_T_ENUM, "batch_hard", 0, 0, "batch_hard|batch_all", NULL,
     "triplet: hardest positive and negative per anchor, or all triplets (mean over those with positive loss)"},
    {"temperature", LARCH_T_FLOAT, "0.1", 1e-3, 100, NULL, NULL, "supcon: tau"},
    {"scale", LARCH_T_FLOAT, "64", 1, 1024, NULL, NULL, "arcface: s, the logit scale"},
    {"alpha", LARCH_T_FLOAT, "0.5", 0, 1, NULL, NULL, "center: rate of the center update"},
    {"classes", LARCH_T_INT, "0", 0, 1 << 20, NULL, NULL, "center: number of classes (centers; required)"},
    {"global", LARCH_T_BOOL, "true", 0, 0, NULL, NULL,
     "triplet, contrastive, supcon, center update: over the global batch of all ranks (false: each rank's part)"},
    {0}};

const larch_key larch_penalty_keys[] = {
    {"type", LARCH_T_ENUM, NULL, 0, 0, "l1|l2|lq|tie", NULL, "penalty kind (tie: soft parameter sharing)"},
    {"coef", LARCH_T_FLOAT, NULL, 0, 1e3, NULL, NULL, "coefficient: coef * sum |w|^q (tie: coef * sum ||A - B||^2)"},
    {"q", LARCH_T_FLOAT, "2", 1, 10, NULL, NULL, "exponent for type lq"},
    {"apply_to", LARCH_T_ENUM, "weights", 0, 0, "weights|all", NULL, "which parameters"},
    {"layers", LARCH_T_ANY, "[]", 0, 0, NULL, NULL,
     "tie: list of layer pairs [[A, B], ...] whose parameters are pulled together"},
    {0}};

#define MAX_LOSSES (2 * LARCH_MAX_TARGETS)

larch_status larch_model_add_loss_cfg(larch_model *m, larch_node *opts)
{
    char path[32], where[256];
    const int k = larch_model_n_losses(m);
    snprintf(path, sizeof path, k ? "loss.%d" : "loss", k);
    if (k >= MAX_LOSSES) return larch_fail(LARCH_ERR_CONFIG, "%s: too many losses", path);
    larch_status s = larch_cfg_check(opts, path, larch_loss_keys, NULL);
    if (s) return s;
    larch_loss_opts o = LARCH_LOSS_DEFAULTS;
    o.name = larch_cfg_str(opts, "name");
    static const char *const types[] = {"softmax_ce", "mse", "triplet", "contrastive", "center", "supcon", "arcface", "flow_nll"};
    static const larch_loss_type type_of[] = {LARCH_LOSS_SOFTMAX_CE, LARCH_LOSS_MSE, LARCH_LOSS_TRIPLET,
                                              LARCH_LOSS_CONTRASTIVE, LARCH_LOSS_CENTER, LARCH_LOSS_SUPCON,
                                              LARCH_LOSS_ARCFACE, LARCH_LOSS_FLOW_NLL};
    for (int i = 0; i < 8; i++)
        if (strcmp(larch_cfg_str(opts, "type"), types[i]) == 0) o.type = type_of[i];
    o.input = larch_cfg_str(opts, "input");
    int node = o.input[0] ? larch_model_node(m, o.input) : larch_model_n_layers(m);
    if (node <= 0)
    {
        char ex[LARCH_EXCERPT_MAX + 4];
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s.input: '%s' is not a layer of the model",
                          larch_node_where(larch_map_get(opts, "input"), where, sizeof where), path,
                          larch_excerpt(o.input, ex, sizeof ex));
    }
    for (int i = 0; i < k; i++)
        if (strcmp(larch_model_loss_name(m, i), o.name) == 0)
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s.name: task name '%s' is used twice",
                              larch_node_where(opts, where, sizeof where), path, o.name);
    o.target = (int)larch_cfg_int(opts, "target");
    o.on_targets = strcmp(larch_cfg_str(opts, "on"), "targets") == 0;
    if (o.on_targets && o.type != LARCH_LOSS_MSE)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s.on: float targets are scored by type: mse only (softmax_ce needs labels)",
                          larch_node_where(larch_map_get(opts, "on"), where, sizeof where), path);
    o.weight = (float)larch_cfg_float(opts, "weight");
    o.label_smoothing = (float)larch_cfg_float(opts, "label_smoothing");
    o.weighting = strcmp(larch_cfg_str(opts, "weighting"), "uncertainty") == 0 ? LARCH_WEIGHTING_UNCERTAINTY
                                                                              : LARCH_WEIGHTING_FIXED;
    o.log_var_init = (float)larch_cfg_float(opts, "log_var_init");
    o.margin = (float)larch_cfg_float(opts, "margin");
    o.soft_margin = larch_cfg_bool(opts, "soft_margin");
    o.mining = strcmp(larch_cfg_str(opts, "mining"), "batch_all") == 0 ? LARCH_MINING_BATCH_ALL : LARCH_MINING_BATCH_HARD;
    o.temperature = (float)larch_cfg_float(opts, "temperature");
    o.scale = (float)larch_cfg_float(opts, "scale");
    o.alpha = (float)larch_cfg_float(opts, "alpha");
    o.classes = (int)larch_cfg_int(opts, "classes");
    o.global = larch_cfg_bool(opts, "global");
    if (o.type == LARCH_LOSS_CENTER && o.classes < 1)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s.classes: a center loss needs the number of classes (one center each)",
                          larch_node_where(opts, where, sizeof where), path);
    if ((s = larch_model_add_loss(m, &o)))
        larch_fail_context(s == LARCH_ERR_INVALID ? LARCH_ERR_CONFIG : s, "%s: %s", larch_node_where(opts, where, sizeof where), path);
    return s == LARCH_ERR_INVALID ? LARCH_ERR_CONFIG : s;
}

larch_status larch_model_add_penalty_cfg(larch_model *m, larch_node *opts)
{
    char path[32], where[256];
    const int k = larch_model_n_penalties(m);
    snprintf(path, sizeof path, "regularization.%d", k);
    if (k >= 4) return larch_fail(LARCH_ERR_CONFIG, "%s: at most 4 penalties", path);
    larch_status s = larch_cfg_check(opts, path, larch_penalty_keys, NULL);
    if (s) return s;
    larch_penalty_opts o = LARCH_PENALTY_DEFAULTS;
    const char *type = larch_cfg_str(opts, "type");
    o.type = strcmp(type, "l1") == 0 ? LARCH_PENALTY_L1 : strcmp(type, "l2") == 0 ? LARCH_PENALTY_L2
           : strcmp(type, "tie") == 0 ? LARCH_PENALTY_TIE : LARCH_PENALTY_LQ;
    o.coef = (float)larch_cfg_float(opts, "coef");
    o.q = (float)larch_cfg_float(opts, "q");
    o.all_params = strcmp(larch_cfg_str(opts, "apply_to"), "all") == 0;
    const char *names[2 * LARCH_TIE_MAX];
    const larch_node *ly = larch_map_get(opts, "layers");
    int has_layers = ly && !(ly->kind == LARCH_NODE_SEQ && ly->n == 0);
    if (o.type != LARCH_PENALTY_TIE && has_layers)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s.layers: only a penalty of type tie takes layer pairs",
                          larch_node_where(ly, where, sizeof where), path);
    if (o.type == LARCH_PENALTY_TIE) {
        if (!has_layers || ly->kind != LARCH_NODE_SEQ || ly->n > LARCH_TIE_MAX)
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s.layers: type tie needs a list of 1 to %d layer pairs [[A, B], ...]",
                              larch_node_where(ly ? ly : opts, where, sizeof where), path, LARCH_TIE_MAX);
        for (int i = 0; i < ly->n; i++) {
            const larch_node *pr = ly->items[i];
            if (pr->kind != LARCH_NODE_SEQ || pr->n != 2 || pr->items[0]->kind != LARCH_NODE_SCALAR ||
                pr->items[1]->kind != LARCH_NODE_SCALAR)
                return larch_fail(LARCH_ERR_CONFIG, "%s: %s.layers.%d: expected a pair of layer names [A, B]",
                                  larch_node_where(pr, where, sizeof where), path, i);
            names[2 * i] = pr->items[0]->scalar;
            names[2 * i + 1] = pr->items[1]->scalar;
        }
        o.layers = names;
        o.n_pairs = ly->n;
    }
    if ((s = larch_model_add_penalty(m, &o)))
        larch_fail_context(s == LARCH_ERR_INVALID ? LARCH_ERR_CONFIG : s, "%s: %s", larch_node_where(opts, where, sizeof where), path);
    return s == LARCH_ERR_INVALID ? LARCH_ERR_CONFIG : s;
}

/* ---- a whole model ---- */

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
    for (int i = 0; !s && i < layers->n; i++) s = larch_model_add_cfg(m, layers->items[i]);
    if (!s) s = add_each(m, losses, "loss", larch_model_add_loss_cfg);
    if (!s) s = add_each(m, penalties, "regularization", larch_model_add_penalty_cfg);
    if (!s) s = larch_model_finalize(m);
    if (s) { larch_model_free(m); return s; }
    larch_model_init(m, seed);
    *out = m;
    return LARCH_OK;
}
