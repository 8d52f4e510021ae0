/* fewshot.h - the computation of few-shot (N-way K-shot), retrieval and
 * zero-shot evaluation on embeddings a model produced (docs/fewshot.md);
 * `larch eval --fewshot/--zeroshot` (src/cli/fewshot_cmd.c) drives it.
 * Pure computation on float rows: no model, no MPI, so tests check it on
 * hand-made embeddings. Distances: squared Euclidean, or cosine distance
 * 1 - a.b / (|a| |b|); every loop runs in a fixed order, so a result does
 * not depend on the thread or rank count. */
#ifndef LARCH_DATA_FEWSHOT_H
#define LARCH_DATA_FEWSHOT_H

#include <stdint.h>
#include "larch/error.h"

enum { LARCH_FS_EUCLIDEAN = 0, LARCH_FS_COSINE = 1 };
enum { LARCH_FS_PROTOTYPE = 0, LARCH_FS_KNN = 1 };

/* The distance of two rows of d floats. */
double larch_fs_distance(const float *a, const float *b, int d, int metric);
/* The row of table (rows x d) nearest to x; ties go to the lower row. */
int larch_fs_nearest(const float *x, const float *table, int rows, int d, int metric);

/* "5-9", "7,8,9", "0-2,5": the classes in the order given, each once.
 * Errors name the text and what is wrong (not a number, a range running
 * backwards, a repeated class, more than cap). */
larch_status larch_fs_parse_classes(const char *text, int *classes, int cap, int *n);

/* The samples of each class of a list: class classes[c]'s sample indices
 * (into labels[0..n), index order) are members[start[c] .. start[c + 1]). */
typedef struct larch_fs_pool {
    int n_classes;
    int *classes, *start, *members;
} larch_fs_pool;
larch_status larch_fs_pool_make(larch_fs_pool *p, const int32_t *labels, int n, const int *classes, int n_classes);
void larch_fs_pool_free(larch_fs_pool *p);

/* Episode `episode` (a pure function of (seed, episode): stream
 * (seed, LARCH_RNG_EPISODE, episode, 0)): `way` distinct classes of the
 * pool (way_cls[w]: an index into p->classes), and for each shot + queries
 * distinct samples of that class, the first `shot` the support
 * (support[w * shot + j]) and the rest the queries (query[w * queries + j]).
 * Every class must have shot + queries samples (checked by the caller).
 * The pool is shuffled in place while drawing and restored before return. */
void larch_fs_episode(larch_fs_pool *p, uint64_t seed, int episode, int way, int shot, int queries,
                      int *way_cls, int *support, int *query);

/* The fraction of the way * queries queries (Q, class-major rows of d
 * floats) classified as their own class from the support rows (S,
 * class-major, way * shot): by the nearest class mean (prototype) or by a
 * majority of the k nearest support rows (knn; a tied vote goes to the
 * class with the nearest member among the k). scratch: way * d floats. */
double larch_fs_episode_accuracy(const float *S, const float *Q, int way, int shot, int queries, int d, int method,
                                 int k, int metric, float *scratch);

/* Mean, sample standard deviation and the half-width of the 95% confidence
 * interval of the mean, 1.96 std / sqrt(n), of x[0..n) (n = 1: std 0). */
void larch_fs_mean_ci(const double *x, int n, double *mean, double *std, double *ci95);

/* Recall@k of retrieval: for each row i of X (n x d), the other rows are
 * ranked by distance to it; recall[j] is the fraction of rows with a row of
 * their own label among the ks[j] nearest. A row of a label no other row
 * has counts as a miss. Ties with the nearest row of the own label are
 * resolved in its favour (only strictly nearer rows rank before it). */
void larch_fs_recall(const float *X, const int32_t *labels, int n, int d, const int *ks, int nk, int metric,
                     double *recall);

#endif
