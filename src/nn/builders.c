/* builders.c - the typed builders of the built-in layer types (larch/model.h)
 * and the option checks their setup() functions share. Each builder is
 * larch_model_add_layer with the type's ops; the YAML front end
 * (src/train/model_cfg.c) reaches the same setup() through the same call. */
#include "nn/layers.h"


larch_status larch_check_int(const larch_layer *L, const char *field, long v, long lo, long hi)
{
    if (v >= lo && v <= hi) return LARCH_OK;
    return LARCH_LAYER_FAIL(L, LARCH_ERR_INVALID, "%s = %ld is out of range [%ld, %ld]", field, v, lo, hi);
}

larch_status larch_check_float(const larch_layer *L, const char *field, double v, double lo, double hi)
{
    if (v >= lo && v <= hi) return LARCH_OK;   /* NaN fails too */
    return LARCH_LAYER_FAIL(L, LARCH_ERR_INVALID, "%s = %g is out of range [%g, %g]", field, v, lo, hi);
}

larch_status larch_check_init(const larch_layer *L, larch_init_kind init)
{
    if ((int)init >= (int)LARCH_INIT_HE && (int)init <= (int)LARCH_INIT_ONES) return LARCH_OK;
    return LARCH_LAYER_FAIL(L, LARCH_ERR_INVALID, "init = %d is not a larch_init_kind", (int)init);
}

/* One input (NULL: the previous layer). */
static larch_status add1(larch_model *m, const larch_layer_ops *ops, const char *name, const char *input,
                         const void *opts)
{
    return larch_model_add_layer(m, ops, name, &input, input ? 1 : 0, opts);
}

larch_status larch_model_add_dense(larch_model *m, const char *name, const char *input, const larch_dense_opts *o)
{
    return add1(m, &larch_dense_ops, name, input, o);
}
larch_status larch_model_add_conv2d(larch_model *m, const char *name, const char *input, const larch_conv2d_opts *o)
{
    return add1(m, &larch_conv2d_ops, name, input, o);
}
larch_status larch_model_add_maxpool(larch_model *m, const char *name, const char *input, const larch_pool_opts *o)
{
    return add1(m, &larch_maxpool_ops, name, input, o);
}
larch_status larch_model_add_avgpool(larch_model *m, const char *name, const char *input, const larch_pool_opts *o)
{
    return add1(m, &larch_avgpool_ops, name, input, o);
}
larch_status larch_model_add_global_avgpool(larch_model *m, const char *name, const char *input)
{
    return add1(m, &larch_global_avgpool_ops, name, input, NULL);
}
larch_status larch_model_add_flatten(larch_model *m, const char *name, const char *input)
{
    return add1(m, &larch_flatten_ops, name, input, NULL);
}
larch_status larch_model_add_add(larch_model *m, const char *name, const char *const *inputs, int n_inputs)
{
    return larch_model_add_layer(m, &larch_add_ops, name, inputs, n_inputs, NULL);
}
larch_status larch_model_add_relu(larch_model *m, const char *name, const char *input)
{
    return add1(m, &larch_relu_ops, name, input, NULL);
}
larch_status larch_model_add_leaky_relu(larch_model *m, const char *name, const char *input,
                                        const larch_leaky_relu_opts *o)
{
    return add1(m, &larch_leaky_relu_ops, name, input, o);
}
larch_status larch_model_add_gelu(larch_model *m, const char *name, const char *input)
{
    return add1(m, &larch_gelu_ops, name, input, NULL);
}
larch_status larch_model_add_tanh(larch_model *m, const char *name, const char *input)
{
    return add1(m, &larch_tanh_ops, name, input, NULL);
}
larch_status larch_model_add_sigmoid(larch_model *m, const char *name, const char *input)
{
    return add1(m, &larch_sigmoid_ops, name, input, NULL);
}
larch_status larch_model_add_dropout(larch_model *m, const char *name, const char *input, const larch_dropout_opts *o)
{
    return add1(m, &larch_dropout_ops, name, input, o);
}
larch_status larch_model_add_batchnorm(larch_model *m, const char *name, const char *input,
                                       const larch_batchnorm_opts *o)
{
    return add1(m, &larch_batchnorm_ops, name, input, o);
}
larch_status larch_model_add_layernorm(larch_model *m, const char *name, const char *input, const larch_norm_opts *o)
{
    return add1(m, &larch_layernorm_ops, name, input, o);
}
larch_status larch_model_add_groupnorm(larch_model *m, const char *name, const char *input,
                                       const larch_groupnorm_opts *o)
{
    return add1(m, &larch_groupnorm_ops, name, input, o);
}
larch_status larch_model_add_instancenorm(larch_model *m, const char *name, const char *input,
                                          const larch_norm_opts *o)
{
    return add1(m, &larch_instancenorm_ops, name, input, o);
}
larch_status larch_model_add_l2norm(larch_model *m, const char *name, const char *input, const larch_l2norm_opts *o)
{
    return add1(m, &larch_l2norm_ops, name, input, o);
}
larch_status larch_model_add_cosine(larch_model *m, const char *name, const char *input, const larch_cosine_opts *o)
{
    return add1(m, &larch_cosine_ops, name, input, o);
}
