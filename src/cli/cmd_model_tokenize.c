/*
 * `synapse model tokenize MODEL [--no-bos] [--special]`: reads all of stdin and prints its token
 * ids, separated by single spaces, on one line. MODEL is a GGUF file (its tokenizer.ggml.* keys),
 * a Hugging Face tokenizer.json, or a directory holding one. For checking the tokenizer against
 * other implementations and for scripts; it loads no weights.
 */
#include "cli.h"

#include "synapse/error.h"
#include "synapse/gguf.h"
#include "synapse/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(f, "Usage: synapse model tokenize MODEL [--no-bos] [--special] < TEXT\n\n"
               "Reads all of standard input and prints its token ids separated by spaces.\n"
               "MODEL is a GGUF file, a tokenizer.json, or a directory with a tokenizer.json.\n\n"
               "Options:\n"
               "  --no-bos    do not prepend BOS (by default it is added when the model says so)\n"
               "  --special   recognise special token texts such as <|eot_id|> in the input\n"
               "  -h, --help  show this help\n");
}

/* Reads all of f into a malloc'ed buffer; NULL on error. */
static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) {
            if (ferror(f)) break;
            *len = n;
            return buf;
        }
        char *nb = realloc(buf, cap * 2);
        if (!nb) break;
        buf = nb;
        cap *= 2;
    }
    free(buf);
    return NULL;
}

/* Loads the tokenizer of path: a directory (its tokenizer.json), a .json file, or GGUF. */
static int load(const char *path, struct syn_tokenizer **t, char *err, size_t errlen)
{
    struct stat st;
    size_t n = strlen(path);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        char *p = malloc(n + sizeof "/tokenizer.json");
        if (!p) return syn_seterr(err, errlen, SYN_ENOMEM, "out of memory");
        memcpy(p, path, n);
        memcpy(p + n, "/tokenizer.json", sizeof "/tokenizer.json");
        int rc = syn_tokenizer_from_json(p, t, err, errlen);
        free(p);
        return rc;
    }
    if (n >= 5 && !strcmp(path + n - 5, ".json"))
        return syn_tokenizer_from_json(path, t, err, errlen);
    struct syn_gguf *g = NULL;
    int rc = syn_gguf_open(path, &g, err, errlen);
    if (rc) return rc;
    rc = syn_tokenizer_from_gguf(g, t, err, errlen);
    syn_gguf_free(g);
    return rc;
}

int cmd_model_tokenize(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"no-bos", no_argument, NULL, 'b'},
        {"special", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int no_bos = 0, special = 0, c, ret = 1;
    struct syn_tokenizer *t = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    char err[1024];

    while ((c = cli_getopt("model tokenize", argc, argv, "h", longopts)) != -1) {
        switch (c) {
        case 'b':
            no_bos = 1;
            break;
        case 's':
            special = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (optind >= argc) return cli_usage_error("model tokenize", "missing the MODEL argument");
    if (optind + 1 < argc)
        return cli_usage_error("model tokenize", "unexpected argument '%s'", argv[optind + 1]);
    const char *path = argv[optind];

    if (load(path, &t, err, sizeof err)) {
        fprintf(stderr, "synapse model tokenize: %s\n", err);
        goto out;
    }
    size_t len = 0;
    if (!(text = read_all(stdin, &len))) {
        fprintf(stderr, "synapse model tokenize: cannot read standard input\n");
        goto out;
    }
    int add_bos = !no_bos && syn_tokenizer_add_bos(t);
    int n = syn_tokenizer_encode(t, text, len, add_bos, special, NULL, 0);
    if (n < 0) {
        fprintf(stderr, "synapse model tokenize: cannot tokenize %zu bytes: %s\n", len,
                syn_strerror(n));
        goto out;
    }
    if (!(ids = malloc(sizeof *ids * ((size_t)n + 1)))) {
        fprintf(stderr, "synapse model tokenize: out of memory for %d tokens\n", n);
        goto out;
    }
    syn_tokenizer_encode(t, text, len, add_bos, special, ids, n);
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    ret = fflush(stdout) == 0 ? 0 : 1;
out:
    free(ids);
    free(text);
    syn_tokenizer_free(t);
    return ret;
}
