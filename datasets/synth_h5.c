/* synth_h5.c - `larch data synth`: a learnable synthetic image dataset of
 * any size, written in chunks so that it may be larger than memory (the
 * out-of-core loader's benchmark and test data).
 *
 * Class c has a prototype image P_c of uniform random bytes drawn from
 * (seed, LARCH_RNG_SYNTH, 0xC1A5, c). Sample i of split s draws, from the
 * stream (seed, LARCH_RNG_SYNTH, s, i), its label (uniform over the
 * classes) and then one noise byte per value: x = clamp(P_c + u, 0, 255)
 * with u uniform in [-noise, noise]. */
#include "datasets/convert.h"
#include "larch/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 4096    /* samples per write */

static void make_sample(const larch_synth_h5_opts *o, const uint8_t *protos, int split, int i, uint8_t *x, int32_t *label)
{
    size_t dim = larch_shape_size(o->shape);
    larch_rng r;
    larch_rng_init(&r, o->seed, LARCH_RNG_SYNTH, (uint32_t)split, (uint32_t)i);
    int c = (int)larch_rng_below(&r, (uint32_t)o->classes);
    *label = c;
    const uint8_t *p = protos + (size_t)c * dim;
    const int span = 2 * o->noise + 1;
    uint32_t bits = 0;
    for (size_t j = 0; j < dim; j++) {
        if ((j & 3) == 0) bits = larch_rng_u32(&r);
        int u = (int)((bits & 0xFF) * (uint32_t)span >> 8) - o->noise;   // uniform-ish in [-noise, noise]
        bits >>= 8;
        int v = p[j] + u;
        x[j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

larch_status larch_synth_h5(const char *path, const larch_synth_h5_opts *o, float *mean, float *std, int *n_norm)
{
    size_t dim = larch_shape_size(o->shape);
    if (o->n_train < 1 || o->n_test < 1 || o->classes < 2 || o->classes > 65536 || dim < 1 || o->noise < 0 || o->noise > 255)
        return larch_fail(LARCH_ERR_INVALID, "data synth: need --train and --test >= 1, 2 <= --classes <= 65536, "
                          "a positive --shape and 0 <= --noise <= 255");
    uint8_t *protos = malloc((size_t)o->classes * dim), *buf = malloc(CHUNK * dim);
    int32_t *labels = malloc(CHUNK * sizeof *labels);
    larch_status s = protos && buf && labels ? LARCH_OK : larch_fail(LARCH_ERR_NOMEM, "out of memory");
    for (int c = 0; !s && c < o->classes; c++) {
        larch_rng r;
        larch_rng_init(&r, o->seed, LARCH_RNG_SYNTH, 0xC1A5u, (uint32_t)c);
        for (size_t j = 0; j < dim; j++) protos[(size_t)c * dim + j] = (uint8_t)(larch_rng_u32(&r) >> 24);
    }
    larch_stats st;
    larch_stats_init(&st, o->shape.c);
    for (int split = 0; split < 2 && !s; split++) {
        int n = split ? o->n_test : o->n_train;
        larch_h5_writer *w = NULL;
        s = larch_dataset_h5_begin(&w, path, split ? "test" : "train", n, o->shape, 1);
        for (int at = 0; !s && at < n; at += CHUNK) {
            int cnt = n - at < CHUNK ? n - at : CHUNK;
            for (int k = 0; k < cnt; k++) make_sample(o, protos, split, at + k, buf + (size_t)k * dim, &labels[k]);
            if (!split) larch_stats_add(&st, buf, NULL, (size_t)cnt * dim);
            s = larch_dataset_h5_append(w, buf, labels, cnt);
        }
        if (!split) larch_stats_finish(&st, mean, std, n_norm);
        /* the test split gets the training statistics, written at its end;
         * the training split's are written at its end too */
        larch_status e = larch_dataset_h5_end(w, s ? NULL : mean, s ? NULL : std, s ? 0 : *n_norm, NULL, 0);
        if (!s) s = e;
    }
    free(protos);
    free(buf);
    free(labels);
    return s;
}
