/* metric_loss.c - metric-learning losses (triplet, contrastive, supervised
 * contrastive, center, ArcFace), the layer that holds the centers, and the
 * gather of the global batch for the losses scored over pairs.
 *
 * Pairwise losses (triplet, contrastive, supcon) are not sums over samples:
 * they are means over pairs or triplets of the batch. With `global` (the
 * default) every rank gathers the embeddings and labels of the whole global
 * batch through the allgather hook (larch_model_set_loss_comm; the math
 * never calls MPI), in global sample order (ranks hold contiguous parts;
 * batch.sample0 says where), computes the loss and its gradient for ALL
 * gathered embeddings, identically on every rank, and keeps the rows of its
 * own samples. That is the same as sending each remote embedding's gradient
 * back to its rank, without a second collective: every rank already
 * computed it. The loss L of the global batch is reported as L * n_local
 * per rank (count n_local), so the trainer's sum over ranks divided by the
 * global batch is L, as in one process; the gradient is written as
 * grad_scale * weight * N * dL/dz (N the gathered samples), which with
 * grad_scale = 1 / global batch is weight * dL/dz.
 *
 * Distances are Euclidean, sqrt(||a - b||^2 + 1e-12) (the eps keeps the
 * gradient finite at a = b; Hermans, Beyer and Leibe 2017). All sums are in
 * double and in global sample order, so every rank count gives the same
 * numbers up to the summation order of the layers before.
 *
 * triplet (Hermans et al. 2017): batch_hard takes per anchor the farthest
 * positive and the nearest negative and averages over anchors that have
 * both; batch_all averages over the triplets (a, p, n) whose loss is
 * positive ("BA+"). The per-triplet loss is max(0, margin + d_ap - d_an), or
 * softplus(d_ap - d_an) with soft_margin.
 * contrastive (Hadsell, Chopra and LeCun 2006): mean over all pairs i < j of
 * d^2 (same label) or max(0, margin - d)^2 (different labels).
 * supcon (Khosla et al. 2020, L_out): for each anchor i with positives P(i),
 * -1/|P(i)| sum_p log(exp(z_i.z_p / tau) / sum_{a != i} exp(z_i.z_a / tau)),
 * averaged over such anchors (anchors without positives are skipped); the
 * embeddings should be L2-normalized (layer l2norm).
 * center (Wen et al. 2016): per sample 1/2 ||x_i - c_{y_i}||^2, a sum over
 * samples like softmax_ce (no gather for the value). The centers are a
 * buffer of the layer "loss_centers" (non-trainable, checkpointed), updated
 * after each training pass (larch_model_loss with grad_scale != 0) by Wen's
 * rule c_j -= alpha * sum_{y_i = j} (c_j - x_i) / (1 + n_j) over the GLOBAL
 * batch (gathered), so every rank holds identical centers.
 * arcface (Deng et al. 2019): on cosine logits z (layer cosine), softmax
 * cross-entropy of s * z with the target logit s * cos(theta_y + m). Where
 * theta_y + m > pi (cos theta_y <= cos(pi - m)) cos(theta + m) is no longer
 * decreasing in theta, and like the paper's code (insightface, easy_margin
 * off) we use cos(theta_y) - m sin(m) there instead.
 */
#include "nn/layers.h"
#include "nn/loss.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define DIST_EPS 1e-12

/* ---- the centers' layer ---- */

static larch_status lc_setup(larch_layer *L, const void *opts)
{
    (void)opts;
    larch_model *m = L->model;
    for (int k = 0; k < m->n_losses; k++) {
        larch_loss *l = &m->losses[k];
        if (l->type != LARCH_LOSS_CENTER) continue;
        size_t d = larch_shape_size(larch_model_node_shape(m, l->node));
        l->centers = larch_layer_add_buffer(L, l->name, (size_t)l->classes * d);
    }
    L->out_shape = (larch_shape){1, 1, 1};
    return LARCH_OK;
}

static void lc_init(larch_layer *L, uint64_t seed)
{
    (void)seed;   /* centers start at 0 (Wen et al.: they follow the features from the first step) */
    for (int i = 0; i < L->n_buffer; i++)
        memset(larch_layer_buffer(L, i), 0, L->model->buffers[L->first_buffer + i].size * sizeof(float));
}

static void lc_forward(larch_layer *L, const larch_pass *p) { memset(L->y, 0, (size_t)p->n * sizeof *L->y); }
static void lc_backward(larch_layer *L, const larch_pass *p) { (void)L; (void)p; }

const larch_layer_ops larch_loss_centers_ops = {
    .type = "loss_centers", .min_inputs = 1, .max_inputs = 1,
    .setup = lc_setup, .init = lc_init, .forward = lc_forward, .backward = lc_backward,
};

/* ---- workspace ---- */

static size_t al(size_t bytes) { return (bytes + 63) / 64 * 64; }

static int ranks_of(const larch_model *m)
{
    const larch_comm_hooks *h = m->loss_comm;
    return h && h->allgather && h->ranks > 1 ? h->ranks : 1;
}

/* Loss l gathers the global batch (in a training pass when `train`). */
static int gathers(const larch_model *m, const larch_loss *l, int train)
{
    return l->global && ranks_of(m) > 1 && (larch_loss_pairwise(l->type) || (l->type == LARCH_LOSS_CENTER && train));
}

/* One rank's part in the gather: n, sample0, labels, embeddings (max_batch each). */
static size_t record_bytes(int max_batch, int d) { return al(16 + 4 * (size_t)max_batch + 4 * (size_t)max_batch * d); }

size_t larch_metric_ws_bytes(const larch_model *m, int max_batch)
{
    size_t most = 0;
    int R = ranks_of(m);
    for (int k = 0; k < m->n_losses; k++) {
        const larch_loss *l = &m->losses[k];
        if (!larch_loss_embedding(l->type)) continue;
        size_t d = larch_shape_size(larch_model_node_shape(m, l->node)), b = 0;
        size_t N = (size_t)max_batch * (gathers(m, l, 1) ? (size_t)R : 1);
        if (gathers(m, l, 1))
            b += record_bytes(max_batch, (int)d) * (1 + (size_t)R) + al(4 * N * d) + al(4 * N);
        if (larch_loss_pairwise(l->type)) b += 2 * al(8 * N * N) + al(8 * N * d);
        if (l->type == LARCH_LOSS_CENTER) b += al(8 * (size_t)l->classes * d) + al(8 * (size_t)l->classes);
        if (b > most) most = b;
    }
    return most;
}

/* The batch a loss scores: this rank's, or the gathered global one. */
typedef struct {
    const float *X;        /* (N, d) embeddings in global sample order */
    const int32_t *y;      /* (N) labels                                */
    int N, off;            /* samples, and where this rank's start      */
} scored;

/* Gathers (n, sample0, labels, embeddings) of every rank into the global
 * batch; ws advances past what it uses. Ranks with no samples (the last
 * evaluation batch) take part with n = 0. */
static scored gather(larch_model *m, const float *x, const int32_t *y, int n, uint32_t sample0, int d, char **ws)
{
    const larch_comm_hooks *h = m->loss_comm;
    int R = h->ranks, nb = m->max_batch;
    size_t rec = record_bytes(nb, d);
    char *send = *ws, *recv = send + rec;
    float *X = (float *)(recv + rec * (size_t)R);
    int32_t *Y = (int32_t *)((char *)X + al(4 * (size_t)nb * R * d));
    *ws = (char *)Y + al(4 * (size_t)nb * R);
    memset(send, 0, 16);
    int32_t n32 = n;
    memcpy(send, &n32, 4);
    memcpy(send + 4, &sample0, 4);
    if (n > 0) {
        memcpy(send + 16, y, 4 * (size_t)n);
        memcpy(send + 16 + 4 * (size_t)nb, x, 4 * (size_t)n * d);
    }
    h->allgather(h->ctx, send, rec, recv);
    scored s = {X, Y, 0, 0};
    for (int r = 0; r < R; r++) {                 /* place each part by its global position */
        const char *pr = recv + rec * (size_t)r;
        int32_t nr;
        uint32_t s0;
        memcpy(&nr, pr, 4);
        memcpy(&s0, pr + 4, 4);
        if (nr <= 0 || nr > nb) continue;
        int pos = 0;
        for (int q = 0; q < R; q++) {
            const char *pq = recv + rec * (size_t)q;
            int32_t nq;
            uint32_t sq;
            memcpy(&nq, pq, 4);
            memcpy(&sq, pq + 4, 4);
            if (nq > 0 && nq <= nb && sq < s0) pos += nq;
        }
        memcpy(Y + pos, pr + 16, 4 * (size_t)nr);
        memcpy(X + (size_t)pos * d, pr + 16 + 4 * (size_t)nb, 4 * (size_t)nr * d);
        s.N += nr;
        if (n > 0 && s0 == sample0) s.off = pos;
    }
    return s;
}

/* ---- pairwise losses: value and dL/dX (N, d) in double ---- */

static void pair_dist(const float *X, int N, int d, double *dist)
{
    for (int i = 0; i < N; i++) {
        dist[(size_t)i * N + i] = sqrt(DIST_EPS);
        for (int j = i + 1; j < N; j++) {
            const float *a = X + (size_t)i * d, *b = X + (size_t)j * d;
            double s = 0.0;
            for (int k = 0; k < d; k++) { double t = (double)a[k] - b[k]; s += t * t; }
            dist[(size_t)i * N + j] = dist[(size_t)j * N + i] = sqrt(s + DIST_EPS);
        }
    }
}

/* dX_i = sum_j (G_ij + G_ji) (x_i - x_j) / d_ij, for G = dL/d(dist). */
static void dist_backward(const float *X, int N, int d, const double *dist, const double *G, double *dX)
{
    memset(dX, 0, (size_t)N * d * sizeof *dX);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            if (j == i) continue;
            double c = (G[(size_t)i * N + j] + G[(size_t)j * N + i]) / dist[(size_t)i * N + j];
            if (c == 0.0) continue;
            const float *a = X + (size_t)i * d, *b = X + (size_t)j * d;
            for (int k = 0; k < d; k++) dX[(size_t)i * d + k] += c * ((double)a[k] - b[k]);
        }
}

static double softplus(double v) { return v > 0 ? v + log1p(exp(-v)) : log1p(exp(v)); }
static double sigmoid(double v) { return v >= 0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v)); }

/* The per-triplet loss of v = d_ap - d_an and its derivative. */
static double triplet_term(const larch_loss *l, double v, double *g)
{
    if (l->soft_margin) { *g = sigmoid(v); return softplus(v); }
    v += l->margin;
    *g = v > 0 ? 1.0 : 0.0;
    return v > 0 ? v : 0.0;
}

static double triplet(const larch_loss *l, const float *X, const int32_t *y, int N, int d, double *dist, double *G,
                      double *dX)
{
    pair_dist(X, N, d, dist);
    memset(G, 0, (size_t)N * N * sizeof *G);
    double sum = 0.0;
    long cnt = 0;
    for (int a = 0; a < N; a++) {
        const double *da = dist + (size_t)a * N;
        if (l->mining == LARCH_MINING_BATCH_HARD) {
            int p = -1, q = -1;                 /* hardest positive, hardest negative */
            for (int j = 0; j < N; j++) {
                if (j == a) continue;
                if (y[j] == y[a]) { if (p < 0 || da[j] > da[p]) p = j; }
                else if (q < 0 || da[j] < da[q]) q = j;
            }
            if (p < 0 || q < 0) continue;
            double g, t = triplet_term(l, da[p] - da[q], &g);
            sum += t;
            cnt++;
            G[(size_t)a * N + p] += g;
            G[(size_t)a * N + q] -= g;
        } else {
            for (int p = 0; p < N; p++) {
                if (p == a || y[p] != y[a]) continue;
                for (int q = 0; q < N; q++) {
                    if (y[q] == y[a]) continue;
                    double g, t = triplet_term(l, da[p] - da[q], &g);
                    if (!(t > 0.0)) continue;   /* BA+: the mean over triplets that contribute */
                    sum += t;
                    cnt++;
                    G[(size_t)a * N + p] += g;
                    G[(size_t)a * N + q] -= g;
                }
            }
        }
    }
    if (cnt == 0) { memset(dX, 0, (size_t)N * d * sizeof *dX); return 0.0; }
    for (size_t i = 0; i < (size_t)N * N; i++) G[i] /= (double)cnt;
    dist_backward(X, N, d, dist, G, dX);
    return sum / (double)cnt;
}

static double contrastive(const larch_loss *l, const float *X, const int32_t *y, int N, int d, double *dX)
{
    memset(dX, 0, (size_t)N * d * sizeof *dX);
    double P = 0.5 * (double)N * (N - 1), sum = 0.0;
    if (P == 0.0) return 0.0;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) {
            const float *a = X + (size_t)i * d, *b = X + (size_t)j * d;
            double s = 0.0, c;
            for (int k = 0; k < d; k++) { double t = (double)a[k] - b[k]; s += t * t; }
            if (y[i] == y[j]) {                 /* d^2: gradient 2 (x_i - x_j) */
                sum += s;
                c = 2.0;
            } else {                            /* max(0, m - d)^2: -2 (m - d) (x_i - x_j) / d */
                double dd = sqrt(s + DIST_EPS);
                if (dd >= l->margin) continue;
                sum += (l->margin - dd) * (l->margin - dd);
                c = -2.0 * (l->margin - dd) / dd;
            }
            c /= P;
            for (int k = 0; k < d; k++) {
                double t = c * ((double)a[k] - b[k]);
                dX[(size_t)i * d + k] += t;
                dX[(size_t)j * d + k] -= t;
            }
        }
    return sum / P;
}

static double supcon(const larch_loss *l, const float *X, const int32_t *y, int N, int d, double *S, double *dX)
{
    memset(dX, 0, (size_t)N * d * sizeof *dX);
    const double tau = l->temperature;
    int na = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            if (j != i && y[j] == y[i]) { na++; break; }
    if (na == 0) return 0.0;
    double sum = 0.0;
    for (int i = 0; i < N; i++) {
        double *s = S + (size_t)i * N, smax = -INFINITY, pos = 0.0;
        int np = 0;
        const float *xi = X + (size_t)i * d;
        for (int j = 0; j < N; j++) {
            if (j == i) continue;
            const float *xj = X + (size_t)j * d;
            double t = 0.0;
            for (int k = 0; k < d; k++) t += (double)xi[k] * xj[k];
            s[j] = t / tau;
            if (s[j] > smax) smax = s[j];
            if (y[j] == y[i]) { np++; pos += s[j]; }
        }
        if (np == 0) continue;                  /* no positive: not an anchor */
        double z = 0.0;
        for (int j = 0; j < N; j++) if (j != i) z += exp(s[j] - smax);
        double lse = smax + log(z);
        sum += lse - pos / np;
        for (int j = 0; j < N; j++) {           /* dL/ds_ij = (softmax_ij - [j in P(i)] / |P(i)|) / na */
            if (j == i) continue;
            double g = (exp(s[j] - lse) - (y[j] == y[i] ? 1.0 / np : 0.0)) / na / tau;
            const float *xj = X + (size_t)j * d;
            for (int k = 0; k < d; k++) {
                dX[(size_t)i * d + k] += g * xj[k];
                dX[(size_t)j * d + k] += g * xi[k];
            }
        }
    }
    return sum / na;
}

/* ---- per-sample losses ---- */

static void center_loss(larch_model *m, const larch_loss *l, const float *z, const int32_t *y, int n, int d,
                        float scale, float *dz, int acc, larch_loss_stats *st)
{
    const float *C = larch_layer_buffer(m->loss_centers, l->centers);
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * d;
        int ok = y[i] >= 0 && y[i] < l->classes;   /* labels beyond `classes` have no center: not scored */
        const float *c = ok ? C + (size_t)y[i] * d : NULL;
        double s = 0.0;
        for (int k = 0; k < d; k++) {
            float t = ok ? zi[k] - c[k] : 0.0f;
            s += (double)t * t;
            if (dz) larch_store(&dz[(size_t)i * d + k], scale * t, acc);
        }
        st->loss_sum += 0.5 * s;
        st->count++;
    }
}

/* Wen et al. 2016, eq. 4: c_j -= alpha sum_{y_i = j} (c_j - x_i) / (1 + n_j). */
static void center_update(larch_model *m, const larch_loss *l, scored s, int d, char *ws)
{
    float *C = larch_layer_buffer(m->loss_centers, l->centers);
    double *delta = (double *)ws, *cnt = (double *)(ws + al(8 * (size_t)l->classes * d));
    memset(delta, 0, (size_t)l->classes * d * sizeof *delta);
    memset(cnt, 0, (size_t)l->classes * sizeof *cnt);
    for (int i = 0; i < s.N; i++) {
        int j = s.y[i];
        if (j < 0 || j >= l->classes) continue;
        cnt[j] += 1.0;
        for (int k = 0; k < d; k++) delta[(size_t)j * d + k] += (double)C[(size_t)j * d + k] - s.X[(size_t)i * d + k];
    }
    for (int j = 0; j < l->classes; j++) {
        if (cnt[j] == 0.0) continue;
        for (int k = 0; k < d; k++)
            C[(size_t)j * d + k] -= (float)(l->alpha * delta[(size_t)j * d + k] / (1.0 + cnt[j]));
    }
}

static void arcface(const larch_loss *l, const float *z, const int32_t *y, int n, int C, float scale, float *dz,
                    int acc, larch_loss_stats *st)
{
    const double m = l->margin, s = l->scale, cos_m = cos(m), sin_m = sin(m);
    const double th = cos(M_PI - m), mm = sin(M_PI - m) * m;   /* insightface's threshold and fallback */
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * C;
        int yi = y[i], arg = 0;
        if (yi < 0 || yi >= C) {                /* a label without a class output: not scored */
            for (int j = 0; dz && j < C; j++) larch_store(&dz[(size_t)i * C + j], 0.0f, acc);
            continue;
        }
        for (int j = 1; j < C; j++) if (zi[j] > zi[arg]) arg = j;
        double c = zi[yi] > 1.0f ? 1.0 : zi[yi] < -1.0f ? -1.0 : zi[yi];
        double sn = sqrt(1.0 - c * c), phi, dphi;
        if (c > th) {                           /* cos(theta + m) = c cos m - sin(theta) sin m */
            phi = c * cos_m - sn * sin_m;
            dphi = cos_m + sin_m * c / (sn > 1e-6 ? sn : 1e-6);
        } else {                                /* theta + m > pi: cos(theta) - m sin(m) */
            phi = c - mm;
            dphi = 1.0;
        }
        double lmax = s * phi;
        for (int j = 0; j < C; j++) if (j != yi && s * zi[j] > lmax) lmax = s * zi[j];
        double sum = 0.0;
        for (int j = 0; j < C; j++) sum += exp((j == yi ? s * phi : s * zi[j]) - lmax);
        double lse = lmax + log(sum);
        st->loss_sum += lse - s * phi;
        st->correct += arg == yi;
        st->count++;
        if (!dz) continue;
        for (int j = 0; j < C; j++) {
            double p = exp((j == yi ? s * phi : s * zi[j]) - lse);
            double g = j == yi ? s * (p - 1.0) * dphi : s * p;
            larch_store(&dz[(size_t)i * C + j], (float)(scale * g), acc);
        }
    }
}

/* ---- entry ---- */

void larch_metric_loss(larch_model *m, const larch_loss *l, const larch_batch *b, float grad_scale, float scale,
                       float *dz, int acc, larch_loss_stats *st)
{
    int d = (int)larch_shape_size(larch_model_node_shape(m, l->node));
    const float *z = m->node_y[l->node];
    const int32_t *y = b->label[l->target];
    char *ws = m->loss_ws;
    if (l->type == LARCH_LOSS_ARCFACE) { arcface(l, z, y, b->n, d, scale, dz, acc, st); return; }
    if (l->type == LARCH_LOSS_CENTER) {
        center_loss(m, l, z, y, b->n, d, scale, dz, acc, st);
        if (grad_scale == 0.0f) return;         /* evaluation: the centers stay */
        scored s = {z, y, b->n, 0};
        if (gathers(m, l, 1)) s = gather(m, z, y, b->n, b->sample0, d, &ws);
        center_update(m, l, s, d, ws);
        return;
    }
    scored s = {z, y, b->n, 0};
    if (gathers(m, l, grad_scale != 0.0f)) s = gather(m, z, y, b->n, b->sample0, d, &ws);
    size_t N = (size_t)s.N;
    double *A = (double *)ws, *G = (double *)(ws + al(8 * N * N)), *dX = (double *)(ws + 2 * al(8 * N * N));
    double L = 0.0;
    if (s.N > 0) {
        if (l->type == LARCH_LOSS_TRIPLET) L = triplet(l, s.X, s.y, s.N, d, A, G, dX);
        else if (l->type == LARCH_LOSS_CONTRASTIVE) L = contrastive(l, s.X, s.y, s.N, d, dX);
        else L = supcon(l, s.X, s.y, s.N, d, A, dX);
    }
    st->loss_sum += L * b->n;                   /* the global mean, as a sum over this rank's samples */
    st->count += b->n;
    if (!dz) return;
    double f = (double)scale * s.N;             /* grad_scale * weight * N: weight * dL/dz at 1 / global batch */
    for (int i = 0; i < b->n; i++)
        for (int k = 0; k < d; k++)
            larch_store(&dz[(size_t)i * d + k], (float)(f * dX[(size_t)(s.off + i) * d + k]), acc);
}
