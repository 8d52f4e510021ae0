/* loss.h - private: loss and penalty helpers shared by model.c and loss.c. */
#ifndef LARCH_NN_LOSS_H
#define LARCH_NN_LOSS_H
#include "nn/model_internal.h"

/* metric_loss.c: the workspace bytes the metric losses need at max_batch
 * (gather buffers for the global batch included), planned with the arena;
 * and the scoring of a metric loss l on the last forward (stats added to
 * *st; dz written (+= when acc) at `scale` = grad_scale * task weight when
 * not NULL; a center loss also updates its centers when grad_scale != 0). */
size_t larch_metric_ws_bytes(const larch_model *m, int max_batch);
void larch_metric_loss(larch_model *m, const larch_loss *l, const larch_batch *b, float grad_scale, float scale,
                       float *dz, int acc, larch_loss_stats *st);

/* distill.c: the index of the loss that distillation replaces (the first
 * softmax_ce; -1 when none), and that loss over (n, C) student logits z and
 * teacher logits t (stats and dz as softmax_ce). */
int larch_distill_loss_index(const larch_model *m);
void larch_distill_ce(const float *z, const float *t, const int32_t *y, int n, int C, float eps, float alpha, float T,
                      float scale, float *dz, int acc, larch_loss_stats *st);

/* model.c: appends the layer "loss_centers" when some loss is a center loss. */
larch_status larch_model_add_loss_centers(larch_model *m);
#endif
