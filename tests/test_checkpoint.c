/* test_checkpoint.c - HDF5 checkpoints in one process: the round trip of
 * every tensor and metadata field, and each bad checkpoint (corrupted data
 * bytes, a truncated file, a newer format version, a different model or
 * optimizer, damaged or inconsistent attributes, a format-1 file) failing
 * with a message that names the tensor or field; file sizes against the
 * space reservation; the directory of a run (its lock, an unwritable
 * directory, stale temporary files, lineages and pruning that keeps the
 * newest write); checkpoint.resume=auto passing over a damaged newest file;
 * and model.init_from: loading another model's tensors by name with renames,
 * include/exclude globs and shape mismatches (failing or skipped). */
#include "check.h"
#include "io/ckpt_internal.h"
#include "larch/checkpoint.h"
#include "larch/larch.h"
#include "larch/train.h"
#include "nn/model_internal.h"   /* the model's layout */

#include <hdf5.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
    if (!s) s = larch_optim_create_cfg(&n->o, n->m, larch_map_get(n->cfg, "optim"));
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
    n->o->t = 12;
    for (int i = 0; i < n->m->n_params; i++) {       /* each tensor's own step count and NAdam product */
        n->o->tensor_t[i] = 3 + i;
        n->o->tensor_mu_product[i] = 0.123456789 + 0.01 * i;
    }
}

/* Metadata of step `step` that passes the checks (5 steps per epoch, batch
 * 8), the optimizer at the same step. */
static void at_step(larch_ckpt_meta *m, larch_optim *o, long step)
{
    m->step = m->sched_step = step;
    m->steps_per_epoch = 5;
    m->epoch = m->sampler_epoch = step / 5;
    m->sampler_step = step % 5;
    m->global_batch = 8;
    m->samples_seen = 8 * step;
    if (m->sched_total_steps < step) m->sched_total_steps = step;
    if (o) o->t = step;
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

/* Edits of attributes, as a bit flip or a hand edit would make them
 * (obj "/" or "/optim"); the stored checksum is left as it was. */
static void set_long_attr(const char *path, const char *obj, const char *name, long v)
{
    /* rewritten whole: HDF5 1.10 cannot H5Awrite some attributes of /optim in place */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete_by_name(f, obj, name, H5P_DEFAULT);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, H5T_NATIVE_INT64, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int64_t x = v;
    CHECK(a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &x) >= 0, "setting %s%s%s of %s", obj, strcmp(obj, "/") ? "/" : "", name, path);
    H5Aclose(a);
    H5Sclose(sp);
    H5Fclose(f);
}

static void set_format_version(const char *path, long v) { set_long_attr(path, "/", "format_version", v); }

static void set_str_attr(const char *path, const char *name, const char *v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(f, name);
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, strlen(v) + 1);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, v);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    H5Fclose(f);
}

/* A file as larch 0.1 wrote it (format 1): no format-2 attributes, and one
 * step count and one NAdam product (attributes t and mu_product of /optim)
 * for all tensors instead of per-tensor ones. */
static void make_format1(const char *path, double mu_product)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    const char *gone[] = {"steps_per_epoch", "run_id", "lineage", "meta_checksum"};
    for (int i = 0; i < 4; i++) H5Adelete(f, gone[i]);
    if (H5Lexists(f, "/optim", H5P_DEFAULT) > 0) {
        H5Adelete_by_name(f, "/optim", "state_layout", H5P_DEFAULT);
        H5Ldelete(f, "/optim/t", H5P_DEFAULT);
        if (H5Lexists(f, "/optim/mu_product", H5P_DEFAULT) > 0) H5Ldelete(f, "/optim/mu_product", H5P_DEFAULT);
        hid_t g = H5Gopen2(f, "/optim", H5P_DEFAULT), sp = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(g, "mu_product", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_DOUBLE, &mu_product);
        H5Aclose(a);
        H5Sclose(sp);
        H5Gclose(g);
    }
    H5Fclose(f);
    set_format_version(path, 1);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Runs `what` as user nobody in a child process (root ignores permissions);
 * the child's exit status is 0 when the call failed with `needle`. */
static int as_nobody(int (*what)(const char *), const char *arg)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
        _exit(what(arg));
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 4;
}

static int lock_unwritable(const char *dir)
{
    int fd;
    larch_status s = larch_dir_lock(dir, "checkpoint.dir", &fd);
    if (s == LARCH_ERR_IO && strstr(larch_errmsg(), "is not writable") && strstr(larch_errmsg(), "Permission denied")) return 0;
    fprintf(stderr, "lock of an unwritable directory: %s: %s\n", larch_status_name(s), larch_errmsg());
    return 1;
}

static int count_files(const char *dir, const char *prefix)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd, "ls -a %s 2>/dev/null | grep -c '^%s' > %s/.count", dir, prefix, dir);
    if (system(cmd) < 0) return -1;
    snprintf(cmd, sizeof cmd, "%s/.count", dir);
    FILE *f = fopen(cmd, "r");
    int n = -1;
    if (f && fscanf(f, "%d", &n) != 1) n = -1;
    if (f) fclose(f);
    unlink(cmd);
    return n;
}

/* larch's chunk writer against HDF5's own filter pipeline: the same tensor
 * written by H5Dwrite (HDF5 computes each chunk's Fletcher32) and by
 * larch_ckpt_write_chunked (larch does) must store the same bytes in every
 * chunk, checksum included. Data: a bit pattern, all zeros (checksum 0),
 * all 0xff bytes (sums that are nonzero multiples of 65535: HDF5 stores
 * 0xffff, not 0), and a partial edge chunk. */
static void check_fletcher32_matches_hdf5(const char *dir)
{
    char path[700];
    snprintf(path, sizeof path, "%s/fletcher.h5", dir);
    hsize_t dims[2] = {300, 250};                     /* chunks of 262 rows: 2, the second partial */
    size_t n = (size_t)dims[0] * dims[1];
    float *v = malloc(n * sizeof *v);
    if (!v) { CHECK(0, "out of memory"); return; }
    for (int pattern = 0; pattern < 3; pattern++) {
        for (size_t e = 0; e < n; e++) {
            uint32_t x = pattern == 0 ? (uint32_t)(e * 2654435761u) ^ 0x5bd1e995u : pattern == 1 ? 0u : 0xffffffffu;
            if (pattern == 2 && e % 7 == 3) x = 0x7f7fffffu;   /* finite, and 0xff bytes around it */
            memcpy(&v[e], &x, sizeof x);
        }
        hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hid_t sp = H5Screate_simple(2, dims, NULL), dcpl = larch_ckpt_dataset_dcpl(2, dims);
        hid_t d = H5Dcreate2(f, "hdf5", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        CHECK(d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0, "H5Dwrite");
        H5Dclose(d);
        CHECK_OK(larch_ckpt_write_chunked(f, H5P_DEFAULT, path, "larch", 2, dims, v));
        hid_t da = H5Dopen2(f, "hdf5", H5P_DEFAULT), db = H5Dopen2(f, "larch", H5P_DEFAULT);
        hsize_t nchunks = 0;
        H5Dget_num_chunks(da, sp, &nchunks);
        CHECK(nchunks == 2, "pattern %d: %llu chunks", pattern, (unsigned long long)nchunks);
        size_t bytes = 262 * 250 * sizeof(float) + 4;
        unsigned char *ca = malloc(bytes), *cb = malloc(bytes);
        for (hsize_t c = 0; ca && cb && c < nchunks; c++) {
            hsize_t off[2] = {c * 262, 0}, sa = 0, sb = 0;
            uint32_t ma = 1, mb = 1;
            H5Dget_chunk_storage_size(da, off, &sa);
            H5Dget_chunk_storage_size(db, off, &sb);
            CHECK(sa == bytes && sb == bytes, "pattern %d chunk %llu: %llu and %llu bytes stored", pattern,
                  (unsigned long long)c, (unsigned long long)sa, (unsigned long long)sb);
            if (sa != bytes || sb != bytes) break;
            memset(ca, 1, bytes);     /* the padding of the edge chunk is undefined in HDF5's: compare the data and the sum */
            memset(cb, 2, bytes);
            CHECK(H5Dread_chunk(da, H5P_DEFAULT, off, &ma, ca) >= 0 && H5Dread_chunk(db, H5P_DEFAULT, off, &mb, cb) >= 0,
                  "H5Dread_chunk");
            size_t data = (c == 0 ? 262 : 300 - 262) * 250 * sizeof(float);
            CHECK(ma == 0 && mb == 0 && memcmp(ca, cb, data) == 0, "pattern %d chunk %llu: data differ", pattern, (unsigned long long)c);
            CHECK(memcmp(ca + bytes - 4, cb + bytes - 4, 4) == 0,
                  "pattern %d chunk %llu: HDF5's checksum %02x%02x%02x%02x, larch's %02x%02x%02x%02x", pattern,
                  (unsigned long long)c, ca[bytes - 1], ca[bytes - 2], ca[bytes - 3], ca[bytes - 4], cb[bytes - 1],
                  cb[bytes - 2], cb[bytes - 3], cb[bytes - 4]);
        }
        free(ca);
        free(cb);
        /* and HDF5 reads larch's chunks back, checking their checksums */
        float *back = malloc(n * sizeof *back);
        CHECK(back && H5Dread(db, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0 &&
              memcmp(back, v, n * sizeof *v) == 0, "pattern %d: reading larch's chunks", pattern);
        free(back);
        H5Dclose(da);
        H5Dclose(db);
        H5Pclose(dcpl);
        H5Sclose(sp);
        H5Fclose(f);
    }
    CHECK(larch_ckpt_fletcher32("\0\0\0\0", 4) == 0, "all-zero data: checksum 0");
    CHECK(larch_ckpt_fletcher32("\xff\xff", 2) == 0xffffffffu, "one word 0xffff: sums 0xffff (not 0)");
    CHECK(larch_ckpt_fletcher32("\x01\x02\x03\x04", 4) == ((uint32_t)(0x0102 * 2 + 0x0304) << 16 | (0x0102 + 0x0304)),
          "two words: %08x", larch_ckpt_fletcher32("\x01\x02\x03\x04", 4));
    unlink(path);
    free(v);
}

int main(int argc, char **argv)
{
    larch_comm comm;
    CHECK_OK(larch_comm_init(&comm, &argc, &argv));
    char dir[] = "/tmp/larch_ckpt_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char ckdir[600], path[700], bad[700];
    snprintf(ckdir, sizeof ckdir, "%s/ck", dir);
    check_fletcher32_matches_hdf5(dir);

    /* ---- round trip ---- */
    net a, b;
    CHECK_OK(make_net(&a, dir, 5, "", "adam"));
    fill(&a, 0.25f);
    larch_ckpt_meta meta = {0};
    meta.rng_seed = 4000000000ULL; meta.world_size = 1; meta.sched_total_steps = 40;
    at_step(&meta, a.o, 12);
    meta.config = "train: {batch_size: 8}\n";
    snprintf(meta.run_id, sizeof meta.run_id, "00000000000000aa");
    meta.lineage = "00000000000000aa:0";
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
    CHECK(b.o->t == 12, "optimizer t %ld", b.o->t);
    for (int i = 0; i < b.m->n_params; i++)
        CHECK(b.o->tensor_t[i] == 3 + i, "%s: step count %ld, saved %d", b.m->params[i].name, b.o->tensor_t[i], 3 + i);
    CHECK(got.format_version == LARCH_CKPT_FORMAT && LARCH_CKPT_FORMAT == 2 && !strcmp(got.larch_version, larch_version()),
          "format/version");
    CHECK(got.step == 12 && got.epoch == 2 && got.sampler_epoch == 2 && got.sampler_step == 2 && got.samples_seen == 96 &&
          got.steps_per_epoch == 5, "positions %ld %ld %ld %ld %ld %ld", got.step, got.epoch, got.sampler_epoch,
          got.sampler_step, got.samples_seen, got.steps_per_epoch);
    CHECK(got.rng_seed == 4000000000ULL && got.world_size == 1 && got.global_batch == 8, "seed/world/batch");
    CHECK(got.sched_step == 12 && got.sched_total_steps == 40, "schedule state");
    CHECK(!strcmp(got.optimizer, "adam") && got.config && !strcmp(got.config, meta.config), "optimizer/config");
    CHECK(!strcmp(got.run_id, "00000000000000aa") && got.lineage && !strcmp(got.lineage, "00000000000000aa:0") &&
          !strcmp(got.state_layout, "replicated"), "run id %s, lineage %s, layout %s", got.run_id,
          got.lineage ? got.lineage : "(null)", got.state_layout);
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
        CHECK(got.format_version == 1 && nb.o->t == 12, "format %d, t %ld", got.format_version, nb.o->t);
        for (int i = 0; i < nb.m->n_params; i++)
            CHECK(nb.o->tensor_t[i] == 12 && nb.o->tensor_mu_product[i] == 0.25,
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

    /* ---- the file is what HDF5 needs, and the reservation covers it closely ---- */
    {
        long size = file_size(path);
        double est = larch_ckpt_estimate_bytes(a.m, a.o, strlen(meta.config) + strlen(meta.lineage));
        long values = 0, tensors = a.m->n_params * (1 + a.o->n_state) + a.m->n_buffers;
        for (int i = 0; i < a.m->n_params; i++) values += (long)a.m->params[i].size * (1 + a.o->n_state);
        for (int i = 0; i < a.m->n_buffers; i++) values += (long)a.m->buffers[i].size;
        /* HDF5 needs ~2.5 KiB per dataset, ~1.3 KiB per group (docs/checkpoints.md) */
        CHECK(size > 0 && size <= 4 * values + 4096 * tensors + 32768, "a checkpoint of %ld values in %ld tensors takes %ld bytes",
              values, tensors, size);
        CHECK((double)size <= est && est <= 1.02 * (double)size + 8192.0, "file %ld bytes, reservation %.0f", size, est);
    }

    /* ---- a save checks the metadata as a load will ---- */
    meta.samples_seen = 95;
    CHECK_FAIL(larch_ckpt_save(ckdir, 2, &comm, a.m, a.o, &meta, NULL, 0), LARCH_ERR_INVALID, "'samples_seen' is 95");
    at_step(&meta, a.o, 12);
    a.o->t = 11;
    CHECK_FAIL(larch_ckpt_save(ckdir, 2, &comm, a.m, a.o, &meta, NULL, 0), LARCH_ERR_INVALID, "'t' is 11, but step is 12");
    a.o->t = 12;
    CHECK(count_files(ckdir, ".ckpt-") == 0, "a refused save leaves no temporary file");

    /* ---- damaged or inconsistent attributes: range, cross-checks, checksum ---- */
    {
        struct { const char *obj, *name; long v; larch_status load; const char *needle; } cases[] = {
            {"/", "step", -5, LARCH_ERR_FORMAT, "attribute 'step' is -5, out of its range"},
            {"/", "world_size", -2, LARCH_ERR_FORMAT, "attribute 'world_size' is -2, out of its range"},
            {"/", "epoch", -3, LARCH_ERR_FORMAT, "attribute 'epoch' is -3, out of its range"},
            {"/", "step", 12 ^ 1, LARCH_ERR_FORMAT, "'samples_seen' is 96, not step 13"},          /* one flipped bit */
            {"/optim", "t", 12 ^ 4, LARCH_ERR_FORMAT, "/optim attribute 't' is 8, but step is 12"},  /* one flipped bit */
            {"/", "sampler_step", 3, LARCH_ERR_FORMAT, "the sampler position"},
            {"/", "world_size", 3, LARCH_ERR_FORMAT, "metadata checksum does not match"},      /* in range, consistent */
            {"/", "rng_seed", 4000000001L, LARCH_ERR_FORMAT, "metadata checksum does not match"},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            snprintf(bad, sizeof bad, "%s/attr%zu.h5", dir, i);
            copy_file(path, bad, -1);
            set_long_attr(bad, cases[i].obj, cases[i].name, cases[i].v);
            CHECK_FAIL(larch_ckpt_load(bad, &comm, b.m, b.o, NULL), cases[i].load, cases[i].needle);
            CHECK_FAIL(larch_ckpt_verify(bad, NULL), cases[i].load, cases[i].needle);
            CHECK_FAIL(larch_ckpt_read_meta(bad, &got), cases[i].load, cases[i].needle);
        }
        snprintf(bad, sizeof bad, "%s/config.h5", dir);                     /* the config text edited */
        copy_file(path, bad, -1);
        set_str_attr(bad, "config", "train: {batch_size: 8}\noptim: {lr: 1}\n");
        CHECK_FAIL(larch_ckpt_verify(bad, NULL), LARCH_ERR_FORMAT, "metadata checksum does not match");
        CHECK_FAIL(larch_ckpt_load(bad, &comm, b.m, b.o, NULL), LARCH_ERR_FORMAT, "config text was changed or corrupted");
    }

    /* ---- format 1 (no metadata checksum) still loads, and is still range-checked ---- */
    snprintf(bad, sizeof bad, "%s/format1.h5", dir);
    copy_file(path, bad, -1);
    make_format1(bad, 1.0);
    CHECK_OK(larch_ckpt_load(bad, &comm, b.m, b.o, &got));
    CHECK(got.format_version == 1 && got.step == 12 && got.steps_per_epoch == 0 && !got.run_id[0] && !got.lineage,
          "format 1: version %d step %ld", got.format_version, got.step);
    larch_ckpt_meta_free(&got);
    CHECK_OK(larch_ckpt_verify(bad, NULL));
    set_long_attr(bad, "/", "step", -5);
    CHECK_FAIL(larch_ckpt_load(bad, &comm, b.m, b.o, NULL), LARCH_ERR_FORMAT, "'step' is -5");
    set_long_attr(bad, "/", "step", 12);
    set_long_attr(bad, "/", "sampler_step", 12);       /* epoch 2, step 12: 0 steps per epoch */
    CHECK_FAIL(larch_ckpt_verify(bad, NULL), LARCH_ERR_FORMAT, "sampler position");

    /* ---- keep: only the newest two stay ---- */
    for (long step = 13; step <= 14; step++) {
        at_step(&meta, a.o, step);
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
    at_step(&meta, c.o, 1);
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

    /* ---- a directory, or not an HDF5 file: clear messages ---- */
    CHECK_FAIL(larch_ckpt_read_meta(ckdir, &got), LARCH_ERR_IO, "is a directory, not a checkpoint file (its newest checkpoint: ");
    {
        char *text = NULL;
        size_t len = 0;
        FILE *mf = open_memstream(&text, &len);
        CHECK_FAIL(larch_ckpt_info(ckdir, mf), LARCH_ERR_IO, "is a directory");
        fclose(mf);
        free(text);
    }
    snprintf(bad, sizeof bad, "%s/notes.h5", dir);
    f = fopen(bad, "w");
    fputs("not a checkpoint\n", f);
    fclose(f);
    CHECK_FAIL(larch_ckpt_verify(bad, NULL), LARCH_ERR_FORMAT, "is not an HDF5 file");

    /* ---- the lock of a run's directory, and an unwritable one ---- */
    {
        char locked[700], nodir[700], ro[700];
        snprintf(locked, sizeof locked, "%s/locked", dir);
        int fd1 = -1, fd2 = -1;
        CHECK_OK(larch_dir_lock(locked, "checkpoint.dir", &fd1));
        CHECK_FAIL(larch_dir_lock(locked, "checkpoint.dir", &fd2), LARCH_ERR_IO, "is in use by another larch run (pid ");
        CHECK(fd2 == -1, "no descriptor for a refused lock");
        larch_dir_unlock(&fd1);
        CHECK_OK(larch_dir_lock(locked, "checkpoint.dir", &fd2));     /* released with its descriptor */
        larch_dir_unlock(&fd2);
        snprintf(nodir, sizeof nodir, "%s/net.yaml/ck", dir);       /* under a file */
        CHECK_FAIL(larch_dir_lock(nodir, "checkpoint.dir", &fd1), LARCH_ERR_IO, "Not a directory");
        snprintf(ro, sizeof ro, "%s/ro", dir);
        CHECK(mkdir(ro, 0755) == 0 && chmod(dir, 0755) == 0, "mkdir %s", ro);
        if (geteuid() == 0) {
            CHECK(as_nobody(lock_unwritable, ro) == 0, "locking a directory nobody may write in");
        } else {
            chmod(ro, 0555);
            CHECK(lock_unwritable(ro) == 0, "locking a read-only directory");
        }
    }

    /* ---- the directory before a run's first save: stale temporaries go ---- */
    char *logtext = NULL;
    size_t loglen = 0;
    FILE *log = NULL;
    int moved = -1;
    {
        char run[700], tmpf[800];
        snprintf(run, sizeof run, "%s/run", dir);
        CHECK(mkdir(run, 0755) == 0, "mkdir %s", run);
        snprintf(tmpf, sizeof tmpf, "%s/.ckpt-00000005.h5.tmp", run);      /* larch 0.1's name, full size */
        f = fopen(tmpf, "w");
        CHECK(f && ftruncate(fileno(f), 1 << 20) == 0, "a stale temporary file");
        fclose(f);
        snprintf(tmpf, sizeof tmpf, "%s/.ckpt-00000006.0123abcd.h5.tmp", run);
        f = fopen(tmpf, "w");
        fclose(f);
        log = open_memstream(&logtext, &loglen);
        CHECK_OK(larch_ckpt_prepare_dir(run, "0000000000000001:0", "0000000000000001", log, &moved));
        fclose(log);
        CHECK(count_files(run, ".ckpt-") == 0 && moved == 0, "stale temporaries left");
        CHECK(strstr(logtext, "removed 2 temporary file(s) of interrupted saves (1.0 MiB)") != NULL, "log: %s", logtext);
        free(logtext);
    }

    /* ---- lineages: checkpoints of an abandoned branch are moved aside, the newest write is kept ---- */
    {
        const char *A = "aaaaaaaaaaaaaaaa", *B = "bbbbbbbbbbbbbbbb";
        char lin[700], aside[800], file[900];
        snprintf(lin, sizeof lin, "%s/lineage", dir);
        snprintf(meta.run_id, sizeof meta.run_id, "%s", A);
        meta.lineage = "aaaaaaaaaaaaaaaa:0";
        for (long step = 5; step <= 20; step += 5) {                    /* run A: 5, 10, 15, 20 */
            at_step(&meta, a.o, step);
            CHECK_OK(larch_ckpt_save(lin, 0, &comm, a.m, a.o, &meta, NULL, 0));
        }
        /* run B resumes A's step 10: A's 15 and 20 are another branch */
        log = open_memstream(&logtext, &loglen);
        CHECK_OK(larch_ckpt_prepare_dir(lin, "aaaaaaaaaaaaaaaa:0 bbbbbbbbbbbbbbbb:10", B, log, &moved));
        fclose(log);
        snprintf(aside, sizeof aside, "%s/abandoned-%s", lin, B);
        CHECK(moved == 2 && count_files(aside, "ckpt-0000001[5]") == 1 && count_files(aside, "ckpt-00000020") == 1,
              "moved %d", moved);
        CHECK(count_files(lin, "ckpt-") == 2, "A's 5 and 10 stay");
        CHECK(strstr(logtext, "moved 2 checkpoint(s) that are not on this run's lineage") &&
              strstr(logtext, "ckpt-00000015.h5 (run aaaaaaaaaaaaaaaa)"), "log: %s", logtext);
        free(logtext);
        /* B saves 15 with keep 1: it is the one kept */
        snprintf(meta.run_id, sizeof meta.run_id, "%s", B);
        meta.lineage = "aaaaaaaaaaaaaaaa:0 bbbbbbbbbbbbbbbb:10";
        at_step(&meta, a.o, 15);
        CHECK_OK(larch_ckpt_save(lin, 1, &comm, a.m, a.o, &meta, path, sizeof path));
        n = larch_ckpt_list(lin, &list);
        CHECK(n == 1 && strstr(list[0], "ckpt-00000015.h5"), "kept %d", n);
        for (int i = 0; i < n; i++) free(list[i]);
        free(list);
        CHECK_OK(larch_ckpt_read_meta(path, &got));
        CHECK(!strcmp(got.run_id, B), "the kept checkpoint is B's: %s", got.run_id);
        larch_ckpt_meta_free(&got);
        /* a later checkpoint in the directory (another process put it there) never makes
           the save delete what it just wrote */
        snprintf(file, sizeof file, "%.700s/ckpt-00000020.h5", aside);
        snprintf(bad, sizeof bad, "%.600s/ckpt-00000020.h5", lin);
        copy_file(file, bad, -1);
        at_step(&meta, a.o, 16);
        CHECK_OK(larch_ckpt_save(lin, 1, &comm, a.m, a.o, &meta, path, sizeof path));
        CHECK(access(path, R_OK) == 0, "the checkpoint just written (%s) was pruned", path);
        CHECK(access(bad, R_OK) == 0, "a later checkpoint is not pruned by an earlier one");
        /* membership */
        larch_ckpt_meta q;
        memset(&q, 0, sizeof q);
        snprintf(q.run_id, sizeof q.run_id, "%s", A);
        q.step = 10;
        CHECK(larch_ckpt_on_lineage(&q, "aaaaaaaaaaaaaaaa:0 bbbbbbbbbbbbbbbb:10"), "A's 10 is B's parent");
        q.step = 11;
        CHECK(!larch_ckpt_on_lineage(&q, "aaaaaaaaaaaaaaaa:0 bbbbbbbbbbbbbbbb:10"), "A's 11 is not on B's lineage");
        CHECK(!larch_ckpt_on_lineage(&q, "cccccccccccccccc:0"), "another run");
        snprintf(q.run_id, sizeof q.run_id, "%s", B);
        q.step = 400;
        CHECK(larch_ckpt_on_lineage(&q, "aaaaaaaaaaaaaaaa:0 bbbbbbbbbbbbbbbb:10"), "B's own");
        q.run_id[0] = '\0';                                             /* format 1: an unknown run */
        q.step = 7;
        CHECK(larch_ckpt_on_lineage(&q, "-:0 bbbbbbbbbbbbbbbb:10"), "format 1 before the resume point");
        q.step = 12;
        CHECK(!larch_ckpt_on_lineage(&q, "-:0 bbbbbbbbbbbbbbbb:10"), "format 1 after the resume point");
        CHECK(!larch_ckpt_on_lineage(&q, "aaaaaaaaaaaaaaaa:0"), "format 1 and a fresh lineage");
        meta.lineage = NULL;
        meta.run_id[0] = '\0';
    }

    /* ---- checkpoint.resume: the config compared, and auto passes over a damaged newest file ---- */
    {
        char cfgpath[700], out[700], ckp[900], aside[900];
        snprintf(cfgpath, sizeof cfgpath, "%s/auto.yaml", dir);
        snprintf(out, sizeof out, "%s/auto", dir);
        f = fopen(cfgpath, "w");
        fputs("train: {batch_size: 8, epochs: 1, max_steps: 4, seed: 3, log_every: 1, threads: 1}\n"
              "optim: {name: adam, lr: 0.01}\n"
              "sched: {name: cosine}\n"
              "data: {name: synthetic, prefetch: false, synthetic: {n_train: 64, n_test: 16, shape: [1, 1, 6], classes: 3}}\n"
              "model: [{type: dense, name: fc, units: 8}, {type: relu}, {type: dense, name: out, units: 3}]\n"
              "checkpoint: {every_steps: 2, keep: 0}\n", f);
        fclose(f);
        larch_node *cfg = NULL;
        larch_train_result res;
        log = open_memstream(&logtext, &loglen);
        larch_train_opts opts = {out, log, 0, NULL, 0};
        CHECK_OK(larch_run_load(cfgpath, NULL, 0, &cfg));
        CHECK_OK(larch_train(cfg, &comm, &opts, &res));
        snprintf(ckp, sizeof ckp, "%s/checkpoints/ckpt-00000002.h5", out);
        larch_ckpt_meta m2;
        CHECK_OK(larch_ckpt_read_meta(ckp, &m2));
        larch_node_free(cfg);
        /* the config compared: changed keys are named with both values, unless allowed */
        const char *sets1[] = {"train.max_steps=6", "optim.lr=0.02"};
        CHECK_OK(larch_run_load(cfgpath, sets1, 2, &cfg));
        CHECK_FAIL(larch_ckpt_check_resume(ckp, &m2, cfg, 6, 8, log), LARCH_ERR_CONFIG, "optim.lr: 0.01 in the checkpoint, 0.02 now");
        CHECK(strstr(larch_errmsg(), "train.max_steps: 4 in the checkpoint, 6 now (the cosine schedule spans 4 steps in the "
                     "checkpoint, 6 now: the learning rate of step 2") && strstr(larch_errmsg(), "checkpoint.allow_changes"),
              "message: %s", larch_errmsg());
        larch_node_free(cfg);
        const char *sets2[] = {"train.max_steps=6", "optim.lr=0.02", "checkpoint.allow_changes=[optim, train.max_steps]"};
        CHECK_OK(larch_run_load(cfgpath, sets2, 3, &cfg));
        CHECK_OK(larch_ckpt_check_resume(ckp, &m2, cfg, 6, 8, log));
        larch_node_free(cfg);
        const char *sets3[] = {"train.batch_size=16", "checkpoint.allow_changes=[train]"};
        CHECK_OK(larch_run_load(cfgpath, sets3, 2, &cfg));
        CHECK_FAIL(larch_ckpt_check_resume(ckp, &m2, cfg, 4, 4, log), LARCH_ERR_CONFIG, "train.batch_size: 8 in the checkpoint, "
                   "16 now (it cannot change");
        larch_node_free(cfg);
        const char *sets4[] = {"model.0.units=9", "data.synthetic.noise=0.25", "data.dir=/elsewhere", "train.log_every=2"};
        CHECK_OK(larch_run_load(cfgpath, sets4, 4, &cfg));
        CHECK_FAIL(larch_ckpt_check_resume(ckp, &m2, cfg, 4, 8, log), LARCH_ERR_CONFIG, "model.0.units: 8 in the checkpoint, 9 now");
        CHECK(strstr(larch_errmsg(), "data.synthetic.noise: 0.5 in the checkpoint, 0.25 now") && !strstr(larch_errmsg(), "data.dir")
              && !strstr(larch_errmsg(), "log_every"), "message: %s", larch_errmsg());
        larch_node_free(cfg);
        larch_ckpt_meta_free(&m2);
        /* a damaged tensor in the newest checkpoint: auto resumes the one before and says so */
        snprintf(ckp, sizeof ckp, "%s/checkpoints/ckpt-00000004.h5", out);
        haddr_t at = chunk_address(ckp, "/params/fc/weight");
        CHECK(at != HADDR_UNDEF, "chunk address");
        f = fopen(ckp, "r+b");
        fseek(f, (long)at + 8, SEEK_SET);
        fputc(0x5a, f);
        fclose(f);
        const char *sets5[] = {"checkpoint.resume=auto"};
        CHECK_OK(larch_run_load(cfgpath, sets5, 1, &cfg));
        CHECK_OK(larch_train(cfg, &comm, &opts, &res));
        CHECK(res.resumed_from == 2 && res.steps == 4, "resumed from %ld, %ld steps", res.resumed_from, res.steps);
        fflush(log);
        CHECK(strstr(logtext, "checkpoint.resume=auto: passing over") && strstr(logtext, "ckpt-00000004.h5") &&
              strstr(logtext, "/params/fc/weight") && strstr(logtext, "resuming from the newest valid checkpoint"),
              "log:\n%s", logtext);
        CHECK(strstr(logtext, "moved 1 checkpoint(s)"), "the damaged later file is moved aside:\n%s", logtext);
        CHECK_OK(larch_ckpt_verify(ckp, NULL));                         /* written again by the resumed run */
        snprintf(aside, sizeof aside, "%s/checkpoints", out);
        CHECK(count_files(aside, "abandoned-") == 1, "an abandoned-<run id> directory");
        larch_node_free(cfg);
        fclose(log);
        free(logtext);
    }

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
        at_step(&meta, NULL, 5);
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
