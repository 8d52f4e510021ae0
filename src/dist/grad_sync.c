/* grad_sync.c - bucketed, overlapped gradient allreduce; see grad_sync.h. */
#include "dist/grad_sync.h"

#include <stdlib.h>

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
    larch_status status;  /* first failure inside the hook */
    double wait_s;
    long steps;
};

static void start_ready(grad_sync *g)
{
    while (g->next < g->n && g->b[g->next].ready == g->b[g->next].hi - g->b[g->next].lo) {
        bucket *k = &g->b[g->next++];
        larch_status s = larch_comm_iallreduce_f32(g->comm, g->m->grad + k->lo, k->hi - k->lo);
        if (s && !g->status) g->status = s;
        k->started = 1;
    }
}

/* The model's hook: grad[offset, offset + count) is final. */
static void on_grads_ready(void *ctx, size_t offset, size_t count)
{
    grad_sync *g = ctx;
    if (!g->armed || g->status) return;
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

larch_status grad_sync_create(grad_sync **out, const larch_comm *comm, larch_model *m, double bucket_mb,
                              double first_mb, int overlap)
{
    *out = NULL;
    grad_sync *g = larch_calloc(1, sizeof *g, "gradient buckets");
    if (!g) return LARCH_ERR_NOMEM;
    g->comm = comm;
    g->m = m;
    g->overlap = overlap && comm->size > 1;
    g->b = larch_calloc((size_t)m->n_params + 1, sizeof *g->b, "gradient buckets");
    if (!g->b) { free(g); return LARCH_ERR_NOMEM; }
    /* whole tensors, from the last parameter backwards */
    size_t cap = (size_t)(first_mb * 1048576.0 / sizeof(float)), hi = m->n_floats, lo = hi;
    for (int i = m->n_params - 1; i >= 0; i--) {
        lo = m->params[i].offset;
        if (hi - lo >= cap || i == 0) {
            g->b[g->n++] = (bucket){lo, hi, 0, 0};
            hi = lo;
            cap = (size_t)(bucket_mb * 1048576.0 / sizeof(float));
        }
    }
    if (m->n_params == 0 && m->n_floats) g->b[g->n++] = (bucket){0, m->n_floats, 0, 0};
    if (g->overlap) {
        m->grads_ready = on_grads_ready;
        m->grads_ready_ctx = g;
    }
    *out = g;
    return LARCH_OK;
}

void grad_sync_free(grad_sync *g)
{
    if (!g) return;
    if (g->m && g->m->grads_ready_ctx == g) { g->m->grads_ready = NULL; g->m->grads_ready_ctx = NULL; }
    free(g->b);
    free(g);
}

void grad_sync_begin(grad_sync *g)
{
    for (int i = 0; i < g->n; i++) { g->b[i].ready = 0; g->b[i].started = 0; }
    g->next = 0;
    g->status = LARCH_OK;
    g->armed = g->overlap;
}

larch_status grad_sync_finish(grad_sync *g)
{
    g->armed = 0;
    larch_status s = g->status;
    double t0 = larch_comm_wtime();
    for (; !s && g->next < g->n; g->next++) {               /* frozen or unreported tensors, or no overlap */
        bucket *k = &g->b[g->next];
        s = g->overlap ? larch_comm_iallreduce_f32(g->comm, g->m->grad + k->lo, k->hi - k->lo)
                       : larch_comm_allreduce_f32(g->comm, g->m->grad + k->lo, k->hi - k->lo);
    }
    larch_status w = larch_comm_waitall(g->comm);           /* always: no request left behind */
    g->wait_s += larch_comm_wtime() - t0;
    g->steps++;
    return s ? s : w;
}

int grad_sync_buckets(const grad_sync *g) { return g->n; }

double grad_sync_take_wait(grad_sync *g, long *steps)
{
    double w = g->wait_s;
    if (steps) *steps = g->steps;
    g->wait_s = 0.0;
    g->steps = 0;
    return w;
}
