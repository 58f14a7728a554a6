/* `synapse model tokenize` (being written). */
#include "cli.h"

int cmd_model_tokenize(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_usage_error("model tokenize", "not implemented yet");
}
