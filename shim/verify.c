/* NETLINK_SOCK_DIAG exact lookups (see include/verify.h).
 *
 * A netlink socket is made for each lookup and closed at once: lookups
 * happen only after the release of a socket shared with another process,
 * and a cached fd would be one more fd of ours inside the host. */
#include "verify.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "real.h"

static void copy_endpoint(const struct sockaddr_storage *ss, __be16 *port, __be32 addr[4])
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        *port = in->sin_port;
        addr[0] = in->sin_addr.s_addr;
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        *port = in6->sin6_port;
        memcpy(addr, &in6->sin6_addr, 16);
    }
}

static enum verify_answer parse_reply(const char *reply, ssize_t len)
{
    for (const struct nlmsghdr *h = (const struct nlmsghdr *)reply; NLMSG_OK(h, (size_t)len);
         h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *err = NLMSG_DATA(h);
            return err->error == -ENOENT ? VERIFY_GONE : VERIFY_ERROR;
        }
        if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
            const struct inet_diag_msg *msg = NLMSG_DATA(h);
            return msg->idiag_inode ? VERIFY_HELD : VERIFY_ORPHAN;
        }
    }
    return VERIFY_ERROR;
}

enum verify_answer verify_socket(const struct sockaddr_storage *local,
                                 const struct sockaddr_storage *peer, uint64_t cookie)
{
    struct {
        struct nlmsghdr header;
        struct inet_diag_req_v2 request;
    } message;
    memset(&message, 0, sizeof message);
    message.header.nlmsg_len = sizeof message;
    message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    message.header.nlmsg_flags = NLM_F_REQUEST;
    message.request.sdiag_family = (__u8)local->ss_family;
    message.request.sdiag_protocol = IPPROTO_TCP;
    message.request.idiag_states = ~0u;
    copy_endpoint(local, &message.request.id.idiag_sport, message.request.id.idiag_src);
    if (peer->ss_family == local->ss_family)
        copy_endpoint(peer, &message.request.id.idiag_dport, message.request.id.idiag_dst);
    message.request.id.idiag_cookie[0] = (uint32_t)cookie;
    message.request.id.idiag_cookie[1] = (uint32_t)(cookie >> 32);
    message.request.id.idiag_if = 0;

    int fd = REAL(socket)(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return VERIFY_ERROR;
    enum verify_answer answer = VERIFY_ERROR;
    if (REAL(send)(fd, &message, sizeof message, 0) == (ssize_t)sizeof message) {
        char reply[1024];
        ssize_t n = REAL(recv)(fd, reply, sizeof reply, 0);
        if (n > 0)
            answer = parse_reply(reply, n);
    }
    REAL(close)(fd);
    return answer;
}
