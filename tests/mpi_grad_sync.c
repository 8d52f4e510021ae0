/* mpi_grad_sync.c - the three ways of summing gradient buckets (blocking
 * after backward, MPI_Iallreduce during backward, the communication thread)
 * on 2 and 4 ranks give bit-identical parameters after several steps of
 * training a small network (several buckets, each rank with its own data),
 * also with frozen tensors (no bucket for them) and 16-bit compression
 * (threaded and non-blocking: within 1% of the float sums' parameters).
 * The ranks end with the same parameters, and the thread starts its buckets
 * during backward (the early count). */
#include "check.h"
#include "parallel/grad_sync.h"
#include "larch/larch.h"
#include "larch/optim.h"
#include "nn/model_internal.h"

#include <stdlib.h>

#define BATCH 8
#define STEPS 6

static const char *const mode_name[] = {"blocking", "iallreduce", "comm thread"};

/* Trains STEPS steps of SGD with momentum and returns the parameters
 * (malloc'd, *n floats); *early: buckets started during backward. */
static float *train(const larch_comm *comm, int mode, int compress, int freeze, size_t *n, long *early)
{
    larch_node *l = NULL;
    CHECK_OK(larch_cfg_parse("[{type: dense, name: a, units: 24}, {type: relu}, {type: dense, name: b, units: 16}, "
                             "{type: relu}, {type: dense, name: c, units: 5}]", "<layers>", &l));
    larch_model *m = NULL;
    CHECK_OK(larch_model_build(&m, (larch_shape){1, 1, 12}, l, NULL, NULL, 11));
    CHECK_OK(larch_model_plan(m, BATCH));
    if (freeze) m->params[2].lr_mult = 0.0f;                    /* b's weights: the buckets split around them */
    larch_optim_opts sgd = larch_optim_defaults_for(LARCH_OPT_SGD);
    sgd.lr = 0.05;
    sgd.momentum = 0.9;
    larch_optim *o = NULL;
    CHECK_OK(larch_optim_create(&o, m, &sgd));
    grad_sync *g = NULL;
    /* 0.0001 MiB = 26 floats: about a bucket per tensor */
    CHECK_OK(larch_grad_sync_create(&g, comm, m, 0.0001, 0.0001, mode, 0, compress));
    larch_grad_sync_plan(g);
    CHECK(larch_grad_sync_buckets(g) >= 3, "%s: %d buckets (want several)", mode_name[mode], larch_grad_sync_buckets(g));
    float x[BATCH * 12];
    int32_t y[BATCH];
    larch_rng r;
    for (int step = 0; step < STEPS; step++) {
        larch_rng_init(&r, 1000, 7, (uint32_t)comm->rank, (uint32_t)step);   /* each rank its own data */
        for (int i = 0; i < BATCH * 12; i++) x[i] = larch_rng_uniform(&r) * 2.0f - 1.0f;
        for (int i = 0; i < BATCH; i++) y[i] = (int32_t)larch_rng_below(&r, 5);
        larch_batch b = {0};
        b.n = BATCH;
        b.x = x;
        b.label[0] = y;
        b.sample0 = (uint32_t)(comm->rank * BATCH);
        larch_pass p = {BATCH, 1, 3, (uint32_t)step, b.sample0, 0, NULL};
        larch_model_forward(m, &b, &p);
        larch_model_loss(m, &b, 1.0f / (float)(BATCH * comm->size), NULL);
        larch_grad_sync_begin(g);
        larch_model_backward(m, &p);
        CHECK_OK(larch_grad_sync_finish(g));
        larch_optim_step(o, 0.05f);
    }
    long steps = 0;
    larch_grad_sync_take_wait(g, &steps, early);
    CHECK(steps == STEPS, "%s: %ld steps counted", mode_name[mode], steps);
    *n = m->n_floats;
    float *out = malloc(*n * sizeof *out);
    CHECK(out != NULL, "malloc");
    if (out) memcpy(out, m->param, *n * sizeof *out);
    larch_grad_sync_free(g);
    larch_optim_free(o);
    larch_model_free(m);
    larch_node_free(l);
    return out;
}

/* The same parameters on every rank (rank 0's, broadcast, compared bit for bit). */
static void same_on_ranks(const larch_comm *comm, const float *w, size_t n, const char *what)
{
    float *w0 = malloc(n * sizeof *w0);
    memcpy(w0, w, n * sizeof *w0);
    CHECK_OK(larch_comm_bcast(comm, w0, n * sizeof *w0, 0));
    CHECK(memcmp(w0, w, n * sizeof *w0) == 0, "%s: rank %d's parameters differ from rank 0's", what, comm->rank);
    free(w0);
}

/* ||a - b|| / ||b|| */
static double norm_rel(const float *a, const float *b, size_t n)
{
    double d = 0.0, t = 0.0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - (double)b[i]) * ((double)a[i] - (double)b[i]);
        t += (double)b[i] * (double)b[i];
    }
    return sqrt(d / t);
}

static double max_rel(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (fabs((double)a[i]) + 1e-3);
        if (d > worst) worst = d;
    }
    return worst;
}

int main(int argc, char **argv)
{
    larch_comm comm;
    CHECK_OK(larch_comm_init(&comm, &argc, &argv));
    CHECK(larch_comm_threads(&comm), "MPI does not provide MPI_THREAD_MULTIPLE: the comm thread is not tested");
    for (int freeze = 0; freeze <= 1; freeze++) {
        size_t n[3];
        long early[3];
        float *w[3];
        for (int mode = 0; mode < 3; mode++) w[mode] = train(&comm, mode, 0, freeze, &n[mode], &early[mode]);
        for (int mode = 1; mode < 3; mode++) {
            CHECK(n[mode] == n[0] && w[mode] && w[0] && memcmp(w[mode], w[0], n[0] * sizeof(float)) == 0,
                  "%d ranks%s: %s parameters differ from the blocking sums' after %d steps (worst relative %.3g)",
                  comm.size, freeze ? ", a frozen tensor" : "", mode_name[mode], STEPS,
                  w[mode] && w[0] ? max_rel(w[mode], w[0], n[0]) : -1.0);
            CHECK(early[mode] > 0, "%s: no bucket started during backward", mode_name[mode]);
        }
        CHECK(early[0] == 0, "blocking: %ld buckets started during backward", early[0]);
        same_on_ranks(&comm, w[2], n[2], "comm thread");
        for (int mode = 0; mode < 3; mode++) free(w[mode]);
    }
    /* 16-bit gradients: through the thread and through MPI_Iallreduce, the
     * same reduction operator; near the float sums */
    for (int c = 1; c <= 2; c++) {
        size_t nt, ni, nf;
        long e;
        float *wt = train(&comm, LARCH_SYNC_THREAD, c, 0, &nt, &e);
        float *wi = train(&comm, LARCH_SYNC_IALLREDUCE, c, 0, &ni, &e);
        float *wf = train(&comm, LARCH_SYNC_BLOCKING, 0, 0, &nf, &e);
        double dt = norm_rel(wt, wf, nf), di = norm_rel(wi, wf, nf);
        CHECK(dt > 0.0 && dt < 0.01, "%s comm thread: relative distance %.3g from the float sums' parameters",
              c == 1 ? "fp16" : "bf16", dt);
        CHECK(di > 0.0 && di < 0.01, "%s iallreduce: relative distance %.3g from the float sums' parameters",
              c == 1 ? "fp16" : "bf16", di);
        same_on_ranks(&comm, wt, nt, "comm thread, 16-bit");
        free(wt);
        free(wi);
        free(wf);
    }
    int failed = check_result("mpi_grad_sync");
    double f = failed;
    larch_comm_allreduce_f64(&comm, &f, 1);
    larch_comm_finalize(&comm);
    return f > 0 ? 1 : 0;
}
