/* JSON encoding into a fixed buffer (see include/json_line.h).
 *
 * Each field is appended whole or not at all: when it does not fit, the
 * buffer is rolled back to where the field began, so the line is always
 * valid JSON. */
#include "json_line.h"

#include <string.h>

/* Room kept for the closing "}\n". */
#define CLOSING 2

static bool put(struct json_line *j, const char *text, unsigned n)
{
    if (j->len + n + CLOSING > JSON_LINE_CAPACITY) {
        j->full = true;
        return false;
    }
    memcpy(j->text + j->len, text, n);
    j->len += n;
    return true;
}

static bool put_char(struct json_line *j, char c)
{
    if (j->len + 1 + CLOSING > JSON_LINE_CAPACITY) {
        j->full = true;
        return false;
    }
    j->text[j->len++] = c;
    return true;
}

/* ,"key": -- one bounds check and one copy: a line has ~20 keys. */
static bool put_key(struct json_line *j, const char *key)
{
    unsigned n = (unsigned)strlen(key);
    unsigned comma = j->len > 1;
    if (j->len + comma + n + 3 + CLOSING > JSON_LINE_CAPACITY) {
        j->full = true;
        return false;
    }
    char *at = j->text + j->len;
    if (comma)
        *at++ = ',';
    *at++ = '"';
    memcpy(at, key, n);
    at += n;
    *at++ = '"';
    *at++ = ':';
    j->len = (unsigned)(at - j->text);
    return true;
}

/* Where a run of plain ASCII ends: NUL (the end), the bytes JSON strings
 * cannot hold as they are, and every non-ASCII byte (checked as UTF-8 one
 * sequence at a time below).  One load per byte in the scan, which a line's
 * ~14 strings all pass through (a test for each class per byte cost ~2,400
 * instructions per churn connection with every event on). */
static const bool stops_plain_run[256] = {
    [0x00 ... 0x1f] = true, ['"'] = true, ['\\'] = true, [0x7f ... 0xff] = true,
};

/* The length of the well-formed UTF-8 sequence at s (2 to 4 bytes), or 0:
 * no overlong forms, no surrogates, nothing above U+10FFFF (RFC 3629).  A
 * NUL fails the continuation test, so nothing past the string is read. */
static unsigned utf8_sequence(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char low = c == 0xe0 ? 0xa0 : 0x80, high = c == 0xed ? 0x9f : 0xbf;
        return s[1] >= low && s[1] <= high && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char low = c == 0xf0 ? 0x90 : 0x80, high = c == 0xf4 ? 0x8f : 0xbf;
        return s[1] >= low && s[1] <= high && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

static bool put_escape(struct json_line *j, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    if (c == '"' || c == '\\') {
        char pair[2] = {'\\', (char)c};
        return put(j, pair, 2);
    }
    char escape[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
    return put(j, escape, 6);
}

/* Runs of plain bytes (all of an address, a name, a timestamp) are copied
 * whole; only the bytes that need it are escaped one by one.  JSON text is
 * UTF-8: a well-formed sequence is copied as it is, and any other byte
 * >= 0x80 (a path or a symbol in another encoding, or a name cut inside a
 * character) becomes U+FFFD, as jq and Python's "replace" would show it --
 * a reader that rejects the line (jansson does) would lose all of it. */
static bool put_escaped(struct json_line *j, const char *s)
{
    if (!put_char(j, '"'))
        return false;
    for (;;) {
        const char *run = s;
        while (!stops_plain_run[(unsigned char)*s])
            s++;
        if (s > run && !put(j, run, (unsigned)(s - run)))
            return false;
        unsigned char c = (unsigned char)*s;
        if (!c)
            break;
        if (c < 0x80) {
            if (!put_escape(j, c))
                return false;
            s++;
            continue;
        }
        unsigned n = utf8_sequence((const unsigned char *)s);
        if (n ? !put(j, s, n) : !put(j, "\\ufffd", 6))
            return false;
        s += n ? n : 1;
    }
    return put_char(j, '"');
}

/* Two digits at a time: mono_ns and cookies are long numbers. */
static bool put_unsigned(struct json_line *j, uint64_t value, unsigned min_digits)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    char digits[24];
    unsigned n = 0;
    while (value >= 100) {
        unsigned pair = (unsigned)(value % 100) * 2;
        value /= 100;
        digits[sizeof digits - 1 - n++] = pairs[pair + 1];
        digits[sizeof digits - 1 - n++] = pairs[pair];
    }
    do {
        digits[sizeof digits - 1 - n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    while (n < min_digits)
        digits[sizeof digits - 1 - n++] = '0';
    return put(j, digits + sizeof digits - n, n);
}

/* Runs one field; on failure rolls the buffer back to where it began. */
#define FIELD(j, body)                                                                             \
    do {                                                                                           \
        unsigned start_ = (j)->len;                                                                \
        if (!(body))                                                                               \
            (j)->len = start_;                                                                     \
    } while (0)

void json_line_open(struct json_line *j)
{
    j->len = 0;
    j->full = false;
    j->text[j->len++] = '{';
}

void json_line_string(struct json_line *j, const char *key, const char *value)
{
    FIELD(j, put_key(j, key) && (value ? put_escaped(j, value) : put(j, "null", 4)));
}

void json_line_int(struct json_line *j, const char *key, long long value)
{
    uint64_t magnitude = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    FIELD(j, put_key(j, key) && (value >= 0 || put_char(j, '-')) && put_unsigned(j, magnitude, 1));
}

void json_line_uint(struct json_line *j, const char *key, uint64_t value)
{
    FIELD(j, put_key(j, key) && put_unsigned(j, value, 1));
}

void json_line_fixed(struct json_line *j, const char *key, uint64_t value, unsigned decimals)
{
    uint64_t scale = 1;
    for (unsigned i = 0; i < decimals; i++)
        scale *= 10;
    FIELD(j, put_key(j, key) && put_unsigned(j, value / scale, 1) &&
                 (!decimals || (put_char(j, '.') && put_unsigned(j, value % scale, decimals))));
}

void json_line_bool(struct json_line *j, const char *key, bool value)
{
    FIELD(j, put_key(j, key) && (value ? put(j, "true", 4) : put(j, "false", 5)));
}

void json_line_null(struct json_line *j, const char *key)
{
    FIELD(j, put_key(j, key) && put(j, "null", 4));
}

static bool put_strings(struct json_line *j, const char *const *values, unsigned count)
{
    if (!put_char(j, '['))
        return false;
    for (unsigned i = 0; i < count; i++)
        if ((i && !put_char(j, ',')) || !put_escaped(j, values[i]))
            return false;
    return put_char(j, ']');
}

void json_line_strings(struct json_line *j, const char *key, const char *const *values,
                       unsigned count)
{
    FIELD(j, put_key(j, key) && put_strings(j, values, count));
}

void json_line_members(struct json_line *j, const char *members, unsigned len)
{
    if (!len)
        return;
    FIELD(j, (j->len <= 1 || put_char(j, ',')) && put(j, members, len));
}

unsigned json_line_close(struct json_line *j)
{
    /* put() always left room for these two. */
    j->text[j->len++] = '}';
    j->text[j->len++] = '\n';
    return j->len;
}
