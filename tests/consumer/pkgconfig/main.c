/* A program that uses an installed larch through pkg-config
 * (tests/consumer/pkgconfig/Makefile, run by tests/pkg_install.sh). It
 * builds a small model with the typed API (larch/model.h), checks its
 * parameter tensors and count against the shapes the layers imply, that a
 * wrong option is an error value naming the layer, and that one training
 * pass (forward, loss, backward) gives a finite loss and gradients that
 * move the loss down when followed. argv[1]: the version pkg-config
 * reported, compared with the library's own. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "larch/larch.h"

#define N 6          /* samples */
#define IN 7         /* input features */

static int failed = 0;

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "consumer: %s\n", what);
        failed = 1;
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], larch_version()) != 0) {
        fprintf(stderr, "consumer: pkg-config says version %s, the library says %s\n", argv[1],
                larch_version());
        return 1;
    }

    larch_model *m = NULL;
    larch_status s = larch_model_create(&m, (larch_shape){1, 1, IN});
    if (s) {
        fprintf(stderr, "consumer: %s\n", larch_errmsg());
        return 1;
    }

    /* An error is a value naming the layer, and leaves the model as it was. */
    larch_dense_opts bad = LARCH_DENSE_DEFAULTS;   /* units is required: left invalid */
    s = larch_model_add_dense(m, "broken", NULL, &bad);
    check(s == LARCH_ERR_INVALID, "a dense layer without units was accepted");
    check(strstr(larch_errmsg(), "broken") != NULL, "the error message does not name the layer");
    check(larch_model_n_layers(m) == 0, "a failed builder left a layer behind");

    larch_dense_opts h1 = LARCH_DENSE_DEFAULTS, h2 = LARCH_DENSE_DEFAULTS, o = LARCH_DENSE_DEFAULTS;
    h1.units = 8;
    h2.units = 6;
    h2.bias = 0;
    o.units = 4;
    s = larch_model_add_dense(m, "h1", NULL, &h1);
    if (!s) s = larch_model_add_sigmoid(m, "s1", NULL);
    if (!s) s = larch_model_add_dense(m, "h2", NULL, &h2);
    if (!s) s = larch_model_add_tanh(m, "t2", NULL);
    if (!s) s = larch_model_add_dense(m, "out", NULL, &o);
    if (!s) s = larch_model_finalize(m);   /* adds softmax_ce "main" on "out" */
    if (!s) larch_model_init(m, 3);
    if (!s) s = larch_model_plan(m, N);
    if (s) {
        fprintf(stderr, "consumer: %s\n", larch_errmsg());
        larch_model_free(m);
        return 1;
    }

    /* h1: weight 8x7 + bias 8; h2: weight 6x8, no bias; out: weight 4x6 + bias 4. */
    size_t total = 0;
    for (int i = 0; i < larch_model_n_params(m); i++) total += larch_model_param(m, i)->size;
    check(larch_model_n_params(m) == 5, "the model does not have 5 parameter tensors");
    check(total == 8 * 7 + 8 + 6 * 8 + 4 * 6 + 4, "the parameter count is not 140");
    check(larch_model_param_index(m, "h2.bias") < 0, "h2 has a bias although bias = 0");
    check(larch_model_n_losses(m) == 1 && strcmp(larch_model_loss_name(m, 0), "main") == 0,
          "finalize did not add the default loss 'main'");

    float x[N * IN];
    int32_t labels[N];
    for (int i = 0; i < N * IN; i++) x[i] = (float)cos(0.37 * i);
    for (int i = 0; i < N; i++) labels[i] = i % 4;
    larch_batch b = {.n = N, .x = x, .label = {labels}};
    larch_pass p = {.n = N, .train = 1, .seed = 3, .step = 1};

    larch_model_forward(m, &b, &p);
    double before = larch_model_loss(m, &b, 1.0f / N, NULL) / N;
    larch_model_backward(m, &p);
    check(isfinite(before) && before > 0, "the loss is not finite and positive");

    /* A small step against the gradient lowers the loss (first order). */
    size_t nf = 0;
    float *w = larch_model_flat_params(m, &nf);
    const float *g = larch_model_flat_grads(m, &nf);
    double gnorm2 = 0;
    for (size_t i = 0; i < nf; i++) gnorm2 += (double)g[i] * g[i];
    check(gnorm2 > 1e-10, "the gradient is zero");
    const float lr = 1e-2f;
    for (size_t i = 0; i < nf; i++) w[i] -= lr * g[i];
    larch_model_forward(m, &b, &p);
    double after = larch_model_loss(m, &b, 0.0f, NULL) / N;
    /* Expected decrease lr |g|^2; ask for at least half of it. */
    check(after < before - 0.5 * lr * gnorm2, "a gradient step did not lower the loss");

    printf("consumer: larch %s, %zu parameters, loss %.6f -> %.6f after one step (|g|^2 = %.3g)\n",
           larch_version(), total, before, after, gnorm2);
    larch_model_free(m);
    return failed;
}
