/* A host program for the shim's own tests (tests/shim/test_shim.py): each
 * mode does real socket work and prints what the calls returned, so the
 * output can be compared bare and under the shim. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void show(const char *what, long ret, int err)
{
    printf("%-28s ret=%ld errno=%s\n", what, ret, ret < 0 ? strerrorname_np(err) : "-");
}
#define SHOW(what, call)                                                                           \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long ret_ = (long)(call);                                                                  \
        show(what, ret_, errno);                                                                   \
    } while (0)

static int listener(struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t len = sizeof *addr;
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, sizeof *addr) || listen(fd, 64) ||
        getsockname(fd, (struct sockaddr *)addr, &len)) {
        perror("listener");
        exit(2);
    }
    return fd;
}

static int connected(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof *addr)) {
        perror("connect");
        exit(2);
    }
    return fd;
}

/* Every wrapper on its failure paths and a few successes; the fd numbers
 * and results must be the same bare and under the shim. */
static int mode_errno(void)
{
    struct sockaddr_in addr;
    char buf[64];
    int lfd = listener(&addr);
    int pipefd[2];
    if (pipe(pipefd))
        return 2;
    SHOW("close(-1)", close(-1));
    SHOW("close(9999)", close(9999));
    SHOW("recv(pipe)", recv(pipefd[0], buf, sizeof buf, MSG_DONTWAIT));
    SHOW("read(bad fd)", read(9999, buf, sizeof buf));
    SHOW("write(pipe)", write(pipefd[1], "x", 1));
    SHOW("read(pipe)", read(pipefd[0], buf, sizeof buf));
    SHOW("dup2(bad, 100)", dup2(9999, 100));
    SHOW("dup3(lfd, lfd)", dup3(lfd, lfd, 0));
    SHOW("dup2(lfd, lfd)", dup2(lfd, lfd));
    fcntl(lfd, F_SETFL, O_NONBLOCK);
    SHOW("accept4(empty listener)", accept4(lfd, NULL, NULL, SOCK_NONBLOCK));
    fcntl(lfd, F_SETFL, 0);
    SHOW("accept(bad)", accept(9999, NULL, NULL));
    SHOW("listen(bad)", listen(9999, 1));
    SHOW("setsockopt(bad len)", setsockopt(lfd, SOL_SOCKET, SO_LINGER, buf, 1));
    SHOW("setsockopt(bad fd)", setsockopt(9999, SOL_SOCKET, SO_LINGER, buf, 8));
    SHOW("fcntl(F_GETFD)", fcntl(lfd, F_GETFD));
    SHOW("fcntl(F_DUPFD bad)", fcntl(9999, F_DUPFD, 0));
    SHOW("close_range(cloexec)", close_range(200, 300, CLOSE_RANGE_CLOEXEC));
    SHOW("close_range(bad)", close_range(300, 200, 0));

    int refused = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in nowhere = addr;
    nowhere.sin_port = htons(1); /* nothing listens on port 1 here */
    SHOW("connect(refused)", connect(refused, (struct sockaddr *)&nowhere, sizeof nowhere));
    SHOW("close(refused)", close(refused));

    int client = connected(&addr);
    int server = accept(lfd, NULL, NULL);
    show("accept", server, errno);
    SHOW("recv(DONTWAIT, empty)", recv(server, buf, sizeof buf, MSG_DONTWAIT));
    SHOW("send", send(client, "hello", 5, 0));
    SHOW("recv", recv(server, buf, 2, 0));
    SHOW("recvfrom", recvfrom(server, buf, 1, 0, NULL, NULL));
    struct iovec iov = {buf, 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    SHOW("recvmsg", recvmsg(server, &msg, 0));
    SHOW("readv", readv(server, &iov, 1));
    SHOW("read(DONTWAIT empty)", recv(server, buf, 1, MSG_DONTWAIT));
    int copy = dup(server);
    show("dup", copy, errno);
    SHOW("fcntl(F_DUPFD_CLOEXEC)", fcntl(server, F_DUPFD_CLOEXEC, 50));
    SHOW("close(50)", close(50));
    SHOW("dup2(copy, 60)", dup2(copy, 60));
    SHOW("dup3(pipe, 60)", dup3(pipefd[0], 60, O_CLOEXEC)); /* closes the socket's copy */
    SHOW("close(60)", close(60));
    SHOW("close(copy)", close(copy));
    SHOW("close(server)", close(server));
    SHOW("close(server) again", close(server));
    SHOW("recv(client) EOF", recv(client, buf, sizeof buf, 0));
    FILE *f = fdopen(client, "r+");
    SHOW("fclose(fdopen socket)", fclose(f));
    SHOW("close(lfd)", close(lfd));
    return 0;
}

/* threads × connections: connect, accept, send, recv, close, in parallel. */
static struct sockaddr_in thread_addr;
static int thread_listener;
static int per_thread;

static void *thread_body(void *arg)
{
    (void)arg;
    char buf[16];
    for (int i = 0; i < per_thread; i++) {
        int c = connected(&thread_addr);
        int s = accept(thread_listener, NULL, NULL);
        if (s < 0) {
            perror("accept");
            exit(2);
        }
        if (send(c, "ping", 4, 0) != 4 || recv(s, buf, 4, MSG_WAITALL) != 4) {
            perror("ping");
            exit(2);
        }
        if (i % 2)
            close(c), close(s);
        else
            close(s), close(c);
    }
    return NULL;
}

static int mode_threads(int threads, int each)
{
    pthread_t tids[64];
    thread_listener = listener(&thread_addr);
    per_thread = each;
    if (threads > 64)
        threads = 64;
    for (int i = 0; i < threads; i++)
        pthread_create(&tids[i], NULL, thread_body, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    close(thread_listener);
    printf("done %d\n", threads * each);
    return 0;
}

/* A socket moved to the highest fd the host allows. */
static int mode_highfd(void)
{
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    struct sockaddr_in addr;
    int lfd = listener(&addr);
    int c = connected(&addr);
    int s = accept(lfd, NULL, NULL);
    int high = (int)lim.rlim_cur - 1;
    if (dup2(s, high) != high)
        return 2;
    close(s);
    send(c, "unread", 6, 0);
    usleep(20000);
    printf("high %d\n", high);
    close(high);
    close(c);
    close(lfd);
    return 0;
}

/* fork: each process logs to its own %p file.  The parent closes its copy
 * of the accepted socket at once (the child still holds it: shared); the
 * child reads 2 of the 9 bytes sent and closes: the last release, an RST. */
static int mode_fork(void)
{
    struct sockaddr_in addr;
    int lfd = listener(&addr);
    int c = connected(&addr);
    int s = accept(lfd, NULL, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        char buf[8];
        recv(s, buf, 2, MSG_WAITALL);
        usleep(20000); /* let the rest arrive */
        close(s);
        _exit(0);
    }
    close(s); /* the child still holds it */
    send(c, "hi-unread", 9, 0);
    int status;
    waitpid(pid, &status, 0);
    close(c);
    close(lfd);
    printf("child %d\n", (int)pid);
    return 0;
}

/* exec with one CLOEXEC socket holding unread data, and one inheritable. */
static int mode_exec(void)
{
    struct sockaddr_in addr;
    int lfd = listener(&addr);
    int c = connected(&addr);
    if (accept4(lfd, NULL, NULL, SOCK_CLOEXEC) < 0)
        return 2;
    send(c, "unread", 6, 0);
    usleep(20000);
    fcntl(lfd, F_SETFD, 0); /* the listener survives the exec */
    execl("/bin/true", "true", (char *)NULL);
    return 2;
}

/* A raw syscall closes a tracked socket behind the shim's back, and the fd
 * number is reused by a pipe: the shim must not report the pipe's close. */
static int mode_stale(void)
{
    struct sockaddr_in addr;
    int lfd = listener(&addr);
    int c = connected(&addr);
    int s = accept(lfd, NULL, NULL);
    syscall(SYS_close, s);
    int pipefd[2];
    if (pipe(pipefd))
        return 2;
    printf("reused %d\n", pipefd[0] == s || pipefd[1] == s);
    /* The shim's probes of the stale record fail on the pipe (ENOTSOCK);
     * the close succeeds and must leave the caller's errno alone. */
    errno = EDOM;
    int ret = close(pipefd[0]);
    printf("close of the reused fd: %d, errno %s\n", ret, strerrorname_np(errno));
    close(pipefd[1]);
    close(c);
    close(lfd);
    return 0;
}

/* A pipe received over SCM_RIGHTS: the shim asks whether it is a TCP
 * socket (it is not: ENOTSOCK inside); the recvmsg succeeded and the
 * caller's errno must be what it was. */
static int mode_scm_pipe(void)
{
    int pair[2], pipefd[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) || pipe(pipefd))
        return 2;
    char byte = 'x';
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pipefd[0], sizeof(int));
    if (sendmsg(pair[0], &msg, 0) != 1)
        return 2;
    memset(&control, 0, sizeof control);
    msg.msg_controllen = sizeof control.buf;
    errno = EDOM;
    ssize_t n = recvmsg(pair[1], &msg, 0);
    printf("recvmsg %zd, errno %s\n", n, strerrorname_np(errno));
    return 0;
}

/* A daemon that closes every fd it did not open, then opens its own file:
 * the file gets fd 3 and must never receive the shim's lines. */
static int mode_closeall(const char *path)
{
    struct sockaddr_in addr;
    int lfd = listener(&addr);
    (void)lfd;
    if (close_range(3, ~0U, 0) != 0)
        return 2;
    for (int fd = 3; fd < 1100; fd++)
        close(fd); /* the other idiom: a loop over every possible fd */
    int own = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    printf("own %d\n", own);
    if (write(own, "host\n", 5) != 5)
        return 2;
    int again = listener(&addr); /* logged after all that */
    close(again);
    close(own);
    return 0;
}

/* vfork: the child shares our memory; what it closes must not touch the
 * shim's table or log. */
static int mode_vfork(void)
{
    struct sockaddr_in addr;
    int lfd = listener(&addr);
    int c = connected(&addr);
    int s = accept(lfd, NULL, NULL);
    pid_t pid = vfork();
    if (pid == 0) {
        close(s);
        dup2(c, lfd);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("vfork child %d exited %d\n", (int)pid, WEXITSTATUS(status));
    close(s);
    close(c);
    close(lfd);
    return 0;
}

/* RSTSHIM_STACK=1: the close line names this function as the first frame. */
__attribute__((noinline)) void close_with_unread_data(int fd)
{
    close(fd);
    __asm__ volatile("" ::: "memory"); /* keep the call a call, not a tail jump */
}

static int mode_stack(void)
{
    struct sockaddr_in addr;
    int lfd = listener(&addr);
    int c = connected(&addr);
    int s = accept(lfd, NULL, NULL);
    send(c, "unread", 6, 0);
    usleep(20000);
    close_with_unread_data(s);
    close(c);
    close(lfd);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "errno"))
        return mode_errno();
    if (!strcmp(mode, "threads"))
        return mode_threads(argc > 2 ? atoi(argv[2]) : 4, argc > 3 ? atoi(argv[3]) : 100);
    if (!strcmp(mode, "highfd"))
        return mode_highfd();
    if (!strcmp(mode, "fork"))
        return mode_fork();
    if (!strcmp(mode, "exec"))
        return mode_exec();
    if (!strcmp(mode, "scm_pipe"))
        return mode_scm_pipe();
    if (!strcmp(mode, "stale"))
        return mode_stale();
    if (!strcmp(mode, "closeall") && argc > 2)
        return mode_closeall(argv[2]);
    if (!strcmp(mode, "vfork"))
        return mode_vfork();
    if (!strcmp(mode, "stack"))
        return mode_stack();
    if (!strcmp(mode, "nothing"))
        return 0;
    fprintf(stderr, "usage: calls errno|threads N M|highfd|fork|exec|stale|closeall PATH|vfork|nothing\n");
    return 2;
}
