/*
 * The observability stack of `synapse up --observability`: prometheus-pushgateway (the local
 * workers push to it), prometheus-redis-exporter (pointed at the stack's Redis) and prometheus
 * (scraping the gateway, the Pushgateway and the exporter, with the rules of
 * deploy/prometheus/rules), each from Debian's packages, on loopback ports picked free, with
 * their data and logs in the `up` temporary directory. Every process is stopped by
 * up_obs_stop, and dies with `synapse up` if it is killed (PR_SET_PDEATHSIG).
 */
#ifndef SYN_CLI_UP_OBSERVE_H
#define SYN_CLI_UP_OBSERVE_H

#include <stddef.h>
#include <sys/types.h>

struct up_obs {
    pid_t pushgateway, exporter, prometheus; /* 0 = not running */
    int pushgateway_port, exporter_port, prometheus_port;
    char pushgateway_url[64]; /* "http://127.0.0.1:PORT", for the workers' --pushgateway */
    char rules[4096];         /* the rule files' directory in use, "" if none was found */
};

/* Starts the Pushgateway and redis_exporter (before the pool: workers need the Pushgateway's
 * URL). dir: the temporary directory; redis_url: the stack's Redis. 0, or -1 with a message. */
int up_obs_start_exporters(struct up_obs *o, const char *dir, const char *redis_url, char *err,
                           size_t errlen);

/* Writes dir/prometheus.yml (scrape and evaluation every scrape_s seconds; the gateway at
 * host:gateway_port; the rule files of rules_dir, or of deploy/prometheus/rules found next to
 * the binary or in the working directory when rules_dir is NULL) and starts Prometheus; waits
 * until it is ready. 0, or -1 with a message. */
int up_obs_start_prometheus(struct up_obs *o, const char *dir, const char *host, int gateway_port,
                            double scrape_s, const char *rules_dir, char *err, size_t errlen);

/* SIGTERM to each process started, SIGKILL after 5 s. */
void up_obs_stop(struct up_obs *o);

#endif
