/* int8_onednn.c - int8 dense (matmul) and conv2d (convolution) primitives of
 * oneDNN 2.6 for inference (see int8_onednn.h).
 *
 * Descriptors: dense src (n, in) "ab" u8/s8, weights (in, units) as larch's
 * (units, in) row-major, i.e. "ba" s8, dst (n, units) "ab" f32; conv src
 * (n, cin, h, w) "nhwc" u8/s8, weights (cout, cin, k, k) "ohwi" s8, dst
 * "nhwc" f32. The primitives choose the weights' layout ("any"); each batch
 * size's entry reorders the s8 weights into it once. Output scales are per
 * output channel (mask 1 << 1). oneDNN 2.x adds the bias to the s32
 * accumulator before the output scale (dst = scale * (acc + bias), checked
 * by tests/test_quant.c), so the kernel keeps bias[c] / out_scale[c].
 * oneDNN's own CPU engine and stream, separate from conv_onednn.c's, made
 * with the first kernel and released with the last.
 */
#include "nn/int8_onednn.h"

#include <oneapi/dnnl/dnnl.h>
#include <stdlib.h>
#include <string.h>

static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static int g_users;

typedef struct {
    int n, state;              /* state: 1 ready, -1 no implementation */
    dnnl_primitive_t p;
    dnnl_memory_t src, wei, bias, dst, sp;
    void *wbuf;                /* the weights in the primitive's layout */
    size_t sp_bytes;
    const char *impl;
} entry_t;

struct larch_i8_kernel {
    larch_i8_geom g;
    int u8, relu;
    int8_t *wq;
    float *scale, *bias;       /* bias: bias[c] / scale[c] (NULL: none) */
    int n_entries, cap;
    entry_t *e;
};

static int ok(dnnl_status_t s) { return s == dnnl_success; }

static void entry_free(entry_t *e)
{
    if (e->p) dnnl_primitive_destroy(e->p);
    dnnl_memory_t *ms[] = {&e->src, &e->wei, &e->bias, &e->dst, &e->sp};
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
        if (*ms[i]) dnnl_memory_destroy(*ms[i]);
    free(e->wbuf);
    memset(e, 0, sizeof *e);
}

larch_i8_kernel *larch_i8_create(const larch_i8_geom *g, const int8_t *wq, const float *out_scale, const float *bias,
                                 int src_u8, int relu)
{
    size_t K = (size_t)(g->conv ? g->k * g->k : 1) * g->cin, cout = (size_t)g->cout;
    larch_i8_kernel *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->g = *g;
    k->u8 = src_u8 != 0;
    k->relu = relu != 0;
    k->wq = malloc(K * cout);
    k->scale = malloc(cout * sizeof(float));
    k->bias = bias ? malloc(cout * sizeof(float)) : NULL;
    if (!k->wq || !k->scale || (bias && !k->bias)) goto fail;
    memcpy(k->wq, wq, K * cout);
    memcpy(k->scale, out_scale, cout * sizeof(float));
    for (size_t c = 0; bias && c < cout; c++) k->bias[c] = bias[c] / out_scale[c];
    if (!g_users) {
        if (!ok(dnnl_engine_create(&g_engine, dnnl_cpu, 0))) goto fail;
        if (!ok(dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags))) {
            dnnl_engine_destroy(g_engine);
            g_engine = NULL;
            goto fail;
        }
    }
    g_users++;
    return k;
fail:
    free(k->wq); free(k->scale); free(k->bias); free(k);
    return NULL;
}

void larch_i8_free(larch_i8_kernel *k)
{
    if (!k) return;
    for (int i = 0; i < k->n_entries; i++) entry_free(&k->e[i]);
    free(k->e); free(k->wq); free(k->scale); free(k->bias);
    free(k);
    if (--g_users == 0) {
        dnnl_stream_destroy(g_stream);
        dnnl_engine_destroy(g_engine);
        g_stream = NULL;
        g_engine = NULL;
    }
}

static int reorder_once(const dnnl_memory_desc_t *from_md, void *from, const dnnl_memory_desc_t *to_md, void *to)
{
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t r = NULL;
    dnnl_memory_t a = NULL, b = NULL;
    int rc = -1;
    if (!ok(dnnl_reorder_primitive_desc_create(&pd, from_md, g_engine, to_md, g_engine, NULL))) return -1;
    if (ok(dnnl_primitive_create(&r, pd)) && ok(dnnl_memory_create(&a, from_md, g_engine, from)) &&
        ok(dnnl_memory_create(&b, to_md, g_engine, to))) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, a}, {DNNL_ARG_TO, b}};
        rc = ok(dnnl_primitive_execute(r, g_stream, 2, args)) && ok(dnnl_stream_wait(g_stream)) ? 0 : -1;
    }
    dnnl_primitive_desc_destroy(pd);
    if (r) dnnl_primitive_destroy(r);
    if (a) dnnl_memory_destroy(a);
    if (b) dnnl_memory_destroy(b);
    return rc;
}

static int entry_build(larch_i8_kernel *k, entry_t *e, int n)
{
    const larch_i8_geom *g = &k->g;
    const dnnl_data_type_t st = k->u8 ? dnnl_u8 : dnnl_s8;
    dnnl_memory_desc_t src, wuser, wany, bias, dst;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int r = -1;
    if (g->conv) {
        const dnnl_dims_t sd = {n, g->cin, g->h, g->w}, dd = {n, g->cout, g->oh, g->ow}, wd = {g->cout, g->cin, g->k, g->k},
                          bd = {g->cout};
        if (!ok(dnnl_memory_desc_init_by_tag(&src, 4, sd, st, dnnl_nhwc)) ||
            !ok(dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_nhwc)) ||
            !ok(dnnl_memory_desc_init_by_tag(&wuser, 4, wd, dnnl_s8, dnnl_ohwi)) ||
            !ok(dnnl_memory_desc_init_by_tag(&wany, 4, wd, dnnl_s8, dnnl_format_tag_any)) ||
            !ok(dnnl_memory_desc_init_by_tag(&bias, 1, bd, dnnl_f32, dnnl_x)))
            return -1;
    } else {
        const dnnl_dims_t sd = {n, g->cin}, dd = {n, g->cout}, wd = {g->cin, g->cout}, bd = {1, g->cout};
        if (!ok(dnnl_memory_desc_init_by_tag(&src, 2, sd, st, dnnl_ab)) ||
            !ok(dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab)) ||
            !ok(dnnl_memory_desc_init_by_tag(&wuser, 2, wd, dnnl_s8, dnnl_ba)) ||
            !ok(dnnl_memory_desc_init_by_tag(&wany, 2, wd, dnnl_s8, dnnl_format_tag_any)) ||
            !ok(dnnl_memory_desc_init_by_tag(&bias, 2, bd, dnnl_f32, dnnl_ab)))
            return -1;
    }
    if (!ok(dnnl_primitive_attr_create(&attr))) return -1;
    if (!ok(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user)) ||
        !ok(dnnl_primitive_attr_set_output_scales(attr, g->cout, 1 << 1, k->scale)))
        goto out;
    if (k->relu) {
        dnnl_post_ops_t po;
        if (!ok(dnnl_post_ops_create(&po))) goto out;
        int bad = !ok(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f)) ||
                  !ok(dnnl_primitive_attr_set_post_ops(attr, po));
        dnnl_post_ops_destroy(po);
        if (bad) goto out;
    }
    if (g->conv) {
        const dnnl_dims_t strides = {g->stride, g->stride}, pad = {g->pad, g->pad};
        dnnl_convolution_desc_t cd;
        if (!ok(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &src, &wany,
                                                   k->bias ? &bias : NULL, &dst, strides, pad, pad)) ||
            !ok(dnnl_primitive_desc_create(&pd, &cd, attr, g_engine, NULL)))
            goto out;
    } else {
        dnnl_matmul_desc_t md;
        if (!ok(dnnl_matmul_desc_init(&md, &src, &wany, k->bias ? &bias : NULL, &dst)) ||
            !ok(dnnl_primitive_desc_create(&pd, &md, attr, g_engine, NULL)))
            goto out;
    }
    const char *impl = NULL;
    if (!ok(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl)) || !impl) impl = "";
    const dnnl_memory_desc_t wmd = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *spmd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    e->sp_bytes = spmd ? dnnl_memory_desc_get_size(spmd) : 0;
    size_t wbytes = dnnl_memory_desc_get_size(&wmd);
    if (!(e->wbuf = aligned_alloc(64, (wbytes + 63) / 64 * 64))) goto out;
    if (reorder_once(&wuser, k->wq, &wmd, e->wbuf)) goto out;
    if (!ok(dnnl_memory_create(&e->src, &src, g_engine, DNNL_MEMORY_NONE)) ||
        !ok(dnnl_memory_create(&e->wei, &wmd, g_engine, e->wbuf)) ||
        !ok(dnnl_memory_create(&e->dst, &dst, g_engine, DNNL_MEMORY_NONE)) ||
        (k->bias && !ok(dnnl_memory_create(&e->bias, &bias, g_engine, k->bias))) ||
        (e->sp_bytes && !ok(dnnl_memory_create(&e->sp, spmd, g_engine, DNNL_MEMORY_NONE))))
        goto out;
    if (!ok(dnnl_primitive_create(&e->p, pd))) goto out;
    /* the name, from the primitive's own descriptor (it lives as long as the primitive) */
    const_dnnl_primitive_desc_t own;
    e->impl = "";
    if (ok(dnnl_primitive_get_primitive_desc(e->p, &own)) && ok(dnnl_primitive_desc_query(own, dnnl_query_impl_info_str, 0, &impl)) && impl)
        e->impl = impl;
    r = 0;
out:
    if (pd) dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    return r;
}

static entry_t *find(const larch_i8_kernel *k, int n)
{
    for (int i = 0; i < k->n_entries; i++)
        if (k->e[i].n == n) return &k->e[i];
    return NULL;
}

int larch_i8_prepare(larch_i8_kernel *k, int n, size_t *scratch_bytes)
{
    entry_t *e = find(k, n);
    if (!e) {
        if (k->n_entries == k->cap) {
            int cap = k->cap ? 2 * k->cap : 4;
            entry_t *ne = realloc(k->e, (size_t)cap * sizeof *ne);
            if (!ne) return -1;
            k->e = ne;
            k->cap = cap;
        }
        e = &k->e[k->n_entries++];
        memset(e, 0, sizeof *e);
        if (entry_build(k, e, n)) {
            entry_free(e);
            e->state = -1;
        } else {
            e->state = 1;
        }
        e->n = n;
    }
    if (e->state < 0) return -1;
    if (scratch_bytes) *scratch_bytes = (e->sp_bytes + 63) / 64 * 64;
    return 0;
}

const char *larch_i8_impl(const larch_i8_kernel *k, int n)
{
    const entry_t *e = find(k, n);
    return e && e->state > 0 ? e->impl : "";
}

int larch_i8_forward(larch_i8_kernel *k, int n, const void *xq, float *y, void *scratch)
{
    entry_t *e = find(k, n);
    if (!e || e->state <= 0) return -1;
    if (!ok(dnnl_memory_set_data_handle(e->src, (void *)xq)) || !ok(dnnl_memory_set_data_handle(e->dst, y))) return -1;
    dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, e->wei}, {DNNL_ARG_DST, e->dst}};
    int na = 3;
    if (e->bias) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, e->bias};
    if (e->sp) {
        if (!ok(dnnl_memory_set_data_handle(e->sp, scratch))) return -1;
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, e->sp};
    }
    return ok(dnnl_primitive_execute(e->p, g_stream, na, a)) && ok(dnnl_stream_wait(g_stream)) ? 0 : -1;
}
