/* methods.h - the compression methods' entry points (private to liblarch);
 * the table is methods.c, the public face larch/compress.h. */
#ifndef LARCH_COMPRESS_METHODS_H
#define LARCH_COMPRESS_METHODS_H

#include "larch/compress.h"

/* quantize.c: post-training quantization (docs/compression/quantization.md) */
extern const larch_key larch_quant_half_keys[], larch_quant_int8_keys[];
larch_status larch_compress_fp16(const larch_compress_src *src, larch_node *opts, const char *out_base, larch_compress_out *out);
larch_status larch_compress_bf16(const larch_compress_src *src, larch_node *opts, const char *out_base, larch_compress_out *out);
larch_status larch_compress_int8(const larch_compress_src *src, larch_node *opts, const char *out_base, larch_compress_out *out);
/* structured pruning of conv2d filters and dense neurons (prune_filters.c) */
extern const larch_key larch_structured_keys[];
larch_status larch_compress_structured(const larch_compress_src *src, larch_node *opts, const char *out_base,
                                       larch_compress_out *out);
/* truncated-SVD factorization of dense and conv2d layers (factorize.c) */
extern const larch_key larch_svd_keys[];
larch_status larch_compress_svd(const larch_compress_src *src, larch_node *opts, const char *out_base,
                                larch_compress_out *out);
/* prune_magnitude.c: one-shot magnitude pruning stored sparse (method "prune"). */
extern const larch_key larch_compress_prune_keys[];
larch_status larch_compress_prune(const larch_compress_src *src, larch_node *opts, const char *out_base,
                                  larch_compress_out *out);

#endif
