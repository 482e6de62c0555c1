/* Parsers of /proc/net/netstat and /proc/net/tcp (see include/netstat.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netstat.h"

/* The header line names the fields; the next "TcpExt:" line has the values. */
bool netstat_parse_listen(const char *text, uint64_t *overflows, uint64_t *drops)
{
    const char *names = strstr(text, "TcpExt:");
    const char *values = names ? strstr(names + 7, "TcpExt:") : NULL;
    if (!values)
        return false;
    int want_overflows = -1, want_drops = -1, index = 0;
    for (const char *p = names + 7; *p && *p != '\n'; index++) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " \n");
        if (n == 15 && !strncmp(p, "ListenOverflows", 15))
            want_overflows = index;
        else if (n == 11 && !strncmp(p, "ListenDrops", 11))
            want_drops = index;
        p += n;
    }
    if (want_overflows < 0 || want_drops < 0)
        return false;
    index = 0;
    bool got_overflows = false, got_drops = false;
    for (const char *p = values + 7; *p && *p != '\n'; index++) {
        char *end;
        uint64_t v = strtoull(p, &end, 10);
        if (end == p)
            break;
        if (index == want_overflows)
            *overflows = v, got_overflows = true;
        if (index == want_drops)
            *drops = v, got_drops = true;
        p = end;
    }
    return got_overflows && got_drops;
}

int netstat_parse_listeners(const char *text, uint64_t *inodes, int max)
{
    int count = 0;
    const char *line = strchr(text, '\n'); /* skip the header */
    while (line && *++line) {
        char state[8];
        unsigned long long inode;
        /* sl: local rem st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, "%*s %*s %*s %7s %*s %*s %*s %*s %*s %llu", state, &inode) == 2 &&
            !strcmp(state, "0A")) {
            if (count < max)
                inodes[count] = inode;
            count++;
        }
        line = strchr(line, '\n');
    }
    return count;
}

