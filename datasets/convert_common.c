/* convert_common.c - what every converter shares (convert.h). */
#include "datasets/convert.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void larch_converted_free(larch_converted *c)
{
    larch_dataset_free(&c->split[0]);
    larch_dataset_free(&c->split[1]);
    for (int i = 0; c->classes && i < c->n_classes; i++) free(c->classes[i]);
    free(c->classes);
    memset(c, 0, sizeof *c);
}

larch_status larch_convert_read_names(const char *path, int n_max, char ***names, int *n)
{
    *names = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? LARCH_OK : larch_fail(LARCH_ERR_IO, "%s: %s", path, strerror(errno));
    char **out = calloc((size_t)n_max, sizeof *out);
    char line[512];
    int k = 0;
    larch_status s = out ? LARCH_OK : larch_fail(LARCH_ERR_NOMEM, "out of memory");
    while (!s && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;                              /* CIFAR's files end with blank lines */
        if (k == n_max) { s = larch_fail(LARCH_ERR_FORMAT, "%s names more than %d classes", path, n_max); break; }
        if (!(out[k++] = strdup(line))) s = larch_fail(LARCH_ERR_NOMEM, "out of memory");
    }
    fclose(f);
    if (s) {
        for (int i = 0; i < k; i++) free(out[i]);
        free(out);
        return s;
    }
    *names = out;
    *n = k;
    return LARCH_OK;
}

void larch_stats_init(larch_stats *st, int channels)
{
    memset(st, 0, sizeof *st);
    st->channels = channels;
    st->nc = channels <= LARCH_NORM_MAX ? channels : 1;
}

void larch_stats_add(larch_stats *st, const uint8_t *u8, const float *f32, size_t n_values)
{
    const int C = st->channels, nc = st->nc;
    for (size_t i = 0; i < n_values; i++) {
        double v = u8 ? u8[i] / 255.0 : f32[i];
        int c = nc == 1 ? 0 : (int)(i % (size_t)C);
        st->s[c] += v;
        st->q[c] += v * v;
    }
    st->count += (double)n_values / nc;
}

void larch_stats_finish(const larch_stats *st, float *mean, float *std, int *n)
{
    for (int c = 0; c < st->nc; c++) {
        double m = st->count > 0 ? st->s[c] / st->count : 0.0, var = st->count > 0 ? st->q[c] / st->count - m * m : 0.0;
        double sd = var > 1e-12 ? sqrt(var) : 1.0;                 /* a constant channel keeps its scale */
        mean[c] = (float)(round(m * 1e4) / 1e4);
        std[c] = (float)(sd >= 1e-4 ? round(sd * 1e4) / 1e4 : sd);
    }
    *n = st->nc;
}
