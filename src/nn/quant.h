/* quant.h - quantization of dense and conv2d layers (private to liblarch;
 * docs/compression/quantization.md).
 *
 * The math: per-output-channel symmetric int8 weights (scale = max|w| / 127
 * per row of the (cout, K) weight), activations quantized with one scale per
 * tensor from a calibrated range [lo, hi] (u8, scale hi / 255, when lo >= 0,
 * as after a ReLU; else s8, scale max(|lo|, |hi|) / 127), rounding to
 * nearest even, saturating.
 *
 * The state a layer may carry (larch_layer.q, owned here):
 *   - `store`: how a checkpoint holds the layer's weight (fp16, bf16 or int8
 *     with its scales and input range: checkpoint_quant.c);
 *   - int8 inference (larch_q8_attach): the s8 weights and oneDNN's int8
 *     primitive; eval-mode forward passes of the layer then quantize x and
 *     run integer products (int8_onednn.c). Training passes compute in float
 *     from the dequantized weights the parameter holds (the trainer refuses
 *     to train such a model);
 *   - quantization-aware training (larch_qat_enable): from step start_step,
 *     forward passes use fake-quantized weights (per channel, int8 grid) and
 *     inputs (the range tracked by an exponential moving average of the
 *     global batch's min and max, identical on every rank), backward the
 *     straight-through estimator: the weight gradient passes unchanged, the
 *     input gradient is zero where x was clipped.
 */
#ifndef LARCH_NN_QUANT_H
#define LARCH_NN_QUANT_H

#include "nn/model_internal.h"
#include <stddef.h>
#include <stdint.h>

typedef enum { LARCH_QSTORE_FLOAT = 0, LARCH_QSTORE_FP16, LARCH_QSTORE_BF16, LARCH_QSTORE_INT8 } larch_qstore;

struct larch_qlayer {
    larch_qstore store;
    int rows, cols;           /* the weight as (cout, K)                                   */
    /* int8 (store == INT8): weights, per-row scales, the input range */
    int8_t *wq;
    float *wscale;
    float range[2];           /* input range [lo, hi]: calibrated, or QAT's moving average  */
    int has_range;
    void *kernel;             /* larch_i8_kernel (oneDNN); NULL: none                       */
    int int8_active;          /* eval passes run the int8 kernel                            */
    int last_int8;            /* the last forward ran it                                    */
    int warned;
    size_t scratch_cap;       /* scratch floats planned                                     */
    larch_layer *fold;        /* conv2d: the batchnorm folded into its int8 kernel, whose
                                 eval output the kernel writes (NULL: none)                 */
    int fold_wrote;           /* batchnorm: this pass's output was written by the conv      */
    /* QAT */
    int qat;
    long start_step;
    float momentum;
    float *wfq;               /* this pass's fake-quantized weights (rows * cols)           */
    int fq_on;                /* the last forward fake-quantized (backward follows it)      */
    float clip[2];            /* the input clip range of that forward                       */
};

/* ---- math ---- */

/* Scale of a range: u8 when lo >= 0 (scale hi / 255), else s8 (max(|lo|, |hi|) / 127); 1 for an empty range. */
float larch_q8_act_scale(float lo, float hi, int *u8);
/* Per-row symmetric int8: scale[r] = max_c |W[r, c]| / 127 (1 for a zero row), q = round(W / scale). */
void larch_q8_weights(const float *W, int rows, int cols, int8_t *q, float *scale);
void larch_q8_dequant(const int8_t *q, int rows, int cols, const float *scale, float *W);
/* out[i] = saturate(round(x[i] / scale)) as u8 or s8 (parallel over the pool). */
void larch_q8_act(const float *x, size_t n, float scale, int u8, void *out);
/* Fake quantization: per-row int8 weights dequantized; inputs on the grid of [lo, hi]. */
void larch_fq_weights(const float *W, int rows, int cols, float *out);
void larch_fq_act(const float *x, size_t n, float lo, float hi, float *out);
/* The min and max of x[0..n) (0, 0 when n = 0). */
void larch_minmax(const float *x, size_t n, float *lo, float *hi);

/* ---- layer state ---- */

/* Whether a layer can be quantized (dense, conv2d), and its weight as (rows, cols). */
int larch_q_layer_ok(const larch_layer *L, int *rows, int *cols);
/* The layer's state, created empty on first use (NULL: out of memory). */
struct larch_qlayer *larch_q_get(larch_layer *L);
void larch_q_free(larch_layer *L);

/* Stores int8 weights, scales and input range in L's state (checkpoint
 * format int8) and writes the dequantized weights into its parameter,
 * without the kernel (larch compress). */
larch_status larch_q8_set(larch_layer *L, const int8_t *wq, const float *scale, const float *range);
/* Whether this larch has the int8 kernels (built with oneDNN). */
int larch_q8_available(void);
/* int8 inference for L (larch_q8_set, then): wq (rows, cols), per-row scales, the input range
 * [lo, hi]. Writes the dequantized weights into the layer's parameter,
 * makes the oneDNN primitive (not available: LARCH_ERR_INVALID naming the
 * layer; a build without oneDNN) and re-plans a planned model. A conv2d
 * whose only reader is a batchnorm gets that batchnorm's eval-mode affine
 * map (running statistics at this call) folded into its output scales and
 * bias, and a relu post-op when the batchnorm's only reader is a relu; its
 * int8 passes then write the batchnorm's output. */
larch_status larch_q8_attach(larch_layer *L, const int8_t *wq, const float *scale, const float *range);
/* How many layers of m run int8 in eval passes; `kernels` (may be NULL,
 * len bytes) receives "onednn int8 (<impl>)" of the first. */
int larch_q8_count(const larch_model *m, char *kernels, size_t len);
/* batchnorm hook (eval): 1 when the int8 conv before it wrote its output
 * in this pass (the batchnorm then does nothing). */
int larch_q_folded(larch_layer *L, const larch_pass *p);
/* Test hook: how many layers ran int8 in their last forward. */
int larch_q8_ran(const larch_model *m);

/* Quantization-aware training on the named layers (NULL/0: every dense and
 * conv2d); re-plans a planned model. */
larch_status larch_qat_enable(larch_model *m, const char *const *layers, int n_layers, long start_step, float momentum);

/* ---- the layer hooks (dense.c, convolution.c) ---- */

/* Scratch and saved floats the layer's quantization needs at batch n. */
size_t larch_q_scratch(const larch_layer *L, int n);
size_t larch_q_saved(const larch_layer *L, int n);
/* Eval-mode int8 forward: 1 when it ran (y written), 0 when the layer
 * computes in float. */
int larch_q_forward_int8(larch_layer *L, const larch_pass *p);
/* QAT: the operands of this pass's products (x and W, fake-quantized when
 * on; forward fills them, backward reads them). */
void larch_q_operands(larch_layer *L, const larch_pass *p, int forward, const float **x, const float **W);
/* QAT backward: zeroes dx where x was clipped (not when dx accumulates). */
void larch_q_ste_mask(larch_layer *L, int n, float *dx, int dx_acc);

#endif
