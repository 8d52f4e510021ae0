/* examples/infer_checkpoint/main.c - inference from a larch checkpoint.
 *
 * The program makes its own checkpoint, then uses it as an inference
 * program would:
 *   1. builds a small CNN (conv2d, batchnorm, relu, maxpool, flatten, dense)
 *      with the typed builders, trains it a little with plain SGD steps on
 *      its flat buffers on synthetic 8x8 images of three kinds of bars, and
 *      records its logits on a batch (eval mode: batch norm uses its running
 *      statistics);
 *   2. saves a checkpoint with the public checkpoint API (collective: it
 *      needs a larch_comm, so MPI is initialized; one process is a world of
 *      size 1);
 *   3. finds the newest checkpoint of the directory, builds a fresh model of
 *      the same architecture (other initial values), loads the parameters
 *      and running statistics by name, runs a forward pass on the batch and
 *      checks that the logits equal the recorded ones bit for bit; prints
 *      the predicted classes;
 *   4. checks that loading into a model of another shape fails with
 *      LARCH_ERR_SHAPE and a message naming the tensor.
 *
 * Usage: infer_checkpoint [DIR]   (DIR: keep the checkpoint there; without
 * it a temporary directory is used and removed). Runs on any number of
 * ranks: every rank holds the whole model, the save is collective and every
 * rank loads and checks. Exits non-zero on any failure. */
#define _POSIX_C_SOURCE 200809L   /* mkdtemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "larch/checkpoint.h"
#include "larch/comm.h"
#include "larch/model.h"
#include "larch/rng.h"

enum { SIDE = 8, CLASSES = 3, TRAIN_N = 96, BATCH = 16, STEPS = 60, INFER_N = 9 };
#define LR 0.05f

/* The architecture; `out_units` other than CLASSES makes the mismatching model. */
static larch_status build_model(larch_model **out, int out_units, uint64_t seed)
{
    larch_model *m = NULL;
    larch_conv2d_opts conv = LARCH_CONV2D_DEFAULTS;
    conv.filters = 4;
    conv.padding = 1;
    larch_dense_opts dense = LARCH_DENSE_DEFAULTS;
    dense.units = out_units;
    larch_status s = larch_model_create(&m, (larch_shape){SIDE, SIDE, 1});
    if (!s) s = larch_model_add_conv2d(m, "conv1", NULL, &conv);
    if (!s) s = larch_model_add_batchnorm(m, "bn1", NULL, NULL);
    if (!s) s = larch_model_add_relu(m, "relu1", NULL);
    if (!s) s = larch_model_add_maxpool(m, "pool1", NULL, NULL);
    if (!s) s = larch_model_add_flatten(m, "flat", NULL);
    if (!s) s = larch_model_add_dense(m, "out", NULL, &dense);
    if (!s) s = larch_model_add_loss(m, NULL);
    if (!s) s = larch_model_finalize(m);
    if (!s) larch_model_init(m, seed);
    if (!s) s = larch_model_plan(m, TRAIN_N);
    if (s) {
        larch_model_free(m);
        m = NULL;
    }
    *out = m;
    return s;
}

/* 8x8 images of a horizontal bar (class 0), a vertical bar (1) or a
 * diagonal (2) at a random offset, plus noise. */
static void make_images(float *x, int32_t *y, int n, uint32_t stream)
{
    larch_rng r;
    larch_rng_init(&r, 77, LARCH_RNG_USER, stream, 0);
    for (int i = 0; i < n; i++) {
        float *img = x + (size_t)i * SIDE * SIDE;
        int cls = i % CLASSES, at = 2 + (int)larch_rng_below(&r, SIDE - 4);
        y[i] = cls;
        for (int u = 0; u < SIDE; u++)
            for (int v = 0; v < SIDE; v++) {
                int on = cls == 0 ? u == at : cls == 1 ? v == at : (u - v) == at - SIDE / 2;
                img[u * SIDE + v] = (on ? 1.0f : 0.0f) + 0.3f * larch_rng_normal(&r);
            }
    }
}

/* Eval-mode logits of the batch: a pointer into the model's arena. */
static const float *infer(larch_model *m, const larch_batch *b)
{
    larch_pass p = {.n = b->n, .train = 0, .seed = 1};
    larch_model_forward(m, b, &p);
    return larch_model_node_output(m, larch_model_n_layers(m));
}

static double train(larch_model *m, float *x, int32_t *y, double *first_loss)
{
    size_t n_floats;
    float *w = larch_model_flat_params(m, &n_floats);
    const float *g = larch_model_flat_grads(m, &n_floats);
    double loss = 0.0;
    for (int step = 0; step < STEPS; step++) {
        int first = (step * BATCH) % TRAIN_N;
        larch_batch b = {.n = BATCH, .x = x + (size_t)first * SIDE * SIDE, .label = {y + first}};
        larch_pass p = {.n = BATCH, .train = 1, .seed = 3, .step = (uint32_t)step, .sample0 = (uint32_t)first};
        larch_model_forward(m, &b, &p);              /* training mode: updates the running statistics */
        loss = larch_model_loss(m, &b, 1.0f / BATCH, NULL) / BATCH;
        if (step == 0) *first_loss = loss;
        larch_model_backward(m, &p);
        for (size_t i = 0; i < n_floats; i++) w[i] -= LR * g[i];
    }
    return loss;
}

static void remove_dir(const char *dir)
{
    char **paths = NULL;
    int n = larch_ckpt_list(dir, &paths);
    for (int i = 0; i < n; i++) {
        unlink(paths[i]);
        free(paths[i]);
    }
    free(paths);
    if (rmdir(dir) != 0) fprintf(stderr, "infer_checkpoint: note: could not remove %s\n", dir);
}

/* What rank 0 prints. */
#define SAY(...) do { if (comm.rank == 0) printf(__VA_ARGS__); } while (0)

int main(int argc, char **argv)
{
    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) {
        fprintf(stderr, "infer_checkpoint: %s\n", larch_errmsg());
        return 1;
    }
    int rc = 0, temp = argc < 2;
    char dir[512] = "", path[4300] = "", found[4300] = "", why[8800] = "";
    larch_model *a = NULL, *b = NULL, *c = NULL;
    float *x = malloc(sizeof(float) * (TRAIN_N + INFER_N) * SIDE * SIDE);
    int32_t *y = malloc(sizeof(int32_t) * (TRAIN_N + INFER_N));
    float *before = malloc(sizeof(float) * INFER_N * CLASSES);

    /* the checkpoint directory: the argument, or a fresh one made by rank 0 */
    larch_status s = x && y && before ? LARCH_OK : larch_fail(LARCH_ERR_NOMEM, "out of memory");
    if (!s && !temp && strlen(argv[1]) >= sizeof dir)
        s = larch_fail(LARCH_ERR_INVALID, "checkpoint directory name longer than %zu bytes: %s", sizeof dir - 1, argv[1]);
    if (!s && !temp) snprintf(dir, sizeof dir, "%s", argv[1]);
    if (!s && temp && comm.rank == 0) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/larch-infer-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(dir)) s = larch_fail(LARCH_ERR_IO, "cannot create a temporary directory %s", dir);
    }
    s = larch_comm_check(&comm, s);
    if (!s) s = larch_comm_bcast(&comm, dir, sizeof dir, 0);

    /* 1. train a model and record its logits on the inference batch */
    double loss0 = 0.0, loss1 = 0.0;
    if (!s) s = build_model(&a, CLASSES, 1);
    if (!s) {
        make_images(x, y, TRAIN_N, 1);
        make_images(x + (size_t)TRAIN_N * SIDE * SIDE, y + TRAIN_N, INFER_N, 2);   /* held out */
        loss1 = train(a, x, y, &loss0);
        SAY("trained %d steps: batch loss %.4f -> %.4f\n", STEPS, loss0, loss1);
    }
    larch_batch batch = {.n = INFER_N, .x = x + (size_t)TRAIN_N * SIDE * SIDE, .label = {y + TRAIN_N}};
    if (!s) memcpy(before, infer(a, &batch), sizeof(float) * INFER_N * CLASSES);
    s = larch_comm_check(&comm, s);

    /* 2. save: metadata of a run of STEPS steps of BATCH samples */
    if (!s) {
        larch_ckpt_meta meta = {0};
        char lineage[64];
        meta.step = meta.sched_step = meta.sched_total_steps = STEPS;
        meta.steps_per_epoch = TRAIN_N / BATCH;
        meta.epoch = meta.sampler_epoch = STEPS / meta.steps_per_epoch;
        meta.sampler_step = STEPS % meta.steps_per_epoch;
        meta.global_batch = BATCH;
        meta.samples_seen = (long)STEPS * BATCH;
        meta.rng_seed = 1;
        meta.world_size = comm.size;
        if (comm.rank == 0) larch_ckpt_new_run_id(meta.run_id, sizeof meta.run_id);
        s = larch_comm_bcast(&comm, meta.run_id, sizeof meta.run_id, 0);   /* every rank writes the same attributes */
        snprintf(lineage, sizeof lineage, "%s:0", meta.run_id);
        meta.lineage = lineage;
        if (!s) s = larch_ckpt_save(dir, 0, &comm, a, NULL, &meta, path, sizeof path);   /* NULL: no optimizer state */
        if (!s) SAY("saved %s\n", path);
    }
    larch_model_free(a);                           /* from here on only the file holds the trained values */
    a = NULL;

    /* 3. a fresh model of the same architecture loads it by name */
    if (!s) s = larch_ckpt_latest(dir, found, sizeof found);
    if (!s && strcmp(found, path) != 0) s = larch_fail(LARCH_ERR_INVALID, "newest checkpoint is %s, not %s", found, path);
    larch_ckpt_meta got;
    if (!s) s = larch_ckpt_read_meta(found, &got);
    if (!s) {
        SAY("newest checkpoint of %s: step %ld, epoch %ld, written by larch %s on %d rank(s)\n", dir, got.step, got.epoch,
            got.larch_version, got.world_size);
        larch_ckpt_meta_free(&got);
    }
    if (!s) s = build_model(&b, CLASSES, 999);
    if (!s && memcmp(infer(b, &batch), before, sizeof(float) * INFER_N * CLASSES) == 0)
        s = larch_fail(LARCH_ERR_INVALID, "the fresh model already gives the trained logits: the check would prove nothing");
    s = larch_comm_check(&comm, s);
    if (!s) s = larch_ckpt_load(found, &comm, b, NULL, NULL);   /* collective; NULL: no optimizer */
    if (!s) {
        const float *logits = infer(b, &batch);
        int same = memcmp(logits, before, sizeof(float) * INFER_N * CLASSES) == 0, correct = 0;
        SAY("inference on %d held-out images (logits bit-identical to the trained model's: %s)\n", INFER_N,
            same ? "yes" : "NO");
        for (int i = 0; i < INFER_N; i++) {
            int best = 0;
            for (int k = 1; k < CLASSES; k++)
                if (logits[i * CLASSES + k] > logits[i * CLASSES + best]) best = k;
            correct += best == batch.label[0][i];
            SAY("  image %d: predicted class %d (label %d), logits %+.4f %+.4f %+.4f\n", i, best, batch.label[0][i],
                logits[i * CLASSES], logits[i * CLASSES + 1], logits[i * CLASSES + 2]);
        }
        SAY("  %d of %d predicted correctly\n", correct, INFER_N);
        if (!same) s = larch_fail(LARCH_ERR_INVALID, "the loaded model's logits differ from the trained model's");
    }
    s = larch_comm_check(&comm, s);

    /* 4. a model whose output layer has another shape is refused */
    if (!s) s = build_model(&c, CLASSES + 1, 1);
    s = larch_comm_check(&comm, s);
    if (!s) {
        larch_status bad = larch_ckpt_load(found, &comm, c, NULL, NULL);
        snprintf(why, sizeof why, "%s", larch_errmsg());
        SAY("loading into a model with 4 output units: %s: %s\n", larch_status_name(bad), why);
        if (bad != LARCH_ERR_SHAPE || !strstr(why, "/params/out/weight") || !strstr(why, "(3, 64)"))
            s = larch_fail(LARCH_ERR_INVALID, "expected LARCH_ERR_SHAPE naming tensor /params/out/weight and its shape, got "
                           "%s: %s", larch_status_name(bad), why);
    }
    s = larch_comm_check(&comm, s);

    if (s) {
        if (comm.rank == 0) fprintf(stderr, "infer_checkpoint: FAILED: %s\n", larch_errmsg());
        rc = 1;
    } else {
        SAY("infer_checkpoint: OK\n");
    }
    if (temp && dir[0] && comm.rank == 0) remove_dir(dir);
    larch_model_free(a);
    larch_model_free(b);
    larch_model_free(c);
    free(x);
    free(y);
    free(before);
    larch_comm_finalize(&comm);
    return rc;
}
