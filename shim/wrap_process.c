/* Process-level releases: exec (CLOEXEC sockets), _exit, spawn and vfork.
 * fork itself is handled by pthread_atfork handlers (shim/init.c), which
 * also run for the forks other libraries make. */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "guard.h"
#include "lifecycle.h"
#include "process.h"
#include "real.h"

void shim_release_all_at_exit(void);

/* ---- exec ---- */

/* exec never returns on success, so the close lines of the CLOEXEC sockets
 * are written before it.  When the path cannot be executed, exec will fail
 * and nothing is said; when it fails anyway, an exec_failed line follows
 * and the sockets stay tracked. */
static void exec_begin(struct release_set *set, const char *path)
{
    set->items = NULL;
    set->count = 0;
    if (!guard_enter())
        return;
    if (!path || access(path, X_OK) == 0) {
        release_set_begin(set, 0, -1, "exec", true);
        release_set_write_now(set);
    }
    guard_leave();
}

static void exec_failed(struct release_set *set, int err)
{
    if (!set->count)
        return;
    guard_reenter();
    release_set_end(set, false);
    event_exec_failed(err);
    guard_leave();
    errno = err;
}

/* Path search (execvp): the shim does not repeat it; NULL skips the check. */
static const char *checkable_path(const char *file)
{
    return file && strchr(file, '/') ? file : NULL;
}

SHIM_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    struct release_set set;
    exec_begin(&set, path);
    int ret = REAL(execve)(path, argv, envp);
    exec_failed(&set, errno);
    return ret;
}

SHIM_EXPORT int execv(const char *path, char *const argv[])
{
    struct release_set set;
    exec_begin(&set, path);
    int ret = REAL(execv)(path, argv);
    exec_failed(&set, errno);
    return ret;
}

SHIM_EXPORT int execvp(const char *file, char *const argv[])
{
    struct release_set set;
    exec_begin(&set, checkable_path(file));
    int ret = REAL(execvp)(file, argv);
    exec_failed(&set, errno);
    return ret;
}

SHIM_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    struct release_set set;
    exec_begin(&set, checkable_path(file));
    int ret = REAL(execvpe)(file, argv, envp);
    exec_failed(&set, errno);
    return ret;
}

SHIM_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    struct release_set set;
    exec_begin(&set, NULL);
    int ret = REAL(fexecve)(fd, argv, envp);
    exec_failed(&set, errno);
    return ret;
}

/* execl, execlp, execle: the variadic arguments become an argv array. */
static int count_args(const char *arg0, va_list ap)
{
    int count = 1;
    if (!arg0)
        return 0;
    while (va_arg(ap, const char *))
        count++;
    return count;
}

/* Fills argv[0..count] and consumes the terminating NULL, so that execle's
 * envp is the next argument. */
static void fill_args(char **argv, const char *arg0, int count, va_list ap)
{
    argv[0] = (char *)arg0;
    for (int i = 1; i < count; i++)
        argv[i] = va_arg(ap, char *);
    if (count)
        (void)va_arg(ap, char *);
    argv[count] = NULL;
}

/* Declares `char *argv[]` (sized in a first pass) from the arguments after
 * arg0, and leaves `ap` started just past their NULL: the caller ends it. */
#define ARGV_FROM_LIST(argv, arg0, ap)                                                             \
    va_start(ap, arg0);                                                                            \
    int argc_ = count_args(arg0, ap);                                                              \
    va_end(ap);                                                                                    \
    char *argv[argc_ + 1];                                                                         \
    va_start(ap, arg0);                                                                            \
    fill_args(argv, arg0, argc_, ap)

SHIM_EXPORT int execl(const char *path, const char *arg0, ...)
{
    va_list ap;
    ARGV_FROM_LIST(argv, arg0, ap);
    va_end(ap);
    return execv(path, argv);
}

SHIM_EXPORT int execlp(const char *file, const char *arg0, ...)
{
    va_list ap;
    ARGV_FROM_LIST(argv, arg0, ap);
    va_end(ap);
    return execvp(file, argv);
}

SHIM_EXPORT int execle(const char *path, const char *arg0, ...)
{
    va_list ap;
    ARGV_FROM_LIST(argv, arg0, ap);
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    return execve(path, argv, envp);
}

/* ---- spawn: the child gets every socket without FD_CLOEXEC ---- */

static void after_spawn(int ret)
{
    if (ret != 0 || !guard_enter())
        return;
    int saved = errno;
    lifecycle_mark_shared(true);
    guard_leave();
    errno = saved;
}

SHIM_EXPORT int posix_spawn(pid_t *pid, const char *path,
                            const posix_spawn_file_actions_t *actions,
                            const posix_spawnattr_t *attr, char *const argv[],
                            char *const envp[])
{
    int ret = REAL(posix_spawn)(pid, path, actions, attr, argv, envp);
    after_spawn(ret);
    return ret;
}

SHIM_EXPORT int posix_spawnp(pid_t *pid, const char *file,
                             const posix_spawn_file_actions_t *actions,
                             const posix_spawnattr_t *attr, char *const argv[],
                             char *const envp[])
{
    int ret = REAL(posix_spawnp)(pid, file, actions, attr, argv, envp);
    after_spawn(ret);
    return ret;
}

/* ---- vfork (the assembly half is shim/vfork.S) ---- */

SHIM_HIDDEN pid_t shim_vfork_child(void);
SHIM_HIDDEN pid_t shim_vfork_parent(pid_t child);
SHIM_HIDDEN pid_t shim_vfork_failed(long negative_errno);

pid_t shim_vfork_child(void)
{
    shim_depth++; /* the parent's thread-local, shared: released by the parent */
    return 0;
}

pid_t shim_vfork_parent(pid_t child)
{
    shim_depth--;
    /* The child has exec'd or exited by now; if it exec'd, it holds every
     * socket that was not FD_CLOEXEC. */
    after_spawn(0);
    return child;
}

pid_t shim_vfork_failed(long negative_errno)
{
    errno = (int)-negative_errno;
    return -1;
}

/* ---- _exit: no exit handlers run, so the sockets are reported here ---- */

SHIM_EXPORT void _exit(int status)
{
    if (guard_open())
        shim_release_all_at_exit();
    REAL(_exit)(status);
    __builtin_unreachable();
}

SHIM_EXPORT void _Exit(int status)
{
    if (guard_open())
        shim_release_all_at_exit();
    REAL(_Exit)(status);
    __builtin_unreachable();
}

/* ---- thread names: lines carry comm, cached per thread (shim/process.c) ---- */

SHIM_EXPORT int prctl(int option, ...)
{
    /* prctl takes up to four more arguments, unsigned long each; reading
     * ones the caller did not pass is what libc's own prctl does too. */
    va_list args;
    va_start(args, option);
    unsigned long arg2 = va_arg(args, unsigned long), arg3 = va_arg(args, unsigned long),
                  arg4 = va_arg(args, unsigned long), arg5 = va_arg(args, unsigned long);
    va_end(args);
    int ret = REAL(prctl)(option, arg2, arg3, arg4, arg5);
    if (option == PR_SET_NAME && ret == 0)
        process_comm_renamed(); /* changes no errno */
    return ret;
}

SHIM_EXPORT int pthread_setname_np(pthread_t thread, const char *name)
{
    int ret = REAL(pthread_setname_np)(thread, name);
    if (ret == 0)
        process_comm_renamed();
    return ret;
}
