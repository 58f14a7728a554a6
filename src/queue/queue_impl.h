/*
 * Internals shared by the files of the queue module (src/queue/): the synchronous client's
 * state, the argv builder, pipelined round trips, strict field parsing for the codecs, and the
 * dead-letter path. Nothing here is public API; include/synapse/queue.h is the contract and
 * docs/protocol.md the account of the protocol itself.
 */
#ifndef SYN_QUEUE_IMPL_H
#define SYN_QUEUE_IMPL_H

#include "synapse/queue.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>

#define QC_LOG "queue"

/* Reply streams: trimmed to about this many entries and expired this long after the last
 * event written to them (a dead gateway's stream does not live forever). */
#define SYN_Q_REPLY_MAXLEN "100000"
#define SYN_Q_REPLY_TTL_MS "3600000"
/* Dead-letter streams are trimmed too, but kept without expiry for inspection. */
#define SYN_Q_DEAD_MAXLEN "100000"
/* syn:cancel:{job} lives this long (seconds). */
#define SYN_Q_CANCEL_TTL_S "3600"
/* The pub/sub channel of cancellations. */
#define SYN_Q_CANCEL_CHANNEL "syn:cancel"
/* The model's worker set is kept this long after the last heartbeat of any worker. */
#define SYN_Q_WORKERS_TTL_MS "86400000"

/* Connect timeout, default command timeout, and the reconnect backoff bounds (ms). */
#define QC_CONNECT_TIMEOUT_MS 1000
#define QC_COMMAND_TIMEOUT_MS 2000
#define QC_BACKOFF_MIN_MS     100
#define QC_BACKOFF_MAX_MS     2000

struct syn_qclient {
    redisContext *ctx;   /* the connection; NULL while disconnected. owned */
    int is_unix;         /* 1: connect to path, 0: to host:port */
    char host[256];      /* TCP host name or address */
    int port;            /* TCP port */
    char path[512];      /* unix socket path */
    int db;              /* database to SELECT after connecting (0: none) */
    char user[128];      /* AUTH user ("" = the default user) */
    char pass[256];      /* AUTH password ("" = no AUTH) */
    int timeout_ms;      /* command timeout: no read or write waits longer */
    int64_t last_try_ms; /* monotonic ms of the last connect attempt (0: none yet) */
    int64_t next_try_ms; /* monotonic ms before which ensure does not try to connect */
    int backoff_ms;      /* wait after the next failed connect; doubles up to the max */
    int ever_connected;  /* 1 once a connect succeeded: later successes are reconnects */
    int lost_live;       /* this call lost a working connection (EOF/reset): retry once */
    uint64_t errors;     /* failed connects and dropped connections */
    uint64_t reconnects; /* successful connects after the first */
    char errstr[256];    /* the last failure, for syn_qclient_errstr */

    /* claim state (per client, for the model last claimed from) */
    char state_model[101]; /* the model the fields below belong to */
    int hi_streak;         /* claims in a row that high-priority jobs filled completely */
    int claim_drained;     /* the last claim left both job streams empty */
    char cursor[2][48];    /* XAUTOCLAIM cursor per priority ("0-0" = from the start) */
};

/* ---- argv building (keys.c) ---- */

/* Zeroes a (does not free: a fresh or reset argv only). */
void qa_init(struct syn_q_argv *a);
/* Appends an argument that points at s (which must outlive a). SYN_EINVAL when a is full. */
int qa_push(struct syn_q_argv *a, const char *s, size_t len);
int qa_pushs(struct syn_q_argv *a, const char *s);
/* Formats an argument into a->buf. SYN_EINVAL when it does not fit. */
int qa_pushf(struct syn_q_argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 1 if s (len bytes) is "syn:reply:{name}" with a valid name. */
int syn_q_reply_key_ok(const char *s, size_t len);

/* monotonic clock in ms (backoff) */
int64_t qc_mono_ms(void);

/* ---- strict field parsing (job.c) ---- */

/* 1 if r is a string reply whose bytes equal s. */
int qf_is(const redisReply *r, const char *s);
/* Plain decimal integers within [min, max]: optional '-', digits only, nothing else. */
int qf_i64(const redisReply *v, int64_t min, int64_t max, int64_t *out);
int qf_u64(const redisReply *v, uint64_t *out);
/* A float as %.9g writes it (digits, '.', 'e', signs): no "inf", "nan", hex or spaces. */
int qf_f32(const redisReply *v, float *out);
/* Copies a string reply to dst (cap bytes, NUL-terminated) if it is a valid name. */
int qf_name(const redisReply *v, char *dst, size_t cap);
/* A printable rendering of a value for error messages (at most 40 bytes, escaped). */
const char *qf_show(const redisReply *v, char *buf, size_t cap);

/* ---- the connection (client.c) ---- */

/* Starts an API call: clears the per-call retry flag and ensures a connection. SYN_EIO with
 * errstr set when Redis is unreachable. */
int qc_begin(struct syn_qclient *c);
/* After a failed call: 1 if it lost a working connection (the server restarted, a proxy
 * closed an idle socket) and the call should be made once more on a fresh one. */
int qc_retry(struct syn_qclient *c, int rc);
/* Buffers one command (nothing is sent until qc_collect). */
int qc_append(struct syn_qclient *c, const struct syn_q_argv *a);
int qc_appendv(struct syn_qclient *c, int argc, const char **argv, const size_t *len);
/* Sends what is buffered and reads n replies into out (freed by qc_free_replies). On an I/O
 * error or timeout the connection is dropped, nothing is returned and the result is SYN_EIO. */
int qc_collect(struct syn_qclient *c, int n, redisReply **out);
void qc_free_replies(redisReply **r, int n);
/* One command, one reply. */
int qc_command(struct syn_qclient *c, const struct syn_q_argv *a, redisReply **out);
/* Records a failure message (also logged at debug level); returns code. */
int qc_fail(struct syn_qclient *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* For an error reply: records "what: <the error>" and returns SYN_EIO. */
int qc_reply_error(struct syn_qclient *c, const redisReply *r, const char *what);
/* 1 if r is an error reply worth retrying later (LOADING, BUSY, OOM, READONLY, ...). */
int qc_transient(const redisReply *r);
/* Sets the socket timeout for the calls that follow (ms). */
void qc_set_timeout(struct syn_qclient *c, int ms);
/* Resets the claim state when the model changes. */
void qc_state_for(struct syn_qclient *c, const char *model);

/* ---- streams (streams.c) ---- */

/* Appends the commands that move a delivered entry out of the way because it must not run:
 * a copy of its raw fields to the dead stream (when to_dead), an error event to the job's
 * reply stream (when the fields name a valid job and reply), and XACK + XDEL of the entry.
 * Returns the number of commands appended (their replies must be collected), or a negative
 * syn_err when nothing could be appended. */
int qs_append_discard(struct syn_qclient *c, const char *model, int priority, const char *entry,
                      const redisReply *fields, int to_dead, int attempts, const char *code,
                      const char *msg);

#endif
