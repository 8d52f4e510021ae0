/* report_cmd.c - `larch report RUN_DIR [--out FILE]`. */
#include "cli/cli.h"
#include "train/run_metrics.h"

#include <stdio.h>
#include <string.h>

int larch_cmd_report(int argc, char **argv)
{
    (void)argc; (void)argv;
    return 1;
}
