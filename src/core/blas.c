/* blas.c - OpenBLAS wrappers; the only file that includes cblas.h. */
#include "core/blas.h"

#include <cblas.h>

void larch_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta,
                 float *c, int ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb,
                beta, c, ldc);
}

void larch_blas_set_threads(int t) { openblas_set_num_threads(t < 1 ? 1 : t); }
int larch_blas_threads(void) { return openblas_get_num_threads(); }
const char *larch_blas_config(void) { return openblas_get_config(); }
const char *larch_blas_corename(void) { return openblas_get_corename(); }
const char *larch_blas_threading(void)
{
    switch (openblas_get_parallel()) {   /* 0 sequential, 1 pthreads, 2 OpenMP */
    case 1: return "pthreads";
    case 2: return "openmp";
    default: return "sequential";
    }
}
