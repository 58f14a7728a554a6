/*
 * Flags from the environment and from a config file, for commands whose every flag may come
 * from either (`synapse up`). Precedence: config file < environment < command line. The result
 * is a new argv that getopt reads as usual: "--flag value" pairs from the file, then from the
 * environment, then the real arguments, so later ones win.
 *
 * Environment: --max-workers is SYNAPSE_MAX_WORKERS (upper case, '-' to '_'); a flag without a
 * value is set by any non-empty value other than "0".
 * Config file: one "name = value" (or "name value") per line, '#' comments, names as the long
 * flags without dashes.
 */
#include "cli.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct argvec {
    char **v; /* from malloc; strings from strdup */
    int n, cap;
};

static int push(struct argvec *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        int nc = a->cap ? a->cap * 2 : 32;
        char **nv = realloc(a->v, sizeof *nv * (size_t)nc);
        if (!nv) return -1;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n] = strdup(s);
    if (!a->v[a->n]) return -1;
    a->n++;
    a->v[a->n] = NULL;
    return 0;
}

static const struct option *find(const struct option *opts, const char *name)
{
    for (; opts->name; opts++)
        if (!strcmp(opts->name, name)) return opts;
    return NULL;
}

static int add_flag(struct argvec *a, const struct option *o, const char *value)
{
    char flag[128];
    snprintf(flag, sizeof flag, "--%s", o->name);
    if (o->has_arg == no_argument) {
        if (!*value || !strcmp(value, "0") || !strcasecmp(value, "false")) return 0;
        return push(a, flag);
    }
    if (push(a, flag) || push(a, value)) return -1;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

int cli_expand_args(const char *cmd, int argc, char **argv, const struct option *opts,
                    const char *config_path, int *out_argc, char ***out_argv)
{
    struct argvec a = {0};
    if (push(&a, argv[0])) goto oom;
    if (config_path) {
        FILE *f = fopen(config_path, "r");
        if (!f) {
            cli_usage_error(cmd, "cannot read config file '%s'", config_path);
            goto fail;
        }
        char line[4096];
        int ln = 0;
        while (fgets(line, sizeof line, f)) {
            ln++;
            char *hash = strchr(line, '#');
            if (hash) *hash = 0;
            char *s = trim(line);
            if (!*s) continue;
            char *sep = s + strcspn(s, "= \t");
            char *val = sep;
            if (*sep) {
                *sep = 0;
                val = trim(sep + 1);
                if (*val == '=') val = trim(val + 1);
            }
            const struct option *o = find(opts, s);
            if (!o || !strcmp(s, "config") || !strcmp(s, "help")) {
                fclose(f);
                cli_usage_error(cmd, "%s:%d: unknown setting '%s'", config_path, ln, s);
                goto fail;
            }
            if (add_flag(&a, o, val)) {
                fclose(f);
                goto oom;
            }
        }
        fclose(f);
    }
    for (const struct option *o = opts; o->name; o++) {
        if (!strcmp(o->name, "help") || !strcmp(o->name, "config")) continue;
        char env[160] = "SYNAPSE_";
        size_t k = strlen(env);
        for (const char *c = o->name; *c && k < sizeof env - 1; c++)
            env[k++] = *c == '-' ? '_' : (char)toupper((unsigned char)*c);
        env[k] = 0;
        const char *v = getenv(env);
        if (v && *v && add_flag(&a, o, v)) goto oom;
    }
    for (int i = 1; i < argc; i++)
        if (push(&a, argv[i])) goto oom;
    *out_argc = a.n;
    *out_argv = a.v;
    return 0;
oom:
    fprintf(stderr, "synapse %s: out of memory\n", cmd);
fail:
    cli_free_args(a.n, a.v);
    return -1;
}

void cli_free_args(int argc, char **argv)
{
    if (!argv) return;
    for (int i = 0; i < argc; i++) free(argv[i]);
    free(argv);
}
