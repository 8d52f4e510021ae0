/* comm.c - the only file that talks to MPI (src/io/checkpoint.c only hands
 * the communicator to parallel HDF5). See include/larch/comm.h.
 *
 * Besides the collectives, this file keeps two things for failures: the
 * fault switch LARCH_FAULT (a testing aid, read once by larch_comm_init) and
 * the watchdog, a thread per rank that ends the job when one of larch's
 * collectives has waited longer than dist.timeout_s. Every collective stamps
 * where the main thread is (how many collectives it entered, which one, since
 * when, at which step) in atomics the watchdog reads; when a wait is too long
 * the watchdog asks every other rank's watchdog, over a communicator of its
 * own, for its stamp, names the ranks that did not answer or have not
 * arrived, and calls MPI_Abort (which needs MPI_THREAD_MULTIPLE). */
#include "larch/comm.h"
#include "core/half.h"

#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_PENDING 4096
#define AGREE_MAX 64                     /* doubles summed by one agreement      */
#define WD_GRACE_S 2.0                   /* how long the watchdog waits for answers */
enum { TAG_QUERY = 1, TAG_REPLY = 2 };   /* the watchdog's messages              */

typedef struct {
    MPI_Comm world, node;
    MPI_Comm hb;                         /* the watchdogs' own traffic           */
    MPI_Comm lane;                       /* the gradient comm thread's sums      */
    int rank, size;
    int we_initialized, threads;         /* threads: MPI_THREAD_MULTIPLE provided */
    MPI_Op sum_f16, sum_bf16;            /* sums of 16-bit floats (compression) */
    int n_pending;                       /* non-blocking sums in flight */
    MPI_Request pending[MAX_PENDING];
    int broken;                          /* an agreement failed here: the ranks cannot agree any more */
    /* LARCH_FAULT=RANK:STEP:SITE */
    int fault_rank;
    long fault_step;
    char fault_site[16], fault_spec[80];   /* written once, before any thread */
    /* where the main thread is (written by it, read by the watchdog) */
    atomic_long step, seq;               /* training step; collectives entered  */
    atomic_int waiting;                  /* threads inside a blocking collective */
    atomic_llong since_ns;               /* ... since this time                  */
    _Atomic(const char *) what;          /* ... this one                         */
    /* the watchdog */
    double timeout_s;
    int wd_running;
    atomic_int wd_stop;
    pthread_t wd;
    long *answers;                       /* 3 per rank: seq, step, waiting       */
} comm_impl;

static const char *const fault_sites[] = {"grad_sum", "hook", "gather", "loss", "eval", "save", "comm_thread", NULL};

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* A thread (the main thread, or the gradient comm thread on the lane)
 * enters a blocking collective (`count`: a new one, or a wait for ones
 * already started) and leaves it. `waiting` counts the threads inside one;
 * `what` and `since_ns` are the latest entry's. */
static void enter(comm_impl *m, const char *what, int count)
{
    atomic_store(&m->what, what);
    if (count) atomic_fetch_add(&m->seq, 1);
    atomic_store(&m->since_ns, now_ns());
    atomic_fetch_add(&m->waiting, 1);
}
static void leave(comm_impl *m) { atomic_fetch_sub(&m->waiting, 1); }

/* MPI reduction operators on 16-bit floats: widen, add in float, round back. */
static void sum_16(const uint16_t *in, uint16_t *inout, int len, int bf16)
{
    float a[256], b[256];
    for (int i = 0; i < len; i += 256) {
        size_t k = (size_t)(len - i < 256 ? len - i : 256);
        if (bf16) { larch_bf16_to_f32(in + i, a, k); larch_bf16_to_f32(inout + i, b, k); }
        else { larch_f16_to_f32(in + i, a, k); larch_f16_to_f32(inout + i, b, k); }
        for (size_t j = 0; j < k; j++) b[j] += a[j];
        if (bf16) larch_f32_to_bf16(b, inout + i, k);
        else larch_f32_to_f16(b, inout + i, k);
    }
}
static void op_sum_f16(void *in, void *inout, int *len, MPI_Datatype *dt) { (void)dt; sum_16(in, inout, *len, 0); }
static void op_sum_bf16(void *in, void *inout, int *len, MPI_Datatype *dt) { (void)dt; sum_16(in, inout, *len, 1); }

static larch_status mpi_fail(int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return larch_fail(LARCH_ERR_MPI, "%s failed: %s", what, msg);
}

/* LARCH_FAULT=RANK:STEP:SITE (docs/distributed.md), checked once. */
static larch_status parse_fault(comm_impl *m)
{
    const char *spec = getenv("LARCH_FAULT");
    if (!spec || !spec[0]) return LARCH_OK;
    int rank, n = 0;
    long step;
    char site[16] = "";
    int ok = sscanf(spec, "%d:%ld:%15[a-z_]%n", &rank, &step, site, &n) == 3 && spec[n] == '\0' && rank >= 0 && step >= 0;
    int known = 0;
    for (int i = 0; ok && fault_sites[i]; i++) known |= !strcmp(site, fault_sites[i]);
    if (!ok || !known)
        return larch_fail(LARCH_ERR_INVALID, "LARCH_FAULT=%s: expected RANK:STEP:SITE with SITE one of grad_sum, hook, "
                          "gather, loss, eval, save, comm_thread (a testing aid, docs/distributed.md)", spec);
    m->fault_rank = rank;
    m->fault_step = step;
    snprintf(m->fault_site, sizeof m->fault_site, "%s", site);
    snprintf(m->fault_spec, sizeof m->fault_spec, "%s", spec);
    return LARCH_OK;
}

/* LARCH_MPI_THREAD_LEVEL (docs/distributed.md): the thread level larch
 * asks MPI for; MULTIPLE unless set to serialized or funneled. */
static larch_status thread_level(int *level)
{
    const char *e = getenv("LARCH_MPI_THREAD_LEVEL");
    if (!e || !e[0] || !strcmp(e, "multiple")) *level = MPI_THREAD_MULTIPLE;
    else if (!strcmp(e, "serialized")) *level = MPI_THREAD_SERIALIZED;
    else if (!strcmp(e, "funneled")) *level = MPI_THREAD_FUNNELED;
    else
        return larch_fail(LARCH_ERR_INVALID, "LARCH_MPI_THREAD_LEVEL=%s: expected multiple (the default), serialized or "
                          "funneled (docs/distributed.md)", e);
    return LARCH_OK;
}

larch_status larch_comm_init(larch_comm *c, int *argc, char ***argv)
{
    memset(c, 0, sizeof *c);
    comm_impl *impl = calloc(1, sizeof *impl);
    if (!impl) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    larch_status s = parse_fault(impl);
    int level = MPI_THREAD_MULTIPLE;
    if (!s) s = thread_level(&level);
    if (s) { free(impl); return s; }
    int inited = 0, provided = 0, rc;
    MPI_Initialized(&inited);
    if (!inited) {
        /* MULTIPLE: the watchdog thread asks the other ranks and aborts, and
         * the gradient comm thread sums buckets; below it, only the main
         * thread calls MPI (larch_comm_threads is 0: both degrade) */
        if ((rc = MPI_Init_thread(argc, argv, level, &provided)) != MPI_SUCCESS) {
            free(impl);
            return mpi_fail(rc, "MPI_Init_thread");
        }
        impl->we_initialized = 1;
    } else {
        MPI_Query_thread(&provided);
    }
    impl->threads = provided == MPI_THREAD_MULTIPLE;
    /* Errors come back as codes so that larch reports them as values. */
    MPI_Comm_dup(MPI_COMM_WORLD, &impl->world);
    MPI_Comm_set_errhandler(impl->world, MPI_ERRORS_RETURN);
    MPI_Comm_dup(impl->world, &impl->hb);
    MPI_Comm_dup(impl->world, &impl->lane);
    MPI_Comm_set_errhandler(impl->lane, MPI_ERRORS_RETURN);
    MPI_Comm_rank(impl->world, &c->rank);
    MPI_Comm_size(impl->world, &c->size);
    impl->rank = c->rank;
    impl->size = c->size;
    MPI_Comm_split_type(impl->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &impl->node);
    MPI_Comm_rank(impl->node, &c->local_rank);
    MPI_Comm_size(impl->node, &c->local_size);
    MPI_Op_create(op_sum_f16, 1, &impl->sum_f16);
    MPI_Op_create(op_sum_bf16, 1, &impl->sum_bf16);
    c->impl = impl;
    return LARCH_OK;
}

larch_status larch_comm_split(const larch_comm *parent, int color, larch_comm *out)
{
    memset(out, 0, sizeof *out);
    comm_impl *p = parent->impl, *impl = calloc(1, sizeof *impl);
    if (!impl) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    if (p->broken) { free(impl); return LARCH_ERR_MPI; }
    int rc = MPI_Comm_split(p->world, color < 0 ? 0 : color, p->rank, &impl->world);
    if (rc != MPI_SUCCESS) { free(impl); return mpi_fail(rc, "MPI_Comm_split"); }
    MPI_Comm_set_errhandler(impl->world, MPI_ERRORS_RETURN);
    MPI_Comm_dup(impl->world, &impl->hb);
    MPI_Comm_dup(impl->world, &impl->lane);
    MPI_Comm_set_errhandler(impl->lane, MPI_ERRORS_RETURN);
    MPI_Comm_rank(impl->world, &out->rank);
    MPI_Comm_size(impl->world, &out->size);
    impl->rank = out->rank;
    impl->size = out->size;
    impl->threads = p->threads;
    MPI_Comm_split_type(impl->world, MPI_COMM_TYPE_SHARED, out->rank, MPI_INFO_NULL, &impl->node);
    out->local_rank = parent->local_rank;     /* the node's cores are shared with every group's ranks */
    out->local_size = parent->local_size;
    MPI_Op_create(op_sum_f16, 1, &impl->sum_f16);
    MPI_Op_create(op_sum_bf16, 1, &impl->sum_bf16);
    if (p->fault_site[0] && p->fault_rank == p->rank) {  /* the fault stays on the same process */
        impl->fault_rank = out->rank;
        impl->fault_step = p->fault_step;
        memcpy(impl->fault_site, p->fault_site, sizeof impl->fault_site);
        memcpy(impl->fault_spec, p->fault_spec, sizeof impl->fault_spec);
    }
    out->impl = impl;
    return LARCH_OK;
}

void larch_comm_finalize(larch_comm *c)
{
    comm_impl *impl = c->impl;
    if (!impl) return;
    larch_comm_watchdog(c, 0.0);
    MPI_Op_free(&impl->sum_f16);
    MPI_Op_free(&impl->sum_bf16);
    MPI_Comm_free(&impl->node);
    MPI_Comm_free(&impl->hb);
    MPI_Comm_free(&impl->lane);
    MPI_Comm_free(&impl->world);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (impl->we_initialized && !finalized) MPI_Finalize();
    free(impl);
    c->impl = NULL;
}

void larch_comm_abort(const larch_comm *c, int code, const char *msg)
{
    fprintf(stderr, "larch: rank %d: %s\n", c->rank, msg);
    fflush(stderr);
    MPI_Abort(c->impl ? ((comm_impl *)c->impl)->world : MPI_COMM_WORLD, code);
}

static MPI_Comm world(const larch_comm *c) { return ((comm_impl *)c->impl)->world; }

const void *larch_comm_mpi(const larch_comm *c) { return &((comm_impl *)c->impl)->world; }

int larch_comm_broken(const larch_comm *c) { return c->impl && ((comm_impl *)c->impl)->broken; }

/* After a failed agreement no collective can be trusted to match: every
 * later one returns at once (the message stays the failure's). */
#define RETURN_IF_BROKEN(c) do { if (((comm_impl *)(c)->impl)->broken) return LARCH_ERR_MPI; } while (0)

/* This rank cannot take part in agreements any more. */
static larch_status broken(const larch_comm *c, larch_status s)
{
    ((comm_impl *)c->impl)->broken = 1;
    char msg[1536];
    snprintf(msg, sizeof msg, "%s", larch_errmsg());
    return larch_fail(s, "%s; the ranks cannot agree on it any more: the job must be aborted", msg);
}

void larch_comm_set_step(const larch_comm *c, long step)
{
    if (c->impl) atomic_store(&((comm_impl *)c->impl)->step, step);
}

larch_status larch_comm_fault(const larch_comm *c, const char *site)
{
    const comm_impl *m = c->impl;
    if (!m || !m->fault_site[0] || c->rank != m->fault_rank || atomic_load(&m->step) != m->fault_step ||
        strcmp(site, m->fault_site) != 0)
        return LARCH_OK;
    return larch_fail(strcmp(site, "loss") == 0 ? LARCH_ERR_MPI : LARCH_ERR_IO, "injected fault: %s failed at step %ld "
                      "(LARCH_FAULT=%s)", site, m->fault_step, m->fault_spec);
}

larch_status larch_comm_check(const larch_comm *c, larch_status local)
{
    if (c->size == 1) return local;
    RETURN_IF_BROKEN(c);
    comm_impl *m = c->impl;
    /* The lowest failing rank (size when none) and the worst status. */
    int mine[2] = {local != LARCH_OK ? c->rank : c->size, (int)local}, low[2];
    char msg[1536];
    snprintf(msg, sizeof msg, "%s", larch_errmsg());
    enter(m, "MPI_Allreduce (failure agreement)", 1);
    int rc = MPI_Allreduce(mine, low, 1, MPI_2INT, MPI_MINLOC, world(c));
    leave(m);
    /* a rank that cannot learn the outcome cannot follow the others into
     * the broadcasts below or into anything after: it must end the job */
    if (rc != MPI_SUCCESS) {
        if (local) return broken(c, local);
        return broken(c, mpi_fail(rc, "MPI_Allreduce (failure agreement)"));
    }
    if (low[0] == c->size) return LARCH_OK;
    int who = low[0];
    int status = local;
    enter(m, "MPI_Bcast (failure message)", 1);
    rc = MPI_Bcast(&status, 1, MPI_INT, who, world(c));
    if (rc == MPI_SUCCESS) rc = MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, who, world(c));
    leave(m);
    if (rc != MPI_SUCCESS) {
        if (local) return broken(c, local);
        return broken(c, mpi_fail(rc, "MPI_Bcast (failure message)"));
    }
    msg[sizeof msg - 1] = '\0';
    if (c->rank == who) return (larch_status)status;
    return larch_fail((larch_status)status, "rank %d: %s", who, msg);
}

larch_status larch_comm_agree_sum(const larch_comm *c, const char *what, larch_status local, double *buf, int n)
{
    if (n < 0 || n > AGREE_MAX) return larch_fail(LARCH_ERR_INVALID, "larch_comm_agree_sum: %d values (at most %d)", n, AGREE_MAX);
    comm_impl *m = c->impl;
    if (c->size == 1) {
        larch_status f = larch_comm_fault(c, what);
        return local ? local : f;
    }
    RETURN_IF_BROKEN(c);
    double tmp[AGREE_MAX + 1];
    memcpy(tmp, buf, (size_t)n * sizeof *tmp);
    tmp[n] = local != LARCH_OK ? 1.0 : 0.0;              /* how many ranks failed */
    enter(m, what, 1);
    int rc = MPI_Allreduce(MPI_IN_PLACE, tmp, n + 1, MPI_DOUBLE, MPI_SUM, world(c));
    leave(m);
    if (rc != MPI_SUCCESS) return broken(c, local ? local : mpi_fail(rc, "MPI_Allreduce"));
    larch_status f = larch_comm_fault(c, what);         /* as if this reduction had failed here */
    if (f) return broken(c, local ? local : f);
    memcpy(buf, tmp, (size_t)n * sizeof *buf);
    if (tmp[n] == 0.0) return LARCH_OK;
    return larch_comm_check(c, local);                   /* every rank: the lowest failing rank's message */
}

larch_status larch_comm_allreduce_f64(const larch_comm *c, double *buf, int n)
{
    if (c->size == 1) return LARCH_OK;
    RETURN_IF_BROKEN(c);
    enter(c->impl, "MPI_Allreduce", 1);
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, world(c));
    leave(c->impl);
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Allreduce");
}

larch_status larch_comm_max_f64(const larch_comm *c, double *buf, int n)
{
    if (c->size == 1) return LARCH_OK;
    RETURN_IF_BROKEN(c);
    enter(c->impl, "MPI_Allreduce (max)", 1);
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_MAX, world(c));
    leave(c->impl);
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Allreduce");
}

larch_status larch_comm_allreduce_f32(const larch_comm *c, float *buf, size_t n)
{
    if (c->size == 1) return LARCH_OK;
    RETURN_IF_BROKEN(c);
    enter(c->impl, "MPI_Allreduce (float)", 1);
    int rc = MPI_SUCCESS;
    while (rc == MPI_SUCCESS && n > 0) {         /* MPI counts are ints */
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        rc = MPI_Allreduce(MPI_IN_PLACE, buf, chunk, MPI_FLOAT, MPI_SUM, world(c));
        buf += chunk;
        n -= (size_t)chunk;
    }
    leave(c->impl);
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Allreduce");
}

larch_status larch_comm_bcast(const larch_comm *c, void *buf, size_t bytes, int root)
{
    if (c->size == 1) return LARCH_OK;
    RETURN_IF_BROKEN(c);
    enter(c->impl, "MPI_Bcast", 1);
    char *p = buf;
    int rc = MPI_SUCCESS;
    while (rc == MPI_SUCCESS && bytes > 0) {
        int chunk = bytes > (size_t)INT_MAX ? INT_MAX : (int)bytes;
        rc = MPI_Bcast(p, chunk, MPI_BYTE, root, world(c));
        p += chunk;
        bytes -= (size_t)chunk;
    }
    leave(c->impl);
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Bcast");
}

larch_status larch_comm_barrier(const larch_comm *c)
{
    if (c->size == 1) return LARCH_OK;
    RETURN_IF_BROKEN(c);
    enter(c->impl, "MPI_Barrier", 1);
    int rc = MPI_Barrier(world(c));
    leave(c->impl);
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Barrier");
}

larch_status larch_comm_idle_barrier(const larch_comm *c, double poll_s)
{
    if (c->size == 1) return LARCH_OK;
    RETURN_IF_BROKEN(c);
    MPI_Request req;
    int rc = MPI_Ibarrier(world(c), &req), done = 0;
    while (rc == MPI_SUCCESS && !done) {
        rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (rc == MPI_SUCCESS && !done) {
            struct timespec t = {(time_t)poll_s, (long)((poll_s - (double)(time_t)poll_s) * 1e9)};
            nanosleep(&t, NULL);
        }
    }
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Ibarrier");
}

double larch_comm_wtime(void) { return MPI_Wtime(); }

/* Starts in-place non-blocking sums of n elements of `elem` bytes, in
 * pieces of at most INT_MAX elements; waited for by larch_comm_waitall. */
static larch_status start_iallreduce(const larch_comm *c, char *buf, size_t n, size_t elem, MPI_Datatype type,
                                     MPI_Op op, const char *what)
{
    if (c->size == 1 || n == 0) return LARCH_OK;
    RETURN_IF_BROKEN(c);
    comm_impl *impl = c->impl;
    atomic_fetch_add(&impl->seq, 1);
    while (n > 0) {
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        if (impl->n_pending == MAX_PENDING)
            return larch_fail(LARCH_ERR_MPI, "more than %d non-blocking allreduces in flight (raise dist.bucket_mb)", MAX_PENDING);
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, chunk, type, op, impl->world, &impl->pending[impl->n_pending]);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, what);
        impl->n_pending++;
        buf += (size_t)chunk * elem;
        n -= (size_t)chunk;
    }
    return LARCH_OK;
}

larch_status larch_comm_iallreduce_f32(const larch_comm *c, float *buf, size_t n)
{
    return start_iallreduce(c, (char *)buf, n, sizeof *buf, MPI_FLOAT, MPI_SUM, "MPI_Iallreduce");
}

larch_status larch_comm_progress(const larch_comm *c)
{
    comm_impl *impl = c->impl;
    if (c->size == 1 || impl->n_pending == 0) return LARCH_OK;
    int done = 0;
    int rc = MPI_Testall(impl->n_pending, impl->pending, &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Testall");
    if (done) impl->n_pending = 0;
    return LARCH_OK;
}

larch_status larch_comm_waitall(const larch_comm *c)
{
    comm_impl *impl = c->impl;
    if (c->size == 1 || impl->n_pending == 0) return LARCH_OK;
    enter(impl, "MPI_Waitall (gradient buckets)", 0);
    int rc = MPI_Waitall(impl->n_pending, impl->pending, MPI_STATUSES_IGNORE);
    leave(impl);
    impl->n_pending = 0;
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Waitall");
}

larch_status larch_comm_reduce_scatter_f32(const larch_comm *c, const float *send, float *recv, const int *counts)
{
    if (c->size == 1) { memcpy(recv, send, (size_t)counts[0] * sizeof *recv); return LARCH_OK; }
    RETURN_IF_BROKEN(c);
    enter(c->impl, "MPI_Reduce_scatter (gradient shards)", 1);
    int rc = MPI_Reduce_scatter(send, recv, counts, MPI_FLOAT, MPI_SUM, world(c));
    leave(c->impl);
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Reduce_scatter");
}

larch_status larch_comm_allgather(const larch_comm *c, const void *send, size_t bytes, void *recv)
{
    if (c->size == 1) { memmove(recv, send, bytes); return LARCH_OK; }
    RETURN_IF_BROKEN(c);
    if (bytes > INT_MAX) return larch_fail(LARCH_ERR_INVALID, "allgather: %zu bytes per rank, more than %d", bytes, INT_MAX);
    enter(c->impl, "MPI_Allgather (global batch)", 1);
    int rc = MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, world(c));
    leave(c->impl);
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Allgather");
}

larch_status larch_comm_allgatherv_f32(const larch_comm *c, float *buf, const int *counts, const int *displs)
{
    if (c->size == 1) return LARCH_OK;
    RETURN_IF_BROKEN(c);
    enter(c->impl, "MPI_Allgatherv (parameter shards)", 1);
    int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, MPI_FLOAT, world(c));
    leave(c->impl);
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Allgatherv");
}

larch_status larch_comm_iallreduce_16(const larch_comm *c, uint16_t *buf, size_t n, int bf16)
{
    if (c->size == 1) return LARCH_OK;
    comm_impl *impl = c->impl;
    return start_iallreduce(c, (char *)buf, n, sizeof *buf, MPI_UINT16_T, bf16 ? impl->sum_bf16 : impl->sum_f16,
                            "MPI_Iallreduce (16-bit)");
}

int larch_comm_threads(const larch_comm *c) { return c->impl && ((comm_impl *)c->impl)->threads; }

/* Called from the comm thread only: reads nothing the main thread writes
 * without atomics (not even `broken`: agreements happen between steps, while
 * the comm thread is idle). */
larch_status larch_comm_lane_allreduce(const larch_comm *c, void *buf, size_t n, int kind)
{
    if (c->size == 1 || n == 0) return LARCH_OK;
    comm_impl *m = c->impl;
    MPI_Datatype type = kind ? MPI_UINT16_T : MPI_FLOAT;
    MPI_Op op = kind == 0 ? MPI_SUM : kind == 1 ? m->sum_f16 : m->sum_bf16;
    size_t elem = kind ? sizeof(uint16_t) : sizeof(float);
    char *p = buf;
    enter(m, "MPI_Allreduce (gradient bucket, comm thread)", 1);
    int rc = MPI_SUCCESS;
    while (rc == MPI_SUCCESS && n > 0) {         /* MPI counts are ints */
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        rc = MPI_Allreduce(MPI_IN_PLACE, p, chunk, type, op, m->lane);
        p += (size_t)chunk * elem;
        n -= (size_t)chunk;
    }
    leave(m);
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Allreduce (gradient bucket, comm thread)");
}

/* ---- the watchdog ---- */

static void nap(double seconds)
{
    struct timespec t = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&t, NULL);
}

/* Answers the other watchdogs' questions: where this rank's main thread is. */
static void serve(comm_impl *m, MPI_Request *req, long *query)
{
    for (;;) {
        int done = 0;
        MPI_Status st;
        if (MPI_Test(req, &done, &st) != MPI_SUCCESS || !done) return;
        long pos[3] = {atomic_load(&m->seq), atomic_load(&m->step), atomic_load(&m->waiting)};
        MPI_Request sent;
        if (MPI_Isend(pos, 3, MPI_LONG, st.MPI_SOURCE, TAG_REPLY, m->hb, &sent) == MPI_SUCCESS)
            MPI_Wait(&sent, MPI_STATUS_IGNORE);             /* 24 bytes: sent eagerly */
        if (MPI_Irecv(query, 3, MPI_LONG, MPI_ANY_SOURCE, TAG_QUERY, m->hb, req) != MPI_SUCCESS) {
            *req = MPI_REQUEST_NULL;
            return;
        }
    }
}

/* Appends to msg the ranks of one kind (0: no answer, 1: behind this rank,
 * 2: arrived), with where the ones behind are; returns how many. */
static int list_ranks(char *msg, size_t len, const long *ans, int size, int me, long seq, int kind)
{
    int n = 0;
    for (int r = 0; r < size; r++) {
        if (r == me) continue;
        const long *a = ans + 3 * r;
        int k = a[0] < 0 ? 0 : a[0] < seq ? 1 : 2;          /* no answer, behind, arrived */
        if (k != kind) continue;
        size_t used = strlen(msg);
        if (n < 16 && used + 64 < len) {
            if (kind == 1)
                snprintf(msg + used, len - used, "%s%d (at step %ld, collective #%ld, %s)", n ? ", " : "", r, a[1], a[0],
                         a[2] ? "waiting in a collective" : "not in a collective: computing or stuck");
            else
                snprintf(msg + used, len - used, "%s%d", n ? ", " : "", r);
        } else if (n == 16 && used + 8 < len) {
            snprintf(msg + used, len - used, ", ...");
        }
        n++;
    }
    return n;
}

/* A collective has waited too long: ask the others, say who is missing,
 * end the job. Does not return. */
static void diagnose(comm_impl *m, MPI_Request *req, long *query)
{
    int rank = m->rank, size = m->size;
    long seq = atomic_load(&m->seq), step = atomic_load(&m->step);
    const char *what = atomic_load(&m->what);
    double waited = (double)(now_ns() - atomic_load(&m->since_ns)) * 1e-9;
    static char msg[4096];
    if (!m->threads) {
        snprintf(msg, sizeof msg, "watchdog: waited %.1f s (dist.timeout_s = %g) in %s at step %ld (collective #%ld); "
                 "MPI runs without MPI_THREAD_MULTIPLE (LARCH_MPI_THREAD_LEVEL, or the library does not provide it), "
                 "so the other ranks were not asked which one is missing; ending this rank", waited, m->timeout_s, what, step, seq);
        fprintf(stderr, "larch: rank %d: %s\n", rank, msg);
        fflush(stderr);
        _exit(1);
    }
    long *ans = m->answers;
    for (int r = 0; r < size; r++) ans[3 * r] = r == rank ? seq : -1;
    long pos[3] = {seq, step, 1};
    for (int r = 0; r < size; r++) {
        if (r == rank) continue;
        MPI_Request q;
        if (MPI_Isend(pos, 3, MPI_LONG, r, TAG_QUERY, m->hb, &q) == MPI_SUCCESS) MPI_Request_free(&q);
    }
    long long deadline = now_ns() + (long long)(WD_GRACE_S * 1e9);
    int got = 0;
    while (got < size - 1 && now_ns() < deadline) {
        serve(m, req, query);                            /* the others are asking too */
        int flag = 0;
        MPI_Status st;
        while (MPI_Iprobe(MPI_ANY_SOURCE, TAG_REPLY, m->hb, &flag, &st) == MPI_SUCCESS && flag) {
            long a[3];
            MPI_Recv(a, 3, MPI_LONG, st.MPI_SOURCE, TAG_REPLY, m->hb, MPI_STATUS_IGNORE);
            if (ans[3 * st.MPI_SOURCE] < 0) got++;
            memcpy(ans + 3 * st.MPI_SOURCE, a, sizeof a);
        }
        nap(0.01);
    }
    int n = snprintf(msg, sizeof msg, "watchdog: the collective \"%s\" has waited %.1f s at step %ld (collective #%ld of the run; dist.timeout_s = %g).",
                     what, waited, step, seq, m->timeout_s);
    char part[3][2048] = {"", "", ""};
    int silent = list_ranks(part[0], sizeof part[0], ans, size, rank, seq, 0);
    int behind = list_ranks(part[1], sizeof part[1], ans, size, rank, seq, 1);
    int arrived = list_ranks(part[2], sizeof part[2], ans, size, rank, seq, 2);
    if (silent)
        n += snprintf(msg + n, sizeof msg - (size_t)n, " Not answering (stopped, hung or unreachable): rank%s %s.",
                      silent > 1 ? "s" : "", part[0]);
    if (behind && n < (int)sizeof msg)
        n += snprintf(msg + n, sizeof msg - (size_t)n, " Not arrived: rank%s %s.", behind > 1 ? "s" : "", part[1]);
    if (!silent && !behind && n < (int)sizeof msg)
        n += snprintf(msg + n, sizeof msg - (size_t)n, " Every rank answered and arrived (%s): the collective itself is stuck.",
                      arrived ? part[2] : "none");
    if (n < (int)sizeof msg) snprintf(msg + n, sizeof msg - (size_t)n, " Ending the job (MPI_Abort).");
    fprintf(stderr, "larch: rank %d: %s\n", rank, msg);
    fflush(stderr);
    MPI_Abort(m->world, 1);
    _exit(1);
}

static void *watchdog_main(void *arg)
{
    comm_impl *m = arg;
    sigset_t all;                                        /* signals go to the main thread */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    long query[3];
    MPI_Request req = MPI_REQUEST_NULL;
    if (m->threads && MPI_Irecv(query, 3, MPI_LONG, MPI_ANY_SOURCE, TAG_QUERY, m->hb, &req) != MPI_SUCCESS)
        req = MPI_REQUEST_NULL;
    long long limit = (long long)(m->timeout_s * 1e9);
    double period = m->timeout_s / 10.0 < 0.1 ? m->timeout_s / 10.0 : 0.1;
    while (!atomic_load(&m->wd_stop)) {
        nap(period);
        if (m->threads && req != MPI_REQUEST_NULL) serve(m, &req, query);
        if (atomic_load(&m->waiting) && now_ns() - atomic_load(&m->since_ns) > limit)
            diagnose(m, &req, query);
    }
    if (req != MPI_REQUEST_NULL) {
        MPI_Cancel(&req);
        MPI_Wait(&req, MPI_STATUS_IGNORE);
    }
    return NULL;
}

larch_status larch_comm_watchdog(const larch_comm *c, double timeout_s)
{
    comm_impl *m = c->impl;
    if (!m) return LARCH_OK;
    if (m->wd_running) {                                 /* stop the one running */
        atomic_store(&m->wd_stop, 1);
        pthread_join(m->wd, NULL);
        m->wd_running = 0;
        free(m->answers);
        m->answers = NULL;
    }
    if (timeout_s <= 0.0 || c->size == 1) return LARCH_OK;
    m->answers = larch_calloc((size_t)c->size * 3, sizeof *m->answers, "watchdog");
    if (!m->answers) return LARCH_ERR_NOMEM;
    m->timeout_s = timeout_s;
    atomic_store(&m->wd_stop, 0);
    int rc = pthread_create(&m->wd, NULL, watchdog_main, m);
    if (rc != 0) {
        free(m->answers);
        m->answers = NULL;
        return larch_fail(LARCH_ERR_INVALID, "cannot start the watchdog thread: %s", strerror(rc));
    }
    m->wd_running = 1;
    return LARCH_OK;
}
