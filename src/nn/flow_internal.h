/* flow_internal.h - private: the normalizing-flow pieces model.c and loss.c
 * call (flow.c). */
#ifndef LARCH_NN_FLOW_INTERNAL_H
#define LARCH_NN_FLOW_INTERNAL_H
#include "nn/model_internal.h"

extern const larch_layer_ops larch_dequantize_ops, larch_actnorm_ops, larch_invconv_ops, larch_coupling_ops,
    larch_squeeze_ops, larch_split_ops;

/* Scores the flow_nll loss l (bits per dimension, stats added to *st);
 * writes dz (+= when acc) at `scale` and sets m->flow_dld when dz. */
void larch_flow_nll(larch_model *m, const larch_loss *l, const larch_batch *b, float scale, float *dz, int acc,
                    larch_loss_stats *st);
/* Plan-time workspace of the log-determinants (2 max_batch floats). */
larch_status larch_flow_plan(larch_model *m, int max_batch);
#endif
