/*
 * `synapse lambda`: a custom AWS Lambda runtime (the Runtime API, version 2018-06-01, at
 * $AWS_LAMBDA_RUNTIME_API). At init it loads the model (a failure is reported on
 * /runtime/init/error and the process exits); then, for every invocation it GETs from
 * /runtime/invocation/next, it does what the event says and POSTs the outcome to
 * /runtime/invocation/{id}/response or /runtime/invocation/{id}/error.
 *
 * Events (JSON):
 *
 *   {"jobs": [{"id": "a", "prompt": "Once upon a time", "max_tokens": 32, "temperature": 0,
 *              "top_p": 1, "top_k": 0, "min_p": 0, "seed": 1, "stop": ["\n"]},
 *             {"id": "b", "messages": [{"role": "user", "content": "Hi"}]}],
 *    "stream": false}
 *       A batch carried in the event: run here, all jobs batched on the engine together.
 *       Buffered answer: {"results": [{"id", "text", "finish_reason", "usage": {...}}, ...]}
 *       (a job that cannot run has "error" instead). Streamed answer (response streaming mode:
 *       "stream": true or --stream): NDJSON, one line per piece of text as it is generated,
 *       {"id": "a", "delta": "..."}, one {"id", "finish_reason", "usage"} line per job, and a
 *       final {"done": true}; an error after the stream has begun goes into the
 *       Lambda-Runtime-Function-Error-Type / -Body trailers.
 *
 *   {"mode": "drain", "model": "stories", "worker_id": "stories-lambda-1", "idle_timeout_s": 30}
 *       Be a worker (what the gateway's `lambda` pool backend sends): run `synapse worker` on the
 *       model's Redis streams under that id until it has been idle for idle_timeout_s, or until
 *       the invocation's deadline (Lambda-Runtime-Deadline-Ms) nears: then it is drained
 *       (SIGTERM: running sequences get the drain timeout, the rest go back to the queue) early
 *       enough that the response is posted before the deadline. The worker runs as a child
 *       process so that each invocation starts with a fresh worker and a drain cannot outlive it.
 *       Answer: {"mode": "drain", "worker_id", "stopped": "idle"|"deadline", "exit_status",
 *       "seconds"}.
 *
 * Errors: a payload that is not such an event is an invocation error of type
 * "Synapse.BadPayload"; a worker that fails is "Synapse.WorkerFailed"; a failed start is an init
 * error of type "Runtime.InitError". The process survives invocation errors.
 */
#ifndef SYN_AWS_LAMBDA_H
#define SYN_AWS_LAMBDA_H

#include <stddef.h>
#include <stdint.h>

struct syn_engine;

struct syn_lambda_params {
    const char *runtime_api;   /* "host:port"; NULL = $AWS_LAMBDA_RUNTIME_API */
    const char *model_path;    /* GGUF file or HF directory (required) */
    const char *model_name;    /* the name in keys; NULL = file name without extension */
    const char *redis_url;     /* for drain events; NULL = drain events are refused */
    const char *chat_template; /* override the model's template by name */
    const char *synapse_bin;   /* the binary for drain workers; NULL = /proc/self/exe */
    int n_threads;             /* engine threads; 0 = all CPUs */
    int max_seqs;              /* sequences batched at once (default 16) */
    int max_batched_tokens;    /* tokens per engine step (default 256) */
    int n_ctx;                 /* context per sequence; 0 = the model's (capped at 4096) */
    int kv_cache_mb;           /* 0 = engine default */
    int stream;                /* 1: answer batches in response streaming mode by default */
    int max_invocations;       /* exit after this many (tests); 0 = run until killed */
    int deadline_margin_ms;    /* keep this much before the deadline to answer (default 2000) */
    double idle_timeout_s;     /* drain events without idle_timeout_s (default 30) */
    double drain_timeout_s;    /* a drained worker's grace period, at most (default 10) */
};

struct syn_lambda_params syn_lambda_default_params(void);

/* Runs the runtime loop. Returns 0 after max_invocations, or a negative syn_err with a message
 * when it cannot go on (init error, already reported; the Runtime API unreachable). */
int syn_lambda_run(const struct syn_lambda_params *p, char *err, size_t errlen);

/* Asks a running syn_lambda_run to stop after the current invocation (async-signal-safe; also
 * drains a drain-mode worker). */
void syn_lambda_request_stop(void);

/* ---- the batch runner (lambda_batch.c) ---- */

struct lb_batch;

/* Validates and tokenizes the jobs of a batch event (a jansson array) for engine e. chat_id is
 * the resolved chat template (negative: none, with chat_err saying why). stop_at_ms: unix ms at
 * which unfinished jobs end with finish_reason "deadline" (0 = none). Returns 0, or SYN_EINVAL
 * (a malformed job: the whole event is refused) with a message. */
struct json_t;
int lb_batch_new(struct syn_engine *e, int chat_id, const char *chat_err, const struct json_t *jobs,
                 int64_t stop_at_ms, struct lb_batch **out, char *err, size_t errlen);
void lb_batch_free(struct lb_batch *b);

/* Runs engine steps until there is new output or the batch is done. When stream is set the new
 * NDJSON lines are appended to out. Returns 1 while jobs remain, 0 when every job has finished
 * (the final line then written), or a negative syn_err (an engine failure) with a message. */
struct aws_sb;
int lb_batch_pump(struct lb_batch *b, int stream, struct aws_sb *out, char *err, size_t errlen);

/* The buffered answer once done: {"results": [...]}, from malloc(). */
char *lb_batch_result(const struct lb_batch *b);

#endif
