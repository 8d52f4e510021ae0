/* fewshot.c - episodes, prototype and k-NN classification, confidence
 * intervals, recall@k and nearest-row classification on embeddings
 * (contract in src/data/fewshot.h, docs/fewshot.md). */
#include "data/fewshot.h"
#include "larch/rng.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Sums in double in index order: the same result for every caller. */
double larch_fs_distance(const float *a, const float *b, int d, int metric)
{
    if (metric == LARCH_FS_COSINE) {
        double ab = 0, aa = 0, bb = 0;
        for (int j = 0; j < d; j++) {
            ab += (double)a[j] * b[j];
            aa += (double)a[j] * a[j];
            bb += (double)b[j] * b[j];
        }
        double den = sqrt(aa) * sqrt(bb);
        return 1.0 - (den > 0 ? ab / den : 0.0);          /* a zero row is at distance 1 from everything */
    }
    double s = 0;
    for (int j = 0; j < d; j++) {
        double t = (double)a[j] - b[j];
        s += t * t;
    }
    return s;
}

int larch_fs_nearest(const float *x, const float *table, int rows, int d, int metric)
{
    int best = 0;
    double bd = INFINITY;
    for (int r = 0; r < rows; r++) {
        double t = larch_fs_distance(x, table + (size_t)r * d, d, metric);
        if (t < bd) { bd = t; best = r; }
    }
    return best;
}

larch_status larch_fs_parse_classes(const char *text, int *classes, int cap, int *n)
{
    *n = 0;
    const char *p = text;
    if (!*p) return larch_fail(LARCH_ERR_INVALID, "class list is empty (expected e.g. 5-9 or 7,8,9)");
    while (*p) {
        char *end;
        errno = 0;
        long lo = strtol(p, &end, 10), hi = lo;
        if (end == p || !isdigit((unsigned char)*p) || errno)
            return larch_fail(LARCH_ERR_INVALID, "class list '%s': '%s' is not a class number (expected e.g. 5-9 or 7,8,9)",
                              text, p);
        p = end;
        if (*p == '-') {
            const char *q = p + 1;
            hi = strtol(q, &end, 10);
            if (end == q || !isdigit((unsigned char)*q) || errno)
                return larch_fail(LARCH_ERR_INVALID, "class list '%s': the range at '%s' has no end", text, p);
            if (hi < lo) return larch_fail(LARCH_ERR_INVALID, "class list '%s': the range %ld-%ld runs backwards", text, lo, hi);
            p = end;
        }
        if (*p && *p != ',') return larch_fail(LARCH_ERR_INVALID, "class list '%s': unexpected '%c'", text, *p);
        if (*p == ',') p++;
        if (hi > 65535) return larch_fail(LARCH_ERR_INVALID, "class list '%s': class %ld is larger than 65535", text, hi);
        for (long c = lo; c <= hi; c++) {
            for (int i = 0; i < *n; i++)
                if (classes[i] == c) return larch_fail(LARCH_ERR_INVALID, "class list '%s' names class %ld twice", text, c);
            if (*n >= cap) return larch_fail(LARCH_ERR_INVALID, "class list '%s': more than %d classes", text, cap);
            classes[(*n)++] = (int)c;
        }
    }
    return LARCH_OK;
}

larch_status larch_fs_pool_make(larch_fs_pool *p, const int32_t *labels, int n, const int *classes, int n_classes)
{
    memset(p, 0, sizeof *p);
    p->n_classes = n_classes;
    p->classes = malloc((size_t)n_classes * sizeof *p->classes);
    p->start = calloc((size_t)n_classes + 1, sizeof *p->start);
    p->members = malloc(((size_t)n + 1) * sizeof *p->members);
    if (!p->classes || !p->start || !p->members) { larch_fs_pool_free(p); return larch_fail(LARCH_ERR_NOMEM, "out of memory"); }
    memcpy(p->classes, classes, (size_t)n_classes * sizeof *classes);
    int k = 0;
    for (int c = 0; c < n_classes; c++) {               /* n_classes is small: one pass per class */
        p->start[c] = k;
        for (int i = 0; i < n; i++)
            if (labels[i] == classes[c]) p->members[k++] = i;
    }
    p->start[n_classes] = k;
    return LARCH_OK;
}

void larch_fs_pool_free(larch_fs_pool *p)
{
    free(p->classes);
    free(p->start);
    free(p->members);
    memset(p, 0, sizeof *p);
}

void larch_fs_episode(larch_fs_pool *p, uint64_t seed, int episode, int way, int shot, int queries,
                      int *way_cls, int *support, int *query)
{
    larch_rng r;
    larch_rng_init(&r, seed, LARCH_RNG_EPISODE, (uint32_t)episode, 0);
    int cls[p->n_classes > 0 ? p->n_classes : 1];
    for (int c = 0; c < p->n_classes; c++) cls[c] = c;
    for (int w = 0; w < way; w++) {                      /* partial Fisher-Yates: way distinct classes */
        int j = w + (int)larch_rng_below(&r, (uint32_t)(p->n_classes - w));
        int t = cls[w]; cls[w] = cls[j]; cls[j] = t;
        way_cls[w] = cls[w];
    }
    for (int w = 0; w < way; w++) {                      /* shot + queries distinct samples of each */
        int *m = p->members + p->start[way_cls[w]];
        int cnt = p->start[way_cls[w] + 1] - p->start[way_cls[w]];
        int picks[shot + queries];
        for (int j = 0; j < shot + queries; j++) {       /* a partial Fisher-Yates shuffle in place */
            int pick = j + (int)larch_rng_below(&r, (uint32_t)(cnt - j));
            picks[j] = pick;
            int t = m[j]; m[j] = m[pick]; m[pick] = t;
            if (j < shot) support[w * shot + j] = m[j];
            else query[w * queries + (j - shot)] = m[j];
        }
        for (int j = shot + queries - 1; j >= 0; j--) {  /* undone in reverse: the pool is in index order again */
            int t = m[j]; m[j] = m[picks[j]]; m[picks[j]] = t;
        }
    }
}

double larch_fs_episode_accuracy(const float *S, const float *Q, int way, int shot, int queries, int d, int method,
                                 int k, int metric, float *scratch)
{
    long correct = 0;
    if (method == LARCH_FS_PROTOTYPE) {
        for (int w = 0; w < way; w++) {                  /* the class means */
            float *pr = scratch + (size_t)w * d;
            for (int j = 0; j < d; j++) {
                double s = 0;
                for (int i = 0; i < shot; i++) s += S[((size_t)w * shot + i) * d + j];
                pr[j] = (float)(s / shot);
            }
        }
        for (int i = 0; i < way * queries; i++)
            correct += larch_fs_nearest(Q + (size_t)i * d, scratch, way, d, metric) == i / queries;
        return (double)correct / (way * queries);
    }
    const int ns = way * shot;
    double dist[ns];
    int order[ns];
    for (int i = 0; i < way * queries; i++) {
        for (int s = 0; s < ns; s++) dist[s] = larch_fs_distance(Q + (size_t)i * d, S + (size_t)s * d, d, metric), order[s] = s;
        for (int a = 1; a < ns; a++) {                   /* insertion sort: stable, nearest first */
            int t = order[a], b = a;
            while (b > 0 && dist[order[b - 1]] > dist[t]) { order[b] = order[b - 1]; b--; }
            order[b] = t;
        }
        int votes[way], first[way];
        for (int w = 0; w < way; w++) votes[w] = 0, first[w] = ns;
        for (int a = 0; a < k && a < ns; a++) {
            int w = order[a] / shot;
            votes[w]++;
            if (first[w] == ns) first[w] = a;
        }
        int best = 0;
        for (int w = 1; w < way; w++)
            if (votes[w] > votes[best] || (votes[w] == votes[best] && first[w] < first[best])) best = w;
        correct += best == i / queries;
    }
    return (double)correct / (way * queries);
}

void larch_fs_mean_ci(const double *x, int n, double *mean, double *std, double *ci95)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    double mu = n > 0 ? s / n : 0, q = 0;
    for (int i = 0; i < n; i++) q += (x[i] - mu) * (x[i] - mu);
    *mean = mu;
    *std = n > 1 ? sqrt(q / (n - 1)) : 0.0;
    *ci95 = n > 0 ? 1.96 * *std / sqrt((double)n) : 0.0;
}

void larch_fs_recall(const float *X, const int32_t *labels, int n, int d, const int *ks, int nk, int metric,
                     double *recall)
{
    long hits[16] = {0};
    #pragma omp parallel for schedule(dynamic, 8) reduction(+ : hits[:16])
    for (int i = 0; i < n; i++) {
        const float *xi = X + (size_t)i * d;
        double near_same = INFINITY;
        for (int j = 0; j < n; j++)
            if (j != i && labels[j] == labels[i]) {
                double t = larch_fs_distance(xi, X + (size_t)j * d, d, metric);
                if (t < near_same) near_same = t;
            }
        if (!isfinite(near_same)) continue;              /* no other row of its label: a miss */
        long before = 0;                                 /* rows strictly nearer than the nearest of its label */
        for (int j = 0; j < n; j++)
            if (j != i && labels[j] != labels[i] && larch_fs_distance(xi, X + (size_t)j * d, d, metric) < near_same) before++;
        for (int q = 0; q < nk && q < 16; q++) hits[q] += before < ks[q];
    }
    for (int q = 0; q < nk && q < 16; q++) recall[q] = n > 0 ? (double)hits[q] / n : 0.0;
}
