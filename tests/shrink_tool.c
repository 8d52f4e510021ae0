/* shrink_tool.c - the measurements of docs/compression/structured.md and
 * factorization.md, until `larch compress` prints them (not a test):
 *   shrink_tool compress SPEC CONFIG CKPT OUT_BASE
 *       runs a compression method ("structured:flops=0.5", "svd:rank=32")
 *       and writes OUT_BASE.yaml + OUT_BASE.h5;
 *   shrink_tool time [--threads T] [--reps R] CONFIG CKPT [CONFIG CKPT ...]
 *       for each model, in one run and interleaved (R rounds, the best
 *       kept): parameters, multiply-adds per sample, test accuracy,
 *       eval-mode forward samples/s at batch 256 over the test set and the
 *       median latency at batch 1, and which kernels ran the convolutions.
 */
#include "compress/methods.h"
#include "compress/rewrite.h"
#include "core/threads.h"
#include "larch/larch.h"
#include "nn/layers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int fail(const char *what)
{
    fprintf(stderr, "shrink_tool: %s: %s\n", what, larch_errmsg());
    return 1;
}

typedef struct {
    larch_node *cfg;
    larch_model *m;
    const char *name;
    double acc, sps, lat_ms;
    int onednn, convs;
} entry;

static void fill(const larch_dataset *ds, int lo, int n, float *x)
{
    size_t per = larch_shape_size(ds->shape);
    for (int i = 0; i < n; i++)
        for (size_t k = 0; k < per; k++) {
            int c = (int)(k % (size_t)ds->shape.c), j = ds->n_norm > 1 ? c : 0;
            float v = ds->u8 ? ds->u8[(size_t)(lo + i) * per + k] / 255.0f : ds->f32[(size_t)(lo + i) * per + k];
            x[(size_t)i * per + k] = ds->n_norm ? (v - ds->mean[j]) / ds->std[j] : v;
        }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void measure(entry *e, const larch_dataset *test, const float *xall, int reps_lat)
{
    const int B = 256;
    size_t per = larch_shape_size(test->shape);
    larch_pass p = {.train = 0};
    larch_batch b;
    memset(&b, 0, sizeof b);
    larch_model_plan(e->m, B);
    int outn = larch_model_n_layers(e->m);
    int classes = larch_model_node_shape(e->m, outn).c;
    long correct = 0;
    double t0 = now();
    for (int lo = 0; lo < test->n; lo += B) {
        int n = test->n - lo < B ? test->n - lo : B;
        b.n = p.n = n;
        b.x = (float *)xall + (size_t)lo * per;
        larch_model_forward(e->m, &b, &p);
        const float *y = larch_model_node_output(e->m, outn);
        for (int i = 0; i < n; i++) {
            int best = 0;
            for (int c = 1; c < classes; c++)
                if (y[i * classes + c] > y[i * classes + best]) best = c;
            correct += best == test->labels[lo + i];
        }
    }
    double sps = test->n / (now() - t0);
    if (sps > e->sps) e->sps = sps;
    e->acc = (double)correct / test->n;
    e->onednn = larch_conv_onednn_count(e->m, &e->convs);
    /* batch 1 */
    double *lat = malloc((size_t)reps_lat * sizeof *lat);
    b.n = p.n = 1;
    for (int r = 0; r < reps_lat + 10; r++) {
        b.x = (float *)xall + (size_t)(r % test->n) * per;
        double t = now();
        larch_model_forward(e->m, &b, &p);
        if (r >= 10) lat[r - 10] = (now() - t) * 1e3;
    }
    qsort(lat, (size_t)reps_lat, sizeof *lat, cmp_d);
    if (e->lat_ms == 0 || lat[reps_lat / 2] < e->lat_ms) e->lat_ms = lat[reps_lat / 2];
    free(lat);
}

int main(int argc, char **argv)
{
    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) return fail("MPI");
    int rc = 0;
    if (argc == 6 && !strcmp(argv[1], "compress")) {
        const larch_compress_method *m;
        larch_node *opts = NULL, *cfg = NULL;
        larch_compress_out out;
        larch_status s = larch_compress_parse(argv[2], &m, &opts);
        if (!s) s = larch_run_load(argv[3], NULL, 0, &cfg);
        larch_compress_src src = {cfg, argv[4], NULL};
        if (!s) s = m->run(&src, opts, argv[5], &out);
        if (s) rc = fail(argv[2]);
        else {
            printf("%s: %s\n  -> %s, %s\n", argv[2], out.summary, out.config_path, out.checkpoint);
            larch_node_free(out.cfg);
        }
        larch_node_free(opts);
        larch_node_free(cfg);
    } else if (argc >= 4 && !strcmp(argv[1], "time")) {
        int a = 2, threads = 1, reps = 3;
        for (; a + 1 < argc && argv[a][0] == '-'; a += 2) {
            if (!strcmp(argv[a], "--threads")) threads = atoi(argv[a + 1]);
            else if (!strcmp(argv[a], "--reps")) reps = atoi(argv[a + 1]);
        }
        larch_threads_set(threads);
        int n = (argc - a) / 2;
        entry *e = calloc((size_t)n, sizeof *e);
        larch_dataset train, test;
        larch_status s = LARCH_OK;
        for (int i = 0; i < n && !s; i++) {
            e[i].name = argv[a + 2 * i + 1];
            s = larch_run_load(argv[a + 2 * i], NULL, 0, &e[i].cfg);
            if (!s) s = larch_rw_load(e[i].cfg, argv[a + 2 * i + 1], &e[i].m);
        }
        if (!s) s = larch_run_datasets(e[0].cfg, &train, &test);
        if (s) { free(e); larch_comm_finalize(&comm); return fail("load"); }
        float *x = malloc((size_t)test.n * larch_shape_size(test.shape) * sizeof *x);
        fill(&test, 0, test.n, x);
        for (int r = 0; r < reps; r++)
            for (int i = 0; i < n; i++) measure(&e[i], &test, x, 300);
        printf("%-44s %9s %10s %8s %12s %11s  %s\n", "model", "params", "MACs", "acc", "samples/s", "latency_ms", "conv kernels");
        for (int i = 0; i < n; i++) {
            char k[64];
            if (e[i].convs) snprintf(k, sizeof k, "%d/%d conv2d on oneDNN", e[i].onednn, e[i].convs);
            else snprintf(k, sizeof k, "dense only (OpenBLAS)");
            printf("%-44s %9ld %10.4g %8.4f %12.0f %11.3f  %s\n", e[i].name, larch_rw_params(e[i].m), larch_rw_macs(e[i].m),
                   e[i].acc, e[i].sps, e[i].lat_ms, k);
            printf("  ratio to the first: samples/s %.2fx, latency %.2fx\n", e[i].sps / e[0].sps, e[0].lat_ms / e[i].lat_ms);
        }
        for (int i = 0; i < n; i++) { larch_model_free(e[i].m); larch_node_free(e[i].cfg); }
        free(e);
        free(x);
        larch_dataset_free(&train);
        larch_dataset_free(&test);
    } else {
        fprintf(stderr, "usage: shrink_tool compress SPEC CONFIG CKPT OUT_BASE\n"
                        "       shrink_tool time [--threads T] [--reps R] CONFIG CKPT [CONFIG CKPT ...]\n");
        rc = 2;
    }
    larch_comm_finalize(&comm);
    return rc;
}
