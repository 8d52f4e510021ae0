/* larch/model_cfg.h - the YAML front end of the model API.
 *
 * A config's `model` (a list of layer mappings), `loss` and `regularization`
 * sections are validated against the key schemas below (errors name the
 * file, the line and the key, and defaults are filled in so the resolved
 * config shows every value), translated into the options structs of
 * larch/model.h by one function per layer type, and handed to the same
 * builders a C program calls (larch_model_add_layer, larch_model_add_loss,
 * larch_model_add_penalty): one path. Layers never read the config tree.
 *
 * A custom layer type (larch_layer_register) can be used from YAML too once
 * its keys and translation are registered with larch_cfg_layer_register.
 */
#ifndef LARCH_MODEL_CFG_H
#define LARCH_MODEL_CFG_H

#include "larch/cfg.h"
#include "larch/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How YAML describes a layer type. */
typedef struct larch_cfg_layer {
    const char *type;        /* a type of the layer registry (larch_layer_find)       */
    const larch_key *keys;   /* its option keys (besides type, name, input, inputs)   */
    size_t opts_size;        /* sizeof its options struct (0: setup gets NULL)        */
    /* Fills *opts (opts_size zeroed bytes) from `map`, already validated
     * against `keys` with the defaults filled in. Strings may point into
     * the map: they are only read during the add. NULL when opts_size is 0. */
    larch_status (*from_node)(const larch_node *map, void *opts);
} larch_cfg_layer;

/* The YAML descriptions: the built-in types (in registry order), then the
 * registered ones. */
LARCH_API const larch_cfg_layer *larch_cfg_layer_find(const char *type);
LARCH_API int larch_cfg_layer_types(const larch_cfg_layer *const **out);
/* Registers the YAML description of a layer type already in the layer
 * registry (up to 32). `desc` and its keys must outlive their use (static
 * storage). Not thread-safe: call before parsing configs. */
LARCH_API larch_status larch_cfg_layer_register(const larch_cfg_layer *desc);

/* Schemas of a loss entry and of a penalty entry. */
LARCH_API extern const larch_key larch_loss_keys[];
LARCH_API extern const larch_key larch_penalty_keys[];

/* One layer (a map with `type`, optional `name`, `input` or `inputs`, and
 * the type's keys), loss or penalty from its config node. The node is
 * validated in place (defaults filled); errors name the file, line and key
 * (model.N..., loss[.N]..., regularization.N...). */
LARCH_API larch_status larch_model_add_cfg(larch_model *m, larch_node *layer);
LARCH_API larch_status larch_model_add_loss_cfg(larch_model *m, larch_node *loss);
LARCH_API larch_status larch_model_add_penalty_cfg(larch_model *m, larch_node *penalty);

/* Builds, finalizes and initializes (from `seed`) a whole model from a
 * config's `model` list and its `loss` and `regularization` nodes (each a
 * mapping or a list of them; NULL: default softmax_ce on the last layer,
 * no penalty). */
LARCH_API larch_status larch_model_build(larch_model **out, larch_shape input,
                                         larch_node *layers, larch_node *losses,
                                         larch_node *penalties, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
