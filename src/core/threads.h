/* threads.h - the one place larch sets its thread counts, and the parallel
 * loops of the memory-bound layers.
 *
 * larch runs two kinds of parallel code: OpenBLAS's sgemm (pthreads or
 * OpenMP, whichever OpenBLAS build is installed) and its own loops over
 * activations (OpenMP, like oneDNN). larch_threads_set gives both the same
 * count; train.threads, `--threads` and the programs call it, nothing else
 * sets a thread count.
 *
 * Results never depend on the count: elementwise loops write each element
 * once whatever the split, and reductions (batch-norm statistics, channel
 * sums) sum fixed blocks of rows whose number depends on the row count only
 * (larch_reduce_blocks), each block in double, and combine the blocks'
 * partial sums in block order on the calling thread.
 */
#ifndef LARCH_CORE_THREADS_H
#define LARCH_CORE_THREADS_H

#include <stddef.h>

/* Sets the OpenBLAS and OpenMP thread counts of the process to t (< 1: 1). */
void larch_threads_set(int t);
/* The count larch's own loops use (OpenMP's default until the first set). */
int larch_threads_get(void);

/* fn(ctx, lo, hi) over a partition of [0, n) into contiguous ranges of at
 * least `grain` items (at most one range per thread), run in parallel;
 * one call on the calling thread when n < 2 grain or with one thread. */
typedef void (*larch_range_fn)(void *ctx, size_t lo, size_t hi);
void larch_parallel_for(size_t n, size_t grain, larch_range_fn fn, void *ctx);

/* The number of row blocks a reduction over `rows` rows sums separately:
 * 1 to LARCH_REDUCE_BLOCKS, a function of rows only (never of the thread
 * count). Block k covers rows [larch_block_lo(rows, nb, k),
 * larch_block_lo(rows, nb, k + 1)). */
#define LARCH_REDUCE_BLOCKS 16
int larch_reduce_blocks(size_t rows);
static inline size_t larch_block_lo(size_t rows, int nb, int k) { return rows / (size_t)nb * (size_t)k + (rows % (size_t)nb) * (size_t)k / (size_t)nb; }

#endif
