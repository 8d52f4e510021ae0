/* larch/model.h - layers, the model graph, losses and the activation arena.
 *
 * Activations are channels-last: a sample of per-sample shape (h, w, c) is
 * h*w*c contiguous floats with c fastest, and a batch of n samples is
 * (n, h, w, c). A dense layer's output has h = w = 1. Channels-last lets a
 * whole convolution over a batch chunk be one large GEMM (NHWC im2col).
 *
 * A model owns one flat float32 buffer of all parameters and one of all
 * gradients in the same layout (DESIGN.md decision 1). Every parameter tensor
 * is a named view (offset, shape) into them; the tensors of a layer are
 * contiguous and layers are laid out in graph order, so backward completes
 * gradients from the end of the buffer towards its start. Non-trainable
 * state (batch-norm running statistics) lives in a separate flat buffer of
 * "buffers" with the same kind of views.
 *
 * Nodes: node 0 is the model input; node i+1 is the output of layer i.
 * Layers name their inputs by layer name ("input" for node 0); a layer that
 * names none takes the previous layer's output. Losses attach to nodes.
 *
 * The activation arena is planned once for a maximum batch size
 * (larch_model_plan); forward and backward then allocate nothing.
 */
#ifndef LARCH_MODEL_H
#define LARCH_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "larch/error.h"
#include "larch/cfg.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LARCH_NAME_MAX 64
#define LARCH_MAX_IN 4
#define LARCH_MAX_TARGETS 4
#define LARCH_ALIGN_FLOATS 16   /* tensor offsets are multiples of 64 bytes */

/* Per-sample shape. The model input and every layer output hold at most
 * INT_MAX elements per sample (larger ones are rejected when the model is
 * built, naming the layer), so a per-sample size is a valid int GEMM
 * dimension; products with the batch size are size_t. */
typedef struct larch_shape { int h, w, c; } larch_shape;
static inline size_t larch_shape_size(larch_shape s) { return (size_t)s.h * s.w * s.c; }

typedef enum { LARCH_ROLE_WEIGHT, LARCH_ROLE_BIAS, LARCH_ROLE_NORM } larch_role;

/* A parameter tensor: a view into the flat parameter/gradient buffers. */
typedef struct larch_param {
    char name[2 * LARCH_NAME_MAX];  /* "<layer>.<tensor>", e.g. "fc1.weight" */
    const char *tensor;             /* "weight", "bias", "scale", "shift"   */
    int layer;                      /* owning layer index                    */
    larch_role role;
    int ndim;
    int shape[4];                   /* logical shape (dense: out, in; conv: cout, kh, kw, cin) */
    size_t offset;                  /* in floats, into model->param/grad     */
    size_t size;                    /* number of floats                      */
    int fan_in, fan_out;            /* for initialization                    */
    /* parameter-group settings (filled by the optimizer configuration) */
    float lr_mult;                  /* 1 by default; 0 = frozen              */
    int thaw_epoch;                 /* frozen until this epoch, then trained  */
    float thaw_lr_mult;             /*   at this lr_mult (0: no schedule)     */
    float wd_mult;                  /* multiplier of the weight decay        */
    int adapt;                      /* LARS/LAMB trust ratio applies         */
} larch_param;

/* A non-trainable state tensor (running statistics). */
typedef struct larch_buffer {
    char name[2 * LARCH_NAME_MAX];
    const char *tensor;
    int layer;
    size_t offset, size;
} larch_buffer;

/* Collective hooks a pass may use (SyncBatchNorm). Pure math never calls
 * MPI: src/dist installs these; in one process they are NULL. */
typedef struct larch_comm_hooks {
    /* Sums buf[0..n) over all ranks of the data-parallel group, in place. */
    void (*allreduce_sum)(void *ctx, double *buf, int n);
    void *ctx;
} larch_comm_hooks;

/* What a forward/backward pass is doing. */
typedef struct larch_pass {
    int n;                 /* local batch size of this pass                  */
    int train;             /* 1: training mode (dropout on, batch statistics) */
    uint64_t seed;         /* run seed                                       */
    uint32_t step;         /* optimizer step (randomness coordinate)         */
    uint32_t sample0;      /* global position of local sample 0 in the global batch */
    int acc_grad;          /* 1: parameter gradients accumulate (+=)         */
    const larch_comm_hooks *comm;
} larch_pass;

typedef struct larch_model larch_model;
typedef struct larch_layer larch_layer;

/* A GEMM a layer issues (row-major C(m,n) = op(A)(m,k) op(B)(k,n)), `count`
 * times per pass; for benchmarks and FLOP counts. */
typedef struct larch_gemm_shape { int m, n, k; int ta, tb; double count; } larch_gemm_shape;

/* The layer vtable (DESIGN.md decision 2). All functions but forward and
 * backward are optional (NULL). */
typedef struct larch_layer_ops {
    const char *type;                 /* config name, e.g. "dense"             */
    const larch_key *keys;            /* option schema (without type/name/input) */
    int min_inputs, max_inputs;       /* usually 1, 1                          */
    /* Reads options (already validated against `keys`) and the input shapes,
     * sets out_shape, declares parameters and buffers. Errors name the layer. */
    larch_status (*setup)(larch_layer *L, const larch_node *opts);
    /* Floats kept from forward to backward, and transient scratch floats,
     * for a pass of n samples. */
    size_t (*saved_size)(const larch_layer *L, int n);
    size_t (*scratch_size)(const larch_layer *L, int n);
    /* Initializes parameters and buffers (views are set). */
    void (*init)(larch_layer *L, uint64_t seed);
    /* y = f(x). */
    void (*forward)(larch_layer *L, const larch_pass *p);
    /* From dy: parameter gradients into dw (+= when p->acc_grad, else =) when
     * L->need_dw, and input gradients into dx[i] (+= when L->dx_acc[i],
     * else =) when L->need_dx[i]. */
    void (*backward)(larch_layer *L, const larch_pass *p);
    /* Normalizing flows: x = f^-1(y) and log|det df/dx| per sample. */
    void (*inverse)(larch_layer *L, const larch_pass *p);
    void (*logdet)(larch_layer *L, const larch_pass *p, float *out /* (n) */);
    void (*destroy)(larch_layer *L);  /* frees L->priv contents */
    /* The GEMMs of a pass of n samples: forward only, or (train) forward and
     * backward as need_dx/need_dw require. Returns how many were written
     * (at most cap). Layers without GEMMs leave this NULL. */
    int (*gemms)(const larch_layer *L, int n, int train, larch_gemm_shape *out, int cap);
} larch_layer_ops;

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
};

/* Declaring parameters and buffers (only inside ops->setup). Shapes are
 * logical; fan_in/fan_out drive initialization. Returns the index. */
LARCH_API int larch_layer_add_param(larch_layer *L, const char *tensor, larch_role role,
                                    int ndim, const int *shape, int fan_in, int fan_out);
LARCH_API int larch_layer_add_buffer(larch_layer *L, const char *tensor, size_t size);
/* Views after the model is finalized. */
LARCH_API float *larch_layer_param(larch_layer *L, int i);   /* i-th of this layer */
LARCH_API float *larch_layer_grad(larch_layer *L, int i);
LARCH_API float *larch_layer_buffer(larch_layer *L, int i);

/* The layer registry: every built-in type. */
LARCH_API const larch_layer_ops *larch_layer_find(const char *type);
LARCH_API int larch_layer_types(const larch_layer_ops *const **out);

/* ---- losses ---- */
typedef enum { LARCH_LOSS_SOFTMAX_CE, LARCH_LOSS_MSE } larch_loss_type;

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
} larch_loss;

typedef struct larch_loss_stats {
    double loss_sum;            /* sum over samples of the per-sample loss      */
    long correct;               /* argmax == label (0 when scoring float targets) */
    long count;                 /* samples scored                               */
} larch_loss_stats;

/* Schemas of a loss entry and of a penalty entry (for documentation). */
LARCH_API extern const larch_key larch_loss_keys[];
LARCH_API extern const larch_key larch_penalty_keys[];

/* ---- a batch ---- */
typedef struct larch_batch {
    int n;
    float *x;                              /* (n, input shape)              */
    int32_t *label[LARCH_MAX_TARGETS];     /* class labels per target set   */
    float *target[LARCH_MAX_TARGETS];      /* (n, target_dim) regression targets,
                                              read by losses with `on: targets` */
    int target_dim[LARCH_MAX_TARGETS];
    uint32_t sample0;                      /* global position of sample 0   */
} larch_batch;

/* ---- penalties ---- */
typedef struct larch_penalty {
    float q;          /* exponent: 1 = L1, 2 = L2, other = Lq                  */
    float coef;       /* penalty = coef * sum |w|^q                            */
    int all_roles;    /* 0: weights only (default); 1: every parameter         */
} larch_penalty;

/* ---- the model ---- */
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
    larch_loss losses[LARCH_MAX_TARGETS * 2];
    int n_penalties;
    larch_penalty penalties[4];
    /* The layer "loss_weights" holding the log-variances s of uncertainty-
     * weighted losses (NULL when none); larch_model_loss leaves d/ds of the
     * pass here and larch_model_backward moves it into the gradients. */
    larch_layer *loss_weights;
    double log_var_grad[LARCH_MAX_TARGETS * 2];
    /* plan */
    int max_batch;
    int want_input_grad;      /* compute d loss / d input (attacks)          */
    float *arena;
    size_t arena_floats;
    float **node_y, **node_dy;/* per node (n_layers + 1); node_y[0] = batch x */
    int *node_dy_written;     /* scratch for planning                         */
    /* hook: called after each layer's backward with the layer's finished
     * gradient range [offset, offset + count) of the flat buffer. */
    void (*grads_ready)(void *ctx, size_t offset, size_t count);
    void *grads_ready_ctx;
};

/* Building. larch_model_add validates `opts` (a map with `type`, optional
 * `name`, `input` or `inputs`, and the type's keys) and errors name the file,
 * line and key. larch_model_finalize allocates the flat buffers and sets
 * views. larch_model_init draws initial parameters from `seed`. */
LARCH_API larch_status larch_model_create(larch_model **out, larch_shape input);
LARCH_API larch_status larch_model_add(larch_model *m, larch_node *opts);
LARCH_API larch_status larch_model_add_loss(larch_model *m, larch_node *opts);
LARCH_API larch_status larch_model_add_penalty(larch_model *m, larch_node *opts);
LARCH_API larch_status larch_model_finalize(larch_model *m);
LARCH_API void larch_model_init(larch_model *m, uint64_t seed);
/* Builds a whole model from a config's `model`, `loss` and `regularization`
 * nodes (loss and regularization may be NULL: default softmax_ce on the last
 * layer, no penalty). */
LARCH_API larch_status larch_model_build(larch_model **out, larch_shape input,
                                         larch_node *layers, larch_node *losses,
                                         larch_node *penalties, uint64_t seed);
LARCH_API void larch_model_free(larch_model *m);

/* Plans the arena for passes of up to max_batch samples. */
LARCH_API larch_status larch_model_plan(larch_model *m, int max_batch);

/* Node lookup by layer name ("input" = 0); -1 when absent. */
LARCH_API int larch_model_node(const larch_model *m, const char *name);
LARCH_API larch_shape larch_model_node_shape(const larch_model *m, int node);
LARCH_API int larch_model_param_index(const larch_model *m, const char *name);

/* Forward over b (b->n <= max_batch). */
LARCH_API void larch_model_forward(larch_model *m, const larch_batch *b, const larch_pass *p);
/* Scores every loss on the last forward; with grad_scale != 0 also writes
 * the losses' output gradients, scaled by weight * grad_scale (use
 * 1 / global batch). stats has one entry per loss (may be NULL). Returns
 * the weighted loss sum over the local samples. */
LARCH_API double larch_model_loss(larch_model *m, const larch_batch *b, float grad_scale,
                                  larch_loss_stats *stats);
/* The factor that multiplies loss k's mean in the total: its weight, times
 * c exp(-s) when it is uncertainty-weighted. */
LARCH_API double larch_model_task_weight(const larch_model *m, int k);
/* Backward from the loss gradients written by larch_model_loss. */
LARCH_API void larch_model_backward(larch_model *m, const larch_pass *p);
/* Adds the penalties' value and gradient (on the whole flat buffer) and
 * returns the penalty value. Call once per optimizer step, after gradients
 * are reduced across ranks. */
LARCH_API double larch_model_penalty(larch_model *m, int add_grad);

/* The GEMMs of a pass of `batch` samples over all layers (for GFLOP/s reports
 * and the sgemm comparison); returns the count written. */
LARCH_API int larch_model_gemms(const larch_model *m, int batch, int train,
                                larch_gemm_shape *out, int cap);

#ifdef __cplusplus
}
#endif
#endif
