/* test_layers_numeric.c - the layers' behaviour on non-finite values and at
 * large sizes:
 *   - max pooling propagates NaN and keeps -inf windows at -inf with the
 *     gradient in the right channel (PyTorch's semantics, checked against a
 *     scalar reference with padding and strides);
 *   - a NaN put anywhere in any layer's input or parameters reaches the loss
 *     (every registered layer type has a case);
 *   - bias and norm scale/shift gradients over 2.6e5 rows match a double
 *     reference where a float running sum drifts;
 *   - conv2d gives the same results in one chunk and in several (direct 1x1
 *     and im2col paths, accumulating gradients), and on oneDNN when built;
 *   - sizes that do not fit an int are rejected, naming the layer. */
#include "check.h"
#include "larch/larch.h"
#include "nn/layers.h"
#include "nn/model_internal.h"

#include <limits.h>
#include <stdlib.h>

static larch_shape S(int h, int w, int c) { return (larch_shape){h, w, c}; }

static larch_model *build_loss(const char *yaml, larch_shape in, int n, const char *loss_yaml)
{
    larch_node *layers = NULL, *loss = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse(yaml, "<test>", &layers));
    if (loss_yaml) CHECK_OK(larch_cfg_parse(loss_yaml, "<test>", &loss));
    if (layers) CHECK_OK(larch_model_build(&m, in, layers, loss, NULL, 9));
    larch_node_free(layers);
    larch_node_free(loss);
    if (!m) return NULL;
    m->want_input_grad = 1;
    larch_status s = larch_model_plan(m, n);
    CHECK(s == LARCH_OK, "plan: %s", larch_errmsg());
    if (s) { larch_model_free(m); return NULL; }
    return m;
}
static larch_model *build(const char *yaml, larch_shape in, int n) { return build_loss(yaml, in, n, NULL); }

static uint32_t hash(uint32_t i) { i ^= i >> 16; i *= 0x7feb352dU; i ^= i >> 15; i *= 0x846ca68bU; i ^= i >> 16; return i; }
static float unit(uint32_t i) { return (float)(hash(i) >> 8) / 16777216.0f; }          /* [0, 1) */

/* ---- max pooling: NaN and -inf ---- */

/* PyTorch's max_pool2d on one sample (h, w, c): start at -inf with the
 * window's first real cell, take v when v > max or v is NaN. */
static void ref_maxpool(const float *x, int H, int W, int C, int k, int st, int pad, float *y, int *arg)
{
    int oh = (H + 2 * pad - k) / st + 1, ow = (W + 2 * pad - k) / st + 1;
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
            for (int c = 0; c < C; c++) {
                int y0 = oy * st - pad, x0 = ox * st - pad;
                int y1 = y0 < 0 ? 0 : y0, x1 = x0 < 0 ? 0 : x0;
                float mx = -INFINITY;
                int at = (y1 * W + x1) * C + c;
                for (int iy = y1; iy < y0 + k && iy < H; iy++)
                    for (int ix = x1; ix < x0 + k && ix < W; ix++) {
                        float v = x[(iy * W + ix) * C + c];
                        if (v > mx || isnan(v)) { mx = v; at = (iy * W + ix) * C + c; }
                    }
                y[(oy * ow + ox) * C + c] = mx;
                arg[(oy * ow + ox) * C + c] = at;
            }
}

static void maxpool_case(const char *label, const char *yaml, int H, int W, int C, int k, int st, int pad)
{
    const int n = 2;
    larch_model *m = build(yaml, S(H, W, C), n);
    if (!m) return;
    const size_t in = (size_t)H * W * C;
    larch_shape os = m->layers[0]->out_shape;
    const size_t out = larch_shape_size(os);
    float *x = malloc(n * in * sizeof *x), *ry = malloc(out * sizeof *ry);
    int *rarg = malloc(out * sizeof *rarg);
    for (size_t i = 0; i < n * in; i++) {
        x[i] = 2.0f * unit((uint32_t)i) - 1.0f;
        uint32_t h = hash((uint32_t)i + 12345u) % 100;
        if (h < 6) x[i] = NAN;                                   /* scattered NaN, +inf and -inf */
        else if (h < 9) x[i] = INFINITY;
        else if (h < 12) x[i] = -INFINITY;
    }
    for (int iy = 0; iy < H; iy++)                               /* sample 1, channel C-1: all -inf */
        for (int ix = 0; ix < W; ix++) x[in + ((size_t)iy * W + ix) * C + (C - 1)] = -INFINITY;
    larch_batch b = {.n = n, .x = x};
    larch_pass p = {.n = n, .train = 1};
    larch_model_forward(m, &b, &p);
    float *dy = m->node_dy[1];
    for (size_t i = 0; i < n * out; i++) dy[i] = (float)(i % 97 + 1);   /* distinct-ish, exact sums */
    larch_model_backward(m, &p);
    const float *y = m->node_y[1], *dx = m->node_dy[0];
    int bad_y = 0, bad_dx = 0, neg_inf_windows = 0;
    float *rdx = calloc(in, sizeof *rdx);
    for (int s = 0; s < n; s++) {
        ref_maxpool(x + s * in, H, W, C, k, st, pad, ry, rarg);
        memset(rdx, 0, in * sizeof *rdx);
        for (size_t i = 0; i < out; i++) {
            float got = y[s * out + i];
            int same = isnan(ry[i]) ? isnan(got) : got == ry[i];
            if (!same && bad_y++ < 3) fprintf(stderr, "%s: sample %d output %zu: %g, want %g\n", label, s, i, got, ry[i]);
            if (ry[i] == -INFINITY && i % C == (size_t)C - 1) neg_inf_windows++;
            rdx[rarg[i]] += dy[s * out + i];
        }
        for (size_t j = 0; j < in; j++)
            if (dx[s * in + j] != rdx[j] && bad_dx++ < 3)
                fprintf(stderr, "%s: sample %d dx[%zu] = %g, want %g\n", label, s, j, dx[s * in + j], rdx[j]);
    }
    CHECK(bad_y == 0, "%s: %d outputs differ from PyTorch's max pooling (NaN wins, -inf stays -inf)", label, bad_y);
    CHECK(bad_dx == 0, "%s: %d input gradients land elsewhere than PyTorch's argmax", label, bad_dx);
    CHECK(neg_inf_windows >= (int)(os.h * os.w), "%s: the all -inf channel gives -inf outputs (%d)", label, neg_inf_windows);
    /* the case: the all -inf channel's gradient stays in that channel */
    double in_channel = 0;
    for (size_t j = C - 1; j < in; j += C) in_channel += dx[in + j];
    double want = 0;
    for (size_t i = C - 1; i < out; i += C) want += dy[out + i];
    CHECK(in_channel == want, "%s: -inf windows send %g of their %g gradient to their own channel", label, in_channel, want);
    free(x); free(ry); free(rarg); free(rdx);
    larch_model_free(m);
}

static void maxpool_nonfinite(void)
{
    maxpool_case("maxpool 2", "[{type: maxpool, size: 2}]", 6, 8, 3, 2, 2, 0);
    maxpool_case("maxpool 3/2 pad 1", "[{type: maxpool, size: 3, stride: 2, padding: 1}]", 7, 6, 4, 3, 2, 1);
    maxpool_case("maxpool 2/1", "[{type: maxpool, size: 2, stride: 1}]", 5, 5, 2, 2, 1, 0);
    maxpool_case("maxpool 4/3 pad 2", "[{type: maxpool, size: 4, stride: 3, padding: 2}]", 9, 7, 17, 4, 3, 2);

    /* one window of -inf: the output is -inf (not -FLT_MAX) */
    larch_model *m = build("[{type: maxpool, size: 2}]", S(2, 2, 3), 1);
    if (!m) return;
    float x[12];
    for (int i = 0; i < 12; i++) x[i] = (i % 3 == 2) ? -INFINITY : (float)i;
    larch_batch b = {.n = 1, .x = x};
    larch_pass p = {.n = 1, .train = 1};
    larch_model_forward(m, &b, &p);
    const float *y = m->node_y[1];
    CHECK(y[0] == 9.0f && y[1] == 10.0f && y[2] == -INFINITY, "window of -inf: %g %g %g", y[0], y[1], y[2]);
    m->node_dy[1][0] = 0; m->node_dy[1][1] = 0; m->node_dy[1][2] = 1;
    larch_model_backward(m, &p);
    const float *dx = m->node_dy[0];
    CHECK(dx[2] == 1.0f && dx[0] == 0.0f, "the -inf window's gradient goes to channel 2 (dx[2] = %g, dx[0] = %g)", dx[2], dx[0]);
    x[4] = NAN;                                                     /* channel 1 of cell 1 */
    larch_model_forward(m, &b, &p);
    CHECK(y[0] == 9.0f && isnan(y[1]) && y[2] == -INFINITY, "a NaN wins its window: %g %g %g", y[0], y[1], y[2]);
    larch_model_free(m);
}

/* ---- a NaN anywhere reaches the loss ---- */

typedef struct { const char *type, *yaml; int train; } nan_case;

/* The layer under test is layer 0 (name t); a dense head scores it. Input
 * (4, 4, 2): every input cell is in some window of every case. */
static const nan_case g_nan_cases[] = {
    {"dense", "{type: dense, name: t, units: 5}", 1},
    {"l2norm", "{type: l2norm, name: t}", 1},        /* a NaN anywhere in a sample: its norm, so all of it */
    {"cosine", "{type: cosine, name: t, units: 4}", 1},
    {"conv2d", "{type: conv2d, name: t, filters: 3, kernel: 3, padding: 1}", 1},
    {"conv2d", "{type: conv2d, name: t, filters: 3, kernel: 1}", 1},
    {"conv2d", "{type: conv2d, name: t, filters: 3, kernel: 2, stride: 2, bias: true}", 1},
    {"maxpool", "{type: maxpool, name: t, size: 2}", 1},
    {"maxpool", "{type: maxpool, name: t, size: 3, stride: 1, padding: 1}", 1},
    {"avgpool", "{type: avgpool, name: t, size: 2}", 1},
    {"global_avgpool", "{type: global_avgpool, name: t}", 1},
    {"flatten", "{type: flatten, name: t}", 1},
    {"add", "{type: add, name: t, inputs: [input, input]}", 1},
    {"relu", "{type: relu, name: t}", 1},
    {"leaky_relu", "{type: leaky_relu, name: t}", 1},
    {"gelu", "{type: gelu, name: t}", 1},
    {"tanh", "{type: tanh, name: t}", 1},
    {"sigmoid", "{type: sigmoid, name: t}", 1},
    {"dropout", "{type: dropout, name: t, rate: 0.5}", 1},
    {"dropout", "{type: dropout, name: t, rate: 0.5}", 0},
    {"batchnorm", "{type: batchnorm, name: t}", 1},
    {"batchnorm", "{type: batchnorm, name: t}", 0},
    {"layernorm", "{type: layernorm, name: t}", 1},
    {"groupnorm", "{type: groupnorm, name: t, groups: 2}", 1},
    {"instancenorm", "{type: instancenorm, name: t}", 1},
    /* normalizing flows (types with an inverse, docs/flows.md): scored by flow_nll without a head, which
     * also reads their log-determinants
     * (split: the factored-out half reaches the loss only through its prior's log-density) */
    {"dequantize", "{type: dequantize, name: t}", 1},
    {"actnorm", "{type: actnorm, name: t}", 1},
    {"invconv", "{type: invconv, name: t}", 1},
    {"coupling", "{type: coupling, name: t, hidden: 3}", 1},
    {"squeeze", "{type: squeeze, name: t}", 1},
    {"split", "{type: split, name: t}", 1},
};

static void nan_reaches_loss(void)
{
    const int n = 2, H = 4, W = 4, C = 2;
    const size_t in = (size_t)n * H * W * C;
    float x[2 * 4 * 4 * 2];
    int32_t labels[2] = {0, 2};
    const size_t ncases = sizeof g_nan_cases / sizeof g_nan_cases[0];
    for (size_t k = 0; k < ncases; k++) {
        const nan_case *c = &g_nan_cases[k];
        char yaml[256], label[300];
        const larch_layer_ops *ops = larch_layer_find(c->type);
        int flow = ops && ops->inverse;
        snprintf(yaml, sizeof yaml, flow ? "[%s]" : "[%s, {type: dense, name: head, units: 3}]", c->yaml);
        snprintf(label, sizeof label, "%s (%s)", c->yaml, c->train ? "train" : "eval");
        larch_model *m = flow ? build_loss(yaml, S(H, W, C), n, "{type: flow_nll}") : build(yaml, S(H, W, C), n);
        if (!m) continue;
        for (size_t i = 0; i < in; i++) x[i] = 2.0f * unit((uint32_t)(i + 77 * k)) - 1.0f;
        larch_batch b = {.n = n, .x = x, .label = {labels}};
        larch_pass p = {.n = n, .train = c->train, .seed = 5, .step = 1};
        larch_model_forward(m, &b, &p);
        double clean = larch_model_loss(m, &b, 0.0f, NULL);
        CHECK(isfinite(clean), "%s: finite input gives loss %g", label, clean);
        int lost = 0, tried = 0;
        for (size_t j = 0; j < in; j++) {                       /* NaN in each input element */
            float keep = x[j];
            x[j] = NAN;
            larch_model_forward(m, &b, &p);
            double loss = larch_model_loss(m, &b, 0.0f, NULL);
            if (!isnan(loss) && lost++ < 3) fprintf(stderr, "%s: NaN in input %zu: loss %g\n", label, j, loss);
            tried++;
            x[j] = keep;
        }
        larch_layer *L = m->layers[0];
        for (int t = 0; t < L->n_param; t++) {                  /* NaN in each parameter element */
            const larch_param *pr = &m->params[L->first_param + t];
            float *w = m->param + pr->offset;
            for (size_t j = 0; j < pr->size; j++) {
                float keep = w[j];
                w[j] = NAN;
                larch_model_forward(m, &b, &p);
                double loss = larch_model_loss(m, &b, 0.0f, NULL);
                if (!isnan(loss) && lost++ < 3) fprintf(stderr, "%s: NaN in %s[%zu]: loss %g\n", label, pr->name, j, loss);
                tried++;
                w[j] = keep;
            }
        }
        CHECK(lost == 0, "%s: %d of %d NaNs vanished before the loss", label, lost, tried);
        larch_model_free(m);
    }
    const larch_layer_ops *const *types;                          /* every layer type has a case */
    int nt = larch_layer_types(&types);
    for (int i = 0; i < nt; i++) {
        int found = 0;
        for (size_t k = 0; k < ncases; k++) found |= strcmp(g_nan_cases[k].type, types[i]->type) == 0;
        CHECK(found, "layer type %s has no NaN-propagation case", types[i]->type);
    }
}

/* ---- per-channel parameter gradients over many rows ---- */

/* dy of rows x C: positive values in [1, 2), where a float running sum over
 * 2.6e5 rows loses about 1e-5 of the total. */
static void fill_dy(float *dy, size_t len)
{
    for (size_t i = 0; i < len; i++) dy[i] = 1.0f + unit((uint32_t)i * 3u + 1u);
}

/* Compares g[c] with the double sum over rows of a[r C + c] (* b[r C + c]).
 * Also checks that a float running sum drifts on these data by more than
 * 10x the tolerance, so the comparison can tell the two apart. */
static void check_sums(const char *label, const float *g, const float *a, const float *b, size_t rows, int C)
{
    for (int c = 0; c < C; c++) {
        double ref = 0, mag = 0;
        float naive = 0.0f;
        for (size_t r = 0; r < rows; r++) {
            double t = b ? (double)a[r * C + c] * b[r * C + c] : a[r * C + c];
            ref += t;
            mag += fabs(t);
            naive += b ? a[r * C + c] * b[r * C + c] : a[r * C + c];
        }
        double tol = 2e-7 * mag;
        CHECK(fabs(g[c] - ref) <= tol, "%s[%d] = %.9g, double reference %.9g (|diff| %.3g > %.3g)", label, c, g[c], ref,
              fabs(g[c] - ref), tol);
        CHECK(fabs(naive - ref) > 10 * tol, "%s[%d]: test data: a float running sum drifts by only %.3g", label, c,
              fabs(naive - ref));
    }
}

static void large_sums(void)
{
    /* conv2d bias over n*h*w = 1 * 512 * 512 rows (direct and im2col paths) */
    const char *convs[] = {"[{type: conv2d, filters: 2, kernel: 1}]", "[{type: conv2d, filters: 2, kernel: 3, padding: 1}]"};
    for (int v = 0; v < 2; v++) {
        larch_model *m = build(convs[v], S(512, 512, 1), 1);
        if (!m) continue;
        size_t rows = 512 * 512;
        float *x = malloc(rows * sizeof *x);
        for (size_t i = 0; i < rows; i++) x[i] = unit((uint32_t)i);
        larch_batch b = {.n = 1, .x = x};
        larch_pass p = {.n = 1, .train = 1};
        larch_model_forward(m, &b, &p);
        fill_dy(m->node_dy[1], rows * 2);
        larch_model_backward(m, &p);
        check_sums(v ? "conv 3x3 bias grad" : "conv 1x1 bias grad", m->grad + m->params[1].offset, m->node_dy[1], NULL, rows, 2);
        free(x);
        larch_model_free(m);
    }
    /* dense bias over a batch of 2^18 */
    {
        const int n = 1 << 18;
        larch_model *m = build("[{type: dense, units: 2}]", S(1, 1, 1), n);
        if (m) {
            float *x = malloc((size_t)n * sizeof *x);
            for (int i = 0; i < n; i++) x[i] = unit((uint32_t)i);
            larch_batch b = {.n = n, .x = x};
            larch_pass p = {.n = n, .train = 1};
            larch_model_forward(m, &b, &p);
            fill_dy(m->node_dy[1], (size_t)n * 2);
            larch_model_backward(m, &p);
            check_sums("dense bias grad", m->grad + m->params[1].offset, m->node_dy[1], NULL, (size_t)n, 2);
            free(x);
            larch_model_free(m);
        }
    }
    /* norm shift = sum dy and scale = sum dy * xhat over 512 * 512 rows */
    const char *norms[] = {"[{type: batchnorm}]", "[{type: layernorm}]", "[{type: groupnorm, groups: 2}]", "[{type: instancenorm}]"};
    for (int v = 0; v < 4; v++) {
        larch_model *m = build(norms[v], S(512, 512, 2), 1);
        if (!m) continue;
        size_t rows = 512 * 512;
        float *x = malloc(rows * 2 * sizeof *x);
        for (size_t i = 0; i < rows * 2; i++) x[i] = 3.0f * unit((uint32_t)i + 99u);
        larch_batch b = {.n = 1, .x = x};
        larch_pass p = {.n = 1, .train = 1};
        larch_model_forward(m, &b, &p);
        fill_dy(m->node_dy[1], rows * 2);
        larch_model_backward(m, &p);
        char label[64];
        snprintf(label, sizeof label, "%s shift grad", norms[v]);
        check_sums(label, m->grad + m->params[1].offset, m->node_dy[1], NULL, rows, 2);
        const float *xhat = m->layers[0]->saved;                      /* scale 1, shift 0: y = xhat */
        float *dy = m->node_dy[1];
        for (size_t i = 0; i < rows * 2; i++) if (xhat[i] < 0) dy[i] = -dy[i];   /* dy xhat > 0: a drifting sum */
        larch_model_backward(m, &p);
        snprintf(label, sizeof label, "%s scale grad", norms[v]);
        check_sums(label, m->grad + m->params[0].offset, dy, xhat, rows, 2);
        free(x);
        larch_model_free(m);
    }
}

/* ---- conv2d: one chunk or several ---- */

typedef struct { float *y, *dx, *g; } conv_run;

/* Two passes (the second accumulating gradients) of a model with a conv2d. */
static conv_run run_conv(const char *yaml, larch_shape in, int n, int chunk, int *gemm_chunks)
{
    conv_run r = {0};
    larch_conv_test_chunk(chunk);
    larch_model *m = build(yaml, in, n);
    larch_conv_test_chunk(0);
    if (!m) return r;
    size_t xl = (size_t)n * larch_shape_size(in), yl = (size_t)n * larch_shape_size(m->layers[m->n_layers - 1]->out_shape);
    float *x = malloc(xl * sizeof *x);
    for (size_t i = 0; i < xl; i++) x[i] = 2.0f * unit((uint32_t)i + 5u) - 1.0f;
    larch_batch b = {.n = n, .x = x};
    larch_conv_test_chunk(chunk);
    larch_gemm_shape g[16];
    int k = larch_model_gemms(m, n, 1, g, 16);
    *gemm_chunks = 0;
    for (int i = 0; i < k; i++) if (g[i].ta == 0 && g[i].tb == 1) *gemm_chunks += (int)g[i].count;   /* forward GEMMs */
    for (int pass = 0; pass < 2; pass++) {
        larch_pass p = {.n = n, .train = 1, .acc_grad = pass};
        larch_model_forward(m, &b, &p);
        for (size_t i = 0; i < yl; i++) m->node_dy[m->n_layers][i] = unit((uint32_t)i * 7u + 3u) - 0.5f;
        larch_model_backward(m, &p);
    }
    larch_conv_test_chunk(0);
    r.y = malloc(yl * sizeof *r.y);
    r.dx = malloc(xl * sizeof *r.dx);
    r.g = malloc(m->n_floats * sizeof *r.g);
    memcpy(r.y, m->node_y[m->n_layers], yl * sizeof *r.y);
    memcpy(r.dx, m->node_dy[0], xl * sizeof *r.dx);
    memcpy(r.g, m->grad, m->n_floats * sizeof *r.g);
    free(x);
    larch_model_free(m);
    return r;
}

static double max_diff(const float *a, const float *b, size_t len)
{
    double w = 0;
    for (size_t i = 0; i < len; i++) w = fmax(w, fabs((double)a[i] - b[i]));
    return w;
}

static void conv_chunks(void)
{
    struct { const char *yaml; larch_shape in; } cases[] = {
        {"[{type: conv2d, filters: 3, kernel: 1}]", {3, 4, 5}},                              /* direct path */
        {"[{type: conv2d, filters: 3, kernel: 1, stride: 2, padding: 1}]", {5, 4, 3}},       /* 1x1 through im2col */
        {"[{type: conv2d, filters: 4, kernel: 3, stride: 2, padding: 1}]", {6, 5, 3}},
        {"[{type: conv2d, name: a, filters: 4, kernel: 3, padding: 1}, {type: conv2d, filters: 2, kernel: 1},"
         " {type: add, inputs: [a, a]}, {type: conv2d, filters: 2, kernel: 3}]", {5, 5, 2}},   /* dx accumulates */
    };
    const int n = 5;
    CHECK_OK(larch_set_conv_backend(LARCH_CONV_OPENBLAS));   /* the chunks are the GEMM path's */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int one = 0, many = 0;
        conv_run a = run_conv(cases[c].yaml, cases[c].in, n, 0, &one);
        conv_run b = run_conv(cases[c].yaml, cases[c].in, n, 2, &many);
        if (!a.y || !b.y) continue;
        larch_model *m = build(cases[c].yaml, cases[c].in, n);
        if (!m) continue;
        size_t yl = (size_t)n * larch_shape_size(m->layers[m->n_layers - 1]->out_shape);
        size_t xl = (size_t)n * larch_shape_size(cases[c].in);
        int convs = 0;
        for (int i = 0; i < m->n_layers; i++) convs += m->layers[i]->ops == &larch_conv2d_ops;
        CHECK(one == convs && many == 3 * convs, "%s: %d GEMMs in one chunk, %d in chunks of 2 (want %d, %d)",
              cases[c].yaml, one, many, convs, 3 * convs);
        CHECK(max_diff(a.y, b.y, yl) < 1e-5, "%s: outputs differ by %g", cases[c].yaml, max_diff(a.y, b.y, yl));
        CHECK(max_diff(a.dx, b.dx, xl) < 1e-5, "%s: input gradients differ by %g", cases[c].yaml, max_diff(a.dx, b.dx, xl));
        CHECK(max_diff(a.g, b.g, m->n_floats) < 1e-4, "%s: parameter gradients differ by %g", cases[c].yaml,
              max_diff(a.g, b.g, m->n_floats));
        /* the same passes on oneDNN (its own chunking: none) against the GEMM path */
        if (larch_conv_onednn_built()) {
            CHECK_OK(larch_set_conv_backend(LARCH_CONV_ONEDNN));
            int unused = 0;
            conv_run o = run_conv(cases[c].yaml, cases[c].in, n, 0, &unused);
            CHECK_OK(larch_set_conv_backend(LARCH_CONV_OPENBLAS));
            if (o.y) {
                CHECK(max_diff(a.y, o.y, yl) < 1e-5, "%s: onednn outputs differ by %g", cases[c].yaml, max_diff(a.y, o.y, yl));
                CHECK(max_diff(a.dx, o.dx, xl) < 1e-5, "%s: onednn input gradients differ by %g", cases[c].yaml, max_diff(a.dx, o.dx, xl));
                CHECK(max_diff(a.g, o.g, m->n_floats) < 1e-4, "%s: onednn parameter gradients differ by %g", cases[c].yaml,
                      max_diff(a.g, o.g, m->n_floats));
            }
            free(o.y); free(o.dx); free(o.g);
        }
        larch_model_free(m);
        free(a.y); free(a.dx); free(a.g); free(b.y); free(b.dx); free(b.g);
    }
    CHECK_OK(larch_set_conv_backend(LARCH_CONV_AUTO));
}

/* ---- sizes that do not fit an int ---- */

static void size_limits(void)
{
    larch_model *m = NULL;
    CHECK_FAIL(larch_model_create(&m, S(65536, 65536, 1)), LARCH_ERR_SHAPE, "(65536, 65536, 1) has 4294967296 elements per sample");
    larch_model_free(m);
    struct { const char *yaml; larch_shape in; const char *needle; } bad[] = {
        {"[{type: conv2d, name: wide, filters: 1024, kernel: 1}]", {2048, 2048, 1},
         "layer 'wide' (conv2d): output (2048, 2048, 1024) has 4294967296 elements per sample, more than 2147483647"},
        {"[{type: dense, units: 4}, {type: conv2d, name: wide2, filters: 65536, kernel: 1, padding: 1024}]", {1, 1, 1},
         "layer 'wide2' (conv2d): output (2049, 2049, 65536)"},
        {"[{type: conv2d, name: deep, filters: 1, kernel: 1024, padding: 512}]", {1, 1, 2048},
         "layer 'deep' (conv2d): kernel 1024x1024 over 2048 input channels into 1 filters: the GEMM dimension K = 2147483648 does not fit an int"},
        {"[{type: conv2d, name: fan, filters: 2048, kernel: 1024, padding: 512}]", {1, 1, 1},
         "layer 'fan' (conv2d): kernel 1024x1024 over 1 input channels into 2048 filters: the fan-out 2147483648 does not fit an int"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        larch_node *layers = NULL;
        CHECK_OK(larch_cfg_parse(bad[i].yaml, "big.yaml", &layers));
        m = NULL;
        CHECK_FAIL(larch_model_build(&m, bad[i].in, layers, NULL, NULL, 1), LARCH_ERR_SHAPE, bad[i].needle);
        CHECK(m == NULL, "no model is returned");
        larch_model_free(m);
        larch_node_free(layers);
    }
}

/* l2norm and cosine values against direct formulas (the gradient checks
 * only test the gradients against the layers' own forward). */
static void normalized_values(void)
{
    larch_model *m = build("[{type: l2norm}]", S(1, 2, 2), 2);
    if (m) {
        float x[8] = {3, 0, 4, 0, 0, 0, 0, 0};   /* sample 1 is zero: eps keeps it finite (0) */
        larch_batch b = {.n = 2, .x = x};
        larch_pass p = {.n = 2};
        larch_model_forward(m, &b, &p);
        const float *y = larch_model_node_output(m, 1);
        CHECK_NEAR(y[0], 0.6, 1e-6); CHECK_NEAR(y[2], 0.8, 1e-6); CHECK_NEAR(y[1], 0.0, 1e-9);
        for (int i = 4; i < 8; i++) CHECK(y[i] == 0.0f, "l2norm of a zero sample is 0, got %g", y[i]);
        larch_model_free(m);
    }
    m = build("[{type: cosine, units: 2}]", S(1, 1, 3), 1);
    if (m) {
        const float w[6] = {1, 0, 0, 2, 2, 1};   /* rows: e1 and (2, 2, 1) / 3 */
        memcpy(m->param, w, sizeof w);
        float x[3] = {0, 3, 4};
        larch_batch b = {.n = 1, .x = x};
        larch_pass p = {.n = 1};
        larch_model_forward(m, &b, &p);
        const float *y = larch_model_node_output(m, 1);
        CHECK_NEAR(y[0], 0.0, 1e-6);
        CHECK_NEAR(y[1], (0 * 2 + 3 * 2 + 4 * 1) / (5.0 * 3.0), 1e-6);
        larch_model_free(m);
    }
}

int main(void)
{
    normalized_values();
    maxpool_nonfinite();
    nan_reaches_loss();
    large_sums();
    conv_chunks();
    size_limits();
    return check_result("test_layers_numeric");
}
