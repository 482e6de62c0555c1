/* Text the log needs (see include/format.h). */
#include "format.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static size_t append_port(char *out, size_t at, unsigned port)
{
    char digits[6];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + port % 10);
        port /= 10;
    } while (port && n < sizeof digits);
    out[at++] = ':';
    while (n)
        out[at++] = digits[--n];
    out[at] = '\0';
    return at;
}

/* Dotted quad, as inet_ntop writes it; returns the length. */
static size_t put_ipv4(char *out, const unsigned char b[4])
{
    size_t at = 0;
    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (i)
            out[at++] = '.';
        if (v >= 100)
            out[at++] = (char)('0' + v / 100);
        if (v >= 10)
            out[at++] = (char)('0' + v / 10 % 10);
        out[at++] = (char)('0' + v % 10);
    }
    out[at] = '\0';
    return at;
}

static size_t put_hex_group(char *out, unsigned v)
{
    static const char hex[] = "0123456789abcdef";
    size_t at = 0;
    for (int shift = 12; shift >= 0; shift -= 4)
        if ((v >> shift) || shift == 0 || at)
            out[at++] = hex[(v >> shift) & 15];
    return at;
}

/* RFC 5952 text, exactly as glibc's inet_ntop writes it: lower-case hex,
 * the first longest run of two or more zero groups as "::", and the
 * IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) forms.
 * Hand-written because inet_ntop formats through sprintf: a close line
 * spent a third of its encoding time there. */
static size_t put_ipv6(char *out, const unsigned char b[16])
{
    unsigned groups[8];
    for (int i = 0; i < 8; i++)
        groups[i] = (unsigned)b[2 * i] << 8 | b[2 * i + 1];
    int best = -1, best_len = 0;
    for (int i = 0; i < 8;) {
        if (groups[i]) {
            i++;
            continue;
        }
        int j = i;
        while (j < 8 && !groups[j])
            j++;
        if (j - i > best_len) {
            best = i;
            best_len = j - i;
        }
        i = j;
    }
    if (best_len < 2)
        best = -1;
    /* ::a.b.c.d and ::ffff:a.b.c.d keep the IPv4 part dotted. */
    bool embedded = best == 0 && (best_len == 6 || (best_len == 5 && groups[5] == 0xffff));
    size_t at = 0;
    for (int i = 0; i < 8; i++) {
        if (best >= 0 && i >= best && i < best + best_len) {
            if (i == best)
                out[at++] = ':';
            continue;
        }
        if (i)
            out[at++] = ':';
        if (embedded && i == 6)
            return at + put_ipv4(out + at, b + 12);
        at += put_hex_group(out + at, groups[i]);
    }
    if (best >= 0 && best + best_len == 8)
        out[at++] = ':';
    out[at] = '\0';
    return at;
}

size_t format_address(const struct sockaddr *sa, socklen_t len, char out[FORMAT_ADDRESS_MAX])
{
    out[0] = '\0';
    if (!sa || len < (socklen_t)sizeof(sa_family_t))
        return 0;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        size_t at = put_ipv4(out, (const unsigned char *)&in->sin_addr);
        return append_port(out, at, ntohs(in->sin_port));
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        out[0] = '[';
        size_t at = 1 + put_ipv6(out + 1, in6->sin6_addr.s6_addr);
        out[at++] = ']';
        return append_port(out, at, ntohs(in6->sin6_port));
    }
    return 0;
}

/* Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm). */
static void civil_from_days(int64_t days, int64_t *year, unsigned *month, unsigned *day)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    unsigned doe = (unsigned)(days - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *day = doy - (153 * mp + 2) / 5 + 1;
    *month = mp < 10 ? mp + 3 : mp - 9;
    *year = (int64_t)yoe + era * 400 + (*month <= 2);
}

static void put_digits(char *at, unsigned long value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        at[i] = (char)('0' + value % 10);
        value /= 10;
    }
}

size_t format_timestamp(int64_t seconds, long nanoseconds, char out[FORMAT_TIMESTAMP_MAX])
{
    int64_t days = seconds / 86400;
    int64_t rest = seconds % 86400;
    if (rest < 0) {
        rest += 86400;
        days--;
    }
    int64_t year;
    unsigned month, day;
    civil_from_days(days, &year, &month, &day);
    if (year < 0 || year > 9999)
        year = 0;
    /* 0123456789012345678901234567 */
    /* YYYY-MM-DDTHH:MM:SS.uuuuuuZ  */
    memcpy(out, "0000-00-00T00:00:00.000000Z", 28);
    put_digits(out, (unsigned long)year, 4);
    put_digits(out + 5, month, 2);
    put_digits(out + 8, day, 2);
    put_digits(out + 11, (unsigned long)(rest / 3600), 2);
    put_digits(out + 14, (unsigned long)(rest / 60 % 60), 2);
    put_digits(out + 17, (unsigned long)(rest % 60), 2);
    put_digits(out + 20, (unsigned long)(nanoseconds / 1000), 6);
    return 27;
}

void format_timestamp_micros(char ts[FORMAT_TIMESTAMP_MAX], long nanoseconds)
{
    put_digits(ts + 20, (unsigned long)(nanoseconds / 1000), 6);
}

const char *format_errno_name(int err, char out[16])
{
    switch (err) {
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOBUFS: return "ENOBUFS";
    case ENOMEM: return "ENOMEM";
    case ECONNRESET: return "ECONNRESET";
    case EPIPE: return "EPIPE";
    case ECONNABORTED: return "ECONNABORTED";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EAGAIN: return "EAGAIN";
    case EINTR: return "EINTR";
    case EBADF: return "EBADF";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EINVAL: return "EINVAL";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOEXEC: return "ENOEXEC";
    case E2BIG: return "E2BIG";
    default: snprintf(out, 16, "E%d", err); return out;
    }
}

size_t format_printable(const char *in, size_t max_in, char *out, size_t out_size)
{
    static const char hex[] = "0123456789abcdef";
    size_t at = 0;
    if (!out_size)
        return 0;
    for (size_t i = 0; in && i < max_in && in[i]; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            if (at + 1 >= out_size)
                break;
            out[at++] = (char)c;
        } else {
            if (at + 4 >= out_size)
                break;
            out[at++] = '\\';
            out[at++] = 'x';
            out[at++] = hex[c >> 4];
            out[at++] = hex[c & 15];
        }
    }
    out[at] = '\0';
    return at;
}
