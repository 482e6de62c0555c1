/* Tracking sockets, and releasing them: the close line and its verdict.
 *
 * A release reads the socket before the real call (after it the socket is
 * gone) and writes the line after it, only when the call succeeded. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/mman.h>
#include <string.h>

#include "lifecycle.h"
#include "netstat.h"
#include "probe.h"
#include "process.h"
#include "real.h"
#include "verify.h"

/* ---- tracking ---- */

struct socket_record *lifecycle_track(int fd, int family, enum socket_role role, uint32_t forks)
{
    struct socket_record *rec = record_new(family, role);
    if (!rec)
        return NULL;
    rec->forks_at_birth = forks;
    struct socket_record *old = fdtab_put(fd, rec);
    if (old == rec) { /* fd beyond the table */
        record_free(rec);
        return NULL;
    }
    /* A record already there is stale: its fd was closed behind our back
     * (a raw syscall, io_uring).  Forget it quietly. */
    if (old && record_drop(old) == 0)
        record_free(old);
    return rec;
}

/* Ports the kernel hands out to connect(): ip_local_port_range, read once. */
static bool is_ephemeral_port(unsigned port)
{
    static int low = -1, high = -1;
    if (low < 0) {
        low = 32768;
        high = 60999; /* the kernel's default */
        int fd = open("/proc/sys/net/ipv4/ip_local_port_range", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            char text[64] = {0};
            if (REAL(read)(fd, text, sizeof text - 1) > 0)
                sscanf(text, "%d %d", &low, &high);
            REAL(close)(fd);
        }
    }
    return (int)port >= low && (int)port <= high;
}

static unsigned port_of(const struct sockaddr_storage *ss, socklen_t len)
{
    if (ss->ss_family == AF_INET && len >= sizeof(struct sockaddr_in))
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6 && len >= sizeof(struct sockaddr_in6))
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return 0;
}

/* A connected socket handed to us (inetd, systemd, SCM_RIGHTS) was accepted
 * by someone unless its own port is an ephemeral one and the peer's is not:
 * then it is the client end of a connect(). */
static enum socket_role role_of_handed_socket(int fd, struct socket_record *rec)
{
    rec->local_len = probe_local(fd, &rec->local);
    rec->peer_len = probe_peer(fd, &rec->peer);
    unsigned local_port = port_of(&rec->local, rec->local_len);
    unsigned peer_port = port_of(&rec->peer, rec->peer_len);
    if (local_port && peer_port && is_ephemeral_port(local_port) && !is_ephemeral_port(peer_port))
        return ROLE_CONNECTED;
    return ROLE_ACCEPTED;
}

struct socket_record *lifecycle_adopt(int fd)
{
    int family;
    bool listening;
    if (!probe_is_tcp(fd, &family, &listening))
        return NULL;
    struct socket_record *rec =
        lifecycle_track(fd, family, listening ? ROLE_LISTENER : ROLE_ACCEPTED, process_forks());
    if (!rec)
        return NULL;
    rec->adopted = true;
    rec->backlog = -1; /* unknown: the close line gives the kernel's effective one */
    rec->linger_onoff = -1; /* set before we saw it: asked at close */
    rec->rcvtimeo_set = probe_rcvtimeo_set(fd); /* accepted sockets inherit it too */
    /* Whoever handed it over (the parent that exec'd us, the sender of
     * SCM_RIGHTS) may still hold it: its release is settled by the kernel. */
    __atomic_store_n(&rec->shared_with_process, true, __ATOMIC_RELAXED);
    if (!listening)
        rec->role = (uint8_t)role_of_handed_socket(fd, rec);
    return rec;
}

void lifecycle_disconnected(struct socket_record *rec)
{
    /* connect(AF_UNSPEC) ended the connection (the kernel reset it if it
     * was open; not reported): the socket is a fresh one again, and what
     * the wrappers saw of the old connection says nothing of the next.  A
     * new generation (+2: live ones stay odd) makes receives still in
     * flight on the old connection in other threads drop their bookkeeping
     * (an EOF, a count, the EPIPE of this very disconnect). */
    uint32_t generation = __atomic_add_fetch(&rec->generation, 2, __ATOMIC_ACQ_REL);
    rec->role = ROLE_NONE;
    rec->adopted = false;
    rec->start_ns = 0;
    rec->local_len = rec->peer_len = 0;
    __atomic_store_n(&rec->seen, seen_fresh(generation), __ATOMIC_RELAXED);
    __atomic_store_n(&rec->reads, reads_fresh(generation), __ATOMIC_RELAXED);
}

void lifecycle_install(int fd, struct socket_record *rec)
{
    struct socket_record *old = fdtab_put(fd, rec);
    if (old == rec) { /* beyond the table, or fd already named it: drop the extra reference */
        if (record_drop(rec) == 0)
            record_free(rec);
        return;
    }
    if (old && record_drop(old) == 0)
        record_free(old); /* stale: closed behind our back */
}

void lifecycle_share(int fd, struct socket_record *rec)
{
    record_retain(rec);
    lifecycle_install(fd, rec);
}

static void mark_one_shared(int fd, struct socket_record *rec, void *ctx)
{
    bool only_inheritable = *(bool *)ctx;
    if (only_inheritable && probe_cloexec(fd) == 1)
        return;
    __atomic_store_n(&rec->shared_with_process, true, __ATOMIC_RELAXED);
}

void lifecycle_mark_shared(bool only_inheritable)
{
    fdtab_for_each(0, -1, mark_one_shared, &only_inheritable);
}

/* ---- the close verdict ---- */

static const char *role_name(const struct socket_record *rec)
{
    switch (rec->role) {
    case ROLE_LISTENER: return "listener";
    case ROLE_ACCEPTED: return "accepted";
    default: return "connected";
    }
}

/* A received FIN is counted in tcpi_bytes_received but is not data.  The
 * state says so, except CLOSE, which follows both a reset and a FIN after
 * our own shutdown: there, a receive that returned 0 tells. */
static bool fin_received(int state, uint32_t seen)
{
    return state == TCP_CLOSE_WAIT || state == TCP_LAST_ACK || state == TCP_CLOSING ||
           state == TCP_TIME_WAIT || (state == TCP_CLOSE && (seen & SEEN_EOF));
}

static long long bytes_read_from(const struct tcp_facts *tcp, long long unread, uint32_t seen)
{
    long long read = (long long)tcp->bytes_received - (unread > 0 ? unread : 0) -
                     (fin_received(tcp->state, seen) ? 1 : 0);
    return read < 0 ? 0 : read;
}

static long long bytes_written_from(const struct tcp_facts *tcp)
{
    return (long long)(tcp->bytes_sent - tcp->bytes_retrans) + tcp->notsent_bytes;
}

static void set_age(struct close_facts *f, const struct socket_record *rec)
{
    if (rec->start_ns)
        f->age_ms = (long long)((process_monotonic_ns() - rec->start_ns) / 1000000);
}

/* The verdict, with the age read first if it can still matter. */
static struct close_verdict verdict_with_age(struct close_facts *f,
                                             const struct socket_record *rec)
{
    if (f->age_ms < 0 && f->accepted && f->bytes_read == 0 && f->bytes_written == 0)
        set_age(f, rec);
    return verdict_on_close(f);
}

/* Facts every close knows without asking the kernel. */
static void facts_from_record(struct close_facts *f, const struct release *r)
{
    const struct socket_record *rec = r->rec;
    memset(f, 0, sizeof *f);
    f->listener = rec->role == ROLE_LISTENER;
    f->accepted = rec->role == ROLE_ACCEPTED && !rec->adopted;
    f->refs_left = r->last ? 0 : 1;
    f->shared_with_process = __atomic_load_n(&rec->shared_with_process, __ATOMIC_RELAXED) ||
                             process_forked_since(rec->forks_at_birth);
    f->unread_bytes = -1;
    f->linger_onoff = -1;
    f->tcp_state = -1;
    f->pending = -1;
    /* The age matters only to immediate_close: an accepted connection that
     * was neither read nor written.  A close the wrappers saw traffic on
     * reads the clock later, only if TCP_INFO then says no byte was read
     * or written (MSG_PEEK returns bytes but reads none): verdict_with_age(). */
    uint32_t seen = seen_bits(rec);
    f->age_ms = -1;
    if (f->accepted && !(seen & (SEEN_READ | SEEN_WROTE)))
        set_age(f, rec);
    f->immediate_ms = shim_config.immediate_ms;
    f->bytes_read = -1;
    f->bytes_written = -1;
    f->notsent_bytes = -1;
    f->recv_timed_out = seen & SEEN_RECV_TIMEOUT;
    f->linger2_abort = rec->linger2_abort;
}

/* The close line, after the call, once verification has spoken: from
 * what release_begin() learnt; the socket itself may be gone. */
static void write_line(struct release *r)
{
    const struct close_facts *f = &r->facts;
    struct socket_record *rec = r->rec;
    struct logline line_storage, *line = &line_storage;
    if (!logline_begin(line, "close", r->fd, r->verdict.flags != 0))
        return;
    logline_string(line, "via", r->via);
    logline_string(line, "role", role_name(rec));
    socket_fields_known(line, rec, !f->listener);
    if (f->listener)
        logline_null(line, "peer");
    if (f->unread_bytes >= 0)
        logline_int(line, "unread_bytes", f->unread_bytes);
    else
        logline_null(line, "unread_bytes");
    logline_flags(line, "flags", r->verdict.flags);
    logline_tristate(line, "rst", r->verdict.rst);
    if (f->listener) {
        logline_int(line, "pending", f->pending >= 0 ? f->pending : 0);
        if (rec->backlog >= 0)
            logline_int(line, "backlog", rec->backlog);
        else
            logline_null(line, "backlog");
    } else {
        if (rec->start_ns)
            logline_fixed(line, "duration_ms", line->mono_ns - rec->start_ns, 6);
        else
            logline_null(line, "duration_ms");
        if (r->have_tcp) {
            logline_int(line, "bytes_read", f->bytes_read);
            logline_int(line, "bytes_written", f->bytes_written);
            logline_string(line, "state", verdict_state_name(r->tcp.state));
            logline_int(line, "rtt_us", r->tcp.rtt_us);
        }
    }
    if (f->linger_onoff > 0)
        logline_int(line, "linger", f->linger_seconds);
    if (rec->adopted)
        logline_bool(line, "adopted", true);
    if (r->verify)
        logline_bool(line, "verified", r->verified);
    if (r->drained >= 0) {
        logline_string(line, "fix", "drain");
        logline_int(line, "drained_bytes", r->drained);
    }
    if (r->stack.count && (r->verdict.flags & ~FLAG_SHARED))
        logline_stack(line, "stack", &r->stack);
    logline_end(line);
}

static void apply_tcp_info(struct close_facts *f, const struct tcp_facts *tcp, uint32_t seen)
{
    f->tcp_state = tcp->state;
    f->bytes_read = bytes_read_from(tcp, f->unread_bytes, seen);
    f->bytes_written = bytes_written_from(tcp);
    f->notsent_bytes = tcp->notsent_bytes;
}

/* A listener: its queue decides.  False when fd is no longer a TCP socket. */
static bool probe_listener(int fd, struct socket_record *rec, struct close_facts *f,
                           struct tcp_facts *tcp)
{
    event_accept_error_flush(fd, rec); /* errors held back by the rate limit */
    netstat_report("close", fd, process_monotonic_ns());          /* while this listener can still be named */
    if (!probe_tcp_info(fd, tcp))
        return false;
    f->tcp_state = tcp->state;
    f->pending = tcp->unacked; /* reset only if this close releases it (verdict) */
    if (rec->backlog < 0)
        rec->backlog = (int)tcp->sacked; /* adopted: the effective backlog */
    return true;
}

/* The last fd of this process on a socket another process may also hold:
 * work out now what this close does if it is the last release, and what
 * to ask the kernel afterwards (the socket is gone then). */
static void prepare_verification(struct release *r, uint32_t seen)
{
    struct close_facts alone = r->facts;
    alone.shared_with_process = false;
    if (!r->have_tcp && !alone.listener && probe_tcp_info(r->fd, &r->tcp)) {
        r->have_tcp = true;
        apply_tcp_info(&r->facts, &r->tcp, seen);
        apply_tcp_info(&alone, &r->tcp, seen);
    }
    r->if_last = verdict_with_age(&alone, r->rec);
    if (!r->rec->cookie)
        r->rec->cookie = probe_cookie(r->fd);
    if (!r->rec->local_len)
        r->rec->local_len = probe_local(r->fd, &r->rec->local);
    r->verify = r->rec->cookie && r->rec->local_len > 0;
}

/* After the call: the kernel says whether the socket outlived this close. */
static void finish_verification(struct release *r)
{
    enum verify_answer answer = verify_socket(&r->rec->local, &r->rec->peer, r->rec->cookie);
    /* Released: gone at once after an RST (or already dead), an orphan
     * closing gracefully after a FIN; held: another process keeps it. */
    enum release_outcome outcome = answer == VERIFY_HELD   ? RELEASE_HELD
                                   : answer == VERIFY_GONE ? RELEASE_RESET
                                   : answer == VERIFY_ORPHAN ? RELEASE_ORPHAN
                                                             : RELEASE_UNKNOWN;
    r->verified = outcome != RELEASE_UNKNOWN; /* unknown: stays shared, rst null */
    r->verdict = verdict_after_release(r->verdict, r->if_last, outcome);
}

/* SO_LINGER as the kernel has it; a failure with ENOTSOCK or EBADF means
 * the fd is no longer this socket (closed behind our back, maybe reused). */
static void ask_linger(struct release *r)
{
    int err = probe_linger(r->fd, &r->facts.linger_onoff, &r->facts.linger_seconds);
    r->stale = err == -ENOTSOCK || err == -EBADF;
}

/* What the receive wrappers saw read (READS_*); false when the word is not
 * this socket's (see fdtab.h). */
static bool reads_known(const struct socket_record *rec, uint64_t *reads)
{
    *reads = __atomic_load_n(&rec->reads, __ATOMIC_RELAXED);
    return reads_current(*reads, __atomic_load_n(&rec->generation, __ATOMIC_RELAXED));
}

/* A receive that returned 0 had read everything before the peer's FIN, and
 * after a FIN the kernel queues no more data (it drops it, or resets): no
 * need to ask.  Not when our own SHUT_RD made that 0 (data may still come),
 * nor when another process shares the socket (its shutdown is not seen
 * here), nor with a receive timeout, a flag the probe must confirm the fd
 * for (EBADF: closed behind our back).  Servers whose clients close first
 * save the probe's syscall. */
static bool nothing_can_be_unread(const struct close_facts *f, const struct socket_record *rec,
                                  uint32_t seen)
{
    uint64_t reads;
    return reads_known(rec, &reads) && (reads & READS_TO_EOF) &&
           !(seen & (SEEN_SHUT_RD | SEEN_RECV_TIMEOUT)) && !f->shared_with_process;
}

/* With TCP_INFO at hand (every close line carries it with RSTSHIM_EVENTS=all),
 * the bytes received can answer without SIOCINQ when the wrappers saw the
 * application read them all.  Their count is a lower bound (reads they did
 * not see, adds lost to racing threads), so equality proves nothing is
 * unread, and anything else is asked.  The FIN counts as a received byte:
 * the state says whether it came, except in CLOSE (after a reset, or
 * after both FINs), where this asks. */
static bool all_received_was_read(const struct tcp_facts *tcp, const struct socket_record *rec)
{
    uint64_t fin;
    switch (tcp->state) {
    case TCP_ESTABLISHED: case TCP_SYN_RECV: case TCP_FIN_WAIT1: case TCP_FIN_WAIT2:
        fin = 0;
        break;
    case TCP_CLOSE_WAIT: case TCP_LAST_ACK: case TCP_CLOSING: case TCP_TIME_WAIT:
        fin = 1;
        break;
    default:
        return false;
    }
    uint64_t reads;
    return reads_known(rec, &reads) && tcp->bytes_received == (reads >> READS_BYTES_SHIFT) + fin;
}

/* A connection's release: the unread bytes (probe_unread) unless
 * nothing_can_be_unread() or all_received_was_read() answers; SO_LINGER
 * from what setsockopt saw, asked of the kernel only when unknown or when a
 * flag is about to be raised (to confirm the linger in force and that the
 * fd is still this socket); TCP_INFO first when every line is written,
 * otherwise only when the verdict needs the state or bytes. */
static void probe_connection(struct release *r, uint32_t seen)
{
    struct close_facts *f = &r->facts;
    bool asked = r->rec->linger_onoff < 0;
    if (asked) {
        ask_linger(r);
    } else {
        f->linger_onoff = r->rec->linger_onoff;
        f->linger_seconds = r->rec->linger_seconds;
    }
    if (r->stale)
        return;
    if (log_wants(false)) { /* the line will be written: TCP_INFO first, it may answer */
        r->have_tcp = probe_tcp_info(r->fd, &r->tcp);
        if (!r->have_tcp && (errno == ENOTSOCK || errno == EOPNOTSUPP || errno == EBADF)) {
            r->stale = true; /* not a TCP socket any more: closed behind our back */
            return;
        }
    }
    if (nothing_can_be_unread(f, r->rec, seen) ||
        (r->have_tcp && all_received_was_read(&r->tcp, r->rec))) {
        f->unread_bytes = 0;
    } else {
        f->unread_bytes = probe_unread(r->fd);
        if (f->unread_bytes < 0 && errno == EBADF) {
            r->stale = true;
            return;
        }
        /* Bytes that came after TCP_INFO would make bytes_read (received
         * minus unread) too low: ask again, after; rare (an RST) */
        if (f->unread_bytes > 0 && r->have_tcp)
            r->have_tcp = probe_tcp_info(r->fd, &r->tcp);
    }
    if (r->have_tcp)
        apply_tcp_info(f, &r->tcp, seen); /* bytes_read needs unread_bytes */
    bool linger_zero = f->linger_onoff > 0 && f->linger_seconds == 0;
    if (!asked && (f->unread_bytes > 0 || linger_zero)) {
        ask_linger(r);
        if (r->stale)
            return;
    }
    if (!r->have_tcp && verdict_needs_tcp_info(f, seen & (SEEN_READ | SEEN_WROTE))) {
        r->have_tcp = probe_tcp_info(r->fd, &r->tcp);
        if (r->have_tcp)
            apply_tcp_info(f, &r->tcp, seen);
    }
}

/* RSTSHIM_FIX=drain: read and drop what the application left unread, so
 * the release sends a FIN instead of an RST.  Bounded: what is queued now,
 * at most DRAIN_MAX_BYTES and DRAIN_MAX_NS; a peer still sending may yet
 * draw an RST after the close. */
#define DRAIN_MAX_BYTES (256 * 1024)
#define DRAIN_MAX_NS (50 * 1000000ull)

static long long drain_unread(int fd, long long unread)
{
    char sink[4096];
    long long drained = 0;
    uint64_t deadline = process_monotonic_ns() + DRAIN_MAX_NS;
    while (unread > 0 && drained < DRAIN_MAX_BYTES && process_monotonic_ns() < deadline) {
        size_t want = unread < (long long)sizeof sink ? (size_t)unread : sizeof sink;
        ssize_t n = REAL(recv)(fd, sink, want, MSG_DONTWAIT);
        if (n <= 0)
            break;
        drained += n;
        unread = probe_unread(fd);
    }
    return drained;
}

static void apply_drain_fix(struct release *r, uint32_t seen)
{
    struct close_facts *f = &r->facts;
    r->drained = drain_unread(r->fd, f->unread_bytes);
    f->unread_bytes = probe_unread(r->fd);
    /* Counted again (bytes may have arrived while draining), without what
     * the shim drained: the application did not read it, and a close that
     * read nothing is still an immediate_close.  If TCP_INFO fails now, the
     * counts from before the drain are still the application's. */
    if (r->have_tcp && probe_tcp_info(r->fd, &r->tcp)) {
        apply_tcp_info(f, &r->tcp, seen);
        f->bytes_read = f->bytes_read > r->drained ? f->bytes_read - r->drained : 0;
    }
}

/* The probes ran before the lookups and the stack capture above; the peer
 * may have sent meanwhile.  The closes where that changes the verdict are
 * looked at again, as late as the shim can: a fresh connection closed
 * before anything arrived (the client's request lands now: an RST, not a
 * FIN), and a listener (connections keep completing).  Both are rare, so
 * the extra syscall is too.  What arrives after this still escapes (and
 * with RSTSHIM_STACK=1 the stack capture that follows widens the window). */
static void recheck_before_release(struct release *r, uint32_t seen)
{
    struct close_facts *f = &r->facts;
    if (r->stale || r->verify || !r->last)
        return;
    if (f->listener) {
        struct tcp_facts tcp;
        if (!probe_tcp_info(r->fd, &tcp) || (long long)tcp.unacked == f->pending)
            return;
        f->pending = tcp.unacked;
    } else {
        if (f->unread_bytes != 0 || !(r->verdict.flags & FLAG_IMMEDIATE_CLOSE) ||
            nothing_can_be_unread(f, r->rec, seen))
            return;
        long long unread = probe_unread(r->fd);
        if (unread <= 0)
            return;
        f->unread_bytes = unread;
        if (r->have_tcp && probe_tcp_info(r->fd, &r->tcp))
            apply_tcp_info(f, &r->tcp, seen);
    }
    r->verdict = verdict_with_age(f, r->rec);
    bool write = log_wants(r->verdict.flags != 0);
    if (write && !r->write)
        record_learn_addresses(r->fd, r->rec, !f->listener);
    r->write = r->write || write;
}

static bool probe_release(struct release *r, int fd, const char *via)
{
    r->fd = fd;
    r->via = via;
    r->rec = fdtab_take(fd);
    if (!r->rec)
        return false;
    r->last = record_drop(r->rec) == 0;
    r->stale = r->have_tcp = r->verify = r->verified = r->write = r->fork_settled = false;
    r->drained = -1;
    r->stack.count = 0;
    struct socket_record *rec = r->rec;
    if (rec->role == ROLE_NONE) {
        r->stale = true; /* socket() and never connected nor listening: no TCP lifecycle */
        return true;
    }

    struct close_facts *f = &r->facts;
    facts_from_record(f, r);
    uint32_t seen = seen_bits(rec);
    if (f->listener) {
        r->have_tcp = probe_listener(fd, rec, f, &r->tcp);
        r->stale = !r->have_tcp;
    } else {
        probe_connection(r, seen);
    }
    if (r->stale)
        return true;
    r->verdict = verdict_with_age(f, rec);
    if (shim_config.fix_drain && (r->verdict.flags & FLAG_UNREAD_DATA)) {
        apply_drain_fix(r, seen);
        r->verdict = verdict_with_age(f, rec);
    }
    /* A line that will be written carries the state and byte counts too. */
    if (!r->have_tcp && log_wants(r->verdict.flags != 0)) {
        r->have_tcp = probe_tcp_info(fd, &r->tcp);
        if (!r->have_tcp && (errno == ENOTSOCK || errno == EOPNOTSUPP || errno == EBADF))
            return (r->stale = true); /* not a TCP socket any more: closed behind our back */
        if (r->have_tcp) {
            apply_tcp_info(f, &r->tcp, seen);
            r->verdict = verdict_with_age(f, rec);
        }
    }
    if (f->shared_with_process && r->last && r->verdict.rst == RST_UNKNOWN)
        prepare_verification(r, seen);
    /* A close to be verified is flagged "shared" until then, so it is
     * wanted here in either mode; write_line() asks again with the final flags. */
    r->write = log_wants(r->verdict.flags != 0);
    if (r->write)
        record_learn_addresses(fd, rec, !f->listener);
    recheck_before_release(r, seen);
    /* A cause, or one that verification may reveal: remember where. */
    if (shim_config.stack && r->write && ((r->verdict.flags & ~FLAG_SHARED) || r->verify))
        stack_capture(&r->stack);
    return true;
}

/* The probes may fail (a peer that reset: getpeername ENOTCONN) and leave
 * errno set; the real call that follows may succeed and not touch it: the
 * host must find errno as it left it. */
bool release_begin(struct release *r, int fd, const char *via)
{
    int saved = errno;
    bool tracked = probe_release(r, fd, via);
    errno = saved;
    return tracked;
}

/* A fork in another thread between release_begin() and the real call may
 * have copied the socket into a child before this process let it go: the
 * verdict worked out then was a last release's.  Settled like any shared
 * socket, by asking the kernel after this process's fds are closed, when
 * the line is wanted and the lookup's keys were learnt; otherwise a wanted
 * line says "shared", rst unknown (flagged mode wanted no line for a close
 * with nothing to flag, and none is written). */
static void settle_fork_race(struct release *r, struct fork_counts now)
{
    struct close_facts *f = &r->facts;
    if (r->fork_settled)
        return;
    r->fork_settled = true;
    if (!r->last || f->shared_with_process || !forked_since(now, r->rec->forks_at_birth))
        return;
    f->shared_with_process = true;
    r->if_last = r->verdict;
    r->verdict = verdict_with_age(f, r->rec);
    r->verify = r->write && r->verdict.rst == RST_UNKNOWN && r->rec->cookie &&
                r->rec->local_len > 0;
}

void release_end(struct release *r, bool released)
{
    if (!r->rec)
        return;
    if (!released) {
        /* The call failed and the fd is still open: it keeps its record. */
        lifecycle_share(r->fd, r->rec);
        return;
    }
    if (!r->stale) {
        settle_fork_race(r, process_fork_counts());
        if (r->verify)
            finish_verification(r);
        if (r->write)
            write_line(r); /* written only if still wanted with the final flags */
    }
    if (r->last)
        record_free(r->rec);
}

/* ---- many at once ---- */

struct collect {
    struct release_set *set;
    const char *via;
    bool cloexec_only;
};

/* mmap, not malloc: exit and _exit run this in forked children of threaded
 * programs and in signal handlers, where malloc's locks may be held. */
static bool grow_items(struct release_set *set)
{
    size_t capacity = set->capacity ? set->capacity * 2 : 64;
    struct release *items = mmap(NULL, capacity * sizeof *items, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (items == MAP_FAILED)
        return false;
    if (set->items) {
        memcpy(items, set->items, set->count * sizeof *items);
        munmap(set->items, set->capacity * sizeof *items);
    }
    set->items = items;
    set->capacity = (unsigned)capacity;
    return true;
}

static void collect_one(int fd, struct socket_record *rec, void *ctx)
{
    struct collect *c = ctx;
    (void)rec;
    if (c->cloexec_only && probe_cloexec(fd) != 1)
        return;
    if (c->set->count == c->set->capacity && !grow_items(c->set))
        return; /* out of memory: this fd goes unreported, the host is unharmed */
    if (release_begin(&c->set->items[c->set->count], fd, c->via))
        c->set->count++;
}

void release_set_begin(struct release_set *set, int low, int high, const char *via,
                       bool cloexec_only)
{
    struct collect c = {set, via, cloexec_only};
    int saved = errno; /* as in release_begin(): the host's errno survives the probes */
    set->items = NULL;
    set->count = set->capacity = 0;
    fdtab_for_each(low, high, collect_one, &c);
    errno = saved;
}

/* At exit the kernel releases the fds only after the shim's last word, so
 * a socket another process may hold would always look "still held".  Such
 * sockets (every fd of them) are closed here first, as exit would, so the
 * kernel can say what their release did. */
void release_set_close_shared(struct release_set *set)
{
    /* Whether a fork copied a socket is decided here, once, from one reading
     * of the counters, and per socket (a dup's fds all close): after exit,
     * only the kernel releases the rest, too late to ask it. */
    struct fork_counts now = process_fork_counts();
    for (unsigned i = 0; i < set->count; i++) {
        struct release *r = &set->items[i];
        if (r->stale)
            continue;
        settle_fork_race(r, now);
        if (r->facts.shared_with_process || forked_since(now, r->rec->forks_at_birth))
            __atomic_store_n(&r->rec->shared_with_process, true, __ATOMIC_RELAXED);
    }
    for (unsigned i = 0; i < set->count; i++)
        if (!set->items[i].stale &&
            __atomic_load_n(&set->items[i].rec->shared_with_process, __ATOMIC_RELAXED))
            REAL(close)(set->items[i].fd);
}

void release_set_end(struct release_set *set, bool released)
{
    for (unsigned i = 0; i < set->count; i++)
        release_end(&set->items[i], released);
    if (set->items)
        munmap(set->items, set->capacity * sizeof *set->items);
    set->items = NULL;
    set->count = set->capacity = 0;
}

void release_set_write_now(struct release_set *set)
{
    for (unsigned i = 0; i < set->count; i++) {
        struct release *r = &set->items[i];
        if (!r->stale && r->write)
            write_line(r);
        r->write = false; /* said once, even if the exec fails */
    }
}
