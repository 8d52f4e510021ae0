/* methods.h - the compression methods' entry points (private to liblarch);
 * the table is methods.c, the public face larch/compress.h. */
#ifndef LARCH_COMPRESS_METHODS_H
#define LARCH_COMPRESS_METHODS_H

#include "larch/compress.h"

/* prune_magnitude.c: one-shot magnitude pruning stored sparse (method "prune"). */
extern const larch_key larch_compress_prune_keys[];
larch_status larch_compress_prune(const larch_compress_src *src, larch_node *opts, const char *out_base,
                                  larch_compress_out *out);

#endif
