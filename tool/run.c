/* `rstshim [run] ... -- CMD`: run CMD with the shim preloaded.
 *
 * The command stays the parent of CMD (rather than exec'ing it) for two
 * reasons: it must print a summary of the log when CMD ends, and it must
 * behave like CMD to whoever started it -- signals sent to rstshim reach CMD,
 * and CMD's exit status becomes rstshim's. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tool.h"

struct run_opts {
    const char *log;          /* -o: RSTSHIM_LOG, NULL = inherit */
    bool flagged;             /* RSTSHIM_EVENTS=flagged */
    const char *immediate_ms; /* RSTSHIM_IMMEDIATE_MS, validated */
    const char *lib;          /* --lib: explicit library */
    char **cmd;
};

/* Log files as they were before CMD ran, so the summary covers this run
 * only even when the log is appended to (or %p matches older files). */
struct log_snapshot {
    size_t n;
    char **path;
    long long *size;
};

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
#define NFORWARDED (sizeof forwarded / sizeof forwarded[0])
static volatile sig_atomic_t child_pid;

/* ------------------------------------------------------------ options */

static void run_usage(FILE *out)
{
    fputs("usage: rstshim [run] [-o LOG] [--flagged] [--immediate-ms N] [--lib PATH] -- CMD [ARGS...]\n",
          out);
}

static int parse_run_args(int argc, char **argv, struct run_opts *o)
{
    memset(o, 0, sizeof *o);
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "--")) {
            i++;
            break;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && has_value) {
            o->log = argv[++i];
        } else if (!strncmp(a, "--output=", 9)) {
            o->log = a + 9;
        } else if (!strcmp(a, "--flagged")) {
            o->flagged = true;
        } else if (!strcmp(a, "--immediate-ms") && has_value) {
            long v;
            o->immediate_ms = argv[++i];
            if (!parse_nonneg_int(o->immediate_ms, &v) || v > 86400000) {
                warnx("--immediate-ms wants milliseconds (0..86400000), not '%s'",
                      o->immediate_ms);
                return -1;
            }
        } else if (!strcmp(a, "--lib") && has_value) {
            o->lib = argv[++i];
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            run_usage(stdout);
            exit(0);
        } else if (a[0] == '-') {
            warnx("unknown option %s (or missing value)", a);
            return -1;
        } else {
            break; /* first word of CMD, without "--" */
        }
    }
    if (i >= argc) {
        warnx("no command to run");
        return -1;
    }
    if (o->log && !*o->log) {
        warnx("-o wants a file name, 'stderr' or 'stdout'");
        return -1;
    }
    o->cmd = argv + i;
    return 0;
}

/* ----------------------------------------------------------- library */

static bool readable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, R_OK) == 0;
}

/* Beside the executable (the build tree: build/rstshim, build/librstshim.so),
 * then ../lib/rstshim (a relocated install), then the configured prefix. */
static bool find_library(char *out, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        const char *dir = dirname(exe);
        snprintf(out, len, "%s/%s", dir, RSTSHIM_LIBNAME);
        if (readable_file(out))
            return true;
        snprintf(out, len, "%s/../lib/rstshim/%s", dir, RSTSHIM_LIBNAME);
        if (readable_file(out))
            return true;
    }
    snprintf(out, len, "%s/%s", RSTSHIM_LIBDIR, RSTSHIM_LIBNAME);
    return readable_file(out);
}

/* The loader splits LD_PRELOAD on spaces and colons, and ignores it for
 * relative names in some cases: give it a clean absolute path. */
static int library_path(const struct run_opts *o, char out[PATH_MAX])
{
    char found[PATH_MAX];
    if (o->lib)
        snprintf(found, sizeof found, "%s", o->lib);
    else if (!find_library(found, sizeof found)) {
        warnx("cannot find %s beside rstshim or in %s (use --lib PATH)", RSTSHIM_LIBNAME,
              RSTSHIM_LIBDIR);
        return -1;
    }
    if (!realpath(found, out) || !readable_file(out)) {
        warnx("library %s: %s", found, strerror(errno ? errno : ENOENT));
        return -1;
    }
    if (strpbrk(out, " :\t\n")) {
        warnx("library path '%s' contains a space or ':', which LD_PRELOAD cannot carry", out);
        return -1;
    }
    return 0;
}

/* --------------------------------------------------------- environment */

/* A relative log path would be resolved by each process in its own current
 * directory (servers chdir); anchor it here. */
static char *absolute_log(const char *log)
{
    if (!strcmp(log, "stderr") || !strcmp(log, "stdout") || log[0] == '/')
        return strdup(log);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return strdup(log);
    size_t n = strlen(cwd) + strlen(log) + 2;
    char *abs = malloc(n);
    if (abs)
        snprintf(abs, n, "%s/%s", cwd, log);
    return abs;
}

static int setup_environment(const struct run_opts *o, const char *lib, const char *log)
{
    /* Prepend, keeping whatever else the user preloads; skip if present. */
    const char *old = getenv("LD_PRELOAD");
    if (old && *old && !strstr(old, lib)) {
        size_t n = strlen(lib) + strlen(old) + 2;
        char *v = malloc(n);
        if (!v)
            return -1;
        snprintf(v, n, "%s:%s", lib, old);
        setenv("LD_PRELOAD", v, 1);
        free(v);
    } else if (!old || !*old) {
        setenv("LD_PRELOAD", lib, 1);
    }
    if (log)
        setenv("RSTSHIM_LOG", log, 1);
    if (o->flagged)
        setenv("RSTSHIM_EVENTS", "flagged", 1);
    if (o->immediate_ms)
        setenv("RSTSHIM_IMMEDIATE_MS", o->immediate_ms, 1);
    return 0;
}

/* ------------------------------------------------- preload-proof checks */

/* The loader ignores LD_PRELOAD (or reads it only from system directories)
 * in "secure-execution" mode: setuid/setgid files, file capabilities. */
static void warn_secure_exec(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return;
    if (st.st_mode & (S_ISUID | S_ISGID)) {
        /* The loader is in secure mode when the exec changes our ids. */
        bool changes = ((st.st_mode & S_ISUID) && st.st_uid != geteuid()) ||
                       ((st.st_mode & S_ISGID) && st.st_gid != getegid());
        warnx("warning: %s is set%s: %s", path, (st.st_mode & S_ISUID) ? "uid" : "gid",
              changes ? "the loader ignores LD_PRELOAD for it (secure-execution mode), "
                        "nothing will be logged"
                      : "LD_PRELOAD works here only because it runs as its owner");
    } else if (getxattr(path, "security.capability", NULL, 0) > 0) {
        warnx("warning: %s has file capabilities: the loader ignores LD_PRELOAD for it "
              "(secure-execution mode), nothing will be logged",
              path);
    }
}

static void warn_if_preload_ignored(const char *cmd)
{
    char path[PATH_MAX], interp[PATH_MAX];
    if (!resolve_command(cmd, path, sizeof path))
        return; /* exec will report it */
    warn_secure_exec(path);
    enum elf_kind kind = elf_classify(path, interp, sizeof interp);
    if (kind == ELF_SCRIPT && interp[0]) {
        /* A script runs its interpreter, which is what gets the shim. */
        snprintf(path, sizeof path, "%s", interp);
        warn_secure_exec(path);
        kind = elf_classify(path, interp, sizeof interp);
    }
    if (kind == ELF_STATIC)
        warnx("warning: %s is statically linked (no PT_INTERP): LD_PRELOAD cannot work, "
              "nothing will be logged",
              path);
}

/* ------------------------------------------------------ log snapshots */

/* "%p" in RSTSHIM_LOG becomes each process's pid: glob for "*" there,
 * escaping glob characters elsewhere in the path. */
static void log_glob_pattern(const char *log, char *out, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; log[i] && j + 3 < len; i++) {
        if (log[i] == '%' && log[i + 1] == 'p') {
            out[j++] = '*';
            i++;
        } else {
            if (strchr("*?[\\", log[i]))
                out[j++] = '\\';
            out[j++] = log[i];
        }
    }
    out[j] = '\0';
}

static void snapshot_take(const char *log, struct log_snapshot *s)
{
    memset(s, 0, sizeof *s);
    char pattern[PATH_MAX * 2];
    log_glob_pattern(log, pattern, sizeof pattern);
    glob_t g;
    if (glob(pattern, GLOB_NOSORT, NULL, &g) != 0)
        return;
    s->path = calloc(g.gl_pathc, sizeof *s->path);
    s->size = calloc(g.gl_pathc, sizeof *s->size);
    for (size_t i = 0; s->path && s->size && i < g.gl_pathc; i++) {
        struct stat st;
        if (stat(g.gl_pathv[i], &st) == 0 && S_ISREG(st.st_mode)) {
            s->path[s->n] = strdup(g.gl_pathv[i]);
            s->size[s->n++] = st.st_size;
        }
    }
    globfree(&g);
}

static void snapshot_free(struct log_snapshot *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->path[i]);
    free(s->path);
    free(s->size);
}

static long long snapshot_offset(const struct log_snapshot *s, const char *path)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->path[i], path))
            return s->size[i];
    return 0;
}

/* Summary of what this run added to the log file(s). */
static void print_summary(const char *log, const struct log_snapshot *before)
{
    struct log_snapshot after;
    snapshot_take(log, &after);
    struct report *r = report_new(1, false);
    if (!r) {
        snapshot_free(&after);
        return;
    }
    for (size_t i = 0; i < after.n; i++)
        if (after.size[i] != snapshot_offset(before, after.path[i]))
            report_feed_path(r, after.path[i], snapshot_offset(before, after.path[i]));
    report_finish(r);
    if (after.n == 0) {
        warnx("no log at %s: the shim did not load in the command (see any warning "
              "above), or it logged nothing",
              log);
    } else {
        report_print_summary(r, stderr, log);
        char files[PATH_MAX];
        log_glob_pattern(log, files, sizeof files); /* %p -> '*', for the shell */
        fprintf(stderr, "rstshim: details: rstshim report %s\n", files);
    }
    report_free(r);
    snapshot_free(&after);
}

/* ---------------------------------------------------- child and signals */

/* Pass a signal on to CMD.  A signal the terminal sent (Ctrl-C: si_code
 * SI_KERNEL) already went to CMD too, as it shares our process group:
 * forwarding it would deliver it twice, and many servers treat a second
 * SIGINT as "quit now". */
static void forward_signal(int sig, siginfo_t *info, void *ctx)
{
    (void)ctx;
    int saved = errno;
    if (child_pid > 0 && !(info && info->si_code == SI_KERNEL))
        kill((pid_t)child_pid, sig);
    errno = saved;
}

static void install_forwarding(sigset_t *blocked, sigset_t *old_mask)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = forward_signal;
    sa.sa_flags = SA_SIGINFO; /* no SA_RESTART: waitpid returns EINTR, we retry */
    sigemptyset(&sa.sa_mask);
    sigemptyset(blocked);
    for (size_t i = 0; i < NFORWARDED; i++) {
        struct sigaction old;
        sigaction(forwarded[i], NULL, &old);
        /* Started with it ignored (nohup, background shell): leave it so, the
         * child inherits the same and behaves as it would without us. */
        if (old.sa_handler == SIG_IGN)
            continue;
        sigaction(forwarded[i], &sa, NULL);
        sigaddset(blocked, forwarded[i]);
    }
    /* Blocked until the child's pid is known, so none is lost in between. */
    sigprocmask(SIG_BLOCK, blocked, old_mask);
}

static void restore_signals_in_child(const sigset_t *old_mask)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (size_t i = 0; i < NFORWARDED; i++) {
        struct sigaction cur;
        sigaction(forwarded[i], NULL, &cur);
        if (cur.sa_handler != SIG_IGN)
            sigaction(forwarded[i], &dfl, NULL);
    }
    sigprocmask(SIG_SETMASK, old_mask, NULL);
}

/* fork + exec; an exec failure comes back through a CLOEXEC pipe, so it is
 * reported as "cannot run", not as the child's exit status. */
static int spawn(char **cmd, const sigset_t *old_mask, int *exec_errno)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        close(pfd[0]);
        restore_signals_in_child(old_mask);
        execvp(cmd[0], cmd);
        int e = errno;
        if (write(pfd[1], &e, sizeof e) < 0)
            _exit(EXIT_NOT_FOUND);
        _exit(EXIT_NOT_FOUND);
    }
    close(pfd[1]);
    child_pid = pid;
    *exec_errno = 0;
    ssize_t n;
    do
        n = read(pfd[0], exec_errno, sizeof *exec_errno);
    while (n < 0 && errno == EINTR);
    close(pfd[0]);
    return pid;
}

static int wait_child(pid_t pid)
{
    int status;
    for (;;) {
        pid_t w = waitpid(pid, &status, 0);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            warnx("waitpid: %s", strerror(errno));
            return 1;
        }
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status); /* as a shell reports it */
    return 1;
}

static bool log_is_file(const char *log)
{
    return log && strcmp(log, "stderr") && strcmp(log, "stdout");
}

int cmd_run(int argc, char **argv)
{
    struct run_opts o;
    if (parse_run_args(argc, argv, &o) < 0) {
        run_usage(stderr);
        return EXIT_USAGE;
    }
    char lib[PATH_MAX];
    if (library_path(&o, lib) < 0)
        return EXIT_NOT_FOUND;
    char *log = o.log ? absolute_log(o.log) : NULL;
    const char *effective_log = log ? log : getenv("RSTSHIM_LOG");
    if (setup_environment(&o, lib, log) < 0) {
        warnx("out of memory");
        free(log);
        return 1;
    }
    warn_if_preload_ignored(o.cmd[0]);

    struct log_snapshot before = {0};
    bool summary = log_is_file(effective_log);
    if (summary)
        snapshot_take(effective_log, &before);

    sigset_t blocked, old_mask;
    install_forwarding(&blocked, &old_mask);
    int exec_errno = 0;
    pid_t pid = spawn(o.cmd, &old_mask, &exec_errno);
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    int rc;
    if (pid < 0) {
        warnx("cannot start %s: %s", o.cmd[0], strerror(errno));
        rc = 1;
    } else {
        rc = wait_child(pid);
        if (exec_errno) {
            warnx("cannot run %s: %s", o.cmd[0], strerror(exec_errno));
            rc = exec_errno == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC;
        }
    }
    if (summary && !exec_errno && pid > 0)
        print_summary(effective_log, &before);
    snapshot_free(&before);
    free(log);
    return rc;
}
