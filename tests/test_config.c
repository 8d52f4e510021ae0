/* test_config.c - YAML config trees and their validation: parsing with line
 * numbers, write/parse round trips, --set overrides, defaults, and every
 * kind of bad config, each of which must name the file, the line and the
 * key (and the valid keys or choices where there are some). */
#include "check.h"
#include "larch/larch.h"

#include <stdlib.h>
#include <unistd.h>

static const larch_key inner_keys[] = {
    {"flip", LARCH_T_BOOL, "false", 0, 0, NULL, NULL, "flip"},
    {"pad", LARCH_T_INT, "0", 0, 8, NULL, NULL, "pad"},
    {0}};
static const larch_key keys[] = {
    {"batch_size", LARCH_T_INT, "256", 1, 4096, NULL, NULL, "batch"},
    {"lr", LARCH_T_FLOAT, "0.1", 0, 10, NULL, NULL, "lr"},
    {"name", LARCH_T_ENUM, "sgd", 0, 0, "sgd|adam|lamb", NULL, "optimizer"},
    {"nesterov", LARCH_T_BOOL, "false", 0, 0, NULL, NULL, "nesterov"},
    {"dir", LARCH_T_STRING, "/tmp", 0, 0, NULL, NULL, "dir"},
    {"shape", LARCH_T_INTS, "[1, 2, 3]", 1, 100, NULL, NULL, "shape"},
    {"milestones", LARCH_T_FLOATS, "[]", 0, 1e6, NULL, NULL, "milestones"},
    {"units", LARCH_T_INT, NULL, 1, 1000, NULL, NULL, "required"},
    {"augment", LARCH_T_MAP, "{}", 0, 0, NULL, inner_keys, "nested"},
    {0}};

static larch_status check_text(const char *text)
{
    larch_node *n = NULL;
    larch_status s = larch_cfg_parse(text, "exp.yaml", &n);
    if (!s) s = larch_cfg_check(n, "opt", keys, NULL);
    larch_node_free(n);
    return s;
}

static void parsing(void)
{
    const char *text = "# a comment\n"
                       "train:\n"
                       "  batch_size: 64   # trailing comment\n"
                       "  name: 'quoted'\n"
                       "model:\n"
                       "  - {type: dense, units: 10}\n"
                       "  - type: relu\n"
                       "list: [1, 2.5, x]\n";
    larch_node *n = NULL;
    CHECK_OK(larch_cfg_parse(text, "t.yaml", &n));
    if (!n) return;
    larch_node *bs = larch_cfg_find(n, "train.batch_size");
    CHECK(bs && !strcmp(bs->scalar, "64") && bs->line == 3, "batch_size at line 3");
    larch_node *q = larch_cfg_find(n, "train.name");
    CHECK(q && q->quoted && !strcmp(q->scalar, "quoted"), "quoted scalar");
    larch_node *t = larch_cfg_find(n, "model.1.type");
    CHECK(t && !strcmp(t->scalar, "relu") && t->line == 7, "model.1.type at line 7");
    CHECK(larch_cfg_find(n, "model.2") == NULL && larch_cfg_find(n, "nope.x") == NULL, "absent paths");
    char where[64];
    CHECK(!strcmp(larch_node_where(larch_cfg_find(n, "list"), where, sizeof where), "t.yaml:8"), "where: %s", where);

    /* write, parse back, write again: identical text */
    char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    FILE *f = open_memstream(&a, &la);
    CHECK_OK(larch_cfg_write(n, f));
    fclose(f);
    larch_node *n2 = NULL;
    CHECK_OK(larch_cfg_parse(a, "again", &n2));
    f = open_memstream(&b, &lb);
    CHECK_OK(larch_cfg_write(n2, f));
    fclose(f);
    CHECK(la == lb && !strcmp(a, b), "round trip:\n%s\nvs\n%s", a, b);
    CHECK(larch_cfg_find(n2, "train.name")->quoted, "quotes survive the round trip");
    free(a); free(b);
    larch_node_free(n2);

    /* clone is deep and independent */
    larch_node *c = larch_node_clone(n);
    larch_node_free(n);
    CHECK(c && !strcmp(larch_cfg_find(c, "model.0.units")->scalar, "10"), "clone");
    CHECK(!strcmp(larch_node_where(larch_cfg_find(c, "list"), where, sizeof where), "t.yaml:8"), "clone keeps places: %s", where);

    /* --set */
    CHECK_OK(larch_cfg_set(c, "train.batch_size=128"));
    CHECK(!strcmp(larch_cfg_find(c, "train.batch_size")->scalar, "128"), "set scalar");
    CHECK_OK(larch_cfg_set(c, "model.0.units=5"));
    CHECK(!strcmp(larch_cfg_find(c, "model.0.units")->scalar, "5"), "set by index");
    CHECK_OK(larch_cfg_set(c, "list=[3, 4]"));
    CHECK(larch_cfg_find(c, "list")->n == 2, "set a list");
    CHECK_OK(larch_cfg_set(c, "optim.betas={a: 1, b: 2}"));
    CHECK(!strcmp(larch_cfg_find(c, "optim.betas.b")->scalar, "2"), "set creates maps");
    CHECK_FAIL(larch_cfg_set(c, "model.7.units=5"), LARCH_ERR_CONFIG, "not an index");
    CHECK_FAIL(larch_cfg_set(c, "train.batch_size.x=5"), LARCH_ERR_CONFIG, "inside a plain value");
    CHECK_FAIL(larch_cfg_set(c, "novalue"), LARCH_ERR_CONFIG, "expected key=value");
    CHECK_FAIL(larch_cfg_set(c, "a=[1, 2"), LARCH_ERR_CONFIG, "YAML syntax error");
    larch_node_free(c);

    CHECK_FAIL(larch_cfg_parse("a: 1\na: 2\n", "dup.yaml", &n), LARCH_ERR_CONFIG, "dup.yaml:2: duplicate key 'a'");
    CHECK_FAIL(larch_cfg_parse("a: [1, 2\nb: 3\n", "syn.yaml", &n), LARCH_ERR_CONFIG, "syn.yaml:");
    CHECK_FAIL(larch_cfg_parse("a: &x 1\nb: *x\n", "al.yaml", &n), LARCH_ERR_CONFIG, "al.yaml:2: YAML aliases");
    CHECK_FAIL(larch_cfg_load("/nonexistent/x.yaml", &n), LARCH_ERR_IO, "/nonexistent/x.yaml");
    CHECK_OK(larch_cfg_parse("", "empty", &n));
    CHECK(n && n->kind == LARCH_NODE_MAP && n->n == 0, "an empty document is an empty mapping");
    larch_node_free(n);
}

static void schema(void)
{
    larch_node *n = NULL;
    CHECK_OK(larch_cfg_parse("units: 3\nmilestones: [1.5, 3]\n", "ok.yaml", &n));
    CHECK_OK(larch_cfg_check(n, "opt", keys, NULL));
    CHECK(larch_cfg_int(n, "batch_size") == 256, "default int");
    CHECK_NEAR(larch_cfg_float(n, "lr"), 0.1, 1e-12);
    CHECK(!strcmp(larch_cfg_str(n, "name"), "sgd") && !larch_cfg_bool(n, "nesterov"), "default enum/bool");
    CHECK(larch_cfg_int(larch_map_get(n, "augment"), "pad") == 0, "nested defaults");
    long shape[3];
    double ms[4];
    CHECK(larch_cfg_ints(n, "shape", shape, 3) == 3 && shape[2] == 3, "default list");
    CHECK(larch_cfg_floats(n, "milestones", ms, 4) == 2 && ms[0] == 1.5, "floats");
    CHECK(larch_cfg_ints(n, "shape", shape, 2) == -1, "too long for the buffer");
    CHECK_OK(larch_cfg_check(n, "opt", keys, NULL));                 /* idempotent */
    larch_node_free(n);

    /* seven kinds of bad config; each names file:line and the key */
    CHECK_FAIL(check_text("units: 3\nbatch_sise: 4\n"), LARCH_ERR_CONFIG, "exp.yaml:2: unknown key 'opt.batch_sise'");
    CHECK_FAIL(check_text("units: 3\nbatch_sise: 4\n"), LARCH_ERR_CONFIG, "valid keys: batch_size, lr, name");
    CHECK_FAIL(check_text("units: 3\nbatch_size: abc\n"), LARCH_ERR_CONFIG, "exp.yaml:2: opt.batch_size: expected an integer, got 'abc'");
    CHECK_FAIL(check_text("units: 3\nbatch_size: 1.5\n"), LARCH_ERR_CONFIG, "opt.batch_size: expected an integer");
    CHECK_FAIL(check_text("units: 3\nbatch_size: '5'\n"), LARCH_ERR_CONFIG, "quoted text");
    CHECK_FAIL(check_text("units: 3\nlr: 11\n"), LARCH_ERR_CONFIG, "exp.yaml:2: opt.lr: 11 is out of range [0, 10]");
    CHECK_FAIL(check_text("units: 3\n\nname: sgdd\n"), LARCH_ERR_CONFIG, "exp.yaml:3: opt.name: 'sgdd' is not one of: sgd|adam|lamb");
    CHECK_FAIL(check_text("batch_size: 4\n"), LARCH_ERR_CONFIG, "opt: required key 'units' is missing");
    CHECK_FAIL(check_text("units: 3\nnesterov: maybe\n"), LARCH_ERR_CONFIG, "exp.yaml:2: opt.nesterov: expected true or false");
    CHECK_FAIL(check_text("units: 3\nshape: [1, x, 3]\n"), LARCH_ERR_CONFIG, "exp.yaml:2: opt.shape.1: expected an integer, got 'x'");
    CHECK_FAIL(check_text("units: 3\nshape: 4\n"), LARCH_ERR_CONFIG, "opt.shape: expected a list");
    CHECK_FAIL(check_text("units: 3\nshape: [1, 200]\n"), LARCH_ERR_CONFIG, "opt.shape.1: 200 is out of range");
    CHECK_FAIL(check_text("units: [3]\n"), LARCH_ERR_CONFIG, "exp.yaml:1: opt.units: expected an integer, got a list");
    CHECK_FAIL(check_text("units: 3\naugment:\n  flip: true\n  pd: 2\n"), LARCH_ERR_CONFIG, "exp.yaml:4: unknown key 'opt.augment.pd'");
    CHECK_FAIL(check_text("units: 3\naugment: 5\n"), LARCH_ERR_CONFIG, "opt.augment: expected a mapping");
    CHECK_FAIL(check_text("- 1\n- 2\n"), LARCH_ERR_CONFIG, "expected a mapping");
    CHECK_FAIL(check_text("units: 3\nlr: nan\n"), LARCH_ERR_CONFIG, "opt.lr: expected a number");
    const char *extra[] = {"type", NULL};
    CHECK_OK(larch_cfg_parse("type: x\nunits: 2\n", "e.yaml", &n));
    CHECK_OK(larch_cfg_check(n, "m", keys, extra));
    larch_node_free(n);
}

/* a whole experiment config through larch_run_load, from a file */
static void run_config(void)
{
    char path[] = "/tmp/larch_cfg_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    const char *text = "train:\n  batch_size: 32\n  epochs: 2\noptim: {name: sgd, lr: 0.01}\nmodel:\n  - {type: dense, units: 10}\n";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write");
    close(fd);
    larch_node *cfg = NULL;
    CHECK_OK(larch_run_load(path, NULL, 0, &cfg));
    if (cfg) {
        CHECK(larch_cfg_int(larch_map_get(cfg, "train"), "batch_size") == 32, "value from the file");
        CHECK(larch_cfg_int(larch_map_get(cfg, "train"), "seed") == 42, "default seed filled in");
        CHECK(!strcmp(larch_cfg_str(larch_map_get(cfg, "data"), "dir"), "/usr/share/datasets/fashion-mnist"), "default data dir");
        larch_node_free(cfg);
    }
    const char *sets[] = {"train.epochs=5", "optim.momentum=0.5"};
    CHECK_OK(larch_run_load(path, sets, 2, &cfg));
    if (cfg) {
        CHECK(larch_cfg_int(larch_map_get(cfg, "train"), "epochs") == 5, "--set wins");
        larch_node_free(cfg);
    }
    const char *bad[] = {"train.batch_sise=3"};
    CHECK_FAIL(larch_run_load(path, bad, 1, &cfg), LARCH_ERR_CONFIG, "--set train.batch_sise=3: unknown key 'train.batch_sise'");
    const char *bad2[] = {"train.epochs=0"};
    CHECK_FAIL(larch_run_load(path, bad2, 1, &cfg), LARCH_ERR_CONFIG, "--set train.epochs=0: train.epochs: 0 is out of range");
    const char *bad3[] = {"optim.name=adamax"};
    CHECK_FAIL(larch_run_load(path, bad3, 1, &cfg), LARCH_ERR_CONFIG, "is not one of: sgd|adam|adamw");
    const char *bad4[] = {"model=[]"};
    larch_node *c4 = NULL;
    CHECK_OK(larch_run_load(path, bad4, 1, &c4));
    larch_model *m = NULL;
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 4}, larch_map_get(c4, "model"), NULL, NULL, 1), LARCH_ERR_CONFIG,
               "expected a non-empty list of layers");
    larch_node_free(c4);
    unlink(path);
    CHECK_FAIL(larch_run_load(path, NULL, 0, &cfg), LARCH_ERR_IO, path);
}

int main(void)
{
    parsing();
    schema();
    run_config();
    return check_result("test_config");
}
