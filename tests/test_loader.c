/* test_loader.c - datasets and the sharded loader (docs/design.md, decision 4):
 * for 1, 2 and 4 simulated ranks the ranks' parts of every global batch
 * concatenate to the 1-rank batch bit for bit, with shuffling, random crops
 * and flips on, across epoch boundaries; an epoch visits every sample once;
 * seek reproduces a batch; prefetching changes nothing; bad batch sizes are
 * errors; Fashion-MNIST files are checked (a fake set with a bad label, and
 * the real Debian package when it is installed); every split must have the
 * model's input shape. */
#include "check.h"
#include "larch/larch.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

/* a small u8 image dataset: sample i has pixels (i * 7 + j) % 256, label i % 3 */
static void make_u8(larch_dataset *ds, int n, larch_shape s)
{
    memset(ds, 0, sizeof *ds);
    snprintf(ds->name, sizeof ds->name, "tiny");
    ds->n = n;
    ds->shape = s;
    ds->n_classes = 3;
    size_t dim = larch_shape_size(s);
    ds->u8 = malloc((size_t)n * dim);
    ds->labels = malloc((size_t)n * sizeof *ds->labels);
    for (int i = 0; i < n; i++) {
        ds->labels[i] = i % 3;
        for (size_t j = 0; j < dim; j++) ds->u8[(size_t)i * dim + j] = (uint8_t)((i * 7 + (int)j) % 256);
    }
    ds->n_norm = 1;
    ds->mean[0] = 0.5f;
    ds->std[0] = 0.25f;
}

static void sharding(const larch_dataset *ds, int G, int prefetch_one, int prefetch_many)
{
    size_t dim = larch_shape_size(ds->shape);
    larch_loader_opts o = {.global_batch = G, .rank = 0, .world = 1, .shuffle = 1, .drop_last = 1,
                           .seed = 77, .flip = 1, .crop_pad = 2, .prefetch = prefetch_one};
    larch_loader *one = NULL;
    CHECK_OK(larch_loader_create(&one, ds, &o));
    if (!one) return;
    int steps = larch_loader_steps(one);
    for (int world = 2; world <= 4; world *= 2) {
        larch_loader *parts[4] = {0};
        for (int r = 0; r < world; r++) {
            larch_loader_opts ro = o;
            ro.rank = r; ro.world = world; ro.prefetch = prefetch_many;
            CHECK_OK(larch_loader_create(&parts[r], ds, &ro));
        }
        larch_loader_seek(one, 0, 0);
        for (int s = 0; s < steps * 2 + 1; s++) {               /* crosses two epoch boundaries */
            int e1, s1;
            const larch_batch *b = larch_loader_next(one, &e1, &s1);
            CHECK(b->n == G && b->sample0 == 0, "one rank: full batch");
            for (int r = 0; r < world; r++) {
                int e, st;
                const larch_batch *pb = larch_loader_next(parts[r], &e, &st);
                int loc = G / world;
                CHECK(e == e1 && st == s1 && pb->n == loc && pb->sample0 == (uint32_t)(r * loc), "rank %d position", r);
                CHECK(memcmp(pb->x, b->x + (size_t)r * loc * dim, (size_t)loc * dim * sizeof(float)) == 0,
                      "world %d rank %d step %d: pixels differ from the 1-rank batch", world, r, s);
                CHECK(memcmp(pb->label[0], b->label[0] + r * loc, (size_t)loc * sizeof(int32_t)) == 0, "labels");
            }
        }
        for (int r = 0; r < world; r++) larch_loader_free(parts[r]);
    }
    larch_loader_free(one);
}

/* The generated 2-D toy densities (data.synthetic.toy2d): every point lies
 * near its moon's half circle / its mode on the ring of radius 2, labels
 * (moons: 2; ring: classes) all occur, the data is a function of the seed,
 * and a shape other than 1x1x2 is refused. */
static void toy2d(void)
{
    larch_synth_opts so = {.n = 2000, .shape = {1, 1, 2}, .classes = 8, .noise = 0.05f, .seed = 4, .toy2d = LARCH_TOY2D_MOONS};
    larch_dataset a, b;
    CHECK_OK(larch_dataset_synthetic(&so, &a));
    CHECK(a.n_classes == 2, "moons: 2 classes, got %d", a.n_classes);
    double worst = 0, upper = 0;
    int count[8] = {0};
    for (int i = 0; i < a.n; i++) {
        int l = a.labels[i];
        count[l & 7]++;
        double sg = l ? -1 : 1, x = sg * a.f32[2 * i] + 0.5, y = sg * a.f32[2 * i + 1] + 0.25;   /* back to the unit half circle */
        worst = fmax(worst, fabs(sqrt(x * x + y * y) - 1.0));
        upper += y > -0.15 ? 1 : 0;
    }
    CHECK(worst < 0.3 && upper / a.n > 0.99, "moons: distance to the half circle up to %.3f, %.3f above it", worst, upper / a.n);
    CHECK(count[0] > 900 && count[1] > 900, "moons: %d and %d points", count[0], count[1]);
    CHECK_OK(larch_dataset_synthetic(&so, &b));
    CHECK(memcmp(a.f32, b.f32, 2000 * 2 * sizeof(float)) == 0, "moons: the same seed gives the same points");
    larch_dataset_free(&a);
    larch_dataset_free(&b);
    so.toy2d = LARCH_TOY2D_RING;
    CHECK_OK(larch_dataset_synthetic(&so, &a));
    worst = 0;
    memset(count, 0, sizeof count);
    for (int i = 0; i < a.n; i++) {
        int l = a.labels[i];
        count[l]++;
        double cx = 2 * cos(2 * M_PI * l / 8), cy = 2 * sin(2 * M_PI * l / 8);
        worst = fmax(worst, hypot(a.f32[2 * i] - cx, a.f32[2 * i + 1] - cy));
    }
    int minc = a.n;
    for (int c = 0; c < 8; c++) minc = count[c] < minc ? count[c] : minc;
    CHECK(worst < 0.3 && minc > 150, "ring: distance to the mode up to %.3f, smallest mode %d points", worst, minc);
    larch_dataset_free(&a);
    so.shape = (larch_shape){1, 1, 3};
    CHECK_FAIL(larch_dataset_synthetic(&so, &a), LARCH_ERR_INVALID, "shape must be [1, 1, 2]");
    so.shape = (larch_shape){1, 1, 2};
    so.toy2d = 7;
    CHECK_FAIL(larch_dataset_synthetic(&so, &a), LARCH_ERR_INVALID, "toy2d 7");
    printf("toy2d: moons and ring generated as specified\n");
}

/* Synthetic regression targets: adding them leaves the samples and labels
 * as they were, they are a pure function of (seed, split, index), and they
 * follow their samples through shuffled, sharded, prefetched batches and
 * through a class subset. */
static void regression_targets(void)
{
    larch_dataset plain, a, c;
    larch_synth_opts so = {.n = 60, .shape = {1, 1, 8}, .classes = 4, .noise = 0.5f, .seed = 3};
    CHECK_OK(larch_dataset_synthetic(&so, &plain));
    CHECK(plain.n_targets == 0 && plain.targets == NULL, "no targets unless asked for");
    so.regression = 2;
    so.regression_noise = 0.1f;
    CHECK_OK(larch_dataset_synthetic(&so, &a));
    CHECK(a.n_targets == 2 && a.targets != NULL, "2 targets per sample");
    CHECK(memcmp(a.f32, plain.f32, 60 * 8 * sizeof(float)) == 0 && memcmp(a.labels, plain.labels, 60 * sizeof(int32_t)) == 0,
          "regression targets leave the samples and labels unchanged");
    double var = 0.0;
    for (int i = 0; i < 60 * 2; i++) var += (double)a.targets[i] * a.targets[i] / 120.0;
    CHECK(var > 0.2 && var < 5.0, "targets of unit scale: mean square %.3f", var);
    so.n = 25;
    CHECK_OK(larch_dataset_synthetic(&so, &c));
    CHECK(c.targets && memcmp(a.targets, c.targets, 25 * 2 * sizeof(float)) == 0, "a prefix has the same targets");
    larch_dataset_free(&c);
    so.regression_noise = 0.0f;                          /* without noise the targets are linear in the features: */
    so.n = 60;                                           /* solve for the map on 8 samples, predict the other 52 */
    CHECK_OK(larch_dataset_synthetic(&so, &c));
    double worst = 0.0;
    for (int k = 0; k < 2; k++) {
        double M[8][9];
        for (int i = 0; i < 8; i++) {
            for (int j = 0; j < 8; j++) M[i][j] = c.f32[i * 8 + j];
            M[i][8] = c.targets[2 * i + k];
        }
        for (int col = 0; col < 8; col++) {              /* Gauss-Jordan with partial pivoting */
            int piv = col;
            for (int i = col + 1; i < 8; i++) if (fabs(M[i][col]) > fabs(M[piv][col])) piv = i;
            for (int j = 0; j < 9; j++) { double t = M[col][j]; M[col][j] = M[piv][j]; M[piv][j] = t; }
            for (int i = 0; i < 8; i++) {
                if (i == col) continue;
                double f = M[i][col] / M[col][col];
                for (int j = col; j < 9; j++) M[i][j] -= f * M[col][j];
            }
        }
        for (int i = 8; i < 60; i++) {
            double pred = 0.0;
            for (int j = 0; j < 8; j++) pred += M[j][8] / M[j][j] * c.f32[i * 8 + j];
            double d = fabs(pred - c.targets[2 * i + k]);
            if (d > worst) worst = d;
        }
    }
    CHECK(worst < 1e-3, "noiseless targets are a linear map of the features: worst residual %g", worst);
    larch_dataset_free(&c);
    for (int world = 1; world <= 2; world++)
        for (int rank = 0; rank < world; rank++) {
            larch_loader *l = NULL;
            larch_loader_opts o = {.global_batch = 12, .rank = rank, .world = world, .shuffle = 1, .drop_last = 1,
                                   .seed = 9, .prefetch = rank};
            CHECK_OK(larch_loader_create(&l, &a, &o));
            for (int s = 0; l && s < 7; s++) {           /* crosses an epoch boundary */
                const larch_batch *b = larch_loader_next(l, NULL, NULL);
                CHECK(b->target[0] && b->target_dim[0] == 2, "the batch carries the targets");
                for (int j = 0; b->target[0] && j < b->n; j++) {
                    int idx = -1;
                    for (int i = 0; i < a.n && idx < 0; i++)
                        if (memcmp(a.f32 + (size_t)i * 8, b->x + (size_t)j * 8, 8 * sizeof(float)) == 0) idx = i;
                    CHECK(idx >= 0 && b->label[0][j] == a.labels[idx] &&
                          memcmp(b->target[0] + 2 * j, a.targets + 2 * idx, 2 * sizeof(float)) == 0,
                          "world %d rank %d step %d sample %d: targets and label of sample %d", world, rank, s, j, idx);
                }
            }
            larch_loader_free(l);
        }
    float t0[2 * 60];
    int32_t l0[60];
    memcpy(t0, a.targets, sizeof t0);
    memcpy(l0, a.labels, sizeof l0);
    CHECK_OK(larch_dataset_subset(&a, 2, 3, 0));
    for (int i = 0, k = 0; i < 60; i++) {
        if (l0[i] < 2) continue;
        CHECK(memcmp(a.targets + 2 * k, t0 + 2 * i, 2 * sizeof(float)) == 0, "subset: targets of sample %d", i);
        k++;
    }
    larch_dataset_free(&a);
    larch_dataset_free(&plain);
}

/* Writes a fake Fashion-MNIST split of n images of h x w into dir. */
static void write_split(const char *dir, int train, int n, int h, int w)
{
    uint8_t *px = malloc((size_t)n * h * w), *lab = malloc((size_t)n);
    for (size_t i = 0; i < (size_t)n * h * w; i++) px[i] = (uint8_t)(i * 13);
    for (int i = 0; i < n; i++) lab[i] = (uint8_t)(i % 10);
    larch_idx im = {.type = 0x08, .ndim = 3, .dims = {n, h, w}, .count = (size_t)n * h * w, .data = px};
    larch_idx lb = {.type = 0x08, .ndim = 1, .dims = {n}, .count = (size_t)n, .data = lab};
    char p[400];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte.gz", dir, train ? "train" : "t10k");
    CHECK_OK(larch_idx_write(p, &im, 1));
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte.gz", dir, train ? "train" : "t10k");
    CHECK_OK(larch_idx_write(p, &lb, 1));
    free(px);
    free(lab);
}

/* Every split must have the model's input shape (28x28x1 for Fashion-MNIST):
 * smaller test images used to be read past their end, others at the wrong
 * strides. The error names the file and both shapes. */
static void split_shapes(void)
{
    char dir[] = "/tmp/larch_shapes_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char cfg_path[300], yaml[700];
    snprintf(cfg_path, sizeof cfg_path, "%s/run.yaml", dir);
    snprintf(yaml, sizeof yaml, "data: {name: fashion-mnist, dir: '%s'}\nmodel: [{type: dense, units: 10}]\n", dir);
    FILE *f = fopen(cfg_path, "w");
    CHECK(f != NULL, "write %s", cfg_path);
    if (!f) return;
    fputs(yaml, f);
    fclose(f);
    larch_node *cfg = NULL;
    CHECK_OK(larch_run_load(cfg_path, NULL, 0, &cfg));
    larch_dataset tr, te;
    write_split(dir, 1, 40, 28, 28);
    write_split(dir, 0, 20, 28, 28);
    CHECK_OK(larch_run_datasets(cfg, &tr, &te));
    CHECK(tr.shape.h == 28 && te.shape.w == 28 && strstr(te.source, "t10k-images-idx3-ubyte.gz") != NULL,
          "matching splits load (test source '%s')", te.source);
    larch_dataset_free(&tr);
    larch_dataset_free(&te);
    write_split(dir, 0, 20, 27, 29);                               /* smaller test images */
    CHECK_FAIL(larch_run_datasets(cfg, &tr, &te), LARCH_ERR_SHAPE, "t10k-images-idx3-ubyte.gz: fashion-mnist-test samples are 27x29x1");
    CHECK(strstr(larch_errmsg(), "the model input is 28x28x1") != NULL, "both shapes: %s", larch_errmsg());
    write_split(dir, 0, 20, 14, 56);                               /* as many pixels, another shape */
    CHECK_FAIL(larch_run_datasets(cfg, &tr, &te), LARCH_ERR_SHAPE, "t10k-images-idx3-ubyte.gz: fashion-mnist-test samples are 14x56x1");
    write_split(dir, 0, 20, 28, 28);
    write_split(dir, 1, 40, 29, 28);                               /* the training split too */
    CHECK_FAIL(larch_run_datasets(cfg, &tr, &te), LARCH_ERR_SHAPE, "train-images-idx3-ubyte.gz: fashion-mnist-train samples are 29x28x1");
    CHECK(tr.n == 0 && te.n == 0 && tr.u8 == NULL && te.u8 == NULL, "nothing is left allocated on failure");
    larch_node_free(cfg);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

/* With prefetch, the caller assembles a batch the worker has not started
 * (a caller that comes back at once) and takes the worker's otherwise (a
 * caller that trains a while): both give the batches of a loader without
 * the thread, bit for bit, through seeks and epoch boundaries. */
static void prefetch_take_over(const larch_dataset *ds)
{
    size_t dim = larch_shape_size(ds->shape);
    larch_loader_opts o = {.global_batch = 8, .world = 1, .shuffle = 1, .drop_last = 1, .seed = 31, .flip = 1,
                           .crop_pad = 1};
    larch_loader *ref = NULL, *pf = NULL;
    CHECK_OK(larch_loader_create(&ref, ds, &o));
    o.prefetch = 1;
    CHECK_OK(larch_loader_create(&pf, ds, &o));
    if (!ref || !pf) { larch_loader_free(ref); larch_loader_free(pf); return; }
    int steps = larch_loader_steps(ref), bad = 0;
    for (int s = 0; s < steps * 3; s++) {
        if (s == steps + 2) { larch_loader_seek(ref, 0, 3); larch_loader_seek(pf, 0, 3); }   /* a resume */
        if (s % 3 == 2) {                                    /* a slow step: the worker finishes first */
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        }
        int e0, s0, e1, s1;
        const larch_batch *a = larch_loader_next(ref, &e0, &s0);
        const larch_batch *b = larch_loader_next(pf, &e1, &s1);
        if (e0 != e1 || s0 != s1 || a->n != b->n || memcmp(a->x, b->x, (size_t)a->n * dim * sizeof(float)) != 0 ||
            memcmp(a->label[0], b->label[0], (size_t)a->n * sizeof(int32_t)) != 0)
            bad++;
    }
    CHECK(bad == 0, "prefetch: %d of %d batches differ from the loader without the thread", bad, steps * 3);
    larch_loader_free(ref);
    larch_loader_free(pf);
}

/* The plain path (one normalization channel, no augmentation) computes
 * (u / 255 - mean) / std in float: every one of the 256 pixel values gives
 * exactly that float, whichever clone runs (src/core/dispatch.h), with a
 * mean and std that make every operation round (Fashion-MNIST's). */
static void u8_values_exact(void)
{
    larch_dataset ds;
    make_u8(&ds, 103, (larch_shape){6, 5, 2});                   /* pixels (i * 7 + j) % 256: all 256 values */
    ds.mean[0] = 0.2860f;
    ds.std[0] = 0.3530f;
    size_t dim = larch_shape_size(ds.shape);
    larch_loader *l = NULL;
    larch_loader_opts o = {.global_batch = 103, .world = 1};
    CHECK_OK(larch_loader_create(&l, &ds, &o));
    const larch_batch *b = l ? larch_loader_next(l, NULL, NULL) : NULL;
    int bad = 0, seen[256] = {0};
    for (int i = 0; b && i < b->n; i++)
        for (size_t j = 0; j < dim; j++) {
            uint8_t px = ds.u8[(size_t)i * dim + j];
            volatile float q = (float)px / 255.0f;                   /* the reference, one rounding at a time */
            volatile float d = q - ds.mean[0];
            float want = d / ds.std[0], got = b->x[(size_t)i * dim + j];
            bad += memcmp(&want, &got, sizeof want) != 0;
            seen[px] = 1;
        }
    int all = 0;
    for (int v = 0; v < 256; v++) all += seen[v];
    CHECK(b && b->n == 103 && all == 256, "every pixel value is in the batch (%d)", all);
    CHECK(bad == 0, "%d normalized pixels differ from (u / 255 - mean) / std in float", bad);
    larch_loader_free(l);
    larch_dataset_free(&ds);
}

int main(void)
{
    u8_values_exact();
    split_shapes();
    toy2d();
    larch_dataset ds;
    make_u8(&ds, 103, (larch_shape){6, 5, 2});
    sharding(&ds, 16, 0, 1);
    sharding(&ds, 16, 1, 0);
    prefetch_take_over(&ds);
    size_t dim = larch_shape_size(ds.shape);

    /* an epoch without drop_last visits every sample once; the last batch is split */
    larch_loader *l = NULL;
    larch_loader_opts o = {.global_batch = 20, .world = 1, .shuffle = 1, .seed = 5};
    CHECK_OK(larch_loader_create(&l, &ds, &o));
    CHECK(larch_loader_steps(l) == 6, "ceil(103 / 20) batches");
    int seen[103] = {0};
    uint8_t first_pixel_to_id[256];
    for (int i = 0; i < 103; i++) first_pixel_to_id[(i * 7) % 256] = (uint8_t)i;
    for (int s = 0; s < 6; s++) {
        const larch_batch *b = larch_loader_next(l, NULL, NULL);
        CHECK(b->n == (s < 5 ? 20 : 3), "batch %d has %d samples", s, b->n);
        for (int j = 0; j < b->n; j++) {
            float v = b->x[(size_t)j * dim] * ds.std[0] + ds.mean[0];      /* undo the normalization */
            int px = (int)(v * 255.0f + 0.5f);
            seen[first_pixel_to_id[px & 255]]++;
        }
    }
    int once = 1;
    for (int i = 0; i < 103; i++) once &= seen[i] == 1;
    CHECK(once, "every sample exactly once per epoch");
    /* seek returns the same batch as reaching it */
    float keep[20 * 60];
    larch_loader_seek(l, 3, 2);
    const larch_batch *b = larch_loader_next(l, NULL, NULL);
    memcpy(keep, b->x, (size_t)b->n * dim * sizeof(float));
    larch_loader_seek(l, 3, 0);
    larch_loader_next(l, NULL, NULL);
    larch_loader_next(l, NULL, NULL);
    b = larch_loader_next(l, NULL, NULL);
    CHECK(memcmp(keep, b->x, (size_t)b->n * dim * sizeof(float)) == 0, "seek");
    larch_loader_free(l);
    /* the incomplete last batch over 4 ranks: 3 samples -> 1, 1, 1, 0 */
    int total = 0;
    for (int r = 0; r < 4; r++) {
        larch_loader_opts ro = {.global_batch = 20, .rank = r, .world = 4, .seed = 5};
        CHECK_OK(larch_loader_create(&l, &ds, &ro));
        larch_loader_seek(l, 0, 5);
        b = larch_loader_next(l, NULL, NULL);
        CHECK(b->n == (r < 3 ? 1 : 0) && b->sample0 == (uint32_t)(r < 3 ? r : 3), "rank %d: %d samples", r, b->n);
        total += b->n;
        larch_loader_free(l);
    }
    CHECK(total == 3, "the last batch is covered");

    larch_loader_opts bad = {.global_batch = 30, .rank = 0, .world = 4};
    CHECK_FAIL(larch_loader_create(&l, &ds, &bad), LARCH_ERR_INVALID, "batch size 30 is not divisible by the 4 ranks");
    larch_loader_opts big = {.global_batch = 200, .world = 1, .drop_last = 1};
    CHECK_FAIL(larch_loader_create(&l, &ds, &big), LARCH_ERR_INVALID, "larger than the 103 samples");
    larch_dataset_free(&ds);

    /* synthetic data is a pure function of (seed, split, index) */
    larch_dataset a, c;
    larch_synth_opts so = {.n = 50, .shape = {1, 1, 8}, .classes = 4, .noise = 0.5f, .seed = 3};
    CHECK_OK(larch_dataset_synthetic(&so, &a));
    so.n = 20;
    CHECK_OK(larch_dataset_synthetic(&so, &c));
    CHECK(memcmp(a.f32, c.f32, 20 * 8 * sizeof(float)) == 0 && memcmp(a.labels, c.labels, 20 * sizeof(int32_t)) == 0,
          "a prefix of a synthetic set is the smaller set");
    /* a derived (coarse) label set follows its samples through a subset and into batches */
    const int coarse[4] = {0, 1, 1, 0};
    CHECK_FAIL(larch_dataset_derive_labels(&a, coarse, 3), LARCH_ERR_INVALID, "3 entries but the data has 4 classes");
    const int negative[4] = {0, -1, 1, 0};
    CHECK_FAIL(larch_dataset_derive_labels(&a, negative, 4), LARCH_ERR_INVALID, "sends class 1 to -1");
    CHECK_OK(larch_dataset_derive_labels(&a, coarse, 4));
    CHECK(a.n_derived == 1 && larch_dataset_classes(&a, 1) == 2 && larch_dataset_classes(&a, 0) == 4, "one derived set");
    for (int i = 0; i < a.n; i++) CHECK(a.derived[0][i] == coarse[a.labels[i]], "derived label of sample %d", i);
    {
        larch_loader *dl = NULL;
        larch_loader_opts dopt = {.global_batch = 10, .rank = 1, .world = 2, .shuffle = 1, .drop_last = 1, .seed = 4};
        CHECK_OK(larch_loader_create(&dl, &a, &dopt));
        const larch_batch *db = dl ? larch_loader_next(dl, NULL, NULL) : NULL;
        CHECK(db && db->label[1] != NULL, "the batch carries label set 1");
        for (int j = 0; db && db->label[1] && j < db->n; j++)
            CHECK(db->label[1][j] == coarse[db->label[0][j]], "batch sample %d: coarse label", j);
        larch_loader_free(dl);
    }
    CHECK_OK(larch_dataset_subset(&a, 1, 2, 3));
    CHECK(a.n <= 6 && a.n_classes == 2, "subset: %d samples", a.n);
    for (int i = 0; i < a.n; i++) CHECK(a.labels[i] == 0 || a.labels[i] == 1, "relabelled");
    for (int i = 0; i < a.n; i++) CHECK(a.derived[0][i] == 1, "classes 1 and 2 are coarse class 1 after the subset");
    larch_dataset_free(&a);
    larch_dataset_free(&c);

    regression_targets();

    /* a fake Fashion-MNIST directory: good, then with a label of 12 */
    char dir[] = "/tmp/larch_fmnist_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    uint8_t px[5 * 28 * 28], lab[5] = {0, 9, 3, 4, 5};
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)i;
    larch_idx im = {.type = 0x08, .ndim = 3, .dims = {5, 28, 28}, .count = sizeof px, .data = px};
    larch_idx lb = {.type = 0x08, .ndim = 1, .dims = {5}, .count = 5, .data = lab};
    char p[300];
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", dir);
    CHECK_OK(larch_idx_write(p, &im, 1));
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte.gz", dir);
    CHECK_OK(larch_idx_write(p, &lb, 1));
    CHECK_OK(larch_dataset_fmnist(dir, 0, &a));
    CHECK(a.n == 5 && a.shape.h == 28 && a.shape.c == 1 && a.labels[1] == 9, "fake test set");
    larch_dataset_free(&a);
    lab[3] = 12;
    CHECK_OK(larch_idx_write(p, &lb, 1));
    CHECK_FAIL(larch_dataset_fmnist(dir, 0, &a), LARCH_ERR_FORMAT, "label 12 of sample 3 is outside 0..9");
    lb.dims[0] = 4; lb.count = 4;
    CHECK_OK(larch_idx_write(p, &lb, 0));
    CHECK_FAIL(larch_dataset_fmnist(dir, 0, &a), LARCH_ERR_FORMAT, "has 5 images but");
    CHECK_FAIL(larch_dataset_fmnist(dir, 1, &a), LARCH_ERR_IO, "train-images-idx3-ubyte");
    CHECK_FAIL(larch_dataset_fmnist("/nonexistent/fm", 1, &a), LARCH_ERR_IO, "apt-get install dataset-fashion-mnist");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup");

    /* the real thing, when installed: counts, and the normalization constants */
    struct stat st;
    if (stat("/usr/share/datasets/fashion-mnist", &st) == 0) {
        CHECK_OK(larch_dataset_fmnist("/usr/share/datasets/fashion-mnist", 1, &a));
        CHECK_OK(larch_dataset_fmnist("/usr/share/datasets/fashion-mnist", 0, &c));
        CHECK(a.n == 60000 && c.n == 10000, "Fashion-MNIST sizes %d, %d", a.n, c.n);
        double s = 0, s2 = 0, N = (double)a.n * 784;
        for (size_t i = 0; i < (size_t)a.n * 784; i++) { double v = a.u8[i] / 255.0; s += v; s2 += v * v; }
        double mean = s / N, sd = sqrt(s2 / N - mean * mean);
        CHECK(fabs(mean - a.mean[0]) < 5e-4 && fabs(sd - a.std[0]) < 5e-4, "pixel mean %.4f std %.4f vs constants %.4f %.4f",
              mean, sd, a.mean[0], a.std[0]);
        larch_dataset_free(&a);
        larch_dataset_free(&c);
    } else {
        printf("Fashion-MNIST not installed: skipping the real-data checks\n");
    }
    return check_result("test_loader");
}
