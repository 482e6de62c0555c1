/* bench/srv.c -- the bench's server: single-threaded, epoll, level-triggered.
 *
 *   srv churn|keepalive READY_FD [PORT [LIFETIME_S]]
 *
 * Listens on 127.0.0.1:PORT (0 = any free port), writes "PORT PID\n" to
 * READY_FD and closes it, then serves:
 *   churn      accept, read a 16-byte request, answer 16 bytes, close
 *   keepalive  read a 64-byte request, answer 64 bytes, again, until EOF
 * It uses the libc calls a real server does (accept4, read, write, close),
 * which are what the shim wraps.  It exits on SIGTERM/SIGINT, when its
 * parent dies, or after LIFETIME_S seconds (default 900). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define MAX_FDS 65536

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static unsigned char got[MAX_FDS]; /* request bytes received so far, per fd */

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: srv churn|keepalive READY_FD [PORT [LIFETIME_S]]\n");
        return 2;
    }
    int churn = strcmp(argv[1], "churn") == 0;
    if (!churn && strcmp(argv[1], "keepalive") != 0) {
        fprintf(stderr, "srv: unknown mode %s\n", argv[1]);
        return 2;
    }
    size_t req = churn ? 16 : 64;
    int ready_fd = atoi(argv[2]);
    int port = argc > 3 ? atoi(argv[3]) : 0;
    long lifetime = argc > 4 ? atol(argv[4]) : 900;

    prctl(PR_SET_PDEATHSIG, SIGTERM);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(lfd, 1024) != 0) {
        perror("srv: listen");
        return 1;
    }
    socklen_t sl = sizeof sin;
    getsockname(lfd, (struct sockaddr *)&sin, &sl);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);

    char line[64];
    int n = snprintf(line, sizeof line, "%d %d\n", ntohs(sin.sin_port), (int)getpid());
    if (write_all(ready_fd, line, (size_t)n) != 0)
        return 1;
    close(ready_fd);

    uint64_t deadline = now_ns() + (uint64_t)lifetime * 1000000000u;
    unsigned char buf[256];
    memset(buf, 'r', sizeof buf);
    struct epoll_event evs[64];
    while (!stop) {
        int k = epoll_wait(ep, evs, 64, 500);
        if (k < 0 && errno != EINTR)
            break;
        if (k <= 0 && now_ns() > deadline)
            break;
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) { /* one accept per wake-up, as nginx without multi_accept */
                int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (c < 0)
                    continue;
                if (c >= MAX_FDS) {
                    close(c);
                    continue;
                }
                got[c] = 0;
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                continue;
            }
            ssize_t r = read(fd, buf, req - got[fd]);
            if (r > 0) {
                got[fd] = (unsigned char)(got[fd] + r);
                if (got[fd] < req)
                    continue;
                got[fd] = 0;
                if (write(fd, buf, req) != (ssize_t)req || churn)
                    close(fd); /* churn: the server closes first */
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                close(fd);
            }
        }
    }
    close(lfd);
    close(ep);
    return 0;
}
