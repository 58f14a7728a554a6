/*
 * The CPU backend's persistent thread pool (see threadpool.h for the contract).
 *
 * One region runs at a time. The caller publishes the region (function, context, task count),
 * opens a claim word and bumps a generation counter; everyone, the caller included, claims
 * tasks by compare-and-swap on the claim word, and the caller returns once as many tasks have
 * finished as there were. The caller never waits for a worker that has not claimed anything:
 * when the machine is oversubscribed and a worker shares the caller's core (or sleeps), the
 * caller simply runs every task itself, instead of waiting for the scheduler to hand the worker
 * a time slice only to have it find nothing left to do.
 *
 * Claims: the claim word holds (generation << 32 | next task index). Before rewriting the
 * descriptor for a new region the caller closes the word (index CLOSED); a claim is a CAS from
 * the exact word a worker read, made after it read the descriptor, so a CAS that succeeds
 * proves the descriptor it read belongs to the region it claimed from (a newer descriptor would
 * have been published after the word was closed, and acquiring it would make the CAS see that).
 *
 * Waiting: a worker with nothing to claim spins (with a pause hint, yielding after a few
 * microseconds) for about SPIN_NS, since a decode step runs its regions a few microseconds
 * apart, then sleeps on a futex keyed on the generation; it sleeps at once if it finds itself on
 * the caller's core (see wait_for_region). The caller only makes the wake-up system call when
 * some worker has said it is asleep, so back-to-back regions cost a few cache-line transfers
 * and no system calls.
 *
 * Not for: concurrent regions from several threads on one pool, or a region started from inside
 * a task. Both are detected and run serially on the calling thread instead of deadlocking.
 * Linux only (futex); other systems would need a condition variable in futex_wait/wake_all.
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

/* How long an idle worker polls for the next region before it sleeps, and after how long of
 * that it starts yielding between polls. Measured on a 2-core VM, regions of 2 x 5 us tasks:
 * with the other core idle, 6 us per region; with a third process busy on it, 11 us (the
 * caller runs both tasks) where spinning without yields took 21 us. */
#define SPIN_NS        50000
#define YIELD_AFTER_NS 5000

/* Keeps the fields that different threads write on different cache lines. */
#define CACHE_LINE 64

/* Claim-word index meaning "no tasks to hand out" (set while a descriptor is rewritten). */
#define CLOSED 0xffffffffu

struct syn_pool {
    /* ---- the current region, written by the caller ---- */
    _Alignas(CACHE_LINE) _Atomic uint32_t gen; /* bumped once per region; the futex word that
                                                  sleeping workers wait on */
    _Atomic(syn_pool_fn) fn;                   /* the region's task function */
    void *_Atomic ctx;                         /* its context */
    _Atomic int n_tasks;                       /* number of tasks in the region */
    _Atomic int stop;                          /* set by syn_pool_free: workers exit */
    _Atomic int caller_cpu;                    /* the core the caller last started a region on */
    int n_threads;                             /* pool size, caller included */
    pthread_t *threads;                        /* n_threads - 1 workers; from malloc() */

    /* ---- claimed and counted by everyone during a region ---- */
    _Alignas(CACHE_LINE) _Atomic uint64_t claim; /* gen << 32 | next task index, or CLOSED */
    _Alignas(CACHE_LINE) _Atomic int done;       /* tasks of the region that have finished */

    /* ---- written by the workers ---- */
    _Alignas(CACHE_LINE) _Atomic int sleepers; /* workers inside (or entering) futex wait */

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
        /* A worker that shares the caller's core only slows the caller down: it sleeps at
         * once, and its next wake-up lets the scheduler place it afresh (on an idle core if
         * there is one). Elsewhere it spins, yielding between polls after YIELD_AFTER_NS, so
         * that on a busy machine it does not take half a core from someone else to find
         * nothing to do. It must not yield on the caller's core: a thread that keeps
         * yielding looks idle to the load balancer, which then leaves it there for good. */
        if (t - start < SPIN_NS &&
            sched_getcpu() != atomic_load_explicit(&p->caller_cpu, memory_order_relaxed)) {
            if (t - start > YIELD_AFTER_NS) sched_yield();
            continue;
        }

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

/* Claims and runs tasks of whatever region is open until none are left. */
static void run_tasks(struct syn_pool *p, int thread)
{
    uint64_t w = atomic_load_explicit(&p->claim, memory_order_acquire);
    for (;;) {
        uint32_t index = (uint32_t)w;
        if (index == CLOSED) return;
        /* Read the descriptor before claiming: see the file comment for why a successful CAS
         * makes these values the claimed region's. */
        int n = atomic_load_explicit(&p->n_tasks, memory_order_acquire);
        syn_pool_fn fn = atomic_load_explicit(&p->fn, memory_order_acquire);
        void *ctx = atomic_load_explicit(&p->ctx, memory_order_acquire);
        if (index >= (uint32_t)n) return;
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* w now holds the current word */
        fn(ctx, (int)index, thread);
        /* Release: the task's writes become visible to the caller, who acquires done. */
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        w = atomic_load_explicit(&p->claim, memory_order_acquire);
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
        run_tasks(p, index);
        tls_in_region = NULL;
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
    atomic_init(&p->fn, NULL);
    atomic_init(&p->ctx, NULL);
    atomic_init(&p->n_tasks, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->caller_cpu, -1);
    p->n_threads = n_threads;
    atomic_init(&p->claim, CLOSED);
    atomic_init(&p->done, 0);
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
        atomic_store(&p->gen, atomic_load(&p->gen) + 1);
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

    /* Publish: close the claim word first, so that no claim can succeed against a half
     * rewritten descriptor, then the descriptor (release: after the close), then open the word
     * (release: after the descriptor). */
    uint32_t g = atomic_load_explicit(&p->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&p->caller_cpu, sched_getcpu(), memory_order_relaxed);
    atomic_store_explicit(&p->claim, (uint64_t)g << 32 | CLOSED, memory_order_relaxed);
    atomic_store_explicit(&p->n_tasks, n_tasks, memory_order_release);
    atomic_store_explicit(&p->fn, fn, memory_order_release);
    atomic_store_explicit(&p->ctx, ctx, memory_order_release);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->claim, (uint64_t)g << 32, memory_order_release);
    /* seq_cst: orders the bump before reading sleepers (see wait_for_region). */
    atomic_store(&p->gen, g);
    if (atomic_load(&p->sleepers) > 0) futex_wake_all(&p->gen);

    tls_in_region = p;
    run_tasks(p, 0);
    tls_in_region = NULL;

    /* Only tasks that workers claimed can still be running: wait for those, yielding now and
     * then in case their thread has been descheduled on an oversubscribed machine. */
    for (unsigned i = 1; atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks; i++) {
        cpu_relax();
        if ((i & 255) == 0) sched_yield();
    }
    atomic_store_explicit(&p->busy, 0, memory_order_release);
}
