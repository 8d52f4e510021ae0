/* test_biasvar.c - the bias-variance decompositions (src/train/biasvar.c)
 * against values computed by hand, their errors, and the data options the
 * studies use: data.bootstrap, data.label_noise and data.synthetic.draw /
 * data.synthetic.seed (src/train/run_config.c, src/data/datasets.c). */
#include "train/biasvar.h"
#include "larch/train.h"
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define NEAR(a, b) (fabs((a) - (b)) < 1e-12)

static void squared(void)
{
    /* K = 2 models, n = 2 points, d = 1; by hand:
     * point 0: f = 2, y = 2.5, h = 1, 3: hbar 2, var 1, err (2.25 + 0.25) / 2 = 1.25, bias 0, noise 0.25, cross 0
     * point 1: f = 1, y = 1.5, h = 2, 2: hbar 2, var 0, err 0.25, bias 1, noise 0.25, cross 2 * 0.5 * -1 = -1 */
    const float pred[] = {1, 2, 3, 2}, clean[] = {2, 1}, noisy[] = {2.5f, 1.5f};
    larch_bv_squared r;
    CHECK_OK(larch_bv_squared_decompose(pred, 2, 2, 1, clean, noisy, &r));
    CHECK(NEAR(r.expected_error, 0.75), "E %g", r.expected_error);
    CHECK(NEAR(r.bias2, 0.5), "bias2 %g", r.bias2);
    CHECK(NEAR(r.variance, 0.5), "variance %g", r.variance);
    CHECK(NEAR(r.noise, 0.25), "noise %g", r.noise);
    CHECK(NEAR(r.cross, -0.5), "cross %g", r.cross);
    /* noise-free targets: the three add up exactly (two outputs per point) */
    const float p2[] = {0, 1, 2, 3, 4, 5, 6, 7}, c2[] = {1, 1, 1, 1};
    CHECK_OK(larch_bv_squared_decompose(p2, 2, 2, 2, c2, c2, &r));
    /* hbar = 2, 3, 4, 5; var = 4 each; bias = 1, 4, 9, 16 -> 7.5; E = B + V */
    CHECK(NEAR(r.variance, 4.0) && NEAR(r.bias2, 7.5) && NEAR(r.noise, 0.0), "V %g B %g N %g", r.variance, r.bias2, r.noise);
    CHECK(NEAR(r.expected_error, 11.5) && NEAR(r.cross, 0.0), "E %g cross %g", r.expected_error, r.cross);
    const float bad[] = {1, NAN, 3, 2};
    CHECK_FAIL(larch_bv_squared_decompose(bad, 2, 2, 1, clean, noisy, &r), LARCH_ERR_NUMERIC, "test point 1, output 0");
    CHECK_FAIL(larch_bv_squared_decompose(pred, 0, 2, 1, clean, noisy, &r), LARCH_ERR_INVALID, "0 models");
}

static void zero_one(void)
{
    /* K = 3, 4 points, 3 classes, labels 0 1 2 0; predictions by model:
     * point 0: 0 0 1 -> ym 0 = t, V 1/3, L 1/3       point 1: 1 2 1 -> ym 1 = t, V 1/3, L 1/3
     * point 2: 1 1 0 -> ym 1 != 2, B, V 1/3, L 1     point 3: 2 2 2 -> ym 2 != 0, B, V 0, L 1 */
    const int32_t pred[] = {0, 1, 1, 2, 0, 2, 1, 2, 1, 1, 0, 2}, labels[] = {0, 1, 2, 0};
    larch_bv_zero_one r;
    CHECK_OK(larch_bv_zero_one_decompose(pred, 3, 4, 3, labels, &r));
    CHECK(NEAR(r.loss, 2.0 / 3.0), "loss %g", r.loss);
    CHECK(NEAR(r.bias, 0.5), "bias %g", r.bias);
    CHECK(NEAR(r.var_unbiased, 1.0 / 6.0), "Vu %g", r.var_unbiased);
    CHECK(NEAR(r.var_biased, 1.0 / 12.0), "Vb %g", r.var_biased);
    CHECK(NEAR(r.net_variance, 1.0 / 12.0), "net %g", r.net_variance);
    CHECK(NEAR(r.var_biased_weighted, 0.0), "Vb_w %g", r.var_biased_weighted);
    CHECK(NEAR(r.variance, 0.25), "V %g", r.variance);
    CHECK(NEAR(r.bias + r.var_unbiased - r.var_biased_weighted, r.loss), "Domingos' identity");
    /* a tie goes to the smallest class; two classes: L = B + Vu - Vb exactly */
    const int32_t p2[] = {1, 0}, l2[] = {1};
    CHECK_OK(larch_bv_zero_one_decompose(p2, 2, 1, 2, l2, &r));
    CHECK(NEAR(r.bias, 1.0) && NEAR(r.var_biased, 0.5) && NEAR(r.loss, 0.5), "tie: B %g Vb %g L %g", r.bias, r.var_biased, r.loss);
    CHECK(NEAR(r.bias + r.var_unbiased - r.var_biased, r.loss), "two classes: L = B + Vu - Vb");
    const int32_t badl[] = {0, 1, 3, 0}, badp[] = {0, 1, 1, 2, 0, 2, 1, 9, 1, 1, 0, 2};
    CHECK_FAIL(larch_bv_zero_one_decompose(pred, 3, 4, 3, badl, &r), LARCH_ERR_INVALID, "label 3 of test point 2");
    CHECK_FAIL(larch_bv_zero_one_decompose(badp, 3, 4, 3, labels, &r), LARCH_ERR_INVALID, "model 1 predicts class 9 for test point 3");
}

/* The datasets of a config written to a file, with overrides. */
static larch_status datasets(const char *path, const char *const *sets, int n, larch_dataset *tr, larch_dataset *te)
{
    larch_node *cfg = NULL;
    larch_status s = larch_run_load(path, sets, n, &cfg);
    if (!s) s = larch_run_datasets(cfg, tr, te);
    larch_node_free(cfg);
    return s;
}

static void data_options(void)
{
    char path[] = "/tmp/larch_test_biasvar_XXXXXX";
    int fd = mkstemp(path);
    const char *yaml = "train: {batch_size: 32, seed: 5}\n"
                       "data: {name: synthetic, synthetic: {n_train: 400, n_test: 50, classes: 5, shape: [1, 1, 3], "
                       "regression: 2, regression_noise: 0.3}}\n"
                       "model: [{type: dense, units: 2}]\nloss: {type: mse, on: targets}\n";
    CHECK(fd >= 0 && write(fd, yaml, strlen(yaml)) == (ssize_t)strlen(yaml), "temp config");
    close(fd);
    larch_dataset a, b, ta, tb;
    CHECK_OK(datasets(path, NULL, 0, &a, &ta));
    /* bootstrap: every sample is one of the originals (features, label and targets together),
     * about 1 - 1/e of them distinct, the same resample twice, another for another k */
    const char *b1[] = {"data.bootstrap=1"}, *b2[] = {"data.bootstrap=2"};
    CHECK_OK(datasets(path, b1, 1, &b, &tb));
    int found = 0, distinct = 0;
    char *seen = calloc((size_t)a.n, 1);
    for (int j = 0; j < b.n; j++)
        for (int i = 0; i < a.n; i++)
            if (!memcmp(b.f32 + 3 * j, a.f32 + 3 * i, 3 * sizeof(float)) && b.labels[j] == a.labels[i] &&
                !memcmp(b.targets + 2 * j, a.targets + 2 * i, 2 * sizeof(float))) {
                found++;
                distinct += !seen[i];
                seen[i] = 1;
                break;
            }
    free(seen);
    CHECK(b.n == a.n && found == a.n, "bootstrap: %d of %d samples are originals", found, b.n);
    CHECK(distinct > 0.55 * a.n && distinct < 0.72 * a.n, "bootstrap: %d distinct of %d", distinct, a.n);
    CHECK(tb.n == ta.n && !memcmp(tb.f32, ta.f32, (size_t)ta.n * 3 * sizeof(float)), "bootstrap leaves the test split");
    larch_dataset c, tc;
    CHECK_OK(datasets(path, b1, 1, &c, &tc));
    CHECK(!memcmp(b.f32, c.f32, (size_t)b.n * 3 * sizeof(float)), "bootstrap 1 twice: the same resample");
    larch_dataset_free(&c), larch_dataset_free(&tc);
    CHECK_OK(datasets(path, b2, 1, &c, &tc));
    CHECK(memcmp(b.f32, c.f32, (size_t)b.n * 3 * sizeof(float)) != 0, "bootstrap 2 differs from 1");
    larch_dataset_free(&c), larch_dataset_free(&tc);
    larch_dataset_free(&b), larch_dataset_free(&tb);
    /* label noise: about p of the labels change, each to another class; keyed by the sample, not train.seed */
    const char *ln[] = {"data.label_noise=0.3"}, *ln2[] = {"data.label_noise=0.3", "train.seed=9", "data.synthetic.seed=5"};
    CHECK_OK(datasets(path, ln, 1, &b, &tb));
    int changed = 0;
    for (int i = 0; i < a.n; i++) changed += b.labels[i] != a.labels[i];
    CHECK(changed > 0.22 * a.n && changed < 0.38 * a.n, "label noise 0.3: %d of %d changed", changed, a.n);
    CHECK_OK(datasets(path, ln2, 3, &c, &tc));
    CHECK(!memcmp(b.labels, c.labels, (size_t)a.n * sizeof *b.labels), "label noise does not depend on train.seed");
    CHECK(!memcmp(ta.labels, tb.labels, (size_t)ta.n * sizeof *ta.labels), "label noise leaves the test split");
    larch_dataset_free(&c), larch_dataset_free(&tc);
    larch_dataset_free(&b), larch_dataset_free(&tb);
    /* synthetic: another train.seed with data.synthetic.seed fixed keeps the data; a draw is a fresh
     * training sample with the same test split; regression_noise 0 gives the noise-free targets */
    const char *sd[] = {"train.seed=11", "data.synthetic.seed=5"}, *dr[] = {"data.synthetic.draw=1"},
               *clean[] = {"data.synthetic.regression_noise=0"};
    CHECK_OK(datasets(path, sd, 2, &b, &tb));
    CHECK(!memcmp(a.f32, b.f32, (size_t)a.n * 3 * sizeof(float)) && !memcmp(a.targets, b.targets, (size_t)a.n * 2 * sizeof(float)),
          "data.synthetic.seed fixes the data");
    larch_dataset_free(&b), larch_dataset_free(&tb);
    CHECK_OK(datasets(path, dr, 1, &b, &tb));
    CHECK(memcmp(a.f32, b.f32, (size_t)a.n * 3 * sizeof(float)) != 0, "draw 1: other training samples");
    CHECK(!memcmp(ta.f32, tb.f32, (size_t)ta.n * 3 * sizeof(float)) && !memcmp(ta.targets, tb.targets, (size_t)ta.n * 2 * sizeof(float)),
          "draw 1: the same test split");
    larch_dataset_free(&b), larch_dataset_free(&tb);
    CHECK_OK(datasets(path, clean, 1, &b, &tb));
    double noise = 0;
    for (int i = 0; i < ta.n * 2; i++) noise += (ta.targets[i] - tb.targets[i]) * (double)(ta.targets[i] - tb.targets[i]);
    noise /= ta.n * 2;
    CHECK(!memcmp(ta.f32, tb.f32, (size_t)ta.n * 3 * sizeof(float)), "noise-free: the same features");
    CHECK(noise > 0.3 * 0.3 * 0.5 && noise < 0.3 * 0.3 * 1.6, "noise-free targets: mean squared noise %g (sigma^2 0.09)", noise);
    larch_dataset_free(&b), larch_dataset_free(&tb);
    const char *bad[] = {"data.bootstrap=-2"};
    larch_node *cfg = NULL;
    CHECK_FAIL(larch_run_load(path, bad, 1, &cfg), LARCH_ERR_CONFIG, "data.bootstrap");
    larch_dataset_free(&a), larch_dataset_free(&ta);
    unlink(path);
}

int main(void)
{
    squared();
    zero_one();
    data_options();
    return check_result("test_biasvar");
}
