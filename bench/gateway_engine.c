/* The in-process baseline of bench/gateway.sh: the same 1-token completion the gateway serves
 * (tokenize the prompt, prefill it, sample one token, turn it into text), called directly on the
 * engine, one request after another on one thread. Prints one JSON object: requests/s and the
 * per-request latency p50/p99/p99.9 in ms. Not a test; built by the script against
 * build/libsynapse.a.
 *   gateway_engine MODEL PROMPT N [THREADS] */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "synapse/engine.h"
#include "synapse/sampler.h"
#include "synapse/tokenizer.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: gateway_engine MODEL PROMPT N [THREADS]\n");
        return 2;
    }
    const char *prompt = argv[2];
    int n = atoi(argv[3]);
    char err[512];
    struct syn_engine_params p = syn_engine_default_params();
    p.model_path = argv[1];
    p.n_threads = argc > 4 ? atoi(argv[4]) : 1;
    struct syn_engine *e = NULL;
    if (n < 1 || syn_engine_load(&p, &e, err, sizeof err) != 0) {
        fprintf(stderr, "gateway_engine: %s\n", n < 1 ? "N must be >= 1" : err);
        return 1;
    }
    const struct syn_tokenizer *tok = syn_engine_tokenizer(e);
    int n_vocab = syn_engine_hparams(e)->n_vocab;
    double *lat = malloc((size_t)n * sizeof *lat); /* owned here */
    int32_t toks[512];
    char text[256];
    if (!lat) return 1;
    double t0 = now_s();
    for (int i = -n / 10; i < n; i++) { /* the first tenth warms up and is not counted */
        double ts = now_s();
        int nt = syn_tokenizer_encode(tok, prompt, strlen(prompt), syn_tokenizer_add_bos(tok), 0,
                                      toks, 512);
        struct syn_sampling_params sp = syn_sampling_default_params();
        sp.temperature = 0;
        sp.seed = (uint64_t)i;
        struct syn_sampler *smp = syn_sampler_new(&sp, n_vocab);
        int seq = syn_engine_seq_new(e);
        if (nt <= 0 || !smp || seq < 0) {
            fprintf(stderr, "gateway_engine: cannot start request %d\n", i);
            return 1;
        }
        for (int k = 0; k < nt; k++) syn_sampler_accept(smp, toks[k], 1);
        struct syn_step_item it = {seq, toks, nt, SYN_LOGITS_LAST};
        if (syn_engine_step(e, &it, 1) != 0) {
            fprintf(stderr, "gateway_engine: step failed\n");
            return 1;
        }
        int32_t id = syn_sampler_sample(smp, syn_engine_logits(e, 0), NULL, NULL, 0);
        syn_tokenizer_decode(tok, &id, 1, text, sizeof text);
        syn_engine_seq_free(e, seq);
        syn_sampler_free(smp);
        if (i == -1 || (i < 0 && n / 10 == 0)) t0 = now_s();
        if (i >= 0) lat[i] = now_s() - ts;
    }
    double wall = now_s() - t0;
    qsort(lat, (size_t)n, sizeof *lat, cmp_d);
    printf("{\"requests\":%d,\"requests_per_s\":%.1f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,"
           "\"p999_ms\":%.4f,\"threads\":%d}\n",
           n, n / wall, lat[n / 2] * 1e3, lat[(int)(n * 0.99)] * 1e3, lat[(int)(n * 0.999)] * 1e3,
           p.n_threads);
    free(lat);
    syn_engine_free(e);
    return 0;
}
