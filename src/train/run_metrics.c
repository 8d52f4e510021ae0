/* run_metrics.c - reading metrics.jsonl back (see run_metrics.h). */
#include "train/run_metrics.h"

#include <json-c/json.h>

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double num(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v) || !v) return NAN;   /* absent or null */
    json_type t = json_object_get_type(v);
    if (t != json_type_double && t != json_type_int) return NAN;
    return json_object_get_double(v);
}

static int task_index(larch_run_metrics *m, const char *name)
{
    for (int k = 0; k < m->n_tasks; k++)
        if (!strcmp(m->tasks[k], name)) return k;
    if (m->n_tasks >= LARCH_RM_TASKS) return -1;
    snprintf(m->tasks[m->n_tasks], sizeof m->tasks[0], "%s", name);
    return m->n_tasks++;
}

static void read_phases(json_object *o, double *out)
{
    for (int k = 0; k < LARCH_PH_N; k++) {
        double v = num(o, larch_phase_keys[k]);
        out[k] = isfinite(v) ? v : 0.0;
    }
}

static int add_train(larch_run_metrics *m, json_object *o, size_t *cap)
{
    if ((size_t)m->n_train == *cap) {
        size_t nc = *cap ? 2 * *cap : 256;
        larch_rm_train *t = realloc(m->train, nc * sizeof *t);
        if (!t) return -1;
        m->train = t;
        *cap = nc;
    }
    larch_rm_train *t = &m->train[m->n_train++];
    memset(t, 0, sizeof *t);
    t->step = (long)num(o, "step");
    t->epoch = num(o, "epoch");
    t->time = num(o, "time");
    t->loss = num(o, "loss");
    t->lr = num(o, "lr");
    t->samples_per_s = num(o, "samples_per_s");
    for (int k = 0; k < LARCH_RM_TASKS; k++) t->task_loss[k] = NAN;
    json_object *tasks, *ph, *sub;
    if (json_object_object_get_ex(o, "tasks", &tasks) && json_object_is_type(tasks, json_type_object)) {
        m->multi_task = 1;
        json_object_object_foreach(tasks, key, val) {
            int k = task_index(m, key);
            if (k >= 0 && json_object_is_type(val, json_type_object)) t->task_loss[k] = num(val, "loss");
        }
    }
    if (json_object_object_get_ex(o, "phases", &ph) && json_object_is_type(ph, json_type_object)) {
        t->has_phases = 1;
        if (json_object_object_get_ex(ph, "rank0", &sub)) read_phases(sub, t->phases);
        if (json_object_object_get_ex(ph, "slowest", &sub)) {
            read_phases(sub, t->slowest);
            double r = num(sub, "rank");
            t->slowest_rank = isfinite(r) ? (int)r : 0;
        }
    }
    return 0;
}

static int add_eval(larch_run_metrics *m, json_object *o, size_t *cap)
{
    if ((size_t)m->n_eval == *cap) {
        size_t nc = *cap ? 2 * *cap : 64;
        larch_rm_eval *e = realloc(m->eval, nc * sizeof *e);
        if (!e) return -1;
        m->eval = e;
        *cap = nc;
    }
    larch_rm_eval *e = &m->eval[m->n_eval++];
    e->step = (long)num(o, "step");
    e->epoch = num(o, "epoch");
    e->loss = num(o, "loss");
    e->accuracy = num(o, "accuracy");
    json_object *t;
    const char *task = json_object_object_get_ex(o, "task", &t) && json_object_is_type(t, json_type_string)
                       ? json_object_get_string(t) : "main";
    e->task = task_index(m, task);
    if (e->task < 0) e->task = 0;
    /* the wall time of the evaluation: that of the last train record at or before it */
    e->time = 0.0;
    for (int i = m->n_train - 1; i >= 0; i--)
        if (m->train[i].step <= e->step) { e->time = m->train[i].time; break; }
    return 0;
}

int larch_run_metrics_read(const char *dir, larch_run_metrics *m, char *err, size_t err_len)
{
    memset(m, 0, sizeof *m);
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    size_t l = strlen(tmp);
    while (l > 1 && tmp[l - 1] == '/') tmp[--l] = '\0';
    snprintf(m->name, sizeof m->name, "%s", basename(tmp));
    char path[1100];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "%s: %s (is %s a run directory of larch train?)", path, strerror(errno), dir);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0, cap_t = 0, cap_e = 0;
    ssize_t n;
    long lineno = 0;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (n == 1 && line[0] == '\n') continue;
        json_object *o = json_tokener_parse(line);
        if (!o || !json_object_is_type(o, json_type_object)) {
            m->bad_lines++;                  /* a line being written, or damage: skipped and counted */
            json_object_put(o);
            continue;
        }
        json_object *split;
        int ok = json_object_object_get_ex(o, "split", &split) ? add_eval(m, o, &cap_e) : add_train(m, o, &cap_t);
        json_object_put(o);
        if (ok) {
            snprintf(err, err_len, "%s: out of memory at line %ld", path, lineno);
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    if (!rc && m->n_train == 0 && m->n_eval == 0) {
        snprintf(err, err_len, "%s: no records (%ld line(s) that are not JSON records)", path, m->bad_lines);
        rc = -1;
    }
    if (rc) larch_run_metrics_free(m);
    return rc;
}

void larch_run_metrics_free(larch_run_metrics *m)
{
    free(m->train);
    free(m->eval);
    m->train = NULL;
    m->eval = NULL;
    m->n_train = m->n_eval = 0;
}
