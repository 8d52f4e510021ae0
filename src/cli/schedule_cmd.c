/* schedule_cmd.c - `larch schedule`: the learning rate (and the momentum a
 * one-cycle schedule sets) of every optimizer step of a config, without
 * training; optionally plotted to PNG with gnuplot. */
#include "cli/cli.h"
#include "larch/larch.h"
#include "larch/train.h"
#include "larch/optim_cfg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SETS 256

static void schedule_usage(FILE *f)
{
    fprintf(f, "usage: larch schedule CONFIG [--set key=value ...] [--every N] [--png FILE]\n"
               "  prints CSV: step (1-based, as in metrics.jsonl), epoch, lr, momentum\n"
               "  (momentum is empty unless a one-cycle schedule cycles it)\n"
               "  --every N    print every N-th step (and the last)\n"
               "  --png FILE   also plot the curve with gnuplot (Debian: gnuplot-nox)\n");
}

static int plot(const char *png, const char *title, const larch_sched *s, long total, long per_epoch)
{
    FILE *g = popen("gnuplot 2>&1", "w");
    if (!g) { perror("larch: gnuplot"); return 1; }
    fprintf(g, "set terminal pngcairo size 900,500\nset output '%s'\nset title '%s' noenhanced\n"
               "set xlabel 'epoch'\nset ylabel 'learning rate'\nset grid\n"
               "plot '-' using 1:2 with lines lw 2 title 'lr'\n", png, title);
    for (long t = 0; t < total; t++) fprintf(g, "%.6f %.9g\n", (double)(t + 1) / per_epoch, larch_sched_lr(s, t));
    fprintf(g, "e\n");
    int rc = pclose(g);
    if (rc != 0) {
        fprintf(stderr, "larch: error: gnuplot failed (exit %d); is it installed? apt-get install gnuplot-nox\n", rc);
        unlink(png);                              /* no empty or partial plot left behind */
        return 1;
    }
    fprintf(stderr, "larch: wrote %s\n", png);
    return 0;
}

int larch_cmd_schedule(int argc, char **argv)
{
    const char *config = NULL, *png = NULL, *sets[MAX_SETS];
    int n_sets = 0;
    long every = 1;
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { schedule_usage(stdout); return 0; }
        int next = larch_cli_sets(argc, argv, i, sets, &n_sets, MAX_SETS);
        if (next < 0) return 2;
        if (next > i) { i = next; continue; }
        if (!strcmp(argv[i], "--png") && i + 1 < argc) { png = argv[i + 1]; i += 2; continue; }
        if (!strcmp(argv[i], "--every") && i + 1 < argc) {
            char *end;
            every = strtol(argv[i + 1], &end, 10);
            if (*end || every < 1) { fprintf(stderr, "larch: --every needs a positive integer\n"); return 2; }
            i += 2;
            continue;
        }
        if (argv[i][0] == '-' || config) { fprintf(stderr, "larch: unexpected argument '%s'\n", argv[i]); schedule_usage(stderr); return 2; }
        config = argv[i++];
    }
    if (!config) { schedule_usage(stderr); return 2; }
    larch_node *cfg = NULL;
    larch_status s = larch_run_load(config, sets, n_sets, &cfg);
    long per_epoch = 0, total = 0;
    larch_sched sc;
    if (!s) s = larch_run_steps(cfg, &per_epoch, &total);
    larch_sched_opts so;
    if (!s) s = larch_sched_opts_from_cfg(larch_map_get(cfg, "sched"), &so);
    if (!s) s = larch_sched_init(&sc, &so, larch_cfg_float(larch_map_get(cfg, "optim"), "lr"), total, per_epoch);
    if (s) { larch_cli_error(config); larch_node_free(cfg); return 1; }
    larch_cli_warnings(cfg);
    if (png) {                                   /* an unwritable path is ours to name, not gnuplot's */
        FILE *f = fopen(png, "w");
        if (!f || fclose(f) != 0) {
            fprintf(stderr, "larch: error: --png %s: cannot write: %s\n", png, strerror(errno));
            larch_node_free(cfg);
            return 1;
        }
    }
    printf("step,epoch,lr,momentum\n");
    for (long t = 0; t < total; t++) {
        if ((t + 1) % every != 0 && t + 1 != total && t != 0) continue;
        double mom = larch_sched_momentum(&sc, t);
        if (mom >= 0) printf("%ld,%.4f,%.9g,%.6g\n", t + 1, (double)(t + 1) / per_epoch, larch_sched_lr(&sc, t), mom);
        else printf("%ld,%.4f,%.9g,\n", t + 1, (double)(t + 1) / per_epoch, larch_sched_lr(&sc, t));
    }
    char title[300];
    snprintf(title, sizeof title, "%s: %s, %ld steps", config, larch_cfg_str(larch_map_get(cfg, "sched"), "name"), total);
    for (char *c = title; *c; c++) if (*c == '\'') *c = ' ';
    int rc = png ? plot(png, title, &sc, total, per_epoch) : 0;
    larch_node_free(cfg);
    return rc;
}
