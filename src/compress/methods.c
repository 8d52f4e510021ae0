/* methods.c - the table of compression methods and their command-line
 * spelling "name:key=value,key=value" (larch/compress.h). Each method lives
 * in its own file of src/compress and is listed here. */
#include "compress/methods.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const larch_compress_method methods[] = {
    {"fp16", "weights of dense/conv2d layers stored as IEEE half; options: layers=[...] (default all)",
     larch_quant_half_keys, larch_compress_fp16, 0},
    {"bf16", "weights of dense/conv2d layers stored as bfloat16; options: layers=[...] (default all)",
     larch_quant_half_keys, larch_compress_bf16, 0},
    {"int8", "int8 weights (per output channel) and inputs, run by oneDNN's int8 kernels; options: samples=512, "
     "calibration=auto|minmax|percentile|qat, percentile=99.99, batch=256, layers=[...]",
     larch_quant_int8_keys, larch_compress_int8, 1},
    {"structured", "remove conv2d filters / dense neurons of smallest weight norm and shrink the layers: "
                   "keep=0.5 | flops=F, norm=l2|l1, layers=[...]", larch_structured_keys, larch_compress_structured, 0},
    {"svd", "truncated-SVD factorization of dense (and listed conv2d) layers into two: "
            "rank=R | energy=E | size=0.5, layers=[...], force=false", larch_svd_keys, larch_compress_svd, 0},
    {"prune", "one-shot magnitude pruning stored sparse: sparsity=0.9, scope=layer|global, layers=[globs] "
              "(docs/compression/pruning.md)", larch_compress_prune_keys, larch_compress_prune, 0},
    {0}
};

const larch_compress_method *larch_compress_methods(int *count)
{
    int n = 0;
    while (methods[n].name) n++;
    if (count) *count = n;
    return methods;
}

const larch_compress_method *larch_compress_find(const char *name)
{
    for (int i = 0; methods[i].name; i++)
        if (!strcmp(methods[i].name, name)) return &methods[i];
    return NULL;
}

static larch_status unknown_method(const char *name)
{
    char list[512] = "";
    size_t len = 0;
    for (int i = 0; methods[i].name && len < sizeof list - 64; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", methods[i].name);
    return larch_fail(LARCH_ERR_INVALID, "unknown compression method '%s' (methods: %s)", name,
                      list[0] ? list : "none");
}

larch_status larch_compress_parse(const char *spec, const larch_compress_method **method, larch_node **opts)
{
    *method = NULL;
    *opts = NULL;
    const char *colon = strchr(spec, ':');
    size_t nlen = colon ? (size_t)(colon - spec) : strlen(spec);
    char name[64];
    if (nlen == 0 || nlen >= sizeof name) return unknown_method(spec);
    memcpy(name, spec, nlen);
    name[nlen] = 0;
    const larch_compress_method *m = larch_compress_find(name);
    if (!m) return unknown_method(name);

    /* "k=v,k=v" -> the YAML flow map "{k: v, k: v}" (values parsed as YAML:
     * numbers, words, and [a, b] lists whose commas are inside brackets). */
    const char *p = colon ? colon + 1 : "";
    size_t cap = 2 * strlen(p) + 8, len = 0;
    char *yaml = malloc(cap);
    if (!yaml) return larch_fail(LARCH_ERR_NOMEM, "compression options: out of memory");
    yaml[len++] = '{';
    int depth = 0, expect_key = 1;
    for (; *p; p++) {
        if (*p == '[') depth++;
        if (*p == ']') depth--;
        if (*p == '=' && expect_key && depth == 0) {
            yaml[len++] = ':';
            yaml[len++] = ' ';
            expect_key = 0;
        } else if (*p == ',' && depth == 0) {
            if (expect_key) break;   /* "k,": a key without a value */
            yaml[len++] = ',';
            yaml[len++] = ' ';
            expect_key = 1;
        } else {
            yaml[len++] = *p;
        }
    }
    yaml[len++] = '}';
    yaml[len] = 0;
    if (*p || (colon && colon[1] && expect_key)) {
        free(yaml);
        return larch_fail(LARCH_ERR_INVALID, "compression method '%s': options must read key=value[,key=value...] (got '%s')",
                          name, colon + 1);
    }
    char where[96];
    snprintf(where, sizeof where, "--method %s", name);
    larch_node *o = NULL;
    larch_status s = larch_cfg_parse(yaml, where, &o);
    free(yaml);
    if (s) return s;
    if (o->kind != LARCH_NODE_MAP) {
        larch_node_free(o);
        return larch_fail(LARCH_ERR_INVALID, "compression method '%s': options must read key=value[,key=value...]", name);
    }
    if (m->options && (s = larch_cfg_check(o, name, m->options, NULL))) {
        larch_node_free(o);
        return s;
    }
    *method = m;
    *opts = o;
    return LARCH_OK;
}
