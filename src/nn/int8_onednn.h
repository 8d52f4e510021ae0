/* int8_onednn.h - int8 inference products of dense and conv2d layers through
 * oneDNN's int8 primitives (private to liblarch; built only with
 * LARCH_HAVE_DNNL).
 *
 * A kernel holds one layer's int8 weights (s8, per-output-channel symmetric
 * scales), reordered once into the layout each primitive picks, and its
 * primitives, one per batch size (made by larch_i8_prepare at plan or load
 * time, or at the first pass of another batch size, like conv_onednn.c).
 * A pass reads the input already quantized (u8 or s8, one scale for the
 * tensor: quant.c), accumulates in s32 (VNNI where the CPU has it) and
 * writes float y = x_scale * w_scale[c] * acc + bias[c] through the
 * primitive's output scales. Running a pass allocates nothing: the caller
 * passes `scratch` of the prepared size.
 */
#ifndef LARCH_NN_INT8_ONEDNN_H
#define LARCH_NN_INT8_ONEDNN_H

#include <stddef.h>
#include <stdint.h>

typedef struct larch_i8_kernel larch_i8_kernel;

/* The product: dense (conv = 0; in = cin, x (n, cin), W (cout, cin)) or a
 * conv2d (conv = 1; x (n, h, w, cin), W (cout, k, k, cin), y (n, oh, ow, cout)). */
typedef struct larch_i8_geom {
    int conv, h, w, cin, cout, k, stride, pad, oh, ow;
} larch_i8_geom;

/* wq: (cout, K) s8 weights; out_scale[c] = x_scale * w_scale[c]; bias
 * (cout floats) or NULL; src_u8: the input is u8 (else s8); relu: y =
 * max(y, 0) as a post-op. Copies what it needs. NULL when oneDNN has no CPU engine or memory ran out. */
larch_i8_kernel *larch_i8_create(const larch_i8_geom *g, const int8_t *wq, const float *out_scale, const float *bias,
                                 int src_u8, int relu);
void larch_i8_free(larch_i8_kernel *k);

/* Makes (or finds) the primitive for batch n: 0 and the scratch bytes a
 * pass of n needs (oneDNN's scratchpad), or -1 when oneDNN cannot run it
 * (remembered). */
int larch_i8_prepare(larch_i8_kernel *k, int n, size_t *scratch_bytes);

/* y = the product for n prepared samples of xq (u8/s8 as created). 0, or
 * -1 when a primitive failed. */
int larch_i8_forward(larch_i8_kernel *k, int n, const void *xq, float *y, void *scratch);

/* The implementation oneDNN picked for n ("brg:avx512_core_vnni", ...), ""
 * when not prepared. */
const char *larch_i8_impl(const larch_i8_kernel *k, int n);

#endif
