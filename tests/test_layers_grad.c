/* test_layers_grad.c - every layer's backward (input and parameter
 * gradients) against central differences, in training and evaluation mode
 * where they differ (tests/gradcheck.h), convolutions over several GEMM
 * chunks included, plus exact forward checks:
 * convolution against a direct loop, batch-norm running statistics, dropout
 * masks keyed by global sample index, SyncBatchNorm through a simulated
 * two-rank comm hook, and shape errors that name the layer. */
#include "gradcheck.h"
#include "nn/model_internal.h"   /* the model's layout */
#include "nn/layers.h"

#include <stdlib.h>

static larch_shape S(int h, int w, int c) { return (larch_shape){h, w, c}; }

static void conv_grads(larch_conv_backend b)
{
    gradcheck_opts tr = {.n = 3, .train = 1};
    CHECK_OK(larch_set_conv_backend(b));
    printf("conv gradient checks on the %s backend\n", larch_conv_backend_name(b));
    gradcheck("conv 3x3 pad 1", "[{type: conv2d, filters: 4, kernel: 3, padding: 1}]", S(5, 6, 3), &tr);
    gradcheck("conv 3x3 stride 2", "[{type: conv2d, filters: 3, kernel: 3, stride: 2, bias: false}]", S(7, 6, 2), &tr);
    gradcheck("conv 2x2 stride 2 pad 1", "[{type: conv2d, filters: 2, kernel: 2, stride: 2, padding: 1}]", S(5, 5, 3), &tr);
    gradcheck("conv 1x1", "[{type: conv2d, filters: 5, kernel: 1}]", S(4, 3, 6), &tr);
    gradcheck("conv chunked", "[{type: conv2d, filters: 2, kernel: 3, padding: 1}]", S(130, 130, 2),
              &(gradcheck_opts){.n = 2, .train = 1, .probes = 12});
    /* several GEMM chunks (test hook: 2 samples per chunk, batch 5 = 2 + 2 + 1), direct and im2col paths */
    gradcheck_opts five = {.n = 5, .train = 1};
    larch_conv_test_chunk(2);
    gradcheck("conv 1x1 direct, chunks", "[{type: conv2d, filters: 3, kernel: 1}]", S(3, 4, 5), &five);
    gradcheck("conv 1x1 stride 2 pad 1, chunks", "[{type: conv2d, filters: 3, kernel: 1, stride: 2, padding: 1}]", S(5, 4, 3), &five);
    gradcheck("conv 3x3 stride 2 pad 1, chunks", "[{type: conv2d, filters: 4, kernel: 3, stride: 2, padding: 1}]", S(6, 5, 3), &five);
    gradcheck("conv 3x3 pad 1 -> conv 1x1, chunks", "[{type: conv2d, filters: 3, kernel: 3, padding: 1}, {type: conv2d, filters: 2, kernel: 1}]",
              S(4, 4, 2), &five);
    larch_conv_test_chunk(0);
    gradcheck("conv -> dense", "[{type: conv2d, filters: 3, kernel: 3}, {type: dense, units: 4}]", S(5, 5, 2), &tr);
}

static void grads(void)
{
    gradcheck_opts tr = {.n = 3, .train = 1}, ev = {.n = 3, .train = 0};
    gradcheck_opts ev_stats = {.n = 4, .train = 0, .eval_after_train = 1};
    gradcheck("dense", "[{type: dense, units: 5}]", S(1, 1, 7), &tr);
    gradcheck("dense no bias", "[{type: dense, units: 4, bias: false}]", S(2, 3, 2), &tr);
    /* every convolution check on each backend (tests/test_conv_backends.c compares them directly) */
    conv_grads(LARCH_CONV_OPENBLAS);
    if (larch_conv_onednn_built()) conv_grads(LARCH_CONV_ONEDNN);
    CHECK_OK(larch_set_conv_backend(LARCH_CONV_AUTO));
    gradcheck("maxpool 2", "[{type: maxpool, size: 2}]", S(4, 6, 3), &(gradcheck_opts){.n = 2, .eps = 1e-3});
    gradcheck("maxpool 3/2 pad 1", "[{type: maxpool, size: 3, stride: 2, padding: 1}]", S(7, 7, 2), &(gradcheck_opts){.n = 2, .eps = 1e-3});
    gradcheck("avgpool 2", "[{type: avgpool, size: 2}]", S(4, 6, 3), &tr);
    gradcheck("avgpool 3/2 pad 1", "[{type: avgpool, size: 3, stride: 2, padding: 1}]", S(6, 5, 2), &tr);
    gradcheck("global_avgpool", "[{type: global_avgpool}]", S(3, 4, 5), &tr);
    gradcheck("flatten", "[{type: flatten}, {type: dense, units: 3}]", S(2, 3, 4), &tr);
    gradcheck("add residual", "[{type: conv2d, name: a, filters: 3, kernel: 3, padding: 1}, {type: add, inputs: [input, a]}]",
              S(4, 4, 3), &tr);
    gradcheck("add same node twice", "[{type: tanh, name: t}, {type: add, inputs: [t, t, input]}]", S(2, 2, 3), &tr);
    gradcheck("relu", "[{type: dense, units: 6}, {type: relu}]", S(1, 1, 5), &(gradcheck_opts){.n = 3, .eps = 1e-3});
    gradcheck("leaky_relu", "[{type: leaky_relu, slope: 0.1}]", S(1, 1, 9), &(gradcheck_opts){.n = 3, .eps = 1e-3});
    gradcheck("gelu", "[{type: gelu}]", S(2, 2, 3), &tr);
    gradcheck("tanh", "[{type: tanh}]", S(2, 2, 3), &tr);
    gradcheck("sigmoid", "[{type: sigmoid}]", S(2, 2, 3), &tr);
    gradcheck("dropout train", "[{type: dropout, rate: 0.3}]", S(2, 2, 5), &tr);
    gradcheck("dropout eval", "[{type: dropout, rate: 0.3}]", S(2, 2, 5), &ev);
    gradcheck("batchnorm train dense", "[{type: batchnorm}]", S(1, 1, 4), &(gradcheck_opts){.n = 6, .train = 1});
    gradcheck("batchnorm train conv", "[{type: batchnorm}]", S(3, 2, 3), &tr);
    gradcheck("batchnorm train no affine", "[{type: batchnorm, affine: false}, {type: dense, units: 2}]", S(2, 2, 3), &tr);
    gradcheck("batchnorm eval", "[{type: batchnorm}]", S(3, 2, 3), &ev_stats);
    gradcheck("layernorm", "[{type: layernorm}]", S(2, 3, 4), &tr);
    /* metric learning: y = x / sqrt(||x||^2 + eps) over all features; cosine logits */
    gradcheck("l2norm", "[{type: l2norm}]", S(2, 3, 4), &tr);
    gradcheck("l2norm after dense", "[{type: dense, units: 5}, {type: l2norm, eps: 1e-6}]", S(1, 1, 4), &tr);
    gradcheck("cosine", "[{type: cosine, units: 5}]", S(1, 1, 6), &tr);
    gradcheck("cosine after conv", "[{type: conv2d, filters: 3, kernel: 3}, {type: cosine, units: 4}]", S(4, 4, 2), &tr);
    gradcheck("layernorm no affine", "[{type: layernorm, affine: false}, {type: dense, units: 3}]", S(1, 1, 6), &tr);
    gradcheck("groupnorm", "[{type: groupnorm, groups: 2}]", S(2, 3, 4), &tr);
    gradcheck("instancenorm", "[{type: instancenorm}]", S(3, 3, 2), &tr);
    gradcheck("cnn block", "[{type: conv2d, filters: 4, kernel: 3, padding: 1}, {type: batchnorm}, {type: gelu},"
                           " {type: avgpool, size: 2}, {type: dense, units: 3}]", S(4, 4, 2), &tr);
}

static larch_model *build(const char *yaml, larch_shape in, int n)
{
    larch_node *layers = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse(yaml, "<test>", &layers));
    CHECK_OK(larch_model_build(&m, in, layers, NULL, NULL, 9));
    larch_node_free(layers);
    if (m) CHECK_OK(larch_model_plan(m, n));
    return m;
}

/* conv2d forward = direct sum over the kernel */
static void conv_exact(void)
{
    const int H = 6, W = 5, C = 3, F = 4, K = 3, ST = 2, P = 1, n = 2;
    larch_model *m = build("[{type: conv2d, filters: 4, kernel: 3, stride: 2, padding: 1}]", S(H, W, C), n);
    if (!m) return;
    float x[2 * 6 * 5 * 3];
    for (int i = 0; i < n * H * W * C; i++) x[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
    float *bias = m->param + m->params[1].offset;
    for (int f = 0; f < F; f++) bias[f] = 0.1f * f;
    larch_batch b = {.n = n, .x = x};
    larch_pass p = {.n = n};
    larch_model_forward(m, &b, &p);
    const float *w = m->param + m->params[0].offset, *y = m->node_y[1];
    int OH = (H + 2 * P - K) / ST + 1, OW = (W + 2 * P - K) / ST + 1;
    CHECK(m->layers[0]->out_shape.h == OH && m->layers[0]->out_shape.w == OW, "output shape");
    double worst = 0;
    for (int s = 0; s < n; s++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                for (int f = 0; f < F; f++) {
                    double acc = bias[f];
                    for (int ky = 0; ky < K; ky++)
                        for (int kx = 0; kx < K; kx++)
                            for (int c = 0; c < C; c++) {
                                int iy = oy * ST - P + ky, ix = ox * ST - P + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                acc += (double)w[((f * K + ky) * K + kx) * C + c] * x[((s * H + iy) * W + ix) * C + c];
                            }
                    double d = fabs(acc - y[((s * OH + oy) * OW + ox) * F + f]);
                    if (d > worst) worst = d;
                }
    CHECK(worst < 1e-5, "conv forward vs direct: %g", worst);
    larch_gemm_shape g[8];
    int k = larch_model_gemms(m, 2, 0, g, 8);
    CHECK(k == 1 && g[0].m == 2 * OH * OW && g[0].n == F && g[0].k == K * K * C, "conv gemm inventory (%d)", k);
    larch_model_free(m);
}

static void batchnorm_exact(void)
{
    const int n = 5, C = 3;
    larch_model *m = build("[{type: batchnorm, momentum: 0.2}]", S(1, 2, C), n);
    if (!m) return;
    float x[5 * 2 * 3];
    for (int i = 0; i < n * 2 * C; i++) x[i] = (float)(i % 7) - 2.0f + 0.1f * (float)i;
    larch_batch b = {.n = n, .x = x};
    larch_pass p = {.n = n, .train = 1};
    larch_model_forward(m, &b, &p);
    const float *rm = m->buffer, *rv = m->buffer + m->buffers[1].offset;
    for (int c = 0; c < C; c++) {
        double s = 0, s2 = 0;
        int M = n * 2;
        for (int r = 0; r < M; r++) s += x[r * C + c];
        double mean = s / M;
        for (int r = 0; r < M; r++) s2 += (x[r * C + c] - mean) * (x[r * C + c] - mean);
        CHECK_NEAR(rm[c], 0.2 * mean, 1e-5);
        CHECK_NEAR(rv[c], 0.8 + 0.2 * s2 / (M - 1), 1e-4);
        CHECK_NEAR(m->node_y[1][c], (x[c] - mean) / sqrt(s2 / M + 1e-5), 1e-4);
    }
    p.train = 0;                                       /* eval: running statistics */
    larch_model_forward(m, &b, &p);
    for (int c = 0; c < C; c++) CHECK_NEAR(m->node_y[1][c], (x[c] - rm[c]) / sqrt(rv[c] + 1e-5), 1e-5);
    larch_model_free(m);
}

static void dropout_exact(void)
{
    larch_model *m = build("[{type: dropout, name: d, rate: 0.25}]", S(1, 1, 4000), 4);
    if (!m) return;
    float *x = malloc(4 * 4000 * sizeof *x), *y4 = malloc(4 * 4000 * sizeof *y4);
    for (int i = 0; i < 4 * 4000; i++) x[i] = 1.0f;
    larch_batch b = {.n = 4, .x = x};
    larch_pass p = {.n = 4, .train = 1, .seed = 3, .step = 7, .sample0 = 0};
    larch_model_forward(m, &b, &p);
    memcpy(y4, m->node_y[1], 4 * 4000 * sizeof *y4);
    long kept = 0;
    int scaled = 1;
    for (int i = 0; i < 4 * 4000; i++) {
        if (y4[i] != 0.0f) { kept++; if (fabsf(y4[i] - 1.0f / 0.75f) > 1e-6f) scaled = 0; }
    }
    CHECK(fabs(kept / 16000.0 - 0.75) < 0.02, "kept fraction %.4f", kept / 16000.0);
    CHECK(scaled, "kept elements are scaled by 1 / (1 - rate)");
    /* samples 2 and 3 alone, at global positions 2 and 3: the same masks */
    larch_batch b2 = {.n = 2, .x = x};
    larch_pass p2 = {.n = 2, .train = 1, .seed = 3, .step = 7, .sample0 = 2};
    larch_model_forward(m, &b2, &p2);
    CHECK(memcmp(m->node_y[1], y4 + 2 * 4000, 2 * 4000 * sizeof(float)) == 0, "mask keyed by global sample index");
    p2.step = 8;
    larch_model_forward(m, &b2, &p2);
    CHECK(memcmp(m->node_y[1], y4 + 2 * 4000, 2 * 4000 * sizeof(float)) != 0, "a new step draws a new mask");
    p.train = 0;
    larch_model_forward(m, &b, &p);
    CHECK(memcmp(m->node_y[1], x, 4 * 4000 * sizeof(float)) == 0, "eval is the identity");
    free(x); free(y4);
    larch_model_free(m);
}

/* A simulated rank of a two-rank SyncBatchNorm: the hook records this
 * rank's local sums of each call (0 = forward, 1 = backward) and adds the
 * other rank's recorded sums of the same call when they are known. */
typedef struct { double mine[2][64], *other[2]; int call; } fake_rank;
static void fake_allreduce(void *ctx, double *buf, int n)
{
    fake_rank *f = ctx;
    int k = f->call++ & 1;
    memcpy(f->mine[k], buf, (size_t)n * sizeof *buf);
    if (f->other[k]) for (int i = 0; i < n; i++) buf[i] += f->other[k][i];
}

static void syncbn(void)
{
    const int n = 6, C = 3, D = 2 * C, h = n / 2;
    larch_model *full = build("[{type: batchnorm, name: bn}]", S(1, 2, C), n);
    larch_model *r0 = build("[{type: batchnorm, name: bn, sync: true}]", S(1, 2, C), h);
    larch_model *r1 = build("[{type: batchnorm, name: bn, sync: true}]", S(1, 2, C), h);
    if (!full || !r0 || !r1) return;
    full->want_input_grad = r0->want_input_grad = r1->want_input_grad = 1;
    CHECK_OK(larch_model_plan(full, n));
    CHECK_OK(larch_model_plan(r0, h));
    CHECK_OK(larch_model_plan(r1, h));
    float x[6 * 6], dy[6 * 6];
    for (int i = 0; i < n * D; i++) { x[i] = sinf(0.7f * i) * 2.0f + 0.5f; dy[i] = cosf(1.3f * i); }
    larch_batch b = {.n = n, .x = x};
    larch_pass p = {.n = n, .train = 1};
    larch_model_forward(full, &b, &p);
    memcpy(full->node_dy[1], dy, sizeof dy);
    larch_model_backward(full, &p);

    fake_rank f0 = {{{0}}, {NULL, NULL}, 0}, f1 = {{{0}}, {NULL, NULL}, 0};
    larch_comm_hooks h0 = {fake_allreduce, &f0, NULL, 1}, h1 = {fake_allreduce, &f1, NULL, 1};
    larch_pass p0 = {.n = h, .train = 1, .comm = &h0}, p1 = {.n = h, .train = 1, .comm = &h1};
    larch_batch b0 = {.n = h, .x = x}, b1 = {.n = h, .x = x + h * D};
    f1.call = 0; larch_model_forward(r1, &b1, &p1);                /* rank 1's local forward sums */
    f0.other[0] = f1.mine[0];
    f0.call = 0; larch_model_forward(r0, &b0, &p0);                /* rank 0: global statistics */
    memcpy(r0->node_dy[1], dy, (size_t)h * D * sizeof(float));
    larch_model_backward(r0, &p0);                                 /* rank 0's local backward sums */
    f1.other[0] = f0.mine[0]; f1.other[1] = f0.mine[1];
    f1.call = 0; larch_model_forward(r1, &b1, &p1);                /* rank 1: global statistics */
    memcpy(r1->node_dy[1], dy + h * D, (size_t)h * D * sizeof(float));
    larch_model_backward(r1, &p1);                                 /* rank 1: global backward sums */
    f0.other[1] = f1.mine[1];
    f0.call = 0; larch_model_forward(r0, &b0, &p0);                /* rank 0 again, now knowing both */
    memcpy(r0->node_dy[1], dy, (size_t)h * D * sizeof(float));
    larch_model_backward(r0, &p0);
    double wy = 0, wdx = 0, wds = 0;
    for (int i = 0; i < h * D; i++) {
        wy = fmax(wy, fabs(r0->node_y[1][i] - full->node_y[1][i]));
        wy = fmax(wy, fabs(r1->node_y[1][i] - full->node_y[1][h * D + i]));
        wdx = fmax(wdx, fabs(r0->node_dy[0][i] - full->node_dy[0][i]));
        wdx = fmax(wdx, fabs(r1->node_dy[0][i] - full->node_dy[0][h * D + i]));
    }
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < C; c++) {
            size_t o = full->params[k].offset + c;
            wds = fmax(wds, fabs(r0->grad[o] + r1->grad[o] - full->grad[o]));
        }
    CHECK(wy < 1e-5, "SyncBN forward differs from the full batch by %g", wy);
    CHECK(wdx < 1e-5, "SyncBN input gradient differs by %g", wdx);
    CHECK(wds < 1e-5, "SyncBN scale/shift gradients (summed over ranks) differ by %g", wds);
    larch_model_free(full);
    larch_model_free(r0);
    larch_model_free(r1);
}

static void shape_errors(void)
{
    larch_node *layers = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse("[{type: conv2d, name: big, filters: 2, kernel: 7}]", "net.yaml", &layers));
    CHECK_FAIL(larch_model_build(&m, S(4, 4, 1), layers, NULL, NULL, 1), LARCH_ERR_SHAPE, "layer 'big' (conv2d): kernel 7");
    larch_node_free(layers);
    CHECK_OK(larch_cfg_parse("[{type: groupnorm, name: gn, groups: 3}]", "net.yaml", &layers));
    CHECK_FAIL(larch_model_build(&m, S(2, 2, 4), layers, NULL, NULL, 1), LARCH_ERR_SHAPE, "layer 'gn' (groupnorm): 3 groups");
    larch_node_free(layers);
    CHECK_OK(larch_cfg_parse("[{type: dense, name: a, units: 3}, {type: add, inputs: [input, a]}]", "net.yaml", &layers));
    CHECK_FAIL(larch_model_build(&m, S(1, 1, 4), layers, NULL, NULL, 1), LARCH_ERR_SHAPE, "input 1 has shape (1, 1, 3)");
    larch_node_free(layers);
    CHECK_OK(larch_cfg_parse("[{type: dense, units: 3, input: nothere}]", "net.yaml", &layers));
    CHECK_FAIL(larch_model_build(&m, S(1, 1, 4), layers, NULL, NULL, 1), LARCH_ERR_CONFIG, "net.yaml:1");
    larch_node_free(layers);
    CHECK_OK(larch_cfg_parse("[{type: densse, units: 3}]", "net.yaml", &layers));
    CHECK_FAIL(larch_model_build(&m, S(1, 1, 4), layers, NULL, NULL, 1), LARCH_ERR_CONFIG, "unknown layer type 'densse' (valid: dense,");
    larch_node_free(layers);
    CHECK_OK(larch_cfg_parse("[{type: maxpool, size: 2, padding: 2}]", "net.yaml", &layers));
    CHECK_FAIL(larch_model_build(&m, S(4, 4, 1), layers, NULL, NULL, 1), LARCH_ERR_SHAPE, "at most half");
    larch_node_free(layers);
}

int main(void)
{
    grads();
    conv_exact();
    batchnorm_exact();
    dropout_exact();
    syncbn();
    shape_errors();
    return check_result("test_layers_grad");
}
