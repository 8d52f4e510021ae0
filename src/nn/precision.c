/* precision.c - the compute precision of a model's matrix products: the
 * setting (larch_model_set_precision) and the product the layers call
 * (larch_layer_gemm), which picks OpenBLAS's sgemm or the bf16 GEMM. */
#include "nn/layers.h"
#include "core/blas.h"
#include "core/gemm_bf16.h"

#include <stdio.h>

larch_status larch_model_set_precision(larch_model *m, larch_precision p)
{
    if (p != LARCH_PRECISION_FP32 && p != LARCH_PRECISION_BF16)
        return larch_fail(LARCH_ERR_INVALID, "precision %d is neither LARCH_PRECISION_FP32 nor LARCH_PRECISION_BF16", (int)p);
    if (p == LARCH_PRECISION_BF16) {
        larch_status s = larch_bf16_gemm_available();
        if (s) return s;
    }
    if (p == m->precision) return LARCH_OK;
    larch_precision was = m->precision;
    m->precision = p;
    /* The layers' scratch depends on the precision (conv2d's oneDNN bf16
     * primitives want bf16 copies of their inputs there): a planned model
     * is planned again for the same batch, which also makes the primitives. */
    if (m->arena) {
        larch_status s = larch_model_plan(m, m->max_batch);
        if (s) {
            m->precision = was;
            larch_model_plan(m, m->max_batch);   /* the old plan back, when memory allows; the error is s */
            return s;
        }
    }
    return LARCH_OK;
}

larch_precision larch_model_precision(const larch_model *m) { return m->precision; }

void larch_layer_gemm(const larch_layer *L, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc)
{
    if (L->model->precision == LARCH_PRECISION_BF16) {
        if (larch_gemm_bf16(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == LARCH_OK) return;
        if (!L->model->precision_warned) {
            L->model->precision_warned = 1;
            fprintf(stderr, "larch: warning: layer '%s': a bf16 product failed (%s); computing it in float\n", L->name,
                    larch_errmsg());
        }
    }
    larch_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
