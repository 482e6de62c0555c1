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
/* The calling thread's name now (it may have been renamed since its last
 * line, as ps and bpftrace would show), printable. */
#define PROCESS_COMM_MAX 68
const char *process_comm(char out[PROCESS_COMM_MAX]);
/* In a forked child: forget the parent thread's cached id and name. */
void process_after_fork_in_child(void);

uint64_t process_monotonic_ns(void);

#endif
