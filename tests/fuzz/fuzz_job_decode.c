/*
 * libFuzzer driver for the queue codecs: the input becomes a stream entry's field/value array,
 * which goes through syn_job_decode and syn_event_decode. Whatever decodes must encode again
 * (syn_job_xadd_argv / syn_event_xadd_argv) and decode from those bytes to the same values:
 * a job the gateway can read back but not write, or that changes on the way, is a bug.
 *
 * Input format (so that seeds stay readable): items separated by '\n', one array element each.
 * In an item, "\0" is a NUL byte, "\n" a newline and "\\" a backslash; an item that is exactly
 * "\i", "\-" or "\[" becomes an integer, a nil or an empty array element instead of a string.
 * The array's RESP bytes are parsed by hiredis's own reader, as a reply from Redis would be.
 */
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synapse/queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Appends to a growing buffer; aborts on allocation failure (not what is being fuzzed). */
struct buf {
    char *p;    /* bytes. owned */
    size_t n;   /* used */
    size_t cap; /* allocated */
};

static void put(struct buf *b, const void *s, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = (b->cap + n) * 2;
        char *p = realloc(b->p, cap);
        if (!p) abort();
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void put_bulk(struct buf *b, const char *s, size_t n)
{
    char hdr[32];
    int h = snprintf(hdr, sizeof hdr, "$%zu\r\n", n);
    put(b, hdr, (size_t)h);
    put(b, s, n);
    put(b, "\r\n", 2);
}

static redisReply *parse(const struct buf *b)
{
    redisReader *rd = redisReaderCreate();
    void *r = NULL;
    if (!rd) abort();
    if (redisReaderFeed(rd, b->p, b->n) != REDIS_OK || redisReaderGetReply(rd, &r) != REDIS_OK ||
        !r)
        __builtin_trap(); /* we wrote valid RESP */
    redisReaderFree(rd);
    return r;
}

/* The fields of an argv (from index first) as a reply. */
static redisReply *argv_reply(const struct syn_q_argv *a, int first)
{
    struct buf b = {0};
    char hdr[32];
    int h = snprintf(hdr, sizeof hdr, "*%d\r\n", a->argc - first);
    put(&b, hdr, (size_t)h);
    for (int i = first; i < a->argc; i++) put_bulk(&b, a->argv[i], a->len[i]);
    redisReply *r = parse(&b);
    free(b.p);
    return r;
}

static int same_float(float x, float y)
{
    return memcmp(&x, &y, sizeof x) == 0;
}

static int same_str(const char *x, const char *y)
{
    return (!x && !y) || (x && y && strcmp(x, y) == 0);
}

static void job_roundtrip(const struct syn_job *j)
{
    struct syn_q_argv a;
    struct syn_job k;
    char err[256];
    if (syn_job_xadd_argv(j, &a) != 0) __builtin_trap(); /* decoded but cannot be written */
    redisReply *r = argv_reply(&a, 3);
    syn_q_argv_reset(&a);
    if (syn_job_decode(r, &k, err, sizeof err) != 0) __builtin_trap();
    const struct syn_sampling_params *s = &j->sampling, *t = &k.sampling;
    int same =
        strcmp(j->id, k.id) == 0 && strcmp(j->model, k.model) == 0 &&
        strcmp(j->reply, k.reply) == 0 && same_str(j->prompt, k.prompt) &&
        same_str(j->messages, k.messages) && j->n_tokens == k.n_tokens &&
        (!j->tokens || memcmp(j->tokens, k.tokens, sizeof *j->tokens * (size_t)j->n_tokens) == 0) &&
        same_float(s->temperature, t->temperature) && same_float(s->top_p, t->top_p) &&
        same_float(s->min_p, t->min_p) &&
        same_float(s->repetition_penalty, t->repetition_penalty) &&
        same_float(s->frequency_penalty, t->frequency_penalty) &&
        same_float(s->presence_penalty, t->presence_penalty) && s->top_k == t->top_k &&
        s->seed == t->seed && j->max_tokens == k.max_tokens && j->n_stop == k.n_stop &&
        j->logprobs == k.logprobs && j->top_logprobs == k.top_logprobs &&
        j->deadline_ms == k.deadline_ms && j->priority == k.priority &&
        j->created_ms == k.created_ms && k.attempt == j->attempt + 1;
    for (int i = 0; same && i < j->n_stop; i++) same = strcmp(j->stop[i], k.stop[i]) == 0;
    if (!same) __builtin_trap();
    syn_job_release(&k);
    freeReplyObject(r);
}

static void event_roundtrip(const struct syn_event *ev)
{
    struct syn_q_argv a;
    struct syn_event e;
    char err[256];
    if (syn_event_xadd_argv("syn:reply:{fuzz}", ev, &a) != 0) __builtin_trap();
    redisReply *r = argv_reply(&a, 6);
    syn_q_argv_reset(&a);
    if (syn_event_decode(r, &e, err, sizeof err) != 0) __builtin_trap();
    if (strcmp(ev->job, e.job) != 0 || ev->pos != e.pos || ev->n_tokens != e.n_tokens ||
        ev->text_len != e.text_len || memcmp(ev->text, e.text, e.text_len) != 0 ||
        !same_str(ev->logprobs, e.logprobs) || ev->finish != e.finish ||
        ev->prompt_tokens != e.prompt_tokens || ev->completion_tokens != e.completion_tokens ||
        !same_str(ev->error, e.error) || !same_str(ev->error_code, e.error_code) ||
        ev->attempt != e.attempt)
        __builtin_trap();
    freeReplyObject(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf items = {0}, resp = {0}, cur = {0};
    size_t n_items = 0;
    /* first pass: the items as RESP elements, counted */
    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == '\n') {
            if (cur.n == 2 && cur.p[0] == '\\' && strchr("i-[", cur.p[1])) {
                const char *el = cur.p[1] == 'i'   ? ":7\r\n"
                                 : cur.p[1] == '-' ? "$-1\r\n"
                                                   : "*0\r\n";
                put(&items, el, strlen(el));
            } else {
                char empty = 0;
                struct buf un = {0};
                for (size_t k = 0; k < cur.n; k++) {
                    char ch = cur.p[k];
                    if (ch == '\\' && k + 1 < cur.n) {
                        char nx = cur.p[++k];
                        ch = nx == '0' ? '\0' : nx == 'n' ? '\n' : nx;
                    }
                    put(&un, &ch, 1);
                }
                put_bulk(&items, un.p ? un.p : &empty, un.n);
                free(un.p);
            }
            n_items++;
            cur.n = 0;
            continue;
        }
        put(&cur, &data[i], 1);
    }
    char hdr[32];
    int h = snprintf(hdr, sizeof hdr, "*%zu\r\n", n_items);
    put(&resp, hdr, (size_t)h);
    if (items.n) put(&resp, items.p, items.n);
    redisReply *r = parse(&resp);

    struct syn_job j;
    struct syn_event ev;
    char err[256];
    if (syn_job_decode(r, &j, err, sizeof err) == 0) {
        job_roundtrip(&j);
        syn_job_release(&j);
    }
    if (syn_event_decode(r, &ev, err, sizeof err) == 0) event_roundtrip(&ev);

    freeReplyObject(r);
    free(items.p);
    free(resp.p);
    free(cur.p);
    return 0;
}
