/*
 * Synapse's test harness: each TEST runs in its own forked process, in its own process group,
 * with a timeout and a private scratch directory (syn_test_tmpdir()), so that a crash, a hang or
 * a leftover server in one test cannot take the others down. The runner (tests/harness.c) prints
 * one line per test and ends with exactly "N passed, N failed".
 *
 *   TEST(gguf_rejects_truncated_file) { CHECK(x == 1); CHECK_EQ_INT(a, b); }
 *   TEST_TIMEOUT(slow_thing, 120) { ... }
 *
 * Run a subset with `make test T=gguf` (substring match on "file:test").
 */
#ifndef SYN_TEST_HARNESS_H
#define SYN_TEST_HARNESS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct syn_test {
    const char *file;      /* basename of the defining file, without .c */
    const char *name;      /* the test's name */
    void (*fn)(void);      /* the body; returns = pass, _exit(1) = fail */
    int timeout_s;         /* killed (and failed) after this long */
    struct syn_test *next; /* registration list, in definition order */
};

void syn_test_register(struct syn_test *t);

#define SYN_TEST_DEFINE(tname, tmo)                                                                \
    static void test_##tname(void);                                                                \
    static struct syn_test syn_test_rec_##tname = {__FILE__, #tname, test_##tname, tmo, 0};        \
    __attribute__((constructor)) static void syn_test_reg_##tname(void)                            \
    {                                                                                              \
        syn_test_register(&syn_test_rec_##tname);                                                  \
    }                                                                                              \
    static void test_##tname(void)

#define TEST(tname)              SYN_TEST_DEFINE(tname, 60)
#define TEST_TIMEOUT(tname, sec) SYN_TEST_DEFINE(tname, sec)

/* Failure ends the test's process at once with a message naming the place. */
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                                          \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        fflush(stderr);                                                                            \
        _exit(1);                                                                                  \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) FAIL("check failed: %s", #cond);                                              \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long syn_a_ = (long long)(a), syn_b_ = (long long)(b);                                \
        if (syn_a_ != syn_b_) FAIL("%s == %s: %lld != %lld", #a, #b, syn_a_, syn_b_);              \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *syn_a_ = (a), *syn_b_ = (b);                                                   \
        if (!syn_a_ || !syn_b_ || strcmp(syn_a_, syn_b_) != 0)                                     \
            FAIL("%s == %s:\n    got      \"%s\"\n    expected \"%s\"", #a, #b,                    \
                 syn_a_ ? syn_a_ : "(null)", syn_b_ ? syn_b_ : "(null)");                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double syn_a_ = (double)(a), syn_b_ = (double)(b);                                         \
        if (!(syn_a_ - syn_b_ <= (tol) && syn_b_ - syn_a_ <= (tol)))                               \
            FAIL("%s ~= %s: %.9g vs %.9g (tol %g)", #a, #b, syn_a_, syn_b_, (double)(tol));        \
    } while (0)

/* ---- helpers available to every test ---- */

/* The test's private scratch directory; removed by the runner after the test ends. */
const char *syn_test_tmpdir(void);

/* Path under the shared data directory (../shared, or $SYNAPSE_SHARED). Static buffer. */
const char *syn_test_shared(const char *rel);

/* The synapse binary under test ($SYNAPSE_BIN, default ./synapse). */
const char *syn_test_bin(void);

/* Marks the test skipped (exit code 77) with a reason; counts as neither pass nor fail. */
#define SKIP(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "  skipped: ");                                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        _exit(77);                                                                                 \
    } while (0)

/* Runs a shell command; returns its exit status (or -1 if it did not exit normally).
 * stdout is captured into *out (malloc'ed, caller frees) when out is non-NULL. */
int syn_test_sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reads a whole file into a malloc'ed NUL-terminated buffer; NULL on error. */
char *syn_test_read_file(const char *path, size_t *len);

/* ---- a private redis-server per test ---- */

struct syn_test_redis {
    int pid;        /* the redis-server process, 0 when stopped */
    char dir[512];  /* its working directory (AOF, logs), inside the test's tmpdir */
    char sock[600]; /* its unix socket */
    char url[640];  /* "unix:///path/to/redis.sock", for --redis flags */
    int aof;        /* appendonly yes/no, kept across restarts */
};

/* Starts redis-server on a unix socket in a fresh directory under the test's tmpdir and waits
 * until it answers PING (up to 10 s). aof != 0 turns on appendonly with fsync always. The server
 * dies with the test whatever happens (same process group, PR_SET_PDEATHSIG, and the runner kills
 * the group). Returns 0, or fails the test. */
int syn_test_redis_start(struct syn_test_redis *r, int aof);

/* Stops it (SIGTERM, then SIGKILL after 5 s); keeps its directory so that a restart with
 * syn_test_redis_restart() finds the AOF. */
void syn_test_redis_stop(struct syn_test_redis *r);
int syn_test_redis_restart(struct syn_test_redis *r);

#endif
