/* The kernel's listen-queue counters, and whose listeners they can be
 * blamed on.  The parsers are pure: unit-tested on captured text. */
#ifndef RSTSHIM_NETSTAT_H
#define RSTSHIM_NETSTAT_H

#include <stdbool.h>
#include <stdint.h>

/* ListenOverflows and ListenDrops from the text of /proc/net/netstat. */
bool netstat_parse_listen(const char *text, uint64_t *overflows, uint64_t *drops);

/* The inodes of the LISTEN sockets (state 0A) in the text of /proc/net/tcp
 * or tcp6; returns how many were found (at most max are stored). */
int netstat_parse_listeners(const char *text, uint64_t *inodes, int max);

/* ---- in the shim ---- */

/* At the first listen(): the counters' starting point. */
void netstat_start(void);
/* A listen_drops line when the counters moved since the last one, saying
 * whether this process owns every listener in its network namespace (then
 * the drops are its own).  `at`: "accept" (at most every 10 s), "close"
 * (a listener about to be released: it is still there to be named) or
 * "exit".  releasing_fd: a listener already out of the table but still open
 * (its release is being prepared), or -1.  now: CLOCK_MONOTONIC ns. */
void netstat_report(const char *at, int releasing_fd, uint64_t now);

#endif
