/* layers.h - what layer implementations share (private to liblarch).
 *
 * One file per layer family; each defines a `const larch_layer_ops` named
 * larch_<type>_ops and registers it in registry.c. setup() reads the type's
 * options struct of larch/model.h (NULL: its _DEFAULTS), checks every value
 * and copies what forward/backward need into priv; layers never see the
 * config tree (the YAML front end, src/train/model_cfg.c, fills the same
 * structs). Conventions:
 *   - activations are (n, h, w, c), channels last;
 *   - backward writes dx[i] when need_dx[i] (accumulating when dx_acc[i])
 *     and parameter gradients when need_dw (accumulating when p->acc_grad);
 *   - nothing allocates in forward/backward: use L->saved (kept from forward
 *     to backward) and L->scratch (transient), sized by saved_size and
 *     scratch_size;
 *   - setup() errors name the layer: "layer 'fc1' (dense): ...".
 */
#ifndef LARCH_NN_LAYERS_H
#define LARCH_NN_LAYERS_H

#include "nn/model_internal.h"
#include "larch/rng.h"

extern const larch_layer_ops larch_dense_ops, larch_conv2d_ops, larch_maxpool_ops,
    larch_avgpool_ops, larch_global_avgpool_ops, larch_flatten_ops, larch_add_ops,
    larch_relu_ops, larch_leaky_relu_ops, larch_gelu_ops, larch_tanh_ops,
    larch_sigmoid_ops, larch_dropout_ops, larch_batchnorm_ops, larch_layernorm_ops,
    larch_groupnorm_ops, larch_instancenorm_ops, larch_l2norm_ops, larch_cosine_ops,
    larch_loss_weights_ops,   /* not a config type: see loss_weights.c */
    larch_loss_centers_ops;   /* not a config type: see metric_loss.c */

/* Per-channel parameter gradients (biases, norm scale and shift) over `rows`
 * rows of C channels: sum_a[c] (+)= sum_r a[r C + c] and, when b and sum_ab
 * are not NULL, sum_ab[c] (+)= sum_r a[r C + c] b[r C + c]; += when acc.
 * Rows number n*h*w (2.6e5 at batch 256 of 32x32), so the sums are kept in
 * double, like the losses and the batch-norm statistics. Allocates nothing. */
void larch_channel_sums(const float *a, const float *b, size_t rows, int C, float *sum_a, float *sum_ab, int acc);

/* Fusion (model.c, at plan time): the batchnorm layer L applies max(y, 0)
 * to its output and the relu gradient to its dy when on; the relu layer
 * reading it then shares L's output and gradient buffers, and an
 * activation whose output buffer is its input buffer does nothing. */
void larch_batchnorm_fuse_relu(larch_layer *L, int on);

/* Test hook: conv2d runs at most `samples` samples per GEMM chunk (0 = the
 * normal chunking), so small tests cover several chunks. */
void larch_conv_test_chunk(int samples);

/* Eval-mode batchnorm as y = a[c] x + b[c] (running statistics; for
 * folding into an int8 convolution, nn/quant.c). */
void larch_batchnorm_eval_affine(larch_layer *L, float *a, float *b);

/* A conv2d layer's kernel size, stride and padding (nn/quant.c). */
void larch_conv_geom(const larch_layer *L, int *k, int *stride, int *pad);

/* A dense layer's settings (1), or 0 when L is not a dense layer; any
 * out pointer may be NULL (nn/ntk.c: the analytic kernels). */
int larch_dense_info(const larch_layer *L, int *units, int *in, int *bias, larch_init_kind *init);

/* How many conv2d layers of m ran oneDNN in their last forward (of
 * *conv_layers conv2d layers; for `larch bench step` and the tests). */
int larch_conv_onednn_count(const larch_model *m, int *conv_layers);

/* The layer's matrix product, as larch_sgemm (core/blas.h), in the model's
 * precision (larch_model_set_precision): float through OpenBLAS or bf16
 * through oneDNN. A bf16 product that fails (only out of memory once the
 * precision was accepted) is computed in float, with one warning on stderr. */
void larch_layer_gemm(const larch_layer *L, int trans_a, int trans_b, int m, int n, int k, float alpha,
                      const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* dst = src (acc = 0) or dst += src (acc = 1). */
static inline void larch_store(float *dst, float v, int acc) { *dst = acc ? *dst + v : v; }

/* Formats a layer's error prefix. */
#define LARCH_LAYER_FAIL(L, s, fmt, ...) \
    larch_fail((s), "layer '%s' (%s): " fmt, (L)->name, (L)->ops->type, __VA_ARGS__)

/* Whether ops can define layers: a type name, setup, forward and backward,
 * 1 <= min_inputs <= max_inputs <= LARCH_MAX_IN. */
larch_status larch_layer_ops_check(const larch_layer_ops *ops);

/* Option checks for setup(): fail with LARCH_ERR_INVALID naming the layer
 * and the field when v is outside [lo, hi]. */
larch_status larch_check_int(const larch_layer *L, const char *field, long v, long lo, long hi);
larch_status larch_check_float(const larch_layer *L, const char *field, double v, double lo, double hi);
larch_status larch_check_init(const larch_layer *L, larch_init_kind init);

#endif
