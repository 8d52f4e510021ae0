/* registry.c - the table of layer types: the built-in ones, then those a
 * program registers (larch_layer_register). */
#include "nn/layers.h"
#include "nn/flow_internal.h"

#include <string.h>

#define N_BUILTIN 25
#define MAX_REGISTERED 32

static const larch_layer_ops *g_types[N_BUILTIN + MAX_REGISTERED] = {
    &larch_dense_ops,     &larch_conv2d_ops,    &larch_maxpool_ops,   &larch_avgpool_ops,
    &larch_global_avgpool_ops, &larch_flatten_ops, &larch_add_ops,    &larch_relu_ops,
    &larch_leaky_relu_ops, &larch_gelu_ops,     &larch_tanh_ops,      &larch_sigmoid_ops,
    &larch_dropout_ops,   &larch_batchnorm_ops, &larch_layernorm_ops, &larch_groupnorm_ops,
    &larch_instancenorm_ops, &larch_l2norm_ops, &larch_cosine_ops,
    &larch_dequantize_ops, &larch_actnorm_ops, &larch_invconv_ops, &larch_coupling_ops, &larch_squeeze_ops,
    &larch_split_ops,
};
static int g_n_types = N_BUILTIN;

const larch_layer_ops *larch_layer_find(const char *type)
{
    for (int i = 0; type && i < g_n_types; i++)
        if (strcmp(g_types[i]->type, type) == 0) return g_types[i];
    return NULL;
}

int larch_layer_types(const larch_layer_ops *const **out)
{
    *out = g_types;
    return g_n_types;
}

larch_status larch_layer_register(const larch_layer_ops *ops)
{
    larch_status s = larch_layer_ops_check(ops);
    if (s) return larch_fail_context(s, "registering a layer type");
    if (larch_layer_find(ops->type))
        return larch_fail(LARCH_ERR_INVALID, "registering a layer type: type '%s' exists already", ops->type);
    if (g_n_types == N_BUILTIN + MAX_REGISTERED)
        return larch_fail(LARCH_ERR_INVALID, "registering layer type '%s': at most %d types can be registered",
                          ops->type, MAX_REGISTERED);
    g_types[g_n_types++] = ops;
    return LARCH_OK;
}
