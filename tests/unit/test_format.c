/* Addresses, timestamps, errno names and untrusted text. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>

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

static void timestamps(void)
{
    char out[FORMAT_TIMESTAMP_MAX];
    CHECK(format_timestamp(0, 0, out) == 27);
    CHECK_STR(out, "1970-01-01T00:00:00.000000Z");
    format_timestamp(1795305599, 123456789, out);
    CHECK_STR(out, "2026-11-21T23:59:59.123456Z");
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
    timestamps();
    errno_names();
    printable();
}
