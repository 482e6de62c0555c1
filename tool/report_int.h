/* The report's running totals, shared by the reader (report.c) and the
 * printers (report_print.c).  Everything here is fixed-size: memory does
 * not grow with the log. */
#ifndef RSTSHIM_REPORT_INT_H
#define RSTSHIM_REPORT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "topk.h"

/* close flags, in the order the report lists them */
enum cause {
    CAUSE_UNREAD_DATA,
    CAUSE_LINGER_ZERO,
    CAUSE_IMMEDIATE_CLOSE,
    CAUSE_RECV_TIMEOUT,
    CAUSE_PENDING_CONNECTIONS,
    CAUSE_TCP_LINGER2,
    CAUSE_SHARED,
    NCAUSE
};
/* the causes that (now or at the peer's next send) cost the peer an RST */
#define RST_CAUSE_MASK ((1u << CAUSE_SHARED) - 1)
extern const char *const cause_name[NCAUSE];
extern const char *const cause_hint[NCAUSE];

enum event_kind {
    EV_LISTEN, EV_ACCEPT, EV_CONNECT, EV_SETSOCKOPT, EV_CLOSE, EV_SHUTDOWN, EV_PEER_RESET,
    EV_ACCEPT_ERROR, EV_CONFIG_ERROR, EV_EXEC_FAILED, EV_OTHER, NEVENT
};
extern const char *const event_name[NEVENT];

enum role { ROLE_ACCEPTED, ROLE_CONNECTED, ROLE_LISTENER, ROLE_OTHER, NROLE };
extern const char *const role_name[NROLE];

/* Small keyed counters (errno names, ...): a few distinct values at most;
 * anything past the table lands in the last slot, "other". */
#define NC_SLOTS 16
#define NC_NAME_LEN 24
struct name_count {
    char name[NC_NAME_LEN];
    uint64_t n, extra;
};
struct name_table {
    struct name_count slot[NC_SLOTS];
    int used;
};

/* Lifetimes in ms: log-spaced buckets, HIST_PER_DECADE per factor of 10
 * from HIST_MIN_MS (1 us) over HIST_DECADES decades (to ~11 days); the
 * percentiles are exact to within one bucket (~7%), min/max are exact. */
#define HIST_PER_DECADE 32
#define HIST_MIN_MS 0.001
#define HIST_DECADES 12
#define HIST_BUCKETS (HIST_PER_DECADE * HIST_DECADES + 2)
struct hist {
    uint64_t b[HIST_BUCKETS];
    uint64_t n;
    double min, max;
};

/* Call stacks (lines of a shim run with RSTSHIM_STACK=1): per cause, the
 * first STACK_FRAMES frames joined with " < ".  The text is too long for a
 * tk_key, so the key is (cause, 64-bit hash of the text) and the text sits
 * beside the entry, text[entry index], in a fixed array: flat memory.
 * Causes are enum cause, plus STACK_SETSOCKOPT for setsockopt lines flagged
 * linger_zero (where SO_LINGER {1,0} was set, not where the close was). */
#define STACK_FRAMES 4
#define STACK_KEY_LEN 1024
#define STACK_CAP 2048
#define STACK_SETSOCKOPT NCAUSE
#define NSTACK_CAUSE (NCAUSE + 1)
extern const char *const stack_cause_name[NSTACK_CAUSE];
struct stack_table {
    struct topk t;              /* key: fd = cause, s = hash; example: a pid */
    char (*text)[STACK_KEY_LEN];
};

#define MAX_CONFIG_MSGS 4
#define MSG_LEN 160
#define TOPK_CAP 4096

struct report {
    /* input accounting */
    uint64_t files, files_failed, bytes, lines, blank;
    uint64_t truncated, not_json, foreign, oversized;
    uint64_t events[NEVENT];
    char first_ts[TK_TS_LEN], last_ts[TK_TS_LEN];

    /* closes */
    uint64_t closes, flagged, rst_true, rst_false, rst_unknown;
    uint64_t conns_reset;       /* RST'd connections: 1 per close, `pending` per listener */
    uint64_t rst_outgoing;      /* rst:true closes of connections this side opened */
    uint64_t by_role[NROLE];
    uint64_t cause_closes[NCAUSE], cause_rst[NCAUSE], other_flags;
    uint64_t setsockopt_linger_zero;
    struct topk listeners;      /* key: local address; weight: connections reset */
    struct topk peers;          /* key: peer host; weight: RST closes */
    struct topk offenders;      /* key: pid, fd, peer host; weight: flagged closes */
    struct topk tags;           /* key: tag, "-" for none; weight: closes */
    uint64_t tagged;            /* event lines with a tag: the per-tag table shows if > 0 */
    struct hist lifetime;
    struct stack_table stacks;  /* weight: lines (closes, setsockopt) */
    uint64_t stacked;           /* lines with a stack: the stack table shows if > 0 */

    /* errors the shim reports */
    struct name_table peer_reset;   /* by errno */
    struct name_table accept_error; /* by errno; extra = suppressed */
    long long accept_rlimit;        /* last rlimit_nofile seen, -1 none */
    uint64_t config_errors, exec_failed;
    int n_config_msgs;
    char config_msgs[MAX_CONFIG_MSGS][MSG_LEN];

    /* reading (report_read.c): workers and progress; NULL in shards */
    struct reader *reader;
    uint64_t bytes_expected; /* for progress: sizes of the files named */
};

/* report.c */
struct report *report_alloc(void);        /* totals only, no reader */
void report_release(struct report *r);
/* One line without its '\n'; complete is false for a last line that never
 * got its '\n' (cut off). */
void report_line(struct report *r, const char *p, size_t len, bool complete);
void report_merge(struct report *into, const struct report *from);
double hist_percentile(const struct hist *h, double p);

#endif
