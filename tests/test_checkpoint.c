/* test_checkpoint.c - HDF5 checkpoints in one process: the round trip of
 * every tensor and metadata field, and each bad checkpoint (corrupted data
 * bytes, a truncated file, a newer format version, a different model or
 * optimizer, a missing step count) failing with a message that names the
 * tensor or field; format 1 files (one step count for all tensors); and
 * model.init_from: loading another model's tensors by name with renames,
 * include/exclude globs and shape mismatches (failing or skipped). */
#include "check.h"
#include "larch/checkpoint.h"
#include "larch/larch.h"
#include "larch/train.h"

#include <hdf5.h>
#include <stdlib.h>
#include <unistd.h>

static const char *CONFIG =
    "train: {batch_size: 8, seed: 3}\n"
    "optim: {name: adam, lr: 0.01}\n"
    "data: {name: synthetic, synthetic: {shape: [6, 6, 2], classes: 3}}\n"
    "model:\n"
    "  - {type: conv2d, name: conv1, filters: 4, kernel: 3, padding: 1}\n"
    "  - {type: batchnorm, name: bn1}\n"
    "  - {type: relu}\n"
    "  - {type: flatten}\n"
    "  - {type: dense, name: fc1, units: %d}\n"
    "  - {type: relu}\n"
    "  - {type: dense, name: out, units: 3}\n"
    "%s";

typedef struct { larch_node *cfg; larch_model *m; larch_optim *o; } net;

static larch_status make_net(net *n, const char *dir, int units, const char *extra, const char *optim)
{
    char path[512], text[2048];
    snprintf(path, sizeof path, "%s/net.yaml", dir);
    snprintf(text, sizeof text, CONFIG, units, extra);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    char set[64];
    snprintf(set, sizeof set, "optim.name=%s", optim);
    const char *sets[] = {set};
    memset(n, 0, sizeof *n);
    larch_status s = larch_run_load(path, sets, 1, &n->cfg);
    if (!s) s = larch_model_build(&n->m, (larch_shape){6, 6, 2}, larch_map_get(n->cfg, "model"), NULL, NULL, 7);
    if (!s) s = larch_optim_create(&n->o, n->m, larch_map_get(n->cfg, "optim"));
    return s;
}

static void free_net(net *n)
{
    larch_optim_free(n->o);
    larch_model_free(n->m);
    larch_node_free(n->cfg);
}

/* Distinct values everywhere, so a swapped or missed tensor shows. */
static void fill(net *n, float base)
{
    for (size_t i = 0; i < n->m->n_floats; i++) n->m->param[i] = base + 0.001f * (float)i;
    for (size_t i = 0; i < n->m->n_buffer_floats; i++) n->m->buffer[i] = base - 0.5f + 0.01f * (float)i;
    for (int k = 0; k < n->o->n_state; k++)
        for (size_t i = 0; i < n->o->n_state_floats; i++) n->o->state[k][i] = base * (float)(k + 2) + 1e-4f * (float)i;
    n->o->t = 17;
    for (int i = 0; i < n->m->n_params; i++) {       /* each tensor's own step count and NAdam product */
        n->o->tensor_t[i] = 3 + i;
        n->o->tensor_mu_product[i] = 0.123456789 + 0.01 * i;
    }
}

static void copy_file(const char *from, const char *to, long bytes)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[4096];
    size_t got;
    long left = bytes < 0 ? 1L << 40 : bytes;
    while (left > 0 && (got = fread(buf, 1, sizeof buf < (size_t)left ? sizeof buf : (size_t)left, a)) > 0) {
        fwrite(buf, 1, got, b);
        left -= (long)got;
    }
    fclose(a);
    fclose(b);
}

/* File offset of the (only) chunk of a dataset. */
static haddr_t chunk_address(const char *path, const char *dset)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    unsigned mask = 0;
    haddr_t addr = HADDR_UNDEF;
    hsize_t size = 0, offset[8] = {0};
    H5Dget_chunk_info(d, sp, 0, offset, &mask, &addr, &size);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    return addr;
}

static void set_format_version(const char *path, long v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    int64_t x = v;
    H5Awrite(a, H5T_NATIVE_INT64, &x);
    H5Aclose(a);
    H5Fclose(f);
}

/* Rewrites a checkpoint of this larch as format 1 wrote it: one step count
 * and one NAdam product (attributes t and mu_product of /optim) for all
 * tensors, no per-tensor ones. */
static void make_format1(const char *path, double mu_product)
{
    set_format_version(path, 1);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(f, "/optim/t", H5P_DEFAULT);
    if (H5Lexists(f, "/optim/mu_product", H5P_DEFAULT) > 0) H5Ldelete(f, "/optim/mu_product", H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "/optim", H5P_DEFAULT), sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(g, "mu_product", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_DOUBLE, &mu_product);
    H5Aclose(a);
    H5Sclose(sp);
    H5Gclose(g);
    H5Fclose(f);
}

int main(int argc, char **argv)
{
    larch_comm comm;
    CHECK_OK(larch_comm_init(&comm, &argc, &argv));
    char dir[] = "/tmp/larch_ckpt_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char ckdir[600], path[700], bad[700];
    snprintf(ckdir, sizeof ckdir, "%s/ck", dir);

    /* ---- round trip ---- */
    net a, b;
    CHECK_OK(make_net(&a, dir, 5, "", "adam"));
    fill(&a, 0.25f);
    larch_ckpt_meta meta = {0};
    meta.step = 12; meta.epoch = 2; meta.sampler_epoch = 2; meta.sampler_step = 1; meta.samples_seen = 96;
    meta.rng_seed = 4000000000ULL; meta.world_size = 1; meta.global_batch = 8; meta.sched_step = 12;
    meta.sched_total_steps = 40;
    meta.config = "train: {batch_size: 8}\n";
    CHECK_OK(larch_ckpt_save(ckdir, 2, &comm, a.m, a.o, &meta, path, sizeof path));
    CHECK(strstr(path, "ckpt-00000012.h5") != NULL, "path %s", path);
    CHECK_OK(make_net(&b, dir, 5, "", "adam"));
    larch_ckpt_meta got;
    CHECK_OK(larch_ckpt_load(path, &comm, b.m, b.o, &got));
    for (int i = 0; i < a.m->n_params; i++) {       /* tensors only: the padding between them is not saved */
        const larch_param *p = &a.m->params[i];
        CHECK(memcmp(a.m->param + p->offset, b.m->param + p->offset, p->size * sizeof(float)) == 0, "%s differs", p->name);
    }
    for (int i = 0; i < a.m->n_buffers; i++) {
        const larch_buffer *q = &a.m->buffers[i];
        CHECK(memcmp(a.m->buffer + q->offset, b.m->buffer + q->offset, q->size * sizeof(float)) == 0, "%s differs", q->name);
    }
    for (int k = 0; k < a.o->n_state; k++)
        CHECK(memcmp(a.o->state[k], b.o->state[k], a.o->n_state_floats * sizeof(float)) == 0, "state %s differs",
              a.o->state_names[k]);
    CHECK(b.o->t == 17, "optimizer t %ld", b.o->t);
    for (int i = 0; i < b.m->n_params; i++)
        CHECK(b.o->tensor_t[i] == 3 + i, "%s: step count %ld, saved %d", b.m->params[i].name, b.o->tensor_t[i], 3 + i);
    CHECK(got.format_version == LARCH_CKPT_FORMAT && !strcmp(got.larch_version, larch_version()), "format/version");
    CHECK(got.step == 12 && got.epoch == 2 && got.sampler_epoch == 2 && got.sampler_step == 1 && got.samples_seen == 96,
          "positions %ld %ld %ld %ld %ld", got.step, got.epoch, got.sampler_epoch, got.sampler_step, got.samples_seen);
    CHECK(got.rng_seed == 4000000000ULL && got.world_size == 1 && got.global_batch == 8, "seed/world/batch");
    CHECK(got.sched_step == 12 && got.sched_total_steps == 40, "schedule state");
    CHECK(!strcmp(got.optimizer, "adam") && got.config && !strcmp(got.config, meta.config), "optimizer/config");
    larch_ckpt_meta_free(&got);
    CHECK_OK(larch_ckpt_verify(path, NULL));

    /* ---- NAdam: each tensor's momentum product; format 1 (one t and product for all) still loads ---- */
    {
        net na, nb;
        char npath[700], ndir[700];
        snprintf(ndir, sizeof ndir, "%s/nadam", dir);
        CHECK_OK(make_net(&na, dir, 5, "", "nadam"));
        CHECK_OK(make_net(&nb, dir, 5, "", "nadam"));
        fill(&na, 0.5f);
        CHECK_OK(larch_ckpt_save(ndir, 0, &comm, na.m, na.o, &meta, npath, sizeof npath));
        CHECK_OK(larch_ckpt_load(npath, &comm, nb.m, nb.o, NULL));
        for (int i = 0; i < nb.m->n_params; i++)
            CHECK(nb.o->tensor_t[i] == 3 + i && nb.o->tensor_mu_product[i] == 0.123456789 + 0.01 * i,
                  "%s: t %ld mu_product %.9g", nb.m->params[i].name, nb.o->tensor_t[i], nb.o->tensor_mu_product[i]);
        snprintf(bad, sizeof bad, "%s/format1.h5", dir);
        copy_file(npath, bad, -1);
        make_format1(bad, 0.25);
        CHECK_OK(larch_ckpt_load(bad, &comm, nb.m, nb.o, &got));
        CHECK(got.format_version == 1 && nb.o->t == 17, "format %d, t %ld", got.format_version, nb.o->t);
        for (int i = 0; i < nb.m->n_params; i++)
            CHECK(nb.o->tensor_t[i] == 17 && nb.o->tensor_mu_product[i] == 0.25,
                  "format 1: %s takes the optimizer's t and product: %ld %.9g", nb.m->params[i].name,
                  nb.o->tensor_t[i], nb.o->tensor_mu_product[i]);
        larch_ckpt_meta_free(&got);
        CHECK_OK(larch_ckpt_verify(bad, NULL));
        /* format 2 without a tensor's step count: an error naming the tensor */
        copy_file(npath, bad, -1);
        hid_t f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
        H5Adelete_by_name(f, "/optim/t/fc1", "bias", H5P_DEFAULT);
        H5Fclose(f);
        CHECK_FAIL(larch_ckpt_load(bad, &comm, nb.m, nb.o, NULL), LARCH_ERR_FORMAT, "step count of tensor fc1.bias");
        free_net(&na);
        free_net(&nb);
    }

    /* ---- keep: only the newest two stay ---- */
    for (long step = 13; step <= 14; step++) {
        meta.step = step;
        CHECK_OK(larch_ckpt_save(ckdir, 2, &comm, a.m, a.o, &meta, NULL, 0));
    }
    char **list = NULL;
    int n = larch_ckpt_list(ckdir, &list);
    CHECK(n == 2 && strstr(list[0], "ckpt-00000014.h5") && strstr(list[1], "ckpt-00000013.h5"), "kept %d", n);
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
    snprintf(path, sizeof path, "%s/ckpt-00000014.h5", ckdir);   /* 12 was pruned */

    /* ---- corrupted data bytes: Fletcher32 names the tensor ---- */
    snprintf(bad, sizeof bad, "%s/corrupt.h5", dir);
    copy_file(path, bad, -1);
    haddr_t addr = chunk_address(bad, "/params/fc1/weight");
    CHECK(addr != HADDR_UNDEF, "chunk address");
    FILE *f = fopen(bad, "r+b");
    fseek(f, (long)addr + 12, SEEK_SET);
    fputc(0x5a, f);
    fputc(0xa5, f);
    fclose(f);
    CHECK_FAIL(larch_ckpt_load(bad, &comm, b.m, b.o, NULL), LARCH_ERR_FORMAT, "/params/fc1/weight");
    CHECK_FAIL(larch_ckpt_verify(bad, NULL), LARCH_ERR_FORMAT, "/params/fc1/weight");

    /* ---- truncated ---- */
    snprintf(bad, sizeof bad, "%s/truncated.h5", dir);
    copy_file(path, bad, 3000);
    CHECK_FAIL(larch_ckpt_load(bad, &comm, b.m, b.o, NULL), LARCH_ERR_FORMAT, "truncated");
    CHECK_FAIL(larch_ckpt_verify(bad, NULL), LARCH_ERR_FORMAT, "truncated");

    /* ---- a newer format ---- */
    snprintf(bad, sizeof bad, "%s/newer.h5", dir);
    copy_file(path, bad, -1);
    set_format_version(bad, 99);
    CHECK_FAIL(larch_ckpt_load(bad, &comm, b.m, b.o, NULL), LARCH_ERR_FORMAT, "format_version 99");
    CHECK_FAIL(larch_ckpt_read_meta(bad, &got), LARCH_ERR_FORMAT, "newer larch");

    /* ---- a missing file ---- */
    CHECK_FAIL(larch_ckpt_load("/nonexistent/ckpt.h5", &comm, b.m, b.o, NULL), LARCH_ERR_IO, "/nonexistent/ckpt.h5");

    /* ---- a different model ---- */
    net c;
    CHECK_OK(make_net(&c, dir, 6, "", "adam"));             /* fc1 has 6 units */
    CHECK_FAIL(larch_ckpt_load(path, &comm, c.m, c.o, NULL), LARCH_ERR_SHAPE, "/params/fc1/weight has shape (5, 144)");
    free_net(&c);
    CHECK_OK(make_net(&c, dir, 5, "  - {type: dense, name: extra, units: 3}\n", "adam"));  /* one layer more */
    CHECK_FAIL(larch_ckpt_load(path, &comm, c.m, c.o, NULL), LARCH_ERR_FORMAT, "/params/extra/weight is missing");
    free_net(&c);
    CHECK_OK(make_net(&c, dir, 5, "", "sgd"));               /* another optimizer's state */
    CHECK_FAIL(larch_ckpt_load(path, &comm, c.m, c.o, NULL), LARCH_ERR_CONFIG, "optimizer 'adam'");
    free_net(&c);

    /* a checkpoint with a tensor the model lacks: save the bigger model, load the smaller */
    CHECK_OK(make_net(&c, dir, 5, "  - {type: dense, name: extra, units: 3}\n", "adam"));
    meta.step = 1;
    char other[700];
    snprintf(other, sizeof other, "%s/other", dir);
    CHECK_OK(larch_ckpt_save(other, 0, &comm, c.m, c.o, &meta, bad, sizeof bad));
    CHECK_FAIL(larch_ckpt_load(bad, &comm, b.m, b.o, NULL), LARCH_ERR_SHAPE, "/params/extra");
    free_net(&c);

    /* ---- the newest readable checkpoint: a damaged newest one is passed over ---- */
    snprintf(bad, sizeof bad, "%s/ckpt-00000099.h5", ckdir);
    copy_file(path, bad, 100);
    char latest[700];
    CHECK_OK(larch_ckpt_latest(ckdir, latest, sizeof latest));
    CHECK(strstr(latest, "ckpt-00000014.h5") != NULL, "latest %s", latest);
    CHECK_FAIL(larch_ckpt_latest(dir, latest, sizeof latest), LARCH_ERR_IO, "holds no checkpoint");

    /* ---- init_from: another model, by name ---- */
    {
        larch_node *sl = NULL, *tl = NULL;
        CHECK_OK(larch_cfg_parse("[{type: conv2d, name: enc_conv1, filters: 4, kernel: 3, padding: 1}, {type: batchnorm, name: enc_bn1},"
                                 " {type: relu}, {type: flatten}, {type: dense, name: enc_fc, units: 5}, {type: relu},"
                                 " {type: dense, name: head, units: 3}]", "<src>", &sl));
        CHECK_OK(larch_cfg_parse("[{type: conv2d, name: conv1, filters: 4, kernel: 3, padding: 1}, {type: batchnorm, name: bn1},"
                                 " {type: relu}, {type: flatten}, {type: dense, name: fc, units: 5}, {type: relu},"
                                 " {type: dense, name: head, units: 4}]", "<dst>", &tl));
        larch_model *sm = NULL, *tm = NULL;
        CHECK_OK(larch_model_build(&sm, (larch_shape){6, 6, 2}, sl, NULL, NULL, 1));
        CHECK_OK(larch_model_build(&tm, (larch_shape){6, 6, 2}, tl, NULL, NULL, 2));
        for (size_t i = 0; i < sm->n_floats; i++) sm->param[i] = 3.0f + 0.001f * (float)i;
        for (size_t i = 0; i < sm->n_buffer_floats; i++) sm->buffer[i] = 7.0f + 0.01f * (float)i;
        float *init = malloc(tm->n_floats * sizeof *init);
        memcpy(init, tm->param, tm->n_floats * sizeof *init);
        char src[700], isrc[700];
        snprintf(src, sizeof src, "%s/src", dir);
        meta.step = 5;
        CHECK_OK(larch_ckpt_save(src, 0, &comm, sm, NULL, &meta, isrc, sizeof isrc));
        larch_init_map map = {0};
        larch_init_report rep;
        map.buffers = 1;
        /* no rename: only head matches by name, with another shape */
        CHECK_FAIL(larch_ckpt_init_from(isrc, tm, &map, &rep), LARCH_ERR_SHAPE, "/params/head/weight has shape (3, 5)");
        CHECK(strstr(larch_errmsg(), "head.weight has shape (4, 5)") && strstr(larch_errmsg(), "skip_mismatch"),
              "names both shapes and the way out: %s", larch_errmsg());
        map.skip_mismatch = 1;
        CHECK_OK(larch_ckpt_init_from(isrc, tm, &map, &rep));
        CHECK(rep.loaded == 0 && rep.skipped == 2 && rep.fresh == tm->n_params + tm->n_buffers - 2 && rep.unused == 8,
              "no rename: loaded %d skipped %d fresh %d unused %d", rep.loaded, rep.skipped, rep.fresh, rep.unused);
        CHECK(rep.text && strstr(rep.text, "skipped  head.weight: (3, 5) in the checkpoint, (4, 5) in the model"),
              "report:\n%s", rep.text ? rep.text : "");
        CHECK(memcmp(init, tm->param, tm->n_floats * sizeof *init) == 0, "nothing loaded, nothing changed");
        larch_init_report_free(&rep);
        /* enc_ -> "": the trunk loads, head is looked up as enc_head (absent: fresh) */
        map.skip_mismatch = 0;
        map.n_rename = 1;
        map.rename_from[0] = "enc_";
        map.rename_to[0] = "";
        CHECK_OK(larch_ckpt_init_from(isrc, tm, &map, &rep));
        CHECK(rep.loaded == 8 && rep.skipped == 0 && rep.fresh == 2 && rep.unused == 2,
              "rename: loaded %d skipped %d fresh %d unused %d", rep.loaded, rep.skipped, rep.fresh, rep.unused);
        CHECK(rep.text && strstr(rep.text, "loaded   fc.weight <- /params/enc_fc/weight")
                       && strstr(rep.text, "fresh    head.weight (no /params/enc_head/weight in the checkpoint)")
                       && strstr(rep.text, "unused   /params/head/weight"),
              "report:\n%s", rep.text ? rep.text : "");
        larch_init_report_free(&rep);
        int si = larch_model_param_index(sm, "enc_fc.weight"), ti = larch_model_param_index(tm, "fc.weight");
        int hi = larch_model_param_index(tm, "head.weight");
        CHECK(memcmp(sm->param + sm->params[si].offset, tm->param + tm->params[ti].offset, tm->params[ti].size * 4) == 0,
              "fc.weight holds enc_fc.weight");
        CHECK(memcmp(init + tm->params[hi].offset, tm->param + tm->params[hi].offset, tm->params[hi].size * 4) == 0,
              "the skipped head keeps its initialization");
        CHECK(memcmp(sm->buffer, tm->buffer, sm->buffers[0].size * 4) == 0, "batch-norm statistics loaded");
        /* include/exclude: only conv1.weight */
        memcpy(tm->param, init, tm->n_floats * sizeof *init);
        map.n_include = 1;
        map.include[0] = "conv1.*";
        map.n_exclude = 1;
        map.exclude[0] = "*.bias";
        CHECK_OK(larch_ckpt_init_from(isrc, tm, &map, &rep));
        CHECK(rep.loaded == 1 && rep.fresh == tm->n_params + tm->n_buffers - 1,
              "include/exclude: loaded %d fresh %d", rep.loaded, rep.fresh);
        CHECK(rep.text && strstr(rep.text, "fresh    conv1.bias (excluded)"), "report:\n%s", rep.text ? rep.text : "");
        int ci = larch_model_param_index(tm, "conv1.bias");
        CHECK(memcmp(init + tm->params[ci].offset, tm->param + tm->params[ci].offset, tm->params[ci].size * 4) == 0,
              "an excluded tensor keeps its initialization");
        larch_init_report_free(&rep);
        snprintf(bad, sizeof bad, "%s/nope.h5", dir);
        CHECK_FAIL(larch_ckpt_init_from(bad, tm, &map, &rep), LARCH_ERR_IO, "nope.h5");
        free(init);
        larch_model_free(sm);
        larch_model_free(tm);
        larch_node_free(sl);
        larch_node_free(tl);
    }

    free_net(&a);
    free_net(&b);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    larch_comm_finalize(&comm);
    return check_result("test_checkpoint");
}
