/* Addresses, timestamps, errno names and untrusted text. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>

#include "check.h"
#include "format.h"

static void addresses(void)
{
    char out[FORMAT_ADDRESS_MAX];
    struct sockaddr_in in = {0};
    in.sin_family = AF_INET;
    in.sin_port = htons(8080);
    inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
    CHECK(format_address((struct sockaddr *)&in, sizeof in, out) == 14);
    CHECK_STR(out, "127.0.0.1:8080");

    struct sockaddr_in6 in6 = {0};
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(443);
    inet_pton(AF_INET6, "::1", &in6.sin6_addr);
    format_address((struct sockaddr *)&in6, sizeof in6, out);
    CHECK_STR(out, "[::1]:443");
    inet_pton(AF_INET6, "::ffff:10.1.2.3", &in6.sin6_addr);
    in6.sin6_port = htons(0);
    format_address((struct sockaddr *)&in6, sizeof in6, out);
    CHECK_STR(out, "[::ffff:10.1.2.3]:0");
    in.sin_port = htons(65535);
    format_address((struct sockaddr *)&in, sizeof in, out);
    CHECK_STR(out, "127.0.0.1:65535");

    /* Too short, unknown family, NULL: empty, never garbage. */
    CHECK(format_address((struct sockaddr *)&in, 4, out) == 0);
    CHECK_STR(out, "");
    struct sockaddr unix_like = {.sa_family = AF_UNIX};
    CHECK(format_address(&unix_like, sizeof unix_like, out) == 0);
    CHECK(format_address(NULL, 16, out) == 0);
}

/* The hand-written text must be inet_ntop's, byte for byte: addresses
 * drawn from every pattern of zero and non-zero groups (all 256 of them),
 * with the IPv4-mapped and -compatible forms among them, and random ones. */
static bool same_as_inet_ntop(const unsigned char *addr, int family)
{
    char want[INET6_ADDRSTRLEN + 16], out[FORMAT_ADDRESS_MAX];
    union {
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } sa = {0};
    size_t len;
    if (family == AF_INET) {
        sa.in.sin_family = AF_INET;
        sa.in.sin_port = htons(80);
        memcpy(&sa.in.sin_addr, addr, 4);
        inet_ntop(AF_INET, addr, want, sizeof want);
        strcat(want, ":80");
        len = format_address((struct sockaddr *)&sa, sizeof sa.in, out);
    } else {
        sa.in6.sin6_family = AF_INET6;
        sa.in6.sin6_port = htons(80);
        memcpy(&sa.in6.sin6_addr, addr, 16);
        want[0] = '[';
        inet_ntop(AF_INET6, addr, want + 1, sizeof want - 1);
        strcat(want, "]:80");
        len = format_address((struct sockaddr *)&sa, sizeof sa.in6, out);
    }
    if (strcmp(out, want) || len != strlen(want)) {
        printf("FAIL format_address gives \"%s\", inet_ntop \"%s\"\n", out, want);
        return false;
    }
    return true;
}

static void addresses_like_inet_ntop(void)
{
    unsigned seed = 12345, mismatches = 0, tried = 0;
    unsigned char addr[16];
    for (unsigned pattern = 0; pattern < 256; pattern++) {
        for (int round = 0; round < 8; round++) {
            for (int g = 0; g < 8; g++) {
                seed = seed * 1103515245u + 12345u;
                unsigned value = (pattern >> g & 1) ? (seed >> 8) & 0xffff : 0;
                if (value == 0 && (pattern >> g & 1))
                    value = 1 + round; /* non-zero where the pattern says so */
                if (round == 1 && (pattern >> g & 1))
                    value &= 0x000f; /* short groups: leading zeros dropped */
                addr[2 * g] = (unsigned char)(value >> 8);
                addr[2 * g + 1] = (unsigned char)value;
            }
            if (round == 2 && (pattern & 0x3f) == 0) { /* ::ffff:a.b.c.d */
                addr[10] = addr[11] = 0xff;
            }
            tried++;
            mismatches += !same_as_inet_ntop(addr, AF_INET6);
        }
    }
    for (unsigned i = 0; i < 4096; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned v = seed;
        unsigned char a4[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                               (unsigned char)(i & 0xff), (unsigned char)(i >> 4)};
        tried++;
        mismatches += !same_as_inet_ntop(a4, AF_INET);
    }
    CHECK(tried == 256 * 8 + 4096 && mismatches == 0);
}

static void timestamps(void)
{
    char out[FORMAT_TIMESTAMP_MAX];
    CHECK(format_timestamp(0, 0, out) == 27);
    CHECK_STR(out, "1970-01-01T00:00:00.000000Z");
    format_timestamp(1795305599, 123456789, out);
    CHECK_STR(out, "2026-11-21T23:59:59.123456Z");
    format_timestamp_micros(out, 7000); /* the same second, later */
    CHECK_STR(out, "2026-11-21T23:59:59.000007Z");
    format_timestamp(951782400, 999999999, out); /* a leap day in a century leap year */
    CHECK_STR(out, "2000-02-29T00:00:00.999999Z");
    format_timestamp(4107542399, 0, out);
    CHECK_STR(out, "2100-02-28T23:59:59.000000Z");
    format_timestamp(4107542400, 0, out); /* 2100 is not a leap year */
    CHECK_STR(out, "2100-03-01T00:00:00.000000Z");
}

static void errno_names(void)
{
    char buf[16];
    CHECK_STR(format_errno_name(EMFILE, buf), "EMFILE");
    CHECK_STR(format_errno_name(ECONNRESET, buf), "ECONNRESET");
    CHECK_STR(format_errno_name(EPIPE, buf), "EPIPE");
    CHECK_STR(format_errno_name(ENOBUFS, buf), "ENOBUFS");
    CHECK_STR(format_errno_name(4242, buf), "E4242");
}

static void printable(void)
{
    char out[64];
    CHECK(format_printable("nginx", 16, out, sizeof out) == 5);
    CHECK_STR(out, "nginx");
    format_printable("a\"b\n\xff\\", 16, out, sizeof out);
    CHECK_STR(out, "a\"b\\x0a\\xff\\x5c");
    format_printable("abcdef", 3, out, sizeof out); /* at most max_in bytes of input */
    CHECK_STR(out, "abc");
    format_printable("\x01\x02\x03", 16, out, 9); /* never splits an escape */
    CHECK_STR(out, "\\x01\\x02");
    CHECK(format_printable(NULL, 4, out, sizeof out) == 0);
}

void test_format(void)
{
    addresses();
    addresses_like_inet_ntop();
    timestamps();
    errno_names();
    printable();
}
