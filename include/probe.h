/* Questions the shim asks the kernel about a socket.  Each costs one
 * syscall (see ../shared/KERNEL-FACTS.md for the prices), so callers ask
 * only what a verdict or a written line needs. */
#ifndef RSTSHIM_PROBE_H
#define RSTSHIM_PROBE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* From TCP_INFO (the kernel's struct, not glibc's shorter one). */
struct tcp_facts {
    int state;               /* TCP_ESTABLISHED, ... */
    uint64_t bytes_received; /* counts a received FIN as 1 */
    uint64_t bytes_sent;     /* payload, retransmits included */
    uint64_t bytes_retrans;
    uint32_t notsent_bytes;
    uint32_t rtt_us;
    uint32_t unacked;        /* on a listener: accept-queue length */
    uint32_t sacked;         /* on a listener: effective backlog */
};

bool probe_tcp_info(int fd, struct tcp_facts *out);
/* SIOCINQ: unread bytes, excluding a received FIN; -1 on error. */
long long probe_unread(int fd);
/* SO_LINGER in force: 0, or -errno (ENOTSOCK: the fd is no longer a socket). */
int probe_linger(int fd, int *onoff, int *seconds);
uint64_t probe_cookie(int fd); /* 0 when unknown */
socklen_t probe_local(int fd, struct sockaddr_storage *out);
socklen_t probe_peer(int fd, struct sockaddr_storage *out);
/* True when fd is an AF_INET/AF_INET6 TCP socket; says its family and
 * whether it is listening. */
bool probe_is_tcp(int fd, int *family, bool *listening);
/* Whether fd has FD_CLOEXEC; -1 on error. */
int probe_cloexec(int fd);
/* Whether SO_RCVTIMEO is set (a receive may time out); false when unknown. */
bool probe_rcvtimeo_set(int fd);

#endif
