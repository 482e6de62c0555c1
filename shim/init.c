/* Start-up and shut-down: resolving the real functions, reading the
 * configuration, adopting inherited sockets, fork handlers, and the close
 * lines of sockets still open at exit. */
#include <dirent.h>
#include <errno.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guard.h"
#include "lifecycle.h"
#include "log.h"
#include "netstat.h"
#include "process.h"
#include "real.h"
#include "stack.h"

SHIM_HIDDEN bool shim_ready;
SHIM_HIDDEN __thread int shim_depth __attribute__((tls_model("initial-exec")));
SHIM_HIDDEN struct real_functions real;

/* ---- real functions ---- */

#define REAL_ENTRY(name) {offsetof(struct real_functions, name), #name}
static const struct {
    size_t offset;
    const char *name;
} real_names[] = {
    REAL_ENTRY(socket), REAL_ENTRY(connect), REAL_ENTRY(listen), REAL_ENTRY(accept),
    REAL_ENTRY(accept4), REAL_ENTRY(close), REAL_ENTRY(close_range), REAL_ENTRY(closefrom),
    REAL_ENTRY(dup), REAL_ENTRY(dup2), REAL_ENTRY(dup3), REAL_ENTRY(fcntl), REAL_ENTRY(fcntl64),
    REAL_ENTRY(setsockopt), REAL_ENTRY(shutdown), REAL_ENTRY(recv), REAL_ENTRY(recvfrom), REAL_ENTRY(recvmsg),
    REAL_ENTRY(read), REAL_ENTRY(readv), REAL_ENTRY(__recv_chk), REAL_ENTRY(__recvfrom_chk),
    REAL_ENTRY(__read_chk), REAL_ENTRY(send), REAL_ENTRY(sendto), REAL_ENTRY(sendmsg),
    REAL_ENTRY(write), REAL_ENTRY(writev), REAL_ENTRY(fclose), REAL_ENTRY(fork),
    REAL_ENTRY(execve), REAL_ENTRY(execv), REAL_ENTRY(execvp), REAL_ENTRY(execvpe),
    REAL_ENTRY(fexecve), REAL_ENTRY(posix_spawn), REAL_ENTRY(posix_spawnp), REAL_ENTRY(_exit),
    REAL_ENTRY(_Exit), REAL_ENTRY(prctl), REAL_ENTRY(pthread_setname_np),
};

void *real_resolve_one(void **slot, const char *name)
{
    void *fn = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!fn) {
        fn = dlsym(RTLD_NEXT, name);
        __atomic_store_n(slot, fn, __ATOMIC_RELEASE);
    }
    return fn;
}

void real_resolve(void)
{
    for (size_t i = 0; i < sizeof real_names / sizeof real_names[0]; i++)
        real_resolve_one((void **)((char *)&real + real_names[i].offset), real_names[i].name);
}

/* ---- adopting sockets inherited over exec (inetd, systemd activation) ---- */

/* inetd hands one socket as fds 0, 1 and 2: one record for all three. */
struct adopted {
    ino_t inode;
    struct socket_record *rec;
};

static void adopt_one(int fd, struct adopted *seen, unsigned *count, unsigned capacity)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
        return;
    for (unsigned i = 0; i < *count; i++) {
        if (seen[i].inode == st.st_ino) {
            lifecycle_share(fd, seen[i].rec);
            return;
        }
    }
    struct socket_record *rec = lifecycle_adopt(fd);
    if (rec && *count < capacity)
        seen[(*count)++] = (struct adopted){st.st_ino, rec};
}

static void adopt_inherited_sockets(void)
{
    struct adopted seen[64];
    unsigned count = 0;
    DIR *dir = opendir("/proc/self/fd");
    if (!dir)
        return; /* no /proc (a bare container): inherited sockets stay untracked */
    int skip = dirfd(dir);
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        char *end;
        long fd = strtol(entry->d_name, &end, 10);
        if (*end || end == entry->d_name || fd == skip || fd == log_fd())
            continue;
        adopt_one((int)fd, seen, &count, sizeof seen / sizeof seen[0]);
    }
    closedir(dir);
}

/* ---- fork ---- */

/* Counted before the syscall: see process_forked_since(). */
static void before_fork(void) { __atomic_add_fetch(&process_forks_started, 1, __ATOMIC_ACQ_REL); }

/* Both processes now hold every socket: neither one's close releases it
 * alone.  Also after a failed fork: glibc runs these handlers then too. */
static void after_fork_in_parent(void)
{
    int saved = errno; /* the caller must find errno as fork left it */
    guard_reenter();
    lifecycle_mark_shared(false);
    __atomic_add_fetch(&process_forks_finished, 1, __ATOMIC_ACQ_REL);
    guard_leave();
    errno = saved;
}

static void after_fork_in_child(void)
{
    int saved = errno;
    guard_reenter();
    /* Only this thread came along: a fork other threads had under way
     * will never finish here.  Every socket created before this fork was
     * created under a smaller count than the started one. */
    __atomic_store_n(&process_forks_finished,
                     __atomic_load_n(&process_forks_started, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
    process_after_fork_in_child();
    log_after_fork_in_child(&shim_config);
    lifecycle_mark_shared(false);
    guard_leave();
    errno = saved;
}

/* ---- start and exit ---- */

__attribute__((constructor)) static void shim_start(void)
{
    guard_reenter(); /* nothing the shim does here may enter a wrapper */
    real_resolve();
    shim_pid = getpid();

    struct config_problem problems[CONFIG_MAX_PROBLEMS];
    struct config_env env = {getenv("RSTSHIM_LOG"), getenv("RSTSHIM_EVENTS"),
                             getenv("RSTSHIM_IMMEDIATE_MS"), getenv("RSTSHIM_TAG"),
                             getenv("RSTSHIM_FIX"), getenv("RSTSHIM_STACK")};
    int count = config_parse(&env, &shim_config, problems);
    log_open(&shim_config);
    if (shim_config.stack)
        stack_warm_up();
    for (int i = 0; i < count && i < CONFIG_MAX_PROBLEMS; i++)
        event_config_error(problems[i].variable, problems[i].value, problems[i].message);

    adopt_inherited_sockets();
    pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
    __atomic_store_n(&shim_ready, true, __ATOMIC_RELEASE);
    guard_leave();
}

/* Sockets still open when the process ends are released by the exit. */
void shim_release_all_at_exit(void);
void shim_release_all_at_exit(void)
{
    if (!__atomic_exchange_n(&shim_ready, false, __ATOMIC_ACQ_REL))
        return; /* already done (_exit after exit handlers, or never started) */
    guard_reenter();
    netstat_report("exit", -1, process_monotonic_ns()); /* while the listeners are still ours to name */
    struct release_set set;
    release_set_begin(&set, 0, -1, "exit", false);
    release_set_close_shared(&set);
    release_set_end(&set, true);
    guard_leave();
}

__attribute__((destructor)) static void shim_stop(void)
{
    if (shim_depth == 0)
        shim_release_all_at_exit();
}
