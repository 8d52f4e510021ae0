/* test_prune.c - unstructured magnitude pruning and distillation:
 * the Zhu & Gupta schedule against values computed here, per-tensor and
 * global thresholds on small tensors (ties to the lower position), masks
 * held through optimizer steps (weights, gradients and state zero), the
 * checkpoint round trip of masks and deflated sparse tensors, damaged mask
 * data named in the error, the `prune` compression method, the
 * distillation loss against its formula and finite differences, and
 * larch_train in this process: distillation with alpha 0 is training alone,
 * the teacher's errors, the prune keys' errors. */
#include "check.h"
#include "io/ckpt_internal.h"
#include "larch/larch.h"
#include "larch/compress.h"
#include "nn/loss.h"
#include "nn/model_internal.h"
#include "optim/prune.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static larch_model *mlp(int in, int h, int out)
{
    larch_model *m = NULL;
    CHECK_OK(larch_model_create(&m, (larch_shape){1, 1, in}));
    larch_dense_opts d1 = LARCH_DENSE_DEFAULTS, d2 = LARCH_DENSE_DEFAULTS;
    d1.units = h;
    d2.units = out;
    CHECK_OK(larch_model_add_dense(m, "fc1", NULL, &d1));
    CHECK_OK(larch_model_add_dense(m, "out", NULL, &d2));
    CHECK_OK(larch_model_add_loss(m, NULL));
    CHECK_OK(larch_model_finalize(m));
    larch_rng rng;                                   /* distinct random values */
    larch_rng_init(&rng, 11, LARCH_RNG_USER, (uint32_t)(in * 7 + h), 0);
    for (size_t i = 0; i < m->n_floats; i++) m->param[i] = 0.1f * larch_rng_normal(&rng);
    return m;
}

static const larch_param *param(const larch_model *m, const char *name)
{
    return &m->params[larch_model_param_index(m, name)];
}

static void test_schedule(void)
{
    /* s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3, t0 = 10, dt = 5, end 30: n = 4 */
    const double si = 0.1, sf = 0.8;
    for (long t = 0; t <= 40; t++) {
        double want;
        if (t < 10) want = 0.0;
        else if (t >= 30) want = sf;
        else {
            double u = 1.0 - (double)(t - 10) / 20.0;
            want = sf + (si - sf) * u * u * u;
        }
        double got = larch_prune_schedule(si, sf, 10, 30, 5, t);
        CHECK(fabs(got - want) < 1e-15, "t %ld: %.17g, want %.17g", t, got, want);
    }
    CHECK(fabs(larch_prune_schedule(si, sf, 10, 30, 5, 15) - (0.8 - 0.7 * 0.421875)) < 1e-15, "t 15");
    CHECK(larch_prune_schedule(0.9, 0.9, 0, 0, 1, 0) == 0.9, "one-shot at t0");
    CHECK(larch_prune_schedule(0.0, 0.5, 0, 22, 10, 20) == 0.5, "n = 2: t0 + n dt = 20 reaches s_f");

    larch_model *m = mlp(4, 4, 2);
    larch_pruner *p = NULL;
    larch_prune_opts o = LARCH_PRUNE_DEFAULTS;
    o.sparsity = 0.8, o.initial_sparsity = 0.1, o.start_step = 10, o.end_step = 30, o.every = 5;
    CHECK_OK(larch_pruner_create(&p, m, &o, 100));
    int due = 0;
    for (long t = 0; t < 100; t++) due += larch_pruner_due(p, t);
    CHECK(due == 5 && larch_pruner_due(p, 10) && larch_pruner_due(p, 30) && !larch_pruner_due(p, 12), "due %d", due);
    larch_pruner_free(p);
    o.end_step = -1;                                 /* three quarters of 100 steps */
    CHECK_OK(larch_pruner_create(&p, m, &o, 100));
    CHECK(p->o.end_step == 75 && larch_pruner_due(p, 75) && !larch_pruner_due(p, 80), "end -1 -> %ld", p->o.end_step);
    larch_pruner_free(p);
    CHECK(m->prune_mask == NULL, "free clears the model's mask");

    /* every promised error names the key */
    larch_prune_opts bad = o;
    bad.sparsity = 1.0;
    CHECK_FAIL(larch_pruner_create(&p, m, &bad, 100), LARCH_ERR_INVALID, "prune.sparsity");
    bad = o, bad.initial_sparsity = 0.9;
    CHECK_FAIL(larch_pruner_create(&p, m, &bad, 100), LARCH_ERR_INVALID, "prune.initial_sparsity");
    bad = o, bad.end_step = 5;
    CHECK_FAIL(larch_pruner_create(&p, m, &bad, 100), LARCH_ERR_INVALID, "prune.end_step");
    bad = o, bad.every = 0;
    CHECK_FAIL(larch_pruner_create(&p, m, &bad, 100), LARCH_ERR_INVALID, "prune.every");
    const char *nolayer[] = {"conv*"};
    bad = o, bad.layers = nolayer, bad.n_layers = 1;
    CHECK_FAIL(larch_pruner_create(&p, m, &bad, 100), LARCH_ERR_INVALID, "prune.layers: 'conv*'");
    larch_model_free(m);
}

static void test_thresholds(void)
{
    larch_model *m = mlp(4, 2, 2);          /* fc1.weight (2, 4), out.weight (2, 2) */
    float *w1 = m->param + param(m, "fc1.weight")->offset, *w2 = m->param + param(m, "out.weight")->offset;
    const float a[8] = {0.5f, -0.1f, 0.3f, 0.1f, -0.7f, 0.2f, 0.05f, 0.9f}, b[4] = {0.01f, -0.02f, 2.0f, 0.03f};
    float *bias = m->param + param(m, "fc1.bias")->offset;
    bias[0] = 0.0001f;                      /* biases are never pruned */
    larch_pruner *p = NULL;
    larch_prune_opts o = LARCH_PRUNE_DEFAULTS;
    o.sparsity = 0.5, o.initial_sparsity = 0.5, o.start_step = 0, o.end_step = 0;
    CHECK_OK(larch_pruner_create(&p, m, &o, 10));
    memcpy(w1, a, sizeof a);
    memcpy(w2, b, sizeof b);
    larch_pruner_update(p, 0.5, NULL);
    /* per tensor: 4 of fc1 (|.| 0.05, 0.1 at 1 and 3 (tie: both), 0.2), 2 of out (0.01, 0.02) */
    const float want1[8] = {0.5f, 0, 0.3f, 0, -0.7f, 0, 0, 0.9f}, want2[4] = {0, 0, 2.0f, 0.03f};
    CHECK(memcmp(w1, want1, sizeof want1) == 0 && memcmp(w2, want2, sizeof want2) == 0, "per-tensor masks");
    CHECK(bias[0] == 0.0001f, "the bias is kept");
    CHECK(fabs(larch_pruner_sparsity(p) - 0.5) < 1e-12, "sparsity %g", larch_pruner_sparsity(p));
    larch_pruner_free(p);

    /* global: 6 of the 12 smallest over both tensors: 0.01 0.02 0.03 0.05 0.1 0.1 */
    o.global = 1;
    CHECK_OK(larch_pruner_create(&p, m, &o, 10));
    memcpy(w1, a, sizeof a);
    memcpy(w2, b, sizeof b);
    larch_pruner_update(p, 0.5, NULL);
    const float g1[8] = {0.5f, 0, 0.3f, 0, -0.7f, 0.2f, 0, 0.9f}, g2[4] = {0, 0, 2.0f, 0};
    CHECK(memcmp(w1, g1, sizeof g1) == 0 && memcmp(w2, g2, sizeof g2) == 0, "global masks");
    /* ties go to the lower flat position: 5 of 8 equal values prune the first 5 */
    larch_pruner_update(p, 0.0, NULL);
    for (int i = 0; i < 8; i++) w1[i] = (i % 2 ? -1.0f : 1.0f);
    for (int i = 0; i < 4; i++) w2[i] = 3.0f;
    larch_pruner_update(p, 5.0 / 12.0, NULL);
    int first5 = 1;
    for (int i = 0; i < 8; i++) first5 &= (i < 5) == (w1[i] == 0.0f);
    CHECK(first5 && w2[0] == 3.0f, "ties to the lower position");
    larch_pruner_free(p);

    /* layers: only out */
    const char *only[] = {"o*"};
    o.global = 0, o.layers = only, o.n_layers = 1;
    CHECK_OK(larch_pruner_create(&p, m, &o, 10));
    CHECK(p->n_tensors == 1 && p->tensor[0] == larch_model_param_index(m, "out.weight"), "layers selects out");
    larch_pruner_free(p);
    larch_model_free(m);
}

/* Masks hold through optimizer steps: the pruned weights, their gradients
 * and their momentum stay exactly zero. */
static void test_steps(void)
{
    larch_model *m = mlp(8, 16, 3);
    larch_optim_opts oo = larch_optim_defaults_for(LARCH_OPT_SGD);
    oo.lr = 0.1, oo.momentum = 0.9, oo.weight_decay = 0.01;
    larch_optim *opt = NULL;
    CHECK_OK(larch_optim_create(&opt, m, &oo));
    larch_rng rng;
    larch_rng_init(&rng, 5, LARCH_RNG_USER, 1, 2);
    for (int s = 0; s < 3; s++) {                    /* momentum before pruning */
        for (size_t i = 0; i < m->n_floats; i++) m->grad[i] = larch_rng_normal(&rng);
        larch_optim_step(opt, 0.1f);
    }
    larch_pruner *p = NULL;
    larch_prune_opts o = LARCH_PRUNE_DEFAULTS;
    o.sparsity = 0.7;
    CHECK_OK(larch_pruner_create(&p, m, &o, 10));
    larch_pruner_update(p, 0.7, opt);
    const larch_param *w = param(m, "fc1.weight");
    size_t pruned = 0, bad = 0;
    for (int s = 0; s < 5; s++) {
        for (size_t i = 0; i < m->n_floats; i++) m->grad[i] = larch_rng_normal(&rng);
        larch_pruner_mask_grad(p);
        larch_optim_step(opt, 0.1f);
        /* SGD with zero gradient and zero momentum leaves w = 0 without the apply */
        for (size_t j = 0; j < w->size; j++)
            if (!m->prune_mask[w->offset + j]) bad += m->param[w->offset + j] != 0.0f;
        larch_pruner_apply(p);
    }
    for (size_t j = 0; j < w->size; j++) {
        if (m->prune_mask[w->offset + j]) continue;
        pruned++;
        bad += m->param[w->offset + j] != 0.0f || opt->state[0][opt->state_offset[larch_model_param_index(m, "fc1.weight")] + j] != 0.0f;
    }
    CHECK(pruned == (size_t)floor(0.7 * (double)w->size + 0.5) && bad == 0, "%zu pruned, %zu nonzero weights or momenta", pruned, bad);
    larch_pruner_free(p);
    larch_optim_free(opt);
    larch_model_free(m);
}

/* Writes the checkpoint of m (with optimizer o) of step `step` into dir/sub. */
static void save(const larch_comm *c, const char *sub, larch_model *m, larch_optim *o, char *path, size_t len)
{
    char d[400];
    snprintf(d, sizeof d, "%s/%s", dir, sub);
    larch_ckpt_meta meta;
    memset(&meta, 0, sizeof meta);
    meta.step = 1, meta.epoch = 0, meta.sampler_step = 1, meta.samples_seen = 8, meta.world_size = 1;
    meta.global_batch = 8, meta.sched_step = 1, meta.sched_total_steps = 10, meta.steps_per_epoch = 100;
    snprintf(meta.run_id, sizeof meta.run_id, "0123456789abcdef");
    meta.lineage = "0123456789abcdef:0";
    if (o) o->t = 1;
    CHECK_OK(larch_ckpt_save(d, 0, c, m, o, &meta, path, len));
}

static long long bytes_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static int nfilters(const char *path, const char *dset)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, dset, H5P_DEFAULT), pl = H5Dget_create_plist(d);
    int n = H5Pget_nfilters(pl);
    H5Pclose(pl);
    H5Dclose(d);
    H5Fclose(f);
    return n;
}

/* Overwrites value `at` of dataset dset (through HDF5: checksums stay valid). */
static void poke(const char *path, const char *dset, hsize_t at, float v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), d = H5Dopen2(f, dset, H5P_DEFAULT), fs = H5Dget_space(d);
    hsize_t dims[2];
    H5Sget_simple_extent_dims(fs, dims, NULL);
    hsize_t coord[2] = {at / dims[1], at % dims[1]}, one = 1;
    H5Sselect_elements(fs, H5S_SELECT_SET, 1, coord);
    hid_t ms = H5Screate_simple(1, &one, NULL);
    H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, &v);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    H5Fclose(f);
}

static void test_checkpoint(const larch_comm *c)
{
    larch_model *m = mlp(256, 256, 10), *m2 = mlp(256, 256, 10);
    larch_optim_opts oo = larch_optim_defaults_for(LARCH_OPT_SGD);
    oo.momentum = 0.9;
    larch_optim *opt = NULL, *opt2 = NULL;
    CHECK_OK(larch_optim_create(&opt, m, &oo));
    CHECK_OK(larch_optim_create(&opt2, m2, &oo));
    for (size_t i = 0; i < m->n_floats; i++) opt->state[0][i] = 0.5f;
    char dense[512], sparse[512];
    save(c, "dense", m, opt, dense, sizeof dense);
    larch_pruner *p = NULL, *p2 = NULL;
    larch_prune_opts o = LARCH_PRUNE_DEFAULTS;
    o.sparsity = 0.9;
    CHECK_OK(larch_pruner_create(&p, m, &o, 10));
    CHECK_OK(larch_pruner_create(&p2, m2, &o, 10));
    larch_pruner_update(p, 0.9, opt);
    save(c, "sparse", m, opt, sparse, sizeof sparse);
    long long bd = bytes_of(dense), bs = bytes_of(sparse);
    CHECK(bs > 0 && bs * 3 < bd, "90%% sparse: %lld bytes, dense %lld", bs, bd);
    CHECK(nfilters(sparse, "/params/fc1/weight") == 3 && nfilters(sparse, "/params/fc1/bias") == 1 &&
          nfilters(sparse, "/optim/momentum/fc1/weight") == 3 && nfilters(sparse, "/masks/out/weight") == 3,
          "deflated: the sparse tensors, their state and the masks only");
    CHECK_OK(larch_ckpt_verify(sparse, NULL));
    /* round trip: parameters, state and masks exactly */
    CHECK_OK(larch_ckpt_load(sparse, c, m2, opt2, NULL));
    CHECK(memcmp(m->param, m2->param, m->n_floats * sizeof(float)) == 0, "parameters");
    CHECK(memcmp(opt->state[0], opt2->state[0], opt->n_state_floats * sizeof(float)) == 0, "momentum");
    CHECK(memcmp(m->prune_mask, m2->prune_mask, m->n_floats) == 0, "masks");
    CHECK(fabs(larch_pruner_sparsity(p2) - 0.9) < 1e-3, "loaded sparsity %g", larch_pruner_sparsity(p2));
    /* a model without masks reads the file too (evaluation, init_from) */
    larch_model *m3 = mlp(256, 256, 10);
    CHECK_OK(larch_ckpt_load(sparse, c, m3, NULL, NULL));
    CHECK(memcmp(m->param, m3->param, m->n_floats * sizeof(float)) == 0, "read without masks");
    larch_model_free(m3);
    /* an unpruned checkpoint loads as all ones */
    CHECK_OK(larch_ckpt_load(dense, c, m2, NULL, NULL));
    CHECK(larch_pruner_sparsity(p2) == 0.0, "no masks: unpruned");

    /* damaged mask data is named */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad.h5", dir);
    const larch_param *w = param(m, "fc1.weight");
    size_t z = 0;
    while (m->prune_mask[w->offset + z]) z++;         /* a pruned value */
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "cp %s %s", sparse, bad);
    CHECK(system(cmd) == 0, "cp");
    poke(bad, "/masks/fc1/weight", z, 0.5f);
    CHECK_FAIL(larch_ckpt_load(bad, c, m2, NULL, NULL), LARCH_ERR_FORMAT, "mask /masks/fc1/weight holds 0.5");
    CHECK(system(cmd) == 0, "cp");
    poke(bad, "/params/fc1/weight", z, 1.0f);
    CHECK_FAIL(larch_ckpt_load(bad, c, m2, NULL, NULL), LARCH_ERR_FORMAT, "tensor /params/fc1/weight is 1 at value");
    /* a flipped byte inside a deflated chunk: its checksum (or inflate) fails */
    CHECK(system(cmd) == 0, "cp");
    hid_t f = H5Fopen(bad, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "/masks/fc1/weight", H5P_DEFAULT);
    haddr_t addr = 0;
    hsize_t off[2] = {0, 0}, size = 0;
    hid_t sp = H5Dget_space(d);
    H5Dget_chunk_info(d, sp, 0, off, NULL, &addr, &size);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    FILE *fp = fopen(bad, "r+b");
    CHECK(fp && size > 8, "chunk of %llu bytes", (unsigned long long)size);
    if (fp) {
        fseek(fp, (long)(addr + size / 2), SEEK_SET);
        int ch = fgetc(fp);
        fseek(fp, (long)(addr + size / 2), SEEK_SET);
        fputc(ch ^ 0x5a, fp);
        fclose(fp);
    }
    CHECK_FAIL(larch_ckpt_load(bad, c, m2, NULL, NULL), LARCH_ERR_FORMAT, "/masks/fc1/weight");
    larch_pruner_free(p);
    larch_pruner_free(p2);
    larch_optim_free(opt);
    larch_optim_free(opt2);
    larch_model_free(m);
    larch_model_free(m2);
}

/* The `prune` method on a checkpoint of a config's model. */
static void test_method(const larch_comm *c)
{
    char cfgpath[400], base[400];
    snprintf(cfgpath, sizeof cfgpath, "%s/net.yaml", dir);
    snprintf(base, sizeof base, "%s/pruned", dir);
    FILE *f = fopen(cfgpath, "w");
    fputs("train: {batch_size: 8}\ndata: {name: synthetic, synthetic: {shape: [1, 1, 64], classes: 10}}\n"
          "model:\n  - {type: dense, name: fc1, units: 128}\n  - {type: relu}\n  - {type: dense, name: out, units: 10}\n", f);
    fclose(f);
    larch_node *cfg = NULL;
    CHECK_OK(larch_run_load(cfgpath, NULL, 0, &cfg));
    larch_model *m = NULL;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 64}, larch_run_layers(cfg), NULL, NULL, 3));
    char ck[512];
    save(c, "src", m, NULL, ck, sizeof ck);
    const larch_compress_method *meth = NULL;
    larch_node *opts = NULL;
    CHECK_OK(larch_compress_parse("prune:sparsity=0.8,scope=global,layers=[fc1]", &meth, &opts));
    larch_compress_src src = {cfg, ck, NULL};
    larch_compress_out out;
    CHECK_OK(meth->run(&src, opts, base, &out));
    CHECK(strstr(out.summary, "global sparsity 0.800 over 1 tensor(s)") != NULL, "summary: %s", out.summary);
    /* the written config reads back with its prune section, and the file with its zeros */
    larch_node *back = NULL;
    CHECK_OK(larch_run_load(out.config_path, NULL, 0, &back));
    const larch_node *pr = larch_map_get(back, "prune");
    CHECK(pr && larch_cfg_float(pr, "sparsity") == 0.8 && larch_cfg_float(pr, "initial_sparsity") == 0.8 &&
          larch_cfg_int(pr, "end_step") == 0 && !strcmp(larch_cfg_str(pr, "scope"), "global"), "prune section");
    const larch_node *init = larch_run_init_from(back);
    CHECK(init && !strcmp(larch_cfg_str(init, "file"), out.checkpoint), "model.init_from.file = the written checkpoint "
          "(absolute: %s)", init ? larch_cfg_str(init, "file") : "none");
    larch_model *m2 = NULL;
    CHECK_OK(larch_model_build(&m2, (larch_shape){1, 1, 64}, larch_run_layers(back), NULL, NULL, 3));
    CHECK_OK(larch_ckpt_load(out.checkpoint, c, m2, NULL, NULL));
    const larch_param *w = param(m2, "fc1.weight"), *w2 = param(m2, "out.weight");
    size_t zeros = 0, zeros2 = 0;
    for (size_t j = 0; j < w->size; j++) zeros += m2->param[w->offset + j] == 0.0f;
    for (size_t j = 0; j < w2->size; j++) zeros2 += m2->param[w2->offset + j] == 0.0f;
    CHECK(zeros == (size_t)(0.8 * (double)w->size + 0.5) && zeros2 == 0, "%zu zeros in fc1, %zu in out", zeros, zeros2);
    /* fine-tuning with the written prune section: step 0's masks are exactly the zeros */
    larch_fit_spec spec;
    CHECK_OK(larch_fit_spec_from_cfg(back, &spec));
    larch_pruner *p = NULL;
    CHECK_OK(larch_pruner_create(&p, m2, &spec.prune, 100));
    CHECK(larch_pruner_due(p, 0) && larch_pruner_target(p, 0) == 0.8 && !larch_pruner_due(p, 1), "one pruning step, at 0");
    larch_pruner_update(p, larch_pruner_target(p, 0), NULL);
    size_t same = 0;
    for (size_t j = 0; j < w->size; j++) same += (m2->prune_mask[w->offset + j] == 0) == (m2->param[w->offset + j] == 0.0f);
    CHECK(same == w->size, "the masks select the zeros (%zu of %zu agree)", same, w->size);
    larch_pruner_free(p);
    larch_fit_spec_release(&spec);
    larch_node_free(out.cfg);
    larch_node_free(back);
    larch_node_free(opts);
    /* bad options name the option */
    CHECK_FAIL(larch_compress_parse("prune:sparsity=1.5", &meth, &opts), LARCH_ERR_CONFIG, "sparsity");
    CHECK_OK(larch_compress_parse("prune:layers=[nothere]", &meth, &opts));
    CHECK_FAIL(meth->run(&src, opts, base, &out), LARCH_ERR_INVALID, "prune.layers: 'nothere'");
    larch_node_free(opts);
    larch_model_free(m);
    larch_model_free(m2);
    larch_node_free(cfg);
}

/* The distillation loss: its value against the formula written out here,
 * alpha = 0 is the cross-entropy, and its gradient against central
 * differences. */
static double distill_value(const float *z, const float *t, const int32_t *y, int n, int C, float alpha, float T)
{
    larch_loss_stats st = {0, 0, 0};
    larch_distill_ce(z, t, y, n, C, 0.0f, alpha, T, 1.0f, NULL, 0, &st);
    return st.loss_sum;
}

static void test_distill(void)
{
    enum { N = 3, C = 5 };
    float z[N * C], t[N * C], g[N * C];
    int32_t y[N] = {1, 4, 0};
    larch_rng rng;
    larch_rng_init(&rng, 9, LARCH_RNG_USER, 3, 4);
    for (int i = 0; i < N * C; i++) z[i] = 2.0f * larch_rng_normal(&rng), t[i] = 2.0f * larch_rng_normal(&rng);
    const float alpha = 0.7f, T = 3.0f;
    double want = 0.0;
    for (int i = 0; i < N; i++) {
        double sz = 0, st = 0, s1 = 0;
        for (int j = 0; j < C; j++) sz += exp(z[i * C + j] / T), st += exp(t[i * C + j] / T), s1 += exp(z[i * C + j]);
        double kl = 0;
        for (int j = 0; j < C; j++) {
            double r = exp(t[i * C + j] / T) / st, q = exp(z[i * C + j] / T) / sz;
            kl += r * log(r / q);
        }
        want += alpha * T * T * kl + (1 - alpha) * -log(exp(z[i * C + y[i]]) / s1);
    }
    double got = distill_value(z, t, y, N, C, alpha, T);
    CHECK(fabs(got - want) < 1e-6 * fabs(want), "loss %.12g, want %.12g", got, want);
    /* teacher = student: only the cross-entropy term is left */
    double ce = 0.0;
    for (int i = 0; i < N; i++) {
        double s1 = 0;
        for (int j = 0; j < C; j++) s1 += exp(z[i * C + j]);
        ce += -log(exp(z[i * C + y[i]]) / s1);
    }
    CHECK(fabs(distill_value(z, z, y, N, C, alpha, T) - (1 - alpha) * ce) < 1e-9, "KL(p || p) = 0");
    CHECK(fabs(distill_value(z, t, y, N, C, 0.0f, T) - ce) < 1e-9, "alpha 0 is the cross-entropy");
    larch_loss_stats st = {0, 0, 0};
    larch_distill_ce(z, t, y, N, C, 0.0f, alpha, T, 1.0f, g, 0, &st);
    CHECK(st.count == N, "count");
    int bad = 0;
    for (int i = 0; i < N * C; i++) {
        float keep = z[i];
        const float eps = 1e-2f;
        z[i] = keep + eps;
        double fp = distill_value(z, t, y, N, C, alpha, T);
        z[i] = keep - eps;
        double fm = distill_value(z, t, y, N, C, alpha, T);
        z[i] = keep;
        double num = (fp - fm) / (2.0 * eps);
        if (fabs(num - g[i]) > 1e-3 * (fabs(num) + fabs(g[i])) + 1e-5) {
            bad++;
            fprintf(stderr, "dz[%d]: analytic %g, numeric %g\n", i, g[i], num);
        }
    }
    CHECK(bad == 0, "%d gradient coordinates differ", bad);
}

/* ---- larch_train in this process: distillation and the config's keys ---- */

static const char *MLP =
    "train: {batch_size: 64, epochs: 2, max_steps: 12, seed: 3, log_every: 1, threads: 1}\n"
    "optim: {name: sgd, lr: 0.05, momentum: 0.9}\n"
    "data: {name: synthetic, synthetic: {n_train: 1024, n_test: 256, classes: %d, shape: [4, 4, 1], noise: 0.5}}\n"
    "model:\n  - {type: dense, name: fc1, units: %d}\n  - {type: relu}\n  - {type: dense, name: out, units: %d}\n";

static void write_cfg(const char *name, int classes, int units, char *path, size_t len)
{
    snprintf(path, len, "%s/%s.yaml", dir, name);
    FILE *f = fopen(path, "w");
    fprintf(f, MLP, classes, units, classes);
    fclose(f);
}

/* Trains `cfg` with the overrides into dir/out; returns the status. */
static larch_status train(const larch_comm *c, const char *cfgpath, const char *out, const char *const *sets, int n,
                          larch_train_result *res)
{
    larch_node *cfg = NULL;
    char od[400];
    snprintf(od, sizeof od, "%s/%s", dir, out);
    larch_status s = larch_run_load(cfgpath, sets, n, &cfg);
    larch_train_opts o = {.out_dir = od};
    if (!s) s = larch_train(cfg, c, &o, res);
    larch_node_free(cfg);
    return s;
}

static void test_train(const larch_comm *c)
{
    char teacher[400], student[400], other[400], five[400], tck[600], fck[600];
    write_cfg("teacher", 4, 32, teacher, sizeof teacher);
    write_cfg("student", 4, 8, student, sizeof student);
    write_cfg("other", 4, 24, other, sizeof other);
    write_cfg("five", 5, 32, five, sizeof five);
    larch_train_result r, alone, a0, a8;
    CHECK_OK(train(c, teacher, "teacher", NULL, 0, &r));
    snprintf(tck, sizeof tck, "%s/teacher/checkpoints/ckpt-00000012.h5", dir);
    const char *two[] = {"train.max_steps=2"};
    CHECK_OK(train(c, five, "five", two, 1, &r));
    snprintf(fck, sizeof fck, "%s/five/checkpoints/ckpt-00000002.h5", dir);

    /* alpha 0 is the student alone (the teacher's forward leaves the student's computation alone) */
    char set_t[500], set_c[700], set_o[500], set_f[500], set_fc[700];
    snprintf(set_t, sizeof set_t, "distill.teacher=%s", teacher);
    snprintf(set_c, sizeof set_c, "distill.checkpoint=%s", tck);
    CHECK_OK(train(c, student, "alone", NULL, 0, &alone));
    const char *d0[] = {set_t, set_c, "distill.alpha=0"}, *d8[] = {set_t, set_c, "distill.alpha=0.8", "distill.temperature=3"};
    CHECK_OK(train(c, student, "a0", d0, 3, &a0));
    CHECK_OK(train(c, student, "a8", d8, 4, &a8));
    CHECK(fabs(a0.final_loss - alone.final_loss) <= 1e-5 * fabs(alone.final_loss) &&
          fabs(a0.test_loss - alone.test_loss) <= 1e-5 * fabs(alone.test_loss),
          "alpha 0: loss %.9g / test %.9g, alone %.9g / %.9g", a0.final_loss, a0.test_loss, alone.final_loss, alone.test_loss);
    CHECK(fabs(a8.final_loss - alone.final_loss) > 1e-3, "alpha 0.8 changes the training loss (%g vs %g)", a8.final_loss,
          alone.final_loss);
    /* micro-batches (train.accumulate): the teacher scores each one; the same run */
    larch_train_result acc;
    const char *d8acc[] = {set_t, set_c, "distill.alpha=0.8", "distill.temperature=3", "train.accumulate=4"};
    CHECK_OK(train(c, student, "a8acc", d8acc, 5, &acc));
    CHECK(fabs(acc.final_loss - a8.final_loss) <= 1e-5 * fabs(a8.final_loss) &&
          fabs(acc.test_loss - a8.test_loss) <= 1e-5 * fabs(a8.test_loss),
          "accumulate 4: loss %.9g / test %.9g, 1: %.9g / %.9g", acc.final_loss, acc.test_loss, a8.final_loss, a8.test_loss);

    /* the teacher's errors */
    const char *no_cfg[] = {"distill.teacher=/nonexistent.yaml", set_c};
    CHECK_FAIL(train(c, student, "e", no_cfg, 2, &r), LARCH_ERR_IO, "distill.teacher: cannot open config /nonexistent.yaml");
    const char *no_ck[] = {set_t, "distill.checkpoint=/nonexistent.h5"};
    CHECK_FAIL(train(c, student, "e", no_ck, 2, &r), LARCH_ERR_IO, "distill.checkpoint: cannot read the teacher's checkpoint");
    const char *unset[] = {set_t};
    CHECK_FAIL(train(c, student, "e", unset, 1, &r), LARCH_ERR_CONFIG, "needs its parameters");
    snprintf(set_o, sizeof set_o, "distill.teacher=%s", other);
    const char *wrong[] = {set_o, set_c};
    CHECK_FAIL(train(c, student, "e", wrong, 2, &r), LARCH_ERR_SHAPE, "has shape (32, 16) but the model's fc1.weight has shape (24, 16)");
    snprintf(set_f, sizeof set_f, "distill.teacher=%s", five);
    snprintf(set_fc, sizeof set_fc, "distill.checkpoint=%s", fck);
    const char *classes[] = {set_f, set_fc};
    CHECK_FAIL(train(c, student, "e", classes, 2, &r), LARCH_ERR_SHAPE, "the teacher scores 5 classes (loss 'main'), the student 4");
    const char *bad_alpha[] = {set_t, set_c, "distill.alpha=1.5"};
    CHECK_FAIL(train(c, student, "e", bad_alpha, 3, &r), LARCH_ERR_CONFIG, "distill.alpha");

    /* keys without effect are warned about */
    const char *idle[] = {"prune.every=7", "distill.alpha=0.5"};
    larch_node *cfg = NULL;
    CHECK_OK(larch_run_load(student, idle, 2, &cfg));
    larch_warnings w = {0};
    CHECK_OK(larch_run_warnings(cfg, &w));
    int pw = 0, dw = 0;
    for (int i = 0; i < w.n; i++) {
        pw += strstr(w.msg[i], "prune.every is ignored: prune.sparsity is 0") != NULL;
        dw += strstr(w.msg[i], "distill.alpha is ignored: distill.teacher is not set") != NULL;
    }
    CHECK(pw == 1 && dw == 1 && w.n == 2, "%d warning(s): prune %d, distill %d", w.n, pw, dw);
    larch_warnings_free(&w);
    larch_node_free(cfg);

    /* the prune section's schema errors name the key */
    const char *sp[] = {"prune.sparsity=1.5"}, *scope[] = {"prune.scope=rows"}, *every[] = {"prune.every=0"};
    CHECK_FAIL(train(c, student, "e", sp, 1, &r), LARCH_ERR_CONFIG, "prune.sparsity");
    CHECK_FAIL(train(c, student, "e", scope, 1, &r), LARCH_ERR_CONFIG, "prune.scope");
    CHECK_FAIL(train(c, student, "e", every, 1, &r), LARCH_ERR_CONFIG, "prune.every");
    const char *init[] = {"prune.sparsity=0.5", "prune.initial_sparsity=0.6"};
    CHECK_FAIL(train(c, student, "e", init, 2, &r), LARCH_ERR_INVALID, "prune.initial_sparsity = 0.6 is out of range");
    const char *end[] = {"prune.sparsity=0.5", "prune.start_step=10", "prune.end_step=5"};
    CHECK_FAIL(train(c, student, "e", end, 3, &r), LARCH_ERR_INVALID, "prune.end_step = 5 is before prune.start_step = 10");
}

int main(int argc, char **argv)
{
    larch_comm comm;
    CHECK_OK(larch_comm_init(&comm, &argc, &argv));
    larch_ckpt_h5_quiet();
    snprintf(dir, sizeof dir, "/tmp/larch_test_prune_XXXXXX");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    test_schedule();
    test_thresholds();
    test_steps();
    test_checkpoint(&comm);
    test_method(&comm);
    test_distill();
    test_train(&comm);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (!getenv("KEEP") && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    larch_comm_finalize(&comm);
    printf("test_prune: %d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}
