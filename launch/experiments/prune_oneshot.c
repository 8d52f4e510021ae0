/* prune_oneshot.c - runs the `prune` compression method on a config and a
 * checkpoint through the public API (what `larch compress --method prune`
 * does, without the measurement table), for launch/experiments/prune.sh:
 *   cc -O2 -Iinclude launch/experiments/prune_oneshot.c -Lbuild -llarch -Wl,-rpath,$PWD/build -o build/prune_oneshot
 *   build/prune_oneshot CONFIG CHECKPOINT OUT_BASE [sparsity=0.9,scope=layer]
 */
#include "larch/larch.h"
#include "larch/compress.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s CONFIG CHECKPOINT OUT_BASE [key=value,...]\n", argv[0]);
        return 2;
    }
    char spec[512];
    snprintf(spec, sizeof spec, "prune%s%s", argc > 4 ? ":" : "", argc > 4 ? argv[4] : "");
    larch_comm comm;
    larch_node *cfg = NULL, *opts = NULL;
    const larch_compress_method *m = NULL;
    larch_compress_out out;
    memset(&out, 0, sizeof out);
    larch_status s = larch_comm_init(&comm, &argc, &argv);
    if (!s) s = larch_run_load(argv[1], NULL, 0, &cfg);
    if (!s) s = larch_compress_parse(spec, &m, &opts);
    larch_compress_src src = {cfg, argv[2], NULL};
    if (!s) s = m->run(&src, opts, argv[3], &out);
    if (s) fprintf(stderr, "prune_oneshot: %s\n", larch_errmsg());
    else printf("%s -> %s, %s\n", out.summary, out.config_path, out.checkpoint);
    larch_node_free(out.cfg);
    larch_node_free(opts);
    larch_node_free(cfg);
    larch_comm_finalize(&comm);
    return s ? 1 : 0;
}
