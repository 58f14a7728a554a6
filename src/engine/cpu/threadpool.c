/*
 * The CPU backend's persistent thread pool (see threadpool.h for the contract).
 *
 * One region runs at a time. The caller publishes the region (function, context, task count)
 * and bumps a generation counter; workers notice the new generation, take tasks from a shared
 * atomic counter alongside the caller, and each reports once that it has no more to take. The
 * caller returns when every worker has reported, so the region's descriptor is never rewritten
 * while a worker might still read it.
 *
 * Waiting: a worker that finds no new region spins (with a pause hint) for about SPIN_NS, since
 * a decode step runs its regions a few microseconds apart, then sleeps on a futex keyed on the
 * generation word. The caller only makes the wake-up system call when some worker has said it
 * is asleep, so back-to-back regions cost a few cache-line transfers and no system calls.
 *
 * Not for: concurrent regions from several threads on one pool, or a region started from inside
 * a task. Both are detected and run serially on the calling thread instead of deadlocking.
 * Linux only (futex); other systems would need a condition variable in worker_sleep/wake_all.
 */
#include "engine/cpu/threadpool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* How long an idle worker polls for the next region before it sleeps. */
#define SPIN_NS 50000

/* Keeps the fields that different threads write on different cache lines. */
#define CACHE_LINE 64

struct syn_pool {
    /* ---- written by the caller when a region starts, read by the workers ---- */
    _Alignas(CACHE_LINE) _Atomic uint32_t gen; /* region number; a change means "new region";
                                                  also the futex word sleepers wait on */
    syn_pool_fn fn;                            /* the region's task function */
    void *ctx;                                 /* its context */
    int n_tasks;                               /* number of tasks in the region */
    _Atomic int stop;                          /* set by syn_pool_free: workers exit */
    int n_threads;                             /* pool size, caller included */
    pthread_t *threads;                        /* n_threads - 1 workers; from malloc() */

    /* ---- shared by everyone during a region ---- */
    _Alignas(CACHE_LINE) _Atomic int next; /* next task index to hand out */

    /* ---- written by the workers ---- */
    _Alignas(CACHE_LINE) _Atomic int pending; /* workers not yet done with the current region */
    _Atomic int sleepers;                     /* workers inside (or about to enter) futex wait */

    /* ---- guards against misuse ---- */
    _Alignas(CACHE_LINE) _Atomic int busy; /* 1 while a region runs; a second caller runs
                                              serially instead of waiting */
};

/* Argument of a worker thread: its pool and its thread number (1..n_threads-1). */
struct worker_arg {
    struct syn_pool *pool; /* not owned */
    int index;             /* thread number passed to tasks */
};

/* The pool whose task the current thread is running, to detect nested regions. */
static _Thread_local const struct syn_pool *tls_in_region;

/* ---- waiting ---- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sleeps while *word == expected (or until a spurious wake-up; callers re-check). */
static void futex_wait(_Atomic uint32_t *word, uint32_t expected)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Waits until the generation differs from seen; returns the new one. */
static uint32_t wait_for_region(struct syn_pool *p, uint32_t seen)
{
    uint32_t g;
    uint64_t start = 0;
    for (unsigned i = 1;; i++) {
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
        cpu_relax();
        if ((i & 63) != 0) continue;
        /* Reading the clock every 64 polls keeps its cost out of the wake-up latency. */
        uint64_t t = now_ns();
        if (start == 0) start = t;
        if (t - start < SPIN_NS) continue;

        /* Announce the sleep before the final check: the caller bumps gen and then reads
         * sleepers (both seq_cst), so either it sees us and wakes us, or we see its new gen.
         * futex_wait itself returns at once if gen already changed. */
        atomic_fetch_add(&p->sleepers, 1);
        while ((g = atomic_load(&p->gen)) == seen) futex_wait(&p->gen, seen);
        atomic_fetch_sub(&p->sleepers, 1);
        return g;
    }
}

/* ---- running tasks ---- */

/* Takes tasks from the shared counter until none are left. */
static void run_tasks(struct syn_pool *p, syn_pool_fn fn, void *ctx, int n_tasks, int thread)
{
    for (;;) {
        int task = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (task >= n_tasks) break;
        fn(ctx, task, thread);
    }
}

static void *worker_main(void *argp)
{
    struct worker_arg *arg = argp;
    struct syn_pool *p = arg->pool;
    int index = arg->index;
    free(arg);

    /* Generation 0 is the pool's state at creation. Reading gen here instead would lose the
     * first region when it is published before this thread gets to run. */
    uint32_t seen = 0;
    for (;;) {
        seen = wait_for_region(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        tls_in_region = p;
        run_tasks(p, p->fn, p->ctx, p->n_tasks, index);
        tls_in_region = NULL;
        /* Release: our task side effects become visible to the caller, who acquires. */
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
    return NULL;
}

/* ---- public API ---- */

struct syn_pool *syn_pool_new(int n_threads)
{
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    struct syn_pool *p = aligned_alloc(CACHE_LINE, sizeof *p);
    if (!p) return NULL;
    atomic_init(&p->gen, 0);
    p->fn = NULL;
    p->ctx = NULL;
    p->n_tasks = 0;
    atomic_init(&p->stop, 0);
    p->n_threads = n_threads;
    atomic_init(&p->next, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->busy, 0);
    p->threads = NULL;
    if (n_threads == 1) return p;

    p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
    if (!p->threads) goto fail;
    int started = 0;
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *arg = malloc(sizeof *arg);
        if (!arg) break;
        arg->pool = p;
        arg->index = i;
        if (pthread_create(&p->threads[i - 1], NULL, worker_main, arg) != 0) {
            free(arg);
            break;
        }
        started++;
    }
    if (started == n_threads - 1) return p;

    /* Partial start: stop the ones that did start, then report failure. */
    p->n_threads = started + 1;
    syn_pool_free(p);
    return NULL;

fail:
    free(p);
    return NULL;
}

void syn_pool_free(struct syn_pool *p)
{
    if (!p) return;
    if (p->n_threads > 1) {
        atomic_store_explicit(&p->stop, 1, memory_order_release);
        atomic_fetch_add(&p->gen, 1);
        futex_wake_all(&p->gen);
        for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->threads[i], NULL);
    }
    free(p->threads);
    free(p);
}

int syn_pool_size(const struct syn_pool *p)
{
    return p ? p->n_threads : 1;
}

void syn_pool_run(struct syn_pool *p, syn_pool_fn fn, void *ctx, int n_tasks)
{
    if (n_tasks <= 0) return;
    /* Serial cases: no pool, one thread, one task, a region started from inside a task, or a
     * second thread using a pool that is already running a region. */
    if (!p || p->n_threads == 1 || n_tasks == 1 || tls_in_region == p ||
        atomic_exchange_explicit(&p->busy, 1, memory_order_acquire) != 0) {
        for (int i = 0; i < n_tasks; i++) fn(ctx, i, 0);
        return;
    }

    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    /* seq_cst: orders the descriptor before gen (release) and gen before reading sleepers. */
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0) futex_wake_all(&p->gen);

    tls_in_region = p;
    run_tasks(p, fn, ctx, n_tasks, 0);
    tls_in_region = NULL;

    /* The workers finish their last task and report; spin, yielding now and then in case one
     * of them has been descheduled on an oversubscribed machine. */
    for (unsigned i = 1; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
        cpu_relax();
        if ((i & 1023) == 0) sched_yield();
    }
    atomic_store_explicit(&p->busy, 0, memory_order_release);
}
