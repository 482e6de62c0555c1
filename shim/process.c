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

/* Asked once per thread: gettid() and prctl() are syscalls. */
static __thread pid_t thread_id __attribute__((tls_model("initial-exec")));
static __thread char thread_comm[64] __attribute__((tls_model("initial-exec")));

pid_t process_tid(void)
{
    if (!thread_id)
        thread_id = gettid();
    return thread_id;
}

const char *process_comm(void)
{
    if (!thread_comm[0]) {
        char name[17] = {0};
        if (prctl(PR_GET_NAME, name) != 0)
            strcpy(name, "?");
        /* comm is whatever the program set: keep the line valid UTF-8. */
        format_printable(name, 16, thread_comm, sizeof thread_comm);
    }
    return thread_comm;
}

void process_after_fork_in_child(void)
{
    shim_pid = getpid();
    thread_id = 0;
    thread_comm[0] = '\0';
}

uint64_t process_monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}
