/* prune.c - unstructured magnitude pruning (see prune.h and
 * docs/compression/pruning.md).
 *
 * A mask byte per value of the flat parameter buffer (1 outside the pruned
 * tensors). An update ranks the values of a tensor (or of all selected
 * tensors, scope global) by the key (bits of |w|) << 32 | flat position:
 * the bits of a non-negative float order like its value, and the position
 * breaks ties, so the keys are distinct and the k smallest are one exact,
 * deterministic set; a quickselect (median-of-three pivots, no randomness)
 * finds the k-th key in linear time on the scratch array allocated at
 * create. */
#include "optim/prune.h"
#include "nn/model_internal.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

double larch_prune_schedule(double s_i, double s_f, long t0, long end, long every, long t)
{
    if (t < t0) return 0.0;
    long n = every > 0 ? (end - t0) / every : 0;
    if (n <= 0 || t >= t0 + n * every) return s_f;
    double r = 1.0 - (double)(t - t0) / ((double)n * (double)every);
    return s_f + (s_i - s_f) * r * r * r;
}

static int prunable(const larch_model *m, const larch_param *p)
{
    const char *type = m->layers[p->layer]->ops->type;
    return p->role == LARCH_ROLE_WEIGHT && (!strcmp(type, "dense") || !strcmp(type, "conv2d"));
}

larch_status larch_pruner_create(larch_pruner **out, larch_model *m, const larch_prune_opts *o, long total_steps)
{
    *out = NULL;
    if (!(o->sparsity >= 0.0 && o->sparsity <= 0.999))
        return larch_fail(LARCH_ERR_INVALID, "prune.sparsity = %g is out of range [0, 0.999]", o->sparsity);
    if (!(o->initial_sparsity >= 0.0 && o->initial_sparsity <= o->sparsity))
        return larch_fail(LARCH_ERR_INVALID, "prune.initial_sparsity = %g is out of range [0, prune.sparsity = %g]",
                          o->initial_sparsity, o->sparsity);
    if (o->start_step < 0) return larch_fail(LARCH_ERR_INVALID, "prune.start_step = %ld is negative", o->start_step);
    if (o->every < 1) return larch_fail(LARCH_ERR_INVALID, "prune.every = %ld: at least 1 step", o->every);
    long end = o->end_step;
    if (end == -1) end = total_steps * 3 / 4 > o->start_step ? total_steps * 3 / 4 : o->start_step;
    if (end < o->start_step)
        return larch_fail(LARCH_ERR_INVALID, "prune.end_step = %ld is before prune.start_step = %ld (-1: three quarters "
                          "of the run)", o->end_step, o->start_step);
    if (o->n_layers < 0 || (o->n_layers > 0 && !o->layers))
        return larch_fail(LARCH_ERR_INVALID, "prune.layers: %d name(s) but no array", o->n_layers);
    for (int k = 0; k < o->n_layers; k++) {           /* every glob selects something */
        int hit = 0;
        for (int i = 0; !hit && i < m->n_params; i++)
            hit = prunable(m, &m->params[i]) && fnmatch(o->layers[k], m->layers[m->params[i].layer]->name, 0) == 0;
        if (!hit)
            return larch_fail(LARCH_ERR_INVALID, "prune.layers: '%s' matches no dense or conv2d layer of the model",
                              o->layers[k]);
    }
    larch_pruner *p = calloc(1, sizeof *p);
    if (!p) return larch_fail(LARCH_ERR_NOMEM, "prune: out of memory");
    p->m = m;
    p->o = *o;
    p->o.end_step = end;
    p->tensor = calloc((size_t)(m->n_params > 0 ? m->n_params : 1), sizeof *p->tensor);
    for (int i = 0; p->tensor && i < m->n_params; i++) {
        const larch_param *q = &m->params[i];
        if (!prunable(m, q)) continue;
        int sel = o->n_layers == 0;
        for (int k = 0; !sel && k < o->n_layers; k++) sel = fnmatch(o->layers[k], m->layers[q->layer]->name, 0) == 0;
        if (!sel) continue;
        p->tensor[p->n_tensors++] = i;
        p->n_values += q->size;
        if (q->size > p->max_size) p->max_size = q->size;
    }
    if (p->tensor && p->n_tensors == 0) {
        larch_pruner_free(p);
        return larch_fail(LARCH_ERR_INVALID, "prune: the model has no dense or conv2d weight to prune");
    }
    p->mask = p->tensor ? malloc(m->n_floats ? m->n_floats : 1) : NULL;
    p->keys = p->mask ? malloc((o->global ? p->n_values : p->max_size) * sizeof *p->keys) : NULL;
    if (!p->keys) {
        size_t n = p->n_values;
        larch_pruner_free(p);
        return larch_fail(LARCH_ERR_NOMEM, "prune: out of memory for the masks of %zu values", n);
    }
    memset(p->mask, 1, m->n_floats);
    m->prune_mask = p->mask;
    *out = p;
    return LARCH_OK;
}

void larch_pruner_free(larch_pruner *p)
{
    if (!p) return;
    if (p->m && p->m->prune_mask == p->mask) p->m->prune_mask = NULL;
    free(p->tensor);
    free(p->mask);
    free(p->keys);
    free(p);
}

int larch_pruner_due(const larch_pruner *p, long step)
{
    return step >= p->o.start_step && step <= p->o.end_step && (step - p->o.start_step) % p->o.every == 0;
}

double larch_pruner_target(const larch_pruner *p, long step)
{
    return larch_prune_schedule(p->o.initial_sparsity, p->o.sparsity, p->o.start_step, p->o.end_step, p->o.every, step);
}

static inline uint64_t key_of(float w, size_t pos)
{
    float a = fabsf(w);
    uint32_t bits;
    memcpy(&bits, &a, sizeof bits);
    return (uint64_t)bits << 32 | (uint64_t)(uint32_t)pos;
}

static inline void swap64(uint64_t *a, uint64_t *b) { uint64_t t = *a; *a = *b; *b = t; }

/* The k-th smallest (0-based) of the distinct keys a[0..n). */
static uint64_t select_kth(uint64_t *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1;
    while (hi > lo) {
        size_t mid = lo + (hi - lo) / 2;            /* median of three to a[hi] */
        if (a[mid] < a[lo]) swap64(&a[mid], &a[lo]);
        if (a[hi] < a[lo]) swap64(&a[hi], &a[lo]);
        if (a[mid] < a[hi]) swap64(&a[mid], &a[hi]);
        uint64_t pivot = a[hi];
        size_t st = lo;
        for (size_t i = lo; i < hi; i++)
            if (a[i] < pivot) swap64(&a[i], &a[st++]);
        swap64(&a[st], &a[hi]);
        if (st == k) return a[st];
        if (k < st) hi = st - 1;
        else lo = st + 1;
    }
    return a[lo];
}

/* Masks the values of the tensors [t0, t1) of p->tensor whose keys are
 * below the k-th smallest of them. */
static void mask_below(larch_pruner *p, int t0, int t1, size_t k)
{
    larch_model *m = p->m;
    size_t n = 0;
    for (int t = t0; t < t1; t++) {
        const larch_param *q = &m->params[p->tensor[t]];
        for (size_t j = 0; j < q->size; j++) p->keys[n++] = key_of(m->param[q->offset + j], q->offset + j);
    }
    uint64_t kth = k == 0 ? 0 : k >= n ? UINT64_MAX : select_kth(p->keys, n, k);
    for (int t = t0; t < t1; t++) {
        const larch_param *q = &m->params[p->tensor[t]];
        for (size_t j = 0; j < q->size; j++) {
            size_t i = q->offset + j;
            p->mask[i] = k == 0 ? 1 : k >= n ? 0 : key_of(m->param[i], i) >= kth;
        }
    }
}

static size_t count_of(double s, size_t n)
{
    double k = floor(s * (double)n + 0.5);
    return k <= 0 ? 0 : k >= (double)n ? n : (size_t)k;
}

void larch_pruner_update(larch_pruner *p, double s, larch_optim *o)
{
    p->target = s;
    if (p->o.global) mask_below(p, 0, p->n_tensors, count_of(s, p->n_values));
    else
        for (int t = 0; t < p->n_tensors; t++) mask_below(p, t, t + 1, count_of(s, p->m->params[p->tensor[t]].size));
    larch_pruner_apply(p);
    if (!o) return;
    larch_model *m = p->m;
    for (int t = 0; t < p->n_tensors; t++) {           /* the state of this rank's slice [lo, hi) */
        int i = p->tensor[t];
        if (!o->state_offset || o->state_offset[i] == (size_t)-1) continue;
        const larch_param *q = &m->params[i];
        size_t a = q->offset > o->lo ? q->offset : o->lo, z = q->offset + q->size < o->hi ? q->offset + q->size : o->hi;
        for (int k = 0; k < o->n_state; k++) {
            float *st = o->state[k] + o->state_offset[i];   /* value a of the flat buffer */
            for (size_t j = a; j < z; j++)
                if (!p->mask[j]) st[j - a] = 0.0f;
        }
    }
}

void larch_pruner_apply(larch_pruner *p)
{
    larch_model *m = p->m;
    for (int t = 0; t < p->n_tensors; t++) {
        const larch_param *q = &m->params[p->tensor[t]];
        float *w = m->param + q->offset;
        const unsigned char *mk = p->mask + q->offset;
        for (size_t j = 0; j < q->size; j++) w[j] = mk[j] ? w[j] : 0.0f;
    }
}

void larch_pruner_mask_grad(larch_pruner *p)
{
    larch_model *m = p->m;
    for (int t = 0; t < p->n_tensors; t++) {
        const larch_param *q = &m->params[p->tensor[t]];
        float *g = m->grad + q->offset;
        const unsigned char *mk = p->mask + q->offset;
        for (size_t j = 0; j < q->size; j++) g[j] = mk[j] ? g[j] : 0.0f;
    }
}

double larch_pruner_sparsity(const larch_pruner *p)
{
    size_t zero = 0;
    for (int t = 0; t < p->n_tensors; t++) {
        const larch_param *q = &p->m->params[p->tensor[t]];
        for (size_t j = 0; j < q->size; j++) zero += p->mask[q->offset + j] == 0;
    }
    return p->n_values ? (double)zero / (double)p->n_values : 0.0;
}
