/* yaml_tree.c - configuration trees read and written with libyaml (the only
 * file that includes yaml.h).
 *
 * larch_cfg_parse turns one YAML document into a larch_node tree in which
 * every node remembers its source name and 1-based line; the parse root owns
 * the source name string and its subtree shares it. Duplicate keys, aliases,
 * non-scalar keys and several documents are errors naming the file and line;
 * duplicate keys are found through a hash index of each open mapping, so a
 * mapping of many keys parses in linear time. larch_cfg_load reads at most
 * LARCH_CFG_MAX_BYTES and stops at the first NUL byte (not a text file).
 * larch_cfg_write emits block-style YAML that parses back to the same tree
 * (quoted scalars stay quoted). larch_cfg_set applies "a.b.c=value"
 * overrides; the nodes it creates carry the assignment as their source name
 * and line 0, so later validation errors point at the --set, not a file.
 */
#include "io/cfg_internal.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ---- nodes ---- */

larch_node *larch_node_new(larch_node_kind kind, const char *file, int line)
{
    larch_node *n = calloc(1, sizeof *n);
    if (!n) { larch_fail(LARCH_ERR_NOMEM, "out of memory building a config tree"); return NULL; }
    n->kind = kind;
    n->file = file;
    n->line = line;
    return n;
}

void larch_node_free(larch_node *n)
{
    if (!n) return;
    for (int i = 0; i < n->n; i++) {
        larch_node_free(n->items[i]);
        if (n->keys) free(n->keys[i]);
    }
    free(n->items);
    free(n->keys);
    free(n->key_lines);
    free(n->scalar);
    if (n->owns_file) free((char *)n->file);
    free(n);
}

/* Appends item (and key, for maps; the key is copied). */
larch_status larch_node_append(larch_node *n, const char *key, int key_line, larch_node *item)
{
    if (n->n == n->cap) {
        int cap = n->cap ? 2 * n->cap : 8;
        larch_node **items = realloc(n->items, (size_t)cap * sizeof *items);
        if (!items) return larch_fail(LARCH_ERR_NOMEM, "out of memory building a config tree");
        n->items = items;
        if (n->kind == LARCH_NODE_MAP) {
            char **keys = realloc(n->keys, (size_t)cap * sizeof *keys);
            if (!keys) return larch_fail(LARCH_ERR_NOMEM, "out of memory building a config tree");
            n->keys = keys;
            int *lines = realloc(n->key_lines, (size_t)cap * sizeof *lines);
            if (!lines) return larch_fail(LARCH_ERR_NOMEM, "out of memory building a config tree");
            n->key_lines = lines;
        }
        n->cap = cap;
    }
    if (n->kind == LARCH_NODE_MAP) {
        char *k = strdup(key);
        if (!k) return larch_fail(LARCH_ERR_NOMEM, "out of memory building a config tree");
        n->keys[n->n] = k;
        n->key_lines[n->n] = key_line;
    }
    n->items[n->n++] = item;
    return LARCH_OK;
}

static larch_node *clone_rec(const larch_node *n, const char *from, const char *to)
{
    const char *file = n->file == from ? to : n->file;
    char *own = NULL;
    if (n->owns_file) {
        own = strdup(n->file);
        if (!own) return NULL;
        from = n->file;
        to = own;
        file = own;
    }
    larch_node *c = larch_node_new(n->kind, file, n->line);
    if (!c) { free(own); return NULL; }
    c->owns_file = own != NULL;
    c->quoted = n->quoted;
    if (n->scalar && !(c->scalar = strdup(n->scalar))) { larch_node_free(c); return NULL; }
    for (int i = 0; i < n->n; i++) {
        larch_node *item = clone_rec(n->items[i], from, to);
        if (!item || larch_node_append(c, n->keys ? n->keys[i] : NULL, n->key_lines ? n->key_lines[i] : 0, item)) {
            larch_node_free(item);
            larch_node_free(c);
            return NULL;
        }
    }
    return c;
}

larch_node *larch_node_clone(const larch_node *n)
{
    return n ? clone_rec(n, NULL, NULL) : NULL;
}

/* Sets every line of a subtree to 0 (nodes created by --set). */
static void zero_lines(larch_node *n)
{
    n->line = 0;
    for (int i = 0; i < n->n; i++) {
        if (n->key_lines) n->key_lines[i] = 0;
        zero_lines(n->items[i]);
    }
}

const char *larch_node_where(const larch_node *n, char *buf, size_t len)
{
    if (!n) snprintf(buf, len, "<config>");
    else if (n->line > 0) snprintf(buf, len, "%s:%d", n->file ? n->file : "<config>", n->line);
    else snprintf(buf, len, "%s", n->file ? n->file : "<config>");
    return buf;
}

/* ---- parsing ---- */

#define MAX_DEPTH 64

/* Hash index of an open mapping's keys (open addressing; a slot holds the
 * key's position + 1, 0 = empty). Small mappings are scanned instead. */
typedef struct key_index {
    int *slot;
    size_t cap;     /* a power of two, or 0 */
    int indexed;    /* keys 0..indexed-1 of the mapping are in the index */
} key_index;

#define INDEX_FROM 16   /* mappings with fewer keys are scanned */

static size_t hash_key(const char *k)
{
    uint64_t h = 1469598103934665603ull;        /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)k; *p; p++) h = (h ^ *p) * 1099511628211ull;
    return (size_t)h;
}

static void index_insert(key_index *x, const larch_node *map, int i)
{
    size_t j = hash_key(map->keys[i]) & (x->cap - 1);
    while (x->slot[j]) j = (j + 1) & (x->cap - 1);
    x->slot[j] = i + 1;
}

/* Position of `key` among map's keys, or -1 (-2: out of memory). */
static int find_key(key_index *x, const larch_node *map, const char *key)
{
    if (map->n < INDEX_FROM) {
        for (int i = 0; i < map->n; i++)
            if (strcmp(map->keys[i], key) == 0) return i;
        return -1;
    }
    if ((size_t)map->n * 2 >= x->cap) {                       /* grow (or create) and re-insert every key */
        size_t cap = x->cap ? x->cap : 64;
        while ((size_t)map->n * 2 >= cap) cap *= 2;
        int *slot = calloc(cap, sizeof *slot);
        if (!slot) return -2;
        free(x->slot);
        x->slot = slot;
        x->cap = cap;
        x->indexed = 0;
    }
    for (; x->indexed < map->n; x->indexed++) index_insert(x, map, x->indexed);
    for (size_t j = hash_key(key) & (x->cap - 1); x->slot[j]; j = (j + 1) & (x->cap - 1))
        if (strcmp(map->keys[x->slot[j] - 1], key) == 0) return x->slot[j] - 1;
    return -1;
}

typedef struct parse_state {
    const char *file;
    larch_node *stack[MAX_DEPTH];
    char *pending_key[MAX_DEPTH];   /* a map's key waiting for its value */
    int pending_line[MAX_DEPTH];
    key_index index[MAX_DEPTH];     /* of each open map's keys */
    int depth;
    larch_node *root;
} parse_state;

/* Attaches a finished node to the container on top of the stack. */
static larch_status attach(parse_state *ps, larch_node *n, const char *scalar_text, int line)
{
    if (ps->depth == 0) {
        if (ps->root) { larch_node_free(n); return larch_fail(LARCH_ERR_CONFIG, "%s:%d: more than one YAML document", ps->file, line); }
        ps->root = n;
        return LARCH_OK;
    }
    larch_node *top = ps->stack[ps->depth - 1];
    if (top->kind == LARCH_NODE_SEQ) return larch_node_append(top, NULL, 0, n);
    char **pk = &ps->pending_key[ps->depth - 1];
    if (!*pk) {                               /* this node is a key */
        if (n->kind != LARCH_NODE_SCALAR) {
            larch_node_free(n);
            return larch_fail(LARCH_ERR_CONFIG, "%s:%d: a mapping key must be a plain value", ps->file, line);
        }
        int i = find_key(&ps->index[ps->depth - 1], top, scalar_text);
        if (i != -1) {
            char ex[LARCH_EXCERPT_MAX + 4];
            larch_status s = i == -2 ? larch_fail(LARCH_ERR_NOMEM, "out of memory building a config tree")
                                     : larch_fail(LARCH_ERR_CONFIG, "%s:%d: duplicate key '%s' (first on line %d)", ps->file,
                                                  line, larch_excerpt(scalar_text, ex, sizeof ex), top->key_lines[i]);
            larch_node_free(n);                   /* scalar_text is n's: free it last */
            return s;
        }
        *pk = n->scalar;
        n->scalar = NULL;
        ps->pending_line[ps->depth - 1] = line;
        larch_node_free(n);
        return LARCH_OK;
    }
    larch_status s = larch_node_append(top, *pk, ps->pending_line[ps->depth - 1], n);
    free(*pk);
    *pk = NULL;
    if (s) larch_node_free(n);
    return s;
}

/* 1-based line of byte `offset` of text. */
static int line_of_offset(const char *text, size_t offset)
{
    int line = 1;
    for (size_t i = 0; i < offset && text[i]; i++) line += text[i] == '\n';
    return line;
}

larch_status larch_cfg_parse(const char *text, const char *name, larch_node **out)
{
    *out = NULL;
    yaml_parser_t parser;
    yaml_event_t ev;
    parse_state ps;
    memset(&ps, 0, sizeof ps);
    char *file = strdup(name ? name : "<string>");
    if (!file) return larch_fail(LARCH_ERR_NOMEM, "out of memory");
    ps.file = file;
    if (!yaml_parser_initialize(&parser)) { free(file); return larch_fail(LARCH_ERR_NOMEM, "cannot initialize libyaml"); }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    larch_status s = LARCH_OK;
    int done = 0;
    while (!s && !done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            if (parser.error == YAML_READER_ERROR)    /* bad encoding: libyaml gives a byte offset, not a mark */
                s = larch_fail(LARCH_ERR_CONFIG, "%s:%d: not valid UTF-8 text: %s (byte %zu of the file)", file,
                               line_of_offset(text, parser.problem_offset), parser.problem ? parser.problem : "unknown",
                               parser.problem_offset + 1);
            else
                s = larch_fail(LARCH_ERR_CONFIG, "%s:%d: YAML syntax error: %s%s%s", file, (int)parser.problem_mark.line + 1,
                               parser.problem ? parser.problem : "unknown", parser.context ? " " : "",
                               parser.context ? parser.context : "");
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        larch_node *n = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = 1; break;
        case YAML_SCALAR_EVENT:
            if (!(n = larch_node_new(LARCH_NODE_SCALAR, file, line)) ||
                !(n->scalar = strndup((const char *)ev.data.scalar.value, ev.data.scalar.length))) {
                larch_node_free(n);
                s = larch_fail(LARCH_ERR_NOMEM, "out of memory");
                break;
            }
            n->quoted = ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
                        (ev.data.scalar.tag && strcmp((const char *)ev.data.scalar.tag, YAML_STR_TAG) == 0);
            s = attach(&ps, n, n->scalar, line);
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (ps.depth == MAX_DEPTH) { s = larch_fail(LARCH_ERR_CONFIG, "%s:%d: nested too deeply", file, line); break; }
            n = larch_node_new(ev.type == YAML_MAPPING_START_EVENT ? LARCH_NODE_MAP : LARCH_NODE_SEQ, file, line);
            if (!n) { s = LARCH_ERR_NOMEM; break; }
            ps.stack[ps.depth++] = n;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            n = ps.stack[--ps.depth];
            free(ps.index[ps.depth].slot);
            memset(&ps.index[ps.depth], 0, sizeof ps.index[ps.depth]);
            s = attach(&ps, n, NULL, n->line);
            break;
        case YAML_ALIAS_EVENT:
            s = larch_fail(LARCH_ERR_CONFIG, "%s:%d: YAML aliases (*name) are not supported in configs", file, line);
            break;
        default: break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    for (int i = 0; i < ps.depth; i++) { free(ps.pending_key[i]); free(ps.index[i].slot); larch_node_free(ps.stack[i]); }
    if (!s && !ps.root) {                        /* an empty document is an empty mapping */
        ps.root = larch_node_new(LARCH_NODE_MAP, file, 1);
        if (!ps.root) s = LARCH_ERR_NOMEM;
    }
    if (s) { larch_node_free(ps.root); free(file); return s; }
    ps.root->owns_file = 1;
    *out = ps.root;
    return LARCH_OK;
}

larch_status larch_cfg_load(const char *path, larch_node **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return larch_fail(LARCH_ERR_IO, "cannot open config %s: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0;
    larch_status s = LARCH_OK;
    for (;;) {                                /* stops at the first NUL byte or past the size limit */
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 16384;
            char *t = realloc(text, cap);
            if (!t) { s = larch_fail(LARCH_ERR_NOMEM, "out of memory reading %s", path); break; }
            text = t;
        }
        size_t got = fread(text + len, 1, 4096, f);
        const char *nul = memchr(text + len, '\0', got);
        if (nul) {
            s = larch_fail(LARCH_ERR_CONFIG, "%s: not a text file (a NUL byte at byte %zu)", path,
                           len + (size_t)(nul - (text + len)) + 1);
            break;
        }
        len += got;
        if (len > LARCH_CFG_MAX_BYTES) {
            s = larch_fail(LARCH_ERR_CONFIG, "%s: larger than the %d MiB a config file may have", path,
                           LARCH_CFG_MAX_BYTES >> 20);
            break;
        }
        if (got < 4096) {
            if (ferror(f)) s = larch_fail(LARCH_ERR_IO, "cannot read config %s: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (!s) {
        text[len] = '\0';
        s = larch_cfg_parse(text, path, out);
    }
    free(text);
    return s;
}

/* ---- writing ---- */

static int emit_node(yaml_emitter_t *e, const larch_node *n)
{
    yaml_event_t ev;
    if (n->kind == LARCH_NODE_SCALAR) {
        const char *v = n->scalar ? n->scalar : "";
        yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)v, (int)strlen(v), !n->quoted, 1,
                                     n->quoted ? YAML_SINGLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
        return yaml_emitter_emit(e, &ev);
    }
    if (n->kind == LARCH_NODE_MAP) {
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        if (!yaml_emitter_emit(e, &ev)) return 0;
        for (int i = 0; i < n->n; i++) {
            yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)n->keys[i], (int)strlen(n->keys[i]), 1, 1,
                                         YAML_ANY_SCALAR_STYLE);
            if (!yaml_emitter_emit(e, &ev) || !emit_node(e, n->items[i])) return 0;
        }
        yaml_mapping_end_event_initialize(&ev);
        return yaml_emitter_emit(e, &ev);
    }
    /* short lists of scalars read best in flow style: [1, 2, 3] */
    int flow = n->n <= 16;
    for (int i = 0; i < n->n; i++) if (n->items[i]->kind != LARCH_NODE_SCALAR) flow = 0;
    yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, flow ? YAML_FLOW_SEQUENCE_STYLE : YAML_BLOCK_SEQUENCE_STYLE);
    if (!yaml_emitter_emit(e, &ev)) return 0;
    for (int i = 0; i < n->n; i++) if (!emit_node(e, n->items[i])) return 0;
    yaml_sequence_end_event_initialize(&ev);
    return yaml_emitter_emit(e, &ev);
}

larch_status larch_cfg_write(const larch_node *root, FILE *f)
{
    yaml_emitter_t e;
    yaml_event_t ev;
    if (!yaml_emitter_initialize(&e)) return larch_fail(LARCH_ERR_NOMEM, "cannot initialize libyaml");
    yaml_emitter_set_output_file(&e, f);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, 120);
    int ok = 1;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    ok = ok && yaml_emitter_emit(&e, &ev);
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    ok = ok && yaml_emitter_emit(&e, &ev);
    ok = ok && emit_node(&e, root);
    yaml_document_end_event_initialize(&ev, 1);
    ok = ok && yaml_emitter_emit(&e, &ev);
    yaml_stream_end_event_initialize(&ev);
    ok = ok && yaml_emitter_emit(&e, &ev);
    ok = ok && yaml_emitter_flush(&e);
    larch_status s = ok ? LARCH_OK : larch_fail(LARCH_ERR_IO, "writing YAML: %s", e.problem ? e.problem : "write error");
    yaml_emitter_delete(&e);
    return s;
}

larch_status larch_cfg_save(const larch_node *root, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return larch_fail(LARCH_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    larch_status s = larch_cfg_write(root, f);
    if (fclose(f) != 0 && !s) s = larch_fail(LARCH_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return s;
}

/* ---- lookup and edits ---- */

larch_node *larch_map_get(const larch_node *map, const char *key)
{
    if (!map || map->kind != LARCH_NODE_MAP) return NULL;
    for (int i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0) return map->items[i];
    return NULL;
}

/* A path element as a sequence index, or -1. */
static long seq_index(const char *s)
{
    if (!*s) return -1;
    char *end;
    long v = strtol(s, &end, 10);
    return *end || v < 0 ? -1 : v;
}

larch_node *larch_cfg_find(const larch_node *root, const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    const larch_node *cur = root;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save)) {
        if (cur->kind == LARCH_NODE_MAP) cur = larch_map_get(cur, tok);
        else if (cur->kind == LARCH_NODE_SEQ) {
            long i = seq_index(tok);
            cur = i >= 0 && i < cur->n ? cur->items[i] : NULL;
        } else cur = NULL;
    }
    return (larch_node *)cur;
}

/* Replaces map[key] (or appends it) with `item`, taking ownership. */
static larch_status map_put(larch_node *map, const char *key, larch_node *item)
{
    for (int i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0) {
            larch_node_free(map->items[i]);
            map->items[i] = item;
            return LARCH_OK;
        }
    return larch_node_append(map, key, item->line, item);
}

larch_status larch_map_set_scalar(larch_node *map, const char *key, const char *value)
{
    larch_node *n = larch_node_new(LARCH_NODE_SCALAR, map->file, 0);
    if (!n || !(n->scalar = strdup(value))) { larch_node_free(n); return larch_fail(LARCH_ERR_NOMEM, "out of memory"); }
    larch_status s = map_put(map, key, n);
    if (s) larch_node_free(n);
    return s;
}

larch_node *larch_map_child_map(larch_node *map, const char *key)
{
    larch_node *c = larch_map_get(map, key);
    if (c) return c->kind == LARCH_NODE_MAP ? c : NULL;
    c = larch_node_new(LARCH_NODE_MAP, map->file, 0);
    if (!c) return NULL;
    if (map_put(map, key, c)) { larch_node_free(c); return NULL; }
    return c;
}

larch_status larch_cfg_set(larch_node *root, const char *assignment)
{
    char whole[LARCH_EXCERPT_MAX + 4], ex[LARCH_EXCERPT_MAX + 4];
    const char *shown = larch_excerpt(assignment, whole, sizeof whole);   /* messages quote at most this much */
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return larch_fail(LARCH_ERR_CONFIG, "--set %s: expected key=value (e.g. train.epochs=2)", shown);
    char path[512], name[sizeof whole + 8];
    if ((size_t)(eq - assignment) >= sizeof path) return larch_fail(LARCH_ERR_CONFIG, "--set %s: key too long", shown);
    memcpy(path, assignment, (size_t)(eq - assignment));
    path[eq - assignment] = '\0';
    size_t plen = strlen(path);
    if (path[0] == '.' || path[plen - 1] == '.' || strstr(path, ".."))
        return larch_fail(LARCH_ERR_CONFIG, "--set %s: the key '%s' has an empty part (write a.b.c=value)", shown,
                          larch_excerpt(path, ex, sizeof ex));
    snprintf(name, sizeof name, "--set %s", shown);
    larch_node *value = NULL;
    larch_status s;
    if (eq[1] == '\0') {                         /* "key=" sets an empty value */
        char *file = strdup(name);
        value = file ? larch_node_new(LARCH_NODE_SCALAR, file, 0) : NULL;
        if (!value || !(value->scalar = strdup(""))) { free(file); larch_node_free(value); return larch_fail(LARCH_ERR_NOMEM, "out of memory"); }
        value->owns_file = 1;
    } else if ((s = larch_cfg_parse(eq + 1, name, &value))) {
        return s;
    }
    zero_lines(value);
    larch_node *cur = root;
    char *save = NULL, *tok = strtok_r(path, ".", &save);
    s = LARCH_OK;
    while (tok) {
        char *next = strtok_r(NULL, ".", &save);
        if (cur->kind == LARCH_NODE_MAP) {
            if (!next) { s = map_put(cur, tok, value); if (!s) value = NULL; break; }
            larch_node *c = larch_map_get(cur, tok);
            if (!c) {
                c = larch_node_new(LARCH_NODE_MAP, "--set", 0);   /* static: outlives any value */
                if (!c || (s = map_put(cur, tok, c))) { larch_node_free(c); s = s ? s : LARCH_ERR_NOMEM; break; }
            }
            cur = c;
        } else if (cur->kind == LARCH_NODE_SEQ) {
            long i = seq_index(tok);
            for (int k = 0; i < 0 && k < cur->n; k++) {      /* a list of named entries (layers): by name */
                const larch_node *nm = cur->items[k]->kind == LARCH_NODE_MAP ? larch_map_get(cur->items[k], "name") : NULL;
                if (nm && nm->kind == LARCH_NODE_SCALAR && nm->scalar && !strcmp(nm->scalar, tok)) i = k;
            }
            if (i < 0 || i >= cur->n) {
                s = larch_fail(LARCH_ERR_CONFIG, "--set %s: '%s' is not an index of a list of %d entries, nor the name of one",
                               shown, larch_excerpt(tok, ex, sizeof ex), cur->n);
                break;
            }
            if (!next) { larch_node_free(cur->items[i]); cur->items[i] = value; value = NULL; break; }
            cur = cur->items[i];
        } else {
            s = larch_fail(LARCH_ERR_CONFIG, "--set %s: '%s' is inside a plain value, not a mapping or list", shown,
                           larch_excerpt(tok, ex, sizeof ex));
            break;
        }
        tok = next;
    }
    if (value && !s) s = larch_fail(LARCH_ERR_CONFIG, "--set %s: empty key", shown);
    larch_node_free(value);
    return s;
}
