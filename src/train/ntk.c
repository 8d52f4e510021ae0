/* ntk.c - the empirical NTK assembled over the ranks (train/ntk.h). */
#include "train/ntk.h"
#include "nn/ntk.h"
#include "core/blas.h"
#include "core/threads.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Rows of J held by `rank`, and the row offset of block b in its holder's buffer. */
static size_t rank_rows(int n, int block, int K, int size, int rank)
{
    size_t rows = 0;
    int nb = (n + block - 1) / block;
    for (int b = rank; b < nb; b += size) {
        int lo = b * block, hi = lo + block < n ? lo + block : n;
        rows += (size_t)(hi - lo) * K;
    }
    return rows;
}

typedef struct pair_t { int loA, nA; size_t offA; int loB, nB; size_t offB; } pair_t;
typedef struct pair_ctx {
    const pair_t *pairs;
    const float *JA, *JB;
    size_t P;
    int K;
    size_t NK;
    int block;
    double *theta;
    int failed;
} pair_ctx;

/* theta blocks (A, B) and (B, A) = J_A J_B^T for pairs [lo, hi). */
static void pair_products(void *vc, size_t lo, size_t hi)
{
    pair_ctx *c = vc;
    const size_t P = c->P, NK = c->NK;
    const int K = c->K;
    float *C = malloc((size_t)c->block * K * c->block * K * sizeof *C);
    if (!C) { c->failed = 1; return; }
    for (size_t q = lo; q < hi; q++) {
        const pair_t *p = &c->pairs[q];
        int mA = p->nA * K, mB = p->nB * K;
        larch_sgemm(0, 1, mA, mB, (int)P, 1.0f, c->JA + p->offA * P, (int)P, c->JB + p->offB * P, (int)P, 0.0f, C, mB);
        for (int i = 0; i < mA; i++)
            for (int j = 0; j < mB; j++) {
                size_t gi = (size_t)p->loA * K + i, gj = (size_t)p->loB * K + j;
                c->theta[gi * NK + gj] = C[(size_t)i * mB + j];
                c->theta[gj * NK + gi] = C[(size_t)i * mB + j];
            }
    }
    free(C);
}

larch_status larch_ntk_empirical(larch_model *m, int node, const float *x, int n, const float *col_scale, int block,
                                 const larch_comm *comm, double *theta, double *jac_seconds, double *gemm_seconds)
{
    const int R = comm->size, me = comm->rank;
    const int K = (int)larch_shape_size(larch_model_node_shape(m, node));
    size_t P = 0;
    larch_model_flat_params(m, &P);
    const size_t NK = (size_t)n * K, in = larch_shape_size(larch_model_input_shape(m));
    larch_status s = LARCH_OK;
    if (block < 1) s = larch_fail(LARCH_ERR_INVALID, "ntk: block %d < 1", block);
    else if (NK * NK > (size_t)INT_MAX)
        s = larch_fail(LARCH_ERR_INVALID, "ntk: %d samples x %d outputs: the kernel has more than 2^31-1 entries", n, K);
    size_t mine = s ? 0 : rank_rows(n, block, K, R, me), most = 0;
    for (int r = 0; !s && r < R; r++) {
        size_t rr = rank_rows(n, block, K, R, r);
        if (r != me && rr > most) most = rr;
    }
    float *J = NULL, *Jo = NULL;
    if (!s) {
        J = malloc((mine ? mine : 1) * P * sizeof *J);
        Jo = R > 1 ? malloc((most ? most : 1) * P * sizeof *Jo) : NULL;
        if (!J || (R > 1 && !Jo))
            s = larch_fail(LARCH_ERR_NOMEM, "ntk: Jacobian rows (%zu + %zu rows of %zu parameters, %.1f GiB)", mine, most, P,
                           (double)(mine + most) * P * 4.0 / (1u << 30));
    }
    double t0 = larch_comm_wtime();
    int nb = block > 0 ? (n + block - 1) / block : 0;
    /* this rank's Jacobian rows, block after block */
    size_t off = 0;
    for (int b = me; !s && b < nb; b += R) {
        int lo = b * block, hi = lo + block < n ? lo + block : n;
        s = larch_ntk_jacobian(m, node, x + (size_t)lo * in, hi - lo, col_scale, J + off * P, P);
        off += (size_t)(hi - lo) * K;
    }
    double t1 = larch_comm_wtime();
    if (jac_seconds) *jac_seconds = t1 - t0;
    s = larch_comm_check(comm, s);
    if (!s) memset(theta, 0, NK * NK * sizeof *theta);
    /* The products run OpenBLAS on one thread each, block pairs in parallel:
     * a multithreaded sgemm of these shapes (small m, n; k = parameters)
     * splits k over its threads, which changes the rounding with the
     * thread count, and the thread count per rank changes with the ranks. */
    double tg = 0.0;
    int nthr = larch_threads_get();
    pair_t *pairs = s ? NULL : malloc(((size_t)nb * nb + 1) * sizeof *pairs);
    if (!s && !pairs) s = larch_fail(LARCH_ERR_NOMEM, "ntk: block pairs");
    larch_threads_set(1);
    for (int r = 0; !s && r < R; r++) {
        size_t rr = rank_rows(n, block, K, R, r);
        float *Jr = r == me ? J : Jo;
        s = larch_comm_bcast(comm, Jr, rr * P * sizeof *Jr, r);
        double tg0 = larch_comm_wtime();
        size_t offA = 0, np = 0;
        for (int A = me; A < nb; A += R) {
            int loA = A * block, nA = (loA + block < n ? loA + block : n) - loA;
            size_t offB = 0;
            for (int B = r; B < nb; B += R) {
                int loB = B * block, nB = (loB + block < n ? loB + block : n) - loB;
                if (A <= B) pairs[np++] = (pair_t){loA, nA, offA, loB, nB, offB};
                offB += (size_t)nB * K;
            }
            offA += (size_t)nA * K;
        }
        pair_ctx c = {pairs, J, Jr, P, K, NK, block, theta, 0};
        if (!s) larch_parallel_for(np, 1, pair_products, &c);
        if (!s && c.failed) s = larch_fail(LARCH_ERR_NOMEM, "ntk: product blocks");
        tg += larch_comm_wtime() - tg0;
    }
    larch_threads_set(nthr);
    free(pairs);
    if (gemm_seconds) *gemm_seconds = tg;
    larch_threads_set(nthr);
    free(J);
    free(Jo);
    s = larch_comm_check(comm, s);
    if (!s) s = larch_comm_allreduce_f64(comm, theta, (int)(NK * NK));
    return larch_comm_check(comm, s);
}
