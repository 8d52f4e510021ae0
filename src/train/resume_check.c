/* resume_check.c - what a resume may change (larch_ckpt_check_resume,
 * include/larch/train.h; docs/checkpoints.md "What a resume compares").
 *
 * The checkpoint holds the resolved config it was written with. It is parsed
 * with larch's own loader, its defaults filled in as for a run, and compared
 * key by key with the resuming run's config in the sections that decide the
 * trajectory: the optimizer and its hyperparameters, the schedule, the
 * model, the losses, the regularization and the training data (not the data
 * directory, prefetching or the test-set size), plus the global batch and
 * seed from the checkpoint's own attributes. The schedule's length (train.
 * epochs, train.max_steps) counts only when the learning rate (or cycled
 * momentum) of a remaining step depends on it. A difference is allowed when
 * checkpoint.allow_changes lists its key or a prefix of it ("optim" allows
 * every optim.* key); train.epochs or train.max_steps there allows a new
 * schedule length, whose schedule then runs over the new length.
 */
#include "larch/checkpoint.h"
#include "larch/model_cfg.h"
#include "larch/model.h"
#include "larch/train.h"
#include "larch/optim_cfg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIFFS 32

typedef struct {
    int n, n_blocked;
    char text[MAX_DIFFS][240];
    int allowed[MAX_DIFFS];
    const larch_node *allow;          /* checkpoint.allow_changes (a list) */
} diffs;

/* A node as one line of flow YAML, cut to fit. */
static void flow(const larch_node *n, char *out, size_t len)
{
    if (len == 0) return;
    out[0] = '\0';
    size_t o = 0;
    if (!n) { snprintf(out, len, "(absent)"); return; }
    if (n->kind == LARCH_NODE_SCALAR) { snprintf(out, len, "%s", n->scalar[0] ? n->scalar : "\"\""); return; }
    o += (size_t)snprintf(out + o, len - o, n->kind == LARCH_NODE_MAP ? "{" : "[");
    for (int i = 0; i < n->n && o < len; i++) {
        char item[160];
        flow(n->items[i], item, sizeof item);
        if (n->kind == LARCH_NODE_MAP) o += (size_t)snprintf(out + o, len - o, "%s%s: %s", i ? ", " : "", n->keys[i], item);
        else o += (size_t)snprintf(out + o, len - o, "%s%s", i ? ", " : "", item);
    }
    if (o < len) snprintf(out + o, len - o, n->kind == LARCH_NODE_MAP ? "}" : "]");
    if (strlen(out) >= len - 1 && len > 4) memcpy(out + len - 4, "...", 4);
}

static int is_allowed(const diffs *d, const char *key)
{
    for (int i = 0; d->allow && i < d->allow->n; i++) {
        const char *a = d->allow->items[i]->scalar;
        size_t n = strlen(a);
        if (n && strncmp(key, a, n) == 0 && (key[n] == '\0' || key[n] == '.')) return 1;
    }
    return 0;
}

static void add(diffs *d, int allowed, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void add(diffs *d, int allowed, const char *fmt, ...)
{
    if (!allowed) d->n_blocked++;
    if (d->n >= MAX_DIFFS) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->text[d->n], sizeof d->text[d->n], fmt, ap);
    va_end(ap);
    d->allowed[d->n++] = allowed;
}

static void add_values(diffs *d, const char *key, const char *was, const char *now)
{
    add(d, is_allowed(d, key), "%s: %s in the checkpoint, %s now", key, was, now);
}

static int same_scalar(const char *a, const char *b)
{
    if (strcmp(a, b) == 0) return 1;
    char *ea, *eb;
    double x = strtod(a, &ea), y = strtod(b, &eb);
    if (*a && *b && !*ea && !*eb) return x == y;                  /* 0.1 = 0.10 = 1e-1 */
    static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False", "FALSE"};
    int ta = 0, tb = 0, fa = 0, fb = 0;
    for (int i = 0; i < 3; i++) {
        ta |= !strcmp(a, t[i]); tb |= !strcmp(b, t[i]);
        fa |= !strcmp(a, f[i]); fb |= !strcmp(b, f[i]);
    }
    return (ta && tb) || (fa && fb);
}

static int all_scalars(const larch_node *n)
{
    for (int i = 0; i < n->n; i++) if (n->items[i]->kind != LARCH_NODE_SCALAR) return 0;
    return 1;
}

/* Is `key` one the comparison skips (does not change the trajectory)? */
static int skipped(const char *key)
{
    static const char *const skip[] = {"data.dir", "data.prefetch", "data.synthetic.n_test", NULL};
    for (int i = 0; skip[i]; i++) if (!strcmp(key, skip[i])) return 1;
    return 0;
}

static void diff(diffs *d, const char *key, const larch_node *a, const larch_node *b)
{
    char va[100], vb[100], sub[300];
    if (skipped(key) || (!a && !b)) return;      /* absent from both: a section larch_fit's record lacks */
    if (!a || !b || a->kind != b->kind) {
        flow(a, va, sizeof va);
        flow(b, vb, sizeof vb);
        add_values(d, key, va, vb);
        return;
    }
    if (a->kind == LARCH_NODE_SCALAR) {
        if (!same_scalar(a->scalar, b->scalar)) add_values(d, key, a->scalar, b->scalar);
        return;
    }
    if (a->kind == LARCH_NODE_SEQ) {
        if (a->n != b->n || all_scalars(a) || all_scalars(b)) {
            int same = a->n == b->n;
            for (int i = 0; same && i < a->n; i++)
                same = a->items[i]->kind == LARCH_NODE_SCALAR && b->items[i]->kind == LARCH_NODE_SCALAR &&
                       same_scalar(a->items[i]->scalar, b->items[i]->scalar);
            if (same) return;
            if (all_scalars(a) && all_scalars(b)) {
                flow(a, va, sizeof va);
                flow(b, vb, sizeof vb);
            } else {
                snprintf(va, sizeof va, "%d items", a->n);
                snprintf(vb, sizeof vb, "%d items", b->n);
            }
            add_values(d, key, va, vb);
            return;
        }
        for (int i = 0; i < a->n; i++) {
            snprintf(sub, sizeof sub, "%s.%d", key, i);
            diff(d, sub, a->items[i], b->items[i]);
        }
        return;
    }
    for (int i = 0; i < a->n; i++) {
        snprintf(sub, sizeof sub, "%s.%s", key, a->keys[i]);
        diff(d, sub, a->items[i], larch_map_get(b, a->keys[i]));
    }
    for (int i = 0; i < b->n; i++) {
        if (larch_map_get(a, b->keys[i])) continue;
        snprintf(sub, sizeof sub, "%s.%s", key, b->keys[i]);
        diff(d, sub, NULL, b->items[i]);
    }
}

/* The first remaining step (from `from`) whose learning rate or momentum
 * differs between the schedule over `t_old` and over `t_new` steps; -1 when
 * none does (the schedule does not depend on its length there). */
static long first_changed_step(const larch_node *cfg, long from, long t_old, long t_new, long spe, double *lr_old,
                               double *lr_new)
{
    larch_sched a, b;
    const larch_node *sched = larch_map_get(cfg, "sched");
    double lr = larch_cfg_float(larch_map_get(cfg, "optim"), "lr");
    larch_sched_opts so;
    if (larch_sched_opts_from_cfg(sched, &so) || larch_sched_init(&a, &so, lr, t_old, spe) ||
        larch_sched_init(&b, &so, lr, t_new, spe))
        return from;
    long end = t_old < t_new ? t_old : t_new, span = end - from;
    long stride = span > 1000000 ? span / 1000000 : 1;         /* at most a million probes */
    for (long t = from; t < end; t += stride) {
        double x = larch_sched_lr(&a, t), y = larch_sched_lr(&b, t);
        if (x != y || larch_sched_momentum(&a, t) != larch_sched_momentum(&b, t)) {
            *lr_old = x;
            *lr_new = y;
            return t;
        }
    }
    return -1;
}

/* Fills in the defaults of every layer (from its type's schema), loss and
 * penalty, as building the model does: a key one config spells out and the
 * other leaves to its default compares equal. Errors are the model
 * builder's to report; here they leave the node as it is. */
static void complete_model(larch_node *cfg)
{
    static const char *const common[] = {"type", "name", "input", "inputs", NULL};
    larch_node *layers = larch_run_layers(cfg);
    for (int i = 0; layers && layers->kind == LARCH_NODE_SEQ && i < layers->n; i++) {
        larch_node *L = layers->items[i];
        const larch_node *t = L->kind == LARCH_NODE_MAP ? larch_map_get(L, "type") : NULL;
        const larch_cfg_layer *desc = t && t->kind == LARCH_NODE_SCALAR ? larch_cfg_layer_find(t->scalar) : NULL;
        if (desc && desc->keys) larch_cfg_check(L, "model", desc->keys, common);
    }
    larch_node *loss = larch_map_get(cfg, "loss"), *reg = larch_map_get(cfg, "regularization");
    if (loss && loss->kind == LARCH_NODE_MAP) larch_cfg_check(loss, "loss", larch_loss_keys, NULL);
    for (int i = 0; loss && loss->kind == LARCH_NODE_SEQ && i < loss->n; i++)
        if (loss->items[i]->kind == LARCH_NODE_MAP) larch_cfg_check(loss->items[i], "loss", larch_loss_keys, NULL);
    for (int i = 0; reg && reg->kind == LARCH_NODE_SEQ && i < reg->n; i++)
        if (reg->items[i]->kind == LARCH_NODE_MAP) larch_cfg_check(reg->items[i], "regularization", larch_penalty_keys, NULL);
    larch_clear_error();
}

/* The checkpoint's config, parsed and completed with the defaults a run
 * gets; NULL when the checkpoint has none (or it does not parse). */
static larch_node *old_config(const larch_ckpt_meta *meta, int *complete)
{
    larch_node *old = NULL;
    *complete = 0;
    if (!meta->config || !meta->config[0] || larch_cfg_parse(meta->config, "<checkpoint config>", &old)) return NULL;
    if (old->kind != LARCH_NODE_MAP) { larch_node_free(old); return NULL; }
    /* written by larch_fit from a C program's spec (no model: the program builds it): complete, every value
     * written; by this larch from a config: complete; by another version: its missing keys get today's defaults */
    if (!larch_map_get(old, "model")) {
        *complete = 1;
        return old;
    }
    *complete = larch_optim_defaults(larch_map_get(old, "optim")) == LARCH_OK &&
                larch_cfg_check(old, "", larch_run_keys, NULL) == LARCH_OK;
    complete_model(old);
    return old;
}

larch_status larch_ckpt_check_resume(const char *path, const larch_ckpt_meta *meta, const larch_node *cfg,
                                     long total_steps, long steps_per_epoch, FILE *log)
{
    diffs *d = calloc(1, sizeof *d);
    if (!d) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    const larch_node *ck = larch_map_get(cfg, "checkpoint"), *train = larch_map_get(cfg, "train");
    d->allow = larch_map_get(ck, "allow_changes");
    if (d->allow && d->allow->kind != LARCH_NODE_SEQ) d->allow = NULL;
    char va[100], vb[100];
    /* the global batch and seed: the checkpoint's own (checksummed) attributes */
    long batch = larch_cfg_int(train, "batch_size");
    if (meta->global_batch != batch)
        add(d, 0, "train.batch_size: %ld in the checkpoint, %ld now (it cannot change: the sampler position depends on it)",
            meta->global_batch, batch);
    unsigned long long seed = (unsigned long long)larch_cfg_int(train, "seed");
    if ((unsigned long long)meta->rng_seed != seed) {
        snprintf(va, sizeof va, "%llu", (unsigned long long)meta->rng_seed);
        snprintf(vb, sizeof vb, "%llu", seed);
        add_values(d, "train.seed", va, vb);
    }
    int complete = 0;
    larch_node *old = old_config(meta, &complete), *now = old ? larch_node_clone(cfg) : NULL;
    if (old && !now) {
        larch_node_free(old);
        free(d);
        return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    }
    if (now) complete_model(now);
    if (old) {
        static const char *const sections[] = {"optim", "sched", "loss", "regularization", "quantize", NULL};
        for (int i = 0; sections[i]; i++) diff(d, sections[i], larch_map_get(old, sections[i]), larch_map_get(now, sections[i]));
        static const char *const newer[] = {"prune", "distill", "adversarial", NULL};   /* sections older checkpoints lack */
        for (int i = 0; newer[i]; i++)
            if (larch_map_get(old, newer[i])) diff(d, newer[i], larch_map_get(old, newer[i]), larch_map_get(now, newer[i]));
        diff(d, "model", larch_run_layers(old), larch_run_layers(now));
        diff(d, "data", larch_map_get(old, "data"), larch_map_get(now, "data"));
    } else if (meta->optimizer[0]) {           /* no config text: what the attributes say */
        const char *name = larch_cfg_str(larch_map_get(cfg, "optim"), "name");
        if (strcmp(meta->optimizer, name) != 0) add_values(d, "optim.name", meta->optimizer, name);
    }
    /* the schedule's length */
    long t_old = meta->sched_total_steps;
    if (t_old != total_steps) {
        double lr_old = 0.0, lr_new = 0.0;
        long at = first_changed_step(cfg, meta->step, t_old, total_steps, steps_per_epoch, &lr_old, &lr_new);
        const char *sched = larch_cfg_str(larch_map_get(cfg, "sched"), "name");
        int allowed = is_allowed(d, "train.epochs") || is_allowed(d, "train.max_steps");
        if (at >= 0) {
            char keys[200] = "";
            const larch_node *ot = old ? larch_map_get(old, "train") : NULL;
            static const char *const len_keys[] = {"epochs", "max_steps"};
            for (int k = 0; k < 2; k++) {
                const larch_node *a = ot ? larch_map_get(ot, len_keys[k]) : NULL, *b = larch_map_get(train, len_keys[k]);
                if (a && b && a->kind == LARCH_NODE_SCALAR && same_scalar(a->scalar, b->scalar)) continue;
                size_t o = strlen(keys);
                snprintf(keys + o, sizeof keys - o, "%strain.%s: %s in the checkpoint, %s now", o ? ", " : "", len_keys[k],
                         a && a->kind == LARCH_NODE_SCALAR ? a->scalar : "?", b ? b->scalar : "?");
            }
            add(d, allowed, "%s (the %s schedule spans %ld steps in the checkpoint, %ld now: the learning rate of step %ld "
                "would be %.4g instead of %.4g)", keys[0] ? keys : "the schedule length", sched, t_old, total_steps, at,
                lr_new, lr_old);
        } else if (log) {
            fprintf(log, "resume: the run is now %ld steps (%ld in the checkpoint); the %s schedule of the remaining steps "
                    "does not depend on the length\n", total_steps, t_old, sched);
        }
    }
    larch_node_free(old);
    larch_node_free(now);
    larch_status s = LARCH_OK;
    if (d->n_blocked) {
        char msg[1900];
        size_t o = (size_t)snprintf(msg, sizeof msg, "checkpoint %s was written with another config; resuming would change",
                                    path);
        for (int i = 0; i < d->n && o < sizeof msg; i++)
            o += (size_t)snprintf(msg + o, sizeof msg - o, "%s %s%s", i ? ";" : ":", d->text[i],
                                  d->allowed[i] ? " (allowed)" : "");
        if (d->n_blocked > MAX_DIFFS || d->n == MAX_DIFFS) o += (o < sizeof msg ? (size_t)snprintf(msg + o, sizeof msg - o, "; ...") : 0);
        s = larch_fail(LARCH_ERR_CONFIG, "%s. Resume with the checkpoint's values, or list the intended changes in "
                       "checkpoint.allow_changes (e.g. --set 'checkpoint.allow_changes=[optim.lr, train.epochs]'; "
                       "docs/checkpoints.md)", msg);
    } else if (log) {
        for (int i = 0; i < d->n; i++) fprintf(log, "resume: allowed change (checkpoint.allow_changes): %s\n", d->text[i]);
    }
    if (log && !complete && meta->config && meta->config[0] && !s)
        fprintf(log, "resume: the checkpoint's config does not validate with this larch; keys it lacks were compared "
                "with their defaults\n");
    if (log) fflush(log);
    free(d);
    return s;
}
