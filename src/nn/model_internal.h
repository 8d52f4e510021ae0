/* model_internal.h - the layout of larch_model and larch_layer (private to
 * liblarch and its tests; programs use the accessors of larch/model.h).
 *
 * Built-in layers read and write their fields directly; custom layers reach
 * the same views through larch_layer_context(). The layer and model
 * invariants are those documented in larch/model.h.
 */
#ifndef LARCH_NN_MODEL_INTERNAL_H
#define LARCH_NN_MODEL_INTERNAL_H

#include "larch/model.h"

struct larch_layer {
    const larch_layer_ops *ops;
    char name[LARCH_NAME_MAX];
    int index;
    larch_model *model;
    void *priv;                       /* layer-specific settings (owned)       */
    int n_in;
    int in_node[LARCH_MAX_IN];
    larch_shape in_shape[LARCH_MAX_IN];
    larch_shape out_shape;
    int first_param, n_param;         /* range in model->params                */
    int first_buffer, n_buffer;       /* range in model->buffers               */
    size_t param_offset, param_count; /* this layer's range of the flat buffers */
    /* Set by larch_model_plan / each pass: */
    const float *x[LARCH_MAX_IN];     /* (n, in_shape[i])                      */
    float *dx[LARCH_MAX_IN];
    int need_dx[LARCH_MAX_IN], dx_acc[LARCH_MAX_IN];
    float *y, *dy;                    /* (n, out_shape)                        */
    float *w, *dw;                    /* model->param + param_offset, same for grad */
    float *buf;                       /* model->buffer + first buffer's offset */
    float *saved, *scratch;
    int need_dw;                      /* some parameter is trainable           */
    int need_backward;                /* a loss depends on this layer          */
    larch_status decl_status;         /* setup declared an invalid tensor      */
    struct larch_qlayer *q;           /* quantization state (nn/quant.h), NULL: none */
};

/* A loss as the model keeps it (built from larch_loss_opts). */
typedef struct larch_loss {
    char name[LARCH_NAME_MAX];  /* task name, for metrics                       */
    larch_loss_type type;
    int node;                   /* node whose output is scored                  */
    int target;                 /* which label set / target of the batch        */
    int on_targets;             /* mse: score the float targets, not labels     */
    float weight;               /* multiplier in the total loss                 */
    float label_smoothing;      /* softmax_ce                                   */
    /* Learned weighting by homoscedastic uncertainty (Kendall et al. 2018):
     * the task adds weight * (c exp(-s) L + s / 2), s = log sigma^2 a
     * trainable parameter, c = 1 for softmax_ce and 1/2 for mse. */
    int uncertainty;
    int log_var;                /* index of s in loss_weights.log_var           */
    float log_var_init;
    /* metric learning (metric_loss.c) */
    float margin, temperature, scale, alpha;
    int soft_margin, mining, classes, global;
    int centers;                /* center: index of its buffer in loss_centers  */
} larch_loss;

/* Losses scored over pairs of the batch: with `global` they gather the
 * whole global batch across ranks (metric_loss.c). */
static inline int larch_loss_pairwise(larch_loss_type t)
{
    return t == LARCH_LOSS_TRIPLET || t == LARCH_LOSS_CONTRASTIVE || t == LARCH_LOSS_SUPCON;
}
/* Losses that score embeddings rather than one output per class. */
static inline int larch_loss_embedding(larch_loss_type t)
{
    return larch_loss_pairwise(t) || t == LARCH_LOSS_CENTER;
}
/* Whether a loss reports an accuracy (argmax of its outputs == label). */
static inline int larch_loss_has_accuracy(const larch_loss *l)
{
    return (l->type == LARCH_LOSS_SOFTMAX_CE || l->type == LARCH_LOSS_MSE || l->type == LARCH_LOSS_ARCFACE) &&
           !l->on_targets;
}

/* A penalty as the model keeps it (built from larch_penalty_opts). */
typedef struct larch_penalty {
    float q;          /* exponent: 1 = L1, 2 = L2, other = Lq                  */
    float coef;       /* penalty = coef * sum |w|^q                            */
    int all_roles;    /* 0: weights only (default); 1: every parameter         */
    int tie;          /* soft sharing: coef * sum ||theta_A - theta_B||^2     */
    int n_pairs;
    int pairs[LARCH_TIE_MAX][2];   /* layer indices (A, B)                   */
} larch_penalty;

#define LARCH_MAX_LOSSES (LARCH_MAX_TARGETS * 2)
#define LARCH_MAX_PENALTIES 4

struct larch_model {
    larch_shape input_shape;
    int n_layers, cap_layers;
    larch_layer **layers;
    int n_params, cap_params;
    larch_param *params;
    int n_buffers, cap_buffers;
    larch_buffer *buffers;
    size_t n_floats;          /* flat parameter buffer length (with padding) */
    float *param, *grad;
    size_t n_buffer_floats;
    float *buffer;
    int finalized;
    int n_losses;
    larch_loss losses[LARCH_MAX_LOSSES];
    int n_penalties;
    larch_penalty penalties[LARCH_MAX_PENALTIES];
    /* The layer "loss_weights" holding the log-variances s of uncertainty-
     * weighted losses (NULL when none); larch_model_loss leaves d/ds of the
     * pass here and larch_model_backward moves it into the gradients. */
    larch_layer *loss_weights;
    double log_var_grad[LARCH_MAX_LOSSES];
    /* The layer "loss_centers" holding the centers of center losses as
     * buffers (NULL when none; metric_loss.c). */
    larch_layer *loss_centers;
    /* The global-batch losses' collectives (larch_model_set_loss_comm) and
     * their workspace, planned with the arena (metric_loss.c). */
    const larch_comm_hooks *loss_comm;
    void *loss_ws;
    size_t loss_ws_bytes;
    /* plan */
    int max_batch;
    int want_input_grad;      /* compute d loss / d input (attacks)          */
    larch_precision precision;/* of dense/conv2d products (precision.c)      */
    int precision_warned;     /* a bf16 product fell back to float once      */
    int no_fuse;              /* 1: plan without fusing layers (tests)       */
    float *arena;
    size_t arena_floats;
    float **node_y, **node_dy;/* per node (n_layers + 1); node_y[0] = batch x */
    int *node_dy_written;     /* scratch for planning                         */
    /* hook: called after each layer's backward with the layer's finished
     * gradient range [offset, offset + count) of the flat buffer. */
    void (*grads_ready)(void *ctx, size_t offset, size_t count);
    void *grads_ready_ctx;
    /* Magnitude pruning (src/optim/prune.c): n_floats bytes, 0 = pruned;
     * owned by the pruner, NULL when the run does not prune. Checkpoints
     * save and load it (src/io/checkpoint_masks.c). */
    unsigned char *prune_mask;
    /* Distillation (src/nn/distill.c): the teacher's logits of the current
     * micro-batch (n, C), read by the first softmax_ce loss; NULL = off. */
    const float *distill_logits;
    float distill_alpha, distill_temperature;
    /* normalizing flows (flow.c): d(loss)/d(logdet) per sample of the last
     * flow_nll scoring, its per-sample workspace (2 max_batch), the split
     * priors' temperature in the inverse pass */
    float flow_dld;
    float *flow_ld;
    float flow_temp;
};

#endif
