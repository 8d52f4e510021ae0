/* ntk.h - the empirical neural tangent kernel over the ranks (docs/ntk.md).
 * The Jacobian rows come from nn/ntk.c; this file spreads them over ranks
 * and assembles Theta = J J^T without gathering J in one place. */
#ifndef LARCH_TRAIN_NTK_H
#define LARCH_TRAIN_NTK_H

#include "larch/comm.h"
#include "larch/model.h"

/* theta (nK x nK, row-major, K = outputs of `node`): Theta[iK + k, jK + l]
 * = J_k(x_i) . J_l(x_j), the dot products of the (col_scale-weighted)
 * Jacobian rows of the n samples x (every rank passes all of them).
 * Samples are cut into blocks of `block` (the last may be smaller); block
 * b belongs to rank b mod size, which computes its Jacobian rows. Each
 * rank in turn broadcasts its rows; every rank multiplies its own blocks
 * with the broadcast ones (one sgemm per block pair A <= B), so a rank
 * holds its own rows and one other rank's at a time. The blocks of theta
 * are summed over ranks (each written by one rank, zeros elsewhere), so
 * every rank returns the same theta, bit for bit, on any number of ranks:
 * each entry comes from the same sgemm shapes. Collective; agrees on
 * failures (larch_comm_check). jac_seconds/gemm_seconds (may be NULL):
 * this rank's time in the Jacobian and in the products. */
larch_status larch_ntk_empirical(larch_model *m, int node, const float *x, int n, const float *col_scale, int block,
                                 const larch_comm *comm, double *theta, double *jac_seconds, double *gemm_seconds);

#endif
