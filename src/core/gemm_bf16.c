/* gemm_bf16.c - bf16 GEMM through oneDNN's matmul; see gemm_bf16.h.
 *
 * Each call rounds the stored A and B (with their leading dimensions) into
 * packed bf16 buffers and runs a matmul primitive whose source and weights
 * descriptors carry the transposes as strides: logical A (m, k) is packed
 * (m, k) with strides {k, 1}, or packed (k, m) with strides {1, m} when
 * trans_a; likewise B (k, n). alpha is the primitive's output scale, beta a
 * sum post-op on C (ldc as C's row stride). One primitive per distinct
 * (trans, m, n, k, ldc, alpha, beta) is kept in a small table; memory
 * objects are made without data and pointed at the caller's buffers per
 * call, so nothing allocates once every shape of a step has been seen. */
#include "core/gemm_bf16.h"

#ifdef LARCH_HAVE_DNNL

#include "core/half.h"

#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SHAPES 128

typedef struct {
    int used, ta, tb, m, n, k, ldc;
    float alpha, beta;
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, dst;
} entry_t;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static entry_t g_cache[MAX_SHAPES];
static int g_next;                    /* round-robin slot once the table is full */
static uint16_t *g_buf;               /* packed bf16 A then B                    */
static size_t g_buf_len;
static int g_probed;
static larch_status g_probe_status;
static char g_probe_msg[256];

static larch_status dnnl_fail(dnnl_status_t s, const char *what)
{
    if (s == dnnl_out_of_memory) return larch_fail(LARCH_ERR_NOMEM, "oneDNN: out of memory in %s", what);
    return larch_fail(LARCH_ERR_INVALID, "oneDNN: %s failed (status %d)", what, (int)s);
}

static larch_status ensure_engine(void)
{
    dnnl_status_t s;
    if (g_engine) return LARCH_OK;
    if ((s = dnnl_engine_create(&g_engine, dnnl_cpu, 0)) != dnnl_success) { g_engine = NULL; return dnnl_fail(s, "engine creation"); }
    if ((s = dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags)) != dnnl_success) {
        dnnl_engine_destroy(g_engine);
        g_engine = NULL;
        return dnnl_fail(s, "stream creation");
    }
    return LARCH_OK;
}

static void entry_free(entry_t *e)
{
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->src) dnnl_memory_destroy(e->src);
    if (e->wei) dnnl_memory_destroy(e->wei);
    if (e->dst) dnnl_memory_destroy(e->dst);
    memset(e, 0, sizeof *e);
}

/* Builds the primitive of one shape into e; impl (optional) gets the
 * implementation's name, valid until the primitive is destroyed. */
static larch_status entry_make(entry_t *e, int ta, int tb, int m, int n, int k, int ldc, float alpha, float beta,
                               const char **impl)
{
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t da = {m, k}, db = {k, n}, dc = {m, n};
    dnnl_dims_t sa = {ta ? 1 : k, ta ? m : 1}, sb = {tb ? 1 : n, tb ? k : 1}, sc = {ldc, 1};
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s;
    larch_status st = LARCH_OK;
    memset(e, 0, sizeof *e);
    if ((s = dnnl_memory_desc_init_by_strides(&a, 2, da, dnnl_bf16, sa)) ||
        (s = dnnl_memory_desc_init_by_strides(&b, 2, db, dnnl_bf16, sb)) ||
        (s = dnnl_memory_desc_init_by_strides(&c, 2, dc, dnnl_f32, sc)) ||
        (s = dnnl_matmul_desc_init(&md, &a, &b, NULL, &c)) || (s = dnnl_primitive_attr_create(&attr)))
        return dnnl_fail(s, "matmul descriptor");
    if (alpha != 1.0f && (s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha))) { st = dnnl_fail(s, "output scale"); goto out; }
    if (beta != 0.0f) {
        if ((s = dnnl_post_ops_create(&po)) || (s = dnnl_post_ops_append_sum(po, beta)) ||
            (s = dnnl_primitive_attr_set_post_ops(attr, po))) { st = dnnl_fail(s, "sum post-op"); goto out; }
    }
    if ((s = dnnl_primitive_desc_create(&pd, &md, attr, g_engine, NULL))) { st = dnnl_fail(s, "bf16 matmul primitive descriptor"); goto out; }
    if (impl) {                                       /* the name lives in pd: keep a copy */
        static char name[64];
        const char *q = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &q);
        snprintf(name, sizeof name, "%s", q ? q : "?");
        *impl = name;
    }
    if ((s = dnnl_primitive_create(&e->prim, pd)) || (s = dnnl_memory_create(&e->src, &a, g_engine, DNNL_MEMORY_NONE)) ||
        (s = dnnl_memory_create(&e->wei, &b, g_engine, DNNL_MEMORY_NONE)) ||
        (s = dnnl_memory_create(&e->dst, &c, g_engine, DNNL_MEMORY_NONE))) {
        st = dnnl_fail(s, "bf16 matmul primitive");
        entry_free(e);
        goto out;
    }
    *e = (entry_t){1, ta, tb, m, n, k, ldc, alpha, beta, e->prim, e->src, e->wei, e->dst};
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

larch_status larch_bf16_gemm_available(void)
{
    pthread_mutex_lock(&g_lock);
    if (!g_probed) {
        g_probed = 1;
        entry_t e;
        const char *impl = NULL;
        g_probe_status = ensure_engine();
        if (!g_probe_status) g_probe_status = entry_make(&e, 0, 1, 64, 64, 64, 64, 1.0f, 0.0f, &impl);
        if (g_probe_status) {
            snprintf(g_probe_msg, sizeof g_probe_msg, "bf16 compute is not available: %s", larch_errmsg());
        } else {
            entry_free(&e);
            if (impl && strncmp(impl, "ref", 3) == 0) {     /* correct but orders of magnitude slower */
                g_probe_status = LARCH_ERR_INVALID;
                snprintf(g_probe_msg, sizeof g_probe_msg, "bf16 compute is not available: oneDNN has only its "
                         "reference bf16 matmul (%s) on this CPU (it needs AVX-512)", impl);
            }
        }
    }
    larch_status s = g_probe_status;
    pthread_mutex_unlock(&g_lock);
    return s ? larch_fail(s, "%s", g_probe_msg) : LARCH_OK;
}

/* Rounds the rows x cols matrix x (row stride ld) into packed y. */
static void pack(const float *x, int rows, int cols, int ld, uint16_t *y)
{
    if (ld == cols) { larch_f32_to_bf16(x, y, (size_t)rows * cols); return; }
    for (int r = 0; r < rows; r++) larch_f32_to_bf16(x + (size_t)r * ld, y + (size_t)r * cols, (size_t)cols);
}

larch_status larch_gemm_bf16(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                             const float *b, int ldb, float beta, float *c, int ldc)
{
    larch_status st;
    if (m <= 0 || n <= 0) return LARCH_OK;
    if ((st = larch_bf16_gemm_available())) return st;
    pthread_mutex_lock(&g_lock);
    entry_t *e = NULL;
    for (int i = 0; i < MAX_SHAPES && g_cache[i].used; i++) {
        entry_t *q = &g_cache[i];
        if (q->ta == ta && q->tb == tb && q->m == m && q->n == n && q->k == k && q->ldc == ldc && q->alpha == alpha &&
            q->beta == beta) { e = q; break; }
    }
    if (!e) {
        int slot = 0;
        while (slot < MAX_SHAPES && g_cache[slot].used) slot++;
        if (slot == MAX_SHAPES) { slot = g_next; g_next = (g_next + 1) % MAX_SHAPES; entry_free(&g_cache[slot]); }
        if ((st = entry_make(&g_cache[slot], ta, tb, m, n, k, ldc, alpha, beta, NULL))) goto out;
        e = &g_cache[slot];
    }
    size_t na = (size_t)m * k, nb = (size_t)k * n;
    if (g_buf_len < na + nb) {
        uint16_t *nbuf = realloc(g_buf, (na + nb) * sizeof *nbuf);
        if (!nbuf) { st = larch_fail(LARCH_ERR_NOMEM, "out of memory for a %dx%dx%d bf16 GEMM", m, n, k); goto out; }
        g_buf = nbuf;
        g_buf_len = na + nb;
    }
    uint16_t *abf = g_buf, *bbf = g_buf + na;
    if (k > 0) {
        pack(a, ta ? k : m, ta ? m : k, lda, abf);
        pack(b, tb ? n : k, tb ? k : n, ldb, bbf);
    }
    dnnl_status_t s;
    if ((s = dnnl_memory_set_data_handle(e->src, abf)) || (s = dnnl_memory_set_data_handle(e->wei, bbf)) ||
        (s = dnnl_memory_set_data_handle(e->dst, c))) { st = dnnl_fail(s, "bf16 matmul buffers"); goto out; }
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, e->wei}, {DNNL_ARG_DST, e->dst}};
    if ((s = dnnl_primitive_execute(e->prim, g_stream, 3, args)) || (s = dnnl_stream_wait(g_stream)))
        st = dnnl_fail(s, "bf16 matmul");
out:
    pthread_mutex_unlock(&g_lock);
    return st;
}

void larch_gemm_bf16_release(void)
{
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_SHAPES; i++)
        if (g_cache[i].used) entry_free(&g_cache[i]);
    free(g_buf);
    g_buf = NULL;
    g_buf_len = 0;
    if (g_stream) dnnl_stream_destroy(g_stream);
    if (g_engine) dnnl_engine_destroy(g_engine);
    g_stream = NULL;
    g_engine = NULL;
    g_probed = 0;
    pthread_mutex_unlock(&g_lock);
}

#else /* built without oneDNN */

larch_status larch_bf16_gemm_available(void)
{
    return larch_fail(LARCH_ERR_INVALID, "bf16 compute is not available: larch was built without oneDNN "
                      "(install libdnnl-dev and configure with -DLARCH_ONEDNN=AUTO or ON)");
}

larch_status larch_gemm_bf16(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                             const float *b, int ldb, float beta, float *c, int ldc)
{
    (void)ta; (void)tb; (void)m; (void)n; (void)k; (void)alpha; (void)a; (void)lda; (void)b; (void)ldb;
    (void)beta; (void)c; (void)ldc;
    return larch_bf16_gemm_available();
}

void larch_gemm_bf16_release(void) {}

#endif
