/* gemm_bf16.h - GEMM with bfloat16 inputs and float accumulation and output,
 * through oneDNN's matmul (AVX512-BF16 / AMX kernels where the CPU has them).
 *
 * Same contract as larch_sgemm (row-major C(m,n) = alpha op(A) op(B) +
 * beta C, float buffers): A and B are rounded to bf16 (nearest even) into
 * internal buffers, the products are summed in float. Primitives are made
 * the first time a shape is seen and kept (up to a fixed number of shapes),
 * so a training step allocates nothing after its first run. Calls are
 * serialized by a lock (the conversion buffers are shared). */
#ifndef LARCH_CORE_GEMM_BF16_H
#define LARCH_CORE_GEMM_BF16_H

#include "larch/error.h"

/* LARCH_OK when this build has oneDNN and the CPU runs a bf16 matmul (probed
 * once, with a small primitive); otherwise LARCH_ERR_INVALID with a
 * message saying why. */
larch_status larch_bf16_gemm_available(void);

/* As larch_sgemm; returns LARCH_ERR_* (with a message) when oneDNN fails,
 * which after larch_bf16_gemm_available() succeeded means out of memory. */
larch_status larch_gemm_bf16(int trans_a, int trans_b, int m, int n, int k, float alpha,
                             const float *a, int lda, const float *b, int ldb, float beta,
                             float *c, int ldc);

/* Frees the kept primitives and buffers (process exit; tests under ASan). */
void larch_gemm_bf16_release(void);

#endif
