/* Wrappers that create, copy and release sockets.
 *
 * Every wrapper has one shape: enter the guard (not initialised or
 * re-entered: plain real call) → look the fd up (untracked: real call, no
 * syscall added) → read what must be read before the call → real call →
 * save errno → update the table and log → restore errno → return. */
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <string.h>
#include <unistd.h>

#include "guard.h"
#include "lifecycle.h"
#include "netstat.h"
#include "probe.h"
#include "process.h"
#include "real.h"

static bool is_tcp_request(int domain, int type, int protocol)
{
    return (domain == AF_INET || domain == AF_INET6) && (type & 0xf) == SOCK_STREAM &&
           (protocol == 0 || protocol == IPPROTO_TCP);
}

SHIM_EXPORT int socket(int domain, int type, int protocol)
{
    uint32_t forks = process_forks();
    int fd = REAL(socket)(domain, type, protocol);
    if (fd < 0 || !is_tcp_request(domain, type, protocol) || !guard_enter())
        return fd;
    int saved = errno;
    lifecycle_track(fd, domain, ROLE_NONE, forks);
    guard_leave();
    errno = saved;
    return fd;
}

SHIM_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    int ret = REAL(connect)(fd, addr, len);
    if ((ret != 0 && errno != EINPROGRESS) || !guard_enter())
        return ret;
    int saved = errno;
    struct socket_record *rec = fdtab_get(fd);
    if (!rec && addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6))
        rec = lifecycle_adopt(fd); /* made before we loaded, or by a raw syscall */
    if (rec && ret == 0 && addr && addr->sa_family == AF_UNSPEC)
        lifecycle_disconnected(rec);
    else if (rec && (rec->role == ROLE_NONE || (rec->adopted && !rec->start_ns))) {
        rec->role = ROLE_CONNECTED;
        rec->adopted = false;
        rec->start_ns = process_monotonic_ns();
        if (addr && len <= sizeof rec->peer) {
            memcpy(&rec->peer, addr, len);
            rec->peer_len = len;
        }
        event_connect(fd, rec, ret != 0);
    }
    guard_leave();
    errno = saved;
    return ret;
}

SHIM_EXPORT int listen(int fd, int backlog)
{
    int ret = REAL(listen)(fd, backlog);
    if (ret != 0 || !guard_enter())
        return ret;
    int saved = errno;
    struct socket_record *rec = fdtab_get(fd);
    if (!rec)
        rec = lifecycle_adopt(fd);
    if (rec) {
        rec->role = ROLE_LISTENER;
        rec->backlog = backlog;
        netstat_start();
        /* Known from now on: accepted sockets take it when it is not a wildcard. */
        record_learn_addresses(fd, rec, false);
        event_listen(fd, rec, backlog);
    }
    guard_leave();
    errno = saved;
    return ret;
}

/* shutdown(SHUT_RD or SHUT_RDWR) of a listener is, on the wire, its close:
 * the kernel resets every completed connection still queued (threaded
 * servers do it to wake the threads blocked in accept()).  The queue is
 * read before the call; the later close finds it empty.  A connection's
 * shutdown is not logged (it sends a FIN, not an RST), only remembered:
 * once both directions are shut, data the peer sends draws an RST from
 * this side (peer_reset says after_shutdown); an EPIPE after our own
 * SHUT_WR is no reset at all. */
/* A connection's shutdown, remembered in its record (unless another thread
 * closed the fd and the record went to another socket meanwhile). */
static int shutdown_connection(int fd, struct socket_record *rec, int how)
{
    uint32_t generation = __atomic_load_n(&rec->generation, __ATOMIC_ACQUIRE);
    int ret = REAL(shutdown)(fd, how);
    if (ret != 0)
        return ret;
    uint32_t bits = (how == SHUT_RD ? SEEN_SHUT_RD : how == SHUT_WR ? SEEN_SHUT_WR
                                                                     : SEEN_SHUT_RD | SEEN_SHUT_WR);
    seen_mark(rec, generation, bits);
    return ret;
}

SHIM_EXPORT int shutdown(int fd, int how)
{
    struct socket_record *rec = fdtab_get(fd);
    if (!rec || !guard_open())
        return REAL(shutdown)(fd, how);
    if (rec->role != ROLE_LISTENER)
        return shutdown_connection(fd, rec, how);
    if (how == SHUT_WR || !guard_enter())
        return REAL(shutdown)(fd, how);
    struct tcp_facts tcp;
    int saved = errno; /* the probe may fail; a successful shutdown leaves errno alone */
    bool listening = probe_tcp_info(fd, &tcp) && tcp.state == TCP_LISTEN;
    errno = saved;
    guard_leave();
    int ret = REAL(shutdown)(fd, how);
    if (ret != 0 || !listening)
        return ret;
    saved = errno;
    guard_reenter();
    event_listener_shutdown(fd, rec, how, tcp.unacked);
    guard_leave();
    errno = saved;
    return ret;
}

/* accept() cannot take an fd when the process is out of them; the kernel
 * keeps the connection queued and the peer waits (or gives up). */
static bool is_resource_error(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

static bool is_wildcard(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (ss->ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
    return true;
}

/* Addresses are 16 or 28 bytes: copied with a fixed size, not a string
 * instruction sized at run time (which costs more than the copy here). */
static socklen_t copy_address(struct sockaddr_storage *to, const void *from, socklen_t len)
{
    if (len == sizeof(struct sockaddr_in))
        memcpy(to, from, sizeof(struct sockaddr_in));
    else if (len == sizeof(struct sockaddr_in6))
        memcpy(to, from, sizeof(struct sockaddr_in6));
    else
        memcpy(to, from, len);
    return len;
}

static void after_accept(int listen_fd, int fd, const struct sockaddr *addr, socklen_t given,
                         const socklen_t *len, int err, uint32_t forks)
{
    struct socket_record *listener = fdtab_get(listen_fd);
    if (!listener && (fd >= 0 || is_resource_error(err)))
        listener = lifecycle_adopt(listen_fd); /* a listener first seen here */
    if (!listener)
        return;
    if (fd < 0) {
        if (is_resource_error(err))
            event_accept_error(listen_fd, listener, err);
        return;
    }
    struct socket_record *rec = lifecycle_track(fd, listener->family, ROLE_ACCEPTED, forks);
    if (!rec)
        return;
    rec->listen_fd = listen_fd;
    uint64_t now = process_monotonic_ns(); /* one clock read serves the accept */
    rec->start_ns = now;
    /* Accepted sockets inherit these options from their listener. */
    rec->rcvtimeo_set = listener->rcvtimeo_set;
    rec->linger2_abort = listener->linger2_abort;
    rec->linger_onoff = listener->linger_onoff;
    rec->linger_seconds = listener->linger_seconds;
    /* The peer address comes free with accept's own out-parameters, and
     * the local one from a listener bound to a single address. */
    if (addr && len && *len <= given && *len <= sizeof rec->peer)
        rec->peer_len = copy_address(&rec->peer, addr, *len);
    if (listener->local_len && !is_wildcard(&listener->local))
        rec->local_len = copy_address(&rec->local, &listener->local, listener->local_len);
    event_accept(listen_fd, fd, rec);
    event_queue_sample(listen_fd, listener, now);
    netstat_report("accept", -1, now);
}

/* accept() is accept4() with no flags; both go through here.  The real
 * accept, not accept4, is called for accept(): an older kernel or seccomp
 * policy may allow one and not the other. */
static int accept_common(int listen_fd, struct sockaddr *addr, socklen_t *len, int flags,
                         bool four)
{
    /* A caller that does not want the peer's address passes NULL; the
     * kernel then ignores len.  The shim lends its own buffer instead: the
     * address costs nothing here, and a getpeername() later. */
    struct sockaddr_storage lent;
    socklen_t lent_len = sizeof lent;
    if (!addr) {
        addr = (struct sockaddr *)&lent;
        len = &lent_len;
    }
    socklen_t given = len ? *len : 0;
    uint32_t forks = process_forks();
    int fd = four ? REAL(accept4)(listen_fd, addr, len, flags) : REAL(accept)(listen_fd, addr, len);
    if (!guard_enter())
        return fd;
    int saved = errno;
    after_accept(listen_fd, fd, addr, given, len, saved, forks);
    guard_leave();
    errno = saved;
    return fd;
}

SHIM_EXPORT int accept4(int listen_fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    return accept_common(listen_fd, addr, len, flags, true);
}

SHIM_EXPORT int accept(int listen_fd, struct sockaddr *addr, socklen_t *len)
{
    return accept_common(listen_fd, addr, len, 0, false);
}

/* ---- release ---- */

/* A close fails to release the fd only when the fd was not open (EBADF);
 * Linux releases it even when close() reports EINTR or EIO. */
static bool close_released(int ret, int err) { return ret == 0 || err != EBADF; }

/* Everything but the fast path; out of line so that the close of a file
 * or a pipe saves no registers and builds no frame. */
static SHIM_NOINLINE int close_tracked(int fd)
{
    struct release r;
    if (!guard_enter())
        return REAL(close)(fd);
    if (SHIM_UNLIKELY(log_owns_fd(fd))) {
        guard_leave();
        errno = EBADF;
        return -1;
    }
    if (!release_begin(&r, fd, "close")) {
        guard_leave();
        return REAL(close)(fd);
    }
    guard_leave();
    int ret = REAL(close)(fd);
    int saved = errno;
    guard_reenter();
    release_end(&r, close_released(ret, saved));
    guard_leave();
    errno = saved;
    return ret;
}

SHIM_EXPORT_HOT int close(int fd)
{
    /* The close of every file and pipe passes here: one table lookup. */
    int (*fn)(int) = real.close;
    if (SHIM_LIKELY(fn != NULL && fdtab_get(fd) == NULL && !log_owns_fd(fd)))
        return fn(fd);
    return close_tracked(fd);
}

/* close_range() over the shim's own log fd closes the pieces around it. */
static int close_range_sparing_log(unsigned int first, unsigned int last, int flags)
{
    int log = log_fd();
    if (log < 0 || !log_owns_fd(log) || (unsigned)log < first || (unsigned)log > last)
        return REAL(close_range)(first, last, flags);
    int ret = 0;
    if ((unsigned)log > first)
        ret = REAL(close_range)(first, (unsigned)log - 1, flags);
    if (ret == 0 && (unsigned)log < last)
        ret = REAL(close_range)((unsigned)log + 1, last, flags);
    return ret;
}

SHIM_EXPORT int close_range(unsigned int first, unsigned int last, int flags)
{
    struct release_set set;
    if ((flags & CLOSE_RANGE_CLOEXEC) || first > (unsigned)INT32_MAX || first > last ||
        !guard_enter())
        return REAL(close_range)(first, last, flags);
    release_set_begin(&set, (int)first, last > (unsigned)INT32_MAX ? -1 : (int)last,
                      "close_range", false);
    guard_leave();
    int ret = close_range_sparing_log(first, last, flags);
    int saved = errno;
    guard_reenter();
    release_set_end(&set, ret == 0);
    guard_leave();
    errno = saved;
    return ret;
}

SHIM_EXPORT void closefrom(int low)
{
    struct release_set set;
    if (low < 0 || !guard_enter()) {
        REAL(closefrom)(low);
        return;
    }
    release_set_begin(&set, low, -1, "close_range", false);
    guard_leave();
    int saved = errno;
    if (log_owns_fd(log_fd()) && log_fd() >= low)
        close_range_sparing_log((unsigned)low, ~0u, 0);
    else
        REAL(closefrom)(low); /* cannot fail: it aborts the process instead */
    guard_reenter();
    release_set_end(&set, true);
    guard_leave();
    errno = saved;
}

SHIM_EXPORT int fclose(FILE *stream)
{
    struct release r;
    if (!stream || !guard_enter())
        return REAL(fclose)(stream);
    int fd = fileno(stream);
    struct socket_record *rec = fd >= 0 ? fdtab_get(fd) : NULL;
    if (!rec) {
        guard_leave();
        return REAL(fclose)(stream);
    }
    /* fclose flushes buffered output first: that is writing, not an immediate close. */
    if (__fpending(stream) > 0)
        seen_mark(rec, __atomic_load_n(&rec->generation, __ATOMIC_ACQUIRE), SEEN_WROTE);
    bool tracked = release_begin(&r, fd, "fclose");
    guard_leave();
    int ret = REAL(fclose)(stream);
    int saved = errno;
    if (tracked) {
        guard_reenter();
        release_end(&r, close_released(ret, saved));
        guard_leave();
    }
    errno = saved;
    return ret;
}

/* ---- copies: dup, dup2, dup3, fcntl(F_DUPFD) ---- */

/* Counts the new reference before the real call (see lifecycle_install). */
static struct socket_record *copy_begin(int old_fd)
{
    struct socket_record *rec = fdtab_get(old_fd);
    if (rec)
        record_retain(rec);
    return rec;
}

static void copy_end(struct socket_record *rec, int new_fd)
{
    if (!rec)
        return;
    if (new_fd >= 0)
        lifecycle_install(new_fd, rec);
    else if (record_drop(rec) == 0)
        record_free(rec);
}

SHIM_EXPORT int dup(int old_fd)
{
    if (!guard_enter())
        return REAL(dup)(old_fd);
    struct socket_record *rec = copy_begin(old_fd);
    guard_leave();
    int new_fd = REAL(dup)(old_fd);
    int saved = errno;
    guard_reenter();
    copy_end(rec, new_fd);
    guard_leave();
    errno = saved;
    return new_fd;
}

/* dup2 and dup3 close new_fd first when it is open: a release via "dup2". */
static int dup_onto(int old_fd, int new_fd, int flags, bool three)
{
    struct release r;
    if (old_fd == new_fd || !guard_enter())
        return three ? REAL(dup3)(old_fd, new_fd, flags) : REAL(dup2)(old_fd, new_fd);
    int before = errno; /* moving the log may fail; the real call may then succeed */
    log_move_away_from(new_fd);
    struct socket_record *rec = copy_begin(old_fd);
    bool releasing = release_begin(&r, new_fd, "dup2");
    errno = before;
    guard_leave();
    int ret = three ? REAL(dup3)(old_fd, new_fd, flags) : REAL(dup2)(old_fd, new_fd);
    int saved = errno;
    guard_reenter();
    if (releasing)
        release_end(&r, ret >= 0);
    copy_end(rec, ret);
    guard_leave();
    errno = saved;
    return ret;
}

SHIM_EXPORT int dup2(int old_fd, int new_fd) { return dup_onto(old_fd, new_fd, 0, false); }

SHIM_EXPORT int dup3(int old_fd, int new_fd, int flags)
{
    return dup_onto(old_fd, new_fd, flags, true);
}

static int fcntl_common(int (*real_fcntl)(int, int, ...), int fd, int cmd, void *arg)
{
    if ((cmd != F_DUPFD && cmd != F_DUPFD_CLOEXEC) || !guard_enter())
        return real_fcntl(fd, cmd, arg);
    struct socket_record *rec = copy_begin(fd);
    guard_leave();
    int new_fd = real_fcntl(fd, cmd, arg);
    int saved = errno;
    guard_reenter();
    copy_end(rec, new_fd);
    guard_leave();
    errno = saved;
    return new_fd;
}

/* The third argument is an int or a pointer; on x86-64 both travel in the
 * same register, so passing it on as a pointer is exact. */
SHIM_EXPORT_HOT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(REAL(fcntl), fd, cmd, arg);
}

SHIM_EXPORT_HOT int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(REAL(fcntl64), fd, cmd, arg);
}
