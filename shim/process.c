/* The process and thread the shim lives in: ids and names, cached. */
#include "process.h"

#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "guard.h"
#include "real.h"

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

static unsigned comm_generation; /* bumped by every rename the shim sees */

#define COMM_REFRESH_NS 1000000000ull

/* The members every line starts with, "pid":P,"tid":T,"comm":"C": comm is
 * printable ASCII, so escaping can at most double it. */
#define IDENTITY_MAX (2 * PROCESS_COMM_MAX + 64)

static __thread struct {
    uint64_t read_ns; /* CLOCK_MONOTONIC when asked; 0: never */
    unsigned generation;
    char text[PROCESS_COMM_MAX];
    unsigned identity_len;
    char identity[IDENTITY_MAX];
} comm_cache __attribute__((tls_model("initial-exec")));

static size_t put_text(char *at, const char *text)
{
    size_t n = strlen(text);
    memcpy(at, text, n);
    return n;
}

static size_t put_number(char *at, long value)
{
    char digits[24];
    size_t n = 0;
    unsigned long magnitude = value < 0 ? 0ul - (unsigned long)value : (unsigned long)value;
    do {
        digits[n++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    size_t at_start = 0;
    if (value < 0)
        at[at_start++] = '-';
    while (n)
        at[at_start++] = digits[--n];
    return at_start;
}

/* Encodes the identity members straight into the cache (no line buffer
 * on the stack: this runs under a close that may be in a signal handler
 * on a small alternate stack).  comm_cache.text came from
 * format_printable(): printable ASCII with no backslash, so '"' is the only
 * byte JSON needs escaped. */
static void encode_identity(void)
{
    char *out = comm_cache.identity, *at = out;
    at += put_text(at, "\"pid\":");
    at += put_number(at, shim_pid);
    at += put_text(at, ",\"tid\":");
    at += put_number(at, process_tid());
    at += put_text(at, ",\"comm\":\"");
    for (const char *c = comm_cache.text; *c; c++) {
        if (*c == '"' || *c == '\\')
            *at++ = '\\';
        *at++ = *c;
    }
    *at++ = '"';
    comm_cache.identity_len = (unsigned)(at - out);
}

static const char *process_comm(uint64_t now_ns)
{
    unsigned generation = __atomic_load_n(&comm_generation, __ATOMIC_ACQUIRE);
    if (comm_cache.read_ns && comm_cache.generation == generation &&
        now_ns - comm_cache.read_ns < COMM_REFRESH_NS)
        return comm_cache.text;
    char name[17] = {0};
    if (REAL(prctl)(PR_GET_NAME, (unsigned long)name, 0, 0, 0) != 0)
        strcpy(name, "?");
    /* comm is whatever the program set: keep the line plain ASCII. */
    format_printable(name, 16, comm_cache.text, PROCESS_COMM_MAX);
    comm_cache.generation = generation;
    comm_cache.read_ns = now_ns ? now_ns : 1;
    encode_identity();
    return comm_cache.text;
}

const char *process_identity_members(uint64_t now_ns, unsigned *len)
{
    process_comm(now_ns); /* refreshes the members with the name */
    *len = comm_cache.identity_len;
    return comm_cache.identity;
}

void process_comm_renamed(void) { __atomic_add_fetch(&comm_generation, 1, __ATOMIC_RELEASE); }

uint32_t process_forks_started, process_forks_finished;

void process_after_fork_in_child(void)
{
    shim_pid = getpid();
    thread_id = 0;
    comm_cache.read_ns = 0;
}

uint64_t process_monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}
