/* data_cmd.c - `larch data convert FORMAT SOURCE OUT.h5` and `larch data
 * info FILE` (docs/datasets.md). The converters live in datasets/. */
#include "cli/cli.h"
#include "datasets/convert.h"
#include "larch/data.h"

#include <errno.h>
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
            "info prints each split's shape, classes, counts per class and normalization.\n");
}

/* Per-channel mean and standard deviation of a split (x/255 units for
 * pixels), one pair for all channels when there are more than LARCH_NORM_MAX.
 * They are rounded to 4 decimals, as the published statistics are
 * (torchvision's (0.2860, 0.3530) for Fashion-MNIST): a file then states
 * the same constants as the papers and recipes that use the dataset. */
static void channel_stats(const larch_dataset *ds, float *mean, float *std, int *n_out)
{
    int C = ds->shape.c, nc = C <= LARCH_NORM_MAX ? C : 1;
    double s[LARCH_NORM_MAX] = {0}, q[LARCH_NORM_MAX] = {0};
    size_t total = (size_t)ds->n * larch_shape_size(ds->shape);
    for (size_t i = 0; i < total; i++) {
        double v = ds->u8 ? ds->u8[i] / 255.0 : ds->f32[i];
        int c = nc == 1 ? 0 : (int)(i % (size_t)C);
        s[c] += v;
        q[c] += v * v;
    }
    double per = (double)total / nc;
    for (int c = 0; c < nc; c++) {
        double m = s[c] / per, var = q[c] / per - m * m;
        double sd = var > 1e-12 ? sqrt(var) : 1.0;                 /* a constant channel keeps its scale */
        mean[c] = (float)(round(m * 1e4) / 1e4);
        std[c] = (float)(sd >= 1e-4 ? round(sd * 1e4) / 1e4 : sd);
    }
    *n_out = nc;
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

int larch_cmd_data(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        data_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "convert")) return cmd_convert(argc, argv);
    if (!strcmp(argv[1], "info")) return cmd_info(argc, argv);
    fprintf(stderr, "larch data: unknown subcommand '%s'\n", argv[1]);
    data_usage(stderr);
    return 2;
}
