/* mpi_ntk.c - the empirical NTK assembled over 2 and 4 ranks (rows spread,
 * blocks broadcast; src/train/ntk.c) equals, bit for bit, the kernel one
 * process computes alone (a world of one), for several block sizes
 * (including blocks that leave ranks without samples and a last short
 * block), and the kernel is symmetric and matches J J^T in double. */
#include "check.h"
#include "nn/ntk.h"
#include "train/ntk.h"
#include "larch/larch.h"

#include <stdlib.h>

int main(int argc, char **argv)
{
    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) { fprintf(stderr, "MPI: %s\n", larch_errmsg()); return 1; }
    larch_node *l = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse("[{type: dense, name: a, units: 48}, {type: relu}, {type: dense, name: b, units: 32}, "
                             "{type: tanh}, {type: dense, name: o, units: 3}]", "<layers>", &l));
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 10}, l, NULL, NULL, 7));
    CHECK_OK(larch_model_plan(m, 1));
    enum { N = 11, K = 3, D = 10 };
    float x[N * D];
    larch_rng r;
    larch_rng_init(&r, 3, LARCH_RNG_USER, 1, 0);
    for (int i = 0; i < N * D; i++) x[i] = larch_rng_normal(&r);
    const size_t NK = (size_t)N * K;
    double *dist = malloc(NK * NK * sizeof *dist), *solo = malloc(NK * NK * sizeof *solo);
    larch_comm one = {.rank = 0, .size = 1, .local_rank = 0, .local_size = 1, .impl = NULL};
    int blocks[] = {1, 3, 4, 16};
    for (int q = 0; q < 4; q++) {
        CHECK_OK(larch_ntk_empirical(m, 5, x, N, NULL, blocks[q], &comm, dist, NULL, NULL));
        CHECK_OK(larch_ntk_empirical(m, 5, x, N, NULL, blocks[q], &one, solo, NULL, NULL));
        long diff = 0, asym = 0;
        for (size_t i = 0; i < NK * NK; i++) diff += dist[i] != solo[i];
        for (size_t i = 0; i < NK; i++)
            for (size_t j = 0; j < NK; j++) asym += dist[i * NK + j] != dist[j * NK + i];
        CHECK(diff == 0, "block %d on %d ranks: %ld of %zu entries differ from one process's", blocks[q], comm.size, diff, NK * NK);
        CHECK(asym == 0, "block %d: %ld asymmetric entries", blocks[q], asym);
    }
    /* against J J^T in double */
    size_t P = 0;
    larch_model_flat_params(m, &P);
    float *J = malloc(NK * P * sizeof *J);
    CHECK_OK(larch_ntk_jacobian(m, 5, x, N, NULL, J, P));
    double worst = 0;
    for (size_t i = 0; i < NK; i++)
        for (size_t j = 0; j < NK; j++) {
            double v = 0;
            for (size_t t = 0; t < P; t++) v += (double)J[i * P + t] * J[j * P + t];
            double e = fabs(v - dist[i * NK + j]) / sqrt(dist[i * NK + i] * dist[j * NK + j]);
            if (e > worst) worst = e;
        }
    CHECK(worst < 1e-5, "theta differs from J J^T by %g (relative to sqrt(theta_ii theta_jj))", worst);
    /* a failure on one rank reaches all (an invalid block) */
    CHECK_FAIL(larch_ntk_empirical(m, 5, x, N, NULL, 0, &comm, dist, NULL, NULL), LARCH_ERR_INVALID, "block 0 < 1");
    free(J);
    free(dist);
    free(solo);
    larch_model_free(m);
    larch_node_free(l);
    int failed = check_failures;
    if (comm.rank == 0) printf("mpi_ntk on %d ranks: %d checks, %d failed\n", comm.size, check_count, failed);
    larch_comm_finalize(&comm);
    return failed != 0;
}
