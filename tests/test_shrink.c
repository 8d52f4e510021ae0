/* test_shrink.c - the compression methods that change layer shapes:
 * `structured` (conv2d filters, dense neurons) and `svd` (truncated-SVD
 * factorization). On a small CNN (conv-bn-relu-pool-conv-bn-relu-dense-
 * relu-dropout-dense) with synthetic data:
 *   - structured pruning whose removed filters/neurons had zero weights
 *     (and zero bias / batch-norm shift and mean) gives the original's
 *     outputs, with the right shapes, configs and kept channels;
 *   - a FLOPs target is met; every promised error;
 *   - svd at full rank gives the original's outputs (dense and conv2d); at
 *     rank r < full the Frobenius error is sqrt(sum of the dropped s_i^2)
 *     with s computed here independently (Jacobi eigenvalues of W W^T);
 *     energy= and size= pick the documented ranks;
 *   - the written model evaluates (larch_train eval_only, what `larch eval`
 *     runs) and fine-tunes from model.init_from.
 * With `--keep DIR` the outputs stay in DIR (tests/cli_shrink.sh runs the
 * `larch` program on them).
 */
#include "check.h"
#include "compress/methods.h"
#include "compress/rewrite.h"
#include "larch/larch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static const char *CNN =
    "train: {batch_size: 32, epochs: 1, max_steps: 3, seed: 3, threads: 1, log_every: 1}\n"
    "optim: {name: sgd, lr: 0.01, momentum: 0.9}\n"
    "data:\n"
    "  name: synthetic\n"
    "  synthetic: {n_train: 256, n_test: 64, classes: 4, shape: [6, 6, 3], noise: 0.5}\n"
    "model:\n"
    "  - {type: conv2d, name: c1, filters: 8, kernel: 3, padding: 1}\n"
    "  - {type: batchnorm, name: bn1}\n"
    "  - {type: relu, name: r1}\n"
    "  - {type: maxpool, name: p1, size: 2}\n"
    "  - {type: conv2d, name: c2, filters: 6, kernel: 3, padding: 1, bias: false}\n"
    "  - {type: batchnorm, name: bn2}\n"
    "  - {type: relu, name: r2}\n"
    "  - {type: dense, name: fc1, units: 10}\n"
    "  - {type: relu, name: r3}\n"
    "  - {type: dropout, name: d3, rate: 0.2}\n"
    "  - {type: dense, name: out, units: 4}\n";

/* a residual block and a layer with two readers */
static const char *RESID =
    "train: {batch_size: 32, epochs: 1, seed: 3, threads: 1}\n"
    "data:\n"
    "  name: synthetic\n"
    "  synthetic: {n_train: 64, n_test: 32, classes: 4, shape: [4, 4, 2], noise: 0.5}\n"
    "model:\n"
    "  - {type: conv2d, name: a, filters: 4, kernel: 3, padding: 1}\n"
    "  - {type: conv2d, name: b, filters: 4, kernel: 3, padding: 1}\n"
    "  - {type: add, name: s, inputs: [a, b]}\n"
    "  - {type: dense, name: fc, units: 8}\n"
    "  - {type: relu, name: r}\n"
    "  - {type: dense, name: out, units: 4}\n";

static larch_node *load_text(const char *name, const char *text)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs(text, f);
    fclose(f);
    larch_node *cfg = NULL;
    CHECK_OK(larch_run_load(path, NULL, 0, &cfg));
    return cfg;
}

static uint64_t rng = 88172645463325252ull;
static float urand(void)   /* [-1, 1) */
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}

/* Random parameters; batch-norm statistics random with variances > 0. */
static void randomize(larch_model *m)
{
    for (int i = 0; i < larch_model_n_params(m); i++) {
        const larch_param *p = larch_model_param(m, i);
        float *w = larch_model_param_data(m, i);
        for (size_t k = 0; k < p->size; k++) w[k] = 0.5f * urand();
    }
    for (int i = 0; i < larch_model_n_buffers(m); i++) {
        const larch_buffer *b = larch_model_buffer(m, i);
        float *v = larch_model_buffer_data(m, i);
        int var = !strcmp(b->tensor, "running_var");
        for (size_t k = 0; k < b->size; k++) v[k] = var ? 0.5f + 0.5f * (urand() + 1) : 0.3f * urand();
    }
}

/* Writes m with cfg as BASE.yaml/.h5 (the source model of a method). */
static void save_model(const larch_node *cfg, const larch_model *m, const char *base, char *ckpt, size_t len)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, base);
    larch_node *c = larch_node_clone(cfg);
    larch_compress_out out;
    memset(&out, 0, sizeof out);
    CHECK_OK(larch_rw_write(c, m, path, &out));
    snprintf(ckpt, len, "%s", out.checkpoint);
    larch_node_free(out.cfg);
    larch_node_free(c);
}

#define NB 5
/* Eval-mode outputs of the last layer on a fixed random batch (NB x 4). */
static void outputs(larch_model *m, float *y)
{
    larch_shape in = larch_model_input_shape(m);
    size_t per = larch_shape_size(in);
    float *x = malloc(NB * per * sizeof *x);
    uint64_t keep = rng;
    rng = 12345;
    for (size_t i = 0; i < NB * per; i++) x[i] = urand();
    rng = keep;
    CHECK_OK(larch_model_plan(m, NB));
    larch_batch b;
    memset(&b, 0, sizeof b);
    b.n = NB;
    b.x = x;
    larch_pass p = {.n = NB, .train = 0};
    larch_model_forward(m, &b, &p);
    int last = larch_model_n_layers(m);
    memcpy(y, larch_model_node_output(m, last), NB * 4 * sizeof *y);
    free(x);
}

static double max_diff(const float *a, const float *b, int n)
{
    double d = 0;
    for (int i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static long layer_int(const larch_node *cfg, const char *layer, const char *key)
{
    larch_node *l = larch_rw_layer_node(cfg, layer, NULL);
    return l ? larch_cfg_int(l, key) : -1;
}

static larch_status run(const char *spec, const larch_node *cfg, const char *ckpt, const char *base, larch_compress_out *out)
{
    const larch_compress_method *m = NULL;
    larch_node *opts = NULL;
    larch_status s = larch_compress_parse(spec, &m, &opts);
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, base);
    larch_compress_src src = {cfg, ckpt, NULL};
    memset(out, 0, sizeof *out);
    if (!s) s = m->run(&src, opts, path, out);
    larch_node_free(opts);
    return s;
}

/* Zeroes channel c of a pruned layer so that it contributes nothing. */
static void zero_channel(larch_model *m, const char *layer, const char *bn, int c)
{
    const larch_param *d;
    float *w = larch_rw_param(m, layer, "weight", &d);
    size_t row = d->size / (size_t)d->shape[0];
    memset(w + (size_t)c * row, 0, row * sizeof *w);
    float *bias = larch_rw_param(m, layer, "bias", NULL);
    if (bias) bias[c] = 0;
    if (bn) {
        larch_rw_param(m, bn, "shift", NULL)[c] = 0;
        larch_rw_buffer(m, bn, "running_mean", NULL)[c] = 0;
    }
}

static void test_structured_exact(const larch_node *cfg, const char *keep_dir)
{
    larch_model *m = NULL;
    CHECK_OK(larch_rw_build(cfg, &m));
    randomize(m);
    static const int z1[] = {1, 4, 6, 7}, z2[] = {0, 2, 5}, zf[] = {0, 3, 4, 8, 9};
    for (int i = 0; i < 4; i++) zero_channel(m, "c1", "bn1", z1[i]);
    for (int i = 0; i < 3; i++) zero_channel(m, "c2", "bn2", z2[i]);
    for (int i = 0; i < 5; i++) zero_channel(m, "fc1", NULL, zf[i]);
    char ckpt[4200];
    save_model(cfg, m, "zeroed", ckpt, sizeof ckpt);
    float y0[NB * 4], y1[NB * 4];
    outputs(m, y0);

    larch_compress_out out;
    CHECK_OK(run("structured:keep=0.5", cfg, ckpt, "pruned", &out));
    if (!out.cfg) { larch_model_free(m); return; }
    printf("structured: %s\n", out.summary);
    CHECK(layer_int(out.cfg, "c1", "filters") == 4, "c1 filters %ld", layer_int(out.cfg, "c1", "filters"));
    CHECK(layer_int(out.cfg, "c2", "filters") == 3, "c2 filters %ld", layer_int(out.cfg, "c2", "filters"));
    CHECK(layer_int(out.cfg, "fc1", "units") == 5, "fc1 units %ld", layer_int(out.cfg, "fc1", "units"));
    CHECK(layer_int(out.cfg, "out", "units") == 4, "out units");
    CHECK(strstr(out.summary, "c1: 8 -> 4") && strstr(out.summary, "fc1: 10 -> 5"), "summary %s", out.summary);

    larch_model *p = NULL;
    CHECK_OK(larch_rw_load(out.cfg, out.checkpoint, &p));
    if (p) {
        const larch_param *d;
        larch_rw_param(p, "c2", "weight", &d);
        CHECK(d->shape[0] == 3 && d->shape[3] == 4, "c2.weight (%d, %d, %d, %d)", d->shape[0], d->shape[1], d->shape[2], d->shape[3]);
        larch_rw_param(p, "fc1", "weight", &d);
        CHECK(d->shape[0] == 5 && d->shape[1] == 3 * 3 * 3, "fc1.weight (%d, %d)", d->shape[0], d->shape[1]);
        larch_rw_param(p, "out", "weight", &d);
        CHECK(d->shape[0] == 4 && d->shape[1] == 5, "out.weight (%d, %d)", d->shape[0], d->shape[1]);
        size_t n;
        CHECK(larch_rw_buffer(p, "bn1", "running_var", &n) && n == 4, "bn1.running_var size %zu", n);
        /* kept channels are the nonzero ones, in order: c1 keeps 0, 2, 3, 5 */
        const float *w0 = larch_rw_param(m, "c1", "weight", NULL), *w1 = larch_rw_param(p, "c1", "weight", NULL);
        static const int kept[] = {0, 2, 3, 5};
        int same = 1;
        for (int k = 0; k < 4; k++) same &= !memcmp(w1 + k * 27, w0 + kept[k] * 27, 27 * sizeof *w0);
        CHECK(same, "c1's kept filters are 0, 2, 3, 5");
        const float *v0 = larch_rw_buffer(m, "bn1", "running_var", NULL), *v1 = larch_rw_buffer(p, "bn1", "running_var", NULL);
        CHECK(v1[3] == v0[5], "bn1.running_var follows the kept channels");
        outputs(p, y1);
        double diff = max_diff(y0, y1, NB * 4);
        CHECK(diff < 1e-5, "pruned outputs differ from the original's by %g", diff);
        /* and a real (nonzero) filter removed changes them */
        larch_model_free(p);
    }
    larch_compress_out o2;
    CHECK_OK(run("structured:keep=0.25,layers=[c1],norm=l1", cfg, ckpt, "pruned_c1", &o2));
    if (o2.cfg) {
        CHECK(layer_int(o2.cfg, "c1", "filters") == 2 && layer_int(o2.cfg, "c2", "filters") == 6, "only c1 pruned");
        larch_model *q = NULL;
        CHECK_OK(larch_rw_load(o2.cfg, o2.checkpoint, &q));
        if (q) {
            outputs(q, y1);
            CHECK(max_diff(y0, y1, NB * 4) > 1e-3, "removing nonzero filters changes the outputs");
            larch_model_free(q);
        }
    }
    larch_node_free(o2.cfg);

    /* the written model evaluates and fine-tunes like any other */
    larch_comm comm;
    CHECK_OK(larch_comm_init(&comm, NULL, NULL));
    char tdir[400];
    snprintf(tdir, sizeof tdir, "%s/eval", dir);
    larch_train_opts to = {.out_dir = tdir, .eval_only = 1, .checkpoint = out.checkpoint};
    larch_train_result res;
    larch_node *ec = larch_node_clone(out.cfg);
    CHECK_OK(larch_train(ec, &comm, &to, &res));
    larch_node_free(ec);
    char set[4300];
    snprintf(set, sizeof set, "model.init_from=%s", out.checkpoint);
    const char *sets[] = {set};
    larch_node *fc = NULL;
    CHECK_OK(larch_run_load(out.config_path, sets, 1, &fc));
    if (fc) {
        snprintf(tdir, sizeof tdir, "%s/tune", dir);
        larch_train_opts tt = {.out_dir = tdir};
        CHECK_OK(larch_train(fc, &comm, &tt, &res));
        CHECK(res.steps == 3 && isfinite(res.final_loss), "fine-tune: %ld steps, loss %g", res.steps, res.final_loss);
        larch_node_free(fc);
    }
    larch_comm_finalize(&comm);
    if (keep_dir) printf("kept %s\n", out.config_path);
    larch_node_free(out.cfg);
    larch_model_free(m);
}

static void test_structured_flops(const larch_node *cfg, const char *ckpt)
{
    larch_model *m = NULL;
    CHECK_OK(larch_rw_build(cfg, &m));
    double macs0 = m ? larch_rw_macs(m) : 0;
    larch_compress_out out;
    CHECK_OK(run("structured:flops=0.5", cfg, ckpt, "half", &out));
    if (out.cfg) {
        larch_model *p = NULL;
        CHECK_OK(larch_rw_build(out.cfg, &p));
        if (p) {
            double r = larch_rw_macs(p) / macs0;
            CHECK(r <= 0.5 && r > 0.3, "flops=0.5 gave %.3f of the multiply-adds", r);
            printf("flops=0.5: %s\n", out.summary);
            larch_model_free(p);
        }
        larch_node_free(out.cfg);
    }
    larch_model_free(m);
    CHECK_FAIL(run("structured:flops=0.5,keep=0.5", cfg, ckpt, "x", &out), LARCH_ERR_INVALID, "keep or flops");
    CHECK_FAIL(run("structured:flops=0.001", cfg, ckpt, "x", &out), LARCH_ERR_INVALID, "out of reach");
    CHECK_FAIL(run("structured:layers=[out]", cfg, ckpt, "x", &out), LARCH_ERR_INVALID, "'out' feeds a loss");
    CHECK_FAIL(run("structured:layers=[bn1]", cfg, ckpt, "x", &out), LARCH_ERR_INVALID, "'bn1' is a batchnorm");
    CHECK_FAIL(run("structured:layers=[nope]", cfg, ckpt, "x", &out), LARCH_ERR_INVALID, "no layer 'nope'");
    CHECK_FAIL(run("structured:norm=l3", cfg, ckpt, "x", &out), LARCH_ERR_CONFIG, "norm");
    CHECK_FAIL(run("structured:keep=2", cfg, ckpt, "x", &out), LARCH_ERR_CONFIG, "keep");
    CHECK(access(ckpt, R_OK) == 0, "source kept");
}

static void test_structured_refusals(void)
{
    larch_node *cfg = load_text("resid.yaml", RESID);
    if (!cfg) return;
    larch_model *m = NULL;
    CHECK_OK(larch_rw_build(cfg, &m));
    if (!m) { larch_node_free(cfg); return; }
    char ckpt[4200];
    save_model(cfg, m, "resid", ckpt, sizeof ckpt);
    larch_compress_out out;
    CHECK_FAIL(run("structured:layers=[b]", cfg, ckpt, "x", &out), LARCH_ERR_INVALID, "residual");
    /* a, read by b and by s: two readers */
    CHECK_FAIL(run("structured:layers=[a]", cfg, ckpt, "x", &out), LARCH_ERR_INVALID, "feeds 2 layers");
    /* by default those are skipped, fc is pruned */
    CHECK_OK(run("structured", cfg, ckpt, "resid_p", &out));
    CHECK(strstr(out.summary, "fc: 8 -> 4") && strstr(out.summary, "not pruned: a, b"), "summary: %s", out.summary);
    larch_node_free(out.cfg);
    /* a checkpoint of another model */
    larch_node *cnn = load_text("cnn2.yaml", CNN);
    CHECK_FAIL(run("structured", cnn, ckpt, "x", &out), LARCH_ERR_SHAPE, "out.weight has shape");
    larch_node_free(cnn);
    /* only a and b (skipped) and the output layer: nothing to prune */
    larch_node *none = larch_node_clone(cfg);
    CHECK_OK(larch_cfg_set(none, "model.3.units=4"));
    larch_node *nl = larch_run_layers(none);
    for (int k = 4; k < nl->n; k++) larch_node_free(nl->items[k]);
    nl->n = 4;
    larch_node *nonecfg = NULL;
    char npath[400];
    snprintf(npath, sizeof npath, "%s/none.yaml", dir);
    CHECK_OK(larch_cfg_save(none, npath));
    CHECK_OK(larch_run_load(npath, NULL, 0, &nonecfg));
    larch_model *nmod = NULL;
    if (nonecfg) CHECK_OK(larch_rw_build(nonecfg, &nmod));
    if (nmod) {
        char nck[4200];
        save_model(nonecfg, nmod, "none", nck, sizeof nck);
        CHECK_FAIL(run("structured", nonecfg, nck, "x", &out), LARCH_ERR_INVALID, "no layer of the model can be pruned; first: structured: layer 'a'");
        larch_model_free(nmod);
    }
    larch_node_free(nonecfg);
    larch_node_free(none);
    larch_node *renamed = larch_node_clone(cfg);
    CHECK_OK(larch_cfg_set(renamed, "model.3.name=fc9"));
    CHECK_FAIL(run("structured", renamed, ckpt, "x", &out), LARCH_ERR_FORMAT, "2 tensor(s) missing (fresh    fc9.weight");
    larch_node_free(renamed);
    larch_model_free(m);
    larch_node_free(cfg);
}

/* Eigenvalues of the symmetric n x n matrix a (destroyed), cyclic Jacobi. */
static void jacobi_eig(double *a, int n, double *ev)
{
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
        if (off < 1e-26) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[p * n + q];
                if (fabs(apq) < 1e-300) continue;
                double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) {   /* columns p, q */
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) {   /* rows p, q */
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
    }
    for (int i = 0; i < n; i++) ev[i] = a[i * n + i];
}

static int dcmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Singular values of the rows x cols matrix w, descending (rows of them). */
static void singular_values(const float *w, int rows, int cols, double *s)
{
    double *g = malloc((size_t)rows * rows * sizeof *g);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < rows; j++) {
            double acc = 0;
            for (int k = 0; k < cols; k++) acc += (double)w[i * cols + k] * w[j * cols + k];
            g[i * rows + j] = acc;
        }
    jacobi_eig(g, rows, s);
    for (int i = 0; i < rows; i++) s[i] = sqrt(fmax(s[i], 0));
    qsort(s, (size_t)rows, sizeof *s, dcmp_desc);
    free(g);
}

static void test_svd(const larch_node *cfg, const char *ckpt)
{
    larch_model *m = NULL;
    CHECK_OK(larch_rw_load(cfg, ckpt, &m));
    if (!m) return;
    float y0[NB * 4], y1[NB * 4];
    outputs(m, y0);
    larch_compress_out out;

    /* full rank: the same function (dense fc1, conv2d c1 and c2) */
    CHECK_OK(run("svd:rank=1000,force=true,layers=[c1, c2, fc1]", cfg, ckpt, "svd_full", &out));
    if (out.cfg) {
        printf("svd full: %s\n", out.summary);
        CHECK(layer_int(out.cfg, "fc1_svd", "units") == 10 && layer_int(out.cfg, "c1_svd", "filters") == 8 &&
              layer_int(out.cfg, "c2_svd", "filters") == 6, "full ranks");
        CHECK(layer_int(out.cfg, "c2", "kernel") == 1 && layer_int(out.cfg, "c2_svd", "kernel") == 3 &&
              layer_int(out.cfg, "c2_svd", "padding") == 1, "conv factors: k x k then 1 x 1");
        larch_node *f = larch_rw_layer_node(out.cfg, "fc1", NULL);
        CHECK(f && !strcmp(larch_cfg_str(f, "input"), "fc1_svd"), "fc1 reads fc1_svd");
        larch_model *p = NULL;
        CHECK_OK(larch_rw_load(out.cfg, out.checkpoint, &p));
        if (p) {
            outputs(p, y1);
            double d = max_diff(y0, y1, NB * 4);
            CHECK(d < 1e-4, "full-rank svd outputs differ by %g", d);
            larch_model_free(p);
        }
        larch_node_free(out.cfg);
    }

    /* rank 4 < 10: ||W - A B||_F = sqrt(sum of the dropped s_i^2) */
    const larch_param *d;
    const float *w = larch_rw_param(m, "fc1", "weight", &d);
    const int rows = d->shape[0], cols = d->shape[1];
    double s[16], tail = 0, total = 0;
    singular_values(w, rows, cols, s);
    for (int i = 0; i < rows; i++) { total += s[i] * s[i]; if (i >= 4) tail += s[i] * s[i]; }
    CHECK_OK(run("svd:rank=4", cfg, ckpt, "svd4", &out));
    if (out.cfg) {
        larch_model *p = NULL;
        CHECK_OK(larch_rw_load(out.cfg, out.checkpoint, &p));
        if (p) {
            const larch_param *da, *db;
            const float *A = larch_rw_param(p, "fc1", "weight", &da), *B = larch_rw_param(p, "fc1_svd", "weight", &db);
            CHECK(da->shape[0] == rows && da->shape[1] == 4 && db->shape[0] == 4 && db->shape[1] == cols, "factor shapes");
            CHECK(larch_rw_param(p, "fc1_svd", "bias", NULL) == NULL && larch_rw_param(p, "fc1", "bias", NULL), "biases");
            double err = 0;
            for (int o = 0; o < rows; o++)
                for (int k = 0; k < cols; k++) {
                    double ab = 0;
                    for (int q = 0; q < 4; q++) ab += (double)A[o * 4 + q] * B[q * cols + k];
                    err += (w[o * cols + k] - ab) * (w[o * cols + k] - ab);
                }
            CHECK_NEAR(sqrt(err), sqrt(tail), 1e-4 * sqrt(total));
            CHECK(!memcmp(larch_rw_param(p, "fc1", "bias", NULL), larch_rw_param(m, "fc1", "bias", NULL), rows * sizeof(float)),
                  "fc1 keeps its bias");
            larch_model_free(p);
        }
        larch_node_free(out.cfg);
    }
    /* energy: the smallest r whose leading s_i^2 reach the fraction */
    double acc = 0;
    int r90 = 0;
    while (r90 < rows && acc < 0.9 * total) acc += s[r90] * s[r90], r90++;
    CHECK_OK(run("svd:energy=0.9,force=true", cfg, ckpt, "svd_e", &out));
    if (out.cfg) CHECK(layer_int(out.cfg, "fc1_svd", "units") == r90, "energy 0.9: rank %ld, want %d", layer_int(out.cfg, "fc1_svd", "units"), r90);
    larch_node_free(out.cfg);
    /* size: r (rows + cols) <= size * rows * cols: 0.5 * 540 / 64 -> 4 */
    CHECK_OK(run("svd:size=0.5", cfg, ckpt, "svd_s", &out));
    if (out.cfg) CHECK(layer_int(out.cfg, "fc1_svd", "units") == 4, "size 0.5: rank %ld", layer_int(out.cfg, "fc1_svd", "units"));
    larch_node_free(out.cfg);

    CHECK_FAIL(run("svd:rank=9", cfg, ckpt, "x", &out), LARCH_ERR_INVALID, "would not save");
    CHECK_FAIL(run("svd:rank=2,energy=0.5", cfg, ckpt, "x", &out), LARCH_ERR_INVALID, "one of rank, energy and size");
    CHECK_FAIL(run("svd:layers=[r1]", cfg, ckpt, "x", &out), LARCH_ERR_INVALID, "'r1' is a relu");
    CHECK_FAIL(run("svd:layers=[zz]", cfg, ckpt, "x", &out), LARCH_ERR_INVALID, "no layer 'zz'");
    CHECK_FAIL(run("svd:energy=1.5", cfg, ckpt, "x", &out), LARCH_ERR_CONFIG, "energy");
    larch_model_free(m);
}

int main(int argc, char **argv)
{
    const char *keep_dir = argc > 2 && !strcmp(argv[1], "--keep") ? argv[2] : NULL;
    larch_comm comm;   /* MPI stays initialized across the methods' checkpoint writes */
    if (larch_comm_init(&comm, &argc, &argv)) { fprintf(stderr, "MPI: %s\n", larch_errmsg()); return 1; }
    if (keep_dir) snprintf(dir, sizeof dir, "%s", keep_dir);
    else {
        snprintf(dir, sizeof dir, "/tmp/larch_test_shrink_XXXXXX");
        if (!mkdtemp(dir)) return 1;
    }
    larch_node *cfg = load_text("cnn.yaml", CNN);
    if (cfg) {
        test_structured_exact(cfg, keep_dir);
        char ckpt[4200];
        snprintf(ckpt, sizeof ckpt, "%s/zeroed.h5", dir);
        test_structured_flops(cfg, ckpt);
        test_svd(cfg, ckpt);
    }
    test_structured_refusals();
    larch_node_free(cfg);
    if (!keep_dir) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    }
    larch_comm_finalize(&comm);
    return check_result("test_shrink");
}
