/* The private redis-server helper itself: starts, answers, persists with AOF across a restart,
 * and is gone when the test ends. */
#include "harness.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>

TEST(redis_helper_starts_and_restarts_with_aof)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 1);
    redisContext *c = redisConnectUnix(r.sock);
    CHECK(c && !c->err);
    redisReply *rep = redisCommand(c, "XADD s * k v");
    CHECK(rep && rep->type == REDIS_REPLY_STRING);
    freeReplyObject(rep);
    redisFree(c);

    syn_test_redis_restart(&r);
    c = redisConnectUnix(r.sock);
    CHECK(c && !c->err);
    rep = redisCommand(c, "XLEN s");
    CHECK(rep && rep->type == REDIS_REPLY_INTEGER);
    CHECK_EQ_INT(rep->integer, 1);
    freeReplyObject(rep);
    redisFree(c);
    syn_test_redis_stop(&r);
    CHECK_EQ_INT(r.pid, 0);
}

TEST(redis_helper_server_dies_with_crashed_test)
{
    /* A grandchild test process starts a server and crashes; the server must not survive. */
    char pidfile[600];
    snprintf(pidfile, sizeof pidfile, "%s/pid", syn_test_tmpdir());
    pid_t child = fork();
    if (child == 0) {
        struct syn_test_redis r;
        syn_test_redis_start(&r, 0);
        FILE *f = fopen(pidfile, "w");
        fprintf(f, "%d\n", r.pid);
        fclose(f);
        abort();
    }
    int st;
    waitpid(child, &st, 0);
    CHECK(WIFSIGNALED(st));
    char *s = syn_test_read_file(pidfile, NULL);
    CHECK(s);
    int pid = atoi(s);
    free(s);
    CHECK(pid > 0);
    for (int i = 0; i < 200 && kill(pid, 0) == 0; i++) usleep(10000);
    /* a zombie would still answer kill(0); reap-free check through /proc state */
    char path[64], *stat = NULL;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    stat = syn_test_read_file(path, NULL);
    CHECK(!stat || strstr(stat, ") Z ") || strstr(stat, ") X "));
    free(stat);
}
