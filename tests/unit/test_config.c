/* Parsing RSTSHIM_*: good values, bad values (default kept, problem said). */
#include "check.h"
#include "config.h"

static int parse(const char *log, const char *events, const char *immediate_ms, const char *tag,
                 const char *fix, struct config *cfg,
                 struct config_problem problems[CONFIG_MAX_PROBLEMS])
{
    struct config_env env = {log, events, immediate_ms, tag, fix, NULL};
    return config_parse(&env, cfg, problems);
}

static void defaults(void)
{
    struct config cfg;
    struct config_problem problems[CONFIG_MAX_PROBLEMS];
    CHECK(parse(NULL, NULL, NULL, NULL, NULL, &cfg, problems) == 0);
    CHECK(cfg.log_target == LOG_TO_STDERR);
    CHECK(!cfg.flagged_only);
    CHECK(cfg.immediate_ms == 100);
    CHECK_STR(cfg.tag, "");
    CHECK(!cfg.fix_drain && !cfg.fix_linger);
}

static void good_values(void)
{
    struct config cfg;
    struct config_problem problems[CONFIG_MAX_PROBLEMS];
    CHECK(parse("/var/log/r.%p.jsonl", "flagged", "250", "pod-7", "drain", &cfg, problems) == 0);
    CHECK(cfg.log_target == LOG_TO_FILE);
    CHECK_STR(cfg.log_path, "/var/log/r.%p.jsonl");
    CHECK(cfg.flagged_only);
    CHECK(cfg.immediate_ms == 250);
    CHECK_STR(cfg.tag, "pod-7");
    CHECK(cfg.fix_drain && !cfg.fix_linger);
    CHECK(parse("stdout", "all", "0", NULL, "linger,drain", &cfg, problems) == 0);
    CHECK(cfg.log_target == LOG_TO_STDOUT);
    CHECK(cfg.immediate_ms == 0);
    CHECK(cfg.fix_drain && cfg.fix_linger);
}

static void bad_values(void)
{
    struct config cfg;
    struct config_problem problems[CONFIG_MAX_PROBLEMS];
    const char *bad_ms[] = {"", "-5", "12ms", "1e3", " 5", "99999999999999999999999", "3600001"};
    for (unsigned i = 0; i < sizeof bad_ms / sizeof bad_ms[0]; i++) {
        CHECK(parse(NULL, NULL, bad_ms[i], NULL, NULL, &cfg, problems) == 1);
        CHECK(cfg.immediate_ms == 100);
        CHECK_STR(problems[0].variable, "RSTSHIM_IMMEDIATE_MS");
        CHECK_STR(problems[0].value, bad_ms[i]);
    }
    CHECK(parse("", "ALL", NULL, NULL, NULL, &cfg, problems) == 2);
    CHECK(cfg.log_target == LOG_TO_STDERR);
    CHECK(!cfg.flagged_only);
    CHECK_STR(problems[0].variable, "RSTSHIM_LOG");
    CHECK_STR(problems[1].variable, "RSTSHIM_EVENTS");
    char long_tag[300];
    memset(long_tag, 't', sizeof long_tag - 1);
    long_tag[sizeof long_tag - 1] = '\0';
    CHECK(parse("a\nb", "x", "y", long_tag, "drain,bogus", &cfg, problems) == 5);
    CHECK(!cfg.fix_drain && !cfg.fix_linger);
    CHECK_STR(cfg.tag, "");
}

static void stacks(void)
{
    struct config cfg;
    struct config_problem problems[CONFIG_MAX_PROBLEMS];
    struct config_env on = {.stack = "1"}, off = {.stack = "0"}, bad = {.stack = "yes"};
    CHECK(config_parse(&on, &cfg, problems) == 0 && cfg.stack);
    CHECK(config_parse(&off, &cfg, problems) == 0 && !cfg.stack);
    CHECK(config_parse(&bad, &cfg, problems) == 1 && !cfg.stack);
    CHECK_STR(problems[0].variable, "RSTSHIM_STACK");
}

static void path_expansion(void)
{
    char out[64];
    CHECK(config_expand_path("/tmp/r.%p.log", 4242, out, sizeof out) == 0);
    CHECK_STR(out, "/tmp/r.4242.log");
    CHECK(config_expand_path("%p-%p%%p", 7, out, sizeof out) == 0);
    CHECK_STR(out, "7-7%p");
    CHECK(config_expand_path("/tmp/plain", 7, out, sizeof out) == 0);
    CHECK_STR(out, "/tmp/plain");
    CHECK(config_expand_path("/tmp/%p", 1234567, out, 10) == -1);
    CHECK(config_expand_path("", 1, out, 0) == -1); /* found by the fuzzer: no room at all */
    CHECK(config_expand_path("", 1, out, 1) == 0);
    CHECK_STR(out, "");
}

void test_config(void)
{
    defaults();
    good_values();
    bad_values();
    stacks();
    path_expansion();
}
