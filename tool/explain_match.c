/* `rstshim explain`, the log side: the shim's JSON lines read into events
 * keyed by 4-tuple, and each RST matched to the event that explains it
 * (the verdict).  The printers in explain_print.c write the result. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "explain_int.h"
#include "tool.h"

/* ---- time --------------------------------------------------------------- */

/* "2026-11-22T01:58:02.088685Z" -> µs since the epoch; false when not that. */
static bool parse_ts(const char *s, int64_t *us)
{
    struct tm tm = {0};
    int n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    int64_t frac = 0;
    const char *p = s + n;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 6)
                frac = frac * 10 + (*p - '0');
        for (; digits < 6; digits++)
            frac *= 10;
    }
    *us = (int64_t)timegm(&tm) * 1000000 + frac;
    return true;
}

/* ---- addresses ---------------------------------------------------------- */

/* The log's form ("1.2.3.4:80", "[::1]:80"), with IPv4-mapped IPv6
 * addresses written as IPv4 so a dual-stack socket matches the wire. */
void norm_addr(const char *in, char *out, size_t len)
{
    if (!in) {
        snprintf(out, len, "%s", "");
        return;
    }
    if (!strncasecmp(in, "[::ffff:", 8) && strchr(in, '.')) {
        const char *end = strchr(in, ']');
        if (end && end[1] == ':') {
            snprintf(out, len, "%.*s%s", (int)(end - (in + 8)), in + 8, end + 1);
            return;
        }
    }
    snprintf(out, len, "%s", in);
}

static const char *addr_port(const char *a)
{
    const char *c = strrchr(a, ':');
    return c ? c + 1 : "";
}

/* A listener's local address matches src exactly or as a wildcard. */
static bool local_matches(const char *listener, const char *src)
{
    if (!strcmp(listener, src))
        return true;
    if (!strncmp(listener, "0.0.0.0:", 8) || !strncmp(listener, "[::]:", 5))
        return !strcmp(addr_port(listener), addr_port(src));
    return false;
}

/* ---- the logs ----------------------------------------------------------- */

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static long long jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

static void push(struct lev **arr, size_t *n, size_t *cap, const struct lev *e)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        *arr = realloc(*arr, *cap * sizeof **arr);
        if (!*arr) {
            warnx("out of memory");
            exit(1);
        }
    }
    (*arr)[(*n)++] = *e;
}

static void log_add_line(struct logset *ls, const char *line, const char *file)
{
    ls->lines++;
    json_t *o = json_loads(line, 0, NULL);
    if (!json_is_object(o)) {
        ls->bad++;
        json_decref(o);
        return;
    }
    const char *ev = jstr(o, "event");
    struct lev e;
    memset(&e, 0, sizeof e);
    if (!ev || !parse_ts(jstr(o, "ts"), &e.ts_us))
        goto out;
    /* A listener's shutdown(SHUT_RD) resets its queue as its close would. */
    if (!strcmp(ev, "close") || !strcmp(ev, "shutdown"))
        e.kind = LK_CLOSE;
    else if (!strcmp(ev, "peer_reset"))
        e.kind = LK_PEER_RESET;
    else if (!strcmp(ev, "accept"))
        e.kind = LK_ACCEPT;
    else if (!strcmp(ev, "connect"))
        e.kind = LK_CONNECT;
    else
        goto out;
    norm_addr(jstr(o, "local"), e.local, sizeof e.local);
    norm_addr(jstr(o, "peer"), e.peer, sizeof e.peer);
    snprintf(e.key, sizeof e.key, "%s|%s", e.local, e.peer);
    e.pid = jint(o, "pid");
    e.fd = jint(o, "fd");
    e.unread = jint(o, "unread_bytes");
    e.pending = jint(o, "pending");
    e.cookie = jint(o, "cookie");
    snprintf(e.comm, sizeof e.comm, "%s", jstr(o, "comm") ? jstr(o, "comm") : "?");
    snprintf(e.via, sizeof e.via, "%s", jstr(o, "via")              ? jstr(o, "via")
                                         : !strcmp(ev, "shutdown") ? "shutdown"
                                                                   : "");
    snprintf(e.role, sizeof e.role, "%s", jstr(o, "role") ? jstr(o, "role") : "");
    snprintf(e.state, sizeof e.state, "%s", jstr(o, "state") ? jstr(o, "state") : "");
    snprintf(e.errname, sizeof e.errname, "%s", jstr(o, "errno") ? jstr(o, "errno") : "");
    snprintf(e.call, sizeof e.call, "%s", jstr(o, "call") ? jstr(o, "call") : "");
    e.after_shutdown = json_is_true(json_object_get(o, "after_shutdown"));
    json_t *rst = json_object_get(o, "rst");
    e.rst = json_is_true(rst) ? 1 : json_is_false(rst) ? 0 : -1;
    json_t *fl = json_object_get(o, "flags");
    size_t i;
    json_t *f;
    json_array_foreach(fl, i, f) {
        if (!json_is_string(f))
            continue;
        const char *s = json_string_value(f);
        size_t used = strlen(e.flags);
        snprintf(e.flags + used, sizeof e.flags - used, "%s%s", used ? "," : "", s);
        for (int c = 0; c < NCAUSE; c++)
            if (!strcmp(s, cause_name[c]))
                e.causes |= 1u << c;
    }
    e.file = file;
    if (e.kind == LK_CLOSE && !strcmp(e.role, "listener"))
        push(&ls->lst, &ls->nl, &ls->capl, &e);
    else if (e.local[0] && e.peer[0])
        push(&ls->ev, &ls->n, &ls->cap, &e);
    ls->dirty = true;
out:
    json_decref(o);
}

/* Reads complete lines of path from *off on; leaves a partial last line
 * for the next call (live mode tails the logs this way). */
int log_read(struct logset *ls, const char *path, long long *off)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (off && errno == ENOENT)
            return 0; /* live: not written yet */
        /* Live mode asks every 50 ms: say it once (*off = -1 remembers). */
        if (!off || *off >= 0)
            warnx("cannot open %s: %s", path, strerror(errno));
        if (off)
            *off = -1;
        return -1;
    }
    if (off && *off < 0)
        *off = 0; /* readable at last: from its start */
    if (off && fseeko(f, *off, SEEK_SET) != 0) {
        fclose(f);
        return 0;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long long pos = off ? *off : 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] != '\n' && off)
            break; /* partial: wait for the rest */
        pos += len;
        log_add_line(ls, line, path);
    }
    if (off)
        *off = pos;
    free(line);
    fclose(f);
    return 0;
}

static int lev_cmp(const void *a, const void *b)
{
    const struct lev *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return (x->ts_us > y->ts_us) - (x->ts_us < y->ts_us);
}

static void log_sort(struct logset *ls)
{
    if (ls->dirty)
        qsort(ls->ev, ls->n, sizeof *ls->ev, lev_cmp);
    ls->dirty = false;
}

/* [*lo, *hi) = the events of one key. */
static void log_range(const struct logset *ls, const char *key, size_t *lo, size_t *hi)
{
    size_t a = 0, b = ls->n;
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (strcmp(ls->ev[m].key, key) < 0)
            a = m + 1;
        else
            b = m;
    }
    *lo = a;
    while (b < ls->n && !strcmp(ls->ev[b].key, key))
        b++;
    *hi = b < a ? a : b;
}

/* ---- verdicts ------------------------------------------------------------ */

static const char *first_hint(unsigned causes)
{
    for (int c = 0; c < NCAUSE; c++)
        if (causes & (1u << c))
            return cause_hint[c];
    return NULL;
}

static int64_t absdiff(int64_t a, int64_t b)
{
    return a > b ? a - b : b - a;
}

/* What the capture alone says about an RST nobody logged. */
static const char *capture_hint(const struct rst *r, char *buf, size_t len, const char **code)
{
    const struct fdir *f = &r->fwd, *v = &r->rev;
    char d[32];
    if (v->npkts && v->syn_only && !f->npkts) {
        *code = "closed_port";
        snprintf(buf, len, "it answers a SYN: nothing listened on %s (closed port, or a "
                 "firewall REJECT --reject-with tcp-reset)", r->src);
    } else if (!v->npkts && !f->npkts) {
        *code = "no_prior_packets";
        snprintf(buf, len, "no earlier packet of this connection in the capture: it began "
                 "before the capture, or %s no longer had a socket for it (TIME_WAIT table "
                 "overflow, an exited process) or a middlebox sent it", r->src);
    } else if (f->fin_us && v->last_us > f->fin_us) {
        *code = "data_after_fin";
        fmt_ms(r->p.ts_us - f->fin_us, d, sizeof d);
        snprintf(buf, len, "%s had closed (its FIN %s before) and %s kept sending: a process "
                 "not under the shim closed without waiting for the peer", r->src, d, r->dst);
    } else if (v->ndata) {
        *code = "reset_with_data";
        snprintf(buf, len, "%s reset an open connection after %s sent %u data segment(s): a "
                 "process not under the shim closed with unread data or SO_LINGER {1,0}",
                 r->src, r->dst, v->ndata);
    } else {
        *code = "reset_open";
        snprintf(buf, len, "%s reset an open connection: SO_LINGER {1,0} or the exit of a "
                 "process not under the shim, or a middlebox", r->src);
    }
    return buf;
}

/* The verdict on r: the steps below in turn, until one finds a log event. */
static void judge(struct logset *ls, const struct rst *r, const struct opts *o,
                  struct explanation *x)
{
    log_sort(ls);
    int64_t t = r->p.ts_us;
    char key[KEY_LEN], rkey[KEY_LEN];
    snprintf(key, sizeof key, "%s|%s", r->src, r->dst);
    snprintf(rkey, sizeof rkey, "%s|%s", r->dst, r->src);
    size_t lo, hi;
    log_range(ls, key, &lo, &hi);

    enum verdict v = V_UNEXPLAINED;
    const struct lev *ev = NULL;
    const char *note = NULL;
    const char *hint = NULL, *hcode = NULL;

    /* 1. a close of the source socket that reset it, near in time */
    for (size_t i = lo; i < hi; i++) {
        const struct lev *e = &ls->ev[i];
        if (e->kind == LK_CLOSE && e->rst != 0 && absdiff(e->ts_us, t) <= o->tol_us &&
            (!ev || absdiff(e->ts_us, t) < absdiff(ev->ts_us, t)))
            ev = e;
    }
    if (ev) {
        v = V_CAUSED;
        if (ev->rst < 0)
            note = "rst is null in the log: a shared socket the shim could not verify";
    }
    /* 1b. a listener closed with connections queued: the one nearest in time.
     * Not for a connection the log shows accepted before the RST: it had
     * left the queue. */
    bool accepted = false;
    for (size_t i = lo; i < hi; i++)
        accepted |= ls->ev[i].kind == LK_ACCEPT && ls->ev[i].ts_us <= t;
    const struct lev *listener = NULL;
    for (size_t i = 0; !ev && !accepted && i < ls->nl; i++) {
        const struct lev *e = &ls->lst[i];
        if (e->rst == 1 && (e->causes & (1u << CAUSE_PENDING_CONNECTIONS)) &&
            local_matches(e->local, r->src) && absdiff(e->ts_us, t) <= o->tol_us &&
            (!listener || absdiff(e->ts_us, t) < absdiff(listener->ts_us, t)))
            listener = e;
    }
    if (!ev && listener) {
        ev = listener;
        v = V_CAUSED;
    }
    /* 1c. the source socket's process had shut down reading and kept the fd:
     * the kernel answered the peer's data with this RST (its recv then got
     * ECONNRESET: a peer_reset line with after_shutdown) */
    for (size_t i = lo; !ev && i < hi; i++) {
        const struct lev *e = &ls->ev[i];
        if (e->kind == LK_PEER_RESET && e->after_shutdown && e->ts_us >= t - o->tol_us &&
            e->ts_us <= t + o->tol_us) {
            ev = e;
            v = V_SHUTDOWN;
            note = "the process shut down the read side (shutdown SHUT_RD/SHUT_RDWR) and kept the "
                   "fd; the peer's next data drew this RST";
        }
    }
    /* 2. an earlier close of the source socket: the RST answers later data */
    if (!ev) {
        for (size_t i = lo; i < hi; i++) {
            const struct lev *e = &ls->ev[i];
            if (e->kind == LK_CLOSE && e->ts_us <= t + o->tol_us)
                ev = e; /* sorted by time: the last one wins */
        }
        if (ev) {
            v = V_ANSWERED;
            if (ev->rst == 1)
                note = "that close already reset the connection; this RST answers a later "
                       "segment";
            else if (r->rev.ndata || r->rev.npkts)
                note = r->rev.last_len ? "the peer's last segment before the RST carried data"
                                       : "the peer sent after the close";
        }
    }
    /* 3. the destination is a traced socket: the peer sent it */
    if (!ev) {
        size_t plo, phi;
        log_range(ls, rkey, &plo, &phi);
        const struct lev *best = NULL;
        for (size_t i = plo; i < phi; i++) {
            const struct lev *e = &ls->ev[i];
            if (e->kind == LK_PEER_RESET &&
                (!best || absdiff(e->ts_us, t) < absdiff(best->ts_us, t)))
                best = e;
        }
        const struct lev *nearest = NULL;
        for (size_t i = plo; !best && i < phi; i++) {
            const struct lev *e = &ls->ev[i];
            /* the traced side's own events: the one nearest the RST */
            if (!nearest || absdiff(e->ts_us, t) < absdiff(nearest->ts_us, t))
                nearest = e;
        }
        if (!best)
            best = nearest;
        if (best) {
            ev = best;
            v = V_PEER;
            if (best->kind != LK_PEER_RESET)
                note = "the traced process never saw the reset as an error (no peer_reset line)";
        }
    }
    /* 4. a traced process owned the source but logged no close */
    if (!ev) {
        for (size_t i = lo; i < hi; i++)
            if (!ev || absdiff(ls->ev[i].ts_us, t) < absdiff(ev->ts_us, t))
                ev = &ls->ev[i];
        if (ev)
            note = "a traced process owned this connection, but no close of it fits the RST "
                   "in time (see --tolerance) or none was logged (a crash, a raw syscall, "
                   "RSTSHIM_EVENTS=flagged)";
        hint = capture_hint(r, x->hintbuf, sizeof x->hintbuf, &hcode);
    }

    const char *fix = NULL;
    if (v == V_CAUSED || v == V_ANSWERED)
        fix = first_hint(ev->causes);
    if (v == V_PEER)
        fix = "the other side reset it: run that side under rstshim to learn why";
    if (v == V_SHUTDOWN)
        fix = "shutdown(SHUT_RD) with the fd kept open resets whatever the peer sends next: shut "
              "down only the write side (SHUT_WR) and read to EOF, or close";
    x->v = v;
    x->ev = ev;
    x->note = note;
    x->hint = hint;
    x->hcode = hcode;
    x->fix = fix;
}

/* Gives r its verdict, counts it and prints it. */
void decide(struct logset *ls, const struct rst *r, const struct opts *o, struct stats *st)
{
    struct explanation x;
    judge(ls, r, o, &x);
    st->verdicts[x.v]++;
    print_rst(o, r, &x);
}
