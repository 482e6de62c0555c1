/* What the shim knows about the process and thread it lives in. */
#ifndef RSTSHIM_PROCESS_H
#define RSTSHIM_PROCESS_H

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

#endif
