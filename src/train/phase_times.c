/* phase_times.c - the per-phase time breakdown of metrics.jsonl (see
 * phase_times.h). */
#include "train/phase_times.h"

#include <stdlib.h>
#include <string.h>

const char *const larch_phase_keys[LARCH_PH_N] = {"data_s", "compute_s", "sync_s", "optim_s", "eval_s", "ckpt_s"};

larch_status larch_phases_init(larch_phases *p, int rank, int world)
{
    memset(p, 0, sizeof *p);
    p->rank = rank;
    p->world = world > 0 ? world : 1;
    p->all = calloc((size_t)p->world * LARCH_PH_N, sizeof *p->all);
    if (!p->all) return larch_fail(LARCH_ERR_NOMEM, "out of memory (phase times of %d ranks)", p->world);
    return LARCH_OK;
}

void larch_phases_free(larch_phases *p)
{
    free(p->all);
    p->all = NULL;
}

larch_status larch_phases_gather(larch_phases *p, const larch_comm *c)
{
    larch_status s = larch_comm_allgather(c, p->win, sizeof p->win, p->all);
    memset(p->win, 0, sizeof p->win);
    if (s) return s;
    double worst = -1.0;
    for (int r = 0; r < p->world; r++) {
        double t = 0.0;
        for (int k = 0; k < LARCH_PH_N; k++) t += p->all[r * LARCH_PH_N + k];
        if (t > worst) { worst = t; p->slowest = r; }   /* ties: the lowest rank */
    }
    return LARCH_OK;
}

static void write_one(const double *v, FILE *f)
{
    for (int k = 0; k < LARCH_PH_N; k++) fprintf(f, "%s\"%s\": %.6f", k ? ", " : "", larch_phase_keys[k], v[k]);
}

void larch_phases_write_json(const larch_phases *p, FILE *f)
{
    fprintf(f, ", \"phases\": {\"rank0\": {");
    write_one(p->all, f);
    fprintf(f, "}, \"slowest\": {\"rank\": %d, ", p->slowest);
    write_one(p->all + (size_t)p->slowest * LARCH_PH_N, f);
    fprintf(f, "}}");
}
