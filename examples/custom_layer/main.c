/* examples/custom_layer/main.c - a layer type defined outside the library.
 *
 * "scaled_tanh" computes y = a_c * tanh(b_c * x) with a learned amplitude
 * a_c and slope b_c per channel c. The program
 *   1. registers the type (larch_layer_register) and shows that bad options
 *      are an error naming the layer;
 *   2. checks the layer's backward against central finite differences
 *      (input and both parameters, float32) in a small graph where the
 *      layer's input gradient is added to a residual branch's (dx_acc), and
 *      checks that parameter gradients accumulate with acc_grad;
 *   3. trains dense -> scaled_tanh -> dense on a synthetic 3-class problem
 *      with plain SGD steps on the model's flat buffers; the loss must fall.
 * It uses only the public headers and exits non-zero on any failure.
 * docs/examples.md describes it; docs/api.md the layer vtable. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "larch/model.h"
#include "larch/rng.h"

/* ==== the layer type ==== */

typedef struct stanh_opts {
    float a0, b0;                  /* initial amplitude and slope, (0, 100] */
} stanh_opts;
#define STANH_DEFAULTS {.a0 = 1.0f, .b0 = 1.0f}

typedef struct stanh_state {
    int c;                         /* channels */
    float a0, b0;
} stanh_state;

enum { P_A, P_B };                 /* parameter indices, in declaration order */

static larch_status stanh_setup(larch_layer *L, const void *opts)
{
    stanh_opts o = STANH_DEFAULTS;
    if (opts) o = *(const stanh_opts *)opts;
    larch_layer_ctx c = larch_layer_context(L);
    if (!(o.a0 > 0.0f && o.a0 <= 100.0f))
        return larch_fail(LARCH_ERR_INVALID, "layer '%s' (scaled_tanh): a0 = %g is out of range (0, 100]", c.name, o.a0);
    if (!(o.b0 > 0.0f && o.b0 <= 100.0f))
        return larch_fail(LARCH_ERR_INVALID, "layer '%s' (scaled_tanh): b0 = %g is out of range (0, 100]", c.name, o.b0);
    stanh_state *st = malloc(sizeof *st);
    if (!st) return larch_fail(LARCH_ERR_NOMEM, "layer '%s' (scaled_tanh): out of memory", c.name);
    st->c = c.in_shape[0].c;
    st->a0 = o.a0;
    st->b0 = o.b0;
    larch_layer_set_priv(L, st);                  /* destroy frees it, also after a failed setup */
    larch_layer_set_out_shape(L, c.in_shape[0]);
    /* per-channel scale-like tensors: the NORM role keeps them out of
     * weight penalties, as for a normalization's scale */
    larch_layer_add_param(L, "a", LARCH_ROLE_NORM, 1, &st->c, 1, 1);
    larch_layer_add_param(L, "b", LARCH_ROLE_NORM, 1, &st->c, 1, 1);
    return LARCH_OK;
}

/* forward keeps t = tanh(b x) for backward */
static size_t stanh_saved(const larch_layer *L, int n)
{
    return (size_t)n * larch_shape_size(larch_layer_out_shape(L));
}

static void stanh_init(larch_layer *L, uint64_t seed)
{
    const stanh_state *st = larch_layer_priv(L);
    float *a = larch_layer_param(L, P_A), *b = larch_layer_param(L, P_B);
    for (int k = 0; k < st->c; k++) {
        a[k] = st->a0;
        b[k] = st->b0;
    }
}

static void stanh_forward(larch_layer *L, const larch_pass *p)
{
    larch_layer_ctx c = larch_layer_context(L);
    const stanh_state *st = c.priv;
    const float *a = larch_layer_param(L, P_A), *b = larch_layer_param(L, P_B);
    size_t len = (size_t)p->n * larch_shape_size(c.out_shape);
    for (size_t i = 0; i < len; i++) {            /* channels last: channel i % c */
        int k = (int)(i % (size_t)st->c);
        float t = tanhf(b[k] * c.x[0][i]);
        c.saved[i] = t;
        c.y[i] = a[k] * t;
    }
}

/* dy/da = t, dy/db = a x (1 - t^2), dy/dx = a b (1 - t^2) */
static void stanh_backward(larch_layer *L, const larch_pass *p)
{
    larch_layer_ctx c = larch_layer_context(L);
    const stanh_state *st = c.priv;
    const float *a = larch_layer_param(L, P_A), *b = larch_layer_param(L, P_B);
    size_t len = (size_t)p->n * larch_shape_size(c.out_shape);
    if (c.need_dw) {
        float *da = larch_layer_grad(L, P_A), *db = larch_layer_grad(L, P_B);
        if (!p->acc_grad) {
            memset(da, 0, (size_t)st->c * sizeof *da);
            memset(db, 0, (size_t)st->c * sizeof *db);
        }
        for (size_t i = 0; i < len; i++) {
            int k = (int)(i % (size_t)st->c);
            float t = c.saved[i];
            da[k] += c.dy[i] * t;
            db[k] += c.dy[i] * a[k] * c.x[0][i] * (1.0f - t * t);
        }
    }
    if (c.need_dx[0])
        for (size_t i = 0; i < len; i++) {
            int k = (int)(i % (size_t)st->c);
            float t = c.saved[i];
            float g = c.dy[i] * a[k] * b[k] * (1.0f - t * t);
            c.dx[0][i] = c.dx_acc[0] ? c.dx[0][i] + g : g;
        }
}

static void stanh_destroy(larch_layer *L)
{
    free(larch_layer_priv(L));
}

static const larch_layer_ops stanh_ops = {
    .type = "scaled_tanh", .min_inputs = 1, .max_inputs = 1, .setup = stanh_setup,
    .saved_size = stanh_saved, .init = stanh_init, .forward = stanh_forward,
    .backward = stanh_backward, .destroy = stanh_destroy};

/* ==== helpers ==== */

static int fail(const char *what)
{
    fprintf(stderr, "custom_layer: FAILED: %s%s%s\n", what, larch_errmsg()[0] ? ": " : "", larch_errmsg());
    return 1;
}

static void fill_normal(float *v, size_t n, float scale, uint64_t seed, uint32_t stream)
{
    larch_rng r;
    larch_rng_init(&r, seed, LARCH_RNG_USER, stream, 0);
    for (size_t i = 0; i < n; i++) v[i] = scale * larch_rng_normal(&r);
}

/* ==== 1. registration and option errors ==== */

static int check_registration(void)
{
    if (larch_layer_register(&stanh_ops)) return fail("registering scaled_tanh");
    if (larch_layer_find("scaled_tanh") != &stanh_ops) return fail("larch_layer_find(\"scaled_tanh\")");
    if (larch_layer_register(&stanh_ops) != LARCH_ERR_INVALID) return fail("registering scaled_tanh twice was accepted");
    larch_clear_error();

    larch_model *m = NULL;
    if (larch_model_create(&m, (larch_shape){1, 1, 4})) return fail("creating a model");
    stanh_opts bad = STANH_DEFAULTS;
    bad.b0 = 0.0f;
    larch_status s = larch_model_add_layer(m, &stanh_ops, "act", NULL, 0, &bad);
    int ok = s == LARCH_ERR_INVALID && strstr(larch_errmsg(), "layer 'act' (scaled_tanh): b0 = 0") &&
             larch_model_n_layers(m) == 0;
    printf("bad options: %s (%s), model unchanged (%d layers)\n", larch_status_name(s), larch_errmsg(),
           larch_model_n_layers(m));
    larch_model_free(m);
    larch_clear_error();
    if (!ok) return fail("b0 = 0 was not rejected with a message naming the layer");
    return 0;
}

/* ==== 2. the finite-difference check ==== */

enum { GC_N = 3, GC_H = 2, GC_W = 3, GC_C = 4 };
#define GC_EPS 1e-2f      /* central-difference step (float32)                 */
#define GC_ATOL 1e-3      /* |analytic - numeric| <= GC_ATOL + GC_RTOL |numeric| */
#define GC_RTOL 1e-2

/* L = sum_i r_i y_i over the output of the last forward (in double) */
static double gc_objective(larch_model *m, const larch_batch *b, const float *r)
{
    larch_pass p = {.n = b->n, .train = 1, .seed = 1};
    larch_model_forward(m, b, &p);
    const float *y = larch_model_node_output(m, larch_model_n_layers(m));
    size_t len = (size_t)b->n * larch_shape_size(larch_model_node_shape(m, larch_model_n_layers(m)));
    double sum = 0.0;
    for (size_t i = 0; i < len; i++) sum += (double)r[i] * y[i];
    return sum;
}

/* Compares g[0..n) with the central differences of L in v[0..n). */
static int gc_compare(const char *what, larch_model *m, const larch_batch *b, const float *r, float *v,
                      const float *g, size_t n, double *max_err)
{
    for (size_t i = 0; i < n; i++) {
        float keep = v[i];
        v[i] = keep + GC_EPS;
        double up = gc_objective(m, b, r);
        v[i] = keep - GC_EPS;
        double down = gc_objective(m, b, r);
        v[i] = keep;
        double num = (up - down) / (2.0 * (double)GC_EPS), err = fabs(g[i] - num);
        if (err > *max_err) *max_err = err;
        if (!(err <= GC_ATOL + GC_RTOL * fabs(num))) {
            fprintf(stderr, "custom_layer: %s[%zu]: backward gives %.6g, central differences %.6g\n", what, i, g[i], num);
            return 1;
        }
    }
    return 0;
}

static int check_gradients(void)
{
    /* input -> act = scaled_tanh(input) -> res = input + act: the residual
     * writes the input gradient first, so act must add to it (dx_acc) */
    larch_model *m = NULL;
    const larch_layer_ops *ops = larch_layer_find("scaled_tanh");
    const char *res_in[] = {"input", "act"}, *act_in[] = {"input"};
    stanh_opts o = STANH_DEFAULTS;
    larch_status s = larch_model_create(&m, (larch_shape){GC_H, GC_W, GC_C});
    if (!s) s = larch_model_add_layer(m, ops, "act", act_in, 1, &o);
    if (!s) s = larch_model_add_add(m, "res", res_in, 2);
    if (!s) s = larch_model_finalize(m);
    if (!s) larch_model_init(m, 7);
    if (!s) larch_model_set_input_grad(m, 1);
    if (!s) s = larch_model_plan(m, GC_N);
    if (s) {
        larch_model_free(m);
        return fail("building the gradient-check model");
    }
    int ia = larch_model_param_index(m, "act.a"), ib = larch_model_param_index(m, "act.b");
    float *a = larch_model_param_data(m, ia), *bb = larch_model_param_data(m, ib);
    for (int k = 0; k < GC_C; k++) {              /* distinct values per channel, one negative */
        a[k] = 0.6f + 0.35f * (float)k;
        bb[k] = (k == 2 ? -0.8f : 1.3f - 0.25f * (float)k);
    }
    enum { LEN = GC_N * GC_H * GC_W * GC_C };
    float x[LEN], r[LEN], dx[LEN], da[GC_C], db[GC_C];
    fill_normal(x, LEN, 1.0f, 11, 1);
    fill_normal(r, LEN, 1.0f, 11, 2);
    larch_batch batch = {.n = GC_N, .x = x};
    larch_pass p = {.n = GC_N, .train = 1, .seed = 1};

    /* analytic: forward, dL/dy = r written into the scored node, backward */
    gc_objective(m, &batch, r);
    memcpy(larch_model_node_grad(m, larch_model_n_layers(m)), r, sizeof r);
    larch_model_backward(m, &p);
    memcpy(dx, larch_model_node_grad(m, 0), sizeof dx);
    memcpy(da, larch_model_grad_data(m, ia), sizeof da);
    memcpy(db, larch_model_grad_data(m, ib), sizeof db);
    larch_layer_ctx c = larch_layer_context(larch_model_layer(m, 0));
    int rc = 0;
    if (!c.need_dx[0] || !c.dx_acc[0] || !c.need_dw) {
        fprintf(stderr, "custom_layer: the check graph does not exercise dx_acc (need_dx %d, dx_acc %d, need_dw %d)\n",
                c.need_dx[0], c.dx_acc[0], c.need_dw);
        rc = 1;
    }

    /* acc_grad: a second backward adds the same gradients again */
    larch_pass acc = p;
    acc.acc_grad = 1;
    memcpy(larch_model_node_grad(m, larch_model_n_layers(m)), r, sizeof r);
    larch_model_backward(m, &acc);
    const float *ga = larch_model_grad_data(m, ia), *gb = larch_model_grad_data(m, ib);
    for (int k = 0; !rc && k < GC_C; k++)
        if (fabsf(ga[k] - 2.0f * da[k]) > 1e-5f * (1.0f + fabsf(da[k])) ||
            fabsf(gb[k] - 2.0f * db[k]) > 1e-5f * (1.0f + fabsf(db[k]))) {
            fprintf(stderr, "custom_layer: acc_grad: channel %d gives (%g, %g), twice once is (%g, %g)\n", k, ga[k],
                    gb[k], 2.0f * da[k], 2.0f * db[k]);
            rc = 1;
        }

    double err_x = 0.0, err_a = 0.0, err_b = 0.0;
    if (!rc) rc = gc_compare("d/dx", m, &batch, r, x, dx, LEN, &err_x);
    if (!rc) rc = gc_compare("d/da", m, &batch, r, a, da, GC_C, &err_a);
    if (!rc) rc = gc_compare("d/db", m, &batch, r, bb, db, GC_C, &err_b);
    if (!rc)
        printf("gradient check (float32, central differences, eps %g, tolerance %g + %g |numeric|): "
               "%d input values max error %.2e, %d of a max error %.2e, %d of b max error %.2e; "
               "input gradient added to the residual's (dx_acc), acc_grad doubles the parameter gradients\n",
               (double)GC_EPS, GC_ATOL, GC_RTOL, LEN, err_x, GC_C, err_a, GC_C, err_b);
    larch_model_free(m);
    return rc ? fail("gradient check of scaled_tanh") : 0;
}

/* ==== 3. training ==== */

enum { TR_SAMPLES = 384, TR_DIM = 4, TR_CLASSES = 3, TR_BATCH = 32, TR_STEPS = 240 };
#define TR_LR 0.1f

/* Three classes of points around three centers; class 2's center is the
 * origin, so the classes are not separable by a threshold on one feature. */
static void make_data(float *x, int32_t *y)
{
    static const float centers[TR_CLASSES][TR_DIM] = {{1.5f, 0, -1, 0.5f}, {-1.5f, 1, 0, -0.5f}, {0, 0, 0, 0}};
    larch_rng r;
    larch_rng_init(&r, 2024, LARCH_RNG_USER, 3, 0);
    for (int i = 0; i < TR_SAMPLES; i++) {
        y[i] = (int32_t)(i % TR_CLASSES);
        for (int j = 0; j < TR_DIM; j++) x[i * TR_DIM + j] = centers[y[i]][j] + 0.6f * larch_rng_normal(&r);
    }
}

/* Mean loss and accuracy over the whole set (eval mode, no gradients). */
static void evaluate(larch_model *m, float *x, int32_t *y, double *loss, double *acc)
{
    larch_batch b = {.n = TR_SAMPLES, .x = x, .label = {y}};
    larch_pass p = {.n = TR_SAMPLES, .train = 0, .seed = 5};
    larch_model_forward(m, &b, &p);
    larch_loss_stats st;
    larch_model_loss(m, &b, 0.0f, &st);
    *loss = st.loss_sum / (double)st.count;
    *acc = (double)st.correct / (double)st.count;
}

static int train(void)
{
    larch_model *m = NULL;
    larch_dense_opts hidden = LARCH_DENSE_DEFAULTS, out = LARCH_DENSE_DEFAULTS;
    hidden.units = 16;
    hidden.init = LARCH_INIT_XAVIER;
    out.units = TR_CLASSES;
    stanh_opts act = STANH_DEFAULTS;
    act.b0 = 0.5f;
    larch_status s = larch_model_create(&m, (larch_shape){1, 1, TR_DIM});
    if (!s) s = larch_model_add_dense(m, "fc1", NULL, &hidden);
    if (!s) s = larch_model_add_layer(m, larch_layer_find("scaled_tanh"), "act", NULL, 0, &act);
    if (!s) s = larch_model_add_dense(m, "out", NULL, &out);
    if (!s) s = larch_model_add_loss(m, NULL);            /* softmax cross-entropy on "out" */
    if (!s) s = larch_model_finalize(m);
    if (!s) larch_model_init(m, 42);
    if (!s) s = larch_model_plan(m, TR_SAMPLES);
    if (s) {
        larch_model_free(m);
        return fail("building the training model");
    }
    printf("model:");
    for (int i = 0; i < larch_model_n_params(m); i++) printf(" %s(%zu)", larch_model_param(m, i)->name,
                                                            larch_model_param(m, i)->size);
    printf("\n");

    float *x = malloc(sizeof(float) * TR_SAMPLES * TR_DIM);
    int32_t *y = malloc(sizeof(int32_t) * TR_SAMPLES);
    if (!x || !y) {
        free(x);
        free(y);
        larch_model_free(m);
        return fail("out of memory");
    }
    make_data(x, y);
    double loss0, acc0, loss1, acc1;
    evaluate(m, x, y, &loss0, &acc0);
    size_t n_floats;
    float *w = larch_model_flat_params(m, &n_floats);
    const float *g = larch_model_flat_grads(m, &n_floats);
    const float *b_act = larch_model_param_data(m, larch_model_param_index(m, "act.b"));
    float b_before = b_act[0];
    for (int step = 0; step < TR_STEPS; step++) {
        int first = (step * TR_BATCH) % TR_SAMPLES;   /* TR_SAMPLES is a multiple of TR_BATCH */
        larch_batch b = {.n = TR_BATCH, .x = x + (size_t)first * TR_DIM, .label = {y + first}};
        larch_pass p = {.n = TR_BATCH, .train = 1, .seed = 42, .step = (uint32_t)step, .sample0 = (uint32_t)first};
        larch_model_forward(m, &b, &p);
        larch_model_loss(m, &b, 1.0f / TR_BATCH, NULL);   /* mean-loss gradients */
        larch_model_backward(m, &p);
        for (size_t i = 0; i < n_floats; i++) w[i] -= TR_LR * g[i];   /* plain SGD on the flat buffer */
        if (step % 60 == 0) {
            double l, a;
            evaluate(m, x, y, &l, &a);
            printf("step %3d: loss %.4f accuracy %.3f\n", step, l, a);
        }
    }
    evaluate(m, x, y, &loss1, &acc1);
    printf("training (%d SGD steps, lr %g, batch %d): loss %.4f -> %.4f, accuracy %.3f -> %.3f, act.b[0] %.3f -> %.3f\n",
           TR_STEPS, (double)TR_LR, TR_BATCH, loss0, loss1, acc0, acc1, (double)b_before, (double)b_act[0]);
    int rc = 0;
    if (!(loss1 < 0.5 * loss0)) rc = fail("the loss did not fall below half its initial value");
    else if (!(acc1 >= 0.85)) rc = fail("the accuracy after training is below 0.85");
    else if (b_act[0] == b_before) rc = fail("the custom layer's parameters were not trained");
    free(x);
    free(y);
    larch_model_free(m);
    return rc;
}

int main(void)
{
    if (check_registration() || check_gradients() || train()) return 1;
    printf("custom_layer: OK\n");
    return 0;
}
