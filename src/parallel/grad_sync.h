/* grad_sync.h - gradient averaging across ranks in buckets that overlap
 * backward (internal to src/parallel).
 *
 * The trainable ranges of the flat gradient buffer are cut into buckets from
 * its end (the last layers' gradients are ready first): the first bucket
 * holds about first_mb MiB, the others about bucket_mb (whole tensors, as
 * PyTorch DDP). Frozen tensors (lr_mult 0) are in no bucket: their
 * gradients are neither computed nor read, so they are not summed, and a
 * frozen tensor between trainable ones ends a bucket. larch_grad_sync_plan
 * rebuilds the buckets when the frozen set changes (a thaw).
 * During the last backward of a step the model reports each layer's
 * finished gradients; a bucket whose gradients are all final starts a
 * non-blocking allreduce at once, and every report lets MPI progress the
 * ones in flight (`overlap` LARCH_SYNC_IALLREDUCE); or, with
 * LARCH_SYNC_THREAD, hands it to a communication thread that sums the
 * buckets one after another with blocking allreduces on a communicator of
 * its own (the same calls, so the same sums, as LARCH_SYNC_BLOCKING: Open
 * MPI 4.1's MPI_Iallreduce is much slower than its MPI_Allreduce;
 * docs/distributed.md, "Overlap"). Without MPI_THREAD_MULTIPLE the thread
 * mode falls back to non-blocking sums. The hand-off allocates nothing; the
 * thread is started by create and joined by free.
 * larch_grad_sync_finish starts what is left and waits.
 * All ranks run the same graph, so buckets start in the same order on every
 * rank, as MPI requires. `compress` 1 (fp16) or 2 (bf16) sends each bucket
 * as 16-bit floats, summed in float and rounded to 16 bits at each step of
 * the reduction (error: docs/distributed.md). With sharding the sum is one reduce-scatter after
 * backward (no overlap) of the whole buffer, frozen tensors included: the
 * equal per-rank slices of the optimizer need the full layout.
 */
#ifndef LARCH_GRAD_SYNC_H
#define LARCH_GRAD_SYNC_H

#include "larch/comm.h"
#include "larch/model.h"

typedef struct grad_sync grad_sync;

/* `overlap` of larch_grad_sync_create */
enum { LARCH_SYNC_BLOCKING = 0, LARCH_SYNC_IALLREDUCE = 1, LARCH_SYNC_THREAD = 2 };

larch_status larch_grad_sync_create(grad_sync **out, const larch_comm *comm, larch_model *m, double bucket_mb,
                              double first_mb, int overlap, int shard, int compress);
void larch_grad_sync_free(grad_sync *g);
/* Arms the hook for the backward that follows (the last micro-batch). */
void larch_grad_sync_begin(grad_sync *g);
/* Starts the buckets not started yet and waits for all; the gradient buffer
 * then holds the sums over ranks. */
larch_status larch_grad_sync_finish(grad_sync *g);
/* Rebuilds the buckets from the parameters' current lr_mult (call between
 * steps, on every rank alike: after the optimizer assigns its groups, and
 * after a thaw). Allocates nothing and cannot fail. */
void larch_grad_sync_plan(grad_sync *g);
/* Buckets per step (sharded: 1, the reduce-scatter), and the bytes each rank
 * hands to the gradient sums per step (2 per value when compressed; 0 on
 * one rank, where nothing is sent). */
int larch_grad_sync_buckets(const grad_sync *g);
size_t larch_grad_sync_bytes(const grad_sync *g);

/* Optimizer-state sharding (ZeRO stage 1, `shard` at create): the flat
 * buffer is cut into one equal slice per rank; larch_grad_sync_finish then
 * reduce-scatters, so each rank holds the summed gradients of its slice
 * only, its optimizer steps that slice, and larch_grad_sync_gather sends every
 * rank's updated parameters to all. */
void larch_grad_sync_shard_range(const grad_sync *g, size_t *lo, size_t *hi);
larch_status larch_grad_sync_gather(grad_sync *g);
/* Seconds spent waiting in larch_grad_sync_finish since the last call (the
 * communication not hidden behind backward), the steps it covers, and how
 * many buckets started during backward in those steps (the others started
 * in larch_grad_sync_finish); steps and early may be NULL. */
double larch_grad_sync_take_wait(grad_sync *g, long *steps, long *early);

#endif
