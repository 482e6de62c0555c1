/* Parsing the kernel's listen counters and listener table. */
#include <stdint.h>

#include "check.h"
#include "netstat.h"

static void counters(void)
{
    const char *text =
        "TcpExt: SyncookiesSent EmbryonicRsts ListenOverflows ListenDrops TCPAbortOnClose\n"
        "TcpExt: 1 2 30 31 4\n"
        "IpExt: InNoRoutes\n"
        "IpExt: 0\n";
    uint64_t overflows = 0, drops = 0;
    CHECK(netstat_parse_listen(text, &overflows, &drops));
    CHECK(overflows == 30 && drops == 31);
    CHECK(!netstat_parse_listen("TcpExt: ListenOverflows\nTcpExt: 5\n", &overflows, &drops));
    CHECK(!netstat_parse_listen("IpExt: x\nIpExt: 1\n", &overflows, &drops));
    CHECK(!netstat_parse_listen("TcpExt: ListenOverflows ListenDrops\nTcpExt: 7\n", &overflows,
                                &drops)); /* a value missing */
}

static void listeners(void)
{
    const char *text =
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:EE19 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4342029 1 0000 100 0 0 10 0\n"
        "   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4342030 1 0000 20 4 30 10 -1\n"
        "   2: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 122 1 0000 100 0 0 10 0\n";
    uint64_t inodes[4] = {0};
    CHECK(netstat_parse_listeners(text, inodes, 4) == 2);
    CHECK(inodes[0] == 4342029 && inodes[1] == 122);
    CHECK(netstat_parse_listeners(text, inodes, 1) == 2); /* counted past max, stored up to it */
    CHECK(netstat_parse_listeners("header only\n", inodes, 4) == 0);
}

void test_netstat(void)
{
    counters();
    listeners();
}
