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
 *   answered_after_shutdown  the socket's process had shut down both
 *                     directions and kept the fd (its peer_reset line says
 *                     after_shutdown): the RST answers the peer's data;
 *   sent_by_peer      the RST's destination is a traced socket;
 *   not_explained     none of the above (a traced process may have owned the
 *                     4-tuple without a close that fits: its event is shown);
 *                     the capture itself says what it looks like (closed
 *                     port, ...).
 *
 * `-i IFACE` does the same live: packets from pcap_create/pcap_activate, the logs
 * tailed as they grow, each RST decided once its close line had time to
 * arrive.
 *
 * This file holds the command line and the two ways to run (a capture
 * file, a live interface); explain_capture.c reads the packets,
 * explain_match.c the logs and the verdicts, explain_print.c writes the
 * output (explain_int.h ties them together). */
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "explain_int.h"
#include "tool.h"

#define DEFAULT_TOLERANCE_MS 2000
#define LIVE_SETTLE_US 300000   /* live: wait this long for the close line */

static volatile sig_atomic_t stop_live;
static void on_stop(int sig)
{
    (void)sig;
    stop_live = 1;
}

/* `-i IFACE`: packets as they come, the logs tailed; each RST waits in
 * pend until its close line had time to arrive (LIVE_SETTLE_US). */
static int run_live(const char *iface, double duration, char **logs, int nlogs,
                    struct logset *ls, const struct opts *o, struct stats *st)
{
    struct capture cap;
    if (!capture_open_live(&cap, iface))
        return 1;
    long long *offs = calloc((size_t)nlogs + 1, sizeof *offs);
    if (!offs) {
        warnx("out of memory");
        capture_close(&cap);
        return 1;
    }
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
        struct rst r;
        bool is_rst = false;
        int rc = 0;
        if (!over) {
            rc = capture_next(&cap, &r, &is_rst, st);
            if (rc == 0) { /* nothing queued: wait up to 100 ms */
                struct pollfd pf = {.fd = cap.fd, .events = POLLIN};
                poll(&pf, 1, 100);
            }
        }
        if (rc < 0 && !over) {
            warnx("capture on %s: %s", iface, capture_error(&cap));
            over = true;
        }
        if (rc == 1 && is_rst) {
            if (npend == cappend) {
                cappend = cappend ? cappend * 2 : 64;
                struct rst *grown = realloc(pend, cappend * sizeof *pend);
                if (!grown) {
                    warnx("out of memory");
                    free(pend);
                    free(offs);
                    capture_close(&cap);
                    return 1;
                }
                pend = grown;
            }
            pend[npend++] = r;
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
    capture_close(&cap);
    free(pend);
    free(offs);
    return 0;
}

/* The capture file read through, the logs read in full first.  Returns 1
 * when a log or the capture could not be read to the end, else 0; -1 when
 * the capture could not be opened at all (then not even the totals are
 * printed). */
static int run_file(const char *path, char **logs, int nlogs, struct logset *ls,
                    const struct opts *o, struct stats *st)
{
    int rc = 0;
    for (int k = 0; k < nlogs; k++)
        if (log_read(ls, logs[k], NULL) < 0)
            rc = 1;
    struct capture cap;
    if (!capture_open_file(&cap, path))
        return -1;
    struct rst rs;
    bool is_rst;
    int r;
    while ((r = capture_next(&cap, &rs, &is_rst, st)) == 1)
        if (is_rst)
            decide(ls, &rs, o, st);
    if (r == PCAP_ERROR) {
        warnx("%s: %s", path, capture_error(&cap));
        rc = 1;
    }
    if (st->packets && !st->tcp)
        warnx("%s: no TCP segment found (link type %d)", path, cap.dlt);
    capture_close(&cap);
    return rc;
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
    int rc = iface ? run_live(iface, duration, logs, nlogs, &ls, &o, &st)
                   : run_file(capture, logs, nlogs, &ls, &o, &st);
    if (rc < 0)
        return 1; /* the capture file could not be opened */
    print_totals(&o, &st, &ls);
    free(ls.ev);
    free(ls.lst);
    flows_free();
    return rc;
}
