/*
 * The test runner: forks each registered test into its own process group with a private scratch
 * directory and a timeout, kills whatever the test left running, removes its directory, and
 * ends with "N passed, N failed" (", N skipped" when some were skipped).
 *
 * Usage: synapse-tests [SUBSTRING...]   runs the tests whose "file:name" contains any SUBSTRING.
 * SYNAPSE_TEST_JOBS=N runs N tests at a time (default 1).
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

static struct syn_test *g_head, **g_tail = &g_head;
static char g_tmpdir[512];

void syn_test_register(struct syn_test *t)
{
    const char *slash = strrchr(t->file, '/');
    static char names[512][64];
    static int n;
    if (slash) t->file = slash + 1;
    if (n < 512) {
        snprintf(names[n], sizeof names[n], "%s", t->file);
        char *dot = strrchr(names[n], '.');
        if (dot) *dot = 0;
        t->file = names[n++];
    }
    *g_tail = t;
    g_tail = &t->next;
}

const char *syn_test_tmpdir(void)
{
    return g_tmpdir;
}

const char *syn_test_shared(const char *rel)
{
    static char buf[4][1024];
    static int k;
    const char *base = getenv("SYNAPSE_SHARED");
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", base && *base ? base : "../shared", rel);
    return b;
}

const char *syn_test_bin(void)
{
    const char *b = getenv("SYNAPSE_BIN");
    return b && *b ? b : "./synapse";
}

char *syn_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int syn_test_sh(char **out, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (out) {
        char path[600];
        snprintf(path, sizeof path, "%s/sh-out.%d", g_tmpdir, (int)getpid());
        char full[8800];
        snprintf(full, sizeof full, "( %s ) > '%s'", cmd, path);
        int st = system(full);
        *out = syn_test_read_file(path, NULL);
        unlink(path);
        if (!*out) *out = strdup("");
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                char sub[4096];
                snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int matches(const struct syn_test *t, int argc, char **argv)
{
    if (argc <= 1) return 1;
    char full[256];
    snprintf(full, sizeof full, "%s:%s", t->file, t->name);
    for (int i = 1; i < argc; i++)
        if (strstr(full, argv[i])) return 1;
    return 0;
}

struct running {
    struct syn_test *t;
    pid_t pid;
    double start;
    char dir[512];
    char log[600];
};

/* Starts t in a child process; fills r. */
static void start_test(struct syn_test *t, struct running *r)
{
    const char *base = getenv("TMPDIR");
    snprintf(r->dir, sizeof r->dir, "%s/synapse-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(r->dir)) {
        perror("mkdtemp");
        exit(2);
    }
    size_t dl = strlen(r->dir);
    memcpy(r->log, r->dir, dl);
    memcpy(r->log + dl, ".log", 5);
    r->t = t;
    r->start = now_s();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(r->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        snprintf(g_tmpdir, sizeof g_tmpdir, "%s", r->dir);
        setenv("SYNAPSE_TEST_TMPDIR", g_tmpdir, 1);
        t->fn();
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    setpgid(pid, pid);
    r->pid = pid;
}

/* Reports the finished test; returns 0 pass, 1 fail, 2 skip. */
static int finish_test(struct running *r, int status, int timed_out)
{
    double el = now_s() - r->start;
    kill(-r->pid, SIGKILL); /* anything the test left behind in its group */
    int res;
    if (timed_out) {
        printf("FAIL %s:%s (timed out after %d s)\n", r->t->file, r->t->name, r->t->timeout_s);
        res = 1;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("ok   %s:%s (%.2f s)\n", r->t->file, r->t->name, el);
        res = 0;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        printf("skip %s:%s\n", r->t->file, r->t->name);
        res = 2;
    } else if (WIFSIGNALED(status)) {
        printf("FAIL %s:%s (killed by signal %d)\n", r->t->file, r->t->name, WTERMSIG(status));
        res = 1;
    } else {
        printf("FAIL %s:%s (exit %d)\n", r->t->file, r->t->name, WEXITSTATUS(status));
        res = 1;
    }
    if (res != 0 || getenv("SYNAPSE_TEST_VERBOSE")) {
        char *log = syn_test_read_file(r->log, NULL);
        if (log && *log) {
            size_t n = strlen(log);
            const char *p = n > 6000 ? log + n - 6000 : log;
            printf("%s%s", p, p[strlen(p) - 1] == '\n' ? "" : "\n");
        }
        free(log);
    }
    fflush(stdout);
    unlink(r->log);
    rm_rf(r->dir);
    return res;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    int jobs = 1;
    const char *j = getenv("SYNAPSE_TEST_JOBS");
    if (j && atoi(j) > 0) jobs = atoi(j);
    if (jobs > 16) jobs = 16;

    int passed = 0, failed = 0, skipped = 0;
    struct running run[16];
    int nrun = 0;
    struct syn_test *next = g_head;
    for (;;) {
        while (nrun < jobs && next) {
            struct syn_test *t = next;
            next = next->next;
            if (!matches(t, argc, argv)) continue;
            start_test(t, &run[nrun++]);
        }
        if (nrun == 0) break;
        /* Reap whatever finished; kill whatever timed out. */
        struct timespec nap = {0, 5 * 1000 * 1000};
        nanosleep(&nap, NULL);
        for (int i = 0; i < nrun; i++) {
            int status = 0;
            pid_t w = waitpid(run[i].pid, &status, WNOHANG);
            int timed_out = 0;
            if (w == 0) {
                if (now_s() - run[i].start < run[i].t->timeout_s) continue;
                kill(-run[i].pid, SIGKILL);
                waitpid(run[i].pid, &status, 0);
                timed_out = 1;
            }
            int res = finish_test(&run[i], status, timed_out);
            if (res == 0)
                passed++;
            else if (res == 1)
                failed++;
            else
                skipped++;
            run[i] = run[--nrun];
            i--;
        }
    }
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
