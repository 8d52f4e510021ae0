/* grad_sync.c - bucketed, overlapped gradient allreduce; see grad_sync.h. */
#include "parallel/grad_sync.h"
#include "nn/model_internal.h"   /* the model's layout (library-internal) */
#include "core/half.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
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
    int armed, overlap;   /* overlap: LARCH_SYNC_* */
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
    /* the comm thread (LARCH_SYNC_THREAD): the main thread hands it buckets
     * [done, posted) in order; it sums each with a blocking allreduce on the
     * lane and counts it done. Everything below `mu` is guarded by it. */
    int th_running;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t work, finished;
    int posted, done, stop;
    larch_status th_status;  /* the thread's first failure in this step ... */
    char th_msg[1024];       /* ... and its message (messages are per thread) */
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

/* Hands buckets [.., upto) to the comm thread. */
static void post(grad_sync *g, int upto)
{
    pthread_mutex_lock(&g->mu);
    g->posted = upto;
    pthread_cond_signal(&g->work);
    pthread_mutex_unlock(&g->mu);
}

static void start_ready(grad_sync *g)
{
    if (g->overlap == LARCH_SYNC_THREAD) {
        int from = g->next;
        while (g->next < g->n && g->b[g->next].ready == g->b[g->next].hi - g->b[g->next].lo) g->next++;
        if (g->next > from) { g->early += g->next - from; post(g, g->next); }
        return;
    }
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
    if (g->overlap == LARCH_SYNC_THREAD) return;
    larch_status s = larch_comm_progress(g->comm);          /* let MPI move the buckets in flight */
    if (s && !g->status) g->status = s;
}

/* The comm thread: one bucket at a time, in order, as the main thread posts
 * them; a failed bucket does not stop the ones after it (every rank enters
 * every sum of the step). */
static void *comm_main(void *arg)
{
    grad_sync *g = arg;
    sigset_t all;                                        /* signals go to the main thread */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (!g->stop && g->done == g->posted) pthread_cond_wait(&g->work, &g->mu);
        if (g->done == g->posted) break;                 /* stopping, nothing left */
        bucket *k = &g->b[g->done];
        pthread_mutex_unlock(&g->mu);
        size_t n = k->hi - k->lo;
        float *grad = g->m->grad + k->lo;
        larch_status s;
        if (!g->compress) s = larch_comm_lane_allreduce(g->comm, grad, n, 0);
        else {
            uint16_t *w = g->wire + k->lo;
            if (g->compress == 1) larch_f32_to_f16(grad, w, n);
            else larch_f32_to_bf16(grad, w, n);
            s = larch_comm_lane_allreduce(g->comm, w, n, g->compress);
            if (!s && g->compress == 1) larch_f16_to_f32(w, grad, n);
            else if (!s) larch_bf16_to_f32(w, grad, n);
        }
        larch_status f = larch_comm_fault(g->comm, "comm_thread");   /* as if this sum had failed */
        if (f && !s) s = f;
        pthread_mutex_lock(&g->mu);
        if (s && !g->th_status) {
            g->th_status = s;
            snprintf(g->th_msg, sizeof g->th_msg, "%s", larch_errmsg());
        }
        g->done++;
        pthread_cond_signal(&g->finished);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

static larch_status start_thread(grad_sync *g)
{
    if (pthread_mutex_init(&g->mu, NULL)) return larch_fail(LARCH_ERR_INVALID, "dist.comm_thread: cannot create a mutex");
    if (pthread_cond_init(&g->work, NULL)) {
        pthread_mutex_destroy(&g->mu);
        return larch_fail(LARCH_ERR_INVALID, "dist.comm_thread: cannot create a condition variable");
    }
    if (pthread_cond_init(&g->finished, NULL)) {
        pthread_cond_destroy(&g->work);
        pthread_mutex_destroy(&g->mu);
        return larch_fail(LARCH_ERR_INVALID, "dist.comm_thread: cannot create a condition variable");
    }
    int rc = pthread_create(&g->th, NULL, comm_main, g);
    if (rc) {
        pthread_cond_destroy(&g->finished);
        pthread_cond_destroy(&g->work);
        pthread_mutex_destroy(&g->mu);
        return larch_fail(LARCH_ERR_INVALID, "dist.comm_thread: cannot start the communication thread: %s", strerror(rc));
    }
    g->th_running = 1;
    return LARCH_OK;
}

static void stop_thread(grad_sync *g)
{
    if (!g->th_running) return;
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_signal(&g->work);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->th, NULL);
    pthread_cond_destroy(&g->finished);
    pthread_cond_destroy(&g->work);
    pthread_mutex_destroy(&g->mu);
    g->th_running = 0;
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
    g->overlap = comm->size > 1 && !g->shard ? overlap : LARCH_SYNC_BLOCKING;
    if (g->overlap == LARCH_SYNC_THREAD && !larch_comm_threads(comm))
        g->overlap = LARCH_SYNC_IALLREDUCE;                 /* no second thread may call MPI */
    if (g->shard) {
        larch_status s = plan_shards(g);
        if (s) { larch_grad_sync_free(g); return s; }
    }
    g->b = larch_calloc((size_t)m->n_params + 1, sizeof *g->b, "gradient buckets");
    if (!g->b) { larch_grad_sync_free(g); return LARCH_ERR_NOMEM; }
    g->bucket_mb = bucket_mb;
    g->first_mb = first_mb;
    larch_grad_sync_plan(g);
    if (g->overlap == LARCH_SYNC_THREAD) {
        larch_status s = start_thread(g);
        if (s) { larch_grad_sync_free(g); return s; }
    }
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
    stop_thread(g);
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
    g->armed = g->overlap != LARCH_SYNC_BLOCKING;
    if (g->th_running) {                                    /* idle: the last finish waited for it */
        pthread_mutex_lock(&g->mu);
        g->posted = g->done = 0;
        g->th_status = LARCH_OK;
        pthread_mutex_unlock(&g->mu);
    }
}

/* Thread mode: hands over what is left and waits for every bucket. */
static larch_status finish_thread(grad_sync *g, larch_status s)
{
    double t0 = larch_comm_wtime();
    g->next = g->n;
    pthread_mutex_lock(&g->mu);
    g->posted = g->n;
    pthread_cond_signal(&g->work);
    while (g->done < g->n) pthread_cond_wait(&g->finished, &g->mu);
    larch_status ts = g->th_status;
    if (ts && !s) s = larch_fail(ts, "%s", g->th_msg);
    pthread_mutex_unlock(&g->mu);
    g->wait_s += larch_comm_wtime() - t0;
    g->steps++;
    return s;
}

larch_status larch_grad_sync_finish(grad_sync *g)
{
    g->armed = 0;
    /* A failure here is returned after this rank has entered every
     * collective the others enter, for the step's agreement to report. */
    larch_status s = g->status;
    if (!s) s = larch_comm_fault(g->comm, "grad_sum");
    if (g->th_running) return finish_thread(g, s);
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
