/* `rstshim explain CAPTURE LOG...`: every TCP RST in a packet capture,
 * matched to the log line of the process that caused it.
 *
 * The capture is read through libpcap (pcap and pcapng), which is opened
 * with dlopen() only when this subcommand runs: the rest of the command
 * keeps depending on glibc alone, and a host without libpcap gets a clear
 * message instead of a binary that does not start.
 *
 * Each RST gets one verdict, matched on the 4-tuple first and on time
 * second (--tolerance):
 *   caused_by_close   a close of the RST's source socket with rst:true
 *                     (or a listener close with pending connections);
 *   answered_after_close  an earlier close of that socket that sent FIN;
 *                     the RST answers what the peer sent afterwards;
 *   sent_by_peer      the RST's destination is a traced socket;
 *   not_explained     no log line names the 4-tuple: the capture itself
 *                     says what it looks like (closed port, ...).
 *
 * `-i IFACE` does the same live: packets from pcap_open_live, the logs
 * tailed as they grow, each RST decided once its close line had time to
 * arrive. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "report_int.h"
#include "tool.h"

#define ADDR_LEN 64
#define KEY_LEN (2 * ADDR_LEN + 2)
#define DEFAULT_TOLERANCE_MS 2000
#define DUP_WINDOW_US 1000      /* two copies of one RST on lo: same tuple+seq */
#define LIVE_SETTLE_US 300000   /* live: wait this long for the close line */

/* ---- libpcap, loaded at run time ---------------------------------------- */

static struct {
    void *h;
    pcap_t *(*open_offline)(const char *, char *);
    pcap_t *(*create)(const char *, char *);
    int (*set_snaplen)(pcap_t *, int);
    int (*set_immediate_mode)(pcap_t *, int);
    int (*activate)(pcap_t *);
    int (*setnonblock)(pcap_t *, int, char *);
    int (*get_selectable_fd)(pcap_t *);
    int (*next_ex)(pcap_t *, struct pcap_pkthdr **, const u_char **);
    int (*datalink)(pcap_t *);
    void (*close)(pcap_t *);
    char *(*geterr)(pcap_t *);
    int (*compile)(pcap_t *, struct bpf_program *, const char *, int, bpf_u_int32);
    int (*setfilter)(pcap_t *, struct bpf_program *);
    void (*freecode)(struct bpf_program *);
} P;

static bool load_pcap(void)
{
    static const char *const names[] = {"libpcap.so.0.8", "libpcap.so.1", "libpcap.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !P.h; i++)
        P.h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!P.h) {
        warnx("explain needs libpcap: install it (Debian: apt-get install libpcap0.8)");
        return false;
    }
#define SYM(field, name)                                                  \
    do {                                                                  \
        *(void **)&P.field = dlsym(P.h, name);                            \
        if (!P.field) {                                                   \
            warnx("libpcap lacks %s", name);                              \
            return false;                                                 \
        }                                                                 \
    } while (0)
    SYM(open_offline, "pcap_open_offline");
    SYM(create, "pcap_create");
    SYM(set_snaplen, "pcap_set_snaplen");
    SYM(set_immediate_mode, "pcap_set_immediate_mode");
    SYM(activate, "pcap_activate");
    SYM(setnonblock, "pcap_setnonblock");
    SYM(get_selectable_fd, "pcap_get_selectable_fd");
    SYM(next_ex, "pcap_next_ex");
    SYM(datalink, "pcap_datalink");
    SYM(close, "pcap_close");
    SYM(geterr, "pcap_geterr");
    SYM(compile, "pcap_compile");
    SYM(setfilter, "pcap_setfilter");
    SYM(freecode, "pcap_freecode");
#undef SYM
    return true;
}

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

static void fmt_ts(int64_t us, char *out, size_t len)
{
    time_t sec = (time_t)(us / 1000000);
    struct tm tm;
    char day[32];
    gmtime_r(&sec, &tm);
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%06uZ", day, (unsigned)(us % 1000000) % 1000000u);
}

/* ---- addresses ---------------------------------------------------------- */

/* The log's form ("1.2.3.4:80", "[::1]:80"), with IPv4-mapped IPv6
 * addresses written as IPv4 so a dual-stack socket matches the wire. */
static void norm_addr(const char *in, char *out, size_t len)
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

static void fmt_addr(int fam, const uint8_t *a, uint16_t port, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN], buf[ADDR_LEN];
    inet_ntop(fam, a, ip, sizeof ip);
    if (fam == AF_INET)
        snprintf(buf, sizeof buf, "%s:%u", ip, port);
    else
        snprintf(buf, sizeof buf, "[%s]:%u", ip, port);
    norm_addr(buf, out, len);
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

enum lkind { LK_CLOSE, LK_PEER_RESET, LK_ACCEPT, LK_CONNECT };
static const char *const lkind_name[] = {"close", "peer_reset", "accept", "connect"};

struct lev {
    char key[KEY_LEN]; /* "local|peer" */
    char local[ADDR_LEN], peer[ADDR_LEN];
    int64_t ts_us;
    enum lkind kind;
    long long pid, fd, unread, pending, cookie; /* -1: null/absent */
    char comm[40], via[16], role[12], state[16], errname[16], call[16];
    char flags[160];
    unsigned causes; /* bit per enum cause */
    int rst;         /* 1, 0, -1 = null */
    const char *file;
};

struct logset {
    struct lev *ev; /* connections, sorted by key then time */
    size_t n, cap;
    struct lev *lst; /* listener closes */
    size_t nl, capl;
    size_t lines, bad, files;
    bool dirty;
};

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
    if (!strcmp(ev, "close"))
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
    snprintf(e.via, sizeof e.via, "%s", jstr(o, "via") ? jstr(o, "via") : "");
    snprintf(e.role, sizeof e.role, "%s", jstr(o, "role") ? jstr(o, "role") : "");
    snprintf(e.state, sizeof e.state, "%s", jstr(o, "state") ? jstr(o, "state") : "");
    snprintf(e.errname, sizeof e.errname, "%s", jstr(o, "errno") ? jstr(o, "errno") : "");
    snprintf(e.call, sizeof e.call, "%s", jstr(o, "call") ? jstr(o, "call") : "");
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
static int log_read(struct logset *ls, const char *path, long long *off)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (off && errno == ENOENT)
            return 0; /* live: not written yet */
        warnx("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
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

/* ---- the capture: flows and RSTs ---------------------------------------- */

struct pkt {
    int fam;
    uint8_t src[16], dst[16];
    uint16_t sport, dport;
    uint32_t seq, ack;
    uint8_t flags;
    uint32_t paylen;
    int64_t ts_us;
};

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_ACK 0x10

struct fdir {
    uint32_t npkts, ndata;
    uint8_t last_flags;
    uint32_t last_len;
    int64_t last_us, fin_us, first_us;
    bool syn_only; /* its last packet was a bare SYN */
    uint32_t rst_seq;
    int64_t rst_us;
};

struct flow {
    bool used;
    int fam;
    uint8_t a[16], b[16];
    uint16_t pa, pb;
    struct fdir d[2]; /* 0: a->b, 1: b->a */
};

static struct flow *flows;
static size_t nflows, capflows;

static uint64_t flow_hash(const struct flow *f)
{
    uint64_t h = 1469598103934665603ull;
    const uint8_t *parts[2] = {f->a, f->b};
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 16; i++)
            h = (h ^ parts[p][i]) * 1099511628211ull;
    h = (h ^ f->pa) * 1099511628211ull;
    h = (h ^ f->pb) * 1099511628211ull;
    return h ^ (uint64_t)f->fam;
}

static bool flow_eq(const struct flow *x, const struct flow *y)
{
    return x->fam == y->fam && x->pa == y->pa && x->pb == y->pb && !memcmp(x->a, y->a, 16) &&
           !memcmp(x->b, y->b, 16);
}

static struct flow *flow_slot(struct flow *tab, size_t cap, const struct flow *k)
{
    size_t i = flow_hash(k) & (cap - 1);
    while (tab[i].used && !flow_eq(&tab[i], k))
        i = (i + 1) & (cap - 1);
    return &tab[i];
}

/* The flow of p and p's direction in it. */
static struct flow *flow_get(const struct pkt *p, int *dir)
{
    if (2 * (nflows + 1) > capflows) {
        size_t ncap = capflows ? capflows * 2 : 1024;
        struct flow *nt = calloc(ncap, sizeof *nt);
        if (!nt) {
            warnx("out of memory");
            exit(1);
        }
        for (size_t i = 0; i < capflows; i++)
            if (flows[i].used)
                *flow_slot(nt, ncap, &flows[i]) = flows[i];
        free(flows);
        flows = nt;
        capflows = ncap;
    }
    struct flow k;
    memset(&k, 0, sizeof k);
    k.fam = p->fam;
    int c = memcmp(p->src, p->dst, 16);
    bool fwd = c < 0 || (c == 0 && p->sport <= p->dport);
    memcpy(k.a, fwd ? p->src : p->dst, 16);
    memcpy(k.b, fwd ? p->dst : p->src, 16);
    k.pa = fwd ? p->sport : p->dport;
    k.pb = fwd ? p->dport : p->sport;
    *dir = fwd ? 0 : 1;
    struct flow *f = flow_slot(flows, capflows, &k);
    if (!f->used) {
        *f = k;
        f->used = true;
        nflows++;
    }
    return f;
}

/* What the capture says about one RST, taken before the RST is counted. */
struct rst {
    struct pkt p;
    char src[ADDR_LEN], dst[ADDR_LEN];
    struct fdir fwd, rev; /* src->dst and dst->src before the RST */
};

/* Returns 1 for a TCP segment parsed into *p, 0 for anything else. */
static int parse_packet(int dlt, const struct pcap_pkthdr *h, const u_char *d, struct pkt *p)
{
    uint32_t len = h->caplen;
    uint32_t off = 0;
    int ver = 0;
    switch (dlt) {
    case DLT_EN10MB: {
        if (len < 14)
            return 0;
        uint16_t et = (uint16_t)(d[12] << 8 | d[13]);
        off = 14;
        while ((et == 0x8100 || et == 0x88a8) && len >= off + 4) {
            et = (uint16_t)(d[off + 2] << 8 | d[off + 3]);
            off += 4;
        }
        ver = et == 0x0800 ? 4 : et == 0x86dd ? 6 : 0;
        break;
    }
    case DLT_LINUX_SLL: {
        if (len < 16)
            return 0;
        uint16_t et = (uint16_t)(d[14] << 8 | d[15]);
        off = 16;
        ver = et == 0x0800 ? 4 : et == 0x86dd ? 6 : 0;
        break;
    }
#ifdef DLT_LINUX_SLL2
    case DLT_LINUX_SLL2: {
        if (len < 20)
            return 0;
        uint16_t et = (uint16_t)(d[0] << 8 | d[1]);
        off = 20;
        ver = et == 0x0800 ? 4 : et == 0x86dd ? 6 : 0;
        break;
    }
#endif
    case DLT_NULL:
    case DLT_LOOP: {
        if (len < 4)
            return 0;
        uint32_t le = (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 |
                      (uint32_t)d[3] << 24;
        uint32_t be = (uint32_t)d[3] | (uint32_t)d[2] << 8 | (uint32_t)d[1] << 16 |
                      (uint32_t)d[0] << 24;
        uint32_t fam = dlt == DLT_LOOP ? be : (le < 256 ? le : be);
        off = 4;
        ver = fam == 2 ? 4 : (fam == 10 || fam == 24 || fam == 28 || fam == 30) ? 6 : 0;
        break;
    }
    case DLT_RAW:
#ifdef DLT_IPV4
    case DLT_IPV4:
#endif
#ifdef DLT_IPV6
    case DLT_IPV6:
#endif
        off = 0;
        ver = len ? d[0] >> 4 : 0;
        break;
    default:
        return 0;
    }
    if (len < off + 1 || (d[off] >> 4) != ver)
        return 0;
    const u_char *ip = d + off;
    uint32_t iplen = len - off;
    uint32_t l4, total;
    memset(p, 0, sizeof *p);
    if (ver == 4) {
        if (iplen < 20)
            return 0;
        uint32_t ihl = (uint32_t)(ip[0] & 15) * 4;
        total = (uint32_t)(ip[2] << 8 | ip[3]);
        if (ip[9] != 6 || ihl < 20 || iplen < ihl || (((ip[6] & 0x1f) << 8) | ip[7]) != 0)
            return 0;
        p->fam = AF_INET;
        memcpy(p->src, ip + 12, 4);
        memcpy(p->dst, ip + 16, 4);
        l4 = ihl;
    } else {
        if (iplen < 40)
            return 0;
        total = 40 + (uint32_t)(ip[4] << 8 | ip[5]);
        uint8_t nh = ip[6];
        l4 = 40;
        while (nh == 0 || nh == 43 || nh == 60 || nh == 51) {
            if (iplen < l4 + 8)
                return 0;
            uint32_t hl = nh == 51 ? ((uint32_t)ip[l4 + 1] + 2) * 4 : ((uint32_t)ip[l4 + 1] + 1) * 8;
            nh = ip[l4];
            l4 += hl;
        }
        if (nh != 6)
            return 0;
        p->fam = AF_INET6;
        memcpy(p->src, ip + 8, 16);
        memcpy(p->dst, ip + 24, 16);
    }
    if (iplen < l4 + 20)
        return 0;
    const u_char *t = ip + l4;
    p->sport = (uint16_t)(t[0] << 8 | t[1]);
    p->dport = (uint16_t)(t[2] << 8 | t[3]);
    p->seq = (uint32_t)t[4] << 24 | (uint32_t)t[5] << 16 | (uint32_t)t[6] << 8 | t[7];
    p->ack = (uint32_t)t[8] << 24 | (uint32_t)t[9] << 16 | (uint32_t)t[10] << 8 | t[11];
    uint32_t thl = (uint32_t)(t[12] >> 4) * 4;
    p->flags = t[13];
    p->paylen = total > l4 + thl ? total - l4 - thl : 0;
    p->ts_us = (int64_t)h->ts.tv_sec * 1000000 + h->ts.tv_usec;
    return 1;
}

/* ---- verdicts ------------------------------------------------------------ */

enum verdict { V_CAUSED, V_ANSWERED, V_PEER, V_UNEXPLAINED, NVERDICT };
static const char *const verdict_key[NVERDICT] = {
    "caused_by_close", "answered_after_close", "sent_by_peer", "not_explained"};
static const char *const verdict_text[NVERDICT] = {
    "caused by a close", "answered data after a close", "sent by the peer", "not explained"};

struct opts {
    bool json;
    int64_t tol_us;
};

struct stats {
    uint64_t packets, tcp, rsts, dups, verdicts[NVERDICT];
};

static void fmt_ms(int64_t us, char *out, size_t len)
{
    snprintf(out, len, "%.3f ms", (double)us / 1000.0);
}

/* One line describing a log event, for the text output. */
static void describe_ev(const struct lev *e, int64_t rst_us, char *out, size_t len)
{
    char when[40], d[32];
    fmt_ts(e->ts_us, when, sizeof when);
    int64_t dt = rst_us - e->ts_us;
    fmt_ms(dt < 0 ? -dt : dt, d, sizeof d);
    int n = snprintf(out, len, "pid %lld (%s) fd %lld: %s%s", e->pid, e->comm, e->fd,
                     lkind_name[e->kind], e->kind == LK_CLOSE ? "()" : "");
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
                          lkind_name[e->kind], "ts", when, "pid", (json_int_t)e->pid, "comm",
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

static void decide(struct logset *ls, const struct rst *r, const struct opts *o, struct stats *st)
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
    char hintbuf[512];
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
    /* 1b. a listener closed with connections queued */
    for (size_t i = 0; !ev && i < ls->nl; i++) {
        const struct lev *e = &ls->lst[i];
        if (e->rst == 1 && (e->causes & (1u << CAUSE_PENDING_CONNECTIONS)) &&
            local_matches(e->local, r->src) && absdiff(e->ts_us, t) <= o->tol_us) {
            ev = e;
            v = V_CAUSED;
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
        for (size_t i = plo; !best && i < phi; i++) {
            const struct lev *e = &ls->ev[i];
            /* the traced side's own events: the one nearest the RST */
            if (!best || absdiff(e->ts_us, t) < absdiff(best->ts_us, t))
                best = e;
        }
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
        hint = capture_hint(r, hintbuf, sizeof hintbuf, &hcode);
    }
    st->verdicts[v]++;

    const char *fix = NULL;
    if (v == V_CAUSED || v == V_ANSWERED)
        fix = first_hint(ev->causes);
    if (v == V_PEER)
        fix = "the other side reset it: run that side under rstshim to learn why";

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

/* ---- packets in, RSTs out ------------------------------------------------ */

/* Counts p into its flow; returns true for an RST that is not a second copy
 * of one already seen (filling *r from the state before it). */
static bool account(const struct pkt *p, struct rst *r, struct stats *st)
{
    int dir;
    struct flow *f = flow_get(p, &dir);
    struct fdir *fw = &f->d[dir];
    bool is_rst = (p->flags & TH_RST) != 0;
    if (is_rst && fw->rst_us && fw->rst_seq == p->seq && p->ts_us - fw->rst_us <= DUP_WINDOW_US &&
        p->ts_us >= fw->rst_us) {
        st->dups++;
        return false;
    }
    if (is_rst) {
        memset(r, 0, sizeof *r);
        r->p = *p;
        r->fwd = f->d[dir];
        r->rev = f->d[!dir];
        fmt_addr(p->fam, p->src, p->sport, r->src, sizeof r->src);
        fmt_addr(p->fam, p->dst, p->dport, r->dst, sizeof r->dst);
        fw->rst_seq = p->seq;
        fw->rst_us = p->ts_us;
    }
    if (!fw->npkts)
        fw->first_us = p->ts_us;
    fw->npkts++;
    fw->last_flags = p->flags;
    fw->last_len = p->paylen;
    fw->last_us = p->ts_us;
    fw->syn_only = (p->flags & (TH_SYN | TH_ACK)) == TH_SYN;
    if (p->paylen)
        fw->ndata++;
    if ((p->flags & TH_FIN) && !fw->fin_us)
        fw->fin_us = p->ts_us;
    return is_rst;
}

static void print_totals(const struct opts *o, const struct stats *st, const struct logset *ls)
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

static volatile sig_atomic_t stop_live;
static void on_stop(int sig)
{
    (void)sig;
    stop_live = 1;
}

static int run_live(const char *iface, double duration, char **logs, int nlogs,
                    struct logset *ls, const struct opts *o, struct stats *st)
{
    char err[PCAP_ERRBUF_SIZE] = "";
    pcap_t *pc = P.create(iface, err);
    if (!pc) {
        warnx("cannot capture on %s: %s", iface, err);
        return 1;
    }
    P.set_snaplen(pc, 256);
    P.set_immediate_mode(pc, 1);
    int act = P.activate(pc);
    if (act < 0) {
        warnx("cannot capture on %s: %s%s", iface, P.geterr(pc),
              act == PCAP_ERROR_PERM_DENIED ? " (needs root or CAP_NET_RAW)" : "");
        P.close(pc);
        return 1;
    }
    int pfd = P.get_selectable_fd(pc);
    if (pfd < 0 || P.setnonblock(pc, 1, err) < 0) {
        warnx("cannot capture on %s: no selectable fd", iface);
        P.close(pc);
        return 1;
    }
    struct bpf_program prog;
    if (P.compile(pc, &prog, "tcp", 1, PCAP_NETMASK_UNKNOWN) == 0) {
        P.setfilter(pc, &prog);
        P.freecode(&prog);
    }
    int dlt = P.datalink(pc);
    long long *offs = calloc((size_t)nlogs + 1, sizeof *offs);
    struct rst *pend = NULL;
    size_t npend = 0, cappend = 0;
    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    double end = mono_seconds() + duration, last_read = 0;
    fprintf(stderr, "rstshim: explaining RSTs on %s%s\n", iface,
            duration > 0 ? "" : " until interrupted");
    for (;;) {
        bool over = stop_live || (duration > 0 && mono_seconds() >= end);
        struct pcap_pkthdr *h;
        const u_char *d;
        int rc = 0;
        if (!over) {
            rc = P.next_ex(pc, &h, &d);
            if (rc == 0) { /* nothing queued: wait up to 100 ms */
                struct pollfd pf = {.fd = pfd, .events = POLLIN};
                poll(&pf, 1, 100);
            }
        }
        if (rc < 0 && !over) {
            warnx("capture on %s: %s", iface, P.geterr(pc));
            over = true;
        }
        if (rc == 1) {
            struct pkt p;
            st->packets++;
            if (parse_packet(dlt, h, d, &p)) {
                st->tcp++;
                struct rst r;
                if (account(&p, &r, st)) {
                    st->rsts++;
                    if (npend == cappend) {
                        cappend = cappend ? cappend * 2 : 64;
                        pend = realloc(pend, cappend * sizeof *pend);
                        if (!pend)
                            return 1;
                    }
                    pend[npend++] = r;
                }
            }
        }
        /* the close line follows the RST it caused: read the logs (at
         * most every 50 ms), then decide what has waited long enough */
        double m = mono_seconds();
        if (over || m - last_read >= 0.05) {
            for (int i = 0; i < nlogs; i++)
                log_read(ls, logs[i], &offs[i]);
            last_read = m;
        }
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t now_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
        size_t k = 0;
        for (size_t i = 0; i < npend; i++) {
            if (over || now_us - pend[i].p.ts_us >= LIVE_SETTLE_US)
                decide(ls, &pend[i], o, st);
            else
                pend[k++] = pend[i];
        }
        npend = k;
        if (over)
            break;
    }
    P.close(pc);
    free(pend);
    free(offs);
    return 0;
}

static void explain_usage(FILE *out)
{
    fputs("usage: rstshim explain [--json] [--tolerance MS] CAPTURE LOG...\n"
          "       rstshim explain -i IFACE [--duration S] [--json] [--tolerance MS] LOG...\n",
          out);
}

int cmd_explain(int argc, char **argv)
{
    struct opts o = {.json = false, .tol_us = (int64_t)DEFAULT_TOLERANCE_MS * 1000};
    const char *iface = NULL;
    double duration = 0;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        long v;
        if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (!strcmp(a, "--json")) {
            o.json = true;
        } else if (!strcmp(a, "--tolerance") && i + 1 < argc) {
            if (!parse_nonneg_int(argv[++i], &v) || v > 86400000) {
                warnx("--tolerance takes milliseconds, 0..86400000");
                return EXIT_USAGE;
            }
            o.tol_us = (int64_t)v * 1000;
        } else if ((!strcmp(a, "-i") || !strcmp(a, "--interface")) && i + 1 < argc) {
            iface = argv[++i];
        } else if (!strcmp(a, "--duration") && i + 1 < argc) {
            if (!parse_nonneg_int(argv[++i], &v)) {
                warnx("--duration takes whole seconds");
                return EXIT_USAGE;
            }
            duration = (double)v;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            explain_usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            warnx("explain: unknown option %s", a);
            explain_usage(stderr);
            return EXIT_USAGE;
        } else {
            break;
        }
    }
    const char *capture = NULL;
    if (!iface) {
        if (i >= argc) {
            explain_usage(stderr);
            return EXIT_USAGE;
        }
        capture = argv[i++];
    }
    if (i >= argc) {
        warnx("explain: no LOG given (the shim's JSON lines)");
        explain_usage(stderr);
        return EXIT_USAGE;
    }
    char **logs = argv + i;
    int nlogs = argc - i;
    if (!load_pcap())
        return 1;

    struct logset ls;
    memset(&ls, 0, sizeof ls);
    ls.files = (size_t)nlogs;
    struct stats st;
    memset(&st, 0, sizeof st);
    int rc = 0;
    if (iface) {
        rc = run_live(iface, duration, logs, nlogs, &ls, &o, &st);
    } else {
        for (int k = 0; k < nlogs; k++)
            if (log_read(&ls, logs[k], NULL) < 0)
                rc = 1;
        char err[PCAP_ERRBUF_SIZE] = "";
        pcap_t *pc = P.open_offline(capture, err);
        if (!pc) {
            warnx("cannot read %s: %s", capture, err);
            return 1;
        }
        int dlt = P.datalink(pc);
        struct pcap_pkthdr *h;
        const u_char *d;
        int r;
        while ((r = P.next_ex(pc, &h, &d)) == 1) {
            struct pkt p;
            struct rst rs;
            st.packets++;
            if (!parse_packet(dlt, h, d, &p))
                continue;
            st.tcp++;
            if (account(&p, &rs, &st)) {
                st.rsts++;
                decide(&ls, &rs, &o, &st);
            }
        }
        if (r == PCAP_ERROR) {
            warnx("%s: %s", capture, P.geterr(pc));
            rc = 1;
        }
        if (st.packets && !st.tcp)
            warnx("%s: no TCP segment found (link type %d)", capture, dlt);
        P.close(pc);
    }
    print_totals(&o, &st, &ls);
    free(ls.ev);
    free(ls.lst);
    free(flows);
    flows = NULL;
    nflows = capflows = 0;
    return rc;
}
