/* groups.h - many trainings in one MPI job (dist.groups, the sweep section;
 * docs/groups.md). The world is split into G groups (larch_comm_split);
 * group g trains variants g, g + G, g + 2G, ... one after the other, each
 * with the usual data parallelism over the group's ranks, each into its own
 * run directory OUT/<variant name>. A variant is a list of overrides
 * ("key=value", applied like --set after the command line's), so a variant
 * trains exactly as a lone `larch train CONFIG --set ...` of the same
 * settings. A failing variant (an error value agreed inside its group) is
 * recorded and its group goes on with its next variant; at the end every
 * rank meets once on the world communicator, and rank 0 prints the summary
 * table and writes OUT/summary.jsonl. */
#ifndef LARCH_TRAIN_GROUPS_H
#define LARCH_TRAIN_GROUPS_H

#include "larch/train.h"

#define LARCH_VARIANT_SETS 16      /* overrides per variant       */
#define LARCH_VARIANT_SET_LEN 256  /* characters of one override  */

typedef struct larch_variant {
    char name[200];                /* the run directory's name under OUT */
    int n_sets;
    char sets[LARCH_VARIANT_SETS][LARCH_VARIANT_SET_LEN];
} larch_variant;

typedef struct larch_variant_result {
    int ran;                       /* 0: not run (interrupted before it)           */
    int status;                    /* larch_status of the variant (and its hook)   */
    long steps;
    double final_loss, test_loss, test_accuracy, wall_seconds;
    char message[768];             /* the error message when status != LARCH_OK    */
} larch_variant_result;

/* Called on every rank of the group after a variant trained successfully,
 * with the variant's validated config and result; collective over `group`.
 * Its status is agreed inside the group and recorded as the variant's. */
typedef larch_status (*larch_variant_hook)(void *ctx, int variant, const larch_node *cfg, const larch_comm *group,
                                           const larch_train_result *res);

typedef struct larch_groups_opts {
    const char *config;            /* the YAML file                                 */
    const char *const *sets;       /* the command line's overrides                  */
    int n_sets;
    const char *out_dir;           /* OUT: OUT/<variant>/, OUT/summary.jsonl        */
    FILE *log;                     /* one line per variant and the table (rank 0s)  */
    const larch_variant *variants; /* NULL: the config's sweep section              */
    int n_variants;
    larch_variant_hook hook;       /* may be NULL                                   */
    void *hook_ctx;
    const char *extra_sets[4];     /* overrides every variant gets after the sets  */
    int n_extra_sets;
} larch_groups_opts;

/* The variants of a validated config's sweep section: the cartesian product
 * grid x bootstrap x seeds (the last varies fastest), or one variant "run"
 * without overrides when the section is empty. Errors name the key. Free
 * *out with free(). */
larch_status larch_sweep_variants(const larch_node *cfg, larch_variant **out, int *n);
/* Whether a validated config asks for groups (dist.groups > 1 or a sweep). */
int larch_groups_wanted(const larch_node *cfg);
/* Runs the variants (collective over world). Fails (on every rank) only for
 * what stops all of them: the config, dist.groups not dividing the world
 * size, an MPI failure, or a variant whose group cannot agree any more
 * (then the job must be ended: larch_comm_broken(world) stays 0, the caller
 * sees LARCH_ERR_MPI and aborts). On success *results (n_variants entries,
 * identical on every rank; free()) and *n_failed. */
larch_status larch_groups_run(const larch_groups_opts *o, const larch_comm *world, larch_variant_result **results,
                              larch_variant **variants, int *n_variants, int *n_failed);

#endif
