/* Configuration, read once from the environment when the library loads.
 * Processes forked from it keep it; nginx, for one, clears its workers'
 * environment, so nothing is read from it later. */
#ifndef RSTSHIM_CONFIG_H
#define RSTSHIM_CONFIG_H

#include <stdbool.h>

#define CONFIG_PATH_MAX 4096
#define CONFIG_TAG_MAX 128

enum log_target { LOG_TO_STDERR, LOG_TO_STDOUT, LOG_TO_FILE };

struct config {
    enum log_target log_target;
    char log_path[CONFIG_PATH_MAX]; /* LOG_TO_FILE: as given, %p not yet expanded */
    bool flagged_only;              /* RSTSHIM_EVENTS=flagged */
    long long immediate_ms;         /* RSTSHIM_IMMEDIATE_MS */
    char tag[CONFIG_TAG_MAX];       /* RSTSHIM_TAG, "" when unset */
    char tag_printable[CONFIG_TAG_MAX * 4]; /* the tag as written: \xNN for odd bytes */
    bool fix_drain;                 /* RSTSHIM_FIX has "drain": read unread bytes before close */
    bool fix_linger;                /* RSTSHIM_FIX has "linger": ignore SO_LINGER {1,0} */
    bool stack;                     /* RSTSHIM_STACK=1: call stacks on flagged lines */
};

/* One problem found while parsing: reported as a config_error line. */
struct config_problem {
    const char *variable;
    const char *value;
    const char *message;
};

#define CONFIG_MAX_PROBLEMS 6

/* The variables, NULL when unset. */
struct config_env {
    const char *log, *events, *immediate_ms, *tag, *fix, *stack;
};

/* Parses the variables into cfg, starting from the defaults; a bad value
 * keeps the default and adds a problem.  Returns the number of problems.
 * Pure: unit-tested. */
int config_parse(const struct config_env *env, struct config *cfg,
                 struct config_problem problems[CONFIG_MAX_PROBLEMS]);

/* Expands %p (pid) and %% in a log path.  Returns 0, or -1 when the result
 * would not fit. */
int config_expand_path(const char *pattern, long pid, char *out, unsigned long out_size);

#endif
