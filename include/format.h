/* Text the log needs: pure functions, unit-tested. */
#ifndef RSTSHIM_FORMAT_H
#define RSTSHIM_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* "127.0.0.1:8080" or "[::1]:8080" (IPv4-mapped IPv6 stays in brackets).
 * Returns the length, or 0 (and "") for an empty or non-IP address. */
#define FORMAT_ADDRESS_MAX 64
size_t format_address(const struct sockaddr *sa, socklen_t len, char out[FORMAT_ADDRESS_MAX]);

/* RFC 3339 UTC with microseconds: "2026-11-21T23:59:59.123456Z".  Pure
 * arithmetic (no gmtime: no locks, no time zone files, async-signal-safe). */
#define FORMAT_TIMESTAMP_MAX 32
size_t format_timestamp(int64_t seconds, long nanoseconds, char out[FORMAT_TIMESTAMP_MAX]);
/* Rewrites only the microseconds of a timestamp format_timestamp() made:
 * the rest stays right while the second is the same. */
void format_timestamp_micros(char ts[FORMAT_TIMESTAMP_MAX], long nanoseconds);

/* "EMFILE" for EMFILE, ...; "E<number>" for the rest, in out. */
const char *format_errno_name(int err, char out[16]);

/* Copies at most max_in bytes of untrusted text into out (capacity
 * out_size), keeping printable ASCII and turning every other byte into
 * "\xNN", so the result is valid UTF-8 for any input. */
size_t format_printable(const char *in, size_t max_in, char *out, size_t out_size);

#endif
