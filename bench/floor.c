/*
 * bench/floor.c -- the least any preload could do for a row: the bench's
 * "floor-flagged" and "floor-all" rows.  Not part of rstshim.
 *
 * Whatever a shim does, a close of an accepted socket needs one question to
 * the kernel (is anything unread?), and with every event logged, one write(2)
 * per line (SPEC): an accept line and a close line per connection.  This
 * library does exactly that and nothing else -- no record, no verdict, no
 * JSON: fixed lines of about the real ones' size -- so the ratio it reaches
 * is what those syscalls alone cost on this boot.  The rows with the real
 * shim are read against it: the difference is rstshim's own work.
 *
 *   RSTSHIM_EVENTS=flagged  one getsockopt(SO_MEMINFO) before each close of an
 *                           accepted socket (what rstshim asks first)
 *   RSTSHIM_EVENTS=all      that, plus one write(2) of a 200-byte line at accept
 *                           and one of a 400-byte line at close, to RSTSHIM_LOG
 *
 * read() is wrapped too, as a bare jump to the real one: any shim that sees
 * the bytes a socket's owner read must wrap it, so on the untracked rows
 * (a pipe, a file) this is the price of interposing read and close at all.
 *
 * Single-threaded hosts only (srv, an nginx worker): the table is a plain
 * byte array.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FLOOR_MAX_FD 65536

static int (*real_close)(int);
static ssize_t (*real_read)(int, void *, size_t);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static unsigned char accepted[FLOOR_MAX_FD];
static int log_fd = -1;
static char accept_line[200], close_line[400];

/* Also called by the wrappers when another library's constructor calls
 * them before ours ran. */
static void resolve(void)
{
    real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    real_read = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    real_accept = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    real_accept4 =
        (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
}

__attribute__((constructor)) static void floor_init(void)
{
    resolve();
    const char *events = getenv("RSTSHIM_EVENTS"), *path = getenv("RSTSHIM_LOG");
    if (events && strcmp(events, "all") == 0 && path)
        log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    memset(accept_line, 'a', sizeof accept_line);
    accept_line[sizeof accept_line - 1] = '\n';
    memset(close_line, 'c', sizeof close_line);
    close_line[sizeof close_line - 1] = '\n';
}

static int after_accept(int fd)
{
    if (fd >= 0 && fd < FLOOR_MAX_FD) {
        int saved = errno;
        accepted[fd] = 1;
        if (log_fd >= 0 && write(log_fd, accept_line, sizeof accept_line) < 0)
            log_fd = -1;
        errno = saved;
    }
    return fd;
}

__attribute__((visibility("default"))) int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    if (!real_accept)
        resolve();
    return after_accept(real_accept(fd, addr, len));
}

__attribute__((visibility("default"))) int accept4(int fd, struct sockaddr *addr,
                                                   socklen_t *len, int flags)
{
    if (!real_accept4)
        resolve();
    return after_accept(real_accept4(fd, addr, len, flags));
}

__attribute__((visibility("default"))) ssize_t read(int fd, void *buf, size_t len)
{
    if (!real_read)
        resolve();
    return real_read(fd, buf, len);
}

__attribute__((visibility("default"))) int close(int fd)
{
    if (!real_close)
        resolve();
    if (fd < 0 || fd >= FLOOR_MAX_FD || !accepted[fd])
        return real_close(fd);
    accepted[fd] = 0;
    /* The probe may fail (the fd was reused for a file behind our back) and
     * must not leave its errno to a close that succeeds. */
    int saved = errno;
    unsigned int meminfo[SK_MEMINFO_VARS];
    socklen_t len = sizeof meminfo;
    getsockopt(fd, SOL_SOCKET, SO_MEMINFO, meminfo, &len);
    errno = saved;
    int ret = real_close(fd);
    saved = errno;
    if (log_fd >= 0 && write(log_fd, close_line, sizeof close_line) < 0)
        log_fd = -1;
    errno = saved;
    return ret;
}
