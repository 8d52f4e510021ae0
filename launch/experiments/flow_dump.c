/* flow_dump.c - one training-mode pass of a flow through the public API,
 * dumped for launch/experiments/flow_vs_torch.py: the first N training
 * images (as the loader gives them, k / 255 with data.mean 0, std 1), the
 * dequantized input (the output of layer 0: the noise of (train.seed, STEP,
 * sample index)), z, the per-sample bits/dim, the batch-mean loss and the
 * gradient of that loss with respect to every parameter.
 *   cc -O2 -Iinclude launch/experiments/flow_dump.c -Lbuild -llarch -Wl,-rpath,$PWD/build -o build/flow_dump
 *   build/flow_dump CONFIG CHECKPOINT OUT_DIR [N=16] [STEP=0]
 * OUT_DIR/manifest.txt lists "name count" per raw little-endian float32 file
 * OUT_DIR/<name>.f32 (parameter gradients as grad.<layer>.<tensor>).
 */
#include "larch/larch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static FILE *manifest;
static const char *outdir;

static int dump(const char *name, const float *v, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.f32", outdir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(v, sizeof *v, n, f) != n) { fprintf(stderr, "flow_dump: cannot write %s\n", path); if (f) fclose(f); return 1; }
    fclose(f);
    fprintf(manifest, "%s %zu\n", name, n);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s CONFIG CHECKPOINT OUT_DIR [N=16] [STEP=0]\n", argv[0]);
        return 2;
    }
    int N = argc > 4 ? atoi(argv[4]) : 16;
    unsigned step = argc > 5 ? (unsigned)atoi(argv[5]) : 0;
    outdir = argv[3];
    mkdir(outdir, 0777);
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s/manifest.txt", outdir);
    if (!(manifest = fopen(mpath, "w"))) { fprintf(stderr, "flow_dump: cannot write %s\n", mpath); return 1; }
    larch_comm comm;
    larch_node *cfg = NULL;
    larch_model *m = NULL;
    larch_dataset tr, te;
    memset(&tr, 0, sizeof tr);
    memset(&te, 0, sizeof te);
    larch_shape in;
    int classes;
    larch_status s = larch_comm_init(&comm, &argc, &argv);
    if (!s) s = larch_run_load(argv[1], NULL, 0, &cfg);
    if (!s) s = larch_run_input(cfg, &in, &classes);
    uint64_t seed = s ? 0 : (uint64_t)larch_cfg_int(larch_map_get(cfg, "train"), "seed");
    if (!s) s = larch_model_build(&m, in, larch_run_layers(cfg), larch_map_get(cfg, "loss"),
                                  larch_map_get(cfg, "regularization"), seed);
    if (!s) s = larch_ckpt_load(argv[2], &comm, m, NULL, NULL);
    if (!s) s = larch_model_plan(m, N);
    if (!s) s = larch_run_datasets(cfg, &tr, &te);
    if (!s && !tr.u8) s = larch_fail(LARCH_ERR_INVALID, "flow_dump: the data must be 8-bit pixels in memory");
    if (s) { fprintf(stderr, "flow_dump: %s\n", larch_errmsg()); return 1; }
    size_t D = larch_shape_size(in);
    float *x = malloc((size_t)N * D * sizeof *x), *ld = malloc((size_t)N * sizeof *ld), *bpd = malloc((size_t)N * sizeof *bpd);
    for (size_t k = 0; k < (size_t)N * D; k++) x[k] = (float)tr.u8[k] / 255.0f;   /* the loader's (v / 255 - 0) / 1 */
    larch_batch b = {.n = N, .x = x};
    larch_pass p = {N, 1, seed, step, 0, 0, NULL};
    larch_model_forward(m, &b, &p);
    double loss = larch_model_loss(m, &b, 1.0f / (float)N, NULL) / N;
    larch_model_flow_logdet(m, N, ld);
    int last = larch_model_n_layers(m);
    size_t Dz = larch_shape_size(larch_model_node_shape(m, last));
    const float *z = larch_model_node_output(m, last);
    float *zc = malloc((size_t)N * Dz * sizeof *zc), *deq = malloc((size_t)N * D * sizeof *deq);
    memcpy(zc, z, (size_t)N * Dz * sizeof *zc);
    memcpy(deq, larch_model_node_output(m, 1), (size_t)N * D * sizeof *deq);
    for (int i = 0; i < N; i++) {
        double q = 0;
        for (size_t j = 0; j < Dz; j++) q += (double)z[i * Dz + j] * z[i * Dz + j];
        bpd[i] = (float)((0.5 * q + 0.5 * (double)Dz * log(2 * M_PI) - ld[i]) / ((double)D * log(2.0)));
    }
    larch_model_backward(m, &p);
    float lf = (float)loss;
    int bad = dump("x", x, (size_t)N * D) || dump("deq", deq, (size_t)N * D) || dump("z", zc, (size_t)N * Dz) ||
              dump("bpd", bpd, (size_t)N) || dump("logdet", ld, (size_t)N) || dump("loss", &lf, 1);
    for (int i = 0; i < larch_model_n_params(m) && !bad; i++) {
        const larch_param *pr = larch_model_param(m, i);
        char name[300];
        snprintf(name, sizeof name, "grad.%s", pr->name);
        bad = dump(name, larch_model_grad_data(m, i), pr->size);
    }
    fclose(manifest);
    printf("flow_dump: %d samples, step %u, loss %.6f bits/dim -> %s\n", N, step, loss, outdir);
    free(x); free(ld); free(bpd); free(zc); free(deq);
    larch_dataset_free(&tr);
    larch_dataset_free(&te);
    larch_model_free(m);
    larch_node_free(cfg);
    larch_comm_finalize(&comm);
    return bad;
}
