/* The log: where lines go, and one line built and written at a time. */
#ifndef RSTSHIM_LOG_H
#define RSTSHIM_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "json_line.h"

/* Opens the log named by the configuration (a file is opened
 * O_APPEND|O_CLOEXEC|O_NOFOLLOW, mode 0600, %p expanded).  On failure it
 * says why on stderr, once, and the shim goes quiet. */
void log_open(const struct config *cfg);

/* In a forked child: a %p log gets a file of its own. */
void log_after_fork_in_child(const struct config *cfg);

/* Whether a line would be written now.  Callers ask before probing the
 * kernel for details that only the line needs. */
bool log_wants(bool flagged);

/* Writes one encoded line (ending in '\n') with one write(2); on failure
 * the shim goes quiet and says why, once. */
void log_write_line(const char *data, size_t len);

/* The fd the log writes to, or -1. */
int log_fd(void);

/* Whether fd is the log file the shim opened itself.  Such an fd does not
 * exist for the host: its close() gets EBADF as it would without the shim
 * (daemons close every fd at start), and a dup2() onto it first moves the
 * log elsewhere (log_move_away_from). */
extern int log_owned_fd;
static inline bool log_owns_fd(int fd) { return fd == log_owned_fd && fd >= 0; }
void log_move_away_from(int fd);

/* ---- building one line ----
 * logline_begin() adds the common fields; the others add one field each;
 * logline_end() writes the line with one write(2).  A line lives in the
 * caller's struct (on its stack): no allocation anywhere, so a close() in a
 * signal handler or in the forked child of a threaded process is safe, and
 * a release can build its line before the real call and write it after. */
struct logline {
    bool active;      /* begun and to be written */
    uint64_t mono_ns; /* CLOCK_MONOTONIC at logline_begin(): the line's mono_ns */
    struct json_line json;
};

bool logline_begin(struct logline *line, const char *event, int fd, bool flagged);
void logline_string(struct logline *line, const char *key, const char *value); /* NULL: null */
void logline_int(struct logline *line, const char *key, long long value);
void logline_uint(struct logline *line, const char *key, uint64_t value);
/* value / 10^decimals, e.g. nanoseconds as milliseconds with 6 decimals */
void logline_fixed(struct logline *line, const char *key, uint64_t value, unsigned decimals);
void logline_bool(struct logline *line, const char *key, bool value);
void logline_null(struct logline *line, const char *key);
/* true / false / null for 1 / 0 / -1 */
void logline_tristate(struct logline *line, const char *key, int value);
/* "127.0.0.1:80" or null when len is 0 */
void logline_address(struct logline *line, const char *key, const struct sockaddr *sa,
                     socklen_t len);
/* An array of the names of the set enum close_flag bits. */
void logline_flags(struct logline *line, const char *key, unsigned flags);
void logline_end(struct logline *line);
/* Drops a line built before a real call that then failed. */
void logline_discard(struct logline *line);

#endif
