/* The words of a socket record that threads update without a lock
 * (include/fdtab.h): what the receive wrappers saw read, and the SEEN_*
 * bits, each tagged with the record's generation. */
#include <stdint.h>

#include "check.h"
#include "fdtab.h"

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
