/* run_metrics.h - a run directory's metrics.jsonl read back (json-c) for
 * `larch plot` and the HTML run report. Errors are returned as text in
 * `err` (never through larch_fail: the trainer refreshes its report while a
 * run's own error message may be pending). */
#ifndef LARCH_RUN_METRICS_H
#define LARCH_RUN_METRICS_H

#include "train/phase_times.h"

#include <stddef.h>

#define LARCH_RM_TASKS 16

typedef struct larch_rm_train {        /* one train record */
    long step;
    double epoch, time, loss, lr, samples_per_s;
    double task_loss[LARCH_RM_TASKS];  /* multi-task runs: NaN where absent */
    int has_phases, slowest_rank;
    double phases[LARCH_PH_N], slowest[LARCH_PH_N];
} larch_rm_train;

typedef struct larch_rm_eval {         /* one evaluation record (one task) */
    long step;
    double epoch, time, loss, accuracy; /* time: of the last train record at or before step; accuracy NaN: none */
    int task;
} larch_rm_eval;

typedef struct larch_run_metrics {
    char dir[1024], name[256];         /* the run directory and its base name */
    larch_rm_train *train;
    larch_rm_eval *eval;
    int n_train, n_eval, n_tasks;
    char tasks[LARCH_RM_TASKS][64];    /* task names, in order of appearance */
    int multi_task;                    /* train records carry per-task losses */
    long bad_lines;                    /* lines that did not parse (a run being written) */
} larch_run_metrics;

/* Reads DIR/metrics.jsonl. Returns 0, or -1 with a message in err. */
int larch_run_metrics_read(const char *dir, larch_run_metrics *m, char *err, size_t err_len);
void larch_run_metrics_free(larch_run_metrics *m);

#endif
