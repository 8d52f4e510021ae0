/* attributes.c - class-attribute tables (CSV) for zero-shot learning
 * (format in src/io/attributes.h). */
#include "io/attributes.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Splits line at commas (in place, at most cap fields); strips spaces. */
static int split(char *line, char **f, int cap)
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (n < cap) f[n] = p;
        n++;
        char *c = strchr(p, ',');
        char *e = c ? c : p + strlen(p);
        while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) e--;
        if (!c) { *e = '\0'; break; }
        *e = '\0';
        p = c + 1;
    }
    return n;
}

larch_status larch_attr_read(const char *path, larch_attr_table *t)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "r");
    if (!f) return larch_fail(LARCH_ERR_IO, "attribute table %s: %s", path, strerror(errno));
    char line[8192];
    char *fld[LARCH_ATTR_MAX + 3];
    int lineno = 0, cap = 0;
    larch_status s = LARCH_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || !*p) continue;
        if (!strchr(line, '\n') && !feof(f)) {
            s = larch_fail(LARCH_ERR_FORMAT, "%s:%d: line longer than %zu characters", path, lineno, sizeof line - 1);
            break;
        }
        int n = split(p, fld, LARCH_ATTR_MAX + 3);
        if (!t->attr_names) {                                         /* the header */
            if (n < 3 || strcmp(fld[0], "class") != 0 || strcmp(fld[1], "name") != 0) {
                s = larch_fail(LARCH_ERR_FORMAT, "%s:%d: expected the header class,name,<attribute>,... (at least one "
                               "attribute)", path, lineno);
                break;
            }
            if (n - 2 > LARCH_ATTR_MAX) {
                s = larch_fail(LARCH_ERR_FORMAT, "%s:%d: %d attributes (at most %d)", path, lineno, n - 2, LARCH_ATTR_MAX);
                break;
            }
            t->n_attr = n - 2;
            t->attr_names = calloc((size_t)t->n_attr, sizeof *t->attr_names);
            if (!t->attr_names) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); break; }
            for (int a = 0; a < t->n_attr; a++) {
                if (!fld[a + 2][0]) { s = larch_fail(LARCH_ERR_FORMAT, "%s:%d: attribute %d has no name", path, lineno, a + 1); break; }
                snprintf(t->attr_names[a], LARCH_NAME_MAX, "%s", fld[a + 2]);
            }
            if (s) break;
            continue;
        }
        if (n != t->n_attr + 2) {
            s = larch_fail(LARCH_ERR_FORMAT, "%s:%d: %d value(s) where the header names %d attributes (expected class,name "
                           "and %d numbers)", path, lineno, n - 2, t->n_attr, t->n_attr);
            break;
        }
        char *end;
        long c = strtol(fld[0], &end, 10);
        if (end == fld[0] || *end || c != t->n_classes) {
            s = larch_fail(LARCH_ERR_FORMAT, "%s:%d: the class is '%s' but the rows must be classes 0, 1, ... in order "
                           "(expected %d)", path, lineno, fld[0], t->n_classes);
            break;
        }
        if (t->n_classes == cap) {
            cap = cap ? 2 * cap : 16;
            float *v = realloc(t->values, (size_t)cap * t->n_attr * sizeof *v);
            char (*nm)[LARCH_NAME_MAX] = realloc(t->class_names, (size_t)cap * sizeof *nm);
            if (v) t->values = v;
            if (nm) t->class_names = nm;
            if (!v || !nm) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory"); break; }
        }
        snprintf(t->class_names[t->n_classes], LARCH_NAME_MAX, "%s", fld[1]);
        for (int a = 0; a < t->n_attr; a++) {
            double v = strtod(fld[a + 2], &end);
            if (end == fld[a + 2] || *end || !isfinite(v)) {
                s = larch_fail(LARCH_ERR_FORMAT, "%s:%d: attribute '%s' of class %ld is '%s', not a finite number", path,
                               lineno, t->attr_names[a], c, fld[a + 2]);
                break;
            }
            t->values[(size_t)t->n_classes * t->n_attr + a] = (float)v;
        }
        if (s) break;
        t->n_classes++;
    }
    fclose(f);
    if (!s && !t->attr_names) s = larch_fail(LARCH_ERR_FORMAT, "%s: no header class,name,<attribute>,... (empty file?)", path);
    else if (!s && t->n_classes == 0) s = larch_fail(LARCH_ERR_FORMAT, "%s: the table has no class rows", path);
    if (s) larch_attr_free(t);
    return s;
}

void larch_attr_free(larch_attr_table *t)
{
    free(t->values);
    free(t->class_names);
    free(t->attr_names);
    memset(t, 0, sizeof *t);
}

larch_status larch_attr_apply(const larch_attr_table *t, const char *path, larch_dataset *ds)
{
    if (t->n_classes != ds->n_classes)
        return larch_fail(LARCH_ERR_CONFIG, "attribute table %s has %d classes but %s has %d (one row per class)", path,
                          t->n_classes, ds->name, ds->n_classes);
    if (ds->targets || ds->n_targets)
        return larch_fail(LARCH_ERR_CONFIG, "attribute table %s: %s already has %d float targets of its own", path, ds->name,
                          ds->n_targets);
    float *tg = malloc(((size_t)ds->n * t->n_attr + 1) * sizeof *tg);
    if (!tg) return larch_fail(LARCH_ERR_NOMEM, "out of memory for %d x %d attribute targets", ds->n, t->n_attr);
    for (int i = 0; i < ds->n; i++)
        memcpy(tg + (size_t)i * t->n_attr, t->values + (size_t)ds->labels[i] * t->n_attr, (size_t)t->n_attr * sizeof *tg);
    ds->targets = tg;
    ds->n_targets = t->n_attr;
    return LARCH_OK;
}
