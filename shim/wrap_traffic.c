/* Receive and send wrappers: the hot path.
 *
 * For an untracked fd (a file, a pipe, a UNIX socket) the cost is one table
 * lookup.  For a tracked socket, a few bits remember what the verdict at
 * close needs (did the application read or write; did a receive time out)
 * and ECONNRESET/EPIPE become a peer_reset line.  No lock, no allocation,
 * no syscall on the common path. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "guard.h"
#include "lifecycle.h"
#include "real.h"

struct traffic {
    struct socket_record *rec;
    uint32_t generation; /* to notice a record reused by another socket meanwhile */
};

/* The table first: for a file or a pipe that is all (the table is empty
 * until the shim is initialised, so the guard is asked only of sockets). */
static inline struct traffic traffic_lookup(int fd)
{
    struct traffic t = {fdtab_get(fd), 0};
    if (SHIM_UNLIKELY(t.rec != NULL)) {
        if (!guard_open())
            return (struct traffic){NULL, 0};
        t.generation = __atomic_load_n(&t.rec->generation, __ATOMIC_ACQUIRE);
        /* Still fd's after its generation was read: else the record was
         * freed and reused for another fd meanwhile, and that generation
         * is the other socket's. */
        if (fdtab_get(fd) != t.rec)
            t.rec = NULL;
    }
    return t;
}

/* A plain load and store, no locked instruction on the hot path: a lost
 * update undercounts (safe), and a store that lands in a record reused
 * meanwhile carries the old tag, which disowns the word (see fdtab.h). */
static inline void note_reads(struct traffic t, uint64_t add, uint64_t bits)
{
    uint64_t reads = __atomic_load_n(&t.rec->reads, __ATOMIC_RELAXED);
    if (reads_current(reads, t.generation))
        __atomic_store_n(&t.rec->reads, (reads + (add << READS_BYTES_SHIFT)) | bits,
                         __ATOMIC_RELAXED);
}

static void report_peer_reset(int fd, struct traffic t, int err, const char *call)
{
    /* EPIPE after this process shut down its own write side is its own
     * doing: the peer reset nothing (and nothing went on the wire). */
    if (err == EPIPE && (seen_bits(t.rec) & SEEN_SHUT_WR))
        return;
    uint32_t before;
    if (!seen_set(t.rec, t.generation, SEEN_PEER_RESET, &before) || (before & SEEN_PEER_RESET))
        return; /* another socket's record now, or reported already (applications retry) */
    if (!guard_enter())
        return;
    event_peer_reset(fd, t.rec, err, call);
    guard_leave();
}

/* EAGAIN from a blocking socket with SO_RCVTIMEO is a receive timeout.
 * Asked only on sockets that set SO_RCVTIMEO, where EAGAIN is rare. */
static bool timed_out(int fd, struct socket_record *rec, int msg_flags)
{
    if (!rec->rcvtimeo_set || (msg_flags & MSG_DONTWAIT))
        return false;
    int flags = REAL(fcntl)(fd, F_GETFL);
    return flags >= 0 && !(flags & O_NONBLOCK);
}

static void after_failed_transfer(int fd, struct traffic t, int err, int msg_flags,
                                  const char *call, bool receiving)
{
    if (err == ECONNRESET || err == EPIPE)
        report_peer_reset(fd, t, err, call);
    else if (receiving && (err == EAGAIN || err == EWOULDBLOCK) && timed_out(fd, t.rec, msg_flags))
        seen_mark(t.rec, t.generation, SEEN_RECV_TIMEOUT);
}

/* want: the bytes asked for (a zero-length read returning 0 is not EOF). */
static inline void after_transfer(int fd, struct traffic t, ssize_t n, size_t want, int msg_flags,
                                  const char *call, bool receiving)
{
    if (SHIM_LIKELY(!t.rec))
        return;
    /* The error queue (timestamps, zerocopy notices) is not the data: an
     * empty one answers EAGAIN at once even on a blocking socket. */
    if (SHIM_UNLIKELY(receiving && (msg_flags & MSG_ERRQUEUE)))
        return;
    if (__atomic_load_n(&t.rec->generation, __ATOMIC_ACQUIRE) != t.generation)
        return; /* closed and reused meanwhile: these bytes were another socket's */
    if (n > 0) {
        seen_mark(t.rec, t.generation, receiving ? SEEN_READ : SEEN_WROTE);
        /* Not MSG_OOB: the urgent byte leaves the stream only when a
         * plain receive passes it. */
        if (receiving && !(msg_flags & (MSG_PEEK | MSG_OOB)))
            note_reads(t, (uint64_t)n, 0);
        return;
    }
    if (n == 0 && receiving && want > 0) {
        seen_mark(t.rec, t.generation, SEEN_EOF);
        if (!(msg_flags & (MSG_PEEK | MSG_OOB))) /* MSG_OOB answers 0 after a FIN with data queued */
            note_reads(t, 0, READS_TO_EOF);
        return;
    }
    if (n < 0) {
        int saved = errno;
        after_failed_transfer(fd, t, saved, msg_flags, call, receiving);
        errno = saved;
    }
}

#define RECEIVED(fd, t, n, want, flags, call) after_transfer(fd, t, n, want, flags, call, true)
#define SENT(fd, t, n, flags, call) after_transfer(fd, t, n, 0, flags, call, false)

/* Every wrapper below: an untracked fd (a file, a pipe, a UNIX socket)
 * costs one table lookup and a tail jump to the real call; a tracked
 * socket (or a call before the constructor resolved the real function)
 * goes through its out-of-line *_tracked function, so the fast path saves
 * no registers and builds no frame. */

static SHIM_NOINLINE ssize_t recv_tracked(int fd, void *buf, size_t len, int flags)
{
    struct traffic t = traffic_lookup(fd);
    ssize_t n = REAL(recv)(fd, buf, len, flags);
    RECEIVED(fd, t, n, len, flags, "recv");
    return n;
}

SHIM_EXPORT_HOT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    __typeof__(real.recv) fn = real.recv;
    if (SHIM_LIKELY(fn != NULL && fdtab_get(fd) == NULL))
        return fn(fd, buf, len, flags);
    return recv_tracked(fd, buf, len, flags);
}

static SHIM_NOINLINE ssize_t __recv_chk_tracked(int fd, void *buf, size_t len, size_t buflen, int flags)
{
    struct traffic t = traffic_lookup(fd);
    ssize_t n = REAL(__recv_chk)(fd, buf, len, buflen, flags);
    RECEIVED(fd, t, n, len, flags, "recv");
    return n;
}

SHIM_EXPORT_HOT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
    __typeof__(real.__recv_chk) fn = real.__recv_chk;
    if (SHIM_LIKELY(fn != NULL && fdtab_get(fd) == NULL))
        return fn(fd, buf, len, buflen, flags);
    return __recv_chk_tracked(fd, buf, len, buflen, flags);
}

static SHIM_NOINLINE ssize_t recvfrom_tracked(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
                             socklen_t *addr_len)
{
    struct traffic t = traffic_lookup(fd);
    ssize_t n = REAL(recvfrom)(fd, buf, len, flags, addr, addr_len);
    RECEIVED(fd, t, n, len, flags, "recvfrom");
    return n;
}

SHIM_EXPORT_HOT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
                                 socklen_t *addr_len)
{
    __typeof__(real.recvfrom) fn = real.recvfrom;
    if (SHIM_LIKELY(fn != NULL && fdtab_get(fd) == NULL))
        return fn(fd, buf, len, flags, addr, addr_len);
    return recvfrom_tracked(fd, buf, len, flags, addr, addr_len);
}

static SHIM_NOINLINE ssize_t __recvfrom_chk_tracked(int fd, void *buf, size_t len, size_t buflen, int flags,
                                   struct sockaddr *addr, socklen_t *addr_len)
{
    struct traffic t = traffic_lookup(fd);
    ssize_t n = REAL(__recvfrom_chk)(fd, buf, len, buflen, flags, addr, addr_len);
    RECEIVED(fd, t, n, len, flags, "recvfrom");
    return n;
}

SHIM_EXPORT_HOT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
                                       struct sockaddr *addr, socklen_t *addr_len)
{
    __typeof__(real.__recvfrom_chk) fn = real.__recvfrom_chk;
    if (SHIM_LIKELY(fn != NULL && fdtab_get(fd) == NULL))
        return fn(fd, buf, len, buflen, flags, addr, addr_len);
    return __recvfrom_chk_tracked(fd, buf, len, buflen, flags, addr, addr_len);
}

/* Whether a vectored receive asked for any byte: one that asked for none
 * returns 0 without meaning EOF.  Looked at only when it returned 0. */
static size_t iov_wants_bytes(const struct iovec *iov, size_t count)
{
    if (!iov || count > IOV_MAX)
        return 0; /* the call failed */
    for (size_t i = 0; i < count; i++)
        if (iov[i].iov_len > 0)
            return 1;
    return 0;
}

/* Calls fn for every fd carried in msg's SCM_RIGHTS messages. */
static void for_each_passed_fd(const struct msghdr *msg, void (*fn)(int fd))
{
    if (!msg || !msg->msg_control || msg->msg_controllen < sizeof(struct cmsghdr) ||
        !guard_enter())
        return;
    int saved = errno; /* probing a passed pipe or memfd fails (ENOTSOCK) after a good recvmsg */
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const unsigned char *data = CMSG_DATA(c);
        for (size_t i = 0; i < count; i++) {
            int fd;
            __builtin_memcpy(&fd, data + i * sizeof fd, sizeof fd);
            fn(fd);
        }
    }
    guard_leave();
    errno = saved;
}

/* Received: a TCP socket handed over by another process (or thread). */
static void adopt_received(int fd) { lifecycle_adopt(fd); }

/* Sent: the receiver holds it too from now on. */
static void mark_passed(int fd)
{
    struct socket_record *rec = fdtab_get(fd);
    if (rec)
        __atomic_store_n(&rec->shared_with_process, true, __ATOMIC_RELAXED);
}

/* recvmsg and sendmsg look at SCM_RIGHTS on every fd (UNIX sockets carry
 * them): no syscall, only the message's control data. */
SHIM_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    struct traffic t = traffic_lookup(fd);
    ssize_t n = REAL(recvmsg)(fd, msg, flags);
    if (n >= 0)
        for_each_passed_fd(msg, adopt_received); /* no syscall unless fds arrived */
    RECEIVED(fd, t, n, n == 0 && msg ? iov_wants_bytes(msg->msg_iov, msg->msg_iovlen) : 1, flags,
             "recvmsg");
    return n;
}

static SHIM_NOINLINE ssize_t read_tracked(int fd, void *buf, size_t len)
{
    struct traffic t = traffic_lookup(fd);
    ssize_t n = REAL(read)(fd, buf, len);
    RECEIVED(fd, t, n, len, 0, "read");
    return n;
}

SHIM_EXPORT_HOT ssize_t read(int fd, void *buf, size_t len)
{
    __typeof__(real.read) fn = real.read;
    if (SHIM_LIKELY(fn != NULL && fdtab_get(fd) == NULL))
        return fn(fd, buf, len);
    return read_tracked(fd, buf, len);
}

static SHIM_NOINLINE ssize_t __read_chk_tracked(int fd, void *buf, size_t len, size_t buflen)
{
    struct traffic t = traffic_lookup(fd);
    ssize_t n = REAL(__read_chk)(fd, buf, len, buflen);
    RECEIVED(fd, t, n, len, 0, "read");
    return n;
}

SHIM_EXPORT_HOT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
    __typeof__(real.__read_chk) fn = real.__read_chk;
    if (SHIM_LIKELY(fn != NULL && fdtab_get(fd) == NULL))
        return fn(fd, buf, len, buflen);
    return __read_chk_tracked(fd, buf, len, buflen);
}

static SHIM_NOINLINE ssize_t readv_tracked(int fd, const struct iovec *iov, int count)
{
    struct traffic t = traffic_lookup(fd);
    ssize_t n = REAL(readv)(fd, iov, count);
    RECEIVED(fd, t, n, n == 0 ? iov_wants_bytes(iov, count > 0 ? (size_t)count : 0) : 1, 0,
             "readv");
    return n;
}

SHIM_EXPORT_HOT ssize_t readv(int fd, const struct iovec *iov, int count)
{
    __typeof__(real.readv) fn = real.readv;
    if (SHIM_LIKELY(fn != NULL && fdtab_get(fd) == NULL))
        return fn(fd, iov, count);
    return readv_tracked(fd, iov, count);
}

static SHIM_NOINLINE ssize_t send_tracked(int fd, const void *buf, size_t len, int flags)
{
    struct traffic t = traffic_lookup(fd);
    ssize_t n = REAL(send)(fd, buf, len, flags);
    SENT(fd, t, n, flags, "send");
    return n;
}

SHIM_EXPORT_HOT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    __typeof__(real.send) fn = real.send;
    if (SHIM_LIKELY(fn != NULL && fdtab_get(fd) == NULL))
        return fn(fd, buf, len, flags);
    return send_tracked(fd, buf, len, flags);
}

static SHIM_NOINLINE ssize_t sendto_tracked(int fd, const void *buf, size_t len, int flags,
                           const struct sockaddr *addr, socklen_t addr_len)
{
    struct traffic t = traffic_lookup(fd);
    ssize_t n = REAL(sendto)(fd, buf, len, flags, addr, addr_len);
    SENT(fd, t, n, flags, "sendto");
    return n;
}

SHIM_EXPORT_HOT ssize_t sendto(int fd, const void *buf, size_t len, int flags,
                               const struct sockaddr *addr, socklen_t addr_len)
{
    __typeof__(real.sendto) fn = real.sendto;
    if (SHIM_LIKELY(fn != NULL && fdtab_get(fd) == NULL))
        return fn(fd, buf, len, flags, addr, addr_len);
    return sendto_tracked(fd, buf, len, flags, addr, addr_len);
}

SHIM_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    struct traffic t = traffic_lookup(fd);
    ssize_t n = REAL(sendmsg)(fd, msg, flags);
    if (n >= 0)
        for_each_passed_fd(msg, mark_passed);
    SENT(fd, t, n, flags, "sendmsg");
    return n;
}

static SHIM_NOINLINE ssize_t write_tracked(int fd, const void *buf, size_t len)
{
    struct traffic t = traffic_lookup(fd);
    ssize_t n = REAL(write)(fd, buf, len);
    SENT(fd, t, n, 0, "write");
    return n;
}

SHIM_EXPORT_HOT ssize_t write(int fd, const void *buf, size_t len)
{
    __typeof__(real.write) fn = real.write;
    if (SHIM_LIKELY(fn != NULL && fdtab_get(fd) == NULL))
        return fn(fd, buf, len);
    return write_tracked(fd, buf, len);
}

static SHIM_NOINLINE ssize_t writev_tracked(int fd, const struct iovec *iov, int count)
{
    struct traffic t = traffic_lookup(fd);
    ssize_t n = REAL(writev)(fd, iov, count);
    SENT(fd, t, n, 0, "writev");
    return n;
}

SHIM_EXPORT_HOT ssize_t writev(int fd, const struct iovec *iov, int count)
{
    __typeof__(real.writev) fn = real.writev;
    if (SHIM_LIKELY(fn != NULL && fdtab_get(fd) == NULL))
        return fn(fd, iov, count);
    return writev_tracked(fd, iov, count);
}
