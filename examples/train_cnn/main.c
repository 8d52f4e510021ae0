/* train_cnn - train a small CNN from C with the typed API, data-parallel.
 *
 *   mpiexec -n 2 examples/train_cnn [OUT_DIR]
 *
 * Builds a convolutional network with the layer builders (larch/model.h),
 * generates a synthetic image set (larch/data.h), configures LAMB with a
 * parameter group and a cosine schedule with warmup (larch/optim.h), and
 * trains with larch_fit (larch/train.h) on however many ranks it runs on:
 * each rank builds the same model, rank 0's parameters are broadcast, and
 * the global batch is split between the ranks. With OUT_DIR the run writes
 * OUT_DIR/metrics.jsonl, OUT_DIR/config.yaml (the spec's record) and a
 * checkpoint.
 *
 * Exits 0 only if training worked: the test loss after training is below
 * 0.7 of the untrained model's, and the test accuracy above 0.8.
 */
#include "larch/comm.h"
#include "larch/data.h"
#include "larch/model.h"
#include "larch/optim.h"
#include "larch/train.h"

#include <stdio.h>

#define CLASSES 4

/* conv(8) - relu - maxpool - conv(16) - relu - global average - dense(4),
 * softmax cross-entropy, L2 on the weights. */
static larch_status build_cnn(larch_model **out, larch_shape input, uint64_t seed)
{
    larch_model *m = NULL;
    larch_status s = larch_model_create(&m, input);
    larch_conv2d_opts c1 = LARCH_CONV2D_DEFAULTS, c2 = LARCH_CONV2D_DEFAULTS;
    c1.filters = 8;
    c1.padding = 1;
    c2.filters = 16;
    c2.padding = 1;
    larch_pool_opts pool = LARCH_POOL_DEFAULTS;
    larch_dense_opts head = LARCH_DENSE_DEFAULTS;
    head.units = CLASSES;
    larch_loss_opts ce = LARCH_LOSS_DEFAULTS;
    larch_penalty_opts l2 = LARCH_PENALTY_DEFAULTS;
    l2.type = LARCH_PENALTY_L2;
    l2.coef = 1e-4f;
    if (!s) s = larch_model_add_conv2d(m, "conv1", NULL, &c1);
    if (!s) s = larch_model_add_relu(m, "relu1", NULL);
    if (!s) s = larch_model_add_maxpool(m, "pool1", NULL, &pool);
    if (!s) s = larch_model_add_conv2d(m, "conv2", NULL, &c2);
    if (!s) s = larch_model_add_relu(m, "relu2", NULL);
    if (!s) s = larch_model_add_flatten(m, "flat", NULL);
    if (!s) s = larch_model_add_dense(m, "out", NULL, &head);
    if (!s) s = larch_model_add_loss(m, &ce);
    if (!s) s = larch_model_add_penalty(m, &l2);
    if (!s) s = larch_model_finalize(m);
    if (!s) larch_model_init(m, seed);
    if (s) { larch_model_free(m); m = NULL; }
    *out = m;
    return s;
}

int main(int argc, char **argv)
{
    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) {
        fprintf(stderr, "train_cnn: %s\n", larch_errmsg());
        return 1;
    }
    const char *out_dir = argc > 1 ? argv[1] : NULL;
    FILE *log = comm.rank == 0 ? stdout : NULL;

    /* 1. data: 4 Gaussian clusters of 8x8 single-channel images */
    larch_synth_opts so = {.n = 2048, .shape = {8, 8, 1}, .classes = CLASSES, .noise = 0.7f, .seed = 7, .split = 0};
    larch_dataset train = {0}, test = {0};
    larch_status s = larch_dataset_synthetic(&so, &train);
    so.n = 512;
    so.split = 1;
    if (!s) s = larch_dataset_synthetic(&so, &test);

    /* 2. the model, the same on every rank (larch_fit broadcasts rank 0's) */
    larch_model *m = NULL;
    if (!s) s = build_cnn(&m, train.shape, 42);

    /* 3. optimizer, schedule and run settings, all typed */
    static const larch_param_group groups[] = {
        /* the classifier learns at half the rate, without weight decay */
        {"out.*", LARCH_ROLES_ALL, 0.5, 0.0, LARCH_ADAPT_ROLE, 0, 0},
    };
    larch_fit_spec spec = larch_fit_defaults();
    spec.model = m;
    spec.train_set = &train;
    spec.test_set = &test;
    spec.optim = larch_optim_defaults_for(LARCH_OPT_LAMB);
    spec.optim.lr = 0.02;
    spec.optim.groups = groups;
    spec.optim.n_groups = 1;
    spec.sched.kind = LARCH_SCHED_COSINE;
    spec.sched.warmup_epochs = 0.5;
    spec.train.batch_size = 64;                 /* global: 32 per rank on 2 ranks */
    spec.train.epochs = 3;
    spec.train.seed = 42;
    spec.train.log_every = 16;
    spec.train.threads = 1;
    spec.train.eval_batch = 256;
    spec.checkpoint.at_end = out_dir != NULL;   /* into OUT_DIR/checkpoints */
    larch_train_opts opts = {.out_dir = out_dir, .log = log};

    /* 4. the untrained model's test loss, then training */
    larch_train_result before = {0}, after = {0};
    larch_train_opts eval = {.log = NULL, .eval_only = 1};
    if (!s) s = larch_fit(&spec, &comm, &eval, &before);
    if (!s) s = larch_fit(&spec, &comm, &opts, &after);

    int ok = 0;
    if (s) {
        fprintf(stderr, "train_cnn (rank %d): %s\n", comm.rank, larch_errmsg());
    } else {
        ok = after.test_loss < 0.7 * before.test_loss && after.test_accuracy > 0.8;
        if (log)
            printf("train_cnn: %d rank(s), %ld steps: test loss %.4f -> %.4f, test accuracy %.4f -> %.4f, final "
                   "training loss %.4f: %s\n", comm.size, after.steps, before.test_loss, after.test_loss,
                   before.test_accuracy, after.test_accuracy, after.final_loss,
                   ok ? "trained" : "did not train (want a test loss below 0.7 of the initial, accuracy above 0.8)");
    }
    larch_model_free(m);
    larch_dataset_free(&train);
    larch_dataset_free(&test);
    larch_comm_finalize(&comm);
    return ok ? 0 : 1;
}
