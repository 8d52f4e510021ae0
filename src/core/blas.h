/* blas.h - the one place larch talks to BLAS (OpenBLAS through cblas).
 * Row-major everywhere: C(m,n) = alpha * op(A) op(B) + beta * C. */
#ifndef LARCH_CORE_BLAS_H
#define LARCH_CORE_BLAS_H

void larch_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta,
                 float *c, int ldc);
/* Sets the OpenBLAS thread count (t >= 1) for the whole process. */
void larch_blas_set_threads(int t);
int larch_blas_threads(void);
/* OpenBLAS's build description ("OpenBLAS 0.3.21 DYNAMIC_ARCH ..."). */
const char *larch_blas_config(void);
const char *larch_blas_corename(void);
/* How the loaded OpenBLAS runs its threads: "pthreads" (Debian's default
 * libopenblas0-pthread), "openmp" (libopenblas0-openmp: the OpenMP pool
 * larch's own loops use) or "sequential". */
const char *larch_blas_threading(void);

#endif
