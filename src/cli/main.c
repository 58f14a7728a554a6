/*
 * `synapse`: the one binary. Dispatches to the subcommand named by argv[1]; each lives in its
 * own file in src/cli/. Global flags come before the subcommand.
 */
#include "cli.h"

#include "synapse/log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"up", cmd_up, "the whole stack: private Redis, gateway, autoscaled local workers"},
    {"generate", cmd_generate, "generate text from a prompt with a local model"},
    {"model", cmd_model, "inspect a model: info, tokenize, perplexity, random"},
    {"gateway", cmd_gateway, "run the OpenAI-compatible HTTP gateway in front of the workers"},
    {"worker", cmd_worker, "run a worker: take jobs from Redis, batch them, stream tokens"},
    {"bench", cmd_bench, "benchmarks: engine (decode/prefill tokens/s against memory bandwidth)"},
    {"lambda", cmd_lambda, "run as an AWS Lambda custom runtime (batches, or a worker until idle)"},
    {"version", cmd_version, "print the version"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "Usage: synapse [--log-level LEVEL] [--log-json] COMMAND [ARGS...]\n\n"
               "Synapse serves Llama-family language models over an OpenAI-compatible API.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nGlobal options:\n"
               "  --log-level LEVEL  debug, info, warn (default), error or off (env SYNAPSE_LOG)\n"
               "  --log-json         log JSON lines (env SYNAPSE_LOG_JSON=1)\n"
               "  -h, --help         show this help\n\n"
               "Run 'synapse COMMAND --help' for a command's options.\n");
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "synapse %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'synapse %s --help'.\n", cmd);
    va_end(ap);
    return 2;
}

int cli_getopt(const char *cmd, int argc, char **argv, const char *shortopts,
               const struct option *longopts)
{
    opterr = 0;
    int prev = optind;
    int c = getopt_long(argc, argv, shortopts, longopts, NULL);
    if (c == '?') {
        const char *arg = prev < argc ? argv[prev] : "";
        if (optopt && strchr(shortopts, optopt))
            cli_usage_error(cmd, "option '-%c' needs a value", optopt);
        else if (optopt)
            cli_usage_error(cmd, "unknown option '-%c'", optopt);
        else if (strchr(arg, '='))
            cli_usage_error(cmd, "option '%.*s' is unknown or takes no value",
                            (int)(strchr(arg, '=') - arg), arg);
        else {
            /* getopt_long says '?' both for unknown long options and for missing values */
            const struct option *o = longopts;
            for (; o && o->name; o++)
                if (strcmp(arg + 2, o->name) == 0) break;
            if (o && o->name)
                cli_usage_error(cmd, "option '%s' needs a value", arg);
            else
                cli_usage_error(cmd, "unknown option '%s'", arg);
        }
    } else if (c == ':') {
        cli_usage_error(cmd, "option '%s' needs a value", argv[optind - 1]);
        c = '?';
    }
    return c;
}

int cli_parse_long(const char *cmd, const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno) {
        cli_usage_error(cmd, "%s expects an integer, got '%s'", flag, s);
        return -1;
    }
    if (v < lo || v > hi) {
        cli_usage_error(cmd, "%s must be between %ld and %ld, got %ld", flag, lo, hi, v);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_double(const char *cmd, const char *flag, const char *s, double lo, double hi,
                     double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || isnan(v)) {
        cli_usage_error(cmd, "%s expects a number, got '%s'", flag, s);
        return -1;
    }
    if (v < lo || v > hi) {
        cli_usage_error(cmd, "%s must be between %g and %g, got %g", flag, lo, hi, v);
        return -1;
    }
    *out = v;
    return 0;
}

int cmd_version(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("Usage: synapse version\n\nPrints the version of this synapse binary.\n");
        return 0;
    }
    if (argc > 1) return cli_usage_error("version", "unexpected argument '%s'", argv[1]);
    printf("synapse %s\n", SYNAPSE_VERSION);
    return 0;
}

int main(int argc, char **argv)
{
    syn_log_init();
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("synapse %s\n", SYNAPSE_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--log-json")) {
            syn_log_set_json(1);
        } else if (!strcmp(argv[i], "--log-level") || !strncmp(argv[i], "--log-level=", 12)) {
            const char *v = argv[i][11] == '=' ? argv[i] + 12 : (i + 1 < argc ? argv[++i] : NULL);
            int l = syn_log_level_parse(v);
            if (l < 0) {
                fprintf(stderr, "synapse: --log-level expects debug, info, warn, error or off\n");
                return 2;
            }
            syn_log_set_level((enum syn_log_level)l);
        } else {
            fprintf(stderr, "synapse: unknown option '%s'\nTry 'synapse --help'.\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    for (size_t k = 0; k < N_COMMANDS; k++)
        if (!strcmp(argv[i], commands[k].name)) {
            optind = 1;
            return commands[k].fn(argc - i, argv + i);
        }
    fprintf(stderr, "synapse: unknown command '%s'\nTry 'synapse --help'.\n", argv[i]);
    return 2;
}
