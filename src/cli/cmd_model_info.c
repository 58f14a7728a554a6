/*
 * `synapse model info MODEL [--all]`: what a model file holds, read without loading it: the GGUF
 * version and alignment, every metadata pair (long values abbreviated unless --all), and the
 * tensor table with each tensor's type, shape, size and offset. A file that does not parse gets
 * the reader's message and exit 1; this command never fixes or guesses.
 *
 * Only GGUF for now; a safetensors directory is reported as such.
 */
#include "cli.h"

#include "synapse/error.h"
#include "synapse/gguf.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Characters of a value shown without --all (strings cut, arrays stop after about this much). */
#define SHORT_VALUE_CHARS 72

static void usage(FILE *f)
{
    fprintf(f, "Usage: synapse model info MODEL [--all]\n\n"
               "Prints what a GGUF model file holds: its version and alignment, every metadata\n"
               "key with its type and value, and a table of the tensors (name, type, shape,\n"
               "bytes, offset in the data section) with totals. The file is checked as it is\n"
               "read; a malformed one is reported with what was wrong and where (exit 1).\n\n"
               "Options:\n"
               "  --all       print long strings and arrays (a vocabulary) in full\n"
               "  -h, --help  show this help\n");
}

static const char *kv_type_name(enum syn_gguf_type t)
{
    static const char *const names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* An upper bound on the characters syn_gguf_format_value writes for kv i: a cut value is short;
 * in full, an escaped byte takes at most 4 characters, a number at most 24 plus its separator,
 * a nested array's summary at most 40. */
static size_t value_bound(const struct syn_gguf *g, int64_t i, int all)
{
    const char *key = syn_gguf_key(g, i), *s;
    size_t len, bound = 64;
    if (!all) return 4096;
    switch (syn_gguf_kv_type(g, i)) {
    case SYN_GGUF_STRING:
        if (syn_gguf_get_str(g, key, &s, &len) == 0) bound += 4 * len;
        break;
    case SYN_GGUF_ARRAY:
        if (syn_gguf_arr_type(g, i) == SYN_GGUF_STRING) {
            for (uint64_t j = 0; j < syn_gguf_arr_n(g, i); j++)
                if (syn_gguf_arr_str(g, i, j, &s, &len) == 0) bound += 4 * len + 8;
        } else {
            bound += 40 * syn_gguf_arr_n(g, i);
        }
        break;
    default:
        break;
    }
    return bound;
}

/* Prints a key or tensor name padded to width. Names are valid UTF-8 (the reader checks) but may
 * hold control bytes; those are shown as \xNN so that a file cannot drive the terminal. */
static void print_name(const char *s, size_t width)
{
    size_t n = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) {
            n += (size_t)printf("\\x%02x", c);
        } else {
            putchar(c);
            n++;
        }
    }
    for (; n < width; n++) putchar(' ');
}

static void print_shape(const struct syn_tensor *t, char *s, size_t cap)
{
    size_t at = 0;
    s[0] = '\0';
    for (int d = 0; d < t->n_dims && at < cap; d++)
        at += (size_t)snprintf(s + at, cap - at, "%s%" PRIu64, d ? " x " : "", t->ne[d]);
}

int cmd_model_info(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"all", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int all = 0, c, rc = 1;
    struct syn_gguf *g = NULL;
    char *val = NULL;
    size_t val_cap = 0;
    char err[512];

    while ((c = cli_getopt("model info", argc, argv, "h", longopts)) != -1) {
        switch (c) {
        case 'a':
            all = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (optind >= argc) return cli_usage_error("model info", "missing the MODEL argument");
    if (optind + 1 < argc)
        return cli_usage_error("model info", "unexpected argument '%s'", argv[optind + 1]);
    const char *path = argv[optind];

    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr,
                "synapse model info: %s: is a directory, not a GGUF file (safetensors model "
                "directories are not supported yet)\n",
                path);
        goto out;
    }
    if (syn_gguf_open(path, &g, err, sizeof err) != 0) {
        fprintf(stderr, "synapse model info: %s: %s\n", path, err);
        goto out;
    }

    printf("file: %s (%zu bytes)\n", path, syn_gguf_size(g));
    printf("gguf version: %" PRIu32 "\n", syn_gguf_version(g));
    printf("alignment: %" PRIu32 "\n", syn_gguf_alignment(g));
    printf("data offset: %zu\n", syn_gguf_data_offset(g));

    int64_t n_kv = syn_gguf_n_kv(g);
    size_t kw = 0;
    for (int64_t i = 0; i < n_kv; i++)
        if (strlen(syn_gguf_key(g, i)) > kw) kw = strlen(syn_gguf_key(g, i));
    printf("\nmetadata: %" PRId64 " keys\n", n_kv);
    for (int64_t i = 0; i < n_kv; i++) {
        size_t need = value_bound(g, i, all);
        if (need > val_cap) {
            free(val);
            val_cap = need;
            if (!(val = malloc(val_cap))) {
                fprintf(stderr, "synapse model info: out of memory (%zu bytes for a value)\n",
                        need);
                goto out;
            }
        }
        syn_gguf_format_value(g, i, val, val_cap, all ? 0 : SHORT_VALUE_CHARS);
        printf("  ");
        print_name(syn_gguf_key(g, i), kw);
        printf("  %-6s  %s\n", kv_type_name(syn_gguf_kv_type(g, i)), val);
    }

    int64_t n_t = syn_gguf_n_tensors(g);
    size_t nw = 4;
    for (int64_t i = 0; i < n_t; i++)
        if (strlen(syn_gguf_tensor(g, i)->name) > nw) nw = strlen(syn_gguf_tensor(g, i)->name);
    printf("\ntensors: %" PRId64 "\n", n_t);
    if (n_t)
        printf("  %-*s  %-7s  %-22s  %12s  %12s\n", (int)nw, "name", "type", "shape", "bytes",
               "offset");
    uint64_t total_bytes = 0, total_elems = 0;
    const uint8_t *data = (const uint8_t *)syn_gguf_base(g) + syn_gguf_data_offset(g);
    for (int64_t i = 0; i < n_t; i++) {
        const struct syn_tensor *t = syn_gguf_tensor(g, i);
        char shape[96];
        print_shape(t, shape, sizeof shape);
        uint64_t nel = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        printf("  ");
        print_name(t->name, nw);
        printf("  %-7s  %-22s  %12" PRIu64 "  %12zu\n", syn_dtype_name(t->type), shape, t->nbytes,
               (size_t)((const uint8_t *)t->data - data));
        total_bytes += t->nbytes;
        total_elems += nel;
    }
    printf("\ntotal: %" PRId64 " tensors, %" PRIu64 " elements, %" PRIu64 " bytes (%.2f MiB)\n",
           n_t, total_elems, total_bytes, (double)total_bytes / (1024.0 * 1024.0));
    rc = 0;
out:
    free(val);
    syn_gguf_free(g);
    return rc;
}
