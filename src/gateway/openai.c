/*
 * OpenAI request parsing and validation, and response building (see openai.h). Pure functions
 * over bytes and JSON: the fuzzer (tests/fuzz/fuzz_openai_request.c) and the unit tests drive
 * them without a server.
 */
#include "gateway/openai.h"

#include "synapse/sampler.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_INVALID "invalid_request_error"

/* Longest stop string accepted (bytes). */
#define MAX_STOP_BYTES 512

void gw_oai_set_error(struct gw_oai_error *e, int status, const char *type, const char *code,
                      const char *param, const char *fmt, ...)
{
    if (!e) return;
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

struct gw_oai_limits gw_oai_default_limits(void)
{
    struct gw_oai_limits l = {
        .max_tokens_limit = 1 << 20,
        .default_max_tokens_chat = 4096,
        .default_max_tokens_text = 16,
    };
    return l;
}

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 if invalid/truncated.
 * *trunc is set when the bytes are a valid beginning cut short by the end of the input. */
static size_t utf8_seq(const unsigned char *s, size_t n, int *trunc)
{
    *trunc = 0;
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c == 0xe0)
        len = 3, lo = 0xa0;
    else if (c >= 0xe1 && c <= 0xec)
        len = 3;
    else if (c == 0xed)
        len = 3, hi = 0x9f;
    else if (c >= 0xee && c <= 0xef)
        len = 3;
    else if (c == 0xf0)
        len = 4, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3)
        len = 4;
    else if (c == 0xf4)
        len = 4, hi = 0x8f;
    else
        return 0;
    for (size_t i = 1; i < len; i++) {
        if (i >= n) {
            *trunc = 1;
            return 0;
        }
        unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xbf;
        if (s[i] < lo_i || s[i] > hi_i) return 0;
    }
    return len;
}

size_t gw_utf8_sanitize(const char *s, size_t n, char *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int trunc;
        size_t l = utf8_seq(u + i, n - i, &trunc);
        if (l) {
            memcpy(out + o, u + i, l);
            o += l;
            i += l;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
    return o;
}

size_t gw_utf8_complete_prefix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    /* only the last three bytes can start an unfinished sequence */
    size_t from = n > 3 ? n - 3 : 0;
    for (size_t i = from; i < n; i++) {
        if (u[i] < 0xc2 || u[i] > 0xf4) continue;
        int trunc;
        if (!utf8_seq(u + i, n - i, &trunc) && trunc) return i;
    }
    return n;
}

/* A json string from bytes that may not be valid UTF-8. */
static json_t *json_text(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j || !s) return j;
    if (n > (SIZE_MAX - 1) / 3) return NULL;
    char *buf = malloc(3 * n + 1);
    if (!buf) return NULL;
    size_t m = gw_utf8_sanitize(s, n, buf);
    j = json_stringn(buf, m);
    free(buf);
    return j;
}

/* ---- field readers ---- */

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "something else";
}

static int bad_type(struct gw_oai_error *e, const char *param, const char *expected,
                    const json_t *v)
{
    gw_oai_set_error(e, 400, ERR_INVALID, "invalid_type", param,
                     "Invalid type for '%s': expected %s, but got %s instead.", param, expected,
                     type_name(v));
    return -1;
}

/* The field, or NULL when absent or null. */
static json_t *field(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return v && !json_is_null(v) ? v : NULL;
}

/* Reads an optional integer field within [lo, hi]: 1 if present, 0 if absent, -1 on error. */
static int get_int(json_t *obj, const char *name, long long lo, long long hi, long long *out,
                   struct gw_oai_error *e)
{
    json_t *v = field(obj, name);
    if (!v) return 0;
    if (!json_is_integer(v)) {
        /* 3.0 is an integer to JavaScript clients */
        double d = json_is_real(v) ? json_real_value(v) : NAN;
        if (!(d == floor(d) && fabs(d) < 9e15)) return bad_type(e, name, "an integer", v);
        *out = (long long)d;
    } else {
        *out = json_integer_value(v);
    }
    if (*out < lo || *out > hi) {
        gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", name,
                         "Invalid '%s': expected an integer between %lld and %lld, but got %lld "
                         "instead.",
                         name, lo, hi, *out);
        return -1;
    }
    return 1;
}

static int get_num(json_t *obj, const char *name, double lo, double hi, double *out,
                   struct gw_oai_error *e)
{
    json_t *v = field(obj, name);
    if (!v) return 0;
    if (!json_is_number(v)) return bad_type(e, name, "a number", v);
    *out = json_number_value(v);
    if (!(*out >= lo && *out <= hi)) {
        gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", name,
                         "Invalid '%s': expected a number between %g and %g, but got %g "
                         "instead.",
                         name, lo, hi, *out);
        return -1;
    }
    return 1;
}

static int get_bool(json_t *obj, const char *name, int *out, struct gw_oai_error *e)
{
    json_t *v = field(obj, name);
    if (!v) return 0;
    if (!json_is_boolean(v)) return bad_type(e, name, "a boolean", v);
    *out = json_is_true(v);
    return 1;
}

static int get_str(json_t *obj, const char *name, const char **out, struct gw_oai_error *e)
{
    json_t *v = field(obj, name);
    if (!v) return 0;
    if (!json_is_string(v)) return bad_type(e, name, "a string", v);
    *out = json_string_value(v);
    return 1;
}

/* ---- messages and prompts ---- */

/* Flattens a message's content (a string, or an array of text parts) into one string.
 * Returns a new json string, or NULL with e set. */
static json_t *flatten_content(json_t *content, const char *param, struct gw_oai_error *e)
{
    char p[160];
    if (json_is_string(content)) return json_incref(content);
    if (!json_is_array(content)) {
        bad_type(e, param, "a string or an array of content parts", content);
        return NULL;
    }
    size_t total = 0, i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        snprintf(p, sizeof p, "%s[%zu]", param, i);
        if (!json_is_object(part)) {
            bad_type(e, p, "an object", part);
            return NULL;
        }
        const char *type = NULL;
        snprintf(p, sizeof p, "%s[%zu].type", param, i);
        if (get_str(part, "type", &type, e) < 0) return NULL;
        if (!type) {
            gw_oai_set_error(e, 400, ERR_INVALID, "missing_required_parameter", p,
                             "Missing required parameter: '%s'.", p);
            return NULL;
        }
        if (strcmp(type, "text") != 0) {
            gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", p,
                             "Invalid value '%.40s' for '%s': only 'text' content parts are "
                             "supported.",
                             type, p);
            return NULL;
        }
        json_t *t = json_object_get(part, "text");
        snprintf(p, sizeof p, "%s[%zu].text", param, i);
        if (!t || !json_is_string(t)) {
            if (!t)
                gw_oai_set_error(e, 400, ERR_INVALID, "missing_required_parameter", p,
                                 "Missing required parameter: '%s'.", p);
            else
                bad_type(e, p, "a string", t);
            return NULL;
        }
        total += json_string_length(t) + 1;
    }
    char *buf = malloc(total + 1);
    if (!buf) {
        gw_oai_set_error(e, 500, "server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    size_t o = 0;
    json_array_foreach(content, i, part)
    {
        json_t *t = json_object_get(part, "text");
        if (o) buf[o++] = '\n';
        memcpy(buf + o, json_string_value(t), json_string_length(t));
        o += json_string_length(t);
    }
    json_t *s = json_stringn(buf, o);
    free(buf);
    if (!s) gw_oai_set_error(e, 500, "server_error", NULL, NULL, "out of memory");
    return s;
}

static int parse_messages(json_t *root, struct syn_job *job, struct gw_oai_error *e)
{
    json_t *msgs = field(root, "messages");
    if (!msgs) {
        gw_oai_set_error(e, 400, ERR_INVALID, "missing_required_parameter", "messages",
                         "Missing required parameter: 'messages'.");
        return -1;
    }
    if (!json_is_array(msgs)) return bad_type(e, "messages", "an array", msgs);
    if (json_array_size(msgs) == 0) {
        gw_oai_set_error(e, 400, ERR_INVALID, "empty_array", "messages",
                         "Invalid 'messages': empty array. Expected an array with minimum "
                         "length 1, but got an empty array instead.");
        return -1;
    }
    json_t *out = json_array();
    if (!out) goto oom;
    size_t i;
    json_t *m;
    char p[96];
    json_array_foreach(msgs, i, m)
    {
        snprintf(p, sizeof p, "messages[%zu]", i);
        if (!json_is_object(m)) {
            bad_type(e, p, "an object", m);
            goto fail;
        }
        const char *role = NULL;
        snprintf(p, sizeof p, "messages[%zu].role", i);
        if (get_str(m, "role", &role, e) < 0) {
            snprintf(e->param, sizeof e->param, "%s", p);
            snprintf(e->message, sizeof e->message,
                     "Invalid type for '%s': expected one of system, user, assistant.", p);
            goto fail;
        }
        if (!role) {
            gw_oai_set_error(e, 400, ERR_INVALID, "missing_required_parameter", p,
                             "Missing required parameter: '%s'.", p);
            goto fail;
        }
        if (!strcmp(role, "developer")) role = "system";
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) {
            gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", p,
                             "Invalid value '%.40s' for '%s': supported roles are 'system', "
                             "'user' and 'assistant'.",
                             role, p);
            goto fail;
        }
        snprintf(p, sizeof p, "messages[%zu].content", i);
        json_t *content = field(m, "content");
        if (!content) {
            gw_oai_set_error(e, 400, ERR_INVALID, "missing_required_parameter", p,
                             "Missing required parameter: '%s'.", p);
            goto fail;
        }
        json_t *flat = flatten_content(content, p, e);
        if (!flat) goto fail;
        json_t *o = json_pack("{s:s,s:o}", "role", role, "content", flat);
        if (!o || json_array_append_new(out, o) != 0) goto oom;
    }
    job->messages = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    if (!job->messages) {
        gw_oai_set_error(e, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    return 0;
oom:
    gw_oai_set_error(e, 500, "server_error", NULL, NULL, "out of memory");
fail:
    json_decref(out);
    return -1;
}

/* Token ids of a prompt array: 0 with job->tokens set, -1 with e set. */
static int parse_token_ids(json_t *arr, const char *param, struct syn_job *job,
                           struct gw_oai_error *e)
{
    size_t n = json_array_size(arr);
    char p[96];
    if (n == 0) {
        gw_oai_set_error(e, 400, ERR_INVALID, "empty_array", param,
                         "Invalid '%s': the prompt must not be empty.", param);
        return -1;
    }
    if (n > INT_MAX / 2) {
        gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", param, "Invalid '%s': too long.",
                         param);
        return -1;
    }
    job->tokens = malloc(n * sizeof *job->tokens);
    if (!job->tokens) {
        gw_oai_set_error(e, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(arr, i);
        snprintf(p, sizeof p, "%s[%zu]", param, i);
        if (!json_is_integer(t)) return bad_type(e, p, "an integer token id", t);
        json_int_t v = json_integer_value(t);
        if (v < 0 || v > INT32_MAX) {
            gw_oai_set_error(
                e, 400, ERR_INVALID, "invalid_value", p,
                "Invalid '%s': token ids are between 0 and %d, got %" JSON_INTEGER_FORMAT ".", p,
                INT32_MAX, v);
            return -1;
        }
        job->tokens[i] = (int32_t)v;
    }
    job->n_tokens = (int)n;
    return 0;
}

static int parse_prompt(json_t *root, struct syn_job *job, struct gw_oai_error *e)
{
    json_t *pr = field(root, "prompt");
    if (!pr) {
        gw_oai_set_error(e, 400, ERR_INVALID, "missing_required_parameter", "prompt",
                         "Missing required parameter: 'prompt'.");
        return -1;
    }
    if (json_is_string(pr)) {
        job->prompt = strndup(json_string_value(pr), json_string_length(pr));
        if (!job->prompt) goto oom;
        if (strlen(job->prompt) != json_string_length(pr)) {
            gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", "prompt",
                             "Invalid 'prompt': it contains a NUL character.");
            return -1;
        }
        return 0;
    }
    if (!json_is_array(pr))
        return bad_type(e, "prompt", "a string, an array of one string or an array of token ids",
                        pr);
    size_t n = json_array_size(pr);
    if (n == 0) {
        gw_oai_set_error(e, 400, ERR_INVALID, "empty_array", "prompt",
                         "Invalid 'prompt': the prompt must not be empty.");
        return -1;
    }
    json_t *first = json_array_get(pr, 0);
    if (json_is_integer(first)) return parse_token_ids(pr, "prompt", job, e);
    if (n > 1) {
        gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", "prompt",
                         "Invalid 'prompt': batched prompts (%zu of them) are not supported; "
                         "send one request per prompt.",
                         n);
        return -1;
    }
    if (json_is_string(first)) {
        job->prompt = strndup(json_string_value(first), json_string_length(first));
        if (!job->prompt) goto oom;
        return 0;
    }
    if (json_is_array(first)) return parse_token_ids(first, "prompt[0]", job, e);
    return bad_type(e, "prompt[0]", "a string or an array of token ids", first);
oom:
    gw_oai_set_error(e, 500, "server_error", NULL, NULL, "out of memory");
    return -1;
}

static int parse_stop(json_t *root, struct syn_job *job, struct gw_oai_error *e)
{
    json_t *st = field(root, "stop");
    if (!st) return 0;
    json_t *one[1] = {st};
    json_t **items = one;
    size_t n = 1;
    if (json_is_array(st)) {
        n = json_array_size(st);
        if (n > SYN_Q_MAX_STOP) {
            gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", "stop",
                             "Invalid 'stop': at most %d stop sequences are allowed, got %zu.",
                             SYN_Q_MAX_STOP, n);
            return -1;
        }
        items = NULL;
    } else if (!json_is_string(st)) {
        return bad_type(e, "stop", "a string or an array of strings", st);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = items ? items[i] : json_array_get(st, i);
        char p[32];
        snprintf(p, sizeof p, items ? "stop" : "stop[%zu]", i);
        if (!json_is_string(s)) return bad_type(e, p, "a string", s);
        size_t len = json_string_length(s);
        if (len == 0 || len > MAX_STOP_BYTES || strlen(json_string_value(s)) != len) {
            gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", p,
                             "Invalid '%s': stop sequences must be 1 to %d bytes without NUL "
                             "characters.",
                             p, MAX_STOP_BYTES);
            return -1;
        }
        job->stop[job->n_stop] = strdup(json_string_value(s));
        if (!job->stop[job->n_stop]) {
            gw_oai_set_error(e, 500, "server_error", NULL, NULL, "out of memory");
            return -1;
        }
        job->n_stop++;
    }
    return 0;
}

/* ---- the request ---- */

static int parse_root(enum gw_oai_kind kind, json_t *root, const struct gw_oai_limits *lim,
                      struct gw_oai_request *out, struct gw_oai_error *e)
{
    struct syn_job *job = &out->job;
    long long iv;
    double dv;
    int bv, r;
    const char *sv;

    if (!json_is_object(root)) {
        gw_oai_set_error(e, 400, ERR_INVALID, NULL, NULL,
                         "The request body must be a JSON object, not %s.", type_name(root));
        return -1;
    }
    /* model */
    json_t *mv = field(root, "model");
    if (!mv) {
        gw_oai_set_error(e, 400, ERR_INVALID, "missing_required_parameter", "model",
                         "Missing required parameter: 'model'.");
        return -1;
    }
    if (!json_is_string(mv)) return bad_type(e, "model", "a string", mv);
    size_t ml = json_string_length(mv);
    if (ml == 0) {
        gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", "model",
                         "Invalid 'model': it must not be empty.");
        return -1;
    }
    out->model_cut = ml >= sizeof out->model;
    size_t keep = out->model_cut ? sizeof out->model - 1 : ml;
    keep = gw_utf8_complete_prefix(json_string_value(mv), keep);
    memcpy(out->model, json_string_value(mv), keep);
    out->model[keep] = 0;
    if (strlen(out->model) != keep) out->model_cut = 1; /* an embedded NUL */

    /* what to run */
    if (kind == GW_OAI_CHAT) {
        if (parse_messages(root, job, e)) return -1;
    } else {
        if (parse_prompt(root, job, e)) return -1;
        if ((r = get_bool(root, "echo", &bv, e)) < 0) return -1;
        if (r && bv) {
            gw_oai_set_error(e, 400, ERR_INVALID, "unsupported_value", "echo",
                             "Unsupported value: 'echo' true is not supported by this server.");
            return -1;
        }
        if ((r = get_int(root, "best_of", 1, INT_MAX, &iv, e)) < 0) return -1;
        if (r && iv > 1) {
            gw_oai_set_error(e, 400, ERR_INVALID, "unsupported_value", "best_of",
                             "Unsupported value: 'best_of' greater than 1 is not supported by "
                             "this server.");
            return -1;
        }
        if ((r = get_str(root, "suffix", &sv, e)) < 0) return -1;
        if (r && *sv) {
            gw_oai_set_error(e, 400, ERR_INVALID, "unsupported_value", "suffix",
                             "Unsupported value: 'suffix' is not supported by this server.");
            return -1;
        }
    }

    /* how many tokens */
    job->max_tokens =
        kind == GW_OAI_CHAT ? lim->default_max_tokens_chat : lim->default_max_tokens_text;
    if (job->max_tokens > lim->max_tokens_limit) job->max_tokens = lim->max_tokens_limit;
    if ((r = get_int(root, "max_tokens", LLONG_MIN, LLONG_MAX, &iv, e)) < 0) return -1;
    const char *mt_name = "max_tokens";
    if (kind == GW_OAI_CHAT) {
        long long iv2;
        int r2 = get_int(root, "max_completion_tokens", LLONG_MIN, LLONG_MAX, &iv2, e);
        if (r2 < 0) return -1;
        if (r2) {
            r = 1;
            iv = iv2;
            mt_name = "max_completion_tokens";
        }
    }
    if (r) {
        if (iv < 1 || iv > lim->max_tokens_limit) {
            gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", mt_name,
                             "Invalid '%s': expected an integer between 1 and %d, but got %lld "
                             "instead.",
                             mt_name, lim->max_tokens_limit, iv);
            return -1;
        }
        job->max_tokens = (int)iv;
    }

    /* sampling */
    if ((r = get_num(root, "temperature", 0, 2, &dv, e)) < 0) return -1;
    if (r) job->sampling.temperature = (float)dv;
    if ((r = get_num(root, "top_p", 0, 1, &dv, e)) < 0) return -1;
    if (r) {
        if (dv == 0)
            job->sampling.temperature = 0; /* only the most likely token: greedy */
        else
            job->sampling.top_p = (float)dv;
    }
    if ((r = get_num(root, "presence_penalty", -2, 2, &dv, e)) < 0) return -1;
    if (r) job->sampling.presence_penalty = (float)dv;
    if ((r = get_num(root, "frequency_penalty", -2, 2, &dv, e)) < 0) return -1;
    if (r) job->sampling.frequency_penalty = (float)dv;
    if ((r = get_int(root, "seed", LLONG_MIN, LLONG_MAX, &iv, e)) < 0) return -1;
    if (r) {
        job->sampling.seed = (uint64_t)iv;
        out->seed_set = 1;
    }
    if ((r = get_int(root, "n", LLONG_MIN, LLONG_MAX, &iv, e)) < 0) return -1;
    if (r && iv != 1) {
        if (iv < 1)
            gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", "n",
                             "Invalid 'n': expected an integer >= 1, but got %lld instead.", iv);
        else
            gw_oai_set_error(e, 400, ERR_INVALID, "unsupported_value", "n",
                             "Unsupported value: 'n' greater than 1 is not supported by this "
                             "server; send %lld separate requests (with different seeds) "
                             "instead.",
                             iv);
        return -1;
    }
    if (parse_stop(root, job, e)) return -1;

    /* logprobs */
    if (kind == GW_OAI_CHAT) {
        int lp = 0;
        if ((r = get_bool(root, "logprobs", &lp, e)) < 0) return -1;
        job->logprobs = lp;
        if ((r = get_int(root, "top_logprobs", 0, SYN_Q_MAX_TOP_LOGPROBS, &iv, e)) < 0) return -1;
        if (r) {
            if (!lp) {
                gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", "top_logprobs",
                                 "Invalid 'top_logprobs': 'logprobs' must be set to true when "
                                 "'top_logprobs' is used.");
                return -1;
            }
            job->top_logprobs = (int)iv;
        }
    } else {
        if ((r = get_int(root, "logprobs", 0, 5, &iv, e)) < 0) return -1;
        if (r) {
            job->logprobs = 1;
            job->top_logprobs = (int)iv;
        }
    }

    /* streaming */
    if ((r = get_bool(root, "stream", &out->stream, e)) < 0) return -1;
    json_t *so = field(root, "stream_options");
    if (so) {
        if (!json_is_object(so)) return bad_type(e, "stream_options", "an object", so);
        if (!out->stream) {
            gw_oai_set_error(e, 400, ERR_INVALID, "invalid_value", "stream_options",
                             "Invalid 'stream_options': only allowed when 'stream' is true.");
            return -1;
        }
        if (get_bool(so, "include_usage", &out->include_usage, e) < 0) {
            snprintf(e->param, sizeof e->param, "stream_options.include_usage");
            snprintf(e->message, sizeof e->message,
                     "Invalid type for 'stream_options.include_usage': expected a boolean.");
            return -1;
        }
    }
    if (get_str(root, "user", &sv, e) < 0) return -1;
    return 0;
}

int gw_oai_parse(enum gw_oai_kind kind, const char *body, size_t len,
                 const struct gw_oai_limits *lim, struct gw_oai_request *out,
                 struct gw_oai_error *err)
{
    memset(out, 0, sizeof *out);
    out->kind = kind;
    syn_job_init(&out->job);
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root) {
        gw_oai_set_error(err, 400, ERR_INVALID, NULL, NULL,
                         "We could not parse the JSON body of your request: %s (line %d, "
                         "column %d). The body must be a JSON object in UTF-8.",
                         je.text, je.line, je.column);
        syn_job_release(&out->job);
        return -1;
    }
    int rc = parse_root(kind, root, lim, out, err);
    json_decref(root);
    if (rc) syn_job_release(&out->job);
    return rc;
}

void gw_oai_request_release(struct gw_oai_request *r)
{
    syn_job_release(&r->job);
}

/* ---- responses ---- */

static char *dump(json_t *j)
{
    if (!j) return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(j);
    return s;
}

static json_t *usage_obj(int prompt, int completion)
{
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", prompt, "completion_tokens", completion,
                     "total_tokens", prompt + completion);
}

static json_t *nullable(json_t *v)
{
    return v ? json_incref(v) : json_null();
}

char *gw_oai_completion_json(const struct gw_oai_meta *m, const char *text, size_t len,
                             const char *finish, json_t *logprobs, int prompt_tokens,
                             int completion_tokens)
{
    json_t *choice;
    if (m->kind == GW_OAI_CHAT)
        choice = json_pack("{s:i,s:{s:s,s:o},s:o,s:s}", "index", 0, "message", "role", "assistant",
                           "content", json_text(text, len), "logprobs", nullable(logprobs),
                           "finish_reason", finish ? finish : "stop");
    else
        choice =
            json_pack("{s:o,s:i,s:o,s:s}", "text", json_text(text, len), "index", 0, "logprobs",
                      nullable(logprobs), "finish_reason", finish ? finish : "stop");
    if (!choice) return NULL;
    return dump(json_pack("{s:s,s:s,s:I,s:s,s:[o],s:o}", "id", m->id, "object",
                          m->kind == GW_OAI_CHAT ? "chat.completion" : "text_completion", "created",
                          (json_int_t)m->created, "model", m->model, "choices", choice, "usage",
                          usage_obj(prompt_tokens, completion_tokens)));
}

char *gw_oai_chunk_json(const struct gw_oai_meta *m, int first, const char *text, size_t len,
                        const char *finish, json_t *logprobs, int usage_null)
{
    json_t *choice;
    json_t *fin = finish ? json_string(finish) : json_null();
    if (m->kind == GW_OAI_CHAT) {
        json_t *delta = json_object();
        if (delta && first) json_object_set_new(delta, "role", json_string("assistant"));
        if (delta && (first || len || !finish))
            json_object_set_new(delta, "content", json_text(text, len));
        choice = json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "delta", delta, "logprobs",
                           nullable(logprobs), "finish_reason", fin);
    } else {
        choice = json_pack("{s:o,s:i,s:o,s:o}", "text", json_text(text, len), "index", 0,
                           "logprobs", nullable(logprobs), "finish_reason", fin);
    }
    if (!choice) return NULL;
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", m->id, "object",
                          m->kind == GW_OAI_CHAT ? "chat.completion.chunk" : "text_completion",
                          "created", (json_int_t)m->created, "model", m->model, "choices", choice);
    if (o && usage_null) json_object_set_new(o, "usage", json_null());
    return dump(o);
}

char *gw_oai_usage_chunk_json(const struct gw_oai_meta *m, int prompt_tokens, int completion_tokens)
{
    return dump(json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", m->id, "object",
                          m->kind == GW_OAI_CHAT ? "chat.completion.chunk" : "text_completion",
                          "created", (json_int_t)m->created, "model", m->model, "choices", "usage",
                          usage_obj(prompt_tokens, completion_tokens)));
}

char *gw_oai_error_json(const struct gw_oai_error *e)
{
    return dump(json_pack("{s:{s:o,s:s,s:o,s:o}}", "error", "message",
                          json_text(e->message, strlen(e->message)), "type",
                          e->type ? e->type : ERR_INVALID, "param",
                          e->param[0] ? json_string(e->param) : json_null(), "code",
                          e->code ? json_string(e->code) : json_null()));
}

static json_t *model_obj(const char *model, int64_t created)
{
    return json_pack("{s:s,s:s,s:I,s:s}", "id", model, "object", "model", "created",
                     (json_int_t)created, "owned_by", "synapse");
}

char *gw_oai_models_json(const char *const *models, int n, int64_t created)
{
    json_t *data = json_array();
    for (int i = 0; data && i < n; i++) json_array_append_new(data, model_obj(models[i], created));
    return dump(json_pack("{s:s,s:o}", "object", "list", "data", data));
}

char *gw_oai_model_json(const char *model, int64_t created)
{
    return dump(model_obj(model, created));
}

/* ---- logprobs ---- */

static json_t *bytes_of(const char *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

/* {"token","logprob","bytes"} from a worker entry (token text taken as is). */
static json_t *chat_entry(json_t *w)
{
    json_t *tok = json_object_get(w, "token");
    json_t *lp = json_object_get(w, "logprob");
    const char *ts = json_is_string(tok) ? json_string_value(tok) : "";
    size_t tl = json_is_string(tok) ? json_string_length(tok) : 0;
    json_t *bytes = json_object_get(w, "bytes");
    return json_pack("{s:s%,s:f,s:o}", "token", ts, tl, "logprob",
                     json_is_number(lp) ? json_number_value(lp) : -9999.0, "bytes",
                     json_is_array(bytes) ? json_incref(bytes) : bytes_of(ts, tl));
}

json_t *gw_oai_logprobs(enum gw_oai_kind kind, json_t *worker_tokens, size_t text_offset)
{
    if (!json_is_array(worker_tokens)) return NULL;
    size_t i;
    json_t *w;
    if (kind == GW_OAI_CHAT) {
        json_t *content = json_array();
        json_array_foreach(worker_tokens, i, w)
        {
            json_t *e = chat_entry(w);
            if (!e) continue;
            json_t *tops = json_array(), *wt = json_object_get(w, "top_logprobs");
            size_t k;
            json_t *t;
            if (json_is_array(wt))
                json_array_foreach(wt, k, t) json_array_append_new(tops, chat_entry(t));
            json_object_set_new(e, "top_logprobs", tops);
            json_array_append_new(content, e);
        }
        return json_pack("{s:o}", "content", content);
    }
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t off = text_offset;
    json_array_foreach(worker_tokens, i, w)
    {
        json_t *tok = json_object_get(w, "token"), *lp = json_object_get(w, "logprob");
        const char *ts = json_is_string(tok) ? json_string_value(tok) : "";
        size_t tl = json_is_string(tok) ? json_string_length(tok) : 0;
        json_array_append_new(tokens, json_stringn(ts, tl));
        json_array_append_new(lps, json_real(json_is_number(lp) ? json_number_value(lp) : -9999.0));
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += tl;
        json_t *d = json_object(), *wt = json_object_get(w, "top_logprobs");
        size_t k;
        json_t *t;
        if (json_is_array(wt)) json_array_foreach(wt, k, t)
            {
                json_t *tt = json_object_get(t, "token"), *tl2 = json_object_get(t, "logprob");
                if (json_is_string(tt) && json_is_number(tl2))
                    json_object_setn_new(d, json_string_value(tt), json_string_length(tt),
                                         json_real(json_number_value(tl2)));
            }
        json_array_append_new(tops, d);
    }
    return json_pack("{s:o,s:o,s:o,s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs",
                     tops, "text_offset", offs);
}
