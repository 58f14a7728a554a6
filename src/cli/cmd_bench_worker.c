/*
 * `synapse bench worker`: what the Redis queue and the worker cost on top of the engine, measured
 * in one run against the engine alone (docs/BENCHMARKS.md explains every number).
 *
 * The command starts its own redis-server (a unix socket in a temporary directory) and worker
 * processes of this same binary, plays the gateway itself (jobs encoded by the queue API and
 * pipelined as a gateway coalesces them, XREAD BLOCK on its reply stream, syn_event_decode), and
 * in the same run drives the engine in-process for the reference:
 *
 *   queue hop   stories260K, `--concurrency` jobs running at once, replaced as they finish.
 *               Engine alone: the same jobs (prompts, sampling, seeds, max_tokens, step budget)
 *               run by a minimal in-process scheduler; its step times (forward pass + sampling
 *               of every row) are the reference. Through the worker: the gap between consecutive
 *               token events of the same job as the consumer receives them (each event after a
 *               job's first is one engine step for it). Added latency per step = worker gap -
 *               engine step, at p50 and at p99. Also jobs/s, and jobs/s for 1-token jobs.
 *   batching    the stories15m shape in F16 (generated into the temporary directory unless given):
 *               aggregate output tokens/s of one worker running 16 jobs at once divided by the
 *               same worker's with --max-seqs 1, against the engine's own batch-16 / batch-1
 *               decode gain measured as `synapse bench engine` does.
 *
 * Not a load test of Redis or of the gateway: one consumer, one worker at a time, one machine.
 * Everything it starts dies with it: children get PR_SET_PDEATHSIG, and every exit path (normal,
 * error, SIGINT/SIGTERM/SIGHUP) kills them and removes the temporary directory.
 */
#include "cli.h"

#include "synapse/engine.h"
#include "synapse/error.h"
#include "synapse/queue.h"
#include "synapse/sampler.h"
#include "synapse/tokenizer.h"
#include "common/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMD           "bench worker"
#define GAIN_SEQS     16  /* the batch the batching target is stated for */
#define STEP_BUDGET   256 /* tokens per step: the worker's default --max-batched-tokens */
#define RUN_TIMEOUT_S 300 /* one run through the worker may not take longer than this */

/* ---- cleanup: children and the temporary directory, on every exit path ---- */

#define MAX_CHILDREN 8
#define MAX_PATHS    24

/* Read by the signal handler, so plain fixed arrays: pids of running children (0 = free slot)
 * and the files we created in the temporary directory (removed one by one, then the directory). */
static volatile pid_t g_children[MAX_CHILDREN];
static char g_paths[MAX_PATHS][600];
static volatile sig_atomic_t g_n_paths;
static char g_dir[512]; /* the mkdtemp directory, "" when none */

static void track_path(const char *path)
{
    if (g_n_paths >= MAX_PATHS) return;
    snprintf(g_paths[g_n_paths], sizeof g_paths[0], "%s", path);
    g_n_paths++;
}

static void track_child(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (!g_children[i]) {
            g_children[i] = pid;
            return;
        }
}

static void untrack_child(pid_t pid)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (g_children[i] == pid) g_children[i] = 0;
}

/* Async-signal-safe: kill, unlink, rmdir, raise only. */
static void on_fatal_signal(int sig)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (g_children[i] > 0) kill(g_children[i], SIGKILL);
    for (int i = 0; i < g_n_paths; i++) unlink(g_paths[i]);
    if (g_dir[0]) rmdir(g_dir);
    signal(sig, SIG_DFL);
    raise(sig);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* Stops a child: SIGTERM (workers drain, redis shuts down), SIGKILL after 5 s. */
static void stop_child(pid_t pid)
{
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, NULL, WNOHANG) != 0) goto reaped;
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
reaped:
    untrack_child(pid);
}

/* Normal and error exits (also registered with atexit): children in reverse order of start
 * (workers before the redis-server they talk to), then the directory. Idempotent. */
static void cleanup_all(void)
{
    for (int i = MAX_CHILDREN - 1; i >= 0; i--)
        if (g_children[i] > 0) stop_child(g_children[i]);
    if (g_dir[0]) nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    g_dir[0] = 0;
    g_n_paths = 0;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Starts argv[0] (PATH lookup when it has no slash) with stdout and stderr to log_path. The child
 * is killed when we die, however we die. Returns its pid or -1. */
static pid_t spawn(const char *const *argv, const char *log_path)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &old); /* no signal between fork and track_child */
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        syn_close_inherited_fds();
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (pid > 0) track_child(pid);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return pid;
}

/* 1 if the child has exited (and reaps it). */
static int child_gone(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
        untrack_child(pid);
        return 1;
    }
    return 0;
}

/* Prints the last lines of a child's log, after a failure. */
static void show_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return;
    char buf[2048];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    fprintf(stderr, "---- end of %s ----\n%s----\n", path, buf);
}

/* Counts WARN and ERROR lines in worker `name`'s log, shows the first on stderr; returns the
 * count. */
static int scan_worker_log(const char *name)
{
    char path[600], line[1024];
    snprintf(path, sizeof path, "%s/worker-%s.log", g_dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, " WARN ") && !strstr(line, " ERROR ")) continue;
        if (n++ == 0) fprintf(stderr, "bench worker: worker '%s' logged: %s", name, line);
    }
    fclose(f);
    if (n > 1) fprintf(stderr, "bench worker: ... and %d more warnings\n", n - 1);
    return n;
}

/* ---- small helpers ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A growable array of samples. */
struct dvec {
    double *v; /* (cap) from realloc, freed by dvec_free */
    size_t n, cap;
};

static int dvec_push(struct dvec *d, double x)
{
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 1024;
        double *nv = realloc(d->v, nc * sizeof *nv);
        if (!nv) return -1;
        d->v = nv;
        d->cap = nc;
    }
    d->v[d->n++] = x;
    return 0;
}

static void dvec_free(struct dvec *d)
{
    free(d->v);
    memset(d, 0, sizeof *d);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile (p in (0, 1]); sorts d. 0 when empty. */
static double pct(struct dvec *d, double p)
{
    if (d->n == 0) return 0;
    qsort(d->v, d->n, sizeof *d->v, cmp_double);
    size_t k = (size_t)(p * (double)d->n + 0.999999);
    if (k < 1) k = 1;
    if (k > d->n) k = d->n;
    return d->v[k - 1];
}

static double median_of(const double *v, int n)
{
    double s[64];
    if (n <= 0) return 0;
    if (n > 64) n = 64;
    memcpy(s, v, sizeof *v * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static double min_of(const double *v, int n)
{
    double m = n > 0 ? v[0] : 0;
    for (int i = 1; i < n; i++)
        if (v[i] < m) m = v[i];
    return m;
}

static void read_loadavg(double out[3])
{
    out[0] = out[1] = out[2] = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return;
    if (fscanf(f, "%lf %lf %lf", &out[0], &out[1], &out[2]) != 3) out[0] = out[1] = out[2] = -1;
    fclose(f);
}

static void cpu_model(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *v = strchr(line, ':');
        if (!v) break;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        v[strcspn(v, "\n")] = 0;
        snprintf(out, cap, "%s", v);
        break;
    }
    fclose(f);
}

/* A string as a JSON string literal on f (paths and the CPU name: no control characters
 * expected, escaped anyway). */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* ---- the jobs both sides run ---- */

static const char *const k_prompts[] = {"Once upon a time", "The little dog", "Lily and Ben",
                                        "One day",          "The sun was",    "Tim had a",
                                        "There was a girl", "The cat sat"};
#define N_PROMPTS (int)(sizeof k_prompts / sizeof k_prompts[0])

/* What one batch of jobs is: job i runs prompt i % N_PROMPTS with seed seed0 + i. */
struct jobset {
    int n_jobs;
    int concurrency; /* jobs in flight at once (replaced as they finish) */
    int max_tokens;
    float temperature;
    uint64_t seed0;
};

/* ---- the engine alone: a minimal in-process scheduler over the same jobs ---- */

/* One running sequence of the in-process scheduler. */
struct emu_slot {
    int busy;
    int seq;            /* engine sequence */
    int32_t toks[1024]; /* prompt, then generated tokens */
    int n_prompt, n_gen, n_cached;
    struct syn_sampler *smp; /* owned while busy */
};

struct emu_result {
    double wall_s;
    int jobs;
    long tokens;
    struct dvec steps;        /* seconds per steady step (every slot filled), forward + sampling */
    struct dvec decode_steps; /* the steady steps that had no prefill in them */
};

/* Runs js through the engine as the worker's scheduler would (decode tokens first, prefill
 * chunks with what is left of STEP_BUDGET, finished sequences replaced at the next step), and
 * times every step. A step is "steady" while jobs remain to start, i.e. the batch is full. */
static int emulate(struct syn_engine *e, const struct jobset *js, struct emu_result *r, char *err,
                   size_t errlen)
{
    const struct syn_tokenizer *tok = syn_engine_tokenizer(e);
    const int n_vocab = syn_engine_hparams(e)->n_vocab, n_ctx = syn_engine_n_ctx(e);
    const int nc = js->concurrency;
    int rc = 0, next_job = 0, running = 0;
    struct emu_slot *slots = calloc((size_t)nc, sizeof *slots);
    struct syn_step_item *items = calloc((size_t)nc, sizeof *items);
    int *item_slot = calloc((size_t)nc, sizeof *item_slot);
    if (!slots || !items || !item_slot) {
        rc = syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
        goto out;
    }
    double t0 = now_s();
    while (next_job < js->n_jobs || running > 0) {
        int steady = next_job < js->n_jobs;
        for (int i = 0; i < nc && next_job < js->n_jobs; i++) {
            struct emu_slot *s = &slots[i];
            if (s->busy) continue;
            const char *p = k_prompts[next_job % N_PROMPTS];
            int n = syn_tokenizer_encode(tok, p, strlen(p), syn_tokenizer_add_bos(tok), 0, s->toks,
                                         512);
            if (n <= 0 || n > 512) {
                rc = syn_seterr(err, errlen, SYN_EINVAL, "cannot tokenize '%s'", p);
                goto out;
            }
            struct syn_sampling_params sp = syn_sampling_default_params();
            sp.temperature = js->temperature;
            sp.seed = js->seed0 + (uint64_t)next_job;
            s->smp = syn_sampler_new(&sp, n_vocab);
            s->seq = syn_engine_seq_new(e);
            if (!s->smp || s->seq < 0) {
                rc = syn_seterr(err, errlen, SYN_ENOSPC, "cannot start a sequence");
                goto out;
            }
            for (int k = 0; k < n; k++) syn_sampler_accept(s->smp, s->toks[k], 1);
            s->n_prompt = n;
            s->n_gen = s->n_cached = 0;
            s->busy = 1;
            running++;
            next_job++;
        }
        /* decode tokens first, then prefill chunks within the budget, as the worker does */
        int n_items = 0, budget = STEP_BUDGET, prefill = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < nc && budget > 0; i++) {
                struct emu_slot *s = &slots[i];
                if (!s->busy) continue;
                int total = s->n_prompt + s->n_gen, left = total - s->n_cached;
                int decoding = s->n_gen > 0 && left == 1;
                if (pass == 0 ? !decoding : (decoding || left <= 0)) continue;
                int take = pass == 0 ? 1 : (left < budget ? left : budget);
                items[n_items] = (struct syn_step_item){
                    s->seq, s->toks + s->n_cached, take,
                    s->n_cached + take == total ? SYN_LOGITS_LAST : SYN_LOGITS_NONE};
                item_slot[n_items++] = i;
                budget -= take;
                prefill += pass == 1;
            }
        double ts = now_s();
        if ((rc = syn_engine_step(e, items, n_items)) != 0) {
            syn_seterr(err, errlen, rc, "engine step failed: %s", syn_strerror(rc));
            goto out;
        }
        int row = 0;
        for (int k = 0; k < n_items; k++) {
            struct emu_slot *s = &slots[item_slot[k]];
            s->n_cached += items[k].n_tokens;
            if (items[k].logits != SYN_LOGITS_LAST) continue;
            int32_t id = syn_sampler_sample(s->smp, syn_engine_logits(e, row++), NULL, NULL, 0);
            int done = syn_tokenizer_is_eog(tok, id);
            if (!done) {
                syn_sampler_accept(s->smp, id, 0);
                s->toks[s->n_prompt + s->n_gen++] = id;
                r->tokens++;
                done = s->n_gen >= js->max_tokens || s->n_prompt + s->n_gen >= n_ctx ||
                       s->n_prompt + s->n_gen >= (int)(sizeof s->toks / sizeof s->toks[0]);
            }
            if (done) {
                syn_engine_seq_free(e, s->seq);
                syn_sampler_free(s->smp);
                s->smp = NULL;
                s->busy = 0;
                running--;
                r->jobs++;
            }
        }
        double dt = now_s() - ts;
        if (steady) {
            dvec_push(&r->steps, dt);
            if (!prefill) dvec_push(&r->decode_steps, dt);
        }
    }
    r->wall_s = now_s() - t0;
out:
    if (slots)
        for (int i = 0; i < nc; i++)
            if (slots[i].busy) {
                syn_engine_seq_free(e, slots[i].seq);
                syn_sampler_free(slots[i].smp);
            }
    free(slots);
    free(items);
    free(item_slot);
    return rc;
}

/* One round of engine_decode_tps: b fresh sequences prefilled (not timed), then gen decode steps;
 * adds the decode time to *secs. */
static int engine_decode_round(struct syn_engine *e, int b, int n_prompt, int gen, double *secs)
{
    int seqs[GAIN_SEQS];
    struct syn_step_item items[GAIN_SEQS];
    int32_t prompt[GAIN_SEQS][16], next[GAIN_SEQS];
    int nv = syn_engine_hparams(e)->n_vocab, rc = 0, made = 0;
    for (int i = 0; i < b; i++) {
        if ((seqs[i] = syn_engine_seq_new(e)) < 0) {
            rc = seqs[i];
            goto out;
        }
        made++;
        for (int k = 0; k < n_prompt; k++)
            prompt[i][k] = (int32_t)(1 + (i * 131 + k * 7919) % (nv - 1));
        items[i] = (struct syn_step_item){seqs[i], prompt[i], n_prompt, SYN_LOGITS_LAST};
    }
    if ((rc = syn_engine_step(e, items, b))) goto out;
    for (int i = 0; i < b; i++) {
        next[i] = prompt[i][n_prompt - 1];
        items[i] = (struct syn_step_item){seqs[i], &next[i], 1, SYN_LOGITS_LAST};
    }
    double t0 = now_s();
    for (int s = 0; s < gen && rc == 0; s++) {
        for (int i = 0; i < b; i++) next[i] = (int32_t)(1 + (next[i] * 31 + s) % (nv - 1));
        rc = syn_engine_step(e, items, b);
    }
    *secs += now_s() - t0;
out:
    for (int i = 0; i < made; i++) syn_engine_seq_free(e, seqs[i]);
    return rc;
}

/* Decode tokens/s of the engine alone at batch b, as `synapse bench engine` measures it (no
 * sampling: the next tokens are made up), except that each sequence starts from a prompt of
 * n_prompt tokens so that the positions match the worker's jobs. Every batch size decodes the
 * same GAIN_SEQS sequences of gen tokens (at b = 1, one after another, as the worker with --max-seqs 1 serves
 * its jobs), so both sides of the gain run for comparable times: a batch-1 measurement of one
 * sequence lasts well under 0.1 s and one preemption would move it by several percent. */
static int engine_decode_tps(struct syn_engine *e, int b, int n_prompt, int gen, double *tps)
{
    if (b < 1 || b > GAIN_SEQS || GAIN_SEQS % b || n_prompt > 16 || n_prompt < 1) return SYN_EINVAL;
    double secs = 0;
    for (int r = 0; r < GAIN_SEQS / b; r++) {
        int rc = engine_decode_round(e, b, n_prompt, gen, &secs);
        if (rc) return rc;
    }
    *tps = (double)GAIN_SEQS * gen / secs;
    return 0;
}

/* ---- through Redis and a worker: this process plays the gateway ---- */

struct bench_ctx {
    char url[640]; /* unix:///.../redis.sock */
    char sock[600];
    struct syn_qclient *q; /* submissions (owned) */
    redisContext *rd;      /* reading reply streams (owned) */
    int run_no;            /* makes job ids and reply streams unique per run */
};

struct run_result {
    double wall_s; /* first submission to last finishing event */
    int jobs, failed;
    long tokens;      /* completion tokens reported by the finishing events */
    struct dvec gaps; /* seconds between consecutive events of one job, while the window was full */
    struct dvec ttft; /* submission to first event */
};

/* Per-job bookkeeping of the consumer. */
struct job_track {
    double t_submit, t_last;
    int events;
    int finished;
};

/* Submits jobs first .. first + count - 1 of js in one pipelined round trip, as a gateway
 * coalesces the requests of one event-loop turn: each job's XADD comes from the queue API's
 * builder (syn_job_xadd_argv, what syn_q_submit sends), all are written, then every reply is
 * read. Sending them one round trip each would measure this process, not the worker. */
static int submit_batch(struct bench_ctx *b, const char *model, const char *reply_key,
                        const struct jobset *js, int first, int count, char *err, size_t errlen)
{
    redisContext *c = syn_qclient_ensure(b->q) == 0 ? syn_qclient_ctx(b->q) : NULL;
    if (!c)
        return syn_seterr(err, errlen, SYN_EIO, "no connection for submissions: %s",
                          syn_qclient_errstr(b->q));
    struct syn_q_argv a;
    memset(&a, 0, sizeof a);
    int rc = 0, sent = 0;
    for (int i = first; i < first + count && rc == 0; i++) {
        struct syn_job j;
        syn_job_init(&j);
        snprintf(j.id, sizeof j.id, "bw%d-%d", b->run_no, i);
        snprintf(j.model, sizeof j.model, "%s", model);
        snprintf(j.reply, sizeof j.reply, "%s", reply_key);
        j.prompt = strdup(k_prompts[i % N_PROMPTS]);
        j.max_tokens = js->max_tokens;
        j.sampling.temperature = js->temperature;
        j.sampling.seed = js->seed0 + (uint64_t)i;
        j.created_ms = syn_unix_ms();
        if (!j.prompt)
            rc = syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
        else if (syn_job_xadd_argv(&j, &a) != 0)
            rc = syn_seterr(err, errlen, SYN_EINVAL, "job %s does not encode", j.id);
        else if (redisAppendCommandArgv(c, a.argc, a.argv, a.len) != REDIS_OK)
            rc = syn_seterr(err, errlen, SYN_EIO, "XADD: %s", c->errstr);
        else
            sent++;
        syn_q_argv_reset(&a);
        syn_job_release(&j);
    }
    for (int k = 0; k < sent; k++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
            return syn_seterr(err, errlen, SYN_EIO, "XADD: %s", c->errstr);
        }
        if (r->type != REDIS_REPLY_STRING && rc == 0)
            rc = syn_seterr(err, errlen, SYN_EIO, "XADD answered %s",
                            r->type == REDIS_REPLY_ERROR ? r->str : "not an entry id");
        freeReplyObject(r);
    }
    return rc;
}

/* Submits js->concurrency jobs for model, then one more each time one finishes, reading the
 * reply stream with XREAD BLOCK as a gateway does, until all have finished. worker: the pid to
 * watch (a dead worker ends the run). */
static int run_jobs(struct bench_ctx *b, const char *model, pid_t worker, const struct jobset *js,
                    struct run_result *r, char *err, size_t errlen)
{
    int rc = 0, submitted = 0;
    char gateway[64], reply_key[128], last[64] = "0-0";
    b->run_no++;
    snprintf(gateway, sizeof gateway, "bench-%d-%d", (int)getpid(), b->run_no);
    syn_q_key_reply(reply_key, sizeof reply_key, gateway);
    struct job_track *jt = calloc((size_t)js->n_jobs, sizeof *jt);
    if (!jt) return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
    double t0 = now_s();
    {
        int n = js->n_jobs < js->concurrency ? js->n_jobs : js->concurrency;
        for (int i = 0; i < n; i++) jt[i].t_submit = t0;
        if ((rc = submit_batch(b, model, reply_key, js, 0, n, err, errlen))) goto out;
        submitted = n;
    }
    while (r->jobs + r->failed < js->n_jobs) {
        if (now_s() - t0 > RUN_TIMEOUT_S) {
            rc = syn_seterr(err, errlen, SYN_EIO, "timed out after %d s with %d of %d jobs done",
                            RUN_TIMEOUT_S, r->jobs + r->failed, js->n_jobs);
            goto out;
        }
        if (child_gone(worker)) {
            rc = syn_seterr(err, errlen, SYN_EIO, "the worker exited during the run");
            goto out;
        }
        redisReply *rep =
            redisCommand(b->rd, "XREAD COUNT 4096 BLOCK 500 STREAMS %s %s", reply_key, last);
        double t = now_s();
        if (!rep) {
            rc = syn_seterr(err, errlen, SYN_EIO, "XREAD failed: %s", b->rd->errstr);
            goto out;
        }
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
            rep->element[0]->elements == 2) {
            redisReply *entries = rep->element[0]->element[1];
            int to_submit = 0;
            for (size_t k = 0; k < entries->elements; k++) {
                redisReply *en = entries->element[k];
                snprintf(last, sizeof last, "%s", en->element[0]->str);
                struct syn_event ev;
                char derr[256];
                if (syn_event_decode(en->element[1], &ev, derr, sizeof derr)) {
                    freeReplyObject(rep);
                    rc = syn_seterr(err, errlen, SYN_EFORMAT, "bad event: %s", derr);
                    goto out;
                }
                const char *dash = strrchr(ev.job, '-');
                int i = dash ? atoi(dash + 1) : -1;
                if (i < 0 || i >= js->n_jobs || jt[i].finished) continue;
                struct job_track *j = &jt[i];
                if (j->events == 0)
                    dvec_push(&r->ttft, t - j->t_submit);
                else if (submitted < js->n_jobs)
                    dvec_push(&r->gaps, t - j->t_last);
                j->events++;
                j->t_last = t;
                if (!ev.finish) continue;
                j->finished = 1;
                if (!strcmp(ev.finish, "error")) {
                    if (r->failed++ == 0)
                        fprintf(stderr, "synapse %s: job %s failed: %s\n", CMD, ev.job,
                                ev.error ? ev.error : "(no message)");
                } else {
                    r->jobs++;
                    r->tokens += ev.completion_tokens;
                }
                to_submit++;
            }
            freeReplyObject(rep);
            if (to_submit > js->n_jobs - submitted) to_submit = js->n_jobs - submitted;
            if (to_submit > 0) {
                double ts = now_s();
                for (int i = submitted; i < submitted + to_submit; i++) jt[i].t_submit = ts;
                if ((rc = submit_batch(b, model, reply_key, js, submitted, to_submit, err, errlen)))
                    goto out;
                submitted += to_submit;
            }
        } else {
            freeReplyObject(rep);
        }
    }
    r->wall_s = now_s() - t0;
    if (r->failed)
        rc = syn_seterr(err, errlen, SYN_EIO, "%d of %d jobs failed", r->failed, js->n_jobs);
out : {
    redisReply *d = redisCommand(b->rd, "DEL %s", reply_key);
    if (d) freeReplyObject(d);
}
    free(jt);
    return rc;
}

static int start_redis(struct bench_ctx *b, pid_t *pid, char *err, size_t errlen)
{
    char log[600];
    snprintf(b->sock, sizeof b->sock, "%s/redis.sock", g_dir);
    snprintf(b->url, sizeof b->url, "unix://%s", b->sock);
    snprintf(log, sizeof log, "%s/redis.log", g_dir);
    track_path(b->sock);
    track_path(log);
    const char *argv[] = {
        "redis-server", "--port", "0", "--unixsocket", b->sock, "--unixsocketperm", "700", "--dir",
        g_dir,          "--save", "",  "--appendonly", "no",    "--daemonize",      "no",  NULL};
    *pid = spawn(argv, log);
    if (*pid < 0) return syn_seterr(err, errlen, SYN_EIO, "fork: %s", strerror(errno));
    for (int i = 0; i < 1000; i++) {
        if (child_gone(*pid)) {
            show_log(log);
            return syn_seterr(err, errlen, SYN_EIO,
                              "redis-server exited at start (is it installed?)");
        }
        struct timeval tv = {0, 200 * 1000};
        redisContext *c = redisConnectUnixWithTimeout(b->sock, tv);
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r && r->type == REDIS_REPLY_STATUS;
            if (r) freeReplyObject(r);
            if (ok) {
                b->rd = c;
                struct timeval rt = {10, 0}; /* more than any BLOCK we use */
                redisSetTimeout(c, rt);
                return syn_qclient_new(b->url, &b->q, err, errlen);
            }
        }
        if (c) redisFree(c);
        nap_ms(10);
    }
    return syn_seterr(err, errlen, SYN_EIO, "redis-server did not answer PING within 10 s");
}

/* Starts `synapse worker` (this binary) for model_path under the name `name` and waits until
 * it is registered as ready. */
static int start_worker(struct bench_ctx *b, const char *model_path, const char *name, int max_seqs,
                        int threads, pid_t *pid, char *err, size_t errlen)
{
    char log[600], seqs[16], thr[16], id[64];
    snprintf(log, sizeof log, "%s/worker-%s.log", g_dir, name);
    snprintf(seqs, sizeof seqs, "%d", max_seqs);
    snprintf(thr, sizeof thr, "%d", threads);
    snprintf(id, sizeof id, "%s-w", name);
    track_path(log);
    const char *argv[] = {
        "/proc/self/exe", "worker", "--model",        model_path, "--redis",    b->url,
        "--name",         name,     "--id",           id,         "--max-seqs", seqs,
        "--threads",      thr,      "--idle-timeout", "0",        NULL};
    if (syn_q_ensure_groups(b->q, name) != 0)
        return syn_seterr(err, errlen, SYN_EIO, "cannot create the consumer groups: %s",
                          syn_qclient_errstr(b->q));
    *pid = spawn(argv, log);
    if (*pid < 0) return syn_seterr(err, errlen, SYN_EIO, "fork: %s", strerror(errno));
    struct syn_worker_info info[4];
    double t0 = now_s();
    while (now_s() - t0 < 120) {
        if (child_gone(*pid)) {
            *pid = -1;
            show_log(log);
            return syn_seterr(err, errlen, SYN_EIO, "worker %s exited at start", id);
        }
        int n = syn_q_list_workers(b->q, name, info, 4);
        for (int i = 0; i < n; i++)
            if (!strcmp(info[i].id, id) && info[i].state == SYN_WORKER_READY) return 0;
        nap_ms(20);
    }
    show_log(log);
    return syn_seterr(err, errlen, SYN_EIO, "worker %s was not ready within 120 s", id);
}

/* ---- the two measurements ---- */

struct hop_result {
    struct dvec steps, decode_steps, gaps, ttft; /* pooled over reps, seconds */
    double eng_jobs_s[64], eng_tok_s[64], wrk_jobs_s[64], wrk_tok_s[64]; /* per rep */
    double eng_short_s[64], wrk_short_s[64];
    double step50[64], gap50[64]; /* per rep: median engine step, median worker gap (s) */
    double step99[64], gap99[64]; /* per rep: their p99 (s) */
    int reps;
    int warnings; /* WARN/ERROR lines in the worker's log: a clean run has none */
};

struct gain_result {
    double eng1[64], eng16[64], wrk1[64], wrk16[64]; /* tokens/s per rep */
    int reps;
    int warnings; /* WARN/ERROR lines in the workers' logs */
};

struct opts {
    const char *model;      /* stories260K */
    const char *gain_model; /* stories15m shape, F16; NULL = generate */
    int jobs, concurrency, max_tokens, gain_tokens, reps, threads, json;
    int hop, batching; /* which parts to run (--only) */
};

static int measure_hop(struct bench_ctx *b, const struct opts *o, struct hop_result *h, char *err,
                       size_t errlen)
{
    pid_t w = -1;
    struct syn_engine *e = NULL;
    int rc;
    fprintf(stderr, "bench worker: queue hop on %s, %d jobs in flight\n", o->model, o->concurrency);
    struct syn_engine_params ep = syn_engine_default_params();
    ep.model_path = o->model;
    ep.n_threads = o->threads;
    ep.max_seqs = o->concurrency;
    ep.max_batch_tokens = STEP_BUDGET > o->concurrency ? STEP_BUDGET : o->concurrency;
    ep.max_logit_rows = o->concurrency;
    if ((rc = syn_engine_load(&ep, &e, err, errlen))) return rc;
    if ((rc = start_worker(b, o->model, "hop", o->concurrency, o->threads, &w, err, errlen)))
        goto out;
    struct jobset js = {o->jobs, o->concurrency, o->max_tokens, 1.0f, 1000};
    struct jobset shortjs = {o->jobs, o->concurrency, 1, 1.0f, 5000};
    for (int r = 0; r < o->reps; r++) {
        struct emu_result er = {0};
        struct run_result wr = {0};
        fprintf(stderr, "bench worker: hop rep %d/%d: engine alone\n", r + 1, o->reps);
        rc = emulate(e, &js, &er, err, errlen);
        for (size_t i = 0; i < er.steps.n; i++) dvec_push(&h->steps, er.steps.v[i]);
        h->step50[r] = pct(&er.steps, 0.5);
        h->step99[r] = pct(&er.steps, 0.99);
        for (size_t i = 0; i < er.decode_steps.n; i++)
            dvec_push(&h->decode_steps, er.decode_steps.v[i]);
        h->eng_jobs_s[r] = er.jobs / er.wall_s;
        h->eng_tok_s[r] = (double)er.tokens / er.wall_s;
        dvec_free(&er.steps);
        dvec_free(&er.decode_steps);
        if (rc) goto out;
        fprintf(stderr, "bench worker: hop rep %d/%d: through the worker\n", r + 1, o->reps);
        rc = run_jobs(b, "hop", w, &js, &wr, err, errlen);
        for (size_t i = 0; i < wr.gaps.n; i++) dvec_push(&h->gaps, wr.gaps.v[i]);
        h->gap50[r] = pct(&wr.gaps, 0.5);
        h->gap99[r] = pct(&wr.gaps, 0.99);
        for (size_t i = 0; i < wr.ttft.n; i++) dvec_push(&h->ttft, wr.ttft.v[i]);
        h->wrk_jobs_s[r] = wr.jobs / wr.wall_s;
        h->wrk_tok_s[r] = (double)wr.tokens / wr.wall_s;
        dvec_free(&wr.gaps);
        dvec_free(&wr.ttft);
        if (rc) goto out;
        fprintf(stderr, "bench worker: hop rep %d/%d: 1-token jobs\n", r + 1, o->reps);
        memset(&er, 0, sizeof er);
        memset(&wr, 0, sizeof wr);
        rc = emulate(e, &shortjs, &er, err, errlen);
        h->eng_short_s[r] = er.jobs / er.wall_s;
        dvec_free(&er.steps);
        dvec_free(&er.decode_steps);
        if (rc) goto out;
        rc = run_jobs(b, "hop", w, &shortjs, &wr, err, errlen);
        h->wrk_short_s[r] = wr.jobs / wr.wall_s;
        dvec_free(&wr.gaps);
        dvec_free(&wr.ttft);
        if (rc) goto out;
        h->reps = r + 1;
    }
out:
    if (w > 0) stop_child(w);
    h->warnings = scan_worker_log("hop");
    syn_engine_free(e);
    return rc;
}

static int measure_gain(struct bench_ctx *b, const struct opts *o, const char *model,
                        struct gain_result *g, char *err, size_t errlen)
{
    pid_t w16 = -1, w1 = -1;
    struct syn_engine *e = NULL;
    int rc;
    fprintf(stderr, "bench worker: batching gain on %s\n", model);
    struct syn_engine_params ep = syn_engine_default_params();
    ep.model_path = model;
    ep.n_threads = o->threads;
    ep.max_seqs = GAIN_SEQS; /* as the worker with --max-seqs 16 loads it */
    ep.max_batch_tokens = STEP_BUDGET;
    ep.max_logit_rows = GAIN_SEQS;
    if ((rc = syn_engine_load(&ep, &e, err, errlen))) return rc;
    if ((rc = start_worker(b, model, "gain16", GAIN_SEQS, o->threads, &w16, err, errlen)) ||
        (rc = start_worker(b, model, "gain1", 1, o->threads, &w1, err, errlen)))
        goto out;
    /* the prompts tokenize to about 5 tokens with the shared SPM vocab */
    const int n_prompt = 5;
    struct jobset js = {GAIN_SEQS, GAIN_SEQS, o->gain_tokens, 0.0f, 7000};
    /* One unmeasured round of each side first: a worker's first batch of 16 touches KV cache
     * pages for the first time (page faults on the only engine thread) and ran 10-30% slower
     * than the next ones; the steady state is what the gain is about. */
    fprintf(stderr, "bench worker: gain warm-up round\n");
    double unused;
    struct run_result warm = {0};
    if ((rc = engine_decode_tps(e, GAIN_SEQS, n_prompt, o->gain_tokens, &unused))) {
        syn_seterr(err, errlen, rc, "engine step failed: %s", syn_strerror(rc));
        goto out;
    }
    rc = run_jobs(b, "gain16", w16, &js, &warm, err, errlen);
    dvec_free(&warm.gaps);
    dvec_free(&warm.ttft);
    if (rc) goto out;
    for (int r = 0; r < o->reps; r++) {
        fprintf(stderr, "bench worker: gain rep %d/%d: engine alone\n", r + 1, o->reps);
        if ((rc = engine_decode_tps(e, 1, n_prompt, o->gain_tokens, &g->eng1[r])) ||
            (rc = engine_decode_tps(e, GAIN_SEQS, n_prompt, o->gain_tokens, &g->eng16[r]))) {
            syn_seterr(err, errlen, rc, "engine step failed: %s", syn_strerror(rc));
            goto out;
        }
        struct run_result r1 = {0}, r16 = {0};
        fprintf(stderr, "bench worker: gain rep %d/%d: worker --max-seqs 1\n", r + 1, o->reps);
        rc = run_jobs(b, "gain1", w1, &js, &r1, err, errlen);
        g->wrk1[r] = (double)r1.tokens / r1.wall_s;
        dvec_free(&r1.gaps);
        dvec_free(&r1.ttft);
        if (rc) goto out;
        fprintf(stderr, "bench worker: gain rep %d/%d: worker --max-seqs %d\n", r + 1, o->reps,
                GAIN_SEQS);
        rc = run_jobs(b, "gain16", w16, &js, &r16, err, errlen);
        g->wrk16[r] = (double)r16.tokens / r16.wall_s;
        dvec_free(&r16.gaps);
        dvec_free(&r16.ttft);
        if (rc) goto out;
        g->reps = r + 1;
    }
out:
    if (w1 > 0) stop_child(w1);
    if (w16 > 0) stop_child(w16);
    g->warnings = scan_worker_log("gain1") + scan_worker_log("gain16");
    syn_engine_free(e);
    return rc;
}

/* Writes the stories15m-shape F16 model with `synapse model random` into the temp directory. */
static int make_gain_model(char *path, size_t cap, char *err, size_t errlen)
{
    char log[600];
    snprintf(path, cap, "%s/stories15m-f16.gguf", g_dir);
    snprintf(log, sizeof log, "%s/model-random.log", g_dir);
    track_path(path);
    track_path(log);
    fprintf(stderr, "bench worker: generating a random stories15m F16 model\n");
    const char *argv[] = {"/proc/self/exe", "model", "random", "--shape", "stories15m",
                          "--dtype",        "f16",   "-o",     path,      NULL};
    pid_t pid = spawn(argv, log);
    if (pid < 0) return syn_seterr(err, errlen, SYN_EIO, "fork: %s", strerror(errno));
    int st = 0;
    waitpid(pid, &st, 0);
    untrack_child(pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        show_log(log);
        return syn_seterr(err, errlen, SYN_EIO, "synapse model random failed");
    }
    return 0;
}

/* ---- the command ---- */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: synapse bench worker [-m MODEL] [--batch-model MODEL] [--jobs N]\n"
            "                            [--concurrency N] [--max-tokens N] [--batch-tokens N]\n"
            "                            [--reps R] [-t N] [--only PART] [--json]\n\n"
            "Measures, in one run, what the Redis queue and the worker add to the engine. Starts\n"
            "a private redis-server and worker processes, submits jobs and reads the token events\n"
            "as a gateway does, and runs the engine in-process for reference:\n\n"
            "  queue hop  MODEL (stories260K) with --concurrency jobs running: jobs/s and the gap\n"
            "             between a job's token events at the consumer (p50/p99), against the\n"
            "             engine's own step time (forward + sampling) on the same jobs run\n"
            "             in-process; added per step = worker gap - engine step. Also jobs/s of\n"
            "             1-token jobs.\n"
            "  batching   --batch-model (stories15m shape, F16; generated if not given): output\n"
            "             tokens/s of one worker with 16 jobs at once over the same worker with\n"
            "             --max-seqs 1, against the engine's batch-16 / batch-1 decode gain.\n\n"
            "Options:\n"
            "  -m, --model PATH        hop model (default ../shared/models/stories260K.gguf,\n"
            "                          or $SYNAPSE_SHARED/models/stories260K.gguf)\n"
            "      --batch-model PATH  batching model (default: a random stories15m F16)\n"
            "  -j, --jobs N            hop jobs per repetition (default 128)\n"
            "  -c, --concurrency N     hop jobs in flight (default 64)\n"
            "  -n, --max-tokens N      hop tokens per job at most (default 128)\n"
            "      --batch-tokens N    batching tokens per job (default 96)\n"
            "      --reps R            repetitions, alternating engine and worker (default 5)\n"
            "  -t, --threads N         engine threads on both sides (default: CPUs - 1, at\n"
            "                          least 1: redis-server and the consumer need a core)\n"
            "      --only PART         run one part: hop or batching (default both)\n"
            "      --json              print one JSON object with every number\n"
            "  -h, --help              show this help\n\n"
            "Progress goes to stderr. Everything started is stopped and the temporary directory\n"
            "removed on exit, including on SIGINT and SIGTERM.\n");
}

/* Every reported number, in ms and tokens/s, computed once for both output forms. */
struct summary {
    double s50, s99, d50;    /* engine step (all steady steps; decode-only p50), ms */
    double g50, g99;         /* worker per-step gap at the consumer, ms */
    double a50, a99;         /* added: gap - step */
    double b50, b99;         /* the same from the best rep of each side (least disturbed) */
    double t50, t99;         /* submission to first event, ms */
    double ej, wj, et, wt;   /* jobs/s and tokens/s, engine alone and through the worker */
    double es, ws;           /* jobs/s of 1-token jobs */
    double e1, e16, w1, w16; /* batching: tokens/s */
    double eg, wg, ratio;    /* engine gain, worker gain, worker gain / engine gain */
    int hop_ok, gain_ok;     /* -1 no valid verdict, 0 not met, 1 met */
};

static void summarize(struct hop_result *h, struct gain_result *g, struct summary *m)
{
    m->s50 = pct(&h->steps, 0.5) * 1e3;
    m->s99 = pct(&h->steps, 0.99) * 1e3;
    m->d50 = pct(&h->decode_steps, 0.5) * 1e3;
    m->g50 = pct(&h->gaps, 0.5) * 1e3;
    m->g99 = pct(&h->gaps, 0.99) * 1e3;
    m->a50 = m->g50 - m->s50;
    m->a99 = m->g99 - m->s99;
    m->b50 = (min_of(h->gap50, h->reps) - min_of(h->step50, h->reps)) * 1e3;
    m->b99 = (min_of(h->gap99, h->reps) - min_of(h->step99, h->reps)) * 1e3;
    m->t50 = pct(&h->ttft, 0.5) * 1e3;
    m->t99 = pct(&h->ttft, 0.99) * 1e3;
    m->ej = median_of(h->eng_jobs_s, h->reps);
    m->wj = median_of(h->wrk_jobs_s, h->reps);
    m->et = median_of(h->eng_tok_s, h->reps);
    m->wt = median_of(h->wrk_tok_s, h->reps);
    m->es = median_of(h->eng_short_s, h->reps);
    m->ws = median_of(h->wrk_short_s, h->reps);
    m->e1 = median_of(g->eng1, g->reps);
    m->e16 = median_of(g->eng16, g->reps);
    m->w1 = median_of(g->wrk1, g->reps);
    m->w16 = median_of(g->wrk16, g->reps);
    m->eg = m->e1 > 0 ? m->e16 / m->e1 : 0;
    m->wg = m->w1 > 0 ? m->w16 / m->w1 : 0;
    m->ratio = m->eg > 0 ? m->wg / m->eg : 0;
    /* a run whose worker logged warnings (a job left for reclaim, a reconnect) gives no verdict */
    m->hop_ok = !h->gaps.n || !h->steps.n || h->warnings ? -1 : m->a99 < 1.0;
    m->gain_ok = !g->reps || g->warnings ? -1 : m->ratio >= 0.9;
}

static const char *verdict_text(int ok, int warnings)
{
    if (ok >= 0) return ok ? "met" : "NOT met";
    return warnings ? "no verdict: the worker logged warnings" : "no verdict: no steady state";
}

static const char *verdict_json(int ok)
{
    return ok < 0 ? "null" : ok ? "true" : "false";
}

static void print_text(const struct opts *o, const char *gain_model, const struct summary *m,
                       const struct hop_result *h, const struct gain_result *g, const char *cpu,
                       const double la0[3], const double la1[3])
{
    printf("cpu              %s, engine threads %d\n", cpu, o->threads);
    printf("load average     %.2f at start, %.2f at end\n", la0[0], la1[0]);
    if (!o->hop) goto batching;
    printf("queue hop        %s, %d jobs in flight, max_tokens %d, %d x %d jobs\n", o->model,
           o->concurrency, o->max_tokens, h->reps, o->jobs);
    printf("  engine step    p50 %.3f ms  p99 %.3f ms  (decode-only steps p50 %.3f ms)\n", m->s50,
           m->s99, m->d50);
    printf("  worker gap     p50 %.3f ms  p99 %.3f ms  (%zu gaps)\n", m->g50, m->g99, h->gaps.n);
    printf("  added          p50 %.3f ms  p99 %.3f ms  (target p99 < 1 ms: %s)\n", m->a50, m->a99,
           verdict_text(m->hop_ok, h->warnings));
    printf("  added, best    p50 %.3f ms  p99 %.3f ms  (least disturbed rep of each side)\n",
           m->b50, m->b99);
    printf("  first token    p50 %.2f ms  p99 %.2f ms  (submission to first event)\n", m->t50,
           m->t99);
    printf("  jobs/s         engine %.1f  worker %.1f  (%.0f%%)\n", m->ej, m->wj,
           100 * m->wj / m->ej);
    printf("  tokens/s       engine %.0f  worker %.0f  (%.0f%%)\n", m->et, m->wt,
           100 * m->wt / m->et);
    printf("  1-token jobs/s engine %.1f  worker %.1f  (%.0f%%)\n", m->es, m->ws,
           100 * m->ws / m->es);
batching:
    if (!o->batching) return;
    printf("batching gain    %s, %d jobs x %d tokens, greedy, %d reps\n", gain_model, GAIN_SEQS,
           o->gain_tokens, g->reps);
    printf("  engine         batch 1 %.1f  batch %d %.1f tokens/s  gain %.2fx\n", m->e1, GAIN_SEQS,
           m->e16, m->eg);
    printf("  worker         --max-seqs 1 %.1f  --max-seqs %d %.1f tokens/s  gain %.2fx\n", m->w1,
           GAIN_SEQS, m->w16, m->wg);
    printf("  worker/engine  %.0f%% of the engine's gain (target >= 90%%: %s)\n", 100 * m->ratio,
           verdict_text(m->gain_ok, g->warnings));
}

static void print_hop_json(const struct opts *o, const struct summary *m,
                           const struct hop_result *h);

/* "name":[v0,v1,...], */
static void json_reps(const char *name, const double *v, int n)
{
    printf("\"%s\":[", name);
    for (int i = 0; i < n; i++) printf("%s%.2f", i ? "," : "", v[i]);
    printf("],");
}

static void print_json(const struct opts *o, const char *gain_model, const struct summary *m,
                       const struct hop_result *h, const struct gain_result *g, const char *cpu,
                       const double la0[3], const double la1[3])
{
    printf("{\"cpu\":");
    json_string(stdout, cpu);
    printf(",\"threads\":%d,\"loadavg_start\":[%.2f,%.2f,%.2f],\"loadavg_end\":[%.2f,%.2f,%.2f],",
           o->threads, la0[0], la0[1], la0[2], la1[0], la1[1], la1[2]);
    if (!o->hop)
        printf("\"hop\":null,");
    else
        print_hop_json(o, m, h);
    if (!o->batching) {
        printf("\"batching\":null}\n");
        return;
    }
    printf("\"batching\":{\"model\":");
    json_string(stdout, gain_model);
    printf(",\"jobs\":%d,\"max_tokens\":%d,\"temperature\":0,\"reps\":%d,", GAIN_SEQS,
           o->gain_tokens, g->reps);
    json_reps("engine_batch1_tokens_per_s_reps", g->eng1, g->reps);
    json_reps("engine_batch16_tokens_per_s_reps", g->eng16, g->reps);
    json_reps("worker_max_seqs1_tokens_per_s_reps", g->wrk1, g->reps);
    json_reps("worker_max_seqs16_tokens_per_s_reps", g->wrk16, g->reps);
    printf("\"engine_batch1_tokens_per_s\":%.2f,\"engine_batch16_tokens_per_s\":%.2f,"
           "\"engine_gain\":%.4f,",
           m->e1, m->e16, m->eg);
    printf("\"worker_max_seqs1_tokens_per_s\":%.2f,\"worker_max_seqs16_tokens_per_s\":%.2f,"
           "\"worker_gain\":%.4f,",
           m->w1, m->w16, m->wg);
    printf("\"gain_ratio\":%.4f,\"target_gain_ratio\":0.9,\"target_met\":%s,"
           "\"worker_log_warnings\":%d}}\n",
           m->ratio, verdict_json(m->gain_ok), g->warnings);
}

static void print_hop_json(const struct opts *o, const struct summary *m,
                           const struct hop_result *h)
{
    printf("\"hop\":{\"model\":");
    json_string(stdout, o->model);
    printf(",\"concurrency\":%d,\"max_tokens\":%d,\"jobs_per_rep\":%d,\"reps\":%d,", o->concurrency,
           o->max_tokens, o->jobs, h->reps);
    printf("\"engine_step_ms_p50\":%.4f,\"engine_step_ms_p99\":%.4f,\"engine_steps\":%zu,"
           "\"engine_decode_only_step_ms_p50\":%.4f,",
           m->s50, m->s99, h->steps.n, m->d50);
    printf("\"worker_gap_ms_p50\":%.4f,\"worker_gap_ms_p99\":%.4f,\"worker_gaps\":%zu,", m->g50,
           m->g99, h->gaps.n);
    printf("\"added_ms_p50\":%.4f,\"added_ms_p99\":%.4f,\"target_added_ms_p99\":1.0,"
           "\"target_met\":%s,\"worker_log_warnings\":%d,",
           m->a50, m->a99, verdict_json(m->hop_ok), h->warnings);
    printf("\"added_ms_p50_best_reps\":%.4f,\"added_ms_p99_best_reps\":%.4f,", m->b50, m->b99);
    printf("\"ttft_ms_p50\":%.3f,\"ttft_ms_p99\":%.3f,", m->t50, m->t99);
    printf("\"engine_jobs_per_s\":%.2f,\"worker_jobs_per_s\":%.2f,"
           "\"engine_tokens_per_s\":%.1f,\"worker_tokens_per_s\":%.1f,"
           "\"short_engine_jobs_per_s\":%.2f,\"short_worker_jobs_per_s\":%.2f,",
           m->ej, m->wj, m->et, m->wt, m->es, m->ws);
    json_reps("engine_jobs_per_s_reps", h->eng_jobs_s, h->reps);
    json_reps("worker_jobs_per_s_reps", h->wrk_jobs_s, h->reps);
    json_reps("short_engine_jobs_per_s_reps", h->eng_short_s, h->reps);
    json_reps("short_worker_jobs_per_s_reps", h->wrk_short_s, h->reps);
    printf("\"engine_step_ms_p50_reps\":[");
    for (int i = 0; i < h->reps; i++) printf("%s%.3f", i ? "," : "", h->step50[i] * 1e3);
    printf("],\"worker_gap_ms_p50_reps\":[");
    for (int i = 0; i < h->reps; i++) printf("%s%.3f", i ? "," : "", h->gap50[i] * 1e3);
    printf("],\"engine_step_ms_p99_reps\":[");
    for (int i = 0; i < h->reps; i++) printf("%s%.3f", i ? "," : "", h->step99[i] * 1e3);
    printf("],\"worker_gap_ms_p99_reps\":[");
    for (int i = 0; i < h->reps; i++) printf("%s%.3f", i ? "," : "", h->gap99[i] * 1e3);
    printf("]},");
}

int cmd_bench_worker(int argc, char **argv)
{
    static const struct option lopts[] = {{"model", required_argument, 0, 'm'},
                                          {"batch-model", required_argument, 0, 'B'},
                                          {"jobs", required_argument, 0, 'j'},
                                          {"concurrency", required_argument, 0, 'c'},
                                          {"max-tokens", required_argument, 0, 'n'},
                                          {"batch-tokens", required_argument, 0, 'T'},
                                          {"reps", required_argument, 0, 'r'},
                                          {"threads", required_argument, 0, 't'},
                                          {"json", no_argument, 0, 'J'},
                                          {"only", required_argument, 0, 'O'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    static char default_model[600];
    struct opts o = {NULL, NULL, 128, 64, 128, 96, 5, 0, 0, 1, 1};
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = cpus > 1 ? (int)cpus - 1 : 1;
    const char *shared = getenv("SYNAPSE_SHARED");
    snprintf(default_model, sizeof default_model, "%s/models/stories260K.gguf",
             shared && *shared ? shared : "../shared");
    o.model = default_model;
    long v;
    int c;
    while ((c = cli_getopt(CMD, argc, argv, "m:j:c:n:t:h", lopts)) != -1) {
        switch (c) {
        case 'm':
            o.model = optarg;
            break;
        case 'B':
            o.gain_model = optarg;
            break;
        case 'j':
            if (cli_parse_long(CMD, "--jobs", optarg, 1, 1000000, &v)) return 2;
            o.jobs = (int)v;
            break;
        case 'c':
            if (cli_parse_long(CMD, "--concurrency", optarg, 1, 512, &v)) return 2;
            o.concurrency = (int)v;
            break;
        case 'n':
            if (cli_parse_long(CMD, "--max-tokens", optarg, 1, 1000, &v)) return 2;
            o.max_tokens = (int)v;
            break;
        case 'T':
            if (cli_parse_long(CMD, "--batch-tokens", optarg, 1, 200, &v)) return 2;
            o.gain_tokens = (int)v;
            break;
        case 'r':
            if (cli_parse_long(CMD, "--reps", optarg, 1, 64, &v)) return 2;
            o.reps = (int)v;
            break;
        case 't':
            if (cli_parse_long(CMD, "--threads", optarg, 1, 1024, &v)) return 2;
            o.threads = (int)v;
            break;
        case 'O':
            if (!strcmp(optarg, "hop"))
                o.batching = 0;
            else if (!strcmp(optarg, "batching"))
                o.hop = 0;
            else
                return cli_usage_error(CMD, "--only expects 'hop' or 'batching'");
            break;
        case 'J':
            o.json = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (optind < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (o.hop && access(o.model, R_OK) != 0)
        return cli_usage_error(CMD, "cannot read the hop model '%s' (use -m)", o.model);
    if (o.gain_model && access(o.gain_model, R_OK) != 0)
        return cli_usage_error(CMD, "cannot read the batching model '%s'", o.gain_model);

    char err[512] = "", cpu[256], gain_path[600];
    double la0[3], la1[3];
    int rc = 1;
    struct bench_ctx b;
    memset(&b, 0, sizeof b);
    struct hop_result *h = calloc(1, sizeof *h);
    struct gain_result *g = calloc(1, sizeof *g);
    pid_t redis = -1;
    if (!h || !g) goto out;
    cpu_model(cpu, sizeof cpu);
    read_loadavg(la0);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/synapse-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        snprintf(err, sizeof err, "mkdtemp %.400s: %s", g_dir, strerror(errno));
        g_dir[0] = 0;
        goto out;
    }
    install_signals();
    atexit(cleanup_all);
    fprintf(stderr, "bench worker: load average %.2f; temporary directory %s\n", la0[0], g_dir);
    if (start_redis(&b, &redis, err, sizeof err)) goto out;
    if (o.hop && measure_hop(&b, &o, h, err, sizeof err)) goto out;
    const char *gain_model = o.gain_model;
    if (o.batching && !gain_model) {
        if (make_gain_model(gain_path, sizeof gain_path, err, sizeof err)) goto out;
        gain_model = gain_path;
    }
    if (o.batching && measure_gain(&b, &o, gain_model, g, err, sizeof err)) goto out;
    read_loadavg(la1);
    struct summary m;
    summarize(h, g, &m);
    const char *gname = o.gain_model ? o.gain_model : "random stories15m f16";
    if (o.json)
        print_json(&o, gname, &m, h, g, cpu, la0, la1);
    else
        print_text(&o, gname, &m, h, g, cpu, la0, la1);
    fflush(stdout);
    rc = 0;
out:
    if (rc && err[0]) fprintf(stderr, "synapse %s: %s\n", CMD, err);
    if (b.rd) redisFree(b.rd);
    syn_qclient_free(b.q);
    cleanup_all();
    if (h) {
        dvec_free(&h->steps);
        dvec_free(&h->decode_steps);
        dvec_free(&h->gaps);
        dvec_free(&h->ttft);
    }
    free(h);
    free(g);
    return rc;
}
