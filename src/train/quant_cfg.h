/* quant_cfg.h - the `quantize` section of a run config (quant_cfg.c;
 * docs/compression/quantization.md). */
#ifndef LARCH_TRAIN_QUANT_CFG_H
#define LARCH_TRAIN_QUANT_CFG_H

#include "larch/cfg.h"
#include "larch/model.h"

extern const larch_key larch_quantize_keys[];

/* Applies a validated config's `quantize` section to a built model:
 * quantize.qat enables quantization-aware training on quantize.layers; an
 * int8 model (quantize.format: int8) is refused unless eval_only (int8 is
 * for inference). Errors name the key. */
larch_status larch_quant_apply_cfg(const larch_node *cfg, larch_model *m, int eval_only);

#endif
