/* Text the log needs (see include/format.h). */
#include "format.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

size_t format_address(const struct sockaddr *sa, socklen_t len, char out[FORMAT_ADDRESS_MAX])
{
    out[0] = '\0';
    if (!sa || len < (socklen_t)sizeof(sa_family_t))
        return 0;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (!inet_ntop(AF_INET, &in->sin_addr, out, INET_ADDRSTRLEN))
            return 0;
        return append_port(out, strlen(out), ntohs(in->sin_port));
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        out[0] = '[';
        if (!inet_ntop(AF_INET6, &in6->sin6_addr, out + 1, INET6_ADDRSTRLEN)) {
            out[0] = '\0';
            return 0;
        }
        size_t at = strlen(out);
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
