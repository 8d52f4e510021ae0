/* test_api.c - the typed C API for building models (larch/model.h) against
 * the YAML front end (larch/model_cfg.h), through public headers only:
 *   - one CNN using every built-in layer type, with losses and penalties,
 *     built through the typed builders (options from the _DEFAULTS
 *     initializers, only the keys the YAML sets changed) and through
 *     larch_model_build from YAML: same layers, names, shapes, parameters
 *     (same seed), buffers, forward outputs at every node, losses,
 *     gradients and penalties, bit for bit;
 *   - builder errors (values out of range, names, inputs) are values naming
 *     the layer and leave the model as it was; YAML errors still name the
 *     file, line and key;
 *   - a custom layer type defined here (options, private state, parameters,
 *     saved floats, its own init) registered with larch_layer_register and,
 *     with its YAML keys, larch_cfg_layer_register: built both ways, the
 *     same parameters and outputs, and its gradients against finite
 *     differences (tests/gradcheck.h);
 *   - the accessors: parameters by name, flat buffers, layers, nodes.
 */
#include "gradcheck.h"

#include <stdlib.h>

static larch_shape S(int h, int w, int c) { return (larch_shape){h, w, c}; }

/* ---- one CNN, two ways ---- */

static const char *cnn_yaml =
    "model:\n"
    "  - {type: conv2d, name: c1, filters: 4, padding: 1}\n"
    "  - {type: batchnorm, name: bn1}\n"
    "  - {type: relu, name: r1}\n"
    "  - {type: conv2d, name: c2, filters: 4, padding: 1, bias: false, init: xavier}\n"
    "  - {type: groupnorm, name: gn, groups: 2}\n"
    "  - {type: add, name: res, inputs: [r1, gn]}\n"
    "  - {type: leaky_relu}\n"
    "  - {type: maxpool, name: mp}\n"
    "  - {type: instancenorm, name: inorm}\n"
    "  - {type: avgpool, name: ap, size: 2, stride: 1, padding: 1}\n"
    "  - {type: gelu, name: g}\n"
    "  - {type: layernorm, name: ln, affine: false}\n"
    "  - {type: dropout, name: drop}\n"
    "  - {type: flatten, name: fl}\n"
    "  - {type: dense, name: fc1, units: 6, init: lecun}\n"
    "  - {type: tanh, name: t}\n"
    "  - {type: dense, name: out, units: 3}\n"
    "  - {type: sigmoid, name: sg}\n"
    "  - {type: global_avgpool, name: gap, input: ln}\n"
    "  - {type: dense, name: head2, units: 3, bias: false}\n"
    "loss:\n"
    "  - {name: main, input: out, label_smoothing: 0.1}\n"
    "  - {name: aux, type: mse, input: head2, weight: 0.5, weighting: uncertainty, log_var_init: 0.25}\n"
    "regularization:\n"
    "  - {type: l2, coef: 1e-3}\n"
    "  - {type: lq, q: 1.5, coef: 2e-3, apply_to: all}\n";

/* The same model through the typed builders. */
static larch_status build_cnn_typed(larch_model **out, uint64_t seed)
{
    larch_model *m = NULL;
    larch_status s = larch_model_create(&m, S(8, 8, 2));
    if (s) return s;
    larch_conv2d_opts c1 = LARCH_CONV2D_DEFAULTS, c2 = LARCH_CONV2D_DEFAULTS;
    c1.filters = 4; c1.padding = 1;
    c2.filters = 4; c2.padding = 1; c2.bias = 0; c2.init = LARCH_INIT_XAVIER;
    larch_groupnorm_opts gn = LARCH_GROUPNORM_DEFAULTS;
    gn.groups = 2;
    larch_pool_opts ap = LARCH_POOL_DEFAULTS;
    ap.stride = 1; ap.padding = 1;
    larch_norm_opts ln = LARCH_NORM_DEFAULTS;
    ln.affine = 0;
    larch_dense_opts fc1 = LARCH_DENSE_DEFAULTS, out_ = LARCH_DENSE_DEFAULTS, head2 = LARCH_DENSE_DEFAULTS;
    fc1.units = 6; fc1.init = LARCH_INIT_LECUN;
    out_.units = 3;
    head2.units = 3; head2.bias = 0;
    const char *res_in[] = {"r1", "gn"};
    larch_loss_opts main_loss = LARCH_LOSS_DEFAULTS, aux = LARCH_LOSS_DEFAULTS;
    main_loss.input = "out"; main_loss.label_smoothing = 0.1f;
    aux.name = "aux"; aux.type = LARCH_LOSS_MSE; aux.input = "head2"; aux.weight = 0.5f;
    aux.weighting = LARCH_WEIGHTING_UNCERTAINTY; aux.log_var_init = 0.25f;
    larch_penalty_opts l2 = LARCH_PENALTY_DEFAULTS, lq = LARCH_PENALTY_DEFAULTS;
    l2.type = LARCH_PENALTY_L2; l2.coef = 1e-3f;
    lq.type = LARCH_PENALTY_LQ; lq.q = 1.5f; lq.coef = 2e-3f; lq.all_params = 1;
    if (!s) s = larch_model_add_conv2d(m, "c1", NULL, &c1);
    if (!s) s = larch_model_add_batchnorm(m, "bn1", NULL, NULL);             /* NULL: the defaults */
    if (!s) s = larch_model_add_relu(m, "r1", NULL);
    if (!s) s = larch_model_add_conv2d(m, "c2", NULL, &c2);
    if (!s) s = larch_model_add_groupnorm(m, "gn", NULL, &gn);
    if (!s) s = larch_model_add_add(m, "res", res_in, 2);
    if (!s) s = larch_model_add_leaky_relu(m, NULL, NULL, &(larch_leaky_relu_opts)LARCH_LEAKY_RELU_DEFAULTS);
    if (!s) s = larch_model_add_maxpool(m, "mp", NULL, &(larch_pool_opts)LARCH_POOL_DEFAULTS);
    if (!s) s = larch_model_add_instancenorm(m, "inorm", NULL, NULL);
    if (!s) s = larch_model_add_avgpool(m, "ap", NULL, &ap);
    if (!s) s = larch_model_add_gelu(m, "g", NULL);
    if (!s) s = larch_model_add_layernorm(m, "ln", NULL, &ln);
    if (!s) s = larch_model_add_dropout(m, "drop", NULL, &(larch_dropout_opts)LARCH_DROPOUT_DEFAULTS);
    if (!s) s = larch_model_add_flatten(m, "fl", NULL);
    if (!s) s = larch_model_add_dense(m, "fc1", NULL, &fc1);
    if (!s) s = larch_model_add_tanh(m, "t", NULL);
    if (!s) s = larch_model_add_dense(m, "out", NULL, &out_);
    if (!s) s = larch_model_add_sigmoid(m, "sg", NULL);
    if (!s) s = larch_model_add_global_avgpool(m, "gap", "ln");
    if (!s) s = larch_model_add_dense(m, "head2", NULL, &head2);
    if (!s) s = larch_model_add_loss(m, &main_loss);
    if (!s) s = larch_model_add_loss(m, &aux);
    if (!s) s = larch_model_add_penalty(m, &l2);
    if (!s) s = larch_model_add_penalty(m, &lq);
    if (!s) s = larch_model_finalize(m);
    if (s) { larch_model_free(m); return s; }
    larch_model_init(m, seed);
    *out = m;
    return LARCH_OK;
}

static larch_status build_yaml(larch_model **out, const char *yaml, larch_shape in, uint64_t seed)
{
    larch_node *cfg = NULL;
    larch_status s = larch_cfg_parse(yaml, "api.yaml", &cfg);
    if (!s) s = larch_model_build(out, in, larch_map_get(cfg, "model"), larch_map_get(cfg, "loss"),
                                  larch_map_get(cfg, "regularization"), seed);
    larch_node_free(cfg);
    return s;
}

static int floats_equal(const float *a, const float *b, size_t n) { return n == 0 || memcmp(a, b, n * sizeof *a) == 0; }

/* Structure and parameters of a and b are identical. */
static void same_model(const char *what, larch_model *a, larch_model *b)
{
    CHECK(larch_model_n_layers(a) == larch_model_n_layers(b), "%s: layer counts %d, %d", what,
          larch_model_n_layers(a), larch_model_n_layers(b));
    for (int i = 0; i < larch_model_n_layers(a) && i < larch_model_n_layers(b); i++) {
        const larch_layer *la = larch_model_layer(a, i), *lb = larch_model_layer(b, i);
        larch_shape sa = larch_layer_out_shape(la), sb = larch_layer_out_shape(lb);
        CHECK(strcmp(larch_layer_name(la), larch_layer_name(lb)) == 0 && strcmp(larch_layer_type(la), larch_layer_type(lb)) == 0,
              "%s: layer %d: %s (%s) vs %s (%s)", what, i, larch_layer_name(la), larch_layer_type(la),
              larch_layer_name(lb), larch_layer_type(lb));
        CHECK(sa.h == sb.h && sa.w == sb.w && sa.c == sb.c, "%s: layer %s: output shapes differ", what, larch_layer_name(la));
    }
    CHECK(larch_model_n_params(a) == larch_model_n_params(b), "%s: parameter counts", what);
    for (int i = 0; i < larch_model_n_params(a) && i < larch_model_n_params(b); i++) {
        const larch_param *pa = larch_model_param(a, i), *pb = larch_model_param(b, i);
        CHECK(strcmp(pa->name, pb->name) == 0 && pa->size == pb->size && pa->offset == pb->offset && pa->role == pb->role,
              "%s: parameter %d: %s vs %s", what, i, pa->name, pb->name);
    }
    size_t na, nb, ba, bb;
    const float *fa = larch_model_flat_params(a, &na), *fb = larch_model_flat_params(b, &nb);
    CHECK(na == nb && floats_equal(fa, fb, na), "%s: initial parameters differ", what);
    const float *qa = larch_model_flat_buffers(a, &ba), *qb = larch_model_flat_buffers(b, &bb);
    CHECK(ba == bb && floats_equal(qa, qb, ba), "%s: buffers differ", what);
    CHECK(larch_model_n_losses(a) == larch_model_n_losses(b) && larch_model_n_penalties(a) == larch_model_n_penalties(b),
          "%s: losses or penalties differ", what);
    for (int k = 0; k < larch_model_n_losses(a) && k < larch_model_n_losses(b); k++)
        CHECK(strcmp(larch_model_loss_name(a, k), larch_model_loss_name(b, k)) == 0, "%s: loss %d", what, k);
}

/* One training pass (forward, losses, backward, penalty) on both models:
 * every node's output, the losses, the gradients and the penalty agree. */
static void same_passes(const char *what, larch_model *a, larch_model *b, int n, int n_targets, int dim)
{
    CHECK_OK(larch_model_plan(a, n));
    CHECK_OK(larch_model_plan(b, n));
    larch_shape in = larch_model_input_shape(a);
    size_t xlen = (size_t)n * larch_shape_size(in);
    float *x = malloc(xlen * sizeof *x), *t = malloc((size_t)n * dim * sizeof *t);
    int32_t *y = malloc((size_t)n * sizeof *y);
    larch_rng r;
    larch_rng_init(&r, 5, LARCH_RNG_USER, 3, 4);
    for (size_t i = 0; i < xlen; i++) x[i] = larch_rng_normal(&r);
    for (int i = 0; i < n * dim; i++) t[i] = larch_rng_normal(&r);
    for (int i = 0; i < n; i++) y[i] = (int32_t)larch_rng_below(&r, (uint32_t)dim);
    larch_batch batch = {.n = n, .x = x};
    for (int k = 0; k < n_targets; k++) { batch.label[k] = y; batch.target[k] = k ? t : NULL; batch.target_dim[k] = dim; }
    for (int train = 1; train >= 0; train--) {
        larch_pass p = {.n = n, .train = train, .seed = 17, .step = 2};
        larch_model_forward(a, &batch, &p);
        larch_model_forward(b, &batch, &p);
        for (int node = 1; node <= larch_model_n_layers(a); node++) {
            size_t len = (size_t)n * larch_shape_size(larch_model_node_shape(a, node));
            CHECK(floats_equal(larch_model_node_output(a, node), larch_model_node_output(b, node), len),
                  "%s (%s): outputs of node %d (%s) differ", what, train ? "train" : "eval", node,
                  larch_layer_name(larch_model_layer(a, node - 1)));
        }
        larch_loss_stats sa[8], sb[8];
        double la = larch_model_loss(a, &batch, 1.0f / n, sa), lb = larch_model_loss(b, &batch, 1.0f / n, sb);
        CHECK(la == lb && isfinite(la) && la != 0.0, "%s: losses %.9g vs %.9g", what, la, lb);
        if (!train) continue;
        larch_model_backward(a, &p);
        larch_model_backward(b, &p);
        double pa = larch_model_penalty(a, 1), pb = larch_model_penalty(b, 1);
        CHECK(pa == pb, "%s: penalties %.9g vs %.9g", what, pa, pb);
        size_t na, nb;
        const float *ga = larch_model_flat_grads(a, &na), *gb = larch_model_flat_grads(b, &nb);
        CHECK(na == nb && floats_equal(ga, gb, na), "%s: gradients differ", what);
        double gsum = 0;
        for (size_t i = 0; i < na; i++) gsum += fabs(ga[i]);
        CHECK(gsum > 0, "%s: gradients are all zero", what);
    }
    free(x); free(t); free(y);
}

static void typed_vs_yaml(void)
{
    larch_model *a = NULL, *b = NULL, *c = NULL;
    CHECK_OK(build_cnn_typed(&a, 42));
    CHECK_OK(build_yaml(&b, cnn_yaml, S(8, 8, 2), 42));
    if (!a || !b) { larch_model_free(a); larch_model_free(b); return; }
    same_model("cnn typed vs yaml", a, b);
    CHECK(larch_model_n_layers(a) == 21, "20 layers and loss_weights, got %d", larch_model_n_layers(a));
    CHECK(strcmp(larch_layer_name(larch_model_layer(a, 6)), "leaky_relu6") == 0, "default name '%s'",
          larch_layer_name(larch_model_layer(a, 6)));
    same_passes("cnn typed vs yaml", a, b, 4, 2, 3);
    /* the comparison can tell models apart: another seed draws other parameters */
    CHECK_OK(build_cnn_typed(&c, 43));
    if (c) {
        size_t na, nc;
        const float *fa = larch_model_flat_params(a, &na), *fc = larch_model_flat_params(c, &nc);
        CHECK(na == nc && !floats_equal(fa, fc, na), "seeds 42 and 43 give different parameters");
    }
    larch_model_free(a);
    larch_model_free(b);
    larch_model_free(c);
}

/* ---- errors ---- */

static void builder_errors(void)
{
    larch_model *m = NULL;
    CHECK_OK(larch_model_create(&m, S(6, 6, 3)));
    if (!m) return;
    larch_dense_opts d = LARCH_DENSE_DEFAULTS;                         /* units is required */
    CHECK_FAIL(larch_model_add_dense(m, "fc", NULL, &d), LARCH_ERR_INVALID, "layer 'fc' (dense): units = 0 is out of range [1, 16777216]");
    CHECK_FAIL(larch_model_add_dense(m, NULL, NULL, NULL), LARCH_ERR_INVALID, "layer 'dense0' (dense): units = 0");
    larch_conv2d_opts c = LARCH_CONV2D_DEFAULTS;
    c.filters = 2; c.stride = 0;
    CHECK_FAIL(larch_model_add_conv2d(m, "cv", NULL, &c), LARCH_ERR_INVALID, "layer 'cv' (conv2d): stride = 0 is out of range [1, 1024]");
    c.stride = 1; c.init = (larch_init_kind)9;
    CHECK_FAIL(larch_model_add_conv2d(m, "cv", NULL, &c), LARCH_ERR_INVALID, "init = 9");
    larch_dropout_opts dr = {.rate = 1.0f};
    CHECK_FAIL(larch_model_add_dropout(m, "dr", NULL, &dr), LARCH_ERR_INVALID, "layer 'dr' (dropout): rate = 1 is out of range");
    larch_batchnorm_opts bn = LARCH_BATCHNORM_DEFAULTS;
    bn.eps = NAN;
    CHECK_FAIL(larch_model_add_batchnorm(m, "bn", NULL, &bn), LARCH_ERR_INVALID, "layer 'bn' (batchnorm): eps = nan");
    CHECK_FAIL(larch_model_add_groupnorm(m, "gn", NULL, NULL), LARCH_ERR_INVALID, "layer 'gn' (groupnorm): groups = 0");
    larch_groupnorm_opts g = LARCH_GROUPNORM_DEFAULTS;
    g.groups = 2;
    CHECK_FAIL(larch_model_add_groupnorm(m, "gn", NULL, &g), LARCH_ERR_SHAPE, "layer 'gn' (groupnorm): 2 groups do not divide the 3 channels");
    CHECK_FAIL(larch_model_add_relu(m, "a.b", NULL), LARCH_ERR_INVALID, "layer name 'a.b' is not valid");
    CHECK_FAIL(larch_model_add_relu(m, "input", NULL), LARCH_ERR_INVALID, "layer name 'input' is not valid");
    CHECK_FAIL(larch_model_add_relu(m, "r", "nothere"), LARCH_ERR_INVALID, "layer 'r': input 'nothere' is not an earlier layer");
    const char *one[] = {"input"};
    CHECK_FAIL(larch_model_add_add(m, "sum", one, 1), LARCH_ERR_INVALID, "layer type 'add' takes 2 to 4 inputs, got 1");
    CHECK(larch_model_n_layers(m) == 0 && larch_model_n_params(m) == 0, "failed adds leave the model empty (%d layers, %d params)",
          larch_model_n_layers(m), larch_model_n_params(m));
    CHECK_OK(larch_model_add_relu(m, "r", "input"));
    CHECK_FAIL(larch_model_add_relu(m, "r", NULL), LARCH_ERR_INVALID, "layer name 'r' is used twice");
    larch_pool_opts big = {.size = 9};
    CHECK_FAIL(larch_model_add_maxpool(m, "mp", NULL, &big), LARCH_ERR_SHAPE, "layer 'mp' (maxpool): window 9 is larger");
    const char *two[] = {"input", "r"};
    CHECK_OK(larch_model_add_add(m, "sum", two, 2));
    CHECK_OK(larch_model_add_flatten(m, NULL, NULL));
    d.units = 4;
    CHECK_OK(larch_model_add_dense(m, "fc", NULL, &d));
    larch_loss_opts l = LARCH_LOSS_DEFAULTS;
    l.input = "nothere";
    CHECK_FAIL(larch_model_add_loss(m, &l), LARCH_ERR_INVALID, "loss 'main': input 'nothere' is not a layer of the model");
    l.input = NULL; l.label_smoothing = 1.5f;
    CHECK_FAIL(larch_model_add_loss(m, &l), LARCH_ERR_INVALID, "loss 'main': label_smoothing = 1.5 is out of range");
    CHECK_OK(larch_model_add_loss(m, NULL));                            /* softmax_ce "main" on fc */
    CHECK_FAIL(larch_model_add_loss(m, NULL), LARCH_ERR_INVALID, "task name 'main' is used twice");
    larch_penalty_opts p = LARCH_PENALTY_DEFAULTS;                     /* type is required */
    CHECK_FAIL(larch_model_add_penalty(m, &p), LARCH_ERR_INVALID, "penalty: type = 0");
    CHECK(larch_model_n_layers(m) == 4 && larch_model_n_losses(m) == 1 && larch_model_n_penalties(m) == 0,
          "the model after the errors: %d layers, %d losses", larch_model_n_layers(m), larch_model_n_losses(m));
    CHECK_FAIL(larch_model_plan(m, 4), LARCH_ERR_INVALID, "plan: finalize the model first");
    CHECK_OK(larch_model_finalize(m));
    CHECK_FAIL(larch_model_add_relu(m, "late", NULL), LARCH_ERR_INVALID, "the model is finalized");
    CHECK_FAIL(larch_model_add_loss(m, NULL), LARCH_ERR_INVALID, "the model is finalized");
    CHECK_FAIL(larch_model_finalize(m), LARCH_ERR_INVALID, "finalized twice");
    CHECK_OK(larch_model_plan(m, 4));
    larch_model_free(m);
}

/* YAML keeps naming the file, the line and the key. */
static void yaml_errors(void)
{
    larch_model *m = NULL;
    struct { const char *yaml, *needle; larch_status st; } cases[] = {
        {"model:\n  - {type: dense, units: 3}\n  - {type: dense, name: dense0, units: 2}\n",
         "api.yaml:3: model.1.name: layer name 'dense0' is used twice", LARCH_ERR_CONFIG},
        {"model:\n  - {type: relu, name: a}\n  - {type: relu}\n  - {type: dense, name: relu1, units: 2}\n",
         "api.yaml:4: model.2.name: layer name 'relu1' is used twice", LARCH_ERR_CONFIG},
        {"model:\n  - {type: dense, units: 4, name: fc1}\n  - {type: dense, units: 4, name: fc1}\n",
         "api.yaml:3: model.1.name: layer name 'fc1' is used twice", LARCH_ERR_CONFIG},
        {"model:\n  - {type: relu, name: 'x/y'}\n", "api.yaml:2: model.0.name: 'x/y' is not a valid layer name", LARCH_ERR_CONFIG},
        {"model:\n  - {type: add, inputs: [input]}\n", "api.yaml:2: model.0: layer type 'add' takes 2 to 4 inputs, got 1", LARCH_ERR_CONFIG},
        {"model:\n  - {type: relu,\n     inputs: [input,\n              zz]}\n", "api.yaml:4: model.0: input 'zz' is not an earlier layer (or 'input')",
         LARCH_ERR_CONFIG},
        {"model:\n  - {type: relu, input: a, inputs: [b]}\n", "api.yaml:2: model.0: give either 'input' or 'inputs', not both",
         LARCH_ERR_CONFIG},
        {"model:\n  - {type: dense}\n", "api.yaml:2: model.0: required key 'units' is missing", LARCH_ERR_CONFIG},
        {"model:\n  - {type: dropout, rate: 2}\n", "api.yaml:2: model.0.rate", LARCH_ERR_CONFIG},
        {"model:\n  - {type: conv2d, name: big, filters: 2, kernel: 9}\n",
         "api.yaml:2: model.0: layer 'big' (conv2d): kernel 9 is larger", LARCH_ERR_SHAPE},
        {"model:\n  - {type: dense, units: 3}\nloss:\n  - {input: nope}\n", "api.yaml:4: loss.input: 'nope' is not a layer", LARCH_ERR_CONFIG},
        {"model:\n  - {type: dense, units: 3}\nloss:\n  - {}\n  - {}\n", "api.yaml:5: loss.1.name: task name 'main' is used twice", LARCH_ERR_CONFIG},
        {"model:\n  - {type: dense, units: 3}\nregularization:\n  - {type: l3, coef: 1}\n", "api.yaml:4: regularization.0.type", LARCH_ERR_CONFIG},
        {"model:\n  - {type: dense, units: 3}\nloss:\n  - {name: a_task_name_that_is_far_too_long_to_be_kept_in_the_metrics_of_a_run}\n",
         "api.yaml:4: loss: loss 'a_task_name_that_is_far_too_long", LARCH_ERR_CONFIG},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_FAIL(build_yaml(&m, cases[i].yaml, S(2, 2, 3), 1), cases[i].st, cases[i].needle);
        /* the message starts with the place, once */
        CHECK(strncmp(larch_errmsg(), cases[i].needle, strlen(cases[i].needle)) == 0, "case %zu: '%s' does not start with '%s'",
              i, larch_errmsg(), cases[i].needle);
        CHECK(m == NULL, "case %zu: no model on failure", i);
    }
}

/* ---- a custom layer type ----
 * "powmix": y = x + alpha * w_c * x^2 per channel c, with a learned w (one
 * per channel, "mix") drawn by its own init; saves x^2 for backward. */

typedef struct { float alpha; } powmix_opts;
typedef struct { float alpha; int c; } powmix_t;
static int g_powmix_live;   /* private states alive (destroy frees them) */

static larch_status powmix_setup(larch_layer *L, const void *opts)
{
    const powmix_opts o = opts ? *(const powmix_opts *)opts : (powmix_opts){0.5f};
    larch_layer_ctx c = larch_layer_context(L);
    if (!(o.alpha > 0.0f))
        return larch_fail(LARCH_ERR_INVALID, "layer '%s' (powmix): alpha = %g must be positive", c.name, o.alpha);
    powmix_t *q = malloc(sizeof *q);
    if (!q) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    q->alpha = o.alpha;
    q->c = c.in_shape[0].c;
    g_powmix_live++;
    larch_layer_set_priv(L, q);
    larch_layer_set_out_shape(L, c.in_shape[0]);
    larch_layer_add_param(L, "mix", LARCH_ROLE_WEIGHT, 1, &q->c, q->c, q->c);
    return LARCH_OK;
}
static size_t powmix_saved(const larch_layer *L, int n) { return (size_t)n * larch_shape_size(larch_layer_out_shape(L)); }
static void powmix_init(larch_layer *L, uint64_t seed)
{
    const powmix_t *q = larch_layer_priv(L);
    larch_init_fill(larch_layer_param(L, 0), (size_t)q->c, LARCH_INIT_XAVIER, q->c, q->c, seed, larch_layer_name(L), 0);
}
static void powmix_forward(larch_layer *L, const larch_pass *p)
{
    larch_layer_ctx c = larch_layer_context(L);
    const powmix_t *q = c.priv;
    const float *w = larch_layer_param(L, 0);
    size_t len = (size_t)p->n * larch_shape_size(c.out_shape);
    for (size_t i = 0; i < len; i++) {
        float x = c.x[0][i];
        c.saved[i] = x * x;
        c.y[i] = x + q->alpha * w[i % (size_t)q->c] * x * x;
    }
}
static void powmix_backward(larch_layer *L, const larch_pass *p)
{
    larch_layer_ctx c = larch_layer_context(L);
    const powmix_t *q = c.priv;
    const float *w = larch_layer_param(L, 0);
    size_t len = (size_t)p->n * larch_shape_size(c.out_shape);
    if (c.need_dw) {
        float *dw = larch_layer_grad(L, 0);
        if (!p->acc_grad) memset(dw, 0, (size_t)q->c * sizeof *dw);
        for (size_t i = 0; i < len; i++) dw[i % (size_t)q->c] += c.dy[i] * q->alpha * c.saved[i];   /* dy * alpha x^2 */
    }
    if (c.need_dx[0])
        for (size_t i = 0; i < len; i++) {
            float g = c.dy[i] * (1.0f + 2.0f * q->alpha * w[i % (size_t)q->c] * c.x[0][i]);        /* dy (1 + 2 alpha w x) */
            c.dx[0][i] = c.dx_acc[0] ? c.dx[0][i] + g : g;
        }
}
static void powmix_destroy(larch_layer *L)
{
    if (larch_layer_priv(L)) g_powmix_live--;
    free(larch_layer_priv(L));
}

static const larch_layer_ops powmix_ops = {
    .type = "powmix", .min_inputs = 1, .max_inputs = 1, .setup = powmix_setup, .saved_size = powmix_saved,
    .init = powmix_init, .forward = powmix_forward, .backward = powmix_backward, .destroy = powmix_destroy};

static const larch_key powmix_keys[] = {
    {"alpha", LARCH_T_FLOAT, "0.5", 0, 10, NULL, NULL, "weight of the square"},
    {0}};
static larch_status powmix_from(const larch_node *n, void *out)
{
    ((powmix_opts *)out)->alpha = (float)larch_cfg_float(n, "alpha");
    return LARCH_OK;
}
static const larch_cfg_layer powmix_cfg = {"powmix", powmix_keys, sizeof(powmix_opts), powmix_from};

static larch_status build_custom_typed(larch_model **out)
{
    larch_model *m = NULL;
    larch_status s = larch_model_create(&m, S(3, 3, 2));
    if (s) return s;
    larch_conv2d_opts c = LARCH_CONV2D_DEFAULTS;
    c.filters = 3;
    c.padding = 1;
    larch_dense_opts d = LARCH_DENSE_DEFAULTS;
    d.units = 4;
    powmix_opts pm = {.alpha = 0.75f};
    const char *in[] = {"conv"};
    if (!s) s = larch_model_add_conv2d(m, "conv", NULL, &c);
    if (!s) s = larch_model_add_layer(m, larch_layer_find("powmix"), "pm", in, 1, &pm);
    if (!s) s = larch_model_add_dense(m, "fc", NULL, &d);
    if (!s) s = larch_model_finalize(m);
    if (s) { larch_model_free(m); return s; }
    larch_model_init(m, 7);
    *out = m;
    return LARCH_OK;
}

static void custom_layer(void)
{
    /* a type that is not registered: YAML does not know it */
    larch_model *y = NULL;
    CHECK_FAIL(build_yaml(&y, "model:\n  - {type: powmix}\n", S(2, 2, 2), 1), LARCH_ERR_CONFIG,
               "api.yaml:2: model.0.type: unknown layer type 'powmix' (valid: dense, conv2d,");
    CHECK_OK(larch_layer_register(&powmix_ops));
    CHECK(larch_layer_find("powmix") == &powmix_ops, "the registered type is found");
    CHECK_FAIL(larch_layer_register(&powmix_ops), LARCH_ERR_INVALID, "type 'powmix' exists already");
    larch_layer_ops no_forward = powmix_ops;
    no_forward.type = "broken";
    no_forward.forward = NULL;
    CHECK_FAIL(larch_layer_register(&no_forward), LARCH_ERR_INVALID, "layer type 'broken': setup, forward and backward are required");
    CHECK_FAIL(build_yaml(&y, "model:\n  - {type: powmix}\n", S(2, 2, 2), 1), LARCH_ERR_CONFIG,
               "api.yaml:2: model.0.type: layer type 'powmix' has no YAML keys");
    CHECK_OK(larch_cfg_layer_register(&powmix_cfg));

    larch_model *a = NULL, *b = NULL;
    CHECK_OK(build_custom_typed(&a));
    CHECK_OK(build_yaml(&b, "model:\n  - {type: conv2d, name: conv, filters: 3, padding: 1}\n"
                            "  - {type: powmix, name: pm, alpha: 0.75}\n  - {type: dense, name: fc, units: 4}\n",
                        S(3, 3, 2), 7));
    CHECK(g_powmix_live == 2, "two powmix layers alive (%d)", g_powmix_live);
    if (a && b) {
        same_model("custom typed vs yaml", a, b);
        same_passes("custom typed vs yaml", a, b, 3, 1, 4);
        /* parameters by name */
        int k = larch_model_param_index(a, "pm.mix");
        CHECK(k >= 0, "pm.mix is a parameter");
        if (k >= 0) {
            const larch_param *pr = larch_model_param(a, k);
            size_t nf;
            float *flat = larch_model_flat_params(a, &nf);
            CHECK(pr->ndim == 1 && pr->shape[0] == 3 && pr->size == 3 && strcmp(pr->tensor, "mix") == 0,
                  "pm.mix: shape (%d), tensor '%s'", pr->shape[0], pr->tensor);
            CHECK(larch_model_param_data(a, k) == flat + pr->offset && pr->offset + pr->size <= nf, "pm.mix views the flat buffer");
            CHECK(larch_model_grad_data(a, k) == larch_model_flat_grads(a, NULL) + pr->offset, "its gradient too");
            float *w = larch_model_param_data(a, k);
            CHECK(w[0] != 0.0f && w[0] != w[1], "pm.mix drawn by its init (%g, %g)", w[0], w[1]);
        }
        int node = larch_model_node(a, "pm");
        CHECK(node == 2 && larch_model_node(a, "input") == 0 && larch_model_node(a, "zz") == -1, "node lookup");
        larch_layer *L = larch_model_layer(a, 1);
        CHECK(larch_layer_get_ops(L) == &powmix_ops && strcmp(larch_layer_type(L), "powmix") == 0 &&
              larch_layer_n_inputs(L) == 1 && larch_layer_in_shape(L, 0).c == 3, "layer accessors");
        larch_layer_ctx c = larch_layer_context(L);
        CHECK(c.x[0] == larch_model_node_output(a, 1) && c.y == larch_model_node_output(a, 2) && c.n_param == 1,
              "the context views the arena");
        CHECK(larch_model_param_index(a, "pm.nothing") == -1, "absent parameter");
    }
    larch_model_free(b);
    /* a custom layer's gradients against finite differences, built both ways */
    if (a) gradcheck_model("powmix", a, &(gradcheck_opts){.n = 3, .train = 1, .eps = 1e-3});
    gradcheck("powmix yaml", "[{type: powmix, alpha: 1.5}, {type: powmix, name: again, input: input}]", S(2, 2, 3),
              &(gradcheck_opts){.n = 2, .train = 1, .eps = 1e-3});
    larch_model_free(a);
    CHECK(g_powmix_live == 0, "destroy freed every powmix state (%d alive)", g_powmix_live);

    /* errors of a custom type reach the caller, and YAML adds file:line */
    larch_model *m = NULL;
    CHECK_OK(larch_model_create(&m, S(2, 2, 2)));
    if (m) {
        powmix_opts bad = {.alpha = -1.0f};
        CHECK_FAIL(larch_model_add_layer(m, &powmix_ops, "p", NULL, 0, &bad), LARCH_ERR_INVALID,
                   "layer 'p' (powmix): alpha = -1 must be positive");
        CHECK(g_powmix_live == 0 && larch_model_n_layers(m) == 0, "a failed setup leaves nothing behind");
        larch_model_free(m);
    }
    CHECK_FAIL(build_yaml(&y, "model:\n  - {type: powmix, alpha: 0}\n", S(2, 2, 2), 1), LARCH_ERR_CONFIG,
               "api.yaml:2: model.0: layer 'powmix0' (powmix): alpha = 0 must be positive");
    CHECK_FAIL(build_yaml(&y, "model:\n  - {type: powmix, beta: 1}\n", S(2, 2, 2), 1), LARCH_ERR_CONFIG,
               "api.yaml:2: unknown key 'model.0.beta' (valid keys: alpha, type, name, input, inputs)");
}

int main(void)
{
    typed_vs_yaml();
    builder_errors();
    yaml_errors();
    custom_layer();
    return check_result("test_api");
}
