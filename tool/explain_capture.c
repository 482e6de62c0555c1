/* `rstshim explain`, the capture side: libpcap opened with dlopen(),
 * packets read from a file or a live interface, the link layer, IPv4/IPv6
 * and TCP decoded, and each flow's state kept so that every RST comes out
 * with what preceded it, once (a capture on lo holds two copies of each). */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "explain_int.h"
#include "tool.h"

#define DUP_WINDOW_US 1000      /* two copies of one RST on lo: same tuple+seq */

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

bool load_pcap(void)
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

/* Opens a pcap or pcapng file. */
bool capture_open_file(struct capture *c, const char *path)
{
    char err[PCAP_ERRBUF_SIZE] = "";
    c->pc = P.open_offline(path, err);
    if (!c->pc) {
        warnx("cannot read %s: %s", path, err);
        return false;
    }
    c->dlt = P.datalink(c->pc);
    c->fd = -1;
    return true;
}

/* Opens iface for live capture, TCP only, without blocking. */
bool capture_open_live(struct capture *c, const char *iface)
{
    char err[PCAP_ERRBUF_SIZE] = "";
    pcap_t *pc = P.create(iface, err);
    if (!pc) {
        warnx("cannot capture on %s: %s", iface, err);
        return false;
    }
    P.set_snaplen(pc, 256);
    P.set_immediate_mode(pc, 1);
    int act = P.activate(pc);
    if (act < 0) {
        warnx("cannot capture on %s: %s%s", iface, P.geterr(pc),
              act == PCAP_ERROR_PERM_DENIED ? " (needs root or CAP_NET_RAW)" : "");
        P.close(pc);
        return false;
    }
    int pfd = P.get_selectable_fd(pc);
    if (pfd < 0 || P.setnonblock(pc, 1, err) < 0) {
        warnx("cannot capture on %s: no selectable fd", iface);
        P.close(pc);
        return false;
    }
    struct bpf_program prog;
    if (P.compile(pc, &prog, "tcp", 1, PCAP_NETMASK_UNKNOWN) == 0) {
        P.setfilter(pc, &prog);
        P.freecode(&prog);
    }
    c->pc = pc;
    c->dlt = P.datalink(pc);
    c->fd = pfd;
    return true;
}

const char *capture_error(const struct capture *c)
{
    return P.geterr(c->pc);
}

void capture_close(struct capture *c)
{
    P.close(c->pc);
}

/* ---- addresses ---------------------------------------------------------- */

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

/* ---- flows --------------------------------------------------------------- */

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

/* Forgets every flow (the capture is over). */
void flows_free(void)
{
    free(flows);
    flows = NULL;
    nflows = capflows = 0;
}

/* ---- packets ------------------------------------------------------------- */

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
    /* Not IP at all (ARP, a VLAN tag cut short, an unknown ethertype): ver
     * is 0 then, and a payload starting with a 0 nibble must not pass. */
    if ((ver != 4 && ver != 6) || len < off + 1 || (d[off] >> 4) != ver)
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

/* Reads the next packet of c and counts it into st.  Returns what
 * pcap_next_ex() does: 1 for a packet, 0 when none is queued yet (live),
 * PCAP_ERROR_BREAK at the end of a file, PCAP_ERROR on an error.
 * *is_rst tells whether the packet is an RST to explain, described in *r. */
int capture_next(struct capture *c, struct rst *r, bool *is_rst, struct stats *st)
{
    struct pcap_pkthdr *h;
    const u_char *d;
    struct pkt p;
    *is_rst = false;
    int rc = P.next_ex(c->pc, &h, &d);
    if (rc != 1)
        return rc;
    st->packets++;
    if (!parse_packet(c->dlt, h, d, &p))
        return rc;
    st->tcp++;
    if (account(&p, r, st)) {
        st->rsts++;
        *is_rst = true;
    }
    return rc;
}
