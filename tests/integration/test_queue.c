/* The Redis Streams job protocol against a real redis-server (one per test, on a unix socket):
 * submit/claim/ack, exclusive delivery, priorities and anti-starvation, reclaiming a dead
 * worker's jobs, touch, dead letters, requeue, deadlines, token events in one round trip,
 * cancellation, the worker registry, the backlog, and the client's behaviour when Redis stops,
 * hangs or restarts with AOF. What is checked is what Redis holds afterwards, read back with a
 * separate plain hiredis connection. */
#include "harness.h"
#include "synapse/error.h"
#include "synapse/queue.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>

#define MODEL "tiny"
#define REPLY "syn:reply:{gw1}"

/* ---- helpers ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct syn_qclient *client(const struct syn_test_redis *r)
{
    struct syn_qclient *c = NULL;
    char err[256];
    int rc = syn_qclient_new(r->url, &c, err, sizeof err);
    if (rc != SYN_OK) FAIL("syn_qclient_new(%s): %d %s", r->url, rc, err);
    CHECK_EQ_INT(syn_q_ensure_groups(c, MODEL), SYN_OK);
    return c;
}

static redisContext *raw(const struct syn_test_redis *r)
{
    redisContext *c = redisConnectUnix(r->sock);
    CHECK(c && !c->err);
    return c;
}

/* A command on the raw connection; fails the test on an I/O error. */
static redisReply *cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r) FAIL("raw command '%s': %s", fmt, c->errstr);
    return r;
}

static long long icmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r) FAIL("raw command '%s': %s", fmt, c->errstr);
    if (r->type != REDIS_REPLY_INTEGER)
        FAIL("'%s' answered type %d (%s)", fmt, r->type,
             r->type == REDIS_REPLY_ERROR ? r->str : "");
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* Pending entries of the group on a stream (XPENDING summary count). */
static long long pending_count(redisContext *c, const char *key)
{
    redisReply *r = cmd(c, "XPENDING %s workers", key);
    CHECK(r->type == REDIS_REPLY_ARRAY && r->elements >= 1);
    long long n = r->element[0]->integer;
    freeReplyObject(r);
    return n;
}

/* The consumer that holds an entry (static buffer). */
static const char *holder(redisContext *c, const char *key, const char *entry)
{
    static char buf[128];
    redisReply *r = cmd(c, "XPENDING %s workers %s %s 1", key, entry, entry);
    buf[0] = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1)
        snprintf(buf, sizeof buf, "%s", r->element[0]->element[1]->str);
    freeReplyObject(r);
    return buf;
}

static void make_job(struct syn_job *j, const char *id, int prio)
{
    syn_job_init(j);
    snprintf(j->id, sizeof j->id, "%s", id);
    snprintf(j->model, sizeof j->model, MODEL);
    snprintf(j->reply, sizeof j->reply, REPLY);
    j->prompt = strdup("Once upon a time");
    j->priority = prio;
    j->sampling.seed = 7;
    j->created_ms = syn_unix_ms();
}

static void submit(struct syn_qclient *c, const char *id, int prio)
{
    struct syn_job j;
    make_job(&j, id, prio);
    int rc = syn_q_submit(c, &j);
    if (rc != SYN_OK) FAIL("submit %s: %d %s", id, rc, syn_qclient_errstr(c));
    CHECK(j.entry[0]);
    syn_job_release(&j);
}

static void release_all(struct syn_job *jobs, int n)
{
    for (int i = 0; i < n; i++) syn_job_release(&jobs[i]);
}

/* Reads the events of a reply stream (XRANGE) into a reply the caller frees. */
static redisReply *events(redisContext *c, const char *key)
{
    redisReply *r = cmd(c, "XRANGE %s - +", key);
    CHECK(r->type == REDIS_REPLY_ARRAY);
    return r;
}

/* ---- the basic cycle ---- */

TEST(queue_redis_roundtrip_of_job_and_event_fields)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    redisContext *x = raw(&r);
    struct syn_job j, d;
    make_job(&j, "chatcmpl-bin", SYN_PRIO_HIGH);
    free(j.prompt);
    j.prompt = strdup("émoji 🦙\nnew line\r\n\ttab \"q\" \\ 中文");
    j.stop[0] = strdup("\n\n");
    j.n_stop = 1;
    j.sampling.temperature = 0.123456789f;
    j.sampling.seed = 18446744073709551615ull;
    CHECK_EQ_INT(syn_q_submit(c, &j), SYN_OK);
    redisReply *rr = cmd(x, "XRANGE syn:{tiny}:jobs:hi - +");
    CHECK_EQ_INT(rr->elements, 1);
    CHECK_EQ_STR(rr->element[0]->element[0]->str, j.entry);
    char err[256];
    CHECK_EQ_INT(syn_job_decode(rr->element[0]->element[1], &d, err, sizeof err), SYN_OK);
    CHECK_EQ_STR(d.prompt, j.prompt);
    CHECK_EQ_STR(d.stop[0], "\n\n");
    CHECK(memcmp(&d.sampling.temperature, &j.sampling.temperature, 4) == 0);
    CHECK(d.sampling.seed == j.sampling.seed);
    CHECK_EQ_INT(d.priority, SYN_PRIO_HIGH);
    syn_job_release(&d);
    freeReplyObject(rr);

    static const char text[] = "nul\0newline\n\xf0\x9f"; /* NUL, newline, half an emoji */
    struct syn_event ev = {0}, e;
    snprintf(ev.job, sizeof ev.job, "chatcmpl-bin");
    ev.pos = 3;
    ev.n_tokens = 2;
    ev.text = text;
    ev.text_len = sizeof text - 1;
    ev.attempt = 1;
    const char *key = REPLY;
    CHECK_EQ_INT(syn_q_post_events(c, &ev, &key, 1), SYN_OK);
    rr = events(x, REPLY);
    CHECK_EQ_INT(rr->elements, 1);
    CHECK_EQ_INT(syn_event_decode(rr->element[0]->element[1], &e, err, sizeof err), SYN_OK);
    CHECK_EQ_INT(e.text_len, sizeof text - 1);
    CHECK(memcmp(e.text, text, e.text_len) == 0);
    CHECK_EQ_INT(e.pos, 3);
    freeReplyObject(rr);
    syn_job_release(&j);
    redisFree(x);
    syn_qclient_free(c);
}

TEST(queue_submit_claim_ack_leaves_streams_empty)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    redisContext *x = raw(&r);
    submit(c, "a", SYN_PRIO_NORMAL);
    submit(c, "b", SYN_PRIO_HIGH);
    submit(c, "c", SYN_PRIO_NORMAL);
    int64_t waiting, pending;
    CHECK_EQ_INT(syn_q_backlog(c, MODEL, &waiting, &pending), SYN_OK);
    CHECK_EQ_INT(waiting, 3);
    CHECK_EQ_INT(pending, 0);

    struct syn_job jobs[8];
    int n = syn_q_claim(c, MODEL, "w1", 8, 0, jobs);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_STR(jobs[0].id, "b"); /* high first */
    CHECK_EQ_INT(jobs[0].priority, SYN_PRIO_HIGH);
    CHECK_EQ_STR(jobs[1].id, "a");
    CHECK_EQ_STR(jobs[2].id, "c");
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(jobs[i].attempt, 1);
        CHECK(jobs[i].entry[0]);
        CHECK_EQ_STR(jobs[i].prompt, "Once upon a time");
    }
    CHECK_EQ_INT(syn_q_backlog(c, MODEL, &waiting, &pending), SYN_OK);
    CHECK_EQ_INT(waiting, 0);
    CHECK_EQ_INT(pending, 3);
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w1", 8, 0, jobs + 3), 0);
    for (int i = 0; i < n; i++) CHECK_EQ_INT(syn_q_ack(c, MODEL, &jobs[i]), SYN_OK);
    CHECK_EQ_INT(icmd(x, "XLEN syn:{tiny}:jobs"), 0);
    CHECK_EQ_INT(icmd(x, "XLEN syn:{tiny}:jobs:hi"), 0);
    CHECK_EQ_INT(pending_count(x, "syn:{tiny}:jobs"), 0);
    CHECK_EQ_INT(pending_count(x, "syn:{tiny}:jobs:hi"), 0);
    CHECK_EQ_INT(syn_q_backlog(c, MODEL, &waiting, &pending), SYN_OK);
    CHECK_EQ_INT(waiting + pending, 0);
    release_all(jobs, n);
    redisFree(x);
    syn_qclient_free(c);
}

/* total_reads_processed from INFO stats: how many socket reads the server has done. */
static long long server_reads(redisContext *x)
{
    redisReply *r = cmd(x, "INFO stats");
    const char *p = strstr(r->str, "total_reads_processed:");
    CHECK(p);
    long long n = atoll(p + strlen("total_reads_processed:"));
    freeReplyObject(r);
    return n;
}

/* Submits n jobs j0, j1, ... (every hi_every-th one high priority, from j0) and claims them all
 * as "w1" into jobs, with p[i] = &jobs[i]. High ones come first (the claim reads high first). */
static void submit_and_claim(struct syn_qclient *c, int n, int hi_every, struct syn_job *jobs,
                             const struct syn_job **p)
{
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "j%d", i);
        submit(c, id, i % hi_every ? SYN_PRIO_NORMAL : SYN_PRIO_HIGH);
    }
    for (int got = 0; got < n;) {
        int k = syn_q_claim(c, MODEL, "w1", n - got, 0, jobs + got);
        CHECK(k > 0);
        got += k;
    }
    for (int i = 0; i < n; i++) p[i] = &jobs[i];
}

TEST(queue_ack_many_acks_both_streams_in_one_round_trip)
{
    enum { N = 40 };
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    redisContext *x = raw(&r);
    struct syn_job jobs[N];
    const struct syn_job *p[N];
    submit_and_claim(c, N, 3, jobs, p);
    long long before = server_reads(x);
    CHECK_EQ_INT(syn_q_ack_many(c, MODEL, p, N), SYN_OK);
    long long reads = server_reads(x) - before - 1; /* minus the second INFO itself */
    if (reads > 2)
        FAIL("acking %d jobs took %lld server reads (one round trip expected)", N, reads);
    CHECK_EQ_INT(icmd(x, "XLEN syn:{tiny}:jobs"), 0);
    CHECK_EQ_INT(icmd(x, "XLEN syn:{tiny}:jobs:hi"), 0);
    CHECK_EQ_INT(pending_count(x, "syn:{tiny}:jobs"), 0);
    CHECK_EQ_INT(pending_count(x, "syn:{tiny}:jobs:hi"), 0);
    /* again: harmless; nothing: nothing; a bad entry or too many: refused before sending */
    CHECK_EQ_INT(syn_q_ack_many(c, MODEL, p, N), SYN_OK);
    CHECK_EQ_INT(syn_q_ack_many(c, MODEL, p, 0), SYN_OK);
    CHECK_EQ_INT(syn_q_ack_many(c, MODEL, p, SYN_Q_ACK_BATCH + 1), SYN_EINVAL);
    char saved[sizeof jobs[0].entry];
    memcpy(saved, jobs[1].entry, sizeof saved);
    snprintf(jobs[1].entry, sizeof jobs[1].entry, "not-an-id");
    CHECK_EQ_INT(syn_q_ack_many(c, MODEL, p, 2), SYN_EINVAL);
    memcpy(jobs[1].entry, saved, sizeof saved);
    release_all(jobs, N);
    redisFree(x);
    syn_qclient_free(c);
}

TEST(queue_two_consumers_never_get_the_same_job)
{
    enum { N = 300 };
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    char id[32];
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "job-%d", i);
        submit(c, id, i % 3 == 0 ? SYN_PRIO_HIGH : SYN_PRIO_NORMAL);
    }
    syn_qclient_free(c);
    /* two processes claim concurrently, each writing the ids it got to its own file */
    pid_t pids[2];
    for (int k = 0; k < 2; k++) {
        pids[k] = fork();
        CHECK(pids[k] >= 0);
        if (pids[k] == 0) {
            char path[600], consumer[16];
            snprintf(path, sizeof path, "%s/got%d", syn_test_tmpdir(), k);
            snprintf(consumer, sizeof consumer, "w%d", k);
            FILE *f = fopen(path, "w");
            struct syn_qclient *cc = NULL;
            if (!f || syn_qclient_new(r.url, &cc, NULL, 0) != SYN_OK) _exit(2);
            struct syn_job jobs[7];
            int empty = 0;
            while (empty < 3) {
                int n = syn_q_claim(cc, MODEL, consumer, 1 + (k * 3 + empty) % 7, 0, jobs);
                if (n < 0) _exit(3);
                empty = n == 0 ? empty + 1 : 0;
                for (int i = 0; i < n; i++) {
                    fprintf(f, "%s\n", jobs[i].id);
                    if (syn_q_ack(cc, MODEL, &jobs[i]) != SYN_OK) _exit(4);
                    syn_job_release(&jobs[i]);
                }
            }
            fclose(f);
            syn_qclient_free(cc);
            _exit(0);
        }
    }
    for (int k = 0; k < 2; k++) {
        int st;
        waitpid(pids[k], &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    static int seen[N];
    int total = 0, per[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        char path[600], line[64];
        snprintf(path, sizeof path, "%s/got%d", syn_test_tmpdir(), k);
        FILE *f = fopen(path, "r");
        CHECK(f);
        while (fgets(line, sizeof line, f)) {
            int i = atoi(line + 4);
            CHECK(i >= 0 && i < N);
            if (seen[i]) FAIL("job-%d was delivered to both consumers", i);
            seen[i] = 1;
            total++;
            per[k]++;
        }
        fclose(f);
    }
    CHECK_EQ_INT(total, N);
    CHECK(per[0] > 0 && per[1] > 0); /* both really took part */
}

/* ---- priorities ---- */

TEST(queue_priority_order_and_anti_starvation)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    char id[32];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "n%d", i);
        submit(c, id, SYN_PRIO_NORMAL);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "h%d", i);
        submit(c, id, SYN_PRIO_HIGH);
    }
    struct syn_job jobs[4];
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 4, 0, jobs), 4);
    CHECK_EQ_STR(jobs[0].id, "h0");
    CHECK_EQ_STR(jobs[1].id, "h1");
    CHECK_EQ_STR(jobs[2].id, "h2");
    CHECK_EQ_STR(jobs[3].id, "n0");
    release_all(jobs, 4);
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 4, 0, jobs), 2);
    CHECK_EQ_STR(jobs[0].id, "n1");
    release_all(jobs, 2);

    /* both streams loaded: a worker with one free slot still serves normal jobs, one claim in
     * every four, and in submission order */
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "H%d", i);
        submit(c, id, SYN_PRIO_HIGH);
        snprintf(id, sizeof id, "N%d", i);
        submit(c, id, SYN_PRIO_NORMAL);
    }
    int since_normal = 0, normals = 0, highs = 0;
    for (int call = 0; call < 40; call++) {
        CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 1, 0, jobs), 1);
        if (jobs[0].id[0] == 'N') {
            snprintf(id, sizeof id, "N%d", normals++);
            CHECK_EQ_STR(jobs[0].id, id);
            since_normal = 0;
        } else {
            snprintf(id, sizeof id, "H%d", highs++);
            CHECK_EQ_STR(jobs[0].id, id);
            if (++since_normal > 3)
                FAIL("claim %d: 4 high jobs in a row with normal waiting", call);
        }
        syn_job_release(&jobs[0]);
    }
    CHECK_EQ_INT(normals, 10);
    CHECK_EQ_INT(highs, 30);
    syn_qclient_free(c);
}

TEST(queue_blocking_claim_after_a_short_one_is_one_read)
{
    /* a worker that has run out of work: after a claim that found fewer jobs than it asked
     * for, its blocking claim is a single read over both streams, which still takes high
     * first and hands back what it cannot hold */
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    redisContext *x = raw(&r);
    struct syn_job jobs[4];
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 4, 0, jobs), 0);
    long long before = server_reads(x);
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 4, 50, jobs), 0);
    long long reads = server_reads(x) - before - 1; /* minus the second INFO itself */
    if (reads != 1) FAIL("a blocking claim after an empty one took %lld server reads", reads);
    /* a non-blocking claim still reads high, then normal */
    before = server_reads(x);
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 4, 0, jobs), 0);
    reads = server_reads(x) - before - 1;
    if (reads != 2) FAIL("a non-blocking claim took %lld server reads (two expected)", reads);

    char id[32];
    for (int i = 0; i < 3; i++) {
        snprintf(id, sizeof id, "n%d", i);
        submit(c, id, SYN_PRIO_NORMAL);
        snprintf(id, sizeof id, "h%d", i);
        submit(c, id, SYN_PRIO_HIGH);
    }
    /* jobs on both streams since the last claim: the blocking read returns at once */
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 4, 2000, jobs), 4);
    CHECK_EQ_STR(jobs[0].id, "h0");
    CHECK_EQ_STR(jobs[1].id, "h1");
    CHECK_EQ_STR(jobs[2].id, "h2");
    CHECK_EQ_STR(jobs[3].id, "n0");
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(jobs[i].attempt, 1);
    release_all(jobs, 4);
    /* n1 and n2 came back in the same read and were handed back, attempt unchanged */
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 4, 0, jobs), 2);
    CHECK_EQ_STR(jobs[0].id, "n1");
    CHECK_EQ_STR(jobs[1].id, "n2");
    CHECK_EQ_INT(jobs[0].attempt, 1);
    CHECK_EQ_INT(jobs[1].attempt, 1);
    release_all(jobs, 2);
    /* that claim took fewer than it asked for: the next blocking one is a single read again */
    before = server_reads(x);
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 4, 50, jobs), 0);
    reads = server_reads(x) - before - 1;
    if (reads != 1) FAIL("a blocking claim after a short one took %lld server reads", reads);
    redisFree(x);
    syn_qclient_free(c);
}

TEST(queue_blocking_claim_waits_and_wakes)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    struct syn_job jobs[4];
    int64_t t0 = now_ms();
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 4, 300, jobs), 0);
    int64_t waited = now_ms() - t0;
    CHECK(waited >= 250 && waited < 1500);

    pid_t pid = fork();
    if (pid == 0) {
        sleep_ms(150);
        struct syn_qclient *cc = NULL;
        if (syn_qclient_new(r.url, &cc, NULL, 0) != SYN_OK) _exit(2);
        submit(cc, "late", SYN_PRIO_NORMAL);
        syn_qclient_free(cc);
        _exit(0);
    }
    t0 = now_ms();
    int n = syn_q_claim(c, MODEL, "w", 4, 3000, jobs); /* longer than the command timeout */
    waited = now_ms() - t0;
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_STR(jobs[0].id, "late");
    CHECK(waited < 2000);
    syn_job_release(&jobs[0]);
    waitpid(pid, NULL, 0);
    syn_qclient_free(c);
}

/* ---- reclaiming, touch, dead letters ---- */

TEST(queue_autoclaim_takes_a_dead_consumers_job)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *a = client(&r), *b = client(&r);
    redisContext *x = raw(&r);
    submit(a, "j1", SYN_PRIO_NORMAL);
    submit(a, "j2", SYN_PRIO_HIGH);
    struct syn_job got[4], re[4];
    CHECK_EQ_INT(syn_q_claim(a, MODEL, "A", 4, 0, got), 2);
    /* A "dies": no touch. Before min_idle nothing moves. */
    CHECK_EQ_INT(syn_q_autoclaim(b, MODEL, "B", 200, 3, 4, re), 0);
    sleep_ms(250);
    int n = syn_q_autoclaim(b, MODEL, "B", 200, 3, 4, re);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(re[0].id, "j2"); /* high first */
    CHECK_EQ_INT(re[0].priority, SYN_PRIO_HIGH);
    CHECK_EQ_STR(re[1].id, "j1");
    for (int i = 0; i < 2; i++) {
        CHECK_EQ_INT(re[i].attempt, 2);
        CHECK_EQ_STR(re[i].prompt, "Once upon a time");
    }
    CHECK_EQ_STR(holder(x, "syn:{tiny}:jobs", re[1].entry), "B");
    CHECK_EQ_STR(holder(x, "syn:{tiny}:jobs:hi", re[0].entry), "B");
    /* B finishes them; A's late ack is harmless */
    for (int i = 0; i < 2; i++) CHECK_EQ_INT(syn_q_ack(b, MODEL, &re[i]), SYN_OK);
    for (int i = 0; i < 2; i++) CHECK_EQ_INT(syn_q_ack(a, MODEL, &got[i]), SYN_OK);
    CHECK_EQ_INT(icmd(x, "XLEN syn:{tiny}:jobs") + icmd(x, "XLEN syn:{tiny}:jobs:hi"), 0);
    CHECK_EQ_INT(syn_q_autoclaim(b, MODEL, "B", 0, 3, 4, re + 2), 0);
    release_all(got, 2);
    release_all(re, 2);
    redisFree(x);
    syn_qclient_free(a);
    syn_qclient_free(b);
}

TEST(queue_touch_prevents_reclaim_and_never_steals_back)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *a = client(&r), *b = client(&r);
    redisContext *x = raw(&r);
    submit(a, "long", SYN_PRIO_NORMAL);
    struct syn_job got, re;
    CHECK_EQ_INT(syn_q_claim(a, MODEL, "A", 1, 0, &got), 1);
    const struct syn_job *held[1] = {&got};
    for (int i = 0; i < 8; i++) {
        sleep_ms(50);
        int owned = -1;
        CHECK_EQ_INT(syn_q_touch_owned(a, MODEL, "A", held, 1, &owned), SYN_OK);
        CHECK_EQ_INT(owned, 1);
        CHECK_EQ_INT(syn_q_autoclaim(b, MODEL, "B", 150, 3, 1, &re), 0);
    }
    /* touching does not count as a delivery */
    redisReply *p = cmd(x, "XPENDING syn:{tiny}:jobs workers - + 10");
    CHECK_EQ_INT(p->element[0]->element[3]->integer, 1);
    freeReplyObject(p);
    /* A stops touching: B takes it over */
    sleep_ms(200);
    CHECK_EQ_INT(syn_q_autoclaim(b, MODEL, "B", 150, 3, 1, &re), 1);
    CHECK_EQ_INT(re.attempt, 2);
    /* A wakes up and touches: it learns the job is gone and does not take it back */
    int owned = -1;
    CHECK_EQ_INT(syn_q_touch_owned(a, MODEL, "A", held, 1, &owned), SYN_OK);
    CHECK_EQ_INT(owned, 0);
    CHECK_EQ_INT(syn_q_touch(a, MODEL, "A", held, 1), SYN_OK);
    CHECK_EQ_STR(holder(x, "syn:{tiny}:jobs", re.entry), "B");
    syn_job_release(&got);
    syn_job_release(&re);
    redisFree(x);
    syn_qclient_free(a);
    syn_qclient_free(b);
}

TEST(queue_dead_letter_after_max_attempts)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    redisContext *x = raw(&r);
    submit(c, "poison", SYN_PRIO_NORMAL);
    struct syn_job j;
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "A", 1, 0, &j), 1);
    CHECK_EQ_INT(j.attempt, 1);
    syn_job_release(&j);
    sleep_ms(60);
    CHECK_EQ_INT(syn_q_autoclaim(c, MODEL, "B", 50, 2, 1, &j), 1);
    CHECK_EQ_INT(j.attempt, 2);
    syn_job_release(&j);
    sleep_ms(60);
    /* the third delivery exceeds max_attempts 2 */
    CHECK_EQ_INT(syn_q_autoclaim(c, MODEL, "C", 50, 2, 1, &j), 0);
    CHECK_EQ_INT(icmd(x, "XLEN syn:{tiny}:jobs"), 0);
    CHECK_EQ_INT(pending_count(x, "syn:{tiny}:jobs"), 0);
    CHECK_EQ_INT(icmd(x, "XLEN syn:{tiny}:dead"), 1);
    redisReply *d = cmd(x, "XRANGE syn:{tiny}:dead - +");
    const redisReply *f = d->element[0]->element[1];
    struct syn_job dj;
    char err[256];
    CHECK_EQ_INT(syn_job_decode(f, &dj, err, sizeof err), SYN_OK); /* the job, intact */
    CHECK_EQ_STR(dj.id, "poison");
    syn_job_release(&dj);
    int found_code = 0, found_attempts = 0;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        if (!strcmp(f->element[i]->str, "code"))
            found_code = !strcmp(f->element[i + 1]->str, "dead_letter");
        if (!strcmp(f->element[i]->str, "attempts"))
            found_attempts = !strcmp(f->element[i + 1]->str, "3");
    }
    CHECK(found_code && found_attempts);
    freeReplyObject(d);
    /* the client waiting for it hears why */
    redisReply *e = events(x, REPLY);
    CHECK_EQ_INT(e->elements, 1);
    struct syn_event ev;
    CHECK_EQ_INT(syn_event_decode(e->element[0]->element[1], &ev, err, sizeof err), SYN_OK);
    CHECK_EQ_STR(ev.job, "poison");
    CHECK_EQ_STR(ev.finish, "error");
    CHECK_EQ_STR(ev.error_code, "dead_letter");
    CHECK(strstr(ev.error, "delivered 3 times"));
    CHECK_EQ_INT(ev.attempt, 3);
    freeReplyObject(e);
    CHECK(icmd(x, "PTTL %s", REPLY) > 0);
    redisFree(x);
    syn_qclient_free(c);
}

TEST(queue_undecodable_and_expired_jobs_are_not_run)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    redisContext *x = raw(&r);
    /* no input field: cannot run */
    freeReplyObject(
        cmd(x, "XADD syn:{tiny}:jobs * id broken model tiny reply %s max_tokens 4", REPLY));
    /* deadline already passed */
    struct syn_job j;
    make_job(&j, "late", SYN_PRIO_NORMAL);
    j.deadline_ms = syn_unix_ms() - 1000;
    CHECK_EQ_INT(syn_q_submit(c, &j), SYN_OK);
    syn_job_release(&j);
    submit(c, "fine", SYN_PRIO_NORMAL);

    struct syn_job got[4];
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 4, 0, got), 1);
    CHECK_EQ_STR(got[0].id, "fine");
    CHECK_EQ_INT(syn_q_ack(c, MODEL, &got[0]), SYN_OK);
    syn_job_release(&got[0]);
    CHECK_EQ_INT(icmd(x, "XLEN syn:{tiny}:jobs"), 0);
    CHECK_EQ_INT(pending_count(x, "syn:{tiny}:jobs"), 0);
    CHECK_EQ_INT(icmd(x, "XLEN syn:{tiny}:dead"), 1); /* the broken one; expiry is no failure */
    redisReply *e = events(x, REPLY);
    CHECK_EQ_INT(e->elements, 2);
    struct syn_event ev;
    char err[256];
    CHECK_EQ_INT(syn_event_decode(e->element[0]->element[1], &ev, err, sizeof err), SYN_OK);
    CHECK_EQ_STR(ev.job, "broken");
    CHECK_EQ_STR(ev.error_code, "bad_request");
    CHECK(strstr(ev.error, "expected exactly one of the fields prompt, messages, tokens"));
    CHECK_EQ_INT(syn_event_decode(e->element[1]->element[1], &ev, err, sizeof err), SYN_OK);
    CHECK_EQ_STR(ev.job, "late");
    CHECK_EQ_STR(ev.finish, "error");
    CHECK_EQ_STR(ev.error_code, "deadline");
    freeReplyObject(e);
    redisFree(x);
    syn_qclient_free(c);
}

TEST(queue_requeue_hands_a_job_back)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    redisContext *x = raw(&r);
    submit(c, "drain-me", SYN_PRIO_HIGH);
    struct syn_job j, k;
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "A", 1, 0, &j), 1);
    CHECK_EQ_INT(syn_q_requeue(c, MODEL, &j), SYN_OK);
    CHECK_EQ_INT(pending_count(x, "syn:{tiny}:jobs:hi"), 0);
    CHECK_EQ_INT(icmd(x, "XLEN syn:{tiny}:jobs:hi"), 1);
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "B", 1, 0, &k), 1);
    CHECK_EQ_STR(k.id, "drain-me");
    CHECK(strcmp(k.entry, j.entry) != 0);
    CHECK_EQ_INT(k.attempt, 2);
    CHECK_EQ_INT(k.priority, SYN_PRIO_HIGH);
    CHECK_EQ_STR(k.prompt, j.prompt);
    CHECK_EQ_INT(syn_q_ack(c, MODEL, &k), SYN_OK);
    CHECK_EQ_INT(icmd(x, "XLEN syn:{tiny}:jobs:hi"), 0);
    syn_job_release(&j);
    syn_job_release(&k);
    redisFree(x);
    syn_qclient_free(c);
}

/* ---- events and cancellation ---- */

TEST(queue_post_events_in_order_in_one_round_trip)
{
    enum { N = 60 };
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    redisContext *x = raw(&r);
    struct syn_event ev[N];
    const char *keys[N];
    char texts[N][16];
    for (int i = 0; i < N; i++) {
        memset(&ev[i], 0, sizeof ev[i]);
        snprintf(ev[i].job, sizeof ev[i].job, "job%d", i % 2);
        ev[i].pos = i / 2;
        ev[i].n_tokens = 1;
        snprintf(texts[i], sizeof texts[i], "t%d\n", i);
        ev[i].text = texts[i];
        ev[i].text_len = strlen(texts[i]);
        ev[i].attempt = 1;
        keys[i] = i % 2 ? "syn:reply:{gw2}" : REPLY;
    }
    ev[N - 1].finish = "stop";
    ev[N - 1].completion_tokens = N / 2;
    long long before = server_reads(x);
    CHECK_EQ_INT(syn_q_post_events(c, ev, keys, N), SYN_OK);
    long long reads = server_reads(x) - before - 1; /* minus the second INFO itself */
    if (reads > 2)
        FAIL("posting %d events took %lld server reads (one round trip expected)", N, reads);

    for (int k = 0; k < 2; k++) {
        redisReply *e = events(x, k ? "syn:reply:{gw2}" : REPLY);
        CHECK_EQ_INT(e->elements, N / 2);
        for (int i = 0; i < N / 2; i++) {
            struct syn_event d;
            char err[256];
            CHECK_EQ_INT(syn_event_decode(e->element[i]->element[1], &d, err, sizeof err), SYN_OK);
            int src = 2 * i + k;
            CHECK_EQ_INT(d.pos, i);
            CHECK_EQ_INT(d.text_len, strlen(texts[src]));
            CHECK(memcmp(d.text, texts[src], d.text_len) == 0);
            if (src == N - 1) CHECK_EQ_STR(d.finish, "stop");
        }
        freeReplyObject(e);
        long long ttl = icmd(x, "PTTL %s", k ? "syn:reply:{gw2}" : REPLY);
        CHECK(ttl > 3500000 && ttl <= 3600000);
    }
    /* the same events one call each: one read per call, as a contrast */
    before = server_reads(x);
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(syn_q_post_events(c, &ev[i], &keys[i], 1), SYN_OK);
    CHECK(server_reads(x) - before - 1 >= 10);
    /* an invalid event is dropped, the rest still go */
    struct syn_event two[2] = {ev[0], ev[1]};
    two[0].pos = -1;
    CHECK_EQ_INT(syn_q_post_events(c, two, keys, 2), SYN_OK);
    CHECK_EQ_INT(icmd(x, "XLEN syn:reply:{gw2}"), N / 2 + 5 + 1);
    redisFree(x);
    syn_qclient_free(c);
}

TEST(queue_cancel_and_cancelled)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    redisContext *sub = raw(&r), *x = raw(&r);
    freeReplyObject(cmd(sub, "SUBSCRIBE syn:cancel"));
    CHECK_EQ_INT(syn_q_cancel(c, "chatcmpl-1"), SYN_OK);
    CHECK_EQ_INT(syn_q_cancel(c, "bad id"), SYN_EINVAL);
    void *m = NULL;
    CHECK(redisGetReply(sub, &m) == REDIS_OK);
    redisReply *msg = m;
    CHECK(msg->type == REDIS_REPLY_ARRAY && msg->elements == 3);
    CHECK_EQ_STR(msg->element[0]->str, "message");
    CHECK_EQ_STR(msg->element[2]->str, "chatcmpl-1");
    freeReplyObject(msg);
    const char *ids[3] = {"chatcmpl-2", "chatcmpl-1", "not valid"};
    int out[3] = {-1, -1, -1};
    CHECK_EQ_INT(syn_q_cancelled(c, ids, 3, out), SYN_OK);
    CHECK_EQ_INT(out[0], 0);
    CHECK_EQ_INT(out[1], 1);
    CHECK_EQ_INT(out[2], 0);
    long long ttl = icmd(x, "TTL syn:cancel:{chatcmpl-1}");
    CHECK(ttl > 3500 && ttl <= 3600);
    redisFree(sub);
    redisFree(x);
    syn_qclient_free(c);
}

TEST(queue_post_events_check_is_one_round_trip)
{
    /* a worker's step: its events and "which of my jobs were cancelled?" in one round trip */
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    redisContext *x = raw(&r);
    CHECK_EQ_INT(syn_q_cancel(c, "job1"), SYN_OK);
    struct syn_event ev[16];
    const char *keys[16], *ids[17];
    char names[17][16];
    for (int i = 0; i < 16; i++) {
        memset(&ev[i], 0, sizeof ev[i]);
        snprintf(names[i], sizeof names[i], "job%d", i);
        snprintf(ev[i].job, sizeof ev[i].job, "%s", names[i]);
        ev[i].n_tokens = 1;
        ev[i].text = "x";
        ev[i].text_len = 1;
        ev[i].attempt = 1;
        keys[i] = REPLY;
        ids[i] = names[i];
    }
    ids[16] = "not valid"; /* skipped, answered 0, the others still checked */
    int out[17];
    memset(out, 0xff, sizeof out);
    long long before = server_reads(x);
    CHECK_EQ_INT(syn_q_post_events_check(c, ev, keys, 16, ids, 17, out), SYN_OK);
    long long reads = server_reads(x) - before - 1; /* minus the second INFO itself */
    if (reads > 2) FAIL("16 events and 17 checks took %lld server reads (one expected)", reads);
    for (int i = 0; i < 17; i++) CHECK_EQ_INT(out[i], i == 1);
    CHECK_EQ_INT(icmd(x, "XLEN %s", REPLY), 16);
    /* checks alone, and events alone, as syn_q_cancelled and syn_q_post_events answer them */
    memset(out, 0xff, sizeof out);
    CHECK_EQ_INT(syn_q_post_events_check(c, NULL, NULL, 0, ids, 3, out), SYN_OK);
    CHECK(out[0] == 0 && out[1] == 1 && out[2] == 0);
    CHECK_EQ_INT(syn_q_post_events_check(c, ev, keys, 2, NULL, 0, NULL), SYN_OK);
    CHECK_EQ_INT(icmd(x, "XLEN %s", REPLY), 18);
    CHECK_EQ_INT(syn_q_post_events_check(c, ev, keys, 1, NULL, 1, out), SYN_EINVAL);
    redisFree(x);
    syn_qclient_free(c);
}

TEST(queue_post_step_acks_with_events_and_reports_acks_apart)
{
    /* a worker's step: its events, the acks of jobs that finished in an earlier step, and the
     * cancellation checks, in one round trip; a failing ack is reported apart from the events */
    enum { N = 6 };
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    redisContext *x = raw(&r);
    struct syn_job jobs[N];
    const struct syn_job *p[N];
    submit_and_claim(c, N, 2, jobs, p);
    CHECK_EQ_INT(syn_q_cancel(c, "j5"), SYN_OK);
    struct syn_event ev[2];
    const char *keys[2] = {REPLY, REPLY}, *ids[2] = {"j4", "j5"};
    for (int i = 0; i < 2; i++) {
        memset(&ev[i], 0, sizeof ev[i]);
        snprintf(ev[i].job, sizeof ev[i].job, "j%d", 4 + i);
        ev[i].n_tokens = 1;
        ev[i].text = "x";
        ev[i].text_len = 1;
        ev[i].attempt = 1;
    }
    int out[2] = {-1, -1};
    struct syn_q_step_out o = {.ev = ev,
                               .reply_keys = keys,
                               .n_ev = 2,
                               .acks = p,
                               .n_acks = 4,
                               .check_ids = ids,
                               .n_check = 2,
                               .cancelled = out};
    long long before = server_reads(x);
    CHECK_EQ_INT(syn_q_post_step(c, MODEL, &o), SYN_OK);
    long long reads = server_reads(x) - before - 1; /* minus the second INFO itself */
    if (reads > 2)
        FAIL("2 events, 4 acks and 2 checks took %lld server reads (one expected)", reads);
    CHECK_EQ_INT(o.acks_done, 1);
    CHECK(out[0] == 0 && out[1] == 1);
    CHECK_EQ_INT(icmd(x, "XLEN %s", REPLY), 2);
    CHECK_EQ_INT(pending_count(x, "syn:{tiny}:jobs") + pending_count(x, "syn:{tiny}:jobs:hi"), 2);
    /* an ack that fails (its stream replaced by a string: WRONGTYPE) leaves acks_done 0, while
     * the events still count as posted; syn_q_ack_many reports it as an error */
    freeReplyObject(cmd(x, "DEL syn:{tiny}:jobs"));
    freeReplyObject(cmd(x, "SET syn:{tiny}:jobs x"));
    o.acks = p + 4; /* the claim took high first: jobs 4 and 5 are on the normal stream */
    o.n_acks = 2;
    CHECK_EQ_INT(jobs[4].priority, SYN_PRIO_NORMAL);
    CHECK_EQ_INT(syn_q_post_step(c, MODEL, &o), SYN_OK);
    CHECK_EQ_INT(o.acks_done, 0);
    CHECK_EQ_INT(icmd(x, "XLEN %s", REPLY), 4);
    CHECK(syn_q_ack_many(c, MODEL, p + 5, 1) != SYN_OK);
    CHECK_EQ_INT(jobs[0].priority, SYN_PRIO_HIGH);
    CHECK_EQ_INT(syn_q_ack_many(c, MODEL, p, 1), SYN_OK); /* acked before: harmless again */
    /* nothing at all: nothing sent, acks_done 1 */
    struct syn_q_step_out none = {0};
    CHECK_EQ_INT(syn_q_post_step(c, MODEL, &none), SYN_OK);
    CHECK_EQ_INT(none.acks_done, 1);
    release_all(jobs, N);
    redisFree(x);
    syn_qclient_free(c);
}

/* ---- registry and backlog ---- */

TEST(queue_registry_heartbeat_list_and_expiry)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    redisContext *x = raw(&r);
    struct syn_worker_info w[2], out[4];
    for (int i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof w[i]);
        snprintf(w[i].id, sizeof w[i].id, "worker-%d", i);
        snprintf(w[i].model, sizeof w[i].model, MODEL);
        w[i].state = SYN_WORKER_READY;
        w[i].pid = 1000 + i;
        w[i].max_seqs = 8;
        w[i].running = 3;
        w[i].free_slots = 5;
        w[i].kv_blocks_free = 100;
        w[i].kv_blocks_total = 256;
        w[i].heartbeat_ms = syn_unix_ms() + i;
        w[i].started_ms = 1700000000000;
        w[i].cold_start_s = 1.0 / 3.0;
        w[i].jobs_done = 12345678901234ull;
        w[i].tokens_out = 99;
        CHECK_EQ_INT(syn_q_heartbeat(c, &w[i], i == 0 ? 5000 : 300), SYN_OK);
    }
    CHECK_EQ_INT(syn_q_list_workers(c, MODEL, out, 4), 2);
    CHECK_EQ_STR(out[0].id, "worker-0");
    CHECK_EQ_STR(out[1].id, "worker-1");
    for (int i = 0; i < 2; i++) { /* every field, exactly */
        CHECK_EQ_STR(out[i].model, w[i].model);
        CHECK_EQ_INT(out[i].state, w[i].state);
        CHECK_EQ_INT(out[i].pid, w[i].pid);
        CHECK_EQ_INT(out[i].max_seqs, w[i].max_seqs);
        CHECK_EQ_INT(out[i].running, w[i].running);
        CHECK_EQ_INT(out[i].free_slots, w[i].free_slots);
        CHECK_EQ_INT(out[i].kv_blocks_free, w[i].kv_blocks_free);
        CHECK_EQ_INT(out[i].kv_blocks_total, w[i].kv_blocks_total);
        CHECK_EQ_INT(out[i].heartbeat_ms, w[i].heartbeat_ms);
        CHECK_EQ_INT(out[i].started_ms, w[i].started_ms);
        CHECK(out[i].cold_start_s == w[i].cold_start_s);
        CHECK(out[i].jobs_done == w[i].jobs_done);
        CHECK(out[i].tokens_out == w[i].tokens_out);
    }
    CHECK_EQ_INT(syn_q_list_workers(c, MODEL, out, 1), 1); /* cap respected */
    CHECK_EQ_INT(syn_q_list_workers(c, "other", out, 4), 0);
    /* worker-1 stops heartbeating: gone after its TTL, and from the set too */
    sleep_ms(450);
    CHECK_EQ_INT(syn_q_list_workers(c, MODEL, out, 4), 1);
    CHECK_EQ_STR(out[0].id, "worker-0");
    CHECK_EQ_INT(icmd(x, "ZCARD syn:{tiny}:workers"), 1);
    CHECK_EQ_INT(icmd(x, "EXISTS syn:worker:{worker-1}"), 0);
    CHECK(icmd(x, "PTTL syn:worker:{worker-0}") > 4000);
    CHECK_EQ_INT(syn_q_unregister(c, &w[0]), SYN_OK);
    CHECK_EQ_INT(syn_q_list_workers(c, MODEL, out, 4), 0);
    CHECK_EQ_INT(icmd(x, "EXISTS syn:worker:{worker-0}"), 0);
    redisFree(x);
    syn_qclient_free(c);
}

TEST(queue_backlog_counts_waiting_and_pending)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    redisContext *x = raw(&r);
    int64_t waiting = -1, pending = -1;
    CHECK_EQ_INT(syn_q_backlog(c, "nothing-here", &waiting, &pending), SYN_OK);
    CHECK_EQ_INT(waiting, 0);
    CHECK_EQ_INT(pending, 0);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "b%d", i);
        submit(c, id, i < 2 ? SYN_PRIO_HIGH : SYN_PRIO_NORMAL);
    }
    struct syn_job j[3];
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 3, 0, j), 3);
    CHECK_EQ_INT(syn_q_ack(c, MODEL, &j[0]), SYN_OK);
    CHECK_EQ_INT(syn_q_backlog(c, MODEL, &waiting, &pending), SYN_OK);
    CHECK_EQ_INT(waiting, 2);
    CHECK_EQ_INT(pending, 2);
    /* deleting a waiting entry makes Redis 7.0 report lag as nil: XLEN - pending instead */
    redisReply *last = cmd(x, "XREVRANGE syn:{tiny}:jobs + - COUNT 1");
    freeReplyObject(cmd(x, "XDEL syn:{tiny}:jobs %s", last->element[0]->element[0]->str));
    freeReplyObject(last);
    CHECK_EQ_INT(syn_q_backlog(c, MODEL, &waiting, &pending), SYN_OK);
    CHECK_EQ_INT(waiting, 1);
    CHECK_EQ_INT(pending, 2);
    release_all(j, 3);
    redisFree(x);
    syn_qclient_free(c);
}

/* ---- the connection ---- */

TEST(queue_client_urls)
{
    struct syn_qclient *c = NULL;
    char err[256];
    const char *bad[] = {"",
                         "http://x:1",
                         "redis://",
                         "redis://h:0",
                         "redis://h:99999",
                         "redis://h:12ab",
                         "redis://h/x",
                         "unix://relative",
                         "h:",
                         "[::1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        int rc = syn_qclient_new(bad[i], &c, err, sizeof err);
        if (rc != SYN_EINVAL || c) FAIL("'%s' accepted (rc %d)", bad[i], rc);
        if (bad[i][0] && !strstr(err, "expected redis://")) FAIL("'%s': message %s", bad[i], err);
    }
    CHECK_EQ_INT(syn_qclient_new("rediss://h:6379", &c, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(strstr(err, "TLS"));
    /* nothing listens: SYN_EIO at once, but the client exists and keeps trying */
    char path[700];
    snprintf(path, sizeof path, "unix://%s/none.sock", syn_test_tmpdir());
    CHECK_EQ_INT(syn_qclient_new(path, &c, err, sizeof err), SYN_EIO);
    CHECK(c);
    CHECK(strstr(err, "cannot connect to Redis at unix:"));
    CHECK(syn_qclient_ctx(c) == NULL);
    CHECK_EQ_INT(syn_qclient_errors(c), 1);
    syn_qclient_free(c);
    CHECK_EQ_INT(syn_qclient_new("redis://127.0.0.1:1/2", &c, err, sizeof err), SYN_EIO);
    CHECK(strstr(err, "127.0.0.1:1"));
    syn_qclient_free(c);
    CHECK_EQ_INT(syn_qclient_new("redis://:pw@[::1]:1", &c, err, sizeof err), SYN_EIO);
    CHECK(strstr(err, "::1:1"));
    syn_qclient_free(c);

    /* a database number selects it */
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    snprintf(path, sizeof path, "%s?db=3", r.url);
    CHECK_EQ_INT(syn_qclient_new(path, &c, err, sizeof err), SYN_OK);
    submit(c, "in-db3", SYN_PRIO_NORMAL);
    redisContext *x = raw(&r);
    CHECK_EQ_INT(icmd(x, "EXISTS syn:{tiny}:jobs"), 0);
    freeReplyObject(cmd(x, "SELECT 3"));
    CHECK_EQ_INT(icmd(x, "XLEN syn:{tiny}:jobs"), 1);
    redisFree(x);
    syn_qclient_free(c);
}

TEST(queue_stopped_redis_gives_eio_fast_and_client_recovers)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *c = client(&r);
    submit(c, "before", SYN_PRIO_NORMAL);
    syn_test_redis_stop(&r);

    struct syn_job j[2];
    int64_t t0 = now_ms();
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 2, 0, j), SYN_EIO);
    CHECK(strlen(syn_qclient_errstr(c)) > 0);
    struct syn_job down;
    make_job(&down, "while-down", SYN_PRIO_NORMAL);
    for (int i = 0; i < 20; i++) {
        CHECK_EQ_INT(syn_q_submit(c, &down), SYN_EIO);
        CHECK(syn_qclient_ensure(c) == SYN_EIO);
        int64_t w, p;
        CHECK_EQ_INT(syn_q_backlog(c, MODEL, &w, &p), SYN_EIO);
    }
    CHECK(now_ms() - t0 < 500); /* no waiting on a dead server */
    syn_job_release(&down);
    CHECK(syn_qclient_errors(c) >= 1);

    /* back (empty: no AOF): the client reconnects on its own, recreates the group on claim */
    syn_test_redis_restart(&r);
    t0 = now_ms();
    while (syn_qclient_ensure(c) != SYN_OK) {
        if (now_ms() - t0 > 3000) FAIL("no reconnect within 3 s: %s", syn_qclient_errstr(c));
        sleep_ms(20);
    }
    CHECK_EQ_INT(syn_qclient_reconnects(c), 1);
    submit(c, "after", SYN_PRIO_NORMAL);
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 2, 0, j), 1);
    CHECK_EQ_STR(j[0].id, "after");
    syn_job_release(&j[0]);

    /* a hung server (SIGSTOP): calls time out instead of blocking forever */
    syn_qclient_set_timeout(c, 300);
    kill(r.pid, SIGSTOP);
    t0 = now_ms();
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "w", 2, 0, j), SYN_EIO);
    int64_t took = now_ms() - t0;
    CHECK(took >= 250 && took < 1500);
    CHECK(strstr(syn_qclient_errstr(c), "lost the connection"));
    kill(r.pid, SIGCONT);
    t0 = now_ms();
    int n;
    while ((n = syn_q_claim(c, MODEL, "w", 2, 0, j)) < 0) {
        if (now_ms() - t0 > 3000) FAIL("no recovery after SIGCONT: %s", syn_qclient_errstr(c));
        sleep_ms(20);
    }
    CHECK_EQ_INT(n, 0);
    syn_qclient_free(c);
}

TEST(queue_restart_with_aof_keeps_jobs_and_client_reconnects)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 1);
    struct syn_qclient *c = client(&r);
    submit(c, "j1", SYN_PRIO_NORMAL);
    submit(c, "j2", SYN_PRIO_HIGH);
    submit(c, "j3", SYN_PRIO_NORMAL);
    struct syn_job held, j[4];
    CHECK_EQ_INT(syn_q_claim(c, MODEL, "A", 1, 0, &held), 1);
    CHECK_EQ_STR(held.id, "j2");
    syn_test_redis_restart(&r);

    /* the same client, no help from the caller: the first call after the restart works */
    int n = syn_q_claim(c, MODEL, "A", 4, 0, j);
    if (n != 2) FAIL("first claim after the restart: %d (%s)", n, syn_qclient_errstr(c));
    CHECK_EQ_STR(j[0].id, "j1");
    CHECK_EQ_STR(j[1].id, "j3");
    CHECK_EQ_INT(syn_qclient_reconnects(c), 1);
    release_all(j, 2);
    /* the pending entry survived too: reclaimable as a second attempt */
    sleep_ms(60);
    CHECK_EQ_INT(syn_q_autoclaim(c, MODEL, "B", 50, 3, 4, j), 3);
    release_all(j, 3);
    syn_job_release(&held);
    syn_qclient_free(c);
}
