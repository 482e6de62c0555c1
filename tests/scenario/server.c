/*
 * scenario_server: the servers (and one load client) that the scenario suite
 * runs under librstshim.so while it records every RST on `lo`.
 *
 *   scenario_server MODE [args]
 *
 * Every server mode binds 127.0.0.1:0 (or [::1]:0), listens, prints
 * "PORT <n>" (flushed), does what its mode says and exits 0.  Progress is
 * reported as further lines on stdout ("CLOSED", "LIMIT 9", ...) and the
 * harness says "go" on stdin where a mode must wait for it.  Anything
 * unexpected prints "ERROR ..." to stderr and exits 2.
 *
 * The wire protocol the harness speaks (see README.md):
 *   - the "unread" family: the client sends HEAD_LEN bytes then REST_LEN more
 *     (in one send); the server reads HEAD_LEN and leaves REST_LEN unread.
 *   - the "clean" family: the client sends a request, shuts down its write
 *     side, and reads the reply until EOF.
 *
 * Every wait is bounded (poll timeouts, a 30 s alarm() watchdog), so a stuck
 * server dies by itself even if the harness does not kill it.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEAD_LEN 4        /* bytes the "unread" modes read */
#define REST_LEN 96       /* bytes they leave in the receive queue */
#define IO_TIMEOUT_MS 5000
#define WATCHDOG_S 30

static const char *g_mode = "?";

static void fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ERROR %s: ", g_mode);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(2);
}

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* A shell without job control starts background children with SIGINT ignored;
 * reset every disposition and the mask so SIGTERM/SIGINT behave normally. */
static void reset_signals(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        signal(sig, SIG_DFL); /* fails harmlessly for glibc-reserved RT signals */
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static void wait_readable(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r = poll(&p, 1, ms);
    if (r < 0)
        fail("poll: %s", strerror(errno));
    if (r == 0)
        fail("timed out waiting for fd %d to become readable", fd);
}

/* Wait (bounded) until at least n unread bytes sit in fd's receive queue, so a
 * close that follows really has that much unread data. */
static void wait_unread(int fd, int n)
{
    for (int i = 0; i < IO_TIMEOUT_MS; i++) {
        int q = 0;
        if (ioctl(fd, FIONREAD, &q) < 0)
            fail("FIONREAD: %s", strerror(errno));
        if (q >= n)
            return;
        sleep_ms(1);
    }
    fail("timed out waiting for %d unread bytes on fd %d", n, fd);
}

static struct tcp_info tcp_info_of(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        fail("TCP_INFO: %s", strerror(errno));
    return ti;
}

/* Read exactly n bytes (bounded). */
static void read_exact(int fd, char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        wait_readable(fd, IO_TIMEOUT_MS);
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            fail("recv: %s", r == 0 ? "early EOF" : strerror(errno));
        got += (size_t)r;
    }
}

/* Read until the peer's EOF (bounded); returns the byte count. */
static size_t read_to_eof(int fd)
{
    char buf[4096];
    size_t total = 0;
    for (int i = 0; i < 100000; i++) {
        wait_readable(fd, IO_TIMEOUT_MS);
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            fail("recv: %s", strerror(errno));
        if (r == 0)
            return total;
        total += (size_t)r;
    }
    fail("read_to_eof: too many reads");
    return 0;
}

static void write_all(int fd, const char *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = send(fd, buf + done, n - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            fail("send: %s", strerror(errno));
        done += (size_t)w;
    }
}

static void reply(int fd, size_t nread)
{
    char msg[64];
    int n = snprintf(msg, sizeof msg, "OK %zu\n", nread);
    write_all(fd, msg, (size_t)n);
}

static void xclose(int fd)
{
    if (close(fd) < 0)
        fail("close(%d): %s", fd, strerror(errno));
}

/* Bind loopback port 0, listen, print "PORT <n>". */
static int open_listener(int family, int backlog)
{
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        fail("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0)
        fail("bind: %s", strerror(errno));
    if (listen(fd, backlog) < 0)
        fail("listen: %s", strerror(errno));
    len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        fail("getsockname: %s", strerror(errno));
    int port = family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                  : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    say("PORT %d", port);
    return fd;
}

static int accept_one(int lfd, int flags)
{
    wait_readable(lfd, 10000);
    int fd = accept4(lfd, NULL, NULL, flags);
    if (fd < 0)
        fail("accept4: %s", strerror(errno));
    return fd;
}

/* Block until the harness writes a line starting with `word` on stdin. */
static void wait_go(const char *word, char *rest, size_t restlen)
{
    char line[256];
    if (!fgets(line, sizeof line, stdin))
        fail("stdin closed while waiting for '%s'", word);
    size_t wl = strlen(word);
    if (strncmp(line, word, wl) != 0)
        fail("expected '%s' on stdin, got '%s'", word, line);
    if (rest && restlen > 0) { /* the words after `word`, truncated to fit */
        size_t n = strlen(line + wl);
        if (n >= restlen)
            n = restlen - 1;
        memcpy(rest, line + wl, n);
        rest[n] = 0;
    }
}

/* Read HEAD_LEN bytes and wait until REST_LEN more are queued: the socket
 * now holds unread data, so its last close sends an RST. */
static void read_head_leave_rest(int fd)
{
    char head[HEAD_LEN];
    read_exact(fd, head, sizeof head);
    wait_unread(fd, REST_LEN);
}

/* Accept one connection and leave it with unread data: the common start of
 * every "close with unread data" mode. */
static int accept_with_unread(int lfd, int accept_flags)
{
    int cfd = accept_one(lfd, accept_flags);
    read_head_leave_rest(cfd);
    return cfd;
}

/* fork() with stdout flushed (so the child does not repeat buffered lines). */
static pid_t fork_flushed(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        fail("fork: %s", strerror(errno));
    return pid;
}

static void wait_child_ok(pid_t pid)
{
    int status = 0;
    if (waitpid(pid, &status, 0) != pid)
        fail("waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("child failed, status %d", status);
}

/* ---------------------------------------------------------------- modes */

/* Most modes serve one connection the same way: bind a loopback listener
 * (backlog 16), accept one connection (with HEAD_LEN read and REST_LEN left
 * unread if the mode's `unread` is set), hand it to the mode's `serve`, which
 * does its work and releases the connection, then close the listener and say
 * "DONE".  The modes below that do something else have their own `run`. */

/* clean: read the request until the client's EOF, reply, close.  Nothing is
 * unread (a received FIN is not data), so the close sends FIN: no flags. */
static void serve_clean(int cfd)
{
    reply(cfd, read_to_eof(cfd));
    xclose(cfd);
}

/* unread (and ipv6): read 4 bytes, close with 96 still queued: the kernel
 * answers with RST inside close() -> unread_data, rst true.
 * immediate: accept and close at once, nothing read or written.  FIN only;
 * the RST comes later, from the kernel, when the client sends. */
static void serve_close(int cfd)
{
    xclose(cfd);
}

/* sniff: wait until the client's whole request is queued, read none of it,
 * close at once: unread_data and immediate_close, an RST inside close().
 * (Under RSTSHIM_FIX=drain the shim reads it away first: a FIN, and the
 * close is still an immediate_close: the application read nothing.) */
static void serve_sniff(int cfd)
{
    wait_unread(cfd, HEAD_LEN + REST_LEN);
    xclose(cfd);
}

/* linger2: read the request, set TCP_LINGER2 -1, reply, shutdown(SHUT_WR);
 * once the client has acked that FIN (FIN_WAIT2; the client keeps its side
 * open), close: the kernel aborts instead of waiting for the client's FIN,
 * an RST (TCPAbortOnLinger) -> tcp_linger2, rst true. */
static void read_set_linger2_reply(int cfd)
{
    char head[HEAD_LEN];
    read_exact(cfd, head, sizeof head);
    int linger2 = -1;
    if (setsockopt(cfd, IPPROTO_TCP, TCP_LINGER2, &linger2, sizeof linger2) < 0)
        fail("TCP_LINGER2: %s", strerror(errno));
    reply(cfd, sizeof head);
}

/* linger2_close: the same without the shutdown: close() in ESTABLISHED sends
 * the FIN, and the client's ACK of it finds an orphan with TCP_LINGER2 < 0:
 * an RST (on loopback the ACK is processed before close() returns). */
static void serve_linger2_close(int cfd)
{
    read_set_linger2_reply(cfd);
    xclose(cfd);
}

static void serve_linger2(int cfd)
{
    read_set_linger2_reply(cfd);
    if (shutdown(cfd, SHUT_WR) < 0)
        fail("shutdown: %s", strerror(errno));
    for (int i = 0;; i++) {
        struct tcp_info ti = tcp_info_of(cfd);
        if (ti.tcpi_state == TCP_FIN_WAIT2)
            break;
        if (i >= IO_TIMEOUT_MS)
            fail("state %u, want FIN_WAIT2", ti.tcpi_state);
        sleep_ms(1);
    }
    xclose(cfd);
}

/* linger0: read the whole request, set SO_LINGER {1,0}, reply, close: an
 * abortive close, RST instead of FIN even with nothing unread. */
static void serve_linger0(int cfd)
{
    char head[HEAD_LEN];
    read_exact(cfd, head, sizeof head);
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    if (setsockopt(cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0)
        fail("SO_LINGER: %s", strerror(errno));
    reply(cfd, sizeof head);
    xclose(cfd);
}

/* rcvtimeo: SO_RCVTIMEO 100 ms, recv times out (the client sends nothing),
 * close -> recv_timeout, FIN.  The extra 20 ms keeps the close clear of the
 * 100 ms immediate_close threshold: this scenario is about the timeout. */
static void serve_rcvtimeo(int cfd)
{
    char buf[16];
    struct timeval tv = { .tv_sec = 0, .tv_usec = 100000 };
    if (setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
        fail("SO_RCVTIMEO: %s", strerror(errno));
    ssize_t r = recv(cfd, buf, sizeof buf, 0);
    if (r != -1 || (errno != EAGAIN && errno != EWOULDBLOCK))
        fail("recv should have timed out, got %zd (%s)", r, strerror(errno));
    sleep_ms(20);
    xclose(cfd);
}

/* Waits for the harness's "go N", then (bounded) until TCP_INFO shows N
 * completed connections queued on the listener (tcpi_unacked). */
static void wait_queued(int lfd)
{
    char rest[64];
    wait_go("go", rest, sizeof rest);
    unsigned want = (unsigned)atoi(rest);
    for (int i = 0;; i++) {
        struct tcp_info ti = tcp_info_of(lfd);
        if (ti.tcpi_unacked >= want)
            break;
        if (i >= IO_TIMEOUT_MS)
            fail("accept queue holds %u, want %u", ti.tcpi_unacked, want);
        sleep_ms(1);
    }
}

/* pending: never accept.  The harness connects N clients and says "go N";
 * once they are queued, close the listener: N RSTs -> pending_connections,
 * pending N. */
static int mode_pending(int argc, char **argv)
{
    int shut = argc > 0 && !strcmp(argv[0], "shutdown");
    int lfd = open_listener(AF_INET, 16);
    wait_queued(lfd);
    if (shut && shutdown(lfd, SHUT_RD) < 0)
        fail("shutdown: %s", strerror(errno));
    xclose(lfd);
    say("DONE");
    return 0;
}

/* listener_shutdown: as pending, but shutdown(SHUT_RD) first, as threaded
 * servers do to wake their accept() threads: the N RSTs go out at the
 * shutdown, and the close that follows finds the queue empty. */
static int mode_listener_shutdown(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    char *shutdown_first[] = {"shutdown", NULL};
    return mode_pending(1, shutdown_first);
}

/* epoll: nonblocking accept4 + epoll, read until EAGAIN (which is NOT a
 * receive timeout: no SO_RCVTIMEO), reply once the request is complete
 * (the client's EOF), close: a clean FIN, no flags. */
static int mode_epoll(int argc, char **argv)
{
    (void)argc; (void)argv;
    int lfd = open_listener(AF_INET, 16);
    int flags = fcntl(lfd, F_GETFL);
    fcntl(lfd, F_SETFL, flags | O_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        fail("epoll_create1: %s", strerror(errno));
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    int cfd = -1, eagains = 0, done = 0;
    size_t nread = 0;
    for (int iter = 0; !done && iter < 1000; iter++) {
        struct epoll_event out[4];
        int n = epoll_wait(ep, out, 4, IO_TIMEOUT_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail("epoll_wait: %s", n == 0 ? "timeout" : strerror(errno));
        for (int i = 0; i < n && !done; i++) {
            if (out[i].data.fd == lfd) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                if (fd < 0) {
                    if (errno == EAGAIN)
                        continue;
                    fail("accept4: %s", strerror(errno));
                }
                if (cfd >= 0)
                    fail("unexpected second connection");
                cfd = fd;
                struct epoll_event cev = { .events = EPOLLIN, .data.fd = cfd };
                epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                continue;
            }
            for (int k = 0; k < 10000; k++) {
                char buf[1024];
                ssize_t r = recv(cfd, buf, sizeof buf, 0);
                if (r > 0) {
                    nread += (size_t)r;
                    continue;
                }
                if (r == 0) { /* request complete */
                    done = 1;
                    break;
                }
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    eagains++;
                    break;
                }
                if (errno != EINTR)
                    fail("recv: %s", strerror(errno));
            }
        }
    }
    if (!done)
        fail("never saw the client's EOF");
    epoll_ctl(ep, EPOLL_CTL_DEL, cfd, NULL);
    reply(cfd, nread);
    xclose(cfd);
    xclose(ep);
    xclose(lfd);
    say("DONE eagains=%d", eagains);
    return 0;
}

/* dup: read 4 bytes, dup, close the original: the dup still holds the socket,
 * nothing is sent -> ["shared"], rst false.  The harness checks the wire,
 * then sends more data that is never read; closing the dup releases the
 * socket with it unread -> unread_data, rst true. */
static void serve_dup(int cfd)
{
    char head[HEAD_LEN];
    read_exact(cfd, head, sizeof head);
    int dfd = dup(cfd);
    if (dfd < 0)
        fail("dup: %s", strerror(errno));
    xclose(cfd);
    say("CLOSED1");
    wait_unread(dfd, REST_LEN);
    xclose(dfd);
}

/* fork: accept, close the listener (so only the connection is shared), fork.
 * The parent closes its copy at once: the child still holds it -> "shared".
 * The child then reads 4 bytes of the client's data and closes with the rest
 * unread: the last release -> unread_data, rst true. */
static int mode_fork(int argc, char **argv)
{
    (void)argc; (void)argv;
    int lfd = open_listener(AF_INET, 16);
    int cfd = accept_one(lfd, 0);
    xclose(lfd);
    pid_t pid = fork_flushed();
    if (pid == 0) {
        read_head_leave_rest(cfd);
        xclose(cfd);
        _exit(0);
    }
    xclose(cfd);
    say("CLOSED1 child=%d", (int)pid);
    wait_child_ok(pid);
    say("DONE");
    return 0;
}

/* fork_child_first: the reverse order of "fork".  The child closes its copy
 * at once and exits (the parent still holds it -> "shared", nothing sent);
 * then the parent reads 4 bytes and closes with the rest unread: that is the
 * last release -> unread_data, rst true, although this process forked. */
static int mode_fork_child_first(int argc, char **argv)
{
    (void)argc; (void)argv;
    int lfd = open_listener(AF_INET, 16);
    int cfd = accept_one(lfd, 0);
    xclose(lfd);
    pid_t pid = fork_flushed();
    if (pid == 0) {
        xclose(cfd);
        _exit(0);
    }
    wait_child_ok(pid);
    say("CLOSED1 child=%d", (int)pid);
    read_head_leave_rest(cfd);
    xclose(cfd);
    say("DONE");
    return 0;
}

/* shutdown: read 4 bytes, leave 96 unread, shutdown(SHUT_RDWR): that sends
 * only a FIN.  After the harness says "go", close(): now the unread data
 * makes it an RST -> unread_data, rst true, at the close, not the shutdown. */
static void serve_shutdown(int cfd)
{
    if (shutdown(cfd, SHUT_RDWR) < 0)
        fail("shutdown: %s", strerror(errno));
    say("SHUT");
    wait_go("go", NULL, 0);
    xclose(cfd);
}

/* connect PORT: the shimmed process is the client this time.  Connect to
 * 127.0.0.1:PORT (the harness listens), read 4 bytes, leave 96 unread,
 * close -> role "connected", unread_data, rst true.  Prints "CONNECTED". */
static int mode_connect(int argc, char **argv)
{
    if (argc < 1)
        fail("usage: connect PORT");
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[0])) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        fail("socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        fail("connect: %s", strerror(errno));
    say("CONNECTED");
    read_head_leave_rest(fd);
    xclose(fd);
    say("DONE");
    return 0;
}

/* threads: N threads accept and serve "clean" connections on one listener
 * until the harness says "quit"; then shutdown(SHUT_RD) on the listener wakes
 * every blocked accept() (EINVAL), the threads are joined, the listener closed. */
static atomic_int g_served;
static atomic_int g_quit;

static void *serve_thread(void *arg)
{
    int lfd = *(int *)arg;
    for (;;) {
        int cfd = accept(lfd, NULL, NULL);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (atomic_load(&g_quit))
                return NULL;
            fail("accept: %s", strerror(errno));
        }
        reply(cfd, read_to_eof(cfd));
        xclose(cfd);
        atomic_fetch_add(&g_served, 1);
    }
}

static int mode_threads(int argc, char **argv)
{
    int nthreads = argc > 0 ? atoi(argv[0]) : 4;
    if (nthreads < 1 || nthreads > 64)
        fail("bad thread count");
    int lfd = open_listener(AF_INET, 1024);
    pthread_t th[64];
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&th[i], NULL, serve_thread, &lfd) != 0)
            fail("pthread_create");
    wait_go("quit", NULL, 0);
    atomic_store(&g_quit, 1);
    if (shutdown(lfd, SHUT_RD) < 0)
        fail("shutdown(listener): %s", strerror(errno));
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    xclose(lfd);
    say("DONE served=%d", atomic_load(&g_served));
    return 0;
}

/* exit / _exit: accept, read nothing, wait until the harness's data is all
 * queued, then leave with both sockets open: the process exit releases them
 * -> the connection closes via "exit" with unread_data (rst true), the
 * listener via "exit" with nothing pending.  The harness waits 300 ms before
 * sending so the close is not also an immediate_close. */
static int exit_mode(int use_underscore)
{
    int lfd = open_listener(AF_INET, 16);
    int cfd = accept_one(lfd, 0);
    wait_unread(cfd, HEAD_LEN + REST_LEN);
    say("EXITING");
    if (use_underscore)
        _exit(0);
    exit(0);
}

static int mode_exit(int argc, char **argv)
{
    (void)argc; (void)argv;
    return exit_mode(0);
}

static int mode__exit(int argc, char **argv)
{
    (void)argc; (void)argv;
    return exit_mode(1);
}

/* emfile: the harness connects one client and says "go".  The server lowers
 * RLIMIT_NOFILE to just above its open fds and fills the gaps with /dev/null,
 * so accept() fails with EMFILE (the connection stays queued, the listener
 * stays readable).  A few bounded retries, then the fds are freed and the
 * connection is served cleanly. */
static int mode_emfile(int argc, char **argv)
{
    (void)argc; (void)argv;
    enum { LIMIT_SPAN = 8, RETRIES = 5 };
    int lfd = open_listener(AF_INET, 16);
    wait_go("go", NULL, 0);
    wait_readable(lfd, IO_TIMEOUT_MS);

    struct rlimit old, low;
    if (getrlimit(RLIMIT_NOFILE, &old) < 0)
        fail("getrlimit: %s", strerror(errno));
    int top = dup(0); /* the lowest free fd: everything below is in use */
    if (top < 0)
        fail("dup: %s", strerror(errno));
    low = old;
    low.rlim_cur = (rlim_t)(top + LIMIT_SPAN);
    if (setrlimit(RLIMIT_NOFILE, &low) < 0)
        fail("setrlimit: %s", strerror(errno));
    int fillers[LIMIT_SPAN + 1], nfill = 0;
    fillers[nfill++] = top;
    while (nfill < LIMIT_SPAN + 1) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            if (errno != EMFILE)
                fail("open: %s", strerror(errno));
            break;
        }
        fillers[nfill++] = fd;
    }
    say("LIMIT %d", (int)low.rlim_cur);
    int emfiles = 0;
    for (int i = 0; i < RETRIES; i++) {
        int fd = accept(lfd, NULL, NULL);
        if (fd >= 0)
            fail("accept succeeded under the lowered limit (fd %d)", fd);
        if (errno != EMFILE)
            fail("accept: expected EMFILE, got %s", strerror(errno));
        emfiles++;
        sleep_ms(10);
    }
    for (int i = 0; i < nfill; i++)
        xclose(fillers[i]);
    if (setrlimit(RLIMIT_NOFILE, &old) < 0)
        fail("setrlimit restore: %s", strerror(errno));
    int cfd = accept_one(lfd, 0);
    reply(cfd, read_to_eof(cfd));
    xclose(cfd);
    xclose(lfd);
    say("DONE emfiles=%d", emfiles);
    return 0;
}

/* peer_reset: recv() while the client aborts with SO_LINGER {1,0}: the recv
 * fails with ECONNRESET (peer_reset); the close that follows is of a dead
 * socket and sends nothing.  The client waits 300 ms before aborting so the
 * close is not an immediate_close. */
static void serve_peer_reset(int cfd)
{
    char buf[64];
    wait_readable(cfd, IO_TIMEOUT_MS);
    ssize_t r = recv(cfd, buf, sizeof buf, 0);
    if (r != -1 || errno != ECONNRESET)
        fail("recv: expected ECONNRESET, got %zd (%s)", r, r < 0 ? strerror(errno) : "data");
    say("RESULT ECONNRESET");
    xclose(cfd);
}

/* close_range: the unread-data close, done by close_range(fd, fd, 0). */
static void serve_close_range(int cfd)
{
    if (close_range((unsigned)cfd, (unsigned)cfd, 0) < 0)
        fail("close_range: %s", strerror(errno));
}

/* dup2: the unread-data close, done implicitly by dup2(/dev/null, fd). */
static void serve_dup2(int cfd)
{
    int nfd = open("/dev/null", O_RDONLY);
    if (nfd < 0)
        fail("open: %s", strerror(errno));
    if (dup2(nfd, cfd) != cfd)
        fail("dup2: %s", strerror(errno));
    xclose(nfd);
    xclose(cfd); /* now /dev/null: not a socket, no line */
}

/* fclose: the unread-data close, done by fclose() of an fdopen'ed socket
 * (glibc closes the fd internally, not through the PLT). */
static void serve_fclose(int cfd)
{
    FILE *f = fdopen(cfd, "r+");
    if (!f)
        fail("fdopen: %s", strerror(errno));
    if (fclose(f) != 0)
        fail("fclose: %s", strerror(errno));
}

/* exec: the accepted socket is SOCK_CLOEXEC and has unread data; a
 * successful execv(/bin/true) releases it -> via "exec", rst true.  The
 * listener is closed first so only one socket rides on the exec. */
static int mode_exec(int argc, char **argv)
{
    (void)argc; (void)argv;
    int lfd = open_listener(AF_INET, 16);
    int cfd = accept_with_unread(lfd, SOCK_CLOEXEC);
    (void)cfd;
    xclose(lfd);
    say("EXEC");
    char *args[] = { "/bin/true", NULL };
    execv("/bin/true", args);
    fail("execv: %s", strerror(errno));
    return 2;
}

/* client (no shim; the load generator for "threads"):
 *   client PORT NTHREADS PER_THREAD
 * each thread makes PER_THREAD sequential "clean" connections. */
static int g_client_port, g_client_per;
static atomic_int g_client_ok, g_client_fail;

static void *client_thread(void *arg)
{
    (void)arg;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)g_client_port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < g_client_per; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
            if (fd >= 0)
                close(fd);
            atomic_fetch_add(&g_client_fail, 1);
            continue;
        }
        char buf[64];
        ssize_t total = 0, r;
        int ok = send(fd, "PING", 4, MSG_NOSIGNAL) == 4 && shutdown(fd, SHUT_WR) == 0;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        while (ok && poll(&p, 1, IO_TIMEOUT_MS) == 1 &&
               (r = recv(fd, buf + total, sizeof buf - 1 - (size_t)total, 0)) > 0)
            total += r;
        buf[total] = 0;
        ok = ok && strcmp(buf, "OK 4\n") == 0;
        close(fd);
        atomic_fetch_add(ok ? &g_client_ok : &g_client_fail, 1);
    }
    return NULL;
}

static int mode_client(int argc, char **argv)
{
    if (argc < 3)
        fail("usage: client PORT NTHREADS PER_THREAD");
    g_client_port = atoi(argv[0]);
    int nthreads = atoi(argv[1]);
    g_client_per = atoi(argv[2]);
    if (nthreads < 1 || nthreads > 64 || g_client_per < 1 || g_client_per > 100000)
        fail("bad arguments");
    pthread_t th[64];
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&th[i], NULL, client_thread, NULL) != 0)
            fail("pthread_create");
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    say("CLIENT ok=%d fail=%d", atomic_load(&g_client_ok), atomic_load(&g_client_fail));
    return atomic_load(&g_client_fail) ? 1 : 0;
}

struct mode {
    const char *name;
    int (*run)(int argc, char **argv); /* a mode with its own scaffolding, or */
    void (*serve)(int cfd);            /* one connection, served as said above */
    int family;
    int unread; /* accept_with_unread rather than accept_one */
};

#define OWN(name, run) { name, run, NULL, 0, 0 }
#define ONE(name, serve, family, unread) { name, NULL, serve, family, unread }

static const struct mode modes[] = {
    ONE("clean", serve_clean, AF_INET, 0),
    ONE("unread", serve_close, AF_INET, 1),
    ONE("ipv6", serve_close, AF_INET6, 1),
    ONE("linger0", serve_linger0, AF_INET, 0),
    ONE("linger2", serve_linger2, AF_INET, 0),
    ONE("linger2_close", serve_linger2_close, AF_INET, 0),
    ONE("immediate", serve_close, AF_INET, 0),
    ONE("sniff", serve_sniff, AF_INET, 0),
    ONE("rcvtimeo", serve_rcvtimeo, AF_INET, 0),
    ONE("dup", serve_dup, AF_INET, 0),
    ONE("shutdown", serve_shutdown, AF_INET, 1),
    ONE("peer_reset", serve_peer_reset, AF_INET, 0),
    ONE("close_range", serve_close_range, AF_INET, 1),
    ONE("dup2", serve_dup2, AF_INET, 1),
    ONE("fclose", serve_fclose, AF_INET, 1),
    OWN("pending", mode_pending),
    OWN("listener_shutdown", mode_listener_shutdown),
    OWN("epoll", mode_epoll),
    OWN("fork", mode_fork),
    OWN("fork_child_first", mode_fork_child_first),
    OWN("threads", mode_threads),
    OWN("exit", mode_exit),
    OWN("_exit", mode__exit),
    OWN("emfile", mode_emfile),
    OWN("exec", mode_exec),
    OWN("connect", mode_connect),
    OWN("client", mode_client),
};

static int run_mode(const struct mode *m, int argc, char **argv)
{
    if (m->run)
        return m->run(argc, argv);
    int lfd = open_listener(m->family, 16);
    int cfd = m->unread ? accept_with_unread(lfd, 0) : accept_one(lfd, 0);
    m->serve(cfd);
    xclose(lfd);
    say("DONE");
    return 0;
}

int main(int argc, char **argv)
{
    reset_signals();
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODE [args]\n", argv[0]);
        return 2;
    }
    g_mode = argv[1];
    alarm(WATCHDOG_S);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(modes[i].name, argv[1]) == 0)
            return run_mode(&modes[i], argc - 2, argv + 2);
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
