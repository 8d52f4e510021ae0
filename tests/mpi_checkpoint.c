/* mpi_checkpoint.c - checkpoints of sharded optimizer state (ZeRO-1) on 2
 * and 4 ranks. Each rank fills its slice of the state with values that name
 * their position, the ranks save together, and every rank then loads the
 * file into a whole (unsharded) optimizer and into its own slice again: every
 * value must come back. The model is smaller than a slice's 16-float
 * alignment: the whole state falls to the last rank and the others hold
 * empty slices, so the layout must not be guessed from one rank's range.
 * (Tensors split between ranks: tests/cli_ckpt.sh, sharded 2 -> 4 ranks.) */
#include "check.h"
#include "parallel/grad_sync.h"
#include "larch/checkpoint.h"
#include "larch/larch.h"
#include "nn/model_internal.h"

#include <stdlib.h>
#include <unistd.h>

static float state_value(int k, size_t e) { return 100.0f * (float)(k + 1) + 0.001f * (float)e; }

/* The values [a, z) of parameter i that the optimizer's range holds. */
static void own(const larch_optim *o, const larch_param *p, size_t *a, size_t *z)
{
    *a = p->offset > o->lo ? p->offset : o->lo;
    *z = p->offset + p->size < o->hi ? p->offset + p->size : o->hi;
    if (*z < *a) *z = *a;
}

static void fill(larch_optim *o)
{
    const larch_model *m = o->model;
    for (int i = 0; i < m->n_params; i++) {
        size_t a, z;
        own(o, &m->params[i], &a, &z);
        if (o->state_offset[i] == (size_t)-1) continue;
        for (int k = 0; k < o->n_state; k++)
            for (size_t e = a; e < z; e++) o->state[k][o->state_offset[i] + (e - a)] = state_value(k, e);
    }
}

/* Every value the optimizer's range holds is the one saved; returns the mismatches. */
static int count_wrong(const larch_optim *o, size_t *first)
{
    const larch_model *m = o->model;
    int wrong = 0;
    for (int i = 0; i < m->n_params; i++) {
        size_t a, z;
        own(o, &m->params[i], &a, &z);
        if (o->state_offset[i] == (size_t)-1) continue;
        for (int k = 0; k < o->n_state; k++)
            for (size_t e = a; e < z; e++)
                if (o->state[k][o->state_offset[i] + (e - a)] != state_value(k, e)) {
                    if (!wrong++) *first = e;
                }
    }
    return wrong;
}

static void one_model(const larch_comm *comm, const char *dir, const char *layers, larch_shape in, const char *what)
{
    larch_node *l = NULL;
    CHECK_OK(larch_cfg_parse(layers, "<layers>", &l));
    larch_optim_opts adam = larch_optim_defaults_for(LARCH_OPT_ADAM), *opt = &adam;
    adam.lr = 0.01;
    larch_model *m = NULL, *m2 = NULL;
    CHECK_OK(larch_model_build(&m, in, l, NULL, NULL, 5));
    CHECK_OK(larch_model_build(&m2, in, l, NULL, NULL, 6));
    grad_sync *g = NULL;
    CHECK_OK(larch_grad_sync_create(&g, comm, m, 25.0, 1.0, 0, 1, 0));
    size_t lo, hi;
    larch_grad_sync_shard_range(g, &lo, &hi);
    larch_optim *o = NULL, *whole = NULL, *slice = NULL;
    CHECK_OK(larch_optim_create_shard(&o, m, opt, lo, hi));
    fill(o);
    o->t = 3;
    larch_ckpt_meta meta = {0};
    meta.step = meta.sched_step = meta.sched_total_steps = 3;
    meta.steps_per_epoch = 1;
    meta.epoch = meta.sampler_epoch = 3;
    meta.global_batch = 4;
    meta.samples_seen = 12;
    meta.world_size = comm->size;
    char path[600];
    CHECK_OK(larch_ckpt_save(dir, 0, comm, m, o, &meta, path, sizeof path));

    /* into a whole optimizer on every rank */
    CHECK_OK(larch_optim_create(&whole, m2, opt));
    larch_ckpt_meta got;
    CHECK_OK(larch_ckpt_load(path, comm, m2, whole, &got));
    size_t first = 0;
    int wrong = count_wrong(whole, &first);
    CHECK(wrong == 0, "%s, %d ranks (model of %zu floats, this rank's slice [%zu, %zu)): %d optimizer state values were "
          "not saved, the first at %zu", what, comm->size, m->n_floats, lo, hi, wrong, first);
    CHECK(!strcmp(got.state_layout, "sharded"), "%s: layout '%s'", what, got.state_layout);
    larch_ckpt_meta_free(&got);
    /* into each rank's slice again */
    CHECK_OK(larch_optim_create_shard(&slice, m2, opt, lo, hi));
    CHECK_OK(larch_ckpt_load(path, comm, m2, slice, NULL));
    CHECK(count_wrong(slice, &first) == 0, "%s: a rank's slice differs after loading", what);
    if (comm->rank == 0) CHECK_OK(larch_ckpt_verify(path, NULL));

    larch_optim_free(slice);
    larch_optim_free(whole);
    larch_optim_free(o);
    larch_grad_sync_free(g);
    larch_model_free(m2);
    larch_model_free(m);
    larch_node_free(l);
}

int main(int argc, char **argv)
{
    larch_comm comm;
    CHECK_OK(larch_comm_init(&comm, &argc, &argv));
    char dir[64] = "/tmp/larch_mpickpt_XXXXXX";
    if (comm.rank == 0) CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    CHECK_OK(larch_comm_bcast(&comm, dir, sizeof dir, 0));
    char sub[128];
    snprintf(sub, sizeof sub, "%s/tiny", dir);
    /* 6 weights: one 16-float slot, less than a slice per rank */
    one_model(&comm, sub, "[{type: dense, name: a, units: 2, bias: false}]", (larch_shape){1, 1, 3}, "tiny model");
    larch_comm_barrier(&comm);
    if (comm.rank == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK(system(cmd) == 0, "cleanup");
    }
    int failed = check_result("mpi_checkpoint");
    double f = failed;
    larch_comm_allreduce_f64(&comm, &f, 1);
    larch_comm_finalize(&comm);
    return f > 0 ? 1 : 0;
}
