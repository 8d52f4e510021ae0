/* prune_magnitude.c - the compression method `prune`: one-shot unstructured
 * magnitude pruning of a trained checkpoint (docs/compression/pruning.md).
 *
 * The model of the config is built, its tensors loaded by name from the
 * checkpoint, and the weights of its dense and conv2d layers (or those
 * `layers` selects) pruned to `sparsity`, per tensor or with one global
 * threshold (scope), by the same code as gradual pruning in training
 * (src/optim/prune.c). It writes OUT.h5, a step-0 checkpoint of the pruned
 * model whose mostly-zero tensors are stored deflated along with their masks
 * (src/io/checkpoint_masks.c), and OUT.yaml, the config with a prune
 * section (initial_sparsity = sparsity, start_step = end_step = 0) and
 * model.init_from.file = OUT.h5, so that `larch train OUT.yaml` fine-tunes
 * with the same weights held at zero: at step 0 the masks are recomputed from |w|,
 * which selects exactly the zeros the method wrote. The summary line gives
 * the sparsity and the bytes of OUT.h5 against the same weights written
 * dense and without masks, as any checkpoint (measured: the file is written
 * both ways). */
#include "compress/methods.h"
#include "compress/rewrite.h"
#include "larch/checkpoint.h"
#include "larch/train.h"
#include "optim/prune.h"
#include "io/ckpt_sparse.h"
#include "nn/model_internal.h"   /* model->prune_mask */

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const larch_key larch_compress_prune_keys[] = {
    {"sparsity", LARCH_T_FLOAT, "0.9", 0.0, 0.999, NULL, NULL, "fraction of the selected weights set to zero"},
    {"scope", LARCH_T_ENUM, "layer", 0, 0, "layer|global", NULL,
     "layer: every tensor to the sparsity; global: one magnitude threshold over all selected tensors"},
    {"layers", LARCH_T_STRINGS, "[]", 0, 0, NULL, NULL, "globs on layer names (dense and conv2d; [] = all)"},
    {0}};

/* model.init_from.file = the written checkpoint, so that `larch train
 * OUT.yaml` fine-tunes the pruned weights (a layer list becomes the map
 * {layers: [...], init_from: {file: ...}}). */
static larch_status init_from_out(larch_node *cfg, const char *ckpt)
{
    larch_node *model = larch_map_get(cfg, "model");
    if (model && model->kind == LARCH_NODE_SEQ) {
        larch_node *wrap = NULL;
        larch_status s = larch_cfg_parse("{layers: [], init_from: {file: \"\"}}", "prune", &wrap);
        if (s) return s;
        for (int i = 0; i < cfg->n; i++)
            if (!strcmp(cfg->keys[i], "model")) {
                larch_node_free(wrap->items[0]);
                wrap->items[0] = model;
                cfg->items[i] = wrap;
                break;
            }
    }
    char set[8400], cwd[4096] = "";
    if (ckpt[0] != '/' && !getcwd(cwd, sizeof cwd)) cwd[0] = '\0';   /* absolute: OUT.yaml works from anywhere */
    snprintf(set, sizeof set, "model.init_from.file=\"%s%s%s\"", cwd, cwd[0] ? "/" : "", ckpt);
    return larch_cfg_set(cfg, set);
}

static long long file_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

larch_status larch_compress_prune(const larch_compress_src *src, larch_node *opts, const char *out_base,
                                  larch_compress_out *out)
{
    memset(out, 0, sizeof *out);
    larch_node *o = opts ? larch_node_clone(opts) : NULL;
    larch_status s = LARCH_OK;
    if (!o) s = larch_cfg_parse("{}", "--method prune", &o);
    if (!s) s = larch_cfg_check(o, "prune", larch_compress_prune_keys, NULL);
    if (s) { larch_node_free(o); return s; }
    larch_prune_opts po = LARCH_PRUNE_DEFAULTS;
    po.sparsity = po.initial_sparsity = larch_cfg_float(o, "sparsity");
    po.start_step = po.end_step = 0;
    po.every = 1;
    po.global = strcmp(larch_cfg_str(o, "scope"), "global") == 0;
    const larch_node *ls = larch_map_get(o, "layers");
    const char *names[64];
    po.n_layers = ls && ls->kind == LARCH_NODE_SEQ ? ls->n : 0;
    if (po.n_layers > 64) s = larch_fail(LARCH_ERR_INVALID, "--method prune: layers: at most 64 globs (got %d)", po.n_layers);
    for (int i = 0; !s && i < po.n_layers; i++) names[i] = ls->items[i]->scalar;
    po.layers = names;

    larch_node *cfg = larch_node_clone(src->cfg);
    larch_model *m = NULL;
    larch_pruner *p = NULL;
    larch_shape in;
    int classes;
    if (!s && !cfg) s = larch_fail(LARCH_ERR_NOMEM, "prune: out of memory");
    if (!s) s = larch_run_input(cfg, &in, &classes);
    if (!s) s = larch_model_build(&m, in, larch_run_layers(cfg), larch_map_get(cfg, "loss"),
                                  larch_map_get(cfg, "regularization"), 0);
    larch_init_map map;
    memset(&map, 0, sizeof map);
    map.buffers = 1;
    larch_init_report rep;
    memset(&rep, 0, sizeof rep);
    if (!s) s = larch_ckpt_init_from(src->checkpoint, m, &map, &rep);
    if (!s && (rep.fresh > 0 || rep.skipped > 0))
        s = larch_fail(LARCH_ERR_SHAPE, "prune: checkpoint %s lacks %d tensor(s) of the config's model (a checkpoint of "
                       "another model?)", src->checkpoint, rep.fresh + rep.skipped);
    larch_init_report_free(&rep);
    if (!s) s = larch_pruner_create(&p, m, &po, 1);
    if (!s) larch_pruner_update(p, po.sparsity, NULL);

    /* OUT.yaml: the config, fine-tuned with the masks held */
    char set[4200];
    const char *scope = po.global ? "global" : "layer";
    double sp = po.sparsity;
    snprintf(set, sizeof set, "prune.sparsity=%.15g", sp);
    if (!s) s = larch_cfg_set(cfg, set);
    snprintf(set, sizeof set, "prune.initial_sparsity=%.15g", sp);
    if (!s) s = larch_cfg_set(cfg, set);
    if (!s) s = larch_cfg_set(cfg, "prune.start_step=0");
    if (!s) s = larch_cfg_set(cfg, "prune.end_step=0");
    snprintf(set, sizeof set, "prune.scope=%s", scope);
    if (!s) s = larch_cfg_set(cfg, set);
    size_t n = (size_t)snprintf(set, sizeof set, "prune.layers=[");
    for (int i = 0; i < po.n_layers && n < sizeof set; i++)
        n += (size_t)snprintf(set + n, sizeof set - n, "%s\"%s\"", i ? ", " : "", names[i]);
    if (n < sizeof set) snprintf(set + n, sizeof set - n, "]");
    if (!s) s = larch_cfg_set(cfg, set);
    snprintf(out->config_path, sizeof out->config_path, "%s.yaml", out_base);
    snprintf(out->checkpoint, sizeof out->checkpoint, "%s.h5", out_base);
    if (!s) s = init_from_out(cfg, out->checkpoint);
    if (!s) s = larch_cfg_check(cfg, "", larch_run_keys, NULL);
    if (!s) s = larch_cfg_save(cfg, out->config_path);
    /* OUT.h5, and the same file dense for the record */
    long long dense = -1, sparse = -1;
    if (!s) {
        char dpath[4200];
        snprintf(dpath, sizeof dpath, "%s.dense-tmp.h5", out_base);
        int was = larch_ckpt_sparse_storage(0);
        m->prune_mask = NULL;                       /* the unpruned file: no masks either */
        s = larch_rw_save_checkpoint(dpath, m, cfg);
        m->prune_mask = p->mask;
        larch_ckpt_sparse_storage(was);
        dense = file_bytes(dpath);
        unlink(dpath);
    }
    if (!s) s = larch_rw_save_checkpoint(out->checkpoint, m, cfg);
    if (!s) {
        sparse = file_bytes(out->checkpoint);
        snprintf(out->summary, sizeof out->summary,
                 "%s sparsity %.3f over %d tensor(s) (%zu of %zu weights zero); %lld bytes on disk, %lld written dense (%.2fx smaller)",
                 scope, larch_pruner_sparsity(p), p->n_tensors, (size_t)(larch_pruner_sparsity(p) * (double)p->n_values + 0.5),
                 p->n_values, sparse, dense, sparse > 0 ? (double)dense / (double)sparse : 0.0);
        out->cfg = cfg;
        cfg = NULL;
    }
    larch_pruner_free(p);
    larch_model_free(m);
    larch_node_free(cfg);
    larch_node_free(o);
    return s;
}
