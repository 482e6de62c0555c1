/* What the wrappers do to the table and the log, shared by every family of
 * wrappers.  Callers hold the guard (guard.h). */
#ifndef RSTSHIM_LIFECYCLE_H
#define RSTSHIM_LIFECYCLE_H

#include <stdbool.h>
#include <sys/socket.h>

#include "fdtab.h"
#include "log.h"
#include "probe.h"
#include "stack.h"
#include "verdict.h"

/* ---- tracking ---- */

/* A new record for fd (socket(), accept()); replaces a stale one.
 * forks: process_forks() read before the call that created fd. */
struct socket_record *lifecycle_track(int fd, int family, enum socket_role role, uint32_t forks);
/* Adopts fd if it is a TCP socket the process did not create through us
 * (inherited, received, first seen as a listener).  NULL when not TCP. */
struct socket_record *lifecycle_adopt(int fd);
/* A successful connect(AF_UNSPEC): the socket is unconnected again. */
void lifecycle_disconnected(struct socket_record *rec);
/* Gives fd a reference to rec (dup, dup2, F_DUPFD).  lifecycle_install()
 * takes a reference the caller already counted with record_retain() before
 * the real call, so a close racing the dup sees the socket as shared. */
void lifecycle_share(int fd, struct socket_record *rec);
void lifecycle_install(int fd, struct socket_record *rec);
/* A fork or spawn handed sockets to another process: they are no longer
 * this process's alone.  only_inheritable: skip FD_CLOEXEC ones (spawn). */
void lifecycle_mark_shared(bool only_inheritable);

/* ---- releasing: every way a socket leaves this process ---- */

/* A release is read before the real call (afterwards the socket is gone)
 * and finished after it. */
struct release {
    int fd;
    const char *via;
    struct socket_record *rec;
    bool last;              /* no other fd of this process names the socket */
    bool stale;             /* the fd was no longer this socket: say nothing */
    struct close_facts facts;
    struct close_verdict verdict;
    bool have_tcp;
    struct tcp_facts tcp;
    /* A socket shared with another process: only the kernel can say, after
     * the call, whether this close was the last release (verify.h). */
    bool verify;
    bool verified;
    bool fork_settled;      /* settle_fork_race() already ran (exit: before the shim's closes) */
    struct close_verdict if_last; /* the verdict should it prove to be the last */
    bool write;             /* a line is wanted: addresses were learnt before the call */
    long long drained;      /* RSTSHIM_FIX=drain: unread bytes read and dropped; -1 none */
    struct stack stack;     /* RSTSHIM_STACK=1: where the host released it (count 0: none) */
};

/* Takes fd out of the table (NULL rec: nothing tracked, returns false) and
 * probes what the verdict and the line need; the line itself is built and
 * written by release_end(), from what was learnt here. */
bool release_begin(struct release *r, int fd, const char *via);
/* released: the real call did release the fd.  Otherwise (it failed) the
 * fd keeps its record and the line is dropped. */
void release_end(struct release *r, bool released);

/* Releases every tracked fd in [low, high] around one real call
 * (close_range, closefrom, exec, exit). */
struct release_set {
    struct release *items;
    unsigned count;
    unsigned capacity;
};
void release_set_begin(struct release_set *set, int low, int high, const char *via,
                       bool cloexec_only);
void release_set_end(struct release_set *set, bool released);
/* exit: closes the fds of sockets shared with another process before
 * release_set_end(), so their verification sees this process let go. */
void release_set_close_shared(struct release_set *set);
/* exec: the lines must be written before the call, which never returns on
 * success; release_set_end(set, false) then undoes a failed exec. */
void release_set_write_now(struct release_set *set);

/* ---- other events ---- */

/* local, peer (when with_peer) and cookie, asked of the kernel only when a
 * line is actually written, and kept with the record. */
void socket_fields(struct logline *line, int fd, struct socket_record *rec, bool with_peer);
/* The two halves: asking (while fd is still the socket) and writing what
 * is known (also after the socket is gone). */
void record_learn_addresses(int fd, struct socket_record *rec, bool with_peer);
void socket_fields_known(struct logline *line, const struct socket_record *rec, bool with_peer);

void event_listen(int fd, struct socket_record *rec, int backlog);
void event_accept(int listen_fd, int fd, struct socket_record *rec);
void event_connect(int fd, struct socket_record *rec, bool in_progress);
void event_linger(int fd, struct socket_record *rec, int onoff, int seconds);
void event_rcvtimeo(int fd, struct socket_record *rec, long long timeout_ms);
/* setsockopt(TCP_LINGER2): a negative value makes a close in FIN_WAIT2 an RST. */
void event_linger2(int fd, struct socket_record *rec, int seconds);
void event_linger_ignored(int fd, struct socket_record *rec);
void event_peer_reset(int fd, struct socket_record *rec, int err, const char *call);
void event_accept_error(int listen_fd, struct socket_record *listener, int err);
/* shutdown(SHUT_RD or SHUT_RDWR) on a listener: the kernel resets the
 * `pending` completed connections still queued, there and then. */
void event_listener_shutdown(int fd, struct socket_record *listener, int how, long long pending);
/* Writes the accept errors the rate limit held back, if any (at release). */
void event_accept_error_flush(int listen_fd, struct socket_record *listener);
void event_config_error(const char *variable, const char *value, const char *message);
/* On accept: samples the listener's queue; a queue_pressure line past 80 %. */
void event_queue_sample(int listen_fd, struct socket_record *listener, uint64_t now);
void event_exec_failed(int err);

#endif
