/*
 * The pool manager (include/synapse/workpool.h). Its own thread and its own synchronous Redis
 * client, so that the gateway's event loop never waits on it. A tick: reap exited children,
 * read the registry and the backlog, work out how many started workers have not registered yet
 * (starting), estimate the arrival rate, run the policy, start what it asks for.
 */
#include "synapse/workpool.h"

#include "synapse/error.h"
#include "synapse/log.h"
#include "synapse/pool_backend.h"
#include "synapse/queue.h"
#include "common/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LOG          "pool"
#define MAX_CHILDREN 256

struct child {
    pid_t pid;        /* 0 = free slot */
    char id[101];     /* the worker id we gave it */
    int warm;         /* started without an idle timeout (one of min_warm) */
    int registered;   /* seen in the registry */
    int draining;     /* sent SIGTERM to scale in */
    double spawned_s; /* monotonic */
};

struct syn_workpool {
    struct syn_workpool_params p; /* copy; strings point to the caller's */
    char bin[4096];
    int local;                      /* backend is local */
    struct syn_pool_backend *cloud; /* lambda or asg backend (pool_backend.h); NULL otherwise */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, poked;
    struct child children[MAX_CHILDREN];
    uint64_t seq;                 /* ids for new workers */
    struct syn_workpool_stats st; /* under mu */
    /* arrival rate, from the requests announced through syn_workpool_poke */
    uint64_t arrivals;   /* under mu */
    double rate;         /* requests/s, smoothed */
    uint64_t last_total; /* arrivals at the last tick */
    double last_rate_s;
    double last_tick_s;
    double surplus_since; /* monotonic start of the current surplus (more alive than needed); -1 */
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct syn_workpool_params syn_workpool_default_params(void)
{
    struct syn_workpool_params p = {
        .backend = "local",
        .policy = syn_scale_default_policy(),
        .tick_ms = 200,
        .heartbeat_ms = 1000,
    };
    return p;
}

/* fork/exec one worker. Returns 0 or -1. */
static int spawn(struct syn_workpool *wp, int warm)
{
    struct child *c = NULL;
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (!wp->children[i].pid) {
            c = &wp->children[i];
            break;
        }
    if (!c) return -1;
    snprintf(c->id, sizeof c->id, "%.60s-%d-%llu", wp->p.model_name, (int)getpid(),
             (unsigned long long)++wp->seq);
    char idle[32], threads[16], seqs[16], hb[16];
    snprintf(idle, sizeof idle, "%g", warm ? 0.0 : wp->p.policy.idle_timeout_s);
    snprintf(threads, sizeof threads, "%d", wp->p.worker_threads);
    snprintf(seqs, sizeof seqs, "%d", wp->p.policy.slots_per_worker);
    snprintf(hb, sizeof hb, "%d", wp->p.heartbeat_ms);
    const char *argv[96];
    int n = 0;
    argv[n++] = wp->bin;
    argv[n++] = "worker";
    argv[n++] = "--model";
    argv[n++] = wp->p.model_path;
    argv[n++] = "--name";
    argv[n++] = wp->p.model_name;
    argv[n++] = "--redis";
    argv[n++] = wp->p.redis_url;
    argv[n++] = "--id";
    argv[n++] = c->id;
    argv[n++] = "--idle-timeout";
    argv[n++] = idle;
    argv[n++] = "--threads";
    argv[n++] = threads;
    argv[n++] = "--max-seqs";
    argv[n++] = seqs;
    argv[n++] = "--heartbeat-ms";
    argv[n++] = hb;
    char extra[1024];
    if (wp->p.worker_args) {
        snprintf(extra, sizeof extra, "%s", wp->p.worker_args);
        for (char *tok = strtok(extra, " "); tok && n < 94; tok = strtok(NULL, " "))
            argv[n++] = tok;
    }
    argv[n] = NULL;
    char logpath[4200];
    if (wp->p.log_dir) snprintf(logpath, sizeof logpath, "%s/%s.log", wp->p.log_dir, c->id);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        /* the child: its own process group is not wanted (Ctrl-C reaches it through ours).
         * Should the pool's thread end without stopping it (the gateway killed with SIGKILL),
         * it gets SIGTERM and drains, instead of waiting on a dead Redis forever. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(1);
        if (wp->p.log_dir) {
            int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        syn_close_inherited_fds();
        execv(wp->bin, (char *const *)argv);
        _exit(127);
    }
    c->pid = pid;
    c->warm = warm;
    c->registered = 0;
    c->draining = 0;
    c->spawned_s = mono_s();
    wp->st.started_total++;
    return 0;
}

const double syn_cold_start_bounds[SYN_COLD_START_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1,   2.5, 5,
                                                              10,   20,  30,   60,  120, 300, 600};

/* A started worker registered `s` seconds after it was spawned. Caller holds mu. */
static void record_cold_start(struct syn_workpool_stats *st, double s)
{
    int b = 0;
    while (b < SYN_COLD_START_BUCKETS && s > syn_cold_start_bounds[b]) b++;
    st->cold_start_counts[b]++;
    st->cold_start_sum_s += s;
    st->cold_starts_seen++;
    st->last_cold_start_s = s;
}

/* The local worker to drain for a scale-in: started beyond min_warm, registered, not draining
 * yet, and running the fewest sequences (its heartbeat), so that the least work waits on the
 * drain. NULL when there is none. Caller holds mu. */
static struct child *drain_candidate(struct syn_workpool *wp, const struct syn_worker_info *infos,
                                     int n)
{
    struct child *best = NULL;
    int best_running = 0;
    for (int k = 0; k < MAX_CHILDREN; k++) {
        struct child *c = &wp->children[k];
        if (!c->pid || c->warm || !c->registered || c->draining) continue;
        int running = -1;
        for (int i = 0; i < n && running < 0; i++)
            if (!strcmp(infos[i].id, c->id) && infos[i].state == SYN_WORKER_READY)
                running = infos[i].running;
        if (running < 0) continue; /* not ready (or gone from the registry) */
        if (!best || running < best_running) {
            best = c;
            best_running = running;
        }
    }
    return best;
}

/* Reaps our own children only (never waitpid(-1): the embedding process may have others, such
 * as the private redis-server of `synapse up`). */
static void reap(struct syn_workpool *wp, double now)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        struct child *c = &wp->children[i];
        int status;
        if (!c->pid || waitpid(c->pid, &status, WNOHANG) != c->pid) continue;
        wp->st.exited_total++;
        int crashed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (crashed) wp->st.crashed_total++;
        syn_info(LOG, "worker %s (pid %d) exited%s after %.1f s", c->id, (int)c->pid,
                 crashed ? " abnormally" : "", now - c->spawned_s);
        c->pid = 0;
    }
}

static void tick(struct syn_workpool *wp, struct syn_qclient *q)
{
    double now = mono_s();
    if (wp->local) reap(wp, now);
    struct syn_worker_info infos[MAX_CHILDREN];
    int n = syn_q_list_workers(q, wp->p.model_name, infos, MAX_CHILDREN);
    int64_t waiting = 0, pending = 0;
    int ok = n >= 0 && syn_q_backlog(q, wp->p.model_name, &waiting, &pending) == 0;
    /* a cloud backend is asked outside the lock: its calls are HTTP requests */
    struct syn_pool_observation obs = {0};
    int cloud_ok = 0;
    if (wp->cloud && ok) {
        struct syn_pool_worker_view views[MAX_CHILDREN];
        for (int i = 0; i < n; i++)
            views[i] = (struct syn_pool_worker_view){infos[i].id, infos[i].running, infos[i].state};
        char cerr[256];
        cloud_ok = wp->cloud->observe(wp->cloud, views, n, &obs, cerr, sizeof cerr) == 0;
        if (!cloud_ok) syn_warn(LOG, "%s backend: %s", wp->cloud->name(wp->cloud), cerr);
    }
    pthread_mutex_lock(&wp->mu);
    wp->st.redis_ok = ok;
    if (!ok) {
        pthread_mutex_unlock(&wp->mu);
        return;
    }
    struct syn_scale_state s = {0};
    int ready = 0;
    for (int i = 0; i < n; i++) {
        if (infos[i].state != SYN_WORKER_DRAINING) s.alive++;
        ready += infos[i].state == SYN_WORKER_READY;
        s.running += infos[i].running;
        s.free_slots += infos[i].free_slots;
        for (int k = 0; k < MAX_CHILDREN; k++) {
            struct child *c = &wp->children[k];
            if (c->pid && !c->registered && !strcmp(c->id, infos[i].id)) {
                c->registered = 1;
                record_cold_start(&wp->st, now - c->spawned_s);
                syn_info(LOG, "worker %s ready %.3f s after it was started", c->id,
                         now - c->spawned_s);
            }
        }
    }
    int children = 0, warm = 0;
    for (int k = 0; k < MAX_CHILDREN; k++) {
        struct child *c = &wp->children[k];
        if (!c->pid) continue;
        children++;
        warm += c->warm;
        if (!c->registered) s.starting++;
    }
    if (wp->cloud) s.starting = obs.starting;
    s.waiting = waiting;
    /* arrival rate: requests the gateway announced (syn_workpool_poke) per second, smoothed */
    if (wp->last_rate_s > 0 && now > wp->last_rate_s) {
        double inst = (double)(wp->arrivals - wp->last_total) / (now - wp->last_rate_s);
        wp->rate = 0.7 * wp->rate + 0.3 * inst;
    }
    wp->last_total = wp->arrivals;
    wp->last_rate_s = now;
    s.arrival_rate = wp->rate;
    /* worker-seconds for cost: every local child alive during this interval */
    if (wp->last_tick_s > 0) wp->st.worker_seconds += children * (now - wp->last_tick_s);
    wp->st.worker_seconds += obs.unit_seconds; /* a cloud backend's billed seconds */
    wp->last_tick_s = now;
    wp->st.cost_dollars = wp->st.worker_seconds * wp->p.price_per_hour / 3600.0;

    s.surplus_s = syn_scale_surplus_s(wp->surplus_since, now);
    struct syn_scale_decision d = syn_autoscale_decide(&wp->p.policy, &s);
    wp->surplus_since = syn_scale_surplus_next(wp->surplus_since, &d, s.alive, now);
    if (d.stop > 0 && wp->local) {
        struct child *c = drain_candidate(wp, infos, n);
        if (c && kill(c->pid, SIGTERM) == 0) {
            c->draining = 1;
            wp->st.drained_total++;
            syn_info(LOG,
                     "scaling: drain worker %s (more workers than the load needs for %.1f s; "
                     "alive %d, needed %d, waiting %lld, running %lld)",
                     c->id, s.surplus_s, s.alive, d.needed, (long long)s.waiting,
                     (long long)s.running);
        }
    }
    if (d.start > 0 && wp->local) {
        for (int i = 0; i < d.start; i++) {
            int w = warm < wp->p.policy.min_warm;
            if (spawn(wp, w) != 0) {
                syn_warn(LOG, "cannot start a worker: %s", strerror(errno));
                break;
            }
            warm += w;
            children++;
            wp->st.decisions[d.reason]++;
        }
        syn_info(LOG,
                 "scaling: start %d worker(s) (reason %s; alive %d, starting %d, waiting %lld, "
                 "running %lld)",
                 d.start, syn_scale_reason_name(d.reason), s.alive, s.starting,
                 (long long)s.waiting, (long long)s.running);
    }
    wp->st.alive = s.alive;
    wp->st.ready = ready;
    wp->st.starting = s.starting + (d.start > 0 && wp->local ? d.start : 0);
    wp->st.children = children;
    wp->st.waiting = waiting;
    wp->st.running = s.running;
    int cloud_start = wp->cloud && cloud_ok && d.start > 0 ? d.start : 0;
    pthread_mutex_unlock(&wp->mu);
    if (cloud_start > 0) {
        char cerr[256];
        int started = wp->cloud->start(wp->cloud, cloud_start, cerr, sizeof cerr);
        if (started < 0) {
            syn_warn(LOG, "cannot start workers: %s", cerr);
            return;
        }
        pthread_mutex_lock(&wp->mu);
        wp->st.started_total += (uint64_t)started;
        wp->st.decisions[d.reason] += (uint64_t)started;
        wp->st.starting += started;
        pthread_mutex_unlock(&wp->mu);
        syn_info(LOG,
                 "scaling: started %d of %d worker(s) on %s (reason %s; alive %d, "
                 "starting %d, waiting %lld, running %lld)",
                 started, cloud_start, wp->cloud->name(wp->cloud), syn_scale_reason_name(d.reason),
                 s.alive, s.starting, (long long)s.waiting, (long long)s.running);
    }
}

static void *pool_main(void *arg)
{
    struct syn_workpool *wp = arg;
    struct syn_qclient *q = NULL;
    char err[256];
    syn_qclient_new(wp->p.redis_url, &q, err, sizeof err);
    pthread_mutex_lock(&wp->mu);
    while (!wp->stop) {
        pthread_mutex_unlock(&wp->mu);
        if (q) tick(wp, q);
        pthread_mutex_lock(&wp->mu);
        if (wp->stop) break;
        if (!wp->poked) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long)wp->p.tick_ms * 1000000L;
            while (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&wp->cv, &wp->mu, &ts);
        }
        wp->poked = 0;
    }
    pthread_mutex_unlock(&wp->mu);
    syn_qclient_free(q);
    return NULL;
}

int syn_workpool_new(const struct syn_workpool_params *p, struct syn_workpool **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    if (!p->model_name || !p->redis_url)
        return syn_seterr(err, errlen, SYN_EINVAL, "pool: model name and Redis URL are required");
    int local = !p->backend || !strcmp(p->backend, "local");
    int cloud = p->backend && (!strcmp(p->backend, "lambda") || !strcmp(p->backend, "asg"));
    if (!local && !cloud && strcmp(p->backend, "external") != 0)
        return syn_seterr(err, errlen, SYN_EINVAL,
                          "pool: backend '%s' is not known (local, external, lambda, asg)",
                          p->backend);
    if (local && !p->model_path)
        return syn_seterr(err, errlen, SYN_EINVAL, "pool: the local backend needs a model path");
    struct syn_workpool *wp = calloc(1, sizeof *wp);
    if (!wp) return syn_seterr(err, errlen, SYN_ENOMEM, "pool: out of memory");
    wp->p = *p;
    int rc;
    if (cloud &&
        (rc = syn_pool_backend_from_env(p->backend, p->model_name, p->policy.idle_timeout_s,
                                        &wp->cloud, err, errlen))) {
        free(wp);
        return rc;
    }
    if (wp->p.tick_ms <= 0) wp->p.tick_ms = 200;
    if (wp->p.heartbeat_ms <= 0) wp->p.heartbeat_ms = 1000;
    wp->local = local;
    wp->surplus_since = -1;
    if (p->synapse_bin) {
        snprintf(wp->bin, sizeof wp->bin, "%s", p->synapse_bin);
    } else {
        ssize_t n = readlink("/proc/self/exe", wp->bin, sizeof wp->bin - 1);
        if (n <= 0) {
            if (wp->cloud) wp->cloud->free(wp->cloud);
            free(wp);
            return syn_seterr(err, errlen, SYN_EIO, "pool: cannot find the synapse binary");
        }
        wp->bin[n] = 0;
    }
    pthread_mutex_init(&wp->mu, NULL);
    pthread_cond_init(&wp->cv, NULL);
    if (pthread_create(&wp->thread, NULL, pool_main, wp) != 0) {
        if (wp->cloud) wp->cloud->free(wp->cloud);
        free(wp);
        return syn_seterr(err, errlen, SYN_ENOMEM, "pool: cannot start its thread");
    }
    *out = wp;
    return SYN_OK;
}

void syn_workpool_poke(struct syn_workpool *wp)
{
    pthread_mutex_lock(&wp->mu);
    wp->arrivals++;
    /* tick at once only when nothing can take the request yet: scale from zero without waiting
     * for the timer, without a tick per request under load */
    if (wp->st.ready == 0 && !wp->poked) {
        wp->poked = 1;
        pthread_cond_signal(&wp->cv);
    }
    pthread_mutex_unlock(&wp->mu);
}

int syn_workpool_can_serve(struct syn_workpool *wp)
{
    pthread_mutex_lock(&wp->mu);
    int ok = wp->st.alive > 0 || ((wp->local || wp->cloud) && wp->p.policy.max_workers > 0);
    pthread_mutex_unlock(&wp->mu);
    return ok;
}

void syn_workpool_stats(struct syn_workpool *wp, struct syn_workpool_stats *out)
{
    pthread_mutex_lock(&wp->mu);
    *out = wp->st;
    pthread_mutex_unlock(&wp->mu);
}

void syn_workpool_free(struct syn_workpool *wp, double grace_s)
{
    if (!wp) return;
    pthread_mutex_lock(&wp->mu);
    wp->stop = 1;
    pthread_cond_signal(&wp->cv);
    pthread_mutex_unlock(&wp->mu);
    pthread_join(wp->thread, NULL);
    if (wp->cloud) wp->cloud->free(wp->cloud);
    if (wp->local) {
        for (int i = 0; i < MAX_CHILDREN; i++)
            if (wp->children[i].pid) kill(wp->children[i].pid, SIGTERM);
        double until = mono_s() + grace_s;
        for (;;) {
            int left = 0;
            reap(wp, mono_s());
            for (int i = 0; i < MAX_CHILDREN; i++) left += wp->children[i].pid != 0;
            if (!left) break;
            if (mono_s() > until) {
                for (int i = 0; i < MAX_CHILDREN; i++)
                    if (wp->children[i].pid) {
                        syn_warn(LOG, "worker %s did not drain in %.0f s: killing it",
                                 wp->children[i].id, grace_s);
                        kill(wp->children[i].pid, SIGKILL);
                        waitpid(wp->children[i].pid, NULL, 0);
                        wp->children[i].pid = 0;
                    }
                break;
            }
            struct timespec nap = {0, 20 * 1000 * 1000};
            nanosleep(&nap, NULL);
        }
    }
    pthread_mutex_destroy(&wp->mu);
    pthread_cond_destroy(&wp->cv);
    free(wp);
}
