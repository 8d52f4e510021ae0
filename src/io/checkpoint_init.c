/* checkpoint_init.c - model.init_from: initializing a model from another
 * model's checkpoint by tensor name (transfer learning, backbones), with
 * prefix renames, include/exclude globs and an optional skip of shape
 * mismatches; see include/larch/checkpoint.h and docs/transfer.md.
 *
 * Only parameters and buffers are read, never optimizer state: a fine-tune
 * starts its optimizer fresh. Each model tensor ends up in one of three
 * states, all listed in the report: loaded, skipped (shape mismatch with
 * skip_mismatch) or fresh (excluded, or absent from the checkpoint, so it
 * keeps its initialization). Checkpoint parameters that no model tensor
 * used are counted too, since a typo in a rename shows up there first.
 */
#include "io/ckpt_internal.h"
#include "io/ckpt_quant.h"
#include "nn/model_internal.h"   /* the model's layout (library-internal) */

#include <fnmatch.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

larch_status larch_init_map_from_cfg(const larch_node *init, larch_init_map *map)
{
    memset(map, 0, sizeof *map);
    if (!init) return LARCH_OK;
    const larch_node *rn = larch_map_get(init, "rename"), *inc = larch_map_get(init, "include"),
                     *exc = larch_map_get(init, "exclude");
    if (rn->n > LARCH_INIT_MAX_RULES || inc->n > LARCH_INIT_MAX_RULES || exc->n > LARCH_INIT_MAX_RULES)
        return larch_fail(LARCH_ERR_CONFIG, "model.init_from: at most %d rename rules, include and exclude patterns each",
                          LARCH_INIT_MAX_RULES);
    for (int i = 0; i < rn->n; i++) {
        map->rename_from[i] = rn->keys[i];
        map->rename_to[i] = rn->items[i]->scalar;
    }
    map->n_rename = rn->n;
    for (int i = 0; i < inc->n; i++) map->include[i] = inc->items[i]->scalar;
    map->n_include = inc->n;
    for (int i = 0; i < exc->n; i++) map->exclude[i] = exc->items[i]->scalar;
    map->n_exclude = exc->n;
    map->skip_mismatch = larch_cfg_bool(init, "skip_mismatch");
    map->buffers = larch_cfg_bool(init, "buffers");
    return LARCH_OK;
}

void larch_init_report_free(larch_init_report *rep)
{
    free(rep->text);
    rep->text = NULL;
}

typedef struct {
    const char *path;
    const larch_init_map *map;
    larch_init_report *rep;
    FILE *text;
    char **used;             /* checkpoint parameter names used ("<layer>/<tensor>") */
    int n_used;
} init_ctx;

static int selected(const larch_init_map *map, const char *name)
{
    int in = map->n_include == 0;
    for (int i = 0; i < map->n_include && !in; i++) in = fnmatch(map->include[i], name, 0) == 0;
    for (int i = 0; i < map->n_exclude && in; i++) in = fnmatch(map->exclude[i], name, 0) != 0;
    return in;
}

/* The checkpoint name ("<layer>/<tensor>") model tensor `name` comes from. */
static void source_of(const larch_init_map *map, const char *name, char *out, size_t len)
{
    const char *rest = name, *from = "";
    for (int i = 0; i < map->n_rename; i++) {
        size_t n = strlen(map->rename_to[i]);
        if (strncmp(name, map->rename_to[i], n) == 0) { from = map->rename_from[i]; rest = name + n; break; }
    }
    snprintf(out, len, "%s%s", from, rest);
    char *dot = strchr(out, '.');
    if (dot) *dot = '/';
}

/* One model tensor (a parameter, or a buffer when dims is 1-D of size n). */
static larch_status init_tensor(init_ctx *c, hid_t file, const char *group, const char *name, int ndim,
                                const hsize_t *dims, float *dst)
{
    char src[300], dpath[320], have[128], want[128];
    if (!selected(c->map, name)) {
        c->rep->fresh++;
        fprintf(c->text, "fresh    %s (excluded)\n", name);
        return LARCH_OK;
    }
    source_of(c->map, name, src, sizeof src);
    snprintf(dpath, sizeof dpath, "/%s/%s", group, src);
    int fnd;
    hsize_t fdims[CKPT_MAX_DIMS];
    larch_status s = strchr(src, '/') ? larch_ckpt_tensor_shape(file, c->path, dpath, &fnd, fdims) : LARCH_OK;
    if (!s && strchr(src, '/') && fnd == 0 && !strcmp(group, "params") &&   /* a 16-bit weight (checkpoint_quant.c) */
        !(s = larch_ckpt_quant_init_path(file, c->path, src, dpath, sizeof dpath)) && !strncmp(dpath, "/quant/", 7))
        s = larch_ckpt_tensor_shape(file, c->path, dpath, &fnd, fdims);
    if (s) return s;
    if (!strchr(src, '/') || fnd == 0) {
        c->rep->fresh++;
        fprintf(c->text, "fresh    %s (no %s in the checkpoint)\n", name, dpath);
        return LARCH_OK;
    }
    int same = fnd == ndim;
    for (int k = 0; same && k < ndim; k++) same = fdims[k] == dims[k];
    if (!same) {
        larch_ckpt_fmt_shape(have, sizeof have, fnd, fdims);
        larch_ckpt_fmt_shape(want, sizeof want, ndim, dims);
        if (!c->map->skip_mismatch)
            return larch_fail(LARCH_ERR_SHAPE, "model.init_from %s: tensor %s has shape %s but the model's %s has shape %s "
                              "(exclude it, or set model.init_from.skip_mismatch: true)", c->path, dpath, have, name, want);
        c->rep->skipped++;
        fprintf(c->text, "skipped  %s: %s in the checkpoint, %s in the model\n", name, have, want);
        return LARCH_OK;
    }
    size_t n = 1;
    for (int k = 0; k < ndim; k++) n *= dims[k];
    if ((s = larch_ckpt_read_tensor(file, c->path, dpath, ndim, dims, 0, n, dst))) return s;
    c->rep->loaded++;
    c->rep->loaded_values += n;
    fprintf(c->text, "loaded   %s <- %s\n", name, dpath);
    if (strcmp(group, "params") == 0) {
        char **u = realloc(c->used, (size_t)(c->n_used + 1) * sizeof *u);
        if (!u || !(u[c->n_used] = strdup(src))) {
            if (u) c->used = u;
            return larch_fail(LARCH_ERR_NOMEM, "out of memory");
        }
        c->used = u;
        c->n_used++;
    }
    return LARCH_OK;
}

/* Counts (and lists) checkpoint parameters no model tensor took. */
static herr_t find_unused(hid_t g, const char *name, const H5L_info_t *info, void *data)
{
    (void)g;
    (void)info;
    init_ctx *c = data;
    if (!strchr(name, '/')) return 0;                  /* a layer group */
    for (int i = 0; i < c->n_used; i++)
        if (strcmp(c->used[i], name) == 0) return 0;
    c->rep->unused++;
    fprintf(c->text, "unused   /params/%s (in the checkpoint, not taken by the model)\n", name);
    return 0;
}

larch_status larch_ckpt_init_from(const char *path, larch_model *m, const larch_init_map *map, larch_init_report *rep)
{
    memset(rep, 0, sizeof *rep);
    size_t len = 0;
    init_ctx c = {path, map, rep, open_memstream(&rep->text, &len), NULL, 0};
    if (!c.text) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    larch_ckpt_meta meta;
    hid_t file = -1;
    hsize_t dims[CKPT_MAX_DIMS];
    larch_status s = larch_ckpt_open_meta(path, &file, &meta);
    if (s) larch_fail_context(s, "model.init_from");
    for (int i = 0; !s && i < m->n_params; i++) {
        const larch_param *p = &m->params[i];
        int nd = larch_ckpt_param_dims(p, dims);
        s = init_tensor(&c, file, "params", p->name, nd, dims, m->param + p->offset);
    }
    for (int i = 0; !s && map->buffers && i < m->n_buffers; i++) {
        const larch_buffer *b = &m->buffers[i];
        dims[0] = b->size;
        s = init_tensor(&c, file, "buffers", b->name, 1, dims, m->buffer + b->offset);
    }
    if (!s) {
        hid_t g = H5Gopen2(file, "/params", H5P_DEFAULT);
        if (g >= 0) { H5Lvisit(g, H5_INDEX_NAME, H5_ITER_INC, find_unused, &c); H5Gclose(g); }
    }
    if (file >= 0) H5Fclose(file);
    larch_ckpt_meta_free(&meta);
    for (int i = 0; i < c.n_used; i++) free(c.used[i]);
    free(c.used);
    fclose(c.text);
    if (s) larch_init_report_free(rep);
    return s;
}
