/* attack_cmd.c - `larch attack`: robust test accuracy of a checkpoint under
 * FGSM / PGD for a list of epsilons (docs/adversarial.md). The test samples
 * are spread over the ranks as evaluation spreads them (rank r takes its
 * contiguous part of every global batch; the attack's randomness is keyed by
 * global sample index, so every rank count gives the same numbers); the
 * counts are summed over ranks and rank 0 prints the table, writes JSON
 * lines, the accuracy-vs-eps plot and the image grid (gnuplot). */
#include "cli/cli.h"
#include "core/threads.h"
#include "nn/attack.h"
#include "larch/larch.h"
#include "larch/checkpoint.h"
#include "larch/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SETS 256
#define MAX_EPS 32
#define MAX_ROWS 256
#define GRID_N 8

static void usage(FILE *f)
{
    fprintf(f,
        "usage: larch attack CONFIG --checkpoint FILE [--eps LIST] [--method LIST] [--norm linf|l2]\n"
        "                    [--steps N] [--step-size S] [--restarts R] [--targeted] [--samples N] [--batch N]\n"
        "                    [--transfer CONFIG2:CKPT2] [--sanity] [--json FILE] [--png FILE] [--grid FILE]\n"
        "                    [--set key=value ...]\n"
        "  robust test accuracy of the checkpoint's model under adversarial attacks, one row per method and eps\n"
        "  --eps LIST        radii in raw input units (pixels: 0..1 of the raw image; default 0,0.05,0.1,0.2)\n"
        "  --method LIST     fgsm, pgd or fgsm,pgd (default pgd)\n"
        "  --norm N          linf (default) or l2\n"
        "  --steps N         PGD steps (default 20)\n"
        "  --step-size S     PGD step in raw units (default 2.5 eps / steps)\n"
        "  --restarts R      PGD random restarts (default 1); a sample is robust only if no restart fools it\n"
        "  --targeted        push each sample towards a random other class (also reports the success rate)\n"
        "  --samples N       the first N test samples (default train.eval_samples, 0 = all)\n"
        "  --batch N         samples per pass and rank (default train.eval_batch / ranks)\n"
        "  --transfer C:K    black-box rows: attacks crafted on model C (checkpoint K), scored on this model\n"
        "  --sanity          add PGD rows with twice the steps (same step size), twice the restarts, and at\n"
        "                    the whole valid range (eps 1), and check them (Carlini et al. 2019)\n"
        "  --json FILE       one JSON object per row\n"
        "  --png FILE        accuracy against eps, one line per row label (gnuplot; not the whole-range row)\n"
        "  --grid FILE       clean / adversarial / perturbation images of the first %d samples (gnuplot)\n",
        GRID_N);
}

typedef struct row {
    char label[40];
    larch_attack_opts o;
    int transfer;            /* crafted on the --transfer model */
    double correct, success, seconds;
} row_t;

static int parse_list(const char *arg, double *v, int cap)
{
    int n = 0;
    const char *p = arg;
    while (*p) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || n >= cap || !isfinite(x) || x < 0) return -1;
        v[n++] = x;
        if (*end == ',') end++;
        else if (*end) return -1;
        p = end;
    }
    return n;
}

/* Config + checkpoint -> a model (collective: the checkpoint load). */
static larch_status load_model(const larch_comm *comm, const char *config, const char *const *sets, int n_sets,
                               const char *ckpt, larch_node **cfg, larch_model **m)
{
    larch_shape in;
    int classes;
    larch_status s = larch_run_load(config, sets, n_sets, cfg);
    if (!s) s = larch_run_input(*cfg, &in, &classes);
    uint64_t seed = s ? 0 : (uint64_t)larch_cfg_int(larch_map_get(*cfg, "train"), "seed");
    if (!s) s = larch_model_build(m, in, larch_run_layers(*cfg), larch_map_get(*cfg, "loss"),
                                  larch_map_get(*cfg, "regularization"), seed);
    if (s) larch_fail_context(s, "%s", config);
    s = larch_comm_check(comm, s);
    if (!s) s = larch_ckpt_load(ckpt, comm, *m, NULL, NULL);
    return s;
}

static void argmax_rows(const float *y, int n, int C, int32_t *pred)
{
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < C; k++)
            if (y[(size_t)i * C + k] > y[(size_t)i * C + best]) best = k;
        pred[i] = best;
    }
}

/* Loss 0's predictions of model m on x (n samples). */
static void predict(larch_model *m, int node, int C, const larch_batch *b, const float *x, int32_t *pred)
{
    larch_batch bb = *b;
    bb.x = (float *)x;
    larch_pass p = {.n = b->n, .sample0 = b->sample0};
    larch_model_forward(m, &bb, &p);
    argmax_rows(larch_model_node_output(m, node), b->n, C, pred);
}

static int writable(const char *path, const char *opt)
{
    FILE *f = fopen(path, "w");
    if (!f || fclose(f) != 0) {
        fprintf(stderr, "larch: error: %s %s: cannot write: %s\n", opt, path, strerror(errno));
        return 0;
    }
    return 1;
}

static int run_gnuplot(const char *png, const char *script_head, const char *data, size_t len)
{
    FILE *g = popen("gnuplot 2>&1", "w");
    if (!g) { perror("larch: gnuplot"); return 1; }
    fputs(script_head, g);
    fwrite(data, 1, len, g);
    int rc = pclose(g);
    if (rc != 0) {
        fprintf(stderr, "larch: error: gnuplot failed (exit %d); is it installed? apt-get install gnuplot-nox\n", rc);
        unlink(png);
        return 1;
    }
    fprintf(stderr, "larch: wrote %s\n", png);
    return 0;
}

/* accuracy against eps, one line per method (and transfer) label */
static int plot_curve(const char *png, const char *title, const row_t *rows, int n_rows, double clean)
{
    char *data = NULL, head[10000], names[8][40];
    size_t len = 0;
    int n_names = 0;
    for (int i = 0; i < n_rows; i++) {
        int k = 0;
        if (!strcmp(rows[i].label, "pgd-whole-range")) continue;    /* a check, not a curve: it would stretch the axis */
        while (k < n_names && strcmp(names[k], rows[i].label)) k++;
        if (k == n_names && n_names < 8) snprintf(names[n_names++], sizeof names[0], "%s", rows[i].label);
    }
    FILE *d = open_memstream(&data, &len);
    if (!d) return 1;
    int off = snprintf(head, sizeof head, "set terminal pngcairo size 900,560\nset output '%s'\nset title '%s' noenhanced\n"
                       "set xlabel 'epsilon (raw pixel units)'\nset ylabel 'test accuracy'\nset yrange [0:1]\nset grid\n"
                       "set key top right noenhanced\nplot ", png, title);
    for (int k = 0; k < n_names; k++) {
        off += snprintf(head + off, sizeof head - (size_t)off, "%s'-' using 1:2 with linespoints lw 2 title '%s'",
                        k ? ", " : "", names[k]);
        fprintf(d, "0 %.6f\n", clean);
        for (int i = 0; i < n_rows; i++)
            if (!strcmp(rows[i].label, names[k]) && rows[i].o.eps > 0)
                fprintf(d, "%.6g %.6f\n", rows[i].o.eps, rows[i].correct);
        fprintf(d, "e\n");
    }
    snprintf(head + off, sizeof head - (size_t)off, "\n");
    fclose(d);
    int rc = run_gnuplot(png, head, data, len);
    free(data);
    return rc;
}

/* Rows of samples, columns clean | adversarial | perturbation (grey 0.5 = none). */
static int plot_grid(const char *png, const char *title, const float *clean_u, const float *adv_u, int n,
                     larch_shape s, float eps)
{
    char *data = NULL, head[10000];
    size_t len = 0;
    FILE *d = open_memstream(&data, &len);
    if (!d) return 1;
    const int gap = 2, W = 3 * s.w + 2 * gap, Hh = n * s.h + (n - 1) * gap;
    /* row-major over the whole picture (gnuplot's rgbimage wants a regular grid), white gaps */
    for (int Y = Hh - 1; Y >= 0; Y--) {
        int i = Y / (s.h + gap), yy = Y % (s.h + gap);
        for (int X = 0; X < W; X++) {
            int col = X / (s.w + gap), xx = X % (s.w + gap);
            int rgb[3] = {255, 255, 255};
            if (yy < s.h && xx < s.w)
                for (int c = 0; c < 3; c++) {
                    int ch = s.c == 3 ? c : 0;
                    size_t j = (((size_t)i * s.h + yy) * s.w + xx) * s.c + ch;
                    float v = col == 0 ? clean_u[j] : col == 1 ? adv_u[j]
                            : 0.5f + (adv_u[j] - clean_u[j]) / (2.0f * (eps > 0 ? eps : 1.0f));
                    v = v < 0 ? 0 : v > 1 ? 1 : v;
                    rgb[c] = (int)lrintf(255.0f * v);
                }
            fprintf(d, "%d %d %d %d %d\n", X, Hh - 1 - Y, rgb[0], rgb[1], rgb[2]);
        }
    }
    fprintf(d, "e\n");
    fclose(d);
    snprintf(head, sizeof head, "set terminal pngcairo size %d,%d\nset output '%s'\nset title '%s' noenhanced\n"
             "unset key\nunset tics\nunset border\nset size ratio -1\nset xrange [-0.5:%d]\nset yrange [-0.5:%d]\n"
             "plot '-' using 1:2:3:4:5 with rgbimage\n", W * 6 + 80, Hh * 6 + 80, png, title, W, Hh);
    int rc = run_gnuplot(png, head, data, len);
    free(data);
    return rc;
}

int larch_cmd_attack(int argc, char **argv)
{
    const char *config = NULL, *ckpt = NULL, *json = NULL, *png = NULL, *grid = NULL, *transfer = NULL, *sets[MAX_SETS];
    const char *methods = "pgd", *norm = "linf";
    int n_sets = 0, steps = 20, restarts = 1, targeted = 0, sanity = 0, batch = 0;
    long samples = -1;
    double eps[MAX_EPS] = {0, 0.05, 0.1, 0.2}, step_size = 0;
    int n_eps = 4;
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        int next = larch_cli_sets(argc, argv, i, sets, &n_sets, MAX_SETS);
        if (next < 0) return 2;
        if (next > i) { i = next; continue; }
        if (!strcmp(argv[i], "--targeted")) { targeted = 1; i++; continue; }
        if (!strcmp(argv[i], "--sanity")) { sanity = 1; i++; continue; }
        const char **opt = !strcmp(argv[i], "--checkpoint") ? &ckpt : !strcmp(argv[i], "--json") ? &json
                         : !strcmp(argv[i], "--png") ? &png : !strcmp(argv[i], "--grid") ? &grid
                         : !strcmp(argv[i], "--transfer") ? &transfer : !strcmp(argv[i], "--method") ? &methods
                         : !strcmp(argv[i], "--norm") ? &norm : NULL;
        if (opt && i + 1 < argc) { *opt = argv[i + 1]; i += 2; continue; }
        if (!strcmp(argv[i], "--eps") && i + 1 < argc) {
            n_eps = parse_list(argv[i + 1], eps, MAX_EPS);
            if (n_eps < 1) { fprintf(stderr, "larch attack: --eps %s: expected a comma-separated list of up to %d numbers >= 0\n", argv[i + 1], MAX_EPS); return 2; }
            i += 2;
            continue;
        }
        if (!strcmp(argv[i], "--step-size") && i + 1 < argc) {
            char *end;
            step_size = strtod(argv[i + 1], &end);
            if (*end || !(step_size > 0) || !isfinite(step_size)) { fprintf(stderr, "larch attack: --step-size %s: expected a number > 0\n", argv[i + 1]); return 2; }
            i += 2;
            continue;
        }
        int *iv = !strcmp(argv[i], "--steps") ? &steps : !strcmp(argv[i], "--restarts") ? &restarts
                : !strcmp(argv[i], "--batch") ? &batch : NULL;
        if ((iv || !strcmp(argv[i], "--samples")) && i + 1 < argc) {
            char *end;
            long v = strtol(argv[i + 1], &end, 10);
            long lo = iv ? 1 : 0, hi = iv == &steps ? 100000 : iv == &restarts ? 1000 : iv ? (1 << 20) : 1L << 30;
            if (*end || v < lo || v > hi) { fprintf(stderr, "larch attack: %s %s: expected %ld to %ld\n", argv[i], argv[i + 1], lo, hi); return 2; }
            if (iv) *iv = (int)v; else samples = v;
            i += 2;
            continue;
        }
        if (argv[i][0] == '-' || config) {
            fprintf(stderr, "larch attack: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        config = argv[i++];
    }
    if (!config || !ckpt) { usage(stderr); return 2; }
    int want_fgsm = 0, want_pgd = 0;
    {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", methods);
        for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
            if (!strcmp(t, "fgsm")) want_fgsm = 1;
            else if (!strcmp(t, "pgd")) want_pgd = 1;
            else { fprintf(stderr, "larch attack: --method %s: expected fgsm, pgd or fgsm,pgd\n", methods); return 2; }
        }
        if (!want_fgsm && !want_pgd) { fprintf(stderr, "larch attack: --method: no method given\n"); return 2; }
    }
    larch_attack_norm nm;
    if (!strcmp(norm, "linf")) nm = LARCH_ATTACK_LINF;
    else if (!strcmp(norm, "l2")) nm = LARCH_ATTACK_L2;
    else { fprintf(stderr, "larch attack: --norm %s: expected linf or l2\n", norm); return 2; }
    char tcfg[4200] = "", tckpt[4200] = "";
    if (transfer) {
        const char *colon = strrchr(transfer, ':');
        if (!colon || colon == transfer || !colon[1]) { fprintf(stderr, "larch attack: --transfer %s: expected CONFIG:CHECKPOINT\n", transfer); return 2; }
        snprintf(tcfg, sizeof tcfg, "%.*s", (int)(colon - transfer), transfer);
        snprintf(tckpt, sizeof tckpt, "%s", colon + 1);
    }

    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) { larch_cli_error("MPI"); return 1; }
    int rank0 = comm.rank == 0;
    larch_status s = LARCH_OK;
    if (rank0 && ((json && !writable(json, "--json")) || (png && !writable(png, "--png")) || (grid && !writable(grid, "--grid"))))
        s = larch_fail(LARCH_ERR_IO, "an output file cannot be written");
    s = larch_comm_check(&comm, s);
    larch_node *cfg = NULL, *scfg = NULL;
    larch_model *m = NULL, *src = NULL;
    larch_attack_ws *ws = NULL, *sws = NULL;
    larch_dataset train, test, view;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    memset(&view, 0, sizeof view);
    larch_loader *loader = NULL;
    float *xadv = NULL, *grid_clean = NULL, *grid_adv = NULL;
    int32_t *pred = NULL, *tgt = NULL;
    row_t *rows = calloc(MAX_ROWS, sizeof *rows);
    int n_rows = 0, grid_n = 0, grid_row = -1;
    double clean = 0, n_seen = 0, t_all = larch_comm_wtime();
    if (!s) s = load_model(&comm, config, sets, n_sets, ckpt, &cfg, &m);
    if (!s && transfer) s = load_model(&comm, tcfg, NULL, 0, tckpt, &scfg, &src);
    if (!s) {
        s = larch_run_datasets(cfg, &train, &test);
        if (s) larch_fail_context(s, "the data of %s", config);
    }
    if (!s && src && (larch_model_input_shape(src).h != test.shape.h || larch_model_input_shape(src).w != test.shape.w ||
                      larch_model_input_shape(src).c != test.shape.c))
        s = larch_fail(LARCH_ERR_SHAPE, "--transfer %s: its model's input differs from %s's data", tcfg, config);
    if (!s) {
        long t = larch_cfg_int(larch_map_get(cfg, "train"), "threads");
        long cores = sysconf(_SC_NPROCESSORS_ONLN) / (comm.local_size > 0 ? comm.local_size : 1);
        larch_threads_set(t > 0 ? (int)t : cores > 0 ? (int)cores : 1);
        if (!batch) batch = (int)((larch_cfg_int(larch_map_get(cfg, "train"), "eval_batch") + comm.size - 1) / comm.size);
        if (batch < 1) batch = 256;
        if (samples < 0) samples = larch_cfg_int(larch_map_get(cfg, "train"), "eval_samples");
        view = test;                               /* a view: the first N samples, nothing copied */
        if (samples > 0 && samples < test.n) view.n = (int)samples;
        larch_model_set_input_grad(m, 1);
        s = larch_model_plan(m, batch);
        if (!s) s = larch_attack_ws_create(&ws, m, batch);
        if (!s && src) {
            larch_model_set_input_grad(src, 1);
            s = larch_model_plan(src, batch);
            if (!s) s = larch_attack_ws_create(&sws, src, batch);
            if (s) larch_fail_context(s, "--transfer %s", tcfg);
        }
        size_t in = larch_shape_size(test.shape);
        if (!s && (!(xadv = malloc((size_t)batch * in * sizeof *xadv)) || !(pred = malloc((size_t)batch * sizeof *pred)) ||
                   !(tgt = malloc((size_t)batch * sizeof *tgt)) || !rows ||
                   !(grid_clean = malloc(GRID_N * in * sizeof *grid_clean)) || !(grid_adv = malloc(GRID_N * in * sizeof *grid_adv))))
            s = larch_fail(LARCH_ERR_NOMEM, "attack buffers (batch %d)", batch);
    }
    if (!s) {
        larch_loader_opts lo = {.global_batch = batch * comm.size, .rank = comm.rank, .world = comm.size,
                                .seed = (uint64_t)larch_cfg_int(larch_map_get(cfg, "train"), "seed")};
        s = larch_loader_create(&loader, &view, &lo);
    }
    /* the rows: methods x eps, transfer rows, sanity rows */
    if (!s) {
        larch_attack_opts base = {.norm = nm, .steps = steps, .restarts = restarts, .targeted = targeted, .keep_best = 1,
                                  .seed = (uint64_t)larch_cfg_int(larch_map_get(cfg, "train"), "seed"),
                                  .n_norm = test.n_norm, .mean = test.mean, .std = test.std,
                                  .clip = test.u8 != NULL || (test.ooc && test.ooc_u8), .lo = 0.0f, .hi = 1.0f,
                                  .step_size = (float)step_size};
        for (int tr = 0; tr <= (transfer != NULL); tr++)
            for (int k = 0; k < 2; k++) {
                if (!(k == 0 ? want_fgsm : want_pgd)) continue;
                for (int e = 0; e < n_eps && n_rows < MAX_ROWS; e++) {
                    row_t *r = &rows[n_rows++];
                    r->o = base;
                    r->o.method = k == 0 ? LARCH_ATTACK_FGSM : LARCH_ATTACK_PGD;
                    r->o.random_start = k == 1;
                    r->o.eps = (float)eps[e];
                    r->transfer = tr;
                    if (tr) r->o.keep_best = 0;            /* the source's last iterate, scored on this model */
                    snprintf(r->label, sizeof r->label, "%s%s", tr ? "transfer-" : "", k == 0 ? "fgsm" : "pgd");
                }
            }
        if (sanity) {
            for (int e = 0; e < n_eps && n_rows + 2 < MAX_ROWS; e++) {
                if (eps[e] <= 0) continue;
                larch_attack_opts o = base;
                o.method = LARCH_ATTACK_PGD;
                o.random_start = 1;
                o.eps = (float)eps[e];
                o.step_size = larch_attack_step_size(&o);
                row_t *r = &rows[n_rows++];
                r->o = o;
                r->o.steps = 2 * steps;
                snprintf(r->label, sizeof r->label, "pgd-2x-steps");
                r = &rows[n_rows++];
                r->o = o;
                r->o.restarts = 2 * restarts;
                snprintf(r->label, sizeof r->label, "pgd-2x-restarts");
            }
            row_t *r = &rows[n_rows++];
            r->o = base;
            r->o.method = LARCH_ATTACK_PGD;
            r->o.random_start = 1;
            r->o.eps = base.clip ? 1.0f : 10.0f * (float)eps[n_eps - 1];
            snprintf(r->label, sizeof r->label, "pgd-whole-range");
        }
        for (int k = 0; k < n_rows && !s; k++) s = larch_attack_check(&rows[k].o);
        /* the grid: the strongest white-box row at the largest eps */
        for (int k = 0; k < n_rows; k++)
            if (!rows[k].transfer && strncmp(rows[k].label, "pgd-", 4) &&
                (grid_row < 0 || rows[k].o.eps > rows[grid_row].o.eps ||
                 (rows[k].o.eps == rows[grid_row].o.eps && rows[k].o.method == LARCH_ATTACK_PGD)))
                grid_row = k;
    }
    s = larch_comm_check(&comm, s);
    const int node = s ? 0 : larch_attack_node(m), C = s ? 0 : (int)larch_shape_size(larch_model_node_shape(m, node));
    const size_t in = larch_shape_size(test.shape);
    int steps_l = s ? 0 : larch_loader_steps(loader);
    for (int it = 0; !s && it < steps_l; it++) {
        const larch_batch *b = larch_loader_next(loader, NULL, NULL);
        if (b->n == 0) continue;
        n_seen += b->n;
        predict(m, node, C, b, b->x, pred);
        for (int i = 0; i < b->n; i++) clean += pred[i] == b->label[0][i];
        int g0 = grid_n;                                     /* rank 0's first samples go to the grid */
        if (rank0) {
            for (int i = 0; i < b->n && grid_n < GRID_N; i++, grid_n++)
                for (size_t j = 0; j < in; j++) {
                    int c = test.n_norm == 1 ? 0 : (int)(j % (size_t)test.shape.c);
                    grid_clean[grid_n * in + j] = b->x[i * in + j] * test.std[c] + test.mean[c];
                }
        }
        for (int k = 0; !s && k < n_rows; k++) {
            row_t *r = &rows[k];
            double t0 = larch_comm_wtime();
            if (r->transfer) {
                s = larch_attack_run(src, sws, b, &r->o, xadv, NULL, tgt);
                if (!s) predict(m, node, C, b, xadv, pred);
            } else {
                s = larch_attack_run(m, ws, b, &r->o, xadv, pred, tgt);
            }
            r->seconds += larch_comm_wtime() - t0;
            for (int i = 0; !s && i < b->n; i++) {
                r->correct += pred[i] == b->label[0][i];
                r->success += r->o.targeted && pred[i] == tgt[i];
            }
            if (!s && k == grid_row && rank0)
                for (int i = 0; g0 + i < grid_n; i++)
                    for (size_t j = 0; j < in; j++) {
                        int c = test.n_norm == 1 ? 0 : (int)(j % (size_t)test.shape.c);
                        grid_adv[(g0 + i) * in + j] = xadv[i * in + j] * test.std[c] + test.mean[c];
                    }
        }
    }
    if (!s) s = larch_loader_status(loader);
    /* the sums over ranks (and, in the same collective, whether a rank failed) */
    double *sums = calloc(2 + 2 * (size_t)MAX_ROWS, sizeof *sums);
    if (!sums && !s) s = larch_fail(LARCH_ERR_NOMEM, "sums");
    if (sums) {
        sums[0] = n_seen;
        sums[1] = clean;
        for (int k = 0; k < n_rows; k++) { sums[2 + 2 * k] = rows[k].correct; sums[3 + 2 * k] = rows[k].success; }
    }
    larch_status agreed = larch_comm_agree_sum(&comm, "attack", s, sums ? sums : (double[2]){0, 0}, sums ? 2 + 2 * n_rows : 2);
    if (!agreed && sums) {
        double n = sums[0] > 0 ? sums[0] : 1;
        clean = sums[1] / n;
        for (int k = 0; k < n_rows; k++) { rows[k].correct = sums[2 + 2 * k] / n; rows[k].success = sums[3 + 2 * k] / n; }
    }
    FILE *jf = NULL;
    int warn = 0;
    if (!agreed && rank0) {
        const char *nn = nm == LARCH_ATTACK_LINF ? "linf" : "l2";
        printf("attack: %s with %s: %.0f test sample(s) on %d rank(s); %s norm, pgd %d step(s) x %d restart(s)%s; "
               "eps in raw units (%s)\n", config, ckpt, sums[0], comm.size, nn, steps, restarts,
               targeted ? ", targeted" : "", test.u8 ? "pixels 0..1" : "features, unclipped");
        if (transfer) printf("transfer rows: crafted on %s with %s\n", tcfg, tckpt);
        printf("%-18s %8s %6s %9s %8s %9s %9s\n", "method", "eps", "steps", "step", "restarts", "accuracy", targeted ? "success" : "seconds");
        printf("%-18s %8g %6s %9s %8s %9.4f %9s\n", "clean", 0.0, "-", "-", "-", clean, "-");
        if (json) jf = fopen(json, "w");
        if (jf) fprintf(jf, "{\"method\": \"clean\", \"eps\": 0, \"accuracy\": %.6f, \"samples\": %.0f, \"checkpoint\": \"%s\"}\n",
                        clean, sums[0], ckpt);
        for (int k = 0; k < n_rows; k++) {
            const row_t *r = &rows[k];
            int st = r->o.method == LARCH_ATTACK_FGSM ? 1 : r->o.steps;
            int rs = r->o.method == LARCH_ATTACK_FGSM ? 1 : r->o.restarts;
            printf("%-18s %8g %6d %9.4g %8d %9.4f ", r->label, r->o.eps, st, larch_attack_step_size(&r->o), rs, r->correct);
            if (targeted) printf("%9.4f\n", r->success);
            else printf("%9.2f\n", r->seconds);
            char succ[32] = "null";
            if (targeted) snprintf(succ, sizeof succ, "%.6f", r->success);
            if (jf)
                fprintf(jf, "{\"method\": \"%s\", \"attack\": \"%s\", \"norm\": \"%s\", \"eps\": %.6g, \"steps\": %d, "
                        "\"step_size\": %.6g, \"restarts\": %d, \"random_start\": %s, \"targeted\": %s, \"accuracy\": %.6f, "
                        "\"success\": %s, \"samples\": %.0f, \"seconds_rank0\": %.3f, \"checkpoint\": \"%s\", \"source\": %s%s%s}\n",
                        r->label, r->o.method == LARCH_ATTACK_FGSM ? "fgsm" : "pgd", nn, r->o.eps, st,
                        larch_attack_step_size(&r->o), rs, r->o.random_start ? "true" : "false",
                        targeted ? "true" : "false", r->correct, succ, sums[0], r->seconds, ckpt,
                        r->transfer ? "\"" : "", r->transfer ? tckpt : "null", r->transfer ? "\"" : "");
        }
        /* sanity checks (Carlini et al. 2019) */
        printf("sanity checks:\n");
        for (int k = 0; k < n_rows; k++) {
            const row_t *r = &rows[k];
            if (r->transfer || strncmp(r->label, "pgd", 3) || r->label[3]) continue;
            for (int j = 0; j < n_rows; j++) {
                const row_t *q = &rows[j];
                if (q->transfer || strcmp(q->label, "fgsm") || q->o.eps != r->o.eps) continue;
                int ok = r->correct <= q->correct;
                warn += !ok;
                printf("  %-7s pgd <= fgsm at eps %g: %.4f vs %.4f\n", ok ? "ok" : "WARNING", r->o.eps, r->correct, q->correct);
            }
            for (int j = 0; j < n_rows; j++) {
                const row_t *q = &rows[j];
                if (q->o.eps != r->o.eps || (strcmp(q->label, "pgd-2x-steps") && strcmp(q->label, "pgd-2x-restarts"))) continue;
                int ok = q->correct <= r->correct;
                warn += !ok;
                printf("  %-7s %s does not raise accuracy at eps %g: %.4f vs %.4f\n", ok ? "ok" : "WARNING", q->label,
                       r->o.eps, q->correct, r->correct);
            }
        }
        for (int k = 0; k < n_rows; k++) {
            const row_t *r = &rows[k], *prev = NULL;
            for (int j = 0; j < k; j++)
                if (!strcmp(rows[j].label, r->label) && (!prev || rows[j].o.eps > prev->o.eps) && rows[j].o.eps < r->o.eps) prev = &rows[j];
            if (prev && r->correct > prev->correct + 1e-12) {
                warn++;
                printf("  WARNING %s: accuracy rises from %.4f at eps %g to %.4f at eps %g\n", r->label, prev->correct,
                       prev->o.eps, r->correct, r->o.eps);
            }
            if (!strcmp(r->label, "pgd-whole-range")) {
                int ok = r->correct <= 0.02 + 1.0 / (sums[0] > 0 ? sums[0] : 1);
                warn += !ok;
                printf("  %-7s accuracy falls to ~0 at eps %g: %.4f\n", ok ? "ok" : "WARNING", r->o.eps, r->correct);
            }
            if (r->transfer) {
                for (int j = 0; j < n_rows; j++) {
                    const row_t *q = &rows[j];
                    if (q->transfer || strcmp(q->label, r->label + 9) || q->o.eps != r->o.eps) continue;
                    printf("  %-7s black-box %s at eps %g: %.4f (white-box %.4f)\n",
                           r->correct >= q->correct ? "ok" : "note", r->label + 9, r->o.eps, r->correct, q->correct);
                }
            }
        }
        if (!warn) printf("  no warnings\n");
        printf("time: %.1f s\n", larch_comm_wtime() - t_all);
        if (jf && fclose(jf) != 0) agreed = larch_fail(LARCH_ERR_IO, "--json %s: %s", json, strerror(errno));
        if (json && !jf) agreed = larch_fail(LARCH_ERR_IO, "--json %s: %s", json, strerror(errno));
        fflush(stdout);
        char title[600];
        snprintf(title, sizeof title, "%s: %s (%s, pgd %d steps)", config, ckpt, nn, steps);
        for (char *c = title; *c; c++) if (*c == '\'') *c = ' ';
        if (!agreed && png && plot_curve(png, title, rows, n_rows, clean)) agreed = LARCH_ERR_IO;
        if (!agreed && grid && grid_row >= 0) {
            snprintf(title, sizeof title, "clean | %s eps %g | perturbation (grey = 0)", rows[grid_row].label, rows[grid_row].o.eps);
            if (plot_grid(grid, title, grid_clean, grid_adv, grid_n, test.shape, rows[grid_row].o.eps)) agreed = LARCH_ERR_IO;
        }
        if (agreed && agreed != LARCH_ERR_IO) larch_cli_error("attack");
    } else if (agreed && rank0) {
        larch_cli_error("attack");
    }
    free(sums);
    larch_loader_free(loader);
    larch_attack_ws_free(ws);
    larch_attack_ws_free(sws);
    free(xadv); free(pred); free(tgt); free(rows); free(grid_clean); free(grid_adv);
    larch_dataset_free(&train);
    larch_dataset_free(&test);
    larch_model_free(m);
    larch_model_free(src);
    larch_node_free(cfg);
    larch_node_free(scfg);
    larch_comm_finalize(&comm);
    return agreed ? 1 : 0;
}
