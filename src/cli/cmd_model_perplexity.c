/*
 * `synapse model perplexity`: teacher-forced negative log-likelihood of a text (or of given token
 * ids) under the model. With --dump-logits it also writes every position's logits as raw f32, for
 * cross-checks against an independent reference (scripts/ref_llama.py).
 */
#include "cli.h"

#include "synapse/engine.h"
#include "synapse/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: synapse model perplexity MODEL [--tokens \"ID ID ...\"] [--no-bos]\n"
            "                                 [--dump-logits FILE] [-t N] [--backend NAME]\n\n"
            "Reads text on stdin (or takes --tokens), runs it through the model teacher-forced\n"
            "and prints the number of tokens, the total negative log-likelihood (nats) of\n"
            "tokens 1..n-1 given their prefixes, and the perplexity exp(nll / (n - 1)).\n\n"
            "Options:\n"
            "      --tokens IDS        token ids instead of stdin text (no BOS is added)\n"
            "      --no-bos            do not prepend BOS to the text\n"
            "      --dump-logits FILE  write n x n_vocab little-endian f32 logits (row i: after\n"
            "                          token i)\n"
            "  -t, --threads N         CPU threads (default: all)\n"
            "      --backend NAME      cpu or cuda (default: $SYNAPSE_BACKEND, else cpu)\n"
            "  -h, --help              show this help\n");
}

/* Parses "1 2 3" (spaces or commas) into a malloc'ed array; returns the count or -1. */
static int parse_ids(const char *s, int32_t **out)
{
    size_t cap = 64, n = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < 0 || x > INT32_MAX) {
            free(v);
            return -1;
        }
        if (n == cap) {
            int32_t *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
            cap *= 2;
        }
        v[n++] = (int32_t)x;
        s = end;
    }
    *out = v;
    return (int)n;
}

static char *read_stdin(size_t *len)
{
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

int cmd_model_perplexity(int argc, char **argv)
{
    static const struct option opts[] = {{"tokens", required_argument, 0, 'k'},
                                         {"no-bos", no_argument, 0, 'B'},
                                         {"dump-logits", required_argument, 0, 'd'},
                                         {"threads", required_argument, 0, 't'},
                                         {"backend", required_argument, 0, 'b'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cmd = "model perplexity", *tokens = NULL, *dump = NULL, *backend = NULL;
    int no_bos = 0, c;
    long threads = 0;
    while ((c = cli_getopt(cmd, argc, argv, "t:h", opts)) != -1) {
        switch (c) {
        case 'k':
            tokens = optarg;
            break;
        case 'B':
            no_bos = 1;
            break;
        case 'd':
            dump = optarg;
            break;
        case 'b':
            backend = optarg;
            break;
        case 't':
            if (cli_parse_long(cmd, "--threads", optarg, 0, 1024, &threads)) return 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (optind != argc - 1) return cli_usage_error(cmd, "expects exactly one MODEL argument");
    const char *model = argv[optind];

    int rc = 1, n = 0;
    char err[512];
    int32_t *ids = NULL;
    char *text = NULL;
    FILE *df = NULL;
    struct syn_engine *e = NULL;
    if (tokens) {
        n = parse_ids(tokens, &ids);
        if (n < 0) return cli_usage_error(cmd, "--tokens expects non-negative integers");
    }
    struct syn_engine_params ep = syn_engine_default_params();
    ep.model_path = model;
    ep.n_threads = (int)threads;
    ep.max_seqs = 1;
    ep.max_batch_tokens = 256;
    ep.max_logit_rows = 256;
    if (backend) ep.backend = backend;
    if (syn_engine_load(&ep, &e, err, sizeof err) < 0) {
        fprintf(stderr, "synapse model perplexity: %s\n", err);
        goto out;
    }
    const struct syn_tokenizer *tok = syn_engine_tokenizer(e);
    const int n_vocab = syn_engine_hparams(e)->n_vocab;
    if (!tokens) {
        size_t len;
        text = read_stdin(&len);
        if (!text) goto out;
        /* a trailing newline from echo or a file is not part of the text */
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r')) len--;
        n = syn_tokenizer_encode(tok, text, len, !no_bos, 0, NULL, 0);
        if (n < 0 || !(ids = malloc(sizeof *ids * (size_t)(n + 1)))) goto out;
        syn_tokenizer_encode(tok, text, len, !no_bos, 0, ids, n);
    }
    if (n < 2) {
        fprintf(stderr, "synapse model perplexity: need at least 2 tokens, got %d\n", n);
        goto out;
    }
    if (n > syn_engine_n_ctx(e)) {
        fprintf(stderr, "synapse model perplexity: %d tokens exceed the context of %d\n", n,
                syn_engine_n_ctx(e));
        goto out;
    }
    if (dump && !(df = fopen(dump, "wb"))) {
        fprintf(stderr, "synapse model perplexity: cannot write %s: %s\n", dump, strerror(errno));
        goto out;
    }
    int seq = syn_engine_seq_new(e);
    double nll = 0.0;
    const int chunk = syn_engine_max_logit_rows(e);
    for (int done = 0; done < n; done += chunk) {
        int m = n - done < chunk ? n - done : chunk;
        struct syn_step_item it = {seq, ids + done, m, SYN_LOGITS_ALL};
        int src = syn_engine_step(e, &it, 1);
        if (src < 0) {
            fprintf(stderr, "synapse model perplexity: step failed: %s\n", syn_strerror(src));
            goto out;
        }
        for (int r = 0; r < m; r++) {
            const float *lg = syn_engine_logits(e, r);
            if (df && fwrite(lg, sizeof(float), (size_t)n_vocab, df) != (size_t)n_vocab) {
                fprintf(stderr, "synapse model perplexity: write to %s failed\n", dump);
                goto out;
            }
            int i = done + r;
            if (i + 1 >= n) continue;
            double mx = -INFINITY, sum = 0.0;
            for (int v = 0; v < n_vocab; v++)
                if (lg[v] > mx) mx = lg[v];
            for (int v = 0; v < n_vocab; v++) sum += exp((double)lg[v] - mx);
            nll -= (double)lg[ids[i + 1]] - mx - log(sum);
        }
    }
    printf("tokens: %d\nnll: %.6f\nperplexity: %.6f\n", n, nll, exp(nll / (n - 1)));
    rc = 0;
out:
    if (df && fclose(df) != 0) rc = 1;
    free(ids);
    free(text);
    syn_engine_free(e);
    return rc;
}
