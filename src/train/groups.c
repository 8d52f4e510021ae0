/* groups.c - many trainings in one MPI job: see groups.h and docs/groups.md. */
#include "train/groups.h"
#include "core/fs.h"

#include <json-c/json.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VARIANTS 100000

int larch_groups_wanted(const larch_node *cfg)
{
    const larch_node *sw = larch_map_get(cfg, "sweep");
    return larch_cfg_int(larch_map_get(cfg, "dist"), "groups") > 1 || larch_cfg_ints(sw, "seeds", NULL, 0) > 0 ||
           larch_cfg_int(sw, "bootstrap") > 0 || (larch_map_get(sw, "grid") && larch_map_get(sw, "grid")->n > 0);
}

/* A name part: '/' and blanks are not welcome in a directory name. */
static void clean(char *s)
{
    for (; *s; s++)
        if (*s == '/' || *s == ' ' || *s == '\t') *s = '_';
}

static larch_status add_set(larch_variant *v, const char *key, const char *value, const char *short_key)
{
    if (v->n_sets >= LARCH_VARIANT_SETS)
        return larch_fail(LARCH_ERR_CONFIG, "sweep: more than %d settings per variant", LARCH_VARIANT_SETS);
    int n = snprintf(v->sets[v->n_sets], LARCH_VARIANT_SET_LEN, "%s=%s", key, value);
    if (n >= LARCH_VARIANT_SET_LEN)
        return larch_fail(LARCH_ERR_CONFIG, "sweep: the setting %s=%s is longer than %d characters", key, value,
                          LARCH_VARIANT_SET_LEN - 1);
    v->n_sets++;
    size_t used = strlen(v->name);
    char part[LARCH_VARIANT_SET_LEN];
    snprintf(part, sizeof part, "%s=%s", short_key, value);
    clean(part);
    snprintf(v->name + used, sizeof v->name - used, "%s%s", used ? "," : "", part);
    return LARCH_OK;
}

larch_status larch_sweep_variants(const larch_node *cfg, larch_variant **out, int *n_out)
{
    *out = NULL;
    *n_out = 0;
    char where[300];
    const larch_node *sw = larch_map_get(cfg, "sweep"), *grid = larch_map_get(sw, "grid");
    long seeds[4096];
    int n_seeds = larch_cfg_ints(sw, "seeds", seeds, 4096);
    if (n_seeds > 4096) return larch_fail(LARCH_ERR_CONFIG, "sweep.seeds: more than 4096 seeds");
    long boot = larch_cfg_int(sw, "bootstrap");
    if (grid && grid->kind != LARCH_NODE_MAP)
        return larch_fail(LARCH_ERR_CONFIG, "%s: sweep.grid: expected a mapping key -> list of values "
                          "({optim.lr: [0.1, 0.05]})", larch_node_where(grid, where, sizeof where));
    int nk = grid ? grid->n : 0;
    double total = (double)(n_seeds ? n_seeds : 1) * (double)(boot > 0 ? boot : 1);
    for (int k = 0; k < nk; k++) {
        const larch_node *vals = grid->items[k];
        int ok = vals->kind == LARCH_NODE_SCALAR || (vals->kind == LARCH_NODE_SEQ && vals->n > 0);
        for (int j = 0; ok && vals->kind == LARCH_NODE_SEQ && j < vals->n; j++) ok = vals->items[j]->kind == LARCH_NODE_SCALAR;
        if (!ok)
            return larch_fail(LARCH_ERR_CONFIG, "%s: sweep.grid.%s: expected a non-empty list of plain values "
                              "([0.1, 0.05]; each applied as --set %s=VALUE)", larch_node_where(vals, where, sizeof where),
                              grid->keys[k], grid->keys[k]);
        total *= vals->kind == LARCH_NODE_SEQ ? vals->n : 1;
    }
    if (total > MAX_VARIANTS)
        return larch_fail(LARCH_ERR_CONFIG, "sweep: %.0f variants, more than %d", total, MAX_VARIANTS);
    int n = (int)total;
    larch_variant *v = calloc((size_t)n, sizeof *v);
    if (!v) return larch_fail(LARCH_ERR_NOMEM, "sweep: out of memory for %d variants", n);
    larch_status s = LARCH_OK;
    for (int i = 0; !s && i < n; i++) {
        int rest = i;
        int is = n_seeds ? rest % n_seeds : 0;
        rest = n_seeds ? rest / n_seeds : rest;
        int ib = boot > 0 ? rest % (int)boot : 0;
        rest = boot > 0 ? rest / (int)boot : rest;
        int idx[256] = {0};
        for (int k = nk - 1; k >= 0; k--) {               /* the last grid key varies fastest */
            int len = grid->items[k]->kind == LARCH_NODE_SEQ ? grid->items[k]->n : 1;
            idx[k % 256] = rest % len;
            rest /= len;
        }
        for (int k = 0; !s && k < nk; k++) {
            const larch_node *vals = grid->items[k];
            const char *val = vals->kind == LARCH_NODE_SEQ ? vals->items[idx[k % 256]]->scalar : vals->scalar;
            const char *dot = strrchr(grid->keys[k], '.');
            s = add_set(&v[i], grid->keys[k], val, dot ? dot + 1 : grid->keys[k]);
        }
        char num[32];
        if (!s && boot > 0) { snprintf(num, sizeof num, "%d", ib); s = add_set(&v[i], "data.bootstrap", num, "boot"); }
        if (!s && n_seeds) { snprintf(num, sizeof num, "%ld", seeds[is]); s = add_set(&v[i], "train.seed", num, "seed"); }
        if (!s && !v[i].name[0]) snprintf(v[i].name, sizeof v[i].name, "run");
    }
    for (int i = 0; !s && i < n; i++)                     /* two grid keys with one last part */
        for (int j = 0; j < i; j++)
            if (!strcmp(v[i].name, v[j].name)) {
                for (int k = 0; k < n; k++) {
                    char tmp[sizeof v[k].name];
                    snprintf(tmp, sizeof tmp, "v%d,%s", k, v[k].name);
                    memcpy(v[k].name, tmp, sizeof tmp);
                }
                i = n;
                break;
            }
    if (s) { free(v); return s; }
    *out = v;
    *n_out = n;
    return LARCH_OK;
}

/* One variant on this group: load its config, train it, run the hook. */
static larch_status run_variant(const larch_groups_opts *o, const larch_variant *v, int index, const larch_comm *group,
                                larch_variant_result *r)
{
    const char *sets[256 + LARCH_VARIANT_SETS + 8];
    int n = 0;
    if (o->n_sets > 256) return larch_fail(LARCH_ERR_CONFIG, "too many --set options");
    for (int i = 0; i < o->n_sets; i++) sets[n++] = o->sets[i];
    sets[n++] = "sweep={}";                      /* a variant is a plain run */
    sets[n++] = "dist.groups=1";
    for (int i = 0; i < v->n_sets; i++) sets[n++] = v->sets[i];
    for (int i = 0; i < o->n_extra_sets && i < 4; i++) sets[n++] = o->extra_sets[i];
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/%s", o->out_dir, v->name);
    larch_node *cfg = NULL;
    double t0 = larch_comm_wtime();
    larch_status s = larch_run_load(o->config, sets, n, &cfg);
    FILE *log = NULL;
    if (!s && group->rank == 0) {
        s = larch_mkdir_p(dir);
        char path[4500];
        snprintf(path, sizeof path, "%s/train.log", dir);
        if (!s && !(log = fopen(path, "w"))) s = larch_fail(LARCH_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    }
    s = larch_comm_check(group, s);
    larch_train_result res;
    memset(&res, 0, sizeof res);
    if (!s) {
        larch_train_opts topts = {dir, log, 0, NULL, 1};
        s = larch_train(cfg, group, &topts, &res);
    }
    if (!s && o->hook && !larch_comm_broken(group)) s = larch_comm_check(group, o->hook(o->hook_ctx, index, cfg, group, &res));
    if (log) fclose(log);
    larch_node_free(cfg);
    r->ran = 1;
    r->status = s;
    r->steps = res.steps;
    r->final_loss = res.final_loss;
    r->test_loss = s ? NAN : res.test_loss;
    r->test_accuracy = s ? NAN : res.test_accuracy;
    r->wall_seconds = larch_comm_wtime() - t0;
    if (s) snprintf(r->message, sizeof r->message, "%s", larch_errmsg());
    return s;
}

/* A setting's value in JSON: a number when it reads as one, else text. */
static json_object *json_value(const char *text)
{
    char *end;
    double d = strtod(text, &end);
    if (*text && !*end && isfinite(d)) {
        long long i = strtoll(text, &end, 10);
        return !*end ? json_object_new_int64(i) : json_object_new_double_s(d, text);
    }
    if (!strcmp(text, "true") || !strcmp(text, "false")) return json_object_new_boolean(text[0] == 't');
    return json_object_new_string(text);
}

static json_object *json_num(double x)
{
    if (!isfinite(x)) return NULL;
    char t[32];
    snprintf(t, sizeof t, "%.6g", x);
    return json_object_new_double_s(x, t);
}

static larch_status write_summary(const char *out_dir, const larch_variant *v, const larch_variant_result *r, int n,
                                  int groups)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/summary.jsonl", out_dir);
    larch_status s = larch_mkdir_p(out_dir);
    FILE *f = s ? NULL : fopen(path, "w");
    if (!s && !f) return larch_fail(LARCH_ERR_IO, "%s: cannot write", path);
    if (s) return s;
    for (int i = 0; i < n; i++) {
        json_object *o = json_object_new_object(), *set = json_object_new_object();
        json_object_object_add(o, "variant", json_object_new_string(v[i].name));
        json_object_object_add(o, "index", json_object_new_int(i));
        json_object_object_add(o, "group", json_object_new_int(i % groups));
        for (int k = 0; k < v[i].n_sets; k++) {
            char key[LARCH_VARIANT_SET_LEN];
            snprintf(key, sizeof key, "%s", v[i].sets[k]);
            char *eq = strchr(key, '=');
            *eq = '\0';
            json_object_object_add(set, key, json_value(eq + 1));
        }
        json_object_object_add(o, "settings", set);
        const char *status = !r[i].ran ? "not run" : r[i].status == LARCH_ERR_INTERRUPTED ? "interrupted"
                           : r[i].status ? "failed" : "ok";
        json_object_object_add(o, "status", json_object_new_string(status));
        json_object_object_add(o, "steps", json_object_new_int64(r[i].steps));
        json_object_object_add(o, "final_train_loss", r[i].ran && r[i].steps ? json_num(r[i].final_loss) : NULL);
        json_object_object_add(o, "test_loss", json_num(r[i].test_loss));
        json_object_object_add(o, "test_accuracy", json_num(r[i].test_accuracy));
        json_object_object_add(o, "wall_seconds", r[i].ran ? json_num(r[i].wall_seconds) : NULL);
        json_object_object_add(o, "error", r[i].ran && r[i].status ? json_object_new_string(r[i].message) : NULL);
        fprintf(f, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    }
    if (fclose(f) != 0) return larch_fail(LARCH_ERR_IO, "%s: write failed", path);
    return LARCH_OK;
}

static void print_table(FILE *f, const larch_variant *v, const larch_variant_result *r, int n, const char *out_dir)
{
    int w = 7;
    for (int i = 0; i < n; i++) w = (int)strlen(v[i].name) > w ? (int)strlen(v[i].name) : w;
    if (w > 60) w = 60;
    fprintf(f, "\nsummary (%d variant%s; %s/summary.jsonl):\n", n, n == 1 ? "" : "s", out_dir);
    fprintf(f, "%-*s  %-7s %7s %12s %10s %9s %8s\n", w, "variant", "status", "steps", "train loss", "test loss", "test acc",
            "wall s");
    for (int i = 0; i < n; i++) {
        const larch_variant_result *x = r + i;
        const char *st = !x->ran ? "not run" : x->status == LARCH_ERR_INTERRUPTED ? "stopped" : x->status ? "FAILED" : "ok";
        char acc[16] = "-", tl[16] = "-", fl[16] = "-";
        if (isfinite(x->test_accuracy)) snprintf(acc, sizeof acc, "%.4f", x->test_accuracy);
        if (isfinite(x->test_loss)) snprintf(tl, sizeof tl, "%.4f", x->test_loss);
        if (x->ran && x->steps && isfinite(x->final_loss) && fabs(x->final_loss) < 1e6) snprintf(fl, sizeof fl, "%.4f", x->final_loss);
        else if (x->ran && x->steps) snprintf(fl, sizeof fl, "%.4g", x->final_loss);
        char wall[16] = "-";
        if (x->ran) snprintf(wall, sizeof wall, "%.1f", x->wall_seconds);
        fprintf(f, "%-*.*s  %-7s %7ld %12s %10s %9s %8s\n", w, w, v[i].name, st, x->steps, fl, tl, acc, wall);
        if (x->ran && x->status) fprintf(f, "%*s  error: %s\n", w, "", x->message);
    }
    fflush(f);
}

larch_status larch_groups_run(const larch_groups_opts *o, const larch_comm *world, larch_variant_result **results,
                              larch_variant **variants_out, int *n_variants, int *n_failed)
{
    *results = NULL;
    *variants_out = NULL;
    *n_variants = 0;
    *n_failed = 0;
    larch_node *cfg = NULL;
    larch_variant *v = NULL;
    int n = 0;
    larch_status s = larch_run_load(o->config, o->sets, o->n_sets, &cfg);
    long G = s ? 1 : larch_cfg_int(larch_map_get(cfg, "dist"), "groups");
    if (!s && world->size % G != 0)
        s = larch_fail(LARCH_ERR_CONFIG, "dist.groups: %ld groups do not divide the %d ranks of the job (run on a multiple "
                       "of %ld ranks, or choose a divisor of %d)", G, world->size, G, world->size);
    if (!s && o->variants) {
        v = malloc((size_t)o->n_variants * sizeof *v);
        if (!v) s = larch_fail(LARCH_ERR_NOMEM, "out of memory");
        else memcpy(v, o->variants, (size_t)o->n_variants * sizeof *v);
        n = o->n_variants;
    } else if (!s) {
        s = larch_sweep_variants(cfg, &v, &n);
    }
    larch_node_free(cfg);
    s = larch_comm_check(world, s);
    if (s) { free(v); return s; }
    int per = world->size / (int)G, g = world->rank / per;
    larch_comm group;
    s = larch_comm_check(world, larch_comm_split(world, g, &group));
    if (s) { free(v); return s; }
    if (world->rank == 0 && o->log) {
        fprintf(o->log, "groups: %d variant%s on %ld group%s of %d rank%s; runs in %s/<variant>/\n", n, n == 1 ? "" : "s",
                G, G == 1 ? "" : "s", per, per == 1 ? "" : "s", o->out_dir);
        if (n < G) fprintf(o->log, "groups: note: %ld group(s) have no variant and wait\n", G - n);
        fflush(o->log);
    }
    larch_variant_result *r = calloc((size_t)n, sizeof *r), *all = calloc((size_t)n * (size_t)world->size, sizeof *all);
    s = (r && all) ? LARCH_OK : larch_fail(LARCH_ERR_NOMEM, "out of memory for %d results", n);
    for (int i = 0; r && i < n; i++) r[i].final_loss = r[i].test_loss = r[i].test_accuracy = r[i].wall_seconds = NAN;
    s = larch_comm_check(world, s);
    int interrupted = 0, broken = 0;
    for (int i = g; !s && i < n && !interrupted; i += (int)G) {
        larch_status vs = run_variant(o, &v[i], i, &group, &r[i]);
        if (vs == LARCH_ERR_INTERRUPTED) interrupted = 1;
        if (vs && larch_comm_broken(&group)) { broken = 1; break; }
        if (group.rank == 0 && o->log) {
            if (vs) fprintf(o->log, "group %d: variant %s FAILED: %s\n", g, v[i].name, r[i].message);
            else fprintf(o->log, "group %d: variant %s done: %ld steps in %.1f s, test loss %.4f\n", g, v[i].name,
                         r[i].steps, r[i].wall_seconds, r[i].test_loss);
            fflush(o->log);
        }
    }
    if (broken) {                                /* this group cannot agree any more: end the job */
        char msg[1024];
        snprintf(msg, sizeof msg, "group %d cannot agree any more (%s); ending the job", g, larch_errmsg());
        larch_comm_abort(world, 1, msg);
    }
    /* every rank meets here; the early ones sleep */
    if (!s) s = larch_comm_idle_barrier(world, 0.05);
    if (!s) s = larch_comm_allgather(world, r, (size_t)n * sizeof *r, all);
    s = larch_comm_check(world, s);
    if (!s) {
        for (int i = 0; i < n; i++) r[i] = all[(size_t)((i % G) * per) * (size_t)n + (size_t)i];
        for (int i = 0; i < n; i++) *n_failed += !r[i].ran || r[i].status != LARCH_OK;
        if (world->rank == 0) {
            if (o->log) print_table(o->log, v, r, n, o->out_dir);
            s = write_summary(o->out_dir, v, r, n, (int)G);
        }
        s = larch_comm_check(world, s);
    }
    free(all);
    larch_comm_finalize(&group);
    if (s) { free(r); free(v); return s; }
    *results = r;
    *variants_out = v;
    *n_variants = n;
    return LARCH_OK;
}
