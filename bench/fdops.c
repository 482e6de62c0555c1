/* bench/fdops.c -- untracked fds: the worker the bench runs bare and under
 * the shim, side by side.
 *
 *   fdops FILE
 *
 * Reads commands on stdin, one per line, answers each on stdout:
 *   "F NS\n"  open/read/close FILE for NS nanoseconds -> "OPS ELAPSED_NS\n"
 *   "P NS\n"  1-byte reads of a pipe for NS nanoseconds -> "OPS ELAPSED_NS\n"
 *   "Q\n"     exit
 * The time is measured here, around the operations only, so the command's
 * round trip through the pipe is not in it.  The pipe is refilled with one
 * 64 KiB write every 65,536 reads.  Exits at EOF on stdin, when its parent
 * dies, or after 900 s. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common.h"

#define BATCH 16          /* operations between two clock reads */
#define MAX_OPS 100000000 /* per command: a bound, never reached in 20 ms */
#define PIPE_CHUNK 65536

static const char *path;
static int pipe_r, pipe_w;
static size_t pipe_avail;
static char chunk[PIPE_CHUNK];

static int file_op(void)
{
    char buf[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n > 0 ? 0 : -1;
}

static int pipe_op(void)
{
    char c;
    if (pipe_avail == 0) {
        if (write_all(pipe_w, chunk, sizeof chunk) != 0)
            return -1;
        pipe_avail = sizeof chunk;
    }
    if (read(pipe_r, &c, 1) != 1)
        return -1;
    pipe_avail--;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fdops FILE\n");
        return 2;
    }
    path = argv[1];
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return 1;
    pipe_r = p[0];
    pipe_w = p[1];
    fcntl(pipe_w, F_SETPIPE_SZ, 1 << 20);
    memset(chunk, 'p', sizeof chunk);
    if (file_op() != 0) {
        perror("fdops: open");
        return 1;
    }

    uint64_t deadline = now_ns() + 900ull * 1000000000u;
    char line[128];
    size_t have = 0;
    while (now_ns() < deadline) {
        ssize_t n = read(0, line + have, sizeof line - 1 - have);
        if (n <= 0)
            return 0;
        have += (size_t)n;
        line[have] = 0;
        char *nl = strchr(line, '\n');
        if (!nl) {
            if (have >= sizeof line - 1)
                return 1;
            continue;
        }
        char kind = line[0];
        uint64_t slice = strtoull(line + 1, NULL, 10);
        have = 0;
        if (kind == 'Q')
            return 0;
        int (*op)(void) = kind == 'F' ? file_op : kind == 'P' ? pipe_op : NULL;
        if (!op)
            return 1;
        uint64_t ops = 0, t0 = now_ns(), t = t0;
        int failed = 0;
        while (t - t0 < slice && ops < MAX_OPS && !failed) {
            for (int i = 0; i < BATCH; i++)
                failed |= op();
            ops += BATCH;
            t = now_ns();
        }
        char out[64];
        int k = snprintf(out, sizeof out, "%llu %llu\n", failed ? 0ull : (unsigned long long)ops,
                         (unsigned long long)(t - t0));
        if (write_all(1, out, (size_t)k) != 0)
            return 1;
    }
    return 0;
}
