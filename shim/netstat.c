/* ListenOverflows/ListenDrops deltas attributed to the process's listeners
 * (see include/netstat.h).  The counters are per network namespace: they
 * are this process's own only when it holds every listener there, which
 * /proc/net/tcp{,6} tells by inode. */
#include "netstat.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdtab.h"
#include "guard.h"
#include "log.h"
#include "process.h"
#include "real.h"

/* ---- in the shim ---- */

#define REPORT_EVERY_NS 10000000000ull
#define MAX_LISTENERS 256

static uint64_t base_overflows, base_drops, last_report_ns;
static bool started;

/* Reads a small /proc file into buf; returns false when it cannot. */
static bool read_proc(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t at = 0;
    ssize_t n;
    while (at + 1 < size && (n = REAL(read)(fd, buf + at, size - 1 - at)) > 0)
        at += (size_t)n;
    REAL(close)(fd);
    buf[at] = '\0';
    return at > 0;
}

static bool read_counters(uint64_t *overflows, uint64_t *drops)
{
    char text[8192];
    return read_proc("/proc/net/netstat", text, sizeof text) &&
           netstat_parse_listen(text, overflows, drops);
}

void netstat_start(void)
{
    if (__atomic_exchange_n(&started, true, __ATOMIC_ACQ_REL))
        return;
    if (!read_counters(&base_overflows, &base_drops))
        started = false;
    last_report_ns = process_monotonic_ns();
}

struct ours {
    uint64_t inodes[MAX_LISTENERS];
    int count;
};

static void collect_listener(int fd, struct socket_record *rec, void *ctx)
{
    struct ours *ours = ctx;
    struct stat st;
    if (rec->role == ROLE_LISTENER && ours->count < MAX_LISTENERS && fstat(fd, &st) == 0)
        ours->inodes[ours->count++] = st.st_ino;
}

static bool is_ours(const struct ours *ours, uint64_t inode)
{
    for (int i = 0; i < ours->count; i++)
        if (ours->inodes[i] == inode)
            return true;
    return false;
}

/* True when every LISTEN socket of the namespace is one of ours. */
static bool owns_every_listener(const struct ours *ours)
{
    static char text[65536]; /* callers are serialised by the report's own exchange */
    const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (unsigned f = 0; f < 2; f++) {
        uint64_t inodes[MAX_LISTENERS];
        if (!read_proc(files[f], text, sizeof text))
            continue;
        int n = netstat_parse_listeners(text, inodes, MAX_LISTENERS);
        if (n > MAX_LISTENERS)
            return false;
        for (int i = 0; i < n; i++)
            if (!is_ours(ours, inodes[i]))
                return false;
    }
    return ours->count > 0;
}

void netstat_report(const char *at, int releasing_fd, uint64_t now)
{
    if (!__atomic_load_n(&started, __ATOMIC_ACQUIRE))
        return;
    uint64_t last = __atomic_load_n(&last_report_ns, __ATOMIC_RELAXED);
    if (!strcmp(at, "accept") && now - last < REPORT_EVERY_NS)
        return;
    if (!__atomic_compare_exchange_n(&last_report_ns, &last, now, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_RELAXED))
        return; /* another thread reports */
    uint64_t overflows, drops;
    if (!read_counters(&overflows, &drops) ||
        (overflows == base_overflows && drops == base_drops))
        return;
    struct ours ours = {.count = 0};
    fdtab_for_each(0, -1, collect_listener, &ours);
    struct stat st;
    if (releasing_fd >= 0 && ours.count < MAX_LISTENERS && fstat(releasing_fd, &st) == 0)
        ours.inodes[ours.count++] = st.st_ino;
    struct logline line;
    if (!logline_begin(&line, "listen_drops", -1, true))
        return;
    logline_uint(&line, "listen_overflows", overflows - base_overflows);
    logline_uint(&line, "listen_drops", drops - base_drops);
    logline_int(&line, "listeners", ours.count);
    logline_bool(&line, "attributed", owns_every_listener(&ours));
    logline_string(&line, "at", at);
    logline_end(&line);
    base_overflows = overflows;
    base_drops = drops;
}
