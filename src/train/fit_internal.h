/* fit_internal.h - between the trainer (trainer.c), the spec's defaults,
 * validation and record (fit_spec.c) and the config front end (train_cfg.c). */
#ifndef LARCH_FIT_INTERNAL_H
#define LARCH_FIT_INTERNAL_H

#include "larch/train.h"

/* larch_fit, with what model.init_from did (rank 0's report text, written
 * to DIR/init_from.txt; NULL: none). */
larch_status larch_fit_run(const larch_fit_spec *spec, const larch_comm *comm, const larch_train_opts *opts,
                           larch_train_result *res, const char *init_text);

/* The record of a spec without a config tree: the sections train, optim, prune,
 * sched, data (prefetch, augment), dist and checkpoint with every value,
 * parsed from generated YAML (numbers written so that they read back
 * exactly). */
larch_status larch_fit_spec_to_cfg(const larch_fit_spec *spec, larch_node **out);

#endif
