/* test_safetensors.c - safetensors files and the PyTorch <-> larch mapping.
 * The files are written byte by byte here (header JSON with fprintf, data
 * encoded by this file's own F16/BF16 encoders), not with larch_st_write:
 *  - a model of a conv2d (with bias), a batchnorm and a dense layer reading
 *    the conv's 2x2x3 map, loaded from F32, F16 and BF16 files: the conv
 *    weight transposed from OIHW, the batch-norm weight/bias/running
 *    statistics into scale/shift and the buffers, the dense columns
 *    reordered from (c, h, w) to (h, w, c); num_batches_tracked (I64)
 *    skipped;
 *  - export gives back PyTorch's names, shapes and the exact values, and
 *    larch_st_write + larch_st_read is bit-identical;
 *  - name rules: placeholders both ways, "-" drops, errors with the line;
 *  - errors: a truncated file, a header that is not JSON, an unsupported
 *    dtype, a missing model tensor, an extra file tensor, a shape mismatch,
 *    two file tensors on one model tensor, a tensor no rule matches. */
#include "check.h"
#include "larch/larch.h"
#include "larch/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TMPL "/tmp/larch_st_XXXXXX"

/* Independent encoders for the small integers (and halves) the test uses. */
static uint16_t enc_bf16(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    return (uint16_t)(u >> 16);                         /* exact: values fit 8 mantissa bits */
}
static uint16_t enc_f16(float v)
{
    if (v == 0.0f) return 0;
    uint16_t sign = v < 0 ? 0x8000 : 0;
    float a = v < 0 ? -v : v;
    int e = 0;
    while (a >= 2.0f) { a /= 2.0f; e++; }
    while (a < 1.0f) { a *= 2.0f; e--; }
    return (uint16_t)(sign | (uint16_t)((e + 15) << 10) | (uint16_t)((a - 1.0f) * 1024.0f));
}

typedef struct { const char *name, *dtype; int ndim; int shape[4]; const float *v; } entry;

static size_t count_of(const entry *e)
{
    size_t c = 1;
    for (int k = 0; k < e->ndim; k++) c *= (size_t)e->shape[k];
    return c;
}

/* Writes a safetensors file; `header` (when not NULL) replaces the JSON. */
static void write_file(const char *path, const entry *e, int n, const char *header)
{
    char json[8192];
    size_t o = (size_t)snprintf(json, sizeof json, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t bytes = count_of(&e[i]) * (!strcmp(e[i].dtype, "F32") ? 4 : !strcmp(e[i].dtype, "I64") ? 8 : 2);
        o += (size_t)snprintf(json + o, sizeof json - o, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", e[i].name, e[i].dtype);
        for (int k = 0; k < e[i].ndim; k++) o += (size_t)snprintf(json + o, sizeof json - o, "%s%d", k ? "," : "", e[i].shape[k]);
        o += (size_t)snprintf(json + o, sizeof json - o, "],\"data_offsets\":[%zu,%zu]}", off, off + bytes);
        off += bytes;
    }
    snprintf(json + o, sizeof json - o, "}");
    const char *h = header ? header : json;
    uint64_t len = strlen(h);
    FILE *f = fopen(path, "wb");
    for (int k = 0; k < 8; k++) fputc((int)((len >> (8 * k)) & 0xff), f);
    fwrite(h, 1, len, f);
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < count_of(&e[i]); j++) {
            float v = e[i].v[j];
            if (!strcmp(e[i].dtype, "F32")) fwrite(&v, 4, 1, f);
            else if (!strcmp(e[i].dtype, "I64")) { int64_t q = (int64_t)v; fwrite(&q, 8, 1, f); }
            else { uint16_t q = !strcmp(e[i].dtype, "F16") ? enc_f16(v) : enc_bf16(v); fwrite(&q, 2, 1, f); }
        }
    fclose(f);
}

/* PyTorch's tensors of the test model, in its layouts. */
static float conv_w[3 * 2 * 2 * 2], conv_b[3], bn_w[3], bn_b[3], bn_m[3], bn_v[3], fc_w[2 * 12], fc_b[2], nbt[1] = {7};

static void fill_values(void)
{
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < 2; i++)
            for (int h = 0; h < 2; h++)
                for (int w = 0; w < 2; w++) conv_w[((o * 2 + i) * 2 + h) * 2 + w] = (float)(o * 8 + i * 4 + h * 2 + w) - 11.5f;
    for (int c = 0; c < 3; c++) {
        conv_b[c] = 0.5f * (float)c - 1.0f;
        bn_w[c] = 1.0f + (float)c;
        bn_b[c] = 1.0f - 2.0f * (float)c;
        bn_m[c] = 0.25f * (float)c;
        bn_v[c] = 3.0f + (float)c;
    }
    for (int j = 0; j < 24; j++) fc_w[j] = (float)j - 12.0f;   /* row o, column c*4 + s */
    fc_b[0] = 5.0f;
    fc_b[1] = -6.0f;
}

static void make_entries(entry *e, const char *dtype)
{
    entry t[] = {
        {"conv.weight", dtype, 4, {3, 2, 2, 2}, conv_w}, {"conv.bias", dtype, 1, {3}, conv_b},
        {"bn.weight", dtype, 1, {3}, bn_w},              {"bn.bias", dtype, 1, {3}, bn_b},
        {"bn.running_mean", dtype, 1, {3}, bn_m},        {"bn.running_var", dtype, 1, {3}, bn_v},
        {"bn.num_batches_tracked", "I64", 0, {0}, nbt},
        {"fc.weight", dtype, 2, {2, 12}, fc_w},          {"fc.bias", dtype, 1, {2}, fc_b},
    };
    memcpy(e, t, sizeof t);
}
#define N_ENTRIES 9

static larch_model *make_model(void)
{
    larch_model *m = NULL;
    larch_conv2d_opts c = LARCH_CONV2D_DEFAULTS;
    c.filters = 3;
    c.kernel = 2;
    larch_dense_opts d = LARCH_DENSE_DEFAULTS;
    d.units = 2;
    CHECK_OK(larch_model_create(&m, (larch_shape){3, 3, 2}));
    CHECK_OK(larch_model_add_conv2d(m, "conv", NULL, &c));     /* (2, 2, 3) */
    CHECK_OK(larch_model_add_batchnorm(m, "bn", NULL, NULL));
    CHECK_OK(larch_model_add_dense(m, "fc", NULL, &d));         /* reads the 2x2x3 map */
    CHECK_OK(larch_model_finalize(m));
    larch_model_init(m, 1);
    return m;
}

static const float *param(larch_model *m, const char *name)
{
    int i = larch_model_param_index(m, name);
    CHECK(i >= 0, "no parameter %s", name);
    return i >= 0 ? larch_model_param_data(m, i) : conv_b;
}

static const float *buffer(larch_model *m, const char *name)
{
    for (int i = 0; i < larch_model_n_buffers(m); i++)
        if (!strcmp(larch_model_buffer(m, i)->name, name)) return larch_model_buffer_data(m, i);
    CHECK(0, "no buffer %s", name);
    return conv_b;
}

/* The model holds exactly the test's tensors, in larch's layouts. */
static void check_model(larch_model *m, const char *what)
{
    const float *w = param(m, "conv.weight");
    int bad = 0;
    for (int o = 0; o < 3; o++)
        for (int h = 0; h < 2; h++)
            for (int x = 0; x < 2; x++)
                for (int i = 0; i < 2; i++)
                    bad += w[((o * 2 + h) * 2 + x) * 2 + i] != conv_w[((o * 2 + i) * 2 + h) * 2 + x];
    CHECK(bad == 0, "%s: conv.weight: %d values not transposed from OIHW", what, bad);
    const float *fw = param(m, "fc.weight");
    bad = 0;
    for (int o = 0; o < 2; o++)
        for (int s = 0; s < 4; s++)
            for (int c = 0; c < 3; c++) bad += fw[o * 12 + s * 3 + c] != fc_w[o * 12 + c * 4 + s];
    CHECK(bad == 0, "%s: fc.weight: %d columns not reordered from (c, h, w)", what, bad);
    CHECK(!memcmp(param(m, "conv.bias"), conv_b, sizeof conv_b), "%s: conv.bias", what);
    CHECK(!memcmp(param(m, "bn.scale"), bn_w, sizeof bn_w), "%s: bn.scale", what);
    CHECK(!memcmp(param(m, "bn.shift"), bn_b, sizeof bn_b), "%s: bn.shift", what);
    CHECK(!memcmp(buffer(m, "bn.running_mean"), bn_m, sizeof bn_m), "%s: bn.running_mean", what);
    CHECK(!memcmp(buffer(m, "bn.running_var"), bn_v, sizeof bn_v), "%s: bn.running_var", what);
    CHECK(!memcmp(param(m, "fc.bias"), fc_b, sizeof fc_b), "%s: fc.bias", what);
}

static void test_dtypes(const char *dir)
{
    const char *types[] = {"F32", "F16", "BF16"};
    for (int k = 0; k < 3; k++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, types[k]);
        entry e[N_ENTRIES];
        make_entries(e, types[k]);
        write_file(path, e, N_ENTRIES, NULL);
        larch_st_file f;
        CHECK_OK(larch_st_read(path, &f));
        CHECK(f.n == N_ENTRIES - 1, "%s: %d tensors read (num_batches_tracked skipped: want %d)", types[k], f.n, N_ENTRIES - 1);
        larch_model *m = make_model();
        CHECK_OK(larch_st_to_model(&f, path, NULL, m, NULL));
        check_model(m, types[k]);
        larch_st_free(&f);
        larch_model_free(m);
    }
}

static void test_export(const char *dir)
{
    char path[256], path2[256];
    snprintf(path, sizeof path, "%s/F32.safetensors", dir);
    snprintf(path2, sizeof path2, "%s/export.safetensors", dir);
    larch_st_file f, ex, back;
    CHECK_OK(larch_st_read(path, &f));
    larch_model *m = make_model();
    CHECK_OK(larch_st_to_model(&f, path, NULL, m, NULL));
    CHECK_OK(larch_st_from_model(m, NULL, &ex));
    CHECK(ex.n == f.n, "export: %d tensors, want %d", ex.n, f.n);
    for (int i = 0; i < ex.n; i++) {
        int j = 0;
        while (j < f.n && strcmp(f.t[j].name, ex.t[i].name) != 0) j++;
        CHECK(j < f.n, "export: tensor '%s' is not a PyTorch name of the file", ex.t[i].name);
        if (j == f.n) continue;
        CHECK(ex.t[i].ndim == f.t[j].ndim && !memcmp(ex.t[i].shape, f.t[j].shape, sizeof(int64_t) * (size_t)f.t[j].ndim),
              "export: '%s' has another shape", ex.t[i].name);
        CHECK(ex.t[i].count == f.t[j].count && !memcmp(ex.t[i].data, f.t[j].data, f.t[j].count * 4),
              "export: '%s' values differ from the file's", ex.t[i].name);
    }
    CHECK_OK(larch_st_write(path2, ex.t, ex.n, LARCH_ST_F32));
    CHECK_OK(larch_st_read(path2, &back));
    int same = back.n == ex.n;
    for (int i = 0; same && i < ex.n; i++)
        same = !strcmp(back.t[i].name, ex.t[i].name) && back.t[i].count == ex.t[i].count &&
               !memcmp(back.t[i].data, ex.t[i].data, ex.t[i].count * 4);
    CHECK(same, "larch_st_write then larch_st_read is not bit-identical");
    larch_st_free(&back);
    CHECK_OK(larch_st_write(path2, ex.t, ex.n, LARCH_ST_BF16));   /* exact small values: bf16 keeps them */
    CHECK_OK(larch_st_read(path2, &back));
    same = back.n == ex.n;
    for (int i = 0; same && i < ex.n; i++) same = back.t[i].dtype == LARCH_ST_BF16 && !memcmp(back.t[i].data, ex.t[i].data, ex.t[i].count * 4);
    CHECK(same, "BF16 write/read of exactly representable values differs");
    larch_st_free(&back);
    larch_st_free(&ex);
    larch_st_free(&f);
    larch_model_free(m);
}

static void test_rules(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/renamed.safetensors", dir);
    entry e[N_ENTRIES + 1];
    make_entries(e, "F32");
    const char *names[] = {"backbone.features.0.weight", "backbone.features.0.bias", "backbone.features.1.weight",
                           "backbone.features.1.bias", "backbone.features.1.running_mean",
                           "backbone.features.1.running_var", "backbone.features.1.num_batches_tracked",
                           "head.weight", "head.bias"};
    for (int i = 0; i < N_ENTRIES; i++) e[i].name = names[i];
    e[N_ENTRIES] = (entry){"aux.weight", "F32", 1, {2}, fc_b};
    write_file(path, e, N_ENTRIES + 1, NULL);
    const char *rules =
        "# backbone\n"
        "backbone.features.0.{1}        conv.{1}\n"
        "backbone.features.1.weight     bn.scale   # batch norm\n"
        "backbone.features.1.bias       bn.shift\n"
        "backbone.features.1.running_{1} bn.running_{1}\n"
        "head.{1}  fc.{1}\n"
        "aux.{1}   -\n";
    larch_st_map *map = NULL;
    CHECK_OK(larch_st_map_parse(rules, "rules.map", &map));
    larch_st_file f, ex;
    CHECK_OK(larch_st_read(path, &f));
    larch_model *m = make_model();
    CHECK_OK(larch_st_to_model(&f, path, map, m, NULL));
    check_model(m, "rules");
    CHECK_OK(larch_st_from_model(m, map, &ex));
    int ok = ex.n == N_ENTRIES - 1;
    for (int i = 0; ok && i < ex.n; i++) {
        int j = 0;
        while (j < N_ENTRIES && strcmp(names[j], ex.t[i].name) != 0) j++;
        ok = j < N_ENTRIES;
    }
    CHECK(ok, "export through the rules does not give back the file's names (%d tensors)", ex.n);
    larch_st_free(&ex);
    /* no rule matches a tensor */
    larch_st_map *short_map = NULL;
    CHECK_OK(larch_st_map_parse("head.{1} fc.{1}\n", "short.map", &short_map));
    CHECK_FAIL(larch_st_to_model(&f, path, short_map, m, NULL), LARCH_ERR_FORMAT,
               "no rule of short.map matches tensor 'backbone.features.0.weight'");
    CHECK_FAIL(larch_st_from_model(m, short_map, &ex), LARCH_ERR_FORMAT, "no rule of short.map matches the model's tensor 'conv.weight'");
    larch_st_map_free(short_map);
    /* two file tensors onto one model tensor */
    larch_st_map *dup = NULL;
    CHECK_OK(larch_st_map_parse("backbone.features.0.{1} conv.{1}\nbackbone.features.1.weight conv.bias\nhead.{1} fc.{1}\naux.{1} -\n",
                                "dup.map", &dup));
    CHECK_FAIL(larch_st_to_model(&f, path, dup, m, NULL), LARCH_ERR_FORMAT,
               "tensors 'backbone.features.0.bias' and 'backbone.features.1.weight' both map to the model's 'conv.bias'");
    larch_st_map_free(dup);
    /* rules file errors */
    larch_st_map *bad = NULL;
    CHECK_FAIL(larch_st_map_parse("a.{1}.w  b_{2}.w\n", "bad.map", &bad), LARCH_ERR_CONFIG, "bad.map:1: placeholder {1} is on one side only");
    CHECK_FAIL(larch_st_map_parse("# c\n\na.w b.w c.w\n", "bad.map", &bad), LARCH_ERR_CONFIG, "bad.map:3: expected `TORCH_PATTERN LARCH_PATTERN`");
    CHECK_FAIL(larch_st_map_parse("a{x}.w b.w\n", "bad.map", &bad), LARCH_ERR_CONFIG, "bad.map:1: 'a{x}.w': braces only as placeholders");
    CHECK(bad == NULL, "a failed parse returns no map");
    larch_st_free(&f);
    larch_st_map_free(map);
    larch_model_free(m);
}

static void test_errors(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/err.safetensors", dir);
    entry e[N_ENTRIES];
    larch_st_file f;
    larch_model *m = make_model();

    make_entries(e, "F32");                          /* truncated: the last bytes of fc.bias missing */
    write_file(path, e, N_ENTRIES, NULL);
    FILE *fp = fopen(path, "rb");
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fclose(fp);
    CHECK(truncate(path, size - 3) == 0, "truncate");
    CHECK_FAIL(larch_st_read(path, &f), LARCH_ERR_FORMAT, "truncated: tensor 'fc.bias' ends at data byte");
    CHECK(truncate(path, 5) == 0, "truncate");
    CHECK_FAIL(larch_st_read(path, &f), LARCH_ERR_FORMAT, "shorter than the 8-byte header length");

    write_file(path, e, N_ENTRIES, "{\"conv.weight\": {\"dtype\": \"F32\", \"shape\": [3, 2,");   /* bad JSON */
    CHECK_FAIL(larch_st_read(path, &f), LARCH_ERR_FORMAT, "the header is not valid JSON");
    write_file(path, e, 0, "[1, 2]");
    CHECK_FAIL(larch_st_read(path, &f), LARCH_ERR_FORMAT, "the header is JSON but not an object");
    write_file(path, e, 0, "{\"x\": {\"dtype\": \"F32\", \"shape\": [2]}}");
    CHECK_FAIL(larch_st_read(path, &f), LARCH_ERR_FORMAT, "header entry 'x' is not an object with dtype, shape and data_offsets");
    write_file(path, e, 0, "{\"x\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}");
    CHECK_FAIL(larch_st_read(path, &f), LARCH_ERR_FORMAT, "tensor 'x': data_offsets [0, 8] hold 8 bytes but F32 3 elements take 12");

    make_entries(e, "F32");
    e[0].dtype = "F64";                             /* unsupported dtype (8 bytes: the writer's I64 size is not used) */
    write_file(path, e, 0, "{\"conv.weight\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]}}");
    CHECK_FAIL(larch_st_read(path, &f), LARCH_ERR_FORMAT, "tensor 'conv.weight' has dtype 'F64' (larch reads F32, F16 and BF16)");

    make_entries(e, "F32");                          /* a missing tensor: fc.bias */
    write_file(path, e, N_ENTRIES - 1, NULL);
    CHECK_OK(larch_st_read(path, &f));
    CHECK_FAIL(larch_st_to_model(&f, path, NULL, m, NULL), LARCH_ERR_FORMAT, "the model's 'fc.bias' has no tensor in the file");
    larch_st_free(&f);

    entry extra[N_ENTRIES + 1];                      /* a tensor the model does not have */
    make_entries(extra, "F32");
    extra[N_ENTRIES] = (entry){"fc2.weight", "F32", 2, {1, 2}, fc_b};
    write_file(path, extra, N_ENTRIES + 1, NULL);
    CHECK_OK(larch_st_read(path, &f));
    CHECK_FAIL(larch_st_to_model(&f, path, NULL, m, NULL), LARCH_ERR_FORMAT,
               "tensor 'fc2.weight' (1, 2) maps to 'fc2.weight', which is not a tensor of the model");
    larch_st_free(&f);

    make_entries(e, "F32");                          /* a shape mismatch: conv.weight as (3, 2, 4, 1) */
    e[0].shape[2] = 4;
    e[0].shape[3] = 1;
    write_file(path, e, N_ENTRIES, NULL);
    CHECK_OK(larch_st_read(path, &f));
    CHECK_FAIL(larch_st_to_model(&f, path, NULL, m, NULL), LARCH_ERR_SHAPE,
               "tensor 'conv.weight' has shape (3, 2, 4, 1) but the model's 'conv.weight' has shape (3, 2, 2, 2) "
               "((3, 2, 2, 2) in PyTorch's layout)");
    larch_st_free(&f);
    make_entries(e, "F32");                          /* and a dense one: fc.weight transposed */
    e[7].shape[0] = 12;
    e[7].shape[1] = 2;
    write_file(path, e, N_ENTRIES, NULL);
    CHECK_OK(larch_st_read(path, &f));
    CHECK_FAIL(larch_st_to_model(&f, path, NULL, m, NULL), LARCH_ERR_SHAPE,
               "tensor 'fc.weight' has shape (12, 2) but the model's 'fc.weight' has shape (2, 12)");
    larch_st_free(&f);
    CHECK_FAIL(larch_st_read("/nonexistent/x.safetensors", &f), LARCH_ERR_IO, "/nonexistent/x.safetensors: cannot open it");
    larch_model_free(m);
}

int main(void)
{
    char dir[] = TMPL;
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    fill_values();
    test_dtypes(dir);
    test_export(dir);
    test_rules(dir);
    test_errors(dir);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_result("test_safetensors");
}
