/*
 * `synapse bench`: benchmarks that report ratios measured in one run (the machines are shared
 * and noisy, so absolute numbers from different runs are not compared).
 *
 *   bench engine: the machine's memory read bandwidth, then load time, prefill tokens/s and
 *   decode tokens/s at each batch size for one model, and decode at batch 1 against the
 *   bandwidth floor (bandwidth / bytes of weights read per decode step).
 */
#include "cli.h"

#include "engine/cpu/kernels.h"
#include "engine/cpu/membw.h"
#include "engine/cpu/threadpool.h"
#include "synapse/engine.h"
#include "synapse/sampler.h"
#ifdef SYN_HAVE_CUDA
#include "engine/cuda/cuda.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_BATCHES 16

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void engine_usage(FILE *f)
{
    fprintf(f,
            "Usage: synapse bench engine -m MODEL [--batch 1,4,16,64] [--prompt N] [--gen N]\n"
            "                            [--context N] [--reps R] [-t N] [--backend NAME]\n"
            "                            [--weights MODE] [--e2e]\n"
            "                            [--json]\n\n"
            "Measures, in one run: memory read bandwidth (all threads streaming a 1 GiB buffer),\n"
            "model load time (reading or mapping the weights; then the first token), prefill\n"
            "tokens/s (one sequence of --prompt tokens), and decode tokens/s at each batch size\n"
            "(that many sequences decoding --gen tokens each, in lock-step). Decode at batch 1\n"
            "is compared with the bandwidth floor: bandwidth / bytes of weights one decode step\n"
            "reads. Also what sampling one row costs on the host (temperature 1, no truncation:\n"
            "the API's defaults; the decode figures are the forward pass alone). Medians of\n"
            "--reps runs.\n"
            "With --backend cuda the bandwidth is the GPU's (device-to-device copies, bytes read\n"
            "and written) and the floor is the GPU's.\n\n"
            "Options:\n"
            "  -m, --model PATH   GGUF file or Hugging Face directory (required)\n"
            "      --batch LIST   batch sizes (default 1,4,16)\n"
            "      --prompt N     prefill length (default 128)\n"
            "      --gen N        decode steps per measurement (default 32)\n"
            "      --context N    decode after N tokens of context in each sequence, a\n"
            "                     different text per sequence (default 0: from one token,\n"
            "                     where attention costs next to nothing)\n"
            "      --reps R       repetitions, median reported (default 3)\n"
            "  -t, --threads N    CPU threads (default: all)\n"
            "      --backend NAME cpu or cuda (default: $SYNAPSE_BACKEND, else cpu)\n"
            "      --weights MODE resident or mapped (default: $SYNAPSE_WEIGHTS, else the\n"
            "                     backend's: synapse worker --help)\n"
            "      --e2e          also time generation at each batch size as a client sees it:\n"
            "                     --prompt tokens of prefill then --gen new tokens per sequence,\n"
            "                     greedy, tokens/s = batch x gen / wall time, prefill included\n"
            "      --json         print one JSON object instead of text\n"
            "  -h, --help         show this help\n");
}

static int parse_batches(const char *s, int *out)
{
    int n = 0;
    while (*s && n < MAX_BATCHES) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096) return -1;
        out[n++] = (int)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return *s ? -1 : n;
}

/* Decode throughput: b sequences, each started from one token after ctx tokens of its own (each
 * sequence a different text, in steps of up to the engine's token budget, untimed), then gen
 * lock-step steps. */
static int time_decode(struct syn_engine *e, int b, int gen, int ctx, double *tps)
{
    int seqs[4096];
    struct syn_step_item items[4096];
    int32_t toks[4096];
    int nv = syn_engine_hparams(e)->n_vocab, rc = 0;
    const int chunk = syn_engine_max_batch_tokens(e);
    int32_t *text = ctx > 0 ? malloc(sizeof *text * (size_t)chunk) : NULL;
    if (ctx > 0 && !text) return SYN_ENOMEM;
    for (int i = 0; i < b; i++) {
        seqs[i] = syn_engine_seq_new(e);
        if (seqs[i] < 0) {
            free(text);
            return seqs[i];
        }
        for (int done = 0; done < ctx && rc == 0; done += chunk) {
            int m = ctx - done < chunk ? ctx - done : chunk;
            for (int k = 0; k < m; k++)
                text[k] = (int32_t)(1 + ((i + 1) * 104729 + (done + k) * 7919) % (nv - 1));
            struct syn_step_item it = {seqs[i], text, m, SYN_LOGITS_NONE};
            rc = syn_engine_step(e, &it, 1);
        }
        toks[i] = (int32_t)(1 + (i * 7919) % (nv - 1));
        items[i] = (struct syn_step_item){seqs[i], &toks[i], 1, SYN_LOGITS_LAST};
    }
    free(text);
    if (rc == 0) rc = syn_engine_step(e, items, b);
    double t0 = now_s();
    for (int s = 0; s < gen && rc == 0; s++) {
        for (int i = 0; i < b; i++) toks[i] = (int32_t)(1 + (toks[i] * 31 + s) % (nv - 1));
        rc = syn_engine_step(e, items, b);
    }
    double dt = now_s() - t0;
    for (int i = 0; i < b; i++) syn_engine_seq_free(e, seqs[i]);
    *tps = (double)b * gen / dt;
    return rc;
}

static int time_prefill(struct syn_engine *e, int n, double *tps)
{
    int nv = syn_engine_hparams(e)->n_vocab;
    int32_t *toks = malloc(sizeof *toks * (size_t)n);
    if (!toks) return SYN_ENOMEM;
    for (int i = 0; i < n; i++) toks[i] = (int32_t)(1 + (i * 104729) % (nv - 1));
    int s = syn_engine_seq_new(e), rc = 0;
    const int chunk = syn_engine_max_batch_tokens(e);
    double t0 = now_s();
    for (int done = 0; done < n && rc == 0; done += chunk) {
        int m = n - done < chunk ? n - done : chunk;
        struct syn_step_item it = {s, toks + done, m,
                                   done + m == n ? SYN_LOGITS_LAST : SYN_LOGITS_NONE};
        rc = syn_engine_step(e, &it, 1);
    }
    *tps = n / (now_s() - t0);
    syn_engine_seq_free(e, s);
    free(toks);
    return rc;
}

/* What sampling adds per sequence and step, on the host: syn_sampler_sample with the API's
 * defaults (temperature 1, no truncation: what a request that sets nothing gets) over the
 * logits of one real decode step at batch b, in microseconds per row. The decode figures above
 * time the forward pass alone; a worker samples every row of every step. */
static int time_sampling(struct syn_engine *e, int b, double *us_per_row)
{
    const int nv = syn_engine_hparams(e)->n_vocab;
    int *seqs = calloc((size_t)b, sizeof *seqs), n_seqs = 0, rc = SYN_ENOMEM;
    int32_t *toks = malloc(sizeof *toks * (size_t)b);
    struct syn_step_item *items = malloc(sizeof *items * (size_t)b);
    struct syn_sampling_params sp = syn_sampling_default_params();
    struct syn_sampler *smp = syn_sampler_new(&sp, nv);
    if (!seqs || !toks || !items || !smp) goto out;
    for (int i = 0; i < b; i++, n_seqs++) {
        if ((rc = seqs[i] = syn_engine_seq_new(e)) < 0) goto out;
        toks[i] = (int32_t)(1 + (i * 7919) % (nv - 1));
        items[i] = (struct syn_step_item){seqs[i], &toks[i], 1, SYN_LOGITS_LAST};
    }
    if ((rc = syn_engine_step(e, items, b)) < 0) goto out;
    long rows = 0;
    volatile int32_t sink = 0;
    double t0 = now_s(), dt;
    do {
        for (int r = 0; r < b; r++)
            sink ^= syn_sampler_sample(smp, syn_engine_logits(e, r), NULL, NULL, 0);
        rows += b;
    } while ((dt = now_s() - t0) < 0.2);
    (void)sink;
    *us_per_row = dt * 1e6 / (double)rows;
    rc = SYN_OK;
out:
    for (int i = 0; i < n_seqs; i++) syn_engine_seq_free(e, seqs[i]);
    syn_sampler_free(smp);
    free(seqs);
    free(toks);
    free(items);
    return rc;
}

/* Generation as a client sees it: b sequences each prefill n_prompt tokens (packed into steps
 * of up to max_batch_tokens), then decode gen tokens in lock-step, each picked greedily by
 * syn_engine_sample (on the device when the backend samples there). Tokens/s = b * gen / the
 * whole wall time, prefill included. */
static int time_generate(struct syn_engine *e, int b, int n_prompt, int gen, double *tps)
{
    const int nv = syn_engine_hparams(e)->n_vocab, budget = syn_engine_max_batch_tokens(e);
    int rc = SYN_ENOMEM;
    int *seqs = calloc((size_t)b, sizeof *seqs), *done = calloc((size_t)b, sizeof *done);
    int32_t *prompt = malloc(sizeof *prompt * (size_t)n_prompt);
    int32_t *next = malloc(sizeof *next * (size_t)b),
            *row_tok = malloc(sizeof *row_tok * (size_t)b);
    struct syn_step_item *items = malloc(sizeof *items * (size_t)b);
    struct syn_sampler **smp = malloc(sizeof *smp * (size_t)b);
    struct syn_sampling_params sp = syn_sampling_default_params();
    sp.temperature = 0.0f;
    struct syn_sampler *greedy = syn_sampler_new(&sp, nv); /* stateless: one for every row */
    int n_seqs = 0;
    if (!seqs || !done || !prompt || !next || !row_tok || !items || !smp || !greedy) goto out;
    for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)(1 + (i * 104729) % (nv - 1));
    for (int i = 0; i < b; i++, n_seqs++) {
        smp[i] = greedy;
        if ((rc = seqs[i] = syn_engine_seq_new(e)) < 0) goto out;
    }
    double t0 = now_s();
    rc = SYN_OK;
    for (int first = 0; first < b && rc == 0;) { /* prefill */
        int n = 0, room = budget;
        for (int i = first; i < b && room > 0; i++) {
            int m = n_prompt - done[i] < room ? n_prompt - done[i] : room;
            items[n++] =
                (struct syn_step_item){seqs[i], prompt + done[i], m,
                                       done[i] + m == n_prompt ? SYN_LOGITS_LAST : SYN_LOGITS_NONE};
            done[i] += m;
            room -= m;
        }
        if ((rc = syn_engine_step(e, items, n)) < 0) break;
        /* the first token of each sequence whose prompt just ended: item k is sequence
         * first + k, and its logits row comes in item order */
        int rows = 0;
        for (int k = 0; k < n; k++) rows += items[k].logits == SYN_LOGITS_LAST;
        if (rows > 0 && (rc = syn_engine_sample(e, smp, rows, row_tok)) < 0) break;
        for (int k = 0, r = 0; k < n; k++)
            if (items[k].logits == SYN_LOGITS_LAST) next[first + k] = row_tok[r++];
        while (first < b && done[first] == n_prompt) first++;
    }
    for (int s = 1; s < gen && rc == 0; s++) { /* decode */
        for (int i = 0; i < b; i++)
            items[i] = (struct syn_step_item){seqs[i], &next[i], 1, SYN_LOGITS_LAST};
        if ((rc = syn_engine_step(e, items, b)) == 0) rc = syn_engine_sample(e, smp, b, next);
    }
    *tps = (double)b * gen / (now_s() - t0);
out:
    for (int i = 0; i < n_seqs; i++) syn_engine_seq_free(e, seqs[i]);
    syn_sampler_free(greedy);
    free(seqs);
    free(done);
    free(prompt);
    free(next);
    free(row_tok);
    free(items);
    free(smp);
    return rc;
}

static int bench_engine(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},
        {"batch", required_argument, 0, 'b'},
        {"prompt", required_argument, 0, 'p'},
        {"gen", required_argument, 0, 'g'},
        {"reps", required_argument, 0, 'r'},
        {"threads", required_argument, 0, 't'},
        {"backend", required_argument, 0, 'B'},
        {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},
        {"e2e", no_argument, 0, 'E'},
        {"context", required_argument, 0, 'C'},
        {"weights", required_argument, 0, 'W'},
        {0, 0, 0, 0},
    };
    const char *cmd = "bench engine", *model = NULL, *backend = NULL, *weights = NULL;
    int batches[MAX_BATCHES] = {1, 4, 16}, nb = 3, json = 0, e2e = 0, c;
    long prompt = 128, gen = 32, reps = 3, threads = 0, context = 0;
    while ((c = cli_getopt(cmd, argc, argv, "m:t:h", opts)) != -1) {
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 'b':
            nb = parse_batches(optarg, batches);
            if (nb < 1) return cli_usage_error(cmd, "--batch expects a list like 1,4,16");
            break;
        case 'p':
            if (cli_parse_long(cmd, "--prompt", optarg, 1, 1 << 16, &prompt)) return 2;
            break;
        case 'g':
            if (cli_parse_long(cmd, "--gen", optarg, 1, 1 << 16, &gen)) return 2;
            break;
        case 'C':
            if (cli_parse_long(cmd, "--context", optarg, 0, 1 << 16, &context)) return 2;
            break;
        case 'r':
            if (cli_parse_long(cmd, "--reps", optarg, 1, 100, &reps)) return 2;
            break;
        case 't':
            if (cli_parse_long(cmd, "--threads", optarg, 0, 1024, &threads)) return 2;
            break;
        case 'B':
            backend = optarg;
            break;
        case 'W':
            weights = optarg;
            break;
        case 'E':
            e2e = 1;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            engine_usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!model) return cli_usage_error(cmd, "--model is required");
    int max_b = 1;
    for (int i = 0; i < nb; i++)
        if (batches[i] > max_b) max_b = batches[i];

    struct syn_engine_params ep = syn_engine_default_params();
    if (backend) ep.backend = backend;
    if (weights) ep.weights = weights;
    const int on_gpu = !strcmp(ep.backend, "cuda");

    /* bandwidth first (the CPU's with a pool of the same size, then freed; or the GPU's) */
    int n_threads = 0;
    double bw[100], gbs = 0;
    if (!on_gpu) {
        struct syn_pool *pool = syn_pool_new((int)threads);
        if (!pool) return 1;
        n_threads = syn_pool_size(pool);
        for (int r = 0; r < reps; r++) bw[r] = syn_membw_read_gbs(pool, 0, 3);
        syn_pool_free(pool);
        gbs = median(bw, (int)reps);
    }
    ep.model_path = model;
    ep.n_threads = (int)threads;
    ep.max_seqs = max_b;
    ep.max_batch_tokens = prompt > max_b ? (prompt < 512 ? (int)prompt : 512) : max_b;
    ep.n_ctx = (int)((prompt > context ? prompt : context) + gen + 8);
    ep.kv_cache_bytes = 0;
    if (context > 0) ep.kv_cache_bytes = (size_t)1 << 40; /* every sequence at full length */
    if (e2e) {
        /* prompts packed into big steps, and every sequence at full length in the KV pool (the
         * engine caps the pool at what max_seqs full sequences need) */
        long t = prompt * max_b < 2048 ? prompt * max_b : 2048;
        ep.max_batch_tokens = t > max_b ? (int)t : max_b;
        ep.kv_cache_bytes = (size_t)1 << 40;
    }
    char err[512];
    struct syn_engine *e = NULL;
    double t0 = now_s();
    if (syn_engine_load(&ep, &e, err, sizeof err) < 0) {
        fprintf(stderr, "synapse bench engine: %s\n", err);
        return 1;
    }
    double t_load = now_s() - t0, tps;
    int rc = time_decode(e, 1, 1, 0, &tps); /* the first token */
    double t_first = now_s() - t0;
    if (rc) goto fail;
    const char *be_name = syn_engine_backend_name(e), *device = "cpu";
    if (on_gpu) {
        gbs = -1;
#ifdef SYN_HAVE_CUDA
        if (!strcmp(be_name, "cuda")) {
            for (int r = 0; r < reps; r++) bw[r] = syn_cuda_membw_gbs();
            gbs = median(bw, (int)reps);
            device = syn_cuda_device_name();
        }
#endif
        if (gbs <= 0) { /* fell back to the CPU: measure its bandwidth after all */
            struct syn_pool *pool = syn_pool_new((int)threads);
            if (!pool) goto fail;
            n_threads = syn_pool_size(pool);
            for (int r = 0; r < reps; r++) bw[r] = syn_membw_read_gbs(pool, 0, 3);
            syn_pool_free(pool);
            gbs = median(bw, (int)reps);
        }
    }
    double pf[100], dec[MAX_BATCHES][100], pf_med, dec_med[MAX_BATCHES], gen_med[MAX_BATCHES];
    for (int r = 0; r < reps; r++)
        if ((rc = time_prefill(e, (int)prompt, &pf[r]))) goto fail;
    pf_med = median(pf, (int)reps);
    for (int i = 0; i < nb; i++) {
        for (int r = 0; r < reps; r++)
            if ((rc = time_decode(e, batches[i], (int)gen, (int)context, &dec[i][r]))) goto fail;
        dec_med[i] = median(dec[i], (int)reps);
        gen_med[i] = 0;
        if (!e2e) continue;
        for (int r = 0; r < reps; r++)
            if ((rc = time_generate(e, batches[i], (int)prompt, (int)gen, &dec[i][r]))) goto fail;
        gen_med[i] = median(dec[i], (int)reps);
    }
    double sample_us[100];
    for (int r = 0; r < reps; r++)
        if ((rc = time_sampling(e, max_b, &sample_us[r]))) goto fail;
    double sample_med = median(sample_us, (int)reps);
    uint64_t wb = syn_engine_weight_bytes(e);
    double floor_tps = gbs * 1e9 / (double)wb;
    double b1 = 0;
    for (int i = 0; i < nb; i++)
        if (batches[i] == 1) b1 = dec_med[i];
    if (json) {
        printf("{\"model\":\"%s\",\"backend\":\"%s\",\"device\":\"%s\",\"threads\":%d,"
               "\"isa\":\"%s\",\"weight_bytes\":%llu,"
               "\"membw_gbs\":%.2f,\"floor_tokens_per_s\":%.2f,\"load_s\":%.4f,"
               "\"first_token_s\":%.4f,\"prompt_tokens\":%ld,\"prefill_tokens_per_s\":%.2f,"
               "\"gen_tokens\":%ld,\"decode_context\":%ld,\"decode\":[",
               model, be_name, device, n_threads, syn_cpu_kernels_isa(), (unsigned long long)wb,
               gbs, floor_tps, t_load, t_first, prompt, pf_med, gen, context);
        for (int i = 0; i < nb; i++)
            printf("%s{\"batch\":%d,\"tokens_per_s\":%.2f%s", i ? "," : "", batches[i], dec_med[i],
                   "}");
        printf("]");
        if (e2e) {
            printf(",\"generate\":[");
            for (int i = 0; i < nb; i++)
                printf("%s{\"batch\":%d,\"tokens_per_s\":%.2f}", i ? "," : "", batches[i],
                       gen_med[i]);
            printf("]");
        }
        if (b1 > 0) printf(",\"batch1_floor_ratio\":%.4f", b1 / floor_tps);
        printf(",\"sample_us_per_row\":%.3f}\n", sample_med);
    } else {
        printf("model            %s\n", model);
        if (!strcmp(be_name, "cpu")) {
            printf("threads          %d (kernels %s)\n", n_threads, syn_cpu_kernels_isa());
            printf("memory bandwidth %.2f GB/s (read, all threads)\n", gbs);
        } else {
            printf("backend          %s (%s)\n", be_name, device);
            printf("memory bandwidth %.2f GB/s (device copies, read + write)\n", gbs);
        }
        printf("weights/step     %.1f MiB -> floor %.1f tokens/s at batch 1\n",
               (double)wb / 1048576.0, floor_tps);
        printf("load             %.3f s (map + first token %.3f s)\n", t_load, t_first);
        printf("prefill          %.1f tokens/s (%ld tokens)\n", pf_med, prompt);
        for (int i = 0; i < nb; i++) {
            printf("decode batch %-3d %.1f tokens/s", batches[i], dec_med[i]);
            if (context > 0) printf("  (after %ld tokens of context)", context);
            if (b1 > 0) printf("  (%.2fx batch 1)", dec_med[i] / b1);
            if (batches[i] == 1) printf("  (%.0f%% of floor)", 100.0 * b1 / floor_tps);
            printf("\n");
        }
        for (int i = 0; i < nb && e2e; i++)
            printf("generate b %-5d %.1f tokens/s (%ld prompt + %ld new per sequence, prefill "
                   "included)\n",
                   batches[i], gen_med[i], prompt, gen);
        printf("sampling         %.1f us per row (temperature 1, host)\n", sample_med);
    }
    syn_engine_free(e);
    return 0;
fail:
    fprintf(stderr, "synapse bench engine: step failed: %s\n", syn_strerror(rc));
    syn_engine_free(e);
    return 1;
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: synapse bench SUBCOMMAND [ARGS...]\n\n"
               "Subcommands:\n"
               "  engine   decode/prefill tokens/s against memory bandwidth, per batch size\n"
               "  worker   the queue hop and the worker's batching gain against the engine\n"
               "  load     open-loop load (Poisson or a trace) against an OpenAI-compatible URL\n"
               "  sim      simulate the autoscaled pool over a trace: cost and SLO per policy\n\n"
               "Run 'synapse bench SUBCOMMAND --help' for its options.\n");
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "engine")) {
        optind = 1;
        return bench_engine(argc - 1, argv + 1);
    }
    if (!strcmp(argv[1], "worker")) {
        optind = 1;
        return cmd_bench_worker(argc - 1, argv + 1);
    }
    if (!strcmp(argv[1], "load")) {
        optind = 1;
        return cmd_bench_load(argc - 1, argv + 1);
    }
    if (!strcmp(argv[1], "sim")) {
        optind = 1;
        return cmd_bench_sim(argc - 1, argv + 1);
    }
    return cli_usage_error("bench", "unknown subcommand '%s'", argv[1]);
}
