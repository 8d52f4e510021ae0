/* A program that uses an installed larch through find_package(larch)
 * (tests/pkg_install.sh builds it against larch::larch and against
 * larch::larch_static). It builds a small MLP with the typed API
 * (larch/model.h), runs one forward and backward pass and checks every
 * gradient of the first layer's weights against a central finite
 * difference of the loss. argv[1]: the version find_package reported,
 * compared with the library's own. Exit status 0 only if all checks pass. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "larch/larch.h"

#define N 4   /* samples */

static int fail(const char *what)
{
    fprintf(stderr, "consumer: %s: %s\n", what, larch_errmsg());
    return 1;
}

/* The mean loss over the batch, after a forward pass (no gradients). */
static double mean_loss(larch_model *m, const larch_batch *b, const larch_pass *p)
{
    larch_model_forward(m, b, p);
    return larch_model_loss(m, b, 0.0f, NULL) / b->n;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], larch_version()) != 0) {
        fprintf(stderr, "consumer: find_package found version %s, the library says %s\n", argv[1],
                larch_version());
        return 1;
    }

    larch_model *m = NULL;
    larch_dense_opts hidden = LARCH_DENSE_DEFAULTS, out = LARCH_DENSE_DEFAULTS;
    hidden.units = 5;
    out.units = 3;
    larch_status s = larch_model_create(&m, (larch_shape){1, 1, 4});
    if (!s) s = larch_model_add_dense(m, "fc1", NULL, &hidden);
    if (!s) s = larch_model_add_tanh(m, "t1", NULL);
    if (!s) s = larch_model_add_dense(m, "out", NULL, &out);
    larch_loss_opts ce = LARCH_LOSS_DEFAULTS;
    if (!s) s = larch_model_add_loss(m, &ce);
    if (!s) s = larch_model_finalize(m);
    if (!s) larch_model_init(m, 11);
    if (!s) s = larch_model_plan(m, N);
    if (s) {
        larch_model_free(m);
        return fail("building the model");
    }

    float x[N * 4];
    for (int i = 0; i < N * 4; i++) x[i] = (float)sin(0.7 * i + 0.3);
    int32_t labels[N] = {0, 2, 1, 2};
    larch_batch b = {.n = N, .x = x, .label = {labels}};
    larch_pass p = {.n = N, .train = 1, .seed = 11, .step = 1};

    larch_model_forward(m, &b, &p);
    double loss = larch_model_loss(m, &b, 1.0f / N, NULL) / N;   /* writes d(mean loss)/d(logits) */
    larch_model_backward(m, &p);
    int ok = 1;
    /* Softmax cross-entropy over 3 classes from a fresh initialization:
     * positive, finite, and not far from log 3. */
    if (!(isfinite(loss) && loss > 0.2 && loss < 5.0)) {
        fprintf(stderr, "consumer: loss %g is not a plausible initial cross-entropy\n", loss);
        ok = 0;
    }

    int k = larch_model_param_index(m, "fc1.weight");
    if (k < 0) {
        larch_model_free(m);
        return fail("no parameter fc1.weight");
    }
    const larch_param *pw = larch_model_param(m, k);
    float *w = larch_model_param_data(m, k);
    const float *g = larch_model_grad_data(m, k);
    float grad[64];
    size_t nw = pw->size;
    if (nw != 20 || pw->ndim != 2 || pw->shape[0] != 5 || pw->shape[1] != 4) {
        fprintf(stderr, "consumer: fc1.weight has %zu floats, shape (%d, %d); expected 20, (5, 4)\n",
                nw, pw->shape[0], pw->shape[1]);
        larch_model_free(m);
        return 1;
    }
    memcpy(grad, g, nw * sizeof *grad);   /* the finite differences below run more forwards */

    double worst = 0, largest = 0;
    const float h = 1e-2f;
    for (size_t i = 0; i < nw; i++) {
        float w0 = w[i];
        w[i] = w0 + h;
        double up = mean_loss(m, &b, &p);
        w[i] = w0 - h;
        double down = mean_loss(m, &b, &p);
        w[i] = w0;
        double fd = (up - down) / (2.0 * (double)h);
        double err = fabs(fd - grad[i]) / (1e-3 + fabs(fd));
        if (err > worst) worst = err;
        if (fabs(grad[i]) > largest) largest = fabs(grad[i]);
        if (err > 2e-2) {
            fprintf(stderr, "consumer: d loss / d fc1.weight[%zu] = %g, finite difference %g\n", i,
                    grad[i], fd);
            ok = 0;
        }
    }
    if (largest < 1e-4) {   /* all-zero gradients would match a flat loss trivially */
        fprintf(stderr, "consumer: the gradients of fc1.weight are all (near) zero\n");
        ok = 0;
    }
    printf("consumer: larch %s, loss %.6f, %zu gradients of fc1.weight within %.2g of finite differences\n",
           larch_version(), loss, nw, worst);
    larch_model_free(m);
    return ok ? 0 : 1;
}
