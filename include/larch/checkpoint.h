/* larch/checkpoint.h - logical HDF5 checkpoints (docs/design.md, decision 6).
 *
 * One HDF5 file per checkpoint, saved collectively: rank 0 writes it (the
 * other ranks' ZeRO slices of sharded optimizer state are gathered to it
 * tensor by tensor), and datasets
 * hold whole logical tensors under their names, so a checkpoint loads on any
 * number of ranks, into h5py, or by name into another model. The layout
 * (docs/checkpoints.md):
 *
 *   /params/<layer>/<tensor>          float32, the tensor's logical shape
 *   /buffers/<layer>/<tensor>         float32 (batch-norm running statistics)
 *   /optim/<state>/<layer>/<tensor>   float32, trainable tensors only
 *   attributes of /                   format_version, larch_version, step,
 *                                     epoch, sampler_epoch, sampler_step,
 *                                     samples_seen, rng_seed, world_size,
 *                                     global_batch, sched_step,
 *                                     sched_total_steps, config; since
 *                                     format 2: steps_per_epoch, run_id,
 *                                     lineage, meta_checksum
 *   attributes of /optim              optimizer, t (steps taken); since
 *                                     format 2: state_layout
 *   /optim/t/<layer>                  (format 2) attribute <tensor>: that
 *                                     tensor's own step count (int64)
 *   /optim/mu_product/<layer>         (format 2) attribute <tensor>: its NAdam
 *                                     momentum product (float64; nadam only)
 *   /masks/<layer>/<tensor>           float32 0/1: a pruning run's mask (tensors
 *                                     with a pruned value; read into a pruning
 *                                     run, docs/compression/pruning.md)
 * (format 1 had one count and one product for all tensors: attributes t and
 * mu_product of /optim).
 *
 * A tensor at least half zeros is stored with the shuffle and deflate
 * filters before the checksum (the same float32 dataset for every reader).
 * Every dataset is chunked with HDF5's Fletcher32 checksum filter, so a read
 * detects corrupted bytes; the attributes are covered by meta_checksum and
 * range- and cross-checked on every read. A save writes a uniquely named
 * DIR/.ckpt-<step>.<random>.h5.tmp and renames it to DIR/ckpt-<step>.h5 only
 * after every rank has closed it; a failed save (a full disk) removes its
 * temporary file and leaves older checkpoints as they were.
 */
#ifndef LARCH_CHECKPOINT_H
#define LARCH_CHECKPOINT_H

#include <stdint.h>
#include <stdio.h>
#include "larch/cfg.h"
#include "larch/comm.h"
#include "larch/model.h"
#include "larch/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LARCH_CKPT_FORMAT 2   /* format_version this larch writes; it reads 1 and 2 */

typedef struct larch_ckpt_meta {
    int format_version;
    char larch_version[32];
    long step;                /* optimizer steps taken                         */
    long epoch;               /* epochs completed                              */
    long sampler_epoch;       /* position of the next training batch:          */
    long sampler_step;        /*   epoch and step within it                    */
    long samples_seen;        /* step * global_batch                           */
    uint64_t rng_seed;        /* key of the counter-based RNG (decision 4)     */
    int world_size;           /* ranks at save                                 */
    long global_batch;
    long sched_step, sched_total_steps; /* the schedule is a function of these */
    char optimizer[32];
    long optim_t;             /* optimizer steps                               */
    double optim_mu_product;  /* format 1: NAdam's momentum product (format 2
                                 keeps it per tensor; then 0)                   */
    char *config;             /* resolved config (YAML); owned, may be NULL    */
    /* format 2 (format-1 files read as 0 / "" / NULL) */
    long steps_per_epoch;     /* the sampler position is step = sampler_epoch *
                                 steps_per_epoch + sampler_step                */
    char run_id[24];          /* the training run (one process launch) that
                                 wrote it: 16 hex digits                       */
    char *lineage;            /* "<run_id>:<first step> ..." of every run from
                                 the fresh start to this one (a resumed run
                                 appends itself); owned, may be NULL           */
    char state_layout[16];    /* optimizer state at save: "replicated" or
                                 "sharded" (ZeRO-1); informational             */
} larch_ckpt_meta;

/* Frees meta->config and meta->lineage. */
LARCH_API void larch_ckpt_meta_free(larch_ckpt_meta *meta);

/* Collective: writes model parameters, buffers and (o != NULL) optimizer state
 * to dir/ckpt-<step>.h5 through a temporary file, then keeps only the newest
 * `keep` checkpoints of dir (keep 0 = all; the file just written is always
 * kept). meta's format and version fields are filled in; the rest must pass
 * the checks a load makes (ranges, samples_seen = step * global_batch,
 * sched_step = step, optimizer t = step, the sampler position), else
 * LARCH_ERR_INVALID before anything is written. Whether the optimizer state
 * is sharded is agreed by the ranks from their ranges [o->lo, o->hi): all
 * whole = replicated, else the ranges must partition the model. `path_out`
 * (may be NULL) receives the final path. */
LARCH_API larch_status larch_ckpt_save(const char *dir, int keep, const larch_comm *c,
                                       const larch_model *m, const larch_optim *o,
                                       const larch_ckpt_meta *meta, char *path_out, size_t path_len);

/* One process (c->size must be 1): writes m (no optimizer state) as a
 * model-only checkpoint at exactly `path`, with cfg's text as its config
 * (the file `larch train --set model.init_from=PATH` and `larch eval` read).
 * meta (may be NULL) supplies the metadata to keep (a rewritten model keeps
 * its source's step and lineage); NULL writes a fresh step-0 run. The file
 * is saved beside `path` and renamed into place: a failure leaves nothing. */
LARCH_API larch_status larch_ckpt_save_model(const char *path, const larch_comm *c, const larch_model *m,
                                             const larch_node *cfg, const larch_ckpt_meta *meta);

/* Collective: loads a checkpoint written for the same model (the same tensor
 * names and shapes; anything missing, extra or differently shaped is an
 * error naming the tensor) into m and, when o != NULL, the optimizer state of
 * o's slice. meta (may be NULL) receives the metadata. */
LARCH_API larch_status larch_ckpt_load(const char *path, const larch_comm *c, larch_model *m,
                                       larch_optim *o, larch_ckpt_meta *meta);

/* One process: the metadata only (format version, ranges, cross-checks and,
 * since format 2, the metadata checksum). */
LARCH_API larch_status larch_ckpt_read_meta(const char *path, larch_ckpt_meta *meta);

/* The newest checkpoint of dir whose metadata reads. Returns LARCH_ERR_IO
 * with an empty `out` when dir holds none, LARCH_ERR_FORMAT when none of
 * them reads. */
LARCH_API larch_status larch_ckpt_latest(const char *dir, char *out, size_t len);
/* The checkpoint files of dir, newest first (paths; free each and the list). */
LARCH_API int larch_ckpt_list(const char *dir, char ***paths);

/* One process: prints the metadata and a table of every tensor (name, shape,
 * dtype, L2 norm) to f. */
LARCH_API larch_status larch_ckpt_info(const char *path, FILE *f);
/* One process: reads every tensor (checksums) and checks the metadata and
 * the layout; prints what it checked to f (may be NULL). */
LARCH_API larch_status larch_ckpt_verify(const char *path, FILE *f);

/* ---- the directory of a run ---- */

/* One process (rank 0): creates dir if needed and takes an exclusive lock on
 * dir/.larch.lock (flock: released when *fd is closed or the process ends,
 * however it ends), so that two runs cannot write into one directory. A
 * directory that cannot be created or written is an error naming it and the
 * reason; a directory locked by another run is LARCH_ERR_IO naming the
 * holder (pid, host, start time). `what` names the directory in messages
 * ("checkpoint.dir"). *fd is -1 on failure. */
LARCH_API larch_status larch_dir_lock(const char *dir, const char *what, int *fd);
LARCH_API void larch_dir_unlock(int *fd);

/* A fresh run id: 16 hex digits (from the system's random source). */
LARCH_API void larch_ckpt_new_run_id(char *out, size_t len);

/* Rank 0, holding dir's lock, before the run's first save: removes the
 * temporary files interrupted saves left in dir (.ckpt-*.h5.tmp) and moves
 * every checkpoint of dir that is not on `lineage` (the run's own lineage:
 * the checkpoints it descends from) to dir/abandoned-<run_id>/, so that
 * later checkpoints of an abandoned branch (a resume from an older
 * checkpoint, or a fresh start) are neither pruned in place of the run's
 * own nor picked by checkpoint.resume=auto. What it did is printed to log
 * (may be NULL); *moved (may be NULL) receives the number moved. */
LARCH_API larch_status larch_ckpt_prepare_dir(const char *dir, const char *lineage, const char *run_id,
                                              FILE *log, int *moved);

/* Is the checkpoint described by meta on `lineage`: written by one of its
 * runs at or before the step where the next run of the lineage started? A
 * format-1 checkpoint (no run id) matches the lineage's unknown ("-") runs. */
LARCH_API int larch_ckpt_on_lineage(const larch_ckpt_meta *meta, const char *lineage);

/* ---- transfer learning: initializing a (different) model by name ---- */

#define LARCH_INIT_MAX_RULES 16

/* Which tensors model.init_from loads (docs/transfer.md). Names are the
 * model's "<layer>.<tensor>". A model tensor is looked up in the checkpoint
 * under its name with the first rename rule whose `to` prefix it starts
 * with replaced by that rule's `from` prefix. Pointers are borrowed. */
typedef struct larch_init_map {
    int n_rename;
    const char *rename_from[LARCH_INIT_MAX_RULES];   /* checkpoint prefix */
    const char *rename_to[LARCH_INIT_MAX_RULES];     /* model prefix      */
    int n_include, n_exclude;                        /* globs; no include = all */
    const char *include[LARCH_INIT_MAX_RULES], *exclude[LARCH_INIT_MAX_RULES];
    int skip_mismatch;       /* a shape mismatch skips the tensor instead of failing */
    int buffers;             /* also batch-norm running statistics          */
} larch_init_map;

typedef struct larch_init_report {
    int loaded, skipped, fresh, unused;   /* model tensors loaded / skipped on a
                                             shape mismatch / left as initialized;
                                             checkpoint parameters not used */
    size_t loaded_values;
    char *text;              /* one line per tensor (malloc'ed, may be NULL) */
} larch_init_report;

/* The map of a validated `model.init_from` config node. */
LARCH_API larch_status larch_init_map_from_cfg(const larch_node *init_from, larch_init_map *map);
/* One process: loads the parameters (and buffers) of m that the map selects
 * and the checkpoint has, by name; not the optimizer state. A shape
 * mismatch is an error naming both shapes unless map->skip_mismatch. */
LARCH_API larch_status larch_ckpt_init_from(const char *path, larch_model *m, const larch_init_map *map,
                                            larch_init_report *rep);
LARCH_API void larch_init_report_free(larch_init_report *rep);

#ifdef __cplusplus
}
#endif
#endif
