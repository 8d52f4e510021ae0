/* quant_tool.c - the quantization methods and their measurements from the
 * command line, for tests/cli_quant.sh and docs/compression/quantization.md
 * (until `larch compress` runs them; the lead's compress_cmd.c).
 *
 *   quant_tool compress CONFIG CHECKPOINT METHOD[:k=v,...] OUT_BASE
 *       runs a method of larch/compress.h: writes OUT_BASE.yaml and .h5
 *   quant_tool float CONFIG CHECKPOINT OUT.h5
 *       the checkpoint's model without optimizer state (the float baseline
 *       of the size comparisons)
 *   quant_tool bench [--batch B] [--reps R] [--threads T] CONFIG CHECKPOINT [CONFIG CHECKPOINT ...]
 *       for each model, in one process: parameters, checkpoint bytes, test
 *       accuracy, eval-mode forward samples/s at batch B (median of R
 *       passes, the models' passes interleaved) and latency at batch 1
 *       (median of R), and which kernels ran; one JSON line per model
 */
#include "larch/larch.h"
#include "larch/compress.h"
#include "core/threads.h"
#include "core/blas.h"
#include "nn/layers.h"
#include "nn/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const larch_comm one = {0, 1, 0, 1, NULL};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int fail(const char *what)
{
    fprintf(stderr, "quant_tool: %s: %s\n", what, larch_errmsg());
    return 1;
}

static int compress(int argc, char **argv)
{
    if (argc != 6) { fprintf(stderr, "usage: quant_tool compress CONFIG CHECKPOINT METHOD[:k=v,...] OUT_BASE\n"); return 2; }
    larch_node *cfg = NULL, *opts = NULL;
    larch_dataset train, test;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    const larch_compress_method *m = NULL;
    larch_compress_out out;
    memset(&out, 0, sizeof out);
    if (larch_run_load(argv[2], NULL, 0, &cfg)) return fail(argv[2]);
    if (larch_compress_parse(argv[4], &m, &opts)) return fail("--method");
    if (m->needs_data && larch_run_datasets(cfg, &train, &test)) return fail("data");
    larch_compress_src src = {cfg, argv[3], m->needs_data ? &train : NULL};
    double t0 = now();
    larch_status s = m->run(&src, opts, argv[5], &out);
    if (s) return fail(m->name);
    printf("%s (%.2f s)\n  -> %s, %s\n", out.summary, now() - t0, out.config_path, out.checkpoint);
    larch_node_free(out.cfg);
    larch_node_free(opts);
    larch_node_free(cfg);
    larch_dataset_free(&train);
    larch_dataset_free(&test);
    return 0;
}

typedef struct {
    const char *cfg_path, *ckpt;
    larch_node *cfg;
    larch_model *m;
    double acc, tput, lat;
    double *t_batch, *t_one;
    long params;
    long long bytes;
    char kernels[320];
} model_t;

static int cmp_d(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double median(double *v, int n) { qsort(v, (size_t)n, sizeof *v, cmp_d); return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]); }

static double time_pass(larch_model *m, const larch_dataset *test, float *x, int n)
{
    (void)test;
    larch_batch b = {.n = n, .x = x};
    larch_pass p = {.n = n, .train = 0};
    double t0 = now();
    larch_model_forward(m, &b, &p);
    return now() - t0;
}

static int bench(int argc, char **argv)
{
    int batch = 256, reps = 20, threads = 0, i = 2;
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else { fprintf(stderr, "quant_tool bench: unknown option %s\n", argv[i]); return 2; }
    }
    int n_models = (argc - i) / 2;
    if (n_models < 1 || (argc - i) % 2 || batch < 1 || reps < 1) {
        fprintf(stderr, "usage: quant_tool bench [--batch B] [--reps R] [--threads T] CONFIG CHECKPOINT [CONFIG CHECKPOINT ...]\n");
        return 2;
    }
    if (threads > 0) larch_threads_set(threads);
    model_t *ms = calloc((size_t)n_models, sizeof *ms);
    larch_dataset train, test;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    for (int k = 0; k < n_models; k++) {
        model_t *M = &ms[k];
        M->cfg_path = argv[i + 2 * k];
        M->ckpt = argv[i + 2 * k + 1];
        larch_shape shape;
        int classes;
        if (larch_run_load(M->cfg_path, NULL, 0, &M->cfg)) return fail(M->cfg_path);
        if (k == 0 && larch_run_datasets(M->cfg, &train, &test)) return fail("data");
        if (larch_run_input(M->cfg, &shape, &classes) ||
            larch_model_build(&M->m, shape, larch_run_layers(M->cfg), larch_map_get(M->cfg, "loss"),
                              larch_map_get(M->cfg, "regularization"), 0) ||
            larch_model_plan(M->m, batch) || larch_ckpt_load(M->ckpt, &one, M->m, NULL, NULL))
            return fail(M->ckpt);
        if (!strcmp(larch_cfg_str(larch_map_get(M->cfg, "train"), "precision"), "bf16") &&
            larch_model_set_precision(M->m, LARCH_PRECISION_BF16))
            return fail("train.precision: bf16");
        for (int p = 0; p < larch_model_n_params(M->m); p++) M->params += (long)larch_model_param(M->m, p)->size;
        struct stat st;
        M->bytes = stat(M->ckpt, &st) == 0 ? (long long)st.st_size : -1;
        M->t_batch = calloc((size_t)reps, sizeof(double));
        M->t_one = calloc((size_t)reps, sizeof(double));
    }
    const size_t per = larch_shape_size(test.shape);
    larch_loader *ld = NULL;
    larch_loader_opts lo = {.global_batch = batch, .rank = 0, .world = 1};
    if (larch_loader_create(&ld, &test, &lo)) return fail("loader");
    /* accuracy over the whole test split */
    int steps = larch_loader_steps(ld);
    long hits[64] = {0}, seen = 0;
    for (int s = 0; s < steps; s++) {
        const larch_batch *b = larch_loader_next(ld, NULL, NULL);
        for (int k = 0; k < n_models && k < 64; k++) {
            larch_model *m = ms[k].m;
            larch_pass p = {.n = b->n, .train = 0};
            larch_model_forward(m, b, &p);
            int last = larch_model_n_layers(m);
            const float *y = larch_model_node_output(m, last);
            int c = (int)larch_shape_size(larch_model_node_shape(m, last));
            for (int r = 0; r < b->n; r++) {
                int best = 0;
                for (int j = 1; j < c; j++) if (y[(size_t)r * c + j] > y[(size_t)r * c + best]) best = j;
                hits[k] += best == b->label[0][r];
            }
        }
        seen += b->n;
    }
    /* speed: a fixed batch of test inputs, passes interleaved across models */
    const larch_batch *b0 = larch_loader_next(ld, NULL, NULL);
    float *x = malloc((size_t)batch * per * sizeof *x);
    memcpy(x, b0->x, (size_t)b0->n * per * sizeof *x);
    for (int k = 0; k < n_models; k++) { time_pass(ms[k].m, &test, x, batch); time_pass(ms[k].m, &test, x, 1); }   /* warm-up */
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < n_models; k++) {
            ms[k].t_batch[r] = time_pass(ms[k].m, &test, x, batch);
            ms[k].t_one[r] = time_pass(ms[k].m, &test, x, 1);
        }
    for (int k = 0; k < n_models; k++) {
        model_t *M = &ms[k];
        M->acc = (double)hits[k] / (double)seen;
        M->tput = batch / median(M->t_batch, reps);
        M->lat = 1e3 * median(M->t_one, reps);
        char impl[128];
        int conv_total, conv_dnn = larch_conv_onednn_count(M->m, &conv_total), q8 = larch_q8_count(M->m, impl, sizeof impl);
        time_pass(M->m, &test, x, batch);
        snprintf(M->kernels, sizeof M->kernels, "%d int8 layer(s) ran %d%s%s; %d/%d %s conv on oneDNN", q8,
                 larch_q8_ran(M->m), q8 ? " " : "", q8 ? impl : "", conv_dnn, conv_total,
                 larch_model_precision(M->m) == LARCH_PRECISION_BF16 ? "bf16" : "float");
        printf("{\"config\":\"%s\",\"checkpoint\":\"%s\",\"params\":%ld,\"bytes\":%lld,\"accuracy\":%.4f,\"samples_per_s\":%.0f,"
               "\"batch\":%d,\"latency_ms\":%.3f,\"reps\":%d,\"threads\":%d,\"kernels\":\"%s; openblas %s\"}\n", M->cfg_path,
               M->ckpt, M->params, M->bytes, M->acc, M->tput, batch, M->lat, reps, larch_threads_get(), M->kernels, larch_blas_corename());
        if (k > 0)
            printf("  vs first: accuracy %+.2f points, throughput x%.2f, latency x%.2f, bytes x%.3f\n", 100 * (M->acc - ms[0].acc),
                   M->tput / ms[0].tput, M->lat / ms[0].lat, (double)M->bytes / (double)ms[0].bytes);
    }
    free(x);
    larch_loader_free(ld);
    for (int k = 0; k < n_models; k++) {
        larch_model_free(ms[k].m);
        larch_node_free(ms[k].cfg);
        free(ms[k].t_batch);
        free(ms[k].t_one);
    }
    free(ms);
    larch_dataset_free(&train);
    larch_dataset_free(&test);
    return 0;
}

static int strip(int argc, char **argv)
{
    if (argc != 5) { fprintf(stderr, "usage: quant_tool float CONFIG CHECKPOINT OUT.h5\n"); return 2; }
    larch_node *cfg = NULL;
    larch_model *m = NULL;
    larch_shape shape;
    int classes;
    larch_ckpt_meta meta;
    char dir[] = "/tmp/quant_tool_XXXXXX", path[4200];
    if (larch_run_load(argv[2], NULL, 0, &cfg) || larch_run_input(cfg, &shape, &classes) ||
        larch_model_build(&m, shape, larch_run_layers(cfg), larch_map_get(cfg, "loss"), larch_map_get(cfg, "regularization"), 0) ||
        larch_ckpt_load(argv[3], &one, m, NULL, &meta))
        return fail(argv[3]);
    if (!mkdtemp(dir)) return 1;
    if (larch_ckpt_save(dir, 0, &one, m, NULL, &meta, path, sizeof path)) return fail("save");
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "mv '%s' '%s' && rmdir '%s'", path, argv[4], dir);
    int rc = system(cmd);
    larch_ckpt_meta_free(&meta);
    larch_model_free(m);
    larch_node_free(cfg);
    return rc != 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "float")) return strip(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "compress")) return compress(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "bench")) return bench(argc, argv);
    fprintf(stderr, "usage: quant_tool compress|bench ... (see tests/quant_tool.c)\n");
    return 2;
}
