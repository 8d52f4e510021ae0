/* safetensors.c - the safetensors file format (read and write, F32/F16/BF16;
 * the only json-c includer). The header is parsed and written with json-c.
 * Name rules and the PyTorch <-> larch layouts are in safetensors_map.c. */
#include "larch/safetensors.h"
#include "core/half.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u << 20)   /* the reference implementation's limit */

const char *larch_st_dtype_name(larch_st_dtype d)
{
    return d == LARCH_ST_F16 ? "F16" : d == LARCH_ST_BF16 ? "BF16" : "F32";
}

static size_t dtype_bytes(larch_st_dtype d) { return d == LARCH_ST_F32 ? 4 : 2; }

void larch_st_free(larch_st_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) { free(f->t[i].name); free(f->t[i].data); }
    free(f->t);
    f->t = NULL;
    f->n = 0;
}

typedef struct { size_t begin, end; int index; } span;

static int by_begin(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : x->index - y->index;
}

/* One entry of the header: checks it and fills t (not its data). */
static larch_status parse_entry(const char *path, const char *name, json_object *v, size_t data_len,
                                larch_st_tensor *t, span *sp)
{
    json_object *dt, *sh, *off;
    if (!json_object_is_type(v, json_type_object) || !json_object_object_get_ex(v, "dtype", &dt) ||
        !json_object_object_get_ex(v, "shape", &sh) || !json_object_object_get_ex(v, "data_offsets", &off))
        return larch_fail(LARCH_ERR_FORMAT, "%s: header entry '%s' is not an object with dtype, shape and data_offsets",
                          path, name);
    const char *d = json_object_is_type(dt, json_type_string) ? json_object_get_string(dt) : "";
    if (!strcmp(d, "F32")) t->dtype = LARCH_ST_F32;
    else if (!strcmp(d, "F16")) t->dtype = LARCH_ST_F16;
    else if (!strcmp(d, "BF16")) t->dtype = LARCH_ST_BF16;
    else return larch_fail(LARCH_ERR_FORMAT, "%s: tensor '%s' has dtype '%s' (larch reads F32, F16 and BF16)", path, name, d);
    if (!json_object_is_type(sh, json_type_array) || json_object_array_length(sh) > LARCH_ST_MAX_DIMS)
        return larch_fail(LARCH_ERR_FORMAT, "%s: tensor '%s': shape is not a list of at most %d sizes", path, name,
                          LARCH_ST_MAX_DIMS);
    t->ndim = (int)json_object_array_length(sh);
    t->count = 1;
    for (int k = 0; k < t->ndim; k++) {
        json_object *e = json_object_array_get_idx(sh, (size_t)k);
        int64_t s = json_object_is_type(e, json_type_int) ? json_object_get_int64(e) : -1;
        if (s < 0 || s > ((int64_t)1 << 40))
            return larch_fail(LARCH_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a size", path, name, k);
        t->shape[k] = s;
        t->count *= (size_t)s;
        if (t->count > ((size_t)1 << 40))
            return larch_fail(LARCH_ERR_FORMAT, "%s: tensor '%s': more than 2^40 elements", path, name);
    }
    int64_t o[2] = {-1, -1};
    if (json_object_is_type(off, json_type_array) && json_object_array_length(off) == 2)
        for (int k = 0; k < 2; k++) {
            json_object *e = json_object_array_get_idx(off, (size_t)k);
            if (json_object_is_type(e, json_type_int)) o[k] = json_object_get_int64(e);
        }
    if (o[0] < 0 || o[1] < o[0])
        return larch_fail(LARCH_ERR_FORMAT, "%s: tensor '%s': data_offsets is not [begin, end] with 0 <= begin <= end",
                          path, name);
    size_t want = t->count * dtype_bytes(t->dtype);
    if ((size_t)(o[1] - o[0]) != want)
        return larch_fail(LARCH_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] hold %lld bytes but %s %zu elements take %zu",
                          path, name, (long long)o[0], (long long)o[1], (long long)(o[1] - o[0]),
                          larch_st_dtype_name(t->dtype), t->count, want);
    if ((uint64_t)o[1] > data_len)
        return larch_fail(LARCH_ERR_FORMAT, "%s: truncated: tensor '%s' ends at data byte %lld but the file holds %zu bytes of data",
                          path, name, (long long)o[1], data_len);
    sp->begin = (size_t)o[0];
    sp->end = (size_t)o[1];
    return LARCH_OK;
}

static larch_status read_header(const char *path, FILE *fp, uint64_t *hlen, char **text, size_t *data_len)
{
    unsigned char b[8];
    if (fseek(fp, 0, SEEK_END) != 0) return larch_fail(LARCH_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    long size = ftell(fp);
    rewind(fp);
    if (size < 8 || fread(b, 1, 8, fp) != 8)
        return larch_fail(LARCH_ERR_FORMAT, "%s: truncated: %ld bytes, shorter than the 8-byte header length", path, size);
    *hlen = 0;
    for (int k = 7; k >= 0; k--) *hlen = (*hlen << 8) | b[k];
    if (*hlen < 2 || *hlen > ST_MAX_HEADER)
        return larch_fail(LARCH_ERR_FORMAT, "%s: header length %llu is out of range (2 to %u bytes): not a safetensors file?",
                          path, (unsigned long long)*hlen, ST_MAX_HEADER);
    if (*hlen > (uint64_t)size - 8)
        return larch_fail(LARCH_ERR_FORMAT, "%s: truncated: the header takes %llu bytes but the file has %ld after its length",
                          path, (unsigned long long)*hlen, size - 8);
    *text = malloc(*hlen + 1);
    if (!*text) return larch_fail(LARCH_ERR_NOMEM, "%s: header of %llu bytes", path, (unsigned long long)*hlen);
    if (fread(*text, 1, *hlen, fp) != *hlen) {
        free(*text);
        *text = NULL;
        return larch_fail(LARCH_ERR_IO, "%s: cannot read the header", path);
    }
    (*text)[*hlen] = '\0';
    *data_len = (size_t)size - 8 - (size_t)*hlen;
    return LARCH_OK;
}

static larch_status parse_json(const char *path, const char *text, size_t len, json_object **root)
{
    json_tokener *tok = json_tokener_new();
    if (!tok) return larch_fail(LARCH_ERR_NOMEM, "%s: JSON parser", path);
    *root = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!*root || e != json_tokener_success) {
        json_object_put(*root);
        *root = NULL;
        return larch_fail(LARCH_ERR_FORMAT, "%s: the header is not valid JSON: %s (at byte %zu of %zu)", path,
                          e == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(e), used, len);
    }
    for (size_t k = used; k < len; k++)            /* the writer may pad with spaces */
        if (text[k] != ' ' && text[k] != '\n' && text[k] != '\t' && text[k] != '\r') {
            json_object_put(*root);
            *root = NULL;
            return larch_fail(LARCH_ERR_FORMAT, "%s: the header has text after its JSON object (byte %zu)", path, k);
        }
    if (!json_object_is_type(*root, json_type_object)) {
        json_object_put(*root);
        *root = NULL;
        return larch_fail(LARCH_ERR_FORMAT, "%s: the header is JSON but not an object", path);
    }
    return LARCH_OK;
}

static larch_status convert_in(const char *path, larch_st_tensor *t, const unsigned char *raw)
{
    if (!t->count) return LARCH_OK;
    t->data = malloc(t->count * sizeof(float));
    if (!t->data) return larch_fail(LARCH_ERR_NOMEM, "%s: tensor '%s' (%zu values)", path, t->name, t->count);
    if (t->dtype == LARCH_ST_F32) { memcpy(t->data, raw, t->count * 4); return LARCH_OK; }   /* little-endian host */
    uint16_t *h = malloc(t->count * sizeof *h);
    if (!h) return larch_fail(LARCH_ERR_NOMEM, "%s: tensor '%s' (%zu values)", path, t->name, t->count);
    memcpy(h, raw, t->count * 2);
    if (t->dtype == LARCH_ST_F16) larch_f16_to_f32(h, t->data, t->count);
    else larch_bf16_to_f32(h, t->data, t->count);
    free(h);
    return LARCH_OK;
}

larch_status larch_st_read(const char *path, larch_st_file *out)
{
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "rb");
    if (!fp) return larch_fail(LARCH_ERR_IO, "%s: cannot open it: %s", path, strerror(errno));
    uint64_t hlen = 0;
    char *text = NULL;
    size_t data_len = 0;
    json_object *root = NULL;
    span *sp = NULL;
    unsigned char *raw = NULL;
    larch_status s = read_header(path, fp, &hlen, &text, &data_len);
    if (!s) s = parse_json(path, text, (size_t)hlen, &root);
    int n = 0;
    if (!s) {
        json_object_object_foreach(root, key, val) { (void)val; if (strcmp(key, "__metadata__") != 0) n++; }   /* at most */
        out->t = calloc(n ? (size_t)n : 1, sizeof *out->t);
        sp = calloc(n ? (size_t)n : 1, sizeof *sp);
        if (!out->t || !sp) s = larch_fail(LARCH_ERR_NOMEM, "%s: %d tensors", path, n);
    }
    if (!s) {
        json_object_object_foreach(root, key, val) {
            if (!strcmp(key, "__metadata__")) {
                if (!json_object_is_type(val, json_type_object)) {
                    s = larch_fail(LARCH_ERR_FORMAT, "%s: __metadata__ is not an object", path);
                    break;
                }
                continue;
            }
            const char *last = strrchr(key, '.');
            if (!strcmp(last ? last + 1 : key, "num_batches_tracked")) continue;   /* PyTorch's int64 counter: skipped */
            larch_st_tensor *t = &out->t[out->n];
            t->name = strdup(key);
            if (!t->name) { s = larch_fail(LARCH_ERR_NOMEM, "%s: names", path); break; }
            sp[out->n].index = out->n;
            out->n++;
            if ((s = parse_entry(path, key, val, data_len, t, &sp[out->n - 1]))) break;
        }
    }
    n = out->n;
    if (!s && n) {                                  /* read the data in file order */
        qsort(sp, (size_t)n, sizeof *sp, by_begin);
        larch_st_tensor *sorted = calloc((size_t)n, sizeof *sorted);
        if (!sorted) s = larch_fail(LARCH_ERR_NOMEM, "%s: tensors", path);
        for (int i = 0; !s && i < n; i++) sorted[i] = out->t[sp[i].index];
        if (!s) { free(out->t); out->t = sorted; }
        size_t big = 0;
        for (int i = 0; i < n; i++) if (sp[i].end - sp[i].begin > big) big = sp[i].end - sp[i].begin;
        if (!s && big && !(raw = malloc(big))) s = larch_fail(LARCH_ERR_NOMEM, "%s: %zu bytes", path, big);
        for (int i = 0; !s && i < n; i++) {
            size_t len = sp[i].end - sp[i].begin;
            if (len && (fseek(fp, (long)(8 + hlen + sp[i].begin), SEEK_SET) != 0 || fread(raw, 1, len, fp) != len))
                s = larch_fail(LARCH_ERR_IO, "%s: cannot read tensor '%s'", path, out->t[i].name);
            if (!s) s = convert_in(path, &out->t[i], raw);
        }
    }
    free(raw);
    free(sp);
    json_object_put(root);
    free(text);
    fclose(fp);
    if (s) larch_st_free(out);
    return s;
}

larch_status larch_st_write(const char *path, const larch_st_tensor *t, int n, larch_st_dtype dtype)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(t[i].name, t[j].name))
                return larch_fail(LARCH_ERR_INVALID, "%s: two tensors are named '%s'", path, t[i].name);
    json_object *root = json_object_new_object(), *meta = json_object_new_object();
    if (!root || !meta) { json_object_put(root); json_object_put(meta); return larch_fail(LARCH_ERR_NOMEM, "%s: header", path); }
    json_object_object_add(meta, "format", json_object_new_string("pt"));
    json_object_object_add(root, "__metadata__", meta);
    size_t off = 0, esz = dtype_bytes(dtype);
    for (int i = 0; i < n; i++) {
        json_object *e = json_object_new_object(), *sh = json_object_new_array(), *o = json_object_new_array();
        json_object_object_add(e, "dtype", json_object_new_string(larch_st_dtype_name(dtype)));
        for (int k = 0; k < t[i].ndim; k++) json_object_array_add(sh, json_object_new_int64(t[i].shape[k]));
        json_object_object_add(e, "shape", sh);
        json_object_array_add(o, json_object_new_int64((int64_t)off));
        off += t[i].count * esz;
        json_object_array_add(o, json_object_new_int64((int64_t)off));
        json_object_object_add(e, "data_offsets", o);
        json_object_object_add(root, t[i].name, e);
    }
    const char *js = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
    size_t jl = strlen(js), hl = (jl + 7) / 8 * 8;   /* data aligned to 8 bytes, as the reference writer does */
    FILE *fp = fopen(path, "wb");
    if (!fp) { json_object_put(root); return larch_fail(LARCH_ERR_IO, "%s: cannot create it: %s", path, strerror(errno)); }
    unsigned char b[8];
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)(((uint64_t)hl >> (8 * k)) & 0xff);
    int ok = fwrite(b, 1, 8, fp) == 8 && fwrite(js, 1, jl, fp) == jl;
    for (size_t k = jl; ok && k < hl; k++) ok = fputc(' ', fp) != EOF;
    json_object_put(root);
    for (int i = 0; ok && i < n; i++) {
        if (!t[i].count) continue;
        if (dtype == LARCH_ST_F32) { ok = fwrite(t[i].data, 4, t[i].count, fp) == t[i].count; continue; }
        uint16_t *h = malloc(t[i].count * sizeof *h);
        if (!h) { fclose(fp); remove(path); return larch_fail(LARCH_ERR_NOMEM, "%s: tensor '%s'", path, t[i].name); }
        if (dtype == LARCH_ST_F16) larch_f32_to_f16(t[i].data, h, t[i].count);
        else larch_f32_to_bf16(t[i].data, h, t[i].count);
        ok = fwrite(h, 2, t[i].count, fp) == t[i].count;
        free(h);
    }
    if (fclose(fp) != 0) ok = 0;
    if (!ok) { remove(path); return larch_fail(LARCH_ERR_IO, "%s: write failed: %s", path, strerror(errno)); }
    return LARCH_OK;
}
