/* bench/common.h -- small helpers shared by the bench's programs. */
#ifndef RSTSHIM_BENCH_COMMON_H
#define RSTSHIM_BENCH_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* write() all of it, retrying on EINTR and short writes; -1 on error. */
static inline int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    for (unsigned tries = 0; len > 0 && tries < 1000000; tries++) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return len == 0 ? 0 : -1;
}

#endif
