/* test_threads_fused.c - the threaded memory-bound layers and the
 * batchnorm + relu fusion (src/core/threads.c, src/nn/model.c):
 *   - 1, 2 and 3 threads give bit-identical outputs, input gradients,
 *     parameter gradients and running statistics for every threaded layer
 *     (batchnorm fused and not, relu, leaky_relu, gelu, tanh, sigmoid,
 *     maxpool, avgpool, global_avgpool, add, dropout, flatten, the channel
 *     sums of conv and dense biases), train and eval mode;
 *   - the fused batchnorm + relu is planned (the relu shares the
 *     batchnorm's buffers) only where the relu is the batchnorm's only
 *     reader, and gives bit-identical results to the unfused layers;
 *   - fused gradients against finite differences.
 * OpenBLAS is held at one thread while larch's loops run on 1, 2 or 3:
 * OpenBLAS 0.3.21's sgemm itself rounds differently with 1 and 2 threads
 * (this test finds conv gradients differing when both vary), which is
 * OpenBLAS's partition, not larch's (docs/performance.md). */
#include "gradcheck.h"
#include "core/blas.h"
#include "core/threads.h"
#include "nn/model_internal.h"

#include <stdlib.h>
#include <string.h>

static larch_shape S(int h, int w, int c) { return (larch_shape){h, w, c}; }

/* Every threaded layer, with batch sizes whose rows do not split evenly. */
static const char *MODEL =
    "[{type: conv2d, name: c1, filters: 8, kernel: 3, padding: 1},"
    " {type: batchnorm, name: bn1}, {type: relu, name: r1},"                     /* fused */
    " {type: conv2d, name: c2, filters: 8, kernel: 3, padding: 1},"
    " {type: batchnorm, name: bn2}, {type: relu, name: r2, input: bn2},"         /* bn2 read twice: not fused */
    " {type: add, name: sum, inputs: [r1, r2, bn2]},"
    " {type: leaky_relu, name: lr, slope: 0.1}, {type: gelu, name: ge},"
    " {type: maxpool, name: mp, size: 3, stride: 2, padding: 1},"
    " {type: tanh, name: th}, {type: dropout, name: dr, rate: 0.3},"
    " {type: avgpool, name: ap, size: 2}, {type: sigmoid, name: sg},"
    " {type: batchnorm, name: bn3, affine: false}, {type: relu, name: r3},"     /* fused, no affine */
    " {type: global_avgpool, name: gap}, {type: flatten, name: fl},"
    " {type: dense, name: out, units: 5}]";

typedef struct {
    int nodes;
    size_t n_floats, n_buf, xlen;
    float **y, **dy, *dx, *grad, *buf;
    int fused_src[64];        /* node i: a batchnorm whose relu is fused (its output is the relu's) */
    size_t *ylen;
} snapshot;

static void snap_free(snapshot *s)
{
    for (int i = 0; i < s->nodes; i++) { free(s->y[i]); free(s->dy[i]); }
    free(s->y); free(s->dy); free(s->ylen); free(s->dx); free(s->grad); free(s->buf);
    memset(s, 0, sizeof *s);
}

/* Builds MODEL (fusion on or off), runs train forward + backward from the
 * output weighting r, then an eval forward + backward, with `threads`
 * threads; keeps every node output, the input gradient, the parameter
 * gradients and the running statistics. */
static int run(int threads, int fuse, int n, int train, snapshot *s)
{
    memset(s, 0, sizeof *s);
    larch_threads_set(threads);
    CHECK(larch_threads_get() == threads, "threads %d set, %d reported", threads, larch_threads_get());
    larch_blas_set_threads(1);   /* OpenBLAS's own rounding depends on its thread count (see the header) */
    larch_node *layers = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse(MODEL, "<test>", &layers));
    CHECK_OK(larch_model_build(&m, S(12, 10, 3), layers, NULL, NULL, 5));
    larch_node_free(layers);
    if (!m) return 1;
    m->no_fuse = !fuse;
    larch_model_set_input_grad(m, 1);
    CHECK_OK(larch_model_plan(m, n));
    int L = larch_model_n_layers(m);
    /* where fusion is planned: r1 and r3 share their batchnorm's buffers, r2 does not */
    int r1 = larch_model_node(m, "r1"), r2 = larch_model_node(m, "r2"), r3 = larch_model_node(m, "r3");
    CHECK((m->node_y[r1] == m->node_y[r1 - 1]) == fuse, "r1 fused %d (want %d)", m->node_y[r1] == m->node_y[r1 - 1], fuse);
    CHECK(m->node_dy[r1] == m->node_dy[r1 - 1] ? fuse : !fuse, "r1 gradient buffer shared only when fused");
    CHECK((m->node_y[r3] == m->node_y[r3 - 1]) == fuse, "r3 fused (want %d)", fuse);
    CHECK(m->node_y[r2] != m->node_y[r2 - 1], "r2 must not be fused: bn2 has another reader");
    s->xlen = (size_t)n * 12 * 10 * 3;
    float *x = malloc(s->xlen * sizeof *x);
    size_t olen = (size_t)n * 5;
    float *r = malloc(olen * sizeof *r);
    larch_rng rng;
    larch_rng_init(&rng, 3, LARCH_RNG_USER, 1, 2);
    for (size_t i = 0; i < s->xlen; i++) x[i] = 2.0f * larch_rng_normal(&rng) + 0.5f;
    for (size_t i = 0; i < olen; i++) r[i] = larch_rng_normal(&rng);
    larch_batch b = {.n = n, .x = x};
    larch_pass p = {.n = n, .train = train, .seed = 17, .step = 4, .sample0 = 40};
    if (!train) {                                   /* running statistics with values of their own */
        larch_pass t = p;
        t.train = 1;
        larch_model_forward(m, &b, &t);
    }
    larch_model_forward(m, &b, &p);
    memcpy(larch_model_node_grad(m, L), r, olen * sizeof *r);
    larch_model_backward(m, &p);
    s->nodes = L + 1;
    s->y = calloc((size_t)s->nodes, sizeof *s->y);
    s->dy = calloc((size_t)s->nodes, sizeof *s->dy);
    s->ylen = calloc((size_t)s->nodes, sizeof *s->ylen);
    for (int i = 1; i <= L; i++) {
        s->ylen[i] = (size_t)n * larch_shape_size(larch_model_node_shape(m, i));
        s->y[i] = malloc(s->ylen[i] * sizeof(float));
        memcpy(s->y[i], larch_model_node_output(m, i), s->ylen[i] * sizeof(float));
        s->dy[i] = calloc(s->ylen[i], sizeof(float));
        if (larch_model_node_grad(m, i)) memcpy(s->dy[i], larch_model_node_grad(m, i), s->ylen[i] * sizeof(float));
    }
    s->fused_src[r1 - 1] = s->fused_src[r3 - 1] = 1;
    s->dx = malloc(s->xlen * sizeof(float));
    memcpy(s->dx, larch_model_node_grad(m, 0), s->xlen * sizeof(float));
    const float *g = larch_model_flat_grads(m, &s->n_floats);
    s->grad = malloc(s->n_floats * sizeof(float));
    memcpy(s->grad, g, s->n_floats * sizeof(float));
    const float *bf = larch_model_flat_buffers(m, &s->n_buf);
    s->buf = malloc((s->n_buf ? s->n_buf : 1) * sizeof(float));
    memcpy(s->buf, bf, s->n_buf * sizeof(float));
    free(x);
    free(r);
    larch_model_free(m);
    return 0;
}

/* Bit-identical snapshots; names the first node that differs. */
static void same(const char *what, const snapshot *a, const snapshot *b)
{
    /* A fused batchnorm's own node holds the relu's output and gradient (the
     * unfused one its own): compared through the relu node after it. */
    for (int i = 1; i < a->nodes; i++) {
        if (a->fused_src[i] || b->fused_src[i]) continue;
        CHECK(memcmp(a->y[i], b->y[i], a->ylen[i] * sizeof(float)) == 0, "%s: output of node %d differs", what, i);
        CHECK(memcmp(a->dy[i], b->dy[i], a->ylen[i] * sizeof(float)) == 0, "%s: gradient of node %d differs", what, i);
    }
    CHECK(memcmp(a->dx, b->dx, a->xlen * sizeof(float)) == 0, "%s: input gradient differs", what);
    CHECK(a->n_floats == b->n_floats && memcmp(a->grad, b->grad, a->n_floats * sizeof(float)) == 0,
          "%s: parameter gradients differ", what);
    CHECK(a->n_buf == b->n_buf && memcmp(a->buf, b->buf, a->n_buf * sizeof(float)) == 0, "%s: running statistics differ", what);
}

/* The gradients are not trivially zero (the comparison means something). */
static void nonzero(const snapshot *s)
{
    double gx = 0, gw = 0;
    for (size_t i = 0; i < s->xlen; i++) gx += fabs(s->dx[i]);
    for (size_t i = 0; i < s->n_floats; i++) gw += fabs(s->grad[i]);
    CHECK(gx > 0 && gw > 0, "gradients are zero (input %g, parameters %g)", gx, gw);
}

static void threads_and_fusion(void)
{
    const int batches[] = {37, 3};   /* 37: 4440 rows a batchnorm, 16 row blocks, uneven ranges */
    for (int bi = 0; bi < 2; bi++)
        for (int train = 1; train >= 0; train--) {
            int n = batches[bi];
            snapshot ref, t2, t3, unfused;
            run(1, 1, n, train, &ref);
            nonzero(&ref);
            run(2, 1, n, train, &t2);
            run(3, 1, n, train, &t3);
            run(2, 0, n, train, &unfused);
            char what[96];
            snprintf(what, sizeof what, "batch %d %s: 2 threads vs 1", n, train ? "train" : "eval");
            same(what, &ref, &t2);
            snprintf(what, sizeof what, "batch %d %s: 3 threads vs 1", n, train ? "train" : "eval");
            same(what, &ref, &t3);
            snprintf(what, sizeof what, "batch %d %s: fused vs unfused", n, train ? "train" : "eval");
            same(what, &ref, &unfused);
            snap_free(&ref); snap_free(&t2); snap_free(&t3); snap_free(&unfused);
        }
    larch_threads_set(1);
}

/* Fused batchnorm + relu gradients against finite differences, train and
 * eval mode, with 1 and 2 threads. */
static void fused_gradcheck(void)
{
    const char *yaml = "[{type: conv2d, filters: 4, kernel: 3, padding: 1}, {type: batchnorm, name: bn},"
                       " {type: relu, name: r}, {type: dense, units: 3}]";
    for (int threads = 1; threads <= 2; threads++)
        for (int train = 1; train >= 0; train--) {
            larch_threads_set(threads);
            larch_node *layers = NULL;
            larch_model *m = NULL;
            CHECK_OK(larch_cfg_parse(yaml, "<test>", &layers));
            CHECK_OK(larch_model_build(&m, S(5, 4, 2), layers, NULL, NULL, 13));
            larch_node_free(layers);
            if (!m) continue;
            gradcheck_opts o = {.n = 4, .train = train, .eval_after_train = !train, .probes = 40, .eps = 1e-3, .tol = 3e-2};
            char label[64];
            snprintf(label, sizeof label, "bn+relu %s, %d threads", train ? "train" : "eval", threads);
            gradcheck_model(label, m, &o);
            int r = larch_model_node(m, "r");
            CHECK(m->node_y[r] == m->node_y[r - 1], "%s: the relu is not fused", label);
            larch_model_free(m);
        }
    gradcheck("bn+relu alone", "[{type: batchnorm, name: bn}, {type: relu, name: r}]", S(3, 3, 4),
              &(gradcheck_opts){.n = 4, .train = 1, .eps = 1e-3, .tol = 3e-2});
    larch_threads_set(1);
}

int main(void)
{
    threads_and_fusion();
    fused_gradcheck();
    printf("%d checks, %d failed\n", check_count, check_failures);
    return check_failures != 0;
}
