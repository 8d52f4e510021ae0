/* channel_sums.c - per-channel sums of (rows, C) channels-last arrays in
 * double precision, for the gradients of biases and normalization scales and
 * shifts (contract in nn/layers.h). Channels are taken in blocks of BLOCK
 * with the block's accumulators on the stack, so one pass reads every row's
 * block contiguously and nothing is allocated. */
#include "nn/layers.h"
#include "core/dispatch.h"

#define BLOCK 256

LARCH_HOT void larch_channel_sums(const float *a, const float *b, size_t rows, int C, float *sum_a, float *sum_ab, int acc)
{
    const int with_b = b && sum_ab;
    for (int c0 = 0; c0 < C; c0 += BLOCK) {
        const int nc = C - c0 < BLOCK ? C - c0 : BLOCK;
        double sa[BLOCK], sab[BLOCK];
        for (int c = 0; c < nc; c++) sa[c] = sab[c] = 0.0;
        for (size_t r = 0; r < rows; r++) {
            const float *restrict ar = a + r * (size_t)C + c0;
            for (int c = 0; c < nc; c++) sa[c] += ar[c];
            if (with_b) {
                const float *restrict br = b + r * (size_t)C + c0;
                for (int c = 0; c < nc; c++) sab[c] += (double)ar[c] * br[c];
            }
        }
        for (int c = 0; c < nc; c++) {
            sum_a[c0 + c] = (float)(acc ? sum_a[c0 + c] + sa[c] : sa[c]);
            if (with_b) sum_ab[c0 + c] = (float)(acc ? sum_ab[c0 + c] + sab[c] : sab[c]);
        }
    }
}
