/* larch/model.h - layers, the model graph, losses and the activation arena:
 * the typed C API that builds and runs a model (docs/api.md). YAML configs
 * are a front end over it (larch/model_cfg.h): they are parsed into the same
 * options structs and call the same builders.
 *
 * Activations are channels-last: a sample of per-sample shape (h, w, c) is
 * h*w*c contiguous floats with c fastest, and a batch of n samples is
 * (n, h, w, c). A dense layer's output has h = w = 1. Channels-last lets a
 * whole convolution over a batch chunk be one large GEMM (NHWC im2col).
 *
 * A model owns one flat float32 buffer of all parameters and one of all
 * gradients in the same layout (docs/design.md, decision 1). Every parameter tensor
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
 *
 * Ownership: larch_model and larch_layer are opaque. A model owns its layers,
 * its parameter, gradient and buffer storage and its arena; every pointer the
 * accessors below return points into the model and must not be freed.
 * Parameter, gradient and buffer pointers are valid from larch_model_finalize
 * until larch_model_free; arena pointers (node outputs and gradients, a
 * layer's x, y, dx, dy, saved, scratch) from larch_model_plan until the next
 * larch_model_plan or larch_model_free. Builders copy the strings and options
 * they are given: the caller's structs and strings may be reused at once.
 *
 * Thread safety: a model is used by one thread at a time (building, passes,
 * accessors); distinct models may be used by distinct threads at once. The
 * layer type registry (larch_layer_register) is process-wide: register types
 * before any thread builds models. Error messages are per thread.
 */
#ifndef LARCH_MODEL_H
#define LARCH_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "larch/error.h"

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

/* Collective hooks a pass may use (SyncBatchNorm, the global-batch losses).
 * Pure math never calls MPI: src/parallel installs these; in one process
 * they are NULL. */
typedef struct larch_comm_hooks {
    /* Sums buf[0..n) over all ranks of the data-parallel group, in place. */
    void (*allreduce_sum)(void *ctx, double *buf, int n);
    void *ctx;
    /* Every rank sends `bytes` bytes and receives every rank's, in rank
     * order, in recv (ranks * bytes). NULL: the local batch is the global
     * one (docs/metric_learning.md). */
    void (*allgather)(void *ctx, const void *send, size_t bytes, void *recv);
    int ranks;             /* ranks of the group (0 or 1: one process)        */
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

/* ==== Layer types ==== */

/* The layer vtable (docs/design.md, decision 2). All functions but forward and
 * backward (and setup) are optional (NULL). Built-in types and custom ones
 * (defined by a program, see docs/api.md) are alike. An ops struct must
 * outlive every model that uses it (give it static storage). Its functions
 * are called from the thread that calls the larch_model_* function running
 * them, never concurrently for one model. Inside them the layer's views
 * are read with larch_layer_context() and its tensors with
 * larch_layer_param/grad/buffer. */
typedef struct larch_layer_ops {
    const char *type;                 /* type name, e.g. "dense" (also its YAML `type`) */
    int min_inputs, max_inputs;       /* usually 1, 1; at most LARCH_MAX_IN    */
    /* Reads the options (`opts`: the type's options struct as given to
     * larch_model_add_layer, NULL meaning the type's defaults; only valid
     * during the call, so copy what is needed into priv), checks them and the
     * input shapes, sets the output shape (larch_layer_set_out_shape) and
     * declares parameters and buffers (larch_layer_add_param/add_buffer).
     * Errors name the layer: "layer 'fc1' (dense): ...". After a failure the
     * layer is destroyed (destroy is called when set). */
    larch_status (*setup)(larch_layer *L, const void *opts);
    /* Floats kept from forward to backward, and transient scratch floats,
     * for a pass of n samples. */
    size_t (*saved_size)(const larch_layer *L, int n);
    size_t (*scratch_size)(const larch_layer *L, int n);
    /* Initializes parameters and buffers (views are set). */
    void (*init)(larch_layer *L, uint64_t seed);
    /* y = f(x) over the pass's n samples. */
    void (*forward)(larch_layer *L, const larch_pass *p);
    /* From dy: parameter gradients into dw (+= when p->acc_grad, else =) when
     * need_dw, and input gradients into dx[i] (+= when dx_acc[i], else =)
     * when need_dx[i] (see larch_layer_ctx). */
    void (*backward)(larch_layer *L, const larch_pass *p);
    /* Normalizing flows: x = f^-1(y) and log|det df/dx| per sample. */
    void (*inverse)(larch_layer *L, const larch_pass *p);
    void (*logdet)(larch_layer *L, const larch_pass *p, float *out /* (n) */);
    void (*destroy)(larch_layer *L);  /* frees what priv points to */
    /* The GEMMs of a pass of n samples: forward only, or (train) forward and
     * backward as need_dx/need_dw require. Returns how many were written
     * (at most cap). Layers without GEMMs leave this NULL. */
    int (*gemms)(const larch_layer *L, int n, int train, larch_gemm_shape *out, int cap);
} larch_layer_ops;

/* The type registry: the built-in types, then those registered. */
LARCH_API const larch_layer_ops *larch_layer_find(const char *type);
LARCH_API int larch_layer_types(const larch_layer_ops *const **out);
/* Registers a custom layer type under ops->type so that larch_layer_find
 * (and, with a larch_cfg_layer description, YAML configs) can name it. The
 * name must be new; up to 32 types may be registered. Not thread-safe: call
 * before building models. A type need not be registered to be used: see
 * larch_model_add_layer. */
LARCH_API larch_status larch_layer_register(const larch_layer_ops *ops);

/* ---- what a layer's own functions use ---- */

/* A snapshot of a layer's views, for its forward/backward (and setup:
 * names and shapes). Arena pointers are NULL before larch_model_plan,
 * parameter pointers NULL before larch_model_finalize. Taking it is cheap
 * and allocates nothing; take it again after a re-plan. */
typedef struct larch_layer_ctx {
    const char *name;                 /* the layer's name                       */
    int index;                        /* position in the model (its node - 1)   */
    int n_in;                         /* inputs                                 */
    larch_shape in_shape[LARCH_MAX_IN];
    larch_shape out_shape;
    void *priv;                       /* the layer's own state (set_priv)       */
    const float *x[LARCH_MAX_IN];     /* inputs, (n, in_shape[i])               */
    float *dx[LARCH_MAX_IN];          /* input gradients (NULL: not needed)     */
    int need_dx[LARCH_MAX_IN];        /* backward writes dx[i] ...              */
    int dx_acc[LARCH_MAX_IN];         /* ... adding to it (+=) rather than (=)  */
    float *y;                         /* output, (n, out_shape)                 */
    float *dy;                        /* output gradient (NULL: no backward)    */
    float *saved;                     /* saved_size(max batch) floats, kept from forward to backward */
    float *scratch;                   /* scratch_size(max batch) floats, shared by all layers: transient */
    float *w, *dw;                    /* start of the layer's parameters / gradients (tensor i: larch_layer_param(L, i)) */
    float *buf;                       /* start of its buffers (tensor i: larch_layer_buffer(L, i)) */
    int n_param, n_buffer;            /* its tensors                            */
    int need_dw;                      /* backward writes parameter gradients    */
    int need_backward;                /* some loss depends on this layer        */
} larch_layer_ctx;
LARCH_API larch_layer_ctx larch_layer_context(const larch_layer *L);

LARCH_API const char *larch_layer_name(const larch_layer *L);
LARCH_API const char *larch_layer_type(const larch_layer *L);
LARCH_API const larch_layer_ops *larch_layer_get_ops(const larch_layer *L);
LARCH_API int larch_layer_n_inputs(const larch_layer *L);
LARCH_API larch_shape larch_layer_in_shape(const larch_layer *L, int i);
LARCH_API larch_shape larch_layer_out_shape(const larch_layer *L);
LARCH_API void *larch_layer_priv(const larch_layer *L);
/* Only inside ops->setup: the output shape, and the layer's own state
 * (owned by the layer: ops->destroy frees it). */
LARCH_API void larch_layer_set_out_shape(larch_layer *L, larch_shape s);
LARCH_API void larch_layer_set_priv(larch_layer *L, void *priv);

/* Declaring parameters and buffers (only inside ops->setup). Shapes are
 * logical; fan_in/fan_out drive initialization. Returns the index. */
LARCH_API int larch_layer_add_param(larch_layer *L, const char *tensor, larch_role role,
                                    int ndim, const int *shape, int fan_in, int fan_out);
LARCH_API int larch_layer_add_buffer(larch_layer *L, const char *tensor, size_t size);
/* Views after the model is finalized. */
LARCH_API float *larch_layer_param(larch_layer *L, int i);   /* i-th of this layer */
LARCH_API float *larch_layer_grad(larch_layer *L, int i);
LARCH_API float *larch_layer_buffer(larch_layer *L, int i);

/* Parameter initialization schemes (`init` of dense and conv2d). */
typedef enum {
    LARCH_INIT_HE,       /* Normal(0, 2 / fan_in), He et al. 2015               */
    LARCH_INIT_XAVIER,   /* Normal(0, 2 / (fan_in + fan_out)), Glorot 2010      */
    LARCH_INIT_LECUN,    /* Normal(0, 1 / fan_in)                               */
    LARCH_INIT_ZEROS,
    LARCH_INIT_ONES
} larch_init_kind;
/* Fills w[0..n) by `kind`, drawing from the stream (seed, LARCH_RNG_INIT,
 * hash(layer), param_index): deterministic, for custom layers' init too. */
LARCH_API void larch_init_fill(float *w, size_t n, larch_init_kind kind, int fan_in, int fan_out,
                               uint64_t seed, const char *layer, int param_index);

/* ==== Options of the built-in layer types ====
 *
 * One struct per type; every field has a default, the same as the YAML key
 * of the same name (larch config --help), given by the type's _DEFAULTS
 * initializer. Start from it and set what differs:
 *     larch_conv2d_opts c = LARCH_CONV2D_DEFAULTS;
 *     c.filters = 32; c.padding = 1;
 *     larch_model_add_conv2d(m, "conv1", NULL, &c);
 * Fields marked "required" have no default: the builder rejects the value
 * the _DEFAULTS initializer leaves there. Passing NULL options means the
 * defaults. Builders check every value (LARCH_ERR_INVALID naming the layer
 * and the field). */

typedef struct larch_dense_opts {
    int units;                /* required: output features, 1..2^24          */
    int bias;                 /* 1: learn a bias                             */
    larch_init_kind init;     /* weight initialization (he)                  */
} larch_dense_opts;
#define LARCH_DENSE_DEFAULTS {.units = 0, .bias = 1, .init = LARCH_INIT_HE}

typedef struct larch_conv2d_opts {
    int filters;              /* required: output channels, 1..2^20          */
    int kernel;               /* square kernel size, 1..1024 (3)             */
    int stride;               /* step of the kernel, 1..1024 (1)             */
    int padding;              /* zero padding on each side, 0..1024 (0)      */
    int bias;                 /* 1: learn a bias per output channel          */
    larch_init_kind init;     /* weight initialization (he)                  */
} larch_conv2d_opts;
#define LARCH_CONV2D_DEFAULTS {.filters = 0, .kernel = 3, .stride = 1, .padding = 0, .bias = 1, .init = LARCH_INIT_HE}

/* How conv2d layers compute (docs/performance.md, "Convolution backends"):
 * OPENBLAS is im2col + sgemm (always built); ONEDNN is oneDNN's convolution
 * primitives (only when larch was built with oneDNN, LARCH_ONEDNN); AUTO
 * uses oneDNN for the layer shapes where it was measured to win, else
 * OpenBLAS. The setting is process-wide and read by every pass; the
 * environment variable LARCH_CONV_BACKEND=auto|onednn|openblas, when set,
 * overrides it (for benchmarks). Setting ONEDNN in a build without oneDNN
 * fails with LARCH_ERR_INVALID, as does an invalid LARCH_CONV_BACKEND. */
typedef enum { LARCH_CONV_AUTO = 0, LARCH_CONV_ONEDNN, LARCH_CONV_OPENBLAS } larch_conv_backend;
LARCH_API larch_status larch_set_conv_backend(larch_conv_backend b);
/* The backend in effect: LARCH_CONV_BACKEND if set, else the last setting. */
LARCH_API larch_conv_backend larch_get_conv_backend(void);
/* "auto", "onednn", "openblas" <-> the enum; parse fails with LARCH_ERR_INVALID. */
LARCH_API const char *larch_conv_backend_name(larch_conv_backend b);
LARCH_API larch_status larch_conv_backend_parse(const char *name, larch_conv_backend *out);
/* 1 when this liblarch was built with oneDNN. */
LARCH_API int larch_conv_onednn_built(void);

/* maxpool and avgpool. */
typedef struct larch_pool_opts {
    int size;                 /* window size, 1..1024 (2)                    */
    int stride;               /* window step, 0..1024; 0 = size (0)          */
    int padding;              /* zero padding on each side, at most size/2 (0) */
} larch_pool_opts;
#define LARCH_POOL_DEFAULTS {.size = 2, .stride = 0, .padding = 0}

typedef struct larch_leaky_relu_opts {
    float slope;              /* slope for negative inputs, 0..1 (0.01)      */
} larch_leaky_relu_opts;
#define LARCH_LEAKY_RELU_DEFAULTS {.slope = 0.01f}

typedef struct larch_dropout_opts {
    float rate;               /* probability of dropping an element, 0..0.999 (0.5) */
} larch_dropout_opts;
#define LARCH_DROPOUT_DEFAULTS {.rate = 0.5f}

typedef struct larch_batchnorm_opts {
    float momentum;           /* weight of the batch statistics in the running ones, 0..1 (0.1) */
    float eps;                /* added to the variance, 0..1 (1e-5)          */
    int affine;               /* 1: learn scale and shift                    */
    int sync;                 /* 1: statistics over all ranks (SyncBatchNorm) (0) */
} larch_batchnorm_opts;
#define LARCH_BATCHNORM_DEFAULTS {.momentum = 0.1f, .eps = 1e-5f, .affine = 1, .sync = 0}

/* layernorm and instancenorm. */
typedef struct larch_norm_opts {
    float eps;                /* added to the variance, 0..1 (1e-5)          */
    int affine;               /* 1: learn scale and shift                    */
} larch_norm_opts;
#define LARCH_NORM_DEFAULTS {.eps = 1e-5f, .affine = 1}

/* l2norm: y = x / sqrt(||x||^2 + eps) per sample over all its features. */
typedef struct larch_l2norm_opts {
    float eps;                /* added to the squared norm, 1e-30..1 (1e-12) */
} larch_l2norm_opts;
#define LARCH_L2NORM_DEFAULTS {.eps = 1e-12f}

/* cosine: y_j = <x / |x|, w_j / |w_j|> (|v| = sqrt(||v||^2 + eps)): a dense
 * layer without bias whose weight rows and input are L2-normalized; its
 * outputs are the cosine logits that the arcface loss scores. */
typedef struct larch_cosine_opts {
    int units;                /* required: output features (classes), 1..2^24 */
    float eps;                /* added to the squared norms, 1e-30..1 (1e-12) */
} larch_cosine_opts;
#define LARCH_COSINE_DEFAULTS {.units = 0, .eps = 1e-12f}

typedef struct larch_groupnorm_opts {
    int groups;               /* required: channel groups (must divide the channels) */
    float eps;                /* added to the variance, 0..1 (1e-5)          */
    int affine;               /* 1: learn scale and shift                    */
} larch_groupnorm_opts;
#define LARCH_GROUPNORM_DEFAULTS {.groups = 0, .eps = 1e-5f, .affine = 1}

/* ==== Losses and penalties ==== */

typedef enum {
    LARCH_LOSS_SOFTMAX_CE, LARCH_LOSS_MSE,
    /* metric learning (docs/metric_learning.md): embeddings and labels */
    LARCH_LOSS_TRIPLET, LARCH_LOSS_CONTRASTIVE, LARCH_LOSS_CENTER, LARCH_LOSS_SUPCON,
    LARCH_LOSS_ARCFACE,      /* cosine logits (layer type cosine) and labels */
    LARCH_LOSS_FLOW_NLL      /* normalizing flows: bits/dim of the last node and the layers' logdets (larch/flow.h) */
} larch_loss_type;
/* Triplet mining over the (global) batch (Hermans et al. 2017). */
typedef enum { LARCH_MINING_BATCH_HARD, LARCH_MINING_BATCH_ALL } larch_mining;
typedef enum { LARCH_WEIGHTING_FIXED, LARCH_WEIGHTING_UNCERTAINTY } larch_loss_weighting;

/* A loss scoring one node. The metric-learning types (triplet, contrastive,
 * supcon, center, arcface) and their options are described in
 * docs/metric_learning.md: triplet, contrastive and supcon (and the center
 * update) with `global` see the global batch of all ranks through the
 * allgather hook (larch_model_set_loss_comm). softmax_ce: per-sample -sum_j q_j log softmax(z)_j
 * with q = (1 - label_smoothing) onehot(y) + label_smoothing / C. mse:
 * mean_j (z_j - t_j)^2 with t = one-hot labels, or with on_targets the
 * batch's float regression targets (no accuracy). Uncertainty weighting (Kendall et al. 2018): the task adds
 * weight * (c exp(-s) L + s / 2), s = log sigma^2 a trainable parameter
 * (tensor "loss_weights.log_var"), c = 1 for softmax_ce and 1/2 for mse. */
typedef struct larch_loss_opts {
    larch_loss_type type;     /* loss function (softmax_ce)                  */
    const char *name;         /* task name in metrics, unique ("main"; NULL = "main") */
    const char *input;        /* scored layer (NULL or "": the last layer added so far) */
    int target;               /* label set of the batch, 0..LARCH_MAX_TARGETS-1 (0) */
    int on_targets;           /* mse only: score the batch's float targets, not labels (0; YAML on: targets) */
    float weight;             /* weight in the total loss, 0..1e6 (1)        */
    float label_smoothing;    /* softmax_ce: smoothing eps, 0..0.999 (0)     */
    larch_loss_weighting weighting; /* fixed or uncertainty (fixed)         */
    float log_var_init;       /* uncertainty: initial s = log sigma^2, -20..20 (0) */
    /* metric learning (docs/metric_learning.md) */
    float margin;             /* triplet, contrastive: distance margin; arcface: angular margin (rad), 0..10 (0.5) */
    int soft_margin;          /* triplet: softplus(d_ap - d_an) instead of the hinge (0) */
    larch_mining mining;      /* triplet: batch_hard or batch_all (batch_hard) */
    float temperature;        /* supcon: tau, 0.001..100 (0.1)               */
    float scale;              /* arcface: s, 1..1024 (64)                    */
    float alpha;              /* center: rate of the center update, 0..1 (0.5) */
    int classes;              /* center: number of classes (required for center), 1..2^20 */
    int global;               /* triplet, contrastive, supcon, center update: over the global
                                 batch of all ranks (1), or each rank's own part (0) */
} larch_loss_opts;
#define LARCH_LOSS_DEFAULTS {.type = LARCH_LOSS_SOFTMAX_CE, .name = "main", .input = NULL, .target = 0, .on_targets = 0, \
                             .weight = 1.0f, .label_smoothing = 0.0f, .weighting = LARCH_WEIGHTING_FIXED, .log_var_init = 0.0f, \
                             .margin = 0.5f, .soft_margin = 0, .mining = LARCH_MINING_BATCH_HARD, .temperature = 0.1f, \
                             .scale = 64.0f, .alpha = 0.5f, .classes = 0, .global = 1}

typedef enum { LARCH_PENALTY_UNSET, LARCH_PENALTY_L1, LARCH_PENALTY_L2, LARCH_PENALTY_LQ,
               LARCH_PENALTY_TIE } larch_penalty_type;
#define LARCH_TIE_MAX 16

/* A penalty coef * sum |w|^q added to the loss, over weights (or every
 * trainable parameter); or, type tie (soft parameter sharing), coef * sum
 * over the layer pairs (A, B) of ||theta_A - theta_B||^2 over their
 * corresponding parameter tensors (same shapes), with gradient to both. */
typedef struct larch_penalty_opts {
    larch_penalty_type type;  /* required: l1 (q = 1), l2 (q = 2), lq or tie */
    float coef;               /* coefficient, 0..1e3 (required in YAML; 0 here adds nothing) */
    float q;                  /* exponent of type lq, 1..10 (2)              */
    int all_params;           /* 0: weights only; 1: every parameter (YAML apply_to: all) */
    const char *const *layers;/* tie: 2 * n_pairs layer names, pair k = (layers[2k], layers[2k+1]) */
    int n_pairs;              /* tie: 1..LARCH_TIE_MAX pairs                 */
} larch_penalty_opts;
#define LARCH_PENALTY_DEFAULTS {.type = LARCH_PENALTY_UNSET, .coef = 0.0f, .q = 2.0f, .all_params = 0, .layers = NULL, .n_pairs = 0}

typedef struct larch_loss_stats {
    double loss_sum;            /* sum over samples of the per-sample loss      */
    long correct;               /* argmax == label (0 when scoring float targets) */
    long count;                 /* samples scored                               */
} larch_loss_stats;

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

/* ==== Building a model ====
 *
 * create, add layers (in graph order), add losses and penalties, finalize
 * (allocates the flat buffers), init (draws the parameters), plan (the
 * arena), then passes. `name` NULL or "" gives "<type><index>" (e.g.
 * "dense3"); a name has 1-63 characters, no '.' or '/', is not "input" and
 * is unique. `input` names an earlier layer or "input" (the model input);
 * NULL takes the previous layer's output. Errors leave the model as it was
 * before the call. */
LARCH_API larch_status larch_model_create(larch_model **out, larch_shape input);
/* Whether `name` may name a layer (the rule above, uniqueness aside). */
LARCH_API int larch_layer_name_valid(const char *name);

/* Any layer type: `ops` (built-in from larch_layer_find, or the caller's
 * own), `inputs` the names of its n_inputs inputs (n_inputs 0: the previous
 * layer), `opts` handed to ops->setup. The typed builders below call this. */
LARCH_API larch_status larch_model_add_layer(larch_model *m, const larch_layer_ops *ops, const char *name,
                                             const char *const *inputs, int n_inputs, const void *opts);

LARCH_API larch_status larch_model_add_dense(larch_model *m, const char *name, const char *input,
                                             const larch_dense_opts *o);
LARCH_API larch_status larch_model_add_conv2d(larch_model *m, const char *name, const char *input,
                                              const larch_conv2d_opts *o);
LARCH_API larch_status larch_model_add_maxpool(larch_model *m, const char *name, const char *input,
                                               const larch_pool_opts *o);
LARCH_API larch_status larch_model_add_avgpool(larch_model *m, const char *name, const char *input,
                                               const larch_pool_opts *o);
LARCH_API larch_status larch_model_add_global_avgpool(larch_model *m, const char *name, const char *input);
LARCH_API larch_status larch_model_add_flatten(larch_model *m, const char *name, const char *input);
/* y = sum of 2 to LARCH_MAX_IN inputs of one shape (residual connections). */
LARCH_API larch_status larch_model_add_add(larch_model *m, const char *name, const char *const *inputs,
                                           int n_inputs);
LARCH_API larch_status larch_model_add_relu(larch_model *m, const char *name, const char *input);
LARCH_API larch_status larch_model_add_leaky_relu(larch_model *m, const char *name, const char *input,
                                                  const larch_leaky_relu_opts *o);
LARCH_API larch_status larch_model_add_gelu(larch_model *m, const char *name, const char *input);
LARCH_API larch_status larch_model_add_tanh(larch_model *m, const char *name, const char *input);
LARCH_API larch_status larch_model_add_sigmoid(larch_model *m, const char *name, const char *input);
LARCH_API larch_status larch_model_add_dropout(larch_model *m, const char *name, const char *input,
                                               const larch_dropout_opts *o);
LARCH_API larch_status larch_model_add_batchnorm(larch_model *m, const char *name, const char *input,
                                                 const larch_batchnorm_opts *o);
LARCH_API larch_status larch_model_add_layernorm(larch_model *m, const char *name, const char *input,
                                                 const larch_norm_opts *o);
LARCH_API larch_status larch_model_add_groupnorm(larch_model *m, const char *name, const char *input,
                                                 const larch_groupnorm_opts *o);
LARCH_API larch_status larch_model_add_instancenorm(larch_model *m, const char *name, const char *input,
                                                    const larch_norm_opts *o);
LARCH_API larch_status larch_model_add_l2norm(larch_model *m, const char *name, const char *input,
                                              const larch_l2norm_opts *o);
LARCH_API larch_status larch_model_add_cosine(larch_model *m, const char *name, const char *input,
                                              const larch_cosine_opts *o);

/* Losses (up to 2 * LARCH_MAX_TARGETS; none: softmax_ce named "main" on the
 * last layer) and penalties (up to 4); `o` NULL means the defaults. */
LARCH_API larch_status larch_model_add_loss(larch_model *m, const larch_loss_opts *o);
LARCH_API larch_status larch_model_add_penalty(larch_model *m, const larch_penalty_opts *o);

/* Allocates the flat buffers and sets the views. */
LARCH_API larch_status larch_model_finalize(larch_model *m);
/* Draws initial parameters from `seed` (the same seed gives the same
 * parameters, however the model was built). */
LARCH_API void larch_model_init(larch_model *m, uint64_t seed);
LARCH_API void larch_model_free(larch_model *m);

/* Before larch_model_plan: also compute d loss / d input (node 0's
 * gradient; for attacks and gradient checks). */
LARCH_API void larch_model_set_input_grad(larch_model *m, int want);
/* The collectives the global-batch losses use (triplet, contrastive,
 * supcon and the center update with `global`; docs/metric_learning.md).
 * larch_model_plan sizes their gather buffers for max_batch * hooks->ranks
 * samples, so set the hooks before it: on a planned model this allocates
 * the larger buffers itself (LARCH_ERR_NOMEM, the hooks unset, when that
 * fails). NULL (the default) or ranks <= 1: the local batch is the global
 * one. Every rank must call larch_model_loss for each batch (a rank with no
 * samples too, b.n = 0), since the losses gather. The hooks must stay
 * valid while larch_model_loss runs; set NULL before they go. */
LARCH_API larch_status larch_model_set_loss_comm(larch_model *m, const larch_comm_hooks *hooks);
/* Plans the arena for passes of up to max_batch samples. */
LARCH_API larch_status larch_model_plan(larch_model *m, int max_batch);

/* Arithmetic of the layers' matrix products (dense, conv2d):
 *   FP32 (the default): float inputs, float products (OpenBLAS);
 *   BF16: inputs and weights rounded to bfloat16, products summed in float
 *         (oneDNN's AVX512-BF16 / AMX kernels). Parameters, gradients,
 *         optimizer state and every other layer stay float: bf16 is a
 *         compute precision, the master weights are the float buffer.
 *         bf16 keeps float's exponent range, so no loss scaling is needed.
 * Fails (LARCH_ERR_INVALID, saying why) when this build or CPU has no fast
 * bf16 matmul; the model is unchanged then. Any time between passes; on a
 * planned model a change of precision plans it again for the same batch
 * (the layers' scratch differs: conv2d runs oneDNN's bf16 convolutions), so
 * pointers into the previous activations are stale. */
typedef enum { LARCH_PRECISION_FP32 = 0, LARCH_PRECISION_BF16 = 1 } larch_precision;
LARCH_API larch_status larch_model_set_precision(larch_model *m, larch_precision p);
LARCH_API larch_precision larch_model_precision(const larch_model *m);

/* ==== Inspecting a model ==== */

LARCH_API larch_shape larch_model_input_shape(const larch_model *m);
LARCH_API int larch_model_n_layers(const larch_model *m);
LARCH_API larch_layer *larch_model_layer(const larch_model *m, int i);   /* 0 <= i < n_layers */
/* Node lookup by layer name ("input" = 0); -1 when absent. */
LARCH_API int larch_model_node(const larch_model *m, const char *name);
LARCH_API larch_shape larch_model_node_shape(const larch_model *m, int node);
/* A node's activations (n, shape) of the last forward (node 0: the batch's
 * x), and its gradient buffer (NULL when backward does not reach it; node 0
 * only with larch_model_set_input_grad). NULL before larch_model_plan. */
LARCH_API const float *larch_model_node_output(const larch_model *m, int node);
LARCH_API float *larch_model_node_grad(const larch_model *m, int node);

/* Parameters: descriptors (name "<layer>.<tensor>", shape, size, offset
 * into the flat buffers, group settings) and their values and gradients. */
LARCH_API int larch_model_n_params(const larch_model *m);
LARCH_API const larch_param *larch_model_param(const larch_model *m, int i);
LARCH_API int larch_model_param_index(const larch_model *m, const char *name);   /* -1 when absent */
LARCH_API float *larch_model_param_data(const larch_model *m, int i);
LARCH_API float *larch_model_grad_data(const larch_model *m, int i);
/* The flat buffers and their length in floats (padding included). */
LARCH_API float *larch_model_flat_params(const larch_model *m, size_t *n_floats);
LARCH_API float *larch_model_flat_grads(const larch_model *m, size_t *n_floats);
/* Non-trainable buffers (running statistics). */
LARCH_API int larch_model_n_buffers(const larch_model *m);
LARCH_API const larch_buffer *larch_model_buffer(const larch_model *m, int i);
LARCH_API float *larch_model_buffer_data(const larch_model *m, int i);
LARCH_API float *larch_model_flat_buffers(const larch_model *m, size_t *n_floats);
/* Losses: count and task names; penalties: count. */
LARCH_API int larch_model_n_losses(const larch_model *m);
LARCH_API const char *larch_model_loss_name(const larch_model *m, int k);
LARCH_API int larch_model_n_penalties(const larch_model *m);

/* ==== Passes ==== */

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
/* Backward from the loss gradients written by larch_model_loss (or from
 * gradients the caller wrote into larch_model_node_grad of scored nodes). */
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
