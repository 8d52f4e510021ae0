/* comm.c - the only file that talks to MPI (src/io/checkpoint.c only hands
 * the communicator to parallel HDF5). See include/larch/comm.h. */
#include "larch/comm.h"
#include "core/half.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PENDING 4096

typedef struct {
    MPI_Comm world, node;
    int we_initialized;
    MPI_Op sum_f16, sum_bf16;            /* sums of 16-bit floats (compression) */
    int n_pending;                       /* non-blocking sums in flight */
    MPI_Request pending[MAX_PENDING];
} comm_impl;

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

larch_status larch_comm_init(larch_comm *c, int *argc, char ***argv)
{
    memset(c, 0, sizeof *c);
    comm_impl *impl = calloc(1, sizeof *impl);
    if (!impl) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    int inited = 0, provided = 0, rc;
    MPI_Initialized(&inited);
    if (!inited) {
        if ((rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided)) != MPI_SUCCESS) {
            free(impl);
            return mpi_fail(rc, "MPI_Init_thread");
        }
        impl->we_initialized = 1;
    }
    /* Errors come back as codes so that larch reports them as values. */
    MPI_Comm_dup(MPI_COMM_WORLD, &impl->world);
    MPI_Comm_set_errhandler(impl->world, MPI_ERRORS_RETURN);
    MPI_Comm_rank(impl->world, &c->rank);
    MPI_Comm_size(impl->world, &c->size);
    MPI_Comm_split_type(impl->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &impl->node);
    MPI_Comm_rank(impl->node, &c->local_rank);
    MPI_Comm_size(impl->node, &c->local_size);
    MPI_Op_create(op_sum_f16, 1, &impl->sum_f16);
    MPI_Op_create(op_sum_bf16, 1, &impl->sum_bf16);
    c->impl = impl;
    return LARCH_OK;
}

void larch_comm_finalize(larch_comm *c)
{
    comm_impl *impl = c->impl;
    if (!impl) return;
    MPI_Op_free(&impl->sum_f16);
    MPI_Op_free(&impl->sum_bf16);
    MPI_Comm_free(&impl->node);
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

larch_status larch_comm_check(const larch_comm *c, larch_status local)
{
    if (c->size == 1) return local;
    /* The lowest failing rank (size when none) and the worst status. */
    int mine[2] = {local != LARCH_OK ? c->rank : c->size, (int)local}, low[2];
    int rc = MPI_Allreduce(mine, low, 1, MPI_2INT, MPI_MINLOC, world(c));
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce (failure agreement)");
    if (low[0] == c->size) return LARCH_OK;
    int who = low[0];
    int status = local;
    char msg[1536];
    snprintf(msg, sizeof msg, "%s", larch_errmsg());
    MPI_Bcast(&status, 1, MPI_INT, who, world(c));
    MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, who, world(c));
    msg[sizeof msg - 1] = '\0';
    if (c->rank == who) return (larch_status)status;
    return larch_fail((larch_status)status, "rank %d: %s", who, msg);
}

larch_status larch_comm_allreduce_f64(const larch_comm *c, double *buf, int n)
{
    if (c->size == 1) return LARCH_OK;
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, world(c));
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Allreduce");
}

larch_status larch_comm_max_f64(const larch_comm *c, double *buf, int n)
{
    if (c->size == 1) return LARCH_OK;
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_MAX, world(c));
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Allreduce");
}

larch_status larch_comm_allreduce_f32(const larch_comm *c, float *buf, size_t n)
{
    if (c->size == 1) return LARCH_OK;
    while (n > 0) {                              /* MPI counts are ints */
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf, chunk, MPI_FLOAT, MPI_SUM, world(c));
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce");
        buf += chunk;
        n -= (size_t)chunk;
    }
    return LARCH_OK;
}

larch_status larch_comm_bcast(const larch_comm *c, void *buf, size_t bytes, int root)
{
    if (c->size == 1) return LARCH_OK;
    char *p = buf;
    while (bytes > 0) {
        int chunk = bytes > (size_t)INT_MAX ? INT_MAX : (int)bytes;
        int rc = MPI_Bcast(p, chunk, MPI_BYTE, root, world(c));
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast");
        p += chunk;
        bytes -= (size_t)chunk;
    }
    return LARCH_OK;
}

larch_status larch_comm_barrier(const larch_comm *c)
{
    if (c->size == 1) return LARCH_OK;
    int rc = MPI_Barrier(world(c));
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Barrier");
}

double larch_comm_wtime(void) { return MPI_Wtime(); }

/* Starts in-place non-blocking sums of n elements of `elem` bytes, in
 * pieces of at most INT_MAX elements; waited for by larch_comm_waitall. */
static larch_status start_iallreduce(const larch_comm *c, char *buf, size_t n, size_t elem, MPI_Datatype type,
                                     MPI_Op op, const char *what)
{
    if (c->size == 1 || n == 0) return LARCH_OK;
    comm_impl *impl = c->impl;
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
    int rc = MPI_Waitall(impl->n_pending, impl->pending, MPI_STATUSES_IGNORE);
    impl->n_pending = 0;
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Waitall");
}

larch_status larch_comm_reduce_scatter_f32(const larch_comm *c, const float *send, float *recv, const int *counts)
{
    if (c->size == 1) { memcpy(recv, send, (size_t)counts[0] * sizeof *recv); return LARCH_OK; }
    int rc = MPI_Reduce_scatter(send, recv, counts, MPI_FLOAT, MPI_SUM, world(c));
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Reduce_scatter");
}

larch_status larch_comm_allgatherv_f32(const larch_comm *c, float *buf, const int *counts, const int *displs)
{
    if (c->size == 1) return LARCH_OK;
    int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, MPI_FLOAT, world(c));
    return rc == MPI_SUCCESS ? LARCH_OK : mpi_fail(rc, "MPI_Allgatherv");
}

larch_status larch_comm_iallreduce_16(const larch_comm *c, uint16_t *buf, size_t n, int bf16)
{
    if (c->size == 1) return LARCH_OK;
    comm_impl *impl = c->impl;
    return start_iallreduce(c, (char *)buf, n, sizeof *buf, MPI_UINT16_T, bf16 ? impl->sum_bf16 : impl->sum_f16,
                            "MPI_Iallreduce (16-bit)");
}
