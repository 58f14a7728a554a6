/*
 * A persistent thread pool for the CPU backend: threads are started once at load and reused for
 * every parallel region of every step (no thread creation on the per-token path). The calling
 * thread takes part in the work. Workers spin briefly for the next region before sleeping, since
 * a decode step runs hundreds of short regions back to back.
 */
#ifndef SYN_CPU_THREADPOOL_H
#define SYN_CPU_THREADPOOL_H

struct syn_pool;

/* task in [0, n_tasks); thread in [0, pool size) identifies the executing thread (for
 * per-thread scratch). */
typedef void (*syn_pool_fn)(void *ctx, int task, int thread);

/* n_threads counts the caller; <= 0 means the number of online CPUs. NULL on failure. */
struct syn_pool *syn_pool_new(int n_threads);
void syn_pool_free(struct syn_pool *p);
int syn_pool_size(const struct syn_pool *p);

/* Runs fn for every task and returns when all have finished. Tasks are handed out dynamically
 * (an atomic counter), so their order across threads is not fixed: a task's result must not
 * depend on which thread ran it. p may be NULL (runs serially on the caller). */
void syn_pool_run(struct syn_pool *p, syn_pool_fn fn, void *ctx, int n_tasks);

#endif
