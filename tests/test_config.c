/* test_config.c - YAML config trees and their validation: parsing with line
 * numbers, write/parse round trips, --set overrides, defaults, and every
 * kind of bad config, each of which must name the file, the line and the
 * key (and the valid keys or choices where there are some); the limits of
 * the reader (size, NUL bytes, big mappings in linear time, long values cut
 * short in messages); checks across keys that `larch config` must share
 * with training; duplicate layer names; and the warnings about keys that
 * are set but ignored. */
#include "check.h"
#include "larch/larch.h"

#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
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
    /* what training rejects without data or ranks, `larch config` rejects too */
    const char *agree[][2] = {
        {"sched.milestones=[3, 1]", "--set sched.milestones=[3, 1]: sched.milestones: must be ascending (1 comes after 3)"},
        {"data.classes=[5, 2]", "--set data.classes=[5, 2]: data.classes: expected [lo, hi] with 0 <= lo <= hi < 10"},
        {"data.classes=[0, 10]", "data.classes: expected [lo, hi] with 0 <= lo <= hi < 10"},
        {"data.classes=[1]", "data.classes: expected [lo, hi]"},
        {"train.accumulate=5", "--set train.accumulate=5: train.accumulate: the batch of 32 is not divisible into 5 micro-batches"},
        {"sched.name=onecycle", NULL}, {"sched.warmup_epochs=1", "sched.warmup_epochs: onecycle has its own warm phase"}};
    CHECK_FAIL(larch_run_load(path, agree[0], 1, &cfg), LARCH_ERR_CONFIG, agree[0][1]);
    CHECK_FAIL(larch_run_load(path, agree[1], 1, &cfg), LARCH_ERR_CONFIG, agree[1][1]);
    CHECK_FAIL(larch_run_load(path, agree[2], 1, &cfg), LARCH_ERR_CONFIG, agree[2][1]);
    CHECK_FAIL(larch_run_load(path, agree[3], 1, &cfg), LARCH_ERR_CONFIG, agree[3][1]);
    CHECK_FAIL(larch_run_load(path, agree[4], 1, &cfg), LARCH_ERR_CONFIG, agree[4][1]);
    const char *onecycle[] = {agree[5][0], agree[6][0]};
    CHECK_FAIL(larch_run_load(path, onecycle, 2, &cfg), LARCH_ERR_CONFIG, agree[6][1]);
    const char *fine[] = {"sched.milestones=[1, 1, 3]", "data.classes=[2, 9]", "train.accumulate=4"};
    CHECK_OK(larch_run_load(path, fine, 3, &cfg));
    larch_node_free(cfg);
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

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The reader's limits: sizes, NUL bytes, many keys, bad UTF-8, --set paths,
 * and values echoed in messages. */
static void limits(void)
{
    larch_node *n = NULL;

    /* /dev/zero ends at its first byte (before: read until memory ran out;
     * the address-space cap makes that a quick failure instead of a swap storm) */
#if !defined(__SANITIZE_ADDRESS__)
    struct rlimit old, cap;
    getrlimit(RLIMIT_AS, &old);
    cap = old;
    cap.rlim_cur = (rlim_t)3 << 30;
    if (old.rlim_cur == RLIM_INFINITY || old.rlim_cur > cap.rlim_cur) setrlimit(RLIMIT_AS, &cap);
#endif
    double t0 = cpu_seconds();
    CHECK_FAIL(larch_cfg_load("/dev/zero", &n), LARCH_ERR_CONFIG, "/dev/zero: not a text file (a NUL byte at byte 1)");
    CHECK(cpu_seconds() - t0 < 0.5, "/dev/zero took %.2f s of CPU", cpu_seconds() - t0);
#if !defined(__SANITIZE_ADDRESS__)
    setrlimit(RLIMIT_AS, &old);
#endif

    /* a file one byte over the limit: refused, naming the file and the limit */
    char path[] = "/tmp/larch_big_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    FILE *f = fdopen(fd, "w");
    char line[64];
    memset(line, '#', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    fputs("a: 1\n", f);
    size_t written = 5;
    while (written + sizeof line <= (size_t)LARCH_CFG_MAX_BYTES) written += fwrite(line, 1, sizeof line, f);
    for (; written <= (size_t)LARCH_CFG_MAX_BYTES; written++) fputc('\n', f);
    fclose(f);
    CHECK_FAIL(larch_cfg_load(path, &n), LARCH_ERR_CONFIG, "larger than the 16 MiB a config file may have");
    CHECK(strstr(larch_errmsg(), path) != NULL, "names the file: %s", larch_errmsg());
    CHECK(truncate(path, (off_t)LARCH_CFG_MAX_BYTES) == 0, "truncate");          /* at the limit: read */
    CHECK_OK(larch_cfg_load(path, &n));
    CHECK(n && n->n == 1, "the file at the limit parses");
    larch_node_free(n);
    unlink(path);

    /* 40,000 keys parse in linear time (before: 3.6 s of CPU in duplicate
     * scans, 16 times the 10,000-key time). Under ASan (a slow malloc) only
     * the growth is checked, elsewhere also the time. */
    enum { KEYS = 40000 };
    char *text = malloc((size_t)KEYS * 24 + 64), *p = text, *p10 = NULL;
    for (int i = 0; i < KEYS; i++) {
        if (i == KEYS / 4) p10 = p;
        p += sprintf(p, "key%d: %d\n", i, i);
    }
    double t10 = 1e9, t40 = 1e9;
    for (int rep = 0; rep < 3; rep++) {                        /* the best of a few runs */
        char keep = *p10;
        *p10 = '\0';
        t0 = cpu_seconds();
        CHECK_OK(larch_cfg_parse(text, "big.yaml", &n));
        if (cpu_seconds() - t0 < t10) t10 = cpu_seconds() - t0;
        *p10 = keep;
        larch_node_free(n);
        if (rep == 2) break;
        t0 = cpu_seconds();
        CHECK_OK(larch_cfg_parse(text, "big.yaml", &n));
        if (cpu_seconds() - t0 < t40) t40 = cpu_seconds() - t0;
        CHECK(n && n->n == KEYS && !strcmp(larch_map_get(n, "key39999")->scalar, "39999"), "every key kept");
        larch_node_free(n);
    }
    printf("mapping of %d keys: %.3f s of CPU, of %d keys: %.3f s\n", KEYS / 4, t10, KEYS, t40);
    CHECK(t40 < 10.0 * t10 + 0.02, "4 times the keys took %.1f times the time (%.3f s, %.3f s)", t40 / t10, t10, t40);
#if !defined(__SANITIZE_ADDRESS__)
    CHECK(t40 < 1.0, "a mapping of %d keys took %.2f s of CPU", KEYS, t40);
#endif
    sprintf(p, "key17: again\n");                              /* a duplicate at the very end */
    CHECK_FAIL(larch_cfg_parse(text, "big.yaml", &n), LARCH_ERR_CONFIG, "big.yaml:40001: duplicate key 'key17' (first on line 18)");
    sprintf(p, "x: {a: 1, b: 2, a: 3}\n");                     /* and inside a small nested mapping */
    CHECK_FAIL(larch_cfg_parse(text, "big.yaml", &n), LARCH_ERR_CONFIG, "big.yaml:40001: duplicate key 'a' (first on line 40001)");
    free(text);

    /* invalid UTF-8 is reported on its own line (before: always line 1) */
    CHECK_FAIL(larch_cfg_parse("a: 1\nb: 2\nc: \xff\xfe\n", "u.yaml", &n), LARCH_ERR_CONFIG, "u.yaml:3: not valid UTF-8 text");
    CHECK_FAIL(larch_cfg_parse("a: 1\n# caf\xc3\n", "u.yaml", &n), LARCH_ERR_CONFIG, "u.yaml:2:");

    /* --set paths with an empty part are refused (before: optim..lr was optim.lr) */
    CHECK_OK(larch_cfg_parse("optim: {lr: 0.1}\n", "s.yaml", &n));
    CHECK_FAIL(larch_cfg_set(n, "optim..lr=1"), LARCH_ERR_CONFIG, "--set optim..lr=1: the key 'optim..lr' has an empty part");
    CHECK_FAIL(larch_cfg_set(n, ".optim.lr=1"), LARCH_ERR_CONFIG, "has an empty part");
    CHECK_FAIL(larch_cfg_set(n, "optim.=1"), LARCH_ERR_CONFIG, "has an empty part");
    const larch_node *lr = larch_cfg_find(n, "optim.lr");
    CHECK(lr && !strcmp(lr->scalar, "0.1"), "optim.lr untouched");

    /* long values are quoted in messages cut to LARCH_EXCERPT_MAX bytes and "..." */
    char ex[LARCH_EXCERPT_MAX + 4];
    CHECK(!strcmp(larch_excerpt("short", ex, sizeof ex), "short"), "short text unchanged");
    char long_text[200];
    memset(long_text, 'y', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    larch_excerpt(long_text, ex, sizeof ex);
    CHECK(strlen(ex) == LARCH_EXCERPT_MAX + 3 && !strcmp(ex + LARCH_EXCERPT_MAX, "..."), "cut: %s", ex);
    memcpy(long_text + LARCH_EXCERPT_MAX - 1, "\xc3\xa9", 2);     /* a 2-byte character across the cut */
    larch_excerpt(long_text, ex, sizeof ex);
    CHECK(strlen(ex) == LARCH_EXCERPT_MAX + 2 && !strcmp(ex + LARCH_EXCERPT_MAX - 1, "..."), "a character is not split: %s", ex);
    larch_node_free(n);

    size_t big = 10u << 20;                                    /* a 10 MB value */
    text = malloc(big + 64);
    memcpy(text, "units: 3\nlr: ", 13);
    memset(text + 13, 'z', big);
    strcpy(text + 13 + big, "\n");
    char want[LARCH_EXCERPT_MAX + 8] = "'";
    memset(want + 1, 'z', LARCH_EXCERPT_MAX);
    strcpy(want + 1 + LARCH_EXCERPT_MAX, "...'");
    CHECK_FAIL(check_text(text), LARCH_ERR_CONFIG, want);
    CHECK(strlen(larch_errmsg()) < 200, "a 10 MB value gives a %zu-byte message", strlen(larch_errmsg()));
    memcpy(text, "units: 3\n", 9);                               /* a long unknown key (YAML keys: < 1024 characters) */
    memset(text + 9, 'z', 1000);
    strcpy(text + 1009, ": 1\n");
    CHECK_FAIL(check_text(text), LARCH_ERR_CONFIG, "unknown key 'opt.zzzz");
    CHECK(strlen(larch_errmsg()) < 300 && strstr(larch_errmsg(), "...'"), "a long key: %zu bytes", strlen(larch_errmsg()));
    strcpy(text + 1009, ": 1\n");                                /* twice */
    memcpy(text + 1013, text + 9, 1000);
    strcpy(text + 2013, ": 2\n");
    CHECK_FAIL(check_text(text), LARCH_ERR_CONFIG, "...' (first on line 2)");
    CHECK(strlen(larch_errmsg()) < 200, "a duplicate long key: %zu bytes", strlen(larch_errmsg()));
    memcpy(text, "name: ", 6);                                  /* as a choice */
    memset(text + 6, 'z', 100);
    strcpy(text + 106, "\nunits: 3\n");
    CHECK_FAIL(check_text(text), LARCH_ERR_CONFIG, "...' is not one of: sgd|adam|lamb");
    free(text);
}

/* Two layers of one name: the error names the name and both places (before:
 * the message read the freed layer's name). */
static void layer_names(void)
{
    larch_node *layers = NULL;
    larch_model *m = NULL;
    CHECK_OK(larch_cfg_parse("- {type: dense, name: a, units: 4}\n- {type: relu}\n- {type: dense, name: a, units: 2}\n",
                             "dup.yaml", &layers));
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 4}, layers, NULL, NULL, 1), LARCH_ERR_CONFIG,
               "dup.yaml:3: model.2.name: layer name 'a' is used twice: by model.0 and by model.2");
    larch_node_free(layers);
    CHECK_OK(larch_cfg_parse("- {type: relu, name: relu1}\n- {type: relu}\n", "dup2.yaml", &layers));
    CHECK_FAIL(larch_model_build(&m, (larch_shape){1, 1, 4}, layers, NULL, NULL, 1), LARCH_ERR_CONFIG,
               "dup2.yaml:2: model.1.name: layer name 'relu1' is used twice: by model.0 and by model.1 (its default name");
    larch_node_free(layers);
}

static int has_warning(const larch_warnings *w, const char *needle)
{
    for (int i = 0; i < w->n; i++) if (strstr(w->msg[i], needle)) return 1;
    return 0;
}

/* Keys set but ignored are warnings (naming the key, its place and why),
 * not errors, and not silent; keys at their default are not reported. */
static void warnings(void)
{
    char path[] = "/tmp/larch_warn_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    const char *text = "train: {batch_size: 32}\n"
                       "optim: {name: sgd, lr: 0.05, momentum: 0.9, nesterov: true}\n"
                       "sched: {name: cosine, warmup_epochs: 0.1, min_lr: 0.001}\n"
                       "dist: {shard_optimizer: true, bucket_mb: 4, overlap: true}\n"
                       "data: {name: synthetic, synthetic: {classes: 10}}\n"
                       "loss: {type: mse, label_smoothing: 0.1, log_var_init: 1}\n"
                       "regularization: [{type: l1, coef: 0.001}, {type: l2, coef: 0.001, q: 3}]\n"
                       "model: [{type: dense, units: 10}]\n";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write");
    close(fd);
    /* the README's switch of optimizer and schedule from the command line */
    const char *sets[] = {"optim.name=lamb", "optim.lr=0.01", "sched.name=poly", "sched.gamma=0.5"};
    larch_node *cfg = NULL;
    larch_warnings w = {0};
    CHECK_OK(larch_run_load(path, sets, 4, &cfg));
    if (cfg) CHECK_OK(larch_run_warnings(cfg, &w));
    char want[512];
    snprintf(want, sizeof want, "%s:2: optim.nesterov is ignored: it applies to sgd only, and optim.name is 'lamb'", path);
    CHECK(has_warning(&w, want), "lacks '%s'", want);
    CHECK(has_warning(&w, "--set sched.gamma=0.5: sched.gamma is ignored: it applies to step, multistep, exponential only, "
                          "and sched.name is 'poly'"), "sched.gamma");
    snprintf(want, sizeof want, "%s:4: dist.bucket_mb is ignored: with dist.shard_optimizer", path);
    CHECK(has_warning(&w, want), "lacks '%s'", want);
    CHECK(has_warning(&w, "loss.label_smoothing is ignored: it applies to softmax_ce only, and loss.type is 'mse'"), "label_smoothing");
    CHECK(has_warning(&w, "loss.log_var_init is ignored: it applies to weighting: uncertainty only"), "log_var_init");
    CHECK(has_warning(&w, "regularization.1.q is ignored: it applies to type lq only, and regularization.1.type is 'l2'"), "q");
    CHECK(w.n == 6, "6 warnings, got %d (momentum and overlap are at their defaults, min_lr applies to poly)", w.n);
    for (int i = 0; i < w.n; i++) printf("  warning: %s\n", w.msg[i]);
    larch_warnings_free(&w);

    /* the resolved config (every key written out) reloads without warnings */
    if (cfg) {
        larch_node *loss = larch_map_get(cfg, "loss"), *reg = larch_map_get(cfg, "regularization");
        CHECK_OK(larch_map_set_scalar(loss, "label_smoothing", "0"));
        CHECK_OK(larch_map_set_scalar(loss, "log_var_init", "0"));
        CHECK_OK(larch_map_set_scalar(reg->items[1], "q", "2"));
        CHECK_OK(larch_map_set_scalar(larch_map_get(cfg, "optim"), "nesterov", "false"));
        CHECK_OK(larch_map_set_scalar(larch_map_get(cfg, "sched"), "gamma", "0.1"));
        CHECK_OK(larch_map_set_scalar(larch_map_get(cfg, "dist"), "bucket_mb", "25"));
        CHECK_OK(larch_cfg_save(cfg, path));
        larch_node_free(cfg);
        CHECK_OK(larch_run_load(path, NULL, 0, &cfg));
        if (cfg) CHECK_OK(larch_run_warnings(cfg, &w));
        CHECK(w.n == 0, "a resolved config: %d warnings (first: %s)", w.n, w.n ? w.msg[0] : "");
        larch_warnings_free(&w);
    }
    larch_node_free(cfg);

    /* the warmup keys */
    const char *warm[] = {"sched.name=step", "sched.warmup_epochs=0", "sched.warmup=exponential", "sched.warmup_start=0.1"};
    CHECK_OK(larch_run_load(path, warm, 4, &cfg));
    if (cfg) CHECK_OK(larch_run_warnings(cfg, &w));
    CHECK(w.n == 3 && has_warning(&w, "sched.warmup is ignored: there is no warmup") &&
          has_warning(&w, "sched.warmup_start is ignored: there is no warmup") &&
          has_warning(&w, "sched.min_lr is ignored: it applies to cosine, sgdr, poly only, and sched.name is 'step'"),
          "no warmup: %d warnings", w.n);
    larch_warnings_free(&w);
    larch_node_free(cfg);
    const char *steps[] = {"sched.warmup_epochs=2", "sched.warmup_steps=10"};
    CHECK_OK(larch_run_load(path, steps, 2, &cfg));
    if (cfg) CHECK_OK(larch_run_warnings(cfg, &w));
    CHECK(w.n == 1 && has_warning(&w, "sched.warmup_epochs is ignored: sched.warmup_steps overrides it"), "%d warnings", w.n);
    larch_warnings_free(&w);
    larch_node_free(cfg);
    /* unknown keys stay errors */
    const char *unknown[] = {"optim.nesterof=true"};
    CHECK_FAIL(larch_run_load(path, unknown, 1, &cfg), LARCH_ERR_CONFIG, "unknown key 'optim.nesterof'");
    unlink(path);
}

int main(void)
{
    parsing();
    schema();
    run_config();
    limits();
    layer_names();
    warnings();
    return check_result("test_config");
}
