/* The line encoder: valid JSON for any input, fields whole or left out. */
#include <stdint.h>

#include "check.h"
#include "json_line.h"

static const char *closed(struct json_line *j)
{
    unsigned len = json_line_close(j);
    j->text[len - 1] = '\0'; /* drop the newline for comparison */
    return j->text;
}

static void fields(void)
{
    struct json_line j;
    json_line_open(&j);
    json_line_string(&j, "event", "close");
    json_line_int(&j, "fd", -1);
    json_line_int(&j, "min", INT64_MIN);
    json_line_uint(&j, "cookie", UINT64_MAX);
    json_line_bool(&j, "rst", true);
    json_line_bool(&j, "no", false);
    json_line_null(&j, "peer");
    json_line_string(&j, "none", NULL);
    CHECK_STR(closed(&j), "{\"event\":\"close\",\"fd\":-1,\"min\":-9223372036854775808,"
                          "\"cookie\":18446744073709551615,\"rst\":true,\"no\":false,"
                          "\"peer\":null,\"none\":null}");
    json_line_open(&j);
    CHECK_STR(closed(&j), "{}");
}

static void numbers(void)
{
    struct json_line j;
    json_line_open(&j);
    const uint64_t values[] = {0, 9, 10, 99, 100, 101, 1000, 65535, 10108755215699ull,
                               10000000000000000000ull};
    for (unsigned i = 0; i < sizeof values / sizeof values[0]; i++)
        json_line_uint(&j, "n", values[i]);
    json_line_int(&j, "neg", -100);
    CHECK_STR(closed(&j), "{\"n\":0,\"n\":9,\"n\":10,\"n\":99,\"n\":100,\"n\":101,\"n\":1000,"
                          "\"n\":65535,\"n\":10108755215699,\"n\":10000000000000000000,"
                          "\"neg\":-100}");
}

static void fixed_point(void)
{
    struct json_line j;
    json_line_open(&j);
    json_line_fixed(&j, "a", 90384, 6);
    json_line_fixed(&j, "b", 12345678901ull, 6);
    json_line_fixed(&j, "c", 7, 0);
    json_line_fixed(&j, "d", 0, 3);
    CHECK_STR(closed(&j), "{\"a\":0.090384,\"b\":12345.678901,\"c\":7,\"d\":0.000}");
}

static void escaping(void)
{
    struct json_line j;
    json_line_open(&j);
    json_line_string(&j, "s", "a\"b\\c\n\x01\x7f");
    CHECK_STR(closed(&j), "{\"s\":\"a\\\"b\\\\c\\u000a\\u0001\\u007f\"}");
    const char *flags[] = {"unread_data", "linger_zero"};
    json_line_open(&j);
    json_line_strings(&j, "flags", flags, 2);
    json_line_strings(&j, "none", flags, 0);
    CHECK_STR(closed(&j), "{\"flags\":[\"unread_data\",\"linger_zero\"],\"none\":[]}");
}

/* Every byte value, each between two plain ones: escaped exactly when JSON
 * requires it (controls, quote, backslash; DEL too), copied when ASCII, and
 * a lone byte >= 0x80 (never well-formed UTF-8 alone) written as U+FFFD. */
static void escaping_every_byte(void)
{
    for (int c = 1; c < 256; c++) {
        char value[4] = {'x', (char)c, 'y', '\0'};
        char expected[32];
        if (c == '"' || c == '\\')
            snprintf(expected, sizeof expected, "{\"s\":\"x\\%cy\"}", c);
        else if (c < 0x20 || c == 0x7f)
            snprintf(expected, sizeof expected, "{\"s\":\"x\\u%04xy\"}", c);
        else if (c >= 0x80)
            snprintf(expected, sizeof expected, "{\"s\":\"x\\ufffdy\"}");
        else
            snprintf(expected, sizeof expected, "{\"s\":\"x%cy\"}", c);
        struct json_line j;
        json_line_open(&j);
        json_line_string(&j, "s", value);
        CHECK_STR(closed(&j), expected);
    }
}

/* JSON text is UTF-8: well-formed sequences pass as they are, anything else
 * (overlong, surrogate, above U+10FFFF, cut short, a stray continuation)
 * becomes one U+FFFD per byte that could not start a character. */
static void utf8(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"caf\xc3\xa9", "caf\xc3\xa9"},                    /* U+00E9 */
        {"\xe2\x82\xac" "1", "\xe2\x82\xac" "1"},       /* U+20AC */
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},          /* U+1F600 */
        {"\xed\x9f\xbf", "\xed\x9f\xbf"},                  /* U+D7FF, below the surrogates */
        {"\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"},          /* U+10FFFF */
        {"\xc0\x80", "\\ufffd\\ufffd"},                    /* overlong NUL */
        {"\xe0\x80\xaf", "\\ufffd\\ufffd\\ufffd"},        /* overlong '/' */
        {"\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd"},        /* a surrogate */
        {"\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"}, /* above U+10FFFF */
        {"\xf5\x80", "\\ufffd\\ufffd"},
        {"a\xe2\x82", "a\\ufffd\\ufffd"},                  /* cut short at the end */
        {"\xe2\x82z", "\\ufffd\\ufffdz"},                  /* cut short before ASCII */
        {"\x80\xc3\xa9", "\\ufffd\xc3\xa9"},                /* stray continuation */
        {"\xc3\xa9\"\n", "\xc3\xa9\\\"\\u000a"},
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char expected[64];
        snprintf(expected, sizeof expected, "{\"s\":\"%s\"}", cases[i].out);
        struct json_line j;
        json_line_open(&j);
        json_line_string(&j, "s", cases[i].in);
        CHECK_STR(closed(&j), expected);
    }
}

static void overflow_leaves_fields_out_whole(void)
{
    static char big[JSON_LINE_CAPACITY];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct json_line j;
    json_line_open(&j);
    json_line_int(&j, "before", 1);
    json_line_string(&j, "big", big); /* cannot fit: left out, not cut */
    json_line_int(&j, "after", 2);
    CHECK(j.full);
    CHECK_STR(closed(&j), "{\"before\":1,\"after\":2}");
    /* Fill to the brim: the closing "}\n" always fits. */
    json_line_open(&j);
    for (int i = 0; i < 1000; i++)
        json_line_int(&j, "k", 12345);
    unsigned len = json_line_close(&j);
    CHECK(len <= JSON_LINE_CAPACITY);
    CHECK(j.text[len - 1] == '\n' && j.text[len - 2] == '}' && j.text[len - 3] == '5');
}

static void members(void)
{
    struct json_line j;
    json_line_open(&j);
    const char *identity = "\"pid\":7,\"comm\":\"a\"";
    json_line_members(&j, identity, (unsigned)strlen(identity));
    json_line_int(&j, "fd", 3);
    json_line_members(&j, "", 0); /* nothing: no stray comma */
    CHECK_STR(closed(&j), "{\"pid\":7,\"comm\":\"a\",\"fd\":3}");
    json_line_open(&j);
    json_line_int(&j, "fd", 3);
    json_line_members(&j, "\"x\":1", 5);
    CHECK_STR(closed(&j), "{\"fd\":3,\"x\":1}");
    /* Too long to fit: left out whole, like any field. */
    static char big[JSON_LINE_CAPACITY];
    memset(big, 'x', sizeof big);
    json_line_open(&j);
    json_line_int(&j, "a", 1);
    json_line_members(&j, big, sizeof big);
    CHECK(j.full);
    CHECK_STR(closed(&j), "{\"a\":1}");
}

void test_json_line(void)
{
    members();
    numbers();
    fields();
    fixed_point();
    escaping();
    escaping_every_byte();
    utf8();
    overflow_leaves_fields_out_whole();
}
