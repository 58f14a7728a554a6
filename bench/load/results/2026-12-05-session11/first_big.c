/* The first step at a new batch size, in-process (docs/BENCHMARKS.md, 2026-12-05 session 11):
 * load a model, run 200 one-sequence steps, sleep 0.5 s, then time one step of B new sequences
 * of L tokens each, and five more of the same shape. Built against build/libsynapse.a:
 *   cc -O2 -Iinclude -o first_big first_big.c build/libsynapse.a -ljansson -lm -lpthread
 *   ./first_big MODEL THREADS B L */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "synapse/engine.h"
static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
static double big(struct syn_engine *e, int B, int L)
{
    struct syn_step_item it[256];
    int32_t toks[64];
    for (int i = 0; i < 64; i++) toks[i] = 100 + i;
    for (int b = 0; b < B; b++) {
        it[b].seq = syn_engine_seq_new(e);
        it[b].tokens = toks;
        it[b].n_tokens = L;
        it[b].logits = SYN_LOGITS_LAST;
    }
    double t = now_s();
    syn_engine_step(e, it, B);
    t = now_s() - t;
    for (int b = 0; b < B; b++) syn_engine_seq_free(e, it[b].seq);
    return t * 1e3;
}
int main(int argc, char **argv)
{
    struct syn_engine_params p = syn_engine_default_params();
    p.model_path = argv[1];
    p.n_threads = atoi(argv[2]);
    p.max_seqs = 64;
    int B = atoi(argv[3]), L = atoi(argv[4]);
    char err[256];
    struct syn_engine *e;
    double t0 = now_s();
    if (syn_engine_load(&p, &e, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double tl = now_s() - t0;
    for (int i = 0; i < 200; i++) big(e, 1, L); /* small steps */
    struct timespec ns = {0, 500000000};
    nanosleep(&ns, NULL);
    double first = big(e, B, L);
    double r[5];
    for (int i = 0; i < 5; i++) r[i] = big(e, B, L);
    printf("load %.1f ms  first %dx%d step %.2f ms  then %.2f %.2f %.2f %.2f %.2f\n", tl * 1e3, B,
           L, first, r[0], r[1], r[2], r[3], r[4]);
    return 0;
}
