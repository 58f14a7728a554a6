/*
 * Token events on the wire (worker -> gateway reply stream). One stream entry per event, one
 * field per attribute; the text is binary-safe (argv lengths, never %s) so that a held-back
 * UTF-8 sequence, a NUL or a newline in a token reaches the gateway byte for byte. Decoding
 * points into the reply rather than copying: the gateway forwards the text and drops the reply.
 */
#include "queue_impl.h"

#include "synapse/error.h"

#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <string.h>

static const char *const finish_names[] = {"stop", "length", "cancelled", "error"};
#define N_FINISH ((int)(sizeof finish_names / sizeof finish_names[0]))

/* The canonical static string for a finish reason of n bytes, or NULL if unknown. */
static const char *finish_lookup(const char *s, size_t n)
{
    for (int i = 0; i < N_FINISH; i++)
        if (strlen(finish_names[i]) == n && memcmp(finish_names[i], s, n) == 0)
            return finish_names[i];
    return NULL;
}

/* 0 if s (n bytes) is a JSON array. */
static int json_array_ok(const char *s, size_t n)
{
    json_t *root = json_loadb(s, n, 0, NULL);
    int ok = root && json_is_array(root);
    json_decref(root);
    return ok ? 0 : -1;
}

int syn_event_xadd_argv(const char *reply_key, const struct syn_event *ev, struct syn_q_argv *a)
{
    int rc;
    qa_init(a);
    if (!reply_key || !syn_q_reply_key_ok(reply_key, strlen(reply_key)) || !ev ||
        !syn_q_name_ok(ev->job) || ev->pos < 0 || ev->n_tokens < 0 || ev->attempt < 0 ||
        ev->prompt_tokens < 0 || ev->completion_tokens < 0 || (!ev->text && ev->text_len) ||
        (ev->finish && !finish_lookup(ev->finish, strlen(ev->finish))) ||
        (ev->error_code && !syn_q_name_ok(ev->error_code)) ||
        (ev->logprobs && json_array_ok(ev->logprobs, strlen(ev->logprobs)) != 0))
        return SYN_EINVAL;
    if ((rc = qa_pushs(a, "XADD")) || (rc = qa_pushs(a, reply_key)) ||
        (rc = qa_pushs(a, "MAXLEN")) || (rc = qa_pushs(a, "~")) ||
        (rc = qa_pushs(a, SYN_Q_REPLY_MAXLEN)) || (rc = qa_pushs(a, "*")) ||
        (rc = qa_pushs(a, "job")) || (rc = qa_pushs(a, ev->job)) || (rc = qa_pushs(a, "pos")) ||
        (rc = qa_pushf(a, "%d", ev->pos)) || (rc = qa_pushs(a, "n")) ||
        (rc = qa_pushf(a, "%d", ev->n_tokens)) || (rc = qa_pushs(a, "text")) ||
        (rc = qa_push(a, ev->text ? ev->text : "", ev->text_len)))
        goto fail;
    if (ev->logprobs && ((rc = qa_pushs(a, "logprobs")) || (rc = qa_pushs(a, ev->logprobs))))
        goto fail;
    if (ev->finish && ((rc = qa_pushs(a, "finish")) || (rc = qa_pushs(a, ev->finish)))) goto fail;
    /* the usage counts belong on the finishing event, but whatever is set is written */
    if ((ev->finish || ev->prompt_tokens || ev->completion_tokens) &&
        ((rc = qa_pushs(a, "prompt_tokens")) || (rc = qa_pushf(a, "%d", ev->prompt_tokens)) ||
         (rc = qa_pushs(a, "completion_tokens")) ||
         (rc = qa_pushf(a, "%d", ev->completion_tokens))))
        goto fail;
    if (ev->error && ((rc = qa_pushs(a, "error")) || (rc = qa_pushs(a, ev->error)))) goto fail;
    if (ev->error_code && ((rc = qa_pushs(a, "code")) || (rc = qa_pushs(a, ev->error_code))))
        goto fail;
    if ((rc = qa_pushs(a, "attempt")) || (rc = qa_pushf(a, "%d", ev->attempt))) goto fail;
    return SYN_OK;
fail:
    syn_q_argv_reset(a);
    return rc;
}

enum ev_field {
    E_JOB,
    E_POS,
    E_N,
    E_TEXT,
    E_LOGPROBS,
    E_FINISH,
    E_PROMPT_TOKENS,
    E_COMPLETION_TOKENS,
    E_ERROR,
    E_CODE,
    E_ATTEMPT,
    E_COUNT
};

static const char *const ev_field_names[E_COUNT] = {
    "job",   "pos",  "n",       "text", "logprobs", "finish", "prompt_tokens", "completion_tokens",
    "error", "code", "attempt",
};

/* Parses an int field in [0, INT_MAX] into *out. */
static int ev_int(const redisReply *v, const char *name, int *out, char *err, size_t errlen)
{
    char show[200];
    int64_t x;
    if (qf_i64(v, 0, INT_MAX, &x) != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "event: field '%s' must be an integer in [0, %d], found '%s'", name,
                          INT_MAX, qf_show(v, show, sizeof show));
    *out = (int)x;
    return SYN_OK;
}

/* A string field that the struct hands out as a C string: no NUL bytes inside. */
static int ev_cstr(const redisReply *v, const char *name, const char **out, char *err,
                   size_t errlen)
{
    if (memchr(v->str, 0, v->len))
        return syn_seterr(err, errlen, SYN_EFORMAT, "event: field '%s' must not contain NUL bytes",
                          name);
    *out = v->str;
    return SYN_OK;
}

int syn_event_decode(const struct redisReply *fields, struct syn_event *ev, char *err,
                     size_t errlen)
{
    const redisReply *v[E_COUNT] = {0};
    char show[200];
    int rc;
    memset(ev, 0, sizeof *ev);
    ev->text = "";
    if (!fields || fields->type != REDIS_REPLY_ARRAY || fields->elements % 2 != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "event: expected an array of field/value pairs, found %s",
                          !fields                             ? "nothing"
                          : fields->type != REDIS_REPLY_ARRAY ? "a non-array"
                                                              : "an odd number of elements");
    for (size_t i = 0; i < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *val = fields->element[i + 1];
        if (!k || k->type != REDIS_REPLY_STRING || !val || val->type != REDIS_REPLY_STRING)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "event: element %zu and %zu must be strings (field, value)", i,
                              i + 1);
        for (int f = 0; f < E_COUNT; f++) {
            if (!qf_is(k, ev_field_names[f])) continue;
            if (v[f])
                return syn_seterr(err, errlen, SYN_EFORMAT, "event: field '%s' appears twice",
                                  ev_field_names[f]);
            v[f] = val;
            break;
        }
    }
    if (!v[E_JOB]) return syn_seterr(err, errlen, SYN_EFORMAT, "event: field 'job' is missing");
    if (qf_name(v[E_JOB], ev->job, sizeof ev->job) != 0)
        return syn_seterr(err, errlen, SYN_EFORMAT,
                          "event: field 'job' must be 1..100 characters of [A-Za-z0-9._-], "
                          "found '%s'",
                          qf_show(v[E_JOB], show, sizeof show));
    if (!v[E_POS])
        return syn_seterr(err, errlen, SYN_EFORMAT, "event for %s: field 'pos' is missing",
                          ev->job);
    if ((rc = ev_int(v[E_POS], "pos", &ev->pos, err, errlen))) return rc;
    if (v[E_N] && (rc = ev_int(v[E_N], "n", &ev->n_tokens, err, errlen))) return rc;
    if (v[E_TEXT]) {
        ev->text = v[E_TEXT]->str;
        ev->text_len = v[E_TEXT]->len;
    }
    if (v[E_LOGPROBS]) {
        if ((rc = ev_cstr(v[E_LOGPROBS], "logprobs", &ev->logprobs, err, errlen))) return rc;
        if (json_array_ok(v[E_LOGPROBS]->str, v[E_LOGPROBS]->len) != 0)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "event for %s: field 'logprobs' must be a JSON array, found '%s'",
                              ev->job, qf_show(v[E_LOGPROBS], show, sizeof show));
    }
    if (v[E_FINISH]) {
        ev->finish = finish_lookup(v[E_FINISH]->str, v[E_FINISH]->len);
        if (!ev->finish)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "event for %s: field 'finish' must be stop, length, cancelled or "
                              "error, found '%s'",
                              ev->job, qf_show(v[E_FINISH], show, sizeof show));
    }
    if (v[E_PROMPT_TOKENS] &&
        (rc = ev_int(v[E_PROMPT_TOKENS], "prompt_tokens", &ev->prompt_tokens, err, errlen)))
        return rc;
    if (v[E_COMPLETION_TOKENS] && (rc = ev_int(v[E_COMPLETION_TOKENS], "completion_tokens",
                                               &ev->completion_tokens, err, errlen)))
        return rc;
    if (v[E_ERROR] && (rc = ev_cstr(v[E_ERROR], "error", &ev->error, err, errlen))) return rc;
    if (v[E_CODE]) {
        char code[101];
        if (qf_name(v[E_CODE], code, sizeof code) != 0)
            return syn_seterr(err, errlen, SYN_EFORMAT,
                              "event for %s: field 'code' must be 1..100 characters of "
                              "[A-Za-z0-9._-], found '%s'",
                              ev->job, qf_show(v[E_CODE], show, sizeof show));
        ev->error_code = v[E_CODE]->str;
    }
    if (v[E_ATTEMPT] && (rc = ev_int(v[E_ATTEMPT], "attempt", &ev->attempt, err, errlen)))
        return rc;
    return SYN_OK;
}
