/* The engine's two attention paths against each other in one process: B sequences, each with
 * CTX tokens of its own context (a different text per sequence), then blocks of 8 lock-step
 * decode steps at positions CTX .. CTX+7, alternating the AVX-512 path and the generic one
 * (syn_cpu_attention_force_generic) block by block after an untimed round of each, the
 * sequences truncated back to CTX after each block so that both paths see the same positions.
 * Prints the mean step time of each and their ratio. Not a test; on a machine without AVX-512 both columns are the generic path.
 *   cc -O2 -Iinclude -Isrc -pthread bench/attention_ab.c build/libsynapse.a \
 *      -lhiredis -levent -ljansson -lcurl -lssl -lcrypto -lm -o /tmp/attention_ab
 *   /tmp/attention_ab MODEL B CTX [THREADS] [ROUNDS] */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/cpu/kernels.h"
#include "synapse/engine.h"

#define MAX_B 64

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL B CTX [THREADS] [ROUNDS]\n", argv[0]);
        return 2;
    }
    const int b = atoi(argv[2]), ctx = atoi(argv[3]);
    const int threads = argc > 4 ? atoi(argv[4]) : 0, rounds = argc > 5 ? atoi(argv[5]) : 10;
    if (b < 1 || b > MAX_B || ctx < 1 || rounds < 1) {
        fprintf(stderr, "B must be 1..%d, CTX and ROUNDS at least 1\n", MAX_B);
        return 2;
    }
    struct syn_engine_params p = syn_engine_default_params();
    p.model_path = argv[1];
    p.n_threads = threads;
    p.max_seqs = b;
    p.max_batch_tokens = 256;
    p.max_logit_rows = b;
    p.n_ctx = ctx + 16;
    char err[512];
    struct syn_engine *e = NULL;
    if (syn_engine_load(&p, &e, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const int nv = syn_engine_hparams(e)->n_vocab;
    int32_t *text = malloc(sizeof *text * 256), next[MAX_B];
    int seqs[MAX_B];
    struct syn_step_item items[MAX_B];
    for (int i = 0; i < b; i++) {
        seqs[i] = syn_engine_seq_new(e);
        for (int done = 0; done < ctx; done += 256) {
            int m = ctx - done < 256 ? ctx - done : 256;
            for (int k = 0; k < m; k++)
                text[k] = (int32_t)(1 + ((i + 1) * 131 + (done + k) * 7919) % (nv - 1));
            struct syn_step_item it = {seqs[i], text, m, SYN_LOGITS_NONE};
            if (syn_engine_step(e, &it, 1)) {
                fprintf(stderr, "prefill failed\n");
                return 1;
            }
        }
        next[i] = 5;
        items[i] = (struct syn_step_item){seqs[i], &next[i], 1, SYN_LOGITS_LAST};
    }
    double t[2] = {0, 0};
    for (int r = -1; r < rounds; r++) /* round -1 warms both paths up, untimed */
        for (int generic = 0; generic < 2; generic++) {
            syn_cpu_attention_force_generic(generic);
            double t0 = now_s();
            for (int s = 0; s < 8; s++)
                if (syn_engine_step(e, items, b)) {
                    fprintf(stderr, "step failed\n");
                    return 1;
                }
            if (r >= 0) t[generic] += now_s() - t0;
            for (int i = 0; i < b; i++) syn_engine_seq_truncate(e, seqs[i], ctx);
        }
    const double steps = 8.0 * rounds, fast = t[0] / steps, slow = t[1] / steps;
    printf("batch %d, positions %d..%d: avx512 %.3f ms/step (%.0f tok/s), generic %.3f ms/step "
           "(%.0f tok/s), time ratio %.3f\n",
           b, ctx, ctx + 7, 1e3 * fast, b / fast, 1e3 * slow, b / slow, fast / slow);
    free(text);
    syn_engine_free(e);
    return 0;
}
