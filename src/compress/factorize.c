/* factorize.c - the compression method `svd`: truncated-SVD factorization
 * of dense and conv2d weights (docs/compression/factorization.md).
 *
 * A layer X of weight W seen as a matrix M (rows = outputs, columns = the
 * inputs of one output: `in` for dense (out, in), kh*kw*cin for conv2d
 * (cout, kh, kw, cin), which is also the order of the im2col columns) is
 * replaced by
 *   X_svd: the same layer type with r outputs and no bias, weight
 *          B = S_r^{1/2} V_r^T (r rows of M's width; a conv2d keeps X's
 *          kernel, stride and padding, so B's rows are r kh x kw x cin filters);
 *   X:     a dense of X's units (or a 1x1 conv2d of X's filters, stride 1,
 *          no padding) reading X_svd, weight A = U_r S_r^{1/2} (out, r), and
 *          X's own bias;
 * so that A B = U_r S_r V_r^T is the best rank-r approximation of M
 * (Eckart-Young): ||M - A B||_F = sqrt(sum of the dropped s_i^2). X keeps
 * its name, so what reads X (layers, losses) is unchanged.
 *
 * The SVD is LAPACK's dgesdd in double, the one inside OpenBLAS (which
 * larch links already): see the doc for why not liblapacke.
 */
#include "compress/methods.h"
#include "compress/rewrite.h"
#include "nn/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* LAPACK (Fortran calling convention; the trailing length is the hidden
 * length of the character argument). */
extern void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s, double *u,
                    const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork, int *iwork, int *info,
                    size_t jobz_len);

const larch_key larch_svd_keys[] = {
    {"rank", LARCH_T_INT, "0", 0, 1 << 24, NULL, NULL, "rank r of every factorized layer (0 = unset)"},
    {"energy", LARCH_T_FLOAT, "0", 0, 1, NULL, NULL,
     "smallest r keeping this fraction of the sum of squared singular values (0 = unset)"},
    {"size", LARCH_T_FLOAT, "0", 0, 1, NULL, NULL,
     "largest r whose two layers hold at most this fraction of the layer's weights (0 = unset; 0.5 when rank and energy are unset too)"},
    {"layers", LARCH_T_STRINGS, "[]", 0, 0, NULL, NULL,
     "layers to factorize, dense or conv2d (default: every dense layer except one that feeds a loss)"},
    {"force", LARCH_T_BOOL, "false", 0, 0, NULL, NULL,
     "factorize a layer even where the two layers hold more weights than it (checks)"},
    {0}};

/* M (rows x cols, row-major, float) = U diag(s) V^T: s (mn), and
 * a = U diag(sqrt s) (rows x mn, row-major), b = diag(sqrt s) V^T (mn x cols,
 * row-major), mn = min(rows, cols), in double. */
static larch_status svd_factors(const char *layer, const float *M, int rows, int cols, double *s, double *a, double *b)
{
    const int mn = rows < cols ? rows : cols;
    /* row-major M is column-major M^T (cols x rows): M^T = U' S V'^T, so
     * M = V' S U'^T: M's left vectors are V', its right ones U'. */
    double *A = malloc((size_t)rows * cols * sizeof *A);
    double *U = malloc((size_t)cols * mn * sizeof *U), *VT = malloc((size_t)mn * rows * sizeof *VT);
    int *iwork = malloc((size_t)8 * mn * sizeof *iwork);
    double *work = NULL, q = 0;
    larch_status st = LARCH_OK;
    if (!A || !U || !VT || !iwork) { st = larch_fail(LARCH_ERR_NOMEM, "svd: layer '%s': out of memory", layer); goto out; }
    for (size_t i = 0; i < (size_t)rows * cols; i++) A[i] = M[i];
    int m = cols, n = rows, lda = cols, ldu = cols, ldvt = mn, lwork = -1, info = 0;
    dgesdd_("S", &m, &n, A, &lda, s, U, &ldu, VT, &ldvt, &q, &lwork, iwork, &info, 1);
    if (info != 0) { st = larch_fail(LARCH_ERR_NUMERIC, "svd: layer '%s': LAPACK dgesdd workspace query failed (info %d)", layer, info); goto out; }
    lwork = (int)q + 1;
    work = malloc((size_t)lwork * sizeof *work);
    if (!work) { st = larch_fail(LARCH_ERR_NOMEM, "svd: layer '%s': out of memory", layer); goto out; }
    dgesdd_("S", &m, &n, A, &lda, s, U, &ldu, VT, &ldvt, work, &lwork, iwork, &info, 1);
    if (info != 0) {
        st = larch_fail(LARCH_ERR_NUMERIC, "svd: layer '%s': LAPACK dgesdd %s (info %d)", layer,
                        info > 0 ? "did not converge" : "rejected an argument", info);
        goto out;
    }
    for (int j = 0; j < mn; j++) {
        double r = sqrt(s[j]);
        for (int o = 0; o < rows; o++) a[(size_t)o * mn + j] = VT[j + (size_t)o * mn] * r;   /* M's left vector j */
        for (int k = 0; k < cols; k++) b[(size_t)j * cols + k] = U[k + (size_t)j * cols] * r; /* M's right vector j */
    }
out:
    free(A);
    free(U);
    free(VT);
    free(iwork);
    free(work);
    return st;
}

typedef struct {
    int layer, rows, cols, rank, mn;
    double *s, *a, *b;
    double kept;          /* retained energy */
} factor;

static int listed(const char *name, const char **names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return 1;
    return 0;
}

/* Turns layer node X into X_svd (inserted before it) + X. */
static larch_status rewrite_cfg(larch_node *cfg, const char *name, int conv, int rank)
{
    int pos;
    larch_node *x = larch_rw_layer_node(cfg, name, &pos);
    if (!x) return larch_fail(LARCH_ERR_CONFIG, "svd: layer '%s' is not in the config's layer list", name);
    char first[LARCH_NAME_MAX + 8];
    if (snprintf(first, sizeof first, "%s_svd", name) >= LARCH_NAME_MAX)
        return larch_fail(LARCH_ERR_INVALID, "svd: layer '%s': the name '%s_svd' of its first factor is too long", name, name);
    if (larch_rw_layer_node(cfg, first, NULL))
        return larch_fail(LARCH_ERR_INVALID, "svd: layer '%s': the model has a layer '%s' already", name, first);
    larch_node *f = larch_node_clone(x);
    if (!f) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    larch_status s = larch_map_set_scalar(f, "name", first);
    if (!s) s = larch_rw_set_int(f, conv ? "filters" : "units", rank);
    if (!s) s = larch_map_set_scalar(f, "bias", "false");
    if (!s) s = larch_rw_insert_layer(cfg, pos, f);
    if (s) { larch_node_free(f); return s; }
    /* X reads X_svd: it drops its own input (now X_svd's) */
    larch_rw_map_remove(x, "input");
    larch_rw_map_remove(x, "inputs");
    s = larch_map_set_scalar(x, "input", first);
    if (!s && conv) s = larch_rw_set_int(x, "kernel", 1);
    if (!s && conv) s = larch_rw_set_int(x, "stride", 1);
    if (!s && conv) s = larch_rw_set_int(x, "padding", 0);
    return s;
}

larch_status larch_compress_svd(const larch_compress_src *src, larch_node *opts_in, const char *out_base,
                                larch_compress_out *out)
{
    memset(out, 0, sizeof *out);
    larch_node *opts = opts_in ? larch_node_clone(opts_in) : NULL;
    larch_status s = LARCH_OK;
    if (!opts) s = larch_cfg_parse("{}", "--method svd", &opts);
    if (!s) s = larch_cfg_check(opts, "svd", larch_svd_keys, NULL);
    if (s) { larch_node_free(opts); return s; }
    long rank = larch_cfg_int(opts, "rank");
    double energy = larch_cfg_float(opts, "energy"), size = larch_cfg_float(opts, "size");
    int force = larch_cfg_bool(opts, "force");
    const char **names = NULL;
    int n_names = larch_rw_opt_layers(opts, &names);
    larch_model *m = NULL, *nm = NULL;
    larch_node *cfg = NULL;
    factor *fs = NULL;
    int nf = 0;
    char notes[256] = "";
    if (n_names < 0) s = larch_fail(LARCH_ERR_NOMEM, "out of memory");
    else if ((rank > 0) + (energy > 0) + (size > 0) > 1) s = larch_fail(LARCH_ERR_INVALID, "svd: give one of rank, energy and size");
    if (!s && rank == 0 && energy == 0 && size == 0) size = 0.5;
    if (!s) s = larch_rw_load(src->cfg, src->checkpoint, &m);
    if (s) goto done;
    for (int i = 0; i < n_names && !s; i++) {
        int node = larch_model_node(m, names[i]);
        if (node <= 0) s = larch_fail(LARCH_ERR_INVALID, "svd: layers: no layer '%s' in the model", names[i]);
        else if (strcmp(m->layers[node - 1]->ops->type, "dense") && strcmp(m->layers[node - 1]->ops->type, "conv2d"))
            s = larch_fail(LARCH_ERR_INVALID, "svd: layers: '%s' is a %s layer; svd factorizes dense and conv2d layers", names[i],
                           m->layers[node - 1]->ops->type);
    }
    if (s) goto done;
    fs = calloc((size_t)m->n_layers, sizeof *fs);
    cfg = larch_node_clone(src->cfg);
    if (!fs || !cfg) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); goto done; }
    for (int i = 0; i < m->n_layers && !s; i++) {
        const larch_layer *L = m->layers[i];
        int conv = !strcmp(L->ops->type, "conv2d");
        if (n_names ? !listed(L->name, names, n_names)
                    : strcmp(L->ops->type, "dense") || larch_rw_node_scored(m, i + 1))
            continue;
        const larch_param *w = &m->params[L->first_param];
        factor *f = &fs[nf];
        f->layer = i;
        f->rows = w->shape[0];
        f->cols = (int)(w->size / (size_t)f->rows);
        f->mn = f->rows < f->cols ? f->rows : f->cols;
        f->s = malloc((size_t)f->mn * sizeof *f->s);
        f->a = malloc((size_t)f->rows * f->mn * sizeof *f->a);
        f->b = malloc((size_t)f->mn * f->cols * sizeof *f->b);
        nf++;
        if (!f->s || !f->a || !f->b) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); break; }
        if ((s = svd_factors(L->name, m->param + w->offset, f->rows, f->cols, f->s, f->a, f->b))) break;
        double total = 0, acc = 0;
        for (int j = 0; j < f->mn; j++) total += f->s[j] * f->s[j];
        long r;
        if (rank > 0) r = rank;
        else if (energy > 0) {
            r = 0;
            while (r < f->mn && acc < energy * total) { acc += f->s[r] * f->s[r]; r++; }
        } else {
            r = (long)floor(size * (double)f->rows * f->cols / ((double)f->rows + f->cols));
        }
        if (r < 1) r = 1;
        if (r > f->mn) r = f->mn;
        acc = 0;
        for (int j = 0; j < r; j++) acc += f->s[j] * f->s[j];
        f->rank = (int)r;
        f->kept = total > 0 ? acc / total : 1;
        long before = (long)f->rows * f->cols, after = r * ((long)f->rows + f->cols);
        if (after >= before && !force) {
            size_t len = strlen(notes);
            if (len + 64 < sizeof notes)
                snprintf(notes + len, sizeof notes - len, "%s%s (rank %ld: %ld >= %ld weights)", len ? ", " : "", L->name, r, after, before);
            nf--;
            free(f->s); free(f->a); free(f->b);
            memset(f, 0, sizeof *f);
            continue;
        }
        s = rewrite_cfg(cfg, L->name, conv, f->rank);
    }
    if (s) goto done;
    if (nf == 0) {
        s = larch_fail(LARCH_ERR_INVALID, "svd: no layer to factorize%s%s", notes[0] ? ": it would not save weights in " : "", notes);
        goto done;
    }
    if ((s = larch_rw_build(cfg, &nm))) goto done;
    larch_rw_copy_same(m, nm);
    for (int j = 0; j < nf && !s; j++) {
        const factor *f = &fs[j];
        const char *name = m->layers[f->layer]->name;
        char first[LARCH_NAME_MAX + 8];
        snprintf(first, sizeof first, "%s_svd", name);
        const larch_param *pa = NULL, *pb = NULL;
        float *wa = larch_rw_param(nm, name, "weight", &pa), *wb = larch_rw_param(nm, first, "weight", &pb);
        if (!wa || !wb || pa->size != (size_t)f->rows * f->rank || pb->size != (size_t)f->rank * f->cols) {
            s = larch_fail(LARCH_ERR_SHAPE, "svd: layer '%s': the factorized model's weights have unexpected shapes", name);
            break;
        }
        for (int o = 0; o < f->rows; o++)
            for (int q = 0; q < f->rank; q++) wa[(size_t)o * f->rank + q] = (float)f->a[(size_t)o * f->mn + q];
        for (int q = 0; q < f->rank; q++)
            for (int k = 0; k < f->cols; k++) wb[(size_t)q * f->cols + k] = (float)f->b[(size_t)q * f->cols + k];
    }
    if (s) goto done;
    s = larch_rw_write(cfg, nm, out_base, out);
    if (!s) {
        size_t len = 0;
        for (int j = 0; j < nf && len < sizeof out->summary; j++) {
            const factor *f = &fs[j];
            len += (size_t)snprintf(out->summary + len, sizeof out->summary - len, "%s%s: rank %d of %d (energy %.3f, weights %ld -> %ld)",
                                    j ? ", " : "", m->layers[f->layer]->name, f->rank, f->mn, f->kept, (long)f->rows * f->cols,
                                    (long)f->rank * (f->rows + f->cols));
        }
        if (len < sizeof out->summary)
            len += (size_t)snprintf(out->summary + len, sizeof out->summary - len, "; params %ld -> %ld", larch_rw_params(m),
                                    larch_rw_params(nm));
        if (notes[0] && len < sizeof out->summary)
            snprintf(out->summary + len, sizeof out->summary - len, "; skipped (no saving): %s", notes);
    }
done:
    if (fs)
        for (int j = 0; j < nf; j++) { free(fs[j].s); free(fs[j].a); free(fs[j].b); }
    free(fs);
    free(names);
    larch_model_free(m);
    larch_model_free(nm);
    larch_node_free(cfg);
    larch_node_free(opts);
    return s;
}
