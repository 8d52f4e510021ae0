/* phase_times.h - where a training window's time goes, per rank: data wait,
 * compute (forward + backward), sync wait, optimizer, evaluation and
 * checkpoints. The step only adds to plain doubles (no allocation, no I/O);
 * at each log record one small allgather brings every rank's window to all,
 * and rank 0 writes its own and the slowest rank's into metrics.jsonl. */
#ifndef LARCH_PHASE_TIMES_H
#define LARCH_PHASE_TIMES_H

#include "larch/comm.h"

#include <stdio.h>

enum { LARCH_PH_DATA, LARCH_PH_COMPUTE, LARCH_PH_SYNC, LARCH_PH_OPTIM, LARCH_PH_EVAL, LARCH_PH_CKPT, LARCH_PH_N };

/* The JSON keys, in the order above ("data_s", ...). */
extern const char *const larch_phase_keys[LARCH_PH_N];

typedef struct larch_phases {
    double win[LARCH_PH_N];   /* this rank's seconds since the last record      */
    double tot[LARCH_PH_N];   /* this rank's seconds since the loop started     */
    double *all;              /* world x LARCH_PH_N, filled by larch_phases_gather */
    int world, rank;
    int slowest;              /* after a gather: the rank with the largest sum   */
} larch_phases;

/* Plan time: the gather buffer. */
larch_status larch_phases_init(larch_phases *p, int rank, int world);
void larch_phases_free(larch_phases *p);

static inline void larch_phases_add(larch_phases *p, int phase, double seconds)
{
    p->win[phase] += seconds;
    p->tot[phase] += seconds;
}

/* Collective (every rank, at the same log record): every rank's window to
 * all, the slowest rank found, and the window restarted. */
larch_status larch_phases_gather(larch_phases *p, const larch_comm *c);

/* `, "phases": {"rank0": {...}, "slowest": {"rank": k, ...}}` for the last
 * gather (seconds in the window). */
void larch_phases_write_json(const larch_phases *p, FILE *f);

#endif
