/* Encoding one log line with jansson into a per-thread buffer.
 *
 * Lines are built only when log_wants() said they will be written, so the
 * cost here is paid per written line, never per call. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format.h"
#include "guard.h"
#include "log.h"
#include "process.h"
#include "verdict.h"

#define LINE_BUFFER_SIZE 2048

static __thread char line_buffer[LINE_BUFFER_SIZE] __attribute__((tls_model("initial-exec")));

static void set(struct logline *line, const char *key, json_t *value)
{
    if (line->object)
        json_object_set_new_nocheck((json_t *)line->object, key, value ? value : json_null());
}

bool logline_begin(struct logline *line, const char *event, int fd, bool flagged)
{
    line->object = NULL;
    if (!log_wants(flagged))
        return false;
    line->object = json_object();
    if (!line->object)
        return false;

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char ts[FORMAT_TIMESTAMP_MAX];
    format_timestamp(now.tv_sec, now.tv_nsec, ts);
    set(line, "ts", json_string_nocheck(ts));
    set(line, "mono_ns", json_integer((json_int_t)process_monotonic_ns()));
    set(line, "event", json_string_nocheck(event));
    set(line, "pid", json_integer(shim_pid));
    set(line, "tid", json_integer(process_tid()));
    set(line, "comm", json_string_nocheck(process_comm()));
    set(line, "fd", json_integer(fd));
    if (shim_config.tag[0]) {
        char tag[CONFIG_TAG_MAX * 4];
        format_printable(shim_config.tag, CONFIG_TAG_MAX, tag, sizeof tag);
        set(line, "tag", json_string_nocheck(tag));
    }
    return true;
}

void logline_string(struct logline *line, const char *key, const char *value)
{
    set(line, key, value ? json_string_nocheck(value) : json_null());
}

void logline_int(struct logline *line, const char *key, long long value)
{
    set(line, key, json_integer(value));
}

void logline_uint(struct logline *line, const char *key, uint64_t value)
{
    /* jansson's integers are signed 64-bit; SO_COOKIE values stay far below 2^63. */
    set(line, key, json_integer((json_int_t)value));
}

void logline_real(struct logline *line, const char *key, double value)
{
    set(line, key, json_real(value));
}

void logline_bool(struct logline *line, const char *key, bool value)
{
    set(line, key, json_boolean(value));
}

void logline_null(struct logline *line, const char *key) { set(line, key, json_null()); }

void logline_tristate(struct logline *line, const char *key, int value)
{
    set(line, key, value < 0 ? json_null() : json_boolean(value));
}

void logline_address(struct logline *line, const char *key, const struct sockaddr *sa,
                     socklen_t len)
{
    char text[FORMAT_ADDRESS_MAX];
    set(line, key, format_address(sa, len, text) ? json_string_nocheck(text) : json_null());
}

void logline_flags(struct logline *line, const char *key, unsigned flags)
{
    json_t *array = json_array();
    for (unsigned bit = 0; array && bit < FLAG_COUNT; bit++)
        if (flags & (1u << bit))
            json_array_append_new(array, json_string_nocheck(verdict_flag_name(bit)));
    set(line, key, array);
}

void logline_end(struct logline *line)
{
    json_t *object = line->object;
    if (!object)
        return;
    line->object = NULL;
    /* Ten significant digits: durations read as 12.345, not 12.345000000000001. */
    size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(10);
    size_t need = json_dumpb(object, line_buffer, LINE_BUFFER_SIZE - 1, flags);
    if (need && need < LINE_BUFFER_SIZE) {
        line_buffer[need] = '\n';
        log_write_line(line_buffer, need + 1);
    } else if (need) {
        char *big = malloc(need + 1); /* very long lines (a long tag or comm): rare */
        if (big && json_dumpb(object, big, need, flags) == need) {
            big[need] = '\n';
            log_write_line(big, need + 1);
        }
        free(big);
    }
    json_decref(object);
}

void logline_discard(struct logline *line)
{
    json_decref((json_t *)line->object);
    line->object = NULL;
}
