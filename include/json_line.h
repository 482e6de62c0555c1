/* A JSON object encoded straight into a fixed buffer: no allocation, no
 * locks, nothing a signal handler or a forked child of a threaded process
 * must not call.  Pure: unit-tested. */
#ifndef RSTSHIM_JSON_LINE_H
#define RSTSHIM_JSON_LINE_H

#include <stdbool.h>
#include <stdint.h>

/* The longest line: a close line is ~500 bytes; the fields of hostile
 * origin are bounded: the tag (127 bytes), comm (15) and a bad config value
 * (256), each up to 5 characters a byte once escaped: ~2.3 KiB at worst. */
#define JSON_LINE_CAPACITY 4096

struct json_line {
    unsigned len;
    bool full; /* a field did not fit and was left out whole */
    char text[JSON_LINE_CAPACITY];
};

void json_line_open(struct json_line *j);
/* Keys are the shim's own identifiers and are written as given. */
void json_line_string(struct json_line *j, const char *key, const char *value); /* NULL: null */
void json_line_int(struct json_line *j, const char *key, long long value);
void json_line_uint(struct json_line *j, const char *key, uint64_t value);
/* value / 10^decimals as a decimal number: 90384 with 6 decimals is 0.090384. */
void json_line_fixed(struct json_line *j, const char *key, uint64_t value, unsigned decimals);
void json_line_bool(struct json_line *j, const char *key, bool value);
void json_line_null(struct json_line *j, const char *key);
void json_line_strings(struct json_line *j, const char *key, const char *const *values,
                       unsigned count);
/* Appends members already encoded ("a":1,"b":"x", no leading comma) as
 * one field: whole or not at all. */
void json_line_members(struct json_line *j, const char *members, unsigned len);
/* Appends "}\n" and returns the length of the line. */
unsigned json_line_close(struct json_line *j);

#endif
