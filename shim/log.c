/* The log writer: opening the target, and one write(2) per line.
 *
 * Never stdio: the host may have its own FILE buffers on the same fd, and
 * stdio takes locks a signal handler must not wait on. */
#include "log.h"

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "guard.h"
#include "real.h"

static int log_target_fd = -1;
SHIM_HIDDEN int log_owned_fd = -1; /* the file the shim opened; -1 for stderr/stdout */
static bool log_quiet = true;
static bool log_flagged_only;
static bool log_is_pipe; /* a pipe or socket: a gone reader must not SIGPIPE the host */

static ssize_t write_without_sigpipe(int fd, const char *data, size_t len);

/* Says, once per process, why the shim stopped logging.  stderr may be
 * the very pipe that broke: SIGPIPE is held back here too. */
static void say_going_quiet(const char *what, const char *path, int err)
{
    char message[512];
    int n = snprintf(message, sizeof message, "rstshim: %s %s: %s; rstshim logs nothing more\n",
                     what, path, strerror(err));
    if (n > (int)sizeof message - 1)
        n = (int)sizeof message - 1;
    if (n > 0)
        (void)!write_without_sigpipe(STDERR_FILENO, message, (size_t)n);
}

static void remember_fd_kind(int fd)
{
    struct stat st;
    log_is_pipe = fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

/* The log file must not take an fd number the host expects to get (servers
 * and tests rely on socket() returning the lowest free fd), so it moves to
 * the highest free fd at or below 1023 (below the soft limit): high enough
 * to be out of the way, low enough not to grow the kernel's fd table. */
#define LOG_FD_CEILING 1023
#define LOG_FD_TRIES 64

static int move_out_of_the_way(int fd)
{
    struct rlimit limit;
    long top = LOG_FD_CEILING;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
        (long)limit.rlim_cur - 1 < top)
        top = (long)limit.rlim_cur - 1;
    for (long target = top; target > fd && target > top - LOG_FD_TRIES; target--) {
        if (REAL(fcntl)((int)target, F_GETFD) >= 0 || errno != EBADF)
            continue; /* taken */
        int moved = REAL(dup3)(fd, (int)target, O_CLOEXEC);
        if (moved >= 0) {
            REAL(close)(fd);
            return moved;
        }
    }
    return fd; /* no room up there: keep it where it is */
}

static void open_file(const char *pattern)
{
    char path[CONFIG_PATH_MAX + 32];
    if (config_expand_path(pattern, (long)getpid(), path, sizeof path) != 0) {
        say_going_quiet("cannot open log", pattern, ENAMETOOLONG);
        log_quiet = true;
        return;
    }
    /* O_NOFOLLOW: a symlink planted at the log path is refused, not
     * followed.  O_NONBLOCK: a FIFO with no reader fails at once (ENXIO)
     * instead of blocking the host; it is cleared again after the open. */
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK,
                  0600);
    if (fd < 0) {
        say_going_quiet("cannot open log", path, errno);
        log_quiet = true;
        return;
    }
    int flags = REAL(fcntl)(fd, F_GETFL);
    if (flags >= 0)
        REAL(fcntl)(fd, F_SETFL, flags & ~O_NONBLOCK);
    log_target_fd = move_out_of_the_way(fd);
    log_owned_fd = log_target_fd;
    remember_fd_kind(log_target_fd);
}

/* A log file is created with its first line: a shell, `timeout` or any
 * other process the preload passes through leaves no empty %p file. */
enum { FILE_PENDING, FILE_OPENING, FILE_OPEN };
static int file_state = FILE_OPEN;
static const char *file_pattern;

static void open_file_once(void)
{
    int expected = FILE_PENDING;
    if (__atomic_compare_exchange_n(&file_state, &expected, FILE_OPENING, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        open_file(file_pattern);
        __atomic_store_n(&file_state, FILE_OPEN, __ATOMIC_RELEASE);
        return;
    }
    /* Another thread is opening it: a few syscalls' time, bounded anyway. */
    for (int i = 0; i < 100000 && __atomic_load_n(&file_state, __ATOMIC_ACQUIRE) == FILE_OPENING;
         i++)
        sched_yield();
}

static void use_fd(int fd)
{
    log_target_fd = fd;
    log_quiet = false;
    remember_fd_kind(fd);
}

void log_open(const struct config *cfg)
{
    log_flagged_only = cfg->flagged_only;
    switch (cfg->log_target) {
    case LOG_TO_STDERR:
        use_fd(STDERR_FILENO);
        break;
    case LOG_TO_STDOUT:
        use_fd(STDOUT_FILENO);
        break;
    case LOG_TO_FILE:
        file_pattern = cfg->log_path;
        log_quiet = false;
        file_state = FILE_PENDING;
        break;
    }
}

void log_after_fork_in_child(const struct config *cfg)
{
    if (cfg->log_target != LOG_TO_FILE || log_quiet)
        return;
    if (file_state != FILE_OPEN) {
        file_state = FILE_PENDING; /* a parent thread was opening it: start over */
        return;
    }
    if (!strstr(cfg->log_path, "%p"))
        return; /* one file for all: O_APPEND keeps the lines whole */
    REAL(close)(log_target_fd);
    log_target_fd = -1;
    log_owned_fd = -1;
    file_state = FILE_PENDING; /* the child's own %p file, with its first line */
}

void log_move_away_from(int fd)
{
    if (!log_owns_fd(fd))
        return;
    int moved = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, fd > 64 ? fd / 2 : 3);
    if (moved >= 0) {
        log_target_fd = log_owned_fd = moved;
        REAL(close)(fd);
    }
}

bool log_wants(bool flagged)
{
    return !log_quiet && (flagged || !log_flagged_only);
}

int log_fd(void) { return log_quiet || file_state != FILE_OPEN ? -1 : log_target_fd; }

/* write(2) with SIGPIPE held back: a reader that went away must cost the
 * host nothing but our silence.  Only pipes and sockets pay the extra calls. */
static ssize_t write_without_sigpipe(int fd, const char *data, size_t len)
{
    sigset_t pipe_only, old;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    sigset_t pending;
    bool was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    ssize_t n = REAL(write)(fd, data, len);
    if (n < 0 && errno == EPIPE && !was_pending) {
        int saved = errno;
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_only, NULL, &zero); /* swallow the SIGPIPE we caused */
        errno = saved;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return n;
}

void log_write_line(const char *data, size_t len)
{
    if (SHIM_UNLIKELY(__atomic_load_n(&file_state, __ATOMIC_ACQUIRE) != FILE_OPEN))
        open_file_once();
    if (log_quiet)
        return;
    int fd = log_target_fd;
    ssize_t n;
    do
        n = log_is_pipe ? write_without_sigpipe(fd, data, len) : REAL(write)(fd, data, len);
    while (n < 0 && errno == EINTR);
    if (n < 0 || (size_t)n != len) {
        int err = n < 0 ? errno : ENOSPC;
        /* One process, one message: whichever thread fails first says it. */
        if (!__atomic_exchange_n(&log_quiet, true, __ATOMIC_ACQ_REL)) {
            char name[32];
            snprintf(name, sizeof name, "fd %d", fd);
            say_going_quiet("cannot write log", name, err);
        }
    }
}
