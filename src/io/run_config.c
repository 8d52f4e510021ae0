/* run_config.c - the schema of an experiment config and its loading
 * (file, then --set overrides, then validation with defaults filled in). */
#include "larch/train.h"
#include "larch/optim.h"
#include "larch/data.h"

#include <string.h>

static const larch_key train_keys[] = {
    {"batch_size", LARCH_T_INT, "256", 1, 1 << 24, NULL, NULL, "global batch size (all ranks together)"},
    {"epochs", LARCH_T_INT, "1", 1, 1000000, NULL, NULL, "epochs to train"},
    {"max_steps", LARCH_T_INT, "0", 0, 1L << 40, NULL, NULL, "stop after this many steps (0 = no limit)"},
    {"seed", LARCH_T_INT, "42", 0, 4294967295.0, NULL, NULL, "seed of every random draw"},
    {"log_every", LARCH_T_INT, "50", 1, 1L << 40, NULL, NULL, "steps between training records"},
    {"eval_every", LARCH_T_INT, "0", 0, 1L << 40, NULL, NULL, "steps between evaluations (0 = each epoch)"},
    {"eval_batch", LARCH_T_INT, "1000", 1, 1 << 24, NULL, NULL, "global batch size of evaluation"},
    {"threads", LARCH_T_INT, "0", 0, 1024, NULL, NULL, "OpenBLAS threads per rank (0 = OPENBLAS_NUM_THREADS or cores / ranks on the node)"},
    {"accumulate", LARCH_T_INT, "1", 1, 4096, NULL, NULL, "micro-batches per optimizer step"},
    {"stop_on_nan", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "stop when the loss is not finite"},
    {"progress_seconds", LARCH_T_FLOAT, "1", 0, 3600, NULL, NULL, "at most one progress line per this many seconds"},
    {0}};

static const larch_key augment_keys[] = {
    {"flip", LARCH_T_BOOL, "false", 0, 0, NULL, NULL, "random horizontal flip"},
    {"crop_pad", LARCH_T_INT, "0", 0, 64, NULL, NULL, "random crop after zero padding by this many pixels"},
    {0}};

static const larch_key synthetic_keys[] = {
    {"n_train", LARCH_T_INT, "4096", 1, 1 << 26, NULL, NULL, "training samples"},
    {"n_test", LARCH_T_INT, "1024", 1, 1 << 26, NULL, NULL, "test samples"},
    {"classes", LARCH_T_INT, "10", 2, 1 << 16, NULL, NULL, "number of classes"},
    {"shape", LARCH_T_INTS, "[1, 1, 32]", 1, 1 << 16, NULL, NULL, "per-sample shape [h, w, c]"},
    {"noise", LARCH_T_FLOAT, "0.5", 0, 100, NULL, NULL, "within-class spread"},
    {0}};

static const larch_key data_keys[] = {
    {"name", LARCH_T_ENUM, "fashion-mnist", 0, 0, "fashion-mnist|synthetic", NULL, "dataset"},
    {"dir", LARCH_T_STRING, "/usr/share/datasets/fashion-mnist", 0, 0, NULL, NULL, "dataset directory"},
    {"prefetch", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "assemble the next batch on a background thread"},
    {"augment", LARCH_T_MAP, "{}", 0, 0, NULL, augment_keys, "training augmentation"},
    {"synthetic", LARCH_T_MAP, "{}", 0, 0, NULL, synthetic_keys, "synthetic dataset settings"},
    {0}};

static const larch_key dist_keys[] = {
    {"bucket_mb", LARCH_T_FLOAT, "25", 0.001, 65536, NULL, NULL, "gradient bucket size in MiB (as PyTorch DDP)"},
    {"first_bucket_mb", LARCH_T_FLOAT, "1", 0.001, 65536, NULL, NULL, "size of the first bucket (the last layers), MiB"},
    {"overlap", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "start each bucket's allreduce during backward"},
    {"compress", LARCH_T_ENUM, "none", 0, 0, "none|fp16|bf16", NULL, "16-bit gradients on the wire"},
    {"shard_optimizer", LARCH_T_BOOL, "false", 0, 0, NULL, NULL,
     "ZeRO stage 1: each rank keeps optimizer state for its slice of the parameters"},
    {0}};

static const larch_key checkpoint_keys[] = {
    {"dir", LARCH_T_STRING, "", 0, 0, NULL, NULL, "checkpoint directory (empty: <output dir>/checkpoints)"},
    {"every_steps", LARCH_T_INT, "0", 0, 1L << 40, NULL, NULL, "save every this many steps (0 = only at the end and on preemption)"},
    {"keep", LARCH_T_INT, "3", 0, 1000000, NULL, NULL, "newest checkpoints kept in dir (0 = all)"},
    {"at_end", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "save when training ends"},
    {"resume", LARCH_T_STRING, "", 0, 0, NULL, NULL,
     "resume from this checkpoint file, or 'auto' for the newest in dir (none: start fresh)"},
    {0}};

const larch_key larch_run_keys[] = {
    {"train", LARCH_T_MAP, "{}", 0, 0, NULL, train_keys, "training loop"},
    {"optim", LARCH_T_MAP, "{}", 0, 0, NULL, larch_optim_keys, "optimizer"},
    {"sched", LARCH_T_MAP, "{}", 0, 0, NULL, larch_sched_keys, "learning-rate schedule"},
    {"data", LARCH_T_MAP, "{}", 0, 0, NULL, data_keys, "dataset"},
    {"dist", LARCH_T_MAP, "{}", 0, 0, NULL, dist_keys, "data-parallel communication"},
    {"checkpoint", LARCH_T_MAP, "{}", 0, 0, NULL, checkpoint_keys, "saving and resuming (docs/checkpoints.md)"},
    {"model", LARCH_T_ANY, NULL, 0, 0, NULL, NULL, "list of layers"},
    {"loss", LARCH_T_ANY, "[]", 0, 0, NULL, NULL, "loss or list of losses (default softmax_ce on the last layer)"},
    {"regularization", LARCH_T_ANY, "[]", 0, 0, NULL, NULL, "list of penalties"},
    {0}};

larch_status larch_run_load(const char *path, const char *const *sets, int n_sets, larch_node **out)
{
    larch_node *root = NULL;
    *out = NULL;
    larch_status s = larch_cfg_load(path, &root);
    if (s) return s;
    for (int i = 0; !s && i < n_sets; i++) s = larch_cfg_set(root, sets[i]);
    if (!s && root->kind != LARCH_NODE_MAP)
        s = larch_fail(LARCH_ERR_CONFIG, "%s: the config must be a mapping of sections (train, optim, data, model, ...)", path);
    if (!s) s = larch_optim_defaults(larch_map_get(root, "optim"));
    if (!s) s = larch_cfg_check(root, "", larch_run_keys, NULL);
    if (s) { larch_node_free(root); return s; }
    *out = root;
    return LARCH_OK;
}

larch_status larch_run_input(const larch_node *cfg, larch_shape *shape, int *classes)
{
    const larch_node *d = larch_map_get(cfg, "data");
    if (strcmp(larch_cfg_str(d, "name"), "synthetic") == 0) {
        const larch_node *s = larch_map_get(d, "synthetic");
        long v[3];
        if (larch_cfg_ints(s, "shape", v, 3) != 3)
            return larch_fail(LARCH_ERR_CONFIG, "data.synthetic.shape: expected [h, w, c]");
        *shape = (larch_shape){(int)v[0], (int)v[1], (int)v[2]};
        *classes = (int)larch_cfg_int(s, "classes");
        return LARCH_OK;
    }
    *shape = (larch_shape){28, 28, 1};           /* Fashion-MNIST */
    *classes = 10;
    return LARCH_OK;
}

larch_status larch_run_steps(const larch_node *cfg, long *steps_per_epoch, long *total_steps)
{
    const larch_node *d = larch_map_get(cfg, "data"), *t = larch_map_get(cfg, "train");
    int n = 0;
    if (strcmp(larch_cfg_str(d, "name"), "synthetic") == 0) {
        n = (int)larch_cfg_int(larch_map_get(d, "synthetic"), "n_train");
    } else {
        larch_status s = larch_dataset_fmnist_count(larch_cfg_str(d, "dir"), 1, &n);
        if (s) return s;
    }
    long batch = larch_cfg_int(t, "batch_size"), max_steps = larch_cfg_int(t, "max_steps");
    if (n < batch)
        return larch_fail(LARCH_ERR_CONFIG, "train.batch_size: %ld is larger than the %d training samples", batch, n);
    *steps_per_epoch = n / batch;
    *total_steps = larch_cfg_int(t, "epochs") * *steps_per_epoch;
    if (max_steps > 0 && max_steps < *total_steps) *total_steps = max_steps;
    return LARCH_OK;
}
