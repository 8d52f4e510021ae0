/* test_attack.c - the adversarial attacks of src/nn/attack.c on a small
 * conv - batchnorm - relu - pool - dense model (the input gradient of every
 * layer against finite differences is in test_layers_grad / test_loss_grad;
 * here: that the attack uses it right).
 *   - FGSM equals clip(u + eps sign(d loss / d x)) in raw pixel units, with
 *     the gradient from an ordinary backward (parameter gradients on);
 *   - every iterate stays in the eps ball (L-inf, L2) and in [0, 1];
 *   - the attack raises the loss; accuracy falls to 0 at eps = 1;
 *     PGD <= FGSM; more restarts, and more steps of the same size, never
 *     raise the accuracy; targeted attacks reach their targets;
 *   - one batch of 8 and two of 4 (other sample0) give identical results
 *     (the randomness is keyed by global sample index, never by rank);
 *   - the layers' need_dw flags are restored; error paths. */
#include "check.h"
#include "larch/larch.h"
#include "nn/model_internal.h"
#include "nn/attack.h"

#include <stdlib.h>

#define N 32
#define H 8
#define IN (H * H)
static const float MEAN = 0.3f, STD = 0.4f;

static larch_model *build(void)
{
    const char *yaml = "- {type: conv2d, filters: 8, kernel: 3, padding: 1}\n"
                       "- {type: batchnorm}\n"
                       "- {type: relu}\n"
                       "- {type: maxpool, size: 2}\n"
                       "- {type: dense, units: 32}\n"
                       "- {type: relu}\n"
                       "- {type: dense, units: 5}\n";
    larch_node *layers = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse(yaml, "<test>", &layers));
    CHECK_OK(larch_model_build(&m, (larch_shape){H, H, 1}, layers, NULL, NULL, 5));
    larch_node_free(layers);
    return m;
}

static larch_attack_opts opts(larch_attack_method method, float eps)
{
    static const float mean[1] = {0.3f}, std[1] = {0.4f};
    larch_attack_opts o = {.method = method, .norm = LARCH_ATTACK_LINF, .eps = eps, .steps = 10, .restarts = 1,
                           .random_start = method == LARCH_ATTACK_PGD, .keep_best = 1, .seed = 17,
                           .n_norm = 1, .mean = mean, .std = std, .clip = 1, .lo = 0.0f, .hi = 1.0f};
    return o;
}

static double accuracy(const int32_t *pred, const int32_t *y, int n)
{
    int c = 0;
    for (int i = 0; i < n; i++) c += pred[i] == y[i];
    return (double)c / n;
}

static double mean_loss(larch_model *m, float *x, int32_t *y, int n)
{
    larch_batch b = {.n = n, .x = x, .label = {y}};
    larch_pass p = {.n = n};
    larch_model_forward(m, &b, &p);
    return larch_model_loss(m, &b, 0.0f, NULL) / n;
}

/* TRADES: L(theta) = sum CE(f(x), y) + beta sum KL(softmax f(x) || softmax f(x')) */
static double trades_value(larch_model *m, larch_attack_ws *ws, const larch_batch *b, const larch_batch *ba, float beta)
{
    larch_pass p = {.n = b->n};
    larch_model_forward(m, b, &p);
    larch_trades_keep_clean(m, ws, b->n);
    larch_model_forward(m, ba, &p);
    double kl = larch_trades_adv_grad(m, ws, b->n, 0.0f);
    larch_model_forward(m, b, &p);
    return larch_model_loss(m, b, 0.0f, NULL) + beta * kl;
}

static void trades_case(void)
{
    larch_node *layers = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse("- {type: dense, units: 6}\n- {type: tanh}\n- {type: dense, units: 3}\n", "<t>", &layers));
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 4}, layers, NULL, NULL, 9));
    larch_node_free(layers);
    if (!m) return;
    larch_model_set_input_grad(m, 1);
    CHECK_OK(larch_model_plan(m, 5));
    larch_attack_ws *ws = NULL;
    CHECK_OK(larch_attack_ws_create(&ws, m, 5));
    CHECK_OK(larch_trades_check(m));
    float x[20], xa[20];
    int32_t y[5] = {0, 1, 2, 1, 0};
    larch_rng r;
    larch_rng_init(&r, 4, LARCH_RNG_USER, 0, 0);
    for (int j = 0; j < 20; j++) x[j] = larch_rng_uniform(&r);
    larch_batch b = {.n = 5, .x = x, .label = {y}}, ba = {.n = 5, .x = xa, .label = {y}};
    static const float mean[1] = {0.0f}, std[1] = {1.0f};
    larch_attack_opts o = {.method = LARCH_ATTACK_PGD, .eps = 0.3f, .steps = 5, .restarts = 1, .seed = 2, .n_norm = 1,
                           .mean = mean, .std = std, .clip = 1, .lo = 0.0f, .hi = 1.0f};
    CHECK_OK(larch_trades_craft(m, ws, &b, &o, xa));
    /* the KL at x' exceeds the KL at the start x + 0.001 N(0, 1) (almost 0) and x' stays in the ball */
    const float beta = 3.0f;
    double l_adv = trades_value(m, ws, &b, &ba, beta), l_clean = trades_value(m, ws, &b, &b, beta);
    CHECK(l_adv > l_clean + 1e-3, "trades: the crafted x' does not raise the KL: %g vs %g", l_adv, l_clean);
    for (int j = 0; j < 20; j++) CHECK(fabsf(xa[j] - x[j]) <= 0.3f + 1e-5f && xa[j] >= 0 && xa[j] <= 1, "x'[%d] out of the ball", j);
    /* the parameter gradient of L against central differences */
    larch_pass p = {.n = 5};
    larch_model_forward(m, &b, &p);
    larch_trades_keep_clean(m, ws, 5);
    larch_model_forward(m, &ba, &p);
    larch_trades_adv_grad(m, ws, 5, beta);
    larch_model_backward(m, &p);
    larch_model_forward(m, &b, &p);
    larch_model_loss(m, &b, 1.0f, NULL);
    larch_trades_clean_grad(m, ws, 5, beta);
    larch_pass pa = p;
    pa.acc_grad = 1;
    larch_model_backward(m, &pa);
    size_t nf;
    float *w = larch_model_flat_params(m, &nf), *g0 = larch_model_flat_grads(m, &nf);
    float *g = malloc(nf * sizeof *g);
    memcpy(g, g0, nf * sizeof *g);
    int bad = 0, probed = 0;
    for (int i = 0; i < larch_model_n_params(m); i++) {
        const larch_param *pr = larch_model_param(m, i);
        for (size_t j = pr->offset; j < pr->offset + pr->size; j++) {
            float keep = w[j];
            const double h = 1e-3;
            w[j] = keep + (float)h; double fp = trades_value(m, ws, &b, &ba, beta);
            w[j] = keep - (float)h; double fm = trades_value(m, ws, &b, &ba, beta);
            w[j] = keep;
            double num = (fp - fm) / (2 * h);
            probed++;
            if (fabs(num - g[j]) > 2e-2 * fmax(fabs(num) + fabs(g[j]), 1e-2)) {
                if (bad++ < 3) fprintf(stderr, "trades: %s[%zu]: analytic %g, numeric %g\n", pr->name, j - pr->offset, g[j], num);
            }
        }
    }
    CHECK(bad == 0, "trades: %d of %d parameter gradients disagree with differences", bad, probed);
    free(g);
    larch_attack_ws_free(ws);
    larch_model_free(m);
}

int main(void)
{
    trades_case();
    larch_model *m = build();
    if (!m) return check_result("test_attack");
    /* errors before the plan has the input gradient */
    larch_attack_ws *ws = NULL;
    CHECK_OK(larch_model_plan(m, N));
    CHECK_OK(larch_attack_ws_create(&ws, m, N));
    float *x = malloc(N * IN * sizeof *x), *xa = malloc(N * IN * sizeof *xa), *xb = malloc(N * IN * sizeof *xb);
    int32_t y[N], pred[N], pred2[N], tgt[N];
    larch_rng r;
    larch_rng_init(&r, 3, LARCH_RNG_USER, 0, 0);
    for (int j = 0; j < N * IN; j++) x[j] = (larch_rng_uniform(&r) - MEAN) / STD;   /* u in [0, 1) */
    larch_batch b = {.n = N, .x = x, .label = {y}, .sample0 = 100};
    larch_attack_opts o = opts(LARCH_ATTACK_FGSM, 0.05f);
    CHECK_FAIL(larch_attack_run(m, ws, &b, &o, xa, pred, NULL), LARCH_ERR_INVALID, "larch_model_set_input_grad");
    larch_model_set_input_grad(m, 1);
    CHECK_OK(larch_model_plan(m, N));

    /* labels: the model's own clean predictions (clean accuracy 1) */
    larch_pass p = {.n = N};
    larch_model_forward(m, &b, &p);
    const float *logits = larch_model_node_output(m, larch_model_n_layers(m));
    for (int i = 0; i < N; i++) {
        int best = 0;
        for (int k = 1; k < 5; k++)
            if (logits[i * 5 + k] > logits[i * 5 + best]) best = k;
        y[i] = best;
    }
    o = opts(LARCH_ATTACK_FGSM, 0.0f);
    CHECK_OK(larch_attack_run(m, ws, &b, &o, xa, pred, NULL));
    CHECK(accuracy(pred, y, N) == 1.0, "eps 0: accuracy %g", accuracy(pred, y, N));
    for (int j = 0; j < N * IN; j++) CHECK_NEAR(xa[j], x[j], 1e-6);

    /* FGSM against the gradient of an ordinary backward */
    int dw_before[16];
    for (int i = 0; i < m->n_layers; i++) dw_before[i] = m->layers[i]->need_dw;
    larch_model_forward(m, &b, &p);
    larch_model_loss(m, &b, 1.0f, NULL);
    larch_model_backward(m, &p);
    float *g = malloc(N * IN * sizeof *g);
    memcpy(g, larch_model_node_grad(m, 0), N * IN * sizeof *g);
    const float eps = 0.05f;
    o = opts(LARCH_ATTACK_FGSM, eps);
    o.keep_best = 0;
    CHECK_OK(larch_attack_run(m, ws, &b, &o, xa, pred, NULL));
    int bad = 0, moved = 0;
    for (int j = 0; j < N * IN; j++) {
        float u = x[j] * STD + MEAN, ua = xa[j] * STD + MEAN;
        float want = u + (g[j] > 0 ? eps : g[j] < 0 ? -eps : 0.0f);
        want = want < 0 ? 0 : want > 1 ? 1 : want;
        if (fabsf(ua - want) > 1e-5f) bad++;
        moved += fabsf(ua - u) > 1e-4f;
    }
    CHECK(bad == 0, "fgsm: %d of %d pixels differ from clip(u + eps sign(g))", bad, N * IN);
    CHECK(moved > N * IN / 2, "fgsm moved only %d pixels", moved);
    for (int i = 0; i < m->n_layers; i++)
        CHECK(m->layers[i]->need_dw == dw_before[i], "layer %d: need_dw not restored", i);
    double l0 = mean_loss(m, x, y, N), l1 = mean_loss(m, xa, y, N);
    CHECK(l1 > l0, "fgsm did not raise the loss: %g -> %g", l0, l1);

    /* the eps balls and the pixel range */
    for (int norm = 0; norm < 2; norm++) {
        o = opts(LARCH_ATTACK_PGD, norm ? 0.5f : 0.03f);
        o.norm = norm;
        CHECK_OK(larch_attack_run(m, ws, &b, &o, xa, pred, NULL));
        double worst = 0;
        int out = 0;
        for (int i = 0; i < N; i++) {
            double s = 0, mx = 0;
            for (int j = i * IN; j < (i + 1) * IN; j++) {
                double d = (xa[j] - x[j]) * STD, ua = xa[j] * STD + MEAN;
                s += d * d;
                mx = fmax(mx, fabs(d));
                out += ua < -1e-6 || ua > 1 + 1e-6;
            }
            double v = norm ? sqrt(s) : mx;
            worst = fmax(worst, v);
        }
        CHECK(worst <= o.eps * (1 + 1e-4) + 1e-6, "norm %d: perturbation %g > eps %g", norm, worst, (double)o.eps);
        CHECK(worst >= 0.5 * o.eps, "norm %d: perturbation %g hardly uses eps %g", norm, worst, (double)o.eps);
        CHECK(out == 0, "norm %d: %d pixels outside [0, 1]", norm, out);
    }

    /* strength: eps 1 leaves nothing; PGD <= FGSM; restarts and steps never help the model */
    o = opts(LARCH_ATTACK_PGD, 1.0f);
    o.steps = 20;
    CHECK_OK(larch_attack_run(m, ws, &b, &o, xa, pred, NULL));
    CHECK(accuracy(pred, y, N) == 0.0, "pgd eps 1: accuracy %g", accuracy(pred, y, N));
    double acc_f, acc_p, acc_p3, acc_p40;
    o = opts(LARCH_ATTACK_FGSM, 0.03f);
    CHECK_OK(larch_attack_run(m, ws, &b, &o, xa, pred, NULL));
    acc_f = accuracy(pred, y, N);
    o = opts(LARCH_ATTACK_PGD, 0.03f);
    o.step_size = 0.0075f;
    CHECK_OK(larch_attack_run(m, ws, &b, &o, xa, pred, NULL));
    acc_p = accuracy(pred, y, N);
    /* the predictions reported are those of the returned inputs */
    larch_batch ba = {.n = N, .x = xa, .label = {y}};
    larch_model_forward(m, &ba, &p);
    for (int i = 0; i < N; i++) {
        int best = 0;
        for (int k = 1; k < 5; k++)
            if (logits[i * 5 + k] > logits[i * 5 + best]) best = k;
        pred2[i] = best;
    }
    CHECK(memcmp(pred, pred2, sizeof pred) == 0, "pgd: reported predictions differ from the returned inputs'");
    o.restarts = 3;
    CHECK_OK(larch_attack_run(m, ws, &b, &o, xa, pred, NULL));
    acc_p3 = accuracy(pred, y, N);
    o.restarts = 1;
    o.steps = 40;
    CHECK_OK(larch_attack_run(m, ws, &b, &o, xa, pred, NULL));
    acc_p40 = accuracy(pred, y, N);
    printf("eps 0.03: fgsm %.3f, pgd-10 %.3f, pgd-10 x3 restarts %.3f, pgd-40 %.3f\n", acc_f, acc_p, acc_p3, acc_p40);
    CHECK(acc_p <= acc_f, "pgd %g > fgsm %g", acc_p, acc_f);
    CHECK(acc_p < 1.0, "pgd at eps 0.03 fooled nothing");
    CHECK(acc_p3 <= acc_p && acc_p40 <= acc_p, "restarts %g / steps %g raised accuracy over %g", acc_p3, acc_p40, acc_p);

    /* targeted */
    o = opts(LARCH_ATTACK_PGD, 1.0f);
    o.targeted = 1;
    o.steps = 40;
    CHECK_OK(larch_attack_run(m, ws, &b, &o, xa, pred, tgt));
    int hit = 0, self = 0;
    for (int i = 0; i < N; i++) {
        hit += pred[i] == tgt[i];
        self += tgt[i] == y[i] || tgt[i] < 0 || tgt[i] >= 5;
        CHECK(tgt[i] == larch_attack_target(17, 100 + i, y[i], 5), "target %d not reproducible", i);
    }
    CHECK(self == 0, "%d targets are the true class or out of range", self);
    printf("targeted eps 1: %d of %d reach their target\n", hit, N);
    CHECK(hit >= N * 9 / 10, "targeted eps 1: %d of %d reach their target", hit, N);

    /* one batch of 8 = two of 4 (global sample indices, not positions) */
    o = opts(LARCH_ATTACK_PGD, 0.05f);
    o.restarts = 2;
    larch_batch b8 = {.n = 8, .x = x, .label = {y}, .sample0 = 40};
    CHECK_OK(larch_attack_run(m, ws, &b8, &o, xa, pred, NULL));
    larch_batch h1 = {.n = 4, .x = x, .label = {y}, .sample0 = 40}, h2 = {.n = 4, .x = x + 4 * IN, .label = {y + 4}, .sample0 = 44};
    CHECK_OK(larch_attack_run(m, ws, &h1, &o, xb, pred2, NULL));
    CHECK_OK(larch_attack_run(m, ws, &h2, &o, xb + 4 * IN, pred2 + 4, NULL));
    CHECK(memcmp(xa, xb, 8 * IN * sizeof *xa) == 0, "batch of 8 and two of 4 differ");
    CHECK(memcmp(pred, pred2, 8 * sizeof *pred) == 0, "predictions of batch 8 and 2 x 4 differ");
    larch_batch b8o = b8;
    b8o.sample0 = 41;
    CHECK_OK(larch_attack_run(m, ws, &b8o, &o, xb, pred2, NULL));
    CHECK(memcmp(xa, xb, 8 * IN * sizeof *xa) != 0, "other sample indices, same random start");

    /* training mode: the last iterate, batch statistics */
    o = opts(LARCH_ATTACK_PGD, 0.1f);
    o.keep_best = 0;
    o.train = 1;
    o.step = 5;
    CHECK_OK(larch_attack_run(m, ws, &b, &o, xa, NULL, NULL));

    /* errors */
    o = opts(LARCH_ATTACK_PGD, -0.1f);
    CHECK_FAIL(larch_attack_run(m, ws, &b, &o, xa, pred, NULL), LARCH_ERR_INVALID, "eps");
    o = opts(LARCH_ATTACK_PGD, NAN);
    CHECK_FAIL(larch_attack_run(m, ws, &b, &o, xa, pred, NULL), LARCH_ERR_INVALID, "eps");
    o = opts(LARCH_ATTACK_PGD, 0.1f);
    o.steps = 0;
    CHECK_FAIL(larch_attack_run(m, ws, &b, &o, xa, pred, NULL), LARCH_ERR_INVALID, "steps");
    o = opts(LARCH_ATTACK_PGD, 0.1f);
    o.restarts = 0;
    CHECK_FAIL(larch_attack_run(m, ws, &b, &o, xa, pred, NULL), LARCH_ERR_INVALID, "restarts");
    o = opts(LARCH_ATTACK_PGD, 0.1f);
    float bad_std[1] = {0.0f};
    o.std = bad_std;
    CHECK_FAIL(larch_attack_run(m, ws, &b, &o, xa, pred, NULL), LARCH_ERR_INVALID, "std");
    o = opts(LARCH_ATTACK_PGD, 0.1f);
    o.lo = 1.0f;
    CHECK_FAIL(larch_attack_run(m, ws, &b, &o, xa, pred, NULL), LARCH_ERR_INVALID, "range");
    o = opts(LARCH_ATTACK_PGD, 0.1f);
    larch_batch big = b;
    big.n = N + 1;
    CHECK_FAIL(larch_attack_run(m, ws, &big, &o, xa, pred, NULL), LARCH_ERR_INVALID, "larger than the planned");
    larch_attack_ws *ws2 = NULL;
    CHECK_FAIL(larch_attack_ws_create(&ws2, m, 0), LARCH_ERR_INVALID, "batch");
    larch_attack_ws_free(ws);
    larch_model_free(m);

    /* a model with an embedding loss cannot be attacked */
    larch_node *layers = NULL, *loss = NULL;
    CHECK_OK(larch_cfg_parse("- {type: dense, units: 4}\n", "<t>", &layers));
    CHECK_OK(larch_cfg_parse("- {type: triplet, margin: 0.2}\n", "<t>", &loss));
    m = NULL;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 3}, layers, loss, NULL, 1));
    if (m) CHECK_FAIL(larch_attack_ws_create(&ws2, m, 4), LARCH_ERR_CONFIG, "classification");
    if (m) CHECK_FAIL(larch_trades_check(m), LARCH_ERR_CONFIG, "one softmax_ce loss");
    larch_model_free(m);
    larch_node_free(layers);
    larch_node_free(loss);
    free(x); free(xa); free(xb); free(g);
    return check_result("test_attack");
}
