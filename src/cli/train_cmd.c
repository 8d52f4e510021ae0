/* train_cmd.c - `larch train` and `larch config`. */
#include "cli/cli.h"
#include "larch/larch.h"
#include "larch/train.h"
#include "larch/optim_cfg.h"
#include "train/groups.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETS 256

int larch_cli_sets(int argc, char **argv, int i, const char **sets, int *n_sets, int cap)
{
    if (!strcmp(argv[i], "--set") || !strcmp(argv[i], "-s")) {
        if (i + 1 >= argc) { fprintf(stderr, "larch: --set needs key=value\n"); return -1; }
        if (*n_sets >= cap) { fprintf(stderr, "larch: too many --set options\n"); return -1; }
        sets[(*n_sets)++] = argv[i + 1];
        return i + 2;
    }
    if (!strncmp(argv[i], "--set=", 6)) {
        if (*n_sets >= cap) { fprintf(stderr, "larch: too many --set options\n"); return -1; }
        sets[(*n_sets)++] = argv[i] + 6;
        return i + 1;
    }
    return i;
}

void larch_cli_error(const char *what)
{
    fprintf(stderr, "larch: error: %s%s%s\n", what ? what : "", what ? ": " : "", larch_errmsg());
}

int larch_cli_warnings(const larch_node *cfg)
{
    larch_warnings w = {0};
    larch_status s = larch_run_warnings(cfg, &w);
    for (int i = 0; i < w.n; i++) fprintf(stderr, "larch: warning: %s\n", w.msg[i]);
    larch_warnings_free(&w);
    if (s) larch_cli_error("collecting warnings");
    return s != LARCH_OK;
}

static void train_usage(FILE *f, int eval)
{
    if (eval)
        fprintf(f, "usage: larch eval CONFIG --checkpoint FILE [--set key=value ...] [--out DIR]\n"
                   "  evaluates the parameters of a checkpoint on the config's test set\n"
                   "  --checkpoint FILE  a checkpoint (ckpt-<step>.h5) of the config's model\n"
                   "  --set k=v          override any key of CONFIG\n"
                   "  --out DIR          also write DIR/metrics.jsonl (default: print only)\n"
                   "With --fewshot N,K or --zeroshot TABLE it evaluates a layer's embeddings on held-out classes\n"
                   "instead (larch eval --fewshot 5,1 --help; docs/fewshot.md).\n");
    else
        fprintf(f, "usage: larch train CONFIG [--set key=value ...] [--out DIR]\n"
                   "  CONFIG       a YAML experiment config (see launch/configs/)\n"
                   "  --set k=v    override any key, e.g. --set train.epochs=2 --set model.0.units=512\n"
                   "  --out DIR    output directory (default runs/<config name>)\n"
                   "With dist.groups > 1 or a sweep section it trains every variant (OUT/<variant>/) and writes\n"
                   "OUT/summary.jsonl (docs/groups.md).\n"
                   "On SIGTERM, SIGINT or SIGUSR1 every rank finishes its step, a checkpoint is written and\n"
                   "larch exits with status %d; checkpoint.resume=auto continues from it (a signal during\n"
                   "start-up stops before the first step, same status; a second SIGINT ends at once).\n"
                   "Under mpirun use launch/mpirun.sh, or send SIGUSR1 to mpirun (docs/distributed.md).\n",
                LARCH_EXIT_PREEMPTED);
}

/* Default output directory: runs/<config file name without .yaml>. */
static void default_out(const char *config, char *out, size_t len)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", config);
    char *base = basename(tmp);
    char *dot = strrchr(base, '.');
    if (dot && dot != base) *dot = '\0';
    snprintf(out, len, "runs/%s", base);
}

/* `larch train` and `larch eval` share their arguments and their run. */
static int train_or_eval(int argc, char **argv, int eval)
{
    const char *config = NULL, *out = NULL, *ckpt = NULL, *sets[MAX_SETS];
    const char *cmd = eval ? "eval" : "train";
    int n_sets = 0;
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { train_usage(stdout, eval); return 0; }
        int next = larch_cli_sets(argc, argv, i, sets, &n_sets, MAX_SETS);
        if (next < 0) return 2;
        if (next > i) { i = next; continue; }
        if (!strcmp(argv[i], "--out") && i + 1 < argc) { out = argv[i + 1]; i += 2; continue; }
        if (eval && !strcmp(argv[i], "--checkpoint") && i + 1 < argc) { ckpt = argv[i + 1]; i += 2; continue; }
        if (argv[i][0] == '-' || config) {
            fprintf(stderr, "larch %s: unexpected argument '%s'\n", cmd, argv[i]);
            train_usage(stderr, eval);
            return 2;
        }
        config = argv[i++];
    }
    if (!config || (eval && !ckpt)) { train_usage(stderr, eval); return 2; }
    char out_buf[1100];
    if (!out && !eval) { default_out(config, out_buf, sizeof out_buf); out = out_buf; }

    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) { larch_cli_error("MPI"); return 1; }
    larch_node *cfg = NULL;
    larch_status s = larch_comm_check(&comm, larch_run_load(config, sets, n_sets, &cfg));
    if (!s && comm.rank == 0) larch_cli_warnings(cfg);      /* once, not once per rank */
    if (!s && !eval && larch_groups_wanted(cfg)) {   /* dist.groups / sweep: many runs (docs/groups.md) */
        larch_node_free(cfg);
        larch_groups_opts go = {.config = config, .sets = sets, .n_sets = n_sets, .out_dir = out, .log = stdout};
        larch_variant_result *r = NULL;
        larch_variant *v = NULL;
        int nv = 0, failed = 0;
        s = larch_groups_run(&go, &comm, &r, &v, &nv, &failed);
        int stopped = 0;                         /* a stop signal: resume with checkpoint.resume=auto */
        for (int i = 0; !s && i < nv; i++) stopped |= !r[i].ran || r[i].status == LARCH_ERR_INTERRUPTED;
        if (s && comm.rank == 0) larch_cli_error(NULL);
        else if (failed && comm.rank == 0) fprintf(stderr, "larch: error: %d of %d variant(s) failed or did not run\n", failed, nv);
        free(r);
        free(v);
        fflush(stdout);
        larch_comm_finalize(&comm);
        return s ? 1 : stopped ? LARCH_EXIT_PREEMPTED : failed ? 1 : 0;
    }
    larch_train_result res;
    if (!s) {
        larch_train_opts opts = {out, stdout, eval, ckpt, !eval};
        s = larch_train(cfg, &comm, &opts, &res);
    }
    int status = s == LARCH_OK ? 0 : s == LARCH_ERR_INTERRUPTED ? LARCH_EXIT_PREEMPTED : 1;
    if (s && larch_comm_broken(&comm)) {            /* the other ranks cannot learn of it: end them */
        larch_node_free(cfg);
        larch_comm_abort(&comm, 1, larch_errmsg());
    }
    if (s == LARCH_ERR_INTERRUPTED && comm.rank == 0) printf("larch: %s\n", larch_errmsg());
    else if (s && comm.rank == 0) larch_cli_error(NULL);
    char acc[48] = "";                            /* none for a loss on float targets */
    if (!s && isfinite(res.test_accuracy)) snprintf(acc, sizeof acc, ", test accuracy %.4f", res.test_accuracy);
    if (!s && comm.rank == 0 && eval)
        printf("eval: %s: test loss %.4f%s\n", ckpt, res.test_loss, acc);
    else if (!s && comm.rank == 0)
        printf("done: %ld steps in %.1f s (%.0f samples/s in the steps, %.0f wall); test loss %.4f%s; outputs in %s%s%s\n",
               res.steps, res.wall_seconds, res.samples_per_s,
               res.wall_seconds > 0 ? (double)(res.steps - res.resumed_from) * larch_cfg_int(larch_map_get(cfg, "train"), "batch_size") / res.wall_seconds : 0.0,
               res.test_loss, acc, out,
               res.checkpoint[0] ? "; checkpoint " : "", res.checkpoint);
    fflush(stdout);
    larch_node_free(cfg);
    larch_comm_finalize(&comm);
    return status;
}

int larch_cmd_train(int argc, char **argv) { return train_or_eval(argc, argv, 0); }
int larch_cmd_eval(int argc, char **argv) { return train_or_eval(argc, argv, 1); }

/* Prints a schema as commented YAML: every key, its default, type and range. */
static void print_schema(const larch_key *keys, int indent)
{
    for (const larch_key *k = keys; k->name; k++) {
        char type[96] = "";
        switch (k->type) {
        case LARCH_T_INT: case LARCH_T_INTS: case LARCH_T_FLOAT: case LARCH_T_FLOATS: {
            const char *t = k->type == LARCH_T_INT ? "int" : k->type == LARCH_T_INTS ? "list of int"
                          : k->type == LARCH_T_FLOAT ? "number" : "list of numbers";
            if (k->min <= k->max) snprintf(type, sizeof type, "%s in [%g, %g]", t, k->min, k->max);
            else snprintf(type, sizeof type, "%s", t);
            if (k->choices && strlen(type) + strlen(k->choices) + 5 < sizeof type)   /* a list, or a word ("off") */
                strcat(strcat(type, " or "), k->choices);
            break;
        }
        case LARCH_T_BOOL: snprintf(type, sizeof type, "true|false"); break;
        case LARCH_T_STRING: snprintf(type, sizeof type, "text"); break;
        case LARCH_T_STRINGS: snprintf(type, sizeof type, "list of text"); break;
        case LARCH_T_ENUM: snprintf(type, sizeof type, "%s", k->choices); break;
        case LARCH_T_MAP: snprintf(type, sizeof type, "section"); break;
        case LARCH_T_ANY: snprintf(type, sizeof type, "see below"); break;
        }
        if (k->type == LARCH_T_MAP) {
            printf("%*s%s:%*s# %s\n", indent, "", k->name, 1, "", k->help ? k->help : "");
            print_schema(k->sub, indent + 2);
        } else {
            char line[256];
            snprintf(line, sizeof line, "%*s%s: %s", indent, "", k->name, k->def ? k->def : "(required)");
            printf("%-44s # %s; %s\n", line, type, k->help ? k->help : "");
        }
    }
}

static void config_help(void)
{
    printf("usage: larch config CONFIG [--set key=value ...]\n"
           "Validates CONFIG (with overrides) and prints it resolved, every default filled in.\n"
           "Unknown keys, wrong types and out-of-range values are errors naming file, line and key.\n\n"
           "# Every key of an experiment config, with its default:\n");
    print_schema(larch_run_keys, 0);
    printf("\n# optim.groups: a list of parameter groups, applied in order (docs/optimizers.md):\n");
    print_schema(larch_optim_group_keys, 2);
    printf("\n# model as a mapping, to initialize from a checkpoint (docs/transfer.md):\n"
           "model:\n");
    print_schema(larch_model_map_keys, 2);
    printf("\n# model: a list of layers. Every layer takes `type`, an optional `name` (default\n"
           "# <type><index>) and `input: NAME` or `inputs: [NAME, ...]` (default: the previous\n"
           "# layer; `input` is the model input). Layer types and their keys:\n");
    const larch_cfg_layer *const *types;
    int n = larch_cfg_layer_types(&types);
    for (int i = 0; i < n; i++) {
        printf("- type: %s\n", types[i]->type);
        print_schema(types[i]->keys, 2);
    }
    printf("\n# loss: a mapping or a list of them (default: softmax_ce on the last layer):\n");
    print_schema(larch_loss_keys, 2);
    printf("\n# regularization: a list of penalties coef * sum |w|^q, or (tie) coef * sum ||A - B||^2 over layer pairs:\n");
    print_schema(larch_penalty_keys, 2);
}

int larch_cmd_config(int argc, char **argv)
{
    const char *config = NULL, *sets[MAX_SETS];
    int n_sets = 0;
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { config_help(); return 0; }
        int next = larch_cli_sets(argc, argv, i, sets, &n_sets, MAX_SETS);
        if (next < 0) return 2;
        if (next > i) { i = next; continue; }
        if (argv[i][0] == '-' || config) { fprintf(stderr, "larch config: unexpected argument '%s'\n", argv[i]); return 2; }
        config = argv[i++];
    }
    if (!config) { fprintf(stderr, "usage: larch config CONFIG [--set key=value ...]\n"); return 2; }
    larch_node *cfg = NULL;
    if (larch_run_load(config, sets, n_sets, &cfg)) { larch_cli_error(NULL); return 1; }
    larch_cli_warnings(cfg);
    /* the model, losses and penalties are validated by building them */
    larch_shape shape;
    int classes;
    larch_model *m = NULL;
    larch_status s = larch_run_input(cfg, &shape, &classes);
    if (!s) s = larch_model_build(&m, shape, larch_run_layers(cfg), larch_map_get(cfg, "loss"),
                                  larch_map_get(cfg, "regularization"), 0);
    larch_optim *o = NULL;                       /* parameter groups must match the model */
    if (!s) s = larch_optim_create_cfg(&o, m, larch_map_get(cfg, "optim"));
    larch_optim_free(o);
    larch_model_free(m);
    if (s) { larch_cli_error(NULL); larch_node_free(cfg); return 1; }
    s = larch_cfg_write(cfg, stdout);
    larch_node_free(cfg);
    if (s) { larch_cli_error(NULL); return 1; }
    return 0;
}
