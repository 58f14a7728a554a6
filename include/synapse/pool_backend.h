/*
 * Cloud pool backends: the part of the pool manager (workpool.h) that starts workers somewhere
 * else than on this machine and tells it what it has started. The pool manager keeps the policy
 * (autoscale.h), the registry reads and the accounting; a backend only starts and observes.
 *
 *   lambda  AWS Lambda, CPU only: each worker is one asynchronous invocation (InvocationType
 *           Event) of a function running `synapse lambda`, which drains the model's stream as a
 *           worker until it is idle or its deadline nears. Concurrent invocations are counted
 *           from start to the moment their worker leaves the registry (or a timeout).
 *   asg     an EC2 Auto Scaling group of GPU instances (minimum 0) whose user data starts
 *           `synapse worker --id {model}-{instance id}`: start raises the desired capacity;
 *           observing protects instances with running sequences from scale-in and lifts the
 *           protection from idle ones, so whatever lowers the capacity (the instances themselves
 *           when idle, an operator, a scheduled action) never takes a busy one.
 *
 * Both sign their requests with SigV4 (sigv4.h) and take their endpoint URLs as parameters, so
 * the tests run them against local servers that check every signature.
 *
 * The interface is a struct of function pointers, as ggml's backends are: an implementation
 * embeds it as its first member. Calls come from one thread (the pool manager's) and block for at
 * most the HTTP timeout; never call them with a lock held that the request path needs.
 */
#ifndef SYNAPSE_POOL_BACKEND_H
#define SYNAPSE_POOL_BACKEND_H

#include <stddef.h>

#include "synapse/sigv4.h"

/* One worker of the model as the registry shows it (syn_q_list_workers), for observe. */
struct syn_pool_worker_view {
    const char *id; /* the worker's id */
    int running;    /* sequences it is running */
    int state;      /* enum syn_worker_state (queue.h) */
};

/* What a backend knows about its workers, filled by observe. */
struct syn_pool_observation {
    int starting;        /* started by this backend and not yet in the registry */
    int active;          /* billed units alive: invocations (lambda) or instances (asg) */
    int limit;           /* the most it may have at once now (reserved concurrency, group
                            maximum); -1 = no limit known */
    double unit_seconds; /* billed unit-seconds since the previous observe (for cost) */
    int protected_now;   /* asg: instances protected from scale-in after this observe */
};

struct syn_pool_backend {
    /* "lambda" or "asg". */
    const char *(*name)(const struct syn_pool_backend *b);
    /* Asks for n more workers. Returns how many were started (0..n; fewer when a limit or
     * throttling stopped it: not an error), or a negative syn_err with a message. */
    int (*start)(struct syn_pool_backend *b, int n, char *err, size_t errlen);
    /* Brings the backend's view up to date with the registry (n workers of this model) and its
     * own API, and fills out. Returns 0, or a negative syn_err with a message (out then holds
     * the last known state). */
    int (*observe)(struct syn_pool_backend *b, const struct syn_pool_worker_view *workers, int n,
                   struct syn_pool_observation *out, char *err, size_t errlen);
    /* Frees the backend (invocations and instances are left running). */
    void (*free)(struct syn_pool_backend *b);
};

struct syn_pool_lambda_params {
    const char *function;        /* function name or ARN (required) */
    const char *qualifier;       /* version or alias; NULL = $LATEST */
    const char *region;          /* NULL = AWS_REGION / AWS_DEFAULT_REGION */
    const char *endpoint;        /* NULL = https://lambda.{region}.amazonaws.com */
    const char *model_name;      /* the model the invocations serve (required) */
    int max_concurrency;         /* invocations at once at most; 0 = no limit of ours */
    double idle_timeout_s;       /* the worker's idle timeout inside an invocation (default 30) */
    double register_timeout_s;   /* an invocation not in the registry after this long is counted
                                    lost (default 120: async queueing plus a cold start) */
    double invocation_timeout_s; /* the function's timeout: no invocation lives longer
                                    (default 900) */
    const struct syn_aws_creds *creds; /* NULL = the credential chain (environment, ECS, IMDS) */
};

struct syn_pool_asg_params {
    const char *group;          /* Auto Scaling group name (required) */
    const char *region;         /* NULL = AWS_REGION / AWS_DEFAULT_REGION */
    const char *endpoint;       /* NULL = https://autoscaling.{region}.amazonaws.com */
    double describe_interval_s; /* DescribeAutoScalingGroups at most this often (default 5) */
    double register_timeout_s;  /* an instance counts as starting until its worker registers or
                                   this long has passed (default 600: boot and model download) */
    const struct syn_aws_creds *creds; /* NULL = the credential chain */
};

/* Return 0 and *out, or SYN_EINVAL (a required parameter missing, no region) with a message. */
int syn_pool_lambda_new(const struct syn_pool_lambda_params *p, struct syn_pool_backend **out,
                        char *err, size_t errlen);
int syn_pool_asg_new(const struct syn_pool_asg_params *p, struct syn_pool_backend **out, char *err,
                     size_t errlen);

/* The backend called name ("lambda" or "asg") configured from the environment, for the pool
 * manager:
 *   lambda: SYNAPSE_LAMBDA_FUNCTION (required), SYNAPSE_LAMBDA_QUALIFIER,
 *           SYNAPSE_LAMBDA_MAX_CONCURRENCY, SYNAPSE_LAMBDA_TIMEOUT (s), SYNAPSE_LAMBDA_ENDPOINT
 *   asg:    SYNAPSE_ASG_NAME (required), SYNAPSE_ASG_ENDPOINT
 *   both:   AWS_REGION (or AWS_DEFAULT_REGION) and the credential chain
 * model_name and idle_timeout_s come from the pool's own parameters. SYN_ENOTFOUND for another
 * name; SYN_EINVAL when a required variable is missing or malformed. */
int syn_pool_backend_from_env(const char *name, const char *model_name, double idle_timeout_s,
                              struct syn_pool_backend **out, char *err, size_t errlen);

#endif
