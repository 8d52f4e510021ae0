/* larch/optim_cfg.h - the YAML front end of the optimizer and schedule API.
 *
 * A config's `optim` and `sched` sections are validated against the key
 * schemas below (errors name the file, the line and the key; defaults are
 * filled in so that the resolved config shows every value), translated into
 * larch_optim_opts / larch_sched_opts (larch/optim.h) and handed to the same
 * larch_optim_create and larch_sched_init a C program calls: one path. The
 * optimizer and the schedules never read the config tree.
 */
#ifndef LARCH_OPTIM_CFG_H
#define LARCH_OPTIM_CFG_H

#include "larch/cfg.h"
#include "larch/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The `optim` section's schema, and that of one of its `groups`. */
LARCH_API extern const larch_key larch_optim_keys[];
LARCH_API extern const larch_key larch_optim_group_keys[];
/* Fills the defaults of the optimizer named in the `optim` map that differ
 * between optimizers (lr, eps, weight_decay, decoupled: the values of
 * larch_optim_defaults_for) and validates `groups`; call before
 * larch_cfg_check. `optim` may be NULL or not a map (no-op). */
LARCH_API larch_status larch_optim_defaults(larch_node *optim);
/* Adds a warning (to `w`) for each key of the validated `optim` map that is
 * set to a non-default value but not read by the chosen optimizer. */
LARCH_API larch_status larch_optim_ignored(const larch_node *optim, larch_warnings *w);
/* The validated `optim` map (larch_optim_defaults, then larch_cfg_check) as
 * typed options, checked with larch_optim_validate; an invalid value fails
 * naming its file, line and key. out->groups is allocated (release it with
 * larch_optim_opts_release) and its `match` strings point into `optim`, which
 * must outlive their use. */
LARCH_API larch_status larch_optim_opts_from_cfg(const larch_node *optim, larch_optim_opts *out);
/* Frees what larch_optim_opts_from_cfg allocated (the groups array). */
LARCH_API void larch_optim_opts_release(larch_optim_opts *o);
/* larch_optim_opts_from_cfg, then larch_optim_create: any failure is a
 * LARCH_ERR_CONFIG naming the place of the key (a group matching no
 * parameter: the place of `groups`). */
LARCH_API larch_status larch_optim_create_cfg(larch_optim **out, larch_model *m, const larch_node *optim);

/* The `sched` section's schema. */
LARCH_API extern const larch_key larch_sched_keys[];
/* The validated `sched` map as typed options, checked with
 * larch_sched_validate; an invalid value fails naming its file, line and
 * key. */
LARCH_API larch_status larch_sched_opts_from_cfg(const larch_node *sched, larch_sched_opts *out);
/* The checks of a validated `sched` map that need no step counts (those of
 * larch_sched_validate: milestones ascending, at most 16; no warmup with
 * onecycle; exponential warmup from a factor > 0), so that `larch config`
 * rejects what training would. */
LARCH_API larch_status larch_sched_check(const larch_node *sched);
/* Adds a warning for each key of the validated `sched` map that is set to a
 * non-default value but not read by the chosen schedule. */
LARCH_API larch_status larch_sched_ignored(const larch_node *sched, larch_warnings *w);

#ifdef __cplusplus
}
#endif
#endif
