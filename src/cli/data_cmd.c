/* data_cmd.c - `larch data convert FORMAT SOURCE OUT.h5` and `larch data
 * info FILE` (docs/datasets.md). The converters live in datasets/. */
#include "cli/cli.h"
#include "datasets/convert.h"
#include "larch/comm.h"
#include "larch/data.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void data_usage(FILE *f)
{
    fprintf(f,
            "usage: larch data convert FORMAT SOURCE OUT.h5 [--size N] [--force]\n"
            "       larch data info FILE.h5\n"
            "       larch data synth OUT.h5 --train N --test N --shape H,W,C --classes K [--noise A] [--seed S] [--force]\n"
            "       larch data bench FILE.h5[:/group] [--batch N] [--steps N] [--in-memory true|false] [--augment] [--cold]\n"
            "\n"
            "convert writes the HDF5 dataset layout of docs/datasets.md (groups /train and /test,\n"
            "per-channel mean and std of the training split). FORMAT and SOURCE:\n"
            "  idx     a directory of MNIST-layout IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz])\n"
            "  cifar   a directory of the CIFAR-10 or CIFAR-100 binary version (data_batch_*.bin or train.bin)\n"
            "  npy     a directory with x_train.npy, y_train.npy, x_test.npy, y_test.npy\n"
            "  folder  a directory with train/ and test/, each with one sub-folder of PNG/JPEG images per class;\n"
            "          --size N (default 32): shorter side resized to N, then the centre N x N crop\n"
            "--force replaces an existing OUT.h5 (only once the new file is complete).\n"
            "A classes.txt in SOURCE (one name per line) names the classes of idx and npy.\n"
            "info prints each split's shape, classes, counts per class and normalization.\n"
            "synth writes a learnable synthetic image set of any size in chunks (larger than memory if asked).\n"
            "bench times the loader alone (shuffled batches, prefetch thread) and prints one JSON line;\n"
            "--cold first drops the file from the page cache (posix_fadvise), so out-of-core reads hit the disk.\n");
}

/* The training split's per-channel statistics (convert.h). */
static void channel_stats(const larch_dataset *ds, float *mean, float *std, int *n_out)
{
    larch_stats st;
    larch_stats_init(&st, ds->shape.c);
    larch_stats_add(&st, ds->u8, ds->f32, (size_t)ds->n * larch_shape_size(ds->shape));
    larch_stats_finish(&st, mean, std, n_out);
}

static int cmd_convert(int argc, char **argv)
{
    const char *pos[3];
    int n_pos = 0;
    larch_convert_opts o = {32};
    int force = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--force")) force = 1;
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 4096) { fprintf(stderr, "larch data convert: --size %s is not in [1, 4096]\n", argv[i]); return 2; }
            o.size = (int)v;
        } else if (argv[i][0] == '-' || n_pos == 3) {
            fprintf(stderr, "larch data convert: unexpected argument '%s'\n", argv[i]);
            data_usage(stderr);
            return 2;
        } else pos[n_pos++] = argv[i];
    }
    if (n_pos != 3) { data_usage(stderr); return 2; }
    const char *fmt = pos[0], *src = pos[1], *out = pos[2];
    larch_status (*conv)(const char *, const larch_convert_opts *, larch_converted *) =
        !strcmp(fmt, "idx") ? larch_convert_idx : !strcmp(fmt, "cifar") ? larch_convert_cifar
        : !strcmp(fmt, "npy") ? larch_convert_npy : !strcmp(fmt, "folder") ? larch_convert_folder : NULL;
    if (!conv) {
        fprintf(stderr, "larch data convert: unknown format '%s' (idx, cifar, npy, folder)\n", fmt);
        return 2;
    }
    if (!force && access(out, F_OK) == 0) {
        fprintf(stderr, "larch data convert: %s exists (--force replaces it)\n", out);
        return 1;
    }
    larch_converted c;
    memset(&c, 0, sizeof c);
    if (conv(src, &o, &c)) { larch_cli_error("data convert"); return 1; }
    float mean[LARCH_NORM_MAX], std[LARCH_NORM_MAX];
    int nc;
    channel_stats(&c.split[0], mean, std, &nc);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", out, (long)getpid());
    larch_status s = larch_dataset_set_norm(&c.split[0], mean, std, nc);
    if (!s) s = larch_dataset_set_norm(&c.split[1], mean, std, nc);
    const char *const *names = (const char *const *)c.classes;
    if (!s) s = larch_dataset_h5_write(tmp, "train", &c.split[0], names);
    if (!s) s = larch_dataset_h5_write(tmp, "test", &c.split[1], names);
    if (!s && rename(tmp, out) != 0) s = larch_fail(LARCH_ERR_IO, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
    if (s) {
        unlink(tmp);
        larch_cli_error("data convert");
    } else {
        larch_shape sh = c.split[0].shape;
        printf("wrote %s: train %d, test %d samples of (%d, %d, %d) %s, %d classes; mean", out, c.split[0].n,
               c.split[1].n, sh.h, sh.w, sh.c, c.split[0].u8 ? "uint8" : "float32", c.split[0].n_classes);
        for (int i = 0; i < nc; i++) printf(" %.4f", mean[i]);
        printf(", std");
        for (int i = 0; i < nc; i++) printf(" %.4f", std[i]);
        printf("\n");
    }
    larch_converted_free(&c);
    return s ? 1 : 0;
}

static int cmd_info(int argc, char **argv)
{
    if (argc != 3) { data_usage(stderr); return 2; }
    const char *path = argv[2];
    char splits[16][LARCH_NAME_MAX];
    int n_splits;
    if (larch_dataset_h5_splits(path, splits, 16, &n_splits)) { larch_cli_error("data info"); return 1; }
    if (!n_splits) { fprintf(stderr, "larch: data info: %s holds no split (no group with images or features)\n", path); return 1; }
    int rc = 0;
    for (int k = 0; k < n_splits; k++) {
        char spec[4400];
        snprintf(spec, sizeof spec, "%s:%s%s", path, splits[k][0] == '/' ? "" : "/", splits[k]);
        larch_dataset ds;
        char **names = NULL;
        int n_names = 0;
        if (larch_dataset_h5_read(spec, NULL, &ds) || larch_dataset_h5_class_names(spec, NULL, &names, &n_names)) {
            larch_cli_error("data info");
            rc = 1;
            continue;
        }
        printf("%s: %d samples of (%d, %d, %d) %s, %d classes", splits[k], ds.n, ds.shape.h, ds.shape.w, ds.shape.c,
               ds.u8 ? "uint8 images" : "float32 features", ds.n_classes);
        if (ds.n_targets) printf(", %d regression targets", ds.n_targets);
        printf("\n  mean");
        for (int c = 0; c < ds.n_norm; c++) printf(" %.4f", ds.mean[c]);
        printf("  std");
        for (int c = 0; c < ds.n_norm; c++) printf(" %.4f", ds.std[c]);
        printf("%s\n", ds.u8 ? "  (units of x/255)" : "");
        int *count = calloc((size_t)ds.n_classes, sizeof *count);
        for (int i = 0; count && i < ds.n; i++) count[ds.labels[i]]++;
        printf("  per class:");
        for (int c = 0; count && c < ds.n_classes; c++)
            printf("%s %d%s%s%s", c ? "," : "", count[c], c < n_names ? " (" : "", c < n_names ? names[c] : "",
                   c < n_names ? ")" : "");
        printf("\n");
        for (int t = 0; t < ds.n_derived; t++)
            printf("  label set %d: labels_%s, %d classes (a loss selects it with target: %d)\n", t + 1, ds.derived_name[t],
                   ds.derived_classes[t], t + 1);
        free(count);
        larch_dataset_h5_free_names(names, n_names);
        larch_dataset_free(&ds);
    }
    return rc;
}

static int parse_int(const char *flag, const char *v, long lo, long hi, long *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || end == v || x < lo || x > hi) {
        fprintf(stderr, "larch data: %s %s is not an integer in [%ld, %ld]\n", flag, v, lo, hi);
        return 2;
    }
    *out = x;
    return 0;
}

static int cmd_synth(int argc, char **argv)
{
    larch_synth_h5_opts o = {0, 0, 0, 48, {0, 0, 0}, 42};
    const char *out = NULL;
    int force = 0;
    long v;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *nx = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--force")) { force = 1; continue; }
        if (nx && !strcmp(a, "--train")) { if (parse_int(a, nx, 1, INT32_MAX, &v)) return 2; o.n_train = (int)v; i++; continue; }
        if (nx && !strcmp(a, "--test")) { if (parse_int(a, nx, 1, INT32_MAX, &v)) return 2; o.n_test = (int)v; i++; continue; }
        if (nx && !strcmp(a, "--classes")) { if (parse_int(a, nx, 2, 65536, &v)) return 2; o.classes = (int)v; i++; continue; }
        if (nx && !strcmp(a, "--noise")) { if (parse_int(a, nx, 0, 255, &v)) return 2; o.noise = (int)v; i++; continue; }
        if (nx && !strcmp(a, "--seed")) { if (parse_int(a, nx, 0, INT32_MAX, &v)) return 2; o.seed = (uint64_t)v; i++; continue; }
        if (nx && !strcmp(a, "--shape")) {
            if (sscanf(nx, "%d,%d,%d", &o.shape.h, &o.shape.w, &o.shape.c) != 3 || o.shape.h < 1 || o.shape.w < 1 ||
                o.shape.c < 1 || (double)o.shape.h * o.shape.w * o.shape.c > 1 << 26) {
                fprintf(stderr, "larch data synth: --shape %s: expected H,W,C (positive)\n", nx);
                return 2;
            }
            i++;
            continue;
        }
        if (a[0] == '-' || out) { fprintf(stderr, "larch data synth: unexpected argument '%s'\n", a); data_usage(stderr); return 2; }
        out = a;
    }
    if (!out || !o.n_train || !o.n_test || !o.classes || !o.shape.c) { data_usage(stderr); return 2; }
    if (!force && access(out, F_OK) == 0) {
        fprintf(stderr, "larch data synth: %s exists (--force replaces it)\n", out);
        return 1;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", out, (long)getpid());
    float mean[LARCH_NORM_MAX], std[LARCH_NORM_MAX];
    int nc = 0;
    larch_status s = larch_synth_h5(tmp, &o, mean, std, &nc);
    if (!s && rename(tmp, out) != 0) s = larch_fail(LARCH_ERR_IO, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
    if (s) { unlink(tmp); larch_cli_error("data synth"); return 1; }
    double gb = ((double)o.n_train + o.n_test) * larch_shape_size(o.shape) / 1e9;
    printf("wrote %s: train %d, test %d samples of (%d, %d, %d) uint8 (%.2f GB), %d classes\n", out, o.n_train, o.n_test,
           o.shape.h, o.shape.w, o.shape.c, gb, o.classes);
    return 0;
}

static double peak_rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb / 1024.0;
}

static int cmd_bench(int argc, char **argv)
{
    const char *spec = NULL;
    long batch = 256, steps = 200;
    int in_memory = 0, augment = 0, cold = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *nx = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--augment")) { augment = 1; continue; }
        if (!strcmp(a, "--cold")) { cold = 1; continue; }
        if (nx && !strcmp(a, "--batch")) { if (parse_int(a, nx, 1, 1 << 20, &batch)) return 2; i++; continue; }
        if (nx && !strcmp(a, "--steps")) { if (parse_int(a, nx, 1, 1L << 30, &steps)) return 2; i++; continue; }
        if (nx && !strcmp(a, "--in-memory")) {
            if (strcmp(nx, "true") && strcmp(nx, "false")) { fprintf(stderr, "larch data bench: --in-memory true|false\n"); return 2; }
            in_memory = !strcmp(nx, "true");
            i++;
            continue;
        }
        if (a[0] == '-' || spec) { fprintf(stderr, "larch data bench: unexpected argument '%s'\n", a); data_usage(stderr); return 2; }
        spec = a;
    }
    if (!spec) { data_usage(stderr); return 2; }
    larch_dataset ds;
    double t0 = larch_comm_wtime();
    if (larch_dataset_h5_open(spec, strchr(spec, ':') ? NULL : "train", in_memory, &ds)) { larch_cli_error("data bench"); return 1; }
    double t_load = larch_comm_wtime() - t0;
    if (cold && ds.ooc) posix_fadvise(ds.ooc_fd, 0, 0, POSIX_FADV_DONTNEED);
    larch_loader_opts lo = {.global_batch = (int)batch, .world = 1, .shuffle = 1, .drop_last = 1, .seed = 42,
                            .flip = augment, .crop_pad = augment ? 4 : 0, .prefetch = 1};
    larch_loader *l = NULL;
    if (larch_loader_create(&l, &ds, &lo)) { larch_cli_error("data bench"); larch_dataset_free(&ds); return 1; }
    larch_loader_next(l, NULL, NULL);                            /* the first batch starts the thread */
    t0 = larch_comm_wtime();
    for (long k = 0; k < steps; k++) larch_loader_next(l, NULL, NULL);
    double dt = larch_comm_wtime() - t0;
    larch_status s = larch_loader_status(l);
    size_t bytes = larch_shape_size(ds.shape) * (ds.u8 || (ds.ooc && ds.ooc_u8) ? 1 : sizeof(float));
    if (!s)
        printf("{\"bench\": \"data\", \"file\": \"%s\", \"in_memory\": %s, \"cold\": %s, \"augment\": %s, \"batch\": %ld, "
               "\"steps\": %ld, \"samples_per_s\": %.1f, \"mb_per_s\": %.1f, \"load_s\": %.3f, \"peak_rss_mb\": %.1f}\n",
               spec, in_memory ? "true" : "false", cold ? "true" : "false", augment ? "true" : "false", batch, steps,
               steps * batch / dt, steps * batch * (double)bytes / dt / 1e6, t_load, peak_rss_mb());
    else larch_cli_error("data bench");
    larch_loader_free(l);
    larch_dataset_free(&ds);
    return s ? 1 : 0;
}

int larch_cmd_data(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        data_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "convert")) return cmd_convert(argc, argv);
    if (!strcmp(argv[1], "info")) return cmd_info(argc, argv);
    if (!strcmp(argv[1], "synth")) return cmd_synth(argc, argv);
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc, argv);
    fprintf(stderr, "larch data: unknown subcommand '%s'\n", argv[1]);
    data_usage(stderr);
    return 2;
}
