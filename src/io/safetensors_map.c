/* safetensors_map.c - PyTorch names and layouts <-> a larch model: the name
 * rules (`larch import/export --map`, compiled to POSIX regular
 * expressions), the default naming convention, and the layout conversions
 * of conv2d and dense weights (include/larch/safetensors.h). */
#include "larch/safetensors.h"

#include <errno.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RULES 256
#define NAME_LEN (2 * LARCH_NAME_MAX + 64)

/* One side of a rule: the pattern, its regex, and which regex group holds
 * placeholder {k}. */
typedef struct {
    char *text;
    regex_t re;
    int group[10];            /* 0: placeholder absent */
} side;

typedef struct {
    side torch, larch;
    int drop;                 /* larch side "-" */
    int line;
} rule;

struct larch_st_map {
    int n;
    rule r[MAX_RULES];
    char where[256];
};

static larch_status compile_side(side *sd, const char *text, const char *where, int line)
{
    char re[4 * NAME_LEN + 8];
    size_t o = 0;
    int groups = 0;
    memset(sd->group, 0, sizeof sd->group);
    re[o++] = '^';
    for (const char *p = text; *p; p++) {
        if (o + 24 >= sizeof re) return larch_fail(LARCH_ERR_CONFIG, "%s:%d: pattern '%s' is too long", where, line, text);
        if (*p == '{' && p[1] >= '1' && p[1] <= '9' && p[2] == '}') {
            int k = p[1] - '0';
            if (sd->group[k])
                return larch_fail(LARCH_ERR_CONFIG, "%s:%d: placeholder {%d} appears twice in '%s'", where, line, k, text);
            sd->group[k] = ++groups;
            memcpy(re + o, "([A-Za-z0-9]+)", 14);
            o += 14;
            p += 2;
            continue;
        }
        if (*p == '{' || *p == '}')
            return larch_fail(LARCH_ERR_CONFIG, "%s:%d: '%s': braces only as placeholders {1} to {9}", where, line, text);
        if (strchr(".[]()*+?^$|\\", *p)) re[o++] = '\\';
        re[o++] = *p;
    }
    re[o++] = '$';
    re[o] = '\0';
    if (regcomp(&sd->re, re, REG_EXTENDED) != 0)
        return larch_fail(LARCH_ERR_CONFIG, "%s:%d: cannot compile pattern '%s'", where, line, text);
    sd->text = strdup(text);
    if (!sd->text) { regfree(&sd->re); return larch_fail(LARCH_ERR_NOMEM, "%s: rules", where); }
    return LARCH_OK;
}

void larch_st_map_free(larch_st_map *map)
{
    if (!map) return;
    for (int i = 0; i < map->n; i++) {
        regfree(&map->r[i].torch.re);
        free(map->r[i].torch.text);
        if (!map->r[i].drop) { regfree(&map->r[i].larch.re); free(map->r[i].larch.text); }
    }
    free(map);
}

larch_status larch_st_map_parse(const char *text, const char *where, larch_st_map **out)
{
    *out = NULL;
    larch_st_map *map = calloc(1, sizeof *map);
    if (!map) return larch_fail(LARCH_ERR_NOMEM, "%s: rules", where);
    snprintf(map->where, sizeof map->where, "%s", where);
    larch_status s = LARCH_OK;
    int line = 0;
    for (const char *p = text; *p && !s;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char buf[2 * NAME_LEN + 64], a[256], b[256], extra[2];
        line++;
        if (len >= sizeof buf) { s = larch_fail(LARCH_ERR_CONFIG, "%s:%d: line too long", where, line); break; }
        memcpy(buf, p, len);
        buf[len] = '\0';
        p += len + (end != NULL);
        char *hash = strchr(buf, '#');
        if (hash) *hash = '\0';
        int got = sscanf(buf, "%" "200" "s %" "200" "s %1s", a, b, extra);
        if (got <= 0) continue;                     /* blank or comment */
        if (got != 2) {
            s = larch_fail(LARCH_ERR_CONFIG, "%s:%d: expected `TORCH_PATTERN LARCH_PATTERN` (or `TORCH_PATTERN -`)", where, line);
            break;
        }
        if (map->n == MAX_RULES) { s = larch_fail(LARCH_ERR_CONFIG, "%s:%d: more than %d rules", where, line, MAX_RULES); break; }
        rule *r = &map->r[map->n];
        r->line = line;
        r->drop = !strcmp(b, "-");
        if ((s = compile_side(&r->torch, a, where, line))) break;
        if (!r->drop && (s = compile_side(&r->larch, b, where, line))) { regfree(&r->torch.re); free(r->torch.text); break; }
        map->n++;
        for (int k = 1; k <= 9 && !r->drop; k++)
            if (!r->torch.group[k] != !r->larch.group[k]) {
                s = larch_fail(LARCH_ERR_CONFIG, "%s:%d: placeholder {%d} is on one side only ('%s' vs '%s'); "
                               "both sides need the same placeholders", where, line, k, a, b);
                break;
            }
    }
    if (!s && map->n == 0) s = larch_fail(LARCH_ERR_CONFIG, "%s: no rules", where);
    if (s) { larch_st_map_free(map); return s; }
    *out = map;
    return LARCH_OK;
}

larch_status larch_st_map_read(const char *path, larch_st_map **out)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return larch_fail(LARCH_ERR_IO, "%s: cannot open it: %s", path, strerror(errno));
    char *text = malloc(1 << 20);
    size_t n = text ? fread(text, 1, (1 << 20) - 1, fp) : 0;
    int big = text && n == (1 << 20) - 1;
    fclose(fp);
    if (!text) return larch_fail(LARCH_ERR_NOMEM, "%s", path);
    if (big) { free(text); return larch_fail(LARCH_ERR_CONFIG, "%s: a rules file holds at most 1 MiB", path); }
    text[n] = '\0';
    larch_status s = larch_st_map_parse(text, path, out);
    free(text);
    return s;
}

/* Applies the first rule whose `from` side matches name to `to`: 1 mapped
 * (out set), 2 dropped, 0 no rule matches. */
static int apply(const larch_st_map *map, const char *name, int to_larch, char *out, size_t len, int *line)
{
    for (int i = 0; i < map->n; i++) {
        const rule *r = &map->r[i];
        if (!to_larch && r->drop) continue;
        const side *from = to_larch ? &r->torch : &r->larch, *to = to_larch ? &r->larch : &r->torch;
        regmatch_t mt[10];
        if (regexec(&from->re, name, 10, mt, 0) != 0) continue;
        *line = r->line;
        if (to_larch && r->drop) return 2;
        size_t o = 0;
        for (const char *p = to->text; *p && o + 1 < len; p++) {
            if (*p == '{' && p[1] >= '1' && p[1] <= '9' && p[2] == '}') {
                const regmatch_t *g = &mt[from->group[p[1] - '0']];
                for (regoff_t k = g->rm_so; k < g->rm_eo && o + 1 < len; k++) out[o++] = name[k];
                p += 2;
            } else {
                out[o++] = *p;
            }
        }
        out[o] = '\0';
        return 1;
    }
    return 0;
}

/* ---- the model's tensors ---- */

typedef struct {
    const char *name;         /* "<layer>.<tensor>"            */
    float *data;
    size_t size;
    int is_param;
    const larch_param *p;     /* NULL for a buffer              */
    const larch_layer *L;
} mtensor;

static int model_tensors(const larch_model *m, mtensor **out)
{
    int np = larch_model_n_params(m), nb = larch_model_n_buffers(m), n = 0;
    mtensor *t = calloc((size_t)(np + nb) + 1, sizeof *t);
    if (!t) return -1;
    for (int l = 0; l < larch_model_n_layers(m); l++) {        /* layer by layer: params, then buffers */
        for (int i = 0; i < np; i++) {
            const larch_param *p = larch_model_param(m, i);
            if (p->layer != l) continue;
            t[n++] = (mtensor){p->name, larch_model_param_data(m, i), p->size, 1, p, larch_model_layer(m, l)};
        }
        for (int i = 0; i < nb; i++) {
            const larch_buffer *b = larch_model_buffer(m, i);
            if (b->layer != l) continue;
            t[n++] = (mtensor){b->name, larch_model_buffer_data(m, i), b->size, 0, NULL, larch_model_layer(m, l)};
        }
    }
    *out = t;
    return n;
}

static int find_tensor(const mtensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++) if (!strcmp(t[i].name, name)) return i;
    return -1;
}

/* Does layer L have a parameter "<layer>.<tensor>"? */
static int layer_has(const mtensor *t, int n, const char *layer, const char *tensor)
{
    char full[NAME_LEN];
    if (snprintf(full, sizeof full, "%s.%s", layer, tensor) >= (int)sizeof full) return 0;
    return find_tensor(t, n, full) >= 0;
}

/* The convention: "a.b.c.t" -> "a_b_c.t", weight/bias of a layer with
 * scale/shift -> scale/shift. */
static void torch_to_larch_default(const mtensor *t, int n, const char *name, char *out, size_t len)
{
    char buf[NAME_LEN];
    snprintf(buf, sizeof buf, "%s", name);
    char *dot = strrchr(buf, '.');
    if (!dot) { snprintf(out, len, "%s", name); return; }
    *dot = '\0';
    const char *tensor = dot + 1;
    for (char *q = buf; *q; q++) if (*q == '.') *q = '_';
    if (!strcmp(tensor, "weight") && layer_has(t, n, buf, "scale")) tensor = "scale";
    else if (!strcmp(tensor, "bias") && layer_has(t, n, buf, "shift")) tensor = "shift";
    if (snprintf(out, len, "%s.%s", buf, tensor) >= (int)len) snprintf(out, len, "%s", name);   /* too long: no tensor */
}

static void larch_to_torch_default(const char *name, char *out, size_t len)
{
    char buf[NAME_LEN];
    snprintf(buf, sizeof buf, "%s", name);
    char *dot = strrchr(buf, '.');
    const char *tensor = dot ? dot + 1 : "";
    if (dot) *dot = '\0';
    if (!strcmp(tensor, "scale")) tensor = "weight";
    else if (!strcmp(tensor, "shift")) tensor = "bias";
    if (snprintf(out, len, "%s.%s", buf, tensor) >= (int)len) snprintf(out, len, "%s", name);
}

/* PyTorch's shape of a model tensor; *kind: 0 same layout, 1 conv (OIHW vs
 * OHWI), 2 dense reading a spatial map (columns (c, h, w) vs (h, w, c)). */
static int torch_shape(const mtensor *t, int64_t *shape, int *kind)
{
    *kind = 0;
    if (!t->is_param) { shape[0] = (int64_t)t->size; return 1; }
    const larch_param *p = t->p;
    for (int k = 0; k < p->ndim; k++) shape[k] = p->shape[k];
    const char *type = larch_layer_type(t->L);
    if (!strcmp(type, "conv2d") && p->ndim == 4) {
        shape[1] = p->shape[3];
        shape[2] = p->shape[1];
        shape[3] = p->shape[2];
        *kind = 1;
    } else if (!strcmp(type, "dense") && p->ndim == 2) {
        larch_shape in = larch_layer_in_shape(t->L, 0);
        if ((size_t)in.h * in.w > 1 && (size_t)in.h * in.w * in.c == (size_t)p->shape[1]) *kind = 2;
    }
    return p->ndim;
}

static void fmt_shape(char *out, size_t len, int ndim, const int64_t *shape)
{
    size_t o = (size_t)snprintf(out, len, "(");
    for (int k = 0; k < ndim && o < len; k++) o += (size_t)snprintf(out + o, len - o, "%s%lld", k ? ", " : "", (long long)shape[k]);
    if (o < len) snprintf(out + o, len - o, "%s)", ndim == 1 ? "," : "");
}

/* Copies between PyTorch's layout (src_torch = 1: torch -> larch). */
static void convert(const mtensor *t, int kind, const float *src, float *dst, int src_torch)
{
    if (kind == 0) { memcpy(dst, src, t->size * sizeof *dst); return; }
    const larch_param *p = t->p;
    if (kind == 1) {                                   /* larch (O, H, W, I), torch (O, I, H, W) */
        size_t O = (size_t)p->shape[0], H = (size_t)p->shape[1], W = (size_t)p->shape[2], I = (size_t)p->shape[3];
        for (size_t o = 0; o < O; o++)
            for (size_t h = 0; h < H; h++)
                for (size_t w = 0; w < W; w++)
                    for (size_t i = 0; i < I; i++) {
                        size_t l = ((o * H + h) * W + w) * I + i, q = ((o * I + i) * H + h) * W + w;
                        if (src_torch) dst[l] = src[q];
                        else dst[q] = src[l];
                    }
        return;
    }
    larch_shape in = larch_layer_in_shape(t->L, 0);      /* dense on (h, w, c): columns */
    size_t O = (size_t)p->shape[0], HW = (size_t)in.h * in.w, C = (size_t)in.c, I = HW * C;
    for (size_t o = 0; o < O; o++)
        for (size_t s = 0; s < HW; s++)
            for (size_t c = 0; c < C; c++) {
                size_t l = o * I + s * C + c, q = o * I + c * HW + s;
                if (src_torch) dst[l] = src[q];
                else dst[q] = src[l];
            }
}

larch_status larch_st_to_model(const larch_st_file *f, const char *file_name, const larch_st_map *map,
                               larch_model *m, FILE *log)
{
    mtensor *t = NULL;
    int n = model_tensors(m, &t);
    if (n < 0) return larch_fail(LARCH_ERR_NOMEM, "model tensors");
    int *from = malloc(((size_t)n + 1) * sizeof *from);
    if (!from) { free(t); return larch_fail(LARCH_ERR_NOMEM, "model tensors"); }
    for (int i = 0; i < n; i++) from[i] = -1;
    larch_status s = LARCH_OK;
    int dropped = 0;
    for (int i = 0; i < f->n && !s; i++) {
        const larch_st_tensor *st = &f->t[i];
        char lname[NAME_LEN], fs[128], ms[128];
        int line = 0;
        if (map) {
            int r = apply(map, st->name, 1, lname, sizeof lname, &line);
            if (r == 0) { s = larch_fail(LARCH_ERR_FORMAT, "%s: no rule of %s matches tensor '%s'", file_name, map->where, st->name); break; }
            if (r == 2) {
                if (log) fprintf(log, "  dropped  %s (%s:%d)\n", st->name, map->where, line);
                dropped++;
                continue;
            }
        } else {
            torch_to_larch_default(t, n, st->name, lname, sizeof lname);
        }
        fmt_shape(fs, sizeof fs, st->ndim, st->shape);
        int j = find_tensor(t, n, lname);
        if (j < 0) {
            s = larch_fail(LARCH_ERR_FORMAT, "%s: tensor '%s' %s maps to '%s', which is not a tensor of the model", file_name,
                           st->name, fs, lname);
            break;
        }
        if (from[j] >= 0) {
            s = larch_fail(LARCH_ERR_FORMAT, "%s: tensors '%s' and '%s' both map to the model's '%s'", file_name,
                           f->t[from[j]].name, st->name, lname);
            break;
        }
        int64_t want[4];
        int kind, nd = torch_shape(&t[j], want, &kind);
        int same = nd == st->ndim;
        for (int k = 0; same && k < nd; k++) same = want[k] == st->shape[k];
        if (!same) {
            fmt_shape(ms, sizeof ms, nd, want);
            char ls[128] = "";
            if (t[j].is_param) {
                int64_t lsh[4];
                for (int k = 0; k < t[j].p->ndim; k++) lsh[k] = t[j].p->shape[k];
                fmt_shape(ls, sizeof ls, t[j].p->ndim, lsh);
            } else {
                fmt_shape(ls, sizeof ls, 1, want);
            }
            s = larch_fail(LARCH_ERR_SHAPE, "%s: tensor '%s' has shape %s but the model's '%s' has shape %s (%s in PyTorch's layout)",
                           file_name, st->name, fs, lname, ls, ms);
            break;
        }
        convert(&t[j], kind, st->data, t[j].data, 1);
        from[j] = i;
        if (log) fprintf(log, "  loaded   %s <- %s %s %s%s\n", lname, st->name, larch_st_dtype_name(st->dtype), fs,
                         kind == 1 ? " (OIHW -> OHWI)" : kind == 2 ? " (columns CHW -> HWC)" : "");
    }
    int missing = 0, first = -1;
    for (int j = 0; j < n && !s; j++) if (from[j] < 0) { if (first < 0) first = j; missing++; }
    if (!s && missing)
        s = larch_fail(LARCH_ERR_FORMAT, "%s: the model's '%s' has no tensor in the file (%d model tensor(s) missing)%s",
                       file_name, t[first].name, missing, map ? "" : " (give the name rules with --map)");
    if (!s && log) fprintf(log, "%d tensor(s) loaded, %d dropped by rules\n", n, dropped);
    free(from);
    free(t);
    return s;
}

larch_status larch_st_from_model(const larch_model *m, const larch_st_map *map, larch_st_file *out)
{
    memset(out, 0, sizeof *out);
    mtensor *t = NULL;
    int n = model_tensors(m, &t);
    if (n < 0) return larch_fail(LARCH_ERR_NOMEM, "model tensors");
    out->t = calloc((size_t)n + 1, sizeof *out->t);
    if (!out->t) { free(t); return larch_fail(LARCH_ERR_NOMEM, "model tensors"); }
    larch_status s = LARCH_OK;
    for (int j = 0; j < n && !s; j++) {
        char tname[NAME_LEN];
        int line = 0;
        if (map) {
            if (!apply(map, t[j].name, 0, tname, sizeof tname, &line)) {
                s = larch_fail(LARCH_ERR_FORMAT, "no rule of %s matches the model's tensor '%s'", map->where, t[j].name);
                break;
            }
        } else {
            larch_to_torch_default(t[j].name, tname, sizeof tname);
        }
        for (int k = 0; k < out->n && !s; k++)
            if (!strcmp(out->t[k].name, tname))
                s = larch_fail(LARCH_ERR_FORMAT, "the model's '%s' and '%s' both map to '%s'", t[k].name, t[j].name, tname);
        if (s) break;
        larch_st_tensor *st = &out->t[out->n];
        int kind;
        st->ndim = torch_shape(&t[j], st->shape, &kind);
        st->dtype = LARCH_ST_F32;
        st->count = t[j].size;
        st->name = strdup(tname);
        st->data = malloc((t[j].size ? t[j].size : 1) * sizeof(float));
        out->n++;
        if (!st->name || !st->data) { s = larch_fail(LARCH_ERR_NOMEM, "tensor '%s'", t[j].name); break; }
        convert(&t[j], kind, t[j].data, st->data, 0);
    }
    free(t);
    if (s) larch_st_free(out);
    return s;
}
