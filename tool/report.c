/* `rstshim report` engine: one line in, fixed-size totals updated.
 *
 * Each line is parsed on its own by json_loadb and forgotten; the totals
 * (counters, bounded top-k tables, a fixed histogram) never grow with the
 * log.  Anything that is not an rstshim event (cut-off lines, garbage,
 * other programs' JSON on a shared stderr) is counted and skipped: a
 * damaged log still gets a report.  Reading is in report_read.c; shards
 * filled by parallel readers are combined by report_merge. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"
#include "tool.h"

const char *const cause_name[NCAUSE] = {
    "unread_data", "linger_zero", "immediate_close",
    "recv_timeout", "pending_connections", "tcp_linger2", "shared",
};
const char *const event_name[NEVENT] = {
    "listen", "accept", "connect", "setsockopt", "close", "shutdown", "peer_reset",
    "accept_error", "config_error", "exec_failed", "other",
};
const char *const role_name[NROLE] = {"accepted", "connected", "listener", "other"};
const char *const stack_cause_name[NSTACK_CAUSE] = {
    "unread_data", "linger_zero", "immediate_close",
    "recv_timeout", "pending_connections", "tcp_linger2", "shared", "setsockopt_linger_zero",
};

/* ---------------------------------------------------------------- setup */

struct report *report_alloc(void)
{
    struct report *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (topk_init(&r->listeners, TOPK_CAP) || topk_init(&r->peers, TOPK_CAP) ||
        topk_init(&r->offenders, TOPK_CAP) || topk_init(&r->tags, TOPK_CAP) ||
        topk_init(&r->stacks.t, STACK_CAP) ||
        /* calloc: pages no stack ever touches cost no memory */
        !(r->stacks.text = calloc(STACK_CAP, sizeof *r->stacks.text))) {
        report_free(r);
        return NULL;
    }
    r->accept_rlimit = -1;
    r->lifetime.min = INFINITY;
    return r;
}

void report_release(struct report *r)
{
    if (!r)
        return;
    topk_free(&r->listeners);
    topk_free(&r->peers);
    topk_free(&r->offenders);
    topk_free(&r->tags);
    topk_free(&r->stacks.t);
    free(r->stacks.text);
    free(r);
}

/* ------------------------------------------------------------- helpers */

static const char *get_str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool get_int(json_t *o, const char *key, long long *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return false;
    *out = json_integer_value(v);
    return true;
}

static int lookup(const char *const *names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], s))
            return i;
    return -1;
}

static struct name_count *name_table_get(struct name_table *t, const char *name)
{
    for (int i = 0; i < t->used; i++)
        if (!strncmp(t->slot[i].name, name, NC_NAME_LEN - 1))
            return &t->slot[i];
    if (t->used < NC_SLOTS - 1) {
        struct name_count *c = &t->slot[t->used++];
        snprintf(c->name, sizeof c->name, "%s", name);
        return c;
    }
    struct name_count *other = &t->slot[NC_SLOTS - 1];
    if (!other->name[0]) {
        snprintf(other->name, sizeof other->name, "other");
        t->used = NC_SLOTS;
    }
    return other;
}

/* "10.0.0.1:8080" -> "10.0.0.1", "[::1]:8080" -> "::1": RSTs are grouped
 * per peer host because the port of a client is ephemeral. */
static void addr_host(const char *addr, char *out, size_t len)
{
    if (!addr) {
        snprintf(out, len, "(unknown)");
        return;
    }
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        int n = end ? (int)(end - addr - 1) : (int)strlen(addr + 1);
        snprintf(out, len, "%.*s", n, addr + 1);
        return;
    }
    const char *colon = strrchr(addr, ':');
    int n = colon ? (int)(colon - addr) : (int)strlen(addr);
    snprintf(out, len, "%.*s", n, addr);
}

static void note_ts(struct report *r, const char *ts)
{
    /* RFC 3339 with a fixed width sorts as text; lines of several files
     * need not come in order. */
    if (!ts[0] || strlen(ts) >= TK_TS_LEN)
        return;
    if (!r->first_ts[0] || strcmp(ts, r->first_ts) < 0)
        snprintf(r->first_ts, sizeof r->first_ts, "%s", ts);
    if (strcmp(ts, r->last_ts) > 0)
        snprintf(r->last_ts, sizeof r->last_ts, "%s", ts);
}

static void entry_times(struct tk_entry *e, const char *ts)
{
    if (!e->first[0] || strcmp(ts, e->first) < 0)
        snprintf(e->first, sizeof e->first, "%s", ts);
    if (strcmp(ts, e->last) > 0)
        snprintf(e->last, sizeof e->last, "%s", ts);
}

/* ----------------------------------------------------------- histogram */

static void hist_add(struct hist *h, double ms)
{
    int i;
    if (!(ms >= HIST_MIN_MS)) /* also catches NaN */
        i = 0;
    else {
        i = 1 + (int)(log10(ms / HIST_MIN_MS) * HIST_PER_DECADE);
        if (i >= HIST_BUCKETS)
            i = HIST_BUCKETS - 1;
    }
    h->b[i]++;
    h->n++;
    if (ms < h->min)
        h->min = ms;
    if (ms > h->max)
        h->max = ms;
}

double hist_percentile(const struct hist *h, double p)
{
    if (!h->n)
        return NAN;
    uint64_t rank = (uint64_t)ceil(p * (double)h->n);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen < rank)
            continue;
        /* geometric middle of the bucket, never outside what was seen */
        double v = i == 0 ? h->min : HIST_MIN_MS * pow(10.0, (i - 0.5) / HIST_PER_DECADE);
        return v < h->min ? h->min : v > h->max ? h->max : v;
    }
    return h->max;
}

/* ---------------------------------------------------------- call stacks */

/* The first STACK_FRAMES string frames of the line's `stack`, joined with
 * " < " (cut at STACK_KEY_LEN); false when the line has none. */
static bool stack_key(json_t *o, char *out, size_t len)
{
    json_t *st = json_object_get(o, "stack");
    size_t i, used = 0;
    int frames = 0;
    json_t *f;
    out[0] = '\0';
    json_array_foreach(st, i, f) {
        if (frames == STACK_FRAMES)
            break;
        if (!json_is_string(f))
            continue;
        int n = snprintf(out + used, len - used, "%s%s", frames ? " < " : "",
                         json_string_value(f));
        frames++;
        if (n < 0 || (size_t)n >= len - used) {
            /* cut off (longer keys share an entry): no half UTF-8 sequence */
            used = strlen(out);
            while (used && ((unsigned char)out[used - 1] & 0x80))
                out[--used] = '\0';
            break;
        }
        used += (size_t)n;
    }
    return frames > 0;
}

static void stack_add(struct stack_table *s, int cause, const char *text, uint64_t w,
                      int64_t pid, const char *ts)
{
    /* FNV-1a of the text: the key holds the hash, the table the text */
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    struct tk_key k;
    tk_key_make(&k, 0, cause, hex);
    struct tk_entry *e = topk_add(&s->t, &k, w);
    if (!e->first[0]) { /* new or recycled entry */
        snprintf(s->text[e - s->t.e], STACK_KEY_LEN, "%s", text);
        e->example = pid;
    }
    entry_times(e, ts);
}

static void count_stack(struct report *r, json_t *o, uint32_t causes, long long pid,
                        const char *ts)
{
    char key[STACK_KEY_LEN];
    if (!causes || !stack_key(o, key, sizeof key))
        return;
    r->stacked++;
    for (int c = 0; c < NSTACK_CAUSE; c++)
        if (causes & (1u << c))
            stack_add(&r->stacks, c, key, 1, pid, ts);
}

/* -------------------------------------------------------- event handlers */

static uint32_t close_flags(struct report *r, json_t *flags)
{
    uint32_t mask = 0;
    size_t i;
    json_t *f;
    json_array_foreach(flags, i, f) {
        int c = json_is_string(f) ? lookup(cause_name, NCAUSE, json_string_value(f)) : -1;
        if (c < 0)
            r->other_flags++;
        else
            mask |= 1u << c;
    }
    return mask;
}

static void count_rst_close(struct report *r, json_t *o, int role, const char *ts)
{
    const char *local = get_str(o, "local");
    const char *peer = get_str(o, "peer");
    long long pending = 1;
    /* A listener's close resets each queued connection. */
    if (role == ROLE_LISTENER && (!get_int(o, "pending", &pending) || pending < 1))
        pending = 1;
    r->rst_true++;
    r->conns_reset += (uint64_t)pending;

    struct tk_key k;
    if (role == ROLE_CONNECTED) {
        r->rst_outgoing++; /* local is an ephemeral port: not a listener */
    } else {
        tk_key_make(&k, 0, 0, local ? local : "(unknown)");
        entry_times(topk_add(&r->listeners, &k, (uint64_t)pending), ts);
    }
    if (peer) {
        char host[TK_STR_LEN];
        addr_host(peer, host, sizeof host);
        tk_key_make(&k, 0, 0, host);
        entry_times(topk_add(&r->peers, &k, 1), ts);
    }
}

static void count_offender(struct report *r, json_t *o, uint32_t mask, bool rst,
                           long long pid, long long fd, const char *ts)
{
    char host[TK_STR_LEN];
    const char *peer = get_str(o, "peer");
    if (peer)
        addr_host(peer, host, sizeof host);
    else
        snprintf(host, sizeof host, "-");
    struct tk_key k;
    tk_key_make(&k, pid, (int32_t)fd, host);
    struct tk_entry *e = topk_add(&r->offenders, &k, 1);
    e->mask |= mask;
    e->rst += rst;
    entry_times(e, ts);
}

/* What a release did to the wire: a close, or a listener's shutdown(SHUT_RD)
 * that reset its queue.  Returns whether it sent RSTs. */
static bool count_release(struct report *r, json_t *o, int role, long long pid, long long fd,
                          const char *ts)
{
    json_t *flags = json_object_get(o, "flags");
    uint32_t mask = json_is_array(flags) ? close_flags(r, flags) : 0;
    json_t *rstv = json_object_get(o, "rst");
    bool rst = json_is_true(rstv);
    if (rst)
        count_rst_close(r, o, role, ts);
    else if (json_is_false(rstv))
        r->rst_false++;
    else
        r->rst_unknown++;

    if (json_is_array(flags) && json_array_size(flags) > 0)
        r->flagged++;
    for (int c = 0; c < NCAUSE; c++)
        if (mask & (1u << c)) {
            r->cause_closes[c]++;
            r->cause_rst[c] += rst;
        }
    if (mask & RST_CAUSE_MASK)
        count_offender(r, o, mask & RST_CAUSE_MASK, rst, pid, fd, ts);
    count_stack(r, o, mask, pid, ts);
    return rst;
}

static void on_close(struct report *r, json_t *o, long long pid, long long fd, const char *ts)
{
    r->closes++;
    const char *rs = get_str(o, "role");
    int role = rs ? lookup(role_name, ROLE_OTHER, rs) : -1;
    if (role < 0)
        role = ROLE_OTHER;
    r->by_role[role]++;
    count_release(r, o, role, pid, fd, ts);

    json_t *d = json_object_get(o, "duration_ms");
    if (json_is_number(d) && role != ROLE_LISTENER)
        hist_add(&r->lifetime, json_number_value(d));
}

/* A listener's shutdown(SHUT_RD) that reset its queue counts as the release
 * that sent those RSTs (one more listener close in the totals, so they add
 * up); one that found the queue empty did nothing on the wire: not counted. */
static void on_listener_shutdown(struct report *r, json_t *o, long long pid, long long fd,
                                 const char *ts)
{
    if (!json_is_true(json_object_get(o, "rst")))
        return;
    r->closes++;
    r->by_role[ROLE_LISTENER]++;
    count_release(r, o, ROLE_LISTENER, pid, fd, ts);
}

/* Many containers logging into one place: the tag (RSTSHIM_TAG, a pod or
 * host name) says which one the RSTs come from.  Every event stretches the
 * tag's time span, but only closes weigh, so hosts rank by closes. */
static void count_tag(struct report *r, json_t *o, int kind, const char *ts)
{
    const char *tag = get_str(o, "tag");
    if (tag && tag[0])
        r->tagged++;
    else
        tag = "-";
    bool close = kind == EV_CLOSE ||
                 (kind == EV_SHUTDOWN && json_is_true(json_object_get(o, "rst")));
    struct tk_key k;
    tk_key_make(&k, 0, 0, tag);
    struct tk_entry *e = topk_add(&r->tags, &k, close);
    entry_times(e, ts);
    if (!close)
        return;
    json_t *flags = json_object_get(o, "flags");
    e->flagged += json_is_array(flags) && json_array_size(flags) > 0;
    e->rst += json_is_true(json_object_get(o, "rst"));
}

static void on_setsockopt(struct report *r, json_t *o, long long pid, const char *ts)
{
    json_t *flags = json_object_get(o, "flags");
    size_t i;
    json_t *f;
    bool linger_zero = false;
    json_array_foreach(flags, i, f)
        if (json_is_string(f) && !strcmp(json_string_value(f), "linger_zero")) {
            r->setsockopt_linger_zero++;
            linger_zero = true;
        }
    if (linger_zero)
        count_stack(r, o, 1u << STACK_SETSOCKOPT, pid, ts);
}

static void on_accept_error(struct report *r, json_t *o)
{
    const char *err = get_str(o, "errno");
    struct name_count *c = name_table_get(&r->accept_error, err ? err : "(unknown)");
    long long v;
    c->n++;
    if (get_int(o, "suppressed", &v) && v > 0)
        c->extra += (uint64_t)v;
    /* the lowest limit seen is the one that bit (order-free, for shards) */
    if (get_int(o, "rlimit_nofile", &v) && v >= 0 && (r->accept_rlimit < 0 || v < r->accept_rlimit))
        r->accept_rlimit = v;
}

static void add_config_msg(struct report *r, const char *line)
{
    if (r->n_config_msgs >= MAX_CONFIG_MSGS)
        return;
    for (int i = 0; i < r->n_config_msgs; i++)
        if (!strcmp(r->config_msgs[i], line))
            return; /* each process reports the same bad value: keep one */
    snprintf(r->config_msgs[r->n_config_msgs++], MSG_LEN, "%s", line);
}

static void on_config_error(struct report *r, json_t *o)
{
    r->config_errors++;
    const char *var = get_str(o, "variable"), *val = get_str(o, "value");
    const char *msg = get_str(o, "message");
    char line[MSG_LEN];
    snprintf(line, sizeof line, "%s=%s: %s", var ? var : "?", val ? val : "", msg ? msg : "");
    add_config_msg(r, line);
}

/* ------------------------------------------------------------ one line */

/* An rstshim event is an object with at least string `event`, string `ts`
 * and integer `pid`; everything else is someone else's JSON. */
static void dispatch_event(struct report *r, json_t *o)
{
    const char *ev = get_str(o, "event"), *ts = get_str(o, "ts");
    long long pid, fd = -1;
    if (!ev || !ts || !get_int(o, "pid", &pid)) {
        r->foreign++;
        return;
    }
    get_int(o, "fd", &fd);
    int kind = lookup(event_name, EV_OTHER, ev);
    if (kind < 0)
        kind = EV_OTHER; /* a newer shim's event: counted, not understood */
    r->events[kind]++;
    note_ts(r, ts);
    count_tag(r, o, kind, ts);
    switch (kind) {
    case EV_CLOSE: on_close(r, o, pid, fd, ts); break;
    case EV_SHUTDOWN: on_listener_shutdown(r, o, pid, fd, ts); break;
    case EV_SETSOCKOPT: on_setsockopt(r, o, pid, ts); break;
    case EV_PEER_RESET: {
        const char *err = get_str(o, "errno");
        name_table_get(&r->peer_reset, err ? err : "(unknown)")->n++;
        break;
    }
    case EV_ACCEPT_ERROR: on_accept_error(r, o); break;
    case EV_CONFIG_ERROR: on_config_error(r, o); break;
    case EV_EXEC_FAILED: r->exec_failed++; break;
    default: break;
    }
}

/* `complete` is false for a last line that never got its '\n': the shim
 * writes each line with one write(2), so such a line was cut off. */
void report_line(struct report *r, const char *p, size_t len, bool complete)
{
    while (len && (p[len - 1] == '\r' || p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    while (len && (*p == ' ' || *p == '\t')) {
        p++;
        len--;
    }
    if (!len) {
        r->blank++;
        return;
    }
    r->lines++;
    json_error_t err;
    /* DECODE_ANY: a bare `42` is JSON, just not ours (foreign, not garbage) */
    json_t *o = json_loadb(p, len, JSON_DECODE_ANY, &err);
    if (!o) {
        if (!complete || json_error_code(&err) == json_error_premature_end_of_input)
            r->truncated++;
        else
            r->not_json++;
        return;
    }
    if (json_is_object(o))
        dispatch_event(r, o);
    else
        r->foreign++;
    json_decref(o);
}

/* --------------------------------------------------------------- merge */

static void merge_topk(struct topk *into, const struct topk *from)
{
    for (uint32_t i = 0; i < from->n; i++) {
        const struct tk_entry *f = &from->e[i];
        struct tk_entry *e = topk_add(into, &f->key, f->count);
        e->err += f->err;
        e->rst += f->rst;
        e->flagged += f->flagged;
        e->mask |= f->mask;
        if (f->first[0])
            entry_times(e, f->first);
        if (f->last[0])
            entry_times(e, f->last);
    }
    into->evictions += from->evictions;
}

static void merge_stacks(struct stack_table *into, const struct stack_table *from)
{
    for (uint32_t i = 0; i < from->t.n; i++) {
        const struct tk_entry *f = &from->t.e[i];
        struct tk_entry *e = topk_add(&into->t, &f->key, f->count);
        if (!e->first[0]) {
            memcpy(into->text[e - into->t.e], from->text[i], STACK_KEY_LEN);
            e->example = f->example;
        }
        e->err += f->err;
        entry_times(e, f->first);
        entry_times(e, f->last);
    }
    into->t.evictions += from->t.evictions;
}

static void merge_names(struct name_table *into, const struct name_table *from)
{
    for (int i = 0; i < from->used; i++) {
        struct name_count *c = name_table_get(into, from->slot[i].name);
        c->n += from->slot[i].n;
        c->extra += from->slot[i].extra;
    }
}

#define ADD(field) into->field += from->field
void report_merge(struct report *into, const struct report *from)
{
    ADD(files); ADD(files_failed); ADD(bytes); ADD(lines); ADD(blank);
    ADD(truncated); ADD(not_json); ADD(foreign); ADD(oversized);
    ADD(closes); ADD(flagged); ADD(rst_true); ADD(rst_false); ADD(rst_unknown);
    ADD(conns_reset); ADD(rst_outgoing); ADD(other_flags); ADD(setsockopt_linger_zero);
    ADD(config_errors); ADD(exec_failed); ADD(tagged); ADD(stacked);
    for (int i = 0; i < NEVENT; i++)
        ADD(events[i]);
    for (int i = 0; i < NROLE; i++)
        ADD(by_role[i]);
    for (int i = 0; i < NCAUSE; i++) {
        ADD(cause_closes[i]);
        ADD(cause_rst[i]);
    }
    if (from->first_ts[0])
        note_ts(into, from->first_ts);
    if (from->last_ts[0])
        note_ts(into, from->last_ts);
    merge_topk(&into->listeners, &from->listeners);
    merge_topk(&into->peers, &from->peers);
    merge_topk(&into->offenders, &from->offenders);
    merge_topk(&into->tags, &from->tags);
    merge_stacks(&into->stacks, &from->stacks);
    for (int i = 0; i < HIST_BUCKETS; i++)
        ADD(lifetime.b[i]);
    ADD(lifetime.n);
    if (from->lifetime.min < into->lifetime.min)
        into->lifetime.min = from->lifetime.min;
    if (from->lifetime.max > into->lifetime.max)
        into->lifetime.max = from->lifetime.max;
    merge_names(&into->peer_reset, &from->peer_reset);
    merge_names(&into->accept_error, &from->accept_error);
    if (from->accept_rlimit >= 0 &&
        (into->accept_rlimit < 0 || from->accept_rlimit < into->accept_rlimit))
        into->accept_rlimit = from->accept_rlimit;
    for (int i = 0; i < from->n_config_msgs; i++)
        add_config_msg(into, from->config_msgs[i]);
}
#undef ADD
