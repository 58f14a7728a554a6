/*
 * The worker against a real redis-server: jobs through several workers complete exactly once with
 * the same text as `synapse generate`; a SIGKILLed worker's 50 streaming jobs are finished by
 * another with every position delivered once (after the gateway's dedup by position); jobs
 * survive a Redis restart (AOF); cancellation, deadlines and the dead-letter stream; continuous
 * batching lets a new job join a running batch; idle workers exit.
 */
#include "harness.h"
#include "synapse/queue.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

/* The reply stream key of a pretend gateway named g (static buffer, 4 in rotation). */
static const char *rk(const char *g)
{
    static char buf[4][128];
    static int k;
    char *b = buf[k++ & 3];
    syn_q_key_reply(b, 128, g);
    return b;
}

static const char *stories(void)
{
    return syn_test_shared("models/stories260K.gguf");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Starts `synapse worker` on stories260K with extra flags; returns its pid. */
static pid_t start_worker(const struct syn_test_redis *r, const char *id, const char *extra)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "exec %s worker --model %s --redis %s --name stories --id %s --heartbeat-ms 100 "
             "--reclaim-ms 600 --threads 1 %s >>%s/worker-%s.log 2>&1",
             syn_test_bin(), stories(), r->url, id, extra ? extra : "", syn_test_tmpdir(), id);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static redisContext *connect_redis(const struct syn_test_redis *r)
{
    redisContext *c = redisConnectUnix(r->sock);
    if (!c || c->err) FAIL("cannot connect to redis at %s", r->sock);
    return c;
}

/* Waits until the registry shows a ready worker with this id (10 s at most). */
static void wait_ready(const struct syn_test_redis *r, const char *id)
{
    redisContext *c = connect_redis(r);
    for (int i = 0; i < 1000; i++) {
        char key[160];
        syn_q_key_worker(key, sizeof key, id);
        redisReply *rep = redisCommand(c, "HGET %s state", key);
        int ok = rep && rep->type == REDIS_REPLY_STRING;
        if (rep) freeReplyObject(rep);
        if (ok) {
            redisFree(c);
            return;
        }
        usleep(10000);
    }
    FAIL("worker %s did not become ready", id);
}

/* Polls XLEN of key until it reaches n events (or tries x nap_us passes). */
static void wait_events(redisContext *c, const char *key, long long n, int tries, int nap_us)
{
    for (int i = 0; i < tries; i++) {
        redisReply *rep = redisCommand(c, "XLEN %s", key);
        long long len = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0;
        freeReplyObject(rep);
        if (len >= n) return;
        usleep((useconds_t)nap_us);
    }
}

static void submit(struct syn_qclient *q, const char *id, const char *prompt, int max_tokens,
                   float temp, uint64_t seed, const char *reply)
{
    struct syn_job j;
    syn_job_init(&j);
    snprintf(j.id, sizeof j.id, "%s", id);
    snprintf(j.model, sizeof j.model, "stories");
    snprintf(j.reply, sizeof j.reply, "%s", reply);
    j.prompt = strdup(prompt);
    j.max_tokens = max_tokens;
    j.sampling.temperature = temp;
    j.sampling.seed = seed;
    j.created_ms = syn_unix_ms();
    int rc = syn_q_submit(q, &j);
    if (rc) FAIL("submit %s: %d", id, rc);
    syn_job_release(&j);
}

/* What a gateway keeps per request: text by position, with duplicates dropped. */
struct collected {
    char id[101];
    char text[8192];
    size_t len;
    int next_pos; /* next position expected */
    int dups;     /* events dropped as duplicates */
    int gaps;     /* events that skipped positions (must stay 0) */
    char finish[32];
    char code[64];
    int completion_tokens;
};

/* Reads the reply stream until every job has finished or timeout_s passes. */
static void collect(const struct syn_test_redis *r, const char *reply, struct collected *cs, int n,
                    double timeout_s)
{
    redisContext *c = connect_redis(r);
    char last[64] = "0";
    double t0 = now_s();
    int done = 0;
    while (done < n && now_s() - t0 < timeout_s) {
        redisReply *rep = redisCommand(c, "XREAD COUNT 1000 BLOCK 200 STREAMS %s %s", reply, last);
        if (!rep) FAIL("XREAD failed");
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1) {
            redisReply *entries = rep->element[0]->element[1];
            for (size_t e = 0; e < entries->elements; e++) {
                redisReply *en = entries->element[e];
                snprintf(last, sizeof last, "%s", en->element[0]->str);
                struct syn_event ev;
                char err[256];
                if (syn_event_decode(en->element[1], &ev, err, sizeof err)) FAIL("event: %s", err);
                struct collected *k = NULL;
                for (int i = 0; i < n; i++)
                    if (!strcmp(cs[i].id, ev.job)) k = &cs[i];
                if (!k || k->finish[0]) continue;
                if (ev.pos + ev.n_tokens <= k->next_pos &&
                    !(ev.finish && ev.n_tokens == 0 && ev.pos == k->next_pos)) {
                    k->dups++;
                    continue;
                }
                if (ev.pos != k->next_pos) k->gaps++;
                memcpy(k->text + k->len, ev.text, ev.text_len);
                k->len += ev.text_len;
                k->text[k->len] = 0;
                k->next_pos = ev.pos + ev.n_tokens;
                if (ev.finish) {
                    snprintf(k->finish, sizeof k->finish, "%s", ev.finish);
                    snprintf(k->code, sizeof k->code, "%s", ev.error_code ? ev.error_code : "");
                    k->completion_tokens = ev.completion_tokens;
                    done++;
                }
            }
        }
        freeReplyObject(rep);
    }
    redisFree(c);
}

static char *generate_text(const char *prompt, int n, float temp, uint64_t seed)
{
    char *out = NULL;
    int rc =
        syn_test_sh(&out, "%s generate -m %s -p '%s' -n %d --temp %g --seed %llu -t 1",
                    syn_test_bin(), stories(), prompt, n, (double)temp, (unsigned long long)seed);
    CHECK_EQ_INT(rc, 0);
    size_t l = strlen(out);
    if (l && out[l - 1] == '\n') out[l - 1] = 0;
    return out;
}

static const char *prompts[] = {"Once upon a time", "The little dog", "Lily and Ben",
                                "One day",          "The sun was",    "Tim had a"};

TEST_TIMEOUT(worker_jobs_over_several_workers_match_generate, 120)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    pid_t w1 = start_worker(&r, "w1", "--max-seqs 8");
    pid_t w2 = start_worker(&r, "w2", "--max-seqs 8");
    wait_ready(&r, "w1");
    wait_ready(&r, "w2");
    struct syn_qclient *q;
    char err[256];
    CHECK_EQ_INT(syn_qclient_new(r.url, &q, err, sizeof err), 0);
    enum { N = 24 };
    struct collected cs[N];
    memset(cs, 0, sizeof cs);
    for (int i = 0; i < N; i++) {
        snprintf(cs[i].id, sizeof cs[i].id, "job-%d", i);
        submit(q, cs[i].id, prompts[i % 6], 40, i % 2 ? 0.8f : 0.0f, 1000 + i, rk("t"));
    }
    collect(&r, rk("t"), cs, N, 60);
    for (int i = 0; i < N; i++) {
        if (strcmp(cs[i].finish, "stop") && strcmp(cs[i].finish, "length"))
            FAIL("job %d finished '%s'", i, cs[i].finish);
        CHECK_EQ_INT(cs[i].dups, 0);
        CHECK_EQ_INT(cs[i].gaps, 0);
        char *want = generate_text(prompts[i % 6], 40, i % 2 ? 0.8f : 0.0f, 1000 + i);
        CHECK_EQ_STR(cs[i].text, want);
        free(want);
    }
    /* everything acknowledged: nothing pending, nothing left */
    int64_t waiting, pending;
    CHECK_EQ_INT(syn_q_backlog(q, "stories", &waiting, &pending), 0);
    CHECK_EQ_INT(waiting, 0);
    CHECK_EQ_INT(pending, 0);
    syn_qclient_free(q);
    kill(w1, SIGTERM);
    kill(w2, SIGTERM);
    int st;
    waitpid(w1, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    waitpid(w2, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST_TIMEOUT(worker_sigkill_loses_nothing, 120)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    pid_t w1 = start_worker(&r, "victim", "--max-seqs 64");
    wait_ready(&r, "victim");
    struct syn_qclient *q;
    char err[256];
    CHECK_EQ_INT(syn_qclient_new(r.url, &q, err, sizeof err), 0);
    enum { N = 50 };
    struct collected cs[N];
    memset(cs, 0, sizeof cs);
    for (int i = 0; i < N; i++) {
        snprintf(cs[i].id, sizeof cs[i].id, "k-%d", i);
        submit(q, cs[i].id, prompts[i % 6], 200, 0.9f, 77 + i, rk("k"));
    }
    /* let them get going, then kill the worker mid-stream */
    redisContext *c = connect_redis(&r);
    wait_events(c, rk("k"), 501, 500, 10000);
    redisFree(c);
    kill(w1, SIGKILL);
    waitpid(w1, NULL, 0);
    pid_t w2 = start_worker(&r, "rescuer", "--max-seqs 64");
    collect(&r, rk("k"), cs, N, 90);
    int redone = 0;
    for (int i = 0; i < N; i++) {
        if (strcmp(cs[i].finish, "stop") && strcmp(cs[i].finish, "length"))
            FAIL("job %d finished '%s' (%s)", i, cs[i].finish, cs[i].code);
        CHECK_EQ_INT(cs[i].gaps, 0);
        CHECK_EQ_INT(cs[i].next_pos, cs[i].completion_tokens);
        redone += cs[i].dups > 0;
    }
    CHECK(redone > 0); /* the rescuer really re-ran jobs the victim had started */
    /* the text equals an uninterrupted run */
    for (int i = 0; i < N; i += 7) {
        char *want = generate_text(prompts[i % 6], 200, 0.9f, 77 + i);
        CHECK_EQ_STR(cs[i].text, want);
        free(want);
    }
    syn_qclient_free(q);
    kill(w2, SIGTERM);
    waitpid(w2, NULL, 0);
}

TEST_TIMEOUT(worker_jobs_survive_redis_restart, 90)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 1);
    struct syn_qclient *q;
    char err[256];
    CHECK_EQ_INT(syn_qclient_new(r.url, &q, err, sizeof err), 0);
    CHECK_EQ_INT(syn_q_ensure_groups(q, "stories"), 0);
    enum { N = 10 };
    struct collected cs[N];
    memset(cs, 0, sizeof cs);
    for (int i = 0; i < N; i++) {
        snprintf(cs[i].id, sizeof cs[i].id, "aof-%d", i);
        submit(q, cs[i].id, prompts[i % 6], 20, 0.0f, 5, rk("a"));
    }
    syn_test_redis_restart(&r); /* no worker yet: the jobs only live in Redis */
    pid_t w = start_worker(&r, "after", "");
    collect(&r, rk("a"), cs, N, 60);
    for (int i = 0; i < N; i++) CHECK(cs[i].finish[0] && strcmp(cs[i].finish, "error") != 0);
    /* and a restart while the worker runs: it reconnects and keeps serving */
    syn_test_redis_restart(&r);
    struct collected more = {.id = "aof-late"};
    syn_qclient_free(q);
    CHECK_EQ_INT(syn_qclient_new(r.url, &q, err, sizeof err), 0);
    submit(q, more.id, "Once upon a time", 10, 0.0f, 1, rk("a2"));
    collect(&r, rk("a2"), &more, 1, 30);
    CHECK_EQ_STR(more.finish, "length");
    syn_qclient_free(q);
    kill(w, SIGTERM);
    waitpid(w, NULL, 0);
}

TEST_TIMEOUT(worker_cancel_deadline_and_dead_letter, 90)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *q;
    char err[256];
    CHECK_EQ_INT(syn_qclient_new(r.url, &q, err, sizeof err), 0);
    CHECK_EQ_INT(syn_q_ensure_groups(q, "stories"), 0);
    /* a job whose deadline has passed is never run */
    struct syn_job j;
    syn_job_init(&j);
    snprintf(j.id, sizeof j.id, "late");
    snprintf(j.model, sizeof j.model, "stories");
    snprintf(j.reply, sizeof j.reply, rk("c"));
    j.prompt = strdup("Once upon a time");
    j.max_tokens = 50;
    j.deadline_ms = syn_unix_ms() - 1;
    CHECK_EQ_INT(syn_q_submit(q, &j), 0);
    syn_job_release(&j);
    pid_t w = start_worker(&r, "cw", "");
    struct collected late = {.id = "late"};
    collect(&r, rk("c"), &late, 1, 20);
    CHECK_EQ_STR(late.finish, "error");
    CHECK_EQ_STR(late.code, "deadline");
    CHECK_EQ_INT(late.completion_tokens, 0);

    /* cancellation: a long job stops within a step or two of the cancel */
    struct collected cj = {.id = "cancel-me"};
    submit(q, "cancel-me", "Once upon a time", 1000, 0.8f, 3, rk("c2"));
    redisContext *c = connect_redis(&r);
    wait_events(c, rk("c2"), 5, 500, 2000);
    CHECK_EQ_INT(syn_q_cancel(q, "cancel-me"), 0);
    collect(&r, rk("c2"), &cj, 1, 20);
    CHECK_EQ_STR(cj.finish, "cancelled");
    CHECK(cj.completion_tokens < 1000);
    redisFree(c);
    kill(w, SIGTERM);
    waitpid(w, NULL, 0);
}

TEST_TIMEOUT(worker_poison_job_goes_to_dead_letter, 120)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *q;
    char err[256];
    CHECK_EQ_INT(syn_qclient_new(r.url, &q, err, sizeof err), 0);
    CHECK_EQ_INT(syn_q_ensure_groups(q, "stories"), 0);
    submit(q, "poison", "CRASH-ME please", 20, 0.0f, 1, rk("p"));
    /* fault injection: the worker aborts on any prompt containing the marker; a new worker is
     * started each time one dies, as a pool would */
    setenv("SYNAPSE_FAULT_CRASH_PROMPT", "CRASH-ME", 1);
    struct collected pj = {.id = "poison"};
    double t0 = now_s();
    int starts = 0;
    while (!pj.finish[0] && now_s() - t0 < 60) {
        char id[32];
        snprintf(id, sizeof id, "p%d", starts++);
        pid_t w = start_worker(&r, id, "--max-attempts 3");
        collect(&r, rk("p"), &pj, 1, 3);
        kill(w, SIGTERM);
        waitpid(w, NULL, 0);
    }
    CHECK_EQ_STR(pj.finish, "error");
    CHECK_EQ_STR(pj.code, "dead_letter");
    redisContext *c = connect_redis(&r);
    char dead[160];
    syn_q_key_dead(dead, sizeof dead, "stories");
    redisReply *rep = redisCommand(c, "XLEN %s", dead);
    CHECK_EQ_INT(rep->integer, 1);
    freeReplyObject(rep);
    redisFree(c);
    CHECK(starts >= 3);
    syn_qclient_free(q);
}

TEST_TIMEOUT(worker_new_job_joins_running_batch, 90)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    pid_t w = start_worker(&r, "cb", "--max-seqs 8");
    wait_ready(&r, "cb");
    struct syn_qclient *q;
    char err[256];
    CHECK_EQ_INT(syn_qclient_new(r.url, &q, err, sizeof err), 0);
    submit(q, "long", "Once upon a time", 1500, 0.9f, 9, rk("cb"));
    /* wait until the long job is generating */
    redisContext *c = connect_redis(&r);
    wait_events(c, rk("cb"), 3, 500, 2000);
    submit(q, "short", "The little dog", 5, 0.0f, 1, rk("cb"));
    struct collected cs[2] = {{.id = "long"}, {.id = "short"}};
    /* the short job must finish while the long one is still running */
    collect(&r, rk("cb"), &cs[1], 1, 30);
    CHECK_EQ_STR(cs[1].finish, "length");
    redisReply *rep;
    struct collected probe = {.id = "long"};
    /* the long job has not finished yet: its finish event is not in the stream */
    rep = redisCommand(c, "XRANGE %s - +", rk("cb"));
    int long_finished = 0;
    for (size_t e = 0; e < rep->elements; e++) {
        struct syn_event ev;
        if (syn_event_decode(rep->element[e]->element[1], &ev, err, sizeof err) == 0 &&
            !strcmp(ev.job, "long") && ev.finish)
            long_finished = 1;
    }
    freeReplyObject(rep);
    CHECK(!long_finished);
    (void)probe;
    (void)cs;
    CHECK_EQ_INT(syn_q_cancel(q, "long"), 0);
    redisFree(c);
    syn_qclient_free(q);
    kill(w, SIGTERM);
    waitpid(w, NULL, 0);
}

/* Whether the reply stream holds the finishing event of job id. */
static int has_finish(redisContext *c, const char *key, const char *id)
{
    char err[256];
    int found = 0;
    redisReply *rep = redisCommand(c, "XRANGE %s - +", key);
    for (size_t e = 0; rep && rep->type == REDIS_REPLY_ARRAY && e < rep->elements; e++) {
        struct syn_event ev;
        if (syn_event_decode(rep->element[e]->element[1], &ev, err, sizeof err) == 0 &&
            !strcmp(ev.job, id) && ev.finish)
            found = 1;
    }
    if (rep) freeReplyObject(rep);
    return found;
}

/* A finished job's ack waits for the next step's events to ride with (one round trip per step
 * instead of two), but never goes out before the job's final event, and goes out on its own when
 * the worker has nothing else to send: the entry leaves the pending list while another job still
 * runs, and at once when the worker falls idle. */
TEST_TIMEOUT(worker_acks_after_the_final_event_and_without_delay, 60)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    pid_t w = start_worker(&r, "ak", "--max-seqs 8");
    wait_ready(&r, "ak");
    struct syn_qclient *q;
    char err[256];
    CHECK_EQ_INT(syn_qclient_new(r.url, &q, err, sizeof err), 0);
    redisContext *c = connect_redis(&r);
    submit(q, "long", "Once upon a time", 4000, 0.9f, 9, rk("ak"));
    wait_events(c, rk("ak"), 3, 500, 2000);
    submit(q, "short", "The little dog", 3, 0.0f, 1, rk("ak"));
    /* every time the pending list is looked at, a job missing from it has its final event out */
    int64_t waiting = 1, pending = 1;
    double t0 = now_s();
    while (waiting + pending > 1 && now_s() - t0 < 10) {
        CHECK_EQ_INT(syn_q_backlog(q, "stories", &waiting, &pending), 0);
        if (waiting + pending <= 1) CHECK(has_finish(c, rk("ak"), "short"));
    }
    CHECK_EQ_INT(waiting + pending, 1);
    CHECK(!has_finish(c, rk("ak"), "long")); /* acked while the long job still ran */
    CHECK_EQ_INT(syn_q_cancel(q, "long"), 0);
    /* the long job's ack follows its last event with no step after it to ride with */
    t0 = now_s();
    while (pending > 0 && now_s() - t0 < 10) {
        CHECK_EQ_INT(syn_q_backlog(q, "stories", &waiting, &pending), 0);
        if (pending == 0) CHECK(has_finish(c, rk("ak"), "long"));
        usleep(1000);
    }
    CHECK_EQ_INT(pending, 0);
    redisFree(c);
    syn_qclient_free(q);
    kill(w, SIGTERM);
    int st;
    waitpid(w, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* The step hands out its prefill budget oldest first: prompts of one length submitted together
 * finish in the order they came, even when finished jobs leave the batch between steps (the
 * worker once moved its newest job into a finished one's place, and that job then jumped the
 * queue: 10x TTFT tails in bursts of the load runs). */
TEST_TIMEOUT(worker_prefills_in_arrival_order, 60)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *q;
    char err[256];
    CHECK_EQ_INT(syn_qclient_new(r.url, &q, err, sizeof err), 0);
    CHECK_EQ_INT(syn_q_ensure_groups(q, "stories"), 0);
    enum { N = 8 };
    static const char prompt[] = "Once upon a time there was a little girl named Lily who loved "
                                 "to play outside in the park with her friends";
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof id, "order%d", i);
        submit(q, id, prompt, 1, 0.0f, 1, rk("ord"));
    }
    /* all eight are waiting before the worker claims; each step has room for about one and a
     * half prompts */
    pid_t w = start_worker(&r, "ord", "--max-seqs 8 --max-batched-tokens 40");
    redisContext *c = connect_redis(&r);
    wait_events(c, rk("ord"), N, 1000, 10000);
    redisReply *rep = redisCommand(c, "XRANGE %s - +", rk("ord"));
    int order[N], n = 0;
    for (size_t e = 0; rep && e < rep->elements && n < N; e++) {
        struct syn_event ev;
        if (syn_event_decode(rep->element[e]->element[1], &ev, err, sizeof err) == 0 && ev.finish)
            order[n++] = atoi(ev.job + 5);
    }
    if (rep) freeReplyObject(rep);
    CHECK_EQ_INT(n, N);
    for (int i = 0; i < n; i++) CHECK_EQ_INT(order[i], i);
    redisFree(c);
    syn_qclient_free(q);
    kill(w, SIGTERM);
    waitpid(w, NULL, 0);
}

TEST_TIMEOUT(worker_exits_when_idle, 30)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    double t0 = now_s();
    pid_t w = start_worker(&r, "idle", "--idle-timeout 1");
    int st;
    waitpid(w, &st, 0);
    double el = now_s() - t0;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(el >= 1.0 && el < 10.0);
    /* it unregistered on the way out */
    redisContext *c = connect_redis(&r);
    char key[160];
    syn_q_key_worker(key, sizeof key, "idle");
    redisReply *rep = redisCommand(c, "EXISTS %s", key);
    CHECK_EQ_INT(rep->integer, 0);
    freeReplyObject(rep);
    redisFree(c);
}

TEST_TIMEOUT(worker_never_claims_more_than_its_slots, 60)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct syn_qclient *q;
    char err[256];
    CHECK_EQ_INT(syn_qclient_new(r.url, &q, err, sizeof err), 0);
    CHECK_EQ_INT(syn_q_ensure_groups(q, "stories"), 0);
    enum { N = 8 };
    struct collected cs[N];
    memset(cs, 0, sizeof cs);
    for (int i = 0; i < N; i++) {
        snprintf(cs[i].id, sizeof cs[i].id, "slot-%d", i);
        submit(q, cs[i].id, prompts[i % 6], 30, 0.0f, 1, rk("s"));
    }
    pid_t w = start_worker(&r, "one", "--max-seqs 1");
    /* while it works, the entries it holds never exceed its one slot (plus one just finished
     * and not yet acknowledged) */
    redisContext *c = connect_redis(&r);
    char key[160];
    syn_q_key_jobs(key, sizeof key, "stories", 0);
    int most = 0;
    double t0 = now_s();
    while (now_s() - t0 < 2.0) {
        redisReply *rep = redisCommand(c, "XPENDING %s " SYN_Q_GROUP, key);
        if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
            rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer > most)
            most = (int)rep->element[0]->integer;
        freeReplyObject(rep);
        usleep(1000);
    }
    redisFree(c);
    collect(&r, rk("s"), cs, N, 30);
    for (int i = 0; i < N; i++) CHECK_EQ_STR(cs[i].finish, "length");
    if (most > 2) FAIL("a worker with one slot held %d jobs at once", most);
    syn_qclient_free(q);
    kill(w, SIGTERM);
    waitpid(w, NULL, 0);
}

/* Events go out step by step, not held back: the I/O thread must not sit in a blocking claim
 * while jobs it just handed over are being run. On the stories15m shape (a step takes a
 * millisecond or more, tens under a sanitizer) a job's events leave over many milliseconds;
 * when the I/O thread blocked on the queue for its 50 ms, the first tens of events left
 * together in one pipeline, at one millisecond. */
TEST_TIMEOUT(worker_streams_events_step_by_step, 120)
{
    char model[512];
    snprintf(model, sizeof model, "%s/s15m.gguf", syn_test_tmpdir());
    CHECK_EQ_INT(syn_test_sh(NULL,
                             "%s model random --shape stories15m --dtype q8_0 -o %s "
                             ">/dev/null 2>&1",
                             syn_test_bin(), model),
                 0);
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "exec %s worker --model %s --redis %s --name stories --id st --threads 1 "
             ">>%s/worker-st.log 2>&1",
             syn_test_bin(), model, r.url, syn_test_tmpdir());
    pid_t w = fork();
    if (w == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    wait_ready(&r, "st");
    struct syn_qclient *q;
    char err[256];
    CHECK_EQ_INT(syn_qclient_new(r.url, &q, err, sizeof err), 0);
    for (int round = 0; round < 3; round++) { /* from idle each time */
        char id[32];
        snprintf(id, sizeof id, "step-%d", round);
        submit(q, id, "Once upon a time", 40, 0.0f, 1, rk("st"));
        struct collected cs = {0};
        snprintf(cs.id, sizeof cs.id, "%s", id);
        collect(&r, rk("st"), &cs, 1, 60);
        CHECK_EQ_INT(cs.gaps, 0);
        CHECK(cs.completion_tokens >= 10);
        /* the entry ids' milliseconds of this job's events: how many distinct ones. Held back
         * by a 50 ms claim, the ~40 events leave in one or two flushes; step by step they
         * spread over about as many milliseconds as steps. A loaded machine that starves the
         * I/O thread for a few steps bunches some of them, hence a low bar. */
        redisContext *c = connect_redis(&r);
        redisReply *rep = redisCommand(c, "XRANGE %s - +", rk("st"));
        long long last_ms = -1;
        int distinct = 0, events = 0;
        for (size_t e = 0; rep && e < rep->elements; e++) {
            struct syn_event ev;
            if (syn_event_decode(rep->element[e]->element[1], &ev, err, sizeof err) != 0 ||
                strcmp(ev.job, id) != 0)
                continue;
            long long ms = strtoll(rep->element[e]->element[0]->str, NULL, 10);
            events++;
            if (ms != last_ms) distinct++;
            last_ms = ms;
        }
        freeReplyObject(rep);
        redisFree(c);
        CHECK(events >= 10);
        if (distinct < 5)
            FAIL("round %d: %d events went out in only %d distinct milliseconds", round, events,
                 distinct);
        usleep(200 * 1000);
    }
    syn_qclient_free(q);
    kill(w, SIGTERM);
    waitpid(w, NULL, 0);
}
