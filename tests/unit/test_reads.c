/* The reads word of a socket record (include/fdtab.h): what the receive
 * wrappers saw read, tagged with the record's generation. */
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
