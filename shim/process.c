/* The process and thread the shim lives in: ids and names, cached. */
#include "process.h"

#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "guard.h"

SHIM_HIDDEN struct config shim_config;
SHIM_HIDDEN pid_t shim_pid;

/* Asked once per thread: gettid() is a syscall. */
static __thread pid_t thread_id __attribute__((tls_model("initial-exec")));

pid_t process_tid(void)
{
    if (!thread_id)
        thread_id = gettid();
    return thread_id;
}

const char *process_comm(char out[PROCESS_COMM_MAX])
{
    char name[17] = {0};
    if (prctl(PR_GET_NAME, name) != 0)
        strcpy(name, "?");
    /* comm is whatever the program set: keep the line plain ASCII. */
    format_printable(name, 16, out, PROCESS_COMM_MAX);
    return out;
}

void process_after_fork_in_child(void)
{
    shim_pid = getpid();
    thread_id = 0;
}

uint64_t process_monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}
