/* prune_filters.c - the compression method `structured`: removes conv2d
 * filters (output channels) and dense neurons (rows) with the smallest
 * weight norms and physically shrinks the model (docs/compression/
 * structured.md). For a pruned layer P it shrinks:
 *   - P's weight (rows of (out, in) / filters of (cout, kh, kw, cin)) and bias;
 *   - the per-channel layers between P and the next product: batchnorm's
 *     scale, shift and running statistics; relu, leaky_relu, gelu, tanh,
 *     sigmoid, dropout, maxpool, avgpool, global_avgpool, flatten keep the
 *     channel count and have nothing to shrink;
 *   - the next conv2d's input slices (weight[:, :, :, c]), or the next
 *     dense's input columns: its input is (h, w, c) with c fastest, so
 *     column p*C + c for every spatial position p of a removed channel c.
 * A layer whose output (or a per-channel layer after it) feeds a loss, an
 * `add`, more than one layer, or a layer that mixes channels otherwise
 * (layernorm, groupnorm, l2norm, ...) cannot be pruned this way: asked for
 * by `layers`, it is an error naming it; by default it is skipped (noted in
 * the summary).
 */
#include "compress/methods.h"
#include "compress/rewrite.h"
#include "nn/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const larch_key larch_structured_keys[] = {
    {"keep", LARCH_T_FLOAT, "0", 0, 1, NULL, NULL,
     "fraction of the filters/neurons each pruned layer keeps (0 = unset; 0.5 when flops is unset too)"},
    {"flops", LARCH_T_FLOAT, "0", 0, 1, NULL, NULL,
     "target multiply-adds of the dense and conv2d layers, as a fraction of the original's (0 = unset)"},
    {"norm", LARCH_T_ENUM, "l2", 0, 0, "l2|l1", NULL, "norm of each filter's/neuron's weights that ranks them"},
    {"layers", LARCH_T_STRINGS, "[]", 0, 0, NULL, NULL,
     "layers to prune (default: every conv2d and dense that can be, but not one that feeds a loss)"},
    {"multiple", LARCH_T_INT, "1", 1, 1024, NULL, NULL,
     "kept counts are rounded down to a multiple of this (vector-friendly widths; at least one multiple)"},
    {0}};

/* A layer being pruned and what its output reaches. */
typedef struct {
    int layer;          /* the pruned layer's index                          */
    int C;              /* its output channels                               */
    int consumer;       /* the conv2d/dense reading them                     */
    int spatial;        /* dense consumer: input positions (in / C); conv: 1 */
    int k;              /* channels kept                                     */
    int *keep;          /* the kept channels, ascending (k of them)          */
    double *norm;       /* each channel's weight norm                        */
} target;

static int is_passthrough(const char *t)
{
    static const char *const pass[] = {"relu", "leaky_relu", "gelu", "tanh", "sigmoid", "dropout", "maxpool",
                                       "avgpool", "global_avgpool", "flatten", "batchnorm", NULL};
    for (int i = 0; pass[i]; i++)
        if (!strcmp(t, pass[i])) return 1;
    return 0;
}

/* Follows layer li's output to the conv2d/dense that reads it; marks the
 * per-channel layers in between in chain[] (= target index). */
static larch_status analyze(const larch_model *m, int li, target *t, int ti, int *chain)
{
    const larch_layer *P = m->layers[li];
    const int C = P->out_shape.c;
    int node = li + 1, cons[2];
    t->layer = li;
    t->C = C;
    if (larch_rw_node_scored(m, node))
        return larch_fail(LARCH_ERR_INVALID, "structured: layer '%s' feeds a loss (its outputs are the model's outputs): it cannot be pruned", P->name);
    for (;;) {
        const char *at = m->layers[node - 1]->name;
        int n = larch_rw_consumers(m, node, cons, 2);
        if (n == 0) return larch_fail(LARCH_ERR_INVALID, "structured: layer '%s': nothing reads the output of '%s'", P->name, at);
        if (n > 1)
            return larch_fail(LARCH_ERR_INVALID, "structured: layer '%s': the output of '%s' feeds %d layers ('%s', '%s'%s); "
                              "pruning handles one consumer only", P->name, at, n, m->layers[cons[0]]->name,
                              m->layers[cons[1]]->name, n > 2 ? ", ..." : "");
        const larch_layer *L = m->layers[cons[0]];
        const char *type = L->ops->type;
        if (L->n_in != 1)
            return larch_fail(LARCH_ERR_INVALID, "structured: layer '%s': its output reaches '%s' (%s) of %d inputs (a residual "
                              "connection); pruning it would need the same channels removed from every input", P->name, L->name, type, L->n_in);
        if (!strcmp(type, "conv2d") || !strcmp(type, "dense")) {
            larch_shape in = L->in_shape[0];
            size_t feats = larch_shape_size(in);
            if (!strcmp(type, "conv2d") ? in.c != C : feats % (size_t)C != 0)
                return larch_fail(LARCH_ERR_SHAPE, "structured: layer '%s': '%s' reads (%d, %d, %d), not %d channels", P->name,
                                  L->name, in.h, in.w, in.c, C);
            t->consumer = cons[0];
            t->spatial = !strcmp(type, "conv2d") ? 1 : (int)(feats / (size_t)C);
            return LARCH_OK;
        }
        if (!is_passthrough(type))
            return larch_fail(LARCH_ERR_INVALID, "structured: layer '%s': its output reaches '%s' (%s), which mixes channels; "
                              "pruning goes through %s", P->name, L->name, type,
                              "relu, leaky_relu, gelu, tanh, sigmoid, dropout, pooling, flatten and batchnorm");
        if (!strcmp(type, "batchnorm") && L->in_shape[0].c != C)
            return larch_fail(LARCH_ERR_SHAPE, "structured: layer '%s': '%s' normalizes %d features, not %d channels", P->name,
                              L->name, L->in_shape[0].c, C);
        if ((!strcmp(type, "maxpool") || !strcmp(type, "avgpool") || !strcmp(type, "global_avgpool")) && L->in_shape[0].c != C)
            return larch_fail(LARCH_ERR_SHAPE, "structured: layer '%s': '%s' pools %d channels, not %d", P->name, L->name,
                              L->in_shape[0].c, C);
        chain[cons[0]] = ti;
        node = cons[0] + 1;
        if (larch_rw_node_scored(m, node))
            return larch_fail(LARCH_ERR_INVALID, "structured: layer '%s': its output reaches a loss through '%s'", P->name, L->name);
    }
}

/* Multiply-adds with each target keeping cnt[t] channels. */
static double macs_with(const larch_model *m, const target *t, int nt, const int *cnt)
{
    double total = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const larch_layer *L = m->layers[i];
        if (strcmp(L->ops->type, "dense") && strcmp(L->ops->type, "conv2d")) continue;
        double out = m->params[L->first_param].shape[0];
        double in = (double)m->params[L->first_param].size / out;   /* kh*kw*cin or in */
        for (int j = 0; j < nt; j++) {
            if (t[j].layer == i) out = cnt[j];
            if (t[j].consumer == i) in = in / t[j].C * cnt[j];
        }
        total += (double)L->out_shape.h * L->out_shape.w * out * in;
    }
    return total;
}

static int count_for(double f, int C, int mult)
{
    int k = (int)lround(f * C);
    if (mult > 1) k = k / mult * mult;
    if (k < mult) k = mult;
    return k < 1 ? 1 : k > C ? C : k;
}

typedef struct { double norm; int c; } ranked;

static int by_norm_desc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->norm != y->norm) return x->norm > y->norm ? -1 : 1;
    return x->c - y->c;   /* ties: the lower index first */
}

static int int_cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* Copies src (d0 x mid x dl) into dst keeping rows sel0 (n0 of them, NULL =
 * all d0) of axis 0 and sell (nl, NULL = all dl) of the last axis. */
static void copy_select(const float *src, int d0, size_t mid, int dl, float *dst, const int *sel0, int n0,
                        const int *sell, int nl)
{
    int rows = sel0 ? n0 : d0, cols = sell ? nl : dl;
    for (int a = 0; a < rows; a++) {
        int ia = sel0 ? sel0[a] : a;
        for (size_t b = 0; b < mid; b++) {
            const float *s = src + ((size_t)ia * mid + b) * dl;
            float *d = dst + ((size_t)a * mid + b) * cols;
            for (int c = 0; c < cols; c++) d[c] = s[sell ? sell[c] : c];
        }
    }
}

static int name_listed(const char *name, const char **names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return 1;
    return 0;
}

larch_status larch_compress_structured(const larch_compress_src *src, larch_node *opts_in, const char *out_base,
                                       larch_compress_out *out)
{
    memset(out, 0, sizeof *out);
    larch_node *opts = opts_in ? larch_node_clone(opts_in) : NULL;
    larch_status s = LARCH_OK;
    if (!opts) s = larch_cfg_parse("{}", "--method structured", &opts);
    if (!s) s = larch_cfg_check(opts, "structured", larch_structured_keys, NULL);
    if (s) { larch_node_free(opts); return s; }
    double keep = larch_cfg_float(opts, "keep"), flops = larch_cfg_float(opts, "flops");
    int l1 = !strcmp(larch_cfg_str(opts, "norm"), "l1");
    int mult = (int)larch_cfg_int(opts, "multiple");
    const char **names = NULL;
    int n_names = larch_rw_opt_layers(opts, &names);

    larch_model *m = NULL, *nm = NULL;
    larch_node *cfg = NULL;
    target *t = NULL;
    int *chain = NULL, *in_sel = NULL, nt = 0;
    char skipped[256] = "", why[256] = "";
    if (n_names < 0) s = larch_fail(LARCH_ERR_NOMEM, "out of memory");
    else if (keep > 0 && flops > 0) s = larch_fail(LARCH_ERR_INVALID, "structured: give keep or flops, not both");
    if (!s && keep == 0 && flops == 0) keep = 0.5;
    if (!s) s = larch_rw_load(src->cfg, src->checkpoint, &m);
    if (s) goto done;
    t = calloc((size_t)m->n_layers, sizeof *t);
    chain = malloc((size_t)m->n_layers * sizeof *chain);
    if (!t || !chain) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); goto done; }
    for (int i = 0; i < m->n_layers; i++) chain[i] = -1;

    /* the targets */
    for (int i = 0; i < n_names; i++) {
        int node = larch_model_node(m, names[i]);
        if (node <= 0) { s = larch_fail(LARCH_ERR_INVALID, "structured: layers: no layer '%s' in the model", names[i]); goto done; }
        const char *type = m->layers[node - 1]->ops->type;
        if (strcmp(type, "conv2d") && strcmp(type, "dense")) {
            s = larch_fail(LARCH_ERR_INVALID, "structured: layers: '%s' is a %s layer; structured pruning removes conv2d filters and dense neurons",
                           names[i], type);
            goto done;
        }
    }
    for (int i = 0; i < m->n_layers; i++) {
        const larch_layer *L = m->layers[i];
        if (strcmp(L->ops->type, "conv2d") && strcmp(L->ops->type, "dense")) continue;
        if (n_names && !name_listed(L->name, names, n_names)) continue;
        int *trial = malloc((size_t)m->n_layers * sizeof *trial);
        if (!trial) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); goto done; }
        memcpy(trial, chain, (size_t)m->n_layers * sizeof *trial);
        larch_status a = analyze(m, i, &t[nt], nt, trial);
        if (a == LARCH_OK) {
            memcpy(chain, trial, (size_t)m->n_layers * sizeof *chain);
            nt++;
        } else if (n_names) {
            free(trial);
            s = a;
            goto done;
        } else if (!larch_rw_node_scored(m, i + 1)) {   /* (an output layer is not a candidate) */
            if (!why[0]) snprintf(why, sizeof why, "%s", larch_errmsg());
            size_t len = strlen(skipped);
            if (len + strlen(L->name) + 4 < sizeof skipped) snprintf(skipped + len, sizeof skipped - len, "%s%s", len ? ", " : "", L->name);
        }
        free(trial);
    }
    if (nt == 0) {
        s = larch_fail(LARCH_ERR_INVALID, "structured: no layer of the model can be pruned%s%s", why[0] ? "; first: " : "", why);
        goto done;
    }

    /* rank each target's channels */
    for (int j = 0; j < nt; j++) {
        const larch_layer *L = m->layers[t[j].layer];
        const larch_param *w = &m->params[L->first_param];
        const size_t row = w->size / (size_t)t[j].C;
        t[j].norm = calloc((size_t)t[j].C, sizeof *t[j].norm);
        t[j].keep = malloc((size_t)t[j].C * sizeof *t[j].keep);
        if (!t[j].norm || !t[j].keep) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); goto done; }
        for (int c = 0; c < t[j].C; c++) {
            const float *r = m->param + w->offset + (size_t)c * row;
            double acc = 0;
            for (size_t q = 0; q < row; q++) acc += l1 ? fabs(r[q]) : (double)r[q] * r[q];
            t[j].norm[c] = l1 ? acc : sqrt(acc);
        }
    }

    /* how many each keeps */
    int *cnt = malloc((size_t)nt * sizeof *cnt);
    if (!cnt) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); goto done; }
    const double macs0 = larch_rw_macs(m);
    if (keep > 0) {
        for (int j = 0; j < nt; j++) cnt[j] = count_for(keep, t[j].C, mult);
    } else {
        /* the largest uniform fraction whose multiply-adds fit the target */
        for (int j = 0; j < nt; j++) cnt[j] = count_for(0, t[j].C, mult);
        if (macs_with(m, t, nt, cnt) > flops * macs0) {
            double least = macs_with(m, t, nt, cnt) / macs0;
            free(cnt);
            s = larch_fail(LARCH_ERR_INVALID, "structured: flops=%g is out of reach: with the fewest channels (%d) left in each of the %d pruned layers "
                           "the model still needs %.3f of its multiply-adds", flops, mult, nt, least);
            goto done;
        }
        double lo = 0, hi = 1;
        for (int it = 0; it < 50; it++) {
            double mid = 0.5 * (lo + hi);
            for (int j = 0; j < nt; j++) cnt[j] = count_for(mid, t[j].C, mult);
            if (macs_with(m, t, nt, cnt) <= flops * macs0) lo = mid;
            else hi = mid;
        }
        for (int j = 0; j < nt; j++) cnt[j] = count_for(lo, t[j].C, mult);
        if (macs_with(m, t, nt, cnt) > flops * macs0)   /* lo = 0 left: the fewest (checked above) */
            for (int j = 0; j < nt; j++) cnt[j] = count_for(0, t[j].C, mult);
    }
    for (int j = 0; j < nt; j++) {
        ranked *r = malloc((size_t)t[j].C * sizeof *r);
        if (!r) { free(cnt); s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); goto done; }
        for (int c = 0; c < t[j].C; c++) r[c] = (ranked){t[j].norm[c], c};
        qsort(r, (size_t)t[j].C, sizeof *r, by_norm_desc);
        t[j].k = cnt[j];
        for (int c = 0; c < t[j].k; c++) t[j].keep[c] = r[c].c;
        free(r);
        qsort(t[j].keep, (size_t)t[j].k, sizeof *t[j].keep, int_cmp);
    }
    free(cnt);

    /* the smaller config and model */
    cfg = larch_node_clone(src->cfg);
    if (!cfg) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); goto done; }
    for (int j = 0; j < nt && !s; j++) {
        const larch_layer *L = m->layers[t[j].layer];
        larch_node *ln = larch_rw_layer_node(cfg, L->name, NULL);
        if (!ln) s = larch_fail(LARCH_ERR_CONFIG, "structured: layer '%s' is not in the config's layer list", L->name);
        else s = larch_rw_set_int(ln, !strcmp(L->ops->type, "conv2d") ? "filters" : "units", t[j].k);
    }
    if (!s) s = larch_rw_build(cfg, &nm);
    if (s) goto done;
    larch_rw_copy_same(m, nm);
    for (int i = 0; i < nm->n_layers && !s; i++) {
        const larch_layer *L = m->layers[i];
        const target *own = NULL, *feed = NULL;
        for (int j = 0; j < nt; j++) {
            if (t[j].layer == i) own = &t[j];
            if (t[j].consumer == i) feed = &t[j];
        }
        if (!own && chain[i] >= 0) own = &t[chain[i]];
        if (!own && !feed) continue;
        int nl = 0;
        if (feed) {
            free(in_sel);
            nl = feed->spatial * feed->k;
            in_sel = malloc((size_t)nl * sizeof *in_sel);
            if (!in_sel) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); break; }
            for (int p = 0; p < feed->spatial; p++)
                for (int c = 0; c < feed->k; c++) in_sel[p * feed->k + c] = p * feed->C + feed->keep[c];
        }
        for (int q = 0; q < L->n_param; q++) {
            const larch_param *op = &m->params[L->first_param + q];
            const larch_param *np = NULL;
            float *dst = larch_rw_param(nm, L->name, op->tensor, &np);
            if (!dst) { s = larch_fail(LARCH_ERR_INVALID, "structured: %s is missing from the pruned model", op->name); break; }
            const float *srcp = m->param + op->offset;
            if (op->ndim == 1) copy_select(srcp, op->shape[0], 1, 1, dst, own ? own->keep : NULL, own ? own->k : 0, NULL, 0);
            else {
                size_t mid = op->ndim == 4 ? (size_t)op->shape[1] * op->shape[2] : 1;
                int dl = op->shape[op->ndim - 1];
                copy_select(srcp, op->shape[0], mid, dl, dst, own && own->layer == i ? own->keep : NULL, own ? own->k : 0,
                            feed ? in_sel : NULL, nl);
            }
        }
        for (int q = 0; q < L->n_buffer && !s; q++) {
            const larch_buffer *ob = &m->buffers[L->first_buffer + q];
            float *dst = larch_rw_buffer(nm, L->name, ob->tensor, NULL);
            if (!dst) { s = larch_fail(LARCH_ERR_INVALID, "structured: %s is missing from the pruned model", ob->name); break; }
            copy_select(m->buffer + ob->offset, (int)ob->size, 1, 1, dst, own ? own->keep : NULL, own ? own->k : 0, NULL, 0);
        }
    }
    if (s) goto done;
    s = larch_rw_write(cfg, nm, out_base, out);
    if (!s) {
        size_t len = 0;
        for (int j = 0; j < nt && len < sizeof out->summary; j++)
            len += (size_t)snprintf(out->summary + len, sizeof out->summary - len, "%s%s: %d -> %d", j ? ", " : "",
                                    m->layers[t[j].layer]->name, t[j].C, t[j].k);
        if (len < sizeof out->summary)
            len += (size_t)snprintf(out->summary + len, sizeof out->summary - len, "; multiply-adds %.3g -> %.3g (%.3f), params %ld -> %ld",
                                    macs0, larch_rw_macs(nm), larch_rw_macs(nm) / macs0, larch_rw_params(m), larch_rw_params(nm));
        if (skipped[0] && len < sizeof out->summary)
            snprintf(out->summary + len, sizeof out->summary - len, "; not pruned: %s", skipped);
    }
done:
    if (t)
        for (int j = 0; j < nt; j++) { free(t[j].keep); free(t[j].norm); }
    free(t);
    free(chain);
    free(in_sel);
    free(names);
    larch_model_free(m);
    larch_model_free(nm);
    larch_node_free(cfg);
    larch_node_free(opts);
    return s;
}
