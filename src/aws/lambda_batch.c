/*
 * The batch runner of `synapse lambda` (lambda.h): the jobs carried in one event, run together on
 * the engine with iteration-level batching (every step decodes one token for each running job and
 * spends what is left of the token budget on prompt chunks), without Redis. Job semantics follow
 * the worker's: the same tokenization (a completion keeps its first piece's leading space), the
 * same stop conditions (end-of-generation token, stop strings with hold-back, max_tokens, the
 * context) and the same sampler, so a job gives the same text here as through the queue.
 */
#include "aws/lambda.h"

#include "aws/sbuf.h"
#include "synapse/chat.h"
#include "synapse/engine.h"
#include "synapse/error.h"
#include "synapse/queue.h"
#include "synapse/sampler.h"
#include "synapse/tokenizer.h"
#include "worker/stop.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_JOBS 256
#define MAX_STOP 4

enum { B_WAITING = 0, B_RUNNING = 1, B_DONE = 2 };

struct bjob {
    char id[101];
    int32_t *toks; /* prompt then generated tokens; from malloc() */
    int n_prompt, n_gen, cap;
    int max_tokens;
    int n_cached; /* tokens in the engine's KV cache */
    int seq;      /* engine sequence, -1 when none */
    int state;    /* B_* */
    struct syn_sampler *smp;
    struct syn_detok dt;
    char *stop[MAX_STOP]; /* from strdup() */
    int n_stop;
    char *text; /* generated text; from malloc() */
    size_t text_len, text_cap, text_sent;
    const char *finish; /* "stop", "length", "deadline", "error"; static strings */
    char error[256];    /* why, when finish is "error" */
    int reported;       /* its finish line has been streamed */
    int order;          /* admission order, for preemption */
};

struct lb_batch {
    struct syn_engine *e;
    const struct syn_tokenizer *tok;
    int n_vocab, n_ctx;
    struct bjob *jobs; /* n of them; from calloc() */
    int n;
    int64_t stop_at_ms;
    int admitted;                /* admission counter */
    int steps;                   /* engine steps run (for fault injection) */
    int fail_step;               /* SYNAPSE_FAULT_LAMBDA_STEP: fail this step (tests only) */
    struct syn_step_item *items; /* scratch, max_seqs entries */
    struct bjob **item_job;
    int done_written;
};

/* ---- building jobs ---- */

static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 256;
    while (nc < need) nc *= 2;
    char *nb = realloc(*buf, nc);
    if (!nb) return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

static int add_text(struct bjob *j, const char *s, size_t n)
{
    if (reserve(&j->text, &j->text_cap, j->text_len + n + 1)) return -1;
    memcpy(j->text + j->text_len, s, n);
    j->text_len += n;
    j->text[j->text_len] = 0;
    return 0;
}

static int num(const json_t *o, const char *k, double lo, double hi, double *out, char *err,
               size_t errlen, int idx)
{
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v))
        return syn_seterr(err, errlen, SYN_EINVAL, "jobs[%d].%s must be a number", idx, k);
    double d = json_number_value(v);
    if (d < lo || d > hi)
        return syn_seterr(err, errlen, SYN_EINVAL, "jobs[%d].%s must be from %g to %g, got %g", idx,
                          k, lo, hi, d);
    *out = d;
    return 0;
}

/* The prompt text of a job (the chat template applied to messages), from malloc(). */
static int job_text(struct lb_batch *b, int chat_id, const char *chat_err, const json_t *jo,
                    int idx, char **out, int *is_chat, char *err, size_t errlen)
{
    json_t *prompt = json_object_get(jo, "prompt"), *msgs = json_object_get(jo, "messages");
    if ((prompt != NULL) == (msgs != NULL))
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "jobs[%d] needs exactly one of \"prompt\" (a string) and \"messages\" "
                          "(an array)",
                          idx);
    *is_chat = msgs != NULL;
    if (prompt) {
        if (!json_is_string(prompt))
            return syn_seterr(err, errlen, SYN_EINVAL, "jobs[%d].prompt must be a string", idx);
        *out = strdup(json_string_value(prompt));
        return *out ? 0 : syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
    }
    if (!json_is_array(msgs) || json_array_size(msgs) == 0 || json_array_size(msgs) > 1000)
        return syn_seterr(err, errlen, SYN_EINVAL, "jobs[%d].messages must be a non-empty array",
                          idx);
    if (chat_id < 0)
        return syn_seterr(err, errlen, SYN_EINVAL, "jobs[%d]: %s", idx,
                          chat_err ? chat_err : "chat: no chat template");
    size_t n = json_array_size(msgs);
    struct syn_chat_msg *m = calloc(n, sizeof *m);
    if (!m) return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
    int rc = SYN_OK;
    for (size_t i = 0; i < n && rc == SYN_OK; i++) {
        json_t *mi = json_array_get(msgs, i);
        m[i].role = json_string_value(json_object_get(mi, "role"));
        m[i].content = json_string_value(json_object_get(mi, "content"));
        if (!m[i].role)
            rc = syn_seterr(err, errlen, SYN_EINVAL, "jobs[%d].messages[%zu] has no role", idx, i);
    }
    if (rc == SYN_OK) {
        int32_t bos = syn_tokenizer_bos(b->tok), eos = syn_tokenizer_eos(b->tok);
        const char *bs = bos >= 0 ? syn_tokenizer_piece(b->tok, bos) : "";
        const char *es = eos >= 0 ? syn_tokenizer_piece(b->tok, eos) : "";
        char cerr[256];
        int need = syn_chat_apply(chat_id, m, (int)n, 1, bs, es, NULL, 0, cerr, sizeof cerr);
        if (need < 0) {
            rc = syn_seterr(err, errlen, SYN_EINVAL, "jobs[%d]: %s", idx, cerr);
        } else if (!(*out = malloc((size_t)need + 1))) {
            rc = syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
        } else {
            syn_chat_apply(chat_id, m, (int)n, 1, bs, es, *out, (size_t)need + 1, cerr,
                           sizeof cerr);
        }
    }
    free(m);
    return rc;
}

/* Reads and prepares job idx. A problem with the event's shape is an error for the whole event;
 * a prompt that does not fit the context is that job's error only. */
static int job_init(struct lb_batch *b, int chat_id, const char *chat_err, const json_t *jo,
                    int idx, struct bjob *j, char *err, size_t errlen)
{
    j->seq = -1;
    if (!json_is_object(jo))
        return syn_seterr(err, errlen, SYN_EINVAL, "jobs[%d] must be an object", idx);
    json_t *id = json_object_get(jo, "id");
    if (id && (!json_is_string(id) || !json_string_length(id) || json_string_length(id) > 100))
        return syn_seterr(err, errlen, SYN_EINVAL, "jobs[%d].id must be a string of 1-100 bytes",
                          idx);
    if (id)
        snprintf(j->id, sizeof j->id, "%s", json_string_value(id));
    else
        snprintf(j->id, sizeof j->id, "job-%d", idx);
    double d = 16;
    int rc;
    if ((rc = num(jo, "max_tokens", 1, 1 << 20, &d, err, errlen, idx))) return rc;
    j->max_tokens = (int)d;
    struct syn_sampling_params sp = syn_sampling_default_params();
    d = sp.temperature;
    if ((rc = num(jo, "temperature", 0, 100, &d, err, errlen, idx))) return rc;
    sp.temperature = (float)d;
    d = sp.top_p;
    if ((rc = num(jo, "top_p", 0, 1, &d, err, errlen, idx))) return rc;
    sp.top_p = (float)d;
    d = sp.min_p;
    if ((rc = num(jo, "min_p", 0, 1, &d, err, errlen, idx))) return rc;
    sp.min_p = (float)d;
    d = sp.top_k;
    if ((rc = num(jo, "top_k", 0, 1 << 24, &d, err, errlen, idx))) return rc;
    sp.top_k = (int)d;
    d = sp.frequency_penalty;
    if ((rc = num(jo, "frequency_penalty", -2, 2, &d, err, errlen, idx))) return rc;
    sp.frequency_penalty = (float)d;
    d = sp.presence_penalty;
    if ((rc = num(jo, "presence_penalty", -2, 2, &d, err, errlen, idx))) return rc;
    sp.presence_penalty = (float)d;
    d = 0;
    if ((rc = num(jo, "seed", 0, 9007199254740992.0, &d, err, errlen, idx))) return rc;
    sp.seed = (uint64_t)d;
    char serr[200];
    if (syn_sampling_validate(&sp, serr, sizeof serr))
        return syn_seterr(err, errlen, SYN_EINVAL, "jobs[%d]: %s", idx, serr);
    json_t *stop = json_object_get(jo, "stop");
    if (json_is_string(stop)) {
        if (json_string_length(stop) && !(j->stop[j->n_stop++] = strdup(json_string_value(stop))))
            return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
    } else if (json_is_array(stop) && json_array_size(stop) <= MAX_STOP) {
        for (size_t i = 0; i < json_array_size(stop); i++) {
            json_t *s = json_array_get(stop, i);
            if (!json_is_string(s))
                return syn_seterr(err, errlen, SYN_EINVAL, "jobs[%d].stop must hold strings", idx);
            if (json_string_length(s) && !(j->stop[j->n_stop++] = strdup(json_string_value(s))))
                return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
        }
    } else if (stop && !json_is_null(stop)) {
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "jobs[%d].stop must be a string or an array of at most %d", idx,
                          MAX_STOP);
    }
    char *text = NULL;
    int is_chat = 0;
    if ((rc = job_text(b, chat_id, chat_err, jo, idx, &text, &is_chat, err, errlen))) return rc;
    int add_bos = syn_tokenizer_add_bos(b->tok), special = 0;
    if (is_chat) {
        special = 1;
        add_bos = !syn_chat_has_bos(chat_id);
    }
    int n = syn_tokenizer_encode(b->tok, text, strlen(text), add_bos, special, NULL, 0);
    if (n == 0 && syn_tokenizer_bos(b->tok) >= 0) add_bos = 1, n = 1;
    if (n <= 0 || n >= b->n_ctx) {
        j->state = B_DONE;
        j->finish = "error";
        if (n <= 0)
            snprintf(j->error, sizeof j->error, "the prompt is empty");
        else
            snprintf(j->error, sizeof j->error,
                     "the prompt has %d tokens; this model's context holds %d", n, b->n_ctx);
        free(text);
        return SYN_OK;
    }
    int max_new = j->max_tokens < b->n_ctx - n ? j->max_tokens : b->n_ctx - n;
    j->cap = n + max_new + 1;
    j->toks = malloc(sizeof *j->toks * (size_t)j->cap);
    j->smp = syn_sampler_new(&sp, b->n_vocab);
    if (!j->toks || !j->smp) {
        free(text);
        return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
    }
    syn_tokenizer_encode(b->tok, text, strlen(text), add_bos, special, j->toks, n);
    free(text);
    j->n_prompt = n;
    for (int i = 0; i < n; i++) syn_sampler_accept(j->smp, j->toks[i], 1);
    syn_detok_init(&j->dt);
    if (!is_chat && n > add_bos) j->dt.n_tokens = 1; /* a completion keeps its leading space */
    if (reserve(&j->text, &j->text_cap, 64)) return syn_seterr(err, errlen, SYN_ENOMEM, "oom");
    j->text[0] = 0;
    return SYN_OK;
}

static void job_release(struct lb_batch *b, struct bjob *j)
{
    if (j->seq >= 0) syn_engine_seq_free(b->e, j->seq);
    j->seq = -1;
    free(j->toks);
    syn_sampler_free(j->smp);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j->text);
    memset(j, 0, sizeof *j);
    j->seq = -1;
}

void lb_batch_free(struct lb_batch *b)
{
    if (!b) return;
    for (int i = 0; i < b->n; i++) job_release(b, &b->jobs[i]);
    free(b->jobs);
    free(b->items);
    free(b->item_job);
    free(b);
}

int lb_batch_new(struct syn_engine *e, int chat_id, const char *chat_err, const json_t *jobs,
                 int64_t stop_at_ms, struct lb_batch **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!json_is_array(jobs) || json_array_size(jobs) == 0 || json_array_size(jobs) > MAX_JOBS)
        return syn_seterr(err, errlen, SYN_EINVAL, "\"jobs\" must be an array of 1 to %d jobs",
                          MAX_JOBS);
    struct lb_batch *b = calloc(1, sizeof *b);
    if (!b) return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
    b->e = e;
    b->tok = syn_engine_tokenizer(e);
    b->n_vocab = syn_engine_hparams(e)->n_vocab;
    b->n_ctx = syn_engine_n_ctx(e);
    b->stop_at_ms = stop_at_ms;
    b->n = (int)json_array_size(jobs);
    const char *fault = getenv("SYNAPSE_FAULT_LAMBDA_STEP");
    b->fail_step = fault && *fault ? atoi(fault) : 0;
    b->jobs = calloc((size_t)b->n, sizeof *b->jobs);
    int ms = syn_engine_max_seqs(e);
    b->items = calloc((size_t)ms, sizeof *b->items);
    b->item_job = calloc((size_t)ms, sizeof *b->item_job);
    if (!b->jobs || !b->items || !b->item_job) {
        lb_batch_free(b);
        return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
    }
    for (int i = 0; i < b->n; i++) b->jobs[i].seq = -1;
    for (int i = 0; i < b->n; i++) {
        int rc = job_init(b, chat_id, chat_err, json_array_get(jobs, (size_t)i), i, &b->jobs[i],
                          err, errlen);
        if (rc) {
            lb_batch_free(b);
            return rc;
        }
    }
    *out = b;
    return SYN_OK;
}

/* ---- running ---- */

static void finish(struct lb_batch *b, struct bjob *j, const char *why)
{
    char piece[512];
    int m = syn_detok_flush(b->tok, &j->dt, piece, sizeof piece);
    if (m > 0 && strcmp(why, "stop") != 0) add_text(j, piece, (size_t)m);
    j->finish = why;
    j->state = B_DONE;
    if (j->seq >= 0) syn_engine_seq_free(b->e, j->seq);
    j->seq = -1;
}

/* A sampled token for j (the worker's on_token, without Redis). */
static void on_token(struct lb_batch *b, struct bjob *j, int32_t id)
{
    if (syn_tokenizer_is_eog(b->tok, id)) {
        finish(b, j, "stop");
        return;
    }
    syn_sampler_accept(j->smp, id, 0);
    j->toks[j->n_prompt + j->n_gen++] = id;
    char piece[512];
    int n = syn_detok_push(b->tok, &j->dt, id, piece, sizeof piece);
    if (n > 0 && add_text(j, piece, (size_t)n)) {
        finish(b, j, "error");
        snprintf(j->error, sizeof j->error, "out of memory");
        return;
    }
    int hit = 0;
    size_t safe = syn_stop_scan(j->text, j->text_len, j->stop, j->n_stop, &hit);
    if (hit) {
        j->text_len = safe;
        j->text[safe] = 0;
        finish(b, j, "stop");
        return;
    }
    if (j->n_gen >= j->max_tokens || j->n_prompt + j->n_gen >= b->n_ctx) finish(b, j, "length");
}

/* How much of j's text may be sent now: all of it once done, else up to a possible stop. */
static size_t sendable(const struct bjob *j)
{
    if (j->state == B_DONE) return j->text_len;
    int hit = 0;
    return syn_stop_scan(j->text, j->text_len, j->stop, j->n_stop, &hit);
}

static void json_usage(struct aws_sb *o, const struct bjob *j)
{
    aws_sb_addf(o, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}",
                j->n_prompt, j->n_gen, j->n_prompt + j->n_gen);
}

static void stream_news(struct lb_batch *b, struct aws_sb *o)
{
    for (int i = 0; i < b->n; i++) {
        struct bjob *j = &b->jobs[i];
        size_t safe = sendable(j);
        if (safe > j->text_sent) {
            aws_sb_adds(o, "{\"id\":\"");
            aws_sb_add_json(o, j->id, strlen(j->id));
            aws_sb_adds(o, "\",\"delta\":\"");
            aws_sb_add_json(o, j->text + j->text_sent, safe - j->text_sent);
            aws_sb_adds(o, "\"}\n");
            j->text_sent = safe;
        }
        if (j->state == B_DONE && !j->reported) {
            j->reported = 1;
            aws_sb_adds(o, "{\"id\":\"");
            aws_sb_add_json(o, j->id, strlen(j->id));
            if (!strcmp(j->finish, "error")) {
                aws_sb_adds(o, "\",\"error\":\"");
                aws_sb_add_json(o, j->error, strlen(j->error));
                aws_sb_adds(o, "\"}\n");
            } else {
                aws_sb_addf(o, "\",\"finish_reason\":\"%s\",", j->finish);
                json_usage(o, j);
                aws_sb_adds(o, "}\n");
            }
        }
    }
}

/* Drops the most recently admitted running job's cache (not keep); it is recomputed later. */
static int preempt(struct lb_batch *b)
{
    struct bjob *v = NULL;
    for (int i = 0; i < b->n; i++) {
        struct bjob *j = &b->jobs[i];
        if (j->state == B_RUNNING && j->seq >= 0 && (!v || j->order > v->order)) v = j;
    }
    int running = 0;
    for (int i = 0; i < b->n; i++) running += b->jobs[i].state == B_RUNNING;
    if (!v || running < 2) return 0;
    syn_engine_seq_free(b->e, v->seq);
    v->seq = -1;
    v->n_cached = 0;
    v->state = B_WAITING;
    return 1;
}

/* One engine step over every running job. Returns 1 if something ran, 0 if nothing could, or a
 * negative syn_err. */
static int step(struct lb_batch *b, char *err, size_t errlen)
{
    /* admit waiting jobs into free sequences */
    for (int i = 0; i < b->n; i++) {
        struct bjob *j = &b->jobs[i];
        if (j->state != B_WAITING) continue;
        int s = syn_engine_seq_new(b->e);
        if (s < 0) break;
        j->seq = s;
        j->n_cached = 0;
        j->state = B_RUNNING;
        j->order = ++b->admitted;
    }
    for (;;) {
        int budget = syn_engine_max_batch_tokens(b->e), rows = syn_engine_max_logit_rows(b->e);
        int n = 0;
        /* decode tokens first (one each), then prompt chunks with the rest of the budget */
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < b->n && budget > 0 && rows > 0; i++) {
                struct bjob *j = &b->jobs[i];
                if (j->state != B_RUNNING) continue;
                int have = j->n_prompt + j->n_gen, left = have - j->n_cached;
                int is_decode = j->n_cached >= j->n_prompt && left == 1;
                if (left <= 0 || (pass == 0) != is_decode) continue;
                int take = left < budget ? left : budget;
                int last = take == left;
                b->items[n] = (struct syn_step_item){j->seq, j->toks + j->n_cached, take,
                                                     last ? SYN_LOGITS_LAST : SYN_LOGITS_NONE};
                b->item_job[n++] = j;
                budget -= take;
                rows -= last;
            }
        if (n == 0) return 0;
        b->steps++;
        int rc = b->fail_step > 0 && b->steps >= b->fail_step ? SYN_EIO
                                                              : syn_engine_step(b->e, b->items, n);
        if (rc == SYN_ENOSPC) {
            if (preempt(b)) continue;
            /* a lone job that the KV pool cannot hold any longer: it ends here */
            for (int k = 0; k < n; k++) finish(b, b->item_job[k], "length");
            return 1;
        }
        if (rc < 0)
            return syn_seterr(err, errlen, rc, "the engine failed at step %d: %s", b->steps,
                              syn_strerror(rc));
        int row = 0;
        for (int k = 0; k < n; k++) {
            struct bjob *j = b->item_job[k];
            j->n_cached += b->items[k].n_tokens;
            if (b->items[k].logits != SYN_LOGITS_LAST) continue;
            int32_t id = syn_sampler_sample(j->smp, syn_engine_logits(b->e, row++), NULL, NULL, 0);
            on_token(b, j, id);
        }
        return 1;
    }
}

int lb_batch_pump(struct lb_batch *b, int stream, struct aws_sb *out, char *err, size_t errlen)
{
    for (;;) {
        int left = 0;
        for (int i = 0; i < b->n; i++) left += b->jobs[i].state != B_DONE;
        if (left && b->stop_at_ms && syn_unix_ms() >= b->stop_at_ms) {
            for (int i = 0; i < b->n; i++)
                if (b->jobs[i].state != B_DONE) finish(b, &b->jobs[i], "deadline");
            left = 0;
        }
        if (!left) {
            if (stream) {
                stream_news(b, out);
                if (!b->done_written) aws_sb_addf(out, "{\"done\":true,\"jobs\":%d}\n", b->n);
            }
            b->done_written = 1;
            return 0;
        }
        int rc = step(b, err, errlen);
        if (rc < 0) return rc;
        if (rc == 0) { /* nothing runnable: cannot happen with free sequences; do not spin */
            for (int i = 0; i < b->n; i++)
                if (b->jobs[i].state != B_DONE) {
                    finish(b, &b->jobs[i], "error");
                    snprintf(b->jobs[i].error, sizeof b->jobs[i].error,
                             "no engine sequence was free for it");
                }
            continue;
        }
        if (!stream) continue;
        size_t before = out->len;
        stream_news(b, out);
        if (out->len > before) return 1;
    }
}

char *lb_batch_result(const struct lb_batch *b)
{
    struct aws_sb o = {0};
    aws_sb_adds(&o, "{\"results\":[");
    for (int i = 0; i < b->n; i++) {
        const struct bjob *j = &b->jobs[i];
        if (i) aws_sb_addc(&o, ',');
        aws_sb_adds(&o, "{\"id\":\"");
        aws_sb_add_json(&o, j->id, strlen(j->id));
        if (j->finish && !strcmp(j->finish, "error")) {
            aws_sb_adds(&o, "\",\"error\":\"");
            aws_sb_add_json(&o, j->error, strlen(j->error));
            aws_sb_adds(&o, "\"}");
            continue;
        }
        aws_sb_adds(&o, "\",\"text\":\"");
        aws_sb_add_json(&o, j->text ? j->text : "", j->text_len);
        aws_sb_addf(&o, "\",\"finish_reason\":\"%s\",", j->finish ? j->finish : "length");
        json_usage(&o, j);
        aws_sb_addc(&o, '}');
    }
    aws_sb_adds(&o, "]}");
    return aws_sb_take(&o);
}
