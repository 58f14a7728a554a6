/*
 * The worker's scheduler (see include/synapse/worker.h): continuous batching over one engine.
 *
 * Every iteration: take newly claimed jobs and cancellations from the I/O thread; admit waiting
 * jobs while there are free sequence slots, step budget and KV blocks; build ONE engine step with
 * a decode token for every running sequence plus prefill chunks (at most max_batched_tokens in
 * all); sample; turn new tokens into text (holding back incomplete UTF-8 and possible stop
 * strings); queue one event per sequence with news; acknowledge finished jobs. When KV blocks run
 * out, the most recently admitted sequence is preempted: its cache is dropped and it is recomputed
 * later from its prompt plus what it generated (the engine is batch-invariant, so the result is
 * the same tokens).
 *
 * A job's token positions start at 0 on every attempt; a re-run after a crash regenerates the
 * same tokens (fixed seed, batch invariance) and the gateway drops positions it already has.
 */
#include "synapse/worker.h"

#include "stop.h"
#include "wio.h"
#include "worker/metrics.h"

#include "synapse/chat.h"
#include "synapse/engine.h"
#include "synapse/error.h"
#include "synapse/log.h"
#include "synapse/sampler.h"
#include "synapse/tokenizer.h"

#include <jansson.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG "worker"

static volatile sig_atomic_t g_drain;

void syn_worker_request_drain(void)
{
    g_drain = 1;
}

struct syn_worker_params syn_worker_default_params(void)
{
    struct syn_worker_params p = {
        .max_seqs = 16,
        .max_batched_tokens = 256,
        .max_queue_delay_ms = 0,
        .idle_timeout_s = 60,
        .heartbeat_ms = 1000,
        .reclaim_ms = 5000,
        .max_attempts = 3,
        .drain_timeout_s = 30,
        .metrics_port = -1,
        .push_interval_s = 10,
    };
    return p;
}

/* ---- a job inside the worker ---- */

enum { J_WAITING = 0, J_RUNNING = 1 };

struct wjob {
    struct syn_job job; /* as claimed */
    int state;          /* J_WAITING (no KV) or J_RUNNING (has an engine sequence) */
    int seq;            /* engine sequence, -1 while waiting */
    int32_t *toks;      /* (cap) prompt tokens, then generated ones */
    int n_prompt, n_gen, cap;
    int n_cached;            /* tokens of toks in the KV cache */
    struct syn_sampler *smp; /* allocates only what the job's parameters use */
    struct syn_detok dt;
    char *text; /* (text_cap) generated text, complete UTF-8 only */
    size_t text_len, text_cap;
    size_t text_sent; /* bytes of text already sent */
    int tok_sent;     /* output positions already covered by events */
    char *lp;         /* (lp_cap) logprob objects of unsent tokens, comma-separated */
    size_t lp_len, lp_cap;
    int cancel;     /* 1 client gone, 2 engine failure, 3 KV pool exhausted */
    uint64_t order; /* admission order (preemption takes the newest) */
    int admitted;   /* had an engine sequence once (queue wait is counted once) */
};

struct sched {
    const struct syn_worker_params *p;
    struct syn_engine *e;
    const struct syn_tokenizer *tok;
    int chat_id; /* resolved chat template, or < 0 (chat jobs then fail) */
    char chat_err[512];
    int n_vocab;
    struct wio io;
    struct wjob **jobs; /* (max_seqs * 2) held jobs: running first is not required */
    int n_jobs;
    struct syn_step_item *items; /* (max_seqs) */
    struct wjob **item_job;      /* (max_seqs) the job of each item */
    uint64_t next_order;
    struct out_msg *out_head; /* messages of this iteration, handed to the I/O thread */
    struct out_msg *out_tail; /* together in publish(): one lock and one wake-up a step */
    int first_out;            /* a job's first event is among them: publish() yields */
    uint64_t jobs_done, tokens_out;
    struct wmetrics *wm; /* metrics (never NULL once running) */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void wjob_free(struct wjob *j)
{
    if (!j) return;
    syn_job_release(&j->job);
    syn_sampler_free(j->smp);
    free(j->toks);
    free(j->text);
    free(j->lp);
    free(j);
}

/* Grows a byte buffer to hold need bytes. */
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

static int append(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (reserve(buf, cap, *len + n + 1)) return -1;
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

/* ---- outgoing messages ---- */

/* Keeps m for the next publish() (one hand-over per step instead of one per event). */
static void queue_out(struct sched *s, struct out_msg *m)
{
    m->next = NULL;
    if (s->out_tail)
        s->out_tail->next = m;
    else
        s->out_head = m;
    s->out_tail = m;
}

/* Appends the kept messages to the I/O thread's outbox; the caller holds s->io.mu. */
static void splice_out_locked(struct sched *s)
{
    if (!s->out_head) return;
    if (s->io.out_tail)
        s->io.out_tail->next = s->out_head;
    else
        s->io.out_head = s->out_head;
    s->io.out_tail = s->out_tail;
    s->out_head = s->out_tail = NULL;
}

static void send_event(struct sched *s, struct wjob *j, const char *text, size_t len,
                       const char *finish, const char *error, const char *code)
{
    struct out_msg *m = calloc(1, sizeof *m);
    if (!m) return;
    m->kind = OUT_EVENT;
    snprintf(m->reply, sizeof m->reply, "%s", j->job.reply);
    m->text = malloc(len + 1);
    if (!m->text) {
        free(m);
        return;
    }
    memcpy(m->text, text, len);
    m->text[len] = 0;
    if (j->lp_len) {
        m->logprobs = malloc(j->lp_len + 3);
        if (m->logprobs) snprintf(m->logprobs, j->lp_len + 3, "[%s]", j->lp);
        j->lp_len = 0;
    }
    if (error) m->error = strdup(error);
    struct syn_event *ev = &m->ev;
    snprintf(ev->job, sizeof ev->job, "%s", j->job.id);
    ev->pos = j->tok_sent;
    ev->n_tokens = j->n_gen - j->tok_sent;
    ev->text = m->text;
    ev->text_len = len;
    ev->logprobs = m->logprobs;
    ev->finish = finish;
    ev->prompt_tokens = j->n_prompt;
    ev->completion_tokens = j->n_gen;
    ev->error = m->error;
    ev->error_code = code;
    ev->attempt = j->job.attempt;
    j->tok_sent = j->n_gen;
    if (ev->pos == 0) s->first_out = 1;
    queue_out(s, m);
}

/* Sends the finishing event and the acknowledgement; frees the job's engine sequence. The job
 * struct itself is moved into the ack message. */
static void finish_job(struct sched *s, struct wjob *j, const char *finish, const char *error,
                       const char *code)
{
    size_t n = j->text_len - j->text_sent;
    syn_debug(LOG, "job %s: %s", j->job.id, finish ? finish : "error");
    send_event(s, j, j->text + j->text_sent, n, finish, error, code);
    j->text_sent = j->text_len;
    if (j->seq >= 0) syn_engine_seq_free(s->e, j->seq);
    j->seq = -1;
    struct out_msg *m = calloc(1, sizeof *m);
    struct syn_job *copy = malloc(sizeof *copy);
    if (m && copy) {
        *copy = j->job;
        memset(&j->job, 0, sizeof j->job); /* ownership moved */
        m->kind = OUT_ACK;
        m->job = copy;
        queue_out(s, m);
    } else {
        free(m);
        free(copy);
    }
    if (finish && strcmp(finish, "error") != 0) s->jobs_done++;
    wmetrics_job_done(s->wm, finish ? finish : "error");
}

static void requeue_job(struct sched *s, struct wjob *j)
{
    if (j->seq >= 0) syn_engine_seq_free(s->e, j->seq);
    j->seq = -1;
    struct out_msg *m = calloc(1, sizeof *m);
    struct syn_job *copy = malloc(sizeof *copy);
    if (!m || !copy) {
        free(m);
        free(copy);
        return;
    }
    *copy = j->job;
    memset(&j->job, 0, sizeof j->job);
    wmetrics_job_done(s->wm, "requeued");
    m->kind = OUT_REQUEUE;
    m->job = copy;
    queue_out(s, m);
}

/* Keeps the others in arrival order: the step hands out its prefill budget in array order. */
static void remove_job(struct sched *s, int i)
{
    wjob_free(s->jobs[i]);
    memmove(&s->jobs[i], &s->jobs[i + 1], sizeof *s->jobs * (size_t)(s->n_jobs - i - 1));
    s->n_jobs--;
}

/* ---- admission: from a claimed job to prompt tokens ---- */

static int render_chat(struct sched *s, const char *messages, char **out, char *err, size_t errlen)
{
    if (s->chat_id < 0)
        return syn_seterr(err, errlen, SYN_EINVAL, "%s", s->chat_err); /* says why, and the fix */
    json_error_t je;
    json_t *arr = json_loads(messages, 0, &je);
    int rc = SYN_EINVAL;
    struct syn_chat_msg *msgs = NULL;
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        syn_seterr(err, errlen, SYN_EINVAL, "messages must be a non-empty array");
        goto out;
    }
    size_t n = json_array_size(arr);
    msgs = calloc(n, sizeof *msgs);
    if (!msgs) goto out;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(arr, i);
        msgs[i].role = json_string_value(json_object_get(m, "role"));
        msgs[i].content = json_string_value(json_object_get(m, "content"));
        if (!msgs[i].role) {
            syn_seterr(err, errlen, SYN_EINVAL, "messages[%zu] has no role", i);
            goto out;
        }
    }
    int32_t bos = syn_tokenizer_bos(s->tok), eos = syn_tokenizer_eos(s->tok);
    const char *bs = bos >= 0 ? syn_tokenizer_piece(s->tok, bos) : "";
    const char *es = eos >= 0 ? syn_tokenizer_piece(s->tok, eos) : "";
    int need = syn_chat_apply(s->chat_id, msgs, (int)n, 1, bs, es, NULL, 0, err, errlen);
    if (need < 0) {
        rc = need;
        goto out;
    }
    *out = malloc((size_t)need + 1);
    if (!*out) goto out;
    syn_chat_apply(s->chat_id, msgs, (int)n, 1, bs, es, *out, (size_t)need + 1, err, errlen);
    rc = 0;
out:
    free(msgs);
    json_decref(arr);
    return rc;
}

/* Tokenizes the job's prompt into j->toks. Returns 0 or an error with a message. */
static int prepare(struct sched *s, struct wjob *j, char *err, size_t errlen)
{
    const struct syn_job *jb = &j->job;
    /* Fault injection for the poison-job test: a worker that dies on every delivery of a job.
     * Off unless the environment names a marker. */
    const char *crash = getenv("SYNAPSE_FAULT_CRASH_PROMPT");
    if (crash && *crash && jb->prompt && strstr(jb->prompt, crash)) {
        syn_error(LOG, "fault injection: crashing on job %s", jb->id);
        abort();
    }
    int n_ctx = syn_engine_n_ctx(s->e);
    char *rendered = NULL;
    const char *text = jb->prompt;
    int add_bos = syn_tokenizer_add_bos(s->tok), special = 0, rc;
    if (jb->messages) {
        if ((rc = render_chat(s, jb->messages, &rendered, err, errlen))) return rc;
        text = rendered;
        special = 1;
        add_bos = !syn_chat_has_bos(s->chat_id);
    }
    int n;
    if (jb->tokens) {
        n = jb->n_tokens;
        for (int i = 0; i < n; i++)
            if (jb->tokens[i] < 0 || jb->tokens[i] >= s->n_vocab) {
                free(rendered);
                return syn_seterr(err, errlen, SYN_ERANGE,
                                  "prompt token %d is outside the vocabulary (0..%d)",
                                  jb->tokens[i], s->n_vocab - 1);
            }
    } else {
        const char *t = text ? text : "";
        n = syn_tokenizer_encode(s->tok, t, strlen(t), add_bos, special, NULL, 0);
        if (n == 0 && syn_tokenizer_bos(s->tok) >= 0) add_bos = 1, n = 1;
    }
    if (n <= 0) {
        free(rendered);
        return syn_seterr(err, errlen, SYN_EINVAL, "the prompt is empty");
    }
    if (n >= n_ctx) {
        free(rendered);
        return syn_seterr(err, errlen, SYN_ERANGE,
                          "the prompt has %d tokens; this model's context holds %d", n, n_ctx);
    }
    int max_new = jb->max_tokens < n_ctx - n ? jb->max_tokens : n_ctx - n;
    j->cap = n + max_new + 1;
    j->toks = malloc(sizeof *j->toks * (size_t)j->cap);
    if (!j->toks) {
        free(rendered);
        return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
    }
    if (jb->tokens)
        memcpy(j->toks, jb->tokens, sizeof *j->toks * (size_t)n);
    else
        syn_tokenizer_encode(s->tok, text ? text : "", strlen(text ? text : ""), add_bos, special,
                             j->toks, n);
    free(rendered);
    j->n_prompt = n;
    /* allocates only what the parameters use (nothing for a greedy job without penalties) */
    j->smp = syn_sampler_new(&jb->sampling, s->n_vocab);
    if (!j->smp) return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) syn_sampler_accept(j->smp, j->toks[i], 1);
    syn_detok_init(&j->dt);
    /* a completion continues its text prompt: keep the first piece's leading space */
    if (!jb->messages && n > add_bos) j->dt.n_tokens = 1;
    if (reserve(&j->text, &j->text_cap, (size_t)max_new * 8 + 64))
        return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
    j->text[0] = 0;
    return SYN_OK;
}

/* Takes what the I/O thread gathered. */
static void take_inbox(struct sched *s)
{
    const int cap = s->p->max_seqs * 2;
    pthread_mutex_lock(&s->io.mu);
    struct syn_job *in[512];
    int n_in = 0;
    while (s->io.n_inbox > 0 && n_in < 512 && s->n_jobs + n_in < cap)
        in[n_in++] = s->io.inbox[--s->io.n_inbox];
    s->io.held = s->n_jobs + n_in;
    for (int c = 0; c < s->io.n_cancelled; c++)
        for (int i = 0; i < s->n_jobs; i++)
            if (!strcmp(s->jobs[i]->job.id, s->io.cancelled[c])) s->jobs[i]->cancel = 1;
    s->io.n_cancelled = 0;
    pthread_mutex_unlock(&s->io.mu);

    /* high priority first, then in arrival order */
    for (int pass = 1; pass >= 0; pass--)
        for (int k = n_in - 1; k >= 0; k--) {
            if (!in[k] || in[k]->priority != pass) continue;
            struct wjob *j = calloc(1, sizeof *j);
            if (!j) continue;
            j->job = *in[k];
            free(in[k]);
            in[k] = NULL;
            j->seq = -1;
            j->order = s->next_order++;
            s->jobs[s->n_jobs++] = j;
            char err[256];
            if (j->job.deadline_ms && syn_unix_ms() > j->job.deadline_ms) {
                finish_job(s, j, "error", "the request's deadline passed before it could run",
                           "deadline");
                remove_job(s, s->n_jobs - 1);
                continue;
            }
            if (prepare(s, j, err, sizeof err) != 0) {
                finish_job(s, j, "error", err, "bad_request");
                remove_job(s, s->n_jobs - 1);
                continue;
            }
            syn_debug(LOG, "job %s: %d prompt tokens, attempt %d", j->job.id, j->n_prompt,
                      j->job.attempt);
        }
}

/* ---- one engine step ---- */

/* JSON string escaping into buf. */
static void json_str(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    append(buf, len, cap, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            append(buf, len, cap, tmp, 2);
        } else if (c < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            append(buf, len, cap, tmp, 6);
        } else {
            append(buf, len, cap, (const char *)&c, 1);
        }
    }
    append(buf, len, cap, "\"", 1);
}

/* The text of one token on its own (for logprobs), without stream state. */
static int token_text(const struct syn_tokenizer *tok, int32_t id, char *out, size_t cap)
{
    struct syn_detok d;
    syn_detok_init(&d);
    d.n_tokens = 1; /* not the first token: keep SPM's leading space */
    int n = syn_detok_push(tok, &d, id, out, cap);
    if (n < 0) n = 0;
    int m = syn_detok_flush(tok, &d, out + n, cap - (size_t)n);
    return n + (m > 0 ? m : 0);
}

static void add_logprob(struct sched *s, struct wjob *j, int32_t id, float lp,
                        const struct syn_logprob *top, int n_top)
{
    char t[256];
    char num[64];
    if (j->lp_len) append(&j->lp, &j->lp_len, &j->lp_cap, ",", 1);
    int n = token_text(s->tok, id, t, sizeof t);
    append(&j->lp, &j->lp_len, &j->lp_cap, "{\"token\":", 9);
    json_str(&j->lp, &j->lp_len, &j->lp_cap, t, (size_t)n);
    snprintf(num, sizeof num, ",\"id\":%d,\"logprob\":%.6g,\"top_logprobs\":[", id, (double)lp);
    append(&j->lp, &j->lp_len, &j->lp_cap, num, strlen(num));
    for (int i = 0; i < n_top; i++) {
        int m = token_text(s->tok, top[i].token, t, sizeof t);
        append(&j->lp, &j->lp_len, &j->lp_cap, i ? ",{\"token\":" : "{\"token\":", i ? 10 : 9);
        json_str(&j->lp, &j->lp_len, &j->lp_cap, t, (size_t)m);
        snprintf(num, sizeof num, ",\"id\":%d,\"logprob\":%.6g}", top[i].token,
                 (double)top[i].logprob);
        append(&j->lp, &j->lp_len, &j->lp_cap, num, strlen(num));
    }
    append(&j->lp, &j->lp_len, &j->lp_cap, "]}", 2);
}

/* Handles a sampled token; returns 1 if the job finished (and was finished). */
static int on_token(struct sched *s, struct wjob *j, int32_t id, float lp,
                    const struct syn_logprob *top, int n_top)
{
    int n_ctx = syn_engine_n_ctx(s->e);
    if (syn_tokenizer_is_eog(s->tok, id)) {
        finish_job(s, j, "stop", NULL, NULL);
        return 1;
    }
    if (j->smp) syn_sampler_accept(j->smp, id, 0);
    j->toks[j->n_prompt + j->n_gen++] = id;
    s->tokens_out++;
    if (j->job.logprobs) add_logprob(s, j, id, lp, top, n_top);
    char piece[512];
    int n = syn_detok_push(s->tok, &j->dt, id, piece, sizeof piece);
    if (n > 0) append(&j->text, &j->text_len, &j->text_cap, piece, (size_t)n);
    int hit = 0;
    size_t safe = syn_stop_scan(j->text, j->text_len, j->job.stop, j->job.n_stop, &hit);
    if (hit) {
        j->text_len = safe;
        finish_job(s, j, "stop", NULL, NULL);
        return 1;
    }
    int at_limit = j->n_gen >= j->job.max_tokens || j->n_prompt + j->n_gen >= n_ctx;
    if (at_limit) {
        int m = syn_detok_flush(s->tok, &j->dt, piece, sizeof piece);
        if (m > 0) append(&j->text, &j->text_len, &j->text_cap, piece, (size_t)m);
        finish_job(s, j, "length", NULL, NULL);
        return 1;
    }
    send_event(s, j, j->text + j->text_sent, safe - j->text_sent, NULL, NULL, NULL);
    j->text_sent = safe;
    return 0;
}

/* Drops the newest running job's cache so that the rest fit; it is recomputed later. */
static int preempt_newest(struct sched *s, struct wjob *keep)
{
    struct wjob *victim = NULL;
    for (int i = 0; i < s->n_jobs; i++) {
        struct wjob *j = s->jobs[i];
        if (j->state == J_RUNNING && j != keep && j->n_cached > 0 &&
            (!victim || j->order > victim->order))
            victim = j;
    }
    if (!victim) return 0;
    syn_engine_seq_free(s->e, victim->seq);
    victim->seq = -1;
    victim->state = J_WAITING;
    victim->n_cached = 0;
    wmetrics_preempted(s->wm);
    syn_info(LOG, "preempted job %s (KV cache full); it will be recomputed", victim->job.id);
    return 1;
}

/* Builds and runs one step. Returns the number of items run (0 = nothing to do). */
static int step(struct sched *s)
{
    const int max_seqs = s->p->max_seqs;
    int budget = s->p->max_batched_tokens;
    int n = 0;
    /* admit waiting jobs (oldest first, high priority first) into free sequences */
    for (;;) {
        struct wjob *best = NULL;
        for (int i = 0; i < s->n_jobs; i++) {
            struct wjob *j = s->jobs[i];
            if (j->state != J_WAITING) continue;
            if (!best || j->job.priority > best->job.priority ||
                (j->job.priority == best->job.priority && j->order < best->order))
                best = j;
        }
        if (!best) break;
        int seq = syn_engine_seq_new(s->e);
        if (seq < 0) break;
        best->seq = seq;
        best->state = J_RUNNING;
        best->n_cached = 0;
        if (!best->admitted) {
            best->admitted = 1;
            wmetrics_admitted(s->wm, (double)(syn_unix_ms() - best->job.created_ms) / 1000.0,
                              best->n_prompt);
        }
    }
    /* decode tokens first (one each), then prefill chunks with what budget is left: high
     * priority first, then oldest first (s->jobs is in arrival order), so that a prompt is
     * never passed over for ones that came after it */
    int blocks_free = syn_engine_kv_blocks_free(s->e);
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < s->n_jobs && n < max_seqs; i++) {
            struct wjob *j = s->jobs[i];
            if (j->state != J_RUNNING) continue;
            if (pass > 0 && j->job.priority != (pass == 1 ? SYN_PRIO_HIGH : SYN_PRIO_NORMAL))
                continue;
            int total = j->n_prompt + j->n_gen;
            int decoding = j->n_cached == total - 1 && j->n_gen > 0;
            int left = total - j->n_cached;
            if (pass == 0 && !decoding) continue;
            if (pass > 0 && (decoding || left <= 0)) continue;
            int take = pass == 0 ? 1 : (left < budget ? left : budget);
            if (take <= 0) continue;
            int need = syn_engine_kv_blocks_needed(s->e, j->seq, take);
            if (need > blocks_free && pass > 0) {
                /* a prefill chunk shrinks to what fits; it never preempts anyone */
                int bt = syn_engine_kv_block_tokens(s->e);
                int room = j->n_cached % bt ? bt - j->n_cached % bt : 0;
                take = room + blocks_free * bt < take ? room + blocks_free * bt : take;
                if (take <= 0) continue;
                need = syn_engine_kv_blocks_needed(s->e, j->seq, take);
            }
            if (need > blocks_free) {
                /* a decode token needs a block: take it from the newest sequence */
                if (preempt_newest(s, j)) return -1; /* chosen items may be stale: rebuild */
                /* nobody else holds blocks: the pool cannot hold this sequence any longer */
                j->cancel = 3;
                continue;
            }
            blocks_free -= need;
            budget -= take;
            int last = j->n_cached + take == total;
            s->items[n] = (struct syn_step_item){j->seq, j->toks + j->n_cached, take,
                                                 last ? SYN_LOGITS_LAST : SYN_LOGITS_NONE};
            s->item_job[n++] = j;
            if (budget <= 0) break;
        }
    }
    if (n == 0) return 0;
    int step_tokens = 0;
    for (int i = 0; i < n; i++) step_tokens += s->items[i].n_tokens;
    int64_t t_step = mono_us();
    int rc = syn_engine_step(s->e, s->items, n);
    double step_s = (double)(mono_us() - t_step) / 1e6;
    wmetrics_step(s->wm, n, step_tokens, step_s);
    syn_debug(LOG, "step: %d items, %d tokens, %d jobs held, %.2f ms", n, step_tokens, s->n_jobs,
              step_s * 1e3);
    if (rc != 0) {
        syn_error(LOG, "engine step failed: %s", syn_strerror(rc));
        for (int i = 0; i < n; i++) s->item_job[i]->cancel = 2;
        return n;
    }
    int row = 0;
    struct syn_logprob top[SYN_Q_MAX_TOP_LOGPROBS];
    for (int i = 0; i < n; i++) {
        struct wjob *j = s->item_job[i];
        j->n_cached += s->items[i].n_tokens;
        if (s->items[i].logits != SYN_LOGITS_LAST) continue;
        const float *lg = syn_engine_logits(s->e, row++);
        float lp = 0;
        int n_top = j->job.logprobs ? j->job.top_logprobs : 0;
        int32_t id = syn_sampler_sample(j->smp, lg, j->job.logprobs ? &lp : NULL, top, n_top);
        if (on_token(s, j, id, lp, top, n_top)) j->state = -1; /* finished: removed below */
    }
    for (int i = s->n_jobs - 1; i >= 0; i--)
        if (s->jobs[i]->state == -1) remove_job(s, i);
    return n;
}

/* Publishes what the I/O thread needs: how many jobs to claim, which jobs are held, stats.
 * When the step produced some job's first token, the scheduler then yields its CPU. Woken by
 * this publish, the I/O thread was often put on the engine's CPU and waited out the engine's
 * time slice there before it could send the events: with stories15m, one engine thread on two
 * cores and 2 requests/s, a median 0.9 ms and p90 2.8 ms from publish to the I/O thread running.
 * Yielding costs the engine a context switch on its CPU: after every step it cost 6% of batch-16
 * throughput, and after every step with a first token, 5-10% of the throughput of 64 short jobs
 * churning. So only a small batch (at most a quarter of --max-seqs running) yields, and only for
 * a first token, where a client waits and a step is short. When nothing else waits for the CPU
 * the yield returns at once. */
static void publish(struct sched *s, int accepting)
{
    int urgent = s->first_out;
    s->first_out = 0;
    int running = 0;
    for (int i = 0; i < s->n_jobs; i++) running += s->jobs[i]->state == J_RUNNING;
    pthread_mutex_lock(&s->io.mu);
    int held = s->n_jobs + s->io.n_inbox;
    s->io.want = accepting ? s->p->max_seqs - held : 0;
    if (s->io.want < 0) s->io.want = 0;
    s->io.n_runs = 0;
    s->io.held = s->n_jobs;
    for (int i = 0; i < s->n_jobs; i++) {
        struct run_ref *r = &s->io.runs[s->io.n_runs++];
        memcpy(r->id, s->jobs[i]->job.id, sizeof r->id);
        memcpy(r->entry, s->jobs[i]->job.entry, sizeof r->entry);
        r->priority = s->jobs[i]->job.priority;
    }
    s->io.info.running = running;
    s->io.info.free_slots = accepting ? s->io.want : 0;
    s->io.info.kv_blocks_free = syn_engine_kv_blocks_free(s->e);
    s->io.info.jobs_done = s->jobs_done;
    s->io.info.tokens_out = s->tokens_out;
    if (!accepting) s->io.info.state = SYN_WORKER_DRAINING;
    int state = s->io.info.state;
    splice_out_locked(s);
    pthread_cond_signal(&s->io.cv_io);
    pthread_mutex_unlock(&s->io.mu);
    wmetrics_state(s->wm, state, s->p->max_seqs, running, s->n_jobs - running,
                   syn_engine_kv_blocks_free(s->e), syn_engine_kv_blocks_total(s->e),
                   s->tokens_out);
    if (urgent && running * 4 <= s->p->max_seqs) sched_yield();
}

/* Waits for the I/O thread to bring jobs (or for timeout_ms). */
static void wait_for_work(struct sched *s, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->io.mu);
    if (s->io.n_inbox == 0 && s->io.n_cancelled == 0 && s->io.stop != 2 && !g_drain)
        pthread_cond_timedwait(&s->io.cv_sched, &s->io.mu, &ts);
    pthread_mutex_unlock(&s->io.mu);
}

static void model_name_from_path(const char *path, char *out, size_t cap)
{
    const char *b = strrchr(path, '/');
    while (b && b[1] == 0 && b > path) { /* a directory with a trailing slash */
        const char *q = b - 1;
        while (q > path && *q != '/') q--;
        if (*q != '/') {
            b = NULL;
            break;
        }
        snprintf(out, cap, "%.*s", (int)(b - q - 1), q + 1);
        return;
    }
    b = b ? b + 1 : path;
    snprintf(out, cap, "%s", b);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
    for (char *c = out; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '.' || *c == '_' || *c == '-'))
            *c = '_';
}

int syn_worker_run(const struct syn_worker_params *p, char *err, size_t errlen)
{
    struct sched s;
    memset(&s, 0, sizeof s);
    s.p = p;
    int rc = SYN_OK;
    int64_t t_start = mono_ms();
    int64_t unix_start = p->start_ms ? p->start_ms : syn_unix_ms();
    if (!p->model_path || !p->redis_url)
        return syn_seterr(err, errlen, SYN_EINVAL, "worker: --model and --redis are required");
    char model[101];
    if (p->model_name)
        snprintf(model, sizeof model, "%s", p->model_name);
    else
        model_name_from_path(p->model_path, model, sizeof model);
    if (!syn_q_name_ok(model))
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "worker: model name '%s' must be 1-100 characters of [A-Za-z0-9._-]",
                          model);
    char id[101];
    if (p->worker_id) {
        snprintf(id, sizeof id, "%s", p->worker_id);
    } else {
        char host[64] = "worker";
        gethostname(host, sizeof host);
        host[sizeof host - 1] = 0;
        snprintf(id, sizeof id, "%.60s-%d", host, (int)getpid());
        for (char *c = id; *c; c++)
            if (!syn_q_name_ok((char[]){*c, 0})) *c = '_';
    }
    if (!syn_q_name_ok(id))
        return syn_seterr(err, errlen, SYN_EINVAL, "worker: id '%s' is not a valid name", id);

    /* map and warm the model */
    struct syn_engine_params ep = syn_engine_default_params();
    ep.model_path = p->model_path;
    ep.n_threads = p->n_threads;
    ep.max_seqs = p->max_seqs;
    ep.max_batch_tokens = p->max_batched_tokens < p->max_seqs ? p->max_seqs : p->max_batched_tokens;
    ep.max_logit_rows = p->max_seqs;
    ep.n_ctx = p->n_ctx;
    ep.kv_cache_bytes = (size_t)p->kv_cache_mb << 20;
    ep.chat_template = p->chat_template;
    if ((rc = syn_engine_load(&ep, &s.e, err, errlen))) return rc;
    s.tok = syn_engine_tokenizer(s.e);
    s.n_vocab = syn_engine_hparams(s.e)->n_vocab;
    const char *jt = syn_engine_chat_template(s.e);
    s.chat_id =
        syn_chat_resolve(p->chat_template, jt, jt ? strlen(jt) : 0, s.chat_err, sizeof s.chat_err);
    {
        int warm = syn_engine_seq_new(s.e);
        int32_t t = syn_tokenizer_bos(s.tok) >= 0 ? syn_tokenizer_bos(s.tok) : 0;
        struct syn_step_item it = {warm, &t, 1, SYN_LOGITS_LAST};
        syn_engine_step(s.e, &it, 1);
        syn_engine_seq_free(s.e, warm);
    }
    const int cap = p->max_seqs * 2;
    s.jobs = calloc((size_t)cap, sizeof *s.jobs);
    s.items = calloc((size_t)p->max_seqs, sizeof *s.items);
    s.item_job = calloc((size_t)p->max_seqs, sizeof *s.item_job);
    if (!s.jobs || !s.items || !s.item_job) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "worker: out of memory");
        goto out;
    }
    double cold = (double)(syn_unix_ms() - unix_start) / 1000.0;
    struct syn_worker_info *info = &s.io.info;
    snprintf(info->id, sizeof info->id, "%s", id);
    snprintf(info->model, sizeof info->model, "%s", model);
    info->state = SYN_WORKER_READY;
    info->pid = (int)getpid();
    info->max_seqs = p->max_seqs;
    info->free_slots = p->max_seqs;
    info->kv_blocks_total = syn_engine_kv_blocks_total(s.e);
    info->kv_blocks_free = syn_engine_kv_blocks_free(s.e);
    info->started_ms = unix_start;
    info->cold_start_s = cold;
    struct wmetrics_params mp = {
        .model = model,
        .worker_id = id,
        .host = p->metrics_host,
        .port = p->metrics_port,
        .pushgateway = p->pushgateway,
        .push_interval_s = p->push_interval_s,
    };
    if ((rc = wmetrics_new(&mp, &s.wm, err, errlen))) goto out;
    wmetrics_cold_start(s.wm, cold);
    wmetrics_state(s.wm, SYN_WORKER_READY, p->max_seqs, 0, 0, info->kv_blocks_free,
                   info->kv_blocks_total, 0);
    if (wmetrics_port(s.wm) >= 0)
        fprintf(stderr, "worker %s metrics on http://%s:%d/metrics\n", id,
                p->metrics_host && *p->metrics_host ? p->metrics_host : "127.0.0.1",
                wmetrics_port(s.wm));
    s.io.metrics = s.wm;
    if ((rc = wio_start(&s.io, p, model, err, errlen))) goto out;
    syn_info(LOG,
             "worker %s ready for model '%s' in %.3f s (cold start: process start to "
             "ready; load %.3f s)",
             id, model, cold, (double)(mono_ms() - t_start) / 1000.0);
    fprintf(stderr, "worker %s ready: model %s, cold start %.3f s\n", id, model, cold);

    int64_t idle_since = mono_ms(), drain_deadline = 0;
    int draining = 0, was_idle = 1;
    for (;;) {
        if (g_drain && !draining) {
            draining = 1;
            drain_deadline = mono_ms() + (int64_t)(p->drain_timeout_s * 1000);
            syn_info(LOG, "draining: finishing %d job(s) within %.0f s", s.n_jobs,
                     p->drain_timeout_s);
        }
        take_inbox(&s);
        if (s.io.fatal[0]) {
            rc = syn_seterr(err, errlen, SYN_EIO, "worker: %s", s.io.fatal);
            break;
        }
        /* cancellations, deadlines, and on drain the jobs that have not started */
        int64_t now_unix = syn_unix_ms();
        for (int i = s.n_jobs - 1; i >= 0; i--) {
            struct wjob *j = s.jobs[i];
            if (j->cancel == 3) { /* the KV pool cannot hold it any longer */
                finish_job(&s, j, "length", NULL, NULL);
                remove_job(&s, i);
            } else if (j->cancel) {
                finish_job(&s, j, j->cancel == 2 ? "error" : "cancelled",
                           j->cancel == 2 ? "the engine failed on this job" : NULL,
                           j->cancel == 2 ? "engine" : NULL);
                remove_job(&s, i);
            } else if (j->job.deadline_ms && now_unix > j->job.deadline_ms) {
                finish_job(&s, j, "error", "the request's deadline passed", "deadline");
                remove_job(&s, i);
            } else if (draining && (j->state == J_WAITING || mono_ms() > drain_deadline)) {
                requeue_job(&s, j);
                remove_job(&s, i);
            }
        }
        if (s.n_jobs == 0) {
            publish(&s, !draining);
            if (draining) break;
            if (!was_idle) idle_since = mono_ms();
            was_idle = 1;
            if (p->idle_timeout_s > 0 && mono_ms() - idle_since > p->idle_timeout_s * 1000) {
                syn_info(LOG, "idle for %.1f s: exiting (scale to zero)", p->idle_timeout_s);
                break;
            }
            wait_for_work(&s, 50);
            continue;
        }
        if (was_idle && p->max_queue_delay_ms > 0 && s.n_jobs < p->max_seqs) {
            /* from idle: gather a first batch for a moment */
            int64_t until = mono_ms() + p->max_queue_delay_ms;
            publish(&s, !draining);
            while (mono_ms() < until && s.n_jobs < p->max_seqs) {
                wait_for_work(&s, (int)(until - mono_ms()));
                take_inbox(&s);
            }
        }
        was_idle = 0;
        int ran;
        while ((ran = step(&s)) < 0) { /* a preemption rebuilt the step */
        }
        publish(&s, !draining);
        if (ran == 0) wait_for_work(&s, 5);
    }
out:
    for (int i = s.n_jobs - 1; i >= 0; i--) {
        requeue_job(&s, s.jobs[i]);
        remove_job(&s, i);
    }
    /* jobs claimed but never taken go back too */
    if (s.io.started) {
        pthread_mutex_lock(&s.io.mu);
        splice_out_locked(&s);
        int n_in = s.io.n_inbox;
        struct syn_job *in[512];
        for (int i = 0; i < n_in && i < 512; i++) in[i] = s.io.inbox[i];
        s.io.n_inbox = 0;
        pthread_mutex_unlock(&s.io.mu);
        for (int i = 0; i < n_in && i < 512; i++) {
            struct out_msg *m = calloc(1, sizeof *m);
            if (!m) continue;
            m->kind = OUT_REQUEUE;
            m->job = in[i];
            wio_send(&s.io, m);
        }
        wio_stop(&s.io);
    }
    wmetrics_free(s.wm, rc == SYN_OK);
    free(s.jobs);
    free(s.items);
    free(s.item_job);
    syn_engine_free(s.e);
    return rc;
}
