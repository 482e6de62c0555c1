/* Demo servers: one small server per way of making the peer see an RST.
 *
 *   servers MODE      MODE: immediate mismatch timeout linger pending
 *                           emfile overload correct
 *
 * Each listens on 127.0.0.1 (port chosen by the kernel, printed as the first
 * line "PORT n"), serves what its scenario needs, and exits by itself; an
 * alarm ends it if its client never shows up.  The code is written the way
 * the faulty servers seen in the field are, not the way it should be: the
 * comments say where it goes wrong. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

#define WHO "server"
#define SAFETY_ALARM_S 10

static const char reply_ok[] = "HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";

static int accept_one(int lfd)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        die("accept");
    return fd;
}

/* Read until the blank line that ends an HTTP-ish request.  Returns 1 when
 * complete, 0 on EOF, -1 on error (errno kept, e.g. EAGAIN on timeout). */
static int read_request(int fd)
{
    char buf[1024];
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (n <= 0)
            return n == 0 ? 0 : -1;
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            return 1;
        if (have == sizeof buf - 1)
            have = 0; /* keep looking; the demo never sends that much */
    }
}

static void send_all(int fd, const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = send(fd, s + off, len - off, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        off += (size_t)n;
    }
}

/* 1. accept() then close() at once: e.g. a server over its connection
 * limit, or an IP filter, that "rejects" by closing. */
static void serve_immediate(int lfd)
{
    int fd = accept_one(lfd);
    say(WHO, "accepted, closing at once (over capacity)");
    close(fd);
    close(lfd);
}

/* 2. Protocol mismatch: reads the 4-byte magic, sees something else,
 * answers an error and closes -- the rest of the request is never read. */
static void serve_mismatch(int lfd)
{
    int fd = accept_one(lfd);
    char magic[5] = {0};
    ssize_t n = recv(fd, magic, 4, MSG_WAITALL);
    if (n == 4 && memcmp(magic, "PING", 4)) {
        say(WHO, "expected \"PING\", got \"%s\": protocol error, closing", magic);
        send_all(fd, "-ERR unknown protocol\r\n");
    }
    close(fd); /* the bug: unread bytes are still queued */
    close(lfd);
}

/* 3. SO_RCVTIMEO of 100 ms: the client pauses mid-request, recv() times
 * out, the server gives up and closes. */
static void serve_timeout(int lfd)
{
    int fd = accept_one(lfd);
    struct timeval tv = {0, 100 * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (read_request(fd) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        say(WHO, "recv timed out after 100 ms: client too slow, closing");
    close(fd);
    close(lfd);
}

/* 4. "Fast close": reply, then SO_LINGER {1,0} so close() skips TIME_WAIT,
 * which it does by resetting the connection. */
static void serve_linger(int lfd)
{
    int fd = accept_one(lfd);
    if (read_request(fd) == 1)
        send_all(fd, reply_ok);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    say(WHO, "replied, then SO_LINGER {1,0} and close (to avoid TIME_WAIT)");
    close(fd);
    close(lfd);
}

/* Length of the listener's accept queue (TCP_INFO on a listener puts it in
 * tcpi_unacked). */
static int queue_length(int lfd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(lfd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return -1;
    return (int)ti.tcpi_unacked;
}

/* 5. Shutting down with connections queued: the listener is closed while
 * clients wait in its accept queue. */
static void serve_pending(int lfd)
{
    int q = 0;
    for (int i = 0; i < 300 && (q = queue_length(lfd)) < 3; i++)
        sleep_ms(10);
    say(WHO, "shutting down: closing the listener with %d connections never accepted", q);
    close(lfd);
}

/* 6. RLIMIT_NOFILE too low: keep-alive connections use up the fds, accept()
 * fails with EMFILE; the connection stays queued, the listener stays
 * readable, the event loop spins -- then the server gives up. */
static void serve_emfile(int lfd)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    /* New fds must be below the limit: room for lfd+1 and lfd+2.  Fds
     * already open above it (the shim keeps its log fd high) stay valid. */
    rl.rlim_cur = (rlim_t)lfd + 3;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("setrlimit");
    say(WHO, "RLIMIT_NOFILE lowered to %llu", (unsigned long long)rl.rlim_cur);
    int conns[8], n = 0, emfile = 0;
    double give_up = 0, deadline = now_s() + 5;
    while (now_s() < deadline && (!give_up || now_s() < give_up)) {
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
            if (!emfile++) {
                say(WHO, "accept: %s; the client stays queued, poll() says readable again",
                    strerror(errno));
                give_up = now_s() + 0.6;
            }
            sleep_ms(10); /* a real loop would spin at 100% CPU here */
            continue;
        }
        if (fd < 0)
            die("accept");
        struct timeval tv = {0, 300 * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[64];
        if (recv(fd, buf, sizeof buf, 0) > 0)
            send_all(fd, "OK\n");
        if (n < 8)
            conns[n++] = fd; /* keep-alive: the fd stays in use */
    }
    say(WHO, "%d accept() calls failed in 0.6 s; giving up, exiting", emfile);
    for (int i = 0; i < n; i++)
        close(conns[i]);
    close(lfd);
}

/* 7. Thread-per-connection with a cap: at most OVERLOAD_THREADS handlers,
 * the acceptor waits for a free one before it calls accept(), and the
 * backlog is small.  Under a burst the accept queue fills and the kernel
 * drops SYNs: no RST, no close for the shim to flag -- clients just wait
 * for their SYN retries (1 s, 3 s, ...).  After OVERLOAD_RUN_MS the server
 * stops accepting, lets its handlers finish and exits cleanly. */
#define OVERLOAD_THREADS 2
#define OVERLOAD_BACKLOG 1
#define OVERLOAD_WORK_MS 200
#define OVERLOAD_RUN_MS 2000
static sem_t free_threads;

static void *handle(void *arg)
{
    int fd = (int)(intptr_t)arg;
    if (read_request(fd) == 1) {
        sleep_ms(OVERLOAD_WORK_MS); /* a slow backend call */
        send_all(fd, reply_ok);
    }
    close(fd);
    sem_post(&free_threads);
    return NULL;
}

/* Wait for a free handler thread; false when the run is over. */
static bool take_thread(double stop)
{
    while (now_s() < stop)
        if (sem_trywait(&free_threads) == 0)
            return true;
        else
            sleep_ms(5);
    return false;
}

static void serve_overload(int lfd)
{
    sem_init(&free_threads, 0, OVERLOAD_THREADS);
    double stop = now_s() + OVERLOAD_RUN_MS / 1000.0;
    int accepted = 0;
    while (take_thread(stop)) {
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        while (now_s() < stop && poll(&p, 1, 20) <= 0)
            ;
        int fd = now_s() < stop ? accept4(lfd, NULL, NULL, SOCK_CLOEXEC) : -1;
        if (fd < 0) {
            sem_post(&free_threads);
            continue;
        }
        accepted++;
        pthread_t t;
        if (pthread_create(&t, NULL, handle, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd), sem_post(&free_threads);
    }
    for (int i = 0; i < OVERLOAD_THREADS; i++) /* let the handlers finish */
        sem_wait(&free_threads);
    say(WHO, "%d threads, backlog %d: served %d connections in %.1f s, stopping (queue: %d)",
        OVERLOAD_THREADS, OVERLOAD_BACKLOG, accepted, OVERLOAD_RUN_MS / 1000.0,
        queue_length(lfd));
    close(lfd);
}

/* 8. The correct way: read the whole request, reply, shutdown(SHUT_WR),
 * wait for the client's EOF (bounded), then close. */
static void serve_correct(int lfd)
{
    int fd = accept_one(lfd);
    struct timeval tv = {2, 0}; /* a generous bound, not a trap */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (read_request(fd) == 1)
        send_all(fd, reply_ok);
    shutdown(fd, SHUT_WR);
    char buf[256];
    while (recv(fd, buf, sizeof buf, 0) > 0)
        ; /* drain to EOF */
    say(WHO, "replied, shutdown(SHUT_WR), drained to EOF, closed");
    close(fd);
    close(lfd);
}

struct mode {
    const char *name;
    int backlog;
    void (*serve)(int lfd);
};

static const struct mode modes[] = {
    {"immediate", 16, serve_immediate}, {"mismatch", 16, serve_mismatch},
    {"timeout", 16, serve_timeout},     {"linger", 16, serve_linger},
    {"pending", 8, serve_pending},      {"emfile", 16, serve_emfile},
    {"overload", OVERLOAD_BACKLOG, serve_overload}, {"correct", 16, serve_correct},
};

int main(int argc, char **argv)
{
    for (size_t i = 0; argc == 2 && i < sizeof modes / sizeof modes[0]; i++)
        if (!strcmp(argv[1], modes[i].name)) {
            alarm(SAFETY_ALARM_S);
            modes[i].serve(listen_local(modes[i].backlog));
            return 0;
        }
    fprintf(stderr, "usage: servers immediate|mismatch|timeout|linger|pending|emfile|"
                    "overload|correct\n");
    return 2;
}
