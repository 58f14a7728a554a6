/*
 * The OpenAI API surface, without any I/O: request bodies of POST /v1/chat/completions and
 * /v1/completions parsed and validated into a job (struct syn_job), and the response bodies
 * (whole completions, stream chunks, usage chunks, model lists, errors) built as JSON.
 * docs/api.md lists every field as implemented here.
 *
 * Validation follows the reference API: unknown fields are ignored, null means absent, a wrong
 * type or an out-of-range value is a 400 naming the parameter. What the engine cannot do (n > 1,
 * best_of > 1, echo, suffix, tool messages, non-text content parts) is refused, not ignored.
 */
#ifndef SYN_GW_OPENAI_H
#define SYN_GW_OPENAI_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "synapse/queue.h"

enum gw_oai_kind {
    GW_OAI_CHAT = 0,        /* /v1/chat/completions */
    GW_OAI_COMPLETIONS = 1, /* /v1/completions */
};

/* An error as the API reports it: {"error":{"message","type","param","code"}} with a status. */
struct gw_oai_error {
    int status;       /* HTTP status */
    const char *type; /* "invalid_request_error", "authentication_error", ... (static) */
    const char *code; /* static string, or NULL for null */
    char param[96];   /* "" for null */
    char message[512];
};

void gw_oai_set_error(struct gw_oai_error *e, int status, const char *type, const char *code,
                      const char *param, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

struct gw_oai_limits {
    int max_tokens_limit;        /* largest max_tokens accepted */
    int default_max_tokens_chat; /* chat without max_tokens */
    int default_max_tokens_text; /* completions without max_tokens (the API's default: 16) */
};

struct gw_oai_limits gw_oai_default_limits(void);

struct gw_oai_request {
    enum gw_oai_kind kind;
    char model[128];    /* the model asked for, as sent (cut at 127 bytes) */
    int model_cut;      /* 1 if the name was longer than that */
    int stream;         /* "stream": true */
    int include_usage;  /* "stream_options": {"include_usage": true} */
    int seed_set;       /* the client chose the seed */
    struct syn_job job; /* prompt or messages or tokens, sampling, max_tokens, stop,
                               logprobs; id, model, reply, deadline and priority are left for
                               the gateway to fill */
};

/* Parses and validates a request body. Returns 0 with out filled (release it with
 * gw_oai_request_release), or -1 with err filled (out needs no release then). */
int gw_oai_parse(enum gw_oai_kind kind, const char *body, size_t len,
                 const struct gw_oai_limits *lim, struct gw_oai_request *out,
                 struct gw_oai_error *err);
void gw_oai_request_release(struct gw_oai_request *r);

/* ---- responses (each returns a malloc'ed NUL-terminated JSON text, NULL on OOM) ---- */

struct gw_oai_meta {
    enum gw_oai_kind kind;
    const char *id; /* "chatcmpl-..." / "cmpl-..." */
    const char *model;
    int64_t created; /* unix seconds */
};

/* The whole (non-streaming) response. text need not be valid UTF-8 (invalid bytes become
 * U+FFFD). logprobs: the worker's per-token array (see gw_oai_logprobs) or NULL. */
char *gw_oai_completion_json(const struct gw_oai_meta *m, const char *text, size_t len,
                             const char *finish, json_t *logprobs, int prompt_tokens,
                             int completion_tokens);

/* One stream chunk. first: the chat chunk that carries the role. finish: NULL while running.
 * usage_null: include "usage": null (the client asked for a final usage chunk). */
char *gw_oai_chunk_json(const struct gw_oai_meta *m, int first, const char *text, size_t len,
                        const char *finish, json_t *logprobs, int usage_null);

/* The final chunk of stream_options.include_usage: empty choices and the usage. */
char *gw_oai_usage_chunk_json(const struct gw_oai_meta *m, int prompt_tokens,
                              int completion_tokens);

/* {"error":{...}}. */
char *gw_oai_error_json(const struct gw_oai_error *e);

/* GET /v1/models, and GET /v1/models/{id} for one. */
char *gw_oai_models_json(const char *const *models, int n, int64_t created);
char *gw_oai_model_json(const char *model, int64_t created);

/* The worker's logprobs (a JSON array with one object per token: {"token", "logprob",
 * optional "bytes", optional "top_logprobs": [{"token", "logprob"}...]}) turned into the
 * API's shape: for chat {"content": [...]}, for completions {"tokens", "token_logprobs",
 * "top_logprobs", "text_offset"} with offsets counted from text_offset. New reference. */
json_t *gw_oai_logprobs(enum gw_oai_kind kind, json_t *worker_tokens, size_t text_offset);

/* Copies s[0..n) to out (capacity at least 3n+1) replacing every invalid UTF-8 sequence with
 * U+FFFD; returns the length written. */
size_t gw_utf8_sanitize(const char *s, size_t n, char *out);
/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8 sequence that may
 * still be completed by later bytes. */
size_t gw_utf8_complete_prefix(const char *s, size_t n);

#endif
