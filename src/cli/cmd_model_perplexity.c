/* `synapse model perplexity` (being written). */
#include "cli.h"

int cmd_model_perplexity(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_usage_error("model perplexity", "not implemented yet");
}
