/* `synapse model random` (being written). */
#include "cli.h"

int cmd_model_random(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_usage_error("model random", "not implemented yet");
}
