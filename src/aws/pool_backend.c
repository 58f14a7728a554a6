/* The cloud pool backends configured from the environment (pool_backend.h), for the pool
 * manager, which knows them only by name. */
#include "synapse/pool_backend.h"

#include "synapse/error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* A number from variable name, or def when unset. -1 (with a message) when malformed. */
static int env_num(const char *name, double lo, double hi, double def, double *out, char *err,
                   size_t errlen)
{
    const char *v = env(name);
    *out = def;
    if (!v) return 0;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (*end || errno || d < lo || d > hi)
        return syn_seterr(err, errlen, SYN_EINVAL, "%s must be a number from %g to %g, got '%s'",
                          name, lo, hi, v);
    *out = d;
    return 0;
}

int syn_pool_backend_from_env(const char *name, const char *model_name, double idle_timeout_s,
                              struct syn_pool_backend **out, char *err, size_t errlen)
{
    *out = NULL;
    if (name && !strcmp(name, "lambda")) {
        struct syn_pool_lambda_params p = {0};
        p.function = env("SYNAPSE_LAMBDA_FUNCTION");
        if (!p.function)
            return syn_seterr(err, errlen, SYN_EINVAL,
                              "pool backend lambda: set SYNAPSE_LAMBDA_FUNCTION to the function's "
                              "name or ARN");
        p.qualifier = env("SYNAPSE_LAMBDA_QUALIFIER");
        p.endpoint = env("SYNAPSE_LAMBDA_ENDPOINT");
        p.model_name = model_name;
        p.idle_timeout_s = idle_timeout_s;
        double d;
        if (env_num("SYNAPSE_LAMBDA_MAX_CONCURRENCY", 0, 100000, 0, &d, err, errlen))
            return SYN_EINVAL;
        p.max_concurrency = (int)d;
        if (env_num("SYNAPSE_LAMBDA_TIMEOUT", 1, 900, 900, &d, err, errlen)) return SYN_EINVAL;
        p.invocation_timeout_s = d;
        return syn_pool_lambda_new(&p, out, err, errlen);
    }
    if (name && !strcmp(name, "asg")) {
        struct syn_pool_asg_params p = {0};
        p.group = env("SYNAPSE_ASG_NAME");
        if (!p.group)
            return syn_seterr(err, errlen, SYN_EINVAL,
                              "pool backend asg: set SYNAPSE_ASG_NAME to the Auto Scaling group");
        p.endpoint = env("SYNAPSE_ASG_ENDPOINT");
        return syn_pool_asg_new(&p, out, err, errlen);
    }
    return syn_seterr(err, errlen, SYN_ENOTFOUND, "pool backend '%s' is not known (lambda, asg)",
                      name ? name : "(null)");
}
