/* run_config.c - the schema of an experiment config and its loading
 * (file, then --set overrides, then validation with defaults filled in,
 * then the checks across keys that need no data and no world size), the
 * warnings about keys that are set but have no effect, and what a validated
 * config implies: the datasets (class subsets and derived label sets), the
 * layer list, the input shape, the step counts. */
#include "larch/train.h"
#include "larch/optim_cfg.h"
#include "larch/data.h"
#include "larch/rng.h"
#include "io/attributes.h"
#include "io/cfg_internal.h"
#include "train/quant_cfg.h"
#include "train/groups.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

static const larch_key train_keys[] = {
    {"batch_size", LARCH_T_INT, "256", 1, 1 << 24, NULL, NULL, "global batch size (all ranks together)"},
    {"epochs", LARCH_T_INT, "1", 1, 1000000, NULL, NULL, "epochs to train"},
    {"max_steps", LARCH_T_INT, "0", 0, 1L << 40, NULL, NULL, "stop after this many steps (0 = no limit)"},
    {"seed", LARCH_T_INT, "42", 0, 4294967295.0, NULL, NULL, "seed of every random draw"},
    {"log_every", LARCH_T_INT, "50", 1, 1L << 40, NULL, NULL, "steps between training records"},
    {"eval_every", LARCH_T_INT, "0", 0, 1L << 40, NULL, NULL, "steps between evaluations (0 = each epoch)"},
    {"eval_batch", LARCH_T_INT, "1000", 1, 1 << 24, NULL, NULL, "global batch size of evaluation"},
    {"eval_samples", LARCH_T_INT, "0", 0, 2147483647L, NULL, NULL, "score the first N test samples (0 = the whole test split)"},
    {"threads", LARCH_T_INT, "0", 0, 1024, NULL, NULL, "OpenBLAS threads per rank (0 = OPENBLAS_NUM_THREADS or cores / ranks on the node)"},
    {"accumulate", LARCH_T_INT, "1", 1, 4096, NULL, NULL, "micro-batches per optimizer step"},
    {"conv_backend", LARCH_T_ENUM, "auto", 0, 0, "auto|onednn|openblas", NULL,
     "how conv2d layers compute: oneDNN's primitives, im2col + OpenBLAS, or auto (oneDNN where measured faster, when "
     "built with it); the environment's LARCH_CONV_BACKEND overrides it (docs/performance.md)"},
    {"stop_on_nan", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "stop when the loss is not finite"},
    {"progress_seconds", LARCH_T_FLOAT, "1", 0, 3600, NULL, NULL, "at most one progress line per this many seconds"},
    {"precision", LARCH_T_ENUM, "fp32", 0, 0, "fp32|bf16", NULL,
     "arithmetic of dense and conv2d products: fp32, or bf16 inputs summed in float (float master weights; needs oneDNN)"},
    {0}};

static const larch_key augment_keys[] = {
    {"flip", LARCH_T_BOOL, "false", 0, 0, NULL, NULL, "random horizontal flip"},
    {"crop_pad", LARCH_T_INT, "0", 0, 64, NULL, NULL, "random crop after zero padding by this many pixels"},
    {"resized_crop", LARCH_T_BOOL, "false", 0, 0, NULL, NULL,
     "random resized crop (torchvision's RandomResizedCrop), resized back to the input size; not with crop_pad"},
    {"scale", LARCH_T_FLOATS, "[0.08, 1.0]", 1e-6, 1, NULL, NULL, "resized_crop: the crop's area fraction [lo, hi]"},
    {"ratio", LARCH_T_FLOATS, "[0.75, 1.3333333333]", 1e-3, 1e3, NULL, NULL, "resized_crop: aspect ratio w/h [lo, hi], log-uniform"},
    {0}};

static const larch_key synthetic_keys[] = {
    {"n_train", LARCH_T_INT, "4096", 1, 1 << 26, NULL, NULL, "training samples"},
    {"n_test", LARCH_T_INT, "1024", 1, 1 << 26, NULL, NULL, "test samples"},
    {"classes", LARCH_T_INT, "10", 2, 1 << 16, NULL, NULL, "number of classes"},
    {"shape", LARCH_T_INTS, "[1, 1, 32]", 1, 1 << 16, NULL, NULL, "per-sample shape [h, w, c]"},
    {"noise", LARCH_T_FLOAT, "0.5", 0, 100, NULL, NULL, "within-class spread"},
    {"regression", LARCH_T_INT, "0", 0, 4096, NULL, NULL,
     "K > 0: also K float regression targets per sample, a fixed random linear map of the features plus noise "
     "(scored by a loss with type: mse, on: targets)"},
    {"regression_noise", LARCH_T_FLOAT, "0.1", 0, 100, NULL, NULL, "standard deviation of the regression targets' noise"},
    {"toy2d", LARCH_T_ENUM, "none", 0, 0, "none|moons|ring", NULL,
     "a generated 2-D density instead of the Gaussian clusters (shape [1, 1, 2]): moons, two interleaved half circles "
     "(label: the moon); ring, `classes` Gaussians evenly on the circle of radius 2; noise is their spread"},
    {"seed", LARCH_T_INT, "-1", -1, 4294967295.0, NULL, NULL,
     "seed of the generated data (clusters, regression map, samples); -1 = train.seed"},
    {"draw", LARCH_T_INT, "0", 0, 1 << 30, NULL, NULL,
     "the training split's draw: 0 the usual one, d > 0 an independent fresh sample of the same distribution "
     "(docs/biasvar.md)"},
    {0}};

static const larch_key data_keys[] = {
    {"name", LARCH_T_ENUM, "fashion-mnist", 0, 0, "fashion-mnist|synthetic|hdf5", NULL,
     "dataset: Fashion-MNIST's IDX files, generated clusters, or an HDF5 dataset file (docs/datasets.md)"},
    {"dir", LARCH_T_STRING, "/usr/share/datasets/fashion-mnist", 0, 0, NULL, NULL, "dataset directory"},
    {"path", LARCH_T_STRING, "", 0, 0, NULL, NULL, "hdf5: the file with groups /train and /test (larch data convert)"},
    {"train", LARCH_T_STRING, "", 0, 0, NULL, NULL,
     "hdf5: the training split as its own file (its root holds the split) or file.h5:/group; overrides path"},
    {"test", LARCH_T_STRING, "", 0, 0, NULL, NULL, "hdf5: the test split, as data.train"},
    {"mean", LARCH_T_FLOATS, "[]", -1e30, 1e30, NULL, NULL,
     "normalization: x' = (x/255 - mean[c]) / std[c] (1 or C values; [] = the dataset's own)"},
    {"std", LARCH_T_FLOATS, "[]", 1e-30, 1e30, NULL, NULL, "normalization: see data.mean (as many values)"},
    {"in_memory", LARCH_T_ENUM, "auto", 0, 0, "auto|true|false", NULL,
     "hdf5: hold the samples in memory, or read each batch's from the file (false); auto: in memory when the "
     "file takes at most a quarter of the available memory per rank of this node"},
    {"prefetch", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "assemble the next batch on a background thread"},
    {"augment", LARCH_T_MAP, "{}", 0, 0, NULL, augment_keys, "training augmentation"},
    {"synthetic", LARCH_T_MAP, "{}", 0, 0, NULL, synthetic_keys, "synthetic dataset settings"},
    {"classes", LARCH_T_INTS, "[]", 0, 65535, NULL, NULL,
     "[lo, hi]: keep only classes lo..hi (relabelled 0..hi-lo) in both splits ([] = all)"},
    {"train_per_class", LARCH_T_INT, "0", 0, 1 << 30, NULL, NULL,
     "keep at most this many training samples per class, the first in file order (0 = all)"},
    {"attributes", LARCH_T_STRING, "", 0, 0, NULL, NULL,
     "zero-shot: a class-attribute table (CSV, docs/fewshot.md) whose row for each sample's class becomes its float "
     "targets (train an attribute head with a loss type: mse, on: targets); applied before data.classes"},
    {"sampler", LARCH_T_ENUM, "shuffle", 0, 0, "shuffle|class_balanced", NULL,
     "training batches: a shuffled pass over the data, or class_balanced: classes_per_batch classes x "
     "samples_per_class samples each (metric learning; docs/fewshot.md)"},
    {"classes_per_batch", LARCH_T_INT, "0", 0, 65536, NULL, NULL,
     "class_balanced: P distinct classes per global batch (P x samples_per_class = train.batch_size)"},
    {"samples_per_class", LARCH_T_INT, "0", 0, 1 << 24, NULL, NULL, "class_balanced: K samples of each class per batch"},
    {"bootstrap", LARCH_T_INT, "-1", -1, 1 << 30, NULL, NULL,
     "k >= 0: train on bootstrap resample k of the training set (n draws with replacement keyed by k and the "
     "sample position, after data.classes, train_per_class and label_noise; the same on any rank count); -1 = off"},
    {"label_noise", LARCH_T_FLOAT, "0", 0, 1, NULL, NULL,
     "fraction p of training labels replaced by another class drawn uniformly: sample i's label is changed with "
     "probability p, keyed by i alone (not by train.seed); after data.classes and train_per_class"},
    {"derived_labels", LARCH_T_ANY, "[]", 0, 0, NULL, NULL,
     "further label sets for multi-task heads: a list of maps class -> coarse class, e.g. [[0, 1, 0, 0, 0, 2, 0, 2, 3, 2]]; "
     "loss target 1 is the first"},
    {0}};

static const larch_key dist_keys[] = {
    {"bucket_mb", LARCH_T_FLOAT, "25", 0.001, 65536, NULL, NULL, "gradient bucket size in MiB (as PyTorch DDP)"},
    {"first_bucket_mb", LARCH_T_FLOAT, "1", 0.001, 65536, NULL, NULL, "size of the first bucket (the last layers), MiB"},
    {"overlap", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "start each bucket's allreduce during backward"},
    {"comm_thread", LARCH_T_BOOL, "false", 0, 0, NULL, NULL,
     "overlap through a communication thread running blocking allreduces (false: MPI_Iallreduce; docs/distributed.md, Overlap)"},
    {"compress", LARCH_T_ENUM, "none", 0, 0, "none|fp16|bf16", NULL, "16-bit gradients on the wire"},
    {"shard_optimizer", LARCH_T_BOOL, "false", 0, 0, NULL, NULL,
     "ZeRO stage 1: each rank keeps optimizer state for its slice of the parameters"},
    {"timeout_s", LARCH_T_FLOAT, "600", 0, 1e7, NULL, NULL,
     "watchdog: a collective waiting longer than this ends the job, naming the missing ranks (0 = off)"},
    {"groups", LARCH_T_INT, "1", 1, 1 << 20, NULL, NULL,
     "split the ranks into this many groups, each training its own variants of the sweep section (must divide "
     "the number of ranks; docs/groups.md)"},
    {0}};

static const larch_key checkpoint_keys[] = {
    {"dir", LARCH_T_STRING, "", 0, 0, NULL, NULL, "checkpoint directory (empty: <output dir>/checkpoints)"},
    {"every_steps", LARCH_T_INT, "0", 0, 1L << 40, NULL, NULL, "save every this many steps (0 = only at the end and on preemption)"},
    {"keep", LARCH_T_INT, "3", 0, 1000000, NULL, NULL, "newest checkpoints kept in dir (0 = all)"},
    {"at_end", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "save when training ends"},
    {"resume", LARCH_T_STRING, "", 0, 0, NULL, NULL,
     "resume from this checkpoint file, or 'auto' for the newest in dir (none: start fresh)"},
    {"allow_changes", LARCH_T_STRINGS, "[]", 0, 0, NULL, NULL,
     "config keys (or prefixes: optim) a resume may change, e.g. [train.epochs, optim.lr] (docs/checkpoints.md)"},
    {0}};

static const larch_key adversarial_keys[] = {
    {"method", LARCH_T_ENUM, "none", 0, 0, "none|pgd|fgsm_rs|trades", NULL,
     "train on adversarial inputs: pgd (Madry et al. 2018), fgsm_rs (one FGSM step from a random start, Wong et al. "
     "2020) or trades (CE + trades_beta KL(clean || adversarial), Zhang et al. 2019)"},
    {"eps", LARCH_T_FLOAT, "0.1", 0, 1e6, NULL, NULL, "attack radius in raw input units (pixels 0..1 of the raw image)"},
    {"steps", LARCH_T_INT, "7", 1, 1000, NULL, NULL, "pgd: attack steps per training step"},
    {"step_size", LARCH_T_FLOAT, "0", 0, 1e6, NULL, NULL, "attack step in raw units (0: pgd 2.5 eps / steps, fgsm_rs 1.25 eps)"},
    {"norm", LARCH_T_ENUM, "linf", 0, 0, "linf|l2", NULL, "the attack's ball"},
    {"trades_beta", LARCH_T_FLOAT, "6", 0, 1e6, NULL, NULL, "trades: weight of the KL term (1/lambda of the paper)"},
    {0}};

static const larch_key prune_keys[] = {
    {"sparsity", LARCH_T_FLOAT, "0", 0, 0.999, NULL, NULL,
     "final fraction of the selected weights set to zero, s_f (0 = no pruning; docs/compression/pruning.md)"},
    {"initial_sparsity", LARCH_T_FLOAT, "0", 0, 0.999, NULL, NULL, "sparsity s_i at start_step (at most sparsity)"},
    {"start_step", LARCH_T_INT, "0", 0, 1L << 40, NULL, NULL, "t0: optimizer steps done at the first pruning step"},
    {"end_step", LARCH_T_INT, "-1", -1, 1L << 40, NULL, NULL,
     "last pruning step (reaches sparsity); -1 = three quarters of the run"},
    {"every", LARCH_T_INT, "100", 1, 1L << 40, NULL, NULL, "steps between pruning steps (dt)"},
    {"scope", LARCH_T_ENUM, "layer", 0, 0, "layer|global", NULL,
     "layer: each tensor pruned to the sparsity; global: one magnitude threshold over all selected tensors"},
    {"layers", LARCH_T_STRINGS, "[]", 0, 0, NULL, NULL,
     "globs on layer names whose weights are pruned (dense and conv2d only; [] = all of them)"},
    {0}};

static const larch_key distill_keys[] = {
    {"teacher", LARCH_T_STRING, "", 0, 0, NULL, NULL,
     "the teacher's config (YAML; \"\" = no distillation; docs/compression/distillation.md)"},
    {"checkpoint", LARCH_T_STRING, "", 0, 0, NULL, NULL, "the teacher's parameters (a larch checkpoint)"},
    {"alpha", LARCH_T_FLOAT, "0.9", 0, 1, NULL, NULL, "weight of alpha T^2 KL(teacher || student); 1 - alpha on the labels"},
    {"temperature", LARCH_T_FLOAT, "4", 0.01, 100, NULL, NULL, "softmax temperature T of both"},
    {0}};

static const larch_key sweep_keys[] = {
    {"seeds", LARCH_T_INTS, "[]", 0, 4294967295.0, NULL, NULL, "one variant per train.seed in the list"},
    {"bootstrap", LARCH_T_INT, "0", 0, 1 << 20, NULL, NULL, "K > 0: one variant per bootstrap resample data.bootstrap = 0..K-1"},
    {"grid", LARCH_T_ANY, "{}", 0, 0, NULL, NULL,
     "a mapping key -> list of values, e.g. {optim.lr: [0.1, 0.05], model.fc1.units: [16, 64]}; each point of the "
     "cartesian product is a variant, its values applied as --set key=value"},
    {0}};

const larch_key larch_run_keys[] = {
    {"train", LARCH_T_MAP, "{}", 0, 0, NULL, train_keys, "training loop"},
    {"optim", LARCH_T_MAP, "{}", 0, 0, NULL, larch_optim_keys, "optimizer"},
    {"sched", LARCH_T_MAP, "{}", 0, 0, NULL, larch_sched_keys, "learning-rate schedule"},
    {"data", LARCH_T_MAP, "{}", 0, 0, NULL, data_keys, "dataset"},
    {"dist", LARCH_T_MAP, "{}", 0, 0, NULL, dist_keys, "data-parallel communication"},
    {"checkpoint", LARCH_T_MAP, "{}", 0, 0, NULL, checkpoint_keys, "saving and resuming (docs/checkpoints.md)"},
    {"adversarial", LARCH_T_MAP, "{}", 0, 0, NULL, adversarial_keys, "adversarial training (docs/adversarial.md)"},
    {"prune", LARCH_T_MAP, "{}", 0, 0, NULL, prune_keys, "gradual magnitude pruning during training"},
    {"distill", LARCH_T_MAP, "{}", 0, 0, NULL, distill_keys, "knowledge distillation from a teacher model"},
    {"model", LARCH_T_ANY, NULL, 0, 0, NULL, NULL,
     "list of layers, or {layers: [...], init_from: {...}} (docs/transfer.md)"},
    {"loss", LARCH_T_ANY, "[]", 0, 0, NULL, NULL, "loss or list of losses (default softmax_ce on the last layer)"},
    {"regularization", LARCH_T_ANY, "[]", 0, 0, NULL, NULL, "list of penalties"},
    {"quantize", LARCH_T_MAP, "{}", 0, 0, NULL, larch_quantize_keys,
     "quantized weights and quantization-aware training (docs/compression/quantization.md)"},
    {"sweep", LARCH_T_MAP, "{}", 0, 0, NULL, sweep_keys,
     "variants trained side by side by `larch train` (the product of seeds x bootstrap x grid; docs/groups.md)"},
    {0}};

static const larch_key init_from_keys[] = {
    {"file", LARCH_T_STRING, "", 0, 0, NULL, NULL, "checkpoint to initialize matching parameters from (\"\" = none)"},
    {"rename", LARCH_T_ANY, "{}", 0, 0, NULL, NULL,
     "checkpoint name prefix -> model name prefix, e.g. {\"enc_\": \"\"}; the first rule whose model prefix fits applies"},
    {"include", LARCH_T_STRINGS, "[\"*\"]", 0, 0, NULL, NULL, "globs on model tensor names \"<layer>.<tensor>\" to load"},
    {"exclude", LARCH_T_STRINGS, "[]", 0, 0, NULL, NULL, "globs on model tensor names to leave freshly initialized"},
    {"skip_mismatch", LARCH_T_BOOL, "false", 0, 0, NULL, NULL, "skip tensors whose shapes differ instead of failing"},
    {"buffers", LARCH_T_BOOL, "true", 0, 0, NULL, NULL, "also load batch-norm running statistics"},
    {0}};

const larch_key larch_model_map_keys[] = {
    {"layers", LARCH_T_ANY, NULL, 0, 0, NULL, NULL, "list of layers"},
    {"init_from", LARCH_T_MAP, "{}", 0, 0, NULL, init_from_keys, "initialize from a checkpoint (transfer learning)"},
    {0}};

/* `model` as a map: `init_from: FILE` is short for `init_from: {file: FILE}`;
 * the map is validated, the layer list is checked by building the model. */
static larch_status check_model_map(larch_node *model)
{
    for (int i = 0; i < model->n; i++) {
        larch_node *v = model->items[i];
        if (strcmp(model->keys[i], "init_from") != 0 || v->kind != LARCH_NODE_SCALAR) continue;
        larch_node *map = larch_node_new(LARCH_NODE_MAP, v->file, v->line);
        if (!map) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
        larch_status s = larch_node_append(map, "file", v->line, v);
        if (s) { larch_node_free(map); return s; }
        model->items[i] = map;
    }
    larch_status s = larch_cfg_check(model, "model", larch_model_map_keys, NULL);
    if (s) return s;
    const larch_node *rn = larch_map_get(larch_map_get(model, "init_from"), "rename");
    char where[300];
    if (rn->kind != LARCH_NODE_MAP)
        return larch_fail(LARCH_ERR_CONFIG, "%s: model.init_from.rename: expected a mapping of name prefixes "
                          "({\"old_\": \"new_\"})", larch_node_where(rn, where, sizeof where));
    for (int i = 0; i < rn->n; i++)
        if (rn->items[i]->kind != LARCH_NODE_SCALAR)
            return larch_fail(LARCH_ERR_CONFIG, "%s: model.init_from.rename.%s: expected a name prefix",
                              larch_node_where(rn->items[i], where, sizeof where), rn->keys[i]);
    return LARCH_OK;
}

larch_node *larch_run_layers(const larch_node *cfg)
{
    larch_node *model = larch_map_get(cfg, "model");
    return model && model->kind == LARCH_NODE_MAP ? larch_map_get(model, "layers") : model;
}

const larch_node *larch_run_init_from(const larch_node *cfg)
{
    const larch_node *model = larch_map_get(cfg, "model");
    if (!model || model->kind != LARCH_NODE_MAP) return NULL;
    const larch_node *init = larch_map_get(model, "init_from");
    return init && larch_cfg_str(init, "file")[0] ? init : NULL;
}

/* "file:line" of map[key] (the map's place when absent). */
static const char *place(const larch_node *map, const char *key, char *buf, size_t len)
{
    for (int i = 0; map && map->kind == LARCH_NODE_MAP && i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0) return larch_key_where(map, i, buf, len);
    return larch_node_where(map, buf, len);
}

/* Checks across keys of a validated config that need neither the data nor
 * the world size: `larch config` rejects what `larch train` would. */
static larch_status check_run(const larch_node *root)
{
    char where[300];
    const larch_node *t = larch_map_get(root, "train"), *d = larch_map_get(root, "data");
    long batch = larch_cfg_int(t, "batch_size"), acc = larch_cfg_int(t, "accumulate");
    if (batch % acc != 0)      /* then no per-rank batch divides either */
        return larch_fail(LARCH_ERR_CONFIG, "%s: train.accumulate: the batch of %ld is not divisible into %ld micro-batches",
                          place(t, "accumulate", where, sizeof where), batch, acc);
    long range[3];
    int n = larch_cfg_ints(d, "classes", range, 2);
    int classes = strcmp(larch_cfg_str(d, "name"), "synthetic") == 0
                ? (int)larch_cfg_int(larch_map_get(d, "synthetic"), "classes")
                : strcmp(larch_cfg_str(d, "name"), "hdf5") == 0 ? 1 << 30     /* checked with the data */
                : 10;                                                         /* Fashion-MNIST */
    if (n != 0 && (n != 2 || range[0] > range[1] || range[1] >= classes))
        return larch_fail(LARCH_ERR_CONFIG, "%s: data.classes: expected [lo, hi] with 0 <= lo <= hi < %d (the data's classes)",
                          place(d, "classes", where, sizeof where), classes);
    if (strcmp(larch_cfg_str(d, "sampler"), "class_balanced") == 0) {
        long P = larch_cfg_int(d, "classes_per_batch"), K = larch_cfg_int(d, "samples_per_class");
        if (P < 1 || K < 1 || P * K != batch)
            return larch_fail(LARCH_ERR_CONFIG, "%s: data.sampler is class_balanced: data.classes_per_batch (%ld) x "
                              "data.samples_per_class (%ld) must equal train.batch_size (%ld)",
                              place(d, "sampler", where, sizeof where), P, K, batch);
    }
    larch_variant *v = NULL;                    /* the sweep expands (its errors name the key) */
    int nv = 0;
    larch_status s = larch_sweep_variants(root, &v, &nv);
    free(v);
    if (s) return s;
    return larch_sched_check(larch_map_get(root, "sched"));
}

/* train.conv_backend is process-wide (larch_set_conv_backend): a loaded
 * config sets it, so `larch train` and `larch bench step` run what it says. */
static larch_status apply_conv_backend(const larch_node *t)
{
    char where[300];
    larch_conv_backend b;
    larch_status s = larch_conv_backend_parse(larch_cfg_str(t, "conv_backend"), &b);
    if (!s) s = larch_set_conv_backend(b);
    if (s) return larch_fail_context(LARCH_ERR_CONFIG, "%s: train.conv_backend", place(t, "conv_backend", where, sizeof where));
    return LARCH_OK;
}

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
    larch_node *model = s ? NULL : larch_map_get(root, "model");
    if (model && model->kind == LARCH_NODE_MAP) s = check_model_map(model);
    if (!s) s = check_run(root);
    if (!s) s = apply_conv_backend(larch_map_get(root, "train"));
    if (s) { larch_node_free(root); return s; }
    *out = root;
    return LARCH_OK;
}

/* The loss or penalty mappings of `loss` / `regularization` (a mapping or
 * a list of them; anything else is left to the model build to reject). */
static int entries(const larch_node *n, const larch_node **out, int cap)
{
    if (n && n->kind == LARCH_NODE_MAP) { out[0] = n; return 1; }
    int k = 0;
    for (int i = 0; n && n->kind == LARCH_NODE_SEQ && i < n->n && k < cap; i++)
        if (n->items[i]->kind == LARCH_NODE_MAP) out[k++] = n->items[i];
    return k;
}

/* The text of map[key] when it is a plain value, else `def`. */
static const char *text_or(const larch_node *map, const char *key, const char *def)
{
    const larch_node *v = larch_map_get(map, key);
    return v && v->kind == LARCH_NODE_SCALAR ? v->scalar : def;
}

/* Is map[key] present with a value other than the schema's default? */
static int set_to_other(const larch_node *map, const larch_key *schema, const char *key)
{
    const larch_node *v = larch_map_get(map, key);
    return v && !larch_cfg_is_default(schema, key, v);
}

larch_status larch_run_warnings(const larch_node *cfg, larch_warnings *w)
{
    char where[300], path[64];
    larch_status s = larch_optim_ignored(larch_map_get(cfg, "optim"), w);
    if (!s) s = larch_sched_ignored(larch_map_get(cfg, "sched"), w);
    const larch_node *list[64], *ln = larch_map_get(cfg, "loss"), *rn = larch_map_get(cfg, "regularization");
    int n = entries(ln, list, 64);
    for (int i = 0; !s && i < n; i++) {
        const larch_node *l = list[i];
        if (ln->kind == LARCH_NODE_SEQ) snprintf(path, sizeof path, "loss.%d", i);
        else snprintf(path, sizeof path, "loss");
        if (strcmp(text_or(l, "type", "softmax_ce"), "mse") == 0 && set_to_other(l, larch_loss_keys, "label_smoothing"))
            s = larch_warn(w, "%s: %s.label_smoothing is ignored: it applies to softmax_ce only, and %s.type is 'mse'",
                           place(l, "label_smoothing", where, sizeof where), path, path);
        if (!s && strcmp(text_or(l, "weighting", "fixed"), "uncertainty") != 0 && set_to_other(l, larch_loss_keys, "log_var_init"))
            s = larch_warn(w, "%s: %s.log_var_init is ignored: it applies to weighting: uncertainty only, and %s.weighting is '%s'",
                           place(l, "log_var_init", where, sizeof where), path, path, text_or(l, "weighting", "fixed"));
        /* the metric-learning options, each for some loss types only */
        static const struct { const char *key, *types; } only[] = {
            {"margin", "|triplet|contrastive|arcface|"}, {"soft_margin", "|triplet|"}, {"mining", "|triplet|"},
            {"temperature", "|supcon|"}, {"scale", "|arcface|"}, {"alpha", "|center|"}, {"classes", "|center|"},
            {"global", "|triplet|contrastive|supcon|center|"}};
        char type[48];
        snprintf(type, sizeof type, "|%.40s|", text_or(l, "type", "softmax_ce"));
        for (size_t k = 0; !s && k < sizeof only / sizeof only[0]; k++)
            if (!strstr(only[k].types, type) && set_to_other(l, larch_loss_keys, only[k].key))
                s = larch_warn(w, "%s: %s.%s is ignored: it applies to type %.*s only, and %s.type is '%s'",
                               place(l, only[k].key, where, sizeof where), path, only[k].key,
                               (int)strlen(only[k].types) - 2, only[k].types + 1, path, text_or(l, "type", "softmax_ce"));
    }
    n = entries(rn, list, 64);
    for (int i = 0; !s && i < n; i++) {
        const larch_node *r = list[i];
        if (rn->kind == LARCH_NODE_SEQ) snprintf(path, sizeof path, "regularization.%d", i);
        else snprintf(path, sizeof path, "regularization");
        const char *type = text_or(r, "type", "");
        if ((!strcmp(type, "l1") || !strcmp(type, "l2")) && set_to_other(r, larch_penalty_keys, "q"))
            s = larch_warn(w, "%s: %s.q is ignored: it applies to type lq only, and %s.type is '%s' (q = %s)",
                           place(r, "q", where, sizeof where), path, path, type, type[1] == '1' ? "1" : "2");
    }
    const larch_node *d = larch_map_get(cfg, "dist");
    static const char *const shard_ignores[] = {"overlap", "bucket_mb", "first_bucket_mb", "comm_thread"};
    if (larch_cfg_bool(d, "shard_optimizer"))
        for (int i = 0; !s && i < 4; i++)
            if (set_to_other(d, dist_keys, shard_ignores[i]))
                s = larch_warn(w, "%s: dist.%s is ignored: with dist.shard_optimizer the gradients are summed in one "
                               "reduce-scatter after backward, without buckets or overlap",
                               place(d, shard_ignores[i], where, sizeof where), shard_ignores[i]);
    const larch_node *pr = larch_map_get(cfg, "prune");      /* pruning off: its other keys do nothing */
    static const char *const prune_rest[] = {"initial_sparsity", "start_step", "end_step", "every", "scope", "layers"};
    if (pr && larch_cfg_float(pr, "sparsity") == 0.0)
        for (int i = 0; !s && i < 6; i++)
            if (set_to_other(pr, prune_keys, prune_rest[i]))
                s = larch_warn(w, "%s: prune.%s is ignored: prune.sparsity is 0 (no pruning)",
                               place(pr, prune_rest[i], where, sizeof where), prune_rest[i]);
    const larch_node *ds = larch_map_get(cfg, "distill");
    static const char *const distill_rest[] = {"checkpoint", "alpha", "temperature"};
    if (ds && !larch_cfg_str(ds, "teacher")[0])
        for (int i = 0; !s && i < 3; i++)
            if (set_to_other(ds, distill_keys, distill_rest[i]))
                s = larch_warn(w, "%s: distill.%s is ignored: distill.teacher is not set (no distillation)",
                               place(ds, distill_rest[i], where, sizeof where), distill_rest[i]);
    const larch_node *dd = larch_map_get(cfg, "data");
    static const char *const balanced_keys[] = {"classes_per_batch", "samples_per_class"};
    if (strcmp(larch_cfg_str(dd, "sampler"), "class_balanced") != 0)
        for (int i = 0; !s && i < 2; i++)
            if (set_to_other(dd, data_keys, balanced_keys[i]))
                s = larch_warn(w, "%s: data.%s is ignored: it applies to data.sampler: class_balanced only, and "
                               "data.sampler is '%s'", place(dd, balanced_keys[i], where, sizeof where), balanced_keys[i],
                               larch_cfg_str(dd, "sampler"));
    return s;
}

/* The HDF5 file and group of a split: data.train / data.test ("file.h5" is
 * a file whose root holds the split, "file.h5:/group" a group), else
 * data.path with the group /train or /test. */
static larch_status h5_spec(const larch_node *d, int train, char *spec, size_t len, const char **split)
{
    const char *own = larch_cfg_str(d, train ? "train" : "test"), *path = larch_cfg_str(d, "path");
    *split = train ? "train" : "test";
    if (own[0]) {
        snprintf(spec, len, "%s%s", own, strstr(own, ".h5:") || strstr(own, ".hdf5:") ? "" : ":/");
        return LARCH_OK;
    }
    if (!path[0])
        return larch_fail(LARCH_ERR_CONFIG, "data.name is hdf5 but neither data.path nor data.%s names a file "
                          "(larch data convert writes one)", train ? "train" : "test");
    snprintf(spec, len, "%s", path);
    return LARCH_OK;
}

larch_status larch_run_input(const larch_node *cfg, larch_shape *shape, int *classes)
{
    const larch_node *d = larch_map_get(cfg, "data");
    if (strcmp(larch_cfg_str(d, "name"), "hdf5") == 0) {
        char spec[4400];
        const char *split;
        int n;
        larch_status s = h5_spec(d, 1, spec, sizeof spec, &split);
        if (!s) s = larch_dataset_h5_probe(spec, split, shape, &n, classes);
        long range[2];
        if (!s && larch_cfg_ints(d, "classes", range, 2) == 2) *classes = (int)(range[1] - range[0] + 1);
        return s;
    }
    if (strcmp(larch_cfg_str(d, "name"), "synthetic") == 0) {
        const larch_node *s = larch_map_get(d, "synthetic");
        long v[3];
        if (larch_cfg_ints(s, "shape", v, 3) != 3)
            return larch_fail(LARCH_ERR_CONFIG, "data.synthetic.shape: expected [h, w, c]");
        *shape = (larch_shape){(int)v[0], (int)v[1], (int)v[2]};
        *classes = !strcmp(larch_cfg_str(s, "toy2d"), "moons") ? 2 : (int)larch_cfg_int(s, "classes");
        return LARCH_OK;
    }
    *shape = (larch_shape){28, 28, 1};           /* Fashion-MNIST */
    *classes = 10;
    long range[2];
    if (larch_cfg_ints(d, "classes", range, 2) == 2) *classes = (int)(range[1] - range[0] + 1);
    return LARCH_OK;
}

/* data.classes and data.derived_labels applied to one split. */
static larch_status shape_split(const larch_node *d, larch_dataset *ds, int train)
{
    char where[300];
    const larch_node *cl = larch_map_get(d, "classes");
    long range[2];
    int n = larch_cfg_ints(d, "classes", range, 2);
    int per_class = train ? (int)larch_cfg_int(d, "train_per_class") : 0;
    larch_status s = LARCH_OK;
    if (n != 0 && (n != 2 || range[0] > range[1] || range[1] >= ds->n_classes))
        return larch_fail(LARCH_ERR_CONFIG, "%s: data.classes: expected [lo, hi] with 0 <= lo <= hi < %d (the data's classes)",
                          larch_node_where(cl, where, sizeof where), ds->n_classes);
    if (n == 2 || per_class > 0)
        s = larch_dataset_subset(ds, n == 2 ? (int)range[0] : 0, n == 2 ? (int)range[1] : ds->n_classes - 1, per_class);
    const larch_node *dl = larch_map_get(d, "derived_labels");
    if (!s && dl->kind != LARCH_NODE_SEQ)
        return larch_fail(LARCH_ERR_CONFIG, "%s: data.derived_labels: expected a list of class maps ([[0, 1, 0, ...]])",
                          larch_node_where(dl, where, sizeof where));
    for (int k = 0; !s && k < dl->n; k++) {
        const larch_node *mp = dl->items[k];
        int map[1024], ok = mp->kind == LARCH_NODE_SEQ && mp->n <= 1024;
        for (int c = 0; ok && c < mp->n; c++) {
            char *end;
            const larch_node *e = mp->items[c];
            ok = e->kind == LARCH_NODE_SCALAR && e->scalar[0];
            if (ok) map[c] = (int)strtol(e->scalar, &end, 10), ok = !*end;
        }
        if (!ok)
            return larch_fail(LARCH_ERR_CONFIG, "%s: data.derived_labels.%d: expected a list of class numbers, one per class",
                              larch_node_where(mp, where, sizeof where), k);
        if ((s = larch_dataset_derive_labels(ds, map, mp->n)))
            return larch_fail_context(s, "%s: data.derived_labels.%d", larch_node_where(mp, where, sizeof where), k);
    }
    return s;
}

/* Every split must have the model's input shape (larch_run_input): a test
 * set of other images would be read at the wrong strides (or past the end). */
static larch_status check_input_shape(const larch_node *cfg, const larch_dataset *ds)
{
    larch_shape want, got = ds->shape;
    int classes;
    larch_status s = larch_run_input(cfg, &want, &classes);
    if (s) return s;
    if (got.h == want.h && got.w == want.w && got.c == want.c) return LARCH_OK;
    return larch_fail(LARCH_ERR_SHAPE, "%s: %s samples are %dx%dx%d (h x w x c) but the model input is %dx%dx%d (data.name: %s); "
                      "every split must have the model's input shape",
                      ds->source[0] ? ds->source : ds->name, ds->name, got.h, got.w, got.c, want.h, want.w, want.c,
                      larch_cfg_str(larch_map_get(cfg, "data"), "name"));
}

/* data.in_memory: true, false, or auto: in memory when the split's file
 * takes at most a quarter of MemAvailable divided by the ranks on this
 * node (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE, MPICH's MPI_LOCALNRANKS,
 * Slurm's SLURM_NTASKS_PER_NODE; 1 without them). The choice changes where
 * the bytes come from, never which: batches are identical either way. */
static int h5_in_memory(const larch_node *d, const char *spec)
{
    const char *mode = larch_cfg_str(d, "in_memory");
    if (strcmp(mode, "auto") != 0) return strcmp(mode, "true") == 0;
    char file[4400];
    snprintf(file, sizeof file, "%s", spec);
    char *colon = strstr(file, ".h5:");
    if (!colon) colon = strstr(file, ".hdf5:");
    if (colon) *strchr(colon, ':') = '\0';
    struct stat st;
    if (stat(file, &st) != 0) return 1;                     /* the read reports the error */
    long long avail_kb = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &avail_kb) == 1) break;
    if (f) fclose(f);
    if (avail_kb <= 0) return 1;
    const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"};
    long ranks = 1;
    for (int i = 0; i < 3 && ranks == 1; i++)
        if (getenv(vars[i]) && atol(getenv(vars[i])) > 1) ranks = atol(getenv(vars[i]));
    return (double)st.st_size <= 0.25 * (double)avail_kb * 1024.0 / (double)ranks;
}

/* The test split of an HDF5 dataset is scored with the training split's
 * classes and label sets: it may not have more of either. */
static larch_status match_splits(larch_dataset *train, larch_dataset *test)
{
    for (int i = 0; i < test->n; i++)
        if (test->labels[i] >= train->n_classes)
            return larch_fail(LARCH_ERR_FORMAT, "%s: label %d of sample %d is not a class of the training split %s (0..%d)",
                              test->source, test->labels[i], i, train->source, train->n_classes - 1);
    if (test->n_derived != train->n_derived || (test->n_targets != train->n_targets))
        return larch_fail(LARCH_ERR_FORMAT, "%s has %d further label sets and %d targets, the training split %s has %d and %d",
                          test->source, test->n_derived, test->n_targets, train->source, train->n_derived, train->n_targets);
    for (int t = 0; t < test->n_derived; t++) {
        if (strcmp(test->derived_name[t], train->derived_name[t]) != 0)
            return larch_fail(LARCH_ERR_FORMAT, "%s: label set %d is labels_%s, in the training split labels_%s", test->source,
                              t + 1, test->derived_name[t], train->derived_name[t]);
        if (test->derived_classes[t] > train->derived_classes[t])
            return larch_fail(LARCH_ERR_FORMAT, "%s: labels_%s has classes the training split does not", test->source,
                              test->derived_name[t]);
        test->derived_classes[t] = train->derived_classes[t];
    }
    test->n_classes = train->n_classes;
    return LARCH_OK;
}

/* data.mean and data.std, when set, replace the dataset's own normalization. */
static larch_status config_norm(const larch_node *d, larch_dataset *ds)
{
    double m[LARCH_NORM_MAX + 1], sd[LARCH_NORM_MAX + 1];
    int nm = larch_cfg_floats(d, "mean", m, LARCH_NORM_MAX + 1), ns = larch_cfg_floats(d, "std", sd, LARCH_NORM_MAX + 1);
    char where[300];
    if (nm != ns)
        return larch_fail(LARCH_ERR_CONFIG, "%s: data.mean has %d values and data.std %d (give both, as many)",
                          place(d, "mean", where, sizeof where), nm, ns);
    if (!nm) return LARCH_OK;
    float mf[LARCH_NORM_MAX], sf[LARCH_NORM_MAX];
    for (int c = 0; c < nm && c < LARCH_NORM_MAX; c++) { mf[c] = (float)m[c]; sf[c] = (float)sd[c]; }
    larch_status s = nm > LARCH_NORM_MAX ? larch_fail(LARCH_ERR_CONFIG, "more than %d values", LARCH_NORM_MAX)
                                         : larch_dataset_set_norm(ds, mf, sf, nm);
    return s ? larch_fail_context(s, "%s: data.mean/data.std", place(d, "mean", where, sizeof where)) : LARCH_OK;
}

/* data.label_noise: sample i's label (set 0) becomes another class, drawn
 * uniformly, with probability p; keyed by i alone (docs/biasvar.md). */
static larch_status label_noise(larch_dataset *ds, double p)
{
    if (p <= 0.0) return LARCH_OK;
    if (ds->n_classes < 2) return larch_fail(LARCH_ERR_CONFIG, "data.label_noise: the training set has one class");
    for (int i = 0; i < ds->n; i++) {
        larch_rng r;
        larch_rng_init(&r, 0, LARCH_RNG_SYNTH + 0x11, 0, (uint32_t)i);
        if ((double)larch_rng_uniform(&r) >= p) continue;
        int other = (int)larch_rng_below(&r, (uint32_t)ds->n_classes - 1);
        ds->labels[i] = other >= ds->labels[i] ? other + 1 : other;
    }
    return LARCH_OK;
}

/* data.bootstrap = k: n draws with replacement, draw j = uniform below n
 * from (k, j): the same resample on any rank count and for any train.seed.
 * The samples, labels, derived labels and targets are gathered into new
 * arrays (out of core: the row map). */
static larch_status bootstrap(larch_dataset *ds, long k)
{
    int n = ds->n;
    size_t dim = larch_shape_size(ds->shape), K = (size_t)ds->n_targets;
    int32_t *idx = malloc((size_t)n * sizeof *idx);
    if (!idx) return larch_fail(LARCH_ERR_NOMEM, "data.bootstrap: out of memory");
    for (int j = 0; j < n; j++) {
        larch_rng r;
        larch_rng_init(&r, (uint64_t)k, LARCH_RNG_SYNTH + 0x10, 0, (uint32_t)j);
        idx[j] = (int32_t)larch_rng_below(&r, (uint32_t)n);
    }
    larch_status s = LARCH_OK;
    uint8_t *u8 = ds->u8 ? malloc((size_t)n * dim) : NULL;
    float *f32 = ds->f32 ? malloc((size_t)n * dim * sizeof *f32) : NULL;
    int32_t *labels = malloc((size_t)n * sizeof *labels), *rows = NULL;
    float *targets = K ? malloc((size_t)n * K * sizeof *targets) : NULL;
    int32_t *derived[LARCH_MAX_TARGETS - 1] = {0};
    int ok = labels && (!ds->u8 || u8) && (!ds->f32 || f32) && (!K || targets);
    for (int t = 0; ok && t < ds->n_derived; t++) ok = (derived[t] = malloc((size_t)n * sizeof *derived[t])) != NULL;
    if (ok && ds->ooc) ok = (rows = malloc((size_t)n * sizeof *rows)) != NULL;
    if (!ok) {
        s = larch_fail(LARCH_ERR_NOMEM, "data.bootstrap: out of memory for %d samples", n);
        free(u8), free(f32), free(labels), free(targets), free(rows);
        for (int t = 0; t < ds->n_derived; t++) free(derived[t]);
        free(idx);
        return s;
    }
    for (int j = 0; j < n; j++) {
        size_t i = (size_t)idx[j];
        if (u8) memcpy(u8 + (size_t)j * dim, ds->u8 + i * dim, dim);
        if (f32) memcpy(f32 + (size_t)j * dim, ds->f32 + i * dim, dim * sizeof *f32);
        labels[j] = ds->labels[i];
        if (K) memcpy(targets + (size_t)j * K, ds->targets + i * K, K * sizeof *targets);
        for (int t = 0; t < ds->n_derived; t++) derived[t][j] = ds->derived[t][i];
        if (rows) rows[j] = ds->rows ? ds->rows[i] : (int32_t)i;
    }
    free(idx);
    if (u8) { free(ds->u8); ds->u8 = u8; }
    if (f32) { free(ds->f32); ds->f32 = f32; }
    free(ds->labels);
    ds->labels = labels;
    if (K) { free(ds->targets); ds->targets = targets; }
    for (int t = 0; t < ds->n_derived; t++) { free(ds->derived[t]); ds->derived[t] = derived[t]; }
    if (rows) { free(ds->rows); ds->rows = rows; }
    return LARCH_OK;
}

larch_status larch_run_datasets(const larch_node *cfg, larch_dataset *train, larch_dataset *test)
{
    const larch_node *d = larch_map_get(cfg, "data");
    uint64_t seed = (uint64_t)larch_cfg_int(larch_map_get(cfg, "train"), "seed");
    larch_status s;
    memset(test, 0, sizeof *test);
    if (strcmp(larch_cfg_str(d, "name"), "synthetic") == 0) {
        const larch_node *sy = larch_map_get(d, "synthetic");
        larch_shape shape;
        int classes;
        if ((s = larch_run_input(cfg, &shape, &classes))) return s;
        long dseed = larch_cfg_int(sy, "seed");
        larch_synth_opts o = {(int)larch_cfg_int(sy, "n_train"), shape, (int)larch_cfg_int(sy, "classes"),
                              (float)larch_cfg_float(sy, "noise"), dseed >= 0 ? (uint64_t)dseed : seed, 0,
                              (int)larch_cfg_int(sy, "regression"), (float)larch_cfg_float(sy, "regression_noise"), 0,
                              (int)larch_cfg_int(sy, "draw")};
        const char *toy = larch_cfg_str(sy, "toy2d");
        o.toy2d = !strcmp(toy, "moons") ? LARCH_TOY2D_MOONS : !strcmp(toy, "ring") ? LARCH_TOY2D_RING : LARCH_TOY2D_NONE;
        if ((s = larch_dataset_synthetic(&o, train))) return s;
        o.n = (int)larch_cfg_int(sy, "n_test");
        o.split = 1;
        s = larch_dataset_synthetic(&o, test);
    } else if (strcmp(larch_cfg_str(d, "name"), "hdf5") == 0) {
        char spec[4400];
        const char *split;
        if (!(s = h5_spec(d, 1, spec, sizeof spec, &split)))
            s = larch_dataset_h5_open(spec, split, h5_in_memory(d, spec), train);
        if (!s && !(s = h5_spec(d, 0, spec, sizeof spec, &split)))
            s = larch_dataset_h5_open(spec, split, h5_in_memory(d, spec), test);
        if (!s) s = match_splits(train, test);
    } else {
        const char *dir = larch_cfg_str(d, "dir");
        if (!(s = larch_dataset_fmnist(dir, 1, train))) s = larch_dataset_fmnist(dir, 0, test);
    }
    if (!s) s = config_norm(d, train);
    if (!s) s = config_norm(d, test);
    if (!s) s = check_input_shape(cfg, train);
    if (!s) s = check_input_shape(cfg, test);
    const char *attr = larch_cfg_str(d, "attributes");
    if (!s && attr[0]) {                        /* by the original class, before data.classes relabels */
        larch_attr_table tab;
        if (!(s = larch_attr_read(attr, &tab))) {
            s = larch_attr_apply(&tab, attr, train);
            if (!s) s = larch_attr_apply(&tab, attr, test);
            larch_attr_free(&tab);
        }
        if (s) s = larch_fail_context(s, "data.attributes");
    }
    if (!s) s = shape_split(d, train, 1);
    if (!s) s = shape_split(d, test, 0);
    if (!s) s = label_noise(train, larch_cfg_float(d, "label_noise"));
    if (!s && larch_cfg_int(d, "bootstrap") >= 0) s = bootstrap(train, larch_cfg_int(d, "bootstrap"));
    if (s) { larch_dataset_free(train); larch_dataset_free(test); }
    return s;
}

larch_status larch_run_steps(const larch_node *cfg, long *steps_per_epoch, long *total_steps)
{
    const larch_node *d = larch_map_get(cfg, "data"), *t = larch_map_get(cfg, "train");
    int n = 0;
    if (larch_cfg_ints(d, "classes", NULL, 0) != 0 || larch_cfg_int(d, "train_per_class") > 0) {
        larch_dataset train, test;                  /* a subset: count what it keeps */
        larch_status s = larch_run_datasets(cfg, &train, &test);
        if (s) return s;
        n = train.n;
        larch_dataset_free(&train);
        larch_dataset_free(&test);
    } else if (strcmp(larch_cfg_str(d, "name"), "synthetic") == 0) {
        n = (int)larch_cfg_int(larch_map_get(d, "synthetic"), "n_train");
    } else if (strcmp(larch_cfg_str(d, "name"), "hdf5") == 0) {
        char spec[4400];
        const char *split;
        larch_shape shape;
        int classes;
        larch_status s = h5_spec(d, 1, spec, sizeof spec, &split);
        if (!s) s = larch_dataset_h5_probe(spec, split, &shape, &n, &classes);
        if (s) return s;
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
