/* larch/compress.h - compressing a trained model (docs/compression.md).
 *
 * A compression method reads a model as its run config (validated by
 * larch_run_load) and a checkpoint of it, and writes a new model as a run
 * config plus a checkpoint that `larch eval`, `larch train` (fine-tuning
 * through model.init_from) and larch_compress_measure use like any other:
 * quantization (fp16, bf16, int8 with a real int8 inference path),
 * magnitude pruning stored sparse, structured pruning of neurons and conv
 * filters that shrinks the layers, truncated-SVD factorization. Training-
 * time methods (quantization-aware training, gradual pruning, distillation)
 * are config sections of `larch train` instead (larch/train.h).
 *
 * Methods run in one process (no MPI collective): rank 0 of a program, or
 * `larch compress`.
 */
#ifndef LARCH_COMPRESS_H
#define LARCH_COMPRESS_H

#include <stddef.h>
#include "larch/cfg.h"
#include "larch/comm.h"
#include "larch/data.h"
#include "larch/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The model to compress. */
typedef struct larch_compress_src {
    const larch_node *cfg;           /* validated run config (larch_run_load)          */
    const char *checkpoint;          /* its parameters (a larch checkpoint)            */
    const larch_dataset *train_set;  /* data-dependent methods (calibration): the
                                        config's training set; may be NULL for others  */
} larch_compress_src;

/* What a method wrote. */
typedef struct larch_compress_out {
    larch_node *cfg;                 /* the new model's run config (owned: larch_node_free);
                                        also written next to the checkpoint as .yaml   */
    char config_path[4096];          /* where that config was written                  */
    char checkpoint[4096];           /* the checkpoint written                          */
    char summary[512];               /* one line: what was done, e.g. "conv2: 64 -> 32 filters" */
} larch_compress_out;

/* A method: reads src, validates its options `opts` (a map of "key: value",
 * from "name:key=value,key=value" on the command line; NULL or empty = its
 * defaults) against its own schema, writes `out_base`.yaml and
 * `out_base`.h5 and fills out. Errors name the option, the layer or the
 * tensor. */
typedef larch_status (*larch_compress_fn)(const larch_compress_src *src, larch_node *opts,
                                          const char *out_base, larch_compress_out *out);

typedef struct larch_compress_method {
    const char *name;                /* "int8", "fp16", "prune", "svd", ...             */
    const char *help;                /* one line with its options and defaults          */
    const larch_key *options;        /* its option schema (larch_cfg_check)             */
    larch_compress_fn run;
    int needs_data;                  /* reads src->train_set                            */
} larch_compress_method;

/* The built-in methods, NULL-terminated by name; larch_compress_find
 * returns NULL for an unknown name. */
LARCH_API const larch_compress_method *larch_compress_methods(int *count);
LARCH_API const larch_compress_method *larch_compress_find(const char *name);

/* Parses "name" or "name:key=value,key=value" into the method and an
 * options map (owned by the caller; NULL when there are none). An unknown
 * method is LARCH_ERR_INVALID listing the methods; the options are checked
 * against the method's schema (unknown key, type, range). */
LARCH_API larch_status larch_compress_parse(const char *spec, const larch_compress_method **method,
                                            larch_node **opts);

/* Measures one model (config + checkpoint), collective over c (a larch
 * compress run uses one rank): parameters, nonzero parameters, bytes of the
 * checkpoint on disk, test accuracy and loss of the first loss (when
 * test_set is not NULL), inference throughput at batch `batch` (samples/s of
 * an eval-mode forward: batch / the median time of `reps` passes, after
 * warm-up) and latency at batch 1 (the median of 10 x `reps` passes), with
 * `threads` threads (0: keep the current count). */
typedef struct larch_compress_stats {
    long params, nonzero;
    long long file_bytes;
    double accuracy, loss;           /* NaN without a test set                          */
    long test_samples;
    double samples_per_s;            /* eval-mode forward, batch `batch`                */
    double latency_ms;               /* eval-mode forward, batch 1, median              */
    int batch;
    char kernels[128];               /* what ran the products: "openblas fp32", "onednn int8", ... */
} larch_compress_stats;

LARCH_API larch_status larch_compress_measure(const larch_comm *c, const larch_node *cfg, const char *checkpoint,
                                              const larch_dataset *test_set, int batch, int reps,
                                              int threads, larch_compress_stats *st);

#ifdef __cplusplus
}
#endif
#endif
