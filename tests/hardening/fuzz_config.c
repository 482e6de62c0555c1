/* libFuzzer harness for the configuration parser (shim/config.c):
 *
 *   clang -fsanitize=fuzzer,address,undefined -Iinclude \
 *         tests/hardening/fuzz_config.c shim/config.c
 *
 * The input's first byte says which of the five variables are set (bit i:
 * variable i present) and the output size for config_expand_path; the rest
 * is split at NUL bytes into the five values (RSTSHIM_LOG, RSTSHIM_EVENTS,
 * RSTSHIM_IMMEDIATE_MS, RSTSHIM_TAG, RSTSHIM_FIX), in that order.  Invariants checked
 * (abort() on violation, so libFuzzer keeps the input):
 *   - config_parse never crashes, returns 0..5 problems, each naming one of
 *     the five variables with the value given and a message;
 *   - immediate_ms is within 0..3600000 and is the default 100 whenever the
 *     variable was reported;
 *   - the log: stderr/stdout by name, a file path exactly as given when
 *     accepted, or a problem reported and stderr kept; never both;
 *   - the tag: copied exactly when accepted (< 128 bytes), else "" and a
 *     problem;
 *   - config_expand_path never writes beyond out_size (the buffer is a heap
 *     block of exactly out_size bytes, so ASan sees any overflow), and its
 *     result is what a reference expansion gives, or -1 exactly when that
 *     does not fit. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_config: invariant failed: %s (line %d)\n", #cond, __LINE__);    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const char *const names[5] = {"RSTSHIM_LOG", "RSTSHIM_EVENTS", "RSTSHIM_IMMEDIATE_MS",
                                     "RSTSHIM_TAG", "RSTSHIM_FIX"};

static const struct config_problem *problem_for(const struct config_problem *problems, int count,
                                                const char *name)
{
    for (int i = 0; i < count && i < CONFIG_MAX_PROBLEMS; i++)
        if (!strcmp(problems[i].variable, name))
            return &problems[i];
    return NULL;
}

/* The reference expansion: %p -> pid, %% -> %, anything else as is. */
static size_t reference_expand(const char *pattern, long pid, char *out, size_t cap)
{
    size_t at = 0;
    char digits[32];
    for (const char *p = pattern; *p; p++) {
        const char *piece;
        char one[2] = {*p, 0};
        if (p[0] == '%' && p[1] == 'p') {
            snprintf(digits, sizeof digits, "%ld", pid);
            piece = digits;
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            piece = "%";
            p++;
        } else {
            piece = one;
        }
        size_t n = strlen(piece);
        if (at + n < cap)
            memcpy(out + at, piece, n);
        at += n;
    }
    if (at < cap)
        out[at] = 0;
    return at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t control = data[0];
    /* the four values, NUL-separated, copied so each is a C string */
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = 0;
    const char *values[5] = {NULL, NULL, NULL, NULL, NULL};
    char *at = copy, *end = copy + (size - 1);
    for (int i = 0; i < 5; i++) {
        if (control & (1u << i))
            values[i] = at;
        if (at < end)
            at += strlen(at) + 1;
        if (at > end)
            at = end;
    }

    struct config cfg;
    struct config_problem problems[CONFIG_MAX_PROBLEMS];
    memset(problems, 0xa5, sizeof problems);
    struct config_env env = {values[0], values[1], values[2], values[3], values[4], NULL};
    int count = config_parse(&env, &cfg, problems);
    CHECK(count >= 0 && count <= 5);
    int expected_max = 0;
    for (int i = 0; i < 5; i++)
        expected_max += values[i] != NULL;
    CHECK(count <= expected_max);
    for (int i = 0; i < count; i++) {
        int which = -1;
        for (int k = 0; k < 5; k++)
            if (problems[i].variable && !strcmp(problems[i].variable, names[k]))
                which = k;
        CHECK(which >= 0);
        CHECK(problems[i].value == values[which]);
        CHECK(problems[i].message && problems[i].message[0]);
    }

    CHECK(cfg.immediate_ms >= 0 && cfg.immediate_ms <= 3600000);
    if (problem_for(problems, count, "RSTSHIM_IMMEDIATE_MS") || !values[2])
        CHECK(cfg.immediate_ms == 100);

    const struct config_problem *log_problem = problem_for(problems, count, "RSTSHIM_LOG");
    CHECK(cfg.log_path[sizeof cfg.log_path - 1] == 0 || cfg.log_target != LOG_TO_FILE);
    if (!values[0]) {
        CHECK(cfg.log_target == LOG_TO_STDERR && !log_problem);
    } else if (!strcmp(values[0], "stderr")) {
        CHECK(cfg.log_target == LOG_TO_STDERR && !log_problem);
    } else if (!strcmp(values[0], "stdout")) {
        CHECK(cfg.log_target == LOG_TO_STDOUT && !log_problem);
    } else if (log_problem) {
        CHECK(cfg.log_target == LOG_TO_STDERR);
    } else {
        CHECK(cfg.log_target == LOG_TO_FILE);
        CHECK(!strcmp(cfg.log_path, values[0]));
        CHECK(values[0][0] && !strchr(values[0], '\n'));
    }

    /* a fix is taken only from a value that parsed */
    if (!values[4] || problem_for(problems, count, "RSTSHIM_FIX"))
        CHECK(!cfg.fix_drain && !cfg.fix_linger);

    const struct config_problem *events_problem = problem_for(problems, count, "RSTSHIM_EVENTS");
    if (values[1] && !strcmp(values[1], "flagged"))
        CHECK(cfg.flagged_only && !events_problem);
    else if (values[1] && !strcmp(values[1], "all"))
        CHECK(!cfg.flagged_only && !events_problem);
    else if (values[1])
        CHECK(!cfg.flagged_only && events_problem);

    const struct config_problem *tag_problem = problem_for(problems, count, "RSTSHIM_TAG");
    CHECK(memchr(cfg.tag, 0, sizeof cfg.tag) != NULL);
    if (!values[3]) {
        CHECK(cfg.tag[0] == 0 && !tag_problem);
    } else if (strlen(values[3]) < sizeof cfg.tag) {
        CHECK(!tag_problem && !strcmp(cfg.tag, values[3]));
    } else {
        CHECK(tag_problem && cfg.tag[0] == 0);
    }

    /* config_expand_path on the log value (or the raw input) into an exact-size heap block */
    const char *pattern = values[0] ? values[0] : copy;
    unsigned long out_size = control >> 4; /* 0..15 */
    static long min_out = -1; /* FUZZ_CONFIG_MIN_OUT_SIZE: explore past a known failure */
    if (min_out < 0) {
        const char *v = getenv("FUZZ_CONFIG_MIN_OUT_SIZE");
        min_out = v ? atol(v) : 0;
    }
    if (out_size < (unsigned long)min_out)
        out_size = (unsigned long)min_out;
    if (control & 0x08)
        out_size = out_size * 37 + 1; /* up to 556: room for real paths */
    long pid = (long)(size * 7919) % 4194304;
    if (control & 0x04)
        pid = -pid; /* nonsense, but must not overflow either */
    char *out = malloc(out_size); /* malloc(0) too: ASan flags any byte written there */
    if (!out && out_size) {
        free(copy);
        return 0;
    }
    char *reference = malloc(strlen(pattern) * 24 + 32);
    size_t need = reference_expand(pattern, pid, reference, strlen(pattern) * 24 + 32);
    int ret = config_expand_path(pattern, pid, out, out_size);
    if (need < out_size) {
        CHECK(ret == 0);
        CHECK(!strcmp(out, reference));
    } else {
        CHECK(ret == -1);
    }
    free(reference);
    free(out);
    free(copy);
    return 0;
}
