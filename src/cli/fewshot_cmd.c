/* fewshot_cmd.c - `larch eval CONFIG --checkpoint FILE --fewshot N,K` and
 * `--zeroshot TABLE`: evaluation of a model's embeddings (the output of a
 * named layer) on held-out classes of the test split (docs/fewshot.md).
 *
 * The embedding of every held-out test image is computed once, in eval
 * mode, each rank taking its contiguous part of every global batch (the
 * loader of training, without shuffling); the rows are summed across ranks
 * into one table that every rank holds. With --augment T, T - 1 augmented
 * copies of each image (the loader's augmentation, copy t keyed by
 * (seed, t, image)) are embedded too and averaged with the plain one: the
 * support embeddings. Episodes, recall@k and the zero-shot classification
 * then run on rank 0 from those tables (src/data/fewshot.c), in a fixed
 * order, so the result does not depend on the number of ranks. */
#include "cli/cli.h"
#include "core/threads.h"
#include "data/fewshot.h"
#include "io/attributes.h"
#include "larch/larch.h"
#include "larch/checkpoint.h"
#include "larch/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SETS 256
#define MAX_CLASSES 4096

static void usage(FILE *f)
{
    fprintf(f,
            "usage: larch eval CONFIG --checkpoint FILE --embedding NODE --classes LIST\n"
            "                  (--fewshot N,K [--episodes E] [--queries Q] [--method prototype|knn] [--k K]\n"
            "                   [--augment T] | --zeroshot TABLE.csv) [--distance euclidean|cosine] [--seed S]\n"
            "                  [--batch B] [--set key=value ...]\n"
            "  evaluates the embeddings (the output of layer NODE) of CONFIG's model with the checkpoint's\n"
            "  parameters on the test-split images of the held-out classes LIST (e.g. 5-9 or 7,8,9; the\n"
            "  dataset's own class numbers, whatever data.classes the model was trained on).\n"
            "  --fewshot N,K    N-way K-shot episodes: N classes of LIST, K support and Q query images each;\n"
            "                   prints the mean accuracy with its 95%% confidence interval and recall@1/@5\n"
            "  --episodes E     episodes (default 1000)        --queries Q  queries per class (default 15)\n"
            "  --method M       prototype (nearest class mean, default) or knn (majority of the k nearest\n"
            "                   support images, --k, default 1)\n"
            "  --augment T      average each support image's embedding over itself and T-1 augmented copies\n"
            "                   (data.augment of CONFIG when it enables any, else flip and crop_pad 2; default 1)\n"
            "  --zeroshot FILE  classify each image as the class of LIST whose attribute row of FILE is the\n"
            "                   nearest to its embedding (NODE must have one value per attribute)\n"
            "  --distance D     euclidean (default) or cosine    --seed S  episodes and copies (default train.seed)\n"
            "  --batch B        images per forward pass and rank (default train.eval_batch / ranks)\n"
            "  The last line of the output is one JSON record of the result.\n");
}

typedef struct args_t {
    const char *config, *ckpt, *node, *classes, *zeroshot, *sets[MAX_SETS];
    int n_sets, way, shot, episodes, queries, method, k, augment, metric, batch, fewshot;
    long seed;
} args_t;

/* An integer option value in [lo, hi], or -1 after printing the error. */
static long int_arg(const char *opt, const char *v, long lo, long hi)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "larch eval: %s %s: expected an integer from %ld to %ld\n", opt, v, lo, hi);
        return -1;
    }
    return x;
}

/* 0 ok, 2 usage error (printed). */
static int parse(int argc, char **argv, args_t *a)
{
    memset(a, 0, sizeof *a);
    a->episodes = 1000, a->queries = 15, a->k = 1, a->augment = 1, a->seed = -1;
    for (int i = 1; i < argc;) {
        int next = larch_cli_sets(argc, argv, i, a->sets, &a->n_sets, MAX_SETS - 4);
        if (next < 0) return 2;
        if (next > i) { i = next; continue; }
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (o[0] != '-') {
            if (a->config) { fprintf(stderr, "larch eval: unexpected argument '%s'\n", o); return 2; }
            a->config = o;
            i++;
            continue;
        }
        if (!v) { fprintf(stderr, "larch eval: %s needs a value\n", o); return 2; }
        long x = 0;
        if (!strcmp(o, "--checkpoint")) a->ckpt = v;
        else if (!strcmp(o, "--embedding")) a->node = v;
        else if (!strcmp(o, "--classes")) a->classes = v;
        else if (!strcmp(o, "--zeroshot")) a->zeroshot = v;
        else if (!strcmp(o, "--fewshot")) {
            char *end, *end2;
            long n = strtol(v, &end, 10), k = *end == ',' ? strtol(end + 1, &end2, 10) : -1;
            /* the episode code keeps per-episode arrays of N x K and K + Q entries on the stack: bounded here */
            if (*end != ',' || end2 == end + 1 || *end2 || n < 2 || n > MAX_CLASSES || k < 1 || k > 10000 || n * k > 65536) {
                fprintf(stderr, "larch eval: --fewshot %s: expected N,K (N-way K-shot: 2 <= N <= %d, 1 <= K <= 10000, "
                        "N x K <= 65536), e.g. 5,1\n", v, MAX_CLASSES);
                return 2;
            }
            a->fewshot = 1, a->way = (int)n, a->shot = (int)k;
        } else if (!strcmp(o, "--episodes")) { if ((x = int_arg(o, v, 1, 10000000)) < 0) return 2; a->episodes = (int)x; }
        else if (!strcmp(o, "--queries")) { if ((x = int_arg(o, v, 1, 10000)) < 0) return 2; a->queries = (int)x; }
        else if (!strcmp(o, "--k")) { if ((x = int_arg(o, v, 1, 100000)) < 0) return 2; a->k = (int)x; }
        else if (!strcmp(o, "--augment")) { if ((x = int_arg(o, v, 1, 1000)) < 0) return 2; a->augment = (int)x; }
        else if (!strcmp(o, "--batch")) { if ((x = int_arg(o, v, 1, 1 << 20)) < 0) return 2; a->batch = (int)x; }
        else if (!strcmp(o, "--seed")) { if ((x = int_arg(o, v, 0, 4294967295L)) < 0) return 2; a->seed = x; }
        else if (!strcmp(o, "--method")) {
            if (!strcmp(v, "prototype")) a->method = LARCH_FS_PROTOTYPE;
            else if (!strcmp(v, "knn")) a->method = LARCH_FS_KNN;
            else { fprintf(stderr, "larch eval: --method %s: expected prototype or knn\n", v); return 2; }
        } else if (!strcmp(o, "--distance")) {
            if (!strcmp(v, "euclidean")) a->metric = LARCH_FS_EUCLIDEAN;
            else if (!strcmp(v, "cosine")) a->metric = LARCH_FS_COSINE;
            else { fprintf(stderr, "larch eval: --distance %s: expected euclidean or cosine\n", v); return 2; }
        } else { fprintf(stderr, "larch eval: unexpected argument '%s'\n", o); usage(stderr); return 2; }
        i += 2;
    }
    if (!a->config || !a->ckpt || !a->node || !a->classes || a->fewshot == !!a->zeroshot) {
        fprintf(stderr, "larch eval: %s\n", !a->config || !a->ckpt ? "needs CONFIG and --checkpoint FILE"
                : !a->node ? "needs --embedding NODE (the layer whose output is the embedding)"
                : !a->classes ? "needs --classes LIST (the held-out classes, e.g. 5-9)"
                : "give one of --fewshot N,K and --zeroshot TABLE");
        usage(stderr);
        return 2;
    }
    return 0;
}

/* The test images of the listed classes, in index order, with their own
 * labels and normalization. */
static larch_status heldout(const larch_dataset *test, const int *cls, int n_cls, larch_dataset *out)
{
    memset(out, 0, sizeof *out);
    size_t dim = larch_shape_size(test->shape);
    int n = 0;
    for (int i = 0; i < test->n; i++)
        for (int c = 0; c < n_cls; c++) n += test->labels[i] == cls[c];
    *out = *test;                                     /* shape, normalization, name */
    out->u8 = NULL, out->f32 = NULL, out->labels = NULL, out->targets = NULL, out->n_targets = 0, out->n_derived = 0;
    out->ooc = 0, out->rows = NULL;
    out->n = n;
    if (test->u8) out->u8 = malloc((size_t)n * dim + 1);
    else out->f32 = malloc(((size_t)n * dim + 1) * sizeof(float));
    out->labels = malloc(((size_t)n + 1) * sizeof *out->labels);
    if ((!out->u8 && !out->f32) || !out->labels) { larch_dataset_free(out); return larch_fail(LARCH_ERR_NOMEM, "out of memory"); }
    int k = 0;
    for (int i = 0; i < test->n; i++) {
        int in = 0;
        for (int c = 0; c < n_cls; c++) in |= test->labels[i] == cls[c];
        if (!in) continue;
        if (test->u8) memcpy(out->u8 + (size_t)k * dim, test->u8 + (size_t)i * dim, dim);
        else memcpy(out->f32 + (size_t)k * dim, test->f32 + (size_t)i * dim, dim * sizeof(float));
        out->labels[k++] = test->labels[i];
    }
    return LARCH_OK;
}

/* The output of `node` for every image of ds (n x d floats into out, which
 * every rank holds when this returns). epoch 0: the images as they are;
 * epoch t > 0: augmented copy t (aug's settings, keyed by (seed, t, image)). */
static larch_status embed(larch_model *m, const larch_dataset *ds, int node, int batch, const larch_comm *comm,
                          uint64_t seed, int epoch, const larch_fit_data *aug, float *out)
{
    size_t d = larch_shape_size(larch_model_node_shape(m, node));
    memset(out, 0, (size_t)ds->n * d * sizeof *out);
    larch_loader_opts o = {.global_batch = batch * comm->size, .rank = comm->rank, .world = comm->size, .seed = seed};
    if (epoch > 0)
        o.flip = aug->flip, o.crop_pad = aug->crop_pad, o.resized_crop = aug->resized_crop, o.scale_lo = aug->scale[0],
        o.scale_hi = aug->scale[1], o.ratio_lo = aug->ratio[0], o.ratio_hi = aug->ratio[1];
    larch_loader *l = NULL;
    /* every rank learns whether any loader failed before the sum below, so
     * none is left in the sum alone */
    larch_status s = larch_comm_check(comm, larch_loader_create(&l, ds, &o));
    if (s) {
        larch_loader_free(l);
        return s;
    }
    larch_loader_seek(l, epoch, 0);
    int steps = larch_loader_steps(l);
    for (int k = 0; k < steps; k++) {
        const larch_batch *b = larch_loader_next(l, NULL, NULL);
        if (b->n == 0) continue;
        larch_pass p = {.n = b->n, .train = 0, .seed = seed};
        larch_model_forward(m, b, &p);
        memcpy(out + ((size_t)k * o.global_batch + b->sample0) * d, larch_model_node_output(m, node),
               (size_t)b->n * d * sizeof *out);
    }
    larch_loader_free(l);
    if (comm->size > 1) s = larch_comm_allreduce_f32(comm, out, (size_t)ds->n * d);   /* x + 0 = x: exact */
    return s;
}

static void print_classes(FILE *f, const int *cls, int n, const char *sep)
{
    for (int c = 0; c < n; c++) fprintf(f, "%s%d", c ? sep : "", cls[c]);
}

static const char *metric_name(int m) { return m == LARCH_FS_COSINE ? "cosine" : "euclidean"; }

/* Rank 0: episodes and recall@k; prints the result. */
static larch_status report_fewshot(const args_t *a, const larch_dataset *h, const float *E, const float *Esup, int d,
                                   const int *cls, int n_cls, uint64_t seed, int ranks)
{
    larch_fs_pool pool;
    larch_status s = larch_fs_pool_make(&pool, h->labels, h->n, cls, n_cls);
    if (s) return s;
    const int W = a->way, K = a->shot, Q = a->queries;
    int *way_cls = malloc((size_t)W * sizeof *way_cls), *sup = malloc((size_t)W * K * sizeof *sup);
    int *qry = malloc((size_t)W * Q * sizeof *qry);
    float *S = malloc((size_t)W * K * d * sizeof *S), *Qv = malloc((size_t)W * Q * d * sizeof *Qv);
    float *scratch = malloc((size_t)W * d * sizeof *scratch);
    double *acc = malloc((size_t)a->episodes * sizeof *acc);
    if (!way_cls || !sup || !qry || !S || !Qv || !scratch || !acc) s = larch_fail(LARCH_ERR_NOMEM, "out of memory");
    for (int e = 0; !s && e < a->episodes; e++) {
        larch_fs_episode(&pool, seed, e, W, K, Q, way_cls, sup, qry);
        for (int i = 0; i < W * K; i++) memcpy(S + (size_t)i * d, Esup + (size_t)sup[i] * d, (size_t)d * sizeof *S);
        for (int i = 0; i < W * Q; i++) memcpy(Qv + (size_t)i * d, E + (size_t)qry[i] * d, (size_t)d * sizeof *Qv);
        acc[e] = larch_fs_episode_accuracy(S, Qv, W, K, Q, d, a->method, a->k, a->metric, scratch);
    }
    if (!s) {
        double mean, std, ci, rec[2];
        const int ks[2] = {1, 5};
        larch_fs_mean_ci(acc, a->episodes, &mean, &std, &ci);
        larch_fs_recall(E, h->labels, h->n, d, ks, 2, a->metric, rec);
        const char *method = a->method == LARCH_FS_KNN ? "knn" : "prototype";
        printf("fewshot: %d-way %d-shot, %d queries per class, %d episodes from classes ", W, K, Q, a->episodes);
        print_classes(stdout, cls, n_cls, ",");
        printf(" of the test split (%d images); embedding %s (%d values), %s", h->n, a->node, d, method);
        if (a->method == LARCH_FS_KNN) printf(" k=%d", a->k);
        printf(", %s distance, support augmentation x%d, %d rank(s)\n", metric_name(a->metric), a->augment, ranks);
        printf("fewshot: accuracy %.4f +- %.4f (95%% confidence interval; episode std %.4f); recall@1 %.4f, recall@5 %.4f\n",
               mean, ci, std, rec[0], rec[1]);
        printf("{\"eval\": \"fewshot\", \"way\": %d, \"shot\": %d, \"queries\": %d, \"episodes\": %d, \"classes\": [", W, K, Q,
               a->episodes);
        print_classes(stdout, cls, n_cls, ", ");
        printf("], \"images\": %d, \"embedding\": \"%s\", \"dim\": %d, \"method\": \"%s\", \"k\": %d, \"distance\": \"%s\", "
               "\"augment\": %d, \"seed\": %llu, \"accuracy\": %.6f, \"std\": %.6f, \"ci95\": %.6f, \"recall@1\": %.6f, "
               "\"recall@5\": %.6f}\n", h->n, a->node, d, method, a->k, metric_name(a->metric), a->augment,
               (unsigned long long)seed, mean, std, ci, rec[0], rec[1]);
    }
    free(way_cls); free(sup); free(qry); free(S); free(Qv); free(scratch); free(acc);
    larch_fs_pool_free(&pool);
    return s;
}

/* Rank 0: nearest attribute row among the held-out classes. */
static larch_status report_zeroshot(const args_t *a, const larch_dataset *h, const float *E, int d, const int *cls,
                                    int n_cls, const larch_attr_table *t, int ranks)
{
    float *rows = malloc((size_t)n_cls * d * sizeof *rows);
    long *right = calloc((size_t)n_cls, sizeof *right), *total = calloc((size_t)n_cls, sizeof *total), correct = 0;
    if (!rows || !right || !total) { free(rows); free(right); free(total); return larch_fail(LARCH_ERR_NOMEM, "out of memory"); }
    for (int c = 0; c < n_cls; c++) memcpy(rows + (size_t)c * d, t->values + (size_t)cls[c] * d, (size_t)d * sizeof *rows);
    for (int i = 0; i < h->n; i++) {
        int got = larch_fs_nearest(E + (size_t)i * d, rows, n_cls, d, a->metric), own = 0;
        for (int c = 0; c < n_cls; c++) if (cls[c] == h->labels[i]) own = c;
        total[own]++;
        right[own] += got == own;
        correct += got == own;
    }
    double accuracy = h->n ? (double)correct / h->n : 0.0, chance = 1.0 / n_cls;
    printf("zeroshot: classes ");
    print_classes(stdout, cls, n_cls, ",");
    printf(" of the test split (%d images); embedding %s (%d values) against the attribute rows of %s, %s distance, "
           "%d rank(s)\n", h->n, a->node, d, a->zeroshot, metric_name(a->metric), ranks);
    printf("zeroshot: accuracy %.4f (chance %.4f); per class:", accuracy, chance);
    for (int c = 0; c < n_cls; c++)
        printf("%s %d %s %.4f", c ? "," : "", cls[c], t->class_names[cls[c]], total[c] ? (double)right[c] / total[c] : 0.0);
    printf("\n{\"eval\": \"zeroshot\", \"classes\": [");
    print_classes(stdout, cls, n_cls, ", ");
    printf("], \"images\": %d, \"embedding\": \"%s\", \"dim\": %d, \"distance\": \"%s\", \"accuracy\": %.6f, "
           "\"chance\": %.6f, \"per_class\": [", h->n, a->node, d, metric_name(a->metric), accuracy, chance);
    for (int c = 0; c < n_cls; c++) printf("%s%.6f", c ? ", " : "", total[c] ? (double)right[c] / total[c] : 0.0);
    printf("]}\n");
    free(rows); free(right); free(total);
    return LARCH_OK;
}

int larch_cmd_eval_embedding(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
    args_t a;
    if (parse(argc, argv, &a)) return 2;
    /* the whole test split, in memory: the held-out classes are the
     * dataset's own numbers, whatever subset the model was trained on */
    a.sets[a.n_sets++] = "data.classes=[]";
    a.sets[a.n_sets++] = "data.train_per_class=0";
    a.sets[a.n_sets++] = "data.in_memory=true";

    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) { larch_cli_error("MPI"); return 1; }
    larch_node *cfg = NULL;
    larch_model *m = NULL;
    larch_dataset train, test, h;
    larch_attr_table tab;
    memset(&train, 0, sizeof train), memset(&test, 0, sizeof test), memset(&h, 0, sizeof h), memset(&tab, 0, sizeof tab);
    float *E = NULL, *Esup = NULL, *tmp = NULL;
    int node = -1, d = 0, cls[MAX_CLASSES], n_cls = 0, classes, batch = a.batch;
    larch_shape in_shape = {0, 0, 0};
    larch_fit_data aug = {0};
    uint64_t seed = 0;
    larch_status s = larch_run_load(a.config, a.sets, a.n_sets, &cfg);
    if (!s) s = larch_run_input(cfg, &in_shape, &classes);
    if (!s) {
        const larch_node *t = larch_map_get(cfg, "train"), *au = larch_map_get(larch_map_get(cfg, "data"), "augment");
        seed = a.seed >= 0 ? (uint64_t)a.seed : (uint64_t)larch_cfg_int(t, "seed");
        s = larch_model_build(&m, in_shape, larch_run_layers(cfg), larch_map_get(cfg, "loss"),
                              larch_map_get(cfg, "regularization"), seed);
        long th = larch_cfg_int(t, "threads");
        long cores = sysconf(_SC_NPROCESSORS_ONLN) / (comm.local_size > 0 ? comm.local_size : 1);
        larch_threads_set(th > 0 ? (int)th : cores > 0 ? (int)cores : 1);
        if (!batch) batch = (int)(larch_cfg_int(t, "eval_batch") / comm.size);
        if (batch < 1) batch = 1;
        aug.flip = larch_cfg_bool(au, "flip"), aug.crop_pad = (int)larch_cfg_int(au, "crop_pad");
        aug.resized_crop = larch_cfg_bool(au, "resized_crop");
        double sc[2] = {0.08, 1}, ra[2] = {0.75, 4.0 / 3};
        larch_cfg_floats(au, "scale", sc, 2), larch_cfg_floats(au, "ratio", ra, 2);
        aug.scale[0] = (float)sc[0], aug.scale[1] = (float)sc[1], aug.ratio[0] = (float)ra[0], aug.ratio[1] = (float)ra[1];
        if (!aug.flip && !aug.crop_pad && !aug.resized_crop) aug.flip = 1, aug.crop_pad = 2;   /* the default copies */
    }
    if (!s) {
        node = larch_model_node(m, a.node);
        if (node <= 0) {
            char names[1024] = "";
            for (int i = 0; i < larch_model_n_layers(m) && strlen(names) < 900; i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                         larch_layer_name(larch_model_layer(m, i)));
            s = larch_fail(LARCH_ERR_INVALID, "--embedding %s: %s has no layer of that name (its layers: %s)", a.node,
                           a.config, names);
        } else {
            d = (int)larch_shape_size(larch_model_node_shape(m, node));
        }
    }
    s = larch_comm_check(&comm, s);
    if (!s) s = larch_ckpt_load(a.ckpt, &comm, m, NULL, NULL);      /* collective */
    if (!s) s = larch_run_datasets(cfg, &train, &test);
    larch_dataset_free(&train);
    if (!s && (s = larch_fs_parse_classes(a.classes, cls, MAX_CLASSES, &n_cls))) s = larch_fail_context(s, "--classes");
    for (int c = 0; !s && c < n_cls; c++) {                          /* each class is in the test split */
        int cnt = 0;
        for (int i = 0; i < test.n; i++) cnt += test.labels[i] == cls[c];
        if (cls[c] >= test.n_classes || cnt == 0)
            s = larch_fail(LARCH_ERR_INVALID, "--classes %s: class %d is not in the test split of %s (%d classes, 0..%d)",
                           a.classes, cls[c], a.config, test.n_classes, test.n_classes - 1);
        else if (a.fewshot && cnt < a.shot + a.queries)
            s = larch_fail(LARCH_ERR_INVALID, "--fewshot %d,%d with --queries %d needs %d images of each class, but class %d "
                           "has %d in the test split", a.way, a.shot, a.queries, a.shot + a.queries, cls[c], cnt);
    }
    if (!s && a.fewshot && a.way > n_cls)
        s = larch_fail(LARCH_ERR_INVALID, "--fewshot %d,%d: %d-way episodes need %d classes but --classes %s gives %d", a.way,
                       a.shot, a.way, a.way, a.classes, n_cls);
    if (!s && a.fewshot && a.method == LARCH_FS_KNN && a.k > a.way * a.shot)
        s = larch_fail(LARCH_ERR_INVALID, "--k %d: an episode has only %d support images (%d-way %d-shot)", a.k,
                       a.way * a.shot, a.way, a.shot);
    if (!s && a.zeroshot) {
        s = larch_attr_read(a.zeroshot, &tab);
        if (!s && tab.n_classes != test.n_classes)
            s = larch_fail(LARCH_ERR_INVALID, "--zeroshot %s has %d class rows but the test split has %d classes", a.zeroshot,
                           tab.n_classes, test.n_classes);
        if (!s && tab.n_attr != d)
            s = larch_fail(LARCH_ERR_INVALID, "--zeroshot %s has %d attributes but --embedding %s gives %d values per image "
                           "(train an attribute head of %d units)", a.zeroshot, tab.n_attr, a.node, d, tab.n_attr);
    }
    if (!s) s = heldout(&test, cls, n_cls, &h);
    if (!s && !(E = malloc(((size_t)h.n * d + 1) * sizeof *E))) s = larch_fail(LARCH_ERR_NOMEM, "embeddings (%d x %d)", h.n, d);
    if (!s && a.augment > 1 && (!(Esup = calloc((size_t)h.n * d + 1, sizeof *Esup)) || !(tmp = malloc(((size_t)h.n * d + 1) * sizeof *tmp))))
        s = larch_fail(LARCH_ERR_NOMEM, "support embeddings (%d x %d)", h.n, d);
    s = larch_comm_check(&comm, s);
    if (!s) s = larch_comm_check(&comm, larch_model_plan(m, batch));   /* embed() sums across ranks */
    if (!s) s = embed(m, &h, node, batch, &comm, seed, 0, &aug, E);
    s = larch_comm_check(&comm, s);
    for (int t = 1; !s && t < a.augment; t++) {
        s = larch_comm_check(&comm, embed(m, &h, node, batch, &comm, seed, t, &aug, tmp));
        for (size_t j = 0; !s && j < (size_t)h.n * d; j++) Esup[j] += tmp[j];
    }
    if (!s && Esup)                                                  /* the plain image and its T - 1 copies */
        for (size_t j = 0; j < (size_t)h.n * d; j++) Esup[j] = (Esup[j] + E[j]) / (float)a.augment;
    if (!s && comm.rank == 0)
        s = a.fewshot ? report_fewshot(&a, &h, E, Esup ? Esup : E, d, cls, n_cls, seed, comm.size)
                      : report_zeroshot(&a, &h, E, d, cls, n_cls, &tab, comm.size);
    s = larch_comm_check(&comm, s);
    if (s && comm.rank == 0) larch_cli_error("eval");
    fflush(stdout);
    free(E), free(Esup), free(tmp);
    larch_attr_free(&tab);
    larch_dataset_free(&h);
    larch_dataset_free(&test);
    larch_model_free(m);
    larch_node_free(cfg);
    larch_comm_finalize(&comm);
    return s ? 1 : 0;
}
