/* measure.c - larch_compress_measure: what a model costs and how well it
 * does, measured the same way for the original and every compressed model
 * (the table of `larch compress`, docs/compression.md): parameters and
 * nonzero parameters, checkpoint bytes on disk, test accuracy, eval-mode
 * throughput at one batch size and latency at batch 1. */
#include "compress/methods.h"
#include "core/threads.h"
#include "larch/checkpoint.h"
#include "larch/train.h"
#include "core/blas.h"
#include "nn/layers.h"
#include "nn/quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median time of `reps` eval-mode forwards of b's first n samples. */
static double median_forward_s(larch_model *m, const larch_batch *b, int n, int reps, double *t)
{
    larch_batch part = *b;
    part.n = n;
    larch_pass p = {.n = n, .train = 0};
    for (int i = 0; i < 2; i++) larch_model_forward(m, &part, &p);   /* warm-up: caches, oneDNN primitives */
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        larch_model_forward(m, &part, &p);
        t[i] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    return reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
}

/* Test accuracy and mean loss of the first loss, in file order. */
static larch_status score(larch_model *m, const larch_dataset *test, int batch, larch_compress_stats *st)
{
    larch_loader_opts lo = {.global_batch = batch, .rank = 0, .world = 1};
    larch_loader *l = NULL;
    larch_status s = larch_loader_create(&l, test, &lo);
    if (s) return s;
    /* larch_model_loss writes each loss's statistics of one batch */
    larch_loss_stats stats[LARCH_MAX_LOSSES];
    double loss = 0.0;
    long correct = 0, count = 0;
    int steps = larch_loader_steps(l);
    for (int k = 0; k < steps && !s; k++) {
        const larch_batch *b = larch_loader_next(l, NULL, NULL);
        if ((s = larch_loader_status(l))) break;
        if (b->n == 0) continue;
        larch_pass p = {.n = b->n, .train = 0};
        larch_model_forward(m, b, &p);
        larch_model_loss(m, b, 0.0f, stats);
        loss += stats[0].loss_sum;
        correct += stats[0].correct;
        count += stats[0].count;
    }
    larch_loader_free(l);
    if (!s && larch_model_n_losses(m) > 0 && count > 0) {
        st->test_samples = count;
        st->loss = loss / (double)count;
        st->accuracy = larch_loss_has_accuracy(&m->losses[0]) ? (double)correct / (double)count : NAN;
    }
    return s;
}

static void describe_kernels(const larch_model *m, char *out, size_t len)
{
    int convs = 0, onednn = larch_conv_onednn_count(m, &convs);
    const char *prec = m->precision == LARCH_PRECISION_BF16 ? "bf16" : "fp32";
    char q8[96] = "";
    int n8 = larch_q8_count(m, q8, sizeof q8);
    if (n8)
        snprintf(out, len, "%d layer(s) %s, rest %s", n8, q8, prec);
    else if (convs && onednn == convs)
        snprintf(out, len, "%s, conv onednn", prec);
    else if (convs && onednn)
        snprintf(out, len, "%s, conv onednn %d/%d", prec, onednn, convs);
    else
        snprintf(out, len, "%s, openblas %s", prec, larch_blas_corename());
}

larch_status larch_compress_measure(const larch_comm *c, const larch_node *cfg, const char *checkpoint,
                                    const larch_dataset *test_set, int batch, int reps, int threads,
                                    larch_compress_stats *st)
{
    memset(st, 0, sizeof *st);
    st->accuracy = st->loss = NAN;
    st->batch = batch;
    if (batch < 1 || reps < 1)
        return larch_fail(LARCH_ERR_INVALID, "measure: batch %d and reps %d must be at least 1", batch, reps);
    struct stat fs;
    if (stat(checkpoint, &fs)) return larch_fail(LARCH_ERR_IO, "%s: cannot stat the checkpoint", checkpoint);
    st->file_bytes = (long long)fs.st_size;

    larch_node *copy = larch_node_clone(cfg);   /* larch_model_build validates (fills) in place */
    if (!copy) return larch_fail(LARCH_ERR_NOMEM, "measure: config copy");
    larch_shape in;
    int classes;
    larch_model *m = NULL;
    larch_status s = larch_run_input(copy, &in, &classes);
    if (!s) s = larch_model_build(&m, in, larch_run_layers(copy), larch_map_get(copy, "loss"),
                                  larch_map_get(copy, "regularization"), 0);
    if (!s) s = larch_ckpt_load(checkpoint, c, m, NULL, NULL);
    if (threads > 0) larch_threads_set(threads);
    if (!s) s = larch_model_plan(m, batch);
    if (!s) {
        const char *prec = larch_cfg_str(larch_map_get(copy, "train"), "precision");
        if (prec && !strcmp(prec, "bf16")) s = larch_model_set_precision(m, LARCH_PRECISION_BF16);
    }
    if (!s) {
        for (int i = 0; i < larch_model_n_params(m); i++) {
            const larch_param *p = larch_model_param(m, i);
            const float *w = larch_model_param_data(m, i);
            st->params += (long)p->size;
            for (size_t k = 0; k < p->size; k++) st->nonzero += w[k] != 0.0f;
        }
        if (test_set) s = score(m, test_set, batch, st);
    }
    if (!s) {
        /* timing input: the first `batch` test samples, or zeros without a test set */
        larch_dataset zeros = {0};
        const larch_dataset *ds = test_set;
        float *z = NULL;
        int32_t *zl = NULL;
        if (!ds || ds->n < batch) {
            z = calloc((size_t)batch * larch_shape_size(in), sizeof *z);
            zl = calloc((size_t)batch, sizeof *zl);
            if (!z || !zl) s = larch_fail(LARCH_ERR_NOMEM, "measure: timing batch");
            zeros.shape = in;
            zeros.n = batch;
            zeros.f32 = z;
            zeros.labels = zl;
            zeros.n_classes = classes;
            ds = &zeros;
        }
        larch_loader_opts lo = {.global_batch = batch, .rank = 0, .world = 1};
        larch_loader *l = NULL;
        double *t = malloc((size_t)reps * 10 * sizeof *t);   /* batch 1 takes 10 x reps passes: each is short */
        if (!s && !t) s = larch_fail(LARCH_ERR_NOMEM, "measure: timings");
        if (!s) s = larch_loader_create(&l, ds, &lo);
        if (!s) {
            const larch_batch *b = larch_loader_next(l, NULL, NULL);
            st->samples_per_s = (double)batch / median_forward_s(m, b, batch, reps, t);
            st->latency_ms = 1e3 * median_forward_s(m, b, 1, 10 * reps, t);
            describe_kernels(m, st->kernels, sizeof st->kernels);
        }
        larch_loader_free(l);
        free(t);
        free(z);
        free(zl);
    }
    larch_model_free(m);
    larch_node_free(copy);
    return s;
}
