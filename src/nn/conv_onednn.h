/* conv_onednn.h - conv2d through oneDNN's convolution primitives (private to
 * liblarch; built only with LARCH_HAVE_DNNL, see CMakeLists.txt LARCH_ONEDNN).
 *
 * Activations stay larch's (n, h, w, c) ("nhwc") and the weights larch's
 * (cout, kh, kw, cin) ("ohwi"): the primitives read and write them in place;
 * only the weights (and their gradient) are reordered to the layout the
 * primitive picks, into buffers the context owns. Primitives are made once
 * per batch size (larch_onednn_conv_prepare) and kept; running them
 * allocates nothing. oneDNN's scratchpad is user-managed: the caller passes
 * `scratch` of at least the prepared size, which also holds the input
 * gradient of an accumulating backward before it is added.
 *
 * Every call takes `bf16`: 0 runs float primitives, 1 bf16 ones (bf16 src,
 * weights and diff_dst, float accumulation, float outputs; conv_onednn.c).
 * The two are separate entries of the same context, so a model switching
 * precision keeps both. In bf16 the scratch also holds the bf16 copies of x
 * and dy.
 */
#ifndef LARCH_NN_CONV_ONEDNN_H
#define LARCH_NN_CONV_ONEDNN_H

#include <stddef.h>

typedef struct larch_onednn_conv larch_onednn_conv;

typedef struct larch_onednn_geom {
    int h, w, cin, cout, k, stride, pad, oh, ow, bias;
} larch_onednn_geom;

/* A context for one layer's geometry; NULL when out of memory or oneDNN has
 * no CPU engine. Free with larch_onednn_conv_free (NULL is fine). */
larch_onednn_conv *larch_onednn_conv_create(const larch_onednn_geom *g);
void larch_onednn_conv_free(larch_onednn_conv *c);

/* Makes (or finds) the primitives for batch n in precision bf16: forward,
 * and with `train` backward-data and backward-weights. Returns 0 and the
 * scratch floats the passes of n need, or -1 when oneDNN has no
 * implementation (in bf16 also: only its reference kernel; the caller uses
 * its own path; the failure is remembered, not retried). *save_floats (may
 * be NULL): the size of the primitive's copy of x (bf16) that a forward can
 * keep for the backward, 0 when the primitive reads larch's x itself (fp32). */
int larch_onednn_conv_prepare(larch_onednn_conv *c, int n, int train, int bf16, size_t *scratch_floats, size_t *save_floats);

/* y = conv(x, W) + bias (bias may be NULL when the geometry has none).
 * n must have been prepared. xsave: NULL, or save_floats floats that
 * receive the primitive's copy of x for the backward. Returns 0, or -1
 * when a primitive failed. */
int larch_onednn_conv_forward(larch_onednn_conv *c, int n, int bf16, const float *x, const float *W, const float *bias,
                              float *y, float *scratch, void *xsave);

/* Backward of a prepared training n: when dx != NULL, dx = (or += with
 * dx_acc) d/dx; when dW != NULL, dW = (or += with acc_grad) the weight
 * gradient. The bias gradient is the caller's (summed in double). xsave:
 * as in the forward; xsaved says the forward of this pass filled it (else
 * x is converted into it again). Returns 0, or -1 when a primitive failed. */
int larch_onednn_conv_backward(larch_onednn_conv *c, int n, int bf16, const float *x, const float *dy, const float *W,
                               float *dx, int dx_acc, float *dW, int acc_grad, float *scratch, void *xsave, int xsaved);

/* The implementation oneDNN picked for n's forward in precision bf16
 * ("brg_conv_fwd:avx512_core", "jit_bf16:avx512_core_bf16", "gemm:jit", ...),
 * or "" when it is not prepared. */
const char *larch_onednn_conv_impl(const larch_onednn_conv *c, int n, int bf16);

#endif
