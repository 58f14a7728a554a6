/*
 * The Redis Streams job protocol between gateways and workers (docs/protocol.md is the full
 * account: every key, field and state change). Used by both sides:
 *
 *   gateway: syn_job_* to build a job, syn_q_submit (or the argv builders with hiredis's async
 *            API), reads its reply stream and decodes token events with syn_event_decode.
 *   worker:  syn_q_claim / syn_q_autoclaim to take jobs, syn_q_post_events to stream tokens (one
 *            pipelined round trip per engine step), syn_q_ack when done, syn_q_heartbeat.
 *
 * Keys (the model name is part of the key so that one Redis serves many models). The braces are
 * literal, Redis Cluster hash tags: model "tiny" has syn:{tiny}:jobs, worker "w1" syn:worker:{w1}.
 * Build keys with the syn_q_key_* functions, never by hand:
 *   syn:{model}:jobs         stream of jobs, priority normal; consumer group "workers"
 *   syn:{model}:jobs:hi      stream of jobs, priority high; consumer group "workers"
 *   syn:{model}:dead         dead-letter stream (jobs that failed max_attempts times)
 *   syn:{model}:workers      sorted set: worker id -> last heartbeat (unix ms)
 *   syn:worker:{id}          hash: the worker's registry entry, expires without heartbeats
 *   syn:reply:{gateway}      stream of token events for one gateway's requests
 *   syn:cancel:{job}         string, present when the job is cancelled (expires after 1 h)
 *   syn:cancel               pub/sub channel: job ids as they are cancelled (fast path)
 *
 * Delivery: jobs are at-least-once (a dead worker's jobs are reclaimed and re-run); token events
 * carry each token's position so that the gateway forwards every position exactly once and in
 * order. Re-runs regenerate the same tokens: the gateway always fixes the seed, and the engine is
 * batch-invariant.
 *
 * The synchronous client (struct syn_qclient) is for workers and tests: it owns one hiredis
 * connection, reconnects on failure with backoff, and never blocks longer than asked.
 */
#ifndef SYNAPSE_QUEUE_H
#define SYNAPSE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "synapse/sampler.h"

#define SYN_Q_GROUP            "workers"
#define SYN_Q_MAX_STOP         4
#define SYN_Q_MAX_TOP_LOGPROBS 20

enum syn_priority {
    SYN_PRIO_NORMAL = 0,
    SYN_PRIO_HIGH = 1,
};

/* Key builders: write the key into buf (cap bytes); return its length, or -1 if it does not
 * fit or a name contains characters we do not allow in keys (anything outside [A-Za-z0-9._-]
 * for model, worker and gateway names; job ids likewise). */
int syn_q_key_jobs(char *buf, size_t cap, const char *model, int priority);
int syn_q_key_dead(char *buf, size_t cap, const char *model);
int syn_q_key_workers(char *buf, size_t cap, const char *model);
int syn_q_key_worker(char *buf, size_t cap, const char *worker_id);
int syn_q_key_reply(char *buf, size_t cap, const char *gateway_id);
int syn_q_key_cancel(char *buf, size_t cap, const char *job_id);
/* 1 if s is a valid name for the keys above (1..100 chars of [A-Za-z0-9._-]). */
int syn_q_name_ok(const char *s);

/* ---- jobs ---- */

struct syn_job {
    char id[101];    /* unique, from the gateway ("chatcmpl-..."); a valid name */
    char model[101]; /* model name the client asked for */
    char reply[128]; /* reply stream key (syn:reply:{gateway}) */
    char *prompt;    /* completions: the prompt text; or NULL. owned */
    char *messages;  /* chat: JSON array of {"role","content"}; or NULL. owned */
    int32_t *tokens; /* a prompt given as token ids; or NULL. owned */
    int n_tokens;    /* entries in tokens */
    struct syn_sampling_params sampling; /* seed always set by the gateway */
    int max_tokens;                      /* tokens to generate at most (>= 1) */
    char *stop[SYN_Q_MAX_STOP];          /* stop strings; owned */
    int n_stop;
    int logprobs;        /* 1: report the chosen tokens' logprobs */
    int top_logprobs;    /* 0..20 alternatives per token */
    int64_t deadline_ms; /* unix ms after which the job must not run; 0 = none */
    int priority;        /* enum syn_priority */
    int64_t created_ms;  /* unix ms when the gateway accepted it */
    /* set when read from the stream, not encoded */
    char entry[48]; /* the stream entry id ("1700000000000-0") */
    int attempt;    /* delivery count: 1 on the first delivery. Encoded (field
                                   * "attempt") only when > 0, i.e. by syn_q_requeue: the entry
                                   * then starts at attempt + 1 (docs/protocol.md) */
};

/* Zeroes j and sets defaults (sampling defaults, max_tokens 16, priority normal). */
void syn_job_init(struct syn_job *j);
/* Frees what j owns and zeroes it. */
void syn_job_release(struct syn_job *j);
/* The rules syn_job_xadd_argv and syn_job_decode enforce: valid names, a reply key
 * syn:reply:{gateway}, exactly one of prompt/messages/tokens, sampling ranges, max_tokens >= 1,
 * at most 4 non-empty stop strings, top_logprobs 0..20. 0 or SYN_EINVAL with a message. */
int syn_job_validate(const struct syn_job *j, char *err, size_t errlen);

/* An argv for hiredis (redisCommandArgv / redisAsyncCommandArgv / redisAppendCommandArgv). */
struct syn_q_argv {
    int argc;
    const char *argv[64]; /* pointers into buf or into the encoded struct */
    size_t len[64];
    char buf[1024]; /* numbers formatted here */
    size_t used;
    char *heap; /* a long field (token ids) formatted here; owned, freed by reset */
};
void syn_q_argv_reset(struct syn_q_argv *a);

/* XADD key * field value ... for the job (into its priority's stream). The job must outlive a.
 * a is overwritten, not freed: call syn_q_argv_reset after each use (token prompts allocate).
 * Returns 0, or SYN_EINVAL (bad names, nothing to run, too many fields). */
int syn_job_xadd_argv(const struct syn_job *j, struct syn_q_argv *a);

/* Decodes a job from a stream entry's field/value array (the reply element's second part: an
 * array of 2n strings). Unknown fields are ignored; missing or malformed required ones are
 * SYN_EFORMAT with a message. j is initialised here; release it with syn_job_release. */
struct redisReply;
int syn_job_decode(const struct redisReply *fields, struct syn_job *j, char *err, size_t errlen);

/* ---- token events (worker -> gateway) ---- */

struct syn_event {
    char job[101];    /* the job id */
    int pos;          /* output position of the first token in this event */
    int n_tokens;     /* tokens this event covers (0 for a pure finish/error event) */
    const char *text; /* the text delta (may be "" while UTF-8 is held back) */
    size_t text_len;
    const char *logprobs;   /* JSON array, one object per token, or NULL */
    const char *finish;     /* NULL, "stop", "length", "cancelled", "error" */
    int prompt_tokens;      /* on the finishing event */
    int completion_tokens;  /* on the finishing event */
    const char *error;      /* message when finish is "error" */
    const char *error_code; /* short code: "deadline", "dead_letter", "bad_request", ... */
    int attempt;            /* the attempt that produced it */
};

/* XADD reply MAXLEN ~ 100000 * field value ... for an event. */
int syn_event_xadd_argv(const char *reply_key, const struct syn_event *ev, struct syn_q_argv *a);

/* Decodes an event from a stream entry's field/value array. The string pointers point into
 * fields and live as long as it does. */
int syn_event_decode(const struct redisReply *fields, struct syn_event *ev, char *err,
                     size_t errlen);

/* ---- the synchronous client ---- */

struct syn_qclient;

/* url: "redis://[[user]:password@]host[:port][/db]", "unix:///path/to/sock[?db=N]", or
 * "host[:port]" (port 6379 by default). Connects at once;
 * SYN_EIO with a message if it cannot (the client is still returned and retries later when
 * out is set; callers decide whether a first failure is fatal). */
int syn_qclient_new(const char *url, struct syn_qclient **out, char *err, size_t errlen);
void syn_qclient_free(struct syn_qclient *c);
/* The hiredis context, for callers that need a command the API lacks; NULL while disconnected. */
struct redisContext *syn_qclient_ctx(struct syn_qclient *c);
/* Reconnects if needed (with backoff: no more than one attempt per 100 ms). 0 when connected. */
int syn_qclient_ensure(struct syn_qclient *c);
/* Connection failures and successful reconnects so far (for metrics). */
uint64_t syn_qclient_errors(const struct syn_qclient *c);
uint64_t syn_qclient_reconnects(const struct syn_qclient *c);
/* The message of the last failure (calls without an err buffer return SYN_EIO and leave it
 * here). Valid until the next call. */
const char *syn_qclient_errstr(const struct syn_qclient *c);
/* Command timeout in ms (default 2000): no read or write of a call waits longer, except that
 * a blocking claim adds its block_ms. */
void syn_qclient_set_timeout(struct syn_qclient *c, int timeout_ms);

/* Creates the consumer group on both priority streams (MKSTREAM; an existing group is fine). */
int syn_q_ensure_groups(struct syn_qclient *c, const char *model);

/* XADD a job; fills j->entry with the new entry id. */
int syn_q_submit(struct syn_qclient *c, struct syn_job *j);

/* Reads up to max new jobs for consumer: the high stream first, the normal one with what is
 * left, except that every fourth call that finds work waiting in both reads normal first, so a
 * steady stream of high-priority jobs cannot starve normal ones. block_ms > 0 blocks up to that
 * long when both are empty (0: never block). Returns the number of jobs written to out (each to
 * be released by the caller), or a negative syn_err. */
int syn_q_claim(struct syn_qclient *c, const char *model, const char *consumer, int max,
                int block_ms, struct syn_job *out);

/* Takes over jobs idle for at least min_idle_ms in either stream (their worker stopped
 * touching them: it died). Jobs whose delivery count exceeds max_attempts are moved to the
 * dead-letter stream, get an error event (code "dead_letter") on their reply stream, and are
 * acknowledged; the rest are returned as in syn_q_claim, with attempt set. */
int syn_q_autoclaim(struct syn_qclient *c, const char *model, const char *consumer,
                    int64_t min_idle_ms, int max_attempts, int max, struct syn_job *out);

/* Resets the idle time of jobs this consumer is running (XCLAIM ... JUSTID), so that a live
 * worker's long jobs are not reclaimed. entries: stream entry ids, with their priorities. */
int syn_q_touch(struct syn_qclient *c, const char *model, const char *consumer,
                const struct syn_job *const *jobs, int n);
/* syn_q_touch that only touches entries consumer still holds and reports, per job, owned[i] = 1
 * if it does, 0 if another worker reclaimed it meanwhile (or it was acknowledged): the caller
 * may stop running such a job. */
int syn_q_touch_owned(struct syn_qclient *c, const char *model, const char *consumer,
                      const struct syn_job *const *jobs, int n, int *owned);

/* Acknowledges and deletes a finished job's entry. */
int syn_q_ack(struct syn_qclient *c, const char *model, const struct syn_job *j);

/* syn_q_ack for n jobs (0 ... SYN_Q_ACK_BATCH) in one pipelined round trip, in order. On an
 * error some may have been acknowledged already; acknowledging again is harmless. */
#define SYN_Q_ACK_BATCH 256
int syn_q_ack_many(struct syn_qclient *c, const char *model, const struct syn_job *const *jobs,
                   int n);

/* Hands an unfinished job back (draining on SIGTERM): re-adds it to its stream with the same id
 * and attempt, then acknowledges the old entry. */
int syn_q_requeue(struct syn_qclient *c, const char *model, const struct syn_job *j);

/* Appends n events as XADDs and reads every reply: one round trip. */
int syn_q_post_events(struct syn_qclient *c, const struct syn_event *ev,
                      const char *const *reply_keys, int n);

/* syn_q_post_events and syn_q_cancelled(job_ids, n_ids, cancelled) in the same round trip: a
 * worker streams one step's tokens and learns which of its jobs were cancelled for the price of
 * one. The events are posted whatever the checks answer; on an error, cancelled[] is not to be
 * trusted. */
int syn_q_post_events_check(struct syn_qclient *c, const struct syn_event *ev,
                            const char *const *reply_keys, int n, const char *const *job_ids,
                            int n_ids, int *cancelled);

/* What a worker sends after an engine step, in one pipelined round trip, in this order: the
 * step's events; the acknowledgements (XACK + XDEL) of up to SYN_Q_ACK_BATCH jobs of `model`
 * whose final events went out in an earlier round trip; the cancellation checks of the jobs it
 * holds. Acks never ride with their own job's final event: a reply that fails (Redis out of
 * memory refuses XADD but takes XACK) would lose the job, and MULTI cannot span the reply
 * stream's and the job stream's cluster slots. Any part may be empty. Returns an error when the
 * round trip, an event or a check failed: the events may have been posted and the acks made
 * (both are harmless again), and cancelled[] is not to be trusted. Whether the acks were made is
 * acks_done alone, so that a failing ack does not send the events again. */
struct syn_q_step_out {
    const struct syn_event *ev;    /* (n_ev) */
    const char *const *reply_keys; /* (n_ev) */
    int n_ev;
    const struct syn_job *const *acks; /* (n_acks) */
    int n_acks;
    const char *const *check_ids; /* (n_check) */
    int n_check;
    int *cancelled; /* (n_check) OUT */
    int acks_done;  /* OUT: every ack was made */
};
int syn_q_post_step(struct syn_qclient *c, const char *model, struct syn_q_step_out *o);

/* Marks a job cancelled (SET syn:cancel:{id} EX 3600, PUBLISH syn:cancel id). */
int syn_q_cancel(struct syn_qclient *c, const char *job_id);
/* For each of n job ids, out[i] = 1 if cancelled. One round trip. */
int syn_q_cancelled(struct syn_qclient *c, const char *const *job_ids, int n, int *out);

/* ---- the worker registry ---- */

enum syn_worker_state {
    SYN_WORKER_STARTING = 0,
    SYN_WORKER_READY = 1,
    SYN_WORKER_DRAINING = 2,
};

struct syn_worker_info {
    char id[101]; /* worker id (a valid name) */
    char model[101];
    int state; /* enum syn_worker_state */
    int pid;
    int max_seqs;
    int running;    /* sequences in the batch */
    int free_slots; /* max_seqs - running, 0 while not ready */
    int kv_blocks_free;
    int kv_blocks_total;
    int64_t heartbeat_ms; /* unix ms of this heartbeat */
    int64_t started_ms;   /* unix ms the process started */
    double cold_start_s;  /* process start to ready */
    uint64_t jobs_done;
    uint64_t tokens_out;
};

/* Writes the registry entry (HSET + PEXPIRE ttl_ms) and its heartbeat in the model's set.
 * One round trip. */
int syn_q_heartbeat(struct syn_qclient *c, const struct syn_worker_info *w, int64_t ttl_ms);
/* Removes the worker's entry (clean exit). */
int syn_q_unregister(struct syn_qclient *c, const struct syn_worker_info *w);
/* Reads every live worker of a model (entries whose hash has expired are dropped from the set).
 * Returns the count written to out (at most cap) or a negative syn_err. */
int syn_q_list_workers(struct syn_qclient *c, const char *model, struct syn_worker_info *out,
                       int cap);
/* Decodes a registry hash (HGETALL reply) into w. SYN_EFORMAT with a message. */
int syn_worker_decode(const struct redisReply *hash, struct syn_worker_info *w, char *err,
                      size_t errlen);

/* Backlog of a model, both priorities together: waiting = entries not yet delivered to any
 * consumer (XINFO GROUPS lag), pending = delivered but not acknowledged. */
int syn_q_backlog(struct syn_qclient *c, const char *model, int64_t *waiting, int64_t *pending);

/* Current unix time in ms (the clock the protocol's deadlines use). */
int64_t syn_unix_ms(void);

#endif
