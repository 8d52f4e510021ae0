/* rewrite.c - building, editing, copying and writing models for the
 * compression methods that change layers (rewrite.h). */
#include "compress/rewrite.h"
#include "larch/checkpoint.h"
#include "larch/comm.h"
#include "larch/train.h"
#include "nn/model_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

larch_status larch_rw_build(const larch_node *cfg, larch_model **out)
{
    *out = NULL;
    larch_shape shape;
    int classes;
    larch_status s = larch_run_input(cfg, &shape, &classes);
    if (s) return s;
    /* larch_model_build validates (fills defaults in) its nodes: a copy */
    larch_node *c = larch_node_clone(cfg);
    if (!c) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    s = larch_model_build(out, shape, larch_run_layers(c), larch_map_get(c, "loss"), larch_map_get(c, "regularization"), 0);
    larch_node_free(c);
    return s;
}

larch_status larch_rw_load(const larch_node *cfg, const char *checkpoint, larch_model **out)
{
    larch_status s = larch_rw_build(cfg, out);
    if (s) return s;
    larch_init_map map;
    memset(&map, 0, sizeof map);
    map.buffers = 1;
    larch_init_report rep;
    memset(&rep, 0, sizeof rep);
    s = larch_ckpt_init_from(checkpoint, *out, &map, &rep);
    if (!s && rep.fresh) {
        /* name the first tensor the checkpoint lacked */
        const char *line = rep.text ? strstr(rep.text, "fresh") : NULL;
        const char *end = line ? strchr(line, '\n') : NULL;
        s = larch_fail(LARCH_ERR_FORMAT, "checkpoint %s does not hold the config's model: %d tensor(s) missing (%.*s)",
                       checkpoint, rep.fresh, line ? (int)(end ? end - line : (long)strlen(line)) : 0, line ? line : "");
    }
    larch_init_report_free(&rep);
    if (s) {
        larch_model_free(*out);
        *out = NULL;
    }
    return s;
}

larch_node *larch_rw_layer_node(const larch_node *cfg, const char *name, int *pos)
{
    if (pos) *pos = -1;
    larch_node *layers = larch_run_layers(cfg);
    if (!layers || layers->kind != LARCH_NODE_SEQ) return NULL;
    for (int i = 0; i < layers->n; i++) {
        larch_node *nm = larch_map_get(layers->items[i], "name");
        if (nm && nm->scalar && !strcmp(nm->scalar, name)) {
            if (pos) *pos = i;
            return layers->items[i];
        }
    }
    return NULL;
}

larch_status larch_rw_insert_layer(larch_node *cfg, int pos, larch_node *layer)
{
    larch_node *seq = larch_run_layers(cfg);
    if (!seq || seq->kind != LARCH_NODE_SEQ || pos < 0 || pos > seq->n)
        return larch_fail(LARCH_ERR_INVALID, "model: cannot insert a layer at position %d", pos);
    larch_node **items = realloc(seq->items, (size_t)(seq->n + 1) * sizeof *items);
    if (!items) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    seq->items = items;
    memmove(items + pos + 1, items + pos, (size_t)(seq->n - pos) * sizeof *items);
    items[pos] = layer;
    seq->n++;
    if (seq->cap < seq->n) seq->cap = seq->n;
    return LARCH_OK;
}

void larch_rw_map_remove(larch_node *map, const char *key)
{
    if (!map || map->kind != LARCH_NODE_MAP) return;
    for (int i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i], key)) continue;
        larch_node_free(map->items[i]);
        free(map->keys[i]);
        int rest = map->n - i - 1;
        memmove(map->items + i, map->items + i + 1, (size_t)rest * sizeof *map->items);
        memmove(map->keys + i, map->keys + i + 1, (size_t)rest * sizeof *map->keys);
        if (map->key_lines) memmove(map->key_lines + i, map->key_lines + i + 1, (size_t)rest * sizeof *map->key_lines);
        map->n--;
        return;
    }
}

larch_status larch_rw_set_int(larch_node *layer, const char *key, long v)
{
    char text[32];
    snprintf(text, sizeof text, "%ld", v);
    return larch_map_set_scalar(layer, key, text);
}

static int find_param(const larch_model *m, const char *name)
{
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, name)) return i;
    return -1;
}

static int find_buffer(const larch_model *m, const char *name)
{
    for (int i = 0; i < m->n_buffers; i++)
        if (!strcmp(m->buffers[i].name, name)) return i;
    return -1;
}

int larch_rw_copy_same(const larch_model *src, larch_model *dst)
{
    int left = 0;
    for (int i = 0; i < dst->n_params; i++) {
        const larch_param *d = &dst->params[i];
        int j = find_param(src, d->name);
        const larch_param *p = j >= 0 ? &src->params[j] : NULL;
        if (!p || p->ndim != d->ndim || memcmp(p->shape, d->shape, (size_t)d->ndim * sizeof *d->shape)) {
            left++;
            continue;
        }
        memcpy(dst->param + d->offset, src->param + p->offset, d->size * sizeof(float));
    }
    for (int i = 0; i < dst->n_buffers; i++) {
        const larch_buffer *d = &dst->buffers[i];
        int j = find_buffer(src, d->name);
        if (j < 0 || src->buffers[j].size != d->size) {
            left++;
            continue;
        }
        memcpy(dst->buffer + d->offset, src->buffer + src->buffers[j].offset, d->size * sizeof(float));
    }
    return left;
}

float *larch_rw_param(const larch_model *m, const char *layer, const char *tensor, const larch_param **desc)
{
    char name[2 * LARCH_NAME_MAX + 8];
    snprintf(name, sizeof name, "%s.%s", layer, tensor);
    int i = find_param(m, name);
    if (desc) *desc = i >= 0 ? &m->params[i] : NULL;
    return i >= 0 ? m->param + m->params[i].offset : NULL;
}

float *larch_rw_buffer(const larch_model *m, const char *layer, const char *tensor, size_t *size)
{
    char name[2 * LARCH_NAME_MAX + 8];
    snprintf(name, sizeof name, "%s.%s", layer, tensor);
    int i = find_buffer(m, name);
    if (size) *size = i >= 0 ? m->buffers[i].size : 0;
    return i >= 0 ? m->buffer + m->buffers[i].offset : NULL;
}

int larch_rw_consumers(const larch_model *m, int node, int *layers, int cap)
{
    int n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const larch_layer *L = m->layers[i];
        for (int k = 0; k < L->n_in; k++)
            if (L->in_node[k] == node) {
                if (n < cap) layers[n] = i;
                n++;
                break;
            }
    }
    return n;
}

int larch_rw_node_scored(const larch_model *m, int node)
{
    for (int k = 0; k < m->n_losses; k++)
        if (m->losses[k].node == node) return 1;
    return 0;
}

double larch_rw_macs(const larch_model *m)
{
    double macs = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const larch_layer *L = m->layers[i];
        const char *t = L->ops->type;
        if (strcmp(t, "dense") && strcmp(t, "conv2d")) continue;
        const larch_param *w = &m->params[L->first_param];   /* weight: (out, in) or (cout, kh, kw, cin) */
        macs += (double)L->out_shape.h * L->out_shape.w * (double)w->size;
    }
    return macs;
}

long larch_rw_params(const larch_model *m)
{
    long n = 0;
    for (int i = 0; i < m->n_params; i++) n += (long)m->params[i].size;
    return n;
}

larch_status larch_rw_save_checkpoint(const char *path, const larch_model *m, const larch_node *cfg)
{
    larch_comm comm;
    larch_status s = larch_comm_init(&comm, NULL, NULL);
    if (s) return s;
    s = larch_ckpt_save_model(path, &comm, m, cfg, NULL);
    larch_comm_finalize(&comm);
    return s;
}

larch_status larch_rw_write(larch_node *cfg, const larch_model *m, const char *out_base, larch_compress_out *out)
{
    larch_node *model = larch_map_get(cfg, "model");
    if (model && model->kind == LARCH_NODE_MAP) larch_rw_map_remove(model, "init_from");
    out->cfg = NULL;
    if (model && model->kind == LARCH_NODE_SEQ) {
        /* `model: {layers: [...]}`, so that --set model.init_from=FILE works */
        larch_node *map = NULL;
        larch_status s = larch_cfg_parse("{layers: []}", "<compress>", &map);
        if (s) return s;
        larch_node_free(map->items[0]);
        map->items[0] = model;
        for (int i = 0; i < cfg->n; i++)
            if (cfg->items[i] == model) cfg->items[i] = map;
    }
    if (snprintf(out->config_path, sizeof out->config_path, "%s.yaml", out_base) >= (int)sizeof out->config_path ||
        snprintf(out->checkpoint, sizeof out->checkpoint, "%s.h5", out_base) >= (int)sizeof out->checkpoint)
        return larch_fail(LARCH_ERR_INVALID, "output name %s: too long", out_base);
    larch_status s = larch_cfg_save(cfg, out->config_path);
    /* the config as a run reads it: validated, defaults filled in */
    if (!s) s = larch_run_load(out->config_path, NULL, 0, &out->cfg);
    if (!s) s = larch_rw_save_checkpoint(out->checkpoint, m, out->cfg);
    if (s) {   /* nothing half-written stays */
        remove(out->config_path);
        larch_node_free(out->cfg);
        out->cfg = NULL;
    }
    return s;
}

int larch_rw_opt_layers(const larch_node *opts, const char ***names)
{
    *names = NULL;
    const larch_node *l = opts ? larch_map_get(opts, "layers") : NULL;
    if (!l || l->kind != LARCH_NODE_SEQ || l->n == 0) return 0;
    const char **v = malloc((size_t)l->n * sizeof *v);
    if (!v) return -1;
    for (int i = 0; i < l->n; i++) v[i] = l->items[i]->scalar ? l->items[i]->scalar : "";
    *names = v;
    return l->n;
}
