/* The fd table and the socket records it points to (see include/fdtab.h). */
#include "fdtab.h"

#include <string.h>
#include <sys/mman.h>

#include "guard.h"

SHIM_HIDDEN struct socket_record **fdtab_chunks[FDTAB_CHUNKS];

/* Memory comes from mmap, not malloc: accept() may run in a signal handler,
 * and records must stay valid memory forever (see the header). */
static void *pages_alloc(size_t size)
{
    void *p = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? 0 : p;
}

/* ---- records: a lock-free free list over slabs that are never unmapped ---- */

#define SLAB_BITS 8
#define SLAB_SIZE (1u << SLAB_BITS)
#define SLABS 16384u /* up to 4,194,304 live sockets */

static struct socket_record *slabs[SLABS];
static uint32_t records_used;  /* indices handed out so far */
/* Free list head: low 32 bits index+1 (0 = empty), high 32 bits a tag that
 * changes on every pop so a compare-and-swap never succeeds on a stale head. */
static uint64_t free_head;

static struct socket_record *record_at(uint32_t index)
{
    struct socket_record *slab = __atomic_load_n(&slabs[index >> SLAB_BITS], __ATOMIC_ACQUIRE);
    return &slab[index & (SLAB_SIZE - 1)];
}

static struct socket_record *slab_ensure(uint32_t index)
{
    uint32_t s = index >> SLAB_BITS;
    if (s >= SLABS)
        return 0;
    struct socket_record *slab = __atomic_load_n(&slabs[s], __ATOMIC_ACQUIRE);
    if (!slab) {
        struct socket_record *fresh = pages_alloc(SLAB_SIZE * sizeof *fresh);
        if (!fresh)
            return 0;
        if (__atomic_compare_exchange_n(&slabs[s], &slab, fresh, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            slab = fresh;
        else
            munmap(fresh, SLAB_SIZE * sizeof *fresh); /* another thread won */
    }
    return &slab[index & (SLAB_SIZE - 1)];
}

static struct socket_record *record_pop_free(void)
{
    uint64_t head = __atomic_load_n(&free_head, __ATOMIC_ACQUIRE);
    while ((uint32_t)head) {
        struct socket_record *rec = record_at((uint32_t)head - 1);
        uint32_t next = __atomic_load_n(&rec->next_free, __ATOMIC_RELAXED);
        uint64_t new_head = ((head >> 32) + 1) << 32 | next;
        if (__atomic_compare_exchange_n(&free_head, &head, new_head, 1, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return rec;
    }
    return 0;
}

struct socket_record *record_new(int family, enum socket_role role)
{
    struct socket_record *rec = record_pop_free();
    if (!rec) {
        uint32_t index = __atomic_fetch_add(&records_used, 1, __ATOMIC_RELAXED);
        rec = slab_ensure(index);
        if (!rec)
            return 0;
        rec->index = index;
    }
    uint32_t index = rec->index;
    uint32_t generation = __atomic_load_n(&rec->generation, __ATOMIC_RELAXED) + 1;
    memset(rec, 0, sizeof *rec);
    rec->index = index;
    rec->reads = reads_fresh(generation);
    rec->seen = seen_fresh(generation);
    __atomic_store_n(&rec->generation, generation, __ATOMIC_RELEASE);
    __atomic_store_n(&rec->refs, 1, __ATOMIC_RELAXED);
    rec->family = (uint8_t)family;
    rec->role = (uint8_t)role;
    rec->listen_fd = -1;
    rec->linger_onoff = 0; /* the kernel's default for a new socket */
    return rec;
}

void record_retain(struct socket_record *rec)
{
    __atomic_fetch_add(&rec->refs, 1, __ATOMIC_ACQ_REL);
}

uint32_t record_drop(struct socket_record *rec)
{
    return __atomic_sub_fetch(&rec->refs, 1, __ATOMIC_ACQ_REL);
}

void record_free(struct socket_record *rec)
{
    /* A reader that still holds this pointer sees the generation change. */
    __atomic_fetch_add(&rec->generation, 1, __ATOMIC_RELEASE);
    uint64_t head = __atomic_load_n(&free_head, __ATOMIC_ACQUIRE);
    uint64_t new_head;
    do {
        __atomic_store_n(&rec->next_free, (uint32_t)head, __ATOMIC_RELAXED);
        new_head = (head & 0xffffffff00000000ull) | (rec->index + 1);
    } while (!__atomic_compare_exchange_n(&free_head, &head, new_head, 1, __ATOMIC_ACQ_REL,
                                          __ATOMIC_ACQUIRE));
}

/* ---- the fd → record table ---- */

static struct socket_record **chunk_ensure(unsigned fd)
{
    unsigned c = fd >> FDTAB_CHUNK_BITS;
    struct socket_record **chunk = __atomic_load_n(&fdtab_chunks[c], __ATOMIC_ACQUIRE);
    if (chunk)
        return chunk;
    struct socket_record **fresh = pages_alloc(FDTAB_CHUNK_SIZE * sizeof *fresh);
    if (!fresh)
        return 0;
    if (__atomic_compare_exchange_n(&fdtab_chunks[c], &chunk, fresh, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        return fresh;
    munmap(fresh, FDTAB_CHUNK_SIZE * sizeof *fresh);
    return chunk;
}

struct socket_record *fdtab_put(int fd, struct socket_record *rec)
{
    if ((unsigned)fd >= FDTAB_MAX_FD)
        return rec;
    struct socket_record **chunk = chunk_ensure((unsigned)fd);
    if (!chunk)
        return rec;
    return __atomic_exchange_n(&chunk[(unsigned)fd & (FDTAB_CHUNK_SIZE - 1)], rec,
                               __ATOMIC_ACQ_REL);
}

struct socket_record *fdtab_take(int fd)
{
    if ((unsigned)fd >= FDTAB_MAX_FD)
        return 0;
    struct socket_record **chunk =
        __atomic_load_n(&fdtab_chunks[(unsigned)fd >> FDTAB_CHUNK_BITS], __ATOMIC_ACQUIRE);
    if (!chunk)
        return 0;
    struct socket_record **slot = &chunk[(unsigned)fd & (FDTAB_CHUNK_SIZE - 1)];
    if (!__atomic_load_n(slot, __ATOMIC_RELAXED))
        return 0; /* the common case (untracked fd) costs no locked instruction */
    return __atomic_exchange_n(slot, 0, __ATOMIC_ACQ_REL);
}

void fdtab_for_each(int low, int high, void (*fn)(int fd, struct socket_record *rec, void *ctx),
                    void *ctx)
{
    if (low < 0)
        low = 0;
    if (high < 0 || (unsigned)high >= FDTAB_MAX_FD)
        high = FDTAB_MAX_FD - 1;
    for (unsigned c = (unsigned)low >> FDTAB_CHUNK_BITS; c <= (unsigned)high >> FDTAB_CHUNK_BITS;
         c++) {
        struct socket_record **chunk = __atomic_load_n(&fdtab_chunks[c], __ATOMIC_ACQUIRE);
        if (!chunk)
            continue;
        for (unsigned i = 0; i < FDTAB_CHUNK_SIZE; i++) {
            unsigned fd = c << FDTAB_CHUNK_BITS | i;
            if (fd < (unsigned)low || fd > (unsigned)high)
                continue;
            struct socket_record *rec = __atomic_load_n(&chunk[i], __ATOMIC_ACQUIRE);
            if (rec)
                fn((int)fd, rec, ctx);
        }
    }
}
