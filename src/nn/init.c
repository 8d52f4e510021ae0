/* init.c - parameter initialization schemes. */
#include "nn/layers.h"

#include <math.h>
#include <string.h>

void larch_init_fill(float *w, size_t n, larch_init_kind kind, int fan_in, int fan_out,
                     uint64_t seed, const char *layer, int param_index)
{
    float std;
    switch (kind) {
    case LARCH_INIT_ZEROS: memset(w, 0, n * sizeof *w); return;
    case LARCH_INIT_ONES: for (size_t i = 0; i < n; i++) w[i] = 1.0f; return;
    case LARCH_INIT_HE: std = sqrtf(2.0f / (float)fan_in); break;           /* He et al. 2015 */
    case LARCH_INIT_XAVIER: std = sqrtf(2.0f / (float)(fan_in + fan_out)); break; /* Glorot & Bengio 2010 */
    default: std = sqrtf(1.0f / (float)fan_in); break;                       /* LeCun */
    }
    larch_rng r;
    larch_rng_init(&r, seed, LARCH_RNG_INIT, larch_hash32(layer), (uint32_t)param_index);
    for (size_t i = 0; i < n; i++) w[i] = std * larch_rng_normal(&r);
}
