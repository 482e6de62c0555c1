/* Small helpers shared by the subcommands. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

#include "tool.h"

double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Strict: digits only, no sign, no trailing junk, fits in a long. */
bool parse_nonneg_int(const char *s, long *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/* Messages of the command itself are prefixed so they stand out among the
 * child's own stderr output. */
void warnx(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("rstshim: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
