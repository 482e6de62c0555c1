/* Space-Saving top-k table: see topk.h for why. */
#include <stdlib.h>
#include <string.h>

#include "topk.h"

void tk_key_make(struct tk_key *k, int64_t pid, int32_t fd, const char *s)
{
    memset(k, 0, sizeof *k);
    k->pid = pid;
    k->fd = fd;
    if (s) {
        size_t n = strlen(s);
        if (n >= TK_STR_LEN)
            n = TK_STR_LEN - 1; /* longer keys share a bucket: harmless */
        memcpy(k->s, s, n);
    }
}

static uint64_t key_hash(const struct tk_key *k)
{
    /* FNV-1a over the whole (zero-padded) key. */
    const unsigned char *p = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < sizeof *k; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

int topk_init(struct topk *t, uint32_t cap)
{
    memset(t, 0, sizeof *t);
    uint32_t slots = 1;
    while (slots < cap * 2) /* load factor <= 0.5 keeps probes short */
        slots <<= 1;
    t->cap = cap;
    t->slot_mask = slots - 1;
    t->e = calloc(cap, sizeof *t->e);
    t->heap = calloc(cap, sizeof *t->heap);
    t->slot = calloc(slots, sizeof *t->slot);
    if (!t->e || !t->heap || !t->slot) {
        topk_free(t);
        return -1;
    }
    return 0;
}

void topk_free(struct topk *t)
{
    free(t->e);
    free(t->heap);
    free(t->slot);
    memset(t, 0, sizeof *t);
}

/* ---- min-heap on count ---- */

static void heap_swap(struct topk *t, uint32_t a, uint32_t b)
{
    uint32_t ea = t->heap[a], eb = t->heap[b];
    t->heap[a] = eb;
    t->heap[b] = ea;
    t->e[eb].heap_pos = a;
    t->e[ea].heap_pos = b;
}

static uint64_t heap_count(const struct topk *t, uint32_t pos)
{
    return t->e[t->heap[pos]].count;
}

static void sift_up(struct topk *t, uint32_t pos)
{
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (heap_count(t, parent) <= heap_count(t, pos))
            break;
        heap_swap(t, parent, pos);
        pos = parent;
    }
}

static void sift_down(struct topk *t, uint32_t pos)
{
    for (;;) {
        uint32_t l = 2 * pos + 1, r = l + 1, min = pos;
        if (l < t->n && heap_count(t, l) < heap_count(t, min))
            min = l;
        if (r < t->n && heap_count(t, r) < heap_count(t, min))
            min = r;
        if (min == pos)
            return;
        heap_swap(t, pos, min);
        pos = min;
    }
}

/* ---- open-addressing hash of entry indexes ---- */

static uint32_t *slot_find(struct topk *t, const struct tk_key *k, uint64_t h)
{
    uint32_t i = (uint32_t)h & t->slot_mask;
    while (t->slot[i]) {
        const struct tk_entry *e = &t->e[t->slot[i] - 1];
        if (e->hash == h && !memcmp(&e->key, k, sizeof *k))
            return &t->slot[i];
        i = (i + 1) & t->slot_mask;
    }
    return &t->slot[i]; /* the empty slot where k would go */
}

/* Backward-shift deletion: keeps probe chains intact without tombstones,
 * which would otherwise pile up under steady eviction. */
static void slot_delete(struct topk *t, uint32_t i)
{
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & t->slot_mask;
        if (!t->slot[j])
            break;
        uint32_t home = (uint32_t)t->e[t->slot[j] - 1].hash & t->slot_mask;
        int stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        t->slot[i] = t->slot[j];
        i = j;
    }
    t->slot[i] = 0;
}

static void entry_reset(struct tk_entry *e, const struct tk_key *k, uint64_t h)
{
    uint32_t pos = e->heap_pos;
    memset(e, 0, sizeof *e);
    e->key = *k;
    e->hash = h;
    e->heap_pos = pos;
}

struct tk_entry *topk_add(struct topk *t, const struct tk_key *k, uint64_t w)
{
    uint64_t h = key_hash(k);
    uint32_t *s = slot_find(t, k, h);
    if (*s) {
        struct tk_entry *e = &t->e[*s - 1];
        e->count += w;
        sift_down(t, e->heap_pos);
        return e;
    }
    if (t->n < t->cap) {
        uint32_t idx = t->n++;
        struct tk_entry *e = &t->e[idx];
        e->heap_pos = idx;
        t->heap[idx] = idx;
        entry_reset(e, k, h);
        e->count = w;
        *s = idx + 1;
        sift_up(t, idx);
        return e;
    }
    /* Full: recycle the entry with the smallest count. */
    uint32_t idx = t->heap[0];
    struct tk_entry *e = &t->e[idx];
    uint64_t inherited = e->count;
    slot_delete(t, (uint32_t)(slot_find(t, &e->key, e->hash) - t->slot));
    entry_reset(e, k, h);
    e->count = inherited + w;
    e->err = inherited;
    *slot_find(t, k, h) = idx + 1;
    sift_down(t, 0);
    t->evictions++;
    return e;
}

static int by_count_desc(const void *a, const void *b)
{
    const struct tk_entry *x = *(const struct tk_entry *const *)a;
    const struct tk_entry *y = *(const struct tk_entry *const *)b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    if (x->key.pid != y->key.pid)
        return x->key.pid < y->key.pid ? -1 : 1;
    if (x->key.fd != y->key.fd)
        return x->key.fd < y->key.fd ? -1 : 1;
    return strcmp(x->key.s, y->key.s);
}

size_t topk_sorted(const struct topk *t, const struct tk_entry **out, size_t max)
{
    const struct tk_entry **all = malloc((t->n ? t->n : 1) * sizeof *all);
    if (!all)
        return 0;
    for (uint32_t i = 0; i < t->n; i++)
        all[i] = &t->e[i];
    qsort(all, t->n, sizeof *all, by_count_desc);
    size_t n = t->n < max ? t->n : max;
    memcpy(out, all, n * sizeof *out);
    free(all);
    return n;
}
