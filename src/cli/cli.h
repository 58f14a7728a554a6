/*
 * The `synapse` command line: one file per subcommand, each exporting cmd_NAME(argc, argv)
 * with argv[0] being the subcommand's name. Exit codes: 0 success, 1 runtime failure,
 * 2 usage error (unknown flag, bad value, missing argument).
 */
#ifndef SYNAPSE_CLI_H
#define SYNAPSE_CLI_H

#include <getopt.h>

#define SYNAPSE_VERSION "0.1.0"

int cmd_generate(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_worker(int argc, char **argv); /* `synapse bench worker`, from cmd_bench.c */
int cmd_bench_load(int argc, char **argv);   /* `synapse bench load` (cmd_bench_load.c) */
int cmd_bench_sim(int argc, char **argv);    /* `synapse bench sim` (cmd_bench_sim.c) */
int cmd_worker(int argc, char **argv);
int cmd_gateway(int argc, char **argv);
int cmd_up(int argc, char **argv);
int cmd_lambda(int argc, char **argv);
int cmd_version(int argc, char **argv);

/* `synapse model SUB`: each in its own file (cmd_model_*.c), dispatched from cmd_model.c. */
int cmd_model_info(int argc, char **argv);
int cmd_model_tokenize(int argc, char **argv);
int cmd_model_perplexity(int argc, char **argv);
int cmd_model_random(int argc, char **argv);

/* Prints "synapse CMD: MESSAGE" and a pointer to --help on stderr; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* getopt_long with the project's conventions: opterr off, unknown or malformed options turn
 * into a usage error naming the option. Returns the option, -1 at the end, or '?' after it has
 * printed the error (the caller returns 2). */
int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts);

/* Strict number parsing for flag values: the whole string must be a number within [lo, hi].
 * On failure prints a usage error naming the flag and returns -1. */
int cli_parse_long(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out);
int cli_parse_double(const char *cmd, const char *flag, const char *s, double lo, double hi,
                     double *out);

/* Builds a new argv with flags from config_path (may be NULL) and SYNAPSE_* environment variables
 * before the real arguments (see cli_env.c). Returns 0, or -1 after printing the error. Free the
 * result with cli_free_args. */
int cli_expand_args(const char *cmd, int argc, char **argv, const struct option *opts,
                    const char *config_path, int *out_argc, char ***out_argv);
void cli_free_args(int argc, char **argv);

#endif
