/* `rstshim report`: command line, and the text / JSON / run-summary views of
 * the totals gathered by report.c. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report_int.h"
#include "tool.h"

/* One line per cause: what the close did, and the usual fix. */
const char *const cause_hint[NCAUSE] = {
    [CAUSE_UNREAD_DATA] =
        "closed with bytes it never read, so the kernel sent RST instead of FIN: read the "
        "whole request (or shutdown(SHUT_WR) and drain to EOF with a deadline) before close()",
    [CAUSE_LINGER_ZERO] =
        "SO_LINGER {1,0} makes close() abortive: drop it (let the client close first, or "
        "tune tcp_tw_reuse, if TIME_WAIT was the worry)",
    [CAUSE_IMMEDIATE_CLOSE] =
        "accepted, then closed without reading or writing: the client's next send draws an "
        "RST; answer with an error before closing, or stop accepting instead",
    [CAUSE_RECV_TIMEOUT] =
        "gave up after SO_RCVTIMEO: the client's late data draws an RST; make the timeout "
        "longer than the client's pauses, or reply with an error before closing",
    [CAUSE_PENDING_CONNECTIONS] =
        "listener closed with connections still queued, each got an RST: stop accepting "
        "gracefully (accept and answer what is queued, or hand over with SO_REUSEPORT)",
    [CAUSE_TCP_LINGER2] =
        "TCP_LINGER2 < 0 makes a close in FIN_WAIT2 (the peer has not closed its side) an RST: "
        "leave TCP_LINGER2 alone, or let the client close first",
    [CAUSE_SHARED] =
        "closed one copy of a socket still held elsewhere (dup, fork): no packet now; the "
        "last holder's close decides (look for fd leaks into children: CLOEXEC)",
};

static const char *const accept_error_hint =
    "EMFILE/ENFILE leave the connection queued and the listener readable (event loops spin, "
    "clients wait): raise RLIMIT_NOFILE (ulimit -n, systemd LimitNOFILE=) and back off on "
    "EMFILE";
static const char *const peer_reset_hint =
    "the other side reset connections this process was using: run the peer under rstshim "
    "to learn why";

#define DEFAULT_TOP 10

static uint64_t events_total(const struct report *r)
{
    uint64_t n = 0;
    for (int i = 0; i < NEVENT; i++)
        n += r->events[i];
    return n;
}

static uint64_t skipped_total(const struct report *r)
{
    return r->truncated + r->not_json + r->foreign + r->oversized;
}

static bool approximate(const struct report *r)
{
    return r->listeners.evictions || r->peers.evictions || r->offenders.evictions ||
           r->tags.evictions || r->stacks.t.evictions;
}

/* The stack table's rows of one cause, highest count first: all is the
 * whole table sorted (stack_sorted); returns how many went to out. */
static size_t stack_rows(const struct tk_entry **all, size_t n_all, int cause,
                         const struct tk_entry **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < n_all && n < max; i++)
        if (all[i]->key.fd == cause)
            out[n++] = all[i];
    return n;
}

static size_t stack_sorted(const struct report *r, const struct tk_entry ***all)
{
    const struct stack_table *s = &r->stacks;
    *all = malloc((s->t.n ? s->t.n : 1) * sizeof **all);
    return *all ? topk_sorted(&s->t, *all, s->t.n) : 0;
}

static const char *stack_text(const struct report *r, const struct tk_entry *e)
{
    return r->stacks.text[e - r->stacks.t.e];
}

static void fmt_ms(double ms, char *out, size_t len)
{
    if (isnan(ms))
        snprintf(out, len, "-");
    else if (ms < 1)
        snprintf(out, len, "%.3f ms", ms);
    else if (ms < 1000)
        snprintf(out, len, "%.1f ms", ms);
    else
        snprintf(out, len, "%.2f s", ms / 1000);
}

static void fmt_causes(uint32_t mask, char *out, size_t len)
{
    out[0] = '\0';
    size_t used = 0;
    for (int c = 0; c < NCAUSE; c++)
        if (mask & (1u << c)) {
            int n = snprintf(out + used, len - used, "%s%s", used ? "," : "", cause_name[c]);
            if (n < 0 || (size_t)n >= len - used)
                break;
            used += (size_t)n;
        }
}

/* ------------------------------------------------------------------ text */

static void text_input(const struct report *r, FILE *out)
{
    fprintf(out, "rstshim report: %llu file%s, %llu bytes, %llu lines\n",
            (unsigned long long)r->files, r->files == 1 ? "" : "s",
            (unsigned long long)r->bytes, (unsigned long long)r->lines);
    fprintf(out, "  events: %llu (", (unsigned long long)events_total(r));
    for (int i = 0, first = 1; i < NEVENT; i++)
        if (r->events[i]) {
            fprintf(out, "%s%s %llu", first ? "" : ", ", event_name[i],
                    (unsigned long long)r->events[i]);
            first = 0;
        }
    fputs(")\n", out);
    if (skipped_total(r))
        fprintf(out, "  skipped: %llu (truncated %llu, not JSON %llu, foreign %llu, too long %llu)\n",
                (unsigned long long)skipped_total(r), (unsigned long long)r->truncated,
                (unsigned long long)r->not_json, (unsigned long long)r->foreign,
                (unsigned long long)r->oversized);
    if (r->files_failed)
        fprintf(out, "  unreadable files: %llu\n", (unsigned long long)r->files_failed);
    if (r->first_ts[0])
        fprintf(out, "  time: %s .. %s\n", r->first_ts, r->last_ts);
}

static void text_causes(const struct report *r, FILE *out)
{
    fprintf(out, "\nCloses: %llu, flagged %llu; RST at close: %llu (connections reset: %llu), "
                 "no RST: %llu, unknown: %llu\n",
            (unsigned long long)r->closes, (unsigned long long)r->flagged,
            (unsigned long long)r->rst_true, (unsigned long long)r->conns_reset,
            (unsigned long long)r->rst_false, (unsigned long long)r->rst_unknown);
    bool any = false;
    for (int c = 0; c < NCAUSE; c++) {
        if (!r->cause_closes[c])
            continue;
        if (!any)
            fputs("\nCauses (flagged closes; RST at close):\n", out);
        any = true;
        fprintf(out, "  %-20s %8llu  (%llu RST)\n    fix: %s\n", cause_name[c],
                (unsigned long long)r->cause_closes[c], (unsigned long long)r->cause_rst[c],
                cause_hint[c]);
    }
    if (!any)
        fputs("\nCauses: none - no close was flagged\n", out);
    if (r->other_flags)
        fprintf(out, "  (unknown flags: %llu)\n", (unsigned long long)r->other_flags);
    if (r->setsockopt_linger_zero)
        fprintf(out, "  SO_LINGER {1,0} set: %llu time%s\n",
                (unsigned long long)r->setsockopt_linger_zero,
                r->setsockopt_linger_zero == 1 ? "" : "s");
}

static void text_table(const struct topk *t, const char *title, const char *col, FILE *out,
                       int top)
{
    if (!t->n)
        return;
    const struct tk_entry **rows = malloc((size_t)top * sizeof *rows);
    if (!rows)
        return;
    size_t n = topk_sorted(t, rows, (size_t)top);
    fprintf(out, "\n%s\n  %-40s %8s  %-27s  %s\n", title, col, "count", "first", "last");
    for (size_t i = 0; i < n; i++)
        fprintf(out, "  %-40s %8llu  %-27s  %s\n", rows[i]->key.s,
                (unsigned long long)rows[i]->count, rows[i]->first, rows[i]->last);
    if (t->n > n)
        fprintf(out, "  ... %u more\n", t->n - (unsigned)n);
    free(rows);
}

static void text_offenders(const struct report *r, FILE *out, int top)
{
    const struct topk *t = &r->offenders;
    if (!t->n)
        return;
    const struct tk_entry **rows = malloc((size_t)top * sizeof *rows);
    if (!rows)
        return;
    size_t n = topk_sorted(t, rows, (size_t)top);
    fprintf(out, "\nWorst offenders (flagged closes per pid, fd, peer host):\n"
                 "  %8s %5s  %-22s %7s %6s  %-24s %-27s  %s\n",
            "pid", "fd", "peer host", "closes", "rst", "causes", "first", "last");
    for (size_t i = 0; i < n; i++) {
        const struct tk_entry *e = rows[i];
        char causes[128];
        fmt_causes(e->mask, causes, sizeof causes);
        fprintf(out, "  %8lld %5d  %-22s %7llu %6llu  %-24s %-27s  %s\n", (long long)e->key.pid,
                e->key.fd, e->key.s, (unsigned long long)e->count, (unsigned long long)e->rst,
                causes, e->first, e->last);
    }
    if (t->n > n)
        fprintf(out, "  ... %u more\n", t->n - (unsigned)n);
    free(rows);
}

/* Only when some line has a tag: untagged logs (one host) gain nothing
 * from a one-row table of "-". */
static void text_tags(const struct report *r, FILE *out, int top)
{
    const struct topk *t = &r->tags;
    if (!r->tagged || !t->n)
        return;
    const struct tk_entry **rows = malloc((size_t)top * sizeof *rows);
    if (!rows)
        return;
    size_t n = topk_sorted(t, rows, (size_t)top);
    fprintf(out, "\nRSTs per tag (host):\n  %-32s %8s %8s %6s  %-27s  %s\n", "tag", "closes",
            "flagged", "rst", "first", "last");
    for (size_t i = 0; i < n; i++) {
        const struct tk_entry *e = rows[i];
        fprintf(out, "  %-32s %8llu %8llu %6llu  %-27s  %s\n", e->key.s,
                (unsigned long long)e->count, (unsigned long long)e->flagged,
                (unsigned long long)e->rst, e->first, e->last);
    }
    if (t->n > n)
        fprintf(out, "  ... %u more\n", t->n - (unsigned)n);
    free(rows);
}

/* Only when some line has a stack (the shim ran with RSTSHIM_STACK=1). */
static void text_stacks(const struct report *r, FILE *out, int top)
{
    if (!r->stacked || !r->stacks.t.n)
        return;
    const struct tk_entry **all, **rows = malloc((size_t)top * sizeof *rows);
    size_t n_all = stack_sorted(r, &all);
    if (rows && all) {
        fprintf(out, "\nTop stacks per cause (first %d frames, innermost first):\n",
                STACK_FRAMES);
        for (int c = 0; c < NSTACK_CAUSE; c++) {
            size_t n = stack_rows(all, n_all, c, rows, (size_t)top), total = 0;
            if (!n)
                continue;
            for (size_t i = 0; i < n_all; i++)
                total += all[i]->key.fd == c;
            fprintf(out, "  %s:\n    %8s %8s  %s\n", stack_cause_name[c], "count", "pid",
                    "stack");
            for (size_t i = 0; i < n; i++)
                fprintf(out, "    %8llu %8lld  %s\n", (unsigned long long)rows[i]->count,
                        (long long)rows[i]->example, stack_text(r, rows[i]));
            if (total > n)
                fprintf(out, "    ... %zu more\n", total - n);
        }
    }
    free(rows);
    free(all);
}

static void text_lifetime(const struct report *r, FILE *out)
{
    const struct hist *h = &r->lifetime;
    if (!h->n)
        return;
    char p50[32], p90[32], p99[32], max[32];
    fmt_ms(hist_percentile(h, 0.50), p50, sizeof p50);
    fmt_ms(hist_percentile(h, 0.90), p90, sizeof p90);
    fmt_ms(hist_percentile(h, 0.99), p99, sizeof p99);
    fmt_ms(h->max, max, sizeof max);
    fprintf(out, "\nConnection lifetime (duration_ms of %llu closes): p50 %s, p90 %s, p99 %s, max %s\n",
            (unsigned long long)h->n, p50, p90, p99, max);
}

static void text_name_table(const struct name_table *t, FILE *out, bool with_extra)
{
    for (int i = 0; i < t->used; i++)
        fprintf(out, "%s%s %llu", i ? ", " : "", t->slot[i].name,
                (unsigned long long)(t->slot[i].n + (with_extra ? t->slot[i].extra : 0)));
}

static void text_errors(const struct report *r, FILE *out)
{
    fprintf(out, "\npeer_reset: %llu", (unsigned long long)r->events[EV_PEER_RESET]);
    if (r->events[EV_PEER_RESET]) {
        fputs(" (", out);
        text_name_table(&r->peer_reset, out, false);
        fprintf(out, ")\n  note: %s", peer_reset_hint);
    }
    uint64_t suppressed = 0;
    for (int i = 0; i < r->accept_error.used; i++)
        suppressed += r->accept_error.slot[i].extra;
    fprintf(out, "\naccept_error: %llu", (unsigned long long)r->events[EV_ACCEPT_ERROR]);
    if (r->events[EV_ACCEPT_ERROR]) {
        /* each line stands for itself plus the repeats it says it held back */
        fprintf(out, " line%s, %llu failed accepts (", r->events[EV_ACCEPT_ERROR] == 1 ? "" : "s",
                (unsigned long long)(r->events[EV_ACCEPT_ERROR] + suppressed));
        text_name_table(&r->accept_error, out, true);
        fputs(")", out);
        if (r->accept_rlimit >= 0)
            fprintf(out, "; RLIMIT_NOFILE as low as %lld", r->accept_rlimit);
        fprintf(out, "\n  fix: %s", accept_error_hint);
    }
    fprintf(out, "\nconfig_error: %llu\n", (unsigned long long)r->config_errors);
    for (int i = 0; i < r->n_config_msgs; i++)
        fprintf(out, "  %s\n", r->config_msgs[i]);
    if (r->exec_failed)
        fprintf(out, "exec_failed: %llu (sockets reported closed by exec stayed open)\n",
                (unsigned long long)r->exec_failed);
}

void report_print_text(const struct report *r, FILE *out, int top)
{
    text_input(r, out);
    text_causes(r, out);
    text_table(&r->listeners, "RSTs per listener (connections reset):", "local address", out, top);
    if (r->rst_outgoing)
        fprintf(out, "  (+ %llu RST closes of outgoing connections)\n",
                (unsigned long long)r->rst_outgoing);
    text_table(&r->peers, "RSTs per peer host (RST closes):", "peer host", out, top);
    text_offenders(r, out, top);
    text_tags(r, out, top);
    text_stacks(r, out, top);
    text_lifetime(r, out);
    text_errors(r, out);
    if (approximate(r))
        fprintf(out, "\nnote: more distinct keys than the tables hold (%d): counts in the tables "
                     "are upper bounds\n", TOPK_CAP);
}

/* ------------------------------------------------------------------ JSON */

static json_t *json_u64(uint64_t v)
{
    return json_integer((json_int_t)v);
}

static json_t *json_ms(double v)
{
    return isnan(v) ? json_null() : json_real(round(v * 1000) / 1000);
}

static json_t *json_ts(const char *s)
{
    return s[0] ? json_string(s) : json_null();
}

static json_t *json_input(const struct report *r)
{
    json_t *events = json_object();
    for (int i = 0; i < NEVENT; i++)
        json_object_set_new(events, event_name[i], json_u64(r->events[i]));
    return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:{s:o,s:o,s:o,s:o,s:o},s:o,s:{s:o,s:o}}",
                     "files", json_u64(r->files), "files_failed", json_u64(r->files_failed),
                     "bytes", json_u64(r->bytes), "lines", json_u64(r->lines),
                     "blank", json_u64(r->blank), "events_total", json_u64(events_total(r)),
                     "skipped", "total", json_u64(skipped_total(r)),
                     "truncated", json_u64(r->truncated), "not_json", json_u64(r->not_json),
                     "foreign", json_u64(r->foreign), "oversized", json_u64(r->oversized),
                     "events", events,
                     "time", "first", json_ts(r->first_ts), "last", json_ts(r->last_ts));
}

static json_t *json_closes(const struct report *r)
{
    json_t *roles = json_object();
    for (int i = 0; i < NROLE; i++)
        json_object_set_new(roles, role_name[i], json_u64(r->by_role[i]));
    return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "total", json_u64(r->closes),
                     "flagged", json_u64(r->flagged), "rst_true", json_u64(r->rst_true),
                     "rst_false", json_u64(r->rst_false), "rst_unknown", json_u64(r->rst_unknown),
                     "connections_reset", json_u64(r->conns_reset),
                     "rst_outgoing", json_u64(r->rst_outgoing),
                     "unknown_flags", json_u64(r->other_flags), "by_role", roles);
}

static json_t *json_causes(const struct report *r)
{
    json_t *causes = json_object();
    for (int c = 0; c < NCAUSE; c++)
        json_object_set_new(causes, cause_name[c],
                            json_pack("{s:o,s:o,s:s}", "closes", json_u64(r->cause_closes[c]),
                                      "rst", json_u64(r->cause_rst[c]), "hint", cause_hint[c]));
    return causes;
}

static json_t *json_flag_list(uint32_t mask)
{
    json_t *a = json_array();
    for (int c = 0; c < NCAUSE; c++)
        if (mask & (1u << c))
            json_array_append_new(a, json_string(cause_name[c]));
    return a;
}

enum table_kind { TABLE_LISTENER, TABLE_PEER, TABLE_OFFENDER, TABLE_TAG };

/* The fields that differ per table: what the key is, what the count means. */
static void json_row_fields(json_t *o, const struct tk_entry *e, enum table_kind kind)
{
    switch (kind) {
    case TABLE_LISTENER:
        json_object_set_new(o, "local", json_string(e->key.s));
        json_object_set_new(o, "connections_reset", json_u64(e->count));
        break;
    case TABLE_PEER:
        json_object_set_new(o, "host", json_string(e->key.s));
        json_object_set_new(o, "rst_closes", json_u64(e->count));
        break;
    case TABLE_OFFENDER:
        json_object_set_new(o, "pid", json_integer(e->key.pid));
        json_object_set_new(o, "fd", json_integer(e->key.fd));
        json_object_set_new(o, "peer_host", json_string(e->key.s));
        json_object_set_new(o, "closes", json_u64(e->count));
        json_object_set_new(o, "rst", json_u64(e->rst));
        json_object_set_new(o, "flags", json_flag_list(e->mask));
        break;
    case TABLE_TAG:
        json_object_set_new(o, "tag", json_string(e->key.s));
        json_object_set_new(o, "closes", json_u64(e->count));
        json_object_set_new(o, "flagged", json_u64(e->flagged));
        json_object_set_new(o, "rst_closes", json_u64(e->rst));
        break;
    }
}

static json_t *json_table(const struct topk *t, enum table_kind kind, int top)
{
    json_t *a = json_array();
    const struct tk_entry **rows = malloc((size_t)top * sizeof *rows);
    if (!rows)
        return a;
    size_t n = topk_sorted(t, rows, (size_t)top);
    for (size_t i = 0; i < n; i++) {
        const struct tk_entry *e = rows[i];
        json_t *o = json_pack("{s:o,s:o,s:o}", "first", json_ts(e->first), "last",
                              json_ts(e->last), "count_error", json_u64(e->err));
        json_row_fields(o, e, kind);
        json_array_append_new(a, o);
    }
    free(rows);
    return a;
}

/* cause -> [{stack, count, pid, count_error}]; {} when no line had a stack */
static json_t *json_stacks(const struct report *r, int top)
{
    json_t *o = json_object();
    const struct tk_entry **all, **rows = malloc((size_t)top * sizeof *rows);
    size_t n_all = stack_sorted(r, &all);
    for (int c = 0; rows && all && c < NSTACK_CAUSE; c++) {
        size_t n = stack_rows(all, n_all, c, rows, (size_t)top);
        if (!n)
            continue;
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(
                a, json_pack("{s:s,s:o,s:o,s:o}", "stack", stack_text(r, rows[i]), "count",
                             json_u64(rows[i]->count), "pid", json_integer(rows[i]->example),
                             "count_error", json_u64(rows[i]->err)));
        json_object_set_new(o, stack_cause_name[c], a);
    }
    free(rows);
    free(all);
    return o;
}

static json_t *json_names(const struct name_table *t, bool extra)
{
    json_t *o = json_object();
    for (int i = 0; i < t->used; i++)
        json_object_set_new(o, t->slot[i].name,
                            extra ? json_pack("{s:o,s:o}", "lines", json_u64(t->slot[i].n),
                                              "suppressed", json_u64(t->slot[i].extra))
                                  : json_u64(t->slot[i].n));
    return o;
}

static json_t *json_errors_part(const struct report *r, json_t *doc)
{
    uint64_t suppressed = 0;
    for (int i = 0; i < r->accept_error.used; i++)
        suppressed += r->accept_error.slot[i].extra;
    json_object_set_new(doc, "peer_reset",
                        json_pack("{s:o,s:o,s:s}", "total", json_u64(r->events[EV_PEER_RESET]),
                                  "by_errno", json_names(&r->peer_reset, false), "note",
                                  peer_reset_hint));
    json_object_set_new(
        doc, "accept_error",
        json_pack("{s:o,s:o,s:o,s:o,s:s}", "lines", json_u64(r->events[EV_ACCEPT_ERROR]),
                  "suppressed", json_u64(suppressed), "by_errno",
                  json_names(&r->accept_error, true), "rlimit_nofile",
                  r->accept_rlimit >= 0 ? json_integer(r->accept_rlimit) : json_null(), "hint",
                  accept_error_hint));
    json_t *msgs = json_array();
    for (int i = 0; i < r->n_config_msgs; i++)
        json_array_append_new(msgs, json_string(r->config_msgs[i]));
    json_object_set_new(doc, "config_error",
                        json_pack("{s:o,s:o}", "total", json_u64(r->config_errors), "messages",
                                  msgs));
    json_object_set_new(doc, "exec_failed", json_u64(r->exec_failed));
    return doc;
}

int report_print_json(const struct report *r, FILE *out, int top)
{
    const struct hist *h = &r->lifetime;
    json_t *doc = json_object();
    json_object_set_new(doc, "rstshim_report", json_string(RSTSHIM_VERSION));
    json_object_set_new(doc, "input", json_input(r));
    json_object_set_new(doc, "closes", json_closes(r));
    json_object_set_new(doc, "causes", json_causes(r));
    json_object_set_new(doc, "setsockopt_linger_zero", json_u64(r->setsockopt_linger_zero));
    json_object_set_new(doc, "rst_per_listener", json_table(&r->listeners, TABLE_LISTENER, top));
    json_object_set_new(doc, "rst_per_peer_host", json_table(&r->peers, TABLE_PEER, top));
    json_object_set_new(doc, "worst_offenders", json_table(&r->offenders, TABLE_OFFENDER, top));
    if (r->tagged) /* as in the text: only logs that carry tags */
        json_object_set_new(doc, "per_tag", json_table(&r->tags, TABLE_TAG, top));
    json_object_set_new(doc, "stacks_per_cause", json_stacks(r, top));
    json_object_set_new(doc, "lifetime_ms",
                        json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "count", json_u64(h->n),
                                  "min", json_ms(h->n ? h->min : NAN),
                                  "p50", json_ms(hist_percentile(h, 0.50)),
                                  "p90", json_ms(hist_percentile(h, 0.90)),
                                  "p99", json_ms(hist_percentile(h, 0.99)),
                                  "max", json_ms(h->n ? h->max : NAN)));
    json_errors_part(r, doc);
    json_object_set_new(doc, "approximate", json_boolean(approximate(r)));
    int rc = json_dumpf(doc, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(doc);
    return rc;
}

/* ------------------------------------------------------- run's summary */

void report_print_summary(const struct report *r, FILE *out, const char *logname)
{
    fprintf(out, "rstshim: %s: %llu events, %llu flagged closes", logname,
            (unsigned long long)events_total(r), (unsigned long long)r->flagged);
    const char *sep = " (";
    for (int c = 0; c < NCAUSE; c++)
        if (r->cause_closes[c]) {
            fprintf(out, "%s%s %llu", sep, cause_name[c], (unsigned long long)r->cause_closes[c]);
            sep = ", ";
        }
    fprintf(out, "%s\nrstshim: RSTs at close: %llu (connections reset: %llu); peer_reset %llu; "
                 "accept_error %llu; config_error %llu\n",
            sep[0] == ',' ? ")" : "", (unsigned long long)r->rst_true,
            (unsigned long long)r->conns_reset, (unsigned long long)r->events[EV_PEER_RESET],
            (unsigned long long)r->events[EV_ACCEPT_ERROR], (unsigned long long)r->config_errors);
    if (skipped_total(r))
        fprintf(out, "rstshim: %llu lines skipped (not rstshim events)\n",
                (unsigned long long)skipped_total(r));
}

/* -------------------------------------------------------------- command */

static void report_usage(FILE *out)
{
    fputs("usage: rstshim report [--json] [--top N] [--jobs N] [--no-progress] [LOG...]\n"
          "Summarise rstshim JSON lines from the LOG files (stdin when none, or '-').\n"
          "  --json         one JSON document instead of text\n"
          "  --top N        rows per table (default 10)\n"
          "  --jobs N       parsing threads (default: one per CPU, at most 4)\n"
          "  --no-progress  no progress lines on stderr\n",
          out);
}

int cmd_report(int argc, char **argv)
{
    bool json = false, progress = true;
    long top = DEFAULT_TOP, jobs = 0;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json"))
            json = true;
        else if (!strcmp(a, "--no-progress"))
            progress = false;
        else if (!strcmp(a, "--top") && i + 1 < argc) {
            if (!parse_nonneg_int(argv[++i], &top) || top < 1 || top > TOPK_CAP) {
                warnx("report: --top wants a number from 1 to %d", TOPK_CAP);
                return EXIT_USAGE;
            }
        } else if (!strcmp(a, "--jobs") && i + 1 < argc) {
            if (!parse_nonneg_int(argv[++i], &jobs) || jobs > 64) {
                warnx("report: --jobs wants a number of threads (0 = one per CPU)");
                return EXIT_USAGE;
            }
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            report_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (a[0] == '-' && a[1]) {
            warnx("report: unknown option %s", a);
            report_usage(stderr);
            return EXIT_USAGE;
        } else
            break;
    }
    struct report *r = report_new((int)jobs, progress);
    if (!r) {
        warnx("report: out of memory");
        return 1;
    }
    /* Known sizes up front, so progress can say how far along it is. */
    for (int j = i; j < argc; j++) {
        struct stat st;
        if (strcmp(argv[j], "-") && stat(argv[j], &st) == 0 && S_ISREG(st.st_mode))
            r->bytes_expected += (uint64_t)st.st_size;
    }
    int failed = 0;
    if (i == argc && isatty(STDIN_FILENO))
        warnx("report: reading the log from the terminal (give LOG files, or end with Ctrl-D)");
    if (i == argc)
        failed |= report_feed_path(r, "-", 0) != 0;
    for (; i < argc; i++)
        failed |= report_feed_path(r, argv[i], 0) != 0;
    report_finish(r);
    if (json)
        report_print_json(r, stdout, (int)top);
    else
        report_print_text(r, stdout, (int)top);
    report_free(r);
    return failed ? 1 : 0;
}
