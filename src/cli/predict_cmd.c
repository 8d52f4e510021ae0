/* predict_cmd.c - `larch predict`: the eval-mode outputs (logits, or a named
 * layer's output) of a checkpoint's model for every sample of an HDF5 split,
 * in file order. Each MPI rank computes a contiguous part of the samples
 * (normalized and batched by the same loader as `larch eval`, without
 * shuffling or augmentation); the parts are gathered and rank 0 writes
 * OUT.h5 (/outputs, /labels). docs/backbones.md. */
#include "cli/cli.h"
#include "core/blas.h"
#include "core/threads.h"
#include "io/outputs_h5.h"
#include "larch/larch.h"
#include "larch/checkpoint.h"
#include "larch/train.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SETS 256

static void usage(FILE *f)
{
    fprintf(f, "usage: larch predict CONFIG --checkpoint FILE --data FILE.h5[:/group] --out OUT.h5 [--layer NAME]\n"
               "                     [--batch N] [--set key=value ...]\n"
               "  eval-mode outputs of CONFIG's model with the checkpoint's parameters for every sample of the\n"
               "  split (FILE.h5 alone: its /test split), in file order; under mpirun each rank takes a\n"
               "  contiguous part. OUT.h5 holds /outputs (float32, (N, C) or (N, H, W, C)) and /labels.\n"
               "  --layer NAME  that layer's output instead of the last layer's\n"
               "  --batch N     samples per forward pass and rank (default train.eval_batch)\n"
               "  Normalization: data.mean/data.std of CONFIG when set, else the split's own attributes.\n");
}

/* data.mean/data.std of the config replace the split's own (as in training). */
static larch_status config_norm(const larch_node *cfg, larch_dataset *ds)
{
    const larch_node *d = larch_map_get(cfg, "data");
    double m[LARCH_NORM_MAX + 1], sd[LARCH_NORM_MAX + 1];
    int nm = larch_cfg_floats(d, "mean", m, LARCH_NORM_MAX + 1), ns = larch_cfg_floats(d, "std", sd, LARCH_NORM_MAX + 1);
    if (nm != ns) return larch_fail(LARCH_ERR_CONFIG, "data.mean has %d values and data.std %d (give both, as many)", nm, ns);
    if (!nm) return LARCH_OK;
    if (nm > LARCH_NORM_MAX) return larch_fail(LARCH_ERR_CONFIG, "data.mean: more than %d values", LARCH_NORM_MAX);
    float mf[LARCH_NORM_MAX], sf[LARCH_NORM_MAX];
    for (int c = 0; c < nm; c++) { mf[c] = (float)m[c]; sf[c] = (float)sd[c]; }
    return larch_dataset_set_norm(ds, mf, sf, nm);
}

/* Samples [lo, hi) of ds through the model, the outputs of `node` into out. */
static larch_status run_part(larch_model *m, const larch_dataset *ds, int lo, int hi, int node, int batch,
                             uint64_t seed, float *out)
{
    if (hi <= lo) return LARCH_OK;
    larch_dataset view = *ds;                       /* a window on the split: the loader reads it in order */
    size_t dim = larch_shape_size(ds->shape);
    view.n = hi - lo;
    if (view.u8) view.u8 += (size_t)lo * dim;
    if (view.f32) view.f32 += (size_t)lo * dim;
    if (view.labels) view.labels += lo;
    view.n_derived = 0;
    view.n_targets = 0;
    view.targets = NULL;
    larch_loader_opts lo_opts = {.global_batch = batch, .rank = 0, .world = 1, .shuffle = 0, .drop_last = 0,
                                 .seed = seed, .flip = 0, .crop_pad = 0, .prefetch = 0};
    larch_loader *l = NULL;
    larch_status s = larch_loader_create(&l, &view, &lo_opts);
    if (s) return s;
    size_t per = larch_shape_size(larch_model_node_shape(m, node)), done = 0;
    int steps = larch_loader_steps(l);
    for (int k = 0; k < steps; k++) {
        const larch_batch *b = larch_loader_next(l, NULL, NULL);
        larch_pass p = {.n = b->n, .train = 0, .seed = seed};
        larch_model_forward(m, b, &p);
        memcpy(out + done * per, larch_model_node_output(m, node), (size_t)b->n * per * sizeof *out);
        done += (size_t)b->n;
    }
    larch_loader_free(l);
    if (done != (size_t)(hi - lo))
        return larch_fail(LARCH_ERR_INVALID, "predict: %zu of %d samples computed", done, hi - lo);
    return LARCH_OK;
}


/* The model's last layer: the layers larch_model_finalize appends for loss
 * state (learned loss weights, the centers of center losses) are not its
 * output. */
static int last_node(const larch_model *m)
{
    int node = larch_model_n_layers(m);
    while (node > 1 && (strcmp(larch_layer_type(larch_model_layer(m, node - 1)), "loss_weights") == 0 ||
                        strcmp(larch_layer_type(larch_model_layer(m, node - 1)), "loss_centers") == 0))
        node--;
    return node;
}

int larch_cmd_predict(int argc, char **argv)
{
    const char *config = NULL, *ckpt = NULL, *data = NULL, *out = NULL, *layer = NULL, *sets[MAX_SETS];
    int n_sets = 0, batch = 0;
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        int next = larch_cli_sets(argc, argv, i, sets, &n_sets, MAX_SETS);
        if (next < 0) return 2;
        if (next > i) { i = next; continue; }
        const char **opt = !strcmp(argv[i], "--checkpoint") ? &ckpt : !strcmp(argv[i], "--data") ? &data
                         : !strcmp(argv[i], "--out") ? &out : !strcmp(argv[i], "--layer") ? &layer : NULL;
        if (opt && i + 1 < argc) { *opt = argv[i + 1]; i += 2; continue; }
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[i + 1], &end, 10);
            if (*end || v < 1 || v > (1 << 20)) { fprintf(stderr, "larch predict: --batch %s: expected 1 to 1048576\n", argv[i + 1]); return 2; }
            batch = (int)v;
            i += 2;
            continue;
        }
        if (argv[i][0] == '-' || config) {
            fprintf(stderr, "larch predict: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        config = argv[i++];
    }
    if (!config || !ckpt || !data || !out) { usage(stderr); return 2; }

    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) { larch_cli_error("MPI"); return 1; }
    larch_node *cfg = NULL;
    larch_model *m = NULL;
    larch_dataset ds;
    memset(&ds, 0, sizeof ds);
    float *y = NULL;
    int node = -1, n = 0;
    larch_shape in_shape = {0, 0, 0}, out_shape = {0, 0, 0};
    larch_status s = larch_run_load(config, sets, n_sets, &cfg);
    int classes;
    if (!s) s = larch_run_input(cfg, &in_shape, &classes);
    uint64_t seed = s ? 0 : (uint64_t)larch_cfg_int(larch_map_get(cfg, "train"), "seed");
    if (!s) s = larch_model_build(&m, in_shape, larch_run_layers(cfg), larch_map_get(cfg, "loss"),
                                  larch_map_get(cfg, "regularization"), seed);
    if (!s) {
        node = layer ? larch_model_node(m, layer) : last_node(m);
        if (node <= 0)
            s = larch_fail(LARCH_ERR_INVALID, "--layer %s: %s has no layer of that name", layer, config);
        else
            out_shape = larch_model_node_shape(m, node);
    }
    if (!s) {
        long t = larch_cfg_int(larch_map_get(cfg, "train"), "threads");
        long cores = sysconf(_SC_NPROCESSORS_ONLN) / (comm.local_size > 0 ? comm.local_size : 1);
        larch_threads_set(t > 0 ? (int)t : cores > 0 ? (int)cores : 1);
        if (!batch) batch = (int)larch_cfg_int(larch_map_get(cfg, "train"), "eval_batch");
        if (batch < 1) batch = 256;
    }
    s = larch_comm_check(&comm, s);
    if (!s) s = larch_ckpt_load(ckpt, &comm, m, NULL, NULL);   /* collective: the same model's tensors, or an error */
    if (!s) {
        const char *colon = strstr(data, ".h5:");
        s = larch_dataset_h5_read(data, colon ? "predict" : "test", &ds);
        if (!s) s = config_norm(cfg, &ds);
        if (!s && (ds.shape.h != in_shape.h || ds.shape.w != in_shape.w || ds.shape.c != in_shape.c))
            s = larch_fail(LARCH_ERR_SHAPE, "--data %s: samples are %dx%dx%d (h x w x c) but the model input of %s is %dx%dx%d",
                           data, ds.shape.h, ds.shape.w, ds.shape.c, config, in_shape.h, in_shape.w, in_shape.c);
        n = ds.n;
        size_t per = larch_shape_size(out_shape);
        if (!s && (double)n * (double)per > (double)INT_MAX)
            s = larch_fail(LARCH_ERR_INVALID, "--data %s: %d samples x %zu outputs is more than 2^31-1 values; "
                           "split the file or choose a smaller --layer", data, n, per);
        if (!s && !(y = calloc((size_t)n * per + 1, sizeof *y))) s = larch_fail(LARCH_ERR_NOMEM, "outputs (%d x %zu)", n, per);
    }
    s = larch_comm_check(&comm, s);
    int lo = (int)((long)n * comm.rank / comm.size), hi = (int)((long)n * (comm.rank + 1) / comm.size);
    if (!s) s = larch_model_plan(m, batch);
    if (!s) s = run_part(m, &ds, lo, hi, node, batch, seed, y + (size_t)lo * larch_shape_size(out_shape));
    s = larch_comm_check(&comm, s);
    if (!s && comm.size > 1) {
        int *counts = malloc(2 * (size_t)comm.size * sizeof *counts);
        if (!counts) s = larch_fail(LARCH_ERR_NOMEM, "counts");
        int per = (int)larch_shape_size(out_shape);
        for (int r = 0; !s && r < comm.size; r++) {
            int a = (int)((long)n * r / comm.size), b = (int)((long)n * (r + 1) / comm.size);
            counts[r] = (b - a) * per;
            counts[comm.size + r] = a * per;
        }
        if (!s) s = larch_comm_allgatherv_f32(&comm, y, counts, counts + comm.size);
        free(counts);
        s = larch_comm_check(&comm, s);
    }
    if (!s && comm.rank == 0)
        s = larch_outputs_h5_write(out, y, n, out_shape, ds.labels, layer ? layer : larch_layer_name(larch_model_layer(m, node - 1)),
                                   ckpt, data);
    s = larch_comm_check(&comm, s);
    if (!s && comm.rank == 0) {
        long correct = 0;
        int per = (int)larch_shape_size(out_shape);
        int logits = node == last_node(m) && per > 1;   /* the last layer: scored against the labels */
        for (int i = 0; ds.labels && logits && i < n; i++) {
            const float *row = y + (size_t)i * per;
            int best = 0;
            for (int j = 1; j < per; j++) if (row[j] > row[best]) best = j;
            correct += best == ds.labels[i];
        }
        printf("predict: %d sample(s) of %s through %s on %d rank(s) -> %s: outputs (%d, %d, %d) per sample",
               n, data, layer ? layer : "the last layer", comm.size, out, out_shape.h, out_shape.w, out_shape.c);
        if (ds.labels && logits && n > 0) printf(", argmax accuracy %.4f", (double)correct / n);
        printf("\n");
    } else if (s && comm.rank == 0) {
        larch_cli_error("predict");
    }
    fflush(stdout);
    free(y);
    larch_dataset_free(&ds);
    larch_model_free(m);
    larch_node_free(cfg);
    larch_comm_finalize(&comm);
    return s ? 1 : 0;
}
