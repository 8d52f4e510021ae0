/* cfg_internal.h - config-tree helpers shared by yaml_tree.c and schema.c
 * (private to liblarch). */
#ifndef LARCH_IO_CFG_INTERNAL_H
#define LARCH_IO_CFG_INTERNAL_H
#include "larch/cfg.h"

/* A new empty node (file is borrowed). NULL on allocation failure. */
larch_node *larch_node_new(larch_node_kind kind, const char *file, int line);
/* Appends an item to a sequence, or key -> item to a mapping. */
larch_status larch_node_append(larch_node *n, const char *key, int key_line, larch_node *item);
#endif
