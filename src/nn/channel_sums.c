/* channel_sums.c - per-channel sums of (rows, C) channels-last arrays in
 * double precision, for the gradients of biases and normalization scales and
 * shifts (contract in nn/layers.h). Channels are taken in blocks of BLOCK;
 * the rows of each channel block are summed in larch_reduce_blocks(rows)
 * fixed row blocks, split over threads (core/threads.h), whose partial sums
 * (on the stack) are added in block order, so the thread count never
 * changes the result. Nothing is allocated. */
#include "nn/layers.h"
#include "core/dispatch.h"
#include "core/threads.h"

#define BLOCK 256

typedef struct {
    const float *a, *b;
    size_t rows;
    int C, c0, nc, nb, with_b;
    double (*sa)[BLOCK], (*sab)[BLOCK];   /* [row block][channel] */
} sums_job;

/* Row blocks [k0, k1) of channels [c0, c0 + nc). */
static LARCH_HOT void channel_block_sums(void *ctx, size_t k0, size_t k1)
{
    const sums_job *j = ctx;
    const int C = j->C, nc = j->nc;
    for (size_t k = k0; k < k1; k++) {
        double *restrict sa = j->sa[k], *restrict sab = j->sab[k];
        for (int c = 0; c < nc; c++) sa[c] = sab[c] = 0.0;
        size_t r1 = larch_block_lo(j->rows, j->nb, (int)k + 1);
        for (size_t r = larch_block_lo(j->rows, j->nb, (int)k); r < r1; r++) {
            const float *restrict ar = j->a + r * (size_t)C + j->c0;
            for (int c = 0; c < nc; c++) sa[c] += ar[c];
            if (j->with_b) {
                const float *restrict br = j->b + r * (size_t)C + j->c0;
                for (int c = 0; c < nc; c++) sab[c] += (double)ar[c] * br[c];
            }
        }
    }
}

LARCH_HOT void larch_channel_sums(const float *a, const float *b, size_t rows, int C, float *sum_a, float *sum_ab, int acc)
{
    double sa[LARCH_REDUCE_BLOCKS][BLOCK], sab[LARCH_REDUCE_BLOCKS][BLOCK];
    sums_job j = {.a = a, .b = b, .rows = rows, .C = C, .nb = larch_reduce_blocks(rows), .with_b = b && sum_ab,
                  .sa = sa, .sab = sab};
    for (int c0 = 0; c0 < C; c0 += BLOCK) {
        j.c0 = c0;
        j.nc = C - c0 < BLOCK ? C - c0 : BLOCK;
        larch_parallel_for((size_t)j.nb, 1, channel_block_sums, &j);
        for (int c = 0; c < j.nc; c++) {
            double ta = 0.0, tab = 0.0;
            for (int k = 0; k < j.nb; k++) { ta += sa[k][c]; tab += sab[k][c]; }   // block order
            sum_a[c0 + c] = (float)(acc ? sum_a[c0 + c] + ta : ta);
            if (j.with_b) sum_ab[c0 + c] = (float)(acc ? sum_ab[c0 + c] + tab : tab);
        }
    }
}
