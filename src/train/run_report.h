/* run_report.h - the run's record for people: DIR/run.json (how the run was
 * started, on what machine, and at the end its status and time totals) and
 * DIR/report.html, one self-contained page (inline SVG curves, no network)
 * built from DIR/run.json, DIR/metrics.jsonl, DIR/config.yaml and the
 * checkpoint directory. `larch train` writes both (rank 0) at its start, at
 * every evaluation and at its end; `larch report` rebuilds the page.
 * Failures come back as text in err (never through larch_fail: a run's own
 * error message may be pending) and never stop training. */
#ifndef LARCH_RUN_REPORT_H
#define LARCH_RUN_REPORT_H

#include "train/phase_times.h"

#include <stddef.h>

/* The command line recorded in run.json (the CLI calls it before MPI starts;
 * a C program's run records none). */
void larch_report_set_command(int argc, char **argv);

typedef struct larch_report_info {
    int ranks, threads, global_batch;
    long params, total_steps, steps_per_epoch, start_step;
    const char *blas_core, *ckpt_dir;   /* ckpt_dir "" : none */
} larch_report_info;

typedef struct larch_report_totals {   /* the loop's totals at its end (rank 0) */
    const char *status;                /* "finished", or "failed: ...", "stopped: ..." */
    long steps;
    double wall_s, samples_per_s, phases[LARCH_PH_N];
} larch_report_totals;

/* DIR/run.json with status "running" (at the start of the loop). */
int larch_report_start(const char *dir, const larch_report_info *info, char *err, size_t err_len);
/* DIR/run.json completed with the totals (at the end, any outcome). */
int larch_report_finish(const char *dir, const larch_report_totals *t, char *err, size_t err_len);
/* The HTML report of run directory DIR, written to `out` (NULL:
 * DIR/report.html) through a temporary file and a rename. */
int larch_report_write(const char *dir, const char *out, char *err, size_t err_len);

#endif
