/* What the shim knows about the process and thread it lives in. */
#ifndef RSTSHIM_PROCESS_H
#define RSTSHIM_PROCESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

extern struct config shim_config;
extern pid_t shim_pid; /* refreshed in a forked child */

/* The calling thread's id, asked of the kernel once per thread. */
pid_t process_tid(void);
/* The calling thread's name, printable, as ps and bpftrace show it, is
 * kept per thread (PR_GET_NAME is a syscall) and asked again after a rename
 * through prctl(PR_SET_NAME) or pthread_setname_np(), or when a second has
 * passed (a name written to /proc/PID/task/TID/comm, or set by a raw
 * syscall). */
#define PROCESS_COMM_MAX 68
/* "pid":P,"tid":T,"comm":"C" for the calling thread, JSON-encoded once and
 * kept with the name (same refresh rules); *len gets its length. */
const char *process_identity_members(uint64_t now_ns, unsigned *len);
/* A thread of this process was renamed: every thread asks again. */
void process_comm_renamed(void);
/* In a forked child: forget the parent thread's cached id and name. */
void process_after_fork_in_child(void);

uint64_t process_monotonic_ns(void);

/* Forks (pthread_atfork): a fork is counted as started before its syscall
 * and as finished after it, in parent and child.  Marking the sockets a
 * fork copied by scanning the table after it cannot be exact while other
 * threads create, copy and close: a socket created before the syscall and
 * entered after the scan, one that moved (dup2, then close of its old fd)
 * to a slot the scan had passed, one taken out just before the syscall and
 * closed just after.  The counters close those windows: a socket may be in
 * a child if a fork finished since before the call that created it, or one
 * is under way now. */
extern uint32_t process_forks_started, process_forks_finished;

/* Read before a call that creates a socket; kept in its record. */
static inline uint32_t process_forks(void)
{
    return __atomic_load_n(&process_forks_finished, __ATOMIC_ACQUIRE);
}

/* Both counters at one moment: finished first, so that a fork finishing
 * between the two reads shows as under way, never as not yet started. */
struct fork_counts {
    uint32_t started, finished;
};

static inline struct fork_counts process_fork_counts(void)
{
    struct fork_counts now;
    now.finished = __atomic_load_n(&process_forks_finished, __ATOMIC_ACQUIRE);
    now.started = __atomic_load_n(&process_forks_started, __ATOMIC_ACQUIRE);
    return now;
}

static inline bool forked_since(struct fork_counts now, uint32_t forks)
{
    return now.finished != forks || now.started != now.finished;
}

static inline bool process_forked_since(uint32_t forks)
{
    return forked_since(process_fork_counts(), forks);
}

#endif
