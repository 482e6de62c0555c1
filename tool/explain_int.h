/* `rstshim explain`: what its parts share.  explain_capture.c turns
 * packets into RSTs (struct rst), explain_match.c reads the logs (struct
 * logset) and gives each RST a verdict, explain_print.c writes the
 * verdicts out, and explain.c runs it all from the command line. */
#ifndef RSTSHIM_EXPLAIN_INT_H
#define RSTSHIM_EXPLAIN_INT_H

#include <pcap/pcap.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "report_int.h"

#define ADDR_LEN 64
#define KEY_LEN (2 * ADDR_LEN + 2)

/* ---- the logs ----------------------------------------------------------- */

enum lkind { LK_CLOSE, LK_PEER_RESET, LK_ACCEPT, LK_CONNECT };

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
    bool after_shutdown; /* peer_reset: the process had shut down reading: its own RST */
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

/* What the capture says about one RST, taken before the RST is counted. */
struct rst {
    struct pkt p;
    char src[ADDR_LEN], dst[ADDR_LEN];
    struct fdir fwd, rev; /* src->dst and dst->src before the RST */
};

/* An open capture, a file or a live interface. */
struct capture {
    pcap_t *pc;
    int dlt; /* its link type */
    int fd;  /* live: poll() it while no packet is queued; -1 for a file */
};

/* ---- verdicts ------------------------------------------------------------ */

enum verdict { V_CAUSED, V_ANSWERED, V_SHUTDOWN, V_PEER, V_UNEXPLAINED, NVERDICT };

struct opts {
    bool json;
    int64_t tol_us;
};

struct stats {
    uint64_t packets, tcp, rsts, dups, verdicts[NVERDICT];
};

/* The verdict on one RST and what backs it: the matcher fills it in, the
 * printers write it out.  hint may point into hintbuf. */
struct explanation {
    enum verdict v;
    const struct lev *ev; /* the log event it rests on, if any */
    const char *note;
    const char *hint, *hcode; /* what the capture alone says, and its code */
    const char *fix;
    char hintbuf[512];
};

/* explain_capture.c */
bool load_pcap(void);
bool capture_open_file(struct capture *c, const char *path);
bool capture_open_live(struct capture *c, const char *iface);
int capture_next(struct capture *c, struct rst *r, bool *is_rst, struct stats *st);
const char *capture_error(const struct capture *c);
void capture_close(struct capture *c);
void flows_free(void);

/* explain_match.c */
void norm_addr(const char *in, char *out, size_t len);
int log_read(struct logset *ls, const char *path, long long *off);
void decide(struct logset *ls, const struct rst *r, const struct opts *o, struct stats *st);

/* explain_print.c */
void fmt_ms(int64_t us, char *out, size_t len);
void print_rst(const struct opts *o, const struct rst *r, const struct explanation *x);
void print_totals(const struct opts *o, const struct stats *st, const struct logset *ls);

#endif
