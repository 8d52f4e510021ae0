/* rewrite.h - what the compression methods that change a model's layers
 * share (private to liblarch): a model built from a run config and loaded
 * from its checkpoint, edits of the config's layer list, copying tensors by
 * name between two models, the layer graph (who consumes a node), and
 * writing the new model as OUT.yaml + OUT.h5 (a step-0 checkpoint that
 * `larch eval` loads and `model.init_from` accepts).
 *
 * Everything runs in one process at plan time (no pass, no collective but
 * the checkpoint write: see larch_rw_write).
 */
#ifndef LARCH_COMPRESS_REWRITE_H
#define LARCH_COMPRESS_REWRITE_H

#include "larch/compress.h"
#include "larch/model.h"

/* Builds the model of a validated run config (parameters from seed 0). */
larch_status larch_rw_build(const larch_node *cfg, larch_model **out);
/* Builds it and loads every parameter and buffer from `checkpoint` by name
 * (model.init_from's reader): a tensor the checkpoint lacks or of another
 * shape is an error naming the tensor and the file. */
larch_status larch_rw_load(const larch_node *cfg, const char *checkpoint, larch_model **out);

/* The layer list of a run config, the map of the layer named `name` and its
 * position in the list (NULL / -1 when absent). */
larch_node *larch_rw_layer_node(const larch_node *cfg, const char *name, int *pos);
/* Inserts `layer` (owned by the config afterwards) at position pos of the
 * layer list. */
larch_status larch_rw_insert_layer(larch_node *cfg, int pos, larch_node *layer);
/* Removes key `key` of a map (nothing when absent). */
void larch_rw_map_remove(larch_node *map, const char *key);
/* Sets an integer option of a layer map ("filters", "units"). */
larch_status larch_rw_set_int(larch_node *layer, const char *key, long v);

/* Copies every parameter and buffer of src into the tensor of the same name
 * and shape in dst; returns how many of dst's tensors it did not fill. */
int larch_rw_copy_same(const larch_model *src, larch_model *dst);
/* The parameter / buffer of m named "<layer>.<tensor>" (NULL when absent). */
float *larch_rw_param(const larch_model *m, const char *layer, const char *tensor, const larch_param **desc);
float *larch_rw_buffer(const larch_model *m, const char *layer, const char *tensor, size_t *size);

/* The layers of m that read node `node` (0 = input, i + 1 = layer i's
 * output), up to cap of them, and their count. */
int larch_rw_consumers(const larch_model *m, int node, int *layers, int cap);
/* Whether a loss scores node `node`. */
int larch_rw_node_scored(const larch_model *m, int node);
/* Multiply-accumulates of an eval forward of one sample through the
 * model's dense and conv2d layers. */
double larch_rw_macs(const larch_model *m);
/* Parameter count (without padding). */
long larch_rw_params(const larch_model *m);

/* Writes `cfg` (a run config; model.init_from is dropped, since the new
 * checkpoint holds every tensor) to OUT_BASE.yaml and `m` as a step-0
 * checkpoint without optimizer state to OUT_BASE.h5, then reads the config
 * back (validated) into out->cfg and fills out's paths. The checkpoint is
 * written through larch_ckpt_save on MPI_COMM_WORLD, which must hold one
 * process (a program initializes MPI with larch_comm_init first when it
 * calls this more than once: a larch_comm_init made here is finalized
 * here). */
larch_status larch_rw_write(larch_node *cfg, const larch_model *m, const char *out_base,
                            larch_compress_out *out);

/* Saves m as a step-0 checkpoint without optimizer state at exactly `path`,
 * recording the run config cfg (one process: see larch_rw_write). */
larch_status larch_rw_save_checkpoint(const char *path, const larch_model *m, const larch_node *cfg);

/* The `layers` option of a method: the names of its list (NULL, 0 when the
 * option is absent or empty; -1: out of memory). The array is malloc'ed
 * (free it), the strings point into opts. */
int larch_rw_opt_layers(const larch_node *opts, const char ***names);

#endif
