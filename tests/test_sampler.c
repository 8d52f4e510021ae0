/* test_sampler.c - the class-balanced sampler (include/larch/data.h,
 * data.sampler: class_balanced): every global batch holds exactly P
 * distinct classes with K distinct samples each, class after class; the
 * batches are a function of (seed, epoch, step) alone, so every rank count
 * and prefetch setting sees the same ones; an epoch of a balanced set covers
 * every sample exactly once, an unbalanced set is covered within a few
 * epochs; and the sampler refuses what it cannot fill. */
#include "check.h"
#include "larch/data.h"

#include <stdlib.h>
#include <string.h>

/* A float dataset whose sample i is the single feature i (so a batch tells
 * which samples it holds), with counts[c] samples of class c, classes
 * interleaved in index order. */
static void make_set(larch_dataset *ds, const int *counts, int nc)
{
    memset(ds, 0, sizeof *ds);
    int n = 0, left[64];
    for (int c = 0; c < nc; c++) n += counts[c], left[c] = counts[c];
    ds->n = n;
    ds->shape = (larch_shape){1, 1, 1};
    ds->n_classes = nc;
    ds->f32 = malloc((size_t)n * sizeof(float));
    ds->labels = malloc((size_t)n * sizeof(int32_t));
    ds->n_norm = 1;
    ds->mean[0] = 0.0f;
    ds->std[0] = 1.0f;
    snprintf(ds->name, sizeof ds->name, "sampler-test");
    for (int i = 0, c = 0; i < n; c = (c + 1) % nc) {       /* round robin over the classes that have some left */
        if (!left[c]) continue;
        left[c]--;
        ds->labels[i] = c;
        ds->f32[i] = (float)i;
        i++;
    }
}

static larch_loader_opts balanced(int P, int K, int rank, int world, int prefetch)
{
    return (larch_loader_opts){.global_batch = P * K, .rank = rank, .world = world, .seed = 7, .prefetch = prefetch,
                               .sampler = LARCH_SAMPLER_BALANCED, .classes_per_batch = P, .samples_per_class = K};
}

/* The global batches of `epochs` epochs on `world` ranks, concatenated into
 * idx (sample indices, read back from the features). */
static void run(const larch_dataset *ds, int P, int K, int world, int prefetch, int epochs, int *idx)
{
    larch_loader *l[8] = {0};
    for (int r = 0; r < world; r++) {
        larch_loader_opts o = balanced(P, K, r, world, prefetch);
        CHECK_OK(larch_loader_create(&l[r], ds, &o));
    }
    int steps = larch_loader_steps(l[0]), G = P * K, at = 0;
    for (int s = 0; s < epochs * steps; s++)
        for (int r = 0; r < world; r++) {
            int e, st;
            const larch_batch *b = larch_loader_next(l[r], &e, &st);
            CHECK(e == s / steps && st == s % steps && b->n == G / world && b->sample0 == (uint32_t)(r * G / world),
                  "rank %d of %d: batch %d is (epoch %d, step %d) with %d samples from %u", r, world, s, e, st, b->n,
                  b->sample0);
            for (int j = 0; j < b->n; j++) {
                idx[at] = (int)b->x[j];
                CHECK(b->label[0][j] == ds->labels[idx[at]], "the label travels with its sample");
                at++;
            }
        }
    for (int r = 0; r < world; r++) larch_loader_free(l[r]);
}

/* Every batch: P distinct classes, K distinct samples of each, in blocks. */
static void check_batches(const larch_dataset *ds, const int *idx, int batches, int P, int K)
{
    int bad = 0;
    for (int b = 0; b < batches; b++) {
        const int *x = idx + (size_t)b * P * K;
        for (int q = 0; q < P; q++) {
            int c = ds->labels[x[q * K]];
            for (int j = 0; j < K; j++) {
                bad += ds->labels[x[q * K + j]] != c;
                for (int j2 = 0; j2 < j; j2++) bad += x[q * K + j2] == x[q * K + j];
            }
            for (int q2 = 0; q2 < q; q2++) bad += ds->labels[x[q2 * K]] == c;
        }
    }
    CHECK(bad == 0, "%d violations of P classes x K distinct samples in %d batches", bad, batches);
}

static void balanced_set(void)
{
    /* 6 classes of 10: P = 3, K = 5 -> 4 batches per epoch, each class in two
     * of them (one pass of the deck per two batches): every sample once */
    int counts[6] = {10, 10, 10, 10, 10, 10};
    larch_dataset ds;
    make_set(&ds, counts, 6);
    int idx[3 * 60];
    run(&ds, 3, 5, 1, 0, 3, idx);
    check_batches(&ds, idx, 12, 3, 5);
    for (int e = 0; e < 3; e++) {
        int seen[60] = {0}, once = 1;
        for (int j = 0; j < 60; j++) seen[idx[e * 60 + j]]++;
        for (int i = 0; i < 60; i++) once &= seen[i] == 1;
        CHECK(once, "epoch %d of a balanced set holds every sample exactly once", e);
    }
    CHECK(memcmp(idx, idx + 60, 60 * sizeof *idx) != 0, "epochs 0 and 1 differ");
    larch_dataset_free(&ds);
}

static void unbalanced_set(void)
{
    /* class 4 has no samples (skipped); sizes 5..15 */
    int counts[7] = {10, 12, 5, 9, 0, 15, 11};
    larch_dataset ds;
    make_set(&ds, counts, 7);
    const int P = 3, K = 4, G = 12, epochs = 6;
    larch_loader *l;
    larch_loader_opts o = balanced(P, K, 0, 1, 0);
    CHECK_OK(larch_loader_create(&l, &ds, &o));
    int steps = larch_loader_steps(l);
    CHECK(steps == ds.n / G, "an epoch is floor(n / batch) = %d batches, got %d", ds.n / G, steps);
    larch_loader_free(l);
    int *one = malloc((size_t)epochs * steps * G * sizeof *one), *other = malloc((size_t)epochs * steps * G * sizeof *other);
    run(&ds, P, K, 1, 0, epochs, one);
    check_batches(&ds, one, epochs * steps, P, K);
    int seen[62] = {0}, missed = 0, used4 = 0;
    for (int j = 0; j < epochs * steps * G; j++) seen[one[j]]++, used4 += ds.labels[one[j]] == 4;
    for (int i = 0; i < ds.n; i++) missed += seen[i] == 0;
    CHECK(missed == 0 && used4 == 0, "in %d epochs every sample is drawn (%d never) and the empty class never (%d)", epochs,
          missed, used4);
    /* the same batches on 2, 3 and 4 ranks, with and without prefetch */
    int worlds[4] = {2, 3, 4, 1}, pre[4] = {0, 1, 1, 1};
    for (int w = 0; w < 4; w++) {
        run(&ds, P, K, worlds[w], pre[w], epochs, other);
        CHECK(memcmp(one, other, (size_t)epochs * steps * G * sizeof *one) == 0,
              "%d rank(s), prefetch %d: the same global batches as one rank", worlds[w], pre[w]);
    }
    /* seek: (epoch 3, step 2) again gives the same batch */
    o = balanced(P, K, 0, 1, 1);
    CHECK_OK(larch_loader_create(&l, &ds, &o));
    larch_loader_seek(l, 3, 2);
    const larch_batch *b = larch_loader_next(l, NULL, NULL);
    int same = 1;
    for (int j = 0; j < G; j++) same &= (int)b->x[j] == one[(3 * steps + 2) * G + j];
    CHECK(same, "seek to (3, 2) reproduces that batch");
    larch_loader_free(l);
    /* another seed: other batches */
    o = balanced(P, K, 0, 1, 0);
    o.seed = 8;
    CHECK_OK(larch_loader_create(&l, &ds, &o));
    b = larch_loader_next(l, NULL, NULL);
    same = 1;
    for (int j = 0; j < G; j++) same &= (int)b->x[j] == one[j];
    CHECK(!same, "seed 8 draws another first batch than seed 7");
    larch_loader_free(l);
    free(one);
    free(other);
    larch_dataset_free(&ds);
}

static void errors(void)
{
    int counts[4] = {6, 6, 3, 6};
    larch_dataset ds;
    make_set(&ds, counts, 4);
    larch_loader *l = NULL;
    larch_loader_opts o = balanced(2, 4, 0, 1, 0);
    CHECK_FAIL(larch_loader_create(&l, &ds, &o), LARCH_ERR_INVALID, "class 2 of sampler-test has 3 sample(s), fewer than the 4");
    o = balanced(5, 3, 0, 1, 0);
    CHECK_FAIL(larch_loader_create(&l, &ds, &o), LARCH_ERR_INVALID, "5 classes per batch but sampler-test has samples of only 4");
    o = balanced(2, 3, 0, 1, 0);
    o.global_batch = 8;
    CHECK_FAIL(larch_loader_create(&l, &ds, &o), LARCH_ERR_INVALID, "2 classes x 3 samples per class is not the batch size 8");
    o = balanced(2, 3, 0, 1, 0);
    o.sampler = 2;
    CHECK_FAIL(larch_loader_create(&l, &ds, &o), LARCH_ERR_INVALID, "sampler 2 is neither shuffle (0) nor class-balanced (1)");
    o = balanced(4, 3, 0, 1, 0);                                    /* every class has 3: fine */
    CHECK_OK(larch_loader_create(&l, &ds, &o));
    CHECK(l && larch_loader_steps(l) == 21 / 12, "one batch per epoch");
    larch_loader_free(l);
    larch_dataset_free(&ds);
}

int main(void)
{
    balanced_set();
    unbalanced_set();
    errors();
    return check_result("test_sampler");
}
