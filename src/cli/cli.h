/* cli.h - the subcommands of the `larch` program. Each returns the process
 * exit status: 0 success, 1 failure (message printed), 2 usage error. */
#ifndef LARCH_CLI_H
#define LARCH_CLI_H

#include "larch/cfg.h"

#define LARCH_EXIT_PREEMPTED 75   /* stopped by SIGTERM/SIGINT/SIGUSR1 (EX_TEMPFAIL) */

int larch_cmd_train(int argc, char **argv);
int larch_cmd_eval(int argc, char **argv);
/* `larch eval` with --fewshot or --zeroshot (fewshot_cmd.c) */
int larch_cmd_eval_embedding(int argc, char **argv);
int larch_cmd_ckpt(int argc, char **argv);
int larch_cmd_config(int argc, char **argv);
int larch_cmd_bench(int argc, char **argv);
int larch_cmd_schedule(int argc, char **argv);
int larch_cmd_plot(int argc, char **argv);     /* plot_cmd.c: curves of runs (gnuplot) */
int larch_cmd_report(int argc, char **argv);   /* report_cmd.c: a run's HTML report */
int larch_cmd_data(int argc, char **argv);
int larch_cmd_predict(int argc, char **argv);
int larch_cmd_sample(int argc, char **argv);    /* normalizing flows: sample_cmd.c */
int larch_cmd_compress(int argc, char **argv);   /* compress_cmd.c */
int larch_cmd_attack(int argc, char **argv);     /* attack_cmd.c */
int larch_cmd_ntk(int argc, char **argv);        /* ntk_cmd.c: neural tangent kernels */
int larch_cmd_biasvar(int argc, char **argv);    /* biasvar_cmd.c: bias-variance through groups */
int larch_cmd_import(int argc, char **argv);   /* and export: import_cmd.c */
int larch_cmd_export(int argc, char **argv);
int larch_cmd_bench_allreduce(int argc, char **argv);   /* argv[1] == "allreduce" */
int larch_cmd_bench_ckpt(int argc, char **argv);        /* argv[1] == "ckpt" */

/* Collects "--set k=v" (also "--set=k=v") pairs; returns the index of the
 * first argument it did not consume or -1 on a usage error. */
int larch_cli_sets(int argc, char **argv, int i, const char **sets, int *n_sets, int cap);
void larch_cli_error(const char *what);
/* Prints "larch: warning: ..." on stderr for every key of a validated config
 * that is set but has no effect (larch_run_warnings); 1 if it could not. */
int larch_cli_warnings(const larch_node *cfg);

#endif
