/* conv_onednn.c - conv2d through oneDNN's C API (see conv_onednn.h).
 *
 * One CPU engine and one in-order stream serve every layer; they are made
 * with the first context and released with the last. Per batch size n a
 * context keeps an entry: the forward, backward-data and backward-weights
 * primitives, the weight reorders their layouts need, the memory objects
 * (created without a buffer; each call only sets data handles) and the
 * reordered-weight buffers. Memory descriptors: src/diff_src (n, cin, h, w)
 * as "nhwc", dst/diff_dst (n, cout, oh, ow) as "nhwc", the user's weights
 * (cout, cin, k, k) as "ohwi", the primitive's weights "any". Right padding
 * is the left padding: oneDNN checks (h + 2 pad - k) / stride + 1 = oh with
 * the same floor division as larch. Accumulation (dx_acc, acc_grad) goes
 * through a temporary and an add, since oneDNN's backward primitives
 * overwrite.
 */
#include "nn/conv_onednn.h"

#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static int g_users;

typedef struct {
    dnnl_primitive_t p;
    dnnl_memory_t sp;          /* scratchpad view (NULL: none needed) */
    size_t sp_bytes;
} prim_t;

typedef struct {
    int n, train, state;       /* state: 1 ready, -1 no implementation */
    prim_t fwd, bwd_d, bwd_w;
    prim_t r_wf, r_wb, r_dw;   /* user W -> fwd / bwd-data layout, diff W -> user (p NULL: same layout) */
    dnnl_memory_t m_x, m_y, m_dy, m_dx, m_w, m_wf, m_wb, m_dwp, m_dw, m_b;
    float *wf, *wb, *dwp, *tmp_w;           /* owned buffers (NULL when not needed) */
    size_t w_floats, sp_bytes, dx_floats;
    const char *impl;
} entry_t;

struct larch_onednn_conv {
    larch_onednn_geom g;
    int n_entries, cap;
    entry_t *e;
};

static int ok(dnnl_status_t s) { return s == dnnl_success; }

static void prim_free(prim_t *p)
{
    if (p->p) dnnl_primitive_destroy(p->p);
    if (p->sp) dnnl_memory_destroy(p->sp);
    memset(p, 0, sizeof *p);
}

static void mem_free(dnnl_memory_t *m)
{
    if (*m) dnnl_memory_destroy(*m);
    *m = NULL;
}

static void entry_free(entry_t *e)
{
    prim_free(&e->fwd); prim_free(&e->bwd_d); prim_free(&e->bwd_w);
    prim_free(&e->r_wf); prim_free(&e->r_wb); prim_free(&e->r_dw);
    dnnl_memory_t *ms[] = {&e->m_x, &e->m_y, &e->m_dy, &e->m_dx, &e->m_w, &e->m_wf, &e->m_wb, &e->m_dwp, &e->m_dw, &e->m_b};
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) mem_free(ms[i]);
    free(e->wf); free(e->wb); free(e->dwp); free(e->tmp_w);
    memset(e, 0, sizeof *e);
}

larch_onednn_conv *larch_onednn_conv_create(const larch_onednn_geom *g)
{
    if (!g_users) {
        if (!ok(dnnl_engine_create(&g_engine, dnnl_cpu, 0))) return NULL;
        if (!ok(dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags))) {
            dnnl_engine_destroy(g_engine);
            g_engine = NULL;
            return NULL;
        }
    }
    larch_onednn_conv *c = calloc(1, sizeof *c);
    if (!c) {
        if (!g_users) { dnnl_stream_destroy(g_stream); dnnl_engine_destroy(g_engine); g_stream = NULL; g_engine = NULL; }
        return NULL;
    }
    g_users++;
    c->g = *g;
    return c;
}

void larch_onednn_conv_free(larch_onednn_conv *c)
{
    if (!c) return;
    for (int i = 0; i < c->n_entries; i++) entry_free(&c->e[i]);
    free(c->e);
    free(c);
    if (--g_users == 0) {
        dnnl_stream_destroy(g_stream);
        dnnl_engine_destroy(g_engine);
        g_stream = NULL;
        g_engine = NULL;
    }
}

/* A primitive from a primitive descriptor (consumed), with its scratchpad view. */
static int prim_make(prim_t *p, dnnl_primitive_desc_t pd)
{
    int r = -1;
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    p->sp_bytes = sp ? dnnl_memory_desc_get_size(sp) : 0;
    if (p->sp_bytes && !ok(dnnl_memory_create(&p->sp, sp, g_engine, DNNL_MEMORY_NONE))) goto out;
    if (!ok(dnnl_primitive_create(&p->p, pd))) goto out;
    r = 0;
out:
    dnnl_primitive_desc_destroy(pd);
    return r;
}

/* A reorder src -> dst (user scratchpad). */
static int reorder_make(prim_t *p, const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst, dnnl_primitive_attr_t attr)
{
    dnnl_primitive_desc_t pd;
    if (!ok(dnnl_reorder_primitive_desc_create(&pd, src, g_engine, dst, g_engine, attr))) return -1;
    return prim_make(p, pd);
}

static int mem_make(dnnl_memory_t *m, const dnnl_memory_desc_t *md) { return ok(dnnl_memory_create(m, md, g_engine, DNNL_MEMORY_NONE)) ? 0 : -1; }

static float *floats_for(const dnnl_memory_desc_t *md, size_t *count)
{
    size_t bytes = dnnl_memory_desc_get_size(md);
    if (count) *count = bytes / sizeof(float);
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

static int entry_build(const larch_onednn_geom *g, entry_t *e, int n, int train)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_memory_desc_t src, dst, wuser, wany, bias;
    const dnnl_dims_t sd = {n, g->cin, g->h, g->w}, dd = {n, g->cout, g->oh, g->ow}, wd = {g->cout, g->cin, g->k, g->k},
                      bd = {g->cout}, strides = {g->stride, g->stride}, pad = {g->pad, g->pad};
    e->n = n;
    e->train = train;
    if (!ok(dnnl_memory_desc_init_by_tag(&src, 4, sd, dnnl_f32, dnnl_nhwc)) ||
        !ok(dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_nhwc)) ||
        !ok(dnnl_memory_desc_init_by_tag(&wuser, 4, wd, dnnl_f32, dnnl_ohwi)) ||
        !ok(dnnl_memory_desc_init_by_tag(&wany, 4, wd, dnnl_f32, dnnl_format_tag_any)) ||
        !ok(dnnl_memory_desc_init_by_tag(&bias, 1, bd, dnnl_f32, dnnl_x)))
        return -1;
    if (!ok(dnnl_primitive_attr_create(&attr))) return -1;
    int r = -1;
    dnnl_primitive_desc_t fpd = NULL, pd;
    dnnl_convolution_desc_t cd;
    if (!ok(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user))) goto out;
    /* forward */
    if (!ok(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &src, &wany,
                                               g->bias ? &bias : NULL, &dst, strides, pad, pad)) ||
        !ok(dnnl_primitive_desc_create(&fpd, &cd, attr, g_engine, NULL)))
        goto out;
    const dnnl_memory_desc_t *wf = dnnl_primitive_desc_query_md(fpd, dnnl_query_weights_md, 0);
    if (mem_make(&e->m_x, &src) || mem_make(&e->m_y, &dst) || mem_make(&e->m_w, &wuser) || mem_make(&e->m_wf, wf) ||
        (g->bias && mem_make(&e->m_b, &bias)))
        goto out;
    e->w_floats = (size_t)g->cout * g->cin * g->k * g->k;
    if (!dnnl_memory_desc_equal(wf, &wuser)) {
        if (!(e->wf = floats_for(wf, NULL)) || reorder_make(&e->r_wf, &wuser, wf, attr)) goto out;
    }
    if (dnnl_primitive_desc_clone(&pd, fpd) != dnnl_success) goto out;
    if (prim_make(&e->fwd, pd)) goto out;
    if (train) {
        /* backward data */
        if (!ok(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &src, &wany, &dst, strides, pad, pad)) ||
            !ok(dnnl_primitive_desc_create(&pd, &cd, attr, g_engine, fpd)))
            goto out;
        const dnnl_memory_desc_t *wb = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        if (mem_make(&e->m_dy, &dst) || mem_make(&e->m_dx, &src) || mem_make(&e->m_wb, wb)) { dnnl_primitive_desc_destroy(pd); goto out; }
        if (!dnnl_memory_desc_equal(wb, &wuser)) {
            if (!(e->wb = floats_for(wb, NULL)) || reorder_make(&e->r_wb, &wuser, wb, attr)) { dnnl_primitive_desc_destroy(pd); goto out; }
        }
        if (prim_make(&e->bwd_d, pd)) goto out;
        /* backward weights; the bias gradient is the caller's (larch sums it in double, oneDNN in float) */
        if (!ok(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &src, &wany, NULL,
                                                            &dst, strides, pad, pad)) ||
            !ok(dnnl_primitive_desc_create(&pd, &cd, attr, g_engine, fpd)))
            goto out;
        const dnnl_memory_desc_t *dwp = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
        if (mem_make(&e->m_dwp, dwp) || mem_make(&e->m_dw, &wuser)) {
            dnnl_primitive_desc_destroy(pd);
            goto out;
        }
        if (!dnnl_memory_desc_equal(dwp, &wuser)) {
            if (!(e->dwp = floats_for(dwp, NULL)) || reorder_make(&e->r_dw, dwp, &wuser, attr)) { dnnl_primitive_desc_destroy(pd); goto out; }
        }
        if (prim_make(&e->bwd_w, pd)) goto out;
        if (!(e->tmp_w = aligned_alloc(64, (e->w_floats * sizeof(float) + 63) / 64 * 64))) goto out;
        e->dx_floats = (size_t)n * g->h * g->w * g->cin;
    }
    size_t sp = 0;
    const prim_t *ps[] = {&e->fwd, &e->bwd_d, &e->bwd_w, &e->r_wf, &e->r_wb, &e->r_dw};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        if (ps[i]->sp_bytes > sp) sp = ps[i]->sp_bytes;
    e->sp_bytes = (sp + 63) / 64 * 64;
    r = 0;
out:
    if (fpd) {
        /* the implementation name, from the primitive's own descriptor (it lives as long as the primitive) */
        if (!r && e->fwd.p) {
            const_dnnl_primitive_desc_t own;
            const char *impl = NULL;
            if (ok(dnnl_primitive_get_primitive_desc(e->fwd.p, &own)) &&
                ok(dnnl_primitive_desc_query(own, dnnl_query_impl_info_str, 0, &impl)) && impl)
                e->impl = impl;
            else
                e->impl = "";
        }
        dnnl_primitive_desc_destroy(fpd);
    }
    dnnl_primitive_attr_destroy(attr);
    return r;
}

static entry_t *find(const larch_onednn_conv *c, int n)
{
    for (int i = 0; i < c->n_entries; i++)
        if (c->e[i].n == n) return &c->e[i];
    return NULL;
}

int larch_onednn_conv_prepare(larch_onednn_conv *c, int n, int train, size_t *scratch_floats)
{
    entry_t *e = find(c, n);
    if (e && e->state < 0) return -1;
    if (e && e->train < train) entry_free(e);          /* rebuilt with the backward primitives */
    else if (e) goto done;
    if (!e) {
        if (c->n_entries == c->cap) {
            int cap = c->cap ? 2 * c->cap : 4;
            entry_t *ne = realloc(c->e, (size_t)cap * sizeof *ne);
            if (!ne) return -1;
            c->e = ne;
            c->cap = cap;
        }
        e = &c->e[c->n_entries++];
        memset(e, 0, sizeof *e);
    }
    if (entry_build(&c->g, e, n, train)) {
        entry_free(e);
        e->n = n;
        e->state = -1;
        return -1;
    }
    e->state = 1;
done:
    if (scratch_floats) *scratch_floats = e->sp_bytes / sizeof(float) + (e->train ? e->dx_floats : 0);
    return 0;
}

const char *larch_onednn_conv_impl(const larch_onednn_conv *c, int n)
{
    const entry_t *e = find(c, n);
    return e && e->state > 0 ? e->impl : "";
}

static int exec(const prim_t *p, int nargs, dnnl_exec_arg_t *args, void *scratch)
{
    if (p->sp) {
        if (!ok(dnnl_memory_set_data_handle(p->sp, scratch))) return -1;
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->sp};
    }
    return ok(dnnl_primitive_execute(p->p, g_stream, nargs, args)) && ok(dnnl_stream_wait(g_stream)) ? 0 : -1;
}

static int set(dnnl_memory_t m, const void *ptr) { return ok(dnnl_memory_set_data_handle(m, (void *)(uintptr_t)ptr)) ? 0 : -1; }

/* The weights in the layout of a primitive: m_prim (with buffer buf when a
 * reorder r is needed) filled from the user's W. */
static int weights_in(const entry_t *e, const prim_t *r, dnnl_memory_t m_prim, float *buf, const float *W, void *scratch)
{
    if (!r->p) return set(m_prim, W);
    if (set(e->m_w, W) || set(m_prim, buf)) return -1;
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_FROM, e->m_w}, {DNNL_ARG_TO, m_prim}};
    return exec(r, 2, a, scratch);
}

int larch_onednn_conv_forward(larch_onednn_conv *c, int n, const float *x, const float *W, const float *bias,
                              float *y, float *scratch)
{
    entry_t *e = find(c, n);
    if (!e || e->state <= 0) return -1;
    if (weights_in(e, &e->r_wf, e->m_wf, e->wf, W, scratch) || set(e->m_x, x) || set(e->m_y, y)) return -1;
    dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, e->m_x}, {DNNL_ARG_WEIGHTS, e->m_wf}, {DNNL_ARG_DST, e->m_y}};
    int na = 3;
    if (c->g.bias) {
        if (set(e->m_b, bias)) return -1;
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, e->m_b};
    }
    return exec(&e->fwd, na, a, scratch);
}

static void add_to(float *restrict dst, const float *restrict src, size_t count)
{
    for (size_t i = 0; i < count; i++) dst[i] += src[i];
}

int larch_onednn_conv_backward(larch_onednn_conv *c, int n, const float *x, const float *dy, const float *W,
                               float *dx, int dx_acc, float *dW, int acc_grad, float *scratch)
{
    entry_t *e = find(c, n);
    if (!e || e->state <= 0 || !e->train) return -1;
    if (set(e->m_dy, dy)) return -1;
    if (dW) {
        if (set(e->m_x, x)) return -1;
        float *wdst = acc_grad ? e->tmp_w : dW;                      /* user-layout destination */
        if (e->r_dw.p ? set(e->m_dwp, e->dwp) : set(e->m_dwp, wdst)) return -1;
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, e->m_x}, {DNNL_ARG_DIFF_DST, e->m_dy}, {DNNL_ARG_DIFF_WEIGHTS, e->m_dwp}};
        if (exec(&e->bwd_w, 3, a, scratch)) return -1;
        if (e->r_dw.p) {
            if (set(e->m_dw, wdst)) return -1;
            dnnl_exec_arg_t r[3] = {{DNNL_ARG_FROM, e->m_dwp}, {DNNL_ARG_TO, e->m_dw}};
            if (exec(&e->r_dw, 2, r, scratch)) return -1;
        }
        if (acc_grad) add_to(dW, e->tmp_w, e->w_floats);
    }
    if (dx) {
        float *tmp = scratch + e->sp_bytes / sizeof(float);         /* after the scratchpad */
        if (weights_in(e, &e->r_wb, e->m_wb, e->wb, W, scratch) || set(e->m_dx, dx_acc ? tmp : dx)) return -1;
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_DIFF_DST, e->m_dy}, {DNNL_ARG_WEIGHTS, e->m_wb}, {DNNL_ARG_DIFF_SRC, e->m_dx}};
        if (exec(&e->bwd_d, 3, a, scratch)) return -1;
        if (dx_acc) add_to(dx, tmp, e->dx_floats);
    }
    return 0;
}
