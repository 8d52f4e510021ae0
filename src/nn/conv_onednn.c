/* conv_onednn.c - conv2d through oneDNN's C API (see conv_onednn.h).
 *
 * One CPU engine and one in-order stream serve every layer; they are made
 * with the first context and released with the last. Per batch size n and
 * precision a context keeps an entry: the forward, backward-data and
 * backward-weights primitives, the reorders their layouts and data types
 * need, the memory objects (created without a buffer; each call only sets
 * data handles) and the reordered-weight buffers. Memory descriptors: larch's
 * src/diff_src (n, cin, h, w) as "nhwc" float, dst/diff_dst (n, cout, oh, ow)
 * as "nhwc" float, the user's weights (cout, cin, k, k) as "ohwi" float, the
 * primitive's weights "any". Right padding is the left padding: oneDNN checks
 * (h + 2 pad - k) / stride + 1 = oh with the same floor division as larch.
 * Accumulation (dx_acc, acc_grad) goes through a temporary and an add, since
 * oneDNN's backward primitives overwrite.
 *
 * bf16 (larch_model_set_precision): the primitives read bf16 src, weights
 * and diff_dst, accumulate in float and write float dst, diff_src and
 * diff_weights, so larch's activations, gradients and master weights stay
 * float and only the three inputs of the products are rounded (nearest
 * even, like core/half.c and the bf16 GEMM). The forward reorders x from
 * float nhwc into bf16 nhwc, into the caller's `xsave` (the layer's saved
 * area) so that the backward-weights pass reads it again instead of
 * converting x a second time; the backward reorders dy into the scratch
 * once for both backward passes, and each pass W into the primitive's bf16
 * layout. Plain nhwc for the bf16 tensors and float nhwc outputs written in
 * place measured fastest; letting the primitives pick blocked layouts
 * (nChw16c) added reorders that cost more than the kernels gained
 * (docs/performance.md, "bf16"). Where oneDNN has only its reference bf16
 * kernel (no AVX512-BF16 / AVX512 core) the entry fails and the layer takes
 * im2col + the bf16 GEMM, as for any shape oneDNN cannot run.
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

/* An activation tensor as larch holds it (float nhwc: `user`) and as a
 * primitive reads or writes it (`prim`, NULL when it is the user's buffer
 * itself; otherwise a buffer at byte `off` after the scratchpad, and the
 * reorder r between the two). */
typedef struct {
    dnnl_memory_t user, prim;
    prim_t r;
    size_t off;
} act_t;

typedef struct {
    int n, train, bf16, state; /* state: 1 ready, -1 no implementation */
    prim_t fwd, bwd_d, bwd_w;
    act_t x, y, dy, dx;
    prim_t r_wf, r_wb, r_dw;   /* user W -> fwd / bwd-data layout, diff W -> user (p NULL: same layout) */
    dnnl_memory_t m_w, m_wf, m_wb, m_dwp, m_dw, m_b;
    void *wf, *wb, *dwp;       /* owned buffers (NULL when not needed) */
    float *tmp_w;
    size_t w_floats, sp_bytes, act_bytes, dx_floats, x_bytes;   /* x_bytes: the primitive's x (0: larch's own) */
    const char *impl;
} entry_t;

struct larch_onednn_conv {
    larch_onednn_geom g;
    int n_entries, cap;
    entry_t *e;
};

static int ok(dnnl_status_t s) { return s == dnnl_success; }

static size_t round64(size_t b) { return (b + 63) / 64 * 64; }

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

static void act_free(act_t *t)
{
    mem_free(&t->user);
    mem_free(&t->prim);
    prim_free(&t->r);
    t->off = 0;
}

static void entry_free(entry_t *e)
{
    prim_free(&e->fwd); prim_free(&e->bwd_d); prim_free(&e->bwd_w);
    prim_free(&e->r_wf); prim_free(&e->r_wb); prim_free(&e->r_dw);
    act_free(&e->x); act_free(&e->y); act_free(&e->dy); act_free(&e->dx);
    dnnl_memory_t *ms[] = {&e->m_w, &e->m_wf, &e->m_wb, &e->m_dwp, &e->m_dw, &e->m_b};
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

/* oneDNN's reference kernels are correct but orders of magnitude slower:
 * in bf16 they mean "no bf16 kernel on this CPU" (gemm_bf16.c does the same). */
static int is_ref(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    return ok(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl)) && impl && !strncmp(impl, "ref", 3);
}

/* A primitive from a primitive descriptor (consumed), with its scratchpad
 * view; in bf16 (no_ref) a reference implementation is refused. */
static int prim_make(prim_t *p, dnnl_primitive_desc_t pd, int no_ref)
{
    int r = -1;
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    p->sp_bytes = sp ? dnnl_memory_desc_get_size(sp) : 0;
    if (no_ref && is_ref(pd)) goto out;
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
    return prim_make(p, pd, 0);
}

static int mem_make(dnnl_memory_t *m, const dnnl_memory_desc_t *md) { return ok(dnnl_memory_create(m, md, g_engine, DNNL_MEMORY_NONE)) ? 0 : -1; }

static void *buffer_for(const dnnl_memory_desc_t *md) { return aligned_alloc(64, round64(dnnl_memory_desc_get_size(md))); }

/* An activation's memories: the user's (float nhwc) and, when the primitive's
 * descriptor pmd differs (bf16, another layout), the primitive's with a
 * reorder user -> prim (to_prim) or prim -> user, its buffer taken from the
 * activation area at *bytes. */
static int act_make(act_t *t, const dnnl_memory_desc_t *user, const dnnl_memory_desc_t *pmd, int to_prim,
                    dnnl_primitive_attr_t attr, size_t *bytes)
{
    if (mem_make(&t->user, user)) return -1;
    if (dnnl_memory_desc_equal(user, pmd)) return 0;
    if (mem_make(&t->prim, pmd) || (to_prim ? reorder_make(&t->r, user, pmd, attr) : reorder_make(&t->r, pmd, user, attr)))
        return -1;
    t->off = *bytes;
    *bytes += round64(dnnl_memory_desc_get_size(pmd));
    return 0;
}

/* A descriptor the primitive descriptor pd chose (what: dnnl_query_*_md), copied out of pd. */
static dnnl_memory_desc_t chosen(const_dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    return *dnnl_primitive_desc_query_md(pd, what, 0);
}

static int entry_build(const larch_onednn_geom *g, entry_t *e, int n, int train, int bf16)
{
    dnnl_primitive_attr_t attr = NULL;
    /* user (float, larch's layouts) and primitive (bf16 in bf16 mode) descriptors */
    dnnl_memory_desc_t src, dst, wuser, bias, psrc, pdst, pdiff_dst, wany, dwany;
    const dnnl_data_type_t in_t = bf16 ? dnnl_bf16 : dnnl_f32;
    const dnnl_dims_t sd = {n, g->cin, g->h, g->w}, dd = {n, g->cout, g->oh, g->ow}, wd = {g->cout, g->cin, g->k, g->k},
                      bd = {g->cout}, strides = {g->stride, g->stride}, pad = {g->pad, g->pad};
    e->n = n;
    e->train = train;
    e->bf16 = bf16;
    if (!ok(dnnl_memory_desc_init_by_tag(&src, 4, sd, dnnl_f32, dnnl_nhwc)) ||
        !ok(dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_nhwc)) ||
        !ok(dnnl_memory_desc_init_by_tag(&psrc, 4, sd, in_t, dnnl_nhwc)) ||
        !ok(dnnl_memory_desc_init_by_tag(&pdst, 4, dd, dnnl_f32, dnnl_nhwc)) ||
        !ok(dnnl_memory_desc_init_by_tag(&pdiff_dst, 4, dd, in_t, dnnl_nhwc)) ||
        !ok(dnnl_memory_desc_init_by_tag(&wuser, 4, wd, dnnl_f32, dnnl_ohwi)) ||
        !ok(dnnl_memory_desc_init_by_tag(&wany, 4, wd, in_t, dnnl_format_tag_any)) ||
        !ok(dnnl_memory_desc_init_by_tag(&dwany, 4, wd, dnnl_f32, dnnl_format_tag_any)) ||
        !ok(dnnl_memory_desc_init_by_tag(&bias, 1, bd, dnnl_f32, dnnl_x)))
        return -1;
    if (!ok(dnnl_primitive_attr_create(&attr))) return -1;
    int r = -1;
    size_t acts = 0;
    dnnl_primitive_desc_t fpd = NULL, pd;
    dnnl_convolution_desc_t cd;
    if (!ok(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user))) goto out;
    /* forward */
    if (!ok(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &psrc, &wany,
                                               g->bias ? &bias : NULL, &pdst, strides, pad, pad)) ||
        !ok(dnnl_primitive_desc_create(&fpd, &cd, attr, g_engine, NULL)))
        goto out;
    const dnnl_memory_desc_t wf = chosen(fpd, dnnl_query_weights_md), fsrc = chosen(fpd, dnnl_query_src_md),
                             fdst = chosen(fpd, dnnl_query_dst_md);
    e->x_bytes = round64(dnnl_memory_desc_get_size(&fsrc));
    if (act_make(&e->x, &src, &fsrc, 1, attr, &acts) || act_make(&e->y, &dst, &fdst, 0, attr, &acts) ||
        mem_make(&e->m_w, &wuser) || mem_make(&e->m_wf, &wf) || (g->bias && mem_make(&e->m_b, &bias)))
        goto out;
    e->w_floats = (size_t)g->cout * g->cin * g->k * g->k;
    if (!dnnl_memory_desc_equal(&wf, &wuser)) {
        if (!(e->wf = buffer_for(&wf)) || reorder_make(&e->r_wf, &wuser, &wf, attr)) goto out;
    }
    if (dnnl_primitive_desc_clone(&pd, fpd) != dnnl_success) goto out;
    if (prim_make(&e->fwd, pd, bf16)) goto out;
    if (train) {
        /* backward data */
        if (!ok(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &src, &wany, &pdiff_dst, strides, pad, pad)) ||
            !ok(dnnl_primitive_desc_create(&pd, &cd, attr, g_engine, fpd)))
            goto out;
        const dnnl_memory_desc_t wb = chosen(pd, dnnl_query_weights_md), bdd = chosen(pd, dnnl_query_diff_dst_md),
                                 bds = chosen(pd, dnnl_query_diff_src_md);
        if (act_make(&e->dy, &dst, &bdd, 1, attr, &acts) || act_make(&e->dx, &src, &bds, 0, attr, &acts) ||
            mem_make(&e->m_wb, &wb)) {
            dnnl_primitive_desc_destroy(pd);
            goto out;
        }
        if (!dnnl_memory_desc_equal(&wb, &wuser)) {
            if (!(e->wb = buffer_for(&wb)) || reorder_make(&e->r_wb, &wuser, &wb, attr)) { dnnl_primitive_desc_destroy(pd); goto out; }
        }
        if (prim_make(&e->bwd_d, pd, bf16)) goto out;
        /* backward weights, on the src and diff_dst layouts of the passes
         * above (one reorder of each serves both), float diff weights. The
         * bias gradient is the caller's (larch sums it in double, oneDNN in float) */
        if (!ok(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &fsrc, &dwany, NULL,
                                                            &bdd, strides, pad, pad)) ||
            !ok(dnnl_primitive_desc_create(&pd, &cd, attr, g_engine, fpd)))
            goto out;
        const dnnl_memory_desc_t dwp = chosen(pd, dnnl_query_diff_weights_md);
        if (mem_make(&e->m_dwp, &dwp) || mem_make(&e->m_dw, &wuser)) {
            dnnl_primitive_desc_destroy(pd);
            goto out;
        }
        if (!dnnl_memory_desc_equal(&dwp, &wuser)) {
            if (!(e->dwp = buffer_for(&dwp)) || reorder_make(&e->r_dw, &dwp, &wuser, attr)) { dnnl_primitive_desc_destroy(pd); goto out; }
        }
        if (prim_make(&e->bwd_w, pd, bf16)) goto out;
        if (!(e->tmp_w = aligned_alloc(64, round64(e->w_floats * sizeof(float))))) goto out;
        e->dx_floats = (size_t)n * g->h * g->w * g->cin;
    }
    size_t sp = 0;
    const prim_t *ps[] = {&e->fwd, &e->bwd_d, &e->bwd_w, &e->r_wf, &e->r_wb, &e->r_dw, &e->x.r, &e->y.r, &e->dy.r, &e->dx.r};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        if (ps[i]->sp_bytes > sp) sp = ps[i]->sp_bytes;
    e->sp_bytes = round64(sp);
    e->act_bytes = acts;
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

static entry_t *find(const larch_onednn_conv *c, int n, int bf16)
{
    for (int i = 0; i < c->n_entries; i++)
        if (c->e[i].n == n && c->e[i].bf16 == bf16) return &c->e[i];
    return NULL;
}

int larch_onednn_conv_prepare(larch_onednn_conv *c, int n, int train, int bf16, size_t *scratch_floats, size_t *save_floats)
{
    entry_t *e = find(c, n, bf16);
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
    if (entry_build(&c->g, e, n, train, bf16)) {
        entry_free(e);
        e->n = n;
        e->bf16 = bf16;
        e->state = -1;
        return -1;
    }
    e->state = 1;
done:
    if (scratch_floats)
        *scratch_floats = (e->sp_bytes + e->act_bytes) / sizeof(float) + (e->train ? e->dx_floats : 0);
    if (save_floats) *save_floats = e->x.prim ? e->x_bytes / sizeof(float) : 0;
    return 0;
}

const char *larch_onednn_conv_impl(const larch_onednn_conv *c, int n, int bf16)
{
    const entry_t *e = find(c, n, bf16);
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

static int reorder(const prim_t *r, dnnl_memory_t from, dnnl_memory_t to, void *scratch)
{
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    return exec(r, 2, a, scratch);
}

/* The memory a primitive reads for input t, filled from the user's buf
 * (reordered into `into`, or the activation area when `into` is NULL, when
 * the layouts differ; fill 0: `into` already holds it); NULL on failure. */
static dnnl_memory_t act_in(const entry_t *e, const act_t *t, const float *buf, void *into, int fill, char *scratch)
{
    if (set(t->user, buf)) return NULL;
    if (!t->prim) return t->user;
    if (set(t->prim, into ? into : scratch + e->sp_bytes + t->off) || (fill && reorder(&t->r, t->user, t->prim, scratch)))
        return NULL;
    return t->prim;
}

/* The memory a primitive writes for output t, to end up in buf (act_out_done). */
static dnnl_memory_t act_out(const entry_t *e, const act_t *t, float *buf, char *scratch)
{
    if (set(t->user, buf)) return NULL;
    if (!t->prim) return t->user;
    return set(t->prim, scratch + e->sp_bytes + t->off) ? NULL : t->prim;
}

static int act_out_done(const act_t *t, char *scratch) { return t->prim ? reorder(&t->r, t->prim, t->user, scratch) : 0; }

/* The weights in the layout of a primitive: m_prim (with buffer buf when a
 * reorder r is needed) filled from the user's W. */
static int weights_in(const entry_t *e, const prim_t *r, dnnl_memory_t m_prim, void *buf, const float *W, void *scratch)
{
    if (!r->p) return set(m_prim, W);
    if (set(e->m_w, W) || set(m_prim, buf)) return -1;
    return reorder(r, e->m_w, m_prim, scratch);
}

int larch_onednn_conv_forward(larch_onednn_conv *c, int n, int bf16, const float *x, const float *W, const float *bias,
                              float *y, float *scratch, void *xsave)
{
    entry_t *e = find(c, n, bf16);
    if (!e || e->state <= 0) return -1;
    char *s = (char *)scratch;
    dnnl_memory_t mx, my;
    if (weights_in(e, &e->r_wf, e->m_wf, e->wf, W, s) || !(mx = act_in(e, &e->x, x, xsave, 1, s)) || !(my = act_out(e, &e->y, y, s)))
        return -1;
    dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, mx}, {DNNL_ARG_WEIGHTS, e->m_wf}, {DNNL_ARG_DST, my}};
    int na = 3;
    if (c->g.bias) {
        if (set(e->m_b, bias)) return -1;
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, e->m_b};
    }
    return exec(&e->fwd, na, a, s) || act_out_done(&e->y, s) ? -1 : 0;
}

static void add_to(float *restrict dst, const float *restrict src, size_t count)
{
    for (size_t i = 0; i < count; i++) dst[i] += src[i];
}

int larch_onednn_conv_backward(larch_onednn_conv *c, int n, int bf16, const float *x, const float *dy, const float *W,
                               float *dx, int dx_acc, float *dW, int acc_grad, float *scratch, void *xsave, int xsaved)
{
    entry_t *e = find(c, n, bf16);
    if (!e || e->state <= 0 || !e->train) return -1;
    char *s = (char *)scratch;
    dnnl_memory_t mdy = act_in(e, &e->dy, dy, NULL, 1, s), mx, mdx;
    if (!mdy) return -1;
    if (dW) {
        float *wdst = acc_grad ? e->tmp_w : dW;                      /* user-layout destination */
        if (!(mx = act_in(e, &e->x, x, xsave, !(xsave && xsaved), s)) || (e->r_dw.p ? set(e->m_dwp, e->dwp) : set(e->m_dwp, wdst))) return -1;
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DIFF_DST, mdy}, {DNNL_ARG_DIFF_WEIGHTS, e->m_dwp}};
        if (exec(&e->bwd_w, 3, a, s)) return -1;
        if (e->r_dw.p && (set(e->m_dw, wdst) || reorder(&e->r_dw, e->m_dwp, e->m_dw, s))) return -1;
        if (acc_grad) add_to(dW, e->tmp_w, e->w_floats);
    }
    if (dx) {
        float *tmp = (float *)(s + e->sp_bytes + e->act_bytes);      /* after the scratchpad and the activations */
        if (weights_in(e, &e->r_wb, e->m_wb, e->wb, W, s) || !(mdx = act_out(e, &e->dx, dx_acc ? tmp : dx, s))) return -1;
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_DIFF_DST, mdy}, {DNNL_ARG_WEIGHTS, e->m_wb}, {DNNL_ARG_DIFF_SRC, mdx}};
        if (exec(&e->bwd_d, 3, a, s) || act_out_done(&e->dx, s)) return -1;
        if (dx_acc) add_to(dx, tmp, e->dx_floats);
    }
    return 0;
}
