/*
 * Jobs on the wire: one stream field per attribute, numbers as plain decimal text (floats with
 * %.9g, which round-trips every float exactly), so that `redis-cli XRANGE` shows a readable job.
 * Encoding builds an argv for any hiredis API; decoding reads a stream entry's field/value array
 * and checks every field strictly (syntax, ranges, names), because a worker must never run or
 * write to keys named by an entry it cannot trust. The field list is in docs/protocol.md.
 *
 * Also here: the strict number and name parsers the other codecs use.
 */
#include "queue_impl.h"

#include "synapse/error.h"

#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper bounds that keep a hostile entry from asking for absurd work or memory. */
#define JOB_MAX_TOKENS_OUT 16777216 /* max_tokens */
#define JOB_MAX_PROMPT_IDS 16777216 /* entries in a token prompt */
#define JOB_MAX_ATTEMPT    1000000

/* ---- strict field parsing ---- */

int qf_is(const redisReply *r, const char *s)
{
    size_t n = strlen(s);
    return r && r->type == REDIS_REPLY_STRING && r->len == n && memcmp(r->str, s, n) == 0;
}

const char *qf_show(const redisReply *v, char *buf, size_t cap)
{
    if (!v || v->type != REDIS_REPLY_STRING) {
        snprintf(buf, cap, "%s",
                 !v                           ? "nothing"
                 : v->type == REDIS_REPLY_NIL ? "nil"
                                              : "a non-string");
        return buf;
    }
    size_t o = 0;
    for (size_t i = 0; i < v->len && o + 8 < cap; i++) {
        unsigned char ch = (unsigned char)v->str[i];
        if (i == 40) {
            o += (size_t)snprintf(buf + o, cap - o, "...");
            break;
        }
        if (ch >= 0x20 && ch < 0x7f && ch != '\'' && ch != '\\')
            buf[o++] = (char)ch;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
    }
    buf[o < cap ? o : cap - 1] = 0;
    return buf;
}

int qf_i64(const redisReply *v, int64_t min, int64_t max, int64_t *out)
{
    if (!v || v->type != REDIS_REPLY_STRING || v->len < 1 || v->len > 20) return -1;
    size_t i = 0;
    int neg = 0;
    if (v->str[0] == '-') {
        neg = 1;
        i = 1;
        if (v->len == 1) return -1;
    }
    uint64_t acc = 0;
    for (; i < v->len; i++) {
        char ch = v->str[i];
        if (ch < '0' || ch > '9') return -1;
        acc = acc * 10 + (uint64_t)(ch - '0'); /* at most 19 digits: cannot wrap */
    }
    if (!neg && acc > (uint64_t)INT64_MAX) return -1;
    if (neg && acc > (uint64_t)INT64_MAX + 1) return -1;
    int64_t x = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    if (x < min || x > max) return -1;
    *out = x;
    return 0;
}

int qf_u64(const redisReply *v, uint64_t *out)
{
    if (!v || v->type != REDIS_REPLY_STRING || v->len < 1 || v->len > 20) return -1;
    uint64_t acc = 0;
    for (size_t i = 0; i < v->len; i++) {
        char ch = v->str[i];
        if (ch < '0' || ch > '9') return -1;
        uint64_t d = (uint64_t)(ch - '0');
        if (acc > (UINT64_MAX - d) / 10) return -1;
        acc = acc * 10 + d;
    }
    *out = acc;
    return 0;
}

int qf_f32(const redisReply *v, float *out)
{
    char tmp[48];
    if (!v || v->type != REDIS_REPLY_STRING || v->len < 1 || v->len >= sizeof tmp) return -1;
    for (size_t i = 0; i < v->len; i++) {
        char ch = v->str[i];
        if (!((ch >= '0' && ch <= '9') || ch == '.' || ch == 'e' || ch == 'E' || ch == '-' ||
              ch == '+'))
            return -1;
    }
    memcpy(tmp, v->str, v->len);
    tmp[v->len] = 0;
    char *end = NULL;
    float x = strtof(tmp, &end);
    if (end != tmp + v->len) return -1;
    *out = x;
    return 0;
}

int qf_name(const redisReply *v, char *dst, size_t cap)
{
    if (!v || v->type != REDIS_REPLY_STRING || v->len >= cap) return -1;
    char tmp[128];
    if (v->len >= sizeof tmp) return -1;
    memcpy(tmp, v->str, v->len);
    tmp[v->len] = 0;
    if (strlen(tmp) != v->len || !syn_q_name_ok(tmp)) return -1;
    memcpy(dst, tmp, v->len + 1);
    return 0;
}

/* ---- the job struct ---- */

void syn_job_init(struct syn_job *j)
{
    memset(j, 0, sizeof *j);
    j->sampling = syn_sampling_default_params();
    j->max_tokens = 16;
    j->priority = SYN_PRIO_NORMAL;
}

void syn_job_release(struct syn_job *j)
{
    if (!j) return;
    free(j->prompt);
    free(j->messages);
    free(j->tokens);
    for (int i = 0; i < SYN_Q_MAX_STOP; i++) free(j->stop[i]);
    memset(j, 0, sizeof *j);
}

/* 0 if s (len bytes) is a JSON array of objects. */
static int messages_ok(const char *s, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(s, len, 0, &je);
    int rc = SYN_OK;
    if (!root) {
        rc = syn_seterr(err, errlen, SYN_EINVAL, "job: messages must be JSON: %s at offset %d",
                        je.text, je.position);
        goto out;
    }
    if (!json_is_array(root)) {
        rc = syn_seterr(err, errlen, SYN_EINVAL, "job: messages must be a JSON array of objects");
        goto out;
    }
    for (size_t i = 0; i < json_array_size(root); i++) {
        if (!json_is_object(json_array_get(root, i))) {
            rc = syn_seterr(err, errlen, SYN_EINVAL,
                            "job: messages[%zu] must be an object {\"role\", \"content\"}", i);
            goto out;
        }
    }
out:
    json_decref(root);
    return rc;
}

int syn_job_validate(const struct syn_job *j, char *err, size_t errlen)
{
    if (!syn_q_name_ok(j->id))
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "job: id must be 1..100 characters of [A-Za-z0-9._-], found '%.100s'",
                          j->id);
    if (!syn_q_name_ok(j->model))
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "job %s: model must be 1..100 characters of [A-Za-z0-9._-], found "
                          "'%.100s'",
                          j->id, j->model);
    if (!syn_q_reply_key_ok(j->reply, strnlen(j->reply, sizeof j->reply)))
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "job %s: reply must be a reply stream key syn:reply:{gateway}, found "
                          "'%.127s'",
                          j->id, j->reply);
    int inputs = (j->prompt != NULL) + (j->messages != NULL) + (j->tokens != NULL);
    if (inputs != 1)
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "job %s: expected exactly one of prompt, messages, tokens, found %d",
                          j->id, inputs);
    if (j->tokens) {
        if (j->n_tokens < 1 || j->n_tokens > JOB_MAX_PROMPT_IDS)
            return syn_seterr(err, errlen, SYN_EINVAL,
                              "job %s: tokens must hold 1..%d ids, found %d", j->id,
                              JOB_MAX_PROMPT_IDS, j->n_tokens);
        for (int i = 0; i < j->n_tokens; i++)
            if (j->tokens[i] < 0)
                return syn_seterr(err, errlen, SYN_EINVAL,
                                  "job %s: tokens[%d] must be >= 0, found %d", j->id, i,
                                  (int)j->tokens[i]);
    }
    if (j->messages) {
        int rc = messages_ok(j->messages, strlen(j->messages), err, errlen);
        if (rc) return rc;
    }
    int rc = syn_sampling_validate(&j->sampling, err, errlen);
    if (rc) return rc;
    if (j->max_tokens < 1 || j->max_tokens > JOB_MAX_TOKENS_OUT)
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "job %s: max_tokens must be in [1, %d], found %d", j->id,
                          JOB_MAX_TOKENS_OUT, j->max_tokens);
    if (j->n_stop < 0 || j->n_stop > SYN_Q_MAX_STOP)
        return syn_seterr(err, errlen, SYN_EINVAL, "job %s: at most %d stop strings, found %d",
                          j->id, SYN_Q_MAX_STOP, j->n_stop);
    for (int i = 0; i < j->n_stop; i++)
        if (!j->stop[i] || !j->stop[i][0])
            return syn_seterr(err, errlen, SYN_EINVAL, "job %s: stop[%d] is empty", j->id, i);
    if (j->logprobs != 0 && j->logprobs != 1)
        return syn_seterr(err, errlen, SYN_EINVAL, "job %s: logprobs must be 0 or 1, found %d",
                          j->id, j->logprobs);
    if (j->top_logprobs < 0 || j->top_logprobs > SYN_Q_MAX_TOP_LOGPROBS)
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "job %s: top_logprobs must be in [0, %d], found %d", j->id,
                          SYN_Q_MAX_TOP_LOGPROBS, j->top_logprobs);
    if (j->deadline_ms < 0 || j->created_ms < 0)
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "job %s: deadline_ms and created_ms must be >= 0, found %" PRId64
                          " and %" PRId64,
                          j->id, j->deadline_ms, j->created_ms);
    if (j->priority != SYN_PRIO_NORMAL && j->priority != SYN_PRIO_HIGH)
        return syn_seterr(err, errlen, SYN_EINVAL, "job %s: priority must be 0 or 1, found %d",
                          j->id, j->priority);
    if (j->attempt < 0 || j->attempt > JOB_MAX_ATTEMPT)
        return syn_seterr(err, errlen, SYN_EINVAL, "job %s: attempt must be in [0, %d], found %d",
                          j->id, JOB_MAX_ATTEMPT, j->attempt);
    return SYN_OK;
}

/* ---- encoding ---- */

/* Formats the token ids and the stop array into one heap block (a->heap) and pushes them. */
static int push_heap_fields(const struct syn_job *j, struct syn_q_argv *a)
{
    char *stop_json = NULL;
    size_t stop_len = 0, tok_cap = j->tokens ? (size_t)j->n_tokens * 12 + 1 : 0;
    int rc = SYN_OK;
    if (j->n_stop > 0) {
        json_t *arr = json_array();
        for (int i = 0; arr && i < j->n_stop; i++) {
            json_t *s = json_string(j->stop[i]); /* NULL unless valid UTF-8 */
            if (!s || json_array_append_new(arr, s) != 0) {
                json_decref(arr);
                arr = NULL;
            }
        }
        stop_json = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
        json_decref(arr);
        if (!stop_json) {
            rc = SYN_EINVAL;
            goto out;
        }
        stop_len = strlen(stop_json);
    }
    if (tok_cap + stop_len == 0) goto out;
    a->heap = malloc(tok_cap + stop_len + 1);
    if (!a->heap) {
        rc = SYN_ENOMEM;
        goto out;
    }
    size_t o = 0;
    if (j->tokens) {
        for (int i = 0; i < j->n_tokens; i++)
            o += (size_t)snprintf(a->heap + o, tok_cap - o, i ? " %d" : "%d", (int)j->tokens[i]);
        if ((rc = qa_pushs(a, "tokens")) || (rc = qa_push(a, a->heap, o))) goto out;
    }
    if (stop_json) {
        memcpy(a->heap + o, stop_json, stop_len + 1);
        if ((rc = qa_pushs(a, "stop")) || (rc = qa_push(a, a->heap + o, stop_len))) goto out;
    }
out:
    free(stop_json);
    return rc;
}

int syn_job_xadd_argv(const struct syn_job *j, struct syn_q_argv *a)
{
    char key[160];
    qa_init(a);
    if (syn_job_validate(j, NULL, 0) != SYN_OK) return SYN_EINVAL;
    if (syn_q_key_jobs(key, sizeof key, j->model, j->priority) < 0) return SYN_EINVAL;
    const struct syn_sampling_params *s = &j->sampling;
    int rc;
    if ((rc = qa_pushs(a, "XADD")) || (rc = qa_pushf(a, "%s", key)) || (rc = qa_pushs(a, "*")) ||
        (rc = qa_pushs(a, "id")) || (rc = qa_pushs(a, j->id)) || (rc = qa_pushs(a, "model")) ||
        (rc = qa_pushs(a, j->model)) || (rc = qa_pushs(a, "reply")) || (rc = qa_pushs(a, j->reply)))
        goto fail;
    if (j->prompt && ((rc = qa_pushs(a, "prompt")) || (rc = qa_pushs(a, j->prompt)))) goto fail;
    if (j->messages && ((rc = qa_pushs(a, "messages")) || (rc = qa_pushs(a, j->messages))))
        goto fail;
    if ((rc = push_heap_fields(j, a))) goto fail;
    if ((rc = qa_pushs(a, "max_tokens")) || (rc = qa_pushf(a, "%d", j->max_tokens)) ||
        (rc = qa_pushs(a, "temperature")) || (rc = qa_pushf(a, "%.9g", (double)s->temperature)) ||
        (rc = qa_pushs(a, "top_p")) || (rc = qa_pushf(a, "%.9g", (double)s->top_p)) ||
        (rc = qa_pushs(a, "top_k")) || (rc = qa_pushf(a, "%d", s->top_k)) ||
        (rc = qa_pushs(a, "min_p")) || (rc = qa_pushf(a, "%.9g", (double)s->min_p)) ||
        (rc = qa_pushs(a, "repetition_penalty")) ||
        (rc = qa_pushf(a, "%.9g", (double)s->repetition_penalty)) ||
        (rc = qa_pushs(a, "frequency_penalty")) ||
        (rc = qa_pushf(a, "%.9g", (double)s->frequency_penalty)) ||
        (rc = qa_pushs(a, "presence_penalty")) ||
        (rc = qa_pushf(a, "%.9g", (double)s->presence_penalty)) || (rc = qa_pushs(a, "seed")) ||
        (rc = qa_pushf(a, "%" PRIu64, s->seed)) || (rc = qa_pushs(a, "logprobs")) ||
        (rc = qa_pushf(a, "%d", j->logprobs)) || (rc = qa_pushs(a, "top_logprobs")) ||
        (rc = qa_pushf(a, "%d", j->top_logprobs)) || (rc = qa_pushs(a, "deadline_ms")) ||
        (rc = qa_pushf(a, "%" PRId64, j->deadline_ms)) || (rc = qa_pushs(a, "priority")) ||
        (rc = qa_pushf(a, "%d", j->priority)) || (rc = qa_pushs(a, "created_ms")) ||
        (rc = qa_pushf(a, "%" PRId64, j->created_ms)))
        goto fail;
    if (j->attempt > 0 && ((rc = qa_pushs(a, "attempt")) || (rc = qa_pushf(a, "%d", j->attempt))))
        goto fail;
    return SYN_OK;
fail:
    syn_q_argv_reset(a);
    return rc;
}

/* ---- decoding ---- */

enum job_field {
    F_ID,
    F_MODEL,
    F_REPLY,
    F_PROMPT,
    F_MESSAGES,
    F_TOKENS,
    F_MAX_TOKENS,
    F_TEMPERATURE,
    F_TOP_P,
    F_TOP_K,
    F_MIN_P,
    F_REPETITION,
    F_FREQUENCY,
    F_PRESENCE,
    F_SEED,
    F_STOP,
    F_LOGPROBS,
    F_TOP_LOGPROBS,
    F_DEADLINE,
    F_PRIORITY,
    F_CREATED,
    F_ATTEMPT,
    F_COUNT
};

static const char *const job_field_names[F_COUNT] = {
    "id",
    "model",
    "reply",
    "prompt",
    "messages",
    "tokens",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "stop",
    "logprobs",
    "top_logprobs",
    "deadline_ms",
    "priority",
    "created_ms",
    "attempt",
};

/* Copies a string value into a fresh NUL-terminated buffer; rejects NUL bytes inside. */
static int dup_text(const redisReply *v, char **out, const char *field, char *err, size_t errlen)
{
    const char *nul = memchr(v->str, 0, v->len);
    if (nul)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "job: field '%s' must not contain NUL bytes, found one at offset %zu",
                          field, (size_t)(nul - v->str));
    char *s = malloc(v->len + 1);
    if (!s) return syn_seterr(err, errlen, SYN_ENOMEM, "job: out of memory for '%s'", field);
    memcpy(s, v->str, v->len);
    s[v->len] = 0;
    *out = s;
    return SYN_OK;
}

static int parse_tokens(const redisReply *v, struct syn_job *j, char *err, size_t errlen)
{
    char show[200];
    size_t n = 1;
    for (size_t i = 0; i < v->len; i++) n += v->str[i] == ' ';
    if (v->len == 0 || n > JOB_MAX_PROMPT_IDS)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "job: field 'tokens' must hold 1..%d ids separated by spaces, found %s",
                          JOB_MAX_PROMPT_IDS, v->len ? "too many" : "an empty string");
    j->tokens = malloc(n * sizeof *j->tokens);
    if (!j->tokens) return syn_seterr(err, errlen, SYN_ENOMEM, "job: out of memory for tokens");
    size_t k = 0, i = 0;
    for (;;) {
        int64_t acc = 0;
        size_t start = i;
        while (i < v->len && v->str[i] >= '0' && v->str[i] <= '9' && acc <= INT32_MAX)
            acc = acc * 10 + (v->str[i++] - '0');
        if (i == start || acc > INT32_MAX || (i < v->len && v->str[i] != ' '))
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "job: field 'tokens' must be ids in [0, %d] separated by single "
                              "spaces, found '%s' (bad id %zu at offset %zu)",
                              INT32_MAX, qf_show(v, show, sizeof show), k, start);
        j->tokens[k++] = (int32_t)acc;
        if (i == v->len) break;
        i++; /* past the space: an id must follow */
    }
    j->n_tokens = (int)k;
    return SYN_OK;
}

static int parse_stop(const redisReply *v, struct syn_job *j, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb(v->str, v->len, 0, &je);
    int rc = SYN_OK;
    if (!root || !json_is_array(root) || json_array_size(root) > SYN_Q_MAX_STOP) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "job: field 'stop' must be a JSON array of at most %d strings%s%s",
                        SYN_Q_MAX_STOP, root ? "" : ": ", root ? "" : je.text);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(root); i++) {
        json_t *s = json_array_get(root, i);
        if (!json_is_string(s) || json_string_length(s) == 0) {
            rc = syn_seterr(err, errlen, SYN_EFORMAT,
                            "job: field 'stop' element %zu must be a non-empty string", i);
            goto out;
        }
        j->stop[i] = strdup(json_string_value(s));
        if (!j->stop[i]) {
            rc = syn_seterr(err, errlen, SYN_ENOMEM, "job: out of memory for stop");
            goto out;
        }
        j->n_stop = (int)i + 1;
    }
out:
    json_decref(root);
    return rc;
}

/* Parses an integer field into *out (int or int64_t by size). */
static int field_int(const redisReply *v, const char *name, int64_t min, int64_t max, int64_t *out,
                     char *err, size_t errlen)
{
    char show[200];
    if (qf_i64(v, min, max, out) != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "job: field '%s' must be an integer in [%" PRId64 ", %" PRId64
                          "], found '%s'",
                          name, min, max, qf_show(v, show, sizeof show));
    return SYN_OK;
}

static int field_float(const redisReply *v, const char *name, float *out, char *err, size_t errlen)
{
    char show[200];
    if (qf_f32(v, out) != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "job: field '%s' must be a decimal number, found '%s'", name,
                          qf_show(v, show, sizeof show));
    return SYN_OK;
}

int syn_job_decode(const struct redisReply *fields, struct syn_job *j, char *err, size_t errlen)
{
    const redisReply *v[F_COUNT] = {0};
    char show[200];
    int64_t x;
    int rc = SYN_OK;
    syn_job_init(j);
    if (!fields || fields->type != REDIS_REPLY_ARRAY || fields->elements % 2 != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "job: expected an array of field/value pairs, found %s",
                          !fields                             ? "nothing"
                          : fields->type != REDIS_REPLY_ARRAY ? "a non-array"
                                                              : "an odd number of elements");
    for (size_t i = 0; i < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *val = fields->element[i + 1];
        if (!k || k->type != REDIS_REPLY_STRING || !val || val->type != REDIS_REPLY_STRING)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "job: element %zu and %zu must be strings (field, value)", i, i + 1);
        for (int f = 0; f < F_COUNT; f++) {
            if (!qf_is(k, job_field_names[f])) continue;
            if (v[f])
                return syn_seterr(err, errlen, SYN_EFORMAT, "job: field '%s' appears twice",
                                  job_field_names[f]);
            v[f] = val;
            break;
        }
    }
    /* required: names and the input */
    for (int f = F_ID; f <= F_REPLY; f++)
        if (!v[f])
            return syn_seterr(err, errlen, SYN_EFORMAT, "job: field '%s' is missing",
                              job_field_names[f]);
    if (qf_name(v[F_ID], j->id, sizeof j->id) != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "job: field 'id' must be 1..100 characters of [A-Za-z0-9._-], found "
                          "'%s'",
                          qf_show(v[F_ID], show, sizeof show));
    if (qf_name(v[F_MODEL], j->model, sizeof j->model) != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "job %s: field 'model' must be 1..100 characters of [A-Za-z0-9._-], "
                          "found '%s'",
                          j->id, qf_show(v[F_MODEL], show, sizeof show));
    if (!syn_q_reply_key_ok(v[F_REPLY]->str, v[F_REPLY]->len))
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "job %s: field 'reply' must be a key syn:reply:{gateway}, found '%s'",
                          j->id, qf_show(v[F_REPLY], show, sizeof show));
    memcpy(j->reply, v[F_REPLY]->str, v[F_REPLY]->len);
    j->reply[v[F_REPLY]->len] = 0;
    int inputs = !!v[F_PROMPT] + !!v[F_MESSAGES] + !!v[F_TOKENS];
    if (inputs != 1) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "job %s: expected exactly one of the fields prompt, messages, tokens, "
                        "found %d",
                        j->id, inputs);
        goto fail;
    }
    if (v[F_PROMPT] && (rc = dup_text(v[F_PROMPT], &j->prompt, "prompt", err, errlen))) goto fail;
    if (v[F_MESSAGES] && (rc = dup_text(v[F_MESSAGES], &j->messages, "messages", err, errlen)))
        goto fail;
    if (v[F_TOKENS] && (rc = parse_tokens(v[F_TOKENS], j, err, errlen))) goto fail;
    if (!v[F_MAX_TOKENS]) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT, "job %s: field 'max_tokens' is missing", j->id);
        goto fail;
    }
    if ((rc = field_int(v[F_MAX_TOKENS], "max_tokens", 1, JOB_MAX_TOKENS_OUT, &x, err, errlen)))
        goto fail;
    j->max_tokens = (int)x;

    /* optional: sampling (defaults when absent) */
    struct syn_sampling_params *s = &j->sampling;
    if (v[F_TEMPERATURE] &&
        (rc = field_float(v[F_TEMPERATURE], "temperature", &s->temperature, err, errlen)))
        goto fail;
    if (v[F_TOP_P] && (rc = field_float(v[F_TOP_P], "top_p", &s->top_p, err, errlen))) goto fail;
    if (v[F_MIN_P] && (rc = field_float(v[F_MIN_P], "min_p", &s->min_p, err, errlen))) goto fail;
    if (v[F_REPETITION] && (rc = field_float(v[F_REPETITION], "repetition_penalty",
                                             &s->repetition_penalty, err, errlen)))
        goto fail;
    if (v[F_FREQUENCY] &&
        (rc = field_float(v[F_FREQUENCY], "frequency_penalty", &s->frequency_penalty, err, errlen)))
        goto fail;
    if (v[F_PRESENCE] &&
        (rc = field_float(v[F_PRESENCE], "presence_penalty", &s->presence_penalty, err, errlen)))
        goto fail;
    if (v[F_TOP_K]) {
        if ((rc = field_int(v[F_TOP_K], "top_k", 0, INT_MAX, &x, err, errlen))) goto fail;
        s->top_k = (int)x;
    }
    if (v[F_SEED] && qf_u64(v[F_SEED], &s->seed) != 0) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "job %s: field 'seed' must be an integer in [0, 2^64), found '%s'", j->id,
                        qf_show(v[F_SEED], show, sizeof show));
        goto fail;
    }
    if (v[F_STOP] && (rc = parse_stop(v[F_STOP], j, err, errlen))) goto fail;
    if (v[F_LOGPROBS]) {
        if ((rc = field_int(v[F_LOGPROBS], "logprobs", 0, 1, &x, err, errlen))) goto fail;
        j->logprobs = (int)x;
    }
    if (v[F_TOP_LOGPROBS]) {
        if ((rc = field_int(v[F_TOP_LOGPROBS], "top_logprobs", 0, SYN_Q_MAX_TOP_LOGPROBS, &x, err,
                            errlen)))
            goto fail;
        j->top_logprobs = (int)x;
    }
    if (v[F_DEADLINE] &&
        (rc = field_int(v[F_DEADLINE], "deadline_ms", 0, INT64_MAX, &j->deadline_ms, err, errlen)))
        goto fail;
    if (v[F_CREATED] &&
        (rc = field_int(v[F_CREATED], "created_ms", 0, INT64_MAX, &j->created_ms, err, errlen)))
        goto fail;
    if (v[F_PRIORITY]) {
        if ((rc = field_int(v[F_PRIORITY], "priority", 0, 1, &x, err, errlen))) goto fail;
        j->priority = (int)x;
    }
    /* attempt: deliveries before a requeue; this entry's first delivery is one more */
    j->attempt = 1;
    if (v[F_ATTEMPT]) {
        if ((rc = field_int(v[F_ATTEMPT], "attempt", 1, JOB_MAX_ATTEMPT - 1, &x, err, errlen)))
            goto fail;
        j->attempt = (int)x + 1;
    }
    if ((rc = syn_job_validate(j, err, errlen)) != SYN_OK) {
        rc = SYN_EFORMAT;
        goto fail;
    }
    return SYN_OK;
fail:
    syn_job_release(j);
    return rc;
}
