/* bench_ckpt.c - `larch bench ckpt CONFIG...`: checkpoint write and read
 * time and size for each config's model with its optimizer state, next to
 * the disk's own write bandwidth measured in the same run: the same number
 * of bytes written by the same number of processes (each rank its equal
 * part of one file, with pwrite) and fsync'ed, into the same directory.
 * Both sides include the fsync (a save fsyncs its file and the directory),
 * so both measure the disk, not the page cache. The rounds interleave (save,
 * load, disk reference; R times) and each figure is the best of its R, so
 * a machine shared with other work disturbs both sides alike. Runs under
 * mpirun too: the save and load are collective.
 * Output: one JSON line per config on rank 0's stdout; a table on stderr.
 */
#include "cli/cli.h"
#include "larch/checkpoint.h"
#include "larch/train.h"
#include "larch/optim_cfg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CONFIGS 16

static void usage(FILE *f)
{
    fprintf(f, "usage: [mpirun -n N] larch bench ckpt CONFIG ... [--dir DIR] [--repeat R]\n"
               "  CONFIG    time a checkpoint of this config's model and optimizer state\n"
               "  --dir     where to write (default /tmp/larch_bench_ckpt); removed afterwards\n"
               "  --repeat  best of R writes and reads (default 3)\n");
}

/* Collective: seconds for every rank to write its equal part of `bytes`
 * into one file of dir with pwrite and fsync it (-1 when a rank failed). */
static double disk_write_seconds(const char *dir, double bytes, const larch_comm *comm)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/disk_probe.bin", dir);
    int fd = -1;
    if (comm->rank == 0) fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    larch_comm_barrier(comm);
    if (comm->rank != 0) fd = open(path, O_WRONLY);
    size_t block = 8u << 20;
    char *buf = malloc(block);
    if (buf) memset(buf, 0x3c, block);
    double per = bytes / comm->size, lo = per * comm->rank, hi = comm->rank == comm->size - 1 ? bytes : lo + per;
    int ok = fd >= 0 && buf;
    larch_comm_barrier(comm);
    double t0 = larch_comm_wtime();
    for (double at = (double)(long long)lo; ok && at < hi;) {
        size_t n = hi - at < (double)block ? (size_t)(hi - at) : block;
        ok = pwrite(fd, buf, n, (off_t)at) == (ssize_t)n;
        at += (double)n;
    }
    ok = ok && fsync(fd) == 0;
    double v[2] = {ok ? 0.0 : 1.0, 0.0};
    larch_comm_barrier(comm);
    double t = larch_comm_wtime() - t0;
    larch_comm_allreduce_f64(comm, v, 2);
    if (fd >= 0) close(fd);
    if (comm->rank == 0) unlink(path);
    free(buf);
    return v[0] == 0.0 ? t : -1.0;
}

static larch_status bench_one(const char *config, const char *dir, int repeat, const larch_comm *comm)
{
    larch_node *cfg = NULL;
    larch_status s = larch_run_load(config, NULL, 0, &cfg);
    larch_shape shape;
    int classes;
    larch_model *m = NULL;
    larch_optim *o = NULL;
    if (!s) s = larch_run_input(cfg, &shape, &classes);
    if (!s) s = larch_model_build(&m, shape, larch_run_layers(cfg), larch_map_get(cfg, "loss"),
                                  larch_map_get(cfg, "regularization"), 1);
    if (!s) s = larch_optim_create_cfg(&o, m, larch_map_get(cfg, "optim"));
    s = larch_comm_check(comm, s);
    double best_w = 1e30, best_r = 1e30, disk = 1e30, size = 0.0;
    char path[4200] = "";
    larch_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.world_size = comm->size;
    meta.global_batch = 1;
    meta.steps_per_epoch = 1;
    meta.sched_total_steps = repeat;
    for (int i = 0; !s && i < repeat; i++) {
        /* consistent metadata, as a save checks it: one step per "epoch", the optimizer at the step */
        meta.step = meta.epoch = meta.sampler_epoch = meta.samples_seen = meta.sched_step = i + 1;
        o->t = meta.step;
        larch_comm_barrier(comm);
        double t0 = larch_comm_wtime();
        s = larch_ckpt_save(dir, 1, comm, m, o, &meta, path, sizeof path);
        double tw = larch_comm_wtime() - t0;
        if (!s) {
            larch_comm_barrier(comm);
            t0 = larch_comm_wtime();
            s = larch_ckpt_load(path, comm, m, o, NULL);
            double tr = larch_comm_wtime() - t0;
            if (tw < best_w) best_w = tw;
            if (tr < best_r) best_r = tr;
        }
        if (!s && i == 0) {             /* the file's size, for the disk reference */
            if (comm->rank == 0) {
                FILE *f = fopen(path, "rb");
                if (f) { fseek(f, 0, SEEK_END); size = (double)ftell(f); fclose(f); }
            }
            s = larch_comm_bcast(comm, &size, sizeof size, 0);
        }
        /* removed outside the timings (a save's pruning would count it) */
        larch_comm_barrier(comm);
        if (!s && comm->rank == 0) unlink(path);
        if (!s) {
            double t = disk_write_seconds(dir, size, comm);
            if (t > 0 && t < disk) disk = t;
        }
    }
    if (!s && comm->rank == 0) {
        long n_params = 0;
        for (int i = 0; i < larch_model_n_params(m); i++) n_params += (long)larch_model_param(m, i)->size;
        double mb = size / 1048576.0;
        printf("{\"config\": \"%s\", \"ranks\": %d, \"params\": %ld, \"optimizer\": \"%s\", \"file_mib\": %.1f, "
               "\"write_s\": %.3f, \"read_s\": %.3f, \"write_mib_s\": %.0f, \"read_mib_s\": %.0f, "
               "\"disk_writers\": %d, \"disk_write_s\": %.3f, \"disk_write_mib_s\": %.0f, \"write_vs_disk\": %.2f}\n",
               config, comm->size, n_params, o->name, mb, best_w, best_r, mb / best_w, mb / best_r, comm->size, disk, mb / disk,
               disk / best_w);
        fprintf(stderr, "%-40s %11ld params  %8.1f MiB  write %7.3f s (%5.0f MiB/s)  read %7.3f s (%5.0f MiB/s)  "
                "disk (%d writer%s) write+fsync %7.3f s (%5.0f MiB/s): checkpoint at %.2f of disk speed\n",
                config, n_params, mb, best_w, mb / best_w, best_r, mb / best_r, comm->size, comm->size > 1 ? "s" : "", disk, mb / disk, disk / best_w);
        unlink(path);
    }
    larch_optim_free(o);
    larch_model_free(m);
    larch_node_free(cfg);
    return s;
}

int larch_cmd_bench_ckpt(int argc, char **argv)
{
    const char *configs[MAX_CONFIGS], *dir = "/tmp/larch_bench_ckpt";
    int n = 0, repeat = 3;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) { dir = argv[++i]; continue; }
        if (!strcmp(argv[i], "--repeat") && i + 1 < argc) { repeat = atoi(argv[++i]); continue; }
        if (argv[i][0] == '-' || n == MAX_CONFIGS) { usage(stderr); return 2; }
        configs[n++] = argv[i];
    }
    if (n == 0 || repeat < 1) { usage(stderr); return 2; }
    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) { larch_cli_error("MPI"); return 1; }
    larch_status s = LARCH_OK;
    for (int i = 0; !s && i < n; i++) s = bench_one(configs[i], dir, repeat, &comm);
    if (comm.rank == 0) rmdir(dir);
    if (s && comm.rank == 0) larch_cli_error(NULL);
    larch_comm_finalize(&comm);
    return s ? 1 : 0;
}
