/* The logging module: levels filter, lines carry level and component, JSON lines are JSON. */
#include "harness.h"
#include "synapse/log.h"

#include <fcntl.h>

/* Runs fn with stderr redirected to a file in the tmpdir; returns the captured text. */
static char *capture_stderr(void (*fn)(void))
{
    char path[600];
    snprintf(path, sizeof path, "%s/stderr.txt", syn_test_tmpdir());
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    dup2(fd, 2);
    close(fd);
    fn();
    dup2(saved, 2);
    close(saved);
    return syn_test_read_file(path, NULL);
}

static void log_some(void)
{
    syn_debug("unit", "debug %d", 1);
    syn_info("unit", "info %d", 2);
    syn_warn("unit", "warn %d", 3);
    syn_error("unit", "error \"quoted\" %d", 4);
}

TEST(log_quiet_by_default)
{
    unsetenv("SYNAPSE_LOG");
    syn_log_init();
    char *out = capture_stderr(log_some);
    CHECK(out);
    CHECK(!strstr(out, "debug 1"));
    CHECK(!strstr(out, "info 2"));
    CHECK(strstr(out, "WARN  unit: warn 3"));
    CHECK(strstr(out, "ERROR unit: error"));
    free(out);
}

TEST(log_level_from_environment)
{
    setenv("SYNAPSE_LOG", "debug", 1);
    syn_log_init();
    char *out = capture_stderr(log_some);
    CHECK(strstr(out, "DEBUG unit: debug 1"));
    CHECK(strstr(out, "INFO  unit: info 2"));
    free(out);
    syn_log_set_level(SYN_LOG_OFF);
    out = capture_stderr(log_some);
    CHECK_EQ_STR(out, "");
    free(out);
}

TEST(log_json_lines)
{
    syn_log_set_level(SYN_LOG_WARN);
    syn_log_set_json(1);
    char *out = capture_stderr(log_some);
    CHECK(strstr(out, "\"level\":\"ERROR\""));
    CHECK(strstr(out, "\"component\":\"unit\""));
    CHECK(strstr(out, "\"msg\":\"error \\\"quoted\\\" 4\""));
    /* one object per line */
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    CHECK_EQ_INT(lines, 2);
    free(out);
}

TEST(log_level_parse)
{
    CHECK_EQ_INT(syn_log_level_parse("info"), SYN_LOG_INFO);
    CHECK_EQ_INT(syn_log_level_parse("WARN"), SYN_LOG_WARN);
    CHECK_EQ_INT(syn_log_level_parse("verbose"), -1);
    CHECK_EQ_INT(syn_log_level_parse(NULL), -1);
}
