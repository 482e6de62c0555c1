/* `rstshim explain`, the output: one JSON line or a few lines of text per
 * RST, then the totals. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "explain_int.h"
#include "tool.h"

static const char *const lkind_name[] = {"close", "peer_reset", "accept", "connect"};

static const char *const verdict_key[NVERDICT] = {
    "caused_by_close", "answered_after_close", "answered_after_shutdown", "sent_by_peer",
    "not_explained"};
static const char *const verdict_text[NVERDICT] = {
    "caused by a close", "answered data after a close", "answered data after a shutdown",
    "sent by the peer", "not explained"};

static void fmt_ts(int64_t us, char *out, size_t len)
{
    time_t sec = (time_t)(us / 1000000);
    struct tm tm;
    char day[32];
    gmtime_r(&sec, &tm);
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%06uZ", day, (unsigned)(us % 1000000) % 1000000u);
}

void fmt_ms(int64_t us, char *out, size_t len)
{
    snprintf(out, len, "%.3f ms", (double)us / 1000.0);
}

/* One line describing a log event, for the text output. */
/* The event as the log named it: a listener's shutdown is read as a close. */
static const char *event_name_of(const struct lev *e)
{
    return e->kind == LK_CLOSE && !strcmp(e->via, "shutdown") ? "shutdown" : lkind_name[e->kind];
}

static void describe_ev(const struct lev *e, int64_t rst_us, char *out, size_t len)
{
    char when[40], d[32];
    fmt_ts(e->ts_us, when, sizeof when);
    int64_t dt = rst_us - e->ts_us;
    fmt_ms(dt < 0 ? -dt : dt, d, sizeof d);
    int n = snprintf(out, len, "pid %lld (%s) fd %lld: %s%s", e->pid, e->comm, e->fd,
                     event_name_of(e), e->kind == LK_CLOSE ? "()" : "");
    if (n < 0 || (size_t)n >= len)
        return;
    if (e->kind == LK_CLOSE)
        n += snprintf(out + n, len - n, " (via %s), role %s, flags [%s], rst %s, state %s",
                      e->via, e->role, e->flags, e->rst == 1 ? "true" : e->rst == 0 ? "false" : "null",
                      e->state[0] ? e->state : "?");
    else if (e->kind == LK_PEER_RESET)
        n += snprintf(out + n, len - n, " %s on %s()", e->errname, e->call);
    if (n < 0 || (size_t)n >= len)
        return;
    snprintf(out + n, len - n, ", at %s (%s %s the RST)", when, d, dt >= 0 ? "before" : "after");
}

static json_t *ev_json(const struct lev *e, int64_t rst_us)
{
    char when[40];
    fmt_ts(e->ts_us, when, sizeof when);
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:I, s:s, s:s, s:f}", "event",
                          event_name_of(e), "ts", when, "pid", (json_int_t)e->pid, "comm",
                          e->comm, "fd", (json_int_t)e->fd, "local", e->local, "peer",
                          e->peer[0] ? e->peer : "", "before_rst_ms",
                          (double)(rst_us - e->ts_us) / 1000.0);
    if (e->cookie >= 0)
        json_object_set_new(o, "cookie", json_integer(e->cookie));
    if (e->kind == LK_CLOSE) {
        json_t *fl = json_array();
        for (int c = 0; c < NCAUSE; c++)
            if (e->causes & (1u << c))
                json_array_append_new(fl, json_string(cause_name[c]));
        json_object_set_new(o, "flags", fl);
        json_object_set_new(o, "rst", e->rst < 0 ? json_null() : json_boolean(e->rst));
        json_object_set_new(o, "via", json_string(e->via));
        json_object_set_new(o, "role", json_string(e->role));
        json_object_set_new(o, "unread_bytes", e->unread < 0 ? json_null() : json_integer(e->unread));
        if (e->pending >= 0)
            json_object_set_new(o, "pending", json_integer(e->pending));
        if (e->state[0])
            json_object_set_new(o, "state", json_string(e->state));
    } else if (e->kind == LK_PEER_RESET) {
        json_object_set_new(o, "errno", json_string(e->errname));
        json_object_set_new(o, "call", json_string(e->call));
    }
    return o;
}

/* One RST and its verdict: a JSON line, or a few lines of text. */
void print_rst(const struct opts *o, const struct rst *r, const struct explanation *x)
{
    int64_t t = r->p.ts_us;
    enum verdict v = x->v;
    const struct lev *ev = x->ev;
    const char *note = x->note, *hint = x->hint, *hcode = x->hcode, *fix = x->fix;
    char when[40];
    fmt_ts(t, when, sizeof when);
    if (o->json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:b, s:s, s:s}", "ts", when, "src",
                              r->src, "dst", r->dst, "seq", (json_int_t)r->p.seq, "ack",
                              (json_int_t)r->p.ack, "ack_flag", (r->p.flags & TH_ACK) != 0,
                              "verdict", verdict_key[v], "text", verdict_text[v]);
        if (ev)
            json_object_set_new(j, "log", ev_json(ev, t));
        if (note)
            json_object_set_new(j, "note", json_string(note));
        if (hcode) {
            json_object_set_new(j, "capture", json_string(hcode));
            json_object_set_new(j, "hint", json_string(hint));
        }
        if (fix)
            json_object_set_new(j, "fix", json_string(fix));
        char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
        if (s)
            puts(s);
        free(s);
        json_decref(j);
    } else {
        printf("%s  RST %s > %s  seq %" PRIu32 "%s: %s\n", when, r->src, r->dst, r->p.seq,
               (r->p.flags & TH_ACK) ? " (ack)" : "", verdict_text[v]);
        if (ev) {
            char buf[512];
            describe_ev(ev, t, buf, sizeof buf);
            printf("    %s\n", buf);
            if (v == V_CAUSED && ev->unread > 0)
                printf("    unread_bytes %lld: the process closed without reading them\n",
                       ev->unread);
            if (v == V_CAUSED && ev->pending > 0)
                printf("    %lld connection(s) were queued on the listener\n", ev->pending);
        }
        if (note)
            printf("    note: %s\n", note);
        if (hint)
            printf("    capture: %s\n", hint);
        if (fix)
            printf("    fix: %s\n", fix);
    }
    fflush(stdout);
}

/* The closing summary: what was read, and how many RSTs got each verdict. */
void print_totals(const struct opts *o, const struct stats *st, const struct logset *ls)
{
    if (o->json) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I}", "packets", (json_int_t)st->packets,
                              "tcp", (json_int_t)st->tcp, "rsts", (json_int_t)st->rsts,
                              "duplicates", (json_int_t)st->dups, "log_lines",
                              (json_int_t)ls->lines);
        for (int v = 0; v < NVERDICT; v++)
            json_object_set_new(j, verdict_key[v], json_integer((json_int_t)st->verdicts[v]));
        json_t *t = json_pack("{s:o}", "totals", j);
        char *s = json_dumps(t, JSON_COMPACT);
        if (s)
            puts(s);
        free(s);
        json_decref(t);
        return;
    }
    printf("%sexplain: %" PRIu64 " RSTs in %" PRIu64 " TCP segments (%" PRIu64
           " duplicate copies dropped); %zu log files, %zu lines (%zu unreadable)\n",
           st->rsts ? "\n" : "", st->rsts, st->tcp, st->dups, ls->files, ls->lines, ls->bad);
    for (int v = 0; v < NVERDICT; v++)
        printf("  %-30s %" PRIu64 "\n", verdict_text[v], st->verdicts[v]);
}
