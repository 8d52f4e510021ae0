/* test_fewshot.c - the computation behind `larch eval --fewshot/--zeroshot`
 * (src/data/fewshot.c) and the attribute tables (src/io/attributes.c), on
 * hand-made embeddings whose answers are worked out in the comments:
 * class lists, episode drawing (deterministic, disjoint support and query,
 * classes only from the list), prototype and k-NN classification, the
 * confidence interval, recall@k, nearest-attribute (zero-shot)
 * classification with both distances, and the table reader's errors. */
#include "check.h"
#include "data/fewshot.h"
#include "io/attributes.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void class_lists(void)
{
    int c[16], n;
    CHECK_OK(larch_fs_parse_classes("5-9", c, 16, &n));
    CHECK(n == 5 && c[0] == 5 && c[4] == 9, "5-9: %d classes", n);
    CHECK_OK(larch_fs_parse_classes("7,8,9", c, 16, &n));
    CHECK(n == 3 && c[0] == 7 && c[2] == 9, "7,8,9");
    CHECK_OK(larch_fs_parse_classes("0-2,5", c, 16, &n));
    CHECK(n == 4 && c[2] == 2 && c[3] == 5, "0-2,5");
    CHECK_FAIL(larch_fs_parse_classes("", c, 16, &n), LARCH_ERR_INVALID, "empty");
    CHECK_FAIL(larch_fs_parse_classes("a", c, 16, &n), LARCH_ERR_INVALID, "'a' is not a class number");
    CHECK_FAIL(larch_fs_parse_classes("3-1", c, 16, &n), LARCH_ERR_INVALID, "runs backwards");
    CHECK_FAIL(larch_fs_parse_classes("1,2,1", c, 16, &n), LARCH_ERR_INVALID, "names class 1 twice");
    CHECK_FAIL(larch_fs_parse_classes("2-", c, 16, &n), LARCH_ERR_INVALID, "has no end");
    CHECK_FAIL(larch_fs_parse_classes("1;2", c, 16, &n), LARCH_ERR_INVALID, "unexpected ';'");
    CHECK_FAIL(larch_fs_parse_classes("0-20", c, 16, &n), LARCH_ERR_INVALID, "more than 16");
}

static void episodes(void)
{
    int32_t labels[70];
    for (int i = 0; i < 70; i++) labels[i] = i % 6 + (i >= 60);   /* 10 of each of 0..5, then 1..6, 1..4 */
    int list[4] = {1, 3, 4, 5};
    larch_fs_pool p;
    CHECK_OK(larch_fs_pool_make(&p, labels, 70, list, 4));
    int sorted_ok = 1;
    for (int c = 0; c < 4; c++)
        for (int j = p.start[c]; j < p.start[c + 1]; j++) {
            sorted_ok &= labels[p.members[j]] == list[c];
            if (j > p.start[c]) sorted_ok &= p.members[j] > p.members[j - 1];
        }
    CHECK(sorted_ok && p.start[4] == 12 + 12 + 12 + 11, "the pool holds each listed class's samples in index order");
    int *copy = malloc((size_t)p.start[4] * sizeof *copy);
    memcpy(copy, p.members, (size_t)p.start[4] * sizeof *copy);
    const int W = 3, K = 2, Q = 4;
    int wc[3], s1[6], q1[12], wc2[3], s2[6], q2[12], differ = 0;
    for (int e = 0; e < 50; e++) {
        larch_fs_episode(&p, 9, e, W, K, Q, wc, s1, q1);
        larch_fs_episode(&p, 9, e, W, K, Q, wc2, s2, q2);
        CHECK(!memcmp(wc, wc2, sizeof wc) && !memcmp(s1, s2, sizeof s1) && !memcmp(q1, q2, sizeof q1),
              "episode %d is a function of (seed, episode)", e);
        int ok = 1;
        for (int w = 0; w < W; w++) {
            for (int w2 = 0; w2 < w; w2++) ok &= wc[w] != wc2[w2] || w == w2, ok &= wc[w] != wc[w2];
            int cls = list[wc[w]];
            for (int j = 0; j < K; j++) ok &= labels[s1[w * K + j]] == cls;
            for (int j = 0; j < Q; j++) ok &= labels[q1[w * Q + j]] == cls;
        }
        int all[18];                                     /* support and query: 18 distinct samples */
        memcpy(all, s1, sizeof s1);
        memcpy(all + 6, q1, sizeof q1);
        for (int a = 0; a < 18; a++)
            for (int b = 0; b < a; b++) ok &= all[a] != all[b];
        CHECK(ok, "episode %d: 3 distinct listed classes, samples of their class, support and queries disjoint", e);
        if (e > 0) {
            larch_fs_episode(&p, 9, e - 1, W, K, Q, wc2, s2, q2);
            differ += memcmp(s1, s2, sizeof s1) != 0;
        }
    }
    CHECK(differ >= 45, "consecutive episodes differ (%d of 49)", differ);
    larch_fs_episode(&p, 10, 0, W, K, Q, wc, s1, q1);
    larch_fs_episode(&p, 9, 0, W, K, Q, wc2, s2, q2);
    CHECK(memcmp(s1, s2, sizeof s1) != 0 || memcmp(q1, q2, sizeof q1) != 0, "another seed, another episode");
    CHECK(!memcmp(copy, p.members, (size_t)p.start[4] * sizeof *copy), "drawing leaves the pool as it was");
    /* every class is used across episodes */
    int used[4] = {0};
    for (int e = 0; e < 50; e++) {
        larch_fs_episode(&p, 9, e, W, K, Q, wc, s1, q1);
        for (int w = 0; w < W; w++) used[wc[w]]++;
    }
    CHECK(used[0] && used[1] && used[2] && used[3], "all four classes appear (%d %d %d %d)", used[0], used[1], used[2], used[3]);
    free(copy);
    larch_fs_pool_free(&p);
}

static void classification(void)
{
    float scratch[2 * 2];
    /* prototype: class 0 supports (0,0), (2,0) -> mean (1,0); class 1 (10,0), (12,0) -> (11,0).
     * queries of class 0: (1,1) nearer (1,0): right; (7,0): 36 vs 16, wrong.
     * queries of class 1: (11,5) and (12,-1): right. 3 of 4. */
    const float S[8] = {0, 0, 2, 0, 10, 0, 12, 0}, Q[8] = {1, 1, 7, 0, 11, 5, 12, -1};
    double acc = larch_fs_episode_accuracy(S, Q, 2, 2, 2, 2, LARCH_FS_PROTOTYPE, 1, LARCH_FS_EUCLIDEAN, scratch);
    CHECK(fabs(acc - 0.75) < 1e-12, "prototype accuracy %g, want 0.75", acc);
    /* k-NN: class 0 at 0 and 5, class 1 at 6 and 7 (1-D); the class-1 query 5.4: 1-NN says class 0 (0.4 away),
     * 3-NN says class 1 (5: 0.4, 6: 0.6, 7: 1.6); the class-0 query 0.5 is right either way. */
    const float S1[4] = {0, 5, 6, 7}, Q1[2] = {0.5f, 5.4f};
    acc = larch_fs_episode_accuracy(S1, Q1, 2, 2, 1, 1, LARCH_FS_KNN, 1, LARCH_FS_EUCLIDEAN, scratch);
    CHECK(fabs(acc - 0.5) < 1e-12, "1-NN accuracy %g, want 0.5", acc);
    acc = larch_fs_episode_accuracy(S1, Q1, 2, 2, 1, 1, LARCH_FS_KNN, 3, LARCH_FS_EUCLIDEAN, scratch);
    CHECK(fabs(acc - 1.0) < 1e-12, "3-NN accuracy %g, want 1", acc);
    /* a tied vote (k = 2: one of each) goes to the class of the nearest: 5.4 -> class 0 */
    acc = larch_fs_episode_accuracy(S1, Q1, 2, 2, 1, 1, LARCH_FS_KNN, 2, LARCH_FS_EUCLIDEAN, scratch);
    CHECK(fabs(acc - 0.5) < 1e-12, "2-NN with a tie: accuracy %g, want 0.5", acc);
    /* the confidence interval: {0.5, 0.7, 0.9, 0.7}: mean 0.7, sample std sqrt(0.08 / 3), ci 1.96 std / 2 */
    const double x[4] = {0.5, 0.7, 0.9, 0.7};
    double mean, std, ci;
    larch_fs_mean_ci(x, 4, &mean, &std, &ci);
    CHECK(fabs(mean - 0.7) < 1e-12 && fabs(std - sqrt(0.08 / 3)) < 1e-12 && fabs(ci - 1.96 * sqrt(0.08 / 3) / 2) < 1e-12,
          "mean %g std %g ci %g", mean, std, ci);
    larch_fs_mean_ci(x, 1, &mean, &std, &ci);
    CHECK(mean == 0.5 && std == 0 && ci == 0, "one episode: no spread");
}

static void recall(void)
{
    /* 1-D rows A:0, A:3, B:1, B:10 (squared distances). Row 0: its A at 9, B at 1 nearer: 1 before.
     * Row 1 (3): A at 9, B(1) at 4 nearer, B(10) at 49 not: 1. Row 2 (1): B at 81, A 1 and 4: 2.
     * Row 3 (10): B at 81, A(3) 49 nearer, A(0) 100 not: 1. recall@1 0, @2 3/4, @5 1.
     * A fifth row of a label of its own (C) is a miss at every k. */
    const float X[5] = {0, 3, 1, 10, 20};
    const int32_t lab[5] = {0, 0, 1, 1, 2};
    const int ks[3] = {1, 2, 5};
    double r[3];
    larch_fs_recall(X, lab, 4, 1, ks, 3, LARCH_FS_EUCLIDEAN, r);
    CHECK(r[0] == 0.0 && fabs(r[1] - 0.75) < 1e-12 && r[2] == 1.0, "recall@1,2,5 = %g %g %g, want 0 0.75 1", r[0], r[1], r[2]);
    larch_fs_recall(X, lab, 5, 1, ks, 3, LARCH_FS_EUCLIDEAN, r);
    CHECK(fabs(r[2] - 0.8) < 1e-12 && fabs(r[1] - 0.6) < 1e-12, "a singleton label misses: recall@2,5 = %g %g", r[1], r[2]);
}

static void zeroshot(void)
{
    /* attribute rows of three unseen classes; predicted attribute vectors of four images */
    const float table[3 * 3] = {1, 0, 0, 0, 1, 1, 1, 1, 0};
    const float pred[4 * 3] = {0.9f, 0.1f, 0.2f, 0.1f, 0.6f, 0.8f, 0.7f, 0.8f, 0.1f, 0.4f, 0.3f, 0.1f};
    const int want[4] = {0, 1, 2, 0};
    int right = 0;
    for (int i = 0; i < 4; i++) right += larch_fs_nearest(pred + 3 * i, table, 3, 3, LARCH_FS_EUCLIDEAN) == want[i];
    CHECK(right == 4, "nearest attribute row: %d of 4", right);
    /* the distances differ: x = (1, 0) is nearer (0.5, 0.5) in Euclidean terms, (10, 1) in angle */
    const float rows[4] = {10, 1, 0.5f, 0.5f}, xv[2] = {1, 0};
    CHECK(larch_fs_nearest(xv, rows, 2, 2, LARCH_FS_EUCLIDEAN) == 1, "euclidean: row 1");
    CHECK(larch_fs_nearest(xv, rows, 2, 2, LARCH_FS_COSINE) == 0, "cosine: row 0");
    CHECK(fabs(larch_fs_distance(xv, rows + 2, 2, LARCH_FS_COSINE) - (1 - 1 / sqrt(2))) < 1e-7, "cosine distance");
}

static const char *write_file(const char *dir, const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void attribute_tables(void)
{
    char dir[] = "/tmp/larch_attr_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    larch_attr_table t;
    const char *good = write_file(dir, "good.csv", "# a comment\n\nclass,name,legs,wings\n0,cat,4,0\n1, bird ,2,1\n2,snake,0,0.5\n");
    CHECK_OK(larch_attr_read(good, &t));
    CHECK(t.n_classes == 3 && t.n_attr == 2 && t.values[5] == 0.5f && !strcmp(t.class_names[1], "bird") &&
          !strcmp(t.attr_names[1], "wings"), "the table: 3 classes, 2 attributes");
    larch_dataset ds;
    memset(&ds, 0, sizeof ds);
    int32_t lab[4] = {2, 0, 1, 2};
    ds.n = 4, ds.n_classes = 3, ds.labels = lab;
    snprintf(ds.name, sizeof ds.name, "toy");
    CHECK_OK(larch_attr_apply(&t, good, &ds));
    CHECK(ds.n_targets == 2 && ds.targets[0] == 0 && ds.targets[1] == 0.5f && ds.targets[2] == 4 && ds.targets[5] == 1,
          "each sample's targets are its class's row");
    CHECK_FAIL(larch_attr_apply(&t, good, &ds), LARCH_ERR_CONFIG, "already has 2 float targets");
    free(ds.targets);
    ds.targets = NULL, ds.n_targets = 0, ds.n_classes = 4;
    CHECK_FAIL(larch_attr_apply(&t, good, &ds), LARCH_ERR_CONFIG, "has 3 classes but toy has 4");
    larch_attr_free(&t);
    CHECK_FAIL(larch_attr_read(write_file(dir, "short.csv", "class,name,a,b\n0,x,1\n"), &t), LARCH_ERR_FORMAT,
               "short.csv:2: 1 value(s) where the header names 2 attributes");
    CHECK_FAIL(larch_attr_read(write_file(dir, "nan.csv", "class,name,a\n0,x,yes\n"), &t), LARCH_ERR_FORMAT,
               "nan.csv:2: attribute 'a' of class 0 is 'yes', not a finite number");
    CHECK_FAIL(larch_attr_read(write_file(dir, "order.csv", "class,name,a\n0,x,1\n2,y,0\n"), &t), LARCH_ERR_FORMAT,
               "order.csv:3: the class is '2'");
    CHECK_FAIL(larch_attr_read(write_file(dir, "nohead.csv", "0,x,1\n"), &t), LARCH_ERR_FORMAT, "nohead.csv:1: expected the header");
    CHECK_FAIL(larch_attr_read(write_file(dir, "empty.csv", "# nothing\n"), &t), LARCH_ERR_FORMAT, "empty.csv: no header");
    CHECK_FAIL(larch_attr_read(write_file(dir, "norows.csv", "class,name,a\n"), &t), LARCH_ERR_FORMAT, "no class rows");
    CHECK_FAIL(larch_attr_read("/nonexistent/attr.csv", &t), LARCH_ERR_IO, "/nonexistent/attr.csv");
    const char *names[] = {"good.csv", "short.csv", "nan.csv", "order.csv", "nohead.csv", "empty.csv", "norows.csv"};
    char path[512];
    for (int i = 0; i < 7; i++) snprintf(path, sizeof path, "%s/%s", dir, names[i]), unlink(path);
    rmdir(dir);
}

int main(void)
{
    class_lists();
    episodes();
    classification();
    recall();
    zeroshot();
    attribute_tables();
    return check_result("test_fewshot");
}
