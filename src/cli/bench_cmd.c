/* bench_cmd.c - `larch bench step`: the speed of one training step, measured
 * against OpenBLAS in the same run.
 *
 * The model of CONFIG is built for a batch of N random samples (no data
 * loading, no I/O in the timed loop). One timed step is exactly what the
 * trainer does per optimizer step on one rank: forward in training mode,
 * loss and its gradient, backward, penalty, optimizer update. In the same
 * run, and interleaved with the step rounds so both see the same machine
 * load, the bench times
 *   - the model's own GEMMs (the shapes larch_model_gemms lists, called
 *     back to back on buffers of those shapes): the best the step could do
 *     if everything but its GEMMs were free;
 *   - a square sgemm (the machine's sgemm peak at this thread count).
 * Each figure is the best of R rounds (the step's median round too:
 * samples_per_s_median, what a run of steps on a shared machine compares
 * with). FLOPs are the model's real
 * multiply-adds in GEMMs (2 m n k per GEMM); elementwise work is not
 * counted, so the ratio understates the step slightly.
 * Output: one JSON object on stdout; a readable summary on stderr.
 */
#include "cli/cli.h"
#include "core/blas.h"
#include "core/threads.h"
#include "nn/model_internal.h"   /* the losses' targets (random float targets) */
#include "nn/layers.h"           /* larch_conv_onednn_count */
#include "larch/larch.h"
#include "larch/optim.h"
#include "larch/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SETS 256
#define MAX_GEMMS 512

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void bench_usage(FILE *f)
{
    fprintf(f, "usage: larch bench step CONFIG [--batch N] [--threads T] [--rounds R] [--set key=value ...]\n"
               "  --batch N     samples per step (default: train.batch_size)\n"
               "  --threads T   OpenBLAS threads (default: train.threads, OPENBLAS_NUM_THREADS, or all cores)\n"
               "  --rounds R    timed rounds; each figure is the best round (default 7)\n"
               "  --layers      also time each layer's forward and backward (one JSON line per layer)\n"
               "prints one JSON line: samples_per_s (best round; samples_per_s_median: the median round),\n"
               "gflops (model GEMM multiply-adds per second),\n"
               "sgemm_gflops_model_shapes and ratio (step / sgemm on the same shapes), sgemm_gflops_square\n"
               "and ratio_square, all measured in the same run\n"
               "       mpirun -n N larch bench allreduce [CONFIG ...] [--help]: gradient-sum bandwidth\n"
               "       [mpirun -n N] larch bench ckpt CONFIG ... [--help]: checkpoint write/read vs disk bandwidth\n");
}

/* Buffers for replaying the model's GEMMs. */
typedef struct gemm_set {
    int n;
    larch_gemm_shape g[MAX_GEMMS];
    float *a, *b, *c;
} gemm_set;

static void gemm_run(const gemm_set *s)
{
    for (int i = 0; i < s->n; i++) {
        const larch_gemm_shape *g = &s->g[i];
        int lda = g->ta ? g->m : g->k, ldb = g->tb ? g->k : g->n;
        for (int r = 0; r < (int)g->count; r++)
            larch_sgemm(g->ta, g->tb, g->m, g->n, g->k, 1.0f, s->a, lda, s->b, ldb, 0.0f, s->c, g->n);
    }
}

typedef struct step_ctx {
    larch_model *m;
    larch_optim *o;
    larch_batch b;
    float lr;
} step_ctx;

static void train_step(step_ctx *s, uint32_t step)
{
    larch_pass p = {.n = s->b.n, .train = 1, .seed = 1, .step = step};
    larch_model_forward(s->m, &s->b, &p);
    larch_model_loss(s->m, &s->b, 1.0f / (float)s->b.n, NULL);
    larch_model_backward(s->m, &p);
    larch_model_penalty(s->m, 1);
    larch_optim_step(s->o, s->lr);
}

/* Best time of `rounds` rounds of fn(L, p), in seconds per call. */
static double time_layer(void (*fn)(larch_layer *, const larch_pass *), larch_layer *L, const larch_pass *p, int rounds)
{
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        int reps = 0;
        do { fn(L, p); reps++; } while (now() - t0 < 0.02);
        double t = (now() - t0) / reps;
        if (t < best) best = t;
    }
    return best;
}

/* Per-layer forward and backward times after a full step (a profile of
 * where a step's time goes), one JSON line per layer. */
static void layer_profile(step_ctx *s, int rounds)
{
    larch_model *m = s->m;
    larch_pass p = {.n = s->b.n, .train = 1, .seed = 1, .step = 1};
    train_step(s, 1);
    double total = 0;
    for (int i = 0; i < larch_model_n_layers(m); i++) {
        larch_layer *L = larch_model_layer(m, i);
        const larch_layer_ops *ops = larch_layer_get_ops(L);
        double f = time_layer(ops->forward, L, &p, rounds);
        double b = larch_layer_context(L).need_backward ? time_layer(ops->backward, L, &p, rounds) : 0.0;
        larch_gemm_shape g[16];
        int k = ops->gemms ? ops->gemms(L, s->b.n, 1, g, 16) : 0;
        double flops = 0;
        for (int j = 0; j < k; j++) flops += 2.0 * g[j].m * g[j].n * (double)g[j].k * g[j].count;
        total += f + b;
        printf("{\"bench\":\"layer\",\"layer\":\"%s\",\"type\":\"%s\",\"forward_ms\":%.4f,\"backward_ms\":%.4f,"
               "\"gemm_gflop\":%.4f,\"gflops\":%.2f}\n",
               larch_layer_name(L), ops->type, f * 1e3, b * 1e3, flops * 1e-9, flops > 0 ? flops / (f + b) * 1e-9 : 0.0);
    }
    printf("{\"bench\":\"layers_total\",\"ms\":%.4f}\n", total * 1e3);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Repetitions that make a round last about `target` seconds. */
static int reps_for(double seconds_per_call, double target)
{
    int r = (int)(target / (seconds_per_call > 1e-6 ? seconds_per_call : 1e-6));
    return r < 1 ? 1 : (r > 100000 ? 100000 : r);
}

static int bench_step(int argc, char **argv)
{
    const char *config = NULL, *sets[MAX_SETS];
    int n_sets = 0, batch = 0, threads = 0, rounds = 7, per_layer = 0;
    for (int i = 2; i < argc;) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { bench_usage(stdout); return 0; }
        int next = larch_cli_sets(argc, argv, i, sets, &n_sets, MAX_SETS);
        if (next < 0) return 2;
        if (next != i) { i = next; continue; }
        if (!strcmp(argv[i], "--layers")) { per_layer = 1; i++; continue; }
        if ((!strcmp(argv[i], "--batch") || !strcmp(argv[i], "--threads") || !strcmp(argv[i], "--rounds")) && i + 1 < argc) {
            char *end;
            long v = strtol(argv[i + 1], &end, 10);
            if (*end || v < 1 || v > 1 << 24) {
                fprintf(stderr, "larch bench: %s needs a positive integer, got '%s'\n", argv[i], argv[i + 1]);
                return 2;
            }
            if (!strcmp(argv[i], "--batch")) batch = (int)v;
            else if (!strcmp(argv[i], "--threads")) threads = (int)v;
            else rounds = (int)v;
            i += 2;
        } else if (argv[i][0] != '-' && !config) {
            config = argv[i++];
        } else {
            fprintf(stderr, "larch bench: unexpected argument '%s'\n", argv[i]);
            bench_usage(stderr);
            return 2;
        }
    }
    if (!config) { bench_usage(stderr); return 2; }

    larch_node *cfg = NULL;
    larch_model *m = NULL;
    larch_optim *o = NULL;
    gemm_set *gs = NULL;
    float *x = NULL, *sq = NULL, *targets = NULL;
    int32_t *labels = NULL;
    int rc = 1;
    larch_status s = larch_run_load(config, sets, n_sets, &cfg);
    if (s) { larch_cli_error(config); goto done; }
    larch_cli_warnings(cfg);
    const larch_node *train = larch_map_get(cfg, "train");
    if (!batch) batch = (int)larch_cfg_int(train, "batch_size");
    if (!threads) threads = (int)larch_cfg_int(train, "threads");
    if (!threads && getenv("OPENBLAS_NUM_THREADS")) threads = atoi(getenv("OPENBLAS_NUM_THREADS"));
    if (threads < 1) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    larch_threads_set(threads);

    larch_shape shape;
    int classes;
    if ((s = larch_run_input(cfg, &shape, &classes)) ||
        (s = larch_model_build(&m, shape, larch_run_layers(cfg), larch_map_get(cfg, "loss"),
                               larch_map_get(cfg, "regularization"), 1)) ||
        (s = larch_optim_create_cfg(&o, m, larch_map_get(cfg, "optim"))) ||
        (s = larch_model_plan(m, batch)) ||
        (s = larch_model_set_precision(m, strcmp(larch_cfg_str(train, "precision"), "bf16") == 0 ? LARCH_PRECISION_BF16
                                                                                             : LARCH_PRECISION_FP32))) {
        larch_cli_error(config);
        goto done;
    }
    /* random inputs and labels */
    size_t xlen = (size_t)batch * larch_shape_size(shape);
    x = larch_aligned_alloc(xlen * sizeof *x, "bench input");
    labels = larch_calloc((size_t)batch, sizeof *labels, "bench labels");
    gs = larch_calloc(1, sizeof *gs, "bench gemms");
    if (!x || !labels || !gs) { larch_cli_error("bench"); goto done; }
    larch_rng rng;
    larch_rng_init(&rng, 7, LARCH_RNG_USER, 0, 0);
    for (size_t i = 0; i < xlen; i++) x[i] = larch_rng_normal(&rng);
    for (int i = 0; i < batch; i++) labels[i] = (int32_t)larch_rng_below(&rng, (uint32_t)classes);
    step_ctx st = {m, o, {.n = batch, .x = x}, (float)larch_cfg_float(larch_map_get(cfg, "optim"), "lr") * 1e-3f};
    for (int k = 0; k < LARCH_MAX_TARGETS; k++) st.b.label[k] = labels;
    size_t widest = 0;                                /* random float targets for losses with on: targets */
    for (int k = 0; k < m->n_losses; k++) {
        size_t dim = larch_shape_size(larch_model_node_shape(m, m->losses[k].node));
        if (m->losses[k].on_targets && dim > widest) widest = dim;
    }
    if (widest) {
        targets = larch_calloc((size_t)batch * widest * LARCH_MAX_TARGETS, sizeof *targets, "bench targets");
        if (!targets) { larch_cli_error("bench"); goto done; }
        for (size_t i = 0; i < (size_t)batch * widest * LARCH_MAX_TARGETS; i++) targets[i] = larch_rng_normal(&rng);
        for (int k = 0; k < m->n_losses; k++) {
            const larch_loss *l = &m->losses[k];
            if (!l->on_targets) continue;
            st.b.target[l->target] = targets + (size_t)batch * widest * (size_t)l->target;
            st.b.target_dim[l->target] = (int)larch_shape_size(larch_model_node_shape(m, l->node));
        }
    }

    /* the model's GEMMs on buffers large enough for each */
    gs->n = larch_model_gemms(m, batch, 1, gs->g, MAX_GEMMS);
    double flops = 0.0;
    size_t amax = 1, bmax = 1, cmax = 1;
    for (int i = 0; i < gs->n; i++) {
        const larch_gemm_shape *g = &gs->g[i];
        flops += 2.0 * g->m * g->n * (double)g->k * g->count;      // one multiply-add = 2 flops
        if ((size_t)g->m * g->k > amax) amax = (size_t)g->m * g->k;
        if ((size_t)g->k * g->n > bmax) bmax = (size_t)g->k * g->n;
        if ((size_t)g->m * g->n > cmax) cmax = (size_t)g->m * g->n;
    }
    gs->a = larch_aligned_alloc(amax * sizeof(float), "bench A");
    gs->b = larch_aligned_alloc(bmax * sizeof(float), "bench B");
    gs->c = larch_aligned_alloc(cmax * sizeof(float), "bench C");
    const int N = 2048;                                            /* square sgemm */
    sq = larch_aligned_alloc((size_t)3 * N * N * sizeof *sq, "bench square");
    if (!gs->a || !gs->b || !gs->c || !sq) { larch_cli_error("bench"); goto done; }
    for (size_t i = 0; i < amax; i++) gs->a[i] = 0.01f * (float)(i % 97);
    for (size_t i = 0; i < bmax; i++) gs->b[i] = 0.01f * (float)(i % 89);
    for (size_t i = 0; i < (size_t)2 * N * N; i++) sq[i] = 0.01f * (float)(i % 83);

    /* warm up, then size the rounds to about 0.3 s each */
    uint32_t step = 0;
    double t0 = now();
    for (int i = 0; i < 3; i++) train_step(&st, step++);
    int step_reps = reps_for((now() - t0) / 3, 0.3);
    t0 = now();
    gemm_run(gs); gemm_run(gs);
    int gemm_reps = reps_for((now() - t0) / 2, 0.3);
    larch_sgemm(0, 0, N, N, N, 1.0f, sq, N, sq + (size_t)N * N, N, 0.0f, sq + (size_t)2 * N * N, N);
    double best_step = 1e30, best_gemm = 1e30, best_sq = 1e30;
    double *round_step = larch_calloc((size_t)rounds, sizeof *round_step, "bench rounds");
    if (!round_step) { larch_cli_error("bench"); goto done; }
    size_t n_floats;
    larch_model_flat_params(m, &n_floats);
    for (int r = 0; r < rounds; r++) {
        t0 = now();
        for (int i = 0; i < step_reps; i++) train_step(&st, step++);
        double t = (now() - t0) / step_reps;
        round_step[r] = t;
        if (t < best_step) best_step = t;
        t0 = now();
        for (int i = 0; i < gemm_reps; i++) gemm_run(gs);
        t = (now() - t0) / gemm_reps;
        if (t < best_gemm) best_gemm = t;
        t0 = now();
        larch_sgemm(0, 0, N, N, N, 1.0f, sq, N, sq + (size_t)N * N, N, 0.0f, sq + (size_t)2 * N * N, N);
        t = now() - t0;
        if (t < best_sq) best_sq = t;
    }
    qsort(round_step, (size_t)rounds, sizeof *round_step, cmp_double);
    double median_step = rounds % 2 ? round_step[rounds / 2] : 0.5 * (round_step[rounds / 2 - 1] + round_step[rounds / 2]);
    free(round_step);
    int conv_layers, conv_onednn = larch_conv_onednn_count(m, &conv_layers);   /* after the timed steps */
    double gflops = flops / best_step * 1e-9, sgemm = flops / best_gemm * 1e-9;
    double square = 2.0 * N * N * (double)N / best_sq * 1e-9;
    printf("{\"bench\":\"step\",\"config\":\"%s\",\"batch\":%d,\"threads\":%d,\"params\":%zu,"
           "\"gemms\":%d,\"gflop_per_step\":%.4f,\"step_ms\":%.4f,\"samples_per_s\":%.1f,\"samples_per_s_median\":%.1f,"
           "\"gflops\":%.2f,\"sgemm_gflops_model_shapes\":%.2f,\"ratio\":%.4f,"
           "\"sgemm_gflops_square\":%.2f,\"ratio_square\":%.4f,\"rounds\":%d,\"blas\":\"%s\",\"blas_threading\":\"%s\","
           "\"conv_backend\":\"%s\",\"conv_layers\":%d,\"conv_onednn_layers\":%d,\"precision\":\"%s\"}\n",
           config, batch, threads, n_floats, gs->n, flops * 1e-9, best_step * 1e3, batch / best_step, batch / median_step,
           gflops, sgemm, gflops / sgemm, square, gflops / square, rounds, larch_blas_corename(), larch_blas_threading(),
           larch_conv_backend_name(larch_get_conv_backend()), conv_layers, conv_onednn,
           larch_model_precision(m) == LARCH_PRECISION_BF16 ? "bf16" : "fp32");
    fprintf(stderr, "larch bench step: %s batch %d, %d thread(s): %.3f ms/step, %.0f samples/s, "
                    "%.1f GFLOP/s = %.2f of sgemm on the model's shapes (%.1f), %.2f of square sgemm (%.1f)\n",
            config, batch, threads, best_step * 1e3, batch / best_step, gflops, gflops / sgemm, sgemm,
            gflops / square, square);
    if (per_layer) layer_profile(&st, rounds);
    rc = 0;
done:
    if (gs) { free(gs->a); free(gs->b); free(gs->c); }
    free(gs); free(sq); free(x); free(labels); free(targets);
    larch_optim_free(o);
    larch_model_free(m);
    larch_node_free(cfg);
    return rc;
}

int larch_cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        bench_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "step")) return bench_step(argc, argv);
    if (!strcmp(argv[1], "allreduce")) return larch_cmd_bench_allreduce(argc, argv);
    if (!strcmp(argv[1], "ckpt")) return larch_cmd_bench_ckpt(argc, argv);
    fprintf(stderr, "larch bench: unknown benchmark '%s' (valid: step, allreduce, ckpt)\n", argv[1]);
    return 2;
}
