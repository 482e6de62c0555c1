/* One log line: the common fields, then the event's own (see include/log.h).
 *
 * Lines are built only when log_wants() said they will be written, so the
 * cost here is paid per written line, never per call. */
#include <string.h>
#include <time.h>

#include "format.h"
#include "guard.h"
#include "log.h"
#include "process.h"
#include "verdict.h"

/* The calling thread's last timestamp: within the same second only the
 * microseconds change (a signal handler cannot interrupt this halfway and
 * use it: the guard passes its calls through). */
static __thread struct {
    int64_t second;
    char text[FORMAT_TIMESTAMP_MAX];
} last_ts __attribute__((tls_model("initial-exec")));

static const char *timestamp(const struct timespec *now)
{
    if (now->tv_sec == last_ts.second && last_ts.text[0])
        format_timestamp_micros(last_ts.text, now->tv_nsec);
    else
        format_timestamp(now->tv_sec, now->tv_nsec, last_ts.text);
    last_ts.second = now->tv_sec;
    return last_ts.text;
}

bool logline_begin(struct logline *line, const char *event, int fd, bool flagged)
{
    line->active = log_wants(flagged);
    if (!line->active)
        return false;
    struct json_line *j = &line->json;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    json_line_open(j);
    json_line_string(j, "ts", timestamp(&now));
    uint64_t mono_ns = line->mono_ns = process_monotonic_ns();
    json_line_uint(j, "mono_ns", mono_ns);
    json_line_string(j, "event", event);
    unsigned identity_len;
    const char *identity = process_identity_members(mono_ns, &identity_len);
    json_line_members(j, identity, identity_len);
    json_line_int(j, "fd", fd);
    if (shim_config.tag[0])
        json_line_string(j, "tag", shim_config.tag_printable);
    return true;
}

void logline_string(struct logline *line, const char *key, const char *value)
{
    if (line->active)
        json_line_string(&line->json, key, value);
}

void logline_int(struct logline *line, const char *key, long long value)
{
    if (line->active)
        json_line_int(&line->json, key, value);
}

void logline_uint(struct logline *line, const char *key, uint64_t value)
{
    if (line->active)
        json_line_uint(&line->json, key, value);
}

void logline_fixed(struct logline *line, const char *key, uint64_t value, unsigned decimals)
{
    if (line->active)
        json_line_fixed(&line->json, key, value, decimals);
}

void logline_bool(struct logline *line, const char *key, bool value)
{
    if (line->active)
        json_line_bool(&line->json, key, value);
}

void logline_null(struct logline *line, const char *key)
{
    if (line->active)
        json_line_null(&line->json, key);
}

void logline_tristate(struct logline *line, const char *key, int value)
{
    if (!line->active)
        return;
    if (value < 0)
        json_line_null(&line->json, key);
    else
        json_line_bool(&line->json, key, value);
}

void logline_address(struct logline *line, const char *key, const struct sockaddr *sa,
                     socklen_t len)
{
    char text[FORMAT_ADDRESS_MAX];
    if (line->active)
        json_line_string(&line->json, key, format_address(sa, len, text) ? text : NULL);
}

void logline_flags(struct logline *line, const char *key, unsigned flags)
{
    const char *names[FLAG_COUNT];
    unsigned count = 0;
    if (!line->active)
        return;
    for (unsigned bit = 0; bit < FLAG_COUNT; bit++)
        if (flags & (1u << bit))
            names[count++] = verdict_flag_name(bit);
    json_line_strings(&line->json, key, names, count);
}

void logline_end(struct logline *line)
{
    if (!line->active)
        return;
    line->active = false;
    unsigned len = json_line_close(&line->json);
    log_write_line(line->json.text, len);
}

void logline_discard(struct logline *line) { line->active = false; }
