/* convert_common.c - what every converter shares (convert.h). */
#include "datasets/convert.h"

#include <errno.h>
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
