/* Lines for every event but close (close is in release.c). */
#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "format.h"
#include "lifecycle.h"
#include "probe.h"
#include "process.h"
#include "stack.h"

void record_learn_addresses(int fd, struct socket_record *rec, bool with_peer)
{
    /* Asked once per socket: its addresses do not change after
     * listen/accept/connect.  A socket not bound or connected yet is not
     * asked: it has no address worth keeping. */
    if (rec->role == ROLE_NONE)
        return;
    if (!rec->local_len)
        rec->local_len = probe_local(fd, &rec->local);
    if (with_peer && !rec->peer_len)
        rec->peer_len = probe_peer(fd, &rec->peer);
    if (!rec->cookie)
        rec->cookie = probe_cookie(fd);
}

void socket_fields_known(struct logline *line, const struct socket_record *rec, bool with_peer)
{
    logline_address(line, "local", (const struct sockaddr *)&rec->local, rec->local_len);
    if (with_peer)
        logline_address(line, "peer", (const struct sockaddr *)&rec->peer, rec->peer_len);
    logline_uint(line, "cookie", rec->cookie);
}

void socket_fields(struct logline *line, int fd, struct socket_record *rec, bool with_peer)
{
    if (rec->role == ROLE_NONE) {
        /* Bound perhaps, not yet listening or connected (a setsockopt before
         * listen): ask for this line only, keep nothing. */
        struct socket_record now = {0};
        now.local_len = probe_local(fd, &now.local);
        now.cookie = rec->cookie = rec->cookie ? rec->cookie : probe_cookie(fd);
        socket_fields_known(line, &now, with_peer);
        return;
    }
    record_learn_addresses(fd, rec, with_peer);
    socket_fields_known(line, rec, with_peer);
}

void event_listen(int fd, struct socket_record *rec, int backlog)
{
    struct logline line;
    if (!logline_begin(&line, "listen", fd, false))
        return;
    socket_fields(&line, fd, rec, false);
    logline_int(&line, "backlog", backlog);
    logline_end(&line);
}

void event_accept(int listen_fd, int fd, struct socket_record *rec)
{
    struct logline line;
    if (!logline_begin(&line, "accept", fd, false))
        return;
    socket_fields(&line, fd, rec, true);
    logline_int(&line, "listen_fd", listen_fd);
    logline_end(&line);
}

void event_connect(int fd, struct socket_record *rec, bool in_progress)
{
    struct logline line;
    if (!logline_begin(&line, "connect", fd, false))
        return;
    socket_fields(&line, fd, rec, true);
    logline_bool(&line, "in_progress", in_progress);
    logline_end(&line);
}

void event_linger(int fd, struct socket_record *rec, int onoff, int seconds)
{
    unsigned flags = verdict_on_linger(onoff, seconds);
    struct logline line;
    if (!logline_begin(&line, "setsockopt", fd, flags != 0))
        return;
    socket_fields(&line, fd, rec, rec->role != ROLE_LISTENER);
    logline_string(&line, "option", "SO_LINGER");
    logline_flags(&line, "flags", flags);
    logline_int(&line, "onoff", onoff);
    logline_int(&line, "linger", seconds);
    if (flags && shim_config.stack) {
        struct stack stack;
        stack_capture(&stack);
        logline_stack(&line, "stack", &stack);
    }
    logline_end(&line);
}

/* RSTSHIM_FIX=linger kept SO_LINGER {1,0} from the kernel: said as such. */
void event_linger_ignored(int fd, struct socket_record *rec)
{
    struct logline line;
    if (!rec || !logline_begin(&line, "setsockopt", fd, true))
        return;
    socket_fields(&line, fd, rec, rec->role != ROLE_LISTENER);
    logline_string(&line, "option", "SO_LINGER");
    logline_flags(&line, "flags", FLAG_LINGER_ZERO);
    logline_int(&line, "onoff", 1);
    logline_int(&line, "linger", 0);
    logline_string(&line, "fix", "ignored");
    logline_end(&line);
}

void event_rcvtimeo(int fd, struct socket_record *rec, long long timeout_ms)
{
    struct logline line;
    if (!logline_begin(&line, "setsockopt", fd, false))
        return;
    socket_fields(&line, fd, rec, rec->role != ROLE_LISTENER);
    logline_string(&line, "option", "SO_RCVTIMEO");
    logline_flags(&line, "flags", 0);
    logline_int(&line, "timeout_ms", timeout_ms);
    logline_end(&line);
}

void event_linger2(int fd, struct socket_record *rec, int seconds)
{
    unsigned flags = seconds < 0 ? FLAG_TCP_LINGER2 : 0;
    struct logline line;
    if (!logline_begin(&line, "setsockopt", fd, flags != 0))
        return;
    socket_fields(&line, fd, rec, rec->role != ROLE_LISTENER);
    logline_string(&line, "option", "TCP_LINGER2");
    logline_flags(&line, "flags", flags);
    logline_int(&line, "linger2", seconds);
    logline_end(&line);
}

void event_peer_reset(int fd, struct socket_record *rec, int err, const char *call)
{
    struct logline line;
    char name[16];
    if (!logline_begin(&line, "peer_reset", fd, true))
        return;
    socket_fields(&line, fd, rec, true);
    logline_string(&line, "errno", format_errno_name(err, name));
    logline_string(&line, "call", call);
    /* With both directions shut down (our FIN sent), the kernel answers the
     * peer's next data with an RST of its own (TCPAbortOnData): the likely
     * origin of this reset.  SHUT_RD alone resets nothing. */
    uint32_t seen = seen_bits(rec);
    if ((seen & SEEN_SHUT_RD) && (seen & SEEN_SHUT_WR))
        logline_bool(&line, "after_shutdown", true);
    logline_end(&line);
}

/* An event loop retries a failing accept at once, thousands of times a
 * second: one line per listener per second at most.  `suppressed` counts
 * the errors held back since the previous line; the rest are written when
 * the listener is released (event_accept_error_flush). */
#define ACCEPT_ERROR_INTERVAL_NS 1000000000ull

/* True for the one caller that moves *last to now, once `interval` has
 * passed since it last moved. */
static bool claim_interval(uint64_t *last, uint64_t now, uint64_t interval)
{
    uint64_t seen = __atomic_load_n(last, __ATOMIC_RELAXED);
    if (seen && now - seen < interval)
        return false;
    return __atomic_compare_exchange_n(last, &seen, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

static long long current_fd_limit(void)
{
    struct rlimit limit;
    return getrlimit(RLIMIT_NOFILE, &limit) == 0 ? (long long)limit.rlim_cur : -1;
}

/* rlimit_nofile: the limit when the (last) error happened, not when written. */
static void write_accept_error(int listen_fd, struct socket_record *listener, int err,
                               uint32_t suppressed, long long rlimit_nofile)
{
    struct logline line;
    char name[16];
    if (!logline_begin(&line, "accept_error", listen_fd, true))
        return;
    if (listener)
        socket_fields(&line, listen_fd, listener, false);
    logline_int(&line, "listen_fd", listen_fd);
    logline_string(&line, "errno", format_errno_name(err, name));
    if (rlimit_nofile >= 0)
        logline_int(&line, "rlimit_nofile", rlimit_nofile);
    logline_int(&line, "suppressed", suppressed);
    logline_end(&line);
}

void event_accept_error(int listen_fd, struct socket_record *listener, int err)
{
    uint64_t now = process_monotonic_ns();
    long long rlimit_nofile = current_fd_limit();
    if (!listener) {
        write_accept_error(listen_fd, NULL, err, 0, rlimit_nofile);
        return;
    }
    __atomic_store_n(&listener->accept_error_rlimit, rlimit_nofile, __ATOMIC_RELAXED);
    int last_errno = __atomic_exchange_n(&listener->accept_error_errno, err, __ATOMIC_RELAXED);
    if (last_errno == err &&
        !claim_interval(&listener->accept_error_ns, now, ACCEPT_ERROR_INTERVAL_NS)) {
        __atomic_fetch_add(&listener->accept_errors_suppressed, 1, __ATOMIC_RELAXED);
        return;
    }
    __atomic_store_n(&listener->accept_error_ns, now, __ATOMIC_RELAXED);
    uint32_t suppressed =
        __atomic_exchange_n(&listener->accept_errors_suppressed, 0, __ATOMIC_RELAXED);
    write_accept_error(listen_fd, listener, err, suppressed, rlimit_nofile);
}

void event_accept_error_flush(int listen_fd, struct socket_record *listener)
{
    uint32_t suppressed =
        __atomic_exchange_n(&listener->accept_errors_suppressed, 0, __ATOMIC_RELAXED);
    if (suppressed)
        write_accept_error(listen_fd, listener,
                           __atomic_load_n(&listener->accept_error_errno, __ATOMIC_RELAXED),
                           suppressed,
                           __atomic_load_n(&listener->accept_error_rlimit, __ATOMIC_RELAXED));
}

/* Accept-queue pressure.  The queue is sampled on accept, at most every
 * 10 ms per listener (TCP_INFO costs ~350 ns: not on every accept); past
 * 80 % of the effective backlog one queue_pressure line is written, at most
 * one a second per listener.  A queue that fills up that far is about to
 * drop SYNs (or, with tcp_abort_on_overflow, reset connections). */
#define QUEUE_SAMPLE_NS 10000000ull
#define QUEUE_REPORT_NS 1000000000ull

void event_queue_sample(int listen_fd, struct socket_record *listener, uint64_t now)
{
    /* Threads accepting on one listener: one of them samples. */
    if (!claim_interval(&listener->queue_checked_ns, now, QUEUE_SAMPLE_NS))
        return;
    struct tcp_facts tcp;
    if (!probe_tcp_info(listen_fd, &tcp) || tcp.sacked == 0)
        return;
    /* tcpi_unacked: connections queued now (this accept's already taken);
     * tcpi_sacked: the effective backlog, min(backlog, somaxconn); the queue
     * holds sacked + 1 before it overflows. */
    if ((uint64_t)tcp.unacked * 5 < (uint64_t)(tcp.sacked + 1) * 4)
        return;
    if (!claim_interval(&listener->queue_reported_ns, now, QUEUE_REPORT_NS))
        return;
    struct logline line;
    if (!logline_begin(&line, "queue_pressure", listen_fd, true))
        return;
    socket_fields(&line, listen_fd, listener, false);
    logline_int(&line, "queued", tcp.unacked);
    logline_int(&line, "backlog", listener->backlog);
    logline_int(&line, "effective_backlog", tcp.sacked);
    logline_end(&line);
}

void event_listener_shutdown(int fd, struct socket_record *listener, int how, long long pending)
{
    unsigned flags = pending > 0 ? FLAG_PENDING_CONNECTIONS : 0;
    struct logline line;
    if (!logline_begin(&line, "shutdown", fd, flags != 0))
        return;
    logline_string(&line, "how", how == SHUT_RD ? "SHUT_RD" : "SHUT_RDWR");
    logline_string(&line, "role", "listener");
    socket_fields(&line, fd, listener, false);
    logline_int(&line, "pending", pending);
    logline_flags(&line, "flags", flags);
    logline_bool(&line, "rst", flags != 0);
    if (flags && shim_config.stack) {
        struct stack stack;
        stack_capture(&stack);
        logline_stack(&line, "stack", &stack);
    }
    logline_end(&line);
}

void event_config_error(const char *variable, const char *value, const char *message)
{
    struct logline line;
    char shown[1100];
    if (!logline_begin(&line, "config_error", -1, true))
        return;
    format_printable(value, 256, shown, sizeof shown);
    logline_string(&line, "variable", variable);
    logline_string(&line, "value", shown);
    logline_string(&line, "message", message);
    logline_end(&line);
}

void event_exec_failed(int err)
{
    struct logline line;
    char name[16];
    if (!logline_begin(&line, "exec_failed", -1, true))
        return;
    logline_string(&line, "errno", format_errno_name(err, name));
    logline_end(&line);
}
