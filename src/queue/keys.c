/*
 * Key names, name validation, the protocol's clock, and the argv builder that every command of
 * the queue module is assembled with. The braces in the keys are literal: they are Redis Cluster
 * hash tags, so that all keys of one model (both job streams, the dead letters, the worker set)
 * share a slot and one XREADGROUP or MULTI may name several of them. See docs/protocol.md.
 */
#include "queue_impl.h"

#include "synapse/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- names and keys ---- */

static int name_ok_len(const char *s, size_t n)
{
    if (n < 1 || n > 100) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_' || ch == '-';
        if (!ok) return 0;
    }
    return 1;
}

int syn_q_name_ok(const char *s)
{
    return s && name_ok_len(s, strnlen(s, 101));
}

int syn_q_reply_key_ok(const char *s, size_t len)
{
    static const char pre[] = "syn:reply:{";
    size_t np = sizeof pre - 1;
    if (!s || len < np + 2 || memcmp(s, pre, np) != 0 || s[len - 1] != '}') return 0;
    return name_ok_len(s + np, len - np - 1);
}

/* Writes fmt with one name into buf; -1 if the name is bad or the key does not fit. */
static int key1(char *buf, size_t cap, const char *fmt, const char *name)
{
    if (!buf || !syn_q_name_ok(name)) return -1;
    int n = snprintf(buf, cap, fmt, name);
    if (n < 0 || (size_t)n >= cap) return -1;
    return n;
}

int syn_q_key_jobs(char *buf, size_t cap, const char *model, int priority)
{
    if (priority != SYN_PRIO_NORMAL && priority != SYN_PRIO_HIGH) return -1;
    return key1(buf, cap, priority == SYN_PRIO_HIGH ? "syn:{%s}:jobs:hi" : "syn:{%s}:jobs", model);
}

int syn_q_key_dead(char *buf, size_t cap, const char *model)
{
    return key1(buf, cap, "syn:{%s}:dead", model);
}

int syn_q_key_workers(char *buf, size_t cap, const char *model)
{
    return key1(buf, cap, "syn:{%s}:workers", model);
}

int syn_q_key_worker(char *buf, size_t cap, const char *worker_id)
{
    return key1(buf, cap, "syn:worker:{%s}", worker_id);
}

int syn_q_key_reply(char *buf, size_t cap, const char *gateway_id)
{
    return key1(buf, cap, "syn:reply:{%s}", gateway_id);
}

int syn_q_key_cancel(char *buf, size_t cap, const char *job_id)
{
    return key1(buf, cap, "syn:cancel:{%s}", job_id);
}

/* ---- clocks ---- */

int64_t syn_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t qc_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- argv ---- */

void qa_init(struct syn_q_argv *a)
{
    memset(a, 0, sizeof *a);
}

void syn_q_argv_reset(struct syn_q_argv *a)
{
    if (!a) return;
    free(a->heap);
    a->heap = NULL;
    a->argc = 0;
    a->used = 0;
}

int qa_push(struct syn_q_argv *a, const char *s, size_t len)
{
    if (a->argc >= (int)(sizeof a->argv / sizeof a->argv[0])) return SYN_EINVAL;
    a->argv[a->argc] = s;
    a->len[a->argc] = len;
    a->argc++;
    return SYN_OK;
}

int qa_pushs(struct syn_q_argv *a, const char *s)
{
    return qa_push(a, s, strlen(s));
}

int qa_pushf(struct syn_q_argv *a, const char *fmt, ...)
{
    size_t room = sizeof a->buf - a->used;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(a->buf + a->used, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) return SYN_EINVAL;
    int rc = qa_push(a, a->buf + a->used, (size_t)n);
    if (rc == SYN_OK) a->used += (size_t)n + 1;
    return rc;
}
