/* run_report.c - DIR/run.json and the self-contained HTML report (see
 * run_report.h). The page is plain HTML with inline SVG charts and a few
 * lines of inline script (it counts the curves it shows, for the browser
 * test); nothing is fetched. While the run is going the page reloads itself
 * every 30 s. */
#include "train/run_report.h"
#include "train/run_metrics.h"
#include "larch/version.h"

#include <json-c/json.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char command_line[4096];

void larch_report_set_command(int argc, char **argv)
{
    size_t at = 0;
    command_line[0] = '\0';
    for (int i = 0; i < argc && at + 4 < sizeof command_line; i++) {
        const char *a = argv[i];
        int quote = a[0] == '\0' || strpbrk(a, " \t'\"$*?;&|<>()") != NULL;
        int n = snprintf(command_line + at, sizeof command_line - at, quote ? "%s'%s'" : "%s%s", i ? " " : "", a);
        if (n < 0) break;
        at += (size_t)n;
    }
    if (at >= sizeof command_line) at = sizeof command_line - 1;
    command_line[at] = '\0';
}

/* ---- run.json ---- */

static int write_json_atomic(const char *path, json_object *o, char *err, size_t err_len)
{
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int bad = !f || fputs(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE), f) < 0 ||
              fputc('\n', f) == EOF;
    if (f && fclose(f) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        snprintf(err, err_len, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void cpu_model(char *buf, size_t len)
{
    snprintf(buf, len, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *c = strchr(line, ':');
        if (!c) continue;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = '\0';
        snprintf(buf, len, "%s", c);
        break;
    }
    fclose(f);
}

int larch_report_start(const char *dir, const larch_report_info *in, char *err, size_t err_len)
{
    json_object *o = json_object_new_object();
    if (!o) { snprintf(err, err_len, "out of memory"); return -1; }
    char buf[512], host[256] = "unknown";
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_object_add(o, "larch_version", json_object_new_string(larch_version()));
    json_object_object_add(o, "status", json_object_new_string("running"));
    json_object_object_add(o, "started", json_object_new_string(buf));
    json_object_object_add(o, "command", json_object_new_string(command_line));
    gethostname(host, sizeof host - 1);
    json_object_object_add(o, "host", json_object_new_string(host));
    cpu_model(buf, sizeof buf);
    json_object_object_add(o, "cpu", json_object_new_string(buf));
    json_object_object_add(o, "cores", json_object_new_int((int)sysconf(_SC_NPROCESSORS_ONLN)));
    json_object_object_add(o, "ranks", json_object_new_int(in->ranks));
    json_object_object_add(o, "threads_per_rank", json_object_new_int(in->threads));
    json_object_object_add(o, "openblas_core", json_object_new_string(in->blas_core ? in->blas_core : "unknown"));
    const char *ct = getenv("OPENBLAS_CORETYPE");
    json_object_object_add(o, "openblas_coretype_env", json_object_new_string(ct ? ct : ""));
    json_object_object_add(o, "parameters", json_object_new_int64(in->params));
    json_object_object_add(o, "global_batch", json_object_new_int(in->global_batch));
    json_object_object_add(o, "total_steps", json_object_new_int64(in->total_steps));
    json_object_object_add(o, "steps_per_epoch", json_object_new_int64(in->steps_per_epoch));
    json_object_object_add(o, "start_step", json_object_new_int64(in->start_step));
    json_object_object_add(o, "checkpoint_dir", json_object_new_string(in->ckpt_dir ? in->ckpt_dir : ""));
    char path[1100];
    snprintf(path, sizeof path, "%s/run.json", dir);
    int rc = write_json_atomic(path, o, err, err_len);
    json_object_put(o);
    return rc;
}

int larch_report_finish(const char *dir, const larch_report_totals *t, char *err, size_t err_len)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/run.json", dir);
    json_object *o = json_object_from_file(path);
    if (!o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        snprintf(err, err_len, "%s: missing or not JSON", path);
        return -1;
    }
    char buf[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_object_object_add(o, "status", json_object_new_string(t->status));
    json_object_object_add(o, "ended", json_object_new_string(buf));
    json_object_object_add(o, "steps", json_object_new_int64(t->steps));
    json_object_object_add(o, "wall_s", json_object_new_double(t->wall_s));
    json_object_object_add(o, "samples_per_s", json_object_new_double(t->samples_per_s));
    json_object *ph = json_object_new_object();
    for (int k = 0; k < LARCH_PH_N; k++) json_object_object_add(ph, larch_phase_keys[k], json_object_new_double(t->phases[k]));
    json_object_object_add(o, "phases_rank0", ph);
    int rc = write_json_atomic(path, o, err, err_len);
    json_object_put(o);
    return rc;
}

/* ---- the page ---- */

static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static const char *jstr(json_object *o, const char *key, const char *dflt)
{
    json_object *v;
    if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)) return json_object_get_string(v);
    return dflt;
}

static double jnum(json_object *o, const char *key)
{
    json_object *v;
    if (o && json_object_object_get_ex(o, key, &v) &&
        (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
        return json_object_get_double(v);
    return NAN;
}

typedef struct series {
    char label[160];
    double *x, *y;
    int n;
} series;

static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

static double nice_step(double range, int ticks)
{
    double raw = range / ticks, mag = pow(10.0, floor(log10(raw))), r = raw / mag;
    return (r < 1.5 ? 1.0 : r < 3.0 ? 2.0 : r < 7.0 ? 5.0 : 10.0) * mag;
}

/* One chart: an inline SVG of the series against a shared x axis. */
static void chart(FILE *f, const char *title, const char *xlabel, const series *s, int ns)
{
    const double W = 460, H = 290, L = 62, R = 12, T = 28, B = 40, pw = W - L - R, ph = H - T - B;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    int points = 0;
    for (int i = 0; i < ns; i++)
        for (int j = 0; j < s[i].n; j++) {
            if (!isfinite(s[i].x[j]) || !isfinite(s[i].y[j])) continue;
            x0 = fmin(x0, s[i].x[j]); x1 = fmax(x1, s[i].x[j]);
            y0 = fmin(y0, s[i].y[j]); y1 = fmax(y1, s[i].y[j]);
            points++;
        }
    fprintf(f, "<figure><svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" "
               "height=\"%.0f\" data-points=\"%d\"><text x=\"%.0f\" y=\"17\" text-anchor=\"middle\" class=\"t\">", W, H, W, H,
            points, L + pw / 2);
    esc(f, title);
    fprintf(f, "</text><rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"#fff\" stroke=\"#888\"/>", L, T, pw, ph);
    if (points == 0) {
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"#888\">no data yet</text></svg></figure>\n",
                L + pw / 2, T + ph / 2);
        return;
    }
    if (x1 - x0 <= 0) { x0 -= 1; x1 += 1; }
    if (y1 - y0 <= 0) { double d = fabs(y0) > 0 ? 0.05 * fabs(y0) : 1; y0 -= d; y1 += d; }
    double pad = 0.05 * (y1 - y0);
    y0 -= pad; y1 += pad;
    double xs = nice_step(x1 - x0, 6), ys = nice_step(y1 - y0, 5);
    for (double v = ceil(y0 / ys) * ys; v <= y1 + 1e-9 * ys; v += ys) {
        double py = T + ph - (v - y0) / (y1 - y0) * ph;
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" class=\"k\">%.4g</text>", L, L + pw, py, py, L - 4, py + 4,
                fabs(v) < 1e-12 * ys ? 0.0 : v);
    }
    for (double v = ceil(x0 / xs) * xs; v <= x1 + 1e-9 * xs; v += xs) {
        double px = L + (v - x0) / (x1 - x0) * pw;
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"k\">%.4g</text>", px, px, T, T + ph, px, T + ph + 14,
                fabs(v) < 1e-12 * xs ? 0.0 : v);
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\" class=\"k\">", L + pw / 2, H - 6);
    esc(f, xlabel);
    fprintf(f, "</text>");
    for (int i = 0; i < ns; i++) {
        const char *c = colors[i % (sizeof colors / sizeof *colors)];
        fprintf(f, "<polyline class=\"curve\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\" data-label=\"", c);
        esc(f, s[i].label);
        fprintf(f, "\" points=\"");
        int stride = s[i].n > 1500 ? (s[i].n + 1499) / 1500 : 1;   /* at most ~1500 points a curve (and the last) */
        for (int j = 0; j < s[i].n; j++)
            if ((j % stride == 0 || j == s[i].n - 1) && isfinite(s[i].x[j]) && isfinite(s[i].y[j]))
                fprintf(f, "%.1f,%.1f ", L + (s[i].x[j] - x0) / (x1 - x0) * pw, T + ph - (s[i].y[j] - y0) / (y1 - y0) * ph);
        fprintf(f, "\"/>");
        if (s[i].n == 1)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", L + (s[i].x[0] - x0) / (x1 - x0) * pw,
                    T + ph - (s[i].y[0] - y0) / (y1 - y0) * ph, c);
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"3\" fill=\"%s\"/><text x=\"%.0f\" y=\"%.0f\" class=\"k\">",
                L + pw - 150, T + 8 + 13.0 * i, c, L + pw - 134, T + 12 + 13.0 * i);
        esc(f, s[i].label);
        fprintf(f, "</text>");
    }
    fprintf(f, "</svg></figure>\n");
}

enum { K_LOSS, K_TASK_LOSS, K_TEST_LOSS, K_TEST_ACC, K_LR, K_SPS, K_PHASE };

/* A series of the run's records against the step. */
static int make_series(series *s, const larch_run_metrics *m, int kind, int task, int phase, const char *label)
{
    memset(s, 0, sizeof *s);
    snprintf(s->label, sizeof s->label, "%s", label);
    int cap = kind == K_TEST_LOSS || kind == K_TEST_ACC ? m->n_eval : m->n_train;
    s->x = malloc(((size_t)cap + 1) * sizeof *s->x);
    s->y = malloc(((size_t)cap + 1) * sizeof *s->y);
    if (!s->x || !s->y) return -1;
    if (kind == K_TEST_LOSS || kind == K_TEST_ACC) {
        for (int i = 0; i < m->n_eval; i++) {
            const larch_rm_eval *e = &m->eval[i];
            double y = kind == K_TEST_LOSS ? e->loss : e->accuracy;
            if (e->task != task || !isfinite(y)) continue;
            s->x[s->n] = (double)e->step;
            s->y[s->n++] = y;
        }
        return 0;
    }
    long prev = 0;
    for (int i = 0; i < m->n_train; i++) {
        const larch_rm_train *t = &m->train[i];
        long steps = t->step - prev;
        prev = t->step;
        double y = kind == K_LOSS ? t->loss : kind == K_TASK_LOSS ? t->task_loss[task] : kind == K_LR ? t->lr
                 : kind == K_SPS ? t->samples_per_s
                 : t->has_phases && steps > 0 ? 1e3 * t->phases[phase] / (double)steps : NAN;
        if (!isfinite(y)) continue;
        s->x[s->n] = (double)t->step;
        s->y[s->n++] = y;
    }
    return 0;
}

static void free_series(series *s, int n)
{
    for (int i = 0; i < n; i++) { free(s[i].x); free(s[i].y); }
}

static const char *phase_names[LARCH_PH_N] = {"data loading (wait)", "forward + backward", "gradient sync (wait)",
                                              "optimizer", "evaluation", "checkpoints"};

static void charts(FILE *f, const larch_run_metrics *m)
{
    series s[LARCH_RM_TASKS + 2];
    int n = 0, bad = 0;
    fprintf(f, "<h2>Curves</h2><div class=\"charts\">\n");
    bad |= make_series(&s[n++], m, K_LOSS, 0, 0, m->multi_task ? "total" : "train");
    for (int k = 0; m->multi_task && k < m->n_tasks && n < LARCH_RM_TASKS + 1; k++) bad |= make_series(&s[n++], m, K_TASK_LOSS, k, 0, m->tasks[k]);
    if (!bad) chart(f, "training loss", "step", s, n);
    free_series(s, n);
    for (int kind = K_TEST_LOSS; kind <= K_TEST_ACC; kind++) {
        n = 0;
        for (int k = 0; k < m->n_tasks && n < LARCH_RM_TASKS; k++) {
            bad |= make_series(&s[n], m, kind, k, 0, m->tasks[k]);
            if (s[n].n > 0) n++;
            else free_series(&s[n], 1);
        }
        if (!bad) chart(f, kind == K_TEST_LOSS ? "test loss" : "test accuracy", "step", s, n);
        free_series(s, n);
    }
    n = 0;
    bad |= make_series(&s[n++], m, K_LR, 0, 0, "lr");
    if (!bad) chart(f, "learning rate", "step", s, n);
    free_series(s, n);
    n = 0;
    bad |= make_series(&s[n++], m, K_SPS, 0, 0, "samples/s in the steps");
    if (!bad) chart(f, "training throughput (samples/s)", "step", s, n);
    free_series(s, n);
    n = 0;
    for (int k = LARCH_PH_DATA; k <= LARCH_PH_OPTIM; k++) bad |= make_series(&s[n++], m, K_PHASE, 0, k, phase_names[k]);
    if (!bad) chart(f, "rank 0: milliseconds per step by phase", "step", s, n);
    free_series(s, n);
    fprintf(f, "</div>\n");
}

static void final_metrics(FILE *f, const larch_run_metrics *m)
{
    fprintf(f, "<h2>Final metrics</h2><table><tr><th>what</th><th>step</th><th>value</th></tr>\n");
    if (m->n_train) {
        const larch_rm_train *t = &m->train[m->n_train - 1];
        fprintf(f, "<tr><td>training loss (last logged)</td><td>%ld</td><td>%.6g</td></tr>\n", t->step, t->loss);
    }
    for (int k = 0; k < m->n_tasks; k++) {
        int last = -1, best = -1;
        for (int i = 0; i < m->n_eval; i++) {
            if (m->eval[i].task != k) continue;
            last = i;
            if (isfinite(m->eval[i].accuracy) && (best < 0 || m->eval[i].accuracy > m->eval[best].accuracy)) best = i;
        }
        if (last < 0) continue;
        fprintf(f, "<tr><td>test loss, task ");
        esc(f, m->tasks[k]);
        fprintf(f, "</td><td>%ld</td><td>%.6g</td></tr>\n", m->eval[last].step, m->eval[last].loss);
        if (isfinite(m->eval[last].accuracy)) {
            fprintf(f, "<tr><td>test accuracy, task ");
            esc(f, m->tasks[k]);
            fprintf(f, "</td><td>%ld</td><td class=\"final-acc\">%.4f</td></tr>\n", m->eval[last].step, m->eval[last].accuracy);
        }
        if (best >= 0 && best != last) {
            fprintf(f, "<tr><td>best test accuracy, task ");
            esc(f, m->tasks[k]);
            fprintf(f, "</td><td>%ld</td><td>%.4f</td></tr>\n", m->eval[best].step, m->eval[best].accuracy);
        }
    }
    fprintf(f, "</table>\n");
}

static void throughput(FILE *f, const larch_run_metrics *m, json_object *info)
{
    double r0[LARCH_PH_N] = {0}, slow[LARCH_PH_N] = {0};
    long steps = 0, prev = 0;
    int have = 0;
    for (int i = 0; i < m->n_train; i++) {
        const larch_rm_train *t = &m->train[i];
        if (t->step > prev) steps += t->step - prev;
        prev = t->step;
        if (!t->has_phases) continue;
        have = 1;
        for (int k = 0; k < LARCH_PH_N; k++) { r0[k] += t->phases[k]; slow[k] += t->slowest[k]; }
    }
    double batch = jnum(info, "global_batch");
    json_object *tot = NULL;
    int finished = info && json_object_object_get_ex(info, "phases_rank0", &tot);
    if (finished)                                       /* the totals include the last evaluation and checkpoint */
        for (int k = 0; k < LARCH_PH_N; k++) { double v = jnum(tot, larch_phase_keys[k]); if (isfinite(v)) r0[k] = v; }
    fprintf(f, "<h2>Throughput and where the time went</h2>\n");
    double step_time = r0[LARCH_PH_DATA] + r0[LARCH_PH_COMPUTE] + r0[LARCH_PH_SYNC] + r0[LARCH_PH_OPTIM];
    double sps = finished ? jnum(info, "samples_per_s") : step_time > 0 && isfinite(batch) ? (double)steps * batch / step_time : NAN;
    fprintf(f, "<p>Mean training throughput: <b class=\"sps\">%.1f samples/s</b> (global batch %.0f, %ld steps logged", sps,
            batch, steps);
    if (finished) fprintf(f, "; %.2f s wall for the loop", jnum(info, "wall_s"));
    fprintf(f, ").</p>\n");
    if (!have) { fprintf(f, "<p>No per-phase times in metrics.jsonl (a run of an older larch).</p>\n"); return; }
    double all0 = 0, alls = 0;
    for (int k = 0; k < LARCH_PH_N; k++) { all0 += r0[k]; alls += slow[k]; }
    fprintf(f, "<table class=\"phases\"><tr><th>phase</th><th>rank 0, %s (s)</th><th>share</th><th>ms per step</th>"
               "<th>the slowest rank of each window, summed (s)</th></tr>\n", finished ? "whole loop" : "logged windows");
    for (int k = 0; k < LARCH_PH_N; k++)
        fprintf(f, "<tr><td>%s</td><td>%.3f</td><td>%.1f%%</td><td>%.3f</td><td>%.3f</td></tr>\n", phase_names[k], r0[k],
                all0 > 0 ? 100 * r0[k] / all0 : 0.0, steps > 0 ? 1e3 * r0[k] / (double)steps : 0.0, slow[k]);
    fprintf(f, "<tr><th>total</th><th>%.3f</th><th></th><th></th><th>%.3f</th></tr></table>\n", all0, alls);
    fprintf(f, "<p class=\"note\">Rank 0's times%s; the last column sums, for each logged window, the phases of the rank "
               "that took longest in it. Evaluation and checkpoints count in the window after them.</p>\n",
            finished ? " are the loop's totals (run.json)" : " are sums of the logged windows");
}

static void run_section(FILE *f, json_object *info)
{
    fprintf(f, "<h2>Run</h2><table>\n");
    if (!info) { fprintf(f, "<tr><td colspan=\"2\">no run.json (a run of an older larch, or larch eval)</td></tr></table>\n"); return; }
    const char *keys[][2] = {{"command", "command line"}, {"status", "status"}, {"started", "started (UTC)"},
                             {"ended", "ended (UTC)"}, {"larch_version", "larch"}, {"host", "host"}, {"cpu", "CPU"},
                             {"openblas_core", "OpenBLAS kernels"}, {"openblas_coretype_env", "OPENBLAS_CORETYPE"},
                             {"checkpoint_dir", "checkpoint directory"}};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *v = jstr(info, keys[i][0], NULL);
        if (!v) continue;
        fprintf(f, "<tr><td>%s</td><td><code>", keys[i][1]);
        esc(f, v[0] ? v : "(none)");
        fprintf(f, "</code></td></tr>\n");
    }
    fprintf(f, "<tr><td>ranks x threads</td><td class=\"ranks\">%.0f x %.0f (machine: %.0f cores)</td></tr>\n",
            jnum(info, "ranks"), jnum(info, "threads_per_rank"), jnum(info, "cores"));
    fprintf(f, "<tr><td>parameters</td><td>%.0f</td></tr><tr><td>steps</td><td>%.0f of %.0f (%.0f per epoch, global batch %.0f)"
               "</td></tr></table>\n", jnum(info, "parameters"), isfinite(jnum(info, "steps")) ? jnum(info, "steps") : NAN,
            jnum(info, "total_steps"), jnum(info, "steps_per_epoch"), jnum(info, "global_batch"));
}

typedef struct ck { long step; long long bytes; time_t mtime; char name[256]; } ck;

static int ck_cmp(const void *a, const void *b)
{
    long x = ((const ck *)a)->step, y = ((const ck *)b)->step;
    return (x > y) - (x < y);
}

static void checkpoints(FILE *f, const char *dir)
{
    fprintf(f, "<h2>Checkpoints</h2>\n");
    DIR *d = dir && dir[0] ? opendir(dir) : NULL;
    if (!d) { fprintf(f, "<p>none%s</p>\n", dir && dir[0] ? " (the directory is absent)" : ""); return; }
    ck *list = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "ckpt-", 5) != 0) continue;
        long step = strtol(e->d_name + 5, &end, 10);
        if (end == e->d_name + 5 || strcmp(end, ".h5") != 0) continue;
        if (n == cap) {
            ck *nl = realloc(list, (cap = cap ? 2 * cap : 16) * sizeof *nl);
            if (!nl) break;
            list = nl;
        }
        char path[1400];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0) continue;
        list[n] = (ck){.step = step, .bytes = (long long)st.st_size, .mtime = st.st_mtime};
        snprintf(list[n].name, sizeof list[n].name, "%s", e->d_name);
        n++;
    }
    closedir(d);
    if (n == 0) { fprintf(f, "<p>none yet in <code>"); esc(f, dir); fprintf(f, "</code></p>\n"); free(list); return; }
    qsort(list, n, sizeof *list, ck_cmp);
    fprintf(f, "<p>in <code>");
    esc(f, dir);
    fprintf(f, "</code></p><table class=\"ckpts\"><tr><th>file</th><th>step</th><th>MiB</th><th>written (UTC)</th></tr>\n");
    for (size_t i = 0; i < n; i++) {
        char when[40];
        struct tm tm;
        gmtime_r(&list[i].mtime, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        fprintf(f, "<tr><td><code>");
        esc(f, list[i].name);
        fprintf(f, "</code></td><td>%ld</td><td>%.2f</td><td>%s</td></tr>\n", list[i].step, list[i].bytes / 1048576.0, when);
    }
    fprintf(f, "</table>\n");
    free(list);
}

static void config_section(FILE *f, const char *dir)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/config.yaml", dir);
    fprintf(f, "<h2>Resolved config</h2>\n");
    FILE *c = fopen(path, "r");
    if (!c) { fprintf(f, "<p>no config.yaml</p>\n"); return; }
    fprintf(f, "<pre class=\"config\">");
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf - 1, c)) > 0) { buf[n] = '\0'; esc(f, buf); }
    fclose(c);
    fprintf(f, "</pre>\n");
}

static const char *style =
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1500px}"
    "h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.4em;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:.9em}"
    ".charts{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0}svg .t{font-size:13px;font-weight:600}"
    "svg .k{font-size:10px;fill:#444}pre.config{background:#f6f6f6;padding:8px;font-size:.8em;overflow:auto}"
    ".note{color:#666;font-size:.85em}.status{padding:2px 6px;border-radius:3px;background:#eef}";

int larch_report_write(const char *dir, const char *out, char *err, size_t err_len)
{
    larch_run_metrics m;
    if (larch_run_metrics_read(dir, &m, err, err_len)) return -1;
    char path[1100], tmp[1200], rj[1100];
    if (out) snprintf(path, sizeof path, "%s", out);
    else snprintf(path, sizeof path, "%s/report.html", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(rj, sizeof rj, "%s/run.json", dir);
    json_object *info = json_object_from_file(rj);
    if (info && !json_object_is_type(info, json_type_object)) { json_object_put(info); info = NULL; }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, err_len, "cannot write %s: %s", tmp, strerror(errno));
        json_object_put(info);
        larch_run_metrics_free(&m);
        return -1;
    }
    const char *status = jstr(info, "status", "unknown");
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    if (!strcmp(status, "running")) fprintf(f, "<meta http-equiv=\"refresh\" content=\"30\">\n");
    fprintf(f, "<title>larch run ");
    esc(f, m.name);
    fprintf(f, "</title><style>%s</style></head><body>\n<h1>larch run <code>", style);
    esc(f, m.name);
    fprintf(f, "</code> <span class=\"status\">");
    esc(f, status);
    fprintf(f, "</span></h1>\n<p class=\"note\">Written by larch %s from <code>", larch_version());
    esc(f, dir);
    fprintf(f, "</code> (metrics.jsonl: %d training and %d evaluation records%s). <span id=\"js-status\"></span></p>\n",
            m.n_train, m.n_eval, !strcmp(status, "running") ? "; this page reloads every 30 s while the run goes on" : "");
    final_metrics(f, &m);
    charts(f, &m);
    throughput(f, &m, info);
    run_section(f, info);
    char ckd[1100];
    const char *cd = jstr(info, "checkpoint_dir", NULL);
    if (!cd) { snprintf(ckd, sizeof ckd, "%s/checkpoints", dir); cd = ckd; }
    checkpoints(f, cd);
    config_section(f, dir);
    /* the curves the browser laid out with a non-empty box, or a single point's
     * marker (the browser test reads data-drawn) */
    fprintf(f, "<script>(function(){var c=document.querySelectorAll('svg.chart polyline.curve'),d=0;"
               "for(var i=0;i<c.length;i++){var b=c[i].getBBox(),m=c[i].nextElementSibling;"
               "if(b.width>0||b.height>0||(m&&m.tagName=='circle'&&m.getBBox().width>0))d++;}"
               "var e=document.getElementById('js-status');e.textContent=d+' of '+c.length+' curves drawn.';"
               "e.setAttribute('data-curves',String(c.length));e.setAttribute('data-drawn',String(d));})();</script>\n"
               "</body></html>\n");
    int bad = ferror(f);
    if (fclose(f) != 0) bad = 1;
    json_object_put(info);
    larch_run_metrics_free(&m);
    if (bad || rename(tmp, path) != 0) {
        snprintf(err, err_len, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}
