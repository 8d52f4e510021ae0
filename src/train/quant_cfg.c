/* quant_cfg.c - the `quantize` section of a run config: what a quantized
 * model's checkpoint holds (written by `larch compress`) and
 * quantization-aware training (docs/compression/quantization.md). */
#include "train/quant_cfg.h"
#include "nn/quant.h"

#include <string.h>

const larch_key larch_quantize_keys[] = {
    {"format", LARCH_T_ENUM, "none", 0, 0, "none|fp16|bf16|int8", NULL,
     "what the checkpoint holds for quantize.layers (written by larch compress): float weights (none), 16-bit "
     "weights (fp16, bf16), or int8 weights and input scales, which larch eval runs with int8 kernels"},
    {"layers", LARCH_T_STRINGS, "[]", 0, 0, NULL, NULL, "the quantized (or QAT) dense and conv2d layers ([] = all of them)"},
    {"calibration", LARCH_T_ENUM, "minmax", 0, 0, "minmax|percentile|qat", NULL,
     "int8: how the input ranges were set (recorded by larch compress)"},
    {"percentile", LARCH_T_FLOAT, "99.99", 50, 100, NULL, NULL, "int8, calibration percentile: the range's percentile"},
    {"samples", LARCH_T_INT, "512", 1, 1 << 24, NULL, NULL, "int8: training samples the ranges were calibrated on"},
    {"qat", LARCH_T_BOOL, "false", 0, 0, NULL, NULL,
     "quantization-aware training: fake-quantized int8 weights and inputs in forward, straight-through gradients"},
    {"qat_start_step", LARCH_T_INT, "0", 0, 1L << 40, NULL, NULL, "QAT: the first step that fake-quantizes"},
    {"qat_momentum", LARCH_T_FLOAT, "0.99", 0, 1, NULL, NULL,
     "QAT: weight of the old input range in its moving average (the global batch's min and max)"},
    {0}};

larch_status larch_quant_apply_cfg(const larch_node *cfg, larch_model *m, int eval_only)
{
    const larch_node *q = larch_map_get(cfg, "quantize");
    if (!q) return LARCH_OK;
    const char *format = larch_cfg_str(q, "format");
    int qat = larch_cfg_bool(q, "qat");
    if (!strcmp(format, "int8") && !eval_only)
        return larch_fail(LARCH_ERR_CONFIG, "quantize.format is int8: an int8 model runs inference only (larch eval); "
                          "train the float model instead, with quantize.qat: true to recover accuracy, and quantize it again");
    if (!qat) return LARCH_OK;
    if (strcmp(format, "none") != 0)
        return larch_fail(LARCH_ERR_CONFIG, "quantize.qat trains a float model: quantize.format must be none (is %s)", format);
    const char *names[256];
    const larch_node *list = larch_map_get(q, "layers");
    int n = list && list->kind == LARCH_NODE_SEQ ? list->n : 0;
    if (n > 256) return larch_fail(LARCH_ERR_CONFIG, "quantize.layers: at most 256 layers (got %d)", n);
    for (int i = 0; i < n; i++) names[i] = list->items[i]->scalar;
    return larch_qat_enable(m, names, n, larch_cfg_int(q, "qat_start_step"), (float)larch_cfg_float(q, "qat_momentum"));
}
