/* `rstshim doctor`: the host settings and kernel counters that decide
 * whether a server's connections end in RSTs.  Read-only; every missing
 * file is reported and skipped (containers often hide parts of /proc).
 *
 * Output is one item per line, "NAME  VALUE  meaning", so that scripts can
 * pick values out with awk. Counters are for this network namespace and
 * count since boot: compare two runs to see what moved. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tool.h"

struct sysctl_item {
    const char *name, *path, *meaning;
};

static const struct sysctl_item sysctls[] = {
    {"net.core.somaxconn", "/proc/sys/net/core/somaxconn",
     "caps every listen() backlog; a full accept queue drops SYNs (clients stall), no RST"},
    {"net.ipv4.tcp_max_syn_backlog", "/proc/sys/net/ipv4/tcp_max_syn_backlog",
     "half-open (SYN_RECV) connections per listener before SYN cookies/drops"},
    {"net.ipv4.tcp_abort_on_overflow", "/proc/sys/net/ipv4/tcp_abort_on_overflow",
     "1: a full accept queue answers the client's final ACK with RST (EmbryonicRsts); 0: drop"},
    {"net.ipv4.tcp_fin_timeout", "/proc/sys/net/ipv4/tcp_fin_timeout",
     "seconds an orphaned FIN_WAIT2 socket lives; later peer data draws an RST"},
};

struct counter_item {
    const char *file, *prefix, *name, *meaning;
};

static const struct counter_item counters[] = {
    {"/proc/net/netstat", "TcpExt:", "ListenOverflows",
     "SYN/ACK arrived with the accept queue full: the server accepts too slowly or the backlog is small"},
    {"/proc/net/netstat", "TcpExt:", "ListenDrops",
     "connection attempts dropped at a listener (includes ListenOverflows)"},
    {"/proc/net/netstat", "TcpExt:", "TCPAbortOnClose",
     "RSTs sent because close() found unread data (rstshim flag unread_data)"},
    {"/proc/net/netstat", "TcpExt:", "TCPAbortOnData",
     "RSTs sent for data arriving after close, or SO_LINGER {1,0} (flags linger_zero, "
     "immediate_close, recv_timeout)"},
    {"/proc/net/netstat", "TcpExt:", "TCPAbortOnLinger",
     "RSTs from TCP_LINGER2 < 0 in FIN_WAIT2 (rare)"},
    {"/proc/net/netstat", "TcpExt:", "TCPAbortOnMemory",
     "RSTs because orphaned sockets exceeded tcp_mem / tcp_max_orphans: memory pressure"},
    {"/proc/net/netstat", "TcpExt:", "TCPAbortOnTimeout",
     "connections aborted after retransmission/keepalive timeouts (peer vanished)"},
    {"/proc/net/netstat", "TcpExt:", "EmbryonicRsts",
     "RSTs to connections not yet accepted (tcp_abort_on_overflow=1, bad ACKs)"},
    {"/proc/net/snmp", "Tcp:", "OutRsts",
     "all RSTs this host sent, whatever the cause (also to closed ports)"},
    {"/proc/net/snmp", "Tcp:", "EstabResets",
     "established connections that ended by an RST, sent or received"},
};

static void print_item(const char *name, const char *value, const char *meaning)
{
    printf("  %-30s %12s  %s\n", name, value, meaning);
}

static void print_rlimit(void)
{
    struct rlimit rl;
    char soft[32], hard[32];
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        print_item("ulimit -n", "?", strerror(errno));
        return;
    }
    if (rl.rlim_cur == RLIM_INFINITY)
        snprintf(soft, sizeof soft, "unlimited");
    else
        snprintf(soft, sizeof soft, "%llu", (unsigned long long)rl.rlim_cur);
    if (rl.rlim_max == RLIM_INFINITY)
        snprintf(hard, sizeof hard, "unlimited");
    else
        snprintf(hard, sizeof hard, "%llu", (unsigned long long)rl.rlim_max);
    print_item("ulimit -n (soft)", soft,
               "fds per process (this shell's; a service has its own, see /proc/PID/limits): "
               "at the limit accept() fails with EMFILE and clients wait in the queue");
    print_item("ulimit -n (hard)", hard, "how far a process may raise its soft limit itself");
}

static void print_sysctl(const struct sysctl_item *s)
{
    FILE *f = fopen(s->path, "re");
    char value[64] = "";
    if (!f) {
        print_item(s->name, "missing", strerror(errno));
        return;
    }
    if (!fgets(value, sizeof value, f))
        value[0] = '\0';
    fclose(f);
    value[strcspn(value, " \t\n")] = '\0';
    print_item(s->name, value[0] ? value : "?", s->meaning);
}

/* /proc/net/netstat and /proc/net/snmp come in pairs of lines:
 * "TcpExt: Name1 Name2 ..." then "TcpExt: 1 2 ...". */
static bool find_counter(const char *file, const char *prefix, const char *name, char *out,
                         size_t len, int *err)
{
    FILE *f = fopen(file, "re");
    if (!f) {
        *err = errno;
        return false;
    }
    *err = 0;
    char *names = NULL, *values = NULL;
    size_t nlen = 0, vlen = 0;
    bool found = false;
    while (!found && getline(&names, &nlen, f) > 0 && getline(&values, &vlen, f) > 0) {
        if (strncmp(names, prefix, strlen(prefix)) || strncmp(values, prefix, strlen(prefix)))
            continue;
        char *sn, *sv;
        char *n = strtok_r(names + strlen(prefix), " \n", &sn);
        char *v = strtok_r(values + strlen(prefix), " \n", &sv);
        for (; n && v; n = strtok_r(NULL, " \n", &sn), v = strtok_r(NULL, " \n", &sv))
            if (!strcmp(n, name)) {
                snprintf(out, len, "%s", v);
                found = true;
                break;
            }
    }
    free(names);
    free(values);
    fclose(f);
    return found;
}

static void print_counter(const struct counter_item *c)
{
    char value[32];
    int err;
    if (find_counter(c->file, c->prefix, c->name, value, sizeof value, &err))
        print_item(c->name, value, c->meaning);
    else if (err)
        print_item(c->name, "missing", strerror(err));
    else
        print_item(c->name, "missing", "not in this kernel's counters");
}

int cmd_doctor(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fputs("usage: rstshim doctor\n", stderr);
        return EXIT_USAGE;
    }
    puts("Limits:");
    print_rlimit();
    for (size_t i = 0; i < sizeof sysctls / sizeof sysctls[0]; i++)
        print_sysctl(&sysctls[i]);
    puts("Counters since boot, this network namespace (run twice to see what moves):");
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        print_counter(&counters[i]);
    return 0;
}
