/* compress_cmd.c - `larch compress`: runs compression methods on a trained
 * model (larch/compress.h) and prints one table that measures, in this one
 * run, the original and every result: parameters, nonzero parameters,
 * checkpoint bytes, test accuracy, inference samples/s at batch 256 and
 * latency at batch 1 (docs/compression.md). One process. */
#include "cli/cli.h"
#include "compress/rewrite.h"
#include "core/fs.h"
#include "core/threads.h"
#include "larch/larch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SETS 256
#define MAX_MODELS 32

static void usage(FILE *f)
{
    int n = 0;
    const larch_compress_method *ms = larch_compress_methods(&n);
    fprintf(f, "usage: larch compress CONFIG --checkpoint FILE [--method NAME[:key=value,...]]... [--out DIR]\n"
               "                      [--add LABEL=CONFIG2:CHECKPOINT2]... [--batch N] [--reps N] [--rounds N]\n"
               "                      [--threads T] [--json FILE] [--set key=value ...]\n"
               "  Writes DIR/<method>.yaml and DIR/<method>.h5 for each method (DIR: runs/<config name>/compress),\n"
               "  then measures the original, each result and each --add model (a fine-tuned or distilled one)\n"
               "  in this run and prints a table: parameters, nonzero, checkpoint bytes, test accuracy, eval\n"
               "  samples/s at --batch (256) and latency at batch 1 (median of --reps passes, 10 x at batch 1; median over\n"
               "  --rounds interleaved rounds), and the kernels that ran. --json FILE: one JSON line per model.\n"
               "  Without --method, only the original and the --add models are measured. The original and an --add\n"
               "  model from a training checkpoint are measured as model files without optimizer state\n"
               "  (DIR/original.h5, DIR/<label>.h5) so that the bytes compare like with like.\n"
               "methods:\n");
    for (int i = 0; i < n; i++) fprintf(f, "  %-10s %s\n", ms[i].name, ms[i].help ? ms[i].help : "");
    if (!n) fprintf(f, "  (none built in)\n");
}

typedef struct entry {
    char label[96];
    char method[256];
    larch_node *cfg;          /* owned */
    char ckpt[4096];
    larch_compress_stats st;
    double *sps, *lat;        /* per round */
} entry;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int parse_int(const char *opt, const char *v, long lo, long hi, int *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || end == v || x < lo || x > hi) {
        fprintf(stderr, "larch compress: %s %s: expected an integer from %ld to %ld\n", opt, v, lo, hi);
        return 0;
    }
    *out = (int)x;
    return 1;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        if ((unsigned char)*s < 0x20) fprintf(f, "\\u%04x", *s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

static void print_table(FILE *f, const entry *e, int n)
{
    fprintf(f, "\n| model | params | nonzero | checkpoint bytes | test accuracy | samples/s (batch %d) | x original "
               "| latency batch 1 (ms) | kernels |\n|---|---|---|---|---|---|---|---|---|\n", e[0].st.batch);
    for (int i = 0; i < n; i++) {
        const larch_compress_stats *s = &e[i].st;
        char acc[32];
        if (isnan(s->accuracy)) snprintf(acc, sizeof acc, "-");
        else snprintf(acc, sizeof acc, "%.2f%%", 100.0 * s->accuracy);
        fprintf(f, "| %s | %ld | %ld | %lld | %s | %.0f | %.2f | %.3f | %s |\n", e[i].label, s->params, s->nonzero,
                s->file_bytes, acc, s->samples_per_s, s->samples_per_s / e[0].st.samples_per_s, s->latency_ms,
                s->kernels);
    }
}

static void write_json(FILE *f, const entry *e, int n)
{
    for (int i = 0; i < n; i++) {
        const larch_compress_stats *s = &e[i].st;
        fprintf(f, "{\"model\": ");
        json_str(f, e[i].label);
        fprintf(f, ", \"method\": ");
        json_str(f, e[i].method);
        fprintf(f, ", \"checkpoint\": ");
        json_str(f, e[i].ckpt);
        fprintf(f, ", \"params\": %ld, \"nonzero\": %ld, \"file_bytes\": %lld, ", s->params, s->nonzero, s->file_bytes);
        if (isnan(s->accuracy)) fprintf(f, "\"accuracy\": null, ");
        else fprintf(f, "\"accuracy\": %.6f, ", s->accuracy);
        fprintf(f, "\"test_samples\": %ld, \"batch\": %d, \"samples_per_s\": %.2f, \"speedup\": %.4f, "
                   "\"latency_ms\": %.4f, \"threads\": %d, \"kernels\": ",
                s->test_samples, s->batch, s->samples_per_s, s->samples_per_s / e[0].st.samples_per_s,
                s->latency_ms, larch_threads_get());
        json_str(f, s->kernels);
        fprintf(f, "}\n");
    }
}

int larch_cmd_compress(int argc, char **argv)
{
    const char *config = NULL, *ckpt = NULL, *out_dir = NULL, *json = NULL, *sets[MAX_SETS];
    const char *methods[MAX_MODELS], *adds[MAX_MODELS];
    int n_sets = 0, n_methods = 0, n_adds = 0, batch = 256, reps = 20, rounds = 3, threads = 0;
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        int next = larch_cli_sets(argc, argv, i, sets, &n_sets, MAX_SETS);
        if (next < 0) return 2;
        if (next > i) { i = next; continue; }
        if (i + 1 < argc && argv[i][0] == '-') {
            const char *o = argv[i], *v = argv[i + 1];
            int ok = 1;
            if (!strcmp(o, "--checkpoint")) ckpt = v;
            else if (!strcmp(o, "--out")) out_dir = v;
            else if (!strcmp(o, "--json")) json = v;
            else if (!strcmp(o, "--method") || !strcmp(o, "--add")) {
                int is_m = o[2] == 'm';
                if ((is_m ? n_methods : n_adds) >= MAX_MODELS - 2) {
                    fprintf(stderr, "larch compress: at most %d of %s\n", MAX_MODELS - 2, o);
                    return 2;
                }
                if (is_m) methods[n_methods++] = v;
                else adds[n_adds++] = v;
            } else if (!strcmp(o, "--batch")) ok = parse_int(o, v, 1, 1 << 16, &batch);
            else if (!strcmp(o, "--reps")) ok = parse_int(o, v, 1, 100000, &reps);
            else if (!strcmp(o, "--rounds")) ok = parse_int(o, v, 1, 1000, &rounds);
            else if (!strcmp(o, "--threads")) ok = parse_int(o, v, 0, 1024, &threads);
            else {
                fprintf(stderr, "larch compress: unknown option '%s'\n", o);
                usage(stderr);
                return 2;
            }
            if (!ok) return 2;
            i += 2;
            continue;
        }
        if (argv[i][0] == '-' || config) {
            fprintf(stderr, "larch compress: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        config = argv[i++];
    }
    if (!config || !ckpt) {
        usage(stderr);
        return 2;
    }
    if (n_methods + n_adds + 1 > MAX_MODELS) {
        fprintf(stderr, "larch compress: at most %d models in one table\n", MAX_MODELS);
        return 2;
    }

    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) {
        larch_cli_error("MPI");
        return 1;
    }
    entry e[MAX_MODELS];
    memset(e, 0, sizeof e);
    int n = 0;
    larch_dataset train, test;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    larch_node *cfg = NULL;
    larch_status s = LARCH_OK;
    if (comm.size != 1)
        s = larch_fail(LARCH_ERR_INVALID, "larch compress runs in one process (started on %d ranks)", comm.size);
    if (!s) s = larch_run_load(config, sets, n_sets, &cfg);

    /* every method spec and --add entry checked before any work */
    const larch_compress_method *mt[MAX_MODELS];
    larch_node *mopts[MAX_MODELS] = {0};
    int need_data = 0;
    for (int k = 0; !s && k < n_methods; k++) {
        if ((s = larch_compress_parse(methods[k], &mt[k], &mopts[k]))) s = larch_fail_context(s, "--method %s", methods[k]);
        else need_data |= mt[k]->needs_data;
    }
    snprintf(e[0].label, sizeof e[0].label, "original");
    snprintf(e[0].method, sizeof e[0].method, "none");
    snprintf(e[0].ckpt, sizeof e[0].ckpt, "%s", ckpt);
    if (!s && !(e[0].cfg = larch_node_clone(cfg))) s = larch_fail(LARCH_ERR_NOMEM, "config");
    n = 1;
    for (int k = 0; !s && k < n_adds; k++) {
        const char *eq = strchr(adds[k], '='), *colon = eq ? strrchr(eq, ':') : NULL;
        if (!eq || !colon || eq == adds[k] || colon == eq + 1 || !colon[1] || (size_t)(eq - adds[k]) >= sizeof e[0].label) {
            s = larch_fail(LARCH_ERR_INVALID, "--add %s: expected LABEL=CONFIG:CHECKPOINT", adds[k]);
            break;
        }
        char path[4096];
        snprintf(path, sizeof path, "%.*s", (int)(colon - eq - 1), eq + 1);
        entry *x = &e[n_methods + 1 + k];
        snprintf(x->label, sizeof x->label, "%.*s", (int)(eq - adds[k]), adds[k]);
        snprintf(x->method, sizeof x->method, "added");
        snprintf(x->ckpt, sizeof x->ckpt, "%s", colon + 1);
        if ((s = larch_run_load(path, NULL, 0, &x->cfg))) s = larch_fail_context(s, "--add %s", adds[k]);
        else if (access(x->ckpt, R_OK)) s = larch_fail(LARCH_ERR_IO, "--add %s: cannot read %s", adds[k], x->ckpt);
    }
    if (!s) s = larch_run_datasets(cfg, &train, &test);
    if (!s) {
        long t = threads ? threads : larch_cfg_int(larch_map_get(cfg, "train"), "threads");
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        larch_threads_set(t > 0 ? (int)t : cores > 0 ? (int)cores : 1);
    }

    char dir[4096];
    if (!s) {
        if (out_dir) snprintf(dir, sizeof dir, "%s", out_dir);
        else {
            const char *base = strrchr(config, '/');
            base = base ? base + 1 : config;
            const char *dot = strrchr(base, '.');
            snprintf(dir, sizeof dir, "runs/%.*s/compress", (int)(dot ? dot - base : (long)strlen(base)), base);
        }
        if (n_methods || n_adds) s = larch_mkdir_p(dir);
    }
    /* The original as a model file like the methods write (parameters and
     * buffers, no optimizer state), so that the bytes compare like with like. */
    if (!s && (n_methods || n_adds)) {
        larch_model *om = NULL;
        larch_node *ocfg = larch_node_clone(cfg);
        larch_compress_out o;
        memset(&o, 0, sizeof o);
        char base[4200];
        snprintf(base, sizeof base, "%s/original", dir);
        if (!ocfg) s = larch_fail(LARCH_ERR_NOMEM, "config");
        if (!s) s = larch_rw_load(ocfg, ckpt, &om);
        if (!s) s = larch_rw_write(ocfg, om, base, &o);
        if (!s) {
            printf("compress: original: the model of %s without optimizer state -> %s\n", ckpt, o.checkpoint);
            snprintf(e[0].ckpt, sizeof e[0].ckpt, "%s", o.checkpoint);
        }
        larch_node_free(o.cfg);
        larch_node_free(ocfg);
        larch_model_free(om);
    }
    larch_compress_src src = {.cfg = cfg, .checkpoint = ckpt, .train_set = &train};
    for (int k = 0; !s && k < n_methods; k++) {
        entry *x = &e[1 + k];
        int dup = 0;
        for (int j = 0; j < k; j++) dup += mt[j] == mt[k];
        snprintf(x->label, sizeof x->label, dup ? "%s-%d" : "%s", mt[k]->name, dup + 1);
        snprintf(x->method, sizeof x->method, "%s", methods[k]);
        char base[4200];
        snprintf(base, sizeof base, "%s/%s", dir, x->label);
        larch_compress_out o;
        memset(&o, 0, sizeof o);
        printf("compress: %s ...\n", methods[k]);
        fflush(stdout);
        if ((s = mt[k]->run(&src, mopts[k], base, &o))) {
            s = larch_fail_context(s, "--method %s", methods[k]);
            larch_node_free(o.cfg);
            break;
        }
        x->cfg = o.cfg;
        snprintf(x->ckpt, sizeof x->ckpt, "%s", o.checkpoint);
        printf("compress: %s: %s -> %s, %s\n", methods[k], o.summary, o.config_path, o.checkpoint);
    }
    n = 1 + n_methods + n_adds;
    /* An --add model from a training checkpoint is measured, like the
     * original, as its model file without optimizer state. */
    for (int k = 0; !s && k < n_adds; k++) {
        entry *x = &e[1 + n_methods + k];
        larch_ckpt_meta meta;
        memset(&meta, 0, sizeof meta);
        if ((s = larch_ckpt_read_meta(x->ckpt, &meta))) {
            s = larch_fail_context(s, "--add %s", adds[k]);
            break;
        }
        int has_state = meta.optimizer[0] != 0;
        larch_ckpt_meta_free(&meta);
        if (!has_state) continue;
        larch_model *am = NULL;
        larch_compress_out o;
        memset(&o, 0, sizeof o);
        char base[4200];
        snprintf(base, sizeof base, "%s/%s", dir, x->label);
        s = larch_rw_load(x->cfg, x->ckpt, &am);
        if (!s) s = larch_rw_write(x->cfg, am, base, &o);
        if (!s) {
            printf("compress: %s: the model of %s without optimizer state -> %s\n", x->label, x->ckpt, o.checkpoint);
            snprintf(x->ckpt, sizeof x->ckpt, "%s", o.checkpoint);
            larch_node_free(x->cfg);
            x->cfg = o.cfg;
            o.cfg = NULL;
        } else {
            s = larch_fail_context(s, "--add %s", adds[k]);
        }
        larch_node_free(o.cfg);
        larch_model_free(am);
    }

    /* measurement: interleaved rounds, accuracy in the first */
    for (int i = 0; !s && i < n; i++) {
        e[i].sps = calloc((size_t)rounds, sizeof(double));
        e[i].lat = calloc((size_t)rounds, sizeof(double));
        if (!e[i].sps || !e[i].lat) s = larch_fail(LARCH_ERR_NOMEM, "timings");
    }
    for (int r = 0; !s && r < rounds; r++)
        for (int i = 0; !s && i < n; i++) {
            larch_compress_stats st;
            if ((s = larch_compress_measure(&comm, e[i].cfg, e[i].ckpt, r == 0 ? &test : NULL, batch, reps, 0, &st))) {
                s = larch_fail_context(s, "measuring %s (%s)", e[i].label, e[i].ckpt);
                break;
            }
            if (r == 0) e[i].st = st;
            e[i].sps[r] = st.samples_per_s;
            e[i].lat[r] = st.latency_ms;
        }
    if (!s) {
        for (int i = 0; i < n; i++) {
            e[i].st.samples_per_s = median(e[i].sps, rounds);
            e[i].st.latency_ms = median(e[i].lat, rounds);
        }
        printf("threads %d, batch %d, %d passes x %d rounds, test samples %ld\n", larch_threads_get(), batch, reps,
               rounds, e[0].st.test_samples);
        print_table(stdout, e, n);
        if (json) {
            FILE *f = fopen(json, "w");
            if (!f) s = larch_fail(LARCH_ERR_IO, "--json %s: cannot open for writing", json);
            else {
                write_json(f, e, n);
                if (fclose(f)) s = larch_fail(LARCH_ERR_IO, "--json %s: write failed", json);
            }
        }
    }
    for (int i = 0; i < MAX_MODELS; i++) {
        larch_node_free(e[i].cfg);
        free(e[i].sps);
        free(e[i].lat);
        larch_node_free(mopts[i]);
    }
    larch_node_free(cfg);
    larch_dataset_free(&train);
    larch_dataset_free(&test);
    if (s) larch_cli_error("compress");
    larch_comm_finalize(&comm);
    return s ? 1 : 0;
}
