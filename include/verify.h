/* Asking the kernel, after a close, whether the socket is still there:
 * the one way to know what the release of a socket shared with another
 * process did (../shared/KERNEL-FACTS.md: NETLINK_SOCK_DIAG exact lookup). */
#ifndef RSTSHIM_VERIFY_H
#define RSTSHIM_VERIFY_H

#include <stdint.h>
#include <sys/socket.h>

enum verify_answer {
    VERIFY_ERROR = -1,    /* could not ask */
    VERIFY_GONE = 0,      /* no such socket: released and reset (or already dead) */
    VERIFY_ORPHAN = 1,    /* still there without an inode: released, closing gracefully */
    VERIFY_HELD = 2,      /* still there with its inode: another holder keeps it open */
};

/* Exact lookup by local and peer address (peer all zero for a listener)
 * and SO_COOKIE.  About 1.5 us plus a netlink socket's creation. */
enum verify_answer verify_socket(const struct sockaddr_storage *local,
                                 const struct sockaddr_storage *peer, uint64_t cookie);

#endif
