/* Bounded "heavy hitters" table for `report` (Space-Saving algorithm).
 *
 * A log can name millions of distinct listeners, peers or (pid, fd, peer)
 * triples; the report must run in flat memory.  The table holds at most
 * `cap` keys: when a new key arrives and the table is full, the key with the
 * smallest count is evicted and the newcomer inherits that count as its
 * possible over-count (`err`).  Every key whose true count exceeds
 * total/cap is guaranteed to be present, so the top rows are right, and
 * `err` bounds how wrong each count can be.  Lookups go through an open-
 * addressing hash; a binary min-heap finds the eviction victim in O(log n). */
#ifndef RSTSHIM_TOPK_H
#define RSTSHIM_TOPK_H

#include <stddef.h>
#include <stdint.h>

#define TK_STR_LEN 72 /* "[ffff:...:255.255.255.255%scope]:65535" fits */
#define TK_TS_LEN 32

/* Compared with memcmp: build it with tk_key_make so padding is zero. */
struct tk_key {
    int64_t pid;
    int32_t fd;
    char s[TK_STR_LEN];
};

struct tk_entry {
    struct tk_key key;
    uint64_t hash;
    uint64_t count;  /* weight added for this key (+ err inherited) */
    uint64_t err;    /* upper bound of the over-count after an eviction */
    uint64_t rst;    /* caller's payload: RST closes */
    uint64_t flagged; /* caller's payload: flagged closes */
    uint32_t mask;   /* caller's payload: cause flags seen */
    int64_t example; /* caller's payload: an example (e.g. the first pid seen) */
    uint32_t heap_pos;
    char first[TK_TS_LEN], last[TK_TS_LEN];
};

struct topk {
    uint32_t cap, n, slot_mask;
    struct tk_entry *e;
    uint32_t *heap;  /* entry indexes, min-heap on count */
    uint32_t *slot;  /* hash slots: entry index + 1, 0 = empty */
    uint64_t evictions;
};

void tk_key_make(struct tk_key *k, int64_t pid, int32_t fd, const char *s);
int topk_init(struct topk *t, uint32_t cap);
void topk_free(struct topk *t);
/* Add weight w to key k; returns its entry.  A new (or recycled) entry has
 * its payload zeroed: first[0] == '\0'. */
struct tk_entry *topk_add(struct topk *t, const struct tk_key *k, uint64_t w);
/* Up to max entries, highest count first; returns how many. */
size_t topk_sorted(const struct topk *t, const struct tk_entry **out, size_t max);

#endif
