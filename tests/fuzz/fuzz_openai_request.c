/*
 * libFuzzer driver for the gateway's request parsing: every input is parsed and validated as a
 * /v1/chat/completions body and as a /v1/completions body, and as an HTTP request head. An
 * accepted request must be internally consistent (exactly one of messages, prompt, tokens;
 * max_tokens >= 1; at most 4 stop strings; the job encodes as an XADD), and its responses are
 * built, so the builders see every string the parser lets through. A refusal must carry a 4xx
 * status and a message. Nothing here may crash, leak or read out of bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/arena.h"
#include "gateway/http.h"
#include "gateway/openai.h"
#include "synapse/queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const struct gw_oai_request *r)
{
    const struct syn_job *j = &r->job;
    int inputs = (j->messages != NULL) + (j->prompt != NULL) + (j->tokens != NULL);
    if (inputs != 1) __builtin_trap();
    if (j->max_tokens < 1 || j->n_stop < 0 || j->n_stop > SYN_Q_MAX_STOP) __builtin_trap();
    if (j->top_logprobs < 0 || j->top_logprobs > SYN_Q_MAX_TOP_LOGPROBS) __builtin_trap();
    if (!(j->sampling.temperature >= 0 && j->sampling.temperature <= 2)) __builtin_trap();
    if (!r->model[0]) __builtin_trap();
}

static void build_responses(struct gw_oai_request *r, enum gw_oai_kind kind)
{
    /* encode the job the way the gateway would (with the fields it fills itself) */
    struct syn_job *j = &r->job;
    strcpy(j->id, kind == GW_OAI_CHAT ? "chatcmpl-fuzz" : "cmpl-fuzz");
    strcpy(j->model, "m");
    strcpy(j->reply, "syn:reply:{gw-fuzz}");
    struct syn_q_argv a;
    memset(&a, 0, sizeof a);
    if (syn_job_xadd_argv(j, &a) != 0) __builtin_trap();
    syn_q_argv_reset(&a);
    /* the model name and the prompt as response text: any bytes must give valid JSON */
    struct gw_oai_meta m = {kind, j->id, r->model, 1};
    const char *text = j->prompt ? j->prompt : j->messages ? j->messages : "";
    char *s = gw_oai_completion_json(&m, text, strlen(text), "stop", NULL, 1, 2);
    if (!s) __builtin_trap();
    free(s);
    s = gw_oai_chunk_json(&m, 1, text, strlen(text), NULL, NULL, r->include_usage);
    if (!s) __builtin_trap();
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_oai_limits lim = gw_oai_default_limits();
    for (int k = 0; k < 2; k++) {
        enum gw_oai_kind kind = k ? GW_OAI_COMPLETIONS : GW_OAI_CHAT;
        struct gw_oai_request r;
        struct gw_oai_error e;
        memset(&e, 0, sizeof e);
        if (gw_oai_parse(kind, (const char *)data, size, &lim, &r, &e) == 0) {
            check_request(&r);
            build_responses(&r, kind);
            gw_oai_request_release(&r);
        } else {
            if (e.status < 400 || e.status > 599 || !e.message[0]) __builtin_trap();
            char *s = gw_oai_error_json(&e);
            if (!s) __builtin_trap();
            free(s);
        }
    }
    /* the same bytes as an HTTP request head */
    struct gw_arena a = {0};
    struct gw_http_head h;
    char err[256];
    int st = gw_http_parse_head((const char *)data, size, 100, &a, &h, err, sizeof err);
    if (st == 0) {
        if (!h.method || !h.path || h.path[0] != '/' || h.n_headers < 0 || h.n_headers > 100)
            __builtin_trap();
        for (int i = 0; i < h.n_headers; i++)
            if (!h.headers[i].name[0]) __builtin_trap();
        uint64_t len;
        for (int i = 0; i < h.n_headers; i++) gw_http_parse_length(h.headers[i].value, &len);
    } else if (st != 400 && st != 431 && st != 505 && st != 500) {
        __builtin_trap();
    }
    gw_arena_release(&a);
    return 0;
}
