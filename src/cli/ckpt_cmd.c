/* ckpt_cmd.c - `larch ckpt info FILE` and `larch ckpt verify FILE...`. */
#include "cli/cli.h"
#include "larch/checkpoint.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: larch ckpt info FILE        metadata and a table of tensors (name, shape, dtype, norm)\n"
               "       larch ckpt verify FILE...   read every tensor and attribute; exit 1 if any is damaged\n");
}

int larch_cmd_ckpt(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) { usage(stdout); return 0; }
    if (argc < 3 || (strcmp(argv[1], "info") != 0 && strcmp(argv[1], "verify") != 0)) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "info")) {
        if (argc != 3) { usage(stderr); return 2; }
        if (larch_ckpt_info(argv[2], stdout)) { larch_cli_error(NULL); return 1; }
        return 0;
    }
    int bad = 0;
    for (int i = 2; i < argc; i++)
        if (larch_ckpt_verify(argv[i], stdout)) { larch_cli_error(NULL); bad = 1; }
    return bad;
}
