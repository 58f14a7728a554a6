/* `synapse model`: inspection and conversion tools, one subcommand per file. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} subs[] = {
    {"info", cmd_model_info, "print metadata and the tensor table of a model"},
    {"tokenize", cmd_model_tokenize, "read text on stdin, print token ids"},
    {"perplexity", cmd_model_perplexity,
     "read text on stdin, print teacher-forced NLL and perplexity"},
    {"random", cmd_model_random, "write a random-weight GGUF of a named or given shape"},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: synapse model SUBCOMMAND [ARGS...]\n\nSubcommands:\n");
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        fprintf(f, "  %-11s %s\n", subs[i].name, subs[i].summary);
    fprintf(f, "\nRun 'synapse model SUBCOMMAND --help' for its options.\n");
}

int cmd_model(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (!strcmp(argv[1], subs[i].name)) {
            optind = 1;
            return subs[i].fn(argc - 1, argv + 1);
        }
    return cli_usage_error("model", "unknown subcommand '%s'", argv[1]);
}
