/* Parsing of RSTSHIM_* values (see include/config.h). */
#include "config.h"

#include "format.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMMEDIATE_MS_DEFAULT 100
#define IMMEDIATE_MS_MAX 3600000 /* an hour: beyond that "immediate" means nothing */

static int add_problem(struct config_problem *problems, int count, const char *variable,
                       const char *value, const char *message)
{
    if (count < CONFIG_MAX_PROBLEMS) {
        problems[count].variable = variable;
        problems[count].value = value;
        problems[count].message = message;
    }
    return count + 1;
}

static const char *parse_log(const char *value, struct config *cfg)
{
    if (!strcmp(value, "stderr")) {
        cfg->log_target = LOG_TO_STDERR;
        return NULL;
    }
    if (!strcmp(value, "stdout")) {
        cfg->log_target = LOG_TO_STDOUT;
        return NULL;
    }
    if (value[0] == '\0')
        return "empty path; logging to stderr";
    if (strlen(value) >= sizeof cfg->log_path)
        return "path too long; logging to stderr";
    if (strchr(value, '\n'))
        return "path contains a newline; logging to stderr";
    cfg->log_target = LOG_TO_FILE;
    strcpy(cfg->log_path, value);
    return NULL;
}

static const char *parse_events(const char *value, struct config *cfg)
{
    if (!strcmp(value, "all"))
        cfg->flagged_only = false;
    else if (!strcmp(value, "flagged"))
        cfg->flagged_only = true;
    else
        return "expected \"all\" or \"flagged\"; using all";
    return NULL;
}

static const char *parse_immediate_ms(const char *value, struct config *cfg)
{
    char *end;
    errno = 0;
    long long ms = strtoll(value, &end, 10);
    if (value[0] < '0' || value[0] > '9' || *end || errno)
        return "expected a whole number of milliseconds; using 100";
    if (ms > IMMEDIATE_MS_MAX)
        return "larger than 3600000 ms; using 100";
    cfg->immediate_ms = ms;
    return NULL;
}

static const char *parse_tag(const char *value, struct config *cfg)
{
    if (strlen(value) >= sizeof cfg->tag)
        return "longer than 127 bytes; no tag";
    strcpy(cfg->tag, value);
    format_printable(value, sizeof cfg->tag, cfg->tag_printable, sizeof cfg->tag_printable);
    return NULL;
}

/* "drain", "linger", both comma-separated, or "none". */
static const char *parse_fix(const char *value, struct config *cfg)
{
    bool drain = false, linger = false;
    const char *p = value;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n == 5 && !strncmp(p, "drain", 5))
            drain = true;
        else if (n == 6 && !strncmp(p, "linger", 6))
            linger = true;
        else if (!(n == 4 && !strncmp(p, "none", 4)))
            return "expected \"drain\", \"linger\", \"drain,linger\" or \"none\"; no fix";
        p += n + (p[n] == ',');
    }
    cfg->fix_drain = drain;
    cfg->fix_linger = linger;
    return NULL;
}

static const char *parse_stack(const char *value, struct config *cfg)
{
    if (!strcmp(value, "1"))
        cfg->stack = true;
    else if (strcmp(value, "0") && value[0])
        return "expected 1 or 0; no stacks";
    return NULL;
}

int config_parse(const struct config_env *env, struct config *cfg,
                 struct config_problem problems[CONFIG_MAX_PROBLEMS])
{
    static const struct {
        const char *variable;
        const char *(*parse)(const char *, struct config *);
    } parsers[] = {
        {"RSTSHIM_LOG", parse_log},
        {"RSTSHIM_EVENTS", parse_events},
        {"RSTSHIM_IMMEDIATE_MS", parse_immediate_ms},
        {"RSTSHIM_TAG", parse_tag},
        {"RSTSHIM_FIX", parse_fix},
        {"RSTSHIM_STACK", parse_stack},
    };
    const char *values[] = {env->log, env->events, env->immediate_ms, env->tag, env->fix, env->stack};
    int count = 0;

    memset(cfg, 0, sizeof *cfg);
    cfg->log_target = LOG_TO_STDERR;
    cfg->immediate_ms = IMMEDIATE_MS_DEFAULT;
    for (unsigned i = 0; i < sizeof parsers / sizeof parsers[0]; i++) {
        if (!values[i])
            continue;
        const char *message = parsers[i].parse(values[i], cfg);
        if (message)
            count = add_problem(problems, count, parsers[i].variable, values[i], message);
    }
    return count;
}

int config_expand_path(const char *pattern, long pid, char *out, unsigned long out_size)
{
    unsigned long at = 0;
    if (out_size == 0)
        return -1;
    for (const char *p = pattern; *p; p++) {
        char piece[24];
        const char *text = piece;
        if (p[0] == '%' && p[1] == 'p') {
            snprintf(piece, sizeof piece, "%ld", pid);
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            strcpy(piece, "%");
            p++;
        } else {
            piece[0] = *p;
            piece[1] = '\0';
        }
        unsigned long n = strlen(text);
        if (at + n >= out_size)
            return -1;
        memcpy(out + at, text, n);
        at += n;
    }
    out[at] = '\0';
    return 0;
}
