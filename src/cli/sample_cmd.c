/* sample_cmd.c - `larch sample`: draws samples from a trained normalizing
 * flow (docs/flows.md): z ~ N(0, T^2 I) at the last node, the split priors at
 * temperature T, x = f^-1(z) through the layers' inverse passes, written as
 * a PNG grid (grayscale for 1 channel, RGB for 3). For a 2-D model (input
 * (1, 1, 2)) the PNG is the learned density exp(log p(x)) on a grid instead,
 * with the samples marked. Every rank computes the same samples; rank 0
 * writes the file. */
#include "cli/cli.h"
#include "core/threads.h"
#include "larch/larch.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SETS 256

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: larch sample CONFIG --checkpoint FILE --png OUT.png [--n N] [--temperature T] [--seed S]\n"
               "                    [--range R] [--set key=value ...]\n"
               "  samples of a normalizing flow (loss type flow_nll): z ~ N(0, T^2 I), x = f^-1(z)\n"
               "  --n N            samples (default 64, at most 4096)\n"
               "  --temperature T  standard deviation multiplier of the priors, 0..10 (default 0.7)\n"
               "  --seed S         noise seed (default train.seed)\n"
               "  --png OUT.png    a grid of the samples (inputs with 1 or 3 channels); for a 2-D model (input\n"
               "                   1x1x2) the learned density on [-R, R]^2 with the samples as white dots\n"
               "  --range R        2-D models: half-width of the plotted square (default 3)\n"
               "usage: larch sample CONFIG --baseline [--set key=value ...]\n"
               "  fits the independent per-pixel categorical baseline (256 levels, add-one smoothing) on the\n"
               "  training split of CONFIG's data and prints its train and test bits/dim\n");
}

static larch_status write_png(const char *path, const unsigned char *img, int w, int h, int channels)
{
    FILE *f = fopen(path, "wb");
    if (!f) return larch_fail(LARCH_ERR_IO, "--png %s: cannot open for writing", path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return larch_fail(LARCH_ERR_IO, "--png %s: writing the PNG failed", path);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int r = 0; r < h; r++) png_write_row(png, (png_const_bytep)(img + (size_t)r * w * channels));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(f)) return larch_fail(LARCH_ERR_IO, "--png %s: write error", path);
    return LARCH_OK;
}

/* The samples x (n, H, W, C) in [0, 1] as a grid with 2-pixel gaps. */
static larch_status image_grid(const char *path, const float *x, int n, larch_shape s)
{
    int cols = (int)ceil(sqrt((double)n)), rows = (n + cols - 1) / cols, gap = 2;
    int W = cols * (s.w + gap) + gap, H = rows * (s.h + gap) + gap;
    unsigned char *img = calloc((size_t)W * H * s.c, 1);
    if (!img) return larch_fail(LARCH_ERR_NOMEM, "PNG image (%d x %d)", W, H);
    for (int k = 0; k < n; k++) {
        int oy = gap + (k / cols) * (s.h + gap), ox = gap + (k % cols) * (s.w + gap);
        for (int i = 0; i < s.h; i++)
            for (int j = 0; j < s.w; j++)
                for (int c = 0; c < s.c; c++) {
                    float v = x[(size_t)k * larch_shape_size(s) + ((size_t)i * s.w + j) * s.c + c];
                    v = v < 0 ? 0 : v > 1 ? 1 : v;
                    img[(((size_t)(oy + i)) * W + ox + j) * s.c + c] = (unsigned char)lrintf(v * 255.0f);
                }
    }
    larch_status st = write_png(path, img, W, H, s.c);
    free(img);
    return st;
}

/* 2-D model: log p(x) on a G x G grid over [-R, R]^2 (rows: y from +R down),
 * as a heat map (normalized to its maximum), samples as white dots. */
static larch_status density_png(const char *path, larch_model *m, int batch, float R, const float *xs, int n,
                                double *mass)
{
    const int G = 200;
    int last = larch_model_n_layers(m);
    while (last > 1 && strcmp(larch_layer_type(larch_model_layer(m, last - 1)), "loss_weights") == 0) last--;
    size_t dz = larch_shape_size(larch_model_node_shape(m, last));
    float *dens = malloc((size_t)G * G * sizeof *dens), *pts = malloc((size_t)batch * 2 * sizeof *pts);
    float *ld = malloc((size_t)batch * sizeof *ld);
    unsigned char *img = malloc((size_t)G * G * 3);
    if (!dens || !pts || !ld || !img) { free(dens); free(pts); free(ld); free(img); return larch_fail(LARCH_ERR_NOMEM, "density grid"); }
    double step = 2.0 * R / G, total = 0;
    float mx = 0;
    for (int k0 = 0; k0 < G * G; k0 += batch) {
        int nb = G * G - k0 < batch ? G * G - k0 : batch;
        for (int k = 0; k < nb; k++) {
            int r = (k0 + k) / G, c = (k0 + k) % G;
            pts[2 * k] = (float)(-R + (c + 0.5) * step);
            pts[2 * k + 1] = (float)(R - (r + 0.5) * step);
        }
        larch_batch b = {.n = nb, .x = pts};
        larch_pass p = {.n = nb};
        larch_model_forward(m, &b, &p);
        larch_model_flow_logdet(m, nb, ld);
        const float *z = larch_model_node_output(m, last);
        for (int k = 0; k < nb; k++) {
            double q = 0;
            for (size_t j = 0; j < dz; j++) q += (double)z[k * dz + j] * z[k * dz + j];
            double lp = -0.5 * q - 0.5 * (double)dz * log(2 * M_PI) + ld[k];
            float d = (float)exp(lp);
            dens[k0 + k] = d;
            total += d * step * step;
            if (d > mx) mx = d;
        }
    }
    for (int k = 0; k < G * G; k++) {   /* a dark-to-bright colour ramp */
        float v = mx > 0 ? dens[k] / mx : 0;
        img[3 * k] = (unsigned char)lrintf(255 * fminf(1, 1.5f * v));
        img[3 * k + 1] = (unsigned char)lrintf(255 * v * v);
        img[3 * k + 2] = (unsigned char)lrintf(255 * fmaxf(0, 0.5f - v) * 0.6f);
    }
    for (int i = 0; i < n; i++) {
        int c = (int)floor((xs[2 * i] + R) / step), r = (int)floor((R - xs[2 * i + 1]) / step);
        if (c < 0 || c >= G || r < 0 || r >= G) continue;
        memset(img + 3 * ((size_t)r * G + c), 255, 3);
    }
    *mass = total;
    larch_status st = write_png(path, img, G, G, 3);
    free(dens); free(pts); free(ld); free(img);
    return st;
}

/* The per-pixel categorical baseline: p_j(k) = (count_j(k) + 1) / (N + 256)
 * over the training split's raw pixels; bits/dim of both splits. */
static int baseline(const char *config, const char *const *sets, int n_sets)
{
    larch_node *cfg = NULL;
    larch_dataset tr, te;
    memset(&tr, 0, sizeof tr);
    memset(&te, 0, sizeof te);
    double *cnt = NULL, t0 = now_s();
    larch_status s = larch_run_load(config, sets, n_sets, &cfg);
    if (!s) s = larch_run_datasets(cfg, &tr, &te);
    if (!s && (!tr.u8 || !te.u8))
        s = larch_fail(LARCH_ERR_INVALID, "--baseline: %s: the data must be 8-bit pixels held in memory", config);
    size_t D = s ? 0 : larch_shape_size(tr.shape);
    if (!s && !(cnt = calloc(D * 256, sizeof *cnt))) s = larch_fail(LARCH_ERR_NOMEM, "baseline counts");
    if (!s) {
        for (int i = 0; i < tr.n; i++)
            for (size_t j = 0; j < D; j++) cnt[j * 256 + tr.u8[(size_t)i * D + j]] += 1;
        for (size_t k = 0; k < D * 256; k++) cnt[k] = -log2((cnt[k] + 1.0) / (tr.n + 256.0));   /* bits */
        double bits[2] = {0, 0};
        const larch_dataset *sp[2] = {&tr, &te};
        for (int q = 0; q < 2; q++) {
            for (int i = 0; i < sp[q]->n; i++)
                for (size_t j = 0; j < D; j++) bits[q] += cnt[j * 256 + sp[q]->u8[(size_t)i * D + j]];
            bits[q] /= (double)sp[q]->n * D;
        }
        printf("baseline: independent per-pixel categorical (256 levels, add-one smoothing) fitted on %d training "
               "samples: train %.4f bits/dim, test %.4f bits/dim (%d test samples, %.2f s)\n", tr.n, bits[0], bits[1],
               te.n, now_s() - t0);
    }
    if (s) larch_cli_error("sample --baseline");
    free(cnt);
    larch_dataset_free(&tr);
    larch_dataset_free(&te);
    larch_node_free(cfg);
    return s ? 1 : 0;
}

int larch_cmd_sample(int argc, char **argv)
{
    const char *config = NULL, *ckpt = NULL, *png = NULL, *sets[MAX_SETS];
    int n_sets = 0, n = 64, seed_set = 0, base = 0;
    double temp = 0.7, range = 3.0;
    unsigned long long seed = 0;
    for (int i = 1; i < argc;) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "--baseline")) { base = 1; i++; continue; }
        int next = larch_cli_sets(argc, argv, i, sets, &n_sets, MAX_SETS);
        if (next < 0) return 2;
        if (next > i) { i = next; continue; }
        const char **opt = !strcmp(argv[i], "--checkpoint") ? &ckpt : !strcmp(argv[i], "--png") ? &png : NULL;
        if (opt && i + 1 < argc) { *opt = argv[i + 1]; i += 2; continue; }
        if ((!strcmp(argv[i], "--n") || !strcmp(argv[i], "--temperature") || !strcmp(argv[i], "--seed") ||
             !strcmp(argv[i], "--range")) && i + 1 < argc) {
            char *end;
            double v = strtod(argv[i + 1], &end);
            int ok = *end == 0 && end != argv[i + 1];
            if (!strcmp(argv[i], "--n")) { ok = ok && v >= 1 && v <= 4096 && v == floor(v); n = (int)v; }
            else if (!strcmp(argv[i], "--temperature")) { ok = ok && v >= 0 && v <= 10; temp = v; }
            else if (!strcmp(argv[i], "--range")) { ok = ok && v > 0 && v <= 1e6; range = v; }
            else { ok = ok && v >= 0 && v == floor(v) && v < 1.8e19; seed = (unsigned long long)v; seed_set = 1; }
            if (!ok) {
                fprintf(stderr, "larch sample: %s %s: expected %s\n", argv[i], argv[i + 1],
                        !strcmp(argv[i], "--n") ? "an integer 1 to 4096" : !strcmp(argv[i], "--temperature") ? "0 to 10"
                        : !strcmp(argv[i], "--range") ? "a number > 0" : "an integer >= 0");
                return 2;
            }
            i += 2;
            continue;
        }
        if (argv[i][0] == '-' || config) {
            fprintf(stderr, "larch sample: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        config = argv[i++];
    }
    if (config && base) return baseline(config, sets, n_sets);
    if (!config || !ckpt || !png) { usage(stderr); return 2; }

    larch_comm comm;
    if (larch_comm_init(&comm, &argc, &argv)) { larch_cli_error("MPI"); return 1; }
    larch_node *cfg = NULL;
    larch_model *m = NULL;
    float *z = NULL, *x = NULL;
    larch_shape in = {0, 0, 0}, zs = {0, 0, 0};
    int classes, last = 0;
    larch_status s = larch_run_load(config, sets, n_sets, &cfg);
    if (!s) s = larch_run_input(cfg, &in, &classes);
    if (!seed_set && !s) seed = (unsigned long long)larch_cfg_int(larch_map_get(cfg, "train"), "seed");
    if (!s) s = larch_model_build(&m, in, larch_run_layers(cfg), larch_map_get(cfg, "loss"),
                                  larch_map_get(cfg, "regularization"), (uint64_t)seed);
    int toy = in.h == 1 && in.w == 1 && in.c == 2;
    if (!s && !larch_model_is_flow(m))
        s = larch_fail(LARCH_ERR_CONFIG, "%s: the model is not a normalizing flow (a chain of dequantize, actnorm, "
                       "invconv, coupling, squeeze and split layers, loss type flow_nll); see docs/flows.md", config);
    if (!s && !toy && in.c != 1 && in.c != 3)
        s = larch_fail(LARCH_ERR_SHAPE, "%s: samples of %dx%dx%d (h x w x c) cannot be drawn as a PNG grid (1 or 3 "
                       "channels, or a 2-D model 1x1x2)", config, in.h, in.w, in.c);
    s = larch_comm_check(&comm, s);
    if (!s) s = larch_ckpt_load(ckpt, &comm, m, NULL, NULL);
    if (!s) {
        larch_threads_set(1);
        last = larch_model_n_layers(m);
        zs = larch_model_node_shape(m, last);
        int plan = toy ? (n > 1024 ? n : 1024) : n;
        s = larch_model_plan(m, plan);
        if (!s && (!(z = malloc((size_t)n * larch_shape_size(zs) * sizeof *z)) ||
                   !(x = malloc((size_t)plan * larch_shape_size(in) * sizeof *x))))
            s = larch_fail(LARCH_ERR_NOMEM, "%d samples", n);
    }
    if (!s) {
        larch_rng r;
        larch_rng_init(&r, (uint64_t)seed, LARCH_RNG_USER, 0x5a3, 0);
        for (size_t k = 0; k < (size_t)n * larch_shape_size(zs); k++) z[k] = (float)temp * larch_rng_normal(&r);
        larch_model_set_flow_temperature(m, (float)temp);
        larch_pass p = {.n = n, .seed = (uint64_t)seed, .step = 0, .sample0 = 0};
        s = larch_model_inverse(m, z, x, &p);
    }
    s = larch_comm_check(&comm, s);
    double mass = 0;
    if (!s && comm.rank == 0) {
        if (toy) {
            float *xs = malloc((size_t)n * 2 * sizeof *xs);
            if (!xs) s = larch_fail(LARCH_ERR_NOMEM, "samples");
            else {
                memcpy(xs, x, (size_t)n * 2 * sizeof *xs);
                s = density_png(png, m, n > 1024 ? n : 1024, (float)range, xs, n, &mass);
                free(xs);
            }
        } else {
            s = image_grid(png, x, n, in);
        }
    }
    s = larch_comm_check(&comm, s);
    if (!s && comm.rank == 0) {
        if (toy)
            printf("sample: %d samples at temperature %g -> %s: the learned density on [-%g, %g]^2 (200 x 200, "
                   "probability mass in the square %.4f) with the samples\n", n, temp, png, range, range, mass);
        else
            printf("sample: %d samples at temperature %g -> %s (%dx%dx%d each, seed %llu)\n", n, temp, png, in.h, in.w,
                   in.c, seed);
    } else if (s && comm.rank == 0) {
        larch_cli_error("sample");
    }
    fflush(stdout);
    free(z);
    free(x);
    larch_model_free(m);
    larch_node_free(cfg);
    larch_comm_finalize(&comm);
    return s ? 1 : 0;
}
