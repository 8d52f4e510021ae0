/* larch/cfg.h - configuration trees and their validation.
 *
 * A configuration is a YAML document parsed (with libyaml) into a tree of
 * larch_node. Every node remembers its file and line so that errors can name
 * them. A schema (an array of larch_key ending with {0}) validates a mapping:
 * unknown keys, wrong types, out-of-range values and invalid choices are
 * errors naming the file, the line and the full key path, with the valid
 * choices where there are some. Validation also inserts the defaults of
 * missing keys, so that the resolved tree written back out shows every value
 * the run used. The same trees carry layer options, so tests build layers
 * from YAML strings such as "{type: dense, units: 10}".
 */
#ifndef LARCH_CFG_H
#define LARCH_CFG_H

#include <stdio.h>
#include "larch/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LARCH_NODE_SCALAR, LARCH_NODE_MAP, LARCH_NODE_SEQ } larch_node_kind;

typedef struct larch_node larch_node;
struct larch_node {
    larch_node_kind kind;
    char *scalar;         /* SCALAR: the text as written (owned)             */
    int quoted;           /* SCALAR: written in quotes (always a string)     */
    int n;                /* MAP/SEQ: number of entries                      */
    int cap;
    char **keys;          /* MAP: entry keys (owned)                         */
    int *key_lines;       /* MAP: line of each key                           */
    larch_node **items;   /* MAP/SEQ: entry values (owned)                   */
    const char *file;     /* source name (shared with the subtree)           */
    int owns_file;        /* this node frees `file` (the root of a parse)    */
    int line;             /* 1-based line in `file`, 0 when synthesized      */
};

/* Parsing. `name` is used in messages (a path, or "<string>"). A config
 * file may hold at most LARCH_CFG_MAX_BYTES and no NUL byte. */
#define LARCH_CFG_MAX_BYTES (16 << 20)
LARCH_API larch_status larch_cfg_load(const char *path, larch_node **out);
LARCH_API larch_status larch_cfg_parse(const char *text, const char *name, larch_node **out);
LARCH_API void larch_node_free(larch_node *n);
LARCH_API larch_node *larch_node_clone(const larch_node *n);

/* Writes the tree as YAML (block style) to `f`. */
LARCH_API larch_status larch_cfg_write(const larch_node *root, FILE *f);
LARCH_API larch_status larch_cfg_save(const larch_node *root, const char *path);

/* Applies an override "a.b.c=value" (value parsed as YAML, so lists and maps
 * work too: "model.0.units=512", "optim.betas=[0.9, 0.99]"). Sequence
 * elements are addressed by index. Creating a new map key is allowed; the
 * schema check that follows rejects unknown keys. */
LARCH_API larch_status larch_cfg_set(larch_node *root, const char *assignment);

/* Lookup. `path` is dotted ("train.batch_size", "model.2.units"). Returns
 * NULL when absent. */
LARCH_API larch_node *larch_cfg_find(const larch_node *root, const char *path);
/* Direct child of a map. */
LARCH_API larch_node *larch_map_get(const larch_node *map, const char *key);
/* Sets (replaces or appends) a scalar child of a map. */
LARCH_API larch_status larch_map_set_scalar(larch_node *map, const char *key, const char *value);
/* Creates an empty map child when absent and returns it (NULL if the key
 * exists but is not a map). */
LARCH_API larch_node *larch_map_child_map(larch_node *map, const char *key);

/* ---- schemas ---- */
typedef enum {
    LARCH_T_INT,      /* integer, range [min, max]                           */
    LARCH_T_FLOAT,    /* real number, range [min, max]                       */
    LARCH_T_BOOL,     /* true/false                                          */
    LARCH_T_STRING,   /* any text                                            */
    LARCH_T_ENUM,     /* one of `choices` ("a|b|c")                          */
    LARCH_T_INTS,     /* a list of integers (flow or block), range [min,max] */
    LARCH_T_FLOATS,   /* a list of numbers, range [min, max]                 */
    LARCH_T_STRINGS,  /* a list of strings                                   */
    LARCH_T_MAP,      /* a nested mapping validated by `sub`                 */
    LARCH_T_ANY       /* accepted as written, validated elsewhere            */
} larch_type;

typedef struct larch_key {
    const char *name;
    larch_type type;
    const char *def;        /* default as YAML text; NULL = required (for T_MAP: "{}" creates it) */
    double min, max;        /* inclusive range for numbers (ignored when min > max) */
    const char *choices;    /* T_ENUM: "a|b|c"; list types: words taken in place
                               of a list ("off"; the getters then do not apply) */
    const struct larch_key *sub; /* T_MAP: its schema                         */
    const char *help;       /* one line for `larch config --help`             */
} larch_key;

/* Validates `map` (whose dotted path is `path`, "" at the root) against
 * `schema`, recursing into T_MAP keys, and fills defaults. `extra` lists
 * additional key names that are accepted as-is (may be NULL). */
LARCH_API larch_status larch_cfg_check(larch_node *map, const char *path,
                                       const larch_key *schema, const char *const *extra);

/* Is `v` (the value of `key` of `schema`) equal to the key's default? Numbers
 * compare by value ("0.10" equals "0.1"), lists element by element. */
LARCH_API int larch_cfg_is_default(const larch_key *schema, const char *key, const larch_node *v);

/* Warnings: a valid config may still set keys that have no effect (a key of
 * another optimizer, label smoothing on an mse loss, ...). The library
 * collects one message per finding; the program prints them. */
typedef struct larch_warnings {
    int n, cap;
    char **msg;
} larch_warnings;
/* Appends a printf-style message (LARCH_ERR_NOMEM when it cannot). */
LARCH_API larch_status larch_warn(larch_warnings *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
LARCH_API void larch_warnings_free(larch_warnings *w);

/* Typed getters for validated trees: the key must exist and have the type. */
LARCH_API long        larch_cfg_int(const larch_node *map, const char *key);
LARCH_API double      larch_cfg_float(const larch_node *map, const char *key);
LARCH_API int         larch_cfg_bool(const larch_node *map, const char *key);
LARCH_API const char *larch_cfg_str(const larch_node *map, const char *key);
/* Reads a numeric list into out[0..cap); returns the count, or -1 when the
 * list is longer than cap. */
LARCH_API int larch_cfg_ints(const larch_node *map, const char *key, long *out, int cap);
LARCH_API int larch_cfg_floats(const larch_node *map, const char *key, double *out, int cap);

/* Formats "file:line" of a node into buf (for messages). */
LARCH_API const char *larch_node_where(const larch_node *n, char *buf, size_t len);
/* "file:line" of the i-th key of a map (the value's place when it came from
 * --set). */
LARCH_API const char *larch_key_where(const larch_node *map, int i, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
