/* The words of a socket record that threads update without a lock
 * (include/fdtab.h): what the receive wrappers saw read, and the SEEN_*
 * bits, each tagged with the record's generation; and the fork counters
 * (include/process.h) that say whether a socket may be in a child. */
#include <stdint.h>

#include "check.h"
#include "fdtab.h"
#include "process.h"

void test_reads(void)
{
    uint32_t generation = 0x1234fffe;
    uint64_t reads = reads_fresh(generation);
    CHECK(reads_current(reads, generation));
    CHECK(reads >> READS_BYTES_SHIFT == 0 && !(reads & READS_TO_EOF));
    /* bytes and the EOF bit leave the tag alone */
    reads = (reads + (100ull << READS_BYTES_SHIFT)) | READS_TO_EOF;
    CHECK(reads_current(reads, generation));
    CHECK(reads >> READS_BYTES_SHIFT == 100 && (reads & READS_TO_EOF));
    /* the record freed (+1) and reused (+1): a late store of the old word
     * does not pass for the new socket's, across the tag's wrap too */
    CHECK(!reads_current(reads, generation + 2));
    CHECK(reads_current(reads_fresh(generation + 2), generation + 2));
    CHECK(!reads_current(reads_fresh(generation + 2), generation));
    /* 2^46 bytes read still fit without touching the tag */
    uint64_t big = reads_fresh(generation) + ((1ull << 46) << READS_BYTES_SHIFT);
    CHECK(reads_current(big, generation) && big >> READS_BYTES_SHIFT == 1ull << 46);
}

void test_seen(void)
{
    struct socket_record rec;
    uint32_t generation = 7, before = 99;
    rec.seen = seen_fresh(generation);
    CHECK(seen_bits(&rec) == 0);
    CHECK(seen_set(&rec, generation, SEEN_READ, &before) && before == 0);
    CHECK(seen_set(&rec, generation, SEEN_EOF, &before) && before == SEEN_READ);
    CHECK(seen_set(&rec, generation, SEEN_READ, &before) && before == (SEEN_READ | SEEN_EOF));
    CHECK(seen_bits(&rec) == (SEEN_READ | SEEN_EOF));
    /* freed and reused: a thread still holding the old generation marks nothing */
    rec.seen = seen_fresh(generation + 2);
    CHECK(!seen_set(&rec, generation, SEEN_RECV_TIMEOUT, &before));
    CHECK(seen_bits(&rec) == 0);
    CHECK(seen_set(&rec, generation + 2, SEEN_PEER_RESET, &before) && before == 0);
    CHECK(seen_bits(&rec) == SEEN_PEER_RESET);
}

/* The counters live in shim/process.c, which the unit tests do not link. */
uint32_t process_forks_started, process_forks_finished;

void test_forks(void)
{
    process_forks_started = process_forks_finished = 4;
    uint32_t before = process_forks();
    CHECK(!process_forked_since(before));
    /* another thread's fork under way: the syscall may come before this close */
    process_forks_started++;
    CHECK(process_forked_since(before));
    /* a socket created while the fork is under way may be in the child too */
    uint32_t during = process_forks();
    process_forks_finished++;
    CHECK(process_forked_since(before) && process_forked_since(during));
    /* created after the fork: this process's alone */
    uint32_t after = process_forks();
    CHECK(!process_forked_since(after));
    /* two forks at once, one finished: still under way */
    process_forks_started += 2;
    process_forks_finished++;
    CHECK(process_forked_since(after));
    process_forks_finished++;
    CHECK(process_forked_since(after) && !process_forked_since(process_forks()));
    /* the counters wrap */
    process_forks_started = process_forks_finished = UINT32_MAX;
    uint32_t old = process_forks();
    process_forks_started++;
    process_forks_finished++;
    CHECK(process_forked_since(old) && !process_forked_since(process_forks()));
}
