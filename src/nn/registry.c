/* registry.c - the table of built-in layer types. */
#include "nn/layers.h"

#include <string.h>

static const larch_layer_ops *const g_types[] = {
    &larch_dense_ops,     &larch_conv2d_ops,    &larch_maxpool_ops,   &larch_avgpool_ops,
    &larch_global_avgpool_ops, &larch_flatten_ops, &larch_add_ops,    &larch_relu_ops,
    &larch_leaky_relu_ops, &larch_gelu_ops,     &larch_tanh_ops,      &larch_sigmoid_ops,
    &larch_dropout_ops,   &larch_batchnorm_ops, &larch_layernorm_ops, &larch_groupnorm_ops,
    &larch_instancenorm_ops,
};

const larch_layer_ops *larch_layer_find(const char *type)
{
    for (size_t i = 0; i < sizeof g_types / sizeof g_types[0]; i++)
        if (strcmp(g_types[i]->type, type) == 0) return g_types[i];
    return NULL;
}

int larch_layer_types(const larch_layer_ops *const **out)
{
    *out = g_types;
    return (int)(sizeof g_types / sizeof g_types[0]);
}
