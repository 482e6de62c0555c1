/* Host program for the hardening suite (tests/hardening/test_hardening.py
 * and test_sanitize.py).  Each mode does what real programs do to a
 * preloaded library -- threads, forks, signal handlers, daemon(), spawn,
 * SCM_RIGHTS, hostile names -- and prints or journals what it did, so the
 * runner can compare bare and shimmed runs and check the log against it.
 *
 * The same source is linked three ways: plain (run with LD_PRELOAD),
 * -static (LD_PRELOAD cannot work), and together with the shim's sources
 * under ASan+UBSan and TSan (the shim then defines close/recv/... in the
 * executable itself).  All servers listen on 127.0.0.1 only. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---------------------------------------------------------------- helpers */

static void die(const char *what)
{
    fprintf(stderr, "host: %s: %s\n", what, strerror(errno));
    exit(2);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static const char *errname(int err)
{
    const char *n = strerrorname_np(err);
    return n ? n : "E?";
}

static int make_listener(struct sockaddr_in *addr, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t len = sizeof *addr;
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, sizeof *addr) || listen(fd, backlog) ||
        getsockname(fd, (struct sockaddr *)addr, &len))
        die("listener");
    return fd;
}

static int connect_to(const struct sockaddr_in *addr, int type_flags)
{
    int fd = socket(AF_INET, SOCK_STREAM | type_flags, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof *addr))
        die("connect");
    return fd;
}

static int accept_one(int lfd, int flags)
{
    int fd;
    do
        fd = accept4(lfd, NULL, NULL, flags);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        die("accept");
    return fd;
}

static void addr_text(const struct sockaddr_storage *ss, socklen_t len, char out[64])
{
    char ip[INET6_ADDRSTRLEN];
    if (len && ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, 64, "%s:%u", ip, ntohs(in->sin_port));
    } else if (len && ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, 64, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        strcpy(out, "");
    }
}

static void local_of(int fd, char out[64])
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        len = 0;
    addr_text(&ss, len, out);
}

static void peer_of(int fd, char out[64])
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        len = 0;
    addr_text(&ss, len, out);
}

static unsigned long long cookie_of(int fd)
{
    uint64_t cookie = 0;
    socklen_t len = sizeof cookie;
    getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len);
    return (unsigned long long)cookie;
}

static long inq(int fd)
{
    int n = 0;
    return ioctl(fd, SIOCINQ, &n) == 0 ? n : -1;
}

static int tcp_state(int fd)
{
    struct tcp_info info;
    socklen_t len = sizeof info;
    memset(&info, 0, sizeof info);
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 ? info.tcpi_state : -1;
}

/* What a peer sees: "rst" (ECONNRESET), "fin" (EOF), "data", or "nothing"
 * within wait_ms. */
static const char *observe(int fd, int wait_ms)
{
    struct timeval tv = {0, wait_ms * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    tv.tv_usec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (n > 0)
        return "data";
    if (n == 0)
        return "fin";
    if (errno == ECONNRESET)
        return "rst";
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return "nothing";
    return errname(errno);
}

/* A tiny deterministic PRNG per thread (xorshift64*). */
static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* ------------------------------------------------------------ mode: model
 *
 * THREADS threads, each with its own loopback listener, do random
 * socket/connect/accept/dup/dup2/close/fclose/fork/recv/send operations
 * for SECONDS (at most MAXOPS each) on sockets they alone own, and journal
 * every event the shim must log, with what the kernel said just before
 * each release.  The runner matches the log against the journals. */

#define MODEL_MAX_FDS 32
#define MODEL_MAX_PENDING 8

enum { R_NONE, R_ACCEPTED, R_CONNECTED, R_LISTENER };
static const char *const role_names[] = {"none", "accepted", "connected", "listener"};

struct msock {
    int role;
    int fds;              /* open fds naming it */
    int other;            /* index of the other end, -1 unknown */
    long long app_read, app_written;
    bool reset_seen;      /* ECONNRESET/EPIPE already journaled */
    bool eof_seen;
    uint64_t t0, t1;      /* creation call interval */
    char local[64], peer[64];
};

struct mthread {
    int index;
    int listener;
    struct sockaddr_in addr;
    pid_t tid;
    FILE *journal;
    uint64_t seed;
    struct msock *socks; /* one per op at most, plus the listener */
    int nsocks, max_socks;
    int fd_sock[MODEL_MAX_FDS + MODEL_MAX_PENDING]; /* fds[i] names socks[fd_sock[i]] */
    int fds[MODEL_MAX_FDS + MODEL_MAX_PENDING];
    int nfds;
    int pending[MODEL_MAX_PENDING]; /* connected socks not yet accepted, FIFO */
    int npending;
    long ops, forks;
};

static long model_maxops;
static int model_forks;
static uint64_t model_deadline;

static void jprintf(struct mthread *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(t->journal, fmt, ap);
    va_end(ap);
}

static int new_sock(struct mthread *t, int role)
{
    if (t->nsocks >= t->max_socks)
        die("model: out of socket slots");
    struct msock *s = &t->socks[t->nsocks];
    memset(s, 0, sizeof *s);
    s->role = role;
    s->other = -1;
    return t->nsocks++;
}

static void add_fd(struct mthread *t, int fd, int sock)
{
    t->fds[t->nfds] = fd;
    t->fd_sock[t->nfds] = sock;
    t->nfds++;
    t->socks[sock].fds++;
}

static void remove_fd_at(struct mthread *t, int i)
{
    t->socks[t->fd_sock[i]].fds--;
    t->fds[i] = t->fds[t->nfds - 1];
    t->fd_sock[i] = t->fd_sock[t->nfds - 1];
    t->nfds--;
}

/* Journals a release of fd (index i) about to happen, with the facts the
 * shim will read; the caller journals t0/t1 of the call with close_done(). */
static void journal_release(struct mthread *t, int i, const char *via, uint64_t c0, uint64_t c1,
                            const char *pre)
{
    int sock = t->fd_sock[i];
    struct msock *s = &t->socks[sock];
    jprintf(t, "{\"event\":\"close\",\"fd\":%d,\"via\":\"%s\",\"sock\":%d,\"role\":\"%s\",%s,"
               "\"t0\":%llu,\"t1\":%llu,\"sock_t0\":%llu,\"sock_t1\":%llu,\"app_read\":%lld,"
               "\"app_written\":%lld,\"eof\":%s,\"peer\":\"%s\"}\n",
            t->fds[i], via, sock, role_names[s->role], pre, (unsigned long long)c0,
            (unsigned long long)c1, (unsigned long long)s->t0, (unsigned long long)s->t1,
            s->app_read, s->app_written, s->eof_seen ? "true" : "false", s->peer);
}

/* The facts read right before a release, as JSON members. */
static void pre_release(struct mthread *t, int i, char out[256])
{
    int fd = t->fds[i];
    struct msock *s = &t->socks[t->fd_sock[i]];
    char local[64];
    local_of(fd, local);
    long unread = s->role == R_LISTENER ? -1 : inq(fd);
    /* Bytes the other end wrote that are neither read nor queued yet: still
     * on their way through loopback (softirq deferred under load); they may
     * land between this probe and the shim's. */
    long long in_flight = s->other >= 0 && unread >= 0
                              ? t->socks[s->other].app_written - s->app_read - unread
                              : 0;
    snprintf(out, 256,
             "\"dups_left\":%d,\"unread\":%ld,\"in_flight\":%lld,\"state\":%d,\"local\":\"%s\"",
             s->fds - 1, unread, in_flight > 0 ? in_flight : 0, tcp_state(fd), local);
}

static void op_connect(struct mthread *t)
{
    if (t->nfds >= MODEL_MAX_FDS - 2 || t->npending >= MODEL_MAX_PENDING)
        return;
    int sock = new_sock(t, R_CONNECTED);
    if (sock < 0)
        return;
    struct msock *s = &t->socks[sock];
    s->t0 = mono_ns();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        die("socket");
    if (connect(fd, (struct sockaddr *)&t->addr, sizeof t->addr) != 0)
        die("connect");
    s->t1 = mono_ns();
    local_of(fd, s->local);
    peer_of(fd, s->peer);
    add_fd(t, fd, sock);
    t->pending[t->npending++] = sock;
    jprintf(t, "{\"event\":\"connect\",\"fd\":%d,\"sock\":%d,\"local\":\"%s\",\"peer\":\"%s\"}\n",
            fd, sock, s->local, s->peer);
}

static void op_accept(struct mthread *t, bool draining)
{
    if (!t->npending || (!draining && t->nfds >= MODEL_MAX_FDS - 1))
        return;
    int sock = new_sock(t, R_ACCEPTED);
    if (sock < 0)
        return;
    struct msock *s = &t->socks[sock];
    s->t0 = mono_ns();
    int fd = accept_one(t->listener, (rnd(&t->seed) & 1) ? SOCK_CLOEXEC : 0);
    s->t1 = mono_ns();
    local_of(fd, s->local);
    peer_of(fd, s->peer);
    int client = t->pending[0];
    memmove(t->pending, t->pending + 1, sizeof(int) * (size_t)--t->npending);
    if (strcmp(t->socks[client].local, s->peer) != 0) {
        fprintf(stderr, "host: accept order: %s != %s\n", t->socks[client].local, s->peer);
        exit(2);
    }
    s->other = client;
    t->socks[client].other = sock;
    add_fd(t, fd, sock);
    jprintf(t, "{\"event\":\"accept\",\"fd\":%d,\"sock\":%d,\"local\":\"%s\",\"peer\":\"%s\","
               "\"listen_fd\":%d}\n",
            fd, sock, s->local, s->peer, t->listener);
}

/* A socket that never connects: its close must log nothing. */
static void op_socket_only(struct mthread *t)
{
    if (t->nfds >= MODEL_MAX_FDS - 1)
        return;
    int sock = new_sock(t, R_NONE);
    if (sock < 0)
        return;
    t->socks[sock].t0 = mono_ns();
    int fd = socket(AF_INET, SOCK_STREAM | ((rnd(&t->seed) & 1) ? SOCK_CLOEXEC : 0), 0);
    if (fd < 0)
        die("socket");
    t->socks[sock].t1 = mono_ns();
    add_fd(t, fd, sock);
}

static int random_fd(struct mthread *t, bool connection_only)
{
    if (!t->nfds)
        return -1;
    int start = (int)(rnd(&t->seed) % (unsigned)t->nfds);
    for (int k = 0; k < t->nfds; k++) {
        int i = (start + k) % t->nfds;
        int role = t->socks[t->fd_sock[i]].role;
        if (!connection_only || role == R_ACCEPTED || role == R_CONNECTED)
            return i;
    }
    return -1;
}

static void note_reset(struct mthread *t, int i, int err, const char *call)
{
    struct msock *s = &t->socks[t->fd_sock[i]];
    if ((err == ECONNRESET || err == EPIPE) && !s->reset_seen) {
        s->reset_seen = true;
        jprintf(t, "{\"event\":\"peer_reset\",\"fd\":%d,\"sock\":%d,\"errno\":\"%s\",\"call\":\"%s\"}\n",
                t->fds[i], t->fd_sock[i], errname(err), call);
    }
}

static void op_send(struct mthread *t)
{
    int i = random_fd(t, true);
    if (i < 0)
        return;
    struct msock *s = &t->socks[t->fd_sock[i]];
    /* bounded backlog: never fill a receive queue (send must not block) */
    long long backlog = s->app_written - (s->other >= 0 ? t->socks[s->other].app_read : 0);
    if (backlog > 16384)
        return;
    char buf[256];
    size_t n = 1 + rnd(&t->seed) % 200;
    memset(buf, 'a' + (int)(t->index % 26), n);
    ssize_t r;
    const char *call;
    switch (rnd(&t->seed) % 3) {
    case 0:
        call = "send";
        r = send(t->fds[i], buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        break;
    case 1:
        call = "write";
        r = write(t->fds[i], buf, n); /* SIGPIPE is ignored */
        break;
    default: {
        call = "writev";
        struct iovec iov[2] = {{buf, n / 2}, {buf + n / 2, n - n / 2}};
        r = writev(t->fds[i], iov, 2);
        break;
    }
    }
    if (r > 0)
        s->app_written += r;
    else if (r < 0)
        note_reset(t, i, errno, call);
}

static void op_recv(struct mthread *t)
{
    int i = random_fd(t, true);
    if (i < 0)
        return;
    int fd = t->fds[i];
    struct msock *s = &t->socks[t->fd_sock[i]];
    char buf[512];
    size_t want = 1 + rnd(&t->seed) % 300;
    ssize_t r;
    const char *call;
    switch (rnd(&t->seed) % 4) {
    case 0:
        call = "recv";
        r = recv(fd, buf, want, MSG_DONTWAIT);
        break;
    case 1:
        call = "recvfrom";
        r = recvfrom(fd, buf, want, MSG_DONTWAIT, NULL, NULL);
        break;
    case 2: /* blocking read only when something is there (data, FIN or error) */
        call = "read";
        if (inq(fd) <= 0)
            return;
        r = read(fd, buf, want);
        break;
    default: {
        call = "readv";
        if (inq(fd) <= 0)
            return;
        struct iovec iov[2] = {{buf, want / 2 + 1}, {buf + want / 2 + 1, want / 2}};
        r = readv(fd, iov, 2);
        break;
    }
    }
    if (r > 0)
        s->app_read += r;
    else if (r == 0)
        s->eof_seen = true;
    else
        note_reset(t, i, errno, call);
}

static void op_dup(struct mthread *t)
{
    if (t->nfds >= MODEL_MAX_FDS - 1)
        return;
    int i = random_fd(t, false);
    if (i < 0)
        return;
    int fd;
    switch (rnd(&t->seed) % 3) {
    case 0: fd = dup(t->fds[i]); break;
    case 1: fd = fcntl(t->fds[i], F_DUPFD, 0); break;
    default: fd = fcntl(t->fds[i], F_DUPFD_CLOEXEC, 0); break;
    }
    if (fd < 0)
        die("dup");
    add_fd(t, fd, t->fd_sock[i]);
}

static void op_close(struct mthread *t)
{
    int i = random_fd(t, false);
    if (i < 0)
        return;
    int sock = t->fd_sock[i];
    char pre[256];
    pre_release(t, i, pre);
    int fd = t->fds[i];
    bool use_fclose = (rnd(&t->seed) % 8) == 0;
    uint64_t c0 = mono_ns();
    int r;
    if (use_fclose) {
        FILE *f = fdopen(fd, "r+");
        if (!f)
            die("fdopen");
        r = fclose(f);
    } else {
        r = close(fd);
    }
    uint64_t c1 = mono_ns();
    if (r != 0)
        die("close");
    if (t->socks[sock].role != R_NONE)
        journal_release(t, i, use_fclose ? "fclose" : "close", c0, c1, pre);
    remove_fd_at(t, i);
}

/* dup2/dup3 one owned socket onto another owned socket's fd: a release. */
static void op_dup2(struct mthread *t)
{
    int a = random_fd(t, false), b = random_fd(t, false);
    if (a < 0 || b < 0 || t->fd_sock[a] == t->fd_sock[b])
        return;
    int sock_b = t->fd_sock[b];
    char pre[256];
    pre_release(t, b, pre);
    int fd_b = t->fds[b];
    bool three = rnd(&t->seed) & 1;
    uint64_t c0 = mono_ns();
    int r = three ? dup3(t->fds[a], fd_b, O_CLOEXEC) : dup2(t->fds[a], fd_b);
    uint64_t c1 = mono_ns();
    if (r != fd_b)
        die("dup2");
    if (t->socks[sock_b].role != R_NONE)
        journal_release(t, b, "dup2", c0, c1, pre);
    int sock_a = t->fd_sock[a];
    remove_fd_at(t, b);
    add_fd(t, fd_b, sock_a);
}

static void op_fork(struct mthread *t)
{
    uint64_t f0 = mono_ns();
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0)
        _exit(0); /* the shim reports the inherited sockets, shared, into the child's file */
    uint64_t f1 = mono_ns();
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    uint64_t w1 = mono_ns(); /* the child is gone */
    t->forks++;
    jprintf(t, "{\"event\":\"fork\",\"pid\":%d,\"t0\":%llu,\"t1\":%llu,\"w1\":%llu,\"status\":%d}\n",
            (int)pid, (unsigned long long)f0, (unsigned long long)f1, (unsigned long long)w1, status);
}

static void *model_body(void *arg)
{
    struct mthread *t = arg;
    t->tid = gettid();
    jprintf(t, "{\"event\":\"thread\",\"index\":%d,\"tid\":%d,\"listener\":%d}\n", t->index,
            (int)t->tid, t->listener);
    while (t->ops < model_maxops && mono_ns() < model_deadline) {
        t->ops++;
        unsigned r = (unsigned)(rnd(&t->seed) % 1000);
        if (r < 150)
            op_connect(t);
        else if (r < 300)
            op_accept(t, false);
        else if (r < 480)
            op_send(t);
        else if (r < 640)
            op_recv(t);
        else if (r < 720)
            op_dup(t);
        else if (r < 760)
            op_dup2(t);
        else if (r < 780)
            op_socket_only(t);
        else if (r < 999)
            op_close(t);
        else if (model_forks && rnd(&t->seed) % 3 == 0)
            op_fork(t); /* about one op in 3000 */
    }
    /* drain: accept what is queued, then release everything */
    while (t->npending)
        op_accept(t, true);
    while (t->nfds) {
        int i = t->nfds - 1;
        int sock = t->fd_sock[i];
        char pre[256];
        pre_release(t, i, pre);
        uint64_t c0 = mono_ns();
        if (close(t->fds[i]) != 0)
            die("close");
        uint64_t c1 = mono_ns();
        if (t->socks[sock].role != R_NONE)
            journal_release(t, i, "close", c0, c1, pre);
        remove_fd_at(t, i);
    }
    /* thread 0's listener is left open: the shim reports it at exit */
    if (t->index != 0) {
        struct msock *s = &t->socks[0];
        uint64_t c0 = mono_ns();
        if (close(t->listener) != 0)
            die("close listener");
        uint64_t c1 = mono_ns();
        jprintf(t, "{\"event\":\"close\",\"fd\":%d,\"via\":\"close\",\"sock\":0,\"role\":\"listener\","
                   "\"dups_left\":0,\"unread\":-1,\"state\":10,\"local\":\"%s\",\"t0\":%llu,\"t1\":%llu,"
                   "\"sock_t0\":%llu,\"sock_t1\":%llu,\"app_read\":0,\"app_written\":0,\"eof\":false,"
                   "\"peer\":\"\"}\n",
                t->listener, s->local, (unsigned long long)c0, (unsigned long long)c1,
                (unsigned long long)s->t0, (unsigned long long)s->t1);
    }
    jprintf(t, "{\"event\":\"end\",\"ops\":%ld,\"forks\":%ld}\n", t->ops, t->forks);
    return NULL;
}

static int mode_model(const char *prefix, int threads, int seconds, long maxops, unsigned seed,
                      int with_forks)
{
    static struct mthread ts[32];
    pthread_t ids[32];
    if (threads > 32)
        threads = 32;
    model_maxops = maxops;
    model_forks = with_forks;
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < threads; i++) {
        struct mthread *t = &ts[i];
        char path[4096];
        snprintf(path, sizeof path, "%s.%d", prefix, i);
        t->journal = fopen(path, "w");
        if (!t->journal)
            die("journal");
        setvbuf(t->journal, NULL, _IOFBF, 1 << 16);
        t->index = i;
        t->max_socks = (int)maxops + 64;
        t->socks = calloc((size_t)t->max_socks, sizeof *t->socks);
        if (!t->socks)
            die("calloc");
        t->seed = 0x9E3779B97F4A7C15ull * (seed + 1) + (uint64_t)i * 7919 + 1;
        int sock = new_sock(t, R_LISTENER);
        t->socks[sock].t0 = mono_ns();
        t->listener = make_listener(&t->addr, 128);
        t->socks[sock].t1 = mono_ns();
        local_of(t->listener, t->socks[sock].local);
    }
    model_deadline = mono_ns() + (uint64_t)seconds * 1000000000ull;
    for (int i = 0; i < threads; i++)
        if (pthread_create(&ids[i], NULL, model_body, &ts[i]) != 0)
            die("pthread_create");
    long ops = 0, forks = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(ids[i], NULL);
        ops += ts[i].ops;
        forks += ts[i].forks;
        fclose(ts[i].journal);
    }
    printf("model threads=%d ops=%ld forks=%ld main_tid=%d listener0=%d\n", threads, ops, forks,
           (int)gettid(), ts[0].listener);
    return 0;
}

/* ------------------------------------------------------- mode: sigstorm
 *
 * SIGALRM every 200 us; the handler closes the "victim" socket the main
 * loop offers and does a non-blocking recv() on an idle socket, while the
 * main loop connects, accepts, sends, receives and closes (and, with
 * MALLOC=1, allocates like any real server does between calls). */

static volatile int storm_victim = -1;
static int storm_probe = -1;
static volatile long h_close_ok, h_close_fail, h_recv_eagain, h_recv_other, h_signals;
static volatile int h_close_errno;

static void storm_handler(int sig)
{
    (void)sig;
    int saved = errno;
    h_signals++;
    int v = __atomic_exchange_n(&storm_victim, -1, __ATOMIC_SEQ_CST);
    if (v >= 0) {
        if (close(v) == 0)
            h_close_ok++;
        else
            h_close_fail++, h_close_errno = errno;
    }
    char b;
    ssize_t n = recv(storm_probe, &b, 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        h_recv_eagain++;
    else
        h_recv_other++;
    errno = saved;
}

static void storm_print_cookie(FILE *out, const char *kind, unsigned long long cookie, int fd,
                               bool *first)
{
    fprintf(out, "%s{\"kind\":\"%s\",\"cookie\":%llu,\"fd\":%d}", *first ? "" : ",", kind, cookie,
            fd);
    *first = false;
}

static int mode_sigstorm(int seconds, int with_malloc, const char *journal_path)
{
    struct sockaddr_in addr;
    FILE *out = fopen(journal_path, "w");
    if (!out)
        die("journal");
    int lfd = make_listener(&addr, 64);
    int pc = connect_to(&addr, 0);
    storm_probe = accept_one(lfd, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = storm_handler;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 200}, {0, 200}};
    setitimer(ITIMER_REAL, &it, NULL);
    uint64_t deadline = mono_ns() + (uint64_t)seconds * 1000000000ull;
    long iterations = 0, main_victims = 0;
    bool first = true;
    fprintf(out, "{\"sockets\":[");
    char buf[64];
    while (mono_ns() < deadline && iterations < 200000) {
        iterations++;
        int c = connect_to(&addr, 0);
        int s = accept_one(lfd, 0);
        if (send(c, "ping", 4, 0) != 4)
            die("send");
        size_t got = 0;
        while (got < 4) {
            ssize_t n = recv(s, buf + got, 4 - got, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                die("recv");
            got += (size_t)n;
        }
        storm_print_cookie(out, "main", cookie_of(s), s, &first);
        storm_print_cookie(out, "main", cookie_of(c), c, &first);
        int vc = connect_to(&addr, 0);
        int vs = accept_one(lfd, 0);
        unsigned long long vcookie = cookie_of(vs);
        int vfd = vs;
        __atomic_store_n(&storm_victim, vs, __ATOMIC_SEQ_CST);
        if (with_malloc) {
            /* what any server does between calls: allocate, format, free */
            for (int k = 0; k < 4; k++) {
                size_t size = 1500 + (size_t)((iterations * 37 + k * 911) % 6000);
                char *p = malloc(size);
                if (!p)
                    die("malloc");
                memset(p, k, size);
                char *q = strdup("a modest response header");
                free(p);
                free(q);
            }
        }
        if (close(s) != 0 || close(c) != 0)
            die("close");
        int v = __atomic_exchange_n(&storm_victim, -1, __ATOMIC_SEQ_CST);
        if (v >= 0) {
            main_victims++;
            if (close(v) != 0)
                die("close victim");
            storm_print_cookie(out, "victim_main", vcookie, vfd, &first);
        } else {
            storm_print_cookie(out, "victim_handler", vcookie, vfd, &first);
        }
        storm_print_cookie(out, "victim_client", cookie_of(vc), vc, &first);
        if (close(vc) != 0)
            die("close vc");
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_IGN);
    fprintf(out, "],\"iterations\":%ld,\"signals\":%ld,\"handler_close_ok\":%ld,"
                 "\"handler_close_fail\":%ld,\"handler_close_errno\":\"%s\",\"handler_recv_eagain\":%ld,"
                 "\"handler_recv_other\":%ld,\"main_victims\":%ld,\"tid\":%d}\n",
            iterations, h_signals, h_close_ok, h_close_fail,
            h_close_fail ? errname(h_close_errno) : "-", h_recv_eagain, h_recv_other, main_victims,
            (int)gettid());
    fclose(out);
    close(storm_probe);
    close(pc);
    close(lfd);
    printf("sigstorm iterations=%ld signals=%ld handler_closes=%ld\n", iterations, h_signals,
           h_close_ok);
    return 0;
}

/* ---------------------------------------------------------- mode: eintr
 * A blocking call interrupted by a handler: EINTR without SA_RESTART,
 * restarted with it (unless SO_RCVTIMEO is set).  Printed for comparison
 * with a bare run. */

static volatile int eintr_handled;
static void count_handler(int sig)
{
    (void)sig;
    eintr_handled++;
}

struct delayed {
    int fd;
    struct sockaddr_in addr;
    int action; /* 0 send on fd, 1 connect to addr */
    int ms;
    int connected_fd;
};

static void *delayed_body(void *arg)
{
    struct delayed *d = arg;
    sleep_ms(d->ms);
    if (d->action == 0)
        (void)!send(d->fd, "data", 4, 0);
    else
        d->connected_fd = connect_to(&d->addr, 0);
    return NULL;
}

static void arm_once(int ms)
{
    struct itimerval it = {{0, 0}, {ms / 1000, (ms % 1000) * 1000}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void eintr_case(const char *name, bool restart, int call)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count_handler;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, NULL);
    eintr_handled = 0;

    struct sockaddr_in addr;
    int lfd = make_listener(&addr, 8);
    int c = connect_to(&addr, 0);
    int s = accept_one(lfd, 0);
    if (call == 3) {
        struct timeval tv = {5, 0};
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    struct delayed d = {.fd = c, .addr = addr, .action = call == 2 ? 1 : 0, .ms = 400,
                        .connected_fd = -1};
    pthread_t helper;
    pthread_create(&helper, NULL, delayed_body, &d);
    arm_once(100);
    char buf[16];
    errno = 0;
    long ret;
    switch (call) {
    case 0: ret = recv(s, buf, sizeof buf, 0); break;
    case 1: ret = read(s, buf, sizeof buf); break;
    case 2: ret = accept(lfd, NULL, NULL); break;
    default: ret = recv(s, buf, sizeof buf, 0); break;
    }
    int err = errno;
    pthread_join(helper, NULL);
    printf("%-34s ret=%s errno=%s handled=%d\n", name, ret < 0 ? "-1" : ret > 0 ? "positive" : "0",
           ret < 0 ? errname(err) : "-", eintr_handled);
    if (call == 2 && ret >= 0)
        close((int)ret);
    if (d.connected_fd >= 0)
        close(d.connected_fd);
    close(s);
    close(c);
    close(lfd);
    signal(SIGALRM, SIG_IGN);
}

static int mode_eintr(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    eintr_case("recv, no SA_RESTART", false, 0);
    eintr_case("recv, SA_RESTART", true, 0);
    eintr_case("read, no SA_RESTART", false, 1);
    eintr_case("read, SA_RESTART", true, 1);
    eintr_case("accept, no SA_RESTART", false, 2);
    eintr_case("accept, SA_RESTART", true, 2);
    eintr_case("recv+SO_RCVTIMEO, SA_RESTART", true, 3);
    return 0;
}

/* --------------------------------------------------------- mode: errno2
 * Failure paths beyond tests/shim: ENOTSOCK on files and pipes, EINVAL,
 * EAGAIN, EBADF, ..., and errno left alone by successful calls. */

static void show(const char *what, long ret, int err)
{
    printf("%-40s ret=%ld errno=%s\n", what, ret, ret < 0 ? errname(err) : "-");
}
#define SHOW(what, call)                                                                           \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long ret_ = (long)(call);                                                                  \
        show(what, ret_, errno);                                                                   \
    } while (0)
/* errno after a successful call: the shim must not leave its own there */
#define KEEP(what, call)                                                                           \
    do {                                                                                           \
        errno = E2BIG;                                                                             \
        long ret_ = (long)(call);                                                                  \
        int err_ = errno;                                                                          \
        printf("%-40s ok=%d errno-after=%s\n", what, ret_ >= 0, errname(err_));                    \
    } while (0)

static void notsock_calls(const char *kind, int rfd, int wfd)
{
    char buf[16] = "x";
    char name[80];
    struct sockaddr_in nowhere = {.sin_family = AF_INET, .sin_port = htons(1),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct linger lg = {1, 0};
    struct timeval tv = {1, 0};
    struct iovec iov = {buf, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
#define NS(call_name, call)                                                                        \
    do {                                                                                           \
        snprintf(name, sizeof name, "%s(%s)", call_name, kind);                                    \
        SHOW(name, call);                                                                          \
    } while (0)
    NS("recv", recv(rfd, buf, sizeof buf, MSG_DONTWAIT));
    NS("recvfrom", recvfrom(rfd, buf, sizeof buf, MSG_DONTWAIT, NULL, NULL));
    NS("recvmsg", recvmsg(rfd, &msg, MSG_DONTWAIT));
    NS("send", send(wfd, buf, 1, MSG_DONTWAIT));
    NS("sendto", sendto(wfd, buf, 1, 0, (struct sockaddr *)&nowhere, sizeof nowhere));
    NS("sendmsg", sendmsg(wfd, &msg, 0));
    NS("accept", accept(rfd, NULL, NULL));
    NS("accept4", accept4(rfd, NULL, NULL, SOCK_CLOEXEC));
    NS("listen", listen(rfd, 5));
    NS("connect", connect(rfd, (struct sockaddr *)&nowhere, sizeof nowhere));
    NS("setsockopt SO_LINGER", setsockopt(rfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
    NS("setsockopt SO_RCVTIMEO", setsockopt(rfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
#undef NS
}

static int mode_errno2(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    char buf[64] = {0};
    int file = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int pipefd[2];
    if (file < 0 || pipe(pipefd))
        die("setup");
    notsock_calls("file", file, file);
    notsock_calls("pipe", pipefd[0], pipefd[1]);

    struct sockaddr_in addr;
    int lfd = make_listener(&addr, 16);
    int c = connect_to(&addr, 0);
    int s = accept_one(lfd, 0);
    struct linger lg = {1, 0};
    struct timeval tv = {0, 2000000};
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);

    /* EINVAL and friends */
    SHOW("listen(connected)", listen(c, 5));
    SHOW("listen(accepted)", listen(s, 5));
    SHOW("setsockopt SO_LINGER len 1", setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, 1));
    SHOW("setsockopt SO_RCVTIMEO len 3", setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, 3));
    SHOW("setsockopt SO_RCVTIMEO usec 2e6", setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    SHOW("setsockopt unknown option", setsockopt(s, SOL_SOCKET, 9999, buf, 4));
    SHOW("setsockopt SO_LINGER NULL", setsockopt(s, SOL_SOCKET, SO_LINGER, NULL, sizeof lg));
    SHOW("accept4(bad flags)", accept4(lfd, NULL, NULL, 0x40000000));
    SHOW("dup3(bad flags)", dup3(s, 100, 0x1234));
    SHOW("fcntl(F_DUPFD, -1)", fcntl(s, F_DUPFD, -1));
    SHOW("fcntl(F_DUPFD, rlimit)", fcntl(s, F_DUPFD, (int)lim.rlim_cur));
    SHOW("dup2(s, rlimit)", dup2(s, (int)lim.rlim_cur));
    SHOW("close_range(bad flags)", close_range(3, 10, 0x8000));
    SHOW("socket(AF_INET, 999)", socket(AF_INET, 999, 0));
    SHOW("socket(12345)", socket(12345, SOCK_STREAM, 0));
    SHOW("socket(AF_INET, STREAM, UDP)", socket(AF_INET, SOCK_STREAM, IPPROTO_UDP));
    SHOW("connect(bad addrlen)", connect(s, (struct sockaddr *)&addr, 3));
    SHOW("connect(already connected)", connect(c, (struct sockaddr *)&addr, sizeof addr));
    int fresh = socket(AF_INET, SOCK_STREAM, 0);
    SHOW("send(unconnected)", send(fresh, "a", 1, 0));
    SHOW("recv(unconnected)", recv(fresh, buf, 1, MSG_DONTWAIT));
    SHOW("accept(not listening)", accept(fresh, NULL, NULL));
    SHOW("close(unconnected)", close(fresh));
    (void)!send(c, "z", 1, 0);
    usleep(10000);
    SHOW("recv(EFAULT)", recv(s, (void *)1, 8, 0));
    SHOW("recv(drain)", recv(s, buf, sizeof buf, MSG_DONTWAIT));

    /* EAGAIN */
    int sflags = fcntl(s, F_GETFL);
    fcntl(s, F_SETFL, sflags | O_NONBLOCK);
    SHOW("recv(nonblocking, empty)", recv(s, buf, sizeof buf, 0));
    SHOW("read(nonblocking, empty)", read(s, buf, sizeof buf));
    struct iovec iov = {buf, sizeof buf};
    SHOW("readv(nonblocking, empty)", readv(s, &iov, 1));
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    SHOW("recvmsg(nonblocking, empty)", recvmsg(s, &msg, 0));
    SHOW("recvfrom(nonblocking, empty)", recvfrom(s, buf, sizeof buf, 0, NULL, NULL));
    fcntl(s, F_SETFL, sflags);
    SHOW("recv(MSG_DONTWAIT, empty)", recv(s, buf, sizeof buf, MSG_DONTWAIT));
    int lflags = fcntl(lfd, F_GETFL);
    fcntl(lfd, F_SETFL, lflags | O_NONBLOCK);
    SHOW("accept(nonblocking, empty)", accept(lfd, NULL, NULL));
    SHOW("accept4(nonblocking, empty)", accept4(lfd, NULL, NULL, SOCK_NONBLOCK));
    fcntl(lfd, F_SETFL, lflags);
    {
        /* fill the send side until EAGAIN */
        static char chunk[65536];
        long r;
        int k = 0;
        fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
        do
            r = send(c, chunk, sizeof chunk, 0);
        while (r > 0 && ++k < 10000);
        show("send(nonblocking, full)", r, errno);
        errno = 0;
        r = write(c, chunk, sizeof chunk);
        show("write(nonblocking, full)", r, errno);
    }
    struct timeval rt = {0, 50000};
    int t = connect_to(&addr, 0);
    int ts = accept_one(lfd, 0);
    setsockopt(ts, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof rt);
    SHOW("recv(SO_RCVTIMEO expires)", recv(ts, buf, sizeof buf, 0));
    int nb = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    SHOW("connect(nonblocking)", connect(nb, (struct sockaddr *)&addr, sizeof addr));
    int nbs = accept_one(lfd, 0); /* keep the accept queue in step */

    /* EBADF */
    SHOW("send(EBADF)", send(9999, "a", 1, 0));
    SHOW("sendto(EBADF)", sendto(9999, "a", 1, 0, NULL, 0));
    SHOW("sendmsg(EBADF)", sendmsg(9999, &msg, 0));
    SHOW("recvmsg(EBADF)", recvmsg(9999, &msg, 0));
    SHOW("recvfrom(EBADF)", recvfrom(9999, buf, 1, 0, NULL, NULL));
    SHOW("readv(EBADF)", readv(9999, &iov, 1));
    SHOW("writev(EBADF)", writev(9999, &iov, 1));
    SHOW("connect(EBADF)", connect(9999, (struct sockaddr *)&addr, sizeof addr));
    SHOW("accept4(EBADF)", accept4(9999, NULL, NULL, 0));
    SHOW("setsockopt(EBADF)", setsockopt(9999, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof rt));
    SHOW("dup(EBADF)", dup(9999));
    SHOW("dup3(EBADF)", dup3(9999, 100, 0));
    SHOW("fcntl(F_DUPFD_CLOEXEC, EBADF)", fcntl(9999, F_DUPFD_CLOEXEC, 0));
    SHOW("fcntl(F_GETFL, EBADF)", fcntl(9999, F_GETFL));

    /* errno after successes on tracked sockets */
    int k1 = connect_to(&addr, 0);
    int k2 = accept_one(lfd, 0);
    (void)!send(k1, "unread", 6, 0);
    usleep(10000);
    KEEP("socket", (t = socket(AF_INET, SOCK_STREAM, 0)));
    KEEP("connect", connect(t, (struct sockaddr *)&addr, sizeof addr));
    int k3;
    KEEP("accept", (k3 = accept(lfd, NULL, NULL)));
    KEEP("setsockopt SO_LINGER", setsockopt(k3, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
    int d;
    KEEP("dup", (d = dup(k2)));
    KEEP("dup2 onto tracked", dup2(k2, k3));
    KEEP("send", send(k1, "x", 1, 0));
    KEEP("recv", recv(k2, buf, 1, 0));
    KEEP("close (shared copy)", close(d));
    KEEP("close (unread data)", close(k2));
    KEEP("close (peer reset)", close(k1));
    KEEP("close (dup2 copy, linger)", close(k3));
    KEEP("close (connected)", close(t));
    int l2;
    struct sockaddr_in a2;
    KEEP("listen", (l2 = make_listener(&a2, 4)));
    int q = connect_to(&a2, 0);
    KEEP("close (listener with pending)", close(l2));
    KEEP("close (connected to gone listener)", close(q));
    SHOW("close(s)", close(s));
    SHOW("close(c)", close(c));
    SHOW("close(ts)", close(ts));
    SHOW("close(nb)", close(nb));
    SHOW("close(nbs)", close(nbs));
    SHOW("close(lfd)", close(lfd));
    return 0;
}

/* --------------------------------------------------------- mode: daemon
 * daemon(0,0), then close every fd like a careful daemon, open its own
 * file (fd 3), listen, and serve two connections: the first is closed with
 * unread bytes (RST), the second cleanly after "quit"/"bye". */

static int mode_daemon(const char *status_path, const char *own_path)
{
    if (daemon(0, 0) != 0)
        die("daemon");
    alarm(30); /* never outlive the test */
    close_range(3, ~0U, 0);
    for (int fd = 3; fd < 1100; fd++)
        close(fd);
    int own = open(own_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (own < 0)
        _exit(3);
    (void)!write(own, "daemon own file\n", 16);
    struct sockaddr_in addr;
    int lfd = make_listener(&addr, 16);
    char tmp[4200], line[128];
    snprintf(tmp, sizeof tmp, "%s.tmp", status_path);
    int st = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int n = snprintf(line, sizeof line, "%d %u %d %d\n", (int)getpid(), ntohs(addr.sin_port), own,
                     lfd);
    if (st < 0 || write(st, line, (size_t)n) != n)
        _exit(3);
    close(st);
    rename(tmp, status_path);
    char buf[64];
    int s = accept_one(lfd, 0);
    size_t got = 0;
    while (got < 2) {
        ssize_t r = recv(s, buf + got, 2 - got, 0);
        if (r <= 0)
            _exit(4);
        got += (size_t)r;
    }
    usleep(50000); /* the rest of the request arrives and stays unread */
    close(s);
    s = accept_one(lfd, 0);
    got = 0;
    while (got < 4) {
        ssize_t r = recv(s, buf + got, 4 - got, 0);
        if (r <= 0)
            _exit(5);
        got += (size_t)r;
    }
    (void)!send(s, "bye", 3, 0);
    ssize_t r = recv(s, buf, sizeof buf, 0); /* the client's FIN */
    (void)r;
    close(s);
    close(lfd);
    (void)!write(own, "done\n", 5);
    close(own);
    return 0;
}

/* ---------------------------------------------------------- mode: spawn
 * A process holding tracked sockets with and without CLOEXEC spawns
 * children (posix_spawn, system()); what the parent's closes say is
 * compared with what the peer really saw. */

static void spawn_hold(const char *self, int ms, pid_t *pid)
{
    char arg[16];
    snprintf(arg, sizeof arg, "%d", ms);
    char *argv[] = {(char *)self, "hold", arg, NULL};
    int err = posix_spawn(pid, self, NULL, NULL, argv, environ);
    if (err) {
        errno = err;
        die("posix_spawn");
    }
}

static void pair(int lfd, const struct sockaddr_in *addr, int flags, int *client, int *server)
{
    *client = connect_to(addr, flags);
    *server = accept_one(lfd, flags);
}

static int mode_spawn(const char *self)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in addr;
    int lfd = make_listener(&addr, 16);
    fcntl(lfd, F_SETFD, FD_CLOEXEC);
    int ca, sa, cb, sb, cc, sc, cd, sd;
    pair(lfd, &addr, SOCK_CLOEXEC, &ca, &sa);
    fcntl(sa, F_SETFD, 0); /* sa inheritable, its client end not */
    pair(lfd, &addr, SOCK_CLOEXEC, &cb, &sb);
    (void)!send(ca, "12345", 5, 0);
    (void)!send(cb, "12345", 5, 0);
    usleep(20000);

    /* posix_spawn a child that holds what it inherited for 300 ms */
    pid_t p1;
    spawn_hold(self, 300, &p1);
    printf("spawn1 child=%d inheritable_fd=%d cloexec_fd=%d inheritable_cookie=%llu "
           "cloexec_cookie=%llu\n", (int)p1, sa, sb, cookie_of(sa), cookie_of(sb));
    close(sa); /* shared with the child: no RST yet */
    close(sb); /* CLOEXEC: released here, unread data: RST */
    printf("after parent close: inheritable peer saw %s, cloexec peer saw %s\n", observe(ca, 150),
           observe(cb, 150));
    int status;
    waitpid(p1, &status, 0);
    printf("spawn1 exit=%d; then inheritable peer saw %s\n", WEXITSTATUS(status), observe(ca, 300));

    /* posix_spawn a child that exits at once while the parent still holds */
    pair(lfd, &addr, SOCK_CLOEXEC, &cc, &sc);
    fcntl(sc, F_SETFD, 0);
    (void)!send(cc, "12345", 5, 0);
    usleep(20000);
    pid_t p2;
    spawn_hold(self, 0, &p2);
    waitpid(p2, &status, 0);
    unsigned long long sc_cookie = cookie_of(sc);
    printf("spawn2 child=%d exit=%d fd=%d cookie=%llu; peer saw %s after the child's exit\n",
           (int)p2, WEXITSTATUS(status), sc, sc_cookie, observe(cc, 150));
    close(sc);
    printf("spawn2 parent closed; peer saw %s\n", observe(cc, 300));

    /* system(): glibc spawns /bin/sh internally; it has exited when system returns */
    pair(lfd, &addr, SOCK_CLOEXEC, &cd, &sd);
    fcntl(sd, F_SETFD, 0);
    (void)!send(cd, "12345", 5, 0);
    usleep(20000);
    int sys = system("exit 3");
    unsigned long long sd_cookie = cookie_of(sd);
    printf("system exit=%d fd=%d cookie=%llu; peer saw %s after it\n", WEXITSTATUS(sys), sd,
           sd_cookie, observe(cd, 150));
    close(sd);
    printf("system parent closed; peer saw %s\n", observe(cd, 300));
    close(ca);
    close(cb);
    close(cc);
    close(cd);
    close(lfd);
    return 0;
}

static int mode_hold(int ms)
{
    sleep_ms(ms);
    return 0;
}

/* ------------------------------------------------------------ mode: scm
 * A TCP socket passed over a UNIX socketpair with SCM_RIGHTS to another
 * process (fork) or thread.  The sender closes its copy first; the
 * receiver reads 4 of the 10 bytes and closes: an RST from there. */

static void send_fd(int unix_fd, int fd)
{
    char byte = 'F';
    struct iovec iov = {&byte, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof u.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    if (sendmsg(unix_fd, &msg, 0) != 1)
        die("sendmsg");
}

static int recv_fd(int unix_fd)
{
    char byte;
    struct iovec iov = {&byte, 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof u.buf};
    if (recvmsg(unix_fd, &msg, 0) != 1)
        die("recvmsg");
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS)
        die("no SCM_RIGHTS");
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

static void scm_receiver(int unix_fd)
{
    int fd = recv_fd(unix_fd);
    char go;
    if (read(unix_fd, &go, 1) != 1) /* the sender has closed its copy */
        die("go");
    char buf[4];
    size_t got = 0;
    while (got < 4) {
        ssize_t n = recv(fd, buf + got, 4 - got, 0);
        if (n <= 0)
            die("recv passed");
        got += (size_t)n;
    }
    printf("receiver pid=%d tid=%d fd=%d\n", (int)getpid(), (int)gettid(), fd);
    close(fd);
    (void)!write(unix_fd, "d", 1);
}

static void *scm_thread(void *arg)
{
    scm_receiver(*(int *)arg);
    return NULL;
}

static int mode_scm(bool use_fork)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int u[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, u))
        die("socketpair");
    pid_t pid = -1;
    pthread_t th;
    if (use_fork) {
        pid = fork(); /* before any TCP socket exists: nothing is shared by the fork */
        if (pid == 0) {
            close(u[0]);
            scm_receiver(u[1]);
            _exit(0);
        }
        close(u[1]);
    } else {
        pthread_create(&th, NULL, scm_thread, &u[1]);
    }
    struct sockaddr_in addr;
    int lfd = make_listener(&addr, 8);
    int c = connect_to(&addr, 0);
    int s = accept_one(lfd, 0);
    (void)!send(c, "0123456789", 10, 0);
    usleep(20000);
    send_fd(u[0], s);
    usleep(20000);
    printf("sender pid=%d fd=%d\n", (int)getpid(), s);
    close(s); /* the receiver still holds it: no RST */
    printf("after sender close: peer saw %s\n", observe(c, 150));
    (void)!write(u[0], "g", 1);
    char done;
    if (read(u[0], &done, 1) != 1)
        die("done");
    printf("after receiver close: peer saw %s\n", observe(c, 300));
    if (use_fork) {
        int status;
        waitpid(pid, &status, 0);
    } else {
        pthread_join(th, NULL);
    }
    close(c);
    close(lfd);
    close(u[0]);
    if (!use_fork)
        close(u[1]);
    return 0;
}

/* ----------------------------------------------------------- mode: work
 * N quiet connections (nothing on stdout), spread over N*GAP_MS, then exit
 * with EXIT: for the log-under-trouble checks. */

static int mode_work(int n, int exit_code, int gap_ms)
{
    signal(SIGPIPE, SIG_DFL); /* like most programs: SIGPIPE would kill us */
    struct sockaddr_in addr;
    int lfd = make_listener(&addr, 16);
    char buf[8];
    for (int i = 0; i < n; i++) {
        int c = connect_to(&addr, 0);
        int s = accept_one(lfd, 0);
        if (send(c, "ping", 4, 0) != 4 || recv(s, buf, 4, MSG_WAITALL) != 4)
            die("ping");
        if (i % 3 == 0)
            (void)!send(c, "left", 4, 0), usleep(1000); /* an unread_data close */
        close(s);
        close(c);
        if (gap_ms)
            sleep_ms(gap_ms);
    }
    close(lfd);
    return exit_code;
}

/* ------------------------------------------------------- mode: longline
 * A 15-byte hostile thread name (set with prctl), on the main thread and
 * on a second thread, then a few connections. */

static void *longline_thread(void *arg)
{
    (void)arg;
    prctl(PR_SET_NAME, "\x01\"\\th\xc3\xa9\xffread-two", 0, 0, 0);
    mode_work(2, 0, 0);
    return NULL;
}

static int mode_longline(void)
{
    prctl(PR_SET_NAME, "\xff\"quote\\\x7f\x1b[1mAB", 0, 0, 0); /* 15 bytes */
    char name[17] = {0};
    prctl(PR_GET_NAME, name, 0, 0, 0);
    printf("comm length %zu\n", strlen(name));
    pthread_t th;
    pthread_create(&th, NULL, longline_thread, NULL);
    pthread_join(th, NULL);
    return mode_work(3, 0, 0);
}

/* -------------------------------------------------------- mode: rename
 * The shim keeps each thread's name and asks again after a rename.  Every
 * way a name changes, each followed by one connection: pthread_setname_np
 * on the calling thread, pthread_setname_np on another thread (glibc
 * writes /proc/self/task/TID/comm: no prctl), a name written to /proc by
 * the program itself (seen within a second), and prctl's own answers. */

static pthread_barrier_t rename_step;

static void *rename_thread(void *arg)
{
    (void)arg;
    prctl(PR_SET_NAME, "second", 0, 0, 0);
    mode_work(1, 0, 0);                /* comm "second" */
    if (prctl(PR_SET_NAME, "third", 0, 0, 0) != 0) /* after a line: the cache must go */
        die("PR_SET_NAME");
    mode_work(1, 0, 0);                /* comm "third" */
    pthread_barrier_wait(&rename_step); /* the main thread renames us */
    pthread_barrier_wait(&rename_step);
    mode_work(1, 0, 0);                /* comm "second-np" */
    return NULL;
}

static int mode_rename(void)
{
    mode_work(1, 0, 0); /* comm as exec gave it */
    pthread_setname_np(pthread_self(), "main-np");
    mode_work(1, 0, 0);
    pthread_barrier_init(&rename_step, NULL, 2);
    pthread_t th;
    pthread_create(&th, NULL, rename_thread, NULL);
    pthread_barrier_wait(&rename_step);
    pthread_setname_np(th, "second-np");
    pthread_barrier_wait(&rename_step);
    pthread_join(th, NULL);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)gettid());
    int fd = open(path, O_WRONLY);
    if (fd < 0 || write(fd, "by-proc", 7) != 7)
        die("write comm");
    close(fd);
    usleep(1200 * 1000); /* past the shim's one-second refresh */
    mode_work(1, 0, 0);  /* comm "by-proc" */
    errno = 0;
    int bad = prctl(-12345, 0, 0, 0, 0);
    printf("prctl bad option: %d %s\n", bad, strerror(errno));
    char name[17] = {0};
    printf("prctl get name: %d %s\n", prctl(PR_GET_NAME, name, 0, 0, 0), name);
    return 0;
}

/* -------------------------------------------------------- mode: payload
 * Distinctive bytes sent every way there is; the log must hold none. */

static int mode_payload(const char *payload)
{
    struct sockaddr_in addr;
    int lfd = make_listener(&addr, 8);
    int c = connect_to(&addr, 0);
    int s = accept_one(lfd, 0);
    size_t n = strlen(payload);
    char buf[512];
    struct iovec iov = {(void *)payload, n};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    (void)!send(c, payload, n, 0);
    (void)!write(c, payload, n);
    (void)!writev(c, &iov, 1);
    (void)!sendmsg(c, &msg, 0);
    (void)!sendto(s, payload, n, 0, NULL, 0);
    usleep(20000);
    (void)!recv(s, buf, n, 0);
    (void)!read(c, buf, n);
    close(s); /* with unread payload: an RST whose line must not quote it */
    usleep(20000);
    (void)!recv(c, buf, sizeof buf, 0);
    close(c);
    close(lfd);
    return 0;
}

/* --------------------------------------------------------- mode: setenv
 * The environment changed after start (and cleared in a forked child, as
 * nginx does for its workers) must not change where or what is logged. */

static int mode_setenv(const char *other_log)
{
    setenv("RSTSHIM_LOG", other_log, 1);
    setenv("RSTSHIM_EVENTS", "flagged", 1);
    setenv("RSTSHIM_TAG", "changed-after-start", 1);
    setenv("RSTSHIM_IMMEDIATE_MS", "bogus", 1);
    mode_work(2, 0, 0);
    pid_t pid = fork();
    if (pid == 0) {
        clearenv();
        mode_work(2, 0, 0);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("child %d\n", (int)pid);
    return 0;
}

/* ------------------------------------------------------------ mode: mix
 * For the sanitizers: worker threads doing connections, the main thread
 * forking children that exec, posix_spawn, (optionally) vfork, and a
 * SIGALRM handler closing sockets and receiving. */

static volatile int mix_stop;
static struct sockaddr_in mix_addr;
static int mix_lfd;

static void *mix_worker(void *arg)
{
    (void)arg;
    char buf[8];
    while (!__atomic_load_n(&mix_stop, __ATOMIC_ACQUIRE)) {
        int c = connect_to(&mix_addr, SOCK_CLOEXEC);
        int s = accept_one(mix_lfd, SOCK_CLOEXEC);
        int d = dup(s);
        if (send(c, "ping", 4, MSG_NOSIGNAL) != 4)
            die("send");
        ssize_t n;
        do
            n = recv(d, buf, 4, MSG_WAITALL);
        while (n < 0 && errno == EINTR);
        close(s);
        close(d);
        close(c);
    }
    return NULL;
}

static int mix_nworkers;

static int mode_mix(const char *self, int seconds, int with_vfork, int nworkers_arg, int signals)
{
    mix_nworkers = nworkers_arg > 8 ? 8 : nworkers_arg; /* a static: vfork may clobber locals */
    signal(SIGPIPE, SIG_IGN);
    mix_lfd = make_listener(&mix_addr, 128);
    int pc = connect_to(&mix_addr, 0);
    storm_probe = accept_one(mix_lfd, 0);
    static pthread_t workers[8];
    for (int i = 0; i < mix_nworkers; i++)
        pthread_create(&workers[i], NULL, mix_worker, NULL);
    if (signals) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = storm_handler;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval it = {{0, 500}, {0, 500}};
        setitimer(ITIMER_REAL, &it, NULL);
    }
    uint64_t deadline = mono_ns() + (uint64_t)seconds * 1000000000ull;
    long rounds = 0;
    while (mono_ns() < deadline && rounds < 100000) {
        rounds++;
        int vc = connect_to(&mix_addr, 0);
        int vs = accept_one(mix_lfd, 0);
        __atomic_store_n(&storm_victim, vs, __ATOMIC_SEQ_CST);
        int status;
        switch (rounds % 4) {
        case 0: { /* fork + exec */
            pid_t pid = fork();
            if (pid == 0) {
                execl(self, self, "nothing", (char *)NULL);
                _exit(127);
            }
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        case 1: { /* posix_spawn */
            pid_t pid;
            char *argv[] = {(char *)self, "nothing", NULL};
            if (posix_spawn(&pid, self, NULL, NULL, argv, environ) == 0)
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                    ;
            break;
        }
        case 2: /* vfork + _exit, or a fork whose child closes and exits */
            if (with_vfork) {
                pid_t pid = vfork();
                if (pid == 0) {
                    close(vc);
                    _exit(0);
                }
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                    ;
            } else {
                pid_t pid = fork();
                if (pid == 0) {
                    close(vc);
                    _exit(0);
                }
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                    ;
            }
            break;
        default:
            sleep_ms(2);
            break;
        }
        int v = __atomic_exchange_n(&storm_victim, -1, __ATOMIC_SEQ_CST);
        if (v >= 0)
            close(v);
        close(vc);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_IGN);
    __atomic_store_n(&mix_stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < mix_nworkers; i++)
        pthread_join(workers[i], NULL);
    close(storm_probe);
    close(pc);
    close(mix_lfd);
    printf("mix rounds=%ld handler_closes=%ld\n", rounds, h_close_ok);
    return 0;
}

/* ---------------------------------------------------------------- exitfork */

/* exit() while another thread forks.  At exit the shim probes every socket
 * (slow with thousands of listeners) and then lets the kernel release them:
 * a fork landing in between copies sockets the shim judged alone.  The
 * accepted socket holds 100 unread bytes, so its release resets the peer
 * whoever lets go last (the fork's child _exits at once); the peer, a
 * process of its own, prints what it saw, and the exit line must agree. */
static int exitfork_delay_us;

static void *exitfork_forker(void *arg)
{
    (void)arg;
    struct timespec ts = {0, exitfork_delay_us * 1000L};
    nanosleep(&ts, NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    for (;;)
        pause(); /* ended by the exit */
    return NULL;
}

static int mode_exitfork(int delay_us, int fillers)
{
    struct sockaddr_in addr;
    int lfd = make_listener(&addr, 8);
    int ready[2];
    if (pipe(ready) != 0)
        die("pipe");
    fflush(stdout);
    pid_t peer = fork();
    if (peer < 0)
        die("fork");
    if (peer == 0) {
        int c = connect_to(&addr, 0);
        char buf[100] = {0};
        if (send(c, buf, sizeof buf, 0) != (ssize_t)sizeof buf || write(ready[1], "x", 1) != 1)
            die("peer");
        struct timeval tv = {10, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t n = recv(c, buf, sizeof buf, 0);
        printf("peer %s\n", n < 0 && errno == ECONNRESET ? "reset" : n == 0 ? "eof" : "other");
        fflush(stdout);
        _exit(0);
    }
    int s = accept_one(lfd, 0);
    char x;
    if (read(ready[0], &x, 1) != 1)
        die("ready");
    sleep_ms(20); /* the 100 bytes are in s's receive queue */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)fillers + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (int i = 0; i < fillers; i++) {
        struct sockaddr_in other;
        if (make_listener(&other, 1) < 0)
            break;
    }
    printf("accepted %d\n", s);
    fflush(stdout);
    exitfork_delay_us = delay_us;
    pthread_t t;
    if (pthread_create(&t, NULL, exitfork_forker, NULL) != 0)
        die("pthread_create");
    exit(0);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
#define ARG(i, dflt) (argc > (i) ? argv[i] : (dflt))
    if (!strcmp(mode, "exitfork"))
        return mode_exitfork(atoi(ARG(2, "5000")), atoi(ARG(3, "3000")));
    if (!strcmp(mode, "model") && argc > 2)
        return mode_model(argv[2], atoi(ARG(3, "8")), atoi(ARG(4, "3")), atol(ARG(5, "5000")),
                          (unsigned)atoi(ARG(6, "1")), atoi(ARG(7, "1")));
    if (!strcmp(mode, "sigstorm") && argc > 2)
        return mode_sigstorm(atoi(ARG(3, "2")), atoi(ARG(4, "0")), argv[2]);
    if (!strcmp(mode, "eintr"))
        return mode_eintr();
    if (!strcmp(mode, "errno2"))
        return mode_errno2();
    if (!strcmp(mode, "daemon") && argc > 3)
        return mode_daemon(argv[2], argv[3]);
    if (!strcmp(mode, "spawn"))
        return mode_spawn(argv[0]);
    if (!strcmp(mode, "hold"))
        return mode_hold(atoi(ARG(2, "0")));
    if (!strcmp(mode, "scm"))
        return mode_scm(!strcmp(ARG(2, "fork"), "fork"));
    if (!strcmp(mode, "work"))
        return mode_work(atoi(ARG(2, "3")), atoi(ARG(3, "0")), atoi(ARG(4, "0")));
    if (!strcmp(mode, "longline"))
        return mode_longline();
    if (!strcmp(mode, "rename"))
        return mode_rename();
    if (!strcmp(mode, "payload") && argc > 2)
        return mode_payload(argv[2]);
    if (!strcmp(mode, "setenv") && argc > 2)
        return mode_setenv(argv[2]);
    if (!strcmp(mode, "mix"))
        return mode_mix(argv[0], atoi(ARG(2, "2")), atoi(ARG(3, "0")), atoi(ARG(4, "3")),
                        atoi(ARG(5, "1")));
    if (!strcmp(mode, "nothing"))
        return 0;
    fprintf(stderr, "usage: host model PREFIX [THREADS SECONDS MAXOPS SEED FORKS] | sigstorm JOURNAL "
                    "[SECONDS MALLOC] | eintr | errno2 | daemon STATUS OWN | spawn | hold MS | "
                    "scm fork|thread | work N [EXIT GAP_MS] | longline | rename | payload TEXT | "
                    "setenv OTHERLOG | mix [SECONDS VFORK WORKERS SIGNALS] | nothing\n");
    return 2;
}
