/* ntk_cmd.c - `larch ntk`: neural tangent kernels of a config's model
 * (docs/ntk.md). The empirical NTK of the first N samples of a split, its
 * Jacobian rows spread over the ranks (src/train/ntk.c), and the analytic
 * infinite-width NTK and NNGP of a ReLU MLP with kernel regression on
 * Fashion-MNIST (src/nn/ntk.c). Rank 0 prints and writes the HDF5 file. */
#include "cli/cli.h"
#include "core/threads.h"
#include "io/ntk_h5.h"
#include "nn/ntk.h"
#include "train/ntk.h"
#include "larch/larch.h"
#include "larch/checkpoint.h"
#include "larch/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SETS 256

static void usage(FILE *f)
{
    fprintf(f,
        "usage: larch ntk CONFIG --samples N [--checkpoint FILE] [--split train|test] [--out FILE.h5]\n"
        "                 [--kernel empirical|analytic|both] [--analytic] [--scale none|init] [--full]\n"
        "                 [--block B] [--top T] [--regress M] [--ridge R] [--set key=value ...]\n"
        "  neural tangent kernels of CONFIG's model on the first N samples of a split (docs/ntk.md)\n"
        "  --samples N      samples (1 .. the split's size; required)\n"
        "  --checkpoint F   the parameters (default: the initialization drawn from train.seed)\n"
        "  --split S        train (default) or test\n"
        "  --kernel K       empirical (default): Theta = J J^T by backward passes, rows spread over the ranks;\n"
        "                   analytic: the infinite-width NTK and NNGP of a ReLU MLP; both: also their distance\n"
        "  --analytic       the same as --kernel analytic\n"
        "  --scale S        none (default): J over the parameters as they are; init: each dense weight's\n"
        "                   columns times its initialization std (the NTK parameterization; biases 0), the\n"
        "                   kernel the analytic one describes (the default with --kernel both)\n"
        "  --full           also the full (N K) x (N K) kernel over every pair of outputs\n"
        "  --block B        samples per block of the assembly (default 8; fixes the result's rounding)\n"
        "  --top T          eigenvalues printed (default 5)\n"
        "  --regress M      kernel regression with the analytic NTK and NNGP (one-hot targets, the N train\n"
        "                   samples) scored on the first M test samples, with the network's accuracy on them\n"
        "                   (its parameters: --checkpoint or the initialization) and its agreement with each\n"
        "                   kernel's predictions (needs --kernel analytic)\n"
        "  --ridge R        regression ridge, relative to the mean diagonal (default 1e-4)\n"
        "  --gd-steps T     with --regress: also the linearized network (the analytic NTK, starting from the\n"
        "                   network's initial outputs) after T full-batch gradient-descent steps on the mse\n"
        "                   loss (batch N) at --gd-lr ETA, the learning rate of the NTK parameterization\n"
        "                   (optim.lr x lr_mult / initialization variance; docs/ntk.md)\n"
        "  --out F          write the kernels, eigenvalues and predictions to F (HDF5)\n");
}

static int parse_long(const char *opt, const char *v, long lo, long hi, long *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "larch ntk: %s %s: expected an integer from %ld to %ld\n", opt, v, lo, hi);
        return 0;
    }
    *out = x;
    return 1;
}

/* The model's last layer (not the loss-state layers finalize appends). */
static int last_node(const larch_model *m)
{
    int node = larch_model_n_layers(m);
    while (node > 1 && (strcmp(larch_layer_type(larch_model_layer(m, node - 1)), "loss_weights") == 0 ||
                        strcmp(larch_layer_type(larch_model_layer(m, node - 1)), "loss_centers") == 0))
        node--;
    return node;
}

/* The first n samples of ds, normalized as training normalizes them (the
 * loader in order, no augmentation), into x (n, dim). */
static larch_status first_samples(const larch_dataset *ds, int n, uint64_t seed, float *x, int32_t *labels)
{
    larch_dataset view = *ds;
    view.n = n;
    larch_loader_opts lo = {.global_batch = n, .rank = 0, .world = 1, .shuffle = 0, .drop_last = 0, .seed = seed,
                            .prefetch = 0};
    larch_loader *l = NULL;
    larch_status s = larch_loader_create(&l, &view, &lo);
    if (s) return s;
    const larch_batch *b = larch_loader_next(l, NULL, NULL);
    s = larch_loader_status(l);
    if (!s && (!b || b->n != n)) s = larch_fail(LARCH_ERR_INVALID, "ntk: the loader gave %d of %d samples", b ? b->n : 0, n);
    if (!s) {
        memcpy(x, b->x, (size_t)n * larch_shape_size(ds->shape) * sizeof *x);
        for (int i = 0; i < n; i++) labels[i] = b->label[0] ? b->label[0][i] : -1;
    }
    larch_loader_free(l);
    return s;
}

/* The eval-mode outputs of `node` for n samples x, in double. */
static larch_status forward_all(larch_model *m, int node, const float *x, int n, uint64_t seed, double *out)
{
    const int bs = n < 256 ? n : 256, K = (int)larch_shape_size(larch_model_node_shape(m, node));
    const size_t dim = larch_shape_size(larch_model_input_shape(m));
    larch_status s = larch_model_plan(m, bs);
    for (int lo = 0; !s && lo < n; lo += bs) {
        int nb = n - lo < bs ? n - lo : bs;
        larch_batch b;
        memset(&b, 0, sizeof b);
        b.n = nb;
        b.x = (float *)(x + (size_t)lo * dim);
        larch_pass p = {.n = nb, .train = 0, .seed = seed};
        larch_model_forward(m, &b, &p);
        const float *y = larch_model_node_output(m, node);
        for (size_t j = 0; j < (size_t)nb * K; j++) out[(size_t)lo * K + j] = y[j];
    }
    return s;
}

static double frob_rel(const double *a, const double *ref, size_t n)
{
    double d = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) { d += (a[i] - ref[i]) * (a[i] - ref[i]); r += ref[i] * ref[i]; }
    return r > 0.0 ? sqrt(d / r) : INFINITY;
}

static void print_spectrum(const char *what, const double *ev, int n, int top)
{
    double tr = 0.0;
    for (int i = 0; i < n; i++) tr += ev[i];
    printf("  %s: trace %.6g, eigenvalues top", what, tr);
    for (int i = 0; i < top && i < n; i++) printf(" %.6g", ev[i]);
    printf(", smallest %.6g, condition number ", ev[n - 1]);
    if (ev[n - 1] > 0.0) printf("%.6g\n", ev[0] / ev[n - 1]);
    else printf("inf (smallest <= 0)\n");
}

static void argmax(const double *y, int n, int k, int32_t *out)
{
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int c = 1; c < k; c++) if (y[(size_t)i * k + c] > y[(size_t)i * k + best]) best = c;
        out[i] = best;
    }
}

int larch_cmd_ntk(int argc, char **argv)
{
    const char *config = NULL, *ckpt = NULL, *split = "train", *out = NULL, *kernel = "empirical", *scale_arg = NULL;
    const char *sets[MAX_SETS];
    int n_sets = 0, full = 0;
    long samples = 0, block = 8, top = 5, regress = 0, gd_steps = 0;
    double ridge = 1e-4, gd_lr = 0.0;
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        int next = larch_cli_sets(argc, argv, i, sets, &n_sets, MAX_SETS);
        if (next < 0) return 2;
        if (next > i) { i = next; continue; }
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--analytic")) { kernel = "analytic"; i++; continue; }
        if (!strcmp(a, "--full")) { full = 1; i++; continue; }
        const char **sopt = !strcmp(a, "--checkpoint") ? &ckpt : !strcmp(a, "--split") ? &split : !strcmp(a, "--out") ? &out
                          : !strcmp(a, "--kernel") ? &kernel : !strcmp(a, "--scale") ? &scale_arg : NULL;
        if (sopt && v) { *sopt = v; i += 2; continue; }
        long *lopt = !strcmp(a, "--samples") ? &samples : !strcmp(a, "--block") ? &block : !strcmp(a, "--top") ? &top
                   : !strcmp(a, "--regress") ? &regress : !strcmp(a, "--gd-steps") ? &gd_steps : NULL;
        if (lopt && v) {
            if (!parse_long(a, v, lopt == &top ? 0 : 1, 1L << 24, lopt)) return 2;
            i += 2;
            continue;
        }
        if ((!strcmp(a, "--ridge") || !strcmp(a, "--gd-lr")) && v) {
            char *end;
            double d = strtod(v, &end);
            if (*end || !(d >= 0.0 && d <= 1e6)) { fprintf(stderr, "larch ntk: %s %s: expected 0 to 1e6\n", a, v); return 2; }
            *(a[2] == 'r' ? &ridge : &gd_lr) = d;
            i += 2;
            continue;
        }
        if (a[0] == '-' || config) {
            fprintf(stderr, "larch ntk: unexpected argument '%s'%s\n", a, sopt || lopt ? " (missing value)" : "");
            usage(stderr);
            return 2;
        }
        config = argv[i++];
    }
    if (!config || !samples) {
        fprintf(stderr, "larch ntk: %s\n", !config ? "missing CONFIG" : "missing --samples N");
        usage(stderr);
        return 2;
    }
    int want_emp = !strcmp(kernel, "empirical") || !strcmp(kernel, "both");
    int want_ana = !strcmp(kernel, "analytic") || !strcmp(kernel, "both");
    if (!want_emp && !want_ana) { fprintf(stderr, "larch ntk: --kernel %s: expected empirical, analytic or both\n", kernel); return 2; }
    if (strcmp(split, "train") && strcmp(split, "test")) { fprintf(stderr, "larch ntk: --split %s: expected train or test\n", split); return 2; }
    if (scale_arg && strcmp(scale_arg, "none") && strcmp(scale_arg, "init")) {
        fprintf(stderr, "larch ntk: --scale %s: expected none or init\n", scale_arg);
        return 2;
    }
    int scale_init = scale_arg ? !strcmp(scale_arg, "init") : !strcmp(kernel, "both");
    if (want_emp && want_ana && !scale_init) {
        fprintf(stderr, "larch ntk: --kernel both compares with the analytic kernel, which describes --scale init\n");
        return 2;
    }
    if ((gd_steps > 0) != (gd_lr > 0.0) || (gd_steps && !regress)) {
        fprintf(stderr, "larch ntk: --gd-steps and --gd-lr go together, with --regress\n");
        return 2;
    }
    if (regress && (want_emp || strcmp(split, "train"))) {
        fprintf(stderr, "larch ntk: --regress needs --kernel analytic and the train split (it fits the N train samples)\n");
        return 2;
    }

    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) { larch_cli_error("MPI"); return 1; }
    larch_node *cfg = NULL;
    larch_model *m = NULL;
    larch_dataset train, test;
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    larch_shape in;
    int classes = 0, node = 0, K = 0, N = (int)samples, M = (int)regress;
    uint64_t seed = 0;
    size_t P = 0, dim = 0;
    float *x = NULL, *xt = NULL, *scale = NULL;
    int32_t *labels = NULL, *tlabels = NULL;
    double *theta = NULL, *tr = NULL, *ev = NULL, *evf = NULL, *ana = NULL, *nngp = NULL, *eva = NULL;
    double *Y = NULL, *Kx = NULL, *Sx = NULL, *pred_ntk = NULL, *pred_nngp = NULL, *pred_net = NULL, *pred_gd = NULL;
    double gd_loss = NAN, *f0 = NULL;
    double rel = NAN, jac_s = 0, gemm_s = 0;
    larch_ntk_mlp mlp;
    larch_status s = larch_run_load(config, sets, n_sets, &cfg);
    if (!s) s = larch_run_input(cfg, &in, &classes);
    if (!s) seed = (uint64_t)larch_cfg_int(larch_map_get(cfg, "train"), "seed");
    if (!s) s = larch_model_build(&m, in, larch_run_layers(cfg), larch_map_get(cfg, "loss"),
                                  larch_map_get(cfg, "regularization"), seed);
    if (s) larch_fail_context(s, "%s", config);
    if (!s) {
        long t = larch_cfg_int(larch_map_get(cfg, "train"), "threads");
        long cores = sysconf(_SC_NPROCESSORS_ONLN) / (comm.local_size > 0 ? comm.local_size : 1);
        larch_threads_set(t > 0 ? (int)t : cores > 0 ? (int)cores : 1);
        node = last_node(m);
        K = (int)larch_shape_size(larch_model_node_shape(m, node));
        larch_model_flat_params(m, &P);
        dim = larch_shape_size(in);
        if (want_ana) s = larch_ntk_mlp_describe(m, node, &mlp);
        if (s) larch_fail_context(s, "--kernel %s: %s", kernel, config);
    }
    s = larch_comm_check(&comm, s);
    if (!s) {
        s = larch_run_datasets(cfg, &train, &test);
        if (s) larch_fail_context(s, "the data of %s", config);
    }
    const larch_dataset *ds = !strcmp(split, "train") ? &train : &test;
    if (!s && N > ds->n)
        s = larch_fail(LARCH_ERR_INVALID, "--samples %d: the %s split of %s has %d samples", N, split, config, ds->n);
    if (!s && M > test.n)
        s = larch_fail(LARCH_ERR_INVALID, "--regress %d: the test split of %s has %d samples", M, config, test.n);
    if (!s && (!(x = malloc((size_t)N * dim * sizeof *x)) || !(labels = malloc((size_t)N * sizeof *labels))))
        s = larch_fail(LARCH_ERR_NOMEM, "ntk: %d samples", N);
    if (!s) s = first_samples(ds, N, seed, x, labels);
    if (!s && M && (!(xt = malloc((size_t)M * dim * sizeof *xt)) || !(tlabels = malloc((size_t)M * sizeof *tlabels))))
        s = larch_fail(LARCH_ERR_NOMEM, "ntk: %d test samples", M);
    if (!s && M) s = first_samples(&test, M, seed, xt, tlabels);
    /* --gd-steps: the network's initial function on both sets (before the checkpoint replaces it) */
    if (!s && gd_steps && comm.rank == 0) {
        if (!(f0 = malloc(((size_t)N + M) * K * sizeof *f0))) s = larch_fail(LARCH_ERR_NOMEM, "ntk: initial outputs");
        if (!s) s = forward_all(m, node, x, N, seed, f0);
        if (!s) s = forward_all(m, node, xt, M, seed, f0 + (size_t)N * K);
    }
    s = larch_comm_check(&comm, s);
    if (!s && ckpt) s = larch_ckpt_load(ckpt, &comm, m, NULL, NULL);   /* collective */
    s = larch_comm_check(&comm, s);

    /* the empirical kernel (collective) */
    size_t NK = (size_t)N * K;
    if (!s && want_emp) {
        if (!(theta = malloc(NK * NK * sizeof *theta)) || !(tr = malloc((size_t)N * N * sizeof *tr)) ||
            !(ev = malloc((size_t)N * sizeof *ev)) || !(scale = scale_init ? malloc(P * sizeof *scale) : malloc(1)) ||
            (full && !(evf = malloc(NK * sizeof *evf))))
            s = larch_fail(LARCH_ERR_NOMEM, "ntk: the kernel of %d samples x %d outputs", N, K);
        if (!s && scale_init) s = larch_ntk_init_scale(m, scale);
        if (!s) s = larch_model_plan(m, 1);
        s = larch_comm_check(&comm, s);
        if (!s) s = larch_ntk_empirical(m, node, x, N, scale_init ? scale : NULL, (int)block, &comm, theta, &jac_s, &gemm_s);
        if (!s) {
            for (int i = 0; i < N; i++)            /* the mean over outputs: (1/K) sum_k Theta[iK+k, jK+k] */
                for (int j = 0; j < N; j++) {
                    double v = 0.0;
                    for (int k = 0; k < K; k++) v += theta[((size_t)i * K + k) * NK + (size_t)j * K + k];
                    tr[(size_t)i * N + j] = v / K;
                }
            if (comm.rank == 0) s = larch_ntk_eigvals(tr, N, ev);
            if (!s && full && comm.rank == 0) s = larch_ntk_eigvals(theta, (int)NK, evf);
        }
        s = larch_comm_check(&comm, s);
    }
    /* the analytic kernels and the regression (rank 0) */
    if (!s && want_ana && comm.rank == 0) {
        if (!(ana = malloc((size_t)N * N * sizeof *ana)) || !(nngp = malloc((size_t)N * N * sizeof *nngp)) ||
            !(eva = malloc((size_t)N * sizeof *eva)))
            s = larch_fail(LARCH_ERR_NOMEM, "ntk: analytic kernels of %d samples", N);
        if (!s) s = larch_ntk_analytic(&mlp, x, N, x, N, ana, nngp);
        if (!s) s = larch_ntk_eigvals(ana, N, eva);
        if (!s && want_emp) rel = frob_rel(tr, ana, (size_t)N * N);
        if (!s && M) {
            if (!(Y = calloc((size_t)N * K, sizeof *Y)) || !(Kx = malloc((size_t)M * N * sizeof *Kx)) ||
                !(Sx = malloc((size_t)M * N * sizeof *Sx)) || !(pred_ntk = malloc((size_t)M * K * sizeof *pred_ntk)) ||
                !(pred_nngp = malloc((size_t)M * K * sizeof *pred_nngp)))
                s = larch_fail(LARCH_ERR_NOMEM, "ntk: regression on %d x %d samples", N, M);
            for (int i = 0; !s && i < N; i++) {
                if (labels[i] < 0 || labels[i] >= K)
                    s = larch_fail(LARCH_ERR_INVALID, "--regress: sample %d has label %d, outside the model's %d outputs", i, labels[i], K);
                else Y[(size_t)i * K + labels[i]] = 1.0;
            }
            if (!s) s = larch_ntk_analytic(&mlp, xt, M, x, N, Kx, Sx);
            if (!s) s = larch_ntk_regress(ana, N, Y, K, Kx, M, ridge, pred_ntk);
            if (!s) s = larch_ntk_regress(nngp, N, Y, K, Sx, M, ridge, pred_nngp);
            if (!s && gd_steps) {
                if (!(pred_gd = malloc((size_t)M * K * sizeof *pred_gd))) s = larch_fail(LARCH_ERR_NOMEM, "ntk: predictions");
                /* from the network's initial function f0: fit the residual Y - f0 and add f0 back */
                for (size_t j = 0; !s && j < (size_t)N * K; j++) Y[j] -= f0[j];
                if (!s) s = larch_ntk_gd_predict(ana, N, Y, K, Kx, M, 2.0 * gd_lr / ((double)K * N), gd_steps, pred_gd, &gd_loss);
                for (size_t j = 0; !s && j < (size_t)M * K; j++) pred_gd[j] += f0[(size_t)N * K + j];
                for (size_t j = 0; !s && j < (size_t)N * K; j++) Y[j] += f0[j];
            }
            if (s) larch_fail_context(s, "--regress %d", M);
        }
    }
    s = larch_comm_check(&comm, s);
    /* the network's predictions on the M test samples (rank 0) */
    if (!s && M && comm.rank == 0) {
        if (!(pred_net = malloc((size_t)M * K * sizeof *pred_net))) s = larch_fail(LARCH_ERR_NOMEM, "ntk: predictions");
        if (!s) s = forward_all(m, node, xt, M, seed, pred_net);
    }
    s = larch_comm_check(&comm, s);

    if (!s && comm.rank == 0) {
        printf("ntk: %d sample(s) of the %s split of %s, %d output(s), %zu parameter floats, %s, %d rank(s)\n", N, split,
               config, K, P, ckpt ? ckpt : "initialization (train.seed)", comm.size);
        if (want_emp) {
            printf("  empirical NTK (mean over outputs, scale %s): Jacobian %.2f s, products %.2f s (rank 0)\n",
                   scale_init ? "init" : "none", jac_s, gemm_s);
            print_spectrum("empirical", ev, N, (int)top);
            if (full) print_spectrum("full (N K x N K)", evf, (int)NK, (int)top);
        }
        if (want_ana) {
            printf("  analytic infinite-width NTK of the ReLU MLP (%d dense layers, per output)\n", mlp.n_dense);
            print_spectrum("analytic", eva, N, (int)top);
            if (want_emp) printf("  relative Frobenius error ||empirical - analytic|| / ||analytic|| = %.6g\n", rel);
        }
        int32_t *a = NULL, *b = NULL, *c = NULL, *g = NULL;
        if (M) {
            a = malloc((size_t)M * sizeof *a);
            b = malloc((size_t)M * sizeof *b);
            c = malloc((size_t)M * sizeof *c);
            g = malloc((size_t)M * sizeof *g);
            if (!a || !b || !c || !g) s = larch_fail(LARCH_ERR_NOMEM, "ntk: predictions");
        }
        if (!s && M) {
            argmax(pred_ntk, M, K, a);
            argmax(pred_nngp, M, K, b);
            if (pred_net) argmax(pred_net, M, K, c);
            long ca = 0, cb = 0, cc = 0, ag_a = 0, ag_b = 0;
            for (int i = 0; i < M; i++) {
                ca += a[i] == tlabels[i];
                cb += b[i] == tlabels[i];
                if (pred_net) { cc += c[i] == tlabels[i]; ag_a += a[i] == c[i]; ag_b += b[i] == c[i]; }
            }
            printf("  regression (%d train -> %d test, ridge %g): NTK accuracy %.4f, NNGP accuracy %.4f", N, M, ridge,
                   (double)ca / M, (double)cb / M);
            if (pred_net)
                printf("; network accuracy %.4f, agreement NTK/network %.4f, NNGP/network %.4f", (double)cc / M,
                       (double)ag_a / M, (double)ag_b / M);
            printf("\n");
            if (pred_gd) {
                argmax(pred_gd, M, K, g);
                long cg = 0, ag = 0;
                for (int i = 0; i < M; i++) { cg += g[i] == tlabels[i]; ag += pred_net && g[i] == c[i]; }
                printf("  linearized network after %ld gradient-descent steps (eta %g, batch %d): train loss %.6g, "
                       "test accuracy %.4f", gd_steps, gd_lr, N, gd_loss, (double)cg / M);
                if (pred_net) printf(", agreement with the network %.4f", (double)ag / M);
                printf("\n");
            }
        }
        if (!s && out) {
            larch_h5_array arr[16];
            int na = 0;
            if (want_emp) {
                arr[na++] = (larch_h5_array){"ntk", tr, NULL, N, N};
                arr[na++] = (larch_h5_array){"eigenvalues", ev, NULL, N, 0};
                if (full) {
                    arr[na++] = (larch_h5_array){"ntk_full", theta, NULL, (int)NK, (int)NK};
                    arr[na++] = (larch_h5_array){"eigenvalues_full", evf, NULL, (int)NK, 0};
                }
            }
            if (want_ana) {
                arr[na++] = (larch_h5_array){"analytic_ntk", ana, NULL, N, N};
                arr[na++] = (larch_h5_array){"analytic_nngp", nngp, NULL, N, N};
                arr[na++] = (larch_h5_array){"analytic_eigenvalues", eva, NULL, N, 0};
            }
            arr[na++] = (larch_h5_array){"labels", NULL, labels, N, 0};
            if (M) {
                arr[na++] = (larch_h5_array){"regress_ntk", pred_ntk, NULL, M, K};
                arr[na++] = (larch_h5_array){"regress_nngp", pred_nngp, NULL, M, K};
                if (pred_net) arr[na++] = (larch_h5_array){"regress_network", pred_net, NULL, M, K};
                if (pred_gd) arr[na++] = (larch_h5_array){"regress_ntk_gd", pred_gd, NULL, M, K};
                arr[na++] = (larch_h5_array){"test_labels", NULL, tlabels, M, 0};
            }
            larch_h5_attr at[] = {
                {"config", config, 0}, {"checkpoint", ckpt ? ckpt : "", 0}, {"split", split, 0},
                {"scale", scale_init ? "init" : "none", 0}, {"kernel", kernel, 0}, {"samples", NULL, N},
                {"outputs", NULL, K}, {"parameters", NULL, (double)P}, {"ranks", NULL, comm.size},
                {"block", NULL, (double)block}, {"rel_error", NULL, rel}, {"ridge", NULL, ridge},
                {"gd_steps", NULL, (double)gd_steps}, {"gd_lr", NULL, gd_lr}, {"gd_train_loss", NULL, gd_loss},
            };
            s = larch_ntk_h5_write(out, arr, na, at, (int)(sizeof at / sizeof at[0]));
            if (!s) printf("  wrote %s\n", out);
        }
        free(a);
        free(b);
        free(c);
        free(g);
    }
    s = larch_comm_check(&comm, s);
    if (s && comm.rank == 0) larch_cli_error("ntk");
    fflush(stdout);
    free(x); free(xt); free(scale); free(labels); free(tlabels);
    free(theta); free(tr); free(ev); free(evf); free(ana); free(nngp); free(eva);
    free(Y); free(Kx); free(Sx); free(pred_ntk); free(pred_nngp); free(pred_net); free(pred_gd); free(f0);
    larch_dataset_free(&train);
    larch_dataset_free(&test);
    larch_model_free(m);
    larch_node_free(cfg);
    larch_comm_finalize(&comm);
    return s ? 1 : 0;
}
