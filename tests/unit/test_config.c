/* Parsing RSTSHIM_*: good values, bad values (default kept, problem said). */
#include "check.h"
#include "config.h"

static void defaults(void)
{
    struct config cfg;
    struct config_problem problems[CONFIG_MAX_PROBLEMS];
    CHECK(config_parse(NULL, NULL, NULL, NULL, &cfg, problems) == 0);
    CHECK(cfg.log_target == LOG_TO_STDERR);
    CHECK(!cfg.flagged_only);
    CHECK(cfg.immediate_ms == 100);
    CHECK_STR(cfg.tag, "");
}

static void good_values(void)
{
    struct config cfg;
    struct config_problem problems[CONFIG_MAX_PROBLEMS];
    CHECK(config_parse("/var/log/r.%p.jsonl", "flagged", "250", "pod-7", &cfg, problems) == 0);
    CHECK(cfg.log_target == LOG_TO_FILE);
    CHECK_STR(cfg.log_path, "/var/log/r.%p.jsonl");
    CHECK(cfg.flagged_only);
    CHECK(cfg.immediate_ms == 250);
    CHECK_STR(cfg.tag, "pod-7");
    CHECK(config_parse("stdout", "all", "0", NULL, &cfg, problems) == 0);
    CHECK(cfg.log_target == LOG_TO_STDOUT);
    CHECK(cfg.immediate_ms == 0);
}

static void bad_values(void)
{
    struct config cfg;
    struct config_problem problems[CONFIG_MAX_PROBLEMS];
    const char *bad_ms[] = {"", "-5", "12ms", "1e3", " 5", "99999999999999999999999", "3600001"};
    for (unsigned i = 0; i < sizeof bad_ms / sizeof bad_ms[0]; i++) {
        CHECK(config_parse(NULL, NULL, bad_ms[i], NULL, &cfg, problems) == 1);
        CHECK(cfg.immediate_ms == 100);
        CHECK_STR(problems[0].variable, "RSTSHIM_IMMEDIATE_MS");
        CHECK_STR(problems[0].value, bad_ms[i]);
    }
    CHECK(config_parse("", "ALL", NULL, NULL, &cfg, problems) == 2);
    CHECK(cfg.log_target == LOG_TO_STDERR);
    CHECK(!cfg.flagged_only);
    CHECK_STR(problems[0].variable, "RSTSHIM_LOG");
    CHECK_STR(problems[1].variable, "RSTSHIM_EVENTS");
    char long_tag[300];
    memset(long_tag, 't', sizeof long_tag - 1);
    long_tag[sizeof long_tag - 1] = '\0';
    CHECK(config_parse("a\nb", "x", "y", long_tag, &cfg, problems) == 4);
    CHECK_STR(cfg.tag, "");
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
    path_expansion();
}
