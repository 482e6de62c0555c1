/* Demo clients: the other side of each demo server, narrating what a user
 * of the server would see.  Clients do not run under the shim.
 *
 *   clients MODE PORT      (MODE as for servers) */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define WHO "client"
static const char request[] = "GET / HTTP/1.1\r\nHost: demo\r\n\r\n";

static int connect_or_die(int port)
{
    int fd = connect_local(port);
    if (fd < 0)
        die("connect");
    return fd;
}

/* Read and show replies until EOF or an error, at most `max` reads. */
static void show_until_end(int fd, int max, int wait_ms)
{
    for (int i = 0; i < max; i++) {
        if (!wait_readable(fd, wait_ms)) {
            say(WHO, "recv: nothing within %d ms", wait_ms);
            return;
        }
        /* No MSG_PEEK first: peeking would consume a pending ECONNRESET. */
        if (show_recv(WHO, fd) <= 0)
            return;
    }
}

static void client_immediate(int port)
{
    int fd = connect_or_die(port);
    say(WHO, "connected");
    sleep_ms(50);
    show_send(WHO, fd, "hello\n"); /* accepted by our kernel; the server's answers RST */
    sleep_ms(50);
    wait_readable(fd, 500);
    show_recv(WHO, fd);
    show_send(WHO, fd, "hello again\n");
    close(fd);
}

static void client_mismatch(int port)
{
    int fd = connect_or_die(port);
    show_send(WHO, fd, request); /* HTTP to a server that speaks PING */
    sleep_ms(50);
    show_until_end(fd, 3, 1000);
    close(fd);
}

static void client_timeout(int port)
{
    int fd = connect_or_die(port);
    show_send(WHO, fd, "GET / HTTP/1.1\r\n");
    say(WHO, "pausing 300 ms in the middle of the request (slow client)");
    sleep_ms(300);
    show_send(WHO, fd, "Host: demo\r\n\r\n");
    sleep_ms(50);
    wait_readable(fd, 500);
    show_recv(WHO, fd);
    show_send(WHO, fd, "more\n");
    close(fd);
}

static void client_linger(int port)
{
    int fd = connect_or_die(port);
    show_send(WHO, fd, request);
    sleep_ms(50);
    show_until_end(fd, 3, 1000);
    close(fd);
}

static void client_pending(int port)
{
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = connect_or_die(port);
        send(fds[i], request, sizeof request - 1, MSG_NOSIGNAL);
    }
    say(WHO, "3 connections established (the kernel completed the handshakes) and "
             "requests sent; waiting for replies");
    for (int i = 0; i < 3; i++) {
        char who[32];
        snprintf(who, sizeof who, "client conn %d", i + 1);
        if (wait_readable(fds[i], 3000))
            show_recv(who, fds[i]);
        else
            say(who, "no answer in 3 s");
        close(fds[i]);
    }
}

#define EMFILE_CONNS 5
static void client_emfile(int port)
{
    int fds[EMFILE_CONNS];
    int done[EMFILE_CONNS] = {0};
    for (int i = 0; i < EMFILE_CONNS; i++) {
        fds[i] = connect_or_die(port);
        send(fds[i], "hello\n", 6, MSG_NOSIGNAL);
    }
    say(WHO, "%d connections established, a request sent on each", EMFILE_CONNS);
    /* Phase 1: who gets served within 0.5 s. */
    sleep_ms(500);
    for (int i = 0; i < EMFILE_CONNS; i++) {
        char who[32];
        snprintf(who, sizeof who, "client conn %d", i + 1);
        if (wait_readable(fds[i], 0)) {
            show_recv(who, fds[i]);
            done[i] = 1;
        } else {
            say(who, "no reply after 0.5 s (connected, waiting in the accept queue)");
        }
    }
    /* Phase 2: what happens to the waiting ones when the server gives up. */
    for (int i = 0; i < EMFILE_CONNS; i++) {
        char who[32];
        snprintf(who, sizeof who, "client conn %d", i + 1);
        if (!done[i] && wait_readable(fds[i], 3000))
            show_recv(who, fds[i]);
        close(fds[i]);
    }
}

/* ---- 7: overload ---- */

static long long netstat_counter(const char *name)
{
    FILE *f = fopen("/proc/net/netstat", "re");
    char names[4096], values[4096];
    long long v = -1;
    while (f && fgets(names, sizeof names, f) && fgets(values, sizeof values, f)) {
        if (strncmp(names, "TcpExt:", 7))
            continue;
        char *sn, *sv;
        char *n = strtok_r(names + 7, " \n", &sn), *x = strtok_r(values + 7, " \n", &sv);
        for (; n && x; n = strtok_r(NULL, " \n", &sn), x = strtok_r(NULL, " \n", &sv))
            if (!strcmp(n, name))
                v = atoll(x);
    }
    if (f)
        fclose(f);
    return v;
}

#define OVERLOAD_CLIENTS 8
#define OVERLOAD_WATCH_MS 2300
enum cstate { CONNECTING, CONNECTED, REPLIED, RESET, CLOSED, FAILED };

struct oclient {
    int fd;
    enum cstate st;
    double connected_at; /* seconds after the burst */
};

static int start_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0)
        connect(fd, (struct sockaddr *)&a, sizeof a); /* EINPROGRESS, or done */
    return fd;
}

static void overload_step(struct oclient *c, double t)
{
    if (c->st == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        c->st = err ? FAILED : CONNECTED;
        c->connected_at = t;
        if (!err)
            send(c->fd, request, sizeof request - 1, MSG_NOSIGNAL);
        return;
    }
    char buf[256];
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0)
        c->st = REPLIED;
    else if (n == 0)
        c->st = CLOSED;
    else if (errno == ECONNRESET)
        c->st = RESET;
}

static int count_state(const struct oclient *c, enum cstate s)
{
    int n = 0;
    for (int i = 0; i < OVERLOAD_CLIENTS; i++)
        n += c[i].st == s;
    return n;
}

static void overload_watch(struct oclient *c, double t0)
{
    int printed = 0;
    while (now_s() - t0 < OVERLOAD_WATCH_MS / 1000.0) {
        struct pollfd p[OVERLOAD_CLIENTS];
        for (int i = 0; i < OVERLOAD_CLIENTS; i++) {
            p[i].fd = (c[i].st == CONNECTING || c[i].st == CONNECTED) ? c[i].fd : -1;
            p[i].events = c[i].st == CONNECTING ? POLLOUT : POLLIN;
        }
        poll(p, OVERLOAD_CLIENTS, 20);
        for (int i = 0; i < OVERLOAD_CLIENTS; i++)
            if (p[i].fd >= 0 && p[i].revents)
                overload_step(&c[i], now_s() - t0);
        if (!printed && now_s() - t0 > 0.5) {
            printed = 1;
            say(WHO, "after 0.5 s: %d of %d connected, %d still in SYN_SENT (SYN dropped: "
                     "accept queue full; no RST, no error)",
                OVERLOAD_CLIENTS - count_state(c, CONNECTING) - count_state(c, FAILED),
                OVERLOAD_CLIENTS, count_state(c, CONNECTING));
        }
    }
}

static void client_overload(int port)
{
    long long ovf0 = netstat_counter("ListenOverflows"), drop0 = netstat_counter("ListenDrops");
    struct oclient c[OVERLOAD_CLIENTS];
    for (int i = 0; i < OVERLOAD_CLIENTS; i++) {
        c[i].fd = start_connect(port);
        c[i].st = c[i].fd < 0 ? FAILED : CONNECTING;
    }
    say(WHO, "%d connects at once", OVERLOAD_CLIENTS);
    overload_watch(c, now_s());
    char times[256] = "";
    for (int i = 0, used = 0; i < OVERLOAD_CLIENTS; i++)
        if (c[i].st != CONNECTING && c[i].st != FAILED && used < 200)
            used += snprintf(times + used, sizeof times - (size_t)used, " %.1f",
                             c[i].connected_at);
    say(WHO, "connected after (s):%s", times);
    say(WHO, "after %.1f s: %d replied, %d reset, %d closed without reply, %d still in "
             "SYN_SENT (next SYN retry at 3 s), %d refused",
        OVERLOAD_WATCH_MS / 1000.0, count_state(c, REPLIED), count_state(c, RESET),
        count_state(c, CLOSED), count_state(c, CONNECTING), count_state(c, FAILED));
    say("kernel", "ListenOverflows +%lld, ListenDrops +%lld (this network namespace)",
        netstat_counter("ListenOverflows") - ovf0, netstat_counter("ListenDrops") - drop0);
    for (int i = 0; i < OVERLOAD_CLIENTS; i++)
        if (c[i].fd >= 0)
            close(c[i].fd);
}

static void client_correct(int port)
{
    int fd = connect_or_die(port);
    show_send(WHO, fd, request);
    show_until_end(fd, 4, 2000);
    close(fd); /* after the server's FIN: nothing unread, a clean close */
}

struct mode {
    const char *name;
    void (*run)(int port);
};

static const struct mode modes[] = {
    {"immediate", client_immediate}, {"mismatch", client_mismatch},
    {"timeout", client_timeout},     {"linger", client_linger},
    {"pending", client_pending},     {"emfile", client_emfile},
    {"overload", client_overload},   {"correct", client_correct},
};

int main(int argc, char **argv)
{
    int port = argc == 3 ? atoi(argv[2]) : 0;
    for (size_t i = 0; port > 0 && i < sizeof modes / sizeof modes[0]; i++)
        if (!strcmp(argv[1], modes[i].name)) {
            alarm(10); /* never hang the demo */
            modes[i].run(port);
            return 0;
        }
    fprintf(stderr, "usage: clients MODE PORT\n");
    return 2;
}
