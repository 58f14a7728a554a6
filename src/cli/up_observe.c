/* The observability stack of `synapse up --observability` (see up_observe.h). */
#include "up_observe.h"

#include "aws/http.h"
#include "common/proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A loopback port that is free now (the kernel's pick). Another process could take it before
 * the service binds it; the service then fails to start and we say so. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* fork/exec argv with stdout and stderr to logpath, in its own process group (Ctrl-C reaches
 * `synapse up`, which stops the services itself, after the workers). -1 when it cannot start. */
static pid_t spawn(const char *const argv[], const char *logpath)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(1);
        setpgid(0, 0);
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) dup2(null, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        syn_close_inherited_fds();
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

static void stop_pid(pid_t *pid)
{
    if (*pid <= 0) return;
    kill(*pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(*pid, NULL, WNOHANG) == *pid) {
            *pid = 0;
            return;
        }
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    kill(*pid, SIGKILL);
    waitpid(*pid, NULL, 0);
    *pid = 0;
}

/* Polls GET url until it answers 200 (or the process exits, or timeout_s passes). */
static int wait_ready(pid_t pid, const char *url, double timeout_s)
{
    struct syn_http_client *c = syn_http_client_new();
    if (!c) return -1;
    int ok = -1;
    for (int i = 0; i < (int)(timeout_s * 20); i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) break;
        struct syn_http_req rq = {
            .method = "GET", .url = url, .timeout_ms = 1000, .connect_timeout_ms = 500};
        struct syn_http_resp resp;
        char err[256];
        int rc = syn_http_do(c, &rq, &resp, err, sizeof err);
        long status = resp.status;
        syn_http_resp_free(&resp);
        if (rc == 0 && status == 200) {
            ok = 0;
            break;
        }
        struct timespec nap = {0, 50 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    syn_http_client_free(c);
    return ok;
}

int up_obs_start_exporters(struct up_obs *o, const char *dir, const char *redis_url, char *err,
                           size_t errlen)
{
    char listen[64], logf[700], persist[700], url[128];
    /* the Pushgateway: in memory only (the file lives and dies with the temporary directory) */
    o->pushgateway_port = free_port();
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", o->pushgateway_port);
    snprintf(persist, sizeof persist, "--persistence.file=%s/pushgateway.data", dir);
    snprintf(logf, sizeof logf, "%s/pushgateway.log", dir);
    const char *pg[] = {"prometheus-pushgateway", listen, persist, NULL};
    o->pushgateway = spawn(pg, logf);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/-/ready", o->pushgateway_port);
    if (o->pushgateway < 0 || wait_ready(o->pushgateway, url, 15) != 0) {
        seterr(err, errlen,
               "prometheus-pushgateway did not start (see %s; scripts/install-deps.sh "
               "installs it)",
               logf);
        return -1;
    }
    snprintf(o->pushgateway_url, sizeof o->pushgateway_url, "http://127.0.0.1:%d",
             o->pushgateway_port);

    /* redis_exporter: it takes redis://, rediss:// and unix:// addresses */
    char addr[800];
    if (!strncmp(redis_url, "unix://", 7) || !strncmp(redis_url, "redis://", 8) ||
        !strncmp(redis_url, "rediss://", 9))
        snprintf(addr, sizeof addr, "--redis.addr=%s", redis_url);
    else
        snprintf(addr, sizeof addr, "--redis.addr=redis://%s", redis_url);
    char *q = strchr(addr, '?'); /* unix:///path?db=N: the exporter reads every db anyway */
    if (q && !strncmp(addr, "--redis.addr=unix://", 20)) *q = 0;
    o->exporter_port = free_port();
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", o->exporter_port);
    snprintf(logf, sizeof logf, "%s/redis_exporter.log", dir);
    /* the job streams, with their consumer groups' pending and lag */
    const char *ex[] = {"prometheus-redis-exporter", addr, listen, "--check-streams=syn:*:jobs*",
                        NULL};
    o->exporter = spawn(ex, logf);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", o->exporter_port);
    if (o->exporter < 0 || wait_ready(o->exporter, url, 15) != 0) {
        seterr(err, errlen,
               "prometheus-redis-exporter did not start (see %s; scripts/install-deps.sh "
               "installs it)",
               logf);
        return -1;
    }
    return 0;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* deploy/prometheus/rules next to the binary (./synapse, build/asan/synapse) or here. */
static void find_rules(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    out[0] = 0;
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        const char *ups[] = {"", "/..", "/../.."};
        for (int i = 0; i < 3; i++) {
            char cand[PATH_MAX + 64], real[PATH_MAX];
            snprintf(cand, sizeof cand, "%s%s/deploy/prometheus/rules", exe, ups[i]);
            if (is_dir(cand) && realpath(cand, real)) {
                snprintf(out, cap, "%s", real);
                return;
            }
        }
    }
    char real[PATH_MAX];
    if (is_dir("deploy/prometheus/rules") && realpath("deploy/prometheus/rules", real))
        snprintf(out, cap, "%s", real);
}

int up_obs_start_prometheus(struct up_obs *o, const char *dir, const char *host, int gateway_port,
                            double scrape_s, const char *rules_dir, char *err, size_t errlen)
{
    if (rules_dir) {
        char real[PATH_MAX];
        if (!is_dir(rules_dir) || !realpath(rules_dir, real)) {
            seterr(err, errlen, "--rules-dir '%s' is not a directory", rules_dir);
            return -1;
        }
        snprintf(o->rules, sizeof o->rules, "%s", real);
    } else {
        find_rules(o->rules, sizeof o->rules);
    }
    /* a wildcard bind address is scraped on loopback */
    char target[300];
    if (!host || !*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "::"))
        snprintf(target, sizeof target, "127.0.0.1:%d", gateway_port);
    else if (strchr(host, ':'))
        snprintf(target, sizeof target, "[%s]:%d", host, gateway_port);
    else
        snprintf(target, sizeof target, "%s:%d", host, gateway_port);
    o->prometheus_port = free_port();
    int ms = (int)(scrape_s * 1000 + 0.5);
    if (ms < 100) ms = 100;
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/prometheus.yml", dir);
    FILE *f = fopen(cfg, "w");
    if (!f) {
        seterr(err, errlen, "cannot write %s: %s", cfg, strerror(errno));
        return -1;
    }
    fprintf(f,
            "# written by synapse up --observability (see deploy/prometheus/prometheus.yml)\n"
            "global:\n"
            "  scrape_interval: %dms\n"
            "  scrape_timeout: %dms\n"
            "  evaluation_interval: %dms\n",
            ms, ms, ms);
    if (o->rules[0]) fprintf(f, "rule_files:\n  - \"%s/*.yml\"\n", o->rules);
    fprintf(f,
            "scrape_configs:\n"
            "  - job_name: synapse-gateway\n"
            "    static_configs: [{targets: [\"%s\"]}]\n"
            "  - job_name: pushgateway\n"
            "    honor_labels: true\n"
            "    static_configs: [{targets: [\"127.0.0.1:%d\"]}]\n"
            "  - job_name: redis\n"
            "    static_configs: [{targets: [\"127.0.0.1:%d\"]}]\n"
            "  - job_name: prometheus\n"
            "    static_configs: [{targets: [\"127.0.0.1:%d\"]}]\n",
            target, o->pushgateway_port, o->exporter_port, o->prometheus_port);
    fclose(f);
    char cfgarg[720], data[720], listen[64], logf[700], url[128];
    snprintf(cfgarg, sizeof cfgarg, "--config.file=%s", cfg);
    snprintf(data, sizeof data, "--storage.tsdb.path=%s/prometheus-data", dir);
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", o->prometheus_port);
    snprintf(logf, sizeof logf, "%s/prometheus.log", dir);
    const char *pr[] = {"prometheus", cfgarg, data, listen, NULL};
    o->prometheus = spawn(pr, logf);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/-/ready", o->prometheus_port);
    if (o->prometheus < 0 || wait_ready(o->prometheus, url, 30) != 0) {
        seterr(err, errlen,
               "prometheus did not start (see %s; scripts/install-deps.sh installs it)", logf);
        return -1;
    }
    return 0;
}

void up_obs_stop(struct up_obs *o)
{
    stop_pid(&o->prometheus);
    stop_pid(&o->exporter);
    stop_pid(&o->pushgateway);
}
