/* `synapse model info` (being written). */
#include "cli.h"

int cmd_model_info(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_usage_error("model info", "not implemented yet");
}
