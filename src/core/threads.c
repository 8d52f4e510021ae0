/* threads.c - thread counts (OpenBLAS and OpenMP together) and the
 * parallel-for of larch's own loops; the only file with OpenMP pragmas. */
#include "core/threads.h"
#include "core/blas.h"

#include <omp.h>

static int g_threads;   /* 0: not set, use OpenMP's default */

void larch_threads_set(int t)
{
    if (t < 1) t = 1;
    g_threads = t;
    larch_blas_set_threads(t);
    omp_set_num_threads(t);
}

int larch_threads_get(void) { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

void larch_parallel_for(size_t n, size_t grain, larch_range_fn fn, void *ctx)
{
    if (n == 0) return;
    if (grain < 1) grain = 1;
    size_t parts = n / grain;
    size_t t = (size_t)larch_threads_get();
    if (parts > t) parts = t;
    if (parts < 2 || omp_in_parallel()) { fn(ctx, 0, n); return; }
    const int np = (int)parts;
#pragma omp parallel for num_threads(np) schedule(static, 1)
    for (int k = 0; k < np; k++) fn(ctx, n / parts * k + (n % parts) * k / parts, n / parts * (k + 1) + (n % parts) * (k + 1) / parts);
}

int larch_reduce_blocks(size_t rows)
{
    size_t nb = rows / 256;   /* at least 256 rows a block */
    if (nb > LARCH_REDUCE_BLOCKS) nb = LARCH_REDUCE_BLOCKS;
    return nb < 1 ? 1 : (int)nb;
}
