/* bench/bench.c -- `make bench`: what the shim costs, measured side by side.
 *
 *   bench [--quick] [--cpu N] [--slice-ms N] [--only NAME] [--log TARGET] BINDIR SHIM WORKDIR
 *   bench load churn|keepalive PORT SECONDS      (load for a profiler)
 *
 * Method (see bench/README.md): this VM's speed drifts by up to 50 % in
 * phases of a few hundred milliseconds, so two whole runs cannot be
 * compared.  For each row the bench starts a bare server and a shimmed one
 * (or two bare ones: the noise floor) and keeps both running; its own load
 * generator alternates between them in slices of --slice-ms (15 ms):
 * bare, test, bare, test, ..., bare.  Each test slice's throughput is divided
 * by the mean of the two bare slices around it; the row reports the median
 * of those ratios and their middle half (p25-p75).  Client and servers are
 * pinned to one CPU; as root, each row runs in a private network namespace
 * (its own TIME_WAIT table, nothing left behind).  Server CPU per operation
 * comes from /proc/PID/schedstat, peak RSS from VmHWM.
 *
 * Every loop here is bounded (slice counts, time caps, a watchdog alarm) and
 * every process started is ended by its pid. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* ------------------------------------------------------------------ options */

static struct {
    bool quick;
    int cpu;             /* -1: the last CPU we may run on */
    uint64_t slice_ns;
    const char *only;    /* run only rows whose workload name contains this */
    const char *log;     /* --log: where shimmed servers log instead of a file per row */
    char bindir[PATH_MAX], shim[PATH_MAX], workdir[PATH_MAX];
    char floor_lib[PATH_MAX + 16]; /* BINDIR/libfloor.so */
    bool netns;          /* rows run in private network namespaces */
    char netns_why[160]; /* why not */
} opt = {.cpu = -1, .slice_ns = 15000000};

/* One "bench: ..." line on stderr. */
static void vsay(const char *fmt, va_list ap)
{
    fprintf(stderr, "bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
    exit(1);
}

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------- processes we started */

#define MAX_LIVE 64
static volatile pid_t live[MAX_LIVE];

static void live_add(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == 0) {
            live[i] = pid;
            return;
        }
}

static void live_del(pid_t pid)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == pid)
            live[i] = 0;
}

static void kill_live(void)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] > 0)
            kill(live[i], SIGKILL);
}

static void on_fatal_signal(int sig)
{
    kill_live();
    signal(sig, SIG_DFL);
    raise(sig);
}

static volatile sig_atomic_t alarmed;
static void on_alarm(int sig) { (void)sig; alarmed = 1; }

/* Waits for pid up to ms; SIGKILL (by pid) after that.  Returns its status. */
static int reap(pid_t pid, int ms)
{
    int status = 0;
    if (pid <= 0)
        return 0;
    for (int i = 0; i < ms; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) {
            live_del(pid);
            return status;
        }
        usleep(1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    live_del(pid);
    return status;
}

/* A process that is not our child (an nginx worker): gone within ms? */
static void ensure_gone(pid_t pid, int ms)
{
    if (pid <= 0)
        return;
    for (int i = 0; i < ms; i++) {
        if (kill(pid, 0) != 0 && errno == ESRCH)
            break;
        while (waitpid(-1, NULL, WNOHANG) > 0) /* orphans come to us: subreaper */
            ;
        usleep(1000);
    }
    if (kill(pid, 0) == 0) {
        kill(pid, SIGKILL);
        usleep(10000);
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    live_del(pid);
}

/* -------------------------------------------------------------- /proc */

static ssize_t slurp(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t have = 0;
    for (int i = 0; i < 64 && have < size - 1; i++) {
        ssize_t n = read(fd, buf + have, size - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    close(fd);
    buf[have] = 0;
    return (ssize_t)have;
}

static uint64_t proc_cpu_ns(pid_t pid)
{
    char path[64], buf[128];
    snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
    if (slurp(path, buf, sizeof buf) <= 0)
        return 0;
    return strtoull(buf, NULL, 10);
}

static long proc_hwm_kb(pid_t pid)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (slurp(path, buf, sizeof buf) <= 0)
        return 0;
    char *p = strstr(buf, "VmHWM:");
    return p ? atol(p + 6) : 0;
}

static bool proc_maps_has(pid_t pid, const char *what)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char line[512];
    bool found = false;
    /* what: the start of a mapped file's name (its last path component), so
     * that a directory called after the library does not count. */
    for (int i = 0; i < 100000 && !found && fgets(line, sizeof line, f); i++) {
        const char *name = strrchr(line, '/');
        found = name && strncmp(name + 1, what, strlen(what)) == 0;
    }
    fclose(f);
    return found;
}

static int proc_children(pid_t pid, pid_t *out, int max)
{
    char path[80], buf[512];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    if (slurp(path, buf, sizeof buf) < 0)
        return 0;
    int n = 0;
    char *p = buf;
    while (n < max) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        out[n++] = (pid_t)v;
        p = end;
    }
    return n;
}

/* ---------------------------------------------------------------- netns */

/* A fresh network namespace with lo up: each row gets its own TIME_WAIT
 * table, and the previous row's sockets die with its namespace. */
static bool enter_private_netns(void)
{
    if (!opt.netns)
        return false;
    if (unshare(CLONE_NEWNET) != 0) {
        snprintf(opt.netns_why, sizeof opt.netns_why, "unshare(CLONE_NEWNET): %s", strerror(errno));
        opt.netns = false;
        return false;
    }
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
        die("lo: %s", strerror(errno));
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
        die("lo up: %s", strerror(errno));
    close(s);
    return true;
}

/* ------------------------------------------------------------- targets */

/* FLOOR_*: bench/floor.c, the least any preload could do (one probe per
 * close; with all, one write per line): what this boot charges for that
 * alone, read against the shim's rows. */
enum cfg { BARE, FLAGGED, ALL, STRACE, FLOOR_FLAGGED, FLOOR_ALL };
static const char *const cfg_name[] = {"bare", "flagged", "all", "strace", "floor-flagged",
                                       "floor-all"};

enum kind { K_SRV, K_FDOPS, K_NGINX };

#define NCONN 50
#define HBUF 4096
#define FDOPS_PER_SIDE 4
struct hconn {
    int fd;
    int state;
    uint32_t events; /* registered with epoll */
    size_t got, need;
    char buf[HBUF];
};
enum { H_CLOSED, H_CONNECTING, H_WAIT, H_IDLE };

struct target {
    enum kind kind;
    enum cfg cfg;
    pid_t pid;        /* what we forked: srv, strace, fdops, nginx master */
    pid_t server;     /* the server: srv (also under strace), fdops, nginx master */
    pid_t workers[8]; /* nginx workers */
    int nworkers;
    int port;
    /* fdops: several workers per side, used in turn, so that no single process's
     * luck (where its pages landed) decides a row of 200-ns operations */
    pid_t fd_pid[FDOPS_PER_SIDE];
    int fd_to[FDOPS_PER_SIDE], fd_from[FDOPS_PER_SIDE]; /* their stdin and stdout */
    int nfd, next;
    int kafd;         /* keep-alive: the one connection */
    char log[PATH_MAX];
    char dir[PATH_MAX]; /* nginx: its prefix */
    /* HTTP client state (nginx) */
    int ep;
    bool close_mode;
    struct hconn *c;
};

static bool shimmed(enum cfg c) { return c == FLAGGED || c == ALL; }
static bool floored(enum cfg c) { return c == FLOOR_FLAGGED || c == FLOOR_ALL; }

/* How that library's file name starts, in /proc/PID/maps. */
static const char *lib_mark(enum cfg c) { return floored(c) ? "libfloor" : "librstshim"; }

/* The library a test server runs under, or NULL. */
static const char *preload_of(enum cfg c)
{
    return shimmed(c) ? opt.shim : floored(c) ? opt.floor_lib : NULL;
}

/* In the child: the environment of a bare or shimmed host. */
static void child_env(const struct target *t)
{
    unsetenv("LD_PRELOAD");
    unsetenv("RSTSHIM_LOG");
    unsetenv("RSTSHIM_EVENTS");
    unsetenv("RSTSHIM_TAG");
    unsetenv("RSTSHIM_IMMEDIATE_MS");
    if (preload_of(t->cfg)) {
        setenv("LD_PRELOAD", preload_of(t->cfg), 1);
        setenv("RSTSHIM_LOG", opt.log ? opt.log : t->log, 1);
        setenv("RSTSHIM_EVENTS", t->cfg == ALL || t->cfg == FLOOR_ALL ? "all" : "flagged", 1);
    }
}

static pid_t spawn(const struct target *t, char *const argv[], int in_fd, int out_fd, int keep_fd)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        dup2(in_fd >= 0 ? in_fd : null, 0);
        dup2(out_fd >= 0 ? out_fd : null, 1);
        if (keep_fd >= 0)
            fcntl(keep_fd, F_SETFD, 0);
        child_env(t);
        execvp(argv[0], argv);
        fprintf(stderr, "bench: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    live_add(pid);
    return pid;
}

static void log_path(struct target *t, const char *row, int side)
{
    if (snprintf(t->log, sizeof t->log, "%s/%s-%s-%d.jsonl", opt.workdir, row, cfg_name[t->cfg],
                 side) >= (int)sizeof t->log)
        die("path too long: %s", opt.workdir);
    unlink(t->log);
}

/* Reads "PORT PID\n" from a ready pipe, waiting at most 10 s. */
static int read_ready(int fd, int *port, pid_t *pid)
{
    char buf[64];
    size_t have = 0;
    uint64_t end = now_ns() + 10000000000ull;
    while (have < sizeof buf - 1 && now_ns() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0)
            continue;
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = 0;
        if (strchr(buf, '\n')) {
            int p2;
            if (sscanf(buf, "%d %d", port, &p2) != 2)
                return -1;
            *pid = (pid_t)p2;
            return 0;
        }
    }
    return -1;
}

static int start_srv(struct target *t, const char *mode)
{
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0)
        return -1;
    char srv[PATH_MAX + 8], fdarg[16];
    snprintf(srv, sizeof srv, "%s/srv", opt.bindir);
    snprintf(fdarg, sizeof fdarg, "%d", ready[1]);
    char *bare_argv[] = {srv, (char *)mode, fdarg, NULL};
    char *strace_argv[] = {"strace", "-f", "-e", "trace=network,close", "-o", "/dev/null",
                           srv, (char *)mode, fdarg, NULL};
    t->kind = K_SRV;
    t->pid = spawn(t, t->cfg == STRACE ? strace_argv : bare_argv, -1, -1, ready[1]);
    close(ready[1]);
    int rc = read_ready(ready[0], &t->port, &t->server);
    close(ready[0]);
    if (rc != 0)
        return -1;
    if (t->server != t->pid)
        live_add(t->server);
    return 0;
}

static int start_fdops(struct target *t, const char *file)
{
    char prog[PATH_MAX + 8];
    snprintf(prog, sizeof prog, "%s/fdops", opt.bindir);
    char *argv[] = {prog, (char *)file, NULL};
    t->kind = K_FDOPS;
    for (int w = 0; w < FDOPS_PER_SIDE; w++) {
        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) != 0)
            return -1;
        if (pipe2(out, O_CLOEXEC) != 0) {
            close(in[0]);
            close(in[1]);
            return -1;
        }
        t->fd_pid[w] = spawn(t, argv, in[0], out[1], -1);
        close(in[0]);
        close(out[1]);
        t->fd_to[w] = in[1];
        t->fd_from[w] = out[0];
        t->nfd = w + 1;
    }
    t->pid = t->server = t->fd_pid[0];
    return 0;
}

static int fdops_slice_kind(struct target *t, char kind, uint64_t slice, uint64_t *ops,
                            uint64_t *elapsed);

/* Waits until every worker answers: it has loaded (the shim, if any) and runs. */
static int fdops_sync(struct target *t)
{
    uint64_t ops, elapsed;
    int rc = 0;
    alarm(10);
    for (int w = 0; w < t->nfd && rc == 0; w++)
        rc = fdops_slice_kind(t, 'P', 1000, &ops, &elapsed);
    alarm(0);
    return rc;
}

static int connect_to(int port, bool nonblock)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (s < 0)
        return -1;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&sin, sizeof sin) != 0 && errno != EINPROGRESS) {
        close(s);
        return -1;
    }
    return s;
}

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sin;
    int port = -1;
    if (s >= 0 && bind(s, (struct sockaddr *)&sin, sizeof sin) == 0 &&
        getsockname(s, (struct sockaddr *)&sin, &len) == 0)
        port = ntohs(sin.sin_port);
    if (s >= 0)
        close(s);
    return port;
}

static const char *nginx_bin(void)
{
    static const char *const paths[] = {"/usr/sbin/nginx", "/usr/local/sbin/nginx",
                                        "/usr/local/nginx/sbin/nginx"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int rc = write_all(fd, text, strlen(text));
    close(fd);
    return rc;
}

#define NGINX_FILE_BYTES 1024

/* nginx with a config of its own in a temp dir, on 127.0.0.1:port. */
static int start_nginx(struct target *t, const char *row, int side)
{
    snprintf(t->dir, sizeof t->dir, "/tmp/rstshim-bench-%s-%d-XXXXXX", row, side);
    if (!mkdtemp(t->dir))
        return -1;
    chmod(t->dir, 0755);
    char path[PATH_MAX + 64], conf[8192];
    const char *subdirs[] = {"www", "tmp", "logs"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", t->dir, subdirs[i]);
        mkdir(path, 0755);
    }
    char body[NGINX_FILE_BYTES + 1];
    memset(body, 'x', NGINX_FILE_BYTES);
    body[NGINX_FILE_BYTES - 1] = '\n';
    body[NGINX_FILE_BYTES] = 0;
    snprintf(path, sizeof path, "%s/www/small.html", t->dir);
    if (write_text(path, body) != 0)
        return -1;
    t->port = opt.netns ? 18080 + side : free_port();
    const char *d = t->dir;
    int clen = snprintf(conf, sizeof conf,
             "daemon off;\nmaster_process on;\nworker_processes 1;\n%s"
             "pid %s/nginx.pid;\nerror_log %s/logs/error.log warn;\n"
             "events { worker_connections 1024; }\n"
             "http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n"
             "  keepalive_timeout 300s;\n  keepalive_requests 100000000;\n"
             "  types { text/html html; }\n  default_type application/octet-stream;\n"
             "  client_body_temp_path %s/tmp/body;\n  proxy_temp_path %s/tmp/proxy;\n"
             "  fastcgi_temp_path %s/tmp/fastcgi;\n  uwsgi_temp_path %s/tmp/uwsgi;\n"
             "  scgi_temp_path %s/tmp/scgi;\n"
             "  server {\n    listen 127.0.0.1:%d;\n    root %s/www;\n"
             "    location / { }\n  }\n}\n",
             geteuid() == 0 ? "user root;\n" : "", d, d, d, d, d, d, d, t->port, d);
    if (clen >= (int)sizeof conf)
        return -1;
    snprintf(path, sizeof path, "%s/nginx.conf", t->dir);
    if (write_text(path, conf) != 0)
        return -1;
    char errlog[PATH_MAX + 32], prefix[PATH_MAX + 2];
    snprintf(errlog, sizeof errlog, "%s/logs/error.log", t->dir);
    snprintf(prefix, sizeof prefix, "%s/", t->dir);
    char *argv[] = {(char *)nginx_bin(), "-p", prefix, "-e", errlog, "-c", path, NULL};
    t->kind = K_NGINX;
    t->pid = t->server = spawn(t, argv, -1, -1, -1);
    /* Ready: a worker exists and the port answers. */
    for (int i = 0; i < 500; i++) {
        usleep(10000);
        int st;
        if (waitpid(t->pid, &st, WNOHANG) == t->pid) {
            live_del(t->pid);
            t->pid = t->server = 0; /* reaped: its pid is no longer ours */
            say("nginx exited at start; see %s", errlog);
            return -1;
        }
        t->nworkers = proc_children(t->pid, t->workers, 8);
        if (t->nworkers < 1)
            continue;
        int s = connect_to(t->port, false);
        if (s >= 0) {
            close(s);
            for (int w = 0; w < t->nworkers; w++)
                live_add(t->workers[w]);
            return 0;
        }
    }
    return -1;
}

static void http_close_all(struct target *t);

static void stop_target(struct target *t)
{
    if (t->kafd >= 0)
        close(t->kafd);
    t->kafd = -1;
    if (t->kind == K_NGINX)
        http_close_all(t);
    if (t->kind == K_FDOPS) {
        for (int w = 0; w < t->nfd; w++) {
            (void)!write(t->fd_to[w], "Q\n", 2);
            close(t->fd_to[w]);
            close(t->fd_from[w]);
        }
        for (int w = 0; w < t->nfd; w++)
            reap(t->fd_pid[w], 2000);
        t->nfd = 0;
        return;
    }
    if (t->pid <= 0)
        return;
    if (t->server > 0 && t->server != t->pid) { /* srv under strace: end it, strace follows */
        kill(t->server, SIGTERM);
        ensure_gone(t->server, 3000);
    }
    kill(t->pid, SIGTERM);
    reap(t->pid, 5000);
    for (int w = 0; w < t->nworkers; w++)
        ensure_gone(t->workers[w], 3000);
    t->pid = 0;
}

static int cpu_pids(const struct target *t, pid_t *out)
{
    int n = 0;
    if (t->kind == K_FDOPS) {
        for (int w = 0; w < t->nfd; w++)
            out[n++] = t->fd_pid[w];
        return n;
    }
    out[n++] = t->server;
    if (t->cfg == STRACE && t->pid != t->server)
        out[n++] = t->pid; /* the tracer's time is what strace costs */
    for (int w = 0; w < t->nworkers; w++)
        out[n++] = t->workers[w];
    return n;
}

static uint64_t target_cpu_ns(const struct target *t)
{
    pid_t p[12];
    int n = cpu_pids(t, p);
    uint64_t sum = 0;
    for (int i = 0; i < n; i++)
        sum += proc_cpu_ns(p[i]);
    return sum;
}

/* Peak RSS of the serving process (nginx: the largest worker). */
static long target_hwm_kb(const struct target *t)
{
    if (t->nworkers == 0 && t->kind != K_FDOPS)
        return proc_hwm_kb(t->server);
    long max = 0;
    int n = t->kind == K_FDOPS ? t->nfd : t->nworkers;
    for (int w = 0; w < n; w++) {
        long v = proc_hwm_kb(t->kind == K_FDOPS ? t->fd_pid[w] : t->workers[w]);
        if (v > max)
            max = v;
    }
    return max;
}

/* 1: every serving process has a library whose path contains name loaded;
 * 0: none has; -1: some have. */
static int target_has_lib(const struct target *t, const char *name)
{
    pid_t p[12];
    int n = 0;
    if (t->kind == K_FDOPS)
        for (int w = 0; w < t->nfd; w++)
            p[n++] = t->fd_pid[w];
    else if (t->nworkers)
        for (int w = 0; w < t->nworkers; w++)
            p[n++] = t->workers[w];
    else
        p[n++] = t->server;
    int with = 0;
    for (int i = 0; i < n; i++)
        with += proc_maps_has(p[i], name);
    return with == n ? 1 : with == 0 ? 0 : -1;
}

/* ------------------------------------------------------------- the loads */

/* One churn connection: connect, 16 bytes out, 16 back, EOF, close. */
static int churn_one(int port)
{
    static const char req[16] = "0123456789abcdef";
    char buf[64];
    int s = connect_to(port, false);
    if (s < 0)
        return -1;
    int rc = -1;
    if (write(s, req, sizeof req) == (ssize_t)sizeof req) {
        size_t got = 0;
        for (int i = 0; i < 64; i++) {
            ssize_t n = read(s, buf, sizeof buf);
            if (n <= 0) {
                if (n == 0 && got == 16)
                    rc = 0;
                break;
            }
            got += (size_t)n;
        }
    }
    close(s);
    return rc;
}

/* Repeats op(arg) for one time slice: the ops done and the time they took. */
static int repeat_for(int (*op)(int), int arg, uint64_t slice, uint64_t *ops, uint64_t *elapsed)
{
    uint64_t t0 = now_ns(), t1 = t0, n = 0;
    while (t1 - t0 < slice && !alarmed) {
        if (op(arg) != 0)
            return -1;
        n++;
        t1 = now_ns();
    }
    *ops = n;
    *elapsed = t1 - t0;
    return alarmed ? -1 : 0;
}

static int churn_slice(struct target *t, uint64_t slice, uint64_t *ops, uint64_t *elapsed)
{
    return repeat_for(churn_one, t->port, slice, ops, elapsed);
}

static int ka_roundtrip(int fd)
{
    static char req[64] = "keep-alive request, 64 bytes, answered with 64 bytes .........";
    char buf[64];
    if (write(fd, req, sizeof req) != (ssize_t)sizeof req)
        return -1;
    size_t got = 0;
    for (int i = 0; i < 64 && got < sizeof buf; i++) {
        ssize_t n = read(fd, buf + got, sizeof buf - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return got == sizeof buf ? 0 : -1;
}

static int ka_slice(struct target *t, uint64_t slice, uint64_t *ops, uint64_t *elapsed)
{
    if (t->kafd < 0) {
        t->kafd = connect_to(t->port, false);
        if (t->kafd < 0)
            return -1;
        int one = 1;
        setsockopt(t->kafd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return repeat_for(ka_roundtrip, t->kafd, slice, ops, elapsed);
}

static int fdops_slice_kind(struct target *t, char kind, uint64_t slice, uint64_t *ops,
                            uint64_t *elapsed)
{
    char cmd[64], buf[128];
    int w = t->next++ % t->nfd; /* the workers in turn */
    int n = snprintf(cmd, sizeof cmd, "%c %llu\n", kind, (unsigned long long)slice);
    if (write_all(t->fd_to[w], cmd, (size_t)n) != 0)
        return -1;
    size_t have = 0;
    for (int i = 0; i < 64 && have < sizeof buf - 1; i++) {
        ssize_t r = read(t->fd_from[w], buf + have, sizeof buf - 1 - have);
        if (r <= 0)
            return -1;
        have += (size_t)r;
        buf[have] = 0;
        if (strchr(buf, '\n')) {
            unsigned long long o, e;
            if (sscanf(buf, "%llu %llu", &o, &e) != 2 || o == 0)
                return -1;
            *ops = o;
            *elapsed = e;
            return 0;
        }
    }
    return -1;
}

static int file_slice(struct target *t, uint64_t s, uint64_t *o, uint64_t *e)
{
    return fdops_slice_kind(t, 'F', s, o, e);
}

static int pipe_slice(struct target *t, uint64_t s, uint64_t *o, uint64_t *e)
{
    return fdops_slice_kind(t, 'P', s, o, e);
}

/* ---- HTTP: 50 connections, one request outstanding on each ---- */

static const char req_ka[] = "GET /small.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
static const char req_close[] =
    "GET /small.html HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

static void http_init(struct target *t, bool close_mode)
{
    t->close_mode = close_mode;
    t->ep = epoll_create1(EPOLL_CLOEXEC);
    t->c = calloc(NCONN, sizeof *t->c);
    if (t->ep < 0 || !t->c)
        die("http client: %s", strerror(errno));
    for (int i = 0; i < NCONN; i++)
        t->c[i].fd = -1;
}

static void http_close_all(struct target *t)
{
    if (!t->c)
        return;
    for (int i = 0; i < NCONN; i++)
        if (t->c[i].fd >= 0)
            close(t->c[i].fd);
    free(t->c);
    t->c = NULL;
    close(t->ep);
}

static void hc_drop(struct hconn *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->events = 0;
    c->state = H_CLOSED;
}

static int hc_watch(struct target *t, int i, uint32_t events)
{
    struct hconn *c = &t->c[i];
    if (c->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)i};
    int rc = epoll_ctl(t->ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
    c->events = events;
    return rc;
}

static int hc_send(struct target *t, int i)
{
    struct hconn *c = &t->c[i];
    const char *req = t->close_mode ? req_close : req_ka;
    size_t len = t->close_mode ? sizeof req_close - 1 : sizeof req_ka - 1;
    if (send(c->fd, req, len, MSG_NOSIGNAL) != (ssize_t)len)
        return -1;
    c->state = H_WAIT;
    c->got = c->need = 0;
    return hc_watch(t, i, EPOLLIN);
}

static int hc_start(struct target *t, int i)
{
    struct hconn *c = &t->c[i];
    if (c->fd < 0) {
        c->fd = connect_to(t->port, true);
        if (c->fd < 0)
            return -1;
        c->events = 0;
        c->state = H_CONNECTING;
        return hc_watch(t, i, EPOLLOUT);
    }
    return hc_send(t, i);
}

/* 1: a whole 200 response is in; 0: not yet; -1: a bad one. */
static int hc_parse(struct hconn *c, bool at_eof)
{
    c->buf[c->got < HBUF ? c->got : HBUF - 1] = 0;
    if (!c->need) {
        char *end = strstr(c->buf, "\r\n\r\n");
        if (!end)
            return at_eof ? -1 : 0;
        if (strncmp(c->buf, "HTTP/1.1 200", 12) != 0)
            return -1;
        char *cl = strcasestr(c->buf, "\r\ncontent-length:");
        if (!cl || cl > end)
            return -1;
        c->need = (size_t)(end + 4 - c->buf) + strtoul(cl + 17, NULL, 10);
    }
    if (c->got > c->need)
        return -1;
    return c->got == c->need ? 1 : (at_eof ? -1 : 0);
}

/* Reads what is there; 1 when the response is complete. */
static int hc_read(struct hconn *c, bool close_mode)
{
    for (int k = 0; k < 64; k++) {
        if (c->got >= HBUF - 1)
            return -1;
        ssize_t n = recv(c->fd, c->buf + c->got, HBUF - 1 - c->got, 0);
        if (n > 0) {
            c->got += (size_t)n;
            int p = hc_parse(c, false);
            if (p < 0 || (p == 1 && !close_mode))
                return p;
            continue; /* close mode: complete at EOF */
        }
        if (n == 0)
            return close_mode ? hc_parse(c, true) : -1;
        if (errno == EAGAIN || errno == EINTR)
            return 0;
        return -1;
    }
    return 0;
}

static int http_slice(struct target *t, uint64_t slice, uint64_t *ops, uint64_t *elapsed)
{
    uint64_t t0 = now_ns(), n = 0;
    bool active = true;
    int inflight = 0;
    for (int i = 0; i < NCONN; i++) {
        if (hc_start(t, i) != 0)
            return -1;
        inflight++;
    }
    struct epoll_event evs[64];
    while (inflight > 0 && !alarmed) {
        int k = epoll_wait(t->ep, evs, 64, 100);
        if (k < 0 && errno != EINTR)
            return -1;
        uint64_t now = now_ns();
        if (active && now - t0 >= slice)
            active = false;
        if (now - t0 > slice + 3000000000ull)
            return -1; /* responses stopped coming */
        for (int e = 0; e < k; e++) {
            int i = (int)evs[e].data.u32;
            struct hconn *c = &t->c[i];
            if (c->state == H_CONNECTING) {
                if (hc_send(t, i) != 0)
                    return -1;
                continue;
            }
            if (c->state == H_IDLE) { /* the server closed an idle connection */
                hc_drop(c);
                continue;
            }
            if (c->state != H_WAIT)
                continue;
            int r = hc_read(c, t->close_mode);
            if (r < 0)
                return -1;
            if (r == 0)
                continue;
            n++;
            inflight--;
            if (t->close_mode)
                hc_drop(c);
            else
                c->state = H_IDLE;
            if (active) {
                if (hc_start(t, i) != 0)
                    return -1;
                inflight++;
            }
        }
    }
    *ops = n;
    *elapsed = now_ns() - t0;
    return alarmed ? -1 : 0;
}

typedef int (*slice_fn)(struct target *, uint64_t, uint64_t *, uint64_t *);

/* ------------------------------------------------------------- the rows */

enum workload { W_CHURN, W_KA, W_FILE, W_PIPE, W_NGX_KA, W_NGX_CLOSE, W_WRK_KA, W_WRK_CLOSE };
static const char *const wl_name[] = {"churn",         "keep-alive",   "untracked open/read/close",
                                      "untracked pipe read", "nginx keep-alive", "nginx close",
                                      "wrk nginx keep-alive", "wrk nginx close"};
static const char *const wl_tag[] = {"churn", "ka", "file", "pipe", "ngxka", "ngxclose",
                                     "wrkka", "wrkclose"};

struct row {
    enum workload wl;
    enum cfg cfg; /* the test side; BARE: bare vs bare */
    int n;        /* ratios */
    double med, p25, p75;
    double ci_lo, ci_hi; /* 95 % confidence interval of the median (order statistics) */
    uint64_t ops[2];
    double cpu_us[2]; /* per op */
    long rss_kb[2];
    long log_lines;
    char note[200];
    bool skipped, failed;
};

#define MAX_ROWS 40
static struct row rows[MAX_ROWS];
static int nrows;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double quantile(const double *sorted, int n, double q)
{
    if (n <= 0)
        return NAN;
    double pos = q * (n - 1);
    int lo = (int)pos;
    int hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

static void summarise(struct row *r, double *ratios, int n)
{
    qsort(ratios, (size_t)n, sizeof *ratios, cmp_double);
    r->n = n;
    r->med = quantile(ratios, n, 0.5);
    r->p25 = quantile(ratios, n, 0.25);
    r->p75 = quantile(ratios, n, 0.75);
    /* The median lies between these ranks with 95 % confidence. */
    double half = 0.98 * sqrt((double)n);
    int lo = (int)floor((n - 1) / 2.0 - half), hi = (int)ceil((n - 1) / 2.0 + half);
    r->ci_lo = ratios[lo < 0 ? 0 : lo];
    r->ci_hi = ratios[hi > n - 1 ? n - 1 : hi];
}

struct plan {
    int min_pairs, max_pairs;
    uint64_t min_ops; /* on the test side */
    uint64_t cap_ns;  /* wall time cap of the measuring loop */
};

/* A row whose median is still uncertain (the machine was noisy) goes on past
 * its plan, up to a few seconds, while the run's extension budget lasts: that
 * is what keeps `make bench` under 5 minutes and bench-quick under 60 s. */
#define TARGET_CI_HALF 0.01
static uint64_t ext_row_ns, ext_budget_ns;

static double ci_half_width(const double *ratios, int n)
{
    static double sorted[20000];
    memcpy(sorted, ratios, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
    double half = 0.98 * sqrt((double)n);
    int lo = (int)floor((n - 1) / 2.0 - half), hi = (int)ceil((n - 1) / 2.0 + half);
    return (sorted[hi > n - 1 ? n - 1 : hi] - sorted[lo < 0 ? 0 : lo]) / 2;
}

static FILE *raw; /* every slice: WORKDIR/slices.tsv */

static int one_slice(struct row *r, slice_fn f, struct target *t, int side, int pair,
                     uint64_t *ops, double *thr)
{
    uint64_t o = 0, e = 0;
    errno = 0;
    alarm(10);
    int rc = f(t, opt.slice_ns, &o, &e);
    alarm(0);
    if (rc != 0 || e == 0 || o == 0) {
        int err = errno;
        snprintf(r->note, sizeof r->note, "FAILED: %s slice against %s%s%s%s",
                 side ? "test" : "bare", t->kind == K_FDOPS ? "fdops" : "the server",
                 alarmed ? " timed out" : "", err ? ": " : "", err ? strerror(err) : "");
        alarmed = 0;
        r->failed = true;
        return -1;
    }
    if (raw)
        fprintf(raw, "%s\t%s\t%d\t%s\t%llu\t%llu\t%.1f\n", wl_tag[r->wl],
                r->cfg == BARE ? "bare-vs-bare" : cfg_name[r->cfg], pair, side ? "test" : "bare",
                (unsigned long long)o, (unsigned long long)e, (double)o * 1e9 / (double)e);
    *ops += o;
    *thr = (double)o / (double)e;
    return 0;
}

/* Alternates A (bare), B (test), A, B, ..., A; ratio_i = B_i / mean(A_i, A_i+1). */
static void measure(struct row *r, struct target *a, struct target *b, slice_fn f,
                    const struct plan *p)
{
    static double ratios[20000];
    double ta, tb, ta_next;
    uint64_t junk = 0;
    for (int w = 0; w < 5; w++) /* warm-up, thrown away */
        if (one_slice(r, f, a, 0, -1, &junk, &ta) || one_slice(r, f, b, 1, -1, &junk, &tb))
            return;
    uint64_t cpu0[2] = {target_cpu_ns(a), target_cpu_ns(b)};
    uint64_t start = now_ns();
    int n = 0;
    if (one_slice(r, f, a, 0, 0, &r->ops[0], &ta))
        return;
    int max = p->max_pairs < 20000 ? p->max_pairs : 20000;
    uint64_t ext_start = 0;
    while (n < max) {
        if (one_slice(r, f, b, 1, n, &r->ops[1], &tb) ||
            one_slice(r, f, a, 0, n + 1, &r->ops[0], &ta_next))
            break;
        ratios[n++] = tb / ((ta + ta_next) / 2);
        ta = ta_next;
        uint64_t now = now_ns();
        if (n >= p->min_pairs && r->ops[1] >= p->min_ops) {
            if (!ext_start)
                ext_start = now;
            uint64_t spent = now - ext_start;
            if (spent >= ext_row_ns || spent >= ext_budget_ns) {
                if (ci_half_width(ratios, n) > TARGET_CI_HALF)
                    snprintf(r->note, sizeof r->note, "noisy: extension time used up");
                break;
            }
            if (n % 20 == 0 && ci_half_width(ratios, n) <= TARGET_CI_HALF)
                break;
        }
        if (now - start > p->cap_ns && n >= 10) {
            snprintf(r->note, sizeof r->note, "time cap reached");
            break;
        }
    }
    if (ext_start) {
        uint64_t spent = now_ns() - ext_start;
        ext_budget_ns = spent < ext_budget_ns ? ext_budget_ns - spent : 0;
    }
    uint64_t cpu1[2] = {target_cpu_ns(a), target_cpu_ns(b)};
    for (int s = 0; s < 2; s++)
        r->cpu_us[s] = r->ops[s] ? (double)(cpu1[s] - cpu0[s]) / 1000.0 / (double)r->ops[s] : NAN;
    r->rss_kb[0] = target_hwm_kb(a);
    r->rss_kb[1] = target_hwm_kb(b);
    if (n > 0)
        summarise(r, ratios, n);
}

static long count_lines(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    static char buf[1 << 16];
    long lines = 0;
    for (long i = 0; i < 1000000; i++) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (ssize_t k = 0; k < n; k++)
            lines += buf[k] == '\n';
    }
    close(fd);
    return lines;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static struct row *new_row(enum workload wl, enum cfg cfg)
{
    if (nrows >= MAX_ROWS)
        die("too many rows");
    struct row *r = &rows[nrows++];
    memset(r, 0, sizeof *r);
    r->wl = wl;
    r->cfg = cfg;
    r->log_lines = -1;
    return r;
}

static bool wanted(enum workload wl)
{
    return !opt.only || strstr(wl_name[wl], opt.only) || strstr(wl_tag[wl], opt.only);
}

static char fdops_file[PATH_MAX];

static void run_row(enum workload wl, enum cfg cfg, const struct plan *p)
{
    if (!wanted(wl))
        return;
    struct row *r = new_row(wl, cfg);
    say("%s / %s ...", wl_name[wl], cfg == BARE ? "bare-vs-bare" : cfg_name[cfg]);
    struct target t[2];
    memset(t, 0, sizeof t);
    for (int s = 0; s < 2; s++) {
        t[s].cfg = s == 0 ? BARE : cfg;
        t[s].kafd = -1;
        t[s].ep = -1;
        log_path(&t[s], wl_tag[wl], s);
    }
    if (cfg == STRACE && access("/usr/bin/strace", X_OK) != 0 && system("command -v strace >/dev/null 2>&1") != 0) {
        r->skipped = true;
        snprintf(r->note, sizeof r->note, "SKIP: strace is not installed");
        return;
    }
    if (floored(cfg) && access(opt.floor_lib, R_OK) != 0) {
        r->skipped = true;
        snprintf(r->note, sizeof r->note, "SKIP: libfloor.so is not built (make bench builds it)");
        return;
    }
    enter_private_netns();
    usleep(200000); /* let the previous row's namespace and processes wind down */
    slice_fn f = NULL;
    int started = 0;
    for (int s = 0; s < 2; s++) {
        int rc = 0;
        switch (wl) {
        case W_CHURN: rc = start_srv(&t[s], "churn"); f = churn_slice; break;
        case W_KA: rc = start_srv(&t[s], "keepalive"); f = ka_slice; break;
        case W_FILE: rc = start_fdops(&t[s], fdops_file); f = file_slice; break;
        case W_PIPE: rc = start_fdops(&t[s], fdops_file); f = pipe_slice; break;
        case W_NGX_KA:
        case W_NGX_CLOSE:
            rc = start_nginx(&t[s], wl_tag[wl], s);
            if (rc == 0)
                http_init(&t[s], wl == W_NGX_CLOSE);
            f = http_slice;
            break;
        default: rc = -1;
        }
        if (rc != 0) {
            r->failed = true;
            snprintf(r->note, sizeof r->note, "FAILED: could not start the %s server",
                     cfg_name[t[s].cfg]);
            stop_target(&t[s]); /* what did start of it */
            break;
        }
        started++;
    }
    if (started == 2) {
        if ((wl == W_FILE || wl == W_PIPE) && (fdops_sync(&t[0]) || fdops_sync(&t[1]))) {
            r->failed = true;
            snprintf(r->note, sizeof r->note, "FAILED: the fdops worker does not answer");
        } else if (preload_of(cfg) && target_has_lib(&t[1], lib_mark(cfg)) != 1) {
            r->failed = true;
            snprintf(r->note, sizeof r->note, "FAILED: %s is not loaded in the server",
                     lib_mark(cfg));
        } else if (target_has_lib(&t[0], "librstshim") != 0 ||
                   target_has_lib(&t[0], "libfloor") != 0 ||
                   (cfg == BARE && (target_has_lib(&t[1], "librstshim") != 0 ||
                                    target_has_lib(&t[1], "libfloor") != 0))) {
            r->failed = true;
            snprintf(r->note, sizeof r->note, "FAILED: a bare server has a preload loaded");
        } else {
            measure(r, &t[0], &t[1], f, p);
        }
    }
    for (int s = 0; s < started; s++)
        stop_target(&t[s]);
    if (preload_of(cfg) && !opt.log) { /* --log: lines went elsewhere, not counted */
        r->log_lines = count_lines(t[1].log);
        if (r->log_lines < 0)
            r->log_lines = 0;
        /* Every event on a row that opens connections: lines, or the log
         * could not be written and the row measured something else. */
        bool connections = wl != W_FILE && wl != W_PIPE;
        if ((cfg == ALL || cfg == FLOOR_ALL) && connections && r->log_lines == 0 && !r->failed &&
            r->n > 0) {
            r->failed = true;
            snprintf(r->note, sizeof r->note, "FAILED: no line reached the log (RSTSHIM_LOG)");
        }
        unlink(t[1].log);
    }
    for (int s = 0; s < 2; s++)
        if (t[s].dir[0])
            nftw(t[s].dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* --------------------------------------------------------- wrk cross-check */

static double wrk_once(int port, bool close_mode)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/small.html", port);
    char *argv_ka[] = {"wrk", "-t1", "-c50", "-d1s", url, NULL};
    char *argv_close[] = {"wrk", "-t1", "-c50", "-d1s", "-H", "Connection: close", url, NULL};
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0)
        return -1;
    struct target plain = {.cfg = BARE};
    pid_t pid = spawn(&plain, close_mode ? argv_close : argv_ka, -1, out[1], -1);
    close(out[1]);
    char buf[8192];
    size_t have = 0;
    uint64_t end = now_ns() + 10000000000ull;
    while (have < sizeof buf - 1 && now_ns() < end) {
        struct pollfd pf = {.fd = out[0], .events = POLLIN};
        if (poll(&pf, 1, 200) <= 0)
            continue;
        ssize_t n = read(out[0], buf + have, sizeof buf - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    buf[have] = 0;
    close(out[0]);
    reap(pid, 3000);
    char *rps = strstr(buf, "Requests/sec:");
    if (!rps || strstr(buf, "Non-2xx"))
        return -1;
    return atof(rps + 13);
}

static void run_wrk_row(enum workload wl, enum cfg cfg, int runs)
{
    if (!wanted(wl))
        return;
    struct row *r = new_row(wl, cfg);
    say("%s / %s ...", wl_name[wl], cfg == BARE ? "bare-vs-bare" : cfg_name[cfg]);
    if (system("command -v wrk >/dev/null 2>&1") != 0) {
        r->skipped = true;
        snprintf(r->note, sizeof r->note, "SKIP: wrk is not installed%s",
                 geteuid() ? " (not root: cannot apt-get install it)"
                           : " (bench/ensure-tools.sh installs it; apt-get failed?)");
        return;
    }
    bool close_mode = wl == W_WRK_CLOSE;
    struct target t[2];
    memset(t, 0, sizeof t);
    enter_private_netns();
    usleep(200000);
    int started = 0;
    for (int s = 0; s < 2; s++) {
        t[s].cfg = s == 0 ? BARE : cfg;
        t[s].kafd = t[s].ep = -1;
        log_path(&t[s], wl_tag[wl], s);
        if (start_nginx(&t[s], wl_tag[wl], s) != 0) {
            r->failed = true;
            snprintf(r->note, sizeof r->note, "FAILED: could not start nginx");
            stop_target(&t[s]);
            break;
        }
        started++;
    }
    double ratios[64];
    int n = 0;
    if (started == 2) {
        uint64_t cpu0[2] = {target_cpu_ns(&t[0]), target_cpu_ns(&t[1])};
        double a = wrk_once(t[0].port, close_mode), b, a2;
        for (int i = 0; i < runs && a > 0; i++) {
            b = wrk_once(t[1].port, close_mode);
            a2 = wrk_once(t[0].port, close_mode);
            if (b <= 0 || a2 <= 0) {
                a = -1;
                break;
            }
            ratios[n++] = b / ((a + a2) / 2);
            r->ops[1] += (uint64_t)b;
            r->ops[0] += (uint64_t)(a + a2) / 2;
            a = a2;
        }
        if (a <= 0) {
            r->failed = true;
            snprintf(r->note, sizeof r->note, "FAILED: wrk run failed or saw non-2xx");
        }
        uint64_t cpu1[2] = {target_cpu_ns(&t[0]), target_cpu_ns(&t[1])};
        for (int s = 0; s < 2; s++) {
            r->cpu_us[s] = r->ops[s] ? (double)(cpu1[s] - cpu0[s]) / 1000.0 / (double)r->ops[s] : NAN;
            r->rss_kb[s] = target_hwm_kb(&t[s]);
        }
        if (r->cpu_us[0] > 0) /* the bare server served the A runs: n+1 of them */
            r->cpu_us[0] = r->cpu_us[0] * (double)n / (double)(n + 1);
    }
    for (int s = 0; s < started; s++)
        stop_target(&t[s]);
    if (shimmed(cfg) && !opt.log) {
        r->log_lines = count_lines(t[1].log);
        unlink(t[1].log);
    }
    for (int s = 0; s < 2; s++)
        if (t[s].dir[0])
            nftw(t[s].dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (n > 0)
        summarise(r, ratios, n);
}

/* ---------------------------------------------------------------- report */

static double budget(enum workload wl, enum cfg cfg)
{
    if (cfg != FLAGGED && cfg != ALL)
        return -1;
    switch (wl) {
    case W_FILE:
    case W_PIPE: return 0.99;
    case W_KA: return 0.98;
    case W_CHURN:
    case W_NGX_KA:
    case W_NGX_CLOSE:
    case W_WRK_KA:
    case W_WRK_CLOSE: return cfg == FLAGGED ? 0.98 : 0.95;
    }
    return -1;
}

static void cpu_model(char *out, size_t size)
{
    char buf[8192];
    snprintf(out, size, "unknown CPU");
    if (slurp("/proc/cpuinfo", buf, sizeof buf) <= 0)
        return;
    char *p = strstr(buf, "model name");
    if (!p || !(p = strchr(p, ':')))
        return;
    p += 2;
    size_t n = strcspn(p, "\n");
    snprintf(out, size, "%.*s", (int)n, p);
}

/* What one plain syscall (getppid) costs on the bench's CPU now: the
 * price of every syscall the shim adds.  This VM's varies between boots
 * (120 ns on one, 1,100 ns on another with the same kernel), and the
 * churn rows move with it.  Median of 31 batches of 2,000 calls. */
static double syscall_ns(void)
{
    double batch[31];
    for (int b = 0; b < 31; b++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < 2000; i++)
            syscall(SYS_getppid);
        batch[b] = (double)(now_ns() - t0) / 2000;
    }
    qsort(batch, 31, sizeof batch[0], cmp_double);
    return batch[15];
}

static double syscall_before_ns, syscall_after_ns;

static void print_header(void)
{
    struct utsname u;
    uname(&u);
    char model[128], date[64];
    cpu_model(model, sizeof model);
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    printf("rstshim overhead (%s), %s\n", opt.quick ? "make bench-quick" : "make bench", date);
    printf("machine: %s, %ld vCPU, %s, Linux %s %s\n", model, sysconf(_SC_NPROCESSORS_ONLN),
           u.nodename, u.release, u.machine);
    printf("method:  bare and test server run side by side; the load alternates bare,test,bare,... in\n"
           "         %.0f ms slices; ratio = test throughput / mean of the two bare slices around it;\n"
           "         median, its 95%% confidence interval, and p25-p75 over the slices (n = test\n"
           "         slices; a row whose CI is wider than +-%.0f%% goes on for up to %.0f s more).\n"
           "         Client and servers pinned to CPU %d;\n"
           "         %s.\n"
           "         CPU = server CPU time per op (/proc/PID/schedstat; strace: tracee + tracer);\n"
           "         RSS = server VmHWM (nginx: worker); log = lines the shim wrote in the row.\n",
           (double)opt.slice_ns / 1e6, TARGET_CI_HALF * 100, (double)ext_row_ns / 1e9, opt.cpu,
           opt.netns ? "each row in a private network namespace (own TIME_WAIT table)"
                     : opt.netns_why);
    printf("syscall: a plain one (getppid) costs %.0f ns on CPU %d (%.0f ns at the start, %.0f at the\n"
           "         end): the price of each syscall the shim adds to an operation.\n",
           (syscall_before_ns + syscall_after_ns) / 2, opt.cpu, syscall_before_ns,
           syscall_after_ns);
    if (opt.log)
        printf("log:     RSTSHIM_LOG=%s for every shimmed server (--log; lines not counted)\n",
               opt.log);
    else
        printf("log:     RSTSHIM_LOG=a file per row in %s (deleted after the row)\n", opt.workdir);
    printf("\n");
}

static void print_table(void)
{
    printf("%-25s %-13s %6s %-11s %-11s %4s %9s %-13s %-11s %7s  %s\n", "workload", "config",
           "ratio", "median CI95", "p25-p75", "n", "ops(test)", "CPU us/op", "RSS kB", "log",
           "budget");
    printf("%-25s %-13s %6s %-11s %-11s %4s %9s %-13s %-11s %7s\n", "", "", "", "", "", "", "",
           "bare>test", "bare>test", "lines");
    for (int i = 0; i < nrows; i++) {
        struct row *r = &rows[i];
        const char *cfg = r->cfg == BARE ? "bare-vs-bare" : cfg_name[r->cfg];
        if (r->skipped || (r->failed && r->n == 0)) {
            printf("%-25s %-13s %s\n", wl_name[r->wl], cfg, r->note);
            continue;
        }
        char ci[32], iqr[32], cpu[40], rss[40], lines[24], bud[32];
        snprintf(ci, sizeof ci, "%.3f-%.3f", r->ci_lo, r->ci_hi);
        snprintf(iqr, sizeof iqr, "%.3f-%.3f", r->p25, r->p75);
        snprintf(cpu, sizeof cpu, "%.2f>%.2f", r->cpu_us[0], r->cpu_us[1]);
        snprintf(rss, sizeof rss, "%ld>%ld", r->rss_kb[0], r->rss_kb[1]);
        if (r->log_lines >= 0)
            snprintf(lines, sizeof lines, "%ld", r->log_lines);
        else
            snprintf(lines, sizeof lines, "-");
        double b = budget(r->wl, r->cfg);
        if (b > 0)
            snprintf(bud, sizeof bud, ">=%.2f %s", b, r->med >= b ? "OK" : "OVER");
        else if (r->cfg == BARE)
            snprintf(bud, sizeof bud, "(noise floor)");
        else if (floored(r->cfg))
            snprintf(bud, sizeof bud, "(least any preload pays)");
        else
            snprintf(bud, sizeof bud, "-");
        printf("%-25s %-13s %6.3f %-11s %-11s %4d %9llu %-13s %-11s %7s  %s%s%s\n",
               wl_name[r->wl], cfg, r->med, ci, iqr, r->n, (unsigned long long)r->ops[1], cpu, rss,
               lines, bud, r->note[0] ? "  " : "", r->note);
    }
}

/* -------------------------------------------------------------- load mode */

static int load_main(int argc, char **argv)
{
    if (argc != 5)
        die("usage: bench load churn|keepalive PORT SECONDS");
    struct target t;
    memset(&t, 0, sizeof t);
    t.port = atoi(argv[3]);
    t.kafd = -1;
    double secs = atof(argv[4]);
    slice_fn f = strcmp(argv[2], "churn") == 0 ? churn_slice : ka_slice;
    uint64_t total = 0, t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    for (long i = 0; i < 100000000 && now_ns() < end; i++) {
        uint64_t o = 0, e = 0;
        if (f(&t, 100000000, &o, &e) != 0)
            die("load against port %d failed: %s", t.port, strerror(errno));
        total += o;
    }
    double el = (double)(now_ns() - t0) / 1e9;
    printf("%llu ops in %.2f s: %.0f ops/s\n", (unsigned long long)total, el, (double)total / el);
    if (t.kafd >= 0)
        close(t.kafd);
    return 0;
}

/* ------------------------------------------------------------------ main */

static void pin(void)
{
    cpu_set_t set;
    if (opt.cpu < 0) {
        if (sched_getaffinity(0, sizeof set, &set) != 0)
            die("sched_getaffinity: %s", strerror(errno));
        for (int c = CPU_SETSIZE - 1; c >= 0; c--)
            if (CPU_ISSET(c, &set)) {
                opt.cpu = c;
                break;
            }
    }
    CPU_ZERO(&set);
    CPU_SET(opt.cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) /* children inherit it */
        die("cannot pin to CPU %d: %s", opt.cpu, strerror(errno));
}

static void absolute(char *out, const char *in)
{
    if (!realpath(in, out))
        die("%s: %s", in, strerror(errno));
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "load") == 0)
        return load_main(argc, argv);
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            opt.quick = true;
        else if (strcmp(argv[i], "--cpu") == 0 && i + 1 < argc)
            opt.cpu = atoi(argv[++i]);
        else if (strcmp(argv[i], "--log") == 0 && i + 1 < argc)
            opt.log = argv[++i];
        else if (strcmp(argv[i], "--slice-ms") == 0 && i + 1 < argc)
            opt.slice_ns = (uint64_t)(atof(argv[++i]) * 1e6);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            opt.only = argv[++i];
        else
            die("unknown option %s", argv[i]);
    }
    if (argc - i != 3)
        die("usage: bench [--quick] [--cpu N] [--slice-ms N] [--only NAME] [--log TARGET] BINDIR "
            "SHIM WORKDIR");
    absolute(opt.bindir, argv[i]);
    absolute(opt.shim, argv[i + 1]);
    snprintf(opt.floor_lib, sizeof opt.floor_lib, "%s/libfloor.so", opt.bindir);
    mkdir(argv[i + 2], 0755);
    absolute(opt.workdir, argv[i + 2]);
    if (opt.slice_ns < 1000000 || opt.slice_ns > 1000000000)
        die("--slice-ms: 1 to 1000");

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: a stuck read returns EINTR */
    sigaction(SIGALRM, &sa, NULL);
    signal(SIGINT, on_fatal_signal);
    signal(SIGTERM, on_fatal_signal);
    signal(SIGHUP, on_fatal_signal);
    prctl(PR_SET_CHILD_SUBREAPER, 1); /* nginx workers come back to us */
    pin();
    opt.netns = geteuid() == 0;
    if (!opt.netns)
        snprintf(opt.netns_why, sizeof opt.netns_why,
                 "not root: rows share the machine's network namespace and TIME_WAIT table");

    if (snprintf(fdops_file, sizeof fdops_file, "%s/small-file.txt", opt.workdir) >=
        (int)sizeof fdops_file)
        die("path too long: %s", opt.workdir);
    if (write_text(fdops_file, "a small file the untracked-fds workload opens, reads, closes\n"))
        die("%s: %s", fdops_file, strerror(errno));

    char rawpath[PATH_MAX + 16];
    snprintf(rawpath, sizeof rawpath, "%s/slices.tsv", opt.workdir);
    raw = fopen(rawpath, "we");
    if (raw)
        fprintf(raw, "workload\tconfig\tpair\tside\tops\telapsed_ns\tops_per_s\n");

    /* min pairs, max pairs, min test ops, time cap */
    bool q = opt.quick;
    struct plan churn = {q ? 60 : 200, 4000, q ? 0 : 20000, q ? 8e9 : 25e9};
    struct plan ka = {q ? 60 : 200, 4000, q ? 0 : 200000, q ? 8e9 : 25e9};
    struct plan fd = {q ? 60 : 200, 4000, q ? 0 : 1000000, q ? 8e9 : 25e9};
    struct plan ngx = {q ? 60 : 200, 4000, 0, q ? 8e9 : 25e9};
    struct plan strace_plan = {q ? 15 : 60, 4000, 0, q ? 8e9 : 15e9};
    ext_row_ns = q ? 3e9 : 8e9;
    ext_budget_ns = q ? 20e9 : 80e9;

    syscall_before_ns = syscall_ns();
    run_row(W_CHURN, BARE, &churn);
    run_row(W_CHURN, FLAGGED, &churn);
    run_row(W_CHURN, ALL, &churn);
    run_row(W_CHURN, FLOOR_FLAGGED, &churn);
    run_row(W_CHURN, FLOOR_ALL, &churn);
    run_row(W_CHURN, STRACE, &strace_plan);
    if (!q)
        run_row(W_KA, BARE, &ka);
    run_row(W_KA, FLAGGED, &ka);
    run_row(W_KA, ALL, &ka);
    if (!q)
        run_row(W_FILE, BARE, &fd);
    run_row(W_FILE, FLAGGED, &fd);
    run_row(W_FILE, ALL, &fd);
    run_row(W_FILE, FLOOR_FLAGGED, &fd);
    if (!q)
        run_row(W_PIPE, BARE, &fd);
    run_row(W_PIPE, FLAGGED, &fd);
    run_row(W_PIPE, ALL, &fd);
    run_row(W_PIPE, FLOOR_FLAGGED, &fd);

    if (q) {
        /* bench-quick: no nginx */
    } else if (!nginx_bin()) {
        struct row *r = new_row(W_NGX_KA, ALL);
        r->skipped = true;
        snprintf(r->note, sizeof r->note, "SKIP: nginx is not installed%s",
                 geteuid() ? " (not root: cannot apt-get install it)"
                           : " (bench/ensure-tools.sh installs it; apt-get failed?)");
    } else {
        run_row(W_NGX_KA, BARE, &ngx);
        run_row(W_NGX_KA, FLAGGED, &ngx);
        run_row(W_NGX_KA, ALL, &ngx);
        run_row(W_NGX_CLOSE, BARE, &ngx);
        run_row(W_NGX_CLOSE, FLAGGED, &ngx);
        run_row(W_NGX_CLOSE, ALL, &ngx);
        run_row(W_NGX_CLOSE, FLOOR_FLAGGED, &ngx);
        run_row(W_NGX_CLOSE, FLOOR_ALL, &ngx);
        run_wrk_row(W_WRK_KA, ALL, 6);
        run_wrk_row(W_WRK_CLOSE, ALL, 6);
    }
    syscall_after_ns = syscall_ns();
    unlink(fdops_file);
    if (raw)
        fclose(raw);
    print_header();
    print_table();
    fflush(stdout);
    return 0;
}
