/* Helpers shared by the demo servers and clients: see common.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

void say(const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("  %s: ", who);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    va_end(ap);
}

void die(const char *what)
{
    fprintf(stderr, "demo: %s: %s\n", what, strerror(errno));
    exit(1);
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int listen_local(int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("bind");
    if (listen(fd, backlog) < 0)
        die("listen");
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        die("getsockname");
    printf("PORT %d\n", ntohs(a.sin_port));
    fflush(stdout);
    return fd;
}

int connect_local(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* First line of a reply, printable, for narration. */
static void preview(const char *buf, ssize_t n, char *out, size_t len)
{
    size_t j = 0;
    for (ssize_t i = 0; i < n && j + 1 < len; i++) {
        if (buf[i] == '\r' || buf[i] == '\n')
            break;
        out[j++] = (buf[i] >= 32 && buf[i] < 127) ? buf[i] : '?';
    }
    out[j] = '\0';
}

int show_recv(const char *who, int fd)
{
    char buf[512], line[80];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    int saved = errno;
    if (n > 0) {
        preview(buf, n, line, sizeof line);
        say(who, "recv: %zd bytes \"%s\"", n, line);
    } else if (n == 0) {
        say(who, "recv: 0 (EOF: the server closed with a FIN)");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        say(who, "recv: nothing yet");
    } else {
        say(who, "recv: %s", strerror(errno));
    }
    errno = saved;
    return (int)n;
}

void show_send(const char *who, int fd, const char *data)
{
    ssize_t n = send(fd, data, strlen(data), MSG_NOSIGNAL);
    if (n >= 0)
        say(who, "send: ok (%zd bytes)", n);
    else
        say(who, "send: %s", strerror(errno));
}

int wait_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, ms);
    while (r < 0 && errno == EINTR);
    return r > 0;
}
