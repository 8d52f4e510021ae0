/* grad_sync.c - bucketed, overlapped gradient allreduce; see grad_sync.h. */
#include "parallel/grad_sync.h"
#include "nn/model_internal.h"   /* the model's layout (library-internal) */
#include "core/half.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t lo, hi;        /* [lo, hi) of the flat gradient buffer */
    size_t ready;         /* floats reported final in this backward */
    int started;
} bucket;

struct grad_sync {
    const larch_comm *comm;
    larch_model *m;
    bucket *b;
    int n, next;          /* buckets; the next one to start (in order) */
    int armed, overlap;
    double bucket_mb, first_mb;
    size_t floats;        /* floats summed per step (trainable ranges; sharded: all) */
    int shard;                              /* ZeRO-1: reduce-scatter + allgather   */
    int *counts, *displs;                   /* per rank, in floats                 */
    float *recv;                            /* this rank's summed gradient slice   */
    int compress;                           /* 0 float, 1 fp16, 2 bf16 on the wire  */
    uint16_t *wire;                         /* 16-bit copy of the gradients        */
    larch_status status;  /* first failure inside the hook */
    double wait_s;
    long steps, early;    /* steps and buckets started during backward since the last take */
};

/* Starts bucket k's sum (non-blocking), compressed to 16 bits if asked. */
static larch_status start_bucket(grad_sync *g, bucket *k)
{
    k->started = 1;
    size_t n = k->hi - k->lo;
    if (!g->compress) return larch_comm_iallreduce_f32(g->comm, g->m->grad + k->lo, n);
    if (g->compress == 1) larch_f32_to_f16(g->m->grad + k->lo, g->wire + k->lo, n);
    else larch_f32_to_bf16(g->m->grad + k->lo, g->wire + k->lo, n);
    return larch_comm_iallreduce_16(g->comm, g->wire + k->lo, n, g->compress == 2);
}

static void start_ready(grad_sync *g)
{
    while (g->next < g->n && g->b[g->next].ready == g->b[g->next].hi - g->b[g->next].lo) {
        larch_status s = start_bucket(g, &g->b[g->next++]);
        if (s && !g->status) g->status = s;
        g->early++;
    }
}

/* The model's hook: grad[offset, offset + count) is final. */
static void on_grads_ready(void *ctx, size_t offset, size_t count)
{
    grad_sync *g = ctx;
    if (!g->armed) return;                                  /* after a failure too: the others start every bucket */
    size_t end = offset + count;
    for (int i = 0; i < g->n; i++) {
        bucket *k = &g->b[i];
        size_t a = offset > k->lo ? offset : k->lo, z = end < k->hi ? end : k->hi;
        if (a < z) k->ready += z - a;
    }
    start_ready(g);
    larch_status s = larch_comm_progress(g->comm);          /* let MPI move the buckets in flight */
    if (s && !g->status) g->status = s;
}

/* Equal contiguous slices of the flat buffer per rank (multiples of 16
 * floats, 64 bytes); a tensor may be split between ranks. */
static larch_status plan_shards(grad_sync *g)
{
    const larch_model *m = g->m;
    int n = g->comm->size;
    g->counts = larch_calloc((size_t)n, sizeof *g->counts, "shards");
    g->displs = larch_calloc((size_t)n, sizeof *g->displs, "shards");
    if (!g->counts || !g->displs) return LARCH_ERR_NOMEM;
    if (m->n_floats > (size_t)0x7fffffff) return larch_fail(LARCH_ERR_INVALID, "dist.shard_optimizer: more than 2^31 parameters");
    size_t most = 0;
    for (int r = 0; r < n; r++) {
        size_t lo = r == 0 ? 0 : (m->n_floats * (size_t)r / (size_t)n) & ~(size_t)15;
        size_t hi = r == n - 1 ? m->n_floats : (m->n_floats * (size_t)(r + 1) / (size_t)n) & ~(size_t)15;
        if (hi < lo) hi = lo;
        g->displs[r] = (int)lo;
        g->counts[r] = (int)(hi - lo);
        if (hi - lo > most) most = hi - lo;
    }
    g->recv = larch_aligned_alloc((most ? most : 1) * sizeof(float), "gradient shard");
    return g->recv ? LARCH_OK : LARCH_ERR_NOMEM;
}

void larch_grad_sync_shard_range(const grad_sync *g, size_t *lo, size_t *hi)
{
    if (!g->shard) { *lo = 0; *hi = g->m->n_floats; return; }
    *lo = (size_t)g->displs[g->comm->rank];
    *hi = *lo + (size_t)g->counts[g->comm->rank];
}

larch_status larch_grad_sync_gather(grad_sync *g)
{
    if (!g->shard) return LARCH_OK;
    larch_status s = larch_comm_allgatherv_f32(g->comm, g->m->param, g->counts, g->displs);
    return s ? s : larch_comm_fault(g->comm, "gather");
}

void larch_grad_sync_plan(grad_sync *g)
{
    const larch_model *m = g->m;
    g->n = 0;
    g->floats = 0;
    if (g->shard) { g->floats = m->n_floats; return; }      /* one reduce-scatter of the whole buffer */
    /* whole trainable tensors (with their padding), from the last parameter
     * backwards; a frozen tensor ends the bucket before it */
    size_t cap = (size_t)(g->first_mb * 1048576.0 / sizeof(float)), lo = 0, hi = 0;
    int open = 0;
    for (int i = m->n_params - 1; i >= 0; i--) {
        const larch_param *p = &m->params[i];
        size_t end = i + 1 < m->n_params ? m->params[i + 1].offset : m->n_floats;
        if (p->lr_mult == 0.0f) {
            if (!open) continue;
            g->b[g->n++] = (bucket){lo, hi, 0, 0};
            open = 0;
            cap = (size_t)(g->bucket_mb * 1048576.0 / sizeof(float));
            continue;
        }
        if (!open) { hi = end; open = 1; }
        lo = p->offset;
        if (hi - lo >= cap || i == 0) {
            g->b[g->n++] = (bucket){lo, hi, 0, 0};
            open = 0;
            cap = (size_t)(g->bucket_mb * 1048576.0 / sizeof(float));
        }
    }
    for (int i = 0; i < g->n; i++) g->floats += g->b[i].hi - g->b[i].lo;
}

larch_status larch_grad_sync_create(grad_sync **out, const larch_comm *comm, larch_model *m, double bucket_mb,
                              double first_mb, int overlap, int shard, int compress)
{
    if (shard && compress && comm->size > 1)
        return larch_fail(LARCH_ERR_CONFIG, "dist.compress: 16-bit gradients are not combined with dist.shard_optimizer "
                          "(set one of them off)");
    *out = NULL;
    grad_sync *g = larch_calloc(1, sizeof *g, "gradient buckets");
    if (!g) return LARCH_ERR_NOMEM;
    g->comm = comm;
    g->m = m;
    g->shard = shard && comm->size > 1;
    g->compress = comm->size > 1 ? compress : 0;
    if (g->compress) {
        g->wire = larch_aligned_alloc((m->n_floats ? m->n_floats : 1) * sizeof *g->wire, "compressed gradients");
        if (!g->wire) { free(g); return LARCH_ERR_NOMEM; }
    }
    g->overlap = overlap && comm->size > 1 && !g->shard;
    if (g->shard) {
        larch_status s = plan_shards(g);
        if (s) { larch_grad_sync_free(g); return s; }
    }
    g->b = larch_calloc((size_t)m->n_params + 1, sizeof *g->b, "gradient buckets");
    if (!g->b) { larch_grad_sync_free(g); return LARCH_ERR_NOMEM; }
    g->bucket_mb = bucket_mb;
    g->first_mb = first_mb;
    larch_grad_sync_plan(g);
    if (g->overlap) {
        m->grads_ready = on_grads_ready;
        m->grads_ready_ctx = g;
    }
    *out = g;
    return LARCH_OK;
}

void larch_grad_sync_free(grad_sync *g)
{
    if (!g) return;
    if (g->m && g->m->grads_ready_ctx == g) { g->m->grads_ready = NULL; g->m->grads_ready_ctx = NULL; }
    free(g->b);
    free(g->counts);
    free(g->displs);
    free(g->recv);
    free(g->wire);
    free(g);
}

void larch_grad_sync_begin(grad_sync *g)
{
    for (int i = 0; i < g->n; i++) { g->b[i].ready = 0; g->b[i].started = 0; }
    g->next = 0;
    g->status = LARCH_OK;
    g->armed = g->overlap;
}

larch_status larch_grad_sync_finish(grad_sync *g)
{
    g->armed = 0;
    /* A failure here is returned after this rank has entered every
     * collective the others enter, for the step's agreement to report. */
    larch_status s = g->status;
    if (!s) s = larch_comm_fault(g->comm, "grad_sum");
    double t0 = larch_comm_wtime();
    if (g->shard) {                                         /* each rank: the sums of its own slice */
        int r = g->comm->rank;
        larch_status rs = larch_comm_reduce_scatter_f32(g->comm, g->m->grad, g->recv, g->counts);
        if (!s) s = rs;
        if (!s) memcpy(g->m->grad + g->displs[r], g->recv, (size_t)g->counts[r] * sizeof(float));
        g->wait_s += larch_comm_wtime() - t0;
        g->steps++;
        return s;
    }
    for (; g->next < g->n; g->next++) {                     /* frozen or unreported tensors, or no overlap */
        bucket *k = &g->b[g->next];
        larch_status bs = g->overlap || g->compress ? start_bucket(g, k)
                                                    : larch_comm_allreduce_f32(g->comm, g->m->grad + k->lo, k->hi - k->lo);
        if (!s) s = bs;
    }
    larch_status w = larch_comm_waitall(g->comm);           /* always: no request left behind */
    for (int i = 0; !s && !w && g->compress && i < g->n; i++) {   /* back to float */
        const bucket *k = &g->b[i];
        if (g->compress == 1) larch_f16_to_f32(g->wire + k->lo, g->m->grad + k->lo, k->hi - k->lo);
        else larch_bf16_to_f32(g->wire + k->lo, g->m->grad + k->lo, k->hi - k->lo);
    }
    g->wait_s += larch_comm_wtime() - t0;
    g->steps++;
    return s ? s : w;
}

int larch_grad_sync_buckets(const grad_sync *g) { return g->shard ? 1 : g->n; }

size_t larch_grad_sync_bytes(const grad_sync *g)
{
    if (g->comm->size == 1) return 0;
    return g->floats * (g->compress ? sizeof(uint16_t) : sizeof(float));
}

double larch_grad_sync_take_wait(grad_sync *g, long *steps, long *early)
{
    double w = g->wait_s;
    if (steps) *steps = g->steps;
    if (early) *early = g->early;
    g->wait_s = 0.0;
    g->steps = 0;
    g->early = 0;
    return w;
}
