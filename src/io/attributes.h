/* attributes.h - class-attribute tables for zero-shot learning
 * (docs/fewshot.md, "Attribute tables"): a CSV file
 *
 *     # comments and blank lines are skipped
 *     class,name,<attribute>,<attribute>,...
 *     0,T-shirt/top,1,0,...
 *
 * with one row per class, classes 0, 1, ... in order, each with a name
 * (no comma) and one number per attribute (binary or graded). */
#ifndef LARCH_IO_ATTRIBUTES_H
#define LARCH_IO_ATTRIBUTES_H

#include "larch/data.h"

#define LARCH_ATTR_MAX 256          /* attributes per class */

typedef struct larch_attr_table {
    int n_classes, n_attr;
    float *values;                  /* (n_classes, n_attr) */
    char (*class_names)[LARCH_NAME_MAX];
    char (*attr_names)[LARCH_NAME_MAX];
} larch_attr_table;

/* Reads a table. Errors name the file and line: a missing header, a row
 * with too few or too many values, a value that is not a finite number, a
 * class out of order, no rows. */
larch_status larch_attr_read(const char *path, larch_attr_table *t);
void larch_attr_free(larch_attr_table *t);
/* Sets ds's float targets to the attribute vector of each sample's class
 * (label set 0): the table must have ds->n_classes rows and ds must have no
 * targets of its own. */
larch_status larch_attr_apply(const larch_attr_table *t, const char *path, larch_dataset *ds);

#endif
