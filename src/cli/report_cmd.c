/* report_cmd.c - `larch report RUN_DIR [--out FILE]`: the run's
 * self-contained HTML report (train/run_report.c), rebuilt from the run
 * directory; `larch train` writes the same page itself. */
#include "cli/cli.h"
#include "train/run_report.h"

#include <stdio.h>
#include <string.h>

static void report_usage(FILE *f)
{
    fprintf(f, "usage: larch report RUN_DIR [--out FILE]\n"
               "  writes one self-contained HTML page (inline SVG, nothing fetched) with the run's curves,\n"
               "  final metrics, time by phase, command line, machine, checkpoints and resolved config,\n"
               "  from RUN_DIR/metrics.jsonl, run.json and config.yaml (larch train writes it too)\n"
               "  --out FILE   where to write it (default RUN_DIR/report.html)\n");
}

int larch_cmd_report(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { report_usage(stdout); return 0; }
        if (!strcmp(argv[i], "--out") && i + 1 < argc) { out = argv[++i]; continue; }
        if (argv[i][0] == '-' || dir) { fprintf(stderr, "larch report: unexpected argument '%s'\n", argv[i]); report_usage(stderr); return 2; }
        dir = argv[i];
    }
    if (!dir) { report_usage(stderr); return 2; }
    char err[1400];
    if (larch_report_write(dir, out, err, sizeof err)) { fprintf(stderr, "larch: error: %s\n", err); return 1; }
    char path[1100];
    if (!out) snprintf(path, sizeof path, "%s/report.html", dir);
    fprintf(stderr, "larch: wrote %s\n", out ? out : path);
    return 0;
}
