/* larch/comm.h - the narrow communication interface of the distributed
 * driver. src/parallel/comm.c is the only file that includes mpi.h; the engine
 * never calls it (docs/design.md, decision 3). One process without mpirun is a
 * world of size 1 (MPI singleton).
 *
 * Failure agreement (docs/design.md, decision 5): at known points every rank calls
 * larch_comm_check with its local status. If any rank failed, every rank
 * returns the failure, with the message of the lowest failing rank prefixed
 * by "rank R: ", so no rank is left waiting in a later collective. A rank
 * that failed keeps entering the same collectives as the others until the
 * next agreement. If an agreement itself fails on a rank (an MPI error), that
 * rank cannot learn what the others decided: its communicator is then
 * "broken" (larch_comm_broken), every later collective returns at once, and
 * the program must end the job with larch_comm_abort.
 */
#ifndef LARCH_COMM_H
#define LARCH_COMM_H

#include <stddef.h>
#include <stdint.h>
#include "larch/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct larch_comm {
    int rank, size;          /* in the data-parallel group            */
    int local_rank, local_size; /* on this node (shared memory)       */
    void *impl;              /* MPI_Comm handles, owned by comm.c     */
} larch_comm;

/* Initializes MPI if needed (thread level MULTIPLE, for the watchdog and the
 * gradient comm thread; LARCH_MPI_THREAD_LEVEL=serialized or funneled asks
 * for less, see larch_comm_threads) and describes MPI_COMM_WORLD. Reads
 * LARCH_FAULT (see larch_comm_fault). */
LARCH_API larch_status larch_comm_init(larch_comm *c, int *argc, char ***argv);
/* Finalizes MPI if larch_comm_init initialized it. On a communicator made by
 * larch_comm_split it only frees that communicator. */
LARCH_API void larch_comm_finalize(larch_comm *c);
/* Splits `parent` into groups (MPI_Comm_split, collective over parent):
 * the ranks with the same `color` form one communicator in *out, ranked in
 * parent order. Each group has its own watchdog, lane and agreement state,
 * so a failure agreed inside one group leaves the others alone (dist.groups,
 * docs/groups.md). LARCH_FAULT's RANK stays a rank of the parent, and
 * local_rank / local_size stay the parent's (the ranks of the whole job on
 * this node share its cores: train.threads = 0 divides them by it). Free it
 * with larch_comm_finalize. */
LARCH_API larch_status larch_comm_split(const larch_comm *parent, int color, larch_comm *out);
/* A barrier that sleeps (poll_s seconds between tests) instead of spinning:
 * for ranks that finished their work early and wait for the others. */
LARCH_API larch_status larch_comm_idle_barrier(const larch_comm *c, double poll_s);
/* Ends every rank of the job now (exit status `code`), after printing `msg`
 * on stderr. For failures that cannot be agreed on. */
LARCH_API void larch_comm_abort(const larch_comm *c, int code, const char *msg);

LARCH_API larch_status larch_comm_check(const larch_comm *c, larch_status local);
/* One collective that both sums buf[0..n) (n <= 64) over the ranks and
 * agrees on `local` as larch_comm_check does (which it calls only when some
 * rank failed). `what` names the collective for the watchdog. */
LARCH_API larch_status larch_comm_agree_sum(const larch_comm *c, const char *what, larch_status local,
                                            double *buf, int n);
/* Whether an agreement failed on this rank (see above). */
LARCH_API int larch_comm_broken(const larch_comm *c);
LARCH_API larch_status larch_comm_allreduce_f64(const larch_comm *c, double *buf, int n);
LARCH_API larch_status larch_comm_allreduce_f32(const larch_comm *c, float *buf, size_t n);
LARCH_API larch_status larch_comm_max_f64(const larch_comm *c, double *buf, int n);
LARCH_API larch_status larch_comm_bcast(const larch_comm *c, void *buf, size_t bytes, int root);
LARCH_API larch_status larch_comm_barrier(const larch_comm *c);
LARCH_API double larch_comm_wtime(void);

/* The watchdog (dist.timeout_s): a thread that, once one of the collectives
 * above has waited longer than timeout_s seconds, asks the other ranks'
 * watchdogs where they are, prints which ranks did not answer (stopped,
 * hung) or have not arrived, with the collective and the step, and ends the
 * job with MPI_Abort. timeout_s <= 0 stops it. Not collective. */
LARCH_API larch_status larch_comm_watchdog(const larch_comm *c, double timeout_s);
/* The training step in progress (1 for the first), for the watchdog's
 * messages and the fault switch. */
LARCH_API void larch_comm_set_step(const larch_comm *c, long step);
/* Testing aid: LARCH_FAULT=RANK:STEP:SITE in the environment (read by
 * larch_comm_init) makes this return a failure on rank RANK during step STEP
 * at SITE (grad_sum, hook, gather, loss, eval, save, comm_thread:
 * docs/distributed.md; safe to call from any thread),
 * and LARCH_OK everywhere else; the code at each site calls it. The site
 * `loss` is checked inside larch_comm_agree_sum(what = "loss") and fails that
 * agreement as an MPI error would. */
LARCH_API larch_status larch_comm_fault(const larch_comm *c, const char *site);
/* The communicator as an MPI_Comm * (for parallel I/O in src/io); the
 * caller casts it. Valid until larch_comm_finalize. */
LARCH_API const void *larch_comm_mpi(const larch_comm *c);

/* Non-blocking sums of float buffers (gradient buckets): start any number,
 * let MPI progress them between pieces of computation, then wait for all.
 * The buffers must not be touched until larch_comm_waitall returns. */
LARCH_API larch_status larch_comm_iallreduce_f32(const larch_comm *c, float *buf, size_t n);
LARCH_API larch_status larch_comm_progress(const larch_comm *c);
LARCH_API larch_status larch_comm_waitall(const larch_comm *c);
/* The same for 16-bit floats (fp16, or bf16 when `bf16`), summed in float
 * and rounded back to 16 bits at each step of the reduction. */
LARCH_API larch_status larch_comm_iallreduce_16(const larch_comm *c, uint16_t *buf, size_t n, int bf16);

/* The gradient comm thread (dist.comm_thread, src/parallel/grad_sync.c):
 * whether MPI provides MPI_THREAD_MULTIPLE (it must, for a second thread to
 * call MPI), and a blocking in-place sum of n values (kind 0: float, 1: fp16,
 * 2: bf16, as larch_comm_iallreduce_16) on the "lane", a communicator of its
 * own, so that its collectives never interleave with the main thread's. Only
 * one thread may use the lane, and every rank must sum the same buffers in
 * the same order; the result is the same as larch_comm_allreduce_f32's. */
LARCH_API int larch_comm_threads(const larch_comm *c);
LARCH_API larch_status larch_comm_lane_allreduce(const larch_comm *c, void *buf, size_t n, int kind);

/* Optimizer-state sharding: rank r receives the sum over ranks of
 * send[displ_r .. displ_r + counts[r]) in recv (displacements are the
 * prefix sums of counts); then every rank's slice of buf, in place, goes
 * to all ranks. */
LARCH_API larch_status larch_comm_reduce_scatter_f32(const larch_comm *c, const float *send, float *recv, const int *counts);
/* Every rank's `bytes` bytes of send, in rank order, into recv (size *
 * bytes) on every rank (the global batch of the pairwise losses). */
LARCH_API larch_status larch_comm_allgather(const larch_comm *c, const void *send, size_t bytes, void *recv);
LARCH_API larch_status larch_comm_allgatherv_f32(const larch_comm *c, float *buf, const int *counts, const int *displs);

#ifdef __cplusplus
}
#endif
#endif
