/*
 * A private redis-server for integration tests: on a unix socket in the test's scratch
 * directory, no TCP port, killed with the test whatever happens to it (see harness.h).
 */
#include "harness.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static int ping(const char *sock)
{
    struct timeval tv = {0, 200 * 1000};
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);
    if (!c || c->err) {
        if (c) redisFree(c);
        return -1;
    }
    redisReply *r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (r) freeReplyObject(r);
    redisFree(c);
    return ok ? 0 : -1;
}

static int spawn(struct syn_test_redis *r)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        char logpath[700];
        snprintf(logpath, sizeof logpath, "%s/redis.log", r->dir);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", r->sock,
               "--unixsocketperm", "700", "--dir", r->dir, "--save", "", "--appendonly",
               r->aof ? "yes" : "no", "--appendfsync", "always", "--logfile", logpath,
               "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 1000; i++) {
        if (ping(r->sock) == 0) return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            r->pid = 0;
            FAIL("redis-server exited during start (is it installed?) status %d", st);
        }
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    FAIL("redis-server did not answer PING on %s within 10 s", r->sock);
    return -1;
}

int syn_test_redis_start(struct syn_test_redis *r, int aof)
{
    memset(r, 0, sizeof *r);
    static int seq;
    snprintf(r->dir, sizeof r->dir, "%s/redis%d", syn_test_tmpdir(), seq++);
    if (mkdir(r->dir, 0700) != 0 && errno != EEXIST) FAIL("mkdir %s: %s", r->dir, strerror(errno));
    snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    snprintf(r->url, sizeof r->url, "unix://%s", r->sock);
    r->aof = aof;
    return spawn(r);
}

void syn_test_redis_stop(struct syn_test_redis *r)
{
    if (!r->pid) return;
    kill(r->pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            r->pid = 0;
            return;
        }
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

int syn_test_redis_restart(struct syn_test_redis *r)
{
    syn_test_redis_stop(r);
    return spawn(r);
}
