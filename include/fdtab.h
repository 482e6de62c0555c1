/* The fd table: which fds of this process name a tracked TCP socket.
 *
 * Lookup is two array indexations with no lock, so the receive path and the
 * close of an untracked fd cost a few nanoseconds.  The table is built of
 * 1024-entry chunks allocated only where sockets live, so a process with
 * fds near a limit of 1,048,576 pays for the chunks it uses, not the limit.
 *
 * One socket_record is shared by every fd that names the same socket in
 * this process (dup, dup2, fcntl F_DUPFD); `refs` counts them.  Records are
 * never returned to the system: a thread that looked a record up just before
 * another thread released it writes into memory that is still a record
 * (a stale `generation` tells it so), never into freed memory. */
#ifndef RSTSHIM_FDTAB_H
#define RSTSHIM_FDTAB_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define FDTAB_CHUNK_BITS 10
#define FDTAB_CHUNK_SIZE (1u << FDTAB_CHUNK_BITS)
#define FDTAB_CHUNKS 16384u /* fds below 16,777,216; Linux's nr_open default is 1,048,576 */
#define FDTAB_MAX_FD (FDTAB_CHUNKS * FDTAB_CHUNK_SIZE)

enum socket_role {
    ROLE_NONE,      /* socket() only: neither connected nor listening yet */
    ROLE_LISTENER,
    ROLE_ACCEPTED,
    ROLE_CONNECTED,
};

/* What the receive and send wrappers saw; set once, read at close. */
enum {
    SEEN_READ = 1u << 0,         /* a receive returned bytes */
    SEEN_WROTE = 1u << 1,        /* a send returned bytes */
    SEEN_RECV_TIMEOUT = 1u << 2, /* a blocking receive gave up under SO_RCVTIMEO */
    SEEN_PEER_RESET = 1u << 3,   /* ECONNRESET/EPIPE already reported */
    SEEN_EOF = 1u << 4,          /* a receive returned 0: the peer's FIN arrived */
    SEEN_SHUT_RD = 1u << 5,      /* shutdown(SHUT_RD or SHUT_RDWR) succeeded */
    SEEN_SHUT_WR = 1u << 6,      /* shutdown(SHUT_WR or SHUT_RDWR) succeeded: our FIN is queued */
};

/* What the receive wrappers saw the application read, in one word so that a
 * thread that raced a close cannot credit it to the record's next socket:
 * bits 0-15 tag the generation the word belongs to; a late store from a
 * thread that saw an older generation leaves an old tag, and a word whose
 * tag is not the record's is never trusted (nor updated) again. */
#define READS_TAG_MASK 0xffffull
#define READS_TO_EOF (1ull << 16) /* a receive (not MSG_PEEK/MSG_OOB, asking for bytes)
                                     returned 0: all before the FIN (or our SHUT_RD) was read */
#define READS_BYTES_SHIFT 17      /* bits 17-63: bytes read (not MSG_PEEK/MSG_OOB) */

static inline uint64_t reads_fresh(uint32_t generation) { return generation & READS_TAG_MASK; }

static inline bool reads_current(uint64_t reads, uint32_t generation)
{
    return (reads & READS_TAG_MASK) == (generation & READS_TAG_MASK);
}

struct socket_record {
    uint32_t refs;       /* fds of this process naming the socket (atomic) */
    uint32_t generation; /* bumped at every reuse of this record (atomic) */
    uint64_t seen;       /* SEEN_* bits in the low half, the generation they belong to in
                            the high half (atomic; seen_set(), seen_bits()) */
    uint8_t role;        /* enum socket_role */
    uint8_t family;      /* AF_INET or AF_INET6 */
    bool adopted;        /* inherited, received over SCM_RIGHTS, or first seen in accept */
    bool shared_with_process; /* a fork or spawn gave another process this socket */
    uint32_t forks_at_birth; /* process_forks() before the call that created it */
    bool rcvtimeo_set;   /* SO_RCVTIMEO > 0 was set on it (or on its listener) */
    bool linger2_abort;  /* TCP_LINGER2 < 0 was set on it (or on its listener) */
    int8_t linger_onoff; /* SO_LINGER as set through setsockopt (accepted sockets inherit
                            the listener's); -1: unknown, ask the kernel at close */
    int linger_seconds;
    int listen_fd;       /* accepted sockets: the listener's fd */
    int backlog;         /* listeners: as requested */
    uint64_t start_ns;   /* CLOCK_MONOTONIC at accept/connect; 0 when unknown */
    uint64_t cookie;     /* SO_COOKIE, 0 until asked */
    uint64_t reads;      /* READS_* (atomic): the byte count is a lower bound (splice,
                            io_uring, a forked child read unseen; racing threads may lose
                            an add), so it can prove that nothing is unread, never guess */
    struct sockaddr_storage local;
    socklen_t local_len; /* 0: ask getsockname when a line needs it */
    struct sockaddr_storage peer;
    socklen_t peer_len;  /* 0: ask getpeername when a line needs it */
    /* listeners: rate limit for accept_error lines (event loops retry EMFILE at once) */
    uint64_t accept_error_ns;
    uint32_t accept_errors_suppressed;
    int accept_error_errno;
    long long accept_error_rlimit; /* RLIMIT_NOFILE when the last error happened */
    /* listeners: accept-queue sampling (queue_pressure lines) */
    uint64_t queue_checked_ns;
    uint64_t queue_reported_ns;
    uint32_t next_free;  /* allocator's free list, by index */
    uint32_t index;      /* this record's own index */
};

/* The SEEN_* word of a record that is generation's, empty. */
static inline uint64_t seen_fresh(uint32_t generation) { return (uint64_t)generation << 32; }

/* What the wrappers saw of the socket (SEEN_*). */
static inline uint32_t seen_bits(const struct socket_record *rec)
{
    return (uint32_t)__atomic_load_n(&rec->seen, __ATOMIC_RELAXED);
}

/* Sets bits on the record if it is still generation's: a thread that raced
 * a close and the record's reuse must not mark the next socket (the
 * compare-and-swap fails once record_new() wrote the new generation).
 * False when the record is another socket's now; *before: the bits before. */
static inline bool seen_set(struct socket_record *rec, uint32_t generation, uint32_t bits,
                            uint32_t *before)
{
    uint64_t word = __atomic_load_n(&rec->seen, __ATOMIC_RELAXED);
    for (;;) {
        if ((uint32_t)(word >> 32) != generation)
            return false;
        *before = (uint32_t)word;
        if ((*before & bits) == bits ||
            __atomic_compare_exchange_n(&rec->seen, &word, word | bits, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            return true;
    }
}

/* seen_set() for callers that need not know what was there before. */
static inline void seen_mark(struct socket_record *rec, uint32_t generation, uint32_t bits)
{
    uint32_t before;
    seen_set(rec, generation, bits, &before);
}

/* Records */
struct socket_record *record_new(int family, enum socket_role role);
void record_retain(struct socket_record *rec);
/* Drops one fd's reference; returns the references left. */
uint32_t record_drop(struct socket_record *rec);
/* Returns the record to the allocator once no fd names it. */
void record_free(struct socket_record *rec);

/* The table */
extern struct socket_record **fdtab_chunks[FDTAB_CHUNKS];

/* The record for fd, or NULL when fd is not a tracked TCP socket. */
static inline struct socket_record *fdtab_get(int fd)
{
    if (__builtin_expect((unsigned)fd >= FDTAB_MAX_FD, 0))
        return 0;
    struct socket_record **chunk =
        __atomic_load_n(&fdtab_chunks[(unsigned)fd >> FDTAB_CHUNK_BITS], __ATOMIC_ACQUIRE);
    if (!chunk)
        return 0;
    return __atomic_load_n(&chunk[(unsigned)fd & (FDTAB_CHUNK_SIZE - 1)], __ATOMIC_ACQUIRE);
}

/* Installs rec at fd and returns what was there (a stale record whose fd was
 * closed behind the shim's back), or NULL.  Fails (returns rec itself) only
 * when fd is beyond the table or memory for a chunk cannot be had. */
struct socket_record *fdtab_put(int fd, struct socket_record *rec);

/* Removes and returns the record at fd (NULL when none).  A release path
 * calls this before the real call, so an fd number reused at once by
 * another thread's accept never finds this socket's record. */
struct socket_record *fdtab_take(int fd);

/* Calls fn for every tracked fd in [low, high], in increasing order. */
void fdtab_for_each(int low, int high, void (*fn)(int fd, struct socket_record *rec, void *ctx),
                    void *ctx);

#endif
