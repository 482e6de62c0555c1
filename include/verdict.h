/* What a close does to the peer: pure functions, unit-tested without sockets. */
#ifndef RSTSHIM_VERDICT_H
#define RSTSHIM_VERDICT_H

#include <stdbool.h>
#include <stdint.h>

enum close_flag {
    FLAG_UNREAD_DATA = 1u << 0,
    FLAG_LINGER_ZERO = 1u << 1,
    FLAG_IMMEDIATE_CLOSE = 1u << 2,
    FLAG_RECV_TIMEOUT = 1u << 3,
    FLAG_PENDING_CONNECTIONS = 1u << 4,
    FLAG_SHARED = 1u << 5,
    FLAG_TCP_LINGER2 = 1u << 6,
};
#define FLAG_COUNT 7

/* The flag's name in the log ("unread_data"), or NULL past the last bit. */
const char *verdict_flag_name(unsigned bit_index);

/* What `rst` says. */
enum rst_answer { RST_NO = 0, RST_YES = 1, RST_UNKNOWN = -1 };

/* Everything the verdict looks at, read before the real close. */
struct close_facts {
    bool listener;
    bool accepted;            /* an accepted connection (immediate_close applies) */
    uint32_t refs_left;       /* other fds of this process still naming the socket */
    bool shared_with_process; /* a fork/spawn handed it to another process */
    long long unread_bytes;   /* SIOCINQ; < 0 when unknown */
    int linger_onoff;         /* SO_LINGER in force; < 0 when unknown */
    int linger_seconds;
    int tcp_state;            /* TCP_ESTABLISHED...; < 0 when unknown */
    long long pending;        /* listener: accept-queue length; < 0 when unknown */
    long long age_ms;         /* since accept; < 0 when unknown */
    long long immediate_ms;   /* RSTSHIM_IMMEDIATE_MS */
    long long bytes_read;     /* by the application; < 0 when unknown */
    long long bytes_written;  /* < 0 when unknown */
    long long notsent_bytes;  /* queued, not yet sent (a FIN counts one); < 0 when unknown */
    bool linger2_abort;       /* TCP_LINGER2 < 0: a close in FIN_WAIT2 resets */
    bool recv_timed_out;
};

struct close_verdict {
    unsigned flags; /* enum close_flag bits */
    enum rst_answer rst;
};

struct close_verdict verdict_on_close(const struct close_facts *facts);

/* A socket another process may hold, settled after the close by the
 * kernel: if_last is what this close does should it be the last release. */
enum release_outcome {
    RELEASE_UNKNOWN, /* the kernel could not be asked: stays shared, rst null */
    RELEASE_HELD,    /* another process still holds it: nothing sent */
    RELEASE_RESET,   /* released and gone at once: if_last happened */
    RELEASE_ORPHAN,  /* released, closing gracefully: a FIN, whatever if_last said */
};
struct close_verdict verdict_after_release(struct close_verdict shared,
                                           struct close_verdict if_last,
                                           enum release_outcome outcome);

/* Whether the verdict needs TCP_INFO (state, bytes) beyond SIOCINQ and
 * SO_LINGER: only when a cause may fire, so clean closes stay cheap. */
bool verdict_needs_tcp_info(const struct close_facts *facts, bool app_read_or_wrote);

/* The linger_zero flag for a setsockopt(SO_LINGER) call. */
unsigned verdict_on_linger(int onoff, int seconds);

/* "ESTABLISHED" for TCP_ESTABLISHED, ...; NULL when unknown. */
const char *verdict_state_name(int tcp_state);

#endif
