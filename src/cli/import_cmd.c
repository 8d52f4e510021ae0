/* import_cmd.c - `larch import` (a safetensors file, e.g. a PyTorch
 * state_dict, to a larch checkpoint that model.init_from and larch eval /
 * predict load) and `larch export` (a checkpoint's parameters and buffers to
 * safetensors under PyTorch's names and layouts). docs/backbones.md. */
#include "cli/cli.h"
#include "larch/larch.h"
#include "larch/safetensors.h"
#include "larch/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SETS 256

typedef struct {
    const char *in, *config, *map, *out, *format, *dtype;
    const char *sets[MAX_SETS];
    int n_sets, verbose;
} io_args;

static int parse_args(int argc, char **argv, io_args *a, int export, void (*usage)(FILE *))
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        int next = larch_cli_sets(argc, argv, i, a->sets, &a->n_sets, MAX_SETS);
        if (next < 0) return 2;
        if (next > i) { i = next; continue; }
        const char **opt = !strcmp(argv[i], "--config") ? &a->config : !strcmp(argv[i], "--map") ? &a->map
                         : !strcmp(argv[i], "--out") ? &a->out
                         : export && !strcmp(argv[i], "--format") ? &a->format
                         : export && !strcmp(argv[i], "--dtype") ? &a->dtype : NULL;
        if (opt && i + 1 < argc) { *opt = argv[i + 1]; i += 2; continue; }
        if (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")) { a->verbose = 1; i++; continue; }
        if (argv[i][0] == '-' || a->in) {
            fprintf(stderr, "larch %s: unexpected argument '%s'\n", export ? "export" : "import", argv[i]);
            usage(stderr);
            return 2;
        }
        a->in = argv[i++];
    }
    if (!a->in || !a->config || !a->out) { usage(stderr); return 2; }
    return -1;
}

static void import_usage(FILE *f)
{
    fprintf(f, "usage: larch import FILE.safetensors --config CFG [--map RULES] --out CKPT.h5 [--set k=v ...] [-v]\n"
               "  sets every parameter and buffer of CFG's model from FILE (F32, F16 or BF16; PyTorch names and\n"
               "  layouts) and writes a larch checkpoint for model.init_from, larch eval and larch predict.\n"
               "  --map RULES  name rules, one `TORCH_PATTERN LARCH_PATTERN` a line (docs/backbones.md);\n"
               "               default: module path with '.' -> '_', batch-norm weight/bias -> scale/shift\n"
               "  -v           list every tensor\n");
}

static void export_usage(FILE *f)
{
    fprintf(f, "usage: larch export CKPT.h5 --config CFG --format safetensors --out FILE [--map RULES] [--dtype f32|f16|bf16]\n"
               "  writes the parameters and buffers of a checkpoint of CFG's model under PyTorch's names and layouts\n"
               "  --map RULES  the rules of larch import, applied backwards (default: larch's layer names,\n"
               "               scale/shift -> weight/bias)\n"
               "  --dtype      the stored type (default f32; export then import of f32 is bit-identical)\n");
}

/* The config's model, built and initialized. */
static larch_status build_model(const io_args *a, larch_node **cfg, larch_model **m)
{
    larch_shape shape;
    int classes;
    larch_status s = larch_run_load(a->config, a->sets, a->n_sets, cfg);
    if (!s) s = larch_run_input(*cfg, &shape, &classes);
    if (!s) s = larch_model_build(m, shape, larch_run_layers(*cfg), larch_map_get(*cfg, "loss"),
                                  larch_map_get(*cfg, "regularization"), 0);
    return s;
}

int larch_cmd_import(int argc, char **argv)
{
    io_args a;
    int r = parse_args(argc, argv, &a, 0, import_usage);
    if (r >= 0) return r;
    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) { larch_cli_error("MPI"); return 1; }
    larch_node *cfg = NULL;
    larch_model *m = NULL;
    larch_st_map *map = NULL;
    larch_st_file f = {0};
    larch_status s = comm.size != 1 ? larch_fail(LARCH_ERR_INVALID, "larch import runs on one process (not under mpirun -n %d)", comm.size)
                                    : LARCH_OK;
    if (!s) s = build_model(&a, &cfg, &m);
    if (!s && a.map) s = larch_st_map_read(a.map, &map);
    if (!s) s = larch_st_read(a.in, &f);
    if (!s) s = larch_st_to_model(&f, a.in, map, m, a.verbose ? stdout : NULL);
    if (!s) s = larch_ckpt_save_model(a.out, &comm, m, cfg, NULL);
    if (!s) {
        size_t n_values = 0;
        for (int i = 0; i < f.n; i++) n_values += f.t[i].count;
        printf("import: %s: %d tensor(s), %zu values -> %s (%d parameter and %d buffer tensors of %s)\n", a.in, f.n,
               n_values, a.out, larch_model_n_params(m), larch_model_n_buffers(m), a.config);
    } else {
        larch_cli_error("import");
    }
    larch_st_free(&f);
    larch_st_map_free(map);
    larch_model_free(m);
    larch_node_free(cfg);
    larch_comm_finalize(&comm);
    return s ? 1 : 0;
}

int larch_cmd_export(int argc, char **argv)
{
    io_args a;
    int r = parse_args(argc, argv, &a, 1, export_usage);
    if (r >= 0) return r;
    larch_st_dtype dt = LARCH_ST_F32;
    if (a.dtype && !strcmp(a.dtype, "f16")) dt = LARCH_ST_F16;
    else if (a.dtype && !strcmp(a.dtype, "bf16")) dt = LARCH_ST_BF16;
    else if (a.dtype && strcmp(a.dtype, "f32") != 0) {
        fprintf(stderr, "larch export: --dtype %s: expected f32, f16 or bf16\n", a.dtype);
        return 2;
    }
    if (!a.format || strcmp(a.format, "safetensors") != 0) {
        fprintf(stderr, "larch export: --format %s: the only format is safetensors\n", a.format ? a.format : "(missing)");
        return 2;
    }
    larch_node *cfg = NULL;
    larch_model *m = NULL;
    larch_st_map *map = NULL;
    larch_st_file f = {0};
    larch_init_map im;
    memset(&im, 0, sizeof im);
    im.buffers = 1;
    im.skip_mismatch = 1;                    /* counted, and reported below as one error */
    larch_init_report rep = {0};
    larch_status s = build_model(&a, &cfg, &m);
    if (!s && a.map) s = larch_st_map_read(a.map, &map);
    if (!s) s = larch_ckpt_init_from(a.in, m, &im, &rep);
    if (!s && (rep.fresh || rep.skipped || rep.unused))
        s = larch_fail(LARCH_ERR_FORMAT, "%s is not a checkpoint of %s's model: %d of the model's tensors are missing from it or differ, "
                       "%d checkpoint tensors unused (larch ckpt info %s)", a.in, a.config, rep.fresh + rep.skipped,
                       rep.unused, a.in);
    if (!s) s = larch_st_from_model(m, map, &f);
    if (!s) s = larch_st_write(a.out, f.t, f.n, dt);
    if (!s) {
        if (a.verbose)
            for (int i = 0; i < f.n; i++) printf("  %s\n", f.t[i].name);
        printf("export: %s -> %s: %d tensor(s), %s\n", a.in, a.out, f.n, larch_st_dtype_name(dt));
    } else {
        larch_cli_error("export");
    }
    larch_init_report_free(&rep);
    larch_st_free(&f);
    larch_st_map_free(map);
    larch_model_free(m);
    larch_node_free(cfg);
    return s ? 1 : 0;
}
