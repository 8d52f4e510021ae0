/* schema.c - validation of config mappings against larch_key schemas, and
 * the typed getters for validated trees (see include/larch/cfg.h).
 *
 * larch_cfg_check walks a mapping: every key must be in the schema (or in
 * `extra`), every value must have the key's type and range, and every
 * missing key gets its default (parsed from the schema's YAML text), so the
 * tree written afterwards shows every value the run used. The first problem
 * is returned as LARCH_ERR_CONFIG with a message that starts with the
 * offending node's "file:line" and names the full dotted key path.
 */
#include "io/cfg_internal.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Full dotted path of `key` under `path`. */
static void join(char *out, size_t len, const char *path, const char *key)
{
    if (path && path[0]) snprintf(out, len, "%s.%s", path, key);
    else snprintf(out, len, "%s", key);
}

static int parse_long(const larch_node *n, long *v)
{
    if (n->kind != LARCH_NODE_SCALAR || n->quoted || !n->scalar[0]) return 0;
    char *end;
    errno = 0;
    *v = strtol(n->scalar, &end, 10);
    return !*end && errno == 0;
}

static int parse_double(const larch_node *n, double *v)
{
    if (n->kind != LARCH_NODE_SCALAR || n->quoted || !n->scalar[0]) return 0;
    char *end;
    errno = 0;
    *v = strtod(n->scalar, &end);
    return !*end && errno == 0 && isfinite(*v);
}

static int parse_bool(const larch_node *n, int *v)
{
    if (n->kind != LARCH_NODE_SCALAR || n->quoted) return 0;
    const char *s = n->scalar;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) { *v = 1; return 1; }
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) { *v = 0; return 1; }
    return 0;
}

/* "got 'abc'" / "got a list" / "got a mapping" (long values cut short) */
static const char *got(const larch_node *n, char *buf, size_t len)
{
    char ex[LARCH_EXCERPT_MAX + 4];
    if (n->kind == LARCH_NODE_SEQ) snprintf(buf, len, "a list");
    else if (n->kind == LARCH_NODE_MAP) snprintf(buf, len, "a mapping");
    else snprintf(buf, len, n->quoted ? "the quoted text '%s'" : "'%s'", larch_excerpt(n->scalar, ex, sizeof ex));
    return buf;
}

/* Is `s` one of the '|'-separated choices? */
static int in_choices(const char *choices, const char *s)
{
    size_t n = strlen(s);
    for (const char *p = choices; p && *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, s, n) == 0) return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* Checks one scalar of a numeric type and range. */
static larch_status check_number(const larch_node *n, const char *key, int integer, double min, double max)
{
    char where[300], g[300], ex[LARCH_EXCERPT_MAX + 4];
    double v;
    long l;
    if (integer ? !parse_long(n, &l) : !parse_double(n, &v))
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s: expected %s, got %s", larch_node_where(n, where, sizeof where), key,
                          integer ? "an integer" : "a number", got(n, g, sizeof g));
    if (integer) v = (double)l;
    if (min <= max && (v < min || v > max))
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s: %s is out of range [%.10g, %.10g]",
                          larch_node_where(n, where, sizeof where), key, larch_excerpt(n->scalar, ex, sizeof ex), min, max);
    return LARCH_OK;
}

static larch_status check_value(larch_node *n, const char *key, const larch_key *k)
{
    char where[300], g[300], sub[512];
    int b;
    switch (k->type) {
    case LARCH_T_INT: return check_number(n, key, 1, k->min, k->max);
    case LARCH_T_FLOAT: return check_number(n, key, 0, k->min, k->max);
    case LARCH_T_BOOL:
        if (!parse_bool(n, &b))
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s: expected true or false, got %s",
                              larch_node_where(n, where, sizeof where), key, got(n, g, sizeof g));
        return LARCH_OK;
    case LARCH_T_STRING:
        if (n->kind != LARCH_NODE_SCALAR)
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s: expected a text value, got %s",
                              larch_node_where(n, where, sizeof where), key, got(n, g, sizeof g));
        return LARCH_OK;
    case LARCH_T_ENUM:
        if (n->kind != LARCH_NODE_SCALAR || !in_choices(k->choices, n->scalar))
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s: %s is not one of: %s",
                              larch_node_where(n, where, sizeof where), key, got(n, g, sizeof g), k->choices);
        return LARCH_OK;
    case LARCH_T_INTS:
    case LARCH_T_FLOATS:
    case LARCH_T_STRINGS:
        if (k->choices && n->kind == LARCH_NODE_SCALAR && !n->quoted && in_choices(k->choices, n->scalar))
            return LARCH_OK;                                   /* a word the list key also takes ("off") */
        if (n->kind != LARCH_NODE_SEQ)
            return larch_fail(LARCH_ERR_CONFIG, "%s: %s: expected a list (e.g. [1, 2])%s%s, got %s",
                              larch_node_where(n, where, sizeof where), key, k->choices ? " or " : "",
                              k->choices ? k->choices : "", got(n, g, sizeof g));
        for (int i = 0; i < n->n; i++) {
            if (snprintf(sub, sizeof sub, "%s.%d", key, i) >= (int)sizeof sub) sub[sizeof sub - 1] = '\0';
            larch_status s;
            if (k->type == LARCH_T_STRINGS) {
                if (n->items[i]->kind != LARCH_NODE_SCALAR)
                    return larch_fail(LARCH_ERR_CONFIG, "%s: %s: expected a text value, got %s",
                                      larch_node_where(n->items[i], where, sizeof where), sub, got(n->items[i], g, sizeof g));
            } else if ((s = check_number(n->items[i], sub, k->type == LARCH_T_INTS, k->min, k->max))) {
                return s;
            }
        }
        return LARCH_OK;
    case LARCH_T_MAP: return larch_cfg_check(n, key, k->sub, NULL);
    case LARCH_T_ANY: return LARCH_OK;
    }
    return LARCH_OK;
}

const char *larch_key_where(const larch_node *map, int i, char *buf, size_t len)
{
    const larch_node *v = map->items[i];
    if (v->file != map->file || map->key_lines[i] == 0) return larch_node_where(v, buf, len);
    snprintf(buf, len, "%s:%d", map->file, map->key_lines[i]);
    return buf;
}

larch_status larch_cfg_check(larch_node *map, const char *path, const larch_key *schema, const char *const *extra)
{
    char where[300], full[512], g[300];
    if (!map || map->kind != LARCH_NODE_MAP)
        return larch_fail(LARCH_ERR_CONFIG, "%s: %s: expected a mapping of keys, got %s", larch_node_where(map, where, sizeof where),
                          path && path[0] ? path : "the config", map ? got(map, g, sizeof g) : "nothing");
    for (int i = 0; i < map->n; i++) {
        const larch_key *k = schema;
        while (k->name && strcmp(k->name, map->keys[i]) != 0) k++;
        if (k->name) continue;
        int ok = 0;
        for (const char *const *e = extra; e && *e; e++) if (strcmp(*e, map->keys[i]) == 0) ok = 1;
        if (ok) continue;
        char valid[1024] = "";
        for (const larch_key *v = schema; v->name; v++) {
            if (valid[0]) strncat(valid, ", ", sizeof valid - strlen(valid) - 1);
            strncat(valid, v->name, sizeof valid - strlen(valid) - 1);
        }
        for (const char *const *e = extra; e && *e; e++) {
            if (valid[0]) strncat(valid, ", ", sizeof valid - strlen(valid) - 1);
            strncat(valid, *e, sizeof valid - strlen(valid) - 1);
        }
        char ex[LARCH_EXCERPT_MAX + 4];
        join(full, sizeof full, path, map->keys[i]);
        return larch_fail(LARCH_ERR_CONFIG, "%s: unknown key '%s' (valid keys: %s)", larch_key_where(map, i, where, sizeof where),
                          larch_excerpt(full, ex, sizeof ex), valid[0] ? valid : "none");
    }
    for (const larch_key *k = schema; k->name; k++) {
        join(full, sizeof full, path, k->name);
        larch_node *v = larch_map_get(map, k->name);
        if (!v) {
            if (!k->def)
                return larch_fail(LARCH_ERR_CONFIG, "%s: %s: required key '%s' is missing", larch_node_where(map, where, sizeof where),
                                  path && path[0] ? path : "the config", k->name);
            larch_status s;
            if (k->def[0] == '\0') {                                  /* "" is an empty text, not an empty document */
                v = larch_node_new(LARCH_NODE_SCALAR, "default", 0);
                if (!v || !(v->scalar = strdup(""))) { larch_node_free(v); return larch_fail(LARCH_ERR_NOMEM, "out of memory"); }
            } else if ((s = larch_cfg_parse(k->def, "default", &v))) {
                return larch_fail_context(s, "default of %s", full);   /* a bug in a schema */
            }
            v->line = 0;
            if ((s = larch_node_append(map, k->name, 0, v))) { larch_node_free(v); return s; }
        }
        larch_status s = check_value(v, full, k);
        if (s) return s;
    }
    return LARCH_OK;
}

/* ---- defaults and warnings ---- */

/* Same value: numbers by value, true/false by meaning, text as written. */
static int same_value(const larch_node *a, const larch_node *b)
{
    if (a->kind != b->kind || a->n != b->n) return 0;
    if (a->kind == LARCH_NODE_SCALAR) {
        double x, y;
        int p, q;
        if (parse_double(a, &x) && parse_double(b, &y)) return x == y;
        if (parse_bool(a, &p) && parse_bool(b, &q)) return p == q;
        return strcmp(a->scalar, b->scalar) == 0;
    }
    for (int i = 0; i < a->n; i++) {
        if (a->keys && strcmp(a->keys[i], b->keys[i]) != 0) return 0;
        if (!same_value(a->items[i], b->items[i])) return 0;
    }
    return 1;
}

int larch_cfg_is_default(const larch_key *schema, const char *key, const larch_node *v)
{
    const larch_key *k = schema;
    while (k->name && strcmp(k->name, key) != 0) k++;
    if (!k->name || !k->def || !v) return 0;
    if (k->def[0] == '\0') return v->kind == LARCH_NODE_SCALAR && v->scalar[0] == '\0';
    larch_node *d = NULL;
    if (larch_cfg_parse(k->def, "default", &d)) { larch_clear_error(); return 0; }
    int same = same_value(v, d);
    larch_node_free(d);
    return same;
}

larch_status larch_warn(larch_warnings *w, const char *fmt, ...)
{
    if (!w) return LARCH_OK;
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *m = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!m) return larch_fail(LARCH_ERR_NOMEM, "out of memory collecting warnings");
    va_start(ap, fmt);
    vsnprintf(m, (size_t)len + 1, fmt, ap);
    va_end(ap);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 8;
        char **msg = realloc(w->msg, (size_t)cap * sizeof *msg);
        if (!msg) { free(m); return larch_fail(LARCH_ERR_NOMEM, "out of memory collecting warnings"); }
        w->msg = msg;
        w->cap = cap;
    }
    w->msg[w->n++] = m;
    return LARCH_OK;
}

void larch_warnings_free(larch_warnings *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->msg[i]);
    free(w->msg);
    memset(w, 0, sizeof *w);
}

/* ---- getters (validated trees only) ---- */

static const larch_node *get(const larch_node *map, const char *key)
{
    const larch_node *n = larch_map_get(map, key);
    assert(n && "config key read before validation");
    return n;
}

long larch_cfg_int(const larch_node *map, const char *key)
{
    long v = 0;
    int ok = parse_long(get(map, key), &v);
    assert(ok);
    (void)ok;
    return v;
}

double larch_cfg_float(const larch_node *map, const char *key)
{
    double v = 0;
    int ok = parse_double(get(map, key), &v);
    assert(ok);
    (void)ok;
    return v;
}

int larch_cfg_bool(const larch_node *map, const char *key)
{
    int v = 0;
    int ok = parse_bool(get(map, key), &v);
    assert(ok);
    (void)ok;
    return v;
}

const char *larch_cfg_str(const larch_node *map, const char *key)
{
    const larch_node *n = get(map, key);
    assert(n->kind == LARCH_NODE_SCALAR);
    return n->scalar;
}

int larch_cfg_ints(const larch_node *map, const char *key, long *out, int cap)
{
    const larch_node *n = get(map, key);
    assert(n->kind == LARCH_NODE_SEQ);
    if (n->n > cap) return -1;
    for (int i = 0; i < n->n; i++) parse_long(n->items[i], &out[i]);
    return n->n;
}

int larch_cfg_floats(const larch_node *map, const char *key, double *out, int cap)
{
    const larch_node *n = get(map, key);
    assert(n->kind == LARCH_NODE_SEQ);
    if (n->n > cap) return -1;
    for (int i = 0; i < n->n; i++) parse_double(n->items[i], &out[i]);
    return n->n;
}
