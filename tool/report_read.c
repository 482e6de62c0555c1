/* Reading logs for `report`: large blocks of whole lines, parsed in
 * parallel.
 *
 * jansson parses about 40 MB/s on one core here, and a busy server's log
 * is gigabytes, so the reading thread only cuts the input into blocks that
 * end on a '\n' and hands them to worker threads, each adding into its own
 * set of totals (a shard); report_finish merges the shards.  Memory stays
 * flat: a fixed pool of blocks cycles between the reader and the workers.
 * A line longer than a block is counted and skipped. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report_int.h"
#include "tool.h"

#define BLOCK_SIZE (4u << 20) /* also the longest line accepted */
#define MAX_WORKERS 4
#define MAX_BLOCKS (2 * MAX_WORKERS + 2)
#define PROGRESS_EVERY_S 2.0

struct block {
    char *buf;
    size_t len;
    bool tail_cut; /* the last line has no '\n': the file ended inside it */
};

struct worker {
    struct reader *rd;
    struct report *shard;
    pthread_t tid;
};

struct reader {
    int nworkers; /* 0: parse in the reading thread */
    struct worker w[MAX_WORKERS];
    pthread_mutex_t mu;
    pthread_cond_t has_work, has_free;
    struct block queue[MAX_BLOCKS];
    int qhead, qlen;
    char *free_buf[MAX_BLOCKS];
    int nfree, nblocks;
    char *all_buf[MAX_BLOCKS];
    bool closing, finished;
    bool progress;
    double t_start, t_last;
};

/* ------------------------------------------------------ parsing a block */

static void parse_block(struct report *r, const char *buf, size_t len, bool tail_cut)
{
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        if (!nl) {
            report_line(r, buf + pos, len - pos, !tail_cut);
            return;
        }
        report_line(r, buf + pos, (size_t)(nl - buf) - pos, true);
        pos = (size_t)(nl - buf) + 1;
    }
}

/* ------------------------------------------------------------ block pool */

static char *take_buffer(struct reader *rd)
{
    pthread_mutex_lock(&rd->mu);
    while (rd->nfree == 0)
        pthread_cond_wait(&rd->has_free, &rd->mu);
    char *b = rd->free_buf[--rd->nfree];
    pthread_mutex_unlock(&rd->mu);
    return b;
}

static void give_back(struct reader *rd, char *buf)
{
    pthread_mutex_lock(&rd->mu);
    rd->free_buf[rd->nfree++] = buf;
    pthread_cond_signal(&rd->has_free);
    pthread_mutex_unlock(&rd->mu);
}

static void submit(struct report *r, char *buf, size_t len, bool tail_cut)
{
    struct reader *rd = r->reader;
    if (!rd->nworkers) {
        parse_block(r, buf, len, tail_cut);
        give_back(rd, buf);
        return;
    }
    pthread_mutex_lock(&rd->mu);
    /* never full: there are only as many blocks as queue slots */
    rd->queue[(rd->qhead + rd->qlen++) % MAX_BLOCKS] = (struct block){buf, len, tail_cut};
    pthread_cond_signal(&rd->has_work);
    pthread_mutex_unlock(&rd->mu);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct reader *rd = w->rd;
    for (;;) {
        pthread_mutex_lock(&rd->mu);
        while (!rd->qlen && !rd->closing)
            pthread_cond_wait(&rd->has_work, &rd->mu);
        if (!rd->qlen) { /* closing and nothing left */
            pthread_mutex_unlock(&rd->mu);
            return NULL;
        }
        struct block b = rd->queue[rd->qhead];
        rd->qhead = (rd->qhead + 1) % MAX_BLOCKS;
        rd->qlen--;
        pthread_mutex_unlock(&rd->mu);
        parse_block(w->shard, b.buf, b.len, b.tail_cut);
        give_back(rd, b.buf);
    }
}

/* ------------------------------------------------------------- lifecycle */

static int choose_workers(int asked)
{
    if (asked <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        asked = cpus > 0 ? (int)cpus : 1;
    }
    if (asked > MAX_WORKERS)
        asked = MAX_WORKERS;
    return asked <= 1 ? 0 : asked;
}

static int start_workers(struct reader *rd)
{
    for (int i = 0; i < rd->nworkers; i++) {
        rd->w[i].rd = rd;
        rd->w[i].shard = report_alloc();
        if (!rd->w[i].shard || pthread_create(&rd->w[i].tid, NULL, worker_main, &rd->w[i])) {
            report_release(rd->w[i].shard);
            rd->nworkers = i; /* run with the ones that started */
            break;
        }
    }
    return 0;
}

struct report *report_new(int workers, bool progress)
{
    struct report *r = report_alloc();
    struct reader *rd = r ? calloc(1, sizeof *rd) : NULL;
    if (!rd) {
        report_release(r);
        return NULL;
    }
    r->reader = rd;
    pthread_mutex_init(&rd->mu, NULL);
    pthread_cond_init(&rd->has_work, NULL);
    pthread_cond_init(&rd->has_free, NULL);
    rd->nworkers = choose_workers(workers);
    rd->nblocks = rd->nworkers ? 2 * rd->nworkers + 2 : 2;
    for (int i = 0; i < rd->nblocks; i++) {
        rd->all_buf[i] = malloc(BLOCK_SIZE);
        if (!rd->all_buf[i]) {
            report_free(r);
            return NULL;
        }
        rd->free_buf[rd->nfree++] = rd->all_buf[i];
    }
    rd->progress = progress;
    rd->t_start = rd->t_last = mono_seconds();
    start_workers(rd);
    return r;
}

void report_finish(struct report *r)
{
    struct reader *rd = r->reader;
    if (!rd || rd->finished)
        return;
    pthread_mutex_lock(&rd->mu);
    rd->closing = true;
    pthread_cond_broadcast(&rd->has_work);
    pthread_mutex_unlock(&rd->mu);
    for (int i = 0; i < rd->nworkers; i++) {
        pthread_join(rd->w[i].tid, NULL);
        report_merge(r, rd->w[i].shard);
        report_release(rd->w[i].shard);
    }
    rd->finished = true;
}

void report_free(struct report *r)
{
    if (!r)
        return;
    struct reader *rd = r->reader;
    if (rd) {
        report_finish(r);
        for (int i = 0; i < rd->nblocks; i++)
            free(rd->all_buf[i]);
        pthread_mutex_destroy(&rd->mu);
        pthread_cond_destroy(&rd->has_work);
        pthread_cond_destroy(&rd->has_free);
        free(rd);
    }
    report_release(r);
}

/* -------------------------------------------------------------- progress */

static void human_bytes(double b, char *out, size_t len)
{
    const char *unit[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    while (b >= 1000 && u < 4) {
        b /= 1000;
        u++;
    }
    snprintf(out, len, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

static void maybe_progress(struct report *r, const char *name)
{
    struct reader *rd = r->reader;
    double now = mono_seconds();
    if (!rd->progress || now - rd->t_last < PROGRESS_EVERY_S)
        return;
    rd->t_last = now;
    char done[32], total[32], rate[32];
    human_bytes((double)r->bytes, done, sizeof done);
    human_bytes((double)r->bytes / (now - rd->t_start), rate, sizeof rate);
    if (r->bytes_expected >= r->bytes) {
        human_bytes((double)r->bytes_expected, total, sizeof total);
        fprintf(stderr, "rstshim report: %s: %s of %s read (%.0f%%), %s/s\n", name, done, total,
                100.0 * (double)r->bytes / (double)r->bytes_expected, rate);
    } else {
        fprintf(stderr, "rstshim report: %s: %s read, %s/s\n", name, done, rate);
    }
}

/* --------------------------------------------------------------- reading */

/* Fill buf up to BLOCK_SIZE (pipes return little at a time).  Returns 1 at
 * end of file, 0 when full, -1 on error. */
static int fill(struct report *r, int fd, char *buf, size_t *have, const char *name)
{
    while (*have < BLOCK_SIZE) {
        ssize_t n = read(fd, buf + *have, BLOCK_SIZE - *have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            warnx("report: %s: %s", name, strerror(errno));
            return -1;
        }
        if (n == 0)
            return 1;
        *have += (size_t)n;
        r->bytes += (uint64_t)n;
    }
    return 0;
}

static int feed_fd(struct report *r, int fd, const char *name)
{
    struct reader *rd = r->reader;
    char *buf = take_buffer(rd);
    size_t have = 0;
    bool skipping = false; /* inside a line longer than a block */
    for (;;) {
        int eof = fill(r, fd, buf, &have, name);
        if (eof < 0) {
            give_back(rd, buf);
            return -1;
        }
        if (skipping) {
            char *nl = memchr(buf, '\n', have);
            size_t drop = nl ? (size_t)(nl - buf) + 1 : have;
            memmove(buf, buf + drop, have - drop);
            have -= drop;
            skipping = !nl;
        }
        if (eof)
            break;
        if (have < BLOCK_SIZE)
            continue;
        char *nl = memrchr(buf, '\n', have);
        if (!nl) { /* one line fills the block: count it, skip its rest */
            r->oversized++;
            r->lines++;
            skipping = true;
            have = 0;
            continue;
        }
        size_t used = (size_t)(nl - buf) + 1;
        char *next = take_buffer(rd);
        memcpy(next, buf + used, have - used); /* the started line moves on */
        submit(r, buf, used, false);
        buf = next;
        have -= used;
        maybe_progress(r, name);
    }
    if (have && !skipping)
        submit(r, buf, have, true);
    else
        give_back(rd, buf);
    return 0;
}

int report_feed_path(struct report *r, const char *path, long long start)
{
    bool is_stdin = !strcmp(path, "-");
    int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    r->files++;
    if (fd < 0) {
        warnx("report: %s: %s", path, strerror(errno));
        r->files_failed++;
        return -1;
    }
    struct stat st;
    if (!is_stdin && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if (start > st.st_size)
            start = 0; /* truncated or replaced since: read it all */
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    if (start > 0 && lseek(fd, (off_t)start, SEEK_SET) < 0)
        start = 0;
    int rc = feed_fd(r, fd, is_stdin ? "stdin" : path);
    if (rc)
        r->files_failed++;
    if (!is_stdin)
        close(fd);
    return rc;
}
