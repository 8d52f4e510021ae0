/* mpi_ckpt_exact.c - a checkpoint written by 2 or 4 ranks (rank 0 writes,
 * sharded optimizer state gathered to it) reads back bit for bit on another
 * rank count. The model's weight spans several 256 KiB chunks with a
 * partial edge chunk; parameters and optimizer state hold arbitrary float
 * bit patterns (every finite exponent, subnormals, negative zero), saved
 * once replicated and once sharded over this run's ranks, and loaded into
 * the whole state (what 1 rank holds) and into the slices of the other rank
 * count (4 when run on 2 ranks, 2 on 4), every slice by some rank. */
#include "check.h"
#include "larch/checkpoint.h"
#include "larch/larch.h"
#include "nn/model_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static float bits_value(uint32_t k, size_t e)
{
    uint32_t x = (uint32_t)e * 2654435761u ^ (k + 1) * 0x9e3779b9u;
    x ^= x >> 15; x *= 0x2c1b3c6du; x ^= x >> 12; x *= 0x297a2d39u; x ^= x >> 15;
    if (((x >> 23) & 0xffu) == 0xffu) x ^= 1u << 30;   /* finite: no Inf or NaN */
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* The slice [lo, hi) of rank r of n: equal 16-float aligned shares. */
static void slice(size_t total, int r, int n, size_t *lo, size_t *hi)
{
    size_t per = (total + (size_t)n - 1) / (size_t)n;
    per = (per + 15) / 16 * 16;
    *lo = per * (size_t)r < total ? per * (size_t)r : total;
    *hi = *lo + per < total ? *lo + per : total;
}

static void fill_state(larch_optim *o)
{
    const larch_model *m = o->model;
    for (int i = 0; i < m->n_params; i++) {
        const larch_param *p = &m->params[i];
        if (o->state_offset[i] == (size_t)-1) continue;
        size_t a = p->offset > o->lo ? p->offset : o->lo, z = p->offset + p->size < o->hi ? p->offset + p->size : o->hi;
        for (int k = 0; k < o->n_state; k++)
            for (size_t e = a; e < z; e++) o->state[k][o->state_offset[i] + (e - a)] = bits_value((uint32_t)k + 1, e);
    }
}

/* Values of o's range that differ bit-wise from what fill_state wrote. */
static long state_wrong(const larch_optim *o)
{
    const larch_model *m = o->model;
    long wrong = 0;
    for (int i = 0; i < m->n_params; i++) {
        const larch_param *p = &m->params[i];
        if (o->state_offset[i] == (size_t)-1) continue;
        size_t a = p->offset > o->lo ? p->offset : o->lo, z = p->offset + p->size < o->hi ? p->offset + p->size : o->hi;
        for (int k = 0; k < o->n_state; k++)
            for (size_t e = a; e < z; e++) {
                float want = bits_value((uint32_t)k + 1, e);
                wrong += memcmp(&o->state[k][o->state_offset[i] + (e - a)], &want, sizeof want) != 0;
            }
    }
    return wrong;
}

static long params_wrong(const larch_model *m)
{
    long wrong = 0;
    for (int i = 0; i < m->n_params; i++)           /* not the alignment gaps between tensors */
        for (size_t e = m->params[i].offset; e < m->params[i].offset + m->params[i].size; e++) {
            float want = bits_value(0, e);
            wrong += memcmp(&m->param[e], &want, sizeof want) != 0;
        }
    return wrong;
}

static void check_file(const larch_comm *comm, const char *path, larch_model *m2, const larch_optim_opts *opt,
                       const char *what)
{
    int other = comm->size == 2 ? 4 : 2;
    memset(m2->param, 0, m2->n_floats * sizeof *m2->param);
    larch_optim *whole = NULL;
    CHECK_OK(larch_optim_create(&whole, m2, opt));
    CHECK_OK(larch_ckpt_load(path, comm, m2, whole, NULL));
    long pw = params_wrong(m2), sw = state_wrong(whole);
    CHECK(pw == 0 && sw == 0, "%s, written by %d ranks, read whole: %ld parameters and %ld state values differ", what,
          comm->size, pw, sw);
    larch_optim_free(whole);
    /* loads are collective: every rank loads as often, some slice twice */
    for (int it = 0; it < (other + comm->size - 1) / comm->size; it++) {
        int r = (comm->rank + it * comm->size) % other;
        size_t lo, hi;
        slice(m2->n_floats, r, other, &lo, &hi);
        larch_optim *part = NULL;
        CHECK_OK(larch_optim_create_shard(&part, m2, opt, lo, hi));
        CHECK_OK(larch_ckpt_load(path, comm, m2, part, NULL));
        sw = state_wrong(part);
        CHECK(sw == 0, "%s, written by %d ranks, read as slice %d of %d [%zu, %zu): %ld state values differ", what,
              comm->size, r, other, lo, hi, sw);
        larch_optim_free(part);
    }
    if (comm->rank == 0) CHECK_OK(larch_ckpt_verify(path, NULL));
}

int main(int argc, char **argv)
{
    larch_comm comm;
    CHECK_OK(larch_comm_init(&comm, &argc, &argv));
    char dir[64] = "/tmp/larch_ckptexact_XXXXXX";
    if (comm.rank == 0) CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK_OK(larch_comm_bcast(&comm, dir, sizeof dir, 0));
    /* a: 250 x 300 = 75000 weights, chunks of 218 rows: a partial second chunk */
    larch_node *l = NULL;
    CHECK_OK(larch_cfg_parse("[{type: dense, name: a, units: 250}, {type: relu}, {type: dense, name: b, units: 7}]",
                             "<layers>", &l));
    larch_optim_opts opt = larch_optim_defaults_for(LARCH_OPT_ADAM);
    larch_model *m = NULL, *m2 = NULL;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 300}, l, NULL, NULL, 5));
    CHECK_OK(larch_model_build(&m2, (larch_shape){1, 1, 300}, l, NULL, NULL, 6));
    for (size_t e = 0; e < m->n_floats; e++) m->param[e] = bits_value(0, e);
    larch_ckpt_meta meta = {0};
    meta.step = meta.sched_step = meta.sched_total_steps = meta.epoch = meta.sampler_epoch = 2;
    meta.steps_per_epoch = 1;
    meta.global_batch = 4;
    meta.samples_seen = 8;
    meta.world_size = comm.size;

    larch_optim *o = NULL;
    char sub[128], path[600];
    CHECK_OK(larch_optim_create(&o, m, &opt));          /* replicated */
    fill_state(o);
    o->t = 2;
    snprintf(sub, sizeof sub, "%s/replicated", dir);
    CHECK_OK(larch_ckpt_save(sub, 0, &comm, m, o, &meta, path, sizeof path));
    larch_optim_free(o);
    check_file(&comm, path, m2, &opt, "replicated state");

    size_t lo, hi;                                       /* sharded over this run's ranks */
    slice(m->n_floats, comm.rank, comm.size, &lo, &hi);
    CHECK_OK(larch_optim_create_shard(&o, m, &opt, lo, hi));
    fill_state(o);
    o->t = 2;
    snprintf(sub, sizeof sub, "%s/sharded", dir);
    CHECK_OK(larch_ckpt_save(sub, 0, &comm, m, o, &meta, path, sizeof path));
    larch_optim_free(o);
    check_file(&comm, path, m2, &opt, "sharded state");

    larch_model_free(m2);
    larch_model_free(m);
    larch_node_free(l);
    larch_comm_barrier(&comm);
    if (comm.rank == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK(system(cmd) == 0, "cleanup");
    }
    int failed = check_result("mpi_ckpt_exact");
    double f = failed;
    larch_comm_allreduce_f64(&comm, &f, 1);
    larch_comm_finalize(&comm);
    return f > 0 ? 1 : 0;
}
