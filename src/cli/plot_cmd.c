/* plot_cmd.c - `larch plot RUN_DIR [RUN_DIR ...] --png FILE [--x step|epoch|time]`:
 * the curves of one or several runs' metrics.jsonl, overlaid, in one PNG
 * drawn by gnuplot (Debian: gnuplot-nox). Panels: training loss (and each
 * task's in multi-task runs), test loss and test accuracy (per task),
 * learning rate, samples/s, and rank 0's time per step by phase. */
#include "cli/cli.h"
#include "train/run_metrics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_RUNS 16

enum { X_STEP, X_EPOCH, X_TIME };

static void plot_usage(FILE *f)
{
    fprintf(f, "usage: larch plot RUN_DIR [RUN_DIR ...] --png FILE [--x step|epoch|time] [--size W,H]\n"
               "  plots the metrics.jsonl of each run (overlaid, named by their directories):\n"
               "  training loss (per task in multi-task runs), test loss, test accuracy, learning rate,\n"
               "  samples/s and rank 0's milliseconds per step by phase (data, compute, sync, optimizer)\n"
               "  --png FILE   the PNG to write (needs gnuplot; Debian: apt-get install gnuplot-nox)\n"
               "  --x AXIS     step (default), epoch or time (seconds since the loop started)\n"
               "  --size W,H   pixels (default 1500,900)\n");
}

static double xof(int axis, long step, double epoch, double time)
{
    return axis == X_STEP ? (double)step : axis == X_EPOCH ? epoch : time;
}

/* A title for gnuplot's single-quoted strings. */
static void quote_safe(char *dst, size_t len, const char *src)
{
    snprintf(dst, len, "%s", src);
    for (char *c = dst; *c; c++) if (*c == '\'' || *c == '\n') *c = ' ';
}

typedef struct curve {                  /* one line of a panel */
    const larch_run_metrics *run;
    int kind, task, phase;
    int color, dash;                    /* a run's color in every panel; tasks and phases: dashes */
    char title[400];
} curve;

enum { C_TRAIN_LOSS, C_TASK_LOSS, C_TEST_LOSS, C_TEST_ACC, C_LR, C_SPS, C_PHASE };

/* Writes the curve's points (g may be NULL: only counted); *ymin: their smallest y. */
static int curve_points(FILE *g, const curve *c, int axis, double *ymin)
{
    const larch_run_metrics *m = c->run;
    int n = 0;
    if (c->kind == C_TEST_LOSS || c->kind == C_TEST_ACC) {
        for (int i = 0; i < m->n_eval; i++) {
            const larch_rm_eval *e = &m->eval[i];
            double y = c->kind == C_TEST_LOSS ? e->loss : e->accuracy;
            if (e->task != c->task || !isfinite(y)) continue;
            if (y < *ymin) *ymin = y;
            if (g) fprintf(g, "%.9g %.9g\n", xof(axis, e->step, e->epoch, e->time), y);
            n++;
        }
    } else {
        long prev = 0;
        for (int i = 0; i < m->n_train; i++) {
            const larch_rm_train *t = &m->train[i];
            long steps = t->step - prev;
            prev = t->step;
            double y = c->kind == C_TRAIN_LOSS ? t->loss : c->kind == C_TASK_LOSS ? t->task_loss[c->task]
                     : c->kind == C_LR ? t->lr : c->kind == C_SPS ? t->samples_per_s
                     : t->has_phases && steps > 0 ? 1e3 * t->phases[c->phase] / (double)steps : NAN;
            if (!isfinite(y)) continue;
            if (y < *ymin) *ymin = y;
            if (g) fprintf(g, "%.9g %.9g\n", xof(axis, t->step, t->epoch, t->time), y);
            n++;
        }
    }
    if (g) fprintf(g, "e\n");
    return n;
}

/* One panel: a plot command with an inline data block per curve. */
static void panel(FILE *g, const char *title, const char *ylabel, int logy, const curve *cs, int n, int axis)
{
    double ymin = INFINITY;
    for (int i = 0; i < n; i++) curve_points(NULL, &cs[i], axis, &ymin);
    logy = logy && n > 0 && ymin > 0;             /* a log axis only for positive values */
    fprintf(g, "set title '%s'\nset ylabel '%s'\n%s\n", title, ylabel, logy ? "set logscale y" : "unset logscale y");
    if (n == 0) {
        fprintf(g, "set label 1 'no data' at graph 0.5,0.5 center\nplot [0:1][0:1] 2 notitle\nunset label 1\n");
        return;
    }
    fprintf(g, "plot ");
    for (int i = 0; i < n; i++)
        fprintf(g, "%s'-' using 1:2 with linespoints pt 7 ps 0.4 lw 1.5 lc %d dt %d title '%s'", i ? ", " : "", cs[i].color,
                cs[i].dash, cs[i].title);
    fprintf(g, "\n");
    for (int i = 0; i < n; i++) curve_points(g, &cs[i], axis, &ymin);
}

static int has_data(const curve *c, int axis)
{
    double ymin = INFINITY;
    return curve_points(NULL, c, axis, &ymin) > 0;
}

static int plot_runs(const larch_run_metrics *runs, int n_runs, const char *png, int axis, int w, int h)
{
    static const char *phase_names[LARCH_PH_N] = {"data", "compute", "sync", "optimizer", "eval", "checkpoint"};
    curve *cs = calloc((size_t)n_runs * (LARCH_RM_TASKS + 8), sizeof *cs);
    if (!cs) { fprintf(stderr, "larch: error: out of memory\n"); return 1; }
    FILE *g = popen("gnuplot 2>&1", "w");
    if (!g) { perror("larch: gnuplot"); free(cs); return 1; }
    const char *xl = axis == X_STEP ? "step" : axis == X_EPOCH ? "epoch" : "time (s)";
    fprintf(g, "set terminal pngcairo size %d,%d font ',9'\nset output '%s'\nset termoption noenhanced\n"
               "set grid\nset key top right font ',8'\nset xlabel '%s'\nset multiplot layout 2,3\n", w, h, png, xl);
    for (int p = 0; p < 6; p++) {
        int n = 0;
        for (int r = 0; r < n_runs; r++) {
            const larch_run_metrics *m = &runs[r];
            char name[120];
            quote_safe(name, sizeof name, m->name);
            curve c = {.run = m, .color = r + 1, .dash = 1};
            if (p == 0) {
                c.kind = C_TRAIN_LOSS;
                snprintf(c.title, sizeof c.title, "%s%s", name, m->multi_task ? ": total" : "");
                if (has_data(&c, axis)) cs[n++] = c;
                for (int k = 0; m->multi_task && k < m->n_tasks; k++) {
                    c.kind = C_TASK_LOSS;
                    c.task = k;
                    c.dash = k + 2;
                    char t[80];
                    quote_safe(t, sizeof t, m->tasks[k]);
                    snprintf(c.title, sizeof c.title, "%s: %s", name, t);
                    if (has_data(&c, axis)) cs[n++] = c;
                }
            } else if (p == 1 || p == 2) {
                for (int k = 0; k < m->n_tasks; k++) {
                    c.kind = p == 1 ? C_TEST_LOSS : C_TEST_ACC;
                    c.task = k;
                    c.dash = m->n_tasks > 1 ? k + 2 : 1;
                    char t[80];
                    quote_safe(t, sizeof t, m->tasks[k]);
                    if (m->n_tasks > 1) snprintf(c.title, sizeof c.title, "%s: %s", name, t);
                    else snprintf(c.title, sizeof c.title, "%s", name);
                    if (has_data(&c, axis)) cs[n++] = c;
                }
            } else if (p == 3 || p == 4) {
                c.kind = p == 3 ? C_LR : C_SPS;
                snprintf(c.title, sizeof c.title, "%s", name);
                if (has_data(&c, axis)) cs[n++] = c;
            } else {
                for (int k = LARCH_PH_DATA; k <= LARCH_PH_OPTIM; k++) {
                    c.kind = C_PHASE;
                    c.phase = k;
                    c.color = n_runs == 1 ? k + 1 : r + 1;    /* one run: a color per phase */
                    c.dash = n_runs == 1 ? 1 : k + 1;
                    snprintf(c.title, sizeof c.title, "%s: %s", name, phase_names[k]);
                    if (has_data(&c, axis)) cs[n++] = c;
                }
            }
        }
        static const char *titles[6] = {"training loss", "test loss", "test accuracy", "learning rate", "training samples/s",
                                        "rank 0: ms per step by phase"};
        static const char *ylabels[6] = {"loss", "loss", "accuracy", "lr", "samples/s", "ms/step"};
        panel(g, titles[p], ylabels[p], p == 0 || p == 1, cs, n, axis);
    }
    fprintf(g, "unset multiplot\n");
    free(cs);
    int rc = pclose(g);
    if (rc != 0) {
        fprintf(stderr, "larch: error: gnuplot failed (exit %d); is it installed? apt-get install gnuplot-nox\n", rc);
        unlink(png);                              /* no empty or partial plot left behind */
        return 1;
    }
    fprintf(stderr, "larch: wrote %s\n", png);
    return 0;
}

int larch_cmd_plot(int argc, char **argv)
{
    const char *dirs[MAX_RUNS], *png = NULL;
    int n_dirs = 0, axis = X_STEP, w = 1500, h = 900;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { plot_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--png") && i + 1 < argc) { png = argv[++i]; continue; }
        if (!strcmp(argv[i], "--x") && i + 1 < argc) {
            const char *a = argv[++i];
            if (!strcmp(a, "step")) axis = X_STEP;
            else if (!strcmp(a, "epoch")) axis = X_EPOCH;
            else if (!strcmp(a, "time")) axis = X_TIME;
            else { fprintf(stderr, "larch plot: --x %s: expected step, epoch or time\n", a); return 2; }
            continue;
        }
        if (!strcmp(argv[i], "--size") && i + 1 < argc) {
            if (sscanf(argv[++i], "%d,%d", &w, &h) != 2 || w < 200 || h < 150 || w > 10000 || h > 10000) {
                fprintf(stderr, "larch plot: --size %s: expected W,H in pixels (200..10000)\n", argv[i]);
                return 2;
            }
            continue;
        }
        if (argv[i][0] == '-') { fprintf(stderr, "larch plot: unexpected argument '%s'\n", argv[i]); plot_usage(stderr); return 2; }
        if (n_dirs == MAX_RUNS) { fprintf(stderr, "larch plot: at most %d runs\n", MAX_RUNS); return 2; }
        dirs[n_dirs++] = argv[i];
    }
    if (n_dirs == 0 || !png) { plot_usage(stderr); return 2; }
    FILE *f = fopen(png, "w");                    /* an unwritable path is ours to name, not gnuplot's */
    if (!f || fclose(f) != 0) { fprintf(stderr, "larch: error: --png %s: cannot write: %s\n", png, strerror(errno)); return 1; }
    larch_run_metrics runs[MAX_RUNS];
    int rc = 0, n = 0;
    for (; n < n_dirs; n++) {
        char err[1400];
        if (larch_run_metrics_read(dirs[n], &runs[n], err, sizeof err)) {
            fprintf(stderr, "larch: error: %s\n", err);
            rc = 1;
            break;
        }
        if (runs[n].bad_lines) fprintf(stderr, "larch: warning: %s: %ld line(s) of metrics.jsonl skipped (not JSON)\n",
                                       dirs[n], runs[n].bad_lines);
    }
    if (!rc) rc = plot_runs(runs, n_dirs, png, axis, w, h);
    else unlink(png);
    for (int i = 0; i < n; i++) larch_run_metrics_free(&runs[i]);
    return rc;
}
